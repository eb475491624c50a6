//! The log itself: the `Log` handle, its shared state and configuration. Appends, the
//! group-commit flusher, reads and opening live in the submodules.

mod flusher;
mod open;
mod reader;
mod writer;

use std::fs::File;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use self::flusher::Worker;
use crate::error::LogError;
use crate::segment::SegMeta;
use crate::Lsn;

pub use self::open::OpenReport;
pub use self::reader::LogReader;

/// Whether the flusher makes data durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What the `Log` handle shares with its flusher and spare-segment threads.
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

/// hadr's transaction log. `Send + Sync`; share it as `Arc<Log>`.
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<Worker>>,
    /// Prepares the spare segment; None if the thread could not be started (switches then
    /// create segments themselves).
    spare_thread: Mutex<Option<Worker>>,
    /// How long `close` waits for those threads (`CLOSE_TIMEOUT`; tests shorten it).
    close_timeout: Duration,
}

impl Log {
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
    ///
    /// Waits at most a few seconds (`CLOSE_TIMEOUT`) for the background threads; one that has not stopped by
    /// then (a disk that stopped answering) is left running and `LogError::CloseTimeout` is
    /// returned.
    pub fn close(&self) -> Result<(), LogError> {
        {
            let mut st = lock(&self.inner.state);
            st.closed = true;
        }
        let started = Instant::now();
        // Both are told to stop before either is waited for, so they stop side by side within
        // the one deadline and a stuck one cannot leave the other running. A spare half
        // written is abandoned.
        let spare = lock(&self.spare_thread).take().inspect(|_| {
            let mut sp = lock(&self.inner.spare);
            sp.shutdown = true;
            self.inner.spare_cv.notify_all();
        });
        let flusher = lock(&self.flusher).take().inspect(|_| {
            let mut fl = lock(&self.inner.fl);
            fl.shutdown = true;
            self.inner.wake_flusher.notify_all();
        });
        let join =
            |w: Option<Worker>| w.map_or(Ok(()), |w| w.join_within(started, self.close_timeout));
        let spare = join(spare);
        join(flusher)?;
        spare?;
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
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::record::{Page, Record};

    fn record() -> Record {
        Record {
            epoch: 1,
            commit_time_micros: 0,
            db_size_pages: 1,
            page_size: 512,
            mark: Default::default(),
            pages: vec![Page {
                pgno: 1,
                data: vec![1; 512],
            }],
        }
    }

    /// A stuck flusher must not hang close. Without the bound, close joins the flusher and only
    /// returns once the callback is released, after the 5 s the test waits, so it fails.
    #[test]
    fn close_returns_within_its_bound_when_the_flusher_is_stuck() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            dir: dir.path().join("log"),
            segment_size: 1 << 20,
            flush_mode: FlushMode::Off,
            ..LogConfig::default()
        };
        Log::create(&cfg).expect("create");
        let (mut log, _) = Log::open(cfg, 0).expect("open");
        log.close_timeout = Duration::from_millis(200);
        // A callback that blocks holds the flusher thread as an fdatasync that never returns
        // would, using only the public API.
        let (entered_tx, entered) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        log.on_flush(Box::new(move |_| {
            let _ = entered_tx.send(());
            // Returns once `release` is dropped.
            let _ = lock(&released).recv();
        }));
        log.append(&record()).expect("append");
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the flusher never called the callback");

        let started = Instant::now();
        let (closed_tx, closed_rx) = mpsc::channel();
        let closed = std::thread::scope(|s| {
            s.spawn(|| closed_tx.send(log.close()));
            let closed = closed_rx.recv_timeout(Duration::from_secs(5));
            // Unstick the flusher whatever happened, so an unbounded close (and the scope) end.
            drop(release);
            closed
        });
        let elapsed = started.elapsed();
        let closed = closed.expect("close did not return within 5 s while the flusher was stuck");
        assert!(
            matches!(
                closed,
                Err(LogError::CloseTimeout {
                    thread: "flusher",
                    ..
                })
            ),
            "{closed:?}"
        );
        assert!(elapsed < Duration::from_secs(2), "close took {elapsed:?}");
        assert!(matches!(log.append(&record()), Err(LogError::Closed)));
        // The detached flusher, once unstuck, still finishes and exits.
        let fl = lock(&log.inner.fl);
        let (fl, _) = log
            .inner
            .flushed_cv
            .wait_timeout_while(fl, Duration::from_secs(10), |fl| !fl.stopped)
            .unwrap_or_else(PoisonError::into_inner);
        assert!(fl.stopped, "the flusher did not exit after being released");
    }
}
