//! How the `hadr` commands that call a node's admin endpoint find the admin
//! token (docs/security.md §Admin endpoint): `--admin-token-file PATH`, else
//! the environment, `HADR_ADMIN_TOKEN` (the token) or `HADR_ADMIN_TOKEN_FILE`
//! (a file). No flag takes the token itself: a command line is visible to
//! every user of the host in `ps`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hadr_admin_api::token::{read_token_file, token_from_text, TOKEN_ENV, TOKEN_FILE_ENV};
use hadr_admin_api::AdminClient;
use hadr_secrets::SecretText;

/// The admin token options of a command.
#[derive(Args, Clone, Default)]
pub struct AdminTokenArgs {
    /// File holding the nodes' admin token (readable by its owner only);
    /// without it the token comes from $HADR_ADMIN_TOKEN, or from the file
    /// $HADR_ADMIN_TOKEN_FILE names [default: none: only a node without a
    /// token, over loopback, accepts takeover, fence, pause…].
    #[arg(long, value_name = "PATH", global = true)]
    pub admin_token_file: Option<PathBuf>,
}

impl AdminTokenArgs {
    /// Clients that send the token found (if any).
    pub fn admin(&self) -> Result<Admin> {
        Ok(Admin {
            token: self.token()?,
        })
    }

    fn token(&self) -> Result<Option<SecretText>> {
        if let Some(p) = &self.admin_token_file {
            return Ok(Some(read_token_file(p).context("--admin-token-file")?));
        }
        if let Some(t) = non_empty_env(TOKEN_ENV) {
            return Ok(Some(token_from_text(&t)?));
        }
        if let Some(p) = non_empty_env(TOKEN_FILE_ENV) {
            return Ok(Some(
                read_token_file(std::path::Path::new(&p)).context(TOKEN_FILE_ENV)?,
            ));
        }
        Ok(None)
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Makes admin clients that carry the token.
#[derive(Clone)]
pub struct Admin {
    token: Option<SecretText>,
}

impl Admin {
    /// A client for the node at `addr`.
    pub fn client(&self, addr: impl Into<String>) -> AdminClient {
        AdminClient::new(addr).with_token(self.token.clone())
    }
}
