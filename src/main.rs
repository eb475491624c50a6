//! `hadr`: the command-line entry point.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hadr_admin_api::{AdminError, NodeRole};
use hadr_server::config::{ByteSize, Config, Dur, FlushMode, RoleSetting, SyncModeSetting};
use tracing_subscriber::EnvFilter;

use crate::admin_access::{Admin, AdminArgs};

mod admin_access;
mod certs;
mod demo;
mod filesync_text;
mod resource_cmd;
mod status_text;

/// A highly available SQL database in one binary: SQLite behind the PostgreSQL
/// wire protocol, with its own transaction log.
#[derive(Parser)]
#[command(name = "hadr", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new, empty database directory.
    Init {
        /// Directory to create the database in (must not hold one).
        #[arg(long, default_value = "hadr-data")]
        data: PathBuf,
        /// Size of log segment files (each is preallocated) [default: 64MiB].
        #[arg(long)]
        log_segment_size: Option<ByteSize>,
    },
    /// Serve a database over the PostgreSQL protocol.
    Server(Box<ServerArgs>),
    /// Check a stopped node offline (--data), or compare running nodes' page hashes at one LSN (--node A --node B).
    Verify {
        /// Data directory of a stopped node.
        #[arg(long, conflicts_with = "node")]
        data: Option<PathBuf>,
        /// Admin address of a running node (give two or more to compare).
        #[arg(long)]
        node: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Longest wait for the nodes to reach a common LSN.
        #[arg(long, default_value = "30s")]
        timeout: Dur,
        #[command(flatten)]
        access: AdminArgs,
    },
    /// Make the standby at this admin address the primary. Graceful by
    /// default (needs PEER: the primary stops writes, ships its last records
    /// and becomes a standby; nothing is lost). --force does not wait for
    /// the primary (it is told to stop writing if reachable).
    Takeover {
        /// Admin address of the standby that takes over.
        #[arg(long)]
        node: String,
        /// Forced takeover: allowed in PEER, DISCONNECTED_PEER and
        /// REMOTE_CATCHUP_PENDING; commits the standby never received are lost.
        #[arg(long)]
        force: bool,
        /// With --force: only inside the peer window, at least 5 s before it
        /// ends, so that no committed transaction can be lost.
        #[arg(long, requires = "force")]
        peer_window_only: bool,
        /// Longest wait for the whole switch.
        #[arg(long, default_value = "60s")]
        timeout: Dur,
        #[command(flatten)]
        access: AdminArgs,
    },
    /// Create a standby by copying a running primary (over its replication port).
    Clone {
        /// The primary's replication address (its hadr_local).
        #[arg(long)]
        from: String,
        /// New data directory (must not hold a database).
        #[arg(long)]
        data: PathBuf,
        /// Size of log segment files (each is preallocated) [default: 64MiB].
        #[arg(long)]
        log_segment_size: Option<ByteSize>,
        #[command(flatten)]
        tls: ReplTlsArgs,
    },
    /// Bring a stopped old primary in line with the new primary: rewind it
    /// (fetch the pages it changed after the divergence point, replay the new
    /// primary's log) or, if the logs no longer reach back, re-clone it.
    /// `hadr server` does the same by itself (auto_reclone).
    Rejoin {
        /// The new primary's replication address (its hadr_local).
        #[arg(long)]
        from: String,
        /// Data directory of the stopped old primary.
        #[arg(long)]
        data: PathBuf,
        /// Re-clone when a rewind is impossible.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        reclone: bool,
        #[command(flatten)]
        tls: ReplTlsArgs,
    },
    /// Certificates for replication links (docs/security.md §Replication links).
    Certs {
        #[command(subcommand)]
        what: certs::CertsCmd,
    },
    /// Check the arbiter a configuration names before trusting it: it answers,
    /// the credentials work, and it honours conditional writes (tried on a
    /// sibling key; the lease record is only read).
    Arbiter {
        #[command(subcommand)]
        what: ArbiterCmd,
    },
    /// Automatic failover on running nodes: pause (maintenance: no standby
    /// promotes by itself), resume, or list every node.
    Cluster {
        #[command(subcommand)]
        what: ClusterCmd,
        #[command(flatten)]
        access: AdminArgs,
    },
    /// The resources that follow the primary role on a running node
    /// (docs/resources.md): restart one (forgetting its failures), disable
    /// it (it and those after it stop), enable it again.
    Resource {
        #[command(subcommand)]
        what: resource_cmd::ResourceCmd,
        #[command(flatten)]
        access: AdminArgs,
    },
    /// Show a running node's status (from its admin endpoint).
    Status {
        /// Admin address of the node.
        #[arg(long, default_value = "127.0.0.1:8433")]
        node: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AdminArgs,
    },
    /// A local primary and a standby cloned from it under a bank workload; a
    /// graceful takeover, a kill -9 of the primary and a forced takeover, the
    /// old primary rejoining by itself; checks that nothing acknowledged was
    /// lost; then serve until Ctrl-C.
    Demo {
        /// PostgreSQL port for the demo node.
        #[arg(long, default_value_t = 5433)]
        port: u16,
        /// Seconds of workload, spread over the three phases around the switches.
        #[arg(long, default_value_t = 6)]
        seconds: u64,
        /// Exit after the workload instead of serving until Ctrl-C.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum ArbiterCmd {
    /// Reachability, credentials, conditional writes.
    Check {
        /// TOML configuration file naming the arbiter.
        #[arg(long, conflicts_with = "arbiter")]
        config: Option<PathBuf>,
        /// Or the arbiter itself (file:…, s3://…, etcd://…, net:…).
        #[arg(long)]
        arbiter: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// No automatic promotion on these nodes until `resume` (a primary still renews its lease).
    Pause {
        /// Admin address of each node.
        #[arg(long, required = true)]
        node: Vec<String>,
    },
    /// Automatic failover again.
    Resume {
        /// Admin address of each node.
        #[arg(long, required = true)]
        node: Vec<String>,
    },
    /// One line per node: role, epoch, state, lag, lease, automation; then
    /// the members the arbiter's record lists (from any one node).
    List {
        /// Admin address of each node.
        #[arg(long, required = true)]
        node: Vec<String>,
    },
}

/// Replication TLS for the commands that dial a primary (clone, rejoin):
/// the node's configuration file, or the three files, or both (flags win).
#[derive(Args, Default)]
struct ReplTlsArgs {
    /// TOML configuration file of the node (its replication_tls_* keys are used).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    files: ReplTlsFiles,
}

/// The three replication TLS files, as flags (`hadr server`, and the
/// commands that dial a primary).
#[derive(Args, Default)]
struct ReplTlsFiles {
    /// The cluster CA's certificate (PEM); with the next two, replication
    /// links are mutual TLS [default: none, plain TCP].
    #[arg(long)]
    replication_tls_ca_file: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the cluster CA.
    #[arg(long)]
    replication_tls_cert_file: Option<PathBuf>,
    /// This node's private key (PEM), readable by its owner only.
    #[arg(long)]
    replication_tls_key_file: Option<PathBuf>,
}

impl ReplTlsFiles {
    /// The flags given override `c`'s values.
    fn apply(self, c: &mut Config) {
        keep_given(&mut c.replication_tls_ca_file, self.replication_tls_ca_file);
        keep_given(
            &mut c.replication_tls_cert_file,
            self.replication_tls_cert_file,
        );
        keep_given(
            &mut c.replication_tls_key_file,
            self.replication_tls_key_file,
        );
    }
}

impl ReplTlsArgs {
    /// Put the TLS settings into `c` (checked: all three or none).
    fn apply(self, c: &mut Config) -> Result<()> {
        if let Some(p) = &self.config {
            let file = Config::from_file(p)?;
            c.replication_tls_ca_file = file.replication_tls_ca_file;
            c.replication_tls_cert_file = file.replication_tls_cert_file;
            c.replication_tls_key_file = file.replication_tls_key_file;
        }
        self.files.apply(c);
        c.validate()?;
        Ok(())
    }
}

/// Flags of `hadr server`; each one overrides the same key of the config file.
#[derive(Args, Default)]
struct ServerArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [default: hadr-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// PostgreSQL protocol listen address [default: 127.0.0.1:5433].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// A client access rule, "TYPE DATABASE USER ADDRESS METHOD" as in
    /// pg_hba.conf (repeatable, first match wins; replaces the file's
    /// [[access]] tables) [default: trust from loopback, scram-sha-256
    /// from anywhere else].
    #[arg(long = "access", value_name = "RULE")]
    access: Vec<hadr_server::config::AccessRuleConfig>,
    /// Start although a trust rule lets clients from beyond loopback in
    /// without a password while listen is not a loopback address.
    #[arg(long)]
    insecure_trust: bool,
    /// Longest a client may take to authenticate [default: 30s].
    #[arg(long)]
    auth_timeout: Option<Dur>,
    /// Password failures from one address within auth_failure_window after
    /// which its password logins are refused at once; 0 = no limit [default: 10].
    #[arg(long)]
    auth_failure_limit: Option<u32>,
    /// See --auth-failure-limit [default: 60s].
    #[arg(long)]
    auth_failure_window: Option<Dur>,
    /// Admin HTTP listen address [default: 127.0.0.1:8433].
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
    /// File holding the admin token (readable by its owner only; the same
    /// on every node): state-changing admin requests must carry it
    /// [default: none: such requests only over loopback].
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// The read-only admin endpoints (/status, /metrics, /primary, /standby…)
    /// need the admin token too.
    #[arg(long)]
    admin_require_token_for_reads: bool,
    /// Start with an admin port on a non-loopback address and no admin
    /// token: anyone who reaches it may take over or fence this node.
    #[arg(long)]
    insecure_admin: bool,
    /// HTTPS on the admin port: its certificate chain, PEM (with
    /// --admin-tls-key-file; reloaded on SIGHUP) [default: plain HTTP].
    #[arg(long, value_name = "PATH")]
    admin_tls_cert_file: Option<PathBuf>,
    /// The private key of --admin-tls-cert-file, PEM, readable by its owner only.
    #[arg(long, value_name = "PATH")]
    admin_tls_key_file: Option<PathBuf>,
    /// CA certificates, PEM: an admin client certificate they sign is a
    /// credential, as the admin token is [default: none asked for].
    #[arg(long, value_name = "PATH")]
    admin_tls_client_ca_file: Option<PathBuf>,
    /// HOST:PORT where clients reach this node, advertised to them in the
    /// topology (NAT, a VIP, a name, or a wildcard listen) [default: the listen address].
    #[arg(long)]
    client_address: Option<String>,
    /// Drop a client whose host stops answering after about this long,
    /// rolling back its transaction; 0 = the kernel's defaults [default: 10s].
    #[arg(long)]
    client_dead_timeout: Option<Dur>,
    /// Keep commit tokens (SET hadr.commit_token) this long [default: 24h].
    #[arg(long)]
    commit_token_retention: Option<Dur>,
    /// Log segment size, e.g. 64MiB [default: 64MiB].
    #[arg(long)]
    log_segment_size: Option<ByteSize>,
    /// Log kept beyond what recovery needs, e.g. 1GiB [default: 1GiB].
    #[arg(long)]
    log_retention: Option<ByteSize>,
    /// fsync (durable) or off (tests only) [default: fsync].
    #[arg(long)]
    log_flush_mode: Option<FlushMode>,
    /// WAL size that triggers a checkpoint [default: 16MiB].
    #[arg(long)]
    checkpoint_wal_size: Option<ByteSize>,
    /// Close sessions idle inside a transaction this long, e.g. 60s; 0 = never [default: 60s].
    #[arg(long)]
    idle_in_transaction_timeout: Option<Dur>,
    /// Longest wait for the write lock [default: 120s].
    #[arg(long)]
    write_wait_timeout: Option<Dur>,
    /// Disconnect a client that takes none of the data sent to it for this
    /// long, rolling back its transaction; 0 = never [default: 30s].
    #[arg(long)]
    client_write_timeout: Option<Dur>,
    /// Tiebreaker for automatic failover: file:PATH, s3://BUCKET/KEY?endpoint=URL,
    /// etcd://HOST:PORT/KEY or net:HOST:PORT [default: none, no automatic failover].
    #[arg(long)]
    arbiter: Option<String>,
    /// auto or manual [default: auto once an arbiter is set].
    #[arg(long)]
    failover: Option<hadr_server::config::FailoverMode>,
    /// Arbiter lease time to live [default: 2s].
    #[arg(long)]
    lease_ttl: Option<Dur>,
    /// Arbiter lease safety margin, below a third of the TTL [default: 500ms].
    #[arg(long)]
    lease_margin: Option<Dur>,
    /// Least time between two automatic promotions of this node, against
    /// failover ping-pong [default: 60s].
    #[arg(long)]
    min_promotion_interval: Option<Dur>,

    /// Longest wait for a commit to become durable [default: 60s].
    #[arg(long)]
    commit_timeout: Option<Dur>,
    /// Most client connections at once [default: 500].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Of max_connections, how many only --reserved-connection-user may take [default: 3].
    #[arg(long)]
    reserved_connections: Option<usize>,
    /// A user that may take the reserved connections (repeatable) [default: hadr_admin].
    #[arg(long = "reserved-connection-user")]
    reserved_connection_user: Vec<String>,
    /// Standby: re-clone itself when the primary no longer has the log it needs [default: true].
    #[arg(long)]
    auto_reclone: Option<bool>,
    #[command(flatten)]
    replication_tls: ReplTlsFiles,
    /// Largest client message accepted, e.g. 256MiB [default: 256MiB].
    #[arg(long)]
    max_message_size: Option<ByteSize>,
    /// TLS for clients: the certificate chain, PEM (with --tls-key-file;
    /// reloaded on SIGHUP) [default: none, no TLS].
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file, PEM, readable by its owner only.
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// CA certificates, PEM, that client certificates are verified against
    /// (a client without one is still let in) [default: none asked for].
    #[arg(long)]
    tls_client_ca_file: Option<PathBuf>,
    /// primary or standby (kept in the data directory once set).
    #[arg(long)]
    role: Option<RoleSetting>,
    /// Replication address [default: 127.0.0.1:9433].
    #[arg(long)]
    hadr_local: Option<std::net::SocketAddr>,
    /// Standbys of a primary, or the primary of a standby: host:port|host:port [default: none].
    #[arg(long)]
    hadr_target_list: Option<String>,
    /// SYNC, NEARSYNC, ASYNC or SUPERASYNC [default: NEARSYNC].
    #[arg(long)]
    hadr_syncmode: Option<SyncModeSetting>,
    /// A silent replication connection is dead after this [default: 3s].
    #[arg(long)]
    hadr_timeout: Option<Dur>,
    /// Block commits this long after losing the standby in PEER (SYNC/NEARSYNC) [default: 0].
    #[arg(long)]
    hadr_peer_window: Option<Dur>,
    /// Detach a standby that holds a commit longer than this in PEER; 0 = never [default: 0].
    #[arg(long)]
    hadr_peer_wait_limit: Option<Dur>,
    /// Standby: replay a record only once its commit is this old [default: 0].
    #[arg(long)]
    hadr_replay_delay: Option<Dur>,
    /// Accept writes without reaching a standby first, although this node was
    /// already primary before this start (waives the start-up rule, like
    /// DB2's START HADR AS PRIMARY BY FORCE). Every listed peer is still asked
    /// once: one that reports a newer epoch fences this node.
    #[arg(long)]
    force: bool,
    /// A directory kept in sync through the log, NAME=ABSOLUTE_PATH
    /// (repeatable; adds to the file's sync_paths) [default: none].
    #[arg(long = "sync-path", value_name = "NAME=PATH")]
    sync_path: Vec<String>,
    /// A glob of paths (relative to their root) not synced (repeatable;
    /// adds to the file's sync_exclude).
    #[arg(long = "sync-exclude", value_name = "GLOB")]
    sync_exclude: Vec<String>,
    /// Larger files are not synced (reported in status) [default: 256MiB].
    #[arg(long)]
    sync_max_file_size: Option<ByteSize>,
    /// Full scan of the synced directories, besides inotify [default: 30s].
    #[arg(long)]
    sync_scan_interval: Option<Dur>,
}

impl ServerArgs {
    fn into_config(self) -> Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        over!(
            data,
            listen,
            admin,
            log_segment_size,
            log_retention,
            log_flush_mode,
            checkpoint_wal_size,
            idle_in_transaction_timeout,
            write_wait_timeout,
            client_write_timeout,
            client_dead_timeout,
            commit_token_retention,
            lease_ttl,
            lease_margin,
            min_promotion_interval,
            commit_timeout,
            max_connections,
            reserved_connections,
            max_message_size,
            hadr_local,
            hadr_target_list,
            hadr_syncmode,
            hadr_timeout,
            hadr_peer_window,
            hadr_peer_wait_limit,
            hadr_replay_delay,
            auto_reclone,
            sync_max_file_size,
            sync_scan_interval,
            auth_timeout,
            auth_failure_limit,
            auth_failure_window
        );
        if !self.access.is_empty() {
            c.access = self.access;
        }
        c.insecure_trust |= self.insecure_trust;
        for spec in &self.sync_path {
            let Some((name, path)) = spec.split_once('=') else {
                bail!("invalid setting sync_paths: --sync-path {spec:?} is not NAME=PATH");
            };
            c.sync_paths.insert(name.to_string(), PathBuf::from(path));
        }
        c.sync_exclude.extend(self.sync_exclude.iter().cloned());
        keep_given(&mut c.role, self.role);
        keep_given(&mut c.arbiter, self.arbiter);
        if !self.reserved_connection_user.is_empty() {
            c.reserved_connection_users = self.reserved_connection_user;
        }
        keep_given(&mut c.client_address, self.client_address);
        keep_given(&mut c.failover, self.failover);
        self.replication_tls.apply(&mut c);
        keep_given(&mut c.admin_token_file, self.admin_token_file);
        c.admin_require_token_for_reads |= self.admin_require_token_for_reads;
        c.insecure_admin |= self.insecure_admin;
        keep_given(&mut c.admin_tls_cert_file, self.admin_tls_cert_file);
        keep_given(&mut c.admin_tls_key_file, self.admin_tls_key_file);
        keep_given(
            &mut c.admin_tls_client_ca_file,
            self.admin_tls_client_ca_file,
        );
        keep_given(&mut c.tls_cert_file, self.tls_cert_file);
        keep_given(&mut c.tls_key_file, self.tls_key_file);
        keep_given(&mut c.tls_client_ca_file, self.tls_client_ca_file);

        c.force = self.force;
        c.validate()?;
        Ok(c)
    }
}

/// A flag given on the command line overrides the config file's value.
fn keep_given<T>(slot: &mut Option<T>, given: Option<T>) {
    if given.is_some() {
        *slot = given;
    }
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_env("HADR_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only on a terminal: logs piped to files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo prints its own story; node logs would drown it (HADR_LOG=info shows them).
    init_tracing(if matches!(cli.command, Cmd::Demo { .. }) {
        "warn"
    } else {
        "info"
    });
    match cli.command {
        Cmd::Init {
            data,
            log_segment_size,
        } => {
            let c = data_config(&data, log_segment_size)?;
            let control = hadr_engine::Engine::init(&data, &c.log_config())
                .with_context(|| format!("cannot create a database in {}", data.display()))?;
            println!(
                "created database {} in {}",
                control.database_id,
                data.display()
            );
            println!("start it with: hadr server --data {}", data.display());
            Ok(())
        }
        Cmd::Server(args) => {
            let config = (*args).into_config()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(config))
        }
        Cmd::Verify {
            data: Some(data),
            json,
            ..
        } => verify(data, json),
        Cmd::Verify {
            data: None,
            node,
            json,
            timeout,
            access,
        } => {
            if node.len() < 2 {
                bail!("give --data DIR for an offline check, or --node ADMIN_ADDR at least twice to compare running nodes");
            }
            let admin = access.admin()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(verify_nodes(&admin, &node, json, timeout.0))
        }
        Cmd::Takeover {
            node,
            timeout,
            force,
            peer_window_only,
            access,
        } => {
            let admin = access.admin()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(takeover(
                &admin.client(node.as_str())?,
                timeout.0,
                force,
                peer_window_only,
            ))
        }
        Cmd::Rejoin {
            from,
            data,
            reclone,
            tls,
        } => {
            let mut c = data_config(&data, None)?;
            tls.apply(&mut c)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(rejoin(&from, &c, reclone))
        }
        Cmd::Clone {
            from,
            data,
            log_segment_size,
            tls,
        } => {
            let mut c = data_config(&data, log_segment_size)?;
            tls.apply(&mut c)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(clone(&from, &c))
        }
        Cmd::Certs { what } => certs::run(what),
        Cmd::Status { node, json, access } => {
            let admin = access.admin()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(status(&admin, &node, json))
        }
        Cmd::Arbiter {
            what: ArbiterCmd::Check { config, arbiter },
        } => {
            let spec = match (config, arbiter) {
                (Some(p), _) => Config::from_file(&p)?
                    .arbiter
                    .with_context(|| format!("{} sets no arbiter", p.display()))?,
                (None, Some(a)) => a,
                (None, None) => bail!("give --config FILE or --arbiter SPEC"),
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(arbiter_check(&spec))
        }
        Cmd::Cluster { what, access } => {
            let admin = access.admin()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(cluster(&admin, what))
        }
        Cmd::Resource { what, access } => {
            let admin = access.admin()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(resource_cmd::run(&admin, what))
        }
        Cmd::Demo {
            port,
            seconds,
            no_wait,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(demo::run(port, Duration::from_secs(seconds), no_wait))
        }
    }
}

/// Ask a standby to take over, then wait until it serves as primary.
async fn takeover(
    admin: &hadr_admin_api::AdminClient,
    timeout: Duration,
    force: bool,
    window_only: bool,
) -> Result<()> {
    let started = std::time::Instant::now();
    let node = admin.addr();
    let before = admin.status_with_hash(false).await?;
    if before.role != NodeRole::Standby {
        bail!("{node} is a {}, not a standby: a takeover is issued against the standby that should become primary", before.role);
    }
    // The standby restarts as primary right after it answers, so a cut-off
    // answer is not a failure; a refusal (or any other answer) is.
    match admin
        .with_timeout(timeout)
        .takeover(force, window_only)
        .await
    {
        Ok(a) => println!(
            "{node} accepted the {} takeover: promoting from LSN {}{}",
            if a.forced { "forced" } else { "graceful" },
            a.end_lsn,
            a.state
                .map(|s| format!(" (it was in {})", hadr_admin_api::spelling(&s)))
                .unwrap_or_default()
        ),
        Err(e @ AdminError::Http { .. }) => {
            let what = if e.is_refusal() {
                "takeover refused"
            } else {
                "takeover failed"
            };
            return Err(anyhow::Error::new(e).context(what));
        }
        // Nothing was done: say so at once rather than wait for a primary.
        Err(e @ AdminError::Unauthorized { .. }) => return Err(e.into()),
        Err(_) => {}
    }
    let deadline = started + timeout;
    let poll = admin.with_timeout(Duration::from_secs(5));
    loop {
        if let Ok(st) = poll.status_with_hash(false).await {
            if st.is_writable_primary() && st.epoch > before.epoch {
                println!(
                    "takeover complete in {:.0} ms: {node} is the primary of epoch {}",
                    started.elapsed().as_secs_f64() * 1000.0,
                    st.epoch
                );
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "{node} did not become primary within {timeout:?}; see its log and `hadr status`"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings for commands that create a data directory (init, clone).
fn data_config(data: &std::path::Path, log_segment_size: Option<ByteSize>) -> Result<Config> {
    let mut c = Config {
        data: data.to_path_buf(),
        ..Config::default()
    };
    if let Some(size) = log_segment_size {
        c.log_segment_size = size;
    }
    c.validate()?;
    Ok(c)
}

/// Run a node under the role supervisor until SIGTERM or Ctrl-C.
async fn serve(config: Config) -> Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        });
    }
    let events = std::sync::Arc::new(hadr_server::RoleEvents::default());
    // The resources outlive each role run: a stop must finish whatever the
    // database does meanwhile (docs/resources.md).
    let resources =
        hadr_resources::Manager::start(config.resource_specs()?, &config.data.join("resources"));
    hadr_server::supervise(config, events, resources, stop, |_| {}).await?;
    Ok(())
}

/// A progress bar for a rewind or a clone.
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// `hadr rejoin`: rewind the stopped node in `config.data` against the
/// primary at `from`; re-clone if a rewind is impossible (and `reclone_fallback`).
async fn rejoin(from: &str, config: &Config, reclone_fallback: bool) -> Result<()> {
    use hadr_server::supervisor::Rejoined;
    let pb = progress_bar("rewinding");
    let bar = pb.clone();
    let mut progress = move |p: hadr_replication::clone::Progress| {
        bar.set_length(p.total);
        bar.set_position(p.bytes);
    };
    let r = hadr_server::supervisor::rejoin(from, config, reclone_fallback, &mut progress).await;
    pb.finish_and_clear();
    let data = config.data.display();
    match r? {
        Rejoined::NotNeeded => println!("no rewind needed: this node's log stops at or before the divergence point; it catches up as a standby"),
        Rejoined::Rewound(rep) => println!(
            "rewound {data} from LSN {} to {}: dropped its own records {}..{}, fetched {} pages and {} bytes of log in {:.2} s ({:.2} s of it opening the data directory, i.e. its own crash recovery)",
            rep.divergence, rep.end, rep.divergence, rep.old_end, rep.pages, rep.log_bytes, rep.secs, rep.open_secs
        ),
        Rejoined::Recloned => println!("a rewind was impossible (a log no longer reaches the divergence point): re-cloned {data} from {from}"),
    }
    println!("start it with: hadr server --data {data} (it follows {from} as a standby)");
    Ok(())
}

fn verify(data: PathBuf, json: bool) -> Result<()> {
    let log_dir = data.join(hadr_engine::LOG_DIR);
    let chain = hadr_log::verify_dir(&log_dir)
        .with_context(|| format!("log chain in {} is damaged", log_dir.display()))?;
    let cfg = Config {
        data: data.clone(),
        ..Config::default()
    };
    let (engine, recovery) = hadr_engine::Engine::open(&data, &cfg.log_config())
        .with_context(|| format!("cannot open {}", data.display()))?;
    let conn = engine.connect()?;
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let hash = hadr_engine::page_hash(&conn)?;
    drop(conn);
    let lsn = engine.log().end_lsn();
    engine.close()?;
    if json {
        println!(
            "{}",
            serde_json::json!({"lsn": lsn, "pages": hash.pages, "hash": hash.hash, "integrity": integrity,
                "log": {"start_lsn": chain.start_lsn, "end_lsn": chain.end_lsn, "segments": chain.segments, "records": chain.records},
                "recovery": recovery})
        );
    } else {
        println!(
            "log:       {} records in {} segments, LSN {}..{}",
            chain.records, chain.segments, chain.start_lsn, chain.end_lsn
        );
        println!(
            "database:  {} pages, integrity_check: {integrity}",
            hash.pages
        );
        println!("lsn:       {lsn}");
        println!("page hash: {}", hash.hash);
    }
    if integrity != "ok" {
        bail!("integrity_check failed: {integrity}");
    }
    Ok(())
}

async fn status(admin: &Admin, node: &str, json: bool) -> Result<()> {
    let st = match admin.client(node)?.status().await {
        Ok(st) => st,
        Err(e) => match e.not_serving() {
            Some(n) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&n)?);
                }
                bail!("{node} is not serving: {} ({})", n.detail, n.phase)
            }
            None => return Err(e.into()),
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    print!(
        "{}",
        status_text::render(&st, hadr_replication::now_micros())
    );
    Ok(())
}

async fn clone(from: &str, cfg: &Config) -> Result<()> {
    let data = cfg.data.as_path();
    let existed = data.exists();
    // Before anything is written: a TLS problem leaves the directory alone.
    let tls = cfg.replication_tls()?;
    let bar = progress_bar("cloning");
    let result = hadr_replication::clone::clone_from(
        from,
        data,
        &cfg.log_config(),
        Duration::from_secs(10),
        tls.as_deref(),
        |p| {
            bar.set_length(p.total);
            bar.set_position(p.bytes);
        },
    )
    .await;
    let lsn = match result {
        Ok(lsn) => lsn,
        Err(e) => {
            bar.abandon();
            let refused_to_overwrite =
                matches!(e, hadr_replication::clone::CloneError::TargetNotEmpty(_));
            // Leave nothing half-made behind, so that running clone again works.
            if !refused_to_overwrite {
                if existed {
                    for name in [
                        "data.db",
                        "data.db.clone",
                        "log",
                        "control.json",
                        "control.json.tmp",
                        "lock",
                    ] {
                        let p = data.join(name);
                        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                    }
                } else {
                    let _ = std::fs::remove_dir_all(data);
                }
            }
            return Err(anyhow::Error::new(e).context(format!(
                "clone from {from} into {} failed{}",
                data.display(),
                if refused_to_overwrite {
                    ""
                } else {
                    "; what it had written was removed, so it can be run again"
                }
            )));
        }
    };
    bar.finish();
    println!("cloned {} at LSN {lsn}", data.display());
    println!(
        "start it with: hadr server --data {} --hadr-target-list {from} --hadr-local HOST:PORT (the address the primary lists){}",
        data.display(),
        if tls.is_some() {
            " and the same replication_tls_* settings"
        } else {
            ""
        }
    );
    Ok(())
}

async fn node_hash(admin: &Admin, node: &str) -> Result<(u64, String)> {
    let st = admin
        .client(node)?
        .with_timeout(Duration::from_secs(300))
        .status_with_hash(true)
        .await?;
    let h = st.page_hash.context("node reports no page hash")?;
    Ok((h.lsn, h.hash))
}

/// Compare running nodes at one LSN: standbys report their hash at their
/// replay position, so wait until every node shows the same LSN.
async fn verify_nodes(
    admin: &Admin,
    nodes: &[String],
    json: bool,
    timeout: Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for n in nodes {
            seen.push((n.clone(), node_hash(admin, n).await?));
        }
        let lsn0 = seen[0].1 .0;
        if seen.iter().all(|(_, (l, _))| *l == lsn0) {
            let same = seen.iter().all(|(_, (_, h))| *h == seen[0].1 .1);
            if json {
                let v: Vec<_> = seen
                    .iter()
                    .map(|(n, (l, h))| serde_json::json!({"node": n, "lsn": l, "hash": h}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"identical": same, "lsn": lsn0, "nodes": v})
                );
            } else {
                for (n, (l, h)) in &seen {
                    println!("{n:<24} LSN {l:<12} {h}");
                }
                println!("{}", if same { "identical" } else { "DIFFERENT" });
            }
            if !same {
                bail!("nodes differ at LSN {lsn0}");
            }
            return verify_files(admin, nodes, json, deadline).await;
        }
        if std::time::Instant::now() > deadline {
            let desc: Vec<String> = seen
                .iter()
                .map(|(n, (l, _))| format!("{n} at {l}"))
                .collect();
            bail!("nodes did not reach a common LSN within {timeout:?} ({}); is the primary still taking writes, or a standby disconnected?", desc.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each node's synced directories against its tables (the tables are
/// covered by the page hash). A standby writes files shortly after it
/// replays them, so differences are looked at again until `deadline`.
async fn verify_files(
    admin: &Admin,
    nodes: &[String],
    json: bool,
    deadline: std::time::Instant,
) -> Result<()> {
    loop {
        let mut seen = Vec::new();
        for n in nodes {
            match admin
                .client(n.as_str())?
                .with_timeout(Duration::from_secs(300))
                .files_verify()
                .await
            {
                Ok(v) if v.roots > 0 => seen.push((n.clone(), v)),
                // No synced directories, or a node from before file sync:
                // nothing to compare.
                Ok(_) => {}
                Err(e) if e.http_status() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let bad = seen.iter().any(|(_, v)| !v.identical);
        if !bad || std::time::Instant::now() > deadline {
            if json && !seen.is_empty() {
                println!(
                    "{}",
                    serde_json::json!({"files": seen.iter().map(|(n, v)| serde_json::json!({"node": n, "verify": v})).collect::<Vec<_>>()})
                );
            }
            for (n, v) in &seen {
                for m in &v.mismatches {
                    eprintln!("{n}: files: {}/{}: {}", m.root, m.path, m.why);
                }
                for m in &v.unsynced {
                    eprintln!("{n}: files: not synced: {}/{}: {}", m.root, m.path, m.why);
                }
            }
            if bad {
                let which: Vec<String> = seen
                    .iter()
                    .filter(|(_, v)| !v.identical)
                    .map(|(n, v)| {
                        let paths: Vec<String> = v
                            .mismatches
                            .iter()
                            .take(10)
                            .map(|m| format!("{}/{}", m.root, m.path))
                            .collect();
                        format!("{n} ({})", paths.join(", "))
                    })
                    .collect();
                bail!(
                    "synced files differ from the tables on {}",
                    which.join("; ")
                );
            }
            if !json && !seen.is_empty() {
                println!("synced files identical");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `hadr arbiter check`.
async fn arbiter_check(spec: &str) -> Result<()> {
    let parsed: hadr_arbiter::ArbiterSpec = spec.parse()?;
    let arbiter = hadr_arbiter::open(&parsed)?;
    let report = hadr_arbiter::check(arbiter.as_ref())
        .await
        .with_context(|| format!("arbiter {spec} failed its check: do not use it"))?;
    println!("arbiter      {} {}", report.info.kind, report.info.endpoint);
    match &report.current {
        None => println!("lease        none yet"),
        Some(s) => println!(
            "lease        held by {} in epoch {} (token {}){}",
            s.record.holder.as_deref().unwrap_or("nobody"),
            s.record.epoch,
            s.record.token,
            if s.record.out_of_sync.is_empty() {
                String::new()
            } else {
                format!(
                    "; out of sync: {}",
                    s.record
                        .out_of_sync
                        .iter()
                        .map(|o| format!("{} from LSN {}", o.standby, o.from_lsn))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
    }
    if let Some(s) = &report.current {
        if s.record.lease_ttl_us > 0 {
            println!(
                "timing       its writer runs a {} ms lease with a {} ms margin (a contender waits by the longer of that and its own)",
                s.record.lease_ttl_us / 1000,
                s.record.lease_margin_us / 1000
            );
        }
        // Clock sanity: the rules read only monotonic clocks, but a writer
        // whose wall clock runs ahead makes logs and status lie.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let age_ms = (now - s.record.written_at_micros as i64) / 1000;
        if age_ms < -1000 {
            println!(
                "WARNING: the record's writer's wall clock is at least {:.1} s ahead of this node's; hadr's lease rules use only monotonic time, but fix NTP before comparing logs",
                -age_ms as f64 / 1000.0
            );
        } else {
            println!(
                "written      {:.1} s ago (by its writer's clock)",
                age_ms as f64 / 1000.0
            );
        }
    }
    if report.info.stateful {
        println!(
            "conditional  honoured (a stale and an absent-only write were refused); one write took {:.1} ms",
            report.write_round_trip.as_secs_f64() * 1000.0
        );
        println!("ok: this arbiter can decide between two nodes");
    } else {
        println!("WARNING: a network arbiter keeps no state: if both nodes still reach it but not each other, both become primary");
    }
    Ok(())
}

/// `hadr cluster pause|resume|list`.
async fn cluster(admin: &Admin, what: ClusterCmd) -> Result<()> {
    match what {
        ClusterCmd::Pause { node } | ClusterCmd::Resume { node } if node.is_empty() => {
            bail!("name at least one --node")
        }
        ClusterCmd::Pause { node } => set_paused(admin, &node, true).await,
        ClusterCmd::Resume { node } => set_paused(admin, &node, false).await,
        ClusterCmd::List { node } => {
            println!(
                "{:<22} {:<8} {:>5}  {:<24} {:>12}  {:<28} automation",
                "node", "role", "epoch", "state", "lag bytes", "lease"
            );
            // The record's member list, from the node that knows the newest epoch.
            let mut members: Option<(u64, String)> = None;
            for n in &node {
                match admin.client(n.clone())?.status().await {
                    Ok(st) => {
                        println!("{}", status_text::cluster_row(n, &st));
                        let epoch = st.failover.as_ref().map(|f| f.epoch).unwrap_or(0);
                        if let Some(table) = status_text::cluster_members(&st) {
                            if members.as_ref().is_none_or(|(e, _)| epoch > *e) {
                                members = Some((epoch, table));
                            }
                        }
                    }
                    Err(e) => println!("{n:<22} unreachable: {e}"),
                }
            }
            if let Some((_, table)) = members {
                print!("{table}");
            }
            Ok(())
        }
    }
}

async fn set_paused(admin: &Admin, nodes: &[String], paused: bool) -> Result<()> {
    for n in nodes {
        admin
            .client(n.clone())?
            .pause(paused)
            .await
            .with_context(|| n.to_string())?;
        println!(
            "{n}: automatic failover {}",
            if paused { "paused" } else { "resumed" }
        );
    }
    Ok(())
}
