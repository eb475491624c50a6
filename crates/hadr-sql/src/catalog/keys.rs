//! Key columns one row each: what PostgreSQL clients get from
//! `unnest(conkey)`, `generate_subscripts(conkey, 1)` and
//! `information_schema._pg_expandarray(indkey)`, set-returning functions
//! over arrays SQLite has neither of. When a query uses them,
//! `pg_constraint` and `pg_index` are given one row per key column, with
//! its position (`hadr_ord`, from 1), its column number (`hadr_key`) and,
//! for a foreign key, the referenced column's number (`hadr_fkey`); the
//! calls become those columns (see the parent module's `rewrite`).

use super::{constraint, index, indexes, HIDDEN};

/// Every key column of every index and constraint, by the OID of the
/// index or constraint (`hadr_con`).
pub(super) fn keys() -> String {
    format!(
        "SELECT CAST(hadr_oid(x.name) AS INTEGER) AS hadr_con, ii.seqno + 1 AS hadr_ord, \
           ii.cid + 1 AS hadr_key, NULL AS hadr_fkey \
         FROM ({idx}) x, pragma_index_info(x.sqlite_name) ii WHERE x.sqlite_name IS NOT NULL \
         UNION ALL \
         SELECT CAST(hadr_oid(x.name) AS INTEGER), 1, \
           (SELECT p.cid + 1 FROM pragma_table_info(x.tbl) p WHERE p.pk > 0), NULL \
         FROM ({idx}) x WHERE x.sqlite_name IS NULL \
         UNION ALL \
         SELECT CAST(hadr_oid(s.name || '_' || (SELECT group_concat(f2.\"from\", '_') \
             FROM pragma_foreign_key_list(s.name) f2 WHERE f2.id = fk.id) || '_fkey') AS INTEGER), \
           fk.seq + 1, \
           (SELECT p.cid + 1 FROM pragma_table_info(s.name) p WHERE p.name = fk.\"from\"), \
           (SELECT p.cid + 1 FROM pragma_table_info(fk.\"table\") p WHERE p.name = coalesce(fk.\"to\", \
             (SELECT q.name FROM pragma_table_info(fk.\"table\") q WHERE q.pk = fk.seq + 1))) \
         FROM sqlite_schema s, pragma_foreign_key_list(s.name) fk WHERE s.type = 'table' AND {HIDDEN}",
        idx = indexes()
    )
}

/// `pg_constraint`, one row per key column.
pub(super) fn constraint_keys() -> String {
    format!(
        "SELECT k.*, e.hadr_ord, e.hadr_key, e.hadr_fkey FROM ({}) k JOIN ({}) e ON e.hadr_con = k.oid",
        constraint(),
        keys()
    )
}

/// `pg_index`, one row per key column.
pub(super) fn index_keys() -> String {
    format!(
        "SELECT i.*, e.hadr_ord, e.hadr_key FROM ({}) i JOIN ({}) e ON e.hadr_con = i.indexrelid",
        index(),
        keys()
    )
}

/// The column a key-array call stands for, given the array's column
/// (`conkey`, `indkey`, `confkey`) and whether the position is wanted.
pub(super) fn column_for(array: &str, position: bool) -> Option<&'static str> {
    match (array.to_ascii_lowercase().as_str(), position) {
        ("conkey" | "indkey" | "confkey", true) => Some("hadr_ord"),
        ("conkey" | "indkey", false) => Some("hadr_key"),
        ("confkey", false) => Some("hadr_fkey"),
        _ => None,
    }
}
