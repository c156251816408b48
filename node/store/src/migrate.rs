//! Upgrades a data directory to the current value format when it is opened.
//!
//! The format a data dir is in is the raw byte under `node_meta`/`format` ([`keys::FORMAT`]; in
//! `raft_meta` in a dir written before the log had a RocksDB of its own: `log_db.rs`).
//! Without it, the dir was written before [`codec`] existed: every value of every column family
//! is JSON (and the snapshot file beside it, which the node replaces by a checkpoint of the
//! migrated state once opened: see [`crate::checkpoint`]). One pass then rewrites each value in the current
//! format, in write batches, typed by the column family and key (postcard is positional: the
//! bytes can only be produced from the Rust type), and the marker is written last, synced. A
//! pass cut short resumes: a value that already starts with the current version byte is skipped
//! (no JSON text starts with the byte 0x01). A value that is not what its key promises stops the
//! node from opening, naming the column family and key: nothing is dropped or kept as JSON.

use rocksdb::{DB, IteratorMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CURRENT};
use crate::keys::{self, APPLIED, COMMITTED, FORMAT, MEMBERSHIP, PURGED, VOTE};
use crate::raft::{Entry, LogId, StoredMembership, Vote};
use crate::{CF_AUDIT_JOURNAL, CF_RAFT_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META, cf, io_err};
use kizuna_domain::audit::{AuditEntry, AuditRecord};
use kizuna_domain::events::Event;
use kizuna_domain::model::*;
use kizuna_domain::requests::CareRequest;
use kizuna_domain::{Applied, Record};

/// Every column family a value of which the pass rewrites (all there were in a JSON-valued
/// data dir: `sm_search` and `sm_idempotency` came later, and an old dir's tables are moved
/// into them after this pass).
const FAMILIES: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META, CF_AUDIT_JOURNAL];

/// Values rewritten per write batch: bounds the memory of one batch on a large hub.
const BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the data dir is in value format {0}; this build reads format {CURRENT} (and JSON, to migrate)")]
    Format(u8),
    #[error("cannot migrate {family} key {key} from JSON: {cause}")]
    Value { family: &'static str, key: String, cause: String },
    #[error("migration: {0}")]
    Io(#[from] std::io::Error),
}

/// Something done with the Rust type of the values at one key (see [`value_type`]).
pub(crate) trait ForType {
    type Out;
    fn with<T: DeserializeOwned + Serialize>(self) -> Self::Out;
}

/// What one pass did, for the log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Values rewritten, per column family (in [`FAMILIES`] order).
    pub values: [u64; 5],
    /// Values already in the current format (a resumed pass).
    pub already: u64,
}

/// Brings the data dir to the current format; a no-op once its marker says it is there.
pub fn run(db: &DB) -> Result<Option<Migrated>, MigrateError> {
    let node_meta = crate::log_db::node_meta_family(db);
    match db.get_cf(cf(db, node_meta), FORMAT).map_err(io_err)?.as_deref() {
        Some([CURRENT]) => return Ok(None),
        Some([other]) => return Err(MigrateError::Format(*other)),
        Some(_) => return Err(MigrateError::Format(0)),
        None => {}
    }
    let mut done = Migrated::default();
    for (i, family) in FAMILIES.into_iter().enumerate() {
        let (rewritten, already) = family_pass(db, family)?;
        done.values[i] = rewritten;
        done.already += already;
    }
    db.put_cf_opt(cf(db, node_meta), FORMAT, [CURRENT], &crate::synced_writes()).map_err(io_err)?;
    if done != Migrated::default() {
        let [log, meta, data, sm_meta, journal] = done.values;
        tracing::info!(
            "data dir migrated from JSON to value format {CURRENT}: {log} log entries, {meta} raft meta, \
             {data} state values, {sm_meta} state meta, {journal} journaled reads, \
             {} values were already converted",
            done.already
        );
    }
    Ok(Some(done))
}

/// Rewrites one column family: (values rewritten, values already current).
fn family_pass(db: &DB, family: &'static str) -> Result<(u64, u64), MigrateError> {
    // A data dir without it: `raft_log` and `raft_meta` are in the log's RocksDB from this
    // layout on, and a JSON-valued dir (which has them here) is migrated before they move
    // (`log_db.rs`).
    let Some(handle) = db.cf_handle(family) else {
        return Ok((0, 0));
    };
    let (mut rewritten, mut already) = (0, 0);
    let mut batch = WriteBatch::default();
    for item in db.iterator_cf(handle, IteratorMode::Start) {
        let (k, v) = item.map_err(io_err)?;
        if codec::is_current(&v) {
            already += 1;
            continue;
        }
        match convert(family, &k, &v)? {
            Some(value) => batch.put_cf(handle, &k, value),
            None => batch.delete_cf(handle, &k),
        }
        rewritten += 1;
        if batch.len() >= BATCH {
            db.write(std::mem::take(&mut batch)).map_err(io_err)?;
        }
    }
    db.write(batch).map_err(io_err)?;
    Ok((rewritten, already))
}

/// One JSON value of `family` at `key` in the current format; `None`: it meant "absent".
fn convert(family: &'static str, key: &[u8], json: &[u8]) -> Result<Option<Vec<u8>>, MigrateError> {
    let fail = |cause: String| MigrateError::Value { family, key: codec::key_in(family, key), cause };
    if family == CF_SM_META && key == APPLIED {
        return applied(json).map_err(fail);
    }
    if family == CF_SM_DATA && key.first() == Some(&keys::IDEMPOTENCY.prefix) {
        return remembered_result(json).map(Some).map_err(fail);
    }
    let converted = value_type(family, key, FromJson(json)).ok_or_else(|| fail("no value is expected here".into()))?;
    converted.map(Some).map_err(fail)
}

/// Decodes JSON as the type, encodes it in the current format.
struct FromJson<'a>(&'a [u8]);

impl ForType for FromJson<'_> {
    type Out = Result<Vec<u8>, String>;
    fn with<T: DeserializeOwned + Serialize>(self) -> Self::Out {
        let value: T = serde_json::from_slice(self.0).map_err(|e| e.to_string())?;
        codec::encode(&value).map_err(|e| e.to_string())
    }
}

/// `applied` was also written as JSON `null` (a snapshot installed without a log id): absent.
fn applied(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let value: Option<LogId> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    value.map(|id| codec::encode(&id).map_err(|e| e.to_string())).transpose()
}

/// `q`: a result remembered as JSON, refusals included in the shape they had before the domain's
/// one refusal type, `{"Refused":{"code":"NotFound","message":"room not found"}}`; now the
/// refusal is the domain's error itself, which says the same (`NotFound("room")`).
fn remembered_result(json: &[u8]) -> Result<Vec<u8>, String> {
    let mut value: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if let Some(refused) = value.pointer_mut("/result/Refused")
        && let Some(now) = legacy_refusal(refused)
    {
        *refused = now;
    }
    let applied: Applied = serde_json::from_value(value).map_err(|e| e.to_string())?;
    codec::encode(&applied).map_err(|e| e.to_string())
}

/// The domain error (as JSON) that an old `{code, message}` refusal stood for; `None` if it is
/// not of that shape. The message was the error's text: `NotFound`'s ends in " not found".
fn legacy_refusal(old: &serde_json::Value) -> Option<serde_json::Value> {
    let code = old.get("code")?.as_str()?;
    let message = old.get("message")?.as_str()?;
    Some(match code {
        "Unauthenticated" => serde_json::json!("Unauthenticated"),
        "NotFound" => serde_json::json!({ "NotFound": message.strip_suffix(" not found").unwrap_or(message) }),
        // InvalidArgument, PermissionDenied, FailedPrecondition carry their message as is.
        other => serde_json::json!({ other: message }),
    })
}

/// Runs `op` with the type of the values at `key` of `family`; `None` for a key that holds none.
pub(crate) fn value_type<F: ForType>(family: &str, key: &[u8], op: F) -> Option<F::Out> {
    match family {
        CF_RAFT_LOG => Some(op.with::<Entry>()),
        CF_RAFT_META => match key {
            VOTE => Some(op.with::<Vote>()),
            COMMITTED => Some(op.with::<Option<LogId>>()),
            PURGED => Some(op.with::<LogId>()),
            _ => None,
        },
        CF_SM_DATA => state_type(key, op),
        CF_SM_META => match key {
            APPLIED => Some(op.with::<LogId>()),
            MEMBERSHIP => Some(op.with::<StoredMembership>()),
            _ => None,
        },
        CF_AUDIT_JOURNAL => Some(op.with::<AuditRecord>()),
        _ => None,
    }
}

/// The type of each `sm_data` table's values (the table list is in `keys.rs`).
fn state_type<F: ForType>(key: &[u8], op: F) -> Option<F::Out> {
    if key == keys::CLOCK {
        return Some(op.with::<u64>());
    }
    Some(match keys::table_of(key)?.prefix {
        b'A' => op.with::<Account>(),
        b'L' => op.with::<AccountId>(),
        b'F' => op.with::<Facility>(),
        b'I' => op.with::<Invitation>(),
        b'P' => op.with::<Patient>(),
        b'R' => op.with::<Room>(),
        b'M' => op.with::<Member>(),
        b'T' => op.with::<Post>(),
        b'C' => op.with::<Connection>(),
        b'S' => op.with::<Session>(),
        b'H' => op.with::<HubSettings>(),
        b'Y' => op.with::<CareRequest>(),
        b'E' => op.with::<Event>(),
        b'Z' => op.with::<AuditEntry>(),
        b'z' => op.with::<(u64, String)>(),
        b'r' => op.with::<Record>(),
        b'q' => op.with::<Applied>(),
        b'O' => op.with::<bool>(),
        b'J' => op.with::<kizuna_domain::federation::Inbound>(),
        b'K' => op.with::<kizuna_domain::federation::InboxMessage>(),
        b'B' => op.with::<kizuna_domain::federation::Outbound>(),
        b'D' => op.with::<kizuna_domain::federation::OutboxMessage>(),
        b'Q' => op.with::<RoomId>(),
        b'p' => op.with::<kizuna_domain::federation::PendingWrite>(),
        b'h' => op.with::<u64>(),
        b'f' => op.with::<bool>(),
        b'd' => op.with::<kizuna_domain::federation::HubName>(),
        b'o' => op.with::<RemoteFacility>(),
        b'l' => op.with::<RequestLink>(),
        b'n' => op.with::<kizuna_domain::notify::NotificationSettings>(),
        b'e' => op.with::<kizuna_domain::notify::Notice>(),
        // Attachments came after the JSON format: their tables never hold JSON, but each is
        // named so that a value of every table can be read.
        b'b' => op.with::<kizuna_domain::attachments::Blob>(),
        b'k' => op.with::<serde_bytes::ByteBuf>(),
        b'a' => op.with::<kizuna_domain::attachments::Attachment>(),
        b't' => op.with::<Vec<AttachmentId>>(),
        b's' => op.with::<u64>(),
        b'v' | b'x' => op.with::<kizuna_domain::attachments::Fetch>(),
        b'i' => op.with::<kizuna_domain::push::PushSubscription>(),
        b'j' => op.with::<kizuna_domain::notify::Notice>(),
        b'0' => op.with::<kizuna_domain::login_guard::LoginGuard>(),
        b'1' => op.with::<kizuna_domain::second_factor_policy::SecondFactorPolicy>(),
        b'2' => op.with::<kizuna_domain::emergency::Designation>(),
        b'3' => op.with::<kizuna_domain::emergency::EmergencyAccess>(),
        b'4' => op.with::<kizuna_domain::password_policy::PasswordPolicy>(),
        b'6' => op.with::<kizuna_domain::disaster::Disaster>(),
        b'7' => op.with::<kizuna_domain::disaster::DisasterPolicy>(),
        b'8' => op.with::<kizuna_domain::disaster::CareProfile>(),
        b'9' | b':' => op.with::<kizuna_domain::disaster::Observation>(),
        b';' => op.with::<kizuna_domain::disaster::Fate>(),
        // An account's index of memberships: empty entries, and from apply version 8 entries
        // carrying the membership (a JSON-valued dir is far older: its entries are empty).
        b'U' => op.with::<()>(),
        // Index tables: the key is the entry, the value is empty.
        b'N' | b'V' | b'G' | b'W' | b'X' | b'c' | b'g' | b'u' | b'w' | b'y' | b'5' => op.with::<()>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
