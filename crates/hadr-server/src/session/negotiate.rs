//! What to do with the first bytes of a connection and with an
//! SSLRequest: pure decisions, no I/O (the driver is [`super::transport`]).

/// How a connection opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// PostgreSQL messages: an SSLRequest, a GSSENCRequest, a
    /// CancelRequest or a StartupMessage.
    Postgres,
    /// A TLS ClientHello at once (PostgreSQL 17's `sslnegotiation=direct`).
    DirectTls,
}

/// A TLS handshake record starts with content type 22; a PostgreSQL
/// start-up packet starts with the high byte of its length, which is 0
/// for every packet the server accepts (PostgreSQL tells them apart the
/// same way). None: nothing read yet.
pub fn opening(first: &[u8]) -> Option<Opening> {
    match first.first()? {
        0x16 => Some(Opening::DirectTls),
        _ => Some(Opening::Postgres),
    }
}

/// The answer to an SSLRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslAnswer {
    /// 'N': no TLS here; the client goes on in plain text or gives up.
    Decline,
    /// 'S', then the TLS handshake.
    Accept,
    /// The client sent more after the SSLRequest without waiting for the
    /// answer: those bytes were not encrypted, and may have been injected
    /// by a man in the middle to run inside the TLS session that follows
    /// (CVE-2021-23214). Close the connection, without TLS.
    RefuseInjected,
    /// An SSLRequest inside TLS: a protocol violation.
    AlreadyEncrypted,
}

/// Decide the answer to an SSLRequest, given whether TLS is configured,
/// whether the connection is already encrypted, and how many bytes the
/// client sent after the request that were read with it.
pub fn answer_ssl_request(configured: bool, encrypted: bool, buffered_after: usize) -> SslAnswer {
    if encrypted {
        SslAnswer::AlreadyEncrypted
    } else if !configured {
        // Whatever follows is plain text, as the client will know from the
        // 'N': nothing can be smuggled into an encrypted session.
        SslAnswer::Decline
    } else if buffered_after > 0 {
        SslAnswer::RefuseInjected
    } else {
        SslAnswer::Accept
    }
}

/// What a direct TLS connection needs once its handshake is done:
/// PostgreSQL 17 requires ALPN `postgresql` there, so that a TLS
/// connection meant for another protocol (an HTTPS client sent to the
/// wrong port, a cross-protocol attack) cannot be taken for a session.
pub fn direct_alpn_ok(alpn: Option<&[u8]>) -> bool {
    alpn == Some(crate::client_tls::ALPN_POSTGRESQL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_is_told_from_a_startup_packet_by_its_first_byte() {
        assert_eq!(opening(&[]), None);
        assert_eq!(opening(&[0x16, 0x03, 0x01]), Some(Opening::DirectTls));
        // SSLRequest: length 8, code 80877103.
        assert_eq!(
            opening(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
            Some(Opening::Postgres)
        );
        assert_eq!(opening(&[0]), Some(Opening::Postgres));
        // Garbage goes to the message decoder, which refuses it.
        assert_eq!(opening(b"GET / HTTP/1.1"), Some(Opening::Postgres));
    }

    #[test]
    fn ssl_request_answers() {
        assert_eq!(answer_ssl_request(false, false, 0), SslAnswer::Decline);
        assert_eq!(answer_ssl_request(false, false, 40), SslAnswer::Decline);
        assert_eq!(answer_ssl_request(true, false, 0), SslAnswer::Accept);
        assert_eq!(
            answer_ssl_request(true, false, 1),
            SslAnswer::RefuseInjected
        );
        assert_eq!(
            answer_ssl_request(true, true, 0),
            SslAnswer::AlreadyEncrypted
        );
        assert_eq!(
            answer_ssl_request(false, true, 0),
            SslAnswer::AlreadyEncrypted
        );
    }

    #[test]
    fn direct_tls_needs_alpn_postgresql() {
        assert!(direct_alpn_ok(Some(&b"postgresql"[..])));
        assert!(!direct_alpn_ok(None));
        assert!(!direct_alpn_ok(Some(&b"http/1.1"[..])));
    }
}
