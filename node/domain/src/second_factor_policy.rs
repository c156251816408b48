//! Requiring the second factor (二要素認証の必須化): the MHLW guideline expects two-factor
//! authentication of systems holding patient data by FY2027. An operator requires it hub-wide,
//! or an operator or a facility's admin for the facility's staff, with a grace period: until
//! it ends, an account without a confirmed second factor signs in and is told by when to set one
//! up (`due`); after it, such an account is refused until it has one — its facility's admin (or
//! an operator) may give a new grace period.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::authz;
use super::error::{DomainError, DomainResult, invalid};
use super::kernel::{Ctx, Effects, Outcome};
use super::model::*;
use super::view::{Change, HubView};

/// The longest grace period: a quarter, time for every member to enrol.
pub const MAX_GRACE_DAYS: u32 = 90;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// One requirement: the second factor is due from `due_ms` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub set_at_ms: u64,
    pub due_ms: u64,
}

/// Who must have a second factor: everyone (hub-wide) and the staff of some facilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactorPolicy {
    pub hub: Option<Requirement>,
    pub facilities: BTreeMap<FacilityId, Requirement>,
}

impl SecondFactorPolicy {
    /// When `account` must have a second factor by, if it must (the earliest of the hub's and
    /// its facility's requirements); None once it has one.
    pub fn due_for(&self, account: &Account) -> Option<u64> {
        if account.totp.as_ref().is_some_and(|t| t.confirmed) {
            return None;
        }
        let facility = account.facility().and_then(|f| self.facilities.get(&f));
        [self.hub.as_ref(), facility].into_iter().flatten().map(|r| r.due_ms).min()
    }
}

/// `SetSecondFactorPolicy`: requires the second factor (or no longer does) hub-wide — operators
/// only — or for one facility's staff — its admins or an operator — due after `grace_days`.
pub fn set(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    facility: Option<FacilityId>,
    (required, grace_days): (bool, u32),
) -> DomainResult<Effects> {
    if grace_days > MAX_GRACE_DAYS {
        return Err(invalid(format!("the grace period is at most {MAX_GRACE_DAYS} days")));
    }
    let mut policy = view.second_factor_policy()?;
    let requirement = required.then_some(Requirement {
        set_at_ms: ctx.now_ms,
        due_ms: ctx.now_ms.saturating_add(u64::from(grace_days) * DAY_MS),
    });
    match facility {
        None => {
            authz::operator(view, actor)?;
            policy.hub = requirement;
        }
        Some(f) => {
            authz::facility_admin(view, actor, f)?;
            view.facility(f)?.ok_or(super::error::not_found("facility"))?;
            match requirement {
                Some(r) => policy.facilities.insert(f, r),
                None => policy.facilities.remove(&f),
            };
        }
    }
    Ok(Effects::new(Outcome::Done, vec![Change::SecondFactorPolicy(policy)]))
}

/// The sign-in rule: an account past its due time without a second factor is refused. Except
/// operators: they are told by when like anyone, but never refused, so the hub's administration
/// (who lifts or extends a requirement) cannot lock itself out.
pub fn check(view: &impl HubView, now_ms: u64, account: &Account) -> DomainResult<()> {
    if account.is_operator() {
        return Ok(());
    }
    match view.second_factor_policy()?.due_for(account) {
        Some(due) if due <= now_ms => Err(DomainError::FailedPrecondition(
            "このアカウントは二要素認証の設定が必要です。施設の管理者に猶予期間の設定を依頼してください".into(),
        )),
        _ => Ok(()),
    }
}
