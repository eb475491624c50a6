//! Files kept in sync through the HADR log (docs/filesync.md).
//!
//! The synced directory trees live in the database, in two internal tables
//! ([`table`]): every change is an ordinary committed transaction, so it
//! travels in the log with the database's sync mode, and clone, rewind and
//! takeover carry the files with the data. On the primary a [`scan`]ner
//! writes what changed on disk into the tables; on a standby a
//! [`materialize`]r writes what changed in the tables onto the disk.
//!
//! The crate knows nothing of the server: it gets a [`Db`] (one write
//! transaction through the log, one consistent read) and the roots.

pub mod materialize;
pub mod scan;
pub mod status;
pub mod table;
pub mod tree;
pub mod verify;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

pub use status::{Problem, RootView, SyncStatus};

/// A file-sync failure.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path (absolute).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node may not write now (a standby, a fenced or demoting primary).
    #[error("not writable: {0}")]
    NotWritable(String),
    /// The write transaction did not commit, or its commit was not confirmed.
    #[error("write failed: {0}")]
    Write(String),
    /// A row of the tables is not usable (a path leaving the root, a hash
    /// that does not match the chunks).
    #[error("bad row {root}/{path}: {why}")]
    BadRow {
        /// The root's name.
        root: String,
        /// The relative path.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Stopped (the node shuts down).
    #[error("stopped")]
    Stopped,
}

impl SyncError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SyncError {
        SyncError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this is "no space left on device".
    pub fn is_enospc(&self) -> bool {
        matches!(self, SyncError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// The database as the file sync sees it.
pub trait Db: Send + Sync {
    /// Run `f` in one write transaction and commit it the way a client's
    /// commit is: through the log, durable, and confirmed by the standbys as
    /// the sync mode says. [`SyncError::NotWritable`] when the node may not
    /// write now.
    fn write(
        &self,
        f: &mut dyn FnMut(&rusqlite::Transaction<'_>) -> Result<(), SyncError>,
    ) -> Result<(), SyncError>;
    /// Run `f` inside one consistent read transaction.
    fn read(
        &self,
        f: &mut dyn FnMut(&rusqlite::Connection) -> Result<(), SyncError>,
    ) -> Result<(), SyncError>;
    /// Why a write may not start now (None: it may).
    fn refusal(&self) -> Option<String>;
    /// The highest row seq committed so far: the standby's cheap check,
    /// after each replay advance, of whether there is anything to apply.
    fn latest_seq(&self) -> Result<i64, SyncError> {
        let mut max = 0;
        self.read(&mut |conn| {
            max = table::max_row_seq(conn)?;
            Ok(())
        })?;
        Ok(max)
    }
}

/// One synced directory.
#[derive(Clone, Debug)]
pub struct Root {
    /// Its name: the identity across nodes (each maps it to its own path).
    pub name: String,
    /// Its absolute local path.
    pub path: PathBuf,
}

/// What every root shares.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The roots.
    pub roots: Vec<Root>,
    /// Paths (relative to their root) neither scanned nor deleted.
    pub exclude: globset::GlobSet,
    /// Larger files are refused (reported in status).
    pub max_file_size: u64,
    /// The periodic full scan (primary) and reconcile retry (standby).
    pub scan_interval: Duration,
}

impl Settings {
    /// Whether `rel` (a relative path with `/` separators) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        self.exclude.is_match(rel)
    }
}

/// Build a glob set from patterns, naming the bad one.
pub fn glob_set(patterns: &[String]) -> Result<globset::GlobSet, String> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("{p:?}: {e}"))?;
        b.add(g);
    }
    b.build().map_err(|e| e.to_string())
}

/// Microseconds since the Unix epoch (wall clock: the lag compares the
/// primary's clock with the standby's).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Content is stored in chunks of this size.
pub const CHUNK: usize = 1 << 20;
/// Files up to this size go in one transaction with other changes; larger
/// ones in transactions of this many bytes each, switched over in a last one.
pub const ONE_TXN_MAX: u64 = 4 << 20;
/// Name prefix of the materializer's temporary files (never synced).
pub const TMP_PREFIX: &str = ".hadr-sync-tmp.";
