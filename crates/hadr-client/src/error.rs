//! The errors a caller can see. Each one that is about a failover is its
//! own variant, so that an application can tell "retry the transaction"
//! from "it committed" from "nobody knows" without parsing text.

use std::fmt;
use std::time::Duration;

use crate::addr::HostAddr;
use crate::config::ConfigError;

/// An error of [`crate::Client`] or [`crate::Transaction`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server answered an ordinary SQL error (not a reroute): it is the
    /// application's to handle, nothing was retried.
    #[error("{0}")]
    Sql(#[source] tokio_postgres::Error),
    /// The connection was lost or rerouted in the middle of a transaction:
    /// the transaction was rolled back, and the caller may run it again
    /// (SQLSTATE 08006; DB2's SQL30108N).
    #[error("the connection was rerouted ({cause}); the transaction was rolled back, retry it (SQLSTATE 08006)")]
    Rerouted {
        /// What ended the old connection.
        cause: String,
    },
    /// The COMMIT's reply was lost, and the (new) primary says, through the
    /// transaction's commit token, that it did not commit: it never will.
    #[error("the transaction did not commit (its COMMIT's reply was lost: {cause}; commit token {token} not committed); retry it")]
    NotCommitted {
        /// The commit token.
        token: String,
        /// What lost the reply.
        cause: String,
    },
    /// A write committed but its reply, and so the rows it returned, were
    /// lost (a `query` of `INSERT … RETURNING` across a failover).
    #[error(
        "the statement committed (commit token {token}), but its reply and rows were lost: {cause}"
    )]
    CommittedRowsLost {
        /// The commit token.
        token: String,
        /// What lost the reply.
        cause: String,
    },
    /// Whether a commit happened could not be learnt within the time
    /// budget (no primary answered, or the server does not support commit
    /// tokens). The only "unknown" this client returns.
    #[error("whether the transaction committed is unknown (commit token {token}): {why} (SQLSTATE 08007)")]
    OutcomeUnknown {
        /// The commit token, to ask `hadr_commit_outcome` later.
        token: String,
        /// Why it could not be resolved.
        why: String,
    },
    /// No suitable node could be reached within the time budget.
    #[error("no node served the request within {budget:?}; tried: {tried}")]
    Unavailable {
        /// The budget.
        budget: Duration,
        /// Every host tried and why it did not serve.
        tried: Tried,
    },
    /// A statement got no reply within the client-side statement timeout,
    /// and the node that did not answer still serves (the client
    /// reconnected to it): the statement was cancelled and did not commit.
    #[error("no reply within the statement timeout ({timeout:?}) from {host}, which still serves: the statement was cancelled and did not commit (SQLSTATE 57014)")]
    StatementTimeout {
        /// The timeout.
        timeout: Duration,
        /// The node.
        host: String,
    },
    /// `query_one` got another number of rows than one.
    #[error("query_one: the statement returned {0} rows, not one")]
    RowCount(usize),
    /// A transaction used after it failed or ended.
    #[error("this transaction already ended (rerouted or failed); start a new one")]
    TransactionEnded,
}

impl Error {
    /// The SQLSTATE this error stands for.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql(e) => e.code().map(|c| c.code()),
            Error::Rerouted { .. } => Some("08006"),
            Error::NotCommitted { .. } => Some("40000"),
            Error::OutcomeUnknown { .. } => Some("08007"),
            Error::Unavailable { .. } => Some("08001"),
            Error::StatementTimeout { .. } => Some("57014"),
            Error::CommittedRowsLost { .. }
            | Error::Config(_)
            | Error::RowCount(_)
            | Error::TransactionEnded => None,
        }
    }

    /// Whether running the whole transaction again is the right reaction.
    pub fn is_retryable_transaction(&self) -> bool {
        matches!(self, Error::Rerouted { .. } | Error::NotCommitted { .. })
    }
}

/// Hosts tried during one call, each with the last reason it failed, in
/// the order first tried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tried(pub Vec<(HostAddr, String)>);

impl Tried {
    /// Note that `host` failed because of `why`.
    pub fn note(&mut self, host: &HostAddr, why: impl Into<String>) {
        let why = why.into();
        match self.0.iter_mut().find(|(h, _)| h == host) {
            Some(e) => e.1 = why,
            None => self.0.push((host.clone(), why)),
        }
    }
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no host");
        }
        for (i, (h, why)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{h} ({why})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_every_host_and_why() {
        let mut t = Tried::default();
        t.note(&HostAddr::new("a", 1), "connection refused");
        t.note(&HostAddr::new("b", 2), "a standby (read-only)");
        t.note(
            &HostAddr::new("a", 1),
            "57P03: the database system is starting up",
        );
        let e = Error::Unavailable {
            budget: Duration::from_secs(3),
            tried: t,
        };
        assert_eq!(
            e.to_string(),
            "no node served the request within 3s; tried: a:1 (57P03: the database system is starting up); b:2 (a standby (read-only))"
        );
        assert_eq!(e.sqlstate(), Some("08001"));
    }

    #[test]
    fn the_reroute_error_is_distinct_and_retryable() {
        let e = Error::Rerouted {
            cause: "connection closed".into(),
        };
        assert_eq!(e.sqlstate(), Some("08006"));
        assert!(e.is_retryable_transaction());
        assert!(e.to_string().contains("rolled back"));
        let u = Error::OutcomeUnknown {
            token: "t".into(),
            why: "budget".into(),
        };
        assert!(!u.is_retryable_transaction());
    }
}
