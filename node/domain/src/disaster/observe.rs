//! Recording safety checks and facility statuses. [`check`] is the one rule of who may record
//! what: the node where a record is made runs it before journaling (so a user learns at once),
//! and apply runs it again on the replicated state when the record reaches the log
//! ([`record`]) — the same on every replica, however late the record arrives.

use std::collections::BTreeSet;

use super::{Fate, Need, Observation, ObservationId, Report, Safety, Subject, declare};
use crate::audit::{AuditAction, AuditRecord};
use crate::authz::{active_account, can_read};
use crate::error::{DomainError, DomainResult, denied, invalid, not_found, precondition};
use crate::events::{EventKind, Raised};
use crate::kernel::{Ctx, optional_text};
use crate::model::*;
use crate::view::{Change, HubState, HubView, ViewResult};

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// Longest evacuation place, in characters.
pub const MAX_PLACE_CHARS: usize = 100;
/// Most beds or visits a facility may report.
pub const MAX_AVAILABLE: u32 = 100_000;
/// At most this many observations in one log entry (the shipper's batch).
pub const MAX_PER_ENTRY: usize = 200;

/// An observation made before its node heard of any disaster (a region cut off before the
/// declaration reached it) names this one: apply files it under the disaster that covers its
/// subject's municipality then ([`covering`]).
pub const UNDECLARED: DisasterId = DisasterId(0);

/// Whether `o` may be recorded on the state `view`: well formed, for a disaster it belongs to
/// (any, for [`UNDECLARED`]), by an author who may (a patient's team for its safety check; a
/// facility's staff, or an operator taking a report by phone, for its status).
pub fn check(view: &impl HubView, o: &Observation) -> DomainResult<()> {
    well_formed(o)?;
    if o.disaster != UNDECLARED {
        let disaster = declare::find(view, o.disaster)?;
        if !disaster.open_at(o.observed_at_ms) {
            return Err(precondition("この災害は終了しています"));
        }
    }
    let author = active_account(view, o.author)?;
    match o.subject {
        Subject::Patient(patient) => {
            let timeline = view.patient(patient)?.ok_or(not_found("patient"))?.timeline;
            // The team: the timeline's active members (its professionals and the family).
            if !can_read(view, o.author, timeline)? {
                return Err(not_found("patient"));
            }
        }
        Subject::Facility(facility) => {
            view.facility(facility)?.ok_or(not_found("facility"))?;
            if !author.is_operator() && author.facility() != Some(facility) {
                return Err(denied("施設の状況を報告できるのは、その施設の職員か事務局だけです"));
            }
        }
    }
    Ok(())
}

/// The disaster an [`UNDECLARED`] observation belongs to: of those not ended when it was made,
/// covering its subject's municipality (a patient's care profile, a facility's own), the one
/// declared last. Decided in apply, so the same on every replica.
fn covering(view: &impl HubView, o: &Observation) -> DomainResult<DisasterId> {
    let municipality = super::board::municipality_of(view, o.subject)?;
    let candidates = view.disasters()?.into_iter().filter(|d| d.open_at(o.observed_at_ms) && d.covers(&municipality));
    let newest = candidates.max_by_key(|d| (d.started_at_ms, d.id));
    newest.map(|d| d.id).ok_or_else(|| precondition("記録した地域に災害が宣言されていません"))
}

/// The shape rules: the report fits the subject, the texts their limits.
fn well_formed(o: &Observation) -> DomainResult<()> {
    optional_text("note", &o.note, MAX_NOTE_CHARS)?;
    match (&o.subject, &o.report) {
        (Subject::Patient(_), Report::Safety(safety)) => match safety {
            Safety::NeedsHelp { needs } => {
                let distinct: BTreeSet<&Need> = needs.iter().collect();
                if needs.is_empty() || distinct.len() != needs.len() {
                    return Err(invalid("要支援には、必要な支援を（重複なく）1つ以上選んでください"));
                }
                Ok(())
            }
            Safety::Evacuated { to } => crate::kernel::text("evacuated to", to, MAX_PLACE_CHARS),
            Safety::Safe | Safety::Unreachable => Ok(()),
        },
        (Subject::Facility(_), Report::Facility(state)) if state.available > MAX_AVAILABLE => {
            Err(invalid(format!("available must be at most {MAX_AVAILABLE}")))
        }
        (Subject::Facility(_), Report::Facility(_)) => Ok(()),
        _ => Err(invalid("a patient gets a safety check, a facility a status")),
    }
}

/// What applying a batch of observations did.
#[derive(Debug, Default)]
pub struct Recorded {
    pub applied: u32,
    /// Shipped before (a retry, or the same record shipped by the node and its shipper).
    pub duplicates: u32,
    /// Refused by [`check`] on the state they met: remembered, never applied.
    pub refused: u32,
    /// What became of each observation of the batch (a duplicate: its first fate).
    pub fates: Vec<(ObservationId, Fate)>,
    pub audit: Vec<AuditRecord>,
    pub events: Vec<Raised>,
}

/// Applies `observations` shipped by a node: each once (its id is remembered), in the subject's
/// history, and as its current state if it supersedes the one there ([`Observation::supersedes`]).
/// An observation's time is capped at the log's clock, so a node with a fast clock cannot
/// keep a stale record on top.
pub fn record(state: &mut impl HubState, ctx: Ctx, observations: Vec<Observation>) -> ViewResult<Recorded> {
    let mut recorded = Recorded::default();
    let mut disasters = BTreeSet::new();
    for mut o in observations.into_iter().take(MAX_PER_ENTRY) {
        if let Some(fate) = state.observation_fate(o.id)? {
            recorded.duplicates += 1;
            recorded.fates.push((o.id, fate));
            continue;
        }
        o.observed_at_ms = o.observed_at_ms.min(ctx.now_ms);
        let decided = match o.disaster {
            UNDECLARED => covering(state, &o).map(|d| o.disaster = d),
            _ => Ok(()),
        };
        match decided.and_then(|()| check(state, &o)) {
            Ok(()) => {}
            Err(DomainError::Unreadable(fault)) => return Err(fault),
            Err(refusal) => {
                state.apply(vec![Change::ObservationRefused { id: o.id, refusal: refusal.clone() }]);
                recorded.refused += 1;
                recorded.fates.push((o.id, Fate::Refused(refusal)));
                continue;
            }
        }
        if let Some(record) = audit_record(state, ctx, &o)? {
            recorded.audit.push(record);
        }
        let current = state.current_observation(o.disaster, o.subject)?;
        let supersedes = current.is_none_or(|c| o.supersedes(&c));
        disasters.insert(o.disaster);
        recorded.fates.push((o.id, Fate::Applied { disaster: o.disaster, subject: o.subject }));
        state.apply(vec![Change::Observation { observation: o, current: supersedes }]);
        recorded.applied += 1;
    }
    let max_events = crate::events::EVENTS_PER_ENTRY as usize;
    recorded.events = disasters
        .into_iter()
        .take(max_events)
        .map(|disaster| Raised { room: RoomId(0), kind: EventKind::Observed { disaster } })
        .collect();
    Ok(recorded)
}

/// A safety check is a write of patient data: the audit chain names its author, session and node.
fn audit_record(view: &impl HubView, ctx: Ctx, o: &Observation) -> ViewResult<Option<AuditRecord>> {
    let Subject::Patient(patient) = o.subject else { return Ok(None) };
    let room = view.patient(patient)?.map(|p| p.timeline);
    Ok(Some(AuditRecord {
        at_ms: ctx.now_ms,
        account: o.author,
        session: o.session.clone(),
        node: o.node,
        action: AuditAction::Write,
        patient: Some(patient),
        room,
        what: format!("安否確認の記録 ({})", o.safety().map_or("", Safety::label)),
        #[cfg(test)]
        added_later: None,
    }))
}
