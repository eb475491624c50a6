//! The log itself: appends, the group-commit flusher, reads, retention and truncation.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::LogError;
use crate::record::{check_frame, seal, Record, RecordError};
use crate::segment::{
    activate_spare, create_segment_file, create_spare, discard_spare_tmp, find_last_record,
    list_segments, open_spare, prealloc_len, publish_spare, read_frame_at, read_record, scan,
    seg_index, sync_dir, walk_headers, write_zeros, ReadError, SegMeta,
};
use crate::Lsn;

/// Whether the flusher makes data durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushMode {
    /// fdatasync segment files (and fsync the directory on segment changes).
    #[default]
    Fsync,
    /// Never fsync; for tests and benchmarks only.
    Off,
}

impl FromStr for FlushMode {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fsync" => Ok(FlushMode::Fsync),
            "off" => Ok(FlushMode::Off),
            other => Err(LogError::Config(format!(
                "unknown flush mode {other:?} (expected \"fsync\" or \"off\")"
            ))),
        }
    }
}

/// Where the log lives and how it behaves.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// Size in bytes (header included) each segment file is preallocated to with zeros; a
    /// record that does not fit in the space left starts a new segment. A record larger than
    /// this gets a segment of its own, grown to fit.
    pub segment_size: u64,
    /// `apply_retention` deletes old segments only while the log is larger than this.
    pub retention_bytes: u64,
    /// Whether data is fsynced.
    pub flush_mode: FlushMode,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::from("log"),
            segment_size: 64 << 20,
            retention_bytes: 1 << 30,
            flush_mode: FlushMode::Fsync,
        }
    }
}

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

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records appended since open (including `append_encoded`).
    pub appends: u64,
    /// Flush cycles that advanced `flushed_lsn` (each is one fdatasync in `FlushMode::Fsync`).
    pub flushes: u64,
    /// Encoded bytes appended since open.
    pub bytes: u64,
}

type FlushCallback = Arc<dyn Fn(Lsn) + Send + Sync>;

/// Appends are padded with zeros to a multiple of this (the usual page size) in the file.
const WRITE_PAGE: u64 = 4096;

/// State guarded by the append lock.
struct State {
    /// Retained segments, oldest first; the last one is being appended to.
    segs: Vec<SegMeta>,
    /// The last segment, open for positioned writes; shared with the flusher for fdatasync.
    current: Arc<File>,
    /// Start of the newest record, kept so `last_record` needs no scan.
    last_lsn: Option<Lsn>,
    /// Set by `close`; appends are refused from then on.
    closed: bool,
}

impl State {
    fn end(&self) -> Lsn {
        self.segs.last().map_or(0, |s| s.end)
    }

    fn current_seg(&self) -> Result<&SegMeta, LogError> {
        self.segs
            .last()
            .ok_or_else(|| LogError::Failed("log has no segments".into()))
    }
}

/// State guarded by the flush lock (the Condvars' mutex).
#[derive(Default)]
struct FlushState {
    /// An explicit `flush()` is waiting.
    requested: bool,
    /// `close()` asked the flusher to do a final flush and exit.
    shutdown: bool,
    /// The flusher thread has exited.
    stopped: bool,
    /// Sticky failure (fsync error or unrecoverable write error).
    failure: Option<String>,
}

/// State of the spare segment, guarded by its own lock (taken after the state lock, if both).
///
/// The name SPARE_NAME is shared by every spare, so it changes hands only under this lock: the
/// spare thread renames a finished spare to it only while `ready` is None, and a switch takes
/// `ready` and renames it away in one critical section. Otherwise a new spare could be renamed
/// over one a switch is about to rename into place, putting the wrong file there.
#[derive(Default)]
struct SpareState {
    /// A preallocated, fsynced, header-less segment file named SPARE_NAME, ready for a switch.
    ready: Option<File>,
    /// A switch used up (or did without) the spare; the spare thread should prepare one while
    /// none is ready. Several requests before it gets to it make one spare.
    requested: bool,
    /// `close()` asked the spare thread to stop (abandoning a half-written spare).
    shutdown: bool,
}

struct Inner {
    dir: PathBuf,
    segment_size: u64,
    /// Length new segment files are preallocated to.
    prealloc: u64,
    retention_bytes: u64,
    sync: bool,
    state: Mutex<State>,
    /// Held for a whole flush cycle so truncation cannot interleave with one.
    cycle: Mutex<()>,
    fl: Mutex<FlushState>,
    wake_flusher: Condvar,
    flushed_cv: Condvar,
    end: AtomicU64,
    flushed: AtomicU64,
    failed: AtomicBool,
    callbacks: Mutex<Vec<FlushCallback>>,
    spare: Mutex<SpareState>,
    spare_cv: Condvar,
    appends: AtomicU64,
    flushes: AtomicU64,
    bytes: AtomicU64,
}

/// Lock ignoring poison: the protected data is kept consistent by construction, and a panic
/// elsewhere must not turn every later log call into a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Longest [`Log::flush`] waits for the disk (the server's default commit_timeout).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// hadr's transaction log. `Send + Sync`; share it as `Arc<Log>`.
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Prepares the spare segment; None if the thread could not be started (switches then
    /// create segments themselves).
    spare_thread: Mutex<Option<JoinHandle<()>>>,
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
        let prealloc = prealloc_len(cfg.segment_size);
        let mut segs = list_segments(&cfg.dir, true)?;
        // The last segment's end is its physical end until the scan below finds its records' end.
        let (start, phys_end) = match (segs.first(), segs.last()) {
            (Some(f), Some(l)) => (f.start, l.end),
            _ => return Err(LogError::NotFound(cfg.dir.clone())),
        };
        let from = if scan_from < start {
            tracing::warn!(
                scan_from,
                start,
                "scan start precedes the oldest retained log record; scanning from the oldest"
            );
            start
        } else if scan_from > phys_end {
            return Err(LogError::BadLsn {
                lsn: scan_from,
                reason: format!(
                    "scan start is past the end of the log (and of the last segment file, LSN {phys_end})"
                ),
            });
        } else {
            scan_from
        };
        // A scan start inside a record could make a good last record look torn and get it
        // truncated, and one in the zeros after the records would put the end of the log
        // there, so prove it is a boundary first (cheap: headers only).
        let idx = seg_index(&segs, from);
        let is_last = idx + 1 == segs.len();
        let first = &segs[idx];
        if from > first.start && (from < first.end || is_last) {
            walk_headers(first, from, is_last)?;
        }
        let outcome = scan(&segs, from)?;
        let mut report = OpenReport {
            records_scanned: outcome.records,
            ..OpenReport::default()
        };
        let Some(seg) = segs.last_mut() else {
            return Err(LogError::NotFound(cfg.dir.clone()));
        };
        seg.end = outcome.end;
        if let Some(torn) = &outcome.torn {
            let offset = seg.file_offset(torn.at);
            tracing::warn!(
                segment = %seg.path.display(),
                offset,
                lsn = torn.at,
                bytes = torn.bytes,
                reason = %torn.reason,
                "zeroing torn tail of the log"
            );
            // Zeroed rather than cut off, so the segment keeps its preallocated blocks. A crash
            // part-way leaves a shorter run of garbage without a valid record in it, which the
            // next open treats the same way.
            let f = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(|e| LogError::io(&seg.path, e))?;
            write_zeros(&f, offset, offset + torn.bytes).map_err(|e| LogError::io(&seg.path, e))?;
            if sync {
                f.sync_data().map_err(|e| LogError::io(&seg.path, e))?;
            }
            report.truncated_tail_bytes = torn.bytes;
            report.truncated_at = Some(torn.at);
        }
        let last_lsn = match outcome.last {
            Some((lsn, _)) => Some(lsn),
            None => find_last_record(&segs)?,
        };
        let cur = segs
            .last()
            .ok_or_else(|| LogError::NotFound(cfg.dir.clone()))?;
        let current = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&cur.path)
            .map_err(|e| LogError::io(&cur.path, e))?;
        if sync {
            // A previous process may have crashed with data only in the page cache; make it
            // durable before claiming it as flushed.
            current
                .sync_data()
                .map_err(|e| LogError::io(&cur.path, e))?;
            sync_dir(&cfg.dir)?;
        }
        let end = cur.end;
        // A spare prepared by an earlier run is as good as a new one.
        let spare = open_spare(&cfg.dir, prealloc)?;
        let requested = spare.is_none();
        let inner = Arc::new(Inner {
            dir: cfg.dir.clone(),
            segment_size: cfg.segment_size,
            prealloc,
            retention_bytes: cfg.retention_bytes,
            sync,
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
        });
        let thread_inner = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("hadr-log-flusher".into())
            .spawn(move || flusher_main(thread_inner))
            .map_err(|e| LogError::io(&cfg.dir, e))?;
        let spare_inner = Arc::clone(&inner);
        let spare_thread = match std::thread::Builder::new()
            .name("hadr-log-spare".into())
            .spawn(move || spare_main(spare_inner))
        {
            Ok(h) => Some(h),
            Err(e) => {
                // Not fatal: every segment switch then creates its segment itself.
                tracing::warn!(error = %e, "could not start the log spare-segment thread");
                None
            }
        };
        Ok((
            Log {
                inner,
                flusher: Mutex::new(Some(handle)),
                spare_thread: Mutex::new(spare_thread),
            },
            report,
        ))
    }

    /// Append a record at the current end; returns (lsn of the record, end lsn after it). Written with pwrite() over the segment's preallocated zeros but NOT fsynced; the flusher makes it durable. Thread-safe; appends are totally ordered.
    pub fn append(&self, rec: &Record) -> Result<(Lsn, Lsn), LogError> {
        rec.validate().map_err(LogError::InvalidRecord)?;
        // Compression happens here, outside the lock; only the LSN and CRC are filled in under it.
        let mut buf = rec.encode_unsealed();
        let (lsn, end) = {
            let mut st = lock(&self.inner.state);
            self.inner.check_writable(&st)?;
            let lsn = st.end();
            seal(&mut buf, lsn);
            let end = self.inner.write_locked(&mut st, lsn, &buf)?;
            (lsn, end)
        };
        self.inner.kick_flusher();
        Ok((lsn, end))
    }

    /// Append already-encoded record bytes (one or more whole records, as returned by `read_raw`) received from a primary; validates by decoding first; `lsn` must equal end_lsn(). Returns the new end LSN.
    pub fn append_encoded(&self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, LogError> {
        let mut frames = Vec::new();
        let mut off = 0usize;
        while off < bytes.len() {
            let at = lsn + off as u64;
            let (_, n) = Record::decode(&bytes[off..], at)
                .map_err(|source| LogError::BadEncoded { lsn: at, source })?;
            frames.push((at, off, n));
            off += n;
        }
        let end = {
            let mut st = lock(&self.inner.state);
            self.inner.check_writable(&st)?;
            let end = st.end();
            if end != lsn {
                return Err(LogError::BadLsn {
                    lsn,
                    reason: format!("append_encoded must start at the log end ({end})"),
                });
            }
            let mut end = end;
            for (at, off, n) in frames {
                end = self.inner.write_locked(&mut st, at, &bytes[off..off + n])?;
            }
            end
        };
        self.inner.kick_flusher();
        Ok(end)
    }

    /// End of what was written.
    pub fn end_lsn(&self) -> Lsn {
        self.inner.end.load(Ordering::Acquire)
    }

    /// End of what is durable (== end_lsn in FlushMode::Off after the flusher ran).
    pub fn flushed_lsn(&self) -> Lsn {
        self.inner.flushed.load(Ordering::Acquire)
    }

    /// Oldest LSN still retained.
    pub fn start_lsn(&self) -> Lsn {
        lock(&self.inner.state).segs.first().map_or(0, |s| s.start)
    }

    /// Block until flushed_lsn() >= lsn or the timeout passes (Err(LogError::FlushTimeout)); errors at once if the flusher failed (sticky) or the log is closed.
    pub fn wait_flushed(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn, LogError> {
        self.inner
            .wait_flushed(lsn, Instant::now().checked_add(timeout))
    }

    /// Register a callback called (from the flusher thread) with the new flushed LSN after each flush; it must not block.
    pub fn on_flush(&self, f: Box<dyn Fn(Lsn) + Send + Sync>) {
        lock(&self.inner.callbacks).push(Arc::from(f));
    }

    /// Request an immediate flush and wait for it (used at shutdown).
    pub fn flush(&self) -> Result<Lsn, LogError> {
        let target = self.end_lsn();
        {
            let mut fl = lock(&self.inner.fl);
            fl.requested = true;
            self.inner.wake_flusher.notify_one();
        }
        // A disk that stops answering must surface as an error, not hang the
        // checkpointer (which holds the write gate), a takeover or shutdown.
        self.inner
            .wait_flushed(target, Some(Instant::now() + FLUSH_TIMEOUT))
    }

    /// The last record in the log, if any.
    pub fn last_record(&self) -> Result<Option<(Lsn, Record)>, LogError> {
        let (lsn, seg) = {
            let st = lock(&self.inner.state);
            let Some(lsn) = st.last_lsn else {
                return Ok(None);
            };
            let seg = st.segs[seg_index(&st.segs, lsn)].clone();
            (lsn, seg)
        };
        let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        let mut buf = Vec::new();
        read_frame_at(&file, &seg, lsn, &mut buf)?;
        let (rec, _) = Record::decode(&buf, lsn).map_err(|e| {
            LogError::corrupt(
                &seg.path,
                seg.file_offset(lsn),
                format!("record at LSN {lsn}: {e}"),
            )
        })?;
        Ok(Some((lsn, rec)))
    }

    /// Iterate records from `from` (a record boundary, >= start_lsn) up to the end_lsn at the time of the call.
    pub fn read_from(&self, from: Lsn) -> Result<LogReader, LogError> {
        let (segs, end) = self.inner.snapshot(from)?;
        Ok(LogReader {
            idx: seg_index(&segs, from),
            segs,
            pos: from,
            from,
            end,
            reader: None,
            buf: Vec::new(),
            done: false,
        })
    }

    /// Read raw encoded bytes of whole records starting at `from`, up to about `max_bytes` (at least one record), never past `upto`. For shipping. Returns (bytes, next lsn).
    pub fn read_raw(
        &self,
        from: Lsn,
        upto: Lsn,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, Lsn), LogError> {
        let (segs, end) = self.inner.snapshot(from)?;
        let upto = upto.min(end);
        let mut out = Vec::new();
        let mut pos = from;
        let mut open: Option<(usize, File)> = None;
        while pos < upto {
            let idx = seg_index(&segs, pos);
            let seg = &segs[idx];
            let file = match &open {
                Some((i, f)) if *i == idx => f,
                _ => {
                    let f = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
                    &open.insert((idx, f)).1
                }
            };
            let before = out.len();
            let n = read_frame_at(file, seg, pos, &mut out)?;
            let next = pos + n as u64;
            if next > upto {
                out.truncate(before);
                if before == 0 {
                    return Err(LogError::BadLsn {
                        lsn: upto,
                        reason: format!("not a record boundary (record at {pos} ends at {next})"),
                    });
                }
                break;
            }
            if before > 0 && out.len() > max_bytes {
                out.truncate(before);
                break;
            }
            check_frame(&out[before..], pos).map_err(|e| {
                let reason = if pos == from {
                    format!("record at LSN {pos}: {e} (is {from} a record boundary?)")
                } else {
                    format!("record at LSN {pos}: {e}")
                };
                LogError::corrupt(&seg.path, seg.file_offset(pos), reason)
            })?;
            pos = next;
            if out.len() >= max_bytes {
                break;
            }
        }
        Ok((out, pos))
    }

    /// Delete whole segments that end at or before `keep_from` while the total log size exceeds retention_bytes (never the current segment, nor the one holding the last record). Returns bytes removed.
    pub fn apply_retention(&self, keep_from: Lsn) -> Result<u64, LogError> {
        let victims: Vec<SegMeta> = {
            let mut st = lock(&self.inner.state);
            let mut total: u64 = st.segs.iter().map(|s| s.file_len).sum();
            let mut n = 0;
            while n + 1 < st.segs.len() {
                let seg = &st.segs[n];
                let holds_last = st.last_lsn.is_some_and(|l| l >= seg.start && l < seg.end);
                if total <= self.inner.retention_bytes || seg.end > keep_from || holds_last {
                    break;
                }
                total -= seg.file_len;
                n += 1;
            }
            // Dropped from the list first so no new reader picks them; unlinked outside the lock.
            st.segs.drain(..n).collect()
        };
        let mut removed = 0;
        // Oldest first: a failure part-way still leaves a contiguous chain on disk.
        for seg in &victims {
            std::fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
            tracing::debug!(segment = %seg.path.display(), "log retention removed segment");
            removed += seg.file_len;
        }
        if removed > 0 && self.inner.sync {
            sync_dir(&self.inner.dir)?;
        }
        Ok(removed)
    }

    /// Remove everything at and after `lsn` (a record boundary) — for a rewinding old primary. fsyncs.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<(), LogError> {
        let inner = &*self.inner;
        let _cycle = lock(&inner.cycle);
        let mut st = lock(&inner.state);
        inner.check_writable(&st)?;
        let start = st.segs.first().map_or(0, |s| s.start);
        let end = st.end();
        if lsn < start || lsn > end {
            return Err(LogError::BadLsn {
                lsn,
                reason: format!("truncation point outside the retained log {start}..={end}"),
            });
        }
        if lsn == end {
            return Ok(());
        }
        // Refuse a point inside a record: the result would be an undecodable tail.
        {
            let seg = &st.segs[seg_index(&st.segs, lsn)];
            let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
            let mut buf = Vec::new();
            let framed = match read_frame_at(&file, seg, lsn, &mut buf) {
                Ok(_) => check_frame(&buf, lsn).map_err(|e| e.to_string()),
                Err(LogError::Corrupt { reason, .. }) => Err(reason),
                Err(e) => return Err(e),
            };
            framed.map_err(|reason| LogError::BadLsn {
                lsn,
                reason: format!("not a record boundary: {reason}"),
            })?;
        }
        // Keep the segment holding `lsn` (or ending at it); later ones go away entirely.
        let keep = st.segs.iter().rposition(|s| s.start < lsn).unwrap_or(0);
        // Newest first, so a crash part-way leaves a contiguous prefix.
        for seg in st.segs[keep + 1..].iter().rev() {
            std::fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        }
        st.segs.truncate(keep + 1);
        let seg = &mut st.segs[keep];
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg.path)
            .map_err(|e| LogError::io(&seg.path, e))?;
        // Cut with set_len, not by writing zeros over the suffix: zeros that reached the disk
        // only in part would leave valid records after a zeroed one, which reads as corruption.
        let cut = seg.file_offset(lsn);
        f.set_len(cut).map_err(|e| LogError::io(&seg.path, e))?;
        seg.end = lsn;
        if inner.sync {
            if let Err(e) = f.sync_all() {
                return Err(inner.fail(format!("fsync of {} failed: {e}", seg.path.display())));
            }
            if let Err(e) = sync_dir(&inner.dir) {
                return Err(inner.fail(e.to_string()));
            }
        }
        // Then zero-fill back to the old length so appends keep overwriting in place. Only
        // zeros go past the cut, so a crash in here leaves a clean end either way.
        let refill = write_zeros(&f, cut, seg.file_len).and_then(|()| {
            if inner.sync {
                f.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = refill {
            tracing::warn!(segment = %seg.path.display(), error = %e, "could not re-preallocate the truncated log segment; appends will grow it");
            seg.file_len = f.metadata().map_or(cut, |m| m.len());
        }
        st.current = Arc::new(f);
        st.last_lsn = find_last_record(&st.segs)?;
        let mut fl = lock(&inner.fl);
        inner.end.store(lsn, Ordering::Release);
        inner.flushed.store(lsn, Ordering::Release);
        fl.requested = false;
        drop(fl);
        tracing::info!(lsn, "log truncated");
        Ok(())
    }

    /// Total bytes of segment files, including their preallocated space not yet written to
    /// (so right after a switch it is about `segment_size` more than the records need). The one
    /// spare segment prepared ahead is not counted. Retention works on the same numbers.
    pub fn size_bytes(&self) -> u64 {
        lock(&self.inner.state)
            .segs
            .iter()
            .map(|s| s.file_len)
            .sum()
    }

    /// Whether a preallocated spare segment is ready, so the next segment switch does not have
    /// to write one (for tests, benchmarks and metrics).
    pub fn spare_ready(&self) -> bool {
        lock(&self.inner.spare).ready.is_some()
    }

    /// Counters: records appended, flush cycles, bytes appended.
    pub fn stats(&self) -> LogStats {
        LogStats {
            appends: self.inner.appends.load(Ordering::Relaxed),
            flushes: self.inner.flushes.load(Ordering::Relaxed),
            bytes: self.inner.bytes.load(Ordering::Relaxed),
        }
    }

    /// Stop the flusher after a final flush; later appends fail with `LogError::Closed`.
    pub fn close(&self) -> Result<(), LogError> {
        {
            let mut st = lock(&self.inner.state);
            st.closed = true;
        }
        // First, and whatever happens to the flusher: a spare half written is abandoned, and
        // the thread must not outlive the log.
        let spare = lock(&self.spare_thread).take();
        let spare_panicked = spare.is_some_and(|h| {
            {
                let mut sp = lock(&self.inner.spare);
                sp.shutdown = true;
                self.inner.spare_cv.notify_all();
            }
            h.join().is_err()
        });
        let handle = lock(&self.flusher).take();
        if let Some(h) = handle {
            {
                let mut fl = lock(&self.inner.fl);
                fl.shutdown = true;
                self.inner.wake_flusher.notify_all();
            }
            if h.join().is_err() {
                return Err(LogError::Failed("log flusher thread panicked".into()));
            }
        }
        if spare_panicked {
            return Err(LogError::Failed("log spare-segment thread panicked".into()));
        }
        let fl = lock(&self.inner.fl);
        match &fl.failure {
            Some(msg) => Err(LogError::Failed(msg.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the log on drop failed");
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .field("end_lsn", &self.end_lsn())
            .field("flushed_lsn", &self.flushed_lsn())
            .finish()
    }
}

impl Inner {
    fn check_writable(&self, st: &State) -> Result<(), LogError> {
        if st.closed {
            return Err(LogError::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            let msg = lock(&self.fl).failure.clone().unwrap_or_default();
            return Err(LogError::Failed(msg));
        }
        Ok(())
    }

    /// Record a sticky failure, wake every waiter, and return the error to hand back.
    fn fail(&self, msg: String) -> LogError {
        tracing::error!(error = %msg, "log failed; refusing further writes");
        let mut fl = lock(&self.fl);
        let msg = fl.failure.get_or_insert(msg).clone();
        self.failed.store(true, Ordering::Release);
        self.flushed_cv.notify_all();
        self.wake_flusher.notify_all();
        LogError::Failed(msg)
    }

    /// Write one sealed record at `lsn` (== current end), switching segments first if it does not fit in the current one.
    fn write_locked(&self, st: &mut State, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, LogError> {
        let len = bytes.len() as u64;
        let seg = st.current_seg()?;
        // Records never span segments. One that does not fit in the preallocated space left
        // starts a new segment; only a record too big for any segment grows one (its own, as
        // it is then the first record there).
        if seg.end > seg.start && seg.file_offset(lsn) + len > self.segment_size {
            self.switch_segment(st)?;
        }
        let seg = st.current_seg()?;
        let off = seg.file_offset(lsn);
        // Fill the rest of the last page with the zeros already there: overwriting only part
        // of a page that has left the page cache makes the kernel read it from disk first,
        // which appending at the end of a file never cost.
        let padded;
        let mut data = bytes;
        let page_end = (off + len).next_multiple_of(WRITE_PAGE);
        if page_end > off + len && page_end <= seg.file_len {
            let mut v = Vec::with_capacity((page_end - off) as usize);
            v.extend_from_slice(bytes);
            v.resize((page_end - off) as usize, 0);
            padded = v;
            data = &padded;
        }
        if let Err(e) = st.current.write_all_at(data, off) {
            // Put back the zeros (and the length) of the tail, or a shorter next record would
            // leave part of this one behind it, to be reported as a torn tail on reopen.
            let undo = (|| {
                if off + len > seg.file_len {
                    st.current.set_len(seg.file_len)?;
                }
                write_zeros(&st.current, off, (off + len).min(seg.file_len))
            })();
            if let Err(e2) = undo {
                return Err(self.fail(format!(
                    "write to {} at offset {off} failed ({e}) and could not be undone ({e2})",
                    seg.path.display()
                )));
            }
            return Err(LogError::io(&seg.path, e));
        }
        let end = lsn + len;
        if let Some(seg) = st.segs.last_mut() {
            seg.end = end;
            seg.file_len = seg.file_len.max(off + len);
        }
        st.last_lsn = Some(lsn);
        self.end.store(end, Ordering::Release);
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(end)
    }

    /// Start a new segment at the current end.
    fn switch_segment(&self, st: &mut State) -> Result<(), LogError> {
        let start = st.end();
        if self.sync {
            // The old segment must be durable before any byte of the new one can be, or a crash
            // could leave a torn record in a non-last segment followed by valid data.
            if let Err(e) = st.current.sync_data() {
                let path = st.current_seg()?.path.display().to_string();
                return Err(self.fail(format!("fdatasync of {path} failed: {e}")));
            }
        }
        let activated = {
            let mut sp = lock(&self.spare);
            let activated = sp
                .ready
                .take()
                .map(|f| activate_spare(&self.dir, f, start, self.sync));
            sp.requested = true;
            self.spare_cv.notify_all();
            activated
        };
        let created = match activated {
            Some(Ok(created)) => Ok(created),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not use the spare log segment; creating one");
                create_segment_file(&self.dir, start, self.prealloc, self.sync)
            }
            None => {
                // Correctness first: appends wait while the segment is written here.
                tracing::debug!(start, "no spare log segment ready; creating one in line");
                create_segment_file(&self.dir, start, self.prealloc, self.sync)
            }
        };
        let (file, path) = created?;
        if self.sync {
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.fail(e.to_string()));
            }
        }
        tracing::debug!(segment = %path.display(), start, "new log segment");
        st.segs.push(SegMeta {
            start,
            end: start,
            path,
            file_len: self.prealloc,
        });
        st.current = Arc::new(file);
        Ok(())
    }

    /// Wake the flusher; taking its lock orders this with its "end > flushed" check.
    fn kick_flusher(&self) {
        let _fl = lock(&self.fl);
        self.wake_flusher.notify_one();
    }

    /// Validate `from` and capture the segment list and end for a reader.
    fn snapshot(&self, from: Lsn) -> Result<(Vec<SegMeta>, Lsn), LogError> {
        let st = lock(&self.state);
        let start = st.segs.first().map_or(0, |s| s.start);
        let end = st.end();
        if from < start || from > end {
            return Err(LogError::BadLsn {
                lsn: from,
                reason: format!("outside the retained log {start}..={end}"),
            });
        }
        Ok((st.segs.clone(), end))
    }

    fn wait_flushed(&self, lsn: Lsn, deadline: Option<Instant>) -> Result<Lsn, LogError> {
        let mut fl = lock(&self.fl);
        loop {
            let flushed = self.flushed.load(Ordering::Acquire);
            if flushed >= lsn {
                return Ok(flushed);
            }
            if let Some(msg) = &fl.failure {
                return Err(LogError::Failed(msg.clone()));
            }
            if fl.stopped {
                return Err(LogError::Closed);
            }
            match deadline {
                None => {
                    fl = self
                        .flushed_cv
                        .wait(fl)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(LogError::FlushTimeout { lsn, flushed });
                    }
                    fl = self
                        .flushed_cv
                        .wait_timeout(fl, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// One group-commit cycle: capture the end, fdatasync, publish, call callbacks.
    fn flush_cycle(&self) -> Result<Lsn, LogError> {
        let cycle = lock(&self.cycle);
        let (target, file) = {
            let st = lock(&self.state);
            (st.end(), Arc::clone(&st.current))
        };
        let prev = self.flushed.load(Ordering::Acquire);
        if target <= prev {
            return Ok(prev);
        }
        // Only the current segment can hold unsynced data: older ones were synced when left.
        if self.sync {
            if let Err(e) = file.sync_data() {
                return Err(self.fail(format!("fdatasync of the current log segment failed: {e}")));
            }
        }
        {
            let _fl = lock(&self.fl);
            self.flushed.store(target, Ordering::Release);
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.flushed_cv.notify_all();
        }
        drop(cycle);
        let callbacks: Vec<FlushCallback> = lock(&self.callbacks).clone();
        for cb in callbacks {
            // A panicking callback must not kill the flusher and strand every waiter.
            if catch_unwind(AssertUnwindSafe(|| cb(target))).is_err() {
                tracing::error!("log on_flush callback panicked");
            }
        }
        Ok(target)
    }
}

fn flusher_main(inner: Arc<Inner>) {
    loop {
        let shutdown = {
            let mut fl = lock(&inner.fl);
            while !(fl.shutdown
                || fl.failure.is_some()
                || fl.requested
                || inner.end.load(Ordering::Acquire) > inner.flushed.load(Ordering::Acquire))
            {
                fl = inner
                    .wake_flusher
                    .wait(fl)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if fl.failure.is_some() {
                fl.stopped = true;
                inner.flushed_cv.notify_all();
                return;
            }
            fl.requested = false;
            fl.shutdown
        };
        // Errors become the sticky failure inside flush_cycle; the loop then exits above.
        let _ = inner.flush_cycle();
        if shutdown {
            let mut fl = lock(&inner.fl);
            fl.stopped = true;
            inner.flushed_cv.notify_all();
            return;
        }
    }
}

/// Keeps one spare segment ready: waits for a request, writes the spare, hands it over.
fn spare_main(inner: Arc<Inner>) {
    loop {
        {
            let mut sp = lock(&inner.spare);
            while !(sp.shutdown || (sp.requested && sp.ready.is_none())) {
                sp = inner
                    .spare_cv
                    .wait(sp)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if sp.shutdown {
                return;
            }
            sp.requested = false;
        }
        let cancelled = || lock(&inner.spare).shutdown;
        let published = match create_spare(&inner.dir, inner.prealloc, inner.sync, &cancelled) {
            Ok(Some(f)) => {
                let mut sp = lock(&inner.spare);
                if sp.shutdown || sp.ready.is_some() {
                    discard_spare_tmp(&inner.dir);
                    Ok(())
                } else {
                    publish_spare(&inner.dir).map(|()| {
                        sp.ready = Some(f);
                        sp.requested = false;
                        tracing::debug!(dir = %inner.dir.display(), "spare log segment ready");
                    })
                }
            }
            Ok(None) => return,
            Err(e) => Err(e),
        };
        // The next switch creates its segment itself and asks again, which retries this.
        if let Err(e) = published {
            tracing::warn!(error = %e, "preparing a spare log segment failed");
        }
    }
}

/// Iterator over records from a start LSN to the end LSN at creation time.
pub struct LogReader {
    segs: Vec<SegMeta>,
    idx: usize,
    pos: Lsn,
    from: Lsn,
    end: Lsn,
    reader: Option<BufReader<File>>,
    buf: Vec<u8>,
    done: bool,
}

impl LogReader {
    /// LSN of the next record to be returned.
    pub fn position(&self) -> Lsn {
        self.pos
    }

    fn next_record(&mut self) -> Result<(Lsn, Record), LogError> {
        while self.segs[self.idx].end <= self.pos && self.idx + 1 < self.segs.len() {
            self.idx += 1;
            self.reader = None;
        }
        let seg = &self.segs[self.idx];
        let reader = match &mut self.reader {
            Some(r) => r,
            None => {
                let f = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
                let mut r = BufReader::with_capacity(256 << 10, f);
                r.seek(SeekFrom::Start(seg.file_offset(self.pos)))
                    .map_err(|e| LogError::io(&seg.path, e))?;
                self.reader.insert(r)
            }
        };
        let lsn = self.pos;
        match read_record(reader, &mut self.buf, lsn, seg.end - lsn) {
            Ok((rec, n)) => {
                self.pos += n as u64;
                Ok((lsn, rec))
            }
            Err(ReadError::Io(e)) => Err(LogError::io(&seg.path, e)),
            Err(ReadError::Record(e)) => {
                if lsn == self.from
                    && matches!(e, RecordError::BadMagic | RecordError::LsnMismatch { .. })
                {
                    return Err(LogError::BadLsn {
                        lsn,
                        reason: format!("not a record boundary ({e})"),
                    });
                }
                Err(LogError::corrupt(
                    &seg.path,
                    seg.file_offset(lsn),
                    format!("record at LSN {lsn}: {e}"),
                ))
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<(Lsn, Record), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.end {
            return None;
        }
        let item = self.next_record();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

/// Summary of an offline log check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Oldest retained LSN.
    pub start_lsn: Lsn,
    /// End of the valid records (excluding any torn tail).
    pub end_lsn: Lsn,
    /// Number of segment files.
    pub segments: usize,
    /// Number of records checked.
    pub records: u64,
    /// Epoch of the newest record.
    pub last_epoch: Option<u64>,
    /// Bytes of torn tail at the end of the last segment that `Log::open` would zero out (up to
    /// the last non-zero byte; the preallocated zeros after the records do not count).
    pub torn_tail_bytes: u64,
}

/// Offline check of a whole log directory (for `hadr verify`): every segment and record, the chain of LSNs, and that only zeros follow the records of each segment. Read-only.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, LogError> {
    let segs = list_segments(dir, false)?;
    let start = match segs.first() {
        Some(f) => f.start,
        None => return Err(LogError::NotFound(dir.to_path_buf())),
    };
    let out = scan(&segs, start)?;
    Ok(VerifyReport {
        start_lsn: start,
        end_lsn: out.end,
        segments: segs.len(),
        records: out.records,
        last_epoch: out.last.map(|(_, e)| e),
        torn_tail_bytes: out.torn.as_ref().map_or(0, |t| t.bytes),
    })
}
