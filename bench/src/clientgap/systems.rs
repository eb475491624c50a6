//! The two systems the clients write to, each on hosts `a` and `b` of the
//! network namespaces, with the switches the part makes: an hadr pair
//! (etcd arbiter on `arb`) and PostgreSQL 15 under Patroni (the failover
//! part's cluster, bench/src/failover/patroni.rs, with etcd as its DCS).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hadr_testkit::netns::{HADR_PORT, PG_PORT};
use hadr_testkit::{self as kit, Server, Status};

use crate::failover::client::Endpoint;
use crate::failover::patroni::Cluster;
use crate::failover::servers::{self, Etcd};
use crate::failover::{Options, PartCtx, Setting};
use crate::{proc, replication, targets};

pub const HOSTS: [&str; 2] = ["a", "b"];
/// Longest wait for a pair to be back in sync after a switch.
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

/// hadr's flags besides addresses and the arbiter: its defaults, NEARSYNC
/// (no acknowledged commit may be lost), and one second between two
/// promotions of a node (the default minute, against ping-pong, would be
/// measured instead of the switch: the switches come back to back).
pub const HADR_FLAGS: [&str; 4] = [
    "--hadr-syncmode",
    "NEARSYNC",
    "--min-promotion-interval",
    "1s",
];

/// A system under test: two nodes, one of them the primary.
pub trait System {
    /// Which node is the primary (0 or 1).
    fn primary(&self) -> usize;
    fn endpoints(&self) -> Vec<Endpoint>;
    /// Until the primary has its standby in sync (a switch may happen).
    fn wait_in_sync(&mut self) -> Result<()>;
    /// Asks for a graceful switch to the standby; returns when the
    /// request was answered.
    fn graceful(&mut self) -> Result<()>;
    /// kill -9 of the primary's server processes (the host stays up: its
    /// kernel answers with resets).
    fn crash(&mut self) -> Result<()>;
    /// The switch happened: the standby is the primary now; a crashed
    /// node is restarted to rejoin as the standby.
    fn switched(&mut self, crashed: bool) -> Result<()>;
    /// The server logs, for a series that failed.
    fn logs(&self) -> Vec<(String, String)>;
    fn stop(&mut self);
}

/// An hadr pair with an etcd arbiter.
pub struct HadrPair {
    nodes: Vec<Server>,
    primary: usize,
    endpoints: Vec<Endpoint>,
}

impl HadrPair {
    pub fn start(p: &PartCtx, etcd: &Etcd, dir: &Path) -> Result<HadrPair> {
        let hadr = kit::Hadr::new(&p.ctx.hadr_bin);
        let mut nodes = Vec::new();
        for (i, name) in HOSTS.iter().enumerate() {
            let mut flags: Vec<String> = vec![
                "--hadr-local".into(),
                p.net.addr(name, HADR_PORT),
                "--hadr-target-list".into(),
                p.net.addr(HOSTS[1 - i], HADR_PORT),
                "--arbiter".into(),
                format!(
                    "etcd://{}/hadr-bench/client-gap-{}",
                    etcd.endpoint,
                    std::process::id()
                ),
            ];
            flags.extend(HADR_FLAGS.iter().map(|s| s.to_string()));
            nodes.push(
                p.net
                    .server(&hadr, name, dir.join(name), flags)
                    .interruptible(proc::interrupted),
            );
        }
        let endpoints: Vec<Endpoint> = HOSTS
            .iter()
            .map(|h| Endpoint {
                host: p.net.ip(h).to_string(),
                port: PG_PORT,
            })
            .collect();
        hadr.init(&dir.join("a"))?;
        nodes[0].spawn_primary(Duration::from_secs(60))?;
        targets::psql(
            &targets::ConnInfo {
                host: endpoints[0].host.clone(),
                port: PG_PORT,
                user: "postgres".into(),
                dbname: "postgres".into(),
            },
            &[
                "CREATE TABLE tk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)".into(),
                "INSERT INTO tk VALUES (1, 0)".into(),
                "CREATE TABLE acked(id INTEGER PRIMARY KEY)".into(),
            ],
            Duration::from_secs(60),
        )?;
        replication::hadr_clone(&p.ctx.hadr_bin, &p.net.addr("a", HADR_PORT), &dir.join("b"))?;
        nodes[1].spawn()?;
        let mut pair = HadrPair {
            nodes,
            primary: 0,
            endpoints,
        };
        pair.wait_in_sync()?;
        Ok(pair)
    }
}

impl System for HadrPair {
    fn primary(&self) -> usize {
        self.primary
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints.clone()
    }

    fn wait_in_sync(&mut self) -> Result<()> {
        let s = 1 - self.primary;
        kit::block_on(self.nodes[s].wait_for("following", SYNC_TIMEOUT, Status::follows))?;
        kit::block_on(self.nodes[self.primary].wait_for(
            "standby in PEER, the lease held, nothing out of sync",
            SYNC_TIMEOUT,
            crate::resources::in_sync,
        ))?;
        Ok(())
    }

    fn graceful(&mut self) -> Result<()> {
        // What `hadr takeover --node STANDBY` sends.
        let s = 1 - self.primary;
        let admin = self.nodes[s].admin().with_timeout(Duration::from_secs(60));
        kit::block_on(admin.takeover(false, false)).with_context(|| {
            format!(
                "graceful takeover by {}; its log:\n{}",
                HOSTS[s],
                self.nodes[s].log_tail(20)
            )
        })?;
        Ok(())
    }

    fn crash(&mut self) -> Result<()> {
        self.nodes[self.primary].kill9();
        Ok(())
    }

    fn switched(&mut self, crashed: bool) -> Result<()> {
        let old = self.primary;
        self.primary = 1 - old;
        if crashed {
            self.nodes[old].spawn_nowait()?;
        }
        self.wait_in_sync()
            .with_context(|| format!("node {} did not rejoin as the standby", HOSTS[old]))
    }

    fn logs(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("hadr node {}", HOSTS[i]), n.log_tail(60)))
            .collect()
    }

    fn stop(&mut self) {
        for n in &mut self.nodes {
            if n.alive() {
                if let Err(e) = n.stop() {
                    eprintln!("warning: stopping an hadr node: {e:#}");
                    n.kill9();
                }
            }
        }
    }
}

/// PostgreSQL 15 under Patroni: `patronictl switchover`, and kill -9 of
/// Patroni and PostgreSQL on the leader's host.
pub struct Patroni<'a> {
    c: Cluster<'a>,
    net: &'a hadr_testkit::netns::Cluster,
    patronictl: std::path::PathBuf,
}

impl<'a> Patroni<'a> {
    pub fn start(
        p: &'a PartCtx<'a>,
        patroni: &Path,
        etcd: &Etcd,
        setting: &Setting,
        dir: &Path,
    ) -> Result<Patroni<'a>> {
        let patronictl = patroni.with_file_name("patronictl");
        if !patronictl.exists() {
            bail!(
                "{} not found (next to {})",
                patronictl.display(),
                patroni.display()
            );
        }
        let opts = Options {
            arbiters: Vec::new(),
            runs: 0,
            fence_runs: 0,
            patroni_runs: 0,
            patroni: patroni.to_path_buf(),
        };
        let c = Cluster::start(p, &opts, etcd, setting, dir)?;
        Ok(Patroni {
            c,
            net: p.net,
            patronictl,
        })
    }
}

impl System for Patroni<'_> {
    fn primary(&self) -> usize {
        self.c.leader
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.c.endpoints.clone()
    }

    fn wait_in_sync(&mut self) -> Result<()> {
        self.c.wait_in_sync()
    }

    fn graceful(&mut self) -> Result<()> {
        let (l, s) = (self.c.leader, 1 - self.c.leader);
        let out = proc::run(
            Command::new(&self.patronictl)
                .arg("-c")
                .arg(&self.c.nodes[l].config)
                .args(["switchover", "--leader", HOSTS[l], "--candidate", HOSTS[s]])
                .arg("--force"),
            Duration::from_secs(120),
            "patronictl switchover",
        )?;
        if !out.status.success() {
            bail!("patronictl switchover failed: {}", out.message());
        }
        Ok(())
    }

    fn crash(&mut self) -> Result<()> {
        let l = self.c.leader;
        if let Some(pr) = self.c.nodes[l].proc.take() {
            pr.kill9();
        }
        // Again until nothing is left: the clients keep connecting, and a
        // backend the postmaster forked while the first round was listing
        // the namespace's processes survives it, holding PostgreSQL's
        // shared memory, and the restarted node then refuses to start
        // ("pre-existing shared memory block is still in use").
        let start = std::time::Instant::now();
        while servers::kill_all(self.net, HOSTS[l])? > 0 {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("processes on host {} survive kill -9 for 10 s", HOSTS[l]);
            }
            proc::sleep(Duration::from_millis(20))?;
        }
        Ok(())
    }

    fn switched(&mut self, crashed: bool) -> Result<()> {
        let old = self.c.leader;
        self.c.leader = 1 - old;
        if crashed {
            self.c.spawn(old)?;
        }
        self.c
            .wait_in_sync()
            .with_context(|| format!("node {} did not come back as the sync standby", HOSTS[old]))
    }

    fn logs(&self) -> Vec<(String, String)> {
        self.c
            .nodes
            .iter()
            .map(|n| {
                (
                    format!("Patroni node {}", n.name),
                    proc::tail_file(&n.log, 60),
                )
            })
            .collect()
    }

    fn stop(&mut self) {
        self.c.stop();
    }
}
