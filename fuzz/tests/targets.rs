//! The short fuzz run of CI (docs/security.md §Fuzzing): for each target,
//! every seed, every committed corpus file and every regression input (a
//! crash found earlier), then seeded mutations of them for a few seconds
//! (HADR_FUZZ_SECONDS, default 3; the seed is fixed, so a failure
//! reproduces). A failing input is written to the target directory and
//! named in the failure.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hadr_fuzz::mutate::{mutate, Rng};
use hadr_fuzz::seeds::seeds;

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|e| {
            let p = e.ok()?.path();
            let bytes = std::fs::read(&p).ok()?;
            Some((p, bytes))
        })
        .collect();
    out.sort();
    out
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `input` through the target; on a panic, keep the input and fail
/// with where it is.
fn run_one(name: &str, target: hadr_fuzz::Target, input: &[u8], what: &str) {
    if panic::catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}-{:016x}", fxhash(input)));
        let _ = std::fs::write(&path, input);
        panic!(
            "fuzz target {name} panicked on {what}; input saved at {} \
             (copy it to fuzz/regressions/{name}/ to replay it here)",
            path.display()
        );
    }
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn budget() -> Duration {
    let secs = std::env::var("HADR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

fn short_run(name: &str) {
    let target = hadr_fuzz::target(name).expect("a target of that name");
    let mut inputs: Vec<Vec<u8>> = seeds()
        .into_iter()
        .filter(|(t, _, _)| *t == name)
        .map(|(_, _, b)| b)
        .collect();
    assert!(!inputs.is_empty(), "no seeds for {name}");
    for (path, bytes) in files(&fuzz_dir().join("corpus").join(name)) {
        run_one(name, target, &bytes, &path.display().to_string());
        inputs.push(bytes);
    }
    // Every crash found so far stays fixed.
    let regressions = files(&fuzz_dir().join("regressions").join(name));
    for (path, bytes) in &regressions {
        run_one(name, target, bytes, &path.display().to_string());
    }
    inputs.extend(regressions.into_iter().map(|(_, b)| b));
    for input in &inputs {
        run_one(name, target, input, "a seed");
    }
    let mut rng = Rng::new(fxhash(name.as_bytes()));
    let budget = budget();
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget && runs < 2_000_000 {
        let a = &inputs[rng.below(inputs.len())];
        let b = &inputs[rng.below(inputs.len())];
        let input = mutate(&mut rng, a, b);
        run_one(name, target, &input, &format!("mutation {runs}"));
        runs += 1;
    }
    eprintln!(
        "{name}: {} corpus inputs, {runs} mutations in {:.1?}",
        inputs.len(),
        start.elapsed()
    );
    assert!(runs > 0);
}

#[test]
fn pg_frontend() {
    short_run("pg_frontend");
}

#[test]
fn pg_values() {
    short_run("pg_values");
}

#[test]
fn repl_protocol() {
    short_run("repl_protocol");
}

#[test]
fn log_record() {
    short_run("log_record");
}

#[test]
fn config() {
    short_run("config");
}

#[test]
fn sql() {
    short_run("sql");
}

#[test]
fn admin() {
    short_run("admin");
}

#[test]
fn copy() {
    short_run("copy");
}

/// Every target has its seeds committed as files for AFL++; with
/// HADR_FUZZ_WRITE_SEEDS=1 this writes them (after a change to seeds.rs).
#[test]
fn seeds_are_committed() {
    let write = std::env::var_os("HADR_FUZZ_WRITE_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = fuzz_dir().join("corpus").join(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} differs from seeds.rs: rerun with HADR_FUZZ_WRITE_SEEDS=1",
            path.display()
        );
    }
    for (name, _) in hadr_fuzz::TARGETS {
        assert!(fuzz_dir().join("corpus").join(name).is_dir(), "{name}");
    }
}
