//! The hosts a client knows: configured ones, the live topology the cluster
//! advertises (ParameterStatus `hadr.topology`), and the ones remembered in
//! an optional cache file, so that a client restarted while its first
//! configured host is a standby under rebuild still finds the primary
//! (pitfalls 1 and 5 of DB2's client reroute: a hand-typed alternate server,
//! and a driver that only tries its first configured host).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::addr::HostAddr;
use crate::config::Target;

/// At most this many learnt hosts are kept (and cached): a cluster has a
/// handful of members, and a list fed by a misbehaving server stays bounded.
const MAX_LEARNT: usize = 32;

/// The cluster as one node sees it (the `hadr.topology` value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The epoch (a newer epoch supersedes an older view).
    pub epoch: u64,
    /// The primary's client address, if the node knows one.
    pub primary: Option<HostAddr>,
    /// The standbys' client addresses.
    pub standbys: Vec<HostAddr>,
}

/// A `hadr.topology` value that is not one.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Not the JSON object expected.
    #[error("hadr.topology is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// An address that is not `host:port`.
    #[error("hadr.topology names an invalid address \"{0}\"")]
    Address(String),
}

#[derive(Deserialize)]
struct RawTopology {
    epoch: u64,
    primary: Option<String>,
    #[serde(default)]
    standbys: Vec<String>,
}

impl Topology {
    /// Parse `{"epoch":5,"primary":"127.0.0.1:5433","standbys":["127.0.0.1:5434"]}`.
    pub fn parse(s: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology = serde_json::from_str(s)?;
        let addr = |a: String| HostAddr::parse(&a).ok_or(TopologyError::Address(a));
        Ok(Topology {
            epoch: raw.epoch,
            primary: raw.primary.map(addr).transpose()?,
            standbys: raw
                .standbys
                .into_iter()
                .take(MAX_LEARNT)
                .map(addr)
                .collect::<Result<_, _>>()?,
        })
    }

    fn members(&self) -> impl Iterator<Item = &HostAddr> {
        self.primary.iter().chain(self.standbys.iter())
    }
}

/// What the cache file holds.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Default)]
struct CacheFile {
    epoch: Option<u64>,
    primary: Option<String>,
    hosts: Vec<String>,
}

/// The hosts a client knows and the newest topology it has seen.
#[derive(Clone, Debug, Default)]
pub struct HostBook {
    configured: Vec<HostAddr>,
    /// Advertised or cached hosts, most recently seen first.
    learnt: Vec<HostAddr>,
    topology: Option<Topology>,
}

impl HostBook {
    /// A book with the configured hosts only.
    pub fn new(configured: Vec<HostAddr>) -> HostBook {
        HostBook {
            configured,
            learnt: Vec::new(),
            topology: None,
        }
    }

    /// The newest topology seen.
    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    /// Every known host: configured and learnt.
    pub fn all(&self) -> Vec<HostAddr> {
        let mut v = Vec::new();
        for h in self.configured.iter().chain(self.learnt.iter()) {
            push_new(&mut v, h);
        }
        v
    }

    /// Take in a topology a node advertised. A view from an older epoch
    /// than the newest seen does not replace it (a deposed primary may
    /// still think it is one), but its hosts are still learnt. Returns
    /// whether anything changed.
    pub fn observe(&mut self, mut t: Topology) -> bool {
        let mut changed = false;
        let mut learnt: Vec<HostAddr> = Vec::new();
        for h in t.members() {
            push_new(&mut learnt, h);
        }
        for h in &self.learnt {
            push_new(&mut learnt, h);
        }
        learnt.truncate(MAX_LEARNT);
        if learnt != self.learnt {
            self.learnt = learnt;
            changed = true;
        }
        let newer = match &self.topology {
            None => true,
            Some(old) if t.epoch == old.epoch && t.primary.is_none() => {
                // A standby that has not heard from the primary of this
                // epoch yet does not unlearn it.
                t.primary = old.primary.clone();
                *old != t
            }
            Some(old) => t.epoch > old.epoch || (t.epoch == old.epoch && *old != t),
        };
        if newer {
            self.topology = Some(t);
            changed = true;
        }
        changed
    }

    /// The order in which to try hosts for `target`: for the primary, the
    /// advertised primary first, then the configured hosts in their order,
    /// then the other learnt ones; for a standby, the advertised standbys
    /// first and the primary last. Every known host is in it once.
    pub fn candidates(&self, target: &Target) -> Vec<HostAddr> {
        let mut v = Vec::new();
        let primary = self.topology.as_ref().and_then(|t| t.primary.clone());
        match target {
            Target::Primary => {
                if let Some(p) = &primary {
                    push_new(&mut v, p);
                }
                for h in self.configured.iter().chain(self.learnt.iter()) {
                    push_new(&mut v, h);
                }
            }
            Target::Standby { .. } => {
                if let Some(t) = &self.topology {
                    for h in &t.standbys {
                        push_new(&mut v, h);
                    }
                }
                for h in self.configured.iter().chain(self.learnt.iter()) {
                    if Some(h) != primary.as_ref() {
                        push_new(&mut v, h);
                    }
                }
                if let Some(p) = &primary {
                    push_new(&mut v, p);
                }
            }
        }
        v
    }

    /// Read the cache file, if any. A missing file is normal; a file that
    /// cannot be read or parsed is ignored with a warning (the client still
    /// has its configured hosts).
    pub fn load_cache(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the host cache; ignoring it");
                return;
            }
        };
        let cache: CacheFile = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the host cache is corrupt; ignoring it");
                return;
            }
        };
        let mut hosts: Vec<HostAddr> = Vec::new();
        for h in cache.hosts.iter().take(MAX_LEARNT) {
            match HostAddr::parse(h) {
                Some(a) => push_new(&mut hosts, &a),
                None => {
                    tracing::warn!(path = %path.display(), host = %h, "the host cache names an invalid host; ignoring it")
                }
            }
        }
        let primary = cache.primary.as_deref().and_then(HostAddr::parse);
        for h in &hosts {
            push_new(&mut self.learnt, h);
        }
        self.learnt.truncate(MAX_LEARNT);
        // A cached primary is a hint only: any topology a node advertises
        // replaces it (epoch 0 loses to every real one).
        if self.topology.is_none() && primary.is_some() {
            self.topology = Some(Topology {
                epoch: 0,
                primary,
                standbys: Vec::new(),
            });
        }
    }

    /// Write the cache file atomically (a temporary file renamed over it),
    /// so that a crash leaves the old file or the new one, never half.
    pub fn save_cache(&self, path: &Path) -> std::io::Result<()> {
        let t = self.topology.as_ref();
        let cache = CacheFile {
            epoch: t.map(|t| t.epoch),
            primary: t.and_then(|t| t.primary.as_ref()).map(|p| p.to_string()),
            hosts: self.all().iter().map(|h| h.to_string()).collect(),
        };
        let text = serde_json::to_string_pretty(&cache).map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

fn push_new(v: &mut Vec<HostAddr>, h: &HostAddr) {
    if !v.contains(h) {
        v.push(h.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> HostAddr {
        HostAddr::parse(s).unwrap()
    }

    #[test]
    fn topology_json() {
        let t = Topology::parse(
            r#"{"epoch":5,"primary":"127.0.0.1:5433","standbys":["127.0.0.1:5434","[::1]:5435"]}"#,
        )
        .unwrap();
        assert_eq!(t.epoch, 5);
        assert_eq!(t.primary, Some(a("127.0.0.1:5433")));
        assert_eq!(t.standbys, vec![a("127.0.0.1:5434"), a("[::1]:5435")]);
        let t = Topology::parse(r#"{"epoch":1,"primary":null,"standbys":[]}"#).unwrap();
        assert_eq!(t.primary, None);
        // Unknown fields are allowed (a newer server may add some).
        assert!(Topology::parse(r#"{"epoch":1,"primary":null,"standbys":[],"x":1}"#).is_ok());
    }

    #[test]
    fn topology_garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "null",
            "[]",
            "{",
            "not json",
            r#"{"primary":"a:1"}"#,
            r#"{"epoch":-1,"primary":null}"#,
            r#"{"epoch":1,"primary":"nohostport"}"#,
            r#"{"epoch":1,"primary":null,"standbys":["a:1",5]}"#,
            r#"{"epoch":1,"primary":7}"#,
        ] {
            assert!(Topology::parse(bad).is_err(), "{bad}");
        }
    }

    fn topo(epoch: u64, primary: &str, standbys: &[&str]) -> Topology {
        Topology {
            epoch,
            primary: Some(a(primary)),
            standbys: standbys.iter().map(|s| a(s)).collect(),
        }
    }

    #[test]
    fn the_advertised_primary_is_tried_first_and_every_host_once() {
        let mut b = HostBook::new(vec![a("h:1"), a("h:2")]);
        assert_eq!(b.candidates(&Target::Primary), vec![a("h:1"), a("h:2")]);
        assert!(b.observe(topo(3, "h:3", &["h:2"])));
        assert_eq!(
            b.candidates(&Target::Primary),
            vec![a("h:3"), a("h:1"), a("h:2")]
        );
        // A standby target: standbys first, the primary last.
        assert_eq!(
            b.candidates(&Target::Standby {
                max_replay_lag: None
            }),
            vec![a("h:2"), a("h:1"), a("h:3")]
        );
        // Seeing the same view again changes nothing.
        assert!(!b.observe(topo(3, "h:3", &["h:2"])));
    }

    #[test]
    fn an_older_epoch_does_not_replace_the_primary() {
        let mut b = HostBook::new(vec![a("h:1")]);
        b.observe(topo(5, "h:2", &["h:1"]));
        // The deposed primary still advertises itself in its old epoch.
        b.observe(topo(4, "h:1", &["h:2", "h:9"]));
        assert_eq!(b.topology().unwrap().primary, Some(a("h:2")));
        assert_eq!(b.candidates(&Target::Primary)[0], a("h:2"));
        // Its hosts are still learnt.
        assert!(b.all().contains(&a("h:9")));
    }

    #[test]
    fn a_standby_without_news_does_not_unlearn_the_primary_of_its_epoch() {
        let mut b = HostBook::new(vec![a("h:1")]);
        b.observe(topo(5, "h:2", &["h:1"]));
        b.observe(Topology {
            epoch: 5,
            primary: None,
            standbys: vec![a("h:1"), a("h:3")],
        });
        assert_eq!(b.topology().unwrap().primary, Some(a("h:2")));
        assert_eq!(b.topology().unwrap().standbys, vec![a("h:1"), a("h:3")]);
        // A newer epoch without a primary is taken as it is.
        b.observe(Topology {
            epoch: 6,
            primary: None,
            standbys: vec![a("h:1")],
        });
        assert_eq!(b.topology().unwrap().primary, None);
        assert_eq!(b.candidates(&Target::Primary)[0], a("h:1"));
    }

    #[test]
    fn learnt_hosts_stay_bounded() {
        let mut b = HostBook::new(vec![a("h:1")]);
        for i in 0..100u16 {
            b.observe(topo(u64::from(i), &format!("p:{i}"), &[]));
        }
        assert!(b.all().len() <= MAX_LEARNT + 1);
        assert_eq!(b.candidates(&Target::Primary)[0], a("p:99"));
    }

    #[test]
    fn cache_round_trip_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.json");
        let mut b = HostBook::new(vec![a("h:1")]);
        b.observe(topo(7, "h:2", &["h:1", "[::1]:3"]));
        b.save_cache(&path).unwrap();
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A restarted client configured with h:1 only knows h:2 and tries it first.
        let mut c = HostBook::new(vec![a("h:1")]);
        c.load_cache(&path);
        assert_eq!(
            c.candidates(&Target::Primary),
            vec![a("h:2"), a("h:1"), a("[::1]:3")]
        );
        // Any advertised topology replaces the cached hint.
        c.observe(topo(1, "h:1", &[]));
        assert_eq!(c.candidates(&Target::Primary)[0], a("h:1"));
    }

    #[test]
    fn a_corrupt_or_missing_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.json");
        let mut b = HostBook::new(vec![a("h:1")]);
        b.load_cache(&path);
        assert_eq!(b.all(), vec![a("h:1")]);
        for junk in [
            "{\"epoch\":",
            "\u{0}\u{1}garbage",
            "[]",
            r#"{"epoch":1,"primary":5,"hosts":[]}"#,
        ] {
            std::fs::write(&path, junk).unwrap();
            let mut b = HostBook::new(vec![a("h:1")]);
            b.load_cache(&path);
            assert_eq!(b.all(), vec![a("h:1")], "{junk:?}");
            assert_eq!(b.candidates(&Target::Primary), vec![a("h:1")]);
        }
        // Invalid entries are dropped, valid ones kept.
        std::fs::write(&path, r#"{"epoch":1,"primary":"bad","hosts":["x","h:2"]}"#).unwrap();
        let mut b = HostBook::new(vec![a("h:1")]);
        b.load_cache(&path);
        assert_eq!(b.all(), vec![a("h:1"), a("h:2")]);
    }
}
