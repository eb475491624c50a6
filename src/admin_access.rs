//! How the `hadr` commands that call a node's admin endpoint find their
//! credentials (docs/security.md §Admin endpoint): the admin token from
//! `--admin-token-file PATH`, else the environment, `HADR_ADMIN_TOKEN` (the
//! token) or `HADR_ADMIN_TOKEN_FILE` (a file); and for an HTTPS admin port
//! the CA to check it with (`--admin-ca`) and a client certificate
//! (`--admin-cert`, `--admin-key`), also from the environment. No flag
//! takes the token itself: a command line is visible to every user of the
//! host in `ps`.

use std::path::PathBuf;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use hadr_admin_api::tls::{client_config, AdminTlsFiles};
use hadr_admin_api::token::{read_token_file, token_from_text, TOKEN_ENV, TOKEN_FILE_ENV};
use hadr_admin_api::AdminClient;
use hadr_secrets::SecretText;

/// The admin credential options of a command.
#[derive(Args, Clone, Default)]
pub struct AdminArgs {
    /// File holding the nodes' admin token (readable by its owner only);
    /// without it the token comes from $HADR_ADMIN_TOKEN, or from the file
    /// $HADR_ADMIN_TOKEN_FILE names [default: none: only a node without a
    /// token, over loopback, accepts takeover, fence, pause…].
    #[arg(long, value_name = "PATH", global = true)]
    pub admin_token_file: Option<PathBuf>,
    /// CA certificate (PEM) that nodes' HTTPS admin certificates are
    /// checked against; with it, admin addresses without a scheme are
    /// reached over https:// [default: plain HTTP].
    #[arg(long, value_name = "PATH", global = true, env = hadr_admin_api::tls::CA_ENV)]
    pub admin_ca: Option<PathBuf>,
    /// Client certificate (PEM) for an HTTPS admin port that takes
    /// certificates as the credential (with --admin-key and --admin-ca).
    #[arg(long, value_name = "PATH", global = true, env = hadr_admin_api::tls::CERT_ENV)]
    pub admin_cert: Option<PathBuf>,
    /// The private key of --admin-cert (PEM, readable by its owner only).
    #[arg(long, value_name = "PATH", global = true, env = hadr_admin_api::tls::KEY_ENV)]
    pub admin_key: Option<PathBuf>,
}

impl AdminArgs {
    /// Clients that send the credentials found (if any).
    pub fn admin(&self) -> Result<Admin> {
        Ok(Admin {
            token: self.token()?,
            tls: self.tls()?,
        })
    }

    fn tls(&self) -> Result<Option<Arc<hadr_admin_api::tls::ClientConfig>>> {
        let client = match (&self.admin_cert, &self.admin_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => bail!("--admin-cert and --admin-key go together (the certificate and its key)"),
        };
        let Some(ca) = &self.admin_ca else {
            if client.is_some() {
                bail!("--admin-cert needs --admin-ca: a client certificate is sent only over HTTPS, and HTTPS needs the CA to check the node with");
            }
            return Ok(None);
        };
        let files = AdminTlsFiles {
            ca: ca.clone(),
            client,
        };
        Ok(Some(client_config(&files)?))
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

/// Makes admin clients that carry the credentials.
#[derive(Clone)]
pub struct Admin {
    token: Option<SecretText>,
    tls: Option<Arc<hadr_admin_api::tls::ClientConfig>>,
}

impl Admin {
    /// A client for the node at `addr`.
    pub fn client(&self, addr: impl Into<String>) -> Result<AdminClient> {
        let c = AdminClient::new(addr).with_token(self.token.clone());
        Ok(match &self.tls {
            Some(tls) => c.with_tls(tls.clone())?,
            None => c,
        })
    }
}
