//! Encryption at rest: what a node seals, and the keys it seals with.
//!
//! - **Replicated state** (`sm_data`): every value is sealed under the hub's newest *data key*
//!   as apply writes it, with its key as associated data, so a value copied to another record
//!   does not open. Sealing is deterministic ([`cipher`]): replicas, snapshots and backups
//!   hold the same bytes. The data keys are in the state itself (`m/key/…`), wrapped under a
//!   master key ([`kizuna_domain::keyring`]); the hub takes its first one once every member can
//!   seal, and the state written before it is sealed then, in bounded steps the leader proposes
//!   (`RocksHub::seal_step`, `LogCommand::SealStep`).
//! - **Node-local families** (the Raft log, the audit journal): sealed under the node's own key,
//!   made at its first start and kept wrapped in `raft_meta`. The log's entries carry every
//!   command (post texts, patient names), so they are sealed too.
//! - **Search terms** in keys become keyed hashes ([`Vault::search_term`]).
//!
//! A value written before sealing began (a data dir of an older build, a new hub's first
//! entries) stays readable as it is: the format byte tells a sealed value from a plain one.

pub mod cipher;
pub mod master;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use kizuna_domain::keyring::WrappedKey;
use rocksdb::{DB, IteratorMode};

use self::cipher::{CipherError, DataKey};
use self::master::MasterKeys;
use crate::codec::{self, CodecError};
use crate::keys::{self, NODE_KEY};
use crate::{CF_NODE_META, CF_SM_DATA, cf, get_value, io_err, to_value};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "a data key is wrapped under master key {fingerprint}, which this node does not hold (it holds: {held}); \
         add its file to [encryption] (master_key_file or previous_master_key_files)"
    )]
    MissingMaster { fingerprint: String, held: String },
    #[error("data key {0} unwraps to another secret than the one this node holds: refusing a replaced key")]
    Replaced(u32),
    #[error("this node has no master key ([encryption] master_key_file)")]
    NoMasterKey,
    #[error("{0}")]
    Cipher(#[from] CipherError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The keys of one node: its master keys, the hub's data keys, its own key.
#[derive(Debug)]
pub struct Vault {
    masters: MasterKeys,
    hub: RwLock<BTreeMap<u32, DataKey>>,
    node: Option<DataKey>,
}

/// Associated data of a hub data key's wrapping: which key of which kind it is.
fn hub_key_ad(id: u32) -> Vec<u8> {
    [b"kizuna hub data key ".as_slice(), &id.to_be_bytes()].concat()
}

const NODE_KEY_AD: &[u8] = b"kizuna node key";

/// A search term's key part once the hub has data keys: a byte no UTF-8 text starts with, then
/// the keyed hash, so a hashed term never meets a plain one (written before sealing began).
pub(crate) const HASHED_TERM: u8 = 0xff;

impl Vault {
    /// A vault without master keys: nothing is sealed (tests of plain storage, and nodes
    /// configured without `[encryption]`).
    pub fn plain() -> Self {
        Self { masters: MasterKeys::none(), hub: RwLock::default(), node: None }
    }

    /// The vault of the node whose database is `db`: its own key (made on the first start with
    /// a master key, rewrapped when the master key changed) and the hub's data keys.
    pub(crate) fn open(masters: MasterKeys, db: &DB) -> Result<Self, VaultError> {
        let node = node_key(&masters, db)?;
        let vault = Self { masters, hub: RwLock::default(), node };
        vault.reload_hub_keys(db)?;
        Ok(vault)
    }

    /// Whether this node can seal: it holds a master key.
    pub fn can_seal(&self) -> bool {
        self.masters.current().is_some()
    }

    /// The fingerprint of this node's current master key, if it has one.
    pub fn master_fingerprint(&self) -> Option<&str> {
        self.masters.current().map(|m| m.fingerprint())
    }

    /// How many data keys the hub has (0: its state is not sealed yet).
    pub fn hub_keys(&self) -> usize {
        self.hub.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Takes up the data keys stored in the state (at open, and after a snapshot replaced it).
    pub(crate) fn reload_hub_keys(&self, db: &DB) -> Result<(), VaultError> {
        let prefix = keys::DATA_KEYS;
        let mut stored = Vec::new();
        for item in db.iterator_cf(cf(db, CF_SM_DATA), IteratorMode::From(prefix, rocksdb::Direction::Forward)) {
            let (k, v) = item.map_err(io_err)?;
            if !k.starts_with(prefix) {
                break;
            }
            stored.push(codec::decode_at::<WrappedKey>(CF_SM_DATA, &k, &v)?);
        }
        let unwrapped = self.unwrap_all(&stored)?;
        *self.hub.write().unwrap_or_else(PoisonError::into_inner) = unwrapped;
        Ok(())
    }

    /// Takes up a new keyring applied from the log: every key must unwrap, and a key this node
    /// already holds must unwrap to the same secret.
    pub(crate) fn take_hub_keys(&self, keys: &[WrappedKey]) -> Result<(), VaultError> {
        let unwrapped = self.unwrap_all(keys)?;
        let mut held = self.hub.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, _)) = held.iter().find(|(id, k)| unwrapped.get(id).is_some_and(|n| n.secret() != k.secret())) {
            return Err(VaultError::Replaced(*id));
        }
        *held = unwrapped;
        Ok(())
    }

    fn unwrap_all(&self, keys: &[WrappedKey]) -> Result<BTreeMap<u32, DataKey>, VaultError> {
        keys.iter().map(|w| Ok((w.id, DataKey::from_secret(self.unwrap(w, &hub_key_ad(w.id))?)))).collect()
    }

    fn unwrap(&self, w: &WrappedKey, ad: &[u8]) -> Result<[u8; cipher::SECRET_LEN], VaultError> {
        let master = self.masters.by_fingerprint(&w.master).ok_or_else(|| VaultError::MissingMaster {
            fingerprint: w.master.clone(),
            held: self.masters.fingerprints().join(", "),
        })?;
        Ok(cipher::unwrap(master.key(), ad, &w.nonce, &w.sealed)?)
    }

    /// The hub's keyring as a [`kizuna_domain::LogCommand::SetDataKeys`] would set it: every key
    /// it holds rewrapped under the current master key, plus a new random key when `rotate`
    /// (or when the hub has none yet).
    pub fn next_keyring(&self, rotate: bool) -> Result<Vec<WrappedKey>, VaultError> {
        let master = self.masters.current().ok_or(VaultError::NoMasterKey)?;
        let held = self.hub.read().unwrap_or_else(PoisonError::into_inner);
        let wrap = |id: u32, secret: &[u8; cipher::SECRET_LEN]| -> Result<WrappedKey, VaultError> {
            let (nonce, sealed) = cipher::wrap(master.key(), &hub_key_ad(id), secret)?;
            Ok(WrappedKey { id, master: master.fingerprint().to_owned(), nonce, sealed })
        };
        let mut keys: Vec<WrappedKey> = held.iter().map(|(id, k)| wrap(*id, k.secret())).collect::<Result<_, _>>()?;
        if rotate || keys.is_empty() {
            let id = held.keys().next_back().map_or(1, |last| last + 1);
            keys.push(wrap(id, DataKey::generate()?.secret())?);
        }
        Ok(keys)
    }

    /// A replicated value as stored: sealed under the hub's newest data key, if it has one
    /// (the keyring itself is stored as it is: wrapped already). Public for tests that stand
    /// for an insider holding the master key (the audit chain must still catch their edits).
    pub fn seal_state(&self, key: &[u8], encoded: Vec<u8>) -> Vec<u8> {
        // An index entry's value is `()`, the version byte alone: nothing to hide, and sealing
        // it would add 33 bytes to each of the hundreds of entries a post has.
        if key.starts_with(keys::DATA_KEYS) || encoded.len() <= 1 {
            return encoded;
        }
        let held = self.hub.read().unwrap_or_else(PoisonError::into_inner);
        // Bound to `sm_data` whichever family stores the key (`state_families.rs`): the family
        // is storage layout, and values sealed before a table moved into its family still open.
        match held.iter().next_back() {
            None => encoded,
            Some((id, k)) => codec::envelope(*id, k.seal(&record_ad(CF_SM_DATA, key), &encoded)),
        }
    }

    /// A replicated value as written by [`Self::seal_state`], opened.
    pub fn open_state<'v>(&self, key: &[u8], stored: &'v [u8]) -> Result<Cow<'v, [u8]>, CodecError> {
        let Some((id, sealed)) = codec::sealed_parts(stored)? else { return Ok(Cow::Borrowed(stored)) };
        let held = self.hub.read().unwrap_or_else(PoisonError::into_inner);
        let k = held.get(&id).ok_or(CodecError::NoKey(id))?;
        Ok(Cow::Owned(k.open(&record_ad(CF_SM_DATA, key), sealed)?))
    }

    /// A value of a node-local family (the log, the journal) as stored: sealed under the node's
    /// key, if it has one.
    pub(crate) fn seal_local(&self, family: &str, key: &[u8], encoded: Vec<u8>) -> Vec<u8> {
        match &self.node {
            None => encoded,
            Some(k) => codec::envelope(0, k.seal(&record_ad(family, key), &encoded)),
        }
    }

    /// A node-local value as written by [`Self::seal_local`], opened.
    pub(crate) fn open_local<'v>(
        &self,
        family: &str,
        key: &[u8],
        stored: &'v [u8],
    ) -> Result<Cow<'v, [u8]>, CodecError> {
        let Some((_, sealed)) = codec::sealed_parts(stored)? else { return Ok(Cow::Borrowed(stored)) };
        let k = self.node.as_ref().ok_or(CodecError::NoKey(0))?;
        Ok(Cow::Owned(k.open(&record_ad(family, key), sealed)?))
    }

    /// What a failed sign-in is counted under: a keyed hash of the login or address (never the
    /// typed text in a key: people type passwords into the login field), under the hub's first
    /// data key, or a plain SHA-256 before the hub has one.
    pub(crate) fn guard_hash(&self, text: &str) -> [u8; 8] {
        let held = self.hub.read().unwrap_or_else(PoisonError::into_inner);
        let tagged = [b"sign-in guard\0".as_slice(), text.as_bytes()].concat();
        match held.values().next() {
            Some(first) => first.term(&tagged),
            None => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(&tagged);
                let mut out = [0; 8];
                out.copy_from_slice(&digest[..8]);
                out
            }
        }
    }

    /// A search term as the index keys it: a keyed hash under the hub's first data key once it
    /// has one (stable across rotations: the index is never rebuilt for a new key), else the
    /// term itself, as builds before sealing wrote it.
    pub(crate) fn search_term(&self, term: &str) -> Vec<u8> {
        let held = self.hub.read().unwrap_or_else(PoisonError::into_inner);
        match held.values().next() {
            None => term.as_bytes().to_vec(),
            Some(first) => [&[HASHED_TERM][..], &first.term(term.as_bytes())].concat(),
        }
    }
}

/// The associated data of a value: its family and key, so a value opens only where it was
/// written.
fn record_ad(family: &str, key: &[u8]) -> Vec<u8> {
    [family.as_bytes(), &[0], key].concat()
}

/// The node's own key: unwrapped from `raft_meta` (rewrapped there when its master key is a
/// previous one), or made now when the node has a master key and none yet.
fn node_key(masters: &MasterKeys, db: &DB) -> Result<Option<DataKey>, VaultError> {
    let stored: Option<WrappedKey> = get_value(db, CF_NODE_META, NODE_KEY)?;
    let Some(current) = masters.current() else {
        return match stored {
            None => Ok(None),
            Some(w) => Err(VaultError::MissingMaster { fingerprint: w.master, held: "none".into() }),
        };
    };
    let key = match &stored {
        Some(w) => {
            let master = masters.by_fingerprint(&w.master).ok_or_else(|| VaultError::MissingMaster {
                fingerprint: w.master.clone(),
                held: masters.fingerprints().join(", "),
            })?;
            DataKey::from_secret(cipher::unwrap(master.key(), NODE_KEY_AD, &w.nonce, &w.sealed)?)
        }
        None => DataKey::generate()?,
    };
    if stored.as_ref().is_none_or(|w| w.master != current.fingerprint()) {
        let (nonce, sealed) = cipher::wrap(current.key(), NODE_KEY_AD, key.secret())?;
        let wrapped = WrappedKey { id: 0, master: current.fingerprint().to_owned(), nonce, sealed };
        let mut synced = rocksdb::WriteOptions::default();
        synced.set_sync(true);
        db.put_cf_opt(cf(db, CF_NODE_META), NODE_KEY, to_value(&wrapped)?, &synced).map_err(io_err)?;
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests;
