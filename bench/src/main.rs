//! hadr-bench: pgbench against PostgreSQL 15 and hadr on the same machine,
//! written up as docs/benchmarks.md with an SVG plot.
//!
//! ```text
//! cargo run --release -p hadr-bench -- [--seconds 20] [--clients 1,8,32] [--modes simple,prepared]
//!     [--hadr target/release/hadr] [--out docs/benchmarks.md] [--quick]
//! ```

mod pgbench;
mod proc;
mod report;
mod targets;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;

use pgbench::Mode;
use report::{Consistency, Machine, Report, RunRecord};
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
    /// pgbench query modes, comma-separated.
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
    /// Markdown report to write; the SVG plot goes next to it as <stem>-tps.svg
    /// [default: docs/benchmarks.md of this workspace].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write all measurements as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory of the PostgreSQL 15 server programs (installed with apt-get if missing).
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bindir: PathBuf,
    /// Smoke test of this program: 3 s per run, clients 1,8.
    #[arg(long)]
    quick: bool,
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

fn run() -> Result<()> {
    let cli = Cli::parse();
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

    let load_before = load_average();
    let psql_version = client_version("psql")?;
    let pgbench_version = client_version("pgbench")?;
    if kinds.contains(&TargetKind::Postgres) {
        Postgres::ensure_installed(&cli.pg_bindir)?;
    }

    let work = WorkDir::new()?;
    let script = work.0.join("pgbench.sql");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;

    let mut targets: Vec<Box<dyn Target>> = Vec::new();
    for k in &kinds {
        targets.push(match k {
            TargetKind::Postgres => Box::new(Postgres::new(&cli.pg_bindir, &work.0)?),
            TargetKind::Hadr => Box::new(Hadr::new(&hadr_bin, &work.0)?),
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
    }
    versions.push(("pgbench".into(), pgbench_version));
    versions.push(("psql".into(), psql_version));

    let total = cli.modes.len() * clients.len() * targets.len();
    eprintln!("== {total} runs of {seconds} s each");
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for &mode in &cli.modes {
        for &c in &clients {
            for t in targets.iter_mut() {
                proc::check_interrupted()?;
                let name = t.name().to_string();
                let run_id = format!("{name}-{}-c{c}", mode.as_str());
                let conn = t.conninfo();
                let run = pgbench::Run {
                    script: &script,
                    conn: &conn,
                    mode,
                    clients: c,
                    seconds,
                    log_dir: &work.0.join("logs").join(&run_id),
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
                    m.tps
                        .map(|v| format!("{v:.0}"))
                        .unwrap_or_else(|| "-".into()),
                    m.p50_us
                        .map(|v| format!("{:.2}", v / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    m.p99_us
                        .map(|v| format!("{:.2}", v / 1000.0))
                        .unwrap_or_else(|| "-".into()),
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
                let _ = std::fs::remove_dir_all(work.0.join("logs").join(&run_id));
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
            let keep = std::env::temp_dir().join(format!(
                "hadr-bench-{}-server-{}.log",
                t.name(),
                std::process::id()
            ));
            if std::fs::copy(t.server_log(), &keep).is_ok() {
                notes.push(format!(
                    "{} server log kept in {}",
                    t.name(),
                    keep.display()
                ));
                eprintln!(
                    "{} had errors; its server log is kept in {}",
                    t.name(),
                    keep.display()
                );
            }
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
        machine: Machine {
            load_before,
            load_after: load_average(),
            ..machine()
        },
        versions,
        command,
        seconds,
        clients,
        modes: cli.modes.clone(),
        targets: kinds
            .iter()
            .map(|k| format!("{k:?}").to_lowercase())
            .collect(),
        runs,
        notes,
    };
    report.write(&out_path)?;
    if let Some(j) = &cli.json {
        std::fs::write(j, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", j.display()))?;
    }
    println!("{}", report.table());
    eprintln!("wrote {}", out_path.display());
    let bad = report
        .runs
        .iter()
        .filter(|r| !matches!(r.consistency, Consistency::Ok { .. }))
        .count();
    if bad > 0 {
        bail!(
            "SQL consistency check failed in {bad} run(s); see {}",
            out_path.display()
        );
    }
    Ok(())
}
