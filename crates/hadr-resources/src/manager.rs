//! The driver of a node's resource groups: one task per group (the
//! resources that follow the primary role, and those that follow the
//! standby role), each running `hadr_ha::resources::Group` and carrying out
//! its actions with [`crate::exec::Runner`]. The [`Manager`] handle lives as
//! long as the process, across role changes: a resource's stop must finish
//! whatever the database does meanwhile.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hadr_ha::resources::{Action, Group, Input, State, Want};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::exec::{Runner, Seen};
use crate::spec::{GroupRole, Resource};

/// How often a stop that could not be confirmed is tried again.
pub const RETRY_STOPS: Duration = Duration::from_secs(5);

/// Which groups should run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desire {
    /// The node is a writable primary (or a single database).
    pub primary: bool,
    /// The node is a standby.
    pub standby: bool,
}

/// One resource's state, for `/status` and `hadr status`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ResourceStatus {
    /// Name.
    pub name: String,
    /// Kind (`vip`, `service`, `mount`, `exec`).
    pub kind: String,
    /// The role it follows.
    pub role: String,
    /// `unknown`, `probing`, `offline`, `starting`, `online`, `stopping`,
    /// `killing`, `failed`, `stop-failed`.
    pub state: String,
    /// Since when (µs since the epoch).
    pub since_micros: u64,
    /// Failures in this term.
    pub failures: u32,
    /// Disabled by an operator.
    pub disabled: bool,
    /// The last lines its commands printed.
    pub output: Vec<String>,
}

/// What an operator may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Forget its failures; stop and start it again if it runs.
    Restart,
    /// Stop it and everything after it in its group, and keep them stopped.
    Disable,
    /// Undo `Disable`.
    Enable,
}

/// Why the manager could not do what was asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManagerError {
    /// No such resource.
    #[error("no resource named {0:?}")]
    Unknown(String),
    /// Resources not confirmed stopped in time.
    #[error("not confirmed stopped within {ms} ms: {names}")]
    NotStopped {
        /// The waiting time.
        ms: u64,
        /// Which, with their states.
        names: String,
    },
    /// The group's task ended.
    #[error("the resource driver stopped")]
    Gone,
}

struct Shared {
    status: Mutex<Vec<ResourceStatus>>,
    blocked: Mutex<Option<String>>,
    /// Whether `blocked` is set: read on every write statement
    /// (`Node::write_refusal`), so it must not take a lock.
    is_blocked: std::sync::atomic::AtomicBool,
    /// True while a resource asks for a takeover (until the primary group
    /// stops wanting to run: the takeover happened, or the term ended); the
    /// primary's sender for its principal standby follows it.
    takeover: watch::Sender<bool>,
    /// Why the last takeover was asked.
    takeover_reason: Mutex<Option<String>>,
    /// Why the primary group waits (status).
    hold: Mutex<Option<String>>,
}

struct GroupHandle {
    role: GroupRole,
    ops: mpsc::Sender<(usize, Op, oneshot::Sender<()>)>,
    down: watch::Receiver<bool>,
    /// Global indices of its members.
    members: Vec<usize>,
}

/// The handle the server holds (cheap to clone).
#[derive(Clone)]
pub struct Manager {
    resources: Arc<Vec<Resource>>,
    desire: Arc<watch::Sender<Desire>>,
    shared: Arc<Shared>,
    groups: Arc<Vec<GroupHandle>>,
    guard: Arc<Option<crate::guard::Guard>>,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Manager {
    /// Start the drivers (inside a tokio runtime). `state_dir` keeps
    /// supervised services' process group ids.
    pub fn start(resources: Vec<Resource>, state_dir: &Path) -> Manager {
        let (desire_tx, _) = watch::channel(Desire::default());
        let shared = Arc::new(Shared {
            status: Mutex::new(
                resources
                    .iter()
                    .map(|r| ResourceStatus {
                        name: r.name.clone(),
                        kind: r.kind.name().into(),
                        role: r.role.as_str().into(),
                        state: State::Unknown.as_str().into(),
                        since_micros: now_micros(),
                        failures: 0,
                        disabled: false,
                        output: Vec::new(),
                    })
                    .collect(),
            ),
            blocked: Mutex::new(None),
            is_blocked: Default::default(),
            takeover: watch::channel(false).0,
            takeover_reason: Mutex::new(None),
            hold: Mutex::new(None),
        });
        let mut groups = Vec::new();
        for role in [GroupRole::Primary, GroupRole::Standby] {
            let members: Vec<usize> = (0..resources.len())
                .filter(|&i| resources[i].role == role)
                .collect();
            let (down_tx, down_rx) = watch::channel(true);
            let (ops_tx, ops_rx) = mpsc::channel(8);
            if !members.is_empty() {
                let runners: Vec<Arc<Runner>> = members
                    .iter()
                    .map(|&i| Arc::new(Runner::new(resources[i].clone(), state_dir)))
                    .collect();
                let d = Driver {
                    role,
                    resources: members.iter().map(|&i| resources[i].clone()).collect(),
                    global: members.clone(),
                    runners,
                    shared: shared.clone(),
                    down: down_tx,
                };
                tokio::spawn(d.run(desire_tx.subscribe(), ops_rx));
            }
            groups.push(GroupHandle {
                role,
                ops: ops_tx,
                down: down_rx,
                members,
            });
        }
        let guard = crate::guard::Guard::spawn(&resources, state_dir);
        Manager {
            resources: Arc::new(resources),
            desire: Arc::new(desire_tx),
            shared,
            groups: Arc::new(groups),
            guard: Arc::new(guard),
        }
    }

    /// True while a resource asks for a takeover (it exhausted its
    /// restarts with `on_exhausted = "takeover"`).
    pub fn takeover_requests(&self) -> watch::Receiver<bool> {
        self.shared.takeover.subscribe()
    }

    /// Say why the primary group waits (None: it does not).
    pub fn set_hold(&self, why: Option<String>) {
        *self.shared.hold.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why the primary group waits.
    pub fn hold(&self) -> Option<String> {
        self.shared
            .hold
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the last takeover was asked.
    pub fn takeover_reason(&self) -> Option<String> {
        self.shared
            .takeover_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any resource is configured for `role`.
    pub fn has(&self, role: GroupRole) -> bool {
        self.resources.iter().any(|r| r.role == role)
    }

    /// Tell the drivers which groups should run.
    pub fn set_desire(&self, d: Desire) {
        self.desire.send_if_modified(|cur| {
            let changed = *cur != d;
            *cur = d;
            changed
        });
    }

    /// What the drivers were last told.
    pub fn desire(&self) -> Desire {
        *self.desire.borrow()
    }

    /// The longest the `role` group can take to be confirmed stopped.
    pub fn stop_bound(&self, role: GroupRole) -> Duration {
        crate::spec::stop_bound(&self.resources, role)
    }

    /// Every resource's state.
    pub fn status(&self) -> Vec<ResourceStatus> {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the node must not be a writable primary: a resource whose stop
    /// could not be confirmed (it may still run).
    pub fn blocked(&self) -> Option<String> {
        if !self
            .shared
            .is_blocked
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        self.shared
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait until every resource of `role` is confirmed stopped.
    pub async fn wait_down(&self, role: GroupRole, timeout: Duration) -> Result<(), ManagerError> {
        let Some(g) = self.groups.iter().find(|g| g.role == role) else {
            return Ok(());
        };
        let mut down = g.down.clone();
        let waited = match tokio::time::timeout(timeout, down.wait_for(|d| *d)).await {
            Ok(Ok(_)) => Some(true),
            Ok(Err(_)) => Some(false),
            Err(_) => None,
        };
        match waited {
            Some(true) => Ok(()),
            Some(false) => Err(ManagerError::Gone),
            None => {
                let st = self.status();
                let names = g
                    .members
                    .iter()
                    .filter_map(|&i| st.get(i))
                    .filter(|s| s.state != "offline" && s.state != "failed")
                    .map(|s| format!("{} ({})", s.name, s.state))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(ManagerError::NotStopped {
                    ms: timeout.as_millis() as u64,
                    names,
                })
            }
        }
    }

    /// Stop everything (shutdown): both groups, confirmed, within `timeout`.
    pub async fn stop_all(&self, timeout: Duration) -> Result<(), ManagerError> {
        self.set_desire(Desire::default());
        let deadline = Instant::now() + timeout;
        for role in [GroupRole::Primary, GroupRole::Standby] {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_down(role, left).await?;
        }
        if let Some(g) = self.guard.as_ref() {
            g.disarm();
        }
        Ok(())
    }

    /// An operator's request for one resource.
    pub async fn op(&self, name: &str, op: Op) -> Result<(), ManagerError> {
        let i = self
            .resources
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| ManagerError::Unknown(name.to_string()))?;
        let g = self
            .groups
            .iter()
            .find(|g| g.members.contains(&i))
            .ok_or(ManagerError::Gone)?;
        let local = g
            .members
            .iter()
            .position(|&m| m == i)
            .ok_or(ManagerError::Gone)?;
        let (tx, rx) = oneshot::channel();
        tokio::time::timeout(Duration::from_secs(5), g.ops.send((local, op, tx)))
            .await
            .map_err(|_| ManagerError::Gone)?
            .map_err(|_| ManagerError::Gone)?;
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .map_err(|_| ManagerError::Gone)?
            .map_err(|_| ManagerError::Gone)
    }
}

struct Driver {
    role: GroupRole,
    resources: Vec<Resource>,
    global: Vec<usize>,
    runners: Vec<Arc<Runner>>,
    shared: Arc<Shared>,
    down: watch::Sender<bool>,
}

impl Driver {
    fn want(&self, d: &Desire) -> Want {
        let on = match self.role {
            GroupRole::Primary => d.primary,
            GroupRole::Standby => d.standby,
        };
        if on {
            Want::Online
        } else {
            Want::Offline
        }
    }

    async fn run(
        self,
        mut desire: watch::Receiver<Desire>,
        mut ops: mpsc::Receiver<(usize, Op, oneshot::Sender<()>)>,
    ) {
        let n = self.resources.len();
        let mut g = Group::new(self.resources.iter().map(Resource::member).collect());
        // One operation at a time (the rules issue no more), and monitors.
        let (done_tx, mut done_rx) = mpsc::channel::<(u64, Input)>(4);
        // The operation in flight: its id (a late answer of an abandoned
        // one is recognised and dropped), whether it is a start, and how to
        // abandon it.
        let mut inflight: Option<(u64, Option<usize>, tokio::task::AbortHandle)> = None;
        let mut next_id = 0u64;
        let mut queued: std::collections::VecDeque<Input> = Default::default();
        let (mon_tx, mut mon_rx) = mpsc::channel::<(usize, u64, Seen)>(n.max(1) * 2);
        // A state's generation: a monitor started before a change answers
        // about something that no longer is.
        let mut gens = vec![0u64; n];
        let mut monitoring = vec![false; n];
        let mut next_monitor = vec![Instant::now(); n];
        let mut last_retry = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut prev: Vec<State> = (0..n).map(|i| g.state(i)).collect();
        let mut input = Input::Want(self.want(&desire.borrow_and_update()));
        loop {
            let actions = g.step(input);
            for a in actions {
                next_id += 1;
                if let Some((starting, h)) = self.carry_out(a, next_id, &done_tx) {
                    inflight = Some((next_id, starting, h));
                }
            }
            for i in 0..n {
                if g.state(i) != prev[i] {
                    gens[i] += 1;
                    info!(resource = %self.resources[i].name, from = prev[i].as_str(), to = g.state(i).as_str(), "resource state");
                    if g.state(i) == State::Online {
                        next_monitor[i] = Instant::now() + self.resources[i].monitor_interval;
                    }
                    prev[i] = g.state(i);
                }
            }
            self.publish(&g);
            input = loop {
                if let Some(q) = queued.pop_front() {
                    break q;
                }
                tokio::select! {
                    r = desire.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let want = self.want(&desire.borrow_and_update());
                        if self.role == GroupRole::Primary && want == Want::Offline {
                            // The term ends: a pending takeover request
                            // was carried out, or no longer applies.
                            self.shared.takeover.send_replace(false);
                        }
                        if want == Want::Offline {
                            // A start may take its whole start_timeout; the
                            // stops may not wait for it (the stop bound a new
                            // primary waits does not count it).
                            if let Some((_, Some(i), h)) = inflight.take() {
                                h.abort();
                                warn!(resource = %self.resources[i].name, "start given up: the group no longer wants to run");
                                queued.push_back(Input::StartAbandoned { i });
                            }
                        }
                        break Input::Want(want);
                    }
                    Some((i, op, reply)) = ops.recv() => {
                        let _ = reply.send(());
                        break match op {
                            Op::Restart => Input::Restart { i },
                            Op::Disable => Input::Disable { i },
                            Op::Enable => Input::Enable { i },
                        };
                    }
                    Some((id, inp)) = done_rx.recv() => {
                        if inflight.as_ref().is_some_and(|(cur, _, _)| *cur == id) {
                            inflight = None;
                            break inp;
                        }
                        // The answer of an operation given up: stale.
                    }
                    Some((i, gen, seen)) = mon_rx.recv() => {
                        monitoring[i] = false;
                        next_monitor[i] = Instant::now() + self.resources[i].monitor_interval;
                        if gen == gens[i] && g.state(i) == State::Online && seen != Seen::Running {
                            warn!(resource = %self.resources[i].name, ?seen, "monitor failed");
                            break Input::MonitorFailed { i };
                        }
                    }
                    _ = tick.tick() => {
                        let now = Instant::now();
                        if g.blocked().is_some() && now.duration_since(last_retry) >= RETRY_STOPS {
                            last_retry = now;
                            break Input::RetryStops;
                        }
                        for i in 0..n {
                            if g.state(i) == State::Online && !monitoring[i] && now >= next_monitor[i] {
                                monitoring[i] = true;
                                let r = self.runners[i].clone();
                                let tx = mon_tx.clone();
                                let gen = gens[i];
                                tokio::spawn(async move {
                                    let seen = r.healthy().await;
                                    let _ = tx.send((i, gen, seen)).await;
                                });
                            }
                        }
                    }
                }
            };
        }
    }

    /// Carry out an action in its own task; for an operation, return
    /// whether it is a start (of which resource) and how to abandon it.
    fn carry_out(
        &self,
        a: Action,
        id: u64,
        done: &mpsc::Sender<(u64, Input)>,
    ) -> Option<(Option<usize>, tokio::task::AbortHandle)> {
        let (i, runner) = match &a {
            Action::Probe(i) | Action::Start(i) | Action::Stop(i) | Action::Kill(i) => {
                (*i, self.runners[*i].clone())
            }
            Action::RequestTakeover { reason } => {
                error!(%reason, "a resource exhausted its restarts: asking a standby to take over");
                *self
                    .shared
                    .takeover_reason
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                self.shared.takeover.send_replace(true);
                return None;
            }
        };
        let starting = matches!(a, Action::Start(_)).then_some(i);
        let name = self.resources[i].name.clone();
        let done = done.clone();
        let task = tokio::spawn(async move {
            let input = match a {
                Action::Probe(_) => Input::Probed {
                    i,
                    running: runner.probe().await,
                },
                Action::Start(_) => {
                    info!(resource = %name, "starting");
                    Input::Started {
                        i,
                        ok: runner.start().await,
                    }
                }
                Action::Stop(_) => {
                    info!(resource = %name, "stopping");
                    Input::Stopped {
                        i,
                        confirmed: runner.stop().await,
                    }
                }
                Action::Kill(_) => Input::Killed {
                    i,
                    confirmed: runner.kill().await,
                },
                Action::RequestTakeover { .. } => return,
            };
            let _ = done.send((id, input)).await;
        });
        Some((starting, task.abort_handle()))
    }

    fn publish(&self, g: &Group) {
        {
            let mut st = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
            for (local, &i) in self.global.iter().enumerate() {
                if let Some(s) = st.get_mut(i) {
                    let state = g.state(local).as_str();
                    if s.state != state {
                        s.state = state.into();
                        s.since_micros = now_micros();
                    }
                    s.failures = g.failures(local);
                    s.disabled = g.disabled(local);
                    s.output = self.runners[local].tail();
                }
            }
        }
        if self.role == GroupRole::Primary {
            let why = g.blocked().map(|b| {
                    format!(
                        "resource {} could not be confirmed stopped (it may still run); hadr retries its stop every {} s — see hadr status",
                        self.resources[b].name,
                        RETRY_STOPS.as_secs()
                    )
                });
            // The reason first, then the flag: a reader that sees the flag
            // finds the reason.
            let set = why.is_some();
            *self
                .shared
                .blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = why;
            self.shared
                .is_blocked
                .store(set, std::sync::atomic::Ordering::Release);
        }
        self.down.send_if_modified(|d| {
            let v = g.all_down();
            let changed = *d != v;
            *d = v;
            changed
        });
    }
}
