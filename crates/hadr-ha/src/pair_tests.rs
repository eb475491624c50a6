use super::*;
use proptest::prelude::*;

const S: u64 = 1_000_000;

fn cfg(mode: SyncMode, window_s: u64) -> PairConfig {
    PairConfig {
        mode,
        timeout_us: 3 * S,
        peer_window_us: window_s * S,
        peer_wait_limit_us: 0,
    }
}

fn peer(mode: SyncMode, window_s: u64) -> Pair {
    let mut p = Pair::new(cfg(mode, window_s), 0);
    p.step(Event::Connected { now: 0, start: 0 });
    p.step(Event::Sent { lsn: 100 });
    p.step(Event::CaughtUp { now: 1, end: 100 });
    p
}

#[test]
fn catchup_then_peer_for_every_mode_but_superasync() {
    for mode in [SyncMode::Sync, SyncMode::Nearsync, SyncMode::Async] {
        assert_eq!(peer(mode, 0).state, PairState::Peer, "{mode:?}");
    }
    assert_eq!(
        peer(SyncMode::Superasync, 0).state,
        PairState::RemoteCatchup
    );
}

#[test]
fn a_standby_connecting_already_caught_up_enters_peer_without_new_writes() {
    let mut p = Pair::new(cfg(SyncMode::Nearsync, 0), 0);
    p.step(Event::Connected { now: 0, start: 500 });
    p.step(Event::CaughtUp { now: 1, end: 500 });
    assert_eq!(p.state, PairState::Peer);
}

#[test]
fn not_caught_up_until_everything_was_sent() {
    let mut p = Pair::new(cfg(SyncMode::Sync, 0), 0);
    p.step(Event::Connected { now: 0, start: 0 });
    p.step(Event::Sent { lsn: 50 });
    p.step(Event::CaughtUp { now: 1, end: 100 });
    assert_eq!(p.state, PairState::RemoteCatchup);
}

#[test]
fn gate_per_sync_mode() {
    // SYNC waits for flushed, NEARSYNC for received, ASYNC for sent.
    let mut p = peer(SyncMode::Sync, 0);
    p.step(Event::Sent { lsn: 200 });
    p.step(Event::Ack {
        now: 2,
        received: 200,
        flushed: 150,
        replayed: 0,
    });
    assert_eq!(p.commit_wait(200), CommitWait::Hold);
    assert_eq!(p.commit_wait(150), CommitWait::Release);
    let mut p = peer(SyncMode::Nearsync, 0);
    p.step(Event::Ack {
        now: 2,
        received: 200,
        flushed: 0,
        replayed: 0,
    });
    assert_eq!(p.commit_wait(200), CommitWait::Release);
    assert_eq!(p.commit_wait(201), CommitWait::Hold);
    let mut p = peer(SyncMode::Async, 0);
    assert_eq!(p.commit_wait(101), CommitWait::Hold);
    p.step(Event::Sent { lsn: 101 });
    assert_eq!(p.commit_wait(101), CommitWait::Release);
    // Outside PEER nothing waits.
    let p = Pair::new(cfg(SyncMode::Sync, 0), 0);
    assert_eq!(p.commit_wait(1_000), CommitWait::Release);
}

#[test]
fn silence_for_hadr_timeout_disconnects() {
    let mut p = peer(SyncMode::Sync, 0);
    let a = p.step(Event::Tick {
        now: 2 * S,
        oldest_commit_wait_since: None,
    });
    assert!(!a.iter().any(|x| matches!(x, Action::Disconnect { .. })));
    let a = p.step(Event::Tick {
        now: 3 * S + 2,
        oldest_commit_wait_since: None,
    });
    assert!(a.iter().any(|x| matches!(x, Action::Disconnect { .. })));
    assert_eq!(p.state, PairState::RemoteCatchupPending);
    assert_eq!(
        p.commit_wait(1_000),
        CommitWait::Release,
        "without a peer window commits go on unprotected"
    );
}

#[test]
fn peer_window_blocks_commits_until_it_ends_or_the_standby_returns() {
    let mut p = peer(SyncMode::Nearsync, 10);
    p.step(Event::Heard { now: 2 * S });
    p.step(Event::Tick {
        now: 2 * S,
        oldest_commit_wait_since: None,
    });
    p.step(Event::Lost {
        now: 2 * S + 5,
        clean: false,
    });
    assert_eq!(p.state, PairState::DisconnectedPeer);
    assert_eq!(p.commit_wait(1), CommitWait::Hold);
    p.step(Event::Tick {
        now: 5 * S,
        oldest_commit_wait_since: None,
    });
    assert_eq!(p.state, PairState::DisconnectedPeer);
    // The promise was made at the last heartbeat: heard at 2 s + 10 s window.
    p.step(Event::Tick {
        now: 12 * S,
        oldest_commit_wait_since: None,
    });
    assert_eq!(p.state, PairState::RemoteCatchupPending);
    assert_eq!(p.commit_wait(1), CommitWait::Release);
    // Reconnecting also ends the block.
    let mut p = peer(SyncMode::Sync, 10);
    p.step(Event::Lost {
        now: 2 * S,
        clean: false,
    });
    assert_eq!(p.state, PairState::DisconnectedPeer);
    p.step(Event::Connected {
        now: 3 * S,
        start: 0,
    });
    assert_eq!(p.state, PairState::RemoteCatchup);
    assert_eq!(p.commit_wait(1_000), CommitWait::Release);
}

#[test]
fn clean_standby_shutdown_and_async_modes_do_not_open_the_window() {
    let mut p = peer(SyncMode::Sync, 10);
    p.step(Event::Lost {
        now: 2 * S,
        clean: true,
    });
    assert_eq!(p.state, PairState::RemoteCatchupPending);
    let mut p = peer(SyncMode::Async, 10);
    p.step(Event::Lost {
        now: 2 * S,
        clean: false,
    });
    assert_eq!(p.state, PairState::RemoteCatchupPending);
}

#[test]
fn peer_wait_limit_detaches_a_slow_standby() {
    let mut p = Pair::new(
        PairConfig {
            peer_wait_limit_us: S,
            ..cfg(SyncMode::Sync, 0)
        },
        0,
    );
    p.step(Event::Connected { now: 0, start: 0 });
    p.step(Event::Sent { lsn: 10 });
    p.step(Event::CaughtUp { now: 0, end: 10 });
    p.step(Event::Heard { now: S });
    let a = p.step(Event::Tick {
        now: S,
        oldest_commit_wait_since: Some(S / 2),
    });
    assert!(a.is_empty() || !a.iter().any(|x| matches!(x, Action::Disconnect { .. })));
    p.step(Event::Heard { now: 2 * S });
    let a = p.step(Event::Tick {
        now: 2 * S,
        oldest_commit_wait_since: Some(S / 2),
    });
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::Disconnect {
                reason: DisconnectReason::PeerWaitLimit { .. }
            }
        )),
        "{a:?}"
    );
    assert_eq!(p.commit_wait(1_000), CommitWait::Release);
}

#[test]
fn heartbeat_interval_follows_db2() {
    assert_eq!(cfg(SyncMode::Sync, 0).heartbeat_us(), 750_000);
    assert_eq!(
        PairConfig {
            timeout_us: 100 * S,
            ..cfg(SyncMode::Sync, 0)
        }
        .heartbeat_us(),
        25 * S
    );
    assert_eq!(
        PairConfig {
            timeout_us: 100 * S,
            peer_window_us: 8 * S,
            ..cfg(SyncMode::Sync, 0)
        }
        .heartbeat_us(),
        2 * S
    );
    // The window does not apply to ASYNC.
    assert_eq!(
        PairConfig {
            timeout_us: 100 * S,
            peer_window_us: 8 * S,
            ..cfg(SyncMode::Async, 0)
        }
        .heartbeat_us(),
        25 * S
    );
}

fn arb_event() -> impl Strategy<Value = (u8, u64, u64)> {
    (0u8..7, 0u64..20_000_000, 0u64..1_000)
}

proptest! {
    /// Positions never go backwards, time-outs always end in a non-blocking state
    /// once the window has passed, and SUPERASYNC never gates or reaches PEER.
    #[test]
    fn invariants_hold_for_any_event_sequence(mode in 0u8..4, window in 0u64..20, evs in proptest::collection::vec(arb_event(), 1..60)) {
        let mode = [SyncMode::Sync, SyncMode::Nearsync, SyncMode::Async, SyncMode::Superasync][mode as usize];
        let mut p = Pair::new(cfg(mode, window), 0);
        let mut now = 0u64;
        for (kind, dt, lsn) in evs {
            now += dt;
            let before = (p.received, p.flushed, p.replayed);
            let ev = match kind {
                0 => Event::Connected { now, start: 0 },
                1 => Event::Heard { now },
                2 => Event::Ack { now, received: lsn, flushed: lsn / 2, replayed: lsn / 3 },
                3 => Event::Sent { lsn },
                4 => Event::CaughtUp { now, end: lsn },
                5 => Event::Lost { now, clean: lsn % 2 == 0 },
                _ => Event::Tick { now, oldest_commit_wait_since: None },
            };
            p.step(ev);
            prop_assert!(p.received >= before.0 && p.flushed >= before.1 && p.replayed >= before.2);
            if mode == SyncMode::Superasync {
                prop_assert_ne!(p.state, PairState::Peer);
                prop_assert_eq!(p.commit_wait(u64::MAX), CommitWait::Release);
            }
            if p.state == PairState::DisconnectedPeer {
                prop_assert!(window > 0 && matches!(mode, SyncMode::Sync | SyncMode::Nearsync));
            }
        }
        // Long after everything, a tick never leaves commits blocked by a dead link.
        p.step(Event::Tick { now: now + 100 * S, oldest_commit_wait_since: None });
        p.step(Event::Tick { now: now + 200 * S, oldest_commit_wait_since: None });
        prop_assert_eq!(p.commit_wait(u64::MAX), CommitWait::Release);
    }
}

/// Heartbeats promise a peer window only in PEER: after a reconnection the
/// pair is in REMOTE_CATCHUP, where losing the standby opens no window, so an
/// old promise must not reach the standby (it would allow a
/// --peer-window-only takeover that could lose commits).
#[test]
fn heartbeats_outside_peer_promise_no_window() {
    let s = 1_000_000;
    let mut p = Pair::new(cfg(SyncMode::Sync, 10), 0);
    p.step(Event::Connected { now: 0, start: 0 });
    p.step(Event::CaughtUp { now: 0, end: 0 });
    assert_eq!(p.state, PairState::Peer);
    let hb = |acts: Vec<Action>| {
        acts.into_iter().find_map(|a| match a {
            Action::Heartbeat { peer_window_end } => Some(peer_window_end),
            _ => None,
        })
    };
    p.step(Event::Heard { now: s });
    assert!(hb(p.step(Event::Tick {
        now: s,
        oldest_commit_wait_since: None
    }))
    .is_some_and(|e| e > s));
    p.step(Event::Lost {
        now: 2 * s,
        clean: false,
    });
    assert_eq!(p.state, PairState::DisconnectedPeer);
    p.step(Event::Connected {
        now: 3 * s,
        start: 0,
    });
    p.step(Event::Sent { lsn: 0 });
    assert_eq!(p.state, PairState::RemoteCatchup);
    p.step(Event::Heard { now: 4 * s });
    assert_eq!(
        hb(p.step(Event::Tick {
            now: 4 * s,
            oldest_commit_wait_since: None
        })),
        Some(0)
    );
}
