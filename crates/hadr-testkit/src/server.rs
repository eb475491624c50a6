//! One `hadr server` child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hadr_admin_api::{AdminClient, Status};

use crate::{free_port, Hadr, Result};

/// The flags that let every client in without a password on a node
/// listening beyond loopback (docs/security.md §Authentication and access
/// rules: the node refuses to start with such a rule unless told so).
pub const TRUST_EVERYONE: [&str; 3] = ["--access", "host all all all trust", "--insecure-trust"];

/// Whether a node listening on `host` with `extra` flags needs
/// [`TRUST_EVERYONE`] for clients without passwords to get in.
fn needs_trust(host: &str, extra: &[String]) -> bool {
    let beyond_loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !ip.is_loopback());
    beyond_loopback && !extra.iter().any(|a| a == "--access")
}

/// How long a start may take before it is an error.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A node: a `hadr server` process on its data directory, with a log file
/// next to it (`DIR.log`) that every start appends to, and the admin token
/// file it requires (`DIR.admin-token`, holding [`crate::admin_token`],
/// unless [`Server::without_admin_token`]). Its ports stay the same across
/// restarts. Dropping it kills the process.
pub struct Server {
    /// The data directory.
    pub dir: PathBuf,
    /// The address it listens on.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// Admin port.
    pub admin: u16,
    /// Flags after `--data`, `--listen` and `--admin`.
    pub extra: Vec<String>,
    bin: PathBuf,
    log: PathBuf,
    admin_token_file: Option<PathBuf>,
    /// HTTPS to the admin port (a node started with `--admin-tls-*`).
    admin_tls: Option<std::sync::Arc<hadr_admin_api::tls::ClientConfig>>,
    client: AdminClient,
    interrupted: Option<fn() -> bool>,
    netns: Option<String>,
    child: Mutex<Option<Child>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A node on `dir` (not started) on 127.0.0.1 with free ports.
    pub fn new(hadr: &Hadr, dir: PathBuf, extra: Vec<String>) -> Server {
        let (port, admin) = (free_port(), free_port());
        Server::on_ports(hadr, dir, "127.0.0.1", port, admin, extra)
    }

    /// A node on `dir` (not started) on the given address and ports.
    pub fn on_ports(
        hadr: &Hadr,
        dir: PathBuf,
        host: &str,
        port: u16,
        admin: u16,
        extra: Vec<String>,
    ) -> Server {
        Server {
            log: dir.with_extension("log"),
            admin_token_file: Some(dir.with_extension("admin-token")),
            admin_tls: None,
            client: AdminClient::new(crate::addr(host, admin))
                .with_token(Some(crate::admin_token_secret())),
            dir,
            host: host.to_string(),
            port,
            admin,
            extra,
            bin: hadr.path().to_path_buf(),
            interrupted: None,
            netns: None,
            child: Mutex::new(None),
            _tmp: None,
        }
    }

    /// Start it without an admin token (no `--admin-token-file`), and let
    /// its client send none: state-changing admin requests then work only
    /// over loopback (or with flags the test passes itself).
    pub fn without_admin_token(mut self) -> Server {
        self.admin_token_file = None;
        self.client = self.client.with_token(None);
        self
    }

    /// Reach its admin port over HTTPS with `tls` (for a node the test
    /// starts with `--admin-tls-cert-file` and `--admin-tls-key-file`).
    pub fn with_admin_tls(
        mut self,
        tls: std::sync::Arc<hadr_admin_api::tls::ClientConfig>,
    ) -> Result<Server> {
        self.admin_tls = Some(tls);
        self.client = self.admin_client()?;
        Ok(self)
    }

    fn admin_client(&self) -> Result<AdminClient> {
        let c =
            AdminClient::new(crate::addr(&self.host, self.admin)).with_token(self.client_token());
        Ok(match &self.admin_tls {
            Some(tls) => c.with_tls(tls.clone())?,
            None => c,
        })
    }

    /// The admin token file it is started with.
    pub fn admin_token_file(&self) -> Option<&Path> {
        self.admin_token_file.as_deref()
    }

    /// Keep `tmp` (the directory holding `dir`) until the server is dropped.
    pub fn keep(mut self, tmp: tempfile::TempDir) -> Server {
        self._tmp = Some(tmp);
        self
    }

    /// Waits end early (with an error) once `f` says so (the benchmark's Ctrl-C).
    pub fn interruptible(mut self, f: fn() -> bool) -> Server {
        self.interrupted = Some(f);
        self
    }

    /// Run inside the network namespace `netns` (`ip netns exec`, which
    /// execs the server: signals reach it directly), listening on every
    /// address there; the test still reaches it at `host` (see
    /// `netns::Cluster::server`).
    pub fn in_netns(mut self, netns: &str) -> Server {
        self.netns = Some(netns.to_string());
        self
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Threads of the running process (from /proc), for tests that bound them.
    pub fn threads(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Start the process (again), and wait until its PostgreSQL port accepts connections.
    pub fn spawn(&mut self) -> Result<()> {
        self.spawn_nowait()?;
        let first = self.wait_ready(START_TIMEOUT);
        // A free port can be taken by another process between the probe
        // and the server's bind (tests run in parallel): if the client or
        // admin port was, take two new ones and start once more. (Nobody
        // has used them yet: they are known only after start-up.)
        let log = self.log();
        let taken = |p: u16| log.contains(&format!(":{p}: Address already in use"));
        if first.is_err() && self.netns.is_none() && (taken(self.port) || taken(self.admin)) {
            self.port = crate::free_port();
            self.admin = crate::free_port();
            self.client = self.admin_client()?;
            self.spawn_nowait()?;
            return self.wait_ready(START_TIMEOUT);
        }
        first
    }

    /// Start the process once with `--role primary` (the flag is not kept
    /// for later restarts, which must rejoin as whatever the cluster says)
    /// and wait until it is a writable primary.
    pub fn spawn_primary(&mut self, timeout: Duration) -> Result<Status> {
        let flags = self.extra.clone();
        self.extra.extend(["--role".to_string(), "primary".into()]);
        let spawned = self.spawn();
        self.extra = flags;
        spawned?;
        crate::block_on(self.wait_for("writable primary", timeout, Status::is_writable_primary))
    }

    fn client_token(&self) -> Option<hadr_secrets::SecretText> {
        self.admin_token_file
            .as_ref()
            .map(|_| crate::admin_token_secret())
    }

    /// Start the process (again) without waiting for anything.
    pub fn spawn_nowait(&mut self) -> Result<()> {
        if self.child().is_some() {
            bail!("{} is already running", self.name());
        }
        if let Some(t) = &self.admin_token_file {
            crate::write_admin_token(t)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let (mut c, listen) = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                (c, "0.0.0.0")
            }
            None => (Command::new(&self.bin), self.host.as_str()),
        };
        c.arg("server")
            .arg("--data")
            .arg(&self.dir)
            .arg("--listen")
            .arg(crate::addr(listen, self.port))
            .arg("--admin")
            .arg(crate::addr(listen, self.admin))
            .args(
                self.admin_token_file
                    .iter()
                    .flat_map(|t| [std::ffi::OsStr::new("--admin-token-file"), t.as_os_str()]),
            );
        // Beyond loopback the default access rules ask for a password;
        // tests and benchmarks connect without one, so a node listening
        // there trusts everyone (a test network), unless the test sets
        // its own rules.
        if needs_trust(listen, &self.extra) {
            c.args(TRUST_EVERYONE);
        }
        c.args(&self.extra)
            .env(
                "HADR_LOG",
                std::env::var("HADR_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = c
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        *self.child() = Some(child);
        Ok(())
    }

    /// Wait until the node serves sessions (a start-up message is answered
    /// with AuthenticationOk, not with the gate's 57P03); an error if the
    /// process exits first or `timeout` passes.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let up = std::net::ToSocketAddrs::to_socket_addrs(&(self.host.as_str(), self.port))
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(serves_sessions);
            if up {
                return Ok(());
            }
            self.check_running("start-up")?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not start within {timeout:?}: {}",
                    self.name(),
                    self.log_tail(30)
                );
            }
            self.check_interrupt()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn name(&self) -> String {
        format!("hadr server on {}", self.dir.display())
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupted.is_some_and(|f| f()) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// An error if the process was started and has exited.
    pub fn check_running(&self, during: &str) -> Result<()> {
        let mut child = self.child();
        if let Some(c) = child.as_mut() {
            if let Some(st) = c.try_wait()? {
                *child = None;
                drop(child);
                bail!(
                    "{} exited during {during} ({st}): {}{}",
                    self.name(),
                    self.log_errors(),
                    self.log_tail(30)
                );
            }
        }
        Ok(())
    }

    /// Whether the process is running.
    pub fn alive(&self) -> bool {
        matches!(self.child().as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// kill -9 (and reap it).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit; killed, and an error, if it takes
    /// longer than 30 s.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child().take() else {
            bail!("{} is not running", self.name());
        };
        signal(&c, libc::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "{} did not stop on SIGTERM: {}",
                    self.name(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGSTOP: the process freezes (a hung host: its sockets stay open).
    pub fn sigstop(&self) -> Result<()> {
        match self.child().as_ref() {
            Some(c) => signal(c, libc::SIGSTOP),
            None => bail!("{} is not running", self.name()),
        }
    }

    /// SIGHUP: the node reads its TLS certificate and key again.
    pub fn sighup(&self) -> Result<()> {
        match self.child().as_ref() {
            Some(c) => signal(c, libc::SIGHUP),
            None => bail!("{} is not running", self.name()),
        }
    }

    /// SIGCONT after [`Server::sigstop`].
    pub fn sigcont(&self) -> Result<()> {
        match self.child().as_ref() {
            Some(c) => signal(c, libc::SIGCONT),
            None => bail!("{} is not running", self.name()),
        }
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the server logged so far (all its starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's error lines (at most 5), each followed by a newline: a
    /// process that exits prints its error first and a backtrace after it,
    /// which is all a tail would show.
    pub fn log_errors(&self) -> String {
        self.log()
            .lines()
            .filter(|l| l.starts_with("Error") || l.contains(" ERROR "))
            .take(5)
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// libpq-style connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=test dbname=test connect_timeout=10",
            self.host, self.port
        )
    }

    /// A tokio-postgres connection, driven in the background.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        crate::connect(&self.conninfo()).await
    }

    /// Its admin address.
    pub fn admin_addr(&self) -> String {
        crate::addr(&self.host, self.admin)
    }

    /// The client for its admin endpoint.
    pub fn admin(&self) -> &AdminClient {
        &self.client
    }

    /// `/status` without a page hash.
    pub async fn status(&self) -> Result<Status> {
        Ok(self.client.status_with_hash(false).await?)
    }

    /// Poll `/status` every 10 ms until `f` holds, and return that status;
    /// an error after `timeout` (with the last status seen), or as soon as
    /// the process exits. Unreachable moments (a restart) are waited out.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Status) -> bool,
    ) -> Result<Status> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status().await {
                Ok(st) if f(&st) => return Ok(st),
                Ok(st) => brief(&st),
                Err(e) => format!("{e:#}"),
            };
            self.check_running(&format!("the wait for {what}"))?;
            self.check_interrupt()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not reach \"{what}\" within {timeout:?}; last status: {last}; log tail:\n{}",
                    self.name(),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(crate) fn signal(c: &Child, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(c.id()).context("pid out of range")?;
    // SAFETY: kill(2) on our own child, not reaped yet (we hold its Child).
    if unsafe { libc::kill(pid, sig) } != 0 {
        bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Role, writability, epoch and the HADR states of a status, on one line.
pub fn brief(s: &Status) -> String {
    use hadr_admin_api::HadrView;
    let hadr = match &s.hadr {
        None => "no HADR".to_string(),
        Some(HadrView::Primary(p)) => p
            .standbys
            .iter()
            .map(|b| {
                format!(
                    "standby {} {:?} {:?} gap {}",
                    b.standby, b.hadr_state, b.hadr_connect_status, b.hadr_log_gap_bytes
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(HadrView::Standby(v)) => format!(
            "{:?} to {:?}, replayed {} of {}",
            v.hadr_connect_status, v.primary, v.standby_replay_lsn, v.primary_log_lsn
        ),
    };
    format!(
        "{} epoch {} writable {} ({hadr})",
        s.role, s.epoch, s.writable
    )
}

/// Whether the node at `addr` admits a session: a StartupMessage gets
/// AuthenticationOk ('R'). Every step is bounded: a black-holed host never
/// answers a SYN.
fn serves_sessions(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for kv in [&b"user"[..], b"ready-probe", b"database", b"ready-probe"] {
        body.extend_from_slice(kv);
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend(body);
    let mut first = [0u8; 1];
    let ok = s.write_all(&msg).is_ok() && s.read_exact(&mut first).is_ok() && first[0] == b'R';
    // A polite goodbye, so the server logs no broken connection.
    let _ = s.write_all(&[b'X', 0, 0, 0, 4]);
    ok
}
