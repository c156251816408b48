//! What a hub does with one message of a peer's stream, once the batch is verified and the
//! message is next in order: the one place that dispatches every [`Message`] to the side that
//! decides it (the home hub's rooms in [`super::home`], this hub's copies in
//! [`super::copies`]).

use super::connections;
use super::copies::{self, IdMint};
use super::files;
use super::names::HubName;
use super::parties::{Whose, known, remote_login, shadow, whose};
use super::wire::{Message, Party, Profile, RoomWrite};
use super::{map, requests};
use crate::error::{DomainError, DomainResult, not_found};
use crate::kernel::{Ctx, Effects, Outcome};
use crate::model::*;
use crate::posts;
use crate::rooms::{approve, invite_account, leave, removal};
use crate::view::HubView;

/// What one message did: its effects, the local account it acted for (a remote member's
/// write: its shadow), and, if it was refused, why (for the audit chain).
#[derive(Debug)]
pub struct Received {
    pub effects: Effects,
    pub actor: Option<AccountId>,
    pub refused: Option<String>,
}

impl Received {
    fn done(effects: Effects) -> Self {
        Received { effects, actor: None, refused: None }
    }
}

/// Decides `message` from hub `origin`, the `index`-th message applied by the log entry `ctx`.
pub fn decide(view: &impl HubView, ctx: Ctx, index: u64, origin: &HubName, message: Message) -> DomainResult<Received> {
    let mut ids = IdMint::new(ctx.log_index, index);
    match message {
        Message::Room(copy) => copies::apply_room(view, &mut ids, (origin, ctx.now_ms), copy).map(Received::done),
        Message::Post(copy) => {
            copies::apply_post(view, &mut ids, (origin, ctx.now_ms), copy, vec![]).map(Received::done)
        }
        Message::PostWithFiles { post, files } => {
            copies::apply_post(view, &mut ids, (origin, ctx.now_ms), post, files).map(Received::done)
        }
        Message::Accepted { ticket, .. } => copies::accepted(view, (origin, ctx.now_ms), ticket).map(Received::done),
        Message::Refused { ticket, reason } => {
            copies::refused(view, (origin, ctx.now_ms), ticket, reason).map(Received::done)
        }
        Message::Submit { room, author, ticket, write } => {
            let ctx = Ctx { log_index: ids.mint()?, ..ctx };
            submitted(view, (ctx, &mut ids), origin, (room, &author, ticket), write)
        }
        Message::NoSuchMember { room, login } => no_such_member(view, origin, room, &login).map(Received::done),
        Message::Profile(profile) => profile_update(view, origin, &profile).map(Received::done),
        Message::ConnectionRequest { from, to } => {
            connections::requested(view, &mut ids, origin, &from, &to).map(Received::done)
        }
        Message::ConnectionEnded { by, other } => connections::ended(view, origin, &by, &other).map(Received::done),
        Message::Facility(copy) => map::apply_facility(view, &mut ids, origin, copy).map(Received::done),
        Message::DirectoryWithdrawn => map::withdrawn(view, origin).map(Received::done),
        Message::Request(copy) => requests::received(view, (&mut ids, ctx.now_ms), origin, copy).map(Received::done),
        Message::RequestAnswered { request, facility, reply } => {
            let (effects, actor) = requests::answered(view, &mut ids, origin, (request, facility), reply)?;
            Ok(Received { effects, actor, refused: None })
        }
        Message::RequestCancelled { request, from } => {
            requests::cancelled(view, origin, request, &from).map(Received::done)
        }
    }
}

/// A remote member's write into one of our rooms, decided by the same rules as a local
/// member's, acting as their shadow. The sender hears back either way.
fn submitted(
    view: &impl HubView,
    (ctx, ids): (Ctx, &mut IdMint),
    origin: &HubName,
    (room, author, ticket): (RoomId, &str, u64),
    write: RoomWrite,
) -> DomainResult<Received> {
    let shadow = match sender_member(view, origin, room, author) {
        Ok(id) => id,
        Err(e @ DomainError::Unreadable(_)) => return Err(e),
        Err(e) => return Ok(refusal(origin, ticket, format!("{origin} has no member {author} in room {room}: {e}"))),
    };
    match decide_write(view, (ctx, ids), origin, (room, shadow), write) {
        Ok(effects) => {
            let seq = match effects.outcome {
                Outcome::Posted { seq, .. } => Some(seq),
                _ => None,
            };
            let effects = effects.send(origin.clone(), Message::Accepted { ticket, seq });
            Ok(Received { effects, actor: Some(shadow), refused: None })
        }
        Err(e @ DomainError::Unreadable(_)) => Err(e),
        Err(e) => Ok(Received { actor: Some(shadow), ..refusal(origin, ticket, e.to_string()) }),
    }
}

/// The shadow of `author` of hub `origin`, who must be a member (any state) of our room `room`:
/// a hub speaks only for rooms it has members in.
fn sender_member(view: &impl HubView, origin: &HubName, room: RoomId, author: &str) -> DomainResult<AccountId> {
    let r = view.room(room)?.ok_or(not_found("room"))?;
    if matches!(r.kind, RoomKind::Mirror { .. }) {
        return Err(not_found("room"));
    }
    let id = view.account_by_login(&remote_login(author, origin))?.ok_or(not_found("member"))?;
    view.member(room, id)?.ok_or(not_found("member"))?;
    Ok(id)
}

fn refusal(origin: &HubName, ticket: u64, reason: String) -> Received {
    let effects = Effects::none().send(origin.clone(), Message::Refused { ticket, reason: reason.clone() });
    Received { effects, actor: None, refused: Some(reason) }
}

fn decide_write(
    view: &impl HubView,
    (ctx, ids): (Ctx, &mut IdMint),
    origin: &HubName,
    (room, actor): (RoomId, AccountId),
    write: RoomWrite,
) -> DomainResult<Effects> {
    match write {
        RoomWrite::PostWithFiles { text, reply_to, mentions, files } => {
            let mentions = mentions.iter().map(|p| existing(view, origin, p)).collect::<DomainResult<_>>()?;
            let (held, files) = files::received(view, ids, (origin, ctx.now_ms), actor, &files)?;
            let mut effects = posts::post(view, ctx, actor, (room, text), (reply_to, mentions), files)?;
            effects.changes.splice(0..0, held);
            Ok(effects)
        }
        RoomWrite::Post { text, reply_to, mentions } => {
            let mentions = mentions.iter().map(|p| existing(view, origin, p)).collect::<DomainResult<_>>()?;
            posts::post(view, ctx, actor, (room, text), (reply_to, mentions), vec![])
        }
        RoomWrite::Edit { seq, text } => posts::edit(view, ctx, actor, (room, seq), text),
        RoomWrite::Delete { seq } => posts::delete(view, ctx, actor, room, seq),
        RoomWrite::Ack { seq } => posts::ack(view, actor, room, seq),
        RoomWrite::Invite { invitee, role } => invite(view, ctx, origin, (room, actor), invitee, role),
        RoomWrite::Approve { account } => approve(view, actor, room, existing(view, origin, &account)?),
        RoomWrite::Leave => leave(view, actor, room),
    }
}

/// A remote member invites someone: one of ours, or a professional of any peer hub.
fn invite(
    view: &impl HubView,
    ctx: Ctx,
    origin: &HubName,
    (room, actor): (RoomId, AccountId),
    invitee: Party,
    role: Role,
) -> DomainResult<Effects> {
    match whose(origin, &invitee) {
        Whose::Ours(_) => {
            let target = known(view, origin, &invitee)?.filter(Account::is_active).ok_or(not_found("account"))?;
            invite_account(view, actor, room, &target, role)
        }
        Whose::Theirs { hub, login } => {
            let (target, created) = shadow(view, || Ok(AccountId(ctx.log_index)), (&hub, &login), None)?;
            let mut effects = invite_account(view, actor, room, &target, role)?;
            effects.changes.splice(0..0, created);
            Ok(effects)
        }
    }
}

fn existing(view: &impl HubView, origin: &HubName, party: &Party) -> DomainResult<AccountId> {
    Ok(known(view, origin, party)?.ok_or(not_found("account"))?.id)
}

/// The member hub has no active professional `login`: the invitation is withdrawn.
fn no_such_member(view: &impl HubView, origin: &HubName, room: RoomId, login: &str) -> DomainResult<Effects> {
    let id = match sender_member(view, origin, room, login) {
        Ok(id) => id,
        Err(e @ DomainError::Unreadable(_)) => return Err(e),
        Err(_) => return Ok(Effects::none()),
    };
    Ok(Effects::new(Outcome::Done, removal(view, room, id)?).membership(room))
}

/// A member hub's current profile of one of its own professionals we know.
fn profile_update(view: &impl HubView, origin: &HubName, profile: &Profile) -> DomainResult<Effects> {
    let Party::Sender(login) = &profile.party else {
        // A hub speaks only for its own accounts.
        return Ok(Effects::none());
    };
    if view.account_by_login(&remote_login(login, origin))?.is_none() {
        return Ok(Effects::none());
    }
    let (_, change) = shadow(view, || Err(not_found("account")), (origin, login), Some(profile))?;
    Ok(Effects::new(Outcome::Done, change.into_iter().collect()))
}
