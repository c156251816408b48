//! Records: small replicated key → text values, the first write/read path of the hub. A
//! diagnostic space for operators (`kizuna put/get/load`); it holds no patient data.

use serde::{Deserialize, Serialize};

use crate::authz;
use crate::error::{DomainResult, invalid};
use crate::kernel::{Ctx, Effects, Outcome};
use crate::model::AccountId;
use crate::view::{Change, HubView, ViewResult};

/// The apply version from which a record write is a signed command ([`write`]): the operator
/// check moved from the node that takes the request to apply, so a write needs no read of the
/// current state before it is proposed. Before it, the unsigned `LogCommand::PutRecord`.
pub const SINCE_APPLY_VERSION: u32 = 7;

pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub value: String,
    /// 1 for the first write of a key, +1 for each later write.
    pub version: u64,
    /// Applied time of the last write, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("key must be 1..={MAX_KEY_BYTES} bytes without control characters")]
    Key,
    #[error("value must be at most {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge,
}

pub fn validate_key(key: &str) -> Result<(), RecordError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(RecordError::Key);
    }
    Ok(())
}

pub fn validate_put(key: &str, value: &str) -> Result<(), RecordError> {
    validate_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(RecordError::ValueTooLarge);
    }
    Ok(())
}

/// The record after a write: versions count writes of the key.
pub fn put(previous: Option<&Record>, value: String, at_ms: u64) -> Record {
    Record { value, version: previous.map_or(1, |r| r.version + 1), updated_at_ms: at_ms }
}

/// An operator writes `value` at `key`: the next version of the record.
pub fn write(view: &impl HubView, ctx: Ctx, actor: AccountId, key: String, value: String) -> DomainResult<Effects> {
    authz::operator(view, actor)?;
    validate_put(&key, &value).map_err(|e| invalid(e.to_string()))?;
    let (version, change) = next(view, ctx.now_ms, key, value)?;
    Ok(Effects::new(Outcome::RecordPut { version }, vec![change]))
}

/// The write of `value` at `key` at `now_ms`, checked already: its version and its change.
/// Also what a hub below [`SINCE_APPLY_VERSION`] applies, unsigned.
pub fn next(view: &impl HubView, now_ms: u64, key: String, value: String) -> ViewResult<(u64, Change)> {
    let record = put(view.record(&key)?.as_ref(), value, now_ms);
    Ok((record.version, Change::Record { key, record }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded() {
        assert_eq!(validate_key(""), Err(RecordError::Key));
        assert_eq!(validate_key(&"k".repeat(257)), Err(RecordError::Key));
        assert_eq!(validate_key("tab\there"), Err(RecordError::Key));
        assert_eq!(validate_key("患者/1"), Ok(()));
    }

    #[test]
    fn values_are_bounded() {
        assert_eq!(validate_put("k", &"v".repeat(MAX_VALUE_BYTES)), Ok(()));
        assert_eq!(validate_put("k", &"v".repeat(MAX_VALUE_BYTES + 1)), Err(RecordError::ValueTooLarge));
    }

    #[test]
    fn versions_count_writes() {
        let first = put(None, "a".into(), 5);
        assert_eq!(first.version, 1);
        let second = put(Some(&first), "b".into(), 6);
        assert_eq!((second.version, second.value.as_str()), (2, "b"));
    }
}
