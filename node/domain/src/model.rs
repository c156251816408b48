//! The collaboration network's entities. Ids are the Raft log index of the command that created
//! the entity, so every node derives the same ids without coordination.

use serde::{Deserialize, Serialize};

use crate::federation::HubName;
use crate::federation::wire::CopyKind;

macro_rules! id_type {
    ($($name:ident),*) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}", self.0) }
        }
    )*};
}
id_type!(AccountId, FacilityId, RoomId, PatientId, InvitationId, RequestId, AttachmentId, DisasterId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FacilityKind {
    Clinic,
    Hospital,
    Pharmacy,
    DentalClinic,
    VisitingNursingStation,
    CareOffice,
    Rehabilitation,
    Municipality,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profession {
    Doctor,
    Nurse,
    VisitingNurse,
    Pharmacist,
    Dentist,
    DentalHygienist,
    Therapist,
    CareManager,
    CareWorker,
    MedicalSocialWorker,
    Clerk,
    MunicipalStaff,
    Other,
}

impl Profession {
    /// The label users see (Japanese: the users are).
    pub fn label(self) -> &'static str {
        match self {
            Profession::Doctor => "医師",
            Profession::Nurse => "看護師",
            Profession::VisitingNurse => "訪問看護師",
            Profession::Pharmacist => "薬剤師",
            Profession::Dentist => "歯科医師",
            Profession::DentalHygienist => "歯科衛生士",
            Profession::Therapist => "PT/OT/ST",
            Profession::CareManager => "ケアマネジャー",
            Profession::CareWorker => "介護職",
            Profession::MedicalSocialWorker => "MSW",
            Profession::Clerk => "事務",
            Profession::MunicipalStaff => "行政職員",
            Profession::Other => "その他",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountKind {
    /// Runs the hub (事務局): approves facilities, stops accounts, reads the audit log.
    Operator,
    Professional {
        facility: FacilityId,
        profession: Profession,
    },
    /// A patient or a family member, invited into one patient's timeline only.
    Family {
        patient: PatientId,
    },
    /// A professional of another hub, known here because a room of this hub (or a copy of
    /// another hub's room) has them as a member. Its login is `login@hub`; it never signs in
    /// here, and only its minimal profile crosses.
    Remote {
        hub: HubName,
        facility_name: String,
        profession: Profession,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountStatus {
    /// Registered with an invitation, waiting for the facility admin's approval.
    Pending,
    Active,
    /// Stopped by an operator or facility admin: every session is refused at once.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub login: String,
    pub display_name: String,
    pub kind: AccountKind,
    pub status: AccountStatus,
    /// argon2id PHC string, computed by the API node before proposing (never in apply).
    pub password_hash: String,
    /// Facility admins approve and stop their facility's accounts and issue invitations.
    pub facility_admin: bool,
    /// The second factor, once the user sets one up.
    #[serde(default)]
    pub totp: Option<Totp>,
}

impl Account {
    pub fn facility(&self) -> Option<FacilityId> {
        match self.kind {
            AccountKind::Professional { facility, .. } => Some(facility),
            _ => None,
        }
    }

    /// The hub of a remote account (None: an account of this hub).
    pub fn remote_hub(&self) -> Option<&HubName> {
        match &self.kind {
            AccountKind::Remote { hub, .. } => Some(hub),
            _ => None,
        }
    }

    /// A professional of this hub or of another (a shadow).
    pub fn is_professional(&self) -> bool {
        matches!(self.kind, AccountKind::Professional { .. } | AccountKind::Remote { .. })
    }

    pub fn is_operator(&self) -> bool {
        matches!(self.kind, AccountKind::Operator)
    }

    pub fn is_active(&self) -> bool {
        self.status == AccountStatus::Active
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FacilityStatus {
    Pending,
    Approved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facility {
    pub id: FacilityId,
    pub name: String,
    pub kind: FacilityKind,
    pub municipality: String,
    pub status: FacilityStatus,
    /// Its entry on the resource map (empty until its admins fill it in).
    #[serde(default)]
    pub profile: FacilityProfile,
}

/// A single-use, expiring invitation for a professional to join a facility. Only the hash of
/// its code is stored; the code itself is shown once to the facility admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: InvitationId,
    pub code_hash: String,
    pub facility: FacilityId,
    pub issued_by: AccountId,
    pub expires_at_ms: u64,
    pub used_by: Option<AccountId>,
    /// The invitee becomes an admin of the facility.
    pub as_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    pub id: PatientId,
    pub facility: FacilityId,
    pub name: String,
    pub kana: String,
    pub birth_date: String,
    pub address: String,
    pub notes: String,
    /// The patient timeline: the room whose members are the patient's team.
    pub timeline: RoomId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomKind {
    /// 患者タイムライン.
    PatientTimeline { patient: PatientId },
    /// 小部屋: a narrower room inside a patient team.
    SubRoom { patient: PatientId, parent: RoomId, name: String },
    /// グループ.
    Group { name: String },
    /// つながり: the 1:1 room of two connected professionals.
    Connection { a: AccountId, b: AccountId },
    /// This hub's copy of room `home_room` of hub `home`, kept for its own members: the home
    /// hub orders it, and writes into it are sent there.
    Mirror { home: HubName, home_room: RoomId, of: CopyKind },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub id: RoomId,
    pub kind: RoomKind,
    /// Sequence number of the newest post (0: none yet). Dense: 1, 2, 3…
    pub last_seq: u64,
    pub last_post_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Owner,
    Member,
    Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Invited by a member, waiting for an owner's approval.
    Invited {
        by: AccountId,
    },
    /// Asked to join a group, waiting for an owner's approval.
    Requested,
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub room: RoomId,
    pub account: AccountId,
    pub role: Role,
    pub state: MemberState,
    /// Highest sequence this member has read.
    pub read_seq: u64,
    /// Her own posts above `read_seq`, ascending: read for her, though posts of others before
    /// them are not. Empty in records stored before it existed (stored values are positional
    /// now, so the field is always written: no `skip_serializing_if`).
    #[serde(default)]
    pub own_unread: Vec<u64>,
}

impl Member {
    pub fn new(room: RoomId, account: AccountId, role: Role, state: MemberState) -> Self {
        Member { room, account, role, state, read_seq: 0, own_unread: Vec::new() }
    }

    pub fn is_active(&self) -> bool {
        self.state == MemberState::Active
    }

    /// How many of a room's posts up to `last_seq` she has not read: O(1).
    pub fn unread(&self, last_seq: u64) -> u64 {
        last_seq.saturating_sub(self.read_seq).saturating_sub(self.own_unread.len() as u64)
    }

    /// She read up to `seq` (never backwards). Her own posts right after it are read too, so
    /// the marker passes them and `own_unread` only holds posts beyond someone else's unread one.
    pub fn advance_read(&mut self, seq: u64) {
        self.read_seq = self.read_seq.max(seq);
        let read = self.read_seq;
        self.own_unread.retain(|own| *own > read);
        let own_right_after = self.own_unread.iter().zip(read + 1..).take_while(|(own, next)| **own == *next).count();
        self.read_seq += own_right_after as u64;
        self.own_unread.drain(..own_right_after);
    }

    /// She posted `seq` (the room's newest). Her own post is read for her, but posting must not
    /// mark the posts of others before it read: the marker moves only when nothing else is
    /// unread, otherwise the post is remembered as her own.
    pub fn record_own_post(&mut self, seq: u64) {
        if self.read_seq + 1 == seq {
            self.read_seq = seq;
        } else {
            self.own_unread.push(seq);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostVersion {
    pub text: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub room: RoomId,
    pub seq: u64,
    pub author: AccountId,
    pub text: String,
    pub reply_to: Option<u64>,
    pub mentions: Vec<AccountId>,
    pub posted_at_ms: u64,
    /// Earlier texts, oldest first (kept for audit after edits and deletion).
    pub history: Vec<PostVersion>,
    pub deleted: bool,
    /// Who acknowledged it (「了解」).
    pub acks: Vec<AccountId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    Requested { by: AccountId },
    Accepted { room: RoomId },
    Declined,
    Blocked { by: AccountId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The two accounts, lower id first.
    pub pair: (AccountId, AccountId),
    pub state: ConnectionState,
}

pub fn connection_pair(x: AccountId, y: AccountId) -> (AccountId, AccountId) {
    if x <= y { (x, y) } else { (y, x) }
}

/// Hub-wide settings, changed only by an operator (`SetSessionPolicy`).
///
/// They are part of the replicated state, not of a node's TOML file, because apply decides
/// with them (whether a command's session is still valid): nodes holding different values
/// would turn the same log into different states. Never set: [`HubSettings::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubSettings {
    /// A session unused this long ends.
    pub session_idle_minutes: u32,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute_hours: u32,
}

impl Default for HubSettings {
    fn default() -> Self {
        // 30 minutes idle, 12 hours absolute: a working shift, as the MHLW guideline suggests.
        Self { session_idle_minutes: 30, session_absolute_hours: 12 }
    }
}

/// A login session. Only the hash of the opaque token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub token_hash: String,
    pub account: AccountId,
    pub created_at_ms: u64,
    pub device: String,
    pub revoked: bool,
    /// The last use the whole hub knows of (recorded at most every few minutes, see
    /// `queries::TOUCH_EVERY_MS`), so the idle timeout holds on nodes the session never used.
    #[serde(default)]
    pub last_used_ms: u64,
}

// The records of the feature modules that the state holds (defined here so the model and the
// view depend on no feature module; each feature re-exports its own).

/// A second factor (see `second_factor.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totp {
    pub secret: Vec<u8>,
    /// Set once the user has shown a code from the app; only then does login ask for one.
    pub confirmed: bool,
    /// The newest time step a code was accepted for.
    pub last_step: u64,
}

/// A point on the map in micro-degrees (integers keep the replicated state exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat_e6: i32,
    pub lon_e6: i32,
}

impl GeoPoint {
    pub fn is_valid(self) -> bool {
        (-90_000_000..=90_000_000).contains(&self.lat_e6) && (-180_000_000..=180_000_000).contains(&self.lon_e6)
    }

    /// Great-circle distance in metres (haversine; plenty for a prefecture).
    pub fn distance_m(self, other: GeoPoint) -> u64 {
        const EARTH_RADIUS_M: f64 = 6_371_000.0;
        let rad = |e6: i32| f64::from(e6) / 1e6_f64 * std::f64::consts::PI / 180.0;
        let (lat1, lat2) = (rad(self.lat_e6), rad(other.lat_e6));
        let dlat = lat2 - lat1;
        let dlon = rad(other.lon_e6) - rad(self.lon_e6);
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        (2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()).round() as u64
    }
}

/// What a facility tells the region about itself; kept up to date by its admins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityProfile {
    pub address: String,
    pub phone: String,
    pub location: Option<GeoPoint>,
    /// Free tags: 在宅酸素, 看取り, 24時間対応, 訪問リハ…
    pub services: Vec<String>,
    pub accepting_new_patients: bool,
    pub note: String,
}

/// A request to facilities (see `requests.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    /// 入院
    Admission,
    /// 退院
    Discharge,
    /// 往診
    HomeVisit,
    /// 連携
    Collaboration,
}

impl RequestKind {
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Admission => "入院",
            RequestKind::Discharge => "退院",
            RequestKind::HomeVisit => "往診",
            RequestKind::Collaboration => "連携",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Pending,
    Accepted {
        by: AccountId,
        at_ms: u64,
        note: String,
    },
    Declined {
        by: AccountId,
        at_ms: u64,
        note: String,
    },
    /// The sender cancelled before this facility answered.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub facility: FacilityId,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CareRequest {
    pub id: RequestId,
    pub kind: RequestKind,
    pub from: AccountId,
    pub from_facility: FacilityId,
    pub patient: Option<PatientId>,
    pub title: String,
    pub details: String,
    pub recipients: Vec<Recipient>,
    pub sent_at_ms: u64,
}

impl CareRequest {
    /// The sender, or an active professional of a recipient facility.
    pub fn visible_to(&self, account: &Account) -> bool {
        account.is_active()
            && (self.from == account.id
                || account.facility().is_some_and(|f| self.recipients.iter().any(|r| r.facility == f)))
    }
}

/// A facility of another hub, known here because that hub shares its resource map with this
/// one. Kept apart from [`Facility`] records (its own table), so nothing that acts on this
/// hub's facilities — approval, invitations, staff — can ever reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFacility {
    /// As this hub shows it: `facility.id` is a local id (never a log index, never a local
    /// facility's), the rest is what the other hub sent.
    pub facility: Facility,
    pub hub: HubName,
    /// Its id on its own hub (the one messages to that hub name).
    pub home_id: FacilityId,
    /// False once its hub withdrew its map (kept so that requests sent to it still show it).
    pub shared: bool,
}

/// A request this hub received from another hub: the local request `local` is the sender
/// hub's request `home_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLink {
    pub local: RequestId,
    pub hub: HubName,
    pub home_id: RequestId,
    /// The request is about a patient of the sender's hub (whose data stays there).
    pub about_patient: bool,
}
