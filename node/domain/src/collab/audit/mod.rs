//! The audit log of patient data: who read or wrote what, when, from which session and node.
//!
//! Entries form a hash chain: each entry's hash covers its sequence number, its record and the
//! previous entry's hash, so a missing, reordered or altered entry breaks every hash after it.
//! Writes are audited in apply; reads are journaled on the serving node and shipped into the
//! replicated log in batches (see `audit/` in the node), so a read costs no Raft round trip.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::*;
use super::view::HubView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub account: AccountId,
    /// First 16 hex digits of the session token's digest: enough to tell sessions apart.
    pub session: String,
    /// The node that served the read or proposed the write.
    pub node: u64,
    pub action: AuditAction,
    pub patient: Option<PatientId>,
    pub room: Option<RoomId>,
    /// What was done, e.g. `timeline after 0`, `post`.
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

fn hash(seq: u64, record: &AuditRecord, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(seq.to_be_bytes());
    h.update(serde_json::to_vec(record).unwrap_or_default());
    h.update(prev_hash.as_bytes());
    crate::hex(&h.finalize())
}

/// The entry that follows `prev` (None: the first entry).
pub fn next(prev: Option<(u64, &str)>, record: AuditRecord) -> AuditEntry {
    let (seq, prev_hash) = match prev {
        Some((seq, h)) => (seq + 1, h.to_owned()),
        None => (1, String::new()),
    };
    let hash = hash(seq, &record, &prev_hash);
    AuditEntry { seq, record, prev_hash, hash }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Checks a whole chain from its first entry; returns how many entries verified.
pub fn verify(entries: impl IntoIterator<Item = AuditEntry>) -> Result<u64, ChainBreak> {
    let mut prev: Option<(u64, String)> = None;
    let mut count = 0;
    for e in entries {
        let expected_seq = prev.as_ref().map_or(1, |(s, _)| s + 1);
        if e.seq != expected_seq {
            return Err(ChainBreak {
                seq: expected_seq,
                reason: format!("entry {expected_seq} is missing (found {})", e.seq),
            });
        }
        let expected_prev = prev.as_ref().map_or(String::new(), |(_, h)| h.clone());
        if e.prev_hash != expected_prev {
            return Err(ChainBreak { seq: e.seq, reason: "does not link to the previous entry".into() });
        }
        if hash(e.seq, &e.record, &e.prev_hash) != e.hash {
            return Err(ChainBreak { seq: e.seq, reason: "content does not match its hash (altered)".into() });
        }
        prev = Some((e.seq, e.hash));
        count += 1;
    }
    Ok(count)
}

/// The audit trail of a successful write, if it touched patient data: (patient, room, what).
pub fn write_trail(
    view: &impl HubView,
    command: &super::Command,
    outcome: &super::Outcome,
) -> Option<(Option<PatientId>, Option<RoomId>, &'static str)> {
    use super::{Command as C, Outcome as O};
    let (room, what) = match (command, outcome) {
        (C::CreatePatient { .. }, O::Patient { patient, timeline }) => {
            return Some((Some(*patient), Some(*timeline), "create patient"));
        }
        (C::CreateFamilyAccount { patient, .. }, _) => return Some((Some(*patient), None, "create family account")),
        (C::SendRequest { patient: Some(patient), .. }, _) => return Some((Some(*patient), None, "send request")),
        (C::AnswerRequest { request, .. } | C::CancelRequest { request }, _) => {
            let patient = view.care_request(*request)?.patient?;
            let what = if matches!(command, C::CancelRequest { .. }) { "cancel request" } else { "answer request" };
            return Some((Some(patient), None, what));
        }
        (C::Post { room, .. }, _) => (*room, "post"),
        (C::EditPost { room, .. }, _) => (*room, "edit post"),
        (C::DeletePost { room, .. }, _) => (*room, "delete post"),
        (C::AckPost { room, .. }, _) => (*room, "acknowledge post"),
        (C::MarkRead { room, .. }, _) => (*room, "mark read"),
        (C::Invite { room, .. }, _) => (*room, "invite member"),
        (C::Approve { room, .. }, _) => (*room, "approve member"),
        (C::Remove { room, .. }, _) => (*room, "remove member"),
        (C::Leave { room }, _) => (*room, "leave"),
        (C::CreateSubRoom { timeline, .. }, _) => (*timeline, "create sub-room"),
        _ => return None,
    };
    let patient = patient_of(view, room)?;
    Some((Some(patient), Some(room), what))
}

/// The patient a room's data belongs to, if any: timelines and sub-rooms are patient data.
pub fn patient_of(view: &impl HubView, room: RoomId) -> Option<PatientId> {
    match view.room(room)?.kind {
        RoomKind::PatientTimeline { patient } | RoomKind::SubRoom { patient, .. } => Some(patient),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            at_ms: i,
            account: AccountId(7),
            session: "abcd".into(),
            node: 1,
            action: AuditAction::Read,
            patient: Some(PatientId(3)),
            room: Some(RoomId(3)),
            what: format!("timeline {i}"),
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = next(prev, record(i));
            out.push(e);
        }
        out
    }

    /// A chain written by the code of commit f9b3eac (before hash versions existed), as its
    /// entries rest in `Z` in existing data directories. It must verify forever.
    const V0_CHAIN: &str = include_str!("v0_chain.json");

    #[test]
    fn a_chain_written_before_hash_versions_still_verifies() {
        let entries: Vec<AuditEntry> = serde_json::from_str(V0_CHAIN).expect("fixture decodes");
        assert_eq!(verify(entries), Ok(4));
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(chain(5)), Ok(5));
    }

    #[test]
    fn an_altered_entry_is_detected() {
        let mut c = chain(5);
        c[2].record.account = AccountId(8);
        assert_eq!(verify(c).unwrap_err().seq, 3);
    }

    #[test]
    fn a_missing_entry_is_detected() {
        let mut c = chain(5);
        c.remove(3);
        let e = verify(c).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(e.reason.contains("missing"));
    }

    #[test]
    fn a_rehashed_alteration_still_breaks_the_next_link() {
        let mut c = chain(5);
        c[1].record.what = "nothing to see".into();
        c[1].hash = hash(c[1].seq, &c[1].record, &c[1].prev_hash);
        assert_eq!(verify(c).unwrap_err().seq, 3);
    }
}
