//! `--pg-tools`: PostgreSQL's own tools against hadr and PostgreSQL 15 in
//! one run (issue 12): `pgbench -i -s N` wall time, a 1 M-row load through
//! psql's `\copy` in text and in CSV, and pgbench's built-in `tpcb-like`,
//! `simple-update` and `select-only` scripts as shipped (simple protocol)
//! at each client count. One server of each, single node, default
//! durability (PostgreSQL `synchronous_commit = on`, hadr's fsync at
//! commit).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::Machine;
use crate::targets::{ConnInfo, Hadr, Postgres, Target, TargetKind};
use crate::{proc, Ctx};

/// This part's section of docs/benchmarks.md.
const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:pg-tools:begin -->",
    end: "<!-- hadr-bench:pg-tools:end -->",
    heading: "## PostgreSQL's tools: pgbench -i, COPY, the built-in scripts",
    intro: "pgbench and psql as shipped against hadr and PostgreSQL 15 in the same run (issue 12).",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// pgbench's built-in scripts, in the order run.
const SCRIPTS: [&str; 3] = ["tpcb-like", "simple-update", "select-only"];

/// What to run.
pub struct Options {
    /// `pgbench -i -s`.
    pub scale: u32,
    /// Rows per COPY load.
    pub copy_rows: u64,
    /// Seconds per script run.
    pub seconds: u64,
    /// Client counts.
    pub clients: Vec<u32>,
}

/// One script at one client count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScriptRun {
    pub script: String,
    pub clients: u32,
    pub tps: Option<f64>,
    pub failed: u64,
}

/// One server's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolsRun {
    pub server: String,
    pub init_seconds: f64,
    pub copy_text_seconds: f64,
    pub copy_csv_seconds: f64,
    pub scripts: Vec<ScriptRun>,
}

/// What this part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolsReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub scale: u32,
    pub copy_rows: u64,
    pub seconds: u64,
    pub runs: Vec<ToolsRun>,
}

/// Write the load files: the same rows as tab-separated text and as CSV
/// (quoted fields with commas and quotes in them, NULLs).
fn write_data(dir: &Path, rows: u64) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let text = dir.join("load.txt");
    let csv = dir.join("load.csv");
    let mut t = std::io::BufWriter::new(std::fs::File::create(&text)?);
    let mut c = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    for i in 0..rows {
        let amount = (i % 100_000) as f64 / 100.0;
        if i % 10 == 0 {
            writeln!(t, "{i}\tcustomer {i}\t{amount}\t\\N")?;
            writeln!(c, "{i},customer {i},{amount},")?;
        } else {
            writeln!(t, "{i}\tcustomer {i}\t{amount}\tnote, \"{i}\"")?;
            writeln!(c, "{i},customer {i},{amount},\"note, \"\"{i}\"\"\"")?;
        }
    }
    t.flush()?;
    c.flush()?;
    Ok((text, csv))
}

fn psql(conn: &ConnInfo, command: &str, timeout: Duration) -> Result<String> {
    let mut cmd = Command::new("psql");
    cmd.args(conn.args())
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", command])
        .arg(&conn.dbname)
        .env("PGCONNECT_TIMEOUT", "10");
    let out = proc::run_ok(&mut cmd, timeout, "psql")?;
    Ok(out.stdout.trim().to_string())
}

fn measure(
    opts: &Options,
    server: &str,
    conn: &ConnInfo,
    files: &(PathBuf, PathBuf),
) -> Result<ToolsRun> {
    eprintln!("== {server}: pgbench -i -s {}", opts.scale);
    let start = Instant::now();
    let mut cmd = Command::new("pgbench");
    cmd.args(["-i", "-q", "-s", &opts.scale.to_string()])
        .args(conn.args())
        .arg(&conn.dbname)
        .env("PGCONNECT_TIMEOUT", "10");
    proc::run_ok(&mut cmd, Duration::from_secs(3600), "pgbench -i")?;
    let init_seconds = start.elapsed().as_secs_f64();
    let accounts = psql(
        conn,
        "SELECT count(*) FROM pgbench_accounts",
        Duration::from_secs(120),
    )?;
    if accounts != (opts.scale as u64 * 100_000).to_string() {
        bail!("{server}: pgbench -i made {accounts} accounts");
    }
    let copy = |file: &Path, options: &str| -> Result<f64> {
        psql(
            conn,
            "DROP TABLE IF EXISTS load; CREATE TABLE load(id bigint, name text, amount double precision, note text)",
            Duration::from_secs(60),
        )?;
        eprintln!("== {server}: \\copy of {} rows ({options})", opts.copy_rows);
        let start = Instant::now();
        psql(
            conn,
            &format!("\\copy load from '{}' {options}", file.display()),
            Duration::from_secs(1800),
        )?;
        let secs = start.elapsed().as_secs_f64();
        let n = psql(conn, "SELECT count(*) FROM load", Duration::from_secs(120))?;
        if n != opts.copy_rows.to_string() {
            bail!("{server}: the load has {n} rows, not {}", opts.copy_rows);
        }
        Ok(secs)
    };
    let copy_text_seconds = copy(&files.0, "")?;
    let copy_csv_seconds = copy(&files.1, "with (format csv)")?;
    psql(conn, "DROP TABLE load", Duration::from_secs(60))?;
    let mut scripts = Vec::new();
    for script in SCRIPTS {
        for &clients in &opts.clients {
            proc::check_interrupted()?;
            eprintln!(
                "== {server}: pgbench -b {script} -c {clients} -T {}",
                opts.seconds
            );
            let mut cmd = Command::new("pgbench");
            cmd.args(["-b", script])
                .args(["-c", &clients.to_string()])
                .args(["-j", &clients.clamp(1, 2).to_string()])
                .args(["-T", &opts.seconds.to_string()])
                .args(conn.args())
                .arg(&conn.dbname)
                .env("PGCONNECT_TIMEOUT", "10");
            let out = proc::run(
                &mut cmd,
                Duration::from_secs(opts.seconds * 2 + 300),
                "pgbench",
            )?;
            if !out.status.success() {
                bail!("{server}: pgbench -b {script} failed: {}", out.message());
            }
            let mut run = ScriptRun {
                script: script.into(),
                clients,
                tps: None,
                failed: 0,
            };
            for line in out.stdout.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("tps = ") {
                    run.tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
                } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
                    run.failed = rest
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
            }
            scripts.push(run);
        }
    }
    Ok(ToolsRun {
        server: server.into(),
        init_seconds,
        copy_text_seconds,
        copy_csv_seconds,
        scripts,
    })
}

/// Run the part and write its section.
pub fn run_part(ctx: &Ctx, opts: &Options) -> Result<ToolsReport> {
    crate::targets::require_programs(
        "pg-tools",
        &[("pgbench", "postgresql-15"), ("psql", "postgresql-client")],
    )?;
    let load_before = crate::load_average();
    eprintln!("== writing {} rows to load", opts.copy_rows);
    let files = write_data(&ctx.work.join("pgtools-data"), opts.copy_rows)
        .context("writing the COPY files")?;
    let mut runs = Vec::new();
    for kind in &ctx.kinds {
        match kind {
            TargetKind::Postgres => {
                let mut pg = Postgres::new(&ctx.pg_bindir, &ctx.work.join("pgtools-pg"))?;
                let name = "PostgreSQL 15".to_string();
                pg.start().context("starting PostgreSQL")?;
                let r = measure(opts, &name, &pg.conninfo(), &files);
                pg.stop()?;
                runs.push(r?);
            }
            TargetKind::Hadr => {
                let mut h = Hadr::new(&ctx.hadr_bin, &ctx.work.join("pgtools-hadr"))?;
                h.start().context("starting hadr")?;
                let r = measure(opts, "hadr", &h.conninfo(), &files);
                h.stop()?;
                runs.push(r?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(ctx.work.join("pgtools-data"));
    let report = ToolsReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        scale: opts.scale,
        copy_rows: opts.copy_rows,
        seconds: opts.seconds,
        runs,
    };
    write(&ctx.out_path, &report)?;
    eprintln!(
        "wrote the PostgreSQL tools section of {}",
        ctx.out_path.display()
    );
    Ok(report)
}

fn ratio(h: Option<f64>, p: Option<f64>) -> Option<f64> {
    match (h, p) {
        (Some(h), Some(p)) if p > 0.0 => Some(h / p),
        _ => None,
    }
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}"))
        .unwrap_or_else(|| "—".into())
}

/// This part's section.
pub fn write(out: &Path, r: &ToolsReport) -> Result<()> {
    let mut s = PART.start(&r.date, &r.command);
    let hadr = r.runs.iter().find(|x| x.server == "hadr");
    let pg = r.runs.iter().find(|x| x.server != "hadr");
    let _ = writeln!(
        s,
        "One server of each, single node, default durability. `pgbench -i -q -s {}` (client-side \
         data generation: COPY, then primary keys), wall time; a {}-row table (bigint, text, \
         float8, text with commas and quotes, every tenth NULL) loaded with psql's `\\copy` in text and in CSV, \
         wall time of psql; pgbench's built-in scripts as shipped (simple protocol, `-j` up to 2), {} s each. \
         Targets (issue 12): COPY and `pgbench -i` at least as fast as PostgreSQL (time ratio ≤ 1.0); \
         `select-only` and `simple-update` ≥ 1.0× PostgreSQL at 8 clients.\n",
        r.scale, r.copy_rows, r.seconds
    );
    let _ = writeln!(
        s,
        "| load | hadr (s) | PostgreSQL 15 (s) | hadr / PostgreSQL |\n|---|---:|---:|---:|"
    );
    for what in ["`pgbench -i`", "`\\copy` text", "`\\copy` CSV"] {
        let f = |x: &ToolsRun| match what {
            "`pgbench -i`" => x.init_seconds,
            "`\\copy` text" => x.copy_text_seconds,
            _ => x.copy_csv_seconds,
        };
        let h = hadr.map(f);
        let p = pg.map(f);
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} |",
            fmt(h, 2),
            fmt(p, 2),
            fmt(ratio(h, p), 2)
        );
    }
    let _ = writeln!(
        s,
        "\n| script | clients | hadr tps | PostgreSQL 15 tps | hadr / PostgreSQL | failed (hadr / PostgreSQL) |\n|---|---:|---:|---:|---:|---|"
    );
    let find = |run: Option<&ToolsRun>, script: &str, c: u32| {
        run.and_then(|x| {
            x.scripts
                .iter()
                .find(|y| y.script == script && y.clients == c)
                .cloned()
        })
    };
    let clients: Vec<u32> = {
        let mut v: Vec<u32> = r
            .runs
            .iter()
            .flat_map(|x| x.scripts.iter().map(|y| y.clients))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for script in SCRIPTS {
        for &c in &clients {
            let h = find(hadr, script, c);
            let p = find(pg, script, c);
            let htps = h.as_ref().and_then(|x| x.tps);
            let ptps = p.as_ref().and_then(|x| x.tps);
            let failed = |x: &Option<ScriptRun>| {
                x.as_ref().map_or("—".to_string(), |x| x.failed.to_string())
            };
            let _ = writeln!(
                s,
                "| {script} | {c} | {} | {} | {} | {} / {} |",
                fmt(htps, 0),
                fmt(ptps, 0),
                fmt(ratio(htps, ptps), 2),
                failed(&h),
                failed(&p)
            );
        }
    }
    let _ = writeln!(s, "\n{}.\n", r.machine.sentence());
    let _ = writeln!(s, "{}", PART.end);
    PART.write(out, &s)
}
