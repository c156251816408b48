//! The collaboration network's tables in RocksDB (`sm_data`, with `sm_search` for the search
//! index and `sm_idempotency` for the remembered requests: `state_families.rs`), seen through the domain's
//! [`HubView`] with an overlay of the current apply batch's own changes.
//!
//! Every key, and the table list, is built and parsed in [`crate::keys`].

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use rocksdb::{DB, Direction, IteratorMode, ReadOptions, SnapshotWithThreadMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Vault, VaultError, cf, codec};
use crate::access::AccessChange;
use crate::fault::StorageFault;
use crate::keys::{
    self, ACCOUNTS, ATTACHMENTS, AUDIT, AUDIT_HEAD, CONNECTIONS, CONNECTIONS_OF, DIRECTORY_SHARES, EVENTS, FACILITIES,
    FAILED_FETCHES, FEDERATION_PAUSED, FETCHES, HEARD, INBOUND, INVITATIONS, KeyError, LOGINS, MEMBERS, MEMBERSHIPS,
    NOTICES, NOTIFICATION_SETTINGS, OPERATOR, OUTBOUND, PATIENTS, PENDING, POST_FILES, POSTS, PROOFS, PUSH_NOTICES,
    PUSH_SUBSCRIPTIONS, REMOTE_FACILITIES, REQUEST_LINKS, REQUESTS, REQUESTS_SENT, REQUESTS_TO, ROOMS, SESSIONS,
    SESSIONS_OF, SETTINGS, STAFF, STORED_BYTES, Table, UNCLAIMED_BLOBS, UNUSED_ATTACHMENTS,
};
use crate::state_families::{self, MergedByKey, STATE_FAMILIES, family_of};
use kizuna_domain::attachments::{Attachment, Blob, BlobHash, Fetch};
use kizuna_domain::audit::{self, AuditEntry, AuditRecord};
use kizuna_domain::events::Event;
use kizuna_domain::federation::{HubName, Inbound, InboxMessage, Outbound, OutboxMessage, PendingWrite};
use kizuna_domain::keyring::WrappedKey;
use kizuna_domain::model::*;
use kizuna_domain::notify::{Notice, NotificationSettings};
use kizuna_domain::push::{self, PushSubscription};
use kizuna_domain::requests::CareRequest;
use kizuna_domain::{Change, HubState, HubView, ViewError, ViewResult};
use kizuna_domain::{bigram, search};

/// A committed key and value, as RocksDB returns them.
type Pair = (Box<[u8]>, Box<[u8]>);
/// A key and its stored value as a scan returns them.
type KeyValue = (Vec<u8>, Vec<u8>);
/// A committed value as a point read answers it.
type Committed = Result<Option<Vec<u8>>, rocksdb::Error>;

/// A read view of the hub's tables plus pending writes of the current batch.
///
/// A read, scan, decode or encode failure is remembered as the view's [`StorageFault`] (only
/// the first: it is the cause, later ones may be consequences), and from then on every
/// [`HubView`] read of this view answers an error, so nothing is decided on an invented value.
/// Writes staged after a fault are refused by [`RocksHub::write_into`]; apply checks
/// [`RocksHub::fault`] after every entry.
pub struct RocksHub<'a> {
    db: &'a DB,
    /// Seals what the view writes and opens what it reads (`vault/`).
    vault: &'a Vault,
    /// For queries: the one RocksDB snapshot every read of this view sees, so an answer that
    /// reads several keys (a patient list, a timeline) never mixes two apply batches. Apply
    /// reads the live database: it is the only writer, and it reads between its own batches.
    snapshot: Option<SnapshotWithThreadMode<'a, DB>>,
    /// Pending writes (None: delete), as they will be stored (sealed when the write was
    /// staged: a later key must not change what an earlier entry wrote), visible to reads
    /// before they are committed.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    fault: RefCell<Option<StorageFault>>,
    /// The staged changes may change which live events a session receives (see
    /// [`RocksHub::changed_access`]).
    changed_access: AccessChange,
    /// Committed values this view read already, by key (see [`RocksHub::raw`]).
    read_before: RefCell<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Committed pairs of prefixes this view scanned already (see [`RocksHub::scan`]).
    scanned_before: RefCell<HashMap<Vec<u8>, Vec<KeyValue>>>,
    /// The apply version as this view last read or set it: asked at every command, two or
    /// three times an entry, and opening the stored value each time cost more than the read.
    /// Within one view only [`RocksHub::set_apply_version`] changes it.
    apply_version: Cell<Option<u32>>,
}

/// The most committed values one view keeps for reading again, and the largest it keeps: the
/// keys read again and again are small (a session, an account, the settings); a value larger
/// (an attachment's chunk) is read once.
const READ_AGAIN_KEYS: usize = 4096;
const READ_AGAIN_VALUE_BYTES: usize = 4096;
/// The most prefixes one view keeps the committed pairs of, and the most pairs and bytes it
/// keeps of one: the scans read again are small (a room's members, an account's devices).
const SCAN_AGAIN_PREFIXES: usize = 1024;
const SCAN_AGAIN_PAIRS: usize = 64;
const SCAN_AGAIN_BYTES: usize = 16 << 10;

/// The apply version from which an account's index of memberships (`U`) carries each
/// membership ([`RocksHub::put_member`]); see `kizuna_domain::APPLY_VERSION`.
pub(crate) const MEMBERS_IN_THEIR_INDEX_SINCE: u32 = 8;

/// The apply version from which the search index keeps one filter of a post's bigrams instead
/// of an entry per bigram ([`RocksHub::index_post`]); see `kizuna_domain::APPLY_VERSION`.
pub(crate) const POST_FILTERS_SINCE: u32 = 9;

/// Filters a search reads at a time from one room (each ~100 bytes): a room of years of posts
/// is walked in pages, never held whole.
const FILTERS_PER_READ: usize = 1024;

impl<'a> RocksHub<'a> {
    /// A view of the live database, for apply.
    pub fn new(db: &'a DB, vault: &'a Vault) -> Self {
        Self {
            db,
            vault,
            snapshot: None,
            overlay: BTreeMap::new(),
            fault: RefCell::new(None),
            changed_access: AccessChange::Nobody,
            read_before: RefCell::new(HashMap::new()),
            scanned_before: RefCell::new(HashMap::new()),
            apply_version: Cell::new(None),
        }
    }

    /// This view, told the apply version its state has (apply knows it from its last batch).
    pub fn knowing_apply_version(self, version: u32) -> Self {
        self.apply_version.set(Some(version));
        self
    }

    /// A view of the state as it is now, held still for as long as the view lives: for queries.
    pub fn at_snapshot(db: &'a DB, vault: &'a Vault) -> Self {
        Self { snapshot: Some(db.snapshot()), ..Self::new(db, vault) }
    }

    /// Read options that pin the view's snapshot, if it has one.
    fn read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(snapshot) = &self.snapshot {
            options.set_snapshot(snapshot);
        }
        options
    }

    /// The first result of the write remembered under `scoped_key`
    /// ([`kizuna_domain::Envelope::idempotency_scope`]), if that key was applied.
    pub fn remembered(&self, scoped_key: &str) -> Option<kizuna_domain::Applied> {
        self.get(&keys::text(keys::IDEMPOTENCY, scoped_key))
    }

    /// Remembers the result of a request under its scoped key, indexed by the apply clock so
    /// that it is forgotten after the retry window ([`Self::forget_remembered`]).
    pub fn remember(&mut self, scoped_key: &str, applied: &kizuna_domain::Applied, at_ms: u64) {
        self.put(keys::text(keys::IDEMPOTENCY, scoped_key), applied);
        self.put(keys::remembered_at(at_ms, scoped_key), &());
    }

    /// Forgets at most `limit` results remembered before `before_ms`, oldest first (a retry
    /// of one of them is then a new request). Returns a lower bound of the time the oldest
    /// result left was remembered (`None`: none is left), for the caller to skip the reads
    /// while nothing can be due.
    pub fn forget_remembered(&mut self, before_ms: u64, limit: usize) -> Option<u64> {
        let low: u64 = self.get(keys::REMEMBERED_FORGOTTEN).unwrap_or(0);
        let (prefix, start, end) = (
            keys::all(keys::REMEMBERED_AT),
            keys::id(keys::REMEMBERED_AT, low),
            keys::id(keys::REMEMBERED_AT, before_ms),
        );
        let remembered_at = |k: &[u8]| k.get(1..9).and_then(|t| <[u8; 8]>::try_from(t).ok()).map(u64::from_be_bytes);
        let mut due: Vec<Vec<u8>> = self.scan_from(&prefix, &start, limit).into_iter().map(|(k, _)| k).collect();
        if due.first().is_none_or(|k| *k >= end) {
            // Nothing due: the first one left is the oldest.
            return due.first().and_then(|k| remembered_at(k));
        }
        due.retain(|k| *k < end);
        let newest = due.last().and_then(|k| remembered_at(k));
        for key in &due {
            if let Some(scoped) = self.key_suffix(key, keys::key_of_remembered(key).map(str::to_owned)) {
                self.overlay.insert(keys::text(keys::IDEMPOTENCY, &scoped), None);
            }
            self.overlay.insert(key.clone(), None);
        }
        if let Some(newest) = newest {
            self.put(keys::REMEMBERED_FORGOTTEN.to_vec(), &newest);
        }
        // Those left are no older than the newest forgotten.
        newest
    }

    /// The first storage failure this view met, if any: then some answer it gave was invented.
    pub fn fault(&self) -> Option<StorageFault> {
        self.fault.borrow().clone()
    }

    fn note(&self, fault: StorageFault) {
        self.fault.borrow_mut().get_or_insert(fault);
    }

    /// The stored value at `k`: staged by this view, or committed. A committed value read
    /// once is kept for the view's next read of it: one request reads the session, its account
    /// and the settings several times, and an apply batch reads them for every entry (at 256
    /// writers a lookup in the sorted tables was a fifth of the leader's CPU, session 18).
    /// What is committed never changes under a view: a query reads one snapshot; apply is the
    /// only writer, its writes are staged in the overlay, read first, until
    /// [`Self::write_into`] ends the view.
    fn raw(&self, k: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.overlay.get(k) {
            return v.clone();
        }
        if let Some(v) = self.read_before.borrow().get(k) {
            return v.clone();
        }
        match self.db.get_cf_opt(cf(self.db, family_of(k)), k, &self.read_options()) {
            Ok(value) => {
                self.keep_for_reading_again(k, &value);
                value
            }
            Err(e) => {
                self.note(StorageFault::read(k, e));
                None
            }
        }
    }

    fn keep_for_reading_again(&self, k: &[u8], value: &Option<Vec<u8>>) {
        let mut kept = self.read_before.borrow_mut();
        let small = value.as_ref().is_none_or(|v| v.len() <= READ_AGAIN_VALUE_BYTES);
        if small && kept.len() < READ_AGAIN_KEYS {
            kept.insert(k.to_vec(), value.clone());
        }
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Option<T> {
        self.raw(k).and_then(|v| self.decode(k, &v))
    }

    /// The values at `keys`, in their order, as [`Self::get`] reads them, in one batched
    /// RocksDB read: a patient list reads hundreds of rooms and memberships, and batched the
    /// CPU of that walk fell by ~40 % (docs/benchmarks.md, session 15).
    fn get_many<T: DeserializeOwned>(&self, keys: &[Vec<u8>]) -> Vec<Option<T>> {
        let unstaged: Vec<&Vec<u8>> = keys.iter().filter(|k| !self.overlay.contains_key(*k)).collect();
        let mut committed = self.committed_many(&unstaged).into_iter();
        keys.iter()
            .map(|k| {
                let stored = match self.overlay.get(k) {
                    Some(staged) => staged.clone(),
                    // A slot a batched read left unanswered is a fault, never a shifted answer.
                    None => match committed.next().flatten() {
                        Some(Ok(value)) => value,
                        Some(Err(e)) => {
                            self.note(StorageFault::read(k, e));
                            None
                        }
                        None => {
                            self.note(StorageFault::read(k, "a batched read answered fewer keys than asked"));
                            None
                        }
                    },
                };
                stored.and_then(|v| self.decode(k, &v))
            })
            .collect()
    }

    /// The committed values at `keys`, in their order: one batched read per family they are
    /// stored in (the keys of one table are all in one). A key left unanswered (a batched read that answered fewer than asked) is None.
    fn committed_many(&self, keys: &[&Vec<u8>]) -> Vec<Option<Committed>> {
        let mut answers: Vec<Option<Committed>> = keys.iter().map(|_| None).collect();
        for family in STATE_FAMILIES {
            let (at, asked): (Vec<usize>, Vec<&Vec<u8>>) =
                keys.iter().enumerate().filter(|(_, k)| family_of(k) == family).map(|(i, k)| (i, *k)).unzip();
            if asked.is_empty() {
                continue;
            }
            let read = self.db.batched_multi_get_cf_opt(cf(self.db, family), asked, false, &self.read_options());
            for (i, value) in at.into_iter().zip(read) {
                answers[i] = Some(value.map(|v| v.map(|v| v.to_vec())));
            }
        }
        answers
    }

    /// A stored value opened and decoded.
    fn decode<T: DeserializeOwned>(&self, k: &[u8], stored: &[u8]) -> Option<T> {
        self.decode_opened(k, &self.opened(k, stored)?)
    }

    /// A stored value opened (unsealed when sealed); a value that does not open is a fault.
    fn opened<'v>(&self, k: &[u8], stored: &'v [u8]) -> Option<Cow<'v, [u8]>> {
        self.vault.open_state(k, stored).map_err(|e| self.note(StorageFault::decode(k, e))).ok()
    }

    /// An opened value decoded; one that is not what its key promises is a fault.
    fn decode_opened<T: DeserializeOwned>(&self, k: &[u8], plain: &[u8]) -> Option<T> {
        codec::decode(plain).map_err(|e| self.note(StorageFault::decode(k, e))).ok()
    }

    /// Stages a write, sealed with the hub's newest data key as of this entry. A value that
    /// cannot be encoded is a fault, never a delete.
    fn put<T: Serialize>(&mut self, k: Vec<u8>, v: &T) {
        match codec::encode(v) {
            Ok(bytes) => {
                let stored = self.vault.seal_state(&k, bytes);
                self.overlay.insert(k, Some(stored));
            }
            Err(e) => self.note(StorageFault::encode(&k, e)),
        }
    }

    /// Committed pairs from `start` on, below `end`, in key order; a read error ends them, as a
    /// fault. The bound is RocksDB's own: without it an iterator that leaves the range first
    /// steps over every deleted or shadowed entry behind it (a queue's tombstones) before it
    /// finds the next live key to stop at.
    ///
    /// A range over several of the state's families (only the seal step's walk of the whole
    /// state) reads them merged in key order.
    fn committed_from(&self, start: &[u8], end: Option<Vec<u8>>) -> impl Iterator<Item = Pair> + '_ {
        let families: Vec<&str> = state_families::families_in(start, end.as_deref()).collect();
        MergedByKey::new(families.into_iter().map(|family| self.committed_in(family, start, end.clone())))
    }

    /// [`Self::committed_from`] in one column family.
    fn committed_in(&self, family: &str, start: &[u8], end: Option<Vec<u8>>) -> impl Iterator<Item = Pair> + '_ {
        let mode = IteratorMode::From(start, Direction::Forward);
        let start = start.to_vec();
        let mut options = self.read_options();
        if let Some(end) = end {
            options.set_iterate_upper_bound(end);
        }
        self.db
            .iterator_cf_opt(cf(self.db, family), options, mode)
            .map_while(move |item| item.map_err(|e| self.note(StorageFault::scan(&start, e))).ok())
    }

    /// All values under a prefix, committed and pending, in key order. The committed pairs of a
    /// small prefix are kept for the view's next scan of it, as [`Self::raw`] keeps values: the
    /// apply of one post reads its room's members three times (the federation's fan-out, the
    /// e-mail and the push notices), and an iterator over every level for each read was a
    /// tenth of a node's CPU under a load of posts (docs/benchmarks.md, session 33).
    fn scan(&self, prefix: &[u8]) -> Vec<KeyValue> {
        let pending = self.pending_from(prefix, prefix);
        if let Some(kept) = self.scanned_before.borrow().get(prefix) {
            return merge_pending(kept.iter().cloned(), pending, usize::MAX);
        }
        let mut committed = self.committed_under(prefix, prefix);
        let first: Vec<KeyValue> = committed.by_ref().take(SCAN_AGAIN_PAIRS + 1).collect();
        self.keep_for_scanning_again(prefix, &first);
        merge_pending(first.into_iter().chain(committed), pending, usize::MAX)
    }

    fn keep_for_scanning_again(&self, prefix: &[u8], pairs: &[KeyValue]) {
        let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut kept = self.scanned_before.borrow_mut();
        if pairs.len() <= SCAN_AGAIN_PAIRS && bytes <= SCAN_AGAIN_BYTES && kept.len() < SCAN_AGAIN_PREFIXES {
            kept.insert(prefix.to_vec(), pairs.to_vec());
        }
    }

    /// At most `limit` values under `prefix` from key `start` on, committed and pending, in key
    /// order: reads only as far as it needs (a long queue is not read whole for one batch), and
    /// the batch's own pending writes cost only as many as come before the last value returned
    /// (apply calls this per entry: a batch of hundreds must not make each call read hundreds).
    fn scan_from(&self, prefix: &[u8], start: &[u8], limit: usize) -> Vec<KeyValue> {
        merge_pending(self.committed_under(prefix, start), self.pending_from(prefix, start), limit)
    }

    /// The staged writes under `prefix` from key `start` on, in key order (None: a delete).
    fn pending_from<'v>(
        &'v self,
        prefix: &'v [u8],
        start: &[u8],
    ) -> impl Iterator<Item = (&'v Vec<u8>, &'v Option<Vec<u8>>)> + 'v {
        self.overlay.range(start.to_vec()..).take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// The committed pairs under `prefix` from key `start` on, in key order.
    fn committed_under<'v>(&'v self, prefix: &'v [u8], start: &[u8]) -> impl Iterator<Item = KeyValue> + 'v {
        self.committed_from(start, keys::prefix_end(prefix))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
    }

    /// The decoded values under a prefix, in key order (an undecodable one is a fault).
    fn values<T: DeserializeOwned>(&self, prefix: &[u8]) -> Vec<T> {
        self.scan(prefix).into_iter().filter_map(|(k, v)| self.decode(&k, &v)).collect()
    }

    /// Whose live events the staged changes may change: an account's when they write the
    /// account, one of its sessions, or make one of its memberships active or not — what
    /// [`kizuna_domain::authz::can_read`] and the session check read; everyone's when they write
    /// the hub's settings (its session policy). Not the room itself: a room is readable to no
    /// one before a membership of it is active, so its own changes (every post moves its last
    /// sequence number) and an active member's (her read marker) need not count.
    pub fn changed_access(&self) -> &AccessChange {
        &self.changed_access
    }

    /// See [`Self::changed_access`] (a membership's change: [`Self::put_member`]).
    fn access_changed_by(change: &Change) -> AccessChange {
        match change {
            Change::Account(a) => AccessChange::of_account(a.id),
            Change::Session(s) => AccessChange::of_account(s.account),
            Change::RemoveMember { account, .. } => AccessChange::of_account(*account),
            Change::Settings(_) => AccessChange::Everyone,
            _ => AccessChange::Nobody,
        }
    }

    /// Stores a membership under its room and in its account's index. From apply version
    /// [`MEMBERS_IN_THEIR_INDEX_SINCE`] the index entry is the membership itself, rewritten
    /// with every change (a post moves its author's read marker: one small write more per
    /// post) so that [`HubView::rooms_of`] reads an account's memberships in one scan instead
    /// of a scan and a lookup per room. Before, the entry is empty and written only when the
    /// membership is new. Notes whether the membership's activeness changed (a read fault
    /// counts as a change, and stops apply anyway).
    fn put_member(&mut self, m: &Member) {
        let index = keys::ids(MEMBERSHIPS, m.account.0, m.room.0);
        let carried = self.apply_version() >= MEMBERS_IN_THEIR_INDEX_SINCE;
        match self.member(m.room, m.account) {
            Ok(was) => {
                if was.as_ref().is_some_and(Member::is_active) != m.is_active() {
                    self.changed_access.merge(AccessChange::of_account(m.account));
                }
                if !carried && was.is_none() {
                    self.put(index.clone(), &());
                }
            }
            Err(_) => self.changed_access.merge(AccessChange::Everyone),
        }
        if carried {
            self.put(index, m);
        }
        self.put(keys::ids(MEMBERS, m.room.0, m.account.0), m);
    }

    /// One entry of an account's index of memberships: the membership it carries, or `None`
    /// for an empty entry (written before [`MEMBERS_IN_THEIR_INDEX_SINCE`], until the
    /// membership next changes).
    fn indexed_member(&self, k: &[u8], stored: &[u8]) -> Option<Option<Member>> {
        let plain = self.opened(k, stored)?;
        match codec::body_of(&plain) {
            Ok([]) => Some(None),
            _ => self.decode_opened(k, &plain).map(Some),
        }
    }

    pub fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            self.changed_access.merge(Self::access_changed_by(&change));
            match change {
                Change::Account(a) => {
                    self.put(keys::text(LOGINS, &a.login), &a.id);
                    if let Some(facility) = a.facility() {
                        self.put(keys::ids(STAFF, facility.0, a.id.0), &());
                    }
                    if a.is_operator() {
                        self.put(keys::all(OPERATOR), &true);
                    }
                    self.put(keys::id(ACCOUNTS, a.id.0), &a);
                }
                Change::Facility(f) => self.put(keys::id(FACILITIES, f.id.0), &f),
                Change::Invitation(i) => self.put(keys::text(INVITATIONS, &i.code_hash), &i),
                Change::Patient(p) => self.put(keys::id(PATIENTS, p.id.0), &p),
                Change::Room(r) => self.put(keys::id(ROOMS, r.id.0), &r),
                Change::Member(m) => self.put_member(&m),
                Change::RemoveMember { room, account } => {
                    self.overlay.insert(keys::ids(MEMBERSHIPS, account.0, room.0), None);
                    self.overlay.insert(keys::ids(MEMBERS, room.0, account.0), None);
                }
                Change::Post(p) => {
                    self.index_post(&p);
                    self.put(keys::ids(POSTS, p.room.0, p.seq), &p);
                }
                Change::Connection(c) => {
                    for index in keys::connection_of((c.pair.0.0, c.pair.1.0)) {
                        self.put(index, &());
                    }
                    self.put(keys::ids(CONNECTIONS, c.pair.0.0, c.pair.1.0), &c)
                }
                Change::Session(s) => {
                    self.put(keys::session_of(s.account.0, &s.token_hash), &());
                    self.put(keys::text(SESSIONS, &s.token_hash), &s);
                }
                Change::Request(r) => {
                    self.put(keys::ids(REQUESTS_SENT, r.from.0, r.id.0), &());
                    for to in &r.recipients {
                        self.put(keys::ids(REQUESTS_TO, to.facility.0, r.id.0), &());
                    }
                    self.put(keys::id(REQUESTS, r.id.0), &r);
                }
                Change::Settings(s) => self.put(keys::all(SETTINGS), &s),
                Change::InboundStream { origin, stream } => self.put(keys::text(INBOUND, origin.as_str()), &stream),
                Change::InboxMessage(m) => self.put(keys::inbox_message(m.origin.as_str(), m.seq), &m),
                Change::OutboundStream { to, stream } => self.put(keys::text(OUTBOUND, to.as_str()), &stream),
                Change::Outboxed(m) => self.put(keys::outbox_message(m.to.as_str(), m.seq), &m),
                Change::OutboxAcked { to, up_to } => self.prune_outbox(&to, up_to),
                Change::Mirror { home, home_room, local } => self.put(keys::mirror(home.as_str(), home_room.0), &local),
                Change::Pending(p) => self.put(keys::id(PENDING, p.ticket), &p),
                Change::PendingDone { ticket } => {
                    self.overlay.insert(keys::id(PENDING, ticket), None);
                }
                Change::HeardFrom { origin, at_ms } => self.put(keys::text(HEARD, origin.as_str()), &at_ms),
                Change::FederationPaused { peer, paused } => {
                    self.put(keys::text(FEDERATION_PAUSED, peer.as_str()), &paused)
                }
                Change::DirectoryShare { peer, share: true } => {
                    self.put(keys::text(DIRECTORY_SHARES, peer.as_str()), &peer)
                }
                Change::DirectoryShare { peer, share: false } => {
                    self.overlay.insert(keys::text(DIRECTORY_SHARES, peer.as_str()), None);
                }
                Change::RemoteFacility(f) => self.put(keys::id(REMOTE_FACILITIES, f.facility.id.0), &f),
                Change::RequestLink(l) => self.put(keys::id(REQUEST_LINKS, l.local.0), &l),
                Change::NotificationSettings(s) => self.put(keys::id(NOTIFICATION_SETTINGS, s.account.0), &s),
                Change::Notice(n) => self.put(keys::ids(NOTICES, n.account.0, n.room.0), &n),
                Change::NoticeGone { account, room } => {
                    self.overlay.insert(keys::ids(NOTICES, account.0, room.0), None);
                }
                Change::Blob(b) => self.put_blob(&b),
                Change::BlobChunk { hash, index, bytes } => {
                    self.put(keys::chunk(&hash.0, index), &serde_bytes::Bytes::new(&bytes))
                }
                Change::BlobGone(b) => self.remove_blob(&b),
                Change::Attachment(a) => self.put_attachment(&a),
                Change::AttachmentGone(a) => {
                    self.unindex_attachment(&a);
                    self.overlay.insert(keys::id(ATTACHMENTS, a.id.0), None);
                }
                Change::PostFiles { room, seq, files } if files.is_empty() => {
                    self.overlay.insert(keys::ids(POST_FILES, room.0, seq), None);
                }
                Change::PostFiles { room, seq, files } => self.put(keys::ids(POST_FILES, room.0, seq), &files),
                Change::StoredBytes(n) => self.put(keys::all(STORED_BYTES), &n),
                Change::PushSubscription(sub) => {
                    let key = keys::push_subscription(sub.account.0, &push::endpoint_hash(&sub.endpoint));
                    self.put(key, &sub)
                }
                Change::PushSubscriptionGone { account, endpoint } => {
                    self.overlay.insert(keys::push_subscription(account.0, &push::endpoint_hash(&endpoint)), None);
                }
                Change::PushNotice(n) => self.put(keys::ids(PUSH_NOTICES, n.account.0, n.room.0), &n),
                Change::PushNoticeGone { account, room } => {
                    self.overlay.insert(keys::ids(PUSH_NOTICES, account.0, room.0), None);
                }
                Change::Fetch(f) => self.put_fetch(&f),
                Change::FetchDone { hash, from } => {
                    self.overlay.insert(keys::blob_from(FETCHES, &hash.0, from.as_str()), None);
                    self.overlay.insert(keys::blob_from(FAILED_FETCHES, &hash.0, from.as_str()), None);
                }
                Change::Proven { from, hash } => self.put(keys::blob_from(PROOFS, &hash.0, from.as_str()), &()),
                Change::LoginGuard { guarded, guard: Some(guard) } => {
                    let key = keys::login_guard(&guarded, |t| self.vault.guard_hash(t));
                    self.put(key, &guard)
                }
                Change::LoginGuard { guarded, guard: None } => {
                    self.overlay.insert(keys::login_guard(&guarded, |t| self.vault.guard_hash(t)), None);
                }
                Change::SecondFactorPolicy(policy) => self.put(keys::all(keys::SECOND_FACTOR_POLICY), &policy),
                Change::BreakGlass { account, designation: Some(d) } => {
                    self.put(keys::id(keys::BREAK_GLASS, account.0), &d)
                }
                Change::BreakGlass { account, designation: None } => {
                    self.overlay.insert(keys::id(keys::BREAK_GLASS, account.0), None);
                }
                Change::EmergencyAccess(a) => self.put(keys::ids(keys::EMERGENCY_ACCESSES, a.room.0, a.account.0), &a),
                Change::PasswordPolicy(policy) => self.put(keys::all(keys::PASSWORD_POLICY), &policy),
                Change::PasswordIssued { account, issued: true } => {
                    self.put(keys::id(keys::PASSWORDS_ISSUED, account.0), &())
                }
                Change::PasswordIssued { account, issued: false } => {
                    self.overlay.insert(keys::id(keys::PASSWORDS_ISSUED, account.0), None);
                }
                Change::Disaster(d) => self.put(keys::id(keys::DISASTERS, d.id.0), &d),
                Change::DisasterPolicy(p) => self.put(keys::all(keys::DISASTER_POLICY), &p),
                Change::CareProfile { patient, profile } => {
                    self.put(keys::id(keys::CARE_PROFILES, patient.0), &profile)
                }
                Change::Record { key, record } => self.put(keys::text(keys::RECORDS, &key), &record),
                Change::ObservationRefused { id, refusal } => {
                    self.put(keys::observation_fate(&id), &kizuna_domain::disaster::Fate::Refused(refusal))
                }
                Change::Observation { observation: o, current } => {
                    let fate = kizuna_domain::disaster::Fate::Applied { disaster: o.disaster, subject: o.subject };
                    self.put(keys::observation_fate(&o.id), &fate);
                    if current {
                        self.put(keys::current_observation(o.disaster.0, o.subject), &o);
                    }
                    self.put(keys::observation(&o), &o);
                }
            }
        }
    }

    /// Stores a blob and keeps the index of unclaimed blobs: listed while no attachment holds it.
    fn put_blob(&mut self, b: &Blob) {
        let unclaimed = keys::unclaimed_blob(b.since_ms, &b.hash.0);
        if b.refs == 0 {
            self.put(unclaimed, &());
        } else {
            self.overlay.insert(unclaimed, None);
        }
        self.put(keys::blob(&b.hash.0), b);
    }

    /// A fetch still due in `v`, a failed one in `x` (so failed ones never hide due ones).
    fn put_fetch(&mut self, f: &Fetch) {
        let (due, failed) = (
            keys::blob_from(FETCHES, &f.hash.0, f.from.as_str()),
            keys::blob_from(FAILED_FETCHES, &f.hash.0, f.from.as_str()),
        );
        let (put, gone) = if f.failed.is_some() { (failed, due) } else { (due, failed) };
        self.overlay.insert(gone, None);
        self.put(put, f);
    }

    /// Removes a blob, its stored chunks, its index entry, its fetches and its proofs.
    fn remove_blob(&mut self, b: &Blob) {
        for index in 0..b.stored_chunks {
            self.overlay.insert(keys::chunk(&b.hash.0, index), None);
        }
        for table in [FETCHES, FAILED_FETCHES, PROOFS] {
            for (key, _) in self.scan(&keys::blob_prefix(table, &b.hash.0)) {
                self.overlay.insert(key, None);
            }
        }
        self.overlay.insert(keys::unclaimed_blob(b.since_ms, &b.hash.0), None);
        self.overlay.insert(keys::blob(&b.hash.0), None);
    }

    /// Stores an attachment and keeps the index of unused ones: listed since it was uploaded
    /// until a post takes it, and again once its post is deleted.
    fn put_attachment(&mut self, a: &Attachment) {
        self.unindex_attachment(a);
        if let Some(since) = a.unused_since() {
            self.put(keys::ids(UNUSED_ATTACHMENTS, since, a.id.0), &());
        }
        self.put(keys::id(ATTACHMENTS, a.id.0), a);
    }

    /// Removes every index entry an attachment can have had (it changes state at most twice:
    /// posted, then released).
    fn unindex_attachment(&mut self, a: &Attachment) {
        for since in [Some(a.uploaded_at_ms), a.released_at_ms].into_iter().flatten() {
            self.overlay.insert(keys::ids(UNUSED_ATTACHMENTS, since, a.id.0), None);
        }
    }

    /// The bytes of chunk `index` of the file `hash`, as stored (None: not stored).
    pub fn chunk(&self, hash: BlobHash, index: u32) -> Option<Vec<u8>> {
        self.get::<serde_bytes::ByteBuf>(&keys::chunk(&hash.0, index)).map(serde_bytes::ByteBuf::into_vec)
    }

    /// At most `limit` keys of an index whose keys begin with a since-time, older than `before`.
    fn due(&self, table: Table, before_ms: u64, limit: usize) -> Vec<Vec<u8>> {
        let prefix = keys::all(table);
        let end = keys::id(table, before_ms);
        self.scan_from(&prefix, &prefix, limit).into_iter().map(|(k, _)| k).take_while(|k| *k < end).collect()
    }

    /// Moves the post's search-index entries from its stored text to its new one (none once
    /// deleted). Must run before the post itself is written. From [`POST_FILTERS_SINCE`] the
    /// entry is one filter of the post's bigrams (`kizuna_domain::bigram::filter_of`): a post
    /// wrote ~70 index pairs before, most of a post's apply (docs/benchmarks.md, session 34).
    /// A post indexed before keeps its entries per bigram until its text changes; then they
    /// go and it gets a filter.
    fn index_post(&mut self, post: &Post) {
        let stored = self.get::<Post>(&keys::ids(POSTS, post.room.0, post.seq));
        let old = stored.as_ref().map(searched_bigrams).unwrap_or_default();
        let new = searched_bigrams(post);
        if self.apply_version() < POST_FILTERS_SINCE {
            return self.index_by_bigram(post, &old, &new);
        }
        let filter_key = keys::post_filter(post.room.0, post.seq);
        if stored.is_some() {
            if old == new {
                return; // the same text: whichever entries it has stay right
            }
            if self.raw(&filter_key).is_none() {
                self.index_by_bigram(post, &old, &BTreeSet::new());
            }
        }
        if new.is_empty() {
            self.overlay.insert(filter_key, None);
        } else {
            self.put(filter_key, &serde_bytes::ByteBuf::from(bigram::filter_of(&new)));
        }
    }

    /// Moves the post's per-bigram index entries from the bigrams `old` to `new` (the index
    /// before [`POST_FILTERS_SINCE`]).
    fn index_by_bigram(&mut self, post: &Post, old: &BTreeSet<String>, new: &BTreeSet<String>) {
        let vault = self.vault;
        let entry = |gram: &str| keys::bigram_post(&vault.search_term(gram), post.room.0, post.seq);
        for gone in old.difference(new) {
            self.overlay.insert(entry(gone), None);
        }
        for added in new.difference(old) {
            self.put(entry(added), &());
        }
    }

    /// The posts of `room` whose filter may hold every one of `grams`, in order.
    fn posts_by_filter(&self, room: RoomId, grams: &BTreeSet<String>) -> Vec<u64> {
        let prefix = keys::post_filters_in_room(room.0);
        let probe = bigram::FilterProbe::of(grams);
        let (mut found, mut start) = (Vec::new(), prefix.clone());
        loop {
            let page = self.scan_from(&prefix, &start, FILTERS_PER_READ);
            let Some((last, _)) = page.last() else { return found };
            start = [last.as_slice(), &[0]].concat();
            let full = page.len() == FILTERS_PER_READ;
            for (k, stored) in page {
                let Some(seq) = self.key_suffix(&k, keys::id_after(&k, &prefix)) else { continue };
                let filter: Option<serde_bytes::ByteBuf> = self.decode(&k, &stored);
                if filter.is_some_and(|f| probe.may_be_in(&f)) {
                    found.push(seq);
                }
            }
            if !full {
                return found;
            }
        }
    }

    /// The posts of `room` under the per-bigram entries of `gram` (the index before
    /// [`POST_FILTERS_SINCE`]), in order.
    fn posts_with_bigram(&self, room: RoomId, gram: &str) -> Vec<u64> {
        let mut ids = self.ids_under(&keys::bigram_in_room(&self.vault.search_term(gram), room.0));
        // While sealing moves the index from plain terms to keyed ones, the posts indexed before
        // the first data key are still under the plain term: a search finds them all along.
        if self.vault.hub_keys() > 0 && self.sealing() {
            ids.extend(self.ids_under(&keys::bigram_in_room(gram.as_bytes(), room.0)));
        }
        ids
    }

    /// The hub's data keys as the state holds them (`m/key/…`, in id order).
    pub fn data_keys(&self) -> Vec<WrappedKey> {
        self.values(keys::DATA_KEYS)
    }

    /// Takes up the hub's keyring `keys` (checked by `kizuna_domain::keyring` already) from this
    /// entry on. With the first key, sealing what was written before begins ([`Self::seal_step`]).
    /// An error is this node's: it lacks a master key, or a key was replaced.
    pub fn take_data_keys(&mut self, keys: &[WrappedKey]) -> Result<(), VaultError> {
        let first = self.vault.hub_keys() == 0;
        self.vault.take_hub_keys(keys)?;
        for key in keys {
            self.put(keys::data_key(key.id), key);
        }
        if first {
            // What was written before is sealed in steps from the start of the state.
            self.put(keys::SEAL_CURSOR.to_vec(), &Vec::<u8>::new());
        }
        Ok(())
    }

    /// Whether the state written before the hub's first data key is still being sealed (a
    /// [`kizuna_domain::LogCommand::SealStep`] is due).
    pub fn sealing(&self) -> bool {
        self.raw(keys::SEAL_CURSOR).is_some()
    }

    /// Seals the next values written before the hub had a data key, from the stored cursor on,
    /// at most `limit` keys or `max_bytes` of values, and moves plain search-index terms to keyed
    /// ones. In steps, so no entry holds a large state at once; every replica takes the same
    /// steps (the keys in key order from the same cursor). True when it reached the end.
    pub fn seal_step(&mut self, limit: usize, max_bytes: usize) -> bool {
        let Some(cursor) = self.get::<Vec<u8>>(keys::SEAL_CURSOR) else { return true };
        let (mut bytes, mut next) = (0, None);
        for (i, (k, stored)) in self.scan_from(&[], &cursor, limit).into_iter().enumerate() {
            bytes += stored.len();
            self.seal_one(&k, stored);
            if bytes >= max_bytes || i + 1 == limit {
                next = Some([k, vec![0]].concat());
                break;
            }
        }
        match next {
            Some(next) => self.put(keys::SEAL_CURSOR.to_vec(), &next),
            None => {
                self.overlay.insert(keys::SEAL_CURSOR.to_vec(), None);
            }
        }
        !self.sealing()
    }

    /// Seals one stored value, or moves one plain search term to its keyed hash.
    fn seal_one(&mut self, k: &[u8], stored: Vec<u8>) {
        if k.starts_with(keys::DATA_KEYS) || k == keys::SEAL_CURSOR {
            return;
        }
        if let Some(Ok((term, room, seq))) = keys::plain_search_entry(k) {
            let keyed = keys::bigram_post(&self.vault.search_term(term), room, seq);
            self.overlay.insert(k.to_vec(), None);
            self.put(keyed, &());
            return;
        }
        if matches!(codec::sealed_parts(&stored), Ok(None)) {
            let sealed = self.vault.seal_state(k, stored);
            self.overlay.insert(k.to_vec(), Some(sealed));
        }
    }

    /// Appends a record to the audit chain; returns its sequence number.
    pub fn append_audit(&mut self, record: AuditRecord) -> u64 {
        let head: Option<(u64, String)> = self.get(&keys::all(AUDIT_HEAD));
        // The newest entry says which hash version the chain continues with.
        let version = |seq: u64| self.get::<AuditEntry>(&keys::id(AUDIT, seq)).map(|e| e.hash_version);
        let prev = head.as_ref().map(|(seq, hash)| audit::ChainHead {
            seq: *seq,
            hash,
            hash_version: version(*seq).unwrap_or(audit::encoding::CURRENT),
        });
        let entry = audit::next(prev, record);
        self.put(keys::all(AUDIT_HEAD), &(entry.seq, entry.hash.clone()));
        self.put(keys::id(AUDIT, entry.seq), &entry);
        entry.seq
    }

    /// Audit entries after `after_seq`, oldest first, at most `limit` (committed state only).
    /// An undecodable entry ends the list, as a fault: never skipped silently.
    pub fn audit_after(&self, after_seq: u64, limit: usize) -> Vec<AuditEntry> {
        let pairs = self.pairs_after(AUDIT, after_seq, limit);
        pairs.iter().map_while(|(k, v)| self.decode(k, v)).collect()
    }

    /// The inbox messages of `origin` after `after_seq`, in stream order, at most `limit`
    /// (committed and pending). An undecodable one ends the list, as a fault.
    pub fn inbox_after(&self, origin: &HubName, after_seq: u64, limit: usize) -> Vec<InboxMessage> {
        let start = keys::inbox_message(origin.as_str(), after_seq.saturating_add(1));
        self.stream_from(&keys::inbox_of(origin.as_str()), &start, limit)
    }

    /// The queued messages to `to` after `after_seq`, in stream order, at most `limit`
    /// (committed and pending). An undecodable one ends the list, as a fault.
    pub fn outbox_after(&self, to: &HubName, after_seq: u64, limit: usize) -> Vec<OutboxMessage> {
        let start = keys::outbox_message(to.as_str(), after_seq.saturating_add(1));
        self.stream_from(&keys::outbox_of(to.as_str()), &start, limit)
    }

    /// At most `limit` messages of one hub's stream (`prefix`) from `start` on, in order; an
    /// undecodable one ends the list, as a fault.
    fn stream_from<T: DeserializeOwned>(&self, prefix: &[u8], start: &[u8], limit: usize) -> Vec<T> {
        self.scan_from(prefix, start, limit).into_iter().map_while(|(k, v)| self.decode(&k, &v)).collect()
    }

    /// Deletes the queued messages to `to` up to `up_to`: the destination applied them.
    fn prune_outbox(&mut self, to: &HubName, up_to: u64) {
        let first = keys::outbox_message(to.as_str(), 1);
        let end = keys::outbox_message(to.as_str(), up_to.saturating_add(1));
        // The queue starts at its oldest unacknowledged message: only the acknowledged run is
        // read, committed or staged in this batch.
        let mut acknowledged: Vec<Vec<u8>> =
            self.committed_from(&first, Some(end.clone())).map(|(k, _)| k.to_vec()).take_while(|k| *k < end).collect();
        acknowledged.extend(self.overlay.range(first..end).filter(|(_, v)| v.is_some()).map(|(k, _)| k.clone()));
        for key in acknowledged {
            self.overlay.insert(key, None);
        }
    }

    pub fn put_event(&mut self, event: &Event) {
        self.put(keys::id(EVENTS, event.cursor), event);
    }

    /// The cursor of the newest event forgotten (0: none).
    pub fn events_forgotten_to(&self) -> u64 {
        self.get(keys::EVENTS_FORGOTTEN).unwrap_or(0)
    }

    /// The hub's active apply version (`kizuna_domain::APPLY_VERSION`).
    pub fn apply_version(&self) -> u32 {
        if let Some(known) = self.apply_version.get() {
            return known;
        }
        let stored = self.get(keys::APPLY_VERSION).unwrap_or(kizuna_domain::FIRST_APPLY_VERSION);
        // Not kept from a read that failed: the view noted the fault, and the next ask reads again.
        if self.fault.borrow().is_none() {
            self.apply_version.set(Some(stored));
        }
        stored
    }

    pub fn set_apply_version(&mut self, version: u32) {
        self.put(keys::APPLY_VERSION.to_vec(), &version);
        self.apply_version.set(Some(version));
    }

    /// Removes the sessions among the next `limit` (a sweep that goes round the table) that
    /// were created before `before_ms`: every session ends within a day of its creation (the
    /// longest absolute lifetime), so these answer nothing any more.
    pub fn sweep_sessions(&mut self, before_ms: u64, limit: usize) {
        self.sweep(SESSIONS, keys::SESSION_SWEEP, limit, |_, s: &Session| {
            let dead = s.created_at_ms < before_ms;
            dead.then(|| vec![keys::text(SESSIONS, &s.token_hash), keys::session_of(s.account.0, &s.token_hash)])
        });
    }

    /// Removes the unused invitations among the next `limit` that expired before `before_ms`
    /// (a used one stays: it says who brought whom in).
    pub fn sweep_invitations(&mut self, before_ms: u64, limit: usize) {
        self.sweep(INVITATIONS, keys::INVITATION_SWEEP, limit, |_, i: &Invitation| {
            let dead = i.used_by.is_none() && i.expires_at_ms < before_ms;
            dead.then(|| vec![keys::text(INVITATIONS, &i.code_hash)])
        });
    }

    /// Removes the counts of failed sign-ins among the next `limit` that count nothing at
    /// `now_ms` any more (their window passed and they lock nothing): logins that never
    /// existed leave none behind for long.
    pub fn sweep_login_guards(&mut self, now_ms: u64, limit: usize) {
        self.sweep(
            keys::LOGIN_GUARDS,
            keys::LOGIN_GUARD_SWEEP,
            limit,
            |key, g: &kizuna_domain::login_guard::LoginGuard| {
                kizuna_domain::login_guard::spent(g, now_ms).then(|| vec![key.to_vec()])
            },
        );
    }

    /// Looks at the next `limit` records of `table` after the cursor kept at `cursor_key`, and
    /// deletes the keys `dead` names for each (given the record's key and value); at the
    /// table's end the next sweep starts over.
    /// Decided by the replicated state alone, so every replica sweeps the same records.
    fn sweep<T: DeserializeOwned>(
        &mut self,
        table: Table,
        cursor_key: &[u8],
        limit: usize,
        dead: impl Fn(&[u8], &T) -> Option<Vec<Vec<u8>>>,
    ) {
        let prefix = keys::all(table);
        let cursor: Option<serde_bytes::ByteBuf> = self.get(cursor_key);
        // The smallest key after the cursor: the cursor with a zero byte appended.
        let start = cursor.map_or_else(|| prefix.clone(), |c| [c.as_slice(), &[0]].concat());
        let found = self.scan_from(&prefix, &start, limit);
        for (key, value) in &found {
            if let Some(gone) = self.decode::<T>(key, value).as_ref().and_then(|v| dead(key, v)) {
                for key in gone {
                    self.overlay.insert(key, None);
                }
            }
        }
        match found.last() {
            Some((key, _)) if found.len() == limit => self.put(cursor_key.to_vec(), &serde_bytes::Bytes::new(key)),
            _ => {
                self.overlay.insert(cursor_key.to_vec(), None);
            }
        }
    }

    /// Forgets at most `limit` of the oldest live events, those from before `before_ms`:
    /// subscribers resume from a cursor within the replay window, an older one reloads. The
    /// scan starts after what was forgotten, never over the deleted keys again. Returns a
    /// lower bound of the oldest event's time left (`None`: no event is left).
    pub fn forget_events(&mut self, before_ms: u64, limit: usize) -> Option<u64> {
        let forgotten = self.events_forgotten_to();
        // One read tells when nothing is due (the same answer as the scan).
        match self.events_after_pending(forgotten, 1).first() {
            None => return None,
            Some(first) if first.at_ms >= before_ms => return Some(first.at_ms),
            Some(_) => {}
        }
        let mut newest = forgotten;
        let mut oldest_left = None;
        for event in self.events_after_pending(forgotten, limit) {
            if event.at_ms >= before_ms {
                oldest_left = Some(event.at_ms);
                break;
            }
            self.overlay.insert(keys::id(EVENTS, event.cursor), None);
            newest = event.cursor;
            // Those left are no older than this one.
            oldest_left = Some(event.at_ms);
        }
        if newest != forgotten {
            self.put(keys::EVENTS_FORGOTTEN.to_vec(), &newest);
        }
        oldest_left
    }

    /// Events after `cursor` as this apply batch left them (its own writes included).
    fn events_after_pending(&self, cursor: u64, limit: usize) -> Vec<Event> {
        let (prefix, start) = (keys::all(EVENTS), keys::id(EVENTS, cursor.saturating_add(1)));
        self.scan_from(&prefix, &start, limit).into_iter().map_while(|(k, v)| self.decode(&k, &v)).collect()
    }

    /// Stored events after `cursor`, oldest first, at most `limit` (an undecodable one is a
    /// fault, and ends the list: a subscriber must not skip past it).
    pub fn events_after(&self, cursor: u64, limit: usize) -> Vec<Event> {
        let pairs = self.pairs_after(EVENTS, cursor, limit);
        pairs.iter().map_while(|(k, v)| self.decode(k, v)).collect()
    }

    /// Committed pairs of a u64-keyed log table (prefix + big-endian number) after `after`,
    /// in order, at most `limit`.
    fn pairs_after(&self, table: Table, after: u64, limit: usize) -> Vec<Pair> {
        let start = keys::id(table, after.saturating_add(1));
        let prefix = keys::all(table);
        self.committed_from(&start, keys::prefix_end(&prefix))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .take(limit)
            .collect()
    }

    /// Moves the pending writes into a RocksDB write batch; refused, writing nothing, once the
    /// view met a fault: its pending writes may rest on invented answers.
    pub fn write_into(self, batch: &mut WriteBatch) -> Result<(), StorageFault> {
        if let Some(fault) = self.fault() {
            return Err(fault);
        }
        for (k, v) in self.overlay {
            let family = cf(self.db, family_of(&k));
            match v {
                Some(v) => batch.put_cf(family, k, v),
                None => batch.delete_cf(family, k),
            }
        }
        Ok(())
    }
}

/// The bigrams a post is found by: those of its normalised text; none once deleted.
fn searched_bigrams(post: &Post) -> BTreeSet<String> {
    if post.deleted { BTreeSet::new() } else { search::bigrams(&search::normalize(&post.text)) }
}

/// At most `limit` of the `committed` pairs with the `pending` writes over them, in key order:
/// a pending write of a committed key replaces it, a pending delete hides it.
fn merge_pending<'v>(
    committed: impl Iterator<Item = KeyValue>,
    pending: impl Iterator<Item = (&'v Vec<u8>, &'v Option<Vec<u8>>)>,
    limit: usize,
) -> Vec<KeyValue> {
    let (mut committed, mut pending) = (committed.peekable(), pending.peekable());
    let mut found = Vec::new();
    while found.len() < limit {
        // Committed against pending key: the smaller comes first.
        let order = match (committed.peek(), pending.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((c, _)), Some((p, _))) => c.cmp(p),
        };
        if order == Ordering::Equal {
            committed.next();
        }
        let next = if order == Ordering::Less {
            committed.next()
        } else {
            pending.next().and_then(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        };
        found.extend(next);
    }
    found
}

impl HubState for RocksHub<'_> {
    fn apply(&mut self, changes: Vec<Change>) {
        RocksHub::apply(self, changes)
    }
}

/// Every answer goes through [`RocksHub::checked`]: once the view met a fault, no read of it
/// is answered, because the answer may have been invented by the fault.
impl HubView for RocksHub<'_> {
    fn login_guard(
        &self,
        guarded: &kizuna_domain::login_guard::Guarded,
    ) -> ViewResult<Option<kizuna_domain::login_guard::LoginGuard>> {
        self.checked(self.get(&keys::login_guard(guarded, |t| self.vault.guard_hash(t))))
    }
    fn second_factor_policy(&self) -> ViewResult<kizuna_domain::second_factor_policy::SecondFactorPolicy> {
        self.checked(self.get(&keys::all(keys::SECOND_FACTOR_POLICY)).unwrap_or_default())
    }
    fn password_policy(&self) -> ViewResult<kizuna_domain::password_policy::PasswordPolicy> {
        self.checked(self.get(&keys::all(keys::PASSWORD_POLICY)).unwrap_or_default())
    }
    fn password_issued(&self, account: AccountId) -> ViewResult<bool> {
        self.checked(self.get::<()>(&keys::id(keys::PASSWORDS_ISSUED, account.0)).is_some())
    }
    fn apply_version(&self) -> ViewResult<u32> {
        Ok(RocksHub::apply_version(self))
    }
    fn break_glass(&self, account: AccountId) -> ViewResult<Option<kizuna_domain::emergency::Designation>> {
        self.checked(self.get(&keys::id(keys::BREAK_GLASS, account.0)))
    }
    fn emergency_access(
        &self,
        room: RoomId,
        account: AccountId,
    ) -> ViewResult<Option<kizuna_domain::emergency::EmergencyAccess>> {
        self.checked(self.get(&keys::ids(keys::EMERGENCY_ACCESSES, room.0, account.0)))
    }
    fn emergency_accesses(&self) -> ViewResult<Vec<kizuna_domain::emergency::EmergencyAccess>> {
        self.checked(self.values(&keys::all(keys::EMERGENCY_ACCESSES)))
    }
    fn disasters(&self) -> ViewResult<Vec<kizuna_domain::disaster::Disaster>> {
        self.checked(self.values(&keys::all(keys::DISASTERS)))
    }
    fn disaster_policy(&self) -> ViewResult<kizuna_domain::disaster::DisasterPolicy> {
        self.checked(self.get(&keys::all(keys::DISASTER_POLICY)).unwrap_or_default())
    }
    fn care_profile(&self, patient: PatientId) -> ViewResult<Option<kizuna_domain::disaster::CareProfile>> {
        self.checked(self.get(&keys::id(keys::CARE_PROFILES, patient.0)))
    }
    /// A scan of every care profile: a hub's patients are tens of thousands at most, a board is
    /// read rarely, and an index keyed by the municipality would put its name in clear in a key.
    fn patients_in(&self, municipality: &str) -> ViewResult<Vec<PatientId>> {
        let prefix = keys::all(keys::CARE_PROFILES);
        let mut found = Vec::new();
        for (k, v) in self.scan(&prefix) {
            let profile: Option<kizuna_domain::disaster::CareProfile> = self.decode(&k, &v);
            let id = self.key_suffix(&k, keys::id_after(&k, &prefix));
            if let (Some(profile), Some(id)) = (profile, id)
                && profile.municipality == municipality
            {
                found.push(PatientId(id));
            }
        }
        self.checked(found)
    }
    fn observation_fate(
        &self,
        id: kizuna_domain::disaster::ObservationId,
    ) -> ViewResult<Option<kizuna_domain::disaster::Fate>> {
        self.checked(self.get(&keys::observation_fate(&id)))
    }
    fn current_observation(
        &self,
        disaster: DisasterId,
        subject: kizuna_domain::disaster::Subject,
    ) -> ViewResult<Option<kizuna_domain::disaster::Observation>> {
        self.checked(self.get(&keys::current_observation(disaster.0, subject)))
    }
    fn current_observations(&self, disaster: DisasterId) -> ViewResult<Vec<kizuna_domain::disaster::Observation>> {
        self.checked(self.values(&keys::id(keys::CURRENT_OBSERVATIONS, disaster.0)))
    }
    fn observations_of(
        &self,
        disaster: DisasterId,
        subject: kizuna_domain::disaster::Subject,
    ) -> ViewResult<Vec<kizuna_domain::disaster::Observation>> {
        self.checked(self.values(&keys::observations_of(disaster.0, subject)))
    }
    fn record(&self, key: &str) -> ViewResult<Option<kizuna_domain::Record>> {
        self.checked(self.get(&keys::text(keys::RECORDS, key)))
    }
    fn account(&self, id: AccountId) -> ViewResult<Option<Account>> {
        self.checked(self.get(&keys::id(ACCOUNTS, id.0)))
    }
    fn account_by_login(&self, login: &str) -> ViewResult<Option<AccountId>> {
        self.checked(self.get(&keys::text(LOGINS, login)))
    }
    fn facility(&self, id: FacilityId) -> ViewResult<Option<Facility>> {
        self.checked(self.get(&keys::id(FACILITIES, id.0)))
    }
    fn facilities(&self) -> ViewResult<Vec<Facility>> {
        self.checked(self.values(&keys::all(FACILITIES)))
    }
    fn staff_of(&self, facility: FacilityId) -> ViewResult<Vec<Account>> {
        self.checked(
            self.ids_under(&keys::id(STAFF, facility.0))
                .into_iter()
                .filter_map(|id| self.get(&keys::id(ACCOUNTS, id)))
                .collect(),
        )
    }
    fn invitation_by_code(&self, code_hash: &str) -> ViewResult<Option<Invitation>> {
        self.checked(self.get(&keys::text(INVITATIONS, code_hash)))
    }
    fn patient(&self, id: PatientId) -> ViewResult<Option<Patient>> {
        self.checked(self.get(&keys::id(PATIENTS, id.0)))
    }
    fn patients(&self, ids: &[PatientId]) -> ViewResult<Vec<Option<Patient>>> {
        let keys: Vec<_> = ids.iter().map(|id| keys::id(PATIENTS, id.0)).collect();
        self.checked(self.get_many(&keys))
    }
    fn room(&self, id: RoomId) -> ViewResult<Option<Room>> {
        self.checked(self.get(&keys::id(ROOMS, id.0)))
    }
    fn member(&self, room: RoomId, account: AccountId) -> ViewResult<Option<Member>> {
        self.checked(self.get(&keys::ids(MEMBERS, room.0, account.0)))
    }
    fn members(&self, room: RoomId) -> ViewResult<Vec<Member>> {
        self.checked(self.values(&keys::id(MEMBERS, room.0)))
    }
    fn rooms(&self, ids: &[RoomId]) -> ViewResult<Vec<Option<Room>>> {
        let keys: Vec<_> = ids.iter().map(|id| keys::id(ROOMS, id.0)).collect();
        self.checked(self.get_many(&keys))
    }
    /// In room order, from the account's index: the memberships its entries carry, and those
    /// of its empty entries (see [`RocksHub::indexed_member`]) read from their rooms in one batch.
    fn rooms_of(&self, account: AccountId) -> ViewResult<Vec<Member>> {
        let prefix = keys::id(MEMBERSHIPS, account.0);
        let mut found: Vec<Option<Member>> = Vec::new();
        let (mut empty_at, mut empty_rooms) = (Vec::new(), Vec::new());
        for (k, v) in self.scan(&prefix) {
            match self.indexed_member(&k, &v) {
                Some(Some(member)) => found.push(Some(member)),
                Some(None) => {
                    if let Some(room) = self.key_suffix(&k, keys::id_after(&k, &prefix)) {
                        empty_at.push(found.len());
                        empty_rooms.push(keys::ids(MEMBERS, room, account.0));
                        found.push(None);
                    }
                }
                None => {}
            }
        }
        for (at, member) in empty_at.into_iter().zip(self.get_many(&empty_rooms)) {
            found[at] = member;
        }
        self.checked(found.into_iter().flatten().collect())
    }
    fn post(&self, room: RoomId, seq: u64) -> ViewResult<Option<Post>> {
        self.checked(self.get(&keys::ids(POSTS, room.0, seq)))
    }
    fn posts(&self, at: &[(RoomId, u64)]) -> ViewResult<Vec<Option<Post>>> {
        let keys: Vec<_> = at.iter().map(|&(room, seq)| keys::ids(POSTS, room.0, seq)).collect();
        self.checked(self.get_many(&keys))
    }
    /// Posts indexed by a filter and, by one of the bigrams, those indexed before filters.
    fn posts_with_bigrams(&self, room: RoomId, grams: &BTreeSet<String>) -> ViewResult<Vec<u64>> {
        let mut ids = self.posts_by_filter(room, grams);
        if let Some(probe) = grams.first() {
            ids.extend(self.posts_with_bigram(room, probe));
        }
        ids.sort_unstable();
        ids.dedup();
        self.checked(ids)
    }
    fn connection(&self, pair: (AccountId, AccountId)) -> ViewResult<Option<Connection>> {
        self.checked(self.get(&keys::ids(CONNECTIONS, pair.0.0, pair.1.0)))
    }
    fn session(&self, token_hash: &str) -> ViewResult<Option<Session>> {
        self.checked(self.get(&keys::text(SESSIONS, token_hash)))
    }
    fn connections_of(&self, account: AccountId) -> ViewResult<Vec<Connection>> {
        let connections = self
            .ids_under(&keys::id(CONNECTIONS_OF, account.0))
            .into_iter()
            .filter_map(|other| {
                let (a, b) = connection_pair(account, AccountId(other));
                self.get(&keys::ids(CONNECTIONS, a.0, b.0))
            })
            .collect();
        self.checked(connections)
    }
    fn sessions_of(&self, account: AccountId) -> ViewResult<Vec<Session>> {
        let prefix = keys::id(SESSIONS_OF, account.0);
        let sessions = self
            .scan(&prefix)
            .into_iter()
            .filter_map(|(k, _)| self.key_suffix(&k, keys::text_after(&k, &prefix).map(str::to_owned)))
            .filter_map(|token| self.get(&keys::text(SESSIONS, &token)))
            .collect();
        self.checked(sessions)
    }
    fn has_operator(&self) -> ViewResult<bool> {
        self.checked(self.raw(&keys::all(OPERATOR)).is_some())
    }
    fn care_request(&self, id: RequestId) -> ViewResult<Option<CareRequest>> {
        self.checked(self.get(&keys::id(REQUESTS, id.0)))
    }
    fn care_requests_from(&self, account: AccountId) -> ViewResult<Vec<CareRequest>> {
        self.checked(self.indexed_requests(&keys::id(REQUESTS_SENT, account.0)))
    }
    fn care_requests_to(&self, facility: FacilityId) -> ViewResult<Vec<CareRequest>> {
        self.checked(self.indexed_requests(&keys::id(REQUESTS_TO, facility.0)))
    }
    fn settings(&self) -> ViewResult<HubSettings> {
        self.checked(self.get(&keys::all(SETTINGS)).unwrap_or_default())
    }
    fn inbound(&self, origin: &HubName) -> ViewResult<Inbound> {
        self.checked(self.get(&keys::text(INBOUND, origin.as_str())).unwrap_or_default())
    }
    fn outbound(&self, to: &HubName) -> ViewResult<Outbound> {
        self.checked(self.get(&keys::text(OUTBOUND, to.as_str())).unwrap_or_default())
    }
    fn mirror_of(&self, home: &HubName, home_room: RoomId) -> ViewResult<Option<RoomId>> {
        self.checked(self.get(&keys::mirror(home.as_str(), home_room.0)))
    }
    fn pending_write(&self, ticket: u64) -> ViewResult<Option<PendingWrite>> {
        self.checked(self.get(&keys::id(PENDING, ticket)))
    }
    fn heard_from(&self, origin: &HubName) -> ViewResult<Option<u64>> {
        self.checked(self.get(&keys::text(HEARD, origin.as_str())))
    }
    fn pending_in(&self, room: RoomId) -> ViewResult<Vec<PendingWrite>> {
        let all: Vec<PendingWrite> = self.values(&keys::all(PENDING));
        self.checked(all.into_iter().filter(|p| p.room == room).collect())
    }
    fn federation_paused(&self, peer: &HubName) -> ViewResult<bool> {
        self.checked(self.get(&keys::text(FEDERATION_PAUSED, peer.as_str())).unwrap_or(false))
    }
    fn directory_shared_with(&self) -> ViewResult<Vec<HubName>> {
        self.checked(self.values(&keys::all(DIRECTORY_SHARES)))
    }
    fn remote_facility(&self, id: FacilityId) -> ViewResult<Option<RemoteFacility>> {
        self.checked(self.get(&keys::id(REMOTE_FACILITIES, id.0)))
    }
    fn remote_facilities(&self) -> ViewResult<Vec<RemoteFacility>> {
        self.checked(self.values(&keys::all(REMOTE_FACILITIES)))
    }
    fn request_link(&self, id: RequestId) -> ViewResult<Option<RequestLink>> {
        self.checked(self.get(&keys::id(REQUEST_LINKS, id.0)))
    }
    fn notification_settings(&self, account: AccountId) -> ViewResult<Option<NotificationSettings>> {
        self.checked(self.get(&keys::id(NOTIFICATION_SETTINGS, account.0)))
    }
    fn notice(&self, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>> {
        self.checked(self.get(&keys::ids(NOTICES, account.0, room.0)))
    }
    fn notices(&self) -> ViewResult<Vec<Notice>> {
        self.checked(self.values(&keys::all(NOTICES)))
    }
    fn push_subscriptions(&self, account: AccountId) -> ViewResult<Vec<PushSubscription>> {
        // Stored by endpoint hash; answered by endpoint, as the trait promises.
        let mut held: Vec<PushSubscription> = self.values(&keys::id(PUSH_SUBSCRIPTIONS, account.0));
        held.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        self.checked(held)
    }
    fn push_notice(&self, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>> {
        self.checked(self.get(&keys::ids(PUSH_NOTICES, account.0, room.0)))
    }
    fn push_notices(&self) -> ViewResult<Vec<Notice>> {
        self.checked(self.values(&keys::all(PUSH_NOTICES)))
    }
    fn blob(&self, hash: BlobHash) -> ViewResult<Option<Blob>> {
        self.checked(self.get(&keys::blob(&hash.0)))
    }
    fn attachment(&self, id: AttachmentId) -> ViewResult<Option<Attachment>> {
        self.checked(self.get(&keys::id(ATTACHMENTS, id.0)))
    }
    fn post_files(&self, room: RoomId, seq: u64) -> ViewResult<Vec<AttachmentId>> {
        self.checked(self.get(&keys::ids(POST_FILES, room.0, seq)).unwrap_or_default())
    }
    fn unused_attachments(&self, before_ms: u64, limit: usize) -> ViewResult<Vec<AttachmentId>> {
        let keys = self.due(UNUSED_ATTACHMENTS, before_ms, limit);
        let ids: Vec<AttachmentId> =
            keys.iter().filter_map(|k| self.key_suffix(k, keys::id_of_unused(k))).map(AttachmentId).collect();
        self.checked(ids)
    }
    fn unclaimed_blobs(&self, before_ms: u64, limit: usize) -> ViewResult<Vec<BlobHash>> {
        let keys = self.due(UNCLAIMED_BLOBS, before_ms, limit);
        let hashes: Vec<BlobHash> =
            keys.iter().filter_map(|k| self.key_suffix(k, keys::hash_of_unclaimed(k))).map(BlobHash).collect();
        self.checked(hashes)
    }
    fn stored_bytes(&self) -> ViewResult<u64> {
        self.checked(self.get(&keys::all(STORED_BYTES)).unwrap_or(0))
    }
    fn fetch(&self, hash: BlobHash, from: &HubName) -> ViewResult<Option<Fetch>> {
        let due = self.get(&keys::blob_from(FETCHES, &hash.0, from.as_str()));
        let fetch = due.or_else(|| self.get(&keys::blob_from(FAILED_FETCHES, &hash.0, from.as_str())));
        self.checked(fetch)
    }
    fn fetches(&self, limit: usize) -> ViewResult<Vec<Fetch>> {
        let prefix = keys::all(FETCHES);
        let found = self.scan_from(&prefix, &prefix, limit);
        let fetches = found.into_iter().filter_map(|(k, v)| self.decode(&k, &v)).collect();
        self.checked(fetches)
    }
    fn proven(&self, from: &HubName, hash: BlobHash) -> ViewResult<bool> {
        let proof = self.raw(&keys::blob_from(PROOFS, &hash.0, from.as_str()));
        self.checked(proof.is_some())
    }
}

impl RocksHub<'_> {
    /// The ids that end the keys of an index table under `prefix` (big-endian u64s).
    fn ids_under(&self, prefix: &[u8]) -> Vec<u64> {
        self.scan(prefix).into_iter().filter_map(|(k, _)| self.key_suffix(&k, keys::id_after(&k, prefix))).collect()
    }

    /// What ends an index key, as `keys` parsed it; a key that does not parse is a fault (a
    /// damaged or foreign key), not an entry to skip.
    fn key_suffix<T>(&self, k: &[u8], parsed: Result<T, KeyError>) -> Option<T> {
        parsed.map_err(|_| self.note(StorageFault::decode(k, "the key does not end in what its index holds"))).ok()
    }

    /// The requests of an index table: the request id ends each key under `prefix`.
    fn indexed_requests(&self, prefix: &[u8]) -> Vec<CareRequest> {
        self.ids_under(prefix).into_iter().filter_map(|id| self.get(&keys::id(REQUESTS, id))).collect()
    }

    /// `value`, unless this view has met a fault: then the view's fault.
    fn checked<T>(&self, value: T) -> ViewResult<T> {
        match self.fault() {
            Some(fault) => Err(ViewError(fault.to_string())),
            None => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use rocksdb::Options;

    use super::*;
    use crate::CF_SM_DATA;

    /// These tests are of the views' reads and writes: nothing sealed (see `vault/`).
    fn plain() -> &'static Vault {
        static PLAIN: std::sync::OnceLock<Vault> = std::sync::OnceLock::new();
        PLAIN.get_or_init(Vault::plain)
    }

    fn open(dir: &std::path::Path) -> DB {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        DB::open_cf(&opts, dir, STATE_FAMILIES).expect("open a test db")
    }

    fn clinic(id: u64) -> Facility {
        Facility {
            id: FacilityId(id),
            name: format!("診療所 {id}"),
            kind: FacilityKind::Clinic,
            municipality: "宇都宮市".into(),
            status: FacilityStatus::Approved,
            profile: Default::default(),
        }
    }

    /// Stores `facilities` through a view, as apply does.
    fn store(db: &DB, facilities: &[Facility]) {
        let mut hub = RocksHub::new(db, plain());
        hub.apply(facilities.iter().cloned().map(Change::Facility).collect());
        let mut batch = WriteBatch::default();
        hub.write_into(&mut batch).expect("no fault");
        db.write(batch).expect("write");
    }

    #[test]
    fn a_query_view_sees_one_state_while_apply_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(1)]);
        let query = RocksHub::at_snapshot(&db, plain());
        let mut renamed = clinic(1);
        renamed.name = "改名した診療所".into();
        store(&db, &[renamed.clone(), clinic(2)]);
        // Point reads and scans alike: the state the view was taken at, not a mix of both.
        assert_eq!(query.facility(FacilityId(1)), Ok(Some(clinic(1))));
        assert_eq!(query.facility(FacilityId(2)), Ok(None));
        assert_eq!(query.facilities(), Ok(vec![clinic(1)]));
        assert_eq!(query.fault(), None);
        // A new view, like the live one apply uses, sees the new batch.
        assert_eq!(RocksHub::at_snapshot(&db, plain()).facilities(), Ok(vec![renamed.clone(), clinic(2)]));
        assert_eq!(RocksHub::new(&db, plain()).facility(FacilityId(1)), Ok(Some(renamed)));
    }

    /// A view keeps what it read for reading again, under what it stages since.
    #[test]
    fn a_value_read_again_is_the_one_staged_since_or_the_one_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(1)]);
        let mut hub = RocksHub::new(&db, plain());
        assert_eq!(hub.facility(FacilityId(1)), Ok(Some(clinic(1))));
        assert_eq!(hub.facility(FacilityId(2)), Ok(None));
        // Kept from the first reads, and still under what this view stages after them.
        let mut renamed = clinic(1);
        renamed.name = "改名した診療所".into();
        hub.put(keys::id(FACILITIES, 1), &renamed);
        hub.put(keys::id(FACILITIES, 2), &clinic(2));
        assert_eq!(hub.facility(FacilityId(1)), Ok(Some(renamed.clone())));
        assert_eq!(hub.facility(FacilityId(2)), Ok(Some(clinic(2))));
        hub.overlay.insert(keys::id(FACILITIES, 1), None);
        assert_eq!(hub.facility(FacilityId(1)), Ok(None), "a staged delete, not the value read before");
        // A large value is read again from the store, not kept.
        let big = "x".repeat(READ_AGAIN_VALUE_BYTES + 1);
        db.put_cf(cf(&db, CF_SM_DATA), b"big", &big).expect("write");
        assert_eq!(hub.raw(b"big"), Some(big.into_bytes()));
        assert!(!hub.read_before.borrow().contains_key(b"big".as_slice()));
        assert_eq!(hub.fault(), None);
    }

    /// A view keeps the committed pairs of a small prefix it scanned, under what it stages since;
    /// a large prefix is read again from the store.
    #[test]
    fn a_prefix_scanned_again_is_the_one_staged_since_or_the_one_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let put = |k: &str| db.put_cf(cf(&db, CF_SM_DATA), k, format!("c{k}")).expect("write");
        for k in ["p/1", "p/3"] {
            put(k);
        }
        for i in 0..=SCAN_AGAIN_PAIRS {
            put(&format!("r/{i:03}"));
        }
        let mut hub = RocksHub::new(&db, plain());
        let keys = |hub: &RocksHub, prefix: &str| -> Vec<String> {
            hub.scan(prefix.as_bytes()).into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect()
        };
        assert_eq!(keys(&hub, "p/"), ["p/1", "p/3"]);
        // Written beside the view (apply never does): the view answers from what it kept.
        put("p/2");
        assert_eq!(keys(&hub, "p/"), ["p/1", "p/3"], "kept from the first scan");
        hub.put(b"p/4".to_vec(), &4u32);
        hub.overlay.insert(b"p/1".to_vec(), None);
        assert_eq!(keys(&hub, "p/"), ["p/3", "p/4"], "under a staged put and delete");
        assert_eq!(keys(&hub, "r/").len(), SCAN_AGAIN_PAIRS + 1, "a large prefix, whole");
        put("r/999");
        assert_eq!(keys(&hub, "r/").len(), SCAN_AGAIN_PAIRS + 2, "and not kept");
        assert_eq!(hub.fault(), None);
    }

    /// `scan_from` merges the batch's pending writes into what is committed, in key order:
    /// a pending put adds or replaces, a pending delete hides, and `limit` counts what is
    /// returned — also when pending deletes come first.
    #[test]
    fn a_scan_merges_pending_writes_into_the_committed_ones_up_to_the_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        for k in ["p/1", "p/3", "p/5", "p/7", "q/0"] {
            db.put_cf(cf(&db, CF_SM_DATA), k, format!("c{k}")).expect("write");
        }
        let mut hub = RocksHub::new(&db, plain());
        let pending: [(&str, Option<&str>); 5] =
            [("p/0", Some("n0")), ("p/1", None), ("p/3", Some("n3")), ("p/4", Some("n4")), ("p/5", None)];
        for (k, v) in pending {
            hub.overlay.insert(k.into(), v.map(|v| v.as_bytes().to_vec()));
        }
        let scan = |start: &str, limit| -> Vec<(String, String)> {
            let found = hub.scan_from(b"p/", start.as_bytes(), limit);
            found
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into(), String::from_utf8_lossy(&v).into()))
                .collect()
        };
        let all = [("p/0", "n0"), ("p/3", "n3"), ("p/4", "n4"), ("p/7", "cp/7")].map(|(k, v)| (k.into(), v.into()));
        assert_eq!(scan("p/", usize::MAX), all.to_vec());
        assert_eq!(scan("p/", 2), all[..2].to_vec());
        assert_eq!(scan("p/1", 1), all[1..2].to_vec());
        assert_eq!(scan("p/5", 5), all[3..].to_vec());
        assert_eq!(scan("p/8", 5), vec![]);
    }

    /// Commits what a view staged, as apply does.
    fn commit(db: &DB, hub: RocksHub<'_>) {
        let mut batch = WriteBatch::default();
        hub.write_into(&mut batch).expect("no fault");
        db.write(batch).expect("write");
    }

    #[test]
    fn from_apply_version_8_an_account_s_index_carries_its_memberships() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let older = Member::new(RoomId(7), AccountId(3), Role::Member, MemberState::Active);
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::Member(older.clone())]);
        commit(&db, hub);
        let newer = Member::new(RoomId(9), AccountId(3), Role::Owner, MemberState::Active);
        let mut hub = RocksHub::new(&db, plain());
        hub.set_apply_version(MEMBERS_IN_THEIR_INDEX_SINCE);
        hub.apply(vec![Change::Member(newer.clone())]);
        commit(&db, hub);
        // Read without its room's record: the index entry carries it.
        db.delete_cf(db.cf_handle(CF_SM_DATA).expect("family"), keys::ids(MEMBERS, 9, 3)).expect("delete");
        let memberships = RocksHub::new(&db, plain()).rooms_of(AccountId(3));
        assert_eq!(memberships, Ok(vec![older.clone(), newer.clone()]), "the older one read from its room");
        let read = Member { read_seq: 5, ..older };
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::Member(read.clone())]);
        commit(&db, hub);
        db.delete_cf(db.cf_handle(CF_SM_DATA).expect("family"), keys::ids(MEMBERS, 7, 3)).expect("delete");
        let memberships = RocksHub::new(&db, plain()).rooms_of(AccountId(3));
        assert_eq!(memberships, Ok(vec![read, newer]), "a change rewrites the entry with the membership");
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::RemoveMember { room: RoomId(9), account: AccountId(3) }]);
        commit(&db, hub);
        assert_eq!(RocksHub::new(&db, plain()).rooms_of(AccountId(3)).map(|m| m.len()), Ok(1), "a removal ends it");
    }

    #[test]
    fn a_damaged_index_entry_is_a_fault_not_a_missing_membership() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let joined = Member::new(RoomId(7), AccountId(3), Role::Member, MemberState::Active);
        let mut hub = RocksHub::new(&db, plain());
        hub.set_apply_version(MEMBERS_IN_THEIR_INDEX_SINCE);
        hub.apply(vec![Change::Member(joined)]);
        commit(&db, hub);
        let family = db.cf_handle(CF_SM_DATA).expect("family");
        db.put_cf(family, keys::ids(MEMBERSHIPS, 3, 7), [codec::CURRENT, 0xff, 0xff]).expect("damage the entry");
        assert!(RocksHub::new(&db, plain()).rooms_of(AccountId(3)).is_err(), "a damaged entry is a fault");
    }

    #[test]
    fn before_apply_version_8_a_membership_is_indexed_when_it_is_new_not_with_every_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let joined = Member::new(RoomId(7), AccountId(3), Role::Member, MemberState::Active);
        let index = keys::ids(MEMBERSHIPS, 3, 7);
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::Member(joined.clone())]);
        assert!(hub.overlay.contains_key(&index), "a new membership is indexed");
        assert_eq!(
            hub.changed_access(),
            &AccessChange::of_account(AccountId(3)),
            "an active membership opens the room"
        );
        commit(&db, hub);
        let read = Member { read_seq: 5, ..joined };
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::Member(read.clone())]);
        assert!(!hub.overlay.contains_key(&index), "a read marker's move leaves the index alone");
        assert!(hub.changed_access().is_nobody());
        commit(&db, hub);
        assert_eq!(RocksHub::new(&db, plain()).rooms_of(AccountId(3)), Ok(vec![read]));
    }

    fn post(seq: u64, text: &str) -> Post {
        Post {
            room: RoomId(7),
            seq,
            author: AccountId(1),
            text: text.into(),
            reply_to: None,
            mentions: Vec::new(),
            posted_at_ms: seq,
            history: Vec::new(),
            deleted: false,
            acks: Vec::new(),
        }
    }

    /// Writes `posts` through a view at `version`, as apply does.
    fn store_posts(db: &DB, version: u32, posts: Vec<Post>) {
        let mut hub = RocksHub::new(db, plain());
        hub.set_apply_version(version);
        hub.apply(posts.into_iter().map(Change::Post).collect());
        commit(db, hub);
    }

    /// Every key of the search index's family.
    fn index_keys(db: &DB) -> Vec<Vec<u8>> {
        let family = db.cf_handle(crate::CF_SM_SEARCH).expect("family");
        db.iterator_cf(family, IteratorMode::Start).map(|pair| pair.expect("read").0.into_vec()).collect()
    }

    fn found(db: &DB, query: &[&str]) -> Vec<u64> {
        let grams = query.iter().map(|g| g.to_string()).collect();
        RocksHub::new(db, plain()).posts_with_bigrams(RoomId(7), &grams).expect("no fault")
    }

    #[test]
    fn from_apply_version_9_a_post_is_indexed_by_one_filter_and_an_older_one_moves_to_it_when_edited() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let older = post(1, "在宅酸素の流量");
        store_posts(&db, MEMBERS_IN_THEIR_INDEX_SINCE, vec![older.clone()]);
        assert_eq!(index_keys(&db).len(), 6, "before: an entry per bigram");
        store_posts(&db, POST_FILTERS_SINCE, vec![post(2, "褥瘡の処置について")]);
        assert_eq!(index_keys(&db).len(), 7, "from 9: one filter a post");
        assert!(index_keys(&db).contains(&keys::post_filter(7, 2)));
        assert_eq!(found(&db, &["酸素"]), vec![1], "found by its entry");
        assert_eq!(found(&db, &["褥瘡", "処置"]), vec![2], "found by its filter");
        assert_eq!(found(&db, &["増量"]), Vec::<u64>::new());

        store_posts(&db, POST_FILTERS_SINCE, vec![Post { text: "在宅酸素を増量".into(), ..older }]);
        assert_eq!(index_keys(&db), vec![keys::post_filter(7, 1), keys::post_filter(7, 2)], "its entries gone");
        assert_eq!(found(&db, &["増量"]), vec![1], "found by its new text");
        assert_eq!(found(&db, &["流量"]), Vec::<u64>::new(), "not by its old one");

        store_posts(&db, POST_FILTERS_SINCE, vec![Post { deleted: true, ..post(2, "褥瘡の処置について") }]);
        assert_eq!(index_keys(&db), vec![keys::post_filter(7, 1)], "a deleted post is found by nothing");
    }

    /// `get_many` answers what `get` would for each key, in the order asked: the batch's
    /// pending writes over the committed values, and the view's snapshot for a query.
    #[test]
    fn a_batched_read_answers_each_key_as_a_single_read_would() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(1), clinic(3), clinic(5)]);
        let query = RocksHub::at_snapshot(&db, plain());
        let mut renamed = clinic(5);
        renamed.name = "改名した診療所".into();
        let mut hub = RocksHub::new(&db, plain());
        hub.put(keys::id(FACILITIES, 2), &clinic(2));
        hub.put(keys::id(FACILITIES, 5), &renamed);
        hub.overlay.insert(keys::id(FACILITIES, 3), None);
        let asked: Vec<_> = [5, 4, 3, 2, 1].map(|id| keys::id(FACILITIES, id)).to_vec();
        let single: Vec<Option<Facility>> = asked.iter().map(|k| hub.get(k)).collect();
        assert_eq!(single, vec![Some(renamed), None, None, Some(clinic(2)), Some(clinic(1))]);
        assert_eq!(hub.get_many::<Facility>(&asked), single);
        store(&db, &[clinic(4)]);
        assert_eq!(
            query.get_many::<Facility>(&asked),
            vec![Some(clinic(5)), None, Some(clinic(3)), None, Some(clinic(1))]
        );
        assert_eq!((hub.fault(), query.fault()), (None, None));
    }

    fn damage(db: &DB, k: &[u8]) {
        db.put_cf(cf(db, CF_SM_DATA), k, b"\xff not json").expect("write");
    }

    fn is_decode_fault_at(fault: Option<StorageFault>, k: &str) -> bool {
        matches!(fault, Some(StorageFault::Decode { key, .. }) if key.starts_with(k))
    }

    #[test]
    fn an_undecodable_value_is_a_fault_not_an_absence() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(7)]);
        assert_eq!(RocksHub::new(&db, plain()).facility(FacilityId(7)), Ok(Some(clinic(7))));
        assert_eq!(RocksHub::new(&db, plain()).fault(), None);

        damage(&db, &keys::id(FACILITIES, 7));
        let hub = RocksHub::new(&db, plain());
        let read = hub.facility(FacilityId(7));
        assert!(read.as_ref().is_err_and(|e| e.0.contains("F/0000000000000007")), "the domain is told: {read:?}");
        assert!(is_decode_fault_at(hub.fault(), "F/0000000000000007 (facilities)"), "{:?}", hub.fault());
        // The view stays failed: a later read of a sound value is not answered either.
        store(&db, &[clinic(8)]);
        assert!(hub.facility(FacilityId(8)).is_err());
    }

    #[test]
    fn an_undecodable_value_met_in_a_scan_is_a_fault_not_a_shorter_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(1), clinic(2), clinic(3)]);
        damage(&db, &keys::id(FACILITIES, 2));
        let hub = RocksHub::new(&db, plain());
        assert!(hub.facilities().is_err(), "never a shorter list");
        assert!(is_decode_fault_at(hub.fault(), "F/0000000000000002"), "{:?}", hub.fault());
    }

    #[test]
    fn only_the_first_fault_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(1), clinic(2)]);
        damage(&db, &keys::id(FACILITIES, 1));
        damage(&db, &keys::id(FACILITIES, 2));
        let hub = RocksHub::new(&db, plain());
        assert!(hub.facility(FacilityId(2)).is_err());
        assert!(hub.facility(FacilityId(1)).is_err());
        assert!(is_decode_fault_at(hub.fault(), "F/0000000000000002"), "{:?}", hub.fault());
    }

    #[test]
    fn a_view_that_met_a_fault_writes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        store(&db, &[clinic(1)]);
        damage(&db, &keys::id(FACILITIES, 1));
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::Facility(clinic(2))]);
        assert!(hub.facility(FacilityId(1)).is_err());
        let mut batch = WriteBatch::default();
        let refused = hub.write_into(&mut batch);
        assert!(matches!(refused, Err(StorageFault::Decode { .. })), "{refused:?}");
        assert_eq!(batch.len(), 0, "staged writes of a faulted view reached the batch");
    }

    #[test]
    fn shares_facilities_of_other_hubs_and_request_links_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let gunma = HubName::new("gunma").unwrap();
        let remote =
            RemoteFacility { facility: clinic(1 << 63), hub: gunma.clone(), home_id: FacilityId(3), shared: true };
        let link = RequestLink {
            local: RequestId(1 << 63 | 1),
            hub: gunma.clone(),
            home_id: RequestId(9),
            about_patient: true,
        };
        let changes = vec![
            Change::DirectoryShare { peer: gunma.clone(), share: true },
            Change::DirectoryShare { peer: HubName::new("gun").unwrap(), share: true },
            Change::RemoteFacility(remote.clone()),
            Change::RequestLink(link.clone()),
            Change::DirectoryShare { peer: HubName::new("gun").unwrap(), share: false },
        ];
        let mut hub = RocksHub::new(&db, plain());
        hub.apply(changes);
        let mut batch = WriteBatch::default();
        hub.write_into(&mut batch).unwrap();
        db.write(batch).unwrap();
        let hub = RocksHub::new(&db, plain());
        assert_eq!(hub.directory_shared_with().unwrap(), vec![gunma]);
        assert_eq!(hub.remote_facility(remote.facility.id).unwrap(), Some(remote.clone()));
        assert_eq!(hub.remote_facilities().unwrap(), vec![remote]);
        assert_eq!(hub.facility(FacilityId(1 << 63)).unwrap(), None, "not one of this hub's facilities");
        assert_eq!(hub.request_link(link.local).unwrap(), Some(link));
    }

    fn queued(to: &HubName, seq: u64) -> OutboxMessage {
        OutboxMessage { to: to.clone(), seq, body: vec![seq as u8], queued_at_ms: 0 }
    }

    fn seqs(messages: Vec<OutboxMessage>) -> Vec<u64> {
        messages.into_iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_batch_reads_the_queue_from_its_place_seeing_this_batchs_own_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let gunma = HubName::new("gunma").unwrap();
        let mut hub = RocksHub::new(&db, plain());
        hub.apply((1..=5).map(|seq| Change::Outboxed(queued(&gunma, seq))).collect());
        let mut batch = WriteBatch::default();
        hub.write_into(&mut batch).expect("no fault");
        db.write(batch).expect("write");

        let mut hub = RocksHub::new(&db, plain());
        hub.apply(vec![Change::OutboxAcked { to: gunma.clone(), up_to: 2 }, Change::Outboxed(queued(&gunma, 6))]);
        assert_eq!(seqs(hub.outbox_after(&gunma, 0, 3)), [3, 4, 5], "acknowledged ones are gone");
        assert_eq!(seqs(hub.outbox_after(&gunma, 4, 10)), [5, 6], "staged ones are seen");
        assert_eq!(seqs(hub.outbox_after(&gunma, 0, 1)), [3]);
        let other = HubName::new("gun").unwrap();
        assert!(hub.outbox_after(&other, 0, 10).is_empty(), "another hub's queue is its own");
        assert_eq!(hub.fault(), None);
    }
}
