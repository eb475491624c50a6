//! A session's state (its connection, transaction, write permit, prepared
//! statements and portals) and the end of a transaction: commit, rollback,
//! and the waits that stand between a commit and its acknowledgement.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::debug;

use super::portal::Portal;
use super::settings::Settings;
use super::startup::StartupInfo;
use super::tx::{self, Event, Status, TxState};
use crate::errors::{sqlstate, PgError};
use crate::exec::{self, ExecError, Outcome, Prepared, SessionDb};
use crate::node::{Node, SessionHandle};
use crate::write_lock::WritePermit;

/// One client session past start-up.
pub struct Session {
    pub(super) node: Arc<Node>,
    pub(super) db: SessionDb,
    pub(super) pid: i32,
    pub(super) secret: i32,
    /// Set by a CancelRequest; checked by waits and cleared before each statement.
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) tx: TxState,
    pub(super) permit: Option<WritePermit>,
    pub(super) statements: HashMap<String, Arc<Prepared>>,
    pub(super) portals: HashMap<String, Portal>,
    /// Shared with `current_setting()`/`set_config()`
    /// (crates/hadr-server/src/pg_functions.rs), which run inside this
    /// session's statements on its own thread.
    pub(super) settings: Arc<Mutex<Settings>>,
    /// After an error in the extended protocol, messages are skipped until Sync.
    pub(super) skip_to_sync: bool,
    pub(super) peer: SocketAddr,
    /// [`Node::topology_generation`] when the client was last sent the topology.
    pub(super) topology_generation: u64,
    /// The user it logged in as.
    pub(super) user: String,
    /// What its role may do.
    pub(super) access: crate::auth::Access,
    /// Set while a role statement runs: lifts the guard on the role
    /// tables (crates/hadr-server/src/auth/roles.rs).
    pub(super) role_writes: Arc<AtomicBool>,
}

impl Session {
    /// Open the session's SQLite connection and register it for cancel and
    /// shutdown (`socket`: a handle on the client's socket, to end a blocked read).
    pub fn new(
        node: Arc<Node>,
        st: StartupInfo,
        peer: SocketAddr,
        socket: Option<TcpStream>,
    ) -> Result<Session, PgError> {
        let conn = node.engine.connect().map_err(|e| {
            PgError::fatal(sqlstate::IO_ERROR, format!("cannot open the database: {e}"))
        })?;
        let role_writes = Arc::new(AtomicBool::new(false));
        crate::auth::roles::guard(&conn, st.access.admin, role_writes.clone());
        let interrupt = Arc::new(conn.get_interrupt_handle());
        let pid = node.next_pid();
        let secret: i32 = rand_secret();
        let cancel = Arc::new(AtomicBool::new(false));
        node.registry().insert(
            pid,
            SessionHandle {
                secret,
                interrupt,
                cancel: cancel.clone(),
                socket,
            },
        );
        // The start-up check ran before this registration: a hand-over or
        // shutdown that began in between has already ended the sessions it
        // found (end_sessions runs after `demoting` is set), so this one
        // must not greet its client as a writable primary.
        if node.is_shutting_down() || node.demoting.load(Ordering::SeqCst) {
            node.registry().remove(&pid);
            return Err(PgError::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                node.ending_reason(),
            ));
        }
        let settings = Arc::new(Mutex::new(Settings::from_startup(
            st.params.get("user").map(String::as_str),
            st.params.get("application_name").map(String::as_str),
        )));
        let clocks = Arc::new(crate::pg_functions::Clocks::default());
        let ending = {
            let node = node.clone();
            Arc::new(move || node.is_shutting_down() || node.demoting.load(Ordering::SeqCst))
        };
        crate::pg_functions::register(
            &conn,
            crate::pg_functions::SessionFacts {
                user: st.params.get("user").cloned().unwrap_or_default(),
                // PostgreSQL's default: the database named as the user.
                database: st
                    .params
                    .get("database")
                    .or_else(|| st.params.get("user"))
                    .cloned()
                    .unwrap_or_default(),
                pid,
                clocks: clocks.clone(),
                cancel: cancel.clone(),
                ending,
                settings: settings_access(&settings, &node),
            },
        )
        .and_then(|()| {
            crate::catalog_functions::register(
                &conn,
                st.params
                    .get("user")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )
        })
        .map_err(|e| {
            node.registry().remove(&pid);
            PgError::fatal(
                sqlstate::INTERNAL_ERROR,
                format!("cannot set up the session's functions: {e}"),
            )
        })?;
        debug!(pid, %peer, "session start");
        Ok(Session {
            db: SessionDb {
                conn,
                engine: node.engine.clone(),
                clocks,
            },
            node,
            pid,
            secret,
            cancel,
            tx: TxState::default(),
            permit: None,
            statements: HashMap::new(),
            portals: HashMap::new(),
            settings,
            skip_to_sync: false,
            peer,
            topology_generation: 0,
            user: st.params.get("user").cloned().unwrap_or_default(),
            access: st.access,
            role_writes,
        })
    }

    /// The session's settings (briefly: `current_setting()` takes them too).
    pub(super) fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error a client is sent. While the node stops serving (a
    /// hand-over, a fencing, a shutdown), a statement stopped by it — the
    /// interrupt (57014), the write lock (55P03), the node no longer
    /// writable (25006) — ends the session too: FATAL 57P01 with the
    /// reason, which stock drivers treat as "reconnect, elsewhere if need
    /// be", at once, rather than an error the application sees first and a
    /// closed connection on its next statement. Only those: each means
    /// nothing was committed, while an error from a commit's wait (its
    /// outcome unknown, 08007) must reach the client as it is.
    pub(super) fn to_client(&self, e: PgError) -> PgError {
        let stopped_by_the_ending = e.severity != "FATAL"
            && [
                sqlstate::QUERY_CANCELED,
                sqlstate::LOCK_NOT_AVAILABLE,
                sqlstate::READ_ONLY_TRANSACTION,
            ]
            .contains(&e.code);
        if stopped_by_the_ending {
            if let Some(t) = self.node.terminating() {
                return t;
            }
        }
        e
    }

    /// Tell the transaction state machine that a statement failed.
    pub(super) fn failed(&mut self) {
        self.tx = tx::step(self.tx, Event::Failed).next;
    }

    /// Begin a block on SQLite (BEGIN, or hadr's implicit block).
    pub(super) fn open_block(&mut self, read_only: bool, implicit: bool) -> Result<(), PgError> {
        self.run_plain("BEGIN")?;
        self.tx = tx::step(
            self.tx,
            Event::Opened {
                read_only,
                implicit,
            },
        )
        .next;
        Ok(())
    }

    pub(super) fn run_plain(&mut self, sql: &'static str) -> Result<Outcome, PgError> {
        let have = self.permit.is_some();
        exec::exec_plain(&mut self.db, sql, have).map_err(unexpected_permit)
    }

    /// COMMIT a block: the SQLite commit under the write gate; capture and the
    /// wait for durability after releasing it, so the next writer waits for
    /// neither. The block is over either way.
    pub(super) fn commit(&mut self) -> Result<(), PgError> {
        // A writing transaction records the session's commit token in itself
        // (docs/clients.md §Commit outcomes); the token is used up either way.
        if self.permit.is_some() {
            let token = self.settings().commit_token().map(str::to_string);
            if let Some(token) = token {
                self.settings().clear_commit_token();
                let epoch = self.node.engine.control().epoch;
                if let Err(e) = crate::commit_tokens::record(&self.db.conn, &token, epoch) {
                    self.rollback();
                    return Err(e);
                }
            }
        }
        let r = self.run_plain("COMMIT");
        self.tx = TxState::default();
        match r {
            Ok(o) => {
                self.permit = None;
                if o.write_ended {
                    self.finish_commit()?;
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

    /// The tail of every commit, whichever path ended the write transaction
    /// (COMMIT, an autocommit statement, a write through a row-limited
    /// portal): capture into the log, wait until it is durable, until the
    /// standbys let it return, and with remote_apply until the principal
    /// standby replayed it; then count it. The write permit is already released.
    pub(super) fn finish_commit(&mut self) -> Result<(), PgError> {
        let lsn = exec::capture(&self.db).map_err(unexpected_permit)?;
        self.node.log_grew(lsn);
        self.node.wait_durable(lsn)?;
        self.node.wait_replicated(lsn)?;
        if self.settings().remote_apply() {
            self.node.wait_applied(lsn)?;
        }
        self.node.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Roll back whatever SQLite has open and release the write permit.
    pub(super) fn rollback(&mut self) {
        if self.permit.is_some() {
            // A writing transaction ended: its token goes with it.
            self.settings().clear_commit_token();
        }
        if !self.db.conn.is_autocommit() {
            let _ = self.db.conn.execute_batch("ROLLBACK");
        }
        self.tx = TxState::default();
        self.permit = None;
    }

    /// End of session: roll back, release the permit, leave the registry.
    /// Runs when the session is dropped, also when a panic unwinds it.
    fn finish(&mut self) {
        if self.tx.status != Status::Idle || self.permit.is_some() {
            self.rollback();
        }
        self.node.registry().remove(&self.pid);
        debug!(pid = self.pid, "session end");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The error inside an ExecError; a permit request where none can arise is a bug.
pub(super) fn unexpected_permit(e: ExecError) -> PgError {
    match e {
        ExecError::Pg(e, _) | ExecError::Capture(e) => e,
        ExecError::NeedPermit => {
            PgError::new(sqlstate::INTERNAL_ERROR, "unexpected permit request")
        }
    }
}

fn rand_secret() -> i32 {
    // Unpredictable enough for a cancel key: the uuid crate's v4 comes from the OS RNG.
    let b = uuid::Uuid::new_v4().into_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// `current_setting(name)` and `set_config(name, value)` on the session's
/// settings, for the SQL functions (crates/hadr-server/src/pg_functions.rs).
/// A setting whose SET changes the transaction (`transaction_read_only`)
/// is refused there: a function cannot change the block it runs in.
fn settings_access(
    settings: &Arc<Mutex<Settings>>,
    node: &Arc<Node>,
) -> crate::pg_functions::SettingsAccess {
    let (show_settings, show_node) = (settings.clone(), node.clone());
    let set_settings = settings.clone();
    crate::pg_functions::SettingsAccess {
        show: Arc::new(move |name: &str| {
            let s = show_settings.lock().unwrap_or_else(|p| p.into_inner());
            s.show(&name.to_ascii_lowercase(), &show_node, false)
                .map_err(|e| e.to_string())
        }),
        set: Arc::new(move |name: &str, value: &str| {
            let name = name.to_ascii_lowercase();
            if name == "transaction_read_only" {
                return Err(
                    "set_config cannot change transaction_read_only: use SET TRANSACTION READ ONLY"
                        .into(),
                );
            }
            let mut s = set_settings.lock().unwrap_or_else(|p| p.into_inner());
            s.set(&name, value).map_err(|e| e.to_string())?;
            Ok(value.to_string())
        }),
    }
}
