//! A storage failure met while the hub's tables were read or written for the domain.

use std::fmt::Display;

/// The first read, scan, decode or encode failure a [`crate::RocksHub`] met. The view answers
/// every later read with an error naming this fault; apply writes nothing of a batch that met
/// one, and a query that met one answers INTERNAL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageFault {
    #[error("cannot read state key {key}: {cause}")]
    Read { key: String, cause: String },
    #[error("cannot scan the state from key {key}: {cause}")]
    Scan { key: String, cause: String },
    #[error("cannot decode state key {key}: {cause}")]
    Decode { key: String, cause: String },
    #[error("cannot encode the value for state key {key}: {cause}")]
    Encode { key: String, cause: String },
}

impl StorageFault {
    pub(crate) fn read(key: &[u8], cause: impl Display) -> Self {
        Self::Read { key: key_name(key), cause: cause.to_string() }
    }

    pub(crate) fn scan(key: &[u8], cause: impl Display) -> Self {
        Self::Scan { key: key_name(key), cause: cause.to_string() }
    }

    pub(crate) fn decode(key: &[u8], cause: impl Display) -> Self {
        Self::Decode { key: key_name(key), cause: cause.to_string() }
    }

    pub(crate) fn encode(key: &[u8], cause: impl Display) -> Self {
        Self::Encode { key: key_name(key), cause: cause.to_string() }
    }
}

/// A key as an operator can find it again: the table prefix, the rest in hex, and the table's
/// name (from the table list in `keys.rs`).
pub(crate) fn key_name(key: &[u8]) -> String {
    match key.split_first() {
        None => "(empty)".to_owned(),
        Some((&prefix, rest)) => {
            let name = crate::keys::table_of(key).map_or("unknown table", |t| t.name);
            format!("{}/{} ({name})", prefix as char, kizuna_domain::hex(rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_names_the_table_and_the_key() {
        let fault =
            StorageFault::decode(&crate::keys::id(crate::keys::FACILITIES, 7), "expected value at line 1 column 1");
        assert_eq!(
            fault.to_string(),
            "cannot decode state key F/0000000000000007 (facilities): expected value at line 1 column 1"
        );
    }
}
