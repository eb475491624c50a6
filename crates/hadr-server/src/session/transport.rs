//! The byte stream a session runs on: the plain socket, or TLS over it
//! (rustls, synchronous like the rest of the session thread), and the TLS
//! handshake, bounded by a deadline.
//!
//! The socket keeps its write timeout (`client_write_timeout`) under TLS:
//! rustls writes through it. The handshake's reads are bounded by what is
//! left of the start-up deadline, so a client that opens TLS and stalls, or
//! trickles bytes, gives its slot back in time.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::wire::Stream;
use crate::client_tls::{subject_cn, TlsState};

/// A client connection, plain or on TLS.
pub enum ClientStream {
    /// No TLS.
    Plain(TcpStream),
    /// TLS, its handshake done.
    Tls(Box<TlsStream>),
    /// Neither: only while the stream is being upgraded, or after an
    /// upgrade failed (every read and write fails).
    Gone,
}

/// A TLS session on a socket: it sends close_notify when dropped.
pub struct TlsStream(pub StreamOwned<ServerConnection, TcpStream>);

impl Drop for TlsStream {
    /// Say goodbye (close_notify) without waiting: a client that stopped
    /// reading must not hold the session thread here.
    fn drop(&mut self) {
        let s = &mut self.0;
        s.conn.send_close_notify();
        if s.sock.set_nonblocking(true).is_ok() {
            let _ = s.conn.write_tls(&mut s.sock);
        }
    }
}

impl ClientStream {
    fn gone() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "connection closed")
    }

    /// Whether the connection is on TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            ClientStream::Tls(s) => s.0.read(buf),
            ClientStream::Gone => Err(Self::gone()),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            ClientStream::Tls(s) => s.0.write(buf),
            ClientStream::Gone => Err(Self::gone()),
        }
    }

    /// Under TLS a write may leave records in rustls's buffer: this sends
    /// them (through the socket's write timeout).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            ClientStream::Tls(s) => s.0.flush(),
            ClientStream::Gone => Err(Self::gone()),
        }
    }
}

impl Stream for ClientStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.set_read_timeout(timeout),
            ClientStream::Tls(s) => s.0.sock.set_read_timeout(timeout),
            ClientStream::Gone => Err(Self::gone()),
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The deadline passed first.
    #[error("TLS handshake not complete within the start-up timeout")]
    Timeout,
    /// The client closed the connection.
    #[error("the client closed the connection during the TLS handshake")]
    Closed,
    /// A socket error.
    #[error("TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// The TLS exchange itself failed (the client's alert, a bad message,
    /// a client certificate that does not verify…).
    #[error("TLS handshake: {0}")]
    Tls(#[source] rustls::Error),
}

/// Run the server side of a TLS handshake on `tcp`. `early`: bytes of
/// the client's first flight already read (direct TLS). Every read waits at
/// most until `deadline`; writes are bounded by the socket's write timeout.
/// Returns the TLS stream and the subject CN of the client's certificate,
/// if it presented one (rustls has verified it against the client CA).
pub fn handshake(
    mut tcp: TcpStream,
    state: &TlsState,
    early: &[u8],
    deadline: Instant,
) -> Result<(TlsStream, Option<String>), HandshakeError> {
    let mut conn = ServerConnection::new(Arc::clone(&state.config)).map_err(HandshakeError::Tls)?;
    let mut early = early;
    while !early.is_empty() {
        conn.read_tls(&mut early).map_err(HandshakeError::Io)?;
        process(&mut conn, &mut tcp)?;
    }
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut tcp).map_err(HandshakeError::Io)?;
        }
        if !conn.is_handshaking() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::Timeout);
        }
        tcp.set_read_timeout(Some(left))
            .map_err(HandshakeError::Io)?;
        match conn.read_tls(&mut tcp) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => process(&mut conn, &mut tcp)?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HandshakeError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
    while conn.wants_write() {
        conn.write_tls(&mut tcp).map_err(HandshakeError::Io)?;
    }
    let client_cn = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| subject_cn(leaf));
    Ok((TlsStream(StreamOwned::new(conn, tcp)), client_cn))
}

/// Process what was read; on an error, send the alert rustls queued.
fn process(conn: &mut ServerConnection, tcp: &mut TcpStream) -> Result<(), HandshakeError> {
    if let Err(e) = conn.process_new_packets() {
        let _ = conn.write_tls(tcp);
        return Err(HandshakeError::Tls(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_tls::test_certs::{server_files, write, Ca};
    use crate::client_tls::{ClientTls, TlsFiles};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::net::TcpListener;

    struct Setup {
        tls: ClientTls,
        ca: Ca,
        _dir: tempfile::TempDir,
    }

    fn setup(with_client_ca: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let (cert, key) = server_files(dir.path(), &ca);
        let client_ca = with_client_ca.then(|| write(dir.path(), "ca.pem", &ca.cert.pem(), 0o644));
        let tls = ClientTls::load(TlsFiles {
            cert,
            key,
            client_ca,
        })
        .unwrap();
        Setup { tls, ca, _dir: dir }
    }

    fn client_config(ca: &Ca, client_cert: Option<(&str, &Ca)>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match client_cert {
            None => b.with_no_client_auth(),
            Some((cn, signer)) => {
                let (cert, key) = signer.leaf(cn, &[], true);
                let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into();
                b.with_client_auth_cert(vec![cert.der().clone()], key)
                    .unwrap()
            }
        })
    }

    /// A connected pair: (client side, server side).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    /// Run a client handshake, then send `hello` and read the reply.
    fn run_client(tcp: TcpStream, config: Arc<ClientConfig>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(config, name).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut s = StreamOwned::new(conn, tcp);
            if s.write_all(b"hello").and_then(|_| s.flush()).is_err() {
                return Vec::new();
            }
            let mut reply = [0u8; 5];
            match s.read_exact(&mut reply) {
                Ok(()) => reply.to_vec(),
                Err(_) => Vec::new(),
            }
        })
    }

    /// The server side: handshake, read "hello", answer "world"; the client CN.
    fn serve(
        server: TcpStream,
        tls: &ClientTls,
        deadline: Duration,
    ) -> Result<Option<String>, HandshakeError> {
        let state = tls.current();
        let (stream, cn) = handshake(server, &state, &[], Instant::now() + deadline)?;
        let mut s = ClientStream::Tls(Box::new(stream));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        s.write_all(b"world").unwrap();
        s.flush().unwrap();
        Ok(cn)
    }

    #[test]
    fn a_handshake_carries_data_both_ways() {
        let st = setup(false);
        let (c, s) = pair();
        let client = run_client(c, client_config(&st.ca, None));
        let cn = serve(s, &st.tls, Duration::from_secs(10)).unwrap();
        assert_eq!(client.join().unwrap(), b"world");
        assert_eq!(cn, None);
    }

    #[test]
    fn a_verified_client_certificate_gives_its_cn() {
        let st = setup(true);
        let (c, s) = pair();
        let client = run_client(c, client_config(&st.ca, Some(("alice", &st.ca))));
        let cn = serve(s, &st.tls, Duration::from_secs(10)).unwrap();
        assert_eq!(client.join().unwrap(), b"world");
        assert_eq!(cn.as_deref(), Some("alice"));

        // No certificate: let in, no CN.
        let (c, s) = pair();
        let client = run_client(c, client_config(&st.ca, None));
        let cn = serve(s, &st.tls, Duration::from_secs(10)).unwrap();
        assert_eq!(client.join().unwrap(), b"world");
        assert_eq!(cn, None);
    }

    #[test]
    fn a_client_certificate_from_another_ca_is_refused() {
        let st = setup(true);
        let stranger = Ca::new("stranger CA");
        let (c, s) = pair();
        let client = run_client(c, client_config(&st.ca, Some(("mallory", &stranger))));
        let r = handshake(
            s,
            &st.tls.current(),
            &[],
            Instant::now() + Duration::from_secs(10),
        );
        assert!(matches!(r, Err(HandshakeError::Tls(_))), "{:?}", r.err());
        assert_eq!(client.join().unwrap(), b"");
    }

    #[test]
    fn a_silent_client_times_out_at_the_deadline() {
        let st = setup(false);
        let (_c, s) = pair();
        let started = Instant::now();
        let r = handshake(
            s,
            &st.tls.current(),
            &[],
            started + Duration::from_millis(300),
        );
        assert!(matches!(r, Err(HandshakeError::Timeout)), "{:?}", r.err());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn a_trickling_client_times_out_at_the_deadline_not_per_read() {
        let st = setup(false);
        let (mut c, s) = pair();
        // A ClientHello's record header, one byte every 100 ms: each read
        // gets something, but the handshake never completes.
        let trickle = std::thread::spawn(move || {
            for b in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc] {
                if c.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let r = handshake(
            s,
            &st.tls.current(),
            &[],
            started + Duration::from_millis(350),
        );
        assert!(matches!(r, Err(HandshakeError::Timeout)), "{:?}", r.err());
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
        trickle.join().unwrap();
    }

    #[test]
    fn plain_text_instead_of_a_client_hello_fails_the_handshake() {
        let st = setup(false);
        let (mut c, s) = pair();
        c.write_all(b"\0\0\0\x08\x04\xd2\x16\x2fGET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let r = handshake(
            s,
            &st.tls.current(),
            &[],
            Instant::now() + Duration::from_secs(5),
        );
        assert!(matches!(r, Err(HandshakeError::Tls(_))), "{:?}", r.err());
    }

    #[test]
    fn early_bytes_start_the_handshake() {
        // Direct TLS: the ClientHello was read before the handshake began.
        let st = setup(false);
        let (c, s) = pair();
        let client = run_client(c, client_config(&st.ca, None));
        let mut first = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = (&s).read(&mut first).unwrap();
        assert_eq!(first[0], 0x16);
        let state = st.tls.current();
        let (stream, _) = handshake(
            s,
            &state,
            &first[..n],
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
        let mut s = ClientStream::Tls(Box::new(stream));
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        s.write_all(b"world").unwrap();
        s.flush().unwrap();
        assert_eq!(client.join().unwrap(), b"world");
    }
}
