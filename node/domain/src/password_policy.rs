//! The hub's password rule (パスワードの規則) and issued passwords.
//!
//! The rule is the hub's, replicated, set by its operators: a minimum length and how many kinds
//! of characters a password mixes (lower-case and upper-case Latin letters, digits, anything
//! else — symbols, kana and kanji count as that last kind). The default is 12 characters of any
//! kind: length protects more than composition (NIST SP 800-63B), and a hub that follows the
//! MHLW guideline's wording for passwords without a second factor sets, say, 13 characters of 3
//! kinds. The API node checks a new password against its copy of the rule before hashing it
//! (apply sees only hashes).
//!
//! A password set by someone else — an admin's reset (`IssuePassword`) or a family account its
//! patient's team created — is *issued*: until its holder changes it, the account may sign in,
//! read who it is, change the password and sign out, nothing else ([`allowed_while_issued`]).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::authz;
use super::error::{DomainError, DomainResult, invalid};
use super::kernel::{Effects, Outcome};
use super::model::*;
use super::view::{Change, HubView};

/// The apply version from which the rule is the hub's (`SetPasswordPolicy`) and passwords can
/// be issued (`IssuePassword`, and family accounts' passwords count as issued).
pub const SINCE_APPLY_VERSION: u32 = 5;
/// The minimum length a hub may set: the guideline's floor for passwords with a second factor.
pub const MIN_CHARS: RangeInclusive<u32> = 8..=64;
/// Lower-case, upper-case, digits, others.
pub const KINDS: RangeInclusive<u32> = 1..=4;
/// The longest password accepted, so hashing stays bounded (argon2id reads all of it).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Why an account with an issued password is refused anything but changing it.
pub const CHANGE_ISSUED_PASSWORD: &str =
    "発行されたパスワードのままです。パスワードを変更してから操作してください (change the issued password first)";

/// The hub's rule for new passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub min_chars: u32,
    pub min_kinds: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy { min_chars: 12, min_kinds: 1 }
    }
}

impl PasswordPolicy {
    /// Whether `password` may become an account's password, with the reason in Japanese (and
    /// English) when it may not.
    pub fn check(&self, password: &str) -> DomainResult<()> {
        let chars = password.chars().count();
        if chars > MAX_PASSWORD_CHARS {
            return Err(invalid(format!(
                "パスワードは{MAX_PASSWORD_CHARS}文字以内にしてください (at most {MAX_PASSWORD_CHARS} characters)"
            )));
        }
        let (min_chars, min_kinds) = (self.min_chars, self.min_kinds);
        if chars < min_chars as usize || kinds(password) < min_kinds {
            return Err(invalid(match min_kinds {
                0 | 1 => format!("パスワードは{min_chars}文字以上にしてください (at least {min_chars} characters)"),
                _ => format!(
                    "パスワードは{min_chars}文字以上で、英小文字・英大文字・数字・記号などのうち{min_kinds}種類以上を\
                     含めてください (at least {min_chars} characters of at least {min_kinds} kinds)"
                ),
            }));
        }
        Ok(())
    }
}

/// How many of the four kinds of characters `password` mixes.
fn kinds(password: &str) -> u32 {
    let has = |kind: fn(&char) -> bool| u32::from(password.chars().any(|c| kind(&c)));
    has(|c| c.is_ascii_lowercase())
        + has(|c| c.is_ascii_uppercase())
        + has(|c| c.is_ascii_digit())
        + has(|c| !c.is_ascii_alphanumeric())
}

/// `SetPasswordPolicy`: operators set the hub's rule; existing passwords stay valid.
pub fn set(view: &impl HubView, actor: AccountId, policy: PasswordPolicy) -> DomainResult<Effects> {
    authz::operator(view, actor)?;
    if !MIN_CHARS.contains(&policy.min_chars) || !KINDS.contains(&policy.min_kinds) {
        return Err(invalid(format!(
            "the minimum length is {}–{} characters and the kinds {}–{}",
            MIN_CHARS.start(),
            MIN_CHARS.end(),
            KINDS.start(),
            KINDS.end()
        )));
    }
    Ok(Effects::new(Outcome::Done, vec![Change::PasswordPolicy(policy)]))
}

/// `IssuePassword`: an account's admin (its facility's admins, operators; for a family account
/// also the owners of its patient's timeline) sets a password for it, to hand over. Every
/// session of the account ends, its sign-in lock is lifted, and the holder must change the
/// password before doing anything else.
pub fn issue(
    view: &impl HubView,
    actor: AccountId,
    account: AccountId,
    password_hash: String,
) -> DomainResult<Effects> {
    if actor == account {
        return Err(invalid("change your own password with ChangePassword"));
    }
    let mut target = view.account(account)?.ok_or(super::error::not_found("account"))?;
    may_issue(view, actor, &target)?;
    if password_hash.is_empty() {
        return Err(invalid("password hash missing"));
    }
    let mut changes: Vec<Change> = crate::login_guard::cleared(view, &target.login)?.into_iter().collect();
    for mut s in view.sessions_of(account)?.into_iter().filter(|s| !s.revoked) {
        s.revoked = true;
        changes.push(Change::Session(s));
    }
    target.password_hash = password_hash;
    changes.push(Change::Account(target));
    changes.push(Change::PasswordIssued { account, issued: true });
    // Who may sign in as whom is the audit chain's business: the issuer is named.
    Ok(Effects::new(Outcome::Account(account), changes).audited(None, None, "パスワードの発行"))
}

/// Who may issue `target` a password: whoever administers it, or for a family account an owner
/// of its patient's timeline. An account that can do more than its colleagues — a facility's
/// admin, one designated for emergency access — only from an operator, so no admin can take
/// over another admin or an emergency account by issuing it a password.
fn may_issue(view: &impl HubView, actor: AccountId, target: &Account) -> DomainResult<()> {
    if let AccountKind::Remote { .. } = target.kind {
        return Err(super::error::denied("an account of another hub gets its password there"));
    }
    if target.facility_admin || view.break_glass(target.id)?.is_some() {
        return authz::operator(view, actor).map(|_| ());
    }
    if let AccountKind::Family { patient } = target.kind
        && let Some(p) = view.patient(patient)?
    {
        match authz::owner(view, actor, p.timeline) {
            Ok(_) => return Ok(()),
            Err(DomainError::Unreadable(fault)) => return Err(DomainError::Unreadable(fault)),
            Err(_) => {} // not an owner: maybe the account's admin
        }
    }
    authz::account_admin(view, actor, target).map(|_| ())
}

/// Whether an account whose password is still the issued one may send `command`.
pub fn allowed_while_issued(command: &crate::Command) -> bool {
    use crate::Command as C;
    matches!(command, C::ChangePassword { .. } | C::Logout { .. } | C::TouchSession { .. })
}

/// The refusal of anything else while the password is the issued one.
pub fn issued_refusal() -> DomainError {
    DomainError::FailedPrecondition(CHANGE_ISSUED_PASSWORD.into())
}
