//! Node configuration: one TOML file, every key also a command-line flag.
//!
//! Sizes accept `64MiB`, `1GiB`, `512KiB`, `4096` (bytes); durations accept
//! `60s`, `500ms`, `2m`, `1h`. Unknown keys are errors: a typo must not
//! silently leave a default in force.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod tls;

pub use hadr_log::FlushMode;

pub use crate::units::{ByteSize, Dur, ValueError};

/// A configuration problem, reported before the node starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad key or value.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value under a key named at run time (`sync_paths.NAME`) is invalid.
    #[error("invalid setting {key}: {message}")]
    InvalidEntry {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A `[[resource]]` table is wrong.
    #[error(transparent)]
    Resource(#[from] crate::resource_config::ResourceError),
    /// The replication TLS files cannot be used.
    #[error(transparent)]
    ReplicationTls(#[from] hadr_replication::link::TlsError),
    /// An `[[access]]` rule is wrong.
    #[error("invalid access rule {index}: {message}")]
    Access {
        /// Its position, from 1.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A `trust` rule would let strangers in without a password.
    #[error("access rule {index} ({rule}) lets clients from beyond loopback in without a password, and listen is {listen}: use scram-sha-256 or cert for them, listen on a loopback address, or start with --insecure-trust (insecure_trust = true) if that is really intended")]
    InsecureTrust {
        /// Its position, from 1.
        index: usize,
        /// The rule.
        rule: String,
        /// The listen address.
        listen: SocketAddr,
    },
    /// A value is out of range.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Whether a node fails over by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Through the arbiter, by the rules of `hadr_ha::failover`.
    Auto,
    /// Only by `hadr takeover`.
    Manual,
}

impl FromStr for FailoverMode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(FailoverMode::Auto),
            "manual" => Ok(FailoverMode::Manual),
            _ => Err(ValueError::Failover(s.to_string())),
        }
    }
}

/// The role a node is started in (kept in the control file once set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleSetting {
    /// Accepts writes and ships its log to the standbys in `hadr_target_list`.
    Primary,
    /// Follows a primary (made by `hadr clone`).
    Standby,
}

impl FromStr for RoleSetting {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.to_ascii_lowercase().as_str() {
            "primary" => Ok(RoleSetting::Primary),
            "standby" => Ok(RoleSetting::Standby),
            _ => Err(ValueError::Role(s.to_string())),
        }
    }
}

impl From<RoleSetting> for hadr_engine::Role {
    fn from(r: RoleSetting) -> hadr_engine::Role {
        match r {
            RoleSetting::Primary => hadr_engine::Role::Primary,
            RoleSetting::Standby => hadr_engine::Role::Standby,
        }
    }
}

/// A sync mode setting (SYNC, NEARSYNC, ASYNC, SUPERASYNC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SyncModeSetting(pub hadr_ha::SyncMode);

impl FromStr for SyncModeSetting {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Ok(SyncModeSetting(s.parse()?))
    }
}

impl<'de> Deserialize<'de> for SyncModeSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything a node needs to run. Field names are the TOML keys and the flag names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (created by `hadr init`).
    pub data: PathBuf,
    /// PostgreSQL protocol listen address.
    pub listen: SocketAddr,
    /// `host:port` where clients reach this node, advertised in the
    /// topology (docs/clients.md); unset: the `listen` address. Set it when
    /// clients come through NAT, a VIP or a name, or when `listen` is a
    /// wildcard such as 0.0.0.0.
    pub client_address: Option<String>,
    /// Admin HTTP listen address (/status, /primary, /standby, /metrics).
    pub admin: SocketAddr,
    /// File holding the admin token (only its owner may read it; the same
    /// file on every node of a cluster): every state-changing admin request
    /// must carry it as `Authorization: Bearer TOKEN`. Unset: such requests
    /// are accepted only while `admin` is a loopback address (docs/security.md).
    pub admin_token_file: Option<PathBuf>,
    /// The read-only admin endpoints (/status, /metrics, /primary,
    /// /standby, /health, /files/verify) need the token too (default: open,
    /// for load balancers and dashboards).
    pub admin_require_token_for_reads: bool,
    /// Start although `admin` is not a loopback address and no token is
    /// set: anyone who reaches the port may then take over or fence the node.
    pub insecure_admin: bool,
    /// HTTPS on the admin port: its certificate chain (PEM, leaf first).
    /// With `admin_tls_key_file` the port speaks only TLS. Read again on SIGHUP.
    pub admin_tls_cert_file: Option<PathBuf>,
    /// The private key of `admin_tls_cert_file` (PEM; readable by its owner only).
    pub admin_tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM): an admin client certificate that verifies
    /// against them is a credential, as the admin token is (a certificate
    /// that does not verify ends the handshake; none is asked only to read).
    pub admin_tls_client_ca_file: Option<PathBuf>,
    /// Size at which the log switches to a new segment file.
    pub log_segment_size: ByteSize,
    /// Log kept on disk beyond what recovery needs.
    pub log_retention: ByteSize,
    /// `fsync` (default) or `off`.
    pub log_flush_mode: FlushMode,
    /// WAL size after which hadr checkpoints.
    pub checkpoint_wal_size: ByteSize,
    /// A session idle inside a transaction longer than this is closed (0 = never).
    pub idle_in_transaction_timeout: Dur,
    /// Longest wait for the write lock before a statement fails with 55P03.
    pub write_wait_timeout: Dur,
    /// A client that takes none of the data sent to it for this long is
    /// disconnected and its transaction rolled back (0 = never).
    pub client_write_timeout: Dur,
    /// Longest wait for a commit to become durable before the client gets an error.
    pub commit_timeout: Dur,
    /// A client whose host stops answering (TCP keepalive unanswered) is
    /// dropped after about this long, and its transaction rolled back, so a
    /// crashed client cannot hold the write lock (0 = the kernel's defaults).
    pub client_dead_timeout: Dur,
    /// Commit tokens (`SET hadr.commit_token`) older than this are purged.
    pub commit_token_retention: Dur,
    /// Most client connections served at once; more get 53300.
    pub max_connections: usize,
    /// Of `max_connections`, how many only `reserved_connection_users` may
    /// take, so an operator still gets in during a storm of clients.
    pub reserved_connections: usize,
    /// The users that may take the reserved connections.
    pub reserved_connection_users: Vec<String>,
    /// Largest protocol message accepted from a client; larger ones close that connection.
    pub max_message_size: ByteSize,
    /// TLS for clients: the server's certificate chain (PEM, leaf first).
    /// With `tls_key_file`, clients may ask for TLS (SSLRequest, or direct
    /// TLS); unset: they are told the node has none. Read again on SIGHUP.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM; readable by its owner only).
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are verified against;
    /// a client that presents one that does not verify is refused, one
    /// that presents none is let in (unset: none is asked for).
    pub tls_client_ca_file: Option<PathBuf>,
    /// `primary` or `standby`; unset keeps the control file's role.
    pub role: Option<RoleSetting>,
    /// Replication listen address (primary) and the address standbys announce.
    pub hadr_local: SocketAddr,
    /// `host:port|host:port|…`: on a primary its standbys (the first is the
    /// principal, the others auxiliaries, always SUPERASYNC); on a standby, its primary.
    pub hadr_target_list: String,
    /// When a commit returns in PEER state.
    pub hadr_syncmode: SyncModeSetting,
    /// A replication connection silent this long is dead.
    pub hadr_timeout: Dur,
    /// After losing the standby in PEER, block commits this long (SYNC/NEARSYNC only; 0 = off).
    pub hadr_peer_window: Dur,
    /// A commit waiting this long for the standby in PEER detaches it (0 = no limit).
    pub hadr_peer_wait_limit: Dur,
    /// Standby: replay a record only once its commit is this old (0 = at once).
    pub hadr_replay_delay: Dur,
    /// Standby: when the primary no longer has the log it needs, re-clone
    /// itself from the primary; when its own log diverged (an old primary),
    /// rewind itself, or re-clone if rewind is impossible (false: say so and wait).
    pub auto_reclone: bool,
    /// The cluster CA's certificate (PEM): with the next two, every
    /// replication link is mutual TLS (docs/security.md §Replication links).
    pub replication_tls_ca_file: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the cluster CA, naming
    /// the host(s) the other nodes dial it at.
    pub replication_tls_cert_file: Option<PathBuf>,
    /// This node's private key (PEM), readable by its owner only.
    pub replication_tls_key_file: Option<PathBuf>,
    /// The tiebreaker: `file:PATH`, `s3://BUCKET/KEY?endpoint=URL&…`,
    /// `etcd://HOST:PORT/KEY`, `net:HOST:PORT` (unset: no automatic failover).
    pub arbiter: Option<String>,
    /// `auto` (the default once an arbiter is set) or `manual`.
    pub failover: Option<FailoverMode>,
    /// The arbiter lease's time to live.
    pub lease_ttl: Dur,
    /// The lease's safety margin (clock drift, scheduling pauses); below a third of the TTL.
    pub lease_margin: Dur,
    /// Least time between two automatic promotions of this node (against
    /// failover ping-pong over a flapping link).
    pub min_promotion_interval: Dur,
    /// Directories kept in sync through the log (docs/filesync.md): a
    /// name, the same on every node, to this node's absolute path.
    pub sync_paths: std::collections::BTreeMap<String, PathBuf>,
    /// Glob patterns of paths (relative to their root) not synced.
    pub sync_exclude: Vec<String>,
    /// Larger files are not synced (and are reported in status).
    pub sync_max_file_size: ByteSize,
    /// The periodic full scan of the synced directories (a safety net for inotify).
    pub sync_scan_interval: Dur,
    /// Start-up only (`hadr server --force`, never in a file): a restarted
    /// primary accepts writes without first reaching a standby.
    #[serde(skip)]
    pub force: bool,
    /// Runtime only: this run follows a promotion (takeover), which is the
    /// authority of its new epoch; the start-up rule does not apply.
    #[serde(skip)]
    pub promoted: bool,
    /// Runtime only: that promotion was a graceful hand-over from this node
    /// (its replication address), which stopped writing for good before it
    /// told this node: its record in the arbiter is taken over at once.
    #[serde(skip)]
    pub handed_over_by: Option<String>,
    /// Resources that follow the role, in start order (`[[resource]]`
    /// tables, TOML only: docs/resources.md).
    #[serde(rename = "resource")]
    pub resources: Vec<crate::resource_config::ResourceConfig>,
    /// Access rules for clients, first match wins (`[[access]]` tables;
    /// none: trust from loopback, scram-sha-256 from anywhere else).
    pub access: Vec<AccessRuleConfig>,
    /// Start although a `trust` rule lets clients from beyond loopback in
    /// without a password while `listen` is not a loopback address.
    pub insecure_trust: bool,
    /// Longest a client may take to authenticate once it sent its
    /// StartupMessage.
    pub auth_timeout: Dur,
    /// Password failures from one address within `auth_failure_window` after
    /// which its password logins are refused at once until the window ends
    /// (0 = no limit).
    pub auth_failure_limit: u32,
    /// See `auth_failure_limit`.
    pub auth_failure_window: Dur,
}

/// One `[[access]]` table: the columns of a pg_hba.conf line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleConfig {
    /// `host`, `hostssl` or `hostnossl`.
    #[serde(rename = "type", default = "host")]
    pub conn_type: String,
    /// A database, names separated by commas, or `all`.
    #[serde(default = "all")]
    pub database: String,
    /// A user, names separated by commas, or `all`.
    #[serde(default = "all")]
    pub user: String,
    /// A CIDR range, an address, or `all`.
    pub address: String,
    /// `trust`, `scram-sha-256`, `cert` or `reject`.
    pub method: String,
}

fn host() -> String {
    "host".into()
}

fn all() -> String {
    "all".into()
}

impl FromStr for AccessRuleConfig {
    type Err = String;
    /// The five columns of a pg_hba.conf line, as `--access` takes them:
    /// `TYPE DATABASE USER ADDRESS METHOD`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_whitespace().collect::<Vec<_>>()[..] {
            [t, d, u, a, m] => Ok(AccessRuleConfig {
                conn_type: t.into(),
                database: d.into(),
                user: u.into(),
                address: a.into(),
                method: m.into(),
            }),
            _ => Err(format!(
                "{s:?} is not \"TYPE DATABASE USER ADDRESS METHOD\" (e.g. \"host all all 10.0.0.0/8 scram-sha-256\")"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from("hadr-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            client_address: None,
            admin: SocketAddr::from(([127, 0, 0, 1], 8433)),
            admin_token_file: None,
            admin_require_token_for_reads: false,
            insecure_admin: false,
            admin_tls_cert_file: None,
            admin_tls_key_file: None,
            admin_tls_client_ca_file: None,
            log_segment_size: ByteSize(64 << 20),
            log_retention: ByteSize(1 << 30),
            log_flush_mode: FlushMode::Fsync,
            checkpoint_wal_size: ByteSize(16 << 20),
            idle_in_transaction_timeout: Dur(Duration::from_secs(60)),
            write_wait_timeout: Dur(Duration::from_secs(120)),
            client_write_timeout: Dur(Duration::from_secs(30)),
            arbiter: None,
            failover: None,
            lease_ttl: Dur(Duration::from_secs(2)),
            lease_margin: Dur(Duration::from_millis(500)),
            min_promotion_interval: Dur(Duration::from_secs(60)),
            commit_timeout: Dur(Duration::from_secs(60)),
            client_dead_timeout: Dur(Duration::from_secs(10)),
            commit_token_retention: Dur(Duration::from_secs(24 * 3600)),
            max_connections: 500,
            reserved_connections: 3,
            reserved_connection_users: vec!["hadr_admin".to_string()],
            max_message_size: ByteSize(256 << 20),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            role: None,
            hadr_local: SocketAddr::from(([127, 0, 0, 1], 9433)),
            hadr_target_list: String::new(),
            hadr_syncmode: SyncModeSetting(hadr_ha::SyncMode::Nearsync),
            hadr_timeout: Dur(Duration::from_secs(3)),
            hadr_peer_window: Dur(Duration::ZERO),
            hadr_peer_wait_limit: Dur(Duration::ZERO),
            hadr_replay_delay: Dur(Duration::ZERO),
            auto_reclone: true,
            replication_tls_ca_file: None,
            replication_tls_cert_file: None,
            replication_tls_key_file: None,
            sync_paths: Default::default(),
            sync_exclude: Vec::new(),
            sync_max_file_size: ByteSize(256 << 20),
            sync_scan_interval: Dur(Duration::from_secs(30)),
            force: false,
            promoted: false,
            handed_over_by: None,
            resources: Vec::new(),
            access: Vec::new(),
            insecure_trust: false,
            auth_timeout: Dur(Duration::from_secs(30)),
            auth_failure_limit: 10,
            auth_failure_window: Dur(Duration::from_secs(60)),
        }
    }
}

impl Config {
    /// Read a TOML file; keys it does not set keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_toml(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The `[[resource]]` tables, checked.
    pub fn resource_specs(&self) -> Result<Vec<hadr_resources::Resource>, ConfigError> {
        Ok(crate::resource_config::resources(
            &self.resources,
            !self.targets().is_empty(),
        )?)
    }

    /// Check ranges that the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.log_segment_size.0 < 64 << 10 {
            return Err(ConfigError::Invalid {
                key: "log_segment_size",
                message: "must be at least 64KiB".into(),
            });
        }
        if let Some(a) = &self.client_address {
            if !valid_host_port(a) {
                return Err(ConfigError::Invalid {
                    key: "client_address",
                    message: format!(
                        "{a:?} is not host:port (an IPv6 address goes in brackets: [::1]:5433)"
                    ),
                });
            }
        }
        if self.commit_token_retention.0 < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "commit_token_retention",
                message: "must be at least 1s: a client must be able to ask after a failover"
                    .into(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                message: "must be at least 1".into(),
            });
        }
        if self.reserved_connections >= self.max_connections {
            return Err(ConfigError::Invalid {
                key: "reserved_connections",
                message: format!(
                    "must be below max_connections ({}): nobody else could connect",
                    self.max_connections
                ),
            });
        }
        if self.max_message_size.0 < 1 << 16 || self.max_message_size.0 > (1 << 30) - 1 {
            return Err(ConfigError::Invalid {
                key: "max_message_size",
                message: "must be between 64KiB and 1GiB".into(),
            });
        }
        if self.targets().len() > 3 {
            return Err(ConfigError::Invalid {
                key: "hadr_target_list",
                message: "at most 3 standbys".into(),
            });
        }
        if self.hadr_timeout.0 < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "hadr_timeout",
                message: "must be at least 100ms".into(),
            });
        }
        if let Some(spec) = &self.arbiter {
            let parsed =
                spec.parse::<hadr_arbiter::ArbiterSpec>()
                    .map_err(|e| ConfigError::Invalid {
                        key: "arbiter",
                        message: e.to_string(),
                    })?;
            // Only the record says which standby the primary waits for
            // (docs/failover.md §Three and more nodes); a stateless arbiter
            // keeps none, so an auxiliary could not tell it must not promote.
            if matches!(parsed, hadr_arbiter::ArbiterSpec::Net { .. })
                && self.automatic_failover()
                && self.targets().len() > 1
            {
                return Err(ConfigError::Invalid {
                    key: "arbiter",
                    message: "a net: arbiter keeps no record, so with more than one peer in hadr_target_list an auxiliary standby could promote without acknowledged commits; use a file, s3 or etcd arbiter, or failover = \"manual\"".into(),
                });
            }
        }
        self.lease_timing().map_err(|e| ConfigError::Invalid {
            key: "lease_margin",
            message: e.to_string(),
        })?;
        if self.automatic_failover()
            && !matches!(
                self.hadr_syncmode.0,
                hadr_ha::SyncMode::Sync | hadr_ha::SyncMode::Nearsync
            )
        {
            return Err(ConfigError::Invalid {
                key: "failover",
                message: "automatic failover needs hadr_syncmode SYNC or NEARSYNC: in ASYNC and SUPERASYNC a standby may lack acknowledged commits (set failover = \"manual\")".into(),
            });
        }
        if self.failover == Some(FailoverMode::Auto) && self.arbiter.is_none() {
            return Err(ConfigError::Invalid {
                key: "failover",
                message: "automatic failover needs an arbiter (file:PATH, s3://…, etcd://…, net:HOST:PORT)".into(),
            });
        }
        self.validate_sync()?;
        self.replication_tls_files()?;
        self.validate_tls()?;
        if self.listen == self.admin {
            return Err(ConfigError::Invalid {
                key: "admin",
                message: "must differ from listen".into(),
            });
        }
        self.validate_admin_access()?;
        self.resource_specs()?;
        let rules = self.access_rules()?;
        if let Some((i, rule)) = rules.insecure_trust(self.listen.ip()) {
            if !self.insecure_trust {
                return Err(ConfigError::InsecureTrust {
                    index: i + 1,
                    rule: rule.to_string(),
                    listen: self.listen,
                });
            }
        }
        if self.auth_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "auth_timeout",
                message: "must be at least 1s".into(),
            });
        }
        Ok(())
    }

    /// The access rules in force: the `[[access]]` tables, or the default.
    pub fn access_rules(&self) -> Result<hadr_auth::Rules, ConfigError> {
        if self.access.is_empty() {
            return Ok(hadr_auth::Rules::default_rules());
        }
        let rules = self
            .access
            .iter()
            .enumerate()
            .map(|(i, a)| {
                hadr_auth::Rule::parse(&a.conn_type, &a.database, &a.user, &a.address, &a.method)
                    .map_err(|e| ConfigError::Access {
                        index: i + 1,
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(hadr_auth::Rules::new(rules))
    }

    /// The admin endpoint's credentials (docs/security.md §Admin endpoint):
    /// a port others can reach needs a token, unless the operator said
    /// otherwise in so many words.
    fn validate_admin_access(&self) -> Result<(), ConfigError> {
        if self.admin_token_file.is_some() || self.admin_tls_client_ca_file.is_some() {
            return Ok(());
        }
        if self.admin_require_token_for_reads {
            return Err(ConfigError::Invalid {
                key: "admin_require_token_for_reads",
                message: "needs admin_token_file or admin_tls_client_ca_file (the credential the reads must carry)".into(),
            });
        }
        if !self.admin.ip().is_loopback() && !self.insecure_admin {
            return Err(ConfigError::Invalid {
                key: "admin",
                message: format!(
                    "the admin port {} is not a loopback address and neither admin_token_file nor admin_tls_client_ca_file is set: anyone who reaches it could take over or fence this node. \
                     Set admin_token_file (--admin-token-file) to a file only its owner can read, the same on every node \
                     (umask 077; head -c 32 /dev/urandom | base64 > /etc/hadr/admin-token), \
                     or admin client certificates (admin_tls_cert_file, admin_tls_key_file, admin_tls_client_ca_file), \
                     or listen on 127.0.0.1, or accept anonymous admin requests from the network with --insecure-admin (insecure_admin = true)",
                    self.admin
                ),
            });
        }
        Ok(())
    }

    /// The synced directories as the file sync names them.
    pub fn sync_roots(&self) -> Vec<hadr_filesync::Root> {
        self.sync_paths
            .iter()
            .map(|(name, path)| hadr_filesync::Root {
                name: name.clone(),
                path: path.clone(),
            })
            .collect()
    }

    /// The file-sync settings: names, absolute paths that neither overlap
    /// each other nor the data directory, globs.
    fn validate_sync(&self) -> Result<(), ConfigError> {
        let entry = |key: String, message: String| ConfigError::InvalidEntry { key, message };
        let data = real_path(&self.data);
        let mut seen: Vec<(&String, PathBuf)> = Vec::new();
        for (name, path) in &self.sync_paths {
            let key = format!("sync_paths.{name}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(entry(key, "a name is letters, digits, _ and - only".into()));
            }
            if !path.is_absolute() {
                return Err(entry(
                    key,
                    format!("{} is not an absolute path", path.display()),
                ));
            }
            let p = real_path(path);
            if p.starts_with(&data) || data.starts_with(&p) {
                return Err(entry(
                    key,
                    format!(
                        "{} overlaps the data directory {}",
                        path.display(),
                        data.display()
                    ),
                ));
            }
            if let Some((other, _)) = seen
                .iter()
                .find(|(_, q)| p.starts_with(q) || q.starts_with(&p))
            {
                return Err(entry(
                    key,
                    format!("{} overlaps sync_paths.{other}", path.display()),
                ));
            }
            seen.push((name, p));
        }
        hadr_filesync::glob_set(&self.sync_exclude).map_err(|e| ConfigError::Invalid {
            key: "sync_exclude",
            message: e,
        })?;
        if self.sync_scan_interval.0 < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "sync_scan_interval",
                message: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }

    /// Whether this node fails over by itself: an arbiter is set and
    /// `failover` is not `manual`.
    pub fn automatic_failover(&self) -> bool {
        self.arbiter.is_some() && self.failover != Some(FailoverMode::Manual)
    }

    /// How long either end of a replication link waits in silence before it
    /// ends the link. Without automatic failover: `hadr_timeout`, as in DB2. With
    /// it, no longer than the lease's TTL: a crashed host sends no reset,
    /// and a standby that waited the whole `hadr_timeout` (3 s by default)
    /// would fail over that late even though the lease ran out sooner. It is
    /// safe: the standby stops acknowledging when it ends the link, before
    /// it may take the lease. It never drops below two of the primary's
    /// heartbeat intervals (`hadr_timeout` must match on both nodes, as in
    /// DB2, so this node's own setting gives the primary's interval), so an
    /// idle link is not cut between heartbeats.
    pub fn link_silence(&self) -> Duration {
        let timeout = self.hadr_timeout.0;
        if !self.automatic_failover() {
            return timeout;
        }
        let heartbeat = hadr_ha::PairConfig {
            mode: self.hadr_syncmode.0,
            timeout_us: timeout.as_micros() as u64,
            peer_window_us: self.hadr_peer_window.0.as_micros() as u64,
            peer_wait_limit_us: 0,
        }
        .heartbeat_us();
        let floor = Duration::from_micros(heartbeat.saturating_mul(2));
        timeout.min(self.lease_ttl.0.max(floor))
    }

    /// The lease timing, checked.
    pub fn lease_timing(&self) -> Result<hadr_ha::lease::LeaseTiming, hadr_ha::lease::TimingError> {
        hadr_ha::lease::LeaseTiming::new(
            self.lease_ttl.0.as_micros() as u64,
            self.lease_margin.0.as_micros() as u64,
        )
    }

    /// Where clients reach this node: `client_address`, else `listen`.
    pub fn client_address(&self) -> String {
        self.client_address
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// This node's name in the arbiter: its replication address, the name
    /// its primary's `hadr_target_list` knows it by (so a mark the primary
    /// writes is found by the standby it means).
    pub fn node_name(&self) -> String {
        self.hadr_local.to_string()
    }

    /// The entries of `hadr_target_list`.
    pub fn targets(&self) -> Vec<String> {
        self.hadr_target_list
            .split(['|', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The log settings for the engine.
    pub fn log_config(&self) -> hadr_log::LogConfig {
        hadr_log::LogConfig {
            dir: self.data.join(hadr_engine::LOG_DIR),
            segment_size: self.log_segment_size.0,
            retention_bytes: self.log_retention.0,
            flush_mode: self.log_flush_mode,
        }
    }
}

/// `p` absolute, with symlinks resolved as far as it exists and `.` and
/// `..` removed, for the overlap checks.
fn real_path(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    // Resolve the longest existing prefix (a symlinked parent).
    let mut rest = Vec::new();
    let mut cur = out.clone();
    loop {
        if let Ok(c) = std::fs::canonicalize(&cur) {
            let mut r = c;
            for part in rest.iter().rev() {
                r.push(part);
            }
            return r;
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                cur = parent.to_path_buf();
            }
            _ => return out,
        }
    }
}

/// `host:port` with a non-empty host and a port number; an IPv6 host in brackets.
fn valid_host_port(a: &str) -> bool {
    let Some((host, port)) = a.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains(':') && !host.contains(char::is_whitespace)
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_address_must_be_host_and_port() {
        for ok in ["db1.example:5433", "10.0.0.5:6432", "[::1]:5433"] {
            let c = Config::from_toml(&format!("client_address = {ok:?}")).unwrap();
            assert!(c.validate().is_ok(), "{ok}");
            assert_eq!(c.client_address(), ok);
        }
        for bad in [
            "db1",
            ":5433",
            "db1:",
            "db1:0",
            "db1:99999",
            "::1:5433",
            "[nothost]:1",
            "a b:1",
        ] {
            let c = Config::from_toml(&format!("client_address = {bad:?}")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("client_address"), "{bad}: {e}");
        }
        assert_eq!(Config::default().client_address(), "127.0.0.1:5433");
    }

    #[test]
    fn parses_units_and_defaults() {
        let c = Config::from_toml("log_retention = \"2GiB\"\nidle_in_transaction_timeout = \"500ms\"\nlog_segment_size = 1048576").unwrap();
        assert_eq!(c.log_retention, ByteSize(2 << 30));
        assert_eq!(
            c.idle_in_transaction_timeout,
            Dur(Duration::from_millis(500))
        );
        assert_eq!(c.log_segment_size, ByteSize(1 << 20));
        assert_eq!(c.listen, Config::default().listen);
    }

    #[test]
    fn a_stateless_arbiter_is_for_two_nodes_only() {
        let two = "arbiter = \"net:127.0.0.1:9\"\nhadr_target_list = \"127.0.0.1:1\"";
        assert!(Config::from_toml(two).unwrap().validate().is_ok());
        let three = "arbiter = \"net:127.0.0.1:9\"\nhadr_target_list = \"127.0.0.1:1|127.0.0.1:2\"";
        let e = Config::from_toml(three).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("arbiter"), "{e}");
        let manual = format!("{three}\nfailover = \"manual\"");
        assert!(Config::from_toml(&manual).unwrap().validate().is_ok());
        let etcd =
            "arbiter = \"etcd://127.0.0.1:9/k\"\nhadr_target_list = \"127.0.0.1:1|127.0.0.1:2\"";
        assert!(Config::from_toml(etcd).unwrap().validate().is_ok());
    }

    #[test]
    fn a_standby_under_automation_ends_a_silent_link_after_the_lease_not_hadr_timeout() {
        let manual = Config::from_toml("hadr_timeout = \"3s\"").unwrap();
        assert_eq!(manual.link_silence(), Duration::from_secs(3));
        let auto = Config::from_toml(
            "hadr_timeout = \"3s\"\narbiter = \"file:/tmp/x\"\nlease_ttl = \"2s\"",
        )
        .unwrap();
        assert_eq!(auto.link_silence(), Duration::from_secs(2));
        // Never below two heartbeats (hadr_timeout/4 each).
        let slow = Config::from_toml(
            "hadr_timeout = \"10s\"\narbiter = \"file:/tmp/x\"\nlease_ttl = \"1s\"\nlease_margin = \"200ms\"",
        )
        .unwrap();
        assert_eq!(slow.link_silence(), Duration::from_millis(5000));
        // Never above hadr_timeout.
        let fast = Config::from_toml(
            "hadr_timeout = \"1s\"\narbiter = \"file:/tmp/x\"\nlease_ttl = \"2s\"",
        )
        .unwrap();
        assert_eq!(fast.link_silence(), Duration::from_secs(1));
        let off = Config::from_toml(
            "hadr_timeout = \"3s\"\narbiter = \"file:/tmp/x\"\nfailover = \"manual\"",
        )
        .unwrap();
        assert_eq!(off.link_silence(), Duration::from_secs(3));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Config::from_toml("listen = 5").is_err());
        assert!(Config::from_toml("no_such_key = 1")
            .unwrap_err()
            .to_string()
            .contains("no_such_key"));
        assert!(Config::from_toml("log_retention = \"12 parsecs\"").is_err());
        assert!(Config::from_toml("\u{0}\u{1}garbage[[[").is_err());
        assert!(Config::from_toml("log_flush_mode = \"sometimes\"").is_err());
    }

    #[test]
    fn bad_sync_paths_name_their_key() {
        let bad = |toml: &str, key: &str| {
            let e = Config::from_toml(&format!("data = \"/srv/hadr-data\"\n{toml}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        };
        bad("sync_paths = { www = \"srv/www\" }", "sync_paths.www");
        bad("sync_paths = { \"w w\" = \"/srv/www\" }", "sync_paths.w w");
        bad(
            "sync_paths = { a = \"/srv/www\", b = \"/srv/www/x\" }",
            "sync_paths.b",
        );
        bad(
            "sync_paths = { a = \"/srv/hadr-data/files\" }",
            "sync_paths.a",
        );
        bad("sync_paths = { a = \"/srv\" }", "sync_paths.a");
        bad("sync_exclude = [\"a[\"]", "sync_exclude");
        let ok = Config::from_toml("data = \"/srv/hadr-data\"\nsync_paths = { www = \"/srv/www\", certs = \"/etc/ssl/hadr\" }\nsync_exclude = [\"*.tmp\"]\nsync_max_file_size = \"1MiB\"").unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.sync_paths["www"], PathBuf::from("/srv/www"));
        assert_eq!(ok.sync_max_file_size, ByteSize(1 << 20));
    }

    #[test]
    fn replication_tls_is_all_three_files_or_none() {
        assert_eq!(Config::default().replication_tls_files().unwrap(), None);
        let all = Config::from_toml(
            "replication_tls_ca_file = \"/c/ca.pem\"\nreplication_tls_cert_file = \"/c/a.pem\"\nreplication_tls_key_file = \"/c/a.key\"",
        )
        .unwrap();
        assert!(all.validate().is_ok());
        let files = all.replication_tls_files().unwrap().unwrap();
        assert_eq!(files.key, PathBuf::from("/c/a.key"));
        let half = Config::from_toml(
            "replication_tls_ca_file = \"/c/ca.pem\"\nreplication_tls_cert_file = \"/c/a.pem\"",
        )
        .unwrap();
        let e = half.validate().unwrap_err().to_string();
        assert!(
            e.contains("go together") && e.contains("replication_tls_key_file missing"),
            "{e}"
        );
    }

    #[test]
    fn an_admin_port_off_loopback_needs_a_token_or_insecure_admin() {
        let check = |toml: &str| Config::from_toml(toml).unwrap().validate();
        assert!(check("admin = \"127.0.0.1:8433\"").is_ok());
        assert!(check("admin = \"[::1]:8433\"").is_ok());
        for exposed in ["0.0.0.0:8433", "10.0.0.5:8433", "[::]:8433"] {
            let e = check(&format!("admin = {exposed:?}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("admin_token_file"), "{e}");
            assert!(e.contains("--insecure-admin"), "{e}");
            assert!(check(&format!("admin = {exposed:?}\ninsecure_admin = true")).is_ok());
            assert!(check(&format!(
                "admin = {exposed:?}\nadmin_token_file = \"/etc/hadr/admin-token\""
            ))
            .is_ok());
        }
        let e = check("admin_require_token_for_reads = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin_token_file"), "{e}");
    }

    #[test]
    fn tls_keys_come_together() {
        let bad = |toml: &str, key: &str| {
            let e = Config::from_toml(toml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        };
        bad("tls_cert_file = \"/c.pem\"", "tls_key_file");
        bad("tls_key_file = \"/k.pem\"", "tls_cert_file");
        bad("tls_client_ca_file = \"/ca.pem\"", "tls_client_ca_file");
        let ok = Config::from_toml(
            "tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\ntls_client_ca_file = \"/ca.pem\"",
        )
        .unwrap();
        ok.validate().unwrap();
        let files = ok.tls_files().unwrap();
        assert_eq!(files.cert, PathBuf::from("/c.pem"));
        assert_eq!(files.client_ca, Some(PathBuf::from("/ca.pem")));
        assert!(Config::default().tls_files().is_none());

        bad("admin_tls_cert_file = \"/c.pem\"", "admin_tls_key_file");
        bad("admin_tls_key_file = \"/k.pem\"", "admin_tls_cert_file");
        bad(
            "admin_tls_client_ca_file = \"/ca.pem\"",
            "admin_tls_client_ca_file",
        );
        let admin =
            Config::from_toml("admin_tls_cert_file = \"/c.pem\"\nadmin_tls_key_file = \"/k.pem\"")
                .unwrap();
        admin.validate().unwrap();
        assert!(admin.tls_files().is_none());
        assert_eq!(
            admin.admin_tls_files().unwrap().key,
            PathBuf::from("/k.pem")
        );
    }

    #[test]
    fn admin_client_certificates_are_a_credential_for_an_exposed_port() {
        let certs = "admin = \"0.0.0.0:8433\"\nadmin_tls_cert_file = \"/c.pem\"\nadmin_tls_key_file = \"/k.pem\"";
        let e = Config::from_toml(certs)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin_tls_client_ca_file"), "{e}");
        let with_ca = format!(
            "{certs}\nadmin_tls_client_ca_file = \"/ca.pem\"\nadmin_require_token_for_reads = true"
        );
        Config::from_toml(&with_ca).unwrap().validate().unwrap();
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert!("64XB".parse::<ByteSize>().is_err());
        assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
        assert!("-1s".parse::<Dur>().is_err());
    }

    #[test]
    fn access_rules_and_the_insecure_trust_check() {
        // The default: trust from loopback only, safe on any address.
        let c = Config::from_toml("listen = \"0.0.0.0:5433\"").unwrap();
        c.validate().unwrap();
        assert!(c.access_rules().unwrap().is_default());
        let text = r#"
listen = "0.0.0.0:5433"
[[access]]
address = "127.0.0.1/32"
method = "trust"
[[access]]
type = "hostssl"
user = "app"
address = "10.0.0.0/8"
method = "trust"
"#;
        let c = Config::from_toml(text).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("access rule 2 (hostssl all app 10.0.0.0/8 trust)")
                && e.contains("--insecure-trust"),
            "{e}"
        );
        let ok = Config::from_toml(&format!("insecure_trust = true\n{text}")).unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.access_rules().unwrap().rules().len(), 2);
        // On loopback the same rules need no flag.
        let local = Config::from_toml(&text.replace("0.0.0.0:5433", "127.0.0.1:5433")).unwrap();
        local.validate().unwrap();
        // A bad rule is named by its position.
        let bad = Config::from_toml("[[access]]\naddress = \"all\"\nmethod = \"md5\"").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("invalid access rule 1") && e.contains("md5"),
            "{e}"
        );
        assert!(
            Config::from_toml("[[access]]\naddress = \"all\"\nmethod = \"trust\"\nport = 1")
                .is_err()
        );
        // The flag's form.
        let r: AccessRuleConfig = "host all all 10.0.0.0/8 scram-sha-256".parse().unwrap();
        assert_eq!(r.method, "scram-sha-256");
        assert!("host all all".parse::<AccessRuleConfig>().is_err());
    }

    /// Found by the fuzz target `config` (fuzz/regressions/config): a
    /// duration past u64::MAX seconds panicked in Duration::from_secs_f64,
    /// at start-up from the config file and in a session from
    /// `SET hadr.max_replay_lag`.
    #[test]
    fn huge_durations_are_an_error_not_a_panic() {
        assert!("300000000000000000000000000000000s".parse::<Dur>().is_err());
        assert!("33333333333333333333333".parse::<Dur>().is_err());
        let e = Config::from_toml("hadr_timeout = \"333333333333333333333333333333333s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hadr_timeout"), "{e}");
        assert_eq!(
            "1000000000s".parse::<Dur>().map(|d| d.0.as_secs()),
            Ok(1_000_000_000)
        );
    }
}
