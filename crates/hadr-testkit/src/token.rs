//! The admin token of the nodes this process starts (docs/security.md
//! §Admin endpoint): one per process, so every node of a test's cluster
//! shares it, as the nodes of a real cluster share one token file.

use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;

use hadr_admin_api::token::MIN_TOKEN_LEN;
pub use hadr_admin_api::token::TOKEN_ENV as ADMIN_TOKEN_ENV;

use crate::Result;

/// This process's admin token: 48 hex digits from the OS's randomness
/// (std's `RandomState` keys, so the kit needs no RNG crate).
pub fn admin_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let t: String = (0..3u64)
            .map(|i| format!("{:016x}", RandomState::new().hash_one(i)))
            .collect();
        debug_assert!(t.len() >= MIN_TOKEN_LEN);
        t
    })
}

/// [`admin_token`] as the admin client takes it.
pub fn admin_token_secret() -> hadr_secrets::SecretText {
    hadr_secrets::SecretText::new(admin_token())
}

/// Write [`admin_token`] to `path`, readable by its owner only (mode 0600,
/// also when the file was there before with another mode).
pub fn write_admin_token(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing the admin token file {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{}", admin_token())?;
    Ok(())
}
