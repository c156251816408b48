//! Requests (リクエスト): one structured request — admission, discharge, home visit,
//! collaboration — sent to several facilities at once. Each recipient facility accepts or
//! declines (any active professional of it may answer for it); the sender sees the answer of
//! each; the sender may cancel what is still unanswered. Accepting a request about a patient
//! opens the patient's team to the one who accepted: at once when the sender owns the patient's
//! timeline, otherwise as an invitation an owner approves (the rule of `Invite`).
//!
//! Who sees a request: its sender and the active professionals of its recipient facilities.
//! Anyone else gets NotFound, as for rooms.
//!
//! A recipient may be a facility of another hub, from that hub's shared map: the request then
//! also goes there, and its answer comes back (`federation::requests`).

use super::authz::active_account;
use super::error::{DomainResult, denied, invalid, not_found, precondition};
use super::events::EventKind;
use super::federation;
use super::kernel::{Ctx, Effects, Outcome, text};
use super::model::*;
use super::view::{Change, HubView, ViewResult};

pub use super::model::{Answer, CareRequest, Recipient, RequestKind};

/// At most this many recipient facilities per request.
pub const MAX_RECIPIENTS: usize = 20;
const MAX_TITLE_CHARS: usize = 100;
const MAX_DETAILS_CHARS: usize = 10_000;
const MAX_NOTE_CHARS: usize = 1_000;

/// The request as `actor` may see it (NotFound otherwise).
pub fn visible(view: &impl HubView, actor: AccountId, id: RequestId) -> DomainResult<(Account, CareRequest)> {
    let account = active_account(view, actor)?;
    let request = view.care_request(id)?.filter(|r| r.visible_to(&account)).ok_or(not_found("request"))?;
    Ok((account, request))
}

pub fn send(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (kind, patient, title, details): (RequestKind, Option<PatientId>, String, String),
    facilities: Vec<FacilityId>,
) -> DomainResult<Effects> {
    let account = active_account(view, actor)?;
    let from_facility = account.facility().ok_or_else(|| invalid("only professionals send requests"))?;
    check_texts(&title, &details)?;
    if facilities.is_empty() || facilities.len() > MAX_RECIPIENTS {
        return Err(invalid(format!("a request goes to 1..={MAX_RECIPIENTS} facilities")));
    }
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut remote = Vec::new();
    for facility in facilities {
        if recipients.iter().any(|r| r.facility == facility) {
            return Err(invalid(format!("facility {facility} is listed twice")));
        }
        if facility == from_facility {
            return Err(invalid("a request goes to other facilities than the sender's"));
        }
        if !view.facility(facility)?.is_some_and(|f| f.status == FacilityStatus::Approved) {
            // A facility of another hub, on this hub's map because that hub shares it.
            remote.push(view.remote_facility(facility)?.filter(|f| f.shared).ok_or(not_found("facility"))?);
        }
        recipients.push(Recipient { facility, answer: Answer::Pending });
    }
    if let Some(p) = patient {
        // Only about a patient the sender's team membership lets them see.
        let timeline = view.patient(p)?.map(|p| p.timeline).ok_or(not_found("patient"))?;
        if !view.member(timeline, actor)?.is_some_and(|m| m.is_active()) {
            return Err(not_found("patient"));
        }
    }
    let id = RequestId(ctx.log_index);
    let request = CareRequest {
        id,
        kind,
        from: actor,
        from_facility,
        patient,
        title,
        details,
        recipients,
        sent_at_ms: ctx.now_ms,
    };
    let effects =
        Effects::new(Outcome::Request(id), vec![Change::Request(request.clone())]).event(RoomId(0), request_event(id));
    let effects = federation::requests::send_copies(view, &account, &request, &remote, effects)?;
    // Its title and details leave the hub too: the audit entry says so.
    let what = if remote.is_empty() { "send request" } else { "send request, also to facilities of another hub" };
    Ok(match patient {
        Some(patient) => effects.audited(Some(patient), None, what),
        None => effects,
    })
}

/// Checks a request's title and details (also those another hub sends).
pub(crate) fn check_texts(title: &str, details: &str) -> DomainResult<()> {
    text("title", title, MAX_TITLE_CHARS)?;
    text("details", details, MAX_DETAILS_CHARS)
}

/// The sender and the recipient facilities hear of a request (no room: `room` is 0).
fn request_event(id: RequestId) -> EventKind {
    EventKind::Request { id }
}

pub fn answer(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    id: RequestId,
    accept: bool,
    note: String,
) -> DomainResult<Effects> {
    let (account, mut request) = visible(view, actor, id)?;
    if !note.is_empty() {
        text("note", &note, MAX_NOTE_CHARS)?;
    }
    let facility = account.facility();
    let Some(recipient) = request.recipients.iter_mut().find(|r| Some(r.facility) == facility) else {
        return Err(denied("only a recipient facility answers a request"));
    };
    if recipient.answer != Answer::Pending {
        return Err(precondition("this facility has already answered, or the request was cancelled"));
    }
    recipient.answer = if accept {
        Answer::Accepted { by: actor, at_ms: ctx.now_ms, note }
    } else {
        Answer::Declined { by: actor, at_ms: ctx.now_ms, note }
    };
    let answered = recipient.clone();
    let mut changes = Vec::new();
    let mut opened = None;
    let patient = match request.patient {
        Some(p) => view.patient(p)?,
        None => None,
    };
    if accept && let Some(timeline) = patient.map(|p| p.timeline) {
        changes.extend(open_team(view, timeline, request.from, actor)?);
        opened = Some(timeline);
    }
    let patient = request.patient;
    changes.push(Change::Request(request));
    let mut effects = Effects::new(Outcome::Request(id), changes).event(RoomId(0), request_event(id));
    // A request of another hub: the answer goes back there.
    effects = federation::requests::answer_back(view, id, (&account, &answered), effects)?;
    // Accepting one about a patient may have opened the patient's team.
    if let Some(timeline) = opened {
        effects = effects.membership(timeline);
    }
    Ok(match patient {
        Some(patient) => effects.audited(Some(patient), None, "answer request"),
        None => effects,
    })
}

/// The one who accepted joins the patient's team: at once if the sender owns the timeline,
/// otherwise invited by the sender, for an owner to approve. Nothing if already in it, or if the
/// sender has left the team since.
pub(crate) fn open_team(
    view: &impl HubView,
    timeline: RoomId,
    sender: AccountId,
    joiner: AccountId,
) -> ViewResult<Option<Change>> {
    let Some(by) = view.member(timeline, sender)?.filter(Member::is_active) else { return Ok(None) };
    if view.member(timeline, joiner)?.is_some() {
        return Ok(None);
    }
    let state = if by.role == Role::Owner { MemberState::Active } else { MemberState::Invited { by: sender } };
    Ok(Some(Change::Member(Member::new(timeline, joiner, Role::Member, state))))
}

pub fn cancel(view: &impl HubView, actor: AccountId, id: RequestId) -> DomainResult<Effects> {
    let (account, mut request) = visible(view, actor, id)?;
    let before = request.clone();
    if request.from != actor {
        return Err(denied("only the sender cancels a request"));
    }
    let mut cancelled = 0;
    for r in request.recipients.iter_mut().filter(|r| r.answer == Answer::Pending) {
        r.answer = Answer::Cancelled;
        cancelled += 1;
    }
    if cancelled == 0 {
        return Err(precondition("every facility has answered already, or it was cancelled"));
    }
    let patient = request.patient;
    let effects =
        Effects::new(Outcome::Request(id), vec![Change::Request(request.clone())]).event(RoomId(0), request_event(id));
    let effects = federation::requests::cancel_copies(view, &account, (&before, &request), effects)?;
    Ok(match patient {
        Some(patient) => effects.audited(Some(patient), None, "cancel request"),
        None => effects,
    })
}

/// Requests `actor` sent, newest first.
pub fn sent(view: &impl HubView, actor: AccountId) -> DomainResult<Vec<CareRequest>> {
    active_account(view, actor)?;
    let mut found = view.care_requests_from(actor)?;
    found.sort_by_key(|r| std::cmp::Reverse(r.id));
    Ok(found)
}

/// Requests to `actor`'s facility, newest first.
pub fn received(view: &impl HubView, actor: AccountId) -> DomainResult<Vec<CareRequest>> {
    let account = active_account(view, actor)?;
    let facility = account.facility().ok_or_else(|| invalid("only professionals receive requests"))?;
    let mut found = view.care_requests_to(facility)?;
    found.sort_by_key(|r| std::cmp::Reverse(r.id));
    Ok(found)
}
