//! One kit for everything that runs real `hadr server` processes: the
//! integration tests, the benchmark (`bench/`) and `hadr demo`.
//!
//! - [`free_port`]: a port below Linux's ephemeral range, free on every address.
//! - [`Hadr`]: the binary: `init`, `clone`, `verify`, and [`Server`]s on data directories.
//! - [`Server`]: one node as a child process: start, restart, kill -9,
//!   SIGTERM, SIGSTOP/SIGCONT, its log, its typed status, waits for states.
//! - [`netns::Cluster`]: hosts in network namespaces on a bridge, black holes and cut links.
//! - [`acked_writer`] and [`acked_ids`]: writes whose acknowledgement is recorded.
//! - [`s3`]: moto's S3 server and a proxy that serialises its requests.
//! - [`admin_token`]: the admin token every [`Server`] of this process
//!   requires (one per process, so a cluster's nodes share it), written to
//!   a file only its owner can read next to each data directory, sent by
//!   each server's [`AdminClient`] and put in `HADR_ADMIN_TOKEN` by
//!   [`Hadr::command`].
//!
//! Every helper returns a [`Result`]; nothing here panics on a node that
//! misbehaves, so callers can poll a node that is restarting.

pub mod certs;
mod hadr;
pub mod netns;
mod ports;
pub mod s3;
mod server;
mod sql;
mod token;

pub use hadr::Hadr;
pub use hadr_admin_api::{
    spelling, AdminClient, AdminError, ConnectStatus, HadrView, NodeRole, PairState, PrimaryView,
    StandbyPair, StandbyView, Status, SyncMode, Topology,
};
pub use ports::free_port;
pub use token::{admin_token, admin_token_secret, write_admin_token, ADMIN_TOKEN_ENV};

/// Run `f` to completion from synchronous code (the benchmark), on a
/// runtime the kit keeps for that. Not from inside another tokio runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            // Only a system without threads or timers fails here.
            .expect("cannot start a tokio runtime")
    })
    .block_on(f)
}
pub use server::{brief, Server, TRUST_EVERYONE};
pub use sql::{acked_ids, acked_writer, connect};

/// What the kit's helpers return.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// `host:port`.
pub fn addr(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> String {
    addr("127.0.0.1", port)
}
