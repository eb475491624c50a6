//! The fuzz part (issue 11, docs/security.md §Fuzzing): every target of
//! `fuzz/src/lib.rs` coverage-guided under AFL++ (`fuzz/afl.sh`) for
//! `--fuzz-seconds` each, `--fuzz-jobs` at once, each from the committed
//! corpus in a fresh output directory. The table goes into its own section
//! of docs/security.md; each crash and hang input is copied to
//! `target/fuzz-crashes/TARGET/` (the work directory goes away) and named
//! there, and the part fails if there is one.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::Machine;
use crate::Ctx;

const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:fuzz:begin -->",
    end: "<!-- hadr-bench:fuzz:end -->",
    heading: "### Runs and numbers",
    intro:
        "The fuzz part of the benchmark program (`cargo run --release -p hadr-bench -- --fuzz`).",
    insert_before: None,
};

/// What to run.
pub struct Options {
    /// Seconds per target.
    pub seconds: u64,
    /// Targets fuzzed at once (one core each).
    pub jobs: usize,
    /// Targets (empty: all of them).
    pub targets: Vec<String>,
}

/// One target's run, from AFL++'s `fuzzer_stats`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FuzzRun {
    pub target: String,
    pub seconds: u64,
    pub execs: u64,
    pub execs_per_sec: f64,
    pub edges: u64,
    pub corpus: u64,
    pub hangs: u64,
    /// Crash inputs, copied out of the work directory.
    pub crashes: Vec<PathBuf>,
    /// Hang inputs, copied likewise.
    #[serde(default)]
    pub hang_inputs: Vec<PathBuf>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FuzzReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub jobs: usize,
    pub runs: Vec<FuzzRun>,
}

impl FuzzReport {
    /// Targets that crashed or hung (for the exit status).
    pub fn failures(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| !r.crashes.is_empty() || r.hangs > 0)
            .count()
    }
}

pub fn run_part(ctx: &Ctx, opts: &Options) -> Result<FuzzReport> {
    let root = crate::workspace_root();
    let targets: Vec<String> = if opts.targets.is_empty() {
        hadr_fuzz::TARGETS
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        for t in &opts.targets {
            if hadr_fuzz::target(t).is_none() {
                bail!("no fuzz target {t:?} (fuzz/src/lib.rs TARGETS)");
            }
        }
        opts.targets.clone()
    };
    let load_before = crate::load_average();
    // One build before the jobs start, so that they do not wait on
    // cargo's lock one after the other.
    eprintln!("fuzz: building the AFL++ binary (cargo afl build)");
    let built = Command::new("cargo")
        .args(["afl", "build", "--release", "-p", "hadr-fuzz"])
        .args(["--features", "afl", "--bin", "hadr-fuzz-afl"])
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .current_dir(&root)
        .status()
        .context("running cargo afl (cargo install cargo-afl; cargo afl config --build)")?;
    if !built.success() {
        bail!("cargo afl build failed ({built})");
    }
    let queue = Mutex::new(targets.iter().cloned().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    let began = Instant::now();
    let total = targets.len();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                let Some(t) = lock(&queue).pop_front() else {
                    return;
                };
                if crate::proc::interrupted() {
                    return;
                }
                let r = fuzz_one(ctx, &root, &t, opts.seconds);
                let mut done = lock(&results);
                done.push((t.clone(), r));
                eprintln!(
                    "fuzz: {}/{total} done ({t}), {} s in",
                    done.len(),
                    began.elapsed().as_secs()
                );
            });
        }
    });
    let mut runs = Vec::new();
    for (t, r) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        runs.push(r.with_context(|| format!("fuzz target {t}"))?);
    }
    runs.sort_by_key(|r| targets.iter().position(|t| *t == r.target));
    let report = FuzzReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        jobs: opts.jobs.max(1),
        runs,
    };
    let out = ctx.out_path.with_file_name("security.md");
    write(&out, &report)?;
    eprintln!("wrote the fuzz section of {}", out.display());
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `fuzz/afl.sh TARGET SECONDS` in a fresh output directory; its stats.
fn fuzz_one(ctx: &Ctx, root: &Path, target: &str, seconds: u64) -> Result<FuzzRun> {
    let out = ctx.work.join("afl").join(target);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let log = std::fs::File::create(out.with_extension("log"))?;
    eprintln!("fuzz: {target} for {seconds} s");
    let mut child = Command::new("bash")
        .arg(root.join("fuzz/afl.sh"))
        .args([target, &seconds.to_string()])
        .env("AFL_OUT", &out)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting fuzz/afl.sh")?;
    // AFL++ stops itself after -V seconds; this bounds a stuck start.
    let deadline = Instant::now() + Duration::from_secs(seconds + 300);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline || crate::proc::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "fuzz/afl.sh {target} did not end within {seconds} s + 5 min, or was interrupted"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stats_file = out.join("default/fuzzer_stats");
    let stats = std::fs::read_to_string(&stats_file).with_context(|| {
        format!(
            "fuzz/afl.sh {target} ended ({status}) without {}; its log: {}",
            stats_file.display(),
            out.with_extension("log").display()
        )
    })?;
    let crashes = keep_inputs(root, target, "crashes", &out.join("default/crashes"))?;
    let hang_inputs = keep_inputs(root, target, "hangs", &out.join("default/hangs"))?;
    let num = |k: &str| stat(&stats, k).and_then(|v| v.parse::<f64>().ok());
    Ok(FuzzRun {
        target: target.to_string(),
        seconds: num("run_time").unwrap_or(0.0) as u64,
        execs: num("execs_done").unwrap_or(0.0) as u64,
        execs_per_sec: num("execs_per_sec").unwrap_or(0.0),
        edges: num("edges_found").unwrap_or(0.0) as u64,
        corpus: num("corpus_count").unwrap_or(0.0) as u64,
        hangs: num("saved_hangs").unwrap_or(0.0) as u64,
        crashes,
        hang_inputs,
    })
}

/// A value of `fuzzer_stats` (`key : value` lines).
fn stat<'a>(stats: &'a str, key: &str) -> Option<&'a str> {
    stats.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Copy the crash (or hang) inputs out of the work directory, to
/// `target/fuzz-crashes/TARGET/` (`KIND-` before each name).
fn keep_inputs(root: &Path, target: &str, kind: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(kept);
    };
    let to = root.join("target/fuzz-crashes").join(target);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("id:") {
            continue;
        }
        std::fs::create_dir_all(&to)?;
        let dest = to.join(format!("{kind}-{}", name.replace([':', ','], "_")));
        std::fs::copy(e.path(), &dest)?;
        kept.push(dest);
    }
    Ok(kept)
}

fn write(out: &Path, r: &FuzzReport) -> Result<()> {
    let mut s = PART.start(&r.date, &r.command);
    let _ = writeln!(
        s,
        "Each target under AFL++ (`fuzz/afl.sh`, cargo-afl) from the committed corpus (`fuzz/corpus/TARGET`) \
         in a fresh output directory, {} at once. {}. \
         \"Edges\" are the distinct branch edges AFL++ saw.\n",
        r.jobs,
        r.machine.sentence()
    );
    let _ = writeln!(
        s,
        "| target | time | executions | per second | edges | corpus after | crashes / hangs |\n|---|---|---|---|---|---|---|"
    );
    for run in &r.runs {
        let _ = writeln!(
            s,
            "| `{}` | {} s | {} | {:.0} | {} | {} | {} / {} |",
            run.target,
            run.seconds,
            thousands(run.execs),
            run.execs_per_sec,
            run.edges,
            run.corpus,
            run.crashes.len(),
            run.hangs
        );
    }
    let secs: u64 = r.runs.iter().map(|x| x.seconds).sum();
    let execs: u64 = r.runs.iter().map(|x| x.execs).sum();
    let _ = writeln!(
        s,
        "\nIn all: {} min of fuzzing, {} executions, {} crashing and {} hanging target(s).",
        secs / 60,
        thousands(execs),
        r.runs.iter().filter(|x| !x.crashes.is_empty()).count(),
        r.runs.iter().filter(|x| x.hangs > 0).count()
    );
    for run in &r.runs {
        for (what, inputs) in [("Crashes", &run.crashes), ("Hangs", &run.hang_inputs)] {
            if inputs.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{what} of `{}`:\n", run.target);
            for c in inputs {
                let _ = writeln!(s, "- `{}`", c.display());
            }
        }
    }
    s.push_str(PART.end);
    s.push('\n');
    PART.write(out, &s)
}

fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_read_by_key() {
        let s = "start_time        : 1\nexecs_done        : 4064166\nexecs_per_sec     : 15051.20\nedges_found       : 1021\n";
        assert_eq!(stat(s, "execs_done"), Some("4064166"));
        assert_eq!(stat(s, "execs_per_sec"), Some("15051.20"));
        assert_eq!(stat(s, "edges"), None);
        assert_eq!(thousands(4064166), "4,064,166");
        assert_eq!(thousands(999), "999");
    }
}
