//! Node-local journals of what waits to be shipped into the replicated log, each in its own
//! column family (never replicated, never in snapshots):
//! - `audit_journal` ([`ReadJournal`]): patient-data reads, journaled before the answer leaves
//!   the node, shipped into the audit chain in batches;
//! - `disaster_journal` ([`ObservationJournal`]): safety checks and facility statuses recorded
//!   here, also while the node is cut off from the quorum, shipped when it returns. Each is
//!   fsynced before the user is told it is recorded: a blackout of the region must not lose it.
//!
//! A shipper proposes journaled values in batches and deletes them once committed, so a crash or
//! a lost quorum only delays them; what applies them makes a second shipping harmless.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{DB, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{self, journal_seq};
use super::{CF_AUDIT_JOURNAL, CF_DISASTER_JOURNAL, Vault, cf, decode_sealed, io_err, sealed_value};
use kizuna_domain::audit::AuditRecord;
use kizuna_domain::disaster::Observation;

/// Patient-data reads of this node, waiting for the audit chain.
pub type ReadJournal = Journal<AuditRecord>;
/// Safety checks and facility statuses recorded on this node, waiting for the hub.
pub type ObservationJournal = Journal<Observation>;

/// Values in journal order, under a local sequence number.
pub struct Journal<T> {
    db: Arc<DB>,
    /// Who read which patient, which patient needs oxygen: sealed under the node's key.
    vault: Arc<Vault>,
    family: &'static str,
    /// Fsync each append (the write-ahead log reaches the disk before `append` returns).
    durable: bool,
    next: Arc<AtomicU64>,
    /// Appends take turns: a sequence number is taken and its value written under one lock, so
    /// keys become visible in order and a shipper that read up to N never deletes a smaller
    /// number still being written.
    appending: Arc<std::sync::Mutex<()>>,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Journal<T> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            vault: self.vault.clone(),
            family: self.family,
            durable: self.durable,
            next: self.next.clone(),
            appending: self.appending.clone(),
            kind: PhantomData,
        }
    }
}

impl ReadJournal {
    pub(crate) fn open_reads(db: Arc<DB>, vault: Arc<Vault>) -> std::io::Result<Self> {
        Journal::open(db, vault, CF_AUDIT_JOURNAL, false)
    }
}

impl ObservationJournal {
    pub(crate) fn open_observations(db: Arc<DB>, vault: Arc<Vault>) -> std::io::Result<Self> {
        Journal::open(db, vault, CF_DISASTER_JOURNAL, true)
    }
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    fn open(db: Arc<DB>, vault: Arc<Vault>, family: &'static str, durable: bool) -> std::io::Result<Self> {
        let last = match db.iterator_cf(cf(&db, family), IteratorMode::End).next() {
            Some(item) => {
                let (k, _) = item.map_err(io_err)?;
                keys::number(&k).map_err(io_err)?
            }
            None => 0,
        };
        let next = Arc::new(AtomicU64::new(last + 1));
        Ok(Self { db, vault, family, durable, next, appending: Arc::default(), kind: PhantomData })
    }

    /// Journals `value`; its sequence number.
    pub fn append(&self, value: &T) -> std::io::Result<u64> {
        let _turn = self.appending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let key = journal_seq(seq);
        let stored = sealed_value(&self.vault, self.family, &key, value)?;
        let mut options = WriteOptions::default();
        options.set_sync(self.durable);
        self.db.put_cf_opt(cf(&self.db, self.family), key, stored, &options).map_err(io_err)?;
        Ok(seq)
    }

    /// The oldest journaled values: (first seq, last seq, values).
    pub fn pending(&self, limit: usize) -> std::io::Result<Option<(u64, u64, Vec<T>)>> {
        let mut values = Vec::new();
        let (mut first, mut last) = (0, 0);
        for item in self.db.iterator_cf(cf(&self.db, self.family), IteratorMode::Start).take(limit) {
            let (k, v) = item.map_err(io_err)?;
            let seq = keys::number(&k).map_err(io_err)?;
            if values.is_empty() {
                first = seq;
            }
            last = seq;
            values.push(decode_sealed(&self.vault, self.family, &k, &v)?);
        }
        Ok((!values.is_empty()).then_some((first, last, values)))
    }

    /// How many values wait to be shipped: counted key by key, since the shipper may have
    /// taken single values out of the middle (a record shipped at once when it was made).
    pub fn backlog(&self) -> std::io::Result<u64> {
        let mut count = 0;
        let mut entries = self.db.raw_iterator_cf(cf(&self.db, self.family));
        entries.seek_to_first();
        while entries.valid() {
            count += 1;
            entries.next();
        }
        entries.status().map_err(io_err)?;
        Ok(count)
    }

    /// Forgets values from `first` to `last` that are now in the replicated log.
    pub fn shipped(&self, first: u64, last: u64) -> std::io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, self.family), journal_seq(first), journal_seq(last + 1));
        self.db.write(batch).map_err(io_err)
    }
}
