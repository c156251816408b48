//! Live events: what changed, in which room, at which log index. Stored with the state (so a
//! subscriber resumes from a cursor after any failover) and delivered only to members.

use serde::{Deserialize, Serialize};

use super::authz::can_read;
use super::commands::{Command, Outcome};
use super::model::*;
use super::view::HubView;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Raft log index of the command: the resume cursor.
    pub index: u64,
    pub room: RoomId,
    pub at_ms: u64,
    pub kind: EventKind,
}

/// The event a successful command produces, if any.
pub fn event_for(
    view: &impl HubView,
    command: &Command,
    outcome: &Outcome,
    actor: Option<AccountId>,
    index: u64,
    at_ms: u64,
) -> Option<Event> {
    let (room, kind) = match (command, outcome) {
        (Command::Post { room, .. }, Outcome::Posted { seq, .. }) => (*room, EventKind::Posted { seq: *seq }),
        (
            Command::EditPost { room, seq, .. } | Command::DeletePost { room, seq } | Command::AckPost { room, seq },
            _,
        ) => (*room, EventKind::PostUpdated { seq: *seq }),
        (Command::MarkRead { room, up_to_seq }, _) => (*room, EventKind::Read { account: actor?, seq: *up_to_seq }),
        (
            Command::Invite { room, .. }
            | Command::Approve { room, .. }
            | Command::RequestJoin { room }
            | Command::Leave { room }
            | Command::Remove { room, .. },
            _,
        ) => (*room, EventKind::Membership),
        (_, Outcome::Patient { timeline, .. }) => (*timeline, EventKind::Membership),
        // Accepting a request about a patient may have opened the patient's team.
        (Command::AnswerRequest { request, accept: true, .. }, _) => {
            let patient = view.care_request(*request)?.patient?;
            (view.patient(patient)?.timeline, EventKind::Membership)
        }
        (
            Command::CreateSubRoom { .. } | Command::CreateGroup { .. } | Command::AcceptConnection { .. },
            Outcome::Room(room),
        ) => (*room, EventKind::Membership),
        _ => return None,
    };
    Some(Event { index, room, at_ms, kind })
}

/// Whether `account` receives `event`: members of the room; for membership events also
/// whoever is invited or asking to join (so an invitee learns of its invitation); read markers
/// only for their owner.
pub fn visible_to(view: &impl HubView, account: AccountId, event: &Event) -> bool {
    match event.kind {
        EventKind::Read { account: reader, .. } if reader != account => false,
        EventKind::Membership => {
            can_read(view, account, event.room)
                || (view.account(account).is_some_and(|a| a.is_active()) && view.member(event.room, account).is_some())
        }
        _ => can_read(view, account, event.room),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::collab::view::{Change, MemHub};

    fn account(id: u64) -> Account {
        Account {
            id: AccountId(id),
            login: format!("u{id}"),
            display_name: String::new(),
            kind: AccountKind::Professional { facility: FacilityId(1), profession: Profession::Nurse },
            status: AccountStatus::Active,
            password_hash: String::new(),
            facility_admin: false,
        }
    }

    #[test]
    fn invitees_hear_of_their_invitation_but_see_no_posts() {
        let mut hub = MemHub::default();
        let room = RoomId(5);
        hub.apply(vec![
            Change::Account(account(1)),
            Change::Account(account(2)),
            Change::Room(Room {
                id: room,
                kind: RoomKind::Group { name: "g".into() },
                last_seq: 1,
                last_post_at_ms: 0,
            }),
            Change::Member(Member {
                room,
                account: AccountId(1),
                role: Role::Owner,
                state: MemberState::Active,
                read_seq: 0,
            }),
            Change::Member(Member {
                room,
                account: AccountId(2),
                role: Role::Member,
                state: MemberState::Invited { by: AccountId(1) },
                read_seq: 0,
            }),
        ]);
        let invited = Event { index: 9, room, at_ms: 0, kind: EventKind::Membership };
        let posted = Event { index: 10, room, at_ms: 0, kind: EventKind::Posted { seq: 1 } };
        let read = Event { index: 11, room, at_ms: 0, kind: EventKind::Read { account: AccountId(1), seq: 1 } };
        assert!(visible_to(&hub, AccountId(2), &invited));
        assert!(!visible_to(&hub, AccountId(2), &posted));
        assert!(visible_to(&hub, AccountId(1), &posted));
        assert!(visible_to(&hub, AccountId(1), &read));
        assert!(!visible_to(&hub, AccountId(3), &invited));
    }
}
