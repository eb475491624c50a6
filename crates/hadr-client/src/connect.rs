//! One connection to one host: TCP keepalive and `TCP_USER_TIMEOUT` set,
//! connect and start-up bounded, the node's role read from its start-up
//! ParameterStatus, and a driver task that keeps the latest `hadr.topology`
//! the node sends (at start-up and whenever it changes).

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::addr::HostAddr;
use crate::config::Config;
use crate::retry::{classify_sqlstate, Cause};

/// The ParameterStatus carrying the live topology.
pub const TOPOLOGY_PARAMETER: &str = "hadr.topology";

/// An open session on one node.
pub struct Conn {
    /// The tokio-postgres client.
    pub pg: tokio_postgres::Client,
    /// The host it is connected to.
    pub addr: HostAddr,
    /// The node said it is a standby (`in_hot_standby`) or not writable.
    pub read_only: bool,
    /// The latest `hadr.topology` value the node sent.
    pub topology: watch::Receiver<Option<String>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the client closes the session; the driver would end by
        // itself, this only makes it immediate.
        self.driver.abort();
    }
}

/// Why a connect to one host failed.
#[derive(Debug)]
pub struct ConnectFailure {
    /// Refused (try elsewhere) or an ordinary SQL error (bad password…).
    pub cause: Cause,
    /// For the error message.
    pub why: String,
}

/// The tokio-postgres configuration for `addr`.
fn pg_config(config: &Config, addr: &HostAddr) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&addr.host)
        .port(addr.port)
        .user(&config.user)
        .connect_timeout(config.connect_timeout);
    if let Some(p) = &config.password {
        pg.password(p);
    }
    if let Some(d) = &config.dbname {
        pg.dbname(d);
    }
    if let Some(a) = &config.application_name {
        pg.application_name(a);
    }
    match config.keepalives_idle {
        Some(idle) => {
            pg.keepalives(true)
                .keepalives_idle(idle)
                .keepalives_interval(config.keepalives_interval)
                .keepalives_retries(config.keepalives_count);
        }
        None => {
            pg.keepalives(false);
        }
    }
    if let Some(t) = config.tcp_user_timeout {
        pg.tcp_user_timeout(t);
    }
    pg
}

/// Connect to `addr` within `limit` (connect and start-up together:
/// tokio-postgres bounds only the TCP connect).
pub async fn open(
    config: &Config,
    addr: &HostAddr,
    limit: Duration,
) -> Result<Conn, ConnectFailure> {
    let pg = pg_config(config, addr);
    let (client, mut connection) = match tokio::time::timeout(limit, pg.connect(NoTls)).await {
        Err(_) => {
            return Err(ConnectFailure {
                cause: Cause::Refused,
                why: format!("no answer within {limit:?}"),
            })
        }
        Ok(Err(e)) => {
            let cause = match e.code() {
                // A server error at start-up other than a refusal (a wrong
                // password, an unknown database) is the same on every node;
                // trying the next host is still right: it may be a
                // different cluster member with its own settings.
                Some(code) => match classify_sqlstate(code.code(), true, false) {
                    Cause::Sql => Cause::Sql,
                    _ => Cause::Refused,
                },
                None => Cause::Refused,
            };
            return Err(ConnectFailure {
                cause,
                why: describe(&e),
            });
        }
        Ok(Ok(pair)) => pair,
    };
    let on = |name: &str| connection.parameter(name) == Some("on");
    let read_only = on("in_hot_standby") || on("default_transaction_read_only");
    let (tx, rx) = watch::channel(connection.parameter(TOPOLOGY_PARAMETER).map(String::from));
    let host = addr.to_string();
    let driver = tokio::spawn(async move {
        let end = poll_fn(|cx| loop {
            let polled = connection.poll_message(cx);
            // A ParameterStatus is absorbed by the poll (it is not a
            // message): look for a new topology after every poll.
            let now = connection.parameter(TOPOLOGY_PARAMETER);
            if now.is_some() && tx.borrow().as_deref() != now {
                tx.send_replace(now.map(String::from));
            }
            match polled {
                Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                    tracing::debug!(host = %host, notice = %n.message(), "server notice");
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(e)),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        if let Some(e) = end {
            tracing::debug!(host = %host, error = %describe(&e), "connection ended");
        }
    });
    Ok(Conn {
        pg: client,
        addr: addr.clone(),
        read_only,
        topology: rx,
        driver,
    })
}

/// A tokio-postgres error in one line, with the SQLSTATE and the I/O cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_gets_keepalive_and_a_user_timeout_by_default() {
        let c: Config = "host=a port=1 user=u dbname=d".parse().unwrap();
        let pg = pg_config(&c, &HostAddr::new("a", 1));
        assert!(pg.get_keepalives());
        assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(pg.get_keepalives_interval(), Some(Duration::from_secs(2)));
        assert_eq!(pg.get_keepalives_retries(), Some(3));
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(pg.get_ports(), [1]);
        // Turned off when asked.
        let c: Config = "host=a keepalives=0 tcp_user_timeout=0".parse().unwrap();
        let pg = pg_config(&c, &HostAddr::new("a", 1));
        assert!(!pg.get_keepalives());
        assert_eq!(pg.get_tcp_user_timeout(), None);
    }
}
