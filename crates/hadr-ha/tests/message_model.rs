//! Model check (stateright) of hadr's takeover, fencing and rejoin protocol,
//! with explicit messages.
//!
//! Two nodes, A and B, exchange messages over replication connections and
//! probes; the checker explores every interleaving of client writes,
//! message deliveries, connection cuts, crashes (kill -9), restarts, clock
//! ticks, graceful takeovers and forced takeovers (plain `--force` and
//! `--peer-window-only`) within small bounds. Every decision a node takes is
//! taken by hadr-ha's own code, called as the drivers call it:
//!
//! - the primary: `Pair` (DB2's pair states, the peer window, heartbeats,
//!   the `hadr_timeout` disconnect, the SYNC commit gate through
//!   `commit_wait::may_release`); `WriteGuard` (the start-up rule of a
//!   restarted primary, fencing by a newer epoch); admission of a standby's
//!   hello (`check_listed`, the guard's `StandbyConnected`, `admit`); the
//!   graceful hand-over as `Handover::step`, each action carried out by
//!   the model as `hand_over` in primary.rs does;
//! - the standby: `StandbyLink` (`hello_sent` before the hello goes out,
//!   `connected`, `received`, `heartbeat`, `lost`, `may_ask_graceful`,
//!   `may_force`), `rejoin` (follow, adopt, rewind or refuse a primary);
//! - a promotion: `next_epoch`.
//!
//! The model adds only the glue the drivers (`primary.rs`, `standby.rs`,
//! the node) add: who sends which message when, and what a node does with
//! an answer (`model_kit` holds the glue both models share).
//!
//! Checked: (1) no two nodes write in one epoch; (2) a `--peer-window-only`
//! takeover has every write it promised; (3) a following standby's log is a
//! prefix of its primary's; (4) without a forced takeover there is never
//! more than one primary (the hand-over's order). Negative controls: four
//! broken variants, each of which the checker must catch.
//!
//! Messages: a replication connection is a TCP stream, so it is two FIFO
//! queues, and losing a message on it is losing the connection (a cut), not
//! a gap in the stream. A probe is a short connection of its own, taken as
//! one step: the peer gets the prober's hello (or not), and the answer gets
//! back (or is lost). A late probe answer could only fence a node later, or
//! fence one that a fresh answer would also fence.
//!
//! Abstracted away: page contents and byte LSNs; fsync; clock skew (one
//! global clock, see [`HadrModel::bug`]); the `--force` start of a primary
//! and its first probe round; more than one standby; SYNC only; the old
//! connection task that a primary still runs when its standby reconnects.

mod model_kit;

use hadr_ha::handover::{Handover, HandoverFailure, Input};
use hadr_ha::pair::{Action, Event, PairState};
use hadr_ha::rejoin::{rejoin, Rejoin};
use hadr_ha::takeover::PEER_WINDOW_MARGIN_US;
use hadr_ha::GuardEvent;
use hadr_log::EpochStart;
use hadr_protocol::PeerRole;
use model_kit::{
    admit_standby, assert_caught, carry_out, check_model, drive, other, standby_side, Admitted,
    Bounds, Driver, EpochChoice, Net, Node, Rec, Scale, Variant, Waits, World, GRACEFUL, NAMES,
    NOT_A_PREFIX, REWOUND, TWO_PRIMARIES, TWO_WRITERS, WINDOW_ONLY_LOSS,
};
use stateright::{Model, Property};

/// One unit is 2.5 s, so that the 5 s margin is 2 units and few ticks reach
/// a window's end; `hadr_timeout` is 2.5 s and `hadr_peer_window` 10 s.
const SCALE: Scale = Scale {
    unit_us: 2_500_000,
    timeout: 1,
    peer_window: 4,
};

// The scale only makes sense if the margin is a whole number of units that
// leaves part of the window usable: 2 of 4 units.
const _: () = assert!(PEER_WINDOW_MARGIN_US.is_multiple_of(SCALE.unit_us));

/// A node's hello: its role, epoch, history and log end.
fn hello(n: &Node) -> Hello {
    Hello {
        role: n.role(),
        epoch: n.c.epoch,
        history: n.c.history.clone(),
        end: n.c.end(),
    }
}

/// The handshake (`hadr_protocol::Hello` without what the model does not need).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Hello {
    role: PeerRole,
    epoch: u64,
    history: Vec<EpochStart>,
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

impl Conn {
    /// The primary can still send on it.
    fn open(&self) -> bool {
        self.accepted && !self.closed_by_primary
    }
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

/// The network: the replication connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Conns {
    /// `conns[s]`: the replication connection node `s` opened as a standby.
    conns: [Option<Conn>; 2],
    /// Witness: a peer window ran out on a primary.
    window_expired: bool,
}

/// The whole system.
type State = World<Conns>;

impl Net for Conns {
    fn following(st: &State, s: usize) -> bool {
        let (sn, pn) = (&st.nodes[s], &st.nodes[other(s)]);
        sn.up
            && !sn.c.primary
            && sn.following()
            && st.net.conns[s].as_ref().is_some_and(|c| c.accepted)
            && pn.up
            && pn.runs_primary()
            && pn.c.epoch == sn.c.epoch
    }

    fn ship_next(st: &mut State, p: usize) -> bool {
        HadrModel::ship(st, p)
    }

    fn send_ready(st: &mut State, p: usize, end: u64) -> Result<(), String> {
        let c = st.net.conns[other(p)].as_mut().filter(|c| c.open());
        c.ok_or("the connection is gone")?
            .to_standby
            .push(Msg::TakeoverReady { end });
        Ok(())
    }

    fn restarted_as_standby(st: &mut State, p: usize) {
        // Its connections close; what it sent (the TakeoverReady) may still arrive.
        HadrModel::primary_closes(st, other(p));
    }
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
    /// This primary's hand-over does the durable write or the send it waits for.
    HandOver(usize),
    /// `hadr takeover --force [--peer-window-only]` on a standby.
    Force {
        node: usize,
        window_only: bool,
    },
}

/// Deliberately broken rules (negative controls): with one of these the
/// checker must find a counterexample, so the properties are not vacuous.
/// Each overrides a call to hadr-ha in the model's glue. Ignoring
/// `PEER_WINDOW_MARGIN_US` is not among them: with one clock the margin is
/// not needed (it exists for clock skew between hosts, which this model
/// does not have).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// A promotion takes `epoch + 1` instead of [`next_epoch`]: a primary
    /// fenced by epoch 2, forced to take over again before it has followed
    /// anyone, promotes into epoch 2 beside the primary that fenced it.
    PromotionIgnoresHighestSeen,
    /// The standby calls `StandbyLink::hello_sent` only when the primary's
    /// answer to its hello arrives (what `follow` in standby.rs did until
    /// this model found it), not before it sends the hello. The primary, in
    /// DISCONNECTED_PEER, goes to REMOTE_CATCHUP on the hello and releases
    /// commits the standby does not have; if the answer is late or lost, the
    /// standby still holds the old promise and a `--peer-window-only`
    /// takeover loses those commits.
    PromiseKeptUntilReply,
    /// Divergence is ignored: both sides judge the standby by the primary's
    /// own history (`admit` and `rejoin` see no history departing).
    DivergenceIgnored,
    /// The hand-over's driver tells the standby when the machine asks it to
    /// record the standby role, and records it when the machine asks it to
    /// tell: the standby promotes while this node is still a primary.
    TellBeforeMark,
}

/// The model. The bounds keep the state space small enough for a debug test.
struct HadrModel {
    v: Variant<Bug>,
}

impl HadrModel {
    /// Carry out a guard's fence on node `i`: stop writes (waiting commits
    /// fail), record the standby role and the newer epoch durably, restart
    /// as a standby (which closes every connection).
    fn fence(st: &mut State, i: usize, by_epoch: u64) {
        st.nodes[i].fence(by_epoch, &mut st.ledger);
        st.net.conns = [None, None];
    }

    /// A primary `i` hears, by a probe, that its peer is a primary or not, of `epoch`.
    fn peer_seen(st: &mut State, i: usize, (role, epoch): (PeerRole, u64)) {
        let n = &mut st.nodes[i];
        if !n.up || !n.runs_primary() {
            // Only primaries act on probes (a standby just answers).
            return;
        }
        let ev = GuardEvent::PeerSeen {
            role,
            epoch,
            address: NAMES[other(i)].to_string(),
        };
        if let Some(by) = n.hear(ev) {
            Self::fence(st, i, by);
        }
    }

    /// The standby `s` ends its connection.
    fn standby_closes(st: &mut State, s: usize) {
        st.net.conns[s] = None;
        let now = SCALE.us(st.now);
        let n = &mut st.nodes[s];
        n.link.lost(now);
        n.takeover_requested = false;
    }

    /// The primary ends its side of `conns[s]`; what it already sent may still arrive.
    fn primary_closes(st: &mut State, s: usize) {
        if let Some(c) = st.net.conns[s].as_mut() {
            c.accepted = false;
            c.closed_by_primary = true;
            c.to_primary.clear();
        }
    }

    /// Step primary `p`'s hand-over, if one runs, with `f`. Once it is over
    /// (handed over, or given up and writes resumed) it is gone, and with
    /// `close` the primary ends the connection it ran on, as `stream_to`
    /// does after `hand_over` returns.
    fn step_handover(
        &self,
        st: &mut State,
        p: usize,
        close: bool,
        f: impl FnOnce(&mut Handover, Waits, &mut Driver<'_, Conns>) -> Waits,
    ) {
        let Some((mut h, waits)) = st.nodes[p].handover.take() else {
            return;
        };
        let mut driver = Driver::new(st, p, SCALE);
        driver.tell_before_mark = self.v.has(Bug::TellBeforeMark);
        let waits = f(&mut h, waits, &mut driver);
        if waits != Waits::Over {
            st.nodes[p].handover = Some((h, waits));
        } else if close && st.nodes[p].pair.is_some() {
            Self::primary_loses(st, p);
        }
    }

    /// Fail primary `p`'s hand-over, if one runs (its connection is gone).
    fn fail_handover(&self, st: &mut State, p: usize, close: bool) {
        self.step_handover(st, p, close, |h, _, d| {
            drive(
                h,
                Input::Failed(HandoverFailure::Ship("the connection is gone".into())),
                d,
            )
        });
    }

    /// The primary `p` ends its connection to its standby.
    fn primary_loses(st: &mut State, p: usize) {
        st.nodes[p].lose(SCALE.us(st.now));
        Self::primary_closes(st, other(p));
    }

    /// Promote standby `s` (graceful or forced).
    fn promote(&self, st: &mut State, s: usize) {
        let now = SCALE.us(st.now);
        st.nodes[s].promote(self.v.choose, &SCALE, now, &mut st.ledger);
        // The node restarts as primary: its connections end.
        st.net.conns = [None, None];
    }

    /// Whether `hadr takeover --force` is accepted on standby `s` now.
    fn force_allowed(st: &State, s: usize, window_only: bool) -> bool {
        let n = &st.nodes[s];
        n.link
            .may_force(n.c.end(), SCALE.us(st.now), window_only)
            .is_ok()
    }

    /// The primary `p` receives standby `s`'s hello (`handle` in primary.rs).
    fn accept(&self, st: &mut State, p: usize, s: usize, theirs: Hello) {
        if !st.nodes[p].runs_primary() {
            // A standby answers with its own hello: the peer is not a primary.
            Self::standby_closes(st, s);
            return;
        }
        let now = SCALE.us(st.now);
        let n = &mut st.nodes[p];
        // The divergence bug: the primary judges the standby by its own history.
        let history = if self.v.has(Bug::DivergenceIgnored) {
            &n.c.history
        } else {
            &theirs.history
        };
        let standby = standby_side(s, theirs.epoch, history, theirs.end);
        let admitted = admit_standby(&mut n.guard, n.c.primary_side(), standby);
        let (ours, end) = (hello(n), n.c.end());
        let from = match admitted {
            Admitted::Fenced(by) => return Self::fence(st, p, by),
            Admitted::Refused(_) => None,
            Admitted::Stream(from) => Some(from),
        };
        // A new connection: a hand-over on the old one fails.
        self.fail_handover(st, p, false);
        let n = &mut st.nodes[p];
        let (Some(conn), Some(pair)) = (st.net.conns[s].as_mut(), n.pair.as_mut()) else {
            return;
        };
        conn.to_standby.push(Msg::Reply {
            hello: ours,
            accepted: from.is_some(),
        });
        let Some(start) = from else {
            conn.closed_by_primary = true;
            return;
        };
        conn.accepted = true;
        pair.step(Event::Connected { now, start });
        // Nothing to send: PEER at once (the sender's loop does this).
        if start == end {
            pair.step(Event::CaughtUp { now, end });
        }
    }

    /// The standby `s` receives the primary's answer to its hello (`follow`
    /// and the rewind in standby.rs / rewind.rs).
    fn answered(&self, st: &mut State, s: usize, theirs: Hello, accepted: bool) {
        let now = SCALE.us(st.now);
        let n = &mut st.nodes[s];
        if self.v.has(Bug::PromiseKeptUntilReply) {
            n.link.hello_sent();
        }
        let plan = if self.v.has(Bug::DivergenceIgnored) {
            rejoin(
                n.c.epoch,
                &theirs.history,
                n.c.end(),
                theirs.epoch,
                &theirs.history,
            )
        } else {
            n.c.rejoin(theirs.epoch, &theirs.history)
        };
        match plan {
            Rejoin::Rewind { divergence } => {
                // Drop our records from D on and take the primary's history;
                // the records from D on come by replication after reconnecting.
                n.c.log.truncate(divergence as usize);
                n.c.adopt(theirs.epoch, &theirs.history);
                st.ledger.seen |= REWOUND;
                Self::standby_closes(st, s);
            }
            Rejoin::Follow | Rejoin::Adopt if accepted && theirs.role == PeerRole::Primary => {
                if plan == Rejoin::Adopt {
                    n.c.adopt(theirs.epoch, &theirs.history);
                }
                n.link.connected(NAMES[other(s)], theirs.end, now);
            }
            // Superseded, or refused.
            _ => Self::standby_closes(st, s),
        }
    }

    fn deliver_to_primary(&self, st: &mut State, s: usize) {
        let p = other(s);
        let Some(conn) = st.net.conns[s].as_mut() else {
            return;
        };
        let msg = conn.to_primary.remove(0);
        let accepted = conn.accepted;
        if let Msg::Hello(h) = msg {
            self.accept(st, p, s, h);
            return;
        }
        let now = SCALE.us(st.now);
        let n = &mut st.nodes[p];
        let Some(pair) = n.pair.as_mut().filter(|_| accepted) else {
            return;
        };
        match msg {
            Msg::Ack { end } => {
                n.ack(end, now);
                self.step_handover(st, p, true, |h, waits, d| match waits {
                    Waits::Flush => carry_out(h, waits, d),
                    _ => waits,
                });
            }
            // A second request while one runs waits behind it; the
            // connection ends with the first.
            Msg::TakeoverRequest if n.handover.is_none() => {
                pair.step(Event::Heard { now });
                let Some(requested) = n.handover_request() else {
                    return;
                };
                n.handover = Some((Handover::new(SCALE.flush_wait_us()), Waits::Over));
                self.step_handover(st, p, true, |h, _, d| drive(h, requested, d));
            }
            _ => {}
        }
    }

    fn deliver_to_standby(&self, st: &mut State, s: usize) {
        let now = SCALE.us(st.now);
        let Some(conn) = st.net.conns[s].as_mut() else {
            return;
        };
        let msg = conn.to_standby.remove(0);
        let n = &mut st.nodes[s];
        match msg {
            Msg::Reply { hello, accepted } if !n.following() => {
                self.answered(st, s, hello, accepted)
            }
            Msg::Records { lsn, rec } if n.following() => {
                if lsn != n.c.end() {
                    // The log cannot take it: the connection ends.
                    Self::standby_closes(st, s);
                    return;
                }
                n.c.log.push(rec);
                let end = n.c.end();
                n.link.received(end, now);
                if !conn.closed_by_primary {
                    send(&mut conn.to_primary, Msg::Ack { end });
                }
            }
            Msg::Heartbeat { end, window_end } if n.following() => {
                n.link.heartbeat(end, window_end, now);
            }
            Msg::TakeoverReady { end } if n.following() => {
                if n.c.end() == end {
                    self.promote(st, s);
                    st.ledger.seen |= GRACEFUL;
                } else {
                    Self::standby_closes(st, s);
                }
            }
            _ => {}
        }
    }

    /// Primary `p`'s sender puts its next record on the stream; whether it did.
    fn ship(st: &mut State, p: usize) -> bool {
        let now = SCALE.us(st.now);
        let n = &mut st.nodes[p];
        let end = n.c.end();
        let (Some(pair), Some(conn)) = (n.pair.as_mut(), st.net.conns[other(p)].as_mut()) else {
            return false;
        };
        let Some(&rec) = n.c.log.get(pair.sent as usize) else {
            return false;
        };
        if !conn.open() {
            return false;
        }
        conn.to_standby.push(Msg::Records {
            lsn: pair.sent,
            rec,
        });
        pair.step(Event::Sent { lsn: pair.sent + 1 });
        if pair.sent >= end {
            pair.step(Event::CaughtUp { now, end });
        }
        true
    }

    fn tick(&self, st: &mut State) {
        st.now += 1;
        let now = SCALE.us(st.now);
        for p in 0..2 {
            let s = other(p);
            // A following standby acknowledges its log end every tick (its
            // keep-alive); over a connection that works, that ack arrives
            // within the tick.
            let alive = st.net.conns[s].as_ref().is_some_and(|c| c.accepted)
                && st.nodes[s].up
                && st.nodes[s].following();
            let standby_end = st.nodes[s].c.end();
            let n = &mut st.nodes[p];
            if !n.up || !n.runs_primary() {
                continue;
            }
            if n.pair.is_none() {
                continue;
            }
            if alive {
                n.ack(standby_end, now);
            }
            let Some(pair) = n.pair.as_mut() else {
                continue;
            };
            let before = pair.state;
            let actions = pair.step(Event::Tick {
                now,
                oldest_commit_wait_since: None,
            });
            st.net.window_expired |= before == PairState::DisconnectedPeer
                && pair.state == PairState::RemoteCatchupPending;
            let sent = pair.sent;
            for a in actions {
                match a {
                    Action::Heartbeat { peer_window_end } => {
                        if let Some(c) = st.net.conns[s].as_mut().filter(|c| c.accepted) {
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
                        Self::primary_closes(st, s);
                        self.fail_handover(st, p, true);
                    }
                    _ => {}
                }
            }
            // A hand-over waiting for the standby looks again (its deadline).
            self.step_handover(st, p, true, |h, waits, d| match waits {
                Waits::Flush => carry_out(h, waits, d),
                _ => waits,
            });
        }
    }
}

impl Model for HadrModel {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        let net = Conns {
            conns: [None, None],
            window_expired: false,
        };
        vec![World::new(net, &SCALE)]
    }

    fn actions(&self, st: &State, out: &mut Vec<Act>) {
        let b = &self.v.bounds;
        for i in 0..2 {
            let (n, o) = (&st.nodes[i], &st.nodes[other(i)]);
            if !n.up {
                out.push(Act::Restart(i));
                continue;
            }
            if b.may_crash(&st.ledger) {
                out.push(Act::Crash(i));
            }
            if matches!(n.handover, Some((_, Waits::Mark | Waits::Tell { .. }))) {
                out.push(Act::HandOver(i));
            }
            if n.runs_primary() {
                if n.guard.writable() && n.handover.is_none() && b.may_write(&st.ledger) {
                    out.push(Act::Write(i));
                }
                let Some(pair) = n.pair.as_ref() else {
                    continue;
                };
                let attached = st.net.conns[other(i)].as_ref().is_some_and(|c| c.accepted);
                let connected = matches!(pair.state, PairState::RemoteCatchup | PairState::Peer);
                if connected && attached && pair.sent < n.c.end() {
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
            } else {
                if !n.following() && o.up && st.net.conns[i].is_none() {
                    out.push(Act::Connect(i));
                }
                if b.may_take_over(&st.ledger) {
                    if n.link.may_ask_graceful().is_ok() && !n.takeover_requested {
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
            if let Some(c) = &st.net.conns[s] {
                if !c.to_primary.is_empty() {
                    out.push(Act::DeliverToPrimary(s));
                }
                if !c.to_standby.is_empty() {
                    out.push(Act::DeliverToStandby(s));
                }
                out.push(Act::Cut(s));
            }
        }
        if b.may_tick(st.now) {
            out.push(Act::Tick);
        }
    }

    fn next_state(&self, last: &State, act: Act) -> Option<State> {
        let mut st = last.clone();
        let now = SCALE.us(st.now);
        match act {
            Act::Write(p) => {
                let n = &mut st.nodes[p];
                let lsn = n.write(p, &mut st.ledger);
                // In PEER the sender ships a new record at once (in REMOTE_CATCHUP it
                // may lag: `Ship`). A delay here would be no different from one on the wire.
                let in_peer = n
                    .pair
                    .as_ref()
                    .is_some_and(|x| x.state == PairState::Peer && x.sent + 1 == lsn);
                if in_peer {
                    Self::ship(&mut st, p);
                }
            }
            Act::Connect(s) => {
                let n = &mut st.nodes[s];
                if !self.v.has(Bug::PromiseKeptUntilReply) {
                    // Once the primary has this hello it may leave PEER and
                    // release commits this standby does not have: the old
                    // promise must be gone before it is sent.
                    n.link.hello_sent();
                }
                st.net.conns[s] = Some(Conn {
                    accepted: false,
                    closed_by_primary: false,
                    to_primary: vec![Msg::Hello(hello(n))],
                    to_standby: vec![],
                });
            }
            Act::DeliverToPrimary(s) => self.deliver_to_primary(&mut st, s),
            Act::DeliverToStandby(s) => self.deliver_to_standby(&mut st, s),
            Act::Ship(p) => {
                Self::ship(&mut st, p);
            }
            Act::Cut(s) => st.net.conns[s] = None,
            Act::PrimaryNoticesLoss(p) => {
                self.fail_handover(&mut st, p, true);
                st.nodes[p].lose(now);
            }
            Act::Probe { from, answered } => {
                let to = other(from);
                let (asker, peer) = (&st.nodes[from], &st.nodes[to]);
                // The answer is the hello taken before the peer's guard steps (as in `handle`).
                let (ask, answer) = ((asker.role(), asker.c.epoch), (peer.role(), peer.c.epoch));
                Self::peer_seen(&mut st, to, ask);
                if answered {
                    Self::peer_seen(&mut st, from, answer);
                }
            }
            Act::Tick => self.tick(&mut st),
            Act::Crash(i) => {
                st.nodes[i].crash(&mut st.ledger);
                // Its sockets are reset.
                st.net.conns = [None, None];
            }
            Act::Restart(i) => st.nodes[i].restart(&SCALE, now),
            Act::RequestTakeover(s) => {
                st.nodes[s].takeover_requested = true;
                if let Some(c) = st.net.conns[s].as_mut().filter(|c| !c.closed_by_primary) {
                    c.to_primary.push(Msg::TakeoverRequest);
                }
            }
            Act::HandOver(p) => self.step_handover(&mut st, p, true, carry_out),
            Act::Force {
                node: s,
                window_only,
            } => {
                let (taker, old) = (&st.nodes[s].c, &st.nodes[other(s)].c);
                st.ledger.forced(taker, old, window_only);
                self.promote(&mut st, s);
            }
        }
        // A standby sees at once that its connection is gone (reset, or
        // EOF after the last message). Seeing it later only delays what it
        // may do: while "connected" it may force no more than when not.
        for s in 0..2 {
            let gone = st.net.conns[s]
                .as_ref()
                .is_none_or(|c| c.closed_by_primary && c.to_standby.is_empty());
            let n = &st.nodes[s];
            if (n.following() || st.net.conns[s].is_some()) && gone {
                Self::standby_closes(&mut st, s);
            }
        }
        Some(st.settle())
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut p = model_kit::properties();
        p.push(Property::sometimes(
            "a peer window runs out",
            |_, st: &State| st.net.window_expired,
        ));
        p
    }
}

fn model(bug: Option<Bug>) -> HadrModel {
    SCALE.check();
    // A promotion takes `epoch + 1` instead of `next_epoch`.
    let bad_epochs: (_, EpochChoice) = (Bug::PromotionIgnoresHighestSeen, |epoch, _| epoch + 1);
    let v = Variant::new(bug, bad_epochs, Bounds::until(4));
    HadrModel { v }
}

#[test]
fn takeover_fencing_and_rejoin_keep_their_promises() {
    check_model("message model", model(None));
}

#[test]
fn the_checker_catches_a_promotion_below_the_highest_epoch_seen() {
    assert_caught(
        "PromotionIgnoresHighestSeen",
        model(Some(Bug::PromotionIgnoresHighestSeen)),
        TWO_WRITERS,
    );
}

#[test]
fn the_checker_catches_a_promise_kept_while_the_primary_answers() {
    assert_caught(
        "PromiseKeptUntilReply",
        model(Some(Bug::PromiseKeptUntilReply)),
        WINDOW_ONLY_LOSS,
    );
}

#[test]
fn the_checker_catches_ignored_divergence() {
    assert_caught(
        "DivergenceIgnored",
        model(Some(Bug::DivergenceIgnored)),
        NOT_A_PREFIX,
    );
}

#[test]
fn the_checker_catches_a_standby_told_before_the_role_is_recorded() {
    assert_caught(
        "TellBeforeMark",
        model(Some(Bug::TellBeforeMark)),
        TWO_PRIMARIES,
    );
}
