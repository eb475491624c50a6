//! The TLS keys of the configuration (docs/security.md): replication's
//! three files, the client port's and the admin port's certificate, key
//! and client CA, checked to come together and turned into what the
//! listeners load.

use std::path::PathBuf;

use super::{Config, ConfigError};

impl Config {
    /// The replication TLS files: all three or none (half a configuration
    /// would leave links open that the operator believes closed).
    pub fn replication_tls_files(
        &self,
    ) -> Result<Option<hadr_replication::link::TlsFiles>, ConfigError> {
        match (
            &self.replication_tls_ca_file,
            &self.replication_tls_cert_file,
            &self.replication_tls_key_file,
        ) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(hadr_replication::link::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, None) => Ok(None),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    (ca.is_none(), "replication_tls_ca_file"),
                    (cert.is_none(), "replication_tls_cert_file"),
                    (key.is_none(), "replication_tls_key_file"),
                ]
                .into_iter()
                .filter_map(|(m, k)| m.then_some(k))
                .collect();
                Err(ConfigError::Invalid {
                    key: "replication_tls_*",
                    message: format!(
                        "replication_tls_ca_file, replication_tls_cert_file and replication_tls_key_file go together (all three, or none for plain TCP); {} missing (hadr certs init makes all three)",
                        missing.join(" and ")
                    ),
                })
            }
        }
    }

    /// This node's replication TLS, loaded (the key only if its owner
    /// alone can read it); the hosts of `hadr_target_list` are the peers
    /// it accepts. None without the settings.
    pub fn replication_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<hadr_replication::link::LinkTls>>, ConfigError> {
        let Some(files) = self.replication_tls_files()? else {
            return Ok(None);
        };
        let tls = hadr_replication::link::LinkTls::load(&files, self.targets())?;
        Ok(Some(std::sync::Arc::new(tls)))
    }

    /// The TLS keys come together, for clients and for the admin port: a
    /// certificate needs its key, and a client CA means nothing without a
    /// certificate.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        tls_keys_together(
            ["tls_cert_file", "tls_key_file", "tls_client_ca_file"],
            [
                &self.tls_cert_file,
                &self.tls_key_file,
                &self.tls_client_ca_file,
            ],
        )?;
        tls_keys_together(
            [
                "admin_tls_cert_file",
                "admin_tls_key_file",
                "admin_tls_client_ca_file",
            ],
            [
                &self.admin_tls_cert_file,
                &self.admin_tls_key_file,
                &self.admin_tls_client_ca_file,
            ],
        )
    }

    /// The TLS files for clients (None: TLS is not configured).
    pub fn tls_files(&self) -> Option<crate::client_tls::TlsFiles> {
        Some(crate::client_tls::TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.tls_client_ca_file.clone(),
        })
    }

    /// The TLS files of the admin port (None: it speaks plain HTTP).
    pub fn admin_tls_files(&self) -> Option<crate::client_tls::TlsFiles> {
        Some(crate::client_tls::TlsFiles {
            cert: self.admin_tls_cert_file.clone()?,
            key: self.admin_tls_key_file.clone()?,
            client_ca: self.admin_tls_client_ca_file.clone(),
        })
    }
}

/// A certificate, its key and a client CA (named `keys`), as a TLS
/// configuration needs them: the first two together, the third only with them.
fn tls_keys_together(
    [cert_key, key_key, ca_key]: [&'static str; 3],
    [cert, key, ca]: [&Option<PathBuf>; 3],
) -> Result<(), ConfigError> {
    let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
    match (cert, key) {
        (Some(_), None) => invalid(
            key_key,
            format!("must be set with {cert_key} (the certificate's private key)"),
        ),
        (None, Some(_)) => invalid(
            cert_key,
            format!("must be set with {key_key} (the certificate of that key)"),
        ),
        (None, None) if ca.is_some() => invalid(
            ca_key,
            format!(
                "needs {cert_key} and {key_key}: client certificates are asked for only on TLS"
            ),
        ),
        _ => Ok(()),
    }
}
