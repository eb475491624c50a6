//! The write lock: SQLite has one writer, and hadr serialises writers itself
//! so that they queue in arrival order instead of busy-polling SQLite's lock,
//! and so that capture runs in commit order.
//!
//! A ticket lock: waiters are served first come, first served; a waiter that
//! times out or is cancelled abandons its ticket and is skipped.
//!
//! How long each holder kept it and how long each waited for it are
//! counted in histograms (`hadr_write_lock_hold_seconds`,
//! `hadr_write_lock_wait_seconds` in `/metrics`): with one writer, the
//! hold time bounds write throughput (docs/benchmarks.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    next: u64,
    serving: u64,
    held: bool,
    abandoned: BTreeSet<u64>,
    /// Waiting threads by ticket: release wakes only the next one, because
    /// waking every waiter on every commit costs more than the commit itself
    /// once dozens of sessions queue on two cores.
    waiters: BTreeMap<u64, Thread>,
}

/// A FIFO lock with timeouts and cancellation, held across statements.
#[derive(Default)]
pub struct WriteLock {
    state: Mutex<State>,
    held_for: Durations,
    waited_for: Durations,
}

/// Upper bounds (µs) of the histogram buckets of hold and wait times.
pub const BUCKETS_US: [u64; 12] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000, 1_000_000,
];

/// A histogram of durations, updated without a lock.
#[derive(Default)]
struct Durations {
    /// Per bucket of [`BUCKETS_US`], not cumulative; the last counts what
    /// is longer than every bound.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A copy of a histogram: buckets as in [`BUCKETS_US`] plus one past the
/// last bound, not cumulative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurationStats {
    pub buckets: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
}

impl Durations {
    fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DurationStats {
        DurationStats {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// Why the lock was not obtained.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteLockError {
    /// The wait exceeded its limit.
    #[error("the write lock was not granted in time")]
    Timeout,
    /// The waiter was cancelled.
    #[error("the wait for the write lock was cancelled")]
    Cancelled,
}

/// Proof of holding the write lock; released on drop.
pub struct WritePermit {
    lock: Arc<WriteLock>,
    since: Instant,
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        self.lock.held_for.record(self.since.elapsed());
        self.lock.release();
    }
}

impl WriteLock {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for the gate, at most `timeout`, giving up if `cancel` becomes true.
    pub fn acquire(
        self: &Arc<Self>,
        timeout: Duration,
        cancel: &AtomicBool,
    ) -> Result<WritePermit, WriteLockError> {
        let asked = Instant::now();
        let deadline = asked + timeout;
        let mut st = self.lock();
        let ticket = st.next;
        st.next += 1;
        st.waiters.insert(ticket, thread::current());
        loop {
            // Cancellation first, even on the waiter's turn: a session told
            // to end (a hand-over's end_sessions) must not take the lock the
            // previous holder just released. Its statement would start after
            // the sqlite3_interrupt meant for it, run to its end, and hold
            // up the hand-over (and commit during it).
            let cancelled = cancel.load(Ordering::SeqCst);
            if !cancelled && st.serving == ticket && !st.held {
                st.held = true;
                st.waiters.remove(&ticket);
                drop(st);
                let since = Instant::now();
                self.waited_for.record(since - asked);
                return Ok(WritePermit {
                    lock: self.clone(),
                    since,
                });
            }
            let now = Instant::now();
            let gave_up = if cancelled {
                Some(WriteLockError::Cancelled)
            } else if now >= deadline {
                Some(WriteLockError::Timeout)
            } else {
                None
            };
            if let Some(e) = gave_up {
                st.waiters.remove(&ticket);
                st.abandoned.insert(ticket);
                Self::skip_abandoned(&mut st);
                Self::wake_next(&st);
                return Err(e);
            }
            drop(st);
            // Wake periodically to notice cancellation; spurious wake-ups are fine.
            thread::park_timeout((deadline - now).min(Duration::from_millis(50)));
            st = self.lock();
        }
    }

    fn wake_next(st: &State) {
        if !st.held {
            if let Some(t) = st.waiters.get(&st.serving) {
                t.unpark();
            }
        }
    }

    fn skip_abandoned(st: &mut State) {
        if st.held {
            return;
        }
        while st.abandoned.remove(&st.serving) {
            st.serving += 1;
        }
    }

    fn release(&self) {
        let mut st = self.lock();
        st.held = false;
        st.serving += 1;
        Self::skip_abandoned(&mut st);
        Self::wake_next(&st);
    }

    /// Whether someone holds the gate now.
    pub fn is_held(&self) -> bool {
        self.lock().held
    }

    /// How long holders kept the lock (each permit from grant to drop).
    pub fn hold_stats(&self) -> DurationStats {
        self.held_for.snapshot()
    }

    /// How long acquirers waited for it (those that got it).
    pub fn wait_stats(&self) -> DurationStats {
        self.waited_for.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_timeouts() {
        let g = Arc::new(WriteLock::default());
        let no = AtomicBool::new(false);
        let p = g.acquire(Duration::from_secs(1), &no).unwrap();
        assert_eq!(
            g.acquire(Duration::from_millis(20), &no).err(),
            Some(WriteLockError::Timeout)
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut hs = Vec::new();
        for i in 0..4 {
            let (g2, order) = (g.clone(), order.clone());
            hs.push(std::thread::spawn(move || {
                let no = AtomicBool::new(false);
                let _p = g2.acquire(Duration::from_secs(5), &no).unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each thread takes its ticket before the next starts (a sleep
            // is not enough on a loaded machine).
            let deadline = Instant::now() + Duration::from_secs(5);
            while g.lock().waiters.len() < i + 1 {
                assert!(Instant::now() < deadline, "waiter {i} never queued");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(p);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        assert!(!g.is_held());
    }

    #[test]
    fn a_waiter_cancelled_in_the_queue_never_takes_its_turn() {
        let g = Arc::new(WriteLock::default());
        let no = AtomicBool::new(false);
        let p = g.acquire(Duration::from_secs(1), &no).unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let (g2, c2) = (g.clone(), cancel.clone());
        let waiter = std::thread::spawn(move || g2.acquire(Duration::from_secs(30), &c2).err());
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.lock().waiters.is_empty() {
            assert!(Instant::now() < deadline, "the waiter never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Cancelled, then its turn comes at once: it must not take it.
        cancel.store(true, Ordering::SeqCst);
        drop(p);
        assert_eq!(waiter.join().unwrap(), Some(WriteLockError::Cancelled));
        assert!(!g.is_held());
        assert!(g.acquire(Duration::from_millis(100), &no).is_ok());
    }

    #[test]
    fn hold_and_wait_times_are_counted() {
        let g = Arc::new(WriteLock::default());
        let no = AtomicBool::new(false);
        let p = g.acquire(Duration::from_secs(1), &no).unwrap();
        std::thread::sleep(Duration::from_millis(3));
        drop(p);
        let h = g.hold_stats();
        assert_eq!(h.count, 1);
        assert!(h.sum_us >= 3_000, "{h:?}");
        // 3 ms and a bit: the 5 ms bucket or, on a slow machine, later.
        let at = h.buckets.iter().position(|&n| n == 1).unwrap();
        assert!(BUCKETS_US.get(at).is_none_or(|&b| b >= 5_000), "{h:?}");
        assert_eq!(h.buckets.len(), BUCKETS_US.len() + 1);
        assert_eq!(g.wait_stats().count, 1);
        // A timed-out waiter is not counted as a wait that ended in a grant.
        let p = g.acquire(Duration::from_secs(1), &no).unwrap();
        assert!(g.acquire(Duration::from_millis(5), &no).is_err());
        drop(p);
        assert_eq!(g.wait_stats().count, 2);
        assert_eq!(g.hold_stats().count, 2);
    }

    #[test]
    fn cancelled_waiter_does_not_block_others() {
        let g = Arc::new(WriteLock::default());
        let no = AtomicBool::new(false);
        let p = g.acquire(Duration::from_secs(1), &no).unwrap();
        let yes = AtomicBool::new(true);
        assert_eq!(
            g.acquire(Duration::from_secs(5), &yes).err(),
            Some(WriteLockError::Cancelled)
        );
        drop(p);
        assert!(g.acquire(Duration::from_millis(100), &no).is_ok());
    }
}
