//! The audit log of patient data: who read or wrote what, when, from which session and node.
//!
//! Entries form a hash chain: each entry's hash covers its sequence number, its record and the
//! previous entry's hash, so a missing, reordered or altered entry breaks every hash after it.
//! What exactly a hash covers is a versioned, specified encoding (see [`encoding`]), so the
//! record can gain fields without breaking the chains already on disk.
//! Writes are audited in apply; reads are journaled on the serving node and shipped into the
//! replicated log in batches (see `audit/` in the node), so a read costs no Raft round trip.

pub mod encoding;

use serde::{Deserialize, Serialize};

use super::model::*;
use super::view::{HubView, ViewResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    Read,
    Write,
}

/// A field added here is covered by no existing hash version: hash it by adding a version to
/// [`encoding`]. Stored values are positional (the store's value codec): a new field is also a
/// new value format version there, with a migration of the stored records.
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
    /// Only in this crate's tests: stands in for a field a later version adds (federation's
    /// origin hub), so the tests show that growing the record changes no existing hash.
    #[cfg(test)]
    #[serde(default)]
    pub added_later: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub record: AuditRecord,
    pub prev_hash: String,
    /// The encoding of seq, record and prev_hash that `hash` covers (see [`encoding`]).
    /// Entries stored before versions existed have none: they are version 0.
    #[serde(default)]
    pub hash_version: u8,
    pub hash: String,
}

/// Where a chain ends: what the next entry links to and the hash version it continues with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead<'a> {
    pub seq: u64,
    pub hash: &'a str,
    pub hash_version: u8,
}

impl AuditEntry {
    /// The chain's head when this is its newest entry.
    pub fn head(&self) -> ChainHead<'_> {
        ChainHead { seq: self.seq, hash: &self.hash, hash_version: self.hash_version }
    }
}

/// The entry that follows `prev` (None: the first entry of a new chain, hashed with the current
/// version). An entry keeps the hash version of the chain it extends: the version comes from the
/// replicated state, never from the build that applies it, so replicas running different
/// releases during a rolling upgrade still compute the same entry from the same log. Moving an
/// existing chain to a newer version needs a replicated command once every node knows it (not
/// built: version 0 hashes a frozen record shape and stays valid as the record grows).
pub fn next(prev: Option<ChainHead<'_>>, record: AuditRecord) -> AuditEntry {
    let (seq, prev_hash, version) = match prev {
        Some(head) => (head.seq + 1, head.hash.to_owned(), head.hash_version),
        None => (1, String::new(), encoding::CURRENT),
    };
    // A head in a version this build does not know (written by a newer release) cannot be
    // continued in it; the current version is the only choice left, and verify says so.
    let (hash_version, hash) = match encoding::hash(version, seq, &record, &prev_hash) {
        Some(hash) => (version, hash),
        None => encoding::hash_new(seq, &record, &prev_hash),
    };
    AuditEntry { seq, record, prev_hash, hash_version, hash }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Checks a whole chain from its first entry; returns how many entries verified.
/// Each entry is checked with the encoding its `hash_version` names.
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
        check_hash(&e)?;
        prev = Some((e.seq, e.hash));
        count += 1;
    }
    Ok(count)
}

/// Recomputes one entry's hash with the encoding it names.
fn check_hash(e: &AuditEntry) -> Result<(), ChainBreak> {
    let Some(hash) = encoding::hash(e.hash_version, e.seq, &e.record, &e.prev_hash) else {
        let reason = format!(
            "hashed with encoding version {}, which this version of kizuna does not know (it knows 0 to {}): \
             written by newer software, or altered",
            e.hash_version,
            encoding::CURRENT
        );
        return Err(ChainBreak { seq: e.seq, reason });
    };
    if hash != e.hash {
        return Err(ChainBreak { seq: e.seq, reason: "content does not match its hash (altered)".into() });
    }
    Ok(())
}

/// The patient a room's data belongs to, if any: timelines and sub-rooms are patient data.
pub fn patient_of(view: &impl HubView, room: RoomId) -> ViewResult<Option<PatientId>> {
    Ok(match view.room(room)?.map(|r| r.kind) {
        Some(RoomKind::PatientTimeline { patient } | RoomKind::SubRoom { patient, .. }) => Some(patient),
        _ => None,
    })
}

impl AuditRecord {
    /// An entry of the hub itself (account 0, no session) written through `node`: federation
    /// traffic, a refused peer.
    pub fn by_hub(at_ms: u64, node: u64, what: String) -> Self {
        AuditRecord {
            at_ms,
            account: AccountId(0),
            session: String::new(),
            node,
            action: AuditAction::Write,
            patient: None,
            room: None,
            what,
            #[cfg(test)]
            added_later: None,
        }
    }
}

/// Whose patient data a room holds, for auditing reads: `Some(Some(patient))` for a local
/// patient's timeline or sub-room, `Some(None)` for this hub's copy of another hub's (the
/// patient lives there: the entry names the room), `None` for rooms without patient data.
pub fn patient_data_in(view: &impl HubView, room: RoomId) -> ViewResult<Option<Option<PatientId>>> {
    use crate::federation::wire::CopyKind;
    Ok(match view.room(room)?.map(|r| r.kind) {
        Some(RoomKind::PatientTimeline { patient } | RoomKind::SubRoom { patient, .. }) => Some(Some(patient)),
        Some(RoomKind::Mirror { of: CopyKind::PatientTimeline { .. } | CopyKind::SubRoom { .. }, .. }) => Some(None),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
