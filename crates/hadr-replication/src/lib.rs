//! HADR replication (DB2 semantics, DESIGN.md §3–§4).
//!
//! - [`pair`]: the pure state machine of one primary–standby pair.
//! - [`gate`]: the commit gate that sessions wait on, over all pairs.
//! - [`wire`]: framed protocol messages over a TCP stream.
//! - [`primary`]: the replication listener and one sender per standby.
//! - [`standby`]: the receiver and the replay loop of a standby.
//! - [`clone`]: copying a running primary into a new standby.

pub mod clone;
pub mod gate;
pub mod pair;
pub mod primary;
pub mod standby;
pub mod wire;

pub use gate::CommitGate;
pub use pair::{Action, Event, Gate, Pair, PairConfig, PairState, SyncMode};

/// Microseconds since the Unix epoch (drivers read the clock; the pure state machine never does).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
