//! Disaster mode (災害モード): what the 2015 Kanto-Tohoku floods made of the service Kizuna
//! replaces — the emergency contact network. An operator (or, if the hub allows it, a facility
//! admin for its own municipality) declares a disaster for municipalities of the hub
//! ([`declare`]); each patient's team records safety checks (安否確認) and each facility its
//! status ([`observe`]); the board counts them per municipality and facility, most urgent first
//! ([`board`]), and exports them for the prefecture's disaster office ([`export`]).
//!
//! Safety checks and facility statuses are **observations**: facts seen at a time, made on any
//! node — also on one cut off from the hub's quorum, which journals them and ships them into the
//! log when the quorum returns. So they merge by a rule of the domain, not by log order: every
//! observation is kept in its subject's history, and a subject's current state is the
//! observation with the greatest `(observed_at_ms, id)` ([`Observation::supersedes`]). Records
//! made on both sides of a cut give the same state on every replica, whatever order they reach
//! the log in; an observation shipped twice is applied once (its id is remembered).

pub mod board;
pub mod declare;
pub mod export;
pub mod observe;
pub mod profile;

use serde::{Deserialize, Serialize};

use crate::model::{AccountId, DisasterId, FacilityId, PatientId};

/// The apply version that brought disaster mode: its commands and [`crate::LogCommand::Observations`].
pub const SINCE_APPLY_VERSION: u32 = 6;

/// A declared disaster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disaster {
    pub id: DisasterId,
    pub name: String,
    /// The municipalities it covers (as facilities name theirs: 「宇都宮市」).
    pub municipalities: Vec<String>,
    pub started_at_ms: u64,
    pub declared_by: AccountId,
    /// When it was ended (None: still in force).
    pub ended_at_ms: Option<u64>,
}

impl Disaster {
    pub fn is_active(&self) -> bool {
        self.ended_at_ms.is_none()
    }

    /// Whether it covers `municipality` (a facility's may carry stray spaces: registration
    /// kept them).
    pub fn covers(&self, municipality: &str) -> bool {
        let municipality = municipality.trim();
        self.municipalities.iter().any(|m| m == municipality)
    }

    /// Whether something observed at `at_ms` belongs to it: not after it ended.
    pub fn open_at(&self, at_ms: u64) -> bool {
        self.ended_at_ms.is_none_or(|end| at_ms <= end)
    }
}

/// Whether facility admins may declare a disaster for their own facility's municipality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisasterPolicy {
    pub admins_may_declare: bool,
}

/// A medical device a patient's life depends on: without power or oxygen supply the patient is
/// in danger within hours, so these patients come first on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Device {
    /// 在宅酸素.
    HomeOxygen,
    /// 人工呼吸器.
    Ventilator,
    /// 吸引器.
    Suction,
    /// 在宅透析.
    Dialysis,
}

impl Device {
    pub fn label(self) -> &'static str {
        match self {
            Device::HomeOxygen => "在宅酸素",
            Device::Ventilator => "人工呼吸器",
            Device::Suction => "吸引器",
            Device::Dialysis => "在宅透析",
        }
    }
}

/// What a disaster needs to know of a patient: where they live (the municipality, as the
/// disaster names it) and which devices their life depends on. Kept beside the patient, not in
/// it (the patient's stored format stays as it is).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CareProfile {
    pub municipality: String,
    pub devices: Vec<Device>,
}

impl CareProfile {
    /// Depends on power or oxygen.
    pub fn life_support(&self) -> bool {
        !self.devices.is_empty()
    }
}

/// An observation's id: drawn by the node it was recorded on from the author and the request's
/// idempotency key (a client's retry, to any node, names the same observation), so records
/// made on any node, before or after a restart, never share one by chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObservationId(pub [u8; 16]);

impl ObservationId {
    /// The id of what `author` records under the request's `idempotency_key`.
    pub fn of(author: AccountId, idempotency_key: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"kizuna observation\0")
            .chain_update(author.0.to_be_bytes())
            .chain_update(idempotency_key.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ObservationId(id)
    }

    /// The id its `Display` wrote.
    pub fn from_hex(s: &str) -> Option<Self> {
        crate::bytes_of_hex(s).map(Self)
    }
}

impl std::fmt::Display for ObservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

/// What an observation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Subject {
    Patient(PatientId),
    Facility(FacilityId),
}

/// What a patient needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Need {
    /// Power for medical devices.
    Power,
    Oxygen,
    Medicine,
    Evacuation,
    Care,
}

impl Need {
    pub const ALL: [Need; 5] = [Need::Power, Need::Oxygen, Need::Medicine, Need::Evacuation, Need::Care];

    pub fn label(self) -> &'static str {
        match self {
            Need::Power => "電源",
            Need::Oxygen => "酸素",
            Need::Medicine => "薬",
            Need::Evacuation => "避難",
            Need::Care => "介護・看護",
        }
    }

    /// Needs that cannot wait: without them a life-support patient is in danger within hours.
    pub fn is_vital(self) -> bool {
        matches!(self, Need::Power | Need::Oxygen)
    }
}

/// A patient's safety (安否).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Safety {
    Safe,
    NeedsHelp {
        needs: Vec<Need>,
    },
    Unreachable,
    /// Evacuated, to `to` (a shelter, a hospital, relatives).
    Evacuated {
        to: String,
    },
}

impl Safety {
    pub fn label(&self) -> &'static str {
        match self {
            Safety::Safe => "無事",
            Safety::NeedsHelp { .. } => "要支援",
            Safety::Unreachable => "連絡不通",
            Safety::Evacuated { .. } => "避難済み",
        }
    }
}

/// Whether a facility works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Operating,
    Limited,
    Closed,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Operation::Operating => "通常稼働",
            Operation::Limited => "一部稼働",
            Operation::Closed => "休止",
        }
    }
}

/// How much of a resource a facility has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Supply {
    Normal,
    Limited,
    Out,
}

impl Supply {
    pub fn label(self) -> &'static str {
        match self {
            Supply::Normal => "通常",
            Supply::Limited => "制限あり",
            Supply::Out => "なし",
        }
    }
}

/// A facility's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityState {
    pub operation: Operation,
    pub power: Supply,
    pub water: Supply,
    pub staff: Supply,
    /// Beds (or visits a day) it can still take.
    pub available: u32,
    pub accepts_evacuees: bool,
    pub accepts_patients: bool,
}

/// What was observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    Safety(Safety),
    Facility(FacilityState),
}

/// One safety check or facility status, as recorded on some node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub id: ObservationId,
    pub disaster: DisasterId,
    pub subject: Subject,
    pub report: Report,
    pub note: String,
    /// When it was observed: the recording node's clock (never later than the log's clock
    /// when it is applied: see [`observe::record`]).
    pub observed_at_ms: u64,
    pub author: AccountId,
    /// The author's session's short id (for the audit chain).
    pub session: String,
    /// The node it was recorded on.
    pub node: u64,
}

impl Observation {
    /// The merge rule: the later observation wins; at the same millisecond, the greater id
    /// (arbitrary, but the same on every replica).
    pub fn supersedes(&self, other: &Observation) -> bool {
        (self.observed_at_ms, self.id) > (other.observed_at_ms, other.id)
    }

    pub fn safety(&self) -> Option<&Safety> {
        match &self.report {
            Report::Safety(s) => Some(s),
            Report::Facility(_) => None,
        }
    }

    pub fn facility_state(&self) -> Option<&FacilityState> {
        match &self.report {
            Report::Facility(f) => Some(f),
            Report::Safety(_) => None,
        }
    }
}

/// What became of an observation that reached the log: kept by its id, so a second shipping
/// changes nothing and a retry learns the first outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fate {
    /// In the history of `subject` in `disaster` (the one apply filed it under).
    Applied { disaster: DisasterId, subject: Subject },
    /// Refused by the rules on the state it met (the author left the team meanwhile…).
    Refused(crate::DomainError),
}

/// The newest of two observations of one subject by the merge rule.
pub fn newest<'a>(a: Option<&'a Observation>, b: Option<&'a Observation>) -> Option<&'a Observation> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.supersedes(a) { b } else { a }),
        (a, b) => a.or(b),
    }
}
