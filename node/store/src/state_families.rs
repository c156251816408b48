//! Where the replicated state's pairs are stored: its tables in `sm_data`, except two that
//! have a family each: the search index (`sm_search`) and the idempotency keys
//! (`sm_idempotency`).
//!
//! Why apart: the search index is most of the state (73 % of its pairs at 1,000,000 posts,
//! docs/benchmarks.md, session 27) and is only ever range-scanned, while apply and the patient
//! list look up single keys of the other tables. Sharing one family, those lookups searched
//! memtables and levels filled by index keys; apart, each family's memtable, levels and
//! compactions hold one kind of key, and the index needs no bloom filters (a range scan cannot
//! use them). Measured (session 28): a hub loads ~10 % faster; reads and disk did not change
//! beyond the runs' spread. The idempotency keys are the opposite case: every write looks its
//! key up and nearly always finds nothing (14 % of a follower's CPU at 256 writers, session 31,
//! half of it walking `sm_data`'s memtable). Apart, their family has bloom filters in its
//! memtable and on every level, which `sm_data` cannot afford: there a read of a present key on
//! the last level would probe a filter first.
//!
//! The split is storage layout, not replicated state: every walk of the whole state (a
//! snapshot, a digest, the seal step) merges the families in key order, so a snapshot file
//! lists the same pairs in the same order as before the split, and nodes of either layout
//! send each other snapshots. A data dir written before a table had its family has that table
//! moved once when it opens ([`move_dedicated_tables`]), before anything reads it.

use std::cmp::Ordering;
use std::iter::Peekable;
use std::path::Path;

use rocksdb::{DB, DBRawIteratorWithThreadMode, IngestExternalFileOptions, ReadOptions, WriteBatch};

use crate::install::{self, TableFiles};
use crate::keys::{self, IDEMPOTENCY, SEARCH, Table};
use crate::{CF_SM_DATA, CF_SM_IDEMPOTENCY, CF_SM_SEARCH, cf, io_err};

/// Every family of the replicated state, `sm_data` first (public: what a copy of the whole
/// state weighs is what these hold).
pub const STATE_FAMILIES: [&str; 3] = [CF_SM_DATA, CF_SM_SEARCH, CF_SM_IDEMPOTENCY];

/// The tables stored in a family of their own, each with its family, in [`STATE_FAMILIES`]'
/// order after `sm_data`; every other table is in `sm_data`.
const DEDICATED: [(Table, &str); 2] = [(SEARCH, CF_SM_SEARCH), (IDEMPOTENCY, CF_SM_IDEMPOTENCY)];
const _: () = {
    assert!(DEDICATED.len() + 1 == STATE_FAMILIES.len(), "every family but sm_data holds one table");
    let mut i = 0;
    while i < DEDICATED.len() {
        assert!(DEDICATED[i].0.prefix < 0xff, "a dedicated table's keys end below the prefix 0xff");
        i += 1;
    }
};

/// The position in [`STATE_FAMILIES`] of the family a state key is stored in.
pub(crate) fn family_index(key: &[u8]) -> usize {
    let dedicated = DEDICATED.iter().position(|(table, _)| key.first() == Some(&table.prefix));
    dedicated.map_or(0, |i| i + 1)
}

/// The family a state key is stored in.
pub(crate) fn family_of(key: &[u8]) -> &'static str {
    STATE_FAMILIES[family_index(key)]
}

/// The families that may hold keys of `[start, end)` (no end: to the end of the state), in
/// [`STATE_FAMILIES`]' order: a scan of one table reads one family.
pub(crate) fn families_in(start: &[u8], end: Option<&[u8]>) -> impl Iterator<Item = &'static str> {
    let data = !DEDICATED.iter().any(|(table, _)| range_inside(start, end, *table));
    let dedicated: Vec<&'static str> =
        DEDICATED.iter().filter(|(table, _)| range_overlaps(start, end, *table)).map(|(_, family)| *family).collect();
    data.then_some(CF_SM_DATA).into_iter().chain(dedicated)
}

/// A table's keys are those of `[prefix, prefix + 1)` (a dedicated table's prefix is below
/// 0xff: checked where [`DEDICATED`] is).
fn table_bounds(table: Table) -> ([u8; 1], [u8; 1]) {
    ([table.prefix], [table.prefix.saturating_add(1)])
}

/// Whether `[start, end)` holds keys of `table`.
fn range_overlaps(start: &[u8], end: Option<&[u8]>, table: Table) -> bool {
    let (first, past) = table_bounds(table);
    start < &past[..] && end.is_none_or(|end| end > &first[..])
}

/// Whether `[start, end)` holds keys of `table` only.
fn range_inside(start: &[u8], end: Option<&[u8]>, table: Table) -> bool {
    let (first, past) = table_bounds(table);
    start >= &first[..] && end.is_some_and(|end| end <= &past[..])
}

/// Pairs of several sorted sources merged into one key order: each source is one family's
/// part of a range. (No key is in two families, so no two sources give the same key.)
pub(crate) struct MergedByKey<I: Iterator> {
    sources: Vec<Peekable<I>>,
}

impl<I: Iterator<Item = (K, V)>, K: Ord, V> MergedByKey<I> {
    pub(crate) fn new(sources: impl IntoIterator<Item = I>) -> Self {
        Self { sources: sources.into_iter().map(Iterator::peekable).collect() }
    }
}

impl<I: Iterator<Item = (K, V)>, K: Ord, V> Iterator for MergedByKey<I> {
    type Item = (K, V);

    fn next(&mut self) -> Option<Self::Item> {
        let mut smallest: Option<(usize, &K)> = None;
        for (i, source) in self.sources.iter_mut().enumerate() {
            if let Some((key, _)) = source.peek()
                && smallest.is_none_or(|(_, least)| key.cmp(least) == Ordering::Less)
            {
                smallest = Some((i, key));
            }
        }
        let (i, _) = smallest?;
        self.sources[i].next()
    }
}

/// The whole replicated state of one view in key order, pair by pair without copying them:
/// for a snapshot file, a digest, a table's space. A database without `sm_search` or
/// `sm_idempotency` (a checkpoint taken before a table had its family) is walked in the
/// families it has.
pub(crate) struct StatePairs<'a> {
    families: Vec<DBRawIteratorWithThreadMode<'a, DB>>,
}

impl<'a> StatePairs<'a> {
    /// The state as `view` (a snapshot of `db`) shows it.
    pub(crate) fn of(db: &DB, view: &'a rocksdb::Snapshot<'_>) -> Self {
        let families = STATE_FAMILIES
            .iter()
            .filter_map(|name| db.cf_handle(name))
            .map(|family| {
                let mut pairs = view.raw_iterator_cf(family);
                pairs.seek_to_first();
                pairs
            })
            .collect();
        Self { families }
    }

    /// Hands every pair to `each` in key order; a read error ends the walk as an error.
    pub(crate) fn for_each(mut self, mut each: impl FnMut(&[u8], &[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        while let Some(i) = self.smallest() {
            let pairs = &mut self.families[i];
            if let (Some(key), Some(value)) = (pairs.key(), pairs.value()) {
                each(key, value)?;
            }
            pairs.next();
            // A family that fails ends the walk at once: the rest would be left out anyway.
            pairs.status().map_err(io_err)?;
        }
        self.families.iter().try_for_each(|pairs| pairs.status().map_err(io_err))
    }

    /// The family whose current key comes first (None: all are done).
    fn smallest(&self) -> Option<usize> {
        let current = self.families.iter().enumerate().filter_map(|(i, pairs)| pairs.key().map(|key| (i, key)));
        current.min_by(|(_, a), (_, b)| a.cmp(b)).map(|(i, _)| i)
    }
}

/// Moves each dedicated table of a data dir written before it had a family of its own from
/// `sm_data` into its family; returns how many pairs moved (0: nothing to do, as on every open
/// after the first). Runs at open, before anything reads the state.
pub(crate) fn move_dedicated_tables(db: &DB, scratch: &Path) -> std::io::Result<u64> {
    let mut moved = 0;
    for (table, family) in DEDICATED {
        moved += move_table(db, table, family, scratch)?;
    }
    Ok(moved)
}

/// Moves `table`'s pairs from `sm_data` into `family`. The pairs are written into table files
/// in `scratch` (the snapshot directory) and ingested, as an install does: ~1.1 million pairs a
/// second here, 1.5 times the rate of writing them through the memtables (docs/benchmarks.md,
/// session 28).
///
/// Stops anywhere safely: the pairs are copied first, and only then deleted from `sm_data` in
/// one synced write. Stopped before that, the next open finds them still in `sm_data` and
/// copies them again (its leftover files are removed first).
fn move_table(db: &DB, table: Table, family: &'static str, scratch: &Path) -> std::io::Result<u64> {
    let data = cf(db, CF_SM_DATA);
    let start = keys::all(table);
    let end = keys::prefix_end(&start).ok_or_else(|| io_err(format!("the prefix of the {} has no end", table.name)))?;
    let mut bounded = ReadOptions::default();
    bounded.set_iterate_upper_bound(end.clone());
    let mut pairs = db.raw_iterator_cf_opt(data, bounded);
    pairs.seek(&start);
    if !pairs.valid() {
        pairs.status().map_err(io_err)?;
        return Ok(0);
    }
    // Minutes on a large hub, before the node answers: say why it does not yet.
    tracing::info!(table = table.name, family, "moving a table into a column family of its own (once, before serving)");
    install::remove_tables(scratch)?;
    let options = crate::family_options(family, &rocksdb::Cache::new_lru_cache(0));
    let mut tables = TableFiles::new(scratch, family, &options);
    let mut moved = 0u64;
    while let (Some(key), Some(value)) = (pairs.key(), pairs.value()) {
        tables.put(key, value)?;
        moved += 1;
        pairs.next();
    }
    pairs.status().map_err(io_err)?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_cf_opts(cf(db, family), &ingest, tables.finish()?).map_err(io_err)?;
    let mut removed = WriteBatch::default();
    removed.delete_range_cf(data, &start, &end);
    db.write_opt(removed, &crate::synced_writes()).map_err(io_err)?;
    // The moved pairs' bytes leave `sm_data`'s files now, not whenever compaction passes.
    db.compact_range_cf(data, Some(&start), Some(&end));
    Ok(moved)
}

#[cfg(test)]
mod tests;
