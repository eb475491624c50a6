//! What a resource is, once the configuration was read and checked
//! (`hadr_server::resource_config` turns TOML into these).

use std::path::PathBuf;
use std::time::Duration;

use hadr_ha::resources::Exhausted;

/// Which role a resource follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    /// Runs while the node is a writable primary (or a single database).
    Primary,
    /// Runs while the node is a standby (a read-only service, say).
    Standby,
}

impl GroupRole {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Primary => "primary",
            GroupRole::Standby => "standby",
        }
    }
}

/// A service: a systemd unit, or a command line hadr supervises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// `systemctl start|stop|is-active UNIT`.
    Unit(String),
    /// `sh -c COMMAND` in its own process group; its output goes to the
    /// node's log. Stopped with SIGTERM to the group, then SIGKILL.
    Command(String),
}

/// How a resource is started, stopped and monitored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An address on an interface (`ip addr`), announced with gratuitous
    /// ARP (`arping -U`) for IPv4.
    Vip {
        /// The address with its prefix length, e.g. `10.0.0.100/24`.
        address: String,
        /// The interface.
        interface: String,
        /// Announce with `arping -U` after adding (IPv4).
        arp: bool,
    },
    /// A service.
    Service(Service),
    /// A filesystem mounted while in the role.
    Mount {
        /// What to mount.
        device: String,
        /// Where.
        directory: PathBuf,
        /// `-t`.
        fstype: Option<String>,
        /// `-o`.
        options: Option<String>,
    },
    /// Any start/stop/monitor triple of shell commands (monitor exit 0:
    /// running).
    Exec {
        /// Start command.
        start: String,
        /// Stop command.
        stop: String,
        /// Monitor command.
        monitor: String,
    },
}

impl Kind {
    /// The kind's name in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Vip { .. } => "vip",
            Kind::Service(_) => "service",
            Kind::Mount { .. } => "mount",
            Kind::Exec { .. } => "exec",
        }
    }

    /// Whether an unconfirmed stop can be escalated to killing a process group.
    pub fn killable(&self) -> bool {
        matches!(self, Kind::Service(Service::Command(_)))
    }
}

/// One resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Unique name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Which role it follows.
    pub role: GroupRole,
    /// Longest a start may take until the monitor confirms it runs.
    pub start_timeout: Duration,
    /// Longest a stop may take until the monitor confirms it is gone.
    pub stop_timeout: Duration,
    /// After an unconfirmed stop of a supervised service: how long SIGKILL
    /// of its group may take.
    pub kill_timeout: Duration,
    /// How often an online resource's monitor runs.
    pub monitor_interval: Duration,
    /// Longest one monitor run may take (longer counts as a failure).
    pub monitor_timeout: Duration,
    /// Failures tolerated by restarting it in place.
    pub max_restarts: u32,
    /// What happens after that.
    pub on_exhausted: Exhausted,
    /// A command that must also exit 0 for a running resource to count as
    /// started and healthy (say, `curl -sf http://127.0.0.1:8080/`); its
    /// failure is a monitor failure. A stop waits only for the resource to
    /// be gone.
    pub ready: Option<String>,
}

impl Resource {
    /// The longest this resource can take to be confirmed gone once its
    /// stop begins (its stop, plus the kill for supervised services).
    pub fn stop_bound(&self) -> Duration {
        if self.kind.killable() {
            self.stop_timeout + self.kill_timeout
        } else {
            self.stop_timeout
        }
    }

    /// The rules' view of it.
    pub fn member(&self) -> hadr_ha::resources::Member {
        hadr_ha::resources::Member {
            name: self.name.clone(),
            max_restarts: self.max_restarts,
            on_exhausted: self.on_exhausted,
            killable: self.kind.killable(),
        }
    }
}

/// The longest a group of resources can take to be confirmed gone, one
/// after the other: what a new primary that could not hear its predecessor
/// confirm its stops waits after promotion (docs/resources.md §Who starts when).
pub fn stop_bound(resources: &[Resource], role: GroupRole) -> Duration {
    resources
        .iter()
        .filter(|r| r.role == role)
        .map(Resource::stop_bound)
        .sum()
}
