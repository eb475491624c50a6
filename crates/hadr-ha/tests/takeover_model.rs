//! Model check of takeover, fencing and rejoin with `stateright`.
//!
//! Two nodes, a link that can be cut and healed, crashes (kill -9: the log
//! survives, volatile state does not), a bounded clock, client writes, log
//! shipping, graceful takeover, forced takeover (plain and
//! `--peer-window-only`), probes, and rejoin with rewind. Every decision the
//! server makes is taken by the same pure code it runs:
//! [`Pair`] (DB2 pair states, the commit gate, heartbeats and peer window),
//! [`WriteGuard`] (start-up rule and fencing), [`may_force`] /
//! [`standby_state`] (forced takeover), [`rejoin`] (follow, adopt or rewind)
//! and [`next_epoch`]. What is abstracted: page contents (a record is an
//! (epoch, write id) pair), byte LSNs (an LSN is a record count), the
//! replication stream (a whole record ships atomically with its ack), and
//! clock skew (one clock; the 5 s margin exists for skew).
//!
//! Checked: (1) no two nodes ever write in the same epoch; (2) a
//! `--peer-window-only` takeover loses no acknowledged commit; (3) a standby
//! connected to a primary holds a prefix of the primary's log (a rejoined
//! node is never silently diverged). Two broken variants show the checker
//! finds what these properties exist to catch.

use std::collections::BTreeSet;

use hadr_ha::epoch::next_epoch;
use hadr_ha::pair::{Action, CommitWait, Event, Pair, PairConfig, PairState, SyncMode};
use hadr_ha::rejoin::{rejoin, Rejoin};
use hadr_ha::standby_link::standby_state;
use hadr_ha::takeover::may_force;
use hadr_ha::{GuardAction, GuardEvent, WriteGuard};
use hadr_log::EpochStart as EpochEntry;
use hadr_protocol::PeerRole;
use stateright::{Checker, HasDiscoveries, Model, Property};

/// One model time unit, in the µs the pure code works in.
const UNIT: u64 = 1_000_000;

/// A log record: (epoch, client write id).
type Rec = (u64, u8);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    up: bool,
    /// Durable (control file and log).
    primary: bool,
    epoch: u64,
    history: Vec<EpochEntry>,
    highest_seen: u64,
    log: Vec<Rec>,
    /// Volatile.
    guard: WriteGuard,
    /// The primary's view of the other node.
    pair: Option<Pair>,
    /// The standby's side of the replication connection.
    connected: bool,
    /// The standby's last known peer-window end and primary log end.
    known_window_end: u64,
    primary_end: u64,
    /// Commits waiting for the standby: (write id, LSN after the record).
    pending: Vec<(u8, usize)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    nodes: [Node; 2],
    now: u64,
    link_up: bool,
    next_write: u8,
    takeovers: u8,
    crashes: u8,
    cuts: u8,
    /// Client writes acknowledged so far.
    acked: BTreeSet<u8>,
    /// Every (epoch, node) that appended a client write.
    writers: BTreeSet<(u64, usize)>,
    /// A peer-window-only takeover found an acknowledged write missing.
    lost_on_window_only: bool,
    graceful_done: bool,
    window_only_done: bool,
    rewound: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Act {
    Write(usize),
    Connect(usize),
    Ship(usize),
    PrimaryNoticesLoss(usize),
    StandbyNoticesLoss(usize),
    Tick,
    Cut,
    Heal,
    Crash(usize),
    Restart(usize),
    Probe(usize),
    Graceful(usize),
    Force { node: usize, window_only: bool },
}

/// Deliberate mistakes, to show the checker catches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// Promotion keeps the old epoch number.
    NoEpochBump,
    /// The standby believes a peer-window end the primary sent outside PEER
    /// (heartbeats carry the raw promise; reconnecting keeps the old one).
    StaleWindow,
    /// A restarted primary starts writing when a standby merely answers a
    /// probe, instead of when one connects.
    ProbeOpensWrites,
}

struct HadrModel {
    bug: Option<Bug>,
    max_writes: u8,
    max_takeovers: u8,
    max_crashes: u8,
    max_time: u64,
}

fn pair_config() -> PairConfig {
    PairConfig {
        mode: SyncMode::Sync,
        timeout_us: 2 * UNIT,
        peer_window_us: 7 * UNIT,
        peer_wait_limit_us: 0,
    }
}

fn other(i: usize) -> usize {
    1 - i
}

fn is_prefix(a: &[Rec], b: &[Rec]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

impl HadrModel {
    fn apply_guard(st: &mut State, i: usize, actions: Vec<GuardAction>) {
        for a in actions {
            if let GuardAction::Fence { by_epoch, .. } = a {
                // Stop writes, fail waiting commits, record the standby role
                // and the newer epoch, restart as a standby.
                let n = &mut st.nodes[i];
                n.primary = false;
                n.highest_seen = n.highest_seen.max(by_epoch);
                n.pending.clear();
                n.pair = None;
                n.connected = false;
                n.guard = WriteGuard::start(n.epoch, false, false, false);
                n.known_window_end = 0;
                if st.link_up {
                    // It restarts: a standby connected to it sees the reset.
                    st.nodes[other(i)].connected = false;
                }
            }
        }
    }

    /// A primary hears of its peer (probe answer or handshake).
    fn hear(st: &mut State, i: usize, role: PeerRole, epoch: u64) {
        let actions = st.nodes[i].guard.step(GuardEvent::PeerSeen {
            role,
            epoch,
            address: String::new(),
        });
        Self::apply_guard(st, i, actions);
    }

    fn promote(&self, st: &mut State, s: usize) {
        let n = &mut st.nodes[s];
        let epoch = if self.bug == Some(Bug::NoEpochBump) {
            n.epoch
        } else {
            next_epoch(n.epoch, n.highest_seen)
        };
        n.epoch = epoch;
        n.highest_seen = n.highest_seen.max(epoch);
        n.history.push(EpochEntry {
            epoch,
            start_lsn: n.log.len() as u64,
        });
        n.primary = true;
        n.connected = false;
        n.known_window_end = 0;
        n.guard = WriteGuard::start(epoch, true, false, false);
        n.pair = Some(Pair::new(pair_config(), st.now * UNIT));
        n.pending.clear();
        st.takeovers += 1;
    }

    /// The primary's connection to its standby breaks.
    fn primary_loses(st: &mut State, p: usize) {
        let now = st.now * UNIT;
        if let Some(pair) = st.nodes[p].pair.as_mut() {
            pair.step(Event::Lost { now, clean: false });
        }
    }

    fn connection_live(st: &State, p: usize) -> bool {
        let (pn, sn) = (&st.nodes[p], &st.nodes[other(p)]);
        pn.up
            && sn.up
            && st.link_up
            && pn.primary
            && !sn.primary
            && sn.connected
            && pn
                .pair
                .as_ref()
                .is_some_and(|x| matches!(x.state, PairState::RemoteCatchup | PairState::Peer))
    }
}

impl Model for HadrModel {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        let history = vec![EpochEntry {
            epoch: 1,
            start_lsn: 0,
        }];
        let node = |primary: bool| Node {
            up: true,
            primary,
            epoch: 1,
            history: history.clone(),
            highest_seen: 1,
            log: vec![],
            guard: WriteGuard::start(1, primary, false, false),
            pair: primary.then(|| Pair::new(pair_config(), 0)),
            connected: false,
            known_window_end: 0,
            primary_end: 0,
            pending: vec![],
        };
        vec![State {
            nodes: [node(true), node(false)],
            now: 0,
            link_up: true,
            next_write: 0,
            takeovers: 0,
            crashes: 0,
            cuts: 0,
            acked: BTreeSet::new(),
            writers: BTreeSet::new(),
            lost_on_window_only: false,
            graceful_done: false,
            window_only_done: false,
            rewound: false,
        }]
    }

    fn actions(&self, st: &State, out: &mut Vec<Act>) {
        for i in 0..2 {
            let n = &st.nodes[i];
            let o = &st.nodes[other(i)];
            if !n.up {
                out.push(Act::Restart(i));
                continue;
            }
            if st.crashes < self.max_crashes {
                out.push(Act::Crash(i));
            }
            if n.primary {
                if n.guard.writable() && st.next_write < self.max_writes {
                    out.push(Act::Write(i));
                }
                // Probes go to peers not connected as standbys.
                if o.up && st.link_up && !Self::connection_live(st, i) {
                    out.push(Act::Probe(i));
                }
                if Self::connection_live(st, i) && o.log.len() < n.log.len() {
                    out.push(Act::Ship(i));
                }
                if n.pair
                    .as_ref()
                    .is_some_and(|x| matches!(x.state, PairState::RemoteCatchup | PairState::Peer))
                {
                    out.push(Act::PrimaryNoticesLoss(i));
                }
            } else {
                if !n.connected && o.up && o.primary && st.link_up {
                    out.push(Act::Connect(i));
                }
                if n.connected {
                    out.push(Act::StandbyNoticesLoss(i));
                    if st.takeovers < self.max_takeovers
                        && Self::connection_live(st, other(i))
                        && o.pair.as_ref().is_some_and(|x| x.state == PairState::Peer)
                    {
                        out.push(Act::Graceful(i));
                    }
                }
                if st.takeovers < self.max_takeovers {
                    out.push(Act::Force {
                        node: i,
                        window_only: true,
                    });
                    out.push(Act::Force {
                        node: i,
                        window_only: false,
                    });
                }
            }
        }
        if st.now < self.max_time {
            out.push(Act::Tick);
        }
        if st.link_up && st.cuts < 1 {
            out.push(Act::Cut);
        }
        if !st.link_up {
            out.push(Act::Heal);
        }
    }

    fn next_state(&self, last: &State, act: Act) -> Option<State> {
        let mut st = last.clone();
        let now = st.now * UNIT;
        match act {
            Act::Write(p) => {
                let id = st.next_write;
                st.next_write += 1;
                let n = &mut st.nodes[p];
                n.log.push((n.epoch, id));
                let lsn = n.log.len();
                n.pending.push((id, lsn));
                st.writers.insert((st.nodes[p].epoch, p));
            }
            Act::Connect(s) => {
                let p = other(s);
                let (ps, ss) = (st.nodes[p].clone(), st.nodes[s].clone());
                // The primary's handshake check: a newer epoch fences it; a
                // restarted primary may write from now on.
                let actions = st.nodes[p].guard.step(GuardEvent::StandbyConnected {
                    epoch: ss.epoch,
                    address: String::new(),
                });
                Self::apply_guard(&mut st, p, actions);
                if !st.nodes[p].primary {
                    return Some(st);
                }
                let plan = rejoin(
                    ss.epoch,
                    &ss.history,
                    ss.log.len() as u64,
                    ps.epoch,
                    &ps.history,
                );
                let n = &mut st.nodes[s];
                match plan {
                    Rejoin::Superseded => return Some(st),
                    Rejoin::Rewind { divergence } => {
                        // Drop our records from D on, then take the new
                        // primary's records from D on (page images make the
                        // database match; the log is what this model tracks).
                        let d = (divergence as usize).min(ps.log.len());
                        n.log.truncate(d);
                        n.log.extend_from_slice(&ps.log[n.log.len()..]);
                        st.rewound = true;
                    }
                    Rejoin::Follow | Rejoin::Adopt => {}
                }
                let n = &mut st.nodes[s];
                // The primary refuses a standby whose log is longer than its own.
                if n.log.len() > ps.log.len() {
                    return Some(st);
                }
                n.epoch = ps.epoch;
                n.history = ps.history.clone();
                n.highest_seen = n.highest_seen.max(ps.epoch);
                n.connected = true;
                n.primary_end = ps.log.len() as u64;
                if self.bug != Some(Bug::StaleWindow) {
                    n.known_window_end = 0;
                }
                let start = n.log.len() as u64;
                let pair = st.nodes[p].pair.as_mut()?;
                pair.step(Event::Connected { now, start });
                pair.step(Event::CaughtUp {
                    now,
                    end: ps.log.len() as u64,
                });
            }
            Act::Ship(p) => {
                let s = other(p);
                if !is_prefix(&st.nodes[s].log, &st.nodes[p].log) {
                    return None;
                }
                let next = st.nodes[p].log[st.nodes[s].log.len()];
                st.nodes[s].log.push(next);
                let (len, end) = (st.nodes[s].log.len() as u64, st.nodes[p].log.len() as u64);
                st.nodes[s].primary_end = end;
                let pair = st.nodes[p].pair.as_mut()?;
                pair.step(Event::Sent { lsn: len });
                pair.step(Event::Ack {
                    now,
                    received: len,
                    flushed: len,
                    replayed: len,
                });
                pair.step(Event::CaughtUp { now, end });
            }
            Act::PrimaryNoticesLoss(p) => Self::primary_loses(&mut st, p),
            Act::StandbyNoticesLoss(s) => st.nodes[s].connected = false,
            Act::Tick => {
                st.now += 1;
                let now = st.now * UNIT;
                for p in 0..2 {
                    if !st.nodes[p].up {
                        continue;
                    }
                    let live = Self::connection_live(&st, p);
                    let link = st.link_up;
                    let end = st.nodes[p].log.len() as u64;
                    let Some(pair) = st.nodes[p].pair.as_mut() else {
                        continue;
                    };
                    if live {
                        // The standby's acks and heartbeats arrive.
                        pair.step(Event::Heard { now });
                    }
                    let acts = pair.step(Event::Tick {
                        now,
                        oldest_commit_wait_since: None,
                    });
                    let raw = pair.peer_window_end;
                    for a in acts {
                        match a {
                            Action::Heartbeat { peer_window_end } if live => {
                                let s = &mut st.nodes[other(p)];
                                s.known_window_end = if self.bug == Some(Bug::StaleWindow) {
                                    raw
                                } else {
                                    peer_window_end
                                };
                                s.primary_end = end;
                            }
                            // The standby sees the connection close.
                            Action::Disconnect { .. } if link => {
                                st.nodes[other(p)].connected = false
                            }
                            _ => {}
                        }
                    }
                }
            }
            Act::Cut => {
                st.link_up = false;
                st.cuts += 1;
            }
            Act::Heal => st.link_up = true,
            Act::Crash(i) => {
                st.crashes += 1;
                let n = &mut st.nodes[i];
                n.up = false;
                n.pair = None;
                n.connected = false;
                n.pending.clear();
                n.known_window_end = 0;
                if st.link_up {
                    // A dead process's sockets are reset; a dead host (cut link) says nothing.
                    st.nodes[other(i)].connected = false;
                    Self::primary_loses(&mut st, other(i));
                }
            }
            Act::Restart(i) => {
                let now = st.now * UNIT;
                let n = &mut st.nodes[i];
                n.up = true;
                n.guard = WriteGuard::start(n.epoch, n.primary, n.primary, false);
                n.pair = n.primary.then(|| Pair::new(pair_config(), now));
            }
            Act::Probe(p) => {
                let o = other(p);
                let (their_role, their_epoch) = (
                    if st.nodes[o].primary {
                        PeerRole::Primary
                    } else {
                        PeerRole::Standby
                    },
                    st.nodes[o].epoch,
                );
                let our_epoch = st.nodes[p].epoch;
                // A primary answering learns our epoch; we learn its.
                if st.nodes[o].primary {
                    Self::hear(&mut st, o, PeerRole::Primary, our_epoch);
                }
                if st.nodes[p].primary {
                    if self.bug == Some(Bug::ProbeOpensWrites) && their_role == PeerRole::Standby {
                        let actions = st.nodes[p].guard.step(GuardEvent::StandbyConnected {
                            epoch: their_epoch,
                            address: String::new(),
                        });
                        Self::apply_guard(&mut st, p, actions);
                    } else {
                        Self::hear(&mut st, p, their_role, their_epoch);
                    }
                }
            }
            Act::Graceful(s) => {
                let p = other(s);
                // The primary stops writes and ships everything; the standby has
                // it on disk before the primary records its standby role.
                let log = st.nodes[p].log.clone();
                st.nodes[s].log = log;
                let acked: Vec<u8> = st.nodes[p].pending.iter().map(|(id, _)| *id).collect();
                st.acked.extend(acked);
                let n = &mut st.nodes[p];
                n.primary = false;
                n.highest_seen = n.highest_seen.max(n.epoch + 1);
                n.pending.clear();
                n.pair = None;
                n.connected = false;
                n.guard = WriteGuard::start(n.epoch, false, false, false);
                self.promote(&mut st, s);
                st.graceful_done = true;
            }
            Act::Force {
                node: s,
                window_only,
            } => {
                let n = &st.nodes[s];
                let caught_up = n.log.len() as u64 >= n.primary_end;
                let state = standby_state(n.connected, caught_up, n.known_window_end, now);
                if may_force(state, n.known_window_end, now, window_only).is_err() {
                    return None;
                }
                if window_only {
                    // What the old primary acknowledged and still holds (an
                    // earlier plain --force may have dropped others, by design)
                    // must all be here.
                    let ours: BTreeSet<u8> = n.log.iter().map(|r| r.1).collect();
                    let old = &st.nodes[other(s)];
                    if old
                        .log
                        .iter()
                        .any(|r| st.acked.contains(&r.1) && !ours.contains(&r.1))
                    {
                        st.lost_on_window_only = true;
                    }
                    st.window_only_done = true;
                }
                let was_connected = n.connected;
                self.promote(&mut st, s);
                if was_connected && st.link_up {
                    // The standby's process restarts: its old primary sees the reset.
                    Self::primary_loses(&mut st, other(s));
                }
            }
        }
        // Commits return as soon as the gate allows: the earliest
        // acknowledgement is the hardest case for the properties.
        for n in st.nodes.iter_mut() {
            let Some(pair) = n.pair.as_ref() else {
                continue;
            };
            let (done, waiting): (Vec<_>, Vec<_>) = n
                .pending
                .iter()
                .partition(|(_, lsn)| pair.commit_wait(*lsn as u64) == CommitWait::Release);
            n.pending = waiting;
            st.acked.extend(done.iter().map(|(id, _)| *id));
        }
        Some(st)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never two writers in one epoch", |_, st: &State| {
                let same_epoch_writers = st
                    .writers
                    .iter()
                    .any(|(e, n)| st.writers.contains(&(*e, other(*n))));
                let both_writable = st.nodes.iter().all(|n| n.up && n.guard.writable())
                    && st.nodes[0].epoch == st.nodes[1].epoch;
                !same_epoch_writers && !both_writable
            }),
            Property::always(
                "a peer-window-only takeover loses no acknowledged commit",
                |_, st: &State| !st.lost_on_window_only,
            ),
            Property::always(
                "a connected standby holds a prefix of its primary's log",
                |_, st: &State| {
                    (0..2).all(|p| {
                        !Self::connection_live(st, p)
                            || is_prefix(&st.nodes[other(p)].log, &st.nodes[p].log)
                    })
                },
            ),
            Property::sometimes("graceful takeover", |_, st: &State| st.graceful_done),
            Property::sometimes(
                "peer-window-only takeover after acknowledged writes",
                |_, st: &State| st.window_only_done && !st.acked.is_empty(),
            ),
            Property::sometimes("an old primary rewinds", |_, st: &State| st.rewound),
        ]
    }

    fn within_boundary(&self, st: &State) -> bool {
        st.nodes
            .iter()
            .all(|n| n.log.len() <= self.max_writes as usize)
    }
}

fn model(bug: Option<Bug>) -> HadrModel {
    HadrModel {
        bug,
        max_writes: 2,
        max_takeovers: 2,
        max_crashes: 1,
        max_time: 6,
    }
}

#[test]
fn takeover_fencing_and_rejoin_keep_their_promises() {
    let checker = model(None).checker().spawn_bfs().join();
    eprintln!(
        "states: {} unique of {} generated",
        checker.unique_state_count(),
        checker.state_count()
    );
    if let Some(p) = checker.discovery("a peer-window-only takeover loses no acknowledged commit") {
        for (st, a) in p.clone().into_vec() {
            eprintln!("now={} acked={:?} A(up={} prim={} ep={} log={:?} pend={:?} pair={:?}) B(up={} prim={} ep={} log={:?} conn={} known={} pend={:?} pair={:?}) -> {a:?}",
                st.now, st.acked,
                st.nodes[0].up, st.nodes[0].primary, st.nodes[0].epoch, st.nodes[0].log, st.nodes[0].pending, st.nodes[0].pair.as_ref().map(|x| (x.state, x.peer_window_end, x.flushed)),
                st.nodes[1].up, st.nodes[1].primary, st.nodes[1].epoch, st.nodes[1].log, st.nodes[1].connected, st.nodes[1].known_window_end, st.nodes[1].pending, st.nodes[1].pair.as_ref().map(|x| (x.state, x.peer_window_end, x.flushed)));
        }
    }
    checker.assert_properties();
}

/// Check a broken variant until its first counterexample to `property`.
fn counterexample(bug: Bug, property: &'static str) -> Option<Vec<Act>> {
    let checker = model(Some(bug))
        .checker()
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let found = checker.discovery(property).map(|p| p.into_actions());
    eprintln!("{bug:?}: {found:?}");
    found
}

#[test]
fn the_checker_finds_two_writers_when_promotion_keeps_the_epoch() {
    assert!(
        counterexample(Bug::NoEpochBump, "never two writers in one epoch").is_some(),
        "a promotion without a new epoch must be caught"
    );
}

#[test]
fn the_checker_finds_lost_commits_when_a_stale_window_is_believed() {
    assert!(
        counterexample(
            Bug::StaleWindow,
            "a peer-window-only takeover loses no acknowledged commit"
        )
        .is_some(),
        "a peer-window promise outside PEER must be caught"
    );
}

#[test]
fn the_checker_finds_lost_commits_when_a_probe_ends_the_start_up_wait() {
    assert!(
        counterexample(
            Bug::ProbeOpensWrites,
            "a peer-window-only takeover loses no acknowledged commit"
        )
        .is_some(),
        "a restarted primary writing before its standby reconnects must be caught"
    );
}
