//! 1:1 connections with a professional of another hub. The request travels to the
//! requested professional's hub; accepting there opens the pair's room on that hub (its home),
//! whose copy reaches the requester's hub like any room copy (which then records the connection
//! as accepted); declining or blocking on either side is told to the other.

use super::copies::{IdMint, our_professional};
use super::names::HubName;
use super::parties::{remote_login, shadow};
use super::wire::{Party, Profile};
use crate::error::DomainResult;
use crate::kernel::{Effects, Outcome};
use crate::model::*;
use crate::rooms::removal;
use crate::view::{Change, HubView};

/// `from` of hub `origin` asks our professional `to` for a connection. Unknown or stopped
/// professionals, and pairs already requested, connected or blocked, change nothing (the
/// requester's hub keeps showing it as requested, as a local request to someone who never
/// answers).
pub fn requested(
    view: &impl HubView,
    ids: &mut IdMint,
    origin: &HubName,
    from: &Profile,
    to: &str,
) -> DomainResult<Effects> {
    let Party::Sender(login) = &from.party else { return Ok(Effects::none()) };
    let Some(target) = our_professional(view, to)? else { return Ok(Effects::none()) };
    let (requester, created) = shadow(view, || ids.mint().map(AccountId), (origin, login), Some(from))?;
    let pair = connection_pair(requester.id, target.id);
    match view.connection(pair)?.map(|c| c.state) {
        None | Some(ConnectionState::Declined) => {}
        Some(_) => return Ok(Effects::none()),
    }
    let mut changes: Vec<Change> = created.into_iter().collect();
    changes.push(Change::Connection(Connection { pair, state: ConnectionState::Requested { by: requester.id } }));
    Ok(Effects::new(Outcome::Done, changes).connection(pair))
}

/// `by` of hub `origin` declined or blocked the connection with our `other`: recorded as
/// declined here; if the pair's room is ours, it closes (their copy follows).
pub fn ended(view: &impl HubView, origin: &HubName, by: &str, other: &str) -> DomainResult<Effects> {
    let Some(them) = view.account_by_login(&remote_login(by, origin))? else { return Ok(Effects::none()) };
    let Some(me) = view.account_by_login(other)? else { return Ok(Effects::none()) };
    let pair = connection_pair(them, me);
    let Some(connection) = view.connection(pair)? else { return Ok(Effects::none()) };
    if matches!(connection.state, ConnectionState::Blocked { .. }) {
        // A block here stays: the other hub can neither lift it nor turn it into "declined".
        return Ok(Effects::none());
    }
    let mut changes = vec![Change::Connection(Connection { pair, state: ConnectionState::Declined })];
    let mut effects = Effects::none().connection(pair);
    if let ConnectionState::Accepted { room } = connection.state
        && view.room(room)?.is_some_and(|r| matches!(r.kind, RoomKind::Connection { .. }))
    {
        changes.extend(removal(view, room, pair.0)?);
        changes.extend(removal(view, room, pair.1)?);
        effects = effects.membership(room);
    }
    effects.changes = changes;
    Ok(effects)
}

/// Our copy `room` of another hub's connection room now holds our `ours` and their `theirs`:
/// the pair is connected here too.
pub fn accepted_copy(ours: AccountId, theirs: AccountId, room: RoomId) -> Connection {
    Connection { pair: connection_pair(ours, theirs), state: ConnectionState::Accepted { room } }
}
