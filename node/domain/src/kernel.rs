//! The kernel every feature module builds on: where and when a command applies ([`Ctx`]), what
//! it answers ([`Outcome`]), everything one command decides ([`Effects`]) and the shared text
//! rules. It depends only on the model, the view, the errors, the event kinds and the audit
//! record's rules, so the feature modules import it and nothing in it imports a feature.

use serde::{Deserialize, Serialize};

use super::audit::patient_of;
use super::error::{DomainResult, invalid};
use super::events::{EventKind, Raised};
use super::federation::{HubName, Message};
use super::model::*;
use super::view::{Change, HubView, ViewResult};

/// A session's public id: this many leading hex digits of its token's digest (the audit log
/// uses the same tag).
pub const SESSION_ID_CHARS: usize = 16;

/// Longest post text, in characters.
pub const MAX_POST_CHARS: usize = 10_000;
/// How often a post may be edited: each edit keeps the text it replaced in the post.
pub const MAX_EDITS_PER_POST: usize = 20;
/// Longest name (login, display name, facility, patient, room), in characters.
pub(super) const MAX_NAME_CHARS: usize = 100;

/// Where and when a command is applied: ids come from the log index, time from the leader.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub log_index: u64,
    pub now_ms: u64,
}

/// What a successful command produced, for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Account(AccountId),
    Facility(FacilityId),
    Invitation(InvitationId),
    Session(AccountId),
    Patient {
        patient: PatientId,
        timeline: RoomId,
    },
    Room(RoomId),
    Posted {
        room: RoomId,
        seq: u64,
    },
    Request(RequestId),
    Done,
    /// The write went to the home hub of `room` (a copy here) as `ticket`: "sending".
    Queued {
        room: RoomId,
        ticket: u64,
    },
    /// The account's password was changed (`ChangePassword`): a retry recognises its own
    /// first result by it.
    PasswordChanged(AccountId),
    /// An uploaded file became an attachment of its uploader (`CreateAttachment`).
    Attachment(AttachmentId),
    /// A disaster was declared or ended (`DeclareDisaster`, `EndDisaster`).
    Disaster(DisasterId),
    /// A record was written (`PutRecord`): its new version.
    RecordPut {
        version: u64,
    },
}

/// The audit entry of a write of patient data: (patient, room, what). Who, when, from which
/// session and node the store knows and stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trail {
    pub patient: Option<PatientId>,
    pub room: Option<RoomId>,
    pub what: &'static str,
}

/// A message to another hub: it enters this hub's replicated outbox for `to` in the same
/// apply as the command that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: HubName,
    pub message: Message,
}

/// Everything one command decides, in one place: what it answers, how the state changes, which
/// live events it raises (in order) and which audit entry it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    pub outcome: Outcome,
    pub changes: Vec<Change>,
    pub events: Vec<Raised>,
    pub audit: Option<Trail>,
    /// Messages to other hubs, in the order they are sent.
    pub outbound: Vec<Outgoing>,
}

impl Effects {
    /// A command's outcome and changes, raising no event and leaving no audit entry (yet).
    pub fn new(outcome: Outcome, changes: Vec<Change>) -> Self {
        Effects { outcome, changes, events: vec![], audit: None, outbound: vec![] }
    }

    /// Also raises `kind` in `room`.
    pub fn event(mut self, room: RoomId, kind: EventKind) -> Self {
        self.events.push(Raised { room, kind });
        self
    }

    /// Also raises a membership event in `room`.
    pub fn membership(self, room: RoomId) -> Self {
        self.event(room, EventKind::Membership)
    }

    /// Also raises a connection event for the pair (no room).
    pub fn connection(self, pair: (AccountId, AccountId)) -> Self {
        self.event(RoomId(0), EventKind::Connection { pair })
    }

    /// Nothing at all: the outcome `Done`, no change, no event (e.g. a peer's message that
    /// this hub has nothing to do with).
    pub fn none() -> Self {
        Self::new(Outcome::Done, Vec::new())
    }

    /// Also sends `message` to hub `to`.
    pub fn send(mut self, to: HubName, message: Message) -> Self {
        self.outbound.push(Outgoing { to, message });
        self
    }

    /// Also leaves the audit entry (patient, room, what).
    pub fn audited(mut self, patient: Option<PatientId>, room: Option<RoomId>, what: &'static str) -> Self {
        self.audit = Some(Trail { patient, room, what });
        self
    }

    /// Also leaves an audit entry if `room` holds patient data (a timeline or a sub-room).
    pub fn audited_in(self, view: &impl HubView, room: RoomId, what: &'static str) -> ViewResult<Self> {
        Ok(match patient_of(view, room)? {
            Some(patient) => self.audited(Some(patient), Some(room), what),
            None => self,
        })
    }
}

/// Checks a free-text field that may be left empty: otherwise as [`text`].
pub(super) fn optional_text(field: &str, value: &str, max_chars: usize) -> DomainResult<()> {
    if value.is_empty() { Ok(()) } else { text(field, value, max_chars) }
}

/// The apply version from which commands older than it check limits they did not check before
/// (a session's device name, a patient's details, a post's edits): an older build accepts what
/// they refuse, so every replica must start refusing at the same entry.
pub const TIGHTER_LIMITS_SINCE_APPLY_VERSION: u32 = 5;

/// Whether the hub applies [`TIGHTER_LIMITS_SINCE_APPLY_VERSION`]'s limits.
pub(super) fn tighter_limits(view: &impl crate::HubView) -> DomainResult<bool> {
    Ok(view.apply_version()? >= TIGHTER_LIMITS_SINCE_APPLY_VERSION)
}

/// Checks a free-text field: not blank, at most `max_chars` characters, no control characters
/// but newlines.
pub(super) fn text(field: &str, value: &str, max_chars: usize) -> DomainResult<()> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max_chars || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!("{field} must be 1..={max_chars} characters of text")));
    }
    Ok(())
}
