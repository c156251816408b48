//! Every key of the node's RocksDB, in one place: each table's prefix and name, an encode
//! function for every key shape, and a decode function where a key is parsed back.
//!
//! The byte layout is a stored format: existing data directories hold these exact keys, so a
//! change here is a migration, not a refactoring (`the_layout_is_pinned` guards it).
//!
//! Numbers are big-endian u64s: keys then sort in numeric order, so a range scan walks ids,
//! sequences and log indexes in order, and a fixed 8-byte parent id means a scan of one parent
//! (members of room 1) never reaches another's (room 256). String parts are raw UTF-8 with no
//! terminator; that is safe because every string-keyed table is read by exact key only (or
//! whole, as `d`, whose values repeat their keys), except
//! `N`, whose term is exactly two characters (UTF-8 is prefix-free, so one bigram's bytes never
//! start another's) or 0xff and a fixed-width hash (0xff starts no UTF-8 text), `V`, whose token hash ends the key after a fixed-width account id, and `K`,
//! whose origin hub name carries its length in a leading byte.
//!
//! `sm_data` (replicated, in snapshots), one-byte table prefix + key; the search index (`N`)
//! and the idempotency keys (`q`) are stored in families of their own, `sm_search` and
//! `sm_idempotency` (`state_families.rs`), with the same keys:
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
//! | `U` | account id, room id | Member from apply version 8 (index of an account's memberships; empty before, until the membership changes) |
//! | `T` | room id, seq | Post |
//! | `N` | term, room id, seq | (search index before apply version 9: bigrams of each live post's current text; the term is 0xff + an 8-byte keyed hash once the hub seals, the bigram before) |
//! | `N` | 0xfe, room id, seq | the bigram filter of a live post's current text (search index from apply version 9; 0xfe starts no UTF-8 text and is not 0xff) |
//! | `C` | account id, account id | Connection |
//! | `c` | account id, other account id | (index of an account's connections, both sides) |
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
//! | `H` | — | HubSettings (absent: never set, the defaults) |
//! | `J` | origin hub name | Inbound (the stream from that hub: highest sequence applied) |
//! | `K` | u8 len(origin), origin hub name, seq | InboxMessage (an origin's messages, in order) |
//! | `B` | destination hub name | Outbound (the stream to that hub: last assigned, acknowledged) |
//! | `D` | u8 len(destination), destination hub name, seq | OutboxMessage (queued, not yet acknowledged) |
//! | `Q` | u8 len(home), home hub name, home room id | room id (this hub's copy of that room) |
//! | `p` | ticket | PendingWrite (a write into a copy, until the home hub answers) |
//! | `h` | hub name | u64: when a batch from that hub was last applied (ms since the epoch) |
//! | `f` | peer hub name | bool (an operator paused sending to that peer) |
//! | `d` | peer hub name | HubName (this hub shares its resource map with that peer) |
//! | `o` | local facility id | RemoteFacility (a facility of another hub's shared map) |
//! | `l` | local request id | RequestLink (a request received from another hub) |
//! | `n` | account id | NotificationSettings |
//! | `e` | account id, room id | Notice (a pending e-mail notice, one per account and room) |
//! | `i` | account id, SHA-256 of the endpoint (32 bytes) | PushSubscription (a browser's Web Push subscription) |
//! | `j` | account id, room id | Notice (a pending push notice, one per account and room) |
//! | `b` | blob hash (32 bytes) | Blob (a stored file: size, chunks stored, references) |
//! | `k` | blob hash, u32 chunk index | bytes of one chunk of a file |
//! | `a` | attachment id | Attachment |
//! | `t` | room id, seq | the attachment ids of that post |
//! | `g` | since (ms), attachment id | (index of attachments no post shows, to collect) |
//! | `u` | since (ms), blob hash | (index of blobs no attachment holds, to collect) |
//! | `s` | — | u64: the bytes of every stored chunk (the hub's quota) |
//! | `y` | applied at (ms), scoped idempotency key | () (index of `q` by time, to forget after the retry window) |
//! | `v` | blob hash (32 bytes), hub name | Fetch (a blob to fetch from that hub, still due) |
//! | `x` | blob hash (32 bytes), hub name | Fetch (a fetch from that hub that failed, with why) |
//! | `w` | blob hash (32 bytes), hub name | () (that hub sent the whole blob, checked) |
//! | `r` | record key | Record |
//! | `q` | idempotency key (`account/key` when signed in) | Applied (idempotency) |
//! | `0` | `l` + keyed hash of a login, or `s` + of a source address (8 bytes) | LoginGuard (failed sign-ins, `kizuna_domain::login_guard`) |
//! | `1` | — | SecondFactorPolicy (who must have a second factor; absent: nobody) |
//! | `2` | account id | Designation (designated for emergency access) |
//! | `3` | room id, account id | EmergencyAccess (the newest of that account to that room) |
//! | `4` | — | PasswordPolicy (the rule for new passwords; absent: the default) |
//! | `5` | account id | () (its password is an issued one, not changed yet) |
//! | `6` | disaster id | Disaster (`kizuna_domain::disaster`) |
//! | `7` | — | DisasterPolicy (absent: only operators declare) |
//! | `8` | patient id | CareProfile (municipality, life-support devices) |
//! | `9` | disaster id, subject, observed at (ms), observation id (16 bytes) | Observation (every safety check and facility status, in merge order per subject) |
//! | `:` | disaster id, subject | Observation (the subject's current one by the merge rule) |
//! | `;` | observation id (16 bytes) | Fate (it reached the log: applied under which disaster and subject, or refused and why) |
//! | `m` | `/clock` | the apply clock (here, not in `sm_meta`, so snapshots carry it) |
//! | `m` | `/apply_version` | the hub's active apply version |
//! | `m` | `/key/` + u32 id | WrappedKey (a data key of the hub, never sealed itself) |
//! | `m` | `/seal_cursor` | the key from which sealing what came before the first data key goes on (absent: done) |
//!
//! Other column families: in the log's RocksDB `raft_log` (log index) and `raft_meta` (`vote`,
//! `committed`, `purged`); in the state's `node_meta` (`node_key`, `scrubbed`, and `format`, the
//! value format of the data dir: see `migrate.rs`), `sm_meta` (`applied`, `membership`),
//! `audit_journal` (local seq), all below.

/// Every letter is a table's prefix: tables added later take the ASCII digits, from `0`, then
/// the punctuation after them (`:`, `;`, …).
///
/// A table of the replicated state (in `sm_data`, or in a family of its own:
/// `state_families.rs`): its one-byte key prefix and the name operators see in faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Table {
    pub prefix: u8,
    pub name: &'static str,
}

const fn table(prefix: u8, name: &'static str) -> Table {
    Table { prefix, name }
}

pub(crate) const ACCOUNTS: Table = table(b'A', "accounts");
pub(crate) const LOGINS: Table = table(b'L', "logins");
pub(crate) const FACILITIES: Table = table(b'F', "facilities");
pub(crate) const INVITATIONS: Table = table(b'I', "invitations");
pub(crate) const PATIENTS: Table = table(b'P', "patients");
pub(crate) const ROOMS: Table = table(b'R', "rooms");
pub(crate) const MEMBERS: Table = table(b'M', "room members");
pub(crate) const MEMBERSHIPS: Table = table(b'U', "memberships of an account");
pub(crate) const POSTS: Table = table(b'T', "posts");
pub(crate) const SEARCH: Table = table(b'N', "search index");
pub(crate) const CONNECTIONS: Table = table(b'C', "connections");
pub(crate) const CONNECTIONS_OF: Table = table(b'c', "connections of an account");
pub(crate) const SESSIONS: Table = table(b'S', "sessions");
pub(crate) const SESSIONS_OF: Table = table(b'V', "sessions of an account");
pub(crate) const OPERATOR: Table = table(b'O', "operator flag");
pub(crate) const SETTINGS: Table = table(b'H', "hub settings");
pub(crate) const STAFF: Table = table(b'G', "staff of a facility");
pub(crate) const REQUESTS: Table = table(b'Y', "care requests");
pub(crate) const REQUESTS_SENT: Table = table(b'W', "requests sent");
pub(crate) const REQUESTS_TO: Table = table(b'X', "requests received");
pub(crate) const EVENTS: Table = table(b'E', "events");
pub(crate) const AUDIT: Table = table(b'Z', "audit log");
pub(crate) const AUDIT_HEAD: Table = table(b'z', "audit head");
pub(crate) const INBOUND: Table = table(b'J', "inbound federation streams");
pub(crate) const INBOX: Table = table(b'K', "federation inbox");
pub(crate) const OUTBOUND: Table = table(b'B', "outbound federation streams");
pub(crate) const OUTBOX: Table = table(b'D', "federation outbox");
pub(crate) const MIRRORS: Table = table(b'Q', "copies of other hubs' rooms");
pub(crate) const PENDING: Table = table(b'p', "writes pending on another hub");
pub(crate) const HEARD: Table = table(b'h', "last batch from each hub");
pub(crate) const FEDERATION_PAUSED: Table = table(b'f', "paused federation peers");
pub(crate) const DIRECTORY_SHARES: Table = table(b'd', "peers the resource map is shared with");
pub(crate) const REMOTE_FACILITIES: Table = table(b'o', "facilities of other hubs");
pub(crate) const REQUEST_LINKS: Table = table(b'l', "requests received from other hubs");
pub(crate) const NOTIFICATION_SETTINGS: Table = table(b'n', "notification settings");
pub(crate) const NOTICES: Table = table(b'e', "pending e-mail notices");
pub(crate) const PUSH_SUBSCRIPTIONS: Table = table(b'i', "push subscriptions");
pub(crate) const PUSH_NOTICES: Table = table(b'j', "pending push notices");
pub(crate) const BLOBS: Table = table(b'b', "stored files");
pub(crate) const CHUNKS: Table = table(b'k', "chunks of stored files");
pub(crate) const ATTACHMENTS: Table = table(b'a', "attachments");
pub(crate) const POST_FILES: Table = table(b't', "attachments of a post");
pub(crate) const UNUSED_ATTACHMENTS: Table = table(b'g', "attachments to collect");
pub(crate) const UNCLAIMED_BLOBS: Table = table(b'u', "stored files to collect");
pub(crate) const STORED_BYTES: Table = table(b's', "stored file bytes");
pub(crate) const FETCHES: Table = table(b'v', "files to fetch from other hubs");
pub(crate) const REMEMBERED_AT: Table = table(b'y', "remembered results by time");
pub(crate) const FAILED_FETCHES: Table = table(b'x', "files other hubs could not give");
pub(crate) const PROOFS: Table = table(b'w', "files other hubs sent whole");
pub(crate) const RECORDS: Table = table(b'r', "records");
pub(crate) const IDEMPOTENCY: Table = table(b'q', "idempotency keys");
pub(crate) const META: Table = table(b'm', "apply meta");
pub(crate) const LOGIN_GUARDS: Table = table(b'0', "failed sign-ins");
pub(crate) const SECOND_FACTOR_POLICY: Table = table(b'1', "second factor policy");
pub(crate) const BREAK_GLASS: Table = table(b'2', "designated for emergency access");
pub(crate) const EMERGENCY_ACCESSES: Table = table(b'3', "emergency accesses");
pub(crate) const PASSWORD_POLICY: Table = table(b'4', "password policy");
pub(crate) const PASSWORDS_ISSUED: Table = table(b'5', "issued passwords not changed yet");
pub(crate) const DISASTERS: Table = table(b'6', "disasters");
pub(crate) const DISASTER_POLICY: Table = table(b'7', "disaster policy");
pub(crate) const CARE_PROFILES: Table = table(b'8', "care profiles");
pub(crate) const OBSERVATIONS: Table = table(b'9', "safety checks and facility statuses");
pub(crate) const CURRENT_OBSERVATIONS: Table = table(b':', "current safety checks and facility statuses");
pub(crate) const OBSERVATIONS_SEEN: Table = table(b';', "observations in the log");

/// Every `sm_data` table, for naming a key's table.
pub(crate) const TABLES: [Table; 64] = [
    ACCOUNTS,
    LOGINS,
    FACILITIES,
    INVITATIONS,
    PATIENTS,
    ROOMS,
    MEMBERS,
    MEMBERSHIPS,
    POSTS,
    SEARCH,
    CONNECTIONS,
    SESSIONS,
    SESSIONS_OF,
    OPERATOR,
    SETTINGS,
    STAFF,
    REQUESTS,
    REQUESTS_SENT,
    REQUESTS_TO,
    EVENTS,
    AUDIT,
    AUDIT_HEAD,
    RECORDS,
    IDEMPOTENCY,
    META,
    INBOUND,
    INBOX,
    OUTBOUND,
    OUTBOX,
    MIRRORS,
    PENDING,
    HEARD,
    FEDERATION_PAUSED,
    DIRECTORY_SHARES,
    REMOTE_FACILITIES,
    REQUEST_LINKS,
    CONNECTIONS_OF,
    NOTIFICATION_SETTINGS,
    NOTICES,
    BLOBS,
    CHUNKS,
    ATTACHMENTS,
    POST_FILES,
    UNUSED_ATTACHMENTS,
    UNCLAIMED_BLOBS,
    STORED_BYTES,
    PUSH_SUBSCRIPTIONS,
    PUSH_NOTICES,
    FETCHES,
    FAILED_FETCHES,
    PROOFS,
    REMEMBERED_AT,
    LOGIN_GUARDS,
    SECOND_FACTOR_POLICY,
    BREAK_GLASS,
    EMERGENCY_ACCESSES,
    PASSWORD_POLICY,
    PASSWORDS_ISSUED,
    DISASTERS,
    DISASTER_POLICY,
    CARE_PROFILES,
    OBSERVATIONS,
    CURRENT_OBSERVATIONS,
    OBSERVATIONS_SEEN,
];

/// The table a `sm_data` key belongs to, by its first byte.
pub(crate) fn table_of(key: &[u8]) -> Option<Table> {
    let prefix = *key.first()?;
    TABLES.into_iter().find(|t| t.prefix == prefix)
}

/// A key that does not have the shape its table or column family promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed key: {0}")]
pub(crate) struct KeyError(&'static str);

fn compose(table: Table, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(table.prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The first key after every key that begins with `prefix` (None: there is none, the prefix
/// is all 0xFF bytes): the exclusive end of a prefix scan.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The whole table: the prefix of every key in it (also the key of `O` and `z`).
pub(crate) fn all(table: Table) -> Vec<u8> {
    compose(table, &[])
}

/// `table` + one id: a row by id, or every child of one parent in an index table.
pub(crate) fn id(table: Table, id: u64) -> Vec<u8> {
    compose(table, &[&be(id)])
}

/// `table` + two ids: a row of a two-level table (`M`, `U`, `T`, `C`, `G`, `W`, `X`).
pub(crate) fn ids(table: Table, parent: u64, child: u64) -> Vec<u8> {
    compose(table, &[&be(parent), &be(child)])
}

/// `c` + account id + other account id, both ways: the index entries of the connection of a
/// pair. `C` is keyed by the lower id first, so its own prefix scan finds only half of an
/// account's connections; this index finds all of them without scanning the table.
pub(crate) fn connection_of(pair: (u64, u64)) -> [Vec<u8>; 2] {
    [ids(CONNECTIONS_OF, pair.0, pair.1), ids(CONNECTIONS_OF, pair.1, pair.0)]
}

/// The pair of a `C` key (lower id, higher id); None for a key of another shape.
pub(crate) fn pair_of_connection_key(key: &[u8]) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(&[CONNECTIONS.prefix])?;
    let (a, b) = rest.split_at_checked(8)?;
    Some((u64::from_be_bytes(a.try_into().ok()?), u64::from_be_bytes(b.try_into().ok()?)))
}

/// `table` + a string: a row by login, code hash, token hash, record key or idempotency key.
pub(crate) fn text(table: Table, s: &str) -> Vec<u8> {
    compose(table, &[s.as_bytes()])
}

/// `V` + account id + token hash: one session of an account.
pub(crate) fn session_of(account: u64, token_hash: &str) -> Vec<u8> {
    compose(SESSIONS_OF, &[&be(account), token_hash.as_bytes()])
}

/// `N` + term + room id: the posts of one room whose text holds the bigram of `term`
/// (`Vault::search_term`: the bigram itself, or 0xff and its keyed hash once the hub seals).
pub(crate) fn bigram_in_room(term: &[u8], room: u64) -> Vec<u8> {
    compose(SEARCH, &[term, &be(room)])
}

/// `N` + term + room id + seq: one post's entry in the search index.
pub(crate) fn bigram_post(term: &[u8], room: u64, seq: u64) -> Vec<u8> {
    compose(SEARCH, &[term, &be(room), &be(seq)])
}

/// What starts a post filter's key after `N`: no UTF-8 text starts with 0xfe, and a keyed term
/// starts with 0xff, so filters and per-bigram entries never share a prefix.
const POST_FILTER: u8 = 0xfe;

/// `N` + 0xfe + room id: the bigram filters of one room's posts.
pub(crate) fn post_filters_in_room(room: u64) -> Vec<u8> {
    compose(SEARCH, &[&[POST_FILTER], &be(room)])
}

/// `N` + 0xfe + room id + seq: one post's bigram filter (`kizuna_domain::bigram::filter_of`).
pub(crate) fn post_filter(room: u64, seq: u64) -> Vec<u8> {
    compose(SEARCH, &[&[POST_FILTER], &be(room), &be(seq)])
}

/// The bigram, room and seq of a search-index key written before the hub sealed (a plain
/// bigram, not a keyed hash); None for any other key, an error for a malformed one.
pub(crate) fn plain_search_entry(key: &[u8]) -> Option<Result<(&str, u64, u64), KeyError>> {
    let rest = key.strip_prefix(&[SEARCH.prefix])?;
    if matches!(rest.first(), Some(&crate::vault::HASHED_TERM | &POST_FILTER)) {
        return None;
    }
    Some((|| {
        let split = rest.len().checked_sub(16).ok_or(KeyError("a search key without its room and seq"))?;
        let (term, ids) = rest.split_at(split);
        let term = std::str::from_utf8(term).map_err(|_| KeyError("a search term that is not text"))?;
        let (room, seq) = ids.split_at(8);
        let number = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        Ok((term, number(room), number(seq)))
    })())
}

/// `K` + origin (length-prefixed, so one hub's scan never reaches another whose name it
/// prefixes): every inbox message of one origin.
pub(crate) fn inbox_of(origin: &str) -> Vec<u8> {
    of_hub(INBOX, origin)
}

/// `K` + origin + seq: one inbox message, in stream order within its origin.
pub(crate) fn inbox_message(origin: &str, seq: u64) -> Vec<u8> {
    hub_and_number(INBOX, origin, seq)
}

/// `D` + destination: every queued message to one hub.
pub(crate) fn outbox_of(to: &str) -> Vec<u8> {
    of_hub(OUTBOX, to)
}

/// `D` + destination + seq: one queued message, in stream order.
pub(crate) fn outbox_message(to: &str, seq: u64) -> Vec<u8> {
    hub_and_number(OUTBOX, to, seq)
}

/// `Q` + home hub + home room id: this hub's copy of that room.
pub(crate) fn mirror(home: &str, home_room: u64) -> Vec<u8> {
    hub_and_number(MIRRORS, home, home_room)
}

/// `table` + a hub name, length-prefixed so one hub's scan never reaches another whose name it
/// prefixes.
fn of_hub(table: Table, hub: &str) -> Vec<u8> {
    // Hub names are at most 32 bytes (`HubName`), so the length always fits a byte.
    let len = u8::try_from(hub.len()).expect("a hub name is at most 32 bytes");
    compose(table, &[&[len], hub.as_bytes()])
}

/// `table` + a hub name + a number (a sequence or a room id of that hub), in numeric order.
fn hub_and_number(table: Table, hub: &str, n: u64) -> Vec<u8> {
    [of_hub(table, hub), be(n).to_vec()].concat()
}

/// `0` + `l` + hash of a login, or `0` + `s` + hash of a source address (`Vault::guard_hash`):
/// the failed sign-ins of one of them.
pub(crate) fn login_guard(guarded: &kizuna_domain::login_guard::Guarded, hash: impl Fn(&str) -> [u8; 8]) -> Vec<u8> {
    use kizuna_domain::login_guard::Guarded;
    match guarded {
        Guarded::Login(login) => compose(LOGIN_GUARDS, &[b"l", &hash(login)]),
        Guarded::Source(source) => compose(LOGIN_GUARDS, &[b"s", &hash(source)]),
    }
}

/// `b` + blob hash: one stored file.
pub(crate) fn blob(hash: &[u8; 32]) -> Vec<u8> {
    compose(BLOBS, &[hash])
}

/// `y` + when + scoped idempotency key: a remembered result, in the order they were applied.
pub(crate) fn remembered_at(at_ms: u64, scoped_key: &str) -> Vec<u8> {
    compose(REMEMBERED_AT, &[&be(at_ms), scoped_key.as_bytes()])
}

/// The scoped idempotency key of a `y` key.
pub(crate) fn key_of_remembered(key: &[u8]) -> Result<&str, KeyError> {
    let rest = key.strip_prefix(&[REMEMBERED_AT.prefix]).ok_or(KeyError("not a `y` key"))?;
    let key = rest.get(8..).ok_or(KeyError("a `y` key without its time"))?;
    std::str::from_utf8(key).map_err(|_| KeyError("a `y` key that is not text"))
}

/// `table` (`v`, `x` or `w`) + blob hash + hub name: a blob's fetch from, or proof by, one hub
/// (the hash has a fixed width, so one blob's scan never reaches another's).
pub(crate) fn blob_from(table: Table, hash: &[u8; 32], hub: &str) -> Vec<u8> {
    compose(table, &[hash, hub.as_bytes()])
}

/// `table` + blob hash: every fetch or proof of one blob.
pub(crate) fn blob_prefix(table: Table, hash: &[u8; 32]) -> Vec<u8> {
    compose(table, &[hash])
}

/// `i` + account id + endpoint hash: one browser's push subscription (the hash has a fixed
/// width, so an account's scan, `id(PUSH_SUBSCRIPTIONS, account)`, never reaches another's).
pub(crate) fn push_subscription(account: u64, endpoint_hash: &[u8; 32]) -> Vec<u8> {
    compose(PUSH_SUBSCRIPTIONS, &[&be(account), endpoint_hash])
}

/// `k` + blob hash: every chunk of one file.
#[cfg(test)]
pub(crate) fn chunks_of(hash: &[u8; 32]) -> Vec<u8> {
    compose(CHUNKS, &[hash])
}

/// `k` + blob hash + chunk index: one chunk, in file order (the hash has a fixed width, so one
/// file's scan never reaches another's).
pub(crate) fn chunk(hash: &[u8; 32], index: u32) -> Vec<u8> {
    compose(CHUNKS, &[hash, &index.to_be_bytes()])
}

/// `u` + since + blob hash: a blob no attachment holds, in the order they became unclaimed.
pub(crate) fn unclaimed_blob(since_ms: u64, hash: &[u8; 32]) -> Vec<u8> {
    compose(UNCLAIMED_BLOBS, &[&be(since_ms), hash])
}

/// The attachment id that ends a `g` key (after its since-time).
pub(crate) fn id_of_unused(key: &[u8]) -> Result<u64, KeyError> {
    let rest = key.strip_prefix(&[UNUSED_ATTACHMENTS.prefix]).ok_or(KeyError("not a `g` key"))?;
    number(rest.get(8..).ok_or(KeyError("not since + an id"))?)
}

/// The blob hash that ends a `u` key.
pub(crate) fn hash_of_unclaimed(key: &[u8]) -> Result<[u8; 32], KeyError> {
    let rest = key.strip_prefix(&[UNCLAIMED_BLOBS.prefix]).ok_or(KeyError("not a `u` key"))?;
    rest.get(8..).and_then(|h| h.try_into().ok()).ok_or(KeyError("not since + a 32-byte hash"))
}

/// A disaster's subject in a key: `p` + patient id or `f` + facility id.
fn subject(s: kizuna_domain::disaster::Subject) -> [u8; 9] {
    use kizuna_domain::disaster::Subject;
    let (kind, id) = match s {
        Subject::Patient(p) => (b'p', p.0),
        Subject::Facility(f) => (b'f', f.0),
    };
    let mut out = [kind; 9];
    out[1..].copy_from_slice(&be(id));
    out
}

/// `9` + disaster + subject: every observation of one subject in one disaster (fixed widths, so
/// one subject's scan never reaches another's).
pub(crate) fn observations_of(disaster: u64, s: kizuna_domain::disaster::Subject) -> Vec<u8> {
    compose(OBSERVATIONS, &[&be(disaster), &subject(s)])
}

/// `9` + disaster + subject + time + id: one observation, in merge order within its subject.
pub(crate) fn observation(o: &kizuna_domain::disaster::Observation) -> Vec<u8> {
    compose(OBSERVATIONS, &[&be(o.disaster.0), &subject(o.subject), &be(o.observed_at_ms), &o.id.0])
}

/// `:` + disaster + subject: the subject's current observation.
pub(crate) fn current_observation(disaster: u64, s: kizuna_domain::disaster::Subject) -> Vec<u8> {
    compose(CURRENT_OBSERVATIONS, &[&be(disaster), &subject(s)])
}

/// `;` + id: what became of an observation that reached the log.
pub(crate) fn observation_fate(id: &kizuna_domain::disaster::ObservationId) -> Vec<u8> {
    compose(OBSERVATIONS_SEEN, &[&id.0])
}

/// The apply clock, in `sm_data` so snapshots carry it.
pub(crate) const CLOCK: &[u8] = b"m/clock";
/// The hub's data keys, wrapped (`kizuna_domain::keyring`): `m/key/` + u32 id. Stored as they
/// are, never sealed (they are sealed under a master key already).
pub(crate) const DATA_KEYS: &[u8] = b"m/key/";

/// Where sealing the state written before the hub's first data key has reached (absent: done,
/// or never begun).
pub(crate) const SEAL_CURSOR: &[u8] = b"m/seal_cursor";

/// `m/key/` + id: one of the hub's data keys.
pub(crate) fn data_key(id: u32) -> Vec<u8> {
    [DATA_KEYS, &id.to_be_bytes()].concat()
}

/// The hub's active apply version (`kizuna_domain::APPLY_VERSION`); absent: the first.
pub(crate) const APPLY_VERSION: &[u8] = b"m/apply_version";
/// The cursor of the newest live event forgotten (events up to it are gone; a subscriber
/// resuming below it must reload).
pub(crate) const EVENTS_FORGOTTEN: &[u8] = b"m/events_forgotten";
/// The time of the newest remembered result forgotten: the next scan of `y` starts there,
/// never over the deleted keys again.
pub(crate) const REMEMBERED_FORGOTTEN: &[u8] = b"m/remembered_forgotten";
/// The last session key the sweep of ended sessions looked at (it goes on after it).
pub(crate) const SESSION_SWEEP: &[u8] = b"m/session_sweep";
/// The last invitation key the sweep of expired invitations looked at.
pub(crate) const INVITATION_SWEEP: &[u8] = b"m/invitation_sweep";
/// Where the sweep of spent failed-sign-in counts has reached.
pub(crate) const LOGIN_GUARD_SWEEP: &[u8] = b"m/login_guard_sweep";

/// The u64 that ends `key` right after `prefix` (the id of an index key, the seq of a log key).
pub(crate) fn id_after(key: &[u8], prefix: &[u8]) -> Result<u64, KeyError> {
    let rest = key.strip_prefix(prefix).ok_or(KeyError("not under the scanned prefix"))?;
    number(rest)
}

/// The UTF-8 string that ends `key` right after `prefix` (the token hash of a `V` key).
pub(crate) fn text_after<'k>(key: &'k [u8], prefix: &[u8]) -> Result<&'k str, KeyError> {
    let rest = key.strip_prefix(prefix).ok_or(KeyError("not under the scanned prefix"))?;
    std::str::from_utf8(rest).map_err(|_| KeyError("not UTF-8"))
}

/// A bare big-endian u64 key: exactly eight bytes.
pub(crate) fn number(key: &[u8]) -> Result<u64, KeyError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| KeyError("not an 8-byte big-endian number"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// `raft_log`: an entry's log index, big-endian so the log scans in index order.
pub(crate) fn log_index(index: u64) -> [u8; 8] {
    be(index)
}

/// `audit_journal`: a journaled read's local sequence number, big-endian for order.
pub(crate) fn journal_seq(seq: u64) -> [u8; 8] {
    be(seq)
}

/// `raft_meta` keys (the log's RocksDB).
pub(crate) const VOTE: &[u8] = b"vote";
pub(crate) const COMMITTED: &[u8] = b"committed";
pub(crate) const PURGED: &[u8] = b"purged";
/// `node_meta` keys (the state's RocksDB). The node's own data key, wrapped under its master
/// key (`vault/`).
pub(crate) const NODE_KEY: &[u8] = b"node_key";
/// Present once this node rewrote its files after the hub's state was sealed (`scrub.rs`).
pub(crate) const SCRUBBED: &[u8] = b"scrubbed";
/// The value format of the whole data dir: one raw byte, the [`crate::codec`] version (absent:
/// JSON, written before the codec existed; see `migrate.rs`).
pub(crate) const FORMAT: &[u8] = b"format";

/// `sm_meta` keys.
pub(crate) const APPLIED: &[u8] = b"applied";
pub(crate) const MEMBERSHIP: &[u8] = b"membership";
/// Present (true) while a snapshot install replaces the state in batches.
pub(crate) const INSTALLING: &[u8] = b"installing";

/// Every state key sorts inside `[SM_DATA_START, SM_DATA_END)`: a snapshot install deletes
/// this range of every state family to replace the whole state machine.
pub(crate) const SM_DATA_START: &[u8] = &[0];
pub(crate) const SM_DATA_END: &[u8] = &[0xff; 2];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_just_after_its_last_key() {
        let members = id(MEMBERS, 1);
        let end = prefix_end(&members).expect("an end");
        assert!(ids(MEMBERS, 1, u64::MAX) < end && end <= ids(MEMBERS, 2, 0));
        assert_eq!(prefix_end(&[b'a', 0xFF, 0xFF]), Some(vec![b'b']));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn the_layout_is_pinned() {
        // Existing data directories hold these bytes: they must never change.
        assert_eq!(id(FACILITIES, 7), b"F\0\0\0\0\0\0\0\x07");
        assert_eq!(ids(MEMBERS, 1, 256), b"M\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\x01\0");
        assert_eq!(text(LOGINS, "ab"), b"Lab");
        assert_eq!(session_of(2, "tok"), b"V\0\0\0\0\0\0\0\x02tok");
        assert_eq!(bigram_post("ab".as_bytes(), 1, 3), b"Nab\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x03");
        assert_eq!(post_filter(1, 3), b"N\xfe\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x03");
        assert_eq!(all(OPERATOR), b"O");
        assert_eq!(all(SETTINGS), b"H");
        assert_eq!(all(AUDIT_HEAD), b"z");
        assert_eq!(text(RECORDS, "k"), b"rk");
        assert_eq!(text(INBOUND, "gunma"), b"Jgunma");
        assert_eq!(inbox_message("gunma", 3), b"K\x05gunma\0\0\0\0\0\0\0\x03");
        assert_eq!(text(OUTBOUND, "gunma"), b"Bgunma");
        assert_eq!(outbox_message("gunma", 3), b"D\x05gunma\0\0\0\0\0\0\0\x03");
        assert_eq!(mirror("gunma", 9), b"Q\x05gunma\0\0\0\0\0\0\0\x09");
        assert_eq!(id(PENDING, 4), b"p\0\0\0\0\0\0\0\x04");
        assert_eq!(text(HEARD, "gunma"), b"hgunma");
        assert_eq!(text(FEDERATION_PAUSED, "gunma"), b"fgunma");
        assert_eq!(text(DIRECTORY_SHARES, "gunma"), b"dgunma");
        assert_eq!(id(REMOTE_FACILITIES, 4), b"o\0\0\0\0\0\0\0\x04");
        assert_eq!(id(REQUEST_LINKS, 4), b"l\0\0\0\0\0\0\0\x04");
        assert_eq!(text(IDEMPOTENCY, "3/x"), b"q3/x");
        assert_eq!(id(NOTIFICATION_SETTINGS, 4), b"n\0\0\0\0\0\0\0\x04");
        assert_eq!(ids(NOTICES, 1, 256), b"e\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\x01\0");
        assert_eq!(push_subscription(1, &[7; 32]), [&b"i\0\0\0\0\0\0\0\x01"[..], &[7; 32]].concat());
        assert_eq!(ids(PUSH_NOTICES, 1, 256), b"j\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\x01\0");
        assert_eq!(
            connection_of((1, 256)),
            [&b"c\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\x01\0"[..], &b"c\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\x01"[..]]
        );
        assert_eq!(blob(&[7; 32]), [&b"b"[..], &[7; 32]].concat());
        assert_eq!(chunk(&[7; 32], 258), [&b"k"[..], &[7; 32], &[0, 0, 1, 2]].concat());
        assert_eq!(id(ATTACHMENTS, 4), b"a\0\0\0\0\0\0\0\x04");
        assert_eq!(ids(POST_FILES, 1, 256), b"t\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\x01\0");
        assert_eq!(ids(UNUSED_ATTACHMENTS, 1, 256), b"g\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\x01\0");
        assert_eq!(unclaimed_blob(1, &[7; 32]), [&b"u\0\0\0\0\0\0\0\x01"[..], &[7; 32]].concat());
        assert_eq!(all(STORED_BYTES), b"s");
        assert_eq!(blob_from(FETCHES, &[7; 32], "gunma"), [&b"v"[..], &[7; 32], b"gunma"].concat());
        assert_eq!(remembered_at(258, "3/k"), b"y\0\0\0\0\0\0\x01\x023/k");
        assert_eq!(key_of_remembered(&remembered_at(258, "3/k")), Ok("3/k"));
        assert!(key_of_remembered(b"y\0\0").is_err());
        assert_eq!(blob_from(FAILED_FETCHES, &[7; 32], "gunma"), [&b"x"[..], &[7; 32], b"gunma"].concat());
        assert_eq!(blob_from(PROOFS, &[7; 32], "gunma"), [&b"w"[..], &[7; 32], b"gunma"].concat());
        assert_eq!(CLOCK, b"m/clock");
        assert_eq!(log_index(258), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(journal_seq(1), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((VOTE, COMMITTED, PURGED), (&b"vote"[..], &b"committed"[..], &b"purged"[..]));
        assert_eq!(
            (NODE_KEY, DATA_KEYS, data_key(2)),
            (&b"node_key"[..], &b"m/key/"[..], b"m/key/\0\0\0\x02".to_vec())
        );
        assert_eq!(table_of(&data_key(1)), Some(META));
        assert_eq!(SEAL_CURSOR, b"m/seal_cursor");
        assert_eq!(plain_search_entry(&bigram_post("日本".as_bytes(), 3, 9)), Some(Ok(("日本", 3, 9))));
        assert_eq!(plain_search_entry(&bigram_post(&[0xff, 1, 2, 3, 4, 5, 6, 7, 8], 3, 9)), None, "keyed");
        assert_eq!(plain_search_entry(b"Nab"), Some(Err(KeyError("a search key without its room and seq"))));
        assert_eq!(plain_search_entry(&id(POSTS, 1)), None);
        assert_eq!(plain_search_entry(&post_filter(3, 9)), None, "a filter is no plain term");
        use kizuna_domain::login_guard::Guarded;
        let hash = |t: &str| [t.len() as u8; 8];
        assert_eq!(login_guard(&Guarded::Login("ab".into()), hash), b"0l\x02\x02\x02\x02\x02\x02\x02\x02");
        assert_eq!(login_guard(&Guarded::Source("10.0.0.1".into()), hash), b"0s\x08\x08\x08\x08\x08\x08\x08\x08");
        assert_eq!((APPLIED, MEMBERSHIP, INSTALLING), (&b"applied"[..], &b"membership"[..], &b"installing"[..]));
        assert_eq!(FORMAT, b"format");
        use kizuna_domain::disaster::{Observation, ObservationId, Report, Safety, Subject};
        use kizuna_domain::model::{AccountId, DisasterId, FacilityId, PatientId};
        assert_eq!(id(DISASTERS, 4), b"6\0\0\0\0\0\0\0\x04");
        assert_eq!(all(DISASTER_POLICY), b"7");
        assert_eq!(id(CARE_PROFILES, 4), b"8\0\0\0\0\0\0\0\x04");
        let o = Observation {
            id: ObservationId([7; 16]),
            disaster: DisasterId(2),
            subject: Subject::Patient(PatientId(3)),
            report: Report::Safety(Safety::Safe),
            note: String::new(),
            observed_at_ms: 258,
            author: AccountId(1),
            session: String::new(),
            node: 1,
        };
        let history = [&b"9\0\0\0\0\0\0\0\x02p\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\x01\x02"[..], &[7; 16]].concat();
        assert_eq!(observation(&o), history);
        assert!(observation(&o).starts_with(&observations_of(2, o.subject)));
        let facility = Subject::Facility(FacilityId(3));
        assert_eq!(current_observation(2, facility), b":\0\0\0\0\0\0\0\x02f\0\0\0\0\0\0\0\x03");
        assert_eq!(observation_fate(&o.id), [&b";"[..], &[7; 16]].concat());
    }

    #[test]
    fn prefixes_are_distinct_and_named() {
        for (i, a) in TABLES.iter().enumerate() {
            assert!(TABLES[i + 1..].iter().all(|b| b.prefix != a.prefix), "{a:?} twice");
            assert_eq!(table_of(&id(*a, 1)), Some(*a));
        }
        assert_eq!(table_of(CLOCK), Some(META));
        assert_eq!(table_of(b"\x01"), None);
        assert_eq!(table_of(b""), None);
    }

    #[test]
    fn big_endian_ids_sort_numerically() {
        let sorted = [0, 1, 255, 256, 1 << 32, u64::MAX];
        for pair in sorted.windows(2) {
            assert!(id(ROOMS, pair[0]) < id(ROOMS, pair[1]), "{pair:?}");
            assert!(ids(POSTS, 1, pair[0]) < ids(POSTS, 1, pair[1]), "{pair:?}");
            assert!(log_index(pair[0]) < log_index(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn a_parent_scan_never_reaches_another_parent_or_table() {
        let room_1 = id(MEMBERS, 1);
        assert!(ids(MEMBERS, 1, 5).starts_with(&room_1));
        assert!(!ids(MEMBERS, 256, 1).starts_with(&room_1));
        assert!(!ids(MEMBERS, 1 << 56, 1).starts_with(&room_1));
        assert!(!ids(MEMBERSHIPS, 1, 1).starts_with(&room_1));
        assert!(!session_of(256, "t").starts_with(&id(SESSIONS_OF, 1)));
        // An account's notices sort together, by room; another table's rows never mix in.
        assert!(ids(NOTICES, 1, u64::MAX) < ids(NOTICES, 2, 0));
        assert!(ids(NOTICES, 1, 1) < ids(NOTICES, 1, 256));
        assert!(!ids(NOTICES, 1, 1).starts_with(&id(NOTIFICATION_SETTINGS, 1)));
        // An account's browsers: under it, never under account 256's.
        assert!(push_subscription(1, &[0xff; 32]).starts_with(&id(PUSH_SUBSCRIPTIONS, 1)));
        assert!(!push_subscription(256, &[0; 32]).starts_with(&id(PUSH_SUBSCRIPTIONS, 1)));
        assert!(!ids(PUSH_NOTICES, 1, 1).starts_with(&id(PUSH_SUBSCRIPTIONS, 1)));
        // Both entries of a connection: each under its own account, never under a third's.
        let [low, high] = connection_of((1, 256));
        assert!(low.starts_with(&id(CONNECTIONS_OF, 1)) && high.starts_with(&id(CONNECTIONS_OF, 256)));
        assert!(!low.starts_with(&id(CONNECTIONS_OF, 256)) && !high.starts_with(&id(CONNECTIONS_OF, 1)));
        assert!(!ids(CONNECTIONS, 1, 2).starts_with(&id(CONNECTIONS_OF, 1)));
        // Bigrams are two characters and UTF-8 is prefix-free: "ab" never prefixes "ac"'s keys,
        // and a multi-byte bigram never prefixes another.
        assert!(!bigram_post("ac".as_bytes(), 1, 1).starts_with(&bigram_in_room("ab".as_bytes(), 1)));
        assert!(!bigram_post("あい".as_bytes(), 1, 1).starts_with(&bigram_in_room("あ".as_bytes(), 1)));
        assert!(!bigram_post("ab".as_bytes(), 256, 1).starts_with(&bigram_in_room("ab".as_bytes(), 1)));
        // A room's filters: under it, never under room 256's, and never under any bigram's
        // entries (plain or keyed) nor they under the filters'.
        assert!(post_filter(1, u64::MAX).starts_with(&post_filters_in_room(1)));
        assert!(!post_filter(256, 1).starts_with(&post_filters_in_room(1)));
        for term in ["ab".as_bytes(), "日本".as_bytes(), &[0xff, 0xfe, 0, 0, 0, 0, 0, 0, 1]] {
            assert!(!post_filter(1, 1).starts_with(&bigram_in_room(term, 1)));
            assert!(!bigram_post(term, 1, 1).starts_with(&post_filters_in_room(1)));
        }
        // Hub "gun" prefixes "gunma" as text, never as a length-prefixed inbox key.
        assert!(!inbox_message("gunma", 1).starts_with(&inbox_of("gun")));
        assert!(inbox_message("gun", 1).starts_with(&inbox_of("gun")));
    }

    #[test]
    fn a_files_chunks_sort_in_order_and_stay_under_their_file() {
        let sorted = [0, 1, 255, 256, u32::MAX];
        for pair in sorted.windows(2) {
            assert!(chunk(&[7; 32], pair[0]) < chunk(&[7; 32], pair[1]), "{pair:?}");
        }
        assert!(chunk(&[7; 32], u32::MAX).starts_with(&chunks_of(&[7; 32])));
        assert!(!chunk(&[8; 32], 0).starts_with(&chunks_of(&[7; 32])));
        // Collection walks its indexes oldest first.
        assert!(ids(UNUSED_ATTACHMENTS, 1, u64::MAX) < ids(UNUSED_ATTACHMENTS, 2, 0));
        assert!(unclaimed_blob(1, &[0xff; 32]) < unclaimed_blob(2, &[0; 32]));
        assert_eq!(hash_of_unclaimed(&unclaimed_blob(1, &[7; 32])), Ok([7; 32]));
        assert_eq!(id_of_unused(&ids(UNUSED_ATTACHMENTS, 1, 258)), Ok(258));
        assert!(id_of_unused(&id(UNUSED_ATTACHMENTS, 1)).is_err());
        assert!(hash_of_unclaimed(&id(UNCLAIMED_BLOBS, 1)).is_err());
    }

    #[test]
    fn an_origins_inbox_sorts_in_stream_order() {
        let sorted = [1, 255, 256, 1 << 32, u64::MAX];
        for pair in sorted.windows(2) {
            assert!(inbox_message("gunma", pair[0]) < inbox_message("gunma", pair[1]), "{pair:?}");
        }
        assert_eq!(id_after(&inbox_message("gunma", 258), &inbox_of("gunma")), Ok(258));
    }

    #[test]
    fn string_keys_are_read_by_exact_key_only() {
        // Login "ab" is a byte prefix of "abc": harmless, because `L`, `I`, `S`, `r` and `q`
        // are only ever read by exact key, never scanned by a string prefix.
        assert!(text(LOGINS, "abc").starts_with(&text(LOGINS, "ab")));
        assert_ne!(text(LOGINS, "abc"), text(LOGINS, "ab"));
    }

    #[test]
    fn decode_inverts_encode() {
        for n in [0, 1, 255, 256, 1 << 32, u64::MAX] {
            assert_eq!(id_after(&ids(STAFF, 9, n), &id(STAFF, 9)), Ok(n));
            assert_eq!(id_after(&connection_of((9, n))[0], &id(CONNECTIONS_OF, 9)), Ok(n));
            assert_eq!(pair_of_connection_key(&ids(CONNECTIONS, 9, n)), Some((9, n)));
            assert_eq!(id_after(&bigram_post("日本".as_bytes(), 3, n), &bigram_in_room("日本".as_bytes(), 3)), Ok(n));
            assert_eq!(number(&log_index(n)), Ok(n));
            assert_eq!(number(&journal_seq(n)), Ok(n));
        }
        assert_eq!(text_after(&session_of(4, "tok"), &id(SESSIONS_OF, 4)), Ok("tok"));
    }

    #[test]
    fn a_malformed_key_is_an_error() {
        let prefix = id(STAFF, 9);
        assert!(id_after(&prefix, &prefix).is_err(), "no id");
        assert!(id_after(&[prefix.as_slice(), &[1, 2]].concat(), &prefix).is_err(), "short id");
        assert!(id_after(&[prefix.as_slice(), &[0; 9]].concat(), &prefix).is_err(), "long id");
        assert!(id_after(&ids(STAFF, 8, 1), &prefix).is_err(), "another parent");
        assert!(id_after(b"", &prefix).is_err(), "empty");
        assert!(text_after(&[prefix.as_slice(), &[0xff]].concat(), &prefix).is_err(), "not UTF-8");
        assert!(number(b"1234567").is_err());
        assert!(number(b"").is_err());
        assert_eq!(pair_of_connection_key(&id(CONNECTIONS, 9)), None, "half a pair");
        assert_eq!(pair_of_connection_key(&ids(MEMBERS, 1, 2)), None, "another table");
    }
}
