//! A node's current snapshot as a RocksDB checkpoint: hard links to the sorted tables the state
//! is made of at one moment, not a copy of it.
//!
//! A snapshot file rewrote the whole state at every snapshot and kept a second copy of it beside
//! the database: 540–590 bytes per post on a filled hub, on top of the state's ~880
//! (docs/benchmarks.md, "A sealed hub at 1/20 of a prefecture"). A checkpoint flushes the
//! memtables and links the files that hold everything else: it costs the flush, and on disk
//! only the tables compaction has since replaced (the links keep them until the next
//! checkpoint). A peer still receives a snapshot file: it is written from the checkpoint when
//! one is first asked for ([`SnapshotFile::streamable`]) and kept until the checkpoint is.
//!
//! Layout in the snapshot directory: `ckpt-<n>/` (a RocksDB directory of the whole node),
//! `ckpt-<n>.meta` (the snapshot meta read from it, written once it is complete),
//! `ckpt-<n>.snap` (its export for peers, once asked for), and [`CURRENT`], a symbolic link to
//! the current `ckpt-<n>` switched by one rename, so a stop at any point leaves either the old
//! or the new checkpoint current. Everything else named `ckpt-` is removed when the node opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::DB;

use super::snapshot::{self, Pacer, SnapshotFile};
use super::{COLUMN_FAMILIES, codec, io_err};
use crate::raft::SnapshotMeta;

/// The link to the current checkpoint, in the snapshot directory.
pub(crate) const CURRENT: &str = "current.ckpt";
const PREFIX: &str = "ckpt-";
/// An export for a peer rests as long as it works: one node writes it (the one sending), beside
/// the commits it leads, and the peer waits for it.
const EXPORT_REST_PER_BUSY: u32 = 1;

/// The checkpoints of one node's snapshot directory.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoints {
    dir: PathBuf,
    next: Arc<AtomicU64>,
}

impl Checkpoints {
    /// The checkpoints in `dir`; removes what a stop left of others (builds cut short, retired
    /// checkpoints, exports).
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        let current = current_name(dir)?;
        let mut highest = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(number) = name.strip_prefix(PREFIX) else { continue };
            let stem = number.split('.').next().unwrap_or_default();
            highest = highest.max(stem.parse::<u64>().unwrap_or(0));
            let is_current = current.as_deref().is_some_and(|c| name == c || name == format!("{c}.meta"));
            if !is_current {
                remove(&path)?;
            }
        }
        Ok(Self { dir: dir.to_owned(), next: Arc::new(AtomicU64::new(highest + 1)) })
    }

    /// The current checkpoint's directory and meta, if there is one.
    pub(crate) fn current(&self) -> std::io::Result<Option<(PathBuf, SnapshotMeta)>> {
        let Some(name) = current_name(&self.dir)? else { return Ok(None) };
        let path = self.dir.join(&name);
        let meta = read_meta(&path)?;
        Ok(Some((path, meta)))
    }

    pub(crate) fn exists(&self) -> std::io::Result<bool> {
        Ok(current_name(&self.dir)?.is_some())
    }

    /// Checkpoints `db` as it is now and makes that the current snapshot, unless the current one
    /// is newer (a snapshot installed meanwhile). Returns the current one either way. One of the
    /// same state replaces it: after a compaction (the scrub), it links the compacted files. The
    /// caller keeps installs out meanwhile (`StateReader::whole_state`); a state an install
    /// left half replaced is refused.
    pub(crate) fn take(&self, db: &DB) -> std::io::Result<(PathBuf, SnapshotMeta)> {
        let name = format!("{PREFIX}{}", self.next.fetch_add(1, Ordering::Relaxed));
        let path = self.dir.join(&name);
        rocksdb::checkpoint::Checkpoint::new(db).and_then(|c| c.create_checkpoint(&path)).map_err(io_err)?;
        // Once this snapshot exists openraft may purge the log up to it: the state-machine
        // writes the checkpoint holds (apply does not sync them) must be durable here too.
        db.flush_wal(true).map_err(io_err)?;
        let meta = match meta_of_checkpoint(&path) {
            Ok(meta) => meta,
            Err(e) => {
                remove(&path)?;
                return Err(e);
            }
        };
        if let Some(current) = self.current()?
            && current.1.last_log_id > meta.last_log_id
        {
            remove(&path)?;
            return Ok(current);
        }
        write_meta(&path, &meta)?;
        self.make_current(&name)?;
        Ok((path, meta))
    }

    /// Points [`CURRENT`] at `name` by one rename, then removes the checkpoint it replaced.
    fn make_current(&self, name: &str) -> std::io::Result<()> {
        let before = current_name(&self.dir)?;
        let link = self.dir.join(CURRENT);
        let staged = self.dir.join(format!("{CURRENT}.new"));
        remove(&staged)?;
        std::os::unix::fs::symlink(name, &staged)?;
        std::fs::rename(&staged, &link)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        if let Some(old) = before.filter(|old| old != name) {
            for path in [self.dir.join(&old), meta_path(&self.dir.join(&old)), export_path(&self.dir.join(&old))] {
                remove(&path)?;
            }
        }
        Ok(())
    }
}

/// The name of the checkpoint [`CURRENT`] points at, if any.
fn current_name(dir: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_link(dir.join(CURRENT)) {
        Ok(target) => Ok(target.to_str().map(str::to_owned)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn meta_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("meta")
}

fn export_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("snap")
}

fn write_meta(checkpoint: &Path, meta: &SnapshotMeta) -> std::io::Result<()> {
    let staged = checkpoint.with_extension("meta.new");
    let mut file = std::fs::File::create(&staged)?;
    std::io::Write::write_all(&mut file, &codec::encode(meta).map_err(io_err)?)?;
    file.sync_all()?;
    std::fs::rename(&staged, meta_path(checkpoint))
}

fn read_meta(checkpoint: &Path) -> std::io::Result<SnapshotMeta> {
    let path = meta_path(checkpoint);
    let bytes = std::fs::read(&path)?;
    codec::decode(&bytes).map_err(|e| io_err(format!("{}: {e}", path.display())))
}

/// Opens a checkpoint to read it; nothing is written to it.
fn open_read_only(checkpoint: &Path) -> std::io::Result<DB> {
    DB::open_cf_for_read_only(&rocksdb::Options::default(), checkpoint, COLUMN_FAMILIES, false).map_err(io_err)
}

/// Hands every pair of the state a checkpoint holds to `each`, in key order.
pub(crate) fn read_pairs(checkpoint: &Path, mut each: impl FnMut(&[u8], &[u8])) -> std::io::Result<()> {
    let db = open_read_only(checkpoint)?;
    for item in db.iterator_cf(super::cf(&db, super::CF_SM_DATA), rocksdb::IteratorMode::Start) {
        let (key, value) = item.map_err(io_err)?;
        each(&key, &value);
    }
    Ok(())
}

/// The snapshot meta of the state a checkpoint holds (refused if an install left it half
/// replaced).
fn meta_of_checkpoint(checkpoint: &Path) -> std::io::Result<SnapshotMeta> {
    let db = open_read_only(checkpoint)?;
    let view = db.snapshot();
    snapshot::meta_of(&db, &view)
}

/// Removes a file, a directory or a link; absent is fine.
fn remove(path: &Path) -> std::io::Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl SnapshotFile {
    /// A file of this snapshot to send to a peer: the file itself, or for a checkpoint its
    /// export, written on the first call (paced) and kept beside it until it is replaced.
    /// Blocking: call it off the async threads.
    pub fn streamable(&self) -> std::io::Result<PathBuf> {
        if !self.path.is_dir() {
            return Ok(self.path.clone());
        }
        let export = export_path(&self.path);
        if export.exists() {
            return Ok(export);
        }
        // Two peers asking at once each write their own and the last rename wins: both whole.
        static EXPORTS: AtomicU64 = AtomicU64::new(0);
        let staged = self.path.with_extension(format!("snap.{}", EXPORTS.fetch_add(1, Ordering::Relaxed)));
        let db = open_read_only(&self.path)?;
        let mut pacer = Pacer::new(EXPORT_REST_PER_BUSY);
        let written = snapshot::write_consistent(&db, &db.snapshot(), &staged, |_, _| pacer.tick());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
        std::fs::rename(&staged, &export)?;
        Ok(export)
    }
}

#[cfg(test)]
mod tests;
