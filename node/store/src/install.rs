//! Installing a snapshot from a peer without holding it in memory: a hub's state includes its
//! attached files, so a snapshot may be many GiB.
//!
//! The file is checked whole first (complete, every value of this format) and moved to
//! [`INSTALLING_SNAPSHOT`] in the snapshot directory, where nothing else removes it; then the
//! state machine is replaced in batches of at most [`BATCH_BYTES`]. Because the batches are not
//! one atomic write, a marker in `sm_meta` says an install is under way; the last batch writes
//! the snapshot's `applied` and membership and removes the marker, and the file is removed: the
//! caller checkpoints the installed state as the node's current snapshot
//! ([`crate::checkpoint`]). A node whose install failed or stopped half way finds the marker
//! when it opens and installs the same file again ([`resume`]) before anything reads the
//! state; a failed install while it runs leaves the marker and the file for the leader's next
//! attempt (or that restart).

use std::path::Path;

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::keys::{self, APPLIED, INSTALLING, MEMBERSHIP};
use super::snapshot;
use super::{CF_SM_DATA, CF_SM_META, cf, codec, get_value, io_err, to_value};
use crate::raft::SnapshotMeta;

/// The most bytes one write batch of an install holds.
const BATCH_BYTES: usize = 64 << 20;

/// The file of the snapshot being installed, in the snapshot directory.
pub(crate) const INSTALLING_SNAPSHOT: &str = "installing.snap";

/// Replaces the state machine with the snapshot in `file`, whose meta must be `expected`; the
/// file is moved through `snapshot_dir` and removed once installed.
pub(crate) fn install(db: &DB, file: &Path, expected: &SnapshotMeta, snapshot_dir: &Path) -> std::io::Result<()> {
    let meta = check(file)?;
    if meta.last_log_id != expected.last_log_id {
        return Err(io_err("snapshot file does not match its metadata"));
    }
    let installing = snapshot_dir.join(INSTALLING_SNAPSHOT);
    move_or_copy(file, &installing)?;
    let mut marker = WriteBatch::default();
    marker.put_cf(cf(db, CF_SM_META), INSTALLING, to_value(&true)?);
    db.write_opt(marker, &synced()).map_err(io_err)?;
    replace(db, &installing)?;
    std::fs::remove_file(&installing)
}

/// Whether an install is under way or failed half way (the state is not whole).
pub(crate) fn pending(db: &DB) -> std::io::Result<bool> {
    Ok(get_value::<bool>(db, CF_SM_META, INSTALLING)?.is_some())
}

/// Finishes an install that failed or stopped half way, if any: the node's state is then whole
/// again (the caller checkpoints it).
pub(crate) fn resume(db: &DB, snapshot_dir: &Path) -> std::io::Result<()> {
    if !pending(db)? {
        return Ok(());
    }
    let installing = snapshot_dir.join(INSTALLING_SNAPSHOT);
    if !installing.exists() {
        return Err(io_err(format!(
            "the state machine is half replaced by the snapshot {}, which is gone: restore this node from a backup or a peer",
            installing.display()
        )));
    }
    tracing::warn!(snapshot = %installing.display(), "finishing a snapshot install that failed or stopped half way");
    replace(db, &installing)?;
    std::fs::remove_file(&installing)
}

/// Moves a received file into place (a copy when it is on another file system).
fn move_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let tmp = to.with_extension("copy");
    std::fs::copy(from, &tmp)?;
    std::fs::rename(&tmp, to)
}

/// Reads the whole file once without writing: it must be complete and of this value format,
/// so the state is never half replaced by a file that cannot be finished.
fn check(path: &Path) -> std::io::Result<SnapshotMeta> {
    snapshot::read_pairs(path, |k, v| {
        codec::check_stored(&v).map_err(|e| codec::ValueError::new(CF_SM_DATA, &k, e))?;
        Ok(())
    })
}

/// Deletes the state machine's data and writes the file's pairs in bounded batches; the last
/// batch sets `applied` and the membership and clears the marker.
fn replace(db: &DB, path: &Path) -> std::io::Result<()> {
    let data = cf(db, CF_SM_DATA);
    let mut wb = WriteBatch::default();
    wb.delete_range_cf(data, keys::SM_DATA_START, keys::SM_DATA_END);
    let meta = snapshot::read_pairs(path, |k, v| {
        // A snapshot of a node built before the index still gives this node its own.
        for index in keys::pair_of_connection_key(&k).map(keys::connection_of).into_iter().flatten() {
            wb.put_cf(data, index, to_value(&())?);
        }
        wb.put_cf(data, k, v);
        if wb.size_in_bytes() >= BATCH_BYTES {
            db.write(std::mem::take(&mut wb)).map_err(io_err)?;
        }
        Ok(())
    })?;
    let sm_meta = cf(db, CF_SM_META);
    // `applied` holds a log id, never an empty one (as apply writes it).
    match &meta.last_log_id {
        Some(applied) => wb.put_cf(sm_meta, APPLIED, to_value(applied)?),
        None => wb.delete_cf(sm_meta, APPLIED),
    }
    wb.put_cf(sm_meta, MEMBERSHIP, to_value(&meta.last_membership)?);
    wb.delete_cf(sm_meta, INSTALLING);
    db.write_opt(wb, &synced()).map_err(io_err)
}

fn synced() -> WriteOptions {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    sync
}
