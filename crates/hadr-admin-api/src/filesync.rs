//! The file sync's part of `/status` and the answer of `GET /files/verify`
//! (docs/filesync.md).

use serde::{Deserialize, Serialize};

/// `/status` `file_sync`: every synced root of the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSyncStatus {
    /// The roots, in configuration order.
    pub roots: Vec<FileSyncRoot>,
    /// Errors since this start.
    pub errors_total: u64,
    /// Content bytes written into the tables (primary) or onto the disk (standby).
    pub bytes_total: u64,
}

/// One synced root.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSyncRoot {
    /// Its name (the identity across nodes).
    pub name: String,
    /// Its local path.
    pub path: String,
    /// `scanning` (primary), `materializing` (standby), `waiting: …`.
    pub state: String,
    /// Files in the table.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Highest change sequence written (primary).
    pub last_seq_written: i64,
    /// Highest change sequence applied to the disk (standby).
    pub last_seq_applied: i64,
    /// Standby: now minus when the primary wrote the last change applied
    /// (or the oldest one not applied yet), in seconds; wall clocks.
    pub lag_seconds: Option<f64>,
    /// Changes seen but not yet written (primary) or applied (standby).
    pub pending: u64,
    /// The last error (cleared by the next success).
    pub last_error: Option<String>,
    /// When it happened (µs since the Unix epoch).
    pub last_error_at_micros: Option<i64>,
    /// Paths not synced (refused symlinks, unreadable or too large files), bounded.
    pub problems: Vec<FileSyncProblem>,
    /// How many such paths there are in all.
    pub problems_total: u64,
}

/// A path that is not synced, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSyncProblem {
    /// Relative to its root.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// `GET /files/verify`: whether this node's disk matches its tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileVerify {
    /// How many synced roots the node has (0: no `sync_paths`).
    #[serde(default)]
    pub roots: usize,
    /// No mismatch.
    pub identical: bool,
    /// Differences between the disk and the table.
    pub mismatches: Vec<FileMismatch>,
    /// Paths on disk that are not synced (they are reported in status).
    pub unsynced: Vec<FileMismatch>,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMismatch {
    /// Root name.
    pub root: String,
    /// Relative path.
    pub path: String,
    /// What differs.
    pub why: String,
}
