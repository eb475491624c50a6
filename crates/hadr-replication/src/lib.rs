//! HADR replication drivers (docs/architecture.md): the tokio tasks that
//! carry out the pure rules of `hadr_ha` over the network.
//!
//! - [`wire`]: framed protocol messages over a connection.
//! - [`link`]: the connection itself: plain TCP or mutual TLS, dialled or accepted.
//! - [`primary`]: the replication listener and one sender per standby.
//! - [`context`]: what the primary's tasks share.
//! - [`standby`]: the receiver and the replay loop of a standby.
//! - [`standbys`]: the primary's standbys and the commits waiting for them.
//! - [`transfer`]: a snapshot's pages from the primary to a cloner or rewinder.
//! - [`clone`]: copying a running primary into a new standby.
//! - [`rewind`]: bringing a diverged old primary back in line with the new one.

pub mod clone;
pub mod context;
pub mod link;
pub mod primary;
pub mod rewind;
pub mod standby;
pub mod standbys;
pub mod transfer;
pub mod wire;

pub use standbys::Standbys;

/// This node's handshake, from its control file and log end.
pub fn hello(
    engine: &hadr_engine::Engine,
    role: hadr_protocol::PeerRole,
    address: &str,
) -> hadr_protocol::Hello {
    let c = engine.control();
    hadr_protocol::Hello {
        version: hadr_protocol::PROTOCOL_VERSION,
        role,
        epoch_history: c.epoch_history.clone(),
        database_id: c.database_id,
        epoch: c.epoch,
        lsn: engine.log().end_lsn(),
        address: address.to_string(),
    }
}

/// Microseconds since the Unix epoch (drivers read the clock; the pure state machine never does).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Microseconds on this process's monotonic clock (lease arithmetic: it
/// never jumps with the wall clock and keeps running while the process is
/// stopped, so a frozen holder finds its lease over when it resumes).
pub fn mono_micros() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    // Offset by one so that 0 never means "now".
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
        + 1
}
