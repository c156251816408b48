//! The node-local journal of patient-data reads, waiting to be shipped into the replicated
//! audit chain. Its own column family: never replicated, never in snapshots. A read is
//! journaled before its answer leaves the node; the shipper proposes journaled reads in batches
//! and deletes them once committed, so a crash or a lost quorum only delays them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{DB, IteratorMode, WriteBatch};

use super::keys::{self, journal_seq};
use super::{CF_AUDIT_JOURNAL, Vault, cf, decode_sealed, io_err, sealed_value};
use kizuna_domain::audit::AuditRecord;

#[derive(Clone)]
pub struct ReadJournal {
    db: Arc<DB>,
    /// Who read which patient when: sealed under the node's key.
    vault: Arc<Vault>,
    next: Arc<AtomicU64>,
}

impl ReadJournal {
    pub(crate) fn open(db: Arc<DB>, vault: Arc<Vault>) -> std::io::Result<Self> {
        let last = match db.iterator_cf(cf(&db, CF_AUDIT_JOURNAL), IteratorMode::End).next() {
            Some(item) => {
                let (k, _) = item.map_err(io_err)?;
                keys::number(&k).map_err(io_err)?
            }
            None => 0,
        };
        Ok(Self { db, vault, next: Arc::new(AtomicU64::new(last + 1)) })
    }

    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let key = journal_seq(seq);
        let value = sealed_value(&self.vault, CF_AUDIT_JOURNAL, &key, record)?;
        self.db.put_cf(cf(&self.db, CF_AUDIT_JOURNAL), key, value).map_err(io_err)
    }

    /// The oldest journaled reads: (first seq, last seq, records).
    pub fn pending(&self, limit: usize) -> std::io::Result<Option<(u64, u64, Vec<AuditRecord>)>> {
        let mut records = Vec::new();
        let (mut first, mut last) = (0, 0);
        for item in self.db.iterator_cf(cf(&self.db, CF_AUDIT_JOURNAL), IteratorMode::Start).take(limit) {
            let (k, v) = item.map_err(io_err)?;
            let seq = keys::number(&k).map_err(io_err)?;
            if records.is_empty() {
                first = seq;
            }
            last = seq;
            records.push(decode_sealed(&self.vault, CF_AUDIT_JOURNAL, &k, &v)?);
        }
        Ok((!records.is_empty()).then_some((first, last, records)))
    }

    /// How many reads wait to be shipped: from the first and last keys only, nothing decoded.
    pub fn backlog(&self) -> std::io::Result<u64> {
        let journal = cf(&self.db, CF_AUDIT_JOURNAL);
        let edge = |mode| -> std::io::Result<Option<u64>> {
            match self.db.iterator_cf(journal, mode).next() {
                Some(item) => Ok(Some(keys::number(&item.map_err(io_err)?.0).map_err(io_err)?)),
                None => Ok(None),
            }
        };
        Ok(match (edge(IteratorMode::Start)?, edge(IteratorMode::End)?) {
            (Some(first), Some(last)) => last.saturating_sub(first) + 1,
            _ => 0,
        })
    }

    /// Forgets reads that are now in the replicated chain.
    pub fn shipped(&self, first: u64, last: u64) -> std::io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_AUDIT_JOURNAL), journal_seq(first), journal_seq(last + 1));
        self.db.write(batch).map_err(io_err)
    }
}
