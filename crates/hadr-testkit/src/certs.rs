//! Certificates for tests: a throwaway CA that signs server and client
//! certificates (rcgen), and PEM files written with the modes libpq and
//! hadr-secrets want. Used by crates/hadr-server's unit tests and
//! tests/tls.rs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A CA that signs certificates.
pub struct Ca {
    /// Its self-signed certificate (what clients trust).
    pub cert: Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `name` (give each its own: OpenSSL looks a CA up by
    /// name).
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("generating a CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).expect("self-signing the CA");
        Ca {
            cert,
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf certificate and its key with subject CN `cn`, for `names`
    /// (DNS names or IP addresses), for a server or a client.
    pub fn leaf(&self, cn: &str, names: &[&str], client: bool) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().expect("generating a key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        for n in names {
            p.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            });
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = p.signed_by(&key, &self.issuer).expect("signing");
        (cert, key)
    }
}

/// Write `text` to `path` with `mode` (keys 0600: libpq and hadr-secrets
/// refuse others).
pub fn write(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path.to_path_buf()
}
