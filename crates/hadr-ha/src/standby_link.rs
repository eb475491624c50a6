//! A standby's view of its link to the primary: connected or not, what the
//! primary last said it had, and the peer window it last promised. The rule
//! that matters for safety lives here: the promise is forgotten *before* the
//! standby says hello (docs/takeover.md §Peer-window promise), because on the
//! hello alone the primary may leave DISCONNECTED_PEER and release the
//! commits it held, even if its answer never reaches the standby.

use serde::{Deserialize, Serialize};

use crate::pair::PairState;
use crate::takeover::{may_force, TakeoverRefusal};

/// DB2's HADR_CONNECT_STATUS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectStatus {
    /// The replication connection is up.
    Connected,
    /// It is not.
    #[default]
    Disconnected,
}

/// The standby side of one replication link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StandbyLink {
    /// Connected or not.
    pub connect_status: ConnectStatus,
    /// Since when (µs).
    pub connect_status_since: u64,
    /// The primary followed (or last followed).
    pub primary: Option<String>,
    /// The primary's log end as last heard.
    pub primary_end_lsn: u64,
    /// When anything last arrived (µs).
    pub last_receive: u64,
    /// Peer window end the primary promised (µs; frozen at disconnect, as in DB2).
    pub peer_window_end: u64,
}

impl StandbyLink {
    /// About to send a hello to a primary: drop any earlier promise first.
    pub fn hello_sent(&mut self) {
        self.peer_window_end = 0;
    }

    /// The primary answered the hello.
    pub fn connected(&mut self, primary: &str, primary_end_lsn: u64, now: u64) {
        self.set_status(ConnectStatus::Connected, now);
        self.primary = Some(primary.to_string());
        self.primary_end_lsn = primary_end_lsn;
        self.last_receive = now;
    }

    /// Any message arrived.
    pub fn heard(&mut self, now: u64) {
        self.last_receive = self.last_receive.max(now);
    }

    /// Records up to `end` arrived.
    pub fn received(&mut self, end: u64, now: u64) {
        self.heard(now);
        self.primary_end_lsn = self.primary_end_lsn.max(end);
    }

    /// A heartbeat: the primary's log end and its current promise (0 = none,
    /// which the primary sends outside PEER).
    pub fn heartbeat(&mut self, end_lsn: u64, peer_window_end: u64, now: u64) {
        self.heard(now);
        self.primary_end_lsn = end_lsn;
        self.peer_window_end = peer_window_end;
    }

    /// The link went down; the promise is kept (it is what makes a
    /// peer-window-only takeover safe).
    pub fn lost(&mut self, now: u64) {
        self.set_status(ConnectStatus::Disconnected, now);
    }

    fn set_status(&mut self, to: ConnectStatus, now: u64) {
        if self.connect_status != to || self.connect_status_since == 0 {
            self.connect_status = to;
            self.connect_status_since = now;
        }
    }

    /// The pair state as this standby sees it, with our log ending at `our_end`.
    pub fn pair_state(&self, our_end: u64, now: u64) -> PairState {
        standby_state(
            self.connect_status == ConnectStatus::Connected,
            our_end >= self.primary_end_lsn,
            self.peer_window_end,
            now,
        )
    }

    /// Whether a forced takeover is allowed now; the state it was judged in.
    pub fn may_force(
        &self,
        our_end: u64,
        now: u64,
        peer_window_only: bool,
    ) -> Result<PairState, TakeoverRefusal> {
        let state = self.pair_state(our_end, now);
        may_force(state, self.peer_window_end, now, peer_window_only).map(|()| state)
    }

    /// Whether this standby may ask its primary for a graceful takeover.
    pub fn may_ask_graceful(&self) -> Result<(), TakeoverRefusal> {
        if self.connect_status == ConnectStatus::Connected {
            Ok(())
        } else {
            Err(TakeoverRefusal::NotConnected)
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn the_promise_is_gone_before_hello_and_kept_across_a_loss() {
        let mut l = StandbyLink::default();
        l.hello_sent();
        l.connected("p", 100, S);
        l.heartbeat(100, 20 * S, 2 * S);
        assert_eq!(l.pair_state(100, 2 * S), PairState::Peer);
        l.lost(3 * S);
        assert_eq!(l.pair_state(100, 3 * S), PairState::DisconnectedPeer);
        assert_eq!(
            l.may_force(100, 3 * S, true),
            Ok(PairState::DisconnectedPeer)
        );
        // Reconnecting: the old promise must not survive the hello.
        l.hello_sent();
        assert_eq!(l.peer_window_end, 0);
        assert!(l.may_force(100, 3 * S, true).is_err());
        assert!(l.may_ask_graceful().is_err());
        l.connected("p", 150, 4 * S);
        assert_eq!(l.pair_state(100, 4 * S), PairState::RemoteCatchup);
        assert!(l.may_ask_graceful().is_ok());
    }

    #[test]
    fn states_as_the_standby_sees_them() {
        use PairState::*;
        let now = 100 * S;
        assert_eq!(standby_state(true, true, 0, now), Peer);
        assert_eq!(standby_state(true, false, 0, now), RemoteCatchup);
        assert_eq!(standby_state(false, true, now + 1, now), DisconnectedPeer);
        assert_eq!(standby_state(false, true, now, now), RemoteCatchupPending);
    }
}
