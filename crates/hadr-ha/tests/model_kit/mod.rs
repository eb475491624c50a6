//! What the two stateright models (`takeover_model.rs`, `message_model.rs`)
//! share: the record and the durable part of a node, the clock's scale, the
//! bounds, the glue that feeds hadr-ha's rules the way the drivers
//! (`hadr-replication`, `hadr-server`) do, the properties, and the checker
//! runs. Every rule is hadr-ha's own function; what is here is only how a
//! model calls it:
//!
//! - admission: [`check_listed`], then [`WriteGuard::step`] with
//!   `StandbyConnected`, then [`admit`] (`handle` in primary.rs);
//! - the graceful hand-over: [`Handover::step`], its actions carried out by a
//!   [`Driver`] (`hand_over` in primary.rs, the hooks in node.rs);
//! - promotion with [`next_epoch`], the commit gate with [`may_release`], the
//!   standby's plan with [`rejoin`].
//!
//! Each model is its own test crate and uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::time::Instant;

use hadr_ha::admission::{admit, check_listed, AdmissionRefusal, PrimarySide, StandbySide};
use hadr_ha::commit_wait::may_release;
use hadr_ha::epoch::{history_is_ordered, next_epoch};
use hadr_ha::handover::{Action as Do, Handover, HandoverFailure, Input};
use hadr_ha::pair::{Event, Pair, PairConfig, PairState, SyncMode};
use hadr_ha::rejoin::{rejoin, Rejoin};
use hadr_ha::takeover::PEER_WINDOW_MARGIN_US;
use hadr_ha::{ConnectStatus, GuardAction, GuardEvent, StandbyLink, WriteGuard, Writes};
use hadr_log::EpochStart;
use hadr_protocol::PeerRole;
use stateright::{Checker, HasDiscoveries, Model, Property};

/// A log record: (epoch it was written in, client write id). Page contents
/// and byte LSNs are abstracted away: an LSN is a record count.
pub type Rec = (u64, u8);

/// Node names, for the guard's messages, the standby's link and counterexamples.
pub const NAMES: [&str; 2] = ["A", "B"];

/// The other node of the two.
pub fn other(i: usize) -> usize {
    1 - i
}

/// Node `i` and the other one, both to change.
pub fn both<T>(xs: &mut [T; 2], i: usize) -> (&mut T, &mut T) {
    let [a, b] = xs;
    if i == 0 {
        (a, b)
    } else {
        (b, a)
    }
}

/// Whether `a` is `b` cut to `a`'s length.
pub fn is_prefix(a: &[Rec], b: &[Rec]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

/// The model's clock: it counts units of `unit_us` µs, and the pair's
/// settings are whole units. SYNC only (the mode that gates commits the most;
/// NEARSYNC differs only in which position an ack carries, which a model
/// whose received = flushed cannot tell apart).
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// One unit, in the µs the pure code works in.
    pub unit_us: u64,
    /// `hadr_timeout`, in units.
    pub timeout: u64,
    /// `hadr_peer_window`, in units.
    pub peer_window: u64,
}

impl Scale {
    /// `t` units in µs.
    pub const fn us(&self, t: u64) -> u64 {
        t * self.unit_us
    }

    /// The settings of every pair in the model.
    pub fn pair_config(&self) -> PairConfig {
        PairConfig {
            mode: SyncMode::Sync,
            timeout_us: self.us(self.timeout),
            peer_window_us: self.us(self.peer_window),
            peer_wait_limit_us: 0,
        }
    }

    /// How long a hand-over waits for the standby's confirmation: four
    /// timeouts, as `hand_over` in primary.rs.
    pub fn flush_wait_us(&self) -> u64 {
        4 * self.us(self.timeout)
    }

    /// The scale is sound for [`forget_unread`]: every tick is long enough for
    /// a heartbeat to be due, and part of a window is usable past the margin.
    pub fn check(&self) {
        assert!(self.pair_config().heartbeat_us() <= self.unit_us);
        assert!(PEER_WINDOW_MARGIN_US < self.us(self.peer_window));
    }
}

/// How far a model explores.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub max_writes: u8,
    pub max_takeovers: u8,
    pub max_crashes: u8,
    /// Last tick (units).
    pub max_time: u64,
}

impl Bounds {
    /// Two writes, two takeovers, one crash, and the clock up to `max_time`.
    pub const fn until(max_time: u64) -> Bounds {
        Bounds {
            max_writes: 2,
            max_takeovers: 2,
            max_crashes: 1,
            max_time,
        }
    }

    pub fn may_write(&self, l: &Ledger) -> bool {
        l.writes < self.max_writes
    }

    pub fn may_take_over(&self, l: &Ledger) -> bool {
        l.takeovers < self.max_takeovers
    }

    pub fn may_crash(&self, l: &Ledger) -> bool {
        l.crashes < self.max_crashes
    }

    pub fn may_tick(&self, now: u64) -> bool {
        now < self.max_time
    }
}

/// Which rules a model checks, and how far: hadr's (`bug: None`) or a
/// deliberately broken variant (a negative control), each of which
/// overrides one call to hadr-ha in the model's glue.
pub struct Variant<B> {
    pub bug: Option<B>,
    /// How a promotion picks its epoch.
    pub choose: EpochChoice,
    pub bounds: Bounds,
}

impl<B: Copy + PartialEq> Variant<B> {
    /// `bad_epochs`: the bug whose promotions pick their epoch by the given
    /// broken rule instead of [`next_epoch`].
    pub fn new(bug: Option<B>, bad_epochs: (B, EpochChoice), bounds: Bounds) -> Variant<B> {
        let choose = if bug == Some(bad_epochs.0) {
            bad_epochs.1
        } else {
            next_epoch
        };
        Variant {
            bug,
            choose,
            bounds,
        }
    }

    /// This variant is the broken one `b`.
    pub fn has(&self, b: B) -> bool {
        self.bug == Some(b)
    }
}

/// The durable part of a node: its control file (role, epoch, history,
/// highest epoch heard of) and its log. A kill -9 keeps all of it (the OS
/// keeps written bytes: received = flushed on a standby).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Control {
    pub primary: bool,
    pub epoch: u64,
    pub history: Vec<EpochStart>,
    pub highest_seen: u64,
    /// LSN = index.
    pub log: Vec<Rec>,
}

/// How a promotion picks its epoch: `(current, highest_seen) -> epoch`.
/// hadr's is [`next_epoch`]; negative controls pass broken ones.
pub type EpochChoice = fn(u64, u64) -> u64;

impl Control {
    /// Epoch 1, empty log.
    pub fn new(primary: bool) -> Control {
        Control {
            primary,
            epoch: 1,
            history: vec![EpochStart {
                epoch: 1,
                start_lsn: 0,
            }],
            highest_seen: 1,
            log: vec![],
        }
    }

    pub fn end(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn role(&self) -> PeerRole {
        if self.primary {
            PeerRole::Primary
        } else {
            PeerRole::Standby
        }
    }

    /// Append client write `id`; the LSN after its record.
    pub fn write(&mut self, id: u8) -> u64 {
        self.log.push((self.epoch, id));
        self.end()
    }

    /// The write guard of a process starting in this role: a fresh role (or
    /// a promotion) does not wait; a restart as primary does (the start-up
    /// rule). The model never starts with `--force`.
    pub fn start_guard(&self, restart: bool) -> WriteGuard {
        WriteGuard::start(self.epoch, self.primary, restart && self.primary, false)
    }

    /// Become the primary of the epoch `choose` picks, from our log end on.
    pub fn promote(&mut self, choose: EpochChoice) {
        let epoch = choose(self.epoch, self.highest_seen);
        self.epoch = epoch;
        self.highest_seen = self.highest_seen.max(epoch);
        self.history.push(EpochStart {
            epoch,
            start_lsn: self.end(),
        });
        self.primary = true;
    }

    /// Fenced by `by_epoch`: the standby role and the newer epoch, durably.
    pub fn fence(&mut self, by_epoch: u64) {
        self.primary = false;
        self.highest_seen = self.highest_seen.max(by_epoch);
    }

    /// The hand-over's `MarkStandby` (`mark_standby` in node.rs): the standby
    /// role, and the next epoch counted as seen.
    pub fn mark_standby(&mut self) {
        self.primary = false;
        self.highest_seen = self.highest_seen.max(self.epoch + 1);
    }

    /// The hand-over's `UnmarkStandby`: the primary role again.
    pub fn unmark_standby(&mut self) {
        self.primary = true;
    }

    /// Take a newer primary's epoch and history (`adopt_epochs` in standby.rs).
    pub fn adopt(&mut self, epoch: u64, history: &[EpochStart]) {
        self.highest_seen = self.highest_seen.max(self.epoch).max(epoch);
        self.epoch = epoch;
        self.history = history.to_vec();
    }

    /// The standby's plan for following a primary of `their_epoch` / `theirs`.
    pub fn rejoin(&self, their_epoch: u64, theirs: &[EpochStart]) -> Rejoin {
        rejoin(self.epoch, &self.history, self.end(), their_epoch, theirs)
    }

    /// What a primary knows of itself, for [`admit`].
    pub fn primary_side(&self) -> PrimarySide<'_> {
        PrimarySide {
            epoch: self.epoch,
            history: &self.history,
            log_start: 0,
            log_end: self.end(),
        }
    }

    /// What node `i`, as a standby, says of itself in its hello.
    pub fn standby_side(&self, i: usize) -> StandbySide<'_> {
        standby_side(i, self.epoch, &self.history, self.end())
    }
}

/// What standby `i` says of itself in a hello.
pub fn standby_side(i: usize, epoch: u64, history: &[EpochStart], lsn: u64) -> StandbySide<'_> {
    StandbySide {
        address: NAMES[i],
        epoch,
        history,
        lsn,
    }
}

/// One node: its [`Control`] survives a crash; the rest does not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The process runs (false: down).
    pub up: bool,
    /// Durable.
    pub c: Control,
    /// Write permission.
    pub guard: WriteGuard,
    /// On a primary, its view of the other node.
    pub pair: Option<Pair>,
    /// Commits waiting for the gate, as (write id, LSN after the record).
    pub pending: Vec<(u8, u64)>,
    /// On a standby, its replication link.
    pub link: StandbyLink,
    /// On a primary, a graceful hand-over under way between two steps of
    /// the model, and what it waits for (the coarse model runs one within
    /// a step).
    pub handover: Option<(Handover, Waits)>,
    /// On a standby, a graceful takeover was asked for on this connection.
    pub takeover_requested: bool,
}

impl Node {
    /// A node of epoch 1 with an empty log. A fresh primary does not wait
    /// for its standby.
    pub fn new(primary: bool, scale: &Scale) -> Node {
        let c = Control::new(primary);
        Node {
            up: true,
            guard: c.start_guard(false),
            c,
            pair: primary.then(|| Pair::new(scale.pair_config(), 0)),
            pending: vec![],
            link: StandbyLink::default(),
            handover: None,
            takeover_requested: false,
        }
    }

    /// The process runs as a primary: its control file says so, or it is
    /// handing over (marked a standby, not restarted yet).
    pub fn runs_primary(&self) -> bool {
        self.c.primary || self.handover.is_some()
    }

    /// The role it says it has in a hello or a probe answer.
    pub fn role(&self) -> PeerRole {
        if self.handover.is_some() {
            PeerRole::Primary
        } else {
            self.c.role()
        }
    }

    /// The standby's link is up (CONNECTED in its status).
    pub fn following(&self) -> bool {
        self.link.connect_status == ConnectStatus::Connected
    }

    /// It runs and its guard lets it write.
    pub fn writable(&self) -> bool {
        self.up && self.guard.writable()
    }

    /// Forget everything volatile, as a process that ends does; the node
    /// restarts (or stays down) in the role of its control file.
    pub fn reset_volatile(&mut self) {
        self.guard = WriteGuard::start(self.c.epoch, false, false, false);
        self.pair = None;
        self.pending.clear();
        self.link = StandbyLink::default();
        self.handover = None;
        self.takeover_requested = false;
    }

    /// kill -9.
    pub fn crash(&mut self, l: &mut Ledger) {
        l.crashes += 1;
        self.up = false;
        self.reset_volatile();
    }

    /// The process starts again; a primary that was primary before waits
    /// for its standby (the start-up rule).
    pub fn restart(&mut self, scale: &Scale, now: u64) {
        self.up = true;
        self.guard = self.c.start_guard(true);
        self.pair = self.c.primary.then(|| Pair::new(scale.pair_config(), now));
    }

    /// Promote (graceful or forced): a fresh role, no start-up wait.
    pub fn promote(&mut self, choose: EpochChoice, scale: &Scale, now: u64, l: &mut Ledger) {
        self.c.promote(choose);
        self.reset_volatile();
        self.guard = self.c.start_guard(false);
        self.pair = Some(Pair::new(scale.pair_config(), now));
        l.takeovers += 1;
    }

    /// Carry out a fence: stop writes (waiting commits fail), record the
    /// standby role and the newer epoch durably, restart as a standby.
    pub fn fence(&mut self, by_epoch: u64, l: &mut Ledger) {
        self.c.fence(by_epoch);
        self.reset_volatile();
        l.seen |= FENCED;
    }

    /// The guard hears `ev`; the newer epoch it fences this node by, if any
    /// (the caller carries the fence out).
    pub fn hear(&mut self, ev: GuardEvent) -> Option<u64> {
        fenced_by(&self.guard.step(ev))
    }

    /// A client write, `i` being this node; the LSN after its record.
    pub fn write(&mut self, i: usize, l: &mut Ledger) -> u64 {
        let id = l.writes;
        l.writes += 1;
        let lsn = self.c.write(id);
        self.pending.push((id, lsn));
        l.writers.insert((self.c.epoch, i));
        lsn
    }

    /// The primary's connection to its standby broke.
    pub fn lose(&mut self, now: u64) {
        if let Some(pair) = self.pair.as_mut() {
            pair.step(Event::Lost { now, clean: false });
        }
    }

    /// The standby acknowledged its log end `end` (received = flushed =
    /// replayed).
    pub fn ack(&mut self, end: u64, now: u64) {
        if let Some(pair) = self.pair.as_mut() {
            pair.step(Event::Ack {
                now,
                received: end,
                flushed: end,
                replayed: end,
            });
        }
    }

    /// The hand-over's first input, from the pair as it stands.
    pub fn handover_request(&self) -> Option<Input> {
        let pair = self.pair.as_ref()?;
        Some(Input::Requested {
            state: pair.state,
            mode: pair.config().mode,
            sent: pair.sent,
        })
    }

    /// After every step: commits return as soon as the gate lets them (the
    /// earliest acknowledgement is the hardest case for the properties), and
    /// what no rule reads again is forgotten.
    pub fn settle(&mut self, i: usize, l: &mut Ledger) {
        let fenced = matches!(self.guard.writes, Writes::Fenced { .. });
        if let Some(pair) = self.pair.as_mut() {
            if self.up && !fenced {
                l.release(i, &self.c, pair, &mut self.pending);
            }
            forget_unread(pair);
        }
        forget_unread_link(&mut self.link);
    }
}

/// The newer epoch a guard's actions fence the node by, if any.
pub fn fenced_by(actions: &[GuardAction]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        GuardAction::Fence { by_epoch, .. } => Some(*by_epoch),
        _ => None,
    })
}

/// What a primary does with a standby's hello.
#[derive(Debug)]
pub enum Admitted {
    /// The standby's epoch is newer: this primary is fenced by it.
    Fenced(u64),
    /// Refused (needs rewind, clone, or not listed).
    Refused(AdmissionRefusal),
    /// Stream to it from this LSN.
    Stream(u64),
}

/// The primary's answer to a standby's hello, as `handle` in primary.rs
/// decides it: the target list first (an unlisted peer must not end a
/// start-up wait), then the write guard, then [`admit`]. Both nodes of a
/// model list each other.
pub fn admit_standby(
    guard: &mut WriteGuard,
    primary: PrimarySide<'_>,
    standby: StandbySide<'_>,
) -> Admitted {
    if let Err(r) = check_listed(&standby, true) {
        return Admitted::Refused(r);
    }
    let actions = guard.step(GuardEvent::StandbyConnected {
        epoch: standby.epoch,
        address: standby.address.to_string(),
    });
    if let Some(by) = fenced_by(&actions) {
        return Admitted::Fenced(by);
    }
    match admit(&primary, &standby) {
        Ok(from) => Admitted::Stream(from),
        Err(r) => Admitted::Refused(r),
    }
}

/// A standby's link, less what only status reads (times of the last message
/// and of the last status change, the primary's name): states that differ
/// only there behave alike.
pub fn forget_unread_link(link: &mut StandbyLink) {
    link.connect_status_since = 0;
    link.last_receive = 0;
    link.primary = None;
}

/// Erase what a [`Pair`] holds but will overwrite before it reads it again.
/// Sound only with [`Scale::check`]: a heartbeat is due at every tick.
pub fn forget_unread(pair: &mut Pair) {
    // Status only.
    pair.status_since = 0;
    pair.heartbeats_missed = 0;
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

/// The whole system: the two nodes, the clock, the ledger, and what the
/// model's network holds (`N`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World<N> {
    pub nodes: [Node; 2],
    /// Model time (units).
    pub now: u64,
    pub ledger: Ledger,
    pub net: N,
}

impl<N> World<N> {
    /// Node A primary, node B its standby, both of epoch 1 with empty logs.
    pub fn new(net: N, scale: &Scale) -> World<N> {
        World {
            nodes: [Node::new(true, scale), Node::new(false, scale)],
            now: 0,
            ledger: Ledger::default(),
            net,
        }
    }

    /// After every step (see [`Node::settle`]).
    pub fn settle(mut self) -> World<N> {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.settle(i, &mut self.ledger);
        }
        self
    }
}

/// What a model's network does for the properties and the hand-over.
pub trait Net: Sized {
    /// Node `s` follows the other node as its standby on a live connection.
    fn following(w: &World<Self>, s: usize) -> bool;
    /// Primary `p`'s sender ships its next record; whether it could.
    fn ship_next(w: &mut World<Self>, p: usize) -> bool;
    /// Primary `p` sends `TakeoverReady { end }` to its standby.
    fn send_ready(w: &mut World<Self>, p: usize, end: u64) -> Result<(), String>;
    /// Primary `p` restarted as a standby at the end of a hand-over.
    fn restarted_as_standby(_w: &mut World<Self>, _p: usize) {}
}

/// The primary `p`'s side of a hand-over: what the hooks of node.rs and the
/// socket of primary.rs do for `hand_over`.
pub struct Driver<'a, N> {
    pub w: &'a mut World<N>,
    pub p: usize,
    pub scale: Scale,
    /// A negative control: carry out `MarkStandby` by telling the standby,
    /// and `SendReady` by recording the standby role (the wrong order).
    pub tell_before_mark: bool,
    /// The end the standby was told it has everything up to.
    pub told: Option<u64>,
}

impl<'a, N: Net> Driver<'a, N> {
    pub fn new(w: &'a mut World<N>, p: usize, scale: Scale) -> Driver<'a, N> {
        Driver {
            w,
            p,
            scale,
            tell_before_mark: false,
            told: None,
        }
    }

    /// The primary handing over.
    pub fn node(&mut self) -> &mut Node {
        &mut self.w.nodes[self.p]
    }

    pub fn now_us(&self) -> u64 {
        self.scale.us(self.w.now)
    }

    /// Stop writes for good; the final log end. (No write starts while a
    /// hand-over runs.)
    fn stop_writes(&mut self) -> u64 {
        self.node().c.end()
    }

    /// Ship the log from `from` to `to`; where it got to.
    fn ship(&mut self, from: u64, to: u64) -> Result<u64, String> {
        for _ in from..to {
            if !N::ship_next(self.w, self.p) {
                return Err("the standby's connection is gone".into());
            }
        }
        Ok(to)
    }

    /// The standby's flushed position as the pair last heard it.
    fn flushed(&mut self) -> u64 {
        self.node().pair.as_ref().map_or(0, |x| x.flushed)
    }

    fn send_ready(&mut self, end: u64) -> Result<(), String> {
        N::send_ready(self.w, self.p, end)?;
        self.told = Some(end);
        Ok(())
    }

    /// Record the standby role durably.
    fn mark_standby(&mut self) {
        if self.tell_before_mark {
            let end = self.node().c.end();
            let _ = self.send_ready(end);
        } else {
            self.node().c.mark_standby();
        }
    }

    /// Tell the standby to promote.
    fn tell(&mut self, end: u64) -> Result<(), String> {
        if self.tell_before_mark {
            self.node().c.mark_standby();
            return Ok(());
        }
        self.send_ready(end)
    }

    /// Restart as a standby: the commits the standby's acks released
    /// return first.
    fn become_standby(&mut self) {
        let (n, l) = (&mut self.w.nodes[self.p], &mut self.w.ledger);
        n.settle(self.p, l);
        n.reset_volatile();
        N::restarted_as_standby(self.w, self.p);
    }
}

/// What a hand-over waits for between two steps of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Waits {
    /// The standby's acknowledgement of the tail.
    Flush,
    /// The durable write of the standby role.
    Mark,
    /// The `TakeoverReady` message to go out.
    Tell { end: u64 },
    /// Nothing: handed over, or given up (writes resumed).
    Over,
}

/// Feed `input` to the hand-over and carry out its actions as `hand_over` in
/// primary.rs does, until it waits for the standby (a `Flushed` already
/// reported and not enough), for a durable write, for the network, or is over.
pub fn drive<N: Net>(h: &mut Handover, input: Input, host: &mut Driver<'_, N>) -> Waits {
    let mut reported = matches!(input, Input::Flushed { .. });
    let mut todo = VecDeque::from(h.step(input));
    while let Some(action) = todo.pop_front() {
        let now = host.now_us();
        let next = match action {
            Do::StopWrites => Input::WritesStopped {
                end: host.stop_writes(),
                now,
            },
            Do::Ship { from, to } => match host.ship(from, to) {
                Ok(to) => Input::Shipped { to, now },
                Err(e) => Input::Failed(HandoverFailure::Ship(e)),
            },
            // The driver reports the position at once, and again after the
            // next ack (or tick) if that was not enough.
            Do::AwaitFlushed if reported => return Waits::Flush,
            Do::AwaitFlushed => Input::Flushed {
                lsn: host.flushed(),
                now,
            },
            Do::MarkStandby => return Waits::Mark,
            Do::SendReady { end } => return Waits::Tell { end },
            Do::UnmarkStandby => {
                host.node().c.unmark_standby();
                continue;
            }
            // Writes resume once the hand-over is gone from the node.
            Do::ResumeWrites => continue,
            Do::BecomeStandby => {
                host.become_standby();
                return Waits::Over;
            }
            Do::GiveUp(_) => return Waits::Over,
        };
        reported = matches!(next, Input::Flushed { .. });
        todo.extend(h.step(next));
    }
    Waits::Over
}

/// Carry out what the hand-over waits for, and drive it on.
pub fn carry_out<N: Net>(h: &mut Handover, waits: Waits, host: &mut Driver<'_, N>) -> Waits {
    let input = match waits {
        Waits::Flush => Input::Flushed {
            lsn: host.flushed(),
            now: host.now_us(),
        },
        Waits::Mark => {
            host.mark_standby();
            Input::Marked
        }
        Waits::Tell { end } => match host.tell(end) {
            Ok(()) => Input::Told,
            Err(e) => Input::Failed(HandoverFailure::Tell(e)),
        },
        Waits::Over => return Waits::Over,
    };
    drive(h, input, host)
}

/// A client write that was acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acked {
    pub id: u8,
    /// The epoch of the record, i.e. of the primary that acknowledged it.
    pub epoch: u64,
    /// The node that acknowledged it.
    pub node: usize,
    /// Its position in that node's log.
    pub lsn: u64,
}

/// Witnesses for the `sometimes` properties (bits of [`Ledger::seen`]).
pub const GRACEFUL: u8 = 1;
pub const WINDOW_ONLY_AFTER_ACK: u8 = 2;
pub const REWOUND: u8 = 4;
pub const FENCED: u8 = 8;

/// What the properties read: every acknowledged write, who wrote in which
/// epoch, what a `--peer-window-only` takeover lacked, whether any forced
/// takeover ran, and the witnesses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ledger {
    /// Client writes so far (the next write's id).
    pub writes: u8,
    /// Promotions so far.
    pub takeovers: u8,
    /// Crashes so far.
    pub crashes: u8,
    pub acked: BTreeSet<Acked>,
    /// Every (epoch, node) that appended a client write.
    pub writers: BTreeSet<(u64, usize)>,
    /// Write ids a `--peer-window-only` takeover did not have although it
    /// promised to (checked at the moment of the takeover).
    pub window_only_losses: Vec<u8>,
    /// A forced takeover ran (two primaries may exist until one is fenced).
    pub forced: bool,
    /// Witness bits.
    pub seen: u8,
}

impl Ledger {
    /// Release the commits of primary `node` that its pair's gate lets
    /// return now ([`may_release`] over its one standby).
    pub fn release(&mut self, node: usize, c: &Control, pair: &Pair, pending: &mut Vec<(u8, u64)>) {
        pending.retain(|&(id, lsn)| {
            let done = may_release(std::iter::once(pair), lsn);
            if done {
                self.acked.insert(Acked {
                    id,
                    epoch: c.epoch,
                    node,
                    lsn: lsn - 1,
                });
            }
            !done
        });
    }

    /// A forced takeover on `taker`; `old` is the other node. A
    /// `--peer-window-only` one promised the commits of the primary whose
    /// window it holds: every write acknowledged in its own epoch, and every
    /// older one that primary still holds (a plain `--force` may lose commits
    /// by design, and so may the old primary after it until it is fenced).
    /// Writes of a newer epoch are not promised: a takeover into an epoch that
    /// is already superseded is fenced as soon as it meets the newer primary.
    pub fn forced(&mut self, taker: &Control, old: &Control, window_only: bool) {
        self.forced = true;
        if !window_only {
            return;
        }
        let lost = self.acked.iter().filter(|a| {
            let rec = (a.epoch, a.id);
            let promised = a.epoch == taker.epoch
                || (a.epoch < taker.epoch && old.log.get(a.lsn as usize) == Some(&rec));
            promised && taker.log.get(a.lsn as usize) != Some(&rec)
        });
        self.window_only_losses.extend(lost.map(|a| a.id));
        if !self.acked.is_empty() {
            self.seen |= WINDOW_ONLY_AFTER_ACK;
        }
    }
}

pub const TWO_WRITERS: &str = "no two nodes write in one epoch";
pub const WINDOW_ONLY_LOSS: &str = "a --peer-window-only takeover loses no acknowledged write";
pub const NOT_A_PREFIX: &str = "a following standby's log is its primary's log cut to its length";
pub const TWO_PRIMARIES: &str = "without a forced takeover, at most one node is primary";
pub const HISTORY_DISORDERED: &str = "every epoch history is ordered";

/// The properties both models check.
pub fn properties<M, N>() -> Vec<Property<M>>
where
    M: Model<State = World<N>>,
    N: Net,
{
    vec![
        Property::always(TWO_WRITERS, |_, st: &World<N>| {
            let w = &st.ledger.writers;
            let shared = w.iter().any(|&(epoch, n)| w.contains(&(epoch, other(n))));
            let both_writable =
                st.nodes.iter().all(Node::writable) && st.nodes[0].c.epoch == st.nodes[1].c.epoch;
            !shared && !both_writable
        }),
        Property::always(WINDOW_ONLY_LOSS, |_, st: &World<N>| {
            st.ledger.window_only_losses.is_empty()
        }),
        Property::always(NOT_A_PREFIX, |_, st: &World<N>| {
            (0..2).all(|s| {
                !N::following(st, s) || is_prefix(&st.nodes[s].c.log, &st.nodes[other(s)].c.log)
            })
        }),
        // The hand-over's order: the old primary is a standby before the
        // standby is told; a crash between any two steps leaves two standbys.
        Property::always(TWO_PRIMARIES, |_, st: &World<N>| {
            st.ledger.forced || !(st.nodes[0].c.primary && st.nodes[1].c.primary)
        }),
        // What `adopt_epochs` in standby.rs debug-asserts of what it adopts.
        Property::always(HISTORY_DISORDERED, |_, st: &World<N>| {
            (0..2).all(|i| history_is_ordered(&st.nodes[i].c.history))
        }),
        Property::sometimes("a write is acknowledged", |_, st: &World<N>| {
            !st.ledger.acked.is_empty()
        }),
        Property::sometimes(
            "a --peer-window-only takeover after an acknowledged write",
            |_, st: &World<N>| st.ledger.seen & WINDOW_ONLY_AFTER_ACK != 0,
        ),
        Property::sometimes("a graceful takeover", |_, st: &World<N>| {
            st.ledger.seen & GRACEFUL != 0
        }),
        Property::sometimes("a diverged node rewinds", |_, st: &World<N>| {
            st.ledger.seen & REWOUND != 0
        }),
        Property::sometimes("a superseded primary is fenced", |_, st: &World<N>| {
            st.ledger.seen & FENCED != 0
        }),
    ]
}

/// Check hadr's rules: every property holds (and every witness is found).
pub fn check_model<M>(name: &str, model: M)
where
    M: Model + Send + Sync + 'static,
    M::State: std::fmt::Debug + std::hash::Hash + Send + Sync + Clone + PartialEq,
    M::Action: std::fmt::Debug + Send + Sync + Clone + PartialEq,
{
    let started = Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    eprintln!(
        "{name}: {} unique states ({} generated), depth {}, {:.1} s",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker.assert_properties();
}

/// Check a broken variant (a negative control): `property` must fail. The
/// counterexample's actions are returned (and printed, with their count).
pub fn assert_caught<M>(variant: &str, model: M, property: &'static str) -> Vec<M::Action>
where
    M: Model + Send + Sync + 'static,
    M::State: std::fmt::Debug + std::hash::Hash + Send + Sync + Clone + PartialEq,
    M::Action: std::fmt::Debug + Send + Sync + Clone + PartialEq,
{
    let checker = model
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    let Some(path) = checker.discovery(property) else {
        panic!("{variant}: the checker found no counterexample to {property:?}");
    };
    let actions = path.into_actions();
    eprintln!(
        "{variant} breaks {property:?} in {} steps: {actions:?}",
        actions.len()
    );
    actions
}
