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
//! refuses at once instead of answering with a stale record or hanging.
//!
//! Every call, connecting included, is bounded by the timeout (2 s unless
//! [`EtcdArbiter::with_timeout`] says otherwise): etcd-client's own request and
//! connect timeouts, and a `tokio::time::timeout` around the whole call. The
//! connection is made on first use and dropped after any error or timeout,
//! so the next call connects afresh. A write that timed out may still have
//! landed: the caller finds out by reading (its record names it, with its
//! token and nonce).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::Mutex;

use crate::{Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, Stored, Version};

/// How long one call may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC status codes (fixed by the gRPC specification).
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;

/// A key in etcd.
pub struct EtcdArbiter {
    conn: Arc<Connection>,
    key: String,
}

/// What an arbiter and its probe share: where etcd is, the timeout, and the
/// client once connected.
struct Connection {
    endpoints: Vec<String>,
    timeout: Duration,
    /// The client and its generation: an error drops the client only if no
    /// other call has replaced it since.
    client: Mutex<Option<(u64, Client)>>,
    generation: std::sync::atomic::AtomicU64,
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

    fn map_error(&self, e: etcd_client::Error) -> ArbiterError {
        let etcd_client::Error::GRpcStatus(status) = &e else {
            return self.unavailable(e.to_string());
        };
        let code = i32::from(status.code());
        match code {
            GRPC_DEADLINE_EXCEEDED => self.timeout(),
            // tonic reports its own request timeout as "cancelled".
            GRPC_CANCELLED if status.message().contains("Timeout expired") => self.timeout(),
            GRPC_PERMISSION_DENIED | GRPC_UNAUTHENTICATED => {
                ArbiterError::Credentials(format!("{}: {}", self.endpoint(), status.message()))
            }
            _ => self.unavailable(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    /// Run one call against etcd within the timeout, connecting first if
    /// need be; on any failure the connection is dropped.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, ArbiterError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let conn = &self.conn;
        let attempt = async {
            let (generation, client) = conn.client().await?;
            let result = op(client).await;
            Ok::<_, etcd_client::Error>((generation, result))
        };
        match tokio::time::timeout(conn.timeout, attempt).await {
            Ok(Ok((_, Ok(value)))) => Ok(value),
            Ok(Ok((generation, Err(e)))) => {
                conn.forget(Some(generation)).await;
                Err(self.map_error(e))
            }
            Ok(Err(e)) => {
                conn.forget(None).await;
                Err(self.map_error(e))
            }
            Err(_elapsed) => {
                conn.forget(None).await;
                Err(self.timeout())
            }
        }
    }
}

impl Connection {
    fn new(endpoints: Vec<String>, timeout: Duration) -> Connection {
        Connection {
            endpoints,
            timeout,
            client: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The connected client, connecting if there is none.
    async fn client(&self) -> Result<(u64, Client), etcd_client::Error> {
        let mut slot = self.client.lock().await;
        if let Some((generation, client)) = slot.as_ref() {
            return Ok((*generation, client.clone()));
        }
        let options = ConnectOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout)
            .with_require_leader(true);
        let client = Client::connect(&self.endpoints, Some(options)).await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *slot = Some((generation, client.clone()));
        Ok((generation, client))
    }

    /// Drop the client after a failure: the one of `generation`, or
    /// whichever there is (a timeout does not know which one it used).
    async fn forget(&self, generation: Option<u64>) {
        let mut slot = self.client.lock().await;
        let same = match (slot.as_ref(), generation) {
            (Some((current, _)), Some(used)) => *current == used,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if same {
            *slot = None;
        }
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
            .call(|client| async move { client.kv_client().get(key, None).await })
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
            .call(|client| async move { client.kv_client().txn(txn).await })
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
        assert!(a.conn.client.lock().await.is_none());
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
