//! The node's live events, handed to its event streams by one task: a stream that knows it may
//! not read a post's room is passed over without being woken. On a node with thousands of
//! streams each post then wakes its room's readers only, where a broadcast channel woke every
//! stream for every event (docs/benchmarks.md, "Fan-out to 10,000 live subscribers").
//!
//! A stream keeps what it learned of its access in its [`KnownAccess`], shared with the task:
//! the task skips a stream only when that knowledge says "not visible", and the stream decides
//! every event it is handed as before (knowledge, or a read of the state). A stream that falls
//! behind (its inbox full) is told so and catches up from the stored events, as a broadcast
//! receiver that lagged did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kizuna_domain::events::{Event, only_for_room_readers};
use kizuna_domain::model::RoomId;
use kizuna_store::StateReader;
use tokio::sync::{Notify, broadcast, mpsc, watch};

/// Events a stream may have waiting before it counts as fallen behind.
const INBOX: usize = 256;

/// What a stream learned of its session and of the rooms it may read, kept while the node's
/// `access_changes` stands where it was before it was read (no account, session, session
/// policy or membership changed since).
#[derive(Default)]
pub struct KnownAccess {
    /// The node's `access_changes` before what follows was read (None: nothing known yet).
    access_at: Option<u64>,
    /// The session holds until then (ms since the epoch): its absolute lifetime.
    session_until_ms: u64,
    /// Whether the session may read each room, for events only for its readers.
    rooms: HashMap<RoomId, bool>,
}

impl KnownAccess {
    /// Whether `e` goes out, if that is known without reading the state (`access_now`: the
    /// node's `access_changes` now).
    pub fn visible(&self, access_now: u64, e: &Event, now_ms: u64) -> Option<bool> {
        let holds = self.access_at == Some(access_now) && now_ms <= self.session_until_ms;
        if !holds || !only_for_room_readers(e) {
            return None;
        }
        self.rooms.get(&e.room).copied()
    }

    /// A view taken after `access_changes` was `access_at` said the session holds until
    /// `session_until_ms` and whether `e` is visible.
    pub fn learn(&mut self, access_at: u64, (session_until_ms, e, visible): (u64, &Event, bool)) {
        if self.access_at != Some(access_at) {
            self.rooms.clear();
            self.access_at = Some(access_at);
        }
        self.session_until_ms = session_until_ms;
        if only_for_room_readers(e) {
            self.rooms.insert(e.room, visible);
        }
    }
}

/// One stream's place in the hand-out.
struct Subscriber {
    inbox: mpsc::Sender<Event>,
    stream: Arc<StreamSide>,
}

/// What the hand-out and the stream both hold (the inbox's sender is the hand-out's alone, so
/// that clearing the hand-out ends the stream's wait).
struct StreamSide {
    /// Notified when an event did not fit in the inbox: the stream catches up from the store.
    lagged: Notify,
    known: Mutex<KnownAccess>,
}

impl StreamSide {
    fn known(&self) -> MutexGuard<'_, KnownAccess> {
        // What it guards is knowledge that a stream re-reads when it does not hold: a panic
        // elsewhere leaves nothing to repair.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Subscriber {
    /// Hands `e` to the stream unless it knows it may not see it.
    fn offer(&self, e: &Event, access_now: u64, now_ms: u64) {
        if self.stream.known().visible(access_now, e, now_ms) == Some(false) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inbox.try_send(e.clone()) {
            self.stream.lagged.notify_one();
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
        let live = Arc::new(LiveEvents { state, streams: Arc::default() });
        tokio::spawn(live.clone().hand_out(events, stopping));
        live
    }

    /// How many streams this node serves now.
    pub fn count(&self) -> usize {
        self.streams.subscribers().len()
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
                Ok(e) => self.streams.offer(&e, self.state.access_changes(), crate::node::now_ms()),
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

/// The streams' places, by subscription.
#[derive(Default)]
struct Streams {
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    next_id: AtomicU64,
    /// Nothing hands out events any more (set under the map's lock).
    closed: AtomicBool,
}

impl Streams {
    fn subscribers(&self) -> MutexGuard<'_, HashMap<u64, Subscriber>> {
        // Each operation on the map completes or does nothing: a panic leaves it consistent.
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribe(self: &Arc<Self>) -> Subscription {
        let (inbox, events) = mpsc::channel(INBOX);
        let stream = Arc::new(StreamSide { lagged: Notify::new(), known: Mutex::new(KnownAccess::default()) });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.subscribers();
        // Closed: the inbox's sender is dropped here, and the stream's first wait ends.
        if !self.closed.load(Ordering::Acquire) {
            subscribers.insert(id, Subscriber { inbox, stream: stream.clone() });
        }
        drop(subscribers);
        Subscription { streams: self.clone(), id, stream, events }
    }

    /// Ends every stream's wait (dropping the inboxes' senders), and any later stream's.
    fn close(&self) {
        let mut subscribers = self.subscribers();
        self.closed.store(true, Ordering::Release);
        subscribers.clear();
    }

    /// Hands `e` to every stream that may need it (`access_now`: the node's `access_changes`).
    fn offer(&self, e: &Event, access_now: u64, now_ms: u64) {
        for subscriber in self.subscribers().values() {
            subscriber.offer(e, access_now, now_ms);
        }
    }

    fn lagged(&self) {
        self.subscribers().values().for_each(|s| s.stream.lagged.notify_one());
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
    id: u64,
    stream: Arc<StreamSide>,
    events: mpsc::Receiver<Event>,
}

impl Subscription {
    /// The next event handed to this stream, or why there is none.
    pub async fn next(&mut self) -> Live {
        tokio::select! {
            // A lag first: the events still in the inbox are older than what catching up reads.
            biased;
            () = self.stream.lagged.notified() => Live::Lagged,
            event = self.events.recv() => event.map_or(Live::Closed, Live::Event),
        }
    }

    /// This stream's knowledge of its access, which the hand-out reads too.
    pub fn known(&self) -> MutexGuard<'_, KnownAccess> {
        self.stream.known()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.streams.subscribers().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kizuna_domain::events::EventKind;

    fn posted(cursor: u64, room: u64) -> Event {
        Event { cursor, room: RoomId(room), at_ms: 1, kind: EventKind::Posted { seq: cursor } }
    }

    fn waiting(subscription: &mut Subscription) -> Vec<u64> {
        std::iter::from_fn(|| subscription.events.try_recv().ok()).map(|e| e.cursor).collect()
    }

    #[tokio::test]
    async fn a_stream_is_passed_over_only_for_rooms_it_knows_it_may_not_read_while_that_holds() {
        let streams = Arc::<Streams>::default();
        let (mut outsider, mut newcomer) = (streams.subscribe(), streams.subscribe());
        outsider.known().learn(7, (1_000, &posted(1, 5), false));
        outsider.known().learn(7, (1_000, &posted(2, 6), true));

        streams.offer(&posted(3, 5), 7, 500);
        streams.offer(&posted(4, 6), 7, 500);
        // Access changed (a membership, a session): what the stream knew no longer holds.
        streams.offer(&posted(5, 5), 8, 500);
        // Its session's lifetime is over: it must wake to end.
        streams.offer(&posted(6, 5), 7, 1_001);
        // Not a post: decided by the stream itself, whatever it knows of the room.
        let membership = Event { kind: EventKind::Membership, ..posted(7, 5) };
        streams.offer(&membership, 7, 500);

        assert_eq!(waiting(&mut outsider), vec![4, 5, 6, 7]);
        assert_eq!(waiting(&mut newcomer), vec![3, 4, 5, 6, 7], "a stream that knows nothing gets everything");
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
        assert_eq!(streams.subscribers().len(), 1);
        drop(CloseOnDrop(streams.clone()));
        assert!(matches!(staying.next().await, Live::Closed));
        let mut late = streams.subscribe();
        assert!(matches!(late.next().await, Live::Closed), "a stream after the close would wait forever");
        assert_eq!(streams.subscribers().len(), 0);
    }
}
