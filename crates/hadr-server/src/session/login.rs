//! Authentication of a client after its StartupMessage: the first access
//! rule that matches decides (crates/hadr-auth/src/rules.rs); `scram-sha-256`
//! runs the SCRAM exchange (crates/hadr-auth/src/scram.rs) over
//! AuthenticationSASL / SASLContinue / SASLFinal. AuthenticationOk itself
//! is sent by the greeting (startup.rs).
//!
//! A wrong password and an unknown user get the same exchange and the same
//! message. Every failure is logged with the user and the source address,
//! never the password; password failures are counted against the source,
//! and a source over the limit is refused a password exchange at once
//! (crates/hadr-auth/src/limiter.rs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hadr_auth::scram::{self, Credentials, ScramError, ScramStart};
use hadr_auth::{Decision, Method, Refusal, Request, Verifier};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tracing::{info, warn};

use super::startup::ConnInfo;
use super::wire::{Stream, Wire, WireError};
use crate::auth::roles::{self, RoleRow};
use crate::auth::{random_bytes, Access};
use crate::errors::{sqlstate, PgError};
use crate::node::Node;

/// How a login attempt ended.
pub enum Login {
    /// In, with these rights.
    Accepted(Access),
    /// The client left during the exchange (libpq does when it has no
    /// password to send: "fe_sendauth: no password supplied").
    Left,
}

/// Authenticate the client of a StartupMessage with `params`.
pub fn authenticate<S: Stream>(
    node: &Node,
    wire: &mut Wire<S>,
    conn: &ConnInfo,
    params: &BTreeMap<String, String>,
) -> Result<Login, PgError> {
    let ip = conn.peer.ip().to_canonical();
    let user = params.get("user").cloned().unwrap_or_default();
    if user.is_empty() {
        return Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        ));
    }
    let database = params
        .get("database")
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| user.clone());
    let tls = conn.tls.as_ref();
    let auth = &node.auth;
    let req = Request {
        tls: tls.is_some(),
        database: &database,
        user: &user,
        addr: ip,
        client_cn: tls.and_then(|t| t.client_cn.as_deref()),
    };
    let ssl = if tls.is_some() { "SSL on" } else { "SSL off" };
    // Every failure is logged; only password failures count against the
    // source: the other refusals hold nothing to guess, and counting them
    // would let anyone on a host lock out its `trust` logins.
    let refuse = |reason: &str, e: PgError| -> PgError {
        warn!(user = %user, source = %ip, database = %database, reason, "failed login");
        e
    };
    let fail = |reason: &str, e: PgError| -> PgError {
        auth.failed(ip);
        refuse(reason, e)
    };
    let role = || -> Result<Option<RoleRow>, PgError> {
        let meta = node.meta.lock().unwrap_or_else(|p| p.into_inner());
        roles::lookup(&meta, &user).map_err(|e| {
            PgError::fatal(
                sqlstate::INTERNAL_ERROR,
                format!("cannot read the roles: {e}"),
            )
        })
    };
    let not_permitted = || {
        PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("role \"{user}\" is not permitted to log in"),
        )
    };
    match auth.rules.decide(&req) {
        Decision::Refuse(Refusal::NoRule) => Err(refuse(
            "no access rule",
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "no access rule for host \"{ip}\", user \"{user}\", database \"{database}\", {ssl}"
                ),
            ),
        )),
        Decision::Refuse(Refusal::Reject(i)) => Err(refuse(
            "rejected by an access rule",
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "access rule {} rejects connection for host \"{ip}\", user \"{user}\", database \"{database}\", {ssl}",
                    i + 1
                ),
            ),
        )),
        Decision::Refuse(Refusal::Cert(_)) => Err(refuse(
            "no client certificate for this user",
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!("certificate authentication failed for user \"{user}\""),
            ),
        )),
        Decision::Allow => {
            let cert = auth.rules.find(&req).map(|(_, r)| r.method) == Some(Method::Cert);
            match role()? {
                Some(r) if !r.can_login => Err(refuse("role cannot log in", not_permitted())),
                // A certificate names a role; unlike `trust`, it does not
                // make an administrator of a name nobody created.
                None if cert => Err(refuse(
                    "certificate for a role that does not exist",
                    PgError::fatal(
                        sqlstate::INVALID_AUTHORIZATION,
                        format!("role \"{user}\" does not exist"),
                    ),
                )),
                r => Ok(Login::Accepted(Access::trusted(r.as_ref()))),
            }
        }
        Decision::Scram => {
            if let Err(wait) = auth.admit(ip) {
                return Err(refuse(
                    "too many failed logins from this address",
                    PgError::fatal(
                        sqlstate::INVALID_AUTHORIZATION,
                        format!(
                            "too many failed logins from {ip}; try again in {} s",
                            wait.as_secs().max(1)
                        ),
                    ),
                ));
            }
            let r = role()?;
            // The decoy is made for every user, so that looking it up
            // costs an unknown user no more time than a real one.
            let decoy = fake(node, &user);
            let creds = match r.as_ref().and_then(|r| r.verifier.as_deref()) {
                Some(v) => match Verifier::parse(v) {
                    Ok(v) => Credentials::real(v),
                    Err(_) => {
                        warn!(user = %user, "the stored verifier of this role does not parse; it cannot log in with a password");
                        decoy
                    }
                },
                None => decoy,
            };
            let start = ScramStart::new(
                creds,
                tls.map(|t| t.server_end_point.clone()),
                scram::nonce(&random_bytes::<18>()),
            );
            let deadline = Instant::now() + node.config.auth_timeout.0;
            match exchange(wire, start, deadline) {
                Ok(true) => {}
                Ok(false) => {
                    info!(user = %user, source = %ip, "client left during authentication");
                    return Ok(Login::Left);
                }
                Err(Failure::Scram(ScramError::Failed)) => {
                    return Err(fail(
                        "wrong password, unknown user, or no password set",
                        PgError::fatal(
                            sqlstate::INVALID_PASSWORD,
                            format!("password authentication failed for user \"{user}\""),
                        ),
                    ))
                }
                Err(Failure::Scram(e)) => {
                    return Err(fail(
                        "SCRAM protocol error",
                        PgError::fatal(code(e.sqlstate()), e.to_string()),
                    ))
                }
                Err(Failure::Pg(e)) => return Err(fail("SASL protocol error", e)),
            }
            match r {
                Some(r) if r.can_login => Ok(Login::Accepted(Access::of(&r))),
                _ => Err(refuse("role cannot log in", not_permitted())),
            }
        }
    }
}

fn fake(node: &Node, user: &str) -> Credentials {
    let meta = node.meta.lock().unwrap_or_else(|p| p.into_inner());
    Credentials::fake(&node.auth.fake_salt_key(&meta), user)
}

fn code(c: &str) -> &'static str {
    match c {
        scram::INVALID_PASSWORD => sqlstate::INVALID_PASSWORD,
        _ => sqlstate::PROTOCOL_VIOLATION,
    }
}

enum Failure {
    Scram(ScramError),
    Pg(PgError),
}

impl From<ScramError> for Failure {
    fn from(e: ScramError) -> Failure {
        Failure::Scram(e)
    }
}

impl From<PgError> for Failure {
    fn from(e: PgError) -> Failure {
        Failure::Pg(e)
    }
}

/// Run the SASL exchange; Ok(false): the client left.
fn exchange<S: Stream>(
    wire: &mut Wire<S>,
    start: ScramStart,
    deadline: Instant,
) -> Result<bool, Failure> {
    wire.send(PgWireBackendMessage::Authentication(Authentication::SASL(
        start.mechanisms(),
    )));
    if wire.flush().is_err() {
        return Ok(false);
    }
    let Some(body) = read_sasl(wire, deadline)? else {
        return Ok(false);
    };
    let (mechanism, data) = initial_response(&body)?;
    let (waiting, server_first) = start.client_first(&mechanism, &data)?;
    wire.send(PgWireBackendMessage::Authentication(
        Authentication::SASLContinue(Bytes::from(server_first)),
    ));
    if wire.flush().is_err() {
        return Ok(false);
    }
    let Some(body) = read_sasl(wire, deadline)? else {
        return Ok(false);
    };
    let server_final = waiting.client_final(&body)?;
    wire.send(PgWireBackendMessage::Authentication(
        Authentication::SASLFinal(Bytes::from(server_final)),
    ));
    Ok(true)
}

/// The body of the next message, which must be a SASL one ('p').
fn read_sasl<S: Stream>(wire: &mut Wire<S>, deadline: Instant) -> Result<Option<Vec<u8>>, PgError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timeout());
    }
    match wire.read(Some(left.max(Duration::from_millis(1)))) {
        Ok(None) => Ok(None),
        Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(b)))) => {
            Ok(Some(b.to_vec()))
        }
        Ok(Some(PgWireFrontendMessage::Terminate(_))) => Ok(None),
        Ok(Some(_)) => Err(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "expected SASL response",
        )),
        Err(WireError::Timeout) => Err(timeout()),
        Err(e) => Err(e.into()),
    }
}

fn timeout() -> PgError {
    PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        "authentication did not complete within auth_timeout",
    )
}

/// SASLInitialResponse: the mechanism (a C string), then the length of the
/// data (-1: none) and the data. Parsed here rather than by pgwire, whose
/// decoder trusts the length field.
fn initial_response(body: &[u8]) -> Result<(String, Vec<u8>), PgError> {
    let bad = || {
        PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "malformed SASLInitialResponse",
        )
    };
    let nul = body.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let mechanism = std::str::from_utf8(&body[..nul])
        .map_err(|_| bad())?
        .to_string();
    let rest = &body[nul + 1..];
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let len = i32::from_be_bytes(len_bytes);
    let data = &rest[4..];
    if len < 0 || len as usize != data.len() {
        return Err(bad());
    }
    Ok((mechanism, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_response_parsing_never_trusts_the_length() {
        let mut ok = b"SCRAM-SHA-256\0".to_vec();
        ok.extend_from_slice(&3i32.to_be_bytes());
        ok.extend_from_slice(b"abc");
        assert_eq!(
            initial_response(&ok).unwrap(),
            ("SCRAM-SHA-256".to_string(), b"abc".to_vec())
        );
        for bad in [
            &b""[..],
            b"SCRAM-SHA-256",
            b"SCRAM-SHA-256\0\0\0",
            b"SCRAM-SHA-256\0\x7f\xff\xff\xffabc",
            b"SCRAM-SHA-256\0\xff\xff\xff\xff",
            b"SCRAM-SHA-256\0\0\0\0\x02abc",
        ] {
            assert!(initial_response(bad).is_err(), "{bad:?}");
        }
    }
}
