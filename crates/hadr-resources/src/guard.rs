//! A dead man's switch for a node's resources (docs/resources.md §When
//! hadr itself dies). If the hadr process is killed (kill -9, an OOM kill,
//! a crash) while its host lives on, nobody would stop its virtual IP and
//! services, and the standby that takes over would start them a second
//! time. So hadr starts a small `sh` guard that holds the read end of a
//! pipe; hadr holds the write end. When hadr dies, the kernel closes the
//! pipe, the guard's `read` returns, and the guard runs every resource's
//! stop, in reverse order (supervised services: SIGTERM to their process
//! group, SIGKILL after their stop timeout). A clean shutdown, which has
//! already stopped everything with confirmation, writes `clean` first and
//! the guard exits without acting.
//!
//! Stop commands must therefore be safe to run when the resource is not
//! running, as Pacemaker requires of its resource agents.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use tracing::{info, warn};

use crate::exec::sh_quote;
use crate::spec::{GroupRole, Kind, Resource, Service};

/// The running guard.
pub struct Guard {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Option<Child>>,
}

/// The guard's script: wait for hadr to go away, then stop everything.
pub fn script(resources: &[Resource], state_dir: &Path) -> String {
    let mut s = String::from(
        "read -r word\n[ \"$word\" = clean ] && exit 0\necho \"hadr resource guard: the hadr process is gone; stopping its resources\" >&2\n",
    );
    // Commands hadr was running (a start half-way, say) die first: one
    // finishing after the stops below would leave its resource running.
    let dir = sh_quote(&crate::exec::inflight_dir(state_dir).to_string_lossy());
    s.push_str(&format!(
        "for f in {dir}/*; do [ -f \"$f\" ] || continue; kill -KILL -\"${{f##*/}}\" 2>/dev/null; rm -f \"$f\"; done\n"
    ));
    for role in [GroupRole::Primary, GroupRole::Standby] {
        for r in resources.iter().rev().filter(|r| r.role == role) {
            let ms = r.stop_timeout.as_millis().max(100);
            let line = match &r.kind {
                Kind::Vip {
                    address, interface, ..
                } => format!(
                    "ip addr del {} dev {} 2>/dev/null",
                    sh_quote(address),
                    sh_quote(interface)
                ),
                Kind::Service(Service::Unit(u)) => format!("systemctl stop {}", sh_quote(u)),
                Kind::Service(Service::Command(_)) => {
                    let f = state_dir.join(format!("{}.pgid", r.name));
                    let f = sh_quote(&f.to_string_lossy());
                    // Poll in 100 ms steps up to the stop timeout, then kill.
                    format!(
                        "if [ -f {f} ]; then pg=$(cat {f}); kill -TERM -$pg 2>/dev/null; n=0; while kill -0 -$pg 2>/dev/null && [ $n -lt {} ]; do sleep 0.1; n=$((n+1)); done; kill -KILL -$pg 2>/dev/null; rm -f {f}; fi",
                        ms / 100
                    )
                }
                Kind::Mount { directory, .. } => {
                    format!("umount {}", sh_quote(&directory.to_string_lossy()))
                }
                // A stop may return before the resource is gone: wait for
                // the monitor, up to the stop timeout, as the driver does.
                Kind::Exec { stop, monitor, .. } => format!(
                    "( {stop} ); n=0; while ( {monitor} ) >/dev/null 2>&1 && [ $n -lt {} ]; do sleep 0.1; n=$((n+1)); done",
                    ms / 100
                ),
            };
            s.push_str(&format!(
                "echo \"hadr resource guard: stopping {}\" >&2\n{line}\n",
                r.name
            ));
        }
    }
    s
}

impl Guard {
    /// Start the guard (None if there is nothing to guard, or it cannot
    /// start — which is logged: the node runs, unguarded).
    pub fn spawn(resources: &[Resource], state_dir: &Path) -> Option<Guard> {
        if resources.is_empty() {
            return None;
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script(resources, state_dir))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // Its own process group: a Ctrl-C meant for hadr (which then stops
        // everything itself) must not kill the guard first.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        match cmd.spawn() {
            Ok(mut child) => {
                info!(
                    pid = child.id(),
                    "resource guard started (stops the resources if this process dies)"
                );
                Some(Guard {
                    stdin: Mutex::new(child.stdin.take()),
                    child: Mutex::new(Some(child)),
                })
            }
            Err(e) => {
                warn!(error = %e, "cannot start the resource guard: if this process is killed, its resources keep running until it restarts");
                None
            }
        }
    }

    /// Everything was stopped with confirmation: let the guard go without
    /// acting.
    pub fn disarm(&self) {
        if let Some(mut w) = self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.write_all(b"clean\n");
        }
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // Reap it off the caller's thread; it exits at once.
            let _ = std::thread::Builder::new()
                .name("hadr-guard-reap".into())
                .spawn(move || {
                    let _ = c.wait();
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exec(name: &str, stop: &str) -> Resource {
        Resource {
            name: name.into(),
            kind: Kind::Exec {
                start: "true".into(),
                stop: stop.into(),
                monitor: "false".into(),
            },
            role: GroupRole::Primary,
            start_timeout: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(1),
            kill_timeout: Duration::from_secs(1),
            monitor_interval: Duration::from_secs(1),
            monitor_timeout: Duration::from_secs(1),
            max_restarts: 0,
            on_exhausted: hadr_ha::resources::Exhausted::Stop,
            ready: None,
        }
    }

    #[test]
    fn the_guard_stops_in_reverse_order_when_its_pipe_closes_and_not_after_disarm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let l = log.to_string_lossy().to_string();
        let rs = vec![
            exec("a", &format!("echo a >> {l}")),
            exec("b", &format!("echo b >> {l}")),
        ];
        // Dropping the guard closes the pipe, as the death of hadr would.
        let g = Guard::spawn(&rs, dir.path()).unwrap();
        let mut child = g.child.lock().unwrap().take().unwrap();
        drop(g);
        child.wait().unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "b\na\n");

        // Disarmed: nothing runs.
        std::fs::remove_file(&log).unwrap();
        let g = Guard::spawn(&rs, dir.path()).unwrap();
        let mut child = g.child.lock().unwrap().take().unwrap();
        g.disarm();
        child.wait().unwrap();
        assert!(!log.exists());
    }
}
