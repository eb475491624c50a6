//! The PEM files of TLS, read in one place for the client port, the admin
//! port, the replication links and the admin client: certificate chains
//! and CAs (public: read as they are) and private keys (read through
//! [`crate::read_private`], so a key its group or others can read is
//! refused). Every error names the file, and none carries a key's bytes.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::SecretError;

/// Why a PEM file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// A certificate file could not be read.
    #[error("{what} file {}: {source}", path.display())]
    Read {
        /// What the file should hold ("TLS certificate", "admin CA"…).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is refused (missing, open to others, empty).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Not PEM, or no item of the expected kind in it.
    #[error("{what} file {}: {message}", path.display())]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The certificates of a PEM file, at least one.
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = std::fs::read(path).map_err(|source| PemError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message| PemError::Pem {
        what,
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(message(&e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(bad(message(
            &rustls_pki_types::pem::Error::NoItemsFound,
            "CERTIFICATE",
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file only its owner can read.
pub fn read_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, PemError> {
    let pem = crate::read_private(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| PemError::Pem {
        what,
        path: path.to_path_buf(),
        // The PEM problem, never the key's bytes.
        message: message(&e, "PRIVATE KEY"),
    })
}

fn message(e: &rustls_pki_types::pem::Error, label: &str) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("no PEM {label} (-----BEGIN {label}-----) in it")
        }
        other => format!("not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn errors_name_the_file_and_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let garbage = d.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all").unwrap();
        let e = read_certs(&garbage, "TLS certificate")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TLS certificate file")
                && e.contains("garbage.pem")
                && e.contains("no PEM CERTIFICATE"),
            "{e}"
        );
        let e = read_certs(&d.path().join("missing.pem"), "admin CA")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("admin CA file") && e.contains("missing.pem"),
            "{e}"
        );

        let key = d.path().join("k.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\n%%secretbytes%%\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_key(&key, "TLS private key").unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_key(&key, "TLS private key").unwrap_err().to_string();
        assert!(e.contains("k.pem") && !e.contains("secretbytes"), "{e}");
    }
}
