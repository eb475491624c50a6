//! The takeover part: graceful and forced takeover times under pgbench load,
//! the old primary's rejoin time, and a page-level rewind of a diverged old
//! primary against a full re-clone of the same database.
//!
//! Times are taken from outside, as a user sees them: from the takeover
//! request (`POST /takeover` on the standby's admin port, which is what
//! `hadr takeover --node STANDBY` sends) to the first write the new primary
//! accepts (an UPDATE over a fresh connection, retried every millisecond,
//! so the resolution is one such round, about a millisecond).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_admin_api::steps;
use hadr_testkit::{self as kit, spelling, ConnectStatus, NodeRole, PairState, Server, Status};
use serde::{Deserialize, Serialize};

use crate::proc;
use crate::replication;
use crate::report::{Consistency, Machine, StandbyCheck};
use crate::targets::{self, ConnInfo};
use crate::Ctx;

/// This part's section of docs/benchmarks.md.
const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:takeover:begin -->",
    end: "<!-- hadr-bench:takeover:end -->",
    heading: "## Takeover and rewind",
    intro: "How long a role switch takes, and how an old primary comes back.",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// pgbench clients of the load during each takeover.
const CLIENTS: u32 = 4;
const SYNCMODE: &str = "NEARSYNC";
const HADR_TIMEOUT: &str = "1s";
/// The table the first-write probe updates (one row).
const PROBE_SQL: &str = "UPDATE tk SET n = n + 1 WHERE id = 1";
const MIB: u64 = 1 << 20;

/// One takeover.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Switch {
    /// Old primary → new primary ("a" or "b").
    pub from: String,
    pub to: String,
    /// The standby's HADR state as the takeover saw it: PEER for a graceful
    /// one (checked on the primary), what `POST /takeover?force=true`
    /// answered for a forced one.
    pub standby_state: String,
    /// pgbench still running when the request went out.
    pub load_running: bool,
    /// Commits per second on the primary in the 0.5 s before the switch.
    pub load_tps: f64,
    /// Until `POST /takeover` answered.
    pub request_ms: f64,
    /// Until the first write accepted on the new primary.
    pub first_write_ms: f64,
    /// Forced: from the `kill -9` of the primary to the first write.
    pub from_kill_ms: Option<f64>,
    /// Forced: from restarting the killed node to its /status saying
    /// standby, CONNECTED.
    pub rejoin_ms: Option<f64>,
    /// Forced: whether the restarted node rewound (its log says so).
    pub rewound: Option<bool>,
    /// From the new primary's /status (`activity_history`): its first
    /// takeover step to the step "the primary handed over" (graceful only).
    pub handover_ms: Option<f64>,
    /// From the new primary's /status: from the hand-over (graceful) or its
    /// first takeover step (forced) to the start of its run as primary
    /// (`started_micros`).
    pub restart_ms: Option<f64>,
    /// sum(accounts.abalance) = sum(history.delta) on the new primary.
    pub sums: Consistency,
}

/// One rewind of a diverged old primary, and a re-clone for comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewindRun {
    /// Old primary → new primary ("a" or "b").
    pub from: String,
    pub to: String,
    /// Log the old primary wrote after its standby went down.
    pub diverged_log_bytes: u64,
    /// Log the new primary wrote after its takeover.
    pub new_log_bytes: u64,
    pub rewind_secs: f64,
    /// Of rewind_secs, opening the crashed node's data directory (its own
    /// crash recovery), as `hadr rejoin` reports it.
    pub open_secs: Option<f64>,
    pub pages: Option<u64>,
    pub log_bytes: Option<u64>,
    /// Phases of the rewind, from the timestamps `hadr rejoin` logs:
    /// (what, seconds).
    pub phases: Vec<(String, f64)>,
    /// What `hadr rejoin` printed.
    pub line: String,
    pub clone_secs: f64,
    pub clone_line: String,
    /// The rewound node, started, until it followed as a connected standby.
    pub follow_secs: f64,
    pub verify: StandbyCheck,
}

/// The rewind against re-clone comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewindResult {
    /// Size of data.db of the last re-clone.
    pub db_bytes: u64,
    pub load_secs: f64,
    /// Asked for with --rewind-diverged-mb.
    pub diverged_mib: u64,
    /// Rows the old primary updates after its standby went down.
    pub diverged_rows: u64,
    pub runs: Vec<RewindRun>,
}

impl RewindResult {
    fn median(&self, f: impl Fn(&RewindRun) -> f64) -> f64 {
        pct(&sorted(self.runs.iter().map(f)), 50.0)
    }

    /// Median over the runs of re-clone time ÷ rewind time.
    pub fn ratio(&self) -> f64 {
        self.median(|r| r.clone_secs / r.rewind_secs.max(1e-9))
    }

    /// Seconds per run and their median, rewind phases included.
    fn table(&self) -> String {
        let mut s = String::new();
        let n = self.runs.len();
        let _ = write!(
            s,
            "| {:.0} MiB database, {} rows diverged | ",
            self.db_bytes as f64 / MIB as f64,
            self.diverged_rows
        );
        for (i, r) in self.runs.iter().enumerate() {
            let _ = write!(s, "run {} ({}→{}) | ", i + 1, r.from, r.to);
        }
        s.push_str("median |\n| --- |");
        s.push_str(&" ---: |".repeat(n + 1));
        s.push('\n');
        let mut row = |label: &str, f: &dyn Fn(&RewindRun) -> Option<f64>, prec: usize| {
            let vals: Vec<Option<f64>> = self.runs.iter().map(f).collect();
            let _ = write!(s, "| {label} | ");
            for v in &vals {
                match v {
                    Some(v) => {
                        let _ = write!(s, "{v:.prec$} | ");
                    }
                    None => s.push_str("— | "),
                }
            }
            let got = sorted(vals.iter().flatten().copied());
            if got.is_empty() {
                s.push_str("— |\n");
            } else {
                let _ = writeln!(s, "{:.prec$} |", pct(&got, 50.0));
            }
        };
        row("**rewind** (`hadr rejoin`), s", &|r| Some(r.rewind_secs), 2);
        let names: Vec<String> = self
            .runs
            .iter()
            .find(|r| !r.phases.is_empty())
            .map(|r| r.phases.iter().map(|(w, _)| w.clone()).collect())
            .unwrap_or_default();
        for (k, name) in names.iter().enumerate() {
            row(
                &format!("… {name}"),
                &|r| r.phases.get(k).map(|(_, t)| *t),
                2,
            );
        }
        row(
            "**full re-clone** (`hadr clone`), s",
            &|r| Some(r.clone_secs),
            2,
        );
        row(
            "re-clone ÷ rewind",
            &|r| Some(r.clone_secs / r.rewind_secs.max(1e-9)),
            1,
        );
        row(
            "diverged log on the old primary, MB",
            &|r| Some(r.diverged_log_bytes as f64 / 1e6),
            1,
        );
        row(
            "pages fetched by the rewind",
            &|r| r.pages.map(|p| p as f64),
            0,
        );
        row(
            "log fetched by the rewind, MB",
            &|r| r.log_bytes.map(|b| b as f64 / 1e6),
            1,
        );
        row(
            "rewound node started → connected standby, s",
            &|r| Some(r.follow_secs),
            2,
        );
        s
    }

    /// The prose of the rewind subsection.
    fn section(&self) -> String {
        let mut s = String::new();
        let ratio = self.ratio();
        let n = self.runs.len();
        s.push_str("\n### Rewind against re-clone\n\n");
        let _ = writeln!(
            s,
            "A fresh pair (same flags) with a {:.0} MiB database (rows of 4000 random bytes, one per page, loaded in \
             {:.0} s), then {n} run(s), roles alternating: the standby is killed; the primary updates {} rows (about \
             {} MiB of pages, other rows each run), log the standby never receives; the primary is killed; the \
             standby is restarted, forced to take over, and updates about 1 MiB of its own. Then `hadr rejoin --from \
             NEW_PRIMARY --data OLD_PRIMARY_DIR` rewinds the stopped old primary (timed), and `hadr clone --from \
             NEW_PRIMARY` copies the new primary into a fresh directory for comparison (timed). The rewound node is \
             started, must follow, and `hadr verify` must find it identical to the new primary. The rewind's phases \
             come from the timestamps `hadr rejoin` logs.\n",
            self.db_bytes as f64 / MIB as f64,
            self.load_secs,
            self.diverged_rows,
            self.diverged_mib,
        );
        let verified = self.runs.iter().filter(|r| r.verify.ok()).count();
        let _ = writeln!(
            s,
            "- Median rewind {:.2} s against median re-clone {:.2} s ({:.0} MB/s); the median ratio: rewind is \
             **{ratio:.1}×** faster (target ≥ 10×: **{}**).",
            self.median(|r| r.rewind_secs),
            self.median(|r| r.clone_secs),
            self.db_bytes as f64 / 1e6 / self.median(|r| r.clone_secs).max(1e-9),
            if ratio >= 10.0 { "met" } else { "not met" }
        );
        let _ = writeln!(
            s,
            "- `hadr verify` after each rewind: identical in {verified} of {n} runs{}.",
            match self.runs.iter().find(|r| !r.verify.ok()) {
                Some(r) => format!(" (**FAILED**: {})", check_cell(&r.verify)),
                None => self
                    .runs
                    .last()
                    .map(|r| format!(" (last: {})", check_cell(&r.verify)))
                    .unwrap_or_default(),
            }
        );
        if let Some(r) = self.runs.last() {
            let _ = writeln!(s, "- `hadr rejoin` printed (last run): `{}`", r.line);
            if !r.clone_line.is_empty() {
                let _ = writeln!(s, "- `hadr clone` printed (last run): `{}`", r.clone_line);
            }
        }
        s
    }
}

/// What this part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TakeoverReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub load_program_start: String,
    pub versions: Vec<(String, String)>,
    pub accounts: u32,
    pub clients: u32,
    /// A psql round against a primary (the resolution of the first-write probe).
    pub probe_ms: f64,
    pub graceful: Vec<Switch>,
    pub forced: Vec<Switch>,
    /// `hadr verify` of the pair after both series.
    pub verify: StandbyCheck,
    pub rewind: Option<RewindResult>,
    pub notes: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One `hadr server` of a two-node cluster; its role changes.
struct Node {
    name: &'static str,
    server: Server,
    /// Its replication address.
    local: String,
    /// The flags of every start (the data directory knows the role).
    flags: Vec<String>,
}

impl Node {
    fn conn(&self) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.server.port,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn admin_addr(&self) -> String {
        self.server.admin_addr()
    }

    fn repl_addr(&self) -> String {
        self.local.clone()
    }

    fn dir(&self) -> &Path {
        &self.server.dir
    }

    fn log(&self) -> &Path {
        self.server.log_path()
    }

    /// `hadr server` with this node's flags plus `extra`; does not wait.
    fn spawn(&mut self, extra: &[&str]) -> Result<()> {
        let mut args = self.flags.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.server.extra = args;
        self.server.spawn_nowait()
    }

    fn kill9(&mut self) {
        self.server.kill9();
    }

    /// SIGTERM; an unclean exit is an error.
    fn stop(&mut self) -> Result<()> {
        if !self.server.alive() {
            self.server.kill9();
            return Ok(());
        }
        let st = self
            .server
            .stop()
            .with_context(|| format!("stopping node {}", self.name))?;
        if !st.success() {
            bail!(
                "node {} exited with {st} on SIGTERM; log tail:\n{}",
                self.name,
                proc::tail_file(self.log(), 15)
            );
        }
        Ok(())
    }

    fn status(&self) -> Option<Status> {
        kit::block_on(self.server.status()).ok()
    }

    /// Polls /status every 10 ms until `f` holds; fails after `secs` or when
    /// the server exits. Returns the status that satisfied `f`.
    fn wait_for(&mut self, what: &str, secs: u64, f: impl Fn(&Status) -> bool) -> Result<Status> {
        kit::block_on(self.server.wait_for(what, Duration::from_secs(secs), f))
            .with_context(|| format!("node {}", self.name))
    }

    /// Lines of its log containing `needle`.
    fn log_count(&self, needle: &str) -> usize {
        self.server
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn end_lsn(&self) -> Result<u64> {
        self.status()
            .map(|s| s.log.end_lsn)
            .with_context(|| format!("node {}: no /status", self.name))
    }
}

fn is_primary(s: &Status) -> bool {
    s.is_writable_primary()
}

fn follows(s: &Status) -> bool {
    s.follows()
}

fn in_peer(s: &Status) -> bool {
    s.principal_in(PairState::Peer)
}

/// µs since the Unix epoch (the clock the nodes' status times use).
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// (hand-over, restart) in ms, from the new primary's /status after a
/// takeover requested at `since_us` (µs since the Unix epoch); see [`Switch`].
fn phases(st: &Status, since_us: u64) -> (Option<f64>, Option<f64>) {
    let steps: Vec<_> = st
        .activity_history
        .iter()
        .filter(|a| a.since_micros >= since_us)
        .collect();
    let start = steps
        .iter()
        .find(|a| a.what == steps::GRACEFUL_TAKEOVER || a.what == steps::FORCED_TAKEOVER)
        .map(|a| a.since_micros);
    let handed = steps
        .iter()
        .find(|a| a.what == steps::GRACEFUL_TAKEOVER && a.step == steps::HANDED_OVER)
        .map(|a| a.since_micros);
    let serving = (st.started_micros >= since_us).then_some(st.started_micros);
    let span = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
    let handover = start.zip(handed).map(|(a, b)| span(a, b));
    let restart = handed.or(start).zip(serving).map(|(a, b)| span(a, b));
    (handover, restart)
}

/// Runs one statement over the PostgreSQL v3 protocol: startup (hadr
/// asks for no password), a simple query, terminate. No psql process: on a
/// busy machine starting one costs tens of milliseconds, which would swamp
/// the times measured here.
fn pg_exec(conn: &ConnInfo, sql: &str, timeout: Duration) -> Result<()> {
    use std::io::{Read, Write};
    let sa: SocketAddr = format!("{}:{}", conn.host, conn.port)
        .parse()
        .context("bad address")?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    for (k, v) in [("user", &conn.user), ("database", &conn.dbname)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = u32::try_from(body.len() + 4)?.to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    s.write_all(&startup)?;
    let mut sent = false;
    let mut error = None;
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 20).contains(&len) {
            bail!("bad message length {len} from port {}", conn.port);
        }
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body)?;
        match head[0] {
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0][..]) => {
                bail!("port {} asks for a password", conn.port)
            }
            b'E' if !sent => bail!("{}", error_text(&body)),
            b'E' => error = Some(error_text(&body)),
            b'Z' if sent => break,
            b'Z' => {
                let mut q = vec![b'Q'];
                q.extend_from_slice(&u32::try_from(sql.len() + 5)?.to_be_bytes());
                q.extend_from_slice(sql.as_bytes());
                q.push(0);
                s.write_all(&q)?;
                sent = true;
            }
            _ => {}
        }
    }
    let _ = s.write_all(&[b'X', 0, 0, 0, 4]);
    match error {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// "SQLSTATE: message" of an ErrorResponse body.
fn error_text(body: &[u8]) -> String {
    let (mut code, mut msg) = (String::new(), String::new());
    for f in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        match f[0] {
            b'C' => code = String::from_utf8_lossy(&f[1..]).into_owned(),
            b'M' => msg = String::from_utf8_lossy(&f[1..]).into_owned(),
            _ => {}
        }
    }
    format!("{code}: {msg}")
}

/// Retries [`PROBE_SQL`] until the node accepts it.
fn first_write(conn: &ConnInfo, secs: u64) -> Result<()> {
    let start = Instant::now();
    loop {
        proc::check_interrupted()?;
        let err = match pg_exec(conn, PROBE_SQL, Duration::from_secs(2)) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() > Duration::from_secs(secs) {
            bail!(
                "no write accepted by port {} within {secs} s; last error: {err:#}",
                conn.port
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// pgbench with [`CLIENTS`] clients on the benchmark script, in the
/// background; its output is appended to `log`.
fn start_load(conn: &ConnInfo, script: &Path, log: &Path) -> Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let clients = CLIENTS.to_string();
    let mut c = Command::new("pgbench");
    c.args([
        "-n", "-M", "prepared", "-c", &clients, "-j", "2", "-T", "120",
    ])
    .arg("-f")
    .arg(script)
    .args(conn.args())
    .arg(&conn.dbname)
    .stdin(Stdio::null())
    .stdout(file.try_clone()?)
    .stderr(file);
    proc::spawn(&mut c)
}

fn stop_load(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Percentile (nearest rank) of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// "runs | p50 | p99 | min | max" cells, in ms.
fn summary(v: impl Iterator<Item = f64>) -> String {
    let v = sorted(v);
    if v.is_empty() {
        return "0 | — | — | — | —".into();
    }
    let cell = |x: f64| {
        if x < 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.0}")
        }
    };
    format!(
        "{} | {} | {} | {} | {}",
        v.len(),
        cell(pct(&v, 50.0)),
        cell(pct(&v, 99.0)),
        cell(v[0]),
        cell(v[v.len() - 1])
    )
}

fn two_nodes(bin: &Path, home: &Path) -> Result<[Node; 2]> {
    if !bin.exists() {
        bail!(
            "hadr binary {} not found (build it with cargo build --release, or pass --hadr)",
            bin.display()
        );
    }
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let p = targets::free_ports(6)?;
    let node = |name: &'static str, pg, admin, local, peer_local| {
        let flags = [
            "--hadr-local",
            &kit::local(local),
            "--hadr-target-list",
            &kit::local(peer_local),
            "--hadr-syncmode",
            SYNCMODE,
            "--hadr-timeout",
            HADR_TIMEOUT,
        ]
        .map(String::from)
        .to_vec();
        Node {
            name,
            server: replication::server(bin, home.join(name), pg, admin, Vec::new()),
            local: kit::local(local),
            flags,
        }
    };
    Ok([
        node("a", p[0], p[1], p[2], p[5]),
        node("b", p[3], p[4], p[5], p[2]),
    ])
}

/// `hadr init` A, start it as primary, run `setup` on it, clone B from it,
/// start B, wait for PEER. Returns the seconds `setup` took.
fn start_pair(bin: &Path, nodes: &mut [Node; 2], setup: &[String]) -> Result<f64> {
    let [a, b] = nodes;
    let mut c = Command::new(bin);
    c.arg("init").arg("--data").arg(a.dir());
    proc::run_ok(&mut c, Duration::from_secs(60), "hadr init")?;
    a.spawn(&["--role", "primary"])?;
    a.wait_for("writable primary", 60, is_primary)?;
    let t = Instant::now();
    targets::psql(&a.conn(), setup, Duration::from_secs(1800))?;
    let setup_secs = t.elapsed().as_secs_f64();
    replication::hadr_clone(bin, &a.repl_addr(), b.dir())?;
    b.spawn(&[])?;
    a.wait_for("standby in PEER", 300, in_peer)?;
    Ok(setup_secs)
}

/// Copies every *.log under `dirs` to a directory that outlives the work
/// directory; returns it.
fn keep_logs(dirs: &[PathBuf]) -> Option<PathBuf> {
    let keep =
        std::env::temp_dir().join(format!("hadr-bench-takeover-logs-{}", std::process::id()));
    let mut kept = false;
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") && std::fs::create_dir_all(&keep).is_ok() {
                let tag = d.file_name().unwrap_or_default().to_string_lossy();
                let name = format!("{tag}-{}", e.file_name().to_string_lossy());
                kept |= std::fs::copy(&p, keep.join(name)).is_ok();
            }
        }
    }
    kept.then_some(keep)
}

/// Runs the part and writes its section of the document; the caller fails
/// the program if [`TakeoverReport::failures`] is not zero.
pub fn run_part(
    ctx: &Ctx,
    runs: usize,
    rewind_db_mib: u64,
    rewind_diverged_mib: u64,
    rewind_runs: usize,
) -> Result<TakeoverReport> {
    let load_before = crate::load_average();
    let dirs = [ctx.work.join("takeover"), ctx.work.join("rewind")];
    let mut report = match measure(ctx, runs, rewind_db_mib, rewind_diverged_mib, rewind_runs) {
        Ok(r) => r,
        Err(e) => {
            let e = match keep_logs(&dirs) {
                Some(k) => e.context(format!("server and pgbench logs kept in {}", k.display())),
                None => e,
            };
            return Err(e.context("the takeover part failed"));
        }
    };
    report.machine = crate::machine_since(load_before);
    let bad = report.failures();
    if bad > 0 {
        if let Some(k) = keep_logs(&dirs) {
            report
                .notes
                .push(format!("server and pgbench logs kept in {}", k.display()));
        }
    }
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!("wrote the takeover section of {}", ctx.out_path.display());
    Ok(report)
}

fn measure(
    ctx: &Ctx,
    runs: usize,
    rewind_db_mib: u64,
    rewind_diverged_mib: u64,
    rewind_runs: usize,
) -> Result<TakeoverReport> {
    let bin = &ctx.hadr_bin;
    let home = ctx.work.join("takeover");
    let mut nodes = two_nodes(bin, &home)?;
    let mut v = Command::new(bin);
    v.arg("--version");
    let hadr_version = proc::run_ok(&mut v, Duration::from_secs(10), "hadr --version")?
        .stdout
        .trim()
        .to_string();
    let mut setup = targets::hadr_setup_sql();
    setup.push("CREATE TABLE tk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)".into());
    setup.push("INSERT INTO tk VALUES (1, 0)".into());
    eprintln!(
        "== takeover: starting a {SYNCMODE} pair with {} accounts",
        targets::ACCOUNTS
    );
    start_pair(bin, &mut nodes, &setup)?;
    let pgbench_log = home.join("pgbench.log");

    // The probe's own cost: rounds against a primary that accepts them.
    let t = Instant::now();
    for _ in 0..10 {
        first_write(&nodes[0].conn(), 10)?;
    }
    let probe_ms = ms(t.elapsed()) / 10.0;

    let (mut p, mut s) = (0usize, 1usize);
    let mut graceful = Vec::new();
    let mut forced = Vec::new();
    for forced_run in [false, true] {
        let kind = if forced_run { "forced" } else { "graceful" };
        for i in 0..runs {
            proc::check_interrupted()?;
            nodes[p].wait_for("standby in PEER", 120, in_peer)?;
            let load = start_load(&nodes[p].conn(), &ctx.script, &pgbench_log)?;
            let (from, to) = (nodes[p].name, nodes[s].name);
            let sw = switch(&mut nodes, p, s, load, forced_run)
                .with_context(|| format!("{kind} takeover {i} ({from} → {to})"))?;
            eprintln!(
                "{kind:<8} takeover {i:>2} {from}→{to}: first write {:>5.0} ms (request answered {:>4.0} ms){}; \
                 standby was {}; load {} at {:.0} tps; sums {}",
                sw.first_write_ms,
                sw.request_ms,
                match (sw.from_kill_ms, sw.rejoin_ms, sw.rewound) {
                    (Some(k), Some(r), Some(rw)) => format!(
                        ", from the kill {k:.0} ms, rejoin {r:.0} ms{}",
                        if rw { " (rewound)" } else { "" }
                    ),
                    _ => String::new(),
                },
                sw.standby_state,
                if sw.load_running {
                    "running"
                } else {
                    "NOT RUNNING"
                },
                sw.load_tps,
                match &sw.sums {
                    Consistency::Ok { .. } => "ok".to_string(),
                    other => format!("{other:?}"),
                },
            );
            if forced_run {
                forced.push(sw);
            } else {
                graceful.push(sw);
            }
            std::mem::swap(&mut p, &mut s);
        }
    }
    nodes[p].wait_for("standby in PEER", 120, in_peer)?;
    let verify = replication::verify_nodes(bin, &nodes[p].admin_addr(), &nodes[s].admin_addr());
    eprintln!("== takeover: hadr verify of the pair: {verify:?}");
    let mut notes = Vec::new();
    for n in nodes.iter_mut() {
        if let Err(e) = n.stop() {
            notes.push(format!("{e:#}"));
        }
        notes.extend(unexpected_log_lines(
            &format!("takeover node {}", n.name),
            n.log(),
        ));
    }
    drop(nodes);

    let rewind = if rewind_db_mib > 0 && rewind_runs > 0 {
        Some(rewind_vs_clone(
            bin,
            &ctx.work.join("rewind"),
            rewind_db_mib,
            rewind_diverged_mib.max(1),
            rewind_runs,
            &mut notes,
        )?)
    } else {
        None
    };
    Ok(TakeoverReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine(),
        load_program_start: ctx.load_program_start.clone(),
        versions: vec![
            ("hadr".into(), hadr_version),
            ("pgbench".into(), ctx.pgbench_version.clone()),
            ("psql".into(), ctx.psql_version.clone()),
        ],
        accounts: targets::ACCOUNTS,
        clients: CLIENTS,
        probe_ms,
        graceful,
        forced,
        verify,
        rewind,
        notes,
    })
}

/// One takeover of `nodes[p]`'s role by `nodes[s]` while `load` runs
/// against `nodes[p]`. Forced: `nodes[p]` is killed first, and restarted
/// after the switch until it follows `nodes[s]`.
fn switch(nodes: &mut [Node; 2], p: usize, s: usize, load: Child, forced: bool) -> Result<Switch> {
    let mut load = Some(load);
    let r = switch_inner(nodes, p, s, &mut load, forced);
    if let Some(l) = load {
        stop_load(l);
    }
    r
}

fn switch_inner(
    nodes: &mut [Node; 2],
    p: usize,
    s: usize,
    load: &mut Option<Child>,
    forced: bool,
) -> Result<Switch> {
    // Let pgbench connect and get going, then measure its commit rate.
    proc::sleep(Duration::from_millis(300))?;
    let c0 = nodes[p].status().map(|s| s.commits);
    let t0 = Instant::now();
    proc::sleep(Duration::from_millis(500))?;
    let c1 = nodes[p].status().map(|s| s.commits);
    let load_tps = match (c0, c1) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / t0.elapsed().as_secs_f64(),
        _ => 0.0,
    };
    let load_running = match load.as_mut() {
        Some(l) => l.try_wait()?.is_none(),
        None => false,
    };
    let killed = Instant::now();
    if forced {
        nodes[p].kill9();
        // The standby must have noticed before it may be forced.
        nodes[s].wait_for("its primary gone", 30, |st| {
            st.standby_view()
                .is_some_and(|v| v.hadr_connect_status != ConnectStatus::Connected)
        })?;
    }
    let admin = nodes[s]
        .server
        .admin()
        .with_timeout(Duration::from_secs(60));
    let requested_us = now_micros();
    let t = Instant::now();
    let answer = kit::block_on(admin.takeover(forced, false))
        .with_context(|| format!("standby log tail:\n{}", proc::tail_file(nodes[s].log(), 15)))?;
    let request_ms = ms(t.elapsed());
    first_write(&nodes[s].conn(), 60).with_context(|| {
        format!(
            "after the takeover answered {answer:?}; log tail:\n{}",
            proc::tail_file(nodes[s].log(), 20)
        )
    })?;
    let first_write_ms = ms(t.elapsed());
    let from_kill_ms = forced.then(|| ms(killed.elapsed()));
    let standby_state = match answer.state {
        Some(state) => spelling(&state),
        None if forced => "?".into(),
        None => spelling(&PairState::Peer),
    };
    if let Some(l) = load.take() {
        stop_load(l);
    }
    let sums = crate::check_sums(&nodes[s].conn());
    let (mut rejoin_ms, mut rewound) = (None, None);
    if forced {
        let before = nodes[p].log_count("rewind complete");
        let r = Instant::now();
        nodes[p].spawn(&[])?;
        nodes[p].wait_for("old primary following as a connected standby", 120, follows)?;
        rejoin_ms = Some(ms(r.elapsed()));
        rewound = Some(nodes[p].log_count("rewind complete") > before);
    } else {
        nodes[p].wait_for("old primary following as a connected standby", 60, follows)?;
    }
    let st = nodes[s].wait_for("new primary writable", 10, is_primary)?;
    let (handover_ms, restart_ms) = phases(&st, requested_us);
    Ok(Switch {
        from: nodes[p].name.into(),
        to: nodes[s].name.into(),
        standby_state,
        load_running,
        load_tps,
        request_ms,
        first_write_ms,
        from_kill_ms,
        rejoin_ms,
        rewound,
        handover_ms,
        restart_ms,
        sums,
    })
}

/// From `hadr rejoin`'s "rewound DIR from LSN .. to ..: dropped its own
/// records ..; fetched N pages and M bytes of log in S s (O s of it opening
/// the data directory, ...)": (N, M, O).
fn parse_rewind_line(line: &str) -> (Option<u64>, Option<u64>, Option<f64>) {
    let after = |key: &str| line.split_once(key).map(|(_, r)| r);
    let pages = after("fetched ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let log = after(" pages and ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let open = line
        .rsplit_once(" s of it opening")
        .and_then(|(l, _)| l.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok());
    (pages, log, open)
}

/// The phases of a rewind from `hadr rejoin`'s log lines, each of which
/// carries `secs=` since the rewind started; the last phase is the rest of
/// the command's `wall` time.
fn rewind_phases(log: &str, wall: f64) -> Vec<(String, f64)> {
    const MARKS: [(&str, &str); 4] = [
        (
            "rewind: data directory opened",
            "opening the crashed data directory (its own crash recovery)",
        ),
        (
            "rewind: pages changed after the divergence point listed",
            "listing the pages its records after the divergence point touched",
        ),
        (
            "rewind: pages and log received",
            "fetching those pages and the new primary's log",
        ),
        (
            "rewind: applied and checkpointed",
            "applying them and checkpointing",
        ),
    ];
    let secs_of = |needle: &str| -> Option<f64> {
        let line = log.lines().find(|l| l.contains(needle))?;
        let (_, rest) = line.split_once("secs=")?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut out = Vec::new();
    let mut prev = 0.0;
    for (needle, what) in MARKS {
        let Some(t) = secs_of(needle) else {
            return Vec::new();
        };
        out.push((what.to_string(), t - prev));
        prev = t;
    }
    out.push((
        "the rest: starting the program, recording the epoch, closing".to_string(),
        (wall - prev).max(0.0),
    ));
    out
}

/// A pair with a `db_mib` database, then `runs` times: the standby goes
/// down; the primary updates `diverged_mib` of rows that the standby never
/// gets; the primary is killed; the standby is restarted, forced to take
/// over and writes a little; the stopped old primary is rewound (`hadr
/// rejoin`, timed) and, for comparison, the new primary is cloned in full
/// (timed); the rewound node is started, must follow, and must verify
/// identical. Roles alternate.
fn rewind_vs_clone(
    bin: &Path,
    home: &Path,
    db_mib: u64,
    diverged_mib: u64,
    runs: usize,
    notes: &mut Vec<String>,
) -> Result<RewindResult> {
    let mut nodes = two_nodes(bin, home)?;
    // One 4000-byte row per 4 KiB page.
    let rows = db_mib * MIB / 4096;
    let batch = 25_000u64;
    let mut setup = vec!["CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)".to_string()];
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        setup.push(format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
             INSERT INTO blobs(b) SELECT randomblob(4000) FROM s"
        ));
        done += n;
    }
    eprintln!("== rewind: building a {db_mib} MiB database ({rows} rows of 4000 bytes)");
    let load_secs = start_pair(bin, &mut nodes, &setup)?;
    eprintln!("== rewind: loaded in {load_secs:.1} s");
    let every = (rows * 4096 / (diverged_mib * MIB)).max(1);
    let mut out = Vec::new();
    let mut db_bytes = 0;
    let (mut p, mut s) = (0usize, 1usize);
    for i in 0..runs {
        proc::check_interrupted()?;
        let (from, to) = (nodes[p].name, nodes[s].name);
        let (run, bytes) = rewind_once(bin, home, &mut nodes, p, s, every, i)
            .with_context(|| format!("rewind {i} ({from} → {to})"))?;
        eprintln!(
            "rewind {i} {from}→{to}: rewind {:.2} s ({}), re-clone {:.2} s; {}",
            run.rewind_secs,
            run.phases
                .iter()
                .map(|(w, t)| format!(
                    "{t:.2} {}",
                    match w.split_whitespace().next() {
                        Some("the") => "rest",
                        Some(first) => first,
                        None => "",
                    }
                ))
                .collect::<Vec<_>>()
                .join(", "),
            run.clone_secs,
            check_cell(&run.verify)
        );
        let ok = run.verify.ok();
        let line = run.line.clone();
        let verify = run.verify.clone();
        out.push(run);
        db_bytes = bytes;
        if !ok {
            bail!(
                "the rewound old primary does not verify identical to the new primary: {verify:?}; \
                 hadr rejoin printed: {line}"
            );
        }
        std::mem::swap(&mut p, &mut s);
    }
    for n in nodes.iter_mut() {
        if let Err(e) = n.stop() {
            notes.push(format!("{e:#}"));
        }
        notes.extend(unexpected_log_lines(
            &format!("rewind node {}", n.name),
            n.log(),
        ));
    }
    Ok(RewindResult {
        db_bytes,
        load_secs,
        diverged_mib,
        diverged_rows: rows / every,
        runs: out,
    })
}

/// One run of [`rewind_vs_clone`] with `nodes[p]` the primary and
/// `nodes[s]` its standby in PEER; afterwards their roles are swapped and
/// they are in PEER again. Also returns the size of the re-cloned database.
fn rewind_once(
    bin: &Path,
    home: &Path,
    nodes: &mut [Node; 2],
    p: usize,
    s: usize,
    every: u64,
    i: usize,
) -> Result<(RewindRun, u64)> {
    nodes[p].wait_for("standby in PEER", 300, in_peer)?;
    nodes[s].kill9();
    let lsn0 = nodes[p].end_lsn()?;
    // Other rows each run, so that every run diverges afresh.
    targets::psql(
        &nodes[p].conn(),
        &[format!(
            "UPDATE blobs SET b = randomblob(4000) WHERE id % {every} = {}",
            i as u64 % every
        )],
        Duration::from_secs(600),
    )?;
    let diverged_log_bytes = nodes[p].end_lsn()?.saturating_sub(lsn0);
    nodes[p].kill9();
    nodes[s].spawn(&[])?;
    nodes[s].wait_for("standby up", 120, |st| st.role == NodeRole::Standby)?;
    let admin = nodes[s]
        .server
        .admin()
        .with_timeout(Duration::from_secs(60));
    kit::block_on(admin.takeover(true, false)).context("forced takeover")?;
    nodes[s].wait_for("new primary writable", 120, is_primary)?;
    let lsn1 = nodes[s].end_lsn()?;
    targets::psql(
        &nodes[s].conn(),
        &["UPDATE blobs SET b = randomblob(4000) WHERE id % 1000 = 1".to_string()],
        Duration::from_secs(600),
    )?;
    let new_log_bytes = nodes[s].end_lsn()?.saturating_sub(lsn1);

    // The old primary is stopped: rewind it offline, timed.
    let mut c = Command::new(bin);
    c.args(["rejoin", "--from", &nodes[s].repl_addr(), "--data"])
        .arg(nodes[p].dir())
        .env("NO_COLOR", "1");
    let t = Instant::now();
    let out = proc::run_ok(&mut c, Duration::from_secs(1800), "hadr rejoin")?;
    let rewind_secs = t.elapsed().as_secs_f64();
    let rejoin_log = targets::strip_ansi(&out.stderr);
    // Kept with the server logs if anything fails.
    let _ = std::fs::write(home.join(format!("rejoin-{i}.log")), &rejoin_log);
    let printed = targets::strip_ansi(&out.stdout);
    let line = printed
        .lines()
        .find(|l| l.starts_with("rewound") || l.contains("re-clon") || l.contains("no rewind"))
        .unwrap_or("")
        .trim()
        .to_string();
    if !line.starts_with("rewound") {
        bail!(
            "hadr rejoin did not rewind; it printed:\n{}\n{}",
            printed.trim(),
            rejoin_log.trim()
        );
    }
    let (pages, log_bytes, open_secs) = parse_rewind_line(&line);
    let phases = rewind_phases(&rejoin_log, rewind_secs);

    let fresh = home.join("fresh");
    let _ = std::fs::remove_dir_all(&fresh);
    let (clone_time, clone_out) = replication::hadr_clone(bin, &nodes[s].repl_addr(), &fresh)?;
    let db_bytes = std::fs::metadata(fresh.join("data.db"))
        .context("the clone has no data.db")?
        .len();
    let _ = std::fs::remove_dir_all(&fresh);
    let clone_line = clone_out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("start it"))
        .unwrap_or("")
        .trim()
        .to_string();

    let t = Instant::now();
    nodes[p].spawn(&[])?;
    nodes[p].wait_for(
        "rewound node following as a connected standby",
        300,
        follows,
    )?;
    let follow_secs = t.elapsed().as_secs_f64();
    nodes[s].wait_for("standby in PEER", 300, in_peer)?;
    let verify = replication::verify_nodes(bin, &nodes[s].admin_addr(), &nodes[p].admin_addr());
    Ok((
        RewindRun {
            from: nodes[p].name.into(),
            to: nodes[s].name.into(),
            diverged_log_bytes,
            new_log_bytes,
            rewind_secs,
            open_secs,
            pages,
            log_bytes,
            phases,
            line,
            clone_secs: clone_time.as_secs_f64(),
            clone_line,
            follow_secs,
            verify,
        },
        db_bytes,
    ))
}

/// Warnings and errors that killed primaries and takeovers are expected
/// to log (fencing, divergence, the start-up rule, lost connections).
const EXPECTED_LOG: [&str; 8] = [
    "FENCED",
    "diverged",
    "already primary before this start",
    "only the initial role",
    "replication from primary ended",
    "replication to standby ended",
    "Connection reset",
    "peer closed the connection",
];

fn unexpected_log_lines(label: &str, log: &Path) -> Vec<String> {
    replication::log_findings(label, log, &EXPECTED_LOG)
}

fn check_cell(c: &StandbyCheck) -> String {
    match c {
        StandbyCheck::PagesIdentical { lsn } => format!("identical pages at LSN {lsn}"),
        other => format!("**FAILED**: {other:?}"),
    }
}

impl TakeoverReport {
    /// SQL sum mismatches after takeovers, and failed verifications.
    pub fn failures(&self) -> usize {
        self.graceful
            .iter()
            .chain(&self.forced)
            .filter(|s| !matches!(s.sums, Consistency::Ok { .. }))
            .count()
            + usize::from(!self.verify.ok())
            + self
                .rewind
                .as_ref()
                .map_or(0, |r| r.runs.iter().filter(|x| !x.verify.ok()).count())
    }

    /// The results tables, for the terminal and the document.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str("| takeover | runs | p50 ms | p99 ms | min ms | max ms |\n");
        s.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
        let g = &self.graceful;
        let f = &self.forced;
        let rows: [(&str, String); 9] = [
            (
                "**graceful**: request → first write on the new primary",
                summary(g.iter().map(|x| x.first_write_ms)),
            ),
            (
                "graceful: request → `POST /takeover` answered",
                summary(g.iter().map(|x| x.request_ms)),
            ),
            (
                "graceful, new primary's `/status`: the old primary hands over",
                summary(g.iter().filter_map(|x| x.handover_ms)),
            ),
            (
                "graceful, new primary's `/status`: hand-over → running as primary",
                summary(g.iter().filter_map(|x| x.restart_ms)),
            ),
            (
                "**forced**: request → first write on the new primary",
                summary(f.iter().map(|x| x.first_write_ms)),
            ),
            (
                "forced: request → `POST /takeover?force=true` answered",
                summary(f.iter().map(|x| x.request_ms)),
            ),
            (
                "forced, new primary's `/status`: takeover begins → running as primary",
                summary(f.iter().filter_map(|x| x.restart_ms)),
            ),
            (
                "forced: `kill -9` of the primary → first write on the new primary",
                summary(f.iter().filter_map(|x| x.from_kill_ms)),
            ),
            (
                "**rejoin**: killed primary restarted → connected standby",
                summary(f.iter().filter_map(|x| x.rejoin_ms)),
            ),
        ];
        for (label, cells) in rows {
            let _ = writeln!(s, "| {label} | {cells} |");
        }
        if let Some(r) = &self.rewind {
            s.push('\n');
            s.push_str(&r.table());
        }
        s
    }

    /// The generated section, markers included.
    pub fn section(&self) -> String {
        let mut s = PART.start(&self.date, &self.command);
        s.push_str("### Setup\n\n");
        let m = &self.machine;
        if self.load_program_start != m.load_before {
            let _ = writeln!(
                s,
                "- Machine: {} CPUs ({}), {} RAM, Linux {}; 1-minute load average {} when the program started, \
                 {} at the start of this part, {} at its end",
                m.nproc,
                m.cpu,
                m.memory,
                m.kernel,
                self.load_program_start,
                m.load_before,
                m.load_after
            );
        } else {
            let _ = writeln!(s, "- {}", m.sentence());
        }
        for (prog, v) in &self.versions {
            let _ = writeln!(s, "- {prog}: `{v}`");
        }
        let _ = writeln!(
            s,
            "- Pair: two `hadr server`s on 127.0.0.1, each started with the same flags every time \
             (`--hadr-syncmode {SYNCMODE} --hadr-timeout {HADR_TIMEOUT}`, no peer window, log flush `fsync`); node a \
             made by `hadr init` and first started with `--role primary`, node b by `hadr clone` from it. Schema and \
             {} accounts rows as in the single-node section, plus a one-row table `tk` for the write probe.",
            self.accounts
        );
        let tps = sorted(self.graceful.iter().chain(&self.forced).map(|x| x.load_tps));
        let not_running = self
            .graceful
            .iter()
            .chain(&self.forced)
            .filter(|x| !x.load_running)
            .count();
        let _ = writeln!(
            s,
            "- Load: `pgbench -n -M prepared -c {} -j 2 -T 120 -f bench/pgbench.sql` against the current primary, \
             started 0.8 s before each takeover and stopped after it (its sessions end at the switch). Commits on the \
             primary in the 0.5 s before the switch: median {:.0}/s, lowest {:.0}/s; {}.",
            self.clients,
            pct(&tps, 50.0),
            tps.first().copied().unwrap_or(0.0),
            if not_running == 0 {
                "pgbench was running at every switch".to_string()
            } else {
                format!("**pgbench was not running at {not_running} switch(es)**")
            }
        );
        let _ = writeln!(
            s,
            "- Timing: from the request, `POST /takeover` on the standby's admin port (what `hadr takeover --node \
             STANDBY` sends), to the first `{PROBE_SQL}` the new primary accepts, retried every millisecond over a \
             fresh connection (the program speaks the wire protocol itself: starting psql costs tens of \
             milliseconds on a busy machine); one such round against a primary takes {:.1} ms here, which bounds \
             the resolution. The two phases in between come from the new primary's `/status`: the times of its takeover \
             steps (`activity_history`, kept across its restart as primary) and when its run as primary began \
             (`started_micros`). \
             Roles alternate every run (a→b, b→a, ...).",
            self.probe_ms
        );
        let mut states: Vec<(String, usize)> = Vec::new();
        for x in &self.forced {
            match states.iter_mut().find(|(st, _)| *st == x.standby_state) {
                Some((_, n)) => *n += 1,
                None => states.push((x.standby_state.clone(), 1)),
            }
        }
        let states: Vec<String> = states.iter().map(|(st, n)| format!("{st} ×{n}")).collect();
        let _ = writeln!(
            s,
            "- Graceful: the standby in PEER. Forced: the primary is killed with SIGKILL; once the standby has \
             noticed (its state as the takeover reported it: {}), `POST /takeover?force=true` (`hadr takeover --force`, without \
             `--peer-window-only`: there is no peer window). The killed node is then restarted with the same \
             command; it fences itself, rewinds if its log went past the divergence point, and follows. Rejoin time \
             is from that restart to its `/status` saying `role` standby and `hadr_connect_status` CONNECTED. Every \
             run starts with the pair in PEER.",
            if states.is_empty() {
                "-".to_string()
            } else {
                states.join(", ")
            }
        );
        s.push_str(
            "- Checks: after every takeover, sum(accounts.abalance) = sum(history.delta) on the new primary; after \
             both series, `hadr verify --node A --node B` on the pair.\n\n",
        );

        s.push_str("### Results\n\n");
        s.push_str(&self.table());
        s.push('\n');
        let g = sorted(self.graceful.iter().map(|x| x.first_write_ms));
        if !g.is_empty() {
            let p99 = pct(&g, 99.0);
            let _ = writeln!(
                s,
                "- Target: graceful takeover under 1 s: **{}** (p99 {:.0} ms over {} runs{}).",
                if p99 < 1000.0 { "met" } else { "not met" },
                p99,
                g.len(),
                if g.len() <= 100 {
                    "; with at most 100 runs p99 is the maximum"
                } else {
                    ""
                }
            );
        }
        if !self.forced.is_empty() {
            let rewound = self
                .forced
                .iter()
                .filter(|x| x.rewound == Some(true))
                .count();
            let _ = writeln!(
                s,
                "- The killed primary rewound (its log said \"rewind complete\") at {rewound} of {} restarts{}.",
                self.forced.len(),
                if rewound < self.forced.len() {
                    "; at the others its log ended at or before the divergence point, so it simply followed"
                } else {
                    ""
                }
            );
        }
        let bad_sums = self
            .graceful
            .iter()
            .chain(&self.forced)
            .filter(|x| !matches!(x.sums, Consistency::Ok { .. }))
            .count();
        if bad_sums == 0 {
            s.push_str("- SQL sums equal on the new primary after every takeover.\n");
        } else {
            let _ = writeln!(
                s,
                "- **SQL CONSISTENCY FAILURE after {bad_sums} takeover(s)**: sum(accounts.abalance) ≠ sum(history.delta)."
            );
        }
        let _ = writeln!(
            s,
            "- `hadr verify` of the pair afterwards: {}.",
            check_cell(&self.verify)
        );

        if let Some(r) = &self.rewind {
            s.push_str(&r.section());
        }
        if !self.notes.is_empty() {
            s.push_str("\n### Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {}", n.replace('\n', " "));
            }
        }
        let _ = writeln!(s, "\n{}", PART.end);
        s
    }

    /// Writes the section into the document at `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        PART.write(out, &self.section())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rewind_line() {
        let l = "rewound /tmp/x/a from LSN 10 to 20: dropped its own records 10..30, fetched 2450 pages and \
                 1012554 bytes of log in 0.76 s (0.45 s of it opening the data directory, i.e. its own crash recovery)";
        assert_eq!(
            parse_rewind_line(l),
            (Some(2450), Some(1012554), Some(0.45))
        );
        assert_eq!(parse_rewind_line("no rewind needed"), (None, None, None));
    }

    fn step(what: &str, step: &str, since_micros: u64) -> hadr_admin_api::Activity {
        hadr_admin_api::Activity {
            what: what.into(),
            step: step.into(),
            since_micros,
        }
    }

    #[test]
    fn phases_from_the_status() {
        let mut st: Status = serde_json::from_value(serde_json::json!({
            "version": "0", "role": "primary", "epoch": 3, "epoch_history": [],
            "highest_seen_epoch": 3, "database_id": "d", "writable": true,
            "writes": {"state": "open"}, "write_refusal": null, "activity": null,
            "log": {"start_lsn": 0, "end_lsn": 0, "flushed_lsn": 0, "size_bytes": 0},
            "checkpoint_lsn": 0, "sessions_open": 0, "commits": 0, "statements": 0,
            "checkpoints": 0, "uptime_seconds": 0,
            "recovery": {"truncated_tail_bytes": 0, "captured_from_wal": 0,
                         "reapplied_records": 0, "end_lsn": 0},
            "hadr": null, "page_hash": null
        }))
        .unwrap();
        st.activity_history = vec![
            // An earlier takeover: before the request, ignored.
            step(steps::GRACEFUL_TAKEOVER, "asking", 500),
            step(steps::GRACEFUL_TAKEOVER, "asking", 1_000_000),
            step(steps::GRACEFUL_TAKEOVER, steps::HANDED_OVER, 1_108_788),
        ];
        st.started_micros = 1_446_239;
        let (h, r) = phases(&st, 900_000);
        assert!((h.unwrap_or(0.0) - 108.788).abs() < 0.01);
        assert!((r.unwrap_or(0.0) - 337.451).abs() < 0.01);
        st.activity_history = vec![step(steps::FORCED_TAKEOVER, "in PEER", 2_000_000)];
        st.started_micros = 2_200_000;
        let (h, r) = phases(&st, 1_900_000);
        assert_eq!(h, None);
        assert!((r.unwrap_or(0.0) - 200.0).abs() < 0.01);
        // A run as primary that began before the request is not this takeover's.
        st.started_micros = 1_000;
        assert_eq!(phases(&st, 1_900_000).1, None);
    }

    #[test]
    fn rewind_phases_from_the_log() {
        let log = "2026-11-24T18:09:00.1Z  INFO rewind: data directory opened (recovery done) secs=0.43\n\
                   x INFO rewinding: listing\n\
                   x INFO rewind: pages changed after the divergence point listed pages=2570 secs=0.45\n\
                   x INFO rewind: pages and log received pages=2570 log_bytes=1 secs=0.6\n\
                   x INFO rewind: applied and checkpointed secs=0.8\n";
        let p = rewind_phases(log, 0.86);
        let secs: Vec<f64> = p.iter().map(|(_, s)| (s * 100.0).round() / 100.0).collect();
        assert_eq!(secs, vec![0.43, 0.02, 0.15, 0.2, 0.06]);
        assert!(rewind_phases("nothing", 1.0).is_empty());
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), 10.0);
        assert_eq!(pct(&v, 99.0), 20.0);
    }
}
