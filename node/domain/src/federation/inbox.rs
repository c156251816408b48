//! The destination's replicated inbox: a verified batch of an origin's stream is checked
//! against the recorded [`Inbound`] state and applied in the same replicated command, so a
//! retried or replayed batch never applies twice and a batch after a hole applies nothing.

use serde::{Deserialize, Serialize};

use super::names::HubName;
use super::stream::{Arrival, SeqRange};
use crate::view::{Change, HubView, ViewResult};

/// One message of an origin's stream, as the destination recorded it, in stream order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    pub origin: HubName,
    pub seq: u64,
    /// The opaque, versioned encoding of one outbound event of the origin.
    pub body: Vec<u8>,
    /// Apply time on the destination, ms since the Unix epoch.
    pub received_at_ms: u64,
}

/// What a batch did; `highest_applied` acknowledges everything up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    /// `applied` new messages were recorded (fewer than the batch held when it overlapped).
    Applied { applied: SeqRange, highest_applied: u64 },
    /// Everything in the batch was applied before.
    Duplicate { highest_applied: u64 },
    /// The batch starts after `highest_applied + 1`: nothing applied, the origin resends from
    /// there.
    Gap { highest_applied: u64 },
}

impl Receipt {
    pub fn highest_applied(&self) -> u64 {
        match *self {
            Receipt::Applied { highest_applied, .. }
            | Receipt::Duplicate { highest_applied }
            | Receipt::Gap { highest_applied } => highest_applied,
        }
    }
}

/// Decides a verified batch of `origin`'s stream, `batch` covering `messages` (as many as the
/// range holds): the changes that record the new tail and the stream's new state, and the
/// receipt. Pure; the caller applies the changes.
pub fn receive(
    view: &impl HubView,
    origin: &HubName,
    batch: SeqRange,
    messages: &[Vec<u8>],
    now_ms: u64,
) -> ViewResult<(Vec<Change>, Receipt)> {
    let mut stream = view.inbound(origin)?;
    let highest = stream.highest_applied();
    Ok(match stream.classify(batch) {
        Arrival::Duplicate => (Vec::new(), Receipt::Duplicate { highest_applied: highest }),
        Arrival::Gap { .. } => (Vec::new(), Receipt::Gap { highest_applied: highest }),
        Arrival::Apply { range, skip } => {
            let mut changes: Vec<Change> = messages
                .iter()
                .skip(skip as usize)
                .zip(range.first()..=range.last())
                .map(|(body, seq)| {
                    Change::InboxMessage(InboxMessage {
                        origin: origin.clone(),
                        seq,
                        body: body.clone(),
                        received_at_ms: now_ms,
                    })
                })
                .collect();
            // `classify` answered the range that continues the stream: recording it cannot fail.
            stream.record(range).expect("classify continues the stream");
            changes.push(Change::InboundStream { origin: origin.clone(), stream });
            (changes, Receipt::Applied { applied: range, highest_applied: stream.highest_applied() })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::MemHub;

    fn gunma() -> HubName {
        HubName::new("gunma").unwrap()
    }

    fn batch(first: u64, bodies: &[&str]) -> (SeqRange, Vec<Vec<u8>>) {
        let messages: Vec<Vec<u8>> = bodies.iter().map(|b| b.as_bytes().to_vec()).collect();
        (SeqRange::of_batch(first, messages.len() as u64).unwrap(), messages)
    }

    fn deliver(hub: &mut MemHub, first: u64, bodies: &[&str]) -> Receipt {
        let (range, messages) = batch(first, bodies);
        let (changes, receipt) = receive(hub, &gunma(), range, &messages, 7).unwrap();
        hub.apply(changes);
        receipt
    }

    fn inbox(hub: &MemHub) -> Vec<(u64, String)> {
        hub.inbox.values().map(|m| (m.seq, String::from_utf8(m.body.clone()).unwrap())).collect()
    }

    #[test]
    fn a_first_batch_is_recorded_in_order() {
        let mut hub = MemHub::default();
        let receipt = deliver(&mut hub, 1, &["a", "b"]);
        assert_eq!(receipt, Receipt::Applied { applied: SeqRange::of_batch(1, 2).unwrap(), highest_applied: 2 });
        assert_eq!(inbox(&hub), [(1, "a".into()), (2, "b".into())]);
        assert_eq!(hub.inbound(&gunma()).unwrap().highest_applied(), 2);
        assert_eq!(hub.inbox.values().next().unwrap().received_at_ms, 7);
    }

    #[test]
    fn an_overlapping_batch_applies_only_its_tail() {
        let mut hub = MemHub::default();
        deliver(&mut hub, 1, &["a", "b"]);
        let receipt = deliver(&mut hub, 2, &["B?", "c", "d"]);
        assert_eq!(receipt, Receipt::Applied { applied: SeqRange::of_batch(3, 2).unwrap(), highest_applied: 4 });
        assert_eq!(inbox(&hub), [(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into())]);
    }

    #[test]
    fn a_replayed_batch_changes_nothing() {
        let mut hub = MemHub::default();
        deliver(&mut hub, 1, &["a", "b"]);
        let (range, messages) = batch(1, &["a", "b"]);
        let (changes, receipt) = receive(&hub, &gunma(), range, &messages, 9).unwrap();
        assert_eq!((changes, receipt), (vec![], Receipt::Duplicate { highest_applied: 2 }));
    }

    #[test]
    fn a_batch_after_a_hole_applies_nothing() {
        let mut hub = MemHub::default();
        deliver(&mut hub, 1, &["a"]);
        let (range, messages) = batch(3, &["c"]);
        let (changes, receipt) = receive(&hub, &gunma(), range, &messages, 9).unwrap();
        assert_eq!((changes, receipt), (vec![], Receipt::Gap { highest_applied: 1 }));
        assert_eq!(receipt.highest_applied() + 1, 2, "the origin resends from 2");
    }

    #[test]
    fn streams_of_different_origins_are_independent() {
        let mut hub = MemHub::default();
        deliver(&mut hub, 1, &["a"]);
        let ibaraki = HubName::new("ibaraki").unwrap();
        let (range, messages) = batch(1, &["x"]);
        let (changes, receipt) = receive(&hub, &ibaraki, range, &messages, 9).unwrap();
        assert_eq!(receipt.highest_applied(), 1);
        hub.apply(changes);
        assert_eq!(hub.inbox.len(), 2);
        assert_eq!(hub.inbound(&gunma()).unwrap().highest_applied(), 1);
    }
}
