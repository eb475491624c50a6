//! A node's shared state: the engine, the write lock and permission, the
//! durability and replication waits, the session registry. The tasks that
//! use it are started by `runtime`; how a primary stops being one is
//! in `demotion`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hadr_engine::{Engine, RecoveryReport};
use hadr_log::Lsn;
use rusqlite::InterruptHandle;
use tokio::sync::watch;

use crate::config::RoleSetting;
use crate::write_lock::{WriteLock, WriteLockError, WritePermit};
use hadr_engine::Role;
use hadr_ha::{PairConfig, SyncMode, WriteGuard, Writes};
use hadr_replication::primary::SnapshotError;
use hadr_replication::standby::StandbyStatus;
use hadr_replication::standbys::AckWaitError;
use hadr_replication::Standbys;
use tracing::{info, warn};

use crate::roles::{RoleChange, RoleEvents};

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
    /// Connections holding a slot now (sessions and those still starting
    /// up), against max_connections; taken before a session thread starts.
    pub connection_slots: AtomicUsize,
    /// Sessions ended by a panic (caught; see crates/hadr-server/src/session/mod.rs).
    pub session_panics: AtomicU64,
}

/// Shared state of a node.
pub struct Node {
    /// The configuration in force.
    pub config: Config,
    /// The database and log.
    pub engine: Arc<Engine>,
    /// SQLite has one writer; this lock serialises writers fairly (FIFO) without
    /// busy-polling (capture runs after the lock is released; commit order comes
    /// from the WAL and the engine's capture lock).
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
    /// A connection for schema look-ups (parameter types), never inside a
    /// session's transaction; logins read the roles on it too.
    pub meta: Arc<Mutex<rusqlite::Connection>>,
    /// Access rules, failed-login limit (crates/hadr-server/src/auth).
    pub auth: crate::auth::Auth,
    /// Replication: what this node does for HADR.
    pub repl: Repl,
    /// The role change this run ends with (re-clone, promotion, demotion).
    pub next: Mutex<Option<RoleChange>>,
    /// Where role transitions are published.
    pub events: Arc<RoleEvents>,
    /// Automatic failover's shared state (None: no arbiter, or `failover = manual`).
    pub failover: Option<Arc<crate::failover_state::FailoverShared>>,
    /// Set while a primary hands over: sessions end, new ones are refused.
    pub demoting: AtomicBool,
    /// The write lock, held for good by a primary that handed over.
    pub(crate) demote_permit: Mutex<Option<WritePermit>>,
    /// Bumped by `POST /takeover` on a standby.
    pub takeover_tx: watch::Sender<u64>,
    /// How the last graceful takeover asked of this standby ended.
    pub takeover_answer: watch::Sender<Option<TakeoverAnswer>>,
    /// The primary the arbiter's record names (set by automatic failover's
    /// driver; a standby tries it first and follows no older primary).
    pub leader: watch::Sender<Option<hadr_replication::standby::Leader>>,
    /// Cached page hash: (lsn, hash).
    pub hash_cache: tokio::sync::Mutex<Option<(Lsn, hadr_engine::PageHash)>>,
    /// Whether this primary may write: the start-up rule and fencing.
    pub guard: Mutex<WriteGuard>,
    /// A role change in progress and its current step, for status.
    pub activity: Mutex<Option<Activity>>,
    /// Why sessions are being ended, for their FATAL message.
    pub(crate) ending_reason: Mutex<String>,
    /// What the file sync reports (None: no `sync_paths`).
    pub file_sync: Option<Arc<hadr_filesync::SyncStatus>>,
    /// The synced files are on this node's disk as the table has them: a
    /// node that was a standby sets it once it has written the whole table
    /// out. Its primary resources start only then (docs/resources.md: every
    /// file the service needs is already there).
    pub files_ready: AtomicBool,
    /// The resources that follow the role (they outlive this run).
    pub resources: hadr_resources::Manager,
    /// TLS for clients (None: not configured); it outlives this run, and
    /// SIGHUP reloads it.
    pub tls: Option<Arc<crate::client_tls::ClientTls>>,
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
    pub fn open(
        config: Config,
        events: Arc<RoleEvents>,
        resources: hadr_resources::Manager,
        tls: Option<Arc<crate::client_tls::ClientTls>>,
    ) -> Result<Arc<Node>, NodeError> {
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
                crate::roles::record_primary(&engine)?;
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
        let automatic = config.automatic_failover();
        let repl = match engine.control().role {
            Role::Primary => {
                let pair = |i: usize| PairConfig {
                    // Auxiliary standbys are always SUPERASYNC, as in DB2.
                    mode: if i == 0 {
                        config.hadr_syncmode.0
                    } else {
                        SyncMode::Superasync
                    },
                    // Under automation a silent standby is given up after the
                    // lease's TTL too (`Config::link_silence`): a primary cut
                    // off from everything then stops calling itself writable
                    // before its standby can take over.
                    timeout_us: config.link_silence().as_micros() as u64,
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
                let standbys = Standbys::new(targets, now);
                Repl::Primary {
                    standbys: Arc::new(if automatic {
                        standbys.guarded()
                    } else {
                        standbys
                    }),
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
        let auth = crate::auth::Auth::new(&config)?;
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
            file_sync: (!config.sync_paths.is_empty())
                .then(|| Arc::new(hadr_filesync::SyncStatus::new(&config.sync_roots()))),
            files_ready: AtomicBool::new(config.sync_paths.is_empty()),
            guard: Mutex::new(guard),
            activity: Mutex::new(None),
            ending_reason: Mutex::new(String::new()),
            next: Mutex::new(None),
            events,
            failover: automatic.then(Arc::default),
            demoting: AtomicBool::new(false),
            demote_permit: Mutex::new(None),
            takeover_tx: watch::channel(0).0,
            takeover_answer: watch::channel(None).0,
            leader: watch::channel(None).0,
            repl,
            meta,
            auth,
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
            resources,
            tls,
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
        if self.demoting.load(Ordering::SeqCst) {
            return Err(PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                self.ending_reason(),
            ));
        }
        let permit = self.write_lock.acquire(wait, cancel).map_err(|e| match e {
            WriteLockError::Cancelled => self.terminating().unwrap_or_else(|| {
                PgError::new(
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to user request",
                )
            }),
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
        })?;
        // Queued ahead of a hand-over's own claim on the lock: the node
        // stopped writing meanwhile, so this write must not start.
        if self.demoting.load(Ordering::SeqCst) {
            drop(permit);
            return Err(PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                self.ending_reason(),
            ));
        }
        Ok(permit)
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

    /// The FATAL 57P01 a session ends with when this node is handing over
    /// or shutting down (None: it is not). A statement cancelled for that
    /// reason reports it too, so that stock drivers drop the connection and
    /// look for the primary at once instead of seeing a plain 57014.
    pub fn terminating(&self) -> Option<PgError> {
        if self.demoting.load(Ordering::SeqCst) {
            return Some(PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                self.ending_reason(),
            ));
        }
        if self.is_shutting_down() {
            return Some(PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection due to administrator command",
            ));
        }
        None
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
        if let Some(why) = self.resources.blocked() {
            // docs/resources.md §Confirmed stops: the node stays fenced.
            return Some(format!("this node accepts no writes: {why}"));
        }
        match &self.repl {
            Repl::None => None,
            Repl::Standby { .. } => Some("this node is a standby; write on the primary".into()),
            Repl::Primary { standbys, .. } => match &self.guard().writes {
                Writes::Open
                    if self.failover.as_ref().is_some_and(|f| {
                        f.refuse_writes.load(Ordering::SeqCst)
                            || (!standbys.principal_in_peer()
                                && hadr_replication::mono_micros()
                                    >= f.lease_until.load(Ordering::SeqCst))
                    }) =>
                {
                    Some("this primary has lost its standby and does not hold the arbiter's lease: it accepts no writes alone (automatic failover); the standby may take over".into())
                }
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
    /// The live topology at client addresses (docs/clients.md §Topology):
    /// a primary lists itself and every standby that announced itself
    /// during its run; a standby repeats what its primary last sent (kept
    /// after the link drops: it is still the best guess of where the
    /// primary is), and always lists itself among the standbys.
    pub fn topology(&self) -> hadr_admin_api::Topology {
        let me = self.config.client_address();
        let epoch = self.engine.control().epoch;
        match &self.repl {
            Repl::None => hadr_admin_api::Topology {
                epoch,
                primary: Some(me),
                standbys: Vec::new(),
            },
            Repl::Primary { standbys, .. } => hadr_admin_api::Topology {
                epoch,
                primary: Some(me),
                standbys: standbys.client_addresses(),
            },
            Repl::Standby { status, .. } => {
                let st = status.lock().unwrap_or_else(|p| p.into_inner());
                let (epoch, mut primary, mut standbys) = match &st.topology {
                    Some(t) => (t.epoch, t.primary.clone(), t.standbys.clone()),
                    None => (epoch, None, Vec::new()),
                };
                // Named primary in an old topology of its own: it is not now.
                if primary.as_deref() == Some(me.as_str()) {
                    primary = None;
                }
                if !standbys.contains(&me) {
                    standbys.push(me);
                }
                hadr_admin_api::Topology {
                    epoch,
                    primary,
                    standbys,
                }
            }
        }
    }

    /// Changes whenever [`Node::topology`] may have: sessions compare it
    /// before each ReadyForQuery, which is cheaper than the topology itself.
    pub fn topology_generation(&self) -> u64 {
        match &self.repl {
            Repl::None => 0,
            Repl::Primary { standbys, .. } => standbys.topology_generation(),
            Repl::Standby { status, .. } => {
                status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .topology_gen
            }
        }
    }

    /// The cluster's actual members as this node knows them, for
    /// ParameterStatus and `SHOW hadr_members`: `ADDR=ROLE[:STATE]`, comma
    /// separated. A primary lists itself and the standbys connected to it;
    /// a standby, the members the arbiter's record lists, else its primary
    /// and itself. Replication addresses, as `hadr_target_list` has them.
    pub fn members(&self) -> String {
        let me = self.config.node_name();
        let mut v = Vec::new();
        match &self.repl {
            Repl::None => {}
            Repl::Primary { standbys, .. } => {
                v.push(format!("{me}=primary"));
                for s in standbys.slots() {
                    if s.pair.connect_status() == hadr_ha::ConnectStatus::Connected {
                        let role = if s.principal {
                            "principal"
                        } else {
                            "auxiliary"
                        };
                        let state = hadr_admin_api::spelling(&s.pair.state);
                        v.push(format!("{}={role}:{state}", s.address));
                    }
                }
            }
            Repl::Standby { status, .. } => {
                let recorded = self.failover.as_ref().and_then(|f| {
                    let st = f.status.lock().unwrap_or_else(|p| p.into_inner());
                    let holder = st.holder.clone()?;
                    let mut r = vec![format!("{holder}=primary")];
                    for m in &st.members {
                        let role = if m.sync { "principal" } else { "auxiliary" };
                        r.push(format!("{}={role}:{}", m.standby, m.state));
                    }
                    Some(r)
                });
                match recorded {
                    Some(r) => v = r,
                    None => {
                        let link = status
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .link
                            .clone();
                        if let (Some(p), hadr_ha::ConnectStatus::Connected) =
                            (link.primary, link.connect_status)
                        {
                            v.push(format!("{p}=primary"));
                        }
                        v.push(format!("{me}=standby"));
                    }
                }
            }
        }
        v.join(",")
    }

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
    /// Stop the node, and have its run end with `change` for the supervisor.
    pub fn stop_for(&self, change: RoleChange) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(change);
        self.begin_shutdown();
    }

    /// End every session (FATAL 57P01): interrupt running statements and
    /// blocked reads; each session rolls back its transaction.
    pub(crate) fn end_sessions(&self) {
        for h in self.registry().values() {
            h.cancel.store(true, Ordering::SeqCst);
            h.interrupt.interrupt();
            if let Some(s) = &h.socket {
                let _ = s.shutdown(std::net::Shutdown::Read);
            }
        }
    }
}
