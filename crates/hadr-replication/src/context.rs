//! What the primary's replication tasks share: the dispatcher (`primary`)
//! and the clone and rewind servers it hands a cloner to.
//! In a module of its own so that those servers need not import the
//! dispatcher that calls them.

use std::sync::Arc;
use std::time::Duration;

use hadr_engine::Engine;
use hadr_ha::handover::HandoverFailure;
use hadr_ha::{GuardAction, GuardEvent};
use hadr_protocol::{Hello, PeerRole, Topology};
use tokio::sync::watch;

use crate::standbys::Standbys;

/// Why a snapshot for a clone or rewind could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] hadr_engine::EngineError),
    /// SQLite failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The write lock was not granted.
    #[error("write lock: {0}")]
    WriteLock(String),
}

/// Takes a consistent snapshot for a clone: a connection inside a read
/// transaction and the LSN its state corresponds to.
pub type SnapshotFn =
    Arc<dyn Fn() -> Result<(rusqlite::Connection, u64), SnapshotError> + Send + Sync>;

/// What a graceful takeover asks of the primary node; the order of the
/// calls is decided by `hadr_ha::handover`.
pub trait TakeoverHooks: Send + Sync {
    /// End client sessions, take the write lock for good, make everything
    /// durable; return the final log end.
    fn stop_writes(&self) -> Result<u64, HandoverFailure>;
    /// The takeover failed: accept writes again.
    fn resume_writes(&self);
    /// Record the standby role durably.
    fn mark_standby(&self) -> Result<(), HandoverFailure>;
    /// The standby was not told after all: record the primary role again.
    fn unmark_standby(&self);
    /// The standby has been told: restart as a standby of it.
    fn become_standby(&self);
}

/// What the primary's replication tasks share.
pub struct PrimaryCtx {
    /// The database and log.
    pub engine: Arc<Engine>,
    /// The standbys and the commits waiting for them.
    pub standbys: Arc<Standbys>,
    /// Log end, updated after every capture.
    pub end: watch::Receiver<u64>,
    /// This node's replication address (as in the standbys' target lists).
    pub address: String,
    /// Where clients reach this node (`client_address`).
    pub client_address: String,
    /// `hadr_timeout`.
    pub timeout: Duration,
    /// The snapshot a clone or a rewind is served from.
    pub snapshot: SnapshotFn,
    /// Graceful takeover steps.
    pub takeover: Arc<dyn TakeoverHooks>,
    /// Tell the node's write guard about a peer's role and epoch; returns
    /// what the guard decided (the node carries out a fence itself).
    pub on_peer: Arc<dyn Fn(GuardEvent) -> Vec<GuardAction> + Send + Sync>,
    /// Mutual TLS for every replication connection, both ways (None: plain TCP).
    pub tls: Option<Arc<crate::link::LinkTls>>,
    /// True while the node wants to hand over to its principal standby
    /// unasked (a resource exhausted its restarts: docs/resources.md).
    pub hand_over: watch::Receiver<bool>,
}

impl PrimaryCtx {
    pub(crate) fn hello(&self) -> Hello {
        crate::hello(&self.engine, PeerRole::Primary, &self.address)
    }

    /// The topology this primary tells its standbys.
    pub fn topology(&self) -> Topology {
        Topology {
            epoch: self.engine.control().epoch,
            primary: Some(self.client_address.clone()),
            standbys: self.standbys.client_addresses(),
        }
    }
}
