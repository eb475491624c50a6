//! The servers under test. Each target knows how to start itself in a
//! throwaway directory, how to reach it, how to load the benchmark schema,
//! and how to stop; `Drop` stops it too, so an error anywhere still cleans up.
//!
//! A new target (say, a replicated hadr pair) is one more implementation of
//! [`Target`] and one more entry in [`TargetKind`].

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::proc;

/// Rows in `accounts`; the pgbench script draws aid from 1..=ACCOUNTS.
pub const ACCOUNTS: u32 = 100_000;

/// Width of `accounts.filler`, as in pgbench's own accounts table.
const FILLER_WIDTH: usize = 84;

/// How a client reaches a target.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

impl ConnInfo {
    /// libpq command-line arguments: `-h HOST -p PORT -U USER` (the database
    /// name is passed separately, as psql and pgbench place it differently).
    pub fn args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.host.clone(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            self.user.clone(),
        ]
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.user, self.dbname
        )
    }
}

/// A server under test.
pub trait Target {
    /// Short name used in tables, file names and the plot ("postgres", "hadr").
    fn name(&self) -> &str;
    /// One-line version string of the server.
    fn version(&self) -> Result<String>;
    /// Creates the server's data directory and starts it; returns once it
    /// accepts connections.
    fn start(&mut self) -> Result<()>;
    /// Where clients connect.
    fn conninfo(&self) -> ConnInfo;
    /// Statements that create and fill the benchmark tables, each run on its own.
    fn setup_sql(&self) -> Vec<String>;
    /// Whether the server process still runs (`None` when it cannot be told).
    fn alive(&mut self) -> Option<bool>;
    /// Anything odd in the server's own log, for the report.
    fn log_findings(&self) -> Vec<String>;
    /// The server's own log file.
    fn server_log(&self) -> PathBuf;
    /// Stops the server and removes its data. Idempotent.
    fn stop(&mut self) -> Result<()>;
}

/// The kinds of target the program knows, in the order they are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Hadr,
}

static STOP_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether some target could not be stopped (its directory is then kept).
pub fn stop_failed() -> bool {
    STOP_FAILED.load(Ordering::SeqCst)
}

/// Records that a server could not be stopped, so its directory is kept.
pub fn mark_stop_failed() {
    STOP_FAILED.store(true, Ordering::SeqCst);
}

/// `n` distinct TCP ports nobody listens on right now (never 5432): the
/// probe sockets are all held open until every port is chosen.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").context("binding a probe socket on 127.0.0.1")?;
        let port = l.local_addr()?.port();
        if port != 5432 && !ports.contains(&port) {
            ports.push(port);
        }
        held.push(l);
        if held.len() > n + 20 {
            bail!("could not find {n} free TCP ports");
        }
    }
    Ok(ports)
}

/// A command for one of PostgreSQL's programs in `bindir`, run as the
/// `postgres` user when we are root (initdb and postgres refuse to run as root).
pub(crate) fn pg_command(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    if am_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// Makes `dir` (or a file: the server refuses a key it does not own)
/// owned by the `postgres` user when we are root.
pub(crate) fn chown_to_postgres(dir: &Path) -> Result<()> {
    if !am_root() {
        return Ok(());
    }
    let out = proc::run_ok(
        Command::new("id").args(["-u", "postgres"]),
        Duration::from_secs(10),
        "id -u postgres",
    )
    .context("the `postgres` user is needed to run the PostgreSQL server as non-root")?;
    let uid: u32 = out
        .stdout
        .trim()
        .parse()
        .context("parsing the uid of `postgres`")?;
    std::os::unix::fs::chown(dir, Some(uid), None)
        .with_context(|| format!("chown postgres {}", dir.display()))
}

/// The benchmark schema and its accounts rows, for PostgreSQL.
pub(crate) fn postgres_setup_sql() -> Vec<String> {
    vec![
        "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler TEXT)".into(),
        "CREATE TABLE history(hid SERIAL PRIMARY KEY, aid INTEGER, delta INTEGER, mtime TEXT)".into(),
        format!(
            "INSERT INTO accounts SELECT i, 1, 0, repeat(' ', {FILLER_WIDTH}) FROM generate_series(1, {ACCOUNTS}) AS i"
        ),
        "VACUUM ANALYZE accounts".into(),
        "CHECKPOINT".into(),
    ]
}

/// The same schema and rows for hadr (SQLite underneath: no generate_series,
/// and an INTEGER PRIMARY KEY numbers itself).
pub(crate) fn hadr_setup_sql() -> Vec<String> {
    let filler = " ".repeat(FILLER_WIDTH);
    vec![
        "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler TEXT)".into(),
        "CREATE TABLE history(hid INTEGER PRIMARY KEY, aid INTEGER, delta INTEGER, mtime TEXT)".into(),
        format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<{ACCOUNTS}) \
             INSERT INTO accounts SELECT i, 1, 0, '{filler}' FROM s"
        ),
    ]
}

/// A TCP port nobody listens on right now (never 5432).
pub fn free_port() -> Result<u16> {
    for _ in 0..20 {
        let l = TcpListener::bind("127.0.0.1:0").context("binding a probe socket on 127.0.0.1")?;
        let port = l.local_addr()?.port();
        if port != 5432 {
            return Ok(port);
        }
    }
    bail!("could not find a free TCP port")
}

/// Runs statements through psql (`-c` each, so each is its own transaction)
/// and returns psql's unaligned, tuples-only output.
pub fn psql(conn: &ConnInfo, sql: &[String], timeout: Duration) -> Result<String> {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(conn.args())
        .args(["-d", &conn.dbname]);
    for s in sql {
        cmd.arg("-c").arg(s);
    }
    cmd.env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "hadr-bench");
    let short = sql
        .first()
        .map(|s| s.chars().take(60).collect::<String>())
        .unwrap_or_default();
    let out = proc::run(&mut cmd, timeout, &format!("psql ({short}...)"))?;
    if !out.status.success() {
        bail!(
            "psql failed against {conn} ({}):\n{}",
            out.status,
            out.message()
        );
    }
    Ok(out.stdout)
}

/// Polls until `psql -c 'select 1'` succeeds, the process dies, or `timeout`.
pub(crate) fn wait_ready(
    conn: &ConnInfo,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    let addr: SocketAddr = format!("{}:{}", conn.host, conn.port).parse()?;
    let mut last_err = String::from("no attempt yet");
    while start.elapsed() < timeout {
        proc::check_interrupted()?;
        alive()?;
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => match psql(conn, &["select 1".into()], Duration::from_secs(10)) {
                Ok(out) if out.trim() == "1" => return Ok(()),
                Ok(out) => last_err = format!("select 1 returned {out:?}"),
                Err(e) => last_err = format!("{e:#}"),
            },
            Err(e) => last_err = format!("connect to {addr}: {e}"),
        }
        proc::sleep(Duration::from_millis(200))?;
    }
    bail!(
        "server at {addr} not ready within {} s; last error: {last_err}",
        timeout.as_secs()
    )
}

/// Removes terminal colour codes (ESC [ ... letter) from a log.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fails unless every program is on PATH, naming the package that has it.
pub fn require_programs(part: &str, progs: &[(&str, &str)]) -> Result<()> {
    for (prog, package) in progs {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {prog}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("the {part} part needs `{prog}` (apt-get install {package})");
        }
    }
    Ok(())
}

/// `hadr --version` and the binary's path (marked when it is a debug
/// build, whose numbers mean little), for a part's version list.
pub fn hadr_versions(bin: &Path) -> Result<Vec<(String, String)>> {
    if !bin.is_file() {
        bail!(
            "hadr binary {} not found (build it with cargo build --release, or pass --hadr)",
            bin.display()
        );
    }
    let out = proc::run_ok(
        Command::new(bin).arg("--version"),
        Duration::from_secs(10),
        "hadr --version",
    )?;
    let build = if bin.components().any(|c| c.as_os_str() == "debug") {
        " (a debug build)"
    } else {
        ""
    };
    Ok(vec![
        ("hadr".to_string(), out.stdout.trim().to_string()),
        (
            "hadr binary".to_string(),
            format!("{}{build}", bin.display()),
        ),
    ])
}

pub(crate) fn am_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// A throwaway PostgreSQL 15 cluster, fully durable, on 127.0.0.1.
pub struct Postgres {
    bindir: PathBuf,
    /// Directory owned by the server's user, holding `data/` and `server.log`.
    home: PathBuf,
    port: u16,
    running: bool,
    /// `max_connections` (200 unless a part sets it before `start`).
    pub max_connections: u32,
    /// More postgresql.conf lines (none unless a part sets them before `start`).
    pub extra_conf: String,
    /// pg_hba.conf lines put before initdb's (first match wins).
    pub hba_first: String,
}

impl Postgres {
    pub fn new(bindir: &Path, workdir: &Path) -> Result<Self> {
        Ok(Postgres {
            bindir: bindir.to_path_buf(),
            home: workdir.join("postgres"),
            port: free_port()?,
            running: false,
            max_connections: 200,
            extra_conf: String::new(),
            hba_first: String::new(),
        })
    }

    /// The postmaster's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    fn log(&self) -> PathBuf {
        self.home.join("server.log")
    }

    /// A command for one of PostgreSQL's programs, run as the `postgres` user
    /// when we are root (initdb and postgres refuse to run as root).
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if am_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Installs the PostgreSQL 15 server with apt-get if it is missing.
    pub fn ensure_installed(bindir: &Path) -> Result<()> {
        if bindir.join("postgres").exists() {
            return Ok(());
        }
        if !am_root() {
            bail!(
                "{} is missing and we are not root: install postgresql-15",
                bindir.join("postgres").display()
            );
        }
        eprintln!(
            "PostgreSQL server not found in {}: installing postgresql-15 with apt-get",
            bindir.display()
        );
        let apt = |args: &[&str], what: &str, secs: u64| -> Result<()> {
            let mut c = Command::new("apt-get");
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            proc::run_ok(&mut c, Duration::from_secs(secs), what).map(|_| ())
        };
        apt(&["update"], "apt-get update", 600)?;
        apt(
            &["install", "-y", "--no-install-recommends", "postgresql-15"],
            "apt-get install postgresql-15",
            900,
        )?;
        if !bindir.join("postgres").exists() {
            bail!(
                "installed postgresql-15 but {} is still missing",
                bindir.join("postgres").display()
            );
        }
        Ok(())
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<()> {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        proc::run_cleanup(
            &mut c,
            Duration::from_secs(90),
            &format!("pg_ctl stop -m {mode}"),
        )
        .map(|_| ())
    }
}

impl Target for Postgres {
    fn name(&self) -> &str {
        "postgres"
    }

    fn version(&self) -> Result<String> {
        let mut c = Command::new(self.bindir.join("postgres"));
        c.arg("--version");
        Ok(
            proc::run_ok(&mut c, Duration::from_secs(10), "postgres --version")?
                .stdout
                .trim()
                .to_string(),
        )
    }

    fn start(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.home)
            .with_context(|| format!("creating {}", self.home.display()))?;
        if am_root() {
            let out = proc::run_ok(
                Command::new("id").args(["-u", "postgres"]),
                Duration::from_secs(10),
                "id -u postgres",
            )
            .context("the `postgres` user is needed to run the PostgreSQL server as non-root")?;
            let uid: u32 = out
                .stdout
                .trim()
                .parse()
                .context("parsing the uid of `postgres`")?;
            std::os::unix::fs::chown(&self.home, Some(uid), None)
                .with_context(|| format!("chown postgres {}", self.home.display()))?;
        }
        let mut c = self.command("initdb");
        c.arg("-D").arg(self.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        proc::run_ok(&mut c, Duration::from_secs(120), "initdb")?;

        let conf = format!(
            "\n# hadr-bench: a fully durable server on loopback\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             max_connections = {max_connections}\n\
             shared_buffers = 256MB\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n",
            port = self.port,
            sock = self.home.display(),
            max_connections = self.max_connections,
        );
        let conf_path = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        text.push_str(&conf);
        text.push_str(&self.extra_conf);
        std::fs::write(&conf_path, text)
            .with_context(|| format!("writing {}", conf_path.display()))?;
        if !self.hba_first.is_empty() {
            let hba = self.data().join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba)
                .with_context(|| format!("reading {}", hba.display()))?;
            std::fs::write(&hba, format!("{}\n{rest}", self.hba_first))
                .with_context(|| format!("writing {}", hba.display()))?;
        }

        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "start"]);
        self.running = true; // from here on, stop() must try to stop it
        let out = proc::run(&mut c, Duration::from_secs(90), "pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed ({}):\n{}\nserver log:\n{}",
                out.status,
                out.message(),
                proc::tail_file(&self.log(), 20)
            );
        }
        let conn = self.conninfo();
        wait_ready(&conn, Duration::from_secs(30), || Ok(()))
    }

    fn conninfo(&self) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn setup_sql(&self) -> Vec<String> {
        postgres_setup_sql()
    }

    fn alive(&mut self) -> Option<bool> {
        Some(self.running && self.data().join("postmaster.pid").exists())
    }

    fn log_findings(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("PANIC") || l.contains("FATAL") || l.contains("ERROR"))
            .take(10)
            .map(str::to_string)
            .collect()
    }

    fn server_log(&self) -> PathBuf {
        self.log()
    }

    fn stop(&mut self) -> Result<()> {
        if !self.running {
            let _ = std::fs::remove_dir_all(&self.home);
            return Ok(());
        }
        let res = self.pg_ctl_stop("fast").or_else(|e| {
            eprintln!("warning: {e:#}; trying an immediate stop");
            self.pg_ctl_stop("immediate")
        });
        if res.is_ok() {
            self.running = false;
            let _ = std::fs::remove_dir_all(&self.home);
        } else {
            STOP_FAILED.store(true, Ordering::SeqCst);
        }
        res
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "error: could not stop PostgreSQL in {}: {e:#}",
                self.data().display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// hadr

/// One hadr node with the default (fsync, durable) log flush mode.
pub struct Hadr {
    bin: PathBuf,
    home: PathBuf,
    port: u16,
    admin_port: u16,
    child: Option<Child>,
    /// More `hadr server` flags (none unless a part sets them before `start`).
    pub extra: Vec<String>,
}

impl Hadr {
    pub fn new(bin: &Path, workdir: &Path) -> Result<Self> {
        let port = free_port()?;
        let mut admin_port = free_port()?;
        while admin_port == port {
            admin_port = free_port()?;
        }
        Ok(Hadr {
            bin: bin.to_path_buf(),
            home: workdir.join("hadr"),
            port,
            admin_port,
            child: None,
            extra: Vec::new(),
        })
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    /// The server's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    fn log(&self) -> PathBuf {
        self.home.join("server.log")
    }
}

impl Target for Hadr {
    fn name(&self) -> &str {
        "hadr"
    }

    fn version(&self) -> Result<String> {
        let mut c = Command::new(&self.bin);
        c.arg("--version");
        Ok(
            proc::run_ok(&mut c, Duration::from_secs(10), "hadr --version")?
                .stdout
                .trim()
                .to_string(),
        )
    }

    fn start(&mut self) -> Result<()> {
        if !self.bin.exists() {
            bail!(
                "hadr binary {} not found (build it with cargo build --release, or pass --hadr)",
                self.bin.display()
            );
        }
        std::fs::create_dir_all(&self.home)
            .with_context(|| format!("creating {}", self.home.display()))?;
        let mut c = Command::new(&self.bin);
        c.arg("init").arg("--data").arg(self.data());
        proc::run_ok(&mut c, Duration::from_secs(60), "hadr init")?;

        let log = std::fs::File::create(self.log())
            .with_context(|| format!("creating {}", self.log().display()))?;
        let mut c = Command::new(&self.bin);
        c.arg("server")
            .arg("--data")
            .arg(self.data())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .args(&self.extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(proc::spawn(&mut c)?);
        let conn = self.conninfo();
        let log_path = self.log();
        let child = self.child.as_mut().expect("just set");
        wait_ready(&conn, Duration::from_secs(30), || {
            match child.try_wait()? {
                Some(st) => bail!(
                    "hadr server exited during startup ({st}); its log:\n{}",
                    proc::tail_file(&log_path, 20)
                ),
                None => Ok(()),
            }
        })
        .with_context(|| {
            format!(
                "hadr server log {}:\n{}",
                log_path.display(),
                proc::tail_file(&log_path, 20)
            )
        })
    }

    fn conninfo(&self) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn setup_sql(&self) -> Vec<String> {
        hadr_setup_sql()
    }

    fn alive(&mut self) -> Option<bool> {
        match self.child.as_mut() {
            Some(c) => Some(matches!(c.try_wait(), Ok(None))),
            None => Some(false),
        }
    }

    fn log_findings(&self) -> Vec<String> {
        let text = strip_ansi(&std::fs::read_to_string(self.log()).unwrap_or_default());
        let odd: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.contains(" WARN "))
            .collect();
        let mut out: Vec<String> = odd.iter().take(10).map(|l| l.to_string()).collect();
        if odd.len() > 10 {
            out.push(format!("... and {} more such lines", odd.len() - 10));
        }
        out
    }

    fn server_log(&self) -> PathBuf {
        self.log()
    }

    fn stop(&mut self) -> Result<()> {
        let res = match self.child.take() {
            Some(mut c) => match proc::terminate(&mut c, Duration::from_secs(30)) {
                Ok(st) if st.success() => Ok(()),
                Ok(st) => Err(anyhow!(
                    "hadr server exited with {st}; log tail:\n{}",
                    proc::tail_file(&self.log(), 10)
                )),
                Err(e) => Err(e.context("stopping hadr server")),
            },
            None => Ok(()),
        };
        let _ = std::fs::remove_dir_all(&self.home);
        res
    }
}

impl Drop for Hadr {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("error: {e:#}");
        }
    }
}
