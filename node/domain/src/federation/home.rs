//! The home hub's side of a room with members on other hubs: inviting another hub's
//! professional, and fanning out what changed in its rooms to every hub with a member in them
//! (the room's members when they change, each post as it is now). Only hubs with a member in
//! the room get anything; posts only reach hubs with an active member, and a hub whose first
//! member becomes active gets the room's posts so far.

use std::collections::{BTreeMap, BTreeSet};

use super::files;
use super::names::HubName;
use super::parties::{party_of, profile_of, shadow};
use super::wire::{CopyKind, MemberCopy, Message, PostCopy, RoomCopy};
use crate::error::{DomainResult, not_found};
use crate::events::{EventKind, Raised};
use crate::kernel::{Ctx, Effects, Outgoing};
use crate::model::*;
use crate::rooms::invite_account;
use crate::view::{HubView, ViewResult};

/// `InviteRemote`: invites professional `login` of hub `hub` into a room of this hub, by the
/// rules of a local invitation (an owner's invitation is its own approval). Their hub learns
/// of it from the room's copy, and answers with their profile, or that there is no such
/// professional (then the invitation is withdrawn).
pub fn invite_remote(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    room: RoomId,
    (hub, login): (HubName, String),
    role: Role,
) -> DomainResult<Effects> {
    let (target, created) = shadow(view, || Ok(AccountId(ctx.log_index)), (&hub, &login), None)?;
    if view.room(room)?.is_none() {
        return Err(not_found("room"));
    }
    // `invite_account` reads the invitee only from `target`, so a shadow created by this same
    // command needs no write first.
    let mut effects = invite_account(view, actor, room, &target, role)?;
    effects.changes.splice(0..0, created);
    Ok(effects)
}

/// Which hubs have members in each room of `events` that had a membership change, before the
/// command's changes: [`fan_out`] compares with after.
#[derive(Debug, Default)]
pub struct HubsBefore {
    any: BTreeMap<RoomId, BTreeSet<HubName>>,
    active: BTreeMap<RoomId, BTreeSet<HubName>>,
}

/// Reads [`HubsBefore`] for the rooms whose membership `events` change.
pub fn hubs_before(view: &impl HubView, events: &[Raised]) -> ViewResult<HubsBefore> {
    let mut before = HubsBefore::default();
    for room in membership_rooms(events) {
        let (any, active) = member_hubs(view, room)?;
        before.any.insert(room, any);
        before.active.insert(room, active);
    }
    Ok(before)
}

/// What the other hubs must hear of `events` (raised by one command, whose changes are already
/// in `view`): the room's copy for every hub with a member in it before or after, the posts
/// that changed for every hub with an active member, and the whole room for a hub whose first
/// member just became active.
pub fn fan_out(view: &impl HubView, events: &[Raised], before: &HubsBefore) -> ViewResult<Vec<Outgoing>> {
    let mut out = Vec::new();
    for room in membership_rooms(events) {
        let Some(r) = home_room(view, room)? else { continue };
        let (any, active) = member_hubs(view, room)?;
        let empty = BTreeSet::new();
        let had = before.any.get(&room).unwrap_or(&empty);
        for hub in any.union(had) {
            let copy = match active.contains(hub) {
                true => room_copy(view, &r, hub)?,
                false => bare_copy(view, &r, hub)?,
            };
            out.push(Outgoing { to: hub.clone(), message: Message::Room(copy) });
        }
        let was_active = before.active.get(&room).unwrap_or(&empty);
        for hub in active.difference(was_active) {
            for seq in 1..=r.last_seq {
                push_post(view, &mut out, (room, seq), hub)?;
            }
        }
    }
    for Raised { room, kind } in events {
        let (EventKind::Posted { seq } | EventKind::PostUpdated { seq }) = kind else { continue };
        if home_room(view, *room)?.is_none() {
            continue;
        }
        for hub in member_hubs(view, *room)?.1 {
            push_post(view, &mut out, (*room, *seq), &hub)?;
        }
    }
    Ok(out)
}

/// The rooms whose membership `events` change, once each, in order.
fn membership_rooms(events: &[Raised]) -> Vec<RoomId> {
    let mut rooms = Vec::new();
    for e in events.iter().filter(|e| e.kind == EventKind::Membership) {
        if !rooms.contains(&e.room) {
            rooms.push(e.room);
        }
    }
    rooms
}

/// The room, if this hub is its home (not a copy of another hub's room).
fn home_room(view: &impl HubView, room: RoomId) -> ViewResult<Option<Room>> {
    Ok(view.room(room)?.filter(|r| !matches!(r.kind, RoomKind::Mirror { .. })))
}

/// The hubs of a room's remote members: with any membership, and with an active one.
pub(super) fn member_hubs(view: &impl HubView, room: RoomId) -> ViewResult<(BTreeSet<HubName>, BTreeSet<HubName>)> {
    let (mut any, mut active) = (BTreeSet::new(), BTreeSet::new());
    for m in view.members(room)? {
        let Some(hub) = view.account(m.account)?.and_then(|a| a.remote_hub().cloned()) else { continue };
        if m.is_active() {
            active.insert(hub.clone());
        }
        any.insert(hub);
    }
    Ok((any, active))
}

/// Post `seq` of `room` for hub `to`, with its files if it has any.
fn push_post(view: &impl HubView, out: &mut Vec<Outgoing>, (room, seq): (RoomId, u64), to: &HubName) -> ViewResult<()> {
    let Some(post) = view.post(room, seq)? else { return Ok(()) };
    let copy = post_copy(view, &post, to)?;
    let files = files::copies_of_post(view, room, seq)?;
    let message = match files.is_empty() || post.deleted {
        true => Message::Post(copy),
        false => Message::PostWithFiles { post: copy, files },
    };
    out.push(Outgoing { to: to.clone(), message });
    Ok(())
}

/// Room `r` as hub `to` gets it: its kind and every member's minimal profile.
pub fn room_copy(view: &impl HubView, r: &Room, to: &HubName) -> ViewResult<RoomCopy> {
    let patient = |p: PatientId| -> ViewResult<(String, String)> {
        Ok(view.patient(p)?.map(|p| (p.name, p.kana)).unwrap_or_default())
    };
    let kind = match &r.kind {
        RoomKind::PatientTimeline { patient: p } => {
            let (patient_name, patient_kana) = patient(*p)?;
            CopyKind::PatientTimeline { patient_name, patient_kana }
        }
        RoomKind::SubRoom { patient: p, parent, name } => {
            CopyKind::SubRoom { parent: *parent, patient_name: patient(*p)?.0, name: name.clone() }
        }
        RoomKind::Group { name } => CopyKind::Group { name: name.clone() },
        RoomKind::Connection { .. } => CopyKind::Connection,
        RoomKind::Mirror { of, .. } => of.clone(),
    };
    let mut members = Vec::new();
    for m in view.members(r.id)? {
        let Some(account) = view.account(m.account)? else { continue };
        members.push(MemberCopy { profile: profile_of(view, &account, to)?, role: m.role, pending: !m.is_active() });
    }
    Ok(RoomCopy { room: r.id, kind, members })
}

/// Room `r` for hub `to` while none of its members there is active (only invited, or all
/// gone): no patient's name, and only `to`'s own members, so it learns of their invitation or
/// their removal and of nothing else.
fn bare_copy(view: &impl HubView, r: &Room, to: &HubName) -> ViewResult<RoomCopy> {
    let mut copy = room_copy(view, r, to)?;
    copy.kind = copy.kind.without_patient();
    copy.members.retain(|m| matches!(m.profile.party, super::Party::Receiver(_)));
    Ok(copy)
}

/// A post as hub `to` gets it: its current text (never the history) and who wrote, was
/// mentioned in and acknowledged it.
pub fn post_copy(view: &impl HubView, p: &Post, to: &HubName) -> ViewResult<PostCopy> {
    let party = |id: AccountId| -> ViewResult<Option<super::Party>> { Ok(view.account(id)?.map(|a| party_of(&a, to))) };
    let parties = |ids: &[AccountId]| -> ViewResult<Vec<super::Party>> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(party(*id)?);
        }
        Ok(out)
    };
    Ok(PostCopy {
        room: p.room,
        seq: p.seq,
        author: party(p.author)?.unwrap_or(super::Party::Sender(String::new())),
        text: if p.deleted { String::new() } else { p.text.clone() },
        reply_to: p.reply_to,
        mentions: parties(&p.mentions)?,
        posted_at_ms: p.posted_at_ms,
        edited: !p.deleted && !p.history.is_empty(),
        deleted: p.deleted,
        acks: parties(&p.acks)?,
    })
}
