//! How a primary stops being one: fencing by a newer epoch, and the
//! primary's side of a graceful hand-over (the order of its steps is
//! `hadr_ha::handover`'s). Both end with the standby role recorded through
//! `roles` and the node restarted by the supervisor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hadr_ha::handover::HandoverFailure;
use hadr_ha::{GuardAction, GuardEvent, RoleEvent};
use tracing::{error, info, warn};

use crate::node::{Node, Repl};
use crate::roles::{self, RoleChange};

/// Why a primary could not stop writing cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StopWritesError {
    /// The write lock was not granted.
    #[error("could not take the write lock: {0}")]
    WriteLock(String),
    /// Capturing the last commits failed.
    #[error("could not capture the last commits: {0}")]
    Capture(#[source] hadr_engine::EngineError),
    /// Making the log durable failed.
    #[error("could not flush the log: {0}")]
    Flush(#[source] hadr_log::LogError),
}

impl Node {
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
        self.events.publish(RoleEvent::Fenced {
            epoch: by_epoch,
            reason: reason.clone(),
        });
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
                if let Err(e) = roles::record_standby(&node.engine, by_epoch) {
                    error!(error = %e, "fenced, but could not record the standby role; the node stays fenced");
                    return;
                }
                node.set_activity("fenced", Some("restarting as a standby"));
                node.stop_for(RoleChange::Restart);
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the fencing thread; writes stay refused");
        }
    }

    /// End client sessions (FATAL with `why`), take the write lock for good,
    /// capture and flush everything; return the final log end. Used by a
    /// graceful handover and by fencing.
    fn stop_writes(&self, why: &str) -> Result<u64, StopWritesError> {
        *self.ending_reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        self.demoting.store(true, Ordering::SeqCst);
        self.end_sessions();
        // No waiting for sessions to close: a session whose commit waits for
        // the standby's ack would wait for the sender, which is busy here.
        // The write permit is what matters: once held, nobody writes; the
        // holder is interrupted above and rolls back.
        let began = Instant::now();
        // The lock itself, not `acquire_write`: that refuses everyone once
        // `demoting` is set, which is the point for sessions, not for this.
        let wait = self.config.write_wait_timeout.0;
        let permit = match self.write_lock.acquire(wait, &AtomicBool::new(false)) {
            Ok(p) => p,
            Err(e) => {
                self.demoting.store(false, Ordering::SeqCst);
                return Err(StopWritesError::WriteLock(e.to_string()));
            }
        };
        let end = self
            .engine
            .capture_commits()
            .map_err(StopWritesError::Capture)
            .and_then(|_| self.engine.log().flush().map_err(StopWritesError::Flush));
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

impl Node {
    /// Before the standby is told to promote: stop the primary's resources
    /// and wait until their monitors confirm they are gone, so that the
    /// new primary may start its own at once (docs/resources.md §Who starts
    /// when). A stop that is not confirmed fails the hand-over, and this
    /// primary takes its writes (and resources) back.
    fn stop_resources_for_hand_over(&self) -> Result<(), HandoverFailure> {
        use hadr_resources::{Desire, GroupRole};
        if !self.resources.has(GroupRole::Primary) {
            return Ok(());
        }
        self.set_activity(
            "graceful takeover",
            Some("stopping this node's resources (each confirmed by its monitor)"),
        );
        let d = self.resources.desire();
        self.resources.set_desire(Desire {
            primary: false,
            ..d
        });
        let wait =
            self.resources.stop_bound(GroupRole::Primary) + std::time::Duration::from_secs(2);
        tokio::runtime::Handle::current()
            .block_on(self.resources.wait_down(GroupRole::Primary, wait))
            .map_err(|e| HandoverFailure::StopWrites(format!("the resources did not stop: {e}")))
    }
}

/// The primary's side of a graceful takeover, on the node.
pub(crate) struct Handover(pub(crate) std::sync::Weak<Node>);

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
        node.events.publish(RoleEvent::Demoting {
            reason: "graceful takeover: handing over to the standby".into(),
        });
        let r = node
            .stop_writes(
                "terminating connection: this primary is handing over to its standby (takeover)",
            )
            .map_err(|e| HandoverFailure::StopWrites(e.to_string()))
            .and_then(|end| node.stop_resources_for_hand_over().map(|_| end));
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
        // The standby takes at least the next epoch: never promote into it again.
        let next = node.engine.control().epoch + 1;
        roles::record_standby(&node.engine, next).map_err(|e| HandoverFailure::Mark(e.to_string()))
    }

    fn unmark_standby(&self) {
        if let Some(node) = self.0.upgrade() {
            if let Err(e) = roles::record_primary(&node.engine) {
                error!(error = %e, "takeover failed and the primary role could not be restored; the node stays fenced");
            }
        }
    }

    fn become_standby(&self) {
        if let Some(node) = self.0.upgrade() {
            info!("takeover: this node is now a standby; restarting");
            node.stop_for(RoleChange::Restart);
        }
    }
}
