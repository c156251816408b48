//! Requests (リクエスト) to facilities of another hub. The request is created on the sender's
//! hub as usual, its recipients including facilities known from a peer's shared map; each such
//! facility's hub gets a [`RequestCopy`] ([`send_copies`]) and creates the request there,
//! addressed to its own facilities, from the sender's shadow ([`received`]): its professionals
//! see and answer it by the normal rules, and each answer crosses back ([`answer_back`],
//! [`answered`]) to the sender's `Answer`. A cancellation crosses the other way ([`cancel_copies`],
//! [`cancelled`]).
//!
//! The recipient's hub orders its facility's answer and the sender's cancellation: an answer
//! given there before the cancellation arrived stands on both hubs.
//!
//! Nothing of a patient crosses with a request, only that it is about one. When a recipient
//! accepts, the sender's hub opens the patient's team to the one who accepted by the rule of
//! local requests (at once if the sender owns the timeline, otherwise an invitation to approve),
//! and from then on the room crosses by the rules of rooms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::copies::IdMint;
use super::map::remote_of;
use super::names::HubName;
use super::parties::{profile_of, remote_login, shadow};
use super::wire::{Message, Party, Profile};
use crate::error::{DomainResult, invalid, not_found, precondition};
use crate::events::EventKind;
use crate::kernel::{Effects, Outcome};
use crate::model::*;
use crate::requests::{MAX_RECIPIENTS, check_texts, open_team};
use crate::view::{Change, HubView, ViewResult};

/// A request as it crosses to a recipient facility's hub. Nothing of a patient crosses: the
/// recipient learns only that the request is about one (the team opens across hubs, by the
/// rules of rooms, once a recipient accepts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCopy {
    /// Its id on the sender.
    pub id: RequestId,
    pub kind: RequestKind,
    /// The sender's minimal profile (party: the sender hub's account).
    pub from: Profile,
    /// The sender's facility, by its id on the sender.
    pub from_facility: FacilityId,
    pub about_patient: bool,
    pub title: String,
    pub details: String,
    /// The receiver's facilities it goes to, by their id on the receiver.
    pub to: Vec<FacilityId>,
    pub sent_at_ms: u64,
}

/// How a recipient facility's hub answered a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Accepted {
        by: Profile,
        at_ms: u64,
        note: String,
    },
    Declined {
        by: Profile,
        at_ms: u64,
        note: String,
    },
    /// The hub did not take the request for this facility (not shared, not a facility of it).
    Refused {
        at_ms: u64,
        reason: String,
    },
}

/// Longest note or refusal reason kept from another hub, in characters.
const MAX_NOTE_CHARS: usize = 1_000;

/// Also sends `request` (just created by `sender`) to the hub of each of its `remote`
/// recipients, one copy per hub naming that hub's facilities.
pub fn send_copies(
    view: &impl HubView,
    sender: &Account,
    request: &CareRequest,
    remote: &[RemoteFacility],
    mut effects: Effects,
) -> ViewResult<Effects> {
    let mut by_hub: BTreeMap<&HubName, Vec<FacilityId>> = BTreeMap::new();
    for f in remote {
        by_hub.entry(&f.hub).or_default().push(f.home_id);
    }
    for (hub, to) in by_hub {
        let copy = RequestCopy {
            id: request.id,
            kind: request.kind,
            from: profile_of(view, sender, hub)?,
            from_facility: request.from_facility,
            about_patient: request.patient.is_some(),
            title: request.title.clone(),
            details: request.details.clone(),
            to,
            sent_at_ms: request.sent_at_ms,
        };
        effects = effects.send(hub.clone(), Message::Request(copy));
    }
    Ok(effects)
}

/// Hub `origin` sent a request to facilities of ours. Only facilities of a map this hub shares
/// with `origin` take it, approved ones; `origin` hears of each other one as refused (now).
pub fn received(
    view: &impl HubView,
    (ids, now_ms): (&mut IdMint, u64),
    origin: &HubName,
    copy: RequestCopy,
) -> DomainResult<Effects> {
    check_texts(&copy.title, &copy.details)?;
    let login = sender_login(&copy.from)?;
    if copy.to.is_empty() || copy.to.len() > MAX_RECIPIENTS {
        return Err(invalid(format!("a request goes to 1..={MAX_RECIPIENTS} facilities")));
    }
    let (recipients, refused) = takers(view, origin, copy.to)?;
    let mut effects = Effects::none();
    for (facility, reason) in refused {
        let reply = Reply::Refused { at_ms: now_ms, reason: reason.into() };
        effects = effects.send(origin.clone(), Message::RequestAnswered { request: copy.id, facility, reply });
    }
    if recipients.is_empty() {
        return Ok(effects);
    }
    let (from, created) = shadow(view, || ids.mint().map(AccountId), (origin, login), Some(&copy.from))?;
    let from_facility = remote_of(view, origin, copy.from_facility)?.map_or(FacilityId(0), |f| f.facility.id);
    let id = RequestId(ids.mint()?);
    let request = CareRequest {
        id,
        kind: copy.kind,
        from: from.id,
        from_facility,
        patient: None,
        title: copy.title,
        details: copy.details,
        recipients,
        sent_at_ms: copy.sent_at_ms,
    };
    effects.changes.extend(created);
    effects.changes.push(Change::Request(request));
    let link = RequestLink { local: id, hub: origin.clone(), home_id: copy.id, about_patient: copy.about_patient };
    effects.changes.push(Change::RequestLink(link));
    effects.outcome = Outcome::Request(id);
    Ok(effects.event(RoomId(0), EventKind::Request { id }))
}

/// A facility that does not take a request, and why.
type Refusal = (FacilityId, &'static str);

/// Which of the facilities `to` take a request from `origin`: this hub's approved ones, if it
/// shares its map with `origin`. The others come back with the reason.
fn takers(view: &impl HubView, origin: &HubName, to: Vec<FacilityId>) -> ViewResult<(Vec<Recipient>, Vec<Refusal>)> {
    let shared = view.directory_shared_with()?.contains(origin);
    let (mut recipients, mut refused): (Vec<Recipient>, Vec<Refusal>) = (Vec::new(), Vec::new());
    for facility in to {
        if recipients.iter().any(|r| r.facility == facility) || refused.iter().any(|(f, _)| *f == facility) {
            continue;
        }
        let approved = view.facility(facility)?.is_some_and(|f| f.status == FacilityStatus::Approved);
        match (shared, approved) {
            (false, _) => refused.push((facility, "this hub does not share its resource map with the sender's hub")),
            (true, false) => refused.push((facility, "no such facility on this hub")),
            (true, true) => recipients.push(Recipient { facility, answer: Answer::Pending }),
        }
    }
    Ok((recipients, refused))
}

/// The login of the sender hub's own account a profile names: a hub speaks only for its own.
fn sender_login(profile: &Profile) -> DomainResult<&str> {
    match &profile.party {
        Party::Sender(login) => Ok(login),
        _ => Err(invalid("a hub sends requests and answers of its own accounts only")),
    }
}

/// Also sends the answer `recipient` just got to the hub the request `id` came from, if another
/// hub sent it.
pub fn answer_back(
    view: &impl HubView,
    id: RequestId,
    (by, recipient): (&Account, &Recipient),
    effects: Effects,
) -> ViewResult<Effects> {
    let Some(link) = view.request_link(id)? else { return Ok(effects) };
    let profile = profile_of(view, by, &link.hub)?;
    let reply = match &recipient.answer {
        Answer::Accepted { at_ms, note, .. } => Reply::Accepted { by: profile, at_ms: *at_ms, note: note.clone() },
        Answer::Declined { at_ms, note, .. } => Reply::Declined { by: profile, at_ms: *at_ms, note: note.clone() },
        Answer::Pending | Answer::Cancelled => return Ok(effects),
    };
    let message = Message::RequestAnswered { request: link.home_id, facility: recipient.facility, reply };
    Ok(effects.send(link.hub, message))
}

/// Hub `origin` answered our request `id` for its facility `facility` (its id there). The
/// answer takes its place even over a cancellation here: `origin` ordered the two.
pub fn answered(
    view: &impl HubView,
    ids: &mut IdMint,
    origin: &HubName,
    (id, facility): (RequestId, FacilityId),
    reply: Reply,
) -> DomainResult<(Effects, Option<AccountId>)> {
    let mut request = view.care_request(id)?.ok_or(not_found("request"))?;
    let local = remote_of(view, origin, facility)?.ok_or(not_found("facility"))?.facility.id;
    let recipient = request.recipients.iter_mut().find(|r| r.facility == local).ok_or(not_found("recipient"))?;
    if !matches!(recipient.answer, Answer::Pending | Answer::Cancelled) {
        return Err(precondition("this facility has already answered"));
    }
    let mut changes = Vec::new();
    let mut by = None;
    let mut answerer = |profile: &Profile| -> DomainResult<AccountId> {
        let (account, created) =
            shadow(view, || ids.mint().map(AccountId), (origin, sender_login(profile)?), Some(profile))?;
        changes.extend(created);
        by = Some(account.id);
        Ok(account.id)
    };
    recipient.answer = match reply {
        Reply::Accepted { by, at_ms, note } => Answer::Accepted { by: answerer(&by)?, at_ms, note: clipped(&note) },
        Reply::Declined { by, at_ms, note } => Answer::Declined { by: answerer(&by)?, at_ms, note: clipped(&note) },
        // The hub itself (account 0) declined, with its reason.
        Reply::Refused { at_ms, reason } => {
            Answer::Declined { by: AccountId(0), at_ms, note: clipped(&format!("{origin}: {reason}")) }
        }
    };
    let accepted = matches!(recipient.answer, Answer::Accepted { .. });
    let timeline = match request.patient {
        Some(p) if accepted => view.patient(p)?.map(|p| p.timeline),
        _ => None,
    };
    let mut opened = None;
    if let (Some(timeline), Some(joiner)) = (timeline, by) {
        opened = open_team(view, timeline, request.from, joiner)?.map(|change| {
            changes.push(change);
            timeline
        });
    }
    let patient = request.patient;
    changes.push(Change::Request(request));
    let mut effects = Effects::new(Outcome::Request(id), changes).event(RoomId(0), EventKind::Request { id });
    if let Some(timeline) = opened {
        effects = effects.membership(timeline);
    }
    if let Some(patient) = patient {
        effects = effects.audited(Some(patient), None, "answer request");
    }
    // Who answered, for the audit entry: their shadow, or the hub itself (account 0).
    Ok((effects, Some(by.unwrap_or(AccountId(0)))))
}

fn clipped(note: &str) -> String {
    note.chars().take(MAX_NOTE_CHARS).collect()
}

/// Also tells the hub of each remote recipient whose answer `cancel` just cancelled.
pub fn cancel_copies(
    view: &impl HubView,
    sender: &Account,
    (before, after): (&CareRequest, &CareRequest),
    mut effects: Effects,
) -> ViewResult<Effects> {
    let mut hubs = Vec::new();
    for (old, new) in before.recipients.iter().zip(&after.recipients) {
        if old.answer == new.answer {
            continue;
        }
        if let Some(f) = view.remote_facility(new.facility)?
            && !hubs.contains(&f.hub)
        {
            hubs.push(f.hub);
        }
    }
    for hub in hubs {
        effects = effects.send(hub, Message::RequestCancelled { request: before.id, from: sender.login.clone() });
    }
    Ok(effects)
}

/// `from` of hub `origin` cancelled its request `id`: what is still pending here is cancelled.
pub fn cancelled(view: &impl HubView, origin: &HubName, id: RequestId, from: &str) -> DomainResult<Effects> {
    let Some(sender) = view.account_by_login(&remote_login(from, origin))? else { return Ok(Effects::none()) };
    let mut found = None;
    for request in view.care_requests_from(sender)? {
        if view.request_link(request.id)?.is_some_and(|l| &l.hub == origin && l.home_id == id) {
            found = Some(request);
        }
    }
    let Some(mut request) = found else { return Ok(Effects::none()) };
    let mut cancelled = false;
    for r in request.recipients.iter_mut().filter(|r| r.answer == Answer::Pending) {
        r.answer = Answer::Cancelled;
        cancelled = true;
    }
    if !cancelled {
        return Ok(Effects::none());
    }
    let local = request.id;
    Ok(Effects::new(Outcome::Request(local), vec![Change::Request(request)])
        .event(RoomId(0), EventKind::Request { id: local }))
}
