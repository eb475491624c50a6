//! A node's runtime: binds its listeners, starts the tasks of its role
//! (sessions, admin HTTP, replication, checkpoints), and shuts them down
//! when the run ends, returning the [`RoleChange`] the supervisor carries out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hadr_engine::{Checkpoint, Role};
use hadr_ha::RoleEvent;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::demotion::Handover;
use crate::gate::{Gate, Phase};
use crate::node::{Node, NodeError, Repl, TakeoverAnswer};
use crate::roles::{RoleChange, RoleEvents};

pub use crate::gate::Bound;

/// Run a node until `stop` completes (or the node decides to stop), then shut down cleanly.
///
/// The client and admin ports come bound from the supervisor's `gate`,
/// which answers on them until this run serves and again once it stops.
/// `tls`: client TLS, loaded by the supervisor (it outlives the run).
pub async fn run(
    config: crate::Config,
    events: Arc<RoleEvents>,
    resources: hadr_resources::Manager,
    tls: Option<Arc<crate::client_tls::ClientTls>>,
    gate: &Arc<Gate>,
    stop: impl Future<Output = ()>,
) -> Result<RoleChange, NodeError> {
    let node = Node::open(config, events, resources, tls)?;
    crate::filesync::prepare(&node.config)?;
    if let Some(d) = node.engine.control().rewind_pending {
        // A rewind was cut short: the database is neither the old state nor
        // the new one. Only a fresh copy is safe.
        let from = node.config.targets().into_iter().next().ok_or_else(|| {
            NodeError::Role(format!("a rewind from LSN {d} was interrupted and this node has no hadr_target_list to re-clone from"))
        })?;
        warn!(divergence = d, %from, "a rewind was interrupted: re-cloning");
        let engine = node.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.close()).await;
        return Ok(RoleChange::Reclone {
            from,
            reason: format!("a rewind from LSN {d} was interrupted"),
        });
    }
    // The replication port first: once the client port answers, a test or
    // an operator may expect every port of the node to be there.
    let repl_tasks = start_replication(&node).await?;
    let abort_repl = || repl_tasks.iter().for_each(|t| t.abort());
    let (pg, admin) = match gate.open() {
        Ok(l) => l,
        Err(source) => {
            abort_repl();
            return Err(NodeError::Bind {
                addr: node.config.listen,
                source,
            });
        }
    };
    let bound = gate.bound();
    let control = node.engine.control();
    info!(
        pg = %bound.pg, admin = %bound.admin, role = control.role.as_str(), epoch = control.epoch,
        database_id = %control.database_id, end_lsn = node.engine.log().end_lsn(),
        "hadr node serving"
    );
    node.events.publish(match control.role {
        Role::Primary => RoleEvent::Primary {
            epoch: control.epoch,
        },
        Role::Standby => RoleEvent::Standby {
            epoch: control.epoch,
            targets: node.config.targets(),
        },
        Role::Standard => RoleEvent::Standard,
    });

    let accept = tokio::spawn(crate::accept::accept_loop(node.clone(), pg));
    let admin_task = tokio::spawn(crate::admin::serve(
        node.clone(),
        admin,
        gate.admin_auth(),
        gate.admin_tls(),
    ));
    let ckpt = tokio::spawn(checkpointer(node.clone()));
    let purger = tokio::spawn(purge_commit_tokens(node.clone()));
    let file_sync = match crate::filesync::start(&node) {
        Ok(f) => f,
        Err(e) => {
            error!(error = %e, "file sync did not start");
            None
        }
    };
    let resource_task = tokio::spawn(crate::resource_link::follow(node.clone()));

    tokio::select! {
        _ = stop => {}
        _ = node.until_shutdown() => {}
    }
    info!("shutting down");
    node.begin_shutdown();
    if let Some(f) = &file_sync {
        f.stop();
    }
    if let Repl::Primary { standbys, .. } = &node.repl {
        let why = match node.next.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(RoleChange::Restart) => {
                "it restarts as a standby (it handed over or was superseded)"
            }
            _ => "the server is shutting down",
        };
        standbys.close(why.into());
        // Let the senders tell their standbys (RefuseCode::NotPrimary), so
        // that they look for the primary elsewhere at once rather than after
        // hadr_timeout; the tasks are aborted below in any case.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline
            && standbys
                .slots()
                .iter()
                .any(|s| s.pair.connect_status() == hadr_ha::ConnectStatus::Connected)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    accept.abort();
    admin_task.abort();
    gate.close(stopping_phase(&node));
    ckpt.abort();
    purger.abort();
    // It saw the shutdown and asked every group to stop; the stops run on
    // in the manager's tasks, across the role change.
    let _ = tokio::time::timeout(Duration::from_secs(1), resource_task).await;
    node.resources.set_desire(hadr_resources::Desire::default());
    for t in repl_tasks {
        t.abort();
    }
    if let Repl::Standby { stop, .. } = &node.repl {
        stop.store(true, Ordering::SeqCst);
    }
    // Sessions notice the shutdown promptly; each sends its client FATAL 57P01.
    node.end_sessions();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.open_sessions.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = node.open_sessions.load(Ordering::SeqCst);
    if left > 0 {
        warn!(
            sessions = left,
            "sessions still open at shutdown; their transactions roll back"
        );
    }
    if let Some(f) = file_sync {
        let _ = tokio::task::spawn_blocking(move || f.join(Duration::from_secs(10))).await;
    }
    // A primary that handed over already holds the write lock for good.
    let held = node
        .demote_permit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let permit = match held {
        Some(p) => Ok(p),
        None => node.acquire_write_async().await,
    };
    let engine = node.engine.clone();
    let closed = tokio::task::spawn_blocking(move || engine.close())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    drop(permit);
    match closed {
        Ok(()) => info!("clean shutdown complete"),
        Err(e) => {
            error!(error = %e, "shutdown could not checkpoint; recovery will finish it at next start")
        }
    }
    // Read, not taken: an admin request may still be watching for it.
    let next = node.next.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(next.unwrap_or(RoleChange::Stopped))
}

/// What the gate says while this run winds down.
fn stopping_phase(node: &Node) -> Phase {
    match node.next.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(RoleChange::Restart) => Phase::new(
            "restarting",
            "restarting as a standby (it handed over, or a newer primary superseded it)",
        ),
        Some(RoleChange::Promote { .. }) => {
            Phase::new("promoting", "becoming the primary (a takeover)")
        }
        Some(RoleChange::Rewind { from }) => {
            Phase::new("rewinding", format!("about to rewind from {from}"))
        }
        Some(RoleChange::Reclone { from, .. }) => {
            Phase::new("re-cloning", format!("about to re-clone from {from}"))
        }
        Some(RoleChange::Stopped) | None => Phase::new("stopping", "shutting down"),
    }
}

/// Bind a listener, naming the address when it fails.
async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Bind { addr, source: e })
}

/// Start the replication tasks of the node's role.
async fn start_replication(
    node: &Arc<Node>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, NodeError> {
    let mut tasks = start_pair(node).await?;
    if let Some(t) = start_failover(node)? {
        tasks.push(t);
    }
    Ok(tasks)
}

/// Automatic failover's driver for this node's role, if configured.
fn start_failover(node: &Arc<Node>) -> Result<Option<tokio::task::JoinHandle<()>>, NodeError> {
    let (Some(shared), Some(spec)) = (&node.failover, &node.config.arbiter) else {
        return Ok(None);
    };
    let spec: hadr_arbiter::ArbiterSpec = spec
        .parse()
        .map_err(|e: hadr_arbiter::ArbiterError| NodeError::Role(format!("arbiter: {e}")))?;
    let arbiter: Arc<dyn hadr_arbiter::Arbiter> =
        Arc::from(hadr_arbiter::open(&spec).map_err(|e| NodeError::Role(format!("arbiter: {e}")))?);
    let info = arbiter.info();
    if !info.stateful {
        warn!(arbiter = %info.endpoint, "the network arbiter keeps no state: if both nodes still reach it while they cannot reach each other, BOTH can become primary (split brain). Use a file, S3 or etcd arbiter unless that partition cannot happen.");
    }
    info!(kind = %info.kind, endpoint = %info.endpoint, "automatic failover through the arbiter");
    *shared.arbiter.lock().unwrap_or_else(|p| p.into_inner()) = Some(arbiter.clone());
    let (node, shared) = (node.clone(), shared.clone());
    Ok(match &node.repl {
        Repl::Primary { .. } => Some(tokio::spawn(crate::auto_failover::run_primary(
            node, arbiter, shared,
        ))),
        Repl::Standby { .. } => Some(tokio::spawn(crate::auto_failover::run_standby(
            node, arbiter, shared,
        ))),
        Repl::None => None,
    })
}

/// The replication tasks of the node's role.
async fn start_pair(node: &Arc<Node>) -> Result<Vec<tokio::task::JoinHandle<()>>, NodeError> {
    let timeout = node.config.hadr_timeout.0;
    let address = node.config.hadr_local.to_string();
    // Read at every run: a role change picks up renewed certificates.
    let tls = match &node.repl {
        Repl::None => None,
        _ => node.config.replication_tls()?,
    };
    if let Some(t) = &tls {
        info!(peers = ?t.peers(), "replication links: mutual TLS with the cluster CA");
    }
    match &node.repl {
        Repl::None => Ok(vec![]),
        Repl::Primary { standbys, end_tx } => {
            let listener = bind(node.config.hadr_local).await?;
            let snap_node = node.clone();
            let ctx = Arc::new(hadr_replication::primary::PrimaryCtx {
                engine: node.engine.clone(),
                standbys: standbys.clone(),
                end: end_tx.subscribe(),
                address,
                client_address: node.config.client_address(),
                timeout,
                snapshot: Arc::new(move || snap_node.snapshot()),
                takeover: Arc::new(Handover(Arc::downgrade(node))),
                on_peer: {
                    let weak = Arc::downgrade(node);
                    Arc::new(move |ev| match weak.upgrade() {
                        Some(node) => node.on_peer(ev),
                        None => vec![],
                    })
                },
                hand_over: node.resources.takeover_requests(),
                tls,
            });
            info!(hadr_local = %node.config.hadr_local, standbys = ?node.config.targets(), syncmode = ?node.config.hadr_syncmode.0, "HADR primary");
            Ok(vec![tokio::spawn(hadr_replication::primary::serve(
                ctx, listener,
            ))])
        }
        Repl::Standby { status, stop } => {
            let (flushed_tx, flushed) = watch::channel(node.engine.log().flushed_lsn());
            node.engine.log().on_flush(Box::new(move |lsn| {
                flushed_tx.send_replace(lsn);
            }));
            let (replayed_tx, replayed) = watch::channel(node.engine.applied_lsn());
            let (engine, st, stop) = (node.engine.clone(), status.clone(), stop.clone());
            let delay = node.config.hadr_replay_delay.0;
            std::thread::Builder::new()
                .name("hadr-replay".into())
                .spawn(move || {
                    hadr_replication::standby::replay_loop(engine, replayed_tx, st, stop, delay)
                })
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            if node.config.targets().is_empty() {
                warn!("standby has no hadr_target_list: it will not find its primary");
            }
            let ctx = Arc::new(hadr_replication::standby::StandbyCtx {
                engine: node.engine.clone(),
                targets: node.config.targets(),
                address,
                client_address: node.config.client_address(),
                timeout,
                tls,
                silence: node.config.link_silence(),
                status: status.clone(),
                flushed,
                replayed,
                takeover: node.takeover_tx.subscribe(),
                leader: node.leader.subscribe(),
                on_takeover_ready: {
                    let weak = Arc::downgrade(node);
                    Arc::new(move |end: u64| {
                        if let Some(node) = weak.upgrade() {
                            info!(end_lsn = end, "takeover: restarting as primary");
                            node.set_activity(
                                hadr_admin_api::steps::GRACEFUL_TAKEOVER,
                                Some(hadr_admin_api::steps::HANDED_OVER),
                            );
                            node.takeover_answer
                                .send_replace(Some(TakeoverAnswer::Promoting { end_lsn: end }));
                            // The primary that handed over: the one this
                            // standby follows (its target, as the record names it).
                            let predecessor = match &node.repl {
                                Repl::Standby { status, .. } => status
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .link
                                    .primary
                                    .clone(),
                                _ => None,
                            };
                            node.stop_for(RoleChange::Promote {
                                end: Some(end),
                                epoch: None,
                                predecessor,
                            });
                        }
                    })
                },
                on_takeover_refused: {
                    let weak = Arc::downgrade(node);
                    Arc::new(move |reason: String| {
                        if let Some(node) = weak.upgrade() {
                            node.takeover_answer
                                .send_replace(Some(TakeoverAnswer::Refused(reason)));
                        }
                    })
                },
                on_diverged: repair(
                    node,
                    "this node's log diverged from the primary's (an old primary)",
                    "run `hadr rejoin --from`",
                    |from| RoleChange::Rewind { from },
                ),
                on_needs_clone: repair(
                    node,
                    "the primary no longer has the log this standby needs",
                    "run `hadr clone`",
                    |from| RoleChange::Reclone {
                        from,
                        reason: "the primary no longer has the log this standby needs".into(),
                    },
                ),
            });
            info!(primary = ?node.config.targets(), "HADR standby");
            // Primaries probe this port: the start-up rule needs to see a
            // standby, and fencing needs everyone's epoch.
            let listener = bind(node.config.hadr_local).await?;
            Ok(vec![
                tokio::spawn(hadr_replication::standby::answer_probes(
                    ctx.clone(),
                    listener,
                )),
                tokio::spawn(hadr_replication::standby::run(ctx)),
            ])
        }
    }
}

/// A standby that cannot follow its primary as it is: with `auto_reclone`,
/// stop and let the caller repair the data directory (`outcome` with the
/// primary's address); without, say what to run.
fn repair(
    node: &Arc<Node>,
    why: &'static str,
    manual: &'static str,
    outcome: fn(String) -> RoleChange,
) -> Arc<dyn Fn(String) + Send + Sync> {
    let weak = Arc::downgrade(node);
    let auto = node.config.auto_reclone;
    Arc::new(move |primary: String| {
        let Some(node) = weak.upgrade() else { return };
        if !auto {
            warn!(%primary, "{why}: {manual} (auto_reclone is off)");
            return;
        }
        let next = outcome(primary.clone());
        warn!(%primary, ?next, "{why}: repairing this node (auto_reclone)");
        node.set_activity("rejoin", Some(&format!("{next:?}")));
        node.stop_for(next);
    })
}

/// Checkpoint when the WAL has grown past `checkpoint_wal_size`, then apply log retention.
/// On a primary, every minute: delete the commit tokens older than
/// `commit_token_retention`, a thousand per transaction so that the write
/// lock is never held long (docs/clients.md §Commit outcomes).
async fn purge_commit_tokens(node: Arc<Node>) {
    if !matches!(node.repl, Repl::Primary { .. } | Repl::None) {
        return;
    }
    let secs = node.config.commit_token_retention.0.as_secs();
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let n = node.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut conn = n.engine.connect().map_err(|e| e.to_string())?;
            let never = std::sync::atomic::AtomicBool::new(false);
            let mut total = 0;
            for _ in 0..100 {
                let mut deleted = 0;
                n.internal_write(&mut conn, &never, &mut |tx| {
                    deleted = crate::commit_tokens::purge(tx, secs, 1000)?;
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
                total += deleted;
                if deleted < 1000 {
                    break;
                }
            }
            Ok::<usize, String>(total)
        })
        .await;
        match r {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(purged = n, "old commit tokens purged"),
            Ok(Err(e)) => warn!(error = %e, "could not purge old commit tokens"),
            Err(e) => warn!(error = %e, "commit token purge task failed"),
        }
    }
}

async fn checkpointer(node: Arc<Node>) {
    let page = u64::from(hadr_engine::PAGE_SIZE);
    let threshold_frames = (node.config.checkpoint_wal_size.0 / page).max(16);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if node.engine.frames_since_checkpoint() < threshold_frames {
            continue;
        }
        let Ok(permit) = node.acquire_write_async().await else {
            continue;
        };
        let engine = node.engine.clone();
        let r = tokio::task::spawn_blocking(move || engine.checkpoint(false)).await;
        drop(permit);
        match r {
            Ok(Ok(Checkpoint::Complete(lsn))) => {
                node.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                let engine = node.engine.clone();
                let removed =
                    tokio::task::spawn_blocking(move || engine.log().apply_retention(lsn)).await;
                if let Ok(Err(e)) = removed {
                    warn!(error = %e, "log retention failed");
                }
            }
            Ok(Ok(Checkpoint::Partial)) => {
                // Long readers pin old frames; try again shortly.
            }
            Ok(Err(e)) => error!(error = %e, "checkpoint failed"),
            Err(e) => error!(error = %e, "checkpoint task failed"),
        }
    }
}
