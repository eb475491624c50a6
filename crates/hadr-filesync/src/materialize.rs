//! The standby side: write what the tables say onto the disk, and check
//! that a disk matches its table (`hadr verify`).
//!
//! Every file is written atomically (a temporary file in the same
//! directory, written, fsynced, its mode, owner and mtime set, renamed over
//! the old one, the directory fsynced), and nothing is written through a
//! symlink: every parent of a path must be a real directory inside the
//! root, or the row is not applied (and reported). The root mirrors the
//! table: a full reconcile deletes what the table does not have, like
//! `rsync --delete` (excluded paths are left alone).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tracing::{info, warn};

use crate::table::{self, Row};
use crate::tree::{self, Kind};
use crate::{Db, Settings, SyncError, SyncStatus, TMP_PREFIX};

/// Rows read per round.
const ROUND: usize = 500;

/// Applies table rows to the disk.
pub struct Materializer<'a> {
    settings: &'a Settings,
    db: &'a dyn Db,
    status: &'a SyncStatus,
    /// Every row up to this seq is on disk.
    pub applied: i64,
    /// Roots the primary has never written a row of: their disk is left
    /// alone (a sync path configured on a standby before the primary has
    /// scanned it is not emptied); mirrored from their first row on.
    unknown: BTreeSet<usize>,
    /// A row of an unknown root arrived: reconcile again.
    pub needs_reconcile: bool,
}

fn describe(e: &SyncError) -> String {
    if e.is_enospc() {
        format!("ENOSPC (disk full): {e}")
    } else {
        e.to_string()
    }
}

impl<'a> Materializer<'a> {
    /// A materializer that has applied nothing yet.
    pub fn new(settings: &'a Settings, db: &'a dyn Db, status: &'a SyncStatus) -> Materializer<'a> {
        Materializer {
            settings,
            db,
            status,
            applied: 0,
            unknown: BTreeSet::new(),
            needs_reconcile: false,
        }
    }

    /// Apply every row after `applied`. Rows that fail are reported and
    /// tried again next time (the watermark stops before the first one);
    /// the others are applied meanwhile. Returns how many failed.
    pub fn catch_up(&mut self, stop: &AtomicBool) -> Result<usize, SyncError> {
        let mut failed_total = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(SyncError::Stopped);
            }
            let (mut n, mut max_seq) = (0usize, self.applied);
            // (root, message, changed_at_us, seq)
            let mut failures: Vec<(usize, String, i64, i64)> = Vec::new();
            let mut staged: Vec<Staged> = Vec::new();
            let mut oks: Vec<(usize, i64)> = Vec::new();
            let after = self.applied;
            let settings = self.settings;
            let status = self.status;
            let unknown = &self.unknown;
            let needs_reconcile = &mut self.needs_reconcile;
            // Directories are fsynced once per round, before the watermark
            // moves past the rows that changed them.
            let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
            self.db.read(&mut |conn| {
                let rows = table::rows_after(conn, after, ROUND)?;
                n = rows.len();
                tracing::debug!(rows = n, after, "file sync: applying");
                if n > 0 {
                    for (i, r) in settings.roots.iter().enumerate() {
                        let (files, bytes) = table::file_totals(conn, &r.name)?;
                        status.update(i, |v| {
                            v.files = files;
                            v.bytes = bytes;
                        });
                    }
                }
                for r in rows {
                    max_seq = max_seq.max(r.seq);
                    let Some(i) = settings.roots.iter().position(|x| x.name == r.root) else {
                        continue;
                    };
                    if unknown.contains(&i) {
                        *needs_reconcile = true;
                    }
                    match apply_row(conn, settings, i, &r, &mut dirs, &mut staged) {
                        Ok(true) => oks.push((i, r.changed_at_us)),
                        Ok(false) => {}
                        Err(e) => failures.push((
                            i,
                            format!("{}: {}", r.path, describe(&e)),
                            r.changed_at_us,
                            r.seq,
                        )),
                    }
                }
                Ok(())
            })?;
            for (st, r) in finish(staged, &mut dirs, self.status) {
                match r {
                    Ok(()) => oks.push((st.i, st.changed_at_us)),
                    Err(e) => failures.push((
                        st.i,
                        format!("{}: {}", st.path, describe(&e)),
                        st.changed_at_us,
                        st.seq,
                    )),
                }
            }
            let first_failed = failures.iter().map(|f| f.3).min();
            for d in &dirs {
                if let Err(e) = fsync_dir(d) {
                    if matches!(&e, SyncError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
                    {
                        // Removed later in the round; its parent is in the set.
                        continue;
                    }
                    // Not durable yet: apply this round again.
                    self.status.error(None, &describe(&e));
                    return Ok(failed_total + 1);
                }
            }
            let now = crate::now_us();
            for (i, changed) in &oks {
                self.status
                    .update(*i, |v| v.lag_us = Some(now.saturating_sub(*changed) as u64));
            }
            for (i, msg, changed, _) in &failures {
                warn!(root = %self.settings.roots[*i].name, error = %msg, "file sync: cannot apply a change; retrying");
                self.status.error(Some(*i), msg);
                self.status
                    .update(*i, |v| v.lag_us = Some(now.saturating_sub(*changed) as u64));
            }
            failed_total += failures.len();
            self.applied = match first_failed {
                Some(s) => s - 1,
                None => max_seq,
            };
            let applied = self.applied;
            let pending = failures.len() as u64;
            for i in 0..self.settings.roots.len() {
                self.status.update(i, |v| {
                    v.last_seq_applied = applied;
                    v.pending = pending;
                });
                if !failures.iter().any(|f| f.0 == i) && !oks.is_empty() {
                    self.status.clear_error(i);
                }
            }
            if n < ROUND || first_failed.is_some() {
                return Ok(failed_total);
            }
        }
    }

    /// Apply every row, then delete from each root what the table does not have.
    pub fn reconcile(&mut self, stop: &AtomicBool) -> Result<usize, SyncError> {
        self.applied = 0;
        self.unknown.clear();
        self.needs_reconcile = false;
        let failed = self.catch_up(stop)?;
        if failed > 0 {
            return Ok(failed);
        }
        let mut live: Vec<BTreeMap<String, Row>> = vec![BTreeMap::new(); self.settings.roots.len()];
        let mut known = vec![false; self.settings.roots.len()];
        let settings = self.settings;
        self.db.read(&mut |conn| {
            for (i, r) in settings.roots.iter().enumerate() {
                known[i] = table::root_known(conn, &r.name)?;
                live[i] = table::live_rows(conn, &r.name)?
                    .into_iter()
                    .map(|r| (r.path.clone(), r))
                    .collect();
            }
            Ok(())
        })?;
        for (i, r) in settings.roots.iter().enumerate() {
            if !known[i] {
                info!(root = %r.name, "file sync: the primary has not written this root yet; its files here are left alone until it does");
                self.unknown.insert(i);
                continue;
            }
            let w = tree::walk(&r.path, "", settings)?;
            let mut extra: Vec<&String> = w
                .entries
                .keys()
                .chain(w.too_large.keys())
                .filter(|p| !live[i].contains_key(*p))
                .collect();
            // Refused symlinks and special files too; unreadable ones are left.
            let refused: Vec<&String> = w
                .problems
                .iter()
                .filter(|(p, why)| {
                    !why.starts_with("directory unreadable")
                        && !live[i].contains_key(*p)
                        && !w.too_large.contains_key(*p)
                })
                .map(|(p, _)| p)
                .collect();
            extra.extend(refused);
            extra.sort();
            extra.dedup();
            let (mut gone, mut failed) = (0usize, 0usize);
            let mut dirs = BTreeSet::new();
            for p in extra.iter().rev() {
                if tree::check_rel(p).is_err() {
                    continue;
                }
                match remove(&r.path, p, &mut dirs) {
                    Ok(()) => gone += 1,
                    Err(e) => {
                        failed += 1;
                        self.status.error(Some(i), &describe(&e));
                    }
                }
            }
            for d in &dirs {
                if let Err(e) = fsync_dir(d) {
                    if matches!(&e, SyncError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
                    {
                        continue;
                    }
                    failed += 1;
                    self.status.error(Some(i), &describe(&e));
                }
            }
            if gone > 0 {
                info!(root = %r.name, removed = gone, "file sync: removed what the table does not have");
            }
            let (files, bytes) = live[i]
                .values()
                .filter(|r| r.kind == Kind::File)
                .fold((0, 0), |(n, b), r| (n + 1, b + r.size));
            self.status.update(i, |v| {
                v.files = files;
                v.bytes = bytes;
            });
            if failed > 0 {
                return Ok(failed);
            }
        }
        Ok(0)
    }
}

/// Check every parent of `rel` is a real directory inside `root`
/// (creating missing ones when `create`); the parent's path, or None when
/// one is missing and not created.
fn parent_dir(root: &Path, rel: &str, create: bool) -> Result<Option<PathBuf>, SyncError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut cur = root.to_path_buf();
    // The root itself may be a symlink to a directory: the administrator
    // configured it, so it is followed; nothing under it is.
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(SyncError::io(
                root,
                std::io::Error::other("the root is not a directory"),
            ))
        }
        Err(e) => return Err(SyncError::io(root, e)),
    }
    for part in &parts[..parts.len() - 1] {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(SyncError::io(
                    &cur,
                    std::io::Error::other("a parent is not a directory (never written through)"),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&cur).map_err(|e| SyncError::io(&cur, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SyncError::io(&cur, e)),
        }
    }
    Ok(Some(cur))
}

fn fsync_dir(dir: &Path) -> Result<(), SyncError> {
    let f = std::fs::File::open(dir).map_err(|e| SyncError::io(dir, e))?;
    f.sync_all().map_err(|e| SyncError::io(dir, e))
}

/// Remove `rel` (a directory with everything in it; never following a
/// symlink); its directory goes into `dirs`.
fn remove(root: &Path, rel: &str, dirs: &mut BTreeSet<PathBuf>) -> Result<(), SyncError> {
    let Some(dir) = parent_dir(root, rel, false)? else {
        return Ok(());
    };
    let p = tree::join(root, rel);
    let r = match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        // std's remove_dir_all does not follow symlinks inside.
        Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(&p),
        Ok(_) => std::fs::remove_file(&p),
    };
    match r {
        Ok(()) => {
            dirs.insert(dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SyncError::io(&p, e)),
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    let short: String = name.chars().take(64).collect();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TMP_PREFIX}{short}.{}.{n}", std::process::id()))
}

fn is_root_user() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A file written under its temporary name, to be made durable and
/// renamed into place by [`finish`].
pub struct Staged {
    i: usize,
    seq: i64,
    changed_at_us: i64,
    path: String,
    root: PathBuf,
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    size: u64,
}

/// From this many files in a round, their contents are made durable with
/// one `syncfs` per root instead of one fsync each (a few ms apiece on a
/// busy disk: 10,000 small files would take half a minute).
const SYNCFS_FROM: usize = 16;

/// Make the staged files' contents durable, then rename each into place
/// (the directories go into `dirs`): no file ever appears under its name
/// before its content is on disk.
pub fn finish(
    staged: Vec<Staged>,
    dirs: &mut BTreeSet<PathBuf>,
    status: &SyncStatus,
) -> Vec<(Staged, Result<(), SyncError>)> {
    let mut synced_fs = staged.len() >= SYNCFS_FROM;
    if synced_fs {
        let roots: BTreeSet<&PathBuf> = staged.iter().map(|s| &s.root).collect();
        for r in roots {
            let ok = std::fs::File::open(r).is_ok_and(|f| {
                use std::os::fd::AsRawFd;
                // SAFETY: syncfs on a file descriptor we own, open for the call.
                unsafe { libc::syncfs(f.as_raw_fd()) == 0 }
            });
            synced_fs &= ok;
        }
    }
    staged
        .into_iter()
        .map(|st| {
            let r = place(&st, synced_fs);
            if r.is_ok() {
                dirs.insert(st.dir.clone());
                status.bytes_total.fetch_add(st.size, Ordering::Relaxed);
            } else {
                let _ = std::fs::remove_file(&st.tmp);
            }
            (st, r)
        })
        .collect()
}

fn place(st: &Staged, synced_fs: bool) -> Result<(), SyncError> {
    if !synced_fs {
        let f = std::fs::File::open(&st.tmp).map_err(|e| SyncError::io(&st.tmp, e))?;
        f.sync_all().map_err(|e| SyncError::io(&st.tmp, e))?;
    }
    let io = |e: std::io::Error| SyncError::io(&st.dest, e);
    match std::fs::symlink_metadata(&st.dest) {
        Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(&st.dest).map_err(io)?,
        _ => {}
    }
    std::fs::rename(&st.tmp, &st.dest).map_err(io)
}

/// Apply one row of root `i`; the directories whose entries changed are
/// added to `dirs`, for the caller to fsync. A file with new content is
/// written to a temporary name and added to `staged` (false: not applied
/// yet; [`finish`] completes it).
pub fn apply_row(
    conn: &rusqlite::Connection,
    settings: &Settings,
    i: usize,
    r: &Row,
    dirs: &mut BTreeSet<PathBuf>,
    staged: &mut Vec<Staged>,
) -> Result<bool, SyncError> {
    let root = &settings.roots[i].path;
    let bad = |why: String| SyncError::BadRow {
        root: r.root.clone(),
        path: r.path.clone(),
        why,
    };
    tree::check_rel(&r.path).map_err(bad)?;
    if settings.excluded(&r.path) {
        return Ok(true);
    }
    if r.deleted {
        return remove(root, &r.path, dirs).map(|()| true);
    }
    let Some(dir) = parent_dir(root, &r.path, true)? else {
        return Ok(true);
    };
    let p = tree::join(root, &r.path);
    let name = r.path.rsplit('/').next().unwrap_or(&r.path);
    let existing = match std::fs::symlink_metadata(&p) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(SyncError::io(&p, e)),
    };
    let io = |e: std::io::Error| SyncError::io(&p, e);
    match r.kind {
        Kind::Dir => {
            match &existing {
                Some(m) if m.file_type().is_dir() => {}
                Some(_) => {
                    std::fs::remove_file(&p).map_err(io)?;
                    std::fs::create_dir(&p).map_err(io)?;
                }
                None => std::fs::create_dir(&p).map_err(io)?,
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(r.mode)).map_err(io)?;
            if is_root_user() {
                std::os::unix::fs::lchown(&p, Some(r.uid), Some(r.gid)).map_err(io)?;
            }
            if existing.is_none() {
                dirs.insert(dir);
            }
        }
        Kind::Symlink => {
            let target = r.target.clone().unwrap_or_default();
            tree::symlink_contained(root, &r.path, &target).map_err(bad)?;
            if let Some(m) = &existing {
                if m.file_type().is_symlink()
                    && std::fs::read_link(&p).ok().as_deref() == Some(Path::new(&target))
                {
                    return Ok(true);
                }
                if m.file_type().is_dir() {
                    std::fs::remove_dir_all(&p).map_err(io)?;
                }
            }
            let tmp = tmp_path(&dir, name);
            std::os::unix::fs::symlink(&target, &tmp).map_err(|e| SyncError::io(&tmp, e))?;
            if is_root_user() {
                let _ = std::os::unix::fs::lchown(&tmp, Some(r.uid), Some(r.gid));
            }
            if let Err(e) = std::fs::rename(&tmp, &p) {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(e));
            }
            dirs.insert(dir);
        }
        Kind::File => {
            let want = r.hash.clone().unwrap_or_default();
            let same = existing.as_ref().is_some_and(|m| {
                m.file_type().is_file()
                    && m.len() == r.size
                    && tree::hash_file(&p).is_ok_and(|(h, _)| h[..] == want[..])
            });
            if same {
                let f = tree::open_nofollow(&p).map_err(io)?;
                set_meta(&f, r).map_err(io)?;
                return Ok(true);
            }
            let tmp = tmp_path(&dir, name);
            if let Err(e) = write_tmp(conn, r, &tmp) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            staged.push(Staged {
                i,
                seq: r.seq,
                changed_at_us: r.changed_at_us,
                path: r.path.clone(),
                root: root.clone(),
                tmp,
                dest: p.clone(),
                dir,
                size: r.size,
            });
            return Ok(false);
        }
    }
    Ok(true)
}

fn set_meta(f: &std::fs::File, r: &Row) -> std::io::Result<()> {
    if is_root_user() {
        std::os::unix::fs::fchown(f, Some(r.uid), Some(r.gid))?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(r.mode))?;
    let t = if r.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(r.mtime_ns as u64)
    } else {
        UNIX_EPOCH
    };
    f.set_modified(t)
}

fn write_tmp(conn: &rusqlite::Connection, r: &Row, tmp: &Path) -> Result<(), SyncError> {
    let io = |e: std::io::Error| SyncError::io(tmp, e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(io)?;
    let mut h = blake3::Hasher::new();
    let mut n = 0u64;
    table::each_chunk(conn, &r.root, &r.path, r.chunks_seq, |c| {
        f.write_all(c).map_err(io)?;
        h.update(c);
        n += c.len() as u64;
        Ok(())
    })?;
    if r.hash.as_deref() != Some(&h.finalize().as_bytes()[..]) || n != r.size {
        return Err(SyncError::BadRow {
            root: r.root.clone(),
            path: r.path.clone(),
            why: "its chunks do not match its hash".into(),
        });
    }
    set_meta(&f, r).map_err(io)?;
    Ok(())
}

/// The standby's loop: reconcile the whole tree, then apply new rows as
/// replay brings them (`applied_lsn` is polled), retrying failures every
/// second, until `stop`.
pub fn run(
    settings: &Settings,
    db: &dyn Db,
    status: &SyncStatus,
    stop: &AtomicBool,
    applied_lsn: &dyn Fn() -> u64,
) {
    let mut m = Materializer::new(settings, db, status);
    for i in 0..settings.roots.len() {
        status.update(i, |v| v.state = "materializing".into());
    }
    let mut reconciled = false;
    let mut last_lsn = u64::MAX;
    let mut next_try = Instant::now();
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let lsn = applied_lsn();
        let now = Instant::now();
        let retry = failing && now >= next_try;
        if lsn == last_lsn && !retry && reconciled && !m.needs_reconcile {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        last_lsn = lsn;
        // Most replay advances are the database's own commits: look
        // whether a row came before reading any.
        if reconciled
            && !retry
            && !m.needs_reconcile
            && db.latest_seq().is_ok_and(|s| s <= m.applied)
        {
            continue;
        }
        let r = if reconciled && !m.needs_reconcile {
            m.catch_up(stop)
        } else {
            m.reconcile(stop)
        };
        match r {
            Ok(0) => {
                if !reconciled {
                    info!(seq = m.applied, "file sync: the disk matches the table");
                }
                reconciled = true;
                failing = false;
            }
            Ok(_) => {
                failing = true;
                next_try = Instant::now() + Duration::from_secs(1);
            }
            Err(SyncError::Stopped) => return,
            Err(e) => {
                warn!(error = %e, "file sync: materializing failed; retrying");
                status.error(None, &describe(&e));
                failing = true;
                next_try = Instant::now() + Duration::from_secs(1);
                if !reconciled {
                    sleep_unless(stop, Duration::from_secs(1));
                }
            }
        }
    }
}

/// Materialize the table onto the disk once, completely (a node that
/// becomes primary, before its disk becomes the source), retrying until it
/// succeeds or `stop`. False if stopped.
pub fn settle(settings: &Settings, db: &dyn Db, status: &SyncStatus, stop: &AtomicBool) -> bool {
    let mut m = Materializer::new(settings, db, status);
    for i in 0..settings.roots.len() {
        status.update(i, |v| v.state = "materializing before scanning".into());
    }
    loop {
        match m.reconcile(stop) {
            Ok(0) => return true,
            Ok(n) => warn!(
                failed = n,
                "file sync: the table is not on disk yet; retrying before scanning"
            ),
            Err(SyncError::Stopped) => return false,
            Err(e) => {
                warn!(error = %e, "file sync: materializing failed; retrying before scanning");
                status.error(None, &describe(&e));
            }
        }
        if !sleep_unless(stop, Duration::from_secs(1)) {
            return false;
        }
    }
}

/// Sleep unless stopped; false if stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !stop.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::tests::{settings, TestDb};
    use crate::scan::Scanner;

    /// Scan `a` into a table, materialize it onto `b`; verify both.
    fn sync(a: &Path, b: &Path, db: &TestDb) {
        let stop = AtomicBool::new(false);
        let sa = settings(&[a]);
        let st = SyncStatus::new(&sa.roots);
        let mut sc = Scanner::load(&sa, db, &st, &stop).unwrap();
        sc.sync(0, &[String::new()]).unwrap();
        let sb = settings(&[b]);
        let mut m = Materializer::new(&sb, db, &st);
        assert_eq!(m.reconcile(&stop).unwrap(), 0, "{:?}", st.views());
        assert_eq!(crate::verify::verify(&sa, db).unwrap().0, vec![]);
        assert_eq!(crate::verify::verify(&sb, db).unwrap().0, vec![]);
    }

    #[test]
    fn a_tree_round_trips_and_extra_files_on_the_standby_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(a.join("etc/empty")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::set_permissions(a.join("etc/hosts"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::os::unix::fs::symlink("etc/hosts", a.join("hosts")).unwrap();
        std::fs::write(b.join("stale"), b"old").unwrap();
        std::fs::write(b.join("keep.swp"), b"excluded: left alone").unwrap();
        let db = TestDb::new(&d.path().join("db"));
        sync(&a, &b, &db);
        assert_eq!(
            std::fs::read(b.join("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(
            std::fs::read_link(b.join("hosts")).unwrap(),
            Path::new("etc/hosts")
        );
        assert!(b.join("etc/empty").is_dir());
        assert!(!b.join("stale").exists());
        assert!(b.join("keep.swp").exists());
        // Modify, rename, delete; then again.
        std::fs::write(a.join("etc/hosts"), b"changed").unwrap();
        std::fs::rename(a.join("etc"), a.join("etc2")).unwrap();
        std::fs::remove_file(a.join("hosts")).unwrap();
        sync(&a, &b, &db);
        assert!(!b.join("etc").exists());
        assert_eq!(std::fs::read(b.join("etc2/hosts")).unwrap(), b"changed");
        assert_eq!(
            std::fs::metadata(b.join("etc2/hosts"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
    }

    #[test]
    fn a_root_the_primary_never_wrote_is_left_alone_until_it_does() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("cert.pem"), b"the standby's own").unwrap();
        let db = TestDb::new(&d.path().join("db"));
        let stop = AtomicBool::new(false);
        let sb = settings(&[&b]);
        let st = SyncStatus::new(&sb.roots);
        let mut m = Materializer::new(&sb, &db, &st);
        assert_eq!(m.reconcile(&stop).unwrap(), 0);
        assert!(
            b.join("cert.pem").exists(),
            "no row of the root yet: not emptied"
        );
        // The primary's first scan of the root: now it is mirrored.
        std::fs::write(a.join("new.pem"), b"from the primary").unwrap();
        let sa = settings(&[&a]);
        Scanner::load(&sa, &db, &st, &stop)
            .unwrap()
            .sync(0, &[String::new()])
            .unwrap();
        m.catch_up(&stop).unwrap();
        assert!(m.needs_reconcile);
        m.reconcile(&stop).unwrap();
        assert!(!b.join("cert.pem").exists());
        assert_eq!(
            std::fs::read(b.join("new.pem")).unwrap(),
            b"from the primary"
        );
    }

    #[test]
    fn nothing_is_written_through_a_symlink_on_the_standby() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, outside) = (
            d.path().join("a"),
            d.path().join("b"),
            d.path().join("outside"),
        );
        std::fs::create_dir_all(a.join("dir")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(a.join("dir/f"), b"data").unwrap();
        // On the standby `dir` is a symlink leading out of the root.
        std::os::unix::fs::symlink(&outside, b.join("dir")).unwrap();
        let db = TestDb::new(&d.path().join("db"));
        let stop = AtomicBool::new(false);
        let sa = settings(&[&a]);
        let st = SyncStatus::new(&sa.roots);
        Scanner::load(&sa, &db, &st, &stop)
            .unwrap()
            .sync(0, &[String::new()])
            .unwrap();
        // The standby's root is a symlink to its directory: allowed.
        let b_link = d.path().join("b-link");
        std::os::unix::fs::symlink(&b, &b_link).unwrap();
        let sb = settings(&[&b_link]);
        let mut m = Materializer::new(&sb, &db, &st);
        // The directory row replaces the link (it is removed, not followed)…
        m.reconcile(&stop).unwrap();
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing written outside"
        );
        assert_eq!(std::fs::read(b.join("dir/f")).unwrap(), b"data");
        // …and a row under a parent that is a symlink is refused.
        let row = table::live_rows(&db.conn.lock().unwrap(), "r0")
            .unwrap()
            .into_iter()
            .find(|r| r.path == "dir/f")
            .unwrap();
        std::fs::remove_dir_all(b.join("dir")).unwrap();
        std::os::unix::fs::symlink(&outside, b.join("dir")).unwrap();
        let e = apply_row(
            &db.conn.lock().unwrap(),
            &sb,
            0,
            &row,
            &mut BTreeSet::new(),
            &mut vec![],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // A row whose path climbs out is refused.
        let mut evil = row.clone();
        evil.path = "../outside/x".into();
        assert!(apply_row(
            &db.conn.lock().unwrap(),
            &sb,
            0,
            &evil,
            &mut BTreeSet::new(),
            &mut vec![]
        )
        .is_err());
        let mut link = row;
        link.kind = Kind::Symlink;
        link.path = "l".into();
        link.target = Some("../../etc".into());
        assert!(apply_row(
            &db.conn.lock().unwrap(),
            &sb,
            0,
            &link,
            &mut BTreeSet::new(),
            &mut vec![]
        )
        .is_err());
        assert!(std::fs::symlink_metadata(b.join("l")).is_err());
    }

    #[test]
    fn verify_names_what_differs() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("f"), b"one").unwrap();
        let db = TestDb::new(&d.path().join("db"));
        sync(&a, &b, &db);
        std::fs::write(b.join("f"), b"two").unwrap();
        std::fs::write(b.join("g"), b"new").unwrap();
        let (bad, _) = crate::verify::verify(&settings(&[&b]), &db).unwrap();
        let got: Vec<(String, String)> = bad.into_iter().map(|m| (m.path, m.why)).collect();
        assert_eq!(
            got,
            [
                ("f".to_string(), "content differs".to_string()),
                ("g".into(), "not in the table".into())
            ]
        );
    }
}
