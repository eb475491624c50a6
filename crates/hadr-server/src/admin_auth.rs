//! Who may use the admin endpoint (docs/security.md §Admin endpoint).
//!
//! Every request that is not a GET or HEAD changes something (`/takeover`,
//! `/fence`, `/failover/pause`, `/resources/NAME/OP`, and any path added
//! later), so it needs a credential: the admin token as `Authorization:
//! Bearer TOKEN`, or, on an HTTPS admin port with `admin_tls_client_ca_file`,
//! a client certificate that CA signed (verified in the handshake,
//! crates/hadr-server/src/admin_http.rs). The reads need one only with
//! `admin_require_token_for_reads`. Without any credential configured a
//! node accepts state-changing requests only from loopback on a loopback
//! port (Config::validate refuses a node whose port others can reach,
//! unless `insecure_admin`). [`AdminAuth::decide`] is the
//! rule, without I/O; [`guard`] applies it to every request of the admin
//! router and of the gate (crates/hadr-server/src/gate.rs), and logs each
//! state-changing request: who, what, from where, and the outcome. The token
//! itself is never logged, nor echoed in an answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hadr_admin_api::token::TokenError;
use hadr_secrets::SecretText;
use tracing::{info, warn};

use crate::config::Config;

/// Why the admin credentials could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminAuthError {
    /// The token file is unreadable, readable by others, empty or malformed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Who made a request that was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A read on an endpoint open to all (no token asked).
    Open,
    /// The request carried the right token.
    Token,
    /// The request came with a client certificate the admin CA signed.
    Certificate,
    /// No token is configured and the request came over loopback to a
    /// loopback port.
    AnonymousLoopback,
    /// No token is configured and `insecure_admin` accepts anyone.
    AnonymousInsecure,
}

impl Caller {
    /// The word the log uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Open => "anonymous",
            Caller::Token => "token ok",
            Caller::Certificate => "client certificate",
            Caller::AnonymousLoopback => "anonymous-loopback",
            Caller::AnonymousInsecure => "anonymous-insecure",
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It carried no `Authorization` header.
    #[error("this request needs the admin token: send the header Authorization: Bearer TOKEN")]
    NoToken,
    /// Its `Authorization` header is not `Bearer TOKEN`.
    #[error("the Authorization header is not of the form Bearer TOKEN")]
    NotBearer,
    /// It carried a token that is not this node's.
    #[error("the admin token sent is not this node's")]
    WrongToken,
    /// It carried neither a client certificate nor a token, and both would do.
    #[error("this request needs a credential: an admin client certificate (HTTPS), or the header Authorization: Bearer TOKEN")]
    NoCredential,
    /// Only a client certificate would do, and it came without one.
    #[error(
        "this request needs an admin client certificate (the node has no admin token configured)"
    )]
    NoCertificate,
    /// No credential is configured, and the request did not come over
    /// loopback to a loopback port.
    #[error("this node has no admin token configured (admin_token_file), so it accepts state-changing requests from loopback only")]
    NotLoopback,
}

impl Refusal {
    /// The HTTP status: 401 for a missing or wrong credential, 403 where no
    /// credential could help.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NotLoopback => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The admin endpoint's credentials and rules, set up once per process.
/// Its `Debug` shows no token.
#[derive(Debug)]
pub struct AdminAuth {
    token: Option<SecretText>,
    /// Client certificates signed by the admin CA are a credential.
    certs: bool,
    require_for_reads: bool,
    loopback_port: bool,
    insecure: bool,
}

impl AdminAuth {
    /// The rules of `config`, with the token read from `admin_token_file`
    /// (refused unless only its owner can read it).
    pub fn load(config: &Config) -> Result<AdminAuth, AdminAuthError> {
        let token = match &config.admin_token_file {
            Some(path) => {
                let t = hadr_admin_api::token::read_token_file(path)?;
                let reads = if config.admin_require_token_for_reads {
                    "need it too"
                } else {
                    "open"
                };
                info!(
                    file = %path.display(),
                    reads,
                    "admin endpoint: state-changing requests need the admin token"
                );
                Some(t)
            }
            None => None,
        };
        let mut auth = AdminAuth::new(
            token,
            config.admin_require_token_for_reads,
            config.admin,
            config.insecure_admin,
        );
        if let Some(ca) = &config.admin_tls_client_ca_file {
            info!(ca = %ca.display(), "admin endpoint: client certificates signed by this CA are a credential");
            auth = auth.with_client_certificates();
        }
        if auth.token.is_none() && !auth.certs {
            if auth.loopback_port {
                info!(admin = %config.admin, "admin endpoint: no admin token configured; state-changing requests are accepted from loopback only");
            } else {
                warn!(admin = %config.admin, "admin endpoint: no admin token configured and insecure_admin is set: anyone who reaches this port may take over or fence this node");
            }
        }
        Ok(auth)
    }

    /// Rules from their parts: `admin` is the admin listen address.
    pub fn new(
        token: Option<SecretText>,
        require_for_reads: bool,
        admin: SocketAddr,
        insecure: bool,
    ) -> AdminAuth {
        AdminAuth {
            token,
            certs: false,
            require_for_reads,
            loopback_port: is_loopback(admin.ip()),
            insecure,
        }
    }

    /// The same rules, with client certificates signed by the admin CA a
    /// credential too.
    pub fn with_client_certificates(self) -> AdminAuth {
        AdminAuth {
            certs: true,
            ..self
        }
    }

    /// The rule: may a request (`changes_state`: anything but GET and
    /// HEAD) with this `Authorization` header value, from `peer`, that came
    /// with a verified client certificate or not (`certified`), go on?
    pub fn decide(
        &self,
        changes_state: bool,
        authorization: Option<&[u8]>,
        certified: bool,
        peer: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        if self.certs && certified {
            return Ok(Caller::Certificate);
        }
        if !changes_state && !self.require_for_reads && (self.token.is_some() || self.certs) {
            return Ok(Caller::Open);
        }
        let Some(token) = &self.token else {
            if self.certs {
                return Err(Refusal::NoCertificate);
            }
            if !changes_state {
                return Ok(Caller::Open);
            }
            if self.loopback_port && peer.is_some_and(is_loopback) {
                return Ok(Caller::AnonymousLoopback);
            }
            if self.insecure {
                return Ok(Caller::AnonymousInsecure);
            }
            return Err(Refusal::NotLoopback);
        };
        let missing = if self.certs {
            Refusal::NoCredential
        } else {
            Refusal::NoToken
        };
        let sent = bearer(authorization.ok_or(missing)?).ok_or(Refusal::NotBearer)?;
        if token.matches(sent) {
            Ok(Caller::Token)
        } else {
            Err(Refusal::WrongToken)
        }
    }
}

/// Whether a request with `method` changes anything: all but GET and HEAD
/// (the router's POSTs, and whatever is added later).
pub fn changes_state(method: &Method) -> bool {
    !(method == Method::GET || method == Method::HEAD)
}

/// The token of `Bearer TOKEN` (the scheme in any case, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The middleware: refuses what [`AdminAuth::decide`] refuses (a JSON
/// [`hadr_admin_api::Unauthorized`] body, nothing done), and logs every
/// state-changing request before and after it runs.
pub async fn guard(State(auth): State<Arc<AdminAuth>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let cert = req
        .extensions()
        .get::<crate::admin_http::PeerCert>()
        .map(|c| c.name.clone());
    let from = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let changes = changes_state(req.method());
    let what = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str())
    );
    let decided = auth.decide(
        changes,
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        cert.is_some(),
        peer.map(|p| p.ip()),
    );
    let caller = match (decided, &cert) {
        (Ok(Caller::Certificate), Some(name)) => format!("client certificate {name:?}"),
        (Ok(c), _) => c.as_str().to_string(),
        (Err(refusal), _) => {
            warn!(request = %what, peer = %from, reason = %refusal, "admin request refused");
            return refused(refusal);
        }
    };
    if !changes {
        return next.run(req).await;
    }
    // Logged before it runs too: a takeover or a fence may end this run
    // (and this task) right after it answers.
    info!(request = %what, caller = %caller, peer = %from, "admin request");
    let resp = next.run(req).await;
    info!(
        request = %what,
        caller = %caller,
        peer = %from,
        status = resp.status().as_u16(),
        "admin request done"
    );
    resp
}

fn refused(r: Refusal) -> Response {
    let body = hadr_admin_api::Unauthorized {
        error: "unauthorized".into(),
        detail: r.to_string(),
    };
    let mut resp = (r.status(), Json(body)).into_response();
    if r.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hadr admin\""),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn auth(token: bool, reads: bool, admin: &str, insecure: bool) -> AdminAuth {
        AdminAuth::new(
            token.then(|| SecretText::new(TOKEN)),
            reads,
            admin.parse().unwrap(),
            insecure,
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn with_a_token_every_change_needs_it_and_reads_are_open_unless_asked() {
        let a = auth(true, false, "10.0.0.1:8433", false);
        let good = format!("Bearer {TOKEN}");
        let peer = ip("10.0.0.9");
        assert_eq!(
            a.decide(true, Some(good.as_bytes()), false, peer),
            Ok(Caller::Token)
        );
        let lower = format!("bearer   {TOKEN} ");
        assert_eq!(
            a.decide(true, Some(lower.as_bytes()), false, peer),
            Ok(Caller::Token)
        );
        assert_eq!(a.decide(true, None, false, peer), Err(Refusal::NoToken));
        // Loopback is no excuse once a token is configured.
        assert_eq!(
            a.decide(true, None, false, ip("127.0.0.1")),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            a.decide(
                true,
                Some(&b"Bearer 0123456789abcdef-tokeN"[..]),
                false,
                peer
            ),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            a.decide(true, Some(&b"Bearer 0123456789abcdef"[..]), false, peer),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            a.decide(true, Some(TOKEN.as_bytes()), false, peer),
            Err(Refusal::NotBearer)
        );
        assert_eq!(
            a.decide(true, Some(&b"Basic dXNlcjpwYXNz"[..]), false, peer),
            Err(Refusal::NotBearer)
        );
        assert_eq!(
            a.decide(true, Some(&b"Bearer "[..]), false, peer),
            Err(Refusal::NotBearer)
        );
        assert_eq!(a.decide(false, None, false, peer), Ok(Caller::Open));

        let strict = auth(true, true, "10.0.0.1:8433", false);
        assert_eq!(
            strict.decide(false, None, false, peer),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            strict.decide(false, Some(good.as_bytes()), false, peer),
            Ok(Caller::Token)
        );
    }

    #[test]
    fn without_a_token_changes_come_over_loopback_only_unless_insecure() {
        let a = auth(false, false, "127.0.0.1:8433", false);
        assert_eq!(
            a.decide(true, None, false, ip("127.0.0.1")),
            Ok(Caller::AnonymousLoopback)
        );
        assert_eq!(
            a.decide(true, None, false, ip("::ffff:127.0.0.1")),
            Ok(Caller::AnonymousLoopback)
        );
        assert_eq!(a.decide(true, None, false, None), Err(Refusal::NotLoopback));
        assert_eq!(a.decide(false, None, false, None), Ok(Caller::Open));

        let exposed = auth(false, false, "0.0.0.0:8433", false);
        assert_eq!(
            exposed.decide(true, None, false, ip("127.0.0.1")),
            Err(Refusal::NotLoopback)
        );
        assert_eq!(
            exposed.decide(true, None, false, ip("10.0.0.9")),
            Err(Refusal::NotLoopback)
        );

        let insecure = auth(false, false, "0.0.0.0:8433", true);
        assert_eq!(
            insecure.decide(true, None, false, ip("10.0.0.9")),
            Ok(Caller::AnonymousInsecure)
        );
    }

    #[test]
    fn client_certificates_are_a_credential_when_the_admin_ca_is_set() {
        let peer = ip("10.0.0.9");
        let good = format!("Bearer {TOKEN}");
        // Certificates only: reads are open, changes need one.
        let certs = auth(false, false, "0.0.0.0:8433", false).with_client_certificates();
        assert_eq!(
            certs.decide(true, None, true, peer),
            Ok(Caller::Certificate)
        );
        assert_eq!(
            certs.decide(true, None, false, peer),
            Err(Refusal::NoCertificate)
        );
        assert_eq!(
            certs.decide(true, None, false, ip("127.0.0.1")),
            Err(Refusal::NoCertificate)
        );
        assert_eq!(
            certs.decide(true, Some(good.as_bytes()), false, peer),
            Err(Refusal::NoCertificate)
        );
        assert_eq!(certs.decide(false, None, false, peer), Ok(Caller::Open));
        // Certificates or the token.
        let both = auth(true, true, "0.0.0.0:8433", false).with_client_certificates();
        assert_eq!(
            both.decide(false, None, true, peer),
            Ok(Caller::Certificate)
        );
        assert_eq!(
            both.decide(true, Some(good.as_bytes()), false, peer),
            Ok(Caller::Token)
        );
        assert_eq!(
            both.decide(false, None, false, peer),
            Err(Refusal::NoCredential)
        );
        assert_eq!(
            both.decide(true, None, false, peer),
            Err(Refusal::NoCredential)
        );
        // A certificate counts only where the admin CA is configured (the
        // handshake asks for none otherwise).
        let token_only = auth(true, false, "0.0.0.0:8433", false);
        assert_eq!(
            token_only.decide(true, None, true, peer),
            Err(Refusal::NoToken)
        );
    }

    #[test]
    fn only_get_and_head_are_reads() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert!(changes_state(&m), "{m}");
        }
    }

    #[test]
    fn the_rules_print_no_token() {
        let shown = format!("{:?}", auth(true, false, "127.0.0.1:1", false));
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}
