//! Stock PostgreSQL drivers writing through role switches, each configured
//! exactly as the README's "Clients and failover" section says: psql
//! (libpq), pgjdbc (Debian's `libpostgresql-jdbc-java`), psycopg 3 and
//! tokio-postgres. The external ones are the small programs of
//! `tests/clients/` (their line protocol is in tests/clients/README.md).
//!
//! Every scenario asserts that no acknowledged write is lost (every id whose
//! INSERT returned is on the final primary) and bounds the longest gap each
//! client sees between two acknowledged writes:
//!
//! - graceful takeovers (`hadr takeover`): under 1 s for every client, at
//!   every switch (`HADR_CLIENT_SWITCHES`, 3 by default);
//! - kill -9 of the primary, automatic failover through a file arbiter:
//!   under the measured failover time + 0.5 s (+ 1.5 s more under `CI=true`,
//!   a loaded 2-core machine); `HADR_CLIENT_FAILOVERS`, 1 by default.
//!
//! - a black-holed primary (its host's link dropped by nft, the server
//!   killed: a host crash, no FIN, no RST), in network namespaces: every
//!   client configured with the README's timeouts notices within a bound
//!   and reaches the new primary, while a psql without them (the control)
//!   is still hanging at the end.
//!
//! The scenarios run one at a time (a lock), so that their gaps are not
//! each other's load.
//!
//! A missing tool (java/javac, the pgjdbc jar, psycopg, psql) fails the test
//! with the package to install; it never passes silently. `.ci/run`
//! installs them.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The pgjdbc jar of Debian's libpostgresql-jdbc-java.
pub const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// One scenario at a time (each test takes it first).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The stock drivers, each with the connection string the README gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// libpq through one long psql session (tests/clients/psql_writer.sh).
    Psql,
    /// pgjdbc, extended protocol (server-side prepared after 5 executions).
    Pgjdbc,
    /// pgjdbc with `preferQueryMode=simple`.
    PgjdbcSimple,
    /// psycopg 3 (libpq underneath).
    Psycopg,
    /// tokio-postgres, in this process.
    TokioPostgres,
    /// hadr-client (crates/hadr-client), in this process: it reconnects,
    /// retries and resolves lost commits by itself, so its writer never
    /// reconnects on its own.
    HadrClient,
}

const ALL: [Driver; 6] = [
    Driver::Psql,
    Driver::Pgjdbc,
    Driver::PgjdbcSimple,
    Driver::Psycopg,
    Driver::TokioPostgres,
    Driver::HadrClient,
];

/// `host:port` of each node, in the order clients try them.
pub struct Hosts(pub Vec<(String, u16)>);

impl Hosts {
    /// libpq (psql, psycopg): the README's string.
    pub fn libpq(&self) -> String {
        format!(
            "{} user=app dbname=app target_session_attrs=read-write connect_timeout=2 keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 tcp_user_timeout=5000",
            self.host_port()
        )
    }

    /// `host=a,b port=p,q`.
    fn host_port(&self) -> String {
        let hosts: Vec<&str> = self.0.iter().map(|(h, _)| h.as_str()).collect();
        let ports: Vec<String> = self.0.iter().map(|(_, p)| p.to_string()).collect();
        format!("host={} port={}", hosts.join(","), ports.join(","))
    }

    /// tokio-postgres: the README's string (its `tcp_user_timeout` is in
    /// seconds, libpq's in milliseconds).
    pub fn tokio_postgres(&self) -> String {
        format!(
            "{} user=app dbname=app target_session_attrs=read-write connect_timeout=2 keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_retries=3 tcp_user_timeout=5",
            self.host_port()
        )
    }

    /// hadr-client: the README's string (less its `host_cache`).
    pub fn hadr_client(&self) -> String {
        format!(
            "{} user=app dbname=app connect_timeout=2 keepalives_idle=5 tcp_user_timeout=5000 statement_timeout=30s reroute_timeout=30s",
            self.host_port()
        )
    }

    /// pgjdbc: the README's URL.
    pub fn jdbc(&self, simple: bool) -> String {
        let hosts: Vec<String> = self.0.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        let mut url = format!(
            "jdbc:postgresql://{}/app?user=app&targetServerType=primary&connectTimeout=2&socketTimeout=10&tcpKeepAlive=true",
            hosts.join(",")
        );
        if simple {
            url.push_str("&preferQueryMode=simple");
        }
        // Local experiments, e.g. `&loadBalanceHosts=true`.
        if let Ok(more) = std::env::var("HADR_JDBC_EXTRA") {
            url.push_str(&more);
        }
        url
    }
}

/// Fail with the package to install when `ok` is false.
fn require(ok: bool, what: &str, package: &str) {
    assert!(
        ok,
        "{what} is missing: install {package} (.ci/run does); these tests never skip"
    );
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Compile PgjdbcWriter.java once per test binary; the class directory.
fn pgjdbc_classes() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        require(runs("java", &["-version"]), "java", "default-jdk-headless");
        require(
            runs("javac", &["-version"]),
            "javac",
            "default-jdk-headless",
        );
        require(
            Path::new(PGJDBC_JAR).exists(),
            PGJDBC_JAR,
            "libpostgresql-jdbc-java",
        );
        let dir = std::env::temp_dir().join(format!("hadr-pgjdbc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("javac")
            .args(["-d"])
            .arg(&dir)
            .args(["-cp", PGJDBC_JAR])
            .arg(clients_dir().join("PgjdbcWriter.java"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "javac failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

fn check_psycopg() {
    require(
        runs("python3", &["-c", "import psycopg"]),
        "python3 with psycopg 3",
        "python3 and `pip install 'psycopg[binary]==3.2.10'`",
    );
}

fn check_psql() {
    require(runs("psql", &["--version"]), "psql", "postgresql-client");
}

/// What a client saw: acknowledged ids with their time, and its errors.
#[derive(Default)]
pub struct Seen {
    /// (id, unix ms) of every acknowledged INSERT, in order.
    pub acks: Vec<(i64, f64)>,
    /// Error lines, with their time.
    pub errors: Vec<String>,
}

/// One running client.
pub struct Client {
    pub driver: Driver,
    seen: Arc<Mutex<Seen>>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    reader: Option<std::thread::JoinHandle<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The child's TMPDIR (psql_writer.sh's FIFOs), removed with it even
    /// when it was killed.
    _tmp: Option<tempfile::TempDir>,
}

impl Client {
    /// Start `driver` writing ids from `first` to the cluster `hosts`.
    pub fn start(driver: Driver, hosts: &Hosts, first: i64) -> Client {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let cmd = match driver {
            Driver::Psql => {
                check_psql();
                let mut c = Command::new("bash");
                c.arg(clients_dir().join("psql_writer.sh"))
                    .arg(hosts.libpq())
                    .arg(first.to_string());
                c
            }
            Driver::Pgjdbc | Driver::PgjdbcSimple => {
                let classes = pgjdbc_classes();
                let mut c = Command::new("java");
                c.arg("-cp")
                    .arg(format!("{}:{PGJDBC_JAR}", classes.display()))
                    .args(["-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                    .arg("PgjdbcWriter")
                    .arg(hosts.jdbc(driver == Driver::PgjdbcSimple))
                    .arg(first.to_string());
                c
            }
            Driver::Psycopg => {
                check_psycopg();
                let mut c = Command::new("python3");
                c.arg(clients_dir().join("psycopg_writer.py"))
                    .arg(hosts.libpq())
                    .arg(first.to_string());
                c
            }
            Driver::TokioPostgres | Driver::HadrClient => {
                let task = if driver == Driver::TokioPostgres {
                    tokio::spawn(tokio_writer(
                        hosts.tokio_postgres(),
                        first,
                        seen.clone(),
                        stop.clone(),
                    ))
                } else {
                    tokio::spawn(hadr_client_writer(
                        hosts.hadr_client(),
                        first,
                        seen.clone(),
                        stop.clone(),
                    ))
                };
                return Client {
                    driver,
                    seen,
                    child: None,
                    stdin: None,
                    reader: None,
                    task: Some(task),
                    stop,
                    _tmp: None,
                };
            }
        };
        Client::spawn(driver, cmd)
    }

    fn spawn(driver: Driver, mut cmd: Command) -> Client {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        // Its own process group, so that killing it also kills what it
        // started (psql_writer.sh's psql, which a black hole can keep
        // blocked for minutes).
        let tmp = tempfile::tempdir().ok();
        if let Some(t) = &tmp {
            cmd.env("TMPDIR", t.path());
        }
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let s2 = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.splitn(3, ' ');
                match (it.next(), it.next(), it.next()) {
                    (Some("ack"), Some(id), Some(ms)) => {
                        if let (Ok(id), Ok(ms)) = (id.parse(), ms.parse()) {
                            s2.lock().unwrap().acks.push((id, ms));
                        }
                    }
                    (Some("err"), _, _) => s2.lock().unwrap().errors.push(line),
                    _ => {}
                }
            }
        });
        Client {
            driver,
            seen,
            child: Some(child),
            stdin,
            reader: Some(reader),
            task: None,
            stop,
            _tmp: tmp,
        }
    }

    /// A psql writer with `conninfo` as given (not one of the README's).
    pub fn start_libpq_with(conninfo: &str, first: i64) -> Client {
        check_psql();
        let mut c = Command::new("bash");
        c.arg(clients_dir().join("psql_writer.sh"))
            .arg(conninfo)
            .arg(first.to_string());
        Client::spawn(Driver::Psql, c)
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.seen.lock().unwrap().acks.len()
    }

    /// Time of the last acknowledged write (unix ms).
    pub fn last_ack(&self) -> Option<f64> {
        self.seen.lock().unwrap().acks.last().map(|a| a.1)
    }

    /// Stop it (end of stdin; kill -9 after `grace`) and return what it saw.
    pub async fn stop(mut self, grace: Duration) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.stdin.take());
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(grace, t).await;
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + grace;
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            kill_group(&mut c);
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            kill_group(c);
            let _ = c.wait();
        }
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// kill -9 the process group of a client we started (its id is the group's).
fn kill_group(c: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(c.id()) {
        // SAFETY: kill(2) on the group of our own child, not reaped yet.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = c.kill();
}

/// The tokio-postgres writer: the same protocol, in process.
async fn tokio_writer(conn: String, first: i64, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut id = first;
    while !stop.load(Ordering::SeqCst) {
        let (c, task) = match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            Ok(x) => x,
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .errors
                    .push(format!("err {:.3} connect: {e}", unix_ms()));
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        tokio::spawn(task);
        let st = match c.prepare("INSERT INTO acked(id) VALUES ($1)").await {
            Ok(st) => st,
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .errors
                    .push(format!("err {:.3} {e}", unix_ms()));
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let mine = id;
            id += 1;
            match c.execute(&st, &[&mine]).await {
                Ok(_) => seen.lock().unwrap().acks.push((mine, unix_ms())),
                Err(e) => {
                    seen.lock()
                        .unwrap()
                        .errors
                        .push(format!("err {:.3} {e}", unix_ms()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    break;
                }
            }
        }
    }
}

/// The hadr-client writer: one client for the whole run. An error is a
/// statement the client could not carry through its reroute budget; the
/// writer records it and goes on with the same client.
async fn hadr_client_writer(
    conn: String,
    first: i64,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut client = loop {
        match hadr_client::Client::connect_str(&conn).await {
            Ok(c) => break c,
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .errors
                    .push(format!("err {:.3} connect: {e}", unix_ms()));
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut id = first;
    while !stop.load(Ordering::SeqCst) {
        let mine = id;
        id += 1;
        match client
            .execute("INSERT INTO acked(id) VALUES ($1)", &[&mine])
            .await
        {
            Ok(_) => seen.lock().unwrap().acks.push((mine, unix_ms())),
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .errors
                    .push(format!("err {:.3} {e}", unix_ms()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The longest interval without an acknowledged write between `from` and
/// `to` (unix ms), counting from `from` to the first ack and from the last
/// ack to `to`; and where it started.
fn longest_gap(acks: &[(i64, f64)], from: f64, to: f64) -> (f64, f64) {
    let mut prev = from;
    let mut best = (0.0, from);
    for &(_, t) in acks.iter().filter(|a| a.1 > from && a.1 <= to) {
        if t - prev > best.0 {
            best = (t - prev, prev);
        }
        prev = t;
    }
    if to - prev > best.0 {
        best = (to - prev, prev);
    }
    best
}

/// Wait until every client has `n` more acknowledged writes than in `base`.
async fn until_all_write(clients: &[Client], n: usize, what: &str) {
    let base: Vec<usize> = clients.iter().map(Client::acked).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lagging: Vec<Driver> = clients
            .iter()
            .zip(&base)
            .filter(|(c, b)| c.acked() < *b + n)
            .map(|(c, _)| c.driver)
            .collect();
        if lagging.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {lagging:?} wrote fewer than {n} rows in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start one client of each driver (ids 1e9 apart).
/// `HADR_CLIENT_COPIES` (default 1) clients of each driver, or only the
/// drivers named in `HADR_CLIENT_DRIVERS` (e.g. `Pgjdbc,Psql`) for local
/// runs that hunt one driver's problem.
fn start_all(hosts: &Hosts) -> Vec<Client> {
    let only = std::env::var("HADR_CLIENT_DRIVERS").unwrap_or_default();
    let drivers: Vec<Driver> = ALL
        .into_iter()
        .filter(|d| only.is_empty() || only.split(',').any(|o| o == format!("{d:?}")))
        .collect();
    let copies = env_count("HADR_CLIENT_COPIES", 1) as i64;
    let mut v = Vec::new();
    for copy in 0..copies {
        for (i, d) in drivers.iter().enumerate() {
            let first = (copy * ALL.len() as i64 + i as i64 + 1) * 100_000_000;
            v.push(Client::start(*d, hosts, first));
        }
    }
    v
}

/// Stop the clients; every acknowledged id must be on `primary`.
async fn stop_and_check(clients: Vec<Client>, primary: &Server) -> Vec<(Driver, Seen)> {
    let mut all = Vec::new();
    for c in clients {
        let d = c.driver;
        all.push((d, c.stop(Duration::from_secs(20)).await));
    }
    let c = primary.client().await.unwrap();
    let present = acked_ids(&c).await.unwrap();
    for (d, seen) in &all {
        let want: BTreeSet<i64> = seen.acks.iter().map(|a| a.0).collect();
        let lost: Vec<_> = want.difference(&present).take(10).collect();
        assert!(
            lost.is_empty(),
            "{d:?}: acknowledged writes missing on the final primary: {lost:?}\nerrors: {:?}",
            seen.errors
        );
    }
    all
}

/// A switch: when it began and ended (unix ms), and its name.
struct Switch {
    began: f64,
    ended: f64,
    what: String,
}

/// Check each client's longest gap around each switch against `bound(switch)`
/// (ms); `end`: when the clients were told to stop (unix ms).
fn check_gaps(
    all: &[(Driver, Seen)],
    switches: &[Switch],
    end: f64,
    bound: impl Fn(Driver, &Switch) -> f64,
) {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (i, sw) in switches.iter().enumerate() {
        // The window: from a second before the switch to the next one (or
        // to the stop); every client was seen writing again within it.
        let to = switches.get(i + 1).map(|n| n.began).unwrap_or(end);
        let from = sw.began - 1000.0;
        for (d, seen) in all {
            let b = bound(*d, sw);
            let (gap, at) = longest_gap(&seen.acks, from, to);
            report.push_str(&format!(
                "{}: {d:?} longest gap {gap:.0} ms (from {:+.0} ms of the switch; bound {b:.0} ms)\n",
                sw.what,
                at - sw.began
            ));
            if gap >= b {
                let errs: Vec<&String> = seen
                    .errors
                    .iter()
                    .filter(|e| {
                        e.split(' ')
                            .nth(1)
                            .and_then(|t| t.parse::<f64>().ok())
                            .is_some_and(|t| t >= from && t <= to)
                    })
                    .take(8)
                    .collect();
                failures.push(format!(
                    "{}: {d:?} saw a gap of {gap:.0} ms (bound {b:.0}); its errors then: {errs:#?}",
                    sw.what
                ));
            }
        }
    }
    // What the clients were told, by kind: the evidence of how each switch
    // looked from outside (57P01 from the old primary, 57P03, refusals…).
    for (d, seen) in all {
        let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
        for e in &seen.errors {
            let text: String = e
                .splitn(3, ' ')
                .nth(2)
                .unwrap_or("")
                .chars()
                .take(90)
                .collect();
            *kinds.entry(text).or_default() += 1;
        }
        for (k, n) in kinds {
            report.push_str(&format!("{d:?} error x{n}: {k}\n"));
        }
    }
    eprint!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A primary and a standby in PEER, optionally sharing a file arbiter.
struct Pair {
    nodes: [Server; 2],
    _tmp: tempfile::TempDir,
}

async fn pair(arbiter: bool) -> Result<Pair> {
    let tmp = tempfile::tempdir()?;
    let locals = [repl_addr(), repl_addr()];
    let mut extra: Vec<String> = Vec::new();
    if arbiter {
        let lease = format!("file:{}", tmp.path().join("lease").display());
        extra.extend(
            [
                "--hadr-syncmode",
                "NEARSYNC",
                "--arbiter",
                &lease,
                "--lease-ttl",
                "2s",
                "--lease-margin",
                "500ms",
                "--min-promotion-interval",
                "5s",
            ]
            .map(String::from),
        );
    }
    // Local experiments: more server flags (e.g. `--hadr-syncmode SYNC`,
    // `--config resources.toml`).
    if let Ok(more) = std::env::var("HADR_CLIENT_SERVER_ARGS") {
        extra.extend(more.split_whitespace().map(String::from));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut aargs = hadr_args(&locals[0], &locals[1], &extra);
    aargs.extend(["--role".to_string(), "primary".to_string()]);
    let a = start_with(aargs)?;
    let bdir = tmp.path().join("b");
    clone_to(&locals[0], &bdir)?;
    let b = on_dir(bdir, &hadr_args(&locals[1], &locals[0], &extra))?;
    let p = Pair {
        nodes: [a, b],
        _tmp: tmp,
    };
    healthy(&p.nodes[0], arbiter).await?;
    p.nodes[0]
        .client()
        .await?
        .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY)")
        .await?;
    Ok(p)
}

/// `primary` writable with its standby in PEER (and the lease held, the
/// standby's start-up mark cleared, when there is an arbiter).
async fn healthy(primary: &Server, arbiter: bool) -> Result<Status> {
    primary
        .wait_for("PEER", Duration::from_secs(60), |st| {
            st.is_writable_primary()
                && st
                    .principal()
                    .is_some_and(|s| s.hadr_state == PairState::Peer)
                && (!arbiter
                    || st
                        .failover
                        .as_ref()
                        .is_some_and(|f| f.lease_left_ms > 0 && f.out_of_sync.is_empty()))
        })
        .await
}

fn hosts_of(p: &Pair) -> Hosts {
    Hosts(
        p.nodes
            .iter()
            .map(|n| ("127.0.0.1".to_string(), n.port))
            .collect(),
    )
}

fn takeover(node: &Server) -> Result<(), String> {
    let out = admin_cmd()
        .args(["takeover", "--timeout", "30s", "--node", &node.admin_addr()])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_drivers_write_through_graceful_takeovers_with_gaps_under_a_second() -> Result<()> {
    let _one = SERIAL.lock().await;
    // Local experiments: HADR_CLIENT_ARBITER=1 runs the takeovers with
    // automatic failover on (a file arbiter).
    let arbiter = std::env::var("HADR_CLIENT_ARBITER").is_ok_and(|v| v == "1");
    let p = pair(arbiter).await?;
    let hosts = hosts_of(&p);
    let clients = start_all(&hosts);
    // JVM start-up and the first connections are not part of any gap.
    until_all_write(&clients, 20, "warm-up").await;
    let mut switches = Vec::new();
    let mut primary = 0usize;
    for round in 0..env_count("HADR_CLIENT_SWITCHES", 3) {
        healthy(&p.nodes[primary], arbiter).await?;
        until_all_write(&clients, 20, &format!("before switch {round}")).await;
        let standby = 1 - primary;
        let began = unix_ms();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match takeover(&p.nodes[standby]) {
                Ok(()) => break,
                // Leaving PEER between the check and the request (1 s
                // hadr_timeout, busy machine) is refused, correctly: retry.
                Err(e) if attempt < 3 && e.contains("PEER") => {
                    healthy(&p.nodes[primary], arbiter).await?;
                }
                Err(e) => panic!("round {round}: takeover failed: {e}"),
            }
        }
        let ended = unix_ms();
        eprintln!("switch {round}: takeover in {:.0} ms", ended - began);
        primary = standby;
        switches.push(Switch {
            began,
            ended,
            what: format!("takeover {round} (to node {primary})"),
        });
        until_all_write(&clients, 20, &format!("after switch {round}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = unix_ms();
    let all = stop_and_check(clients, &p.nodes[primary]).await;
    // Graceful: under 1 s for every client, every switch (the bound).
    check_gaps(&all, &switches, end, |_, _| 1000.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_drivers_write_through_a_primary_crash_and_automatic_failover() -> Result<()> {
    let _one = SERIAL.lock().await;
    let mut p = pair(true).await?;
    let hosts = hosts_of(&p);
    let clients = start_all(&hosts);
    until_all_write(&clients, 20, "warm-up").await;
    let mut switches = Vec::new();
    let mut primary = 0usize;
    let slack = if under_ci() { 2000.0 } else { 500.0 };
    for round in 0..env_count("HADR_CLIENT_FAILOVERS", 1) {
        healthy(&p.nodes[primary], true).await?;
        until_all_write(&clients, 20, &format!("before failover {round}")).await;
        let standby = 1 - primary;
        let before = p.nodes[standby].status().await?.epoch;
        let began = unix_ms();
        p.nodes[primary].kill9();
        p.nodes[standby]
            .wait_for("primary by itself", Duration::from_secs(30), |st| {
                st.is_writable_primary() && st.epoch > before
            })
            .await?;
        let ended = unix_ms();
        eprintln!(
            "failover {round}: node {standby} writable {:.0} ms after kill -9",
            ended - began
        );
        switches.push(Switch {
            began,
            ended,
            what: format!("failover {round} (to node {standby})"),
        });
        until_all_write(&clients, 20, &format!("after failover {round}")).await;
        // The old primary comes back as a standby by itself.
        p.nodes[primary].spawn()?;
        p.nodes[primary]
            .wait_for("a standby again", Duration::from_secs(60), |st| {
                st.role == NodeRole::Standby && st.follows()
            })
            .await?;
        primary = standby;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = unix_ms();
    let all = stop_and_check(clients, &p.nodes[primary]).await;
    // Forced: the failover itself (kill -9 to a writable new primary, as
    // polled) plus half a second for the client to find it.
    check_gaps(&all, &switches, end, |_, sw| sw.ended - sw.began + slack);
    Ok(())
}

/// libpq without the README's keepalive and user-timeout settings: the
/// control that shows what the settings prevent.
fn untuned_libpq(hosts: &Hosts) -> String {
    let full = hosts.libpq();
    let cut = full.find(" keepalives=1").unwrap_or(full.len());
    full[..cut].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_drivers_with_the_readme_timeouts_leave_a_black_holed_primary() -> Result<()> {
    use hadr_testkit::netns::{Cluster, HADR_PORT, PG_PORT};
    let _one = SERIAL.lock().await;
    let net = Cluster::new(&["a", "b"])?;
    let tmp = tempfile::tempdir()?;
    let lease = format!("file:{}", tmp.path().join("lease").display());
    let args = |me: &str, other: &str| {
        hadr_args(
            &net.addr(me, HADR_PORT),
            &net.addr(other, HADR_PORT),
            &[
                "--hadr-syncmode",
                "NEARSYNC",
                "--arbiter",
                &lease,
                "--lease-ttl",
                "2s",
                "--lease-margin",
                "500ms",
            ],
        )
    };
    let adir = tmp.path().join("a");
    init(&adir)?;
    let mut aargs = args("a", "b");
    aargs.extend(["--role".to_string(), "primary".to_string()]);
    let mut a = net.server(&hadr(), "a", adir, aargs);
    a.spawn()?;
    let bdir = tmp.path().join("b");
    clone_to(&net.addr("a", HADR_PORT), &bdir)?;
    let mut b = net.server(&hadr(), "b", bdir, args("b", "a"));
    b.spawn()?;
    healthy(&a, true).await?;
    a.client()
        .await?
        .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY)")
        .await?;
    let hosts = Hosts(vec![
        (net.ip("a").to_string(), PG_PORT),
        (net.ip("b").to_string(), PG_PORT),
    ]);
    let clients = start_all(&hosts);
    let control = Client::start_libpq_with(&untuned_libpq(&hosts), 9_000_000_000);
    until_all_write(&clients, 20, "warm-up").await;
    until_all_write(std::slice::from_ref(&control), 20, "warm-up (control)").await;
    let before = b.status().await?.epoch;
    // The host dies: nothing it sends arrives any more, and its server is gone.
    let began = unix_ms();
    net.black_hole("a")?;
    a.kill9();
    b.wait_for("primary by itself", Duration::from_secs(30), |st| {
        st.is_writable_primary() && st.epoch > before
    })
    .await?;
    eprintln!(
        "black hole: node b writable {:.0} ms after",
        unix_ms() - began
    );
    until_all_write(&clients, 20, "after the black hole").await;
    let ended = unix_ms();
    // The control has hung all along: without the settings, the kernel
    // retransmits to the dead host for about 15 minutes.
    let control_last = control.last_ack().unwrap_or(0.0);
    assert!(
        control_last < began + 1000.0,
        "the control (no keepalive, no tcp_user_timeout) wrote after the black hole: the test proves nothing"
    );
    drop(control);
    let end = unix_ms();
    let all = stop_and_check(clients, &b).await;
    // Each notices within its timeout (libpq and tokio-postgres
    // tcp_user_timeout 5 s, pgjdbc socketTimeout 10 s), then tries the dead
    // host (connect_timeout 2 s) and reaches the new primary.
    let switch = Switch {
        began,
        ended,
        what: "black-holed primary".into(),
    };
    // The kernel checks the user timeout when a retransmission timer
    // fires (backing off: 0.2, 0.4, 0.8, 1.6 s…), so a connection ends up
    // to a timer's period after the 5 s; 9.1 s was seen for 7 s of timeouts.
    let slack = if under_ci() { 5000.0 } else { 3000.0 };
    check_gaps(&all, &[switch], end, |d, _| match d {
        Driver::Pgjdbc | Driver::PgjdbcSimple => 10_000.0 + 2000.0 + slack,
        _ => 5000.0 + 2000.0 + slack,
    });
    Ok(())
}

/// A connection straight to one node whose driver task notes when the
/// server ended the connection.
async fn watched(conninfo: &str) -> Result<(tokio_postgres::Client, Arc<Mutex<Option<Instant>>>)> {
    let (c, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    let ended: Arc<Mutex<Option<Instant>>> = Arc::default();
    let e2 = ended.clone();
    tokio::spawn(async move {
        let _ = conn.await;
        *e2.lock().unwrap() = Some(Instant::now());
    });
    Ok((c, ended))
}

/// An error as `SQLSTATE message`, or the error itself.
fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// A statement running in the background: its outcome (SQLSTATE and
/// message on error) and when it came.
type InFlight = tokio::task::JoinHandle<(Result<(), String>, Instant)>;

/// A statement started on `c` in the background.
fn in_flight(c: tokio_postgres::Client, sql: &'static str) -> InFlight {
    tokio::spawn(async move {
        let r = c.batch_execute(sql).await;
        (r.map_err(|e| sqlstate(&e)), Instant::now())
    })
}

/// Statements that run for minutes unless interrupted (a recursive CTE
/// counting to 10^9), reading and writing.
const LONG_READ: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c";
const LONG_WRITE: &str = "INSERT INTO t(v) SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT x FROM c)";

/// Take over to `to` and check that each statement in flight on the old
/// primary failed, and each of its sessions was closed, within the
/// hand-over (+ 500 ms for a loaded machine).
async fn hand_over_ends_everything(
    to: &Server,
    statements: Vec<(&str, InFlight)>,
    sessions: Vec<(&str, Arc<Mutex<Option<Instant>>>)>,
) -> Result<()> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (what, h) in &statements {
        assert!(!h.is_finished(), "{what} finished before the takeover");
    }
    let began = Instant::now();
    takeover(to).map_err(anyhow::Error::msg)?;
    let took = began.elapsed();
    eprintln!("hand-over with busy sessions: {took:?}");
    let bound = took + Duration::from_millis(500);
    for (what, h) in statements {
        let (res, at) = h.await?;
        let err = match res {
            Ok(()) => panic!("{what} succeeded on the old primary"),
            Err(e) => e,
        };
        let after = at.saturating_duration_since(began);
        eprintln!("{what}: failed {after:?} after the request: {err}");
        // Reroutable: stock drivers drop the connection on 57P01.
        assert!(
            err.starts_with("57P01"),
            "{what} failed with {err}, not 57P01"
        );
        assert!(
            after <= bound,
            "{what} failed {after:?} after the takeover request; the hand-over took {took:?}: {err}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (what, end) in sessions {
        while end.lock().unwrap().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let at = end
            .lock()
            .unwrap()
            .map(|t| t.saturating_duration_since(began));
        let Some(at) = at else {
            panic!("the {what} session was never closed by the old primary")
        };
        eprintln!("{what} session closed {at:?} after the request");
        assert!(
            at <= bound,
            "the {what} session was closed {at:?} after the request; the hand-over took {took:?}"
        );
    }
    Ok(())
}

/// The issue's measured defect ("one insert hung about 15 s, then FATAL
/// 57P01 from the old primary"), as a property: a session in any state at
/// the moment of a hand-over is ended by the hand-over itself, not later:
/// idle; idle inside a write transaction (it holds the write lock); queued
/// for the write lock; running a long read; running a long write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_of_the_old_primary_ends_within_the_hand_over() -> Result<()> {
    let _one = SERIAL.lock().await;
    let p = pair(false).await?;
    let [a, b] = &p.nodes;
    a.client()
        .await?
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
        .await?;
    healthy(a, false).await?;
    // Round 1, A to B: idle, idle in a write transaction, queued, long read.
    let (_idle, idle_end) = watched(&a.conninfo()).await?;
    let (x, x_end) = watched(&a.conninfo()).await?;
    x.batch_execute("BEGIN; INSERT INTO t(v) VALUES (1)")
        .await?;
    let (q, q_end) = watched(&a.conninfo()).await?;
    let queued = in_flight(q, "INSERT INTO t(v) VALUES (2)");
    let (r, r_end) = watched(&a.conninfo()).await?;
    let read = in_flight(r, LONG_READ);
    hand_over_ends_everything(
        b,
        vec![("the queued write", queued), ("the long read", read)],
        vec![
            ("idle", idle_end),
            ("idle in a write transaction", x_end),
            ("queued", q_end),
            ("long read", r_end),
        ],
    )
    .await?;
    // Round 2, B to A: a long write holding the write lock while it runs.
    healthy(b, false).await?;
    let (w, w_end) = watched(&b.conninfo()).await?;
    let write = in_flight(w, LONG_WRITE);
    hand_over_ends_everything(
        a,
        vec![("the long write", write)],
        vec![("long write", w_end)],
    )
    .await
}
