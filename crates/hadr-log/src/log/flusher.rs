//! Background threads: the group-commit flusher that makes appends durable, and the one that
//! keeps a preallocated spare segment ready. Also waiting for and requesting flushes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{lock, FlushCallback, Inner, Log};
use crate::error::LogError;
use crate::segment::{create_spare, discard_spare_tmp, publish_spare};
use crate::Lsn;

/// Longest [`Log::flush`] waits for the disk (the server's default commit_timeout).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest [`Log::close`] waits for the background threads to stop. A thread stuck in an
/// fdatasync that never returns (or in an `on_flush` callback that blocks) must not hang
/// shutdown or a takeover with it.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A background thread of the log that can be waited for with a deadline.
pub(super) struct Worker {
    /// What the thread does, for messages: "flusher" or "spare-segment".
    what: &'static str,
    handle: JoinHandle<()>,
    /// Disconnects when the thread's closure ends, returning or unwinding: `JoinHandle` has no
    /// join with a timeout, this does.
    done: Receiver<()>,
}

impl Worker {
    /// Start `main(inner)` on a thread named `name`.
    pub(super) fn spawn(
        what: &'static str,
        name: &str,
        inner: &Arc<Inner>,
        main: fn(Arc<Inner>),
    ) -> std::io::Result<Worker> {
        let (exited, done) = mpsc::channel::<()>();
        let inner = Arc::clone(inner);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Dropped when main returns or panics, which is what `done` waits for.
                let _exited = exited;
                main(inner)
            })?;
        Ok(Worker { what, handle, done })
    }

    /// Join the thread if it ends within `timeout` of `started`; otherwise leave it running
    /// (it holds its own `Arc<Inner>`, so that is safe) and say so.
    pub(super) fn join_within(self, started: Instant, timeout: Duration) -> Result<(), LogError> {
        let left = (started + timeout).saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    thread = self.what,
                    ?timeout,
                    "log thread did not stop in time; leaving it running"
                );
                Err(LogError::CloseTimeout {
                    thread: self.what,
                    timeout,
                })
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => self
                .handle
                .join()
                .map_err(|_| LogError::Failed(format!("log {} thread panicked", self.what))),
        }
    }
}

impl Log {
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
}

impl Inner {
    /// Wake the flusher; taking its lock orders this with its "end > flushed" check.
    pub(super) fn kick_flusher(&self) {
        let _fl = lock(&self.fl);
        self.wake_flusher.notify_one();
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

pub(super) fn flusher_main(inner: Arc<Inner>) {
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
pub(super) fn spare_main(inner: Arc<Inner>) {
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
