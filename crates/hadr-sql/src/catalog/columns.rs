//! The types of a catalog query's result columns, which SQLite cannot tell
//! before the query runs (its columns are expressions over the catalog
//! subqueries) but a driver's Describe needs: a column named after a
//! catalog column, or aliasing one (`a.attnotnull AS not_null`), has that
//! column's PostgreSQL type; `NOT x` is a boolean.

use crate::lexer::{ident_value, tokenize, Kind, Token};
use crate::PgType;

/// Catalog columns that are integers (oids, numbers, counts).
const INTS: &[&str] = &[
    "oid",
    "attrelid",
    "atttypid",
    "attnum",
    "atttypmod",
    "attlen",
    "attndims",
    "relnamespace",
    "relowner",
    "relam",
    "relnatts",
    "relchecks",
    "reltype",
    "reloftype",
    "relpages",
    "reltablespace",
    "indexrelid",
    "indrelid",
    "indnatts",
    "indnkeyatts",
    "adrelid",
    "adnum",
    "conrelid",
    "confrelid",
    "conindid",
    "contypid",
    "conparentid",
    "connamespace",
    "typnamespace",
    "typowner",
    "typlen",
    "typrelid",
    "typelem",
    "typarray",
    "typbasetype",
    "typtypmod",
    "typcollation",
    "nspowner",
    "datdba",
    "encoding",
    "objoid",
    "objsubid",
    "classoid",
    "enumtypid",
    "inhrelid",
    "inhparent",
    "inhseqno",
    "attstattarget",
    "relid",
];

/// The PostgreSQL type of a catalog column named `name`, if known.
pub fn catalog_column_type(name: &str) -> Option<PgType> {
    let n = name.to_ascii_lowercase();
    if matches!(
        n.as_str(),
        "indkey" | "indoption" | "indclass" | "indcollation"
    ) {
        Some(PgType::Int2Vector)
    } else if super::is_bool_column(&n) {
        Some(PgType::Bool)
    } else if INTS.contains(&n.as_str()) {
        Some(PgType::Int8)
    } else {
        None
    }
}

/// The type of result column `name` of the catalog query `sql`: by what
/// it aliases (in any SELECT list of the statement), else by its name.
pub fn column_type(sql: &str, name: &str) -> Option<PgType> {
    let toks = tokenize(sql);
    let s: Vec<&Token<'_>> = toks.iter().filter(|t| !t.is_trivia()).collect();
    // An alias is looked through first: `pg_encoding_to_char(d.encoding)
    // AS "Encoding"` is text, whatever its name.
    match aliased(&s, name, 4) {
        Some(t) => t,
        None => catalog_column_type(name),
    }
}

/// The type of the expression aliased `name` somewhere in `s`: None if
/// nothing is aliased so, Some(None) if its type is unknown. `depth`
/// bounds the chain of aliases followed.
fn aliased(s: &[&Token<'_>], name: &str, depth: u8) -> Option<Option<PgType>> {
    let at = (1..s.len().saturating_sub(1)).find(|&k| {
        s[k].is_kw("AS")
            && matches!(s[k + 1].kind, Kind::Word | Kind::QuotedIdent)
            && ident_value(s[k + 1]).eq_ignore_ascii_case(name)
    })?;
    // Back to the start of the item: a comma, SELECT or an opening
    // parenthesis at the item's own depth.
    let mut level = 0i32;
    let mut start = at;
    while start > 0 {
        let t = s[start - 1];
        if t.is_punct(")") {
            level += 1;
        } else if t.is_punct("(") {
            if level == 0 {
                break;
            }
            level -= 1;
        } else if level == 0 && (t.is_punct(",") || t.is_kw("SELECT") || t.is_kw("DISTINCT")) {
            break;
        }
        start -= 1;
    }
    Some(expr_type(s, &s[start..at], name, depth))
}

/// The type of the expression `e` (tokens of `s`), if it can be told.
fn expr_type(s: &[&Token<'_>], e: &[&Token<'_>], own: &str, depth: u8) -> Option<PgType> {
    let first = e.first()?;
    if first.is_kw("NOT") {
        return Some(PgType::Bool);
    }
    if first.is_kw("array_agg") && e.get(1).is_some_and(|t| t.is_punct("(")) {
        // The aggregated expression: up to ORDER BY or the closing parenthesis.
        let mut level = 0i32;
        let mut end = e.len();
        for (k, t) in e.iter().enumerate().skip(1) {
            if t.is_punct("(") {
                level += 1;
            } else if t.is_punct(")") {
                level -= 1;
                if level == 0 {
                    end = k;
                    break;
                }
            } else if level == 1 && t.is_kw("ORDER") {
                end = k;
                break;
            }
        }
        let inner = e.get(2..end).unwrap_or(&[]);
        return Some(if expr_type(s, inner, own, depth) == Some(PgType::Bool) {
            PgType::BoolArray
        } else {
            PgType::TextArray
        });
    }
    // A CASE yields its branches' values, whatever it compares.
    if e.iter().any(|t| t.is_kw("CASE")) {
        return None;
    }
    // A comparison at the top level is a boolean.
    let mut level = 0i32;
    for t in e {
        if t.is_punct("(") {
            level += 1;
        } else if t.is_punct(")") {
            level -= 1;
        } else if level == 0
            && (["=", "<>", "!=", "<", ">", "<=", ">="]
                .iter()
                .any(|o| t.is_punct(o))
                || t.is_kw("IS")
                || t.is_kw("IN")
                || t.is_kw("LIKE"))
        {
            return Some(PgType::Bool);
        }
    }
    match e.last() {
        Some(t) if t.kind == Kind::Word => catalog_column_type(t.text).or_else(|| {
            // Another alias (`sub.is_expr`): follow it, but not to itself.
            (depth > 0 && !t.text.eq_ignore_ascii_case(own))
                .then(|| aliased(s, t.text, depth - 1).flatten())
                .flatten()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_take_their_source_type() {
        let q = "SELECT pg_catalog.pg_attribute.attname AS name, a.attnotnull AS not_null, \
                 NOT t.typnotnull AS nullable, a.attnum AS \"pos\", f(x) AS other FROM x";
        assert_eq!(column_type(q, "not_null"), Some(PgType::Bool));
        assert_eq!(column_type(q, "nullable"), Some(PgType::Bool));
        assert_eq!(column_type(q, "pos"), Some(PgType::Int8));
        assert_eq!(column_type(q, "name"), None);
        assert_eq!(column_type(q, "other"), None);
        let q = "SELECT pg_catalog.pg_encoding_to_char(d.encoding) as \"Encoding\" FROM d";
        assert_eq!(column_type(q, "Encoding"), None);
        assert_eq!(column_type(q, "relhasindex"), Some(PgType::Bool));
        // Through a subquery's alias, into an aggregate.
        let q = "SELECT c.elements, c.flags FROM (SELECT array_agg(x.name ORDER BY x.ord) AS elements, \
                 array_agg(x.is_expr ORDER BY x.ord) AS flags FROM (SELECT a.attnum = 0 AS is_expr, a.attname AS name \
                 FROM a) AS x) AS c";
        assert_eq!(column_type(q, "elements"), Some(PgType::TextArray));
        assert_eq!(column_type(q, "flags"), Some(PgType::BoolArray));
        let q = "SELECT CASE WHEN a.attnum <= 1 THEN 'yes' ELSE 'no' END AS is_key FROM a";
        assert_eq!(column_type(q, "is_key"), None);
    }
}
