//! The Raft log and Raft metadata (vote, committed, purged) in RocksDB.
//!
//! Every method that openraft relies on for safety is on disk when openraft hears it is done:
//! votes, truncations and purges write with `sync = true` before they return. An append
//! writes its batch unsynced and returns — the entries are readable, so replication sends them
//! to the followers at once — and the log's syncer thread reports it flushed once a sync of
//! the write-ahead log has covered it (openraft counts the leader's own copy for a commit only
//! then). The leader's fsync thus runs while the followers write theirs, as in etcd, instead of
//! before them; and one sync covers every append waiting for it (group commit).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{CF_RAFT_LOG, CF_RAFT_META, Vault, blocking, cf, decode_sealed, get_value, io_err, sealed_value, to_value};
use crate::keys::{self, COMMITTED, PURGED, VOTE, log_index};
use crate::log_tail::LogTail;
use crate::raft::{Entry, LogId, TypeConfig, Vote};

/// The stored bytes of log entries one replication message carries at most (after the
/// entry that crosses it): well below the 64 MiB a peer's Raft service decodes.
pub const REPLICATION_BYTES: usize = 8 << 20;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// Entries carry every command (post texts, patient names): sealed under the node's key.
    vault: Arc<Vault>,
    /// Appends written and waiting for a sync of the write-ahead log (see the module's doc).
    syncer: Sender<IOFlushed<TypeConfig>>,
    /// The newest entries as appended, read by replication and apply without RocksDB.
    tail: Arc<Mutex<LogTail>>,
    growth: LogGrowth,
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

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl LogStore {
    /// The log of `db`, with its syncer thread (which ends when the last copy of the store is
    /// dropped; it holds the database weakly, so closing it waits for nobody).
    pub(crate) fn new(db: Arc<DB>, vault: Arc<Vault>) -> std::io::Result<Self> {
        let (syncer, waiting) = channel();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new().name("raft-log-sync".into()).spawn(move || sync_appends(&weak, &waiting))?;
        Ok(Self { db, vault, syncer, tail: Arc::default(), growth: LogGrowth::default() })
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
        // Written here, not on the blocking pool: an unsynced write is a memtable insert and a
        // write to the OS's cache, and every append of a write's path (the leader's, then each
        // follower's) paid two thread hand-offs for it (docs/benchmarks.md, session 23). Apply
        // writes the state the same way.
        self.db.write(batch).map_err(io_err)?;
        let bytes: usize = written.iter().map(|(_, stored)| stored).sum();
        self.growth.0.fetch_add(bytes as u64, Ordering::Relaxed);
        self.tail().appended(written);
        Ok(())
    }

    /// One write batch and one fsync; its duration is the `kizuna_raft_log_sync_seconds`
    /// histogram (the "fsync slow" alert).
    fn write_synced(db: &DB, batch: WriteBatch) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let written = db.write_opt(batch, &synced()).map_err(io_err);
        metrics::histogram!("kizuna_raft_log_sync_seconds").record(started.elapsed().as_secs_f64());
        written
    }
}

/// The syncer thread: takes every append waiting, syncs the write-ahead log once (which makes
/// every write before it durable) and reports them flushed, in the order they were written.
fn sync_appends(db: &Weak<DB>, waiting: &Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = waiting.recv() {
        let appends: Vec<_> = std::iter::once(first).chain(waiting.try_iter()).collect();
        let synced = sync_wal(db);
        for append in appends {
            append.io_completed(synced.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
        }
    }
}

/// One sync of the write-ahead log; its duration is the `kizuna_raft_log_sync_seconds`
/// histogram (the "fsync slow" alert).
fn sync_wal(db: &Weak<DB>) -> std::io::Result<()> {
    let db = db.upgrade().ok_or_else(|| std::io::Error::other("the database is closed"))?;
    let started = std::time::Instant::now();
    let synced = db.flush_wal(true).map_err(io_err);
    metrics::histogram!("kizuna_raft_log_sync_seconds").record(started.elapsed().as_secs_f64());
    synced
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
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_META), VOTE, bytes);
            Self::write_synced(&db, batch)
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        // Not synced: a lost `committed` is only a hint; openraft re-learns it from the leader.
        let bytes = to_value(&committed)?;
        self.db.put_cf(cf(&self.db, CF_RAFT_META), COMMITTED, bytes).map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        Ok(get_value::<Option<LogId>>(&self.db, CF_RAFT_META, COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if let Err(e) = self.write_entries(entries).await {
            callback.io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
        // Only a syncer that ended (its thread panicked) refuses the callback: report it here.
        if let Err(refused) = self.syncer.send(callback) {
            let gone = || std::io::Error::other("the log's syncer thread ended");
            refused.0.io_completed(Err(gone()));
            return Err(gone());
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        // The tail first: a read in between finds the entries in RocksDB, as before.
        self.tail().truncated_after(last_log_id.map(|id| id.index));
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf(&db, CF_RAFT_LOG), log_index(from), log_index(u64::MAX));
            batch.delete_cf(cf(&db, CF_RAFT_LOG), log_index(u64::MAX));
            Self::write_synced(&db, batch)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        let purged = to_value(&log_id)?;
        self.tail().purged_to(log_id.index);
        let db = self.db.clone();
        blocking(move || {
            // The purged marker and the deletion land in one batch: the log never has a hole
            // between the marker and the first stored entry.
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_META), PURGED, purged);
            batch.delete_range_cf(cf(&db, CF_RAFT_LOG), log_index(0), log_index(log_id.index + 1));
            Self::write_synced(&db, batch)
        })
        .await
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
