//! The disaster board: per municipality and per facility, how many patients are checked, how
//! many need help and what kind, most urgent first; the patients' rows (for those allowed to see
//! them) and the facilities' statuses.
//!
//! Counts are for every professional of the hub (they name no patient); a patient's row only
//! for the patient's team and the operators (the disaster office), and every row shown is a read
//! of patient data the caller audits. Observations recorded on this node and still waiting for
//! the hub (`pending`) count as they would once applied, by the same merge rule, and are marked.

use std::collections::{BTreeMap, BTreeSet};

use super::{Device, Disaster, Need, Observation, Safety, Subject, declare, newest};
use crate::authz::{active_account, can_read};
use crate::error::{DomainResult, denied};
use crate::model::*;
use crate::view::HubView;

/// Which patients' rows a board lists (the counts are always of every patient).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardQuery {
    pub municipality: Option<String>,
    pub facility: Option<FacilityId>,
    pub status: Option<StatusFilter>,
    pub life_support_only: bool,
    /// At most this many rows (the most urgent).
    pub limit: usize,
}

/// A patient's state on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Unchecked,
    Safe,
    NeedsHelp,
    Unreachable,
    Evacuated,
}

impl StatusFilter {
    fn of(current: Option<&Observation>) -> StatusFilter {
        match current.and_then(Observation::safety) {
            None => StatusFilter::Unchecked,
            Some(Safety::Safe) => StatusFilter::Safe,
            Some(Safety::NeedsHelp { .. }) => StatusFilter::NeedsHelp,
            Some(Safety::Unreachable) => StatusFilter::Unreachable,
            Some(Safety::Evacuated { .. }) => StatusFilter::Evacuated,
        }
    }
}

/// Counts of one municipality's or facility's patients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub patients: u32,
    pub checked: u32,
    pub safe: u32,
    pub needs_help: u32,
    pub unreachable: u32,
    pub evacuated: u32,
    /// Patients whose life depends on power or oxygen.
    pub life_support: u32,
    pub life_support_unchecked: u32,
    /// How many need each kind of help, in [`Need::ALL`]'s order.
    pub needs: [u32; 5],
}

impl Tally {
    fn count(&mut self, row: &PatientRow) {
        self.patients += 1;
        let life = !row.devices.is_empty();
        self.life_support += u32::from(life);
        match row.current.as_ref().and_then(Observation::safety) {
            None => self.life_support_unchecked += u32::from(life),
            Some(safety) => {
                self.checked += 1;
                match safety {
                    Safety::Safe => self.safe += 1,
                    Safety::Unreachable => self.unreachable += 1,
                    Safety::Evacuated { .. } => self.evacuated += 1,
                    Safety::NeedsHelp { needs } => {
                        self.needs_help += 1;
                        for need in needs {
                            self.needs[need_index(*need)] += 1;
                        }
                    }
                }
            }
        }
    }

    /// Most urgent first: more patients needing help, then more life-support patients not
    /// checked, then more unchecked.
    fn urgency_key(&self) -> (std::cmp::Reverse<u32>, std::cmp::Reverse<u32>, std::cmp::Reverse<u32>) {
        use std::cmp::Reverse;
        (Reverse(self.needs_help), Reverse(self.life_support_unchecked), Reverse(self.patients - self.checked))
    }
}

fn need_index(need: Need) -> usize {
    Need::ALL.iter().position(|n| *n == need).unwrap_or(0)
}

/// One patient on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRow {
    pub patient: PatientId,
    pub name: String,
    pub municipality: String,
    pub devices: Vec<Device>,
    /// The current safety check (applied or pending here), if any.
    pub current: Option<Observation>,
    /// The current check was recorded on this node and waits for the hub.
    pub pending: bool,
    /// Facilities of the patient's team.
    facilities: BTreeSet<FacilityId>,
}

impl PatientRow {
    /// 0 is most urgent: needing power or oxygen (or any help, on life support); needing help;
    /// unreachable on life support; unchecked on life support; unreachable; unchecked;
    /// evacuated; safe.
    pub fn urgency(&self) -> u8 {
        let life = !self.devices.is_empty();
        match (self.current.as_ref().and_then(Observation::safety), life) {
            (Some(Safety::NeedsHelp { needs }), life) if life || needs.iter().any(|n| n.is_vital()) => 0,
            (Some(Safety::NeedsHelp { .. }), _) => 1,
            (Some(Safety::Unreachable), true) => 2,
            (None, true) => 3,
            (Some(Safety::Unreachable), false) => 4,
            (None, false) => 5,
            (Some(Safety::Evacuated { .. }), _) => 6,
            (Some(Safety::Safe), _) => 7,
        }
    }
}

/// One facility on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityRow {
    pub facility: FacilityId,
    pub name: String,
    pub municipality: String,
    pub current: Option<Observation>,
    pub pending: bool,
}

/// The board of one disaster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub disaster: Disaster,
    pub total: Tally,
    pub by_municipality: Vec<(String, Tally)>,
    pub by_facility: Vec<(FacilityId, String, Tally)>,
    /// The rows the viewer may see that match the query, most urgent first, at most its limit.
    pub patients: Vec<PatientRow>,
    /// How many rows matched before the limit.
    pub matching: usize,
    pub facilities: Vec<FacilityRow>,
}

/// The board of `disaster` for `viewer`; `pending`: observations this node holds for the hub.
pub fn board(
    view: &impl HubView,
    viewer: AccountId,
    disaster: DisasterId,
    query: &BoardQuery,
    pending: &[Observation],
) -> DomainResult<Board> {
    let account = may_see_board(view, viewer)?;
    let disaster = declare::find(view, disaster)?;
    let pending = pending_of(view, &disaster, pending)?;
    let rows = patient_rows(view, &disaster, &pending)?;
    let total = rows.iter().fold(Tally::default(), |mut t, r| {
        t.count(r);
        t
    });
    let by_municipality = tallies(&rows, |r| vec![r.municipality.clone()]);
    let by_facility = tallies(&rows, |r| r.facilities.iter().copied().collect())
        .into_iter()
        .map(|(f, t)| Ok((f, facility_name(view, f)?, t)))
        .collect::<DomainResult<Vec<_>>>()?;
    let mut visible = Vec::new();
    for row in rows.into_iter().filter(|r| matches(r, query)) {
        if account.is_operator() || can_read(view, viewer, timeline_of(view, row.patient)?)? {
            visible.push(row);
        }
    }
    visible.sort_by(|a, b| (a.urgency(), &a.municipality, a.patient).cmp(&(b.urgency(), &b.municipality, b.patient)));
    let matching = visible.len();
    visible.truncate(query.limit);
    let facilities = facility_rows(view, &disaster, &pending)?;
    Ok(Board { disaster, total, by_municipality, by_facility, patients: visible, matching, facilities })
}

/// The records this node holds for the hub that belong to `disaster`: those naming it, and those
/// made before the node heard of any disaster ([`super::observe::UNDECLARED`]) about a subject
/// in its municipalities (apply files them under the disaster covering their subject then).
pub fn pending_of(view: &impl HubView, disaster: &Disaster, pending: &[Observation]) -> DomainResult<Vec<Observation>> {
    let mut out = Vec::new();
    for o in pending {
        let belongs = o.disaster == disaster.id
            || (o.disaster == super::observe::UNDECLARED && disaster.covers(&municipality_of(view, o.subject)?));
        if belongs {
            out.push(Observation { disaster: disaster.id, ..o.clone() });
        }
    }
    Ok(out)
}

/// Where a subject is: a patient's care profile's municipality, a facility's own.
pub(super) fn municipality_of(view: &impl HubView, subject: Subject) -> DomainResult<String> {
    Ok(match subject {
        Subject::Patient(p) => view.care_profile(p)?.map(|c| c.municipality).unwrap_or_default(),
        Subject::Facility(f) => view.facility(f)?.map(|f| f.municipality).unwrap_or_default(),
    })
}

/// Operators and active professionals of the hub see boards; family accounts do not.
pub fn may_see_board(view: &impl HubView, viewer: AccountId) -> DomainResult<Account> {
    let account = active_account(view, viewer)?;
    if !(account.is_operator() || account.is_professional()) {
        return Err(denied("災害ボードは専門職と事務局が見られます"));
    }
    Ok(account)
}

/// Every observation of `subject` in `disaster`, oldest first, then the ones pending here: for
/// the team (a patient) or any professional (a facility).
pub fn history(
    view: &impl HubView,
    viewer: AccountId,
    disaster: DisasterId,
    subject: Subject,
) -> DomainResult<Vec<Observation>> {
    let account = active_account(view, viewer)?;
    declare::find(view, disaster)?;
    match subject {
        Subject::Patient(patient) => {
            let timeline = timeline_of(view, patient)?;
            if !account.is_operator() && !can_read(view, viewer, timeline)? {
                return Err(crate::error::not_found("patient"));
            }
        }
        Subject::Facility(_) => {
            may_see_board(view, viewer)?;
        }
    }
    Ok(view.observations_of(disaster, subject)?)
}

fn timeline_of(view: &impl HubView, patient: PatientId) -> DomainResult<RoomId> {
    Ok(view.patient(patient)?.ok_or(crate::error::not_found("patient"))?.timeline)
}

fn facility_name(view: &impl HubView, f: FacilityId) -> DomainResult<String> {
    Ok(view.facility(f)?.map(|f| f.name).unwrap_or_default())
}

fn matches(row: &PatientRow, q: &BoardQuery) -> bool {
    q.municipality.as_ref().is_none_or(|m| *m == row.municipality)
        && q.facility.is_none_or(|f| row.facilities.contains(&f))
        && q.status.is_none_or(|s| s == StatusFilter::of(row.current.as_ref()))
        && (!q.life_support_only || !row.devices.is_empty())
}

/// Counts per key (a row may count under several: a patient's team spans facilities), most
/// urgent first.
fn tallies<K: Ord + Clone>(rows: &[PatientRow], keys: impl Fn(&PatientRow) -> Vec<K>) -> Vec<(K, Tally)> {
    let mut by: BTreeMap<K, Tally> = BTreeMap::new();
    for row in rows {
        for key in keys(row) {
            by.entry(key).or_default().count(row);
        }
    }
    let mut out: Vec<(K, Tally)> = by.into_iter().collect();
    out.sort_by(|(ka, a), (kb, b)| (a.urgency_key(), ka).cmp(&(b.urgency_key(), kb)));
    out
}

/// The disaster's patients: those living in its municipalities, and any other with a check in it.
fn patient_rows(view: &impl HubView, disaster: &Disaster, pending: &[Observation]) -> DomainResult<Vec<PatientRow>> {
    let mut current: BTreeMap<PatientId, Observation> = BTreeMap::new();
    for o in view.current_observations(disaster.id)? {
        if let Subject::Patient(p) = o.subject {
            current.insert(p, o);
        }
    }
    let mut waiting: BTreeMap<PatientId, &Observation> = BTreeMap::new();
    for o in pending.iter().filter(|o| o.disaster == disaster.id) {
        if let Subject::Patient(p) = o.subject {
            let best = newest(waiting.get(&p).copied(), Some(o));
            waiting.insert(p, best.unwrap_or(o));
        }
    }
    let mut patients: BTreeSet<PatientId> = current.keys().chain(waiting.keys()).copied().collect();
    for m in &disaster.municipalities {
        patients.extend(view.patients_in(m)?);
    }
    let mut rows = Vec::with_capacity(patients.len());
    for id in patients {
        let Some(patient) = view.patient(id)? else { continue };
        let profile = view.care_profile(id)?.unwrap_or_default();
        let applied = current.remove(&id);
        let here = waiting.get(&id).copied();
        let (best, pending) = latest_of(applied.as_ref(), here);
        rows.push(PatientRow {
            patient: id,
            name: patient.name,
            municipality: profile.municipality,
            devices: profile.devices,
            current: best,
            pending,
            facilities: team_facilities(view, patient.timeline)?,
        });
    }
    Ok(rows)
}

/// The facilities of a timeline's active professionals.
fn team_facilities(view: &impl HubView, timeline: RoomId) -> DomainResult<BTreeSet<FacilityId>> {
    let mut out = BTreeSet::new();
    for member in view.members(timeline)?.into_iter().filter(|m| m.is_active()) {
        if let Some(f) = view.account(member.account)?.and_then(|a| a.facility()) {
            out.insert(f);
        }
    }
    Ok(out)
}

/// The approved facilities of the disaster's municipalities, and any other with a status in it.
fn facility_rows(view: &impl HubView, disaster: &Disaster, pending: &[Observation]) -> DomainResult<Vec<FacilityRow>> {
    let mut current: BTreeMap<FacilityId, Observation> = BTreeMap::new();
    for o in view.current_observations(disaster.id)? {
        if let Subject::Facility(f) = o.subject {
            current.insert(f, o);
        }
    }
    let mut rows = Vec::new();
    for f in view.facilities()? {
        let here = pending
            .iter()
            .filter(|o| o.disaster == disaster.id && o.subject == Subject::Facility(f.id))
            .fold(None, |best, o| newest(best, Some(o)));
        let applied = current.remove(&f.id);
        let in_area = f.status == FacilityStatus::Approved && disaster.covers(&f.municipality);
        if !in_area && applied.is_none() && here.is_none() {
            continue;
        }
        let (best, pending) = latest_of(applied.as_ref(), here);
        rows.push(FacilityRow { facility: f.id, name: f.name, municipality: f.municipality, current: best, pending });
    }
    Ok(rows)
}

/// A facility's latest status in the disasters in force (for the resource map), if reported,
/// and whether it is one recorded on this node that waits for the hub (`pending`).
pub fn facility_status_now(
    view: &impl HubView,
    facility: FacilityId,
    disasters: &[Disaster],
    pending: &[Observation],
) -> crate::view::ViewResult<Option<(Observation, bool)>> {
    let (mut applied, mut here): (Option<Observation>, Option<&Observation>) = (None, None);
    for d in disasters.iter().filter(|d| d.is_active()) {
        let current = view.current_observation(d.id, Subject::Facility(facility))?;
        applied = newest(applied.as_ref(), current.as_ref()).cloned();
        let waiting = pending.iter().filter(|o| o.disaster == d.id && o.subject == Subject::Facility(facility));
        here = waiting.fold(here, |best, o| newest(best, Some(o)));
    }
    let (best, pending) = latest_of(applied.as_ref(), here);
    Ok(best.map(|b| (b, pending)))
}

/// The latest of a subject's applied record and the newest one waiting on this node, and
/// whether that latest is the waiting one (not yet applied).
fn latest_of(applied: Option<&Observation>, here: Option<&Observation>) -> (Option<Observation>, bool) {
    let best = newest(applied, here).cloned();
    let pending = matches!((&best, here), (Some(b), Some(h)) if b.id == h.id && applied.is_none_or(|a| a.id != h.id));
    (best, pending)
}
