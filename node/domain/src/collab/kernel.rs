//! The kernel every feature module builds on: where and when a command applies ([`Ctx`]), what
//! it answers ([`Outcome`]), what a feature returns ([`Executed`]) and the shared text rules.
//! It depends only on the model, the view and the errors, so the feature modules import it and
//! nothing in it imports a feature.

use serde::{Deserialize, Serialize};

use super::error::{DomainResult, invalid};
use super::model::*;
use super::view::Change;

/// A session's public id: this many leading hex digits of its token's digest (the audit log
/// uses the same tag).
pub const SESSION_ID_CHARS: usize = 16;

/// Longest post text, in characters.
pub const MAX_POST_CHARS: usize = 10_000;
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
    Patient { patient: PatientId, timeline: RoomId },
    Room(RoomId),
    Posted { room: RoomId, seq: u64 },
    Request(RequestId),
    Done,
}

/// What a feature decided for one command: its outcome and the state changes.
pub type Executed = (Outcome, Vec<Change>);

/// Checks a free-text field: not blank, at most `max_chars` characters, no control characters
/// but newlines.
pub(super) fn text(field: &str, value: &str, max_chars: usize) -> DomainResult<()> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max_chars || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!("{field} must be 1..={max_chars} characters of text")));
    }
    Ok(())
}
