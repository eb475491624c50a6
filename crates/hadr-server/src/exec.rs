//! Statement preparation and execution on a session's SQLite connection.
//!
//! Everything here blocks; it runs on the session's own OS thread, never on
//! a tokio worker, where a blocking SQLite call would stall every task
//! scheduled there.

use std::sync::{Arc, Mutex};

use hadr_engine::Engine;
use hadr_log::Lsn;
use hadr_sql::{Command, ParamHint, PgType};
use rusqlite::types::Value;
use rusqlite::Connection;

use crate::errors::{from_sqlite, sqlstate, PgError};

/// A session's SQLite connection and the engine it captures into.
pub struct SessionDb {
    /// The connection.
    pub conn: Connection,
    /// The engine.
    pub engine: Arc<Engine>,
    /// What `now()` and `statement_timestamp()` answer
    /// (crates/hadr-server/src/pg_functions.rs).
    pub clocks: Arc<crate::pg_functions::Clocks>,
}

/// A result column: its name and, when known before execution, its type.
#[derive(Clone, Debug)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type from the declared column type or the expression; None = decide from the data.
    pub ty: Option<PgType>,
}

/// What the session knows about a prepared statement (the SQLite handle itself
/// lives in the connection's statement cache, keyed by `sql`).
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The client's text.
    pub original: String,
    /// Text handed to SQLite.
    pub sql: String,
    /// What kind of statement it is.
    pub command: Command,
    /// Types of `$1..$n`.
    pub param_types: Vec<PgType>,
    /// Result columns (empty if the statement returns no rows).
    pub columns: Vec<Column>,
    /// Whether SQLite says the statement does not write.
    pub readonly: bool,
    /// `sql` is several statements run as one unit ([`hadr_sql`]'s
    /// `Translated::batch`: `DROP TABLE a, b`).
    pub batch: bool,
    /// An `ALTER TABLE` carried out by rebuilding the table
    /// (crates/hadr-server/src/rebuild.rs).
    pub rebuild: Option<hadr_sql::TableRebuild>,
}

impl Prepared {
    /// A statement hadr answers itself, without SQLite (BEGIN, SET, SHOW…).
    pub fn session(original: String, command: Command) -> Prepared {
        Prepared {
            original,
            sql: String::new(),
            command,
            param_types: vec![],
            columns: vec![],
            readonly: true,
            batch: false,
            rebuild: None,
        }
    }
}

/// The result of executing a statement.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Column names and final types.
    pub columns: Vec<(String, PgType)>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
    /// Rows changed, for DML tags.
    pub changes: u64,
    /// A write transaction ended with this statement (committed or rolled back);
    /// the caller releases the write gate, then captures with [`capture`].
    pub write_ended: bool,
    /// Whether the connection is outside a transaction afterwards.
    pub autocommit_after: bool,
}

/// Why execution did not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The statement writes and the session does not hold the write permit.
    #[error("the statement writes and the session does not hold the write permit")]
    NeedPermit,
    /// A PostgreSQL error for the client. The flag says whether the
    /// connection is outside a transaction afterwards.
    #[error("{0}")]
    Pg(PgError, bool),
    /// Capture failed after a commit: the node must stop writing.
    #[error("{0}")]
    Capture(PgError),
}

/// The name PostgreSQL gives a result column SQLite names after its text:
/// an unaliased function call is named after the function (`count(*)` →
/// `count`, `pg_catalog.format_type(…)` → `format_type`), as clients that
/// read columns by name expect. Anything else keeps SQLite's name.
fn pg_column_name(sqlite: &str) -> String {
    let Some(open) = sqlite.find('(') else {
        return sqlite.to_string();
    };
    let func = &sqlite[..open];
    let ident = !func.is_empty()
        && func
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !func.starts_with(|c: char| c.is_ascii_digit());
    let name = func.rsplit('.').next().unwrap_or(func);
    if !ident || !sqlite.ends_with(')') || name.is_empty() || name.eq_ignore_ascii_case("cast") {
        return sqlite.to_string();
    }
    name.to_ascii_lowercase()
}

/// Guess a type for an expression column from its text (SQLite names an
/// unaliased expression column after its source text).
fn expr_type_guess(name: &str) -> Option<PgType> {
    let n = name.trim().to_ascii_lowercase();
    const INTS: [&str; 10] = [
        "count(",
        "length(",
        "instr(",
        "unicode(",
        "changes(",
        "total_changes(",
        "last_insert_rowid(",
        "random(",
        "octet_length(",
        "sign(",
    ];
    if INTS.iter().any(|p| n.starts_with(p)) {
        return Some(PgType::Int8);
    }
    if n.starts_with("avg(") || n.starts_with("total(") {
        return Some(PgType::Float8);
    }
    if [
        "typeof(",
        "upper(",
        "lower(",
        "sqlite_version(",
        "hex(",
        "quote(",
        "printf(",
        "format(",
        "date(",
        "datetime(",
        "time(",
    ]
    .iter()
    .any(|p| n.starts_with(p))
    {
        return Some(PgType::Text);
    }
    None
}

/// `sum(col)`, `min(col)`, `max(col)`, `abs(col)` (SQLite names an unaliased
/// expression column after its text): the type follows the argument column's
/// declared type, as PostgreSQL's does (sum of integers is bigint).
fn aggregate_type(meta: &Mutex<Connection>, name: &str) -> Option<PgType> {
    let n = name.trim();
    let open = n.find('(')?;
    let func = n[..open].trim().to_ascii_lowercase();
    if !matches!(func.as_str(), "sum" | "min" | "max" | "abs") {
        return None;
    }
    let arg = n[open + 1..].strip_suffix(')')?.trim();
    let (table, column) = match arg.rsplit_once('.') {
        Some((t, c)) => (Some(t.trim_matches('"')), c.trim_matches('"')),
        None => (None, arg.trim_matches('"')),
    };
    if column.is_empty() || !column.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let t = column_type(
        &meta.lock().unwrap_or_else(|p| p.into_inner()),
        table,
        column,
    )?;
    match (func.as_str(), t) {
        (_, PgType::Int2 | PgType::Int4 | PgType::Int8) => Some(PgType::Int8),
        (_, PgType::Float4 | PgType::Float8) => Some(PgType::Float8),
        ("min" | "max", other) => Some(other),
        _ => None,
    }
}

fn resolve_hint(conn: &Connection, hint: &ParamHint) -> PgType {
    match hint {
        ParamHint::Unknown => PgType::Text,
        ParamHint::Type(t) => *t,
        ParamHint::Column { table, column } => {
            column_type(conn, table.as_deref(), column).unwrap_or(PgType::Text)
        }
    }
}

/// Declared type of `table.column` (or of the first table with such a column);
/// `#N` names the N-th column of `table`.
fn column_type(conn: &Connection, table: Option<&str>, column: &str) -> Option<PgType> {
    let tables: Vec<String> = match table {
        Some(t) => vec![t.to_string()],
        None => {
            let mut st = conn
                .prepare_cached(
                    "SELECT name FROM sqlite_schema WHERE type IN ('table','view') ORDER BY name",
                )
                .ok()?;
            let rows = st.query_map([], |r| r.get::<_, String>(0)).ok()?;
            rows.filter_map(Result::ok).collect()
        }
    };
    let position: Option<usize> = column.strip_prefix('#').and_then(|n| n.parse().ok());
    for t in tables {
        // Cached: this runs for every parameter of every Parse (drivers
        // re-parse unnamed statements each time), in a pipelined
        // transaction inside the write lock's window.
        let mut st = conn
            .prepare_cached("SELECT name, type, pk FROM pragma_table_info(?1)")
            .ok()?;
        let cols: Vec<(String, String, i64)> = st
            .query_map([&t], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .ok()?
            .filter_map(Result::ok)
            .collect();
        let found = match position {
            Some(i) => cols.get(i),
            None => cols.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(column)),
        };
        if let Some((_, decl, _)) = found {
            return Some(PgType::from_sqlite_decltype(decl).unwrap_or(PgType::Text));
        }
    }
    None
}

/// Prepare `original` on the connection and describe it.
///
/// Parameter types are looked up on `meta`, a connection of its own: a lookup
/// on the session's connection inside a transaction block would start the
/// block's read snapshot early, and a later write would then fail with 40001.
pub fn prepare(
    db: &SessionDb,
    meta: &Mutex<Connection>,
    original: &str,
    command: Command,
    client_oids: &[u32],
) -> Result<Prepared, PgError> {
    let tr = hadr_sql::translate(original).map_err(|e| match e {
        hadr_sql::SqlError::UnsupportedType(t) => PgError::new(
            sqlstate::UNDEFINED_OBJECT,
            format!("type \"{t}\" does not exist"),
        ),
        e @ hadr_sql::SqlError::Unsupported(_) => {
            PgError::new(sqlstate::FEATURE_NOT_SUPPORTED, e.to_string())
        }
        other => PgError::new(sqlstate::SYNTAX_ERROR, other.to_string()),
    })?;
    if tr.batch || tr.rebuild.is_some() {
        return Ok(Prepared {
            original: original.to_string(),
            sql: tr.sql,
            command,
            param_types: Vec::new(),
            columns: Vec::new(),
            readonly: false,
            batch: tr.batch,
            rebuild: tr.rebuild,
        });
    }
    let stmt = db
        .conn
        .prepare_cached(&tr.sql)
        .map_err(|e| from_sqlite(&e))?;
    let n_params = stmt.parameter_count().max(tr.param_count);
    let mut param_types = Vec::with_capacity(n_params);
    for i in 0..n_params {
        let given = client_oids.get(i).copied().unwrap_or(0);
        let t = if given != 0 {
            PgType::from_oid(given).unwrap_or(PgType::Text)
        } else {
            match tr.param_hints.get(i) {
                Some(ParamHint::Unknown) | None => PgType::Text,
                Some(ParamHint::Type(t)) => *t,
                Some(h) => resolve_hint(&meta.lock().unwrap_or_else(|p| p.into_inner()), h),
            }
        };
        param_types.push(t);
    }
    // What the text says (a cast, a literal, a comparison) wins over the
    // declared type of the column underneath, which wins over a guess.
    let text_types =
        hadr_sql::result_column_types(original).filter(|t| t.len() == stmt.column_count());
    let columns = stmt
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| Column {
            name: pg_column_name(c.name()),
            ty: text_types
                .as_ref()
                .and_then(|t| t[i])
                .or_else(|| c.decl_type().and_then(PgType::from_sqlite_decltype))
                .or_else(|| {
                    // A catalog query's columns are typed by what they show.
                    tr.catalog
                        .then(|| hadr_sql::catalog_column_type(original, c.name()))
                        .flatten()
                })
                .or_else(|| expr_type_guess(c.name()))
                .or_else(|| aggregate_type(meta, c.name())),
        })
        .collect();
    let readonly = stmt.readonly();
    Ok(Prepared {
        original: original.to_string(),
        sql: tr.sql,
        command,
        param_types,
        columns,
        readonly,
        batch: false,
        rebuild: None,
    })
}

/// Execute a prepared statement with bound values.
///
/// `fixed` holds column types already announced to the client (a Describe);
/// otherwise types the statement could not tell are decided from the first
/// non-NULL value.
pub fn execute(
    db: &mut SessionDb,
    p: &Prepared,
    params: &[Value],
    have_permit: bool,
    fixed: Option<&[PgType]>,
) -> Result<Outcome, ExecError> {
    let pg = |db: &SessionDb, e: rusqlite::Error| {
        ExecError::Pg(from_sqlite(&e), db.conn.is_autocommit())
    };
    db.clocks.statement_starts(db.conn.is_autocommit());
    if p.batch {
        return execute_batch(db, &p.sql, params, have_permit);
    }
    if let Some(plan) = &p.rebuild {
        if !have_permit {
            return Err(ExecError::NeedPermit);
        }
        // A rebuild copies the whole table: the bulk-load cache keeps its
        // pages from spilling mid-copy (a failed resize costs speed only).
        let _ = hadr_engine::conn::bulk_cache(&db.conn, true);
        let rebuilt = crate::rebuild::execute(&db.conn, plan);
        let _ = hadr_engine::conn::bulk_cache(&db.conn, false);
        if let Err(e) = rebuilt {
            return Err(ExecError::Pg(e, db.conn.is_autocommit()));
        }
        let autocommit_after = db.conn.is_autocommit();
        return Ok(Outcome {
            autocommit_after,
            write_ended: autocommit_after,
            ..Outcome::default()
        });
    }
    let mut outcome = Outcome::default();
    {
        let mut stmt = match db.conn.prepare_cached(&p.sql) {
            Ok(s) => s,
            Err(e) => return Err(ExecError::Pg(from_sqlite(&e), db.conn.is_autocommit())),
        };
        if !stmt.readonly() && !have_permit {
            return Err(ExecError::NeedPermit);
        }
        let expected = stmt.parameter_count();
        if params.len() != expected {
            return Err(ExecError::Pg(
                PgError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("bind message supplies {} parameters, but prepared statement requires {expected}", params.len()),
                ),
                db.conn.is_autocommit(),
            ));
        }
        for (i, v) in params.iter().enumerate() {
            if let Err(e) = stmt.raw_bind_parameter(i + 1, v) {
                drop(stmt);
                return Err(pg(db, e));
            }
        }
        let ncols = stmt.column_count();
        let names: Vec<String> = stmt
            .column_names()
            .iter()
            .map(|s| pg_column_name(s))
            .collect();
        let mut rows_out = Vec::new();
        let result = {
            let mut rows = stmt.raw_query();
            loop {
                match rows.next() {
                    Ok(Some(row)) => {
                        let mut vals = Vec::with_capacity(ncols);
                        for i in 0..ncols {
                            // Reading as Value cannot fail for a valid index.
                            vals.push(row.get::<_, Value>(i).unwrap_or(Value::Null));
                        }
                        rows_out.push(vals);
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        drop(stmt);
        if let Err(e) = result {
            return Err(pg(db, e));
        }
        let mut types = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let t = match fixed.and_then(|f| f.get(i)) {
                Some(t) => *t,
                None => p.columns.get(i).and_then(|c| c.ty).unwrap_or_else(|| {
                    rows_out
                        .iter()
                        .map(|r| &r[i])
                        .find(|v| !matches!(v, Value::Null))
                        .map(crate::values::type_of_value)
                        .unwrap_or(PgType::Text)
                }),
            };
            types.push(t);
        }
        outcome.columns = names.into_iter().zip(types).collect();
        outcome.rows = rows_out;
    }
    if matches!(
        p.command,
        Command::Insert | Command::Update | Command::Delete
    ) {
        outcome.changes = db.conn.changes();
    }
    outcome.autocommit_after = db.conn.is_autocommit();
    outcome.write_ended = have_permit && outcome.autocommit_after;
    Ok(outcome)
}

/// Capture whatever was committed and return the log end to wait for.
/// Called after releasing the write gate, to keep capture out of the
/// one-writer window.
pub fn capture(db: &SessionDb) -> Result<Lsn, ExecError> {
    db.engine.capture_for_commit().map_err(|e| {
        ExecError::Capture(PgError::fatal(
            sqlstate::IO_ERROR,
            format!("could not write the transaction log: {e}; the server stops accepting writes"),
        ))
    })
}

/// Several statements as one unit: inside a savepoint, so that one that
/// fails undoes those before it, in a transaction block or not.
fn execute_batch(
    db: &mut SessionDb,
    sql: &str,
    params: &[Value],
    have_permit: bool,
) -> Result<Outcome, ExecError> {
    if !have_permit {
        return Err(ExecError::NeedPermit);
    }
    if !params.is_empty() {
        return Err(ExecError::Pg(
            PgError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement requires 0",
                    params.len()
                ),
            ),
            db.conn.is_autocommit(),
        ));
    }
    let wrapped = format!("SAVEPOINT hadr_batch;\n{sql};\nRELEASE hadr_batch");
    if let Err(e) = db.conn.execute_batch(&wrapped) {
        let err = from_sqlite(&e);
        // Undo what ran; the savepoint is still open after a failure.
        let _ = db
            .conn
            .execute_batch("ROLLBACK TO hadr_batch; RELEASE hadr_batch");
        return Err(ExecError::Pg(err, db.conn.is_autocommit()));
    }
    let autocommit_after = db.conn.is_autocommit();
    Ok(Outcome {
        autocommit_after,
        write_ended: autocommit_after,
        ..Default::default()
    })
}

/// Run a transaction-control or other simple statement that returns nothing.
pub fn exec_plain(db: &mut SessionDb, sql: &str, have_permit: bool) -> Result<Outcome, ExecError> {
    db.clocks.statement_starts(db.conn.is_autocommit());
    if let Err(e) = db.conn.execute_batch(sql) {
        return Err(ExecError::Pg(from_sqlite(&e), db.conn.is_autocommit()));
    }
    let autocommit_after = db.conn.is_autocommit();
    Ok(Outcome {
        autocommit_after,
        write_ended: have_permit && autocommit_after,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn function_columns_are_named_as_postgresql_names_them() {
        use super::pg_column_name as n;
        assert_eq!(n("count(*)"), "count");
        assert_eq!(
            n("pg_catalog.format_type(a.atttypid, a.atttypmod)"),
            "format_type"
        );
        assert_eq!(n("MAX(x)"), "max");
        assert_eq!(n("CAST(x AS int)"), "CAST(x AS int)");
        assert_eq!(n("a + f(b)"), "a + f(b)");
        assert_eq!(n("id"), "id");
        assert_eq!(n("(1)"), "(1)");
    }
}
