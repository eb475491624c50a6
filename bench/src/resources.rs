//! The resources part (`--resources`, issue 9): how long after the
//! primary's host dies the service is back through the virtual IP.
//!
//! Hosts are network namespaces on a bridge (hadr_testkit::netns): nodes
//! `a` and `b`, `arb` (etcd, the arbiter) and `c` (the client, which knows
//! only the VIP). Each node's config has two resources, as in
//! examples/vip-http: the VIP on its interface and the example's HTTP
//! service (server.py: the node's name, a file, a row read with psql),
//! supervised by hadr. A writer inserts rows through a multi-host
//! connection all along (the small write load; every acknowledged row must
//! be on the new primary), a probe tries a write on each node every few ms
//! (as in the failover part), and a poller inside `c` asks
//! `http://VIP:8080/` every 10 ms.
//!
//! One crash: the primary's host is black-holed, hadr killed with -9, and
//! every other process in its namespace killed too (the service). Timed
//! from the crash: (i) the first write the survivor acknowledges, (ii) the
//! first answer through the VIP from the survivor's service. The crashed
//! host then "reboots" while still black-holed: hadr starts there and must
//! remove the VIP the dead host kept, before the host is back on the
//! network and follows the new primary. The next crash strikes the other
//! node.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_testkit::netns::{Cluster, HADR_PORT, PG_PORT};
use hadr_testkit::{self as kit, PairState, Server, Status};
use serde::{Deserialize, Serialize};

use crate::failover::client::{self, Endpoint, Probe, Writer};
use crate::failover::servers::{kill_all, Etcd};
use crate::failover::{pct, sorted};
use crate::report::{Machine, Part};
use crate::{proc, Ctx};

const HOSTS: [&str; 2] = ["a", "b"];
/// The service's port.
const WEB_PORT: u16 = 8080;
/// Last octet of the VIP.
const VIP_HOST: u8 = 100;
/// The probe's write.
const PROBE_SQL: &str = "UPDATE tk SET n = n + 1 WHERE id = 1";
/// Longest wait for the survivor (write or HTTP answer).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a pair to be back in sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// The example's service, run by every node.
const SERVER_PY: &str = include_str!("../../examples/vip-http/server.py");

/// The node flags besides the config file: the failover part's "fastest"
/// setting but for the TTL (2 s, the default).
const FLAGS: [&str; 10] = [
    "--hadr-syncmode",
    "NEARSYNC",
    "--hadr-timeout",
    "1s",
    "--lease-ttl",
    "2s",
    "--lease-margin",
    "500ms",
    "--min-promotion-interval",
    "1s",
];
/// The stop timeouts of the resources (and the service's kill_timeout).
const STOP_TIMEOUT: &str = "300ms";

const PART: Part = Part {
    begin: "<!-- hadr-bench:resources:begin -->",
    end: "<!-- hadr-bench:resources:end -->",
    heading: "## A virtual IP and a service through a primary host crash",
    intro:
        "How long after the primary's host dies clients are served again through the virtual IP \
            by the service on the new primary (issue 9's resource groups), next to when the new \
            primary accepts writes.",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// One figure of a run.
type Measure = fn(&Run) -> f64;

/// One crash.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// Which node crashed.
    pub crashed: String,
    /// Crash to the survivor's first acknowledged write.
    pub writable_ms: f64,
    /// Crash to the first answer through the VIP from the survivor.
    pub served_ms: f64,
    /// Restart of the crashed node's hadr (still black-holed) to its
    /// leftover VIP gone.
    pub leftover_removed_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResourcesReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub versions: Vec<(String, String)>,
    pub runs_asked: usize,
    pub runs: Vec<Run>,
    /// Commits the writer saw acknowledged, and those missing at the end.
    pub acked: u64,
    pub lost: u64,
    pub notes: Vec<String>,
}

impl ResourcesReport {
    /// Problems that fail the program: lost commits, runs missing.
    pub fn failures(&self) -> usize {
        self.lost as usize + self.runs_asked.saturating_sub(self.runs.len())
    }

    fn stats(&self, f: impl Fn(&Run) -> f64) -> (f64, f64, f64) {
        let v = sorted(self.runs.iter().map(f));
        (
            pct(&v, 50.0),
            pct(&v, 99.0),
            v.last().copied().unwrap_or(f64::NAN),
        )
    }

    pub fn table(&self) -> String {
        let mut s = String::from("| from the crash to | p50 | p99 | max |\n|---|---:|---:|---:|\n");
        let rows: [(&str, Measure); 3] = [
            ("(i) the new primary acknowledges a write", |r| {
                r.writable_ms
            }),
            ("(ii) the service answers through the VIP", |r| r.served_ms),
            ("(ii) − (i), per crash", |r| r.served_ms - r.writable_ms),
        ];
        for (what, f) in rows {
            let (p50, p99, max) = self.stats(f);
            s.push_str(&format!(
                "| {what} | {p50:.0} ms | {p99:.0} ms | {max:.0} ms |\n"
            ));
        }
        s
    }

    pub fn section(&self) -> String {
        let mut s = PART.start(&self.date, &self.command);
        let m = &self.machine;
        s.push_str(&format!(
            "Machine: {} CPUs ({}), {}, kernel {}; 1-minute load {} before, {} after. {}.\n\n",
            m.nproc,
            m.cpu,
            m.memory,
            m.kernel,
            m.load_before,
            m.load_after,
            self.versions
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        s.push_str(&format!(
            "{} primary host crashes (asked: {}), alternating between the nodes. Hosts are network \
             namespaces on one bridge: nodes `a` and `b`, etcd on `arb`, the client on `c`. A crash \
             black-holes the primary's host (nftables, no reset, no ICMP), kills hadr with -9 and every \
             other process there (its guard and the service: a power loss, not a hadr crash). Nodes: `{}`; each config lists, as in \
             examples/vip-http, a `vip` resource (stop_timeout {STOP_TIMEOUT}) and the example's \
             `server.py` as a supervised `service` (stop_timeout {STOP_TIMEOUT}, kill_timeout \
             {STOP_TIMEOUT}, ready = `curl -sf http://127.0.0.1:8080/`). Load: one writer inserting \
             rows through `host=a,b target_session_attrs=read-write` all along ({} acknowledged, {} \
             lost), a probe trying a write on each node directly every 5 ms (it times (i)), and a \
             client inside `c` asking `http://VIP:8080/` every 10 ms (it times (ii)).\n\n",
            self.runs.len(),
            self.runs_asked,
            FLAGS.join(" "),
            self.acked,
            self.lost
        ));
        s.push_str(&self.table());
        s.push_str(
            "\nWhy (ii) comes later than (i): the new primary was promoted without hearing its \
             predecessor confirm that its resources stopped (the predecessor is dead, or cut off, and \
             may still be stopping them). So before adding the VIP it waits the predecessor's *stop \
             bound*, the longest its stops can take once its lease ran out: the sum of the primary \
             group's stop_timeouts plus the kill_timeout of supervised services (here 3 × 300 ms), \
             less lease_margin (500 ms), which had passed already when the promotion could happen: \
             0.4 s. Then it adds the address (with a gratuitous ARP, so the client's neighbour cache \
             follows at once), starts the service and waits for its `ready` check. Longer stop \
             timeouts make this wait longer, one for one; after a graceful takeover there is no wait \
             at all (the old primary confirms its stops before the standby is told to promote).\n",
        );
        let leftover = self.stats(|r| r.leftover_removed_ms);
        s.push_str(&format!(
            "\nThe crashed host keeps its VIP configured (kernel state of the dead host's namespace, \
             as on a machine that lost power) until it reboots; hadr, restarted there while the host \
             is still cut off, removed it in every run (p50 {:.0} ms, max {:.0} ms after the \
             restart) before the host came back on the network.\n",
            leftover.0, leftover.2
        ));
        s.push_str("\n| crash | crashed | (i) writable | (ii) served through the VIP |\n|---:|---|---:|---:|\n");
        for (i, r) in self.runs.iter().enumerate() {
            s.push_str(&format!(
                "| {} | {} | {:.0} ms | {:.0} ms |\n",
                i + 1,
                r.crashed,
                r.writable_ms,
                r.served_ms
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\nNote: {n}\n"));
        }
        s.push_str(&format!("\n{}\n", PART.end));
        s
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        PART.write(out, &self.section())
    }
}

#[derive(Default)]
struct HttpState {
    mark: Option<Instant>,
    first_after: [Option<Instant>; 2],
    last_err: String,
}

/// Asks `http://VIP:8080/` from inside host `c` every 10 ms; notes the
/// first answer from each node after the mark.
struct Poller {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<HttpState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One GET; the node that answered.
fn get(addr: SocketAddr) -> std::result::Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(150))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    if !text.starts_with("HTTP/1.0 200") {
        return Err(format!("answer: {}", text.lines().next().unwrap_or("")));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("node: "))
        .map(str::to_string)
        .ok_or_else(|| "no node in the answer".to_string())
}

impl Poller {
    fn start(net: Arc<Cluster>, vip: Ipv4Addr) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let state: Arc<Mutex<HttpState>> = Arc::default();
        let (st, s) = (stop.clone(), state.clone());
        let addr = SocketAddr::from((vip, WEB_PORT));
        let thread = std::thread::spawn(move || {
            let r = net.enter("c", || {
                while !st.load(Ordering::SeqCst) {
                    let r = get(addr);
                    let now = Instant::now();
                    let mut g = lock(&s);
                    match r {
                        Ok(node) => {
                            if let Some(i) = HOSTS.iter().position(|h| *h == node) {
                                if g.mark.is_some_and(|m| now > m) && g.first_after[i].is_none() {
                                    g.first_after[i] = Some(now);
                                }
                            }
                        }
                        Err(e) => g.last_err = e,
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            if let Err(e) = r {
                eprintln!("the HTTP poller could not enter host c: {e:#}");
            }
        });
        Poller {
            stop,
            state,
            thread: Some(thread),
        }
    }

    fn mark(&self, t: Instant) {
        let mut g = lock(&self.state);
        g.mark = Some(t);
        g.first_after = [None, None];
    }

    fn wait_first(&self, i: usize, timeout: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            if let Some(t) = lock(&self.state).first_after[i] {
                return Ok(t);
            }
            if start.elapsed() > timeout {
                bail!(
                    "no answer from {} through the VIP within {timeout:?}; last error: {}",
                    HOSTS[i],
                    lock(&self.state).last_err
                );
            }
            proc::sleep(Duration::from_millis(2))?;
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn node_config(net: &Cluster, dir: &Path, i: usize, vip: Ipv4Addr) -> Result<String> {
    let name = HOSTS[i];
    Ok(format!(
        r#"[[resource]]
name = "vip"
kind = "vip"
address = "{vip}/24"
interface = "{iface}"
stop_timeout = "{STOP_TIMEOUT}"

[[resource]]
name = "web"
kind = "service"
command = "exec python3 {dir}/server.py --name {name} --port {WEB_PORT} --www {dir}/www --db 'host=127.0.0.1 port={PG_PORT} user=postgres dbname=postgres connect_timeout=2'"
ready = "curl -sf -o /dev/null http://127.0.0.1:{WEB_PORT}/"
stop_timeout = "{STOP_TIMEOUT}"
kill_timeout = "{STOP_TIMEOUT}"
monitor_interval = "1s"
"#,
        iface = net.interface(name)?,
        dir = dir.display(),
    ))
}

/// The primary holds the lease with its standby in PEER, and the arbiter's
/// out-of-sync mark (set while the standby was away) is cleared: until
/// then the standby may not promote.
pub(crate) fn in_sync(st: &Status) -> bool {
    st.is_writable_primary()
        && st.principal_in(PairState::Peer)
        && st.failover.as_ref().is_some_and(|f| {
            f.lease_left_ms > 0 && f.out_of_sync.is_empty() && !f.acknowledging_alone
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the part and writes its section; the caller fails the program if
/// [`ResourcesReport::failures`] is not zero.
pub fn run_part(ctx: &Ctx, runs: usize) -> Result<ResourcesReport> {
    if !crate::targets::am_root() {
        bail!("the resources part needs root (network namespaces, nftables)");
    }
    crate::targets::require_programs(
        "resources",
        &[
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("etcd", "etcd-server"),
            ("python3", "python3"),
            ("curl", "curl"),
            ("psql", "postgresql-client"),
        ],
    )?;
    let mut versions = crate::targets::hadr_versions(&ctx.hadr_bin)?;
    let load_before = crate::load_average();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let work = ctx.work.join("resources");
    std::fs::create_dir_all(work.join("www"))
        .with_context(|| format!("creating {}", work.display()))?;
    std::fs::write(work.join("server.py"), SERVER_PY)?;
    std::fs::write(work.join("www/index.txt"), "served through the VIP\n")?;
    let net =
        Arc::new(Cluster::new(&["a", "b", "arb", "c"]).context("creating the network namespaces")?);
    let etcd = Etcd::start(rt.handle(), &net, "arb", &work.join("etcd"))?;
    versions.push(("etcd".into(), etcd.version.clone()));
    let o = net.ip("a").octets();
    let vip = Ipv4Addr::new(o[0], o[1], o[2], VIP_HOST);
    let hadr = kit::Hadr::new(&ctx.hadr_bin);
    let mut nodes: Vec<Server> = Vec::new();
    for (i, name) in HOSTS.iter().enumerate() {
        let conf = work.join(format!("{name}.toml"));
        std::fs::write(&conf, node_config(&net, &work, i, vip)?)?;
        let mut flags: Vec<String> = vec![
            "--hadr-local".into(),
            net.addr(name, HADR_PORT),
            "--hadr-target-list".into(),
            net.addr(HOSTS[1 - i], HADR_PORT),
            "--arbiter".into(),
            format!("etcd://{}/hadr-bench/resources", etcd.endpoint),
            "--config".into(),
            conf.to_string_lossy().into_owned(),
        ];
        flags.extend(FLAGS.iter().map(|s| s.to_string()));
        nodes.push(
            net.server(&hadr, name, work.join(name), flags)
                .interruptible(proc::interrupted),
        );
    }
    hadr.init(&work.join("a"))?;
    nodes[0].spawn_primary(Duration::from_secs(60))?;
    let endpoints: Vec<Endpoint> = HOSTS
        .iter()
        .map(|h| Endpoint {
            host: net.ip(h).to_string(),
            port: PG_PORT,
        })
        .collect();
    crate::targets::psql(
        &crate::targets::ConnInfo {
            host: endpoints[0].host.clone(),
            port: PG_PORT,
            user: "postgres".into(),
            dbname: "postgres".into(),
        },
        &[
            "CREATE TABLE tk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)".into(),
            "INSERT INTO tk VALUES (1, 0)".into(),
            "CREATE TABLE acked(id INTEGER PRIMARY KEY)".into(),
            "CREATE TABLE greeting(id INTEGER PRIMARY KEY, msg TEXT NOT NULL)".into(),
            "INSERT INTO greeting VALUES (1, 'hello from the database')".into(),
        ],
        Duration::from_secs(60),
    )?;
    crate::replication::hadr_clone(&ctx.hadr_bin, &net.addr("a", HADR_PORT), &work.join("b"))?;
    nodes[1].spawn()?;
    let poller = Poller::start(net.clone(), vip);
    let writer = Writer::start(rt.handle(), &endpoints, 1);
    let probe = Probe::start(rt.handle(), &endpoints, PROBE_SQL);
    let mut p = 0;
    let mut done = Vec::new();
    let mut notes = Vec::new();
    for k in 0..runs {
        match crash(&net, &mut nodes, &probe, &poller, p, vip) {
            Ok(r) => {
                eprintln!(
                    "resources: crash {}/{runs} of {}: writable {:.0} ms, served through the VIP {:.0} ms, leftover VIP removed {:.0} ms after the restart",
                    k + 1,
                    r.crashed,
                    r.writable_ms,
                    r.served_ms,
                    r.leftover_removed_ms
                );
                done.push(r);
                p = 1 - p;
            }
            Err(e) => {
                let msg = format!("crash {} stopped the series: {e:#}", k + 1);
                eprintln!("resources: {msg}");
                for (i, n) in nodes.iter().enumerate() {
                    eprintln!("--- {} log tail:\n{}", HOSTS[i], n.log_tail(40));
                }
                notes.push(msg);
                let keep = std::env::temp_dir()
                    .join(format!("hadr-bench-resources-logs-{}", std::process::id()));
                if std::fs::create_dir_all(&keep).is_ok() {
                    for n in &nodes {
                        let to = keep.join(n.log_path().file_name().unwrap_or_default());
                        let _ = std::fs::copy(n.log_path(), to);
                    }
                    notes.push(format!("the nodes' logs are kept in {}", keep.display()));
                    eprintln!("resources: the nodes' logs are kept in {}", keep.display());
                }
                break;
            }
        }
    }
    probe.stop(rt.handle());
    let acked = writer.stop(rt.handle());
    let primary = nodes.iter().position(|n| {
        kit::block_on(async { tokio::time::timeout(Duration::from_secs(3), n.status()).await })
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|st| st.is_writable_primary())
    });
    let lost = match primary {
        Some(i) => client::lost(&acked, &client::acked_on(rt.handle(), &endpoints[i], 1)?),
        None => {
            notes.push("no writable primary at the end: lost commits not checked".into());
            Vec::new()
        }
    };
    if !lost.is_empty() {
        notes.push(format!(
            "acknowledged commits missing on the final primary: {:?}",
            &lost[..lost.len().min(10)]
        ));
    }
    drop(poller);
    for n in &mut nodes {
        n.kill9();
    }
    drop(etcd);
    drop(net);
    drop(rt);
    let report = ResourcesReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        versions,
        runs_asked: runs,
        runs: done,
        acked: acked.len() as u64,
        lost: lost.len() as u64,
        notes,
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!("wrote the resources section of {}", ctx.out_path.display());
    Ok(report)
}

/// One crash of primary `p`, its survivor's times, and the reboot.
fn crash(
    net: &Cluster,
    nodes: &mut [Server],
    probe: &Probe,
    poller: &Poller,
    p: usize,
    vip: Ipv4Addr,
) -> Result<Run> {
    let s = 1 - p;
    kit::block_on(nodes[s].wait_for("following", SYNC_TIMEOUT, Status::follows))?;
    kit::block_on(nodes[p].wait_for("in sync, lease held", SYNC_TIMEOUT, in_sync))?;
    // The service answers from the primary before the crash.
    poller.mark(Instant::now());
    poller.wait_first(p, FAILOVER_TIMEOUT)?;
    let t0 = Instant::now();
    probe.mark(t0);
    poller.mark(t0);
    net.black_hole(HOSTS[p])?;
    nodes[p].kill9();
    kill_all(net, HOSTS[p])?;
    let writable = probe.wait_first(s, FAILOVER_TIMEOUT)?;
    let served = poller.wait_first(s, FAILOVER_TIMEOUT)?;
    // Reboot: hadr first, still cut off; the leftover VIP must go.
    let restarted = Instant::now();
    nodes[p].spawn_nowait()?;
    let removed = loop {
        if !net.addresses(HOSTS[p])?.contains(&vip) {
            break restarted.elapsed();
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            bail!(
                "hadr restarted on {} did not remove the leftover VIP within 30 s",
                HOSTS[p]
            );
        }
        proc::sleep(Duration::from_millis(5))?;
    };
    net.heal(HOSTS[p])?;
    Ok(Run {
        crashed: HOSTS[p].to_string(),
        writable_ms: ms(writable - t0),
        served_ms: ms(served - t0),
        leftover_removed_ms: ms(removed),
    })
}
