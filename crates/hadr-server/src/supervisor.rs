//! The role supervisor: the one place a node's role changes
//! (docs/architecture.md §Role changes).
//!
//! A node runs in one role at a time (`runtime::run`); when that run
//! ends because the role must change — a takeover, a fencing, a rejoin, a
//! re-clone — it returns a [`RoleChange`], and [`supervise`] carries it out
//! and runs the node again. A node's role changes only here (promotion, and
//! the rewind and re-clone it runs) or through `roles` (the two writes a
//! running primary makes itself before it may tell anyone: a hand-over and a
//! fencing). A standby adopting its primary's newer epoch history is not a
//! role change and stays with the receiver. Every transition is published
//! once on [`RoleEvents`], the typed stream that `/status` and the log follow,
//! and that automated failover and role hooks will.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hadr_engine::{Engine, EngineError};
use hadr_ha::RoleEvent;
use hadr_replication::clone::{CloneError, Progress};
use hadr_replication::rewind::{RewindError, RewindOutcome};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::client_tls::ClientTls;
use crate::config::Config;
use crate::gate::{Gate, Phase};
use crate::node::NodeError;
use crate::roles::{RoleChange, RoleEvents};
use crate::runtime::{self, Bound};

/// Why the supervisor gave up.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The node could not start or run.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Promotion failed.
    #[error("promotion failed: {0}")]
    Promote(#[source] EngineError),
    /// The admin token could not be read (or may not be used).
    #[error(transparent)]
    AdminAuth(#[from] crate::admin_auth::AdminAuthError),
    /// The TLS certificate, key or client CA cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::client_tls::TlsError),
}

/// Why a repair (rewind or re-clone) failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The replication TLS settings cannot be used.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The rewind failed.
    #[error("rewind from {from} failed: {source}")]
    Rewind {
        /// The primary.
        from: String,
        /// Why.
        #[source]
        source: RewindError,
    },
    /// The clone failed; the old directory is back in place.
    #[error("re-clone from {from} failed; {} is as before: {source}", dir.display())]
    Clone {
        /// The primary.
        from: String,
        /// The data directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: CloneError,
    },
    /// Moving the data directory aside or back failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a rejoin did.
#[derive(Debug)]
pub enum Rejoined {
    /// No rewind was needed: the log stops at or before the divergence point.
    NotNeeded,
    /// Rewound.
    Rewound(hadr_replication::rewind::RewindReport),
    /// A rewind was impossible; re-cloned instead.
    Recloned,
}

/// Run a node until `stop` is cancelled, carrying out every role change it
/// asks for. Retries a failed repair every 2 s (it is logged and published).
///
/// The client and admin ports are bound here, once (`on_bound` hears where),
/// and answered by the gate whenever no run serves (crates/hadr-server/src/gate.rs).
pub async fn supervise(
    mut config: Config,
    events: Arc<RoleEvents>,
    resources: hadr_resources::Manager,
    stop: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> Result<(), SupervisorError> {
    // A directory that is not a usable data directory is reported as such,
    // before the ports: that is the problem to fix first.
    if !hadr_engine::Control::path(&config.data).exists() {
        return Err(
            NodeError::from(hadr_engine::EngineError::NotADataDir(config.data.clone())).into(),
        );
    }
    hadr_engine::Control::load(&config.data).map_err(NodeError::from)?;
    // Unusable replication TLS (a missing file, a key others can read)
    // stops the start here, before any port is bound.
    config.replication_tls().map_err(NodeError::from)?;
    // Read once: a token file changed later takes effect at the next start.
    let auth = Arc::new(crate::admin_auth::AdminAuth::load(&config)?);
    // Bad TLS files stop the start, naming the file: a node that should
    // encrypt must not serve without.
    let tls = match config.tls_files() {
        Some(files) => Some(Arc::new(ClientTls::load(files)?)),
        None => None,
    };
    let admin_tls = match config.admin_tls_files() {
        Some(files) => Some(Arc::new(ClientTls::load_admin(files)?)),
        None => None,
    };
    let reloadable = [("client", tls.clone()), ("admin", admin_tls.clone())]
        .into_iter()
        .filter_map(|(what, t)| Some((what, t?)))
        .collect();
    let _reloader = AbortOnDrop(tokio::spawn(reload_on_sighup(reloadable)));
    let gate = Gate::bind(&config, auth, tls.clone(), admin_tls)?;
    on_bound(gate.bound());
    loop {
        events.publish(RoleEvent::Starting);
        gate.close(Phase::new(
            "starting",
            "starting up (opening and recovering the database)",
        ));
        let change = runtime::run(
            config.clone(),
            events.clone(),
            resources.clone(),
            tls.clone(),
            &gate,
            stop.clone().cancelled_owned(),
        )
        .await;
        let change = match change {
            Ok(c) => c,
            Err(e) => {
                stop_resources(&resources).await;
                return Err(e.into());
            }
        };
        // --force applies to the first run only; a promotion waives the
        // start-up rule for the run that follows (it is the authority of its epoch).
        config.force = false;
        config.promoted = false;
        config.handed_over_by = None;
        let failed = match change {
            RoleChange::Stopped => {
                stop_resources(&resources).await;
                events.publish(RoleEvent::Stopped);
                return Ok(());
            }
            RoleChange::Restart => None,
            RoleChange::Promote {
                end,
                epoch,
                predecessor,
            } => {
                gate.close(Phase::new("promoting", "becoming the primary"));
                promote(&config, end, epoch, &events)?;
                config.promoted = true;
                config.handed_over_by = predecessor;
                None
            }
            RoleChange::Reclone { from, reason } => {
                events.publish(RoleEvent::Recloning {
                    from: from.clone(),
                    reason,
                });
                let what = format!("re-cloning from {from}");
                gate.close(Phase::new("re-cloning", what.clone()));
                reclone(&from, &config, &mut log_progress(&gate, what))
                    .await
                    .err()
                    .map(|e| ("re-clone", e))
            }
            RoleChange::Rewind { from } => {
                events.publish(RoleEvent::Rewinding { from: from.clone() });
                let what = format!("rewinding from {from}");
                gate.close(Phase::new("rewinding", what.clone()));
                rejoin(
                    &from,
                    &config,
                    config.auto_reclone,
                    &mut log_progress(&gate, what),
                )
                .await
                .err()
                .map(|e| ("rejoin", e))
            }
        };
        if let Some((during, e)) = failed {
            error!(error = %e, "{during} failed; trying again shortly");
            gate.close(Phase::new(
                "retrying",
                format!("retrying: {during} failed: {e}"),
            ));
            events.publish(RoleEvent::Failed {
                during: during.into(),
                error: e.to_string(),
            });
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.cancelled() => {
                    stop_resources(&resources).await;
                    events.publish(RoleEvent::Stopped);
                    return Ok(());
                }
            }
        }
    }
}

/// Aborts its task when dropped (when `supervise` returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGHUP, as for PostgreSQL, reads the files that can change under a
/// running node again: the TLS certificates and keys of the client and
/// admin ports (new connections get them; open ones keep theirs). A file
/// that fails leaves that port's configuration in force, and the log says why.
async fn reload_on_sighup(tls: Vec<(&'static str, Arc<ClientTls>)>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP: the TLS files will not be reloaded");
            return;
        }
    };
    while hup.recv().await.is_some() {
        if tls.is_empty() {
            info!("SIGHUP: nothing to reload (TLS is not configured)");
        }
        for (port, tls) in &tls {
            let files = tls.files();
            // The files are read on a blocking thread: a slow disk must not
            // stall the runtime.
            let t = tls.clone();
            match tokio::task::spawn_blocking(move || t.reload()).await {
                Ok(Ok(())) => info!(
                    port,
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    "SIGHUP: TLS certificate and key reloaded; new connections use them"
                ),
                Ok(Err(e)) => {
                    error!(port, error = %e, "SIGHUP: TLS files not reloaded; the previous certificate stays in force")
                }
                Err(e) => error!(port, error = %e, "SIGHUP: the TLS reload task failed"),
            }
        }
    }
}

/// Shutdown: every resource stopped, confirmed, before the process ends
/// (docs/resources.md §Confirmed stops).
async fn stop_resources(resources: &hadr_resources::Manager) {
    let bound = resources.stop_bound(hadr_resources::GroupRole::Primary)
        + resources.stop_bound(hadr_resources::GroupRole::Standby)
        + Duration::from_secs(2);
    if let Err(e) = resources.stop_all(bound).await {
        error!(error = %e, "shutting down with resources that were not confirmed stopped");
    }
}

/// Progress as log lines, at most one a second, and in what the gate
/// tells clients and `/status` meanwhile.
fn log_progress(gate: &Arc<Gate>, what: String) -> impl FnMut(Progress) + Send {
    let mut last = std::time::Instant::now();
    let gate = gate.clone();
    move |p: Progress| {
        if last.elapsed() > Duration::from_secs(1) {
            last = std::time::Instant::now();
            let percent = (p.bytes * 100).checked_div(p.total).unwrap_or(100);
            info!(bytes = p.bytes, total = p.total, percent, "{what}");
            gate.progress(format!(
                "{what}: {percent}% ({} of {} MiB)",
                p.bytes >> 20,
                p.total >> 20
            ));
        }
    }
}

/// Promote the stopped node's data directory into the epoch the HA rules
/// choose (above every epoch it has heard of), from `end` or its log end.
fn promote(
    config: &Config,
    end: Option<u64>,
    won: Option<u64>,
    events: &RoleEvents,
) -> Result<(), SupervisorError> {
    // Recovery ends with a truncating checkpoint, so the WAL is empty before
    // the promoted node captures its first transaction.
    let (engine, _) =
        Engine::open(&config.data, &config.log_config()).map_err(SupervisorError::Promote)?;
    let at = end.unwrap_or_else(|| engine.log().end_lsn());
    let known = engine.control();
    let next = hadr_ha::epoch::next_epoch(known.epoch, known.highest_seen_epoch);
    // An epoch won in the arbiter is above everything the standby knew when
    // it took the lease; should the node have heard of more since, the
    // engine refuses and the supervisor reports it rather than reuse a term.
    let epoch = won.unwrap_or(next);
    events.publish(RoleEvent::Promoting {
        epoch,
        start_lsn: at,
        forced: end.is_none(),
    });
    let c = engine
        .promote(at, epoch)
        .map_err(SupervisorError::Promote)?;
    debug_assert!(hadr_ha::epoch::history_is_ordered(&c.epoch_history));
    engine.close().map_err(SupervisorError::Promote)?;
    info!(epoch = c.epoch, start_lsn = at, "promoted to primary");
    Ok(())
}

/// Rewind the stopped node in `config.data` against the primary at `from`;
/// re-clone if a rewind is impossible (and `reclone_fallback`).
pub async fn rejoin(
    from: &str,
    config: &Config,
    reclone_fallback: bool,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Rejoined, RepairError> {
    let tls = config.replication_tls()?;
    let r = hadr_replication::rewind::rewind(
        from,
        &config.data,
        &config.log_config(),
        Duration::from_secs(10),
        tls.as_deref(),
        &mut *progress,
    )
    .await;
    match r {
        Ok(RewindOutcome::NotNeeded) => {
            info!("no rewind needed: this node's log stops at or before the divergence point; it catches up as a standby");
            Ok(Rejoined::NotNeeded)
        }
        Ok(RewindOutcome::Rewound(rep)) => Ok(Rejoined::Rewound(rep)),
        // Only a log that no longer reaches the divergence point calls for a
        // re-clone; an unreachable primary or a refusal does not (and a rewind
        // cut short leaves `rewind_pending`, which re-clones at the next start).
        Err(e @ RewindError::NeedsClone(_)) if reclone_fallback => {
            warn!(error = %e, "rewind impossible: re-cloning from the primary instead");
            reclone(from, config, progress).await?;
            Ok(Rejoined::Recloned)
        }
        Err(source) => Err(RepairError::Rewind {
            from: from.to_string(),
            source,
        }),
    }
}

/// Replace a standby's data directory with a fresh clone of `from`; the old
/// directory is kept until the clone succeeds, and restored if it fails.
pub async fn reclone(
    from: &str,
    config: &Config,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<u64, RepairError> {
    // Before the directory is moved aside: a TLS problem leaves it as it was.
    let tls = config.replication_tls()?;
    let dir = config.data.clone();
    let mut aside = dir.clone().into_os_string();
    aside.push(format!(".before-reclone-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    std::fs::rename(&dir, &aside).map_err(|source| RepairError::Io {
        what: "cannot move aside for a re-clone",
        path: dir.clone(),
        source,
    })?;
    let started = std::time::Instant::now();
    let r = hadr_replication::clone::clone_from(
        from,
        &dir,
        &config.log_config(),
        Duration::from_secs(10),
        tls.as_deref(),
        &mut *progress,
    )
    .await;
    match r {
        Ok(lsn) => {
            info!(
                lsn,
                secs = started.elapsed().as_secs_f64(),
                "re-clone complete"
            );
            let _ = std::fs::remove_dir_all(&aside);
            Ok(lsn)
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&aside, &dir).map_err(|e| RepairError::Io {
                what: "re-clone failed and the old directory could not be restored from",
                path: aside.clone(),
                source: e,
            })?;
            Err(RepairError::Clone {
                from: from.to_string(),
                dir,
                source,
            })
        }
    }
}
