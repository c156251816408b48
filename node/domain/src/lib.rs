//! What the hub does, without I/O: commands, their validation and their results.
//!
//! The collaboration network's rules, organised by feature: accounts, facilities, invitations,
//! patients and their teams, sub-rooms, groups, connections, posts, read state, requests to
//! facilities, the resource map, search and authorization; [`records`] the first replicated
//! write path.
//!
//! Pure: commands read a [`HubView`] and return [`Change`]s; nothing here does I/O. The store
//! applies them in the replicated state machine (`store/hub_view.rs`).
//!
//! Every state change is a [`LogCommand`] inside an [`Envelope`] that the Raft log carries. The
//! store applies envelopes deterministically: the same log gives the same state on every node.

pub mod accounts;
pub mod attachments;
pub mod audit;
pub mod authz;
pub mod bigram;
pub mod calendar;
pub mod commands;
pub mod connections;
pub mod directory;
pub mod disaster;
pub mod emergency;
pub mod error;
pub mod events;
pub mod federation;
pub mod kernel;
pub mod keyring;
pub mod login_guard;
pub mod model;
pub mod notify;
pub mod password_policy;
pub mod posts;
pub mod push;
pub mod queries;
pub mod records;
pub mod requests;
pub mod rooms;
pub mod search;
pub mod second_factor;
pub mod second_factor_policy;
pub mod sessions;
pub mod settle;
pub mod signed;
pub mod view;

use serde::{Deserialize, Serialize};

pub use commands::{Command, Ctx, Effects, Outcome, Outgoing, Raised, Trail, execute};
pub use error::{DomainError, DomainResult};
pub use records::{Record, RecordError};
pub use settle::{Settled, Transfer, settle};
pub use signed::{Decision, Sender, decide};
pub use view::{Change, HubState, HubView, MemHub, ViewError, ViewResult};

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// The largest log entry a client's write may make (encoded): every command's own limits
/// (10,000 characters of post text, 64 KiB of record value…) fit with room to spare. Checked
/// before proposing, so an oversized request is refused before any node writes it — each
/// command's finer rules are only checked at apply, after the entry is on every node's disk.
pub const MAX_CLIENT_ENTRY_BYTES: usize = 96 * 1024;
/// The largest entry carrying a piece of a file ([`attachments::CHUNK_BYTES`] and its header).
pub const MAX_CHUNK_ENTRY_BYTES: usize = attachments::CHUNK_BYTES as usize + 32 * 1024;
/// The largest batch another hub may deliver in one entry (its sender cuts at 1 MiB, plus the
/// one message that crosses it).
pub const MAX_BATCH_ENTRY_BYTES: usize = 2 << 20;

/// A command as it travels through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Client-chosen idempotency key: a retry returns the first result instead of applying twice.
    #[serde(alias = "request_id")]
    pub idempotency_key: String,
    /// Wall clock of the leader that proposed it, in ms since the Unix epoch. Apply never lets
    /// time go backwards (see [`monotonic_time`]).
    pub proposed_at_ms: u64,
    pub command: LogCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// What one log entry carries.
pub enum LogCommand {
    PutRecord {
        key: String,
        value: String,
    },
    /// A collaboration-network command on behalf of the session whose token hashes to
    /// `session` (None: not signed in). Apply resolves the acting account from the replicated
    /// sessions, so a stopped account or revoked session cannot act on any node.
    #[serde(alias = "Collab")]
    Signed {
        session: Option<String>,
        /// The node that proposed it (for the audit trail).
        #[serde(default)]
        origin_node: u64,
        command: Command,
    },
    /// Reads of patient data journaled on one node, shipped in a batch into the audit chain.
    AuditReads {
        records: Vec<audit::AuditRecord>,
    },
    /// A batch of hub `origin`'s stream, verified by the node that received it (signature,
    /// key, transport): apply checks it against the recorded stream and applies only what is
    /// new, in order ([`federation::inbox::receive`]). The signature and key id are kept for
    /// the audit trail.
    FederatedBatch {
        origin: federation::HubName,
        first_seq: u64,
        messages: Vec<Vec<u8>>,
        key_id: String,
        signature: Vec<u8>,
        /// The node that received and proposed it (for the audit trail).
        origin_node: u64,
    },
    /// Hub `peer` reported it applied this hub's stream up to `highest_applied`: those
    /// messages leave the outbox (proposed by the leader's sender after a delivery).
    FederationAck {
        peer: federation::HubName,
        highest_applied: u64,
    },
    /// The leader's notifier sent (or failed to send, or dropped) the e-mail notices
    /// `notices` ([`notify::record`]).
    NoticeDelivery {
        notices: Vec<notify::NoticeRef>,
        delivery: notify::Delivery,
        /// The node whose notifier sent them (for the audit trail).
        origin_node: u64,
    },
    /// The leader's collector asks to remove the attachments and files unused for longer than
    /// `grace_ms` ([`attachments::collect`]).
    CollectAttachments {
        grace_ms: u64,
        /// The node whose collector proposed it (for the audit trail).
        origin_node: u64,
    },
    /// The leader's notifier pushed (or failed to push, or dropped) `account`'s push notices
    /// `notices`; the push services of the subscriptions at `gone` answered that they no
    /// longer exist ([`push::record`]).
    PushDelivery {
        account: model::AccountId,
        notices: Vec<notify::NoticeRef>,
        delivery: notify::Delivery,
        gone: Vec<String>,
        /// The node whose notifier sent them (for the audit trail).
        origin_node: u64,
    },
    /// The leader's fetcher got the whole blob `blob` from hub `from` and checked its hash and
    /// type: chunk `index` of it ([`attachments::store_fetched`]).
    FetchedChunk {
        blob: attachments::BlobHash,
        from: federation::HubName,
        size: u64,
        index: u32,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The leader's fetcher cannot get the blob `blob` from hub `from`: it refused, or sent
    /// something else ([`attachments::fetch_failed`]).
    FetchFailed {
        blob: attachments::BlobHash,
        from: federation::HubName,
        reason: String,
    },
    /// Hub `from` sent the whole blob `blob`, checked, and every chunk of it is stored: its
    /// files from `from` may be read ([`attachments::fetch_proven`]).
    FetchProven {
        blob: attachments::BlobHash,
        from: federation::HubName,
    },
    /// Every member runs a build that applies `version` ([`APPLY_VERSION`]): the hub applies
    /// the log that way from the next entry on. Proposed by the leader, never by a client.
    SetApplyVersion {
        version: u32,
    },
    /// The hub's data keys from now on ([`keyring::check_successor`]): the first one (proposed
    /// by the leader once the hub applies [`keyring::SEALED_STATE_APPLY_VERSION`]), a rotation
    /// (one key more) or the same keys rewrapped under a new master key (an operator's
    /// `kizuna admin rotate-keys`).
    SetDataKeys {
        keys: Vec<keyring::WrappedKey>,
        /// The node that proposed it (for the audit trail).
        origin_node: u64,
    },
    /// The next step of sealing what was written before the hub's first data key (proposed by
    /// the leader while it is not done; every replica seals the same keys at the same entry).
    SealStep,
    /// Safety checks and facility statuses recorded on node `origin_node`, possibly while it was
    /// cut off from the quorum, shipped from its journal: each is checked and applied once
    /// ([`disaster::observe::record`]). From apply version 6 on.
    Observations {
        observations: Vec<disaster::Observation>,
        origin_node: u64,
    },
}

/// How this build applies the log. Every replica must apply an entry the same way, so while a
/// hub runs mixed builds (a rolling upgrade), every node applies as the hub's *active* version
/// says — the replicated `m/apply_version`, 1 when never set — and the leader raises it only
/// once every member reports a build that supports the new one (docs/operations.md, "Rolling
/// upgrade"). The rules for a change of apply behaviour or a new command:
/// - bump this number, and keep the previous behaviour for entries applied below it;
/// - a new [`LogCommand`] or [`commands::Command`] variant is appended (postcard numbers
///   variants by position) and refused with "the hub is being upgraded" until the active
///   version reaches the one that introduced it: an older build cannot even decode it.
///
/// 1: every build before the version existed. 2: this one — it understands
/// [`LogCommand::SetApplyVersion`] (a build of 1 cannot decode it, so it is never proposed
/// while one is a member); its apply is otherwise that of 1. 3: failed sign-ins are counted
/// (`Command::LoginFailed`), the second factor can be required and emergency access exists
/// (`SetSecondFactorPolicy`, `SetBreakGlass`, `OpenEmergencyAccess`). 4
/// ([`keyring::SEALED_STATE_APPLY_VERSION`]): the state is sealed under the hub's data keys
/// ([`LogCommand::SetDataKeys`]) and the search index holds keyed hashes of its terms; a node
/// without a master key applies up to 3 only, so a hub without encryption at rest stays at 3.
/// 5 ([`password_policy::SINCE_APPLY_VERSION`]): the password rule is the hub's
/// (`SetPasswordPolicy`), admins issue passwords (`IssuePassword`) and family accounts'
/// passwords count as issued. 6 ([`disaster::SINCE_APPLY_VERSION`]): disaster mode — its
/// commands and [`LogCommand::Observations`]. 7 ([`records::SINCE_APPLY_VERSION`]): a record
/// write is a signed command (`Command::PutRecord`), its operator checked at apply. 8: no
/// new command; the store's index of an account's memberships carries each membership itself
/// (`kizuna_store`'s `MEMBERS_IN_THEIR_INDEX_SINCE`), so a patient list reads them in one scan.
/// 9: no new command; the store's search index keeps one filter of a post's bigrams
/// ([`bigram::filter_of`]) instead of an entry per bigram (`kizuna_store`'s
/// `POST_FILTERS_SINCE`): one write a post instead of ~70. 10: no new command; sessions,
/// invitations and sign-in counts are swept every 256th entry, 512 records of each at a time,
/// instead of 32 every 16th (`kizuna_store`'s `SPACED_SWEEPS_SINCE`).
pub const APPLY_VERSION: u32 = 10;

/// The active version of a hub that never set one: its nodes were all of builds before the
/// version existed.
pub const FIRST_APPLY_VERSION: u32 = 1;

impl LogCommand {
    /// The apply version that brought this command: a hub below it cannot take it (a member of
    /// an older build could not even decode the entry, and replication to it would stall).
    pub fn since_apply_version(&self) -> u32 {
        match self {
            LogCommand::Signed { command, .. } => command.since_apply_version(),
            LogCommand::Observations { .. } => disaster::SINCE_APPLY_VERSION,
            _ => FIRST_APPLY_VERSION,
        }
    }

    /// How large an entry of this command may be, for what clients and other hubs send; None
    /// for what the nodes make themselves (bounded where they make it).
    fn max_entry_bytes(&self) -> Option<usize> {
        match self {
            LogCommand::Signed { command: Command::StoreChunk { .. }, .. } => Some(MAX_CHUNK_ENTRY_BYTES),
            LogCommand::Signed { .. } | LogCommand::PutRecord { .. } => Some(MAX_CLIENT_ENTRY_BYTES),
            LogCommand::FederatedBatch { .. } => Some(MAX_BATCH_ENTRY_BYTES),
            // Users' records, batched by the node: a batch of the largest fits.
            LogCommand::Observations { .. } => Some(MAX_BATCH_ENTRY_BYTES),
            _ => None,
        }
    }
}

impl std::fmt::Display for Envelope {
    // Short on purpose: logged by Raft, so never the content (it may be patient data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.command {
            LogCommand::PutRecord { .. } => "put-record",
            LogCommand::Signed { .. } => "signed",
            LogCommand::AuditReads { .. } => "audit-reads",
            LogCommand::FederatedBatch { .. } => "federated-batch",
            LogCommand::FederationAck { .. } => "federation-ack",
            LogCommand::NoticeDelivery { .. } => "notice-delivery",
            LogCommand::CollectAttachments { .. } => "collect-attachments",
            LogCommand::PushDelivery { .. } => "push-delivery",
            LogCommand::FetchedChunk { .. } => "fetched-chunk",
            LogCommand::FetchFailed { .. } => "fetch-failed",
            LogCommand::FetchProven { .. } => "fetch-proven",
            LogCommand::SetApplyVersion { .. } => "set-apply-version",
            LogCommand::SetDataKeys { .. } => "set-data-keys",
            LogCommand::SealStep => "seal-step",
            LogCommand::Observations { .. } => "observations",
        };
        write!(f, "{kind} (idempotency key {})", self.idempotency_key)
    }
}

/// The outcome of applying one envelope; what the client gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    RecordPut {
        version: u64,
    },
    #[serde(alias = "Collab")]
    Done(Outcome),
    /// Audit records appended; the chain's new length.
    Audited {
        last_seq: u64,
    },
    /// Valid on the wire but refused by the rules and the state it met. Deterministic, and
    /// remembered with the idempotency key like any result.
    Refused(DomainError),
    /// Raft's own entries (leader blanks, membership changes) produce nothing for a client.
    NoOp,
    /// A federated batch was decided: applied (its new tail), a duplicate, or a gap.
    Received(federation::Receipt),
    /// Shipped observations were decided: how many applied, were in the log before, or were
    /// refused (by the state they met), and what became of each.
    Observed {
        applied: u32,
        duplicates: u32,
        refused: u32,
        fates: Vec<(disaster::ObservationId, disaster::Fate)>,
    },
}

impl From<DomainError> for CommandResult {
    fn from(e: DomainError) -> Self {
        CommandResult::Refused(e)
    }
}

/// What a client gets for an applied (or already applied) request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub result: CommandResult,
    /// Raft log index of the entry that first applied this idempotency key.
    pub log_index: u64,
    /// True when the idempotency key had been applied before and this is the remembered result.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("idempotency_key must be 1..={MAX_IDEMPOTENCY_KEY_BYTES} bytes of printable text")]
    IdempotencyKey,
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("federated batch: {0}")]
    Batch(String),
    #[error("the request is too large: {bytes} bytes, at most {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error(
        "ハブの全ノードがこの機能に対応していません (it needs apply version {needs}; the hub applies version {active}: \
         every node must run a build of it, and from version 4 on hold a master key)"
    )]
    NotYet { needs: u32, active: u32 },
    /// Refused by the leader this write was forwarded to.
    #[error("{0}")]
    Forwarded(String),
}

/// The key the result of `account`'s write under `idempotency_key` is remembered under.
pub fn signed_scope(account: model::AccountId, idempotency_key: &str) -> String {
    format!("{}/{}", account.0, idempotency_key)
}

impl Envelope {
    /// The key its result is remembered under. Keys are scoped per signed-in account: one
    /// user's key never answers (and so never swallows) another user's write, even if a
    /// client reuses keys. Unsigned commands (shipped reads, records before apply version 7)
    /// share one scope, and so do record writes, signed or not (an operator's diagnostic: a
    /// retry across the hub's move to version 7 finds its first result); federated batches
    /// and the nodes' own workers have their own.
    pub fn idempotency_scope(&self, view: &impl HubView) -> ViewResult<String> {
        let account = match &self.command {
            // Records keep the one scope of the unsigned writes they were before apply version
            // 7: a retry across the hub's move to it still finds its first result.
            LogCommand::Signed { command: Command::PutRecord { .. }, .. } => None,
            LogCommand::Signed { session: Some(token_hash), .. } => view.session(token_hash)?.map(|s| s.account),
            _ => None,
        };
        if let LogCommand::FederatedBatch { .. } | LogCommand::FederationAck { .. } = &self.command {
            // A scope of its own that no client key can name (client keys never hold a control
            // character): an unsigned write under the same text never answers, and so never
            // blocks, a batch.
            return Ok(format!("federation\u{1f}{}", self.idempotency_key));
        }
        if let LogCommand::NoticeDelivery { .. } | LogCommand::PushDelivery { .. } = &self.command {
            // The notifier's own scope, for the same reason.
            return Ok(format!("notify\u{1f}{}", self.idempotency_key));
        }
        if let LogCommand::Observations { .. } = &self.command {
            // The shippers' own scope, for the same reason (the observations' ids, not the
            // key, keep a record from applying twice).
            return Ok(format!("observe\u{1f}{}", self.idempotency_key));
        }
        if let LogCommand::CollectAttachments { .. } = &self.command {
            // The collector's own scope, for the same reason.
            return Ok(format!("collect\u{1f}{}", self.idempotency_key));
        }
        if let LogCommand::FetchedChunk { .. } | LogCommand::FetchFailed { .. } | LogCommand::FetchProven { .. } =
            &self.command
        {
            // The fetcher's own scope, for the same reason.
            return Ok(format!("fetch\u{1f}{}", self.idempotency_key));
        }
        Ok(match account {
            Some(a) => signed_scope(a, &self.idempotency_key),
            None => self.idempotency_key.clone(),
        })
    }

    /// Checks everything that can be checked without state. Called before proposing, so a
    /// malformed request never reaches the log.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_idempotency_key(&self.idempotency_key)?;
        if let Some(max) = self.command.max_entry_bytes() {
            // An envelope that does not encode could not be proposed either: refused alike.
            // Counted, not written out: every write is checked so twice on its way to the log
            // (`Node::write`, then the proposal), and a copy only to be measured cost an
            // allocation and a copy of its value each time.
            let bytes =
                postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default()).unwrap_or(usize::MAX);
            if bytes > max {
                return Err(ValidationError::TooLarge { bytes, max });
            }
        }
        match &self.command {
            LogCommand::PutRecord { key, value } => records::validate_put(key, value)?,
            LogCommand::FederatedBatch { first_seq, messages, .. } => {
                federation::SeqRange::of_batch(*first_seq, messages.len() as u64)
                    .map_err(|e| ValidationError::Batch(e.to_string()))?;
            }
            LogCommand::Signed { .. }
            | LogCommand::AuditReads { .. }
            | LogCommand::FederationAck { .. }
            | LogCommand::NoticeDelivery { .. }
            | LogCommand::PushDelivery { .. }
            | LogCommand::CollectAttachments { .. }
            | LogCommand::FetchedChunk { .. }
            | LogCommand::FetchFailed { .. }
            | LogCommand::FetchProven { .. }
            | LogCommand::SetApplyVersion { .. }
            | LogCommand::SetDataKeys { .. }
            | LogCommand::SealStep => {}
            LogCommand::Observations { observations, .. } => {
                if observations.is_empty() || observations.len() > disaster::observe::MAX_PER_ENTRY {
                    return Err(ValidationError::Batch(format!(
                        "1..={} observations per entry",
                        disaster::observe::MAX_PER_ENTRY
                    )));
                }
            }
        }
        Ok(())
    }
}

pub fn validate_idempotency_key(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_IDEMPOTENCY_KEY_BYTES || id.chars().any(char::is_control) {
        return Err(ValidationError::IdempotencyKey);
    }
    Ok(())
}

/// Lower-case hex of bytes (hashes, tokens, digests).
pub fn hex(bytes: &[u8]) -> String {
    // Two digits pushed per byte: `format!` per byte allocated a string for each, and every
    // request hashes its session token to this (1.5 % of a busy leader, docs/benchmarks.md).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from lower- or upper-case hex; None for anything else.
pub fn bytes_of_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The time an entry is applied at: the proposer's clock, but never behind the previous entry
/// (a new leader's clock may lag the old one's).
pub fn monotonic_time(previous_ms: u64, proposed_ms: u64) -> u64 {
    previous_ms.max(proposed_ms)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod envelope_tests {
    use super::*;

    fn put(idempotency_key: &str, key: &str, value: &str) -> Envelope {
        Envelope {
            idempotency_key: idempotency_key.into(),
            proposed_at_ms: 1,
            command: LogCommand::PutRecord { key: key.into(), value: value.into() },
        }
    }

    fn signed(command: Command) -> Envelope {
        let command = LogCommand::Signed { session: Some("t".into()), origin_node: 1, command };
        Envelope { idempotency_key: "k".into(), proposed_at_ms: 1, command }
    }

    #[test]
    fn an_oversized_client_entry_is_refused_before_the_log() {
        let post = |chars: usize| Command::Post {
            room: model::RoomId(1),
            text: "褥".repeat(chars),
            reply_to: None,
            mentions: vec![],
        };
        assert!(signed(post(commands::MAX_POST_CHARS)).validate().is_ok(), "the longest post fits");
        let huge = signed(post(MAX_CLIENT_ENTRY_BYTES));
        let written = postcard::to_allocvec(&huge).expect("encodes").len();
        assert_eq!(
            huge.validate(),
            Err(ValidationError::TooLarge { bytes: written, max: MAX_CLIENT_ENTRY_BYTES }),
            "the size counted is the size written"
        );
        let chunk = |bytes: usize| Command::StoreChunk {
            blob: attachments::BlobHash([7; 32]),
            size: attachments::CHUNK_BYTES,
            index: 0,
            bytes: vec![0; bytes],
        };
        assert!(signed(chunk(attachments::CHUNK_BYTES as usize)).validate().is_ok(), "a whole chunk fits");
        assert!(signed(chunk(MAX_CHUNK_ENTRY_BYTES)).validate().is_err());
        let record = put("k", "key", &"v".repeat(records::MAX_VALUE_BYTES));
        assert!(record.validate().is_ok(), "the largest record fits");
    }

    #[test]
    fn valid_put_passes() {
        assert_eq!(put("r1", "k", "v").validate(), Ok(()));
    }

    #[test]
    fn idempotency_key_is_required_and_bounded() {
        assert_eq!(put("", "k", "v").validate(), Err(ValidationError::IdempotencyKey));
        assert_eq!(put(&"x".repeat(129), "k", "v").validate(), Err(ValidationError::IdempotencyKey));
        assert_eq!(put("a\nb", "k", "v").validate(), Err(ValidationError::IdempotencyKey));
    }

    fn batch(messages: Vec<Vec<u8>>) -> Envelope {
        Envelope {
            idempotency_key: "federation/gunma/1/2".into(),
            proposed_at_ms: 1,
            command: LogCommand::FederatedBatch {
                origin: federation::HubName::new("gunma").unwrap(),
                first_seq: 1,
                messages,
                key_id: "gunma-2026".into(),
                signature: vec![],
                origin_node: 1,
            },
        }
    }

    #[test]
    fn federated_batches_have_a_scope_no_client_key_can_name() {
        let scope = batch(vec![vec![1], vec![2]]).idempotency_scope(&MemHub::default()).unwrap();
        let record = put("federation/gunma/1/2", "k", "v");
        assert_ne!(scope, record.idempotency_scope(&MemHub::default()).unwrap());
        assert!(validate_idempotency_key(&scope).is_err(), "a client could send {scope:?}");
    }

    #[test]
    fn an_empty_federated_batch_never_reaches_the_log() {
        assert_eq!(batch(vec![vec![1]]).validate(), Ok(()));
        assert!(matches!(batch(vec![]).validate(), Err(ValidationError::Batch(_))));
    }

    #[test]
    fn time_never_goes_backwards() {
        assert_eq!(monotonic_time(10, 5), 10);
        assert_eq!(monotonic_time(10, 15), 15);
    }
}
