//! PostgreSQL column definitions in `CREATE TABLE` and `ALTER TABLE` that
//! SQLite reads differently (issue 12 item 4), found on the token stream
//! for the rewriter (crates/hadr-sql/src/rewrite.rs):
//!
//! - `serial`, `bigserial`, `smallserial` (and `serial4/8/2`): SQLite
//!   accepts any type name, but only a column declared exactly `INTEGER
//!   PRIMARY KEY` is the rowid and numbers itself; `serial PRIMARY KEY`
//!   would take NULL ids. They become `INTEGER`; a serial column that is
//!   not the primary key is refused (SQLite has no sequences), not silently
//!   left without its numbers.
//! - `DEFAULT now()` and the other clock functions become SQLite's own
//!   clock in parentheses, `DEFAULT gen_random_uuid()` SQLite's randomness:
//!   the default is stored in the file's schema, where a function only
//!   hadr registers would break every other reader; any other call gets
//!   the parentheses SQLite requires around an expression default.

use crate::error::SqlError;
use crate::keywords::in_list;
use crate::lexer::{Kind, Token};

const SERIALS: &[&str] = &[
    "serial",
    "serial4",
    "bigserial",
    "serial8",
    "smallserial",
    "serial2",
];

/// PostgreSQL clock functions as a default: SQLite's clock, in
/// PostgreSQL's timestamptz text form (UTC).
const CLOCKS: &[&str] = &[
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
];

/// SQLite's `now` as PostgreSQL writes a timestamptz.
pub(crate) const SQLITE_NOW: &str = "(strftime('%Y-%m-%d %H:%M:%f+00','now'))";

/// A version-4 UUID from SQLite's randomness.
pub(crate) const SQLITE_UUID: &str =
    "(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || \
     substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || \
     substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))))";

fn solid(t: &&Token<'_>) -> bool {
    !matches!(t.kind, Kind::Space | Kind::LineComment | Kind::BlockComment)
}

fn word(t: Option<&Token<'_>>, w: &str) -> bool {
    t.is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(w))
}

/// Whether the statement is `CREATE [TEMP] TABLE` or `ALTER TABLE`.
pub(crate) fn is_table_ddl(toks: &[Token<'_>]) -> bool {
    let words: Vec<&Token<'_>> = toks.iter().filter(solid).take(3).collect();
    let at = |i: usize| words.get(i).copied();
    (word(at(0), "CREATE")
        && (word(at(1), "TABLE")
            || ((word(at(1), "TEMP") || word(at(1), "TEMPORARY")) && word(at(2), "TABLE"))))
        || (word(at(0), "ALTER") && word(at(1), "TABLE"))
}

/// The SQLite type for a serial type name at `k` in a column definition
/// (None: not one), or why it cannot be had.
pub(crate) fn serial_type(toks: &[Token<'_>], k: usize) -> Result<Option<&'static str>, SqlError> {
    let t = &toks[k];
    if t.kind != Kind::Word || !in_list(t.text, SERIALS) {
        return Ok(None);
    }
    // `NAME serial` right after `(`, `,`, `ADD` or `COLUMN`: a column's type.
    let mut before = toks[..k].iter().rev().filter(solid);
    let Some(name) = before.next() else {
        return Ok(None);
    };
    let opens = before.next().is_some_and(|p| {
        p.is_punct("(") || p.is_punct(",") || word(Some(p), "ADD") || word(Some(p), "COLUMN")
    });
    if !matches!(name.kind, Kind::Word | Kind::QuotedIdent) || !opens {
        return Ok(None);
    }
    if inline_primary_key(toks, k) || table_primary_key(toks, name) {
        Ok(Some("INTEGER"))
    } else {
        Err(SqlError::Unsupported(format!(
            "{} for a column that is not the primary key (SQLite has no sequences; only the INTEGER PRIMARY KEY column numbers itself)",
            t.text
        )))
    }
}

/// `GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY [(options)]` at `k`, after
/// `NAME inttype` in a column definition: the index past it, for the
/// rewriter to drop it and make the type `INTEGER`, SQLite's numbering
/// rowid (None: not that clause; an error: not on the primary key, or not
/// an integer type). SQLite's own `GENERATED ALWAYS AS (expr)` is not
/// touched. Unlike PostgreSQL, a value given for an ALWAYS column is taken.
pub(crate) fn identity(toks: &[Token<'_>], k: usize) -> Option<Result<usize, SqlError>> {
    const INTS: &[&str] = &[
        "int", "integer", "bigint", "smallint", "int2", "int4", "int8",
    ];
    if !word(toks.get(k), "GENERATED") {
        return None;
    }
    let after: Vec<(usize, &Token<'_>)> = toks
        .iter()
        .enumerate()
        .skip(k + 1)
        .filter(|(_, t)| solid(t))
        .take(4)
        .collect();
    let w = |i: usize, kw: &str| after.get(i).is_some_and(|(_, t)| word(Some(t), kw));
    let last = if w(0, "ALWAYS") && w(1, "AS") && w(2, "IDENTITY") {
        after[2].0
    } else if w(0, "BY") && w(1, "DEFAULT") && w(2, "AS") && w(3, "IDENTITY") {
        after[3].0
    } else {
        return None;
    };
    // Sequence options in parentheses mean nothing to a rowid.
    let mut end = last + 1;
    let next = toks[end..].iter().position(|t| solid(&t)).map(|i| end + i);
    if let Some(open) = next.filter(|&i| toks[i].is_punct("(")) {
        let mut depth = 0;
        for (i, t) in toks.iter().enumerate().skip(open) {
            if t.is_punct("(") {
                depth += 1;
            } else if t.is_punct(")") {
                depth -= 1;
                if depth == 0 {
                    end = i + 1;
                    break;
                }
            }
        }
    }
    let mut before = toks[..k].iter().rev().filter(solid);
    let (ty, name) = (before.next(), before.next());
    let (ty, name) = ty.zip(name)?;
    if ty.kind != Kind::Word || !in_list(ty.text, INTS) {
        return Some(Err(SqlError::Unsupported(format!(
            "an identity column of type {} (only integer types: the column becomes SQLite's INTEGER rowid)",
            ty.text
        ))));
    }
    if inline_primary_key(toks, end - 1) || table_primary_key(toks, name) {
        Some(Ok(end))
    } else {
        Some(Err(SqlError::Unsupported(
            "an identity column that is not the primary key (SQLite has no sequences; only the INTEGER PRIMARY KEY column numbers itself)".into(),
        )))
    }
}

/// `PRIMARY KEY` within the column definition that starts at `k`.
fn inline_primary_key(toks: &[Token<'_>], k: usize) -> bool {
    let mut depth = 0i32;
    let mut prev_primary = false;
    for t in toks[k + 1..].iter().filter(solid) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            if depth == 0 {
                return false;
            }
            depth -= 1;
        } else if t.is_punct(",") && depth == 0 {
            return false;
        } else if depth == 0 && prev_primary && word(Some(t), "KEY") {
            return true;
        }
        prev_primary = depth == 0 && word(Some(t), "PRIMARY");
    }
    false
}

/// A table constraint `PRIMARY KEY (name)` naming only this column.
fn table_primary_key(toks: &[Token<'_>], name: &Token<'_>) -> bool {
    let s: Vec<&Token<'_>> = toks.iter().filter(solid).collect();
    let same = |t: &Token<'_>| {
        crate::lexer::ident_value(t).eq_ignore_ascii_case(&crate::lexer::ident_value(name))
    };
    s.windows(5).any(|w| {
        word(Some(w[0]), "PRIMARY")
            && word(Some(w[1]), "KEY")
            && w[2].is_punct("(")
            && same(w[3])
            && w[4].is_punct(")")
    })
}

/// `DROP TABLE [IF EXISTS] a, b, … [RESTRICT]` as one SQLite `DROP TABLE`
/// per name (SQLite drops one at a time), for the caller to run as one
/// unit; None for any other statement, or a single name without
/// `RESTRICT` (SQLite takes that as it is). `CASCADE` is refused: SQLite
/// cannot find what depends on a table.
pub(crate) fn split_drop(toks: &[Token<'_>]) -> Option<Result<Vec<String>, SqlError>> {
    let s: Vec<&Token<'_>> = toks.iter().filter(solid).collect();
    if !(word(s.first().copied(), "DROP") && word(s.get(1).copied(), "TABLE")) {
        return None;
    }
    let if_exists = word(s.get(2).copied(), "IF") && word(s.get(3).copied(), "EXISTS");
    let (names, tail) = name_list(&s, if if_exists { 4 } else { 2 })?;
    let restrict = match tail.as_slice() {
        [] => false,
        ["RESTRICT"] => true,
        ["CASCADE"] => return Some(Err(cascade("DROP TABLE"))),
        _ => return None,
    };
    if names.len() == 1 && !restrict {
        return None;
    }
    let head = if if_exists {
        "DROP TABLE IF EXISTS "
    } else {
        "DROP TABLE "
    };
    Some(Ok(names
        .into_iter()
        .map(|n| format!("{head}{n}"))
        .collect()))
}

/// `TRUNCATE [TABLE] [ONLY] a, b, … [RESTART IDENTITY | CONTINUE IDENTITY]
/// [RESTRICT]` as one `DELETE FROM` per name, to run as one unit. An
/// emptied `INTEGER PRIMARY KEY` table numbers from 1 again by itself, so
/// both IDENTITY options hold; `CASCADE` is refused.
pub(crate) fn split_truncate(toks: &[Token<'_>]) -> Option<Result<Vec<String>, SqlError>> {
    let s: Vec<&Token<'_>> = toks.iter().filter(solid).collect();
    if !word(s.first().copied(), "TRUNCATE") {
        return None;
    }
    let mut at = 1;
    for optional in ["TABLE", "ONLY"] {
        if word(s.get(at).copied(), optional) {
            at += 1;
        }
    }
    let (names, tail) = name_list(&s, at)?;
    if tail.contains(&"CASCADE") {
        return Some(Err(cascade("TRUNCATE")));
    }
    let allowed = [
        &[][..],
        &["RESTRICT"],
        &["RESTART", "IDENTITY"],
        &["CONTINUE", "IDENTITY"],
        &["RESTART", "IDENTITY", "RESTRICT"],
        &["CONTINUE", "IDENTITY", "RESTRICT"],
    ];
    if !allowed.contains(&tail.as_slice()) {
        return None;
    }
    Some(Ok(names
        .into_iter()
        .map(|n| format!("DELETE FROM {n}"))
        .collect()))
}

fn cascade(what: &str) -> SqlError {
    SqlError::Unsupported(format!(
        "{what} … CASCADE (SQLite cannot find what depends on a table: name the dependent tables too, or drop them first)"
    ))
}

/// The table names from `s[at]` on (`a`, `"a"`, `main.a`, separated by
/// commas), and the words after them, upper-cased; None if something else
/// follows.
fn name_list(s: &[&Token<'_>], mut at: usize) -> Option<(Vec<String>, Vec<&'static str>)> {
    const TAIL: &[&str] = &["CASCADE", "RESTRICT", "RESTART", "CONTINUE", "IDENTITY"];
    let mut names = Vec::new();
    loop {
        // A name, `a` or `schema.a`: identifiers joined by dots.
        let ident = |t: Option<&&Token<'_>>| {
            t.is_some_and(|t| {
                t.kind == Kind::QuotedIdent || (t.kind == Kind::Word && !in_list(t.text, TAIL))
            })
        };
        if !ident(s.get(at)) {
            return None;
        }
        let mut parts = vec![s[at]];
        at += 1;
        while s.get(at).is_some_and(|t| t.is_punct(".")) && ident(s.get(at + 1)) {
            parts.push(s[at + 1]);
            at += 2;
        }
        // hadr's one schema, `public`, is no SQLite database name.
        if parts.len() == 2 && crate::lexer::ident_value(parts[0]).eq_ignore_ascii_case("public") {
            parts.remove(0);
        }
        names.push(parts.iter().map(|t| t.text).collect::<Vec<_>>().join("."));
        if s.get(at).is_some_and(|t| t.is_punct(",")) {
            at += 1;
        } else {
            break;
        }
    }
    let mut tail = Vec::new();
    for t in &s[at..] {
        if t.is_punct(";") {
            break;
        }
        let w = TAIL
            .iter()
            .find(|w| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(w))?;
        tail.push(*w);
    }
    Some((names, tail))
}

/// What a `DEFAULT name(args)` becomes: the clock and uuid functions
/// SQLite's own expressions; any other call itself in parentheses.
pub(crate) fn call_default(name: &str, call: &str) -> String {
    if in_list(name, CLOCKS) {
        SQLITE_NOW.to_string()
    } else if name.eq_ignore_ascii_case("gen_random_uuid") {
        SQLITE_UUID.to_string()
    } else {
        format!("({call})")
    }
}

/// PostgreSQL storage clauses SQLite has no use for, removed from `CREATE
/// [UNLOGGED] TABLE` and `CREATE INDEX`: `UNLOGGED` (every hadr table is
/// logged and replicated), `WITH (fillfactor=…)` and `TABLESPACE x` after
/// the column list. pgbench -i creates its tables `WITH (fillfactor=100)`.
/// None when there is nothing to remove.
pub(crate) fn strip_storage_clauses(src: &str, toks: &[Token<'_>]) -> Option<String> {
    let s: Vec<&Token<'_>> = toks.iter().filter(solid).collect();
    if !word(s.first().copied(), "CREATE") {
        return None;
    }
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut k = 1;
    if word(s.get(k).copied(), "UNLOGGED") {
        cut.push((s[k].start, s[k].end()));
        k += 1;
    } else if word(s.get(k).copied(), "UNIQUE") {
        k += 1;
    }
    if !(word(s.get(k).copied(), "TABLE") || word(s.get(k).copied(), "INDEX")) {
        return None;
    }
    // The end of the first parenthesised group: the column list.
    let open = (k..s.len()).find(|&i| s[i].is_punct("("))?;
    let close = matching(&s, open)?;
    let mut i = close + 1;
    loop {
        if word(s.get(i).copied(), "WITH") && s.get(i + 1).is_some_and(|t| t.is_punct("(")) {
            let end = matching(&s, i + 1)?;
            cut.push((s[i].start, s[end].end()));
            i = end + 1;
        } else if word(s.get(i).copied(), "TABLESPACE") && s.get(i + 1).is_some() {
            cut.push((s[i].start, s[i + 1].end()));
            i += 2;
        } else {
            break;
        }
    }
    if cut.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len());
    let mut from = 0;
    for (a, b) in cut {
        out.push_str(&src[from..a]);
        from = b;
    }
    out.push_str(&src[from..]);
    Some(out)
}

/// Index in `s` of the `)` matching the `(` at `open`.
fn matching(s: &[&Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in s.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// PostgreSQL's `VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE] [(options)]
/// t, …` in SQLite terms, as statements to run as one unit: SQLite has no
/// per-table vacuum (a table's free pages are reused by the next writes,
/// which is what PostgreSQL's plain VACUUM achieves), so naming tables
/// leaves just the `ANALYZE` of each, if asked for; `VACUUM FULL` rewrites
/// the file like SQLite's VACUUM. None: a bare `VACUUM`, SQLite's own.
pub(crate) fn split_vacuum(toks: &[Token<'_>]) -> Option<Vec<String>> {
    let s: Vec<&Token<'_>> = toks.iter().filter(solid).collect();
    if !word(s.first().copied(), "VACUUM") {
        return None;
    }
    let (mut full, mut analyze) = (false, false);
    let mut at = 1;
    if s.get(at).is_some_and(|t| t.is_punct("(")) {
        let end = matching(&s, at)?;
        for t in &s[at + 1..end] {
            full |= t.is_kw("FULL");
            analyze |= t.is_kw("ANALYZE") || t.is_kw("ANALYSE");
        }
        at = end + 1;
    }
    while let Some(t) = s.get(at) {
        if t.is_kw("FULL") {
            full = true;
        } else if t.is_kw("ANALYZE") || t.is_kw("ANALYSE") {
            analyze = true;
        } else if !(t.is_kw("FREEZE") || t.is_kw("VERBOSE")) {
            break;
        }
        at += 1;
    }
    if at == 1 && s.get(at).is_none_or(|t| t.is_punct(";")) {
        return None;
    }
    let (names, tail) = name_list(&s, at).unwrap_or_default();
    if !tail.is_empty() {
        return None;
    }
    if names.is_empty() {
        return Some(vec![if full { "VACUUM" } else { "ANALYZE" }.to_string()]);
    }
    Some(if analyze {
        names.iter().map(|n| format!("ANALYZE {n}")).collect()
    } else {
        Vec::new()
    })
}

#[cfg(test)]
mod storage_tests {
    use super::*;
    use crate::lexer::tokenize;

    #[test]
    fn storage_clauses_are_dropped() {
        let strip = |s: &str| strip_storage_clauses(s, &tokenize(s));
        assert_eq!(
            strip("create table pgbench_tellers(tid int not null,bid int) with (fillfactor=100)")
                .as_deref(),
            Some("create table pgbench_tellers(tid int not null,bid int) ")
        );
        assert_eq!(
            strip("CREATE UNLOGGED TABLE t(a int) WITH (fillfactor = 90) TABLESPACE fast")
                .as_deref(),
            Some("CREATE  TABLE t(a int)  ")
        );
        assert_eq!(
            strip("CREATE INDEX i ON t(a) WITH (fillfactor=70)").as_deref(),
            Some("CREATE INDEX i ON t(a) ")
        );
        assert_eq!(strip("CREATE TABLE t(a int) WITHOUT ROWID"), None);
        assert_eq!(strip("CREATE TABLE t(a int)"), None);
        assert_eq!(strip("SELECT 1 WITH (x)"), None);
    }

    #[test]
    fn vacuum_in_sqlite_terms() {
        let v = |s: &str| split_vacuum(&tokenize(s));
        assert_eq!(v("VACUUM"), None);
        assert_eq!(v("vacuum pgbench_branches"), Some(vec![]));
        assert_eq!(
            v("vacuum analyze pgbench_branches, public.t"),
            Some(vec!["ANALYZE pgbench_branches".into(), "ANALYZE t".into()])
        );
        assert_eq!(
            v("VACUUM (VERBOSE, ANALYZE) t"),
            Some(vec!["ANALYZE t".into()])
        );
        assert_eq!(v("VACUUM FULL"), Some(vec!["VACUUM".into()]));
        assert_eq!(v("VACUUM ANALYZE"), Some(vec!["ANALYZE".into()]));
    }
}
