//! What the file sync reports: per root, and counters for metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Problems listed per root at most (the count is always exact).
pub const MAX_LISTED: usize = 100;

/// A path that is not synced, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Relative path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// One root as status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootView {
    /// Name.
    pub name: String,
    /// Local path.
    pub path: String,
    /// `scanning` (primary), `materializing` (standby) or `waiting`.
    pub state: String,
    /// Live files in the table.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Highest seq written (primary).
    pub last_seq_written: i64,
    /// Highest seq applied to the disk (standby).
    pub last_seq_applied: i64,
    /// Wall-clock lag of the last applied change, or of the oldest one that
    /// failed to apply (µs; standby).
    pub lag_us: Option<u64>,
    /// Changes seen but not written (primary) or not applied (standby).
    pub pending: u64,
    /// The last error, and when (µs since the epoch); cleared by success.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at_us: Option<i64>,
    /// Paths refused, unreadable or too large (at most [`MAX_LISTED`]).
    pub problems: Vec<Problem>,
    /// How many such paths there are.
    pub problems_total: u64,
}

#[derive(Default)]
struct RootState {
    view: RootView,
    problems: BTreeMap<String, String>,
}

/// Shared between the sync task and the admin endpoint.
#[derive(Default)]
pub struct SyncStatus {
    roots: Mutex<Vec<RootState>>,
    /// Errors since start (metric).
    pub errors_total: AtomicU64,
    /// Content bytes written to the tables (primary) or disk (standby).
    pub bytes_total: AtomicU64,
}

impl SyncStatus {
    /// A status for these roots (name, local path).
    pub fn new(roots: &[crate::Root]) -> SyncStatus {
        let s = SyncStatus::default();
        *s.lock() = roots
            .iter()
            .map(|r| RootState {
                view: RootView {
                    name: r.name.clone(),
                    path: r.path.display().to_string(),
                    state: "waiting".into(),
                    ..Default::default()
                },
                problems: BTreeMap::new(),
            })
            .collect();
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RootState>> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change root `i`'s view.
    pub fn update(&self, i: usize, f: impl FnOnce(&mut RootView)) {
        if let Some(r) = self.lock().get_mut(i) {
            f(&mut r.view);
        }
    }

    /// Record an error on root `i` (None: every root).
    pub fn error(&self, i: Option<usize>, e: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let now = crate::now_us();
        for (j, r) in self.lock().iter_mut().enumerate() {
            if i.is_none_or(|i| i == j) {
                r.view.last_error = Some(e.to_string());
                r.view.last_error_at_us = Some(now);
            }
        }
    }

    /// Clear root `i`'s last error (it succeeded since).
    pub fn clear_error(&self, i: usize) {
        self.update(i, |v| {
            v.last_error = None;
            v.last_error_at_us = None;
        });
    }

    /// Replace the problems of root `i` at or under `under` ("" = all) with `found`.
    pub fn set_problems(&self, i: usize, under: &str, found: &BTreeMap<String, String>) {
        if let Some(r) = self.lock().get_mut(i) {
            let prefix = format!("{under}/");
            r.problems
                .retain(|p, _| !(under.is_empty() || p == under || p.starts_with(&prefix)));
            r.problems
                .extend(found.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    /// Snapshot of every root.
    pub fn views(&self) -> Vec<RootView> {
        self.lock()
            .iter()
            .map(|r| {
                let mut v = r.view.clone();
                v.problems_total = r.problems.len() as u64;
                v.problems = r
                    .problems
                    .iter()
                    .take(MAX_LISTED)
                    .map(|(p, why)| Problem {
                        path: p.clone(),
                        reason: why.clone(),
                    })
                    .collect();
                v
            })
            .collect()
    }
}
