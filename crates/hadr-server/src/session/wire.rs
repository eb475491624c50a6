//! Message framing for one client connection, on top of pgwire's codecs.
//!
//! Generic over the byte stream so that a TLS stream can replace the plain
//! socket without touching the session above. Output is batched in a buffer
//! and written at flush points (ReadyForQuery, Flush, a full buffer): one
//! write per round trip instead of one per message.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tracing::{debug, info, warn};

pub use super::frame::{decode_frame, WireError};
use crate::errors::{sqlstate, PgError};

/// A byte stream a session can run on: a TCP socket, or TLS over one
/// (crates/hadr-server/src/session/transport.rs).
pub trait Stream: Read + Write {
    /// Bound the next reads (None: wait for ever); used for the
    /// idle-in-transaction and start-up timeouts.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl From<WireError> for PgError {
    fn from(e: WireError) -> PgError {
        let code = match &e {
            WireError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            WireError::Timeout => {
                return PgError::fatal(
                    sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                    "terminating connection due to idle-in-transaction timeout",
                )
            }
            WireError::BadLength(_) | WireError::Malformed(_) | WireError::Decode(_) => {
                sqlstate::PROTOCOL_VIOLATION
            }
        };
        PgError::fatal(code, e.to_string())
    }
}

/// One connection's framing state: read and write buffers, decode context.
pub struct Wire<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// What pgwire expects next (SSL request, startup, regular messages).
    pub ctx: DecodeContext,
    max_message: usize,
    /// The read timeout last set on the stream, to skip redundant syscalls.
    read_timeout: Option<Option<Duration>>,
    /// A FATAL error was queued: the session must end, with no ReadyForQuery.
    fatal: bool,
}

impl<S: Stream> Wire<S> {
    /// Frame messages on `stream`, refusing messages over `max_message` bytes.
    pub fn new(stream: S, max_message: usize) -> Wire<S> {
        Wire {
            stream,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(8192),
            ctx: DecodeContext::new(pgwire::messages::ProtocolVersion::PROTOCOL3_0),
            max_message,
            read_timeout: None,
            fatal: false,
        }
    }

    /// Queue a message; it is written at the next flush.
    pub fn send(&mut self, m: PgWireBackendMessage) {
        if let Err(e) = m.encode(&mut self.wbuf) {
            warn!(error = %e, "could not encode a message");
        }
    }

    /// Queue an ErrorResponse.
    pub fn error(&mut self, e: &PgError) {
        self.fatal |= e.severity == "FATAL";
        self.send(PgWireBackendMessage::ErrorResponse(ErrorResponse::new(
            e.fields(),
        )));
    }

    /// Queue a WARNING notice.
    pub fn notice(&mut self, code: &str, msg: &str) {
        self.send(PgWireBackendMessage::NoticeResponse(NoticeResponse::new(
            vec![
                (b'S', "WARNING".into()),
                (b'V', "WARNING".into()),
                (b'C', code.into()),
                (b'M', msg.into()),
            ],
        )));
    }

    /// Whether a FATAL error was queued (the session must end).
    pub fn sent_fatal(&self) -> bool {
        self.fatal
    }

    /// Drop what is queued and not yet written (after a panic, when it may
    /// end mid-message).
    pub fn discard_output(&mut self) {
        self.wbuf.clear();
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.wbuf.len()
    }

    /// Write raw bytes at once, outside message framing (the SSLRequest answer).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Bytes read from the client and not decoded yet.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Take the bytes read and not decoded (a direct TLS ClientHello).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.rbuf.split()
    }

    /// The stream, to replace it (TLS replaces the plain socket). The read
    /// timeout it has is forgotten: the next read sets its own.
    pub fn stream_mut(&mut self) -> &mut S {
        self.read_timeout = None;
        &mut self.stream
    }

    /// Read once if nothing is buffered, waiting at most `timeout`.
    /// Ok(false): the client closed the connection (or the read failed).
    pub fn fill(&mut self, timeout: Option<Duration>) -> Result<bool, WireError> {
        if !self.rbuf.is_empty() {
            return Ok(true);
        }
        self.read_chunk(timeout)
    }

    /// Write what is queued. An error ends the session: the client is gone
    /// or stopped reading for longer than the socket's write timeout.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self
            .stream
            .write_all(&self.wbuf)
            .and_then(|_| self.stream.flush())
        {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                info!("client stopped reading (client_write_timeout); closing the session");
            } else {
                debug!(error = %e, "write failed");
            }
            return Err(e);
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Read one frontend message, waiting at most `timeout` for each chunk.
    /// Ok(None): the client closed the connection (or the read failed).
    pub fn read(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<PgWireFrontendMessage>, WireError> {
        loop {
            if let Some(m) = decode_frame(&mut self.rbuf, &self.ctx, self.max_message)? {
                return Ok(Some(m));
            }
            if !self.read_chunk(timeout)? {
                return Ok(None);
            }
        }
    }

    /// Read what the client sent, waiting at most `timeout`. Ok(false): it
    /// closed the connection (or the read failed).
    fn read_chunk(&mut self, timeout: Option<Duration>) -> Result<bool, WireError> {
        if self.read_timeout != Some(timeout) {
            if self.stream.set_read_timeout(timeout).is_err() {
                return Ok(false);
            }
            self.read_timeout = Some(timeout);
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(WireError::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "read failed");
                    return Ok(false);
                }
            }
        }
    }
}
