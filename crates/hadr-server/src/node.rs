//! A running node: the engine, the write permit, the durability watch, the
//! session registry, and the tasks around them (accept loop, admin HTTP,
//! checkpointer).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hadr_engine::{Checkpoint, Engine, RecoveryReport};
use hadr_log::Lsn;
use rusqlite::InterruptHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::RoleSetting;
use crate::write_lock::{WriteLock, WriteLockError, WritePermit};
use hadr_engine::Role;
use hadr_ha::handover::HandoverFailure;
use hadr_ha::{GuardAction, GuardEvent, PairConfig, SyncMode, WriteGuard, Writes};
use hadr_replication::primary::SnapshotError;
use hadr_replication::standby::StandbyStatus;
use hadr_replication::standbys::AckWaitError;
use hadr_replication::Standbys;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::errors::{sqlstate, PgError};

/// Errors that stop a node from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The engine could not open or recover the database.
    #[error("{0}")]
    Engine(#[from] hadr_engine::EngineError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Configuration is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The configured role contradicts the data directory.
    #[error("{0}")]
    Role(String),
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the registry keeps per session, for CancelRequest and shutdown.
pub struct SessionHandle {
    /// Secret the client must present to cancel.
    pub secret: i32,
    /// Interrupts the session's running SQLite statement.
    pub interrupt: Arc<InterruptHandle>,
    /// Makes the session give up waits (write permit).
    pub cancel: Arc<AtomicBool>,
    /// The session's socket, to end a blocked read at shutdown.
    pub socket: Option<std::net::TcpStream>,
}

/// Counters shown in /status and /metrics.
#[derive(Default)]
pub struct Stats {
    /// Commits acknowledged to clients.
    pub commits: AtomicU64,
    /// Statements executed.
    pub statements: AtomicU64,
    /// Checkpoints completed.
    pub checkpoints: AtomicU64,
    /// Connections accepted in total.
    pub connections: AtomicU64,
}

/// Shared state of a node.
pub struct Node {
    /// The configuration in force.
    pub config: Config,
    /// The database and log.
    pub engine: Arc<Engine>,
    /// SQLite has one writer; this lock serialises writers fairly (FIFO) without
    /// busy-polling, and keeps capture in commit order.
    pub write_lock: Arc<WriteLock>,
    /// Live sessions by backend pid.
    pub sessions: Mutex<HashMap<i32, SessionHandle>>,
    /// Sessions open right now.
    pub open_sessions: AtomicUsize,
    next_pid: AtomicI32,
    /// Set when the node shuts down.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    /// Counters.
    pub stats: Stats,
    /// When the node started.
    pub started: Instant,
    /// What recovery did at start-up.
    pub recovery: RecoveryReport,
    /// A connection for schema look-ups (parameter types), never inside a session's transaction.
    pub meta: Arc<Mutex<rusqlite::Connection>>,
    /// Replication: what this node does for HADR.
    pub repl: Repl,
    /// Why the node stops itself (re-clone, promotion, demotion).
    pub next: Mutex<Option<Outcome>>,
    /// Set while a primary hands over: sessions end, new ones are refused.
    pub demoting: AtomicBool,
    /// The write lock, held for good by a primary that handed over.
    demote_permit: Mutex<Option<WritePermit>>,
    /// Bumped by `POST /takeover` on a standby.
    pub takeover_tx: watch::Sender<u64>,
    /// How the last graceful takeover asked of this standby ended.
    pub takeover_answer: watch::Sender<Option<TakeoverAnswer>>,
    /// Cached page hash: (lsn, hash).
    pub hash_cache: tokio::sync::Mutex<Option<(Lsn, hadr_engine::PageHash)>>,
    /// Whether this primary may write: the start-up rule and fencing.
    pub guard: Mutex<WriteGuard>,
    /// A role change in progress and its current step, for status.
    pub activity: Mutex<Option<Activity>>,
    /// Why sessions are being ended, for their FATAL message.
    ending_reason: Mutex<String>,
}

/// How a graceful takeover asked of this standby ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeoverAnswer {
    /// The primary handed over up to `end_lsn`; this node promotes.
    Promoting {
        /// The old primary's final log end.
        end_lsn: u64,
    },
    /// The primary refused (why).
    Refused(String),
}

/// A role change in progress (takeover, fencing), shown in status.
pub use hadr_admin_api::Activity;

impl Node {
    /// Open (and recover) the database and build the node state.
    pub fn open(config: Config) -> Result<Arc<Node>, NodeError> {
        config.validate()?;
        let (engine, recovery) = Engine::open(&config.data, &config.log_config())?;
        let engine = Arc::new(engine);
        let current = engine.control().role;
        let was_primary = current == Role::Primary && !config.promoted;
        if let Some(want) = config.role {
            let want = match want {
                RoleSetting::Primary => Role::Primary,
                RoleSetting::Standby => Role::Standby,
            };
            if current == Role::Standard && want == Role::Primary {
                engine.update_control(|c| c.role = Role::Primary)?;
            } else if current == Role::Standard {
                return Err(NodeError::Role(format!(
                    "{} is a single database; a standby is made with `hadr clone`",
                    config.data.display()
                )));
            } else if current != want {
                // Roles change by takeover; the data directory knows the current one.
                warn!(configured = want.as_str(), actual = current.as_str(), "the role setting is only the initial role; this node's data directory says otherwise");
            }
        }
        let now = hadr_replication::now_micros();
        let repl = match engine.control().role {
            Role::Primary => {
                let pair = |i: usize| PairConfig {
                    // Auxiliary standbys are always SUPERASYNC, as in DB2.
                    mode: if i == 0 {
                        config.hadr_syncmode.0
                    } else {
                        SyncMode::Superasync
                    },
                    timeout_us: config.hadr_timeout.0.as_micros() as u64,
                    peer_window_us: config.hadr_peer_window.0.as_micros() as u64,
                    peer_wait_limit_us: config.hadr_peer_wait_limit.0.as_micros() as u64,
                };
                let targets = config
                    .targets()
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| (a, pair(i)))
                    .collect();
                let (end_tx, _) = watch::channel(engine.log().end_lsn());
                Repl::Primary {
                    standbys: Arc::new(Standbys::new(targets, now)),
                    end_tx,
                }
            }
            Role::Standby => Repl::Standby {
                status: Arc::default(),
                stop: Arc::new(AtomicBool::new(false)),
            },
            Role::Standard => Repl::None,
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let meta = Arc::new(Mutex::new(engine.connect()?));
        let control = engine.control();
        let guard = WriteGuard::start(
            control.epoch,
            control.role == Role::Primary,
            was_primary,
            config.force,
        );
        if guard.writes == Writes::AwaitingStandby {
            warn!("this node was already primary before this start: it accepts writes only once it reaches a standby (start-up rule against split brain); `hadr server --force` skips the wait");
        }
        Ok(Arc::new(Node {
            guard: Mutex::new(guard),
            activity: Mutex::new(None),
            ending_reason: Mutex::new(String::new()),
            next: Mutex::new(None),
            demoting: AtomicBool::new(false),
            demote_permit: Mutex::new(None),
            takeover_tx: watch::channel(0).0,
            takeover_answer: watch::channel(None).0,
            repl,
            meta,
            config,
            engine,
            write_lock: Arc::new(WriteLock::default()),
            sessions: Mutex::new(HashMap::new()),
            open_sessions: AtomicUsize::new(0),
            next_pid: AtomicI32::new(1000),
            shutdown,
            shutdown_tx,
            stats: Stats::default(),
            started: Instant::now(),
            recovery,
            hash_cache: tokio::sync::Mutex::new(None),
        }))
    }

    /// A new backend pid.
    pub fn next_pid(&self) -> i32 {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }

    /// Lock the session registry.
    pub fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<i32, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acquire the write lock (blocking), waiting at most `write_wait_timeout`
    /// and giving up early if `cancel` is set.
    pub fn acquire_write(&self, cancel: &AtomicBool) -> Result<WritePermit, PgError> {
        let wait = self.config.write_wait_timeout.0;
        self.write_lock.acquire(wait, cancel).map_err(|e| match e {
            WriteLockError::Cancelled if self.is_shutting_down() => PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection due to administrator command",
            ),
            WriteLockError::Cancelled => PgError::new(
                sqlstate::QUERY_CANCELED,
                "canceling statement due to user request",
            ),
            WriteLockError::Timeout => PgError::new(
                sqlstate::LOCK_NOT_AVAILABLE,
                format!(
                    "could not obtain the write lock within {} ms (write_wait_timeout)",
                    wait.as_millis()
                ),
            )
            .with_hint(
                "another session holds a write transaction open; see idle_in_transaction_timeout",
            ),
        })
    }

    /// Acquire the write lock from async code (admin tasks).
    pub async fn acquire_write_async(self: &Arc<Self>) -> Result<WritePermit, PgError> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.acquire_write(&AtomicBool::new(false)))
            .await
            .map_err(|e| PgError::new(sqlstate::INTERNAL_ERROR, e.to_string()))?
    }

    /// Wait (blocking) until the log is durable up to `lsn`.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), PgError> {
        let timeout = self.config.commit_timeout.0;
        match self.engine.log().wait_flushed(lsn, timeout) {
            Ok(_) => Ok(()),
            Err(hadr_log::LogError::FlushTimeout { .. }) => Err(PgError::new(
                sqlstate::IO_ERROR,
                format!("commit was not made durable within {} ms; its outcome is unknown", timeout.as_millis()),
            )
            .with_hint("check the server log for log write or fsync errors")),
            Err(e) => Err(PgError::fatal(
                sqlstate::IO_ERROR,
                format!("the transaction log failed ({e}); this commit's outcome is unknown and the server stops accepting writes"),
            )),
        }
    }

    /// Ask every task to stop.
    pub fn begin_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
    }

    /// Resolve once shutdown has begun.
    pub async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether a write may start now.
    pub fn writable(&self) -> bool {
        self.write_refusal().is_none()
    }

    /// Why a write may not start now (None: it may): a standby, a primary
    /// that has not reached its standby since restarting, or one that was
    /// fenced by a newer epoch.
    pub fn write_refusal(&self) -> Option<String> {
        if self.is_shutting_down() || self.demoting.load(Ordering::SeqCst) {
            return Some(self.ending_reason());
        }
        match &self.repl {
            Repl::None => None,
            Repl::Standby { .. } => Some("this node is a standby; write on the primary".into()),
            Repl::Primary { .. } => match &self.guard().writes {
                Writes::Open => None,
                Writes::AwaitingStandby => Some("this primary restarted and has not reached its standby yet (start-up rule against split brain); it accepts writes once a standby answers, or when started with --force".into()),
                Writes::Checking => Some("this primary was started with --force and is asking its peers whether a newer epoch exists".into()),
                Writes::Fenced { by_epoch, reason } => Some(format!("this primary was superseded by epoch {by_epoch} ({reason}); it is rejoining as a standby")),
            },
        }
    }

    /// Lock the write guard.
    pub fn guard(&self) -> std::sync::MutexGuard<'_, WriteGuard> {
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why sessions are being ended.
    pub fn ending_reason(&self) -> String {
        let r = self
            .ending_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if r.is_empty() {
            "the database system is shutting down or changing roles".into()
        } else {
            r
        }
    }

    /// Record the step of a role change in progress (None: finished).
    pub fn set_activity(&self, what: &str, step: Option<&str>) {
        let mut a = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        *a = step.map(|step| Activity {
            what: what.to_string(),
            step: step.to_string(),
            since_micros: hadr_replication::now_micros(),
        });
        if let Some(a) = a.as_ref() {
            info!(what = %a.what, step = %a.step, "role change");
            crate::activity::record(&self.config.data, a);
        }
    }

    /// Tell the write guard about a peer; carry out what it decides.
    pub fn on_peer(self: &Arc<Self>, ev: GuardEvent) -> Vec<GuardAction> {
        let actions = self.guard().step(ev);
        for a in &actions {
            match a {
                GuardAction::OpenWrites => {
                    info!("reached a standby: this primary accepts writes")
                }
                GuardAction::PeerIsStale => {}
                GuardAction::Fence { by_epoch, reason } => self.fence(*by_epoch, reason.clone()),
            }
        }
        actions
    }

    /// A newer epoch exists: stop writes at once, end sessions, make what
    /// was committed durable, record the standby role and the newer epoch,
    /// and restart as a standby (which rewinds if it diverged).
    fn fence(self: &Arc<Self>, by_epoch: u64, reason: String) {
        error!(by_epoch, %reason, "FENCED: a newer epoch exists; this node stops writing and rejoins as a standby");
        if let Repl::Primary { standbys, .. } = &self.repl {
            standbys.close(format!("this primary was superseded by epoch {by_epoch}"));
        }
        self.set_activity("fenced", Some(&format!("stopping writes: {reason}")));
        let node = self.clone();
        let spawned = std::thread::Builder::new()
            .name("hadr-fence".into())
            .spawn(move || {
                let why = format!("terminating connection: this primary was superseded by epoch {by_epoch} and stops writing");
                if let Err(e) = node.stop_writes(&why) {
                    // Writes stay refused (the guard is fenced), but the role is
                    // not changed: uncaptured commits must be captured by a
                    // primary's recovery before this node may become a standby.
                    error!(error = %e, "fenced, but could not make everything durable; the node stays fenced as primary");
                    node.set_activity("fenced", Some(&format!("writes refused; could not stop cleanly: {e}")));
                    return;
                }
                let marked = node.engine.update_control(|c| {
                    c.role = Role::Standby;
                    c.highest_seen_epoch = c.highest_seen_epoch.max(by_epoch);
                });
                if let Err(e) = marked {
                    error!(error = %e, "fenced, but could not record the standby role; the node stays fenced");
                    return;
                }
                node.set_activity("fenced", Some("restarting as a standby"));
                node.stop_for(Outcome::Restart);
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the fencing thread; writes stay refused");
        }
    }

    /// End client sessions (FATAL with `why`), take the write lock for good,
    /// capture and flush everything; return the final log end. Used by a
    /// graceful handover and by fencing.
    fn stop_writes(&self, why: &str) -> Result<u64, String> {
        *self.ending_reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        self.demoting.store(true, Ordering::SeqCst);
        self.end_sessions();
        // No waiting for sessions to close: a session whose commit waits for
        // the standby's ack would wait for the sender, which is busy here.
        // The write permit is what matters: once held, nobody writes; the
        // holder is interrupted above and rolls back.
        let began = Instant::now();
        let permit = match self.acquire_write(&AtomicBool::new(false)) {
            Ok(p) => p,
            Err(e) => {
                self.demoting.store(false, Ordering::SeqCst);
                return Err(e.message);
            }
        };
        let end = self
            .engine
            .capture_commits()
            .map_err(|e| e.to_string())
            .and_then(|_| self.engine.log().flush().map_err(|e| e.to_string()));
        // Sessions that registered after the first round.
        self.end_sessions();
        match end {
            Ok(end) => {
                *self.demote_permit.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
                self.log_grew(end);
                info!(
                    end_lsn = end,
                    ms = began.elapsed().as_millis() as u64,
                    "writes stopped, sessions ended"
                );
                Ok(self.engine.log().end_lsn())
            }
            Err(e) => {
                self.demoting.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

/// A commit that was waiting for the standby when the node stopped
/// releasing commits: never acknowledged; whether it survives depends on the
/// new primary (a fenced node's unshipped commits are rewound away).
fn unknown_outcome(why: &str) -> PgError {
    PgError::fatal(
        sqlstate::TRANSACTION_RESOLUTION_UNKNOWN,
        format!("this commit was not confirmed by the standby and {why}; its outcome is unknown"),
    )
    .with_hint("reconnect (to the new primary) and check whether the transaction is there")
}

/// A node's part in replication.
pub enum Repl {
    /// A single node.
    None,
    /// A primary: its standbys and the commits waiting for them, and the log end for its senders.
    Primary {
        /// Its standbys and the commits waiting for them.
        standbys: Arc<Standbys>,
        /// Log end after each capture.
        end_tx: watch::Sender<u64>,
    },
    /// A standby: what its receiver reports.
    Standby {
        /// Receiver status.
        status: Arc<Mutex<StandbyStatus>>,
        /// Stops the replay thread.
        stop: Arc<AtomicBool>,
    },
}

impl Node {
    /// Whether this node follows a primary (read-only).
    pub fn is_standby(&self) -> bool {
        matches!(self.repl, Repl::Standby { .. })
    }

    /// Tell the senders that the log grew.
    pub fn log_grew(&self, end: Lsn) {
        if let Repl::Primary { end_tx, .. } = &self.repl {
            end_tx.send_replace(end);
        }
    }

    /// Wait (blocking) until the standbys let a commit ending at `lsn` return (sync mode, peer window).
    pub fn wait_replicated(&self, lsn: Lsn) -> Result<(), PgError> {
        let Repl::Primary { standbys, .. } = &self.repl else {
            return Ok(());
        };
        let timeout = self.config.commit_timeout.0;
        standbys.wait_commit(lsn, timeout, hadr_replication::now_micros).map_err(|e| match e {
            AckWaitError::Timeout => PgError::new(
                sqlstate::IO_ERROR,
                format!("the standby did not confirm this commit within {} ms (commit_timeout); it is durable here, its replication is not", timeout.as_millis()),
            )
            .with_hint("see hadr status; hadr_peer_wait_limit detaches a slow standby instead of waiting"),
            AckWaitError::Closed(why) => unknown_outcome(&why),
        })
    }

    /// `SET hadr.commit_wait = 'remote_apply'`: wait (blocking) until the
    /// principal standby has replayed the commit, so reads there see it.
    pub fn wait_applied(&self, lsn: Lsn) -> Result<(), PgError> {
        let Repl::Primary { standbys, .. } = &self.repl else {
            return Ok(());
        };
        let timeout = self.config.commit_timeout.0;
        standbys.wait_replayed(lsn, timeout).map_err(|e| match e {
            AckWaitError::Timeout => PgError::new(
                sqlstate::IO_ERROR,
                format!("the standby did not replay this commit within {} ms (hadr.commit_wait = remote_apply); it is committed", timeout.as_millis()),
            ),
            AckWaitError::Closed(why) => unknown_outcome(&why),
        })
    }

    /// On a standby: how stale reads may be, in µs (0 on a primary).
    pub fn replay_lag_us(&self) -> u64 {
        match &self.repl {
            Repl::Standby { status, .. } => status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replay_lag_us(hadr_replication::now_micros()),
            _ => 0,
        }
    }

    /// A read transaction on a new connection and the LSN its state matches.
    /// Blocking; on a primary it takes the write lock briefly.
    pub fn snapshot(&self) -> Result<(rusqlite::Connection, Lsn), SnapshotError> {
        let conn = self.engine.connect()?;
        if self.is_standby() {
            let lsn = self.engine.begin_replay_snapshot(&conn)?;
            return Ok((conn, lsn));
        }
        let _permit = self
            .acquire_write(&AtomicBool::new(false))
            .map_err(|e| SnapshotError::WriteLock(e.message))?;
        // Commits are captured after the lock is released; capture them now so
        // that the snapshot and the LSN agree.
        self.engine.capture_commits()?;
        conn.execute_batch("BEGIN")?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        Ok((conn, self.engine.log().end_lsn()))
    }
}

impl Node {
    /// Stop the node, and have [`run`] return `outcome`.
    pub fn stop_for(&self, outcome: Outcome) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.begin_shutdown();
    }

    /// End every session (FATAL 57P01): interrupt running statements and
    /// blocked reads; each session rolls back its transaction.
    fn end_sessions(&self) {
        for h in self.registry().values() {
            h.cancel.store(true, Ordering::SeqCst);
            h.interrupt.interrupt();
            if let Some(s) = &h.socket {
                let _ = s.shutdown(std::net::Shutdown::Read);
            }
        }
    }
}

/// The primary's side of a graceful takeover, on the node.
struct Handover(std::sync::Weak<Node>);

impl hadr_replication::primary::TakeoverHooks for Handover {
    fn stop_writes(&self) -> Result<u64, HandoverFailure> {
        let node = self
            .0
            .upgrade()
            .ok_or_else(|| HandoverFailure::StopWrites("node stopped".into()))?;
        node.set_activity(
            "graceful takeover",
            Some("stopping writes and ending sessions"),
        );
        let r = node
            .stop_writes(
                "terminating connection: this primary is handing over to its standby (takeover)",
            )
            .map_err(HandoverFailure::StopWrites);
        node.set_activity(
            "graceful takeover",
            Some("shipping the last records; waiting for the standby to have them on disk"),
        );
        r
    }

    fn resume_writes(&self) {
        if let Some(node) = self.0.upgrade() {
            node.demote_permit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            node.demoting.store(false, Ordering::SeqCst);
            node.set_activity("graceful takeover", None);
            warn!("takeover failed: accepting writes again");
        }
    }

    fn mark_standby(&self) -> Result<(), HandoverFailure> {
        let node = self
            .0
            .upgrade()
            .ok_or_else(|| HandoverFailure::Mark("node stopped".into()))?;
        node.set_activity(
            "graceful takeover",
            Some("recording the standby role; telling the standby to promote"),
        );
        node.engine
            .update_control(|c| {
                c.role = Role::Standby;
                // The standby takes at least the next epoch: never promote into it again.
                c.highest_seen_epoch = c.highest_seen_epoch.max(c.epoch + 1);
            })
            .map(|_| ())
            .map_err(|e| HandoverFailure::Mark(e.to_string()))
    }

    fn unmark_standby(&self) {
        if let Some(node) = self.0.upgrade() {
            if let Err(e) = node.engine.update_control(|c| c.role = Role::Primary) {
                error!(error = %e, "takeover failed and the primary role could not be restored; the node stays fenced");
            }
        }
    }

    fn become_standby(&self) {
        if let Some(node) = self.0.upgrade() {
            info!("takeover: this node is now a standby; restarting");
            node.stop_for(Outcome::Restart);
        }
    }
}

/// Addresses a started node listens on.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// PostgreSQL protocol address.
    pub pg: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Asked to stop.
    Stopped,
    /// A standby whose primary no longer has the log it needs: the caller
    /// re-clones the data directory from this primary and runs again.
    Reclone(String),
    /// A standby took over: the caller promotes the data directory (new
    /// epoch from this LSN, or from its log end for a forced takeover) and
    /// runs again, as primary.
    Promote(Option<u64>),
    /// An old primary whose log diverged from the primary at this address:
    /// the caller rewinds the data directory (or re-clones it) and runs again.
    Rewind(String),
    /// The role changed (a primary handed over): run again.
    Restart,
}

/// Run a node until `stop` completes (or the node decides to stop), then shut down cleanly.
pub async fn run(
    config: Config,
    stop: impl Future<Output = ()>,
    on_bound: impl FnOnce(Bound),
) -> Result<Outcome, NodeError> {
    let node = Node::open(config)?;
    if let Some(d) = node.engine.control().rewind_pending {
        // A rewind was cut short: the database is neither the old state nor
        // the new one. Only a fresh copy is safe.
        let from = node.config.targets().into_iter().next().ok_or_else(|| {
            NodeError::Role(format!("a rewind from LSN {d} was interrupted and this node has no hadr_target_list to re-clone from"))
        })?;
        warn!(divergence = d, %from, "a rewind was interrupted: re-cloning");
        let engine = node.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.close()).await;
        return Ok(Outcome::Reclone(from));
    }
    let pg = bind(node.config.listen).await?;
    let admin = bind(node.config.admin).await?;
    let bound = Bound {
        pg: pg.local_addr().map_err(|e| NodeError::Bind {
            addr: node.config.listen,
            source: e,
        })?,
        admin: admin.local_addr().map_err(|e| NodeError::Bind {
            addr: node.config.admin,
            source: e,
        })?,
    };
    let control = node.engine.control();
    info!(
        pg = %bound.pg, admin = %bound.admin, role = control.role.as_str(), epoch = control.epoch,
        database_id = %control.database_id, end_lsn = node.engine.log().end_lsn(),
        "hadr node serving"
    );
    on_bound(bound);

    let repl_tasks = start_replication(&node).await?;
    let accept = tokio::spawn(accept_loop(node.clone(), pg));
    let admin_task = tokio::spawn(crate::admin::serve(node.clone(), admin));
    let ckpt = tokio::spawn(checkpointer(node.clone()));

    tokio::select! {
        _ = stop => {}
        _ = node.until_shutdown() => {}
    }
    info!("shutting down");
    node.begin_shutdown();
    if let Repl::Primary { standbys, .. } = &node.repl {
        standbys.close("the server is shutting down".into());
    }
    accept.abort();
    admin_task.abort();
    ckpt.abort();
    for t in repl_tasks {
        t.abort();
    }
    if let Repl::Standby { stop, .. } = &node.repl {
        stop.store(true, Ordering::SeqCst);
    }
    // Sessions notice the shutdown promptly; each sends its client FATAL 57P01.
    node.end_sessions();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.open_sessions.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = node.open_sessions.load(Ordering::SeqCst);
    if left > 0 {
        warn!(
            sessions = left,
            "sessions still open at shutdown; their transactions roll back"
        );
    }
    // A primary that handed over already holds the write lock for good.
    let held = node
        .demote_permit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let permit = match held {
        Some(p) => Ok(p),
        None => node.acquire_write_async().await,
    };
    let engine = node.engine.clone();
    let closed = tokio::task::spawn_blocking(move || engine.close())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    drop(permit);
    match closed {
        Ok(()) => info!("clean shutdown complete"),
        Err(e) => {
            error!(error = %e, "shutdown could not checkpoint; recovery will finish it at next start")
        }
    }
    // Read, not taken: an admin request may still be watching for it.
    let next = node.next.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(next.unwrap_or(Outcome::Stopped))
}

/// Bind a listener, naming the address when it fails.
async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Bind { addr, source: e })
}

/// Start the replication tasks of the node's role.
async fn start_replication(
    node: &Arc<Node>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, NodeError> {
    let timeout = node.config.hadr_timeout.0;
    let address = node.config.hadr_local.to_string();
    match &node.repl {
        Repl::None => Ok(vec![]),
        Repl::Primary { standbys, end_tx } => {
            let listener = bind(node.config.hadr_local).await?;
            let snap_node = node.clone();
            let ctx = Arc::new(hadr_replication::primary::PrimaryCtx {
                engine: node.engine.clone(),
                standbys: standbys.clone(),
                end: end_tx.subscribe(),
                address,
                timeout,
                snapshot: Arc::new(move || snap_node.snapshot()),
                takeover: Arc::new(Handover(Arc::downgrade(node))),
                on_peer: {
                    let weak = Arc::downgrade(node);
                    Arc::new(move |ev| match weak.upgrade() {
                        Some(node) => node.on_peer(ev),
                        None => vec![],
                    })
                },
            });
            info!(hadr_local = %node.config.hadr_local, standbys = ?node.config.targets(), syncmode = ?node.config.hadr_syncmode.0, "HADR primary");
            Ok(vec![tokio::spawn(hadr_replication::primary::serve(
                ctx, listener,
            ))])
        }
        Repl::Standby { status, stop } => {
            let (flushed_tx, flushed) = watch::channel(node.engine.log().flushed_lsn());
            node.engine.log().on_flush(Box::new(move |lsn| {
                flushed_tx.send_replace(lsn);
            }));
            let (replayed_tx, replayed) = watch::channel(node.engine.applied_lsn());
            let (engine, st, stop) = (node.engine.clone(), status.clone(), stop.clone());
            let delay = node.config.hadr_replay_delay.0;
            std::thread::Builder::new()
                .name("hadr-replay".into())
                .spawn(move || {
                    hadr_replication::standby::replay_loop(engine, replayed_tx, st, stop, delay)
                })
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            if node.config.targets().is_empty() {
                warn!("standby has no hadr_target_list: it will not find its primary");
            }
            let ctx = Arc::new(hadr_replication::standby::StandbyCtx {
                engine: node.engine.clone(),
                targets: node.config.targets(),
                address,
                timeout,
                status: status.clone(),
                flushed,
                replayed,
                takeover: node.takeover_tx.subscribe(),
                on_takeover_ready: {
                    let weak = Arc::downgrade(node);
                    Arc::new(move |end: u64| {
                        if let Some(node) = weak.upgrade() {
                            info!(end_lsn = end, "takeover: restarting as primary");
                            node.set_activity(
                                hadr_admin_api::steps::GRACEFUL_TAKEOVER,
                                Some(hadr_admin_api::steps::HANDED_OVER),
                            );
                            node.takeover_answer
                                .send_replace(Some(TakeoverAnswer::Promoting { end_lsn: end }));
                            node.stop_for(Outcome::Promote(Some(end)));
                        }
                    })
                },
                on_takeover_refused: {
                    let weak = Arc::downgrade(node);
                    Arc::new(move |reason: String| {
                        if let Some(node) = weak.upgrade() {
                            node.takeover_answer
                                .send_replace(Some(TakeoverAnswer::Refused(reason)));
                        }
                    })
                },
                on_diverged: repair(
                    node,
                    "this node's log diverged from the primary's (an old primary)",
                    "run `hadr rejoin --from`",
                    Outcome::Rewind,
                ),
                on_needs_clone: repair(
                    node,
                    "the primary no longer has the log this standby needs",
                    "run `hadr clone`",
                    Outcome::Reclone,
                ),
            });
            info!(primary = ?node.config.targets(), "HADR standby");
            // Primaries probe this port: the start-up rule needs to see a
            // standby, and fencing needs everyone's epoch.
            let listener = bind(node.config.hadr_local).await?;
            Ok(vec![
                tokio::spawn(hadr_replication::standby::answer_probes(
                    ctx.clone(),
                    listener,
                )),
                tokio::spawn(hadr_replication::standby::run(ctx)),
            ])
        }
    }
}

/// A standby that cannot follow its primary as it is: with `auto_reclone`,
/// stop and let the caller repair the data directory (`outcome` with the
/// primary's address); without, say what to run.
fn repair(
    node: &Arc<Node>,
    why: &'static str,
    manual: &'static str,
    outcome: fn(String) -> Outcome,
) -> Arc<dyn Fn(String) + Send + Sync> {
    let weak = Arc::downgrade(node);
    let auto = node.config.auto_reclone;
    Arc::new(move |primary: String| {
        let Some(node) = weak.upgrade() else { return };
        if !auto {
            warn!(%primary, "{why}: {manual} (auto_reclone is off)");
            return;
        }
        let next = outcome(primary.clone());
        warn!(%primary, ?next, "{why}: repairing this node (auto_reclone)");
        node.set_activity("rejoin", Some(&format!("{next:?}")));
        node.stop_for(next);
    })
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                set_keepalive(&stream);
                node.stats.connections.fetch_add(1, Ordering::Relaxed);
                let std_stream = match stream
                    .into_std()
                    .and_then(|s| s.set_nonblocking(false).map(|_| s))
                {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "cannot hand a connection to a session thread");
                        continue;
                    }
                };
                let node = node.clone();
                let spawned = std::thread::Builder::new()
                    .name("hadr-session".into())
                    .spawn(move || crate::session::serve(node, std_stream, peer));
                if let Err(e) = spawned {
                    warn!(error = %e, "cannot start a session thread");
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// TCP keepalive so that a dead client's open transaction is rolled back in
/// seconds, not after the kernel's two-hour default.
fn set_keepalive(stream: &tokio::net::TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(3))
        .with_retries(3);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        warn!(error = %e, "could not enable TCP keepalive");
    }
}

/// Checkpoint when the WAL has grown past `checkpoint_wal_size`, then apply log retention.
async fn checkpointer(node: Arc<Node>) {
    let page = u64::from(hadr_engine::PAGE_SIZE);
    let threshold_frames = (node.config.checkpoint_wal_size.0 / page).max(16);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if node.engine.frames_since_checkpoint() < threshold_frames {
            continue;
        }
        let Ok(permit) = node.acquire_write_async().await else {
            continue;
        };
        let engine = node.engine.clone();
        let r = tokio::task::spawn_blocking(move || engine.checkpoint(false)).await;
        drop(permit);
        match r {
            Ok(Ok(Checkpoint::Complete(lsn))) => {
                node.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                let engine = node.engine.clone();
                let removed =
                    tokio::task::spawn_blocking(move || engine.log().apply_retention(lsn)).await;
                if let Ok(Err(e)) = removed {
                    warn!(error = %e, "log retention failed");
                }
            }
            Ok(Ok(Checkpoint::Partial)) => {
                // Long readers pin old frames; try again shortly.
            }
            Ok(Err(e)) => error!(error = %e, "checkpoint failed"),
            Err(e) => error!(error = %e, "checkpoint task failed"),
        }
    }
}
