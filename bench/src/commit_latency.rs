//! The commit-latency part: how long one durable commit of an 8 KiB page
//! takes in hadr's log alone (`Log::append` + `wait_flushed`, fsync), with
//! the default 64 MiB segments (no segment switch during the run) and with
//! 4 MiB segments (a few switches). No server, no SQL: the floor under every
//! durable commit the other parts measure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hadr_log::{CaptureMark, FlushMode, Log, LogConfig, Page, Record};
use serde::{Deserialize, Serialize};

use crate::report::Machine;
use crate::Ctx;

/// This part's section of docs/benchmarks.md.
const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:commit-latency:begin -->",
    end: "<!-- hadr-bench:commit-latency:end -->",
    heading: "## Commit latency of the log",
    intro: "What one durable commit costs in hadr's log alone, without a server or SQL.",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// Segment sizes measured: the default, and a small one that switches segments.
const SEGMENTS: [u64; 2] = [64 << 20, 4 << 20];

/// One run: `records` commits on segments of `segment_bytes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyRun {
    pub segment_bytes: u64,
    pub records: usize,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// fdatasyncs the flusher made (group commit folds commits into one).
    pub flushes: u64,
}

impl LatencyRun {
    /// Its row of the results table.
    fn row(&self) -> String {
        format!(
            "| {} MiB | {} | {} | {} | {} | {} | {} | {} |",
            self.segment_bytes >> 20,
            self.records,
            self.mean_us,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.max_us,
            self.flushes
        )
    }
}

/// What this part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    /// Where the log segments were written.
    pub dir: String,
    pub runs: Vec<LatencyRun>,
}

/// One 8 KiB page of incompressible bytes, so the encoded record is about 8.3 KB.
fn record(i: u64) -> Record {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Record {
        epoch: 1,
        commit_time_micros: i,
        db_size_pages: 1,
        page_size: 8192,
        mark: CaptureMark::default(),
        pages: vec![Page { pgno: 1, data }],
    }
}

/// `records` appends of an 8 KiB record, each waited for until durable,
/// one after the other, on a new log in `root`.
fn measure(root: &Path, segment_bytes: u64, records: usize) -> Result<LatencyRun> {
    let dir = tempfile::tempdir_in(root)
        .with_context(|| format!("creating a directory in {}", root.display()))?;
    let cfg = LogConfig {
        dir: dir.path().to_path_buf(),
        segment_size: segment_bytes,
        retention_bytes: u64::MAX,
        flush_mode: FlushMode::Fsync,
    };
    Log::create(&cfg).context("creating the log")?;
    let (log, _) = Log::open(cfg, 0).context("opening the log")?;
    // Steady state: the spare segment written in the background right after
    // open is ready, so its one-off zero-fill does not compete with the
    // measured commits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.spare_ready() && Instant::now() < deadline {
        crate::proc::sleep(Duration::from_millis(10))?;
    }
    let recs: Vec<Record> = (0..records as u64).map(record).collect();
    let mut lat = Vec::with_capacity(records);
    for r in &recs {
        let t = Instant::now();
        let (_, end) = log.append(r).context("append")?;
        log.wait_flushed(end, Duration::from_secs(30))
            .context("wait_flushed")?;
        lat.push(t.elapsed());
    }
    crate::proc::check_interrupted()?;
    lat.sort();
    let n = lat.len().max(1);
    let us = |d: Duration| d.as_micros() as u64;
    let pct = |p: usize| lat.get((n * p / 100).min(n - 1)).copied().map_or(0, us);
    let run = LatencyRun {
        segment_bytes,
        records,
        mean_us: us(lat.iter().sum::<Duration>() / n as u32),
        p50_us: pct(50),
        p90_us: pct(90),
        p99_us: pct(99),
        max_us: lat.last().copied().map_or(0, us),
        flushes: log.stats().flushes,
    };
    log.close().context("closing the log")?;
    Ok(run)
}

/// Runs the part in `dir` (a real file system: on a tmpfs an fsync costs
/// nothing) and writes its section of the document.
pub fn run_part(ctx: &Ctx, dir: &Path, records: usize) -> Result<LatencyReport> {
    let load_before = crate::load_average();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut runs = Vec::new();
    for seg in SEGMENTS {
        let r = measure(dir, seg, records)?;
        eprintln!("commit latency (µs): {}", r.row());
        runs.push(r);
    }
    let report = LatencyReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        // Relative to the workspace when inside it: the same on every checkout.
        dir: dir
            .strip_prefix(crate::workspace_root())
            .unwrap_or(dir)
            .display()
            .to_string(),
        runs,
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!(
        "wrote the commit-latency section of {}",
        ctx.out_path.display()
    );
    Ok(report)
}

/// Where the part writes by default: the workspace's target directory, on
/// the disk the project lives on (HADR_LOG_BENCH_DIR overrides it).
pub fn default_dir(root: &Path) -> PathBuf {
    std::env::var_os("HADR_LOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("hadr-bench-commit-latency"))
}

impl LatencyReport {
    /// The results table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| segment size | commits | mean µs | p50 µs | p90 µs | p99 µs | max µs | fsyncs |\n",
        );
        s.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for r in &self.runs {
            let _ = writeln!(s, "{}", r.row());
        }
        s
    }

    /// The generated section, markers included.
    pub fn section(&self) -> String {
        let mut s = PART.start(&self.date, &self.command);
        let m = &self.machine;
        let _ = writeln!(s, "- {}", m.sentence());
        let _ = writeln!(
            s,
            "- What: one thread appends a record holding one 8 KiB page of incompressible bytes (about 8.3 KB \
             encoded) to a new log in `{}`, then waits until the log is durable up to it (`Log::append` + \
             `Log::wait_flushed`, flush mode `fsync`); the next append starts only then, so no commit shares \
             another's fsync. The spare segment is made before the first commit. With 4 MiB segments the run \
             switches segments a few times.\n",
            self.dir
        );
        s.push_str(&self.table());
        let _ = writeln!(s, "\n{}", PART.end);
        s
    }

    /// Writes the section into the document at `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        PART.write(out, &self.section())
    }
}
