//! Offline check of a log directory, without opening it as a `Log`.

use std::path::Path;

use crate::error::LogError;
use crate::segment::{list_segments, scan};
use crate::Lsn;

/// Summary of an offline log check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Oldest retained LSN.
    pub start_lsn: Lsn,
    /// End of the valid records (excluding any torn tail).
    pub end_lsn: Lsn,
    /// Number of segment files.
    pub segments: usize,
    /// Number of records checked.
    pub records: u64,
    /// Epoch of the newest record.
    pub last_epoch: Option<u64>,
    /// Bytes of torn tail at the end of the last segment that `Log::open` would zero out (up to
    /// the last non-zero byte; the preallocated zeros after the records do not count).
    pub torn_tail_bytes: u64,
}

/// Offline check of a whole log directory (for `hadr verify`): every segment and record, the chain of LSNs, and that only zeros follow the records of each segment. Read-only.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, LogError> {
    let segs = list_segments(dir, false)?;
    let start = match segs.first() {
        Some(f) => f.start,
        None => return Err(LogError::NotFound(dir.to_path_buf())),
    };
    let out = scan(&segs, start)?;
    Ok(VerifyReport {
        start_lsn: start,
        end_lsn: out.end,
        segments: segs.len(),
        records: out.records,
        last_epoch: out.last.map(|(_, e)| e),
        torn_tail_bytes: out.torn.as_ref().map_or(0, |t| t.bytes),
    })
}
