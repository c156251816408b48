//! The disaster shipper: moves the safety checks and facility statuses recorded on this node
//! (`kizuna_store::ObservationJournal`, fsynced on the node, also while it is cut off from the
//! quorum) into the replicated log, in batches, and forgets each batch once it is decided.
//! Apply checks every observation again and applies each once, whatever ships it how often
//! (`kizuna_domain::disaster::observe::record`): the disaster service ships a new record at once
//! when it can, this worker ships whatever is left (after a cut, a restart, a lost reply).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::node::{Node, NodeError};
use kizuna_domain::disaster::Observation;
use kizuna_domain::disaster::observe::MAX_PER_ENTRY;
use kizuna_domain::{CommandResult, Envelope, LogCommand};

/// How often the journal is looked at while the hub is reachable.
const EVERY: Duration = Duration::from_millis(500);
/// The longest wait after a failure (no quorum, an unreadable journal), doubling from [`EVERY`].
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Ships what the journal holds, oldest first, until it is empty or the hub cannot take it,
/// every [`EVERY`] (backing off after failures); runs until `stopped`.
pub async fn run(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    let mut wait = EVERY;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match ship_all(&node).await {
            Ok(()) => EVERY,
            // No quorum now: the records stay journaled and their users see them pending.
            Err(e) if e.is_quorum_unreachable() => {
                tracing::debug!("observations stay journaled for now: {e}");
                (wait * 2).min(BACKOFF_MAX)
            }
            Err(e) => {
                error!("shipping the journal of safety checks and facility statuses: {e}");
                (wait * 2).min(BACKOFF_MAX)
            }
        };
    }
}

/// Ships the whole journal, a batch at a time.
async fn ship_all(node: &Node) -> Result<(), NodeError> {
    loop {
        let Some((first, last, observations)) = node.state.observations.pending(MAX_PER_ENTRY)? else { return Ok(()) };
        let count = observations.len();
        if let CommandResult::Observed { applied, duplicates, refused, .. } =
            ship(node, (first, last), observations).await?
        {
            info!(count, applied, duplicates, refused, "observations shipped into the log");
        }
    }
}

/// Proposes the journaled observations `first..=last` and, once the log decided them, forgets
/// them: the result. Any other answer (the hub is being upgraded) leaves them journaled.
pub async fn ship(
    node: &Node,
    (first, last): (u64, u64),
    observations: Vec<Observation>,
) -> Result<CommandResult, NodeError> {
    let envelope = Envelope {
        idempotency_key: batch_key(node.id, &observations),
        proposed_at_ms: 0,
        command: LogCommand::Observations { observations, origin_node: node.id },
    };
    let result = node.write(envelope).await?.result;
    if !matches!(result, CommandResult::Observed { .. }) {
        return Err(NodeError::Raft(format!("the log did not take the observations: {result:?}")));
    }
    if let Err(e) = node.state.observations.shipped(first, last) {
        // Shipped again later: applied once all the same.
        warn!("forgetting shipped observations: {e}");
    }
    Ok(result)
}

/// The idempotency key of a batch names its content (the observations' ids): a retry of the same
/// batch is answered from the first result, a different batch never is, even from a journal
/// whose sequence numbers began again.
fn batch_key(node: u64, observations: &[Observation]) -> String {
    let digest = observations.iter().fold(Sha256::new(), |d, o| d.chain_update(o.id.0)).finalize();
    format!("observations/{node}/{}", kizuna_domain::hex(&digest[..16]))
}
