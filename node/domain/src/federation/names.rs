//! Names a hub is known by in a federation: its hub name and the ids of its signing keys.

use serde::{Deserialize, Serialize};

/// Longest hub name, in bytes. Short: it is part of every remote login (`login@hub`).
pub const MAX_HUB_NAME_BYTES: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 64;

/// A hub's name, e.g. `tochigi`: lower-case ASCII letters, digits and `-`, starting with a
/// letter, not ending with `-`. Restricted so that it is the same in logins, file names, logs
/// and signed bytes, with no case or Unicode look-alikes between two hubs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HubName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubNameError {
    #[error("a hub name must be 1..={MAX_HUB_NAME_BYTES} bytes")]
    Length,
    #[error("a hub name starts with a lower-case letter a-z")]
    Start,
    #[error("a hub name has only lower-case letters a-z, digits and '-', and does not end with '-'")]
    Character,
}

impl HubName {
    pub fn new(name: impl Into<String>) -> Result<Self, HubNameError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_HUB_NAME_BYTES {
            return Err(HubNameError::Length);
        }
        if !name.as_bytes()[0].is_ascii_lowercase() {
            return Err(HubNameError::Start);
        }
        let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        if !name.bytes().all(|b| allowed(&b)) || name.ends_with('-') {
            return Err(HubNameError::Character);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HubName {
    type Error = HubNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<HubName> for String {
    fn from(n: HubName) -> Self {
        n.0
    }
}

impl std::fmt::Display for HubName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one of a hub's signing keys, e.g. `tochigi-2026`. A hub rotates keys by signing
/// with a new id while peers still verify the old one until it expires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HubKeyId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 1..={MAX_KEY_ID_BYTES} bytes of ASCII letters, digits, '-', '_' and '.'")]
pub struct HubKeyIdError;

impl HubKeyId {
    pub fn new(id: impl Into<String>) -> Result<Self, HubKeyIdError> {
        let id = id.into();
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if id.is_empty() || id.len() > MAX_KEY_ID_BYTES || !id.bytes().all(allowed) {
            return Err(HubKeyIdError);
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HubKeyId {
    type Error = HubKeyIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<HubKeyId> for String {
    fn from(k: HubKeyId) -> Self {
        k.0
    }
}

impl std::fmt::Display for HubKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_hub_names() {
        for n in ["tochigi", "gunma", "a", "kanto-2", "x1-y2"] {
            assert_eq!(HubName::new(n).map(|h| h.to_string()), Ok(n.to_owned()), "{n}");
        }
        assert!(HubName::new("a".repeat(MAX_HUB_NAME_BYTES)).is_ok());
    }

    #[test]
    fn bad_hub_names_say_why() {
        assert_eq!(HubName::new(""), Err(HubNameError::Length));
        assert_eq!(HubName::new("a".repeat(MAX_HUB_NAME_BYTES + 1)), Err(HubNameError::Length));
        for n in ["Tochigi", "1hub", "-hub"] {
            assert_eq!(HubName::new(n), Err(HubNameError::Start), "{n}");
        }
        for n in ["toCHIGI", "to chigi", "to_chigi", "tochigi-", "tochigi.jp", "栃木x", "tochigı"] {
            assert!(HubName::new(n).is_err(), "{n}");
        }
    }

    #[test]
    fn hub_names_deserialize_only_when_valid() {
        let ok: HubName = serde_json::from_str("\"gunma\"").unwrap();
        assert_eq!(ok.as_str(), "gunma");
        assert!(serde_json::from_str::<HubName>("\"Gunma\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"gunma\"");
    }

    #[test]
    fn key_ids() {
        for k in ["tochigi-2026", "k1", "gunma_2025.02"] {
            assert!(HubKeyId::new(k).is_ok(), "{k}");
        }
        for k in ["", "a b", "k/1", "鍵"] {
            assert_eq!(HubKeyId::new(k), Err(HubKeyIdError), "{k}");
        }
        assert!(HubKeyId::new("k".repeat(MAX_KEY_ID_BYTES + 1)).is_err());
        assert!(serde_json::from_str::<HubKeyId>("\"a b\"").is_err());
    }
}
