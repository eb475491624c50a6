//! Replicated targets: one hadr primary/standby pair per sync mode, and one
//! PostgreSQL primary with a streaming standby whose `synchronous_commit`
//! changes from run to run; and hadr's clone and replay throughput.
//!
//! A replicated target is a [`Target`] (start, load, stop, logs) that also
//! implements [`Replicated`]: the settings it runs under, how to wait until
//! its standby has caught up, and how to check the standby against the
//! primary after a run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hadr_testkit::{self as kit, spelling, ConnectStatus, PairState, Server, Status};
use serde_json::Value;

use crate::proc;
use crate::report::{CloneReplay, StandbyCheck};
use crate::targets::{self, ConnInfo, Target};

/// The hadr sync modes, strictest first.
pub const HADR_MODES: [&str; 4] = ["SYNC", "NEARSYNC", "ASYNC", "SUPERASYNC"];
/// PostgreSQL `synchronous_commit` levels compared with them.
pub const PG_LEVELS: [&str; 4] = ["on", "remote_write", "remote_apply", "local"];

/// Bytes in a hadr database page (hadr_engine::PAGE_SIZE).
const HADR_PAGE_SIZE: u64 = 4096;

/// A primary with one standby.
pub trait Replicated: Target {
    /// "postgres" or "hadr": the row label, without the setting.
    fn family(&self) -> &str;
    /// The settings this pair is measured under, in order.
    fn settings(&self) -> Vec<String>;
    /// Puts `setting` in effect for the sessions opened from now on.
    fn apply_setting(&mut self, setting: &str) -> Result<()>;
    /// Waits until the standby is attached in the state the setting needs and
    /// has replayed everything the primary wrote; returns that state.
    fn wait_synced(&mut self, timeout: Duration) -> Result<String>;
    /// The pair's state right now, without waiting.
    fn pair_state(&mut self) -> String;
    /// Compares the standby with the primary (after a run).
    fn verify(&mut self) -> StandbyCheck;
    /// Every server log of the pair, with a label.
    fn server_logs(&self) -> Vec<(String, PathBuf)>;
}

// ---------------------------------------------------------------------------
// hadr nodes: what every part that runs hadr servers needs.

/// A [`Server`] (not started) of the `hadr` binary `bin` on `dir`, on
/// 127.0.0.1 `pg` and `admin`, with `extra` flags; its waits end on Ctrl-C.
pub fn server(bin: &Path, dir: PathBuf, pg: u16, admin: u16, extra: Vec<String>) -> Server {
    Server::on_ports(&kit::Hadr::new(bin), dir, "127.0.0.1", pg, admin, extra)
        .interruptible(proc::interrupted)
}

/// `hadr clone --from FROM --data DIR`; returns the wall time it took and
/// what it printed.
pub fn hadr_clone(bin: &Path, from: &str, dir: &Path) -> Result<(Duration, String)> {
    hadr_clone_with(bin, from, dir, &[])
}

/// [`hadr_clone`] with more flags (the replication TLS files).
pub fn hadr_clone_with(
    bin: &Path,
    from: &str,
    dir: &Path,
    extra: &[String],
) -> Result<(Duration, String)> {
    let mut c = kit::Hadr::new(bin).command(&["clone", "--from", from, "--data"]);
    c.arg(dir).args(extra);
    let t = Instant::now();
    let out = proc::run_ok(&mut c, Duration::from_secs(1800), "hadr clone")?;
    Ok((t.elapsed(), targets::strip_ansi(&out.stdout)))
}

/// `hadr verify --node A --node B` (admin addresses).
pub fn verify_nodes(bin: &Path, a: &str, b: &str) -> StandbyCheck {
    let mut c = Command::new(bin);
    c.arg("verify")
        .args(["--node", a])
        .args(["--node", b])
        .args(["--timeout", "120s", "--json"])
        .env("NO_COLOR", "1");
    let out = match proc::run(&mut c, Duration::from_secs(180), "hadr verify") {
        Ok(o) => o,
        Err(e) => return StandbyCheck::Error(format!("{e:#}")),
    };
    let json: Option<Value> = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok());
    let identical = json
        .as_ref()
        .and_then(|j| j.get("identical"))
        .and_then(Value::as_bool);
    let lsn = json
        .as_ref()
        .and_then(|j| j.get("lsn"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match (out.status.success(), identical) {
        (true, Some(true)) => StandbyCheck::PagesIdentical { lsn },
        (_, Some(false)) => StandbyCheck::Differ(format!(
            "hadr verify exited with {}: {}",
            out.status,
            out.stdout.trim()
        )),
        _ => StandbyCheck::Error(format!(
            "hadr verify exited with {}: {}",
            out.status,
            targets::strip_ansi(&out.message())
        )),
    }
}

/// Panics, errors and warnings in a hadr server log, at most ten, labelled;
/// warnings and errors containing one of `expected` are left out (panics
/// never are).
pub fn log_findings(label: &str, path: &Path, expected: &[&str]) -> Vec<String> {
    let text = targets::strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let odd: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("panicked")
                || ((l.contains("ERROR") || l.contains(" WARN "))
                    && !expected.iter().any(|e| l.contains(e)))
        })
        .collect();
    let mut out: Vec<String> = odd
        .iter()
        .take(10)
        .map(|l| format!("{label}: {l}"))
        .collect();
    if odd.len() > 10 {
        out.push(format!(
            "{label}: ... and {} more such lines",
            odd.len() - 10
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// hadr pair

/// A hadr primary and its standby, cloned from it, in one sync mode.
pub struct HadrPair {
    bin: PathBuf,
    home: PathBuf,
    mode: String,
    name: String,
    primary: Server,
    standby: Server,
    /// More `hadr clone` flags (the replication TLS files, if any).
    clone_extra: Vec<String>,
}

/// What the primary's /status says of its standby.
struct StandbyView {
    state: PairState,
    connect: ConnectStatus,
    replayed: u64,
    /// The primary's log end.
    end: u64,
}

impl HadrPair {
    pub fn new(bin: &Path, workdir: &Path, mode: &str, tag: &str) -> Result<Self> {
        let p = targets::free_ports(6)?;
        let name = format!("hadr-{tag}");
        let home = workdir.join(&name);
        let addr = kit::local;
        let primary = server(
            bin,
            home.join("primary"),
            p[0],
            p[1],
            [
                "--role",
                "primary",
                "--hadr-local",
                &addr(p[2]),
                "--hadr-target-list",
                &addr(p[5]),
                "--hadr-syncmode",
                mode,
            ]
            .map(String::from)
            .to_vec(),
        );
        let standby = server(
            bin,
            home.join("standby"),
            p[3],
            p[4],
            [
                "--hadr-local",
                &addr(p[5]),
                "--hadr-target-list",
                &addr(p[2]),
            ]
            .map(String::from)
            .to_vec(),
        );
        Ok(HadrPair {
            bin: bin.to_path_buf(),
            home,
            mode: mode.to_string(),
            name,
            primary,
            standby,
            clone_extra: Vec::new(),
        })
    }

    /// Mutual TLS on the replication link (`ca`, and per node a
    /// certificate and key: primary first), and `config` (client TLS and
    /// access rules) for both servers. Before `start`.
    pub fn with_tls(&mut self, ca: &Path, nodes: [(&Path, &Path); 2], config: &Path) {
        let flags = |(cert, key): (&Path, &Path)| -> Vec<String> {
            vec![
                "--replication-tls-ca-file".into(),
                ca.display().to_string(),
                "--replication-tls-cert-file".into(),
                cert.display().to_string(),
                "--replication-tls-key-file".into(),
                key.display().to_string(),
            ]
        };
        for (node, files) in [&mut self.primary, &mut self.standby]
            .into_iter()
            .zip(nodes)
        {
            node.extra.extend(flags(files));
            node.extra
                .extend(["--config".to_string(), config.display().to_string()]);
        }
        // The clone runs as the standby would.
        self.clone_extra = flags(nodes[1]);
    }

    pub fn primary_admin(&self) -> String {
        self.primary.admin_addr()
    }

    pub fn standby_admin(&self) -> String {
        self.standby.admin_addr()
    }

    /// The primary's replication address (what `hadr clone --from` takes).
    fn primary_local(&self) -> String {
        let at = self.primary.extra.iter().position(|a| a == "--hadr-local");
        at.and_then(|i| self.primary.extra.get(i + 1))
            .cloned()
            .unwrap_or_default()
    }

    pub fn standby_data(&self) -> PathBuf {
        self.standby.dir.clone()
    }

    fn primary_log(&self) -> PathBuf {
        self.primary.log_path().to_path_buf()
    }

    fn standby_log(&self) -> PathBuf {
        self.standby.log_path().to_path_buf()
    }

    /// Starts one node and waits until it accepts connections.
    fn spawn_node(name: &str, node: &mut Server) -> Result<()> {
        node.spawn().with_context(|| {
            format!(
                "{name}: hadr server log {}:\n{}",
                node.log_path().display(),
                proc::tail_file(node.log_path(), 20)
            )
        })
    }

    /// `hadr init` and the primary's server.
    pub fn start_primary(&mut self) -> Result<()> {
        if !self.bin.exists() {
            bail!(
                "hadr binary {} not found (build it with cargo build --release, or pass --hadr)",
                self.bin.display()
            );
        }
        std::fs::create_dir_all(&self.home)
            .with_context(|| format!("creating {}", self.home.display()))?;
        let mut c = kit::Hadr::new(&self.bin).command(&["init", "--data"]);
        c.arg(&self.primary.dir);
        proc::run_ok(&mut c, Duration::from_secs(60), "hadr init")?;
        Self::spawn_node(&self.name, &mut self.primary)
    }

    /// `hadr clone` from the running primary; returns the wall time it took.
    pub fn clone_standby(&mut self) -> Result<Duration> {
        Ok(hadr_clone_with(
            &self.bin,
            &self.primary_local(),
            &self.standby.dir,
            &self.clone_extra,
        )?
        .0)
    }

    /// Starts the standby's server (its data must exist); returns when it
    /// answers queries, not when it has caught up.
    pub fn start_standby(&mut self) -> Result<()> {
        Self::spawn_node(&self.name, &mut self.standby)
    }

    /// Starts the standby without waiting for anything (for timing).
    fn spawn_standby_nowait(&mut self) -> Result<()> {
        self.standby.spawn_nowait()
    }

    /// SIGTERM to the standby; waits for it to exit.
    pub fn stop_standby(&mut self) -> Result<()> {
        if self.standby.alive() {
            let st = self.standby.stop().context("stopping the hadr standby")?;
            if !st.success() {
                bail!(
                    "hadr standby exited with {st}; log tail:\n{}",
                    proc::tail_file(&self.standby_log(), 10)
                );
            }
        }
        Ok(())
    }

    /// The primary's /status (with the page hash of a database up to 256 MiB).
    pub fn primary_status(&self) -> Result<Status> {
        let admin = self.primary.admin().with_timeout(Duration::from_secs(30));
        Ok(kit::block_on(admin.status())?)
    }

    /// The primary's view of its standby.
    fn standby_view(&self) -> Result<StandbyView> {
        let v = kit::block_on(self.primary.status())?;
        let s = v
            .principal()
            .context("the primary's status lists no standby")?;
        Ok(StandbyView {
            state: s.hadr_state,
            connect: s.hadr_connect_status,
            replayed: s.standby_replay_lsn,
            end: v.log.end_lsn,
        })
    }

    /// Waits until the standby is connected and has replayed the primary's
    /// log end in `state` (any state if none); returns the state.
    fn wait_standby(&mut self, state: Option<PairState>, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let mut last = String::from("no status yet");
        while start.elapsed() < timeout {
            proc::check_interrupted()?;
            self.check_children()?;
            match self.standby_view() {
                Ok(v) => {
                    if v.connect == ConnectStatus::Connected
                        && v.replayed >= v.end
                        && state.is_none_or(|s| s == v.state)
                    {
                        return Ok(spelling(&v.state));
                    }
                    last = format!(
                        "{}, {}, replay LSN {}, log end {}",
                        spelling(&v.state),
                        spelling(&v.connect),
                        v.replayed,
                        v.end
                    );
                }
                Err(e) => last = format!("{e:#}"),
            }
            proc::sleep(Duration::from_millis(100))?;
        }
        bail!(
            "{}: standby not {} with everything replayed within {} s ({last})",
            self.name,
            state.map_or("connected".to_string(), |s| spelling(&s)),
            timeout.as_secs()
        )
    }

    /// Waits until the standby is connected and has replayed the primary's log end (any state).
    pub fn wait_caught_up(&mut self, timeout: Duration) -> Result<String> {
        self.wait_standby(None, timeout)
    }

    fn check_children(&mut self) -> Result<()> {
        for (who, node) in [("primary", &self.primary), ("standby", &self.standby)] {
            node.check_running("the benchmark")
                .with_context(|| format!("{} {who}", self.name))?;
        }
        Ok(())
    }

    /// `hadr verify --node PRIMARY --node STANDBY`.
    pub fn run_verify(&self) -> StandbyCheck {
        verify_nodes(&self.bin, &self.primary_admin(), &self.standby_admin())
    }
}

impl Target for HadrPair {
    fn name(&self) -> &str {
        &self.name
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

    /// init, primary, clone (of the empty database), standby, connected.
    fn start(&mut self) -> Result<()> {
        self.start_primary()?;
        self.clone_standby()
            .with_context(|| format!("{}: cloning the standby", self.name))?;
        self.start_standby()?;
        self.wait_caught_up(Duration::from_secs(60))?;
        Ok(())
    }

    fn conninfo(&self) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.primary.port,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn setup_sql(&self) -> Vec<String> {
        targets::hadr_setup_sql()
    }

    fn alive(&mut self) -> Option<bool> {
        Some(self.primary.alive() && self.standby.alive())
    }

    fn log_findings(&self) -> Vec<String> {
        let mut v = log_findings("primary", &self.primary_log(), &[]);
        v.extend(log_findings("standby", &self.standby_log(), &[]));
        v
    }

    fn server_log(&self) -> PathBuf {
        self.primary_log()
    }

    fn stop(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        for (who, node) in [
            ("standby", &mut self.standby),
            ("primary", &mut self.primary),
        ] {
            if !node.alive() {
                node.kill9();
                continue;
            }
            match node.stop() {
                Ok(st) if st.success() => {}
                Ok(st) => errors.push(format!(
                    "hadr {who} exited with {st}; log tail:\n{}",
                    proc::tail_file(node.log_path(), 10)
                )),
                Err(e) => errors.push(format!("stopping hadr {who}: {e:#}")),
            }
        }
        let _ = std::fs::remove_dir_all(&self.home);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("{}: {}", self.name, errors.join("; ")))
        }
    }
}

impl Replicated for HadrPair {
    fn family(&self) -> &str {
        "hadr"
    }

    fn settings(&self) -> Vec<String> {
        vec![self.mode.clone()]
    }

    fn apply_setting(&mut self, setting: &str) -> Result<()> {
        if setting != self.mode {
            bail!(
                "{} runs in {}; its sync mode is fixed when the primary starts",
                self.name,
                self.mode
            );
        }
        Ok(())
    }

    /// PEER (REMOTE_CATCHUP for SUPERASYNC, which never enters PEER) with
    /// the standby's replay LSN at the primary's log end.
    fn wait_synced(&mut self, timeout: Duration) -> Result<String> {
        let want = if self.mode == "SUPERASYNC" {
            PairState::RemoteCatchup
        } else {
            PairState::Peer
        };
        self.wait_standby(Some(want), timeout)
    }

    fn pair_state(&mut self) -> String {
        match self.standby_view() {
            Ok(v) => spelling(&v.state),
            Err(e) => format!("unknown ({e:#})"),
        }
    }

    fn verify(&mut self) -> StandbyCheck {
        self.run_verify()
    }

    fn server_logs(&self) -> Vec<(String, PathBuf)> {
        vec![
            (format!("{}-primary", self.name), self.primary_log()),
            (format!("{}-standby", self.name), self.standby_log()),
        ]
    }
}

impl Drop for HadrPair {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("error: {e:#}");
        }
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL pair

/// A PostgreSQL 15 primary with one streaming standby (pg_basebackup -R),
/// `synchronous_standby_names = '*'`, durable like the single-node server.
pub struct PostgresPair {
    bindir: PathBuf,
    home: PathBuf,
    primary_port: u16,
    standby_port: u16,
    primary_running: bool,
    standby_running: bool,
    setting: String,
    /// `ssl = on` with this certificate and key (owned by `postgres`), the
    /// standby streaming over TLS, and these pg_hba.conf lines first.
    pub tls: Option<PgTls>,
}

/// TLS for a [`PostgresPair`] (or a single server).
pub struct PgTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hba_first: String,
}

impl PgTls {
    /// The postgresql.conf lines.
    pub fn conf(&self) -> String {
        format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\npassword_encryption = 'scram-sha-256'\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// "16/B374D848" → a number.
fn parse_pg_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

impl PostgresPair {
    pub fn new(bindir: &Path, workdir: &Path) -> Result<Self> {
        let p = targets::free_ports(2)?;
        Ok(PostgresPair {
            bindir: bindir.to_path_buf(),
            home: workdir.join("postgres-pair"),
            primary_port: p[0],
            standby_port: p[1],
            primary_running: false,
            standby_running: false,
            setting: "on".into(),
            tls: None,
        })
    }

    fn primary_data(&self) -> PathBuf {
        self.home.join("primary")
    }

    fn standby_data(&self) -> PathBuf {
        self.home.join("standby")
    }

    fn primary_log(&self) -> PathBuf {
        self.home.join("primary.log")
    }

    fn standby_log(&self) -> PathBuf {
        self.home.join("standby.log")
    }

    fn standby_conninfo(&self) -> ConnInfo {
        ConnInfo {
            port: self.standby_port,
            ..self.conninfo()
        }
    }

    fn append_conf(data: &Path, text: &str) -> Result<()> {
        let p = data.join("postgresql.conf");
        let mut conf =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        conf.push_str(text);
        std::fs::write(&p, conf).with_context(|| format!("writing {}", p.display()))
    }

    fn pg_ctl_start(&self, data: &Path, log: &Path, what: &str) -> Result<()> {
        let mut c = targets::pg_command(&self.bindir, "pg_ctl");
        c.arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log)
            .args(["-w", "-t", "120", "start"]);
        let out = proc::run(
            &mut c,
            Duration::from_secs(150),
            &format!("pg_ctl start ({what})"),
        )?;
        if !out.status.success() {
            bail!(
                "pg_ctl start ({what}) failed ({}):\n{}\nserver log:\n{}",
                out.status,
                out.message(),
                proc::tail_file(log, 20)
            );
        }
        Ok(())
    }

    fn pg_ctl_stop(&self, data: &Path, mode: &str) -> Result<()> {
        let mut c = targets::pg_command(&self.bindir, "pg_ctl");
        c.arg("-D")
            .arg(data)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        proc::run_cleanup(
            &mut c,
            Duration::from_secs(90),
            &format!("pg_ctl stop -m {mode}"),
        )
        .map(|_| ())
    }

    fn stop_one(&self, data: &Path) -> Result<()> {
        self.pg_ctl_stop(data, "fast").or_else(|e| {
            eprintln!("warning: {e:#}; trying an immediate stop");
            self.pg_ctl_stop(data, "immediate")
        })
    }

    /// (primary WAL position, replication state "state/sync_state", standby replay position).
    fn positions(&self) -> Result<(u64, String, u64)> {
        let out = targets::psql(
            &self.conninfo(),
            &["SELECT pg_current_wal_flush_lsn() || ' ' || coalesce((SELECT state || '/' || sync_state \
               FROM pg_stat_replication LIMIT 1), 'detached')"
                .into()],
            Duration::from_secs(30),
        )?;
        let (lsn, state) = out
            .trim()
            .split_once(' ')
            .with_context(|| format!("unexpected answer {:?}", out.trim()))?;
        let primary = parse_pg_lsn(lsn).with_context(|| format!("bad LSN {lsn:?}"))?;
        let replay = targets::psql(
            &self.standby_conninfo(),
            &["SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0')".into()],
            Duration::from_secs(30),
        )?;
        let replay = parse_pg_lsn(&replay).with_context(|| format!("bad LSN {replay:?}"))?;
        Ok((primary, state.to_string(), replay))
    }

    /// Sums and counts that every committed transaction changes.
    fn sums(conn: &ConnInfo) -> Result<String> {
        Ok(targets::psql(
            conn,
            &["SELECT (SELECT coalesce(sum(abalance), 0) FROM accounts) || '|' || \
               (SELECT count(*) FROM history) || '|' || (SELECT coalesce(sum(delta), 0) FROM history)"
                .into()],
            Duration::from_secs(120),
        )?
        .trim()
        .to_string())
    }
}

impl Target for PostgresPair {
    fn name(&self) -> &str {
        "postgres-pair"
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
        targets::chown_to_postgres(&self.home)?;
        let mut c = targets::pg_command(&self.bindir, "initdb");
        c.arg("-D").arg(self.primary_data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        proc::run_ok(&mut c, Duration::from_secs(120), "initdb")?;
        Self::append_conf(
            &self.primary_data(),
            &format!(
                "\n# hadr-bench: a durable primary on loopback with one synchronous standby\n\
                 listen_addresses = '127.0.0.1'\n\
                 port = {port}\n\
                 unix_socket_directories = '{sock}'\n\
                 max_connections = 200\n\
                 shared_buffers = 256MB\n\
                 fsync = on\n\
                 synchronous_commit = on\n\
                 full_page_writes = on\n\
                 wal_level = replica\n\
                 max_wal_senders = 10\n\
                 max_replication_slots = 10\n\
                 synchronous_standby_names = '*'\n\
                 hot_standby = on\n",
                port = self.primary_port,
                sock = self.home.display(),
            ),
        )?;
        if let Some(tls) = &self.tls {
            Self::append_conf(&self.primary_data(), &tls.conf())?;
            let hba = self.primary_data().join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba)
                .with_context(|| format!("reading {}", hba.display()))?;
            std::fs::write(&hba, format!("{}\n{rest}", tls.hba_first))
                .with_context(|| format!("writing {}", hba.display()))?;
        }
        self.primary_running = true;
        self.pg_ctl_start(&self.primary_data(), &self.primary_log(), "primary")?;
        targets::wait_ready(&self.conninfo(), Duration::from_secs(30), || Ok(()))?;

        let mut c = targets::pg_command(&self.bindir, "pg_basebackup");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.primary_port.to_string(),
            "-U",
            "postgres",
        ])
        .arg("-D")
        .arg(self.standby_data());
        if self.tls.is_some() {
            // -R writes this into primary_conninfo: the standby streams over TLS.
            c.args(["-d", "sslmode=require"]);
        }
        c.args([
            "-R",
            "-X",
            "stream",
            "-C",
            "-S",
            "hadr_bench_standby",
            "--checkpoint=fast",
        ]);
        proc::run_ok(&mut c, Duration::from_secs(600), "pg_basebackup")?;
        // Later lines win: the standby listens on its own port.
        Self::append_conf(
            &self.standby_data(),
            &format!(
                "\n# hadr-bench: the standby\nport = {}\nhot_standby = on\n",
                self.standby_port
            ),
        )?;
        self.standby_running = true;
        self.pg_ctl_start(&self.standby_data(), &self.standby_log(), "standby")?;
        targets::wait_ready(&self.standby_conninfo(), Duration::from_secs(60), || Ok(()))?;
        let start = Instant::now();
        loop {
            let (_, state, _) = self.positions()?;
            if state.starts_with("streaming") {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "PostgreSQL standby not streaming within 60 s (state {state}); standby log:\n{}",
                    proc::tail_file(&self.standby_log(), 20)
                );
            }
            proc::sleep(Duration::from_millis(200))?;
        }
    }

    fn conninfo(&self) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.primary_port,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn setup_sql(&self) -> Vec<String> {
        targets::postgres_setup_sql()
    }

    fn alive(&mut self) -> Option<bool> {
        Some(
            self.primary_running
                && self.standby_running
                && self.primary_data().join("postmaster.pid").exists()
                && self.standby_data().join("postmaster.pid").exists(),
        )
    }

    fn log_findings(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (label, p) in self.server_logs() {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            v.extend(
                text.lines()
                    .filter(|l| l.contains("PANIC") || l.contains("FATAL") || l.contains("ERROR"))
                    .take(10)
                    .map(|l| format!("{label}: {l}")),
            );
        }
        v
    }

    fn server_log(&self) -> PathBuf {
        self.primary_log()
    }

    fn stop(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        if self.standby_running {
            match self.stop_one(&self.standby_data()) {
                Ok(()) => self.standby_running = false,
                Err(e) => errors.push(format!("standby: {e:#}")),
            }
        }
        if self.primary_running {
            match self.stop_one(&self.primary_data()) {
                Ok(()) => self.primary_running = false,
                Err(e) => errors.push(format!("primary: {e:#}")),
            }
        }
        if errors.is_empty() {
            let _ = std::fs::remove_dir_all(&self.home);
            Ok(())
        } else {
            targets::mark_stop_failed();
            Err(anyhow!(
                "stopping the PostgreSQL pair: {}",
                errors.join("; ")
            ))
        }
    }
}

impl Replicated for PostgresPair {
    fn family(&self) -> &str {
        "postgres"
    }

    fn settings(&self) -> Vec<String> {
        PG_LEVELS.iter().map(|s| s.to_string()).collect()
    }

    /// ALTER SYSTEM SET synchronous_commit + reload, then waits until a new
    /// session sees it.
    fn apply_setting(&mut self, setting: &str) -> Result<()> {
        if !PG_LEVELS.contains(&setting) {
            bail!("unknown synchronous_commit level {setting:?}");
        }
        let conn = self.conninfo();
        targets::psql(
            &conn,
            &[
                format!("ALTER SYSTEM SET synchronous_commit = '{setting}'"),
                "SELECT pg_reload_conf()".into(),
            ],
            Duration::from_secs(30),
        )?;
        let start = Instant::now();
        loop {
            let now = targets::psql(
                &conn,
                &["SHOW synchronous_commit".into()],
                Duration::from_secs(30),
            )?;
            if now.trim() == setting {
                self.setting = setting.to_string();
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "synchronous_commit is still {:?} after reload, wanted {setting}",
                    now.trim()
                );
            }
            proc::sleep(Duration::from_millis(100))?;
        }
    }

    /// Streaming, synchronous, and replayed up to the primary's flushed WAL.
    fn wait_synced(&mut self, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < timeout {
            proc::check_interrupted()?;
            match self.positions() {
                Ok((primary, state, replay)) => {
                    if state == "streaming/sync" && replay >= primary {
                        return Ok(state);
                    }
                    last = format!("{state}, primary at {primary:X}, standby replayed {replay:X}");
                }
                Err(e) => last = format!("{e:#}"),
            }
            proc::sleep(Duration::from_millis(100))?;
        }
        bail!(
            "PostgreSQL standby not streaming/sync with everything replayed within {} s ({last})",
            timeout.as_secs()
        )
    }

    fn pair_state(&mut self) -> String {
        match self.positions() {
            Ok((_, state, _)) => state,
            Err(e) => format!("unknown ({e:#})"),
        }
    }

    /// Waits for the standby to replay everything, then compares the sums
    /// and row counts the workload changes on both servers.
    fn verify(&mut self) -> StandbyCheck {
        if let Err(e) = self.wait_synced(Duration::from_secs(120)) {
            return StandbyCheck::Error(format!("{e:#}"));
        }
        let lsn = self
            .positions()
            .map(|(p, _, _)| format!("{:X}/{:X}", p >> 32, p & 0xffff_ffff))
            .unwrap_or_default();
        match (
            Self::sums(&self.conninfo()),
            Self::sums(&self.standby_conninfo()),
        ) {
            (Ok(a), Ok(b)) if a == b => StandbyCheck::SameSums { lsn },
            (Ok(a), Ok(b)) => StandbyCheck::Differ(format!("primary {a} vs standby {b}")),
            (Err(e), _) | (_, Err(e)) => StandbyCheck::Error(format!("{e:#}")),
        }
    }

    fn server_logs(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("postgres-primary".into(), self.primary_log()),
            ("postgres-standby".into(), self.standby_log()),
        ]
    }
}

impl Drop for PostgresPair {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "error: could not stop the PostgreSQL pair in {}: {e:#}",
                self.home.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Clone and replay throughput

/// Rows per INSERT of the bulk loads (1000 random bytes each, so that the
/// log's LZ4 page compression cannot shrink them).
const BULK_ROWS: u32 = 20_000;
const BULK_ROW_BYTES: u32 = 1000;

fn bulk_insert(conn: &ConnInfo, first_id: u64) -> Result<()> {
    targets::psql(
        conn,
        &[format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<{BULK_ROWS}) \
             INSERT INTO big SELECT {first_id} + i, randomblob({BULK_ROW_BYTES}) FROM s"
        )],
        Duration::from_secs(900),
    )?;
    Ok(())
}

const MB: f64 = 1e6;

/// Builds a database of at least `target_bytes` on a hadr primary, times
/// `hadr clone` of it, then stops the standby, bulk-loads about
/// `target_bytes` more, restarts the standby and times its catch-up to the
/// primary's log end.
pub fn measure_clone_and_replay(
    bin: &Path,
    workdir: &Path,
    target_bytes: u64,
) -> Result<CloneReplay> {
    let mut pair = HadrPair::new(bin, workdir, "NEARSYNC", "clone")?;
    pair.start_primary()?;
    let conn = pair.conninfo();
    targets::psql(
        &conn,
        &["CREATE TABLE big(id INTEGER PRIMARY KEY, pad BLOB)".into()],
        Duration::from_secs(60),
    )?;

    // 1. A database of at least target_bytes.
    eprintln!(
        "== clone: loading a database of at least {:.0} MB",
        target_bytes as f64 / MB
    );
    let mut next_id = 0u64;
    let t = Instant::now();
    let pages = loop {
        proc::check_interrupted()?;
        bulk_insert(&conn, next_id)?;
        next_id += u64::from(BULK_ROWS);
        let v = pair.primary_status()?;
        let pages = u64::from(v.page_hash.context("primary reports no page count")?.pages);
        if pages * HADR_PAGE_SIZE >= target_bytes {
            break pages;
        }
    };
    let first_load_secs = t.elapsed().as_secs_f64();
    let first_log = pair.primary_status()?.log.end_lsn;

    // 2. Clone it.
    eprintln!(
        "== clone: {} pages ({:.0} MB), running hadr clone",
        pages,
        (pages * HADR_PAGE_SIZE) as f64 / MB
    );
    let clone_time = pair.clone_standby()?;
    let db_bytes = std::fs::metadata(pair.standby_data().join("data.db"))
        .context("the clone has no data.db")?
        .len();
    let clone_secs = clone_time.as_secs_f64();
    pair.start_standby()?;
    pair.wait_caught_up(Duration::from_secs(300))?;
    let verify_after_clone = pair.run_verify();

    // 3. Standby down, bulk load on the primary.
    pair.stop_standby()?;
    let v = pair.standby_view()?;
    let start_lsn = v.replayed.min(v.end);
    eprintln!(
        "== replay: standby stopped at LSN {start_lsn}; loading about {:.0} MB on the primary",
        target_bytes as f64 / MB
    );
    let t = Instant::now();
    let end1 = loop {
        proc::check_interrupted()?;
        bulk_insert(&conn, next_id)?;
        next_id += u64::from(BULK_ROWS);
        let end = pair.primary_status()?.log.end_lsn;
        if end.saturating_sub(start_lsn) >= target_bytes {
            break end;
        }
    };
    let load_secs = t.elapsed().as_secs_f64();
    // The primary's page hash is cached while its log end stays put: make
    // sure it is computed now, not while the standby catches up.
    let v = pair.primary_status()?;
    let pages1 = v.page_hash.map_or(0, |h| u64::from(h.pages));
    let end_check = pair.primary_status()?.log.end_lsn;
    if end_check != end1 {
        bail!("the primary's log end moved from {end1} to {end_check} while idle");
    }

    // 4. Standby up: time until it has replayed the primary's log end.
    eprintln!(
        "== replay: {:.0} MB of log to catch up; starting the standby",
        (end1 - start_lsn) as f64 / MB
    );
    let t0 = Instant::now();
    pair.spawn_standby_nowait()?;
    let mut connected_at: Option<f64> = None;
    let mut polls = 0u64;
    let replay_total = loop {
        proc::check_interrupted()?;
        pair.check_children()?;
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!("the standby did not catch up within 1800 s");
        }
        if let Ok(v) = pair.standby_view() {
            polls += 1;
            let connected = v.connect == ConnectStatus::Connected;
            if connected_at.is_none() && connected {
                connected_at = Some(t0.elapsed().as_secs_f64());
            }
            if connected && v.replayed >= end1 {
                break t0.elapsed().as_secs_f64();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let connected_at = connected_at.unwrap_or(replay_total);
    let end_after = pair.primary_status()?.log.end_lsn;
    let verify_after_replay = pair.run_verify();
    let replay_bytes = end1 - start_lsn;
    let catchup_secs = (replay_total - connected_at).max(1e-6);
    let result = CloneReplay {
        db_bytes,
        pages,
        page_size: HADR_PAGE_SIZE,
        first_load_log_bytes: first_log,
        first_load_secs,
        clone_secs,
        clone_mb_s: db_bytes as f64 / MB / clone_secs.max(1e-6),
        verify_after_clone,
        replay_log_bytes: replay_bytes,
        replay_growth_bytes: pages1.saturating_sub(pages) * HADR_PAGE_SIZE,
        replay_load_secs: load_secs,
        standby_connect_secs: connected_at,
        replay_total_secs: replay_total,
        replay_mb_s: replay_bytes as f64 / MB / catchup_secs,
        replay_mb_s_from_start: replay_bytes as f64 / MB / replay_total.max(1e-6),
        replay_polls: polls,
        primary_log_moved: end_after != end1,
        verify_after_replay,
    };
    pair.stop()?;
    Ok(result)
}
