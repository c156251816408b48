use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::keys::{FACILITIES, MEMBERS, POSTS, REMEMBERED_AT};
use crate::{COLUMN_FAMILIES, MasterKeys, StateMachineStore, to_value};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn open(dir: &Path) -> (StateMachineStore, Arc<DB>) {
    let (_log, sm) = crate::open(dir, MasterKeys::none()).expect("open");
    let db = sm.reader().database().upgrade().expect("open");
    (sm, db)
}

/// Keys of tables before, of, between and after the dedicated tables, in key order.
fn state() -> Pairs {
    let value = to_value(&"v").expect("encode");
    let mut pairs: Pairs = vec![
        (keys::id(FACILITIES, 1), value.clone()),
        (keys::ids(MEMBERS, 1, 2), value.clone()),
        (keys::bigram_post("在宅".as_bytes(), 1, 1), to_value(&()).expect("encode")),
        (keys::bigram_post("宅医".as_bytes(), 1, 1), to_value(&()).expect("encode")),
        (keys::ids(POSTS, 1, 1), value.clone()),
        (keys::text(IDEMPOTENCY, "3/first"), value.clone()),
        (keys::text(IDEMPOTENCY, "3/second"), value.clone()),
        (keys::remembered_at(7, "3/first"), value),
    ];
    pairs.sort();
    pairs
}

/// The family each pair of [`state`] belongs in, by its table.
fn expected_family(key: &[u8]) -> &'static str {
    match key.first() {
        Some(&prefix) if prefix == SEARCH.prefix => CF_SM_SEARCH,
        Some(&prefix) if prefix == IDEMPOTENCY.prefix => CF_SM_IDEMPOTENCY,
        _ => CF_SM_DATA,
    }
}

/// [`state`]'s pairs stored in `family`.
fn state_of(family: &str) -> Pairs {
    state().into_iter().filter(|(k, _)| expected_family(k) == family).collect()
}

/// Each family holds its own pairs of [`state`], and nothing else.
fn assert_stored_by_family(db: &DB) {
    for family in STATE_FAMILIES {
        assert_eq!(family_pairs(db, family), state_of(family), "{family}");
    }
}

fn family_pairs(db: &DB, family: &str) -> Pairs {
    let pairs = db.iterator_cf(cf(db, family), rocksdb::IteratorMode::Start);
    pairs.map(|item| item.expect("read")).map(|(k, v)| (k.into_vec(), v.into_vec())).collect()
}

fn walk(db: &DB) -> Pairs {
    let view = db.snapshot();
    let mut walked = Vec::new();
    StatePairs::of(db, &view)
        .for_each(|k, v| {
            walked.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("walk");
    walked
}

#[test]
fn a_scan_of_one_table_reads_one_family_and_the_whole_state_all() {
    let within = |start: Vec<u8>, end: Option<Vec<u8>>| families_in(&start, end.as_deref()).collect::<Vec<_>>();
    let table = |t| (keys::all(t), keys::prefix_end(&keys::all(t)));
    let (members, members_end) = table(MEMBERS);
    assert_eq!(within(members, members_end), [CF_SM_DATA]);
    let (index, index_end) = table(SEARCH);
    assert_eq!(within(index.clone(), index_end.clone()), [CF_SM_SEARCH]);
    let term = keys::bigram_in_room("在宅".as_bytes(), 7);
    assert_eq!(within(term.clone(), keys::prefix_end(&term)), [CF_SM_SEARCH]);
    assert_eq!(within(keys::all(POSTS), None), [CF_SM_DATA, CF_SM_IDEMPOTENCY], "the tables after the index");
    assert_eq!(within(vec![], Some(index.clone())), [CF_SM_DATA], "up to the index, not into it");
    assert_eq!(within(index, Some(vec![SEARCH.prefix, 0])), [CF_SM_SEARCH]);
    assert_eq!(within(vec![SEARCH.prefix - 1, 0xff], index_end), [CF_SM_DATA, CF_SM_SEARCH]);
    assert_eq!(within(vec![], None), STATE_FAMILIES);
    let (remembered, remembered_end) = table(IDEMPOTENCY);
    assert_eq!(within(remembered.clone(), remembered_end), [CF_SM_IDEMPOTENCY]);
    let one = keys::text(IDEMPOTENCY, "3/first");
    assert_eq!(within(one.clone(), keys::prefix_end(&one)), [CF_SM_IDEMPOTENCY]);
    let (by_time, by_time_end) = table(REMEMBERED_AT);
    assert_eq!(within(by_time, by_time_end), [CF_SM_DATA], "the remembered results' times stay in sm_data");
    assert_eq!(within(keys::all(SEARCH), Some(remembered)), [CF_SM_DATA, CF_SM_SEARCH], "from one to the next");
    for (key, _) in state() {
        assert_eq!(family_of(&key), expected_family(&key), "{key:?}");
        assert_eq!(STATE_FAMILIES[family_index(&key)], expected_family(&key), "{key:?}");
    }
    for (i, (_, family)) in DEDICATED.iter().enumerate() {
        assert_eq!(STATE_FAMILIES[i + 1], *family, "DEDICATED in STATE_FAMILIES' order");
    }
}

#[test]
fn sources_merge_into_one_key_order() {
    let evens = [0, 2, 4, 10].map(|k| (k, "data"));
    let odds = [1, 3, 11].map(|k| (k, "search"));
    let merged: Vec<_> = MergedByKey::new([evens.iter().copied(), odds.iter().copied()]).collect();
    let keys: Vec<_> = merged.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [0, 1, 2, 3, 4, 10, 11]);
    assert_eq!(MergedByKey::new([Vec::<(u8, u8)>::new().into_iter()]).next(), None);
}

#[test]
fn the_dedicated_tables_of_a_data_dir_written_before_their_families_move_once_when_it_opens() {
    let dir = tempfile::tempdir().expect("dir");
    let digest_before = {
        let (sm, db) = open(dir.path());
        // As a build before the split stored them: every pair in `sm_data`.
        for (k, v) in state() {
            db.put_cf(cf(&db, CF_SM_DATA), k, v).expect("write");
        }
        assert_eq!(walk(&db), state());
        sm.reader().state_digest().expect("digest")
    };
    let (sm, db) = open(dir.path());
    assert_stored_by_family(&db);
    assert_eq!(walk(&db), state(), "the whole state in key order, as before");
    assert_eq!(sm.reader().state_digest().expect("digest"), digest_before);
    assert_eq!(move_dedicated_tables(&db, &dir.path().join("snapshots")).expect("again"), 0, "nothing left to move");
}

#[test]
fn a_move_stopped_before_its_delete_is_done_again() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (_sm, db) = open(dir.path());
        // Copied, not yet deleted from `sm_data`: where a stop in the middle leaves it.
        for (k, v) in state() {
            db.put_cf(cf(&db, CF_SM_DATA), &k, &v).expect("write");
            if expected_family(&k) != CF_SM_DATA {
                db.put_cf(cf(&db, expected_family(&k)), &k, &v).expect("write");
            }
        }
    }
    let (_sm, db) = open(dir.path());
    assert_stored_by_family(&db);
    assert_eq!(walk(&db), state());
}

#[test]
fn a_checkpoint_taken_before_the_split_reads_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let old = dir.path().join("old");
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // As a checkpoint of then: the Raft log in the state's RocksDB too.
        let unsplit = COLUMN_FAMILIES.into_iter().filter(|f| ![CF_SM_SEARCH, CF_SM_IDEMPOTENCY].contains(f));
        let before_split = unsplit.chain([crate::CF_RAFT_LOG]);
        let db = DB::open_cf(&options, &old, before_split).expect("an old layout");
        for (k, v) in state() {
            db.put_cf(cf(&db, CF_SM_DATA), k, v).expect("write");
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&db).expect("checkpoint");
        checkpoint.create_checkpoint(dir.path().join("ckpt")).expect("checkpoint");
    }
    let mut read = Vec::new();
    crate::checkpoint::read_pairs(&dir.path().join("ckpt"), |k, v| read.push((k.to_vec(), v.to_vec()))).expect("read");
    assert_eq!(read, state());
}

#[test]
fn an_installed_snapshot_puts_each_pair_in_its_family() {
    let (source, target) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let file = source.path().join("state.snap");
    let meta = {
        let (_sm, db) = open(source.path());
        for (k, v) in state() {
            db.put_cf(cf(&db, family_of(&k)), k, v).expect("write");
        }
        crate::snapshot::write_consistent(&db, &db.snapshot(), &file, |_, _| ()).expect("a snapshot file")
    };
    let mut listed = Vec::new();
    crate::snapshot::read_pairs(&file, |k, v| {
        listed.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .expect("read");
    assert_eq!(listed, state(), "the file lists the state in key order");

    let (_sm, db) = open(target.path());
    // A pair of each family the snapshot does not hold: replaced with the rest.
    db.put_cf(cf(&db, CF_SM_SEARCH), keys::bigram_post("旧い".as_bytes(), 9, 9), b"\x01").expect("write");
    db.put_cf(cf(&db, CF_SM_DATA), keys::id(FACILITIES, 9), b"\x01").expect("write");
    db.put_cf(cf(&db, CF_SM_IDEMPOTENCY), keys::text(IDEMPOTENCY, "9/old"), b"\x01").expect("write");
    crate::install::install(&db, &file, &meta, &target.path().join("snapshots")).expect("install");
    assert_stored_by_family(&db);
}

#[test]
fn a_snapshot_in_order_per_family_but_not_whole_is_refused() {
    let (source, target) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let file = source.path().join("state.snap");
    // Each family's keys in order, the index's after the posts: not the order a node writes.
    let (index, rest): (Pairs, Pairs) = state().into_iter().partition(|(k, _)| expected_family(k) == CF_SM_SEARCH);
    let mut writer =
        crate::snapshot::SnapshotWriter::create(&file, &crate::raft::SnapshotMeta::default()).expect("create");
    for (k, v) in rest.iter().chain(&index) {
        writer.pair(k, v).expect("pair");
    }
    writer.finish().expect("finish");
    let (_sm, db) = open(target.path());
    let mine = (keys::id(FACILITIES, 9), to_value(&"mine").expect("encode"));
    db.put_cf(cf(&db, CF_SM_DATA), &mine.0, &mine.1).expect("write");
    let refused =
        crate::install::install(&db, &file, &crate::raft::SnapshotMeta::default(), &target.path().join("snapshots"));
    assert!(refused.expect_err("refused").to_string().contains("out of order"));
    assert_eq!(family_pairs(&db, CF_SM_DATA), [mine], "the state is untouched");
    assert_eq!(family_pairs(&db, CF_SM_SEARCH), []);
    assert_eq!(family_pairs(&db, CF_SM_IDEMPOTENCY), []);
}

/// The idempotency keys' family answers a lookup of an absent key from its bloom filters, in
/// the memtable and on the last level alike: every write makes one (session 31: without them
/// the lookup walked the memtable's skip list and the last level's blocks).
#[test]
fn an_absent_idempotency_key_is_answered_by_the_filters() {
    use rocksdb::perf::{PerfContext, PerfMetric, PerfStatsLevel, set_perf_stats};
    let dir = tempfile::tempdir().expect("dir");
    let (_sm, db) = open(dir.path());
    let family = cf(&db, CF_SM_IDEMPOTENCY);
    let remembered = |run: u32, i: u32| keys::text(IDEMPOTENCY, &format!("{run}/{i}"));
    for i in 0..2000 {
        db.put_cf(family, remembered(1, i), b"first result").expect("write");
    }
    db.flush_cf(family).expect("flush");
    db.compact_range_cf::<&[u8], &[u8]>(family, None, None);
    let on_last_level = db.property_int_value_cf(family, "rocksdb.num-files-at-level6").expect("property");
    assert!(on_last_level.is_some_and(|files| files > 0), "the keys reached the last level");
    for i in 0..100 {
        db.put_cf(family, remembered(2, i), b"first result").expect("write");
    }
    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut counted = PerfContext::default();
    counted.reset();
    for i in 0..100 {
        // Inside the tables' key range, which alone would rule out a key past it.
        let absent = keys::text(IDEMPOTENCY, &format!("1/{i}+"));
        assert_eq!(db.get_cf(family, absent).expect("read"), None);
    }
    let (memtable, tables) =
        (counted.metric(PerfMetric::BloomMemtableMissCount), counted.metric(PerfMetric::BloomSstMissCount));
    set_perf_stats(PerfStatsLevel::Disable);
    // A bloom filter lets a few absent keys through (~1 % at 10 bits a key).
    assert!(memtable >= 90, "the memtable's filter answered {memtable} of 100");
    assert!(tables >= 90, "the tables' filters answered {tables} of 100");
}
