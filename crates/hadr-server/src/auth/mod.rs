//! Client authentication state of a node: the access rules in force, the
//! per-source failure limit, and the roles kept in the database
//! ([`roles`]). The exchange with a client is in
//! crates/hadr-server/src/session/login.rs; the pure parts (SCRAM, rules,
//! limiter) in crates/hadr-auth.

pub mod roles;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hadr_auth::{FailureLimiter, Rules};

use crate::config::{Config, ConfigError};

/// Most source addresses whose failures are remembered at once.
const TRACKED_SOURCES: usize = 10_000;

/// What a session may do, from its role (fixed at login).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// READONLY: writes get 42501.
    pub read_only: bool,
    /// SUPERUSER: may create, alter and drop roles.
    pub admin: bool,
}

impl Access {
    /// A `trust` session: its role's attributes if the user is a role;
    /// otherwise an administrator, since `trust` lets anyone claim any
    /// name, an administrator's included.
    pub fn trusted(role: Option<&roles::RoleRow>) -> Access {
        match role {
            Some(r) => Access::of(r),
            None => Access {
                read_only: false,
                admin: true,
            },
        }
    }

    /// The attributes of a role.
    pub fn of(r: &roles::RoleRow) -> Access {
        Access {
            read_only: r.read_only,
            admin: r.admin,
        }
    }
}

/// A node's authentication state.
pub struct Auth {
    /// The access rules in force.
    pub rules: Rules,
    limiter: Mutex<FailureLimiter>,
    /// Derives fake salts until the first role statement stores the
    /// replicated key (there is no real user to tell apart before that).
    boot_secret: [u8; 32],
}

impl Auth {
    /// From the configuration.
    pub fn new(config: &Config) -> Result<Auth, ConfigError> {
        Ok(Auth {
            rules: config.access_rules()?,
            limiter: Mutex::new(FailureLimiter::new(
                config.auth_failure_limit,
                config.auth_failure_window.0,
                TRACKED_SOURCES,
            )),
            boot_secret: random_bytes(),
        })
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, FailureLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` may try to log in now; Err: how long until it may.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter().check(ip, Instant::now())
    }

    /// Count a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.limiter().failure(ip, Instant::now());
    }

    /// The key for fake salts: the replicated one once it exists.
    pub fn fake_salt_key(&self, conn: &rusqlite::Connection) -> Vec<u8> {
        match roles::secret(conn) {
            Ok(Some(s)) => s,
            _ => self.boot_secret.to_vec(),
        }
    }
}

/// `N` bytes from the OS RNG. Should the RNG fail (it does not on Linux
/// past early boot), uuid's v4 (also from the OS RNG) fills in.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if getrandom::fill(&mut out).is_err() {
        for chunk in out.chunks_mut(16) {
            let b = uuid::Uuid::new_v4().into_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
    out
}
