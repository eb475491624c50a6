//! Resolving a commit token on the primary: a COMMIT (or an autocommit
//! write) whose reply was lost is asked about on the (new) primary within
//! the call's time budget (the token itself: [`crate::token`]).

use tokio_postgres::SimpleQueryMessage;

use crate::client::{Call, Client};
use crate::config::Target;
use crate::connect::describe;
use crate::error::Error;
use crate::retry::{classify_sqlstate, Cause};
use crate::token::{outcome_sql, parse_outcome, Outcome};

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
