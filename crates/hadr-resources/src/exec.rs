//! How each kind of resource is started, stopped, killed and monitored.
//!
//! Every command runs as `sh -c LINE` in its own process group, with a
//! timeout after which the whole group is killed: a hung `umount` or a
//! `systemctl` waiting on a unit must not hang the group's driver. What a
//! command prints goes to the node's log (tagged with the resource) and the
//! last lines are kept for `hadr status`.
//!
//! A start is done when the monitor confirms the resource runs; a stop is
//! done when the monitor confirms it is gone, polled until `stop_timeout`
//! (docs/resources.md §Confirmed stops). A monitor that cannot answer
//! (a command that fails to run, a timeout) confirms nothing.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::spec::{Kind, Resource, Service};

/// Lines of output kept per resource for status.
pub const TAIL: usize = 20;

/// How often a start or stop polls the monitor.
const POLL: Duration = Duration::from_millis(100);

/// The last lines a resource's commands printed.
pub type Tail = Arc<Mutex<VecDeque<String>>>;

fn push_line(tail: &Tail, line: String) {
    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
    if t.len() == TAIL {
        t.pop_front();
    }
    t.push_back(line);
}

/// A supervised service's process group.
#[derive(Debug, Default)]
struct Supervised {
    pgid: Option<i32>,
    child: Option<Child>,
}

/// Runs one resource's operations. Not shared between tasks: the group's
/// driver runs at most one operation per resource at a time, and monitors
/// only between them.
pub struct Runner {
    res: Resource,
    pgid_file: PathBuf,
    /// One empty file per command running now, named by its process group
    /// id: if hadr dies, the guard kills them before it runs the stops (an
    /// orphaned start finishing after the guard's stop would leave the
    /// resource running).
    inflight_dir: PathBuf,
    sup: tokio::sync::Mutex<Supervised>,
    tail: Tail,
}

/// What a monitor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// It runs.
    Running,
    /// It is gone.
    Gone,
    /// The monitor could not tell (why).
    Unknown(String),
}

impl Runner {
    /// A runner; `state_dir` keeps supervised services' process group ids,
    /// so a restarted node finds what a crashed run left running.
    pub fn new(res: Resource, state_dir: &Path) -> Runner {
        Runner {
            pgid_file: state_dir.join(format!("{}.pgid", res.name)),
            inflight_dir: inflight_dir(state_dir),
            res,
            sup: tokio::sync::Mutex::new(Supervised::default()),
            tail: Arc::default(),
        }
    }

    /// The last lines of output.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn note(&self, line: String) {
        info!(resource = %self.res.name, "{line}");
        push_line(&self.tail, line);
    }

    /// Does it run? (Used at start-up: an answer of "unknown" counts as
    /// running, so that it is stopped, with confirmation, before anything.)
    pub async fn probe(&self) -> bool {
        if matches!(self.res.kind, Kind::Service(Service::Command(_))) {
            // A service a crashed run of this node left behind.
            if let Ok(text) = std::fs::read_to_string(&self.pgid_file) {
                if let Ok(pgid) = text.trim().parse::<i32>() {
                    if group_alive(pgid) {
                        self.note(format!(
                            "found process group {pgid} from an earlier run still running"
                        ));
                        self.sup.lock().await.pgid = Some(pgid);
                    }
                }
            }
        }
        match self.monitor().await {
            Seen::Gone => false,
            Seen::Running => true,
            Seen::Unknown(why) => {
                self.note(format!(
                    "probe could not tell whether it runs ({why}); stopping it to be sure"
                ));
                true
            }
        }
    }

    /// Run the monitor once (within `monitor_timeout`).
    pub async fn monitor(&self) -> Seen {
        let t = self.res.monitor_timeout;
        match &self.res.kind {
            Kind::Exec { monitor, .. } => self.monitor_cmd(monitor, t).await,
            Kind::Service(Service::Unit(unit)) => {
                match self
                    .sh(
                        &format!("systemctl is-active --quiet {}", sh_quote(unit)),
                        t,
                        false,
                    )
                    .await
                {
                    Ok(0) => Seen::Running,
                    Ok(_) => Seen::Gone,
                    Err(e) => Seen::Unknown(e),
                }
            }
            Kind::Service(Service::Command(_)) => {
                let mut sup = self.sup.lock().await;
                if let Some(c) = sup.child.as_mut() {
                    // Reap the leader if it exited, so that a zombie does not
                    // keep the group "alive".
                    if let Ok(Some(status)) = c.try_wait() {
                        self.note(format!("process exited: {status}"));
                        sup.child = None;
                    }
                }
                match sup.pgid {
                    Some(pgid) if group_alive(pgid) => Seen::Running,
                    _ => Seen::Gone,
                }
            }
            Kind::Vip {
                address, interface, ..
            } => {
                match self
                    .capture(&format!("ip -o addr show dev {}", sh_quote(interface)), t)
                    .await
                {
                    Ok((0, out)) => {
                        if vip_present(&out, address) {
                            Seen::Running
                        } else {
                            Seen::Gone
                        }
                    }
                    Ok((_, out)) if out.contains("does not exist") => Seen::Gone,
                    Ok((code, out)) => Seen::Unknown(format!("ip exited {code}: {}", out.trim())),
                    Err(e) => Seen::Unknown(e),
                }
            }
            Kind::Mount { directory, .. } => {
                match std::fs::read_to_string("/proc/self/mountinfo") {
                    Ok(text) => {
                        if is_mount_point(&text, directory) {
                            Seen::Running
                        } else {
                            Seen::Gone
                        }
                    }
                    Err(e) => Seen::Unknown(format!("cannot read /proc/self/mountinfo: {e}")),
                }
            }
        }
    }

    /// Whether it runs and, if it has a `ready` command, that says so too:
    /// what a start waits for and what the periodic monitor checks. (A stop
    /// waits only for `monitor` to say gone.)
    pub async fn healthy(&self) -> Seen {
        let seen = self.monitor().await;
        match (&seen, &self.res.ready) {
            (Seen::Running, Some(line)) => self.monitor_cmd(line, self.res.monitor_timeout).await,
            _ => seen,
        }
    }

    async fn monitor_cmd(&self, line: &str, t: Duration) -> Seen {
        match self.sh(line, t, false).await {
            Ok(0) => Seen::Running,
            Ok(_) => Seen::Gone,
            Err(e) => Seen::Unknown(e),
        }
    }

    /// Poll the monitor until it says `want` or `deadline` passes.
    async fn until(&self, want: &Seen, deadline: Instant) -> bool {
        loop {
            let seen = if *want == Seen::Running {
                self.healthy().await
            } else {
                self.monitor().await
            };
            if &seen == want {
                return true;
            }
            if *want == Seen::Running && self.exited().await {
                // A supervised process that exited does not come back by
                // itself: waiting out start_timeout for its `ready` would
                // only delay the restart (or the hand-over) that follows.
                self.note("exited before it was ready".into());
                return false;
            }
            if Instant::now() >= deadline {
                if let Seen::Unknown(why) = seen {
                    self.note(format!("monitor: {why}"));
                }
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether this is a supervised service whose whole process group has
    /// exited (the monitor, which ran just before, reaped its leader).
    async fn exited(&self) -> bool {
        if !matches!(self.res.kind, Kind::Service(Service::Command(_))) {
            return false;
        }
        let sup = self.sup.lock().await;
        sup.child.is_none() && !sup.pgid.is_some_and(group_alive)
    }

    /// Start it; true once the monitor confirms it runs (within `start_timeout`).
    pub async fn start(&self) -> bool {
        let deadline = Instant::now() + self.res.start_timeout;
        let t = self.res.start_timeout;
        let ok = match &self.res.kind {
            Kind::Exec { start, .. } => self.run_step("start", start, t).await,
            Kind::Service(Service::Unit(unit)) => {
                self.run_step("start", &format!("systemctl start {}", sh_quote(unit)), t)
                    .await
            }
            Kind::Service(Service::Command(cmd)) => self.spawn_supervised(cmd).await,
            Kind::Vip {
                address,
                interface,
                arp,
            } => {
                let line = format!(
                    "ip addr add {} dev {}",
                    sh_quote(address),
                    sh_quote(interface)
                );
                let ok = match self.capture(&line, t).await {
                    Ok((0, _)) => true,
                    Ok((_, out)) if out.contains("File exists") => true,
                    Ok((code, out)) => {
                        self.note(format!("{line}: exited {code}: {}", out.trim()));
                        false
                    }
                    Err(e) => {
                        self.note(format!("{line}: {e}"));
                        false
                    }
                };
                if ok && *arp {
                    self.announce(address, interface);
                }
                ok
            }
            Kind::Mount {
                device,
                directory,
                fstype,
                options,
            } => {
                let mut line = String::from("mount");
                if let Some(t) = fstype {
                    line.push_str(&format!(" -t {}", sh_quote(t)));
                }
                if let Some(o) = options {
                    line.push_str(&format!(" -o {}", sh_quote(o)));
                }
                line.push_str(&format!(
                    " {} {}",
                    sh_quote(device),
                    sh_quote(&directory.to_string_lossy())
                ));
                self.run_step("start", &line, t).await
            }
        };
        ok && self.until(&Seen::Running, deadline).await
    }

    /// Stop it; true once the monitor confirms it is gone (within `stop_timeout`).
    pub async fn stop(&self) -> bool {
        let deadline = Instant::now() + self.res.stop_timeout;
        let t = self.res.stop_timeout;
        match &self.res.kind {
            Kind::Exec { stop, .. } => {
                // The stop command's own exit says little (it may return
                // before the resource is gone): the monitor decides.
                self.run_step("stop", stop, t).await;
            }
            Kind::Service(Service::Unit(unit)) => {
                self.run_step("stop", &format!("systemctl stop {}", sh_quote(unit)), t)
                    .await;
            }
            Kind::Service(Service::Command(_)) => {
                if let Some(pgid) = self.sup.lock().await.pgid {
                    self.note(format!("stopping: SIGTERM to process group {pgid}"));
                    signal_group(pgid, libc::SIGTERM);
                }
            }
            Kind::Vip {
                address, interface, ..
            } => {
                let line = format!(
                    "ip addr del {} dev {}",
                    sh_quote(address),
                    sh_quote(interface)
                );
                match self.capture(&line, t).await {
                    Ok((0, _)) => {}
                    Ok((code, out)) => self.note(format!("{line}: exited {code}: {}", out.trim())),
                    Err(e) => self.note(format!("{line}: {e}")),
                }
            }
            Kind::Mount { directory, .. } => {
                let dir = sh_quote(&directory.to_string_lossy());
                // A busy filesystem refuses; say who holds it, and try again
                // until the deadline (the holder may be finishing).
                let mut reported = false;
                loop {
                    match self.capture(&format!("umount {dir}"), t).await {
                        Ok((0, _)) => break,
                        Ok((_, out)) => {
                            if !reported {
                                reported = true;
                                self.note(format!("umount {dir}: {}", out.trim()));
                                if let Ok((_, who)) = self
                                    .capture(&format!("fuser -vm {dir}"), Duration::from_secs(5))
                                    .await
                                {
                                    for l in who.lines().filter(|l| !l.trim().is_empty()) {
                                        self.note(format!("busy: {l}"));
                                    }
                                }
                            }
                        }
                        Err(e) => self.note(format!("umount {dir}: {e}")),
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let gone = self.until(&Seen::Gone, deadline).await;
        if gone {
            let _ = std::fs::remove_file(&self.pgid_file);
        } else {
            self.note(format!(
                "not confirmed gone within stop_timeout {} ms",
                self.res.stop_timeout.as_millis()
            ));
        }
        gone
    }

    /// SIGKILL a supervised service's process group; true once it is gone.
    pub async fn kill(&self) -> bool {
        let pgid = self.sup.lock().await.pgid;
        let Some(pgid) = pgid else {
            return true;
        };
        self.note(format!("escalating: SIGKILL to process group {pgid}"));
        signal_group(pgid, libc::SIGKILL);
        let deadline = Instant::now() + self.res.kill_timeout;
        let gone = self.until(&Seen::Gone, deadline).await;
        if gone {
            let _ = std::fs::remove_file(&self.pgid_file);
        }
        gone
    }

    /// Run a start or stop command; true if it exited 0.
    async fn run_step(&self, what: &str, line: &str, t: Duration) -> bool {
        match self.sh(line, t, true).await {
            Ok(0) => true,
            Ok(code) => {
                self.note(format!("{what} command exited {code}"));
                false
            }
            Err(e) => {
                self.note(format!("{what} command: {e}"));
                false
            }
        }
    }

    /// `sh -c LINE` in its own process group, killed (the whole group) at
    /// the timeout; its output is logged if `log`. Returns the exit code.
    async fn sh(&self, line: &str, timeout: Duration, log: bool) -> Result<i32, String> {
        let (code, out) = self.capture(line, timeout).await?;
        if log {
            for l in out.lines().filter(|l| !l.trim().is_empty()) {
                self.note(l.to_string());
            }
        }
        Ok(code)
    }

    /// Like `sh`, returning stdout and stderr together.
    async fn capture(&self, line: &str, timeout: Duration) -> Result<(i32, String), String> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .env("HADR_RESOURCE", &self.res.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("cannot run sh: {e}"))?;
        let pid = child.id().map(|p| p as i32);
        // Dropped when the command ends, or when the operation is given up
        // (the task aborted): then the whole group is killed, not only sh.
        let mut running = pid.map(|pid| InFlight::new(&self.inflight_dir, pid));
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => {
                // Ended by itself: what it left in the background (a stop
                // that finishes later, a daemon it started) is its business.
                if let Some(r) = running.as_mut() {
                    r.ended = true;
                }
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                Ok((o.status.code().unwrap_or(-1), text))
            }
            Ok(Err(e)) => Err(format!("{line}: {e}")),
            Err(_) => {
                if let Some(pid) = pid {
                    signal_group(pid, libc::SIGKILL);
                }
                Err(format!(
                    "{line}: timed out after {} ms",
                    timeout.as_millis()
                ))
            }
        }
    }

    /// Start a supervised service; its output goes to the log.
    async fn spawn_supervised(&self, line: &str) -> bool {
        let mut sup = self.sup.lock().await;
        if let Some(pgid) = sup.pgid {
            if group_alive(pgid) {
                return true;
            }
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .env("HADR_RESOURCE", &self.res.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.note(format!("cannot start: {e}"));
                return false;
            }
        };
        let Some(pid) = child.id() else {
            self.note("started, but exited at once".into());
            return false;
        };
        let pgid = pid as i32;
        if let Some(dir) = self.pgid_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&self.pgid_file, pgid.to_string()) {
            warn!(resource = %self.res.name, error = %e, "cannot record the process group id; a crash of this node would leave the service running until it is stopped by hand");
        }
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let tail = self.tail.clone();
            let name = self.res.name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    info!(resource = %name, "{l}");
                    push_line(&tail, l);
                }
            });
        }
        self.note(format!("started process group {pgid}"));
        sup.pgid = Some(pgid);
        sup.child = Some(child);
        true
    }

    /// Gratuitous ARP for an IPv4 address, best effort and in the
    /// background: neighbours' caches learn the new owner at once.
    fn announce(&self, address: &str, interface: &str) {
        let ip = address.split('/').next().unwrap_or(address).to_string();
        if ip.contains(':') {
            // IPv6: the kernel sends unsolicited neighbour advertisements
            // when net.ipv6.conf.IFACE.ndisc_notify = 1 (docs/resources.md).
            return;
        }
        let tail = self.tail.clone();
        let name = self.res.name.clone();
        let interface = interface.to_string();
        tokio::spawn(async move {
            let run = Command::new("arping")
                .args(["-U", "-c", "2", "-w", "2", "-I", &interface, &ip])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(Duration::from_secs(4), run).await {
                Ok(Ok(o)) if o.status.success() => {}
                Ok(Ok(o)) => {
                    let l = format!(
                        "arping -U {ip} on {interface}: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    );
                    warn!(resource = %name, "{l}");
                    push_line(&tail, l);
                }
                Ok(Err(e)) => {
                    let l = format!("cannot run arping (package iputils-arping): {e}; neighbours learn the address when their ARP cache expires");
                    warn!(resource = %name, "{l}");
                    push_line(&tail, l);
                }
                Err(_) => {}
            }
        });
    }
}

/// Where running commands are registered (see [`Runner`]).
pub fn inflight_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("inflight")
}

/// A command running in its own process group: registered for the guard
/// while it runs; its group is killed if it is dropped before it ended by
/// itself.
struct InFlight {
    file: PathBuf,
    pgid: i32,
    /// The command ended by itself.
    ended: bool,
}

impl InFlight {
    fn new(dir: &Path, pgid: i32) -> InFlight {
        let file = dir.join(pgid.to_string());
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&file, b"");
        InFlight {
            file,
            pgid,
            ended: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A command given up half-way (its operation abandoned, or its
        // timeout passed) must not outlive the operation it belonged to.
        if !self.ended && group_alive(self.pgid) {
            signal_group(self.pgid, libc::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Whether any live process of group `pgid` exists. Zombies do not count:
/// a killed group's members whose parent died too are reparented to init
/// and stay zombies until it reaps them, which some inits (a container's)
/// do late; a zombie holds no file, lock or port, so waiting for it would
/// only make a confirmed stop slow (and a kill look failed).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(-pgid, 0) };
    if !(r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)) {
        return false;
    }
    match std::fs::read_dir("/proc") {
        Ok(dir) => dir.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::read_to_string(e.path().join("stat"))
                    .is_ok_and(|stat| live_member(&stat, pgid))
        }),
        // No /proc: the signal's answer is all there is.
        Err(_) => true,
    }
}

/// Whether a `/proc/PID/stat` line is a process of group `pgid` that is
/// not a zombie (fields after the command's closing parenthesis: state,
/// ppid, pgrp).
fn live_member(stat: &str, pgid: i32) -> bool {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut f = rest.split_whitespace();
    let state = f.next();
    let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
    pgrp == Some(pgid) && !matches!(state, Some("Z") | Some("X"))
}

fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: signalling a process group we created; no memory is touched.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Single-quote a word for `sh`.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether `ip -o addr show` output lists `address` (with its prefix).
pub fn vip_present(ip_output: &str, address: &str) -> bool {
    let want = if address.contains('/') {
        address.to_string()
    } else if address.contains(':') {
        format!("{address}/128")
    } else {
        format!("{address}/32")
    };
    ip_output.lines().any(|l| {
        let mut words = l.split_whitespace();
        while let Some(w) = words.next() {
            if (w == "inet" || w == "inet6") && words.next() == Some(want.as_str()) {
                return true;
            }
        }
        false
    })
}

/// Whether `dir` is a mount point in `/proc/self/mountinfo` text (field 5,
/// with the kernel's octal escapes for space, tab, newline and backslash).
pub fn is_mount_point(mountinfo: &str, dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    let want = want.trim_end_matches('/');
    mountinfo.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mount(m).trim_end_matches('/') == want)
    })
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::GroupRole;

    fn service(command: &str, ready: &str) -> Resource {
        Resource {
            name: "svc".into(),
            kind: Kind::Service(Service::Command(command.into())),
            role: GroupRole::Primary,
            start_timeout: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(2),
            kill_timeout: Duration::from_secs(2),
            monitor_interval: Duration::from_secs(1),
            monitor_timeout: Duration::from_secs(5),
            max_restarts: 1,
            on_exhausted: hadr_ha::resources::Exhausted::Stop,
            ready: Some(ready.into()),
        }
    }

    /// A service that dies while its `ready` check has not passed yet fails
    /// its start at once, not after start_timeout (20 s here): found by
    /// tests/resources_netns.rs, where a service killed during its restart
    /// held the hand-over back by the whole start_timeout.
    #[tokio::test]
    async fn a_service_that_exits_before_it_is_ready_fails_its_start_at_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = Runner::new(service("sleep 0.2; exit 3", "false"), dir.path());
        let t = Instant::now();
        assert!(!r.start().await);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(r
            .tail()
            .iter()
            .any(|l| l.contains("exited before it was ready")));
        // One that lives on is waited for until ready passes.
        let ready = dir.path().join("ready");
        let r = Runner::new(
            service("sleep 30", &format!("test -e {}", ready.display())),
            dir.path(),
        );
        let mark = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::fs::write(&ready, b"").unwrap_or_else(|e| panic!("{e}"));
        });
        assert!(r.start().await);
        let _ = mark.await;
        assert!(r.stop().await);
    }

    #[test]
    fn zombies_are_not_live_members() {
        let live = "4242 (sleep) S 1 4200 4200 0 -1 4194560 96 0 0 0";
        assert!(live_member(live, 4200));
        assert!(!live_member(live, 4201));
        assert!(!live_member("4243 (sleep) Z 1 4200 4200 0", 4200));
        // A command with spaces and parentheses.
        assert!(live_member("4244 (a (b) c) R 1 4200 4200 0", 4200));
        assert!(!live_member("garbage", 4200));
    }

    #[test]
    fn vip_is_found_with_its_prefix_only() {
        let out = "2: veth0    inet 10.0.0.1/24 brd 10.0.0.255 scope global veth0\n2: veth0    inet 10.0.0.100/24 scope global secondary veth0\n";
        assert!(vip_present(out, "10.0.0.100/24"));
        assert!(!vip_present(out, "10.0.0.10/24"));
        assert!(!vip_present(out, "10.0.0.100/32"));
        assert!(!vip_present("", "10.0.0.100/24"));
    }

    #[test]
    fn mount_points_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw\n37 35 0:5 / /srv/data rw - tmpfs tmpfs rw\n";
        assert!(is_mount_point(info, Path::new("/mnt/my disk")));
        assert!(is_mount_point(info, Path::new("/srv/data/")));
        assert!(!is_mount_point(info, Path::new("/srv")));
    }

    #[test]
    fn quoting_keeps_words_whole() {
        assert_eq!(sh_quote("eth0"), "eth0");
        assert_eq!(sh_quote("10.0.0.1/24"), "10.0.0.1/24");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
