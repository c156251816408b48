//! Rooms and their members: patients and their timelines (the patient's team), sub-rooms,
//! groups; inviting, approving, asking to join, leaving and removing members.

use super::authz::{active_account, active_member, owner};
use super::error::{DomainResult, denied, invalid, not_found, precondition};
use super::kernel::{Ctx, Effects, MAX_NAME_CHARS, MAX_POST_CHARS, Outcome, optional_text, text, tighter_limits};
use super::model::*;
use super::view::{Change, HubView, ViewResult};

/// The fields of `CreatePatient` besides its name and kana.
pub struct PatientDetails {
    pub birth_date: String,
    pub address: String,
    pub notes: String,
}

/// The longest birth date as written (「昭和15年3月2日」, 1940-03-02).
const MAX_BIRTH_DATE_CHARS: usize = 20;

impl PatientDetails {
    /// Each detail may be left empty; otherwise it is bounded like the texts it resembles.
    fn check(&self) -> DomainResult<()> {
        optional_text("birth_date", &self.birth_date, MAX_BIRTH_DATE_CHARS)?;
        optional_text("address", &self.address, crate::directory::MAX_ADDRESS_CHARS)?;
        optional_text("notes", &self.notes, MAX_POST_CHARS)
    }
}

/// `CreatePatient`: a professional creates a patient and its timeline, owning it.
pub fn create_patient(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (name, kana): (String, String),
    details: PatientDetails,
) -> DomainResult<Effects> {
    let account = active_account(view, actor)?;
    let facility = account.facility().ok_or_else(|| denied("only professionals create patients"))?;
    text("name", &name, MAX_NAME_CHARS)?;
    text("kana", &kana, MAX_NAME_CHARS)?;
    if tighter_limits(view)? {
        details.check()?;
    }
    let PatientDetails { birth_date, address, notes } = details;
    let patient = PatientId(ctx.log_index);
    let timeline = RoomId(ctx.log_index);
    let room =
        Room { id: timeline, kind: RoomKind::PatientTimeline { patient }, last_seq: 0, last_post_at_ms: ctx.now_ms };
    let p = Patient { id: patient, facility, name, kana, birth_date, address, notes, timeline };
    let owner = Member::new(timeline, account.id, Role::Owner, MemberState::Active);
    Ok(Effects::new(
        Outcome::Patient { patient, timeline },
        vec![Change::Patient(p), Change::Room(room), Change::Member(owner)],
    )
    .membership(timeline)
    .audited(Some(patient), Some(timeline), "create patient"))
}

/// `CreateSubRoom`: a room inside a patient's timeline, its members from the patient's team.
pub fn create_sub_room(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (timeline, name): (RoomId, String),
    members: Vec<AccountId>,
) -> DomainResult<Effects> {
    let (account, _, room) = active_member(view, actor, timeline)?;
    let RoomKind::PatientTimeline { patient } = room.kind else {
        return Err(invalid("sub-rooms live inside a patient timeline"));
    };
    text("name", &name, MAX_NAME_CHARS)?;
    let id = RoomId(ctx.log_index);
    let kind = RoomKind::SubRoom { patient, parent: timeline, name };
    let mut changes = vec![
        Change::Room(Room { id, kind, last_seq: 0, last_post_at_ms: ctx.now_ms }),
        Change::Member(Member::new(id, account.id, Role::Owner, MemberState::Active)),
    ];
    for m in members.into_iter().filter(|m| *m != account.id) {
        let in_team = view.member(timeline, m)?.is_some_and(|x| x.is_active());
        if !in_team {
            return Err(invalid(format!("account {m} is not in this patient's team")));
        }
        changes.push(Change::Member(Member::new(id, m, Role::Member, MemberState::Active)));
    }
    Ok(Effects::new(Outcome::Room(id), changes).membership(id).audited_in(view, timeline, "create sub-room")?)
}

/// `CreateGroup`: a professional creates a group, owning it.
pub fn create_group(view: &impl HubView, ctx: Ctx, actor: AccountId, name: String) -> DomainResult<Effects> {
    let account = active_account(view, actor)?;
    if account.facility().is_none() {
        return Err(denied("only professionals create groups"));
    }
    text("name", &name, MAX_NAME_CHARS)?;
    let id = RoomId(ctx.log_index);
    let room = Room { id, kind: RoomKind::Group { name }, last_seq: 0, last_post_at_ms: ctx.now_ms };
    Ok(Effects::new(
        Outcome::Room(id),
        vec![Change::Room(room), Change::Member(Member::new(id, account.id, Role::Owner, MemberState::Active))],
    )
    .membership(id))
}

/// Whether `target` may join room `r` with `role` at all (family accounts only their own
/// patient's timeline; operators nowhere).
fn invitable(r: &Room, target: &Account, role: Role) -> DomainResult<()> {
    match (&target.kind, role) {
        (AccountKind::Family { patient }, Role::Family)
            if r.kind != (RoomKind::PatientTimeline { patient: *patient }) =>
        {
            Err(invalid("a family account joins only its own patient's timeline"))
        }
        (AccountKind::Family { .. }, Role::Family) => Ok(()),
        (AccountKind::Family { .. }, _) | (_, Role::Family) => {
            Err(invalid("the family role is for family accounts only"))
        }
        (AccountKind::Operator, _) => Err(invalid("operators are not invited into rooms")),
        _ => Ok(()),
    }
}

/// `Invite`: a member invites an account; an owner's invitation is its own approval.
pub fn invite(
    view: &impl HubView,
    actor: AccountId,
    room: RoomId,
    invitee: AccountId,
    role: Role,
) -> DomainResult<Effects> {
    let target = view.account(invitee)?.filter(Account::is_active).ok_or(not_found("account"))?;
    invite_account(view, actor, room, &target, role)
}

/// [`invite`] of an account the caller already holds (also a remote professional's, which
/// may be created by the same command).
pub(super) fn invite_account(
    view: &impl HubView,
    actor: AccountId,
    room: RoomId,
    target: &Account,
    role: Role,
) -> DomainResult<Effects> {
    let invitee = target.id;
    let (_, inviter, r) = active_member(view, actor, room)?;
    if matches!(r.kind, RoomKind::Connection { .. }) {
        return Err(invalid("a connection room has exactly its two members"));
    }
    if matches!(r.kind, RoomKind::SubRoom { .. }) && inviter.role != Role::Owner {
        return Err(denied("only the sub-room's owner adds members"));
    }
    invitable(&r, target, role)?;
    if let RoomKind::SubRoom { parent, .. } = r.kind
        && !view.member(parent, invitee)?.is_some_and(|m| m.is_active())
    {
        return Err(invalid("sub-room members come from the patient's team"));
    }
    if role == Role::Owner && inviter.role != Role::Owner {
        return Err(denied("only owners make owners"));
    }
    if view.member(room, invitee)?.is_some() {
        return Err(precondition("already a member or invited"));
    }
    // An owner's invitation is its own approval; anyone else's waits for an owner.
    let state =
        if inviter.role == Role::Owner { MemberState::Active } else { MemberState::Invited { by: inviter.account } };
    Ok(Effects::new(Outcome::Room(room), vec![Change::Member(Member::new(room, invitee, role, state))])
        .membership(room)
        .audited_in(view, room, "invite member")?)
}

/// `Approve`: an owner approves an invitation or a request to join.
pub fn approve(view: &impl HubView, actor: AccountId, room: RoomId, account: AccountId) -> DomainResult<Effects> {
    owner(view, actor, room)?;
    let mut m = view.member(room, account)?.ok_or(not_found("invitation"))?;
    if m.is_active() {
        return Err(precondition("already an active member"));
    }
    if !view.account(account)?.is_some_and(|a| a.is_active()) {
        return Err(precondition("the account is not active"));
    }
    m.state = MemberState::Active;
    Ok(Effects::new(Outcome::Room(room), vec![Change::Member(m)]).membership(room).audited_in(
        view,
        room,
        "approve member",
    )?)
}

/// `RequestJoin`: a professional asks to join a group (patient teams are invitation-only).
pub fn request_join(view: &impl HubView, actor: AccountId, room: RoomId) -> DomainResult<Effects> {
    let account = active_account(view, actor)?;
    let r = view.room(room)?.ok_or(not_found("room"))?;
    if !matches!(r.kind, RoomKind::Group { .. }) {
        // Patient teams are invitation-only: do not even confirm they exist.
        return Err(not_found("room"));
    }
    if account.facility().is_none() {
        return Err(denied("only professionals join groups"));
    }
    if view.member(room, account.id)?.is_some() {
        return Err(precondition("already a member or pending"));
    }
    Ok(Effects::new(
        Outcome::Room(room),
        vec![Change::Member(Member::new(room, account.id, Role::Member, MemberState::Requested))],
    )
    .membership(room))
}

/// `Leave`: any member but the last owner.
pub fn leave(view: &impl HubView, actor: AccountId, room: RoomId) -> DomainResult<Effects> {
    let (_, m, r) = active_member(view, actor, room)?;
    if matches!(r.kind, RoomKind::Connection { .. }) {
        return Err(invalid("end a connection by blocking it"));
    }
    let owners = view.members(room)?.into_iter().filter(|x| x.is_active() && x.role == Role::Owner).count();
    if m.role == Role::Owner && owners == 1 {
        return Err(precondition("the last owner cannot leave; make another member owner first"));
    }
    Ok(Effects::new(Outcome::Done, removal(view, room, actor)?).membership(room).audited_in(view, room, "leave")?)
}

/// `Remove`: an owner removes a member (not an active owner: owners leave).
pub fn remove(view: &impl HubView, actor: AccountId, room: RoomId, account: AccountId) -> DomainResult<Effects> {
    let (_, _, r) = owner(view, actor, room)?;
    if matches!(r.kind, RoomKind::Connection { .. }) {
        return Err(invalid("end a connection by blocking it"));
    }
    let m = view.member(room, account)?.ok_or(not_found("member"))?;
    if m.role == Role::Owner && m.is_active() {
        return Err(denied("owners cannot be removed by other owners; they leave"));
    }
    Ok(Effects::new(Outcome::Done, removal(view, room, account)?).membership(room).audited_in(
        view,
        room,
        "remove member",
    )?)
}

/// Removing a member also removes it from the patient's sub-rooms, so leaving a team leaves
/// every room of that patient.
pub(super) fn removal(view: &impl HubView, room: RoomId, account: AccountId) -> ViewResult<Vec<Change>> {
    let mut changes = vec![Change::RemoveMember { room, account }];
    if let Some(Room { kind: RoomKind::PatientTimeline { .. }, .. }) = view.room(room)? {
        for sub in view.rooms_of(account)? {
            if let Some(Room { kind: RoomKind::SubRoom { parent, .. }, id, .. }) = view.room(sub.room)?
                && parent == room
            {
                changes.push(Change::RemoveMember { room: id, account });
            }
        }
    }
    Ok(changes)
}
