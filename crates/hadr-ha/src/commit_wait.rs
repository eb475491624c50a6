//! When a commit that is durable locally may return, over every standby of
//! a primary (docs/hadr-semantics.md §Sync modes): each pair answers for its
//! own sync mode and state, and the commit waits for all of them.

use crate::pair::{CommitWait, Pair, PairState};

/// Whether a commit whose record ends at `lsn` may return.
pub fn may_release<'a>(mut pairs: impl Iterator<Item = &'a Pair>, lsn: u64) -> bool {
    pairs.all(|p| p.commit_wait(lsn) == CommitWait::Release)
}

/// The same, for a primary under automatic failover: a commit the principal
/// standby may lack (its pair is not in PEER) returns only while `alone`
/// holds — this primary has the arbiter's lease and has recorded the standby
/// out of sync there (docs/failover.md §Acknowledging alone).
pub fn may_release_guarded<'a>(
    mut pairs: impl Iterator<Item = &'a Pair>,
    lsn: u64,
    alone: bool,
) -> bool {
    let Some(principal) = pairs.next() else {
        return true;
    };
    let lacking = matches!(
        principal.state,
        PairState::RemoteCatchupPending | PairState::RemoteCatchup
    );
    if lacking && !alone {
        return false;
    }
    principal.commit_wait(lsn) == CommitWait::Release && may_release(pairs, lsn)
}

/// A session's `remote_apply`: whether the principal standby has replayed
/// up to `lsn`. Outside PEER it does not hold a commit, as no sync mode does.
pub fn remote_applied(principal: Option<&Pair>, lsn: u64) -> bool {
    match principal {
        None => true,
        Some(p) => p.state != PairState::Peer || p.replayed >= lsn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::{Event, PairConfig, SyncMode};

    fn peer(mode: SyncMode) -> Pair {
        let cfg = PairConfig {
            mode,
            timeout_us: 3_000_000,
            peer_window_us: 0,
            peer_wait_limit_us: 0,
        };
        let mut p = Pair::new(cfg, 0);
        p.step(Event::Connected { now: 0, start: 0 });
        p.step(Event::Sent { lsn: 100 });
        p.step(Event::CaughtUp { now: 1, end: 100 });
        p
    }

    #[test]
    fn every_standby_must_release_and_remote_apply_follows_the_principal() {
        let mut a = peer(SyncMode::Sync);
        let b = Pair::new(
            PairConfig {
                mode: SyncMode::Superasync,
                timeout_us: 1,
                peer_window_us: 0,
                peer_wait_limit_us: 0,
            },
            0,
        );
        assert!(!may_release([&a, &b].into_iter(), 100));
        a.step(Event::Ack {
            now: 2,
            received: 100,
            flushed: 100,
            replayed: 50,
        });
        assert!(may_release([&a, &b].into_iter(), 100));
        assert!(!remote_applied(Some(&a), 100));
        assert!(remote_applied(Some(&a), 50));
        assert!(remote_applied(Some(&b), 100));
        assert!(remote_applied(None, 100));
    }

    #[test]
    fn under_automatic_failover_a_lacking_standby_holds_commits_until_alone_is_allowed() {
        let cfg = PairConfig {
            mode: SyncMode::Nearsync,
            timeout_us: 1,
            peer_window_us: 0,
            peer_wait_limit_us: 0,
        };
        let pending = Pair::new(cfg, 0);
        assert!(may_release([&pending].into_iter(), 10));
        assert!(!may_release_guarded([&pending].into_iter(), 10, false));
        assert!(may_release_guarded([&pending].into_iter(), 10, true));
        // In PEER the sync mode decides, alone or not.
        let mut p = peer(SyncMode::Nearsync);
        assert!(!may_release_guarded([&p].into_iter(), 100, true));
        p.step(Event::Ack {
            now: 2,
            received: 100,
            flushed: 0,
            replayed: 0,
        });
        assert!(may_release_guarded([&p].into_iter(), 100, false));
        assert!(may_release_guarded(std::iter::empty(), 100, false));
    }
}
