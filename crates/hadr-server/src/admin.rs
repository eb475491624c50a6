//! Admin HTTP: `/status` (JSON), `/primary` and `/standby` (200/503 for load
//! balancer health checks), `/metrics` (Prometheus text), and the requests
//! that steer the node (`/takeover`, `/fence`, `/failover/pause`,
//! `/resources/NAME/OP`), which need the admin token (crates/hadr-server/src/admin_auth.rs).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hadr_admin_api as api;
use hadr_engine::Role;
use tokio::net::TcpListener;

use crate::admin_auth::AdminAuth;
use crate::client_tls::ClientTls;
use crate::node::{Node, Repl, TakeoverAnswer};

/// Serve the admin endpoints until the task is aborted, over HTTPS with
/// `tls`; `auth` guards every path, including unknown ones (the fallback).
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    auth: Arc<AdminAuth>,
    tls: Option<Arc<ClientTls>>,
) {
    let app = Router::new()
        .route("/status", get(status))
        .route("/primary", get(primary))
        .route("/standby", get(standby))
        .route("/metrics", get(metrics))
        .route("/files/verify", get(files_verify))
        .route("/health", get(|| async { "ok" }))
        .route("/takeover", axum::routing::post(takeover))
        .route("/fence", axum::routing::post(fence))
        .route("/failover/pause", axum::routing::post(pause))
        .route(
            "/resources/{name}/{op}",
            axum::routing::post(crate::admin_resources::op),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such admin path\n") })
        .with_state(node)
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::admin_auth::guard,
        ));
    crate::admin_http::serve(listener, app, tls).await;
}

fn writable(node: &Node) -> bool {
    node.writable()
}

/// Query parameters of /takeover.
#[derive(serde::Deserialize, Default)]
struct TakeoverQuery {
    /// Forced takeover: do not wait for the primary.
    #[serde(default)]
    force: bool,
    /// With `force`: only inside the peer window (no committed transaction lost).
    #[serde(default)]
    peer_window_only: bool,
}

/// Forced takeover on a standby (DB2's `TAKEOVER BY FORCE [PEER WINDOW ONLY]`):
/// checked against the standby's view of the pair (hadr-ha's link rules),
/// then the node restarts as the primary of the next epoch; its probes tell
/// the old primary, if reachable, to stop writing.
fn force_takeover(node: &Arc<Node>, peer_window_only: bool) -> Response {
    let Repl::Standby { status, .. } = &node.repl else {
        return refused(hadr_ha::takeover::TakeoverRefusal::NotAStandby);
    };
    let now = hadr_replication::now_micros();
    let end = node.engine.log().end_lsn();
    let judged = status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .link
        .may_force(end, now, peer_window_only);
    let state = match judged {
        Ok(state) => state,
        Err(refusal) => {
            return (
                StatusCode::CONFLICT,
                format!("forced takeover refused: {refusal}\n"),
            )
                .into_response()
        }
    };
    node.set_activity(
        api::steps::FORCED_TAKEOVER,
        Some(&format!(
            "in {state:?}: stopping replication; promoting at the log end"
        )),
    );
    node.stop_for(crate::roles::RoleChange::Promote {
        end: None,
        epoch: None,
        predecessor: None,
    });
    Json(api::TakeoverAnswer {
        takeover: api::TakeoverProgress::Promoting,
        forced: true,
        state: Some(state),
        end_lsn: end,
    })
    .into_response()
}

fn refused(r: hadr_ha::takeover::TakeoverRefusal) -> Response {
    (StatusCode::CONFLICT, format!("{r}\n")).into_response()
}

/// Query of /failover/pause.
#[derive(serde::Deserialize)]
struct PauseQuery {
    paused: bool,
}

/// `POST /failover/pause?paused=BOOL`: maintenance mode on this node.
async fn pause(State(node): State<Arc<Node>>, Query(q): Query<PauseQuery>) -> Response {
    let Some(f) = &node.failover else {
        return (
            StatusCode::CONFLICT,
            "automatic failover is not configured on this node (no arbiter, or failover = manual)\n",
        )
            .into_response();
    };
    f.paused.store(q.paused, Ordering::SeqCst);
    tracing::info!(
        paused = q.paused,
        "automatic failover paused or resumed by an operator"
    );
    (StatusCode::OK, "ok\n").into_response()
}

/// Query of /fence.
#[derive(serde::Deserialize)]
struct FenceQuery {
    /// An epoch known to exist.
    epoch: u64,
}

/// `POST /fence?epoch=N`: tell a node that epoch N exists; a primary of an
/// older epoch stops writing at once and rejoins as a standby.
async fn fence(
    State(node): State<Arc<Node>>,
    Query(q): Query<FenceQuery>,
) -> Json<api::FenceAnswer> {
    let actions = node.on_peer(hadr_ha::GuardEvent::EpochReported { epoch: q.epoch });
    let fenced = actions
        .iter()
        .any(|a| matches!(a, hadr_ha::GuardAction::Fence { .. }));
    Json(api::FenceAnswer {
        fenced,
        epoch: node.engine.control().epoch,
        writable: node.writable(),
    })
}

/// Takeover, issued against the standby that should become primary:
/// graceful by default, forced with `?force=true[&peer_window_only=true]`.
async fn takeover(State(node): State<Arc<Node>>, Query(q): Query<TakeoverQuery>) -> Response {
    if q.force {
        return force_takeover(&node, q.peer_window_only);
    }
    if q.peer_window_only {
        return (
            StatusCode::BAD_REQUEST,
            "peer_window_only applies to a forced takeover (add force=true)\n",
        )
            .into_response();
    }
    let Repl::Standby { status, .. } = &node.repl else {
        return refused(hadr_ha::takeover::TakeoverRefusal::NotAStandby);
    };
    if let Err(r) = arbiter_readable(&node).await {
        return refused(r);
    }
    let asked = status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .link
        .may_ask_graceful();
    if let Err(r) = asked {
        return refused(r);
    }
    node.set_activity(
        api::steps::GRACEFUL_TAKEOVER,
        Some("asking the primary to hand over"),
    );
    let mut answer = node.takeover_answer.subscribe();
    node.takeover_answer.send_replace(None);
    answer.borrow_and_update();
    node.takeover_tx.send_modify(|n| *n += 1);
    // The primary stops its resources before it hands over
    // (docs/resources.md): allow their stop bound (nodes of one cluster
    // list the same resources).
    let limit = node.config.hadr_timeout.0 * 4
        + std::time::Duration::from_secs(5)
        + node
            .resources
            .stop_bound(hadr_resources::GroupRole::Primary);
    let got = tokio::time::timeout(limit, answer.wait_for(|a| a.is_some())).await;
    let got = match got {
        Ok(Ok(a)) => a.clone(),
        _ => None,
    };
    match got {
        Some(TakeoverAnswer::Promoting { end_lsn }) => Json(api::TakeoverAnswer {
            takeover: api::TakeoverProgress::Promoting,
            forced: false,
            state: None,
            end_lsn,
        })
        .into_response(),
        Some(TakeoverAnswer::Refused(why)) => {
            node.set_activity("graceful takeover", None);
            (StatusCode::CONFLICT, format!("{why}\n")).into_response()
        }
        None => {
            node.set_activity("graceful takeover", None);
            (
                StatusCode::GATEWAY_TIMEOUT,
                "the primary did not hand over in time\n",
            )
                .into_response()
        }
    }
}

/// With automatic failover on, a graceful takeover goes through the
/// arbiter (docs/failover.md §Graceful takeover): the new primary's first
/// act is writing the record in its epoch, so the takeover is refused up
/// front if the arbiter cannot even be read. A forced takeover does not ask.
async fn arbiter_readable(node: &Node) -> Result<(), hadr_ha::takeover::TakeoverRefusal> {
    let Some(f) = &node.failover else {
        return Ok(());
    };
    // Automation switched off at start-up (the arbiter failed its check):
    // the node behaves as without an arbiter, and so does its takeover.
    if f.status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .disabled
        .is_some()
    {
        return Ok(());
    }
    let unreadable =
        |reason: String| hadr_ha::takeover::TakeoverRefusal::ArbiterUnreadable { reason };
    let Some(arbiter) = f.arbiter() else {
        return Err(unreadable(
            "the arbiter was not opened (see the server log)".into(),
        ));
    };
    let limit = std::time::Duration::from_secs(2);
    match tokio::time::timeout(limit, arbiter.read()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreadable(e.to_string())),
        Err(_) => Err(unreadable(format!("no answer within {limit:?}"))),
    }
}

async fn primary(State(node): State<Arc<Node>>) -> StatusCode {
    if writable(&node) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn standby(State(node): State<Arc<Node>>) -> StatusCode {
    if node.is_standby() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Page hash at the LSN the database shows: on a primary under the write gate
/// (so snapshot and LSN agree), on a standby at its replay position. Cached
/// until the LSN moves.
async fn page_hash(node: &Arc<Node>) -> Option<(u64, hadr_engine::PageHash)> {
    let lsn_now = if node.is_standby() {
        node.engine.applied_lsn()
    } else {
        node.engine.log().end_lsn()
    };
    {
        let cache = node.hash_cache.lock().await;
        if let Some((lsn, h)) = cache.as_ref() {
            if *lsn == lsn_now {
                return Some((*lsn, h.clone()));
            }
        }
    }
    let n = node.clone();
    let r = tokio::task::spawn_blocking(move || -> Option<(u64, hadr_engine::PageHash)> {
        let (conn, lsn) = n.snapshot().ok()?;
        let h = hadr_engine::page_hash(&conn).ok()?;
        let _ = conn.execute_batch("COMMIT");
        Some((lsn, h))
    })
    .await
    .ok()
    .flatten()?;
    *node.hash_cache.lock().await = Some(r.clone());
    Some(r)
}

fn hadr_status(node: &Node) -> Option<api::HadrView> {
    let now = hadr_replication::now_micros();
    let log = node.engine.log();
    match &node.repl {
        Repl::None => None,
        Repl::Primary { standbys, .. } => {
            let end = log.end_lsn();
            let pairs = standbys
                .slots()
                .into_iter()
                .map(|s| {
                    let p = &s.pair;
                    let c = p.config();
                    api::StandbyPair {
                        standby: s.address,
                        principal: s.principal,
                        hadr_syncmode: c.mode,
                        hadr_state: p.state,
                        hadr_connect_status: p.connect_status(),
                        hadr_connect_status_time_us: p.status_since,
                        heartbeat_interval_ms: c.heartbeat_us() / 1000,
                        heartbeats_missed: p.heartbeats_missed,
                        time_since_last_recv_ms: now.saturating_sub(p.last_heard) / 1000,
                        hadr_timeout_ms: c.timeout_us / 1000,
                        primary_log_lsn: end,
                        sent_lsn: p.sent,
                        standby_received_lsn: p.received,
                        standby_flushed_lsn: p.flushed,
                        standby_replay_lsn: p.replayed,
                        hadr_log_gap_bytes: end.saturating_sub(p.received),
                        standby_recv_replay_gap_bytes: p.received.saturating_sub(p.replayed),
                        peer_window_ms: c.peer_window_us / 1000,
                        peer_window_end_us: p.peer_window_end,
                        peer_wait_limit_ms: c.peer_wait_limit_us / 1000,
                        last_error: s.last_error,
                    }
                })
                .collect();
            let w = standbys.wait_stats(now);
            Some(api::HadrView::Primary(api::PrimaryView {
                hadr_local: node.config.hadr_local.to_string(),
                standbys: pairs,
                log_hadr_wait_cur_ms: w.current_us / 1000,
                log_hadr_wait_accumulated_ms: w.accumulated_us / 1000,
                log_hadr_wait_count: w.count,
            }))
        }
        Repl::Standby { status, .. } => {
            let st = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let (received, flushed, replayed) =
                (log.end_lsn(), log.flushed_lsn(), node.engine.applied_lsn());
            Some(api::HadrView::Standby(api::StandbyView {
                hadr_connect_status: st.link.connect_status,
                hadr_connect_status_time_us: st.link.connect_status_since,
                primary: st.link.primary,
                primary_log_lsn: st.link.primary_end_lsn,
                standby_received_lsn: received,
                standby_flushed_lsn: flushed,
                standby_replay_lsn: replayed,
                hadr_log_gap_bytes: st.link.primary_end_lsn.saturating_sub(received),
                standby_recv_replay_gap_bytes: flushed.saturating_sub(replayed),
                time_since_last_recv_ms: now.saturating_sub(st.link.last_receive) / 1000,
                standby_replay_log_time_us: st.replay_log_time,
                peer_window_end_us: st.link.peer_window_end,
                last_error: st.last_error,
            }))
        }
    }
}

/// Query parameters of /status.
#[derive(serde::Deserialize)]
struct StatusQuery {
    /// Force (true) or skip (false) the page hash.
    hash: Option<bool>,
}

/// Parse a request target's query string as each handler here extracts it,
/// dropping the results: the fuzz target `admin` (fuzz/src/lib.rs) runs
/// this on arbitrary bytes.
pub fn parse_request_queries(target: &[u8]) {
    let Ok(uri) = axum::http::Uri::try_from(target) else {
        return;
    };
    let _ = Query::<TakeoverQuery>::try_from_uri(&uri);
    let _ = Query::<PauseQuery>::try_from_uri(&uri);
    let _ = Query::<FenceQuery>::try_from_uri(&uri);
    let _ = Query::<StatusQuery>::try_from_uri(&uri);
}

/// Databases larger than this get a page hash in /status only when asked
/// (`?hash=true`): hashing reads every page, and monitors poll /status often.
const HASH_BY_DEFAULT_MAX_BYTES: u64 = 256 << 20;

async fn status(State(node): State<Arc<Node>>, Query(q): Query<StatusQuery>) -> Response {
    let c = node.engine.control();
    let log = node.engine.log();
    let db_bytes = std::fs::metadata(node.engine.db_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let want_hash = q.hash.unwrap_or(db_bytes <= HASH_BY_DEFAULT_MAX_BYTES);
    let hash = if want_hash {
        page_hash(&node).await
    } else {
        None
    };
    let role = match c.role {
        Role::Standard => api::NodeRole::Standard,
        Role::Primary => api::NodeRole::Primary,
        Role::Standby => api::NodeRole::Standby,
    };
    let r = &node.recovery;
    let uptime = node.started.elapsed();
    // Locked and released here: write_refusal below locks the guard again.
    let writes = node.guard().writes.clone();
    let activity = node
        .activity
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let body = api::Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        role,
        epoch: c.epoch,
        epoch_history: c.epoch_history.clone(),
        highest_seen_epoch: c.highest_seen_epoch,
        database_id: c.database_id.clone(),
        writable: writable(&node),
        writes,
        write_refusal: node.write_refusal(),
        activity,
        activity_history: crate::activity::recent(&node.config.data),
        log: api::LogStatus {
            start_lsn: log.start_lsn(),
            end_lsn: log.end_lsn(),
            flushed_lsn: log.flushed_lsn(),
            size_bytes: log.size_bytes(),
        },
        checkpoint_lsn: c.checkpoint_lsn,
        sessions_open: node.open_sessions.load(Ordering::SeqCst) as u64,
        commits: node.stats.commits.load(Ordering::Relaxed),
        statements: node.stats.statements.load(Ordering::Relaxed),
        checkpoints: node.stats.checkpoints.load(Ordering::Relaxed),
        uptime_seconds: uptime.as_secs(),
        started_micros: hadr_replication::now_micros().saturating_sub(uptime.as_micros() as u64),
        recovery: api::Recovery {
            truncated_tail_bytes: r.truncated_tail_bytes,
            captured_from_wal: r.captured_from_wal as u64,
            reapplied_records: r.reapplied_records as u64,
            end_lsn: r.end_lsn,
        },
        hadr: hadr_status(&node),
        page_hash: hash.map(|(lsn, h)| api::PageHashStatus {
            lsn,
            pages: h.pages,
            hash: h.hash,
        }),
        transitions: node.events.recent(),
        failover: node
            .failover
            .as_ref()
            .map(|f| f.status.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        file_sync: node.file_sync_status(),
        resources: crate::admin_resources::view(&node),
        topology: node.topology(),
    };
    Json(body).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> String {
    let log = node.engine.log();
    let c = node.engine.control();
    let mut s = String::new();
    let mut m = |name: &str, help: &str, kind: &str, v: u64| {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    m(
        "hadr_log_end_lsn",
        "End of the written log.",
        "gauge",
        log.end_lsn(),
    );
    m(
        "hadr_log_flushed_lsn",
        "End of the durable log.",
        "gauge",
        log.flushed_lsn(),
    );
    m(
        "hadr_log_size_bytes",
        "Bytes of log segments on disk.",
        "gauge",
        log.size_bytes(),
    );
    m(
        "hadr_checkpoint_lsn",
        "LSN up to which the database file is checkpointed.",
        "gauge",
        c.checkpoint_lsn,
    );
    m("hadr_epoch", "Current epoch.", "gauge", c.epoch);
    m(
        "hadr_sessions_open",
        "Client sessions open.",
        "gauge",
        node.open_sessions.load(Ordering::SeqCst) as u64,
    );
    m(
        "hadr_commits_total",
        "Commits acknowledged.",
        "counter",
        node.stats.commits.load(Ordering::Relaxed),
    );
    m(
        "hadr_statements_total",
        "Statements executed.",
        "counter",
        node.stats.statements.load(Ordering::Relaxed),
    );
    m(
        "hadr_checkpoints_total",
        "Checkpoints completed.",
        "counter",
        node.stats.checkpoints.load(Ordering::Relaxed),
    );
    m(
        "hadr_connections_total",
        "Connections accepted.",
        "counter",
        node.stats.connections.load(Ordering::Relaxed),
    );
    m(
        "hadr_session_panics_total",
        "Sessions ended by an internal error (a caught panic); each released what it held.",
        "counter",
        node.stats.session_panics.load(Ordering::Relaxed),
    );
    for (name, help, d) in [
        (
            "hadr_write_lock_hold_seconds",
            "How long each holder kept the single writer's lock (a write transaction, from its first write to its end; a checkpoint).",
            node.write_lock.hold_stats(),
        ),
        (
            "hadr_write_lock_wait_seconds",
            "How long sessions waited for the single writer's lock before they got it.",
            node.write_lock.wait_stats(),
        ),
    ] {
        histogram(
            &mut s,
            name,
            help,
            &crate::write_lock::BUCKETS_US,
            (&d.buckets, d.sum_us, d.count),
        );
    }
    replication_metrics(&node, &mut s);
    node.file_sync_metrics(&mut s);
    crate::admin_resources::metrics(&node, &mut s);
    s
}

/// `GET /files/verify`: the synced directories against their tables.
async fn files_verify(State(node): State<Arc<Node>>) -> Response {
    match tokio::task::spawn_blocking(move || node.verify_files()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Per standby (what `db2pd -hadr` shows) and automatic failover, so that a
/// dashboard sees a lagging or disconnected standby and a lost lease.
fn replication_metrics(node: &Node, s: &mut String) {
    use std::fmt::Write;
    if let Repl::Primary { standbys, .. } = &node.repl {
        let end = node.engine.log().end_lsn();
        let slots = standbys.slots();
        let label = |a: &str| format!("{{standby=\"{a}\"}}");
        family(
            s,
            "gauge",
            "hadr_standby_state",
            "DB2 pair state of each standby (1 for the state it is in).",
            slots
                .iter()
                .flat_map(|sl| {
                    [
                        hadr_ha::PairState::RemoteCatchupPending,
                        hadr_ha::PairState::RemoteCatchup,
                        hadr_ha::PairState::Peer,
                        hadr_ha::PairState::DisconnectedPeer,
                    ]
                    .map(|st| {
                        (
                            format!(
                                "{{standby=\"{}\",state=\"{}\"}}",
                                sl.address,
                                hadr_admin_api::spelling(&st)
                            ),
                            u64::from(sl.pair.state == st),
                        )
                    })
                })
                .collect(),
        );
        family(
            s,
            "gauge",
            "hadr_standby_log_gap_bytes",
            "Primary log end minus what the standby received.",
            slots
                .iter()
                .map(|sl| (label(&sl.address), end.saturating_sub(sl.pair.received)))
                .collect(),
        );
        family(
            s,
            "gauge",
            "hadr_standby_replay_gap_bytes",
            "What the standby received minus what it replayed.",
            slots
                .iter()
                .map(|sl| {
                    (
                        label(&sl.address),
                        sl.pair.received.saturating_sub(sl.pair.replayed),
                    )
                })
                .collect(),
        );
        let w = standbys.wait_stats(hadr_replication::now_micros());
        family(
            s,
            "gauge",
            "hadr_commit_wait_accumulated_ms",
            "Total time commits waited for standbys.",
            vec![(String::new(), w.accumulated_us / 1000)],
        );
        commit_wait_histogram(&w, s);
    }
    if let Repl::Standby { status, .. } = &node.repl {
        let lag = status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replay_lag_us(hadr_replication::now_micros());
        let _ = writeln!(
            s,
            "# HELP hadr_replay_lag_seconds Standby: how stale reads here may be (the oldest received but unreplayed batch's age, or the time since the primary was last heard).\n# TYPE hadr_replay_lag_seconds gauge\nhadr_replay_lag_seconds {:.6}",
            lag as f64 / 1e6
        );
    }
    family(
        s,
        "counter",
        "hadr_role_transitions_total",
        "Role transitions since the process started (promoting: graceful or automatic; promoting_forced: a takeover by force or an automatic failover's promotion; fenced: a primary superseded).",
        node.events
            .counts()
            .into_iter()
            .map(|(k, v)| (format!("{{event=\"{k}\"}}"), v))
            .collect(),
    );
    if let Some(f) = &node.failover {
        let st = f.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        family(
            s,
            "gauge",
            "hadr_arbiter_up",
            "The arbiter answered its last call.",
            vec![(String::new(), u64::from(st.arbiter_ok))],
        );
        family(
            s,
            "gauge",
            "hadr_lease_remaining_ms",
            "Primary: how long the arbiter's lease is still ours.",
            vec![(String::new(), st.lease_left_ms)],
        );
        family(
            s,
            "counter",
            "hadr_lease_writes_total",
            "Successful lease writes (renewals, marks, take-overs) since this node took its current role.",
            vec![(String::new(), f.lease_writes.load(Ordering::Relaxed))],
        );
        family(
            s,
            "counter",
            "hadr_arbiter_failures_total",
            "Arbiter calls that failed since this node took its current role.",
            vec![(String::new(), f.arbiter_failures.load(Ordering::Relaxed))],
        );
        family(
            s,
            "gauge",
            "hadr_acknowledging_alone",
            "Primary: acknowledges commits its standby lacks (recorded out of sync).",
            vec![(String::new(), u64::from(st.acknowledging_alone))],
        );
    }
}

/// `hadr_commit_wait_seconds`: how long commits waited for standbys.
fn commit_wait_histogram(w: &hadr_replication::standbys::WaitStats, s: &mut String) {
    histogram(
        s,
        "hadr_commit_wait_seconds",
        "How long commits waited for standbys (those that waited).",
        &hadr_replication::standbys::WAIT_BUCKETS_US,
        (&w.buckets, w.accumulated_us, w.count),
    );
}

/// A Prometheus histogram (cumulative buckets) of durations: `(buckets,
/// sum_us, count)`, the buckets bounded by `bounds_us` and not cumulative.
fn histogram(
    s: &mut String,
    name: &str,
    help: &str,
    bounds_us: &[u64],
    (buckets, sum_us, count): (&[u64], u64, u64),
) {
    use std::fmt::Write;
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, bound) in bounds_us.iter().enumerate() {
        cumulative += buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(s, "{name}_sum {:.6}", sum_us as f64 / 1e6);
    let _ = writeln!(s, "{name}_count {count}");
}

/// One metric family of `kind` (gauge, counter); nothing if it has no rows.
fn family(s: &mut String, kind: &str, name: &str, help: &str, rows: Vec<(String, u64)>) {
    use std::fmt::Write;
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in rows {
        let _ = writeln!(s, "{name}{labels} {v}");
    }
}
