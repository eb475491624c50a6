//! Resource groups that follow the node's role (docs/resources.md): the
//! driver around `hadr_ha::resources`. It runs each resource's start, stop
//! and monitor with their timeouts, supervises service processes in their
//! own process group, polls monitors, and publishes each resource's state.
//! It knows nothing about databases: the server tells it, through
//! [`Manager::set_desire`], whether the node is a writable primary or a
//! standby, and asks it, before a hand-over, to confirm that everything
//! stopped ([`Manager::wait_down`]).
//!
//! - [`spec`]: what a resource is (kinds, timeouts, restart policy).
//! - [`exec`]: how each kind is started, stopped, killed and monitored.
//! - [`manager`]: the per-group driver task and the handle the server holds.
//! - [`guard`]: the dead man's switch that stops everything if hadr dies.

pub mod exec;
pub mod guard;
pub mod manager;
pub mod spec;

pub use manager::{Desire, Manager, ManagerError, ResourceStatus};
pub use spec::{GroupRole, Kind, Resource, Service};
