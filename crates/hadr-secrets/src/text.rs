//! [`SecretText`]: a secret held in memory (an admin token), which neither
//! `Debug` nor `Display` reveals, compared in constant time.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// A secret string. Its `Debug` prints `SecretText(<redacted>)` and it has no
/// `Display`, so that a config or client struct deriving `Debug` cannot put
/// it in a log line or an error message; [`SecretText::expose`] is the one
/// way to the text, for the code that must send it.
#[derive(Clone)]
pub struct SecretText {
    text: Arc<str>,
    /// BLAKE3 of the text: [`SecretText::matches`] compares digests, whose
    /// length is fixed, so that neither the comparison's time nor an early
    /// exit on a length mismatch tells a guesser anything about the secret.
    digest: [u8; 32],
}

impl SecretText {
    /// Wrap `text`.
    pub fn new(text: impl Into<String>) -> SecretText {
        let text: String = text.into();
        let digest = *blake3::hash(text.as_bytes()).as_bytes();
        SecretText {
            text: text.into(),
            digest,
        }
    }

    /// The secret itself: for the code that sends it (an HTTP header), never
    /// for messages.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Its length in bytes (for checks and messages that may say how long it is).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether `candidate` is this secret, in time independent of where
    /// (and whether) they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let other = blake3::hash(candidate);
        self.digest.ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// Equal secrets, compared in constant time.
impl PartialEq for SecretText {
    fn eq(&self, other: &SecretText) -> bool {
        self.digest.ct_eq(&other.digest).into()
    }
}

impl Eq for SecretText {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_itself_and_never_prints_itself() {
        let s = SecretText::new("s3cret-token-value");
        assert!(s.matches(b"s3cret-token-value"));
        assert!(!s.matches(b"s3cret-token-valuE"));
        assert!(!s.matches(b"s3cret"));
        assert!(!s.matches(b""));
        assert_eq!(s, SecretText::new("s3cret-token-value"));
        assert_ne!(s, SecretText::new("other"));
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert_eq!(s.expose(), "s3cret-token-value");
    }
}
