//! Running one statement, for both protocols: transaction control through
//! the state machine, the commands hadr answers itself (SET, SHOW…), and
//! everything else on SQLite under the write permit when it writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use hadr_sql::{Command, PgType};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse};
use pgwire::messages::PgWireBackendMessage;
use rusqlite::types::Value;

use super::settings::SetEffect;
use super::state::{unexpected_permit, Session};
use super::tx::{self, Event, Refusal, Run};
use super::wire::{Stream, Wire};
use crate::errors::{sqlstate, PgError};
use crate::exec::{self, ExecError, Outcome, Prepared};
use crate::values;

impl Session {
    /// Describe a statement: hadr answers session commands (BEGIN, SET, SHOW…)
    /// itself; everything else is prepared on SQLite.
    pub(super) fn prepare_text(
        &mut self,
        sql: String,
        cmd: Command,
        oids: Vec<u32>,
    ) -> Result<Arc<Prepared>, PgError> {
        if is_session_command(&cmd) {
            return Ok(Arc::new(Prepared::session(sql, cmd)));
        }
        if matches!(cmd, Command::Role(_) | Command::Copy(_)) {
            return Ok(Arc::new(Prepared::session(sql, cmd)));
        }
        if matches!(cmd, Command::CommitOutcome(_)) {
            let mut p = Prepared::session(sql, cmd);
            p.columns = commit_outcome_columns()
                .into_iter()
                .map(|(name, ty)| exec::Column { name, ty: Some(ty) })
                .collect();
            return Ok(Arc::new(p));
        }
        check_allowed(&cmd, &sql)?;
        // Never wait for the write permit here: clients such as pgbench prepare
        // synchronously while other sessions on the same client thread hold it.
        // Preparing does not start the block's snapshot (SQLite closes the read
        // transaction it opens to load the schema); schema look-ups for parameter
        // types run on the node's meta connection for the same reason.
        Ok(Arc::new(exec::prepare(
            &self.db,
            &self.node.meta,
            &sql,
            cmd,
            &oids,
        )?))
    }

    /// Refuse a statement the transaction state does not allow now.
    pub(super) fn check_tx(&self, ev: Event) -> Result<(), PgError> {
        match tx::step(self.tx, ev).run {
            Run::Refuse(r) => Err(refusal(r, None)),
            _ => Ok(()),
        }
    }

    /// Run one statement and send its rows and CommandComplete (and its
    /// RowDescription if `send_row_description`: the simple protocol).
    pub(super) fn run_statement<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        p: Arc<Prepared>,
        params: Vec<Value>,
        described: Option<Vec<PgType>>,
        result_binary: Vec<bool>,
        send_row_description: bool,
    ) -> Result<(), PgError> {
        self.node.stats.statements.fetch_add(1, Ordering::Relaxed);
        let cmd = &p.command;
        let ev = match cmd {
            Command::Begin { read_only } => Event::Begin {
                read_only: *read_only,
            },
            Command::Commit => Event::Commit,
            Command::Rollback => Event::Rollback,
            Command::Savepoint(_) | Command::Release(_) => Event::Savepoint,
            Command::RollbackTo(_) => Event::RollbackTo,
            _ => Event::Statement,
        };
        let d = tx::step(self.tx, ev);
        if let Some(n) = d.notice {
            let (code, msg) = n.text();
            wire.notice(code, msg);
        }
        match d.run {
            Run::Refuse(r) => return Err(refusal(r, Some(cmd))),
            Run::Open => {
                let read_only = matches!(cmd, Command::Begin { read_only: true });
                self.open_block(read_only, false)?;
                return complete(wire, "BEGIN");
            }
            Run::Commit => {
                self.commit()?;
                return complete(wire, "COMMIT");
            }
            Run::Rollback => {
                self.rollback();
                return complete(wire, "ROLLBACK");
            }
            Run::Nothing => return complete(wire, &hadr_sql::command_tag(cmd, 0)),
            Run::Statement if ev != Event::Statement => {
                // SAVEPOINT, RELEASE, ROLLBACK TO: SQLite keeps the savepoints.
                match exec::exec_plain(&mut self.db, &p.original, false) {
                    Ok(_) => self.tx = d.next,
                    Err(ExecError::NeedPermit) => {}
                    Err(e) => return Err(unexpected_permit(e)),
                }
                return complete(wire, &hadr_sql::command_tag(cmd, 0));
            }
            Run::Statement => {}
        }
        match cmd {
            Command::Set { name, value, .. } => {
                let effect = self.settings().set(name, value)?;
                if let SetEffect::TransactionReadOnly(ro) = effect {
                    self.tx = tx::step(self.tx, Event::SetReadOnly(ro)).next;
                }
                return complete(wire, "SET");
            }
            Command::Reset(name) => {
                self.settings().reset(name);
                return complete(wire, "RESET");
            }
            Command::Show(name) => {
                let v = self.settings().show(name, &self.node, self.tx.read_only)?;
                if send_row_description {
                    wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
                        vec![field(name, PgType::Text, false)],
                    )));
                }
                let mut data = BytesMut::new();
                values::put_field(&mut data, Some(v.as_bytes()));
                wire.send(PgWireBackendMessage::DataRow(DataRow::new(data, 1)));
                return complete(wire, "SHOW");
            }
            // Nothing is listened to, so there is nothing to stop (poolers
            // send UNLISTEN * when a client leaves).
            Command::Discard | Command::Unlisten => {
                return complete(wire, &hadr_sql::command_tag(cmd, 0));
            }
            // A LISTEN that never hears anything would be a lie.
            Command::Listen | Command::Notify => {
                return Err(PgError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "hadr does not support LISTEN/NOTIFY",
                ));
            }
            Command::Copy(c) => return self.copy(wire, c),
            Command::Empty => {
                wire.send(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ));
                return Ok(());
            }
            _ => {}
        }
        let outcome = match cmd {
            Command::CommitOutcome(token) => self.commit_outcome(token)?,
            Command::Role(r) => self.role_statement(r)?,
            _ => self.execute_checked(&p, params, described)?,
        };
        let returns_rows = !outcome.columns.is_empty();
        if returns_rows {
            if send_row_description {
                let fields = outcome
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (n, t))| field(n, *t, fmt_binary(&result_binary, i)))
                    .collect();
                wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
                    fields,
                )));
            }
            send_rows(wire, &outcome, 0, outcome.rows.len(), &result_binary)?;
        }
        let n = if returns_rows
            && !matches!(cmd, Command::Insert | Command::Update | Command::Delete)
        {
            outcome.rows.len() as u64
        } else {
            outcome.changes
        };
        complete(wire, &hadr_sql::command_tag(cmd, n))
    }

    /// Execute a statement that goes to SQLite, after the read-only and
    /// replay-lag checks; a write that ends its transaction is committed in
    /// full (see [`Session::finish_commit`]) before this returns.
    pub(super) fn execute_checked(
        &mut self,
        p: &Arc<Prepared>,
        params: Vec<Value>,
        described: Option<Vec<PgType>>,
    ) -> Result<Outcome, PgError> {
        let predicted_write = predicts_write(&p.command);
        if self.tx.read_only && predicted_write {
            return Err(read_only_error(&p.command));
        }
        self.check_replay_lag()?;
        let writes = predicted_write || !p.readonly;
        if writes && self.tx.status == tx::Status::Idle && self.settings().commit_token().is_some()
        {
            return self.execute_tagged(p, params, described);
        }
        let o = self.execute_with_permit(p, &params, described.as_deref(), predicted_write)?;
        if o.write_ended {
            self.finish_commit()?;
        }
        Ok(o)
    }

    /// An autocommit write under a commit token: run as an implicit block,
    /// so that the token is recorded in the same transaction (its commit
    /// does the rest: [`Session::commit`]).
    fn execute_tagged(
        &mut self,
        p: &Arc<Prepared>,
        params: Vec<Value>,
        described: Option<Vec<PgType>>,
    ) -> Result<Outcome, PgError> {
        self.check_role_writes(&p.command)?;
        if let Some(why) = self.node.write_refusal() {
            return Err(read_only_error(&p.command).with_hint(why));
        }
        // The permit before BEGIN, as for an implicit block (simple.rs).
        self.permit = Some(self.node.acquire_write(&self.cancel)?);
        if let Err(e) = self.open_block(false, true) {
            self.rollback();
            return Err(e);
        }
        match self.execute_with_permit(p, &params, described.as_deref(), true) {
            Ok(o) => {
                self.commit()?;
                Ok(o)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// `SELECT hadr_commit_outcome('token')`: on the primary, under the
    /// write permit (so no transaction of a dead session can still commit
    /// the token), answered once durable and replicated like a commit
    /// (docs/clients.md §Commit outcomes).
    fn commit_outcome(&mut self, token: &str) -> Result<Outcome, PgError> {
        if self.tx.status != tx::Status::Idle {
            return Err(PgError::new(
                sqlstate::ACTIVE_TRANSACTION,
                "hadr_commit_outcome cannot run inside a transaction block",
            ));
        }
        if !crate::commit_tokens::valid(token) {
            return Err(PgError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("\"{token}\" is not a commit token (1 to 128 of A-Z a-z 0-9 . _ : -)"),
            ));
        }
        if let Some(why) = self.node.write_refusal() {
            return Err(PgError::new(
                sqlstate::READ_ONLY_TRANSACTION,
                "hadr_commit_outcome must be asked of the primary: only it can make \"not committed\" final",
            )
            .with_hint(why));
        }
        self.permit = Some(self.node.acquire_write(&self.cancel)?);
        let epoch = self.node.engine.control().epoch;
        let resolved = self
            .run_plain("BEGIN")
            .and_then(|_| crate::commit_tokens::resolve(&self.db.conn, token, epoch));
        let outcome = match resolved {
            Ok(o) => o,
            Err(e) => {
                self.rollback();
                return Err(e);
            }
        };
        let r = self.run_plain("COMMIT");
        self.permit = None;
        r?;
        // Whether or not a tombstone was written, a commit found may itself
        // still wait for durability: capture and wait up to the log end.
        self.finish_commit()?;
        use crate::commit_tokens::Outcome as O;
        let row = match outcome {
            O::Committed { epoch, at } => vec![
                Value::Text("committed".into()),
                Value::Integer(epoch),
                Value::Text(at),
            ],
            O::NotCommitted => vec![
                Value::Text("not committed".into()),
                Value::Null,
                Value::Null,
            ],
        };
        Ok(Outcome {
            columns: commit_outcome_columns(),
            rows: vec![row],
            ..Outcome::default()
        })
    }

    /// A READONLY role writes nothing (42501), whatever its transaction.
    pub(super) fn check_role_writes(&self, cmd: &Command) -> Result<(), PgError> {
        if !self.access.read_only {
            return Ok(());
        }
        let verb = hadr_sql::command_tag(cmd, 0);
        let verb = verb.split(' ').next().unwrap_or("statement").to_string();
        Err(PgError::new(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied: role \"{}\" is read-only and cannot execute {verb}",
                self.user
            ),
        ))
    }

    /// `CREATE/ALTER/DROP ROLE`: on the primary, by an administrator,
    /// outside a transaction block; the password becomes a verifier before
    /// the write lock is taken (4096 PBKDF2 rounds), and the change is
    /// committed and replicated like any other
    /// (crates/hadr-server/src/auth/roles.rs).
    fn role_statement(
        &mut self,
        r: &Result<hadr_sql::RoleStatement, hadr_sql::RoleSyntaxError>,
    ) -> Result<Outcome, PgError> {
        use crate::auth::{random_bytes, roles};
        let stmt = r.clone().map_err(|e| {
            let code = if e.sqlstate() == sqlstate::FEATURE_NOT_SUPPORTED {
                sqlstate::FEATURE_NOT_SUPPORTED
            } else {
                sqlstate::SYNTAX_ERROR
            };
            PgError::new(code, e.to_string())
        })?;
        let tag = stmt.tag();
        if self.tx.status != tx::Status::Idle {
            return Err(PgError::new(
                sqlstate::ACTIVE_TRANSACTION,
                format!("{tag} cannot run inside a transaction block"),
            ));
        }
        if let Some(why) = self.node.write_refusal() {
            return Err(PgError::new(
                sqlstate::READ_ONLY_TRANSACTION,
                format!("cannot execute {tag} in a read-only transaction"),
            )
            .with_hint(why));
        }
        if !self.access.admin {
            let verb = match stmt {
                hadr_sql::RoleStatement::Create { .. } => "create",
                hadr_sql::RoleStatement::Alter { .. } => "alter",
                hadr_sql::RoleStatement::Drop { .. } => "drop",
            };
            return Err(PgError::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("permission denied to {verb} role"),
            )
            .with_hint("only a SUPERUSER role may create, alter or drop roles"));
        }
        let prepared = roles::prepare(stmt, &random_bytes::<16>())?;
        self.permit = Some(self.node.acquire_write(&self.cancel)?);
        self.role_writes.store(true, Ordering::SeqCst);
        let applied = self.run_plain("BEGIN").and_then(|_| {
            roles::apply(&self.db.conn, &prepared, &self.user, &random_bytes::<32>())
        });
        self.role_writes.store(false, Ordering::SeqCst);
        if let Err(e) = applied {
            self.rollback();
            return Err(e);
        }
        let r = self.run_plain("COMMIT");
        self.permit = None;
        r?;
        self.finish_commit()?;
        Ok(Outcome::default())
    }

    /// Execute, taking the write permit first when the statement writes.
    fn execute_with_permit(
        &mut self,
        p: &Prepared,
        params: &[Value],
        described: Option<&[PgType]>,
        predicted_write: bool,
    ) -> Result<Outcome, PgError> {
        // A cancel (or a hand-over's end_sessions) that came after this
        // message was read but before SQLite runs the statement: its
        // sqlite3_interrupt found nothing running and is lost, so look at
        // the flag here rather than run a long read to its end.
        if self.cancel.load(Ordering::SeqCst) {
            return Err(PgError::new(
                sqlstate::QUERY_CANCELED,
                "canceling statement due to user request",
            ));
        }
        let mut want_permit = predicted_write || !p.readonly;
        if want_permit {
            self.check_role_writes(&p.command)?;
            if let Some(why) = self.node.write_refusal() {
                return Err(read_only_error(&p.command).with_hint(why));
            }
        }
        let idle = self.tx.status == tx::Status::Idle;
        loop {
            if want_permit && self.permit.is_none() {
                self.permit = Some(self.node.acquire_write(&self.cancel)?);
            }
            let have = self.permit.is_some();
            match exec::execute(&mut self.db, p, params, have, described) {
                Ok(o) => {
                    if o.autocommit_after && idle {
                        self.permit = None;
                    }
                    return Ok(o);
                }
                Err(ExecError::NeedPermit) => {
                    self.check_role_writes(&p.command)?;
                    if let Some(why) = self.node.write_refusal() {
                        return Err(read_only_error(&p.command).with_hint(why));
                    }
                    want_permit = true;
                }
                Err(ExecError::Pg(e, autocommit)) => {
                    if autocommit && idle {
                        self.permit = None;
                    }
                    return Err(e);
                }
                Err(ExecError::Capture(e)) => {
                    self.permit = None;
                    return Err(e);
                }
            }
        }
    }

    /// `hadr.max_replay_lag` on a standby: refuse reads that could be staler.
    pub(super) fn check_replay_lag(&self) -> Result<(), PgError> {
        let Some(max) = self.settings().max_replay_lag() else {
            return Ok(());
        };
        let lag = self.node.replay_lag_us();
        if self.node.is_standby() && !max.0.is_zero() && u128::from(lag) > max.0.as_micros() {
            return Err(PgError::new(
                sqlstate::SERIALIZATION_FAILURE,
                format!(
                    "this standby's replay lag is {} ms, more than hadr.max_replay_lag ({} ms)",
                    lag / 1000,
                    max.0.as_millis()
                ),
            )
            .with_hint("retry shortly, or read from the primary"));
        }
        Ok(())
    }
}

/// Queue CommandComplete with `tag`.
pub(super) fn complete<S: Stream>(wire: &mut Wire<S>, tag: &str) -> Result<(), PgError> {
    wire.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
        tag.to_string(),
    )));
    Ok(())
}

/// The error for a statement the transaction state refuses.
fn refusal(r: Refusal, cmd: Option<&Command>) -> PgError {
    match r {
        Refusal::InFailedBlock => PgError::new(
            sqlstate::IN_FAILED_TRANSACTION,
            "current transaction is aborted, commands ignored until end of transaction block",
        ),
        Refusal::SavepointOutsideBlock => PgError::new(
            sqlstate::NO_ACTIVE_TRANSACTION,
            format!(
                "{} can only be used in transaction blocks",
                cmd.map(|c| hadr_sql::command_tag(c, 0))
                    .unwrap_or_else(|| "SAVEPOINT".into())
            ),
        ),
    }
}

pub(super) fn read_only_error(cmd: &Command) -> PgError {
    let verb = hadr_sql::command_tag(cmd, 0);
    let verb = verb.split(' ').next().unwrap_or("statement").to_string();
    PgError::new(
        sqlstate::READ_ONLY_TRANSACTION,
        format!("cannot execute {verb} in a read-only transaction"),
    )
}

/// Whether result column `i` is sent in binary, from Bind's format codes
/// (none: all text; one: all alike; else one per column).
pub(super) fn fmt_binary(codes: &[bool], i: usize) -> bool {
    match codes.len() {
        0 => false,
        1 => codes[0],
        _ => codes.get(i).copied().unwrap_or(false),
    }
}

/// A RowDescription field.
pub(super) fn field(name: &str, t: PgType, binary: bool) -> FieldDescription {
    FieldDescription::new(
        name.to_string(),
        0,
        0,
        t.oid(),
        values::type_size(t),
        -1,
        i16::from(binary),
    )
}

/// Queue DataRows for rows `from..to` of an outcome.
pub(super) fn send_rows<S: Stream>(
    wire: &mut Wire<S>,
    o: &Outcome,
    from: usize,
    to: usize,
    binary: &[bool],
) -> Result<(), PgError> {
    for row in &o.rows[from..to] {
        let mut data = BytesMut::with_capacity(16 * row.len());
        for (i, v) in row.iter().enumerate() {
            if matches!(v, Value::Null) {
                values::put_field(&mut data, None);
            } else {
                let t = o.columns.get(i).map(|c| c.1).unwrap_or(PgType::Text);
                let bytes = values::encode(v, t, fmt_binary(binary, i))?;
                values::put_field(&mut data, Some(&bytes));
            }
        }
        wire.send(PgWireBackendMessage::DataRow(DataRow::new(
            data,
            row.len() as i16,
        )));
    }
    Ok(())
}

/// The columns `hadr_commit_outcome` answers.
fn commit_outcome_columns() -> Vec<(String, PgType)> {
    vec![
        ("outcome".into(), PgType::Text),
        ("epoch".into(), PgType::Int8),
        ("committed_at".into(), PgType::Text),
    ]
}

/// Statements hadr answers itself, without SQLite.
fn is_session_command(c: &Command) -> bool {
    hadr_sql::is_transaction_control(c)
        || matches!(
            c,
            Command::Set { .. }
                | Command::Reset(_)
                | Command::Show(_)
                | Command::Discard
                | Command::Listen
                | Command::Unlisten
                | Command::Notify
                | Command::Empty
        )
}

/// Whether a statement will write (to take the write permit before running it;
/// SQLite's own read-only flag catches the rest).
pub(super) fn predicts_write(c: &Command) -> bool {
    matches!(
        c,
        Command::Insert
            | Command::Update
            | Command::Delete
            | Command::Create(_)
            | Command::Drop(_)
            | Command::Alter(_)
            | Command::Vacuum
            | Command::Reindex
            | Command::Analyze
            | Command::Copy(Ok(hadr_sql::CopyStatement { from: true, .. }))
    )
}

/// Refuse statements that would break capture or replication.
fn check_allowed(c: &Command, sql: &str) -> Result<(), PgError> {
    match c {
        Command::Attach | Command::Detach => Err(PgError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "ATTACH and DETACH are not supported: an attached database would not be logged or replicated",
        )),
        Command::Pragma => {
            let lower = sql.to_ascii_lowercase();
            const FORBIDDEN: [&str; 8] = [
                "journal_mode", "wal_checkpoint", "wal_autocheckpoint", "locking_mode", "synchronous", "writable_schema", "page_size", "mmap_size",
            ];
            if let Some(p) = FORBIDDEN.iter().find(|p| lower.contains(*p)) {
                return Err(PgError::new(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("PRAGMA {p} is managed by hadr and cannot be changed by a session"),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
