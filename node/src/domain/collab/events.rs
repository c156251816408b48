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
        (
            Command::CreateSubRoom { .. } | Command::CreateGroup { .. } | Command::AcceptConnection { .. },
            Outcome::Room(room),
        ) => (*room, EventKind::Membership),
        _ => return None,
    };
    Some(Event { index, room, at_ms, kind })
}

/// Whether `account` receives `event`: members of the room only, read markers only for their
/// owner.
pub fn visible_to(view: &impl HubView, account: AccountId, event: &Event) -> bool {
    if let EventKind::Read { account: reader, .. } = event.kind
        && reader != account
    {
        return false;
    }
    can_read(view, account, event.room)
}
