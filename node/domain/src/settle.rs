//! Persisting one decision, in the one order every command and every federated message
//! follows: its changes; then what other hubs must hear of it — the fan-out of its rooms'
//! changes first, then its own messages — into the replicated outbox, each at the next
//! sequence of its destination's stream; then the e-mail notices its posts and reads raise or
//! drop (`notify::enqueue`). The audit entries and the events' cursors are the caller's (they
//! depend on the log entry, not on the decision).

use super::audit::patient_of;
use super::events::Raised;
use super::federation::{HubName, Message, home, outbox};
use super::kernel::{Effects, Outcome, Outgoing};
use super::model::{PatientId, RoomId};
use super::notify;
use super::view::{HubState, HubView, ViewResult};

/// What settling a decision gave: its outcome, the events it raised (in order) and the patient
/// data it sent to other hubs.
#[derive(Debug)]
pub struct Settled {
    pub outcome: Outcome,
    pub events: Vec<Raised>,
    pub transfers: Vec<Transfer>,
}

/// Patient data queued for another hub: the audit chain records each transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub to: HubName,
    pub patient: PatientId,
    pub room: RoomId,
    pub what: String,
}

/// Applies `effects` to `state`.
pub fn settle(state: &mut impl HubState, now_ms: u64, effects: Effects) -> ViewResult<Settled> {
    let before = home::hubs_before(state, &effects.events)?;
    state.apply(effects.changes);
    let mut outbound = home::fan_out(state, &effects.events, &before)?;
    outbound.extend(effects.outbound);
    let transfers = transfers(state, &outbound)?;
    let queued = outbox::enqueue(state, now_ms, outbound)?;
    state.apply(queued);
    // E-mail notices of the posts and reads it raised, in the same apply (see `notify`).
    let notices = notify::enqueue(state, now_ms, &effects.events)?;
    state.apply(notices);
    Ok(Settled { outcome: effects.outcome, events: effects.events, transfers })
}

/// The messages among `outbound` that carry a patient's data (a patient team's or sub-room's
/// members or posts).
fn transfers(view: &impl HubView, outbound: &[Outgoing]) -> ViewResult<Vec<Transfer>> {
    let mut out = Vec::new();
    for Outgoing { to, message } in outbound {
        let (room, what) = match message {
            Message::Room(copy) => (copy.room, format!("federation: the room's members queued for {to}")),
            Message::Post(copy) => (copy.room, format!("federation: post #{} queued for {to}", copy.seq)),
            Message::PostWithFiles { post, files } => {
                let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
                let what = format!("federation: post #{} with files {names:?} queued for {to}", post.seq);
                (post.room, what)
            }
            _ => continue,
        };
        if let Some(patient) = patient_of(view, room)? {
            out.push(Transfer { to: to.clone(), patient, room, what });
        }
    }
    Ok(out)
}
