//! The collaboration network's tables in RocksDB (`sm_data`), seen through the domain's
//! [`HubView`] with an overlay of the current apply batch's own changes.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `A` | account id | Account |
//! | `L` | login | account id |
//! | `F` | facility id | Facility |
//! | `I` | invitation code hash | Invitation |
//! | `P` | patient id | Patient |
//! | `R` | room id | Room |
//! | `M` | room id, account id | Member |
//! | `U` | account id, room id | (index of an account's memberships) |
//! | `T` | room id, seq | Post |
//! | `N` | bigram, room id, seq | (search index: bigrams of each live post's current text) |
//! | `C` | account id, account id | Connection |
//! | `S` | token hash | Session |
//! | `V` | account id, token hash | (index of an account's sessions) |
//! | `O` | — | (an operator exists) |
//! | `G` | facility id, account id | (index of a facility's professionals) |
//! | `Y` | request id | CareRequest |
//! | `W` | account id, request id | (index of the requests an account sent) |
//! | `X` | facility id, request id | (index of the requests to a facility) |
//! | `E` | cursor | Event (the live-event log, for resumable subscriptions) |
//! | `Z` | audit seq | AuditEntry (the hash-chained audit log) |
//! | `z` | — | (seq, hash) of the newest audit entry |

use std::collections::{BTreeMap, BTreeSet};

use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CF_SM_DATA, cf};
use kizuna_domain::collab::audit::{self, AuditEntry, AuditRecord};
use kizuna_domain::collab::events::Event;
use kizuna_domain::collab::model::*;
use kizuna_domain::collab::requests::CareRequest;
use kizuna_domain::collab::search;
use kizuna_domain::collab::{Change, HubView};

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// A read view of the collaboration tables plus pending writes of the current batch.
pub struct RocksHub<'a> {
    db: &'a DB,
    /// Pending writes (None: delete), visible to reads before they are committed.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> RocksHub<'a> {
    pub fn new(db: &'a DB) -> Self {
        Self { db, overlay: BTreeMap::new() }
    }

    fn raw(&self, k: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.overlay.get(k) {
            return v.clone();
        }
        // A read error here means a broken disk; apply cannot continue safely, and the caller
        // turns a missing value into a refused command rather than a wrong state.
        self.db.get_cf(cf(self.db, CF_SM_DATA), k).ok().flatten()
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Option<T> {
        self.raw(k).and_then(|v| serde_json::from_slice(&v).ok())
    }

    fn put<T: Serialize>(&mut self, k: Vec<u8>, v: &T) {
        self.overlay.insert(k, serde_json::to_vec(v).ok());
    }

    /// All values under a prefix, committed and pending, in key order.
    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut found: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for item in self.db.iterator_cf(cf(self.db, CF_SM_DATA), mode) {
            let Ok((k, v)) = item else { break };
            if !k.starts_with(prefix) {
                break;
            }
            found.insert(k.to_vec(), Some(v.to_vec()));
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            found.insert(k.clone(), v.clone());
        }
        found.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
    }

    pub fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Account(a) => {
                    self.put(key(b'L', &[a.login.as_bytes()]), &a.id);
                    if let Some(facility) = a.facility() {
                        self.put(key(b'G', &[&be(facility.0), &be(a.id.0)]), &());
                    }
                    if a.is_operator() {
                        self.put(key(b'O', &[]), &true);
                    }
                    self.put(key(b'A', &[&be(a.id.0)]), &a);
                }
                Change::Facility(f) => self.put(key(b'F', &[&be(f.id.0)]), &f),
                Change::Invitation(i) => self.put(key(b'I', &[i.code_hash.as_bytes()]), &i),
                Change::Patient(p) => self.put(key(b'P', &[&be(p.id.0)]), &p),
                Change::Room(r) => self.put(key(b'R', &[&be(r.id.0)]), &r),
                Change::Member(m) => {
                    self.put(key(b'U', &[&be(m.account.0), &be(m.room.0)]), &());
                    self.put(key(b'M', &[&be(m.room.0), &be(m.account.0)]), &m);
                }
                Change::RemoveMember { room, account } => {
                    self.overlay.insert(key(b'U', &[&be(account.0), &be(room.0)]), None);
                    self.overlay.insert(key(b'M', &[&be(room.0), &be(account.0)]), None);
                }
                Change::Post(p) => {
                    self.index_post(&p);
                    self.put(key(b'T', &[&be(p.room.0), &be(p.seq)]), &p);
                }
                Change::Connection(c) => self.put(key(b'C', &[&be(c.pair.0.0), &be(c.pair.1.0)]), &c),
                Change::Session(s) => {
                    self.put(key(b'V', &[&be(s.account.0), s.token_hash.as_bytes()]), &());
                    self.put(key(b'S', &[s.token_hash.as_bytes()]), &s);
                }
                Change::Request(r) => {
                    self.put(key(b'W', &[&be(r.from.0), &be(r.id.0)]), &());
                    for to in &r.recipients {
                        self.put(key(b'X', &[&be(to.facility.0), &be(r.id.0)]), &());
                    }
                    self.put(key(b'Y', &[&be(r.id.0)]), &r);
                }
            }
        }
    }

    /// Moves the post's search-index entries from its stored text to its new one (none once
    /// deleted). Must run before the post itself is written.
    fn index_post(&mut self, post: &Post) {
        let grams = |p: &Post| if p.deleted { BTreeSet::new() } else { search::bigrams(&search::normalize(&p.text)) };
        let old = self.post(post.room, post.seq).map(|p| grams(&p)).unwrap_or_default();
        let new = grams(post);
        let entry = |gram: &str| key(b'N', &[gram.as_bytes(), &be(post.room.0), &be(post.seq)]);
        for gone in old.difference(&new) {
            self.overlay.insert(entry(gone), None);
        }
        for added in new.difference(&old) {
            self.put(entry(added), &());
        }
    }

    /// Appends a record to the audit chain; returns its sequence number.
    pub fn append_audit(&mut self, record: AuditRecord) -> u64 {
        let head: Option<(u64, String)> = self.get(&key(b'z', &[]));
        // The newest entry says which hash version the chain continues with.
        let version = |seq: u64| self.get::<AuditEntry>(&key(b'Z', &[&be(seq)])).map(|e| e.hash_version);
        let prev = head.as_ref().map(|(seq, hash)| audit::ChainHead {
            seq: *seq,
            hash,
            hash_version: version(*seq).unwrap_or(audit::encoding::CURRENT),
        });
        let entry = audit::next(prev, record);
        self.put(key(b'z', &[]), &(entry.seq, entry.hash.clone()));
        self.put(key(b'Z', &[&be(entry.seq)]), &entry);
        entry.seq
    }

    /// Audit entries after `after_seq`, oldest first, at most `limit` (committed state only).
    /// An undecodable entry ends the list: it is a break in the chain, not skipped silently.
    pub fn audit_after(&self, after_seq: u64, limit: usize) -> Vec<AuditEntry> {
        let values = self.values_after(b'Z', after_seq, limit);
        values.iter().map_while(|v| serde_json::from_slice(v).ok()).collect()
    }

    pub fn put_event(&mut self, event: &Event) {
        self.put(key(b'E', &[&be(event.cursor)]), event);
    }

    pub fn events_after(&self, cursor: u64, limit: usize) -> Vec<Event> {
        let values = self.values_after(b'E', cursor, limit);
        values.iter().filter_map(|v| serde_json::from_slice(v).ok()).collect()
    }

    /// Committed values of a u64-keyed log table (`prefix` + big-endian number) after `after`,
    /// in order, at most `limit`.
    fn values_after(&self, prefix: u8, after: u64, limit: usize) -> Vec<Vec<u8>> {
        let start = key(prefix, &[&be(after.saturating_add(1))]);
        let mode = IteratorMode::From(&start, Direction::Forward);
        self.db
            .iterator_cf(cf(self.db, CF_SM_DATA), mode)
            .map_while(Result::ok)
            .take_while(|(k, _)| k.first() == Some(&prefix))
            .take(limit)
            .map(|(_, v)| v.to_vec())
            .collect()
    }

    /// Moves the pending writes into a RocksDB write batch.
    pub fn write_into(self, batch: &mut WriteBatch) {
        let data = cf(self.db, CF_SM_DATA);
        for (k, v) in self.overlay {
            match v {
                Some(v) => batch.put_cf(data, k, v),
                None => batch.delete_cf(data, k),
            }
        }
    }
}

impl HubView for RocksHub<'_> {
    fn account(&self, id: AccountId) -> Option<Account> {
        self.get(&key(b'A', &[&be(id.0)]))
    }
    fn account_by_login(&self, login: &str) -> Option<AccountId> {
        self.get(&key(b'L', &[login.as_bytes()]))
    }
    fn facility(&self, id: FacilityId) -> Option<Facility> {
        self.get(&key(b'F', &[&be(id.0)]))
    }
    fn facilities(&self) -> Vec<Facility> {
        self.scan(&key(b'F', &[])).into_iter().filter_map(|(_, v)| serde_json::from_slice(&v).ok()).collect()
    }
    fn staff_of(&self, facility: FacilityId) -> Vec<Account> {
        self.ids_under(&key(b'G', &[&be(facility.0)]))
            .into_iter()
            .filter_map(|id| self.account(AccountId(id)))
            .collect()
    }
    fn invitation_by_code(&self, code_hash: &str) -> Option<Invitation> {
        self.get(&key(b'I', &[code_hash.as_bytes()]))
    }
    fn patient(&self, id: PatientId) -> Option<Patient> {
        self.get(&key(b'P', &[&be(id.0)]))
    }
    fn room(&self, id: RoomId) -> Option<Room> {
        self.get(&key(b'R', &[&be(id.0)]))
    }
    fn member(&self, room: RoomId, account: AccountId) -> Option<Member> {
        self.get(&key(b'M', &[&be(room.0), &be(account.0)]))
    }
    fn members(&self, room: RoomId) -> Vec<Member> {
        self.scan(&key(b'M', &[&be(room.0)])).into_iter().filter_map(|(_, v)| serde_json::from_slice(&v).ok()).collect()
    }
    fn rooms_of(&self, account: AccountId) -> Vec<Member> {
        self.ids_under(&key(b'U', &[&be(account.0)]))
            .into_iter()
            .filter_map(|room| self.member(RoomId(room), account))
            .collect()
    }
    fn post(&self, room: RoomId, seq: u64) -> Option<Post> {
        self.get(&key(b'T', &[&be(room.0), &be(seq)]))
    }
    fn posts_with_bigram(&self, room: RoomId, bigram: &str) -> Vec<u64> {
        self.ids_under(&key(b'N', &[bigram.as_bytes(), &be(room.0)]))
    }
    fn connection(&self, pair: (AccountId, AccountId)) -> Option<Connection> {
        self.get(&key(b'C', &[&be(pair.0.0), &be(pair.1.0)]))
    }
    fn session(&self, token_hash: &str) -> Option<Session> {
        self.get(&key(b'S', &[token_hash.as_bytes()]))
    }
    fn sessions_of(&self, account: AccountId) -> Vec<Session> {
        let prefix = key(b'V', &[&be(account.0)]);
        self.scan(&prefix)
            .into_iter()
            .filter_map(|(k, _)| String::from_utf8(k[prefix.len()..].to_vec()).ok())
            .filter_map(|token| self.session(&token))
            .collect()
    }
    fn has_operator(&self) -> bool {
        self.raw(&key(b'O', &[])).is_some()
    }
    fn care_request(&self, id: RequestId) -> Option<CareRequest> {
        self.get(&key(b'Y', &[&be(id.0)]))
    }
    fn care_requests_from(&self, account: AccountId) -> Vec<CareRequest> {
        self.indexed_requests(&key(b'W', &[&be(account.0)]))
    }
    fn care_requests_to(&self, facility: FacilityId) -> Vec<CareRequest> {
        self.indexed_requests(&key(b'X', &[&be(facility.0)]))
    }
}

impl RocksHub<'_> {
    /// The ids that end the keys of an index table under `prefix` (big-endian u64s).
    fn ids_under(&self, prefix: &[u8]) -> Vec<u64> {
        self.scan(prefix)
            .into_iter()
            .filter_map(|(k, _)| k.get(prefix.len()..).and_then(|id| id.try_into().ok()).map(u64::from_be_bytes))
            .collect()
    }

    /// The requests of an index table: the request id ends each key under `prefix`.
    fn indexed_requests(&self, prefix: &[u8]) -> Vec<CareRequest> {
        self.ids_under(prefix).into_iter().filter_map(|id| self.care_request(RequestId(id))).collect()
    }
}
