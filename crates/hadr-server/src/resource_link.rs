//! How a node's run drives its resource groups (docs/resources.md): the
//! primary group runs while the node is a writable primary, the standby
//! group while it is a standby. A new primary that did not hear its
//! predecessor confirm its stops (a failover, a forced takeover) waits the
//! predecessor's stop bound first; a graceful hand-over stops the old
//! primary's resources, confirmed, before the standby is told to promote
//! (`demotion`), so its successor starts at once.

use std::sync::Arc;
use std::time::Duration;

use hadr_resources::{Desire, GroupRole};
use tokio::time::Instant;
use tracing::info;

use crate::node::Node;

/// How often the node's state is looked at. Writability changes without an
/// event (a lease running out is only a time passing), so it is polled; the
/// period adds at most this much to a stop.
const POLL: Duration = Duration::from_millis(50);

/// How long after the start of this run the primary group may start.
pub fn start_delay(node: &Node) -> Duration {
    if !node.config.promoted || node.config.handed_over_by.is_some() {
        return Duration::ZERO;
    }
    // Promoted without the predecessor's word: it began stopping its
    // resources when it stopped being writable, which was before this node
    // could promote, and takes at most its stop bound. Under automatic
    // failover its lease ended at least lease_margin before the promotion
    // (docs/failover.md §Lease rules), so that much has passed already.
    let bound = node.resources.stop_bound(GroupRole::Primary);
    if node.config.automatic_failover() && node.config.handed_over_by.is_none() {
        bound.saturating_sub(node.config.lease_margin.0)
    } else {
        bound
    }
}

/// Follow the node's role until the run ends; then ask every group to stop.
pub async fn follow(node: Arc<Node>) {
    let delay = start_delay(&node);
    let not_before = Instant::now() + delay;
    if !delay.is_zero() && node.resources.has(GroupRole::Primary) {
        let why = format!(
            "promoted without the old primary's confirmation that its resources stopped: starting them after its stop bound ({} ms)",
            delay.as_millis()
        );
        info!("{why}");
        node.resources.set_hold(Some(why));
    }
    let mut tick = tokio::time::interval(POLL);
    let mut shutdown = node.shutdown.clone();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let primary = !node.is_standby()
            && node.write_refusal().is_none()
            && Instant::now() >= not_before
            && node.files_ready.load(std::sync::atomic::Ordering::SeqCst);
        if primary {
            node.resources.set_hold(None);
        } else if Instant::now() >= not_before
            && !node.is_standby()
            && !node.files_ready.load(std::sync::atomic::Ordering::SeqCst)
        {
            node.resources.set_hold(Some(
                "writing the synced files out before the resources start (sync_paths)".into(),
            ));
        }
        node.resources.set_desire(Desire {
            primary,
            standby: node.is_standby(),
        });
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
    }
    node.resources.set_desire(Desire::default());
}
