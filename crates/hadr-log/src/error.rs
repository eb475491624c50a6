//! Error types of the log crate.

use std::path::PathBuf;
use std::time::Duration;

use crate::record::{EncodeError, RecordError};
use crate::Lsn;

/// Every error the log can return.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory the call was about.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The on-disk log is damaged; `offset` is the byte offset inside the segment file.
    #[error("log corrupt: segment {segment} at byte offset {offset}: {reason}")]
    Corrupt {
        /// Path of the damaged segment file (or the log directory for chain problems).
        segment: PathBuf,
        /// Byte offset within that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment was written by a newer hadr.
    #[error("log segment {segment} has format version {version}; this hadr supports up to {supported}; upgrade hadr")]
    UnsupportedSegmentVersion {
        /// Path of the segment file.
        segment: PathBuf,
        /// Version found in its header.
        version: u32,
        /// Highest version this build understands.
        supported: u32,
    },
    /// `Log::create` found existing segments.
    #[error("log directory {0} already holds log segments")]
    AlreadyExists(PathBuf),
    /// `Log::open` found no segments.
    #[error("log directory {0} holds no log segments (create the log first)")]
    NotFound(PathBuf),
    /// A record handed to `append` cannot be encoded validly.
    #[error("invalid record: {0}")]
    InvalidRecord(#[source] EncodeError),
    /// Encoded bytes handed to `append_encoded` failed validation.
    #[error("rejected encoded record at LSN {lsn}: {source}")]
    BadEncoded {
        /// LSN at which the bad record would have been placed.
        lsn: Lsn,
        /// Why decoding failed.
        #[source]
        source: RecordError,
    },
    /// An LSN argument is out of range or not usable for this call.
    #[error("LSN {lsn}: {reason}")]
    BadLsn {
        /// The offending LSN.
        lsn: Lsn,
        /// Why it cannot be used.
        reason: String,
    },
    /// `wait_flushed` gave up.
    #[error("timed out waiting for LSN {lsn} to be flushed (flushed up to {flushed})")]
    FlushTimeout {
        /// LSN waited for.
        lsn: Lsn,
        /// Flushed LSN when the wait ended.
        flushed: Lsn,
    },
    /// An earlier fsync (or a write that could not be undone) failed; the log is read-only from now on.
    #[error("log failed earlier and refuses further writes: {0}")]
    Failed(String),
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// `Log::close` gave up waiting for a background thread (stuck in an fdatasync or an
    /// `on_flush` callback); the thread was left running.
    #[error("log {thread} thread did not stop within {timeout:?}; it was left running")]
    CloseTimeout {
        /// Which thread: "flusher" or "spare-segment".
        thread: &'static str,
        /// How long `close` waited.
        timeout: Duration,
    },
    /// A configuration value could not be parsed or is out of range.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

impl LogError {
    /// Wrap an I/O error together with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    /// Build a corruption error.
    pub(crate) fn corrupt(
        segment: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corrupt {
            segment: segment.into(),
            offset,
            reason: reason.into(),
        }
    }
}
