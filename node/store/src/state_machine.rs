//! The replicated state machine: applies committed entries into RocksDB, builds and installs
//! snapshots.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::{DB, IteratorMode, WriteBatch};

use super::access::{AccessChange, AccessLog};
use super::checkpoint::Checkpoints;
use super::fault::StorageFault;
use super::hub_view::RocksHub;
use super::keys::{self, APPLIED, CLOCK, MEMBERSHIP, RECORDS};
use super::snapshot::{self, SnapshotFile};
use super::space::{SpaceByTable, TableSpace};
use super::state_families::StatePairs;
use super::{
    CF_SM_DATA, CF_SM_META, Vault, blocking, cf, codec, get_state, get_value, io_err, sealed_value, to_value,
    unlogged_writes,
};
use super::{LogDurability, LogStore, ObservationJournal, ReadJournal, install};
use crate::raft::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use kizuna_domain::disaster::observe;
use kizuna_domain::events::{Event, Raised, stamp};
use kizuna_domain::federation::{HubName, SeqRange, inbox, outbox};
use kizuna_domain::keyring::{self, SEALED_STATE_APPLY_VERSION, WrappedKey};
use kizuna_domain::model::AccountId;
use kizuna_domain::{
    self, Applied, Change, Command, CommandResult, Ctx, Decision, DomainError, DomainResult, Envelope, LogCommand,
    Outcome, Record, Sender, decide, settle,
};
use kizuna_domain::{attachments, notify, push};

/// Read access to the applied state, shared with the API.
#[derive(Clone)]
pub struct StateReader {
    pub(crate) db: Arc<DB>,
    /// The log's RocksDB, for what covers all of a node's files: its scrub and its storage
    /// figures. The log itself is read and written through [`crate::LogStore`] only.
    pub(crate) log_db: Arc<DB>,
    /// The keys the state is sealed with (shared with apply, which adds to them).
    vault: Arc<Vault>,
    snapshots_installed: Arc<AtomicU64>,
    events: tokio::sync::broadcast::Sender<Event>,
    /// Patient-data reads of this node, waiting to be shipped into the audit chain.
    pub journal: ReadJournal,
    /// Safety checks and facility statuses recorded on this node, waiting for the hub.
    pub observations: ObservationJournal,
    /// Why apply stopped, once it did (see [`ApplyBatch::stop_if_faulted`]).
    apply_fault: Arc<OnceLock<ApplyFault>>,
    /// A snapshot install is replacing the state in batches (or failed half way): the state
    /// is not whole, so nothing may be answered from it.
    installing: Arc<AtomicBool>,
    /// This node's snapshots: the current one a checkpoint of its state.
    pub(crate) checkpoints: Checkpoints,
    /// Held while an install replaces the state and checkpoints it, while a view of the whole
    /// state is taken, and while a build checkpoints it: openraft installs a snapshot from the
    /// leader while a build of this node may run (the build is a task of its own), and without
    /// it a view or a checkpoint could hold a half-installed state.
    whole_state: Arc<Mutex<()>>,
    /// The applied batches that may have changed which live events a session receives
    /// (`RocksHub::changed_access`), and the snapshots installed, numbered. Recorded after the
    /// batch is written and before its events go out.
    access: AccessLog,
    /// An apply version this node's state is known to have reached: it only grows along the
    /// log (an install brings a later state, never an earlier one), so once a request saw it
    /// the next need not read it again (see [`StateReader::applies_at_least`]).
    apply_version_reached: Arc<AtomicU32>,
}

/// Takes the `whole_state` lock. It guards no data, only an order of steps, so a holder that
/// panicked left nothing half done to it.
fn hold(whole_state: &Mutex<()>) -> MutexGuard<'_, ()> {
    whole_state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StateReader {
    /// A RocksDB snapshot of the whole state: never taken while an install replaces it.
    pub(crate) fn whole_view(&self) -> rocksdb::Snapshot<'_> {
        let _whole = hold(&self.whole_state);
        self.db.snapshot()
    }

    /// Checkpoints the state as it is now as this node's current snapshot (see
    /// [`crate::checkpoint`]); never while an install replaces it. Blocking.
    pub(crate) fn take_checkpoint(&self) -> std::io::Result<(PathBuf, SnapshotMeta)> {
        let _whole = hold(&self.whole_state);
        self.checkpoints.take(&self.db)
    }

    /// What this node's snapshot holds on disk (none before its first). Blocking: it lists the
    /// checkpoint's files.
    pub fn snapshot_disk(&self) -> std::io::Result<Option<crate::SnapshotDisk>> {
        let _whole = hold(&self.whole_state);
        self.checkpoints.disk()
    }

    /// Whether a snapshot install is replacing the state (see [`crate::install`]).
    pub fn installing(&self) -> bool {
        self.installing.load(Ordering::Acquire)
    }

    pub fn record(&self, key: &str) -> std::io::Result<Option<Record>> {
        get_state(&self.db, &self.vault, &keys::text(RECORDS, key))
    }

    /// This node's keys for encryption at rest.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Whether the state written before the hub's first data key is still being sealed.
    pub fn sealing(&self) -> Result<bool, StorageFault> {
        let hub = self.hub();
        let sealing = hub.sealing();
        hub.fault().map_or(Ok(sealing), Err)
    }

    pub fn applied(&self) -> std::io::Result<Option<LogId>> {
        get_value(&self.db, CF_SM_META, APPLIED)
    }

    /// The hub's active apply version (`kizuna_domain::APPLY_VERSION`).
    pub fn apply_version(&self) -> std::io::Result<u32> {
        Ok(get_state(&self.db, &self.vault, keys::APPLY_VERSION)?.unwrap_or(kizuna_domain::FIRST_APPLY_VERSION))
    }

    /// Whether this node's state applies version `needs` or newer. Every write request asks
    /// (the signed records' move, session 17): read from the state only until it answered yes,
    /// a lookup that was up to 4 % of a busy leader's CPU (session 18).
    pub fn applies_at_least(&self, needs: u32) -> std::io::Result<bool> {
        if self.apply_version_reached.load(Ordering::Relaxed) >= needs {
            return Ok(true);
        }
        let active = self.apply_version()?;
        self.apply_version_reached.fetch_max(active, Ordering::Relaxed);
        Ok(active >= needs)
    }

    /// Leader time of the last applied write, ms since the Unix epoch (0 before any write).
    pub fn clock_ms(&self) -> std::io::Result<u64> {
        Ok(get_state(&self.db, &self.vault, CLOCK)?.unwrap_or(0))
    }

    /// Why this node's apply stopped on a storage fault, if it did since the node started.
    pub fn apply_fault(&self) -> Option<ApplyFault> {
        self.apply_fault.get().cloned()
    }

    /// A read view of the collaboration tables as they are now, on one RocksDB snapshot: every
    /// read through it sees the same applied state, whatever apply does meanwhile. An answer
    /// counts only if the view met no [`RocksHub::fault`].
    pub fn hub(&self) -> RocksHub<'_> {
        RocksHub::at_snapshot(&self.db, &self.vault)
    }

    /// The changes of which live events a session receives, by number, and whom each concerns:
    /// what a view taken after reading its count says of a session's access holds until a
    /// later change concerns its account. Read the count before taking the view.
    pub fn access_log(&self) -> &AccessLog {
        &self.access
    }

    /// Live events as this node applies them.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stored events after `cursor`, oldest first, at most `limit`.
    /// The cursor of the newest live event forgotten: a subscriber resuming below it missed
    /// events that are gone.
    pub fn events_forgotten_to(&self) -> Result<u64, StorageFault> {
        let hub = self.hub();
        let cursor = hub.events_forgotten_to();
        hub.fault().map_or(Ok(cursor), Err)
    }

    pub fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<Event>, StorageFault> {
        let hub = self.hub();
        let events = hub.events_after(cursor, limit);
        hub.fault().map_or(Ok(events), Err)
    }

    /// A digest of every pair of the replicated state (all its families, in key order) and
    /// the applied index it reflects, both read from one RocksDB snapshot (apply writes them in
    /// one batch): replicas at one index must agree.
    pub fn state_digest(&self) -> std::io::Result<StateDigest> {
        self.digest_where(|_| true)
    }

    /// The digest of the collaboration network's data alone: without the apply clock, the
    /// remembered results of requests (a refused request is remembered too, so a retry gets the
    /// same answer) and the counts of failed sign-ins. What a rejected request must not change.
    pub fn domain_digest(&self) -> std::io::Result<StateDigest> {
        let bookkeeping = [keys::META, keys::IDEMPOTENCY, keys::REMEMBERED_AT, keys::LOGIN_GUARDS].map(|t| t.prefix);
        self.digest_where(|key| key.first().is_none_or(|p| !bookkeeping.contains(p)))
    }

    fn digest_where(&self, counted: impl Fn(&[u8]) -> bool) -> std::io::Result<StateDigest> {
        let snap = self.db.snapshot();
        let applied: Option<LogId> = match snap.get_cf(cf(&self.db, CF_SM_META), APPLIED).map_err(io_err)? {
            Some(bytes) => Some(codec::decode_at(CF_SM_META, APPLIED, &bytes)?),
            None => None,
        };
        let mut digest = snapshot::PairDigest::default();
        StatePairs::of(&self.db, &snap).for_each(|key, value| {
            if counted(key) {
                digest.add(key, value);
            }
            Ok(())
        })?;
        Ok(digest.finish(applied.as_ref()))
    }

    /// What each table of the replicated state holds, as stored (sealed values, keys as
    /// written, before RocksDB's compression): where the disk goes. Reads the whole state from
    /// one snapshot.
    pub fn space_by_table(&self) -> std::io::Result<Vec<TableSpace>> {
        let snap = self.db.snapshot();
        let mut space = SpaceByTable::default();
        StatePairs::of(&self.db, &snap).for_each(|key, value| {
            space.add(key, value);
            Ok(())
        })?;
        Ok(space.tables())
    }

    /// A handle that tells when the state's database has been closed (every user dropped it).
    pub fn database(&self) -> std::sync::Weak<DB> {
        Arc::downgrade(&self.db)
    }

    /// The same for the log's database (see the crate's doc).
    pub fn log_database(&self) -> std::sync::Weak<DB> {
        Arc::downgrade(&self.log_db)
    }

    /// How many snapshots this node has installed from a leader since it started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    /// RocksDB's own figures of every column family, for the metrics (a property RocksDB does
    /// not report is left out).
    pub fn storage_properties(&self) -> Vec<StorageProperty> {
        let mut out = Vec::new();
        let families = super::COLUMN_FAMILIES.into_iter().map(|family| (&self.db, family));
        let log = super::LOG_FAMILIES.into_iter().map(|family| (&self.log_db, family));
        for (db, column_family) in families.chain(log) {
            let Some(handle) = db.cf_handle(column_family) else { continue };
            for (property, metric) in STORAGE_PROPERTIES {
                if let Ok(Some(value)) = db.property_int_value_cf(&handle, *property) {
                    out.push(StorageProperty { column_family, metric, value });
                }
            }
        }
        out
    }
}

/// One RocksDB figure of one column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageProperty {
    pub column_family: &'static str,
    /// The metric's name.
    pub metric: &'static str,
    pub value: u64,
}

/// The RocksDB properties the metrics report, and their metric names.
const STORAGE_PROPERTIES: &[(&str, &str)] = &[
    ("rocksdb.total-sst-files-size", "kizuna_rocksdb_sst_bytes"),
    ("rocksdb.live-blob-file-size", "kizuna_rocksdb_blob_bytes"),
    ("rocksdb.cur-size-all-mem-tables", "kizuna_rocksdb_memtable_bytes"),
    ("rocksdb.estimate-pending-compaction-bytes", "kizuna_rocksdb_pending_compaction_bytes"),
    ("rocksdb.is-write-stopped", "kizuna_rocksdb_write_stopped"),
    ("rocksdb.actual-delayed-write-rate", "kizuna_rocksdb_delayed_write_rate"),
    ("rocksdb.estimate-num-keys", "kizuna_rocksdb_estimated_keys"),
    // Memory: the sorted tables' index and filter blocks held outside the block cache, and the
    // one block cache of the node (each family reports the same shared cache).
    ("rocksdb.estimate-table-readers-mem", "kizuna_rocksdb_table_readers_bytes"),
    ("rocksdb.block-cache-usage", "kizuna_rocksdb_block_cache_bytes"),
    ("rocksdb.block-cache-pinned-usage", "kizuna_rocksdb_block_cache_pinned_bytes"),
];

/// See [`StateReader::state_digest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDigest {
    pub applied_index: u64,
    pub sha256: String,
    pub entries: u64,
}

pub struct StateMachineStore {
    db: Arc<DB>,
    snapshot_dir: PathBuf,
    reader: StateReader,
    /// The newest apply version this node may take up: the build's, unless a test stands for
    /// an older build (see [`Self::applying_at_most`]).
    max_apply_version: u32,
    /// What the last committed batch knew of the oldest results and events left.
    sweep_hints: SweepHints,
    /// The replicated clock and the apply version as the last batch wrote them (None: read
    /// them from the state). This store is their only writer and an install forgets them:
    /// read and opened at every batch, they were a quarter of a one-entry batch's ~67 µs
    /// (docs/benchmarks.md, session 23).
    written: Option<WrittenMeta>,
    /// The log's durability: a batch's state is written once the log holds its entries
    /// durably (see [`LogDurability`]).
    log: LogDurability,
    /// `kizuna_raft_apply_seconds`, looked up in the metrics registry once (a lookup hashes
    /// the name: per batch it showed in a one-client profile).
    apply_seconds: metrics::Histogram,
}

/// See [`StateMachineStore::written`].
#[derive(Debug, Clone, Copy)]
struct WrittenMeta {
    clock_ms: u64,
    apply_version: u32,
}

impl StateMachineStore {
    pub(crate) fn open(db: Arc<DB>, snapshot_dir: PathBuf, vault: Arc<Vault>, log: &LogStore) -> std::io::Result<Self> {
        // An install a stop interrupted is finished before anything reads the state.
        install::resume(&db, &snapshot_dir)?;
        let checkpoints = Checkpoints::open(&snapshot_dir)?;
        // A state newer than its checkpoint is checkpointed now: a stop between an install (or
        // a restore) and its checkpoint, a snapshot file of a build before checkpoints. Its
        // log may be purged up to the state; its snapshot must not stay behind it.
        let applied: Option<LogId> = get_value(&db, CF_SM_META, APPLIED)?;
        let snapshot = checkpoints.current()?.and_then(|(_, meta)| meta.last_log_id);
        if applied > snapshot {
            checkpoints.take(&db)?;
        }
        remove_leftovers(&snapshot_dir)?;
        index_connections(&db)?;
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let journal = ReadJournal::open_reads(db.clone(), vault.clone())?;
        let observations = ObservationJournal::open_observations(db.clone(), vault.clone())?;
        let reader = StateReader {
            db: db.clone(),
            log_db: log.database(),
            vault,
            snapshots_installed: Arc::default(),
            events,
            journal,
            observations,
            apply_fault: Arc::default(),
            installing: Arc::default(),
            checkpoints,
            whole_state: Arc::default(),
            access: AccessLog::default(),
            apply_version_reached: Arc::default(),
        };
        let max_apply_version = kizuna_domain::APPLY_VERSION;
        let sweep_hints = SweepHints::default();
        let log = log.durability();
        let apply_seconds = metrics::histogram!("kizuna_raft_apply_seconds");
        Ok(Self { db, snapshot_dir, reader, max_apply_version, sweep_hints, written: None, log, apply_seconds })
    }

    /// This node takes up apply versions up to `version` only: a test's stand-in for a node
    /// still running an older build during a rolling upgrade.
    pub fn applying_at_most(mut self, version: u32) -> Self {
        self.max_apply_version = version.min(kizuna_domain::APPLY_VERSION);
        self
    }

    pub fn reader(&self) -> StateReader {
        self.reader.clone()
    }

    /// Where a snapshot arriving from a peer is written before it is installed.
    pub fn incoming_snapshot_path(&self, name: &str) -> PathBuf {
        self.snapshot_dir.join(format!("incoming-{name}.snap"))
    }
}

/// Removes the files a stop left in the snapshot directory: received or staged snapshots,
/// backup images on their way out, the snapshot file of a build before checkpoints
/// (`current.snap`: the state was checkpointed instead). The checkpoints keep theirs ([`Checkpoints::open`]), and an install to
/// finish its file.
fn remove_leftovers(snapshot_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(snapshot_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == install::INSTALLING_SNAPSHOT || crate::checkpoint::is_checkpoint_entry(&name) {
            continue;
        }
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Applies one batch of entries: domain state is read through an overlay of this batch's own
/// writes, so a batch behaves exactly like entries applied one by one.
struct ApplyBatch<'a> {
    max_apply_version: u32,
    clock_ms: u64,
    hub: RocksHub<'a>,
    events: Vec<Event>,
    hints: SweepHints,
}

/// Lower bounds of when the oldest remembered result and the oldest live event left were
/// stamped (by the replicated clock), as this node's apply last read them: the per-entry
/// sweeps skip their reads while these are inside their windows. Kept in memory across
/// batches — entries are stamped with a clock that never goes back, and sweeps only remove, so
/// a bound stays a bound — and unknown (`None`) after a start, a snapshot install or a batch
/// that did not commit.
#[derive(Debug, Clone, Copy, Default)]
struct SweepHints {
    oldest_remembered_ms: Option<u64>,
    oldest_event_ms: Option<u64>,
}

/// The hub applies the log as `version`, newer than this build's `max`.
fn too_new(version: u32, max: u32) -> std::io::Error {
    std::io::Error::other(format!(
        "the hub now applies the log as version {version}; this build applies up to version {max}: \
         install the hub's current build on this node"
    ))
}

/// The fields of a [`LogCommand::FederatedBatch`].
struct FederatedBatch {
    origin: HubName,
    first_seq: u64,
    messages: Vec<Vec<u8>>,
    key_id: String,
    signature: Vec<u8>,
    origin_node: u64,
}

/// How long a request's result is remembered under its idempotency key: a retry within it gets
/// the first answer, a later one is a new request. A day covers a phone offline overnight.
pub const RETRY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// Results one entry forgets at most: more than one entry remembers, so a backlog drains, and
/// few enough to keep every apply short.
const FORGET_PER_ENTRY: usize = 4;

/// How long live events are kept for subscribers resuming from a cursor: a client away longer
/// reloads its views instead (the API answers OUT_OF_RANGE).
pub const EVENT_REPLAY_WINDOW_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Events one entry forgets at most: more than one entry raises (16), so a backlog drains.
const FORGET_EVENTS_PER_ENTRY: usize = 32;

/// Ended sessions are removed this long after they were created: a session lives a day at
/// most (the longest absolute lifetime), the second day still tells "session ended".
pub const SESSION_KEPT_MS: u64 = 2 * 24 * 60 * 60 * 1000;
/// Unused invitations are removed a week after they expired.
pub const INVITATION_KEPT_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// How often sessions, invitations and sign-in counts are swept (by log index: the same
/// entries on every replica) and how many records of each table one sweep looks at, by the
/// hub's apply version. Two records an entry either way, more than the entries that make one
/// (a sign-in is an entry), so a round of the table keeps up. Each sweep sets up a RocksDB
/// iterator per table, whatever it finds: from [`SPACED_SWEEPS_SINCE`] on they come sixteen
/// times less often, each looking at sixteen times more (at 256 writers a sweep every 16th
/// entry was ~5 % of a follower's CPU, docs/benchmarks.md, session 49).
fn sweep_cadence(apply_version: u32) -> (u64, usize) {
    if apply_version >= SPACED_SWEEPS_SINCE { (256, 512) } else { (16, 32) }
}
/// The apply version from which sweeps are spaced out ([`sweep_cadence`]).
pub(crate) const SPACED_SWEEPS_SINCE: u32 = 10;

/// Keys and bytes one seal step takes at most: an entry stays short and its batch small
/// (attached files' chunks are 128 KiB each).
const SEAL_STEP_KEYS: usize = 512;
const SEAL_STEP_BYTES: usize = 4 << 20;

/// Why this node stopped applying: a command met a storage fault. See
/// [`ApplyBatch::stop_if_faulted`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("entry {index} could not be applied ({fault}); nothing of its batch was written")]
pub struct ApplyFault {
    pub index: u64,
    pub fault: StorageFault,
}

impl ApplyBatch<'_> {
    /// Ends the batch, writing nothing, once an entry met a storage fault.
    ///
    /// The domain was told (its reads returned errors), but the fault is checked here too, as
    /// the one gate: the result of that entry and every write staged before it in this batch
    /// are dropped, so nothing of a batch that met a fault is ever persisted. The error makes openraft stop this node's Raft core
    /// (a storage error is fatal), so the node stops applying rather than diverging; once the
    /// fault is repaired, a restart applies the same entries again from the last written state.
    fn stop_if_faulted(&self, index: u64) -> Result<(), ApplyFault> {
        match self.hub.fault() {
            None => Ok(()),
            Some(fault) => Err(ApplyFault { index, fault }),
        }
    }

    fn apply(&mut self, log_index: u64, envelope: Envelope) -> std::io::Result<Applied> {
        let scoped_key = match envelope.idempotency_scope(&self.hub) {
            Ok(key) => key,
            // Never a result: the view noted the fault, and `stop_if_faulted` ends the batch
            // before anything of it is written.
            Err(unreadable) => return Err(std::io::Error::other(unreadable)),
        };
        if let Some(first) = self.applied_under(&scoped_key)? {
            return Ok(Applied { duplicate: true, ..first });
        }
        self.clock_ms = kizuna_domain::monotonic_time(self.clock_ms, envelope.proposed_at_ms);
        let result = match envelope.command {
            LogCommand::PutRecord { key, value } => self.unsigned_record(key, value)?,
            LogCommand::Signed { session, origin_node, command } => {
                self.signed(log_index, session, origin_node, command)?
            }
            LogCommand::AuditReads { records } => {
                let mut last_seq = 0;
                for r in records {
                    last_seq = self.hub.append_audit(r);
                }
                CommandResult::Audited { last_seq }
            }
            LogCommand::FederatedBatch { origin, first_seq, messages, key_id, signature, origin_node } => {
                let batch = FederatedBatch { origin, first_seq, messages, key_id, signature, origin_node };
                self.federated(log_index, batch)?
            }
            LogCommand::FederationAck { peer, highest_applied } => self.acknowledged(&peer, highest_applied)?,
            LogCommand::NoticeDelivery { notices, delivery, origin_node } => {
                self.notice_delivery(&notices, delivery, origin_node)?
            }
            LogCommand::CollectAttachments { grace_ms, origin_node } => {
                self.collect_attachments(log_index, grace_ms, origin_node)?
            }
            LogCommand::PushDelivery { account, notices, delivery, gone, origin_node } => {
                self.push_delivery(account, &notices, (delivery, &gone), origin_node)?
            }
            LogCommand::FetchedChunk { blob, from, size, index, bytes } => {
                let ctx = Ctx { log_index, now_ms: self.clock_ms };
                self.decided(attachments::store_fetched(&self.hub, ctx, (blob, &from), (size, index), bytes))?
            }
            LogCommand::FetchFailed { blob, from, reason } => {
                self.decided(attachments::fetch_failed(&self.hub, blob, &from, reason))?
            }
            LogCommand::FetchProven { blob, from } => {
                self.decided(attachments::fetch_proven(&self.hub, blob, &from))?
            }
            LogCommand::SetApplyVersion { version } => self.set_apply_version(version)?,
            LogCommand::SetDataKeys { keys, origin_node } => self.set_data_keys(&keys, origin_node)?,
            LogCommand::SealStep => self.seal_step(),
            LogCommand::Observations { observations, origin_node } => {
                self.observations(log_index, observations, origin_node)?
            }
        };
        let applied = Applied { result, log_index, duplicate: false };
        // A federated batch that applied nothing is decided again on a retry, against the
        // stream as it is then: a batch refused for a gap must apply once the hole is filled.
        // The stream, not the key, is what keeps a batch from applying twice.
        if !matches!(&applied.result, CommandResult::Received(receipt) if !receipt.applied_something()) {
            self.hub.remember(&scoped_key, &applied, self.clock_ms);
        }
        self.forget_expired();
        let (sweep_every, swept_per_sweep) = sweep_cadence(self.hub.apply_version());
        if log_index.is_multiple_of(sweep_every) {
            self.hub.sweep_sessions(self.clock_ms.saturating_sub(SESSION_KEPT_MS), swept_per_sweep);
            self.hub.sweep_invitations(self.clock_ms.saturating_sub(INVITATION_KEPT_MS), swept_per_sweep);
            // Only from the version that brought the counts: an older build does not sweep.
            if self.hub.apply_version() >= kizuna_domain::login_guard::SINCE_APPLY_VERSION {
                self.hub.sweep_login_guards(self.clock_ms, swept_per_sweep);
            }
        }
        Ok(applied)
    }

    /// Every entry forgets a few results older than the retry window and events older than the
    /// replay window, by the replicated clock: every replica forgets the same ones at the same
    /// entry. While the oldest left is known to be younger than its window, nothing can be due
    /// and the reads are skipped: a sweep that finds nothing still costs an iterator seek each,
    /// per entry (docs/benchmarks.md, "The write path at 256 clients").
    fn forget_expired(&mut self) {
        let (retry_from, replay_from) =
            (self.clock_ms.saturating_sub(RETRY_WINDOW_MS), self.clock_ms.saturating_sub(EVENT_REPLAY_WINDOW_MS));
        // Nothing left: whatever comes next is stamped with this clock or a later one.
        if self.hints.oldest_remembered_ms.is_none_or(|oldest| oldest < retry_from) {
            let left = self.hub.forget_remembered(retry_from, FORGET_PER_ENTRY);
            self.hints.oldest_remembered_ms = Some(left.unwrap_or(self.clock_ms));
        }
        if self.hints.oldest_event_ms.is_none_or(|oldest| oldest < replay_from) {
            let left = self.hub.forget_events(replay_from, FORGET_EVENTS_PER_ENTRY);
            self.hints.oldest_event_ms = Some(left.unwrap_or(self.clock_ms));
        }
    }

    /// The hub applies as `version` from the next entry on. A node that cannot stops applying
    /// instead of diverging from the others: its build is older than the hub now is (the
    /// leader raises the version only when every member reports it, so only a node replaced by
    /// an older build meanwhile gets here).
    fn set_apply_version(&mut self, version: u32) -> std::io::Result<CommandResult> {
        if version > self.max_apply_version {
            return Err(too_new(version, self.max_apply_version));
        }
        if version > self.hub.apply_version() {
            self.hub.set_apply_version(version);
        }
        Ok(CommandResult::Done(Outcome::Done))
    }

    /// The hub's data keys from this entry on. Refused (the same on every replica) before every
    /// member can seal or for a keyring that drops or renumbers keys; a node that cannot unwrap
    /// a key (its master key file is missing) stops applying and says which key it lacks.
    fn set_data_keys(&mut self, keys: &[WrappedKey], origin_node: u64) -> std::io::Result<CommandResult> {
        if self.hub.apply_version() < SEALED_STATE_APPLY_VERSION {
            let why = "ハブの全ノードが保存データの暗号化に対応するまで、データ鍵は設定できません";
            return Ok(DomainError::InvalidArgument(why.into()).into());
        }
        if let Err(refused) = keyring::check_successor(&self.hub.data_keys(), keys) {
            return Ok(refused.into());
        }
        match self.hub.take_data_keys(keys) {
            Ok(()) => {}
            // Every replica holding the master keys sees the same secrets: a refusal like any.
            Err(crate::VaultError::Replaced(id)) => {
                let why = format!("データ鍵 {id} を別の鍵で置き換えることはできません");
                return Ok(DomainError::InvalidArgument(why).into());
            }
            // A wrapping that does not open under a master key this node holds opens nowhere
            // (every node holds the same key): a bad keyring, refused alike everywhere.
            Err(crate::VaultError::Cipher(e)) => {
                return Ok(DomainError::InvalidArgument(format!("データ鍵を開けません: {e}")).into());
            }
            Err(lacking) => return Err(std::io::Error::other(lacking)),
        }
        tracing::info!(keys = keys.len(), origin_node, "the hub's data keys changed");
        Ok(CommandResult::Done(Outcome::Done))
    }

    /// The next step of sealing the state written before the first data key.
    fn seal_step(&mut self) -> CommandResult {
        if self.hub.apply_version() < SEALED_STATE_APPLY_VERSION {
            return DomainError::FailedPrecondition("the hub is being upgraded".into()).into();
        }
        if self.hub.seal_step(SEAL_STEP_KEYS, SEAL_STEP_BYTES) {
            tracing::info!("the state written before the hub's first data key is sealed");
        }
        CommandResult::Done(Outcome::Done)
    }

    /// Safety checks and facility statuses shipped from node `origin_node`'s journal: each
    /// applied once, merged by the domain's rule; a safety check is a write in the audit chain.
    fn observations(
        &mut self,
        log_index: u64,
        observations: Vec<kizuna_domain::disaster::Observation>,
        origin_node: u64,
    ) -> std::io::Result<CommandResult> {
        if self.hub.apply_version() < kizuna_domain::disaster::SINCE_APPLY_VERSION {
            return Ok(DomainError::FailedPrecondition("the hub is being upgraded".into()).into());
        }
        let ctx = Ctx { log_index, now_ms: self.clock_ms };
        let recorded = observe::record(&mut self.hub, ctx, observations).map_err(std::io::Error::other)?;
        for record in recorded.audit {
            self.hub.append_audit(record);
        }
        if recorded.refused > 0 {
            tracing::warn!(origin_node, refused = recorded.refused, "observations refused by the state they met");
        }
        self.publish(recorded.events, log_index);
        Ok(CommandResult::Observed {
            applied: recorded.applied,
            duplicates: recorded.duplicates,
            refused: recorded.refused,
            fates: recorded.fates,
        })
    }

    /// A record write of a hub before apply version 7 ([`kizuna_domain::records::SINCE_APPLY_VERSION`]):
    /// the node that proposed it checked the operator.
    fn unsigned_record(&mut self, key: String, value: String) -> std::io::Result<CommandResult> {
        let (version, change) =
            kizuna_domain::records::next(&self.hub, self.clock_ms, key, value).map_err(std::io::Error::other)?;
        self.hub.apply(vec![change]);
        Ok(CommandResult::RecordPut { version })
    }

    /// A state that could not be read is an error of this node, never a refusal to remember.
    fn signed(
        &mut self,
        log_index: u64,
        session: Option<String>,
        origin_node: u64,
        command: Command,
    ) -> std::io::Result<CommandResult> {
        // Commands newer builds brought: an older build cannot decode them (see `APPLY_VERSION`).
        if self.hub.apply_version() < command.since_apply_version() {
            return Ok(DomainError::FailedPrecondition("the hub is being upgraded".into()).into());
        }
        let ctx = Ctx { log_index, now_ms: self.clock_ms };
        let sender = Sender { session: session.as_deref(), origin_node };
        match decide(&self.hub, ctx, sender, command) {
            Ok(Decision { effects, audit }) => {
                let settled = settle(&mut self.hub, self.clock_ms, effects).map_err(std::io::Error::other)?;
                if let Some(record) = audit {
                    self.hub.append_audit(record);
                }
                for transfer in settled.transfers {
                    self.hub.append_audit(inbox::transfer_record(ctx, origin_node, transfer));
                }
                self.publish(settled.events, log_index);
                Ok(CommandResult::Done(settled.outcome))
            }
            Err(DomainError::Unreadable(fault)) => Err(std::io::Error::other(fault)),
            Err(refusal) => Ok(refusal.into()),
        }
    }

    /// Hub `peer` applied this hub's stream up to `highest_applied`: the outbox is pruned.
    fn acknowledged(&mut self, peer: &HubName, highest_applied: u64) -> std::io::Result<CommandResult> {
        Ok(match outbox::acknowledge(&self.hub, peer, highest_applied).map_err(std::io::Error::other)? {
            Ok(changes) => {
                self.hub.apply(changes);
                CommandResult::Done(Outcome::Done)
            }
            Err(e) => DomainError::FailedPrecondition(format!("acknowledgement from {peer}: {e}")).into(),
        })
    }

    /// The notifier's report on `notices`: sent ones leave the queue and, in patient rooms, the
    /// audit chain; failed ones wait for their retry.
    fn notice_delivery(
        &mut self,
        notices: &[notify::NoticeRef],
        delivery: notify::Delivery,
        origin_node: u64,
    ) -> std::io::Result<CommandResult> {
        if delivery == notify::Delivery::Sent {
            let audit = notify::sent_audit(&self.hub, self.clock_ms, origin_node, notices);
            for record in audit.map_err(std::io::Error::other)? {
                self.hub.append_audit(record);
            }
        }
        let changes = notify::record(&self.hub, notices, delivery).map_err(std::io::Error::other)?;
        self.hub.apply(changes);
        Ok(CommandResult::Done(Outcome::Done))
    }

    /// The push notices `notices` of `account` were pushed (or not); subscriptions `gone` are
    /// removed. A sent notice about a patient's room is audited as a mail's is.
    fn push_delivery(
        &mut self,
        account: AccountId,
        notices: &[notify::NoticeRef],
        (delivery, gone): (notify::Delivery, &[String]),
        origin_node: u64,
    ) -> std::io::Result<CommandResult> {
        if delivery == notify::Delivery::Sent {
            let at = (self.clock_ms, origin_node);
            let audit = notify::sent_audit_on(&self.hub, notify::Channel::Push, at, notices);
            for record in audit.map_err(std::io::Error::other)? {
                self.hub.append_audit(record);
            }
        }
        let changes = push::record(&self.hub, account, notices, delivery, gone).map_err(std::io::Error::other)?;
        self.hub.apply(changes);
        Ok(CommandResult::Done(Outcome::Done))
    }

    /// Applies the changes of a hub-level decision; a refusal is its result (a state that could
    /// not be read is this node's error).
    fn decided(&mut self, decision: DomainResult<Vec<Change>>) -> std::io::Result<CommandResult> {
        match decision {
            Ok(changes) => {
                self.hub.apply(changes);
                Ok(CommandResult::Done(Outcome::Done))
            }
            Err(DomainError::Unreadable(fault)) => Err(std::io::Error::other(fault)),
            Err(refusal) => Ok(refusal.into()),
        }
    }

    /// Removes what has been unused for longer than `grace_ms`; the audit chain keeps that the
    /// files of patient rooms existed.
    fn collect_attachments(
        &mut self,
        log_index: u64,
        grace_ms: u64,
        origin_node: u64,
    ) -> std::io::Result<CommandResult> {
        let ctx = Ctx { log_index, now_ms: self.clock_ms };
        let collected = attachments::collect(&self.hub, ctx, grace_ms, origin_node).map_err(std::io::Error::other)?;
        for record in collected.audit {
            self.hub.append_audit(record);
        }
        self.hub.apply(collected.changes);
        Ok(CommandResult::Done(Outcome::Done))
    }

    /// Stores the events one log entry raised and queues them for live subscribers.
    fn publish(&mut self, events: Vec<Raised>, log_index: u64) {
        for event in stamp(events, log_index, self.clock_ms) {
            self.hub.put_event(&event);
            self.events.push(event);
        }
    }

    /// Applies a verified batch ([`inbox::apply_batch`]): only what is new in the origin's
    /// stream, each message decided in order, in this same command.
    fn federated(&mut self, log_index: u64, b: FederatedBatch) -> std::io::Result<CommandResult> {
        let range = match SeqRange::of_batch(b.first_seq, b.messages.len() as u64) {
            Ok(range) => range,
            // Validated before proposing; a malformed entry is still refused deterministically.
            Err(e) => return Ok(DomainError::InvalidArgument(format!("federated batch: {e}")).into()),
        };
        let batch = inbox::Batch {
            origin: &b.origin,
            range,
            messages: &b.messages,
            key_id: &b.key_id,
            signature: &b.signature,
            node: b.origin_node,
        };
        let ctx = Ctx { log_index, now_ms: self.clock_ms };
        let applied = inbox::apply_batch(&mut self.hub, ctx, batch).map_err(std::io::Error::other)?;
        for record in applied.audit {
            self.hub.append_audit(record);
        }
        self.publish(applied.events, log_index);
        Ok(CommandResult::Received(applied.receipt))
    }

    /// The remembered result of `key`, as this batch left it (a storage fault is noted by the
    /// view and ends the batch).
    fn applied_under(&self, key: &str) -> std::io::Result<Option<Applied>> {
        Ok(self.hub.remembered(key))
    }
}

/// Writes the index of every account's connections (`c`, see [`keys::connection_of`]) from the
/// connections table: a data dir written before the index existed gets it when opened. It is
/// derived state, rewritten whole at each open (a hub has some thousands of connections, one
/// short scan), so an interrupted pass needs no marker.
fn index_connections(db: &DB) -> std::io::Result<()> {
    let data = cf(db, CF_SM_DATA);
    let prefix = keys::all(keys::CONNECTIONS);
    let mut wb = WriteBatch::default();
    let empty = to_value(&())?;
    for item in db.iterator_cf(data, IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
        let (k, _) = item.map_err(io_err)?;
        if !k.starts_with(&prefix) {
            break;
        }
        let pair = keys::pair_of_connection_key(&k).ok_or_else(|| io_err(format!("malformed connection key {k:?}")))?;
        for index in keys::connection_of(pair) {
            wb.put_cf(data, index, &empty);
        }
    }
    db.write(wb).map_err(io_err)
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        let applied = get_value(&self.db, CF_SM_META, APPLIED)?;
        let membership = get_value(&self.db, CF_SM_META, MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + OptionalSend,
    {
        // On a follower the commit index that starts this batch came with the leader's next
        // entries, whose answer is woken on this thread too (the log syncs a follower's append
        // where it writes it): that answer goes out first, apply after it (session 44 measured
        // the answer held back by apply otherwise).
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        // Taken: a batch that fails leaves them to be read again.
        let known = match self.written.take() {
            Some(known) => known,
            None => WrittenMeta { clock_ms: self.reader.clock_ms()?, apply_version: self.reader.apply_version()? },
        };
        // The hub may have moved past this build while this node was away (a snapshot from a
        // newer leader, an older binary started on a newer data dir): never apply on.
        if known.apply_version > self.max_apply_version {
            return Err(too_new(known.apply_version, self.max_apply_version));
        }
        let vault = self.reader.vault.clone();
        let mut batch = ApplyBatch {
            max_apply_version: self.max_apply_version,
            clock_ms: known.clock_ms,
            hub: RocksHub::new(&self.db, &vault).knowing_apply_version(known.apply_version),
            events: Vec::new(),
            // Taken, not copied: a batch that fails leaves them unknown.
            hints: std::mem::take(&mut self.sweep_hints),
        };
        let mut replies = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = match entry.payload {
                EntryPayload::Normal(envelope) => batch.apply(entry.log_id.index, envelope),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    Ok(Applied { result: CommandResult::NoOp, log_index: entry.log_id.index, duplicate: false })
                }
                EntryPayload::Blank => {
                    Ok(Applied { result: CommandResult::NoOp, log_index: entry.log_id.index, duplicate: false })
                }
            };
            // First the view's fault (it names the table and key, and marks the node failed).
            if let Err(fault) = batch.stop_if_faulted(entry.log_id.index) {
                let _ = self.reader.apply_fault.set(fault.clone());
                return Err(std::io::Error::other(fault));
            }
            let applied = applied?;
            last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                replies.push((responder, applied));
            }
        }
        let meta = cf(&self.db, CF_SM_META);
        let clock_ms = batch.clock_ms;
        let (events, hints, changed_access) = (batch.events, batch.hints, batch.hub.changed_access().clone());
        let written = WrittenMeta { clock_ms, apply_version: batch.hub.apply_version() };
        let mut wb = WriteBatch::default();
        // Checked after every entry already; the view refuses again, as the last line of defence.
        batch.hub.write_into(&mut wb).map_err(io_err)?;
        wb.put_cf(cf(&self.db, CF_SM_DATA), CLOCK, sealed_value(&vault, CF_SM_DATA, CLOCK, &clock_ms)?);
        if let Some(applied) = last_applied {
            wb.put_cf(meta, APPLIED, to_value(&applied)?);
        }
        if let Some(m) = &membership {
            wb.put_cf(meta, MEMBERSHIP, to_value(m)?);
        }
        // Not logged (see `unlogged_writes`): the log holds the entries durably first (a
        // follower may apply what it has not synced yet: wait for that sync), and it is purged
        // only up to a checkpoint, whose flush wrote the state it covers (`Checkpoints::take`).
        if let Some(applied) = last_applied {
            self.log.synced_to(applied.index).await?;
        }
        self.db.write_opt(wb, &unlogged_writes()).map_err(io_err)?;
        self.sweep_hints = hints;
        self.written = Some(written);
        self.reader.access.record(changed_access);
        for (responder, applied) in replies {
            responder.send(applied);
        }
        for event in events {
            // No subscriber is fine; lagging subscribers resume from the stored events.
            let _ = self.reader.events.send(event);
        }
        self.apply_seconds.record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { reader: self.reader.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), std::io::Error> {
        let reader = self.reader.clone();
        let (meta, snapshot_dir) = (meta.clone(), self.snapshot_dir.clone());
        self.reader.installing.store(true, Ordering::Release);
        self.sweep_hints = SweepHints::default();
        self.written = None;
        let installed = blocking(move || {
            // A peer's snapshot arrives as a file; one handed over in-process (openraft's
            // storage suite) may be another store's checkpoint: its export is installed.
            let file = snapshot.streamable()?;
            let _whole = hold(&reader.whole_state);
            install::install(&reader.db, &file, &meta, &snapshot_dir)?;
            reader.checkpoints.take(&reader.db)
        })
        .await;
        // A refused file left the state untouched; one that failed half way left the marker.
        self.reader.installing.store(install::pending(&self.db)?, Ordering::Release);
        // Whatever was read of the old state, even of its half-replaced form, no longer holds.
        self.reader.access.record(AccessChange::Everyone);
        installed?;
        // The installed state may hold data keys this node has not seen.
        self.reader.vault.reload_hub_keys(&self.db).map_err(std::io::Error::other)?;
        self.reader.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let reader = self.reader.clone();
        // Under the lock: a build or the scrub may be switching checkpoints.
        let current = blocking(move || {
            let _whole = hold(&reader.whole_state);
            reader.checkpoints.current()
        })
        .await?;
        Ok(current.map(|(path, meta)| Snapshot { meta, snapshot: SnapshotFile { path } }))
    }
}

/// Builds this node's snapshots: a checkpoint of its state (see [`crate::checkpoint`]).
#[derive(Clone)]
pub struct SnapshotBuilder {
    reader: StateReader,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let reader = self.reader.clone();
        let (path, meta) = blocking(move || reader.take_checkpoint()).await?;
        Ok(Snapshot { meta, snapshot: SnapshotFile { path } })
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;

    use kizuna_domain::HubView;
    use kizuna_domain::federation::HubName;

    use super::*;
    use crate::raft::Entry;

    fn put_record(index: u64, key: &str) -> Entry {
        let command = LogCommand::PutRecord { key: key.into(), value: "v".into() };
        let envelope = Envelope { idempotency_key: format!("put-{index}"), proposed_at_ms: index, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    /// A signed-in command: apply reads the session `token_hash` first.
    fn logout(index: u64, token_hash: &str) -> Entry {
        let command = LogCommand::Signed {
            session: Some(token_hash.into()),
            origin_node: 1,
            command: Command::Logout { token_hash: token_hash.into() },
        };
        let envelope = Envelope { idempotency_key: format!("logout-{index}"), proposed_at_ms: index, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    /// A collaboration command proposed at `at_ms`, on behalf of `session` if given.
    fn signed_at(index: u64, at_ms: u64, session: Option<&str>, command: Command) -> Entry {
        let command = LogCommand::Signed { session: session.map(Into::into), origin_node: 1, command };
        let envelope = Envelope { idempotency_key: format!("signed-{index}"), proposed_at_ms: at_ms, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    async fn apply(sm: &mut StateMachineStore, entries: Vec<Entry>) -> std::io::Result<()> {
        sm.apply(futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))))).await
    }

    #[tokio::test]
    async fn a_batch_with_an_entry_that_met_a_storage_fault_writes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        apply(&mut sm, vec![put_record(1, "first")]).await.expect("a healthy batch applies");
        sm.db
            .put_cf(cf(&sm.db, CF_SM_DATA), keys::text(keys::SESSIONS, "token"), b"\xff not a session")
            .expect("damage");
        let before = sm.reader().state_digest().expect("digest");

        let refused = apply(&mut sm, vec![put_record(2, "second"), logout(3, "token")]).await;

        let error = refused.expect_err("apply went on over a storage fault");
        let fault = error.get_ref().and_then(|e| e.downcast_ref::<ApplyFault>()).expect("an apply fault");
        assert_eq!(fault.index, 3);
        assert!(matches!(&fault.fault, StorageFault::Decode { key, .. } if key.starts_with("S/")), "{fault}");
        assert_eq!(sm.reader().apply_fault().map(|f| f.index), Some(3), "the reader tells why apply stopped");
        assert_eq!(sm.reader().state_digest().expect("digest"), before, "the poisoned batch wrote something");
        assert_eq!(sm.reader().record("second").expect("read"), None);
        assert_eq!(sm.applied_state().await.expect("applied").0.map(|l| l.index), Some(1));
    }

    fn set_apply_version(index: u64, version: u32) -> Entry {
        let command = LogCommand::SetApplyVersion { version };
        let envelope = Envelope { idempotency_key: format!("apply-version-{index}"), proposed_at_ms: index, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    #[tokio::test]
    async fn the_apply_version_only_rises_and_an_older_build_stops_before_it() {
        let (one, two) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (_l1, mut current) = crate::open(one.path(), crate::MasterKeys::none()).expect("open");
        assert_eq!(current.reader().apply_version().unwrap(), kizuna_domain::FIRST_APPLY_VERSION, "never set");
        let newest = kizuna_domain::APPLY_VERSION;
        let reader = current.reader();
        assert!(!reader.applies_at_least(newest).unwrap(), "not reached yet, and not remembered as reached");
        apply(&mut current, vec![set_apply_version(1, newest), set_apply_version(2, 1)]).await.expect("applied");
        assert_eq!(current.reader().apply_version().unwrap(), newest, "a lower version is no step back");
        assert!(reader.applies_at_least(newest).unwrap(), "a reader taken before sees the move");
        drop(reader);

        // A node of an older build stops at the entry instead of applying past it differently.
        let (_l2, older) = crate::open(two.path(), crate::MasterKeys::none()).expect("open");
        let mut older = older.applying_at_most(kizuna_domain::FIRST_APPLY_VERSION);
        apply(&mut older, vec![put_record(1, "first")]).await.expect("applied");
        let error = apply(&mut older, vec![set_apply_version(2, newest)]).await.expect_err("applied past it");
        assert!(error.to_string().contains("install the hub's current build"), "{error}");
        assert_eq!(older.applied_state().await.expect("applied").0.map(|l| l.index), Some(1));
        assert_eq!(older.reader().apply_version().unwrap(), kizuna_domain::FIRST_APPLY_VERSION);

        // An older build started on a data dir of a hub that moved on applies nothing at all.
        drop((current, _l1));
        let (_l1, reopened) = crate::open(one.path(), crate::MasterKeys::none()).expect("reopen");
        let mut reopened = reopened.applying_at_most(kizuna_domain::FIRST_APPLY_VERSION);
        let error = apply(&mut reopened, vec![put_record(3, "late")]).await.expect_err("applied past the hub");
        assert!(error.to_string().contains("install the hub's current build"), "{error}");
        assert_eq!(reopened.reader().record("late").unwrap(), None);
    }

    /// A record write proposed at `at_ms` under the idempotency key `key`.
    fn put_at(index: u64, at_ms: u64, key: &str) -> Entry {
        let command = LogCommand::PutRecord { key: format!("record-{index}"), value: "v".into() };
        let envelope = Envelope { idempotency_key: key.into(), proposed_at_ms: at_ms, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    #[tokio::test]
    async fn a_result_is_remembered_for_the_retry_window_then_forgotten_the_same_way_everywhere() {
        let (one, two) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (_l1, mut a) = crate::open(one.path(), crate::MasterKeys::none()).expect("open");
        let (_l2, mut b) = crate::open(two.path(), crate::MasterKeys::none()).expect("open");
        let day = RETRY_WINDOW_MS;
        let entries = || {
            vec![
                put_at(1, 1_000, "first"),
                put_at(2, 2_000, "first"),
                put_at(3, 1_000 + day, "other"),
                put_at(4, 1_001 + day, "later"),
                put_at(5, 1_002 + day, "first"),
            ]
        };
        // One node applies them in one batch, the other one by one: the same state.
        apply(&mut a, entries()).await.expect("applied");
        for entry in entries() {
            apply(&mut b, vec![entry]).await.expect("applied");
        }
        assert_eq!(a.reader().state_digest().unwrap(), b.reader().state_digest().unwrap());
        let hub = a.reader();
        let hub = hub.hub();
        // Within the window the retry (entry 2) was answered from entry 1: record-2 never written.
        assert!(a.reader().record("record-2").unwrap().is_none());
        // A day later "first" was forgotten (by entry 4), so entry 5 is a new request.
        assert!(a.reader().record("record-5").unwrap().is_some(), "a retry after the window runs again");
        assert_eq!(hub.remembered("first").map(|r| r.log_index), Some(5));
        assert!(hub.remembered("other").is_some() && hub.remembered("later").is_some());
    }

    #[tokio::test]
    async fn live_events_older_than_the_replay_window_are_forgotten_in_order() {
        use kizuna_domain::events::EventKind;
        let dir = tempfile::tempdir().expect("dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        let mut hub = RocksHub::new(&sm.db, &sm.reader.vault);
        for (cursor, at_ms) in [(16, 1_000), (17, 1_000), (32, 5_000)] {
            let kind = EventKind::Posted { seq: cursor };
            hub.put_event(&Event { cursor, room: kizuna_domain::model::RoomId(7), at_ms, kind });
        }
        let mut wb = WriteBatch::default();
        hub.write_into(&mut wb).expect("events");
        sm.db.write(wb).expect("written");
        let week = EVENT_REPLAY_WINDOW_MS;
        apply(&mut sm, vec![put_at(3, 1_000 + week, "a")]).await.expect("applied");
        assert_eq!(sm.reader().events_forgotten_to().unwrap(), 0, "none older than the window yet");
        apply(&mut sm, vec![put_at(4, 1_001 + week, "b")]).await.expect("applied");
        assert_eq!(sm.reader().events_forgotten_to().unwrap(), 17, "the two of time 1000 are gone");
        let left: Vec<u64> = sm.reader().events_after(0, 10).unwrap().iter().map(|e| e.cursor).collect();
        assert_eq!(left, [32]);
    }

    #[tokio::test]
    async fn ended_sessions_and_old_unused_invitations_are_swept_the_same_on_every_replica() {
        use kizuna_domain::login_guard::{Guarded, LoginGuard};
        use kizuna_domain::model::{AccountId, FacilityId, Invitation, InvitationId, Session};
        let guard = |since_ms, locked_until_ms| LoginGuard { failures: 5, since_ms, locked_until_ms };
        let (one, two) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (_l1, mut a) = crate::open(one.path(), crate::MasterKeys::none()).expect("open");
        let (_l2, mut b) = crate::open(two.path(), crate::MasterKeys::none()).expect("open");
        let day = 24 * 60 * 60 * 1000;
        for sm in [&a, &b] {
            let mut hub = RocksHub::new(&sm.db, &sm.reader.vault);
            let session = |token: &str, created_at_ms| Session {
                token_hash: token.into(),
                account: AccountId(3),
                created_at_ms,
                device: "phone".into(),
                revoked: false,
                last_used_ms: created_at_ms,
            };
            let invitation = |code: &str, expires_at_ms, used_by| Invitation {
                id: InvitationId(1),
                code_hash: code.into(),
                facility: FacilityId(2),
                issued_by: AccountId(1),
                expires_at_ms,
                used_by,
                as_admin: false,
            };
            hub.apply(vec![
                Change::Session(session("old", 1_000)),
                Change::Session(session("recent", 8 * day)),
                Change::Invitation(invitation("expired", 1_000, None)),
                Change::Invitation(invitation("used", 1_000, Some(AccountId(5)))),
                Change::Invitation(invitation("open", 9 * day, None)),
                Change::LoginGuard { guarded: Guarded::Login("ghost".into()), guard: Some(guard(1_000, 0)) },
                Change::LoginGuard { guarded: Guarded::Login("locked".into()), guard: Some(guard(9 * day, 10 * day)) },
            ]);
            hub.set_apply_version(kizuna_domain::login_guard::SINCE_APPLY_VERSION);
            let mut wb = WriteBatch::default();
            hub.write_into(&mut wb).expect("records");
            sm.db.write(wb).expect("written");
        }
        let now = 9 * day;
        let entries = || (1..=32).map(|i| put_at(i, now, &format!("k{i}"))).collect::<Vec<_>>();
        apply(&mut a, entries()).await.expect("applied");
        for entry in entries() {
            apply(&mut b, vec![entry]).await.expect("applied");
        }
        assert_eq!(a.reader().state_digest().unwrap(), b.reader().state_digest().unwrap());
        let reader = a.reader();
        let hub = reader.hub();
        assert!(hub.session("old").unwrap().is_none(), "a session of nine days ago is gone");
        assert_eq!(hub.login_guard(&Guarded::Login("ghost".into())).unwrap(), None, "a spent count is gone");
        assert!(hub.login_guard(&Guarded::Login("locked".into())).unwrap().is_some(), "a lock stays");
        assert!(hub.session("recent").unwrap().is_some());
        assert!(hub.invitation_by_code("expired").unwrap().is_none(), "an unused invitation a week past its end");
        assert!(hub.invitation_by_code("used").unwrap().is_some(), "a used one says who brought whom in");
        assert!(hub.invitation_by_code("open").unwrap().is_some());
    }

    /// Whether the session "old" (ten days old at the entries' clock) is still there after
    /// `entries` entries applied at `version`.
    async fn old_session_left_after(version: u32, entries: u64) -> bool {
        use kizuna_domain::model::{AccountId, Session};
        let dir = tempfile::tempdir().expect("dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        let mut hub = RocksHub::new(&sm.db, &sm.reader.vault);
        let old = Session {
            token_hash: "old".into(),
            account: AccountId(3),
            created_at_ms: 1_000,
            device: "phone".into(),
            revoked: false,
            last_used_ms: 1_000,
        };
        hub.apply(vec![Change::Session(old)]);
        hub.set_apply_version(version);
        let mut wb = WriteBatch::default();
        hub.write_into(&mut wb).expect("records");
        sm.db.write(wb).expect("written");
        let now = 10 * 24 * 60 * 60 * 1000;
        apply(&mut sm, (1..=entries).map(|i| put_at(i, now, &format!("k{i}"))).collect()).await.expect("applied");
        sm.reader().hub().session("old").expect("read").is_some()
    }

    #[tokio::test]
    async fn sweeps_come_every_sixteenth_entry_then_every_256th_from_their_version() {
        let before = SPACED_SWEEPS_SINCE - 1;
        assert!(old_session_left_after(before, 15).await && !old_session_left_after(before, 16).await);
        let spaced = SPACED_SWEEPS_SINCE;
        assert!(old_session_left_after(spaced, 255).await, "no sweep before the 256th entry");
        assert!(!old_session_left_after(spaced, 256).await, "swept at the 256th");
    }

    /// A snapshot of records 1..=n, built by a node of its own in `dir`.
    async fn snapshot_of_records(dir: &std::path::Path, n: u64) -> (Snapshot, StateDigest) {
        let (_log, mut sm) = crate::open(dir, crate::MasterKeys::none()).expect("open");
        apply(&mut sm, (1..=n).map(|i| put_record(i, &format!("k{i}"))).collect()).await.expect("apply");
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
        (snapshot, sm.reader().state_digest().expect("digest"))
    }

    #[tokio::test]
    async fn an_install_interrupted_by_a_stop_is_finished_when_the_node_opens() {
        let (source, target) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (snapshot, digest) = snapshot_of_records(source.path(), 20).await;
        let incoming = {
            let (_log, mut sm) = crate::open(target.path(), crate::MasterKeys::none()).expect("open");
            apply(&mut sm, vec![put_record(1, "other")]).await.expect("apply");
            let incoming = sm.incoming_snapshot_path("from-leader");
            std::fs::copy(snapshot.snapshot.streamable().expect("exported"), &incoming).expect("received");
            // As `install` leaves it after its first batches: the file in place, the marker, the
            // data half replaced.
            std::fs::rename(&incoming, sm.snapshot_dir.join(install::INSTALLING_SNAPSHOT)).expect("in place");
            let marker = to_value(&true).expect("encode");
            sm.db.put_cf(cf(&sm.db, CF_SM_META), keys::INSTALLING, marker).expect("marker");
            for family in crate::state_families::STATE_FAMILIES {
                sm.db.delete_range_cf(cf(&sm.db, family), keys::SM_DATA_START, keys::SM_DATA_END).expect("half");
            }
            incoming
        };
        let (_log, mut sm) = crate::open(target.path(), crate::MasterKeys::none()).expect("reopen");
        assert_eq!(sm.reader().state_digest().expect("digest"), digest, "the install was finished");
        assert_eq!(sm.reader().applied().expect("applied"), snapshot.meta.last_log_id);
        assert_eq!(get_value::<bool>(&sm.db, CF_SM_META, keys::INSTALLING).expect("readable"), None);
        assert!(!incoming.exists() && !sm.snapshot_dir.join(install::INSTALLING_SNAPSHOT).exists());
        let current = sm.get_current_snapshot().await.expect("readable").expect("a current snapshot");
        assert_eq!(current.meta.last_log_id, snapshot.meta.last_log_id, "the installed snapshot is the current one");
    }

    /// openraft builds in a task of its own and may install a snapshot from the leader
    /// meanwhile: a build after the install checkpoints the installed state, never an older one.
    #[tokio::test]
    async fn a_build_after_an_install_keeps_the_installed_snapshot_current() {
        let (source, target) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (newer, digest) = snapshot_of_records(source.path(), 20).await;
        let (_log, mut sm) = crate::open(target.path(), crate::MasterKeys::none()).expect("open");
        apply(&mut sm, vec![put_record(1, "mine")]).await.expect("apply");
        let mut builder = sm.get_snapshot_builder().await;
        let older = builder.build_snapshot().await.expect("built of the state at entry 1");
        let incoming = sm.incoming_snapshot_path("from-leader");
        std::fs::copy(newer.snapshot.streamable().expect("exported"), &incoming).expect("received");
        sm.install_snapshot(&newer.meta, SnapshotFile { path: incoming }).await.expect("install");
        assert!(!older.snapshot.path.exists(), "the older checkpoint is gone");
        assert_eq!(sm.reader().state_digest().expect("digest"), digest, "the installed state");

        let rebuilt = builder.build_snapshot().await.expect("a build on the installed state");
        assert_eq!(rebuilt.meta.last_log_id, newer.meta.last_log_id, "openraft is told of the installed one");
        let current = sm.get_current_snapshot().await.expect("readable").expect("a current snapshot");
        assert_eq!(current.meta, rebuilt.meta);

        apply(&mut sm, vec![put_record(21, "later")]).await.expect("apply");
        let later = builder.build_snapshot().await.expect("built");
        assert_eq!(later.meta.last_log_id.map(|l| l.index), Some(21), "a newer build replaces it");
        assert!(!current.snapshot.path.exists(), "and the one it replaced is gone");
    }

    /// Apply keeps the clock and the apply version its last batch wrote: an install replaces
    /// both, and the next batch goes on from the installed ones.
    #[tokio::test]
    async fn after_an_install_apply_goes_on_from_the_installed_clock_and_apply_version() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
        let (_l, mut leader) = crate::open(dirs[0].path(), crate::MasterKeys::none()).expect("open");
        let newest = kizuna_domain::APPLY_VERSION;
        apply(&mut leader, vec![set_apply_version(1, newest), put_at(2, 50_000, "late")]).await.expect("applied");
        let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.expect("built");
        let install = |sm: &mut StateMachineStore| {
            let incoming = sm.incoming_snapshot_path("from-leader");
            std::fs::copy(snapshot.snapshot.streamable().expect("exported"), &incoming).expect("received");
            SnapshotFile { path: incoming }
        };

        let (_l, mut behind) = crate::open(dirs[1].path(), crate::MasterKeys::none()).expect("open");
        apply(&mut behind, vec![put_at(1, 10, "early")]).await.expect("applied");
        let file = install(&mut behind);
        behind.install_snapshot(&snapshot.meta, file).await.expect("installed");
        apply(&mut behind, vec![put_at(3, 20, "after")]).await.expect("applied");
        assert_eq!(behind.reader().clock_ms().expect("readable"), 50_000, "the installed clock, never an older one");

        let (_l, older) = crate::open(dirs[2].path(), crate::MasterKeys::none()).expect("open");
        let mut older = older.applying_at_most(kizuna_domain::FIRST_APPLY_VERSION);
        apply(&mut older, vec![put_at(1, 10, "early")]).await.expect("applied");
        let file = install(&mut older);
        older.install_snapshot(&snapshot.meta, file).await.expect("installed");
        let error = apply(&mut older, vec![put_at(3, 20, "after")]).await.expect_err("applied past the hub");
        assert!(error.to_string().contains("install the hub's current build"), "{error}");
    }

    /// An install that failed half way leaves its marker and a mixed state: no snapshot or
    /// backup image is made of it.
    #[tokio::test]
    async fn a_half_installed_state_is_never_copied() {
        let dir = tempfile::tempdir().expect("dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        apply(&mut sm, vec![put_record(1, "mine")]).await.expect("apply");
        let mut builder = sm.get_snapshot_builder().await;
        assert!(builder.build_snapshot().await.is_ok(), "a whole state is copied");
        apply(&mut sm, vec![put_record(2, "more")]).await.expect("apply");
        let marker = to_value(&true).expect("encode");
        sm.db.put_cf(cf(&sm.db, CF_SM_META), keys::INSTALLING, marker).expect("marker");
        assert!(builder.build_snapshot().await.is_err(), "no snapshot of a half-installed state");
        let current = sm.get_current_snapshot().await.expect("readable").expect("the whole one stays");
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(1));
        assert!(sm.reader().write_image(&dir.path().join("image")).is_err(), "nor a backup image");
    }

    /// A stop between an install and its checkpoint leaves a state newer than the snapshot, with
    /// the log purged up to the state at the next start: opening checkpoints it.
    #[tokio::test]
    async fn opening_checkpoints_a_state_newer_than_its_snapshot() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
            apply(&mut sm, vec![put_record(1, "one")]).await.expect("apply");
            sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
            apply(&mut sm, vec![put_record(2, "two"), put_record(3, "three")]).await.expect("apply");
        }
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("reopen");
        let current = sm.get_current_snapshot().await.expect("readable").expect("a snapshot");
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(3));
        assert_eq!(current.meta.last_log_id, sm.reader().applied().expect("applied"));
    }

    #[tokio::test]
    async fn a_truncated_snapshot_is_refused_before_the_state_is_touched() {
        let (source, target) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (snapshot, _) = snapshot_of_records(source.path(), 20).await;
        let (_log, mut sm, before) = a_store_with_its_own_state(target.path()).await;
        let incoming = sm.incoming_snapshot_path("cut");
        let bytes = std::fs::read(snapshot.snapshot.streamable().expect("exported")).expect("read");
        std::fs::write(&incoming, &bytes[..bytes.len() - 20]).expect("write");
        let refused = sm.install_snapshot(&snapshot.meta, SnapshotFile { path: incoming }).await;
        assert!(refused.is_err(), "a cut file is not installed");
        assert_untouched(&sm, &before);
    }

    /// An install writes the file's pairs into sorted tables: a file whose keys are not in
    /// order (not one a node writes) is refused before the state is touched.
    #[tokio::test]
    async fn a_snapshot_out_of_key_order_is_refused_before_the_state_is_touched() {
        let (source, target) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (snapshot, _) = snapshot_of_records(source.path(), 20).await;
        let (_log, mut sm, before) = a_store_with_its_own_state(target.path()).await;
        let mut pairs = Vec::new();
        let exported = snapshot.snapshot.streamable().expect("exported");
        crate::snapshot::read_pairs(&exported, |k, v| {
            pairs.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("read");
        let incoming = sm.incoming_snapshot_path("reversed");
        let mut writer = crate::snapshot::SnapshotWriter::create(&incoming, &snapshot.meta).expect("create");
        for (k, v) in pairs.iter().rev() {
            writer.pair(k, v).expect("pair");
        }
        writer.finish().expect("finish");
        let refused = sm.install_snapshot(&snapshot.meta, SnapshotFile { path: incoming }).await;
        assert!(refused.is_err(), "keys out of order are not installed");
        assert_untouched(&sm, &before);
    }

    /// A store in `dir` with a state of its own (for an install to replace), and its digest.
    async fn a_store_with_its_own_state(dir: &std::path::Path) -> (crate::LogStore, StateMachineStore, StateDigest) {
        let (log, mut sm) = crate::open(dir, crate::MasterKeys::none()).expect("open");
        apply(&mut sm, vec![put_record(1, "mine")]).await.expect("apply");
        let before = sm.reader().state_digest().expect("digest");
        (log, sm, before)
    }

    /// A refused install left the state as it was and readable, with nothing of it behind.
    fn assert_untouched(sm: &StateMachineStore, before: &StateDigest) {
        assert!(!sm.reader().installing(), "the state is whole: it may be read");
        assert_eq!(&sm.reader().state_digest().expect("digest"), before, "the state is untouched");
        assert_eq!(get_value::<bool>(&sm.db, CF_SM_META, keys::INSTALLING).expect("readable"), None);
        assert_eq!(leftover_tables(&sm.snapshot_dir), Vec::<String>::new(), "its table files are removed");
        assert!(!sm.snapshot_dir.join(install::INSTALLING_SNAPSHOT).exists(), "nor is its file kept");
    }

    /// The table files an install left in a snapshot directory.
    fn leftover_tables(snapshot_dir: &std::path::Path) -> Vec<String> {
        let names = std::fs::read_dir(snapshot_dir).expect("listed").map(|e| e.expect("entry").file_name());
        names.map(|n| n.to_string_lossy().into_owned()).filter(|n| n.ends_with(".sst")).collect()
    }

    #[tokio::test]
    async fn every_account_finds_its_connections_also_in_a_data_dir_written_before_the_index() {
        use kizuna_domain::model::{AccountId, Connection, ConnectionState};
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b, c) = (AccountId(3), AccountId(300), AccountId(7));
        let asked = Connection { pair: (a, b), state: ConnectionState::Requested { by: b } };
        {
            let (_log, sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
            // As a build before the index wrote it: the connection only.
            let key = keys::ids(keys::CONNECTIONS, a.0, b.0);
            sm.db.put_cf(cf(&sm.db, CF_SM_DATA), key, to_value(&asked).expect("encode")).expect("write");
            assert_eq!(sm.reader().hub().connections_of(b).expect("readable"), []);
        }
        let (_log, sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("reopen");
        let reader = sm.reader();
        let hub = reader.hub();
        for side in [a, b] {
            assert_eq!(hub.connections_of(side).expect("readable"), std::slice::from_ref(&asked), "{side:?}");
        }
        assert_eq!(hub.connections_of(c).expect("readable"), []);
    }

    #[test]
    fn a_connection_is_indexed_under_both_accounts_when_applied() {
        use kizuna_domain::model::{AccountId, Connection, ConnectionState};
        let dir = tempfile::tempdir().expect("temp dir");
        let (_log, sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        let connected = Connection { pair: (AccountId(1), AccountId(256)), state: ConnectionState::Declined };
        let mut hub = RocksHub::new(&sm.db, &sm.reader.vault);
        hub.apply(vec![kizuna_domain::Change::Connection(connected.clone())]);
        for side in [1, 256] {
            assert_eq!(hub.connections_of(AccountId(side)).expect("readable"), std::slice::from_ref(&connected));
        }
        assert_eq!(hub.connections_of(AccountId(2)).expect("readable"), []);
    }

    /// The commands that make the hub's operator `op` and sign her in on the session `token`.
    fn operator_and_session(token: &str) -> (Command, Command) {
        let init =
            Command::InitOperator { login: "op".into(), display_name: "事務局".into(), password_hash: "h".into() };
        let login = Command::CreateSession {
            login: "op".into(),
            token_hash: token.into(),
            device: "pc".into(),
            totp_step: None,
        };
        (init, login)
    }

    /// Each batch that may change whose live events a session receives is numbered with the
    /// accounts it concerns; a record's write concerns nobody, the session policy everyone.
    #[tokio::test]
    async fn access_changes_name_the_accounts_they_concern() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        let (t0, token) = (1_000_000, "op-token");
        let (init, login) = operator_and_session(token);
        apply(&mut sm, vec![signed_at(1, t0, None, init)]).await.expect("apply");
        let reader = sm.reader();
        let op = reader.hub().account_by_login("op").expect("readable").expect("the operator");
        assert_eq!(reader.access_log().count(), 1);
        apply(&mut sm, vec![signed_at(2, t0, None, login)]).await.expect("apply");
        assert_eq!(reader.access_log().between(1, reader.access_log().count()), AccessChange::of_account(op));
        apply(&mut sm, vec![put_record(3, "k")]).await.expect("apply");
        assert_eq!(reader.access_log().count(), 2, "a record's write changes nobody's access");
        let policy = Command::SetSessionPolicy { idle_minutes: 30, absolute_hours: 8 };
        apply(&mut sm, vec![signed_at(4, t0, Some(token), policy)]).await.expect("apply");
        assert_eq!(reader.access_log().between(2, reader.access_log().count()), AccessChange::Everyone);
    }

    /// Whether the operator's logout, proposed two hours after sign-in, got through apply on a
    /// hub that set the policy `policy` (idle minutes, absolute hours) right after sign-in.
    async fn logout_two_hours_on(policy: Option<(u32, u32)>) -> bool {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        let (t0, token) = (1_000_000, "op-token");
        let (init, login) = operator_and_session(token);
        let mut entries = vec![signed_at(1, t0, None, init), signed_at(2, t0, None, login)];
        if let Some((idle_minutes, absolute_hours)) = policy {
            let set = Command::SetSessionPolicy { idle_minutes, absolute_hours };
            entries.push(signed_at(3, t0, Some(token), set));
        }
        let logout = Command::Logout { token_hash: token.into() };
        entries.push(signed_at(4, t0 + 2 * 3_600_000, Some(token), logout));
        apply(&mut sm, entries).await.expect("apply");
        sm.reader().hub().session(token).expect("readable").expect("the session").revoked
    }

    /// A message of the current wire version whose content is no message: applied as the next in
    /// its stream, audited as unreadable and skipped (a message of an unknown version would stop
    /// the stream instead).
    fn malformed(text: &str) -> Vec<u8> {
        [&[kizuna_domain::federation::wire::WIRE_VERSION][..], text.as_bytes()].concat()
    }

    /// A verified batch of Gunma's stream, under the idempotency key the server derives.
    fn federated(index: u64, first_seq: u64, bodies: &[&str]) -> Entry {
        let command = LogCommand::FederatedBatch {
            origin: HubName::new("gunma").unwrap(),
            first_seq,
            messages: bodies.iter().map(|b| malformed(b)).collect(),
            key_id: "gunma-2026".into(),
            signature: vec![0xab; 64],
            origin_node: 1,
        };
        let key = format!("federation/gunma/{first_seq}/{}", bodies.len());
        let envelope = Envelope { idempotency_key: key, proposed_at_ms: index, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    fn inbound(sm: &StateMachineStore, origin: &HubName) -> u64 {
        let reader = sm.reader();
        reader.hub().inbound(origin).expect("readable").highest_applied()
    }

    fn audit_entries(sm: &StateMachineStore) -> Vec<kizuna_domain::audit::AuditEntry> {
        let reader = sm.reader();
        reader.hub().audit_after(0, 100)
    }

    fn inbox(sm: &StateMachineStore) -> Vec<(u64, String)> {
        let reader = sm.reader();
        let hub = reader.hub();
        let messages = hub.inbox_after(&HubName::new("gunma").unwrap(), 0, 100);
        assert!(hub.fault().is_none());
        messages.into_iter().map(|m| (m.seq, String::from_utf8(m.body[1..].to_vec()).unwrap())).collect()
    }

    #[tokio::test]
    async fn federated_batches_apply_once_and_in_order_in_replicated_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_log, mut sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
        let gunma = HubName::new("gunma").unwrap();
        let highest = |sm: &StateMachineStore| inbound(sm, &gunma);
        // The batches' records (these bodies are no messages, so each is also audited as
        // unreadable and skipped: the stream goes on).
        let audited = |sm: &StateMachineStore| {
            let all = audit_entries(sm);
            let unreadable = all.iter().filter(|e| e.record.what.contains("unreadable")).count();
            let batches: Vec<_> = all.into_iter().filter(|e| e.record.what.contains("received")).collect();
            assert_eq!(unreadable, inbox(sm).len(), "every applied message was decided");
            batches
        };

        apply(&mut sm, vec![federated(1, 1, &["a", "b"])]).await.expect("apply");
        assert_eq!((highest(&sm), inbox(&sm)), (2, vec![(1, "a".into()), (2, "b".into())]));
        let entries = audited(&sm);
        assert_eq!(entries.len(), 1);
        assert!(entries[0].record.what.contains("received 1..=2 from gunma"), "{}", entries[0].record.what);
        assert!(entries[0].record.what.contains(&"ab".repeat(64)), "the signature is kept");

        // The same batch in a new log entry (a replay under another key): nothing applies.
        let mut replay = federated(2, 1, &["a", "b"]);
        if let EntryPayload::Normal(e) = &mut replay.payload {
            e.idempotency_key = "replayed".into();
        }
        apply(&mut sm, vec![replay]).await.expect("apply");
        assert_eq!((highest(&sm), inbox(&sm).len(), audited(&sm).len()), (2, 2, 1));

        // A retry after a lost reply, overlapping and longer: only the tail applies.
        apply(&mut sm, vec![federated(3, 2, &["b", "c", "d"])]).await.expect("apply");
        assert_eq!(highest(&sm), 4);
        assert_eq!(inbox(&sm), [(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into())]);

        // After a hole: nothing applies, the stream still expects 5.
        apply(&mut sm, vec![federated(4, 6, &["f"])]).await.expect("apply");
        assert_eq!((highest(&sm), inbox(&sm).len(), audited(&sm).len()), (4, 4, 2));

        // The origin resends from 5, then the batch once refused for the gap (same key) applies.
        apply(&mut sm, vec![federated(5, 5, &["e"]), federated(6, 6, &["f"])]).await.expect("apply");
        assert_eq!(highest(&sm), 6);
        assert_eq!(inbox(&sm).last(), Some(&(6, "f".into())));
    }

    #[tokio::test]
    async fn apply_refuses_a_session_older_than_the_hubs_own_policy_allows() {
        assert!(logout_two_hours_on(None).await, "12 hours by default: still valid");
        assert!(logout_two_hours_on(Some((30, 3))).await);
        assert!(!logout_two_hours_on(Some((30, 1))).await, "1 hour: ended");
    }
}
