//! A primary's term as the log sees it. Records carry their epoch; the
//! control file, the replication handshake and the takeover rules all speak
//! of the same `(epoch, start LSN)` pairs, so the type lives here, at the
//! bottom of the dependency graph.

use serde::{Deserialize, Serialize};

use crate::Lsn;

/// One primary term: from `start_lsn` on, records carry `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EpochStart {
    /// The term number.
    pub epoch: u64,
    /// First LSN written in this term.
    pub start_lsn: Lsn,
}
