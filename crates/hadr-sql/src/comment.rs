//! `COMMENT ON TABLE | VIEW | INDEX | COLUMN … IS '…' | NULL` (issue 12
//! item 4): the comment is a row of `_hadr_comments`, an ordinary table
//! created by the first comment, so it is in the log with the rest of the
//! transaction, reaches every standby and survives a failover. The server
//! reads it back for `obj_description`, `col_description` and
//! `pg_description` (crates/hadr-server/src/catalog_functions.rs), which
//! psql's `\d+` and `\dt+`, pgjdbc's `REMARKS` and SQLAlchemy's comments
//! read.
//!
//! A comment is kept by the object's name (a column's by its table's and
//! its own), with the OID the catalogs give that name: renaming or
//! dropping the object does not carry or remove it (SQLite has no object
//! identity to hang it on), so a table re-created under the same name
//! shows the old comment until `COMMENT ON … IS NULL`.

use crate::error::SqlError;
use crate::lexer::{dollar_value, ident_value, string_value, Kind, Token};

/// The table, created by the first `COMMENT ON` (hidden from the catalogs
/// by its `_hadr_` prefix).
pub const TABLE: &str = "_hadr_comments";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS _hadr_comments(\
    kind TEXT NOT NULL, object TEXT NOT NULL COLLATE NOCASE, sub TEXT NOT NULL COLLATE NOCASE, \
    objoid INTEGER NOT NULL, description TEXT NOT NULL, PRIMARY KEY (kind, object, sub)) WITHOUT ROWID";

/// `COMMENT ON …` as the statements that carry it out (run as one unit):
/// a look at the object (so that a missing table or column is SQLite's
/// "no such table" / "no such column", 42P01 / 42703), the table, and the
/// row written or deleted. None if the statement is not a COMMENT ON.
pub(crate) fn split_comment(toks: &[Token<'_>]) -> Option<Result<Vec<String>, SqlError>> {
    let s: Vec<&Token<'_>> = toks.iter().filter(|t| !t.is_trivia()).collect();
    let word = |k: usize, w: &str| {
        s.get(k)
            .is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(w))
    };
    if !(word(0, "COMMENT") && word(1, "ON")) {
        return None;
    }
    Some(parse(&s, word(2, "MATERIALIZED")))
}

fn parse(s: &[&Token<'_>], materialized: bool) -> Result<Vec<String>, SqlError> {
    let kind_at = if materialized { 3 } else { 2 };
    let kind = s
        .get(kind_at)
        .map(|t| t.text.to_ascii_lowercase())
        .unwrap_or_default();
    let kind = match kind.as_str() {
        "table" | "view" | "index" | "column" if !materialized => kind,
        "" => return Err(SqlError::Syntax("COMMENT ON needs an object".into())),
        other => {
            let what = if materialized {
                "MATERIALIZED VIEW".to_string()
            } else {
                other.to_ascii_uppercase()
            };
            return Err(SqlError::Unsupported(format!(
                "COMMENT ON {what} (comments are kept on tables, views, indexes and columns)"
            )));
        }
    };
    // A dotted name up to IS; `public.` goes.
    let mut parts: Vec<String> = Vec::new();
    let mut k = kind_at + 1;
    loop {
        let t = s
            .get(k)
            .filter(|t| matches!(t.kind, Kind::Word | Kind::QuotedIdent))
            .ok_or_else(|| SqlError::Syntax("COMMENT ON: expected a name".into()))?;
        parts.push(unquote(t));
        k += 1;
        if s.get(k).is_some_and(|t| t.is_punct(".")) {
            k += 1;
        } else {
            break;
        }
    }
    if parts.len() > 1 && parts[0].eq_ignore_ascii_case("public") {
        parts.remove(0);
    }
    let (object, sub) = match (kind.as_str(), parts.as_slice()) {
        ("column", [table, column]) => (table.clone(), column.clone()),
        ("column", _) => {
            return Err(SqlError::Syntax(
                "COMMENT ON COLUMN needs table.column".into(),
            ))
        }
        (_, [name]) => (name.clone(), String::new()),
        _ => {
            return Err(SqlError::Unsupported(
                "schemas other than public".to_string(),
            ))
        }
    };
    let is_word = s
        .get(k)
        .is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case("IS"));
    if !is_word {
        return Err(SqlError::Syntax("COMMENT ON: expected IS".into()));
    }
    let value = s
        .get(k + 1)
        .ok_or_else(|| SqlError::Syntax("COMMENT ON: expected a string or NULL after IS".into()))?;
    let text = match value.kind {
        Kind::Str => Some(string_value(value)),
        Kind::DollarStr => Some(dollar_value(value).to_string()),
        Kind::Word if value.text.eq_ignore_ascii_case("NULL") => None,
        _ => {
            return Err(SqlError::Syntax(
                "COMMENT ON: expected a string or NULL after IS".into(),
            ))
        }
    };
    if s.len() > k + 2 {
        return Err(SqlError::Syntax(format!(
            "COMMENT ON: unexpected \"{}\" after the comment",
            s[k + 2].text
        )));
    }
    let q = |x: &str| format!("'{}'", x.replace('\'', "''"));
    let ident = |x: &str| format!("\"{}\"", x.replace('"', "\"\""));
    let mut out = Vec::new();
    match kind.as_str() {
        "table" | "view" => out.push(format!("SELECT 1 FROM {} LIMIT 0", ident(&object))),
        // Qualified: SQLite takes an unknown "c" alone for a string.
        "column" => out.push(format!(
            "SELECT {t}.{} FROM {t} LIMIT 0",
            ident(&sub),
            t = ident(&object)
        )),
        _ => {}
    }
    out.push(CREATE.to_string());
    // An index is "index" whatever the kind written for a table or view.
    let stored_kind = if kind == "view" { "table" } else { &kind };
    match text {
        Some(t) => out.push(format!(
            "INSERT OR REPLACE INTO {TABLE}(kind, object, sub, objoid, description) \
             VALUES ({}, {}, {}, hadr_oid({}), {})",
            q(stored_kind),
            q(&object),
            q(&sub),
            q(&object),
            q(&t)
        )),
        None => out.push(format!(
            "DELETE FROM {TABLE} WHERE kind = {} AND object = {} AND sub = {}",
            q(stored_kind),
            q(&object),
            q(&sub)
        )),
    }
    Ok(out)
}

/// A name as PostgreSQL resolves it: quoted as written, else lower case.
fn unquote(t: &Token<'_>) -> String {
    match t.kind {
        Kind::QuotedIdent => ident_value(t),
        _ => t.text.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn of(sql: &str) -> Option<Result<Vec<String>, SqlError>> {
        split_comment(&tokenize(sql))
    }

    #[test]
    fn tables_columns_and_indexes() {
        let out = of("COMMENT ON TABLE public.Accounts IS 'who owns what'")
            .unwrap()
            .unwrap();
        assert_eq!(out[0], "SELECT 1 FROM \"accounts\" LIMIT 0");
        assert!(out[1].starts_with("CREATE TABLE IF NOT EXISTS _hadr_comments"));
        assert_eq!(
            out[2],
            "INSERT OR REPLACE INTO _hadr_comments(kind, object, sub, objoid, description) \
             VALUES ('table', 'accounts', '', hadr_oid('accounts'), 'who owns what')"
        );
        let out = of("comment on column accounts.\"Owner\" is E'it''s\\tx'")
            .unwrap()
            .unwrap();
        assert_eq!(
            out[0],
            "SELECT \"accounts\".\"Owner\" FROM \"accounts\" LIMIT 0"
        );
        assert!(
            out[2].ends_with(
                "VALUES ('column', 'accounts', 'Owner', hadr_oid('accounts'), 'it''s\tx')"
            ),
            "{}",
            out[2]
        );
        let out = of("COMMENT ON INDEX accounts_pkey IS NULL")
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            "DELETE FROM _hadr_comments WHERE kind = 'index' AND object = 'accounts_pkey' AND sub = ''"
        );
        let out = of("COMMENT ON VIEW v IS $c$it's$c$").unwrap().unwrap();
        assert!(
            out[2].contains("'table', 'v', '', hadr_oid('v'), 'it''s')"),
            "{}",
            out[2]
        );
        assert!(of("SELECT 1").is_none());
    }

    #[test]
    fn what_is_refused() {
        for (sql, unsupported) in [
            ("COMMENT ON SCHEMA public IS 'x'", true),
            ("COMMENT ON MATERIALIZED VIEW m IS 'x'", true),
            ("COMMENT ON TABLE other.t IS 'x'", true),
            ("COMMENT ON TABLE t IS 42", false),
            ("COMMENT ON TABLE t 'x'", false),
            ("COMMENT ON COLUMN c IS 'x'", false),
            ("COMMENT ON TABLE t IS 'x' extra", false),
            ("COMMENT ON", false),
        ] {
            let r = of(sql).unwrap();
            match r {
                Err(SqlError::Unsupported(_)) => assert!(unsupported, "{sql}"),
                Err(SqlError::Syntax(_)) => assert!(!unsupported, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}
