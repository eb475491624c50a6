//! The `[[resource]]` tables of the configuration (docs/resources.md), and
//! their checks: a bad resource stops start-up with a message that names
//! the table and key (`resource[1] (web).monitor: …`), never at the first
//! failover.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use hadr_ha::resources::Exhausted;
use hadr_resources::{GroupRole, Kind, Resource, Service};
use serde::{Deserialize, Serialize};

use crate::units::Dur;

/// One `[[resource]]` table as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Unique name (letters, digits, `-`, `_`).
    pub name: String,
    /// `vip`, `service`, `mount` or `exec`.
    pub kind: String,
    /// `primary` (default) or `standby`.
    pub role: Option<String>,
    /// exec: start command.
    pub start: Option<String>,
    /// exec: stop command.
    pub stop: Option<String>,
    /// exec: monitor command (exit 0: running).
    pub monitor: Option<String>,
    /// Any kind: a command that must also exit 0 for the resource to count
    /// as started and healthy.
    pub ready: Option<String>,
    /// vip: `ADDRESS/PREFIX`.
    pub address: Option<String>,
    /// vip: the interface.
    pub interface: Option<String>,
    /// vip: announce with `arping -U` (default true).
    pub arp: Option<bool>,
    /// service: a command line hadr supervises.
    pub command: Option<String>,
    /// service: a systemd unit.
    pub unit: Option<String>,
    /// mount: what to mount.
    pub device: Option<String>,
    /// mount: where.
    pub directory: Option<PathBuf>,
    /// mount: `-t`.
    pub fstype: Option<String>,
    /// mount: `-o`.
    pub options: Option<String>,
    /// Longest a start may take (default 20s).
    pub start_timeout: Option<Dur>,
    /// Longest a stop may take until confirmed (default 10s; vip 2s).
    pub stop_timeout: Option<Dur>,
    /// service command: longest the SIGKILL of its group may take (default 2s).
    pub kill_timeout: Option<Dur>,
    /// How often the monitor runs (default 2s).
    pub monitor_interval: Option<Dur>,
    /// Longest one monitor run may take (default 10s).
    pub monitor_timeout: Option<Dur>,
    /// Failures tolerated by restarting in place (default 3).
    pub max_restarts: Option<u32>,
    /// `stop` (default) or `takeover`: what happens after max_restarts.
    pub on_exhausted: Option<String>,
}

/// A `[[resource]]` table that is wrong, named by position, name and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting resource[{index}] ({name}).{key}: {message}")]
pub struct ResourceError {
    /// Its position among the `[[resource]]` tables.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(
    i: usize,
    r: &ResourceConfig,
    key: &'static str,
    message: impl Into<String>,
) -> ResourceError {
    ResourceError {
        index: i,
        name: r.name.clone(),
        key,
        message: message.into(),
    }
}

/// The keys each kind takes besides the common ones.
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "vip" => &["address", "interface", "arp"],
        "service" => &["command", "unit", "kill_timeout"],
        "mount" => &["device", "directory", "fstype", "options"],
        "exec" => &["start", "stop", "monitor"],
        _ => &[],
    }
}

/// Check every resource and turn them into what the driver runs.
/// `replicated`: the node has peers (a takeover can be asked for).
pub fn resources(
    list: &[ResourceConfig],
    replicated: bool,
) -> Result<Vec<Resource>, ResourceError> {
    let mut out: Vec<Resource> = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                i,
                r,
                "name",
                "must be letters, digits, - or _ (and not empty)",
            ));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(err(i, r, "name", "another resource has this name"));
        }
        if !["vip", "service", "mount", "exec"].contains(&r.kind.as_str()) {
            return Err(err(
                i,
                r,
                "kind",
                format!(
                    "unknown kind {:?} (expected vip, service, mount or exec)",
                    r.kind
                ),
            ));
        }
        let set: [(&'static str, bool); 13] = [
            ("start", r.start.is_some()),
            ("stop", r.stop.is_some()),
            ("monitor", r.monitor.is_some()),
            ("address", r.address.is_some()),
            ("interface", r.interface.is_some()),
            ("arp", r.arp.is_some()),
            ("command", r.command.is_some()),
            ("unit", r.unit.is_some()),
            ("device", r.device.is_some()),
            ("directory", r.directory.is_some()),
            ("fstype", r.fstype.is_some()),
            ("options", r.options.is_some()),
            ("kill_timeout", r.kill_timeout.is_some()),
        ];
        for (key, present) in set {
            if present && !kind_keys(&r.kind).contains(&key) {
                return Err(err(
                    i,
                    r,
                    key,
                    format!("is not a setting of kind {}", r.kind),
                ));
            }
        }
        let need = |key: &'static str, v: &Option<String>| -> Result<String, ResourceError> {
            match v {
                Some(s) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(err(i, r, key, format!("is required for kind {}", r.kind))),
            }
        };
        let kind = match r.kind.as_str() {
            "vip" => {
                let address = need("address", &r.address)?;
                check_address(&address).map_err(|m| err(i, r, "address", m))?;
                Kind::Vip {
                    address,
                    interface: need("interface", &r.interface)?,
                    arp: r.arp.unwrap_or(true),
                }
            }
            "service" => match (&r.command, &r.unit) {
                (Some(c), None) if !c.trim().is_empty() => {
                    Kind::Service(Service::Command(c.clone()))
                }
                (None, Some(u)) if !u.trim().is_empty() => Kind::Service(Service::Unit(u.clone())),
                (Some(_), Some(_)) => {
                    return Err(err(
                        i,
                        r,
                        "unit",
                        "set either command (supervised by hadr) or unit (systemd), not both",
                    ))
                }
                _ => {
                    return Err(err(
                        i,
                        r,
                        "command",
                        "a service needs command (supervised by hadr) or unit (systemd)",
                    ))
                }
            },
            "mount" => {
                let directory = r
                    .directory
                    .clone()
                    .ok_or_else(|| err(i, r, "directory", "is required for kind mount"))?;
                if !directory.is_absolute() {
                    return Err(err(i, r, "directory", "must be an absolute path"));
                }
                Kind::Mount {
                    device: need("device", &r.device)?,
                    directory,
                    fstype: r.fstype.clone(),
                    options: r.options.clone(),
                }
            }
            _ => Kind::Exec {
                start: need("start", &r.start)?,
                stop: need("stop", &r.stop)?,
                monitor: need("monitor", &r.monitor)?,
            },
        };
        let role = match r.role.as_deref() {
            None | Some("primary") => GroupRole::Primary,
            Some("standby") => GroupRole::Standby,
            Some(o) => {
                return Err(err(
                    i,
                    r,
                    "role",
                    format!("{o:?} is not a role (primary or standby)"),
                ))
            }
        };
        let on_exhausted = match r.on_exhausted.as_deref() {
            None | Some("stop") => Exhausted::Stop,
            Some("takeover") => {
                if role != GroupRole::Primary || !replicated {
                    return Err(err(i, r, "on_exhausted", "takeover needs a primary resource on a node with hadr_target_list (a standby to take over)"));
                }
                Exhausted::Takeover
            }
            Some(o) => {
                return Err(err(
                    i,
                    r,
                    "on_exhausted",
                    format!("{o:?} is not stop or takeover"),
                ))
            }
        };
        let dur = |key: &'static str,
                   v: Option<Dur>,
                   default: Duration|
         -> Result<Duration, ResourceError> {
            let d = v.map(|d| d.0).unwrap_or(default);
            if d.is_zero() {
                return Err(err(i, r, key, "must be more than 0"));
            }
            Ok(d)
        };
        let vip = matches!(kind, Kind::Vip { .. });
        out.push(Resource {
            name: r.name.clone(),
            role,
            start_timeout: dur("start_timeout", r.start_timeout, Duration::from_secs(20))?,
            stop_timeout: dur(
                "stop_timeout",
                r.stop_timeout,
                Duration::from_secs(if vip { 2 } else { 10 }),
            )?,
            kill_timeout: dur("kill_timeout", r.kill_timeout, Duration::from_secs(2))?,
            monitor_interval: dur(
                "monitor_interval",
                r.monitor_interval,
                Duration::from_secs(2),
            )?,
            monitor_timeout: dur(
                "monitor_timeout",
                r.monitor_timeout,
                Duration::from_secs(10),
            )?,
            max_restarts: r.max_restarts.unwrap_or(3),
            on_exhausted,
            ready: r.ready.clone(),
            kind,
        });
    }
    Ok(out)
}

fn check_address(a: &str) -> Result<(), String> {
    let (ip, prefix) = a
        .split_once('/')
        .ok_or_else(|| format!("{a:?} needs a prefix length, e.g. 10.0.0.100/24"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(format!("{prefix:?} is not a prefix length (0..={max})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Resource>, String> {
        let c = crate::Config::from_toml(text).map_err(|e| e.to_string())?;
        resources(&c.resources, true).map_err(|e| e.to_string())
    }

    #[test]
    fn a_group_parses_in_order_with_defaults() {
        let r = parse(
            r#"
            [[resource]]
            name = "vip"
            kind = "vip"
            address = "10.0.0.100/24"
            interface = "eth0"

            [[resource]]
            name = "web"
            kind = "service"
            command = "python3 -m http.server 8080"
            stop_timeout = "5s"
            on_exhausted = "takeover"
            "#,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "vip");
        assert_eq!(r[0].stop_timeout, Duration::from_secs(2));
        assert_eq!(r[1].stop_bound(), Duration::from_secs(7));
        assert_eq!(r[1].on_exhausted, Exhausted::Takeover);
        assert_eq!(
            hadr_resources::spec::stop_bound(&r, GroupRole::Primary),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn bad_resources_name_the_key() {
        let cases = [
            ("name = \"x\"\nkind = \"nfs\"", "resource[0] (x).kind: unknown kind \"nfs\""),
            ("name = \"x\"\nkind = \"exec\"\nstart = \"a\"\nstop = \"b\"", "resource[0] (x).monitor: is required for kind exec"),
            ("name = \"x\"\nkind = \"vip\"\naddress = \"10.0.0.1\"\ninterface = \"e\"", "resource[0] (x).address: \"10.0.0.1\" needs a prefix length"),
            ("name = \"x\"\nkind = \"vip\"\naddress = \"10.0.0.1/33\"\ninterface = \"e\"", "resource[0] (x).address: \"33\" is not a prefix length"),
            ("name = \"x\"\nkind = \"exec\"\nstart = \"a\"\nstop = \"b\"\nmonitor = \"c\"\naddress = \"1\"", "resource[0] (x).address: is not a setting of kind exec"),
            ("name = \"x\"\nkind = \"service\"", "resource[0] (x).command: a service needs command"),
            ("name = \"x\"\nkind = \"mount\"\ndevice = \"/dev/sdb1\"\ndirectory = \"rel\"", "resource[0] (x).directory: must be an absolute path"),
            ("name = \"x y\"\nkind = \"exec\"", "resource[0] (x y).name: must be letters"),
            ("name = \"x\"\nkind = \"exec\"\nstart = \"a\"\nstop = \"b\"\nmonitor = \"c\"\nstop_timeout = \"0s\"", "resource[0] (x).stop_timeout: must be more than 0"),
            ("name = \"x\"\nkind = \"exec\"\nstart = \"a\"\nstop = \"b\"\nmonitor = \"c\"\nrole = \"witness\"", "resource[0] (x).role: \"witness\" is not a role"),
        ];
        for (body, want) in cases {
            let e = parse(&format!("[[resource]]\n{body}\n")).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let dup = parse("[[resource]]\nname = \"a\"\nkind = \"exec\"\nstart = \"x\"\nstop = \"x\"\nmonitor = \"x\"\n[[resource]]\nname = \"a\"\nkind = \"exec\"\nstart = \"x\"\nstop = \"x\"\nmonitor = \"x\"\n").unwrap_err();
        assert!(
            dup.contains("resource[1] (a).name: another resource has this name"),
            "{dup}"
        );
        let typo =
            parse("[[resource]]\nname = \"a\"\nkind = \"exec\"\nstrat = \"x\"\n").unwrap_err();
        assert!(typo.contains("unknown field `strat`"), "{typo}");
    }
}
