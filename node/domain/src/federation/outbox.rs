//! The origin's replicated outbox: messages a command decided to send enter it in the same
//! apply, each at the next sequence of the stream to its destination, so a leader change never
//! reuses or skips a number and nothing acknowledged to a user is lost with a region. The
//! leader's sender reads it in order; a destination's acknowledgement prunes it.

use serde::{Deserialize, Serialize};

use super::names::HubName;
use super::stream::StreamError;
use super::wire::RoomWrite;
use crate::kernel::Outgoing;
use crate::model::{AccountId, RoomId};
use crate::view::{Change, HubView, ViewResult};

/// One queued message of the stream to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub to: HubName,
    pub seq: u64,
    /// [`super::Message::encode`]d.
    pub body: Vec<u8>,
    /// Apply time of the command that queued it, ms since the Unix epoch.
    pub queued_at_ms: u64,
}

/// A local member's write into a copy of another hub's room, until the home hub answers: the
/// author sees it as "sending" (or, once refused, with the home hub's reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The log index of the command that queued it; the home hub answers with it.
    pub ticket: u64,
    /// The local copy.
    pub room: RoomId,
    pub author: AccountId,
    pub write: RoomWrite,
    pub queued_at_ms: u64,
    /// The home hub's reason, once it refused the write.
    pub refused: Option<String>,
}

/// The changes that queue `outgoing`, in order, each at the next sequence of its destination's
/// stream.
pub fn enqueue(view: &impl HubView, now_ms: u64, outgoing: Vec<Outgoing>) -> ViewResult<Vec<Change>> {
    let mut streams = std::collections::BTreeMap::new();
    let mut changes = Vec::new();
    for Outgoing { to, message } in outgoing {
        let stream = match streams.entry(to.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(view.outbound(&to)?),
        };
        // 2^64 messages to one hub never happen; a stream that could not take one more would
        // be a corrupted state, and the message is then not queued rather than reusing a seq.
        let Ok(range) = stream.assign(1) else { continue };
        changes.push(Change::Outboxed(OutboxMessage {
            to,
            seq: range.first(),
            body: message.encode(),
            queued_at_ms: now_ms,
        }));
    }
    changes.extend(streams.into_iter().map(|(to, stream)| Change::OutboundStream { to, stream }));
    Ok(changes)
}

/// The changes once `to` reported it applied everything up to `highest_applied`: the stream
/// records it and those messages leave the outbox. An older acknowledgement changes nothing.
pub fn acknowledge(
    view: &impl HubView,
    to: &HubName,
    highest_applied: u64,
) -> ViewResult<Result<Vec<Change>, StreamError>> {
    let mut stream = view.outbound(to)?;
    if highest_applied <= stream.acknowledged() {
        return Ok(Ok(Vec::new()));
    }
    if let Err(e) = stream.acknowledge(highest_applied) {
        return Ok(Err(e));
    }
    Ok(Ok(vec![
        Change::OutboundStream { to: to.clone(), stream },
        Change::OutboxAcked { to: to.clone(), up_to: highest_applied },
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::Message;
    use crate::view::MemHub;

    fn hub(name: &str) -> HubName {
        HubName::new(name).unwrap()
    }

    fn accepted(ticket: u64) -> Message {
        Message::Accepted { ticket, seq: None }
    }

    fn send(view: &mut MemHub, to: &str, tickets: &[u64]) {
        let out = tickets.iter().map(|t| Outgoing { to: hub(to), message: accepted(*t) }).collect();
        let changes = enqueue(view, 5, out).unwrap();
        view.apply(changes);
    }

    #[test]
    fn each_destination_numbers_its_own_stream_across_commands() {
        let mut view = MemHub::default();
        send(&mut view, "gunma", &[1, 2]);
        send(&mut view, "ibaraki", &[3]);
        send(&mut view, "gunma", &[4]);
        let seqs: Vec<(String, u64)> = view.outbox.keys().map(|(h, s)| (h.to_string(), *s)).collect();
        assert_eq!(seqs, [("gunma".into(), 1), ("gunma".into(), 2), ("gunma".into(), 3), ("ibaraki".into(), 1)]);
        let third = &view.outbox[&(hub("gunma"), 3)];
        assert_eq!(Message::decode(&third.body), Ok(accepted(4)));
        assert_eq!(view.outbound(&hub("gunma")).unwrap().last_assigned(), 3);
    }

    #[test]
    fn an_acknowledgement_prunes_and_never_goes_back() {
        let mut view = MemHub::default();
        send(&mut view, "gunma", &[1, 2, 3]);
        let changes = acknowledge(&view, &hub("gunma"), 2).unwrap().unwrap();
        view.apply(changes);
        assert_eq!(view.outbox.keys().map(|(_, s)| *s).collect::<Vec<_>>(), [3]);
        assert_eq!(acknowledge(&view, &hub("gunma"), 1).unwrap(), Ok(vec![]));
        assert!(acknowledge(&view, &hub("gunma"), 9).unwrap().is_err(), "beyond what was assigned");
    }
}
