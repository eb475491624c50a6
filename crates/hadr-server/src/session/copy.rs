//! `COPY … FROM STDIN` and `COPY … TO STDOUT`, in either query protocol.
//!
//! COPY FROM is one write transaction, like an INSERT: outside a block it
//! is its own (committed, captured and replicated once the data ends),
//! inside one it is part of the block. Rows are decoded and inserted as
//! their CopyData arrives ([`hadr_sql::hadr_copy::Decoder`]), so the
//! session holds one message and one row, whatever the size of the load.
//! A bad row stops the COPY with its line number; as in PostgreSQL the
//! error is sent at once and the client's remaining CopyData is ignored
//! by the message loop (crates/hadr-server/src/session/mod.rs).
//!
//! COPY TO streams: each row is encoded and sent as SQLite produces it,
//! written out every 256 KiB.

use std::sync::atomic::Ordering;

use hadr_sql::hadr_copy::{Decoder, Encoder, Header, Options, Row};
use hadr_sql::{Command, CopyError, CopySource, CopyStatement, PgType};
use pgwire::messages::copy::{CopyData, CopyDone, CopyInResponse, CopyOutResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rusqlite::types::Value;

use super::copy_decode::{self, Batch, Decoding};
use super::state::Session;
use super::statement::{complete, read_only_error};
use super::tx::Status;
use super::wire::{Stream, Wire};
use crate::errors::{from_sqlite, sqlstate, PgError};
use crate::exec;
use crate::values;

/// Rows per INSERT of a COPY FROM.
const BATCH_ROWS: usize = 64;

/// Parameters per INSERT at most (SQLite's limit is 32766).
const MAX_BATCH_PARAMS: usize = 16_000;

/// COPY TO output buffered past this is written before more rows are read.
const FLUSH_AT: usize = 256 << 10;

/// `"name"`, for SQL built from a name the client gave.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn canceled() -> PgError {
    PgError::new(
        sqlstate::QUERY_CANCELED,
        "canceling statement due to user request",
    )
}

fn lost(e: std::io::Error) -> PgError {
    PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        format!("could not send COPY data to the client: {e}"),
    )
}

/// A column COPY FROM fills: its name and the type its text is read as.
struct Target {
    name: String,
    ty: PgType,
    /// Its text is converted (numbers, booleans, bytea), not stored as is
    /// (what [`values::decode_param`] does with the type).
    converted: bool,
}

impl Session {
    /// Carry out a COPY statement (or refuse it with its SQLSTATE).
    pub(super) fn copy<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        stmt: &Result<CopyStatement, CopyError>,
    ) -> Result<(), PgError> {
        let stmt = stmt
            .as_ref()
            .map_err(|e| PgError::new(e.sqlstate(), e.to_string()))?;
        match &stmt.source {
            CopySource::Table { name, columns } if stmt.from => {
                self.copy_from(wire, name, columns, &stmt.options)
            }
            _ => self.copy_to(wire, stmt),
        }
    }

    fn copy_from<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        table: &str,
        columns: &[String],
        o: &Options,
    ) -> Result<(), PgError> {
        let cmd = Command::Other("COPY".into());
        if self.tx.read_only {
            return Err(read_only_error(&cmd));
        }
        self.check_role_writes(&cmd)?;
        if let Some(why) = self.node.write_refusal() {
            return Err(read_only_error(&cmd).with_hint(why));
        }
        let implicit = self.tx.status == Status::Idle;
        if self.permit.is_none() {
            // Before BEGIN, as for any implicit block (simple.rs).
            self.permit = Some(self.node.acquire_write(&self.cancel)?);
        }
        if implicit {
            if let Err(e) = self.open_block(false, true) {
                self.rollback();
                return Err(e);
            }
        }
        // A failure to resize the cache costs speed, not correctness.
        let _ = hadr_engine::conn::bulk_cache(&self.db.conn, true);
        let r = match self.copy_in(wire, table, columns, o) {
            Ok(n) => {
                let committed = if implicit { self.commit() } else { Ok(()) };
                committed.and_then(|()| complete(wire, &format!("COPY {n}")))
            }
            Err(e) => {
                if implicit {
                    self.rollback();
                }
                Err(e)
            }
        };
        let _ = hadr_engine::conn::bulk_cache(&self.db.conn, false);
        r
    }

    /// The table's columns COPY fills, in the order the data gives them.
    fn copy_targets(&self, table: &str, columns: &[String]) -> Result<Vec<Target>, PgError> {
        let mut st = self
            .db
            .conn
            .prepare_cached("SELECT name, type FROM pragma_table_info(?1)")
            .map_err(|e| from_sqlite(&e))?;
        let all: Vec<(String, String)> = st
            .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| from_sqlite(&e))?;
        if all.is_empty() {
            return Err(PgError::new(
                sqlstate::UNDEFINED_TABLE,
                format!("relation \"{table}\" does not exist"),
            ));
        }
        let target = |(name, decl): &(String, String)| {
            let ty = PgType::from_sqlite_decltype(decl).unwrap_or(PgType::Text);
            Target {
                name: name.clone(),
                ty,
                converted: matches!(
                    ty,
                    PgType::Bool
                        | PgType::Int2
                        | PgType::Int4
                        | PgType::Int8
                        | PgType::Float4
                        | PgType::Float8
                        | PgType::Numeric
                        | PgType::Bytea
                ),
            }
        };
        if columns.is_empty() {
            return Ok(all.iter().map(target).collect());
        }
        let mut out: Vec<Target> = Vec::with_capacity(columns.len());
        for c in columns {
            let Some(found) = all.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)) else {
                return Err(PgError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{c}\" of relation \"{table}\" does not exist"),
                ));
            };
            if out.iter().any(|t| t.name.eq_ignore_ascii_case(&found.0)) {
                return Err(PgError::new(
                    "42701",
                    format!("column \"{c}\" specified more than once"),
                ));
            }
            out.push(target(found));
        }
        Ok(out)
    }

    /// Read CopyData until CopyDone, inserting rows; the number inserted.
    fn copy_in<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        table: &str,
        columns: &[String],
        o: &Options,
    ) -> Result<u64, PgError> {
        let targets = self.copy_targets(table, columns)?;
        let flags = |named: &[String], what: &str| -> Result<Vec<bool>, PgError> {
            if let Some(bad) = named
                .iter()
                .find(|n| !targets.iter().any(|t| t.name.eq_ignore_ascii_case(n)))
            {
                return Err(PgError::new(
                    "42P10",
                    format!("{what} column \"{bad}\" not referenced by COPY"),
                ));
            }
            Ok(targets
                .iter()
                .map(|t| named.iter().any(|n| t.name.eq_ignore_ascii_case(n)))
                .collect())
        };
        let force_not_null = flags(&o.force_not_null, "FORCE_NOT_NULL")?;
        let force_null = flags(&o.force_null, "FORCE_NULL")?;
        let insert = |rows: usize| {
            let n = targets.len();
            format!(
                "INSERT INTO {} ({}) VALUES {}",
                quote_ident(table),
                targets
                    .iter()
                    .map(|t| quote_ident(&t.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                (0..rows)
                    .map(|r| {
                        let params: Vec<String> =
                            (1..=n).map(|i| format!("?{}", r * n + i)).collect();
                        format!("({})", params.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let per_batch = (MAX_BATCH_PARAMS / targets.len().max(1)).clamp(1, BATCH_ROWS);
        // A table SQLite will not insert into fails here, before any data is asked for.
        let conn = &self.db.conn;
        let single = conn
            .prepare_cached(&insert(1))
            .map_err(|e| from_sqlite(&e))?;
        let batch = conn
            .prepare_cached(&insert(per_batch))
            .map_err(|e| from_sqlite(&e))?;
        self.db.clocks.statement_starts(false);
        let n_cols = targets.len() as i16;
        wire.send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
            0,
            n_cols,
            vec![0; targets.len()],
        )));
        wire.flush().map_err(lost)?;
        let mut load = Load {
            rows: 0,
            table,
            targets: &targets,
            single,
            batch,
            conn,
        };
        let decoding = Decoding {
            decoder: Decoder::new(o, force_not_null, force_null),
            header: o.header,
            names: targets.iter().map(|t| t.name.clone()).collect(),
            table: table.to_string(),
            per_insert: per_batch,
        };
        let idle = self.node.config.idle_in_transaction_timeout.0;
        let timeout = (!idle.is_zero()).then_some(idle);
        let cancel = &self.cancel;
        std::thread::scope(|scope| {
            let (mut pipe, ends) = copy_decode::pipe();
            std::thread::Builder::new()
                .name("hadr-copy-decode".into())
                .spawn_scoped(scope, move || copy_decode::run(decoding, ends))
                .map_err(|e| {
                    PgError::new(
                        sqlstate::INTERNAL_ERROR,
                        format!("could not start the COPY decoder: {e}"),
                    )
                })?;
            let mut sink = |b: &Batch| load.insert_rows(&b.rows[..b.n]);
            // Returning drops the pipe, which ends the decoder thread.
            loop {
                use PgWireFrontendMessage as M;
                let msg = wire.read(timeout).map_err(PgError::from)?;
                if cancel.load(Ordering::SeqCst) {
                    return Err(canceled());
                }
                match msg {
                    Some(M::CopyData(d)) => pipe.push(&d.data, &mut sink)?,
                    Some(M::CopyDone(_)) => {
                        pipe.finish(&mut sink)?;
                        return Ok(());
                    }
                    Some(M::CopyFail(f)) => {
                        return Err(PgError::new(
                            sqlstate::QUERY_CANCELED,
                            format!("COPY from stdin failed: {}", f.message),
                        ))
                    }
                    // Drivers may send these without noticing the command was a COPY.
                    Some(M::Flush(_) | M::Sync(_)) => {}
                    Some(_) => {
                        return Err(PgError::fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            "unexpected message type during COPY from stdin",
                        ))
                    }
                    None => {
                        return Err(PgError::fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            "unexpected EOF on client connection with an open transaction",
                        ))
                    }
                }
            }
        })?;
        Ok(load.rows)
    }

    fn copy_to<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        stmt: &CopyStatement,
    ) -> Result<(), PgError> {
        self.check_replay_lag()?;
        let query = match &stmt.source {
            CopySource::Table { name, columns } => {
                let cols: Vec<String> = self
                    .copy_targets(name, columns)?
                    .iter()
                    .map(|t| quote_ident(&t.name))
                    .collect();
                format!("SELECT {} FROM {}", cols.join(", "), quote_ident(name))
            }
            CopySource::Query(q) => q.clone(),
        };
        let p = exec::prepare(
            &self.db,
            &self.node.meta,
            &query,
            hadr_sql::classify(&query),
            &[],
        )?;
        if p.batch || !p.readonly {
            return Err(PgError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "hadr does not support COPY (query) TO with a query that writes",
            ));
        }
        if p.columns.is_empty() {
            return Err(PgError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY (query) TO needs a query that returns rows",
            ));
        }
        let names: Vec<String> = p.columns.iter().map(|c| c.name.clone()).collect();
        let types: Vec<Option<PgType>> = p.columns.iter().map(|c| c.ty).collect();
        let enc = Encoder::new(&stmt.options, &names);
        wire.send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            names.len() as i16,
            vec![0; names.len()],
        )));
        // One CopyData per row, as PostgreSQL sends them: clients (psycopg's
        // `rows()`) parse each message as a row.
        let mut buf = Vec::with_capacity(256);
        let send = |wire: &mut Wire<S>, buf: &mut Vec<u8>| {
            let data = bytes::Bytes::copy_from_slice(buf);
            buf.clear();
            wire.send(PgWireBackendMessage::CopyData(CopyData::new(data)));
        };
        if stmt.options.header != Header::Absent {
            enc.header(&names, &mut buf);
            send(wire, &mut buf);
        }
        self.db
            .clocks
            .statement_starts(self.db.conn.is_autocommit());
        let mut st = self
            .db
            .conn
            .prepare_cached(&p.sql)
            .map_err(|e| from_sqlite(&e))?;
        let mut rows = st.raw_query();
        let mut n = 0u64;
        let mut fields: Vec<Option<Vec<u8>>> = Vec::with_capacity(names.len());
        while let Some(row) = rows.next().map_err(|e| from_sqlite(&e))? {
            fields.clear();
            for (i, ty) in types.iter().enumerate() {
                let v: Value = row.get(i).map_err(|e| from_sqlite(&e))?;
                if matches!(v, Value::Null) {
                    fields.push(None);
                } else {
                    let t = ty.unwrap_or_else(|| values::type_of_value(&v));
                    fields.push(Some(values::encode(&v, t, false)?));
                }
            }
            let refs: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref()).collect();
            enc.row(&refs, &mut buf);
            send(wire, &mut buf);
            n += 1;
            if wire.pending() >= FLUSH_AT {
                if self.cancel.load(Ordering::SeqCst) {
                    return Err(canceled());
                }
                wire.flush().map_err(lost)?;
            }
        }
        wire.send(PgWireBackendMessage::CopyDone(CopyDone::new()));
        complete(wire, &format!("COPY {n}"))
    }
}

/// The inserting side of a COPY FROM: rows go in [`BATCH_ROWS`] to an
/// INSERT (one statement's set-up, cursor and end for many rows: about a
/// fifth of the work per row when they went one by one), a last short
/// batch one by one. The rows come decoded from copy_decode.rs.
struct Load<'a, 'c> {
    rows: u64,
    table: &'a str,
    targets: &'a [Target],
    /// `INSERT … VALUES (…)` for one row, and for a full batch.
    single: rusqlite::CachedStatement<'c>,
    batch: rusqlite::CachedStatement<'c>,
    conn: &'c rusqlite::Connection,
}

impl Load<'_, '_> {
    /// Insert `rows`: each full INSERT's worth as one statement, the rest
    /// one by one.
    fn insert_rows(&mut self, rows: &[Row]) -> Result<(), PgError> {
        let per_insert = self.batch.parameter_count() / self.targets.len().max(1);
        for chunk in rows.chunks(per_insert.max(1)) {
            self.insert_chunk(chunk)?;
        }
        Ok(())
    }

    /// One INSERT's worth of rows as one statement; fewer one by one.
    fn insert_chunk(&mut self, rows: &[Row]) -> Result<(), PgError> {
        let width = self.targets.len();
        if rows.len() * width != self.batch.parameter_count() {
            return self.one_by_one(rows);
        }
        for (r, row) in rows.iter().enumerate() {
            bind_row(&mut self.batch, row, r * width, self.targets, self.table)?;
        }
        match self.batch.raw_execute() {
            Ok(_) => {
                self.rows += rows.len() as u64;
                Ok(())
            }
            // A constraint fails the statement alone (SQLite undoes its
            // rows, the transaction goes on): the rows again one by one
            // find the line, as PostgreSQL names it.
            Err(e)
                if matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation)
                    && !self.conn.is_autocommit() =>
            {
                self.one_by_one(rows)?;
                // Not reached unless the rows fail together only.
                Err(from_sqlite(&e).with_context(self.lines(rows)))
            }
            Err(e) => Err(from_sqlite(&e).with_context(self.lines(rows))),
        }
    }

    fn one_by_one(&mut self, rows: &[Row]) -> Result<(), PgError> {
        for row in rows {
            bind_row(&mut self.single, row, 0, self.targets, self.table)?;
            self.single.raw_execute().map_err(|e| {
                from_sqlite(&e).with_context(format!("COPY {}, line {}", self.table, row.line()))
            })?;
            self.rows += 1;
        }
        Ok(())
    }

    /// "COPY t, lines a to b".
    fn lines(&self, rows: &[Row]) -> String {
        let first = rows.first().map_or(0, Row::line);
        let last = rows.last().map_or(first, Row::line);
        format!("COPY {}, lines {first} to {last}", self.table)
    }
}

/// Bind `row`'s fields from parameter `base + 1` on, each as its column
/// takes it.
fn bind_row(
    st: &mut rusqlite::CachedStatement<'_>,
    row: &Row,
    base: usize,
    targets: &[Target],
    table: &str,
) -> Result<(), PgError> {
    let context = || format!("COPY {table}, line {}", row.line());
    for (i, t) in targets.iter().enumerate() {
        let at = base + i + 1;
        let bound = match row.field(i) {
            None => st.raw_bind_parameter(at, Value::Null),
            // Text goes in as it is, without a copy of its own.
            Some(s) if !t.converted => st.raw_bind_parameter(at, s),
            Some(s) => {
                let v = values::decode_param(Some(s.as_bytes()), t.ty, false).map_err(|e| {
                    e.with_context(format!("{}, column {}: \"{s}\"", context(), t.name))
                })?;
                st.raw_bind_parameter(at, v)
            }
        };
        bound.map_err(|e| from_sqlite(&e).with_context(context()))?;
    }
    Ok(())
}
