//! Explicit transactions. BEGIN is sent with the first statement, after
//! `SET hadr.commit_token` (all pipelined), so that:
//!
//! - a first statement that fails because of a reroute is replayed
//!   invisibly on the new primary (nothing of the transaction took effect);
//! - a later failure gives [`Error::Rerouted`]: rolled back, retry it;
//! - a COMMIT whose reply is lost is resolved through the token:
//!   [`Committed::Resolved`] or [`Error::NotCommitted`], never "unknown"
//!   unless the time budget runs out ([`Error::OutcomeUnknown`]).

use tokio_postgres::Row;

use crate::client::{Client, Op, Params, Reply};
use crate::error::Error;
use crate::retry::{decide, is_read_only, Decision, Position};
use crate::token::{new_token, set_token_sql, Outcome};

/// How a transaction ended well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// The server acknowledged the COMMIT.
    Acknowledged,
    /// The COMMIT's reply was lost; the (new) primary said, through the
    /// commit token, that it committed.
    Resolved {
        /// The epoch it committed in.
        epoch: Option<i64>,
        /// When, as the server wrote it.
        at: Option<String>,
    },
    /// Nothing needed committing: no statement was sent, or the
    /// transaction only read and the COMMIT's reply was lost.
    Nothing,
}

enum State {
    NotStarted,
    Open { wrote: bool, failed: bool },
    Ended,
}

/// An explicit transaction on a [`Client`]. Dropped without `commit` or
/// `rollback`, it is rolled back before the client's next request.
pub struct Transaction<'a> {
    client: &'a mut Client,
    token: String,
    state: State,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(client: &'a mut Client) -> Transaction<'a> {
        Transaction {
            client,
            token: new_token(),
            state: State::NotStarted,
        }
    }

    /// The commit token this transaction carries (to ask
    /// [`Client::commit_outcome`] after an [`Error::OutcomeUnknown`]).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Rows of a statement in the transaction.
    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        match self.statement(Op::Query(sql, params)).await? {
            Reply::Rows(r) => Ok(r),
            _ => Ok(Vec::new()),
        }
    }

    /// A statement in the transaction; rows affected.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        match self.statement(Op::Execute(sql, params)).await? {
            Reply::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }

    /// Simple-protocol statements in the transaction.
    pub async fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.statement(Op::Simple(sql)).await.map(|_| ())
    }

    async fn statement(&mut self, op: Op<'_>) -> Result<Reply, Error> {
        let writes = !is_read_only(op.sql());
        match self.state {
            State::Ended => Err(Error::TransactionEnded),
            State::NotStarted => {
                let mut call = self.client.call();
                let target = self.client.config.target.clone();
                let pre = [set_token_sql(&self.token), "BEGIN".to_string()];
                let mut timed_out_on = None;
                loop {
                    self.client.ensure(&mut call, &target).await?;
                    self.client.still_slow(&timed_out_on)?;
                    let f = match self.client.send(&pre, op).await {
                        Ok(r) => {
                            self.state = State::Open {
                                wrote: writes,
                                failed: false,
                            };
                            return Ok(r);
                        }
                        Err(f) => f,
                    };
                    let host = self.client.conn.as_ref().map(|c| c.addr.clone());
                    if f.timed_out {
                        timed_out_on = host.clone();
                    }
                    match decide(Position::FirstInTransaction, f.cause) {
                        Decision::Retry => {
                            tracing::info!(why = %f.why, "first statement of a transaction not run: retrying on the primary");
                            self.client.note_failure(&mut call, host.as_ref(), &f);
                            if !self.client.pause(&mut call).await {
                                return Err(call.unavailable());
                            }
                        }
                        _ => {
                            // An SQL error: the block is open and failed.
                            self.state = State::Open {
                                wrote: writes,
                                failed: true,
                            };
                            return Err(f.into_error());
                        }
                    }
                }
            }
            State::Open { wrote, failed } => {
                if self.client.conn.as_ref().is_none_or(|c| c.pg.is_closed()) {
                    self.state = State::Ended;
                    self.client.drop_conn();
                    return Err(Error::Rerouted {
                        cause: "the connection was lost".into(),
                    });
                }
                match self.client.send(&[], op).await {
                    Ok(r) => {
                        self.state = State::Open {
                            wrote: wrote || writes,
                            failed,
                        };
                        Ok(r)
                    }
                    Err(f) => match decide(Position::LaterInTransaction, f.cause) {
                        Decision::RolledBack => {
                            tracing::info!(why = %f.why, "transaction rerouted: rolled back");
                            self.state = State::Ended;
                            self.client.drop_conn();
                            Err(Error::Rerouted { cause: f.why })
                        }
                        _ => {
                            self.state = State::Open {
                                wrote: wrote || writes,
                                failed: true,
                            };
                            Err(f.into_error())
                        }
                    },
                }
            }
        }
    }

    /// Commit. When the COMMIT's reply is lost (connection loss, failover,
    /// statement timeout), the outcome is asked of the (new) primary through
    /// the transaction's commit token.
    pub async fn commit(mut self) -> Result<Committed, Error> {
        let state = std::mem::replace(&mut self.state, State::Ended);
        let (wrote, failed) = match state {
            State::Ended => return Err(Error::TransactionEnded),
            State::NotStarted => return Ok(Committed::Nothing),
            State::Open { wrote, failed } => (wrote, failed),
        };
        if failed {
            // PostgreSQL answers COMMIT of a failed block with ROLLBACK.
            let _ = self.client.send(&[], Op::Simple("ROLLBACK")).await;
            return Err(Error::NotCommitted {
                token: self.token.clone(),
                cause: "a statement of the transaction failed; it was rolled back".into(),
            });
        }
        if self.client.conn.as_ref().is_none_or(|c| c.pg.is_closed()) {
            // The COMMIT was never sent: the server rolled the block back.
            self.client.drop_conn();
            return if wrote {
                Err(Error::Rerouted {
                    cause: "the connection was lost before COMMIT".into(),
                })
            } else {
                Ok(Committed::Nothing)
            };
        }
        let f = match self.client.send(&[], Op::Simple("COMMIT")).await {
            Ok(_) => return Ok(Committed::Acknowledged),
            Err(f) => f,
        };
        let host = self.client.conn.as_ref().map(|c| c.addr.clone());
        match decide(Position::Commit { wrote }, f.cause) {
            Decision::Fail => Err(f.into_error()),
            Decision::Succeed => {
                self.client.drop_conn();
                Ok(Committed::Nothing)
            }
            Decision::ResolveOutcome => {
                tracing::info!(why = %f.why, token = %self.token, "COMMIT's reply lost: resolving through its commit token");
                let mut call = self.client.call();
                self.client.note_failure(&mut call, host.as_ref(), &f);
                match self.client.resolve(&mut call, &self.token, &f.why).await? {
                    Outcome::Committed { epoch, at } => Ok(Committed::Resolved { epoch, at }),
                    Outcome::NotCommitted => Err(Error::NotCommitted {
                        token: self.token.clone(),
                        cause: f.why,
                    }),
                }
            }
            Decision::RolledBack | Decision::Retry => {
                self.client.drop_conn();
                Err(Error::Rerouted { cause: f.why })
            }
        }
    }

    /// Roll back. A lost connection rolled it back already: that is success.
    pub async fn rollback(mut self) -> Result<(), Error> {
        let state = std::mem::replace(&mut self.state, State::Ended);
        if let State::Open { .. } = state {
            if self.client.send(&[], Op::Simple("ROLLBACK")).await.is_err() {
                self.client.drop_conn();
            }
        }
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if let State::Open { .. } = self.state {
            self.client.needs_rollback = true;
        }
    }
}
