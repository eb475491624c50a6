//! The write lock: SQLite has one writer, and hadr serialises writers itself
//! so that they queue in arrival order instead of busy-polling SQLite's lock,
//! and so that capture runs in commit order.
//!
//! A ticket lock: waiters are served first come, first served; a waiter that
//! times out or is cancelled abandons its ticket and is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl Drop for WritePermit {
    fn drop(&mut self) {
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
        let deadline = Instant::now() + timeout;
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
                return Ok(WritePermit { lock: self.clone() });
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
