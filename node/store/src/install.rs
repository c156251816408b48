//! Installing a snapshot from a peer without holding it in memory: a hub's state includes its
//! attached files, so a snapshot may be many GiB.
//!
//! The file is moved to [`INSTALLING_SNAPSHOT`] in the snapshot directory, where nothing else
//! removes it, and read once into sorted table files beside it (RocksDB's external files, at most
//! [`TABLE_FILE_BYTES`] each, of the family each pair is stored in), checking that it is complete,
//! in key order and every value is of this format: a file that cannot be finished leaves the state
//! untouched. Then a marker in `sm_meta` says an install is under way, the state machine's range is
//! deleted in every family, the tables are ingested (moved into the database, not rewritten
//! through the memtables and the write-ahead log as batches of pairs were: that was most of a new
//! node's install, docs/benchmarks.md, session 24), and the last batch writes the snapshot's
//! `applied` and membership and removes the marker; the file is removed and the caller checkpoints
//! the installed state ([`crate::checkpoint`]). A node whose install failed or stopped half way
//! finds the marker when it opens and installs the same file again ([`resume`]) before anything
//! reads the state; a failed install while it runs leaves the marker and the file for the leader's
//! next attempt (or that restart).

use std::path::{Path, PathBuf};

use rocksdb::{DB, IngestExternalFileOptions, SstFileWriter, WriteBatch};

use super::keys::{self, APPLIED, INSTALLING, MEMBERSHIP};
use super::snapshot;
use super::state_families::{STATE_FAMILIES, family_index, family_of};
use super::{CF_SM_DATA, CF_SM_META, cf, codec, get_value, io_err, synced_writes, to_value};
use crate::raft::SnapshotMeta;

/// The most bytes of one table file an install writes (RocksDB's own target for a table).
const TABLE_FILE_BYTES: u64 = 64 << 20;
/// The table files of an install under way, in the snapshot directory:
/// `installing-<family>-<n>.sst`.
const TABLE_FILE_PREFIX: &str = "installing-";

/// The file of the snapshot being installed, in the snapshot directory.
pub(crate) const INSTALLING_SNAPSHOT: &str = "installing.snap";

/// Replaces the state machine with the snapshot in `file`, whose meta must be `expected`; the
/// file is moved through `snapshot_dir` and removed once installed.
pub(crate) fn install(db: &DB, file: &Path, expected: &SnapshotMeta, snapshot_dir: &Path) -> std::io::Result<()> {
    if snapshot::read_meta(file)?.last_log_id != expected.last_log_id {
        return Err(io_err("snapshot file does not match its metadata"));
    }
    let installing = snapshot_dir.join(INSTALLING_SNAPSHOT);
    move_or_copy(file, &installing)?;
    if let Err(e) = replace(db, &installing, snapshot_dir) {
        // Refused before the marker (cut short, keys out of order): no restart finishes it.
        if !pending(db)? {
            std::fs::remove_file(&installing)?;
        }
        return Err(e);
    }
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
    replace(db, &installing, snapshot_dir)?;
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

/// Replaces the state machine's data with the file's pairs: written into table files first
/// (nothing of the state is touched if the file cannot be finished), then under the marker the
/// range deleted and the tables ingested; the last batch sets `applied` and the membership and
/// clears the marker.
fn replace(db: &DB, path: &Path, snapshot_dir: &Path) -> std::io::Result<()> {
    let data = cf(db, CF_SM_DATA);
    let (meta, tables, indexes) = write_tables(path, snapshot_dir)?;
    let mut marker = WriteBatch::default();
    marker.put_cf(cf(db, CF_SM_META), INSTALLING, to_value(&true)?);
    db.write_opt(marker, &synced_writes()).map_err(io_err)?;
    let mut cleared = WriteBatch::default();
    for family in STATE_FAMILIES {
        cleared.delete_range_cf(cf(db, family), keys::SM_DATA_START, keys::SM_DATA_END);
    }
    db.write(cleared).map_err(io_err)?;
    for (family, files) in STATE_FAMILIES.into_iter().zip(tables) {
        if !files.is_empty() {
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            db.ingest_external_file_cf_opts(cf(db, family), &ingest, files).map_err(io_err)?;
        }
    }
    let mut last = WriteBatch::default();
    for index in indexes {
        last.put_cf(data, index, to_value(&())?);
    }
    let sm_meta = cf(db, CF_SM_META);
    // `applied` holds a log id, never an empty one (as apply writes it).
    match &meta.last_log_id {
        Some(applied) => last.put_cf(sm_meta, APPLIED, to_value(applied)?),
        None => last.delete_cf(sm_meta, APPLIED),
    }
    last.put_cf(sm_meta, MEMBERSHIP, to_value(&meta.last_membership)?);
    last.delete_cf(sm_meta, INSTALLING);
    db.write_opt(last, &synced_writes()).map_err(io_err)
}

/// The table files of each of the state's families, in [`STATE_FAMILIES`]' order.
type FamilyFiles = Vec<Vec<PathBuf>>;

/// Reads the snapshot file at `path` whole into table files of the state's families in
/// `snapshot_dir`, each pair into the family it is stored in, checking every value; returns its
/// meta, each family's files in key order, and the keys of the connection index a snapshot of
/// a build before that index lacks (written after).
fn write_tables(path: &Path, snapshot_dir: &Path) -> std::io::Result<(SnapshotMeta, FamilyFiles, Vec<Vec<u8>>)> {
    remove_tables(snapshot_dir)?;
    let cache = rocksdb::Cache::new_lru_cache(0);
    let options = STATE_FAMILIES.map(|family| super::family_options(family, &cache));
    let mut tables: Vec<TableFiles> = STATE_FAMILIES
        .into_iter()
        .zip(&options)
        .map(|(family, options)| TableFiles::new(snapshot_dir, family, options))
        .collect();
    let (mut indexes, mut last_key) = (Vec::new(), Vec::new());
    let read = snapshot::read_pairs(path, |k, v| {
        // Each family's writer checks its own keys' order; the file's is checked here whole.
        if !last_key.is_empty() && k <= last_key.as_slice() {
            return Err(io_err("snapshot keys out of order"));
        }
        last_key.clear();
        last_key.extend_from_slice(k);
        codec::check_stored(v).map_err(|e| codec::ValueError::new(family_of(k), k, e))?;
        // A snapshot of a node built before the index still gives this node its own.
        indexes.extend(keys::pair_of_connection_key(k).map(keys::connection_of).into_iter().flatten());
        match tables.get_mut(family_index(k)) {
            Some(family) => family.put(k, v),
            None => Err(io_err("a state key without a family")),
        }
    });
    let finished = |meta| -> std::io::Result<_> {
        let files = tables.into_iter().map(TableFiles::finish).collect::<std::io::Result<FamilyFiles>>()?;
        Ok((meta, files))
    };
    match read.and_then(finished) {
        Ok((meta, files)) => Ok((meta, files, indexes)),
        Err(e) => {
            remove_tables(snapshot_dir)?;
            Err(e)
        }
    }
}

/// The table files an install (or the move of an old data dir's table into its family) writes of one
/// family, in key order, to be ingested: a new one once the last reaches [`TABLE_FILE_BYTES`].
pub(crate) struct TableFiles<'a> {
    dir: &'a Path,
    /// The family's name, in the files' names.
    name: &'static str,
    options: &'a rocksdb::Options,
    open: Option<SstFileWriter<'a>>,
    files: Vec<PathBuf>,
}

impl<'a> TableFiles<'a> {
    /// Files of `family` (`options` its own) in `dir`; none written until the first pair.
    pub(crate) fn new(dir: &'a Path, family: &'static str, options: &'a rocksdb::Options) -> Self {
        Self { dir, name: family, options, open: None, files: Vec::new() }
    }

    /// Adds a pair; keys must come in ascending order (else an error).
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let table = match &mut self.open {
            Some(table) => table,
            None => {
                let file = self.dir.join(format!("{TABLE_FILE_PREFIX}{}-{}.sst", self.name, self.files.len()));
                let table = self.open.insert(SstFileWriter::create(self.options));
                table.open(&file).map_err(io_err)?;
                self.files.push(file);
                table
            }
        };
        table.put(key, value).map_err(io_err)?;
        if table.file_size() >= TABLE_FILE_BYTES {
            table.finish().map_err(io_err)?;
            self.open = None;
        }
        Ok(())
    }

    /// Finishes the last table; returns every file written.
    pub(crate) fn finish(mut self) -> std::io::Result<Vec<PathBuf>> {
        if let Some(table) = &mut self.open {
            table.finish().map_err(io_err)?;
        }
        Ok(self.files)
    }
}

/// Removes the table files an install or a move left in `snapshot_dir` (one that failed or
/// stopped).
pub(crate) fn remove_tables(snapshot_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(snapshot_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TABLE_FILE_PREFIX) && name.ends_with(".sst") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
