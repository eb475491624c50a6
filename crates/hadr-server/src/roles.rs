//! The vocabulary of role changes: what a node's run asks the supervisor to
//! do ([`RoleChange`]), the stream every transition is published on
//! ([`RoleEvents`]), and the two durable role writes a running node makes
//! itself (a hand-over and a fencing must record the standby role before
//! they may tell anyone). Everything else that changes a role is in
//! `supervisor`.

use std::collections::VecDeque;
use std::sync::Mutex;

use hadr_engine::{Engine, EngineError, Role};
use hadr_ha::{RoleEvent, Transition};
use tokio::sync::broadcast;
use tracing::info;

/// How many transitions `/status` shows.
pub const HISTORY: usize = 32;

/// Why a node's run ended: the role change the supervisor must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// Asked to stop.
    Stopped,
    /// A standby whose primary no longer has the log it needs (or whose
    /// rewind was cut short): re-clone from `from`.
    Reclone {
        /// The primary's replication address.
        from: String,
        /// Why.
        reason: String,
    },
    /// A standby took over: promote the data directory (new epoch from
    /// `end`, or from the log end for a forced takeover) and run as primary.
    Promote {
        /// The old primary's final LSN (graceful), or None (forced).
        end: Option<u64>,
        /// The epoch won in the arbiter (automatic failover); None: the
        /// next epoch above every epoch this node knows.
        epoch: Option<u64>,
        /// Graceful: the primary that handed over (its replication
        /// address, as the arbiter's record names it).
        predecessor: Option<String>,
    },
    /// An old primary whose log diverged from the primary at `from`: rewind
    /// (or re-clone) and run as its standby.
    Rewind {
        /// The new primary's replication address.
        from: String,
    },
    /// The role was already recorded (a primary handed over, or was fenced):
    /// run again in it.
    Restart,
}

/// The stream of role transitions, with a bounded history.
pub struct RoleEvents {
    tx: broadcast::Sender<Transition>,
    history: Mutex<VecDeque<Transition>>,
    /// Transitions since the process started, by kind (for /metrics: the
    /// history is bounded, a counter is not).
    counts: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// When this process last began a promotion (monotonic µs, 0: never):
    /// the failover rules' rate limit must outlive the standby run that
    /// promoted, or it would never apply.
    last_promotion: std::sync::atomic::AtomicU64,
}

impl Default for RoleEvents {
    fn default() -> Self {
        RoleEvents {
            tx: broadcast::channel(64).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            counts: Mutex::default(),
            last_promotion: Default::default(),
        }
    }
}

impl RoleEvents {
    /// Publish a transition (and log it at INFO: one line per role change).
    pub fn publish(&self, event: RoleEvent) {
        let t = Transition {
            at_micros: hadr_replication::now_micros(),
            event,
        };
        info!(event = ?t.event, "role transition");
        // Only a forced promotion: ping-pong is automatic failover over a
        // flapping link, and a planned switchover must not stop the next
        // crash from being failed over (docs/failover.md §Who may write).
        if matches!(t.event, RoleEvent::Promoting { forced: true, .. }) {
            self.last_promotion.store(
                hadr_replication::mono_micros(),
                std::sync::atomic::Ordering::SeqCst,
            );
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(t.event.kind())
            .or_default() += 1;
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(t.clone());
        }
        // Nobody listening is fine: the history keeps it.
        let _ = self.tx.send(t);
    }

    /// Follow transitions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.tx.subscribe()
    }

    /// When this process last began a promotion (monotonic µs), if ever.
    pub fn last_promotion(&self) -> Option<u64> {
        match self
            .last_promotion
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            0 => None,
            t => Some(t),
        }
    }

    /// How many transitions of each kind since the process started.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// The most recent transitions, oldest first.
    pub fn recent(&self) -> Vec<Transition> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Record durably that this node is a standby now and that `highest_seen`
/// exists: it never promotes into that epoch or an older one again.
pub fn record_standby(engine: &Engine, highest_seen: u64) -> Result<(), EngineError> {
    engine.update_control(|c| {
        c.role = Role::Standby;
        c.highest_seen_epoch = c.highest_seen_epoch.max(highest_seen);
    })?;
    Ok(())
}

/// Record durably that this node is a primary (its initial role, or a
/// hand-over undone before the standby was told).
pub fn record_primary(engine: &Engine) -> Result<(), EngineError> {
    engine.update_control(|c| c.role = Role::Primary)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_ordered() {
        let ev = RoleEvents::default();
        let mut rx = ev.subscribe();
        for epoch in 0..(HISTORY as u64 + 5) {
            ev.publish(RoleEvent::Primary { epoch });
        }
        let h = ev.recent();
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h[0].event, RoleEvent::Primary { epoch: 5 });
        assert!(h.windows(2).all(|w| w[0].at_micros <= w[1].at_micros));
        assert_eq!(
            rx.try_recv().map(|t| t.event),
            Ok(RoleEvent::Primary { epoch: 0 })
        );
    }
}
