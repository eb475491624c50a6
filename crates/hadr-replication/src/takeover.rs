//! The pure rules of takeover, fencing and rejoin (DESIGN.md §5,
//! reference/db2-hadr.md §4). No I/O, no clock: the node's drivers and the
//! stateright models in `tests/takeover_model.rs` and `tests/model.rs` both
//! decide with these functions.
//!
//! - [`WriteGuard`]: whether a primary may accept writes: the start-up rule
//!   and fencing by a higher epoch.
//! - [`may_force`]: whether `hadr takeover --force [--peer-window-only]` is allowed.
//! - [`divergence`] and [`rejoin`]: how an old primary rejoins a new one.

use hadr_protocol::{EpochEntry, PeerRole};
use serde::Serialize;

use crate::pair::PairState;

/// A `--peer-window-only` takeover must happen at least this long before the
/// peer window ends (µs), so that clock skew between the two hosts cannot
/// let the old primary's window expire, and a commit return, first.
pub const PEER_WINDOW_MARGIN_US: u64 = 5_000_000;

/// Whether a primary accepts writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
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
}

/// The write permission of a node in its current role and epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct WriteGuard {
    /// This node's epoch.
    pub epoch: u64,
    /// Whether it is a primary (standbys never write; fencing still applies
    /// so a standby never promotes into a superseded epoch).
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

/// The pair state as a standby sees it, for the forced-takeover rules.
///
/// `connected`: the replication connection is up; `caught_up`: the standby has
/// received everything the primary last reported; `peer_window_end`: the last
/// peer window the primary promised (frozen at disconnect, as in DB2).
pub fn standby_state(
    connected: bool,
    caught_up: bool,
    peer_window_end: u64,
    now: u64,
) -> PairState {
    match (connected, caught_up) {
        (true, true) => PairState::Peer,
        (true, false) => PairState::RemoteCatchup,
        (false, _) if peer_window_end > now => PairState::DisconnectedPeer,
        (false, _) => PairState::RemoteCatchupPending,
    }
}

/// Whether a forced takeover is allowed now (DB2's rules, reference §4).
/// With `peer_window_only`, only in PEER or DISCONNECTED_PEER and at least
/// [`PEER_WINDOW_MARGIN_US`] before the promised window ends: then the old
/// primary is still holding every commit the standby does not have.
pub fn may_force(
    state: PairState,
    peer_window_end: u64,
    now: u64,
    peer_window_only: bool,
) -> Result<(), String> {
    if peer_window_only {
        if !matches!(state, PairState::Peer | PairState::DisconnectedPeer) {
            return Err(format!(
                "--peer-window-only needs PEER or DISCONNECTED_PEER; the standby is in {state:?}"
            ));
        }
        if peer_window_end < now.saturating_add(PEER_WINDOW_MARGIN_US) {
            return Err(if peer_window_end == 0 {
                "--peer-window-only: the primary promised no peer window (hadr_peer_window is 0 or the mode is not SYNC/NEARSYNC)".into()
            } else if peer_window_end <= now {
                format!(
                    "--peer-window-only: the peer window ended {} ms ago; commits may have returned on the old primary since",
                    (now - peer_window_end) / 1000
                )
            } else {
                format!(
                    "--peer-window-only: the peer window ends in {} ms, less than the {} s safety margin",
                    (peer_window_end - now) / 1000,
                    PEER_WINDOW_MARGIN_US / 1_000_000
                )
            });
        }
        return Ok(());
    }
    match state {
        PairState::Peer | PairState::DisconnectedPeer | PairState::RemoteCatchupPending => Ok(()),
        PairState::RemoteCatchup => Err(
            "a forced takeover is not allowed in REMOTE_CATCHUP: the standby is still receiving the primary's backlog; wait for PEER or for the connection to drop".into(),
        ),
    }
}

/// The first LSN at which two epoch histories may hold different records:
/// where the first epoch that is not in both began. `u64::MAX` when neither
/// history has an epoch the other lacks.
pub fn divergence(ours: &[EpochEntry], theirs: &[EpochEntry]) -> u64 {
    let common = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
    let a = ours.get(common).map(|e| e.start_lsn).unwrap_or(u64::MAX);
    let b = theirs.get(common).map(|e| e.start_lsn).unwrap_or(u64::MAX);
    a.min(b)
}

/// How a node rejoins a primary it has found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum Rejoin {
    /// Same history: follow from our log end.
    Follow,
    /// The primary's epoch is newer and our log stops at or before the point
    /// where it departs from ours: adopt its history and follow.
    Adopt,
    /// Our log has records past the divergence point the primary never had:
    /// rewind to `divergence` (or re-clone), then follow.
    Rewind {
        /// Divergence LSN D.
        divergence: u64,
    },
    /// The primary's epoch is older than ours: it was superseded; never follow it.
    Superseded,
}

/// Decide how to follow a primary (pure). `our_end`: our log end.
pub fn rejoin(
    our_epoch: u64,
    ours: &[EpochEntry],
    our_end: u64,
    their_epoch: u64,
    theirs: &[EpochEntry],
) -> Rejoin {
    if their_epoch < our_epoch {
        return Rejoin::Superseded;
    }
    let d = divergence(ours, theirs);
    if our_end > d {
        return Rejoin::Rewind { divergence: d };
    }
    if their_epoch == our_epoch {
        Rejoin::Follow
    } else {
        Rejoin::Adopt
    }
}

/// The epoch a promotion takes: above every epoch this node has heard of,
/// so that two promotions from one term can never share an epoch with a
/// term this node knows was already taken.
pub fn next_epoch(current: u64, highest_seen: u64) -> u64 {
    current.max(highest_seen) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[(u64, u64)]) -> Vec<EpochEntry> {
        v.iter()
            .map(|&(epoch, start_lsn)| EpochEntry { epoch, start_lsn })
            .collect()
    }

    #[test]
    fn divergence_is_where_the_first_unshared_epoch_began() {
        assert_eq!(divergence(&h(&[(1, 0)]), &h(&[(1, 0)])), u64::MAX);
        assert_eq!(divergence(&h(&[(1, 0)]), &h(&[(1, 0), (2, 500)])), 500);
        assert_eq!(divergence(&h(&[(1, 0), (2, 500)]), &h(&[(1, 0)])), 500);
        assert_eq!(
            divergence(&h(&[(1, 0), (2, 500)]), &h(&[(1, 0), (3, 400)])),
            400
        );
        assert_eq!(
            divergence(
                &h(&[(1, 0), (2, 500), (3, 900)]),
                &h(&[(1, 0), (2, 500), (4, 700)])
            ),
            700
        );
    }

    #[test]
    fn rejoin_plans() {
        let old = h(&[(1, 0)]);
        let new = h(&[(1, 0), (2, 500)]);
        assert_eq!(rejoin(1, &old, 400, 2, &new), Rejoin::Adopt);
        assert_eq!(rejoin(1, &old, 500, 2, &new), Rejoin::Adopt);
        assert_eq!(
            rejoin(1, &old, 501, 2, &new),
            Rejoin::Rewind { divergence: 500 }
        );
        assert_eq!(rejoin(2, &new, 9000, 2, &new), Rejoin::Follow);
        assert_eq!(rejoin(2, &new, 10, 1, &old), Rejoin::Superseded);
        // Same epoch number but different histories (two forced takeovers): rewind.
        let other = h(&[(1, 0), (2, 300)]);
        assert_eq!(
            rejoin(2, &other, 450, 2, &new),
            Rejoin::Rewind { divergence: 300 }
        );
    }

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

    #[test]
    fn force_rules() {
        let s = 1_000_000u64;
        let now = 100 * s;
        use PairState::*;
        for st in [Peer, DisconnectedPeer, RemoteCatchupPending] {
            assert!(may_force(st, 0, now, false).is_ok(), "{st:?}");
        }
        assert!(may_force(RemoteCatchup, 0, now, false).is_err());
        assert!(may_force(Peer, now + 6 * s, now, true).is_ok());
        assert!(may_force(DisconnectedPeer, now + 5 * s, now, true).is_ok());
        assert!(may_force(DisconnectedPeer, now + 5 * s - 1, now, true).is_err());
        assert!(may_force(DisconnectedPeer, now - 1, now, true).is_err());
        assert!(may_force(Peer, 0, now, true).is_err());
        assert!(may_force(RemoteCatchupPending, now + 60 * s, now, true).is_err());
        assert!(may_force(RemoteCatchup, now + 60 * s, now, true).is_err());
        assert_eq!(standby_state(true, true, 0, now), Peer);
        assert_eq!(standby_state(true, false, 0, now), RemoteCatchup);
        assert_eq!(standby_state(false, true, now + 1, now), DisconnectedPeer);
        assert_eq!(standby_state(false, true, now, now), RemoteCatchupPending);
    }

    #[test]
    fn promotion_epoch_is_above_everything_seen() {
        assert_eq!(next_epoch(3, 0), 4);
        assert_eq!(next_epoch(3, 5), 6);
    }
}
