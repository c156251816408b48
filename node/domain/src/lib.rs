//! What the hub does, without I/O: commands, their validation and their results.
//!
//! [`collab`] holds the collaboration network's rules (accounts, patients, rooms, posts, read
//! state, authorization); [`records`] the first replicated write path.
//!
//! Every state change is a [`Command`] inside an [`Envelope`] that the Raft log carries. The
//! store applies envelopes deterministically: the same log gives the same state on every node.

pub mod collab;
pub mod records;

use serde::{Deserialize, Serialize};

pub use records::{Record, RecordError};

/// Longest accepted client request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A command as it travels through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Client-chosen idempotency key: a retry returns the first result instead of applying twice.
    pub request_id: String,
    /// Wall clock of the leader that proposed it, in ms since the Unix epoch. Apply never lets
    /// time go backwards (see [`monotonic_time`]).
    pub proposed_at_ms: u64,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    PutRecord {
        key: String,
        value: String,
    },
    /// A collaboration-network command on behalf of the session whose token hashes to
    /// `session` (None: not signed in). Apply resolves the acting account from the replicated
    /// sessions, so a stopped account or revoked session cannot act on any node.
    Collab {
        session: Option<String>,
        /// The node that proposed it (for the audit trail).
        #[serde(default)]
        origin_node: u64,
        command: collab::Command,
    },
    /// Reads of patient data journaled on one node, shipped in a batch into the audit chain.
    AuditReads {
        records: Vec<collab::audit::AuditRecord>,
    },
}

impl std::fmt::Display for Envelope {
    // Short on purpose: logged by Raft, so never the content (it may be patient data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.command {
            Command::PutRecord { .. } => "put-record",
            Command::Collab { .. } => "collab",
            Command::AuditReads { .. } => "audit-reads",
        };
        write!(f, "{kind} (request {})", self.request_id)
    }
}

/// The outcome of applying one envelope; what the client gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    RecordPut {
        version: u64,
    },
    Collab(collab::Outcome),
    /// Audit records appended; the chain's new length.
    Audited {
        last_seq: u64,
    },
    /// Valid on the wire but refused by the rules and the state it met. Deterministic, and
    /// remembered with the idempotency key like any result.
    Refused(collab::DomainError),
    /// Raft's own entries (leader blanks, membership changes) produce nothing for a client.
    NoOp,
}

impl From<collab::DomainError> for CommandResult {
    fn from(e: collab::DomainError) -> Self {
        CommandResult::Refused(e)
    }
}

impl From<collab::ViewError> for CommandResult {
    fn from(e: collab::ViewError) -> Self {
        CommandResult::Refused(e.into())
    }
}

/// What a client gets for an applied (or already applied) request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub result: CommandResult,
    /// Raft log index of the entry that first applied this request id.
    pub log_index: u64,
    /// True when the request id had been applied before and this is the remembered result.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("idempotency_key must be 1..={MAX_REQUEST_ID_BYTES} bytes of printable text")]
    RequestId,
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Refused by the leader this write was forwarded to.
    #[error("{0}")]
    Forwarded(String),
}

impl Envelope {
    /// The key its result is remembered under. Keys are scoped per signed-in account: one
    /// user's key never answers (and so never swallows) another user's write, even if a
    /// client reuses keys. Unsigned commands (records, shipped reads) share one scope.
    pub fn idempotency_scope(&self, view: &impl collab::HubView) -> collab::ViewResult<String> {
        let account = match &self.command {
            Command::Collab { session: Some(token_hash), .. } => view.session(token_hash)?.map(|s| s.account),
            _ => None,
        };
        Ok(match account {
            Some(a) => format!("{}/{}", a.0, self.request_id),
            None => self.request_id.clone(),
        })
    }

    /// Checks everything that can be checked without state. Called before proposing, so a
    /// malformed request never reaches the log.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_request_id(&self.request_id)?;
        match &self.command {
            Command::PutRecord { key, value } => records::validate_put(key, value)?,
            Command::Collab { .. } | Command::AuditReads { .. } => {}
        }
        Ok(())
    }
}

pub fn validate_request_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ValidationError::RequestId);
    }
    Ok(())
}

/// The time an entry is applied at: the proposer's clock, but never behind the previous entry
/// (a new leader's clock may lag the old one's).
/// Lower-case hex of bytes (hashes, tokens, digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn monotonic_time(previous_ms: u64, proposed_ms: u64) -> u64 {
    previous_ms.max(proposed_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(request_id: &str, key: &str, value: &str) -> Envelope {
        Envelope {
            request_id: request_id.into(),
            proposed_at_ms: 1,
            command: Command::PutRecord { key: key.into(), value: value.into() },
        }
    }

    #[test]
    fn valid_put_passes() {
        assert_eq!(put("r1", "k", "v").validate(), Ok(()));
    }

    #[test]
    fn request_id_is_required_and_bounded() {
        assert_eq!(put("", "k", "v").validate(), Err(ValidationError::RequestId));
        assert_eq!(put(&"x".repeat(129), "k", "v").validate(), Err(ValidationError::RequestId));
        assert_eq!(put("a\nb", "k", "v").validate(), Err(ValidationError::RequestId));
    }

    #[test]
    fn time_never_goes_backwards() {
        assert_eq!(monotonic_time(10, 5), 10);
        assert_eq!(monotonic_time(10, 15), 15);
    }
}
