//! Persisting one decision, in the one order every command and every federated message
//! follows: its changes; then what other hubs must hear of it — the fan-out of its rooms'
//! changes first, then its own messages — into the replicated outbox, each at the next
//! sequence of its destination's stream. The audit entry and the events' cursors are the
//! caller's (they depend on the log entry, not on the decision).

use super::events::Raised;
use super::federation::{home, outbox};
use super::kernel::{Effects, Outcome};
use super::view::{HubState, ViewResult};

/// Applies `effects` to `state`; returns the outcome and the events raised, in order.
pub fn settle(state: &mut impl HubState, now_ms: u64, effects: Effects) -> ViewResult<(Outcome, Vec<Raised>)> {
    let before = home::hubs_before(state, &effects.events)?;
    state.apply(effects.changes);
    let mut outbound = home::fan_out(state, &effects.events, &before)?;
    outbound.extend(effects.outbound);
    let queued = outbox::enqueue(state, now_ms, outbound)?;
    state.apply(queued);
    Ok((effects.outcome, effects.events))
}
