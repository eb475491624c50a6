//! A resource group that follows a role, as a pure step machine
//! (docs/resources.md). The services around a database — a virtual IP, a
//! daemon, a shared disk — must run on the primary only, start in order
//! once it may write, and stop in reverse order when it may not. What makes
//! that safe is the rule DB2's cluster managers leave to a `sleep` in a
//! runbook: **a stop is over only when the resource's monitor confirms it is
//! gone**, and a resource starts only after every one before it is online
//! and stops only after every one after it is confirmed offline.
//!
//! The machine issues at most one start, stop, kill or probe at a time for
//! the whole group (the order is the point; a group has a handful of
//! members). The driver (`hadr-resources`) runs the commands with their
//! timeouts and feeds the outcomes back; it also polls the monitor of each
//! online resource and reports a failure. Nothing here reads a clock.
//! `tests/resources_model.rs` model-checks the rules as the driver feeds
//! them, on two nodes through hand-overs and failovers.

/// What to do when a resource has failed more than its `max_restarts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exhausted {
    /// Leave it (and the resources after it) stopped; the node stays primary.
    Stop,
    /// Stop it and ask for a graceful takeover by a healthy standby
    /// (Pacemaker's migration-threshold).
    Takeover,
}

/// One member of a group, as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// Its name (for messages).
    pub name: String,
    /// Failures (of start or monitor) tolerated by restarting it.
    pub max_restarts: u32,
    /// What happens after that.
    pub on_exhausted: Exhausted,
    /// A stop that is not confirmed may be escalated to killing its
    /// process group (a service hadr supervises); others cannot be.
    pub killable: bool,
}

/// Where one resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not yet probed (after the process started).
    Unknown,
    /// Its monitor is being asked whether it runs.
    Probing,
    /// Confirmed not running.
    Offline,
    /// Its start command runs (done when the monitor confirms it).
    Starting,
    /// Running, as its monitor says.
    Online,
    /// Its stop command runs (done when the monitor confirms it is gone).
    Stopping,
    /// The stop was not confirmed in time: its process group is being killed.
    Killing,
    /// Failed more than `max_restarts` times: left stopped until reset.
    Failed,
    /// Its stop could not be confirmed: it may still run. The group is
    /// blocked (nothing after it starts, nothing before it stops) and the
    /// node must not be a writable primary until it is resolved.
    StopFailed,
}

impl State {
    /// Lower-case name for status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Probing => "probing",
            State::Offline => "offline",
            State::Starting => "starting",
            State::Online => "online",
            State::Stopping => "stopping",
            State::Killing => "killing",
            State::Failed => "failed",
            State::StopFailed => "stop-failed",
        }
    }

    /// An operation on it is in flight.
    pub fn busy(self) -> bool {
        matches!(
            self,
            State::Probing | State::Starting | State::Stopping | State::Killing
        )
    }

    /// Confirmed not running.
    pub fn is_down(self) -> bool {
        matches!(self, State::Offline | State::Failed)
    }
}

/// Whether the group should run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Want {
    /// The node is not in the group's role (or may not write): stop all.
    Offline,
    /// The node is in the group's role: start all, in order.
    Online,
}

/// What the driver reports (or an operator asks).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// The node's role says the group should run, or not.
    Want(Want),
    /// A probe answered.
    Probed {
        /// The resource.
        i: usize,
        /// Its monitor says it runs.
        running: bool,
    },
    /// A start finished.
    Started {
        /// The resource.
        i: usize,
        /// The monitor confirmed it runs within the start timeout.
        ok: bool,
    },
    /// A stop finished.
    Stopped {
        /// The resource.
        i: usize,
        /// The monitor confirmed it is gone within the stop timeout.
        confirmed: bool,
    },
    /// A kill of its process group finished.
    Killed {
        /// The resource.
        i: usize,
        /// The group is gone.
        confirmed: bool,
    },
    /// A start in flight was given up because the group stopped wanting to
    /// run: a start can take its whole `start_timeout`, and a stop may not
    /// wait for it (the stop bound a new primary waits does not count it:
    /// `tests/resources_model.rs`). Whatever the start did is stopped,
    /// confirmed, like anything running; it is not a failure.
    StartAbandoned {
        /// The resource.
        i: usize,
    },
    /// An online resource's monitor said it no longer runs.
    MonitorFailed {
        /// The resource.
        i: usize,
    },
    /// An operator disabled it: it and every resource after it stop.
    Disable {
        /// The resource.
        i: usize,
    },
    /// An operator enabled it again.
    Enable {
        /// The resource.
        i: usize,
    },
    /// An operator asked for a restart: its failures are forgotten, and if
    /// it runs it is stopped and started again (with everything after it).
    Restart {
        /// The resource.
        i: usize,
    },
    /// Time to try the stop of a resource whose stop failed once more.
    RetryStops,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Ask the monitor whether it runs; answer with `Probed`.
    Probe(usize),
    /// Start it and wait for the monitor; answer with `Started`.
    Start(usize),
    /// Stop it and wait for the monitor; answer with `Stopped`.
    Stop(usize),
    /// Kill its process group and wait; answer with `Killed`.
    Kill(usize),
    /// A resource exhausted its restarts and asks to move: ask a healthy
    /// standby to take over (once per term).
    RequestTakeover {
        /// Why, for the log and status.
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Slot {
    state: State,
    failures: u32,
    disabled: bool,
    /// Stop it (even if it should run) and start it again.
    restart: bool,
    /// A failed stop may be tried again.
    retry: bool,
}

/// A group's rules and state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    members: Vec<Member>,
    slots: Vec<Slot>,
    want: Want,
    /// A takeover was asked in this term (ask once).
    asked_takeover: bool,
}

impl Group {
    /// A group whose resources are all unknown and that wants to be offline.
    pub fn new(members: Vec<Member>) -> Group {
        let slots = members
            .iter()
            .map(|_| Slot {
                state: State::Unknown,
                failures: 0,
                disabled: false,
                restart: false,
                retry: false,
            })
            .collect();
        Group {
            members,
            slots,
            want: Want::Offline,
            asked_takeover: false,
        }
    }

    /// How many resources.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No resources.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// What the group wants now.
    pub fn want(&self) -> Want {
        self.want
    }

    /// A resource's state.
    pub fn state(&self, i: usize) -> State {
        self.slots.get(i).map(|s| s.state).unwrap_or(State::Unknown)
    }

    /// A resource's failures in this term.
    pub fn failures(&self, i: usize) -> u32 {
        self.slots.get(i).map(|s| s.failures).unwrap_or(0)
    }

    /// Whether an operator disabled it.
    pub fn disabled(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.disabled)
    }

    /// The first resource whose stop could not be confirmed: while there is
    /// one, the node must not be a writable primary.
    pub fn blocked(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.state == State::StopFailed)
    }

    /// Every resource is confirmed not running (what a hand-over waits for).
    pub fn all_down(&self) -> bool {
        self.slots.iter().all(|s| s.state.is_down())
    }

    /// Every resource that should run does, and nothing is in flight.
    pub fn settled(&self) -> bool {
        (0..self.slots.len()).all(|i| {
            let s = self.slots[i].state;
            !s.busy()
                && s != State::Unknown
                && !self.slots[i].restart
                && match self.target(i) {
                    Want::Online => s == State::Online,
                    Want::Offline => s.is_down() || s == State::StopFailed,
                }
        })
    }

    /// Whether resource `i` should run: the group wants to, and neither it
    /// nor any resource before it is disabled or failed.
    pub fn target(&self, i: usize) -> Want {
        if self.want == Want::Online
            && self.slots[..=i.min(self.slots.len().saturating_sub(1))]
                .iter()
                .all(|s| !s.disabled && s.state != State::Failed)
        {
            Want::Online
        } else {
            Want::Offline
        }
    }

    /// Feed one input; return what to do next (at most one operation, plus
    /// perhaps a takeover request).
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        let n = self.slots.len();
        match input {
            Input::Want(w) => {
                if w == Want::Online && self.want == Want::Offline {
                    // A new term as primary: past failures were on another
                    // term's watch.
                    for s in &mut self.slots {
                        s.failures = 0;
                        if s.state == State::Failed {
                            s.state = State::Offline;
                        }
                    }
                    self.asked_takeover = false;
                }
                self.want = w;
            }
            Input::Probed { i, running } if i < n && self.slots[i].state == State::Probing => {
                self.slots[i].state = if running {
                    State::Online
                } else {
                    State::Offline
                };
            }
            Input::Started { i, ok } if i < n && self.slots[i].state == State::Starting => {
                if ok {
                    self.slots[i].state = State::Online;
                } else {
                    // A failed start may have left something half up:
                    // stop it (confirmed) before anything else.
                    self.slots[i].failures += 1;
                    self.slots[i].state = State::Online;
                    self.slots[i].restart = true;
                }
            }
            Input::Stopped { i, confirmed } if i < n && self.slots[i].state == State::Stopping => {
                if confirmed {
                    self.stopped(i, &mut out);
                } else if self.members[i].killable {
                    self.slots[i].state = State::Killing;
                    out.push(Action::Kill(i));
                    return out;
                } else {
                    self.slots[i].state = State::StopFailed;
                }
            }
            Input::Killed { i, confirmed } if i < n && self.slots[i].state == State::Killing => {
                if confirmed {
                    self.stopped(i, &mut out);
                } else {
                    self.slots[i].state = State::StopFailed;
                }
            }
            Input::StartAbandoned { i } if i < n && self.slots[i].state == State::Starting => {
                self.slots[i].state = State::Online;
                self.slots[i].restart = true;
            }
            // A resource already due for a restart is not failing anew: its
            // monitor keeps saying so while the resources after it stop
            // (found by tests/resources_model.rs).
            Input::MonitorFailed { i }
                if i < n && self.slots[i].state == State::Online && !self.slots[i].restart =>
            {
                self.slots[i].failures += 1;
                self.restart_from(i);
            }
            Input::Disable { i } if i < n => self.slots[i].disabled = true,
            Input::Enable { i } if i < n => self.slots[i].disabled = false,
            Input::Restart { i } if i < n => {
                self.slots[i].failures = 0;
                match self.slots[i].state {
                    State::Failed => self.slots[i].state = State::Offline,
                    State::Online => self.restart_from(i),
                    State::StopFailed => self.slots[i].retry = true,
                    _ => {}
                }
            }
            Input::RetryStops => {
                for s in &mut self.slots {
                    if s.state == State::StopFailed {
                        s.retry = true;
                    }
                }
            }
            // An answer that does not match the state (a stale or
            // duplicated report) changes nothing.
            _ => {}
        }
        if let Some(a) = self.next() {
            out.push(a);
        }
        out
    }

    /// Mark `i` and every running resource after it for a restart, and one
    /// whose start is in flight: it will run a moment later, above a
    /// resource about to stop (found by tests/resources_model.rs).
    fn restart_from(&mut self, i: usize) {
        for s in &mut self.slots[i..] {
            if matches!(s.state, State::Online | State::Starting) {
                s.restart = true;
            }
        }
    }

    /// `i` is confirmed gone: offline, or failed if it exhausted its restarts.
    fn stopped(&mut self, i: usize, out: &mut Vec<Action>) {
        let exhausted = self.slots[i].failures > self.members[i].max_restarts;
        self.slots[i].restart = false;
        self.slots[i].retry = false;
        self.slots[i].state = if exhausted {
            State::Failed
        } else {
            State::Offline
        };
        if exhausted
            && self.want == Want::Online
            && self.members[i].on_exhausted == Exhausted::Takeover
            && !self.asked_takeover
        {
            self.asked_takeover = true;
            out.push(Action::RequestTakeover {
                reason: format!(
                    "resource {} failed {} times (max_restarts {})",
                    self.members[i].name, self.slots[i].failures, self.members[i].max_restarts
                ),
            });
        }
    }

    /// The next operation, if nothing is in flight.
    fn next(&mut self) -> Option<Action> {
        if self.slots.iter().any(|s| s.state.busy()) {
            return None;
        }
        if let Some(i) = self.slots.iter().position(|s| s.state == State::Unknown) {
            self.slots[i].state = State::Probing;
            return Some(Action::Probe(i));
        }
        // Stops first, from the last resource down: one stops only when
        // every resource after it is confirmed down.
        for i in (0..self.slots.len()).rev() {
            let s = &self.slots[i];
            let wants_stop = s.restart || self.target(i) == Want::Offline;
            let may_stop = match s.state {
                State::Online => wants_stop,
                State::StopFailed => s.retry,
                _ => false,
            };
            if may_stop {
                self.slots[i].state = State::Stopping;
                self.slots[i].retry = false;
                return Some(Action::Stop(i));
            }
            if !s.state.is_down() && (wants_stop || s.state == State::StopFailed) {
                // Running (or stuck) and due to stop, but not yet allowed
                // to: nothing before it may stop either.
                return None;
            }
        }
        // Then starts, from the first up: one starts only when every
        // resource before it runs.
        for i in 0..self.slots.len() {
            if self.target(i) == Want::Offline {
                return None;
            }
            match self.slots[i].state {
                State::Online => continue,
                State::Offline => {
                    self.slots[i].state = State::Starting;
                    return Some(Action::Start(i));
                }
                _ => return None,
            }
        }
        None
    }
}
