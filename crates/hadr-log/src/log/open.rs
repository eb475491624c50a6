//! Creating a log directory, and opening one: the recovery scan of its segments, repair of a
//! torn tail, and starting the background threads.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};

use super::flusher::{flusher_main, spare_main, Worker, CLOSE_TIMEOUT};
use super::{FlushMode, FlushState, Inner, Log, LogConfig, SpareState, State};
use crate::error::LogError;
use crate::segment::{
    create_segment_file, find_last_record, list_segments, open_spare, prealloc_len, scan,
    seg_index, sync_dir, walk_headers, write_zeros, SegMeta, TornTail,
};
use crate::Lsn;

/// What `Log::open` found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Bytes of torn or garbage data zeroed out at the end of the last segment, counted up to
    /// its last non-zero byte (the zeros of the preallocated space after the records are the
    /// normal end of the log and never count).
    pub truncated_tail_bytes: u64,
    /// LSN where the torn tail started (the new end of the log), if there was one.
    pub truncated_at: Option<Lsn>,
    /// Records decoded and verified from `scan_from` to the end.
    pub records_scanned: u64,
}

impl Log {
    /// Create an empty log directory (fails if it already holds segments).
    pub fn create(cfg: &LogConfig) -> Result<(), LogError> {
        Self::create_at(cfg, 0)
    }

    /// Create an empty log whose first record will have LSN `start` (a clone
    /// of a primary starts its log where the copied snapshot ends).
    pub fn create_at(cfg: &LogConfig, start: Lsn) -> Result<(), LogError> {
        let sync = cfg.flush_mode == FlushMode::Fsync;
        std::fs::create_dir_all(&cfg.dir).map_err(|e| LogError::io(&cfg.dir, e))?;
        if !list_segments(&cfg.dir, true)?.is_empty() {
            return Err(LogError::AlreadyExists(cfg.dir.clone()));
        }
        create_segment_file(&cfg.dir, start, prealloc_len(cfg.segment_size), sync)?;
        if sync {
            sync_dir(&cfg.dir)?;
            // The log directory itself may be new; make its entry durable too.
            if let Some(parent) = cfg.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    /// Open, recovering the tail: scans records from `scan_from` (a record boundary, e.g. the last checkpoint LSN; 0 = all) to the end.
    ///
    /// The end of the log is where the records of the last segment stop and its zero-filled
    /// preallocated space begins; that is normal and not reported. A torn or CRC-failing record
    /// with nothing but garbage or zeros after it at the end of the last segment is a torn tail:
    /// it is zeroed out (tracing::warn!, reported in OpenReport), so a second open finds a clean
    /// end. Any bad record that has a valid record after it, a bad record in a non-last segment,
    /// or a gap between segments → Err(LogError::Corrupt{segment, offset, reason}) — never a
    /// silent skip. Starts the flusher thread and the thread keeping a spare segment ready.
    pub fn open(cfg: LogConfig, scan_from: Lsn) -> Result<(Log, OpenReport), LogError> {
        let sync = cfg.flush_mode == FlushMode::Fsync;
        let Recovered {
            segs,
            last_lsn,
            report,
        } = recover(&cfg.dir, scan_from, sync)?;
        let current = open_current(&cfg.dir, &segs, sync)?;
        let prealloc = prealloc_len(cfg.segment_size);
        // A spare prepared by an earlier run is as good as a new one.
        let spare = open_spare(&cfg.dir, prealloc)?;
        let inner = Arc::new(Inner::new(&cfg, segs, current, last_lsn, spare));
        let (flusher, spare_thread) = start_threads(&inner)?;
        Ok((
            Log {
                inner,
                flusher: Mutex::new(Some(flusher)),
                spare_thread: Mutex::new(spare_thread),
                close_timeout: CLOSE_TIMEOUT,
            },
            report,
        ))
    }
}

/// The segments of a log after its recovery scan, with the last one's `end` where its records
/// stop.
struct Recovered {
    segs: Vec<SegMeta>,
    /// Start of the newest record, if the log has any.
    last_lsn: Option<Lsn>,
    report: OpenReport,
}

/// List the segments, scan the records from `scan_from` to the end and zero a torn tail.
fn recover(dir: &Path, scan_from: Lsn, sync: bool) -> Result<Recovered, LogError> {
    let mut segs = list_segments(dir, true)?;
    let from = scan_start(dir, &segs, scan_from)?;
    check_scan_start(&segs, from)?;
    let outcome = scan(&segs, from)?;
    let mut report = OpenReport {
        records_scanned: outcome.records,
        ..OpenReport::default()
    };
    let Some(seg) = segs.last_mut() else {
        return Err(LogError::NotFound(dir.to_path_buf()));
    };
    seg.end = outcome.end;
    if let Some(torn) = &outcome.torn {
        zero_torn_tail(seg, torn, sync)?;
        report.truncated_tail_bytes = torn.bytes;
        report.truncated_at = Some(torn.at);
    }
    let last_lsn = match outcome.last {
        Some((lsn, _)) => Some(lsn),
        None => find_last_record(&segs)?,
    };
    Ok(Recovered {
        segs,
        last_lsn,
        report,
    })
}

/// Where the scan starts: `scan_from`, or the oldest retained record if that is later (a
/// checkpoint older than retention). Past the end of the last segment file is an error.
fn scan_start(dir: &Path, segs: &[SegMeta], scan_from: Lsn) -> Result<Lsn, LogError> {
    // The last segment's end is its physical end until the scan finds its records' end.
    let (start, phys_end) = match (segs.first(), segs.last()) {
        (Some(f), Some(l)) => (f.start, l.end),
        _ => return Err(LogError::NotFound(dir.to_path_buf())),
    };
    if scan_from < start {
        tracing::warn!(
            scan_from,
            start,
            "scan start precedes the oldest retained log record; scanning from the oldest"
        );
        Ok(start)
    } else if scan_from > phys_end {
        Err(LogError::BadLsn {
            lsn: scan_from,
            reason: format!(
                "scan start is past the end of the log (and of the last segment file, LSN {phys_end})"
            ),
        })
    } else {
        Ok(scan_from)
    }
}

/// Prove that `from` is a record boundary before scanning from it (cheap: headers only).
///
/// A scan start inside a record could make a good last record look torn and get it truncated,
/// and one in the zeros after the records would put the end of the log there.
fn check_scan_start(segs: &[SegMeta], from: Lsn) -> Result<(), LogError> {
    let idx = seg_index(segs, from);
    let is_last = idx + 1 == segs.len();
    let first = &segs[idx];
    if from > first.start && (from < first.end || is_last) {
        walk_headers(first, from, is_last)?;
    }
    Ok(())
}

/// Overwrite the torn tail of the last segment with zeros.
fn zero_torn_tail(seg: &SegMeta, torn: &TornTail, sync: bool) -> Result<(), LogError> {
    let offset = seg.file_offset(torn.at);
    tracing::warn!(
        segment = %seg.path.display(),
        offset,
        lsn = torn.at,
        bytes = torn.bytes,
        reason = %torn.reason,
        "zeroing torn tail of the log"
    );
    // Zeroed rather than cut off, so the segment keeps its preallocated blocks. A crash part-way
    // leaves a shorter run of garbage without a valid record in it, which the next open treats
    // the same way.
    let f = OpenOptions::new()
        .write(true)
        .open(&seg.path)
        .map_err(|e| LogError::io(&seg.path, e))?;
    write_zeros(&f, offset, offset + torn.bytes).map_err(|e| LogError::io(&seg.path, e))?;
    if sync {
        f.sync_data().map_err(|e| LogError::io(&seg.path, e))?;
    }
    Ok(())
}

/// Open the last segment for appends, making whatever it holds durable first.
fn open_current(dir: &Path, segs: &[SegMeta], sync: bool) -> Result<File, LogError> {
    let cur = segs
        .last()
        .ok_or_else(|| LogError::NotFound(dir.to_path_buf()))?;
    let current = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&cur.path)
        .map_err(|e| LogError::io(&cur.path, e))?;
    if sync {
        // A previous process may have crashed with data only in the page cache; make it durable
        // before claiming it as flushed.
        current
            .sync_data()
            .map_err(|e| LogError::io(&cur.path, e))?;
        sync_dir(dir)?;
    }
    Ok(current)
}

impl Inner {
    /// State of a log just opened: everything up to the end of the last segment counts as flushed.
    fn new(
        cfg: &LogConfig,
        segs: Vec<SegMeta>,
        current: File,
        last_lsn: Option<Lsn>,
        spare: Option<File>,
    ) -> Inner {
        let end = segs.last().map_or(0, |s| s.end);
        let requested = spare.is_none();
        Inner {
            dir: cfg.dir.clone(),
            segment_size: cfg.segment_size,
            prealloc: prealloc_len(cfg.segment_size),
            retention_bytes: cfg.retention_bytes,
            sync: cfg.flush_mode == FlushMode::Fsync,
            state: Mutex::new(State {
                segs,
                current: Arc::new(current),
                last_lsn,
                closed: false,
            }),
            cycle: Mutex::new(()),
            fl: Mutex::new(FlushState::default()),
            wake_flusher: Condvar::new(),
            flushed_cv: Condvar::new(),
            end: AtomicU64::new(end),
            flushed: AtomicU64::new(end),
            failed: AtomicBool::new(false),
            callbacks: Mutex::new(Vec::new()),
            spare: Mutex::new(SpareState {
                ready: spare,
                requested,
                shutdown: false,
            }),
            spare_cv: Condvar::new(),
            appends: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

/// Start the flusher (required) and the spare-segment thread (optional: without it every
/// segment switch creates its segment itself).
fn start_threads(inner: &Arc<Inner>) -> Result<(Worker, Option<Worker>), LogError> {
    let flusher = Worker::spawn("flusher", "hadr-log-flusher", inner, flusher_main)
        .map_err(|e| LogError::io(&inner.dir, e))?;
    let spare = match Worker::spawn("spare-segment", "hadr-log-spare", inner, spare_main) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the log spare-segment thread");
            None
        }
    };
    Ok((flusher, spare))
}
