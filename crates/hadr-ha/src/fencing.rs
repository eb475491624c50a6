//! Whether a node may accept writes: the start-up rule and fencing by a
//! higher epoch (docs/takeover.md §Fencing). The node's driver and the
//! stateright models in `tests/` decide with [`WriteGuard::step`].

use hadr_protocol::PeerRole;
use serde::{Deserialize, Serialize};

/// Whether a primary accepts writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Writes {
    /// Writes are accepted.
    Open,
    /// Restarted as primary and no standby has connected yet (the start-up
    /// rule): no writes until one does, or the node is started with `--force`.
    AwaitingStandby,
    /// Restarted as primary with `--force`: no writes until every listed
    /// peer has been asked once (a reachable peer with a newer epoch fences
    /// this node instead).
    Checking,
    /// A peer reported a newer epoch: this node's term is over. Never reopens;
    /// the node rejoins as a standby.
    Fenced {
        /// The newer epoch that ended this node's term.
        by_epoch: u64,
        /// Who said so, for the log and status.
        reason: String,
    },
}

/// What the driver must do after a [`WriteGuard`] step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardAction {
    /// Start accepting writes.
    OpenWrites,
    /// Stop writes now, end write transactions, record the standby role (and
    /// the newer epoch), and rejoin as a standby.
    Fence {
        /// The newer epoch.
        by_epoch: u64,
        /// Why, for the log and status.
        reason: String,
    },
    /// The peer is a primary of an older epoch: tell it (our Hello does), it fences itself.
    PeerIsStale,
}

/// What a node hears about a peer (replication handshake or probe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardEvent {
    /// A standby connected to replicate (handshake). Only this ends the
    /// start-up wait: a standby that merely answers a probe may still hold a
    /// peer-window promise from before this node restarted, and would take
    /// over with --peer-window-only without the commits made here since;
    /// connecting makes it drop that promise.
    StandbyConnected {
        /// Its epoch.
        epoch: u64,
        /// Its address, for messages.
        address: String,
    },
    /// A peer answered a probe or probed us, with its role and epoch.
    PeerSeen {
        /// Its role.
        role: PeerRole,
        /// Its epoch.
        epoch: u64,
        /// Its address, for messages.
        address: String,
    },
    /// An operator or client reported that epoch `epoch` exists (`POST /fence`).
    EpochReported {
        /// The reported epoch.
        epoch: u64,
    },
    /// Every listed peer was probed once (answered, refused or timed out).
    ProbeRoundDone,
    /// The arbiter's lease is this node's again, in its own epoch (automatic
    /// failover): nobody took over while it was down, so it may write — the
    /// proof the start-up rule otherwise waits for a standby to give.
    LeaseHeld,
}

/// The write permission of a node in its current role and epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct WriteGuard {
    /// This node's epoch.
    pub epoch: u64,
    /// Whether it is a primary (standbys never write; a standby is kept out
    /// of superseded epochs by `highest_seen_epoch` and `epoch::next_epoch`).
    pub primary: bool,
    /// Current permission.
    pub writes: Writes,
}

impl WriteGuard {
    /// A node starting. `was_primary`: its control file already said primary
    /// before this start (a restart, not a fresh role or a promotion).
    /// `force`: started with `--force`, which waives the start-up rule.
    pub fn start(epoch: u64, primary: bool, was_primary: bool, force: bool) -> WriteGuard {
        let writes = match (primary && was_primary, force) {
            (false, _) => Writes::Open,
            (true, false) => Writes::AwaitingStandby,
            (true, true) => Writes::Checking,
        };
        WriteGuard {
            epoch,
            primary,
            writes,
        }
    }

    /// Whether a write may be accepted now.
    pub fn writable(&self) -> bool {
        self.primary && self.writes == Writes::Open
    }

    /// Apply an event.
    pub fn step(&mut self, ev: GuardEvent) -> Vec<GuardAction> {
        let mut connected = false;
        let (role, epoch, who) = match ev {
            GuardEvent::StandbyConnected { epoch, address } => {
                connected = true;
                (Some(PeerRole::Standby), epoch, address)
            }
            GuardEvent::PeerSeen {
                role,
                epoch,
                address,
            } => (Some(role), epoch, address),
            GuardEvent::EpochReported { epoch } => (None, epoch, "an admin request".to_string()),
            GuardEvent::LeaseHeld => {
                if matches!(self.writes, Writes::AwaitingStandby | Writes::Checking) {
                    self.writes = Writes::Open;
                    return vec![GuardAction::OpenWrites];
                }
                return vec![];
            }
            GuardEvent::ProbeRoundDone => {
                if self.writes == Writes::Checking {
                    self.writes = Writes::Open;
                    return vec![GuardAction::OpenWrites];
                }
                return vec![];
            }
        };
        if matches!(self.writes, Writes::Fenced { .. }) {
            return vec![];
        }
        // Two primaries of one epoch cannot both be right, and neither can
        // tell which one clients used last: both stop (safe; an operator
        // or a takeover picks one).
        let same_epoch_primary =
            self.primary && role == Some(PeerRole::Primary) && epoch == self.epoch;
        if epoch > self.epoch || same_epoch_primary {
            let reason = if same_epoch_primary {
                format!("{who} is also a primary of epoch {epoch}")
            } else {
                format!(
                    "{who} reported epoch {epoch}, newer than this node's {}",
                    self.epoch
                )
            };
            self.writes = Writes::Fenced {
                by_epoch: epoch,
                reason: reason.clone(),
            };
            return vec![GuardAction::Fence {
                by_epoch: epoch,
                reason,
            }];
        }
        if !self.primary {
            return vec![];
        }
        match role {
            Some(PeerRole::Primary) => vec![GuardAction::PeerIsStale],
            Some(PeerRole::Standby)
                if connected
                    && matches!(self.writes, Writes::AwaitingStandby | Writes::Checking) =>
            {
                self.writes = Writes::Open;
                vec![GuardAction::OpenWrites]
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_rule_and_fencing() {
        let mut g = WriteGuard::start(3, true, true, false);
        assert!(!g.writable());
        let seen = |role, epoch| GuardEvent::PeerSeen {
            role,
            epoch,
            address: "b".into(),
        };
        // A standby answering a probe is not enough; one connecting is.
        assert_eq!(g.step(seen(PeerRole::Standby, 3)), vec![]);
        assert!(!g.writable());
        let connected = GuardEvent::StandbyConnected {
            epoch: 3,
            address: "b".into(),
        };
        assert_eq!(g.step(connected), vec![GuardAction::OpenWrites]);
        assert!(g.writable());
        assert_eq!(
            g.step(seen(PeerRole::Primary, 2)),
            vec![GuardAction::PeerIsStale]
        );
        assert!(g.writable());
        assert!(matches!(
            g.step(seen(PeerRole::Standby, 4))[..],
            [GuardAction::Fence { by_epoch: 4, .. }]
        ));
        assert!(!g.writable());
        // Fenced is final.
        assert_eq!(g.step(seen(PeerRole::Standby, 3)), vec![]);
        assert!(!g.writable());

        // A higher-epoch peer also stops a primary still waiting for its standby.
        let mut g = WriteGuard::start(3, true, true, false);
        assert!(matches!(
            g.step(seen(PeerRole::Primary, 5))[..],
            [GuardAction::Fence { by_epoch: 5, .. }]
        ));
        // A probe round ends the wait of --force, not of the plain rule.
        let mut g = WriteGuard::start(3, true, true, true);
        assert_eq!(g.writes, Writes::Checking);
        assert!(!g.writable());
        assert_eq!(
            g.step(GuardEvent::ProbeRoundDone),
            vec![GuardAction::OpenWrites]
        );
        assert!(g.writable());
        let mut g = WriteGuard::start(3, true, true, false);
        assert_eq!(g.step(GuardEvent::ProbeRoundDone), vec![]);
        assert!(!g.writable());
        // --force still never writes past a newer epoch it can see.
        let mut g = WriteGuard::start(3, true, true, true);
        assert!(matches!(
            g.step(seen(PeerRole::Primary, 4))[..],
            [GuardAction::Fence { by_epoch: 4, .. }]
        ));
        assert_eq!(g.step(GuardEvent::ProbeRoundDone), vec![]);
        assert!(!g.writable());
        // Fresh roles and promotions do not wait.
        assert!(WriteGuard::start(3, true, false, false).writable());
        // Two primaries of one epoch both stop.
        let mut g = WriteGuard::start(3, true, false, false);
        assert!(matches!(
            g.step(seen(PeerRole::Primary, 3))[..],
            [GuardAction::Fence { by_epoch: 3, .. }]
        ));
        // Standbys never write.
        assert!(!WriteGuard::start(3, false, false, true).writable());
        // An admin report of a newer epoch fences.
        let mut g = WriteGuard::start(3, true, false, false);
        assert!(matches!(
            g.step(GuardEvent::EpochReported { epoch: 4 })[..],
            [GuardAction::Fence { by_epoch: 4, .. }]
        ));
        let mut g = WriteGuard::start(3, true, false, false);
        assert_eq!(g.step(GuardEvent::EpochReported { epoch: 3 }), vec![]);
        assert!(g.writable());
    }
}
