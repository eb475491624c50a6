//! TLS for PostgreSQL clients: the certificate, key and client CA from
//! files (`tls_cert_file`, `tls_key_file`, `tls_client_ca_file`), made into
//! a rustls [`ServerConfig`], and read again on SIGHUP (docs/security.md
//! §TLS for clients).
//!
//! The configuration in force sits behind a lock as an `Arc`: a connection
//! takes the `Arc` once, at its start, so a reload changes what new
//! connections get and never what an open one runs on. A reload that fails
//! leaves the old configuration in force.
//!
//! The session side (SSLRequest, direct TLS, the handshake) is in
//! crates/hadr-server/src/session/transport.rs.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use hadr_secrets::pem::{read_certs, read_key};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The ALPN protocol of PostgreSQL (PostgreSQL 17's direct TLS requires it).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The ALPN protocol of the admin port (HTTPS, HTTP/1.1 only).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why the TLS files cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is unreadable, not PEM, or (the key) open to others.
    #[error(transparent)]
    File(#[from] hadr_secrets::pem::PemError),
    /// The leaf certificate is not a valid X.509 certificate.
    #[error("TLS certificate file {}: not a valid X.509 certificate: {message}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// rustls refused the certificate and key: typically a key that does
    /// not belong to the certificate.
    #[error("TLS certificate file {} and key file {} cannot be used together: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The client CA file holds no usable CA certificate.
    #[error("TLS client CA file {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The files TLS is made from (the configuration's `tls_*` keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (readable by its owner only).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates are verified against.
    pub client_ca: Option<PathBuf>,
}

/// One loaded configuration: what a connection's handshake runs on, and
/// what it tells the session about the server's certificate.
pub struct TlsState {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// RFC 5929 `tls-server-end-point` of the leaf certificate (empty when
    /// its signature algorithm names no hash: channel binding is then
    /// impossible, as in PostgreSQL).
    pub server_end_point: Vec<u8>,
}

/// Client TLS as configured, reloadable: for PostgreSQL clients, or for
/// the admin port's (HTTPS; crates/hadr-server/src/admin_http.rs).
pub struct ClientTls {
    files: TlsFiles,
    alpn: &'static [u8],
    current: RwLock<Arc<TlsState>>,
}

impl ClientTls {
    /// Load the files for PostgreSQL clients; any problem is an error
    /// naming the file.
    pub fn load(files: TlsFiles) -> Result<ClientTls, TlsError> {
        ClientTls::load_for(files, ALPN_POSTGRESQL)
    }

    /// Load the files for the admin port.
    pub fn load_admin(files: TlsFiles) -> Result<ClientTls, TlsError> {
        ClientTls::load_for(files, ALPN_HTTP1)
    }

    fn load_for(files: TlsFiles, alpn: &'static [u8]) -> Result<ClientTls, TlsError> {
        let state = load(&files, alpn)?;
        Ok(ClientTls {
            files,
            alpn,
            current: RwLock::new(Arc::new(state)),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<TlsState> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Read the files again. On success new connections use them; on
    /// failure the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let state = load(&self.files, self.alpn)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        Ok(())
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// Build a rustls configuration from the files.
fn load(files: &TlsFiles, alpn: &[u8]) -> Result<TlsState, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = read_certs(&files.cert, "TLS certificate")?;
    let key = read_key(&files.key, "TLS private key")?;
    let server_end_point = match chain.first() {
        Some(leaf) => end_point(leaf).map_err(|message| TlsError::Certificate {
            path: files.cert.clone(),
            message,
        })?,
        None => Vec::new(),
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(path, "TLS client CA")? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            // Clients without a certificate are let in: whether one is
            // needed is for the access rules (`cert`) or the admin rules to say.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    // No resumption, as in PostgreSQL: a resumed session would skip the
    // client certificate check against a CA that a reload may have changed.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(TlsState {
        config: Arc::new(config),
        server_end_point,
    })
}
/// RFC 5929 `tls-server-end-point` of a certificate: its hash with the hash
/// function of its signature algorithm, SHA-256 for MD5 and SHA-1 (§4.1).
/// Empty when the algorithm names no single hash (Ed25519, RSA-PSS), as
/// PostgreSQL has it. Err: not a certificate.
pub fn end_point(cert_der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| e.to_string())?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    Ok(match end_point_hash(&oid) {
        Some(EndPointHash::Sha256) => Sha256::digest(cert_der).to_vec(),
        Some(EndPointHash::Sha384) => Sha384::digest(cert_der).to_vec(),
        Some(EndPointHash::Sha512) => Sha512::digest(cert_der).to_vec(),
        None => Vec::new(),
    })
}

/// The hash `tls-server-end-point` uses for a signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

/// By the signature algorithm's OID (RFC 5929 §4.1: MD5 and SHA-1 become
/// SHA-256).
fn end_point_hash(oid: &str) -> Option<EndPointHash> {
    match oid {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption,
        // ecdsa-with-SHA1, ecdsa-with-SHA256, dsa-with-sha1, dsa-with-sha256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3"
        | "2.16.840.1.101.3.4.3.2" => Some(EndPointHash::Sha256),
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Some(EndPointHash::Sha384),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Some(EndPointHash::Sha512),
        _ => None,
    }
}

/// The subject CN of a certificate (the first, if several), if it has one
/// in a string type.
pub fn subject_cn(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Certificates for tests (crates/hadr-testkit/src/certs.rs), and the
/// server files the unit tests here use.
#[cfg(test)]
pub(crate) mod test_certs {
    use std::path::{Path, PathBuf};

    pub use hadr_testkit::certs::Ca;

    /// Write `text` to `dir/name` with `mode`.
    pub fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        hadr_testkit::certs::write(&dir.join(name), text, mode)
    }

    /// Server files signed by `ca` in `dir`: (cert, key) paths.
    pub fn server_files(dir: &Path, ca: &Ca) -> (PathBuf, PathBuf) {
        let (cert, key) = ca.leaf("localhost", &["localhost", "127.0.0.1"], false);
        (
            write(dir, "server.pem", &cert.pem(), 0o644),
            write(dir, "server.key", &key.serialize_pem(), 0o600),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::path::Path;

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        assert_eq!(
            end_point_hash("1.2.840.10045.4.3.2"),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(
            end_point_hash("1.2.840.113549.1.1.5"),
            Some(EndPointHash::Sha256),
            "SHA-1 becomes SHA-256"
        );
        assert_eq!(
            end_point_hash("1.2.840.113549.1.1.12"),
            Some(EndPointHash::Sha384)
        );
        assert_eq!(
            end_point_hash("1.2.840.10045.4.3.4"),
            Some(EndPointHash::Sha512)
        );
        assert_eq!(end_point_hash("1.3.101.112"), None, "Ed25519");
        assert_eq!(end_point_hash("1.2.840.113549.1.1.10"), None, "RSA-PSS");
    }

    use super::test_certs::{server_files, write, Ca};

    fn files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsFiles {
        TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: client_ca.map(Path::to_path_buf),
        }
    }

    #[test]
    fn a_good_pair_loads_and_its_end_point_is_the_sha256_of_the_leaf() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let (cert, key) = server_files(d.path(), &ca);
        let ca_file = write(d.path(), "ca.pem", &ca.cert.pem(), 0o644);
        let tls = ClientTls::load(files(&cert, &key, Some(&ca_file))).unwrap();
        let leaf = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        // rcgen signs with ECDSA P-256 and SHA-256.
        assert_eq!(
            tls.current().server_end_point,
            Sha256::digest(leaf.as_ref()).to_vec()
        );
        assert_eq!(subject_cn(leaf.as_ref()).as_deref(), Some("localhost"));
        assert_eq!(
            tls.current().config.alpn_protocols,
            vec![b"postgresql".to_vec()]
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let (cert, key) = server_files(d.path(), &ca);
        let msg = |f: TlsFiles| ClientTls::load(f).err().expect("refused").to_string();

        let missing = d.path().join("nope.pem");
        let e = msg(files(&missing, &key, None));
        assert!(e.contains("nope.pem"), "{e}");

        let garbage = write(d.path(), "garbage.pem", "hello\n", 0o644);
        let e = msg(files(&garbage, &key, None));
        assert!(e.contains("garbage.pem") && e.contains("no PEM"), "{e}");
        let broken = write(
            d.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            0o644,
        );
        let e = msg(files(&broken, &key, None));
        assert!(e.contains("broken.pem"), "{e}");

        let garbage_key = write(d.path(), "garbage.key", "hello\n", 0o600);
        let e = msg(files(&cert, &garbage_key, None));
        assert!(e.contains("garbage.key"), "{e}");

        let open_key = write(
            d.path(),
            "open.key",
            &std::fs::read_to_string(&key).unwrap(),
            0o640,
        );
        let e = msg(files(&cert, &open_key, None));
        assert!(e.contains("open.key") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "no key material: {e}");

        let (_, other_key) = ca.leaf("other", &["other"], false);
        let other = write(d.path(), "other.key", &other_key.serialize_pem(), 0o600);
        let e = msg(files(&cert, &other, None));
        assert!(e.contains("server.pem") && e.contains("other.key"), "{e}");

        let e = msg(files(&cert, &key, Some(&garbage)));
        assert!(e.contains("garbage.pem"), "{e}");
    }

    #[test]
    fn a_failed_reload_keeps_the_old_configuration() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = server_files(d.path(), &Ca::new("first CA"));
        let tls = ClientTls::load(files(&cert, &key, None)).unwrap();
        let before = tls.current();
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.current()));
        let (cert2, key2) = server_files(d.path(), &Ca::new("second CA"));
        assert_eq!((&cert2, &key2), (&cert, &key));
        tls.reload().unwrap();
        assert_ne!(before.server_end_point, tls.current().server_end_point);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(end_point(b"not a certificate").is_err());
        assert_eq!(subject_cn(b"\x30\x03\x02\x01\x00"), None);
    }
}
