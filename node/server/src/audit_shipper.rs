//! Ships this node's journaled patient-data reads into the replicated, hash-chained audit log
//! in batches: reads are durable on the node at once and cost no Raft round trip each.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::node::Node;
use kizuna_domain::{Command, Envelope};

/// At most this many reads per shipped batch.
const BATCH: usize = 500;

pub async fn ship(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        loop {
            let pending = match node.state.journal.pending(BATCH) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    warn!("reading the audit journal: {e}");
                    break;
                }
            };
            let (first, last, records) = pending;
            // The request id names the journal range: a retry after a failover is idempotent.
            let envelope = Envelope {
                request_id: format!("audit-{}-{first}-{last}", node.id),
                proposed_at_ms: 0,
                command: Command::AuditReads { records },
            };
            match node.write(envelope).await {
                Ok(_) => {
                    if let Err(e) = node.state.journal.shipped(first, last) {
                        warn!("trimming the audit journal: {e}");
                        break;
                    }
                }
                // No quorum now: the reads stay journaled and go with a later batch.
                Err(_) => break,
            }
        }
    }
}
