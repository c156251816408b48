//! The resource map across hubs. An operator shares this hub's map with a peer
//! ([`share`]): every approved facility's directory entry crosses — its name, kind,
//! municipality and profile, never its staff or patients — and so does every later change of
//! one ([`publish`]), until the operator stops sharing, which withdraws them. The receiving hub
//! keeps them as [`RemoteFacility`] records of their hub ([`apply_facility`], [`withdrawn`]),
//! which its map lists marked with that hub. A hub only ever sends its own facilities: what it
//! received is in another table and is never shared on.

use super::copies::IdMint;
use super::names::HubName;
use super::wire::Message;
use crate::authz::operator;
use crate::error::{DomainResult, precondition};
use crate::kernel::{Effects, MAX_NAME_CHARS, Outcome, text};
use crate::model::*;
use crate::view::{Change, HubView, ViewResult};
use serde::{Deserialize, Serialize};

/// A facility's entry on the resource map, as its hub shares it: no staff, no patients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityCopy {
    /// Its id on the sender.
    pub id: FacilityId,
    pub name: String,
    pub kind: FacilityKind,
    pub municipality: String,
    pub profile: FacilityProfile,
}

/// `ShareDirectory`: an operator starts (or stops) sharing this hub's map with `peer`.
pub fn share(view: &impl HubView, actor: AccountId, peer: HubName, share: bool) -> DomainResult<Effects> {
    operator(view, actor)?;
    let sharing = view.directory_shared_with()?.contains(&peer);
    if sharing == share {
        let state = if share { "already shared with" } else { "not shared with" };
        return Err(precondition(format!("the resource map is {state} {peer}")));
    }
    let mut effects = Effects::new(Outcome::Done, vec![Change::DirectoryShare { peer: peer.clone(), share }]);
    if !share {
        return Ok(effects.send(peer, Message::DirectoryWithdrawn));
    }
    for f in view.facilities()?.iter().filter(|f| f.status == FacilityStatus::Approved) {
        effects = effects.send(peer.clone(), Message::Facility(copy_of(f)));
    }
    Ok(effects)
}

/// Also sends every approved facility that `effects` changes to each peer the map is shared
/// with (a facility approved, or its profile updated).
pub fn publish(view: &impl HubView, mut effects: Effects) -> ViewResult<Effects> {
    let changed: Vec<FacilityCopy> = effects
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Facility(f) if f.status == FacilityStatus::Approved => Some(copy_of(f)),
            _ => None,
        })
        .collect();
    if changed.is_empty() {
        return Ok(effects);
    }
    for peer in view.directory_shared_with()? {
        for copy in &changed {
            effects = effects.send(peer.clone(), Message::Facility(copy.clone()));
        }
    }
    Ok(effects)
}

fn copy_of(f: &Facility) -> FacilityCopy {
    FacilityCopy {
        id: f.id,
        name: f.name.clone(),
        kind: f.kind,
        municipality: f.municipality.clone(),
        profile: f.profile.clone(),
    }
}

/// The facility `home_id` of hub `hub`, if this hub knows it (shared or withdrawn).
pub fn remote_of(view: &impl HubView, hub: &HubName, home_id: FacilityId) -> ViewResult<Option<RemoteFacility>> {
    Ok(view.remote_facilities()?.into_iter().find(|f| &f.hub == hub && f.home_id == home_id))
}

/// Hub `origin` shares one of its facilities: it takes its place on this hub's map. An entry
/// that breaks the map's rules is refused whole.
pub fn apply_facility(
    view: &impl HubView,
    ids: &mut IdMint,
    origin: &HubName,
    copy: FacilityCopy,
) -> DomainResult<Effects> {
    text("name", &copy.name, MAX_NAME_CHARS)?;
    text("municipality", &copy.municipality, MAX_NAME_CHARS)?;
    crate::directory::check(&copy.profile)?;
    let existing = remote_of(view, origin, copy.id)?;
    let id = match &existing {
        Some(e) => e.facility.id,
        None => FacilityId(ids.mint()?),
    };
    let facility = Facility {
        id,
        name: copy.name,
        kind: copy.kind,
        municipality: copy.municipality,
        status: FacilityStatus::Approved,
        profile: copy.profile,
    };
    let remote = RemoteFacility { facility, hub: origin.clone(), home_id: copy.id, shared: true };
    let changes = match existing.as_ref() == Some(&remote) {
        true => Vec::new(),
        false => vec![Change::RemoteFacility(remote)],
    };
    Ok(Effects::new(Outcome::Done, changes))
}

/// Hub `origin` stopped sharing its map: its facilities leave ours (their records stay, so
/// requests sent to them still name them).
pub fn withdrawn(view: &impl HubView, origin: &HubName) -> DomainResult<Effects> {
    let changes = view
        .remote_facilities()?
        .into_iter()
        .filter(|f| &f.hub == origin && f.shared)
        .map(|f| Change::RemoteFacility(RemoteFacility { shared: false, ..f }))
        .collect();
    Ok(Effects::new(Outcome::Done, changes))
}
