//! Accounts and facilities: the hub's first operator, facilities and their approval,
//! invitations and registration with them, approving and stopping accounts, family accounts.

use super::authz::{self, active_account, facility_admin, operator, owner};
use super::error::{DomainError, DomainResult, denied, invalid, not_found, precondition};
use super::federation::copies;
use super::kernel::{Ctx, Effects, MAX_NAME_CHARS, Outcome, text};
use super::model::*;
use super::view::{Change, HubView};

fn login_free(view: &impl HubView, login: &str) -> DomainResult<()> {
    text("login", login, MAX_NAME_CHARS)?;
    if login.chars().any(char::is_whitespace) {
        return Err(invalid("login must not contain spaces"));
    }
    if login.contains('@') {
        // `login@hub` names an account of another hub of the federation.
        return Err(invalid("login must not contain @"));
    }
    if view.account_by_login(login)?.is_some() {
        return Err(precondition(format!("login {login:?} is taken")));
    }
    Ok(())
}

/// A new account with a free login and a valid display name; its id is the log index.
fn new_account(
    view: &impl HubView,
    ctx: Ctx,
    (login, display_name, password_hash): (String, String, String),
    kind: AccountKind,
    status: AccountStatus,
    facility_admin: bool,
) -> DomainResult<Account> {
    login_free(view, &login)?;
    text("display_name", &display_name, MAX_NAME_CHARS)?;
    Ok(Account {
        id: AccountId(ctx.log_index),
        login,
        display_name,
        kind,
        status,
        password_hash,
        facility_admin,
        totp: None,
    })
}

/// Only a hub without an operator takes a first one (the API node also asks before it hashes
/// a password for nothing).
pub fn no_operator_yet(view: &impl HubView) -> DomainResult<()> {
    if view.has_operator()? {
        return Err(precondition("the hub already has an operator; operators are added by operators"));
    }
    Ok(())
}

/// `InitOperator`: the hub's first operator (later ones are added by operators).
pub fn init_operator(view: &impl HubView, ctx: Ctx, names: (String, String, String)) -> DomainResult<Effects> {
    no_operator_yet(view)?;
    let account = new_account(view, ctx, names, AccountKind::Operator, AccountStatus::Active, false)?;
    Ok(Effects::new(Outcome::Account(account.id), vec![Change::Account(account)]))
}

/// `RegisterFacility`: an operator registers a facility, pending approval.
pub fn register_facility(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (name, kind, municipality): (String, FacilityKind, String),
) -> DomainResult<Effects> {
    operator(view, actor)?;
    text("name", &name, MAX_NAME_CHARS)?;
    text("municipality", &municipality, MAX_NAME_CHARS)?;
    let id = FacilityId(ctx.log_index);
    let facility =
        Facility { id, name, kind, municipality, status: FacilityStatus::Pending, profile: Default::default() };
    Ok(Effects::new(Outcome::Facility(id), vec![Change::Facility(facility)]))
}

/// `ApproveFacility`.
pub fn approve_facility(view: &impl HubView, actor: AccountId, facility: FacilityId) -> DomainResult<Effects> {
    operator(view, actor)?;
    let mut f = view.facility(facility)?.ok_or(not_found("facility"))?;
    f.status = FacilityStatus::Approved;
    Ok(Effects::new(Outcome::Facility(facility), vec![Change::Facility(f)]))
}

/// `IssueInvitation`: an admin of an approved facility invites staff (admins only by admins).
pub fn issue_invitation(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    facility: FacilityId,
    (code_hash, expires_at_ms, as_admin): (String, u64, bool),
) -> DomainResult<Effects> {
    let issuer = facility_admin(view, actor, facility)?;
    if as_admin && !issuer.is_operator() && !issuer.facility_admin {
        return Err(denied("only admins may invite admins"));
    }
    let f = view.facility(facility)?.ok_or(not_found("facility"))?;
    if f.status != FacilityStatus::Approved {
        return Err(precondition("the facility is not approved yet"));
    }
    if expires_at_ms <= ctx.now_ms {
        return Err(invalid("the invitation would already be expired"));
    }
    if code_hash.is_empty() || view.invitation_by_code(&code_hash)?.is_some() {
        return Err(invalid("invitation code unusable"));
    }
    let id = InvitationId(ctx.log_index);
    let invitation =
        Invitation { id, code_hash, facility, issued_by: issuer.id, expires_at_ms, used_by: None, as_admin };
    Ok(Effects::new(Outcome::Invitation(id), vec![Change::Invitation(invitation)]))
}

/// `Register`: a professional registers with an unused, unexpired invitation (pending approval).
pub fn register(
    view: &impl HubView,
    ctx: Ctx,
    code_hash: &str,
    profession: Profession,
    names: (String, String, String),
) -> DomainResult<Effects> {
    let mut invitation = view.invitation_by_code(code_hash)?.ok_or(not_found("invitation"))?;
    if invitation.used_by.is_some() {
        return Err(precondition("this invitation has already been used"));
    }
    if invitation.expires_at_ms <= ctx.now_ms {
        return Err(precondition("this invitation has expired"));
    }
    let kind = AccountKind::Professional { facility: invitation.facility, profession };
    let account = new_account(view, ctx, names, kind, AccountStatus::Pending, invitation.as_admin)?;
    invitation.used_by = Some(account.id);
    Ok(Effects::new(Outcome::Account(account.id), vec![Change::Invitation(invitation), Change::Account(account)]))
}

/// `ApproveAccount`: the facility's admin (operators for accounts without a facility).
pub fn approve_account(view: &impl HubView, actor: AccountId, account: AccountId) -> DomainResult<Effects> {
    let mut target = view.account(account)?.ok_or(not_found("account"))?;
    match target.facility() {
        Some(f) => facility_admin(view, actor, f)?,
        None => operator(view, actor)?,
    };
    if target.status != AccountStatus::Pending {
        return Err(precondition("only a pending account can be approved"));
    }
    target.status = AccountStatus::Active;
    Ok(Effects::new(Outcome::Account(account), vec![Change::Account(target)]))
}

/// `StopAccount`: stops the account and ends its sessions.
pub fn stop_account(view: &impl HubView, actor: AccountId, account: AccountId) -> DomainResult<Effects> {
    let mut target = view.account(account)?.ok_or(not_found("account"))?;
    authz::account_admin(view, actor, &target)?;
    target.status = AccountStatus::Stopped;
    // The homes of the other hubs' rooms they are in remove them there too.
    let withdrawn = copies::withdraw_from_copies(view, &target)?;
    let mut changes = vec![Change::Account(target)];
    for mut s in view.sessions_of(account)?.into_iter().filter(|s| !s.revoked) {
        s.revoked = true;
        changes.push(Change::Session(s));
    }
    Ok(Effects { outbound: withdrawn, ..Effects::new(Outcome::Account(account), changes) })
}

/// `ChangePassword`: the caller sets a new password hash; every other session of the caller
/// ends (a password thought known to someone else stops working everywhere), the session
/// `token_hash` the change came through stays. Accounts of other hubs sign in at home, never
/// here. Like the other account changes it leaves no audit entry: the audit chain records
/// access to patient data only (docs/security.md).
pub fn change_password(
    view: &impl HubView,
    actor: AccountId,
    password_hash: String,
    token_hash: &str,
) -> DomainResult<Effects> {
    let mut account = active_account(view, actor)?;
    if matches!(account.kind, AccountKind::Remote { .. }) {
        return Err(denied("an account of another hub changes its password there"));
    }
    if password_hash.is_empty() {
        return Err(invalid("password hash missing"));
    }
    view.session(token_hash)?.filter(|s| s.account == actor && !s.revoked).ok_or(DomainError::Unauthenticated)?;
    account.password_hash = password_hash;
    let mut changes = vec![Change::Account(account)];
    if view.password_issued(actor)? {
        changes.push(Change::PasswordIssued { account: actor, issued: false });
    }
    for mut s in view.sessions_of(actor)?.into_iter().filter(|s| !s.revoked && s.token_hash != token_hash) {
        s.revoked = true;
        changes.push(Change::Session(s));
    }
    Ok(Effects::new(Outcome::PasswordChanged(actor), changes))
}

/// `CreateFamilyAccount`: an owner of the patient's timeline creates a family account that
/// joins that timeline only. (An unknown patient is NotFound even before signing in.)
pub fn create_family_account(
    view: &impl HubView,
    ctx: Ctx,
    actor: Option<AccountId>,
    patient: PatientId,
    names: (String, String, String),
) -> DomainResult<Effects> {
    let p = view.patient(patient)?.ok_or(not_found("patient"))?;
    owner(view, actor.ok_or(DomainError::Unauthenticated)?, p.timeline)?;
    let account = new_account(view, ctx, names, AccountKind::Family { patient }, AccountStatus::Active, false)?;
    let member = Member::new(p.timeline, account.id, Role::Family, MemberState::Active);
    let id = account.id;
    let mut changes = vec![Change::Account(account), Change::Member(member)];
    // Its patient's team chose the password: the family member replaces it first.
    if view.apply_version()? >= crate::password_policy::SINCE_APPLY_VERSION {
        changes.push(Change::PasswordIssued { account: id, issued: true });
    }
    Ok(Effects::new(Outcome::Account(id), changes).audited(Some(patient), None, "create family account"))
}
