//! Which failures are retried, and how, in which transaction state: pure
//! functions, table-tested. This is the rule of DB2's
//! `enableSeamlessFailover` (../../docs, reference db2-hadr.md §9), plus
//! commit tokens for the one case DB2 leaves open (a write whose reply was
//! lost):
//!
//! - a failure before anything of the statement's transaction could have
//!   taken effect (a refusal, or a lost connection with no COMMIT sent and
//!   nothing earlier in the transaction) is retried invisibly;
//! - an autocommit write or a COMMIT whose reply was lost is resolved
//!   through its commit token on the (new) primary;
//! - a failure in the middle of a transaction gives the caller one distinct
//!   error: rerouted, the transaction was rolled back.

use crate::addr::HostAddr;

/// What a failure means for retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Refused before anything ran: the session could not be opened (57P03,
    /// 53300, connection refused, connect timeout) or the statement was
    /// refused by a node that cannot serve it (25006 for a write on a
    /// standby, 40001 from `hadr.max_replay_lag` on a standby).
    Refused,
    /// The connection broke, timed out or was terminated by the server
    /// (57P01, 57P02, 08xxx) while a request was out: the server may or may
    /// not have run it.
    Lost,
    /// An ordinary SQL error: the application's business, never retried.
    Sql,
}

/// Where in its transaction the failed request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// An autocommit statement that only reads.
    AutocommitRead,
    /// An autocommit statement that may write (carrying a commit token).
    AutocommitWrite,
    /// The first statement of an explicit transaction (sent with its BEGIN).
    FirstInTransaction,
    /// A later statement of an explicit transaction.
    LaterInTransaction,
    /// The COMMIT; `wrote`: whether the transaction sent anything that may write.
    Commit {
        /// Whether any statement of the transaction may have written.
        wrote: bool,
    },
}

/// What to do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Reconnect (to the new primary) and send the request again; the
    /// caller does not see the failure.
    Retry,
    /// Reconnect and ask `hadr_commit_outcome(token)` whether it committed.
    ResolveOutcome,
    /// The transaction is gone: the distinct "rerouted, rolled back" error.
    RolledBack,
    /// Nothing was at stake (a read-only transaction's COMMIT): success.
    Succeed,
    /// Give the error to the caller as it is.
    Fail,
}

/// The retry rule.
pub fn decide(position: Position, cause: Cause) -> Decision {
    use Cause::*;
    use Position::*;
    match (cause, position) {
        (Sql, _) => Decision::Fail,
        (Refused, AutocommitRead | AutocommitWrite | FirstInTransaction) => Decision::Retry,
        (Refused, LaterInTransaction | Commit { .. }) => Decision::RolledBack,
        (Lost, AutocommitRead | FirstInTransaction) => Decision::Retry,
        (Lost, AutocommitWrite | Commit { wrote: true }) => Decision::ResolveOutcome,
        (Lost, Commit { wrote: false }) => Decision::Succeed,
        (Lost, LaterInTransaction) => Decision::RolledBack,
    }
}

/// After a statement timed out on `timed_out_on` and the client
/// reconnected to `now`: whether to stop, because the node that did not
/// answer still serves (the statement is slow, not stranded by a failover).
pub fn merely_slow(timed_out_on: Option<&HostAddr>, now: Option<&HostAddr>) -> bool {
    matches!((timed_out_on, now), (Some(a), Some(b)) if a == b)
}

/// The cause a server error stands for. `wants_primary`: the client
/// targets the primary (then 25006 means "this node is no longer the
/// primary", else it is the application writing on a standby);
/// `on_standby`: the session is on a standby (then 40001 is the replay-lag
/// refusal).
pub fn classify_sqlstate(code: &str, wants_primary: bool, on_standby: bool) -> Cause {
    match code {
        "57P03" | "53300" => Cause::Refused,
        "25006" if wants_primary => Cause::Refused,
        "40001" if on_standby => Cause::Refused,
        "57P01" | "57P02" => Cause::Lost,
        c if c.starts_with("08") => Cause::Lost,
        _ => Cause::Sql,
    }
}

/// Whether `sql` only reads. Conservative: anything not recognised as a
/// read counts as a write (and so carries a commit token and is never
/// replayed blindly). `WITH` is a read unless a writing keyword follows.
pub fn is_read_only(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    if sql.contains(';') {
        // Several statements: one of them may write.
        let body = sql.trim().trim_end_matches(';');
        if body.contains(';') {
            return false;
        }
    }
    match words.first().map(String::as_str) {
        Some("SELECT" | "VALUES" | "SHOW" | "EXPLAIN") => !words.iter().any(|w| w == "INTO"),
        Some("WITH") => !words.iter().any(|w| {
            matches!(
                w.as_str(),
                "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "INTO"
            )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Cause::*;
    use Decision::*;
    use Position::*;

    #[test]
    fn the_retry_table() {
        let table = [
            (AutocommitRead, Refused, Retry),
            (AutocommitRead, Lost, Retry),
            (AutocommitRead, Sql, Fail),
            (AutocommitWrite, Refused, Retry),
            (AutocommitWrite, Lost, ResolveOutcome),
            (AutocommitWrite, Sql, Fail),
            (FirstInTransaction, Refused, Retry),
            (FirstInTransaction, Lost, Retry),
            (FirstInTransaction, Sql, Fail),
            (LaterInTransaction, Refused, RolledBack),
            (LaterInTransaction, Lost, RolledBack),
            (LaterInTransaction, Sql, Fail),
            (Commit { wrote: true }, Refused, RolledBack),
            (Commit { wrote: true }, Lost, ResolveOutcome),
            (Commit { wrote: true }, Sql, Fail),
            (Commit { wrote: false }, Refused, RolledBack),
            (Commit { wrote: false }, Lost, Succeed),
            (Commit { wrote: false }, Sql, Fail),
        ];
        for (pos, cause, want) in table {
            assert_eq!(decide(pos, cause), want, "{pos:?} {cause:?}");
        }
    }

    #[test]
    fn a_timeout_on_a_node_that_still_serves_is_slowness() {
        let a = HostAddr::new("a", 1);
        let b = HostAddr::new("b", 1);
        for (timed_out_on, now, want) in [
            (None, Some(&a), false),
            (Some(&a), Some(&a), true),
            (Some(&a), Some(&b), false),
            (Some(&a), None, false),
        ] {
            assert_eq!(
                merely_slow(timed_out_on, now),
                want,
                "{timed_out_on:?} {now:?}"
            );
        }
    }

    #[test]
    fn sqlstates() {
        let table = [
            // (code, wants_primary, on_standby, cause)
            ("57P03", true, false, Refused),
            ("53300", true, false, Refused),
            ("25006", true, false, Refused),
            ("25006", false, true, Sql),
            ("40001", false, true, Refused),
            ("40001", true, false, Sql),
            ("57P01", true, false, Lost),
            ("57P02", false, true, Lost),
            ("08006", true, false, Lost),
            ("08003", true, false, Lost),
            ("23505", true, false, Sql),
            ("42P01", true, false, Sql),
            ("57014", true, false, Sql),
        ];
        for (code, p, s, want) in table {
            assert_eq!(classify_sqlstate(code, p, s), want, "{code} {p} {s}");
        }
    }

    #[test]
    fn read_only_statements() {
        for (sql, want) in [
            ("SELECT 1", true),
            ("  select * from t where id = $1", true),
            ("VALUES (1)", true),
            ("SHOW hadr.topology", true),
            ("WITH x AS (SELECT 1) SELECT * FROM x", true),
            ("SELECT 1;", true),
            ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", false),
            ("SELECT * INTO t2 FROM t", false),
            ("INSERT INTO t VALUES (1)", false),
            ("update t set a = 1", false),
            ("DELETE FROM t", false),
            ("CREATE TABLE t(a)", false),
            ("PRAGMA user_version = 3", false),
            ("SELECT 1; DELETE FROM t", false),
            ("", false),
            ("BEGIN", false),
        ] {
            assert_eq!(is_read_only(sql), want, "{sql}");
        }
    }
}
