//! The destination's replicated inbox: a verified batch of an origin's stream is checked
//! against the recorded [`Inbound`] state and applied in the same replicated command, so a
//! retried or replayed batch never applies twice and a batch after a hole applies nothing.

use serde::{Deserialize, Serialize};

use super::names::HubName;
use super::receive::{self, Received};
use super::stream::{Arrival, SeqRange};
use super::wire::{Message, WireError};
use crate::audit::AuditRecord;
use crate::error::DomainError;
use crate::events::Raised;
use crate::kernel::{Ctx, Effects};
use crate::settle::{Transfer, settle};
use crate::view::{Change, HubState, HubView, ViewResult};

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
    /// Its next message is of a wire version this build does not read: nothing applied, the
    /// origin keeps it queued and retries (with backoff) until this hub is upgraded.
    Deferred { highest_applied: u64 },
}

impl Receipt {
    /// Whether the batch applied any message (a duplicate, a gap or a deferral applied none).
    pub fn applied_something(&self) -> bool {
        matches!(self, Receipt::Applied { .. })
    }

    pub fn highest_applied(&self) -> u64 {
        match *self {
            Receipt::Applied { highest_applied, .. }
            | Receipt::Duplicate { highest_applied }
            | Receipt::Gap { highest_applied }
            | Receipt::Deferred { highest_applied } => highest_applied,
        }
    }
}

/// The most messages one log entry applies: each may raise a live event, and one entry has
/// [`crate::events::EVENTS_PER_ENTRY`] event cursors. A longer batch applies its first ones;
/// the receipt acknowledges only those and the origin sends the rest next.
pub const MAX_APPLIED_PER_ENTRY: u64 = crate::events::EVENTS_PER_ENTRY;

/// The first `n` numbers of `range`.
fn at_most(range: SeqRange, n: u64) -> SeqRange {
    // `n` is at least 1, so the range stays non-empty and within `range`.
    SeqRange::of_batch(range.first(), range.len().min(n.max(1))).unwrap_or(range)
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
            let range = at_most(range, MAX_APPLIED_PER_ENTRY);
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
            changes.push(Change::HeardFrom { origin: origin.clone(), at_ms: now_ms });
            (changes, Receipt::Applied { applied: range, highest_applied: stream.highest_applied() })
        }
    })
}

/// A verified batch as its log entry carries it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub origin: &'a HubName,
    pub range: SeqRange,
    pub messages: &'a [Vec<u8>],
    pub key_id: &'a str,
    pub signature: &'a [u8],
    /// The node that received and proposed it.
    pub node: u64,
}

/// What applying a batch did: the receipt, the events its messages raised (in order) and the
/// audit entries it leaves.
#[derive(Debug)]
pub struct BatchApplied {
    pub receipt: Receipt,
    pub events: Vec<Raised>,
    pub audit: Vec<AuditRecord>,
}

/// The most live events one message may raise (a request answered raises the request's event
/// and, opening the patient's team, a membership event).
pub const MAX_EVENTS_PER_MESSAGE: usize = 2;

/// Applies a verified batch, message by message in stream order: each new message is recorded
/// and decided ([`receive::decide`]) and settled, while the entry's event cursors last (at
/// least [`crate::events::EVENTS_PER_ENTRY`] / [`MAX_EVENTS_PER_MESSAGE`] messages, up to
/// [`MAX_APPLIED_PER_ENTRY`]); the receipt acknowledges what was applied and the origin sends
/// the rest next. A replay or a retry after a lost reply never applies twice. A message of a
/// newer wire version stops the batch before it, unapplied (the origin keeps it queued until
/// this hub is upgraded); a malformed or refused message is audited and skipped, so one bad
/// message never blocks a peer. Every batch that applied something leaves an audit entry
/// (patient data crossed hubs) naming the origin, the range, the key id and the signature.
pub fn apply_batch(state: &mut impl HubState, ctx: Ctx, batch: Batch<'_>) -> ViewResult<BatchApplied> {
    let stream = state.inbound(batch.origin)?;
    let highest = stream.highest_applied();
    let (range, skip) = match stream.classify(batch.range) {
        Arrival::Duplicate => return Ok(BatchApplied::nothing(Receipt::Duplicate { highest_applied: highest })),
        Arrival::Gap { .. } => return Ok(BatchApplied::nothing(Receipt::Gap { highest_applied: highest })),
        Arrival::Apply { range, skip } => (range, skip as usize),
    };
    let mut applied = BatchApplied::nothing(Receipt::Deferred { highest_applied: highest });
    let mut last = None;
    for (index, (seq, body)) in (range.first()..=range.last()).zip(&batch.messages[skip..]).enumerate() {
        if index as u64 >= MAX_APPLIED_PER_ENTRY
            || applied.events.len() + MAX_EVENTS_PER_MESSAGE > crate::events::EVENTS_PER_ENTRY as usize
        {
            break;
        }
        let message = match Message::decode(body) {
            Err(WireError::UnknownVersion(version)) => {
                let what = format!(
                    "federation: message {seq} from {} is of wire version {version}, newer than this build reads: kept queued there",
                    batch.origin
                );
                applied.audit.push(hub_record(ctx, batch, what));
                break;
            }
            decoded => decoded,
        };
        let (changes, _) = receive(
            state,
            batch.origin,
            SeqRange::of_batch(seq, 1).map_err(stream_fault)?,
            std::slice::from_ref(body),
            ctx.now_ms,
        )?;
        state.apply(changes);
        apply_message(state, ctx, (index as u64, seq), batch, message, &mut applied)?;
        last = Some(seq);
    }
    if let Some(last) = last {
        let done = SeqRange::of_batch(range.first(), last - range.first() + 1).map_err(stream_fault)?;
        applied.audit.insert(0, hub_record(ctx, batch, received_what(batch, done)));
        applied.receipt = Receipt::Applied { applied: done, highest_applied: last };
    }
    Ok(applied)
}

/// A range this code built from the stream's own numbers that is not a range: a broken state.
fn stream_fault(e: super::stream::StreamError) -> crate::view::ViewError {
    crate::view::ViewError(format!("federation stream: {e}"))
}

impl BatchApplied {
    fn nothing(receipt: Receipt) -> Self {
        BatchApplied { receipt, events: Vec::new(), audit: Vec::new() }
    }
}

fn received_what(batch: Batch<'_>, applied: SeqRange) -> String {
    format!(
        "federation: received {}..={} from {} (batch {}..={}, key {}, signature {})",
        applied.first(),
        applied.last(),
        batch.origin,
        batch.range.first(),
        batch.range.last(),
        batch.key_id,
        crate::hex(batch.signature)
    )
}

/// Decides and settles message `seq` (the `index`-th this entry applies).
fn apply_message(
    state: &mut impl HubState,
    ctx: Ctx,
    (index, seq): (u64, u64),
    batch: Batch<'_>,
    message: Result<Message, WireError>,
    applied: &mut BatchApplied,
) -> ViewResult<()> {
    let origin = batch.origin;
    let message = match message {
        Ok(message) => message,
        Err(e) => {
            applied.audit.push(hub_record(
                ctx,
                batch,
                format!("federation: message {seq} from {origin} unreadable: {e}"),
            ));
            return Ok(());
        }
    };
    let received = match receive::decide(state, ctx, index, origin, message) {
        Ok(received) => received,
        Err(DomainError::Unreadable(fault)) => return Err(fault),
        Err(e) => Received { effects: Effects::none(), actor: None, refused: Some(e.to_string()) },
    };
    if let Some(reason) = &received.refused {
        applied.audit.push(hub_record(
            ctx,
            batch,
            format!("federation: refused message {seq} from {origin}: {reason}"),
        ));
    }
    if let (Some(account), Some(trail)) = (received.actor, &received.effects.audit) {
        applied.audit.push(AuditRecord {
            account,
            patient: trail.patient,
            room: trail.room,
            ..hub_record(ctx, batch, format!("{} (from hub {origin}, message {seq})", trail.what))
        });
    }
    let settled = settle(state, ctx.now_ms, received.effects)?;
    applied.events.extend(settled.events);
    applied.audit.extend(settled.transfers.into_iter().map(|t| transfer_record(ctx, batch.node, t)));
    Ok(())
}

/// The audit entry of patient data sent to another hub, by the hub itself (account 0),
/// through `node`.
pub fn transfer_record(ctx: Ctx, node: u64, t: Transfer) -> AuditRecord {
    AuditRecord { patient: Some(t.patient), room: Some(t.room), ..AuditRecord::by_hub(ctx.now_ms, node, t.what) }
}

/// An audit entry of the hub itself about federation traffic of `batch`.
fn hub_record(ctx: Ctx, batch: Batch<'_>, what: String) -> AuditRecord {
    AuditRecord::by_hub(ctx.now_ms, batch.node, what)
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
    fn a_long_batch_applies_its_head_and_acknowledges_only_that() {
        let mut hub = MemHub::default();
        let bodies: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let receipt = deliver(&mut hub, 1, &bodies);
        assert_eq!(receipt.highest_applied(), MAX_APPLIED_PER_ENTRY);
        let receipt = deliver(&mut hub, 1, &bodies);
        assert_eq!(receipt.highest_applied(), 20, "the resent batch applies the rest");
        assert_eq!(inbox(&hub).len(), 20);
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
