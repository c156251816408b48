//! Throttling of failed sign-ins, hub-wide: the failures are replicated state, so trying another
//! node of the hub does not start the count again.
//!
//! Two counts, each over a window: per login (whatever it names: an unknown login is counted
//! and locked exactly like an existing one, so a lock never tells that an account exists) and
//! per source address (one address trying many logins). A count that reaches its limit locks
//! that login or address for [`LOCK_MS`]; a successful sign-in clears its login's count. The API
//! node refuses a locked login or address before it checks the password, and apply refuses a
//! session for a locked login, whichever node proposed it.

use serde::{Deserialize, Serialize};

use super::error::{DomainError, DomainResult, invalid};
use super::kernel::{Ctx, Effects, Outcome};
use super::view::{Change, HubView};

/// The apply version from which `LoginFailed` is applied (an older build cannot decode it).
pub const SINCE_APPLY_VERSION: u32 = 3;

/// Failed sign-ins of one login within [`WINDOW_MS`] that lock it.
pub const LOGIN_FAILURES: u32 = 5;
/// Failed sign-ins from one address within [`WINDOW_MS`] that lock it (a shared facility
/// network has several people mistyping).
pub const SOURCE_FAILURES: u32 = 20;
pub const WINDOW_MS: u64 = 15 * 60 * 1000;
pub const LOCK_MS: u64 = 15 * 60 * 1000;
/// The longest login or source address a failure is recorded for (a login is at most 100
/// characters; anything longer names no account, and still counts for its address).
pub const MAX_KEY_BYTES: usize = 512;

/// What is counted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Guarded {
    Login(String),
    Source(String),
}

impl Guarded {
    fn limit(&self) -> u32 {
        match self {
            Guarded::Login(_) => LOGIN_FAILURES,
            Guarded::Source(_) => SOURCE_FAILURES,
        }
    }
}

/// The failures of one login or address in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginGuard {
    pub failures: u32,
    /// When the window of these failures began.
    pub since_ms: u64,
    /// Locked until then (0: not locked).
    pub locked_until_ms: u64,
}

/// Until when `guard` locks its login or address, if it does at `now_ms`.
pub fn locked_until(guard: Option<&LoginGuard>, now_ms: u64) -> Option<u64> {
    guard.map(|g| g.locked_until_ms).filter(|until| *until > now_ms)
}

/// Whether a count means nothing any more at `now_ms`: its window passed and it locks
/// nothing, so the next failure would start afresh anyway (it may be removed).
pub fn spent(guard: &LoginGuard, now_ms: u64) -> bool {
    now_ms >= guard.since_ms.saturating_add(WINDOW_MS) && now_ms >= guard.locked_until_ms
}

/// The count after one more failure at `now_ms`: a new window once the last one passed.
fn after_failure(guard: Option<LoginGuard>, now_ms: u64, limit: u32) -> LoginGuard {
    let mut g = match guard {
        Some(g) if now_ms < g.since_ms.saturating_add(WINDOW_MS) => g,
        _ => LoginGuard { failures: 0, since_ms: now_ms, locked_until_ms: 0 },
    };
    g.failures = g.failures.saturating_add(1);
    if g.failures >= limit {
        g.locked_until_ms = now_ms.saturating_add(LOCK_MS);
    }
    g
}

/// `LoginFailed`: the API node refused a sign-in of `login` from `source`.
pub fn failed(view: &impl HubView, ctx: Ctx, login: &str, source: &str) -> DomainResult<Effects> {
    if source.len() > MAX_KEY_BYTES {
        return Err(invalid(format!("an address is at most {MAX_KEY_BYTES} bytes")));
    }
    let mut changes = Vec::new();
    for guarded in [Guarded::Login(login.to_owned()), Guarded::Source(source.to_owned())] {
        let skip = match &guarded {
            Guarded::Login(l) => l.is_empty() || l.len() > MAX_KEY_BYTES,
            Guarded::Source(s) => s.is_empty(),
        };
        if skip {
            continue;
        }
        let guard = after_failure(view.login_guard(&guarded)?, ctx.now_ms, guarded.limit());
        changes.push(Change::LoginGuard { guarded, guard: Some(guard) });
    }
    Ok(Effects::new(Outcome::Done, changes))
}

/// Refuses, at apply, a session for `login` while it is locked. The API node refuses a locked
/// login before it checks the password (with [`throttled`]); a sign-in that passed that check
/// while failures were still being recorded (attempts in parallel) gets the answer of a wrong
/// password here, so a lock never confirms a password.
pub fn check(view: &impl HubView, now_ms: u64, login: &str) -> DomainResult<()> {
    let guard = view.login_guard(&Guarded::Login(login.to_owned()))?;
    match locked_until(guard.as_ref(), now_ms) {
        Some(_) => Err(DomainError::Unauthenticated),
        None => Ok(()),
    }
}

/// The change that clears `login`'s count after a successful sign-in (None when it has none).
pub fn cleared(view: &impl HubView, login: &str) -> DomainResult<Option<Change>> {
    let guarded = Guarded::Login(login.to_owned());
    Ok(view.login_guard(&guarded)?.map(|_| Change::LoginGuard { guarded, guard: None }))
}

/// The refusal while locked: when to try again, never why (nor whether the login exists).
pub fn throttled(until_ms: u64, now_ms: u64) -> DomainError {
    let minutes = until_ms.saturating_sub(now_ms).div_ceil(60_000).max(1);
    DomainError::Throttled(format!(
        "ログインの失敗が続いたため、一時的にログインできません。{minutes} 分後にもう一度お試しください"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemHub;

    fn fail(hub: &mut MemHub, now_ms: u64, login: &str, source: &str) {
        let effects = failed(hub, Ctx { log_index: 1, now_ms }, login, source).expect("recorded");
        hub.apply(effects.changes);
    }

    #[test]
    fn five_failures_lock_a_login_known_or_not_for_a_while_and_a_new_window_starts_afresh() {
        let mut hub = MemHub::default();
        for i in 0..LOGIN_FAILURES - 1 {
            fail(&mut hub, 1_000 + u64::from(i), "nobody", &format!("10.0.0.{i}"));
        }
        assert!(check(&hub, 2_000, "nobody").is_ok(), "four failures lock nothing");
        fail(&mut hub, 2_000, "nobody", "10.0.0.9");
        assert_eq!(check(&hub, 2_001, "nobody"), Err(DomainError::Unauthenticated), "locked, said as a wrong password");
        let guard = hub.login_guard(&Guarded::Login("nobody".into())).unwrap();
        let until = locked_until(guard.as_ref(), 2_001).expect("locked");
        assert!(matches!(throttled(until, 2_001), DomainError::Throttled(m) if m.contains("15 分後")));
        assert!(check(&hub, 2_000 + LOCK_MS, "nobody").is_ok(), "the lock ends");
        assert!(check(&hub, 2_001, "someone-else").is_ok(), "per login");

        let mut hub = MemHub::default();
        for i in 0..LOGIN_FAILURES - 1 {
            fail(&mut hub, u64::from(i), "slow", "");
        }
        fail(&mut hub, WINDOW_MS + 10, "slow", "");
        assert!(check(&hub, WINDOW_MS + 11, "slow").is_ok(), "failures spread over windows never lock");

        let locked = LoginGuard { failures: 5, since_ms: 0, locked_until_ms: WINDOW_MS + LOCK_MS };
        assert!(!spent(&locked, WINDOW_MS), "still locking");
        assert!(spent(&locked, WINDOW_MS + LOCK_MS), "window past, lock over");
        let counting = LoginGuard { failures: 2, since_ms: 100, locked_until_ms: 0 };
        assert!(!spent(&counting, 99 + WINDOW_MS) && spent(&counting, 100 + WINDOW_MS));
    }

    #[test]
    fn one_address_trying_many_logins_is_locked_and_a_success_clears_only_its_login() {
        let mut hub = MemHub::default();
        for i in 0..SOURCE_FAILURES {
            fail(&mut hub, 1_000, &format!("user{i}"), "192.0.2.7");
        }
        let source = hub.login_guard(&Guarded::Source("192.0.2.7".into())).unwrap();
        assert_eq!(locked_until(source.as_ref(), 1_001), Some(1_000 + LOCK_MS));
        fail(&mut hub, 1_000, "user0", "");
        assert!(cleared(&hub, "user0").unwrap().is_some());
        assert_eq!(cleared(&hub, "never-failed").unwrap(), None);
        assert!(failed(&hub, Ctx { log_index: 1, now_ms: 1 }, "x", &"1".repeat(513)).is_err());
    }
}
