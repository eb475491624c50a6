//! Commit-latency measurement (ignored by default):
//! `cargo test --release -p hadr-log -- --ignored --nocapture`.
//!
//! Runs on the real file system under the Cargo target directory (not /tmp, which may be a
//! tmpfs where fdatasync costs nothing), or under `HADR_LOG_BENCH_DIR` if set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hadr_log::{CaptureMark, FlushMode, Log, LogConfig, Page, Record};

const N: usize = 2000;

fn bench_root() -> PathBuf {
    std::env::var_os("HADR_LOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
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

fn run(segment_size: u64) {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench root");
    let dir = tempfile::tempdir_in(&root).expect("tempdir");
    let cfg = LogConfig {
        dir: dir.path().to_path_buf(),
        segment_size,
        retention_bytes: u64::MAX,
        flush_mode: FlushMode::Fsync,
    };
    Log::create(&cfg).expect("create");
    let (log, _) = Log::open(cfg, 0).expect("open");
    // Steady state: the spare segment written in the background right after open is ready,
    // so its one-off zero-fill does not compete with the measured commits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.spare_ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let recs: Vec<Record> = (0..N as u64).map(record).collect();
    let mut lat = Vec::with_capacity(N);
    for r in &recs {
        let t = Instant::now();
        let (_, end) = log.append(r).expect("append");
        log.wait_flushed(end, Duration::from_secs(30))
            .expect("wait_flushed");
        lat.push(t.elapsed());
    }
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / N as u32;
    let pct = |p: usize| lat[(N * p / 100).min(N - 1)];
    eprintln!(
        "segment_size {:>5} KiB: {N} x append(8 KiB)+wait_flushed: mean {:>4} us, p50 {:>4} us, p90 {:>4} us, p99 {:>5} us, max {:>6} us, {} flushes",
        segment_size >> 10,
        mean.as_micros(),
        pct(50).as_micros(),
        pct(90).as_micros(),
        pct(99).as_micros(),
        lat[N - 1].as_micros(),
        log.stats().flushes
    );
}

#[test]
#[ignore = "measurement; run with --release -- --ignored --nocapture"]
fn commit_latency_8k_records() {
    // 64 MiB (the default): 2000 records (~16.5 MB) never leave the first segment.
    run(64 << 20);
    // 4 MiB: about four segment switches during the run.
    run(4 << 20);
}
