//! Start-up of a connection: SSLRequest, CancelRequest, the StartupMessage,
//! authentication (login.rs), and the greeting (AuthenticationOk,
//! ParameterStatus, BackendKeyData).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use tracing::{debug, info};

use super::wire::{Stream, Wire, WireError};
use crate::errors::{sqlstate, PgError};
use crate::node::Node;

/// A client that has not sent its StartupMessage by then is dropped.
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
    /// (SHA-256 for certificates signed with SHA-1 or SHA-256).
    pub server_end_point: Vec<u8>,
    /// The subject CN of a client certificate that verified against the
    /// configured client CA, if the client presented one.
    pub client_cn: Option<String>,
}

/// Run the start-up exchange. Ok(None): the connection is done without a
/// session (it closed, or it was a CancelRequest).
pub fn startup<S: Stream>(
    node: &Node,
    wire: &mut Wire<S>,
    peer: SocketAddr,
) -> Result<Option<StartupInfo>, PgError> {
    loop {
        let msg = wire.read(Some(STARTUP_TIMEOUT)).map_err(|e| match e {
            WireError::Timeout => PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "no startup message within 30 s",
            ),
            other => other.into(),
        })?;
        let Some(msg) = msg else {
            return Ok(None);
        };
        match msg {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_))
            | PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                // No TLS yet: 'N' makes libpq fall back to plain (or fail if sslmode=require).
                wire.write_raw(b"N")
                    .map_err(|_| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "write failed"))?;
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
                let conn = ConnInfo { peer, tls: None };
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
