//! Behaviour tests of the on-disk log: reopen, segments, group commit, recovery, retention, shipping.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hadr_log::{
    verify_dir, CaptureMark, EncodeError, FlushMode, Log, LogConfig, LogError, Lsn, Page, Record,
};

const SEG_HEADER: u64 = 32;

fn cfg(dir: &Path, segment_size: u64, mode: FlushMode) -> LogConfig {
    LogConfig {
        dir: dir.to_path_buf(),
        segment_size,
        retention_bytes: 1 << 30,
        flush_mode: mode,
    }
}

/// Deterministic pseudo-random bytes so records are partly incompressible.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn rec(i: u64) -> Record {
    let page_size = 512u32;
    let n_pages = 1 + (i % 3) as usize;
    let pages = (0..n_pages)
        .map(|p| Page {
            pgno: 1 + p as u32 + (i as u32 % 7),
            data: if p % 2 == 0 {
                noise(i * 31 + p as u64, page_size as usize)
            } else {
                vec![i as u8; page_size as usize]
            },
        })
        .collect();
    Record {
        epoch: 1 + i / 10,
        commit_time_micros: 1_700_000_000_000_000 + i,
        db_size_pages: 100 + i as u32,
        page_size,
        mark: CaptureMark {
            salt1: 11,
            salt2: 22,
            frame_end: i as u32,
            cksum1: i as u32 * 3,
            cksum2: i as u32 * 5,
        },
        pages,
    }
}

fn new_log(dir: &Path, segment_size: u64, mode: FlushMode) -> Log {
    let c = cfg(dir, segment_size, mode);
    Log::create(&c).expect("create");
    Log::open(c, 0).expect("open").0
}

fn append_n(log: &Log, range: std::ops::Range<u64>) -> Vec<(Lsn, Record)> {
    range
        .map(|i| {
            let r = rec(i);
            let (lsn, end) = log.append(&r).expect("append");
            assert_eq!(end, log.end_lsn());
            (lsn, r)
        })
        .collect()
}

fn read_all(log: &Log, from: Lsn) -> Vec<(Lsn, Record)> {
    log.read_from(from)
        .expect("read_from")
        .collect::<Result<Vec<_>, _>>()
        .expect("read")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hlog"))
        .collect();
    v.sort();
    v
}

fn seg_start(p: &Path) -> Lsn {
    let stem = p.file_stem().and_then(|s| s.to_str()).expect("stem");
    u64::from_str_radix(stem, 16).expect("hex name")
}

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
    fn check_send<T: Send>() {}
    check_send::<hadr_log::LogReader>();
}

#[test]
fn append_reopen_returns_identical_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 64 << 20, FlushMode::Fsync);
    assert_eq!(log.last_record().expect("last"), None);
    let written = append_n(&log, 0..20);
    assert_eq!(written[0].0, 0);
    let end = log.end_lsn();
    log.flush().expect("flush");
    assert_eq!(log.flushed_lsn(), end);
    log.close().expect("close");
    assert!(matches!(log.append(&rec(99)), Err(LogError::Closed)));
    drop(log);

    let (log, report) = Log::open(cfg(dir.path(), 64 << 20, FlushMode::Fsync), 0).expect("reopen");
    assert_eq!(report.records_scanned, 20);
    assert_eq!(report.truncated_tail_bytes, 0);
    assert_eq!(report.truncated_at, None);
    assert_eq!(log.end_lsn(), end);
    assert_eq!(log.flushed_lsn(), end);
    assert_eq!(log.start_lsn(), 0);
    assert_eq!(read_all(&log, 0), written);
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
    // Reading from a middle record boundary returns the suffix.
    assert_eq!(read_all(&log, written[7].0), written[7..].to_vec());
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!(
        (v.records, v.end_lsn, v.segments, v.last_epoch),
        (20, end, 1, Some(2))
    );
}

#[test]
fn create_refuses_existing_and_open_needs_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(&dir.path().join("log"), 1 << 20, FlushMode::Off);
    assert!(matches!(Log::open(c.clone(), 0), Err(LogError::Io { .. })));
    std::fs::create_dir_all(&c.dir).expect("mkdir");
    assert!(matches!(
        Log::open(c.clone(), 0),
        Err(LogError::NotFound(_))
    ));
    Log::create(&c).expect("create");
    assert!(matches!(Log::create(&c), Err(LogError::AlreadyExists(_))));
}

#[test]
fn invalid_records_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 1 << 20, FlushMode::Off);
    let mut r = rec(1);
    r.pages[0].data.pop();
    assert!(matches!(
        log.append(&r),
        Err(LogError::InvalidRecord(EncodeError::PageLen { .. }))
    ));
    let mut r = rec(1);
    r.page_size = 1000;
    assert!(matches!(
        log.append(&r),
        Err(LogError::InvalidRecord(EncodeError::PageSize(1000)))
    ));
    let mut r = rec(1);
    r.pages[0].pgno = 0;
    assert!(matches!(
        log.append(&r),
        Err(LogError::InvalidRecord(EncodeError::PageZero))
    ));
    assert_eq!(log.end_lsn(), 0);
}

#[test]
fn tiny_segments_switch_and_read_across() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 1500, FlushMode::Fsync);
    let written = append_n(&log, 0..60);
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 15, "only {} segments", segs.len());
    // Segments chain: each file's name is the LSN where the previous one's records stop, and
    // every file is preallocated to the segment size (no record here is bigger than that).
    assert_eq!(seg_start(&segs[0]), 0);
    let mut total = 0;
    for (k, p) in segs.iter().enumerate() {
        let len = std::fs::metadata(p).expect("meta").len();
        assert_eq!(len, 1500, "{}", p.display());
        total += len;
        let start = seg_start(p);
        let stop = segs.get(k + 1).map_or(log.end_lsn(), |q| seg_start(q));
        assert!(stop > start && stop - start <= 1500 - SEG_HEADER);
        if k + 1 < segs.len() {
            // The segment was left because the next record did not fit in what remained.
            let (_, r) = written.iter().find(|(l, _)| *l == stop).expect("boundary");
            assert!(stop - start + r.encode(stop).len() as u64 > 1500 - SEG_HEADER);
        }
    }
    assert_eq!(log.size_bytes(), total);
    assert_eq!(read_all(&log, 0), written);
    for k in [1, 17, 33, 59] {
        assert_eq!(read_all(&log, written[k].0), written[k..].to_vec());
    }
    // A segment boundary is a record boundary.
    let mid = seg_start(&segs[5]);
    let k = written
        .iter()
        .position(|(l, _)| *l == mid)
        .expect("boundary");
    assert_eq!(read_all(&log, mid), written[k..].to_vec());
    assert!(log.read_from(log.end_lsn() + 1).is_err());
    assert!(read_all(&log, log.end_lsn()).is_empty());
    // Mid-record start is rejected, not misread.
    let bad = log
        .read_from(written[3].0 + 1)
        .expect("reader")
        .next()
        .expect("item");
    assert!(bad.is_err());
    log.flush().expect("flush");
    drop(log);

    let (log, report) = Log::open(cfg(dir.path(), 1500, FlushMode::Fsync), 0).expect("reopen");
    assert_eq!(report.records_scanned, 60);
    assert_eq!(read_all(&log, 0), written);
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!((v.records, v.segments), (60, segs.len()));
    // Appending after reopen continues in the right place.
    let more = append_n(&log, 60..70);
    assert_eq!(
        more[0].0,
        written
            .last()
            .map(|(l, r)| l + r.encode(*l).len() as u64)
            .unwrap_or(0)
    );
    assert_eq!(read_all(&log, 0).len(), 70);
}

#[test]
fn group_commit_batches_concurrent_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(new_log(dir.path(), 64 << 20, FlushMode::Fsync));
    let max_seen = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    {
        let max_seen = Arc::clone(&max_seen);
        let calls = Arc::clone(&calls);
        log.on_flush(Box::new(move |lsn| {
            // Flushed LSNs only move forward.
            let prev = max_seen.swap(lsn, Ordering::SeqCst);
            assert!(lsn >= prev);
            calls.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let threads = 8;
    let per = 40;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..per {
                    let (_, end) = log.append(&rec(t * 1000 + i)).expect("append");
                    let f = log
                        .wait_flushed(end, Duration::from_secs(30))
                        .expect("wait_flushed");
                    assert!(f >= end);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    // Callbacks run after waiters are released; closing joins the flusher so the last one has
    // run before the counters below are compared.
    log.close().expect("close");
    let s = log.stats();
    eprintln!("group commit: {s:?}");
    assert_eq!(s.appends, threads * per);
    assert_eq!(s.bytes, log.end_lsn());
    assert!(
        s.flushes < s.appends,
        "no batching: {} flushes for {} appends",
        s.flushes,
        s.appends
    );
    assert_eq!(log.flushed_lsn(), log.end_lsn());
    assert_eq!(max_seen.load(Ordering::SeqCst), log.end_lsn());
    assert_eq!(calls.load(Ordering::SeqCst), s.flushes);
    assert_eq!(read_all(&log, 0).len() as u64, threads * per);
}

#[test]
fn flush_mode_off_still_publishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 4096, FlushMode::Off);
    append_n(&log, 0..10);
    assert_eq!(log.flush().expect("flush"), log.end_lsn());
    assert_eq!(log.flushed_lsn(), log.end_lsn());
    assert_eq!("off".parse::<FlushMode>().expect("parse"), FlushMode::Off);
    assert_eq!(
        "fsync".parse::<FlushMode>().expect("parse"),
        FlushMode::Fsync
    );
    assert!("sometimes".parse::<FlushMode>().is_err());
}

#[test]
fn wait_flushed_times_out_for_unwritten_lsn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 4096, FlushMode::Off);
    append_n(&log, 0..2);
    let target = log.end_lsn() + 1;
    match log.wait_flushed(target, Duration::from_millis(50)) {
        Err(LogError::FlushTimeout { lsn, flushed }) => {
            assert_eq!(lsn, target);
            assert!(flushed < target);
        }
        other => panic!("expected FlushTimeout, got {other:?}"),
    }
    log.close().expect("close");
    assert!(matches!(
        log.wait_flushed(target, Duration::from_secs(5)),
        Err(LogError::Closed)
    ));
}

#[test]
fn torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 64 << 20, FlushMode::Fsync);
    let written = append_n(&log, 0..10);
    let end = log.end_lsn();
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    // Cut the last record in half.
    let f = OpenOptions::new().write(true).open(&seg).expect("open seg");
    f.set_len(SEG_HEADER + end - 7).expect("set_len");
    drop(f);
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!(v.end_lsn, written[9].0);
    assert!(v.torn_tail_bytes > 0);

    let (log, report) = Log::open(cfg(dir.path(), 64 << 20, FlushMode::Fsync), 0).expect("open");
    assert_eq!(report.truncated_at, Some(written[9].0));
    assert_eq!(report.truncated_tail_bytes, end - 7 - written[9].0);
    assert_eq!(report.records_scanned, 9);
    assert_eq!(log.end_lsn(), written[9].0);
    assert_eq!(read_all(&log, 0), written[..9].to_vec());
    assert_eq!(log.last_record().expect("last"), Some(written[8].clone()));
    // The log keeps working after repair.
    let (lsn, _) = log.append(&rec(42)).expect("append");
    assert_eq!(lsn, written[9].0);
    drop(log);
    let (log, report) = Log::open(cfg(dir.path(), 64 << 20, FlushMode::Fsync), 0).expect("open");
    assert_eq!(report.truncated_tail_bytes, 0);
    assert_eq!(read_all(&log, 0).len(), 10);
}

/// Length of `b` up to and including its last non-zero byte.
fn nonzero_len(b: &[u8]) -> u64 {
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i as u64 + 1)
}

fn assert_zeros(path: &Path, from: u64, to: u64) {
    let f = std::fs::File::open(path).expect("open");
    let mut b = vec![0u8; (to - from) as usize];
    f.read_exact_at(&mut b, from).expect("read");
    assert!(b.iter().all(|&x| x == 0), "non-zero bytes in {from}..{to}");
}

#[test]
fn garbage_tails_are_zeroed_and_zero_tails_are_the_normal_end() {
    const SEG: u64 = 64 << 20;
    // (bytes, written right after the records instead of at the end of the file)
    let cases: [(Vec<u8>, bool); 5] = [
        (noise(7, 300), true),
        (b"HREC".to_vec(), true),
        (vec![0u8; 4096], true),
        (noise(8, 300), false),
        (b"HREC".to_vec(), false),
    ];
    for (garbage, at_end_of_records) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = new_log(dir.path(), SEG, FlushMode::Off);
        let written = append_n(&log, 0..5);
        let end = log.end_lsn();
        drop(log);
        let seg = segment_files(dir.path()).pop().expect("segment");
        let f = OpenOptions::new().write(true).open(&seg).expect("open");
        // After the records (overwriting preallocated zeros), or past the preallocated space.
        let at = if at_end_of_records {
            SEG_HEADER + end
        } else {
            SEG
        };
        f.write_all_at(&garbage, at).expect("write");
        drop(f);
        let file_len = std::fs::metadata(&seg).expect("meta").len();
        let expect_bytes = match nonzero_len(&garbage) {
            0 => 0,
            n => at + n - (SEG_HEADER + end),
        };
        let v = verify_dir(dir.path()).expect("verify");
        assert_eq!((v.end_lsn, v.torn_tail_bytes), (end, expect_bytes));
        let (log, report) = Log::open(cfg(dir.path(), SEG, FlushMode::Off), 0).expect("open");
        assert_eq!(report.truncated_tail_bytes, expect_bytes);
        assert_eq!(
            report.truncated_at,
            (expect_bytes > 0).then_some(end),
            "{garbage:?}"
        );
        assert_eq!(log.end_lsn(), end);
        assert_eq!(read_all(&log, 0), written);
        drop(log);
        // Zeroed in place, not cut off: the file keeps its length and only zeros follow.
        assert_eq!(std::fs::metadata(&seg).expect("meta").len(), file_len);
        assert_zeros(&seg, SEG_HEADER + end, file_len);
        let (log, report) = Log::open(cfg(dir.path(), SEG, FlushMode::Off), 0).expect("reopen");
        assert_eq!(
            (report.truncated_tail_bytes, report.truncated_at),
            (0, None)
        );
        assert_eq!(log.end_lsn(), end);
    }
}

#[test]
fn crc_failure_in_last_record_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 64 << 20, FlushMode::Off);
    let written = append_n(&log, 0..5);
    let end = log.end_lsn();
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&[0xEE], SEG_HEADER + end - 10)
        .expect("flip");
    drop(f);
    let (log, report) = Log::open(cfg(dir.path(), 64 << 20, FlushMode::Off), 0).expect("open");
    assert_eq!(report.truncated_at, Some(written[4].0));
    assert_eq!(read_all(&log, 0), written[..4].to_vec());
}

fn flip_byte(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    b[0] ^= 0x5A;
    f.write_all_at(&b, offset).expect("write");
}

#[test]
fn flipped_byte_in_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 2500, FlushMode::Off);
    let written = append_n(&log, 0..60);
    drop(log);
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 8);
    let mid = &segs[segs.len() / 2];
    let start = seg_start(mid);
    let next_start = seg_start(&segs[segs.len() / 2 + 1]);
    let in_seg: Vec<Lsn> = written
        .iter()
        .map(|(l, _)| *l)
        .filter(|l| *l >= start && *l < next_start)
        .collect();
    assert!(in_seg.len() >= 2, "segment holds {} records", in_seg.len());
    let victim = in_seg[in_seg.len() / 2];
    let offset = SEG_HEADER + victim - start;
    flip_byte(mid, offset + 40);
    for scan_from in [0, start, victim] {
        match Log::open(cfg(dir.path(), 2500, FlushMode::Off), scan_from) {
            Err(LogError::Corrupt {
                segment,
                offset: off,
                reason,
            }) => {
                assert_eq!(&segment, mid);
                assert_eq!(off, offset, "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    let err = verify_dir(dir.path()).expect_err("verify must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&mid.display().to_string()) && msg.contains(&offset.to_string()),
        "{msg}"
    );
    // Scanning from after the damage does not look at it.
    let (_, report) =
        Log::open(cfg(dir.path(), 2500, FlushMode::Off), next_start).expect("open past damage");
    assert_eq!(report.truncated_tail_bytes, 0);
}

#[test]
fn bad_record_before_valid_data_in_last_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 64 << 20, FlushMode::Off);
    let written = append_n(&log, 0..6);
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    // Damage the length field so the bad record's extent cannot be trusted either.
    flip_byte(&seg, SEG_HEADER + written[3].0 + 9);
    let size_before = std::fs::metadata(&seg).expect("meta").len();
    match Log::open(cfg(dir.path(), 64 << 20, FlushMode::Off), 0) {
        Err(LogError::Corrupt {
            segment, offset, ..
        }) => {
            assert_eq!(segment, seg);
            assert_eq!(offset, SEG_HEADER + written[3].0);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was truncated.
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), size_before);
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 1500, FlushMode::Off);
    append_n(&log, 0..30);
    drop(log);
    let segs = segment_files(dir.path());
    std::fs::remove_file(&segs[3]).expect("rm");
    match Log::open(cfg(dir.path(), 1500, FlushMode::Off), 0) {
        Err(LogError::Corrupt {
            segment, reason, ..
        }) => {
            assert_eq!(segment, segs[4]);
            assert!(reason.contains("gap"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn newer_segment_version_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = new_log(dir.path(), 1 << 20, FlushMode::Off);
    append_n(&log, 0..3);
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let mut h = [0u8; 32];
    f.read_exact_at(&mut h, 0).expect("read");
    h[8..12].copy_from_slice(&7u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&h, 0).expect("write");
    drop(f);
    for err in [
        Log::open(cfg(dir.path(), 1 << 20, FlushMode::Off), 0).expect_err("open must fail"),
        verify_dir(dir.path()).expect_err("verify must fail"),
    ] {
        assert!(
            matches!(
                err,
                LogError::UnsupportedSegmentVersion {
                    version: 7,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("format version 7")
                && msg.contains("supports up to 1")
                && msg.contains("upgrade hadr")
                && msg.contains(&seg.display().to_string()),
            "{msg}"
        );
    }
}

#[test]
fn retention_removes_only_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path(), 1500, FlushMode::Fsync);
    c.retention_bytes = 0;
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..50);
    let segs = segment_files(dir.path());
    let keep_from = written[30].0;
    let size_before = log.size_bytes();
    let removed = log.apply_retention(keep_from).expect("retention");
    assert!(removed > 0);
    assert_eq!(log.size_bytes(), size_before - removed);
    let left = segment_files(dir.path());
    assert!(left.len() < segs.len());
    // Every removed segment ended at or before keep_from; the survivors still cover keep_from.
    for p in &segs {
        if !left.contains(p) {
            let end = seg_start(p) + std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let next = segs
                .iter()
                .position(|q| q == p)
                .map(|i| seg_start(&segs[i + 1]));
            assert!(next.is_some_and(|n| n <= keep_from), "{end}");
        }
    }
    assert!(log.start_lsn() <= keep_from);
    assert_eq!(seg_start(&left[0]), log.start_lsn());
    assert_eq!(read_all(&log, keep_from), written[30..].to_vec());
    assert!(log.read_from(0).is_err());
    // Keeping everything from the start removes nothing more.
    assert_eq!(log.apply_retention(log.start_lsn()).expect("retention"), 0);
    // The current segment survives even with keep_from at the end.
    log.apply_retention(log.end_lsn()).expect("retention");
    assert!(!segment_files(dir.path()).is_empty());
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
    drop(log);
    let (log, _) = Log::open(c, 0).expect("reopen after retention");
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
}

#[test]
fn retention_respects_size_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path(), 1500, FlushMode::Off);
    c.retention_bytes = 1 << 30;
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c, 0).expect("open");
    append_n(&log, 0..40);
    assert_eq!(log.apply_retention(log.end_lsn()).expect("retention"), 0);
    assert_eq!(log.start_lsn(), 0);
}

#[test]
fn truncate_after_removes_the_suffix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), 1500, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..40);
    let segs_before = segment_files(dir.path()).len();
    // Not a record boundary.
    assert!(matches!(
        log.truncate_after(written[20].0 + 3),
        Err(LogError::BadLsn { .. })
    ));
    let cut = written[20].0;
    log.truncate_after(cut).expect("truncate");
    assert_eq!(log.end_lsn(), cut);
    assert_eq!(log.flushed_lsn(), cut);
    assert!(segment_files(dir.path()).len() < segs_before);
    assert_eq!(read_all(&log, 0), written[..20].to_vec());
    assert_eq!(log.last_record().expect("last"), Some(written[19].clone()));
    let (lsn, _) = log.append(&rec(500)).expect("append");
    assert_eq!(lsn, cut);
    log.flush().expect("flush");
    drop(log);
    let (log, report) = Log::open(c.clone(), 0).expect("reopen");
    assert_eq!(report.truncated_tail_bytes, 0);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 21);
    assert_eq!(all[20], (cut, rec(500)));
    // Truncating to the very start empties the log.
    log.truncate_after(0).expect("truncate all");
    assert_eq!(log.end_lsn(), 0);
    assert_eq!(log.last_record().expect("last"), None);
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(log);
    let (log, _) = Log::open(c, 0).expect("reopen empty");
    assert_eq!(log.end_lsn(), 0);
}

#[test]
fn scan_from_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), 1500, FlushMode::Off);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..30);
    let end = log.end_lsn();
    drop(log);
    let (log, report) = Log::open(c.clone(), written[25].0).expect("open");
    assert_eq!(report.records_scanned, 5);
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
    drop(log);
    // Scanning from the end scans nothing but still finds the last record.
    let (log, report) = Log::open(c.clone(), end).expect("open");
    assert_eq!(report.records_scanned, 0);
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
    drop(log);
    // A scan start inside the last record must not get that record truncated.
    let inside = written[29].0 + 5;
    assert!(matches!(
        Log::open(c.clone(), inside),
        Err(LogError::BadLsn { .. })
    ));
    assert!(matches!(
        Log::open(c.clone(), end + 1),
        Err(LogError::BadLsn { .. })
    ));
    let (log, report) = Log::open(c, 0).expect("open");
    assert_eq!((report.records_scanned, log.end_lsn()), (30, end));
}

#[test]
fn read_raw_and_append_encoded_round_trip() {
    let pdir = tempfile::tempdir().expect("tempdir");
    let sdir = tempfile::tempdir().expect("tempdir");
    let primary = new_log(pdir.path(), 1500, FlushMode::Off);
    let standby = new_log(sdir.path(), 4000, FlushMode::Off);
    let written = append_n(&primary, 0..50);
    primary.flush().expect("flush");
    let upto = primary.flushed_lsn();
    let mut pos = 0;
    let mut batches = 0;
    while pos < upto {
        let (bytes, next) = primary.read_raw(pos, upto, 3000).expect("read_raw");
        assert!(!bytes.is_empty());
        assert_eq!(next - pos, bytes.len() as u64);
        let end = standby.append_encoded(pos, &bytes).expect("append_encoded");
        assert_eq!(end, next);
        pos = next;
        batches += 1;
    }
    assert!(batches > 1);
    assert_eq!(standby.end_lsn(), primary.end_lsn());
    assert_eq!(read_all(&standby, 0), written);
    assert_eq!(standby.stats().appends, 50);
    // Byte-identical streams.
    let (a, _) = primary.read_raw(0, upto, usize::MAX).expect("raw");
    let (b, _) = standby.read_raw(0, upto, usize::MAX).expect("raw");
    assert_eq!(a, b);
    // At least one record even with a tiny budget; never past upto.
    let (one, next) = primary.read_raw(0, upto, 1).expect("raw");
    assert_eq!(next, written[1].0);
    assert_eq!(one.len() as u64, next);
    let (none, next) = primary
        .read_raw(written[5].0, written[5].0, 1 << 20)
        .expect("raw");
    assert!(none.is_empty());
    assert_eq!(next, written[5].0);
    let (some, next) = primary.read_raw(0, written[5].0, 1 << 20).expect("raw");
    assert_eq!((some.len() as u64, next), (written[5].0, written[5].0));

    // Wrong position and damaged bytes are rejected without writing anything.
    let end = standby.end_lsn();
    let extra = rec(77).encode(end);
    assert!(matches!(
        standby.append_encoded(end + 1, &rec(77).encode(end + 1)),
        Err(LogError::BadLsn { .. })
    ));
    let mut bad = extra.clone();
    bad[100] ^= 1;
    assert!(matches!(
        standby.append_encoded(end, &bad),
        Err(LogError::BadEncoded { .. })
    ));
    assert!(matches!(
        standby.append_encoded(end, &extra[..extra.len() - 1]),
        Err(LogError::BadEncoded { .. })
    ));
    assert_eq!(standby.end_lsn(), end);
    assert_eq!(
        standby.append_encoded(end, &extra).expect("append"),
        end + extra.len() as u64
    );
    drop(standby);
    let (standby, report) = Log::open(cfg(sdir.path(), 4000, FlushMode::Off), 0).expect("reopen");
    assert_eq!(report.records_scanned, 51);
    assert_eq!(
        standby.last_record().expect("last").map(|(_, r)| r),
        Some(rec(77))
    );
}

#[test]
fn reopen_of_a_preallocated_log_is_stable() {
    const SEG: u64 = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let seg = segment_files(dir.path()).pop().expect("segment");
    // Created at full size, zero-filled.
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), SEG);
    assert_zeros(&seg, SEG_HEADER, SEG);
    let (log, report) = Log::open(c.clone(), 0).expect("open");
    assert_eq!(
        (log.end_lsn(), report.truncated_at, report.records_scanned),
        (0, None, 0)
    );
    let written = append_n(&log, 0..10);
    let end = log.end_lsn();
    log.flush().expect("flush");
    drop(log);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), SEG);
    for _ in 0..2 {
        let (log, report) = Log::open(c.clone(), 0).expect("reopen");
        assert_eq!(report.truncated_tail_bytes, 0);
        assert_eq!(report.truncated_at, None);
        assert_eq!(report.records_scanned, 10);
        assert_eq!((log.end_lsn(), log.flushed_lsn()), (end, end));
        assert_eq!(log.last_record().expect("last"), written.last().cloned());
        assert_eq!(read_all(&log, 0), written);
        drop(log);
        assert_eq!(std::fs::metadata(&seg).expect("meta").len(), SEG);
        let v = verify_dir(dir.path()).expect("verify");
        assert_eq!((v.end_lsn, v.records, v.torn_tail_bytes), (end, 10, 0));
    }
    // The zeros after the records are not log: a scan start in there is past the end.
    for bad in [end + 1, end + 100, SEG - SEG_HEADER] {
        assert!(
            matches!(Log::open(c.clone(), bad), Err(LogError::BadLsn { .. })),
            "{bad}"
        );
    }
    let (log, report) = Log::open(c, end).expect("open at end");
    assert_eq!((report.records_scanned, log.end_lsn()), (0, end));
}

#[test]
fn appends_after_reopen_overwrite_zeros() {
    const SEG: u64 = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let mut written = append_n(&log, 0..5);
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    let ino = std::fs::metadata(&seg).expect("meta").ino();
    let (log, _) = Log::open(c.clone(), 0).expect("reopen");
    let more = append_n(&log, 5..12);
    assert_eq!(
        more[0].0,
        written[4].0 + written[4].1.encode(written[4].0).len() as u64
    );
    written.extend(more);
    let end = log.end_lsn();
    log.flush().expect("flush");
    drop(log);
    // Same file, same length: the records went over the preallocated zeros.
    let meta = std::fs::metadata(&seg).expect("meta");
    assert_eq!((meta.ino(), meta.len()), (ino, SEG));
    assert_eq!(segment_files(dir.path()), vec![seg.clone()]);
    assert_zeros(&seg, SEG_HEADER + end, SEG);
    let (log, report) = Log::open(c, 0).expect("reopen");
    assert_eq!((report.records_scanned, report.truncated_at), (12, None));
    assert_eq!(read_all(&log, 0), written);
}

/// A record of one incompressible page of `page_size` bytes.
fn big_rec(i: u64, page_size: u32) -> Record {
    Record {
        page_size,
        pages: vec![Page {
            pgno: 1,
            data: noise(i, page_size as usize),
        }],
        ..rec(i)
    }
}

#[test]
fn a_record_that_does_not_fit_moves_to_a_new_segment() {
    const SEG: u64 = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    // 1024-byte pages: records of 1105 bytes, so three fit in 4064 bytes and the fourth does not.
    let mut written = Vec::new();
    for i in 0..4 {
        let r = big_rec(i, 1024);
        let (lsn, _) = log.append(&r).expect("append");
        written.push((lsn, r));
    }
    let len = written[0].1.encode(0).len() as u64;
    assert_eq!(len, 1105);
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 2);
    assert_eq!(seg_start(&segs[1]), 3 * len);
    for p in &segs {
        assert_eq!(std::fs::metadata(p).expect("meta").len(), SEG);
    }
    // The first segment's unused space stays zero.
    assert_zeros(&segs[0], SEG_HEADER + 3 * len, SEG);
    // A record bigger than a whole segment gets a new segment of its own, grown to fit, and
    // the record after it starts another one.
    let huge = big_rec(4, 8192);
    let (lsn, _) = log.append(&huge).expect("append huge");
    written.push((lsn, huge.clone()));
    let huge_len = huge.encode(lsn).len() as u64;
    assert!(huge_len > SEG);
    let r = big_rec(5, 1024);
    let (lsn5, _) = log.append(&r).expect("append");
    written.push((lsn5, r));
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 4);
    assert_eq!(seg_start(&segs[2]), lsn);
    assert_eq!(
        std::fs::metadata(&segs[2]).expect("meta").len(),
        SEG_HEADER + huge_len
    );
    assert_eq!(seg_start(&segs[3]), lsn5);
    assert_eq!(read_all(&log, 0), written);
    assert_eq!(read_all(&log, written[3].0), written[3..].to_vec());
    let (raw, next) = log.read_raw(0, log.end_lsn(), usize::MAX).expect("raw");
    assert_eq!((raw.len() as u64, next), (log.end_lsn(), log.end_lsn()));
    let end = log.end_lsn();
    log.flush().expect("flush");
    drop(log);
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!((v.records, v.segments, v.end_lsn), (6, 4, end));
    let (log, report) = Log::open(c.clone(), 0).expect("reopen");
    assert_eq!((report.records_scanned, report.truncated_at), (6, None));
    assert_eq!(read_all(&log, 0), written);
    // A scan start at a segment boundary preceded by a zero tail works too.
    drop(log);
    let (log, report) = Log::open(c, written[3].0).expect("open at boundary");
    assert_eq!(report.records_scanned, 3);
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
}

#[test]
fn torn_record_followed_by_zeros_is_zeroed_and_reported() {
    const SEG: u64 = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..10);
    let end = log.end_lsn();
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    // The last record reached the disk only in part: its last bytes are still zeros.
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&[0u8; 7], SEG_HEADER + end - 7)
        .expect("zero");
    drop(f);
    let at = written[9].0;
    let mut rest = vec![0u8; (end - at) as usize];
    std::fs::File::open(&seg)
        .expect("open")
        .read_exact_at(&mut rest, SEG_HEADER + at)
        .expect("read");
    let torn = nonzero_len(&rest);
    assert!(torn > 0 && torn <= end - 7 - at);
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!((v.end_lsn, v.torn_tail_bytes, v.records), (at, torn, 9));

    let (log, report) = Log::open(c.clone(), 0).expect("open");
    assert_eq!(report.truncated_at, Some(at));
    assert_eq!(report.truncated_tail_bytes, torn);
    assert_eq!(report.records_scanned, 9);
    assert_eq!(log.end_lsn(), at);
    assert_eq!(read_all(&log, 0), written[..9].to_vec());
    drop(log);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), SEG);
    assert_zeros(&seg, SEG_HEADER + at, SEG);
    // Repaired once; later opens find a clean end.
    for _ in 0..2 {
        let (log, report) = Log::open(c.clone(), 0).expect("reopen");
        assert_eq!(
            (report.truncated_at, report.truncated_tail_bytes),
            (None, 0)
        );
        assert_eq!(log.end_lsn(), at);
    }
    let (log, _) = Log::open(c.clone(), 0).expect("reopen");
    let (lsn, _) = log.append(&rec(42)).expect("append");
    assert_eq!(lsn, at);
    drop(log);
    let (log, report) = Log::open(c, 0).expect("reopen");
    assert_eq!((report.records_scanned, report.truncated_at), (10, None));
    assert_eq!(log.last_record().expect("last"), Some((at, rec(42))));
}

#[test]
fn torn_record_whose_start_is_still_zeros_is_a_torn_tail() {
    // Pages of an unsynced record can reach the disk in any order: here its first 100 bytes
    // are still zeros but the rest was written. No valid record follows, so it is a torn tail.
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), 1 << 20, FlushMode::Off);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..6);
    let end = log.end_lsn();
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    let at = written[5].0;
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&[0u8; 100], SEG_HEADER + at).expect("zero");
    drop(f);
    let (log, report) = Log::open(c, 0).expect("open");
    assert_eq!(report.truncated_at, Some(at));
    assert!(report.truncated_tail_bytes > 0 && report.truncated_tail_bytes <= end - at);
    assert_eq!(read_all(&log, 0), written[..5].to_vec());
}

#[test]
fn zeros_before_a_valid_record_are_corruption() {
    // A lost write in the middle of the last segment: zeros, then intact records.
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), 1 << 20, FlushMode::Off);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..6);
    drop(log);
    let seg = segment_files(dir.path()).pop().expect("segment");
    let at = written[2].0;
    let len = written[3].0 - at;
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&vec![0u8; len as usize], SEG_HEADER + at)
        .expect("zero");
    drop(f);
    for err in [
        Log::open(c.clone(), 0).expect_err("open must fail"),
        verify_dir(dir.path()).expect_err("verify must fail"),
    ] {
        match err {
            LogError::Corrupt {
                segment, offset, ..
            } => assert_eq!((segment, offset), (seg.clone(), SEG_HEADER + at)),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn data_after_the_records_of_a_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), 4096, FlushMode::Off);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    append_n(&log, 0..20);
    drop(log);
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3);
    // Something other than zeros after where the next segment starts: two segments claim it.
    let used = seg_start(&segs[2]) - seg_start(&segs[1]);
    let at = SEG_HEADER + used + 3;
    assert!(at < 4096);
    let f = OpenOptions::new().write(true).open(&segs[1]).expect("open");
    f.write_all_at(b"junk", at).expect("write");
    drop(f);
    for err in [
        Log::open(c.clone(), 0).expect_err("open must fail"),
        verify_dir(dir.path()).expect_err("verify must fail"),
    ] {
        match err {
            LogError::Corrupt {
                segment, offset, ..
            } => assert_eq!((segment, offset), (segs[1].clone(), SEG_HEADER + used)),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn size_bytes_counts_preallocated_files_and_retention_still_works() {
    const SEG: u64 = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path(), SEG, FlushMode::Off);
    c.retention_bytes = 3 * SEG;
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    // Right after create: one preallocated, still empty segment.
    assert_eq!(log.size_bytes(), SEG);
    let written = append_n(&log, 0..40);
    let file_sizes = |dir: &Path| -> u64 {
        segment_files(dir)
            .iter()
            .map(|p| std::fs::metadata(p).expect("meta").len())
            .sum()
    };
    let segs = segment_files(dir.path()).len() as u64;
    assert!(segs > 5);
    assert_eq!(log.size_bytes(), file_sizes(dir.path()));
    assert_eq!(log.size_bytes(), segs * SEG);
    assert!(log.size_bytes() > log.end_lsn());
    let keep_from = written[30].0;
    let removed = log.apply_retention(keep_from).expect("retention");
    assert!(removed > 0 && removed % SEG == 0);
    assert_eq!(log.size_bytes(), file_sizes(dir.path()));
    assert_eq!(log.size_bytes(), segs * SEG - removed);
    assert!(log.start_lsn() <= keep_from);
    assert_eq!(read_all(&log, keep_from), written[30..].to_vec());
    // Everything up to the end may go now, down to the budget, but never the current segment.
    log.apply_retention(log.end_lsn()).expect("retention");
    assert!(log.size_bytes() <= 3 * SEG);
    assert_eq!(log.size_bytes(), file_sizes(dir.path()));
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
    drop(log);
    let (log, report) = Log::open(c, 0).expect("reopen");
    assert_eq!(report.truncated_at, None);
    assert_eq!(log.last_record().expect("last"), written.last().cloned());
}

#[test]
fn truncate_after_keeps_the_segment_preallocated() {
    const SEG: u64 = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..10);
    let cut = written[4].0;
    log.truncate_after(cut).expect("truncate");
    let seg = segment_files(dir.path()).pop().expect("segment");
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), SEG);
    assert_zeros(&seg, SEG_HEADER + cut, SEG);
    assert_eq!(log.size_bytes(), SEG);
    drop(log);
    let (log, report) = Log::open(c, 0).expect("reopen");
    assert_eq!((report.truncated_at, log.end_lsn()), (None, cut));
    assert_eq!(read_all(&log, 0), written[..4].to_vec());
}

#[test]
fn the_spare_segment_becomes_the_next_segment() {
    const SEG: u64 = 8192;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let spare = dir.path().join("spare.hlog.spare");
    let wait_spare = |log: &Log| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !log.spare_ready() {
            assert!(std::time::Instant::now() < deadline, "no spare segment");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_spare(&log);
    let meta = std::fs::metadata(&spare).expect("spare");
    assert_eq!(meta.len(), SEG);
    let ino = meta.ino();
    let mut n = 0;
    while segment_files(dir.path()).len() < 2 {
        log.append(&rec(n)).expect("append");
        n += 1;
    }
    // The switch renamed the prepared spare into place rather than writing a new file.
    let second = segment_files(dir.path()).pop().expect("segment");
    assert_eq!(std::fs::metadata(&second).expect("meta").ino(), ino);
    // A new spare follows, and it is neither listed as a segment nor counted in the size.
    wait_spare(&log);
    assert_ne!(std::fs::metadata(&spare).expect("spare").ino(), ino);
    assert_eq!(log.size_bytes(), 2 * SEG);
    let written = read_all(&log, 0);
    assert_eq!(written.len() as u64, n);
    drop(log);
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!((v.segments, v.records), (2, n));
    // A spare left by an earlier run is used, not rewritten.
    let (log, _) = Log::open(c, 0).expect("reopen");
    assert!(log.spare_ready());
    assert_eq!(read_all(&log, 0), written);
}

#[test]
fn logs_written_without_preallocation_still_open() {
    const SEG: u64 = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path(), SEG, FlushMode::Fsync);
    Log::create(&c).expect("create");
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let written = append_n(&log, 0..20);
    let end = log.end_lsn();
    drop(log);
    // Cut every file back to its records, as segments were before preallocation.
    let segs = segment_files(dir.path());
    for (k, p) in segs.iter().enumerate() {
        let stop = segs.get(k + 1).map_or(end, |q| seg_start(q));
        let f = OpenOptions::new().write(true).open(p).expect("open");
        f.set_len(SEG_HEADER + stop - seg_start(p))
            .expect("set_len");
    }
    let v = verify_dir(dir.path()).expect("verify");
    assert_eq!((v.end_lsn, v.records, v.torn_tail_bytes), (end, 20, 0));
    let (log, report) = Log::open(c.clone(), 0).expect("open");
    assert_eq!((report.records_scanned, report.truncated_at), (20, None));
    assert_eq!(read_all(&log, 0), written);
    let (_, report) = {
        drop(log);
        Log::open(c.clone(), end).expect("open at end")
    };
    assert_eq!(report.records_scanned, 0);
    let (log, _) = Log::open(c.clone(), 0).expect("open");
    let more = append_n(&log, 20..30);
    drop(log);
    let (log, report) = Log::open(c, 0).expect("reopen");
    assert_eq!(report.records_scanned, 30);
    let mut all = written;
    all.extend(more);
    assert_eq!(read_all(&log, 0), all);
}
