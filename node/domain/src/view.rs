//! How the domain sees the hub's state (`HubView`) and how it changes it (`Change`).
//!
//! Commands read through a view and return changes; the store persists changes into RocksDB
//! tables, tests into [`MemHub`]. The domain never does I/O itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::attachments::{Attachment, Blob, BlobHash, Fetch};
use super::federation::{HubName, Inbound, InboxMessage, Outbound, OutboxMessage, PendingWrite};
use super::model::*;
use super::notify::{Notice, NotificationSettings};
use super::push::PushSubscription;
use crate::disaster::{CareProfile, Disaster, DisasterPolicy, Fate, Observation, ObservationId, Subject};

/// A read of the hub's state that failed: the state could not be read, so nothing is decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("this node cannot read the hub's state: {0}")]
pub struct ViewError(pub String);

pub type ViewResult<T> = Result<T, ViewError>;

/// Reading the state can fail (a disk error, a value that does not decode): every read says
/// so, and a decision that met such an error is never taken. A view that failed once keeps
/// failing, so nothing decided after the fault slips through.
pub trait HubView {
    fn account(&self, id: AccountId) -> ViewResult<Option<Account>>;
    fn account_by_login(&self, login: &str) -> ViewResult<Option<AccountId>>;
    fn facility(&self, id: FacilityId) -> ViewResult<Option<Facility>>;
    /// Every facility (any status).
    fn facilities(&self) -> ViewResult<Vec<Facility>>;
    /// Every professional account of a facility (any status).
    fn staff_of(&self, facility: FacilityId) -> ViewResult<Vec<Account>>;
    fn invitation_by_code(&self, code_hash: &str) -> ViewResult<Option<Invitation>>;
    fn patient(&self, id: PatientId) -> ViewResult<Option<Patient>>;
    /// The patients `ids`, in their order (None: no such patient), read in one batch by a
    /// store (a patient list titles hundreds of rooms).
    fn patients(&self, ids: &[PatientId]) -> ViewResult<Vec<Option<Patient>>> {
        ids.iter().map(|id| self.patient(*id)).collect()
    }
    fn room(&self, id: RoomId) -> ViewResult<Option<Room>>;
    /// The rooms `ids`, in their order (None: no such room): a store reads them in one batch
    /// (a patient list reads hundreds).
    fn rooms(&self, ids: &[RoomId]) -> ViewResult<Vec<Option<Room>>> {
        ids.iter().map(|id| self.room(*id)).collect()
    }
    fn member(&self, room: RoomId, account: AccountId) -> ViewResult<Option<Member>>;
    fn members(&self, room: RoomId) -> ViewResult<Vec<Member>>;
    /// Every membership (any state) of an account.
    fn rooms_of(&self, account: AccountId) -> ViewResult<Vec<Member>>;
    fn post(&self, room: RoomId, seq: u64) -> ViewResult<Option<Post>>;
    /// The posts at `at` (room, seq), in their order: a store reads them in one batch (a page
    /// of a room list shows each room's newest).
    fn posts(&self, at: &[(RoomId, u64)]) -> ViewResult<Vec<Option<Post>>> {
        at.iter().map(|&(room, seq)| self.post(room, seq)).collect()
    }
    /// Sequences, in order, of the room's live posts whose normalised text may hold every one
    /// of `grams` (the search index; see `search.rs`): every post that holds them, and maybe a
    /// few that do not (a store's index filters its candidates; the caller reads the text).
    fn posts_with_bigrams(&self, room: RoomId, grams: &BTreeSet<String>) -> ViewResult<Vec<u64>>;
    fn connection(&self, pair: (AccountId, AccountId)) -> ViewResult<Option<Connection>>;
    /// Every connection (any state) the account is one side of.
    fn connections_of(&self, account: AccountId) -> ViewResult<Vec<Connection>>;
    fn session(&self, token_hash: &str) -> ViewResult<Option<Session>>;
    fn sessions_of(&self, account: AccountId) -> ViewResult<Vec<Session>>;
    fn has_operator(&self) -> ViewResult<bool>;
    fn care_request(&self, id: RequestId) -> ViewResult<Option<CareRequest>>;
    /// Every request an account sent.
    fn care_requests_from(&self, account: AccountId) -> ViewResult<Vec<CareRequest>>;
    /// Every request addressed to a facility.
    fn care_requests_to(&self, facility: FacilityId) -> ViewResult<Vec<CareRequest>>;
    /// The hub-wide settings ([`HubSettings::default`] if never set).
    fn settings(&self) -> ViewResult<HubSettings>;
    /// The stream from hub `origin` ([`Inbound::default`] before its first message).
    fn inbound(&self, origin: &HubName) -> ViewResult<Inbound>;
    /// The stream to hub `to` ([`Outbound::default`] before its first message).
    fn outbound(&self, to: &HubName) -> ViewResult<Outbound>;
    /// The local copy of room `home_room` of hub `home`, if this hub keeps one.
    fn mirror_of(&self, home: &HubName, home_room: RoomId) -> ViewResult<Option<RoomId>>;
    /// A write of a local member to a room of another hub, not yet answered by that hub.
    fn pending_write(&self, ticket: u64) -> ViewResult<Option<PendingWrite>>;
    /// Every unanswered or refused write into the local copy `room`, oldest first.
    fn pending_in(&self, room: RoomId) -> ViewResult<Vec<PendingWrite>>;
    /// When this hub last applied a batch from hub `origin` (None: never).
    fn heard_from(&self, origin: &HubName) -> ViewResult<Option<u64>>;
    /// Whether an operator paused sending to peer `peer` (false if never set).
    fn federation_paused(&self, peer: &HubName) -> ViewResult<bool>;
    /// The peer hubs this hub shares its resource map with.
    fn directory_shared_with(&self) -> ViewResult<Vec<HubName>>;
    /// A facility of another hub, by its local id.
    fn remote_facility(&self, id: FacilityId) -> ViewResult<Option<RemoteFacility>>;
    /// Every facility of another hub this hub knows (shared or withdrawn).
    fn remote_facilities(&self) -> ViewResult<Vec<RemoteFacility>>;
    /// Which request of which hub the local request `id` is, if another hub sent it.
    fn request_link(&self, id: RequestId) -> ViewResult<Option<RequestLink>>;
    /// An account's notification settings (None: never set).
    fn notification_settings(&self, account: AccountId) -> ViewResult<Option<NotificationSettings>>;
    /// The pending notice of `account` for `room`, if any.
    fn notice(&self, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>>;
    /// Every pending notice (the notifier's queue), by account then room.
    fn notices(&self) -> ViewResult<Vec<Notice>>;
    /// The blob (a stored file's bytes) named by `hash`, if any of it is stored.
    fn blob(&self, hash: BlobHash) -> ViewResult<Option<Blob>>;
    fn attachment(&self, id: AttachmentId) -> ViewResult<Option<Attachment>>;
    /// The attachments of post `seq` of `room`, in the order they were attached.
    fn post_files(&self, room: RoomId, seq: u64) -> ViewResult<Vec<AttachmentId>>;
    /// At most `limit` attachments no post shows since before `before_ms`, oldest first.
    fn unused_attachments(&self, before_ms: u64, limit: usize) -> ViewResult<Vec<AttachmentId>>;
    /// At most `limit` blobs no attachment holds, begun before `before_ms`, oldest first.
    fn unclaimed_blobs(&self, before_ms: u64, limit: usize) -> ViewResult<Vec<BlobHash>>;
    /// The bytes of every stored chunk (for the hub's quota).
    fn stored_bytes(&self) -> ViewResult<u64>;
    /// The fetch of blob `hash` from hub `from` (being fetched, or failed).
    fn fetch(&self, hash: BlobHash, from: &HubName) -> ViewResult<Option<Fetch>>;
    /// At most `limit` fetches still due (not failed), by hash.
    fn fetches(&self, limit: usize) -> ViewResult<Vec<Fetch>>;
    /// Whether hub `from` sent the whole blob `hash` and it was checked.
    fn proven(&self, from: &HubName, hash: BlobHash) -> ViewResult<bool>;
    /// An account's subscribed browsers (Web Push), by endpoint.
    fn push_subscriptions(&self, account: AccountId) -> ViewResult<Vec<PushSubscription>>;
    /// The pending push notice of `account` for `room`, if any.
    fn push_notice(&self, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>>;
    /// Every pending push notice (the notifier's push queue), by account then room.
    fn push_notices(&self) -> ViewResult<Vec<Notice>>;
    /// The failed sign-ins of a login or an address ([`crate::login_guard`]).
    fn login_guard(&self, guarded: &crate::login_guard::Guarded) -> ViewResult<Option<crate::login_guard::LoginGuard>>;
    /// Who must have a second factor (empty if never set).
    fn second_factor_policy(&self) -> ViewResult<crate::second_factor_policy::SecondFactorPolicy>;
    /// The hub's rule for new passwords (the default if never set).
    fn password_policy(&self) -> ViewResult<crate::password_policy::PasswordPolicy>;
    /// Whether `account`'s password is an issued one its holder has not changed yet.
    fn password_issued(&self, account: AccountId) -> ViewResult<bool>;
    /// The apply version the hub is at ([`crate::APPLY_VERSION`]): what a command does may
    /// depend on it, the same on every replica.
    fn apply_version(&self) -> ViewResult<u32>;
    /// Whether an operator designated `account` for emergency access ([`crate::emergency`]).
    fn break_glass(&self, account: AccountId) -> ViewResult<Option<crate::emergency::Designation>>;
    /// The newest emergency access of `account` to `room`, expired or not.
    fn emergency_access(
        &self,
        room: RoomId,
        account: AccountId,
    ) -> ViewResult<Option<crate::emergency::EmergencyAccess>>;
    /// Every emergency access ever opened (the newest per account and room).
    fn emergency_accesses(&self) -> ViewResult<Vec<crate::emergency::EmergencyAccess>>;
    /// Every disaster ever declared, by id ([`crate::disaster`]).
    fn disasters(&self) -> ViewResult<Vec<Disaster>>;
    /// Who may declare a disaster (the default if never set).
    fn disaster_policy(&self) -> ViewResult<DisasterPolicy>;
    /// A patient's municipality and life-support devices (None: never set).
    fn care_profile(&self, patient: PatientId) -> ViewResult<Option<CareProfile>>;
    /// The patients whose care profile names `municipality`.
    fn patients_in(&self, municipality: &str) -> ViewResult<Vec<PatientId>>;
    /// What became of the observation `id`, if it reached the log before.
    fn observation_fate(&self, id: ObservationId) -> ViewResult<Option<Fate>>;
    /// The current state of `subject` in `disaster`: its newest observation by the merge rule.
    fn current_observation(&self, disaster: DisasterId, subject: Subject) -> ViewResult<Option<Observation>>;
    /// The current state of every subject of `disaster`, by subject.
    fn current_observations(&self, disaster: DisasterId) -> ViewResult<Vec<Observation>>;
    /// Every observation of `subject` in `disaster`, oldest first by the merge rule.
    fn observations_of(&self, disaster: DisasterId, subject: Subject) -> ViewResult<Vec<Observation>>;
    /// The diagnostic record at `key` ([`crate::records`]).
    fn record(&self, key: &str) -> ViewResult<Option<crate::records::Record>>;
}

/// A view that also takes changes (the store's apply view, [`MemHub`]): reads after
/// [`HubState::apply`] see them.
pub trait HubState: HubView {
    fn apply(&mut self, changes: Vec<Change>);
}

impl HubState for MemHub {
    fn apply(&mut self, changes: Vec<Change>) {
        MemHub::apply(self, changes)
    }
}

/// One state change. Applying the changes of a command, in order, is the command's effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Account(Account),
    Facility(Facility),
    Invitation(Invitation),
    Patient(Patient),
    Room(Room),
    Member(Member),
    RemoveMember {
        room: RoomId,
        account: AccountId,
    },
    Post(Post),
    Connection(Connection),
    Session(Session),
    Request(CareRequest),
    Settings(HubSettings),
    /// The stream from `origin` after a batch was applied.
    InboundStream {
        origin: HubName,
        stream: Inbound,
    },
    /// One message of an origin's stream, recorded in the inbox.
    InboxMessage(InboxMessage),
    /// The stream to `to` after messages were queued or acknowledged.
    OutboundStream {
        to: HubName,
        stream: Outbound,
    },
    /// One message queued in the outbox, at its sequence of the stream to its destination.
    Outboxed(OutboxMessage),
    /// The destination applied everything up to `up_to`: those messages leave the outbox.
    OutboxAcked {
        to: HubName,
        up_to: u64,
    },
    /// `local` is this hub's copy of room `home_room` of hub `home`.
    Mirror {
        home: HubName,
        home_room: RoomId,
        local: RoomId,
    },
    /// A write into a copy, sent to the room's home hub (new, or refused there).
    Pending(PendingWrite),
    /// The home hub applied the write `ticket`.
    PendingDone {
        ticket: u64,
    },
    /// A batch from `origin` was applied at `at_ms`.
    HeardFrom {
        origin: HubName,
        at_ms: u64,
    },
    /// An operator paused or resumed sending to federation peer `peer`.
    FederationPaused {
        peer: HubName,
        paused: bool,
    },
    /// This hub shares (or stops sharing) its resource map with `peer`.
    DirectoryShare {
        peer: HubName,
        share: bool,
    },
    /// A facility of another hub, new or as it is now.
    RemoteFacility(RemoteFacility),
    /// A request received from another hub, and which of its requests it is.
    RequestLink(RequestLink),
    /// An account's notification settings, as they are now.
    NotificationSettings(NotificationSettings),
    /// A pending notice, new or as it is now (after a failed send).
    Notice(Notice),
    /// The notice of `account` for `room` is done (sent, read, or no longer wanted).
    NoticeGone {
        account: AccountId,
        room: RoomId,
    },
    /// A blob as it is now (more chunks stored, or held by more or fewer attachments).
    Blob(Blob),
    /// Chunk `index` of blob `hash`: its bytes.
    BlobChunk {
        hash: BlobHash,
        index: u32,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The blob and every chunk of it are removed.
    BlobGone(Blob),
    Attachment(Attachment),
    /// The attachment is removed (its blobs' references were updated by `Blob` changes).
    AttachmentGone(Attachment),
    /// The attachments of post `seq` of `room` (none: the post lists none any more).
    PostFiles {
        room: RoomId,
        seq: u64,
        files: Vec<AttachmentId>,
    },
    /// The bytes of every stored chunk, after this command.
    StoredBytes(u64),
    /// A browser's push subscription, new or with new keys.
    PushSubscription(PushSubscription),
    /// The subscription of `account` at `endpoint` is removed.
    PushSubscriptionGone {
        account: AccountId,
        endpoint: String,
    },
    /// A pending push notice, new or as it is now (after a failed send).
    PushNotice(Notice),
    /// The push notice of `account` for `room` is done.
    PushNoticeGone {
        account: AccountId,
        room: RoomId,
    },
    /// A blob being fetched from another hub, new or as it is now (failed).
    Fetch(Fetch),
    /// The fetch of blob `hash` from `from` ended (proven).
    FetchDone {
        hash: BlobHash,
        from: HubName,
    },
    /// Hub `from` sent the whole blob `hash` and it was checked. Its fetches and proofs go
    /// with the blob (`BlobGone`).
    Proven {
        from: HubName,
        hash: BlobHash,
    },
    /// The failed sign-ins of a login or an address (None: cleared).
    LoginGuard {
        guarded: crate::login_guard::Guarded,
        guard: Option<crate::login_guard::LoginGuard>,
    },
    SecondFactorPolicy(crate::second_factor_policy::SecondFactorPolicy),
    PasswordPolicy(crate::password_policy::PasswordPolicy),
    PasswordIssued {
        account: AccountId,
        issued: bool,
    },
    BreakGlass {
        account: AccountId,
        designation: Option<crate::emergency::Designation>,
    },
    EmergencyAccess(crate::emergency::EmergencyAccess),
    /// A disaster, declared or ended.
    Disaster(Disaster),
    DisasterPolicy(DisasterPolicy),
    CareProfile {
        patient: PatientId,
        profile: CareProfile,
    },
    /// An observation reached the log but was refused: it is never applied, even if shipped again.
    ObservationRefused {
        id: ObservationId,
        refusal: crate::DomainError,
    },
    /// An observation joins its subject's history (and is remembered as seen); `current`: it
    /// is now the subject's current state.
    Observation {
        observation: Observation,
        current: bool,
    },
    /// The diagnostic record at `key`, as it is now.
    Record {
        key: String,
        record: crate::records::Record,
    },
}

/// The whole hub in memory: the reference implementation of [`HubView`], used by tests.
#[derive(Debug, Default, Clone)]
pub struct MemHub {
    pub accounts: BTreeMap<AccountId, Account>,
    pub facilities: BTreeMap<FacilityId, Facility>,
    pub invitations: BTreeMap<InvitationId, Invitation>,
    pub patients: BTreeMap<PatientId, Patient>,
    pub rooms: BTreeMap<RoomId, Room>,
    pub members: BTreeMap<(RoomId, AccountId), Member>,
    pub posts: BTreeMap<(RoomId, u64), Post>,
    pub connections: BTreeMap<(AccountId, AccountId), Connection>,
    pub sessions: BTreeMap<String, Session>,
    pub requests: BTreeMap<RequestId, CareRequest>,
    pub settings: HubSettings,
    pub inbound: BTreeMap<HubName, Inbound>,
    pub inbox: BTreeMap<(HubName, u64), InboxMessage>,
    pub outbound: BTreeMap<HubName, Outbound>,
    pub outbox: BTreeMap<(HubName, u64), OutboxMessage>,
    pub mirrors: BTreeMap<(HubName, RoomId), RoomId>,
    pub pending: BTreeMap<u64, PendingWrite>,
    pub heard: BTreeMap<HubName, u64>,
    pub federation_paused: BTreeMap<HubName, bool>,
    pub directory_shares: std::collections::BTreeSet<HubName>,
    pub remote_facilities: BTreeMap<FacilityId, RemoteFacility>,
    pub request_links: BTreeMap<RequestId, RequestLink>,
    pub notification_settings: BTreeMap<AccountId, NotificationSettings>,
    pub notices: BTreeMap<(AccountId, RoomId), Notice>,
    pub blobs: BTreeMap<BlobHash, Blob>,
    pub chunks: BTreeMap<(BlobHash, u32), Vec<u8>>,
    pub attachments: BTreeMap<AttachmentId, Attachment>,
    pub post_files: BTreeMap<(RoomId, u64), Vec<AttachmentId>>,
    pub stored_bytes: u64,
    pub fetches: BTreeMap<(BlobHash, HubName), Fetch>,
    pub proofs: std::collections::BTreeSet<(BlobHash, HubName)>,
    pub push_subscriptions: BTreeMap<(AccountId, String), PushSubscription>,
    pub push_notices: BTreeMap<(AccountId, RoomId), Notice>,
    pub login_guards: BTreeMap<crate::login_guard::Guarded, crate::login_guard::LoginGuard>,
    pub second_factor_policy: crate::second_factor_policy::SecondFactorPolicy,
    pub password_policy: crate::password_policy::PasswordPolicy,
    pub passwords_issued: std::collections::BTreeSet<AccountId>,
    /// The apply version commands see (0 reads as [`crate::APPLY_VERSION`]: a test hub runs
    /// the newest rules unless it says otherwise).
    pub apply_version: u32,
    pub break_glass: BTreeMap<AccountId, crate::emergency::Designation>,
    pub emergency_accesses: BTreeMap<(RoomId, AccountId), crate::emergency::EmergencyAccess>,
    pub disasters: BTreeMap<DisasterId, Disaster>,
    pub disaster_policy: DisasterPolicy,
    pub care_profiles: BTreeMap<PatientId, CareProfile>,
    pub observation_fates: BTreeMap<ObservationId, Fate>,
    /// Each subject's history, keyed as the store orders it: (disaster, subject, time, id).
    pub observations: BTreeMap<(DisasterId, Subject, u64, ObservationId), Observation>,
    pub current_observations: BTreeMap<(DisasterId, Subject), Observation>,
    pub records: BTreeMap<String, crate::records::Record>,
}

impl MemHub {
    pub fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Account(a) => {
                    self.accounts.insert(a.id, a);
                }
                Change::Facility(f) => {
                    self.facilities.insert(f.id, f);
                }
                Change::Invitation(i) => {
                    self.invitations.insert(i.id, i);
                }
                Change::Patient(p) => {
                    self.patients.insert(p.id, p);
                }
                Change::Room(r) => {
                    self.rooms.insert(r.id, r);
                }
                Change::Member(m) => {
                    self.members.insert((m.room, m.account), m);
                }
                Change::RemoveMember { room, account } => {
                    self.members.remove(&(room, account));
                }
                Change::Post(p) => {
                    self.posts.insert((p.room, p.seq), p);
                }
                Change::Connection(c) => {
                    self.connections.insert(c.pair, c);
                }
                Change::Session(s) => {
                    self.sessions.insert(s.token_hash.clone(), s);
                }
                Change::Request(r) => {
                    self.requests.insert(r.id, r);
                }
                Change::Settings(s) => self.settings = s,
                Change::InboundStream { origin, stream } => {
                    self.inbound.insert(origin, stream);
                }
                Change::InboxMessage(m) => {
                    self.inbox.insert((m.origin.clone(), m.seq), m);
                }
                Change::OutboundStream { to, stream } => {
                    self.outbound.insert(to, stream);
                }
                Change::Outboxed(m) => {
                    self.outbox.insert((m.to.clone(), m.seq), m);
                }
                Change::OutboxAcked { to, up_to } => self.outbox.retain(|(hub, seq), _| *hub != to || *seq > up_to),
                Change::Mirror { home, home_room, local } => {
                    self.mirrors.insert((home, home_room), local);
                }
                Change::Pending(p) => {
                    self.pending.insert(p.ticket, p);
                }
                Change::PendingDone { ticket } => {
                    self.pending.remove(&ticket);
                }
                Change::HeardFrom { origin, at_ms } => {
                    self.heard.insert(origin, at_ms);
                }
                Change::FederationPaused { peer, paused } => {
                    self.federation_paused.insert(peer, paused);
                }
                Change::DirectoryShare { peer, share: true } => {
                    self.directory_shares.insert(peer);
                }
                Change::DirectoryShare { peer, share: false } => {
                    self.directory_shares.remove(&peer);
                }
                Change::RemoteFacility(f) => {
                    self.remote_facilities.insert(f.facility.id, f);
                }
                Change::RequestLink(l) => {
                    self.request_links.insert(l.local, l);
                }
                Change::NotificationSettings(s) => {
                    self.notification_settings.insert(s.account, s);
                }
                Change::Notice(n) => {
                    self.notices.insert((n.account, n.room), n);
                }
                Change::NoticeGone { account, room } => {
                    self.notices.remove(&(account, room));
                }
                Change::Blob(b) => {
                    self.blobs.insert(b.hash, b);
                }
                Change::BlobChunk { hash, index, bytes } => {
                    self.chunks.insert((hash, index), bytes);
                }
                Change::BlobGone(b) => {
                    self.blobs.remove(&b.hash);
                    self.chunks.retain(|(hash, _), _| *hash != b.hash);
                    self.fetches.retain(|(hash, _), _| *hash != b.hash);
                    self.proofs.retain(|(hash, _)| *hash != b.hash);
                }
                Change::Attachment(a) => {
                    self.attachments.insert(a.id, a);
                }
                Change::AttachmentGone(a) => {
                    self.attachments.remove(&a.id);
                }
                Change::PostFiles { room, seq, files } if files.is_empty() => {
                    self.post_files.remove(&(room, seq));
                }
                Change::PostFiles { room, seq, files } => {
                    self.post_files.insert((room, seq), files);
                }
                Change::StoredBytes(n) => self.stored_bytes = n,
                Change::Fetch(f) => {
                    self.fetches.insert((f.hash, f.from.clone()), f);
                }
                Change::FetchDone { hash, from } => {
                    self.fetches.remove(&(hash, from));
                }
                Change::Proven { from, hash } => {
                    self.proofs.insert((hash, from));
                }
                Change::LoginGuard { guarded, guard: Some(guard) } => {
                    self.login_guards.insert(guarded, guard);
                }
                Change::LoginGuard { guarded, guard: None } => {
                    self.login_guards.remove(&guarded);
                }
                Change::SecondFactorPolicy(policy) => self.second_factor_policy = policy,
                Change::PasswordPolicy(policy) => self.password_policy = policy,
                Change::PasswordIssued { account, issued: true } => {
                    self.passwords_issued.insert(account);
                }
                Change::PasswordIssued { account, issued: false } => {
                    self.passwords_issued.remove(&account);
                }
                Change::BreakGlass { account, designation: Some(d) } => {
                    self.break_glass.insert(account, d);
                }
                Change::BreakGlass { account, designation: None } => {
                    self.break_glass.remove(&account);
                }
                Change::EmergencyAccess(a) => {
                    self.emergency_accesses.insert((a.room, a.account), a);
                }
                Change::Disaster(d) => {
                    self.disasters.insert(d.id, d);
                }
                Change::DisasterPolicy(p) => self.disaster_policy = p,
                Change::CareProfile { patient, profile } => {
                    self.care_profiles.insert(patient, profile);
                }
                Change::ObservationRefused { id, refusal } => {
                    self.observation_fates.insert(id, Fate::Refused(refusal));
                }
                Change::Observation { observation: o, current } => {
                    self.observation_fates.insert(o.id, Fate::Applied { disaster: o.disaster, subject: o.subject });
                    if current {
                        self.current_observations.insert((o.disaster, o.subject), o.clone());
                    }
                    self.observations.insert((o.disaster, o.subject, o.observed_at_ms, o.id), o);
                }
                Change::Record { key, record } => {
                    self.records.insert(key, record);
                }
                Change::PushSubscription(sub) => {
                    self.push_subscriptions.insert((sub.account, sub.endpoint.clone()), sub);
                }
                Change::PushSubscriptionGone { account, endpoint } => {
                    self.push_subscriptions.remove(&(account, endpoint));
                }
                Change::PushNotice(n) => {
                    self.push_notices.insert((n.account, n.room), n);
                }
                Change::PushNoticeGone { account, room } => {
                    self.push_notices.remove(&(account, room));
                }
            }
        }
    }
}

impl HubView for MemHub {
    fn account(&self, id: AccountId) -> ViewResult<Option<Account>> {
        Ok(self.accounts.get(&id).cloned())
    }
    fn account_by_login(&self, login: &str) -> ViewResult<Option<AccountId>> {
        Ok(self.accounts.values().find(|a| a.login == login).map(|a| a.id))
    }
    fn facility(&self, id: FacilityId) -> ViewResult<Option<Facility>> {
        Ok(self.facilities.get(&id).cloned())
    }
    fn facilities(&self) -> ViewResult<Vec<Facility>> {
        Ok(self.facilities.values().cloned().collect())
    }
    fn staff_of(&self, facility: FacilityId) -> ViewResult<Vec<Account>> {
        Ok(self.accounts.values().filter(|a| a.facility() == Some(facility)).cloned().collect())
    }
    fn invitation_by_code(&self, code_hash: &str) -> ViewResult<Option<Invitation>> {
        Ok(self.invitations.values().find(|i| i.code_hash == code_hash).cloned())
    }
    fn patient(&self, id: PatientId) -> ViewResult<Option<Patient>> {
        Ok(self.patients.get(&id).cloned())
    }
    fn room(&self, id: RoomId) -> ViewResult<Option<Room>> {
        Ok(self.rooms.get(&id).cloned())
    }
    fn member(&self, room: RoomId, account: AccountId) -> ViewResult<Option<Member>> {
        Ok(self.members.get(&(room, account)).cloned())
    }
    fn members(&self, room: RoomId) -> ViewResult<Vec<Member>> {
        Ok(self.members.range((room, AccountId(0))..=(room, AccountId(u64::MAX))).map(|(_, m)| m.clone()).collect())
    }
    fn rooms_of(&self, account: AccountId) -> ViewResult<Vec<Member>> {
        Ok(self.members.values().filter(|m| m.account == account).cloned().collect())
    }
    fn post(&self, room: RoomId, seq: u64) -> ViewResult<Option<Post>> {
        Ok(self.posts.get(&(room, seq)).cloned())
    }
    fn posts_with_bigrams(&self, room: RoomId, grams: &BTreeSet<String>) -> ViewResult<Vec<u64>> {
        Ok(self
            .posts
            .range((room, 0)..=(room, u64::MAX))
            .filter(|(_, p)| {
                !p.deleted && super::bigram::bigrams(&super::bigram::normalize(&p.text)).is_superset(grams)
            })
            .map(|((_, seq), _)| *seq)
            .collect())
    }
    fn connection(&self, pair: (AccountId, AccountId)) -> ViewResult<Option<Connection>> {
        Ok(self.connections.get(&pair).cloned())
    }
    fn connections_of(&self, account: AccountId) -> ViewResult<Vec<Connection>> {
        Ok(self.connections.values().filter(|c| c.pair.0 == account || c.pair.1 == account).cloned().collect())
    }
    fn session(&self, token_hash: &str) -> ViewResult<Option<Session>> {
        Ok(self.sessions.get(token_hash).cloned())
    }
    fn sessions_of(&self, account: AccountId) -> ViewResult<Vec<Session>> {
        Ok(self.sessions.values().filter(|s| s.account == account).cloned().collect())
    }
    fn has_operator(&self) -> ViewResult<bool> {
        Ok(self.accounts.values().any(Account::is_operator))
    }
    fn care_request(&self, id: RequestId) -> ViewResult<Option<CareRequest>> {
        Ok(self.requests.get(&id).cloned())
    }
    fn care_requests_from(&self, account: AccountId) -> ViewResult<Vec<CareRequest>> {
        Ok(self.requests.values().filter(|r| r.from == account).cloned().collect())
    }
    fn care_requests_to(&self, facility: FacilityId) -> ViewResult<Vec<CareRequest>> {
        Ok(self.requests.values().filter(|r| r.recipients.iter().any(|x| x.facility == facility)).cloned().collect())
    }
    fn settings(&self) -> ViewResult<HubSettings> {
        Ok(self.settings)
    }
    fn inbound(&self, origin: &HubName) -> ViewResult<Inbound> {
        Ok(self.inbound.get(origin).copied().unwrap_or_default())
    }
    fn outbound(&self, to: &HubName) -> ViewResult<Outbound> {
        Ok(self.outbound.get(to).copied().unwrap_or_default())
    }
    fn mirror_of(&self, home: &HubName, home_room: RoomId) -> ViewResult<Option<RoomId>> {
        Ok(self.mirrors.get(&(home.clone(), home_room)).copied())
    }
    fn pending_write(&self, ticket: u64) -> ViewResult<Option<PendingWrite>> {
        Ok(self.pending.get(&ticket).cloned())
    }
    fn pending_in(&self, room: RoomId) -> ViewResult<Vec<PendingWrite>> {
        Ok(self.pending.values().filter(|p| p.room == room).cloned().collect())
    }
    fn heard_from(&self, origin: &HubName) -> ViewResult<Option<u64>> {
        Ok(self.heard.get(origin).copied())
    }
    fn federation_paused(&self, peer: &HubName) -> ViewResult<bool> {
        Ok(self.federation_paused.get(peer).copied().unwrap_or(false))
    }
    fn directory_shared_with(&self) -> ViewResult<Vec<HubName>> {
        Ok(self.directory_shares.iter().cloned().collect())
    }
    fn remote_facility(&self, id: FacilityId) -> ViewResult<Option<RemoteFacility>> {
        Ok(self.remote_facilities.get(&id).cloned())
    }
    fn remote_facilities(&self) -> ViewResult<Vec<RemoteFacility>> {
        Ok(self.remote_facilities.values().cloned().collect())
    }
    fn request_link(&self, id: RequestId) -> ViewResult<Option<RequestLink>> {
        Ok(self.request_links.get(&id).cloned())
    }
    fn notification_settings(&self, account: AccountId) -> ViewResult<Option<NotificationSettings>> {
        Ok(self.notification_settings.get(&account).cloned())
    }
    fn notice(&self, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>> {
        Ok(self.notices.get(&(account, room)).copied())
    }
    fn notices(&self) -> ViewResult<Vec<Notice>> {
        Ok(self.notices.values().copied().collect())
    }
    fn blob(&self, hash: BlobHash) -> ViewResult<Option<Blob>> {
        Ok(self.blobs.get(&hash).copied())
    }
    fn attachment(&self, id: AttachmentId) -> ViewResult<Option<Attachment>> {
        Ok(self.attachments.get(&id).cloned())
    }
    fn post_files(&self, room: RoomId, seq: u64) -> ViewResult<Vec<AttachmentId>> {
        Ok(self.post_files.get(&(room, seq)).cloned().unwrap_or_default())
    }
    fn unused_attachments(&self, before_ms: u64, limit: usize) -> ViewResult<Vec<AttachmentId>> {
        let mut due: Vec<(u64, AttachmentId)> = self
            .attachments
            .values()
            .filter_map(|a| a.unused_since().filter(|t| *t < before_ms).map(|t| (t, a.id)))
            .collect();
        due.sort();
        Ok(due.into_iter().take(limit).map(|(_, id)| id).collect())
    }
    fn unclaimed_blobs(&self, before_ms: u64, limit: usize) -> ViewResult<Vec<BlobHash>> {
        let mut due: Vec<(u64, BlobHash)> = self
            .blobs
            .values()
            .filter(|b| b.refs == 0 && b.since_ms < before_ms)
            .map(|b| (b.since_ms, b.hash))
            .collect();
        due.sort();
        Ok(due.into_iter().take(limit).map(|(_, h)| h).collect())
    }
    fn stored_bytes(&self) -> ViewResult<u64> {
        Ok(self.stored_bytes)
    }
    fn fetch(&self, hash: BlobHash, from: &HubName) -> ViewResult<Option<Fetch>> {
        Ok(self.fetches.get(&(hash, from.clone())).cloned())
    }
    fn fetches(&self, limit: usize) -> ViewResult<Vec<Fetch>> {
        Ok(self.fetches.values().filter(|f| f.failed.is_none()).take(limit).cloned().collect())
    }
    fn proven(&self, from: &HubName, hash: BlobHash) -> ViewResult<bool> {
        Ok(self.proofs.contains(&(hash, from.clone())))
    }
    fn push_subscriptions(&self, account: AccountId) -> ViewResult<Vec<PushSubscription>> {
        Ok(self.push_subscriptions.values().filter(|s| s.account == account).cloned().collect())
    }
    fn push_notice(&self, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>> {
        Ok(self.push_notices.get(&(account, room)).copied())
    }
    fn push_notices(&self) -> ViewResult<Vec<Notice>> {
        Ok(self.push_notices.values().copied().collect())
    }
    fn login_guard(&self, guarded: &crate::login_guard::Guarded) -> ViewResult<Option<crate::login_guard::LoginGuard>> {
        Ok(self.login_guards.get(guarded).copied())
    }
    fn second_factor_policy(&self) -> ViewResult<crate::second_factor_policy::SecondFactorPolicy> {
        Ok(self.second_factor_policy.clone())
    }
    fn password_policy(&self) -> ViewResult<crate::password_policy::PasswordPolicy> {
        Ok(self.password_policy)
    }
    fn password_issued(&self, account: AccountId) -> ViewResult<bool> {
        Ok(self.passwords_issued.contains(&account))
    }
    fn apply_version(&self) -> ViewResult<u32> {
        Ok(if self.apply_version == 0 { crate::APPLY_VERSION } else { self.apply_version })
    }
    fn break_glass(&self, account: AccountId) -> ViewResult<Option<crate::emergency::Designation>> {
        Ok(self.break_glass.get(&account).copied())
    }
    fn emergency_access(
        &self,
        room: RoomId,
        account: AccountId,
    ) -> ViewResult<Option<crate::emergency::EmergencyAccess>> {
        Ok(self.emergency_accesses.get(&(room, account)).cloned())
    }
    fn emergency_accesses(&self) -> ViewResult<Vec<crate::emergency::EmergencyAccess>> {
        Ok(self.emergency_accesses.values().cloned().collect())
    }
    fn disasters(&self) -> ViewResult<Vec<Disaster>> {
        Ok(self.disasters.values().cloned().collect())
    }
    fn disaster_policy(&self) -> ViewResult<DisasterPolicy> {
        Ok(self.disaster_policy)
    }
    fn care_profile(&self, patient: PatientId) -> ViewResult<Option<CareProfile>> {
        Ok(self.care_profiles.get(&patient).cloned())
    }
    fn patients_in(&self, municipality: &str) -> ViewResult<Vec<PatientId>> {
        Ok(self.care_profiles.iter().filter(|(_, p)| p.municipality == municipality).map(|(id, _)| *id).collect())
    }
    fn observation_fate(&self, id: ObservationId) -> ViewResult<Option<Fate>> {
        Ok(self.observation_fates.get(&id).cloned())
    }
    fn current_observation(&self, disaster: DisasterId, subject: Subject) -> ViewResult<Option<Observation>> {
        Ok(self.current_observations.get(&(disaster, subject)).cloned())
    }
    fn current_observations(&self, disaster: DisasterId) -> ViewResult<Vec<Observation>> {
        Ok(self
            .current_observations
            .range((disaster, Subject::Patient(PatientId(0)))..)
            .take_while(|((d, _), _)| *d == disaster)
            .map(|(_, o)| o.clone())
            .collect())
    }
    fn observations_of(&self, disaster: DisasterId, subject: Subject) -> ViewResult<Vec<Observation>> {
        Ok(self.observations.values().filter(|o| o.disaster == disaster && o.subject == subject).cloned().collect())
    }
    fn record(&self, key: &str) -> ViewResult<Option<crate::records::Record>> {
        Ok(self.records.get(key).cloned())
    }
}
