//! Carrying out an `ALTER TABLE` SQLite has no form of by rebuilding the
//! table, following SQLite's documented procedure ("Making Other Kinds Of
//! Table Schema Changes"): the edited definition
//! (crates/hadr-sql/src/alter.rs) is created under a temporary name, the
//! rows copied, the old table dropped, the new one renamed, its indexes and
//! triggers recreated, its foreign keys checked. All of it runs in one
//! savepoint, so it commits or vanishes whole, and replicates as one
//! transaction like any other write.
//!
//! SQLite's `DROP TABLE` deletes the rows first, which the foreign keys of
//! other tables that reference this one would refuse; foreign keys can only
//! be switched off outside a transaction, so such a table is rebuilt only
//! by a statement of its own (autocommit), with them off for its duration.

use hadr_sql::{edit_create, AlterAction, PgType, TableRebuild};
use rusqlite::OptionalExtension;

use crate::errors::{from_sqlite, sqlstate, PgError};

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sqlite(e: rusqlite::Error) -> PgError {
    from_sqlite(&e)
}

/// Rebuild the table as `plan` says, on the session's connection (the
/// write permit is held).
pub fn execute(conn: &rusqlite::Connection, plan: &TableRebuild) -> Result<(), PgError> {
    run(conn, plan, conn.is_autocommit())
}

fn run(conn: &rusqlite::Connection, plan: &TableRebuild, autocommit: bool) -> Result<(), PgError> {
    let found: Option<(String, String)> = conn
        .query_row(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [&plan.table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sqlite)?;
    let Some((name, create)) = found else {
        if plan.if_exists {
            return Ok(());
        }
        return Err(PgError::new(
            sqlstate::UNDEFINED_TABLE,
            format!("relation \"{}\" does not exist", plan.table),
        ));
    };
    let referenced: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema s, pragma_foreign_key_list(s.name) f \
             WHERE s.type = 'table' AND s.name <> ?1 COLLATE NOCASE AND f.\"table\" = ?1 COLLATE NOCASE)",
            [&name],
            |r| r.get(0),
        )
        .map_err(sqlite)?;
    if referenced && !autocommit {
        return Err(PgError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("hadr does not support this ALTER TABLE inside a transaction block: other tables' foreign keys reference \"{name}\""),
        )
        .with_hint("run it as a statement of its own, outside BEGIN … COMMIT"));
    }
    let tmp = quote(&format!("hadr_rebuild_{name}"));
    let new_create = edit_create(&create, &name, &plan.actions, &tmp)
        .map_err(|e| PgError::new(e.sqlstate(), e.to_string()))?;
    // A primary key holds no NULLs; SQLite's INTEGER PRIMARY KEY would
    // quietly number them instead of refusing.
    for a in &plan.actions {
        if let hadr_sql::AlterAction::AddConstraint {
            primary_key: true,
            columns,
            ..
        } = a
        {
            for c in columns {
                let has_null: bool = conn
                    .query_row(
                        &format!(
                            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)",
                            quote(&name),
                            quote(c)
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(sqlite)?;
                if has_null {
                    return Err(PgError::new(
                        sqlstate::NOT_NULL_VIOLATION,
                        format!("column \"{c}\" of relation \"{name}\" contains null values"),
                    ));
                }
            }
        }
    }
    let extras: Vec<String> = {
        let mut st = conn
            .prepare(
                "SELECT sql FROM sqlite_schema WHERE tbl_name = ?1 AND type IN ('index', 'trigger') \
                 AND sql IS NOT NULL ORDER BY type, name",
            )
            .map_err(sqlite)?;
        let rows = st
            .query_map([&name], |r| r.get::<_, String>(0))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>());
        rows.map_err(sqlite)?
    };
    if referenced {
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(sqlite)?;
    }
    let q = quote(&name);
    let select = select_list(conn, &name, plan)?;
    let mut steps = format!(
        "SAVEPOINT hadr_rebuild;\n{new_create};\nINSERT INTO {tmp} SELECT {select} FROM {q};\n\
         DROP TABLE {q};\nALTER TABLE {tmp} RENAME TO {q};\n"
    );
    for e in &extras {
        steps.push_str(e);
        steps.push_str(";\n");
    }
    let r = conn.execute_batch(&steps).map_err(sqlite).and_then(|()| {
        let violation: bool = conn
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM pragma_foreign_key_check({}))",
                    quote_literal(&name)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        if violation {
            return Err(PgError::new(
                sqlstate::FOREIGN_KEY_VIOLATION,
                format!("insert or update on table \"{name}\" violates foreign key constraint"),
            ));
        }
        check_types(conn, &name, plan)?;
        conn.execute_batch("RELEASE hadr_rebuild").map_err(sqlite)
    });
    if r.is_err() {
        let _ = conn.execute_batch("ROLLBACK TO hadr_rebuild; RELEASE hadr_rebuild");
    }
    if referenced {
        // Back on whatever happened: every session runs with them on.
        if let Err(e) = conn.execute_batch("PRAGMA foreign_keys = ON") {
            return Err(sqlite(e));
        }
    }
    r
}

/// What the rows are copied with: `*`, or each column by name with a
/// `USING` expression in place of its column.
fn select_list(
    conn: &rusqlite::Connection,
    table: &str,
    plan: &TableRebuild,
) -> Result<String, PgError> {
    let using = |c: &str| {
        plan.actions.iter().find_map(|a| match a {
            AlterAction::SetType {
                column,
                using: Some(u),
                ..
            } if column.eq_ignore_ascii_case(c) => Some(u.clone()),
            _ => None,
        })
    };
    if !plan
        .actions
        .iter()
        .any(|a| matches!(a, AlterAction::SetType { using: Some(_), .. }))
    {
        return Ok("*".into());
    }
    let mut st = conn
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .map_err(sqlite)?;
    let names = st
        .query_map([table], |r| r.get::<_, String>(0))
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .map_err(sqlite)?;
    Ok(names
        .iter()
        .map(|n| using(n).unwrap_or_else(|| quote(n)))
        .collect::<Vec<_>>()
        .join(", "))
}

/// The storage classes a column of declared type `ty` may hold after
/// conversion; None: any. By the type hadr announces for the declaration
/// (`PgType::from_sqlite_decltype`, which follows SQLite's affinity rules).
fn allowed_classes(ty: &str) -> Option<&'static str> {
    match PgType::from_sqlite_decltype(ty)? {
        PgType::Int2 | PgType::Int4 | PgType::Int8 => Some("'integer'"),
        PgType::Float4 | PgType::Float8 | PgType::Numeric => Some("'integer', 'real'"),
        _ => None,
    }
}

/// After `ALTER COLUMN … TYPE`: every value took the new type (SQLite
/// would keep what does not convert as it was, where PostgreSQL refuses).
fn check_types(
    conn: &rusqlite::Connection,
    table: &str,
    plan: &TableRebuild,
) -> Result<(), PgError> {
    for a in &plan.actions {
        let AlterAction::SetType { column, ty, .. } = a else {
            continue;
        };
        let Some(classes) = allowed_classes(ty) else {
            continue;
        };
        let c = quote(column);
        let bad: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT CAST({c} AS TEXT) FROM {} WHERE {c} IS NOT NULL AND typeof({c}) NOT IN ({classes}) LIMIT 1",
                    quote(table)
                ),
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite)?;
        if let Some(v) = bad {
            return Err(PgError::new(
                sqlstate::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type {ty}: \"{v}\""),
            )
            .with_hint(format!(
                "give the conversion: ALTER COLUMN {column} TYPE {ty} USING …"
            )));
        }
    }
    Ok(())
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
