//! The node's live events, handed to its event streams by one task: once every stream knows the
//! rooms it may read, a post goes to its room's readers alone (`audience.rs`), not to every
//! stream. On a node with thousands of streams each post then wakes its room's readers only,
//! where a broadcast channel woke every stream for every event (docs/benchmarks.md, "Fan-out to
//! 10,000 live subscribers" and "Fan-out: streams indexed by room").
//!
//! A stream's knowledge of its access lives in the node's [`Audience`], which the task reads:
//! the task passes a stream over only when that knowledge says "not visible", and the stream
//! decides every event it is handed as before (knowledge, or a read of the state). A stream that
//! falls behind (its inbox full) is told so and catches up from the stored events, as a
//! broadcast receiver that lagged did.

mod audience;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use audience::Learnt;
use audience::{Audience, StreamId};
use kizuna_domain::events::Event;
use kizuna_store::StateReader;
use tokio::sync::{Notify, broadcast, mpsc, watch};

/// Events a stream may have waiting before it counts as fallen behind.
const INBOX: usize = 256;

/// One stream's place in the hand-out.
struct Subscriber {
    inbox: mpsc::Sender<Event>,
    /// Notified when an event did not fit in the inbox: the stream catches up from the store.
    /// (The inbox's sender is the hand-out's alone, so that clearing the hand-out ends the
    /// stream's wait.)
    lagged: Arc<Notify>,
}

impl Subscriber {
    fn hand(&self, e: &Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inbox.try_send(e.clone()) {
            self.lagged.notify_one();
        }
    }
}

/// The node's streams and the task that hands them the events.
pub struct LiveEvents {
    state: StateReader,
    streams: Arc<Streams>,
}

impl LiveEvents {
    /// Starts handing out `state`'s events until the node stops.
    pub fn start(state: StateReader, stopping: watch::Receiver<bool>) -> Arc<Self> {
        let events = state.subscribe();
        let streams = Arc::new(Streams::following(state.access_log().clone()));
        let live = Arc::new(LiveEvents { state, streams });
        tokio::spawn(live.clone().hand_out(events, stopping));
        live
    }

    /// How many streams this node serves now.
    pub fn count(&self) -> usize {
        self.streams.handout().subscribers.len()
    }

    /// A new stream's subscription: it receives every event applied from now on that it may
    /// need (take it before reading the stored events, so nothing falls between the two).
    pub fn subscribe(&self) -> Subscription {
        self.streams.subscribe()
    }

    async fn hand_out(self: Arc<Self>, mut events: broadcast::Receiver<Event>, mut stopping: watch::Receiver<bool>) {
        use broadcast::error::RecvError;
        // However this task ends (the node stops, or a panic), every stream's wait ends and
        // no new stream waits on it.
        let _closes = CloseOnDrop(self.streams.clone());
        loop {
            let received = tokio::select! {
                received = events.recv() => received,
                _ = stopping.wait_for(|s| *s) => break,
            };
            match received {
                Ok(e) => self.streams.offer(&e, self.state.access_log().count(), crate::node::now_ms()),
                // This task fell behind the node's apply: every stream catches up from the store.
                Err(RecvError::Lagged(_)) => self.streams.lagged(),
                Err(RecvError::Closed) => break,
            }
        }
    }
}

/// Closes the hand-out when dropped.
struct CloseOnDrop(Arc<Streams>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The streams' places, by subscription, and what they know of their access.
#[derive(Default)]
struct Streams {
    handout: Mutex<Handout>,
    next_id: AtomicU64,
    /// Nothing hands out events any more (set under the hand-out's lock).
    closed: AtomicBool,
}

/// Under one lock: whether a room's index holds depends on how many streams there are.
#[derive(Default)]
struct Handout {
    subscribers: HashMap<StreamId, Subscriber>,
    audience: Audience,
}

impl Streams {
    /// Streams whose knowledge follows the access changes of `log`.
    fn following(log: kizuna_store::AccessLog) -> Self {
        let handout = Handout { subscribers: HashMap::new(), audience: Audience::following(log) };
        Streams { handout: Mutex::new(handout), ..Streams::default() }
    }

    fn handout(&self) -> MutexGuard<'_, Handout> {
        // Each operation completes or does nothing: a panic leaves it consistent.
        self.handout.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribe(self: &Arc<Self>) -> Subscription {
        let (inbox, events) = mpsc::channel(INBOX);
        let lagged = Arc::new(Notify::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut handout = self.handout();
        // Closed: the inbox's sender is dropped here, and the stream's first wait ends.
        if !self.closed.load(Ordering::Acquire) {
            handout.subscribers.insert(id, Subscriber { inbox, lagged: lagged.clone() });
        }
        drop(handout);
        Subscription { streams: self.clone(), id, lagged, events }
    }

    /// Ends every stream's wait (dropping the inboxes' senders), and any later stream's.
    fn close(&self) {
        let mut handout = self.handout();
        self.closed.store(true, Ordering::Release);
        handout.subscribers.clear();
    }

    /// Hands `e` to every stream that may need it (`access_now`: the count of the node's `AccessLog`):
    /// its room's readers once every stream knows the room, else every stream not known to be
    /// an outsider.
    fn offer(&self, e: &Event, access_now: u64, now_ms: u64) {
        let mut handout = self.handout();
        handout.audience.hold_at(access_now, now_ms);
        let Handout { subscribers, audience } = &*handout;
        match audience.readers_of(e, access_now, subscribers.len()) {
            Some(readers) => readers.filter_map(|id| subscribers.get(id)).for_each(|s| s.hand(e)),
            None => subscribers
                .iter()
                .filter(|(id, _)| audience.visible(**id, access_now, e, now_ms) != Some(false))
                .for_each(|(_, s)| s.hand(e)),
        }
    }

    fn lagged(&self) {
        self.handout().subscribers.values().for_each(|s| s.lagged.notify_one());
    }
}

/// What a stream's [`Subscription::next`] brings.
pub enum Live {
    Event(Event),
    /// Events were left out: catch up from the stored ones.
    Lagged,
    /// The node stopped handing out events.
    Closed,
}

/// A stream's place in the node's hand-out; leaves it when dropped.
pub struct Subscription {
    streams: Arc<Streams>,
    id: StreamId,
    lagged: Arc<Notify>,
    events: mpsc::Receiver<Event>,
}

impl Subscription {
    /// The next event handed to this stream, or why there is none.
    pub async fn next(&mut self) -> Live {
        tokio::select! {
            // A lag first: the events still in the inbox are older than what catching up reads.
            biased;
            () = self.lagged.notified() => Live::Lagged,
            event = self.events.recv() => event.map_or(Live::Closed, Live::Event),
        }
    }

    /// Whether `e` goes to this stream, if that is known without reading the state
    /// (`access_now`: the count of the node's `AccessLog` now).
    pub fn visible(&self, access_now: u64, e: &Event, now_ms: u64) -> Option<bool> {
        self.streams.handout().audience.visible(self.id, access_now, e, now_ms)
    }

    /// Whether this stream knows its rooms now; if not, its next read of the state learns them.
    pub fn knows(&self, access_now: u64, now_ms: u64) -> bool {
        self.streams.handout().audience.knows(self.id, access_now, now_ms)
    }

    /// A view taken after the `AccessLog` count was `access_at` read `learnt`.
    pub fn learn(&self, access_at: u64, learnt: Learnt) {
        self.streams.handout().audience.learn(self.id, access_at, learnt);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut handout = self.streams.handout();
        handout.subscribers.remove(&self.id);
        handout.audience.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kizuna_domain::events::EventKind;
    use kizuna_domain::model::RoomId;

    fn posted(cursor: u64, room: u64) -> Event {
        Event { cursor, room: RoomId(room), at_ms: 1, kind: EventKind::Posted { seq: cursor } }
    }

    fn waiting(subscription: &mut Subscription) -> Vec<u64> {
        std::iter::from_fn(|| subscription.events.try_recv().ok()).map(|e| e.cursor).collect()
    }

    fn reading(session_until_ms: u64, rooms: &[u64]) -> Learnt {
        let account = kizuna_domain::model::AccountId(1);
        Learnt { account, session_until_ms, readable: rooms.iter().map(|&r| RoomId(r)).collect() }
    }

    #[tokio::test]
    async fn a_stream_is_passed_over_only_for_rooms_it_knows_it_may_not_read_while_that_holds() {
        let streams = Arc::<Streams>::default();
        let (mut outsider, mut newcomer) = (streams.subscribe(), streams.subscribe());
        outsider.learn(7, reading(1_000, &[6]));

        streams.offer(&posted(3, 5), 7, 500);
        streams.offer(&posted(4, 6), 7, 500);
        // Not a post: decided by the stream itself, whatever it knows of the room.
        let membership = Event { kind: EventKind::Membership, ..posted(5, 5) };
        streams.offer(&membership, 7, 500);
        // Its session's lifetime is over: it must wake to end.
        streams.offer(&posted(6, 5), 7, 1_001);
        outsider.learn(7, reading(2_000, &[6]));
        streams.offer(&posted(7, 5), 7, 1_500);
        // Access changed (a membership, a session): what the stream knew no longer holds.
        streams.offer(&posted(8, 5), 8, 1_500);

        assert_eq!(waiting(&mut outsider), vec![4, 5, 6, 8]);
        assert_eq!(waiting(&mut newcomer), vec![3, 4, 5, 6, 7, 8], "a stream that knows nothing gets everything");
    }

    #[tokio::test]
    async fn once_every_stream_knows_its_rooms_a_post_goes_to_its_room_readers_alone() {
        let streams = Arc::<Streams>::default();
        let (mut reader, outsider) = (streams.subscribe(), streams.subscribe());
        reader.learn(7, reading(1_000, &[5]));
        outsider.learn(7, reading(1_000, &[6]));
        streams.offer(&posted(2, 5), 7, 500);
        let mut newcomer = streams.subscribe();
        streams.offer(&posted(3, 5), 7, 500);
        newcomer.learn(7, reading(1_000, &[]));
        drop(outsider);
        streams.offer(&posted(4, 5), 7, 500);
        streams.offer(&posted(5, 6), 7, 500);

        assert_eq!(waiting(&mut reader), vec![2, 3, 4]);
        assert_eq!(waiting(&mut newcomer), vec![3], "offered while it did not know its rooms, then passed over");
    }

    #[tokio::test]
    async fn a_stream_whose_inbox_overflows_is_told_to_catch_up_before_what_waits() {
        let streams = Arc::<Streams>::default();
        let mut slow = streams.subscribe();
        for cursor in 1..=INBOX as u64 + 1 {
            streams.offer(&posted(cursor, 5), 1, 1);
        }
        assert!(matches!(slow.next().await, Live::Lagged), "the lag comes before the waiting events");
        assert!(matches!(slow.next().await, Live::Event(e) if e.cursor == 1));
        streams.lagged();
        assert!(matches!(slow.next().await, Live::Lagged), "the hand-out's own lag reaches every stream");
    }

    #[tokio::test]
    async fn a_dropped_subscription_leaves_and_a_closed_hand_out_ends_the_rest_and_any_later() {
        let streams = Arc::<Streams>::default();
        let (gone, mut staying) = (streams.subscribe(), streams.subscribe());
        drop(gone);
        assert_eq!(streams.handout().subscribers.len(), 1);
        drop(CloseOnDrop(streams.clone()));
        assert!(matches!(staying.next().await, Live::Closed));
        let mut late = streams.subscribe();
        assert!(matches!(late.next().await, Live::Closed), "a stream after the close would wait forever");
        assert_eq!(streams.handout().subscribers.len(), 0);
    }
}
