//! The admin token (docs/security.md §Admin endpoint): a bearer token in a
//! file only its owner can read, the same file on every node of a cluster
//! and for the `hadr` commands that steer them; and the JSON body of the 401
//! a node answers without it.

use std::path::{Path, PathBuf};

use hadr_secrets::{SecretError, SecretText};
use serde::{Deserialize, Serialize};

/// Environment variable holding the token itself, for the `hadr` commands.
pub const TOKEN_ENV: &str = "HADR_ADMIN_TOKEN";

/// Environment variable naming the token file, for the `hadr` commands.
pub const TOKEN_FILE_ENV: &str = "HADR_ADMIN_TOKEN_FILE";

/// Fewest characters a token has: a short one can be guessed over the
/// network (e.g. `head -c 32 /dev/urandom | base64` gives 44).
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token was not accepted as one.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file is unreadable, too widely readable or empty.
    #[error(transparent)]
    File(#[from] SecretError),
    /// The file's text cannot be a token.
    #[error("admin token file {}: {why}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the text itself).
        why: String,
    },
    /// The environment variable's text cannot be a token.
    #[error("{TOKEN_ENV}: {why}")]
    Env {
        /// What is wrong (never the text itself).
        why: String,
    },
}

/// The token in `path`: refused unless only its owner can read the file
/// (hadr-secrets), and unless it is one line of at least
/// [`MIN_TOKEN_LEN`] printable ASCII characters without spaces (what an
/// HTTP header carries unchanged).
pub fn read_token_file(path: &Path) -> Result<SecretText, TokenError> {
    let text = hadr_secrets::read_private_text(path, "admin token")?;
    check_format(&text).map_err(|why| TokenError::Format {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(SecretText::new(text))
}

/// A token given as text (the [`TOKEN_ENV`] variable), trimmed and checked
/// like a file's.
pub fn token_from_text(text: &str) -> Result<SecretText, TokenError> {
    let text = text.trim();
    check_format(text).map_err(|why| TokenError::Env { why })?;
    Ok(SecretText::new(text))
}

fn check_format(text: &str) -> Result<(), String> {
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "a token is one line of printable ASCII without spaces; this one holds {}",
            if bad.is_ascii_whitespace() {
                "white space".to_string()
            } else {
                format!("the character U+{:04X}", bad as u32)
            }
        ));
    }
    if text.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token has at least {MIN_TOKEN_LEN} characters; this one has {} (make one with: head -c 32 /dev/urandom | base64)",
            text.len()
        ));
    }
    Ok(())
}

/// What a node answers, with 401, to a request that needs the admin token
/// and came without it or with a wrong one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unauthorized {
    /// Always `unauthorized`.
    pub error: String,
    /// A sentence for people: what was missing and how to send it.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_one_long_printable_word() {
        assert!(token_from_text("  0123456789abcdef\n").is_ok());
        for bad in ["shorty", "0123456789 abcdef", "0123456789abcdé0", ""] {
            let e = token_from_text(bad).unwrap_err().to_string();
            // The message says what is wrong, never the text.
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
            assert!(e.starts_with(TOKEN_ENV), "{e}");
        }
    }
}
