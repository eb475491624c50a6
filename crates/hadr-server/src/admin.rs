//! Admin HTTP: `/status` (JSON), `/primary` and `/standby` (200/503 for load
//! balancer health checks), `/metrics` (Prometheus text).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hadr_engine::Role;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::warn;

use crate::node::Node;

/// Serve the admin endpoints until the task is aborted.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let app = Router::new()
        .route("/status", get(status))
        .route("/primary", get(primary))
        .route("/standby", get(standby))
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .with_state(node);
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "admin server stopped");
    }
}

fn writable(node: &Node) -> bool {
    matches!(node.engine.control().role, Role::Standard | Role::Primary) && !node.is_shutting_down()
}

async fn primary(State(node): State<Arc<Node>>) -> StatusCode {
    if writable(&node) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn standby(State(node): State<Arc<Node>>) -> StatusCode {
    if node.engine.control().role == Role::Standby {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Page hash at the current log end, computed under the write permit so the
/// snapshot and the LSN agree, and cached until the log moves.
async fn page_hash(node: &Arc<Node>) -> Option<(u64, hadr_engine::PageHash)> {
    let end = node.engine.log().end_lsn();
    {
        let cache = node.hash_cache.lock().await;
        if let Some((lsn, h)) = cache.as_ref() {
            if *lsn == end {
                return Some((*lsn, h.clone()));
            }
        }
    }
    let permit = node.acquire_write_async().await.ok()?;
    let engine = node.engine.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::task::spawn_blocking(move || -> Option<(u64, hadr_engine::PageHash)> {
        let conn = engine.connect().ok()?;
        conn.execute_batch("BEGIN").ok()?;
        // The first read pins the snapshot; with the permit held no commit can
        // slip in between it and reading the LSN.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .ok()?;
        let lsn = engine.log().end_lsn();
        let _ = tx.send(());
        let h = hadr_engine::page_hash(&conn).ok()?;
        let _ = conn.execute_batch("COMMIT");
        Some((lsn, h))
    });
    let _ = rx.await;
    drop(permit);
    let r = task.await.ok().flatten()?;
    *node.hash_cache.lock().await = Some(r.clone());
    Some(r)
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    let c = node.engine.control();
    let log = node.engine.log();
    let hash = page_hash(&node).await;
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "role": c.role.as_str(),
        "epoch": c.epoch,
        "epoch_history": c.epoch_history,
        "database_id": c.database_id,
        "writable": writable(&node),
        "log": {
            "start_lsn": log.start_lsn(),
            "end_lsn": log.end_lsn(),
            "flushed_lsn": log.flushed_lsn(),
            "size_bytes": log.size_bytes(),
        },
        "checkpoint_lsn": c.checkpoint_lsn,
        "sessions_open": node.open_sessions.load(Ordering::SeqCst),
        "commits": node.stats.commits.load(Ordering::Relaxed),
        "statements": node.stats.statements.load(Ordering::Relaxed),
        "checkpoints": node.stats.checkpoints.load(Ordering::Relaxed),
        "uptime_seconds": node.started.elapsed().as_secs(),
        "recovery": node.recovery,
        "page_hash": hash.map(|(lsn, h)| json!({"lsn": lsn, "pages": h.pages, "hash": h.hash})),
    });
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
    s
}
