//! Resource groups between real hosts (issue 9): nodes A and B in network
//! namespaces (`hadr_testkit::netns`), an etcd arbiter on a third host, a
//! client on a fourth (C) that knows only the virtual IP, and per node a
//! `vip` resource (an address on the host's interface on the cluster
//! network) followed by a supervised `service`.
//!
//! Two observers run through every scenario:
//! - a sampler in the root namespace reads `ip -n NS -o addr show` of A and
//!   B every ~20 ms and records whether each holds the VIP: two hosts
//!   holding it at the same instant fails the test, dead or alive, with one
//!   exception (a simulation artefact, below).
//!
//! Two kinds of crash of the primary, both with its host black-holed:
//! - [`Crash::Hadr`]: kill -9 of hadr alone. Its guard (a process on a pipe
//!   from hadr, crates/hadr-resources/src/guard.rs) stops the service and
//!   removes the VIP; the check is strict: the new primary, which waits the
//!   old one's stop bound, must not add the VIP before the guard removed it.
//! - [`Crash::Host`]: kill -9 of every process in the namespace (hadr, its
//!   guard, the service), as a power loss. A namespace keeps its addresses
//!   as kernel state, where a dead machine's would vanish: its VIP does not
//!   count while it is black-holed (nothing can reach it), and at its
//!   "reboot" (hadr restarted there, still black-holed) hadr must remove the
//!   leftover VIP before the host is reachable again.
//! - a client inside C asks `http://VIP:8080/` every 50 ms and records the
//!   answers (which node served) and the gaps.
//!
//! Scenarios: the example's configs as they are (examples/vip-http, graceful
//! takeover then a primary host crash), self-fence by isolation, a service
//! that ignores SIGTERM and holds a lock both nodes' services need (its stop
//! is waited for, never raced), and monitor failures past max_restarts
//! handing over to the standby. One scenario at a time (a lock); timings are
//! printed (`cargo test --test resources_netns -- --nocapture`).
//!
//! Needs root, iproute2, nftables, etcd-server, python3, curl, psql and
//! flock (`.ci/run` installs them); without etcd the tests skip, except
//! under `CI=true`.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hadr_testkit::netns::{etcd_binary, Cluster, Proc, ADMIN_PORT, HADR_PORT};

const ETCD_CLIENT: u16 = 23791;
const ETCD_PEER: u16 = 23801;
/// The service's port on every host.
const WEB_PORT: u16 = 8080;
/// Last octet of the VIP on the cluster's subnet.
const VIP_HOST: u8 = 100;
/// Node hosts, by index.
const NODES: [&str; 2] = ["a", "b"];
/// How the primary dies (its host black-holed in both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// kill -9 of hadr: its guard stops the resources.
    Hadr,
    /// kill -9 of everything on the host (a power loss).
    Host,
}

/// One scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn etcd_or_skip() -> Option<PathBuf> {
    if let Some(b) = etcd_binary() {
        return Some(b);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "no etcd binary (apt-get install etcd-server); under CI=true these tests must run"
    );
    eprintln!("SKIPPED: no etcd binary (apt-get install etcd-server, or set HADR_ETCD_BIN)");
    None
}

/// One look at both nodes' addresses.
#[derive(Clone, Copy, Debug)]
struct Sample {
    t: Instant,
    on: [bool; 2],
    dead: [bool; 2],
}

/// Reads who holds the VIP every ~20 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    dead: Arc<Mutex<[bool; 2]>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(net: Arc<Cluster>, vip: Ipv4Addr) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let dead: Arc<Mutex<[bool; 2]>> = Arc::default();
        let (s, v, d) = (stop.clone(), samples.clone(), dead.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let t = Instant::now();
                let mut on = [false; 2];
                for (i, n) in NODES.iter().enumerate() {
                    on[i] = net.addresses(n).map(|a| a.contains(&vip)).unwrap_or(false);
                }
                let dead = *lock(&d);
                lock(&v).push(Sample { t, on, dead });
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            samples,
            dead,
            thread: Some(thread),
        }
    }

    fn set_dead(&self, i: usize, dead: bool) {
        lock(&self.dead)[i] = dead;
    }

    /// The first sample with the VIP on two hosts that count.
    fn both(&self) -> Option<Sample> {
        lock(&self.samples)
            .iter()
            .find(|s| s.on[0] && s.on[1] && !(s.dead[0] || s.dead[1]))
            .copied()
    }

    /// The first sample after `t` in which node `i` holds the VIP.
    fn first_on(&self, i: usize, t: Instant) -> Option<Instant> {
        lock(&self.samples)
            .iter()
            .find(|s| s.t > t && s.on[i])
            .map(|s| s.t)
    }

    /// The last sample in which node `i` held the VIP.
    fn last_on(&self, i: usize) -> Option<Instant> {
        lock(&self.samples)
            .iter()
            .rev()
            .find(|s| s.on[i])
            .map(|s| s.t)
    }

    /// Whether node `i` holds it in the latest sample.
    fn now_on(&self, i: usize) -> bool {
        lock(&self.samples).last().is_some_and(|s| s.on[i])
    }

    fn count(&self) -> usize {
        lock(&self.samples).len()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request of the client.
#[derive(Clone, Debug)]
struct Answer {
    t: Instant,
    /// How long it took.
    took: Duration,
    /// The body, or why there was none.
    body: Result<String, String>,
}

impl Answer {
    fn node(&self) -> Option<&str> {
        self.body
            .as_ref()
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("node: "))
    }
}

/// Asks `http://VIP:8080/` from inside host C every 50 ms.
struct Client {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One HTTP GET of `/` at `addr` (HTTP/1.0, the server closes).
fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(format!("bad answer: {text:?}")),
    }
}

impl Client {
    fn start(net: Arc<Cluster>, vip: Ipv4Addr) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let (s, a) = (stop.clone(), answers.clone());
        let addr = SocketAddr::from((vip, WEB_PORT));
        let thread = std::thread::spawn(move || {
            let r = net.enter("c", || {
                while !s.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let body = http_get(addr);
                    let took = t.elapsed();
                    lock(&a).push(Answer { t, took, body });
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            if let Err(e) = r {
                eprintln!("client: {e:#}");
            }
        });
        Client {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// When node `node` first answered a request sent after `t`.
    fn first_from(&self, node: &str, t: Instant) -> Option<Instant> {
        lock(&self.answers)
            .iter()
            .find(|a| a.t > t && a.node() == Some(node))
            .map(|a| a.t)
    }

    /// The first failed request's error.
    fn first_error(&self) -> Option<String> {
        lock(&self.answers)
            .iter()
            .find_map(|a| a.body.clone().err())
    }

    /// The last answer (any node).
    fn last(&self) -> Option<Answer> {
        lock(&self.answers).last().cloned()
    }

    /// (answered, failed, slowest answer) of the requests sent in [from, to].
    fn counts(&self, from: Instant, to: Instant) -> (usize, usize, Duration) {
        let a = lock(&self.answers);
        let w = a.iter().filter(|x| x.t >= from && x.t <= to);
        let ok: Vec<&Answer> = w.clone().filter(|x| x.body.is_ok()).collect();
        let slowest = ok.iter().map(|x| x.took).max().unwrap_or_default();
        (ok.len(), w.count() - ok.len(), slowest)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The replication and failover flags of a node (those the example's
/// configs set in their files).
fn node_args(net: &Cluster, me: &str, other: &str) -> Vec<String> {
    [
        "--hadr-local",
        &net.addr(me, HADR_PORT),
        "--hadr-target-list",
        &net.addr(other, HADR_PORT),
        "--hadr-timeout",
        "1s",
        "--hadr-syncmode",
        "NEARSYNC",
        "--arbiter",
        &format!("etcd://{}/hadr/lease", net.addr("arb", ETCD_CLIENT)),
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "500ms",
        "--min-promotion-interval",
        "5s",
    ]
    .map(String::from)
    .to_vec()
}

/// What a scenario's nodes run.
enum Setup {
    /// examples/vip-http's node-a.toml / node-b.toml as they are, but for
    /// the addresses, the interface and the directory.
    Example,
    /// Generated `[[resource]]` tables for node `i` (the text may use
    /// `{VIP}`, `{IFACE}`, `{NODE}`, `{DIR}`, `{EX}`: the example's
    /// directory copied into the scenario's).
    Resources(fn(usize) -> String),
}

/// The cluster: network, etcd, nodes, the observers.
/// Fields drop in order: observers and processes before the network.
struct Fx {
    client: Option<Client>,
    sampler: Option<Sampler>,
    nodes: Vec<Server>,
    etcd: Proc,
    net: Arc<Cluster>,
    dir: PathBuf,
    began: Instant,
    _tmp: tempfile::TempDir,
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vip-http")
}

/// Copy the example's files (server.py, www/) into `to`; www/ also into
/// `a/www`, the example's synced directory on A (B's is filled by file sync).
fn copy_example(to: &Path) -> Result<()> {
    let from = example_dir();
    std::fs::copy(from.join("server.py"), to.join("server.py"))?;
    for www in [to.join("www"), to.join("a/www")] {
        std::fs::create_dir_all(&www)?;
        std::fs::copy(from.join("www/index.txt"), www.join("index.txt"))?;
    }
    Ok(())
}

/// The example's subnet prefix, in its configs and README.
const EXAMPLE_PREFIX: &str = "10.79.0.";

impl Fx {
    async fn start(setup: Setup) -> Result<Option<Fx>> {
        let Some(etcd_bin) = etcd_or_skip() else {
            return Ok(None);
        };
        let began = Instant::now();
        // Host order gives the example's addresses: a .10, b .11, arb .12, c .13.
        let net = Arc::new(Cluster::new(&["a", "b", "arb", "c"])?);
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        copy_example(&dir)?;
        std::fs::write(dir.join("stubborn.sh"), STUBBORN_SH)?;
        let etcd = net.start_etcd("arb", &etcd_bin, &dir, ETCD_CLIENT, ETCD_PEER)?;
        let o = net.ip("a").octets();
        let prefix = format!("{}.{}.{}.", o[0], o[1], o[2]);
        let vip = Ipv4Addr::new(o[0], o[1], o[2], VIP_HOST);
        let mut args: Vec<Vec<String>> = Vec::new();
        for (i, name) in NODES.iter().enumerate() {
            let iface = net.interface(name)?;
            let (text, mut flags) = match &setup {
                Setup::Example => {
                    let text =
                        std::fs::read_to_string(example_dir().join(format!("node-{name}.toml")))?;
                    anyhow::ensure!(
                        text.contains("interface = \"eth0\""),
                        "the example's config changed: no interface = \"eth0\""
                    );
                    let text = text
                        .replace(EXAMPLE_PREFIX, &prefix)
                        .replace("interface = \"eth0\"", &format!("interface = \"{iface}\""))
                        .replace("/srv/vip-http", &dir.to_string_lossy());
                    (text, Vec::new())
                }
                Setup::Resources(f) => {
                    let text = f(i)
                        .replace("{VIP}", &vip.to_string())
                        .replace("{IFACE}", &iface)
                        .replace("{NODE}", name)
                        .replace("{DIR}", &dir.to_string_lossy())
                        .replace("{EX}", &dir.to_string_lossy());
                    (text, node_args(&net, name, NODES[1 - i]))
                }
            };
            let path = dir.join(format!("node-{name}.toml"));
            std::fs::write(&path, text)?;
            flags.extend(["--config".to_string(), path.to_string_lossy().into_owned()]);
            args.push(flags);
        }
        let adir = dir.join("a/data");
        std::fs::create_dir_all(dir.join("a"))?;
        std::fs::create_dir_all(dir.join("b"))?;
        init(&adir)?;
        let mut aargs = args[0].clone();
        aargs.extend(["--role".to_string(), "primary".to_string()]);
        let mut a = net.server(&hadr(), "a", adir, aargs);
        a.spawn()?;
        let bdir = dir.join("b/data");
        clone_to(&net.addr("a", HADR_PORT), &bdir)?;
        let mut b = net.server(&hadr(), "b", bdir, args[1].clone());
        b.spawn()?;
        let mut fx = Fx {
            client: None,
            sampler: None,
            nodes: vec![a, b],
            etcd,
            net,
            dir,
            began,
            _tmp: tmp,
        };
        fx.healthy(0).await?;
        let c = fx.nodes[0].client().await?;
        c.batch_execute(
            "CREATE TABLE greeting(id INTEGER PRIMARY KEY, msg TEXT NOT NULL); \
             INSERT INTO greeting VALUES (1, 'hello from the database');",
        )
        .await?;
        fx.sampler = Some(Sampler::start(fx.net.clone(), vip));
        fx.client = Some(Client::start(fx.net.clone(), vip));
        fx.wait_served_by(0, began, Duration::from_secs(30)).await?;
        fx.say(&format!("cluster up, A serves at {vip}:{WEB_PORT}"));
        Ok(Some(fx))
    }

    fn say(&self, what: &str) {
        eprintln!("[{:>6} ms] {what}", self.began.elapsed().as_millis());
    }

    fn sampler(&self) -> &Sampler {
        self.sampler.as_ref().expect("sampler running")
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("client running")
    }

    /// Node `p` a writable primary with its standby in PEER, the lease
    /// held and no out-of-sync mark (the standby may promote), the other
    /// following.
    async fn healthy(&self, p: usize) -> Result<()> {
        self.nodes[p]
            .wait_for("primary, PEER, lease held", Duration::from_secs(60), |st| {
                st.is_writable_primary()
                    && st.principal_in(PairState::Peer)
                    && st.failover.as_ref().is_some_and(|f| {
                        f.lease_left_ms > 0 && f.out_of_sync.is_empty() && !f.acknowledging_alone
                    })
            })
            .await?;
        self.nodes[1 - p]
            .wait_for("standby following", Duration::from_secs(60), |st| {
                st.follows()
            })
            .await?;
        Ok(())
    }

    /// Wait until the client got an answer from node `i` sent after `t`.
    async fn wait_served_by(&self, i: usize, t: Instant, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.client().first_from(NODES[i], t) {
                return Ok(at);
            }
            self.no_two_vips()?;
            if Instant::now() > deadline {
                bail!(
                    "the client got no answer from {} within {timeout:?}; last: {:?}; {}'s resources: {}",
                    NODES[i],
                    self.client().last(),
                    NODES[i],
                    self.resources_of(i).await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The safety property: never the VIP on two live hosts at once.
    fn no_two_vips(&self) -> Result<()> {
        if let Some(s) = self.sampler().both() {
            bail!(
                "THE VIP ON BOTH HOSTS at {} ms (dead: {:?})",
                (s.t - self.began).as_millis(),
                s.dead
            );
        }
        Ok(())
    }

    /// Node `i`'s resources' states, for messages.
    async fn resources_of(&self, i: usize) -> String {
        match tokio::time::timeout(Duration::from_secs(3), self.nodes[i].status()).await {
            Ok(Ok(st)) => match st.resources {
                Some(r) => format!(
                    "{} (hold {:?}, blocked {:?}, takeover {:?})",
                    r.resources
                        .iter()
                        .map(|x| format!("{}={} {:?}", x.name, x.state, x.output.last()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    r.hold,
                    r.blocked,
                    r.takeover_reason
                ),
                None => "none".into(),
            },
            _ => "unreachable".into(),
        }
    }

    /// `hadr takeover` by node `s` (run inside its host).
    fn takeover(&self, s: usize) -> Result<String> {
        let admin = format!("127.0.0.1:{ADMIN_PORT}");
        hadr_inside(
            &self.net,
            NODES[s],
            &["takeover", "--node", &admin],
            Duration::from_secs(60),
        )
    }

    /// Graceful takeover by the standby `s`: the VIP and the service move,
    /// the client is served by `s`. Returns (command's time, client gap).
    async fn graceful(&self, s: usize) -> Result<(Duration, Duration)> {
        let p = 1 - s;
        self.say(&format!("hadr takeover by {}", NODES[s]));
        let t0 = Instant::now();
        self.takeover(s)?;
        let took = t0.elapsed();
        let served = self.wait_served_by(s, t0, Duration::from_secs(30)).await?;
        anyhow::ensure!(
            !self.sampler().now_on(p),
            "the old primary {} still holds the VIP",
            NODES[p]
        );
        self.healthy(s).await?;
        self.no_two_vips()?;
        let last_old = self.sampler().last_on(p);
        let first_new = self.sampler().first_on(s, t0);
        self.say(&format!(
            "takeover took {} ms; VIP off {} at +{} ms, on {} at +{} ms; client served by {} +{} ms after the command",
            took.as_millis(),
            NODES[p],
            last_old.map_or(0, |t| t.saturating_duration_since(t0).as_millis()),
            NODES[s],
            first_new.map_or(0, |t| (t - t0).as_millis()),
            NODES[s],
            (served - t0).as_millis()
        ));
        Ok((took, served - t0))
    }

    /// The primary `p`'s host is black-holed and hadr (or everything on
    /// it) killed with -9. Returns when `s` serves through the VIP:
    /// (promoted, served) after the crash.
    async fn crash(&mut self, p: usize, how: Crash) -> Result<(Duration, Duration)> {
        let s = 1 - p;
        let epoch = self.nodes[s].status().await?.epoch;
        self.say(&format!("{how:?} crash of primary {}", NODES[p]));
        let t0 = Instant::now();
        self.net.black_hole(NODES[p])?;
        if how == Crash::Host {
            self.sampler().set_dead(p, true);
        }
        self.nodes[p].kill9();
        if how == Crash::Host {
            self.net.kill_all(NODES[p])?;
        }
        self.nodes[s]
            .wait_for("promoted by itself", Duration::from_secs(30), |st| {
                st.is_writable_primary() && st.epoch > epoch
            })
            .await?;
        let promoted = t0.elapsed();
        let served = self.wait_served_by(s, t0, Duration::from_secs(40)).await? - t0;
        self.no_two_vips()?;
        self.say(&format!(
            "{} promoted +{} ms, serves through the VIP +{} ms (VIP on it +{} ms); {}'s VIP last seen +{} ms",
            NODES[s],
            promoted.as_millis(),
            served.as_millis(),
            self.sampler()
                .first_on(s, t0)
                .map_or(0, |t| (t - t0).as_millis()),
            NODES[p],
            self.sampler()
                .last_on(p)
                .map_or(0, |t| t.saturating_duration_since(t0).as_millis()),
        ));
        Ok((promoted, served))
    }

    /// The crashed host `p` "reboots": hadr starts there while it is still
    /// black-holed and must remove the VIP it left behind (it is not a
    /// writable primary); only then does the host come back on the network,
    /// and the node follows the new primary.
    async fn reboot(&mut self, p: usize) -> Result<()> {
        // What a reboot does to processes (after a Hadr crash: the guard,
        // done by now).
        self.net.kill_all(NODES[p])?;
        let t0 = Instant::now();
        let had = self.sampler().now_on(p);
        self.nodes[p].spawn_nowait()?;
        if had {
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.sampler().now_on(p) {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "restarted hadr on {} did not remove the leftover VIP within 30 s; log:\n{}",
                    NODES[p],
                    self.nodes[p].log_tail(30)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.say(&format!(
                "{} restarted: its leftover VIP removed after {} ms",
                NODES[p],
                t0.elapsed().as_millis()
            ));
        }
        self.net.heal(NODES[p])?;
        self.sampler().set_dead(p, false);
        self.nodes[p]
            .wait_for("following again", Duration::from_secs(60), |st| {
                st.follows()
            })
            .await?;
        self.no_two_vips()
    }

    async fn finish(mut self) -> Result<()> {
        self.no_two_vips()?;
        let n = self.sampler().count();
        let (ok, failed, slowest) = self.client().counts(self.began, Instant::now());
        self.say(&format!(
            "{n} address samples; client: {ok} answers (slowest {} ms), {failed} failed requests",
            slowest.as_millis()
        ));
        if let Some(e) = self.client().first_error() {
            self.say(&format!("the client's first failure: {e}"));
        }
        anyhow::ensure!(n >= 20, "the sampler took only {n} samples");
        self.client.take();
        self.sampler.take();
        self.etcd.kill9();
        Ok(())
    }
}

/// Run `hadr ARGS` inside host `host`'s namespace, killed after `timeout`.
fn hadr_inside(net: &Cluster, host: &str, args: &[&str], timeout: Duration) -> Result<String> {
    net.run_inside(host, bin(), args, timeout)
}

/// examples/vip-http run as it is: the client on C keeps being served
/// through the VIP across a graceful takeover (B), a takeover back (A), a
/// kill -9 of A's hadr with A's host black-holed (its guard stops A's
/// resources; B promotes by itself, waits A's stop bound, starts the VIP and
/// the service), and a crash of B's host (A takes over; B's reboot removes
/// its leftover VIP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_vip_http_moves_with_takeover_and_host_crash() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = Fx::start(Setup::Example).await? else {
        return Ok(());
    };
    let answer = fx
        .client()
        .last()
        .and_then(|a| a.body.ok())
        .unwrap_or_default();
    fx.say(&format!("the client sees: {answer:?}"));
    anyhow::ensure!(
        answer.contains("file: hello from the synced directory")
            && answer.contains("row: hello from the database"),
        "the example's service answers {answer:?}"
    );
    fx.graceful(1).await?;
    // B serves from its own copy of the directory, which only file sync
    // filled; a change on the primary (B) reaches the standby's (A's).
    let answer = fx
        .client()
        .last()
        .and_then(|a| a.body.ok())
        .unwrap_or_default();
    anyhow::ensure!(
        answer.contains("node: b") && answer.contains("file: hello from the synced directory"),
        "B's service answers {answer:?}"
    );
    let t = Instant::now();
    std::fs::write(fx.dir.join("b/www/index.txt"), "updated on b\n")?;
    while std::fs::read_to_string(fx.dir.join("a/www/index.txt"))? != "updated on b\n" {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(10),
            "the file changed on the primary did not reach the standby"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.say(&format!(
        "the served file, changed on the primary, was on the standby after {} ms",
        t.elapsed().as_millis()
    ));
    fx.graceful(0).await?;
    let (promoted, served) = fx.crash(0, Crash::Hadr).await?;
    // The example's stop bound: web 2 s + kill 1 s, vip 1 s, less the
    // lease margin (0.5 s) that passed before the promotion.
    anyhow::ensure!(
        served >= promoted + Duration::from_millis(3000),
        "B served {} ms after the crash, only {} ms after its promotion: it did not wait A's stop bound (3.5 s)",
        served.as_millis(),
        (served - promoted).as_millis()
    );
    fx.reboot(0).await?;
    fx.healthy(1).await?;
    let (promoted_b, served_b) = fx.crash(1, Crash::Host).await?;
    fx.reboot(1).await?;
    fx.healthy(0).await?;
    eprintln!(
        "TIMING example: kill -9 of A's hadr: promoted {} ms, served through the VIP {} ms; crash of B's host: promoted {} ms, served {} ms",
        promoted.as_millis(),
        served.as_millis(),
        promoted_b.as_millis(),
        served_b.as_millis()
    );
    fx.finish().await
}

/// The plain service of the scenarios: the example's server.
fn web_and_vip(_i: usize) -> String {
    r#"
[[resource]]
name = "vip"
kind = "vip"
address = "{VIP}/24"
interface = "{IFACE}"
stop_timeout = "1s"

[[resource]]
name = "web"
kind = "service"
command = "exec python3 {EX}/server.py --name {NODE} --port 8080 --www {EX}/www --db 'host=127.0.0.1 port=5432 user=app dbname=app connect_timeout=2' --pidfile {DIR}/{NODE}.pid"
ready = "curl -sf -o /dev/null http://127.0.0.1:8080/"
stop_timeout = "1s"
kill_timeout = "1s"
monitor_interval = "300ms"
max_restarts = 1
on_exhausted = "takeover"
"#
    .to_string()
}

/// A cut from B and from the arbiter: A loses its lease, stops the service
/// and removes its VIP (self-fence) before B, promoted, adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_primary_removes_its_vip_before_the_standby_adds_it() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(fx) = Fx::start(Setup::Resources(web_and_vip)).await? else {
        return Ok(());
    };
    let epoch = fx.nodes[1].status().await?.epoch;
    fx.say("a cut from b and from the arbiter");
    let t0 = Instant::now();
    fx.net.cut("a", "b")?;
    fx.net.cut("a", "arb")?;
    fx.nodes[1]
        .wait_for("b promoted", Duration::from_secs(30), |st| {
            st.is_writable_primary() && st.epoch > epoch
        })
        .await?;
    let promoted = t0.elapsed();
    let served = fx.wait_served_by(1, t0, Duration::from_secs(30)).await? - t0;
    let off_a = fx.sampler().last_on(0).context("a never held the VIP")?;
    let on_b = fx
        .sampler()
        .first_on(1, t0)
        .context("b never added the VIP")?;
    fx.no_two_vips()?;
    anyhow::ensure!(off_a < on_b, "a's VIP was still there when b added it");
    let st = fx.nodes[0].status().await?;
    anyhow::ensure!(
        !st.writable,
        "the isolated a still writable: {}",
        brief(&st)
    );
    fx.say(&format!(
        "self-fence: a's VIP gone +{} ms, b promoted +{} ms, b's VIP +{} ms, served by b +{} ms",
        (off_a - t0).as_millis(),
        promoted.as_millis(),
        (on_b - t0).as_millis(),
        served.as_millis()
    ));
    eprintln!(
        "TIMING self-fence: a's VIP off {} ms, b's on {} ms (gap {} ms), served {} ms",
        (off_a - t0).as_millis(),
        (on_b - t0).as_millis(),
        (on_b - off_a).as_millis(),
        served.as_millis()
    );
    fx.net.heal_all()?;
    fx.nodes[0]
        .wait_for("a following", Duration::from_secs(60), |st| st.follows())
        .await?;
    fx.healthy(1).await?;
    fx.finish().await
}

/// The service is killed on the primary: restarted once (max_restarts 1),
/// killed again: the primary hands over to its standby by itself and says
/// why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_service_past_max_restarts_hands_over_to_the_standby() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(fx) = Fx::start(Setup::Resources(web_and_vip)).await? else {
        return Ok(());
    };
    let pidfile = fx.dir.join("a.pid");
    let epoch = fx.nodes[1].status().await?.epoch;
    let t0 = Instant::now();
    let mut killed = Vec::new();
    // Kill it until the primary gives up (the second failure with
    // max_restarts = 1); each kill waits for the restarted process.
    while killed.len() < 4 {
        // B restarts its run when it promotes: unreachable for a moment.
        if matches!(fx.nodes[1].status().await, Ok(st) if st.is_writable_primary()) {
            break;
        }
        let pid: i32 = match std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(p) if !killed.contains(&p) => p,
            _ => {
                anyhow::ensure!(
                    t0.elapsed() < Duration::from_secs(30),
                    "no new service process on a: {}",
                    fx.resources_of(0).await
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        fx.say(&format!("kill -9 of a's service (pid {pid})"));
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        killed.push(pid);
    }
    let st = fx.nodes[1]
        .wait_for(
            "b promoted by a's hand-over",
            Duration::from_secs(40),
            |st| st.is_writable_primary() && st.epoch > epoch,
        )
        .await?;
    let promoted = t0.elapsed();
    // Two monitor periods, a restart and a hand-over: seconds, not the
    // 20 s start_timeout a process that died while starting once cost.
    anyhow::ensure!(
        promoted < Duration::from_secs(15),
        "a handed over {promoted:?} after the first kill"
    );
    anyhow::ensure!(
        killed.len() == 2,
        "a handed over after {} kills, not 2 (max_restarts = 1)",
        killed.len()
    );
    let served = fx.wait_served_by(1, t0, Duration::from_secs(30)).await? - t0;
    let reason = match fx.nodes[0].status().await?.resources {
        Some(r) => r.takeover_reason,
        None => None,
    };
    let reason_b = st.resources.and_then(|r| r.takeover_reason);
    fx.say(&format!(
        "a handed over after 2 failures: b promoted +{} ms, served +{} ms; a says: {reason:?}; b says: {reason_b:?}",
        promoted.as_millis(),
        served.as_millis()
    ));
    let reason = reason.or(reason_b).unwrap_or_default();
    anyhow::ensure!(
        reason.contains("web"),
        "no takeover reason naming the failed resource in a's status: {reason:?}"
    );
    fx.healthy(1).await?;
    fx.finish().await
}

/// A service that ignores SIGTERM for 5 s and holds a lock both nodes'
/// services need: started under `flock -n` (CONFLICT in the journal if
/// the other node still holds it), its start and its SIGTERM written with
/// timestamps. stop_timeout 2 s: the stop escalates to SIGKILL.
fn stubborn(_i: usize) -> String {
    r#"
[[resource]]
name = "vip"
kind = "vip"
address = "{VIP}/24"
interface = "{IFACE}"
stop_timeout = "1s"

[[resource]]
name = "stubborn"
kind = "service"
command = "exec sh {EX}/stubborn.sh {NODE} {DIR}/lock {DIR}/journal"
stop_timeout = "2s"
kill_timeout = "1s"
monitor_interval = "500ms"
"#
    .to_string()
}

const STUBBORN_SH: &str = r#"#!/bin/sh
# A service whose stop is slow: it ignores SIGTERM for 5 s, and it needs an
# exclusive lock that the other node's copy needs too.
node=$1 lock=$2 journal=$3
now() { date +%s.%N; }
exec 9>>"$lock"
if ! flock -n 9; then
  echo "$(now) $node CONFLICT" >> "$journal"
  exit 1
fi
echo "$(now) $node start" >> "$journal"
trap 'echo "$(now) $node term" >> "$journal"; sleep 5; echo "$(now) $node exit" >> "$journal"; exit 0' TERM
while :; do sleep 0.1; done
"#;

/// One line of the journal.
#[derive(Debug)]
struct Entry {
    t: f64,
    node: String,
    what: String,
}

fn journal(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Entry {
                t: w.next()?.parse().ok()?,
                node: w.next()?.to_string(),
                what: w.next()?.to_string(),
            })
        })
        .collect()
}

/// The journal's safety: no CONFLICT, and every start of one node comes
/// after the other's SIGTERM + the stop's wait (stop_timeout), never before.
fn check_journal(j: &[Entry], stop_timeout: f64) -> Result<()> {
    if let Some(e) = j.iter().find(|e| e.what == "CONFLICT") {
        bail!(
            "CONFLICT: {} could not take the lock (journal: {j:?})",
            e.node
        );
    }
    for (k, e) in j.iter().enumerate() {
        if e.what != "start" {
            continue;
        }
        // The other node's last start before this one must have been
        // stopped: its term at least stop_timeout earlier (the SIGKILL), or
        // its exit earlier.
        let other_start = j[..k]
            .iter()
            .rposition(|x| x.what == "start" && x.node != e.node);
        if let Some(os) = other_start {
            let o = &j[os];
            let term = j[os..k]
                .iter()
                .find(|x| x.node == o.node && x.what == "term");
            if let Some(t) = term {
                let exited = j[os..k]
                    .iter()
                    .any(|x| x.node == o.node && x.what == "exit");
                anyhow::ensure!(
                    exited || e.t - t.t >= stop_timeout - 0.05,
                    "{} started {:.3} s after {}'s SIGTERM, before its stop_timeout ({stop_timeout} s) ran out (journal: {j:?})",
                    e.node,
                    e.t - t.t,
                    o.node
                );
            }
        }
    }
    Ok(())
}

#[test]
fn the_journal_check_finds_a_raced_stop() {
    let e = |t: f64, node: &str, what: &str| Entry {
        t,
        node: node.into(),
        what: what.into(),
    };
    let good = [
        e(0.0, "a", "start"),
        e(1.0, "a", "term"),
        e(3.1, "b", "start"),
    ];
    assert!(check_journal(&good, 2.0).is_ok());
    let raced = [
        e(0.0, "a", "start"),
        e(1.0, "a", "term"),
        e(1.5, "b", "start"),
    ];
    assert!(check_journal(&raced, 2.0).is_err());
    let conflict = [e(0.0, "a", "start"), e(0.5, "b", "CONFLICT")];
    assert!(check_journal(&conflict, 2.0).is_err());
}

/// The slow stop is waited for: on a graceful takeover (the old primary's
/// stop escalates to SIGKILL before the standby is told), on a self-fence
/// (the new primary waits the old one's stop bound) and on a host crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_ignores_sigterm_is_never_raced() -> Result<()> {
    let _one = SERIAL.lock().await;
    let Some(mut fx) = start_stubborn().await? else {
        return Ok(());
    };
    let jpath = fx.dir.join("journal");
    // Graceful takeover by B: A's stop takes its stop_timeout.
    let t0 = Instant::now();
    fx.say("hadr takeover by b");
    fx.takeover(1)?;
    let took = t0.elapsed();
    wait_journal(&jpath, "b", "start").await?;
    fx.healthy(1).await?;
    check_journal(&journal(&jpath), 2.0)?;
    fx.no_two_vips()?;
    anyhow::ensure!(
        took >= Duration::from_secs(2),
        "the takeover took {took:?}: the service's stop (SIGTERM ignored, SIGKILL after 2 s) was not waited for"
    );
    fx.say(&format!(
        "takeover with the stubborn service: {} ms",
        took.as_millis()
    ));
    // Self-fence of B: B's stop (SIGKILL after 2 s) ends before A starts.
    let epoch = fx.nodes[0].status().await?.epoch;
    fx.say("b cut from a and from the arbiter");
    let t1 = Instant::now();
    fx.net.cut("b", "a")?;
    fx.net.cut("b", "arb")?;
    fx.nodes[0]
        .wait_for("a promoted", Duration::from_secs(30), |st| {
            st.is_writable_primary() && st.epoch > epoch
        })
        .await?;
    let starts = journal(&jpath).iter().filter(|e| e.what == "start").count();
    wait_journal_count(&jpath, "start", starts + 1).await?;
    fx.say(&format!(
        "a started the service {} ms after the cut",
        t1.elapsed().as_millis()
    ));
    check_journal(&journal(&jpath), 2.0)?;
    fx.no_two_vips()?;
    fx.net.heal_all()?;
    fx.healthy(0).await?;
    // kill -9 of A's hadr: its guard stops the service (SIGTERM ignored,
    // SIGKILL after 2 s) while B waits A's stop bound.
    fx.crash(0, Crash::Hadr).await?;
    fx.reboot(0).await?;
    let j = journal(&jpath);
    check_journal(&j, 2.0)?;
    // The script needs 5 s after SIGTERM to exit by itself: with
    // stop_timeout 2 s every stop ended in the SIGKILL escalation.
    anyhow::ensure!(
        j.iter().filter(|e| e.what == "term").count() >= 2 && !j.iter().any(|e| e.what == "exit"),
        "expected two SIGTERMs, each escalated to SIGKILL: {j:?}"
    );
    for e in j {
        fx.say(&format!("journal: {:.3} {} {}", e.t, e.node, e.what));
    }
    fx.finish().await
}

/// The cluster for the stubborn service.
async fn start_stubborn() -> Result<Option<Fx>> {
    // The example's web server after it: Fx::start and crashes wait for
    // the client's answers through the VIP.
    Fx::start(Setup::Resources(|i| {
        let mut s = stubborn(i);
        s.push_str(
            r#"
[[resource]]
name = "web"
kind = "service"
command = "exec python3 {EX}/server.py --name {NODE} --port 8080 --www {EX}/www --db 'host=127.0.0.1 port=5432 user=app dbname=app connect_timeout=2'"
stop_timeout = "1s"
kill_timeout = "1s"
"#,
        );
        s
    }))
    .await
}

async fn wait_journal(path: &Path, node: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !journal(path)
        .iter()
        .any(|e| e.node == node && e.what == what)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no \"{node} {what}\" in the journal within 30 s: {:?}",
            journal(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn wait_journal_count(path: &Path, what: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while journal(path).iter().filter(|e| e.what == what).count() < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "fewer than {n} \"{what}\" in the journal within 30 s: {:?}",
            journal(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
