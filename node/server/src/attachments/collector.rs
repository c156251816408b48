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
        // Browsers' uploads in parts that stopped arriving leave this node's disk.
        node.part_uploads.forget_idle();
        let mut previous = None;
        while node.metrics().state == ServerState::Leader && !*stopped.borrow() {
            match collect_once(&node, &limits).await {
                // A full collection: more may be due, unless it removed nothing (then the next
                // tick tries again rather than proposing the same no-op at once).
                Ok(Some(due)) if previous.as_ref() != Some(&due) => previous = Some(due),
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("could not collect unused attachments: {e}");
                    break;
                }
            }
        }
    }
}

/// What was due: the unused attachments and unclaimed blobs found, oldest first.
type Due = (Vec<kizuna_domain::model::AttachmentId>, Vec<kizuna_domain::attachments::BlobHash>);

/// Proposes one collection if anything is due; what was due when it was full (there may be
/// more than it removed).
async fn collect_once(node: &Node, limits: &Limits) -> Result<Option<Due>, String> {
    let grace_ms = u64::try_from(limits.grace.as_millis()).unwrap_or(u64::MAX);
    let before = crate::node::now_ms().saturating_sub(grace_ms);
    let due: Due = {
        let hub = node.state.hub();
        let attachments = hub.unused_attachments(before, COLLECT_AT_MOST).map_err(|e| e.to_string())?;
        (attachments, hub.unclaimed_blobs(before, COLLECT_AT_MOST).map_err(|e| e.to_string())?)
    };
    if due.0.is_empty() && due.1.is_empty() {
        return Ok(None);
    }
    let envelope = Envelope {
        idempotency_key: format!("collect/{}/{}", node.id, crate::node::now_ms()),
        proposed_at_ms: 0,
        command: LogCommand::CollectAttachments { grace_ms, origin_node: node.id },
    };
    node.propose_here(envelope).await.map_err(|e| e.to_string())?;
    Ok((due.0.len() == COLLECT_AT_MOST || due.1.len() == COLLECT_AT_MOST).then_some(due))
}
