//! The lines of `kizuna admin audit --export`, and their verification offline
//! (`--verify-export`): a line holds everything its entry's hash covers (docs/security.md, "The
//! audit chain"), so an export can be checked away from the hub, by this or any other tool.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use kizuna_domain::collab::audit::{self, AuditAction, AuditEntry, AuditRecord};
use kizuna_domain::collab::model::{AccountId, PatientId, RoomId};
use kizuna_proto::audit::AuditEntry as PbEntry;
use serde::Deserialize;

/// One exported entry. `at` and `at_unix` are for people; `at_ms` is what the hash covers.
pub fn line(e: &PbEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq, "at": super::user::time(&e.at), "at_unix": e.at.as_ref().map_or(0, |t| t.seconds),
        "at_ms": at_ms(&e.at), "account": e.account_id, "session": e.session, "node": e.node_id,
        "action": super::labels::audit_action(e.action), "patient": e.patient_id.unwrap_or(0),
        "room": e.room_id.unwrap_or(0), "what": e.what,
        "prev_hash": e.prev_hash, "hash_version": e.hash_version, "hash": e.hash,
    })
}

fn at_ms(at: &Option<prost_types::Timestamp>) -> u64 {
    at.as_ref().map_or(0, |t| {
        let ms = t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos / 1_000_000));
        u64::try_from(ms).unwrap_or(0)
    })
}

/// An exported line read back: the fields its hash covers.
#[derive(Deserialize)]
struct Line {
    seq: u64,
    at_ms: u64,
    account: u64,
    session: String,
    node: u64,
    action: String,
    patient: u64,
    room: u64,
    what: String,
    prev_hash: String,
    hash_version: u8,
    hash: String,
}

impl Line {
    fn entry(self) -> anyhow::Result<AuditEntry> {
        let action = match self.action.as_str() {
            "read" => AuditAction::Read,
            "write" => AuditAction::Write,
            other => bail!("unknown action {other:?}"),
        };
        // 0 is "none" in the API and the export (ids are Raft log indexes of user commands, never 0).
        let id = |n: u64| (n != 0).then_some(n);
        let record = AuditRecord {
            at_ms: self.at_ms,
            account: AccountId(self.account),
            session: self.session,
            node: self.node,
            action,
            patient: id(self.patient).map(PatientId),
            room: id(self.room).map(RoomId),
            what: self.what,
        };
        let (seq, prev_hash, hash_version, hash) = (self.seq, self.prev_hash, self.hash_version, self.hash);
        Ok(AuditEntry { seq, record, prev_hash, hash_version, hash })
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<AuditEntry>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut entries = Vec::new();
    for (i, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.with_context(|| format!("reading {}", path.display()))?;
        let line: Line = serde_json::from_str(&text)
            .with_context(|| format!("line {}: not an audit export line with at_ms and hash_version", i + 1))?;
        entries.push(line.entry().with_context(|| format!("line {}", i + 1))?);
    }
    Ok(entries)
}

/// Verifies a whole exported chain (an export without --account or --patient); returns how
/// many entries verified. A filtered export is not a chain: its gaps read as missing entries.
pub fn verify_file(path: &Path) -> anyhow::Result<u64> {
    let entries = read(path)?;
    if entries.is_empty() {
        bail!("{} holds no audit entries", path.display());
    }
    audit::verify(entries).map_err(|b| {
        anyhow::anyhow!(
            "audit export BROKEN at entry {}: {} ({} entries before it verified)",
            b.seq,
            b.reason,
            b.seq - 1
        )
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use kizuna_proto::audit::AuditAction as PbAction;

    /// A chain of entries hashed before versions existed, as `Z` holds it in old data directories.
    const V0_CHAIN: &str = include_str!("../../domain/src/collab/audit/v0_chain.json");

    /// The API's view of an entry, as the server's audit service builds it.
    fn to_pb(e: &AuditEntry) -> PbEntry {
        let r = &e.record;
        PbEntry {
            seq: e.seq,
            at: Some(prost_types::Timestamp {
                seconds: (r.at_ms / 1000) as i64,
                nanos: ((r.at_ms % 1000) * 1_000_000) as i32,
            }),
            account_id: r.account.0,
            session: r.session.clone(),
            node_id: r.node,
            action: if r.action == AuditAction::Read { PbAction::Read } else { PbAction::Write } as i32,
            patient_id: r.patient.map(|p| p.0),
            room_id: r.room.map(|p| p.0),
            what: r.what.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
            hash_version: e.hash_version.into(),
        }
    }

    /// The old chain followed by two entries in the current version.
    fn mixed_chain() -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = serde_json::from_str(V0_CHAIN).expect("fixture");
        for what in ["post", "timeline after 3"] {
            let last = entries.last().expect("not empty");
            let record = AuditRecord { what: what.into(), ..last.record.clone() };
            // Continued in the current version, as a hub that switched versions would.
            let head = audit::ChainHead { hash_version: audit::encoding::CURRENT, ..last.head() };
            entries.push(audit::next(Some(head), record));
        }
        entries
    }

    fn export(entries: &[AuditEntry], edit: impl Fn(&mut serde_json::Value)) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        for e in entries {
            let mut l = line(&to_pb(e));
            edit(&mut l);
            writeln!(file, "{l}").expect("write");
        }
        file
    }

    #[test]
    fn an_export_of_old_and_new_entries_verifies_offline() {
        let file = export(&mixed_chain(), |_| {});
        assert_eq!(verify_file(file.path()).expect("intact"), 6);
    }

    #[test]
    fn an_altered_export_line_is_detected() {
        let file = export(&mixed_chain(), |l| {
            if l["seq"] == 5 {
                l["what"] = "nothing".into();
            }
        });
        let e = verify_file(file.path()).expect_err("altered").to_string();
        assert!(e.contains("entry 5") && e.contains("altered"), "{e}");
    }

    #[test]
    fn an_export_without_versions_is_refused() {
        let file = export(&mixed_chain(), |l| {
            l.as_object_mut().expect("an object").remove("hash_version");
        });
        let e = format!("{:#}", verify_file(file.path()).expect_err("no versions"));
        assert!(e.contains("line 1") && e.contains("hash_version"), "{e}");
    }
}
