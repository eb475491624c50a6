//! The file-sync part (`--filesync`): how long a file written on the
//! primary takes to appear, with the right content, on the standby, under a
//! database write load; and whether synced directories cost commits anything
//! when no file changes (commit latency of a pair with `sync_paths` against
//! a pair without, in the same run, alternating).
//!
//! Both pairs run at once on the same machine (NEARSYNC, fsync on); the load
//! alternates between them in rounds, so that drift in the machine's load
//! hits both alike.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hadr_testkit::{free_port, local, Hadr, Server};
use serde::{Deserialize, Serialize};

use crate::report::Machine;
use crate::Ctx;

/// This part's section of docs/benchmarks.md.
const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:filesync:begin -->",
    end: "<!-- hadr-bench:filesync:end -->",
    heading: "## File sync",
    intro: "Files kept in sync through the log (docs/filesync.md): lag from a write on the primary to the \
            file with the right content on the standby, and commit latency with and without synced \
            directories.",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// Files the writer cycles through (each rewritten every `FILES / rate` s).
const FILES: usize = 100;
/// Bytes per file write.
const FILE_BYTES: usize = 4096;

/// What the part is told.
pub struct Options {
    /// Seconds of file writes.
    pub seconds: u64,
    /// File writes per second.
    pub rate: u32,
    /// Database clients of the write load.
    pub clients: usize,
    /// Seconds per commit-latency round (eight rounds, four per pair).
    pub round_seconds: u64,
}

/// Percentiles of a sample, in µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Dist {
    pub n: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Dist {
    fn of(mut v: Vec<Duration>) -> Dist {
        v.sort();
        let n = v.len();
        if n == 0 {
            return Dist::default();
        }
        let us = |d: Duration| d.as_micros() as u64;
        let pct = |p: usize| us(v[(n * p / 100).min(n - 1)]);
        Dist {
            n,
            p50_us: pct(50),
            p99_us: pct(99),
            max_us: us(v[n - 1]),
        }
    }

    fn ms(us: u64) -> String {
        format!("{:.1}", us as f64 / 1000.0)
    }
}

/// What this part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilesyncReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub seconds: u64,
    pub rate: u32,
    pub clients: usize,
    pub files_written: usize,
    /// Writes whose content never showed up on the standby in time.
    pub files_missing: usize,
    pub lag: Dist,
    pub commit_without_sync: Dist,
    pub commit_with_sync_idle: Dist,
    pub commit_with_sync_files: Dist,
    /// Commits per second of each round, in order (plain, synced, synced,
    /// plain, …): how much the machine drifted.
    #[serde(default)]
    pub rounds_tps: Vec<f64>,
}

struct Pair {
    a: Server,
    _b: Server,
    dirs: Option<(PathBuf, PathBuf)>,
    _tmp: tempfile::TempDir,
}

fn start_pair(bin: &Path, work: &Path, sync: bool) -> Result<Pair> {
    let tmp = tempfile::tempdir_in(work).context("creating a pair directory")?;
    let dirs = sync.then(|| (tmp.path().join("www-a"), tmp.path().join("www-b")));
    let hadr = Hadr::new(bin);
    let (a_local, b_local) = (local(free_port()), local(free_port()));
    let flags = |me: &str, peer: &str, dir: Option<&PathBuf>| {
        let mut v: Vec<String> = [
            "--hadr-local",
            me,
            "--hadr-target-list",
            peer,
            "--hadr-syncmode",
            "NEARSYNC",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(d) = dir {
            v.push("--sync-path".into());
            v.push(format!("www={}", d.display()));
        }
        v
    };
    let mut fa = vec!["--role".to_string(), "primary".into()];
    fa.extend(flags(&a_local, &b_local, dirs.as_ref().map(|d| &d.0)));
    let a = hadr.start_with(fa)?;
    let bdir = tmp.path().join("b");
    hadr.clone_to(&a_local, &bdir)?;
    let b = hadr.on_dir(
        bdir,
        &flags(&b_local, &a_local, dirs.as_ref().map(|d| &d.1)),
    )?;
    hadr_testkit::block_on(a.wait_for("PEER", Duration::from_secs(60), |st| {
        st.writable
            && st
                .principal()
                .is_some_and(|s| s.hadr_state == hadr_admin_api::PairState::Peer)
    }))?;
    Ok(Pair {
        a,
        _b: b,
        dirs,
        _tmp: tmp,
    })
}

/// `clients` clients committing one small INSERT each, back to back, for
/// `secs`; every commit's latency.
async fn load(conninfo: String, clients: usize, secs: u64) -> Result<Vec<Duration>> {
    let c = hadr_testkit::connect(&conninfo).await?;
    c.batch_execute("CREATE TABLE IF NOT EXISTS load(id INTEGER PRIMARY KEY, v TEXT)")
        .await?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let conninfo = conninfo.clone();
        tasks.push(tokio::spawn(async move {
            let c = hadr_testkit::connect(&conninfo).await?;
            let st = c.prepare("INSERT INTO load(v) VALUES ($1)").await?;
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                c.execute(&st, &[&"x".repeat(100)]).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Write files on the primary at `rate` per second for `secs`, and time
/// each until the standby's copy has its content.
fn file_writes(a: &Path, b: &Path, rate: u32, secs: u64) -> Result<(usize, Vec<Duration>)> {
    type Pending = Vec<(PathBuf, blake3::Hash, Instant)>;
    let pending: Arc<Mutex<Pending>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (pending, done) = (pending.clone(), done.clone());
        std::thread::spawn(move || {
            let mut lags = Vec::new();
            let mut give_up: Option<Instant> = None;
            loop {
                {
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.retain(|(path, want, at)| match std::fs::read(path) {
                        Ok(d) if blake3::hash(&d) == *want => {
                            lags.push(at.elapsed());
                            false
                        }
                        _ => true,
                    });
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        let g = *give_up
                            .get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
                        if p.is_empty() || Instant::now() > g {
                            return (lags, p.len());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let start = Instant::now();
    let total = (rate as u64 * secs) as usize;
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        crate::proc::check_interrupted()?;
        let name = format!("f{:03}.txt", k % FILES);
        let mut body = format!("write {k}\n").into_bytes();
        body.resize(FILE_BYTES, b'.');
        let want = blake3::hash(&body);
        let at = Instant::now();
        std::fs::write(a.join(&name), &body).with_context(|| format!("writing {name}"))?;
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((b.join(&name), want, at));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (lags, missing) = checker
        .join()
        .map_err(|_| anyhow::anyhow!("the checker thread panicked"))?;
    Ok((missing, lags))
}

/// Runs the part and writes its section of the document.
pub fn run_part(ctx: &Ctx, opts: &Options) -> Result<FilesyncReport> {
    let load_before = crate::load_average();
    let plain = start_pair(&ctx.hadr_bin, &ctx.work, false)?;
    let synced = start_pair(&ctx.hadr_bin, &ctx.work, true)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (mut without, mut idle) = (Vec::new(), Vec::new());
    // Plain, synced, synced, plain: neither pair always goes first.
    let mut rounds = Vec::new();
    for (round, synced_first) in [(0, false), (1, true), (2, false), (3, true)] {
        for sync in [synced_first, !synced_first] {
            let (pair, into, what) = if sync {
                (&synced, &mut idle, "with sync_paths, no file changes")
            } else {
                (&plain, &mut without, "without sync_paths")
            };
            let l = rt.block_on(load(pair.a.conninfo(), opts.clients, opts.round_seconds))?;
            eprintln!("round {round}: {what}: {} commits", l.len());
            rounds.push(l.len() as f64 / opts.round_seconds as f64);
            into.extend(l);
        }
    }
    drop(plain);
    let (da, db) = synced
        .dirs
        .clone()
        .context("the synced pair has directories")?;
    let bg = rt.spawn(load(synced.a.conninfo(), opts.clients, opts.seconds + 1));
    let (missing, lags) = file_writes(&da, &db, opts.rate, opts.seconds)?;
    let busy = rt.block_on(bg)??;
    let report = FilesyncReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        seconds: opts.seconds,
        rate: opts.rate,
        clients: opts.clients,
        files_written: (opts.rate as u64 * opts.seconds) as usize,
        files_missing: missing,
        lag: Dist::of(lags),
        commit_without_sync: Dist::of(without),
        commit_with_sync_idle: Dist::of(idle),
        commit_with_sync_files: Dist::of(busy),
        rounds_tps: rounds,
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!("wrote the file-sync section of {}", ctx.out_path.display());
    Ok(report)
}

impl FilesyncReport {
    /// The results table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| what | samples | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |\n",
        );
        let row = |s: &mut String, what: &str, d: &Dist| {
            let _ = writeln!(
                s,
                "| {what} | {} | {} | {} | {} |",
                d.n,
                Dist::ms(d.p50_us),
                Dist::ms(d.p99_us),
                Dist::ms(d.max_us)
            );
        };
        row(
            &mut s,
            "file-sync lag, write on the primary to the content on the standby",
            &self.lag,
        );
        row(
            &mut s,
            "commit latency, pair without sync_paths",
            &self.commit_without_sync,
        );
        row(
            &mut s,
            "commit latency, pair with sync_paths, no file changes",
            &self.commit_with_sync_idle,
        );
        row(
            &mut s,
            "commit latency, pair with sync_paths, during the file writes",
            &self.commit_with_sync_files,
        );
        s
    }

    /// The generated section, markers included.
    pub fn section(&self) -> String {
        let mut s = PART.start(&self.date, &self.command);
        let m = &self.machine;
        let _ = writeln!(s, "- {}", m.sentence());
        let _ = writeln!(
            s,
            "- What: two primary/standby pairs on this machine (NEARSYNC, log fsync on), one with \
             `--sync-path www=…` on each node, one without. {} clients commit one small INSERT each, \
             back to back, against one pair at a time, in eight rounds ordered plain, synced, synced, plain, plain, synced, synced, plain (commit \
             latency without file changes). Then, on the synced pair under the same load, a writer \
             rewrites one of {FILES} files of {FILE_BYTES} bytes on the primary {} times a second for \
             {} s ({} writes); a reader polls the standby's copy every 2 ms until its blake3 hash is \
             the one written. Lag uses one clock (both nodes on this machine). {} write(s) never \
             showed up within 10 s after the last.\n",
            self.clients, self.rate, self.seconds, self.files_written, self.files_missing
        );
        s.push_str(&self.table());
        if !self.rounds_tps.is_empty() {
            let r: Vec<String> = self.rounds_tps.iter().map(|t| format!("{t:.0}")).collect();
            let _ = writeln!(
                s,
                "\nCommits per second in each round (plain, synced, synced, plain, …): {}.",
                r.join(", ")
            );
        }
        let _ = writeln!(s, "\n{}", PART.end);
        s
    }

    /// Writes the section into the document at `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        PART.write(out, &self.section())
    }
}
