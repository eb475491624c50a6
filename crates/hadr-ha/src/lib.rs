//! The pure rules of high availability (docs/architecture.md §HA core):
//! every decision about pair states, commit waits, fencing, rejoin, epochs,
//! standby admission and hand-over is a function here of (state, event) →
//! (state, actions), with time passed in as microseconds. No I/O, no clock
//! reads, no randomness, no tokio, rusqlite or sockets: the node's drivers
//! (`hadr-replication`, `hadr-server`) and the stateright models in `tests/`
//! call exactly these functions, so what is model-checked is what runs.
//!
//! - [`pair`]: DB2's pair state machine, seen from the primary for one standby.
//! - [`commit_wait`]: when a durable commit may return, over all standbys.
//! - [`fencing`]: whether a primary may write: the start-up rule, fencing.
//! - [`standby_link`]: the standby's view of its link and the promise rule.
//! - [`admission`]: whether a primary lets a standby stream, and from where.
//! - [`handover`]: the graceful hand-over as a step machine.
//! - [`takeover`]: when a forced or graceful takeover is allowed.
//! - [`rejoin`]: how an old primary rejoins a new one.
//! - [`epoch`]: epoch choice and history invariants.
//! - [`events`]: the typed role transitions the supervisor publishes.
//! - [`lease`]: the arbiter lease's arithmetic, by local monotonic time.
//! - [`failover`]: when a standby promotes itself and when a primary may
//!   acknowledge alone, through the arbiter.
//! - [`candidates`]: which of several standbys may take over, best first.
//! - [`resources`]: a resource group that follows a role: ordered starts,
//!   confirmed stops, restarts and the takeover they may ask for.

pub mod admission;
pub mod candidates;
pub mod commit_wait;
pub mod epoch;
pub mod events;
pub mod failover;
pub mod fencing;
pub mod handover;
pub mod lease;
pub mod pair;
pub mod rejoin;
pub mod resources;
pub mod standby_link;
pub mod takeover;

pub use events::{RoleEvent, Transition};
pub use fencing::{GuardAction, GuardEvent, WriteGuard, Writes};
pub use pair::{
    Action, CommitWait, DisconnectReason, Event, Pair, PairConfig, PairState, SyncMode,
};
pub use standby_link::{ConnectStatus, StandbyLink};
