//! The client: connect to the right node, reroute when it goes away, and run
//! autocommit statements with seamless retry (the rules are in
//! [`crate::retry`]; commit tokens in [`crate::token`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::addr::HostAddr;
use crate::backoff::Backoff;
use crate::config::{Config, Target};
use crate::connect::{describe, open, Conn};
use crate::error::{Error, Tried};
use crate::hosts::{HostBook, Topology};
use crate::retry::{
    classify_sqlstate, decide, is_read_only, merely_slow, Cause, Decision, Position,
};
use crate::token::Outcome;

/// Statement parameters, as tokio-postgres takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What an autocommit `execute` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    /// Rows affected; `None` when the reply was lost in a failover and the
    /// statement's commit token proved that it committed (the count went
    /// with the reply).
    pub rows: Option<u64>,
}

/// A request to send.
#[derive(Clone, Copy)]
pub(crate) enum Op<'a> {
    Query(&'a str, Params<'a>),
    Execute(&'a str, Params<'a>),
    Simple(&'a str),
}

impl Op<'_> {
    pub(crate) fn sql(&self) -> &str {
        match self {
            Op::Query(s, _) | Op::Execute(s, _) | Op::Simple(s) => s,
        }
    }
}

/// A reply.
pub(crate) enum Reply {
    Rows(Vec<Row>),
    Count(u64),
    Done,
}

/// A failed request: what it means for retrying, and the error to give
/// the caller if it is not retried.
pub(crate) struct Failure {
    pub cause: Cause,
    pub why: String,
    pub error: Option<tokio_postgres::Error>,
    /// The client-side statement timeout expired.
    pub timed_out: bool,
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self.error {
            Some(e) => Error::Sql(e),
            None => Error::Rerouted { cause: self.why },
        }
    }
}

/// One call's budget and what it saw.
pub(crate) struct Call {
    pub deadline: Instant,
    pub budget: Duration,
    pub tried: Tried,
    /// Hosts that refused during this call: tried last.
    pub shunned: Vec<HostAddr>,
    pub retries: u32,
}

impl Call {
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub(crate) fn unavailable(&self) -> Error {
        Error::Unavailable {
            budget: self.budget,
            tried: self.tried.clone(),
        }
    }

    fn shun(&mut self, h: &HostAddr) {
        if !self.shunned.contains(h) {
            self.shunned.push(h.clone());
        }
    }
}

/// A connection to a hadr cluster that follows the primary (or a standby,
/// for reads) by itself. One session at a time; open several clients for
/// concurrency.
pub struct Client {
    pub(crate) config: Config,
    book: HostBook,
    pub(crate) conn: Option<Conn>,
    /// An explicit transaction was dropped without an end: roll it back
    /// before the next request.
    pub(crate) needs_rollback: bool,
    rng: StdRng,
}

impl Client {
    /// Connect with a libpq-style connection string (see [`Config`]).
    pub async fn connect_str(conninfo: &str) -> Result<Client, Error> {
        Client::connect(conninfo.parse()?).await
    }

    /// Connect to the node `config` asks for, within its time budget.
    pub async fn connect(config: Config) -> Result<Client, Error> {
        config.validate()?;
        let mut book = HostBook::new(config.hosts.clone());
        if let Some(path) = &config.host_cache {
            book.load_cache(path);
        }
        let mut c = Client {
            config,
            book,
            conn: None,
            needs_rollback: false,
            rng: StdRng::seed_from_u64(rand::rng().random()),
        };
        let mut call = c.call();
        let target = c.config.target.clone();
        c.ensure(&mut call, &target).await?;
        Ok(c)
    }

    /// The host of the current session, if one is open.
    pub fn host(&self) -> Option<&HostAddr> {
        self.conn.as_ref().map(|c| &c.addr)
    }

    /// The newest topology the cluster advertised (or the cached hint).
    pub fn topology(&mut self) -> Option<Topology> {
        self.sync_topology();
        self.book.topology().cloned()
    }

    /// Every host known: configured, advertised and cached.
    pub fn known_hosts(&mut self) -> Vec<HostAddr> {
        self.sync_topology();
        self.book.all()
    }

    /// The underlying tokio-postgres client of the current session, for
    /// what this client does not wrap; it does not reroute.
    pub fn raw(&self) -> Option<&tokio_postgres::Client> {
        self.conn.as_ref().map(|c| &c.pg)
    }

    /// Rows of a statement. A read-only statement is retried invisibly on
    /// the new primary after a failover; a write carries a commit token and
    /// is resolved through it (its rows cannot be recovered: see
    /// [`Error::CommittedRowsLost`]).
    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        match self.autocommit(Op::Query(sql, params)).await? {
            (Reply::Rows(r), _) => Ok(r),
            (_, token) => Err(Error::CommittedRowsLost {
                token: token.unwrap_or_default(),
                cause: "the reply was lost in a failover".into(),
            }),
        }
    }

    /// Exactly one row of a statement (as [`Client::query`]).
    pub async fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(Error::RowCount(n)),
        }
    }

    /// An autocommit statement. A write carries a fresh commit token: when
    /// its reply is lost (connection loss, failover, statement timeout) the
    /// client asks the new primary whether it committed; if it did, this
    /// returns `Executed { rows: None }`; if not, it is sent again.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<Executed, Error> {
        match self.autocommit(Op::Execute(sql, params)).await? {
            (Reply::Count(n), _) => Ok(Executed { rows: Some(n) }),
            _ => Ok(Executed { rows: None }),
        }
    }

    /// Begin an explicit transaction (sent with its first statement).
    pub fn transaction(&mut self) -> crate::Transaction<'_> {
        crate::Transaction::new(self)
    }

    pub(crate) fn call(&self) -> Call {
        Call {
            deadline: Instant::now() + self.config.reroute_timeout,
            budget: self.config.reroute_timeout,
            tried: Tried::default(),
            shunned: Vec::new(),
            retries: 0,
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.config.backoff_base,
            max: self.config.backoff_max,
        }
    }

    /// Sleep before retry number `call.retries` (the first is immediate:
    /// the new primary is usually there already); false if the budget is spent.
    pub(crate) async fn pause(&mut self, call: &mut Call) -> bool {
        if call.retries > 0 {
            let d = self
                .backoff()
                .delay(call.retries - 1, call.left(), &mut self.rng);
            tokio::time::sleep(d).await;
        }
        call.retries += 1;
        !call.left().is_zero()
    }

    /// Take in a topology the current session's node sent since last time.
    pub(crate) fn sync_topology(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !conn.topology.has_changed().unwrap_or(false) {
            return;
        }
        let value = conn.topology.borrow_and_update().clone();
        let from = conn.addr.clone();
        self.observe(&from, value.as_deref());
    }

    fn observe(&mut self, from: &HostAddr, value: Option<&str>) {
        let Some(value) = value else {
            return;
        };
        match Topology::parse(value) {
            Ok(t) => {
                if self.book.observe(t) {
                    tracing::debug!(from = %from, topology = %value, "new topology");
                    if let Some(path) = &self.config.host_cache {
                        if let Err(e) = self.book.save_cache(path) {
                            tracing::warn!(path = %path.display(), error = %e, "cannot write the host cache");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(from = %from, error = %e, "ignoring an invalid topology"),
        }
    }

    /// Drop the session (its node is gone or is the wrong one).
    pub(crate) fn drop_conn(&mut self) {
        self.sync_topology();
        self.conn = None;
        self.needs_rollback = false;
    }

    /// Make sure a live session on a node fit for `target` is open,
    /// trying every known host in rounds with backoff between them, within
    /// the call's budget.
    pub(crate) async fn ensure(&mut self, call: &mut Call, target: &Target) -> Result<(), Error> {
        self.sync_topology();
        if let Some(c) = &self.conn {
            let fits = matches!(target, Target::Standby { .. }) || !c.read_only;
            if !c.pg.is_closed() && fits {
                if self.needs_rollback {
                    self.needs_rollback = false;
                    if self.conn_rollback().await.is_ok() {
                        return Ok(());
                    }
                } else {
                    return Ok(());
                }
            }
            self.drop_conn();
        }
        let mut round = 0u32;
        loop {
            let mut queue: VecDeque<HostAddr> = VecDeque::new();
            let mut candidates = self.book.candidates(target);
            candidates.sort_by_key(|h| call.shunned.contains(h));
            queue.extend(candidates);
            let mut seen: Vec<HostAddr> = Vec::new();
            let mut fallback: Option<Conn> = None;
            let mut only_sql_errors = true;
            while let Some(addr) = queue.pop_front() {
                if seen.contains(&addr) {
                    continue;
                }
                if fallback.is_some() && call.shunned.contains(&addr) {
                    // A standby that refused this call (too stale) is
                    // worse than the primary at hand.
                    break;
                }
                seen.push(addr.clone());
                let left = call.left();
                if left.is_zero() {
                    break;
                }
                let limit = self.config.connect_timeout.min(left);
                match open(&self.config, &addr, limit).await {
                    Err(f) => {
                        if f.cause != Cause::Sql {
                            only_sql_errors = false;
                        }
                        tracing::debug!(host = %addr, why = %f.why, "cannot connect");
                        call.tried.note(&addr, f.why);
                    }
                    Ok(mut conn) => {
                        only_sql_errors = false;
                        let value = conn.topology.borrow_and_update().clone();
                        self.observe(&addr, value.as_deref());
                        // The node may have named a primary not tried yet: next.
                        if let Some(p) = self.book.topology().and_then(|t| t.primary.clone()) {
                            if !seen.contains(&p) && matches!(target, Target::Primary) {
                                queue.push_front(p);
                            }
                        }
                        for h in self.book.all() {
                            if !seen.contains(&h) && !queue.contains(&h) {
                                queue.push_back(h);
                            }
                        }
                        match (target, conn.read_only) {
                            (Target::Primary, false) | (Target::Standby { .. }, true) => {
                                if let Err(why) = self.prepare(&conn, target).await {
                                    call.tried.note(&addr, why);
                                    continue;
                                }
                                tracing::debug!(host = %addr, "connected");
                                self.conn = Some(conn);
                                return Ok(());
                            }
                            (Target::Standby { .. }, false) => {
                                call.tried.note(&addr, "the primary (a standby was wanted)");
                                if fallback.is_none() {
                                    fallback = Some(conn);
                                }
                            }
                            (Target::Primary, true) => {
                                call.tried.note(&addr, "a standby or read-only node");
                            }
                        }
                    }
                }
            }
            if let Some(conn) = fallback {
                tracing::debug!(host = %conn.addr, "no standby answered: reading from the primary");
                self.conn = Some(conn);
                return Ok(());
            }
            if only_sql_errors && !seen.is_empty() {
                // Every node refused the login itself: waiting will not help.
                return Err(call.unavailable());
            }
            let left = call.left();
            if left.is_zero() {
                return Err(call.unavailable());
            }
            let d = self.backoff().delay(round, left, &mut self.rng);
            tracing::debug!(round, delay = ?d, "no node fit; backing off");
            tokio::time::sleep(d).await;
            round = round.saturating_add(1);
        }
    }

    /// Session settings for the target; an error text if the node refuses them.
    async fn prepare(&self, conn: &Conn, target: &Target) -> Result<(), String> {
        if let Target::Standby {
            max_replay_lag: Some(lag),
        } = target
        {
            if conn.read_only {
                let sql = format!("SET hadr.max_replay_lag = '{}ms'", lag.as_millis());
                let set =
                    tokio::time::timeout(self.config.connect_timeout, conn.pg.batch_execute(&sql));
                match set.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(describe(&e)),
                    Err(_) => return Err("no answer to SET hadr.max_replay_lag".into()),
                }
            }
        }
        Ok(())
    }

    async fn conn_rollback(&mut self) -> Result<(), ()> {
        let Some(c) = &self.conn else { return Err(()) };
        let limit = self.config.connect_timeout;
        match tokio::time::timeout(limit, c.pg.batch_execute("ROLLBACK")).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Send `op` on the current session, `first` pipelined before it, within the
    /// statement timeout (on expiry: a cancel request, and the session is
    /// treated as lost).
    pub(crate) async fn send(&mut self, first: &[String], op: Op<'_>) -> Result<Reply, Failure> {
        let Some(conn) = self.conn.as_ref() else {
            return Err(Failure {
                cause: Cause::Lost,
                why: "no session".into(),
                error: None,
                timed_out: false,
            });
        };
        let wants_primary = matches!(self.config.target, Target::Primary);
        let fut = pipelined(&conn.pg, first, op);
        let res = match self.config.statement_timeout {
            None => fut.await,
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => {
                    let token = conn.pg.cancel_token();
                    let limit = self.config.connect_timeout;
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(limit, token.cancel_query(tokio_postgres::NoTls))
                                .await;
                    });
                    return Err(Failure {
                        cause: Cause::Lost,
                        why: format!(
                            "{}: no reply within the statement timeout ({t:?})",
                            conn.addr
                        ),
                        error: None,
                        timed_out: true,
                    });
                }
            },
        };
        res.map_err(|e| {
            let cause = match e.code() {
                Some(c) => classify_sqlstate(c.code(), wants_primary, conn.read_only),
                // No SQLSTATE: the connection itself failed.
                None => Cause::Lost,
            };
            Failure {
                cause,
                why: format!("{}: {}", conn.addr, describe(&e)),
                error: (cause == Cause::Sql).then_some(e),
                timed_out: false,
            }
        })
    }

    /// An autocommit statement with seamless retry; returns the reply and
    /// the commit token it carried (if a write).
    async fn autocommit(&mut self, op: Op<'_>) -> Result<(Reply, Option<String>), Error> {
        let read = is_read_only(op.sql());
        let position = if read {
            Position::AutocommitRead
        } else {
            Position::AutocommitWrite
        };
        let mut call = self.call();
        let target = self.config.target.clone();
        let mut timed_out_on = None;
        loop {
            self.ensure(&mut call, &target).await?;
            self.still_slow(&timed_out_on)?;
            let token = (!read).then(crate::token::new_token);
            let set: Vec<String> = token
                .iter()
                .map(|t| crate::token::set_token_sql(t))
                .collect();
            let f = match self.send(&set, op).await {
                Ok(reply) => return Ok((reply, token)),
                Err(f) => f,
            };
            let host = self.conn.as_ref().map(|c| c.addr.clone());
            if f.timed_out {
                timed_out_on = host.clone();
            }
            match decide(position, f.cause) {
                Decision::Fail => return Err(f.into_error()),
                Decision::Retry => {
                    tracing::info!(why = %f.why, "statement not run: retrying on the primary");
                    self.note_failure(&mut call, host.as_ref(), &f);
                }
                Decision::ResolveOutcome => {
                    tracing::info!(why = %f.why, "write's reply lost: resolving through its commit token");
                    self.note_failure(&mut call, host.as_ref(), &f);
                    let tok = token.unwrap_or_default();
                    match self.resolve(&mut call, &tok, &f.why).await? {
                        Outcome::Committed { .. } => return Ok((Reply::Done, Some(tok))),
                        Outcome::NotCommitted => {
                            tracing::info!(token = %tok, "the write did not commit: sending it again");
                        }
                    }
                }
                // Not reachable for autocommit positions (see the retry table).
                Decision::RolledBack | Decision::Succeed => return Err(f.into_error()),
            }
            if !self.pause(&mut call).await {
                return Err(call.unavailable());
            }
        }
    }

    /// After a statement timeout, the client reconnected: if it is to the
    /// node that did not answer, that node still serves and the statement
    /// is merely slow (it was cancelled, and did not commit): say so rather
    /// than send it again.
    pub(crate) fn still_slow(&self, timed_out_on: &Option<HostAddr>) -> Result<(), Error> {
        match self.config.statement_timeout {
            Some(timeout) if merely_slow(timed_out_on.as_ref(), self.host()) => {
                Err(Error::StatementTimeout {
                    timeout,
                    host: self.host().map(|h| h.to_string()).unwrap_or_default(),
                })
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn note_failure(&mut self, call: &mut Call, host: Option<&HostAddr>, f: &Failure) {
        if let Some(h) = host {
            call.tried.note(h, f.why.clone());
            if f.cause == Cause::Refused {
                call.shun(h);
            }
        }
        self.drop_conn();
    }
}

/// Send the simple statements `first` and then `op`, pipelined:
/// tokio-postgres queues a request on its future's first poll, so polling
/// each of `first` once, in order, before `op` keeps their order on the
/// wire without waiting for their replies.
async fn pipelined(
    pg: &tokio_postgres::Client,
    first: &[String],
    op: Op<'_>,
) -> Result<Reply, tokio_postgres::Error> {
    let main = async {
        match op {
            Op::Query(sql, p) => pg.query(sql, p).await.map(Reply::Rows),
            Op::Execute(sql, p) => pg.execute(sql, p).await.map(Reply::Count),
            Op::Simple(sql) => pg.batch_execute(sql).await.map(|()| Reply::Done),
        }
    };
    type Pre<'p> = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'p>>;
    let mut pres: Vec<(Pre<'_>, Option<Result<(), tokio_postgres::Error>>)> = Vec::new();
    for sql in first {
        let mut f: Pre<'_> = Box::pin(pg.batch_execute(sql));
        let early = poll_fn(|cx| {
            Poll::Ready(match f.as_mut().poll(cx) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            })
        })
        .await;
        pres.push((f, early));
    }
    let pre = async {
        let mut first_err = None;
        for (f, early) in pres {
            let r = match early {
                Some(r) => r,
                None => f.await,
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err
    };
    let (pre_err, res) = tokio::join!(pre, main);
    match (pre_err, res) {
        (_, Err(e)) => Err(e),
        (Some(e), Ok(r)) => {
            // The statement itself succeeded: report that, not the preamble.
            tracing::warn!(error = %describe(&e), "a pipelined session statement failed");
            Ok(r)
        }
        (None, Ok(r)) => Ok(r),
    }
}

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
