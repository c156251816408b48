//! Leaving no clear bytes behind once a node seals. What a hub wrote before its first data key
//! (a hub upgraded to encryption at rest, or the first seconds of a new one) is sealed in steps
//! by apply (`LogCommand::SealStep`), but RocksDB keeps the replaced values in older files until
//! compaction happens to rewrite them, and the log holds the entries as they were written. So
//! once sealing is done, each node scrubs once: the server snapshots the sealed state and purges
//! the log up to it (`kizuna_server::scrub`), then this module flushes and compacts every column
//! family down to its last level, which drops every replaced or deleted value from the files,
//! and remembers that it did.

use rocksdb::{BottommostLevelCompaction, CompactOptions, IteratorMode};

use crate::codec;
use crate::keys::SCRUBBED;
use crate::state_machine::StateReader;
use crate::{CF_NODE_META, CF_RAFT_LOG, cf, get_value, io_err, to_value};

/// What a node's scrub does besides compacting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubPlan {
    /// Its snapshot was taken before: a new one replaces it.
    pub resnapshot: bool,
    /// Its log begins with entries written before it had its own key: purged up to a new
    /// snapshot (later entries are sealed: the key exists from one start on).
    pub purge_log: bool,
}

impl StateReader {
    /// What this node still has to scrub, if anything: None unless it seals (it holds a master
    /// key and the hub has data keys), sealing what came before is done, and it has not
    /// scrubbed since.
    pub fn scrub_due(&self) -> std::io::Result<Option<ScrubPlan>> {
        if !self.vault().can_seal() || self.vault().hub_keys() == 0 || self.sealing().map_err(io_err)? {
            return Ok(None);
        }
        if self.scrubbed()? {
            return Ok(None);
        }
        let first_entry = self.log_db.iterator_cf(cf(&self.log_db, CF_RAFT_LOG), IteratorMode::Start).next();
        let purge_log = match first_entry {
            Some(item) => codec::sealed_parts(&item.map_err(io_err)?.1).map_err(io_err)?.is_none(),
            None => false,
        };
        Ok(Some(ScrubPlan { resnapshot: self.checkpoints.exists()? || purge_log, purge_log }))
    }

    /// Whether this node scrubbed its files since the hub's state was sealed.
    pub fn scrubbed(&self) -> std::io::Result<bool> {
        Ok(get_value::<bool>(&self.db, CF_NODE_META, SCRUBBED)?.is_some())
    }

    /// Rewrites every column family's files without the values replaced or deleted in them,
    /// then remembers it is done. Slow on a large hub (it rewrites the whole database once):
    /// call it off the async threads.
    pub fn compact_and_mark_scrubbed(&self) -> std::io::Result<()> {
        let db = &self.db;
        // Every family of a database in one flush: apply goes on writing the state meanwhile,
        // without its write-ahead log, so what is on disk must stay one point of the log for
        // all of them. Flushed one at a time (RocksDB's atomic flush covers only the families
        // a flush names), one family was a few entries ahead of the others until the flush of
        // the compaction after it: a node killed in between came back with the idempotency
        // keys of entries its tables did not hold, re-applied those as duplicates and lost
        // their posts (a chaos run, session 47; the test below).
        flush_all(db, &crate::COLUMN_FAMILIES)?;
        flush_all(&self.log_db, &crate::LOG_FAMILIES)?;
        let mut options = CompactOptions::default();
        // Also the last level, where the oldest files (the clear values) sit.
        options.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        // A compaction flushes what was written since, the state's families again all at once
        // (`atomic_flush`, `open_db`).
        let state = crate::COLUMN_FAMILIES.into_iter().map(|family| (db, family));
        let log = crate::LOG_FAMILIES.into_iter().map(|family| (&self.log_db, family));
        for (db, family) in state.chain(log) {
            db.compact_range_cf_opt(cf(db, family), None::<&[u8]>, None::<&[u8]>, &options);
        }
        // The write-ahead logs of what was flushed are obsolete now, and RocksDB deletes them.
        for db in [db, &self.log_db] {
            db.flush_wal(true).map_err(io_err)?;
        }
        // The current checkpoint links the files just compacted away, clear values and all:
        // one of the compacted state takes its place (the old files go with it).
        if self.checkpoints.exists()? {
            self.take_checkpoint()?;
        }
        db.put_cf_opt(cf(db, CF_NODE_META), SCRUBBED, to_value(&true)?, &crate::synced_writes()).map_err(io_err)
    }
}

/// Flushes `families` of `db` in one call, waiting for it: all at one point of the log where
/// the database flushes atomically (the state's, `open_db`), in turn otherwise (the log's,
/// whose writes all go through its WAL).
fn flush_all(db: &rocksdb::DB, families: &[&str]) -> std::io::Result<()> {
    let handles: Vec<_> = families.iter().map(|family| cf(db, family)).collect();
    db.flush_cfs_opt(&handles, &rocksdb::FlushOptions::default()).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use kizuna_domain::{Envelope, LogCommand};
    use openraft::entry::RaftEntry;
    use openraft::storage::RaftStateMachine;
    use openraft::testing::log_id;
    use rocksdb::DB;

    use crate::keys::{self, APPLIED, IDEMPOTENCY, RECORDS};
    use crate::raft::{Entry, LogId, TypeConfig};
    use crate::state_families::family_of;
    use crate::{CF_SM_META, COLUMN_FAMILIES, MasterKeys, StateMachineStore, cf, get_value};

    const PRELOADED: u64 = 10_000;
    const SCRUBS: usize = 5;

    /// Entry `index` writes record `k{index}` under the idempotency key `put-{index}`.
    fn put_record(index: u64) -> Entry {
        let command = LogCommand::PutRecord { key: format!("k{index}"), value: "v".repeat(2000) };
        let envelope = Envelope { idempotency_key: format!("put-{index}"), proposed_at_ms: index, command };
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
    }

    async fn apply_one(sm: &mut StateMachineStore, index: u64) {
        let entries = futures::stream::iter([Ok((put_record(index), None))]);
        sm.apply(entries).await.expect("apply");
    }

    /// What a kill -9 would leave of the state at this moment: its database as its files
    /// hold it (a secondary instance follows the primary's manifest, not its memtables).
    fn follow_files(db_path: &Path, secondary_path: &Path) -> DB {
        DB::open_cf_as_secondary(&rocksdb::Options::default(), db_path, secondary_path, COLUMN_FAMILIES)
            .expect("open as secondary")
    }

    /// Whether the entry's record and idempotency key are in the files: both or neither, as
    /// apply wrote them (`Err`: one without the other, or a read that failed).
    fn written(db: &DB, index: u64) -> Result<bool, String> {
        let present = |key: Vec<u8>| db.get_cf(cf(db, family_of(&key)), &key).map(|v| v.is_some());
        let record = present(keys::text(RECORDS, &format!("k{index}"))).map_err(|e| e.to_string())?;
        let remembered = present(keys::text(IDEMPOTENCY, &format!("put-{index}"))).map_err(|e| e.to_string())?;
        match (record, remembered) {
            (a, b) if a == b => Ok(a),
            _ => Err(format!("entry {index}: record {record}, idempotency key {remembered}")),
        }
    }

    /// What is wrong with the files' state, if anything: every entry up to its `applied` must
    /// be in it and the next one not. A read of a file the primary just removed is skipped.
    fn out_of_place(db: &DB) -> Option<String> {
        let applied: Option<LogId> = get_value(db, CF_SM_META, APPLIED).ok()?;
        let applied = applied.map_or(0, |id| id.index);
        let (last, next) = (written(db, applied.max(1)), written(db, applied + 1));
        match (last, next) {
            (Ok(last), Ok(next)) if (last || applied == 0) && !next => None,
            (Ok(last), Ok(next)) => Some(format!("applied {applied}: entry written {last}, the next {next}")),
            (Err(e), _) | (_, Err(e)) if !e.contains("No such file") => Some(format!("applied {applied}: {e}")),
            _ => None,
        }
    }

    /// A scrub runs while apply goes on writing the state without its WAL. At every moment,
    /// what its files hold — what a node killed then restarts from — is the state at one point
    /// of the log, the one its `applied` names: a family flushed alone put another point there
    /// (a node killed then lost a post: a chaos run, session 47).
    #[test]
    fn a_scrub_under_apply_keeps_the_state_on_disk_at_one_point_of_the_log() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, mut sm) = crate::open(dir.path(), MasterKeys::none()).expect("open");
        let reader = sm.reader();
        runtime.block_on(async {
            for index in 1..=PRELOADED {
                apply_one(&mut sm, index).await;
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let applier = runtime.spawn(async move {
            let mut index = PRELOADED;
            while !stopped.load(Ordering::Relaxed) {
                index += 1;
                apply_one(&mut sm, index).await;
                tokio::task::yield_now().await;
            }
            sm
        });
        let secondary = tempfile::tempdir().expect("tempdir");
        let on_disk = follow_files(&dir.path().join("db"), secondary.path());
        let (mut samples, mut wrong) = (0, Vec::new());
        // Each look costs tens of milliseconds: several scrubs give it enough moments.
        for _ in 0..SCRUBS {
            let scrubbing = reader.clone();
            let scrub = std::thread::spawn(move || scrubbing.compact_and_mark_scrubbed());
            while !scrub.is_finished() {
                if on_disk.try_catch_up_with_primary().is_ok() {
                    samples += 1;
                    wrong.extend(out_of_place(&on_disk));
                }
            }
            scrub.join().expect("scrub joined").expect("scrub");
        }
        stop.store(true, Ordering::Relaxed);
        let sm = runtime.block_on(applier).expect("applier");
        drop((sm, log));
        assert!(samples >= 5, "the files were looked at {samples} times only");
        assert!(
            wrong.is_empty(),
            "{} of {samples} looks at the files found them apart: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}
