//! hadr's admin HTTP API as types: what `GET /status`, `POST /takeover` and
//! `POST /fence` answer ([`Status`], [`TakeoverAnswer`], [`FenceAnswer`]),
//! and [`AdminClient`], the one client every consumer (the CLI, the demo,
//! the tests, the benchmark) talks to a node's admin port with; the admin
//! token ([`token`]) that state-changing requests carry; and HTTPS to the
//! admin port with an optional client certificate ([`tls`]).
//!
//! The JSON is the wire format: field names and shapes are those `/status`
//! has always had, so that scripts reading it keep working. Fields added
//! later carry `#[serde(default)]`, so that this client also reads a node
//! that does not send them yet.

mod client;
mod filesync;
mod status;
pub mod tls;
pub mod token;

pub use client::{AdminClient, AdminError, DEFAULT_TIMEOUT};
pub use filesync::{FileMismatch, FileSyncProblem, FileSyncRoot, FileSyncStatus, FileVerify};
pub use hadr_ha::{ConnectStatus, PairState, RoleEvent, SyncMode, Transition, Writes};
pub use hadr_log::EpochStart;
pub use status::{
    spelling, steps, Activity, ArbiterView, ClusterMember, FailoverStatus, FenceAnswer, HadrView,
    LogStatus, NodeRole, NotServing, PageHashStatus, PrimaryView, Recovery, ResourceView,
    ResourcesStatus, StandbyPair, StandbyView, Status, TakeoverAnswer, TakeoverProgress, Topology,
};
pub use token::Unauthorized;
