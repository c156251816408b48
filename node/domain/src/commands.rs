//! Every state change of the collaboration network: the [`Command`]s and [`execute`], which
//! hands each one to the feature that decides it (`accounts`, `sessions`, `second_factor`,
//! `rooms`, `connections`, `posts`, `requests`, `directory`).
//!
//! `execute` is deterministic: the same view, context and command give the same changes on
//! every node. Secrets (password hashes, token and invitation-code hashes) are computed by the
//! API node before proposing; apply only compares and stores them.
//!
//! `Command` travels in the Raft log and rests in data directories in the store's positional
//! value format: its variants and fields are a stored format (a new variant goes at the end).

use serde::{Deserialize, Serialize};

use super::attachments::{self, BlobHash, Thumbnails};
use super::directory::{self, FacilityProfile};
use super::error::{DomainError, DomainResult};
use super::federation::{self, HubName};
use super::model::*;
use super::requests::{self, RequestKind};
use super::rooms::PatientDetails;
use super::view::HubView;
use super::{accounts, connections, disaster, posts, rooms, second_factor, sessions};

pub use super::events::Raised;
pub use super::kernel::{Ctx, Effects, MAX_POST_CHARS, Outcome, Outgoing, SESSION_ID_CHARS, Trail};

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
    /// Sets the hub's session policy (operators only). Replicated, not per-node configuration:
    /// apply checks sessions with it.
    SetSessionPolicy {
        idle_minutes: u32,
        absolute_hours: u32,
    },
    /// Invites `login` of hub `hub` (a federation peer) into a room of this hub, by the same
    /// rules as a local invitation; the room stays here, the other hub keeps a copy.
    InviteRemote {
        room: RoomId,
        hub: HubName,
        login: String,
        role: Role,
    },
    /// Pauses (`paused`) or resumes sending to federation peer `peer` (operators only).
    /// Replicated, so it holds across leader changes; the peer's messages keep queueing.
    SetFederationPeerPaused {
        peer: HubName,
        paused: bool,
    },
    /// Starts (`share`) or stops sharing this hub's resource map with the peer hub `peer`
    /// (operators only): its approved facilities' directory entries, never staff or patients.
    ShareDirectory {
        peer: HubName,
        share: bool,
    },
    /// Sets the caller's own password (the API node checked the current one and hashed the
    /// new one) and ends the caller's other sessions; the session `token_hash` stays.
    ChangePassword {
        password_hash: String,
        token_hash: String,
    },
    /// Sets the caller's own notification settings (e-mail address, on/off, quiet hours,
    /// digest).
    SetNotificationSettings {
        prefs: super::notify::NotificationPrefs,
    },
    /// Chunk `index` of the file `blob` of `size` bytes (the API node checked the whole
    /// file's hash, type and size before proposing any chunk). Chunks are proposed in order.
    StoreChunk {
        blob: BlobHash,
        size: u64,
        index: u32,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The complete file `blob` (and a photo's thumbnails) becomes an attachment of the caller.
    CreateAttachment {
        blob: BlobHash,
        thumbnails: Option<Thumbnails>,
        name: String,
        /// Detected from the bytes by the API node.
        content_type: String,
    },
    /// A post with files: `Post`, and the caller's attachments `files` (not posted yet) go
    /// into it. A post without files is a `Post`.
    PostWithFiles {
        room: RoomId,
        text: String,
        reply_to: Option<u64>,
        mentions: Vec<AccountId>,
        files: Vec<AttachmentId>,
    },
    /// Subscribes one of the caller's browsers to Web Push notices (`pushManager.subscribe`'s
    /// endpoint and keys); the same endpoint again renews its keys.
    AddPushSubscription {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// Removes the caller's browser subscribed at `endpoint`.
    RemovePushSubscription {
        endpoint: String,
    },
    /// The API node refused a sign-in of `login` from the address `source`
    /// ([`crate::login_guard`]). From apply version 3 on.
    LoginFailed {
        login: String,
        source: String,
    },
    /// Requires the second factor hub-wide (`facility` None: operators) or of one facility's
    /// staff (its admins, operators), due after `grace_days`; or no longer
    /// ([`crate::second_factor_policy`]). From apply version 3 on.
    SetSecondFactorPolicy {
        facility: Option<FacilityId>,
        required: bool,
        grace_days: u32,
    },
    /// An operator designates `account` for emergency access, or no longer
    /// ([`crate::emergency`]). From apply version 3 on.
    SetBreakGlass {
        account: AccountId,
        allowed: bool,
    },
    /// A designated account opens a patient's timeline for a while, stating why. From apply
    /// version 3 on.
    OpenEmergencyAccess {
        room: RoomId,
        reason: String,
    },
    /// Operators set the hub's rule for new passwords ([`crate::password_policy`]). From apply
    /// version 5 on.
    SetPasswordPolicy {
        min_chars: u32,
        min_kinds: u32,
    },
    /// An account's admin sets a password to hand over; the holder must change it before
    /// anything else ([`crate::password_policy::issue`]). From apply version 5 on.
    IssuePassword {
        account: AccountId,
        password_hash: String,
    },
    /// Declares a disaster for municipalities of the hub ([`crate::disaster::declare`]). From
    /// apply version 6 on.
    DeclareDisaster {
        name: String,
        municipalities: Vec<String>,
        /// When it began (None: now, the log's clock).
        started_at_ms: Option<u64>,
    },
    /// Ends a disaster. From apply version 6 on.
    EndDisaster {
        disaster: DisasterId,
    },
    /// Operators allow facility admins to declare disasters for their own municipality, or no
    /// longer. From apply version 6 on.
    SetDisasterPolicy {
        admins_may_declare: bool,
    },
    /// The patient's municipality and the devices their life depends on
    /// ([`crate::disaster::profile`]). From apply version 6 on.
    SetCareProfile {
        patient: PatientId,
        municipality: String,
        devices: Vec<crate::disaster::Device>,
    },
    /// An operator writes a diagnostic record ([`crate::records::write`]). From apply version 7
    /// on; before, `LogCommand::PutRecord`.
    PutRecord {
        key: String,
        value: String,
    },
}

impl Command {
    /// The apply version that brought this command: a hub below it refuses the command (an
    /// older build could not decode it), the same on every replica.
    pub fn since_apply_version(&self) -> u32 {
        match self {
            Command::LoginFailed { .. }
            | Command::SetSecondFactorPolicy { .. }
            | Command::SetBreakGlass { .. }
            | Command::OpenEmergencyAccess { .. } => crate::login_guard::SINCE_APPLY_VERSION,
            Command::SetPasswordPolicy { .. } | Command::IssuePassword { .. } => {
                crate::password_policy::SINCE_APPLY_VERSION
            }
            Command::DeclareDisaster { .. }
            | Command::EndDisaster { .. }
            | Command::SetDisasterPolicy { .. }
            | Command::SetCareProfile { .. } => crate::disaster::SINCE_APPLY_VERSION,
            Command::PutRecord { .. } => crate::records::SINCE_APPLY_VERSION,
            _ => crate::FIRST_APPLY_VERSION,
        }
    }
}

/// Applies `command` by `actor` (None: not signed in — only init, registration and login).
pub fn execute(view: &impl HubView, ctx: Ctx, actor: Option<AccountId>, command: Command) -> DomainResult<Effects> {
    if let Some(effects) = federation::copies::write_to_home(view, ctx, actor, &command)? {
        return Ok(effects);
    }
    let effects = decide(view, ctx, actor, command)?;
    // A facility approved or updated shows on the maps of the peers it is shared with.
    Ok(federation::map::publish(view, effects)?)
}

/// Hands `command` to the feature that decides it.
fn decide(view: &impl HubView, ctx: Ctx, actor: Option<AccountId>, command: Command) -> DomainResult<Effects> {
    let signed_in = || actor.ok_or(DomainError::Unauthenticated);
    use Command as C;
    match command {
        C::InitOperator { login, display_name, password_hash } => {
            accounts::init_operator(view, ctx, (login, display_name, password_hash))
        }
        C::RegisterFacility { name, kind, municipality } => {
            accounts::register_facility(view, ctx, signed_in()?, (name, kind, municipality))
        }
        C::ApproveFacility { facility } => accounts::approve_facility(view, signed_in()?, facility),
        C::IssueInvitation { facility, code_hash, expires_at_ms, as_admin } => {
            accounts::issue_invitation(view, ctx, signed_in()?, facility, (code_hash, expires_at_ms, as_admin))
        }
        C::Register { code_hash, login, display_name, profession, password_hash } => {
            accounts::register(view, ctx, &code_hash, profession, (login, display_name, password_hash))
        }
        C::ApproveAccount { account } => accounts::approve_account(view, signed_in()?, account),
        C::StopAccount { account } => accounts::stop_account(view, signed_in()?, account),
        C::CreateFamilyAccount { patient, login, display_name, password_hash } => {
            accounts::create_family_account(view, ctx, actor, patient, (login, display_name, password_hash))
        }
        C::LoginFailed { login, source } => crate::login_guard::failed(view, ctx, &login, &source),
        C::SetBreakGlass { account, allowed } => crate::emergency::designate(view, ctx, signed_in()?, account, allowed),
        C::OpenEmergencyAccess { room, reason } => crate::emergency::open(view, ctx, signed_in()?, room, &reason),
        C::SetSecondFactorPolicy { facility, required, grace_days } => {
            crate::second_factor_policy::set(view, ctx, signed_in()?, facility, (required, grace_days))
        }
        C::SetPasswordPolicy { min_chars, min_kinds } => crate::password_policy::set(
            view,
            signed_in()?,
            crate::password_policy::PasswordPolicy { min_chars, min_kinds },
        ),
        C::IssuePassword { account, password_hash } => {
            crate::password_policy::issue(view, signed_in()?, account, password_hash)
        }
        C::CreateSession { login, token_hash, device, totp_step } => {
            sessions::create(view, ctx, &login, (token_hash, device, totp_step))
        }
        C::BeginTotp { secret } => second_factor::begin(view, signed_in()?, secret),
        C::ConfirmTotp { step } => second_factor::confirm(view, signed_in()?, step),
        C::DisableTotp { account, step } => second_factor::disable(view, signed_in()?, account, step),
        C::TouchSession { token_hash } => sessions::touch(view, ctx, signed_in()?, &token_hash),
        C::RevokeSession { account, session } => sessions::revoke(view, signed_in()?, account, &session),
        C::Logout { token_hash } => sessions::logout(view, signed_in()?, &token_hash),
        C::CreatePatient { name, kana, birth_date, address, notes } => {
            let details = PatientDetails { birth_date, address, notes };
            rooms::create_patient(view, ctx, signed_in()?, (name, kana), details)
        }
        C::CreateSubRoom { timeline, name, members } => {
            rooms::create_sub_room(view, ctx, signed_in()?, (timeline, name), members)
        }
        C::CreateGroup { name } => rooms::create_group(view, ctx, signed_in()?, name),
        C::Invite { room, invitee, role } => rooms::invite(view, signed_in()?, room, invitee, role),
        C::Approve { room, account } => rooms::approve(view, signed_in()?, room, account),
        C::RequestJoin { room } => rooms::request_join(view, signed_in()?, room),
        C::Leave { room } => rooms::leave(view, signed_in()?, room),
        C::Remove { room, account } => rooms::remove(view, signed_in()?, room, account),
        C::RequestConnection { to } => connections::request(view, signed_in()?, to),
        C::AcceptConnection { from } => connections::accept(view, ctx, signed_in()?, from),
        C::DeclineConnection { from } => connections::decline(view, signed_in()?, from),
        C::BlockConnection { other } => connections::block(view, signed_in()?, other),
        C::Post { room, text, reply_to, mentions } => {
            posts::post(view, ctx, signed_in()?, (room, text), (reply_to, mentions), vec![])
        }
        C::PostWithFiles { room, text, reply_to, mentions, files } => {
            let actor = signed_in()?;
            let files = attachments::own_unposted(view, actor, &files)?;
            posts::post(view, ctx, actor, (room, text), (reply_to, mentions), files)
        }
        C::EditPost { room, seq, text } => posts::edit(view, ctx, signed_in()?, (room, seq), text),
        C::DeletePost { room, seq } => posts::delete(view, ctx, signed_in()?, room, seq),
        C::AckPost { room, seq } => posts::ack(view, signed_in()?, room, seq),
        C::MarkRead { room, up_to_seq } => posts::mark_read(view, signed_in()?, room, up_to_seq),
        C::SendRequest { kind, patient, title, details, facilities } => {
            requests::send(view, ctx, signed_in()?, (kind, patient, title, details), facilities)
        }
        C::AnswerRequest { request, accept, note } => requests::answer(view, ctx, signed_in()?, request, accept, note),
        C::CancelRequest { request } => requests::cancel(view, signed_in()?, request),
        C::UpdateFacilityProfile { facility, profile } => {
            directory::update_profile(view, signed_in()?, facility, profile)
        }
        C::SetSessionPolicy { idle_minutes, absolute_hours } => {
            sessions::set_policy(view, signed_in()?, idle_minutes, absolute_hours)
        }
        C::InviteRemote { room, hub, login, role } => {
            federation::home::invite_remote(view, ctx, signed_in()?, room, (hub, login), role)
        }
        C::SetFederationPeerPaused { peer, paused } => federation::peers::set_paused(view, signed_in()?, peer, paused),
        C::ShareDirectory { peer, share } => federation::map::share(view, signed_in()?, peer, share),
        C::ChangePassword { password_hash, token_hash } => {
            accounts::change_password(view, signed_in()?, password_hash, &token_hash)
        }
        C::SetNotificationSettings { prefs } => super::notify::set(view, signed_in()?, prefs),
        C::StoreChunk { blob, size, index, bytes } => {
            attachments::store_chunk(view, ctx, signed_in()?, (blob, size, index), bytes)
        }
        C::CreateAttachment { blob, thumbnails, name, content_type } => {
            attachments::create(view, ctx, signed_in()?, (blob, thumbnails), (name, content_type))
        }
        C::AddPushSubscription { endpoint, p256dh, auth } => {
            super::push::add(view, ctx, signed_in()?, (endpoint, p256dh, auth))
        }
        C::RemovePushSubscription { endpoint } => super::push::remove(view, signed_in()?, endpoint),
        C::DeclareDisaster { name, municipalities, started_at_ms } => {
            disaster::declare::declare(view, ctx, signed_in()?, (name, started_at_ms), municipalities)
        }
        C::EndDisaster { disaster } => disaster::declare::end(view, ctx, signed_in()?, disaster),
        C::SetDisasterPolicy { admins_may_declare } => {
            disaster::declare::set_policy(view, signed_in()?, disaster::DisasterPolicy { admins_may_declare })
        }
        C::SetCareProfile { patient, municipality, devices } => {
            disaster::profile::set(view, ctx, signed_in()?, patient, (municipality, devices))
        }
        C::PutRecord { key, value } => crate::records::write(view, ctx, signed_in()?, key, value),
    }
}

/// Re-exported for the API's read paths.
pub use super::authz::can_read;
