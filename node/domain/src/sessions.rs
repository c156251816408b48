//! Sessions: signing in (with the TOTP step the API node matched), the hub-wide idle clock,
//! revoking one session, logging out and the hub's session policy. Enrolling the second factor is `second_factor.rs`.

use std::ops::RangeInclusive;

use super::authz::{self, active_account};
use super::error::{DomainError, DomainResult, invalid, not_found, precondition};
use super::kernel::{Ctx, Effects, MAX_NAME_CHARS, Outcome, SESSION_ID_CHARS, optional_text, tighter_limits};
use super::model::*;
use super::second_factor;
use super::view::{Change, HubView};

/// `CreateSession`: the API node verified the password; apply checks the account is still
/// active and the second factor's step.
pub fn create(
    view: &impl HubView,
    ctx: Ctx,
    login: &str,
    (token_hash, device, totp_step): (String, String, Option<u64>),
) -> DomainResult<Effects> {
    crate::login_guard::check(view, ctx.now_ms, login)?;
    let id = view.account_by_login(login)?.ok_or(DomainError::Unauthenticated)?;
    let account = active_account(view, id)?;
    if token_hash.is_empty() || view.session(&token_hash)?.is_some() {
        return Err(invalid("session token unusable"));
    }
    if tighter_limits(view)? {
        optional_text("device", &device, MAX_NAME_CHARS)?;
    }
    crate::second_factor_policy::check(view, ctx.now_ms, &account)?;
    let mut changes: Vec<Change> = second_factor::login(account, totp_step)?.map(Change::Account).into_iter().collect();
    changes.extend(crate::login_guard::cleared(view, login)?);
    let session = Session {
        token_hash,
        account: id,
        created_at_ms: ctx.now_ms,
        device,
        revoked: false,
        last_used_ms: ctx.now_ms,
    };
    changes.push(Change::Session(session));
    Ok(Effects::new(Outcome::Session(id), changes))
}

/// `TouchSession`: the caller's session is in use.
pub fn touch(view: &impl HubView, ctx: Ctx, actor: AccountId, token_hash: &str) -> DomainResult<Effects> {
    let mut s = view.session(token_hash)?.filter(|s| s.account == actor && !s.revoked).ok_or(not_found("session"))?;
    s.last_used_ms = s.last_used_ms.max(ctx.now_ms);
    Ok(Effects::new(Outcome::Done, vec![Change::Session(s)]))
}

/// `RevokeSession`: ends one session of the account (its own, or as its admin).
pub fn revoke(view: &impl HubView, actor: AccountId, account: AccountId, session: &str) -> DomainResult<Effects> {
    authz::self_or_admin(view, actor, account)?;
    if session.len() != SESSION_ID_CHARS {
        return Err(invalid(format!("a session id is {SESSION_ID_CHARS} hex digits")));
    }
    let mut s = view
        .sessions_of(account)?
        .into_iter()
        .find(|s| s.token_hash.starts_with(session))
        .ok_or(not_found("session"))?;
    if s.revoked {
        return Err(precondition("that session has ended already"));
    }
    s.revoked = true;
    Ok(Effects::new(Outcome::Done, vec![Change::Session(s)]))
}

/// `Logout`: ends the caller's own session.
pub fn logout(view: &impl HubView, actor: AccountId, token_hash: &str) -> DomainResult<Effects> {
    let mut s = view.session(token_hash)?.filter(|s| s.account == actor).ok_or(not_found("session"))?;
    s.revoked = true;
    Ok(Effects::new(Outcome::Done, vec![Change::Session(s)]))
}

/// Allowed idle timeouts, in minutes. The MHLW guideline favours short ones on shared devices;
/// 5 minutes is the shortest that outlasts the hub-wide use record (every 5 minutes), 4 hours
/// the longest a visit round leaves a device unattended.
pub const IDLE_MINUTES: RangeInclusive<u32> = 5..=240;
/// Allowed absolute lifetimes, in hours: at most one day, so everyone signs in every day.
pub const ABSOLUTE_HOURS: RangeInclusive<u32> = 1..=24;

/// `SetSessionPolicy`: an operator sets the hub's idle timeout and absolute session lifetime.
/// They take effect at once for every session, on every node. Not audited: the audit log records
/// access to patient data, and no other operator setting is audited either.
pub fn set_policy(
    view: &impl HubView,
    actor: AccountId,
    idle_minutes: u32,
    absolute_hours: u32,
) -> DomainResult<Effects> {
    authz::operator(view, actor)?;
    if !IDLE_MINUTES.contains(&idle_minutes) || !ABSOLUTE_HOURS.contains(&absolute_hours) {
        return Err(invalid(format!(
            "idle timeout must be {}..={} minutes, absolute lifetime {}..={} hours",
            IDLE_MINUTES.start(),
            IDLE_MINUTES.end(),
            ABSOLUTE_HOURS.start(),
            ABSOLUTE_HOURS.end()
        )));
    }
    if u64::from(idle_minutes) > u64::from(absolute_hours) * 60 {
        return Err(invalid("the idle timeout must not exceed the absolute lifetime"));
    }
    let settings = HubSettings { session_idle_minutes: idle_minutes, session_absolute_hours: absolute_hours };
    Ok(Effects::new(Outcome::Done, vec![Change::Settings(settings)]))
}
