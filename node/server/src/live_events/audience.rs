//! What the node's streams learned of their access, indexed by room: for a post, the hand-out
//! wakes the room's readers only, instead of asking each of thousands of streams whether it may
//! read the room (docs/benchmarks.md, "Fan-out: streams indexed by room").
//!
//! A stream learns every room its account may read at once (`queries::readable_rooms`, one read
//! of its memberships), when it starts and again when what it knew no longer holds: after the
//! node's access changes concerned its account (its account, one of its sessions or
//! memberships changed; everyone's for the session policy or an installed snapshot: see
//! `kizuna_store::AccessLog`) or once its session's absolute lifetime ended. A login of one
//! account leaves the other streams' knowledge as it was. The index is used only while *every*
//! stream of the node knows its rooms at the current count: a stream that does not (new, or its
//! knowledge just reset) may be a reader, so a post goes to every stream not known to be an
//! outsider, and each decides it by reading the state (and learns).

use std::collections::{BTreeSet, HashMap, HashSet};

use kizuna_domain::events::{Event, only_for_room_readers};
use kizuna_domain::model::{AccountId, RoomId};
use kizuna_store::{AccessChange, AccessLog};

/// A stream's id in the hand-out.
pub(super) type StreamId = u64;

/// What a stream read in one view of the state: its account, until when its session holds
/// (ms since the epoch) and every room its account may read.
pub struct Learnt {
    pub account: AccountId,
    pub session_until_ms: u64,
    pub readable: HashSet<RoomId>,
}

#[derive(Default)]
pub(super) struct Audience {
    /// The node's access changes, which say whose knowledge a change ends.
    log: AccessLog,
    /// The `AccessLog` count up to which what follows holds.
    access_at: u64,
    streams: HashMap<StreamId, Learnt>,
    readers: HashMap<RoomId, HashSet<StreamId>>,
    /// When each knowing stream's session ends, earliest first: from then on it is offered
    /// everything again, so it wakes to find its session over and ends.
    session_ends: BTreeSet<(u64, StreamId)>,
}

impl Audience {
    /// An audience that follows the changes of `log`.
    pub(super) fn following(log: AccessLog) -> Self {
        Audience { access_at: log.count(), log, ..Audience::default() }
    }

    /// Drops what the changes up to `access_now` (the count of the node's `AccessLog`, which only
    /// rises) concern, and the knowledge of streams whose session ended before `now_ms`.
    pub(super) fn hold_at(&mut self, access_now: u64, now_ms: u64) {
        if access_now > self.access_at {
            match self.log.between(self.access_at, access_now) {
                AccessChange::Everyone => {
                    *self = Audience { access_at: access_now, log: self.log.clone(), ..Audience::default() };
                }
                change => {
                    let concerned: Vec<StreamId> =
                        self.streams.iter().filter(|(_, k)| change.concerns(k.account)).map(|(id, _)| *id).collect();
                    concerned.into_iter().for_each(|stream| self.forget(stream));
                    self.access_at = access_now;
                }
            }
        }
        while let Some(&(until, stream)) = self.session_ends.first()
            && until < now_ms
        {
            self.forget(stream);
        }
    }

    /// Whether `stream` knows its rooms now (else its next read of the state should learn them).
    pub(super) fn knows(&self, stream: StreamId, access_now: u64, now_ms: u64) -> bool {
        self.access_at == access_now && self.streams.get(&stream).is_some_and(|k| now_ms <= k.session_until_ms)
    }

    /// Whether `e` goes to `stream`, if that is known without reading the state.
    pub(super) fn visible(&self, stream: StreamId, access_now: u64, e: &Event, now_ms: u64) -> Option<bool> {
        if !only_for_room_readers(e) || !self.knows(stream, access_now, now_ms) {
            return None;
        }
        self.streams.get(&stream).map(|k| k.readable.contains(&e.room))
    }

    /// The streams `e` goes to, when every one of the `streams` the node has knows its rooms
    /// (else None: ask each).
    pub(super) fn readers_of(
        &self,
        e: &Event,
        access_now: u64,
        streams: usize,
    ) -> Option<impl Iterator<Item = &StreamId>> {
        let all_know = self.access_at == access_now && self.streams.len() == streams;
        (all_know && only_for_room_readers(e)).then(|| self.readers.get(&e.room).into_iter().flatten())
    }

    /// `stream` read `learnt` after the `AccessLog` count was `access_at`.
    pub(super) fn learn(&mut self, stream: StreamId, access_at: u64, learnt: Learnt) {
        if access_at < self.access_at && self.log.between(access_at, self.access_at).concerns(learnt.account) {
            // Read before an access change of its account the audience already follows.
            return;
        }
        self.hold_at(access_at, 0);
        self.forget(stream);
        self.session_ends.insert((learnt.session_until_ms, stream));
        for room in &learnt.readable {
            self.readers.entry(*room).or_default().insert(stream);
        }
        self.streams.insert(stream, learnt);
    }

    /// Forgets what `stream` knew (it left, its session ended, or it learns again).
    pub(super) fn forget(&mut self, stream: StreamId) {
        let Some(learnt) = self.streams.remove(&stream) else { return };
        self.session_ends.remove(&(learnt.session_until_ms, stream));
        for room in learnt.readable {
            if let Some(readers) = self.readers.get_mut(&room) {
                readers.remove(&stream);
                if readers.is_empty() {
                    self.readers.remove(&room);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kizuna_domain::events::EventKind;

    fn posted(room: u64) -> Event {
        Event { cursor: 1, room: RoomId(room), at_ms: 1, kind: EventKind::Posted { seq: 1 } }
    }

    fn learnt(session_until_ms: u64, rooms: &[u64]) -> Learnt {
        learnt_by(1, session_until_ms, rooms)
    }

    fn learnt_by(account: u64, session_until_ms: u64, rooms: &[u64]) -> Learnt {
        Learnt { account: AccountId(account), session_until_ms, readable: rooms.iter().map(|&r| RoomId(r)).collect() }
    }

    fn of(accounts: &[u64]) -> AccessChange {
        AccessChange::Accounts(accounts.iter().map(|&a| AccountId(a)).collect())
    }

    #[test]
    fn an_access_change_ends_the_knowledge_of_the_streams_it_concerns_alone() {
        let log = AccessLog::default();
        let mut audience = Audience::following(log.clone());
        audience.learn(1, 0, learnt_by(10, 1_000, &[5]));
        audience.learn(2, 0, learnt_by(20, 1_000, &[5, 6]));
        assert_eq!(readers(&audience, 5, 0, 2), Some(vec![1, 2]));

        // Account 10 signed in again (a new session): stream 2 still knows its rooms.
        log.record(of(&[10]));
        audience.hold_at(1, 0);
        assert_eq!(audience.visible(1, 1, &posted(5), 0), None, "stream 1 must read its access again");
        assert_eq!(audience.visible(2, 1, &posted(6), 0), Some(true), "stream 2 is not concerned");
        assert_eq!(readers(&audience, 5, 1, 2), None, "stream 1 no longer known: no index");
        audience.learn(1, 1, learnt_by(10, 1_000, &[]));
        assert_eq!(readers(&audience, 5, 1, 2), Some(vec![2]));

        // Knowledge read before a change of another account still holds; of its own, not.
        log.record(of(&[30]));
        log.record(of(&[20]));
        audience.hold_at(3, 0);
        audience.learn(1, 1, learnt_by(10, 1_000, &[6]));
        assert_eq!(audience.visible(1, 3, &posted(6), 0), Some(true), "account 10 was not concerned since");
        audience.learn(2, 1, learnt_by(20, 1_000, &[6]));
        assert_eq!(audience.visible(2, 3, &posted(6), 0), None, "account 20 changed after that read");

        // The session policy, an install: everyone's.
        log.record(AccessChange::Everyone);
        audience.hold_at(4, 0);
        assert_eq!(audience.visible(1, 4, &posted(6), 0), None);
        assert!(audience.streams.is_empty() && audience.readers.is_empty());
    }

    fn readers(audience: &Audience, room: u64, access_now: u64, streams: usize) -> Option<Vec<StreamId>> {
        let mut ids: Vec<StreamId> = audience.readers_of(&posted(room), access_now, streams)?.copied().collect();
        ids.sort_unstable();
        Some(ids)
    }

    #[test]
    fn rooms_are_indexed_once_every_stream_knows_its_rooms_and_until_access_changes() {
        let mut audience = Audience::default();
        audience.learn(1, 7, learnt(1_000, &[5, 6]));
        assert_eq!(readers(&audience, 5, 7, 2), None, "stream 2 knows nothing: it may read room 5");
        audience.learn(2, 7, learnt(1_000, &[6]));
        assert_eq!(readers(&audience, 5, 7, 2), Some(vec![1]));
        assert_eq!(readers(&audience, 6, 7, 2), Some(vec![1, 2]));
        assert_eq!(readers(&audience, 9, 7, 2), Some(vec![]), "a room nobody reads");
        assert_eq!(readers(&audience, 5, 8, 2), None, "read before the access changed");
        audience.hold_at(8, 0);
        assert_eq!(audience.visible(1, 8, &posted(5), 0), None);
        audience.learn(2, 7, learnt(1_000, &[5]));
        assert_eq!(audience.visible(2, 8, &posted(5), 0), None, "knowledge read before the change is not kept");
    }

    #[test]
    fn a_stream_whose_session_ended_or_that_left_is_no_longer_indexed() {
        let mut audience = Audience::default();
        audience.learn(1, 7, learnt(1_000, &[]));
        audience.learn(2, 7, learnt(2_000, &[5]));
        assert_eq!(audience.visible(1, 7, &posted(5), 1_000), Some(false));
        assert_eq!(audience.visible(1, 7, &posted(5), 1_001), None, "its session is over: it must wake");
        audience.hold_at(7, 1_001);
        assert_eq!(readers(&audience, 5, 7, 1), Some(vec![2]), "stream 1 left the index");
        audience.forget(2);
        assert_eq!(readers(&audience, 5, 7, 0), Some(vec![]));
        assert!(audience.readers.is_empty() && audience.session_ends.is_empty());
    }

    #[test]
    fn a_stream_that_learns_again_is_indexed_by_what_it_learnt_last() {
        let mut audience = Audience::default();
        audience.learn(1, 7, learnt(1_000, &[5]));
        audience.learn(1, 7, learnt(1_500, &[6]));
        assert_eq!(readers(&audience, 5, 7, 1), Some(vec![]));
        assert_eq!(readers(&audience, 6, 7, 1), Some(vec![1]));
        audience.hold_at(7, 1_200);
        assert_eq!(audience.visible(1, 7, &posted(6), 1_200), Some(true), "its session end moved on");
        assert_eq!(audience.session_ends.len(), 1);
    }
}
