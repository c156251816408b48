//! The audit shipper: a background worker that moves this node's read journal (patient-data
//! reads, `kizuna_store::ReadJournal`, local to the node) into the replicated audit chain
//! (`kizuna_domain::collab::audit`) in batches: reads are durable on the node at once and cost
//! no Raft round trip each. Operators read the chain through the audit service (`api/audit.rs`,
//! `AuditService`), not through this module.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::node::Node;
use kizuna_domain::{Command, Envelope};

/// At most this many reads per shipped batch.
const BATCH: usize = 500;

/// Every 500 ms, proposes what the read journal holds as `AuditReads` commands and trims what
/// the chain accepted; runs until `stopped`.
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
                    warn!("reading the journal of reads: {e}");
                    break;
                }
            };
            let (first, last, records) = pending;
            // The idempotency key names the journal range: a retry after a failover is applied once.
            let envelope = Envelope {
                request_id: format!("audit-{}-{first}-{last}", node.id),
                proposed_at_ms: 0,
                command: Command::AuditReads { records },
            };
            match node.write(envelope).await {
                Ok(_) => {
                    if let Err(e) = node.state.journal.shipped(first, last) {
                        warn!("trimming the journal of reads: {e}");
                        break;
                    }
                }
                // No quorum now: the reads stay journaled and go with a later batch.
                Err(_) => break,
            }
        }
    }
}
