//! A data dir written before the Raft log had a RocksDB of its own (see the crate's doc) keeps
//! its log in the state's RocksDB: the entries in `raft_log`, and in `raft_meta` Raft's markers
//! (vote, committed, purged) beside the node's own metadata (format, node key, scrubbed).
//! Opening it moves the log and the markers into the log's RocksDB and the node's metadata
//! into the state's `node_meta`, before Raft starts. The two older families are then dropped:
//! a build from before, which would find them empty and start without its vote, refuses the
//! directory instead (`Column families not opened: node_meta`).
//!
//! Crash-safe by order, each step durable before the next: the copies into the log's RocksDB
//! (synced), the copy into `node_meta` (synced), then the drops. A move cut short is made again
//! from what is left: the same keys with the same values (nothing else writes before the move
//! is done), and a family already dropped was copied whole before.

use rocksdb::{DB, IteratorMode, WriteBatch};

use crate::keys::{COMMITTED, FORMAT, NODE_KEY, PURGED, SCRUBBED, VOTE};
use crate::{CF_NODE_META, CF_RAFT_LOG, CF_RAFT_META, StoreError, cf, io_err, synced_writes};

/// Entries copied per write batch: bounds the memory of one batch (a log may hold attached
/// files' chunks of 128 KiB).
const BATCH: usize = 256;

/// What an older `raft_meta` held for Raft, and what for the node.
const RAFT_MARKERS: [&[u8]; 3] = [VOTE, COMMITTED, PURGED];
const NODE_KEYS: [&[u8]; 3] = [FORMAT, NODE_KEY, SCRUBBED];

/// The family of the state's RocksDB that holds the node's metadata now: `raft_meta` until the
/// move (the migration of a JSON-valued dir reads its format marker before), then `node_meta`.
pub(crate) fn node_meta_family(state: &DB) -> &'static str {
    if state.cf_handle(CF_RAFT_META).is_some() { CF_RAFT_META } else { CF_NODE_META }
}

/// Moves an older data dir's log and metadata (see the module's doc); a data dir of this layout
/// is left as it is.
pub(crate) fn move_older_log(state: &mut DB, log: &DB) -> Result<(), StoreError> {
    let older = [CF_RAFT_LOG, CF_RAFT_META].map(|family| state.cf_handle(family).is_some());
    if older == [false, false] {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let entries = if older[0] { copy_entries(state, log)? } else { 0 };
    if older[1] {
        log.write(copied(state, log, CF_RAFT_META, &RAFT_MARKERS)?).map_err(io_err)?;
    }
    log.flush_wal(true).map_err(io_err)?;
    if older[1] {
        state.write_opt(copied(state, state, CF_NODE_META, &NODE_KEYS)?, &synced_writes()).map_err(io_err)?;
    }
    for (family, present) in [CF_RAFT_LOG, CF_RAFT_META].into_iter().zip(older) {
        if present {
            state.drop_cf(family).map_err(io_err)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(entries, seconds, "moved the Raft log into a RocksDB of its own");
    Ok(())
}

/// Copies every entry of the state's `raft_log` into the log's, unsynced; returns how many.
fn copy_entries(state: &DB, log: &DB) -> Result<u64, StoreError> {
    let (from, to) = (cf(state, CF_RAFT_LOG), cf(log, CF_RAFT_LOG));
    let (mut batch, mut copied) = (WriteBatch::default(), 0u64);
    for item in state.iterator_cf(from, IteratorMode::Start) {
        let (key, value) = item.map_err(io_err)?;
        batch.put_cf(to, key, value);
        copied += 1;
        if batch.len() >= BATCH {
            log.write(std::mem::take(&mut batch)).map_err(io_err)?;
        }
    }
    log.write(batch).map_err(io_err)?;
    Ok(copied)
}

/// A batch that puts the `keys` the state's older `raft_meta` has into `family` of `to`.
fn copied(state: &DB, to: &DB, family: &str, keys: &[&[u8]]) -> Result<WriteBatch, StoreError> {
    let mut batch = WriteBatch::default();
    for key in keys {
        if let Some(value) = state.get_cf(cf(state, CF_RAFT_META), key).map_err(io_err)? {
            batch.put_cf(cf(to, family), key, value);
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests;
