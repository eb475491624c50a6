//! Secret files: private keys, admin tokens, S3 credentials; and the PEM
//! files of TLS ([`pem`]), whose keys are such secrets.
//!
//! A secret that its group or others can read has already leaked to every
//! account on the host, so a node refuses such a file instead of using it,
//! with a message naming the file and the fix (issue 11, "secrets
//! hygiene"). The error never carries the file's contents.

use std::path::{Path, PathBuf};

pub mod pem;
mod text;
pub use text::SecretText;

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read (missing, a directory, no permission…).
    #[error("{what} file {}: {source}", path.display())]
    Io {
        /// What the file holds ("admin token", "TLS private key"…).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("{what} file {}: not a regular file", path.display())]
    NotAFile {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// Its group or others may read it.
    #[error(
        "{what} file {}: mode {mode:04o} lets its group or others read it; it must be readable by its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Nothing in it but white space.
    #[error("{what} file {}: empty", path.display())]
    Empty {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// Check that only the owner can read `path` (and that it is a regular file).
pub fn check_private(path: &Path, what: &'static str) -> Result<(), SecretError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile {
            what,
            path: path.to_path_buf(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::TooOpen {
                what,
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

/// The bytes of a secret file, refused unless only its owner can read it
/// (checked before reading) and it is not empty.
pub fn read_private(path: &Path, what: &'static str) -> Result<Vec<u8>, SecretError> {
    check_private(path, what)?;
    let bytes = std::fs::read(path).map_err(|source| SecretError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SecretError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// A one-line secret (a token, a password, an access key), trimmed.
pub fn read_private_text(path: &Path, what: &'static str) -> Result<String, SecretError> {
    let bytes = read_private(path, what)?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(format!("s{mode:o}"));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn owner_only_is_read_and_trimmed() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "  tok3n\n", 0o600);
        assert_eq!(read_private_text(&p, "admin token").unwrap(), "tok3n");
        let p = file(d.path(), "tok3n", 0o400);
        assert_eq!(read_private(&p, "admin token").unwrap(), b"tok3n");
    }

    #[test]
    fn group_or_world_readable_is_refused_naming_file_and_fix_without_contents() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
            let p = file(d.path(), "hunter2", mode);
            let e = read_private_text(&p, "admin token").unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, SecretError::TooOpen { .. }), "{mode:o}: {msg}");
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }

    #[test]
    fn missing_directory_and_empty_are_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_private(&d.path().join("nope"), "TLS private key"),
            Err(SecretError::Io { .. })
        ));
        assert!(matches!(
            check_private(d.path(), "TLS private key"),
            Err(SecretError::NotAFile { .. })
        ));
        let p = file(d.path(), " \n", 0o600);
        assert!(matches!(
            read_private(&p, "TLS private key"),
            Err(SecretError::Empty { .. })
        ));
    }
}
