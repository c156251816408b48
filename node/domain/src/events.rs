//! Live events: what changed, in which room (or which request), at which log index. Stored with
//! the state (so a subscriber resumes from a cursor after any failover) and delivered only to
//! members (of the room; for requests, the sender and the recipient facilities).

use serde::{Deserialize, Serialize};

use super::authz::can_read;
use super::model::*;
use super::view::{HubView, ViewResult};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A new post.
    Posted { seq: u64 },
    /// An edit, deletion or acknowledgement of a post.
    PostUpdated { seq: u64 },
    /// Someone joined, was invited, left or was removed; or the room was created.
    Membership,
    /// `account` read up to `seq` (delivered to that account's other devices only).
    Read { account: AccountId, seq: u64 },
    /// A request to facilities was sent, answered or cancelled (no room: `room` is 0).
    Request { id: RequestId },
    /// A connection between the pair was requested, accepted, declined or blocked (no room:
    /// `room` is 0): both hear of it, so a request to accept shows at once.
    Connection { pair: (AccountId, AccountId) },
    /// A disaster was declared or ended (no room): every active account hears of it.
    Disaster { id: DisasterId },
    /// Safety checks or facility statuses of a disaster were recorded (no room): the boards of
    /// the professionals refresh.
    Observed { disaster: DisasterId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The resume cursor: the command's Raft log index × [`EVENTS_PER_ENTRY`] + the event's
    /// position among that command's events.
    pub cursor: u64,
    pub room: RoomId,
    pub at_ms: u64,
    pub kind: EventKind,
}

/// A live event a command raises: today's [`Event`] without its cursor
/// and time, which the store stamps at apply (see [`stamp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub room: RoomId,
    pub kind: EventKind,
}

/// How many events one log entry may produce: cursors are `log index × this + position`.
pub const EVENTS_PER_ENTRY: u64 = 16;

/// The cursor after every event of the entries up to `index`: "only new events from here".
pub fn cursor_after(index: u64) -> u64 {
    index.saturating_mul(EVENTS_PER_ENTRY).saturating_add(EVENTS_PER_ENTRY - 1)
}

/// The events a command raised (see [`Effects`](super::Effects)), in order, stamped with their
/// cursors (log index × [`EVENTS_PER_ENTRY`] + position) and the apply time; at most
/// [`EVENTS_PER_ENTRY`] of them.
pub fn stamp(raised: Vec<Raised>, index: u64, at_ms: u64) -> Vec<Event> {
    raised
        .into_iter()
        .take(EVENTS_PER_ENTRY as usize)
        .enumerate()
        .map(|(i, Raised { room, kind })| Event { cursor: index * EVENTS_PER_ENTRY + i as u64, room, at_ms, kind })
        .collect()
}

/// Whether `account` receives `event`: members of the room; for membership events also
/// whoever is invited or asking to join (so an invitee learns of its invitation); read markers
/// only for their owner.
pub fn visible_to(view: &impl HubView, account: AccountId, event: &Event) -> ViewResult<bool> {
    Ok(match event.kind {
        EventKind::Read { account: reader, .. } if reader != account => false,
        EventKind::Membership => {
            can_read(view, account, event.room)?
                || (view.account(account)?.is_some_and(|a| a.is_active())
                    && view.member(event.room, account)?.is_some())
        }
        EventKind::Request { id } => match view.account(account)? {
            Some(a) => view.care_request(id)?.is_some_and(|r| r.visible_to(&a)),
            None => false,
        },
        EventKind::Connection { pair } => {
            (pair.0 == account || pair.1 == account) && view.account(account)?.is_some_and(|a| a.is_active())
        }
        EventKind::Disaster { .. } => view.account(account)?.is_some_and(|a| a.is_active()),
        EventKind::Observed { .. } => {
            view.account(account)?.is_some_and(|a| a.is_active() && (a.is_professional() || a.is_operator()))
        }
        _ => can_read(view, account, event.room)?,
    })
}

/// Whether [`visible_to`] of `event` is "may read its room" for every account: a reader that
/// learned an account may not read the room may pass such events over unread (while no
/// account, room or membership changes).
pub fn only_for_room_readers(event: &Event) -> bool {
    matches!(event.kind, EventKind::Posted { .. } | EventKind::PostUpdated { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::readable_rooms;
    use crate::view::{Change, MemHub};

    fn account(id: u64) -> Account {
        Account {
            id: AccountId(id),
            login: format!("u{id}"),
            display_name: String::new(),
            kind: AccountKind::Professional { facility: FacilityId(1), profession: Profession::Nurse },
            status: AccountStatus::Active,
            password_hash: String::new(),
            facility_admin: false,
            totp: None,
        }
    }

    /// A group room 5 with accounts 1 (its owner) and 2 (invited, not yet a member), and then
    /// `more` changes.
    fn group_with_an_invitee(more: Vec<Change>) -> (MemHub, RoomId) {
        let (mut hub, room) = (MemHub::default(), RoomId(5));
        let group = Room { id: room, kind: RoomKind::Group { name: "g".into() }, last_seq: 1, last_post_at_ms: 0 };
        hub.apply(vec![
            Change::Account(account(1)),
            Change::Account(account(2)),
            Change::Room(group),
            Change::Member(Member::new(room, AccountId(1), Role::Owner, MemberState::Active)),
            Change::Member(Member::new(room, AccountId(2), Role::Member, MemberState::Invited { by: AccountId(1) })),
        ]);
        hub.apply(more);
        (hub, room)
    }

    #[test]
    fn invitees_hear_of_their_invitation_but_see_no_posts() {
        let (hub, room) = group_with_an_invitee(Vec::new());
        let invited = Event { cursor: 9, room, at_ms: 0, kind: EventKind::Membership };
        let posted = Event { cursor: 10, room, at_ms: 0, kind: EventKind::Posted { seq: 1 } };
        let read = Event { cursor: 11, room, at_ms: 0, kind: EventKind::Read { account: AccountId(1), seq: 1 } };
        assert!(visible_to(&hub, AccountId(2), &invited).unwrap());
        assert!(!visible_to(&hub, AccountId(2), &posted).unwrap());
        assert!(visible_to(&hub, AccountId(1), &posted).unwrap());
        assert!(visible_to(&hub, AccountId(1), &read).unwrap());
        assert!(!visible_to(&hub, AccountId(3), &invited).unwrap());
    }

    #[test]
    fn request_events_reach_the_sender_and_the_recipient_facilities_only() {
        use crate::requests::{Answer, CareRequest, Recipient, RequestKind};
        let mut hub = MemHub::default();
        let at = |id: u64, facility: u64| Account {
            kind: AccountKind::Professional { facility: FacilityId(facility), profession: Profession::Doctor },
            ..account(id)
        };
        hub.apply(vec![
            Change::Account(at(1, 10)),
            Change::Account(at(2, 20)),
            Change::Account(at(3, 30)),
            Change::Account(at(4, 10)),
            Change::Request(CareRequest {
                id: RequestId(7),
                kind: RequestKind::HomeVisit,
                from: AccountId(1),
                from_facility: FacilityId(10),
                patient: None,
                title: "往診".into(),
                details: "x".into(),
                recipients: vec![Recipient { facility: FacilityId(20), answer: Answer::Pending }],
                sent_at_ms: 0,
            }),
        ]);
        let event = Event {
            cursor: 7 * EVENTS_PER_ENTRY,
            room: RoomId(0),
            at_ms: 0,
            kind: EventKind::Request { id: RequestId(7) },
        };
        let hears: Vec<bool> = (1..=4).map(|a| visible_to(&hub, AccountId(a), &event).unwrap()).collect();
        // Sender, recipient facility; not another facility, not the sender's colleague.
        assert_eq!(hears, vec![true, true, false, false]);
        assert!(cursor_after(7) >= event.cursor && cursor_after(6) < event.cursor);
    }

    #[test]
    fn a_connection_event_reaches_the_pair_only_and_not_a_stopped_one() {
        let mut hub = MemHub::default();
        let stopped = Account { status: AccountStatus::Stopped, ..account(3) };
        hub.apply(vec![Change::Account(account(1)), Change::Account(account(2)), Change::Account(stopped)]);
        let event = |pair| Event { cursor: 9, room: RoomId(0), at_ms: 0, kind: EventKind::Connection { pair } };
        let hears = |pair| (1..=3).map(|a| visible_to(&hub, AccountId(a), &event(pair)).unwrap()).collect::<Vec<_>>();
        assert_eq!(hears((AccountId(1), AccountId(2))), vec![true, true, false]);
        assert_eq!(hears((AccountId(1), AccountId(3))), vec![true, false, false], "a stopped account hears nothing");
    }

    #[test]
    fn events_only_for_room_readers_are_visible_exactly_to_those_who_may_read_the_room() {
        let stopped = Account { status: AccountStatus::Stopped, ..account(3) };
        let (hub, room) = group_with_an_invitee(vec![
            Change::Account(stopped),
            Change::Account(account(4)),
            Change::Member(Member::new(RoomId(5), AccountId(3), Role::Member, MemberState::Active)),
            // A membership of a room that is gone.
            Change::Member(Member::new(RoomId(6), AccountId(4), Role::Member, MemberState::Active)),
        ]);
        let kinds = [
            EventKind::Posted { seq: 1 },
            EventKind::PostUpdated { seq: 1 },
            EventKind::Membership,
            EventKind::Read { account: AccountId(1), seq: 1 },
        ];
        for kind in kinds.clone() {
            let event = Event { cursor: 9, room, at_ms: 0, kind: kind.clone() };
            for a in 1..=5 {
                let (account, visible) = (AccountId(a), visible_to(&hub, AccountId(a), &event).unwrap());
                if only_for_room_readers(&event) {
                    assert_eq!(visible, can_read(&hub, account, room).unwrap(), "{kind:?} to {a}");
                    // What a live stream learns at once must say the same for every room.
                    let readable = readable_rooms(&hub, account).unwrap();
                    assert_eq!(readable.contains(&room), visible, "{kind:?} to {a}, learnt at once");
                    assert!(readable.iter().all(|&r| r == room), "{a} reads nothing else");
                }
            }
        }
        let only = kinds.map(|kind| only_for_room_readers(&Event { cursor: 9, room, at_ms: 0, kind }));
        // An invitee hears of its invitation and each reader of its own read marker.
        assert_eq!(only, [true, true, false, false]);
    }
}
