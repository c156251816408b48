//! Read paths: what a signed-in user sees. Every query checks authorization first.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::authz::{active_account, active_member};
use super::error::{DomainResult, not_found};
use super::federation::wire::CopyKind;
use super::federation::{HubName, PendingWrite};
use super::model::*;
use super::view::{HubView, ViewResult};

/// One line of the patient list, group list or connection list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub room: RoomId,
    pub title: String,
    pub last_seq: u64,
    pub last_post_at_ms: u64,
    /// Posts of others not read yet ([`Member::unread`]): O(1) per room.
    pub unread: u64,
    /// The newest post's text (empty when deleted or none), cut to 60 characters.
    pub preview: String,
    /// In the patient list: the viewer's sub-rooms of this patient, titled by their own name,
    /// newest post first. Empty for every other room.
    pub sub_rooms: Vec<RoomSummary>,
    /// The hub that orders the room, when this hub keeps a copy of it.
    pub home_hub: Option<HubName>,
    /// For a copy: when this hub last heard from the home hub (the copy is at least as new).
    pub home_heard_at_ms: Option<u64>,
}

impl RoomSummary {
    /// When the entry last saw a post, its sub-rooms included: the list's order.
    pub fn newest_post_at_ms(&self) -> u64 {
        self.sub_rooms.iter().map(|s| s.last_post_at_ms).fold(self.last_post_at_ms, u64::max)
    }

    /// Whether `test` holds for the entry or one of its sub-rooms (they are shown within it).
    pub fn any_room(&self, test: impl Fn(&RoomSummary) -> bool) -> bool {
        test(self) || self.sub_rooms.iter().any(test)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Patients,
    Groups,
    Connections,
}

/// A room's title as `viewer` sees it (a connection is titled by the other person).
pub fn title(view: &impl HubView, viewer: AccountId, room: &Room) -> ViewResult<String> {
    let patient = match patient_of(&room.kind) {
        Some(patient) => view.patient(patient)?,
        None => None,
    };
    titled(view, viewer, room, patient.as_ref())
}

/// The patient of this hub whose room it is (timeline or sub-room), who names it.
fn patient_of(kind: &RoomKind) -> Option<PatientId> {
    match kind {
        RoomKind::PatientTimeline { patient } | RoomKind::SubRoom { patient, .. } => Some(*patient),
        _ => None,
    }
}

/// [`title`], with the room's patient read already (None: not a patient's room, or gone).
fn titled(view: &impl HubView, viewer: AccountId, room: &Room, patient: Option<&Patient>) -> ViewResult<String> {
    let patient_name = || patient.map(|p| p.name.clone()).unwrap_or_default();
    Ok(match &room.kind {
        RoomKind::PatientTimeline { .. } => patient_name(),
        RoomKind::SubRoom { name, .. } => format!("{}／{name}", patient_name()),
        RoomKind::Group { name } => name.clone(),
        RoomKind::Connection { a, b } => {
            let other = if *a == viewer { *b } else { *a };
            view.account(other)?.map(|a| a.display_name).unwrap_or_default()
        }
        RoomKind::Mirror { of, .. } => match of {
            CopyKind::PatientTimeline { patient_name, .. } => patient_name.clone(),
            CopyKind::SubRoom { patient_name, name, .. } => format!("{patient_name}／{name}"),
            CopyKind::Group { name } => name.clone(),
            CopyKind::Connection => other_member_name(view, viewer, room.id)?,
        },
    })
}

/// The display name of the member of a 1:1 room who is not `viewer`.
fn other_member_name(view: &impl HubView, viewer: AccountId, room: RoomId) -> ViewResult<String> {
    for m in view.members(room)?.into_iter().filter(|m| m.account != viewer) {
        if let Some(account) = view.account(m.account)? {
            return Ok(account.display_name);
        }
    }
    Ok(String::new())
}

/// The rooms of one kind a user belongs to, newest post first, with unread counts. In the
/// patient list a sub-room comes inside its patient's entry, as in MCS; only when the viewer is
/// not (or no longer) in the patient's team does it stand on its own, with its full title.
pub fn room_list(view: &impl HubView, viewer: AccountId, kind: ListKind) -> DomainResult<Vec<RoomSummary>> {
    let UnfilledList { mut entries, rooms } = room_list_unfilled(view, viewer, kind)?;
    fill(view, viewer, &mut entries, &rooms)?;
    Ok(entries)
}

/// A room list in its order before [`fill`]: its entries and the rooms they were made from,
/// by id, so that filling a page titles its entries without reading their rooms again.
#[derive(Debug, Clone)]
pub struct UnfilledList {
    pub entries: Vec<RoomSummary>,
    pub rooms: HashMap<RoomId, Room>,
}

/// [`room_list`] in its order, with unread counts, but without the titles and previews of the
/// entries (a sub-room inside its patient's entry has its title): they cost a read of the patient
/// and of the newest post per room, so a page of a long list is filled alone ([`fill`]).
pub fn room_list_unfilled(view: &impl HubView, viewer: AccountId, kind: ListKind) -> DomainResult<UnfilledList> {
    active_account(view, viewer)?;
    let mut entries = Vec::new();
    let mut sub_rooms = Vec::new();
    let mut rooms = HashMap::new();
    for (m, r) in active_rooms_of(view, viewer)?.into_iter().filter(|(_, r)| listed_in(&r.kind, kind)) {
        match sub_room_entry(view, &m, &r)? {
            Some(sub) => sub_rooms.push(sub),
            None => entries.push(summary(view, &m, &r, String::new())?),
        }
        rooms.insert(r.id, r);
    }
    place_sub_rooms(&mut entries, sub_rooms);
    entries.sort_by_key(|e| Reverse((e.newest_post_at_ms(), e.room)));
    Ok(UnfilledList { entries, rooms })
}

/// The viewer's active memberships with their rooms (one whose room is gone is left out).
fn active_rooms_of(view: &impl HubView, viewer: AccountId) -> ViewResult<Vec<(Member, Room)>> {
    let members: Vec<Member> = view.rooms_of(viewer)?.into_iter().filter(Member::is_active).collect();
    let rooms = view.rooms(&members.iter().map(|m| m.room).collect::<Vec<_>>())?;
    Ok(members.into_iter().zip(rooms).filter_map(|(m, r)| Some((m, r?))).collect())
}

/// Every room `account` may read now — those for which `authz::can_read` holds — in one read of
/// its memberships (a live stream learns them at once instead of room by room).
pub fn readable_rooms(view: &impl HubView, account: AccountId) -> ViewResult<HashSet<RoomId>> {
    if !view.account(account)?.is_some_and(|a| a.is_active()) {
        return Ok(HashSet::new());
    }
    Ok(active_rooms_of(view, account)?.into_iter().map(|(_, room)| room.id).collect())
}

/// Fills entries of [`room_list_unfilled`] from its `rooms`: their titles (a sub-room on its
/// own: its full title), and their and their sub-rooms' previews. The patients and the newest
/// posts of the entries are read in batches (a page holds up to hundreds).
pub fn fill(
    view: &impl HubView,
    viewer: AccountId,
    entries: &mut [RoomSummary],
    rooms: &HashMap<RoomId, Room>,
) -> ViewResult<()> {
    let untitled: Vec<Option<&Room>> =
        entries.iter().filter(|e| e.title.is_empty()).map(|e| rooms.get(&e.room)).collect();
    let patient_ids: Vec<Option<PatientId>> = untitled.iter().map(|r| r.and_then(|r| patient_of(&r.kind))).collect();
    let mut patients = view.patients(&patient_ids.iter().flatten().copied().collect::<Vec<_>>())?.into_iter();
    let untitled_entries = entries.iter_mut().filter(|e| e.title.is_empty());
    for ((entry, room), patient_id) in untitled_entries.zip(untitled).zip(patient_ids) {
        let patient = patient_id.and_then(|_| patients.next().flatten());
        if let Some(room) = room {
            entry.title = titled(view, viewer, room, patient.as_ref())?;
        }
    }
    let newest: Vec<(RoomId, u64)> =
        entries.iter().flat_map(|e| std::iter::once(e).chain(&e.sub_rooms)).map(|r| (r.room, r.last_seq)).collect();
    let mut previews = view.posts(&newest)?.into_iter().map(|post| preview_of(post.as_ref()));
    for entry in entries.iter_mut() {
        entry.preview = previews.next().unwrap_or_default();
        for sub in &mut entry.sub_rooms {
            sub.preview = previews.next().unwrap_or_default();
        }
    }
    Ok(())
}

/// For a sub-room `r` (of this hub, or a copy of another's): its parent timeline here and its
/// summary titled by its own name. None for any other room.
fn sub_room_entry(view: &impl HubView, m: &Member, r: &Room) -> DomainResult<Option<(RoomId, RoomSummary)>> {
    let (parent, name) = match &r.kind {
        RoomKind::SubRoom { parent, name, .. } => (*parent, name),
        // Placed in the local copy of its parent timeline, if this hub keeps one.
        RoomKind::Mirror { home, of: CopyKind::SubRoom { parent, name, .. }, .. } => {
            (view.mirror_of(home, *parent)?.unwrap_or(r.id), name)
        }
        _ => return Ok(None),
    };
    Ok(Some((parent, summary(view, m, r, name.clone())?)))
}

/// The viewer's sub-rooms of the patient timeline `timeline`, newest post first.
fn sub_rooms_of(view: &impl HubView, viewer: AccountId, timeline: RoomId) -> DomainResult<Vec<RoomSummary>> {
    let mut found = Vec::new();
    for (m, r) in active_rooms_of(view, viewer)? {
        if let Some((parent, sub)) = sub_room_entry(view, &m, &r)?
            && parent == timeline
        {
            found.push(sub);
        }
    }
    let newest: Vec<(RoomId, u64)> = found.iter().map(|s| (s.room, s.last_seq)).collect();
    for (sub, post) in found.iter_mut().zip(view.posts(&newest)?) {
        sub.preview = preview_of(post.as_ref());
    }
    found.sort_by_key(|s| Reverse((s.last_post_at_ms, s.room)));
    Ok(found)
}

/// Puts each sub-room (parent timeline, summary titled by its name) inside its parent's entry,
/// newest first; a sub-room without its parent in `entries` becomes an entry, to be titled in
/// full by [`fill`].
fn place_sub_rooms(entries: &mut Vec<RoomSummary>, sub_rooms: Vec<(RoomId, RoomSummary)>) {
    let entry_of: BTreeMap<RoomId, usize> = entries.iter().enumerate().map(|(i, e)| (e.room, i)).collect();
    for (parent, sub) in sub_rooms {
        match entry_of.get(&parent) {
            Some(&i) => entries[i].sub_rooms.push(sub),
            None => entries.push(RoomSummary { title: String::new(), ..sub }),
        }
    }
    for entry in entries {
        entry.sub_rooms.sort_by_key(|s| Reverse((s.last_post_at_ms, s.room)));
    }
}

fn listed_in(room: &RoomKind, list: ListKind) -> bool {
    use CopyKind as Copy;
    matches!(
        (room, list),
        (RoomKind::PatientTimeline { .. } | RoomKind::SubRoom { .. }, ListKind::Patients)
            | (RoomKind::Group { .. }, ListKind::Groups)
            | (RoomKind::Connection { .. }, ListKind::Connections)
            | (RoomKind::Mirror { of: Copy::PatientTimeline { .. } | Copy::SubRoom { .. }, .. }, ListKind::Patients)
            | (RoomKind::Mirror { of: Copy::Group { .. }, .. }, ListKind::Groups)
            | (RoomKind::Mirror { of: Copy::Connection, .. }, ListKind::Connections)
    )
}

/// The hub that orders `room`, when it is a copy of another hub's room.
pub fn home_hub(room: &Room) -> Option<&HubName> {
    match &room.kind {
        RoomKind::Mirror { home, .. } => Some(home),
        _ => None,
    }
}

/// For a copy of another hub's room: when this hub last applied a batch from its home hub.
pub fn heard_from_home(view: &impl HubView, room: &Room) -> ViewResult<Option<u64>> {
    match home_hub(room) {
        Some(home) => view.heard_from(home),
        None => Ok(None),
    }
}

/// One room's line as `member` sees it, without sub-rooms.
/// A room's line without its preview (see [`fill`]).
fn summary(view: &impl HubView, member: &Member, room: &Room, title: String) -> ViewResult<RoomSummary> {
    let preview = String::new();
    Ok(RoomSummary {
        room: room.id,
        title,
        last_seq: room.last_seq,
        last_post_at_ms: room.last_post_at_ms,
        unread: member.unread(room.last_seq),
        preview,
        sub_rooms: Vec::new(),
        home_hub: home_hub(room).cloned(),
        home_heard_at_ms: heard_from_home(view, room)?,
    })
}

/// The start of a room's newest post, as its list entry shows it (nothing once deleted).
fn preview_of(newest: Option<&Post>) -> String {
    newest.filter(|p| !p.deleted).map(|p| p.text.chars().take(60).collect()).unwrap_or_default()
}

/// Which posts of a room a timeline page shows: those with `after_seq < seq < before_seq`
/// (`before_seq` 0: up to the newest), at most `limit` of them from the `order`'s end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineQuery {
    pub after_seq: u64,
    pub before_seq: u64,
    pub order: TimelineOrder,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineOrder {
    /// The newest posts, descending: a timeline as MCS shows it, newest on top.
    NewestFirst,
    /// The oldest posts, ascending: reading a room from its start.
    OldestFirst,
}

/// One page of a timeline and where the next one in the same order starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelinePage {
    pub posts: Vec<Post>,
    /// Oldest first: the `after_seq` of the next (newer) page; 0 when the window holds no more.
    pub next_after_seq: u64,
    /// Newest first: the `before_seq` of the next (older) page; 0 when the window holds no more.
    pub next_before_seq: u64,
    /// The viewer's writes its home hub has not applied yet (a copy of another hub's room).
    pub sending: Vec<PendingWrite>,
    /// The hub that orders the room, when this hub keeps a copy of it.
    pub home_hub: Option<HubName>,
    /// For a copy: when this hub last heard from the home hub.
    pub home_heard_at_ms: Option<u64>,
}

/// A page of a room's posts. Deleted posts come back as tombstones (no text). The edit history
/// comes along for the caller to judge (it shows "edited"; the texts themselves are for audit).
/// Only the page's posts are read: a newest-first page walks down from the window's top.
pub fn timeline(view: &impl HubView, viewer: AccountId, room: RoomId, q: TimelineQuery) -> DomainResult<TimelinePage> {
    let (_, _, r) = active_member(view, viewer, room)?;
    page_of(view, viewer, r, q)
}

/// A page of a patient's timeline read under an emergency access (not a member): the caller
/// audits it as such. NotFound without an active access, as for any room one may not read.
pub fn emergency_timeline(
    view: &impl HubView,
    viewer: AccountId,
    room: RoomId,
    q: TimelineQuery,
    now_ms: u64,
) -> DomainResult<TimelinePage> {
    crate::authz::active_account(view, viewer)?;
    crate::emergency::active(view, viewer, room, now_ms)?.ok_or(crate::error::not_found("room"))?;
    let r = view.room(room)?.ok_or(crate::error::not_found("room"))?;
    page_of(view, viewer, r, q)
}

/// The posts of `room` that `q` asks for, as `viewer` sees them.
fn page_of(view: &impl HubView, viewer: AccountId, r: Room, q: TimelineQuery) -> DomainResult<TimelinePage> {
    let room = r.id;
    let first = q.after_seq.saturating_add(1);
    let last = match q.before_seq {
        0 => r.last_seq,
        before => (before - 1).min(r.last_seq),
    };
    let window = first..=last;
    let seqs: Box<dyn Iterator<Item = u64>> = match q.order {
        TimelineOrder::OldestFirst => Box::new(window),
        TimelineOrder::NewestFirst => Box::new(window.rev()),
    };
    let mut posts = Vec::new();
    for seq in seqs {
        if posts.len() == q.limit {
            break;
        }
        posts.extend(view.post(room, seq)?);
    }
    let (mut next_after_seq, mut next_before_seq) = (0, 0);
    match (q.order, posts.last()) {
        (TimelineOrder::OldestFirst, Some(p)) if p.seq < last => next_after_seq = p.seq,
        (TimelineOrder::NewestFirst, Some(p)) if p.seq > first => next_before_seq = p.seq,
        _ => {}
    }
    let sending = match home_hub(&r) {
        Some(_) => view.pending_in(room)?.into_iter().filter(|p| p.author == viewer).collect(),
        None => Vec::new(),
    };
    let home_heard_at_ms = heard_from_home(view, &r)?;
    Ok(TimelinePage {
        posts,
        next_after_seq,
        next_before_seq,
        sending,
        home_hub: home_hub(&r).cloned(),
        home_heard_at_ms,
    })
}

/// The member list of a room (active members only), for its members.
pub fn members(view: &impl HubView, viewer: AccountId, room: RoomId) -> DomainResult<Vec<Member>> {
    active_member(view, viewer, room)?;
    Ok(view.members(room)?.into_iter().filter(Member::is_active).collect())
}

/// What kind of room a client shows; a copy of another hub's room is what it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomShape {
    Patient,
    SubRoom,
    Group,
    Connection,
}

/// One room as an active member sees it: its kind, title, the viewer's role and every member,
/// those waiting for an owner's approval included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomDetail {
    pub room: Room,
    /// As the room lists title it, but a sub-room by its own name.
    pub title: String,
    pub shape: RoomShape,
    /// For a local patient's timeline and its sub-rooms: the patient (a copy's patient lives on
    /// its home hub and has no id here).
    pub patient: Option<PatientId>,
    /// For a sub-room: its patient's timeline (for a copy: this hub's copy of it, if kept).
    pub timeline: Option<RoomId>,
    pub my_role: Role,
    /// Active members first, then those waiting; by name within each. The account is None
    /// only for a member whose account is not (yet) known here.
    pub members: Vec<(Member, Option<Account>)>,
    /// For a patient's timeline: the viewer's sub-rooms of it, newest post first.
    pub sub_rooms: Vec<RoomSummary>,
}

/// [`RoomDetail`] of `room` for `viewer`, who must be an active member (NotFound otherwise, as
/// for a room that does not exist).
pub fn room_detail(view: &impl HubView, viewer: AccountId, room: RoomId) -> DomainResult<RoomDetail> {
    let (_, me, room) = active_member(view, viewer, room)?;
    let (shape, patient, timeline) = room_shape(view, &room)?;
    let title = match &room.kind {
        RoomKind::SubRoom { name, .. } | RoomKind::Mirror { of: CopyKind::SubRoom { name, .. }, .. } => name.clone(),
        _ => title(view, viewer, &room)?,
    };
    let mut members = Vec::new();
    for m in view.members(room.id)? {
        let account = view.account(m.account)?;
        members.push((m, account));
    }
    members.sort_by_cached_key(|(m, a)| {
        (!m.is_active(), a.as_ref().map(|a| a.display_name.clone()).unwrap_or_default(), m.account)
    });
    let sub_rooms = if shape == RoomShape::Patient { sub_rooms_of(view, viewer, room.id)? } else { Vec::new() };
    Ok(RoomDetail { title, shape, patient, timeline, my_role: me.role, members, sub_rooms, room })
}

/// A room's shape, patient and parent timeline.
fn room_shape(view: &impl HubView, room: &Room) -> ViewResult<(RoomShape, Option<PatientId>, Option<RoomId>)> {
    Ok(match &room.kind {
        RoomKind::PatientTimeline { patient } => (RoomShape::Patient, Some(*patient), None),
        RoomKind::SubRoom { patient, parent, .. } => (RoomShape::SubRoom, Some(*patient), Some(*parent)),
        RoomKind::Group { .. } => (RoomShape::Group, None, None),
        RoomKind::Connection { .. } => (RoomShape::Connection, None, None),
        RoomKind::Mirror { home, of, .. } => match of {
            CopyKind::PatientTimeline { .. } => (RoomShape::Patient, None, None),
            CopyKind::SubRoom { parent, .. } => (RoomShape::SubRoom, None, view.mirror_of(home, *parent)?),
            CopyKind::Group { .. } => (RoomShape::Group, None, None),
            CopyKind::Connection => (RoomShape::Connection, None, None),
        },
    })
}

/// Connection requests waiting for an answer, each with the other person's account, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionRequests {
    /// Asking the viewer to connect.
    pub incoming: Vec<Account>,
    /// Asked by the viewer.
    pub outgoing: Vec<Account>,
}

/// The viewer's [`ConnectionRequests`]. Reads only the viewer's own connections (an index per
/// account), never the whole table.
pub fn connection_requests(view: &impl HubView, viewer: AccountId) -> DomainResult<ConnectionRequests> {
    active_account(view, viewer)?;
    let mut found = ConnectionRequests::default();
    for c in view.connections_of(viewer)? {
        let ConnectionState::Requested { by } = c.state else { continue };
        let other = if c.pair.0 == viewer { c.pair.1 } else { c.pair.0 };
        let Some(account) = view.account(other)? else { continue };
        if by == viewer { found.outgoing.push(account) } else { found.incoming.push(account) }
    }
    for list in [&mut found.incoming, &mut found.outgoing] {
        list.sort_by(|a, b| (&a.display_name, a.id).cmp(&(&b.display_name, b.id)));
    }
    Ok(found)
}

/// The accounts of `facility`, by name, for its admins or an operator (who approve and stop
/// them): pending, active and stopped alike.
pub fn staff(view: &impl HubView, viewer: AccountId, facility: FacilityId) -> DomainResult<Vec<Account>> {
    view.facility(facility)?.ok_or(not_found("facility"))?;
    super::authz::facility_admin(view, viewer, facility)?;
    let mut staff = view.staff_of(facility)?;
    staff.sort_by(|a, b| (&a.display_name, a.id).cmp(&(&b.display_name, b.id)));
    Ok(staff)
}

/// Whether the session's hub-wide last use is older than [`TOUCH_EVERY_MS`] at `now_ms`.
pub fn touch_due(view: &impl HubView, token_hash: &str, now_ms: u64) -> ViewResult<bool> {
    Ok(view
        .session(token_hash)?
        .is_some_and(|s| now_ms.saturating_sub(s.last_used_ms.max(s.created_at_ms)) >= TOUCH_EVERY_MS))
}

/// Idle timeout and absolute expiry of sessions, in ms.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout_ms: u64,
    pub absolute_ms: u64,
}

impl From<HubSettings> for SessionPolicy {
    fn from(s: HubSettings) -> Self {
        let minute = 60 * 1000;
        Self {
            idle_timeout_ms: u64::from(s.session_idle_minutes) * minute,
            absolute_ms: u64::from(s.session_absolute_hours) * 60 * minute,
        }
    }
}

impl Default for SessionPolicy {
    /// The policy of a hub whose operator never set one.
    fn default() -> Self {
        HubSettings::default().into()
    }
}

impl SessionPolicy {
    /// The hub's policy: part of the replicated state, so every node applies the same one.
    pub fn of(view: &impl HubView) -> ViewResult<Self> {
        Ok(view.settings()?.into())
    }
}

/// How often a session in use records its use hub-wide (a replicated write): the idle timeout
/// is exact on the node a session is used on, and within this on every other node.
pub const TOUCH_EVERY_MS: u64 = 5 * 60 * 1000;

/// The account a session token stands for, if the session is still valid at `now_ms` given
/// its last use on this node (`last_used_ms`, 0 if never) and the hub-wide one. Checked on every
/// request, on every node.
pub fn authenticate(
    view: &impl HubView,
    token_hash: &str,
    last_used_ms: u64,
    now_ms: u64,
    policy: SessionPolicy,
) -> DomainResult<AccountId> {
    let s = view.session(token_hash)?.ok_or(super::DomainError::Unauthenticated)?;
    let idle = now_ms.saturating_sub(last_used_ms.max(s.last_used_ms).max(s.created_at_ms));
    let age = now_ms.saturating_sub(s.created_at_ms);
    if s.revoked || idle > policy.idle_timeout_ms || age > policy.absolute_ms {
        return Err(super::DomainError::Unauthenticated);
    }
    Ok(active_account(view, s.account)?.id)
}

/// [`authenticate`] for a live stream, in use all along (so never idle): until when the
/// session holds (ms; its absolute lifetime) unless it is revoked, its account stopped or the
/// hub's policy changed meanwhile.
pub fn stream_session_until(view: &impl HubView, token_hash: &str, now_ms: u64) -> DomainResult<u64> {
    let policy = SessionPolicy::of(view)?;
    authenticate(view, token_hash, now_ms, now_ms, policy)?;
    let s = view.session(token_hash)?.ok_or(super::DomainError::Unauthenticated)?;
    Ok(s.created_at_ms.saturating_add(policy.absolute_ms))
}

/// The account a command's session stands for at apply time `now_ms`, under the hub's own
/// policy (never a node's), so the same log gives the same answer on every node: a revoked
/// session, a stopped account or a session past the absolute lifetime is refused.
///
/// The idle timeout is not checked here but by the node that receives the request, which knows
/// the session's last use exactly. Apply sees only the hub-wide last use, recorded in the
/// background at most every [`TOUCH_EVERY_MS`] and not at all while a region is cut off: a
/// session in use there all along would be refused after the region reconnects.
pub fn session_actor(view: &impl HubView, token_hash: &str, now_ms: u64) -> DomainResult<AccountId> {
    let policy = SessionPolicy { idle_timeout_ms: u64::MAX, ..SessionPolicy::of(view)? };
    authenticate(view, token_hash, 0, now_ms, policy)
}
