//! Commit tokens: a client tags a transaction with an id of its choosing
//! (`SET hadr.commit_token`), the id is written in that same transaction,
//! and `SELECT hadr_commit_outcome('id')` on the primary answers whether it
//! committed (docs/clients.md §Commit outcomes).
//!
//! The table is an ordinary SQLite table, so the token is in the log with
//! the transaction, reaches the standbys with it and survives a failover.
//! Asking records a tombstone when the token is absent: the answer "not
//! committed" is then final, because a transaction still carrying that
//! token (a dead client's session that has not rolled back yet) can no
//! longer commit; its insert collides with the tombstone.

use rusqlite::{params, Connection, OptionalExtension};

use crate::errors::{sqlstate, PgError};

/// The table; created by the first transaction that needs it.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS hadr_commit_tokens(
    token TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hadr_commit_tokens_at ON hadr_commit_tokens(at)";

/// RFC 3339 UTC with milliseconds; such strings sort by time.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

const COMMITTED: &str = "committed";
const NOT_COMMITTED: &str = "not committed";

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 128;

/// Whether `t` may be a token: 1–128 of `[A-Za-z0-9._:-]`, so that it can
/// be quoted into SQL and logs without escaping.
pub fn valid(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOKEN_LEN
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// What `hadr_commit_outcome` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction committed, in `epoch`, at `at`.
    Committed {
        /// The primary's epoch when it committed.
        epoch: i64,
        /// When (RFC 3339 UTC).
        at: String,
    },
    /// It did not commit, and now never will.
    NotCommitted,
}

/// Record `token` for the transaction open on `conn` (the write permit held).
pub fn record(conn: &Connection, token: &str, epoch: u64) -> Result<(), PgError> {
    conn.execute_batch(CREATE)
        .map_err(|e| internal("create", &e))?;
    let r = conn.execute(
        &format!(
            "INSERT INTO hadr_commit_tokens(token, outcome, epoch, at) VALUES (?1, '{COMMITTED}', ?2, {NOW})"
        ),
        params![token, epoch as i64],
    );
    match r {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(PgError::new(
                sqlstate::UNIQUE_VIOLATION,
                format!("commit token \"{token}\" was already used or resolved; the transaction was rolled back"),
            )
            .with_hint("use a new token for every transaction"))
        }
        Err(e) => Err(internal("record", &e)),
    }
}

/// The outcome of `token`, in the transaction open on `conn` (the write
/// permit held): found, or else a tombstone is written and the answer is
/// "not committed".
pub fn resolve(conn: &Connection, token: &str, epoch: u64) -> Result<Outcome, PgError> {
    conn.execute_batch(CREATE)
        .map_err(|e| internal("create", &e))?;
    conn.execute(
        &format!(
            "INSERT OR IGNORE INTO hadr_commit_tokens(token, outcome, epoch, at) VALUES (?1, '{NOT_COMMITTED}', ?2, {NOW})"
        ),
        params![token, epoch as i64],
    )
    .map_err(|e| internal("resolve", &e))?;
    let row: Option<(String, i64, String)> = conn
        .query_row(
            "SELECT outcome, epoch, at FROM hadr_commit_tokens WHERE token = ?1",
            [token],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| internal("resolve", &e))?;
    Ok(match row {
        Some((o, epoch, at)) if o == COMMITTED => Outcome::Committed { epoch, at },
        _ => Outcome::NotCommitted,
    })
}

/// Delete the tokens recorded more than `retention_secs` ago, at most
/// `limit` of them (a purge is one write transaction; a small one keeps the
/// write lock short). Returns how many went.
pub fn purge(conn: &Connection, retention_secs: u64, limit: u32) -> rusqlite::Result<usize> {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'hadr_commit_tokens'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)?;
    if !exists {
        return Ok(0);
    }
    conn.execute(
        "DELETE FROM hadr_commit_tokens WHERE token IN (
            SELECT token FROM hadr_commit_tokens
            WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)
            ORDER BY at LIMIT ?2)",
        params![format!("-{retention_secs} seconds"), limit],
    )
}

fn internal(what: &str, e: &rusqlite::Error) -> PgError {
    PgError::new(
        sqlstate::INTERNAL_ERROR,
        format!("commit token table ({what}): {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    #[test]
    fn tokens_are_plain_words() {
        assert!(valid("app-1:tx.42_x"));
        assert!(valid(&"a".repeat(MAX_TOKEN_LEN)));
        for bad in ["", "a b", "a'b", "é", &"a".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(!valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_recorded_token_is_committed_and_cannot_be_reused() {
        let c = db();
        c.execute_batch("BEGIN").unwrap();
        record(&c, "t1", 3).unwrap();
        c.execute_batch("COMMIT").unwrap();
        match resolve(&c, "t1", 4).unwrap() {
            Outcome::Committed { epoch, at } => {
                assert_eq!(epoch, 3);
                assert!(at.ends_with('Z') && at.contains('T'), "{at}");
            }
            o => panic!("{o:?}"),
        }
        let e = record(&c, "t1", 4).unwrap_err();
        assert_eq!(e.code, sqlstate::UNIQUE_VIOLATION);
    }

    #[test]
    fn an_unknown_token_is_not_committed_for_good() {
        let c = db();
        assert_eq!(resolve(&c, "t2", 5).unwrap(), Outcome::NotCommitted);
        // The late transaction that carried it can no longer commit.
        let e = record(&c, "t2", 5).unwrap_err();
        assert_eq!(e.code, sqlstate::UNIQUE_VIOLATION);
        // Asking again gives the same answer.
        assert_eq!(resolve(&c, "t2", 6).unwrap(), Outcome::NotCommitted);
    }

    #[test]
    fn purge_deletes_only_old_tokens_and_at_most_the_limit() {
        let c = db();
        assert_eq!(purge(&c, 60, 10).unwrap(), 0, "no table yet");
        record(&c, "new", 1).unwrap();
        for i in 0..5 {
            c.execute(
                "INSERT INTO hadr_commit_tokens VALUES (?1, 'committed', 1, '2000-01-01T00:00:00.000Z')",
                [format!("old{i}")],
            )
            .unwrap();
        }
        assert_eq!(purge(&c, 60, 3).unwrap(), 3);
        assert_eq!(purge(&c, 60, 3).unwrap(), 2);
        assert_eq!(purge(&c, 60, 3).unwrap(), 0);
        assert!(matches!(
            resolve(&c, "new", 1).unwrap(),
            Outcome::Committed { .. }
        ));
    }
}
