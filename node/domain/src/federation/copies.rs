//! A member hub's side of a room whose home is another hub: the replicated copy it keeps for
//! its own members (kept up to date by the home hub's room and post copies, dropped when none
//! of its members is left), and its members' writes into it, which are queued for the home
//! hub and shown as "sending" until the home hub answers.

use super::files;
use super::names::HubName;
use super::outbox::PendingWrite;
use super::parties::{Whose, known, party_of, profile_of, remote_login, shadow, whose};
use super::wire::{CopyKind, FileCopy, Message, Party, PostCopy, RoomCopy, RoomWrite};
use crate::attachments;
use crate::authz::active_member;
use crate::commands::Command;
use crate::error::{DomainResult, invalid, not_found, precondition};
use crate::events::EventKind;
use crate::kernel::{Ctx, Effects, Outcome, Outgoing};
use crate::model::*;
use crate::view::{Change, HubView, ViewResult};

/// Ids of the entities one message creates: ids must differ from every log index (the ids of
/// local commands) and from those of every other message, so they carry the top bit, the log
/// index of the batch, the message's place in it and a counter.
#[derive(Debug)]
pub struct IdMint {
    base: u64,
    minted: u64,
    log_index: u64,
}

impl IdMint {
    /// Entities one message may create (shadows, a copy): a message naming more is refused.
    pub const PER_MESSAGE: u64 = 1 << 10;
    /// Messages one log entry may apply (far above `inbox::MAX_APPLIED_PER_ENTRY`).
    const MESSAGES: u64 = 1 << 10;
    /// Log indexes below this fit beside the top bit and the 20 bits of message and counter.
    const LOG_INDEXES: u64 = 1 << 43;

    pub fn new(log_index: u64, message: u64) -> Self {
        let base = (1 << 63) | (log_index << 20) | ((message % Self::MESSAGES) << 10);
        IdMint { base, minted: 0, log_index }
    }

    /// The next id, or a refusal once this message created as many entities as an id can tell
    /// apart (a peer naming thousands of people in one message).
    pub fn mint(&mut self) -> DomainResult<u64> {
        if self.minted >= Self::PER_MESSAGE || self.log_index >= Self::LOG_INDEXES {
            return Err(invalid("a message creates too many accounts or rooms at once"));
        }
        let id = self.base | self.minted;
        self.minted += 1;
        Ok(id)
    }
}

/// A member of a copy as the home hub names it, resolved to a local account.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    account: AccountId,
    role: Role,
    state: MemberState,
    /// One of our own professionals (not another hub's shadow).
    ours: bool,
}

/// The home hub `origin` sent room `copy`: keep (or create) this hub's copy with the members it
/// names, or drop it when none of them is ours any more. Our members that the home hub names
/// but this hub does not have as active professionals are reported back, and removed there.
pub fn apply_room(
    view: &impl HubView,
    ids: &mut IdMint,
    (origin, now_ms): (&HubName, u64),
    copy: RoomCopy,
) -> DomainResult<Effects> {
    let existing = view.mirror_of(origin, copy.room)?;
    let mut effects = Effects::none();
    let mut wanted = Vec::new();
    for m in &copy.members {
        let state = if m.pending { MemberState::Invited { by: AccountId(0) } } else { MemberState::Active };
        let (role, party) = (m.role, &m.profile.party);
        match whose(origin, party) {
            Whose::Ours(login) => match our_professional(view, &login)? {
                Some(a) => wanted.push(Wanted { account: a.id, role, state, ours: true }),
                None => effects = effects.send(origin.clone(), Message::NoSuchMember { room: copy.room, login }),
            },
            Whose::Theirs { hub, login } => {
                // A hub speaks for its own professionals' profiles only.
                let profile = (&hub == origin).then_some(&m.profile);
                let (a, change) = shadow(view, || ids.mint().map(AccountId), (&hub, &login), profile)?;
                effects.changes.extend(change);
                wanted.push(Wanted { account: a.id, role, state, ours: false });
            }
        }
    }
    if !wanted.iter().any(|w| w.ours) {
        return match existing {
            Some(local) => drop_copy(view, now_ms, local, effects.outbound),
            None => Ok(Effects { changes: Vec::new(), ..effects }),
        };
    }
    if copy.kind == CopyKind::Connection && existing.is_none() && !connection_asked(view, &wanted)? {
        // A 1:1 room nobody here asked for (or someone here blocked meanwhile): not kept.
        return Ok(Effects::none());
    }
    let local = match existing {
        Some(local) => local,
        None => RoomId(ids.mint()?),
    };
    keep_copy(view, origin, (local, existing.is_none()), copy, wanted, effects)
}

/// A local professional who may be a member of another hub's room.
pub(super) fn our_professional(view: &impl HubView, login: &str) -> ViewResult<Option<Account>> {
    let Some(id) = view.account_by_login(login)? else { return Ok(None) };
    Ok(view.account(id)?.filter(|a| a.is_active() && matches!(a.kind, AccountKind::Professional { .. })))
}

/// Whether our member of a new 1:1 copy asked the other member for the connection.
fn connection_asked(view: &impl HubView, wanted: &[Wanted]) -> ViewResult<bool> {
    let (Some(ours), Some(theirs)) = (wanted.iter().find(|w| w.ours), wanted.iter().find(|w| !w.ours)) else {
        return Ok(false);
    };
    let pair = connection_pair(ours.account, theirs.account);
    Ok(matches!(view.connection(pair)?.map(|c| c.state), Some(ConnectionState::Requested { by }) if by == ours.account))
}

/// The copy's room and members as the home hub has them; our new members' profiles go back.
fn keep_copy(
    view: &impl HubView,
    origin: &HubName,
    (local, new): (RoomId, bool),
    copy: RoomCopy,
    wanted: Vec<Wanted>,
    mut effects: Effects,
) -> DomainResult<Effects> {
    let old = view.room(local)?;
    let (last_seq, last_post_at_ms) = old.as_ref().map_or((0, 0), |r| (r.last_seq, r.last_post_at_ms));
    if copy.kind == CopyKind::Connection
        && let Some(connected) = connected_pair(&wanted, local)
    {
        // The requester hears at once that the other hub's professional accepted.
        effects = effects.connection(connected.pair);
        effects.changes.push(Change::Connection(connected));
    }
    let kind = RoomKind::Mirror { home: origin.clone(), home_room: copy.room, of: copy.kind };
    effects.changes.push(Change::Room(Room { id: local, kind, last_seq, last_post_at_ms }));
    if new {
        effects.changes.push(Change::Mirror { home: origin.clone(), home_room: copy.room, local });
    }
    for m in view.members(local)? {
        if !wanted.iter().any(|w| w.account == m.account) {
            effects.changes.push(Change::RemoveMember { room: local, account: m.account });
        }
    }
    for Wanted { account, role, state, ours } in wanted {
        let member = match view.member(local, account)? {
            Some(m) => Member { role, state, ..m },
            None => {
                if ours && let Some(a) = view.account(account)? {
                    effects = effects.send(origin.clone(), Message::Profile(profile_of(view, &a, origin)?));
                }
                Member::new(local, account, role, state)
            }
        };
        effects.changes.push(Change::Member(member));
    }
    Ok(effects.membership(local))
}

/// A copy of a 1:1 room: its two members (ours and theirs) are connected here too.
fn connected_pair(wanted: &[Wanted], local: RoomId) -> Option<Connection> {
    let ours = wanted.iter().find(|w| w.ours)?.account;
    let theirs = wanted.iter().find(|w| !w.ours)?.account;
    Some(super::connections::accepted_copy(ours, theirs, local))
}

/// None of our members is left in the room: the copy goes — its members, post texts and files
/// (collected after the grace period), the patient's name in its kind, the pending writes into
/// it, and a 1:1 room's connection. The room's shell and the mapping stay, so a later
/// invitation reuses the same id.
fn drop_copy(view: &impl HubView, now_ms: u64, local: RoomId, outbound: Vec<Outgoing>) -> DomainResult<Effects> {
    let members = view.members(local)?;
    let mut changes: Vec<Change> =
        members.iter().map(|m| Change::RemoveMember { room: local, account: m.account }).collect();
    let mut ended = None;
    let Some(mut room) = view.room(local)? else { return Ok(Effects { outbound, ..Effects::none() }) };
    let ctx = Ctx { log_index: 0, now_ms };
    for seq in 1..=room.last_seq {
        if let Some(post) = view.post(local, seq)? {
            changes.extend(attachments::release(view, ctx, (local, seq))?);
            changes.push(Change::Post(Post { text: String::new(), history: Vec::new(), deleted: true, ..post }));
        }
    }
    for pending in view.pending_in(local)? {
        changes.extend(files::release_sent(view, now_ms, &pending)?);
        changes.push(Change::PendingDone { ticket: pending.ticket });
    }
    if let RoomKind::Mirror { of, .. } = &mut room.kind {
        if *of == CopyKind::Connection {
            ended = ended_connection(view, &members)?;
            changes.extend(ended.clone().map(Change::Connection));
        }
        *of = of.without_patient();
    }
    changes.push(Change::Room(room));
    let effects = Effects { outbound, ..Effects::new(Outcome::Done, changes) }.membership(local);
    Ok(match ended {
        Some(c) => effects.connection(c.pair),
        None => effects,
    })
}

/// The connection of a dropped 1:1 copy's two members ends (declined: either may ask again,
/// unless one of them blocked the other).
fn ended_connection(view: &impl HubView, members: &[Member]) -> ViewResult<Option<Connection>> {
    let [a, b] = members else { return Ok(None) };
    let pair = connection_pair(a.account, b.account);
    Ok(match view.connection(pair)? {
        Some(c) if matches!(c.state, ConnectionState::Accepted { .. }) => {
            Some(Connection { pair, state: ConnectionState::Declined })
        }
        _ => None,
    })
}

/// The home hub `origin` sent a post as it is now, with its files: it takes its place in our
/// copy; the files' bytes are fetched from `origin` ([`files::received`]), and go again when the
/// post is deleted.
pub fn apply_post(
    view: &impl HubView,
    ids: &mut IdMint,
    (origin, now_ms): (&HubName, u64),
    copy: PostCopy,
    files: Vec<FileCopy>,
) -> DomainResult<Effects> {
    let Some(local) = view.mirror_of(origin, copy.room)? else { return Ok(Effects::none()) };
    if !any_of_ours_active(view, local)? {
        // A dropped copy (or one whose members are all pending) keeps no post.
        return Ok(Effects::none());
    }
    let mut room = view.room(local)?.ok_or(not_found("room"))?;
    if copy.seq == 0 || copy.seq > room.last_seq + 1 {
        // The home hub sends a room's posts in order from 1: anything else is refused, so no
        // number a peer sends can make this hub walk a huge range.
        return Err(invalid(format!("post #{} of a room whose copy has {} posts", copy.seq, room.last_seq)));
    }
    let mut changes = Vec::new();
    let author = account_for(view, ids, origin, &copy.author, &mut changes)?;
    let mentions = accounts_for(view, ids, origin, &copy.mentions, &mut changes)?;
    let acks = accounts_for(view, ids, origin, &copy.acks, &mut changes)?;
    let is_new = view.post(local, copy.seq)?.is_none();
    // Earlier texts stay on the home hub (its audit record); the copy only knows there were some.
    let history = match copy.edited || copy.deleted {
        true => vec![PostVersion { text: String::new(), at_ms: copy.posted_at_ms }],
        false => Vec::new(),
    };
    if copy.seq > room.last_seq {
        room.last_seq = copy.seq;
        room.last_post_at_ms = room.last_post_at_ms.max(copy.posted_at_ms);
        if let Some(mut member) = view.member(local, author)? {
            member.record_own_post(copy.seq);
            changes.push(Change::Member(member));
        }
        changes.push(Change::Room(room));
    }
    let seq = copy.seq;
    changes.extend(post_files(view, ids, (origin, now_ms), (local, seq, author), (copy.deleted, files))?);
    changes.push(Change::Post(Post {
        room: local,
        seq,
        author,
        text: copy.text,
        reply_to: copy.reply_to,
        mentions,
        posted_at_ms: copy.posted_at_ms,
        history,
        deleted: copy.deleted,
        acks,
    }));
    let kind = if is_new { EventKind::Posted { seq } } else { EventKind::PostUpdated { seq } };
    Ok(Effects::new(Outcome::Posted { room: local, seq }, changes).event(local, kind))
}

/// The changes that give post `seq` of the copy `local` the files the home hub lists: received
/// once (files never change while the post lives), released when it is deleted.
fn post_files(
    view: &impl HubView,
    ids: &mut IdMint,
    (origin, now_ms): (&HubName, u64),
    (local, seq, author): (RoomId, u64, AccountId),
    (deleted, files): (bool, Vec<FileCopy>),
) -> DomainResult<Vec<Change>> {
    let held = view.post_files(local, seq)?;
    if deleted || files.is_empty() {
        return attachments::release(view, Ctx { log_index: 0, now_ms }, (local, seq));
    }
    if !held.is_empty() {
        return Ok(vec![]);
    }
    let (mut changes, received) = files::received(view, ids, (origin, now_ms), author, &files)?;
    changes.extend(attachments::place((local, seq), received));
    Ok(changes)
}

/// Whether one of our own professionals is an active member of the copy `local`.
fn any_of_ours_active(view: &impl HubView, local: RoomId) -> ViewResult<bool> {
    for m in view.members(local)?.into_iter().filter(Member::is_active) {
        if view.account(m.account)?.is_some_and(|a| a.remote_hub().is_none()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The local account of `party`: ours, a known shadow, or a new shadow with a bare profile (an
/// author who has since left the room). An unknown account of ours is account 0 ("unknown").
fn account_for(
    view: &impl HubView,
    ids: &mut IdMint,
    origin: &HubName,
    party: &Party,
    changes: &mut Vec<Change>,
) -> DomainResult<AccountId> {
    if let Some(a) = known(view, origin, party)? {
        return Ok(a.id);
    }
    // Created earlier in this same message?
    let created = changes.iter().find_map(|c| match (c, whose(origin, party)) {
        (Change::Account(a), Whose::Theirs { hub, login }) if a.login == remote_login(&login, &hub) => Some(a.id),
        _ => None,
    });
    if let Some(id) = created {
        return Ok(id);
    }
    match whose(origin, party) {
        Whose::Ours(_) => Ok(AccountId(0)),
        Whose::Theirs { hub, login } => {
            let (account, change) = shadow(view, || ids.mint().map(AccountId), (&hub, &login), None)?;
            changes.extend(change);
            Ok(account.id)
        }
    }
}

fn accounts_for(
    view: &impl HubView,
    ids: &mut IdMint,
    origin: &HubName,
    parties: &[Party],
    changes: &mut Vec<Change>,
) -> DomainResult<Vec<AccountId>> {
    parties.iter().map(|p| account_for(view, ids, origin, p, changes)).collect()
}

/// The home hub `origin` applied our write `ticket`: it leaves the "sending" list (its post
/// arrives, or arrived, as a post copy). Only the room's home hub answers for it.
pub fn accepted(view: &impl HubView, (origin, now_ms): (&HubName, u64), ticket: u64) -> DomainResult<Effects> {
    let changes = match pending_from(view, origin, ticket)? {
        Some(pending) => {
            let mut changes = files::release_sent(view, now_ms, &pending)?;
            changes.push(Change::PendingDone { ticket });
            changes
        }
        None => Vec::new(),
    };
    Ok(Effects::new(Outcome::Done, changes))
}

/// The home hub `origin` refused our write `ticket`: the author sees why.
pub fn refused(
    view: &impl HubView,
    (origin, now_ms): (&HubName, u64),
    ticket: u64,
    reason: String,
) -> DomainResult<Effects> {
    let Some(pending) = pending_from(view, origin, ticket)? else {
        return Ok(Effects::none());
    };
    let reason: String = reason.chars().take(500).collect();
    let mut changes = files::release_sent(view, now_ms, &pending)?;
    changes.push(Change::Pending(PendingWrite { refused: Some(reason), ..pending }));
    Ok(Effects::new(Outcome::Done, changes))
}

/// Our pending write `ticket`, if `origin` is the home of its room.
fn pending_from(view: &impl HubView, origin: &HubName, ticket: u64) -> ViewResult<Option<PendingWrite>> {
    let Some(pending) = view.pending_write(ticket)? else { return Ok(None) };
    Ok(match view.room(pending.room)?.map(|r| r.kind) {
        Some(RoomKind::Mirror { home, .. }) if &home == origin => Some(pending),
        _ => None,
    })
}

/// What the home hubs of the copies `account` is in must hear when it is stopped here: it is
/// no member of theirs any more (they remove it at once; the copies follow with the removal).
pub fn withdraw_from_copies(view: &impl HubView, account: &Account) -> ViewResult<Vec<Outgoing>> {
    let mut out = Vec::new();
    for m in view.rooms_of(account.id)? {
        if let Some(Room { kind: RoomKind::Mirror { home, home_room, .. }, .. }) = view.room(m.room)? {
            let message = Message::NoSuchMember { room: home_room, login: account.login.clone() };
            out.push(Outgoing { to: home, message });
        }
    }
    Ok(out)
}

/// Account `id` as the home hub `home` names it.
fn party(view: &impl HubView, home: &HubName, id: AccountId) -> DomainResult<Party> {
    Ok(party_of(&view.account(id)?.ok_or(not_found("account"))?, home))
}

/// If `command` writes into a copy of another hub's room, what it does instead: the write is
/// queued for the home hub, which decides it by its own rules, and the author sees it as
/// "sending". None: not a write into a copy.
pub fn write_to_home(
    view: &impl HubView,
    ctx: Ctx,
    actor: Option<AccountId>,
    command: &Command,
) -> DomainResult<Option<Effects>> {
    let (Some(actor), Some(room)) = (actor, room_written(command)) else { return Ok(None) };
    let Some(Room { kind: RoomKind::Mirror { home, home_room, .. }, .. }) = view.room(room)? else {
        return Ok(None);
    };
    let (account, _, _) = active_member(view, actor, room)?;
    let (mut changes, write) = match command {
        Command::PostWithFiles { text, reply_to, mentions, files, .. } => {
            let (held, files) = files::hold_for_home(view, actor, room, files)?;
            let mentions = mentions.iter().map(|m| party(view, &home, *m)).collect::<DomainResult<_>>()?;
            (held, RoomWrite::PostWithFiles { text: text.clone(), reply_to: *reply_to, mentions, files })
        }
        _ => (vec![], room_write(view, &home, command)?),
    };
    let ticket = ctx.log_index;
    let pending =
        PendingWrite { ticket, room, author: actor, write: write.clone(), queued_at_ms: ctx.now_ms, refused: None };
    changes.push(Change::Pending(pending));
    let submit = Message::Submit { room: home_room, author: account.login, ticket, write };
    Ok(Some(Effects::new(Outcome::Queued { room, ticket }, changes).send(home, submit).audited(
        None,
        Some(room),
        "write sent to the room's home hub",
    )))
}

/// The room a command writes into, for the commands a copy's member may send to its home hub.
fn room_written(command: &Command) -> Option<RoomId> {
    use Command as C;
    match command {
        C::Post { room, .. }
        | C::PostWithFiles { room, .. }
        | C::EditPost { room, .. }
        | C::DeletePost { room, .. }
        | C::AckPost { room, .. }
        | C::Invite { room, .. }
        | C::InviteRemote { room, .. }
        | C::Approve { room, .. }
        | C::Leave { room }
        | C::RequestJoin { room }
        | C::Remove { room, .. } => Some(*room),
        C::CreateSubRoom { timeline, .. } => Some(*timeline),
        _ => None,
    }
}

/// `command` as a write the home hub `home` decides, accounts named relative to it.
fn room_write(view: &impl HubView, home: &HubName, command: &Command) -> DomainResult<RoomWrite> {
    let party = |id: AccountId| party(view, home, id);
    use Command as C;
    Ok(match command {
        C::Post { text, reply_to, mentions, .. } => RoomWrite::Post {
            text: text.clone(),
            reply_to: *reply_to,
            mentions: mentions.iter().map(|m| party(*m)).collect::<DomainResult<_>>()?,
        },
        C::EditPost { seq, text, .. } => RoomWrite::Edit { seq: *seq, text: text.clone() },
        C::DeletePost { seq, .. } => RoomWrite::Delete { seq: *seq },
        C::AckPost { seq, .. } => RoomWrite::Ack { seq: *seq },
        C::Invite { invitee, role, .. } => RoomWrite::Invite { invitee: party(*invitee)?, role: *role },
        C::InviteRemote { hub, login, role, .. } => {
            let invitee = if hub == home {
                Party::Receiver(login.clone())
            } else {
                Party::Other { hub: hub.clone(), login: login.clone() }
            };
            RoomWrite::Invite { invitee, role: *role }
        }
        C::Approve { account, .. } => RoomWrite::Approve { account: party(*account)? },
        C::Leave { .. } => RoomWrite::Leave,
        _ => return Err(precondition(format!("this room's home is hub {home}: do that there"))),
    })
}
