//! Framing and layout checks of frontend messages, before pgwire decodes them.
//!
//! pgwire's decoders (0.42) trust what they are given: they read a body from
//! the whole receive buffer rather than from the message's own bytes, take
//! fields with `bytes::Buf` getters that panic past the end, and split off
//! as many bytes as a length field claims. A malformed message would panic
//! the session thread, or be decoded with bytes of the next message. So the
//! frame is cut here from its length field, its layout is checked field by
//! field against the protocol (PostgreSQL's protocol-message-formats), and
//! pgwire only ever sees one complete, well-formed message, which it must
//! consume exactly. The fuzz target `pg_frontend` (fuzz/src/lib.rs) checks
//! that these checks and pgwire's decoders agree on every input.

use bytes::BytesMut;
use pgwire::error::PgWireError;
use pgwire::messages::startup::{
    PasswordMessageFamily, SASLInitialResponse, SASLResponse, SslRequest,
};
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, SslNegotiationMetaMessage};

/// Largest start-up packet (StartupMessage, SSLRequest, CancelRequest), as
/// PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// Receive-buffer space reserved ahead of a message's bytes at most: the
/// buffer grows with what arrives, not with what a length field promises
/// (a 5-byte header must not make the node allocate `max_message_size`).
const RESERVE_AHEAD: usize = 64 << 10;

/// GSSENCRequest's code (pgwire has no public constant for it).
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// CancelRequest's code.
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A length field outside what the message may have.
    #[error("invalid message length {0}")]
    BadLength(i32),
    /// A message longer than `max_message_size`, refused from its header.
    #[error("message of {len} bytes exceeds max_message_size ({max} bytes)")]
    TooLarge {
        /// The announced length.
        len: i32,
        /// The limit.
        max: usize,
    },
    /// The message's fields do not fit its length, or bytes are left over.
    #[error("invalid {0} message format")]
    Malformed(&'static str),
    /// pgwire could not decode the message.
    #[error("invalid frontend message: {0}")]
    Decode(#[source] PgWireError),
    /// Nothing arrived within the read timeout.
    #[error("no message within the read timeout")]
    Timeout,
}

/// Take one complete frontend message off the front of `buf`, if it holds one.
///
/// The length is checked before anything is buffered for the message, so an
/// oversized one is refused from its header; the body is checked before
/// pgwire decodes it (see the module doc).
pub fn decode_frame(
    buf: &mut BytesMut,
    ctx: &DecodeContext,
    max_message: usize,
) -> Result<Option<PgWireFrontendMessage>, WireError> {
    let startup = ctx.awaiting_frontend_ssl || ctx.awaiting_frontend_startup;
    // Start-up packets have no type byte, and their first 8 bytes tell
    // which packet it is; other messages have a type byte and a length.
    let (head, need) = if startup { (4, 8) } else { (5, 5) };
    if buf.len() < need {
        return Ok(None);
    }
    let len = be_i32(&buf[head - 4..head]);
    if startup {
        let code = be_i32(&buf[4..8]);
        if ctx.awaiting_frontend_ssl {
            if code != SslRequest::BODY_MAGIC_NUMBER && code != GSSENC_REQUEST_CODE {
                // A StartupMessage or CancelRequest: the caller moves on to
                // the start-up state and calls again; nothing is consumed.
                return Ok(Some(PgWireFrontendMessage::SslNegotiation(
                    SslNegotiationMetaMessage::None,
                )));
            }
            // Exactly 8 bytes: pgwire would consume 8 whatever the length
            // said, and take what follows for the next message.
            if len != 8 {
                return Err(WireError::BadLength(len));
            }
        }
        if !(8..=MAX_STARTUP_PACKET as i64).contains(&i64::from(len)) {
            return Err(WireError::BadLength(len));
        }
    } else {
        if len < 4 {
            return Err(WireError::BadLength(len));
        }
        if len as usize > max_message {
            return Err(WireError::TooLarge {
                len,
                max: max_message,
            });
        }
    }
    let total = head - 4 + len as usize;
    if buf.len() < total {
        buf.reserve((total - buf.len()).min(RESERVE_AHEAD));
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    let what = kind_name(if startup { 0 } else { frame[0] });
    if startup {
        check_startup_layout(&frame[4..], ctx)?;
    } else {
        check_layout(frame[0], &frame[5..])?;
    }
    match PgWireFrontendMessage::decode(&mut frame, ctx) {
        Ok(Some(m)) if frame.is_empty() => Ok(Some(m)),
        // The layout was checked: pgwire disagreeing means a bug on one
        // side; refuse the message rather than act on half of it.
        Ok(_) => Err(WireError::Malformed(what)),
        Err(e) => Err(WireError::Decode(e)),
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The name used in "invalid X message format".
fn kind_name(tag: u8) -> &'static str {
    match tag {
        0 => "startup packet",
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'C' => "Close",
        b'D' => "Describe",
        b'E' => "Execute",
        b'H' => "Flush",
        b'S' => "Sync",
        b'X' => "Terminate",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'p' => "password",
        _ => "frontend",
    }
}

/// A cursor over a message body that fails instead of panicking.
struct Fields<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Malformed(self.what));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, WireError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(be_i32(self.take(4)?))
    }
    /// A NUL-terminated string; its bytes without the NUL.
    fn cstr(&mut self) -> Result<&'a [u8], WireError> {
        let n = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or(WireError::Malformed(self.what))?;
        let s = self.take(n + 1)?;
        Ok(&s[..n])
    }
    /// A count (Int16, unsigned in practice) of `size`-byte items.
    fn items(&mut self, size: usize) -> Result<(), WireError> {
        let n = self.i16()? as u16 as usize;
        self.take(n * size).map(|_| ())
    }
    fn end(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed(self.what))
        }
    }
}

/// Check a regular message's body (after type byte and length) field by field.
fn check_layout(tag: u8, body: &[u8]) -> Result<(), WireError> {
    let mut f = Fields {
        b: body,
        what: kind_name(tag),
    };
    match tag {
        b'Q' | b'f' => {
            f.cstr()?;
        }
        b'P' => {
            f.cstr()?;
            f.cstr()?;
            f.items(4)?;
        }
        b'B' => {
            f.cstr()?;
            f.cstr()?;
            f.items(2)?;
            let params = f.i16()? as u16;
            for _ in 0..params {
                let len = f.i32()?;
                if len < -1 {
                    return Err(WireError::Malformed("Bind"));
                }
                if len > 0 {
                    f.take(len as usize)?;
                }
            }
            f.items(2)?;
        }
        b'C' | b'D' => {
            f.take(1)?;
            f.cstr()?;
        }
        b'E' => {
            f.cstr()?;
            f.i32()?;
        }
        b'H' | b'S' | b'X' | b'c' => {}
        // Bytes of any shape: CopyData, and the password family, whose
        // layout depends on the authentication exchange
        // ([`sasl_initial_response`], [`sasl_response`]).
        b'd' | b'p' => return Ok(()),
        // pgwire refuses unknown types with a clear error.
        _ => return Ok(()),
    }
    f.end()
}

/// Check a start-up packet's body (after its length).
fn check_startup_layout(body: &[u8], ctx: &DecodeContext) -> Result<(), WireError> {
    let code = be_i32(&body[..4]);
    if ctx.awaiting_frontend_ssl {
        // SSLRequest or GSSENCRequest, exactly 8 bytes (checked by the caller).
        return Ok(());
    }
    let mut f = Fields {
        b: &body[4..],
        what: "startup packet",
    };
    if code == CANCEL_REQUEST_CODE {
        // Protocol 3.0: process id and a 4-byte key.
        f.what = "CancelRequest";
        f.i32()?;
        f.i32()?;
        return f.end();
    }
    // StartupMessage: name/value pairs, then a terminating NUL.
    loop {
        let name = f.cstr()?;
        if name.is_empty() {
            break;
        }
        f.cstr()?;
    }
    f.end()
}

/// A SASLInitialResponse ('p' during SASL authentication), checked before
/// pgwire decodes it: mechanism name, then an Int32 length (−1: none) and
/// that many bytes, nothing after.
pub fn sasl_initial_response(msg: PasswordMessageFamily) -> Result<SASLInitialResponse, WireError> {
    if let PasswordMessageFamily::Raw(body) = &msg {
        let mut f = Fields {
            b: body,
            what: "SASLInitialResponse",
        };
        f.cstr()?;
        let len = f.i32()?;
        if len < -1 {
            return Err(WireError::Malformed("SASLInitialResponse"));
        }
        if len > 0 {
            f.take(len as usize)?;
        }
        f.end()?;
    }
    msg.into_sasl_initial_response().map_err(WireError::Decode)
}

/// A SASLResponse ('p' during SASL authentication): any bytes.
pub fn sasl_response(msg: PasswordMessageFamily) -> Result<SASLResponse, WireError> {
    msg.into_sasl_response().map_err(WireError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::messages::ProtocolVersion;

    fn regular() -> DecodeContext {
        let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
        ctx
    }

    fn decode(
        bytes: &[u8],
        ctx: &DecodeContext,
    ) -> Result<Option<PgWireFrontendMessage>, WireError> {
        decode_frame(&mut BytesMut::from(bytes), ctx, 1 << 20)
    }

    /// Each of these panicked inside pgwire 0.42's decoders (found by the
    /// fuzz target `pg_frontend`; inputs in fuzz/regressions/pg_frontend).
    #[test]
    fn truncated_bodies_are_a_protocol_violation_not_a_panic() {
        for bytes in [
            &b"P\0\0\0\x04"[..],                          // Parse without fields
            b"P\0\0\0\x06a\0",                            // Parse without a query or count
            b"B\0\0\0\x04",                               // Bind without fields
            b"B\0\0\0\x0e\0\0\0\0\0\x01\x7f\xff\xff\xff", // Bind parameter longer than the message
            b"C\0\0\0\x04",                               // Close without target
            b"D\0\0\0\x04",                               // Describe without target
            b"E\0\0\0\x06p\0",                            // Execute without a row count
        ] {
            assert!(
                matches!(decode(bytes, &regular()), Err(WireError::Malformed(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_message_is_decoded_from_its_own_bytes_only() {
        // A Query without its NUL, followed by a Sync: pgwire would take
        // the query up to the Sync's bytes.
        let mut buf = BytesMut::from(&b"Q\0\0\0\x06ab"[..]);
        buf.extend_from_slice(b"S\0\0\0\x04");
        assert!(matches!(
            decode_frame(&mut buf, &regular(), 1 << 20),
            Err(WireError::Malformed("Query"))
        ));
        // Trailing bytes inside a message are refused too.
        assert!(matches!(
            decode(b"S\0\0\0\x05x", &regular()),
            Err(WireError::Malformed("Sync"))
        ));
    }

    #[test]
    fn well_formed_messages_still_decode() {
        let ok = [
            &b"Q\0\0\0\x0dSELECT 1\0"[..],
            b"P\0\0\0\x11s\0SELECT 1\0\0\0",
            b"B\0\0\0\x16\0s\0\0\x01\0\x01\0\x01\0\0\0\x011\0\x01\0\x01",
            b"B\0\0\0\x10\0\0\0\0\0\x01\xff\xff\xff\xff\0\0",
            b"D\0\0\0\x06S\0",
            b"E\0\0\0\x09\0\0\0\0\0",
            b"C\0\0\0\x06P\0",
            b"S\0\0\0\x04",
            b"H\0\0\0\x04",
            b"X\0\0\0\x04",
            b"p\0\0\0\x09pass\0",
        ];
        for bytes in ok {
            let mut buf = BytesMut::from(bytes);
            let m = decode_frame(&mut buf, &regular(), 1 << 20);
            assert!(matches!(m, Ok(Some(_))), "{bytes:?}: {m:?}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_lying_length_does_not_allocate_what_it_promises() {
        let mut buf = BytesMut::from(&b"Q\x0f\xff\xff\xff"[..]);
        assert!(matches!(
            decode_frame(&mut buf, &regular(), (1 << 30) - 1),
            Ok(None)
        ));
        assert!(buf.capacity() <= RESERVE_AHEAD + 64, "{}", buf.capacity());
    }

    #[test]
    fn start_up_packets_are_checked() {
        let ssl_ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        let mut startup_ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        startup_ctx.awaiting_frontend_ssl = false;
        // SSLRequest with a length other than 8: bytes after it would be
        // taken for the next packet.
        assert!(matches!(
            decode(b"\0\0\0\x0c\x04\xd2\x16\x2fjunk", &ssl_ctx),
            Err(WireError::BadLength(12))
        ));
        assert!(matches!(
            decode(b"\0\0\0\x08\x04\xd2\x16\x2f", &ssl_ctx),
            Ok(Some(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresSsl(_)
            )))
        ));
        // A StartupMessage without its terminator.
        assert!(matches!(
            decode(b"\0\0\0\x0e\0\x03\0\0user\0u", &startup_ctx),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"\0\0\0\x10\0\x03\0\0user\0u\0\0", &startup_ctx),
            Ok(Some(PgWireFrontendMessage::Startup(_)))
        ));
        // A CancelRequest longer than protocol 3.0's.
        assert!(matches!(
            decode(
                b"\0\0\0\x14\x04\xd2\x16\x2e\0\0\0\x01\0\0\0\x02\0\0\0\x03",
                &startup_ctx
            ),
            Err(WireError::Malformed("CancelRequest"))
        ));
        // Start-up packets are bounded by MAX_STARTUP_PACKET whatever
        // max_message_size says.
        assert!(matches!(
            decode(b"\0\x01\0\0\0\x03\0\0", &startup_ctx),
            Err(WireError::BadLength(65536))
        ));
    }

    #[test]
    fn sasl_messages_are_checked() {
        let raw = |b: &[u8]| PasswordMessageFamily::Raw(BytesMut::from(b));
        assert!(sasl_initial_response(raw(b"SCRAM-SHA-256\0")).is_err());
        assert!(sasl_initial_response(raw(b"SCRAM-SHA-256\0\0\0\0\x09abc")).is_err());
        let ok = sasl_initial_response(raw(b"SCRAM-SHA-256\0\0\0\0\x03abc")).unwrap();
        assert_eq!(ok.auth_method, "SCRAM-SHA-256");
        assert_eq!(ok.data.as_deref(), Some(&b"abc"[..]));
        assert!(sasl_response(raw(b"")).is_ok());
    }
}
