//! The admin port's HTTP server, plain or HTTPS (`admin_tls_*`,
//! docs/security.md §Admin endpoint), for a run's admin server
//! (crates/hadr-server/src/admin.rs) and the gate's
//! (crates/hadr-server/src/gate.rs) alike.
//!
//! `axum::serve` takes plain listeners only. Over TLS each connection is
//! accepted here: a bounded number at once, the handshake bounded in time,
//! then hyper's HTTP/1.1 with a bound on reading the headers. Each request
//! carries the peer's address and the name in its verified client
//! certificate as extensions, which the guard reads
//! (crates/hadr-server/src/admin_auth.rs). A client that speaks plain HTTP
//! to the TLS port is told so in plain HTTP rather than cut off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::client_tls::{subject_cn, ClientTls};

/// The verified client certificate of an HTTPS admin request: who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The certificate's subject common name (or a placeholder without one).
    pub name: String,
}

/// Longest a TLS handshake may take: a client that opens a connection and
/// says nothing must not hold a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the request headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the answer to a plain-HTTP client may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Admin connections served at once over TLS; more are closed at once.
/// The admin port serves operators, monitors and load balancers' checks.
const MAX_TLS_CONNECTIONS: usize = 256;

/// Serve `app` (its guard applied) on `listener` until the task is aborted:
/// plain HTTP without `tls`, HTTPS only with it.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<ClientTls>>) {
    let Some(tls) = tls else {
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, make).await {
            warn!(error = %e, "admin server stopped");
        }
        return;
    };
    let slots = Arc::new(Semaphore::new(MAX_TLS_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "admin connection refused: {MAX_TLS_CONNECTIONS} already open");
            continue;
        };
        // The configuration in force now (SIGHUP may replace it later).
        let config = tls.current().config.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_tls(stream, peer, config, app).await;
        });
    }
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    app: Router,
) {
    if speaks_plain_http(&stream).await {
        refuse_plain(stream, peer).await;
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // A client certificate from another CA ends here, before a
            // byte of HTTP is read.
            info!(%peer, error = %e, "admin TLS handshake failed");
            return;
        }
        Err(_) => {
            info!(%peer, "admin TLS handshake timed out");
            return;
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| PeerCert {
            name: subject_cn(c).unwrap_or_else(|| "(certificate without a common name)".into()),
        });
    let mut app = app.layer(Extension(ConnectInfo(peer)));
    if let Some(cert) = cert {
        app = app.layer(Extension(cert));
    }
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        debug!(%peer, error = %e, "admin connection ended");
    }
}

/// Whether the client's first byte starts a plain HTTP request (a letter)
/// rather than a TLS record (22, a handshake). Waits for it as long as a
/// handshake may take; a silent client is left to the handshake's timeout.
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0].is_ascii_alphabetic(),
        _ => false,
    }
}

/// Answer a plain HTTP request on the TLS port with 400 and the reason.
async fn refuse_plain(mut stream: TcpStream, peer: SocketAddr) {
    info!(%peer, "plain HTTP on the admin port, which speaks HTTPS only: refused");
    let body = "this admin port speaks HTTPS only: use https://\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
