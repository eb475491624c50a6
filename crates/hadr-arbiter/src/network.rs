//! The network tiebreaker (DB2's default): an address that must answer a
//! TCP connect — typically the gateway both nodes reach, or a host on a
//! third site.
//!
//! It is **stateless**: it keeps no record, so it cannot say who won.
//! [`Arbiter::read`] answers `Ok(None)` whenever a connect to the address
//! succeeds within the timeout (default [`DEFAULT_TIMEOUT`]), and
//! [`Arbiter::write`] "stores" any record — ignoring `expected` — whenever
//! the address answers. A node that cannot reach it loses; a node that can,
//! wins.
//!
//! # When it is unsafe
//!
//! In **any** partition in which both nodes still reach the address, both
//! win, and both may write alone: split brain. That is the common case, not
//! a corner: the link between the nodes fails (a switch port, a firewall
//! rule, a replication NIC) while each still reaches the gateway. It only
//! breaks a tie when the address sits on the very path the nodes use to
//! reach each other, so that losing one means losing the other — and even
//! then a partial outage (ICMP or SYNs passing while the heartbeat does not)
//! makes two winners. DB2 says as much: its network tiebreaker does not
//! prevent split brain, and IBM's support note "How a TSAMP cluster gets
//! into Db2 split-brain" shows both nodes pinging the default gateway,
//! both reserving the tiebreaker and both becoming primary. Use it only
//! where a lost transaction or two primaries is acceptable, or where the
//! lease rules add another guard; prefer `file`, `s3` or `etcd`.
//!
//! `info().stateful` is false, so `check` and the lease rules know.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::{Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, Stored, Version};

/// How long a connect may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// An address that must answer a TCP connect.
#[derive(Clone)]
pub struct NetArbiter {
    host: String,
    port: u16,
    timeout: Duration,
}

impl NetArbiter {
    /// An address that must answer.
    pub fn new(host: String, port: u16) -> NetArbiter {
        NetArbiter {
            host,
            port,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same, with each connect (name lookup included) bounded by
    /// `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> NetArbiter {
        self.timeout = timeout;
        self
    }

    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Ok if a TCP connect succeeds in time; the connection is closed at once.
    async fn reach(&self) -> Result<(), ArbiterError> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(stream)) => {
                drop(stream);
                Ok(())
            }
            Ok(Err(e)) => Err(ArbiterError::Unavailable {
                endpoint: self.endpoint(),
                message: format!("TCP connect failed: {e}"),
            }),
            Err(_) => Err(ArbiterError::Timeout {
                endpoint: self.endpoint(),
                timeout: self.timeout,
            }),
        }
    }
}

#[async_trait::async_trait]
impl Arbiter for NetArbiter {
    async fn read(&self) -> Result<Option<Stored>, ArbiterError> {
        self.reach().await?;
        Ok(None)
    }

    /// Ignores `expected`: there is nothing to compare with. Both halves of
    /// a partition that reach the address both get `Ok`.
    async fn write(
        &self,
        _expected: Option<&Version>,
        record: &LeaseRecord,
    ) -> Result<Stored, ArbiterError> {
        self.reach().await?;
        Ok(Stored {
            record: record.clone(),
            version: Version("net".into()),
        })
    }

    fn probe(&self) -> Box<dyn Arbiter> {
        Box::new(self.clone())
    }

    fn info(&self) -> ArbiterInfo {
        ArbiterInfo {
            kind: "net".into(),
            endpoint: self.endpoint(),
            stateful: false,
        }
    }
}
