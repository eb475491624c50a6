//! HTTPS to a node's admin port (docs/security.md §Admin endpoint): the
//! CA the node's certificate is checked against, and optionally a client
//! certificate, which such a node takes as a credential instead of the
//! admin token. rustls with aws-lc-rs, as everywhere in hadr.

use std::path::PathBuf;
use std::sync::Arc;

use hadr_secrets::pem::{read_certs, read_key, PemError};
pub use rustls::ClientConfig;
use rustls::RootCertStore;

/// Environment variable naming the CA file, for the `hadr` commands.
pub const CA_ENV: &str = "HADR_ADMIN_CA";
/// Environment variable naming the client certificate file.
pub const CERT_ENV: &str = "HADR_ADMIN_CERT";
/// Environment variable naming the client certificate's key file.
pub const KEY_ENV: &str = "HADR_ADMIN_KEY";

/// The files of an HTTPS admin client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminTlsFiles {
    /// PEM CA certificates the node's certificate must chain to.
    pub ca: PathBuf,
    /// A PEM client certificate chain and its key (readable by its owner
    /// only), presented when the node asks.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Why the files cannot make an HTTPS client. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AdminTlsError {
    /// A file is unreadable, not PEM, or (the key) open to others.
    #[error(transparent)]
    File(#[from] PemError),
    /// A certificate in the CA file is not a usable CA.
    #[error("admin CA file {}: {message}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls could not be set up with the protocol versions asked.
    #[error("TLS set-up failed: {0}")]
    Setup(#[source] rustls::Error),
    /// rustls refused the client certificate and key together.
    #[error("admin client certificate {} and key {} cannot be used together: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// A rustls client configuration from the files.
pub fn client_config(files: &AdminTlsFiles) -> Result<Arc<ClientConfig>, AdminTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for c in read_certs(&files.ca, "admin CA")? {
        roots.add(c).map_err(|e| AdminTlsError::Ca {
            path: files.ca.clone(),
            message: e.to_string(),
        })?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(AdminTlsError::Setup)?
        .with_root_certificates(roots);
    let mut config = match &files.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                read_certs(cert, "admin client certificate")?,
                read_key(key, "admin client key")?,
            )
            .map_err(|source| AdminTlsError::Pair {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a client made without [`client_config`] runs an `https://`
/// address on: hadr's provider and no CA at all, so that such a node is
/// refused (its issuer is unknown) rather than trusted. reqwest would
/// otherwise look for a process-wide provider, and panic without one.
pub(crate) fn without_roots() -> Option<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?;
    Some(
        builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    )
}
