//! The resource map (医療介護資源マップ): every approved facility of the hub with its profile —
//! address, location, phone, services, whether it takes new patients — searchable by kind,
//! municipality, service, words and distance from a point. Professionals and operators use it to
//! find partners; from a facility's page they connect with its staff or send it a request.
//! Family accounts do not see it (it is a professionals' directory). Facilities of peer hubs
//! that share their map with this one are on it too, each marked with its hub
//! (`federation::map`).

use super::authz::{active_account, facility_admin};
use super::error::{DomainResult, denied, invalid, not_found};
use super::federation::HubName;
use super::kernel::{Effects, Outcome, optional_text, text};
use super::model::*;
use super::view::{Change, HubView, ViewResult};

pub use super::model::{FacilityProfile, GeoPoint};

pub(crate) const MAX_ADDRESS_CHARS: usize = 200;
/// The longest words, municipality or service a facility search takes.
const MAX_SEARCH_CHARS: usize = 100;
/// More kinds than there are only repeat some.
const MAX_SEARCH_KINDS: usize = 16;
const MAX_PHONE_CHARS: usize = 30;
const MAX_SERVICES: usize = 30;
const MAX_SERVICE_CHARS: usize = 40;
const MAX_NOTE_CHARS: usize = 2_000;

/// A search of the map. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub kinds: Vec<FacilityKind>,
    pub municipality: String,
    /// Facilities offering this service (exact tag).
    pub service: String,
    /// Words found in the name, address, services or note (Japanese: substring match).
    pub words: String,
    pub accepting_only: bool,
    /// Only within `radius_m` of this point, nearest first.
    pub near: Option<(GeoPoint, u64)>,
}

pub(crate) fn check(profile: &FacilityProfile) -> DomainResult<()> {
    optional_text("address", &profile.address, MAX_ADDRESS_CHARS)?;
    optional_text("note", &profile.note, MAX_NOTE_CHARS)?;
    optional_text("phone", &profile.phone, MAX_PHONE_CHARS)?;
    if !profile.phone.chars().all(|c| c.is_ascii_digit() || "-+() ".contains(c)) {
        return Err(invalid("phone may hold digits, spaces and - + ( ) only"));
    }
    if profile.services.len() > MAX_SERVICES {
        return Err(invalid(format!("at most {MAX_SERVICES} services")));
    }
    for s in &profile.services {
        text("service", s, MAX_SERVICE_CHARS)?;
    }
    if profile.location.is_some_and(|p| !p.is_valid()) {
        return Err(invalid("location must be a latitude within ±90° and a longitude within ±180°"));
    }
    Ok(())
}

/// A facility's admin (or an operator) replaces its profile.
pub fn update_profile(
    view: &impl HubView,
    actor: AccountId,
    facility: FacilityId,
    profile: FacilityProfile,
) -> DomainResult<Effects> {
    facility_admin(view, actor, facility)?;
    let mut f = view.facility(facility)?.ok_or(not_found("facility"))?;
    check(&profile)?;
    f.profile = profile;
    Ok(Effects::new(Outcome::Facility(facility), vec![Change::Facility(f)]))
}

/// Professionals and operators only.
fn reader(view: &impl HubView, actor: AccountId) -> DomainResult<Account> {
    let account = active_account(view, actor)?;
    if matches!(account.kind, AccountKind::Family { .. }) {
        return Err(denied("the resource map is for professionals"));
    }
    Ok(account)
}

fn matches(f: &Facility, s: &Search) -> bool {
    let p = &f.profile;
    let words_match = || {
        s.words.split_whitespace().all(|w| {
            f.name.contains(w)
                || p.address.contains(w)
                || p.note.contains(w)
                || p.services.iter().any(|x| x.contains(w))
        })
    };
    f.status == FacilityStatus::Approved
        && (s.kinds.is_empty() || s.kinds.contains(&f.kind))
        && (s.municipality.is_empty() || f.municipality == s.municipality)
        && (s.service.is_empty() || p.services.contains(&s.service))
        && (!s.accepting_only || p.accepting_new_patients)
        && words_match()
}

/// A facility on the map: this hub's (`hub` None) or one another hub shares with this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub facility: Facility,
    pub hub: Option<HubName>,
    /// From the search point, when searching near one.
    pub distance_m: Option<u64>,
}

/// Every facility on the map: this hub's approved ones and those other hubs share.
fn on_the_map(view: &impl HubView) -> ViewResult<Vec<Found>> {
    let ours = view.facilities()?.into_iter().filter(|f| f.status == FacilityStatus::Approved);
    let mut all: Vec<Found> = ours.map(|facility| Found { facility, hub: None, distance_m: None }).collect();
    let shared = view.remote_facilities()?.into_iter().filter(|f| f.shared);
    all.extend(shared.map(|f| Found { facility: f.facility, hub: Some(f.hub), distance_m: None }));
    Ok(all)
}

/// Facilities on the map matching `search`, with their distance when searching near a point:
/// nearest first then; otherwise by municipality and name. At most `limit`.
pub fn search(view: &impl HubView, actor: AccountId, s: &Search, limit: usize) -> DomainResult<Vec<Found>> {
    reader(view, actor)?;
    if s.near.is_some_and(|(p, _)| !p.is_valid()) {
        return Err(invalid("the search point must be a latitude within ±90° and a longitude within ±180°"));
    }
    // Each facility is matched against every word: a search stays as short as people type.
    for (field, value) in [("words", &s.words), ("municipality", &s.municipality), ("service", &s.service)] {
        if value.chars().count() > MAX_SEARCH_CHARS {
            return Err(invalid(format!("{field} must be at most {MAX_SEARCH_CHARS} characters")));
        }
    }
    if s.kinds.len() > MAX_SEARCH_KINDS {
        return Err(invalid(format!("at most {MAX_SEARCH_KINDS} kinds of facility")));
    }
    let mut found: Vec<Found> = on_the_map(view)?
        .into_iter()
        .filter(|f| matches(&f.facility, s))
        .filter_map(|f| match s.near {
            None => Some(f),
            Some((point, radius)) => {
                let d = f.facility.profile.location.map(|l| l.distance_m(point))?;
                (d <= radius).then_some(Found { distance_m: Some(d), ..f })
            }
        })
        .collect();
    found.sort_by(|a, b| {
        let key = |f: &Found| (f.distance_m, f.facility.municipality.clone(), f.facility.name.clone());
        key(a).cmp(&key(b))
    });
    found.truncate(limit);
    Ok(found)
}

/// A facility's page: the facility and its active professionals (to connect with). A facility
/// of another hub has no staff here: staff never cross with the map.
pub fn page(view: &impl HubView, actor: AccountId, facility: FacilityId) -> DomainResult<(Found, Vec<Account>)> {
    reader(view, actor)?;
    if let Some(f) = view.remote_facility(facility)?.filter(|f| f.shared) {
        return Ok((Found { facility: f.facility, hub: Some(f.hub), distance_m: None }, Vec::new()));
    }
    let f = view.facility(facility)?.filter(|f| f.status == FacilityStatus::Approved).ok_or(not_found("facility"))?;
    let mut staff: Vec<Account> = view.staff_of(facility)?.into_iter().filter(Account::is_active).collect();
    staff.sort_by_key(|a| a.id);
    Ok((Found { facility: f, hub: None, distance_m: None }, staff))
}

/// The name and hub (None: this hub) of a facility a request names: this hub's, or one of
/// another hub's map (also once withdrawn).
pub fn facility_label(view: &impl HubView, facility: FacilityId) -> ViewResult<Option<(String, Option<HubName>)>> {
    if let Some(f) = view.facility(facility)? {
        return Ok(Some((f.name, None)));
    }
    Ok(view.remote_facility(facility)?.map(|f| (f.facility.name, Some(f.hub))))
}
