//! Declaring and ending a disaster, and who may.

use super::{Disaster, DisasterPolicy};
use crate::authz::{self, active_account};
use crate::error::{DomainResult, denied, invalid, not_found, precondition};
use crate::events::EventKind;
use crate::kernel::{Ctx, Effects, MAX_NAME_CHARS, Outcome, text};
use crate::model::*;
use crate::view::{Change, HubView};

/// At most this many municipalities in one declaration.
pub const MAX_MUNICIPALITIES: usize = 64;
/// Longest municipality name, in characters (「上都賀郡西方町」 and the like fit).
pub const MAX_MUNICIPALITY_CHARS: usize = 20;
/// A disaster declared late may say it began this long before (a flood in the night).
pub const MAX_BACKDATE_MS: u64 = 7 * 24 * 3_600_000;

/// `DeclareDisaster`: an operator declares a disaster for municipalities of the hub; a facility
/// admin may too, for its own facility's municipality only, if the hub allows it.
pub fn declare(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (name, started_at_ms): (String, Option<u64>),
    municipalities: Vec<String>,
) -> DomainResult<Effects> {
    // Who first, and the list's length before anything scans it: apply runs this on every replica.
    active_account(view, actor)?;
    if municipalities.is_empty() || municipalities.len() > MAX_MUNICIPALITIES {
        return Err(invalid(format!("name 1..={MAX_MUNICIPALITIES} municipalities")));
    }
    text("disaster name", &name, MAX_NAME_CHARS)?;
    let started_at_ms = started_at_ms.unwrap_or(ctx.now_ms);
    if started_at_ms > ctx.now_ms || started_at_ms < ctx.now_ms.saturating_sub(MAX_BACKDATE_MS) {
        return Err(invalid("災害の開始は、現在から7日前までの時刻にしてください"));
    }
    let municipalities = checked_municipalities(municipalities)?;
    may_declare(view, actor, &municipalities)?;
    let disaster = Disaster {
        id: DisasterId(ctx.log_index),
        name: name.trim().to_owned(),
        municipalities,
        started_at_ms,
        declared_by: actor,
        ended_at_ms: None,
    };
    let id = disaster.id;
    Ok(Effects::new(Outcome::Disaster(id), vec![Change::Disaster(disaster)])
        .event(RoomId(0), EventKind::Disaster { id }))
}

/// `EndDisaster`: whoever declared it, or an operator, ends it.
pub fn end(view: &impl HubView, ctx: Ctx, actor: AccountId, id: DisasterId) -> DomainResult<Effects> {
    let account = active_account(view, actor)?;
    let mut disaster = find(view, id)?;
    if !account.is_operator() && disaster.declared_by != actor {
        return Err(denied("災害を終了できるのは、宣言した人か事務局だけです"));
    }
    if !disaster.is_active() {
        return Err(precondition("この災害はすでに終了しています"));
    }
    disaster.ended_at_ms = Some(ctx.now_ms);
    Ok(Effects::new(Outcome::Disaster(id), vec![Change::Disaster(disaster)])
        .event(RoomId(0), EventKind::Disaster { id }))
}

/// `SetDisasterPolicy`: operators allow (or no longer allow) facility admins to declare.
pub fn set_policy(view: &impl HubView, actor: AccountId, policy: DisasterPolicy) -> DomainResult<Effects> {
    authz::operator(view, actor)?;
    Ok(Effects::new(Outcome::Done, vec![Change::DisasterPolicy(policy)]))
}

/// The disaster `id`, ended or not.
pub fn find(view: &impl HubView, id: DisasterId) -> DomainResult<Disaster> {
    view.disasters()?.into_iter().find(|d| d.id == id).ok_or(not_found("disaster"))
}

/// Every disaster, the ones in force first, newest first.
pub fn list(view: &impl HubView, viewer: AccountId) -> DomainResult<Vec<Disaster>> {
    active_account(view, viewer)?;
    let mut all = view.disasters()?;
    all.sort_by_key(|d| (!d.is_active(), std::cmp::Reverse(d.started_at_ms)));
    Ok(all)
}

/// Who a disaster concerns: the active staff of the approved facilities in its municipalities
/// and the active members of the teams of the patients living there. (The operators declared
/// it: the hub keeps no index of them to notify the others.)
pub fn concerned(view: &impl HubView, disaster: &Disaster) -> crate::view::ViewResult<Vec<AccountId>> {
    let mut out = std::collections::BTreeSet::new();
    for f in view.facilities()? {
        if f.status == FacilityStatus::Approved && disaster.covers(&f.municipality) {
            out.extend(view.staff_of(f.id)?.into_iter().filter(|a| a.is_active()).map(|a| a.id));
        }
    }
    for m in &disaster.municipalities {
        for patient in view.patients_in(m)? {
            let Some(p) = view.patient(patient)? else { continue };
            out.extend(view.members(p.timeline)?.into_iter().filter(|m| m.is_active()).map(|m| m.account));
        }
    }
    Ok(out.into_iter().collect())
}

fn may_declare(view: &impl HubView, actor: AccountId, municipalities: &[String]) -> DomainResult<()> {
    let account = active_account(view, actor)?;
    if account.is_operator() {
        return Ok(());
    }
    if !account.facility_admin || !view.disaster_policy()?.admins_may_declare {
        return Err(denied("災害を宣言できるのは事務局（ハブが認めた場合は施設管理者）だけです"));
    }
    let own = match account.facility() {
        Some(f) => view.facility(f)?.ok_or(not_found("facility"))?.municipality,
        None => return Err(denied("施設に所属していません")),
    };
    if municipalities.iter().any(|m| *m != own) {
        return Err(denied(format!("施設管理者が宣言できるのは自施設の市町村（{own}）だけです")));
    }
    Ok(())
}

/// Trimmed, each a name, no repeats, in the order given (at most [`MAX_MUNICIPALITIES`]: the
/// caller checked the count).
fn checked_municipalities(municipalities: Vec<String>) -> DomainResult<Vec<String>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in municipalities {
        let m = checked_municipality(&m)?;
        if seen.insert(m.clone()) {
            out.push(m);
        }
    }
    Ok(out)
}

/// A municipality name as a patient's profile or a declaration holds it.
pub(super) fn checked_municipality(m: &str) -> DomainResult<String> {
    let m = m.trim();
    text("municipality", m, MAX_MUNICIPALITY_CHARS)?;
    Ok(m.to_owned())
}
