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
        let mut options = CompactOptions::default();
        // Also the last level, where the oldest files (the clear values) sit.
        options.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        let state = crate::COLUMN_FAMILIES.into_iter().map(|family| (db, family));
        let log = crate::LOG_FAMILIES.into_iter().map(|family| (&self.log_db, family));
        for (db, family) in state.chain(log) {
            let handle = cf(db, family);
            db.flush_cf(handle).map_err(io_err)?;
            db.compact_range_cf_opt(handle, None::<&[u8]>, None::<&[u8]>, &options);
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
