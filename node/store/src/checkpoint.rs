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
//! or the new checkpoint current. A new checkpoint retires the older ones; an export under way
//! reads its own links to its checkpoint's files (`ckpt-<n>.pin-<k>/`), so a checkpoint
//! retired meanwhile does not cut it short. Everything named `ckpt-` but the current checkpoint
//! is removed when the node opens.
//!
//! The snapshot directory must be on the file system of the database (both are in the data
//! directory): elsewhere RocksDB copies every file instead of linking it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::DB;

use super::snapshot::{self, SnapshotFile};
use super::state_families::StatePairs;
use super::{COLUMN_FAMILIES, codec, io_err};
use crate::raft::SnapshotMeta;

/// The link to the current checkpoint, in the snapshot directory.
pub(crate) const CURRENT: &str = "current.ckpt";
const PREFIX: &str = "ckpt-";
/// How far below the node's own priority an export for a peer runs (a nice value; 19 is the
/// lowest). The sending node leads the commits and the peer waits for the export: at 10 the
/// export takes about a tenth of a core the commits contend for, and all of an idle one
/// (docs/benchmarks.md, session 26). It was paced by sleeping as long as it worked, which
/// left half of an idle leader's core unused while a new node waited.
const EXPORT_NICENESS: i32 = 10;

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
        remove(&dir.join(STAGED_LINK))?;
        let mut highest = 0;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let Some(number) = number_of(&name) else { continue };
            highest = highest.max(number);
            let is_current = current.as_deref().is_some_and(|c| *name == *c || *name == format!("{c}.meta"));
            if !is_current {
                remove(&dir.join(&*name))?;
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

    /// The current checkpoint's bytes on disk, if there is one: see [`SnapshotDisk`].
    pub(crate) fn disk(&self) -> std::io::Result<Option<SnapshotDisk>> {
        use std::os::unix::fs::MetadataExt;
        let Some(name) = current_name(&self.dir)? else { return Ok(None) };
        let mut disk = SnapshotDisk::default();
        for entry in std::fs::read_dir(self.dir.join(name))? {
            let file = entry?.metadata()?;
            disk.bytes += file.len();
            if file.nlink() == 1 {
                disk.only_here += file.len();
            }
        }
        Ok(Some(disk))
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
        // Once this snapshot exists openraft may purge the log up to it: the state it holds
        // must be durable in the database too. Apply writes it without the WAL
        // (`unlogged_writes`); the checkpoint's flush wrote it to tables, all families at one
        // point (atomic flush), and synced them.
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

    /// Points [`CURRENT`] at `name` by one rename, then retires the checkpoints before it.
    fn make_current(&self, name: &str) -> std::io::Result<()> {
        let staged = self.dir.join(STAGED_LINK);
        remove(&staged)?;
        std::os::unix::fs::symlink(name, &staged)?;
        std::fs::rename(&staged, self.dir.join(CURRENT))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        if let Some(number) = number_of(name) {
            self.retire_before(number);
        }
        Ok(())
    }

    /// Removes the checkpoints numbered below `number`, their metas and exports, but not what
    /// an export under way holds. The new checkpoint is in place: a removal that fails is
    /// logged, and the node's next open removes what is left.
    fn retire_before(&self, number: u64) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => return tracing::warn!(dir = %self.dir.display(), "retiring old checkpoints: {e}"),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let older = number_of(&name).is_some_and(|n| n < number);
            if older
                && !name.contains(PIN)
                && let Err(e) = remove(&entry.path())
            {
                tracing::warn!(path = %entry.path().display(), "retiring an old checkpoint: {e}");
            }
        }
    }
}

/// What a node's checkpoint holds on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotDisk {
    /// All its files' bytes, most of them shared with the database by their links.
    pub bytes: u64,
    /// The bytes of the files only the checkpoint still holds: the database's compactions
    /// replaced them since it was taken. What the snapshot costs on disk.
    pub only_here: u64,
}

/// The staged link that replaces [`CURRENT`] by a rename.
const STAGED_LINK: &str = "current.ckpt.new";
/// Marks what an export under way holds: its links to a checkpoint's files, its file so far.
const PIN: &str = ".pin-";

/// Whether `name`, in the snapshot directory, is the checkpoints' (see the module's layout).
pub(crate) fn is_checkpoint_entry(name: &str) -> bool {
    name == CURRENT || name == STAGED_LINK || number_of(name).is_some()
}

/// The number `n` of a `ckpt-<n>` entry or of one named after it (`ckpt-<n>.meta`, ...).
fn number_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?;
    rest.split('.').next()?.parse().ok()
}

/// The name of the checkpoint [`CURRENT`] points at, if any.
fn current_name(dir: &Path) -> std::io::Result<Option<String>> {
    let target = match std::fs::read_link(dir.join(CURRENT)) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match target.to_str() {
        Some(name) if number_of(name).is_some() && !name.contains('.') => Ok(Some(name.to_owned())),
        _ => Err(io_err(format!("{} points at {}, not a checkpoint", dir.join(CURRENT).display(), target.display()))),
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

/// Files a reading of a checkpoint keeps open at most: RocksDB's default is all of them, beside
/// the node's own.
const READ_OPEN_FILES: i32 = 64;

/// Opens a checkpoint to read it; nothing is written to it. With the families it has: one
/// taken before the search index or the idempotency keys had their own (`state_families.rs`)
/// lacks `sm_search` or `sm_idempotency`.
fn open_read_only(checkpoint: &Path) -> std::io::Result<DB> {
    let mut options = rocksdb::Options::default();
    options.set_max_open_files(READ_OPEN_FILES);
    let present = DB::list_cf(&options, checkpoint).map_err(io_err)?;
    let families = COLUMN_FAMILIES.into_iter().filter(|name| present.iter().any(|p| p == name));
    DB::open_cf_for_read_only(&options, checkpoint, families, false).map_err(io_err)
}

/// Hands every pair of the state a checkpoint holds to `each`, in key order.
pub(crate) fn read_pairs(checkpoint: &Path, mut each: impl FnMut(&[u8], &[u8])) -> std::io::Result<()> {
    let db = open_read_only(checkpoint)?;
    let view = db.snapshot();
    StatePairs::of(&db, &view).for_each(|key, value| {
        each(key, value);
        Ok(())
    })
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
    /// export, written on the first call (below the node's priority) and kept beside it until
    /// it is retired.
    /// Blocking: call it off the async threads. A checkpoint retired before the call is an
    /// error: openraft then asks for the current one.
    pub fn streamable(&self) -> std::io::Result<PathBuf> {
        match self.kept_file()? {
            Some(file) => Ok(file),
            None => self.export(None),
        }
    }

    /// The file a peer is sent without exporting anything: a snapshot file, or a checkpoint's
    /// export written before. `None`: a checkpoint not yet exported.
    fn kept_file(&self) -> std::io::Result<Option<PathBuf>> {
        if !std::fs::symlink_metadata(&self.path)?.is_dir() {
            return Ok(Some(self.path.clone()));
        }
        let export = export_path(&self.path);
        Ok(export.try_exists()?.then_some(export))
    }

    /// Writes the checkpoint's export beside it (below the node's priority), handing what is
    /// written to `peer` as well when given (see [`outgoing`]); returns the export's path once
    /// it is whole.
    fn export(&self, peer: Option<outgoing::PeerParts>) -> std::io::Result<PathBuf> {
        let export = export_path(&self.path);
        // Two peers asking at once each write their own and the last rename wins: both whole.
        static EXPORTS: AtomicU64 = AtomicU64::new(0);
        let pin = self.path.with_extension(format!("{}{}", &PIN[1..], EXPORTS.fetch_add(1, Ordering::Relaxed)));
        let staged = pin.with_extension(format!("{}.snap", pin.extension().unwrap_or_default().to_string_lossy()));
        let written =
            link_files(&self.path, &pin).and_then(|()| below_normal_priority(|| export_to(&pin, &staged, peer)));
        let unpinned = remove(&pin);
        if let Err(e) = written.and(unpinned) {
            let _ = remove(&staged);
            return Err(e);
        }
        std::fs::rename(&staged, &export)?;
        Ok(export)
    }
}

/// Links every file of the checkpoint `from` into the new directory `to`: the files stay while
/// `to` does, whatever happens to `from`.
fn link_files(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::hard_link(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Writes the snapshot file of the checkpoint at `checkpoint` to `file` and fsyncs it;
/// what is written also goes to `peer` when given.
fn export_to(checkpoint: &Path, file: &Path, peer: Option<outgoing::PeerParts>) -> std::io::Result<()> {
    let db = open_read_only(checkpoint)?;
    let sink = outgoing::Tee::new(std::fs::File::create(file)?, peer);
    let (_, sink) = snapshot::write_consistent_to(&db, &db.snapshot(), sink, |_, _| ())?;
    sink.finish()
}

/// Runs `work` on a thread of its own, [`EXPORT_NICENESS`] below the node's priority: the
/// kernel gives it every cycle the node's commits leave and few of those they need. A thread
/// of its own because a raised nice value cannot be lowered again without privilege, and the
/// caller's thread (a pool's) must keep its own. Should the kernel refuse, the work runs at the
/// node's priority (noted), never not at all.
fn below_normal_priority<T: Send>(work: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new().name("snapshot-export".into()).spawn_scoped(scope, || {
            if let Err(e) = crate::background::lower_this_thread(EXPORT_NICENESS) {
                tracing::warn!("a snapshot export runs at the node's own priority: {e}");
            }
            work()
        })?;
        worker.join().map_err(|_| std::io::Error::other("the snapshot export stopped on a panic"))?
    })
}

pub(crate) mod outgoing;

#[cfg(test)]
mod tests;
