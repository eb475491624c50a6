//! The etcd arbiter: the lease record is the value of one key, and the
//! conditional write is a transaction on that key's revisions.
//!
//! - `write(None, r)`: `If(create_revision(key) == 0) Then(Put(key, r), Get(key))`
//!   — etcd reports an absent key's create revision as 0.
//! - `write(Some(v), r)`: `If(mod_revision(key) == v) Then(Put(key, r), Get(key))`.
//!
//! The [`Version`] is the key's mod revision, in decimal. It is taken from the
//! `Get` inside the same transaction, which runs atomically right after the
//! `Put`, so it is the revision of *this* write and not of a later one.
//! Revisions are cluster-wide and only grow, so a key deleted and created
//! again never comes back at a version a writer once read (no ABA). A version
//! that is not a positive integer matches nothing and is a
//! [`ArbiterError::Conflict`] without a round trip; in particular `"0"` is
//! refused, because etcd would compare an absent key's mod revision, 0, equal
//! to it and create the key.
//!
//! **No etcd leases or TTLs.** When a lease is renewed, expires or may be
//! taken over is decided by the pure rules in `hadr_ha::lease` on the node's
//! own monotonic clock, identically for every backend (a file, S3, etcd).
//! An etcd lease would be a second timer, on the server's clock, that can
//! delete the key while the holder's rules still say it holds it (or keep it
//! after they say it expired), and the rules' safety argument would have to
//! be made again for that one backend. So etcd is used only as what every
//! backend must be — a linearizable compare-and-swap register — and there is
//! one set of lease rules, proven once, for all of them.
//!
//! Reads are linearizable (etcd's default, not `serializable`), and the client
//! asks for a leader (`require_leader`), so a member cut off from its quorum
//! never answers with a stale record: it times out until it notices it has
//! no leader, and from then on refuses at once.
//!
//! Every call, connecting included, is bounded by the timeout (2 s unless
//! [`EtcdArbiter::with_timeout`] says otherwise): etcd-client's own request
//! timeout and a connect timeout of half of it, and a `tokio::time::timeout`
//! around each attempt with what is left of the call's budget.
//!
//! **Members.** etcd-client balances requests over all its endpoints and does
//! not skip a dead one (etcdv3/etcd-client#12, #39): with one member of three
//! down, a share of the calls fails. So there is one client per member,
//! connected on first use and dropped after any error or timeout (the next
//! use connects afresh). A call goes to the member that last answered; when a
//! member fails it, the next call starts at the next member. Within one call,
//! a read goes on to the next member after any failure; a write only after
//! a failure that proves the member never took it — the TCP connect failed,
//! or the member said it has no leader — because a write sent and not
//! answered may still land, and sending it again elsewhere would then report
//! a conflict with ourselves. Such a write ends the call as `Timeout` or
//! `Unavailable`; the caller finds out whether it landed by reading (its
//! record names it, with its token and nonce).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::Mutex;

use crate::{Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, Stored, Version};

/// How long one call may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC status codes (fixed by the gRPC specification).
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAVAILABLE: i32 = 14;
const GRPC_UNAUTHENTICATED: i32 = 16;

/// What etcd answers, with `require_leader`, when the member has no leader
/// (etcd's `rpctypes.ErrNoLeader`): it refused before proposing anything.
const NO_LEADER: &str = "etcdserver: no leader";

/// A key in etcd.
pub struct EtcdArbiter {
    conn: Arc<Connection>,
    key: String,
}

/// What an arbiter and its probe share: the members, the timeout, a client
/// per member once connected, and which member answered last.
struct Connection {
    endpoints: Vec<String>,
    timeout: Duration,
    clients: Vec<Mutex<Option<Client>>>,
    preferred: AtomicUsize,
}

/// Whether a call may be sent to another member after a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read: always.
    Any,
    /// A write: only if the member surely never took it.
    Undelivered,
}

impl EtcdArbiter {
    /// A key in etcd, reached through any of `endpoints` (`host:port`, or a
    /// URL with `http://`). Nothing is connected until the first call.
    pub fn new(endpoints: Vec<String>, key: String) -> EtcdArbiter {
        EtcdArbiter {
            conn: Arc::new(Connection::new(endpoints, DEFAULT_TIMEOUT)),
            key,
        }
    }

    /// The same arbiter with another bound on each call.
    pub fn with_timeout(self, timeout: Duration) -> EtcdArbiter {
        EtcdArbiter {
            conn: Arc::new(Connection::new(self.conn.endpoints.clone(), timeout)),
            key: self.key,
        }
    }

    fn endpoint(&self) -> String {
        format!("etcd://{}{}", self.conn.endpoints.join(","), self.key)
    }

    fn unavailable(&self, message: impl Into<String>) -> ArbiterError {
        ArbiterError::Unavailable {
            endpoint: self.endpoint(),
            message: message.into(),
        }
    }

    fn timeout(&self) -> ArbiterError {
        ArbiterError::Timeout {
            endpoint: self.endpoint(),
            timeout: self.conn.timeout,
        }
    }

    /// Our error for member `member`'s failure.
    fn map_error(&self, member: &str, e: &etcd_client::Error) -> ArbiterError {
        let etcd_client::Error::GRpcStatus(status) = e else {
            return self.unavailable(format!("{member}: {e}"));
        };
        match i32::from(status.code()) {
            GRPC_DEADLINE_EXCEEDED => self.timeout(),
            // tonic reports its own request timeout as "cancelled".
            GRPC_CANCELLED if status.message().contains("Timeout expired") => self.timeout(),
            GRPC_PERMISSION_DENIED | GRPC_UNAUTHENTICATED => {
                ArbiterError::Credentials(format!("{member}: {}", status.message()))
            }
            _ => self.unavailable(format!(
                "{member}: {:?}: {}",
                status.code(),
                status.message()
            )),
        }
    }

    /// Run `op` on a member within the timeout: the preferred member first,
    /// then, as `retry` allows, the others.
    async fn call<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, ArbiterError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let conn = &self.conn;
        let started = Instant::now();
        let n = conn.endpoints.len();
        if n == 0 {
            return Err(self.unavailable("no etcd endpoints given"));
        }
        let first = conn.preferred.load(Ordering::Relaxed) % n;
        let mut failures: Vec<ArbiterError> = Vec::new();
        for i in (first..n).chain(0..first) {
            let Some(left) = conn.timeout.checked_sub(started.elapsed()) else {
                failures.push(self.timeout());
                break;
            };
            let attempt = async { op(conn.client(i).await?).await };
            let e = match tokio::time::timeout(left, attempt).await {
                Ok(Ok(value)) => {
                    conn.preferred.store(i, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(e)) => e,
                Err(_elapsed) => {
                    // The whole budget is spent: no member is left to try.
                    conn.failed(i).await;
                    failures.push(self.timeout());
                    break;
                }
            };
            conn.failed(i).await;
            failures.push(self.map_error(&conn.endpoints[i], &e));
            if retry == Retry::Undelivered && !undelivered(&e) {
                break;
            }
        }
        Err(self.summarise(failures))
    }

    /// One error for a call that failed on one member or more: a timeout if
    /// the last attempt ran out of time, credentials if they were refused,
    /// otherwise every member's reason.
    fn summarise(&self, mut failures: Vec<ArbiterError>) -> ArbiterError {
        let last = failures.pop().unwrap_or_else(|| self.timeout());
        match last {
            ArbiterError::Unavailable { endpoint, message } => {
                let mut messages: Vec<String> = failures
                    .into_iter()
                    .map(|f| match f {
                        ArbiterError::Unavailable { message, .. } => message,
                        other => other.to_string(),
                    })
                    .collect();
                messages.push(message);
                ArbiterError::Unavailable {
                    endpoint,
                    message: messages.join("; "),
                }
            }
            other => other,
        }
    }
}

/// Did the member surely never take the request? Its TCP connect failed
/// (tonic's `ConnectError` somewhere in the chain), or it has no leader.
fn undelivered(e: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return false;
    };
    if i32::from(status.code()) == GRPC_UNAVAILABLE && status.message() == NO_LEADER {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

impl Connection {
    fn new(endpoints: Vec<String>, timeout: Duration) -> Connection {
        Connection {
            clients: endpoints.iter().map(|_| Mutex::new(None)).collect(),
            endpoints,
            timeout,
            preferred: AtomicUsize::new(0),
        }
    }

    /// Member `i`'s client, made if there is none (etcd-client connects
    /// lazily: a member that is down fails the first request, not this).
    async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        let mut slot = self.clients[i].lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let options = ConnectOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout / 2)
            .with_require_leader(true);
        let client = Client::connect([&self.endpoints[i]], Some(options)).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Member `i` failed a call: drop its client, and let the next call
    /// start at the next member (unless another call already moved on).
    async fn failed(&self, i: usize) {
        *self.clients[i].lock().await = None;
        let next = (i + 1) % self.endpoints.len();
        let _ = self
            .preferred
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The mod revision a version names, if it can name one: a positive integer.
fn revision(version: &Version) -> Option<i64> {
    version.0.parse::<i64>().ok().filter(|r| *r > 0)
}

#[async_trait::async_trait]
impl Arbiter for EtcdArbiter {
    async fn read(&self) -> Result<Option<Stored>, ArbiterError> {
        let key = self.key.clone();
        let mut resp = self
            .call(Retry::Any, |client| {
                let key = key.clone();
                async move { client.kv_client().get(key, None).await }
            })
            .await?;
        let Some(kv) = resp.take_kvs().into_iter().next() else {
            return Ok(None);
        };
        let record: LeaseRecord =
            serde_json::from_slice(kv.value()).map_err(|e| ArbiterError::Corrupt {
                endpoint: self.endpoint(),
                message: format!("{e} (mod revision {})", kv.mod_revision()),
            })?;
        Ok(Some(Stored {
            record,
            version: Version(kv.mod_revision().to_string()),
        }))
    }

    async fn write(
        &self,
        expected: Option<&Version>,
        record: &LeaseRecord,
    ) -> Result<Stored, ArbiterError> {
        let key = self.key.as_str();
        let condition = match expected {
            None => Compare::create_revision(key, CompareOp::Equal, 0),
            Some(v) => match revision(v) {
                Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
                // No stored version is that: etcd's are positive integers.
                None => return Err(ArbiterError::Conflict),
            },
        };
        let value = serde_json::to_vec(record).map_err(|e| self.unavailable(e.to_string()))?;
        let txn = Txn::new()
            .when([condition])
            .and_then([TxnOp::put(key, value, None), TxnOp::get(key, None)]);
        let resp = self
            .call(Retry::Undelivered, |client| {
                let txn = txn.clone();
                async move { client.kv_client().txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(ArbiterError::Conflict);
        }
        // The Get ran in the same transaction, right after our Put.
        let written = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        });
        let Some(rev) = written else {
            return Err(self.unavailable("etcd's transaction answer lacks the key just written"));
        };
        Ok(Stored {
            record: record.clone(),
            version: Version(rev.to_string()),
        })
    }

    fn probe(&self) -> Box<dyn Arbiter> {
        Box::new(EtcdArbiter {
            conn: self.conn.clone(),
            key: format!("{}.check", self.key),
        })
    }

    fn info(&self) -> ArbiterInfo {
        ArbiterInfo {
            kind: "etcd".into(),
            endpoint: self.endpoint(),
            stateful: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_revisions_are_versions() {
        assert_eq!(revision(&Version("17".into())), Some(17));
        for v in ["0", "-3", "", "17-not-the-stored-version", "1.5"] {
            assert_eq!(revision(&Version(v.into())), None, "{v:?}");
        }
    }

    #[tokio::test]
    async fn versions_that_name_nothing_conflict_without_connecting() {
        // Port 1 on loopback: nothing listens, but no call should even try.
        let a = EtcdArbiter::new(vec!["127.0.0.1:1".into()], "/k".into());
        for v in ["0", "x"] {
            let r = a
                .write(Some(&Version(v.into())), &LeaseRecord::default())
                .await;
            assert!(matches!(r, Err(ArbiterError::Conflict)), "{v:?}: {r:?}");
        }
        assert!(a.conn.clients[0].lock().await.is_none());
    }

    #[tokio::test]
    async fn no_endpoints_is_unavailable() {
        let a = EtcdArbiter::new(Vec::new(), "/k".into());
        assert!(matches!(
            a.read().await,
            Err(ArbiterError::Unavailable { .. })
        ));
    }

    #[test]
    fn info_and_probe() {
        let a = EtcdArbiter::new(vec!["a:1".into(), "b:2".into()], "/hadr/lease".into());
        let info = a.info();
        assert_eq!(info.kind, "etcd");
        assert!(info.stateful);
        assert_eq!(info.endpoint, "etcd://a:1,b:2/hadr/lease");
        assert_eq!(a.probe().info().endpoint, "etcd://a:1,b:2/hadr/lease.check");
    }
}
