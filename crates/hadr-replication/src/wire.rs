//! Reading and writing protocol frames on a TCP stream, with time-outs.

use std::time::Duration;

use hadr_protocol::{Message, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Errors on a replication connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame did not decode (CRC, length, type).
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// Nothing arrived in time.
    #[error("no message within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
}

/// Buffered frame reader.
pub struct Reader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// Wrap a read half.
    pub fn new(half: OwnedReadHalf) -> Self {
        Reader {
            half,
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
                .map_err(|_| WireError::Timeout(timeout))??;
            if n == 0 {
                return Err(WireError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Frame writer.
pub struct Writer {
    half: OwnedWriteHalf,
}

impl Writer {
    /// Wrap a write half.
    pub fn new(half: OwnedWriteHalf) -> Self {
        Writer { half }
    }

    /// Send one message, waiting at most `timeout` (a full socket buffer is
    /// how a stuck peer shows up).
    pub async fn send(&mut self, m: &Message, timeout: Duration) -> Result<(), WireError> {
        let bytes = m.encode();
        tokio::time::timeout(timeout, self.half.write_all(&bytes))
            .await
            .map_err(|_| WireError::Timeout(timeout))??;
        Ok(())
    }
}
