//! Two RocksDBs per node: the Raft log's (`<data_dir>/log`) and the state's (`<data_dir>/db`),
//! with a column family per concern:
//!
//! | RocksDB | column family | keys | values |
//! |---|---|---|---|
//! | log | `raft_log` | log index, u64 big-endian | the openraft entry |
//! | log | `raft_meta` | `vote`, `committed`, `purged` | the openraft value |
//! | db | `node_meta` | `format`, `node_key`, `scrubbed` | the data dir's value format; the node's own key (sealed); its scrub done |
//! | db | `sm_data` | one-byte table prefix + key (`r` records, `m` apply clock, ...) | the domain value |
//! | db | `sm_search` | the search index's keys (table `N`), apart from the other tables (`state_families.rs`) | the domain value |
//! | db | `sm_idempotency` | the remembered requests' keys (table `q`), apart likewise | the request's first result |
//! | db | `sm_meta` | `applied`, `membership` | the openraft value |
//! | db | `audit_journal` | local seq | patient-data reads not yet shipped into the audit chain (node-local) |
//! | db | `disaster_journal` | local seq | safety checks and facility statuses recorded here, not yet shipped into the log (node-local) |
//!
//! Every value (except `format`) is in the versioned binary format of `codec.rs`; a data dir of
//! JSON values, as written before it, is migrated when opened (`migrate.rs`).
//!
//! Every key of every column family is built and parsed in `keys.rs`, which also lists the
//! `sm_data` tables. Big-endian keys make ranges scan in index order.
//!
//! Why the log has a RocksDB of its own: an entry is written once, read while it is new and
//! deleted once a snapshot holds it. In the state's RocksDB every checkpoint flushed the log's
//! memtable to a table right before the purge deleted those entries, and compactions rewrote
//! them — two thirds of a node's flushed and compacted bytes (docs/benchmarks.md, session 37).
//! With its own write-ahead log and memtable the log is purged while its entries are still in
//! memory, and a checkpoint flushes the state alone. A data dir written before has its log
//! moved over when opened (`log_db.rs`).
//!
//! The log is the only write-ahead log of what apply writes: apply writes a batch's state only
//! once the log holds the batch durably ([`LogDurability`]), and without the state's WAL
//! ([`unlogged_writes`]). The state on disk is what its last flush wrote — every family at one
//! point (atomic flush), never ahead of the log — and the log is purged only up to a checkpoint,
//! whose flush wrote the state it covers. A node that crashed re-applies from its log what its
//! last flush had not written (openraft does, from `applied` to `committed`); the node-local
//! journals keep their WAL.

mod access;
mod background;
pub mod backup;
mod checkpoint;
pub mod codec;
mod fault;
mod hub_view;
mod install;
mod journal;
mod keys;
mod log_db;
mod log_store;
mod log_tail;
mod migrate;
pub mod raft;
mod scrub;
mod snapshot;
pub mod space;
mod state_families;
mod state_machine;
pub mod vault;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

pub use access::{AccessChange, AccessLog};
pub use checkpoint::SnapshotDisk;
pub use checkpoint::outgoing::{ExportStream, Outgoing};
pub use codec::{CodecError, ValueError};
pub use fault::StorageFault;
pub use hub_view::RocksHub;
pub use journal::{Journal, ObservationJournal, ReadJournal};
pub use log_store::{LogDurability, LogGrowth, LogStore};
pub use migrate::MigrateError;
pub use scrub::ScrubPlan;
pub use snapshot::{SNAPSHOT_MAGIC, SnapshotFile};
pub use space::{TableSpace, snapshot_space};
pub use state_families::STATE_FAMILIES;
pub use state_machine::{ApplyFault, StateDigest, StateMachineStore, StateReader, StorageProperty};
pub use vault::master::{MasterKey, MasterKeyError, MasterKeys};
pub use vault::{Vault, VaultError};

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_META: &str = "raft_meta";
/// The node's own metadata, in the state's RocksDB (in `raft_meta` with Raft's markers before
/// the log had a RocksDB of its own: `log_db.rs` moves them).
pub(crate) const CF_NODE_META: &str = "node_meta";
pub(crate) const CF_SM_DATA: &str = "sm_data";
pub(crate) const CF_SM_SEARCH: &str = "sm_search";
pub(crate) const CF_SM_IDEMPOTENCY: &str = "sm_idempotency";
pub(crate) const CF_SM_META: &str = "sm_meta";
pub(crate) const CF_AUDIT_JOURNAL: &str = "audit_journal";
pub(crate) const CF_DISASTER_JOURNAL: &str = "disaster_journal";
/// The log's RocksDB's column families.
pub const LOG_FAMILIES: [&str; 2] = [CF_RAFT_LOG, CF_RAFT_META];
/// The state's RocksDB's column families, in the order they are opened (a tool opening the
/// state of a data dir names them all; one written before the log had its own RocksDB has
/// `raft_log` and `raft_meta` instead of `node_meta` until it is opened: see
/// [`state_families_on_disk`]).
pub const COLUMN_FAMILIES: [&str; 7] =
    [CF_NODE_META, CF_SM_DATA, CF_SM_SEARCH, CF_SM_IDEMPOTENCY, CF_SM_META, CF_AUDIT_JOURNAL, CF_DISASTER_JOURNAL];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open RocksDB at {path}: {source}")]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("state machine: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("encryption at rest: {0}")]
    Vault(#[from] VaultError),
}

/// [`open`] with `masters`, at `apply_version` and with the hub's first data key taken up, as
/// the hub's `SetApplyVersion` and first `SetDataKeys` entries do: a store that seals what it
/// stores from its first write. For applying commands straight to a [`RocksHub`] without Raft
/// (the store's reference test and its micro-benchmarks).
pub fn open_sealed(
    data_dir: &Path,
    masters: MasterKeys,
    apply_version: u32,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    let (log, sm) = open(data_dir, masters)?;
    let reader = sm.reader();
    let db = reader.database().upgrade().ok_or_else(|| std::io::Error::other("the store closed"))?;
    let keys = reader.vault().next_keyring(false)?;
    let mut hub = RocksHub::new(&db, reader.vault());
    hub.set_apply_version(apply_version);
    hub.take_data_keys(&keys)?;
    let mut batch = rocksdb::WriteBatch::default();
    hub.write_into(&mut batch).map_err(|fault| std::io::Error::other(fault.to_string()))?;
    db.write(batch).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((log, sm))
}

/// Opens (or creates) the node's RocksDBs, the state's under `data_dir/db` and the log's under
/// `data_dir/log` (moving the log of an older data dir into it), and returns the Raft log store
/// and the state machine on them. With master keys, what the node writes is sealed (see
/// [`vault`]); without, nothing is, and a data dir sealed before does not open.
pub fn open(data_dir: &Path, masters: MasterKeys) -> Result<(LogStore, StateMachineStore), StoreError> {
    let db_path = data_dir.join("db");
    let log_path = data_dir.join("log");
    let snapshot_dir = data_dir.join("snapshots");
    for dir in [&db_path, &log_path, &snapshot_dir] {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.clone(), source })?;
    }
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE);
    let mut db = open_db(&db_path, &state_families_on_disk(&db_path)?, &cache, Role::State)?;
    // RocksDB's pools have their threads once a RocksDB is open; lowered before a migration's
    // or a move's compactions run on them.
    background::lower_rocksdb_threads();
    // Before anything reads a value: a dir of an older format is brought to this one first.
    migrate::run(&db)?;
    let started = std::time::Instant::now();
    let moved = state_families::move_dedicated_tables(&db, &snapshot_dir)?;
    if moved > 0 {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(pairs = moved, seconds, "moved tables into column families of their own");
    }
    let log_db = open_db(&log_path, &LOG_FAMILIES, &cache, Role::Log)?;
    log_db::move_older_log(&mut db, &log_db)?;
    let vault = Arc::new(Vault::open(masters, &db)?);
    let db = Arc::new(db);
    let log = LogStore::new(Arc::new(log_db), vault.clone())?;
    let sm = StateMachineStore::open(db.clone(), snapshot_dir, vault.clone(), &log)?;
    // Opening finishes a snapshot install a stop cut short: its state may hold data keys the
    // vault did not see when it opened.
    vault.reload_hub_keys(&db)?;
    note_state_behind_log(&log, &sm)?;
    Ok((log, sm))
}

/// Logs how far the state on disk is behind the entries the log says are committed. Apply
/// writes the state without its WAL ([`unlogged_writes`]): after a crash, or a stop that could
/// not flush, Raft re-applies from the log what the last flush had not written, and a start
/// that takes longer than usual says why. (The chaos harness counts these lines.)
fn note_state_behind_log(log: &LogStore, sm: &StateMachineStore) -> std::io::Result<()> {
    let applied = sm.reader().applied()?.map_or(0, |id| id.index);
    let committed = log.committed()?.map_or(0, |id| id.index);
    if committed > applied {
        let behind = committed - applied;
        tracing::info!(applied, committed, "the state on disk is {behind} entries behind the log: re-applying them");
    }
    Ok(())
}

/// Memory for the memtables of all column families of one of a node's RocksDBs together (the
/// state's, the log's): a flush starts when they hold more. Without it each family may hold
/// two 64 MiB memtables (640 MiB per node). The log's fills with entries a purge mostly deletes
/// before it is flushed (see the crate's doc).
const MEMTABLE_BUDGET: usize = 64 << 20;
/// Write-ahead log kept at most before the families holding its oldest files are flushed: a
/// rarely written family (Raft's meta) would otherwise keep every WAL file alive.
const WAL_LIMIT: u64 = 128 << 20;
/// One block cache for all families of a node (RocksDB's default is one per family).
const BLOCK_CACHE: usize = 64 << 20;
/// Share of a memtable's size given to its bloom filter, where it has one (RocksDB's
/// suggested value).
const MEMTABLE_FILTER_RATIO: f64 = 0.1;
/// Bytes a flush or compaction writes to a table file between two syncs of it (RocksDB's
/// suggested value).
const TABLE_BYTES_PER_SYNC: u64 = 1 << 20;
/// RocksDB's own info logs kept (`LOG.old.*`, one more per start).
const INFO_LOGS_KEPT: usize = 5;
/// Write-ahead log files the log's RocksDB keeps to write over instead of creating new ones
/// (`recycle_log_file_num`, see [`open_db`]). The log's WAL switches files when it opens and
/// when its memtables flush (both families, after each purge; or at the memtable budget, the
/// WAL limit, a scrub), and the file it left is obsolete long before the next switch: one kept
/// is enough, and costs one file of disk (at most the memtable budget; ~30 MB between two
/// checkpoints of small writes).
const LOG_WAL_FILES_RECYCLED: usize = 1;

/// The families a data dir's state RocksDB is opened with: [`COLUMN_FAMILIES`], and
/// `raft_log` and `raft_meta` while what a build before the log's own RocksDB wrote there is
/// still to move (`log_db.rs`).
pub fn state_families_on_disk(db_path: &Path) -> Result<Vec<&'static str>, StoreError> {
    let mut families = COLUMN_FAMILIES.to_vec();
    let present = match DB::list_cf(&Options::default(), db_path) {
        Ok(present) => present,
        // A new data dir: no RocksDB there yet.
        Err(_) if !db_path.join("CURRENT").exists() => return Ok(families),
        Err(source) => return Err(StoreError::Open { path: db_path.to_owned(), source }),
    };
    for older in [CF_RAFT_LOG, CF_RAFT_META] {
        if present.iter().any(|family| family == older) {
            families.push(older);
        }
    }
    Ok(families)
}

/// One of the node's RocksDBs with `families`, as stored (not migrated), its tables' blocks in
/// the node's one `cache`. Memory and WAL are bounded by the constants above
/// (docs/benchmarks.md, "Soak").
fn open_db(db_path: &Path, families: &[&str], cache: &rocksdb::Cache, role: Role) -> Result<DB, StoreError> {
    // A flush or compaction syncs its table files as it writes them, a step at a time: left to
    // the kernel, the tens of megabytes of a checkpoint's flush reached the disk in one burst
    // that the log's fsyncs of the writes waited behind. Strictly: each step first waits for the
    // writeback of the one before, so at most one step is in flight for a log sync to queue
    // behind (without, a flush that runs ahead of the disk has several). At half of the peak,
    // twelve 30-s runs each: the median run's p99 11.9 → 9.9 ms, runs at or under 20 ms 9 → 12,
    // the slowest write 77 → 45 ms (docs/benchmarks.md, session 49). The crate has no setter
    // for it: RocksDB's own option string sets it.
    let mut opts = Options::default()
        .get_options_from_string("strict_bytes_per_sync=true")
        .map_err(|source| StoreError::Open { path: db_path.to_owned(), source })?;
    opts.set_bytes_per_sync(TABLE_BYTES_PER_SYNC);
    // Apply writes the state without its write-ahead log ([`unlogged_writes`]): what a crash
    // leaves of it is what the last flush wrote, so every flush must write all of its families
    // at one point of the log, never the records of a batch without its `applied`.
    opts.set_atomic_flush(role == Role::State);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
    opts.set_max_total_wal_size(WAL_LIMIT);
    opts.set_keep_log_file_num(INFO_LOGS_KEPT);
    // Every write waits for a sync of the log's WAL. Appended to, a file grows, and each
    // fdatasync also writes its new size: a second write of the inode on ext4 without a
    // journal (183 against 122 µs a sync here, docs/benchmarks.md, session 43), a commit of the
    // journal behind whatever it holds then (a flush's or a checkpoint's new tables) with one.
    // Writing over a recycled file needs neither. Measured with four files kept: one client 5 %
    // more writes a second (p50 1.12 → 1.06 ms); at half of the peak, seconds with a commit of
    // 25 ms or more 118 → 90 in 24 runs (docs/benchmarks.md, session 40).
    // The state's WAL is not recycled: its checkpoints would copy a recycled file, not link it.
    if role == Role::Log {
        opts.set_recycle_log_file_num(LOG_WAL_FILES_RECYCLED);
    }
    let cfs = families.iter().map(|name| ColumnFamilyDescriptor::new(*name, family_options(name, cache)));
    DB::open_cf_descriptors(&opts, db_path, cfs).map_err(|source| StoreError::Open { path: db_path.to_owned(), source })
}

/// Which of a node's two RocksDBs [`open_db`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    State,
    Log,
}

/// The log and the state hold attached files' chunks (128 KiB values): with blob files, large
/// values are written once beside the sorted tables instead of being rewritten by every
/// compaction that passes them; small values (posts, members, indexes) stay inline.
fn family_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut options = Options::default();
    let mut tables = rocksdb::BlockBasedOptions::default();
    tables.set_block_cache(cache);
    // Index and filter blocks count against the block cache: otherwise each open table keeps
    // its own outside any bound, and a node's memory grows with its state. Level 0's stay
    // pinned (every read consults them) and the cache evicts them last.
    tables.set_cache_index_and_filter_blocks(true);
    tables.set_cache_index_and_filter_blocks_with_high_priority(true);
    tables.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Partitioned: a table's index and filter are split into 4 KiB blocks under a small pinned
    // top level, so the cache holds the parts reads use. Whole, a large table's index was one
    // block evicted and read back (and decompressed) for nearly every lookup once the state
    // outgrew the cache: at 100,000 posts apply spent most of its time so, and the hub stalled
    // (docs/benchmarks.md, "A sealed hub at 1/20 of a prefecture").
    tables.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    tables.set_partition_filters(true);
    tables.set_metadata_block_size(4096);
    tables.set_pin_top_level_index_and_filter(true);
    // Bloom filters let a lookup of an absent key (a first member) skip a table; the last
    // level, most of the data, has none (`optimize_filters_for_hits`): a read of a present key
    // there would probe a filter first (tried on `sm_data`, session 31: a hub of 300,000 posts
    // loaded and listed slower). The search index is only range-scanned, which no bloom filter
    // serves: it has none. The idempotency keys are looked up on every write and nearly always
    // absent (a retry is rare): their family has filters on every level and in the memtable,
    // so such a lookup reads no table's blocks and does not walk the memtable's skip list.
    if name != CF_SM_SEARCH {
        tables.set_bloom_filter(10.0, false);
    }
    if name == CF_SM_IDEMPOTENCY {
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(MEMTABLE_FILTER_RATIO);
    } else {
        options.set_optimize_filters_for_hits(true);
    }
    options.set_block_based_table_factory(&tables);
    // Without Snappy linked, RocksDB's default is no compression at all: the search index's
    // keys (room and seq after a hashed bigram) and the tables' per-key sequence numbers
    // compress well; sealed values do not, and LZ4 gives up on those blocks cheaply.
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    if name == CF_SM_DATA || name == CF_RAFT_LOG {
        options.set_enable_blob_files(true);
        options.set_min_blob_size(16 * 1024);
        options.set_enable_blob_gc(true);
    }
    options
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // The families are created in `open`; their absence is a programming error, not input.
    db.cf_handle(name).expect("column family created at open")
}

/// Write options of a write that must be on disk when it returns (a marker, a move's step).
pub(crate) fn synced_writes() -> rocksdb::WriteOptions {
    let mut synced = rocksdb::WriteOptions::default();
    synced.set_sync(true);
    synced
}

/// Options for apply's writes of the state: not into its write-ahead log. The Raft log holds
/// every applied entry durably before its state is written (see [`LogDurability`]) and is
/// purged only up to a checkpoint, whose flush writes the state it covers to tables; a node
/// that crashed re-applies from its log what its last flush had not written. Through the WAL
/// every batch was written twice: the saturated rate was 8 % lower and the commits' p99 at half
/// of the peak about 1.4× as high (docs/benchmarks.md, session 39).
pub(crate) fn unlogged_writes() -> rocksdb::WriteOptions {
    let mut unlogged = rocksdb::WriteOptions::default();
    unlogged.disable_wal(true);
    unlogged
}

pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Runs blocking RocksDB work (fsyncs, scans) off the async executor.
pub(crate) async fn blocking<T, F>(f: F) -> std::io::Result<T>
where
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(io_err)?
}

/// The value at `key` of a column family; undecodable bytes are an error naming the key.
pub(crate) fn get_value<T: serde::de::DeserializeOwned>(
    db: &DB,
    cf_name: &'static str,
    key: &[u8],
) -> std::io::Result<Option<T>> {
    match db.get_cf(cf(db, cf_name), key).map_err(io_err)? {
        None => Ok(None),
        Some(bytes) => codec::decode_at(cf_name, key, &bytes).map(Some),
    }
}

/// The replicated value stored at `key` (in whichever of the state's families holds it),
/// opened and decoded.
pub(crate) fn get_state<T: serde::de::DeserializeOwned>(
    db: &DB,
    vault: &Vault,
    key: &[u8],
) -> std::io::Result<Option<T>> {
    let family = state_families::family_of(key);
    match db.get_cf(cf(db, family), key).map_err(io_err)? {
        None => Ok(None),
        Some(stored) => decode_sealed(vault, family, key, &stored).map(Some),
    }
}

/// A stored value of `family` (sealed or not) opened and decoded; an error names the key.
pub(crate) fn decode_sealed<T: serde::de::DeserializeOwned>(
    vault: &Vault,
    family: &'static str,
    key: &[u8],
    stored: &[u8],
) -> std::io::Result<T> {
    let plain = match family {
        CF_SM_DATA | CF_SM_SEARCH | CF_SM_IDEMPOTENCY => vault.open_state(key, stored),
        _ => vault.open_local(family, key, stored),
    };
    let plain = plain.map_err(|e| ValueError::new(family, key, e))?;
    codec::decode_at(family, key, &plain)
}

/// A value of `family` as stored at `key`: encoded, then sealed by the vault.
pub(crate) fn sealed_value<T: serde::Serialize + ?Sized>(
    vault: &Vault,
    family: &'static str,
    key: &[u8],
    value: &T,
) -> std::io::Result<Vec<u8>> {
    let encoded = to_value(value)?;
    Ok(match family {
        CF_SM_DATA | CF_SM_SEARCH | CF_SM_IDEMPOTENCY => vault.seal_state(key, encoded),
        _ => vault.seal_local(family, key, encoded),
    })
}

/// A value in the node's storage format (see [`codec`]).
pub(crate) fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> std::io::Result<Vec<u8>> {
    codec::encode(value).map_err(io_err)
}
