//! A small async client for a node's admin port.

use std::sync::Arc;
use std::time::Duration;

use hadr_secrets::SecretText;
use serde::de::DeserializeOwned;

use crate::{FenceAnswer, Status, TakeoverAnswer};

/// Longest wait for one request unless [`AdminClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most characters of a response body quoted in an error.
const BODY_QUOTE_CHARS: usize = 2000;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No connection could be made (nothing listens, the host is unreachable).
    #[error("cannot reach {addr}: {detail}")]
    Connect {
        /// The admin address.
        addr: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// No complete answer within the request's time limit.
    #[error("{addr} did not answer {path} within {timeout:?}")]
    Timeout {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The connection broke before the answer was complete (a node that
    /// restarts right after answering, as a promoted standby does).
    #[error("{addr}{path}: the connection broke: {detail}")]
    Broken {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// What broke.
        detail: String,
    },
    /// The node wants a credential (HTTP 401): no token or a wrong one,
    /// or no client certificate. Nothing was done.
    #[error("the node at {addr} refused {path}: no or wrong admin credential ({detail}); pass --admin-token-file or set HADR_ADMIN_TOKEN, or (HTTPS) --admin-cert and --admin-key")]
    Unauthorized {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The node's reason (whether a token came at all).
        detail: String,
    },
    /// An answer other than the one expected (200, or 503 for a role check),
    /// with its body: a 409 from `/takeover` is a refusal and its reason.
    #[error("{addr}{path} answered {status}: {body}")]
    Http {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The HTTP status code.
        status: u16,
        /// The body, trimmed (at most 2000 characters).
        body: String,
    },
    /// A 200 whose body is not the JSON this client expects.
    #[error("{addr}{path} answered what is not the expected JSON ({detail}): {body}")]
    BadJson {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The parser's complaint.
        detail: String,
        /// The body (at most 2000 characters).
        body: String,
    },
}

impl AdminError {
    /// The phase of a node between two runs, from its 503 answer.
    pub fn not_serving(&self) -> Option<crate::NotServing> {
        match self {
            AdminError::Http {
                status: 503, body, ..
            } => serde_json::from_str(body).ok(),
            _ => None,
        }
    }

    /// The HTTP status code of an [`AdminError::Http`].
    pub fn http_status(&self) -> Option<u16> {
        match self {
            AdminError::Http { status, .. } => Some(*status),
            AdminError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// The node refused for want of the admin token (HTTP 401).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, AdminError::Unauthorized { .. })
    }

    /// A takeover (or another request) the node refused: HTTP 409.
    pub fn is_refusal(&self) -> bool {
        self.http_status() == Some(409)
    }
}

/// A client for one node's admin endpoint. Cheap to clone. Every request
/// has a time limit ([`DEFAULT_TIMEOUT`] unless set) and opens its own
/// connection: admin requests are rare, and nodes are restarted under it.
/// With a token ([`AdminClient::with_token`]) every request carries it as
/// `Authorization: Bearer …` (its `Debug` shows no token).
#[derive(Clone, Debug)]
pub struct AdminClient {
    addr: String,
    base: String,
    timeout: Duration,
    token: Option<SecretText>,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the admin endpoint at `addr` (`host:port`, or a URL
    /// starting with `http://`).
    pub fn new(addr: impl Into<String>) -> AdminClient {
        let addr = addr.into();
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let mut builder = reqwest::Client::builder().pool_max_idle_per_host(0);
        if let Some(tls) = crate::tls::without_roots() {
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder
            .build()
            // Only a TLS back end or a broken system configuration can fail
            // here; this client has neither, so fall back to the defaults.
            .unwrap_or_default();
        AdminClient {
            addr,
            base,
            timeout: DEFAULT_TIMEOUT,
            token: None,
            http,
        }
    }

    /// The same client over HTTPS, verifying the node with `tls` (and
    /// presenting its client certificate, if it has one); an address given
    /// without a scheme becomes `https://`.
    pub fn with_tls(&self, tls: Arc<rustls::ClientConfig>) -> Result<AdminClient, AdminError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .use_preconfigured_tls((*tls).clone())
            .build()
            .map_err(|e| AdminError::Connect {
                addr: self.addr.clone(),
                detail: error_chain(&e),
            })?;
        let base = match self.base.strip_prefix("http://") {
            Some(rest) if !self.addr.starts_with("http://") => format!("https://{rest}"),
            _ => self.base.clone(),
        };
        Ok(AdminClient {
            http,
            base,
            ..self.clone()
        })
    }

    /// The same client sending `token` (None: no token) with every request.
    pub fn with_token(&self, token: Option<SecretText>) -> AdminClient {
        AdminClient {
            token,
            ..self.clone()
        }
    }

    /// The same client with another time limit per request.
    pub fn with_timeout(&self, timeout: Duration) -> AdminClient {
        AdminClient {
            timeout,
            ..self.clone()
        }
    }

    /// The admin address, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The time limit per request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /status`; the node decides whether to compute the page hash
    /// (it does for databases up to 256 MiB).
    pub async fn status(&self) -> Result<Status, AdminError> {
        self.get_json("/status").await
    }

    /// `GET /status?hash=…`: with or without the page hash (computing it
    /// reads every page: allow a long time limit for a large database).
    pub async fn status_with_hash(&self, hash: bool) -> Result<Status, AdminError> {
        self.get_json(&format!("/status?hash={hash}")).await
    }

    /// `GET /primary`: whether the node is a primary that accepts writes.
    pub async fn is_primary(&self) -> Result<bool, AdminError> {
        self.role_check("/primary").await
    }

    /// `GET /standby`: whether the node is a standby.
    pub async fn is_standby(&self) -> Result<bool, AdminError> {
        self.role_check("/standby").await
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<(), AdminError> {
        self.send(reqwest::Method::GET, "/health").await.map(|_| ())
    }

    /// `POST /takeover` on a standby: graceful, or forced (`force`), only
    /// inside the peer window (`peer_window_only`). A refusal is an
    /// [`AdminError::Http`] with status 409 ([`AdminError::is_refusal`]).
    /// A graceful takeover waits for the primary's hand-over: give the
    /// client a time limit above four hadr_timeouts.
    pub async fn takeover(
        &self,
        force: bool,
        peer_window_only: bool,
    ) -> Result<TakeoverAnswer, AdminError> {
        let path = match (force, peer_window_only) {
            (false, false) => "/takeover".to_string(),
            _ => format!("/takeover?force={force}&peer_window_only={peer_window_only}"),
        };
        let body = self.send(reqwest::Method::POST, &path).await?;
        self.parse(&path, &body)
    }

    /// `POST /fence?epoch=N`: tell the node that epoch N exists.
    pub async fn fence(&self, epoch: u64) -> Result<FenceAnswer, AdminError> {
        let path = format!("/fence?epoch={epoch}");
        let body = self.send(reqwest::Method::POST, &path).await?;
        self.parse(&path, &body)
    }

    /// `POST /failover/pause?paused=BOOL`: stop (or resume) automatic
    /// promotion on this node (maintenance mode).
    pub async fn pause(&self, paused: bool) -> Result<(), AdminError> {
        let path = format!("/failover/pause?paused={paused}");
        self.send(reqwest::Method::POST, &path).await.map(|_| ())
    }

    /// `GET /files/verify`: whether the node's synced directories match
    /// its tables (hashes every file: allow time for large trees).
    pub async fn files_verify(&self) -> Result<crate::FileVerify, AdminError> {
        self.get_json("/files/verify").await
    }

    /// `POST /resources/NAME/OP` (`restart`, `disable`, `enable`).
    pub async fn resource(&self, name: &str, op: &str) -> Result<(), AdminError> {
        let path = format!("/resources/{name}/{op}");
        self.send(reqwest::Method::POST, &path).await.map(|_| ())
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, AdminError> {
        self.send(reqwest::Method::GET, "/metrics").await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let body = self.send(reqwest::Method::GET, path).await?;
        self.parse(path, &body)
    }

    fn parse<T: DeserializeOwned>(&self, path: &str, body: &str) -> Result<T, AdminError> {
        serde_json::from_str(body).map_err(|e| AdminError::BadJson {
            addr: self.addr.clone(),
            path: path.to_string(),
            detail: e.to_string(),
            body: quote(body),
        })
    }

    /// 200 → true, 503 → false.
    async fn role_check(&self, path: &str) -> Result<bool, AdminError> {
        match self.send(reqwest::Method::GET, path).await {
            Ok(_) => Ok(true),
            Err(AdminError::Http { status: 503, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One request; the body of a 200 answer.
    async fn send(&self, method: reqwest::Method, path: &str) -> Result<String, AdminError> {
        let url = format!("{}{path}", self.base);
        let exchange = async {
            let mut req = self.http.request(method, &url);
            if let Some(t) = &self.token {
                // reqwest marks the header sensitive: it is left out of its
                // own debug output.
                req = req.bearer_auth(t.expose());
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        // The request's own limit, and tokio's around it: reqwest's covers
        // connecting, sending and reading the body alike.
        let (status, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return Err(self.timed_out(path)),
            Ok(Err(e)) => return Err(self.failed(path, e)),
            Ok(Ok(answer)) => answer,
        };
        if status == 401 {
            let detail = serde_json::from_str::<crate::Unauthorized>(&body)
                .map(|u| u.detail)
                .unwrap_or_else(|_| quote(body.trim()));
            return Err(AdminError::Unauthorized {
                addr: self.addr.clone(),
                path: path.to_string(),
                detail,
            });
        }
        if status != 200 {
            return Err(AdminError::Http {
                addr: self.addr.clone(),
                path: path.to_string(),
                status,
                body: quote(body.trim()),
            });
        }
        Ok(body)
    }

    fn timed_out(&self, path: &str) -> AdminError {
        AdminError::Timeout {
            addr: self.addr.clone(),
            path: path.to_string(),
            timeout: self.timeout,
        }
    }

    fn failed(&self, path: &str, e: reqwest::Error) -> AdminError {
        let detail = error_chain(&e);
        if e.is_timeout() {
            self.timed_out(path)
        } else if e.is_connect() || e.is_builder() {
            AdminError::Connect {
                addr: self.addr.clone(),
                detail,
            }
        } else {
            AdminError::Broken {
                addr: self.addr.clone(),
                path: path.to_string(),
                detail,
            }
        }
    }
}

/// An error and its causes, "a: b: c" (reqwest's own message names only the URL).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// At most [`BODY_QUOTE_CHARS`] characters of `body`, cut at a character boundary.
fn quote(body: &str) -> String {
    match body.char_indices().nth(BODY_QUOTE_CHARS) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cut_at_character_boundaries() {
        let s = "é".repeat(BODY_QUOTE_CHARS + 5);
        let q = quote(&s);
        assert_eq!(q.chars().count(), BODY_QUOTE_CHARS + 1);
        assert!(q.ends_with('…'));
        assert_eq!(quote("short"), "short");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        // Bind, take the port, and close it again: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let c = AdminClient::new(format!("127.0.0.1:{port}"));
        let e = c.status().await.unwrap_err();
        assert!(matches!(e, AdminError::Connect { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = AdminClient::new(addr.to_string()).with_timeout(Duration::from_millis(200));
        let e = c.status().await.unwrap_err();
        assert!(matches!(e, AdminError::Timeout { .. }), "{e}");
        drop(l);
    }
}
