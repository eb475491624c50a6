//! The PostgreSQL types of a statement's result columns, as far as its text
//! alone determines them (SQLite declares no type for expression columns).

use crate::brackets::{close_of, top_level};
use crate::expr_type::{expr, MAX_DEPTH};
use crate::keywords::{in_list, is_kw_in, is_name, is_reserved, VALUE_KEYWORDS};
use crate::lexer::{tokenize, Kind, Token};
use crate::types::PgType;

/// Keywords that end a SELECT list.
const LIST_END: &[&str] = &[
    "EXCEPT",
    "FETCH",
    "FOR",
    "FROM",
    "GROUP",
    "HAVING",
    "INTERSECT",
    "INTO",
    "LIMIT",
    "OFFSET",
    "ORDER",
    "UNION",
    "WHERE",
    "WINDOW",
];

const SET_OPS: &[&str] = &["UNION", "INTERSECT", "EXCEPT"];

/// Clauses that may follow a parenthesised query arm.
const AFTER_QUERY: &[&str] = &["ORDER", "LIMIT", "OFFSET", "FETCH", "FOR"];

type Columns = Vec<Option<PgType>>;

/// PostgreSQL types of a statement's result columns that the text alone determines, one entry per
/// result column of the outermost SELECT (after any WITH list; for UNION/INTERSECT/EXCEPT use the first
/// arm) or of a RETURNING list; None for an entry the text does not determine. Returns None if the
/// column count is unknown from the text (a `*` or `t.*` item) or the statement returns no rows.
pub fn result_column_types(stmt: &str) -> Option<Vec<Option<PgType>>> {
    let toks = tokenize(stmt);
    if toks.iter().any(|t| !t.terminated) {
        return None;
    }
    let sig: Vec<Token<'_>> = toks.into_iter().filter(|t| !t.is_trivia()).collect();
    let mut end = sig.len();
    while end > 0 && sig[end - 1].is_punct(";") {
        end -= 1;
    }
    let sig = &sig[..end];
    // Several statements have no one set of result columns.
    if top_level(sig)?.iter().any(|&i| sig[i].is_punct(";")) {
        return None;
    }
    statement(sig, 0)
}

/// Result columns of a whole statement.
fn statement(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = s.first()?;
    if first.is_kw("WITH") {
        return statement(&s[skip_with(s)?..], depth + 1);
    }
    if first.is_kw("SELECT") || first.is_kw("VALUES") || first.is_punct("(") {
        return query(s, depth);
    }
    if ["INSERT", "UPDATE", "DELETE", "REPLACE"]
        .iter()
        .any(|k| first.is_kw(k))
    {
        let returning = top_level(s)?
            .into_iter()
            .find(|&i| s[i].is_kw("RETURNING"))?;
        return items(&s[returning + 1..], depth);
    }
    None
}

/// Index of the statement after a `WITH` list.
fn skip_with(s: &[Token<'_>]) -> Option<usize> {
    let mut k = 1;
    if s.get(k)?.is_kw("RECURSIVE") {
        k += 1;
    }
    loop {
        if !matches!(s.get(k)?.kind, Kind::Word | Kind::QuotedIdent) {
            return None;
        }
        k += 1;
        if s.get(k)?.is_punct("(") {
            k = close_of(s, k)? + 1;
        }
        if !s.get(k)?.is_kw("AS") {
            return None;
        }
        k += 1;
        if s.get(k)?.is_kw("NOT") {
            k += 1;
        }
        if s.get(k)?.is_kw("MATERIALIZED") {
            k += 1;
        }
        if !s.get(k)?.is_punct("(") {
            return None;
        }
        k = close_of(s, k)? + 1;
        if !s.get(k)?.is_punct(",") {
            return Some(k);
        }
        k += 1;
    }
}

/// A query with set operations: the first arm's columns, except that a
/// column another arm types differently is undetermined.
fn query(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    let ops: Vec<usize> = top_level(s)?
        .into_iter()
        .filter(|&i| is_kw_in(&s[i], SET_OPS))
        .collect();
    let mut cols = arm(&s[..ops.first().copied().unwrap_or(s.len())], depth)?;
    for (n, &op) in ops.iter().enumerate() {
        let mut k = op + 1;
        if s.get(k)
            .is_some_and(|t| t.is_kw("ALL") || t.is_kw("DISTINCT"))
        {
            k += 1;
        }
        let end = ops.get(n + 1).copied().unwrap_or(s.len());
        let Some(other) = s.get(k..end).and_then(|a| arm(a, depth)) else {
            continue;
        };
        if other.len() == cols.len() {
            for (c, o) in cols.iter_mut().zip(other) {
                if o.is_some() && *c != o {
                    *c = None;
                }
            }
        }
    }
    Some(cols)
}

/// One arm of a query: `SELECT ...`, `VALUES ...` or `( query )`.
fn arm(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = s.first()?;
    if first.is_kw("SELECT") {
        select_list(s)
    } else if first.is_kw("VALUES") {
        values_list(s, depth)
    } else if first.is_punct("(") {
        let close = close_of(s, 0)?;
        let rest_ok = s.get(close + 1).is_none_or(|t| is_kw_in(t, AFTER_QUERY));
        if !rest_ok {
            return None;
        }
        let inner = &s[1..close];
        if inner.first().is_some_and(|t| t.is_kw("WITH")) {
            statement(inner, depth + 1)
        } else {
            query(inner, depth + 1)
        }
    } else {
        None
    }
}

/// Items of `SELECT [DISTINCT [ON (...)] | ALL] items [FROM ...]`.
fn select_list(s: &[Token<'_>]) -> Option<Columns> {
    let mut k = 1;
    if s.get(k).is_some_and(|t| t.is_kw("DISTINCT")) {
        k += 1;
        if s.get(k).is_some_and(|t| t.is_kw("ON")) && s.get(k + 1).is_some_and(|t| t.is_punct("("))
        {
            k = close_of(s, k + 1)? + 1;
        }
    } else if s.get(k).is_some_and(|t| t.is_kw("ALL")) {
        k += 1;
    }
    let list = s.get(k..)?;
    let end = top_level(list)?
        .into_iter()
        .find(|&i| is_kw_in(&list[i], LIST_END) && !(i > 0 && list[i - 1].is_kw("AS")));
    if let Some(e) = end {
        // SELECT ... INTO creates a table and returns no rows.
        if list[e].is_kw("INTO") {
            return None;
        }
    }
    items(&list[..end.unwrap_or(list.len())], 0)
}

/// `VALUES (..), (..)`: a column's type where every row agrees on it.
fn values_list(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    let mut k = 1;
    let mut cols: Option<Columns> = None;
    while s.get(k).is_some_and(|t| t.is_punct("(")) {
        let close = close_of(s, k)?;
        let row = items(&s[k + 1..close], depth + 1)?;
        match &mut cols {
            None => cols = Some(row),
            Some(c) if c.len() == row.len() => {
                for (a, b) in c.iter_mut().zip(row) {
                    if *a != b {
                        *a = None;
                    }
                }
            }
            Some(_) => return None,
        }
        k = close + 1;
        if !s.get(k).is_some_and(|t| t.is_punct(",")) {
            break;
        }
        k += 1;
    }
    cols
}

/// Types of a comma-separated item list; `None` for `*` items or an empty item.
fn items(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    if s.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut commas: Vec<usize> = top_level(s)?
        .into_iter()
        .filter(|&i| s[i].is_punct(","))
        .collect();
    commas.push(s.len());
    for c in commas {
        let item = &s[start..c];
        if item.is_empty() || is_star(item) {
            return None;
        }
        out.push(item_type(item, depth));
        start = c + 1;
    }
    Some(out)
}

/// `*` or `t.*`.
fn is_star(item: &[Token<'_>]) -> bool {
    match item {
        [t] => t.is_punct("*"),
        [.., dot, t] => t.is_punct("*") && dot.is_punct("."),
        _ => false,
    }
}

/// Whether `t` can end an operand, so that a name after it is an alias.
fn ends_operand(t: &Token<'_>) -> bool {
    match t.kind {
        Kind::Number | Kind::Str | Kind::DollarStr | Kind::Param | Kind::QuotedIdent => true,
        Kind::Word => !is_reserved(t.text) || in_list(t.text, VALUE_KEYWORDS) || t.is_kw("END"),
        _ => t.is_punct(")") || t.is_punct("]"),
    }
}

/// Type of one select item, ignoring an `AS alias` or bare alias.
fn item_type(item: &[Token<'_>], depth: usize) -> Option<PgType> {
    let n = item.len();
    if n >= 3
        && item[n - 2].is_kw("AS")
        && matches!(item[n - 1].kind, Kind::Word | Kind::QuotedIdent | Kind::Str)
    {
        return expr(&item[..n - 2], depth).flatten();
    }
    if let Some(t) = expr(item, depth) {
        return t;
    }
    if n >= 2 && is_name(&item[n - 1]) && ends_operand(&item[n - 2]) {
        return expr(&item[..n - 1], depth).flatten();
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use PgType::*;

    fn types(s: &str) -> Option<Vec<Option<PgType>>> {
        result_column_types(s)
    }

    /// The type of the single column of `SELECT <item>`.
    pub(crate) fn one(item: &str) -> Option<PgType> {
        match types(&format!("SELECT {item}")) {
            Some(v) if v.len() == 1 => v[0],
            other => panic!("{item}: {other:?}"),
        }
    }

    #[test]
    fn aliases() {
        assert_eq!(one("count(*) AS n"), Some(Int8));
        assert_eq!(one("count(*) n"), Some(Int8));
        assert_eq!(one("x::text name"), Some(Text));
        assert_eq!(one("x::text AS \"Name\""), Some(Text));
        assert_eq!(one("x::double precision d"), Some(Float8));
        assert_eq!(one("1 AS from"), Some(Int8));
        assert_eq!(one("a = b AS eq"), Some(Bool));
        assert_eq!(one("a = b eq"), Some(Bool));
        assert_eq!(one("1 + 2 three"), Some(Int8));
        assert_eq!(one("CASE WHEN a THEN 1 END c"), None);
        assert_eq!(one("a || b AS s"), Some(Text));
        assert_eq!(one("'x' AS 'y'"), Some(Text));
        assert_eq!(
            types("SELECT 1 AS a, 'x' b, count(*) AS from FROM t"),
            Some(vec![Some(Int8), Some(Text), Some(Int8)])
        );
    }

    #[test]
    fn lists() {
        // Commas inside calls, strings, brackets and CASTs do not split items.
        assert_eq!(
            types("SELECT printf('%d,%d', a, b), 'a,b', coalesce(a, b)::text, ARRAY[1, 2], CAST(a AS numeric(5, 2)) FROM t WHERE x IN (1, 2)"),
            Some(vec![Some(Text), Some(Text), Some(Text), None, Some(Numeric)])
        );
        assert_eq!(
            types("select $1::int8 + 1, x::text as name, count(*) as n, a = b from t"),
            Some(vec![Some(Int8), Some(Text), Some(Int8), Some(Bool)])
        );
        assert_eq!(
            types("SELECT DISTINCT a::text, 1 FROM t"),
            Some(vec![Some(Text), Some(Int8)])
        );
        assert_eq!(
            types("SELECT DISTINCT ON (a, b) a::text FROM t ORDER BY a"),
            Some(vec![Some(Text)])
        );
        assert_eq!(types("SELECT ALL 1;"), Some(vec![Some(Int8)]));
        assert_eq!(
            types("select 1 /* , */ , -- x, y\n 'a'"),
            Some(vec![Some(Int8), Some(Text)])
        );
        assert_eq!(
            types("SELECT extract(year from d)::int, 2 FROM t"),
            Some(vec![Some(Int4), Some(Int8)])
        );
        assert_eq!(types("SELECT a FROM t LIMIT 1"), Some(vec![None]));
    }

    #[test]
    fn stars() {
        assert_eq!(types("SELECT * FROM t"), None);
        assert_eq!(types("SELECT t.* FROM t"), None);
        assert_eq!(types("SELECT a, s.t.* FROM t"), None);
        assert_eq!(types("SELECT 1, * FROM t"), None);
        assert_eq!(types("INSERT INTO t VALUES (1) RETURNING *"), None);
        assert_eq!(
            types("SELECT count(*), t.a * 2 FROM t"),
            Some(vec![Some(Int8), None])
        );
    }

    #[test]
    fn with_and_set_operations() {
        assert_eq!(
            types("WITH x AS (SELECT * FROM t), y (a) AS MATERIALIZED (SELECT 1) SELECT count(*) FROM x"),
            Some(vec![Some(Int8)])
        );
        assert_eq!(
            types("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n::int4, 'a' FROM r"),
            Some(vec![Some(Int4), Some(Text)])
        );
        assert_eq!(
            types("SELECT a::text, 1 FROM t UNION ALL SELECT b, 2 FROM u ORDER BY 1"),
            Some(vec![Some(Text), Some(Int8)])
        );
        assert_eq!(
            types("SELECT 1 INTERSECT SELECT 2 EXCEPT SELECT 3"),
            Some(vec![Some(Int8)])
        );
        // An arm that types a column differently leaves it undetermined.
        assert_eq!(
            types("SELECT 1, 'a' UNION SELECT 1.5, 'b'"),
            Some(vec![None, Some(Text)])
        );
        assert_eq!(
            types("(SELECT x::text FROM t) UNION (SELECT y FROM u) LIMIT 3"),
            Some(vec![Some(Text)])
        );
        assert_eq!(types("(SELECT 1, 2)"), Some(vec![Some(Int8), Some(Int8)]));
        assert_eq!(
            types("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING id::int8"),
            Some(vec![Some(Int8)])
        );
        assert_eq!(
            types("VALUES (1, 'a', 1), (2, 'b', 2.5)"),
            Some(vec![Some(Int8), Some(Text), None])
        );
    }

    #[test]
    fn returning() {
        assert_eq!(
            types("INSERT INTO t (id, name) VALUES ($1, $2) RETURNING id, name::text"),
            Some(vec![None, Some(Text)])
        );
        assert_eq!(
            types("UPDATE t SET a = a + 1 WHERE id = $1 RETURNING a, a > 10 AS big"),
            Some(vec![None, Some(Bool)])
        );
        assert_eq!(
            types("DELETE FROM t RETURNING count(*) OVER ()"),
            Some(vec![Some(Int8)])
        );
        assert_eq!(
            types("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2 RETURNING a::text;"),
            Some(vec![Some(Text)])
        );
    }

    #[test]
    fn no_rows_or_unknown() {
        for s in [
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t SELECT a::int FROM u",
            "UPDATE t SET a = 1",
            "DELETE FROM t WHERE a = (SELECT 1)",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "CREATE TABLE t (a int)",
            "SELECT 1 INTO t",
            "BEGIN",
            "SET x = 1",
            "TABLE t",
            "SHOW x",
            "",
            ";",
            "SELECT",
            "SELECT 1,",
            "SELECT , 1",
            "SELECT (1",
            "SELECT 1)",
            "SELECT 'a",
            "SELECT 1; SELECT 2",
            "WITH x SELECT 1",
            "INSERT INTO t VALUES (1) RETURNING",
        ] {
            assert_eq!(types(s), None, "{s}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(types(&deep), Some(vec![None]));
        let shallow = format!("SELECT {}1{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(types(&shallow), Some(vec![Some(Int8)]));
        let arms = format!("{}SELECT 1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(types(&arms), None);
        let _ = types(&"(".repeat(100_000));
        let _ = types(&format!("SELECT {}", "CASE ".repeat(10_000)));
    }
}
