//! The client listener: admission, socket options, and one OS thread per
//! admitted session (docs/clients.md §Admission).
//!
//! Nothing that is refused costs a thread: a slot is taken atomically
//! before a session thread exists, and refusals are answered from a tokio
//! task with a bounded read and a bounded linger, so that a storm of
//! reconnecting clients (DB2 ACR's fourth pitfall) costs neither threads
//! nor a race past the limit.
//!
//! - While the node cannot serve (handing over, shutting down), every
//!   connection gets FATAL 57P03, which drivers treat as "try the next host".
//! - Past `max_connections − reserved_connections`, only the users named in
//!   `reserved_connection_users` are admitted, up to `max_connections`; the
//!   user is read from a peek at the StartupMessage, so the session thread
//!   still reads it from the socket as usual. Everyone else gets FATAL 53300.
//!   Until hadr authenticates clients (SCRAM), the user name is the
//!   client's word: the reserve is against storms, not against strangers.
//!   A client that asks for TLS (with TLS configured) hides its user in
//!   the encrypted StartupMessage, so it cannot take a reserved slot.
//! - The admin HTTP endpoint is not subject to any of this.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
    SslNegotiationMetaMessage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::client_tls::TlsState;
use crate::config::Config;
use crate::errors::{sqlstate, PgError};
use crate::node::Node;
use crate::session;

/// How long a refused connection is kept, all told.
const REFUSAL_LINGER: Duration = Duration::from_secs(3);

/// How long a refused connection waits for the client's first packet.
const FIRST_PACKET_WAIT: Duration = Duration::from_millis(500);

/// Bytes read from a refused client at most.
const REFUSAL_READ_LIMIT: usize = 64 << 10;

/// Accept client connections until the task is aborted.
pub async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                node.stats.connections.fetch_add(1, Ordering::Relaxed);
                admit(&node, stream, peer);
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection is refused before it has a session.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    /// The node cannot serve now (57P03), and why.
    CannotConnectNow(String),
    /// No slot left (53300).
    TooMany,
}

impl Refusal {
    fn error(&self) -> PgError {
        match self {
            Refusal::CannotConnectNow(why) => {
                PgError::fatal(sqlstate::CANNOT_CONNECT_NOW, why.clone())
            }
            Refusal::TooMany => PgError::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            ),
        }
    }
}

fn admit(node: &Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    if node.is_shutting_down() || node.demoting.load(Ordering::SeqCst) {
        let why = Refusal::CannotConnectNow(node.ending_reason());
        tokio::spawn(refuse(node.clone(), stream, why));
        return;
    }
    if let Some(slot) = Slot::take(node, Pool::General) {
        start_session(node, stream, peer, slot);
    } else if node.config.reserved_connections > 0 {
        tokio::spawn(admit_reserved(node.clone(), stream, peer));
    } else {
        debug!(%peer, "too many connections: refused");
        tokio::spawn(refuse(node.clone(), stream, Refusal::TooMany));
    }
}

/// Which slots a connection may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    /// Every connection: up to `max_connections − reserved_connections`.
    General,
    /// `reserved_connection_users`: up to `max_connections`.
    Reserved,
}

/// One of `max_connections` slots, given back when dropped: when the
/// session thread ends, or when it could not be started.
struct Slot(Arc<Node>);

impl Slot {
    fn take(node: &Arc<Node>, pool: Pool) -> Option<Slot> {
        let c = &node.config;
        let max = match pool {
            Pool::General => c.max_connections.saturating_sub(c.reserved_connections),
            Pool::Reserved => c.max_connections,
        };
        node.stats
            .connection_slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(node.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats.connection_slots.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Past the general limit: admit a reserved user, refuse everyone else.
async fn admit_reserved(node: Arc<Node>, mut stream: TcpStream, peer: SocketAddr) {
    let tls = node.tls.is_some();
    let user = tokio::time::timeout(FIRST_PACKET_WAIT, peek_user(&mut stream, tls)).await;
    let reserved = match &user {
        Ok(Ok(Some(u))) => node.config.reserved_connection_users.iter().any(|r| r == u),
        _ => false,
    };
    if reserved {
        if let Some(slot) = Slot::take(&node, Pool::Reserved) {
            debug!(%peer, "admitted to a reserved slot");
            start_session(&node, stream, peer, slot);
            return;
        }
    }
    debug!(%peer, "too many connections: refused");
    refuse(node, stream, Refusal::TooMany).await;
}

/// The user of the StartupMessage at the front of `stream`, left unread
/// there (an SSLRequest before it is answered 'N' and consumed, as the
/// session would without TLS). None: the client sent something else
/// first, or asked for TLS where it is configured (its user will be
/// encrypted).
async fn peek_user(stream: &mut TcpStream, tls: bool) -> std::io::Result<Option<String>> {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if n < 8 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len == 8 && code == 80_877_103 && tls {
            return Ok(None);
        }
        // SSLRequest (80877103) without TLS, or GSSENCRequest (80877104).
        if len == 8 && (code == 80_877_103 || code == 80_877_104) {
            let mut skip = [0u8; 8];
            stream.read_exact(&mut skip).await?;
            stream.write_all(b"N").await?;
            continue;
        }
        if code != 196_608 || !(8..=buf.len()).contains(&len) {
            return Ok(None);
        }
        if n < len {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        return Ok(startup_user(&buf[8..len]));
    }
}

/// The `user` parameter of a StartupMessage's body (NUL-separated pairs).
fn startup_user(body: &[u8]) -> Option<String> {
    let mut parts = body.split(|&b| b == 0);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.is_empty() {
            return None;
        }
        if k == b"user" {
            return String::from_utf8(v.to_vec()).ok();
        }
    }
    None
}

fn start_session(node: &Arc<Node>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    let _ = stream.set_nodelay(true);
    set_timeouts(&stream, &node.config);
    let std_stream = match stream.into_std().and_then(|s| {
        s.set_nonblocking(false)?;
        s.set_write_timeout(write_timeout(&node.config))?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot hand a connection to a session thread");
            return;
        }
    };
    let node = node.clone();
    let spawned = std::thread::Builder::new()
        .name("hadr-session".into())
        .spawn(move || {
            lower_priority();
            session::serve(node, std_stream, peer, slot)
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a session thread");
    }
}

/// Session threads run at a lower CPU priority (nice +5) than the rest of
/// the node: a storm of clients (up to `max_connections` threads, each
/// runnable) must not starve what keeps the node safe and observable —
/// replication heartbeats and acks, the lease, the admin endpoint, the
/// accept loop's fast refusals — which run on tokio's threads at the
/// default priority. Raising the niceness needs no privilege; it costs
/// sessions nothing while the CPU is not saturated.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers;
        // on Linux the nice value is per thread, so this touches only the
        // calling session thread.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5)
        };
        if rc != 0 {
            debug!(error = %std::io::Error::last_os_error(), "could not lower the session thread's priority");
        }
    }
}

fn write_timeout(config: &Config) -> Option<Duration> {
    let t = config.client_write_timeout.0;
    (!t.is_zero()).then_some(t)
}

/// A dead client (its host crashed, its cable pulled: no reset ever comes)
/// must not hold the write lock for the kernel's two hours. With
/// `client_dead_timeout` T: keepalive probes start after 0.4·T of silence,
/// three of them 0.2·T apart, so an idle dead client is dropped after about
/// T; and TCP_USER_TIMEOUT = T, so a dead client with data outstanding
/// (a reply it never acknowledged) is dropped after T as well. Linux lets
/// the user timeout decide for keepalive too, so the two agree. A live
/// client that merely stops reading still acknowledges (a zero window), so
/// only the socket's write timeout (`client_write_timeout`) ends it.
/// T = 0 leaves the kernel's defaults (no keepalive).
fn set_timeouts(stream: &TcpStream, config: &Config) {
    let dead = config.client_dead_timeout.0;
    if dead.is_zero() {
        return;
    }
    let sock = socket2::SockRef::from(stream);
    let second = Duration::from_secs(1);
    let ka = socket2::TcpKeepalive::new()
        .with_time((dead * 2 / 5).max(second))
        .with_interval((dead / 5).max(second))
        .with_retries(3);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        warn!(error = %e, "could not enable TCP keepalive");
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(dead)) {
        warn!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}

/// Refuse a connection without a thread, as PostgreSQL does: answer an
/// SSLRequest ('S' and a TLS handshake when TLS is configured, so that a
/// `sslmode=require` client reads the reason; else 'N': libpq, asked for
/// TLS by default, would otherwise report an error during the SSL exchange
/// instead of ours), honour a CancelRequest (a full server is when a client
/// most needs to cancel), else send the FATAL error; then read what the
/// client sends until it closes, so that closing first does not reset the
/// connection before the client has read the error.
async fn refuse(node: Arc<Node>, stream: TcpStream, why: Refusal) {
    let tls = node.tls.as_ref().map(|t| t.current());
    refuse_stream(Some(node), tls, stream, why.error()).await;
}

/// [`refuse`] with any error, and without a node when none runs (the
/// gate, crates/hadr-server/src/gate.rs: a CancelRequest then has nothing
/// to cancel). `tls`: the client TLS in force, if configured.
pub async fn refuse_stream(
    node: Option<Arc<Node>>,
    tls: Option<Arc<TlsState>>,
    mut stream: TcpStream,
    e: PgError,
) {
    let _ = tokio::time::timeout(
        REFUSAL_LINGER,
        refuse_on(node.as_deref(), tls, &mut stream, &e),
    )
    .await;
}

async fn refuse_on(
    node: Option<&Node>,
    tls: Option<Arc<TlsState>>,
    stream: &mut TcpStream,
    e: &PgError,
) -> std::io::Result<()> {
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    let mut got = BytesMut::with_capacity(1024);
    match until_startup(node, stream, &mut ctx, &mut got, tls.is_some()).await? {
        Until::Closed => return Ok(()),
        Until::Refuse => return send_refusal(stream, e, &mut got).await,
        Until::StartTls => {}
    }
    let Some(state) = tls else {
        return Ok(());
    };
    stream.write_all(b"S").await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(state.config.clone());
    let mut tls_stream = acceptor.accept(stream).await?;
    match until_startup(node, &mut tls_stream, &mut ctx, &mut got, false).await? {
        Until::Closed => Ok(()),
        _ => send_refusal(&mut tls_stream, e, &mut got).await,
    }
}

/// Where a refused client's opening ends.
enum Until {
    /// It closed, or it was a CancelRequest (handled).
    Closed,
    /// A StartupMessage, garbage, or silence: send the error.
    Refuse,
    /// An SSLRequest, alone, and TLS is configured: start TLS.
    StartTls,
}

/// Read a refused client's opening up to its StartupMessage.
async fn until_startup<S: AsyncRead + AsyncWrite + Unpin>(
    node: Option<&Node>,
    stream: &mut S,
    ctx: &mut DecodeContext,
    got: &mut BytesMut,
    tls: bool,
) -> std::io::Result<Until> {
    use PgWireFrontendMessage as M;
    while got.len() < REFUSAL_READ_LIMIT {
        // The session's framing (crates/hadr-server/src/session/frame.rs),
        // not pgwire's decoder on the raw bytes; only start-up packets
        // come here, so the message limit does not matter.
        match session::wire::decode_frame(got, ctx, session::frame::MAX_STARTUP_PACKET) {
            Ok(Some(M::SslNegotiation(SslNegotiationMetaMessage::None))) => {
                ctx.awaiting_frontend_ssl = false;
                continue;
            }
            // Bytes behind the SSLRequest: refused in plain text, without
            // TLS (session/negotiate.rs says why).
            Ok(Some(M::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)))) if tls => {
                return Ok(if got.is_empty() {
                    Until::StartTls
                } else {
                    Until::Refuse
                });
            }
            Ok(Some(M::SslNegotiation(_))) => {
                stream.write_all(b"N").await?;
                continue;
            }
            Ok(Some(M::CancelRequest(c))) => {
                if let Some(node) = node {
                    session::startup::cancel(node, c.pid, &c.secret_key);
                }
                return Ok(Until::Closed);
            }
            // A StartupMessage, or garbage: refuse.
            Ok(Some(_)) | Err(_) => return Ok(Until::Refuse),
            Ok(None) => {}
        }
        match tokio::time::timeout(FIRST_PACKET_WAIT, stream.read_buf(got)).await {
            Ok(Ok(0)) => return Ok(Until::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            // A client that says nothing is refused all the same.
            Err(_) => return Ok(Until::Refuse),
        }
    }
    Ok(Until::Refuse)
}

/// Send the FATAL error, close our side, and read until the client closes.
async fn send_refusal<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    e: &PgError,
    got: &mut BytesMut,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    if let Err(e) =
        PgWireBackendMessage::ErrorResponse(ErrorResponse::new(e.fields())).encode(&mut out)
    {
        warn!(error = %e, "could not encode a message");
        return Ok(());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    got.clear();
    while stream.read_buf(got).await? > 0 && got.len() < REFUSAL_READ_LIMIT {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_read_from_a_startup_body() {
        assert_eq!(
            startup_user(b"database\0d\0user\0hadr_admin\0\0").as_deref(),
            Some("hadr_admin")
        );
        assert_eq!(startup_user(b"database\0d\0\0"), None);
        assert_eq!(startup_user(b"user"), None);
        assert_eq!(startup_user(b""), None);
        assert_eq!(startup_user(b"user\0\xff\0\0"), None);
    }
}
