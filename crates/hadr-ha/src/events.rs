//! The role transitions a node goes through, as one typed vocabulary: the
//! role supervisor publishes each one, and `/status`, the log, hooks and
//! (next) automated failover follow that one stream (docs/architecture.md
//! §Role changes).

use serde::{Deserialize, Serialize};

/// One role transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoleEvent {
    /// The node is opening its data directory (recovery).
    Starting,
    /// Serving as a single database (no HADR).
    Standard,
    /// Serving as the primary of `epoch`.
    Primary {
        /// Its epoch.
        epoch: u64,
    },
    /// Serving as a standby, looking for a primary among `targets`.
    Standby {
        /// Its epoch (the last adopted).
        epoch: u64,
        /// Candidate primaries.
        targets: Vec<String>,
    },
    /// Becoming the primary of `epoch` from `start_lsn` on.
    Promoting {
        /// The new epoch.
        epoch: u64,
        /// Where it begins.
        start_lsn: u64,
        /// A forced takeover (the old primary did not hand over).
        forced: bool,
    },
    /// A primary handing over to its standby (graceful takeover).
    Demoting {
        /// Why.
        reason: String,
    },
    /// A primary that learnt of a newer epoch stopped writing.
    Fenced {
        /// The newer epoch.
        epoch: u64,
        /// Who said so.
        reason: String,
    },
    /// Rewinding this node's log to follow the primary at `from`.
    Rewinding {
        /// The new primary's replication address.
        from: String,
    },
    /// Re-cloning this node from the primary at `from`.
    Recloning {
        /// The primary's replication address.
        from: String,
        /// Why.
        reason: String,
    },
    /// A step failed; the supervisor tries again.
    Failed {
        /// What was being done.
        during: String,
        /// The error.
        error: String,
    },
    /// The node stopped.
    Stopped,
}

impl RoleEvent {
    /// The event's name, as in its JSON form (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            RoleEvent::Starting => "starting",
            RoleEvent::Standard => "standard",
            RoleEvent::Primary { .. } => "primary",
            RoleEvent::Standby { .. } => "standby",
            RoleEvent::Promoting { forced: false, .. } => "promoting",
            RoleEvent::Promoting { forced: true, .. } => "promoting_forced",
            RoleEvent::Demoting { .. } => "demoting",
            RoleEvent::Fenced { .. } => "fenced",
            RoleEvent::Rewinding { .. } => "rewinding",
            RoleEvent::Recloning { .. } => "recloning",
            RoleEvent::Failed { .. } => "failed",
            RoleEvent::Stopped => "stopped",
        }
    }
}

/// A transition and when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// µs since the Unix epoch.
    pub at_micros: u64,
    /// What.
    #[serde(flatten)]
    pub event: RoleEvent,
}
