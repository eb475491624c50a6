//! Model check (stateright) of hadr's takeover, fencing and rejoin protocol,
//! with explicit messages.
//!
//! Two nodes, A and B, exchange messages over replication connections and
//! probes; the checker explores every interleaving of client writes,
//! message deliveries, connection cuts, crashes (kill -9), restarts, clock
//! ticks, graceful takeovers and forced takeovers (plain `--force` and
//! `--peer-window-only`) within small bounds. Every decision a node takes is
//! taken by the server's own pure code:
//!
//! - [`Pair`] (the primary's view of its standby: DB2's pair states, the
//!   peer window, heartbeats, the `hadr_timeout` disconnect, and the SYNC
//!   commit gate [`Pair::gate`]);
//! - [`WriteGuard`] (the start-up rule of a restarted primary, and fencing by
//!   a newer epoch);
//! - [`standby_state`] and [`may_force`] (whether a forced takeover is
//!   allowed, with [`PEER_WINDOW_MARGIN_US`]);
//! - [`rejoin`] (follow, adopt, rewind or refuse a primary) and
//!   [`next_epoch`] (the epoch a promotion takes).
//!
//! The model adds only the glue the drivers (`primary.rs`, `standby.rs`,
//! the node) add: who sends which message when, and what a node does with
//! an answer.
//!
//! Checked: (1) no two nodes write in one epoch; (2) a `--peer-window-only`
//! takeover has every write it promised; (3) a following standby's log is a
//! prefix of its primary's. Negative controls: three broken variants, each
//! of which the checker must catch.
//!
//! Messages: a replication connection is a TCP stream, so it is two FIFO
//! queues, and losing a message on it is losing the connection (a cut), not
//! a gap in the stream. A probe is a short connection of its own, taken as
//! one step: the peer gets the prober's hello (or not), and the answer gets
//! back (or is lost). A late probe answer could only fence a node later, or
//! fence one that a fresh answer would also fence.
//!
//! Abstracted away: page contents and byte LSNs (a record is an
//! `(epoch, write id)` pair and an LSN is a record count); fsync (a record in
//! a log is durable: kill -9 ends a process, the OS keeps its written bytes,
//! so received = flushed on a standby); clock skew (one global clock, see
//! [`HadrModel::bug`]); the `--force` start of a primary and its first probe
//! round; more than one standby; SYNC only; the old connection task that a
//! primary still runs when its standby reconnects.

use std::collections::BTreeSet;

use hadr_ha::epoch::next_epoch;
use hadr_ha::pair::{Action, CommitWait, Event, Pair, PairConfig, PairState, SyncMode};
use hadr_ha::rejoin::{rejoin, Rejoin};
use hadr_ha::standby_link::standby_state;
use hadr_ha::takeover::{may_force, PEER_WINDOW_MARGIN_US};
use hadr_ha::{GuardAction, GuardEvent, WriteGuard, Writes};
use hadr_log::EpochStart as EpochEntry;
use hadr_protocol::PeerRole;
use stateright::{Checker, HasDiscoveries, Model, Property};

/// One model time unit in the µs the pure code works in: 1 unit = 2.5 s,
/// so that the 5 s margin is 2 units and few ticks reach a window's end.
const UNIT: u64 = 2_500_000;
/// `hadr_timeout`, in units (2.5 s).
const TIMEOUT: u64 = 1;
/// `hadr_peer_window`, in units (10 s).
const PEER_WINDOW: u64 = 4;

// The scale only makes sense if the margin is a whole number of units that
// leaves part of the window usable: 2 of 4 units.
const _: () = assert!(PEER_WINDOW_MARGIN_US.is_multiple_of(UNIT));
const _: () = assert!(PEER_WINDOW_MARGIN_US < PEER_WINDOW * UNIT);

/// A log record: (epoch it was written in, client write id).
type Rec = (u64, u8);

/// Node names, for the guard's messages and for counterexamples.
const NAMES: [&str; 2] = ["A", "B"];

fn other(i: usize) -> usize {
    1 - i
}

fn is_prefix(a: &[Rec], b: &[Rec]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

fn pair_config() -> PairConfig {
    PairConfig {
        mode: SyncMode::Sync,
        timeout_us: TIMEOUT * UNIT,
        peer_window_us: PEER_WINDOW * UNIT,
        peer_wait_limit_us: 0,
    }
}

/// Erase what a [`Pair`] holds but will overwrite before it reads it again:
/// states that differ only there behave alike, and the checker need not
/// tell them apart.
fn forget_unread(pair: &mut Pair) {
    // Status only.
    pair.status_since = 0;
    pair.heartbeats_missed = 0;
    // Every tick is longer than the heartbeat interval: a heartbeat is due at each.
    pair.last_heartbeat = 0;
    if !matches!(pair.state, PairState::RemoteCatchup | PairState::Peer) {
        // Reset by the next `Connected`.
        pair.sent = 0;
        pair.last_heard = 0;
    }
    if matches!(
        pair.state,
        PairState::RemoteCatchupPending | PairState::RemoteCatchup
    ) {
        // Set afresh by `CaughtUp` before PEER reads it again.
        pair.peer_window_end = 0;
    }
}

/// A standby's side of its replication connection (volatile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Link {
    /// Not connected.
    Idle,
    /// Hello sent, the primary's answer not yet received.
    Connecting,
    /// Following a primary (CONNECTED in the standby's status).
    Following,
}

/// One node. The control file (role, epoch, history, highest epoch seen)
/// and the log survive a crash; everything marked volatile does not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    /// The process runs (false: Down).
    up: bool,
    /// Durable role: primary, or standby.
    primary: bool,
    /// Durable epoch.
    epoch: u64,
    /// Durable epoch history.
    history: Vec<EpochEntry>,
    /// Durable highest epoch this node has heard of.
    highest_seen: u64,
    /// Durable log; LSN = index.
    log: Vec<Rec>,
    /// Volatile: write permission.
    guard: WriteGuard,
    /// Volatile: on a primary, its view of the other node.
    pair: Option<Pair>,
    /// Volatile: commits waiting for the gate, as (write id, LSN after the record).
    pending: Vec<(u8, u64)>,
    /// Volatile: a graceful takeover stopped writes here.
    handing_over: bool,
    /// Volatile: on a standby, its replication connection.
    link: Link,
    /// Volatile: on a standby, the last peer-window end (µs) its primary promised.
    known_window_end: u64,
    /// Volatile: on a standby, the primary's log end as last heard.
    primary_end: u64,
    /// Volatile: on a standby, a graceful takeover was asked for on this connection.
    takeover_requested: bool,
}

impl Node {
    fn new(primary: bool) -> Node {
        Node {
            up: true,
            primary,
            epoch: 1,
            history: vec![EpochEntry {
                epoch: 1,
                start_lsn: 0,
            }],
            highest_seen: 1,
            log: vec![],
            // A fresh primary does not wait for its standby.
            guard: WriteGuard::start(1, primary, false, false),
            pair: primary.then(|| Pair::new(pair_config(), 0)),
            pending: vec![],
            handing_over: false,
            link: Link::Idle,
            known_window_end: 0,
            primary_end: 0,
            takeover_requested: false,
        }
    }

    fn end(&self) -> u64 {
        self.log.len() as u64
    }

    fn hello(&self) -> Hello {
        Hello {
            role: if self.primary {
                PeerRole::Primary
            } else {
                PeerRole::Standby
            },
            epoch: self.epoch,
            history: self.history.clone(),
            end: self.end(),
        }
    }

    /// Forget everything volatile, as a process that ends does; the node
    /// restarts (or stays down) in the role of its control file.
    fn reset_volatile(&mut self) {
        self.guard = WriteGuard::start(self.epoch, false, false, false);
        self.pair = None;
        self.pending.clear();
        self.handing_over = false;
        self.link = Link::Idle;
        self.known_window_end = 0;
        self.primary_end = 0;
        self.takeover_requested = false;
    }
}

/// The handshake (`hadr_protocol::Hello` without what the model does not need).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Hello {
    role: PeerRole,
    epoch: u64,
    history: Vec<EpochEntry>,
    /// Log end.
    end: u64,
}

/// A message on a replication connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Msg {
    /// Standby → primary, first: the standby's handshake.
    Hello(Hello),
    /// Primary → standby, first: the primary's handshake, and whether it
    /// lets the standby follow (a refusal still tells who the primary is,
    /// which is what a rewind asks it for).
    Reply { hello: Hello, accepted: bool },
    /// Primary → standby: the record at `lsn`.
    Records { lsn: u64, rec: Rec },
    /// Standby → primary: its log end (received = flushed = replayed).
    Ack { end: u64 },
    /// Primary → standby: its sender's position and the peer-window end (µs; 0 = none).
    Heartbeat { end: u64, window_end: u64 },
    /// Standby → primary: please hand over (graceful takeover).
    TakeoverRequest,
    /// Primary → standby: everything up to `end` is yours; promote.
    TakeoverReady { end: u64 },
}

/// A replication connection a standby opened to the other node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Conn {
    /// The primary accepted it and is streaming on it.
    accepted: bool,
    /// The primary closed its end; what it sent before may still arrive.
    closed_by_primary: bool,
    to_primary: Vec<Msg>,
    to_standby: Vec<Msg>,
}

/// Put a message on a stream. A heartbeat (ack) right behind another one
/// replaces it: it carries the same news, newer, and the queues stay short.
fn send(queue: &mut Vec<Msg>, msg: Msg) {
    if let Some(last) = queue.last_mut() {
        let same_kind = matches!(
            (&*last, &msg),
            (Msg::Heartbeat { .. }, Msg::Heartbeat { .. }) | (Msg::Ack { .. }, Msg::Ack { .. })
        );
        if same_kind {
            *last = msg;
            return;
        }
    }
    queue.push(msg);
}

/// A client write that was acknowledged. Not when: no property reads the
/// time, and keeping it tripled the states to explore.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Acked {
    id: u8,
    /// The epoch of the record, i.e. of the primary that acknowledged it.
    epoch: u64,
    /// The node that acknowledged it.
    node: usize,
    /// Its position in that node's log.
    lsn: u64,
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    nodes: [Node; 2],
    /// `conns[s]`: the replication connection node `s` opened as a standby.
    conns: [Option<Conn>; 2],
    /// Model time (units).
    now: u64,
    next_write: u8,
    takeovers: u8,
    crashes: u8,
    /// Every acknowledged client write.
    acked: BTreeSet<Acked>,
    /// Every (epoch, node) that appended a client write.
    writers: BTreeSet<(u64, usize)>,
    /// Write ids a `--peer-window-only` takeover did not have although it
    /// promised to (checked at the moment of the takeover).
    window_only_losses: Vec<u8>,
    // Witnesses for the `sometimes` properties.
    window_only_after_ack: bool,
    graceful_done: bool,
    rewound: bool,
    fenced: bool,
    window_expired: bool,
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Act {
    /// A client writes on this primary.
    Write(usize),
    /// This standby opens a replication connection (sends its hello).
    Connect(usize),
    /// The next message on `conns[s]` reaches the primary.
    DeliverToPrimary(usize),
    /// The next message on `conns[s]` reaches the standby `s`.
    DeliverToStandby(usize),
    /// This primary's sender puts the next record on the stream.
    Ship(usize),
    /// `conns[s]` breaks (partition, lost packets): the standby's side ends
    /// at once, the primary's when it times out or sees the reset.
    Cut(usize),
    /// This primary sees its standby's connection gone (reset).
    PrimaryNoticesLoss(usize),
    /// Primary `from` probes its peer: the peer gets its hello; with
    /// `answered`, the peer's answer gets back too.
    Probe {
        from: usize,
        answered: bool,
    },
    /// One unit of time passes: pairs tick (heartbeats, timeouts, windows
    /// running out) and hear the keep-alive of a standby that follows them.
    Tick,
    /// kill -9.
    Crash(usize),
    Restart(usize),
    /// `hadr takeover` on standby `s` (graceful).
    RequestTakeover(usize),
    /// The primary, writes stopped and its standby having everything, hands over.
    HandOver(usize),
    /// `hadr takeover --force [--peer-window-only]` on a standby.
    Force {
        node: usize,
        window_only: bool,
    },
}

/// Deliberately broken rules (negative controls): with one of these the
/// checker must find a counterexample, so the properties are not vacuous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// A promotion takes `epoch + 1` instead of [`next_epoch`]: a primary
    /// fenced by epoch 2, forced to take over again before it has followed
    /// anyone, promotes into epoch 2 beside the primary that fenced it.
    PromotionIgnoresHighestSeen,
    /// The standby drops its peer-window promise only when the primary's
    /// answer to its hello arrives (what `follow` in standby.rs did until
    /// this model found it), not before it sends the hello. The primary, in
    /// DISCONNECTED_PEER, goes to REMOTE_CATCHUP on the hello and releases
    /// commits the standby does not have; if the answer is late or lost, the
    /// standby still holds the old promise and a `--peer-window-only`
    /// takeover loses those commits.
    PromiseKeptUntilReply,
    /// Divergence is ignored: a `Rewind` plan is followed as an `Adopt`, on
    /// both sides.
    DivergenceIgnored,
}

/// The model. The bounds keep the state space small enough for a debug test.
struct HadrModel {
    /// A broken rule to check the checker with (`None`: hadr's rules).
    /// Ignoring [`PEER_WINDOW_MARGIN_US`] is not among them: with one clock
    /// the margin is not needed (it exists for clock skew between hosts,
    /// which this model does not have).
    bug: Option<Bug>,
    max_writes: u8,
    max_takeovers: u8,
    max_crashes: u8,
    max_time: u64,
}

impl HadrModel {
    fn rejoin(&self, ours: &Hello, theirs: &Hello) -> Rejoin {
        match rejoin(
            ours.epoch,
            &ours.history,
            ours.end,
            theirs.epoch,
            &theirs.history,
        ) {
            Rejoin::Rewind { .. } if self.bug == Some(Bug::DivergenceIgnored) => {
                if ours.epoch == theirs.epoch {
                    Rejoin::Follow
                } else {
                    Rejoin::Adopt
                }
            }
            plan => plan,
        }
    }

    /// Carry out a guard's decision on node `i`.
    fn apply_guard(st: &mut State, i: usize, actions: Vec<GuardAction>) {
        for a in actions {
            if let GuardAction::Fence { by_epoch, .. } = a {
                // Stop writes (waiting commits fail: the gate is closed),
                // record the standby role and the newer epoch durably,
                // restart as a standby (which closes every connection).
                let n = &mut st.nodes[i];
                n.primary = false;
                n.highest_seen = n.highest_seen.max(by_epoch);
                n.reset_volatile();
                st.conns = [None, None];
                st.fenced = true;
            }
        }
    }

    /// A primary `i` hears, by a probe, that its peer is a primary or not, of `epoch`.
    fn peer_seen(st: &mut State, i: usize, (primary, epoch): (bool, u64)) {
        let n = &mut st.nodes[i];
        if !n.up || !n.primary {
            // Only primaries act on probes (a standby just answers).
            return;
        }
        let actions = n.guard.step(GuardEvent::PeerSeen {
            role: if primary {
                PeerRole::Primary
            } else {
                PeerRole::Standby
            },
            epoch,
            address: NAMES[other(i)].to_string(),
        });
        Self::apply_guard(st, i, actions);
    }

    /// The standby `s` ends its connection.
    fn standby_closes(st: &mut State, s: usize) {
        st.conns[s] = None;
        let n = &mut st.nodes[s];
        n.link = Link::Idle;
        n.takeover_requested = false;
    }

    /// The primary ends its side of `conns[s]`; what it already sent may still arrive.
    fn primary_closes(st: &mut State, s: usize) {
        if let Some(c) = st.conns[s].as_mut() {
            c.accepted = false;
            c.closed_by_primary = true;
            c.to_primary.clear();
        }
    }

    /// Promote standby `s` (graceful or forced).
    fn promote(&self, st: &mut State, s: usize) {
        let now = st.now * UNIT;
        let n = &mut st.nodes[s];
        let epoch = if self.bug == Some(Bug::PromotionIgnoresHighestSeen) {
            n.epoch + 1
        } else {
            next_epoch(n.epoch, n.highest_seen)
        };
        n.epoch = epoch;
        n.highest_seen = n.highest_seen.max(epoch);
        n.history.push(EpochEntry {
            epoch,
            start_lsn: n.end(),
        });
        n.primary = true;
        n.reset_volatile();
        // A promotion is a fresh role: no start-up wait.
        n.guard = WriteGuard::start(epoch, true, false, false);
        n.pair = Some(Pair::new(pair_config(), now));
        st.takeovers += 1;
        // The node restarts as primary: its connections end.
        st.conns = [None, None];
    }

    /// Whether `hadr takeover --force` is accepted on standby `s` now.
    fn force_allowed(st: &State, s: usize, window_only: bool) -> bool {
        let n = &st.nodes[s];
        let now = st.now * UNIT;
        let state = standby_state(
            n.link == Link::Following,
            n.end() >= n.primary_end,
            n.known_window_end,
            now,
        );
        may_force(state, n.known_window_end, now, window_only).is_ok()
    }

    /// The primary `p` receives standby `s`'s hello (`handle` in primary.rs).
    fn accept(&self, st: &mut State, p: usize, s: usize, theirs: Hello) {
        if !st.nodes[p].primary {
            // A standby answers with its own hello: the peer is not a primary.
            Self::standby_closes(st, s);
            return;
        }
        let actions = st.nodes[p].guard.step(GuardEvent::StandbyConnected {
            epoch: theirs.epoch,
            address: NAMES[s].to_string(),
        });
        Self::apply_guard(st, p, actions);
        if !st.nodes[p].primary {
            return;
        }
        let now = st.now * UNIT;
        let n = &mut st.nodes[p];
        let (ours, end) = (n.hello(), n.end());
        let plan = self.rejoin(&theirs, &ours);
        let accepted = !matches!(plan, Rejoin::Rewind { .. }) && theirs.end <= end;
        let (Some(conn), Some(pair)) = (st.conns[s].as_mut(), n.pair.as_mut()) else {
            return;
        };
        conn.to_standby.push(Msg::Reply {
            hello: ours,
            accepted,
        });
        if !accepted {
            conn.closed_by_primary = true;
            return;
        }
        conn.accepted = true;
        // A new connection: whatever hand-over ran on an old one failed.
        n.handing_over = false;
        pair.step(Event::Connected {
            now,
            start: theirs.end,
        });
        // Nothing to send: PEER at once (the sender's loop does this).
        if theirs.end == end {
            pair.step(Event::CaughtUp { now, end });
        }
    }

    /// The standby `s` receives the primary's answer to its hello (`follow`
    /// and the rewind in standby.rs / rewind.rs).
    fn answered(&self, st: &mut State, s: usize, theirs: Hello, accepted: bool) {
        let n = &mut st.nodes[s];
        match self.rejoin(&n.hello(), &theirs) {
            Rejoin::Rewind { divergence } => {
                // Drop our records from D on and take the primary's history;
                // the records from D on come by replication after reconnecting.
                n.log.truncate(divergence as usize);
                n.highest_seen = n.highest_seen.max(n.epoch).max(theirs.epoch);
                n.epoch = theirs.epoch;
                n.history = theirs.history;
                st.rewound = true;
                Self::standby_closes(st, s);
            }
            plan @ (Rejoin::Follow | Rejoin::Adopt)
                if accepted && theirs.role == PeerRole::Primary =>
            {
                if plan == Rejoin::Adopt {
                    n.highest_seen = n.highest_seen.max(theirs.epoch);
                    n.epoch = theirs.epoch;
                    n.history = theirs.history;
                }
                n.link = Link::Following;
                // A new connection starts outside PEER: no promise until a heartbeat says so.
                n.known_window_end = 0;
                n.primary_end = theirs.end;
            }
            // Superseded, or refused.
            _ => Self::standby_closes(st, s),
        }
    }

    fn deliver_to_primary(&self, st: &mut State, s: usize) {
        let p = other(s);
        let Some(conn) = st.conns[s].as_mut() else {
            return;
        };
        let msg = conn.to_primary.remove(0);
        let accepted = conn.accepted;
        if let Msg::Hello(h) = msg {
            self.accept(st, p, s, h);
            return;
        }
        let now = st.now * UNIT;
        let n = &mut st.nodes[p];
        let Some(pair) = n.pair.as_mut().filter(|_| accepted) else {
            return;
        };
        match msg {
            Msg::Ack { end } => {
                pair.step(Event::Ack {
                    now,
                    received: end,
                    flushed: end,
                    replayed: end,
                });
            }
            Msg::TakeoverRequest => {
                pair.step(Event::Heard { now });
                if pair.state == PairState::Peer && !n.handing_over {
                    // Stop writes; the sender ships the rest.
                    n.handing_over = true;
                } else {
                    // Refused: the primary ends the connection.
                    pair.step(Event::Lost { now, clean: false });
                    n.handing_over = false;
                    Self::primary_closes(st, s);
                }
            }
            _ => {}
        }
    }

    fn deliver_to_standby(&self, st: &mut State, s: usize) {
        let Some(conn) = st.conns[s].as_mut() else {
            return;
        };
        let msg = conn.to_standby.remove(0);
        let n = &mut st.nodes[s];
        match msg {
            Msg::Reply { hello, accepted } if n.link == Link::Connecting => {
                self.answered(st, s, hello, accepted)
            }
            Msg::Records { lsn, rec } if n.link == Link::Following => {
                if lsn != n.end() {
                    // The log cannot take it: the connection ends.
                    Self::standby_closes(st, s);
                    return;
                }
                n.log.push(rec);
                n.primary_end = n.primary_end.max(n.end());
                let end = n.end();
                if !conn.closed_by_primary {
                    send(&mut conn.to_primary, Msg::Ack { end });
                }
            }
            Msg::Heartbeat { end, window_end } if n.link == Link::Following => {
                n.primary_end = end;
                n.known_window_end = window_end;
            }
            Msg::TakeoverReady { end } if n.link == Link::Following => {
                if n.end() == end {
                    self.promote(st, s);
                    st.graceful_done = true;
                } else {
                    Self::standby_closes(st, s);
                }
            }
            _ => {}
        }
    }

    /// Primary `p`'s sender puts its next record on the stream.
    fn ship(st: &mut State, p: usize) {
        let now = st.now * UNIT;
        let n = &mut st.nodes[p];
        let end = n.end();
        let (Some(pair), Some(conn)) = (n.pair.as_mut(), st.conns[other(p)].as_mut()) else {
            return;
        };
        let Some(&rec) = n.log.get(pair.sent as usize) else {
            return;
        };
        if !conn.accepted {
            return;
        }
        conn.to_standby.push(Msg::Records {
            lsn: pair.sent,
            rec,
        });
        pair.step(Event::Sent { lsn: pair.sent + 1 });
        if pair.sent >= end {
            pair.step(Event::CaughtUp { now, end });
        }
    }

    fn tick(st: &mut State) {
        st.now += 1;
        let now = st.now * UNIT;
        for p in 0..2 {
            let s = other(p);
            // A following standby acknowledges every tick (its keep-alive);
            // over a connection that works, that ack arrives within the tick.
            let alive = st.conns[s].as_ref().is_some_and(|c| c.accepted)
                && st.nodes[s].up
                && st.nodes[s].link == Link::Following;
            let n = &mut st.nodes[p];
            if !n.up || !n.primary {
                continue;
            }
            let Some(pair) = n.pair.as_mut() else {
                continue;
            };
            if alive {
                pair.step(Event::Heard { now });
            }
            let before = pair.state;
            let actions = pair.step(Event::Tick {
                now,
                oldest_commit_wait_since: None,
            });
            st.window_expired |= before == PairState::DisconnectedPeer
                && pair.state == PairState::RemoteCatchupPending;
            let sent = pair.sent;
            for a in actions {
                match a {
                    Action::Heartbeat { peer_window_end } => {
                        if let Some(c) = st.conns[s].as_mut().filter(|c| c.accepted) {
                            send(
                                &mut c.to_standby,
                                Msg::Heartbeat {
                                    end: sent,
                                    window_end: peer_window_end,
                                },
                            );
                        }
                    }
                    Action::Disconnect { .. } => {
                        st.nodes[p].handing_over = false;
                        Self::primary_closes(st, s);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Commits return as soon as the gate lets them: the earliest
    /// acknowledgement is the hardest case for the properties.
    fn release_commits(st: &mut State) {
        for i in 0..2 {
            let n = &mut st.nodes[i];
            if !n.up || !n.primary || matches!(n.guard.writes, Writes::Fenced { .. }) {
                continue;
            }
            let Some(pair) = n.pair.as_ref() else {
                continue;
            };
            let (done, waiting): (Vec<_>, Vec<_>) = n
                .pending
                .iter()
                .partition(|(_, lsn)| pair.commit_wait(*lsn) == CommitWait::Release);
            n.pending = waiting;
            for (id, lsn) in done {
                st.acked.insert(Acked {
                    id,
                    epoch: n.epoch,
                    node: i,
                    lsn: lsn - 1,
                });
            }
        }
    }

    /// What a `--peer-window-only` takeover on `s` promised and does not
    /// have. It promises the commits of the primary whose window it holds:
    /// every write acknowledged in its own epoch, and every older one that
    /// primary still holds (a plain `--force` may lose commits by design, and
    /// so may the old primary after it until it is fenced). Writes of a newer
    /// epoch are not promised: a takeover into an epoch that is already
    /// superseded is fenced as soon as it meets the newer primary.
    fn window_only_losses(st: &State, s: usize) -> Vec<u8> {
        let (n, old) = (&st.nodes[s], &st.nodes[other(s)]);
        st.acked
            .iter()
            .filter(|a| {
                let rec = (a.epoch, a.id);
                let promised = a.epoch == n.epoch
                    || (a.epoch < n.epoch && old.log.get(a.lsn as usize) == Some(&rec));
                promised && n.log.get(a.lsn as usize) != Some(&rec)
            })
            .map(|a| a.id)
            .collect()
    }
}

impl Model for HadrModel {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            nodes: [Node::new(true), Node::new(false)],
            conns: [None, None],
            now: 0,
            next_write: 0,
            takeovers: 0,
            crashes: 0,
            acked: BTreeSet::new(),
            writers: BTreeSet::new(),
            window_only_losses: vec![],
            window_only_after_ack: false,
            graceful_done: false,
            rewound: false,
            fenced: false,
            window_expired: false,
        }]
    }

    fn actions(&self, st: &State, out: &mut Vec<Act>) {
        for i in 0..2 {
            let (n, o) = (&st.nodes[i], &st.nodes[other(i)]);
            if !n.up {
                out.push(Act::Restart(i));
                continue;
            }
            if st.crashes < self.max_crashes {
                out.push(Act::Crash(i));
            }
            if n.primary {
                if n.guard.writable() && !n.handing_over && st.next_write < self.max_writes {
                    out.push(Act::Write(i));
                }
                let Some(pair) = n.pair.as_ref() else {
                    continue;
                };
                let attached = st.conns[other(i)].as_ref().is_some_and(|c| c.accepted);
                let connected = matches!(pair.state, PairState::RemoteCatchup | PairState::Peer);
                if connected && attached && pair.sent < n.end() {
                    out.push(Act::Ship(i));
                }
                if connected && !attached {
                    out.push(Act::PrimaryNoticesLoss(i));
                }
                // Primaries probe peers that are not connected as standbys.
                if !connected && o.up {
                    for answered in [false, true] {
                        out.push(Act::Probe { from: i, answered });
                    }
                }
                if n.handing_over && attached && pair.flushed >= n.end() {
                    out.push(Act::HandOver(i));
                }
            } else {
                if n.link == Link::Idle && o.up && st.conns[i].is_none() {
                    out.push(Act::Connect(i));
                }
                if st.takeovers < self.max_takeovers {
                    if n.link == Link::Following && !n.takeover_requested {
                        out.push(Act::RequestTakeover(i));
                    }
                    for window_only in [false, true] {
                        if Self::force_allowed(st, i, window_only) {
                            out.push(Act::Force {
                                node: i,
                                window_only,
                            });
                        }
                    }
                }
            }
        }
        for s in 0..2 {
            if let Some(c) = &st.conns[s] {
                if !c.to_primary.is_empty() {
                    out.push(Act::DeliverToPrimary(s));
                }
                if !c.to_standby.is_empty() {
                    out.push(Act::DeliverToStandby(s));
                }
                out.push(Act::Cut(s));
            }
        }
        if st.now < self.max_time {
            out.push(Act::Tick);
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
                n.pending.push((id, n.end()));
                st.writers.insert((n.epoch, p));
                // In PEER the sender ships a new record at once (in REMOTE_CATCHUP it
                // may lag: `Ship`). A delay here would be no different from one on the wire.
                let in_peer = n.pair.as_ref().is_some_and(|x| x.state == PairState::Peer);
                if in_peer && n.pair.as_ref().is_some_and(|x| x.sent + 1 == n.end()) {
                    Self::ship(&mut st, p);
                }
            }
            Act::Connect(s) => {
                let n = &mut st.nodes[s];
                n.link = Link::Connecting;
                if self.bug != Some(Bug::PromiseKeptUntilReply) {
                    // Once the primary has this hello it may leave PEER and
                    // release commits this standby does not have: the old
                    // promise must be gone before it is sent.
                    n.known_window_end = 0;
                }
                st.conns[s] = Some(Conn {
                    accepted: false,
                    closed_by_primary: false,
                    to_primary: vec![Msg::Hello(n.hello())],
                    to_standby: vec![],
                });
            }
            Act::DeliverToPrimary(s) => self.deliver_to_primary(&mut st, s),
            Act::DeliverToStandby(s) => self.deliver_to_standby(&mut st, s),
            Act::Ship(p) => Self::ship(&mut st, p),
            Act::Cut(s) => st.conns[s] = None,
            Act::PrimaryNoticesLoss(p) => {
                let n = &mut st.nodes[p];
                n.handing_over = false;
                n.pair.as_mut()?.step(Event::Lost { now, clean: false });
            }
            Act::Probe { from, answered } => {
                let to = other(from);
                let (asker, peer) = (&st.nodes[from], &st.nodes[to]);
                // The answer is the hello taken before the peer's guard steps (as in `handle`).
                let (ask, answer) = ((asker.primary, asker.epoch), (peer.primary, peer.epoch));
                Self::peer_seen(&mut st, to, ask);
                if answered {
                    Self::peer_seen(&mut st, from, answer);
                }
            }
            Act::Tick => Self::tick(&mut st),
            Act::Crash(i) => {
                st.crashes += 1;
                let n = &mut st.nodes[i];
                n.up = false;
                n.reset_volatile();
                // Its sockets are reset.
                st.conns = [None, None];
            }
            Act::Restart(i) => {
                let n = &mut st.nodes[i];
                n.up = true;
                // The start-up rule: a primary that was primary before waits for its standby.
                n.guard = WriteGuard::start(n.epoch, n.primary, n.primary, false);
                n.pair = n.primary.then(|| Pair::new(pair_config(), now));
            }
            Act::RequestTakeover(s) => {
                st.nodes[s].takeover_requested = true;
                if let Some(c) = st.conns[s].as_mut().filter(|c| !c.closed_by_primary) {
                    c.to_primary.push(Msg::TakeoverRequest);
                }
            }
            Act::HandOver(p) => {
                let s = other(p);
                let n = &mut st.nodes[p];
                let end = n.end();
                // Durably a standby, and the next epoch taken, before the
                // standby is told: a crash now leaves two standbys, never
                // two primaries.
                n.primary = false;
                n.highest_seen = n.highest_seen.max(n.epoch + 1);
                n.reset_volatile();
                let conn = st.conns[s].as_mut()?;
                conn.to_standby.push(Msg::TakeoverReady { end });
                Self::primary_closes(&mut st, s);
            }
            Act::Force {
                node: s,
                window_only,
            } => {
                if window_only {
                    st.window_only_losses
                        .extend(Self::window_only_losses(&st, s));
                    st.window_only_after_ack |= !st.acked.is_empty();
                }
                self.promote(&mut st, s);
            }
        }
        // A standby sees at once that its connection is gone (reset, or
        // EOF after the last message). Seeing it later only delays what it
        // may do: while "connected" it may force no more than when not.
        for s in 0..2 {
            let gone = st.conns[s]
                .as_ref()
                .is_none_or(|c| c.closed_by_primary && c.to_standby.is_empty());
            if st.nodes[s].link != Link::Idle && gone {
                Self::standby_closes(&mut st, s);
            }
        }
        Self::release_commits(&mut st);
        for n in st.nodes.iter_mut() {
            if let Some(pair) = n.pair.as_mut() {
                forget_unread(pair);
            }
        }
        Some(st)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no two nodes write in one epoch", |_, st: &State| {
                let shared = st
                    .writers
                    .iter()
                    .any(|&(epoch, n)| st.writers.contains(&(epoch, other(n))));
                let both_writable = st
                    .nodes
                    .iter()
                    .all(|n| n.up && n.primary && n.guard.writable())
                    && st.nodes[0].epoch == st.nodes[1].epoch;
                !shared && !both_writable
            }),
            Property::always(
                "a --peer-window-only takeover loses no acknowledged write",
                |_, st: &State| st.window_only_losses.is_empty(),
            ),
            Property::always(
                "a following standby's log is its primary's log cut to its length",
                |_, st: &State| {
                    (0..2).all(|s| {
                        let (sn, pn) = (&st.nodes[s], &st.nodes[other(s)]);
                        let following = sn.up
                            && !sn.primary
                            && sn.link == Link::Following
                            && st.conns[s].as_ref().is_some_and(|c| c.accepted)
                            && pn.up
                            && pn.primary
                            && pn.epoch == sn.epoch;
                        !following || is_prefix(&sn.log, &pn.log)
                    })
                },
            ),
            Property::sometimes("a write is acknowledged", |_, st: &State| {
                !st.acked.is_empty()
            }),
            Property::sometimes(
                "a --peer-window-only takeover after an acknowledged write",
                |_, st: &State| st.window_only_after_ack,
            ),
            Property::sometimes("a graceful takeover", |_, st: &State| st.graceful_done),
            Property::sometimes("a diverged node rewinds", |_, st: &State| st.rewound),
            Property::sometimes("a superseded primary is fenced", |_, st: &State| st.fenced),
        ]
    }
}

fn model(bug: Option<Bug>) -> HadrModel {
    // Every tick must be long enough for a heartbeat to be due (see `forget_unread`).
    assert!(pair_config().heartbeat_us() <= UNIT);
    // About 1.5 million states: well under 30 s in a debug build.
    HadrModel {
        bug,
        max_writes: 2,
        max_takeovers: 2,
        max_crashes: 1,
        max_time: 4,
    }
}

#[test]
fn takeover_fencing_and_rejoin_keep_their_promises() {
    let started = std::time::Instant::now();
    let checker = model(None).checker().threads(2).spawn_bfs().join();
    eprintln!(
        "model: {} unique states ({} generated), depth {}, {:.1} s",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker.assert_properties();
}

/// Check a broken variant; the named property must fail.
fn assert_caught(bug: Bug, property: &'static str) {
    let checker = model(Some(bug))
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let path = checker.discovery(property);
    assert!(
        path.is_some(),
        "{bug:?}: the checker found no counterexample to {property:?}"
    );
    eprintln!(
        "{bug:?} breaks {property:?}: {:?}",
        path.map(|p| p.into_actions())
    );
}

#[test]
fn the_checker_catches_a_promotion_below_the_highest_epoch_seen() {
    assert_caught(
        Bug::PromotionIgnoresHighestSeen,
        "no two nodes write in one epoch",
    );
}

#[test]
fn the_checker_catches_a_promise_kept_while_the_primary_answers() {
    assert_caught(
        Bug::PromiseKeptUntilReply,
        "a --peer-window-only takeover loses no acknowledged write",
    );
}

#[test]
fn the_checker_catches_ignored_divergence() {
    assert_caught(
        Bug::DivergenceIgnored,
        "a following standby's log is its primary's log cut to its length",
    );
}
