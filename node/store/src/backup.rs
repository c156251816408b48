//! Backup images of a hub's state, and a node of a new hub built from one (the worst day:
//! every region lost).
//!
//! An image is a snapshot file of this store's format (its meta, every pair of the state, a
//! trailer), the bytes peers install: every table, attached files included. Its digest is
//! computed over the pairs exactly as [`StateReader::state_digest`] hashes a live store, so a
//! node restored from an image proves it holds what was backed up. Encryption and keeping
//! generations are the caller's (the `kizuna admin backup` command).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::snapshot::{self, PairDigest};
use super::state_machine::{StateDigest, StateReader};
use crate::raft::{HubNode, LogId, NodeId, SnapshotMeta, StoredMembership, Vote};

/// What an image holds: the log position and term it reflects, and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub term: u64,
    pub digest: StateDigest,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} already holds a node's data: restore only into an empty data directory")]
    NotEmpty(std::path::PathBuf),
    #[error("the image holds no applied state")]
    EmptyImage,
    #[error("the new hub's membership: {0}")]
    Membership(String),
    #[error(transparent)]
    Store(#[from] super::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl StateReader {
    /// Writes a consistent image of the state to `path` (from one RocksDB snapshot: apply goes
    /// on meanwhile) and tells what it holds.
    pub fn write_image(&self, path: &Path) -> std::io::Result<ImageInfo> {
        let mut digest = PairDigest::default();
        let meta = snapshot::write_consistent(&self.db, &self.whole_view(), path, |k, v| digest.add(k, v))?;
        let digest = digest.finish(meta.last_log_id.as_ref());
        Ok(ImageInfo { term: term_of(meta.last_log_id.as_ref()), digest })
    }
}

/// Reads a whole image, checking its layout, and tells what it holds.
pub fn read_image(path: &Path) -> std::io::Result<ImageInfo> {
    let (meta, digest) = snapshot::digest_of(path)?;
    Ok(ImageInfo { term: term_of(meta.last_log_id.as_ref()), digest })
}

fn term_of(log_id: Option<&LogId>) -> u64 {
    log_id.map_or(0, |l| l.leader_id.term)
}

/// Builds node `me` of a new hub in the empty `data_dir` from the image at `image`: the state
/// as backed up, the hub's membership replaced by `members` (node → where it lives, whether it
/// votes), the log starting right after the image. The node then starts as usual and the hub
/// elects a leader among the restored voters. The image's values stay sealed as they were:
/// the node, when it starts, needs the master key its data keys are wrapped under. Returns the restored state's digest, read back
/// from the store.
pub fn restore_node(
    data_dir: &Path,
    image: &Path,
    me: NodeId,
    members: &BTreeMap<NodeId, (HubNode, bool)>,
) -> Result<StateDigest, RestoreError> {
    for dir in [data_dir.join("db"), data_dir.join("log")] {
        if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
            return Err(RestoreError::NotEmpty(data_dir.to_owned()));
        }
    }
    let meta = snapshot::read_meta(image)?;
    let last = meta.last_log_id.ok_or(RestoreError::EmptyImage)?;
    let voters: BTreeSet<NodeId> = members.iter().filter(|(_, (_, voter))| *voter).map(|(id, _)| *id).collect();
    let nodes: BTreeMap<NodeId, HubNode> = members.iter().map(|(id, (node, _))| (*id, node.clone())).collect();
    let membership =
        openraft::Membership::new(vec![voters], nodes).map_err(|e| RestoreError::Membership(e.to_string()))?;
    let meta = SnapshotMeta { last_log_id: Some(last), last_membership: StoredMembership::new(Some(last), membership) };
    // Opened without master keys: the image's values are copied as they are, never opened, so
    // a backup host can verify an image without holding the hub's keys.
    let (log, state) = super::open(data_dir, super::MasterKeys::none())?;
    let snapshot_dir = data_dir.join("snapshots");
    let staged = snapshot_dir.join("restoring.snap");
    snapshot::rewrite_meta(image, &staged, &meta)?;
    let reader = state.reader();
    let db = reader.db.clone();
    super::install::install(&db, &staged, &meta, &snapshot_dir)?;
    reader.take_checkpoint()?;
    // The log begins after the image: everything up to it is purged and committed. The node
    // voted for itself in the image's term, so its first election runs in a later one.
    log.start_after(last, &Vote::new(last.leader_id.term, me))?;
    Ok(state.reader().state_digest()?)
}
