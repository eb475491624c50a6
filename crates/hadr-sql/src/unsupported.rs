//! PostgreSQL statements hadr does not carry out, named, so that a client
//! gets SQLSTATE 0A000 "hadr does not support LISTEN/NOTIFY" instead of
//! SQLite's misleading `near "LISTEN": syntax error` (issue 12 item 4).
//! Only statements SQLite itself has no form of are listed: anything
//! SQLite runs is left to it.

use crate::lexer::{Kind, Token};

/// Leading words and the feature they name; the longest match wins.
const STATEMENTS: &[(&[&str], &str)] = &[
    (&["LISTEN"], "LISTEN/NOTIFY"),
    (&["NOTIFY"], "LISTEN/NOTIFY"),
    (&["UNLISTEN"], "LISTEN/NOTIFY"),
    (&["DO"], "DO blocks (there is no procedural language)"),
    (&["GRANT"], "GRANT/REVOKE; a role's rights are its attributes (READONLY, SUPERUSER) and the access rules"),
    (&["REVOKE"], "GRANT/REVOKE; a role's rights are its attributes (READONLY, SUPERUSER) and the access rules"),
    (&["CLUSTER"], "CLUSTER"),
    (&["LOCK"], "LOCK TABLE (writers are serialised already: one write transaction at a time)"),
    (&["CREATE", "SCHEMA"], "schemas other than public"),
    (&["CREATE", "DATABASE"], "CREATE DATABASE (one database per node)"),
    (&["DROP", "DATABASE"], "DROP DATABASE (one database per node)"),
    (&["CREATE", "SEQUENCE"], "sequences (the INTEGER PRIMARY KEY column numbers itself)"),
    (&["ALTER", "SEQUENCE"], "sequences (the INTEGER PRIMARY KEY column numbers itself)"),
    (&["DROP", "SEQUENCE"], "sequences (the INTEGER PRIMARY KEY column numbers itself)"),
    (&["CREATE", "EXTENSION"], "extensions"),
    (&["DROP", "EXTENSION"], "extensions"),
    (&["CREATE", "FUNCTION"], "CREATE FUNCTION (there is no procedural language)"),
    (&["CREATE", "OR", "REPLACE", "FUNCTION"], "CREATE FUNCTION (there is no procedural language)"),
    (&["CREATE", "PROCEDURE"], "CREATE PROCEDURE (there is no procedural language)"),
    (&["CREATE", "OR", "REPLACE", "PROCEDURE"], "CREATE PROCEDURE (there is no procedural language)"),
    (&["CREATE", "TYPE"], "CREATE TYPE"),
    (&["CREATE", "DOMAIN"], "CREATE DOMAIN"),
    (&["CREATE", "MATERIALIZED", "VIEW"], "materialized views"),
    (&["REFRESH", "MATERIALIZED", "VIEW"], "materialized views"),
    (&["CREATE", "PUBLICATION"], "logical replication (hadr replicates the whole database by itself)"),
    (&["CREATE", "SUBSCRIPTION"], "logical replication (hadr replicates the whole database by itself)"),
];

/// What a reference to a relation of PostgreSQL's catalogs is refused as.
const CATALOGS: &str = "this catalog relation yet: hadr answers pg_class, pg_namespace, pg_attribute, pg_attrdef, pg_index, pg_constraint, pg_type, pg_am, pg_database, pg_roles, pg_settings, pg_description and the empty ones psql reads, and information_schema's tables, columns, schemata, views, table_constraints, key_column_usage, constraint_column_usage and referential_constraints (issue 12)";

/// The feature a statement asks for that hadr does not have, if any.
pub(crate) fn unsupported(toks: &[Token<'_>]) -> Option<&'static str> {
    if catalog_relation(toks) {
        return Some(CATALOGS);
    }
    let words: Vec<&str> = toks
        .iter()
        .filter(|t| !matches!(t.kind, Kind::Space | Kind::LineComment | Kind::BlockComment))
        .take(4)
        .map_while(|t| (t.kind == Kind::Word).then_some(t.text))
        .collect();
    STATEMENTS
        .iter()
        .filter(|(lead, _)| {
            lead.len() <= words.len()
                && lead
                    .iter()
                    .zip(&words)
                    .all(|(l, w)| w.eq_ignore_ascii_case(l))
        })
        .max_by_key(|(lead, _)| lead.len())
        .map(|(_, feature)| *feature)
}

/// Whether the statement names a relation `pg_catalog.x` or
/// `information_schema.x` (a call `pg_catalog.f(…)` is a function, whose
/// schema the rewriter drops).
fn catalog_relation(toks: &[Token<'_>]) -> bool {
    let s: Vec<&Token<'_>> = toks
        .iter()
        .filter(|t| !matches!(t.kind, Kind::Space | Kind::LineComment | Kind::BlockComment))
        .collect();
    s.windows(3).enumerate().any(|(i, w)| {
        let schema = w[0].kind == Kind::Word
            && (w[0].text.eq_ignore_ascii_case("pg_catalog")
                || w[0].text.eq_ignore_ascii_case("information_schema"));
        // Not `x.pg_catalog`, nor a type: `x::pg_catalog.int4`, `CAST(x AS pg_catalog.int4)`.
        let not_after_dot =
            i == 0 || !(s[i - 1].is_punct(".") || s[i - 1].is_punct("::") || s[i - 1].is_kw("AS"));
        schema
            && not_after_dot
            && w[1].is_punct(".")
            && matches!(w[2].kind, Kind::Word | Kind::QuotedIdent)
            && !s.get(i + 3).is_some_and(|t| t.is_punct("("))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn of(s: &str) -> Option<&'static str> {
        unsupported(&tokenize(s))
    }

    #[test]
    fn postgres_only_statements_are_named() {
        assert_eq!(of("LISTEN chan"), Some("LISTEN/NOTIFY"));
        assert_eq!(of("  notify chan, 'x'"), Some("LISTEN/NOTIFY"));
        assert_eq!(
            of("create or replace function f() returns int"),
            Some("CREATE FUNCTION (there is no procedural language)")
        );
        assert_eq!(of("CREATE SCHEMA app"), Some("schemas other than public"));
        // What psql's \\d and drivers read, named; a catalog function is not.
        assert_eq!(of("SELECT * FROM pg_catalog.pg_type"), Some(CATALOGS));
        assert_eq!(
            of("SELECT * FROM information_schema.routines"),
            Some(CATALOGS)
        );
        assert_eq!(of("SELECT pg_catalog.version()"), None);
        assert_eq!(of("SELECT x.pg_catalog.y FROM x"), None);
        assert_eq!(
            of("SELECT x::pg_catalog.int4, CAST(y AS pg_catalog.text)"),
            None
        );
        // SQLite's own statements are SQLite's.
        for s in [
            "CREATE TABLE t(a)",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE t",
            "SELECT 1",
            "CREATE TRIGGER x",
            "VACUUM",
            "COPY t FROM STDIN",
            "",
        ] {
            assert_eq!(of(s), None, "{s}");
        }
    }
}
