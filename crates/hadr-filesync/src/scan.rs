//! The primary side: find what changed on disk and write it into the tables.
//!
//! [`Scanner`] keeps the table's live rows in memory and compares a walk of
//! (part of) a root with them: size, mtime, mode and owner first, the
//! content hash only when those differ. [`run`] drives it from inotify
//! events (debounced) and a periodic full scan. Nothing is written when
//! nothing changed, so an idle tree costs no commits.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::info;

use crate::table::{self, Row};
use crate::tree::{self, DiskEntry, Kind};
use crate::{Db, Settings, SyncError, SyncStatus, CHUNK, ONE_TXN_MAX};

/// Most rows in one transaction.
const BATCH_ROWS: usize = 2000;
/// A large file modified this recently is probably still being written.
pub(crate) const SETTLE: Duration = Duration::from_millis(300);

/// One change to write.
enum Op {
    /// The path is gone: a tombstone.
    Tombstone(Row),
    /// Metadata only (the content, if any, is unchanged).
    Meta(Row),
    /// New content, stored with the row.
    Content(Row, Vec<u8>),
}

/// What a call to [`Scanner::sync`] left for later.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows written.
    pub written: usize,
    /// Paths to look at again shortly (large files still being written).
    pub retry: Vec<(usize, String)>,
}

/// The primary's view of the tables and the disk.
pub struct Scanner<'a> {
    settings: &'a Settings,
    db: &'a dyn Db,
    status: &'a SyncStatus,
    stop: &'a AtomicBool,
    /// Live rows per root (index as in `settings.roots`).
    index: Vec<BTreeMap<String, Row>>,
    next_seq: i64,
    have_schema: bool,
}

impl<'a> Scanner<'a> {
    /// Load the live rows, and clear chunks a cut-short upload left behind.
    pub fn load(
        settings: &'a Settings,
        db: &'a dyn Db,
        status: &'a SyncStatus,
        stop: &'a AtomicBool,
    ) -> Result<Scanner<'a>, SyncError> {
        let mut index = vec![BTreeMap::new(); settings.roots.len()];
        let (mut max, mut have_schema, mut orphans) = (0, false, false);
        db.read(&mut |conn| {
            have_schema = table::exists(conn)?;
            max = table::max_seq(conn)?;
            orphans = table::has_orphan_chunks(conn)?;
            for (i, r) in settings.roots.iter().enumerate() {
                index[i] = table::live_rows(conn, &r.name)?
                    .into_iter()
                    .map(|row| (row.path.clone(), row))
                    .collect();
            }
            Ok(())
        })?;
        if orphans {
            db.write(&mut |tx| {
                let n = table::delete_orphan_chunks(tx)?;
                info!(
                    chunks = n,
                    "file sync: removed the chunks of an upload cut short"
                );
                Ok(())
            })?;
        }
        let s = Scanner {
            settings,
            db,
            status,
            stop,
            index,
            next_seq: max + 1,
            have_schema,
        };
        s.publish();
        Ok(s)
    }

    fn publish(&self) {
        for (i, idx) in self.index.iter().enumerate() {
            let (files, bytes) = idx
                .values()
                .filter(|r| r.kind == Kind::File)
                .fold((0, 0), |(n, b), r| (n + 1, b + r.size));
            self.status.update(i, |v| {
                v.files = files;
                v.bytes = bytes;
                v.last_seq_written = self.next_seq - 1;
            });
        }
    }

    /// Bring the table in line with the disk at and under each of `unders`
    /// (relative paths; "" = the whole root) of root `i`.
    pub fn sync(&mut self, i: usize, unders: &[String]) -> Result<Outcome, SyncError> {
        let root = self.settings.roots[i].path.clone();
        let mut out = Outcome::default();
        let mut batch: Vec<Op> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut large: Vec<(String, DiskEntry, [u8; 32])> = Vec::new();
        for under in unders {
            if self.stop.load(Ordering::Relaxed) {
                return Err(SyncError::Stopped);
            }
            let walk = tree::walk(&root, under, self.settings)?;
            let mut problems = walk.problems.clone();
            // A path with a problem keeps what the table has (standbys keep
            // its last good version); one that is gone gets a tombstone.
            let kept = |p: &str| {
                walk.problems.keys().any(|k| {
                    p == k
                        || (p.len() > k.len()
                            && p.starts_with(k.as_str())
                            && p.as_bytes()[k.len()] == b'/')
                })
            };
            let prefix = format!("{under}/");
            let mut gone: Vec<Row> = self.index[i]
                .range(under.clone()..)
                .take_while(|(p, _)| under.is_empty() || *p == under || p.starts_with(&prefix))
                .filter(|(p, _)| !walk.entries.contains_key(*p) && !kept(p))
                .map(|(_, r)| r.clone())
                .collect();
            gone.reverse();
            batch.extend(gone.into_iter().map(Op::Tombstone));
            let now_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            for (rel, e) in &walk.entries {
                let old = self.index[i].get(rel);
                let p = tree::join(&root, rel);
                match self.diff(i, rel, &p, e, old, now_ns) {
                    Ok(Diff::Same) => {}
                    Ok(Diff::Op(op)) => {
                        if let Op::Content(_, d) = &op {
                            batch_bytes += d.len() as u64;
                        }
                        batch.push(op);
                    }
                    Ok(Diff::Large(hash)) => large.push((rel.clone(), e.clone(), hash)),
                    Ok(Diff::Later) => out.retry.push((i, rel.clone())),
                    Err(why) => {
                        problems.insert(rel.clone(), why);
                    }
                }
                if batch.len() >= BATCH_ROWS || batch_bytes >= ONE_TXN_MAX {
                    out.written += self.flush(i, std::mem::take(&mut batch))?;
                    batch_bytes = 0;
                }
            }
            self.status.set_problems(i, under, &problems);
        }
        out.written += self.flush(i, batch)?;
        for (rel, e, hash) in large {
            match self.upload(i, &rel, &e, hash)? {
                true => out.written += 1,
                false => out.retry.push((i, rel)),
            }
        }
        self.publish();
        Ok(out)
    }

    /// Compare one disk entry with its row.
    fn diff(
        &self,
        i: usize,
        rel: &str,
        p: &Path,
        e: &DiskEntry,
        old: Option<&Row>,
        now_ns: i64,
    ) -> Result<Diff, String> {
        let name = &self.settings.roots[i].name;
        let mut row = Row {
            root: name.clone(),
            path: rel.to_string(),
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_ns: e.mtime_ns,
            size: e.size,
            hash: None,
            target: e.target.clone(),
            deleted: false,
            seq: 0,
            chunks_seq: 0,
            changed_at_us: 0,
        };
        let same_kind = old.filter(|o| o.kind == e.kind);
        match e.kind {
            Kind::Dir => {
                row.mtime_ns = 0;
                match same_kind {
                    Some(o) if o.mode == e.mode && o.uid == e.uid && o.gid == e.gid => {
                        Ok(Diff::Same)
                    }
                    _ => Ok(Diff::Op(Op::Meta(row))),
                }
            }
            Kind::Symlink => {
                row.mtime_ns = 0;
                match same_kind {
                    Some(o) if o.target == e.target && o.uid == e.uid && o.gid == e.gid => {
                        Ok(Diff::Same)
                    }
                    _ => Ok(Diff::Op(Op::Meta(row))),
                }
            }
            Kind::File => {
                if let Some(o) = same_kind {
                    if o.entry() == *e {
                        return Ok(Diff::Same);
                    }
                }
                if e.size > ONE_TXN_MAX {
                    if now_ns.saturating_sub(e.mtime_ns) < SETTLE.as_nanos() as i64 {
                        return Ok(Diff::Later);
                    }
                    let (h, _) = tree::hash_file(p).map_err(|e| format!("unreadable: {e}"))?;
                    return Ok(match same_kind {
                        Some(o) if o.hash.as_deref() == Some(&h[..]) => {
                            row.hash = o.hash.clone();
                            row.size = o.size;
                            row.chunks_seq = o.chunks_seq;
                            Diff::Op(Op::Meta(row))
                        }
                        _ => Diff::Large(h),
                    });
                }
                let data = tree::read_small(p).map_err(|e| format!("unreadable: {e}"))?;
                if data.len() as u64 > ONE_TXN_MAX {
                    return Ok(Diff::Later);
                }
                let h = blake3::hash(&data);
                row.size = data.len() as u64;
                row.hash = Some(h.as_bytes().to_vec());
                Ok(match same_kind {
                    Some(o) if o.hash == row.hash => {
                        row.chunks_seq = o.chunks_seq;
                        Diff::Op(Op::Meta(row))
                    }
                    _ => Diff::Op(Op::Content(row, data)),
                })
            }
        }
    }

    /// Write a batch in one transaction; the index follows only once it committed.
    fn flush(&mut self, i: usize, batch: Vec<Op>) -> Result<usize, SyncError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut rows: Vec<Row> = Vec::with_capacity(batch.len());
        let (have_schema, first) = (self.have_schema, self.next_seq);
        let index = &self.index[i];
        let mut bytes = 0u64;
        self.db.write(&mut |tx| {
            rows.clear();
            bytes = 0;
            if !have_schema {
                table::ensure_schema(tx)?;
            }
            let now = crate::now_us();
            for (seq, op) in (first..).zip(&batch) {
                let mut row = match op {
                    Op::Tombstone(r) | Op::Meta(r) | Op::Content(r, _) => r.clone(),
                };
                row.seq = seq;
                row.changed_at_us = now;
                let old = index.get(&row.path);
                let old_chunks = old.filter(|o| o.kind == Kind::File).map(|o| o.chunks_seq);
                match op {
                    Op::Tombstone(_) => {
                        row.deleted = true;
                        row.hash = None;
                        row.chunks_seq = 0;
                        if let Some(c) = old_chunks {
                            table::delete_chunks(tx, &row.root, &row.path, c)?;
                        }
                    }
                    Op::Meta(_) => {}
                    Op::Content(_, data) => {
                        row.chunks_seq = seq;
                        for (k, c) in data.chunks(CHUNK).enumerate() {
                            table::put_chunk(tx, &row.root, &row.path, seq, k as i64, c)?;
                        }
                        bytes += data.len() as u64;
                        if let Some(c) = old_chunks {
                            table::delete_chunks(tx, &row.root, &row.path, c)?;
                        }
                    }
                }
                table::put(tx, &row)?;
                rows.push(row);
            }
            Ok(())
        })?;
        self.have_schema = true;
        self.next_seq = first + rows.len() as i64;
        self.status.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        let n = rows.len();
        for r in rows {
            if r.deleted {
                self.index[i].remove(&r.path);
            } else {
                self.index[i].insert(r.path.clone(), r);
            }
        }
        Ok(n)
    }

    /// Store a large file over several transactions: its chunks under a new
    /// `chunks_seq` first, then the row switched to them (the old chunks
    /// deleted) in a last one, so that no transaction holds the write lock
    /// long and a standby never sees half a file. False: the file changed
    /// while it was read (try again later).
    fn upload(
        &mut self,
        i: usize,
        rel: &str,
        e: &DiskEntry,
        hash: [u8; 32],
    ) -> Result<bool, SyncError> {
        let root = &self.settings.roots[i];
        let p = tree::join(&root.path, rel);
        if !self.have_schema {
            self.db.write(&mut |tx| table::ensure_schema(tx))?;
            self.have_schema = true;
        }
        let cseq = self.next_seq;
        self.next_seq += 1;
        let mut f = match tree::open_nofollow(&p) {
            Ok(f) => f,
            Err(err) => {
                let mut m = BTreeMap::new();
                m.insert(rel.to_string(), format!("unreadable: {err}"));
                self.status.set_problems(i, rel, &m);
                return Ok(true);
            }
        };
        let mut h = blake3::Hasher::new();
        let (mut idx, mut size) = (0i64, 0u64);
        let mut done = false;
        let mut buf = vec![0u8; CHUNK];
        let per_txn = (ONE_TXN_MAX as usize / CHUNK).max(1);
        while !done {
            if self.stop.load(Ordering::Relaxed) {
                return Err(SyncError::Stopped);
            }
            let mut group: Vec<Vec<u8>> = Vec::new();
            while group.len() < per_txn {
                let n = read_full(&mut f, &mut buf).map_err(|err| SyncError::io(&p, err))?;
                if n == 0 {
                    done = true;
                    break;
                }
                h.update(&buf[..n]);
                size += n as u64;
                group.push(buf[..n].to_vec());
                if n < CHUNK {
                    done = true;
                    break;
                }
            }
            if group.is_empty() {
                break;
            }
            let first = idx;
            self.db.write(&mut |tx| {
                for (k, c) in group.iter().enumerate() {
                    table::put_chunk(tx, &root.name, rel, cseq, first + k as i64, c)?;
                }
                Ok(())
            })?;
            idx += group.len() as i64;
        }
        let after = std::fs::symlink_metadata(&p).ok();
        let unchanged = h.finalize().as_bytes() == &hash
            && after.as_ref().is_some_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.len() == size && m.mtime() * 1_000_000_000 + m.mtime_nsec() == e.mtime_ns
            });
        if !unchanged {
            self.db
                .write(&mut |tx| table::delete_chunks(tx, &root.name, rel, cseq))?;
            return Ok(false);
        }
        let seq = self.next_seq;
        let old_chunks = self.index[i]
            .get(rel)
            .filter(|o| o.kind == Kind::File)
            .map(|o| o.chunks_seq);
        let row = Row {
            root: root.name.clone(),
            path: rel.to_string(),
            kind: Kind::File,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_ns: e.mtime_ns,
            size,
            hash: Some(hash.to_vec()),
            target: None,
            deleted: false,
            seq,
            chunks_seq: cseq,
            changed_at_us: 0,
        };
        let mut written = row.clone();
        self.db.write(&mut |tx| {
            written.changed_at_us = crate::now_us();
            table::put(tx, &written)?;
            if let Some(c) = old_chunks {
                table::delete_chunks(tx, &root.name, rel, c)?;
            }
            Ok(())
        })?;
        self.next_seq += 1;
        self.status.bytes_total.fetch_add(size, Ordering::Relaxed);
        self.index[i].insert(rel.to_string(), written);
        Ok(true)
    }
}

enum Diff {
    Same,
    Op(Op),
    Large([u8; 32]),
    Later,
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A database on a file, writable unless `refuse` is set.
    pub struct TestDb {
        pub conn: Mutex<rusqlite::Connection>,
        pub writes: std::sync::atomic::AtomicUsize,
    }

    impl TestDb {
        pub fn new(path: &Path) -> TestDb {
            TestDb {
                conn: Mutex::new(rusqlite::Connection::open(path).unwrap()),
                writes: Default::default(),
            }
        }
    }

    impl Db for TestDb {
        fn write(
            &self,
            f: &mut dyn FnMut(&rusqlite::Transaction<'_>) -> Result<(), SyncError>,
        ) -> Result<(), SyncError> {
            let mut c = self.conn.lock().unwrap();
            let tx = c.transaction()?;
            f(&tx)?;
            tx.commit()?;
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn read(
            &self,
            f: &mut dyn FnMut(&rusqlite::Connection) -> Result<(), SyncError>,
        ) -> Result<(), SyncError> {
            let c = self.conn.lock().unwrap();
            f(&c)
        }
        fn refusal(&self) -> Option<String> {
            None
        }
    }

    pub fn settings(roots: &[&Path]) -> Settings {
        Settings {
            roots: roots
                .iter()
                .enumerate()
                .map(|(i, p)| crate::Root {
                    name: format!("r{i}"),
                    path: p.to_path_buf(),
                })
                .collect(),
            exclude: crate::glob_set(&["*.swp".to_string()]).unwrap(),
            max_file_size: 64 << 20,
            scan_interval: Duration::from_secs(30),
        }
    }

    fn live(db: &TestDb) -> BTreeMap<String, Row> {
        let c = db.conn.lock().unwrap();
        table::live_rows(&c, "r0")
            .unwrap()
            .into_iter()
            .map(|r| (r.path.clone(), r))
            .collect()
    }

    #[test]
    fn a_scan_writes_changes_only_and_tombstones_what_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"hello").unwrap();
        std::fs::write(root.join("x.swp"), b"ignored").unwrap();
        let db = TestDb::new(&d.path().join("db"));
        let (st, stop) = (
            SyncStatus::new(&settings(&[&root]).roots),
            AtomicBool::new(false),
        );
        let s = settings(&[&root]);
        let mut sc = Scanner::load(&s, &db, &st, &stop).unwrap();
        assert_eq!(sc.sync(0, &[String::new()]).unwrap().written, 3);
        let rows = live(&db);
        assert_eq!(rows.keys().collect::<Vec<_>>(), ["a", "a/b", "a/b/f"]);
        assert_eq!(
            rows["a/b/f"].hash.as_deref(),
            Some(&blake3::hash(b"hello").as_bytes()[..])
        );
        // Nothing changed: no transaction at all.
        let before = db.writes.load(Ordering::SeqCst);
        assert_eq!(sc.sync(0, &[String::new()]).unwrap().written, 0);
        assert_eq!(db.writes.load(Ordering::SeqCst), before);
        // Mode change: metadata only, same chunks.
        let old = rows["a/b/f"].clone();
        std::fs::set_permissions(
            root.join("a/b/f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(sc.sync(0, &["a/b/f".into()]).unwrap().written, 1);
        let now = live(&db);
        assert_eq!(now["a/b/f"].mode, 0o600);
        assert_eq!(now["a/b/f"].chunks_seq, old.chunks_seq);
        assert!(now["a/b/f"].seq > old.seq);
        // A directory removed: tombstones for it and everything under it.
        std::fs::remove_dir_all(root.join("a/b")).unwrap();
        assert_eq!(sc.sync(0, &["a/b".into()]).unwrap().written, 2);
        assert_eq!(live(&db).keys().collect::<Vec<_>>(), ["a"]);
        let c = db.conn.lock().unwrap();
        let chunks: i64 = c
            .query_row("SELECT count(*) FROM _hadr_sync_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(chunks, 0, "a tombstone deletes the content");
    }

    #[test]
    fn a_large_file_is_stored_in_chunks_and_reloads() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let data: Vec<u8> = (0..(9u32 << 20) + 77)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(root.join("big"), &data).unwrap();
        // Old enough not to look like a file still being written.
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("big"))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(5))
            .unwrap();
        let db = TestDb::new(&d.path().join("db"));
        let s = settings(&[&root]);
        let (st, stop) = (SyncStatus::new(&s.roots), AtomicBool::new(false));
        let mut sc = Scanner::load(&s, &db, &st, &stop).unwrap();
        assert_eq!(sc.sync(0, &[String::new()]).unwrap().written, 1);
        assert!(
            db.writes.load(Ordering::SeqCst) >= 3,
            "several transactions"
        );
        let row = live(&db)["big"].clone();
        let mut back = Vec::new();
        table::each_chunk(&db.conn.lock().unwrap(), "r0", "big", row.chunks_seq, |c| {
            back.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert!(back == data);
        // A new scanner (another run) sees it as unchanged.
        let mut sc = Scanner::load(&s, &db, &st, &stop).unwrap();
        assert_eq!(sc.sync(0, &[String::new()]).unwrap().written, 0);
    }
}
