//! hadr's own transaction log.
//!
//! Every committed SQLite transaction becomes one [`Record`] holding the full images of the pages
//! it changed. Records are appended to segment files (`{start_lsn:016x}.hlog`), made durable by a
//! group-commit flusher thread, read back for crash recovery, and shipped to standbys as raw
//! bytes ([`Log::read_raw`] / [`Log::append_encoded`]).
//!
//! An [`Lsn`] is the byte offset of a record in the logical log stream; segment headers do not
//! count, so LSNs do not depend on where segments were cut. Unix only (positioned I/O).
//!
//! Segment files are preallocated: written full of zeros to `segment_size` and fsynced before
//! they get their name (a background thread keeps one spare ready), so appends overwrite
//! existing blocks and the commit fdatasync has no file size or extent change to journal. The
//! end of the log is therefore where the records stop and the zeros begin, not the file length;
//! a record that does not fit in the space left in a segment starts the next one, leaving a
//! zero tail behind. The record and segment header formats are the same as before
//! preallocation, and logs written before it open unchanged.

mod epoch;
mod error;
mod log;
mod record;
mod segment;
mod verify;

pub use crate::epoch::EpochStart;
pub use crate::error::LogError;
pub use crate::log::{FlushMode, Log, LogConfig, LogReader, LogStats, OpenReport};
pub use crate::record::{CaptureMark, EncodeError, Page, Record, RecordError};
pub use crate::verify::{verify_dir, VerifyReport};

/// Byte offset of a record in the log stream (segment headers do not count).
pub type Lsn = u64;
