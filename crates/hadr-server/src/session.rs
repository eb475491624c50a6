//! One client connection: PostgreSQL v3 startup, simple and extended query
//! protocols, transaction blocks, the write permit and the commit gate.
//!
//! pgwire supplies the message types and their encoding; the session loop is
//! ours because hadr needs exact control over things pgwire's handler API
//! decides for you: the ReadyForQuery status byte and the aborted-transaction
//! state, holding a write permit across statements, waiting for durability
//! before CommandComplete, cancel through `sqlite3_interrupt`, and FATAL
//! refusals with a chosen SQLSTATE.
//!
//! Each session runs on its own OS thread, as a PostgreSQL backend runs in its
//! own process: socket reads, SQLite calls and the wait for durability happen
//! on one thread with no hand-offs between a runtime and a blocking pool,
//! which on a 2-core machine cost more than the statements themselves.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hadr_sql::{Command, PgType};
use pgwire::messages::data::{
    DataRow, FieldDescription, NoData, ParameterDescription, RowDescription,
};
use pgwire::messages::extendedquery::{
    BindComplete, CloseComplete, ParseComplete, PortalSuspended,
};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ReadyForQuery,
    TransactionStatus,
};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
    SslNegotiationMetaMessage,
};
use rusqlite::types::Value;
use tracing::{debug, info, warn};

use crate::errors::{sqlstate, PgError};
use crate::exec::{self, ExecError, Outcome, Prepared, SessionDb};
use crate::node::{Node, SessionHandle};
use crate::values;
use crate::write_lock::WritePermit;
use hadr_log::Lsn;

/// The server_version we report; drivers parse it to pick features.
pub const SERVER_VERSION: &str = "15.0";

/// Transaction state as the client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    Idle,
    Block,
    Failed,
}

struct Portal {
    stmt: Arc<Prepared>,
    params: Vec<Value>,
    result_binary: Vec<bool>,
    /// Types announced by a Describe of this portal, to be honoured at Execute.
    described: Option<Vec<PgType>>,
    /// Rows fetched but not yet sent (Execute with a row limit).
    pending: Option<(Outcome, usize)>,
    /// Ran to completion: a further Execute returns no rows, as in PostgreSQL.
    exhausted: bool,
}

enum Flow {
    Continue,
    Close,
}

/// Read/write halves with buffers; output is batched until a flush point.
struct Wire {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    ctx: DecodeContext,
    max_message: usize,
}

impl Wire {
    fn send(&mut self, m: PgWireBackendMessage) {
        if let Err(e) = m.encode(&mut self.wbuf) {
            warn!(error = %e, "could not encode a message");
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    fn error(&mut self, e: &PgError) {
        self.send(PgWireBackendMessage::ErrorResponse(ErrorResponse::new(
            e.fields(),
        )));
    }

    fn notice(&mut self, code: &str, msg: &str) {
        self.send(PgWireBackendMessage::NoticeResponse(NoticeResponse::new(
            vec![
                (b'S', "WARNING".into()),
                (b'V', "WARNING".into()),
                (b'C', code.into()),
                (b'M', msg.into()),
            ],
        )));
    }

    /// Read one frontend message. Ok(None) = the client closed the connection.
    fn read(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<PgWireFrontendMessage>, PgError> {
        loop {
            if !self.ctx.awaiting_frontend_startup
                && !self.ctx.awaiting_frontend_ssl
                && self.rbuf.len() >= 5
            {
                let len =
                    i32::from_be_bytes([self.rbuf[1], self.rbuf[2], self.rbuf[3], self.rbuf[4]]);
                if len < 4 {
                    return Err(PgError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid message length {len}"),
                    ));
                }
                if len as usize > self.max_message {
                    return Err(PgError::fatal(
                        sqlstate::PROGRAM_LIMIT_EXCEEDED,
                        format!(
                            "message of {len} bytes exceeds max_message_size ({} bytes)",
                            self.max_message
                        ),
                    ));
                }
                self.rbuf.reserve(len as usize + 1);
            }
            match PgWireFrontendMessage::decode(&mut self.rbuf, &self.ctx) {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => {
                    return Err(PgError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid frontend message: {e}"),
                    ))
                }
            }
            if self.stream.set_read_timeout(timeout).is_err() {
                return Ok(None);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(PgError::fatal(
                        sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                        "terminating connection due to idle-in-transaction timeout",
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "read failed");
                    return Ok(None);
                }
            }
        }
    }
}

/// Serve one TCP connection until it closes (blocking; run on its own thread).
pub fn serve(node: Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    let mut wire = Wire {
        stream,
        rbuf: BytesMut::with_capacity(8192),
        wbuf: BytesMut::with_capacity(8192),
        ctx: DecodeContext::new(ProtocolVersion::PROTOCOL3_0),
        max_message: node.config.max_message_size.0 as usize,
    };
    let startup = match startup(&node, &mut wire) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            wire.error(&e);
            let _ = wire.flush();
            return;
        }
    };
    node.open_sessions.fetch_add(1, Ordering::SeqCst);
    let mut s = match Session::new(node.clone(), startup, peer, &wire.stream) {
        Ok(s) => s,
        Err(e) => {
            node.open_sessions.fetch_sub(1, Ordering::SeqCst);
            wire.error(&e);
            let _ = wire.flush();
            return;
        }
    };
    s.greet(&mut wire);
    if wire.flush().is_ok() {
        s.run(&mut wire);
    }
    s.finish();
    node.open_sessions.fetch_sub(1, Ordering::SeqCst);
}

struct StartupInfo {
    params: std::collections::BTreeMap<String, String>,
}

fn startup(node: &Arc<Node>, wire: &mut Wire) -> Result<Option<StartupInfo>, PgError> {
    let t = Duration::from_secs(30);
    loop {
        let msg = wire.read(Some(t)).map_err(|e| {
            if e.code == sqlstate::IDLE_IN_TRANSACTION_TIMEOUT {
                PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "no startup message within 30 s",
                )
            } else {
                e
            }
        })?;
        let Some(msg) = msg else {
            return Ok(None);
        };
        match msg {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_))
            | PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                // No TLS yet: 'N' makes libpq fall back to plain (or fail if sslmode=require).
                wire.stream
                    .write_all(b"N")
                    .map_err(|_| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "write failed"))?;
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) => {
                wire.ctx.awaiting_frontend_ssl = false;
            }
            PgWireFrontendMessage::CancelRequest(c) => {
                cancel(node, c.pid, &c.secret_key);
                return Ok(None);
            }
            PgWireFrontendMessage::Startup(st) => {
                wire.ctx.awaiting_frontend_ssl = false;
                wire.ctx.awaiting_frontend_startup = false;
                if st.protocol_number_major != 3 {
                    return Err(PgError::fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "unsupported frontend protocol {}.{}: server supports 3.0",
                            st.protocol_number_major, st.protocol_number_minor
                        ),
                    ));
                }
                if st.protocol_number_minor > 0 {
                    let unsupported: Vec<String> = st
                        .parameters
                        .keys()
                        .filter(|k| k.starts_with("_pq_."))
                        .cloned()
                        .collect();
                    wire.send(PgWireBackendMessage::NegotiateProtocolVersion(
                        NegotiateProtocolVersion::new(0, unsupported),
                    ));
                }
                if node.is_shutting_down() || node.demoting.load(Ordering::SeqCst) {
                    return Err(PgError::fatal(
                        sqlstate::CANNOT_CONNECT_NOW,
                        node.ending_reason(),
                    ));
                }
                if node.open_sessions.load(Ordering::SeqCst) >= node.config.max_connections {
                    return Err(PgError::fatal(
                        sqlstate::TOO_MANY_CONNECTIONS,
                        "sorry, too many clients already",
                    ));
                }
                return Ok(Some(StartupInfo {
                    params: st.parameters,
                }));
            }
            _ => {
                return Err(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "expected a startup message",
                ))
            }
        }
    }
}

fn cancel(node: &Node, pid: i32, key: &SecretKey) {
    let reg = node.registry();
    if let Some(h) = reg.get(&pid) {
        if key.eq_value(&SecretKey::I32(h.secret)) {
            info!(pid, "cancel request");
            h.cancel.store(true, Ordering::SeqCst);
            h.interrupt.interrupt();
            return;
        }
    }
    debug!(pid, "cancel request for an unknown session ignored");
}

struct Session {
    node: Arc<Node>,
    db: SessionDb,
    pid: i32,
    secret: i32,
    /// Set by a CancelRequest; checked by waits and cleared before each statement.
    cancel: Arc<AtomicBool>,
    tx: Tx,
    /// The block was opened by hadr for a multi-statement query string.
    implicit: bool,
    read_only_tx: bool,
    permit: Option<WritePermit>,
    statements: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, Portal>,
    settings: HashMap<String, String>,
    /// After an error in the extended protocol, messages are skipped until Sync.
    skip_to_sync: bool,
    peer: SocketAddr,
}

impl Session {
    fn new(
        node: Arc<Node>,
        st: StartupInfo,
        peer: SocketAddr,
        stream: &TcpStream,
    ) -> Result<Session, PgError> {
        let conn = node.engine.connect().map_err(|e| {
            PgError::fatal(sqlstate::IO_ERROR, format!("cannot open the database: {e}"))
        })?;
        let interrupt = Arc::new(conn.get_interrupt_handle());
        let pid = node.next_pid();
        let secret: i32 = rand_secret();
        let cancel = Arc::new(AtomicBool::new(false));
        let socket = stream.try_clone().ok();
        node.registry().insert(
            pid,
            SessionHandle {
                secret,
                interrupt,
                cancel: cancel.clone(),
                socket,
            },
        );
        let mut settings = HashMap::new();
        settings.insert(
            "application_name".to_string(),
            st.params
                .get("application_name")
                .cloned()
                .unwrap_or_default(),
        );
        settings.insert(
            "user".to_string(),
            st.params
                .get("user")
                .cloned()
                .unwrap_or_else(|| "hadr".into()),
        );
        debug!(pid, %peer, "session start");
        Ok(Session {
            db: SessionDb {
                conn,
                engine: node.engine.clone(),
            },
            node,
            pid,
            secret,
            cancel,
            tx: Tx::Idle,
            implicit: false,
            read_only_tx: false,
            permit: None,
            statements: HashMap::new(),
            portals: HashMap::new(),
            settings,
            skip_to_sync: false,
            peer,
        })
    }

    fn parameter_statuses(&self) -> Vec<(&'static str, String)> {
        vec![
            ("server_version", SERVER_VERSION.into()),
            ("server_encoding", "UTF8".into()),
            ("client_encoding", "UTF8".into()),
            ("DateStyle", "ISO, MDY".into()),
            ("IntervalStyle", "postgres".into()),
            ("TimeZone", "UTC".into()),
            ("integer_datetimes", "on".into()),
            ("standard_conforming_strings", "on".into()),
            ("is_superuser", "on".into()),
            (
                "session_authorization",
                self.settings.get("user").cloned().unwrap_or_default(),
            ),
            (
                "application_name",
                self.settings
                    .get("application_name")
                    .cloned()
                    .unwrap_or_default(),
            ),
            ("in_hot_standby", on_off(self.node.is_standby())),
            (
                "default_transaction_read_only",
                on_off(!self.node.writable()),
            ),
        ]
    }

    fn greet(&mut self, wire: &mut Wire) {
        wire.send(PgWireBackendMessage::Authentication(Authentication::Ok));
        for (k, v) in self.parameter_statuses() {
            wire.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                k.to_string(),
                v,
            )));
        }
        wire.send(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
            self.pid,
            SecretKey::I32(self.secret),
        )));
        self.ready(wire);
    }

    fn status(&self) -> TransactionStatus {
        match self.tx {
            Tx::Idle => TransactionStatus::Idle,
            Tx::Block => TransactionStatus::Transaction,
            Tx::Failed => TransactionStatus::Error,
        }
    }

    fn ready(&mut self, wire: &mut Wire) {
        wire.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            self.status(),
        )));
    }

    fn run(&mut self, wire: &mut Wire) {
        loop {
            let idle = self.node.config.idle_in_transaction_timeout.0;
            let timeout = (self.tx != Tx::Idle && !idle.is_zero()).then_some(idle);
            let msg = wire.read(timeout);
            // Shutdown closes our socket's read side, which ends the read above.
            if self.node.demoting.load(Ordering::SeqCst) {
                wire.error(&PgError::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    self.node.ending_reason(),
                ));
                let _ = wire.flush();
                return;
            }
            if self.node.is_shutting_down() {
                wire.error(&PgError::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                ));
                let _ = wire.flush();
                return;
            }
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    if e.code == sqlstate::IDLE_IN_TRANSACTION_TIMEOUT {
                        info!(pid = self.pid, peer = %self.peer, "closing session idle in transaction");
                    } else {
                        warn!(pid = self.pid, peer = %self.peer, error = %e, "closing session after a protocol error");
                    }
                    wire.error(&e);
                    let _ = wire.flush();
                    return;
                }
            };
            self.cancel.store(false, Ordering::SeqCst);
            let flow = self.dispatch(wire, msg);
            if matches!(flow, Flow::Close) {
                let _ = wire.flush();
                return;
            }
            if wire.wbuf.len() > 1 << 20 && wire.flush().is_err() {
                return;
            }
        }
    }

    fn dispatch(&mut self, wire: &mut Wire, msg: PgWireFrontendMessage) -> Flow {
        use PgWireFrontendMessage as M;
        if msg.is_extended_query() && self.skip_to_sync && !matches!(msg, M::Sync(_)) {
            return Flow::Continue;
        }
        let r = match msg {
            M::Query(q) => {
                self.simple_query(wire, &q.query);
                self.ready(wire);
                if wire.flush().is_err() {
                    return Flow::Close;
                }
                Ok(())
            }
            M::Parse(p) => self.parse(wire, p.name.unwrap_or_default(), p.query, p.type_oids),
            M::Bind(b) => self.bind(wire, b),
            M::Describe(d) => self.describe(wire, d.target_type, d.name.unwrap_or_default()),
            M::Execute(e) => self.execute_portal(wire, e.name.unwrap_or_default(), e.max_rows),
            M::Close(c) => {
                let name = c.name.unwrap_or_default();
                if c.target_type == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                wire.send(PgWireBackendMessage::CloseComplete(CloseComplete::new()));
                Ok(())
            }
            M::Sync(_) => {
                self.skip_to_sync = false;
                self.portals.remove("");
                self.ready(wire);
                if wire.flush().is_err() {
                    return Flow::Close;
                }
                Ok(())
            }
            M::Flush(_) => {
                if wire.flush().is_err() {
                    return Flow::Close;
                }
                Ok(())
            }
            M::Terminate(_) => return Flow::Close,
            M::CopyData(_) | M::CopyDone(_) | M::CopyFail(_) => Err(PgError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY is not supported",
            )),
            _ => {
                wire.error(&PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "unexpected message",
                ));
                return Flow::Close;
            }
        };
        if let Err(e) = r {
            if e.severity == "FATAL" {
                wire.error(&e);
                return Flow::Close;
            }
            wire.error(&e);
            self.skip_to_sync = true;
        }
        Flow::Continue
    }

    // ---- simple query -------------------------------------------------------

    fn simple_query(&mut self, wire: &mut Wire, text: &str) {
        let stmts = hadr_sql::split(text);
        if stmts.is_empty() {
            wire.send(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ));
            return;
        }
        let stmts: Vec<(String, Command)> = stmts
            .into_iter()
            .map(|s| {
                let c = hadr_sql::classify(&s);
                (s, c)
            })
            .collect();
        // Several statements outside a block run as one implicit transaction, as in PostgreSQL.
        let implicit = stmts.len() > 1
            && self.tx == Tx::Idle
            && !stmts
                .iter()
                .any(|(_, c)| hadr_sql::is_transaction_control(c) || matches!(c, Command::Vacuum));
        if implicit {
            let writes = stmts.iter().any(|(_, c)| predicts_write(c));
            if writes {
                match self.node.acquire_write(&self.cancel) {
                    Ok(p) => self.permit = Some(p),
                    Err(e) => {
                        wire.error(&e);
                        return;
                    }
                }
            }
            if let Err(e) = self.run_plain("BEGIN") {
                self.permit = None;
                wire.error(&e);
                return;
            }
            self.tx = Tx::Block;
            self.implicit = true;
        }
        for (sql, cmd) in stmts {
            let r = match self.prepare_text(sql, cmd, Vec::new()) {
                Ok(p) => self.run_statement(wire, p, Vec::new(), None, Vec::new(), true),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                self.fail(wire, &e);
                break;
            }
        }
        if self.implicit {
            self.implicit = false;
            if self.tx == Tx::Block {
                if let Err(e) = self.commit() {
                    wire.error(&e);
                }
            } else {
                self.rollback();
            }
        }
    }

    /// Describe a statement: hadr answers session commands (BEGIN, SET, SHOW…)
    /// itself; everything else is prepared on SQLite.
    fn prepare_text(
        &mut self,
        sql: String,
        cmd: Command,
        oids: Vec<u32>,
    ) -> Result<Arc<Prepared>, PgError> {
        if is_session_command(&cmd) {
            return Ok(Arc::new(Prepared::session(sql, cmd)));
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

    /// Record an error: inside a block the block is aborted.
    fn fail(&mut self, wire: &mut Wire, e: &PgError) {
        wire.error(e);
        if self.tx == Tx::Block {
            self.tx = Tx::Failed;
        }
    }

    // ---- statement execution (both protocols) -------------------------------

    /// Run one statement and send its rows (if `send_rows`) and CommandComplete.
    fn run_statement(
        &mut self,
        wire: &mut Wire,
        p: Arc<Prepared>,
        params: Vec<Value>,
        described: Option<Vec<PgType>>,
        result_binary: Vec<bool>,
        send_row_description: bool,
    ) -> Result<(), PgError> {
        self.node.stats.statements.fetch_add(1, Ordering::Relaxed);
        let cmd = p.command.clone();
        if self.tx == Tx::Failed
            && !matches!(
                cmd,
                Command::Rollback | Command::Commit | Command::RollbackTo(_)
            )
        {
            return Err(PgError::new(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        match &cmd {
            Command::Begin { read_only } => {
                if self.tx != Tx::Idle {
                    wire.notice(
                        sqlstate::ACTIVE_TRANSACTION,
                        "there is already a transaction in progress",
                    );
                } else {
                    self.run_plain("BEGIN")?;
                    self.tx = Tx::Block;
                    self.read_only_tx = *read_only;
                }
                return self.complete(wire, "BEGIN");
            }
            Command::Commit => {
                let tag = match self.tx {
                    Tx::Idle => {
                        wire.notice(
                            sqlstate::NO_ACTIVE_TRANSACTION,
                            "there is no transaction in progress",
                        );
                        "COMMIT"
                    }
                    Tx::Failed => {
                        self.rollback();
                        "ROLLBACK"
                    }
                    Tx::Block => {
                        self.commit()?;
                        "COMMIT"
                    }
                };
                return self.complete(wire, tag);
            }
            Command::Rollback => {
                if self.tx == Tx::Idle {
                    wire.notice(
                        sqlstate::NO_ACTIVE_TRANSACTION,
                        "there is no transaction in progress",
                    );
                }
                self.rollback();
                return self.complete(wire, "ROLLBACK");
            }
            Command::Savepoint(_) | Command::Release(_) | Command::RollbackTo(_) => {
                if self.tx == Tx::Idle {
                    return Err(PgError::new(
                        sqlstate::NO_ACTIVE_TRANSACTION,
                        format!(
                            "{} can only be used in transaction blocks",
                            hadr_sql::command_tag(&cmd, 0)
                        ),
                    ));
                }
                let r = exec::exec_plain(&mut self.db, &p.original, false);
                match r {
                    Ok(_) => {
                        if matches!(cmd, Command::RollbackTo(_)) {
                            self.tx = Tx::Block;
                        }
                    }
                    Err(ExecError::Pg(e, _)) | Err(ExecError::Capture(e)) => return Err(e),
                    Err(ExecError::NeedPermit) => {}
                }
                return self.complete(wire, &hadr_sql::command_tag(&cmd, 0));
            }
            Command::Set { name, value, .. } => {
                self.set(name, value)?;
                return self.complete(wire, "SET");
            }
            Command::Reset(name) => {
                if name == "all" {
                    self.settings
                        .retain(|k, _| k == "user" || k == "application_name");
                } else {
                    self.settings.remove(name);
                }
                return self.complete(wire, "RESET");
            }
            Command::Show(name) => {
                let v = self.show(name)?;
                if send_row_description {
                    wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
                        vec![field(name, PgType::Text, false)],
                    )));
                }
                let mut data = BytesMut::new();
                values::put_field(&mut data, Some(v.as_bytes()));
                wire.send(PgWireBackendMessage::DataRow(DataRow::new(data, 1)));
                return self.complete(wire, "SHOW");
            }
            Command::Discard | Command::Listen | Command::Unlisten | Command::Notify => {
                return self.complete(wire, &hadr_sql::command_tag(&cmd, 0));
            }
            Command::Empty => {
                wire.send(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ));
                return Ok(());
            }
            _ => {}
        }
        if self.read_only_tx && predicts_write(&cmd) {
            return Err(read_only_error(&cmd));
        }
        self.check_replay_lag()?;
        let outcome =
            self.execute_with_permit(p.clone(), params, described.clone(), predicts_write(&cmd))?;
        if let Some(lsn) = outcome.commit_lsn {
            self.node.wait_durable(lsn)?;
            self.node.wait_replicated(lsn)?;
            if self.remote_apply() {
                self.node.wait_applied(lsn)?;
            }
            self.node.stats.commits.fetch_add(1, Ordering::Relaxed);
        }
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
        self.complete(wire, &hadr_sql::command_tag(&cmd, n))
    }

    /// Execute, taking the write permit first when the statement writes.
    fn execute_with_permit(
        &mut self,
        p: Arc<Prepared>,
        params: Vec<Value>,
        described: Option<Vec<PgType>>,
        predicted_write: bool,
    ) -> Result<Outcome, PgError> {
        let mut want_permit = predicted_write || !p.readonly;
        if want_permit {
            if let Some(why) = self.node.write_refusal() {
                return Err(read_only_error(&p.command).with_hint(why));
            }
        }
        loop {
            if want_permit && self.permit.is_none() {
                self.permit = Some(self.node.acquire_write(&self.cancel)?);
            }
            let have = self.permit.is_some();
            let r = exec::execute(&mut self.db, &p, &params, have, described.as_deref());
            match r {
                Ok(mut o) => {
                    if o.autocommit_after && self.tx == Tx::Idle {
                        self.permit = None;
                    }
                    if o.write_ended {
                        o.commit_lsn = Some(self.capture()?);
                    }
                    return Ok(o);
                }
                Err(ExecError::NeedPermit) => {
                    if let Some(why) = self.node.write_refusal() {
                        return Err(read_only_error(&p.command).with_hint(why));
                    }
                    want_permit = true;
                }
                Err(ExecError::Pg(e, autocommit)) => {
                    if autocommit && self.tx == Tx::Idle {
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

    fn run_plain(&mut self, sql: &'static str) -> Result<Outcome, PgError> {
        let have = self.permit.is_some();
        match exec::exec_plain(&mut self.db, sql, have) {
            Ok(o) => Ok(o),
            Err(ExecError::Pg(e, _)) | Err(ExecError::Capture(e)) => Err(e),
            Err(ExecError::NeedPermit) => Err(PgError::new(
                sqlstate::INTERNAL_ERROR,
                "unexpected permit request",
            )),
        }
    }

    /// Capture after a write transaction ended; the gate is already released.
    fn capture(&mut self) -> Result<Lsn, PgError> {
        match exec::capture(&self.db) {
            Ok(lsn) => {
                self.node.log_grew(lsn);
                Ok(lsn)
            }
            Err(ExecError::Capture(e)) | Err(ExecError::Pg(e, _)) => Err(e),
            Err(ExecError::NeedPermit) => Err(PgError::new(
                sqlstate::INTERNAL_ERROR,
                "unexpected permit request",
            )),
        }
    }

    /// COMMIT a block: the SQLite commit under the write gate; capture and the
    /// wait for durability after releasing it, so the next writer waits for
    /// neither.
    fn commit(&mut self) -> Result<(), PgError> {
        let r = self.run_plain("COMMIT");
        self.tx = Tx::Idle;
        self.read_only_tx = false;
        match r {
            Ok(o) => {
                self.permit = None;
                let lsn = if o.write_ended {
                    Some(self.capture()?)
                } else {
                    None
                };
                if let Some(lsn) = lsn {
                    self.node.wait_durable(lsn)?;
                    self.node.wait_replicated(lsn)?;
                    if self.remote_apply() {
                        self.node.wait_applied(lsn)?;
                    }
                    self.node.stats.commits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                // A failed COMMIT (e.g. a deferred foreign key) leaves the
                // transaction open in SQLite; roll it back as PostgreSQL does.
                self.rollback();
                Err(e)
            }
        }
    }

    fn rollback(&mut self) {
        if !self.db.conn.is_autocommit() {
            let _ = self.db.conn.execute_batch("ROLLBACK");
        }
        self.tx = Tx::Idle;
        self.read_only_tx = false;
        self.permit = None;
    }

    fn complete(&mut self, wire: &mut Wire, tag: &str) -> Result<(), PgError> {
        wire.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
            tag.to_string(),
        )));
        Ok(())
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), PgError> {
        let v = value.trim().trim_matches('\'').to_string();
        match name {
            "client_encoding"
                if !v.eq_ignore_ascii_case("utf8")
                    && !v.eq_ignore_ascii_case("unicode")
                    && !v.eq_ignore_ascii_case("default") =>
            {
                return Err(PgError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("client_encoding {v} is not supported; hadr speaks UTF8 only"),
                ));
            }
            "hadr.commit_wait"
                if !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "remote_apply" | "local" | "default" | "on"
                ) =>
            {
                return Err(PgError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "invalid value for hadr.commit_wait: \"{v}\" (remote_apply, on or local)"
                    ),
                ));
            }
            "hadr.max_replay_lag" if v.parse::<crate::config::Dur>().is_err() => {
                return Err(PgError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "invalid value for hadr.max_replay_lag: \"{v}\" (a duration such as 500ms)"
                    ),
                ));
            }
            "transaction_read_only" if self.tx == Tx::Block => {
                self.read_only_tx = matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "1");
            }
            _ => {}
        }
        if v.eq_ignore_ascii_case("default") {
            self.settings.remove(name);
        } else {
            self.settings.insert(name.to_string(), v);
        }
        Ok(())
    }

    fn remote_apply(&self) -> bool {
        self.settings
            .get("hadr.commit_wait")
            .is_some_and(|v| v.eq_ignore_ascii_case("remote_apply"))
    }

    /// `hadr.max_replay_lag` on a standby: refuse reads that could be staler.
    fn check_replay_lag(&self) -> Result<(), PgError> {
        let Some(max) = self.settings.get("hadr.max_replay_lag") else {
            return Ok(());
        };
        let Ok(max) = max.parse::<crate::config::Dur>() else {
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

    fn show(&self, name: &str) -> Result<String, PgError> {
        if let Some(v) = self.settings.get(name) {
            return Ok(v.clone());
        }
        if name == "transaction_read_only" {
            return Ok(on_off(self.read_only_tx || !self.node.writable()));
        }
        if name == "transaction_isolation" || name == "default_transaction_isolation" {
            return Ok("serializable".into());
        }
        if name == "max_connections" {
            return Ok(self.node.config.max_connections.to_string());
        }
        if name == "idle_in_transaction_session_timeout" {
            return Ok(format!(
                "{}ms",
                self.node.config.idle_in_transaction_timeout.0.as_millis()
            ));
        }
        for (k, v) in self.parameter_statuses() {
            if k.eq_ignore_ascii_case(name) {
                return Ok(v);
            }
        }
        Err(PgError::new(
            sqlstate::UNDEFINED_OBJECT,
            format!("unrecognized configuration parameter \"{name}\""),
        ))
    }

    // ---- extended protocol --------------------------------------------------

    fn parse(
        &mut self,
        wire: &mut Wire,
        name: String,
        query: String,
        oids: Vec<u32>,
    ) -> Result<(), PgError> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(PgError::new(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let stmts = hadr_sql::split(&query);
        if stmts.len() > 1 {
            return Err(PgError::new(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let text = stmts.into_iter().next().unwrap_or_default();
        let cmd = hadr_sql::classify(&text);
        let p = self.prepare_text(text, cmd, oids)?;
        self.statements.insert(name, p);
        wire.send(PgWireBackendMessage::ParseComplete(ParseComplete::new()));
        Ok(())
    }

    fn bind(
        &mut self,
        wire: &mut Wire,
        b: pgwire::messages::extendedquery::Bind,
    ) -> Result<(), PgError> {
        let sname = b.statement_name.unwrap_or_default();
        let pname = b.portal_name.unwrap_or_default();
        let stmt = self.statements.get(&sname).cloned().ok_or_else(|| {
            PgError::new(
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                format!("prepared statement \"{sname}\" does not exist"),
            )
        })?;
        if b.parameters.len() != stmt.param_types.len() {
            return Err(PgError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!("bind message supplies {} parameters, but prepared statement \"{sname}\" requires {}", b.parameters.len(), stmt.param_types.len()),
            ));
        }
        let fmt = |codes: &[i16], i: usize| -> bool {
            match codes.len() {
                0 => false,
                1 => codes[0] == 1,
                _ => codes.get(i).copied().unwrap_or(0) == 1,
            }
        };
        let mut params = Vec::with_capacity(b.parameters.len());
        for (i, raw) in b.parameters.iter().enumerate() {
            let v = values::decode_param(
                raw.as_deref(),
                stmt.param_types[i],
                fmt(&b.parameter_format_codes, i),
            )?;
            params.push(v);
        }
        let ncols = stmt.columns.len().max(1);
        let result_binary = (0..ncols)
            .map(|i| fmt(&b.result_column_format_codes, i))
            .collect();
        self.portals.insert(
            pname,
            Portal {
                stmt,
                params,
                result_binary,
                described: None,
                pending: None,
                exhausted: false,
            },
        );
        wire.send(PgWireBackendMessage::BindComplete(BindComplete::new()));
        Ok(())
    }

    fn describe(&mut self, wire: &mut Wire, target: u8, name: String) -> Result<(), PgError> {
        if target == b'S' {
            let stmt = self.statements.get(&name).cloned().ok_or_else(|| {
                PgError::new(
                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                    format!("prepared statement \"{name}\" does not exist"),
                )
            })?;
            wire.send(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(stmt.param_types.iter().map(|t| t.oid()).collect()),
            ));
            self.describe_columns(wire, &stmt, None);
            return Ok(());
        }
        let portal = self.portals.get_mut(&name).ok_or_else(|| {
            PgError::new(
                sqlstate::INVALID_CURSOR_NAME,
                format!("portal \"{name}\" does not exist"),
            )
        })?;
        let stmt = portal.stmt.clone();
        let binary = portal.result_binary.clone();
        let types: Vec<PgType> = stmt
            .columns
            .iter()
            .map(|c| c.ty.unwrap_or(PgType::Text))
            .collect();
        portal.described = Some(types);
        self.describe_columns(wire, &stmt, Some(&binary));
        Ok(())
    }

    fn describe_columns(&self, wire: &mut Wire, stmt: &Prepared, binary: Option<&[bool]>) {
        if matches!(stmt.command, Command::Show(_)) {
            wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
                vec![field("setting", PgType::Text, false)],
            )));
        } else if stmt.columns.is_empty() {
            wire.send(PgWireBackendMessage::NoData(NoData::new()));
        } else {
            let fields = stmt
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    field(
                        &c.name,
                        c.ty.unwrap_or(PgType::Text),
                        binary.map(|b| fmt_binary(b, i)).unwrap_or(false),
                    )
                })
                .collect();
            wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
                fields,
            )));
        }
    }

    fn execute_portal(
        &mut self,
        wire: &mut Wire,
        name: String,
        max_rows: i32,
    ) -> Result<(), PgError> {
        let portal = self.portals.get_mut(&name).ok_or_else(|| {
            PgError::new(
                sqlstate::INVALID_CURSOR_NAME,
                format!("portal \"{name}\" does not exist"),
            )
        })?;
        if portal.exhausted {
            let tag = hadr_sql::command_tag(&portal.stmt.command, 0);
            return self.complete(wire, &tag);
        }
        portal.exhausted = true;
        // A suspended portal continues where it stopped.
        if let Some((outcome, sent)) = portal.pending.take() {
            let binary = portal.result_binary.clone();
            return self.send_batch(wire, &name, outcome, sent, max_rows, &binary);
        }
        let stmt = portal.stmt.clone();
        let params = portal.params.clone();
        let binary = portal.result_binary.clone();
        let described = portal.described.clone();
        let limited = max_rows > 0 && !stmt.columns.is_empty();
        if !limited {
            let r = self.run_statement(wire, stmt, params, described, binary, false);
            if let Err(e) = r {
                if self.tx == Tx::Block {
                    self.tx = Tx::Failed;
                }
                return Err(e);
            }
            return Ok(());
        }
        if self.tx == Tx::Failed {
            return Err(PgError::new(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let cmd = stmt.command.clone();
        self.check_replay_lag()?;
        let outcome = match self.execute_with_permit(stmt, params, described, predicts_write(&cmd))
        {
            Ok(o) => o,
            Err(e) => {
                if self.tx == Tx::Block {
                    self.tx = Tx::Failed;
                }
                return Err(e);
            }
        };
        if let Some(lsn) = outcome.commit_lsn {
            self.node.wait_durable(lsn)?;
            self.node.wait_replicated(lsn)?;
            if self.remote_apply() {
                self.node.wait_applied(lsn)?;
            }
        }
        self.send_batch(wire, &name, outcome, 0, max_rows, &binary)
    }

    fn send_batch(
        &mut self,
        wire: &mut Wire,
        portal: &str,
        outcome: Outcome,
        from: usize,
        max_rows: i32,
        binary: &[bool],
    ) -> Result<(), PgError> {
        let end = if max_rows > 0 {
            (from + max_rows as usize).min(outcome.rows.len())
        } else {
            outcome.rows.len()
        };
        send_rows(wire, &outcome, from, end, binary)?;
        if end < outcome.rows.len() {
            wire.send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()));
            if let Some(p) = self.portals.get_mut(portal) {
                p.pending = Some((outcome, end));
                p.exhausted = false;
            }
            return Ok(());
        }
        let cmd = self
            .portals
            .get(portal)
            .map(|p| p.stmt.command.clone())
            .unwrap_or(Command::Select);
        let n = if matches!(cmd, Command::Insert | Command::Update | Command::Delete) {
            outcome.changes
        } else {
            outcome.rows.len() as u64
        };
        self.complete(wire, &hadr_sql::command_tag(&cmd, n))
    }

    /// End of session: roll back, release the permit, leave the registry.
    fn finish(&mut self) {
        if self.tx != Tx::Idle || self.permit.is_some() {
            self.rollback();
        }
        self.node.registry().remove(&self.pid);
        debug!(pid = self.pid, "session end");
    }
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

fn read_only_error(cmd: &Command) -> PgError {
    let verb = hadr_sql::command_tag(cmd, 0);
    let verb = verb.split(' ').next().unwrap_or("statement").to_string();
    PgError::new(
        sqlstate::READ_ONLY_TRANSACTION,
        format!("cannot execute {verb} in a read-only transaction"),
    )
}

fn fmt_binary(codes: &[bool], i: usize) -> bool {
    match codes.len() {
        0 => false,
        1 => codes[0],
        _ => codes.get(i).copied().unwrap_or(false),
    }
}

fn field(name: &str, t: PgType, binary: bool) -> FieldDescription {
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

fn send_rows(
    wire: &mut Wire,
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

/// Statements hadr answers itself, without SQLite.
fn is_session_command(c: &Command) -> bool {
    matches!(
        c,
        Command::Begin { .. }
            | Command::Commit
            | Command::Rollback
            | Command::Savepoint(_)
            | Command::Release(_)
            | Command::RollbackTo(_)
            | Command::Set { .. }
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
fn predicts_write(c: &Command) -> bool {
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

fn rand_secret() -> i32 {
    // Unpredictable enough for a cancel key: the uuid crate's v4 comes from the OS RNG.
    let b = uuid::Uuid::new_v4().into_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
