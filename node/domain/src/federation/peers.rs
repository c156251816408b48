//! Operator controls of the streams to peer hubs: a paused peer's messages keep queueing in
//! the replicated outbox, and the leader's sender sends it nothing until it is resumed.
//!
//! The pause is replicated (not per-node configuration), so it holds across a leader change.
//! Which peers exist is the hub's configuration, not its state: the API checks the name
//! against the configured peers before proposing.

use super::names::HubName;
use crate::authz;
use crate::error::DomainResult;
use crate::kernel::{Effects, Outcome};
use crate::model::AccountId;
use crate::view::{Change, HubView};

/// Pauses (`paused`) or resumes sending to `peer`. Operators only. Setting the state it
/// already has changes nothing and is not an error, so a retried command is harmless.
pub fn set_paused(view: &impl HubView, actor: AccountId, peer: HubName, paused: bool) -> DomainResult<Effects> {
    authz::operator(view, actor)?;
    if view.federation_paused(&peer)? == paused {
        return Ok(Effects::new(Outcome::Done, vec![]));
    }
    Ok(Effects::new(Outcome::Done, vec![Change::FederationPaused { peer, paused }]))
}
