//! Model check of takeover, fencing and rejoin with `stateright`.
//!
//! Two nodes, a link that can be cut and healed, crashes (kill -9: the log
//! survives, volatile state does not), a bounded clock, client writes, log
//! shipping, graceful takeover, forced takeover (plain and
//! `--peer-window-only`), probes, and rejoin with rewind. Every decision is
//! taken by hadr-ha's own code, called as the drivers call it: `Pair` (DB2
//! pair states, the commit gate, heartbeats and peer window), `WriteGuard`
//! (start-up rule and fencing), admission of a standby (`check_listed`, the
//! guard's `StandbyConnected`, `admit`), `StandbyLink` on the standby
//! (`hello_sent` before the hello, `connected`, `received`, `heartbeat`,
//! `lost`, `may_ask_graceful`, `may_force`), the graceful hand-over
//! `Handover::step` (run to its end in one step here; `message_model.rs`
//! takes each of its waits as a step), `rejoin` (follow, adopt or rewind) and
//! `next_epoch`. What is abstracted: page contents (a record is an
//! (epoch, write id) pair), byte LSNs (an LSN is a record count), the
//! replication stream (a whole record ships atomically with its ack, a
//! hello with its answer), and clock skew (one clock; the 5 s margin exists
//! for skew).
//!
//! Checked (the properties `model_kit` holds for both models): no two nodes
//! ever write in the same epoch; a `--peer-window-only` takeover loses no
//! acknowledged commit; a standby connected to a primary holds a prefix of
//! the primary's log (a rejoined node is never silently diverged); without a
//! forced takeover there is one primary at most. Three broken variants show
//! the checker finds what these properties exist to catch.

mod model_kit;

use hadr_ha::handover::Handover;
use hadr_ha::pair::{Action, Event, PairState};
use hadr_ha::rejoin::Rejoin;
use hadr_ha::GuardEvent;
use hadr_protocol::PeerRole;
use model_kit::{
    admit_standby, assert_caught, both, carry_out, check_model, drive, is_prefix, other, Admitted,
    Bounds, Driver, Net, Scale, Variant, Waits, World, GRACEFUL, NAMES, REWOUND, TWO_WRITERS,
    WINDOW_ONLY_LOSS,
};
use stateright::{Model, Property};

/// One unit is 1 s; `hadr_timeout` is 2 s, `hadr_peer_window` 7 s.
const SCALE: Scale = Scale {
    unit_us: 1_000_000,
    timeout: 2,
    peer_window: 7,
};

/// The network: one link between the two hosts, cut at most once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Link {
    link_up: bool,
    cuts: u8,
}

type State = World<Link>;

impl Net for Link {
    fn following(st: &State, s: usize) -> bool {
        HadrModel::connection_live(st, other(s))
    }

    fn ship_next(st: &mut State, p: usize) -> bool {
        HadrModel::ship(st, p)
    }

    fn send_ready(_: &mut State, _: usize, _: u64) -> Result<(), String> {
        // The standby is connected (the takeover was asked on the link).
        Ok(())
    }
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

/// Deliberate mistakes, to show the checker catches them. Each overrides a
/// call to hadr-ha in the model's glue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// Promotion keeps the old epoch number.
    NoEpochBump,
    /// The standby believes a peer-window end the primary sent outside PEER
    /// (heartbeats carry the raw promise) and skips `StandbyLink::hello_sent`
    /// (reconnecting keeps the old promise).
    StaleWindow,
    /// A restarted primary starts writing when a standby merely answers a
    /// probe (the guard hears `StandbyConnected`), instead of when one connects.
    ProbeOpensWrites,
}

struct HadrModel {
    v: Variant<Bug>,
}

impl HadrModel {
    /// Fence node `i`: stop writes, fail waiting commits, record the standby
    /// role and the newer epoch, restart as a standby.
    fn fence(st: &mut State, i: usize, by_epoch: u64) {
        let now = SCALE.us(st.now);
        st.nodes[i].fence(by_epoch, &mut st.ledger);
        if st.net.link_up {
            // It restarts: a standby connected to it sees the reset.
            st.nodes[other(i)].link.lost(now);
        }
    }

    /// A primary hears of its peer (probe answer).
    fn hear(st: &mut State, i: usize, ev: GuardEvent) {
        if let Some(by) = st.nodes[i].hear(ev) {
            Self::fence(st, i, by);
        }
    }

    fn promote(&self, st: &mut State, s: usize) {
        let now = SCALE.us(st.now);
        st.nodes[s].promote(self.v.choose, &SCALE, now, &mut st.ledger);
    }

    /// The primary's connection to its standby breaks.
    fn primary_loses(st: &mut State, p: usize) {
        st.nodes[p].lose(SCALE.us(st.now));
    }

    fn connection_live(st: &State, p: usize) -> bool {
        let (pn, sn) = (&st.nodes[p], &st.nodes[other(p)]);
        pn.up
            && sn.up
            && st.net.link_up
            && pn.c.primary
            && !sn.c.primary
            && sn.following()
            && pn
                .pair
                .as_ref()
                .is_some_and(|x| matches!(x.state, PairState::RemoteCatchup | PairState::Peer))
    }

    /// Primary `p` ships its next record; the standby acknowledges it at
    /// once and the commits it was holding return. Whether it could.
    fn ship(st: &mut State, p: usize) -> bool {
        let now = SCALE.us(st.now);
        let (pn, sn) = both(&mut st.nodes, p);
        if !is_prefix(&sn.c.log, &pn.c.log) || sn.c.end() >= pn.c.end() {
            return false;
        }
        sn.c.log.push(pn.c.log[sn.c.log.len()]);
        let (len, end) = (sn.c.end(), pn.c.end());
        sn.link.received(len, now);
        let Some(pair) = pn.pair.as_mut() else {
            return false;
        };
        pair.step(Event::Sent { lsn: len });
        pn.ack(len, now);
        if let Some(pair) = pn.pair.as_mut() {
            pair.step(Event::CaughtUp { now, end });
        }
        true
    }

    /// The standby `s` says hello to its primary and gets the answer.
    fn connect(&self, st: &mut State, s: usize) {
        let p = other(s);
        let now = SCALE.us(st.now);
        let (pn, sn) = both(&mut st.nodes, p);
        if !self.v.has(Bug::StaleWindow) {
            sn.link.hello_sent();
        }
        match admit_standby(&mut pn.guard, pn.c.primary_side(), sn.c.standby_side(s)) {
            Admitted::Fenced(by) => Self::fence(st, p, by),
            Admitted::Refused(_) => {
                // Refused as diverged: the standby rewinds. It drops its
                // records from D on and takes the new primary's (page images
                // make the database match; the log is what this model
                // tracks), then reconnects.
                if let Rejoin::Rewind { divergence } = sn.c.rejoin(pn.c.epoch, &pn.c.history) {
                    let d = (divergence as usize).min(pn.c.log.len());
                    sn.c.log.truncate(d);
                    sn.c.log.extend_from_slice(&pn.c.log[d..]);
                    sn.c.adopt(pn.c.epoch, &pn.c.history);
                    st.ledger.seen |= REWOUND;
                }
            }
            Admitted::Stream(start) => {
                if sn.c.rejoin(pn.c.epoch, &pn.c.history) == Rejoin::Adopt {
                    sn.c.adopt(pn.c.epoch, &pn.c.history);
                }
                let end = pn.c.end();
                sn.link.connected(NAMES[p], end, now);
                let Some(pair) = pn.pair.as_mut() else {
                    return;
                };
                pair.step(Event::Connected { now, start });
                pair.step(Event::CaughtUp { now, end });
            }
        }
    }

    /// `hadr takeover` on standby `s`: the primary runs the hand-over to its
    /// end; the standby promotes if told.
    fn graceful(&self, st: &mut State, s: usize) {
        let p = other(s);
        let Some(requested) = st.nodes[p].handover_request() else {
            return;
        };
        let mut h = Handover::new(SCALE.flush_wait_us());
        let mut driver = Driver::new(st, p, SCALE);
        let mut waits = drive(&mut h, requested, &mut driver);
        while waits != Waits::Over {
            if waits == Waits::Flush {
                // The standby's next keep-alive ack (it has every record:
                // they shipped with their acks).
                let now = driver.now_us();
                let end = driver.w.nodes[s].c.end();
                driver.node().ack(end, now);
            }
            waits = carry_out(&mut h, waits, &mut driver);
        }
        let told = driver.told;
        match told {
            Some(end) if st.nodes[s].c.end() == end => {
                self.promote(st, s);
                st.ledger.seen |= GRACEFUL;
            }
            _ => {
                // Refused or failed: the primary ends the connection.
                Self::primary_loses(st, p);
                let now = SCALE.us(st.now);
                st.nodes[s].link.lost(now);
            }
        }
    }
}

impl Model for HadrModel {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        let net = Link {
            link_up: true,
            cuts: 0,
        };
        vec![World::new(net, &SCALE)]
    }

    fn actions(&self, st: &State, out: &mut Vec<Act>) {
        let b = &self.v.bounds;
        for i in 0..2 {
            let n = &st.nodes[i];
            let o = &st.nodes[other(i)];
            if !n.up {
                out.push(Act::Restart(i));
                continue;
            }
            if b.may_crash(&st.ledger) {
                out.push(Act::Crash(i));
            }
            if n.c.primary {
                if n.guard.writable() && b.may_write(&st.ledger) {
                    out.push(Act::Write(i));
                }
                // Probes go to peers not connected as standbys.
                if o.up && st.net.link_up && !Self::connection_live(st, i) {
                    out.push(Act::Probe(i));
                }
                if Self::connection_live(st, i) && o.c.end() < n.c.end() {
                    out.push(Act::Ship(i));
                }
                if n.pair
                    .as_ref()
                    .is_some_and(|x| matches!(x.state, PairState::RemoteCatchup | PairState::Peer))
                {
                    out.push(Act::PrimaryNoticesLoss(i));
                }
            } else {
                if !n.following() && o.up && o.c.primary && st.net.link_up {
                    out.push(Act::Connect(i));
                }
                if n.following() {
                    out.push(Act::StandbyNoticesLoss(i));
                }
                if b.may_take_over(&st.ledger) {
                    if n.link.may_ask_graceful().is_ok() && Self::connection_live(st, other(i)) {
                        out.push(Act::Graceful(i));
                    }
                    for window_only in [true, false] {
                        out.push(Act::Force {
                            node: i,
                            window_only,
                        });
                    }
                }
            }
        }
        if b.may_tick(st.now) {
            out.push(Act::Tick);
        }
        if st.net.link_up && st.net.cuts < 1 {
            out.push(Act::Cut);
        }
        if !st.net.link_up {
            out.push(Act::Heal);
        }
    }

    fn next_state(&self, last: &State, act: Act) -> Option<State> {
        let mut st = last.clone();
        let now = SCALE.us(st.now);
        match act {
            Act::Write(p) => {
                st.nodes[p].write(p, &mut st.ledger);
            }
            Act::Connect(s) => self.connect(&mut st, s),
            Act::Ship(p) => {
                if !Self::ship(&mut st, p) {
                    return None;
                }
            }
            Act::PrimaryNoticesLoss(p) => Self::primary_loses(&mut st, p),
            Act::StandbyNoticesLoss(s) => st.nodes[s].link.lost(now),
            Act::Tick => {
                st.now += 1;
                let now = SCALE.us(st.now);
                for p in 0..2 {
                    if !st.nodes[p].up {
                        continue;
                    }
                    let live = Self::connection_live(&st, p);
                    let link = st.net.link_up;
                    let (pn, sn) = both(&mut st.nodes, p);
                    if live {
                        // The standby's keep-alive ack arrives.
                        pn.ack(sn.c.end(), now);
                    }
                    let Some(pair) = pn.pair.as_mut() else {
                        continue;
                    };
                    let acts = pair.step(Event::Tick {
                        now,
                        oldest_commit_wait_since: None,
                    });
                    let (raw, sent) = (pair.peer_window_end, pair.sent);
                    for a in acts {
                        match a {
                            Action::Heartbeat { peer_window_end } if live => {
                                let window = if self.v.has(Bug::StaleWindow) {
                                    raw
                                } else {
                                    peer_window_end
                                };
                                sn.link.heartbeat(sent, window, now);
                            }
                            // The standby sees the connection close.
                            Action::Disconnect { .. } if link => sn.link.lost(now),
                            _ => {}
                        }
                    }
                }
            }
            Act::Cut => {
                st.net.link_up = false;
                st.net.cuts += 1;
            }
            Act::Heal => st.net.link_up = true,
            Act::Crash(i) => {
                st.nodes[i].crash(&mut st.ledger);
                if st.net.link_up {
                    // A dead process's sockets are reset; a dead host (cut link) says nothing.
                    st.nodes[other(i)].link.lost(now);
                    Self::primary_loses(&mut st, other(i));
                }
            }
            Act::Restart(i) => st.nodes[i].restart(&SCALE, now),
            Act::Probe(p) => {
                let o = other(p);
                let (theirs, ours) = (&st.nodes[o].c, &st.nodes[p].c);
                let (their_role, their_epoch, our_epoch) =
                    (theirs.role(), theirs.epoch, ours.epoch);
                let address = NAMES[o].to_string();
                // A primary answering learns our epoch; we learn its.
                if theirs.primary {
                    let ev = GuardEvent::PeerSeen {
                        role: PeerRole::Primary,
                        epoch: our_epoch,
                        address: NAMES[p].to_string(),
                    };
                    Self::hear(&mut st, o, ev);
                }
                if st.nodes[p].c.primary {
                    let ev = if self.v.has(Bug::ProbeOpensWrites) && their_role == PeerRole::Standby
                    {
                        GuardEvent::StandbyConnected {
                            epoch: their_epoch,
                            address,
                        }
                    } else {
                        GuardEvent::PeerSeen {
                            role: their_role,
                            epoch: their_epoch,
                            address,
                        }
                    };
                    Self::hear(&mut st, p, ev);
                }
            }
            Act::Graceful(s) => self.graceful(&mut st, s),
            Act::Force {
                node: s,
                window_only,
            } => {
                let n = &st.nodes[s];
                n.link.may_force(n.c.end(), now, window_only).ok()?;
                let was_connected = n.following();
                st.ledger
                    .forced(&st.nodes[s].c, &st.nodes[other(s)].c, window_only);
                self.promote(&mut st, s);
                if was_connected && st.net.link_up {
                    // The standby's process restarts: its old primary sees the reset.
                    Self::primary_loses(&mut st, other(s));
                }
            }
        }
        Some(st.settle())
    }

    fn properties(&self) -> Vec<Property<Self>> {
        model_kit::properties()
    }

    fn within_boundary(&self, st: &State) -> bool {
        st.nodes
            .iter()
            .all(|n| n.c.log.len() <= self.v.bounds.max_writes as usize)
    }
}

fn model(bug: Option<Bug>) -> HadrModel {
    SCALE.check();
    let v = Variant::new(bug, (Bug::NoEpochBump, |epoch, _| epoch), Bounds::until(6));
    HadrModel { v }
}

#[test]
fn takeover_fencing_and_rejoin_keep_their_promises() {
    check_model("takeover model", model(None));
}

#[test]
fn the_checker_finds_two_writers_when_promotion_keeps_the_epoch() {
    assert_caught("NoEpochBump", model(Some(Bug::NoEpochBump)), TWO_WRITERS);
}

#[test]
fn the_checker_finds_lost_commits_when_a_stale_window_is_believed() {
    assert_caught(
        "StaleWindow",
        model(Some(Bug::StaleWindow)),
        WINDOW_ONLY_LOSS,
    );
}

#[test]
fn the_checker_finds_lost_commits_when_a_probe_ends_the_start_up_wait() {
    assert_caught(
        "ProbeOpensWrites",
        model(Some(Bug::ProbeOpensWrites)),
        WINDOW_ONLY_LOSS,
    );
}
