//! hadr's own transaction log.
//!
//! Every committed SQLite transaction becomes one [`Record`] holding the full images of the pages
//! it changed. Records are appended to segment files (`{start_lsn:016x}.hlog`), made durable by a
//! group-commit flusher thread, read back for crash recovery, and shipped to standbys as raw
//! bytes ([`Log::read_raw`] / [`Log::append_encoded`]).
//!
//! An [`Lsn`] is the byte offset of a record in the logical log stream; segment headers do not
//! count, so LSNs do not depend on where segments were cut. Unix only (positioned I/O).

mod error;
mod log;
mod record;
mod segment;

pub use crate::error::{LogError, RecordError};
pub use crate::log::{
    verify_dir, FlushMode, Log, LogConfig, LogReader, LogStats, OpenReport, VerifyReport,
};
pub use crate::record::{CaptureMark, Page, Record};

/// Byte offset of a record in the log stream (segment headers do not count).
pub type Lsn = u64;
