//! The leader's collector of unused attachments: every `collect_every` it proposes
//! `CollectAttachments` when something has been unused for longer than the grace period, and
//! again at once while a collection was full (each removes at most
//! `kizuna_domain::attachments::COLLECT_AT_MOST` of a kind, to keep one apply short).

use std::sync::Arc;

use kizuna_domain::attachments::COLLECT_AT_MOST;
use kizuna_domain::{Envelope, HubView, LogCommand};
use openraft::ServerState;
use tokio::sync::watch;

use super::Limits;
use crate::node::Node;

pub async fn run(node: Arc<Node>, limits: Limits, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(limits.collect_every) => {}
        }
        while node.metrics().state == ServerState::Leader && !*stopped.borrow() {
            match collect_once(&node, &limits).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("could not collect unused attachments: {e}");
                    break;
                }
            }
        }
    }
}

/// Proposes one collection if anything is due; true when there may be more than it removed.
async fn collect_once(node: &Node, limits: &Limits) -> Result<bool, String> {
    let grace_ms = u64::try_from(limits.grace.as_millis()).unwrap_or(u64::MAX);
    let before = crate::node::now_ms().saturating_sub(grace_ms);
    let due = {
        let hub = node.state.hub();
        let attachments = hub.unused_attachments(before, COLLECT_AT_MOST).map_err(|e| e.to_string())?.len();
        let blobs = hub.unclaimed_blobs(before, COLLECT_AT_MOST).map_err(|e| e.to_string())?.len();
        attachments.max(blobs)
    };
    if due == 0 {
        return Ok(false);
    }
    let envelope = Envelope {
        idempotency_key: format!("collect/{}/{}", node.id, crate::node::now_ms()),
        proposed_at_ms: 0,
        command: LogCommand::CollectAttachments { grace_ms, origin_node: node.id },
    };
    node.propose_here(envelope).await.map_err(|e| e.to_string())?;
    Ok(due == COLLECT_AT_MOST)
}
