use std::collections::BTreeSet;
use std::path::Path;

use kizuna_domain::{Envelope, LogCommand};
use openraft::RaftLogReader;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::testing::log_id;
use openraft::type_config::TypeConfigExt;

use super::*;
use crate::raft::{Entry, TypeConfig, Vote};
use crate::{COLUMN_FAMILIES, LOG_FAMILIES, MasterKeys};

fn entry(index: u64) -> Entry {
    let command = LogCommand::PutRecord { key: format!("k{index}"), value: format!("記録 {index}") };
    let envelope = Envelope { idempotency_key: format!("e-{index}"), proposed_at_ms: index, command };
    Entry::new_normal(log_id::<TypeConfig>(2, 1, index), envelope)
}

/// What the log of the node at `dir` holds, read through the log store: its state, vote and
/// entries.
async fn log_of(dir: &Path) -> (LogState<TypeConfig>, Option<Vote>, Vec<Entry>) {
    let (mut log, _state) = crate::open(dir, MasterKeys::none()).expect("open");
    let state = log.get_log_state().await.expect("log state");
    let vote = log.read_vote().await.expect("vote");
    let entries = log.try_get_log_entries(0..).await.expect("entries");
    (state, vote, entries)
}

/// A node's data dir with 40 entries (the first 10 purged) and a vote, in this layout.
async fn written_node(dir: &Path) {
    let (mut log, _state) = crate::open(dir, MasterKeys::none()).expect("open");
    for index in 1..=40 {
        let (tx, rx) = TypeConfig::oneshot();
        log.append([entry(index)], IOFlushed::signal(tx)).await.expect("appended");
        rx.await.expect("answered").expect("flushed");
    }
    log.save_vote(&Vote::new(2, 1)).await.expect("vote");
    log.purge(log_id::<TypeConfig>(2, 1, 10)).await.expect("purged");
}

fn raw(path: &Path, families: &[&str]) -> DB {
    let mut options = rocksdb::Options::default();
    options.create_missing_column_families(true);
    DB::open_cf(&options, path, families).expect("open")
}

/// Copies the log's RocksDB's pairs into `state`'s families of the same names.
fn copy_back(log: &DB, state: &DB) {
    for family in LOG_FAMILIES {
        for item in log.iterator_cf(cf(log, family), IteratorMode::Start) {
            let (key, value) = item.expect("read");
            state.put_cf(cf(state, family), key, value).expect("write");
        }
    }
}

/// Turns a data dir of this layout into one written before the log had its own RocksDB: the
/// log's pairs and the node's metadata in the state's `raft_log` and `raft_meta`, no
/// `node_meta`, and no log dir — or, with `cut_short`, the log dir and `node_meta` as a move
/// cut short after its copies left them.
fn as_older_layout(dir: &Path, cut_short: bool) {
    let older: Vec<&str> = COLUMN_FAMILIES.into_iter().chain([CF_RAFT_LOG, CF_RAFT_META]).collect();
    {
        let (mut state, log) = (raw(&dir.join("db"), &older), raw(&dir.join("log"), &LOG_FAMILIES));
        copy_back(&log, &state);
        for key in NODE_KEYS {
            if let Some(value) = state.get_cf(cf(&state, CF_NODE_META), key).expect("read") {
                state.put_cf(cf(&state, CF_RAFT_META), key, value).expect("write");
            }
        }
        if !cut_short {
            state.drop_cf(CF_NODE_META).expect("drop node_meta");
        }
    }
    if !cut_short {
        std::fs::remove_dir_all(dir.join("log")).expect("remove the log dir");
    }
}

/// The state RocksDB's families as on disk (RocksDB's `default` aside).
fn on_disk(dir: &Path) -> BTreeSet<String> {
    let listed = DB::list_cf(&rocksdb::Options::default(), dir.join("db")).expect("the state's families");
    listed.into_iter().filter(|family| family != "default").collect()
}

/// This layout's families of the state's RocksDB.
fn this_layout() -> BTreeSet<String> {
    COLUMN_FAMILIES.into_iter().map(str::to_owned).collect()
}

fn state_families(dir: &Path) -> Vec<&'static str> {
    crate::state_families_on_disk(&dir.join("db")).expect("families")
}

/// The node's metadata in `node_meta`: the format marker and whether it scrubbed.
fn node_meta(dir: &Path) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let state = raw(&dir.join("db"), &state_families(dir));
    let read = |key| state.get_cf(cf(&state, CF_NODE_META), key).expect("read");
    (read(FORMAT), read(SCRUBBED))
}

#[tokio::test]
async fn an_older_data_dir_has_its_log_moved_and_a_second_open_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    written_node(dir.path()).await;
    let (before, metadata) = (log_of(dir.path()).await, node_meta(dir.path()));
    assert_eq!(before.2.len(), 30, "entries 11 to 40");
    assert!(metadata.0.is_some(), "the format marker");
    as_older_layout(dir.path(), false);
    assert!(!on_disk(dir.path()).contains(CF_NODE_META));

    let moved = log_of(dir.path()).await;
    assert_eq!(format!("{moved:?}"), format!("{before:?}"), "the same log, vote and markers");
    assert_eq!(on_disk(dir.path()), this_layout(), "the older families dropped");
    assert_eq!(node_meta(dir.path()), metadata, "the node's metadata moved");
    assert_eq!(format!("{:?}", log_of(dir.path()).await), format!("{before:?}"), "a second open");
}

#[tokio::test]
async fn a_move_cut_short_after_its_copies_is_made_again_whole() {
    let dir = tempfile::tempdir().expect("dir");
    written_node(dir.path()).await;
    let (before, metadata) = (log_of(dir.path()).await, node_meta(dir.path()));
    as_older_layout(dir.path(), true);
    assert!(state_families(dir.path()).contains(&CF_RAFT_LOG), "opened with the older families");
    assert_eq!(format!("{:?}", log_of(dir.path()).await), format!("{before:?}"));
    assert_eq!(on_disk(dir.path()), this_layout());
    assert_eq!(node_meta(dir.path()), metadata);
}

#[tokio::test]
async fn a_move_cut_short_between_its_drops_finishes() {
    let dir = tempfile::tempdir().expect("dir");
    written_node(dir.path()).await;
    let (before, metadata) = (log_of(dir.path()).await, node_meta(dir.path()));
    as_older_layout(dir.path(), true);
    {
        let older: Vec<&str> = COLUMN_FAMILIES.into_iter().chain([CF_RAFT_LOG, CF_RAFT_META]).collect();
        let mut state = raw(&dir.path().join("db"), &older);
        state.drop_cf(CF_RAFT_LOG).expect("the first drop");
    }
    assert_eq!(format!("{:?}", log_of(dir.path()).await), format!("{before:?}"), "nothing lost");
    assert_eq!(on_disk(dir.path()), this_layout());
    assert_eq!(node_meta(dir.path()), metadata);
}

#[test]
fn a_new_data_dir_opens_with_this_layout() {
    let dir = tempfile::tempdir().expect("dir");
    drop(crate::open(dir.path(), MasterKeys::none()).expect("open"));
    assert_eq!(on_disk(dir.path()), this_layout());
    let log_families = DB::list_cf(&rocksdb::Options::default(), dir.path().join("log")).expect("the log's db");
    assert!(LOG_FAMILIES.iter().all(|family| log_families.iter().any(|f| f == family)), "{log_families:?}");
}

/// A `DBOptions` value as RocksDB recorded it in the newest OPTIONS file of the database at
/// `path` (the options it actually runs with, after its own sanitizing).
fn recorded_option(path: &Path, name: &str) -> Option<String> {
    let newest = std::fs::read_dir(path)
        .expect("the database's directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|file| file.starts_with("OPTIONS-"))
        .max_by_key(|file| file.trim_start_matches("OPTIONS-").parse::<u64>().unwrap_or(0))?;
    let text = std::fs::read_to_string(path.join(newest)).expect("the options file");
    let prefix = format!("{name}=");
    text.lines().find_map(|line| line.trim().strip_prefix(&prefix).map(str::to_owned))
}

#[test]
fn the_log_writes_over_recycled_wal_files_and_the_state_does_not() {
    let dir = tempfile::tempdir().expect("dir");
    drop(crate::open(dir.path(), MasterKeys::none()).expect("open"));
    let recycled = |db: &str| recorded_option(&dir.path().join(db), "recycle_log_file_num");
    assert_eq!(recycled("log").as_deref(), Some("1"), "a sync of the log's WAL commits no new file size");
    assert_eq!(recycled("db").as_deref(), Some("0"), "a checkpoint of the state links its WAL, never copies it");
}

#[test]
fn both_databases_sync_their_table_files_a_step_at_a_time_one_step_in_flight() {
    let dir = tempfile::tempdir().expect("dir");
    drop(crate::open(dir.path(), MasterKeys::none()).expect("open"));
    for db in ["db", "log"] {
        let option = |name| recorded_option(&dir.path().join(db), name);
        assert_eq!(option("bytes_per_sync").as_deref(), Some("1048576"), "{db}");
        assert_eq!(option("strict_bytes_per_sync").as_deref(), Some("true"), "{db}: a step waits for the one before");
    }
}

/// The names of the WAL files in the database at `path`.
fn wal_files(path: &Path) -> BTreeSet<String> {
    let names = std::fs::read_dir(path)
        .expect("the database's directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok());
    names.filter(|name| name.ends_with(".log")).collect()
}

/// Whether `done` holds within ~10 s: RocksDB flushes, and takes the files a flush made
/// obsolete, in the background.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    done()
}

/// Every append carries the committed id into the markers' family, and a purge writes its
/// marker there: unless a purge flushes that family with the log's, its memtable keeps every
/// WAL file since its last flush alive, and the log writes each new WAL file from nothing
/// (every sync then also writes the file's new size; docs/benchmarks.md, session 43).
#[tokio::test]
async fn after_each_purge_the_log_keeps_its_wal_file_and_one_spare_to_write_over() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut log, _state) = crate::open(dir.path(), MasterKeys::none()).expect("open");
    let db = log.database();
    let unflushed = |family| db.property_int_value_cf(cf(&db, family), "rocksdb.num-immutable-mem-table");
    for round in 0..4u64 {
        let last = round * 10 + 10;
        for index in last - 9..=last {
            let (tx, rx) = TypeConfig::oneshot();
            log.append([entry(index)], IOFlushed::signal(tx)).await.expect("appended");
            rx.await.expect("answered").expect("flushed");
            log.save_committed(Some(log_id::<TypeConfig>(2, 1, index))).await.expect("saved");
        }
        log.purge(log_id::<TypeConfig>(2, 1, last - 1)).await.expect("purged");
        let flushed = || LOG_FAMILIES.iter().all(|family| unflushed(family).expect("the property") == Some(0));
        assert!(eventually(flushed).await, "the purge's flush never finished");
    }
    // RocksDB takes an obsolete file into its recycle list (or deletes it, the list being
    // full) just after the flush that made it obsolete: the count settles there.
    eventually(|| wal_files(&dir.path().join("log")).len() == 2).await;
    let files = wal_files(&dir.path().join("log"));
    assert_eq!(files.len(), 2, "the WAL file written and the one to write over next: {files:?}");
}
