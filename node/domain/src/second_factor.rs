//! The second factor (二要素認証): TOTP (RFC 6238, 6 digits, 30 s steps), as the MHLW guideline
//! asks of systems holding patient data. The API node checks a code against the secret and
//! proposes the time step it matched; apply only compares steps, so it stays deterministic, and
//! a step is accepted once per account (a code cannot be replayed, not even on another node).

use super::authz::{active_account, self_or_admin};
use super::error::{DomainError, DomainResult, denied, invalid, precondition};
use super::kernel::{Effects, Outcome};
use super::model::*;
use super::view::{Change, HubView};

pub use super::model::Totp;

/// Secrets are 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// Starts (or restarts, while unconfirmed) enrolment with a new secret.
pub fn begin(view: &impl HubView, actor: AccountId, secret: Vec<u8>) -> DomainResult<Effects> {
    let mut account = active_account(view, actor)?;
    if secret.len() != SECRET_BYTES {
        return Err(invalid(format!("a TOTP secret is {SECRET_BYTES} bytes")));
    }
    if account.totp.as_ref().is_some_and(|t| t.confirmed) {
        return Err(precondition("a second factor is already set up; disable it first"));
    }
    account.totp = Some(Totp { secret, confirmed: false, last_step: 0 });
    Ok(Effects::new(Outcome::Done, vec![Change::Account(account)]))
}

/// Completes enrolment: the API node matched a code from the app at `step`.
pub fn confirm(view: &impl HubView, actor: AccountId, step: u64) -> DomainResult<Effects> {
    let mut account = active_account(view, actor)?;
    let Some(totp) = account.totp.as_mut().filter(|t| !t.confirmed) else {
        return Err(precondition("start setting up the second factor first"));
    };
    totp.confirmed = true;
    totp.last_step = step;
    Ok(Effects::new(Outcome::Done, vec![Change::Account(account)]))
}

/// Turns the second factor off: the user with a fresh code (`step`), or — for a lost phone — an
/// admin of the user's facility or an operator, without one.
pub fn disable(view: &impl HubView, actor: AccountId, target: AccountId, step: Option<u64>) -> DomainResult<Effects> {
    let mut account = self_or_admin(view, actor, target)?;
    let last = account.totp.as_ref().map_or(0, |t| t.last_step);
    if target == actor && step.is_none_or(|s| s <= last) {
        return Err(denied("turning the second factor off needs a fresh code from the app"));
    }
    if account.totp.take().is_none() {
        return Err(precondition("no second factor is set up"));
    }
    Ok(Effects::new(Outcome::Done, vec![Change::Account(account)]))
}

/// The login rule: with a confirmed second factor, a step newer than the last accepted one is
/// required. Returns the account with the step recorded, when it changed.
pub fn login(mut account: Account, step: Option<u64>) -> DomainResult<Option<Account>> {
    let Some(totp) = account.totp.as_mut().filter(|t| t.confirmed) else { return Ok(None) };
    match step {
        None => Err(DomainError::Unauthenticated),
        Some(s) if s <= totp.last_step => Err(precondition("this code was used already; wait for the next one")),
        Some(s) => {
            totp.last_step = s;
            Ok(Some(account))
        }
    }
}
