//! SCRAM-SHA-256 verifiers in PostgreSQL's format:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, salt and
//! keys in base64. What is stored for a role is this, never the password:
//! it lets the server check a proof but not log in as the user.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The iteration count PostgreSQL uses (`scram_iterations`' default).
pub const ITERATIONS: u32 = 4096;

/// Salt length for new verifiers, as PostgreSQL (`SCRAM_DEFAULT_SALT_LEN`).
pub const SALT_LEN: usize = 16;

/// Fewer iterations than this in a stored verifier is refused: it would
/// make an offline guess cheap. RFC 7677 asks for at least 4096.
pub const MIN_ITERATIONS: u32 = 4096;

/// More than this would let one login burn seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1 << 20;

const PREFIX: &str = "SCRAM-SHA-256$";

type HmacSha256 = Hmac<Sha256>;

/// Why a string is not a verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// Not `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    #[error(
        "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"
    )]
    Format,
    /// The iteration count is out of range.
    #[error("SCRAM iteration count {0} is out of range ({MIN_ITERATIONS} to {MAX_ITERATIONS})")]
    Iterations(u32),
}

/// A SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

// The keys let a thief impersonate the server to a client: keep them out of
// debug output and logs.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier(SCRAM-SHA-256, {} iterations)", self.iterations)
    }
}

/// HMAC-SHA-256.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let mut m = match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        m.update(p);
    }
    let out = m.finalize().into_bytes();
    let mut r = [0u8; 32];
    r.copy_from_slice(&out);
    r
}

/// SHA-256.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = Sha256::digest(data);
    let mut r = [0u8; 32];
    r.copy_from_slice(&d);
    r
}

/// RFC 5802's Hi(): PBKDF2-HMAC-SHA-256 with one output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// The password as SCRAM hashes it: SASLprep-normalised, or the raw bytes
/// when SASLprep refuses it (PostgreSQL does the same, so that any password
/// it accepted still works).
fn prepared(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.as_bytes().to_vec(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// SaltedPassword: Hi(Normalize(password), salt, i).
pub(crate) fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    hi(&prepared(password), salt, iterations)
}

impl Verifier {
    /// The verifier of `password` with `salt` (random, [`SALT_LEN`] bytes,
    /// from the caller) and `iterations`.
    pub fn new(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        Verifier::from_salted_password(
            &salted_password(password, salt, iterations),
            salt,
            iterations,
        )
    }

    fn from_salted_password(salted: &[u8; 32], salt: &[u8], iterations: u32) -> Verifier {
        let client_key = hmac(salted, &[b"Client Key"]);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(salted, &[b"Server Key"]),
        }
    }

    /// A verifier for a user that does not exist (or has no password): a
    /// salt that depends only on the user name and the node's `secret`, so
    /// that asking twice gives the same salt as for a real user, and keys
    /// no password matches (the exchange fails anyway: see `Credentials::fake`).
    pub fn fake(secret: &[u8], user: &str) -> Verifier {
        let salt = hmac(secret, &[b"hadr fake salt\0", user.as_bytes()]);
        Verifier {
            iterations: ITERATIONS,
            salt: salt[..SALT_LEN].to_vec(),
            stored_key: hmac(secret, &[b"hadr fake stored key\0", user.as_bytes()]),
            server_key: hmac(secret, &[b"hadr fake server key\0", user.as_bytes()]),
        }
    }

    /// Parse PostgreSQL's text form.
    pub fn parse(s: &str) -> Result<Verifier, VerifierError> {
        let rest = s.strip_prefix(PREFIX).ok_or(VerifierError::Format)?;
        let (params, keys) = rest.split_once('$').ok_or(VerifierError::Format)?;
        let (iter, salt) = params.split_once(':').ok_or(VerifierError::Format)?;
        let (stored, server) = keys.split_once(':').ok_or(VerifierError::Format)?;
        let iterations: u32 = iter.parse().map_err(|_| VerifierError::Format)?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(VerifierError::Iterations(iterations));
        }
        let salt = B64.decode(salt).map_err(|_| VerifierError::Format)?;
        if salt.is_empty() {
            return Err(VerifierError::Format);
        }
        let key = |k: &str| -> Result<[u8; 32], VerifierError> {
            B64.decode(k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or(VerifierError::Format)
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Whether `s` looks like a verifier rather than a password (as
    /// PostgreSQL decides for `PASSWORD '...'`): it parses as one.
    pub fn looks_like_verifier(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// Whether `password` is the one this verifier was made from (for
    /// tests and tools; logins go through the SCRAM exchange).
    pub fn matches(&self, password: &str) -> bool {
        use subtle::ConstantTimeEq;
        let other = Verifier::new(password, &self.salt, self.iterations);
        bool::from(
            other.stored_key[..].ct_eq(&self.stored_key[..])
                & other.server_key[..].ct_eq(&self.server_key[..]),
        )
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Made by PostgreSQL 15.18 (`SET password_encryption = 'scram-sha-256';
    /// CREATE ROLE x PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid`).
    pub const PG_PENCIL: &str = "SCRAM-SHA-256$4096:+27VzkCXZHo2LfCRjqmT6g==$Qh94n9avrIqf8wJhhsQBJwFPjJhPg/Y2+yHvqMAt+OE=:Y1kPPGqw64451mBFrZ+SHuF4GmU6FrjwxsyEJrKkIOk=";
}

#[cfg(test)]
mod tests {
    use super::tests_support::PG_PENCIL;
    use super::*;

    #[test]
    fn a_verifier_made_by_postgresql_parses_and_matches_its_password() {
        let v = Verifier::parse(PG_PENCIL.trim()).unwrap();
        assert_eq!(v.iterations, 4096);
        assert!(v.matches("pencil"));
        assert!(!v.matches("pencil "));
        assert!(!v.matches("Pencil"));
        // Our own computation from PostgreSQL's salt gives its very string.
        assert_eq!(
            Verifier::new("pencil", &v.salt, 4096).to_string(),
            PG_PENCIL.trim()
        );
    }

    #[test]
    fn rfc7677_keys() {
        // RFC 7677 §3: user "user", password "pencil", this salt, 4096.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::new("pencil", &salt, 4096);
        // ServerSignature in the RFC is HMAC(ServerKey, AuthMessage); the
        // exchange test in scram.rs checks it. Here: round trip of the form.
        let s = v.to_string();
        assert!(
            s.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{s}"
        );
        assert_eq!(Verifier::parse(&s).unwrap(), v);
    }

    #[test]
    fn bad_forms_are_refused() {
        for bad in [
            "",
            "pencil",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==$abc",
            "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "md5abcdef",
        ] {
            assert!(Verifier::parse(bad).is_err(), "{bad:?}");
        }
        let v = Verifier::new("x", b"salt", 4096).to_string();
        let weak = v.replacen("4096", "1", 1);
        assert_eq!(Verifier::parse(&weak), Err(VerifierError::Iterations(1)));
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let v = Verifier::new("secret", b"0123456789abcdef", 4096);
        let d = format!("{v:?}");
        assert!(!d.contains(&B64.encode(v.stored_key)), "{d}");
    }

    #[test]
    fn fake_verifiers_are_stable_per_user_and_secret() {
        let a = Verifier::fake(b"k1", "alice");
        assert_eq!(a, Verifier::fake(b"k1", "alice"));
        assert_ne!(a.salt, Verifier::fake(b"k1", "bob").salt);
        assert_ne!(a.salt, Verifier::fake(b"k2", "alice").salt);
        assert_eq!(a.salt.len(), SALT_LEN);
    }
}
