//! The clients of the client-gap part: one writer per driver, each
//! configured with the connection string the README's "Clients and
//! failover" section gives (both hosts, the driver's primary-only option,
//! connect timeout, keepalives, user or socket timeout).
//!
//! The external drivers run the writers of `tests/clients/` (written for
//! tests/stock_clients.rs; their line protocol is in tests/clients/README.md):
//! `ack <id> <unix_ms>` for every acknowledged autocommit INSERT, `err
//! <unix_ms> <text>` for every error, after which the writer reconnects.
//! tokio-postgres runs in this process with the same behaviour.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::proc;

/// Debian's libpostgresql-jdbc-java.
pub const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";
/// The psycopg release .ci/run installs for tests/stock_clients.rs.
pub const PSYCOPG_PIN: &str = "psycopg[binary]==3.2.10";
/// Error lines kept per client (the rest are counted): a client that
/// cannot connect for a minute prints thousands.
const ERRORS_KEPT: usize = 2000;

/// The drivers measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// libpq through one long-lived psql session (tests/clients/psql_writer.sh).
    Libpq,
    /// pgjdbc (tests/clients/PgjdbcWriter.java), extended protocol.
    Pgjdbc,
    /// psycopg 3 (tests/clients/psycopg_writer.py), libpq underneath.
    Psycopg,
    /// tokio-postgres, in this process.
    TokioPostgres,
    /// hadr-client (crates/hadr-client), in this process; hadr only (it
    /// sets hadr's commit tokens, which PostgreSQL does not know).
    HadrClient,
}

/// Every driver, in the report's order.
pub const DRIVERS: [Driver; 5] = [
    Driver::Libpq,
    Driver::Pgjdbc,
    Driver::Psycopg,
    Driver::TokioPostgres,
    Driver::HadrClient,
];

/// The stock drivers (any PostgreSQL-protocol server).
pub const STOCK_DRIVERS: [Driver; 4] = [
    Driver::Libpq,
    Driver::Pgjdbc,
    Driver::Psycopg,
    Driver::TokioPostgres,
];

impl Driver {
    pub fn label(self) -> &'static str {
        match self {
            Driver::Libpq => "libpq (psql)",
            Driver::Pgjdbc => "pgjdbc",
            Driver::Psycopg => "psycopg 3",
            Driver::TokioPostgres => "tokio-postgres",
            Driver::HadrClient => "hadr-client",
        }
    }
}

/// `host:port` of each node, in the order the clients list them.
#[derive(Clone, Debug)]
pub struct Hosts(pub Vec<(String, u16)>);

impl Hosts {
    fn hosts_ports(&self) -> (String, String) {
        let hosts: Vec<&str> = self.0.iter().map(|(h, _)| h.as_str()).collect();
        let ports: Vec<String> = self.0.iter().map(|(_, p)| p.to_string()).collect();
        (hosts.join(","), ports.join(","))
    }

    /// libpq and psycopg: the README's string (user and database are the
    /// benchmark's).
    pub fn libpq(&self) -> String {
        let (h, p) = self.hosts_ports();
        format!(
            "host={h} port={p} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2 \
             keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 tcp_user_timeout=5000"
        )
    }

    /// tokio-postgres: the README's string (`tcp_user_timeout` in seconds).
    pub fn tokio_postgres(&self) -> String {
        let (h, p) = self.hosts_ports();
        format!(
            "host={h} port={p} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2 \
             keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_retries=3 tcp_user_timeout=5"
        )
    }

    /// pgjdbc: the README's URL.
    pub fn jdbc(&self) -> String {
        let hosts: Vec<String> = self.0.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!(
            "jdbc:postgresql://{}/postgres?user=postgres&targetServerType=primary&connectTimeout=2&socketTimeout=10&tcpKeepAlive=true",
            hosts.join(",")
        )
    }

    /// hadr-client: the README's string, less its `host_cache`.
    pub fn hadr_client(&self) -> String {
        let (h, p) = self.hosts_ports();
        format!(
            "host={h} port={p} user=postgres dbname=postgres connect_timeout=2 keepalives_idle=5 \
             tcp_user_timeout=5000 statement_timeout=30s reroute_timeout=30s"
        )
    }

    pub fn conninfo(&self, d: Driver) -> String {
        match d {
            Driver::Libpq | Driver::Psycopg => self.libpq(),
            Driver::Pgjdbc => self.jdbc(),
            Driver::TokioPostgres => self.tokio_postgres(),
            Driver::HadrClient => self.hadr_client(),
        }
    }
}

pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// What a client saw.
#[derive(Default)]
pub struct Seen {
    /// (id, unix ms) of every acknowledged INSERT, in order. Unbounded on
    /// purpose: the gap needs every one; a full run is a few hundred
    /// thousand per client.
    pub acks: Vec<(i64, f64)>,
    /// Error lines (the first [`ERRORS_KEPT`]) and how many there were.
    pub errors: Vec<(f64, String)>,
    pub error_count: u64,
}

impl Seen {
    fn error(&mut self, at: f64, text: String) {
        self.error_count += 1;
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push((at, text));
        }
    }
}

fn lock(m: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the writers of tests/clients/ are, and the compiled pgjdbc one.
pub struct Programs {
    pub clients_dir: PathBuf,
    pub classes: PathBuf,
    /// Where each writer's standard error goes (`<driver>.stderr`).
    pub log_dir: PathBuf,
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Programs {
    /// Checks every driver's tools and compiles PgjdbcWriter.java into
    /// `work`; the versions for the report.
    pub fn prepare(root: &Path, work: &Path) -> Result<(Programs, Vec<(String, String)>)> {
        let clients_dir = root.join("tests/clients");
        for f in ["psql_writer.sh", "PgjdbcWriter.java", "psycopg_writer.py"] {
            if !clients_dir.join(f).is_file() {
                bail!("{} is missing", clients_dir.join(f).display());
            }
        }
        if !runs("java", &["-version"]) || !runs("javac", &["-version"]) {
            bail!(
                "the client-gap part needs java and javac (apt-get install default-jdk-headless)"
            );
        }
        if !Path::new(PGJDBC_JAR).exists() {
            bail!(
                "the client-gap part needs {PGJDBC_JAR} (apt-get install libpostgresql-jdbc-java)"
            );
        }
        let psycopg = proc::run(
            Command::new("python3").args(["-c", "import psycopg; print(psycopg.__version__)"]),
            Duration::from_secs(30),
            "psycopg version",
        )?;
        if !psycopg.status.success() {
            bail!("the client-gap part needs psycopg 3: pip install '{PSYCOPG_PIN}'");
        }
        let classes = work.join("pgjdbc-classes");
        std::fs::create_dir_all(&classes)
            .with_context(|| format!("creating {}", classes.display()))?;
        proc::run_ok(
            Command::new("javac")
                .arg("-d")
                .arg(&classes)
                .args(["-cp", PGJDBC_JAR])
                .arg(clients_dir.join("PgjdbcWriter.java")),
            Duration::from_secs(180),
            "javac PgjdbcWriter.java",
        )?;
        let java = proc::run(
            Command::new("java").arg("-version"),
            Duration::from_secs(30),
            "java -version",
        )?;
        let java_version = java.stderr.lines().next().unwrap_or("").trim().to_string();
        let jar = proc::run(
            Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libpostgresql-jdbc-java"]),
            Duration::from_secs(10),
            "dpkg-query",
        )
        .ok()
        .filter(|o| o.status.success() && !o.stdout.trim().is_empty())
        .map(|o| format!("{} (Debian's libpostgresql-jdbc-java)", o.stdout.trim()))
        .unwrap_or_else(|| PGJDBC_JAR.to_string());
        let psql = proc::run(
            Command::new("psql").arg("--version"),
            Duration::from_secs(10),
            "psql --version",
        )?;
        let versions = vec![
            ("psql".to_string(), psql.stdout.trim().to_string()),
            ("pgjdbc".to_string(), jar),
            ("java".to_string(), java_version),
            ("psycopg".to_string(), psycopg.stdout.trim().to_string()),
            (
                "tokio-postgres".to_string(),
                "0.7 (this program)".to_string(),
            ),
        ];
        Ok((
            Programs {
                clients_dir,
                classes,
                log_dir: work.to_path_buf(),
            },
            versions,
        ))
    }
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
}

impl Client {
    /// Starts `driver` writing ids from `first` on, pausing `pause_ms`
    /// after each acknowledged write.
    pub fn start(
        rt: &Handle,
        progs: &Programs,
        driver: Driver,
        hosts: &Hosts,
        first: i64,
        pause_ms: u64,
    ) -> Result<Client> {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let conn = hosts.conninfo(driver);
        let mut cmd = match driver {
            Driver::Libpq => {
                let mut c = Command::new("bash");
                c.arg(progs.clients_dir.join("psql_writer.sh"));
                c
            }
            Driver::Pgjdbc => {
                let mut c = Command::new("java");
                c.arg("-cp")
                    .arg(format!("{}:{PGJDBC_JAR}", progs.classes.display()))
                    // A small JVM: five clients and two servers share two cores.
                    .args(["-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                    .arg("PgjdbcWriter");
                c
            }
            Driver::Psycopg => {
                let mut c = Command::new("python3");
                c.arg(progs.clients_dir.join("psycopg_writer.py"));
                c
            }
            Driver::TokioPostgres | Driver::HadrClient => {
                let task = if driver == Driver::TokioPostgres {
                    rt.spawn(tokio_writer(
                        conn,
                        first,
                        pause_ms,
                        seen.clone(),
                        stop.clone(),
                    ))
                } else {
                    rt.spawn(hadr_client_writer(
                        conn,
                        first,
                        pause_ms,
                        seen.clone(),
                        stop.clone(),
                    ))
                };
                return Ok(Client {
                    driver,
                    seen,
                    child: None,
                    stdin: None,
                    reader: None,
                    task: Some(task),
                    stop,
                });
            }
        };
        let err_path = progs.log_dir.join(format!("{driver:?}.stderr"));
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&err_path)
            .with_context(|| format!("opening {}", err_path.display()))?;
        cmd.arg(&conn)
            .arg(first.to_string())
            .arg(pause_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err);
        let mut child = proc::spawn(&mut cmd)?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            bail!("{}: no stdout", driver.label());
        };
        let s2 = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.splitn(3, ' ');
                match (it.next(), it.next(), it.next()) {
                    (Some("ack"), Some(id), Some(ms)) => {
                        if let (Ok(id), Ok(ms)) = (id.parse(), ms.parse()) {
                            lock(&s2).acks.push((id, ms));
                        }
                    }
                    (Some("err"), Some(ms), rest) => {
                        let at = ms.parse().unwrap_or_else(|_| unix_ms());
                        lock(&s2).error(at, rest.unwrap_or("").to_string());
                    }
                    _ => {}
                }
            }
        });
        Ok(Client {
            driver,
            seen,
            child: Some(child),
            stdin,
            reader: Some(reader),
            task: None,
            stop,
        })
    }

    /// Whether the client has an acknowledged write later than `t` (unix ms).
    pub fn acked_after(&self, t: f64) -> bool {
        lock(&self.seen).acks.last().is_some_and(|a| a.1 > t)
    }

    /// Whether the process (or task) is still running.
    pub fn alive(&mut self) -> bool {
        match (&mut self.child, &self.task) {
            (Some(c), _) => c.try_wait().ok().flatten().is_none(),
            (None, Some(t)) => !t.is_finished(),
            _ => false,
        }
    }

    /// The acknowledgement times (unix ms) from `from` on, with the last
    /// one before it.
    pub fn acks_since(&self, from: f64) -> Vec<f64> {
        let s = lock(&self.seen);
        let i = s.acks.partition_point(|a| a.1 <= from);
        s.acks[i.saturating_sub(1)..].iter().map(|a| a.1).collect()
    }

    /// Errors between `from` and `to` (unix ms): how many, and the first.
    pub fn errors_between(&self, from: f64, to: f64) -> (u64, Option<String>) {
        let s = lock(&self.seen);
        let mut it = s.errors.iter().filter(|e| e.0 >= from && e.0 <= to);
        let first = it.next().map(|e| e.1.clone());
        (u64::from(first.is_some()) + it.count() as u64, first)
    }

    /// Stops it (end of stdin; kill after `grace`) and returns what it saw.
    pub fn stop(mut self, rt: &Handle, grace: Duration) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.stdin.take());
        if let Some(t) = self.task.take() {
            let _ = rt.block_on(async { tokio::time::timeout(grace, t).await });
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + grace;
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *lock(&self.seen))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The tokio-postgres writer: the protocol of tests/clients/, in process.
async fn tokio_writer(
    conn: String,
    first: i64,
    pause_ms: u64,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut id = first;
    while !stop.load(Ordering::SeqCst) {
        let (c, task) = match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            Ok(x) => x,
            Err(e) => {
                lock(&seen).error(unix_ms(), format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let driver = tokio::spawn(task);
        match c.prepare("INSERT INTO acked(id) VALUES ($1)").await {
            Ok(st) => {
                while !stop.load(Ordering::SeqCst) {
                    let mine = id;
                    id += 1;
                    match c.execute(&st, &[&mine]).await {
                        Ok(_) => {
                            lock(&seen).acks.push((mine, unix_ms()));
                            if pause_ms > 0 {
                                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                            }
                        }
                        Err(e) => {
                            lock(&seen).error(unix_ms(), e.to_string());
                            break;
                        }
                    }
                }
            }
            Err(e) => lock(&seen).error(unix_ms(), e.to_string()),
        }
        driver.abort();
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The hadr-client writer: one long-lived client, which reroutes by
/// itself; an error it returns (its budget spent) is noted and the next
/// write goes through the same client.
async fn hadr_client_writer(
    conn: String,
    first: i64,
    pause_ms: u64,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut id = first;
    while !stop.load(Ordering::SeqCst) {
        let mut c = match hadr_client::Client::connect_str(&conn).await {
            Ok(c) => c,
            Err(e) => {
                lock(&seen).error(unix_ms(), format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let mine = id;
            id += 1;
            match c
                .execute("INSERT INTO acked(id) VALUES ($1)", &[&mine])
                .await
            {
                Ok(_) => {
                    lock(&seen).acks.push((mine, unix_ms()));
                    if pause_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    }
                }
                Err(e) => {
                    lock(&seen).error(unix_ms(), e.to_string());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
