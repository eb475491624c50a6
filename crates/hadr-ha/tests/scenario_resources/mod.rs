//! The runner of `testdata/resources.txt`: a resource group's rules
//! (`hadr_ha::resources`).
//!
//! - `group members=(NAME[-MAX_RESTARTS][-takeover][-kill], …)` starts a
//!   group (max restarts 3 by default, on exhaustion stop, not killable).
//! - `want online|offline`, `probed r=NAME running|gone`, `started r=NAME
//!   ok|fail`, `stopped r=NAME ok|fail`, `killed r=NAME ok|fail`,
//!   `monitor-failed r=NAME`, `abandoned r=NAME`, `disable r=`, `enable r=`, `restart r=`,
//!   `retry-stops` feed it. Each answer is the actions, then every resource's state (with its
//!   failures and flags), then whether the group is settled, all down, or
//!   blocked.

use std::fmt::Write as _;

use datadriven::TestCase;
use hadr_ha::resources::{Action, Exhausted, Group, Input, Member, Want};

use super::{kind, take};

#[derive(Default)]
pub struct ResourcesCase {
    group: Option<Group>,
    names: Vec<String>,
}

fn member(spec: &str) -> Result<Member, String> {
    let mut parts = spec.split('-');
    let name = parts.next().unwrap_or_default().to_string();
    let mut m = Member {
        name,
        max_restarts: 3,
        on_exhausted: Exhausted::Stop,
        killable: false,
    };
    for p in parts {
        match p {
            "takeover" => m.on_exhausted = Exhausted::Takeover,
            "kill" => m.killable = true,
            n => m.max_restarts = n.parse().map_err(|_| format!("{p:?} in {spec:?}"))?,
        }
    }
    Ok(m)
}

pub fn resources_case(s: &mut ResourcesCase, tc: &mut TestCase) -> Result<String, String> {
    if tc.directive == "group" {
        let specs: Vec<String> = tc.take_args("members").map_err(|e| e.to_string())?;
        let members = specs
            .iter()
            .map(|a| member(a))
            .collect::<Result<Vec<_>, _>>()?;
        s.names = members.iter().map(|m| m.name.clone()).collect();
        s.group = Some(Group::new(members));
        return Ok(render(s, &[]));
    }
    let names = s.names.clone();
    let idx = |tc: &mut TestCase| -> Result<usize, String> {
        let name: String = take(tc, "r")?;
        names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("no resource {name:?}"))
    };
    let yes = |tc: &mut TestCase, y: &'static str, n: &'static str| -> Result<bool, String> {
        Ok(kind(tc, &[y, n])? == y)
    };
    let input = match tc.directive.as_str() {
        "want" => Input::Want(if yes(tc, "online", "offline")? {
            Want::Online
        } else {
            Want::Offline
        }),
        "probed" => Input::Probed {
            i: idx(tc)?,
            running: yes(tc, "running", "gone")?,
        },
        "started" => Input::Started {
            i: idx(tc)?,
            ok: yes(tc, "ok", "fail")?,
        },
        "stopped" => Input::Stopped {
            i: idx(tc)?,
            confirmed: yes(tc, "ok", "fail")?,
        },
        "killed" => Input::Killed {
            i: idx(tc)?,
            confirmed: yes(tc, "ok", "fail")?,
        },
        "monitor-failed" => Input::MonitorFailed { i: idx(tc)? },
        "abandoned" => Input::StartAbandoned { i: idx(tc)? },
        "disable" => Input::Disable { i: idx(tc)? },
        "enable" => Input::Enable { i: idx(tc)? },
        "restart" => Input::Restart { i: idx(tc)? },
        "retry-stops" => Input::RetryStops,
        d => return Err(format!("unknown directive {d:?}")),
    };
    let g = s.group.as_mut().ok_or("no group yet")?;
    let actions = g.step(input);
    Ok(render(s, &actions))
}

fn render(s: &ResourcesCase, actions: &[Action]) -> String {
    let mut out = String::new();
    let name = |i: &usize| s.names.get(*i).cloned().unwrap_or_default();
    for a in actions {
        let _ = match a {
            Action::Probe(i) => writeln!(out, "probe {}", name(i)),
            Action::Start(i) => writeln!(out, "start {}", name(i)),
            Action::Stop(i) => writeln!(out, "stop {}", name(i)),
            Action::Kill(i) => writeln!(out, "kill {}", name(i)),
            Action::RequestTakeover { reason } => writeln!(out, "request takeover: {reason}"),
        };
    }
    if actions.is_empty() {
        out.push_str("(nothing to do)\n");
    }
    let Some(g) = &s.group else {
        return out;
    };
    let states: Vec<String> = (0..g.len())
        .map(|i| {
            let mut st = format!("{}={}", s.names[i], g.state(i).as_str());
            if g.failures(i) > 0 {
                let _ = write!(st, "({} failures)", g.failures(i));
            }
            if g.disabled(i) {
                st.push_str("(disabled)");
            }
            st
        })
        .collect();
    let _ = writeln!(out, "{}", states.join(" "));
    let mut flags = Vec::new();
    if g.settled() {
        flags.push("settled".to_string());
    }
    if g.all_down() {
        flags.push("all down".to_string());
    }
    if let Some(b) = g.blocked() {
        flags.push(format!("blocked by {}", s.names[b]));
    }
    if !flags.is_empty() {
        let _ = writeln!(out, "{}", flags.join(", "));
    }
    out
}
