//! What automatic failover's driver shares with the rest of the node: the
//! status it shows, the pause switch, and whether the rules refuse new
//! writes. A leaf module, so that the node's state can hold it without
//! knowing the driver.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use hadr_arbiter::Arbiter;

use tracing::info;

pub use hadr_admin_api::FailoverStatus;

/// What the driver shares with the node (status, pause, write permission).
#[derive(Default)]
pub struct FailoverShared {
    /// For status.
    pub status: Mutex<FailoverStatus>,
    /// `hadr cluster pause`.
    pub paused: AtomicBool,
    /// The rules refuse new writes (lost the standby and the lease).
    pub refuse_writes: AtomicBool,
    /// Until when (monotonic µs) the lease is ours; 0: not ours. Read when
    /// a write starts, so that a primary whose driver is stuck in an
    /// arbiter call (up to its timeout) still stops calling itself
    /// writable the moment its lease runs out without its standby.
    pub lease_until: AtomicU64,
    /// The arbiter, once the driver opened it (a graceful takeover reads it first).
    pub arbiter: Mutex<Option<Arc<dyn Arbiter>>>,
    /// Successful lease writes (renewals, marks, take-overs) in this role.
    pub lease_writes: AtomicU64,
    /// Arbiter calls that failed (unreachable, timed out, refused) in this role.
    pub arbiter_failures: AtomicU64,
}

impl FailoverShared {
    pub(crate) fn with_status(&self, f: impl FnOnce(&mut FailoverStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The arbiter, if the driver opened one.
    pub fn arbiter(&self) -> Option<Arc<dyn Arbiter>> {
        self.arbiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn decide(&self, what: String) {
        self.with_status(|s| {
            if s.decisions.last() != Some(&what) {
                info!(decision = %what, "automatic failover");
                if s.decisions.len() == 16 {
                    s.decisions.remove(0);
                }
                s.decisions.push(what);
            }
        });
    }
}
