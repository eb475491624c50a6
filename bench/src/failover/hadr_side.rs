//! hadr's series: one pair per arbiter and setting, on hosts `a` and `b`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hadr_testkit::netns::{ADMIN_PORT, HADR_PORT, PG_PORT};
use hadr_testkit::{self as kit, PairState, Server, Status};

use super::client::{self, Endpoint, Probe, Writer};
use super::servers::{Etcd, S3};
use super::{
    ms, ArbiterKind, CrashRun, FenceRun, Options, PartCtx, Series, Setting, StopRun, CLIENTS,
    FAILOVER_TIMEOUT, PROBE_SQL, SYNC_TIMEOUT,
};
use crate::{proc, replication, targets};

const HOSTS: [&str; 2] = ["a", "b"];
/// Longest wait for the standby to take over from a frozen primary
/// (failover takes hadr_timeout plus the lease's TTL and margin, a few s).
const FROZEN_TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions opened to the primary before it is frozen, each given one
/// write while it is stopped.
const QUEUED: usize = 4;

/// The two settings every arbiter is measured at.
pub fn settings() -> Vec<Setting> {
    vec![
        Setting {
            name: "defaults",
            defaults: true,
            describe: "lease_ttl 2s, lease_margin 500ms, hadr_timeout 3s (the defaults; every series runs with `--min-promotion-interval 1s`, since its failovers come back to back)".into(),
            flags: Vec::new(),
        },
        Setting {
            name: "fastest",
            defaults: false,
            describe: "`--lease-ttl 1s --lease-margin 200ms --hadr-timeout 1s`".into(),
            flags: [
                "--lease-ttl",
                "1s",
                "--lease-margin",
                "200ms",
                "--hadr-timeout",
                "1s",
            ]
            .map(String::from)
            .to_vec(),
        },
    ]
}

/// Every hadr series; returns the hadr version for the report.
pub fn run(
    p: &PartCtx,
    opts: &Options,
    etcd: &Etcd,
    series: &mut Vec<Series>,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, String)>> {
    let versions = crate::targets::hadr_versions(&p.ctx.hadr_bin)?;
    let s3 = if opts.arbiters.contains(&ArbiterKind::S3) {
        Some(S3::start(
            &p.rt,
            p.net.root_ip().into(),
            &p.work.join("s3"),
        )?)
    } else {
        None
    };
    for &arb in &opts.arbiters {
        for setting in settings() {
            proc::check_interrupted()?;
            let tag = format!("hadr-{}-{}", arb.as_str(), setting.name);
            let dir = p.work.join(&tag);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let (label, spec) = match arb {
                ArbiterKind::File => {
                    let d = dir.join("arbiter");
                    std::fs::create_dir_all(&d)?;
                    (
                        "file".to_string(),
                        format!("file:{}", d.join("lease").display()),
                    )
                }
                ArbiterKind::S3 => {
                    let Some(s3) = &s3 else {
                        bail!("no S3 server");
                    };
                    (
                        "s3 (moto behind a serialising proxy)".to_string(),
                        s3.spec(&tag),
                    )
                }
                ArbiterKind::Etcd => (
                    "etcd (1 member)".to_string(),
                    format!("etcd://{}/hadr-bench/{tag}", etcd.endpoint),
                ),
            };
            let mut s = Series::new("hadr", &label, &setting, opts.runs);
            eprintln!("{} == failover: {tag}: {}", p.clock(), setting.describe);
            // The lease file's directory is a mount of its own, so that it
            // can be made read-only for one host's processes alone.
            let storage = match arb {
                ArbiterKind::File => Some(BindMount::new(&dir.join("arbiter"))?),
                _ => None,
            };
            let r = run_series(p, opts, storage.as_ref(), &setting, &spec, &dir, &mut s);
            drop(storage);
            let _ = p.net.heal_all();
            if let Err(e) = r {
                if proc::interrupted() {
                    return Err(e);
                }
                eprintln!("  !! {tag} stopped early: {e:#}");
                s.error = Some(format!("{e:#}"));
                if let Some(k) = super::keep_logs(&dir, &tag) {
                    notes.push(format!("{tag}: server logs kept in {}", k.display()));
                }
            } else if s.failures() > 0 {
                if let Some(k) = super::keep_logs(&dir, &tag) {
                    notes.push(format!("{tag}: server logs kept in {}", k.display()));
                }
            }
            for h in HOSTS {
                notes.extend(replication::log_findings(
                    &format!("{tag} node {h}"),
                    &dir.join(format!("{h}.log")),
                    &EXPECTED_LOG,
                ));
            }
            series.push(s);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(versions)
}

/// Warnings and errors that crashes, cuts and freezes are expected to log.
const EXPECTED_LOG: [&str; 16] = [
    "connection lost",
    "Broken pipe",
    "FENCED",
    "fenced",
    "diverged",
    "already primary before this start",
    "replication from primary ended",
    "replication to standby ended",
    "Connection reset",
    "peer closed the connection",
    "arbiter",
    "lease",
    "timed out",
    "out of sync",
    "silent",
    "standby lost",
];

/// A pair on hosts a and b, and which of them is the primary.
struct Pair<'a> {
    p: &'a PartCtx<'a>,
    nodes: Vec<Server>,
    primary: usize,
    endpoints: Vec<Endpoint>,
    script: PathBuf,
    load_log: PathBuf,
    next_id: i64,
    /// The file arbiter's directory (a bind mount): made read-only for
    /// the isolated host's processes, as a cut from shared storage.
    storage: Option<PathBuf>,
}

fn is_in_sync(st: &Status) -> bool {
    st.is_writable_primary()
        && st.principal_in(PairState::Peer)
        && st.failover.as_ref().is_some_and(|f| f.lease_left_ms > 0)
}

impl<'a> Pair<'a> {
    fn start(p: &'a PartCtx<'a>, spec: &str, setting: &Setting, dir: &Path) -> Result<Pair<'a>> {
        let hadr = kit::Hadr::new(&p.ctx.hadr_bin);
        let mut nodes = Vec::new();
        for (i, name) in HOSTS.iter().enumerate() {
            let mut flags: Vec<String> = vec![
                "--hadr-local".into(),
                p.net.addr(name, HADR_PORT),
                "--hadr-target-list".into(),
                p.net.addr(HOSTS[1 - i], HADR_PORT),
                "--hadr-syncmode".into(),
                "NEARSYNC".into(),
                "--arbiter".into(),
                spec.into(),
                // Back-to-back failovers of one pair: the default minute
                // between two promotions of a node (against ping-pong)
                // would otherwise be measured instead of the failover.
                "--min-promotion-interval".into(),
                "1s".into(),
            ];
            flags.extend(setting.flags.iter().cloned());
            nodes.push(
                p.net
                    .server(&hadr, name, dir.join(name), flags)
                    .interruptible(proc::interrupted),
            );
        }
        let endpoints = HOSTS
            .iter()
            .map(|h| Endpoint {
                host: p.net.ip(h).to_string(),
                port: PG_PORT,
            })
            .collect();
        let mut pair = Pair {
            p,
            nodes,
            primary: 0,
            endpoints,
            script: p.ctx.script.clone(),
            load_log: dir.join("pgbench.log"),
            next_id: 1,
            storage: None,
        };
        hadr.init(&dir.join("a"))?;
        pair.nodes[0].spawn_primary(Duration::from_secs(60))?;
        let mut setup = targets::hadr_setup_sql();
        setup.push("CREATE TABLE tk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)".into());
        setup.push("INSERT INTO tk VALUES (1, 0)".into());
        setup.push("CREATE TABLE acked(id INTEGER PRIMARY KEY)".into());
        targets::psql(&pair.conn(0), &setup, Duration::from_secs(600))?;
        replication::hadr_clone(&p.ctx.hadr_bin, &p.net.addr("a", HADR_PORT), &dir.join("b"))?;
        pair.nodes[1].spawn()?;
        pair.wait_in_sync()?;
        Ok(pair)
    }

    fn conn(&self, i: usize) -> targets::ConnInfo {
        targets::ConnInfo {
            host: self.endpoints[i].host.clone(),
            port: PG_PORT,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn standby(&self) -> usize {
        1 - self.primary
    }

    /// The primary holds the lease with its standby in PEER.
    fn wait_in_sync(&mut self) -> Result<()> {
        let s = self.standby();
        kit::block_on(self.nodes[s].wait_for("following", SYNC_TIMEOUT, Status::follows))?;
        kit::block_on(self.nodes[self.primary].wait_for(
            "standby in PEER and the lease held",
            SYNC_TIMEOUT,
            is_in_sync,
        ))?;
        Ok(())
    }

    /// Writer, probe and load running, and each seen to write on the primary.
    fn load(&mut self) -> Result<Running> {
        let rt = &self.p.rt;
        let first_id = self.next_id;
        self.next_id += 1_000_000_000;
        let writer = Writer::start(rt, &self.endpoints, first_id);
        let probe = Probe::start(rt, &self.endpoints, PROBE_SQL);
        let load = Load(Some(client::start_load(
            &self.endpoints[self.primary],
            CLIENTS,
            &self.script,
            &self.load_log,
        )?));
        let r = Running {
            writer: Some(writer),
            probe: Some(probe),
            load,
        };
        r.warm(self.primary)?;
        Ok(r)
    }

    /// Commits lost on the new primary `s` of those the writer saw acknowledged.
    fn check(&self, mut r: Running, s: usize) -> Result<(u64, u64, Vec<i64>)> {
        let rt = &self.p.rt;
        let (first, acked) = r.stop(rt);
        let present = client::acked_on(rt, &self.endpoints[s], first)?;
        let lost = client::lost(&acked, &present);
        Ok((
            acked.len() as u64,
            lost.len() as u64,
            lost.into_iter().take(10).collect(),
        ))
    }

    /// Black-hole and kill the primary; time the survivor's first write.
    fn crash(&mut self) -> Result<CrashRun> {
        self.wait_in_sync()?;
        let (p, s) = (self.primary, self.standby());
        let r = self.load()?;
        let probe = r.probe()?;
        let t0 = Instant::now();
        probe.mark(t0);
        self.p.net.black_hole(HOSTS[p])?;
        self.nodes[p].kill9();
        let first = probe.wait_first(s, FAILOVER_TIMEOUT)?;
        let failover_ms = ms(first - t0);
        let (acked, lost, lost_ids) = self.check(r, s)?;
        self.p.net.heal(HOSTS[p])?;
        let t = Instant::now();
        self.nodes[p].spawn_nowait()?;
        self.primary = s;
        self.wait_in_sync()
            .context("the killed primary, restarted, did not rejoin as a standby in PEER")?;
        Ok(CrashRun {
            from: HOSTS[p].into(),
            to: HOSTS[s].into(),
            failover_ms,
            acked,
            lost,
            lost_ids,
            rejoin_ms: Some(ms(t.elapsed())),
        })
    }

    /// The primary's `/status`, asked from inside its own namespace (it
    /// answers on every address there, its host being black-holed).
    fn status_inside(&self, i: usize) -> Result<Status> {
        let addr = SocketAddr::new(self.p.net.ip(HOSTS[i]).into(), ADMIN_PORT);
        let s = self
            .p
            .net
            .connect_from(HOSTS[i], addr, Duration::from_secs(1))?;
        let (code, body) = self.p.rt.block_on(async {
            let s = tokio::net::TcpStream::from_std(s)?;
            client::http_get_on(s, "/status?hash=false", Duration::from_secs(2)).await
        })?;
        if code != 200 {
            bail!("/status answered {code}");
        }
        serde_json::from_str(&body).context("parsing /status")
    }

    /// The primary's host black-holed, not killed: how long until it says
    /// it accepts no writes, and until the standby writes.
    fn isolate(&mut self) -> Result<FenceRun> {
        self.wait_in_sync()?;
        let (p, s) = (self.primary, self.standby());
        let r = self.load()?;
        let probe = r.probe()?;
        let st = kit::block_on(self.nodes[p].status())?;
        // The node's lease deadline, as late as it can be by our clock.
        let lease_left_ms = st.failover.map(|f| f.lease_left_ms);
        let deadline = Instant::now() + Duration::from_millis(lease_left_ms.unwrap_or(0));
        let t0 = Instant::now();
        probe.mark(t0);
        self.p.net.black_hole(HOSTS[p])?;
        if let Some(dir) = &self.storage {
            storage_access(self.p, HOSTS[p], dir, false)?;
        }
        let pg = SocketAddr::new(self.p.net.ip(HOSTS[p]).into(), PG_PORT);
        let mut inside = client::InsideWrites::new();
        let mut next_attempt = t0;
        let mut fenced: Option<(f64, String)> = None;
        let mut took_over: Option<Instant> = None;
        // Until the isolated primary says it accepts no writes and the
        // standby has written, trying writes on the isolated one meanwhile.
        while fenced.is_none() || took_over.is_none() {
            if t0.elapsed() > FAILOVER_TIMEOUT {
                let _ = inside.finish(&self.p.rt);
                bail!(
                    "{} s after the cut: the isolated primary {} and the standby {}",
                    FAILOVER_TIMEOUT.as_secs(),
                    if fenced.is_some() {
                        "stopped"
                    } else {
                        "still accepted writes"
                    },
                    if took_over.is_some() {
                        "took over"
                    } else {
                        "did not take over"
                    },
                );
            }
            if Instant::now() >= next_attempt {
                next_attempt += client::INSIDE_EVERY;
                if let Ok(s) = self
                    .p
                    .net
                    .connect_from(HOSTS[p], pg, Duration::from_secs(1))
                {
                    inside.attempt(&self.p.rt, s, PROBE_SQL);
                }
            }
            if fenced.is_none() {
                if let Ok(st) = self.status_inside(p) {
                    if !st.writable {
                        fenced = Some((
                            ms(t0.elapsed()),
                            st.write_refusal
                                .unwrap_or_else(|| format!("role {}", st.role)),
                        ));
                    }
                }
            }
            if took_over.is_none() {
                took_over = probe.first_after_mark(s);
            }
            proc::sleep(Duration::from_millis(5))?;
        }
        let (fence_ms, refusal) = fenced.unwrap_or_default();
        let takeover_ms = took_over.map_or(f64::NAN, |t| ms(t - t0));
        let (acked, lost, _) = self.check(r, s)?;
        if let Some(dir) = &self.storage {
            // A node restarted since has a fresh, writable view anyway.
            let _ = storage_access(self.p, HOSTS[p], dir, true);
        }
        self.p.net.heal(HOSTS[p])?;
        self.primary = s;
        self.rejoin_by_itself(p)?;
        // Attempts still waiting (a commit held for the standby) have ended
        // by now, acknowledged or not.
        let (acks, refused) = inside.finish(&self.p.rt);
        let after_cut: Vec<Instant> = acks.into_iter().filter(|&t| t > t0).collect();
        Ok(FenceRun {
            from: HOSTS[p].into(),
            lease_left_ms,
            fence_ms,
            refusal,
            takeover_ms,
            last_ack_ms: after_cut.iter().max().map(|&t| ms(t - t0)),
            acked_after_deadline: after_cut.iter().filter(|&&t| t > deadline).count() as u64,
            refused_ms: refused.map(|(t, _)| ms(t.saturating_duration_since(t0))),
            acked,
            lost,
        })
    }

    /// Whichever node is primary holds the lease with the other in PEER.
    fn wait_any_in_sync(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            for i in 0..2 {
                if kit::block_on(self.nodes[i].status()).is_ok_and(|st| is_in_sync(&st)) {
                    self.primary = i;
                    return self.wait_in_sync();
                }
            }
            if start.elapsed() > SYNC_TIMEOUT {
                bail!("neither node became a primary in sync with the other");
            }
            proc::sleep(Duration::from_millis(50))?;
        }
    }

    /// The old primary `i` comes back as a standby by itself (restarted
    /// only if its process ended).
    fn rejoin_by_itself(&mut self, i: usize) -> Result<()> {
        if !self.nodes[i].alive() {
            eprintln!("  (node {} had exited; restarting it)", HOSTS[i]);
            self.nodes[i].kill9();
            self.nodes[i].spawn_nowait()?;
        }
        self.wait_in_sync()
            .context("the old primary did not come back as a standby in PEER")
    }

    /// SIGSTOP the primary until the standby took over; queue writes on its
    /// sessions; SIGCONT. None may be acknowledged.
    fn freeze(&mut self) -> Result<StopRun> {
        self.wait_in_sync()?;
        let (p, s) = (self.primary, self.standby());
        let rt = self.p.rt.clone();
        let sessions = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..QUEUED {
                let conninfo = format!(
                    "host={} port={PG_PORT} user=postgres dbname=postgres connect_timeout=5",
                    self.endpoints[p].host
                );
                let (c, conn) = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
                )
                .await
                .map_err(|_| anyhow!("connecting to the primary: no answer in 10 s"))??;
                v.push((c, tokio::spawn(conn)));
            }
            anyhow::Ok(v)
        })?;
        let r = self.load()?;
        let probe = r.probe()?;
        let t0 = Instant::now();
        probe.mark(t0);
        self.nodes[p].sigstop()?;
        let first = match probe.wait_first(s, FROZEN_TAKEOVER_TIMEOUT) {
            Ok(t) => t,
            Err(e) => {
                if proc::interrupted() {
                    let _ = self.nodes[p].sigcont();
                    return Err(e);
                }
                // No failover while the primary is frozen: say why (the
                // standby's own reason), resume it, and go on.
                let hold = kit::block_on(self.nodes[s].status())
                    .ok()
                    .and_then(|st| st.failover)
                    .and_then(|f| f.hold.or(f.arbiter_error))
                    .unwrap_or_else(|| format!("{e:#}"));
                self.nodes[p].sigcont()?;
                self.wait_any_in_sync()?;
                let (acked, lost, _) = self.check(r, self.primary)?;
                return Ok(StopRun {
                    from: HOSTS[p].into(),
                    takeover_ms: None,
                    no_takeover: Some(hold),
                    queued: 0,
                    accepted: 0,
                    refused: 0,
                    probe_accepted: 0,
                    fenced_ms: None,
                    acked,
                    lost,
                });
            }
        };
        let takeover_ms = Some(ms(first - t0));
        // Each session sends one write while the primary is frozen: the
        // kernel queues them; the resumed process reads them first thing.
        let queued: Vec<_> = sessions
            .into_iter()
            .map(|(c, driver)| {
                rt.spawn(async move {
                    let r =
                        tokio::time::timeout(Duration::from_secs(20), c.batch_execute(PROBE_SQL))
                            .await;
                    driver.abort();
                    r
                })
            })
            .collect();
        proc::sleep(Duration::from_millis(300))?;
        let t1 = Instant::now();
        probe.mark(t1);
        self.nodes[p].sigcont()?;
        let admin = self.nodes[p].admin_addr();
        let mut fenced_ms = None;
        while t1.elapsed() < Duration::from_secs(30) {
            if let Ok((200, body)) =
                client::http_get(&rt, &admin, "/status?hash=false", Duration::from_secs(1))
            {
                if let Ok(st) = serde_json::from_str::<Status>(&body) {
                    if !st.writable {
                        fenced_ms = Some(ms(t1.elapsed()));
                        break;
                    }
                }
            }
            proc::sleep(Duration::from_millis(2))?;
        }
        let (mut accepted, mut refused) = (0, 0);
        for q in queued {
            match rt.block_on(q) {
                Ok(Ok(Ok(()))) => accepted += 1,
                Ok(Ok(Err(_))) => refused += 1,
                _ => {}
            }
        }
        proc::sleep(Duration::from_millis(500))?;
        let probe_accepted = probe.accepted_after_mark(p);
        let (acked, lost, _) = self.check(r, s)?;
        self.primary = s;
        self.rejoin_by_itself(p)?;
        Ok(StopRun {
            from: HOSTS[p].into(),
            takeover_ms,
            no_takeover: None,
            queued: QUEUED as u64,
            accepted,
            refused,
            probe_accepted,
            fenced_ms,
            acked,
            lost,
        })
    }

    fn stop(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if n.alive() {
                if let Err(e) = n.stop() {
                    notes.push(format!("node {}: {e:#}", HOSTS[i]));
                }
            }
        }
        notes
    }
}

/// The clients of one run; stopped (and pgbench killed) when dropped.
struct Running {
    writer: Option<Writer>,
    probe: Option<Probe>,
    load: Load,
}

struct Load(Option<std::process::Child>);

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            client::stop_load(c);
        }
    }
}

impl Running {
    fn probe(&self) -> Result<&Probe> {
        self.probe.as_ref().ok_or_else(|| anyhow!("probe stopped"))
    }

    /// Until the writer and the probe have each written on `primary`.
    fn warm(&self, primary: usize) -> Result<()> {
        let probe = self.probe()?;
        let t = Instant::now();
        probe.mark(t);
        loop {
            let w = self.writer.as_ref().map_or(0, Writer::count);
            if w > 0 && probe.first_after_mark(primary).is_some() {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("the writer and the probe did not both write on the primary within 60 s");
            }
            proc::sleep(Duration::from_millis(20))?;
        }
        // pgbench connected and running for a moment.
        proc::sleep(Duration::from_millis(700))
    }

    /// Stops everything; the writer's first id and its acknowledged ids.
    fn stop(&mut self, rt: &tokio::runtime::Handle) -> (i64, std::collections::BTreeSet<i64>) {
        if let Some(p) = self.probe.take() {
            p.stop(rt);
        }
        if let Some(c) = self.load.0.take() {
            client::stop_load(c);
        }
        match self.writer.take() {
            Some(w) => {
                let first = w.first_id;
                (first, w.stop(rt))
            }
            None => (0, Default::default()),
        }
    }
}

fn run_series(
    p: &PartCtx,
    opts: &Options,
    storage: Option<&BindMount>,
    setting: &Setting,
    spec: &str,
    dir: &Path,
    s: &mut Series,
) -> Result<()> {
    let mut pair = Pair::start(p, spec, setting, dir)?;
    pair.storage = storage.map(|b| b.0.clone());
    let result = (|| {
        for i in 0..opts.runs {
            proc::check_interrupted()?;
            let r = pair
                .crash()
                .with_context(|| format!("crash run {}", i + 1))?;
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
        {
            for i in 0..opts.fence_runs {
                proc::check_interrupted()?;
                let r = pair
                    .isolate()
                    .with_context(|| format!("isolation run {}", i + 1))?;
                eprintln!(
                    "  isolated {} (lease left {} ms): status not writable after {:>5.0} ms, a write from inside \
                     refused after {} ms, last acknowledged {} ms, {} after the lease deadline; standby writes after \
                     {:>5.0} ms; lost {}",
                    r.from,
                    r.lease_left_ms.map_or("?".into(), |l| l.to_string()),
                    r.fence_ms,
                    r.refused_ms.map_or("-".into(), |v| format!("{v:.0}")),
                    r.last_ack_ms.map_or("-".into(), |v| format!("{v:.0}")),
                    r.acked_after_deadline,
                    r.takeover_ms,
                    r.lost
                );
                s.fence.push(r);
            }
        }
        for i in 0..opts.fence_runs {
            proc::check_interrupted()?;
            let r = pair
                .freeze()
                .with_context(|| format!("SIGSTOP run {}", i + 1))?;
            if let Some(why) = &r.no_takeover {
                eprintln!(
                    "  !! SIGSTOP {}: the standby did not take over within {} s: {why}",
                    r.from,
                    FROZEN_TAKEOVER_TIMEOUT.as_secs()
                );
            }
            eprintln!(
                "  SIGSTOP {}: standby writes after {} ms; after SIGCONT: {} of {} queued writes accepted, \
                 probe writes accepted {}, fenced after {} ms; lost {}",
                r.from,
                r.takeover_ms.map_or("-".into(), |v| format!("{v:.0}")),
                r.accepted,
                r.queued,
                r.probe_accepted,
                r.fenced_ms.map_or("?".into(), |f| format!("{f:.0}")),
                r.lost
            );
            s.stop.push(r);
        }
        anyhow::Ok(())
    })();
    let stop_notes = pair.stop();
    result?;
    if !stop_notes.is_empty() {
        s.fence_note
            .get_or_insert_with(String::new)
            .push_str(&stop_notes.join("; "));
    }
    Ok(())
}

/// A directory bind-mounted on itself (a mount of its own, which every
/// namespace started later gets a copy of); unmounted on drop.
pub struct BindMount(PathBuf);

impl BindMount {
    fn new(dir: &Path) -> Result<BindMount> {
        proc::run_ok(
            std::process::Command::new("mount")
                .arg("--bind")
                .arg(dir)
                .arg(dir),
            Duration::from_secs(10),
            "mount --bind",
        )?;
        Ok(BindMount(dir.to_path_buf()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        if let Err(e) = proc::run_cleanup(
            std::process::Command::new("umount").arg(&self.0),
            Duration::from_secs(30),
            "umount",
        ) {
            eprintln!("warning: {e:#}");
            crate::targets::mark_stop_failed();
        }
    }
}

/// Makes the lease file's directory read-only (or writable again) for
/// the processes on `host` alone: `ip netns exec` gave them a mount
/// namespace of their own, whose copy of the bind mount is remounted.
fn storage_access(p: &PartCtx, host: &str, dir: &Path, writable: bool) -> Result<()> {
    let ns = p.net.host(host)?.netns.clone();
    let out = proc::run_ok(
        std::process::Command::new("ip").args(["netns", "pids", &ns]),
        Duration::from_secs(10),
        "ip netns pids",
    )?;
    let pids: Vec<&str> = out.stdout.split_whitespace().collect();
    if pids.is_empty() {
        bail!("no process on host {host}");
    }
    for pid in pids {
        proc::run_ok(
            std::process::Command::new("nsenter")
                .args(["-t", pid, "-m", "mount", "-o"])
                .arg(if writable {
                    "remount,bind,rw"
                } else {
                    "remount,bind,ro"
                })
                .arg(dir),
            Duration::from_secs(10),
            "nsenter mount -o remount",
        )?;
    }
    Ok(())
}
