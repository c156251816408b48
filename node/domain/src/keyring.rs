//! The hub's data keys as the log carries them and the state keeps them.
//!
//! Every value of the replicated state is sealed (AEAD) under a *data key* before it is stored
//! (`store/vault`). Data keys are random, and only ever stored *wrapped*: sealed under a master
//! key that lives outside every data directory (a 0400 file or a systemd credential on each
//! node). So the log, the snapshots, the backups and every replica hold ciphertext, and rotating
//! the master key rewraps a few dozen bytes per data key instead of re-encrypting the hub.
//!
//! The keyring only grows: a new data key gets the next id and seals every later write; the
//! older ones stay to open what they sealed. A keyring change replaces the whole list at once
//! (new wrappings of the same keys, and at most one key more), so a master key rotation and a
//! data key rotation are one command ([`crate::LogCommand::SetDataKeys`]).

use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult};

/// The apply version from which the replicated state is sealed (see [`crate::APPLY_VERSION`]):
/// a build before it cannot open sealed values, so the hub takes its first data key only once
/// every member applies this version.
pub const SEALED_STATE_APPLY_VERSION: u32 = 4;

/// A data key sealed under a master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// 1, 2, … in the order the hub took them; the newest seals new writes.
    pub id: u32,
    /// The fingerprint of the master key that wrapped it (so an operator knows which file a
    /// node lacks).
    pub master: String,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// The most data keys a hub holds (a rotation a day for years); a longer list is refused.
pub const MAX_DATA_KEYS: usize = 4096;

/// Whether `next` may replace `current`: the same keys in the same order (rewrapped or not),
/// plus at most one new key with the next id. Deterministic: every replica decides the same.
/// That each rewrapped key still opens to the same secret is checked where the master keys are
/// (the store), since only a node holding them can tell.
pub fn check_successor(current: &[WrappedKey], next: &[WrappedKey]) -> DomainResult<()> {
    let refuse = |why: &str| Err(DomainError::InvalidArgument(format!("データ鍵の更新を受け付けません: {why}")));
    if next.is_empty() || next.len() > MAX_DATA_KEYS {
        return refuse("鍵の数が不正です");
    }
    if next.len() < current.len() || next.len() > current.len() + 1 {
        return refuse("既存の鍵は残し、追加は一つまでです");
    }
    for (position, key) in next.iter().enumerate() {
        if usize::try_from(key.id).ok() != Some(position + 1) {
            return refuse("鍵の番号が 1 から連続していません");
        }
        if key.master.is_empty() || key.master.len() > 64 || key.nonce.len() > 64 || key.sealed.len() > 256 {
            return refuse("鍵の形式が不正です");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, master: &str) -> WrappedKey {
        WrappedKey { id, master: master.into(), nonce: vec![0; 12], sealed: vec![1; 48] }
    }

    #[test]
    fn the_keyring_only_grows_by_one_key_with_the_next_id() {
        assert!(check_successor(&[], &[key(1, "a")]).is_ok(), "the first key");
        assert!(check_successor(&[key(1, "a")], &[key(1, "b")]).is_ok(), "rewrapped under a new master");
        assert!(check_successor(&[key(1, "a")], &[key(1, "b"), key(2, "b")]).is_ok(), "rotated");
        assert!(check_successor(&[], &[]).is_err(), "empty");
        assert!(check_successor(&[key(1, "a"), key(2, "a")], &[key(1, "a")]).is_err(), "a key dropped");
        assert!(check_successor(&[], &[key(1, "a"), key(2, "a")]).is_err(), "two new keys");
        assert!(check_successor(&[], &[key(2, "a")]).is_err(), "a gap in the ids");
        assert!(check_successor(&[key(1, "a")], &[key(1, "a"), key(3, "a")]).is_err(), "not the next id");
        assert!(check_successor(&[], &[key(1, "")]).is_err(), "no master named");
    }
}
