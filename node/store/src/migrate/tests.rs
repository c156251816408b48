use std::path::Path;

use super::*;

/// Unpacks the fixture written by the JSON-valued storage (see `tests/fixtures/README.md`).
pub(crate) fn unpack_json_fixture(into: &Path) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json-v0.tar.gz");
    let file = std::fs::File::open(&archive).expect("the fixture");
    tar::Archive::new(flate2::read::GzDecoder::new(file)).unpack(into).expect("unpack the fixture");
}

/// The data dir's state RocksDB as it is on disk, not migrated.
fn raw(data_dir: &Path) -> DB {
    let path = data_dir.join("db");
    let families = crate::state_families_on_disk(&path).expect("its families");
    crate::open_db(&path, &families, &rocksdb::Cache::new_lru_cache(1 << 20), crate::Role::State).expect("open the db")
}

/// The data dir's log RocksDB.
fn raw_log(data_dir: &Path) -> DB {
    let cache = rocksdb::Cache::new_lru_cache(1 << 20);
    crate::open_db(&data_dir.join("log"), &crate::LOG_FAMILIES, &cache, crate::Role::Log).expect("open the log's db")
}

/// Every value of every column family `db` has: (family, key, value).
fn all_values(db: &DB) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for family in FAMILIES {
        let Some(handle) = db.cf_handle(family) else { continue };
        for item in db.iterator_cf(handle, IteratorMode::Start) {
            let (k, v) = item.expect("read");
            all.push((family, k.to_vec(), v.to_vec()));
        }
    }
    all
}

/// The family `key` of `family` is in after opening, and whether in the log's RocksDB: the
/// dedicated tables move out of `sm_data`, the log and Raft's markers into the log's RocksDB.
fn stored_in(family: &'static str, key: &[u8]) -> (&'static str, bool) {
    let raft_marker = family == CF_RAFT_META && [VOTE, COMMITTED, PURGED].contains(&key);
    match family {
        CF_SM_DATA => (crate::state_families::family_of(key), false),
        CF_RAFT_LOG => (family, true),
        _ => (family, raft_marker),
    }
}

/// The value `key` of `family` (as the fixture has it) has after opening, wherever it is now.
fn value_now(state: &DB, log: &DB, family: &'static str, key: &[u8]) -> Vec<u8> {
    let (now_in, in_log) = stored_in(family, key);
    let holder = if in_log { log } else { state };
    holder.get_cf(cf(holder, now_in), key).expect("read").expect("still there")
}

/// The value as JSON, through its Rust type, from JSON or from the current format.
struct AsJson<'a>(&'a [u8]);

impl ForType for AsJson<'_> {
    type Out = serde_json::Value;
    fn with<T: DeserializeOwned + Serialize>(self) -> Self::Out {
        let value: T = match codec::is_current(self.0) {
            true => codec::decode(self.0).expect("a current value"),
            false => serde_json::from_slice(self.0).expect("a JSON value"),
        };
        serde_json::to_value(value).expect("as JSON")
    }
}

fn as_json(family: &str, key: &[u8], bytes: &[u8]) -> serde_json::Value {
    if family == CF_SM_META && key == APPLIED && !codec::is_current(bytes) {
        // Written as `Option<LogId>` JSON; `Some(id)` and `id` are the same JSON.
        return serde_json::from_slice(bytes).expect("JSON");
    }
    value_type(family, key, AsJson(bytes)).expect("a typed key")
}

#[test]
fn every_table_has_a_type() {
    for table in keys::TABLES {
        let key = if table == keys::META { keys::CLOCK.to_vec() } else { keys::all(table) };
        assert!(state_type(&key, Probe).is_some(), "table {} ({}) has no value type", table.prefix as char, table.name);
    }
}

/// Only asks whether a key has a type.
struct Probe;

impl ForType for Probe {
    type Out = ();
    fn with<T: DeserializeOwned + Serialize>(self) {}
}

/// Every value of the fixture survives the migration: the same value through its Rust type, of
/// every table present; its snapshot file (JSON) is replaced by a checkpoint of the migrated
/// state.
#[test]
fn the_fixture_migrates_value_for_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    unpack_json_fixture(dir.path());
    let before = all_values(&raw(dir.path()));
    let snapshot_path = dir.path().join("snapshots").join("current.snap");
    assert!(snapshot_path.exists(), "the fixture has a snapshot file");

    drop(crate::open(dir.path(), crate::MasterKeys::none()).expect("open migrates"));
    let (db, log) = (raw(dir.path()), raw_log(dir.path()));
    let mut tables = std::collections::BTreeSet::new();
    for (family, key, json) in &before {
        let now = value_now(&db, &log, family, key);
        assert!(codec::is_current(&now), "{family} {} not migrated", codec::key_in(family, key));
        assert_eq!(as_json(family, key, &now), as_json(family, key, json), "{family} {}", codec::key_in(family, key));
        if *family == CF_SM_DATA {
            tables.insert(key[0] as char);
        }
    }
    assert!(tables.len() >= 18, "the fixture covers most tables: {tables:?}");
    assert!(!snapshot_path.exists(), "the JSON snapshot file is gone");
    let checkpoints = crate::checkpoint::Checkpoints::open(snapshot_path.parent().expect("dir")).expect("open");
    let (_, meta) = checkpoints.current().expect("readable").expect("a checkpoint in its place");
    let applied = db.get_cf(cf(&db, CF_SM_META), crate::keys::APPLIED).expect("read").expect("applied");
    assert_eq!(meta.last_log_id, Some(codec::decode(&applied).expect("a log id")), "of the migrated state");
    let again = run(&db).expect("a second run");
    assert_eq!(again, None, "the marker makes a second open a no-op");
}

#[test]
fn a_data_dir_of_an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(crate::open(dir.path(), crate::MasterKeys::none()).expect("a fresh dir"));
    let db = raw(dir.path());
    db.put_cf(cf(&db, crate::CF_NODE_META), FORMAT, [7]).expect("write");
    drop(db);
    let refused = crate::open(dir.path(), crate::MasterKeys::none()).map(|_| ()).expect_err("format 7");
    assert_eq!(
        refused.to_string(),
        "the data dir is in value format 7; this build reads format 1 (and JSON, to migrate)"
    );
}

#[test]
fn a_json_value_that_is_not_what_its_key_holds_stops_the_migration_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    unpack_json_fixture(dir.path());
    let db = raw(dir.path());
    db.put_cf(cf(&db, CF_SM_DATA), keys::id(keys::FACILITIES, 1), br#"{"id":"one"}"#).expect("write");
    drop(db);
    let refused = crate::open(dir.path(), crate::MasterKeys::none()).map(|_| ()).expect_err("a bad facility");
    let message = refused.to_string();
    assert!(message.starts_with("cannot migrate sm_data key F/0000000000000001 (facilities) from JSON"), "{message}");
}

/// Bytes of values before and after the migration, per column family and for posts: printed for
/// docs/benchmarks.md (`cargo test --workspace --lib value_sizes -- --nocapture`).
#[test]
fn value_sizes_of_the_fixture_shrink() {
    let dir = tempfile::tempdir().expect("temp dir");
    unpack_json_fixture(dir.path());
    let before = all_values(&raw(dir.path()));
    drop(crate::open(dir.path(), crate::MasterKeys::none()).expect("open migrates"));
    let (db, log) = (raw(dir.path()), raw_log(dir.path()));
    let mut sizes: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    for (family, key, json) in &before {
        let now = value_now(&db, &log, family, key);
        let group = match *family {
            CF_SM_DATA => format!("sm_data {} ({})", key[0] as char, keys::table_of(key).map_or("", |t| t.name)),
            _ => family.to_string(),
        };
        let entry = sizes.entry(group).or_default();
        *entry = (entry.0 + 1, entry.1 + json.len(), entry.2 + now.len());
    }
    for (group, (count, json, now)) in &sizes {
        println!(
            "FIGURE {group}: {count} values, JSON {json} B, now {now} B ({:.0} %)",
            100.0 * *now as f64 / *json as f64
        );
    }
    let (json, now) = sizes.values().fold((0, 0), |(j, n), (_, json, now)| (j + json, n + now));
    println!("FIGURE all values: JSON {json} B, now {now} B ({:.0} %)", 100.0 * now as f64 / json as f64);
    assert!(now * 2 < json, "{now} B against {json} B of JSON");
}

/// Refusals remembered before the domain's one refusal type migrate to the same refusal.
#[test]
fn remembered_refusals_of_the_old_shape_migrate_to_the_domain_error() {
    use kizuna_domain::CommandResult;
    use kizuna_domain::DomainError;
    let old = |code: &str, message: &str| {
        format!(
            r#"{{"result":{{"Refused":{{"code":"{code}","message":"{message}"}}}},"log_index":7,"duplicate":false}}"#
        )
    };
    for (code, message, now) in [
        ("NotFound", "room not found", DomainError::NotFound("room".into())),
        ("InvalidArgument", "text is empty", DomainError::InvalidArgument("text is empty".into())),
        ("PermissionDenied", "only an owner", DomainError::PermissionDenied("only an owner".into())),
        ("FailedPrecondition", "already a member", DomainError::FailedPrecondition("already a member".into())),
        ("Unauthenticated", "not signed in, or the session has ended", DomainError::Unauthenticated),
    ] {
        let key = keys::text(keys::IDEMPOTENCY, "3/key");
        let bytes = convert(CF_SM_DATA, &key, old(code, message).as_bytes()).expect("migrates").expect("a value");
        let applied: Applied = codec::decode(&bytes).expect("decodes");
        assert_eq!(now.to_string(), message, "the same text for the client");
        assert_eq!(applied, Applied { result: CommandResult::Refused(now), log_index: 7, duplicate: false });
    }
}
