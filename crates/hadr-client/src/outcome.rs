//! Commit outcomes that are never "unknown": every write transaction
//! carries a fresh commit token (`SET hadr.commit_token`, one-shot, recorded
//! by the server in the same transaction, so it is replicated and survives
//! a failover). When a COMMIT's reply is lost, the client asks the (new)
//! primary `SELECT hadr_commit_outcome('tok')`: "committed" or "not
//! committed", and "not committed" is final (the server records a
//! tombstone, so the lost transaction can never commit afterwards).

use tokio_postgres::SimpleQueryMessage;

use crate::client::{Call, Client};
use crate::config::Target;
use crate::connect::describe;
use crate::error::Error;
use crate::retry::{classify_sqlstate, Cause};

/// What the primary says about a commit token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction committed.
    Committed {
        /// The epoch it committed in.
        epoch: Option<i64>,
        /// When (RFC 3339 UTC), as the server wrote it.
        at: Option<String>,
    },
    /// It did not commit, and never will.
    NotCommitted,
}

/// A fresh token: unique enough that two clients never pick the same one
/// (122 random bits), in the server's alphabet `[A-Za-z0-9._:-]`.
pub fn new_token() -> String {
    format!("hc-{}", uuid::Uuid::new_v4().simple())
}

/// The statement tagging the session's next write transaction.
pub fn set_token_sql(token: &str) -> String {
    format!("SET hadr.commit_token = '{token}'")
}

/// The statement asking for an outcome.
pub fn outcome_sql(token: &str) -> String {
    format!("SELECT hadr_commit_outcome('{token}')")
}

/// Read the answer row of `hadr_commit_outcome`.
pub fn parse_outcome(
    outcome: Option<&str>,
    epoch: Option<&str>,
    at: Option<&str>,
) -> Result<Outcome, String> {
    match outcome {
        Some("committed") => Ok(Outcome::Committed {
            epoch: epoch.and_then(|e| e.parse().ok()),
            at: at.map(String::from),
        }),
        Some("not committed") => Ok(Outcome::NotCommitted),
        other => Err(format!(
            "unexpected answer from hadr_commit_outcome: {other:?}"
        )),
    }
}

impl Client {
    /// Ask the primary whether the transaction tagged `token` committed
    /// (for a caller that got [`Error::OutcomeUnknown`] and asks later).
    /// Answering "not committed" makes it final.
    pub async fn commit_outcome(&mut self, token: &str) -> Result<Outcome, Error> {
        let mut call = self.call();
        self.resolve(&mut call, token, "asked by the caller").await
    }

    /// Resolve `token` on the primary within the call's budget; `cause`:
    /// what lost the reply (for the error message).
    pub(crate) async fn resolve(
        &mut self,
        call: &mut Call,
        token: &str,
        cause: &str,
    ) -> Result<Outcome, Error> {
        let unknown = |why: String| Error::OutcomeUnknown {
            token: token.to_string(),
            why: format!("{why} (the reply was lost: {cause})"),
        };
        let sql = outcome_sql(token);
        loop {
            match self.ensure(call, &Target::Primary).await {
                Ok(()) => {}
                Err(e @ Error::Unavailable { .. }) => return Err(unknown(e.to_string())),
                Err(e) => return Err(e),
            }
            let Some(conn) = self.conn.as_ref() else {
                continue;
            };
            let addr = conn.addr.clone();
            // The server answers once no session can still commit the
            // token (it waits for the write lock): bounded by the budget.
            let asked = tokio::time::timeout(call.left(), conn.pg.simple_query(&sql)).await;
            let failure = match asked {
                Err(_) => (Cause::Lost, "no answer within the time budget".to_string()),
                Ok(Ok(msgs)) => {
                    let row = msgs.iter().find_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some(r),
                        _ => None,
                    });
                    let Some(row) = row else {
                        return Err(unknown("hadr_commit_outcome returned no row".into()));
                    };
                    let get = |c: &str| row.try_get(c).ok().flatten();
                    let first = row.try_get(0).ok().flatten();
                    let out =
                        parse_outcome(get("outcome").or(first), get("epoch"), get("committed_at"))
                            .map_err(unknown)?;
                    tracing::info!(token, outcome = ?out, host = %addr, "commit outcome resolved");
                    return Ok(out);
                }
                Ok(Err(e)) => match e.code() {
                    Some(c) => match classify_sqlstate(c.code(), true, conn.read_only) {
                        Cause::Sql => {
                            return Err(unknown(format!(
                                "{addr} cannot tell (does it support commit tokens?): {}",
                                describe(&e)
                            )))
                        }
                        cause => (cause, describe(&e)),
                    },
                    None => (Cause::Lost, describe(&e)),
                },
            };
            call.tried.note(&addr, failure.1);
            self.drop_conn();
            if !self.pause(call).await {
                return Err(unknown(call.unavailable().to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_in_the_server_alphabet() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert!(t.len() <= 128);
            assert!(t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)));
        }
        assert_eq!(set_token_sql("x1"), "SET hadr.commit_token = 'x1'");
    }

    #[test]
    fn outcome_rows() {
        assert_eq!(
            parse_outcome(Some("committed"), Some("7"), Some("2026-01-01T00:00:00Z")),
            Ok(Outcome::Committed {
                epoch: Some(7),
                at: Some("2026-01-01T00:00:00Z".into())
            })
        );
        assert_eq!(
            parse_outcome(Some("not committed"), None, None),
            Ok(Outcome::NotCommitted)
        );
        assert!(parse_outcome(Some("maybe"), None, None).is_err());
        assert!(parse_outcome(None, None, None).is_err());
    }
}
