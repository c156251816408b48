//! The leader's housekeeping, run on every node and active only while it leads:
//!
//! - **learners of the topology file** that are not members yet are added (retried every tick
//!   until all are in, then once per term), so a hub described by a file comes up whole on first
//!   start — also when the first attempt meets a membership change still committing;
//! - **leader preference**: when the leader sits outside the hub's preferred regions and a voter
//!   in a preferred region is healthy (answered a heartbeat recently) and fully caught up,
//!   leadership is handed to it. A lagging or silent preferred voter is never chosen, so the
//!   preference never costs availability.
//! - **apply version**: once every member reports a build that applies a newer version of the
//!   log than the hub's active one (`kizuna_domain::APPLY_VERSION`), the hub moves to it — the
//!   end of a rolling upgrade, with no operator step.
//! - **the first data key**: once the hub applies the version of sealed state
//!   (`kizuna_domain::keyring`), the leader makes the hub's first data key, wrapped under its
//!   master key, and from that entry on every replica seals the state.

use std::sync::Arc;
use std::time::Duration;

use kizuna_domain::{Envelope, LogCommand};
use openraft::Instant as _;
use openraft::ServerState;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::HubConfig;
use crate::node::{Node, hub_node};

/// How long a freshly elected leader serves before it may hand leadership on: avoids
/// ping-ponging while a recovering region is still settling.
const SETTLE: Duration = Duration::from_secs(3);

pub async fn run(node: Arc<Node>, hub: HubConfig, mut stopped: watch::Receiver<bool>) {
    let tick = Duration::from_millis(hub.raft.heartbeat_interval_ms * 5);
    let mut learners_added_in_term = None;
    let mut leading_since: Option<(u64, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let m = node.metrics();
        if m.state != ServerState::Leader {
            leading_since = None;
            continue;
        }
        let since = match leading_since {
            Some((term, at)) if term == m.current_term => at,
            _ => {
                let now = tokio::time::Instant::now();
                leading_since = Some((m.current_term, now));
                now
            }
        };
        if learners_added_in_term != Some(m.current_term) && add_missing_learners(&node, &hub).await {
            learners_added_in_term = Some(m.current_term);
        }
        raise_apply_version(&node).await;
        make_first_data_key(&node).await;
        seal_in_steps(&node).await;
        if since.elapsed() >= SETTLE {
            prefer_region(&node, &hub, &m).await;
        }
    }
}

/// Moves the hub to the newest apply version every member's build supports, when that is newer
/// than the active one. Never while a member does not answer (it may run an older build) or
/// runs an older build: it could not apply the entries after.
async fn raise_apply_version(node: &Node) {
    let active = match node.state.apply_version() {
        Ok(active) if active < node.max_apply_version => active,
        Ok(_) => return,
        Err(e) => return warn!("cannot read the hub's apply version: {e}"),
    };
    let mut supported = node.max_apply_version;
    for member in node.cluster_status().await.members {
        match member.health {
            Ok(health) => supported = supported.min(health.max_apply_version),
            Err(_) => return,
        }
    }
    if supported <= active {
        return;
    }
    let envelope = Envelope {
        idempotency_key: format!("apply-version/{supported}"),
        proposed_at_ms: 0,
        command: LogCommand::SetApplyVersion { version: supported },
    };
    match node.propose_here(envelope).await {
        Ok(_) => {
            info!(from = active, to = supported, "every member's build applies a newer version: the hub moved to it")
        }
        Err(e) => warn!("raising the apply version to {supported}: {e}"),
    }
}

/// Gives the hub its first data key once it applies sealed state (every member then holds a
/// master key: a node without one reports the version before).
async fn make_first_data_key(node: &Node) {
    let vault = node.state.vault();
    if vault.hub_keys() > 0 || !vault.can_seal() {
        return;
    }
    match node.state.apply_version() {
        Ok(active) if active >= kizuna_domain::keyring::SEALED_STATE_APPLY_VERSION => {}
        Ok(_) => return,
        Err(e) => return warn!("cannot read the hub's apply version: {e}"),
    }
    if let Some(lacking) = node.members_lacking_my_master_key().await {
        return warn!("not making the hub's first data key yet: {lacking}");
    }
    let keys = match vault.next_keyring(false) {
        Ok(keys) => keys,
        Err(e) => return warn!("cannot make the hub's first data key: {e}"),
    };
    let envelope = Envelope {
        idempotency_key: "data-keys/first".into(),
        proposed_at_ms: 0,
        command: LogCommand::SetDataKeys { keys, origin_node: node.id },
    };
    match node.propose_here(envelope).await {
        Ok(_) => info!("the hub's state is sealed under its first data key from now on"),
        Err(e) => warn!("proposing the hub's first data key: {e}"),
    }
}

/// Steps a keeper tick proposes at most, one after the other.
const SEAL_STEPS_PER_TICK: usize = 32;

/// Proposes the steps of sealing what was written before the hub's first data key, while
/// there are some: a few per tick, each committed before the next.
async fn seal_in_steps(node: &Node) {
    for n in 0..SEAL_STEPS_PER_TICK {
        match node.state.sealing() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return warn!("cannot read whether the state is being sealed: {e}"),
        }
        let envelope = Envelope {
            idempotency_key: format!("seal-step/{}/{}/{n}", node.id, crate::node::now_ms()),
            proposed_at_ms: 0,
            command: LogCommand::SealStep,
        };
        if let Err(e) = node.propose_here(envelope).await {
            return warn!("proposing a seal step: {e}");
        }
    }
}

/// Adds the topology's learners that are not members yet; true when every one is in.
async fn add_missing_learners(node: &Node, hub: &HubConfig) -> bool {
    let membership = node.metrics().membership_config.membership().clone();
    let mut all_in = true;
    for learner in hub.nodes.iter().filter(|n| !n.voter) {
        if membership.get_node(&learner.id).is_some() {
            continue;
        }
        match node.raft.add_learner(learner.id, hub_node(learner), false).await {
            Ok(_) => info!(learner = %learner.name, "added the topology's learner"),
            Err(e) => {
                // Typically the initial membership still committing: the next tick tries again.
                warn!(learner = %learner.name, "could not add the topology's learner yet: {e}");
                all_in = false;
            }
        }
    }
    all_in
}

async fn prefer_region(node: &Node, hub: &HubConfig, m: &crate::raft::RaftMetrics) {
    if hub.hub.preferred_regions.is_empty() || hub.hub.preferred_regions.contains(&node.info.region) {
        return;
    }
    let Some(last_log) = m.last_log_index else { return };
    let membership = m.membership_config.membership();
    let fresh = Duration::from_millis(hub.raft.election_timeout_min_ms);
    let candidate = membership.voter_ids().find(|id| {
        let in_preferred = membership.get_node(id).is_some_and(|n| hub.hub.preferred_regions.contains(&n.region));
        let caught_up = m
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .is_some_and(|matched| matched.index >= last_log);
        let healthy = m
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(id).cloned().flatten())
            .is_some_and(|acked| acked.elapsed() < fresh);
        in_preferred && caught_up && healthy
    });
    if let Some(to) = candidate {
        info!(to, "handing leadership back to a preferred region");
        if let Err(e) = node.raft.trigger().transfer_leader(to).await {
            warn!("leader transfer to {to} failed: {e}");
        }
    }
}
