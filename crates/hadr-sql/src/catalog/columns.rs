//! The types of a catalog query's result columns, which SQLite cannot tell
//! before the query runs (its columns are expressions over the catalog
//! subqueries) but a driver's Describe needs: a column named after a
//! catalog column, or aliasing one (`a.attnotnull AS not_null`), has that
//! column's PostgreSQL type; `NOT x` is a boolean.

use crate::lexer::{tokenize, Kind};
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

/// The type of result column `name` of the catalog query `sql`: by its
/// name, or by what it aliases in the first SELECT list.
pub fn column_type(sql: &str, name: &str) -> Option<PgType> {
    // An alias is looked through first: `pg_encoding_to_char(d.encoding)
    // AS "Encoding"` is text, whatever its name.
    match aliased(sql, name) {
        Some(t) => t,
        None => catalog_column_type(name),
    }
}

/// The type of the expression `name` aliases in the first SELECT list:
/// None if nothing is aliased so, Some(None) if its type is unknown.
fn aliased(sql: &str, name: &str) -> Option<Option<PgType>> {
    let toks = tokenize(sql);
    let s: Vec<_> = toks.iter().filter(|t| !t.is_trivia()).collect();
    let select = s.iter().position(|t| t.is_kw("SELECT"))?;
    let mut depth = 0i32;
    let mut item_start = select + 1;
    let mut k = select + 1;
    while k <= s.len() {
        let end_of_list = k == s.len() || (depth == 0 && s[k].is_kw("FROM"));
        if end_of_list || (depth == 0 && s[k].is_punct(",")) {
            let item = &s[item_start..k];
            if item.len() >= 3
                && item[item.len() - 2].is_kw("AS")
                && crate::lexer::ident_value(item[item.len() - 1]).eq_ignore_ascii_case(name)
            {
                let expr = &item[..item.len() - 2];
                if expr.first().is_some_and(|t| t.is_kw("NOT")) {
                    return Some(Some(PgType::Bool));
                }
                if expr.first().is_some_and(|t| t.is_kw("array_agg")) {
                    return Some(Some(PgType::TextArray));
                }
                return Some(match expr.last() {
                    Some(t) if t.kind == Kind::Word => catalog_column_type(t.text),
                    _ => None,
                });
            }
            if end_of_list {
                return None;
            }
            item_start = k + 1;
        } else if s[k].is_punct("(") {
            depth += 1;
        } else if s[k].is_punct(")") {
            depth -= 1;
        }
        k += 1;
    }
    None
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
    }
}
