//! The replicated state machine: applies committed entries into RocksDB, builds and installs
//! snapshots.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::{DB, IteratorMode, WriteBatch};

use super::ReadJournal;
use super::collab::RocksHub;
use super::snapshot::{self, SnapshotFile, SnapshotWriter};
use super::{CF_SM_DATA, CF_SM_META, blocking, cf, get_json, io_err, to_json};
use crate::raft::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use kizuna_domain::collab::events::{Event, stamp};
use kizuna_domain::collab::queries::SessionPolicy;
use kizuna_domain::collab::{self, HubView};
use kizuna_domain::{self, Applied, Command, CommandResult, Envelope, Record};

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";

/// Table prefixes inside `sm_data`.
const T_RECORD: u8 = b'r';
const T_REQUEST: u8 = b'q';
/// The apply clock lives in `sm_data` (not `sm_meta`) so that snapshots carry it.
const KEY_CLOCK: &[u8] = b"m/clock";

const CURRENT_SNAPSHOT: &str = "current.snap";

fn table_key(table: u8, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(table);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Read access to the applied state, shared with the API.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
    snapshots_installed: Arc<AtomicU64>,
    events: tokio::sync::broadcast::Sender<Event>,
    /// Patient-data reads of this node, waiting to be shipped into the audit chain.
    pub journal: ReadJournal,
}

impl StateReader {
    pub fn record(&self, key: &str) -> std::io::Result<Option<Record>> {
        get_json(&self.db, CF_SM_DATA, &table_key(T_RECORD, key))
    }

    pub fn applied(&self) -> std::io::Result<Option<LogId>> {
        get_json(&self.db, CF_SM_META, KEY_APPLIED)
    }

    /// Leader time of the last applied write, ms since the Unix epoch (0 before any write).
    pub fn clock_ms(&self) -> std::io::Result<u64> {
        Ok(get_json(&self.db, CF_SM_DATA, KEY_CLOCK)?.unwrap_or(0))
    }

    /// A consistent read view of the collaboration tables.
    pub fn hub(&self) -> RocksHub<'_> {
        RocksHub::new(&self.db)
    }

    /// Live events as this node applies them.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stored events after `cursor`, oldest first, at most `limit`.
    pub fn events_after(&self, cursor: u64, limit: usize) -> Vec<Event> {
        self.hub().events_after(cursor, limit)
    }

    /// A digest of every `sm_data` entry and the applied index it reflects, both read from one
    /// RocksDB snapshot (apply writes them in one batch): replicas at one index must agree.
    pub fn state_digest(&self) -> std::io::Result<StateDigest> {
        use sha2::{Digest, Sha256};
        let snap = self.db.snapshot();
        let applied: Option<LogId> = match snap.get_cf(cf(&self.db, CF_SM_META), KEY_APPLIED).map_err(io_err)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(io_err)?,
            None => None,
        };
        let mut hash = Sha256::new();
        let mut entries = 0u64;
        for item in snap.iterator_cf(cf(&self.db, CF_SM_DATA), IteratorMode::Start) {
            let (key, value) = item.map_err(io_err)?;
            hash.update((key.len() as u64).to_be_bytes());
            hash.update(&key);
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(&value);
            entries += 1;
        }
        Ok(StateDigest {
            applied_index: applied.map_or(0, |l| l.index),
            sha256: kizuna_domain::hex(&hash.finalize()),
            entries,
        })
    }

    /// A handle that tells when the database has been closed (every user dropped it).
    pub fn database(&self) -> std::sync::Weak<DB> {
        Arc::downgrade(&self.db)
    }

    /// How many snapshots this node has installed from a leader since it started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }
}

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
    /// Numbers snapshot ids built by this node, so two builds at one log id differ.
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    pub(crate) fn open(db: Arc<DB>, snapshot_dir: PathBuf) -> std::io::Result<Self> {
        // Leftovers of interrupted builds or transfers are incomplete by definition.
        for entry in std::fs::read_dir(&snapshot_dir)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n != CURRENT_SNAPSHOT) {
                let _ = std::fs::remove_file(path);
            }
        }
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let journal = ReadJournal::open(db.clone())?;
        let reader = StateReader { db: db.clone(), snapshots_installed: Arc::default(), events, journal };
        Ok(Self { db, snapshot_dir, reader, snapshot_seq: Arc::default() })
    }

    pub fn reader(&self) -> StateReader {
        self.reader.clone()
    }

    /// Where a snapshot arriving from a peer is written before it is installed.
    pub fn incoming_snapshot_path(&self, name: &str) -> PathBuf {
        self.snapshot_dir.join(format!("incoming-{name}.snap"))
    }

    fn current_path(&self) -> PathBuf {
        self.snapshot_dir.join(CURRENT_SNAPSHOT)
    }
}

/// Applies one batch of entries: domain state is read through an overlay of this batch's own
/// writes, so a batch behaves exactly like entries applied one by one.
struct ApplyBatch<'a> {
    db: &'a DB,
    batch: WriteBatch,
    records: HashMap<String, Record>,
    requests: HashMap<String, Applied>,
    clock_ms: u64,
    hub: RocksHub<'a>,
    events: Vec<Event>,
}

impl ApplyBatch<'_> {
    /// Request ids are remembered per signed-in account: one user's id never answers (and so
    /// never swallows) another user's write, even if a client reuses ids.
    fn request_key(&self, envelope: &Envelope) -> String {
        let account = match &envelope.command {
            Command::Collab { session: Some(token_hash), .. } => self.hub.session(token_hash).map(|s| s.account),
            _ => None,
        };
        match account {
            Some(a) => format!("{}/{}", a.0, envelope.request_id),
            None => envelope.request_id.clone(),
        }
    }

    fn apply(&mut self, log_index: u64, envelope: Envelope) -> std::io::Result<Applied> {
        let request_key = self.request_key(&envelope);
        if let Some(first) = self.request(&request_key)? {
            return Ok(Applied { duplicate: true, ..first });
        }
        self.clock_ms = kizuna_domain::monotonic_time(self.clock_ms, envelope.proposed_at_ms);
        let result = match envelope.command {
            Command::PutRecord { key, value } => {
                let previous = self.record(&key)?;
                let record = kizuna_domain::records::put(previous.as_ref(), value, self.clock_ms);
                let version = record.version;
                self.batch.put_cf(cf(self.db, CF_SM_DATA), table_key(T_RECORD, &key), to_json(&record)?);
                self.records.insert(key, record);
                CommandResult::RecordPut { version }
            }
            Command::Collab { session, origin_node, command } => self.collab(log_index, session, origin_node, command),
            Command::AuditReads { records } => {
                let mut last_seq = 0;
                for r in records {
                    last_seq = self.hub.append_audit(r);
                }
                CommandResult::Audited { last_seq }
            }
        };
        let applied = Applied { result, log_index, duplicate: false };
        self.batch.put_cf(cf(self.db, CF_SM_DATA), table_key(T_REQUEST, &request_key), to_json(&applied)?);
        self.requests.insert(request_key, applied.clone());
        Ok(applied)
    }

    fn collab(
        &mut self,
        log_index: u64,
        session: Option<String>,
        origin_node: u64,
        command: collab::Command,
    ) -> CommandResult {
        let session_tag: String =
            session.as_deref().unwrap_or("").chars().take(collab::commands::SESSION_ID_CHARS).collect();
        let actor = match session {
            None => None,
            Some(token_hash) => {
                let policy = SessionPolicy::default();
                let valid = self.hub.session(&token_hash).filter(|s| {
                    !s.revoked
                        && self.clock_ms.saturating_sub(s.created_at_ms) <= policy.absolute_ms
                        && self.hub.account(s.account).is_some_and(|a| a.is_active())
                });
                match valid {
                    Some(s) => Some(s.account),
                    None => return collab::DomainError::Unauthenticated.into(),
                }
            }
        };
        let ctx = collab::Ctx { log_index, now_ms: self.clock_ms };
        match collab::execute(&self.hub, ctx, actor, command) {
            Ok(collab::Effects { outcome, changes, events, audit, outbound: _ }) => {
                self.hub.apply(changes);
                if let (Some(account), Some(collab::Trail { patient, room, what })) = (actor, audit) {
                    let record = collab::audit::AuditRecord {
                        at_ms: self.clock_ms,
                        account,
                        session: session_tag,
                        node: origin_node,
                        action: collab::audit::AuditAction::Write,
                        patient,
                        room,
                        what: what.to_owned(),
                    };
                    self.hub.append_audit(record);
                }
                for event in stamp(events, log_index, self.clock_ms) {
                    self.hub.put_event(&event);
                    self.events.push(event);
                }
                CommandResult::Collab(outcome)
            }
            Err(e) => e.into(),
        }
    }

    fn record(&self, key: &str) -> std::io::Result<Option<Record>> {
        match self.records.get(key) {
            Some(r) => Ok(Some(r.clone())),
            None => get_json(self.db, CF_SM_DATA, &table_key(T_RECORD, key)),
        }
    }

    fn request(&self, id: &str) -> std::io::Result<Option<Applied>> {
        match self.requests.get(id) {
            Some(a) => Ok(Some(a.clone())),
            None => get_json(self.db, CF_SM_DATA, &table_key(T_REQUEST, id)),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        let applied = get_json(&self.db, CF_SM_META, KEY_APPLIED)?;
        let membership = get_json(&self.db, CF_SM_META, KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + OptionalSend,
    {
        let clock_ms = get_json(&self.db, CF_SM_DATA, KEY_CLOCK)?.unwrap_or(0);
        let mut batch = ApplyBatch {
            db: &self.db,
            batch: WriteBatch::default(),
            records: HashMap::new(),
            requests: HashMap::new(),
            clock_ms,
            hub: RocksHub::new(&self.db),
            events: Vec::new(),
        };
        let mut replies = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = match entry.payload {
                EntryPayload::Normal(envelope) => batch.apply(entry.log_id.index, envelope)?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    Applied { result: CommandResult::NoOp, log_index: entry.log_id.index, duplicate: false }
                }
                EntryPayload::Blank => {
                    Applied { result: CommandResult::NoOp, log_index: entry.log_id.index, duplicate: false }
                }
            };
            last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                replies.push((responder, applied));
            }
        }
        let meta = cf(&self.db, CF_SM_META);
        let clock_ms = batch.clock_ms;
        let events = batch.events;
        let mut wb = batch.batch;
        batch.hub.write_into(&mut wb);
        wb.put_cf(cf(&self.db, CF_SM_DATA), KEY_CLOCK, to_json(&clock_ms)?);
        if let Some(applied) = last_applied {
            wb.put_cf(meta, KEY_APPLIED, to_json(&applied)?);
        }
        if let Some(m) = &membership {
            wb.put_cf(meta, KEY_MEMBERSHIP, to_json(m)?);
        }
        // Not synced: the entries are already fsynced in the log, and the log is purged only
        // after the WAL is synced (see `SnapshotBuilder::build_snapshot`).
        self.db.write(wb).map_err(io_err)?;
        for (responder, applied) in replies {
            responder.send(applied);
        }
        for event in events {
            // No subscriber is fine; lagging subscribers resume from the stored events.
            let _ = self.reader.events.send(event);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), snapshot_dir: self.snapshot_dir.clone(), seq: self.snapshot_seq.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), std::io::Error> {
        let db = self.db.clone();
        let meta = meta.clone();
        let current = self.current_path();
        blocking(move || {
            let data = cf(&db, CF_SM_DATA);
            let mut wb = WriteBatch::default();
            // Replace the whole state machine in one atomic batch.
            wb.delete_range_cf(data, [0u8].as_slice(), [0xffu8; 2].as_slice());
            let file_meta = snapshot::read_pairs(&snapshot.path, |k, v| wb.put_cf(data, k, v))?;
            if file_meta.last_log_id != meta.last_log_id {
                return Err(io_err("snapshot file does not match its metadata"));
            }
            let sm_meta = cf(&db, CF_SM_META);
            wb.put_cf(sm_meta, KEY_APPLIED, to_json(&meta.last_log_id)?);
            wb.put_cf(sm_meta, KEY_MEMBERSHIP, to_json(&meta.last_membership)?);
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            db.write_opt(wb, &sync).map_err(io_err)?;
            // Keep the installed snapshot as this node's current one, to serve it onwards.
            if snapshot.path.parent() == current.parent() {
                std::fs::rename(&snapshot.path, &current)
            } else {
                let tmp = current.with_extension("copy");
                std::fs::copy(&snapshot.path, &tmp)?;
                std::fs::rename(&tmp, &current)
            }
        })
        .await?;
        self.reader.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let path = self.current_path();
        if !path.exists() {
            return Ok(None);
        }
        let meta = snapshot::read_meta(&path)?;
        Ok(Some(Snapshot { meta, snapshot: SnapshotFile { path } }))
    }
}

pub struct SnapshotBuilder {
    db: Arc<DB>,
    snapshot_dir: PathBuf,
    seq: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let db = self.db.clone();
        let dir = self.snapshot_dir.clone();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        blocking(move || {
            // Sync the WAL first: once this snapshot exists openraft may purge the log, and the
            // unsynced state-machine writes must not be the only copy of what it held.
            db.flush_wal(true).map_err(io_err)?;
            let view = db.snapshot();
            let meta_cf = cf(&db, CF_SM_META);
            let read = |key: &[u8]| -> std::io::Result<Option<Vec<u8>>> { view.get_cf(meta_cf, key).map_err(io_err) };
            let last_log_id: Option<LogId> = match read(KEY_APPLIED)? {
                Some(b) => serde_json::from_slice(&b).map_err(io_err)?,
                None => None,
            };
            let last_membership: StoredMembership = match read(KEY_MEMBERSHIP)? {
                Some(b) => serde_json::from_slice(&b).map_err(io_err)?,
                None => StoredMembership::default(),
            };
            let meta = SnapshotMeta { last_log_id, last_membership };
            let tmp = dir.join(format!("build-{seq}.snap"));
            let mut writer = SnapshotWriter::create(&tmp, &meta)?;
            for item in view.iterator_cf(cf(&db, CF_SM_DATA), IteratorMode::Start) {
                let (k, v) = item.map_err(io_err)?;
                writer.pair(&k, &v)?;
            }
            writer.finish()?;
            let current = dir.join(CURRENT_SNAPSHOT);
            std::fs::rename(&tmp, &current)?;
            Ok(Snapshot { meta, snapshot: SnapshotFile { path: current } })
        })
        .await
    }
}
