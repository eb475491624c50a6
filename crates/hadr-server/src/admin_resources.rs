//! The admin API's resource endpoints (docs/resources.md §Status and
//! control): the resources' section of `/status`, their lines in
//! `/metrics`, and `POST /resources/NAME/restart|disable|enable`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hadr_admin_api as api;
use hadr_resources::manager::Op;
use hadr_resources::ManagerError;

use crate::node::Node;

/// The resources' section of `/status` (None: none configured).
pub fn view(node: &Node) -> Option<api::ResourcesStatus> {
    let list = node.resources.status();
    if list.is_empty() {
        return None;
    }
    Some(api::ResourcesStatus {
        resources: list
            .into_iter()
            .map(|r| api::ResourceView {
                name: r.name,
                kind: r.kind,
                role: r.role,
                state: r.state,
                since_micros: r.since_micros,
                failures: r.failures,
                disabled: r.disabled,
                output: r.output,
            })
            .collect(),
        blocked: node.resources.blocked(),
        hold: node.resources.hold(),
        takeover_reason: node.resources.takeover_reason(),
    })
}

/// Prometheus lines: one state gauge per resource (1 for its current
/// state), and its failures in this term.
pub fn metrics(node: &Node, out: &mut String) {
    let list = node.resources.status();
    if list.is_empty() {
        return;
    }
    out.push_str("# HELP hadr_resource_state The state of each resource (1: the current one).\n# TYPE hadr_resource_state gauge\n");
    for r in &list {
        for st in [
            "offline",
            "starting",
            "online",
            "stopping",
            "killing",
            "failed",
            "stop-failed",
        ] {
            let _ = writeln!(
                out,
                "hadr_resource_state{{resource=\"{}\",state=\"{st}\"}} {}",
                r.name,
                u8::from(r.state == st)
            );
        }
    }
    out.push_str("# HELP hadr_resource_failures Failures of each resource in this term (start or monitor).\n# TYPE hadr_resource_failures gauge\n");
    for r in &list {
        let _ = writeln!(
            out,
            "hadr_resource_failures{{resource=\"{}\"}} {}",
            r.name, r.failures
        );
    }
    let _ = writeln!(
        out,
        "# HELP hadr_resources_blocked 1 while a resource's stop is not confirmed (the node accepts no writes).\n# TYPE hadr_resources_blocked gauge\nhadr_resources_blocked {}",
        u8::from(node.resources.blocked().is_some())
    );
}

/// `POST /resources/NAME/restart|disable|enable`.
pub async fn op(
    State(node): State<Arc<Node>>,
    Path((name, op)): Path<(String, String)>,
) -> Response {
    let op = match op.as_str() {
        "restart" => Op::Restart,
        "disable" => Op::Disable,
        "enable" => Op::Enable,
        other => {
            return (
                StatusCode::NOT_FOUND,
                format!("unknown resource operation {other:?} (restart, disable, enable)\n"),
            )
                .into_response()
        }
    };
    match node.resources.op(&name, op).await {
        Ok(()) => {
            tracing::info!(resource = %name, ?op, "resource operation asked by an operator");
            (StatusCode::OK, "ok\n").into_response()
        }
        Err(e @ ManagerError::Unknown(_)) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
