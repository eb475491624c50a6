//! A running node: the engine, the write permit, the durability watch, the
//! session registry, and the tasks around them (accept loop, admin HTTP,
//! checkpointer).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hadr_engine::{Checkpoint, Engine, RecoveryReport};
use hadr_log::Lsn;
use rusqlite::InterruptHandle;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
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
    /// Wakes the session out of waits (write permit, durability).
    pub cancel: Arc<Notify>,
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
    /// SQLite has one writer; this permit serialises writers fairly (FIFO) without
    /// busy-polling, and keeps capture in commit order.
    pub write_permit: Arc<Semaphore>,
    /// The log's flushed LSN, updated by the flusher thread.
    pub flushed: watch::Receiver<Lsn>,
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
    /// Cached page hash: (lsn, hash).
    pub hash_cache: tokio::sync::Mutex<Option<(Lsn, hadr_engine::PageHash)>>,
}

impl Node {
    /// Open (and recover) the database and build the node state.
    pub fn open(config: Config) -> Result<Arc<Node>, NodeError> {
        config.validate()?;
        let (engine, recovery) = Engine::open(&config.data, &config.log_config())?;
        let engine = Arc::new(engine);
        let (flushed_tx, flushed) = watch::channel(engine.log().flushed_lsn());
        engine.log().on_flush(Box::new(move |lsn| {
            flushed_tx.send_replace(lsn);
        }));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let meta = Arc::new(Mutex::new(engine.connect()?));
        Ok(Arc::new(Node {
            meta,
            config,
            engine,
            write_permit: Arc::new(Semaphore::new(1)),
            flushed,
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

    /// Acquire the write permit, waiting at most `write_wait_timeout` and
    /// giving up early if `cancel` fires.
    pub async fn acquire_write(&self, cancel: &Notify) -> Result<OwnedSemaphorePermit, PgError> {
        let wait = self.config.write_wait_timeout.0;
        tokio::select! {
            r = tokio::time::timeout(wait, self.write_permit.clone().acquire_owned()) => match r {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(_)) => Err(PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection because the server is shutting down")),
                Err(_) => Err(PgError::new(sqlstate::LOCK_NOT_AVAILABLE, format!(
                    "could not obtain the write lock within {} ms (write_wait_timeout)", wait.as_millis()
                )).with_hint("another session holds a write transaction open; see idle_in_transaction_timeout")),
            },
            _ = cancel.notified() => Err(PgError::new(sqlstate::QUERY_CANCELED, "canceling statement due to user request")),
        }
    }

    /// Wait until the log is durable up to `lsn`.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), PgError> {
        let mut rx = self.flushed.clone();
        let timeout = self.config.commit_timeout.0;
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|f| *f >= lsn).await.map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PgError::fatal(sqlstate::IO_ERROR, "the transaction log stopped; commit state unknown")),
            Err(_) => Err(PgError::new(
                sqlstate::IO_ERROR,
                format!("commit was not made durable within {} ms; its outcome is unknown", timeout.as_millis()),
            )
            .with_hint("check the server log for log write or fsync errors")),
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
}

/// Addresses a started node listens on.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// PostgreSQL protocol address.
    pub pg: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

/// Run a node until `stop` completes, then shut down cleanly.
pub async fn run(config: Config, stop: impl Future<Output = ()>, on_bound: impl FnOnce(Bound)) -> Result<(), NodeError> {
    let node = Node::open(config)?;
    let pg = TcpListener::bind(node.config.listen)
        .await
        .map_err(|e| NodeError::Bind { addr: node.config.listen, source: e })?;
    let admin = TcpListener::bind(node.config.admin)
        .await
        .map_err(|e| NodeError::Bind { addr: node.config.admin, source: e })?;
    let bound = Bound {
        pg: pg.local_addr().map_err(|e| NodeError::Bind { addr: node.config.listen, source: e })?,
        admin: admin.local_addr().map_err(|e| NodeError::Bind { addr: node.config.admin, source: e })?,
    };
    let control = node.engine.control();
    info!(
        pg = %bound.pg, admin = %bound.admin, role = control.role.as_str(), epoch = control.epoch,
        database_id = %control.database_id, end_lsn = node.engine.log().end_lsn(),
        "hadr node serving"
    );
    on_bound(bound);

    let accept = tokio::spawn(accept_loop(node.clone(), pg));
    let admin_task = tokio::spawn(crate::admin::serve(node.clone(), admin));
    let ckpt = tokio::spawn(checkpointer(node.clone()));

    stop.await;
    info!("shutting down");
    node.begin_shutdown();
    accept.abort();
    admin_task.abort();
    ckpt.abort();
    // Interrupt running statements so sessions notice the shutdown promptly.
    for h in node.registry().values() {
        h.interrupt.interrupt();
        h.cancel.notify_waiters();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.open_sessions.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = node.open_sessions.load(Ordering::SeqCst);
    if left > 0 {
        warn!(sessions = left, "sessions still open at shutdown; their transactions roll back");
    }
    let permit = tokio::time::timeout(Duration::from_secs(10), node.write_permit.clone().acquire_owned()).await;
    let engine = node.engine.clone();
    let closed = tokio::task::spawn_blocking(move || engine.close())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    drop(permit);
    match closed {
        Ok(()) => info!("clean shutdown complete"),
        Err(e) => error!(error = %e, "shutdown could not checkpoint; recovery will finish it at next start"),
    }
    Ok(())
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                set_keepalive(&stream);
                node.stats.connections.fetch_add(1, Ordering::Relaxed);
                let node = node.clone();
                tokio::spawn(async move {
                    crate::session::serve(node, stream, peer).await;
                });
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
    let never_cancel = Notify::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if node.engine.frames_since_checkpoint() < threshold_frames {
            continue;
        }
        let Ok(permit) = node.acquire_write(&never_cancel).await else { continue };
        let engine = node.engine.clone();
        let r = tokio::task::spawn_blocking(move || engine.checkpoint(false)).await;
        drop(permit);
        match r {
            Ok(Ok(Checkpoint::Complete(lsn))) => {
                node.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                let engine = node.engine.clone();
                let removed = tokio::task::spawn_blocking(move || engine.log().apply_retention(lsn)).await;
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
