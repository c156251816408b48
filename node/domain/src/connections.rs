//! Connections between two professionals: requesting, accepting (which opens their
//! connection room), declining and blocking (which closes it).

use super::authz::active_account;
use super::error::{DomainResult, invalid, not_found, precondition};
use super::federation::Message;
use super::federation::parties::{home_login, profile_of};
use super::kernel::{Ctx, Effects, Outcome};
use super::model::*;
use super::rooms::removal;
use super::view::{Change, HubView};

/// `RequestConnection`.
pub fn request(view: &impl HubView, actor: AccountId, to: AccountId) -> DomainResult<Effects> {
    let me = active_account(view, actor)?;
    let them = view.account(to)?.filter(|a| a.is_active() && a.is_professional()).ok_or(not_found("account"))?;
    if me.facility().is_none() || me.id == them.id {
        return Err(invalid("connections link two different professionals"));
    }
    let pair = connection_pair(me.id, to);
    match view.connection(pair)?.map(|c| c.state) {
        None | Some(ConnectionState::Declined) => {}
        Some(ConnectionState::Blocked { .. }) => return Err(not_found("account")),
        Some(_) => return Err(precondition("already requested or connected")),
    }
    let c = Connection { pair, state: ConnectionState::Requested { by: me.id } };
    let effects = Effects::new(Outcome::Done, vec![Change::Connection(c)]).connection(pair);
    // A professional of another hub hears of it on their own hub.
    Ok(match home_login(&them) {
        Some((hub, login)) => {
            let from = profile_of(view, &me, &hub)?;
            effects.send(hub, Message::ConnectionRequest { from, to: login })
        }
        None => effects,
    })
}

/// `AcceptConnection`: opens the pair's connection room.
pub fn accept(view: &impl HubView, ctx: Ctx, actor: AccountId, from: AccountId) -> DomainResult<Effects> {
    let me = active_account(view, actor)?;
    let pair = connection_pair(me.id, from);
    let c = view.connection(pair)?.ok_or(not_found("connection request"))?;
    if c.state != (ConnectionState::Requested { by: from }) {
        return Err(not_found("connection request"));
    }
    let room = RoomId(ctx.log_index);
    let kind = RoomKind::Connection { a: pair.0, b: pair.1 };
    let changes = vec![
        Change::Connection(Connection { pair, state: ConnectionState::Accepted { room } }),
        Change::Room(Room { id: room, kind, last_seq: 0, last_post_at_ms: ctx.now_ms }),
        Change::Member(Member::new(room, pair.0, Role::Member, MemberState::Active)),
        Change::Member(Member::new(room, pair.1, Role::Member, MemberState::Active)),
    ];
    Ok(Effects::new(Outcome::Room(room), changes).membership(room).connection(pair))
}

/// `DeclineConnection`.
pub fn decline(view: &impl HubView, actor: AccountId, from: AccountId) -> DomainResult<Effects> {
    let me = active_account(view, actor)?;
    let pair = connection_pair(me.id, from);
    match view.connection(pair)? {
        Some(c) if c.state == (ConnectionState::Requested { by: from }) => {
            let effects = Effects::new(
                Outcome::Done,
                vec![Change::Connection(Connection { pair, state: ConnectionState::Declined })],
            )
            .connection(pair);
            tell_other_hub(view, effects, &me, from)
        }
        _ => Err(not_found("connection request")),
    }
}

/// `BlockConnection`: both leave their connection room, if they had one.
pub fn block(view: &impl HubView, actor: AccountId, other: AccountId) -> DomainResult<Effects> {
    let me = active_account(view, actor)?;
    if view.account(other)?.is_none() || other == me.id {
        return Err(not_found("account"));
    }
    let pair = connection_pair(me.id, other);
    let mut changes = vec![Change::Connection(Connection { pair, state: ConnectionState::Blocked { by: me.id } })];
    let mut effects = Effects::none().connection(pair);
    if let Some(Connection { state: ConnectionState::Accepted { room }, .. }) = view.connection(pair)? {
        changes.extend(removal(view, room, pair.0)?);
        changes.extend(removal(view, room, pair.1)?);
        // Members' other devices, and the other hub's copy, learn the room closed.
        effects = effects.membership(room);
    }
    effects.changes = changes;
    tell_other_hub(view, effects, &me, other)
}

/// A connection with a professional of another hub was declined or blocked here: their hub
/// records it and, as the home of the pair's room, closes it there.
fn tell_other_hub(view: &impl HubView, effects: Effects, me: &Account, other: AccountId) -> DomainResult<Effects> {
    let Some((hub, login)) = view.account(other)?.as_ref().and_then(home_login) else { return Ok(effects) };
    Ok(effects.send(hub, Message::ConnectionEnded { by: me.login.clone(), other: login }))
}
