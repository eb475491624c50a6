//! The rules of an operator's takeover (docs/takeover.md): when a forced
//! takeover is allowed (DB2's `TAKEOVER BY FORCE [PEER WINDOW ONLY]`), when a
//! graceful one is, and the pair state as a standby sees it.

use crate::pair::{PairState, SyncMode};

/// A `--peer-window-only` takeover must happen at least this long before the
/// peer window ends (µs), so that clock skew between the two hosts cannot
/// let the old primary's window expire, and a commit return, first.
pub const PEER_WINDOW_MARGIN_US: u64 = 5_000_000;

/// Why a takeover is not allowed now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TakeoverRefusal {
    /// `--peer-window-only` outside PEER / DISCONNECTED_PEER.
    #[error("--peer-window-only needs PEER or DISCONNECTED_PEER; the standby is in {0:?}")]
    WindowNeedsPeer(PairState),
    /// `--peer-window-only` but the primary never promised a window.
    #[error("--peer-window-only: the primary promised no peer window (hadr_peer_window is 0 or the mode is not SYNC/NEARSYNC)")]
    NoWindow,
    /// The window is over: the old primary may have released commits alone.
    #[error("--peer-window-only: the peer window ended {ago_ms} ms ago; commits may have returned on the old primary since")]
    WindowEnded {
        /// How long ago.
        ago_ms: u64,
    },
    /// The window ends too soon to be sure of it across two clocks.
    #[error("--peer-window-only: the peer window ends in {left_ms} ms, less than the {} s safety margin", PEER_WINDOW_MARGIN_US / 1_000_000)]
    WindowTooShort {
        /// Time left.
        left_ms: u64,
    },
    /// A forced takeover while the backlog is still arriving.
    #[error("a forced takeover is not allowed in REMOTE_CATCHUP: the standby is still receiving the primary's backlog; wait for PEER or for the connection to drop")]
    InCatchup,
    /// A graceful takeover outside PEER.
    #[error("a graceful takeover needs the pair in PEER (or REMOTE_CATCHUP with SUPERASYNC); it is {0:?}")]
    GracefulNeedsPeer(PairState),
    /// A graceful takeover asked of a standby that is not connected.
    #[error("this standby is not connected to its primary: a graceful takeover needs PEER; a forced takeover (--force) does not")]
    NotConnected,
    /// Asked of a node that is not a standby.
    #[error("this node is not a standby; issue the takeover against the standby")]
    NotAStandby,
    /// A graceful takeover while automatic failover is on and the arbiter
    /// cannot be read: the new primary's first act, writing the record in
    /// its epoch, could not be made (docs/failover.md §Graceful takeover).
    #[error("automatic failover is on and the arbiter cannot be read ({reason}): a graceful takeover goes through the arbiter, so it is refused; repair the arbiter and retry, or, as a human who accepts the risk, use `hadr takeover --force`")]
    ArbiterUnreadable {
        /// What the arbiter answered.
        reason: String,
    },
}

/// Whether a forced takeover is allowed now (DB2's rules, docs/takeover.md §Forced takeover).
/// With `peer_window_only`, only in PEER or DISCONNECTED_PEER and at least
/// [`PEER_WINDOW_MARGIN_US`] before the promised window ends: then the old
/// primary is still holding every commit the standby does not have.
pub fn may_force(
    state: PairState,
    peer_window_end: u64,
    now: u64,
    peer_window_only: bool,
) -> Result<(), TakeoverRefusal> {
    if peer_window_only {
        if !matches!(state, PairState::Peer | PairState::DisconnectedPeer) {
            return Err(TakeoverRefusal::WindowNeedsPeer(state));
        }
        if peer_window_end < now.saturating_add(PEER_WINDOW_MARGIN_US) {
            return Err(if peer_window_end == 0 {
                TakeoverRefusal::NoWindow
            } else if peer_window_end <= now {
                TakeoverRefusal::WindowEnded {
                    ago_ms: (now - peer_window_end) / 1000,
                }
            } else {
                TakeoverRefusal::WindowTooShort {
                    left_ms: (peer_window_end - now) / 1000,
                }
            });
        }
        return Ok(());
    }
    match state {
        PairState::Peer | PairState::DisconnectedPeer | PairState::RemoteCatchupPending => Ok(()),
        PairState::RemoteCatchup => Err(TakeoverRefusal::InCatchup),
    }
}

/// Whether the primary may hand over gracefully to a standby in `state`.
/// SUPERASYNC never reaches PEER (DB2), so there a connected standby in
/// REMOTE_CATCHUP may take over; the gap is shipped like any tail.
pub fn may_hand_over(state: PairState, mode: SyncMode) -> Result<(), TakeoverRefusal> {
    let allowed = state == PairState::Peer
        || (mode == SyncMode::Superasync && state == PairState::RemoteCatchup);
    if allowed {
        Ok(())
    } else {
        Err(TakeoverRefusal::GracefulNeedsPeer(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn graceful_needs_peer_but_superasync_may_hand_over_in_catchup() {
        use PairState::*;
        assert!(may_hand_over(Peer, SyncMode::Nearsync).is_ok());
        assert!(may_hand_over(RemoteCatchup, SyncMode::Nearsync).is_err());
        assert!(may_hand_over(RemoteCatchup, SyncMode::Superasync).is_ok());
        assert!(may_hand_over(DisconnectedPeer, SyncMode::Sync).is_err());
        assert!(may_hand_over(RemoteCatchupPending, SyncMode::Superasync).is_err());
    }
}
