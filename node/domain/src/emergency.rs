//! Emergency access (緊急アクセス, break-glass): in a disaster or an emergency a designated
//! professional — an emergency physician, the prefecture's disaster medical coordinator —
//! reads a patient's timeline without being on the team. Only accounts an operator designated
//! may do it, only with a stated reason, only for [`ACCESS_MS`], read-only; opening it is a
//! write in the audit chain, every read under it is audited as an emergency read, and the
//! operators see every access with its reason ([`accesses`], and the metric
//! `kizuna_emergency_accesses_opened_total`, which an alert watches).
//!
//! Operators themselves read no medical content: they are on no team. An operator who must
//! look (a complaint, an incident) designates their own account, which is itself in the audit
//! chain, and opens an access like anyone: time-limited, with a reason, audited.

use serde::{Deserialize, Serialize};

use super::authz::{self, active_account};
use super::error::{DomainResult, denied, invalid, not_found, precondition};
use super::kernel::{Ctx, Effects, Outcome};
use super::model::*;
use super::view::{Change, HubView};

/// How long an emergency access lasts.
pub const ACCESS_MS: u64 = 4 * 60 * 60 * 1000;
/// A stated reason, in characters.
pub const REASON_CHARS: std::ops::RangeInclusive<usize> = 10..=500;

/// An account an operator designated for emergency access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Designation {
    pub by: AccountId,
    pub at_ms: u64,
}

/// One emergency access to a patient's room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyAccess {
    pub account: AccountId,
    pub room: RoomId,
    pub patient: PatientId,
    pub reason: String,
    pub opened_at_ms: u64,
    pub until_ms: u64,
}

/// `SetBreakGlass`: an operator designates an account for emergency access, or no longer.
pub fn designate(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    account: AccountId,
    allowed: bool,
) -> DomainResult<Effects> {
    authz::operator(view, actor)?;
    view.account(account)?.ok_or(not_found("account"))?;
    let designation = allowed.then_some(Designation { by: actor, at_ms: ctx.now_ms });
    Ok(Effects::new(Outcome::Done, vec![Change::BreakGlass { account, designation }]).audited(
        None,
        None,
        "緊急アクセス権の設定",
    ))
}

/// `OpenEmergencyAccess`: a designated account opens a patient's timeline for [`ACCESS_MS`].
pub fn open(view: &impl HubView, ctx: Ctx, actor: AccountId, room: RoomId, reason: &str) -> DomainResult<Effects> {
    active_account(view, actor)?;
    if view.break_glass(actor)?.is_none() {
        return Err(denied("緊急アクセスは、事務局が指定したアカウントだけが使えます"));
    }
    let reason = reason.trim();
    if !REASON_CHARS.contains(&reason.chars().count()) {
        return Err(invalid(format!(
            "緊急アクセスの理由を {}〜{} 文字で書いてください",
            REASON_CHARS.start(),
            REASON_CHARS.end()
        )));
    }
    let Some(RoomKind::PatientTimeline { patient }) = view.room(room)?.map(|r| r.kind) else {
        return Err(not_found("patient room"));
    };
    if view.member(room, actor)?.is_some_and(|m| m.is_active()) {
        return Err(precondition("you are on this patient's team already"));
    }
    let access = EmergencyAccess {
        account: actor,
        room,
        patient,
        reason: reason.to_owned(),
        opened_at_ms: ctx.now_ms,
        until_ms: ctx.now_ms.saturating_add(ACCESS_MS),
    };
    Ok(Effects::new(Outcome::Done, vec![Change::EmergencyAccess(access)]).audited(
        Some(patient),
        Some(room),
        "緊急アクセス開始",
    ))
}

/// The access `account` holds to `room` at `now_ms`, if any (still designated, not expired).
pub fn active(
    view: &impl HubView,
    account: AccountId,
    room: RoomId,
    now_ms: u64,
) -> DomainResult<Option<EmergencyAccess>> {
    if view.break_glass(account)?.is_none() {
        return Ok(None);
    }
    Ok(view.emergency_access(room, account)?.filter(|a| a.until_ms > now_ms))
}

/// Every emergency access, newest first, for the operators (and each account's own).
pub fn accesses(view: &impl HubView, actor: AccountId) -> DomainResult<Vec<EmergencyAccess>> {
    let account = active_account(view, actor)?;
    let mut all = view.emergency_accesses()?;
    if !account.is_operator() {
        all.retain(|a| a.account == actor);
    }
    all.sort_by_key(|a| std::cmp::Reverse(a.opened_at_ms));
    Ok(all)
}
