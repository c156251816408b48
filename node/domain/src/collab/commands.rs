//! Every state change of the collaboration network, and its rules.
//!
//! `execute` is deterministic: the same view, context and command give the same changes on
//! every node. Secrets (password hashes, token and invitation-code hashes) are computed by the
//! API node before proposing; apply only compares and stores them.

use serde::{Deserialize, Serialize};

use super::authz::{self, active_account, active_member, facility_admin, operator, owner};
use super::directory::{self, FacilityProfile};
use super::error::{DomainError, DomainResult, denied, invalid, precondition};
use super::model::*;
use super::requests::{self, RequestKind};
use super::second_factor;
use super::view::{Change, HubView};

/// A session's public id: this many leading hex digits of its token's digest (the audit log
/// uses the same tag).
pub const SESSION_ID_CHARS: usize = 16;

/// Longest post text, in characters.
pub const MAX_POST_CHARS: usize = 10_000;
const MAX_NAME_CHARS: usize = 100;

/// Where and when a command is applied: ids come from the log index, time from the leader.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub log_index: u64,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    InitOperator {
        login: String,
        display_name: String,
        password_hash: String,
    },
    RegisterFacility {
        name: String,
        kind: FacilityKind,
        municipality: String,
    },
    ApproveFacility {
        facility: FacilityId,
    },
    IssueInvitation {
        facility: FacilityId,
        code_hash: String,
        expires_at_ms: u64,
        as_admin: bool,
    },
    Register {
        code_hash: String,
        login: String,
        display_name: String,
        profession: Profession,
        password_hash: String,
    },
    ApproveAccount {
        account: AccountId,
    },
    StopAccount {
        account: AccountId,
    },
    /// The API node verified the password; apply checks the account is still active.
    CreateSession {
        login: String,
        token_hash: String,
        device: String,
        /// The TOTP step the API node matched the user's code at (accounts with a second factor).
        totp_step: Option<u64>,
    },
    BeginTotp {
        secret: Vec<u8>,
    },
    ConfirmTotp {
        step: u64,
    },
    DisableTotp {
        account: AccountId,
        step: Option<u64>,
    },
    /// Records that the caller's session is in use (the hub-wide idle clock).
    TouchSession {
        token_hash: String,
    },
    /// Ends one session (a lost or shared device) of the account, at once on every node.
    RevokeSession {
        account: AccountId,
        /// The session's id: the first 16 hex digits of its token's digest.
        session: String,
    },
    Logout {
        token_hash: String,
    },
    CreatePatient {
        name: String,
        kana: String,
        birth_date: String,
        address: String,
        notes: String,
    },
    /// Creates a family account bound to one patient; it joins that patient's timeline only.
    CreateFamilyAccount {
        patient: PatientId,
        login: String,
        display_name: String,
        password_hash: String,
    },
    CreateSubRoom {
        timeline: RoomId,
        name: String,
        members: Vec<AccountId>,
    },
    CreateGroup {
        name: String,
    },
    Invite {
        room: RoomId,
        invitee: AccountId,
        role: Role,
    },
    Approve {
        room: RoomId,
        account: AccountId,
    },
    RequestJoin {
        room: RoomId,
    },
    Leave {
        room: RoomId,
    },
    Remove {
        room: RoomId,
        account: AccountId,
    },
    RequestConnection {
        to: AccountId,
    },
    AcceptConnection {
        from: AccountId,
    },
    DeclineConnection {
        from: AccountId,
    },
    BlockConnection {
        other: AccountId,
    },
    Post {
        room: RoomId,
        text: String,
        reply_to: Option<u64>,
        mentions: Vec<AccountId>,
    },
    EditPost {
        room: RoomId,
        seq: u64,
        text: String,
    },
    DeletePost {
        room: RoomId,
        seq: u64,
    },
    AckPost {
        room: RoomId,
        seq: u64,
    },
    MarkRead {
        room: RoomId,
        up_to_seq: u64,
    },
    SendRequest {
        kind: RequestKind,
        patient: Option<PatientId>,
        title: String,
        details: String,
        facilities: Vec<FacilityId>,
    },
    AnswerRequest {
        request: RequestId,
        accept: bool,
        note: String,
    },
    CancelRequest {
        request: RequestId,
    },
    UpdateFacilityProfile {
        facility: FacilityId,
        profile: FacilityProfile,
    },
}

/// What a successful command produced, for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Account(AccountId),
    Facility(FacilityId),
    Invitation(InvitationId),
    Session(AccountId),
    Patient { patient: PatientId, timeline: RoomId },
    Room(RoomId),
    Posted { room: RoomId, seq: u64 },
    Request(RequestId),
    Done,
}

type Executed = (Outcome, Vec<Change>);

pub(super) fn text(field: &str, value: &str, max_chars: usize) -> DomainResult<()> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max_chars || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!("{field} must be 1..={max_chars} characters of text")));
    }
    Ok(())
}

fn login_free(view: &impl HubView, login: &str) -> DomainResult<()> {
    text("login", login, MAX_NAME_CHARS)?;
    if login.chars().any(char::is_whitespace) {
        return Err(invalid("login must not contain spaces"));
    }
    if view.account_by_login(login).is_some() {
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

/// Applies `command` by `actor` (None: not signed in — only init, registration and login).
pub fn execute(view: &impl HubView, ctx: Ctx, actor: Option<AccountId>, command: Command) -> DomainResult<Executed> {
    let signed_in = || actor.ok_or(DomainError::Unauthenticated);
    match command {
        Command::InitOperator { login, display_name, password_hash } => {
            if view.has_operator() {
                return Err(precondition("the hub already has an operator; operators are added by operators"));
            }
            let names = (login, display_name, password_hash);
            let account = new_account(view, ctx, names, AccountKind::Operator, AccountStatus::Active, false)?;
            Ok((Outcome::Account(account.id), vec![Change::Account(account)]))
        }
        Command::RegisterFacility { name, kind, municipality } => {
            operator(view, signed_in()?)?;
            text("name", &name, MAX_NAME_CHARS)?;
            text("municipality", &municipality, MAX_NAME_CHARS)?;
            let id = FacilityId(ctx.log_index);
            let facility =
                Facility { id, name, kind, municipality, status: FacilityStatus::Pending, profile: Default::default() };
            Ok((Outcome::Facility(id), vec![Change::Facility(facility)]))
        }
        Command::ApproveFacility { facility } => {
            operator(view, signed_in()?)?;
            let mut f = view.facility(facility).ok_or(DomainError::NotFound("facility"))?;
            f.status = FacilityStatus::Approved;
            Ok((Outcome::Facility(facility), vec![Change::Facility(f)]))
        }
        Command::IssueInvitation { facility, code_hash, expires_at_ms, as_admin } => {
            let issuer = facility_admin(view, signed_in()?, facility)?;
            if as_admin && !issuer.is_operator() && !issuer.facility_admin {
                return Err(denied("only admins may invite admins"));
            }
            let f = view.facility(facility).ok_or(DomainError::NotFound("facility"))?;
            if f.status != FacilityStatus::Approved {
                return Err(precondition("the facility is not approved yet"));
            }
            if expires_at_ms <= ctx.now_ms {
                return Err(invalid("the invitation would already be expired"));
            }
            if code_hash.is_empty() || view.invitation_by_code(&code_hash).is_some() {
                return Err(invalid("invitation code unusable"));
            }
            let id = InvitationId(ctx.log_index);
            let invitation =
                Invitation { id, code_hash, facility, issued_by: issuer.id, expires_at_ms, used_by: None, as_admin };
            Ok((Outcome::Invitation(id), vec![Change::Invitation(invitation)]))
        }
        Command::Register { code_hash, login, display_name, profession, password_hash } => {
            let mut invitation = view.invitation_by_code(&code_hash).ok_or(DomainError::NotFound("invitation"))?;
            if invitation.used_by.is_some() {
                return Err(precondition("this invitation has already been used"));
            }
            if invitation.expires_at_ms <= ctx.now_ms {
                return Err(precondition("this invitation has expired"));
            }
            let kind = AccountKind::Professional { facility: invitation.facility, profession };
            let names = (login, display_name, password_hash);
            let account = new_account(view, ctx, names, kind, AccountStatus::Pending, invitation.as_admin)?;
            invitation.used_by = Some(account.id);
            Ok((Outcome::Account(account.id), vec![Change::Invitation(invitation), Change::Account(account)]))
        }
        Command::ApproveAccount { account } => {
            let actor = signed_in()?;
            let mut target = view.account(account).ok_or(DomainError::NotFound("account"))?;
            match target.facility() {
                Some(f) => facility_admin(view, actor, f)?,
                None => operator(view, actor)?,
            };
            if target.status != AccountStatus::Pending {
                return Err(precondition("only a pending account can be approved"));
            }
            target.status = AccountStatus::Active;
            Ok((Outcome::Account(account), vec![Change::Account(target)]))
        }
        Command::StopAccount { account } => {
            let actor = signed_in()?;
            let mut target = view.account(account).ok_or(DomainError::NotFound("account"))?;
            authz::account_admin(view, actor, &target)?;
            target.status = AccountStatus::Stopped;
            let mut changes = vec![Change::Account(target)];
            for mut s in view.sessions_of(account).into_iter().filter(|s| !s.revoked) {
                s.revoked = true;
                changes.push(Change::Session(s));
            }
            Ok((Outcome::Account(account), changes))
        }
        Command::CreateSession { login, token_hash, device, totp_step } => {
            let id = view.account_by_login(&login).ok_or(DomainError::Unauthenticated)?;
            let account = active_account(view, id)?;
            if token_hash.is_empty() || view.session(&token_hash).is_some() {
                return Err(invalid("session token unusable"));
            }
            let mut changes: Vec<Change> =
                second_factor::login(account, totp_step)?.map(Change::Account).into_iter().collect();
            let session = Session {
                token_hash,
                account: id,
                created_at_ms: ctx.now_ms,
                device,
                revoked: false,
                last_used_ms: ctx.now_ms,
            };
            changes.push(Change::Session(session));
            Ok((Outcome::Session(id), changes))
        }
        Command::BeginTotp { secret } => second_factor::begin(view, signed_in()?, secret),
        Command::ConfirmTotp { step } => second_factor::confirm(view, signed_in()?, step),
        Command::DisableTotp { account, step } => second_factor::disable(view, signed_in()?, account, step),
        Command::TouchSession { token_hash } => {
            let actor = signed_in()?;
            let mut s = view
                .session(&token_hash)
                .filter(|s| s.account == actor && !s.revoked)
                .ok_or(DomainError::NotFound("session"))?;
            s.last_used_ms = s.last_used_ms.max(ctx.now_ms);
            Ok((Outcome::Done, vec![Change::Session(s)]))
        }
        Command::RevokeSession { account, session } => {
            authz::self_or_admin(view, signed_in()?, account)?;
            if session.len() != SESSION_ID_CHARS {
                return Err(invalid(format!("a session id is {SESSION_ID_CHARS} hex digits")));
            }
            let mut s = view
                .sessions_of(account)
                .into_iter()
                .find(|s| s.token_hash.starts_with(&session))
                .ok_or(DomainError::NotFound("session"))?;
            if s.revoked {
                return Err(precondition("that session has ended already"));
            }
            s.revoked = true;
            Ok((Outcome::Done, vec![Change::Session(s)]))
        }
        Command::Logout { token_hash } => {
            let actor = signed_in()?;
            let mut s =
                view.session(&token_hash).filter(|s| s.account == actor).ok_or(DomainError::NotFound("session"))?;
            s.revoked = true;
            Ok((Outcome::Done, vec![Change::Session(s)]))
        }
        Command::CreatePatient { name, kana, birth_date, address, notes } => {
            let account = active_account(view, signed_in()?)?;
            let facility = account.facility().ok_or_else(|| denied("only professionals create patients"))?;
            text("name", &name, MAX_NAME_CHARS)?;
            text("kana", &kana, MAX_NAME_CHARS)?;
            let patient = PatientId(ctx.log_index);
            let timeline = RoomId(ctx.log_index);
            let room = Room {
                id: timeline,
                kind: RoomKind::PatientTimeline { patient },
                last_seq: 0,
                last_post_at_ms: ctx.now_ms,
            };
            let p = Patient { id: patient, facility, name, kana, birth_date, address, notes, timeline };
            let owner = Member::new(timeline, account.id, Role::Owner, MemberState::Active);
            Ok((
                Outcome::Patient { patient, timeline },
                vec![Change::Patient(p), Change::Room(room), Change::Member(owner)],
            ))
        }
        Command::CreateFamilyAccount { patient, login, display_name, password_hash } => {
            let p = view.patient(patient).ok_or(DomainError::NotFound("patient"))?;
            owner(view, signed_in()?, p.timeline)?;
            let names = (login, display_name, password_hash);
            let account = new_account(view, ctx, names, AccountKind::Family { patient }, AccountStatus::Active, false)?;
            let member = Member::new(p.timeline, account.id, Role::Family, MemberState::Active);
            Ok((Outcome::Account(account.id), vec![Change::Account(account), Change::Member(member)]))
        }
        Command::CreateSubRoom { timeline, name, members } => {
            let (account, _, room) = active_member(view, signed_in()?, timeline)?;
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
                let in_team = view.member(timeline, m).is_some_and(|x| x.is_active());
                if !in_team {
                    return Err(invalid(format!("account {m} is not in this patient's team")));
                }
                changes.push(Change::Member(Member::new(id, m, Role::Member, MemberState::Active)));
            }
            Ok((Outcome::Room(id), changes))
        }
        Command::CreateGroup { name } => {
            let account = active_account(view, signed_in()?)?;
            if account.facility().is_none() {
                return Err(denied("only professionals create groups"));
            }
            text("name", &name, MAX_NAME_CHARS)?;
            let id = RoomId(ctx.log_index);
            let room = Room { id, kind: RoomKind::Group { name }, last_seq: 0, last_post_at_ms: ctx.now_ms };
            Ok((
                Outcome::Room(id),
                vec![Change::Room(room), Change::Member(Member::new(id, account.id, Role::Owner, MemberState::Active))],
            ))
        }
        Command::Invite { room, invitee, role } => {
            let (_, inviter, r) = active_member(view, signed_in()?, room)?;
            if matches!(r.kind, RoomKind::Connection { .. }) {
                return Err(invalid("a connection room has exactly its two members"));
            }
            if matches!(r.kind, RoomKind::SubRoom { .. }) && inviter.role != Role::Owner {
                return Err(denied("only the sub-room's owner adds members"));
            }
            let target = view.account(invitee).filter(Account::is_active).ok_or(DomainError::NotFound("account"))?;
            match (&target.kind, role) {
                (AccountKind::Family { patient }, Role::Family)
                    if r.kind != (RoomKind::PatientTimeline { patient: *patient }) =>
                {
                    return Err(invalid("a family account joins only its own patient's timeline"));
                }
                (AccountKind::Family { .. }, Role::Family) => {}
                (AccountKind::Family { .. }, _) | (_, Role::Family) => {
                    return Err(invalid("the family role is for family accounts only"));
                }
                (AccountKind::Operator, _) => return Err(invalid("operators are not invited into rooms")),
                _ => {}
            }
            if let RoomKind::SubRoom { parent, .. } = r.kind
                && !view.member(parent, invitee).is_some_and(|m| m.is_active())
            {
                return Err(invalid("sub-room members come from the patient's team"));
            }
            if role == Role::Owner && inviter.role != Role::Owner {
                return Err(denied("only owners make owners"));
            }
            if view.member(room, invitee).is_some() {
                return Err(precondition("already a member or invited"));
            }
            // An owner's invitation is its own approval; anyone else's waits for an owner.
            let state = if inviter.role == Role::Owner {
                MemberState::Active
            } else {
                MemberState::Invited { by: inviter.account }
            };
            Ok((Outcome::Room(room), vec![Change::Member(Member::new(room, invitee, role, state))]))
        }
        Command::Approve { room, account } => {
            owner(view, signed_in()?, room)?;
            let mut m = view.member(room, account).ok_or(DomainError::NotFound("invitation"))?;
            if m.is_active() {
                return Err(precondition("already an active member"));
            }
            if !view.account(account).is_some_and(|a| a.is_active()) {
                return Err(precondition("the account is not active"));
            }
            m.state = MemberState::Active;
            Ok((Outcome::Room(room), vec![Change::Member(m)]))
        }
        Command::RequestJoin { room } => {
            let account = active_account(view, signed_in()?)?;
            let r = view.room(room).ok_or(DomainError::NotFound("room"))?;
            if !matches!(r.kind, RoomKind::Group { .. }) {
                // Patient teams are invitation-only: do not even confirm they exist.
                return Err(DomainError::NotFound("room"));
            }
            if account.facility().is_none() {
                return Err(denied("only professionals join groups"));
            }
            if view.member(room, account.id).is_some() {
                return Err(precondition("already a member or pending"));
            }
            Ok((
                Outcome::Room(room),
                vec![Change::Member(Member::new(room, account.id, Role::Member, MemberState::Requested))],
            ))
        }
        Command::Leave { room } => {
            let actor = signed_in()?;
            let (_, m, r) = active_member(view, actor, room)?;
            if matches!(r.kind, RoomKind::Connection { .. }) {
                return Err(invalid("end a connection by blocking it"));
            }
            let owners = view.members(room).into_iter().filter(|x| x.is_active() && x.role == Role::Owner).count();
            if m.role == Role::Owner && owners == 1 {
                return Err(precondition("the last owner cannot leave; make another member owner first"));
            }
            Ok((Outcome::Done, removal(view, room, actor)))
        }
        Command::Remove { room, account } => {
            let (_, _, r) = owner(view, signed_in()?, room)?;
            if matches!(r.kind, RoomKind::Connection { .. }) {
                return Err(invalid("end a connection by blocking it"));
            }
            let m = view.member(room, account).ok_or(DomainError::NotFound("member"))?;
            if m.role == Role::Owner && m.is_active() {
                return Err(denied("owners cannot be removed by other owners; they leave"));
            }
            Ok((Outcome::Done, removal(view, room, account)))
        }
        Command::RequestConnection { to } => {
            let me = active_account(view, signed_in()?)?;
            let them = view
                .account(to)
                .filter(|a| a.is_active() && a.facility().is_some())
                .ok_or(DomainError::NotFound("account"))?;
            if me.facility().is_none() || me.id == them.id {
                return Err(invalid("connections link two different professionals"));
            }
            let pair = connection_pair(me.id, to);
            match view.connection(pair).map(|c| c.state) {
                None | Some(ConnectionState::Declined) => {}
                Some(ConnectionState::Blocked { .. }) => return Err(DomainError::NotFound("account")),
                Some(_) => return Err(precondition("already requested or connected")),
            }
            let c = Connection { pair, state: ConnectionState::Requested { by: me.id } };
            Ok((Outcome::Done, vec![Change::Connection(c)]))
        }
        Command::AcceptConnection { from } => {
            let me = active_account(view, signed_in()?)?;
            let pair = connection_pair(me.id, from);
            let c = view.connection(pair).ok_or(DomainError::NotFound("connection request"))?;
            if c.state != (ConnectionState::Requested { by: from }) {
                return Err(DomainError::NotFound("connection request"));
            }
            let room = RoomId(ctx.log_index);
            let kind = RoomKind::Connection { a: pair.0, b: pair.1 };
            let changes = vec![
                Change::Connection(Connection { pair, state: ConnectionState::Accepted { room } }),
                Change::Room(Room { id: room, kind, last_seq: 0, last_post_at_ms: ctx.now_ms }),
                Change::Member(Member::new(room, pair.0, Role::Member, MemberState::Active)),
                Change::Member(Member::new(room, pair.1, Role::Member, MemberState::Active)),
            ];
            Ok((Outcome::Room(room), changes))
        }
        Command::DeclineConnection { from } => {
            let me = active_account(view, signed_in()?)?;
            let pair = connection_pair(me.id, from);
            match view.connection(pair) {
                Some(c) if c.state == (ConnectionState::Requested { by: from }) => {
                    Ok((Outcome::Done, vec![Change::Connection(Connection { pair, state: ConnectionState::Declined })]))
                }
                _ => Err(DomainError::NotFound("connection request")),
            }
        }
        Command::BlockConnection { other } => {
            let me = active_account(view, signed_in()?)?;
            if view.account(other).is_none() || other == me.id {
                return Err(DomainError::NotFound("account"));
            }
            let pair = connection_pair(me.id, other);
            let mut changes =
                vec![Change::Connection(Connection { pair, state: ConnectionState::Blocked { by: me.id } })];
            if let Some(Connection { state: ConnectionState::Accepted { room }, .. }) = view.connection(pair) {
                changes.extend(removal(view, room, pair.0));
                changes.extend(removal(view, room, pair.1));
            }
            Ok((Outcome::Done, changes))
        }
        Command::Post { room, text: body, reply_to, mentions } => {
            let (account, mut member, mut r) = active_member(view, signed_in()?, room)?;
            text("text", &body, MAX_POST_CHARS)?;
            if let Some(to) = reply_to
                && (to == 0 || to > r.last_seq)
            {
                return Err(invalid(format!("reply_to {to}: no such post in this room")));
            }
            let mut mentions = mentions;
            mentions.sort();
            mentions.dedup();
            if let Some(m) = mentions.iter().find(|m| !view.member(room, **m).is_some_and(|x| x.is_active())) {
                return Err(invalid(format!("mention of {m}: not a member of this room")));
            }
            r.last_seq += 1;
            r.last_post_at_ms = ctx.now_ms;
            member.record_own_post(r.last_seq);
            let post = Post {
                room,
                seq: r.last_seq,
                author: account.id,
                text: body,
                reply_to,
                mentions,
                posted_at_ms: ctx.now_ms,
                history: vec![],
                deleted: false,
                acks: vec![],
            };
            let seq = r.last_seq;
            Ok((Outcome::Posted { room, seq }, vec![Change::Room(r), Change::Member(member), Change::Post(post)]))
        }
        Command::EditPost { room, seq, text: body } => {
            let (account, _, _) = active_member(view, signed_in()?, room)?;
            let mut post = view.post(room, seq).ok_or(DomainError::NotFound("post"))?;
            if post.author != account.id {
                return Err(denied("only the author edits a post"));
            }
            if post.deleted {
                return Err(precondition("the post is deleted"));
            }
            text("text", &body, MAX_POST_CHARS)?;
            let old = std::mem::replace(&mut post.text, body);
            post.history.push(PostVersion { text: old, at_ms: ctx.now_ms });
            Ok((Outcome::Posted { room, seq }, vec![Change::Post(post)]))
        }
        Command::DeletePost { room, seq } => {
            let (account, member, _) = active_member(view, signed_in()?, room)?;
            let mut post = view.post(room, seq).ok_or(DomainError::NotFound("post"))?;
            if post.author != account.id && member.role != Role::Owner {
                return Err(denied("only the author or an owner deletes a post"));
            }
            if !post.deleted {
                // Tombstone: the text leaves the timeline but stays in the history for audit.
                let old = std::mem::take(&mut post.text);
                post.history.push(PostVersion { text: old, at_ms: ctx.now_ms });
                post.deleted = true;
            }
            Ok((Outcome::Posted { room, seq }, vec![Change::Post(post)]))
        }
        Command::AckPost { room, seq } => {
            let (account, _, _) = active_member(view, signed_in()?, room)?;
            let mut post = view.post(room, seq).filter(|p| !p.deleted).ok_or(DomainError::NotFound("post"))?;
            if !post.acks.contains(&account.id) {
                post.acks.push(account.id);
            }
            Ok((Outcome::Posted { room, seq }, vec![Change::Post(post)]))
        }
        Command::MarkRead { room, up_to_seq } => {
            let (_, mut member, r) = active_member(view, signed_in()?, room)?;
            member.advance_read(up_to_seq.min(r.last_seq));
            Ok((Outcome::Done, vec![Change::Member(member)]))
        }
        Command::SendRequest { kind, patient, title, details, facilities } => {
            requests::send(view, ctx, signed_in()?, (kind, patient, title, details), facilities)
        }
        Command::AnswerRequest { request, accept, note } => {
            requests::answer(view, ctx, signed_in()?, request, accept, note)
        }
        Command::CancelRequest { request } => requests::cancel(view, signed_in()?, request),
        Command::UpdateFacilityProfile { facility, profile } => {
            directory::update_profile(view, signed_in()?, facility, profile)
        }
    }
}

/// Removing a member also removes it from the patient's sub-rooms, so leaving a team leaves
/// every room of that patient.
fn removal(view: &impl HubView, room: RoomId, account: AccountId) -> Vec<Change> {
    let mut changes = vec![Change::RemoveMember { room, account }];
    if let Some(Room { kind: RoomKind::PatientTimeline { .. }, .. }) = view.room(room) {
        for sub in view.rooms_of(account) {
            if let Some(Room { kind: RoomKind::SubRoom { parent, .. }, id, .. }) = view.room(sub.room)
                && parent == room
            {
                changes.push(Change::RemoveMember { room: id, account });
            }
        }
    }
    changes
}

/// Re-exported for the API's read paths.
pub use authz::can_read;
