//! The client listener: admission against `max_connections`, socket
//! options, and one OS thread per admitted session.
//!
//! A slot is taken atomically before a session thread exists, so that a
//! flood of connections costs neither threads nor a race past the limit;
//! connections beyond it are refused at once (FATAL 53300) from a tokio
//! task. There are no slots reserved for administrators: hadr has no roles
//! to tell one by, and a loopback address says little (proxies and
//! application servers connect from it too); the admin HTTP endpoint is not
//! subject to the limit.

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

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
                match Slot::take(&node) {
                    Some(slot) => start_session(&node, stream, peer, slot),
                    None => {
                        debug!(%peer, "too many connections: refused");
                        tokio::spawn(refuse(node.clone(), stream));
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One of `max_connections` slots, given back when dropped: when the
/// session thread ends, or when it could not be started.
struct Slot(Arc<Node>);

impl Slot {
    fn take(node: &Arc<Node>) -> Option<Slot> {
        let max = node.config.max_connections;
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
            let _slot = slot;
            session::serve(node, std_stream, peer)
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a session thread");
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

/// Refuse a connection over the limit without a thread, as PostgreSQL
/// does: answer an SSLRequest with 'N' (libpq, asked for TLS by default,
/// would otherwise report an error during the SSL exchange instead of ours),
/// honour a CancelRequest (a full server is when a client most needs to
/// cancel), else send FATAL 53300; then read what the client sends until it
/// closes, so that closing first does not reset the connection before the
/// client has read the error.
async fn refuse(node: Arc<Node>, mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, refuse_on(&node, &mut stream)).await;
}

async fn refuse_on(node: &Node, stream: &mut TcpStream) -> std::io::Result<()> {
    use PgWireFrontendMessage as M;
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    let mut got = BytesMut::with_capacity(1024);
    while got.len() < REFUSAL_READ_LIMIT {
        match M::decode(&mut got, &ctx) {
            Ok(Some(M::SslNegotiation(SslNegotiationMetaMessage::None))) => {
                ctx.awaiting_frontend_ssl = false;
                continue;
            }
            Ok(Some(M::SslNegotiation(_))) => {
                stream.write_all(b"N").await?;
                continue;
            }
            Ok(Some(M::CancelRequest(c))) => {
                session::startup::cancel(node, c.pid, &c.secret_key);
                return Ok(());
            }
            // A StartupMessage, or garbage: refuse.
            Ok(Some(_)) | Err(_) => break,
            Ok(None) => {}
        }
        match tokio::time::timeout(FIRST_PACKET_WAIT, stream.read_buf(&mut got)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            // A client that says nothing is refused all the same.
            Err(_) => break,
        }
    }
    let mut out = BytesMut::new();
    let e = PgError::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already",
    );
    if let Err(e) =
        PgWireBackendMessage::ErrorResponse(ErrorResponse::new(e.fields())).encode(&mut out)
    {
        warn!(error = %e, "could not encode a message");
        return Ok(());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    got.clear();
    while stream.read_buf(&mut got).await? > 0 && got.len() < REFUSAL_READ_LIMIT {}
    Ok(())
}
