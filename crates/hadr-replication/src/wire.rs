//! Reading and writing protocol frames on a connection, with time-outs.
//! The same code runs over plain TCP and over TLS (link.rs): each
//! half is boxed, so that callers do not carry the transport in their types.

use std::time::Duration;

use hadr_protocol::{Message, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Errors on a replication connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame did not decode (CRC, length, type).
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The TLS session failed; for an alert, the peer refused something
    /// of ours (most often: our certificate).
    #[error("TLS: {err}{hint}", err = .0, hint = tls_hint(.0))]
    Tls(rustls::Error),
    /// Nothing arrived in time.
    #[error("no message within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
}

/// What an operator can do about a TLS failure.
fn tls_hint(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::AlertReceived(_) => " (the peer did not accept this node's certificate: it must come from the cluster CA and name a host in the peer's hadr_target_list; see hadr certs init)",
        _ => "",
    }
}

/// An I/O error, or the TLS error inside it.
fn io_error(e: std::io::Error) -> WireError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match tls {
        Some(t) => WireError::Tls(t),
        None => WireError::Io(e),
    }
}

/// Buffered frame reader.
pub struct Reader {
    half: ReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// Wrap a read half (of a TCP stream or a TLS session).
    pub fn new(half: impl AsyncRead + Send + Unpin + 'static) -> Self {
        Reader {
            half: Box::new(half),
            buf: Vec::with_capacity(64 << 10),
        }
    }

    /// Next message, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Message, WireError> {
        loop {
            match Message::decode(&self.buf) {
                Ok((m, used)) => {
                    self.buf.drain(..used);
                    return Ok(m);
                }
                Err(ProtocolError::Incomplete(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let mut chunk = vec![0u8; 256 << 10];
            let n = tokio::time::timeout(timeout, self.half.read(&mut chunk))
                .await
                .map_err(|_| WireError::Timeout(timeout))?
                .map_err(io_error)?;
            if n == 0 {
                return Err(WireError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Frame writer.
pub struct Writer {
    half: WriteHalf,
}

impl Writer {
    /// Wrap a write half (of a TCP stream or a TLS session).
    pub fn new(half: impl AsyncWrite + Send + Unpin + 'static) -> Self {
        Writer {
            half: Box::new(half),
        }
    }

    /// Send one message, waiting at most `timeout` (a full socket buffer is
    /// how a stuck peer shows up). Flushed: TLS may otherwise keep the tail
    /// of a message buffered until the next write.
    pub async fn send(&mut self, m: &Message, timeout: Duration) -> Result<(), WireError> {
        let bytes = m.encode();
        let half = &mut self.half;
        tokio::time::timeout(timeout, async move {
            half.write_all(&bytes).await?;
            half.flush().await
        })
        .await
        .map_err(|_| WireError::Timeout(timeout))?
        .map_err(io_error)?;
        Ok(())
    }

    /// End the connection in order (TLS: close_notify, then FIN), waiting
    /// at most `timeout`; used after a refusal, so that the peer reads it
    /// before the connection ends.
    pub async fn close(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.half.shutdown()).await;
    }
}
