//! Commit outcomes that are never "unknown": every write transaction
//! carries a fresh commit token (`SET hadr.commit_token`, one-shot, recorded
//! by the server in the same transaction, so it is replicated and survives
//! a failover). When a COMMIT's reply is lost, the client asks the (new)
//! primary `SELECT hadr_commit_outcome('tok')`: "committed" or "not
//! committed", and "not committed" is final (the server records a
//! tombstone, so the lost transaction can never commit afterwards).

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
