//! Translating one statement from PostgreSQL dialect to SQLite: the text
//! SQLite runs, and what each `$N` parameter probably is.

use crate::error::SqlError;
use crate::lexer::{tokenize, Kind};
use crate::param_hints::{self, ParamHint};
use crate::rewrite::rewrite;

/// A statement translated from PostgreSQL dialect to SQLite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// Text for SQLite: `$N` → `?N`, `x::type` → `CAST(x AS type)`.
    pub sql: String,
    /// The highest `N` of any `$N` in the statement.
    pub param_count: usize,
    /// What each parameter probably is; index 0 is `$1`.
    pub param_hints: Vec<ParamHint>,
    /// `sql` holds several SQLite statements (`DROP TABLE a, b` becomes one
    /// `DROP TABLE` per name), to run as one unit, without parameters.
    pub batch: bool,
    /// An `ALTER TABLE` SQLite carries out only by rebuilding the table
    /// (crates/hadr-sql/src/alter.rs); `sql` is then not for SQLite.
    pub rebuild: Option<crate::alter::TableRebuild>,
    /// The statement reads PostgreSQL's catalogs (crates/hadr-sql/src/catalog/):
    /// its boolean catalog columns are announced as bool.
    pub catalog: bool,
}

/// Translate one statement from PostgreSQL dialect to SQLite: `$N` → `?N`,
/// `expr::type` → `CAST(expr AS type)`, plus parameter type hints.
pub fn translate(stmt: &str) -> Result<Translated, SqlError> {
    let derived = crate::derived::rewrite(stmt);
    let stmt = derived.as_deref().unwrap_or(stmt);
    match crate::catalog::rewrite(stmt) {
        Some(text) => {
            let mut t = translate_plain(&text)?;
            t.catalog = true;
            Ok(t)
        }
        None => translate_plain(stmt),
    }
}

/// [`translate`] once the catalogs' references are rewritten.
fn translate_plain(stmt: &str) -> Result<Translated, SqlError> {
    let toks = tokenize(stmt);
    if let Some(t) = toks.iter().find(|t| !t.terminated) {
        let what = match t.kind {
            Kind::Str => "string literal",
            Kind::DollarStr => "dollar-quoted string",
            Kind::QuotedIdent => "quoted identifier",
            _ => "block comment",
        };
        return Err(SqlError::Unterminated { what, at: t.start });
    }
    if let Some(feature) = crate::unsupported::unsupported(&toks) {
        return Err(SqlError::Unsupported(feature.to_string()));
    }
    if let Some(stripped) = crate::ddl::strip_storage_clauses(stmt, &toks) {
        return translate_plain(&stripped);
    }
    let vacuum = crate::ddl::split_vacuum(&toks);
    if let Some([one]) = vacuum.as_deref() {
        // One statement is not a batch: SQLite's VACUUM cannot run in one.
        return translate_plain(one);
    }
    if let Some(batch) = crate::ddl::split_drop(&toks)
        .or_else(|| crate::ddl::split_truncate(&toks))
        .or_else(|| crate::comment::split_comment(&toks))
        .or_else(|| vacuum.map(Ok))
    {
        return Ok(Translated {
            sql: batch?.join(";\n"),
            param_count: 0,
            param_hints: Vec::new(),
            batch: true,
            rebuild: None,
            catalog: false,
        });
    }
    let (sql, param_count) = rewrite(&toks)?;
    let rebuild = crate::alter::parse(&sql).transpose()?;
    let param_hints = param_hints::infer(&toks, param_count);
    Ok(Translated {
        sql,
        param_count,
        param_hints,
        batch: false,
        rebuild,
        catalog: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unterminated() {
        for s in [
            "select 'abc",
            "select \"abc",
            "select $$abc",
            "select /* abc",
            "select E'abc\\'",
            "select [abc",
        ] {
            let r = translate(s);
            if s.contains('[') {
                // An unclosed '[' is just punctuation.
                assert!(r.is_ok(), "{s}");
            } else {
                assert!(
                    matches!(r, Err(SqlError::Unterminated { .. })),
                    "{s}: {r:?}"
                );
            }
        }
    }
}
