//! Start-up of a connection: TLS (an SSLRequest, or PostgreSQL 17's direct
//! TLS), CancelRequest, the StartupMessage, authentication (login.rs), and
//! the greeting (AuthenticationOk, ParameterStatus, BackendKeyData).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use tracing::{debug, info, warn};

use super::negotiate::{self, Opening, SslAnswer};
use super::transport::{self, ClientStream};
use super::wire::{Stream, Wire, WireError};
use crate::client_tls::TlsState;
use crate::errors::{sqlstate, PgError};
use crate::node::Node;

/// A client that has not finished its TLS handshake and sent its
/// StartupMessage by then is dropped.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the client asked for in its StartupMessage.
pub struct StartupInfo {
    /// The StartupMessage's parameters (user, database, application_name…).
    pub params: BTreeMap<String, String>,
    /// What the transport says about the client.
    pub conn: ConnInfo,
    /// What the authenticated role may do.
    pub access: crate::auth::Access,
}

/// What the transport says about the client: what access rules match on
/// (`host`/`hostssl`, the address, `cert`) and what SCRAM's channel
/// binding needs.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// None on a plain connection.
    pub tls: Option<TlsInfo>,
}

/// A connection on TLS.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// RFC 5929 `tls-server-end-point`: the hash of the server certificate
    /// (SHA-256 for certificates signed with SHA-1 or SHA-256, SHA-384 or
    /// SHA-512 for those signed with it). Empty when the signature
    /// algorithm names no hash (Ed25519, RSA-PSS): channel binding must
    /// then be refused, as PostgreSQL does.
    pub server_end_point: Vec<u8>,
    /// The subject CN of a client certificate that verified against the
    /// configured client CA, if the client presented one.
    pub client_cn: Option<String>,
}

/// Run the start-up exchange. Ok(None): the connection is done without a
/// session (it closed, it was a CancelRequest, or its TLS handshake failed).
pub fn startup(
    node: &Node,
    wire: &mut Wire<ClientStream>,
    peer: SocketAddr,
) -> Result<Option<StartupInfo>, PgError> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    // Taken once: a reload (SIGHUP) changes what later connections get.
    let tls_state = node.tls.as_ref().map(|t| t.current());
    let mut tls: Option<TlsInfo> = None;
    if !wire.fill(Some(left(deadline)?)).map_err(startup_error)? {
        return Ok(None);
    }
    if negotiate::opening(wire.buffered()) == Some(Opening::DirectTls) {
        let Some(state) = &tls_state else {
            // A TLS client at a node without TLS: nothing it could read.
            info!(%peer, "direct TLS connection, but TLS is not configured (tls_cert_file): closed");
            return Ok(None);
        };
        let early = wire.take_buffered();
        let Some(info) = upgrade(wire, state, &early, deadline, peer) else {
            return Ok(None);
        };
        let alpn_ok = match wire.stream_mut() {
            ClientStream::Tls(s) => negotiate::direct_alpn_ok(s.0.conn.alpn_protocol()),
            _ => false,
        };
        if !alpn_ok {
            return Err(PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "direct TLS connection without ALPN \"postgresql\"",
            ));
        }
        tls = Some(info);
    }
    loop {
        let msg = wire.read(Some(left(deadline)?)).map_err(startup_error)?;
        let Some(msg) = msg else {
            return Ok(None);
        };
        match msg {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
                let answer = negotiate::answer_ssl_request(
                    tls_state.is_some(),
                    tls.is_some(),
                    wire.buffered().len(),
                );
                match (answer, &tls_state) {
                    (SslAnswer::Accept, Some(state)) => {
                        write_answer(wire, b"S")?;
                        let Some(info) = upgrade(wire, state, &[], deadline, peer) else {
                            return Ok(None);
                        };
                        tls = Some(info);
                    }
                    (SslAnswer::RefuseInjected, _) => {
                        warn!(%peer, bytes = wire.buffered().len(), "unencrypted data after an SSLRequest: closed without TLS");
                        return Err(PgError::fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            "received unencrypted data after SSL request",
                        )
                        .with_hint("This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."));
                    }
                    (SslAnswer::AlreadyEncrypted, _) => {
                        return Err(PgError::fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            "SSLRequest on a connection already on TLS",
                        ))
                    }
                    // 'N' makes libpq go on in plain text (or fail if sslmode=require).
                    _ => write_answer(wire, b"N")?,
                }
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                // No GSSAPI encryption: libpq goes on with SSLRequest or plain.
                write_answer(wire, b"N")?;
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) => {
                wire.ctx.awaiting_frontend_ssl = false;
            }
            PgWireFrontendMessage::CancelRequest(c) => {
                cancel(node, c.pid, &c.secret_key);
                return Ok(None);
            }
            PgWireFrontendMessage::Startup(st) => {
                wire.ctx.awaiting_frontend_ssl = false;
                wire.ctx.awaiting_frontend_startup = false;
                if st.protocol_number_major != 3 {
                    return Err(PgError::fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "unsupported frontend protocol {}.{}: server supports 3.0",
                            st.protocol_number_major, st.protocol_number_minor
                        ),
                    ));
                }
                if st.protocol_number_minor > 0 {
                    let unsupported: Vec<String> = st
                        .parameters
                        .keys()
                        .filter(|k| k.starts_with("_pq_."))
                        .cloned()
                        .collect();
                    wire.send(PgWireBackendMessage::NegotiateProtocolVersion(
                        NegotiateProtocolVersion::new(0, unsupported),
                    ));
                }
                if node.is_shutting_down() || node.demoting.load(Ordering::SeqCst) {
                    return Err(PgError::fatal(
                        sqlstate::CANNOT_CONNECT_NOW,
                        node.ending_reason(),
                    ));
                }
                let conn = ConnInfo { peer, tls };
                let access = match super::login::authenticate(node, wire, &conn, &st.parameters)? {
                    super::login::Login::Accepted(a) => a,
                    super::login::Login::Left => return Ok(None),
                };
                return Ok(Some(StartupInfo {
                    params: st.parameters,
                    conn,
                    access,
                }));
            }
            _ => {
                return Err(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "expected a startup message",
                ))
            }
        }
    }
}

/// What is left of the start-up time; an error once it is spent.
fn left(deadline: Instant) -> Result<Duration, PgError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(startup_error(WireError::Timeout));
    }
    Ok(left)
}

fn startup_error(e: WireError) -> PgError {
    match e {
        WireError::Timeout => PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("no startup message within {} s", STARTUP_TIMEOUT.as_secs()),
        ),
        other => other.into(),
    }
}

/// The one-byte answer to an SSLRequest or GSSENCRequest, written at once.
fn write_answer(wire: &mut Wire<ClientStream>, answer: &[u8]) -> Result<(), PgError> {
    wire.write_raw(answer)
        .map_err(|_| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "write failed"))
}

/// Replace the plain socket under `wire` by TLS over it. None: the
/// handshake failed (logged); the connection is then closed.
fn upgrade(
    wire: &mut Wire<ClientStream>,
    state: &TlsState,
    early: &[u8],
    deadline: Instant,
    peer: SocketAddr,
) -> Option<TlsInfo> {
    let plain = std::mem::replace(wire.stream_mut(), ClientStream::Gone);
    let ClientStream::Plain(tcp) = plain else {
        return None;
    };
    match transport::handshake(tcp, state, early, deadline) {
        Ok((stream, client_cn)) => {
            *wire.stream_mut() = ClientStream::Tls(Box::new(stream));
            debug!(%peer, ?client_cn, "TLS handshake done");
            Some(TlsInfo {
                server_end_point: state.server_end_point.clone(),
                client_cn,
            })
        }
        Err(e) => {
            info!(%peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// A CancelRequest: interrupt the session with this pid if the key matches.
/// A wrong key is ignored without a word, as in PostgreSQL.
pub fn cancel(node: &Node, pid: i32, key: &SecretKey) {
    let reg = node.registry();
    if let Some(h) = reg.get(&pid) {
        if key.eq_value(&SecretKey::I32(h.secret)) {
            info!(pid, "cancel request");
            h.cancel.store(true, Ordering::SeqCst);
            h.interrupt.interrupt();
            return;
        }
    }
    debug!(pid, "cancel request for an unknown session ignored");
}

/// Queue the greeting of an accepted session (ReadyForQuery follows).
pub fn greet<S: Stream>(
    wire: &mut Wire<S>,
    pid: i32,
    secret: i32,
    statuses: Vec<(&'static str, String)>,
) {
    wire.send(PgWireBackendMessage::Authentication(Authentication::Ok));
    for (k, v) in statuses {
        wire.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            k.to_string(),
            v,
        )));
    }
    wire.send(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
        pid,
        SecretKey::I32(secret),
    )));
}
