//! `hadr-client`: a client for hadr clusters, on tokio-postgres, that
//! follows the primary by itself.
//!
//! - **Hosts**: a libpq-style string with several hosts
//!   (`host=a,b port=5433,5434 user=app dbname=app`), plus the live
//!   topology every node advertises (ParameterStatus `hadr.topology`),
//!   remembered across restarts in an optional cache file (`host_cache=`).
//! - **Bounded waits**: TCP keepalive and `TCP_USER_TIMEOUT` on by default,
//!   a connect timeout, an optional client-side statement timeout, and an
//!   overall time budget per call (`reroute_timeout`), with exponential
//!   backoff and full jitter between rounds over the hosts.
//! - **Seamless failover** (DB2's `enableSeamlessFailover`): a read-only
//!   autocommit statement, or the first statement of a transaction, is
//!   retried invisibly on the new primary; a failure in the middle of a
//!   transaction is [`Error::Rerouted`] ("rolled back, retry it").
//! - **Commit outcomes**: every write carries a commit token; a COMMIT whose
//!   reply was lost is resolved on the new primary
//!   (`hadr_commit_outcome`): committed, or [`Error::NotCommitted`].
//!
//! The rules are pure functions with table tests: [`retry::decide`],
//! [`backoff::Backoff`], [`hosts::HostBook`]. See README.md.

mod addr;
pub mod backoff;
mod client;
pub mod config;
mod connect;
mod error;
pub mod hosts;
mod outcome;
pub mod retry;
pub mod token;
mod transaction;

pub use addr::HostAddr;
pub use client::{Client, Executed, Params};
pub use config::{Config, ConfigError, Target};
pub use error::{Error, Tried};
pub use hosts::Topology;
pub use token::Outcome;
pub use tokio_postgres::Row;
pub use transaction::{Committed, Transaction};

#[cfg(test)]
mod readme {
    /// The README's connection string parses, with the timeouts it names.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("connect_str(\n    \"").expect("example") + 18;
        let end = start + readme[start..].find("\",").expect("end of example");
        let conninfo = readme[start..end].replace("\\\n    ", "");
        let c: crate::Config = conninfo.parse().expect("the README's string parses");
        assert_eq!(c.hosts.len(), 2);
        assert_eq!(c.tcp_user_timeout, Some(std::time::Duration::from_secs(10)));
        assert_eq!(
            c.statement_timeout,
            Some(std::time::Duration::from_secs(30))
        );
        assert!(c.host_cache.is_some());
    }
}
