//! hadr-bench: pgbench against PostgreSQL 15 and hadr on the same machine,
//! written up as docs/benchmarks.md with an SVG plot.
//!
//! ```text
//! cargo run --release -p hadr-bench -- [--seconds 20] [--clients 1,8,32] [--modes simple,prepared]
//!     [--hadr target/release/hadr] [--out docs/benchmarks.md] [--quick]
//!     [--single-node] [--replication] [--hadr-modes SYNC,...] [--pg-levels on,...] [--clone-mb 256]
//!     [--takeover] [--takeover-runs 20] [--rewind-db-mb 1024] [--rewind-diverged-mb 10] [--rewind-runs 3]
//!     [--commit-latency] [--commit-latency-records 2000]
//!     [--failover] [--runs 20] [--fence-runs 2] [--patroni-runs 8] [--arbiters file,s3,etcd]
//!     [--patroni /opt/patroni-4.1.5/bin/patroni]
//!     [--filesync] [--filesync-seconds 30] [--filesync-rate 20] [--filesync-clients 4]
//!     [--resources] [--resources-runs 20]
//!     [--client-gap] [--client-gap-switches 20] [--client-gap-patroni-crashes 8] [--client-gap-pause-ms 5]
//!     [--storm] [--storm-seconds 30]
//!     [--tls] [--tls-seconds 20] [--tls-rounds 3]
//!     [--pg-tools] [--pg-tools-scale 50] [--pg-tools-seconds 20]
//!     [--fuzz] [--fuzz-seconds 600] [--fuzz-jobs 2] [--fuzz-targets pg_frontend,...]
//! ```
//!
//! `--fuzz` (every fuzz target under AFL++ for 10 minutes each, two at a
//! time: about 40 minutes; the table goes into docs/security.md) runs only
//! when named.
//!
//! `--client-gap` (each stock driver's longest time without an acknowledged
//! write around graceful switches and crashes, hadr against Patroni, in
//! network namespaces; about 15 minutes, 3 with `--quick`) runs only when
//! named.
//!
//! `--filesync` (files kept in sync through the log: lag under a database
//! write load, and commit latency with and without synced directories)
//! runs only when named.
//!
//! Five parts, each writing its own section of the document: single node
//! (one hadr node against one PostgreSQL server), replication (a primary
//! with one standby: hadr per sync mode, PostgreSQL per synchronous_commit
//! level, plus hadr's clone and replay throughput), takeover (graceful
//! and forced takeover times under load, rejoin, rewind against re-clone),
//! commit latency (one durable 8 KiB commit in hadr's log alone), and
//! failover (automatic failover after the primary's host dies, hadr with
//! each arbiter against Patroni, in network namespaces). With none of
//! `--single-node`, `--replication`, `--takeover`, `--commit-latency` and
//! `--failover`, all but the failover part run (it needs root, nftables,
//! etcd, moto and Patroni, and takes about half an hour).

mod clientgap;
mod commit_latency;
mod failover;
mod filesync;
mod fuzz;
mod pgbench;
mod pgtools;
mod proc;
mod replication;
mod report;
mod resources;
mod storm;
mod takeover;
mod targets;
mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;

use pgbench::Mode;
use replication::{HadrPair, PostgresPair, Replicated};
use report::{Consistency, Machine, ReplReport, ReplRunRecord, Report, RunRecord, StandbyCheck};
use targets::{ConnInfo, Hadr, Postgres, Target, TargetKind};

/// The transaction every client runs; also committed as bench/pgbench.sql.
const SCRIPT: &str = include_str!("../pgbench.sql");

/// Benchmark hadr against PostgreSQL 15 with pgbench and write docs/benchmarks.md.
#[derive(Parser, Debug)]
#[command(name = "hadr-bench", version, about)]
struct Cli {
    /// Seconds per pgbench run [default: 20; 3 with --quick].
    #[arg(long)]
    seconds: Option<u64>,
    /// Client counts, comma-separated [default: 1,8,32; 1,8 with --quick].
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<u32>>,
    /// pgbench query modes of the single-node part, comma-separated (the
    /// replication part uses prepared only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "simple,prepared"
    )]
    modes: Vec<Mode>,
    /// Targets to run, in order; the first is the baseline of the comparison.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,hadr"
    )]
    targets: Vec<TargetKind>,
    /// The hadr binary [default: target/release/hadr of this workspace].
    #[arg(long)]
    hadr: Option<PathBuf>,
    /// Markdown report to write; the SVG plots go next to it as <stem>-tps.svg
    /// and <stem>-replication-tps.svg
    /// [default: docs/benchmarks.md of this workspace].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write all measurements as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory of the PostgreSQL 15 server programs (installed with apt-get if missing).
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bindir: PathBuf,
    /// Smoke test of this program: 3 s per run, clients 1,8, a 32 MB clone,
    /// 3 takeovers of each kind, a 64 MiB rewind database.
    #[arg(long)]
    quick: bool,
    /// Run the replication part (primary + standby). Only the parts named
    /// run; with none of --single-node, --replication, --takeover, all run.
    #[arg(long)]
    replication: bool,
    /// Run the single-node part (with any other parts named).
    #[arg(long)]
    single_node: bool,
    /// Run the takeover part: graceful and forced takeover times under load,
    /// rejoin, and rewind against re-clone (with any other parts named).
    #[arg(long)]
    takeover: bool,
    /// Run the commit-latency part: durable 8 KiB commits in hadr's log
    /// alone, with 64 MiB and 4 MiB segments (with any other parts named).
    #[arg(long)]
    commit_latency: bool,
    /// Commits per segment size in the commit-latency part [default: 2000; 300 with --quick].
    #[arg(long)]
    commit_latency_records: Option<usize>,
    /// Takeovers of each kind in the takeover part [default: 20; 3 with --quick].
    #[arg(long)]
    takeover_runs: Option<usize>,
    /// Size in MiB of the database the rewind is measured on; 0 skips it
    /// [default: 1024; 64 with --quick].
    #[arg(long)]
    rewind_db_mb: Option<u64>,
    /// MiB of rows the old primary updates that the new one never gets (the
    /// rewind measurement).
    #[arg(long, default_value_t = 10)]
    rewind_diverged_mb: u64,
    /// Rewinds (each with a re-clone for comparison) on the rewind database;
    /// the report gives each and their median.
    #[arg(long, default_value_t = 3)]
    rewind_runs: usize,
    /// hadr sync modes of the replication part, one pair each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "SYNC,NEARSYNC,ASYNC,SUPERASYNC"
    )]
    hadr_modes: Vec<String>,
    /// PostgreSQL synchronous_commit levels of the replication part.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "on,remote_write,remote_apply,local"
    )]
    pg_levels: Vec<String>,
    /// Rewrite the document's sections from a file written by --json, without
    /// measuring anything (after a change to how results are written up).
    #[arg(long)]
    render_json: Option<PathBuf>,
    /// Run the failover part: automatic failover after the primary's host
    /// dies, hadr (file, s3 and etcd arbiters) side by side with Patroni, in
    /// network namespaces. Needs root, nftables, etcd, moto and Patroni; not
    /// run unless named.
    #[arg(long)]
    failover: bool,
    /// Failover part: crashes per hadr arbiter and setting [default: 20; 3 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Failover part: isolations, and freezes, of the primary per hadr
    /// arbiter and setting [default: 2; 1 with --quick].
    #[arg(long)]
    fence_runs: Option<usize>,
    /// Failover part: crashes per Patroni setting; 0 leaves Patroni out
    /// [default: 8; 1 with --quick].
    #[arg(long)]
    patroni_runs: Option<usize>,
    /// Failover part: the arbiters hadr is measured with.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "file,s3,etcd"
    )]
    arbiters: Vec<failover::ArbiterKind>,
    /// Failover part: the Patroni program (run as the postgres user).
    #[arg(long, default_value = failover::DEFAULT_PATRONI)]
    patroni: PathBuf,
    /// Run the file-sync part: lag from a file write on the primary to the
    /// file on the standby under a database write load, and commit latency
    /// with and without sync_paths. Not run unless named.
    #[arg(long)]
    filesync: bool,
    /// File-sync part: seconds of file writes [default: 30; 10 with --quick].
    #[arg(long)]
    filesync_seconds: Option<u64>,
    /// File-sync part: file writes per second.
    #[arg(long, default_value_t = 20)]
    filesync_rate: u32,
    /// File-sync part: database clients of the write load.
    #[arg(long, default_value_t = 4)]
    filesync_clients: usize,
    /// File-sync part: seconds per commit-latency round (four per pair)
    /// [default: 4; 2 with --quick].
    #[arg(long)]
    filesync_round_seconds: Option<u64>,
    /// Run the resources part: a virtual IP and a supervised service on
    /// each node, the primary's host crashed repeatedly; times to the new
    /// primary's first write and to the service answering through the VIP
    /// (network namespaces; needs root, nftables, etcd, python3, curl). Not
    /// run unless named.
    #[arg(long)]
    resources: bool,
    /// Resources part: primary host crashes [default: 20; 3 with --quick].
    #[arg(long)]
    resources_runs: Option<usize>,
    /// Run the client-gap part: the longest interval without an
    /// acknowledged write that libpq, pgjdbc, psycopg 3, tokio-postgres and
    /// hadr-client clients see around graceful switches and primary
    /// crashes, hadr and PostgreSQL + Patroni (network namespaces; needs root, nftables,
    /// etcd, java, javac, Debian's pgjdbc jar, psycopg 3 and Patroni). Not
    /// run unless named.
    #[arg(long)]
    client_gap: bool,
    /// Client-gap part: graceful switches and crashes of hadr, and
    /// switchovers of Patroni [default: 20; 2 with --quick].
    #[arg(long)]
    client_gap_switches: Option<usize>,
    /// Client-gap part: Patroni failovers (each waits out its 30 s leader
    /// TTL); 0, with --client-gap-patroni-switches 0, leaves Patroni out
    /// [default: 8; 2 with --quick].
    #[arg(long)]
    client_gap_patroni_crashes: Option<usize>,
    /// Client-gap part: Patroni switchovers [default: --client-gap-switches].
    #[arg(long)]
    client_gap_patroni_switches: Option<usize>,
    /// Client-gap part: each client's pause after an acknowledged write.
    #[arg(long, default_value_t = 5)]
    client_gap_pause_ms: u64,
    /// Run the storm part: a thousand clients reconnecting in a tight loop
    /// against hadr and PostgreSQL (max_connections 64, 3 reserved), and an
    /// operator logging in through the reserved slots meanwhile. Not run
    /// unless named.
    #[arg(long)]
    storm: bool,
    /// Storm part: seconds per server [default: 30; 8 with --quick].
    #[arg(long)]
    storm_seconds: Option<u64>,
    /// Run the TLS part: pgbench throughput plain against TLS + SCRAM, and
    /// connection set-up time, hadr against PostgreSQL with ssl = on. Not
    /// run unless named.
    #[arg(long)]
    tls: bool,
    /// TLS part: seconds per throughput round [default: 20; 5 with --quick].
    #[arg(long)]
    tls_seconds: Option<u64>,
    /// TLS part: throughput rounds each way [default: 3; 1 with --quick].
    #[arg(long)]
    tls_rounds: Option<usize>,
    /// Run the PostgreSQL tools part: `pgbench -i`, a 1 M-row `\copy` in
    /// text and CSV, pgbench's built-in scripts, hadr against PostgreSQL.
    /// Not run unless named.
    #[arg(long)]
    pg_tools: bool,
    /// PostgreSQL tools part: `pgbench -i -s` [default: 50; 5 with --quick].
    #[arg(long)]
    pg_tools_scale: Option<u32>,
    /// PostgreSQL tools part: seconds per script run [default: 20; 5 with --quick].
    #[arg(long)]
    pg_tools_seconds: Option<u64>,
    /// Run the fuzz part: every fuzz target under AFL++ (cargo afl) from the
    /// committed corpus, the table written to docs/security.md. Not run
    /// unless named.
    #[arg(long)]
    fuzz: bool,
    /// Fuzz part: seconds per target [default: 600; 30 with --quick].
    #[arg(long)]
    fuzz_seconds: Option<u64>,
    /// Fuzz part: targets fuzzed at once, one core each.
    #[arg(long, default_value_t = 2)]
    fuzz_jobs: usize,
    /// Fuzz part: the targets [default: all of fuzz/src/lib.rs TARGETS].
    #[arg(long, value_delimiter = ',')]
    fuzz_targets: Vec<String>,
    /// Size in MB (10^6 bytes) of the database hadr clones, and of the log its
    /// standby replays, in the replication part; 0 skips that measurement
    /// [default: 256; 32 with --quick].
    #[arg(long)]
    clone_mb: Option<u64>,
}

/// The workspace root, from where this crate was built.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A temporary directory that is removed when dropped (after the targets
/// inside it, which are declared later and so dropped first).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("hadr-bench.{}.{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        // The postgres user must be able to reach its own subdirectory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if targets::stop_failed() {
            eprintln!(
                "warning: a server could not be stopped; keeping {} (stop it by hand)",
                self.0.display()
            );
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

/// Fails clearly when a client program is missing; returns its version line.
fn client_version(prog: &str) -> Result<String> {
    let out = proc::run(
        Command::new(prog).arg("--version"),
        Duration::from_secs(10),
        &format!("{prog} --version"),
    )
    .with_context(|| format!("{prog} is required"))?;
    if !out.status.success() {
        bail!("{prog} --version failed: {}", out.message());
    }
    Ok(out.stdout.trim().to_string())
}

/// The machine, with the load average at a part's start and now: other
/// work on the machine skews every number.
fn machine_since(load_before: String) -> Machine {
    Machine {
        load_before,
        load_after: load_average(),
        ..machine()
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu,
        kernel: kernel.unwrap_or_else(|_| "unknown".into()),
        memory,
        load_before: String::new(),
        load_after: String::new(),
    }
}

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// UTC date and time, "YYYY-MM-DD HH:MM UTC".
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,=:+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// sum(accounts.abalance) against sum(history.delta).
fn check_sums(conn: &ConnInfo) -> Consistency {
    let sql = "SELECT (SELECT coalesce(sum(abalance), 0) FROM accounts) || '|' || \
               (SELECT coalesce(sum(delta), 0) FROM history)";
    let out = match targets::psql(conn, &[sql.into()], Duration::from_secs(120)) {
        Ok(o) => o,
        Err(e) => return Consistency::Error(format!("{e:#}")),
    };
    let parts: Vec<&str> = out.trim().split('|').collect();
    match parts.as_slice() {
        [a, h] => match (a.trim().parse::<i64>(), h.trim().parse::<i64>()) {
            (Ok(a), Ok(h)) if a == h => Consistency::Ok { sum: a },
            (Ok(accounts), Ok(history)) => Consistency::Mismatch { accounts, history },
            _ => Consistency::Error(format!("unexpected sums {:?}", out.trim())),
        },
        _ => Consistency::Error(format!("unexpected sums {:?}", out.trim())),
    }
}

fn main() {
    proc::install_signal_handlers();
    if let Err(e) = run() {
        eprintln!("hadr-bench: error: {e:#}");
        std::process::exit(1);
    }
}

/// What both parts need.
struct Ctx {
    seconds: u64,
    clients: Vec<u32>,
    kinds: Vec<TargetKind>,
    hadr_bin: PathBuf,
    out_path: PathBuf,
    command: String,
    pg_bindir: PathBuf,
    work: PathBuf,
    script: PathBuf,
    psql_version: String,
    pgbench_version: String,
    load_program_start: String,
}

/// --render-json: the sections again, from saved measurements.
fn render_json(path: &Path, out: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let single: Option<Report> = match v.get("single_node") {
        Some(j) if !j.is_null() => Some(serde_json::from_value(j.clone()).context("single_node")?),
        _ => None,
    };
    let repl: Option<ReplReport> = match v.get("replication") {
        Some(j) if !j.is_null() => Some(serde_json::from_value(j.clone()).context("replication")?),
        _ => None,
    };
    let takeover: Option<takeover::TakeoverReport> = match v.get("takeover") {
        Some(j) if !j.is_null() => Some(serde_json::from_value(j.clone()).context("takeover")?),
        _ => None,
    };
    let latency: Option<commit_latency::LatencyReport> = match v.get("commit_latency") {
        Some(j) if !j.is_null() => {
            Some(serde_json::from_value(j.clone()).context("commit_latency")?)
        }
        _ => None,
    };
    let failover: Option<failover::FailoverReport> = match v.get("failover") {
        Some(j) if !j.is_null() => Some(serde_json::from_value(j.clone()).context("failover")?),
        _ => None,
    };
    if let Some(r) = &failover {
        r.write(out)?;
        eprintln!("rewrote the failover section of {}", out.display());
    }
    let client_gap: Option<clientgap::ClientGapReport> = match v.get("client_gap") {
        Some(j) if !j.is_null() => Some(serde_json::from_value(j.clone()).context("client_gap")?),
        _ => None,
    };
    if let Some(r) = &client_gap {
        r.write(out)?;
        eprintln!("rewrote the client-gap section of {}", out.display());
    }
    let tls: Option<tls::TlsReport> = match v.get("tls") {
        Some(j) if !j.is_null() => Some(serde_json::from_value(j.clone()).context("tls")?),
        _ => None,
    };
    if let Some(r) = &tls {
        tls::write(out, r)?;
        eprintln!("rewrote the TLS section of {}", out.display());
    }
    if single.is_none()
        && tls.is_none()
        && repl.is_none()
        && takeover.is_none()
        && latency.is_none()
        && failover.is_none()
        && client_gap.is_none()
    {
        bail!(
            "{} holds no single_node, replication, takeover or commit_latency results",
            path.display()
        );
    }
    if let Some(r) = &latency {
        r.write(out)?;
        eprintln!("rewrote the commit-latency section of {}", out.display());
    }
    if let Some(r) = &takeover {
        r.write(out)?;
        eprintln!("rewrote the takeover section of {}", out.display());
    }
    if let Some(r) = &single {
        r.write(out)?;
        eprintln!("rewrote the single-node section of {}", out.display());
    }
    if let Some(mut r) = repl {
        // Older files lack the load at program start; the single-node part,
        // which runs first, measured it as its own starting load.
        if r.load_program_start.is_none() {
            r.load_program_start = single.as_ref().map(|s| s.machine.load_before.clone());
        }
        r.write(out)?;
        eprintln!("rewrote the replication section of {}", out.display());
    }
    Ok(())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let load_program_start = load_average();
    if let Some(j) = &cli.render_json {
        let out = cli
            .out
            .clone()
            .unwrap_or_else(|| workspace_root().join("docs/benchmarks.md"));
        return render_json(j, &out);
    }
    let seconds = cli.seconds.unwrap_or(if cli.quick { 3 } else { 20 });
    let clients = cli.clients.clone().unwrap_or_else(|| {
        if cli.quick {
            vec![1, 8]
        } else {
            vec![1, 8, 32]
        }
    });
    if seconds == 0
        || clients.is_empty()
        || clients.contains(&0)
        || cli.modes.is_empty()
        || cli.targets.is_empty()
    {
        bail!("need --seconds > 0, at least one mode and target, and client counts > 0");
    }
    for m in &cli.hadr_modes {
        if !replication::HADR_MODES.contains(&m.as_str()) {
            bail!("unknown hadr sync mode {m:?} (SYNC, NEARSYNC, ASYNC or SUPERASYNC)");
        }
    }
    for l in &cli.pg_levels {
        if !replication::PG_LEVELS.contains(&l.as_str()) {
            bail!(
                "unknown synchronous_commit level {l:?} (on, remote_write, remote_apply or local)"
            );
        }
    }
    // No part named: all of them but the failover part.
    let (do_single, do_repl, do_takeover, do_latency) = match (
        cli.single_node,
        cli.replication,
        cli.takeover,
        cli.commit_latency,
    ) {
        (false, false, false, false)
            if !cli.failover
                && !cli.filesync
                && !cli.resources
                && !cli.storm
                && !cli.fuzz
                && !cli.tls
                && !cli.pg_tools
                && !cli.client_gap =>
        {
            (true, true, true, true)
        }
        flags => flags,
    };
    let failover_opts = failover::Options {
        arbiters: cli.arbiters.clone(),
        runs: cli.runs.unwrap_or(if cli.quick { 3 } else { 20 }),
        fence_runs: cli.fence_runs.unwrap_or(if cli.quick { 1 } else { 2 }),
        patroni_runs: cli.patroni_runs.unwrap_or(if cli.quick { 1 } else { 8 }),
        patroni: cli.patroni.clone(),
    };
    if cli.failover && (failover_opts.runs == 0 || failover_opts.arbiters.is_empty()) {
        bail!("the failover part needs --runs > 0 and at least one arbiter");
    }
    let mut kinds = cli.targets.clone();
    kinds.dedup();
    let root = workspace_root();
    let hadr_bin = cli
        .hadr
        .clone()
        .unwrap_or_else(|| root.join("target/release/hadr"));
    let out_path = cli
        .out
        .clone()
        .unwrap_or_else(|| root.join("docs/benchmarks.md"));
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    let command = if args.is_empty() {
        "cargo run --release -p hadr-bench".to_string()
    } else {
        format!("cargo run --release -p hadr-bench -- {}", args.join(" "))
    };

    let psql_version = client_version("psql")?;
    let pgbench_version = client_version("pgbench")?;
    if (kinds.contains(&TargetKind::Postgres) && (do_single || do_repl))
        || (cli.failover && failover_opts.patroni_runs > 0)
        || cli.client_gap
        || cli.tls
        || cli.pg_tools
        || cli.storm
    {
        Postgres::ensure_installed(&cli.pg_bindir)?;
    }

    let work = WorkDir::new()?;
    let script = work.0.join("pgbench.sql");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let ctx = Ctx {
        seconds,
        clients,
        kinds,
        hadr_bin,
        out_path,
        command,
        pg_bindir: cli.pg_bindir.clone(),
        work: work.0.clone(),
        script,
        psql_version,
        pgbench_version,
        load_program_start,
    };

    let single = if do_single {
        Some(run_single(&cli, &ctx)?)
    } else {
        None
    };
    let repl = if do_repl {
        Some(run_replication(&cli, &ctx)?)
    } else {
        None
    };
    let takeover = if do_takeover {
        Some(takeover::run_part(
            &ctx,
            cli.takeover_runs.unwrap_or(if cli.quick { 3 } else { 20 }),
            cli.rewind_db_mb
                .unwrap_or(if cli.quick { 64 } else { 1024 }),
            cli.rewind_diverged_mb,
            cli.rewind_runs,
        )?)
    } else {
        None
    };
    let latency = if do_latency {
        Some(commit_latency::run_part(
            &ctx,
            &commit_latency::default_dir(&root),
            cli.commit_latency_records
                .unwrap_or(if cli.quick { 300 } else { 2000 }),
        )?)
    } else {
        None
    };
    let failover = if cli.failover {
        Some(failover::run_part(&ctx, &failover_opts)?)
    } else {
        None
    };
    if cli.filesync {
        filesync::run_part(
            &ctx,
            &filesync::Options {
                seconds: cli
                    .filesync_seconds
                    .unwrap_or(if cli.quick { 10 } else { 30 }),
                rate: cli.filesync_rate.max(1),
                clients: cli.filesync_clients.max(1),
                round_seconds: cli
                    .filesync_round_seconds
                    .unwrap_or(if cli.quick { 2 } else { 4 }),
            },
        )?;
    }
    let resources = if cli.resources {
        Some(resources::run_part(
            &ctx,
            cli.resources_runs.unwrap_or(if cli.quick { 3 } else { 20 }),
        )?)
    } else {
        None
    };
    let storm = if cli.storm {
        Some(storm::run_part(
            &ctx,
            cli.storm_seconds.unwrap_or(if cli.quick { 8 } else { 30 }),
        )?)
    } else {
        None
    };
    let tls = if cli.tls {
        Some(tls::run_part(
            &ctx,
            &tls::Options {
                seconds: cli.tls_seconds.unwrap_or(if cli.quick { 5 } else { 20 }),
                rounds: cli
                    .tls_rounds
                    .unwrap_or(if cli.quick { 1 } else { 3 })
                    .max(1),
                connect_seconds: if cli.quick { 3 } else { 10 },
                pairs: true,
            },
        )?)
    } else {
        None
    };
    let pg_tools = if cli.pg_tools {
        Some(pgtools::run_part(
            &ctx,
            &pgtools::Options {
                scale: cli.pg_tools_scale.unwrap_or(if cli.quick { 5 } else { 50 }),
                copy_rows: if cli.quick { 100_000 } else { 1_000_000 },
                seconds: cli
                    .pg_tools_seconds
                    .unwrap_or(if cli.quick { 5 } else { 20 }),
                clients: ctx.clients.clone(),
            },
        )?)
    } else {
        None
    };
    let fuzz = if cli.fuzz {
        Some(fuzz::run_part(
            &ctx,
            &fuzz::Options {
                seconds: cli.fuzz_seconds.unwrap_or(if cli.quick { 30 } else { 600 }),
                jobs: cli.fuzz_jobs,
                targets: cli.fuzz_targets.clone(),
            },
        )?)
    } else {
        None
    };
    let client_gap = if cli.client_gap {
        let switches = cli
            .client_gap_switches
            .unwrap_or(if cli.quick { 2 } else { 20 });
        Some(clientgap::run_part(
            &ctx,
            &clientgap::Options {
                hadr_switches: switches,
                hadr_crashes: switches,
                patroni_switches: cli.client_gap_patroni_switches.unwrap_or(switches),
                patroni_crashes: cli.client_gap_patroni_crashes.unwrap_or(if cli.quick {
                    2
                } else {
                    8
                }),
                pause_ms: cli.client_gap_pause_ms,
                patroni: cli.patroni.clone(),
            },
        )?)
    } else {
        None
    };
    if let Some(j) = &cli.json {
        let v = serde_json::json!({
            "client_gap": client_gap,
            "storm": storm,
            "fuzz": fuzz,
            "tls": tls,
            "pg_tools": pg_tools,
            "resources": resources,
            "single_node": single,
            "replication": repl,
            "takeover": takeover,
            "commit_latency": latency,
            "failover": failover,
        });
        std::fs::write(j, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", j.display()))?;
    }
    let bad_single = single.as_ref().map_or(0, |r| {
        r.runs
            .iter()
            .filter(|r| !matches!(r.consistency, Consistency::Ok { .. }))
            .count()
    });
    let bad_repl = repl.as_ref().map_or(0, ReplReport::integrity_failures);
    let bad_takeover = takeover
        .as_ref()
        .map_or(0, takeover::TakeoverReport::failures);
    if bad_single + bad_repl + bad_takeover > 0 {
        bail!(
            "consistency checks failed: {bad_single} single-node run(s) (SQL sums), {bad_repl} replication check(s) \
             (SQL sums or standby verification), {bad_takeover} takeover check(s) (SQL sums after a takeover or \
             hadr verify); see {}",
            ctx.out_path.display()
        );
    }
    let bad_resources = resources
        .as_ref()
        .map_or(0, resources::ResourcesReport::failures);
    if bad_resources > 0 {
        bail!(
            "the resources part found {bad_resources} problem(s) (acknowledged commits lost, or a series \
             that stopped early); see {}",
            ctx.out_path.display()
        );
    }
    let bad_storm = storm.as_ref().map_or(0, storm::StormReport::failures);
    if bad_storm > 0 {
        bail!(
            "the storm part missed its target on {bad_storm} server(s) (an operator login failed, or hadr's p99 was 100 ms or more); see {}",
            ctx.out_path.display()
        );
    }
    let bad_fuzz = fuzz.as_ref().map_or(0, fuzz::FuzzReport::failures);
    if bad_fuzz > 0 {
        bail!(
            "the fuzz part found crashes or hangs in {bad_fuzz} target(s); the inputs are listed in {}",
            ctx.out_path.with_file_name("security.md").display()
        );
    }
    let bad_tls = tls.as_ref().map_or(0, tls::TlsReport::failures);
    if bad_tls > 0 {
        bail!(
            "the TLS part missed its target (TLS cost hadr more throughput than it cost PostgreSQL, or was not \
             measured); see {}",
            ctx.out_path.display()
        );
    }
    let bad_failover = failover
        .as_ref()
        .map_or(0, failover::FailoverReport::failures);
    if bad_failover > 0 {
        bail!(
            "the failover part found {bad_failover} problem(s) (acknowledged commits lost, writes accepted by a \
             resumed frozen primary, or a series that stopped early); see {}",
            ctx.out_path.display()
        );
    }
    let bad_gap = client_gap
        .as_ref()
        .map_or(0, clientgap::ClientGapReport::failures);
    if bad_gap > 0 {
        bail!(
            "the client-gap part found {bad_gap} problem(s) (acknowledged writes lost, a client that did not \
             resume, or a series that stopped early); see {}",
            ctx.out_path.display()
        );
    }
    Ok(())
}

/// Copies a troubled server's log somewhere that outlives the work directory.
fn keep_log(label: &str, path: &Path, notes: &mut Vec<String>) {
    let keep = std::env::temp_dir().join(format!(
        "hadr-bench-{label}-server-{}.log",
        std::process::id()
    ));
    if std::fs::copy(path, &keep).is_ok() {
        notes.push(format!("{label} server log kept in {}", keep.display()));
        eprintln!(
            "{label} had errors; its server log is kept in {}",
            keep.display()
        );
    }
}

/// Starts a target and loads the benchmark schema and rows into it.
fn start_and_load(t: &mut dyn Target, version: &str) -> Result<()> {
    eprintln!("== starting {} ({version})", t.name());
    t.start()
        .with_context(|| format!("starting {}", t.name()))?;
    eprintln!(
        "== loading {} accounts into {} ({})",
        targets::ACCOUNTS,
        t.name(),
        t.conninfo()
    );
    targets::psql(&t.conninfo(), &t.setup_sql(), Duration::from_secs(600))
        .with_context(|| format!("loading the schema into {}", t.name()))?;
    let n = targets::psql(
        &t.conninfo(),
        &["SELECT count(*) FROM accounts".into()],
        Duration::from_secs(60),
    )?;
    if n.trim() != targets::ACCOUNTS.to_string() {
        bail!(
            "{}: accounts has {} rows after loading, expected {}",
            t.name(),
            n.trim(),
            targets::ACCOUNTS
        );
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>, div: f64, prec: usize) -> String {
    v.map(|v| format!("{:.prec$}", v / div))
        .unwrap_or_else(|| "-".into())
}

/// The single-node part: writes its section of the document.
fn run_single(cli: &Cli, ctx: &Ctx) -> Result<Report> {
    let load_before = load_average();
    let mut targets: Vec<Box<dyn Target>> = Vec::new();
    for k in &ctx.kinds {
        targets.push(match k {
            TargetKind::Postgres => Box::new(Postgres::new(&ctx.pg_bindir, &ctx.work)?),
            TargetKind::Hadr => Box::new(Hadr::new(&ctx.hadr_bin, &ctx.work)?),
        });
    }

    let mut versions = Vec::new();
    for t in &targets {
        let v = t
            .version()
            .with_context(|| format!("asking {} for its version", t.name()))?;
        versions.push((t.name().to_string(), v));
    }
    for (t, (_, version)) in targets.iter_mut().zip(&versions) {
        start_and_load(t.as_mut(), version)?;
    }
    versions.push(("pgbench".into(), ctx.pgbench_version.clone()));
    versions.push(("psql".into(), ctx.psql_version.clone()));

    let seconds = ctx.seconds;
    let total = cli.modes.len() * ctx.clients.len() * targets.len();
    eprintln!("== single node: {total} runs of {seconds} s each");
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for &mode in &cli.modes {
        for &c in &ctx.clients {
            for t in targets.iter_mut() {
                proc::check_interrupted()?;
                let name = t.name().to_string();
                let run_id = format!("{name}-{}-c{c}", mode.as_str());
                let conn = t.conninfo();
                let run = pgbench::Run {
                    script: &ctx.script,
                    conn: &conn,
                    mode,
                    clients: c,
                    seconds,
                    log_dir: &ctx.work.join("logs").join(&run_id),
                };
                let threads = run.threads();
                let m = if t.alive() == Some(false) {
                    pgbench::Measurement {
                        error: Some(format!("{name} is not running")),
                        ..Default::default()
                    }
                } else {
                    run.execute()?
                };
                proc::check_interrupted()?;
                let consistency = check_sums(&conn);
                eprintln!(
                    "{run_id:<24} tps {:>8} p50 {:>7} ms p99 {:>7} ms failed {} sums {}",
                    fmt_opt(m.tps, 1.0, 0),
                    fmt_opt(m.p50_us, 1000.0, 2),
                    fmt_opt(m.p99_us, 1000.0, 2),
                    m.failed,
                    match &consistency {
                        Consistency::Ok { .. } => "ok".to_string(),
                        other => format!("{other:?}"),
                    }
                );
                if let Some(e) = &m.error {
                    eprintln!("  !! {e}");
                }
                if !matches!(consistency, Consistency::Ok { .. }) {
                    eprintln!(
                        "  !! SQL CONSISTENCY FAILURE on {name}: sum(accounts.abalance) != sum(history.delta): {consistency:?}"
                    );
                }
                let _ = std::fs::remove_dir_all(ctx.work.join("logs").join(&run_id));
                runs.push(RunRecord {
                    target: name,
                    mode,
                    clients: c,
                    threads,
                    m,
                    consistency,
                });
            }
        }
    }

    for t in targets.iter_mut() {
        let troubled = runs.iter().any(|r| {
            r.target == t.name()
                && (r.m.error.is_some() || !matches!(r.consistency, Consistency::Ok { .. }))
        });
        if troubled {
            keep_log(t.name(), &t.server_log(), &mut notes);
        }
        for line in t.log_findings() {
            notes.push(format!("{} log: {line}", t.name()));
        }
        if let Err(e) = t.stop() {
            notes.push(format!("stopping {}: {e:#}", t.name()));
            eprintln!("warning: stopping {}: {e:#}", t.name());
        }
    }
    drop(targets);

    let report = Report {
        date: now_utc(),
        machine: machine_since(load_before),
        versions,
        command: ctx.command.clone(),
        seconds,
        clients: ctx.clients.clone(),
        modes: cli.modes.clone(),
        targets: ctx
            .kinds
            .iter()
            .map(|k| format!("{k:?}").to_lowercase())
            .collect(),
        runs,
        notes,
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!(
        "wrote the single-node section of {}",
        ctx.out_path.display()
    );
    Ok(report)
}

/// The replication part: hadr pairs per sync mode and a PostgreSQL pair per
/// synchronous_commit level, then hadr's clone and replay throughput. Writes
/// its section of the document.
fn run_replication(cli: &Cli, ctx: &Ctx) -> Result<ReplReport> {
    let load_before = load_average();
    let mode = Mode::Prepared;
    let mut pairs: Vec<Box<dyn Replicated>> = Vec::new();
    // (pair index, setting): PostgreSQL levels and hadr modes.
    let mut pg_slots = Vec::new();
    let mut hadr_slots = Vec::new();
    if ctx.kinds.contains(&TargetKind::Postgres) && !cli.pg_levels.is_empty() {
        let p = PostgresPair::new(&ctx.pg_bindir, &ctx.work)?;
        for l in p
            .settings()
            .into_iter()
            .filter(|l| cli.pg_levels.contains(l))
        {
            pg_slots.push((pairs.len(), l));
        }
        pairs.push(Box::new(p));
    }
    if ctx.kinds.contains(&TargetKind::Hadr) {
        for m in &cli.hadr_modes {
            let p = HadrPair::new(&ctx.hadr_bin, &ctx.work, m, m)?;
            for s in p.settings() {
                hadr_slots.push((pairs.len(), s));
            }
            pairs.push(Box::new(p));
        }
    }
    // Runs take turns: PostgreSQL on, hadr SYNC, remote_write, NEARSYNC, ...
    let mut schedule = Vec::new();
    for i in 0..pg_slots.len().max(hadr_slots.len()) {
        schedule.extend(pg_slots.get(i).cloned());
        schedule.extend(hadr_slots.get(i).cloned());
    }
    let configs: Vec<(String, String)> = pg_slots
        .iter()
        .chain(&hadr_slots)
        .map(|(i, s)| (pairs[*i].family().to_string(), s.clone()))
        .collect();

    let mut versions: Vec<(String, String)> = Vec::new();
    for p in pairs.iter_mut() {
        let version = p
            .version()
            .with_context(|| format!("asking {} for its version", p.name()))?;
        if !versions.iter().any(|(f, _)| f == p.family()) {
            versions.push((p.family().to_string(), version.clone()));
        }
        start_and_load(p.as_mut(), &version)?;
        let state = p.wait_synced(Duration::from_secs(300)).with_context(|| {
            format!("{}: the standby did not catch up after the load", p.name())
        })?;
        eprintln!("== {} ready: {state}", p.name());
    }
    versions.push(("pgbench".into(), ctx.pgbench_version.clone()));
    versions.push(("psql".into(), ctx.psql_version.clone()));

    let seconds = ctx.seconds;
    eprintln!(
        "== replication: {} runs of {seconds} s each",
        schedule.len() * ctx.clients.len()
    );
    let mut runs: Vec<ReplRunRecord> = Vec::new();
    let mut run_pair: Vec<usize> = Vec::new();
    let mut notes = Vec::new();
    for &c in &ctx.clients {
        for (i, setting) in &schedule {
            proc::check_interrupted()?;
            let p = &mut pairs[*i];
            let family = p.family().to_string();
            let run_id = format!("{family}-{setting}-c{c}");
            let conn = p.conninfo();
            let run = pgbench::Run {
                script: &ctx.script,
                conn: &conn,
                mode,
                clients: c,
                seconds,
                log_dir: &ctx.work.join("logs").join(&run_id),
            };
            let threads = run.threads();
            let prepared = p
                .apply_setting(setting)
                .and_then(|()| p.wait_synced(Duration::from_secs(120)));
            let (synced_before, state_before) = match prepared {
                Ok(s) => (true, s),
                Err(e) => (false, format!("{e:#}")),
            };
            if !synced_before {
                eprintln!("  !! {run_id}: not ready: {state_before}");
            }
            let m = if p.alive() == Some(false) {
                pgbench::Measurement {
                    error: Some(format!("{} is not running", p.name())),
                    ..Default::default()
                }
            } else {
                run.execute()?
            };
            proc::check_interrupted()?;
            let state_after = p.pair_state();
            let consistency = check_sums(&conn);
            let standby = p.verify();
            eprintln!(
                "{run_id:<28} tps {:>8} p50 {:>7} ms p99 {:>7} ms failed {} sums {} state {} -> {} standby {}",
                fmt_opt(m.tps, 1.0, 0),
                fmt_opt(m.p50_us, 1000.0, 2),
                fmt_opt(m.p99_us, 1000.0, 2),
                m.failed,
                match &consistency {
                    Consistency::Ok { .. } => "ok".to_string(),
                    other => format!("{other:?}"),
                },
                if synced_before { state_before.as_str() } else { "NOT READY" },
                state_after,
                match &standby {
                    StandbyCheck::PagesIdentical { lsn } => format!("identical@{lsn}"),
                    StandbyCheck::SameSums { lsn } => format!("same-sums@{lsn}"),
                    other => format!("{other:?}"),
                }
            );
            if let Some(e) = &m.error {
                eprintln!("  !! {e}");
            }
            if !standby.ok() {
                eprintln!("  !! STANDBY CHECK FAILED on {run_id}: {standby:?}");
            }
            let _ = std::fs::remove_dir_all(ctx.work.join("logs").join(&run_id));
            run_pair.push(*i);
            runs.push(ReplRunRecord {
                target: family,
                setting: setting.clone(),
                mode,
                clients: c,
                threads,
                m,
                consistency,
                state_before,
                state_after,
                synced_before,
                standby,
            });
        }
    }

    for (i, p) in pairs.iter_mut().enumerate() {
        let troubled = runs.iter().zip(&run_pair).any(|(r, &pi)| {
            pi == i
                && (r.m.error.is_some()
                    || !r.synced_before
                    || !r.standby.ok()
                    || !matches!(r.consistency, Consistency::Ok { .. }))
        });
        if troubled {
            for (label, path) in p.server_logs() {
                keep_log(&label, &path, &mut notes);
            }
        }
        for line in p.log_findings() {
            notes.push(format!("{} log: {line}", p.name()));
        }
        if let Err(e) = p.stop() {
            notes.push(format!("stopping {}: {e:#}", p.name()));
            eprintln!("warning: stopping {}: {e:#}", p.name());
        }
    }
    drop(pairs);

    let clone_mb = cli.clone_mb.unwrap_or(if cli.quick { 32 } else { 256 });
    let (clone, clone_error) = if ctx.kinds.contains(&TargetKind::Hadr) && clone_mb > 0 {
        match replication::measure_clone_and_replay(&ctx.hadr_bin, &ctx.work, clone_mb * 1_000_000)
        {
            Ok(c) => {
                eprintln!(
                    "== clone {:.1} MB in {:.2} s = {:.0} MB/s ({:?}); replay {:.1} MB of log in {:.2} s after connecting = {:.0} MB/s ({:?})",
                    c.db_bytes as f64 / 1e6,
                    c.clone_secs,
                    c.clone_mb_s,
                    c.verify_after_clone,
                    c.replay_log_bytes as f64 / 1e6,
                    c.replay_total_secs - c.standby_connect_secs,
                    c.replay_mb_s,
                    c.verify_after_replay
                );
                (Some(c), None)
            }
            Err(e) => {
                if proc::interrupted() {
                    return Err(e);
                }
                eprintln!("  !! clone/replay measurement failed: {e:#}");
                (None, Some(format!("{e:#}")))
            }
        }
    } else {
        (None, None)
    };

    let report = ReplReport {
        date: now_utc(),
        machine: machine_since(load_before),
        versions,
        command: ctx.command.clone(),
        seconds,
        clients: ctx.clients.clone(),
        mode,
        configs,
        runs,
        clone,
        clone_error,
        notes,
        load_program_start: Some(ctx.load_program_start.clone()),
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!(
        "wrote the replication section of {}",
        ctx.out_path.display()
    );
    Ok(report)
}
