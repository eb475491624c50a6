//! Model check (stateright) of the resources that follow the primary
//! (docs/resources.md): a resource must never run on both nodes, starts go
//! in order and stops in reverse, and a node whose stop could not be
//! confirmed stays fenced.
//!
//! Two nodes, A (the writable primary) and B (its standby), each with its
//! own `hadr_ha::resources::Group` of the same two members: `ip` (a VIP: not
//! killable) and `app` (a supervised service: killable, `max_restarts` 1).
//! Every decision is `Group::step`, fed as `Driver::run` and `carry_out` in
//! `crates/hadr-resources/src/manager.rs` feed it: the operation it asks for
//! (at most one in flight per group) is carried out and its outcome fed back
//! as `Started`, `Stopped`, `Killed`; a monitor failure is fed only while the
//! resource is `Online`; `RetryStops` while the group is blocked; the
//! node's desire as `Want` whenever it changes.
//!
//! The physical world, per node and resource: running or not, and how long
//! ago its stop (or kill) began. A start makes it run at any moment within
//! `start_timeout`, or never (a failed start). A stop makes it go at any
//! moment within `stop_timeout`, or (where allowed, see below) later, or
//! never; a kill makes a killable one go within `kill_timeout`. A running
//! resource may also die on its own (at most [`MAX_DEATHS`] times). The
//! driver's reports are truthful: `Started { ok }` is whether it runs
//! within `start_timeout`, `Stopped { confirmed }` whether it is gone by
//! `stop_timeout` (the monitor decides, not the stop command), `Killed`
//! whether it is gone by `kill_timeout`.
//!
//! Time is discrete: one unit is 1 s, and an operation issued in unit `t`
//! with timeout `d` has its effect in units `t .. t + d − 1` and is reported
//! by unit `t + d` at the latest. What the drivers do within a few tens of
//! milliseconds (the node's 50 ms poll of its writability in
//! `hadr_server::resource_link`, the monitor's 100 ms polls) happens within
//! the unit: those steps are urgent, the clock does not advance past them.
//! A resource's death may be noticed by its monitor at any later time.
//!
//! The role timeline is one of four scenarios, each from A's group online
//! and B's offline (both booted through `Group::step`: probes, then starts):
//!
//! - **Hand-over** (docs/resources.md §Who starts when, `demotion.rs`): A
//!   stops writing, so its group wants `Offline`; A waits until its group is
//!   `all_down()`, at most the stop bound plus 2 s, and only then tells B,
//!   whose group then wants `Online` at once. If the stops are not
//!   confirmed in time the hand-over fails: A takes its writes back and its
//!   group wants `Online` again — unless it is blocked (a stop that could
//!   not be confirmed makes `write_refusal` refuse, so the node stays
//!   fenced). Here any stop may outlast its timeout, or never end.
//! - **Failover**: A stops being writable at `T0` (its lease ran out) and
//!   its driver notices within a poll; B promotes at any time from
//!   `T0 + margin` on and its group wants `Online` only from
//!   `promotion + stop_bound − margin` (`resource_link::start_delay`; plus
//!   a start in flight abandoned when A's group stops wanting to run, see
//!   [`Rules`]).
//! - **hadr killed, host alive**: A's group wants `Offline` at `T0` at once
//!   and its stops carry on (the guard, `crates/hadr-resources/src/guard.rs`,
//!   runs the same stops); B as in a failover.
//! - **Host crash**: at `T0` every resource of A stops at once and A takes
//!   no further step; B as in a failover.
//!
//! In the last three the new primary cannot hear the old one, so the timing
//! rule is all there is: a stop that is not confirmed within its timeout
//! can be escalated only for a killable resource. A non-killable stop that
//! outlasts its timeout breaks the rule whatever B waits, so these
//! scenarios assume non-killable stops end within `stop_timeout` (the
//! stop bound's premise); `a_stuck_vip_after_a_failover_runs_twice` shows
//! what happens without it (docs/resources.md says so).
//!
//! The stop bound is recomputed here ([`stop_bound`]) the way
//! `hadr_resources::spec::stop_bound` computes it (hadr-ha's tests cannot
//! depend on hadr-resources): the sum of every member's `stop_timeout`,
//! plus `kill_timeout` for a killable one.
//!
//! Checked, always: no resource runs on both nodes; on each node, a
//! resource starts only while every resource before it runs (or died on
//! its own since), and a stop or kill begins only when no resource after it
//! runs; a node whose group is blocked is never told to want `Online`; each
//! real failure (a death, a failed start) is counted once; one operation at
//! a time. Sometimes (so that the model is not vacuous): B's group comes
//! online after a hand-over, and after each of the other three; a
//! hand-over fails and A's group runs again; a group is blocked.
//!
//! **Findings.** The model found three real problems, now fixed: a
//! failure counted again while its restart waited, a restart that missed a
//! start in flight (both in `Group::step`, with scenarios in
//! `testdata/resources.txt`), and a start in flight that outlasted the stop
//! bound (the driver now abandons it: [`Rules`]). Broken variants ([`Bug`],
//! the negative controls, and `abandon_start` off) show the checker
//! catches what the rules are for:
//! B starting without the stop-bound wait, stops taken as done when the
//! stop command returns, B told before A's group is all down, a block
//! ignored when a hand-over fails.

mod model_kit;

use hadr_ha::resources::{Action, Exhausted, Group, Input, Member, State, Want};
use model_kit::{assert_caught, check_model, NAMES};
use stateright::{Model, Property};

const A: usize = 0;
const B: usize = 1;

/// A member's timeouts, in units (1 s).
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    start: u8,
    stop: u8,
    kill: u8,
}

/// The two members: `ip` (index 0, a VIP) and `app` (index 1, a supervised
/// service).
const N: usize = 2;
const TIMEOUTS: [Timeouts; N] = [
    Timeouts {
        start: 1,
        stop: 1,
        kill: 0,
    },
    Timeouts {
        start: 2,
        stop: 2,
        kill: 1,
    },
];

fn members() -> Vec<Member> {
    vec![
        Member {
            name: "ip".into(),
            max_restarts: 1,
            on_exhausted: Exhausted::Stop,
            killable: false,
        },
        Member {
            name: "app".into(),
            max_restarts: 1,
            on_exhausted: Exhausted::Stop,
            killable: true,
        },
    ]
}

fn killable(i: usize) -> bool {
    TIMEOUTS[i].kill > 0
}

/// `hadr_resources::spec::stop_bound`, recomputed: each member's stop
/// timeout, plus its kill timeout if it is killable (they stop one after
/// the other).
fn stop_bound() -> u8 {
    (0..N)
        .map(|i| TIMEOUTS[i].stop + if killable(i) { TIMEOUTS[i].kill } else { 0 })
        .sum()
}

/// `lease_margin`, in units: B promotes at least this long after A stopped
/// being writable (docs/failover.md §Lease rules).
const MARGIN: u8 = 1;
/// How long A's hand-over waits for its group to be all down: the stop
/// bound plus 2 s (`stop_resources_for_hand_over` in demotion.rs).
fn handover_wait() -> u8 {
    stop_bound() + 2
}
/// The clock stops here.
const HORIZON: u8 = 11;
/// The role change (a hand-over's start, `T0`) happens no later than this.
const LAST_EVENT: u8 = 2;
/// Deaths of a running resource on its own, in all.
const MAX_DEATHS: u8 = 2;
/// `monitor_interval`, in units.
const MONITOR_INTERVAL: u8 = 2;
/// An age that says "long past every timeout" (ages stop counting there).
const OLD: u8 = 9;

/// Broken variants: each changes one thing the glue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// (a) B's group wants `Online` at promotion, without the stop-bound wait.
    NoStopBoundWait,
    /// (b) The driver reports `Stopped { confirmed: true }` as soon as the
    /// stop command returns, without waiting for the monitor.
    TrustStopCommand,
    /// (c) The hand-over tells B before A's group is all down.
    TellEarly,
    /// (d) A failed hand-over gives A its resources back even while its
    /// group is blocked.
    IgnoreBlocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scenario {
    Handover,
    Failover,
    HadrKilled,
    HostCrash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OpKind {
    Start,
    Stop,
    Kill,
}

/// The operation a group's driver carries out (at most one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Op {
    kind: OpKind,
    i: usize,
    /// Units since it was issued.
    age: u8,
}

impl Op {
    fn timeout(&self) -> u8 {
        let t = TIMEOUTS[self.i];
        match self.kind {
            OpKind::Start => t.start,
            OpKind::Stop => t.stop,
            OpKind::Kill => t.kill,
        }
    }
}

/// One resource in the physical world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Res {
    running: bool,
    /// Units since its stop (or kill) began, while it still runs.
    stop_age: Option<u8>,
    /// It died on its own and has not started since.
    died: bool,
    /// Its monitor runs next in this unit (`monitor_interval` after the last
    /// run, or after it came online: `Driver::run`'s `next_monitor`).
    next_monitor: u8,
    /// Real failures: deaths and failed starts.
    failed: u8,
}

/// One node: its group, its driver's operation, its resources, and what
/// its role says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    group: Group,
    op: Option<Op>,
    res: [Res; N],
    /// The node's driver runs (false once its host crashed).
    alive: bool,
    /// Writable primary, as far as the role goes (lease, promotion).
    writable: bool,
    /// A hand-over stopped its writes.
    demoting: bool,
    /// The primary group may not start before this unit (the new primary's
    /// stop-bound wait).
    not_before: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Handover {
    Idle,
    /// A waits for its group to be all down; units since it began.
    Stopping(u8),
    Told,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct World {
    scenario: Scenario,
    now: u8,
    nodes: [Node; 2],
    handover: Handover,
    /// When A stopped being writable (failover, kill, crash).
    t0: Option<u8>,
    deaths: u8,
    /// A start began while an earlier resource was not running.
    start_misordered: bool,
    /// A stop began while a later resource ran.
    stop_misordered: bool,
    /// A blocked group was told to want `Online`.
    unfenced: bool,
    /// A second operation was asked while one was in flight.
    two_ops: bool,
    /// Witness: A's group was blocked.
    seen_blocked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Act {
    Tick,
    /// The operation's resource starts running.
    Up(usize),
    /// A stopping resource is gone.
    Gone(usize, usize),
    /// The driver feeds its operation's outcome.
    Report(usize),
    /// A running resource dies on its own.
    Die(usize, usize),
    /// The monitor notices.
    MonitorFailed(usize, usize),
    RetryStops(usize),
    /// The node's poll feeds its desire.
    Poll(usize),
    BeginHandover,
    Tell,
    HandoverFails,
    /// A stops being writable (failover), its hadr is killed, or its host
    /// crashes.
    LoseA,
    Promote,
}

/// How the driver treats a start in flight when its group stops wanting to
/// run. The model found (finding 3, now fixed) that a start left to run to
/// its end, up to `start_timeout`, delays every stop behind it by more than
/// the stop bound a new primary waits; `Driver::run` now abandons it
/// (`Input::StartAbandoned`: whatever it did is stopped, confirmed). The
/// two other findings (a failure counted again while its restart waits; a
/// restart that missed a start in flight) were fixed in `Group::step`
/// itself and have scenarios in `testdata/resources.txt`.
#[derive(Clone, Copy, Debug)]
struct Rules {
    /// The driver abandons a start in flight when the group stops wanting
    /// to run (hadr as it is).
    abandon_start: bool,
}

impl Rules {
    const HADR: Rules = Rules {
        abandon_start: true,
    };

    /// What B waits after its promotion, plus `MARGIN`.
    fn start_wait(&self) -> u8 {
        stop_bound()
    }
}

struct ResModel {
    bug: Option<Bug>,
    rules: Rules,
    scenarios: Vec<Scenario>,
    /// Non-killable stops may outlast their timeout in a failover too.
    stuck_after_failover: bool,
    horizon: u8,
}

/// Feed `input` to node `n`'s group and carry out what it asks, as
/// `Driver::run` does.
fn feed(w: &mut World, n: usize, input: Input) {
    let before: Vec<State> = (0..N).map(|i| w.nodes[n].group.state(i)).collect();
    let actions = w.nodes[n].group.step(input);
    for (i, &was) in before.iter().enumerate() {
        let now_state = w.nodes[n].group.state(i);
        if now_state != was && now_state == State::Online {
            w.nodes[n].res[i].next_monitor = w.now + MONITOR_INTERVAL;
        }
    }
    for a in actions {
        let (kind, i) = match a {
            Action::Start(i) => (OpKind::Start, i),
            Action::Stop(i) => (OpKind::Stop, i),
            Action::Kill(i) => (OpKind::Kill, i),
            // Probes happen only at boot (`boot`), and a takeover request
            // is not part of these scenarios (on_exhausted = stop).
            Action::Probe(_) | Action::RequestTakeover { .. } => continue,
        };
        let node = &mut w.nodes[n];
        if node.op.is_some() {
            w.two_ops = true;
        }
        match kind {
            OpKind::Start => {
                let ok = (0..i).all(|j| node.res[j].running || node.res[j].died);
                if !ok {
                    w.start_misordered = true;
                }
            }
            OpKind::Stop | OpKind::Kill => {
                if (i + 1..N).any(|j| node.res[j].running) {
                    w.stop_misordered = true;
                }
                let r = &mut node.res[i];
                if r.running && (kind == OpKind::Stop || r.stop_age.is_none()) {
                    r.stop_age = Some(0);
                }
            }
        }
        node.op = Some(Op { kind, i, age: 0 });
    }
}

/// Feed a `Want`, as `Driver::run` does: with `abandon`, a start in flight
/// when the group stops wanting to run is given up first (its command
/// killed: the resource comes up only if it already had).
fn feed_want(w: &mut World, n: usize, want: Want, abandon: bool) {
    let abandoned = match w.nodes[n].op {
        Some(op) if abandon && want == Want::Offline && op.kind == OpKind::Start => {
            w.nodes[n].op = None;
            Some(op.i)
        }
        _ => None,
    };
    feed(w, n, Input::Want(want));
    if let Some(i) = abandoned {
        feed(w, n, Input::StartAbandoned { i });
    }
}

/// A group brought up (or left down) through `Group::step`: probes that
/// find nothing, then, for `online`, every start succeeding at once.
fn boot(online: bool) -> Node {
    let mut group = Group::new(members());
    let mut res = [Res::default(); N];
    let want = if online { Want::Online } else { Want::Offline };
    let mut todo = group.step(Input::Want(want));
    while let Some(a) = todo.pop() {
        let input = match a {
            Action::Probe(i) => Input::Probed { i, running: false },
            Action::Start(i) => {
                res[i].running = true;
                Input::Started { i, ok: true }
            }
            other => panic!("boot: unexpected {other:?}"),
        };
        todo.extend(group.step(input));
    }
    assert!(group.settled(), "boot: {group:?}");
    Node {
        group,
        op: None,
        res,
        alive: true,
        writable: online,
        demoting: false,
        not_before: 0,
    }
}

impl ResModel {
    fn has(&self, b: Bug) -> bool {
        self.bug == Some(b)
    }

    /// What node `n`'s primary group should want: writable, not handing
    /// over, not waiting for its predecessor's stops, and not blocked
    /// (`write_refusal` refuses while a stop is unconfirmed).
    fn desire(&self, w: &World, n: usize) -> Want {
        let node = &w.nodes[n];
        let blocked = node.group.blocked().is_some() && !self.has(Bug::IgnoreBlocked);
        if node.writable && !node.demoting && w.now >= node.not_before && !blocked {
            Want::Online
        } else {
            Want::Offline
        }
    }

    /// The outcome the driver would feed now, if it has one.
    fn report(&self, node: &Node) -> Option<Input> {
        let op = node.op?;
        let r = node.res[op.i];
        let due = op.age >= op.timeout();
        let i = op.i;
        match op.kind {
            OpKind::Start if r.running => Some(Input::Started { i, ok: true }),
            OpKind::Start if due => Some(Input::Started { i, ok: false }),
            OpKind::Stop if self.has(Bug::TrustStopCommand) => {
                Some(Input::Stopped { i, confirmed: true })
            }
            OpKind::Stop if !r.running => Some(Input::Stopped { i, confirmed: true }),
            OpKind::Stop if due => Some(Input::Stopped {
                i,
                confirmed: false,
            }),
            // SIGKILL of the process group: gone by the kill timeout.
            OpKind::Kill if !r.running || due => Some(Input::Killed { i, confirmed: true }),
            _ => None,
        }
    }

    /// Whether a stopping resource may be gone now.
    fn may_go(&self, w: &World, n: usize, i: usize) -> bool {
        let node = &w.nodes[n];
        let r = node.res[i];
        let Some(age) = r.stop_age else {
            return false;
        };
        if !r.running {
            return false;
        }
        let killing = node
            .op
            .is_some_and(|op| op.i == i && op.kind == OpKind::Kill);
        if killing || age < TIMEOUTS[i].stop {
            return true;
        }
        self.may_overrun(w, i)
    }

    /// Whether resource `i`'s stop may outlast its timeout (or never end).
    /// Everywhere in a hand-over; after a failover only for a killable one
    /// (it is killed), unless the stop bound's premise is dropped.
    fn may_overrun(&self, w: &World, i: usize) -> bool {
        w.scenario == Scenario::Handover || killable(i) || self.stuck_after_failover
    }

    /// Steps that happen within the current unit: the clock waits for them.
    fn urgent(&self, w: &World) -> bool {
        (0..2).any(|n| {
            let node = &w.nodes[n];
            // A stop that must end within its timeout ends before the unit
            // its timeout expires in.
            let must_go = (0..N).any(|i| {
                let r = node.res[i];
                r.running
                    && r.stop_age.is_some_and(|a| a + 1 >= TIMEOUTS[i].stop)
                    && !self.may_overrun(w, i)
            });
            node.alive
                && (must_go
                    || self.report(node).is_some()
                    || node.group.want() != self.desire(w, n))
        }) || matches!(w.handover, Handover::Stopping(age)
            if age >= handover_wait() && !w.nodes[A].group.all_down())
    }
}

impl Model for ResModel {
    type State = World;
    type Action = Act;

    fn init_states(&self) -> Vec<World> {
        self.scenarios
            .iter()
            .map(|&scenario| World {
                scenario,
                now: 0,
                nodes: [boot(true), boot(false)],
                handover: Handover::Idle,
                t0: None,
                deaths: 0,
                start_misordered: false,
                stop_misordered: false,
                unfenced: false,
                two_ops: false,
                seen_blocked: false,
            })
            .collect()
    }

    fn actions(&self, w: &World, acts: &mut Vec<Act>) {
        for n in 0..2 {
            let node = &w.nodes[n];
            if !node.alive {
                continue;
            }
            if node.group.want() != self.desire(w, n) {
                acts.push(Act::Poll(n));
            }
            if self.report(node).is_some() {
                acts.push(Act::Report(n));
            }
            if let Some(op) = node.op {
                if op.kind == OpKind::Start && !node.res[op.i].running && op.age < op.timeout() {
                    acts.push(Act::Up(n));
                }
            }
            for i in 0..N {
                if self.may_go(w, n, i) {
                    acts.push(Act::Gone(n, i));
                }
                if node.res[i].running && w.deaths < MAX_DEATHS {
                    acts.push(Act::Die(n, i));
                }
                if node.group.state(i) == State::Online
                    && !node.res[i].running
                    && w.now >= node.res[i].next_monitor
                {
                    acts.push(Act::MonitorFailed(n, i));
                }
            }
            if node.group.blocked().is_some() {
                acts.push(Act::RetryStops(n));
            }
        }
        match (w.scenario, w.handover) {
            (Scenario::Handover, Handover::Idle) if w.now <= LAST_EVENT => {
                acts.push(Act::BeginHandover)
            }
            (Scenario::Handover, Handover::Stopping(age)) => {
                if w.nodes[A].group.all_down() || self.has(Bug::TellEarly) {
                    acts.push(Act::Tell);
                } else if age >= handover_wait() {
                    acts.push(Act::HandoverFails);
                }
            }
            (Scenario::Handover, _) => {}
            (_, _) => match w.t0 {
                None if w.now <= LAST_EVENT => acts.push(Act::LoseA),
                Some(t0) if !w.nodes[B].writable && w.now >= t0 + MARGIN => acts.push(Act::Promote),
                _ => {}
            },
        }
        if w.now < self.horizon && !self.urgent(w) {
            acts.push(Act::Tick);
        }
    }

    fn next_state(&self, last: &World, act: Act) -> Option<World> {
        let mut w = last.clone();
        match act {
            Act::Tick => {
                w.now += 1;
                for node in &mut w.nodes {
                    if let Some(op) = &mut node.op {
                        op.age = (op.age + 1).min(OLD);
                    }
                    for r in &mut node.res {
                        if let Some(a) = &mut r.stop_age {
                            *a = (*a + 1).min(OLD);
                        }
                    }
                }
                if let Handover::Stopping(age) = &mut w.handover {
                    *age = (*age + 1).min(OLD);
                }
            }
            Act::Up(n) => {
                let i = w.nodes[n].op?.i;
                let node = &mut w.nodes[n];
                if !(0..i).all(|j| node.res[j].running || node.res[j].died) {
                    w.start_misordered = true;
                }
                let r = &mut node.res[i];
                r.running = true;
                r.stop_age = None;
                r.died = false;
            }
            Act::Gone(n, i) => {
                let r = &mut w.nodes[n].res[i];
                r.running = false;
                r.stop_age = None;
            }
            Act::Report(n) => {
                let input = self.report(&w.nodes[n])?;
                let node = &mut w.nodes[n];
                if let Input::Killed { i, .. } = input {
                    // The kill is certain: gone by its timeout.
                    node.res[i].running = false;
                    node.res[i].stop_age = None;
                }
                if let Input::Started { i, ok: false } = input {
                    node.res[i].failed += 1;
                }
                node.op = None;
                feed(&mut w, n, input);
            }
            Act::Die(n, i) => {
                w.deaths += 1;
                let r = &mut w.nodes[n].res[i];
                r.running = false;
                r.stop_age = None;
                r.died = true;
                r.failed += 1;
            }
            Act::MonitorFailed(n, i) => {
                w.nodes[n].res[i].next_monitor = w.now + MONITOR_INTERVAL;
                feed(&mut w, n, Input::MonitorFailed { i })
            }
            Act::RetryStops(n) => feed(&mut w, n, Input::RetryStops),
            Act::Poll(n) => {
                let want = self.desire(&w, n);
                if want == Want::Online && w.nodes[n].group.blocked().is_some() {
                    w.unfenced = true;
                }
                feed_want(&mut w, n, want, self.rules.abandon_start);
            }
            Act::BeginHandover => {
                // stop_writes, then stop_resources_for_hand_over: the
                // desire is set at once, not at the next poll.
                w.handover = Handover::Stopping(0);
                w.nodes[A].demoting = true;
                let want = self.desire(&w, A);
                feed_want(&mut w, A, want, self.rules.abandon_start);
            }
            Act::Tell => {
                // A marks itself a standby; B promotes, told by its
                // predecessor: no wait (start_delay is zero).
                w.handover = Handover::Told;
                w.nodes[A].writable = false;
                w.nodes[B].writable = true;
                w.nodes[B].not_before = w.now;
            }
            Act::HandoverFails => {
                // resume_writes: A is writable again; its poll decides.
                w.handover = Handover::Failed;
                w.nodes[A].demoting = false;
            }
            Act::LoseA => {
                w.t0 = Some(w.now);
                w.nodes[A].writable = false;
                match w.scenario {
                    // The guard kills the commands in flight first, then
                    // runs the stops.
                    Scenario::HadrKilled => {
                        feed_want(&mut w, A, Want::Offline, self.rules.abandon_start)
                    }
                    Scenario::HostCrash => {
                        let a = &mut w.nodes[A];
                        a.alive = false;
                        a.op = None;
                        for r in &mut a.res {
                            r.running = false;
                            r.stop_age = None;
                        }
                    }
                    _ => {}
                }
            }
            Act::Promote => {
                w.nodes[B].writable = true;
                w.nodes[B].not_before = if self.has(Bug::NoStopBoundWait) {
                    w.now
                } else {
                    w.now + self.rules.start_wait() - MARGIN
                };
            }
        }
        if w.nodes[A].group.blocked().is_some() {
            w.seen_blocked = true;
        }
        Some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut props = vec![
            Property::always(TWICE, |_, w: &World| {
                (0..N).all(|i| !(w.nodes[A].res[i].running && w.nodes[B].res[i].running))
            }),
            Property::always(START_ORDER, |_, w: &World| !w.start_misordered),
            Property::always(STOP_ORDER, |_, w: &World| !w.stop_misordered),
            Property::always(UNFENCED, |_, w: &World| !w.unfenced),
            Property::always(ONE_OP, |_, w: &World| !w.two_ops),
            Property::always(COUNTED_ONCE, |_, w: &World| {
                w.nodes
                    .iter()
                    .all(|n| (0..N).all(|i| n.group.failures(i) <= u32::from(n.res[i].failed)))
            }),
        ];
        for &s in &self.scenarios {
            props.push(match s {
                Scenario::Handover => {
                    Property::sometimes("B's resources run after a hand-over", |_, w: &World| {
                        w.scenario == Scenario::Handover && online(w, B)
                    })
                }
                Scenario::Failover => {
                    Property::sometimes("B's resources run after a failover", |_, w: &World| {
                        w.scenario == Scenario::Failover && online(w, B)
                    })
                }
                Scenario::HadrKilled => Property::sometimes(
                    "B's resources run after A's hadr was killed",
                    |_, w: &World| w.scenario == Scenario::HadrKilled && online(w, B),
                ),
                Scenario::HostCrash => Property::sometimes(
                    "B's resources run after A's host crashed",
                    |_, w: &World| w.scenario == Scenario::HostCrash && online(w, B),
                ),
            });
            if s == Scenario::Handover {
                props.push(Property::sometimes(
                    "a hand-over fails and A's resources run again",
                    |_, w: &World| w.handover == Handover::Failed && online(w, A),
                ));
                props.push(Property::sometimes(
                    "a stop is not confirmed: A is blocked",
                    |_, w: &World| w.seen_blocked,
                ));
            }
        }
        props
    }
}

/// Node `n`'s group runs: every resource online, and running.
fn online(w: &World, n: usize) -> bool {
    (0..N).all(|i| w.nodes[n].group.state(i) == State::Online && w.nodes[n].res[i].running)
}

const TWICE: &str = "no resource runs on both nodes";
const START_ORDER: &str = "a resource starts only while every one before it runs";
const STOP_ORDER: &str = "a stop begins only when no resource after it runs";
const UNFENCED: &str = "a blocked group is never told to want Online";
const COUNTED_ONCE: &str = "each failure is counted once";
const ONE_OP: &str = "one operation at a time per group";

const ALL: [Scenario; 4] = [
    Scenario::Handover,
    Scenario::Failover,
    Scenario::HadrKilled,
    Scenario::HostCrash,
];

fn model(bug: Option<Bug>, scenarios: &[Scenario]) -> ResModel {
    ResModel {
        bug,
        rules: Rules::HADR,
        scenarios: scenarios.to_vec(),
        stuck_after_failover: false,
        horizon: HORIZON,
    }
}

/// Every scenario, with the fixes the model proposes (see [`Rules`]).
#[test]
fn the_resource_rules_keep_their_promises() {
    assert_eq!(NAMES, ["A", "B"]);
    check_model("resources model", model(None, &ALL));
}

/// Finding 3 (fixed in `Driver::run`): a start in flight when the old
/// primary loses its role, left to run to its end (up to `start_timeout`)
/// before its group's first stop begins, outlasts the stop bound: the new
/// primary starts `ip` while the old one still has it. Abandoning the start
/// is what keeps the stop bound true.
#[test]
fn the_checker_finds_a_resource_twice_when_a_start_in_flight_is_waited_for() {
    let mut m = model(None, &[Scenario::Failover]);
    m.rules.abandon_start = false;
    assert_caught("start in flight waited for", m, TWICE);
}

/// (a) B starts its resources at promotion, without the stop-bound wait.
#[test]
fn the_checker_finds_a_resource_twice_without_the_stop_bound_wait() {
    let m = model(Some(Bug::NoStopBoundWait), &[Scenario::Failover]);
    assert_caught("NoStopBoundWait", m, TWICE);
}

/// (b) The driver takes the stop command's return for the resource's end.
#[test]
fn the_checker_finds_a_resource_twice_when_stops_are_not_confirmed_by_the_monitor() {
    let m = model(Some(Bug::TrustStopCommand), &[Scenario::Handover]);
    assert_caught("TrustStopCommand", m, TWICE);
}

/// (c) The hand-over tells B before A's group is all down.
#[test]
fn the_checker_finds_a_resource_twice_when_the_standby_is_told_early() {
    let m = model(Some(Bug::TellEarly), &[Scenario::Handover]);
    assert_caught("TellEarly", m, TWICE);
}

/// (d) A failed hand-over restarts A's resources though a stop is unconfirmed.
#[test]
fn the_checker_finds_an_unfenced_node_when_a_block_is_ignored() {
    let m = model(Some(Bug::IgnoreBlocked), &[Scenario::Handover]);
    assert_caught("IgnoreBlocked", m, UNFENCED);
}

/// The stop bound's premise: after a failover a VIP (not killable) whose
/// stop outlasts its timeout runs on both nodes, whatever B waits. Only a
/// fence outside hadr (STONITH) can help; docs/resources.md says so.
#[test]
fn a_stuck_vip_after_a_failover_runs_twice() {
    let mut m = model(None, &[Scenario::Failover]);
    m.stuck_after_failover = true;
    let trace = assert_caught("a stuck VIP", m, TWICE);
    assert!(trace.contains(&Act::Promote));
}
