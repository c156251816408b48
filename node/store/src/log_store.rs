//! The Raft log and Raft metadata (vote, committed, purged) in RocksDB.
//!
//! Every method that openraft relies on for safety is on disk when openraft hears it is done:
//! votes, truncations and purges write with `sync = true` before they return. An append
//! writes its batch unsynced and returns — the entries are readable, so replication sends them
//! to the followers at once — and the log's syncer thread reports it flushed once a sync of
//! the write-ahead log has covered it (openraft counts the leader's own copy for a commit only
//! then). The leader's fsync thus runs while the followers write theirs, as in etcd, instead of
//! before them; and one sync covers every append waiting for it (group commit).
//!
//! A follower's append of a lone entry, with no sync in flight and the disk answering quickly,
//! is synced where it is written instead (on Raft's thread, as etcd's follower syncs in its Raft
//! loop): its answer to the leader waits for that sync either way, and this spares it the
//! syncer's wake-up and the syncer's report. Under load the syncer keeps taking the appends, so
//! that Raft's thread takes the next entries in while it syncs; the leader's own appends always
//! go to it, so that replication sends them meanwhile. See [`InlineSyncs::here`].
//!
//! The log has a RocksDB of its own (see the crate's doc), so a sync of its write-ahead log
//! covers the log alone: apply, which writes the state to the other RocksDB unsynced, waits
//! until the log holds its entries durably ([`LogDurability`]).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{DB, Direction, FlushOptions, IteratorMode, WriteBatch};
use tokio::sync::watch;

use super::{
    CF_RAFT_LOG, CF_RAFT_META, Vault, blocking, cf, decode_sealed, get_value, io_err, sealed_value, synced_writes,
    to_value,
};
use crate::keys::{self, COMMITTED, PURGED, VOTE, log_index};
use crate::log_tail::LogTail;
use crate::raft::{Entry, LogId, NodeId, TypeConfig, Vote};

/// The stored bytes of log entries one replication message carries at most (after the
/// entry that crosses it): well below the 64 MiB a peer's Raft service decodes.
pub const REPLICATION_BYTES: usize = 8 << 20;

#[derive(Clone)]
pub struct LogStore {
    /// The log's own RocksDB (see the crate's doc): its write-ahead log holds entries alone.
    db: Arc<DB>,
    /// Entries carry every command (post texts, patient names): sealed under the node's key.
    vault: Arc<Vault>,
    /// Appends written and waiting for a sync of the write-ahead log (see the module's doc).
    syncer: Sender<Unsynced>,
    /// How far the log is written and synced, for apply to wait on (see [`LogDurability`]).
    progress: Arc<watch::Sender<LogProgress>>,
    /// The newest entries as appended, read by replication and apply without RocksDB.
    tail: Arc<Mutex<LogTail>>,
    growth: LogGrowth,
    /// What openraft last said is committed, until the log's next write carries it.
    committed: Arc<UnsavedCommitted>,
    /// Which appends are synced where they are written (see [`LogStore::append`]).
    inline: Arc<InlineSyncs>,
}

/// A sync this long or longer sends the next appends to the syncer until one is quick again:
/// a sync where the append is written holds Raft's thread, and a disk that stalls must not keep
/// a follower from answering heartbeats (it would then call an election once it resumes).
const QUICK_SYNC: std::time::Duration = std::time::Duration::from_millis(20);

/// What decides whether an append is synced where it is written: whose entries they are,
/// whether an earlier append still waits for the syncer (its report must come first), and how
/// long the last sync took; and the one way either place syncs.
struct InlineSyncs {
    /// This node, once [`LogStore::sync_followed_appends_inline`] told it; until then every
    /// append goes to the syncer.
    member: std::sync::OnceLock<NodeId>,
    /// Appends handed to the syncer and not yet reported flushed.
    at_syncer: AtomicUsize,
    /// The last sync's duration in microseconds, wherever it ran.
    last_sync_micros: AtomicU64,
    /// `kizuna_raft_log_sync_seconds` (the "fsync slow" alert), looked up once.
    sync_seconds: metrics::Histogram,
}

impl InlineSyncs {
    fn new(sync_seconds: metrics::Histogram) -> Self {
        let (member, at_syncer, last_sync_micros) = Default::default();
        Self { member, at_syncer, last_sync_micros, sync_seconds }
    }

    /// One sync of `db`'s write-ahead log, on the syncer's thread or where an append was
    /// written: its duration goes to the histogram and decides where the next append syncs.
    fn sync(&self, db: &DB) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let synced = db.flush_wal(true).map_err(io_err);
        self.took(started.elapsed());
        self.sync_seconds.record(started.elapsed().as_secs_f64());
        synced
    }

    /// Whether `entries` are synced where they are written: one entry another member led (this
    /// node follows, and the leader had nothing else to send with it), nothing at the syncer,
    /// and the disk answering quickly. Under load a leader sends several entries at a time, and
    /// the follower's Raft thread then takes the next ones in while the syncer syncs (measured
    /// with every followed append synced here: 5 % more writes at one client, 6 % fewer at 256,
    /// docs/benchmarks.md, session 46).
    fn here(&self, entries: &[Entry]) -> bool {
        let Some(me) = self.member.get() else { return false };
        let [lone] = entries else { return false };
        let followed = lone.log_id.leader_id.node_id != *me;
        let quick = self.last_sync_micros.load(Ordering::Relaxed) < QUICK_SYNC.as_micros() as u64;
        followed && quick && self.at_syncer.load(Ordering::Acquire) == 0
    }

    fn took(&self, sync: std::time::Duration) {
        self.last_sync_micros.store(u64::try_from(sync.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// The committed log id openraft saved last, written into the log's next append instead of a
/// write of its own: openraft waits for `save_committed` before it hands the entries to apply,
/// so a write there sat on every write's path, on every member (docs/benchmarks.md, session
/// 41). It stays a hint either way (never synced; openraft re-learns it from the leader), and
/// on disk it never passes the entries it names: they were written before it, in the same
/// write-ahead log. A store dropped with one not yet written writes it then.
struct UnsavedCommitted {
    /// Held, not weakly: the last copy of the store drops its own handle first.
    db: Arc<DB>,
    /// The encoded `Option<LogId>`, as [`COMMITTED`] holds it.
    latest: Mutex<Option<Vec<u8>>>,
}

impl UnsavedCommitted {
    fn keep(&self, encoded: Vec<u8>) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(encoded);
    }

    /// Moves the committed id not yet written, if there is one, into `batch`.
    fn carry_into(&self, batch: &mut WriteBatch) {
        let unsaved = self.latest.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(encoded) = unsaved {
            batch.put_cf(cf(&self.db, CF_RAFT_META), COMMITTED, encoded);
        }
    }
}

impl Drop for UnsavedCommitted {
    fn drop(&mut self) {
        let unsaved = self.latest.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(encoded) = unsaved
            && let Err(e) = self.db.put_cf(cf(&self.db, CF_RAFT_META), COMMITTED, encoded)
        {
            tracing::warn!("the log's committed index was not saved at close: {e}");
        }
    }
}

/// The stored bytes of the entries this process appended to its log, counted up only: the
/// snapshot policy compares it between snapshots (an attached file's chunks are 128 KiB
/// entries, so a count of entries alone says little about the log's size on disk).
#[derive(Clone, Default)]
pub struct LogGrowth(Arc<AtomicU64>);

impl LogGrowth {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An append written and not yet synced: openraft's callback, the epoch it was written in and
/// its last index.
struct Unsynced {
    callback: IOFlushed<TypeConfig>,
    epoch: u64,
    last_index: u64,
}

/// How far this node's log is written and durable. `epoch` counts truncations: a sync that
/// covers appends written before one does not raise `synced` past what it kept.
#[derive(Debug, Clone, Copy, Default)]
struct LogProgress {
    epoch: u64,
    written: u64,
    synced: u64,
}

/// What apply waits on before it writes a batch of entries: the state and the log are in two
/// RocksDBs with a write-ahead log each, and openraft applies an entry a follower has written
/// but not yet synced (committed by the others). Were the state's unsynced write to reach the
/// disk before the log's, a crash would leave a state ahead of its log.
#[derive(Clone)]
pub struct LogDurability(watch::Receiver<LogProgress>);

impl LogDurability {
    /// Returns once every entry up to `index` that the log holds is durable. An index the log
    /// never had written (a test applying straight to the state machine) does not wait.
    pub(crate) async fn synced_to(&mut self, index: u64) -> std::io::Result<()> {
        let durable = |p: &LogProgress| p.synced >= index || p.written < index;
        self.0.wait_for(durable).await.map(|_| ()).map_err(|_| std::io::Error::other("the log is closed"))
    }
}

impl LogStore {
    /// The log of `db`, with its syncer thread (which ends when the last copy of the store is
    /// dropped; it holds the database weakly, so closing it waits for nobody).
    pub(crate) fn new(db: Arc<DB>, vault: Arc<Vault>) -> std::io::Result<Self> {
        // What the log holds when it opens is made durable now: a process that stopped may
        // have left unsynced writes in the OS's cache, and apply counts them as synced.
        db.flush_wal(true).map_err(io_err)?;
        let last = last_index(&db)?;
        let progress = Arc::new(watch::Sender::new(LogProgress { epoch: 0, written: last, synced: last }));
        let (syncer, waiting) = channel();
        let (weak, reported) = (Arc::downgrade(&db), progress.clone());
        // The histogram is looked up in the metrics registry once, not at every sync.
        let inline = Arc::new(InlineSyncs::new(metrics::histogram!("kizuna_raft_log_sync_seconds")));
        let syncer_inline = inline.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_appends(&weak, &waiting, &reported, &syncer_inline))?;
        let committed = Arc::new(UnsavedCommitted { db: db.clone(), latest: Mutex::default() });
        let growth = LogGrowth::default();
        Ok(Self { db, vault, syncer, progress, tail: Arc::default(), growth, committed, inline })
    }

    /// From now on, a lone entry another member led may be synced where it is written (see
    /// [`InlineSyncs::here`]); `me` is this node.
    pub fn sync_followed_appends_inline(&self, me: NodeId) {
        // Set once: a node's id does not change while its store is open.
        let _ = self.inline.member.set(me);
    }

    /// The log's RocksDB (see [`crate::StateReader`]'s `log_db`).
    pub(crate) fn database(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// Makes the log of a node restored from a backup image begin right after `last`: the
    /// markers say everything up to it is purged and committed, and the node voted `vote`.
    pub(crate) fn start_after(&self, last: LogId, vote: &Vote) -> std::io::Result<()> {
        let mut batch = WriteBatch::default();
        // An unsaved committed id of before the restore is taken, and overwritten below.
        self.committed.carry_into(&mut batch);
        batch.put_cf(cf(&self.db, CF_RAFT_META), PURGED, to_value(&last)?);
        batch.put_cf(cf(&self.db, CF_RAFT_META), COMMITTED, to_value(&Some(last))?);
        batch.put_cf(cf(&self.db, CF_RAFT_META), VOTE, to_value(vote)?);
        Self::write_synced(&self.db, batch)
    }

    /// The last entry known committed as the log holds it: openraft saves it as it learns it,
    /// and the log's next write carries it ([`UnsavedCommitted`]). Read when the log opens,
    /// before anything is saved.
    pub(crate) fn committed(&self) -> std::io::Result<Option<LogId>> {
        Ok(get_value::<Option<LogId>>(&self.db, CF_RAFT_META, COMMITTED)?.flatten())
    }

    /// What apply waits on (see [`LogDurability`]).
    pub fn durability(&self) -> LogDurability {
        LogDurability(self.progress.subscribe())
    }

    /// How much this process appended to the log, as it goes on.
    pub fn growth(&self) -> LogGrowth {
        self.growth.clone()
    }

    fn last_entry(&self) -> std::io::Result<Option<Entry>> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_RAFT_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(io_err)?;
                decode_sealed(&self.vault, CF_RAFT_LOG, &k, &v).map(Some)
            }
        }
    }

    fn tail(&self) -> MutexGuard<'_, LogTail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries from `start` to `end_inclusive` (or the last), stopping after the one that
    /// brings their stored size to `byte_budget`: from the tail in memory when it holds them.
    async fn read_entries(
        &self,
        start: u64,
        end_inclusive: Option<u64>,
        byte_budget: usize,
    ) -> Result<Vec<Entry>, std::io::Error> {
        if let Some(entries) = self.tail().read(start, end_inclusive, byte_budget) {
            return Ok(entries);
        }
        let (db, vault) = (self.db.clone(), self.vault.clone());
        blocking(move || {
            let mode = IteratorMode::From(&log_index(start), Direction::Forward);
            let (mut entries, mut bytes) = (Vec::new(), 0usize);
            for item in db.iterator_cf(cf(&db, CF_RAFT_LOG), mode) {
                let (k, v) = item.map_err(io_err)?;
                let index = keys::number(&k).map_err(io_err)?;
                if end_inclusive.is_some_and(|end| index > end) || bytes >= byte_budget {
                    break;
                }
                bytes = bytes.saturating_add(v.len());
                entries.push(decode_sealed(&vault, CF_RAFT_LOG, &k, &v)?);
            }
            Ok(entries)
        })
        .await
    }

    /// Writes `entries`, sealed, in one batch, not synced: readable when this returns, durable
    /// once the write-ahead log is synced after it.
    async fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), std::io::Error> {
        let mut batch = WriteBatch::default();
        let log_cf = cf(&self.db, CF_RAFT_LOG);
        let mut written = Vec::new();
        for entry in entries {
            let key = log_index(entry.log_id.index);
            let value = sealed_value(&self.vault, CF_RAFT_LOG, &key, &entry)?;
            written.push((entry, value.len()));
            batch.put_cf(log_cf, key, value);
        }
        self.committed.carry_into(&mut batch);
        // Written here, not on the blocking pool: an unsynced write is a memtable insert and a
        // write to the OS's cache, and every append of a write's path (the leader's, then each
        // follower's) paid two thread hand-offs for it (docs/benchmarks.md, session 23). Apply
        // writes the state the same way.
        self.db.write(batch).map_err(io_err)?;
        if let Some((last, _)) = written.last() {
            let index = last.log_id.index;
            // Nobody to wake: a higher `written` never ends a wait for a sync.
            self.progress.send_if_modified(|p| {
                p.written = p.written.max(index);
                false
            });
        }
        let bytes: usize = written.iter().map(|(_, stored)| stored).sum();
        self.growth.0.fetch_add(bytes as u64, Ordering::Relaxed);
        self.tail().appended(written);
        Ok(())
    }

    /// One write batch and one fsync; its duration is the `kizuna_raft_log_sync_seconds`
    /// histogram (the "fsync slow" alert).
    /// Called once a synced write of the log's RocksDB returned: it synced the whole
    /// write-ahead log, so what was written `before` it began is durable. Not left to the
    /// syncer alone: after a truncation its report of the appends before no longer counts
    /// (another epoch), and openraft may append nothing more while apply waits (a snapshot's
    /// install queued behind that apply would then wait for ever).
    fn synced_up_to(&self, before: LogProgress) {
        self.progress.send_if_modified(|p| {
            let raised = p.epoch == before.epoch && before.written > p.synced;
            if raised {
                p.synced = before.written;
            }
            raised
        });
    }

    /// Syncs the write-ahead log here, not on the syncer's thread, and reports what it covers.
    fn sync_here(&self, callback: IOFlushed<TypeConfig>) -> Result<(), std::io::Error> {
        let before = *self.progress.borrow();
        match self.inline.sync(&self.db) {
            Ok(()) => {
                self.synced_up_to(before);
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    fn write_synced(db: &DB, batch: WriteBatch) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let written = db.write_opt(batch, &synced_writes()).map_err(io_err);
        metrics::histogram!("kizuna_raft_log_sync_seconds").record(started.elapsed().as_secs_f64());
        written
    }
}

/// The index of the log's last entry (0 for an empty log).
fn last_index(db: &DB) -> std::io::Result<u64> {
    match db.iterator_cf(cf(db, CF_RAFT_LOG), IteratorMode::End).next() {
        None => Ok(0),
        Some(item) => keys::number(&item.map_err(io_err)?.0).map_err(io_err),
    }
}

/// The syncer thread: takes every append waiting, syncs the write-ahead log once (which makes
/// every write before it durable), raises the log's synced index and reports them flushed, in
/// the order they were written.
fn sync_appends(
    db: &Weak<DB>,
    waiting: &Receiver<Unsynced>,
    progress: &watch::Sender<LogProgress>,
    inline: &InlineSyncs,
) {
    while let Ok(first) = waiting.recv() {
        let appends: Vec<_> = std::iter::once(first).chain(waiting.try_iter()).collect();
        let synced = sync_wal(db, inline);
        if synced.is_ok()
            && let Some(last) = appends.last()
        {
            let (epoch, index) = (last.epoch, last.last_index);
            progress.send_if_modified(|p| {
                let raised = p.epoch == epoch && index > p.synced;
                if raised {
                    p.synced = index;
                }
                raised
            });
        }
        let reported = appends.len();
        for append in appends {
            let result = synced.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
            append.callback.io_completed(result);
        }
        // After the reports: an append synced inline is reported after these.
        inline.at_syncer.fetch_sub(reported, Ordering::Release);
    }
}

/// The syncer's sync of the write-ahead log, unless the database is closed.
fn sync_wal(db: &Weak<DB>, inline: &InlineSyncs) -> std::io::Result<()> {
    let db = db.upgrade().ok_or_else(|| std::io::Error::other("the database is closed"))?;
    inline.sync(&db)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end_inclusive = match range.end_bound() {
            Bound::Included(i) => Some(*i),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => Some(i - 1),
            Bound::Unbounded => None,
        };
        self.read_entries(start, end_inclusive, usize::MAX).await
    }

    /// What replication sends in one message: entries from `start`, at most [`REPLICATION_BYTES`]
    /// of them (at least one), so that a run of large entries never makes a message larger than
    /// the peers accept (openraft asks for up to 300 entries at a time).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, std::io::Error> {
        if end <= start {
            return Ok(Vec::new());
        }
        self.read_entries(start, Some(end - 1), REPLICATION_BYTES).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        get_value(&self.db, CF_RAFT_META, VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let last_purged_log_id: Option<LogId> = get_value(&self.db, CF_RAFT_META, PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        let bytes = to_value(vote)?;
        let before = *self.progress.borrow();
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_META), VOTE, bytes);
            Self::write_synced(&db, batch)
        })
        .await?;
        self.synced_up_to(before);
        Ok(())
    }

    /// Kept for the log's next write (see [`UnsavedCommitted`]).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        self.committed.keep(to_value(&committed)?);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        self.committed()
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let sync_inline = self.inline.here(&entries);
        if let Err(e) = self.write_entries(entries).await {
            callback.io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
        // Openraft's core waits for this sync, as etcd's Raft loop waits for its follower's.
        if sync_inline {
            return self.sync_here(callback);
        }
        let LogProgress { epoch, written, .. } = *self.progress.borrow();
        self.inline.at_syncer.fetch_add(1, Ordering::AcqRel);
        // Only a syncer that ended (its thread panicked) refuses the callback: report it here.
        if let Err(refused) = self.syncer.send(Unsynced { callback, epoch, last_index: written }) {
            self.inline.at_syncer.fetch_sub(1, Ordering::AcqRel);
            let gone = || std::io::Error::other("the log's syncer thread ended");
            refused.0.callback.io_completed(Err(gone()));
            return Err(gone());
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        // A new epoch: the entries cut off no longer count as written, nor as synced when a
        // sync that covered them reports.
        let kept = from.saturating_sub(1);
        self.progress.send_modify(|p| {
            p.epoch += 1;
            p.written = p.written.min(kept);
            p.synced = p.synced.min(kept);
        });
        let before = *self.progress.borrow();
        // The tail first: a read in between finds the entries in RocksDB, as before.
        self.tail().truncated_after(last_log_id.map(|id| id.index));
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf(&db, CF_RAFT_LOG), log_index(from), log_index(u64::MAX));
            batch.delete_cf(cf(&db, CF_RAFT_LOG), log_index(u64::MAX));
            Self::write_synced(&db, batch)
        })
        .await?;
        self.synced_up_to(before);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        let purged = to_value(&log_id)?;
        self.tail().purged_to(log_id.index);
        let before = *self.progress.borrow();
        let db = self.db.clone();
        blocking(move || {
            // The purged marker and the deletion land in one batch: the log never has a hole
            // between the marker and the first stored entry.
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_META), PURGED, purged);
            batch.delete_range_cf(cf(&db, CF_RAFT_LOG), log_index(0), log_index(log_id.index + 1));
            Self::write_synced(&db, batch)?;
            // Flushed now, the memtable's entries are mostly deleted and a flush writes only
            // the few kept; and a node purges after its own checkpoints, a third of a step from
            // the other members'. Left to fill, the memtable would flush on every member at
            // once (they append the same bytes), the moment that stalls a commit most
            // (docs/benchmarks.md, session 35). The markers' family is flushed with it: every
            // append carries the committed id there, so until it flushes its memtable keeps
            // every WAL file since its last flush alive, and none is recycled (`open_db`).
            let mut in_background = FlushOptions::default();
            in_background.set_wait(false);
            let families = [cf(&db, CF_RAFT_LOG), cf(&db, CF_RAFT_META)];
            db.flush_cfs_opt(&families, &in_background).map_err(io_err)
        })
        .await?;
        self.synced_up_to(before);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kizuna_domain::{Envelope, LogCommand};
    use openraft::RaftLogReader;
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;

    use super::REPLICATION_BYTES;
    use crate::MasterKeys;
    use crate::raft::{Entry, TypeConfig};

    /// An entry of about `bytes` (a record value: the largest a record may hold).
    fn large(index: u64) -> Entry {
        let value = "x".repeat(kizuna_domain::records::MAX_VALUE_BYTES);
        let command = LogCommand::PutRecord { key: format!("k{index}"), value };
        let envelope = Envelope { idempotency_key: format!("e-{index}"), proposed_at_ms: index, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    #[tokio::test]
    async fn a_replication_read_stops_at_its_byte_budget_and_never_comes_back_empty() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, _state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        let per_entry = kizuna_domain::records::MAX_VALUE_BYTES;
        let count = (REPLICATION_BYTES / per_entry + 20) as u64;
        log.write_entries((1..=count).map(large)).await.expect("written");

        let limited = log.limited_get_log_entries(1, count + 1).await.expect("read");
        let carried: usize = limited.len() * per_entry;
        assert!(limited.len() < count as usize, "stopped before the end: {} of {count}", limited.len());
        assert!(carried >= REPLICATION_BYTES && carried <= REPLICATION_BYTES + 2 * per_entry, "{carried} bytes");
        assert_eq!(limited.first().map(|e| e.log_id.index), Some(1));
        let last = log.limited_get_log_entries(count, count + 1).await.expect("read");
        assert_eq!(last.len(), 1, "a non-empty range gives at least one entry");
        assert!(log.limited_get_log_entries(5, 5).await.expect("read").is_empty());
        let all = log.try_get_log_entries(1..=count).await.expect("read");
        assert_eq!(all.len(), count as usize, "an unlimited read is whole");
    }

    /// The state and the log are in two RocksDBs: apply must not write a state whose entries
    /// the log holds only unsynced (a follower applies what the others committed).
    #[tokio::test]
    async fn apply_writes_a_batch_only_once_the_log_holds_it_durably() {
        use openraft::storage::{IOFlushed, RaftLogStorage, RaftStateMachine};
        use openraft::type_config::TypeConfigExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, mut state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        log.write_entries([large(1)]).await.expect("written, no sync asked for");
        let mut applying = Box::pin(state.apply(futures::stream::iter([Ok((large(1), None))])));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut applying).await;
        assert!(waited.is_err(), "apply waited for the log's sync");

        let (tx, rx) = TypeConfig::oneshot();
        log.append([large(2)], IOFlushed::signal(tx)).await.expect("appended");
        rx.await.expect("the syncer answered").expect("synced");
        let applied = tokio::time::timeout(std::time::Duration::from_secs(10), applying).await;
        applied.expect("applied once the sync covered entry 1").expect("applied");
        assert!(state.reader().record("k1").expect("read").is_some(), "the state written");
    }

    /// openraft's committed index reaches the disk with the log's next append, not in a write
    /// of its own, and a store closed before another append writes it then.
    #[tokio::test]
    async fn the_committed_index_rides_on_the_next_append_and_is_written_at_close() {
        use openraft::storage::RaftLogStorage;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        log.write_entries((1..=2).map(large)).await.expect("written");
        log.save_committed(Some(log_id::<TypeConfig>(1, 1, 1))).await.expect("saved");
        assert_eq!(log.committed().expect("read"), None, "no write of its own");
        log.write_entries([large(3)]).await.expect("written");
        assert_eq!(log.committed().expect("read"), Some(log_id::<TypeConfig>(1, 1, 1)), "the append carried it");

        log.save_committed(Some(log_id::<TypeConfig>(1, 1, 3))).await.expect("saved");
        drop((log, state));
        let (mut reopened, _state) = crate::open(dir.path(), MasterKeys::none()).expect("reopen");
        let committed = reopened.read_committed().await.expect("read");
        assert_eq!(committed, Some(log_id::<TypeConfig>(1, 1, 3)), "written when the store closed");
    }

    #[tokio::test]
    async fn a_truncation_takes_back_what_the_log_counts_as_written() {
        use openraft::storage::RaftLogStorage;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, _state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        log.write_entries((1..=3).map(large)).await.expect("written");
        let mut durability = log.durability();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), durability.synced_to(3)).await;
        assert!(waited.is_err(), "written, not synced");
        log.truncate_after(Some(log_id::<TypeConfig>(1, 1, 1))).await.expect("truncated");
        let at_once = tokio::time::timeout(std::time::Duration::from_secs(5), durability.synced_to(3)).await;
        at_once.expect("entry 3 is no longer in the log: nothing to wait for").expect("open");
    }

    /// A follower's unsynced entries kept by a truncation: its synced write covers them, and
    /// apply's wait for them ends without another append (openraft may send none: a snapshot
    /// install waits behind that apply).
    #[tokio::test]
    async fn a_truncation_syncs_the_entries_it_keeps() {
        use openraft::storage::RaftLogStorage;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, _state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        log.write_entries((1..=3).map(large)).await.expect("written, no sync asked for");
        let mut durability = log.durability();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), durability.synced_to(2)).await;
        assert!(waited.is_err(), "written, not synced");
        log.truncate_after(Some(log_id::<TypeConfig>(1, 1, 2))).await.expect("truncated");
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), durability.synced_to(2)).await;
        ended.expect("entry 2 is durable: the truncation synced it").expect("open");
    }

    #[test]
    fn only_a_lone_followed_entry_with_nothing_at_the_syncer_and_a_quick_disk_is_synced_where_written() {
        use std::sync::atomic::Ordering;
        let mut decisions = super::InlineSyncs::new(metrics::Histogram::noop());
        let led_by_1 = [large(1)];
        assert!(!decisions.here(&led_by_1), "this node's id not yet known");
        decisions.member.set(1).expect("set once");
        assert!(!decisions.here(&led_by_1), "this node's own entries: the syncer");
        decisions.member.take();
        decisions.member.set(2).expect("set once");
        assert!(decisions.here(&led_by_1), "another member's entries, nothing waiting");
        assert!(!decisions.here(&[]), "nothing appended");
        assert!(!decisions.here(&[large(1), large(2)]), "a batch: the leader is under load");
        decisions.at_syncer.store(1, Ordering::Release);
        assert!(!decisions.here(&led_by_1), "an earlier append at the syncer reports first");
        decisions.at_syncer.store(0, Ordering::Release);
        decisions.took(super::QUICK_SYNC);
        assert!(!decisions.here(&led_by_1), "the last sync was slow");
        decisions.took(std::time::Duration::from_micros(150));
        assert!(decisions.here(&led_by_1), "quick again");
    }

    /// A follower's append is durable and reported flushed when `append` returns: synced where
    /// it was written, not handed to the syncer's thread (whose report would come later).
    #[tokio::test]
    async fn a_followed_append_is_synced_before_append_returns() {
        use futures::FutureExt;
        use openraft::storage::{IOFlushed, RaftLogStorage};
        use openraft::type_config::TypeConfigExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, _state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        log.sync_followed_appends_inline(2);
        let mut durability = log.durability();
        for index in 1..=3 {
            let (tx, rx) = TypeConfig::oneshot();
            // Led by node 1: another member's entries.
            log.append([large(index)], IOFlushed::signal(tx)).await.expect("appended");
            let reported = rx.now_or_never();
            assert!(matches!(reported, Some(Ok(Ok(())))), "append {index} not yet reported flushed: {reported:?}");
            let synced = durability.synced_to(index).now_or_never();
            assert!(matches!(synced, Some(Ok(()))), "entry {index} not yet counted durable");
        }
    }

    #[tokio::test]
    async fn appends_are_readable_at_once_and_each_is_reported_flushed() {
        use openraft::storage::{IOFlushed, RaftLogStorage};
        use openraft::type_config::TypeConfigExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (mut log, _state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        let mut flushed = Vec::new();
        for index in 1..=20 {
            let (tx, rx) = TypeConfig::oneshot();
            log.append([large(index)], IOFlushed::signal(tx)).await.expect("appended");
            let read = log.try_get_log_entries(index..=index).await.expect("read");
            assert_eq!(read.len(), 1, "entry {index} readable when append returns");
            flushed.push(rx);
        }
        for (i, rx) in flushed.into_iter().enumerate() {
            rx.await.expect("the syncer answered").unwrap_or_else(|e| panic!("append {i}: {e}"));
        }
    }
}
