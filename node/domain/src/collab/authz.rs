//! Who may see and do what. Every read and write goes through these checks.

use super::error::{DomainError, DomainResult, denied, not_found};
use super::model::*;
use super::view::{HubView, ViewResult};

/// The acting account, which must exist and be active (a stopped account acts no more).
pub fn active_account(view: &impl HubView, actor: AccountId) -> DomainResult<Account> {
    match view.account(actor)? {
        Some(a) if a.is_active() => Ok(a),
        _ => Err(DomainError::Unauthenticated),
    }
}

/// The actor's active membership of a room; NotFound for everyone else (see `error`).
pub fn active_member(view: &impl HubView, actor: AccountId, room: RoomId) -> DomainResult<(Account, Member, Room)> {
    let account = active_account(view, actor)?;
    let member = view.member(room, actor)?.filter(Member::is_active).ok_or(not_found("room"))?;
    let room = view.room(room)?.ok_or(not_found("room"))?;
    Ok((account, member, room))
}

pub fn owner(view: &impl HubView, actor: AccountId, room: RoomId) -> DomainResult<(Account, Member, Room)> {
    let found = active_member(view, actor, room)?;
    if found.1.role != Role::Owner {
        return Err(denied("only an owner of this room may do that"));
    }
    Ok(found)
}

pub fn operator(view: &impl HubView, actor: AccountId) -> DomainResult<Account> {
    let account = active_account(view, actor)?;
    if !account.is_operator() {
        return Err(denied("only a hub operator may do that"));
    }
    Ok(account)
}

/// An operator, or an admin of `facility`.
pub fn facility_admin(view: &impl HubView, actor: AccountId, facility: FacilityId) -> DomainResult<Account> {
    let account = active_account(view, actor)?;
    if account.is_operator() || (account.facility_admin && account.facility() == Some(facility)) {
        return Ok(account);
    }
    Err(denied("only an admin of this facility or a hub operator may do that"))
}

/// An admin of `target`'s facility, or a hub operator (for accounts without a facility: only an
/// operator): who may stop an account, end its sessions or reset its second factor.
pub fn account_admin(view: &impl HubView, actor: AccountId, target: &Account) -> DomainResult<Account> {
    match target.facility() {
        Some(f) => facility_admin(view, actor, f),
        None => operator(view, actor),
    }
}

/// The account itself, or its admin ([`account_admin`]).
pub fn self_or_admin(view: &impl HubView, actor: AccountId, target: AccountId) -> DomainResult<Account> {
    let account = view.account(target)?.ok_or(not_found("account"))?;
    if actor == target {
        active_account(view, actor)?;
    } else {
        account_admin(view, actor, &account)?;
    }
    Ok(account)
}

/// Can `account` read `room` right now? The single rule every read path uses.
/// A state that cannot be read is an error, never a "no".
pub fn can_read(view: &impl HubView, account: AccountId, room: RoomId) -> ViewResult<bool> {
    match active_member(view, account, room) {
        Ok(_) => Ok(true),
        Err(DomainError::Unreadable(e)) => Err(e),
        Err(_) => Ok(false),
    }
}
