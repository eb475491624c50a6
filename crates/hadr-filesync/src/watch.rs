//! The primary's loop around [`Scanner`]: inotify events (the `notify`
//! crate, recursive), debounced, plus a periodic full scan as a safety net.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::Watcher;
use tracing::warn;

use crate::scan::{Scanner, SETTLE};
use crate::{Db, Settings, SyncError, SyncStatus};

/// Quiet time that ends a burst of events.
const DEBOUNCE: Duration = Duration::from_millis(25);
/// Longest a burst is collected before it is written anyway.
const DEBOUNCE_MAX: Duration = Duration::from_millis(200);
/// Events queued at most; past that, a full scan.
const EVENT_QUEUE: usize = 1 << 16;

/// Dirty paths per root, without paths whose ancestor is dirty too.
#[derive(Default)]
struct Dirty {
    roots: BTreeMap<usize, BTreeSet<String>>,
}

impl Dirty {
    fn add(&mut self, i: usize, rel: String) {
        self.roots.entry(i).or_default().insert(rel);
    }

    fn len(&self) -> usize {
        self.roots.values().map(BTreeSet::len).sum()
    }

    fn take(&mut self) -> Vec<(usize, Vec<String>)> {
        std::mem::take(&mut self.roots)
            .into_iter()
            .map(|(i, set)| {
                let mut out: Vec<String> = Vec::new();
                for p in set {
                    // Sorted: an ancestor comes before its descendants.
                    let covered = out.last().is_some_and(|a: &String| {
                        a.is_empty()
                            || (p.len() > a.len()
                                && p.starts_with(a.as_str())
                                && p.as_bytes()[a.len()] == b'/')
                    });
                    if !covered {
                        out.push(p);
                    }
                }
                (i, out)
            })
            .collect()
    }
}

/// Whether an event can mean a change (opening a file for reading cannot).
fn changes(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Map an event's path to (root, relative path).
fn locate(settings: &Settings, p: &Path) -> Option<(usize, String)> {
    for (i, r) in settings.roots.iter().enumerate() {
        if let Ok(rel) = p.strip_prefix(&r.path) {
            return rel.to_str().map(|s| (i, s.to_string()));
        }
    }
    None
}

/// The primary's loop: wait until the node may write, then scan everything,
/// then follow inotify events (and a full scan every `scan_interval`) until
/// `stop`. Errors go to status; after one, the table is reloaded and the
/// whole tree scanned again, so nothing is lost.
pub fn run(settings: &Settings, db: &dyn Db, status: &SyncStatus, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(why) = db.refusal() {
            for i in 0..settings.roots.len() {
                status.update(i, |v| v.state = format!("waiting: {why}"));
            }
            sleep_unless(stop, Duration::from_millis(200));
            continue;
        }
        if let Err(e) = follow(settings, db, status, stop) {
            if matches!(e, SyncError::Stopped) {
                return;
            }
            if !matches!(e, SyncError::NotWritable(_)) {
                warn!(error = %e, "file sync: scan failed; retrying");
                status.error(None, &e.to_string());
            }
            sleep_unless(stop, Duration::from_secs(1));
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn follow(
    settings: &Settings,
    db: &dyn Db,
    status: &SyncStatus,
    stop: &AtomicBool,
) -> Result<(), SyncError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<notify::Result<notify::Event>>(EVENT_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let flag = overflow.clone();
    // Watch before the full scan, so that nothing changed during it is missed.
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Readers (a web server serving the files) open them all the time:
        // only changes matter, and others must not hold off the debounce.
        if ev.as_ref().is_ok_and(|e| !changes(&e.kind)) {
            return;
        }
        if tx.try_send(ev).is_err() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            status.error(
                None,
                &format!("inotify unavailable ({e}); only the periodic scan finds changes"),
            );
            None
        }
    };
    if let Some(w) = watcher.as_mut() {
        for (i, r) in settings.roots.iter().enumerate() {
            if let Err(e) = w.watch(&r.path, notify::RecursiveMode::Recursive) {
                status.error(
                    Some(i),
                    &format!(
                        "cannot watch {} ({e}); only the periodic scan finds changes",
                        r.path.display()
                    ),
                );
            }
        }
    }
    let mut scanner = Scanner::load(settings, db, status, stop)?;
    let all = |d: &mut Dirty| {
        for i in 0..settings.roots.len() {
            d.add(i, String::new());
        }
    };
    let mut dirty = Dirty::default();
    all(&mut dirty);
    let mut retry: Vec<(Instant, usize, String)> = Vec::new();
    let mut next_full = Instant::now() + settings.scan_interval;
    for i in 0..settings.roots.len() {
        status.update(i, |v| v.state = "scanning".into());
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(SyncError::Stopped);
        }
        if dirty.len() > 0 {
            let pending = dirty.len() as u64;
            for i in 0..settings.roots.len() {
                status.update(i, |v| v.pending = pending);
            }
            if let Some(why) = db.refusal() {
                return Err(SyncError::NotWritable(why));
            }
            for (i, unders) in dirty.take() {
                let t = Instant::now();
                let out = scanner.sync(i, &unders)?;
                tracing::debug!(
                    paths = unders.len(),
                    rows = out.written,
                    ms = t.elapsed().as_millis() as u64,
                    "file sync: scanned"
                );
                status.clear_error(i);
                let at = Instant::now() + SETTLE;
                retry.extend(out.retry.into_iter().map(|(i, p)| (at, i, p)));
            }
            for i in 0..settings.roots.len() {
                status.update(i, |v| v.pending = 0);
            }
        }
        // Wait for an event, a retry or the next full scan.
        let now = Instant::now();
        let mut wake = next_full.min(now + Duration::from_millis(100));
        if let Some(t) = retry.iter().map(|r| r.0).min() {
            wake = wake.min(t);
        }
        let mut got = match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(ev) => vec![ev],
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => vec![],
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => vec![],
        };
        if !got.is_empty() {
            let start = Instant::now();
            while start.elapsed() < DEBOUNCE_MAX {
                match rx.recv_timeout(DEBOUNCE) {
                    Ok(ev) => got.push(ev),
                    Err(_) => break,
                }
            }
        }
        for ev in got {
            match ev {
                Ok(ev) if ev.need_rescan() => all(&mut dirty),
                Ok(ev) => {
                    for p in &ev.paths {
                        if let Some((i, rel)) = locate(settings, p) {
                            dirty.add(i, rel);
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "file sync: watch error; scanning everything");
                    all(&mut dirty);
                }
            }
        }
        if overflow.swap(false, Ordering::Relaxed) {
            all(&mut dirty);
        }
        let now = Instant::now();
        retry.retain(|(t, i, p)| {
            if *t <= now {
                dirty.add(*i, p.clone());
                false
            } else {
                true
            }
        });
        if now >= next_full {
            all(&mut dirty);
            next_full = now + settings.scan_interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_paths_under_a_dirty_ancestor_are_dropped() {
        let mut d = Dirty::default();
        for p in ["a/b", "a", "ab", "c/d", "a/b/c"] {
            d.add(0, p.into());
        }
        assert_eq!(
            d.take(),
            vec![(0, vec!["a".to_string(), "ab".into(), "c/d".into()])]
        );
    }
}
