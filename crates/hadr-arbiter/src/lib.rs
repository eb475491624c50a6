//! The tiebreakers a node must win before it may write alone
//! (docs/failover.md §Arbiters). Every backend stores one small record — who
//! holds the lease, in which epoch, which standby is out of sync — and offers
//! one primitive: a conditional write that succeeds only if the stored record
//! is still the version the writer last read. Acquire, renew, take over and
//! release are all that write; when each may happen is decided by the pure
//! lease rules in `hadr_ha::lease`, never here.
//!
//! Backends: [`file`](crate::file) (a path on storage both nodes mount), [`s3`] (any
//! S3-compatible store with conditional PUTs), [`etcd`] (a transaction on the
//! key's mod revision), [`network`] (an address that must answer: it holds
//! no state, so both halves of a partition can win — allowed, with a loud
//! warning, as DB2 documents for its network tiebreaker).

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod check;
pub mod etcd;
pub mod file;
pub mod network;
pub mod s3;
pub mod spec;

pub use check::{check, CheckReport};
pub use spec::{open, ArbiterSpec};

/// A standby the primary acknowledged commits without (Patroni's `/sync`
/// key plays this role): it must never promote automatically.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutOfSync {
    /// The standby's name (its replication address).
    pub standby: String,
    /// The first LSN it may lack.
    pub from_lsn: u64,
}

/// A standby as the holder recorded it (docs/failover.md §Three and more
/// nodes): whether the holder waits for it, which is what lets it promote
/// automatically, and how far it was, which orders several candidates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordedStandby {
    /// Its name (its replication address).
    pub standby: String,
    /// The holder waits for it (its principal in SYNC or NEARSYNC).
    pub sync: bool,
    /// Its pair state as the holder saw it (`PEER`, …), for status.
    pub state: String,
    /// Its flushed LSN as the holder knew it.
    pub flushed_lsn: u64,
}

/// The record an arbiter keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The node holding the lease (None: released or never taken).
    pub holder: Option<String>,
    /// The holder's epoch.
    pub epoch: u64,
    /// Raised by one on every write: a fencing token, and what makes two
    /// writes of the same holder differ (S3's ETag is the MD5 of the body).
    pub token: u64,
    /// Random per write, for the same reason.
    pub nonce: u64,
    /// Standbys marked out of sync.
    #[serde(default)]
    pub out_of_sync: Vec<OutOfSync>,
    /// The holder's standbys (None: written by a version that did not
    /// record them; older readers ignore the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standbys: Option<Vec<RecordedStandby>>,
    /// The holder's log end when it wrote, for status (lag).
    #[serde(default)]
    pub end_lsn: u64,
    /// The writer's wall clock (µs since 1970), for status and clock-sanity
    /// checks only: no rule reads it.
    pub written_at_micros: u64,
    /// The writer's lease TTL (µs; 0: not stated). A contender waits by the
    /// longer of this and its own (`hadr_ha::lease::LeaseTiming::at_least`).
    #[serde(default)]
    pub lease_ttl_us: u64,
    /// The writer's lease margin (µs).
    #[serde(default)]
    pub lease_margin_us: u64,
}

/// What a backend uses to tell one stored version from the next (a file's
/// token, an S3 ETag, an etcd mod revision). Opaque to everyone else.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version(pub String);

/// A record as stored, with its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stored {
    /// The record.
    pub record: LeaseRecord,
    /// Its version.
    pub version: Version,
}

/// Which backend and where, for status and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterInfo {
    /// `file`, `s3`, `etcd` or `net`.
    pub kind: String,
    /// Where (path, bucket/key and endpoint, etcd endpoints and key, address).
    pub endpoint: String,
    /// False for `net`: it keeps no record, so it cannot stop two winners.
    pub stateful: bool,
}

/// Why an arbiter call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    /// The stored version is not the one expected: someone else wrote.
    #[error("the arbiter's record changed since it was read")]
    Conflict,
    /// The backend could not be reached or answered with an error.
    #[error("{endpoint}: {message}")]
    Unavailable {
        /// Where.
        endpoint: String,
        /// What happened.
        message: String,
    },
    /// No answer in time.
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout {
        /// Where.
        endpoint: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// Credentials missing, unreadable, too widely readable, or refused.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The store does not honour conditional writes: it must not be trusted.
    #[error("{0}: the store ignored a conditional write; it cannot be an arbiter")]
    NotConditional(String),
    /// The stored record does not parse.
    #[error("the arbiter's record at {endpoint} is not a hadr lease record: {message}")]
    Corrupt {
        /// Where.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// The specification is malformed.
    #[error("arbiter {spec:?}: {message}")]
    Spec {
        /// The text given.
        spec: String,
        /// What is wrong.
        message: String,
    },
}

/// A tiebreaker.
#[async_trait::async_trait]
pub trait Arbiter: Send + Sync {
    /// The stored record, or None if there is none.
    async fn read(&self) -> Result<Option<Stored>, ArbiterError>;

    /// Store `record` only if the stored version is still `expected` (None:
    /// only if there is no record). [`ArbiterError::Conflict`] otherwise.
    async fn write(
        &self,
        expected: Option<&Version>,
        record: &LeaseRecord,
    ) -> Result<Stored, ArbiterError>;

    /// The same backend at a sibling key, for `check` to try conditional
    /// writes without touching the real record.
    fn probe(&self) -> Box<dyn Arbiter>;

    /// Which backend and where.
    fn info(&self) -> ArbiterInfo;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes of different versions share one record during an upgrade: a
    /// record without the newer fields reads, and the newer fields are
    /// skipped by a reader that does not know them.
    #[test]
    fn records_of_older_and_newer_writers_read_both_ways() {
        let old = r#"{"holder":"a","epoch":3,"token":9,"nonce":1,
            "out_of_sync":[{"standby":"b","from_lsn":5}],"written_at_micros":7}"#;
        let r: LeaseRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.standbys, None);
        assert_eq!(r.end_lsn, 0);
        let newer = LeaseRecord {
            standbys: Some(vec![RecordedStandby {
                standby: "b".into(),
                sync: true,
                state: "PEER".into(),
                flushed_lsn: 40,
            }]),
            end_lsn: 41,
            ..r.clone()
        };
        #[derive(Deserialize)]
        struct OlderReader {
            holder: Option<String>,
            epoch: u64,
            out_of_sync: Vec<OutOfSync>,
        }
        let o: OlderReader = serde_json::from_str(&serde_json::to_string(&newer).unwrap()).unwrap();
        assert_eq!(
            (o.holder.as_deref(), o.epoch, o.out_of_sync.len()),
            (Some("a"), 3, 1)
        );
        let back: LeaseRecord =
            serde_json::from_str(&serde_json::to_string(&newer).unwrap()).unwrap();
        assert_eq!(back, newer);
    }
}
