//! Automatic failover between real hosts (issue 15's network-namespace
//! scenarios): node A, node B and the arbiter's host each in a network
//! namespace on one bridge (`hadr_testkit::netns`), an `etcd` arbiter
//! started by the test inside the arbiter's namespace on its own ports, and
//! the test process itself as the clients' host.
//!
//! Every scenario runs under a bank-style load: writers move money between
//! accounts through a multi-host client (`host=A,B`,
//! `target_session_attrs=read-write`), each transfer also inserting an id
//! into `acked`; an id counts as acknowledged only if its COMMIT returned
//! OK. A write probe tries a write on each node directly (from inside the
//! node's namespace, over its loopback, so it reaches a black-holed node
//! too) every 75 ms and records the interval [sent, acknowledged] of every
//! write a node accepted. Every scenario asserts: no acknowledged commit
//! (transfer or probe) lost, the bank's total unchanged, no two nodes ever
//! accepting writes in overlapping intervals, and, once the old primary is
//! back as a standby, `hadr verify` identical.
//!
//! The scenarios run one at a time (a lock), each on its own cluster, so
//! that they do not fight over the machine's two cores; the measured times
//! are printed (`cargo test --test failover_netns -- --nocapture`).
//! `HADR_FAILOVER_SEED` overrides the seed of the 20 failovers in a row.
//!
//! Needs root, iproute2, nftables and Debian's `etcd-server` (`.ci/run`
//! installs them); without etcd the tests skip, except under `CI=true`.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hadr_testkit::netns::{etcd_binary, Cluster, Proc, ADMIN_PORT, HADR_PORT, PG_PORT};

/// etcd's client and peer ports inside the arbiter's namespace (never the
/// packaged service's 2379/2380).
const ETCD_CLIENT: u16 = 23791;
const ETCD_PEER: u16 = 23801;
/// Accounts of the bank and what each starts with.
const ACCOUNTS: i64 = 8;
const START_BALANCE: i64 = 1000;
/// Writers moving money.
const WRITERS: usize = 3;
/// The probe's period per node.
const PROBE_EVERY: Duration = Duration::from_millis(75);
/// A probe write may stay in flight this long: a frozen node's late answer
/// must still be seen.
const PROBE_WAIT: Duration = Duration::from_secs(30);
/// Names of the two nodes' hosts, by index.
const NODES: [&str; 2] = ["a", "b"];
/// The lease: TTL and margin.
const TTL: Duration = Duration::from_secs(2);

/// One scenario at a time (every test takes it first; a failed test
/// releases it as it unwinds).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The etcd binary, or None (said on stderr) when the test should skip.
fn etcd_or_skip() -> Option<PathBuf> {
    if let Some(b) = etcd_binary() {
        return Some(b);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "no etcd binary (apt-get install etcd-server); under CI=true these tests must run"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: no etcd binary (apt-get install etcd-server, or set HADR_ETCD_BIN)"
    );
    None
}

/// How a pair replicates.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// NEARSYNC, no peer window.
    NearSync,
    /// SYNC with a 2 s peer window.
    SyncWindow,
    /// NEARSYNC through a `net:` arbiter (the etcd host's port must
    /// answer): it keeps no state, so both halves of a split can win. Only
    /// for the negative control.
    NetArbiter,
}

/// What happens to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Its host is black-holed and the server killed with -9.
    Crash,
    /// SIGSTOP, SIGCONT once the standby has promoted.
    Freeze,
    /// Its host is black-holed (the server runs on), healed once the
    /// standby has promoted.
    Isolate,
}

/// One write the probe saw a node accept.
#[derive(Clone, Copy, Debug)]
struct Accept {
    node: usize,
    id: i64,
    sent: Instant,
    acked: Instant,
}

/// Times of one failover.
#[derive(Debug)]
struct Timing {
    what: String,
    /// Fault to the standby reporting itself a writable primary.
    promoted: Duration,
    /// Fault to the first transfer acknowledged by the new primary (through
    /// the multi-host client).
    first_ack: Duration,
    /// The old primary's last accepted probe write after the fault (None:
    /// none after it).
    old_last_ack: Option<Duration>,
    /// Recovery (heal, restart or SIGCONT) to the old primary following.
    rejoined: Duration,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} promoted {:>5} ms, first client ack {:>5} ms, old primary's last ack {}, rejoined {:>5} ms after recovery",
            self.what,
            self.promoted.as_millis(),
            self.first_ack.as_millis(),
            match self.old_last_ack {
                Some(d) => format!("+{} ms", d.as_millis()),
                None => "before the fault".into(),
            },
            self.rejoined.as_millis()
        )
    }
}

/// The writers and the probe.
struct Load {
    stop: Arc<AtomicBool>,
    /// No new writes while set (`hadr verify` needs the log to stand still).
    pause: Arc<AtomicBool>,
    /// Transfer ids acknowledged, with when.
    acked: Arc<Mutex<BTreeMap<i64, Instant>>>,
    /// Writes the probe saw accepted.
    accepted: Arc<Mutex<Vec<Accept>>>,
    /// Transfers that failed (not acknowledged).
    failed: Arc<AtomicUsize>,
    /// Probe writes of a deposed primary whose acknowledgement the fault
    /// held up, shown to be in its successor's history ([`Fx::late_replies`]).
    held_up: Mutex<BTreeSet<i64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Load {
    fn start(net: &Arc<Cluster>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
        let accepted: Arc<Mutex<Vec<Accept>>> = Arc::default();
        let failed = Arc::new(AtomicUsize::new(0));
        let multi = format!(
            "host={},{} port={PG_PORT},{PG_PORT} user=t dbname=t target_session_attrs=read-write connect_timeout=1 load_balance_hosts=random",
            net.ip("a"),
            net.ip("b")
        );
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            tasks.push(tokio::spawn(writer(
                multi.clone(),
                w as i64,
                stop.clone(),
                pause.clone(),
                acked.clone(),
                failed.clone(),
            )));
        }
        let next_probe = Arc::new(AtomicI64::new(1));
        for node in 0..NODES.len() {
            tasks.push(tokio::spawn(probe(
                net.clone(),
                node,
                stop.clone(),
                pause.clone(),
                accepted.clone(),
                next_probe.clone(),
            )));
        }
        Load {
            stop,
            pause,
            acked,
            accepted,
            failed,
            held_up: Mutex::default(),
            tasks,
        }
    }

    /// The probe's acceptances, less those held up by a fault.
    fn accepts(&self) -> Vec<Accept> {
        let held_up = lock(&self.held_up);
        lock(&self.accepted)
            .iter()
            .filter(|a| !held_up.contains(&a.id))
            .copied()
            .collect()
    }

    fn acked_count(&self) -> usize {
        lock(&self.acked).len()
    }

    /// The first transfer acknowledged after `t`.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        lock(&self.acked)
            .values()
            .filter(|a| **a > t)
            .min()
            .copied()
    }

    /// The longest time between two acknowledged transfers within [from, to].
    fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = lock(&self.acked)
            .values()
            .filter(|t| **t >= from && **t <= to)
            .copied()
            .collect();
        times.sort();
        let mut edges = vec![from];
        edges.extend(times);
        edges.push(to);
        edges
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// The last write node `node` accepted (acknowledged) after `t`.
    fn last_accept_after(&self, node: usize, t: Instant) -> Option<Instant> {
        self.accepts()
            .iter()
            .filter(|a| a.node == node && a.acked > t)
            .map(|a| a.acked)
            .max()
    }

    /// Writes node `node` accepted that were acknowledged after `t`.
    fn accepts_after(&self, node: usize, t: Instant) -> Vec<Accept> {
        self.accepts()
            .into_iter()
            .filter(|a| a.node == node && a.acked > t)
            .collect()
    }

    /// Two writes accepted by different nodes in overlapping intervals, if any.
    fn overlap(&self) -> Option<(Accept, Accept)> {
        overlap(self.accepts())
    }

    async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            // Every wait inside is bounded; this bounds the whole.
            let _ = tokio::time::timeout(PROBE_WAIT + Duration::from_secs(5), t).await;
        }
    }
}

/// Two writes accepted by different nodes in overlapping intervals, if any.
fn overlap(mut all: Vec<Accept>) -> Option<(Accept, Accept)> {
    all.sort_by_key(|a| a.sent);
    // Two intervals overlap iff the later-sent one was sent before the
    // earlier one was acknowledged: keep, per node, the latest
    // acknowledgement among the writes sent so far.
    let mut latest: [Option<Accept>; 2] = [None, None];
    for a in all {
        if let Some(o) = latest[1 - a.node] {
            if o.acked > a.sent {
                return Some((o, a));
            }
        }
        if latest[a.node].is_none_or(|l| l.acked < a.acked) {
            latest[a.node] = Some(a);
        }
    }
    None
}

/// The probe's check itself: it finds overlaps, including one hidden behind
/// a long write, and accepts a clean hand-over.
#[test]
fn the_overlap_check_finds_two_writers() {
    let t = Instant::now();
    let ms = |n: u64| t + Duration::from_millis(n);
    let w = |node, sent, acked| Accept {
        node,
        id: 0,
        sent: ms(sent),
        acked: ms(acked),
    };
    // A until 100, B from 200: a hand-over.
    assert!(overlap(vec![w(0, 0, 50), w(0, 60, 100), w(1, 200, 210)]).is_none());
    // B's write sent before A's last one was acknowledged.
    assert!(overlap(vec![w(0, 0, 50), w(0, 60, 300), w(1, 200, 210)]).is_some());
    // A frozen write acknowledged late, after short ones of its own.
    assert!(overlap(vec![w(0, 0, 900), w(0, 10, 20), w(1, 500, 510)]).is_some());
    // B first, then A inside B's interval.
    assert!(overlap(vec![w(1, 0, 100), w(0, 50, 60)]).is_some());
    // Writes on one node never conflict with each other.
    assert!(overlap(vec![w(0, 0, 100), w(0, 50, 60)]).is_none());
}

impl Drop for Load {
    /// A failed test returns early: its load stops with it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Move money between accounts through the multi-host client until `stop`,
/// recording every transfer whose COMMIT was acknowledged.
async fn writer(
    multi: String,
    w: i64,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<i64, Instant>>>,
    failed: Arc<AtomicUsize>,
) {
    let mut rng = Rng(0x9e37_79b9 ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut k = 0i64;
    while !stop.load(Ordering::SeqCst) {
        // The connect covers a frozen host too (its kernel accepts, the
        // server never answers).
        let c = match tokio::time::timeout(Duration::from_secs(3), connect(&multi)).await {
            Ok(Ok(c)) => c,
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            if pause.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            k += 1;
            let id = w * 1_000_000_000 + k;
            let from = rng.below(ACCOUNTS as u64) as i64;
            let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
            let amount = 1 + rng.below(50) as i64;
            let sql = format!(
                "BEGIN; UPDATE accounts SET balance = balance - {amount} WHERE id = {from}; \
                 UPDATE accounts SET balance = balance + {amount} WHERE id = {to}; \
                 INSERT INTO acked(id) VALUES ({id}); COMMIT"
            );
            // A client's statement timeout: past it the outcome is unknown
            // (not acknowledged) and it reconnects, wherever the primary is.
            match tokio::time::timeout(Duration::from_millis(2500), c.batch_execute(&sql)).await {
                Ok(Ok(())) => {
                    lock(&acked).insert(id, Instant::now());
                }
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Try a write on node `node` every [`PROBE_EVERY`], from inside its
/// namespace, a few in flight at once, each waited for up to
/// [`PROBE_WAIT`]; record every accepted one.
async fn probe(
    net: Arc<Cluster>,
    node: usize,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<Accept>>>,
    next: Arc<AtomicI64>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4));
    let pool: Arc<Mutex<Vec<tokio_postgres::Client>>> = Arc::default();
    let mut attempts = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if pause.load(Ordering::SeqCst) {
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        if let Ok(permit) = in_flight.clone().try_acquire_owned() {
            let (net, accepted, next, pool) =
                (net.clone(), accepted.clone(), next.clone(), pool.clone());
            attempts.push(tokio::spawn(async move {
                let _permit = permit;
                let popped = lock(&pool).pop();
                let c = match popped {
                    Some(c) if !c.is_closed() => c,
                    _ => match probe_connect(&net, node).await {
                        Some(c) => c,
                        None => return,
                    },
                };
                let id = next.fetch_add(1, Ordering::SeqCst);
                let sent = Instant::now();
                let r = tokio::time::timeout(
                    PROBE_WAIT,
                    c.execute(
                        "INSERT INTO probe(id, node) VALUES ($1, $2)",
                        &[&id, &NODES[node]],
                    ),
                )
                .await;
                match r {
                    Ok(Ok(_)) => {
                        let acked = Instant::now();
                        lock(&accepted).push(Accept {
                            node,
                            id,
                            sent,
                            acked,
                        });
                        lock(&pool).push(c);
                    }
                    // A refusal leaves the session usable.
                    Ok(Err(e)) if e.as_db_error().is_some() && !c.is_closed() => {
                        lock(&pool).push(c)
                    }
                    _ => {}
                }
            }));
        }
        attempts.retain(|t| !t.is_finished());
        tokio::time::sleep(PROBE_EVERY).await;
    }
    for t in attempts {
        let _ = t.await;
    }
}

/// A session with node `node` made from inside its namespace (its loopback).
async fn probe_connect(net: &Arc<Cluster>, node: usize) -> Option<tokio_postgres::Client> {
    let n = net.clone();
    let std = tokio::task::spawn_blocking(move || {
        n.connect_from(
            NODES[node],
            SocketAddr::from(([127, 0, 0, 1], PG_PORT)),
            Duration::from_millis(500),
        )
    })
    .await
    .ok()?
    .ok()?;
    let stream = tokio::net::TcpStream::from_std(std).ok()?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("t").dbname("t");
    let (c, conn) = tokio::time::timeout(
        Duration::from_secs(1),
        cfg.connect_raw(stream, tokio_postgres::NoTls),
    )
    .await
    .ok()?
    .ok()?;
    tokio::spawn(conn);
    Some(c)
}

/// xorshift64*: the scenarios' only randomness, from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A cluster: the network, etcd on the arbiter host, nodes A and B, the load.
/// Fields drop in order: the load and the processes before the network.
struct Fx {
    load: Option<Load>,
    nodes: Vec<Server>,
    etcd: Proc,
    net: Arc<Cluster>,
    began: Instant,
    timings: Vec<Timing>,
    _tmp: tempfile::TempDir,
}

fn node_args(net: &Cluster, me: &str, other: &str, mode: Mode) -> Vec<String> {
    let (sync, window) = match mode {
        Mode::NearSync | Mode::NetArbiter => ("NEARSYNC", "0"),
        Mode::SyncWindow => ("SYNC", "2s"),
    };
    let arbiter = match mode {
        Mode::NetArbiter => format!("net:{}", net.addr("arb", ETCD_CLIENT)),
        _ => format!("etcd://{}/hadr/lease", net.addr("arb", ETCD_CLIENT)),
    };
    [
        "--hadr-local",
        &net.addr(me, HADR_PORT),
        "--hadr-target-list",
        &net.addr(other, HADR_PORT),
        "--hadr-timeout",
        "1s",
        "--hadr-syncmode",
        sync,
        "--hadr-peer-window",
        window,
        "--arbiter",
        &arbiter,
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "500ms",
        // Twenty failovers in a row alternate the nodes every ~14 s; the
        // default minute between two promotions of a node would hold them.
        "--min-promotion-interval",
        "5s",
    ]
    .map(String::from)
    .to_vec()
}

/// Run `hadr ARGS` inside host `host`'s namespace, killed after `timeout`.
fn hadr_inside(net: &Cluster, host: &str, args: &[&str], timeout: Duration) -> Result<String> {
    net.run_inside(host, bin(), args, timeout)
}

/// Node `node`'s status read from inside its namespace (works while it is
/// black-holed).
fn status_inside(net: &Cluster, node: usize) -> Result<Status> {
    let admin = format!("127.0.0.1:{ADMIN_PORT}");
    let out = hadr_inside(
        net,
        NODES[node],
        &["status", "--json", "--node", &admin],
        Duration::from_secs(5),
    )?;
    serde_json::from_str(&out).with_context(|| format!("status of {}: {out}", NODES[node]))
}

/// `hadr status` as text, from inside the node's namespace.
fn status_text_inside(net: &Cluster, node: usize) -> Result<String> {
    let admin = format!("127.0.0.1:{ADMIN_PORT}");
    hadr_inside(
        net,
        NODES[node],
        &["status", "--node", &admin],
        Duration::from_secs(5),
    )
}

impl Fx {
    /// A fresh cluster with A primary, B its standby in PEER, the tables,
    /// and the load running; None when etcd is missing (skip).
    async fn start(mode: Mode) -> Result<Option<Fx>> {
        let Some(etcd_bin) = etcd_or_skip() else {
            return Ok(None);
        };
        let began = Instant::now();
        let net = Arc::new(Cluster::new(&["a", "b", "arb"])?);
        let tmp = tempfile::tempdir()?;
        let etcd = net.start_etcd("arb", &etcd_bin, tmp.path(), ETCD_CLIENT, ETCD_PEER)?;
        let adir = tmp.path().join("a");
        init(&adir)?;
        let mut aargs = node_args(&net, "a", "b", mode);
        aargs.extend(["--role".to_string(), "primary".to_string()]);
        let mut a = net.server(&hadr(), "a", adir, aargs);
        a.spawn()?;
        let bdir = tmp.path().join("b");
        clone_to(&net.addr("a", HADR_PORT), &bdir)?;
        let mut b = net.server(&hadr(), "b", bdir, node_args(&net, "b", "a", mode));
        b.spawn()?;
        let mut fx = Fx {
            net,
            etcd,
            nodes: vec![a, b],
            load: None,
            began,
            timings: Vec::new(),
            _tmp: tmp,
        };
        fx.healthy(0).await?;
        let c = fx.nodes[0].client().await?;
        let mut ddl = String::from(
            "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL); \
             CREATE TABLE acked(id INTEGER PRIMARY KEY); \
             CREATE TABLE probe(id INTEGER PRIMARY KEY, node TEXT NOT NULL);",
        );
        for i in 0..ACCOUNTS {
            ddl.push_str(&format!(
                "INSERT INTO accounts VALUES ({i}, {START_BALANCE});"
            ));
        }
        c.batch_execute(&ddl).await?;
        fx.load = Some(Load::start(&fx.net));
        // The load reaches the standby's log before anything happens.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        anyhow::ensure!(
            fx.load().acked_count() > 0,
            "no transfer acknowledged in 1.5 s of load"
        );
        fx.say(&format!("cluster up (subnet of {})", fx.net.ip("a")));
        Ok(Some(fx))
    }

    fn load(&self) -> &Load {
        self.load.as_ref().expect("load running")
    }

    fn say(&self, what: &str) {
        eprintln!("[{:>6} ms] {what}", self.began.elapsed().as_millis());
    }

    /// Node `p` a writable primary with its standby in PEER and the lease
    /// held; the other following and watching the arbiter.
    async fn healthy(&self, p: usize) -> Result<()> {
        self.nodes[p]
            .wait_for("primary, PEER, lease held", Duration::from_secs(60), |st| {
                st.is_writable_primary()
                    && st.principal_in(PairState::Peer)
                    && st.failover.as_ref().is_some_and(|f| f.lease_left_ms > 0)
            })
            .await?;
        self.nodes[1 - p]
            .wait_for(
                "standby following, arbiter read",
                Duration::from_secs(60),
                |st| {
                    st.follows()
                        && st.failover.as_ref().is_some_and(|f| {
                            f.arbiter_ok
                                && f.hold.as_deref().is_some_and(|h| h.contains("connected"))
                        })
                },
            )
            .await?;
        Ok(())
    }

    /// Every safety property so far, with node `p` the primary: nothing
    /// acknowledged missing on it, the bank's total, no overlapping
    /// acceptances, and (both nodes reachable) `hadr verify` identical.
    async fn check(&self, p: usize) -> Result<()> {
        let load = self.load();
        // Snapshot first: every id in it was acknowledged before the reads.
        let acked: BTreeSet<i64> = lock(&load.acked).keys().copied().collect();
        let probed: BTreeSet<i64> = lock(&load.accepted).iter().map(|a| a.id).collect();
        let c = self.nodes[p].client().await?;
        let rows = acked_rows(&c, "acked").await?;
        let missing: Vec<_> = acked.difference(&rows).take(10).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "acknowledged transfers missing on {}: {missing:?} (of {})",
            NODES[p],
            acked.len()
        );
        let rows = acked_rows(&c, "probe").await?;
        let missing: Vec<_> = probed.difference(&rows).take(10).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "acknowledged probe writes missing on {}: {missing:?}",
            NODES[p]
        );
        let r = c
            .query_one("SELECT count(*), sum(balance) FROM accounts", &[])
            .await?;
        let (n, total): (i64, i64) = (r.get(0), r.get(1));
        anyhow::ensure!(
            n == ACCOUNTS && total == ACCOUNTS * START_BALANCE,
            "the bank holds {total} in {n} accounts, not {} in {ACCOUNTS}",
            ACCOUNTS * START_BALANCE
        );
        self.no_overlap()?;
        load.pause.store(true, Ordering::SeqCst);
        let verified = hadr().verify_nodes(
            &self.net.addr("a", ADMIN_PORT),
            &self.net.addr("b", ADMIN_PORT),
        );
        load.pause.store(false, Ordering::SeqCst);
        verified
    }

    fn no_overlap(&self) -> Result<()> {
        if let Some((x, y)) = self.load().overlap() {
            bail!(
                "SPLIT BRAIN: {} accepted probe write {} in [{} ms, {} ms] and {} accepted {} in [{} ms, {} ms]",
                NODES[x.node],
                x.id,
                (x.sent - self.began).as_millis(),
                (x.acked - self.began).as_millis(),
                NODES[y.node],
                y.id,
                (y.sent - self.began).as_millis(),
                (y.acked - self.began).as_millis()
            );
        }
        Ok(())
    }

    /// Which node is the writable primary (from the test's side).
    async fn primary(&self) -> Result<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(3), n.status()).await {
                if st.is_writable_primary() {
                    return Ok(i);
                }
            }
        }
        bail!("no writable primary")
    }

    /// Inflict `fault` on primary `p`, wait for the standby to promote and
    /// for a client's write to be acknowledged, undo the fault, wait for
    /// the old primary to follow, check everything. Returns the timings.
    async fn failover(&mut self, p: usize, fault: Fault) -> Result<()> {
        let s = 1 - p;
        let (name, other) = (NODES[p], NODES[s]);
        let epoch = self.nodes[s].status().await?.epoch;
        self.say(&format!("{fault:?} of primary {name}"));
        let t0 = Instant::now();
        match fault {
            Fault::Crash => {
                self.net.black_hole(name)?;
                self.nodes[p].kill9();
            }
            Fault::Freeze => self.nodes[p].sigstop()?,
            Fault::Isolate => self.net.black_hole(name)?,
        }
        self.nodes[s]
            .wait_for("promoted by itself", Duration::from_secs(30), |st| {
                st.is_writable_primary() && st.epoch > epoch
            })
            .await?;
        let promoted = t0.elapsed();
        // Liveness, loosely (the machine may be loaded): hadr_timeout and
        // the lease's TTL + margin make it about 2.5–3.2 s.
        anyhow::ensure!(
            promoted < Duration::from_secs(10),
            "the standby took {promoted:?} to promote"
        );
        self.say(&format!(
            "{other} promoted after {} ms",
            promoted.as_millis()
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        // Acknowledgements in the first 300 ms are the old primary's, in
        // flight when the fault struck; no failover is that fast (T + M).
        let first = loop {
            if let Some(t) = self.load().first_ack_after(t0 + Duration::from_millis(300)) {
                break t;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no transfer acknowledged within 30 s of the fault"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if fault == Fault::Isolate {
            // It fenced itself: not writable, seen from inside its host.
            let st = status_inside(&self.net, p)?;
            anyhow::ensure!(
                !st.writable,
                "the isolated old primary still accepts writes after the standby promoted: {}",
                brief(&st)
            );
        }
        // Let the old primary sit past its lease with the new one writing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let recovered = Instant::now();
        match fault {
            Fault::Crash => {
                self.net.heal(name)?;
                self.nodes[p].spawn()?;
            }
            Fault::Freeze => self.nodes[p].sigcont()?,
            Fault::Isolate => self.net.heal(name)?,
        }
        self.nodes[p]
            .wait_for("the old primary following", Duration::from_secs(60), |st| {
                st.follows()
            })
            .await?;
        let rejoined = recovered.elapsed();
        // Resumed or healed, it never acknowledged another write, except
        // one it had committed before the fault.
        if fault != Fault::Crash {
            self.late_replies(p, s, recovered).await?;
        }
        let old_last_ack = self.load().last_accept_after(p, t0).map(|t| t - t0);
        if let Some(d) = old_last_ack {
            // It stops within its lease (which began before the fault).
            anyhow::ensure!(
                d < TTL,
                "the old primary {name} acknowledged a write {d:?} after the fault, past its lease"
            );
        }
        self.healthy(s).await?;
        self.check(s).await?;
        let t = Timing {
            what: format!("{fault:?} of {name}"),
            promoted,
            first_ack: first - t0,
            old_last_ack,
            rejoined,
        };
        self.say(&t.to_string());
        self.timings.push(t);
        Ok(())
    }

    /// Probe writes old primary `p` acknowledged after `recovered`: each
    /// must be a reply the fault held up, for a write already in new
    /// primary `s`'s history. A frozen process answers, once resumed, a
    /// commit its standby had acknowledged before the freeze; a healed link
    /// delivers an acknowledgement sent before the cut. `s` holds `p`'s
    /// writes only from when it was `p`'s standby, so such a write precedes
    /// every write of `s`'s epoch: one history, not two primaries. Those
    /// are set aside from the later checks; any other is a failure.
    async fn late_replies(&self, p: usize, s: usize, recovered: Instant) -> Result<()> {
        let late = self.load().accepts_after(p, recovered);
        if late.is_empty() {
            return Ok(());
        }
        let c = self.nodes[s].client().await?;
        let rows = acked_rows(&c, "probe").await?;
        let (held, lost): (Vec<Accept>, Vec<Accept>) =
            late.into_iter().partition(|a| rows.contains(&a.id));
        anyhow::ensure!(
            lost.is_empty(),
            "the old primary {} acknowledged writes after it came back that {} lacks: {lost:?}",
            NODES[p],
            NODES[s]
        );
        for a in &held {
            self.say(&format!(
                "{}'s acknowledgement of probe write {} (sent {} ms, acknowledged {} ms) was held up by the fault; {} has it from before its promotion",
                NODES[p],
                a.id,
                (a.sent - self.began).as_millis(),
                (a.acked - self.began).as_millis(),
                NODES[s]
            ));
        }
        lock(&self.load().held_up).extend(held.iter().map(|a| a.id));
        Ok(())
    }

    /// Stop the load and check a last time.
    async fn finish(mut self) -> Result<()> {
        let p = self.primary().await?;
        if let Some(l) = self.load.take() {
            let acked = l.acked_count();
            let failed = l.failed.load(Ordering::Relaxed);
            let accepted = lock(&l.accepted).len();
            // Keep the records for the last check.
            l.stop.store(true, Ordering::SeqCst);
            self.load = Some(l);
            self.say(&format!(
                "load: {acked} transfers acknowledged, {failed} failed; {accepted} probe writes accepted"
            ));
        }
        self.check(p).await?;
        for t in &self.timings {
            eprintln!("TIMING {t}");
        }
        if let Some(l) = self.load.take() {
            l.stop().await;
        }
        self.etcd.kill9();
        Ok(())
    }
}

async fn acked_rows(c: &tokio_postgres::Client, table: &str) -> Result<BTreeSet<i64>> {
    Ok(c.query(&format!("SELECT id FROM {table}"), &[])
        .await
        .with_context(|| format!("reading {table}"))?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect())
}

/// For `secs`, check every 200 ms that `f` holds; an error naming `what`.
async fn holds_for(secs: f64, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        anyhow::ensure!(f()?, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_host_crash() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    fx.failover(0, Fault::Crash).await?;
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_frozen_then_resumed_never_acks_again_and_rejoins() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    fx.failover(0, Fault::Freeze).await?;
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_isolated_from_everything_fences_itself() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    fx.failover(0, Fault::Isolate).await?;
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_standby_never_promotes_and_the_primary_goes_on() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(fx) = Fx::start(Mode::SyncWindow).await? else {
        return Ok(());
    };
    let epoch = fx.nodes[0].status().await?.epoch;
    fx.say("standby b black-holed");
    let t0 = Instant::now();
    fx.net.black_hole("b")?;
    // After hadr_timeout + the peer window, the primary records B out of
    // sync and acknowledges alone.
    let st = fx.nodes[0]
        .wait_for("B recorded out of sync", Duration::from_secs(20), |st| {
            st.failover
                .as_ref()
                .is_some_and(|f| f.acknowledging_alone && !f.out_of_sync.is_empty())
        })
        .await?;
    fx.say(&format!(
        "a acknowledges alone after {} ms",
        t0.elapsed().as_millis()
    ));
    assert_eq!(st.epoch, epoch);
    let n = fx.load().acked_count();
    holds_for(5.0, "b stays a standby", || {
        let st = status_inside(&fx.net, 1)?;
        Ok(st.role == NodeRole::Standby && !st.writable)
    })
    .await?;
    anyhow::ensure!(
        fx.load().acked_count() > n + 10,
        "the primary did not go on acknowledging alone"
    );
    anyhow::ensure!(
        fx.load().accepts_after(1, t0).is_empty(),
        "the isolated standby accepted writes"
    );
    let hold = status_inside(&fx.net, 1)?
        .failover
        .and_then(|f| f.hold)
        .unwrap_or_default();
    fx.say(&format!("b says: {hold}"));
    anyhow::ensure!(hold.contains("not promoting"), "{hold}");
    fx.say(&format!(
        "longest wait between two acknowledged transfers around the fault: {} ms",
        fx.load().longest_gap(t0, Instant::now()).as_millis()
    ));
    fx.net.heal("b")?;
    let healed = Instant::now();
    fx.nodes[0]
        .wait_for("PEER again, mark cleared", Duration::from_secs(60), |st| {
            st.principal_in(PairState::Peer)
                && st
                    .failover
                    .as_ref()
                    .is_some_and(|f| f.out_of_sync.is_empty() && !f.acknowledging_alone)
        })
        .await?;
    fx.say(&format!(
        "b back in PEER, mark cleared {} ms after the heal",
        healed.elapsed().as_millis()
    ));
    fx.healthy(0).await?;
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_link_with_both_reaching_the_arbiter_leaves_exactly_one_primary() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(fx) = Fx::start(Mode::SyncWindow).await? else {
        return Ok(());
    };
    let epoch = fx.nodes[0].status().await?.epoch;
    fx.say("link a-b cut");
    let t0 = Instant::now();
    fx.net.cut("a", "b")?;
    fx.nodes[0]
        .wait_for("acknowledging alone", Duration::from_secs(20), |st| {
            st.failover.as_ref().is_some_and(|f| f.acknowledging_alone)
        })
        .await?;
    fx.say(&format!(
        "a acknowledges alone after {} ms",
        t0.elapsed().as_millis()
    ));
    let n = fx.load().acked_count();
    let nodes = &fx.nodes;
    let mut sts = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let a = nodes[0].status().await?;
        let b = nodes[1].status().await?;
        anyhow::ensure!(
            a.is_writable_primary() && a.epoch == epoch,
            "a stopped: {}",
            brief(&a)
        );
        anyhow::ensure!(b.role == NodeRole::Standby, "b: {}", brief(&b));
        sts.push(b);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(fx.load().acked_count() > n + 10, "a stopped acknowledging");
    anyhow::ensure!(
        fx.load().accepts_after(1, t0).is_empty(),
        "b accepted writes"
    );
    let hold = sts
        .last()
        .and_then(|s| s.failover.as_ref())
        .and_then(|f| f.hold.clone())
        .unwrap_or_default();
    fx.say(&format!("b says: {hold}"));
    anyhow::ensure!(hold.contains("out of sync"), "{hold}");
    fx.say(&format!(
        "longest wait between two acknowledged transfers around the cut: {} ms",
        fx.load().longest_gap(t0, Instant::now()).as_millis()
    ));
    fx.net.heal_cut("a", "b")?;
    fx.healthy(0).await?;
    fx.nodes[0]
        .wait_for("mark cleared", Duration::from_secs(30), |st| {
            st.failover
                .as_ref()
                .is_some_and(|f| f.out_of_sync.is_empty())
        })
        .await?;
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbiter_down_with_a_healthy_pair_changes_nothing() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    let epoch = fx.nodes[0].status().await?.epoch;
    fx.say("arbiter host black-holed");
    fx.net.black_hole("arb")?;
    for n in &fx.nodes {
        n.wait_for("arbiter seen down", Duration::from_secs(20), |st| {
            st.failover.as_ref().is_some_and(|f| !f.arbiter_ok)
        })
        .await?;
    }
    let text = status_text_inside(&fx.net, 0)?;
    anyhow::ensure!(text.contains("arbiter       DOWN"), "{text}");
    let n = fx.load().acked_count();
    // Past every lease deadline: no role change, the primary serves.
    let nodes = &fx.nodes;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let a = nodes[0].status().await?;
        let b = nodes[1].status().await?;
        anyhow::ensure!(
            a.is_writable_primary() && a.epoch == epoch,
            "a changed: {}",
            brief(&a)
        );
        anyhow::ensure!(b.follows(), "b changed: {}", brief(&b));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(
        fx.load().acked_count() > n + 10,
        "the healthy pair stopped acknowledging"
    );
    fx.net.heal("arb")?;
    for n in &fx.nodes {
        n.wait_for("arbiter back", Duration::from_secs(20), |st| {
            st.failover.as_ref().is_some_and(|f| f.arbiter_ok)
        })
        .await?;
    }
    fx.healthy(0).await?;
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbiter_down_and_primary_crash_means_no_failover_until_it_is_back() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    let epoch = fx.nodes[1].status().await?.epoch;
    fx.say("etcd frozen (SIGSTOP)");
    fx.etcd.sigstop()?;
    for n in &fx.nodes {
        n.wait_for("arbiter seen down", Duration::from_secs(20), |st| {
            st.failover.as_ref().is_some_and(|f| !f.arbiter_ok)
        })
        .await?;
    }
    fx.say("primary a crashes");
    fx.net.black_hole("a")?;
    fx.nodes[0].kill9();
    let b = &fx.nodes[1];
    let until = Instant::now() + Duration::from_secs(6);
    let mut last = None;
    while Instant::now() < until {
        let st = b.status().await?;
        anyhow::ensure!(
            st.role == NodeRole::Standby && !st.writable,
            "b promoted without the arbiter: {}",
            brief(&st)
        );
        last = Some(st);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hold = last
        .and_then(|s| s.failover)
        .and_then(|f| f.hold)
        .unwrap_or_default();
    fx.say(&format!("b says: {hold}"));
    anyhow::ensure!(hold.contains("arbiter is unreachable"), "{hold}");
    let text = status_text_inside(&fx.net, 1)?;
    anyhow::ensure!(
        text.contains("decision      not promoting: the arbiter is unreachable"),
        "{text}"
    );
    // The arbiter comes back: the lease is over unchanged, B takes over.
    let back = Instant::now();
    fx.etcd.sigcont()?;
    fx.nodes[1]
        .wait_for("b promoted", Duration::from_secs(30), |st| {
            st.is_writable_primary() && st.epoch > epoch
        })
        .await?;
    fx.say(&format!(
        "b promoted {} ms after the arbiter came back",
        back.elapsed().as_millis()
    ));
    fx.net.heal("a")?;
    fx.nodes[0].spawn()?;
    fx.nodes[0]
        .wait_for("a following", Duration::from_secs(60), |st| st.follows())
        .await?;
    fx.healthy(1).await?;
    fx.timings.clear();
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_killed_and_restarted_in_each_order() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    let epoch = fx.nodes[0].status().await?.epoch;
    // Primary first, then the standby.
    fx.say("kill -9 a, then b");
    fx.nodes[0].kill9();
    fx.nodes[1].kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    fx.nodes[0].spawn()?;
    fx.nodes[0]
        .wait_for("a primary again", Duration::from_secs(30), |st| {
            st.is_writable_primary()
        })
        .await?;
    fx.say(&format!(
        "a (restarted first) writable after {} ms",
        t.elapsed().as_millis()
    ));
    fx.nodes[1].spawn()?;
    fx.healthy(0).await?;
    fx.check(0).await?;
    // Standby first, then the primary; the standby alone never promotes.
    fx.say("kill -9 b, then a; b restarts first");
    fx.nodes[1].kill9();
    fx.nodes[0].kill9();
    let t0 = Instant::now();
    fx.nodes[1].spawn()?;
    let b = &fx.nodes[1];
    let mut last = None;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let st = b.status().await?;
        anyhow::ensure!(
            st.role == NodeRole::Standby && !st.writable,
            "b promoted alone: {}",
            brief(&st)
        );
        last = Some(st);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hold = last
        .and_then(|s| s.failover)
        .and_then(|f| f.hold)
        .unwrap_or_default();
    fx.say(&format!("b alone says: {hold}"));
    anyhow::ensure!(hold.contains("not promoting"), "{hold}");
    anyhow::ensure!(
        fx.load().accepts_after(1, t0).is_empty(),
        "b accepted writes"
    );
    let t = Instant::now();
    fx.nodes[0].spawn()?;
    fx.nodes[0]
        .wait_for("a primary again", Duration::from_secs(30), |st| {
            st.is_writable_primary()
        })
        .await?;
    fx.say(&format!(
        "a (restarted second) writable after {} ms",
        t.elapsed().as_millis()
    ));
    fx.healthy(0).await?;
    assert_eq!(
        fx.nodes[0].status().await?.epoch,
        epoch,
        "no failover happened"
    );
    fx.check(0).await?;
    // After a failover B has the newer epoch: A, restarted first, stays a
    // standby; B, restarted second, becomes primary; A follows.
    fx.failover(0, Fault::Crash).await?;
    let epoch_b = fx.nodes[1].status().await?.epoch;
    anyhow::ensure!(epoch_b > epoch, "b's epoch {epoch_b} after the failover");
    fx.say("kill -9 b, then a; a (older epoch) restarts first");
    fx.nodes[1].kill9();
    fx.nodes[0].kill9();
    let t0 = Instant::now();
    fx.nodes[0].spawn()?;
    let a = &fx.nodes[0];
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let st = a.status().await?;
        anyhow::ensure!(
            st.role == NodeRole::Standby && !st.writable,
            "a (older epoch) became writable alone: {}",
            brief(&st)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(
        fx.load().accepts_after(0, t0).is_empty(),
        "a accepted writes"
    );
    let t = Instant::now();
    fx.nodes[1].spawn()?;
    let st = fx.nodes[1]
        .wait_for("b primary again", Duration::from_secs(30), |st| {
            st.is_writable_primary()
        })
        .await?;
    fx.say(&format!(
        "b (newer epoch, restarted second) writable after {} ms",
        t.elapsed().as_millis()
    ));
    assert_eq!(st.epoch, epoch_b, "no failover happened");
    fx.healthy(1).await?;
    fx.timings.clear();
    fx.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_automatic_failovers_in_a_row() -> Result<()> {
    let _one = SERIAL.lock().await;
    let seed: u64 = std::env::var("HADR_FAILOVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    eprintln!("twenty failovers: seed {seed} (HADR_FAILOVER_SEED overrides)");
    let Some(mut fx) = Fx::start(Mode::NearSync).await? else {
        return Ok(());
    };
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut p = 0;
    for i in 0..20 {
        let fault = [Fault::Crash, Fault::Freeze, Fault::Isolate][rng.below(3) as usize];
        fx.say(&format!("failover {}/20 (seed {seed})", i + 1));
        fx.failover(p, fault)
            .await
            .with_context(|| format!("failover {} ({fault:?}), seed {seed}", i + 1))?;
        p = 1 - p;
        // Some load on the new pair before the next fault.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let n = fx.timings.len() as u128;
    let mean = |f: fn(&Timing) -> Duration| {
        fx.timings.iter().map(|t| f(t).as_millis()).sum::<u128>() / n.max(1)
    };
    let max = |f: fn(&Timing) -> Duration| {
        fx.timings
            .iter()
            .map(|t| f(t).as_millis())
            .max()
            .unwrap_or(0)
    };
    eprintln!(
        "twenty failovers: promoted mean {} ms max {} ms; first client ack mean {} ms max {} ms",
        mean(|t| t.promoted),
        max(|t| t.promoted),
        mean(|t| t.first_ack),
        max(|t| t.first_ack)
    );
    fx.finish().await
}

/// Negative control: with a `net:` arbiter, which keeps no state (DB2's
/// network tiebreaker; docs/failover.md says both halves may win), a cut
/// between nodes that both reach it makes two primaries, and the probe must
/// see it. Without this, a probe that never reached a node would pass every
/// scenario above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_the_split_brain_a_stateless_arbiter_allows() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(fx) = Fx::start(Mode::NetArbiter).await? else {
        return Ok(());
    };
    fx.say("link a-b cut, net: arbiter");
    fx.net.cut("a", "b")?;
    fx.nodes[1]
        .wait_for("b promoted too", Duration::from_secs(30), |st| {
            st.is_writable_primary()
        })
        .await?;
    let until = Instant::now() + Duration::from_secs(10);
    let found = loop {
        if let Some(pair) = fx.load().overlap() {
            break Some(pair);
        }
        if Instant::now() > until {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let err = fx.no_overlap().err().map(|e| e.to_string());
    fx.say(&format!("probe: {}", err.as_deref().unwrap_or("nothing")));
    anyhow::ensure!(
        found.is_some(),
        "two primaries and the probe saw no overlapping writes"
    );
    Ok(())
}
