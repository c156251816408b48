//! The one value format of the node: every value at rest (state tables, remembered idempotency-key
//! results, the Raft log and its metadata, snapshots, the audit journal) and every Raft payload
//! and forwarded write between the nodes of a hub.
//!
//! A value is one format-version byte, then the value in postcard (a compact, positional serde
//! format with varint integers and a documented, stable wire format). Positional means that the
//! bytes carry no field names: a stored type that changes shape (a field added, removed or
//! reordered, an enum variant inserted before others) is a new [`CURRENT`] version, with a
//! conversion of the older values in [`crate::migrate`]. Appending an enum variant is not.
//!
//! A value at rest may also be *sealed* ([`SEALED`], see `vault/`): the version byte 2, the
//! number of the key that sealed it (u32 big-endian), then nonce, ciphertext and tag of the
//! plain value above. The vault seals and opens; this module only frames.
//!
//! Decoding never guesses: a value that is empty, of another version, malformed or followed by
//! stray bytes is an error, which callers report with the column family and key it came from.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The version this build writes and reads.
pub const CURRENT: u8 = 1;

/// The version byte of a sealed value.
pub const SEALED: u8 = 2;

/// Why bytes are not a value of the expected type, or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty value (no format version byte)")]
    Empty,
    #[error("format version {0}, but this build reads version {CURRENT} only")]
    UnknownVersion(u8),
    #[error("malformed version-{CURRENT} value: {0}")]
    Malformed(postcard::Error),
    #[error("{0} stray bytes after the value")]
    Trailing(usize),
    #[error("cannot encode: {0}")]
    Encode(postcard::Error),
    #[error("sealed under key {0}, which this node does not hold")]
    NoKey(u32),
    #[error("sealed value: {0}")]
    Sealed(#[from] crate::vault::cipher::CipherError),
}

/// A sealed value: the version byte, the key's number, the sealed bytes.
pub(crate) fn envelope(key_id: u32, sealed: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + sealed.len());
    out.push(SEALED);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend(sealed);
    out
}

/// The key number and sealed bytes of a sealed value; None for any other value (which
/// [`decode`] then reads or refuses).
pub(crate) fn sealed_parts(bytes: &[u8]) -> Result<Option<(u32, &[u8])>, CodecError> {
    match bytes.split_first() {
        Some((&SEALED, rest)) => {
            let (id, sealed) = rest.split_at_checked(4).ok_or(crate::vault::cipher::CipherError::Truncated)?;
            let id = u32::from_be_bytes(id.try_into().map_err(|_| crate::vault::cipher::CipherError::Truncated)?);
            Ok(Some((id, sealed)))
        }
        _ => Ok(None),
    }
}

/// The version byte followed by the value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_extend(value, vec![CURRENT]).map_err(CodecError::Encode)
}

/// The value in `bytes`, which must be exactly one value of the current version.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let body = body_of(bytes)?;
    let (value, rest) = postcard::take_from_bytes(body).map_err(CodecError::Malformed)?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(value)
}

/// Whether stored bytes are a value of this format, plain or sealed, without opening them (a
/// snapshot's check before install: its keys may be new to this node until it is installed).
pub(crate) fn check_stored(bytes: &[u8]) -> Result<(), CodecError> {
    match sealed_parts(bytes)? {
        Some(_) => Ok(()),
        None => body_of(bytes).map(|_| ()),
    }
}

/// What follows the version byte, once that is the current version.
pub(crate) fn body_of(bytes: &[u8]) -> Result<&[u8], CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&CURRENT, body)) => Ok(body),
        Some((&version, _)) => Err(CodecError::UnknownVersion(version)),
    }
}

/// Whether `bytes` already start as a value of this format, plain or sealed (the migration's
/// resume test: no JSON text starts with the byte 0x01 or 0x02).
pub(crate) fn is_current(bytes: &[u8]) -> bool {
    body_of(bytes).is_ok() || bytes.first() == Some(&SEALED)
}

/// A value of a column family that did not encode or decode, named so an operator can find it.
#[derive(Debug, thiserror::Error)]
#[error("{family} key {key}: {source}")]
pub struct ValueError {
    pub family: &'static str,
    pub key: String,
    #[source]
    pub source: CodecError,
}

impl ValueError {
    pub(crate) fn new(family: &'static str, key: &[u8], source: CodecError) -> Self {
        Self { family, key: key_in(family, key), source }
    }
}

/// A key of a column family as an operator can find it again: a state key with its table, a
/// log index or journal seq as its number, a metadata key as its name.
pub(crate) fn key_in(family: &str, key: &[u8]) -> String {
    match family {
        crate::CF_SM_DATA | crate::CF_SM_SEARCH | crate::CF_SM_IDEMPOTENCY => crate::fault::key_name(key),
        crate::CF_RAFT_LOG | crate::CF_AUDIT_JOURNAL | crate::CF_DISASTER_JOURNAL => {
            crate::keys::number(key).map_or_else(|_| kizuna_domain::hex(key), |n| n.to_string())
        }
        _ => String::from_utf8(key.to_vec()).unwrap_or_else(|_| kizuna_domain::hex(key)),
    }
}

impl From<ValueError> for std::io::Error {
    fn from(e: ValueError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// The value stored at `key` of `family` decoded.
pub(crate) fn decode_at<T: DeserializeOwned>(family: &'static str, key: &[u8], bytes: &[u8]) -> std::io::Result<T> {
    decode(bytes).map_err(|e| ValueError::new(family, key, e).into())
}

#[cfg(test)]
mod tests;
