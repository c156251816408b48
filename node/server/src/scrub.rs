//! Each node scrubs its files once the hub's state is sealed (why: `kizuna_store`'s
//! `scrub.rs`): when it has a snapshot file, it snapshots the sealed state, which replaces it;
//! when its log begins with entries written before its own key existed, it purges them up to
//! that snapshot; then it has the store compact every column family. A step that fails (a log purge
//! waiting for a follower, a node catching up) is tried again later.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::node::Node;

/// How often a node looks whether it has to scrub.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Sealing ends at the same entry on every node: each waits this long times its place (by id)
/// first, so that the nodes do not all snapshot and compact at once.
const STAGGER: Duration = Duration::from_secs(5);
/// After a failed attempt the next waits twice as long, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Scrubs this node once it is due; runs until `stopped` or until it scrubbed.
pub async fn run(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    let mut wait = CHECK_EVERY;
    let mut staggered = false;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let plan = match node.state.scrub_due() {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                wait = CHECK_EVERY;
                continue;
            }
            Err(e) => {
                warn!("whether this node has to scrub its files does not read: {e}");
                wait = CHECK_EVERY;
                continue;
            }
        };
        if !staggered {
            staggered = true;
            wait = STAGGER * (node.id % 6) as u32;
            continue;
        }
        match scrub(&node, plan).await {
            Ok(snapshot_index) => {
                info!(
                    ?snapshot_index,
                    "scrubbed: this node's files hold nothing written before the hub sealed its state"
                );
                return;
            }
            Err(why) => {
                wait = (wait.max(CHECK_EVERY) * 2).min(MAX_BACKOFF);
                warn!(retry_in = ?wait, "scrubbing this node's files is postponed: {why}");
            }
        }
    }
}

/// The snapshot and log purge the plan asks for, then the compaction; the snapshot's index
/// when one was made.
async fn scrub(node: &Node, plan: kizuna_store::ScrubPlan) -> Result<Option<u64>, String> {
    let snapshot_index = match plan.resnapshot {
        true => Some(node.snapshot_now(plan.purge_log).await.map_err(|e| e.to_string())?.snapshot_index),
        false => None,
    };
    let state = node.state.clone();
    tokio::task::spawn_blocking(move || state.compact_and_mark_scrubbed())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("compacting: {e}"))?;
    Ok(snapshot_index)
}
