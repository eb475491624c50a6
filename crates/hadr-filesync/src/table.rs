//! The two internal tables and their rows.
//!
//! `_hadr_sync_files` has one row per path and root, live or a tombstone
//! (`deleted = 1`, so that standbys delete). `seq` is a counter over both
//! tables, assigned in commit order by the primary's one scanner: a standby
//! asks for every row with `seq` above the last it applied. The content is
//! in `_hadr_sync_chunks` under the row's `chunks_seq` (a metadata-only
//! change keeps its chunks; a large file's chunks are written under a new
//! `chunks_seq` in several transactions before its row switches to them).

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::tree::{DiskEntry, Kind};
use crate::SyncError;

/// The metadata table.
pub const FILES: &str = "_hadr_sync_files";
/// The content table.
pub const CHUNKS: &str = "_hadr_sync_chunks";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _hadr_sync_files(
  root TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, hash BLOB, target TEXT,
  deleted INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL,
  chunks_seq INTEGER NOT NULL DEFAULT 0, changed_at_us INTEGER NOT NULL,
  PRIMARY KEY(root, path));
CREATE INDEX IF NOT EXISTS _hadr_sync_files_seq ON _hadr_sync_files(seq);
CREATE TABLE IF NOT EXISTS _hadr_sync_chunks(
  root TEXT NOT NULL, path TEXT NOT NULL, seq INTEGER NOT NULL,
  idx INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY(root, path, seq, idx));
";

/// Create the tables if they are not there (inside the caller's transaction).
pub fn ensure_schema(tx: &Transaction<'_>) -> Result<(), SyncError> {
    tx.execute_batch(SCHEMA)?;
    Ok(())
}

/// Whether the tables exist.
pub fn exists(conn: &Connection) -> Result<bool, SyncError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [FILES],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// One row of `_hadr_sync_files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Root name.
    pub root: String,
    /// Relative path.
    pub path: String,
    /// Kind (for a tombstone: what it was).
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Size (files).
    pub size: u64,
    /// blake3 of the content (files).
    pub hash: Option<Vec<u8>>,
    /// Link target (symlinks).
    pub target: Option<String>,
    /// A tombstone.
    pub deleted: bool,
    /// Change sequence.
    pub seq: i64,
    /// Whose chunks hold the content.
    pub chunks_seq: i64,
    /// When the primary wrote this change (µs since the epoch).
    pub changed_at_us: i64,
}

impl Row {
    /// The entry this row describes, to compare with the disk.
    pub fn entry(&self) -> DiskEntry {
        DiskEntry {
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: self.mtime_ns,
            size: self.size,
            target: self.target.clone(),
        }
    }
}

const COLS: &str =
    "root, path, kind, mode, uid, gid, mtime_ns, size, hash, target, deleted, seq, chunks_seq, changed_at_us";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let kind: String = r.get(2)?;
    Ok(Row {
        root: r.get(0)?,
        path: r.get(1)?,
        // An unknown kind is read as a file: the materializer then checks
        // its hash against its chunks and refuses it if they disagree.
        kind: Kind::parse(&kind).unwrap_or(Kind::File),
        mode: r.get::<_, i64>(3)? as u32,
        uid: r.get::<_, i64>(4)? as u32,
        gid: r.get::<_, i64>(5)? as u32,
        mtime_ns: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        hash: r.get(8)?,
        target: r.get(9)?,
        deleted: r.get::<_, i64>(10)? != 0,
        seq: r.get(11)?,
        chunks_seq: r.get(12)?,
        changed_at_us: r.get(13)?,
    })
}

/// Every live row of `root`.
pub fn live_rows(conn: &Connection, root: &str) -> Result<Vec<Row>, SyncError> {
    if !exists(conn)? {
        return Ok(vec![]);
    }
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM {FILES} WHERE root = ?1 AND deleted = 0"
    ))?;
    let v = st
        .query_map([root], row_of)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Rows (live and tombstones) of any root with `seq > after`, in seq order, at most `limit`.
pub fn rows_after(conn: &Connection, after: i64, limit: usize) -> Result<Vec<Row>, SyncError> {
    if !exists(conn)? {
        return Ok(vec![]);
    }
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM {FILES} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let v = st
        .query_map(params![after, limit as i64], row_of)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// The highest seq used in either table (0: none).
pub fn max_seq(conn: &Connection) -> Result<i64, SyncError> {
    if !exists(conn)? {
        return Ok(0);
    }
    let a: Option<i64> =
        conn.query_row(&format!("SELECT max(seq) FROM {FILES}"), [], |r| r.get(0))?;
    let b: Option<i64> =
        conn.query_row(&format!("SELECT max(seq) FROM {CHUNKS}"), [], |r| r.get(0))?;
    Ok(a.unwrap_or(0).max(b.unwrap_or(0)))
}

/// Whether the primary ever wrote a row (live or a tombstone) of `root`.
pub fn root_known(conn: &Connection, root: &str) -> Result<bool, SyncError> {
    if !exists(conn)? {
        return Ok(false);
    }
    Ok(conn
        .query_row(
            &format!("SELECT 1 FROM {FILES} WHERE root = ?1 LIMIT 1"),
            [root],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Live files of `root` and their bytes.
pub fn file_totals(conn: &Connection, root: &str) -> Result<(u64, u64), SyncError> {
    let (n, b): (i64, Option<i64>) = conn.query_row(
        &format!("SELECT count(*), sum(size) FROM {FILES} WHERE root = ?1 AND deleted = 0 AND kind = 'file'"),
        [root],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((n as u64, b.unwrap_or(0) as u64))
}

/// The highest seq of a row (0: none); indexed, so cheap to ask often.
pub fn max_row_seq(conn: &Connection) -> Result<i64, SyncError> {
    if !exists(conn)? {
        return Ok(0);
    }
    let a: Option<i64> =
        conn.query_row(&format!("SELECT max(seq) FROM {FILES}"), [], |r| r.get(0))?;
    Ok(a.unwrap_or(0))
}

/// Whether chunks exist that no live row points at (a large upload cut
/// short by a crash or a role change).
pub fn has_orphan_chunks(conn: &Connection) -> Result<bool, SyncError> {
    if !exists(conn)? {
        return Ok(false);
    }
    Ok(conn
        .query_row(&ORPHANS.replace("DELETE", "SELECT 1"), [], |_| Ok(()))
        .optional()?
        .is_some())
}

const ORPHANS: &str = "DELETE FROM _hadr_sync_chunks AS c WHERE NOT EXISTS (SELECT 1 FROM _hadr_sync_files f WHERE f.root = c.root AND f.path = c.path AND f.chunks_seq = c.seq AND f.deleted = 0)";

/// Delete chunks no live row points at.
pub fn delete_orphan_chunks(tx: &Transaction<'_>) -> Result<usize, SyncError> {
    Ok(tx.execute(ORPHANS, [])?)
}

/// Insert or replace a row.
pub fn put(tx: &Transaction<'_>, r: &Row) -> Result<(), SyncError> {
    let mut st = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {FILES}({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
    ))?;
    st.execute(params![
        r.root,
        r.path,
        r.kind.as_str(),
        r.mode as i64,
        r.uid as i64,
        r.gid as i64,
        r.mtime_ns,
        r.size as i64,
        r.hash,
        r.target,
        r.deleted as i64,
        r.seq,
        r.chunks_seq,
        r.changed_at_us
    ])?;
    Ok(())
}

/// Store one chunk.
pub fn put_chunk(
    tx: &Transaction<'_>,
    root: &str,
    path: &str,
    seq: i64,
    idx: i64,
    data: &[u8],
) -> Result<(), SyncError> {
    let mut st = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {CHUNKS}(root, path, seq, idx, data) VALUES (?1,?2,?3,?4,?5)"
    ))?;
    st.execute(params![root, path, seq, idx, data])?;
    Ok(())
}

/// Delete the chunks of one content version.
pub fn delete_chunks(
    tx: &Transaction<'_>,
    root: &str,
    path: &str,
    seq: i64,
) -> Result<(), SyncError> {
    let mut st = tx.prepare_cached(&format!(
        "DELETE FROM {CHUNKS} WHERE root = ?1 AND path = ?2 AND seq = ?3"
    ))?;
    st.execute(params![root, path, seq])?;
    Ok(())
}

/// Visit the chunks of one content version in order.
pub fn each_chunk(
    conn: &Connection,
    root: &str,
    path: &str,
    seq: i64,
    mut f: impl FnMut(&[u8]) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT data FROM {CHUNKS} WHERE root = ?1 AND path = ?2 AND seq = ?3 ORDER BY idx"
    ))?;
    let mut rows = st.query(params![root, path, seq])?;
    while let Some(r) = rows.next()? {
        let data = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        f(data)?;
    }
    Ok(())
}
