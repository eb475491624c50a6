//! The transport of replication links: plain TCP, or mutual TLS with a
//! cluster CA (docs/security.md §Replication links).
//!
//! With TLS configured ([`LinkTls`]) a node dials with its own certificate
//! and checks the peer's against the CA and the host it dialled; it accepts
//! only TLS, with a client certificate from the CA that names a host of its
//! `hadr_target_list`. The first byte of a connection tells the two apart
//! ([`classify`]): a TLS record starts with 0x16, a hadr frame with the top
//! byte of its length, which `MAX_FRAME` keeps at 16 or below. A plaintext
//! peer of a TLS node is told so in a `Refuse` and gets nothing else; a TLS
//! peer of a plaintext node is dropped and the node logs why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hadr_protocol::{Message, Refuse, RefuseCode, MAX_FRAME};
use hadr_secrets::pem::{read_certs, read_key};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::wire::{Reader, Writer};

/// What a TLS node answers a plaintext peer.
pub const TLS_REQUIRED: &str = "this node requires mutual TLS on replication: set replication_tls_ca_file, replication_tls_cert_file and replication_tls_key_file (see hadr certs init)";

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

// A frame's length is at most MAX_FRAME, so its first byte stays below a
// TLS record's: the two never look alike.
const _: () = assert!(MAX_FRAME >> 24 < TLS_HANDSHAKE as usize);

/// What the first byte of a new connection says the peer speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// TLS: a handshake record.
    Tls,
    /// A hadr frame in plaintext: the top byte of its length.
    Frame,
    /// Neither (not a hadr peer).
    Other,
}

/// Classify a connection by its first byte.
pub fn classify(first: u8) -> Opening {
    if first == TLS_HANDSHAKE {
        Opening::Tls
    } else if usize::from(first) <= MAX_FRAME >> 24 {
        Opening::Frame
    } else {
        Opening::Other
    }
}

/// The host of a `host:port` address (`[v6]:port` too); an address
/// without a port is all host.
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match address.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.parse::<u16>().is_ok() => h,
        _ => address,
    }
}

/// The hosts among `peers` (`host:port` entries) that the certificate
/// `leaf` is valid for, by its subject alternative names: DNS names match
/// names, IP addresses match addresses (webpki's rules, as for a server).
pub fn listed_hosts(leaf: &CertificateDer<'_>, peers: &[String]) -> Vec<String> {
    let Ok(cert) = rustls::server::ParsedCertificate::try_from(leaf) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for p in peers {
        let host = host_of(p);
        let valid = ServerName::try_from(host)
            .is_ok_and(|n| rustls::client::verify_server_name(&cert, &n).is_ok());
        if valid && !out.iter().any(|h| h == host) {
            out.push(host.to_string());
        }
    }
    out
}

/// The three files of a node's replication TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate(s), PEM.
    pub ca: PathBuf,
    /// This node's certificate (and any intermediates), PEM.
    pub cert: PathBuf,
    /// This node's private key, PEM; readable by its owner only.
    pub key: PathBuf,
}

/// Why the replication TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is unreadable, not PEM, or (the key) open to others.
    #[error("replication {0}")]
    File(#[from] hadr_secrets::pem::PemError),
    /// rustls refused the certificates or the key (e.g. the key does not
    /// belong to the certificate).
    #[error("replication TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA could not be made into a client verifier.
    #[error("replication TLS CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A node's replication TLS: how it dials, how it accepts, and whom it
/// accepts (the hosts of its `hadr_target_list`).
pub struct LinkTls {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    peers: Vec<String>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls")
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl LinkTls {
    /// Read the files (the key only if its owner alone can read it) and
    /// build both ends; `peers` are the `host:port` entries whose hosts may
    /// connect to this node.
    pub fn load(files: &TlsFiles, peers: Vec<String>) -> Result<LinkTls, TlsError> {
        let ca = read_certs(&files.ca, "TLS CA")?;
        let chain = read_certs(&files.cert, "TLS certificate")?;
        let key = read_key(&files.key, "TLS private key")?;
        Self::new(ca, chain, key, peers)
    }

    /// Both ends from parsed material.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        peers: Vec<String>,
    ) -> Result<LinkTls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in ca {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()?;
        // Both ends are hadr nodes: TLS 1.3 only, and no resumption, so
        // that every connection shows its full certificate chain.
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(LinkTls {
            client: Arc::new(client),
            server: Arc::new(server),
            peers,
        })
    }

    /// The `host:port` entries whose hosts may connect.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }
}

/// Who is at the other end of a link, as far as this node can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Over TLS: the hosts of `hadr_target_list` the peer's certificate
    /// names (never empty); None on a plaintext link.
    certified: Option<Vec<String>>,
}

impl Peer {
    /// A peer whose certificate names these listed hosts.
    pub fn certified(hosts: Vec<String>) -> Peer {
        Peer {
            certified: Some(hosts),
        }
    }

    /// Whether the peer may speak for `address`: always on a plaintext link
    /// (there is nothing to check), over TLS only if its certificate names
    /// that address's host.
    pub fn vouches_for(&self, address: &str) -> bool {
        match &self.certified {
            None => true,
            Some(hosts) => hosts.iter().any(|h| h == host_of(address)),
        }
    }

    /// The listed hosts its certificate names (None: plaintext).
    pub fn hosts(&self) -> Option<&[String]> {
        self.certified.as_deref()
    }
}

/// A connection ready for frames.
pub struct Link {
    /// Frames from the peer.
    pub reader: Reader,
    /// Frames to the peer.
    pub writer: Writer,
    /// Who it is.
    pub peer: Peer,
}

impl Link {
    fn plain(stream: TcpStream) -> Link {
        let (r, w) = stream.into_split();
        Link {
            reader: Reader::new(r),
            writer: Writer::new(w),
            peer: Peer::default(),
        }
    }
}

/// Why dialling a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// No connection in time.
    #[error("{peer} did not answer within {timeout:?}")]
    Timeout {
        /// The address dialled.
        peer: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The connection failed.
    #[error("cannot reach {peer}: {source}")]
    Unreachable {
        /// The address dialled.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host cannot be checked against a certificate.
    #[error("{peer}: {host:?} is neither a DNS name nor an IP address, so its certificate cannot be checked")]
    BadName {
        /// The address dialled.
        peer: String,
        /// Its host.
        host: String,
    },
    /// The TLS handshake failed or did not finish in time.
    #[error("TLS handshake with {peer} failed: {reason}; every node needs replication_tls_* set, with a certificate from the same cluster CA naming its host (see hadr certs init)")]
    Handshake {
        /// The address dialled.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// Dial `target` (`host:port`): TCP, then with `tls` the handshake, both
/// within `timeout`. The server must show a certificate from the cluster CA
/// for the host dialled.
pub async fn dial(
    target: &str,
    tls: Option<&LinkTls>,
    timeout: Duration,
) -> Result<Link, DialError> {
    let deadline = Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(target))
        .await
        .map_err(|_| DialError::Timeout {
            peer: target.to_string(),
            timeout,
        })?
        .map_err(|source| DialError::Unreachable {
            peer: target.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Link::plain(stream));
    };
    let host = host_of(target);
    let name = ServerName::try_from(host.to_string()).map_err(|_| DialError::BadName {
        peer: target.to_string(),
        host: host.to_string(),
    })?;
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let handshake = |reason: String| DialError::Handshake {
        peer: target.to_string(),
        reason,
    };
    let session = tokio::time::timeout_at(deadline, connector.connect(name, stream))
        .await
        .map_err(|_| handshake(format!("no answer within {timeout:?}")))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                handshake(format!(
                    "{e} (the peer closed the connection: does it have replication_tls_* set?)"
                ))
            }
            _ => handshake(e.to_string()),
        })?;
    let (r, w) = tokio::io::split(session);
    Ok(Link {
        reader: Reader::new(r),
        writer: Writer::new(w),
        peer: Peer::default(),
    })
}

/// Why an incoming connection was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The peer sent nothing in time.
    #[error("the peer sent nothing within {0:?}")]
    Silent(Duration),
    /// The socket failed (or closed at once).
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// Not a hadr peer.
    #[error("not a hadr replication peer (first byte {0:#04x}); dropped")]
    Garbage(u8),
    /// A plaintext peer at a TLS node: refused, and told why.
    #[error("a plaintext peer was refused: this node requires mutual TLS on replication")]
    Plaintext,
    /// A TLS peer at a node without replication TLS.
    #[error("the peer opened a TLS session, but this node has no replication_tls_* settings: set them on every node or on none")]
    TlsUnconfigured,
    /// The handshake failed (no certificate, another CA, …) or did not
    /// finish in time.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// A certificate from the cluster CA, but for no host this node lists:
    /// refused, and told why.
    #[error("its certificate names no host of hadr_target_list ({0}); refused")]
    NotListed(String),
}

/// Take an accepted connection: plaintext on a node without `tls`, mutual
/// TLS with a listed peer on a node with it. Refusals are sent before the
/// error returns; nothing else ever is.
pub async fn accept(
    stream: TcpStream,
    tls: Option<&LinkTls>,
    timeout: Duration,
) -> Result<Link, AcceptError> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(timeout, stream.peek(&mut first))
        .await
        .map_err(|_| AcceptError::Silent(timeout))??;
    if n == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    let tls = match (classify(first[0]), tls) {
        (Opening::Other, _) => return Err(AcceptError::Garbage(first[0])),
        (Opening::Tls, None) => return Err(AcceptError::TlsUnconfigured),
        (Opening::Frame, None) => return Ok(Link::plain(stream)),
        (Opening::Frame, Some(_)) => {
            let mut link = Link::plain(stream);
            refuse(
                &mut link,
                RefuseCode::TlsRequired,
                TLS_REQUIRED.into(),
                timeout,
            )
            .await;
            return Err(AcceptError::Plaintext);
        }
        (Opening::Tls, Some(tls)) => tls,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let session = tokio::time::timeout(timeout, acceptor.accept(stream))
        .await
        .map_err(|_| AcceptError::Handshake(format!("not done within {timeout:?}")))?
        .map_err(|e| AcceptError::Handshake(e.to_string()))?;
    let hosts = session
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|leaf| listed_hosts(leaf, &tls.peers))
        .unwrap_or_default();
    let (r, w) = tokio::io::split(session);
    let empty = hosts.is_empty();
    let mut link = Link {
        reader: Reader::new(r),
        writer: Writer::new(w),
        peer: Peer::certified(hosts),
    };
    if empty {
        let listed = tls.peers.join("|");
        let reason = format!(
            "this node accepts replication peers whose certificate names a host of its hadr_target_list ({listed}); this one names none"
        );
        refuse(&mut link, RefuseCode::NotListed, reason, timeout).await;
        return Err(AcceptError::NotListed(listed));
    }
    Ok(link)
}

/// Read the peer's first frame, refuse, close our side, and drain what the
/// peer still sends until it closes too (bounded by `timeout`): closing a
/// socket with unread data resets the connection, and the reset could
/// overtake the refusal.
async fn refuse(link: &mut Link, code: RefuseCode, reason: String, timeout: Duration) {
    let _ = link.reader.next(timeout).await;
    let refusal = Message::Refuse(Refuse::new(code, reason));
    if link.writer.send(&refusal, timeout).await.is_ok() {
        link.writer.close(timeout).await;
        let deadline = Instant::now() + timeout;
        while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, link.reader.next(timeout)).await {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_tells_tls_from_a_frame_from_garbage() {
        assert_eq!(classify(0x16), Opening::Tls);
        // Every frame hadr can send or accept opens with its length.
        for m in [
            Message::CloneRequest,
            Message::Refuse(Refuse::new(RefuseCode::Other, "x")),
        ] {
            assert_eq!(classify(m.encode()[0]), Opening::Frame);
        }
        let biggest = (MAX_FRAME as u32).to_be_bytes();
        assert_eq!(classify(biggest[0]), Opening::Frame);
        for b in [b'G', b'P', 0x11, 0x15, 0x17, 0xff] {
            assert_eq!(classify(b), Opening::Other, "{b:#04x}");
        }
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.1:9433"), "10.0.0.1");
        assert_eq!(host_of("db1.example:9433"), "db1.example");
        assert_eq!(host_of("[::1]:9433"), "::1");
        assert_eq!(host_of("db1.example"), "db1.example");
        assert_eq!(host_of("::1"), "::1");
    }

    fn cert(ca: &rcgen::Issuer<'_, rcgen::KeyPair>, names: &[&str]) -> CertificateDer<'static> {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        params.signed_by(&key, ca).unwrap().der().clone()
    }

    fn ca() -> rcgen::Issuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::Issuer::new(params, rcgen::KeyPair::generate().unwrap())
    }

    #[test]
    fn a_certificate_vouches_only_for_the_listed_hosts_it_names() {
        let ca = ca();
        let peers: Vec<String> = ["10.0.0.2:9433", "db3.example:9433", "[fd00::4]:9433"]
            .map(String::from)
            .into();
        let by_ip = cert(&ca, &["10.0.0.2", "db2.example"]);
        assert_eq!(listed_hosts(&by_ip, &peers), vec!["10.0.0.2"]);
        let by_name = cert(&ca, &["DB3.example"]);
        assert_eq!(listed_hosts(&by_name, &peers), vec!["db3.example"]);
        let v6 = cert(&ca, &["fd00::4"]);
        assert_eq!(listed_hosts(&v6, &peers), vec!["fd00::4"]);
        // A cluster certificate for a host nobody listed.
        let stranger = cert(&ca, &["10.9.9.9", "stranger.example"]);
        assert!(listed_hosts(&stranger, &peers).is_empty());
        // A name does not vouch for an address, even one it resolves to.
        let name_only = cert(&ca, &["db2.example"]);
        assert!(listed_hosts(&name_only, &peers).is_empty());
        assert!(listed_hosts(&CertificateDer::from(vec![1, 2, 3]), &peers).is_empty());
    }

    #[test]
    fn a_peer_vouches_for_addresses_on_its_certified_hosts() {
        let p = Peer::certified(vec!["10.0.0.2".into(), "db3.example".into()]);
        assert!(p.vouches_for("10.0.0.2:9433"));
        assert!(p.vouches_for("db3.example:1"));
        assert!(!p.vouches_for("10.0.0.3:9433"));
        assert!(!p.vouches_for("db3.example.evil:1"));
        // Plaintext: nothing to check (the node accepts plaintext only
        // when it has no TLS at all).
        assert!(Peer::default().vouches_for("10.0.0.3:9433"));
    }
}
