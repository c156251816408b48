//! A patient's care profile for disasters: the municipality they live in and the devices their
//! life depends on. Set by the patient's team, read by the board.

use super::{CareProfile, Device};
use crate::authz::{active_account, can_read};
use crate::error::{DomainResult, invalid, not_found};
use crate::kernel::{Ctx, Effects, Outcome};
use crate::model::*;
use crate::view::{Change, HubView};

/// `SetCareProfile`: a member of the patient's team (or an admin of the patient's facility)
/// says where the patient lives and which devices they depend on.
pub fn set(
    view: &impl HubView,
    _ctx: Ctx,
    actor: AccountId,
    patient: PatientId,
    (municipality, devices): (String, Vec<Device>),
) -> DomainResult<Effects> {
    let found = view.patient(patient)?.ok_or(not_found("patient"))?;
    on_team_or_admin(view, actor, &found)?;
    let municipality = match municipality.trim() {
        "" => String::new(),
        m => super::declare::checked_municipality(m)?,
    };
    let mut devices = devices;
    devices.sort();
    devices.dedup();
    if devices.len() > 8 {
        return Err(invalid("too many devices"));
    }
    let profile = CareProfile { municipality, devices };
    Ok(Effects::new(Outcome::Done, vec![Change::CareProfile { patient, profile }]).audited(
        Some(patient),
        Some(found.timeline),
        "災害時情報の設定",
    ))
}

/// An active member of the patient's timeline, or an admin of the patient's facility.
pub(super) fn on_team_or_admin(view: &impl HubView, actor: AccountId, patient: &Patient) -> DomainResult<()> {
    let account = active_account(view, actor)?;
    if account.facility_admin && account.facility() == Some(patient.facility) {
        return Ok(());
    }
    if can_read(view, actor, patient.timeline)? { Ok(()) } else { Err(not_found("patient")) }
}

/// A patient's care profile (the default if never set), for the team, an admin of the patient's
/// facility and the operators.
pub fn get(view: &impl HubView, viewer: AccountId, patient: PatientId) -> DomainResult<CareProfile> {
    let found = view.patient(patient)?.ok_or(not_found("patient"))?;
    if !active_account(view, viewer)?.is_operator() {
        on_team_or_admin(view, viewer, &found)?;
    }
    Ok(view.care_profile(patient)?.unwrap_or_default())
}
