//! Patroni's series: two PostgreSQL 15 nodes under Patroni on hosts `a`
//! and `b`, etcd on `arb` as its DCS, `synchronous_mode: true` (so that,
//! like hadr in NEARSYNC, a failover loses no acknowledged commit), crashed
//! the same way as hadr's primary and measured by the same clients.
//!
//! Patroni is not part of this repository: it is installed from PyPI (see
//! [`version`] for the command), into a virtual environment outside /root
//! because it runs as the `postgres` user (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_testkit::netns::Proc;
use serde_json::Value;

use super::client::{self, Endpoint, Probe, Writer};
use super::servers::{self, Etcd};
use super::{
    ms, CrashRun, Options, PartCtx, Series, Setting, CLIENTS, FAILOVER_TIMEOUT, PROBE_SQL,
    SYNC_TIMEOUT,
};
use crate::{proc, targets};

/// The release the benchmark was written against, and its pinned installation.
pub const PATRONI_PIN: &str = "'patroni[etcd3]==4.1.5' 'psycopg2-binary==2.9.13'";
/// Where the install command puts it.
pub const DEFAULT_PATRONI: &str = "/opt/patroni-4.1.5/bin/patroni";

const HOSTS: [&str; 2] = ["a", "b"];
const PG_PORT: u16 = 5433;
const REST_PORT: u16 = 8008;

/// Patroni's defaults, and its shortest TTL (20 s) with `loop_wait` and
/// `retry_timeout` inside its rule `loop_wait + 2 × retry_timeout ≤ ttl`.
pub(crate) fn settings() -> Vec<Setting> {
    let s = |name, defaults, ttl: u32, lw: u32, rt: u32, what: &str| Setting {
        name,
        defaults,
        describe: format!("ttl {ttl}, loop_wait {lw}, retry_timeout {rt}{what}"),
        flags: vec![ttl.to_string(), lw.to_string(), rt.to_string()],
    };
    vec![
        s("defaults", true, 30, 10, 10, " (the defaults)"),
        s(
            "min-ttl",
            false,
            20,
            2,
            5,
            " (the shortest TTL Patroni accepts)",
        ),
    ]
}

fn install_hint(path: &Path) -> String {
    format!(
        "Patroni not found at {} (it runs as the postgres user, so it must live outside /root). Install it \
         with Debian's Python: /usr/bin/python3 -m venv /opt/patroni-4.1.5 && \
         /opt/patroni-4.1.5/bin/pip install {PATRONI_PIN}; or pass --patroni PATH, or --patroni-runs 0 to leave \
         Patroni out",
        path.display()
    )
}

/// "patroni 4.1.5", run as the postgres user; else how to install it.
pub fn version(patroni: &Path) -> Result<String> {
    if !patroni.exists() {
        bail!("{}", install_hint(patroni));
    }
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(patroni)
    .arg("--version");
    let out = proc::run(&mut c, Duration::from_secs(60), "patroni --version")?;
    if !out.status.success() {
        bail!("{}: {}", install_hint(patroni), out.message());
    }
    Ok(out.stdout.trim().to_string())
}

/// One Patroni node (Patroni and its postgres) on a host.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    home: PathBuf,
    /// Its Patroni configuration file (also what patronictl reads).
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) proc: Option<Proc>,
}

/// Two nodes on hosts `a` and `b` (also driven by the client-gap part,
/// bench/src/clientgap/).
pub(crate) struct Cluster<'a> {
    p: &'a PartCtx<'a>,
    patroni: PathBuf,
    pub(crate) nodes: Vec<Node>,
    pub(crate) leader: usize,
    pub(crate) endpoints: Vec<Endpoint>,
    load_log: PathBuf,
    next_id: i64,
}

fn config_yaml(
    p: &PartCtx,
    etcd: &Etcd,
    scope: &str,
    name: &str,
    home: &Path,
    s: &Setting,
) -> String {
    let ip = p.net.ip(name);
    let (ttl, lw, rt) = (&s.flags[0], &s.flags[1], &s.flags[2]);
    let home = home.display();
    format!(
        "scope: {scope}\n\
         namespace: /hadr-bench/\n\
         name: {name}\n\
         log:\n  level: INFO\n\
         restapi:\n  listen: {ip}:{REST_PORT}\n  connect_address: {ip}:{REST_PORT}\n\
         etcd3:\n  hosts: {etcd}\n\
         bootstrap:\n\
         \x20 dcs:\n\
         \x20   ttl: {ttl}\n\
         \x20   loop_wait: {lw}\n\
         \x20   retry_timeout: {rt}\n\
         \x20   maximum_lag_on_failover: 1048576\n\
         \x20   synchronous_mode: true\n\
         \x20   postgresql:\n\
         \x20     use_pg_rewind: true\n\
         \x20     use_slots: true\n\
         \x20     parameters:\n\
         \x20       wal_log_hints: 'on'\n\
         \x20       max_connections: 100\n\
         \x20       shared_buffers: 128MB\n\
         \x20 initdb:\n  - encoding: UTF8\n  - no-locale\n  - auth: trust\n\
         \x20 pg_hba:\n\
         \x20 - local all all trust\n\
         \x20 - host all all 0.0.0.0/0 trust\n\
         \x20 - host replication all 0.0.0.0/0 trust\n\
         postgresql:\n\
         \x20 listen: 127.0.0.1,{ip}:{PG_PORT}\n\
         \x20 connect_address: {ip}:{PG_PORT}\n\
         \x20 data_dir: {home}/data\n\
         \x20 bin_dir: {bindir}\n\
         \x20 pgpass: {home}/pgpass\n\
         \x20 authentication:\n\
         \x20   superuser:\n      username: postgres\n\
         \x20   replication:\n      username: postgres\n\
         \x20   rewind:\n      username: postgres\n\
         \x20 parameters:\n\
         \x20   unix_socket_directories: '{home}'\n\
         \x20 remove_data_directory_on_rewind_failure: true\n\
         \x20 remove_data_directory_on_diverged_timelines: true\n\
         watchdog:\n  mode: 'off'\n",
        etcd = etcd.endpoint,
        bindir = p.ctx.pg_bindir.display(),
    )
}

impl<'a> Cluster<'a> {
    pub(crate) fn start(
        p: &'a PartCtx<'a>,
        opts: &Options,
        etcd: &Etcd,
        s: &Setting,
        dir: &Path,
    ) -> Result<Cluster<'a>> {
        let scope = format!("bench-{}-{}", s.name, std::process::id());
        let mut nodes = Vec::new();
        for name in HOSTS {
            let home = dir.join(name);
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            targets::chown_to_postgres(&home)?;
            let config = dir.join(format!("{name}.yml"));
            std::fs::write(&config, config_yaml(p, etcd, &scope, name, &home, s))
                .with_context(|| format!("writing {}", config.display()))?;
            nodes.push(Node {
                name,
                home,
                config,
                log: dir.join(format!("{name}.log")),
                proc: None,
            });
        }
        let endpoints = HOSTS
            .iter()
            .map(|h| Endpoint {
                host: p.net.ip(h).to_string(),
                port: PG_PORT,
            })
            .collect();
        let mut c = Cluster {
            p,
            patroni: opts.patroni.clone(),
            nodes,
            leader: 0,
            endpoints,
            load_log: dir.join("pgbench.log"),
            next_id: 1,
        };
        c.spawn(0)?;
        c.wait_members(SYNC_TIMEOUT, |m| {
            member(m, HOSTS[0]).is_some_and(|x| x.0 == "leader" && x.1 == "running")
        })
        .context("Patroni did not bootstrap node a as the leader")?;
        let conn = targets::ConnInfo {
            host: c.endpoints[0].host.clone(),
            port: PG_PORT,
            user: "postgres".into(),
            dbname: "postgres".into(),
        };
        let mut setup = targets::postgres_setup_sql();
        setup.push("CREATE TABLE tk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)".into());
        setup.push("INSERT INTO tk VALUES (1, 0)".into());
        setup.push("CREATE TABLE acked(id BIGINT PRIMARY KEY)".into());
        targets::psql(&conn, &setup, Duration::from_secs(600))?;
        c.spawn(1)?;
        c.wait_in_sync()?;
        Ok(c)
    }

    pub(crate) fn spawn(&mut self, i: usize) -> Result<()> {
        let n = &self.nodes[i];
        let mut cmd = self.p.net.command(n.name, "setpriv")?;
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(&self.patroni)
        .arg(&n.config)
        .env("HOME", &n.home)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", self.p.ctx.pg_bindir.display()),
        );
        let proc = self.p.net.spawn(cmd, &n.log)?;
        self.nodes[i].proc = Some(proc);
        Ok(())
    }

    /// Patroni's `/cluster` from the first host that answers.
    fn members(&self) -> Option<Value> {
        for i in [self.leader, 1 - self.leader] {
            let addr = format!("{}:{REST_PORT}", self.endpoints[i].host);
            if let Ok((200, body)) =
                client::http_get(&self.p.rt, &addr, "/cluster", Duration::from_secs(2))
            {
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    return Some(v);
                }
            }
        }
        None
    }

    fn wait_members(&self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Result<()> {
        let start = Instant::now();
        let mut last = Value::Null;
        loop {
            if let Some(m) = self.members() {
                if f(&m) {
                    return Ok(());
                }
                last = m;
            }
            for n in &self.nodes {
                if let Some(p) = &n.proc {
                    if !p.alive() {
                        bail!(
                            "Patroni on {} exited:\n{}",
                            n.name,
                            proc::tail_file(&n.log, 20)
                        );
                    }
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "Patroni's cluster did not reach the state wanted within {} s; last /cluster: {last}",
                    timeout.as_secs()
                );
            }
            proc::sleep(Duration::from_millis(200))?;
        }
    }

    /// The leader running, the other node its streaming synchronous standby.
    pub(crate) fn wait_in_sync(&self) -> Result<()> {
        let (l, s) = (HOSTS[self.leader], HOSTS[1 - self.leader]);
        self.wait_members(SYNC_TIMEOUT, |m| {
            member(m, l).is_some_and(|x| x.0 == "leader" && x.1 == "running")
                && member(m, s).is_some_and(|x| x.0 == "sync_standby" && x.1 == "streaming")
        })
        .with_context(|| format!("waiting for leader {l} with {s} as its streaming sync standby"))
    }

    /// Black-hole the leader's host and kill Patroni and postgres there.
    fn crash(&mut self) -> Result<CrashRun> {
        self.wait_in_sync()?;
        let (p, s) = (self.leader, 1 - self.leader);
        let rt = self.p.rt.clone();
        let first_id = self.next_id;
        self.next_id += 1_000_000_000;
        let writer = Writer::start(&rt, &self.endpoints, first_id);
        let probe = Probe::start(&rt, &self.endpoints, PROBE_SQL);
        let mut load = Some(client::start_load(
            &self.endpoints[p],
            CLIENTS,
            &self.p.ctx.script,
            &self.load_log,
        )?);
        let result = (|| {
            let t = Instant::now();
            probe.mark(t);
            while writer.count() == 0 || probe.first_after_mark(p).is_none() {
                if t.elapsed() > Duration::from_secs(60) {
                    bail!("the writer and the probe did not both write on the leader within 60 s");
                }
                proc::sleep(Duration::from_millis(20))?;
            }
            proc::sleep(Duration::from_millis(700))?;
            let t0 = Instant::now();
            probe.mark(t0);
            self.p.net.black_hole(HOSTS[p])?;
            servers::kill_all(self.p.net, HOSTS[p])?;
            if let Some(pr) = self.nodes[p].proc.take() {
                pr.kill9();
            }
            let first = probe.wait_first(s, FAILOVER_TIMEOUT)?;
            Ok(ms(first - t0))
        })();
        if let Some(l) = load.take() {
            client::stop_load(l);
        }
        probe.stop(&rt);
        let acked = writer.stop(&rt);
        let failover_ms = result?;
        let present = client::acked_on(&rt, &self.endpoints[s], first_id)?;
        let lost = client::lost(&acked, &present);
        self.p.net.heal(HOSTS[p])?;
        let t = Instant::now();
        self.spawn(p)?;
        self.leader = s;
        self.wait_in_sync()
            .context("the old leader, restarted, did not come back as the sync standby")?;
        Ok(CrashRun {
            from: HOSTS[p].into(),
            to: HOSTS[s].into(),
            failover_ms,
            acked: acked.len() as u64,
            lost: lost.len() as u64,
            lost_ids: lost.into_iter().take(10).collect(),
            rejoin_ms: Some(ms(t.elapsed())),
        })
    }

    pub(crate) fn stop(&mut self) {
        for n in &mut self.nodes {
            let _ = servers::kill_all(self.p.net, n.name);
            if let Some(p) = n.proc.take() {
                p.kill9();
            }
        }
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// (role, state) of member `name` in Patroni's `/cluster` answer.
fn member<'v>(v: &'v Value, name: &str) -> Option<(&'v str, &'v str)> {
    v.get("members")?.as_array()?.iter().find_map(|m| {
        (m.get("name")?.as_str()? == name).then(|| {
            (
                m.get("role").and_then(Value::as_str).unwrap_or(""),
                m.get("state").and_then(Value::as_str).unwrap_or(""),
            )
        })
    })
}

/// Every Patroni series.
pub fn run(
    p: &PartCtx,
    opts: &Options,
    etcd: &Etcd,
    series: &mut Vec<Series>,
    notes: &mut Vec<String>,
) -> Result<()> {
    for setting in settings() {
        proc::check_interrupted()?;
        let tag = format!("patroni-{}", setting.name);
        let dir = p.work.join(&tag);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut s = Series::new("Patroni", "etcd (1 member)", &setting, opts.patroni_runs);
        eprintln!(
            "{} == failover: {tag}: {} ({} runs{})",
            p.clock(),
            setting.describe,
            opts.patroni_runs,
            if opts.patroni_runs < opts.runs {
                format!(", fewer than hadr's {}: --patroni-runs", opts.runs)
            } else {
                String::new()
            }
        );
        let r = (|| {
            let mut c = Cluster::start(p, opts, etcd, &setting, &dir)?;
            for i in 0..opts.patroni_runs {
                proc::check_interrupted()?;
                let r = c.crash().with_context(|| format!("crash run {}", i + 1))?;
                eprintln!(
                    "  crash {:>2} {}→{}: first write on the survivor {:>6.0} ms; acked {} lost {}; rejoined in {:.1} s",
                    i + 1,
                    r.from,
                    r.to,
                    r.failover_ms,
                    r.acked,
                    r.lost,
                    r.rejoin_ms.unwrap_or(0.0) / 1000.0
                );
                s.crash.push(r);
            }
            anyhow::Ok(())
        })();
        let _ = p.net.heal_all();
        for h in HOSTS {
            let _ = servers::kill_all(p.net, h);
        }
        if let Err(e) = r {
            if proc::interrupted() {
                return Err(e);
            }
            eprintln!("  !! {tag} stopped early: {e:#}");
            s.error = Some(format!("{e:#}"));
        }
        if s.failures() > 0 {
            if let Some(k) = super::keep_logs(&dir, &tag) {
                notes.push(format!(
                    "{tag}: Patroni and PostgreSQL logs kept in {}",
                    k.display()
                ));
            }
        }
        series.push(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_roles_from_patronis_cluster_answer() {
        // The shape of Patroni 4.1's GET /cluster.
        let v: Value = serde_json::from_str(
            r#"{"members": [
                {"name": "a", "role": "sync_standby", "state": "streaming", "host": "10.78.1.10",
                 "port": 5433, "timeline": 3, "lag": 0},
                {"name": "b", "role": "leader", "state": "running", "host": "10.78.1.11",
                 "port": 5433, "timeline": 3}
            ], "scope": "bench-defaults-1"}"#,
        )
        .unwrap();
        assert_eq!(member(&v, "a"), Some(("sync_standby", "streaming")));
        assert_eq!(member(&v, "b"), Some(("leader", "running")));
        assert_eq!(member(&v, "c"), None);
        assert_eq!(member(&Value::Null, "a"), None);
    }

    #[test]
    fn settings_keep_patronis_rule() {
        for s in settings() {
            let n: Vec<u32> = s.flags.iter().map(|f| f.parse().unwrap()).collect();
            let (ttl, loop_wait, retry_timeout) = (n[0], n[1], n[2]);
            assert!(ttl >= 20, "{s:?}");
            assert!(loop_wait >= 1 && retry_timeout >= 3, "{s:?}");
            assert!(loop_wait + 2 * retry_timeout <= ttl, "{s:?}");
        }
    }
}
