//! The newest entries of the Raft log, kept in memory as appended: replication sends them to
//! the followers and apply reads them right after they are written, and both would otherwise
//! read them back from RocksDB and open them again (a blocking-pool hop and a decryption each,
//! on every write's path). Bounded by bytes; a read that is not wholly in it goes to RocksDB.

use std::collections::VecDeque;

use crate::raft::Entry;

/// Stored bytes of entries the tail keeps at most.
pub(crate) const TAIL_BYTES: usize = 4 << 20;

/// Consecutive entries, oldest first, each with its stored size.
#[derive(Default)]
pub(crate) struct LogTail {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl LogTail {
    /// Adds entries just written (consecutive, after the newest kept: anything else starts
    /// the tail over), then forgets the oldest past [`TAIL_BYTES`].
    pub(crate) fn appended(&mut self, written: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in written {
            if self.newest().is_some_and(|newest| newest + 1 != entry.log_id.index) {
                self.clear();
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.bytes > TAIL_BYTES {
            self.pop_front();
        }
    }

    /// Forgets the entries after `index` (the log was truncated there).
    pub(crate) fn truncated_after(&mut self, index: Option<u64>) {
        while self.newest().is_some_and(|newest| index.is_none_or(|i| newest > i)) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries up to `index` (the log was purged there).
    pub(crate) fn purged_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.log_id.index <= index) {
            self.pop_front();
        }
    }

    /// The entries from `start` to `end_inclusive` (or the newest), stopping after the one
    /// that brings their stored size to `byte_budget` — if the tail holds all of them; None
    /// when the read must go to RocksDB.
    pub(crate) fn read(&self, start: u64, end_inclusive: Option<u64>, byte_budget: usize) -> Option<Vec<Entry>> {
        let oldest = self.entries.front()?.0.log_id.index;
        let newest = self.newest()?;
        if start < oldest || end_inclusive.is_some_and(|end| end > newest) {
            return None;
        }
        let from = usize::try_from(start - oldest).ok()?;
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        for (entry, size) in self.entries.iter().skip(from) {
            if end_inclusive.is_some_and(|end| entry.log_id.index > end) || bytes >= byte_budget {
                break;
            }
            bytes = bytes.saturating_add(*size);
            out.push(entry.clone());
        }
        Some(out)
    }

    fn newest(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use kizuna_domain::{Envelope, LogCommand};
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;

    use super::*;
    use crate::raft::TypeConfig;

    fn entry(index: u64) -> (Entry, usize) {
        let command = LogCommand::PutRecord { key: format!("k{index}"), value: "v".into() };
        let envelope = Envelope { idempotency_key: format!("e-{index}"), proposed_at_ms: index, command };
        (Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope), 1000)
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn reads_what_it_holds_whole_and_nothing_else() {
        let mut tail = LogTail::default();
        tail.appended((5..=9).map(entry));
        assert_eq!(indexes(tail.read(6, Some(8), usize::MAX)), Some(vec![6, 7, 8]));
        assert_eq!(indexes(tail.read(7, None, usize::MAX)), Some(vec![7, 8, 9]));
        assert_eq!(indexes(tail.read(5, None, 1500)), Some(vec![5, 6]), "stops after the entry crossing the budget");
        assert_eq!(indexes(tail.read(4, Some(6), usize::MAX)), None, "older than the tail: from RocksDB");
        assert_eq!(indexes(tail.read(8, Some(10), usize::MAX)), None, "newer than the tail: from RocksDB");
    }

    #[test]
    fn truncation_purge_and_a_gap_keep_it_consistent_with_the_log() {
        let mut tail = LogTail::default();
        tail.appended((1..=6).map(entry));
        tail.truncated_after(Some(4));
        assert_eq!(indexes(tail.read(1, None, usize::MAX)), Some(vec![1, 2, 3, 4]));
        tail.appended([entry(5)]);
        tail.purged_to(2);
        assert_eq!(indexes(tail.read(3, None, usize::MAX)), Some(vec![3, 4, 5]));
        assert_eq!(indexes(tail.read(2, None, usize::MAX)), None);
        tail.appended([entry(9)]);
        assert_eq!(indexes(tail.read(9, None, usize::MAX)), Some(vec![9]), "a gap starts the tail over");
        assert_eq!(indexes(tail.read(5, None, usize::MAX)), None);
        tail.truncated_after(None);
        assert_eq!(indexes(tail.read(9, None, usize::MAX)), None, "all truncated");
    }

    #[test]
    fn it_keeps_at_most_its_byte_budget() {
        let mut tail = LogTail::default();
        let count = (TAIL_BYTES / 1000 + 50) as u64;
        tail.appended((1..=count).map(entry));
        assert!(tail.bytes <= TAIL_BYTES);
        assert_eq!(indexes(tail.read(1, Some(1), usize::MAX)), None, "the oldest were forgotten");
        assert_eq!(indexes(tail.read(count, None, usize::MAX)), Some(vec![count]));
    }
}
