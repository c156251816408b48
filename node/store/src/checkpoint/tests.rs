use std::os::unix::fs::MetadataExt;
use std::sync::atomic::AtomicBool;

use openraft::testing::log_id;
use rocksdb::WriteBatch;

use super::*;
use crate::keys::APPLIED;
use crate::raft::TypeConfig;
use crate::{CF_SM_DATA, CF_SM_META, cf, to_value};
use crate::{ExportStream, Outgoing};

const COUNTER: &[u8] = b"~counter";

/// One apply as it writes: a value and `applied` in one batch.
fn write_step(db: &DB, index: u64) {
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, CF_SM_DATA), COUNTER, index.to_be_bytes());
    batch.put_cf(cf(db, CF_SM_META), APPLIED, to_value(&log_id::<TypeConfig>(1, 1, index)).expect("encode"));
    db.write(batch).expect("write");
}

/// Applies as many steps, one batch each.
fn write_steps(db: &DB, indexes: std::ops::RangeInclusive<u64>) {
    for index in indexes {
        write_step(db, index);
    }
}

fn counter_in(checkpoint: &Path) -> u64 {
    let db = open_read_only(checkpoint).expect("open the checkpoint");
    let bytes = db.get_cf(cf(&db, CF_SM_DATA), COUNTER).expect("read").expect("the counter");
    u64::from_be_bytes(bytes.as_slice().try_into().expect("eight bytes"))
}

fn opened(dir: &Path) -> (Arc<DB>, Checkpoints) {
    let (_log, sm) = crate::open(dir, crate::MasterKeys::none()).expect("open");
    let reader = sm.reader();
    (reader.db.clone(), reader.checkpoints.clone())
}

/// Apply goes on while a checkpoint is taken (a build is a task of its own): what the
/// checkpoint holds is the state at the `applied` its meta names, never a mix.
#[test]
fn a_checkpoint_holds_the_state_its_meta_names_while_writes_go_on() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, checkpoints) = opened(dir.path());
    write_step(&db, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut index = 2;
            while !stop.load(Ordering::Relaxed) {
                write_step(&db, index);
                index += 1;
            }
            index
        })
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (path, meta) = checkpoints.take(&db).expect("a checkpoint");
        let applied = meta.last_log_id.expect("applied").index;
        assert_eq!(counter_in(&path), applied, "the data and `applied` of one moment");
        seen.push(applied);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "each newer than the last: {seen:?}");
    assert!(seen.last().is_some_and(|&last| last > 1 && last < written), "taken while writes went on: {seen:?}");
}

/// A checkpoint links the database's sorted tables: no copy of the state is written.
#[test]
fn a_checkpoint_links_the_tables_instead_of_copying_them() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, checkpoints) = opened(dir.path());
    write_steps(&db, 1..=1_000);
    let (path, _) = checkpoints.take(&db).expect("a checkpoint");
    let tables: Vec<_> = std::fs::read_dir(&path)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    assert!(!tables.is_empty(), "the flushed state is in sorted tables");
    for table in tables {
        assert!(std::fs::metadata(&table).expect("stat").nlink() >= 2, "{} is a copy", table.display());
    }
}

/// A stop at any point leaves the current checkpoint current; what it left of others goes when
/// the node opens, and the next checkpoint takes a new name.
#[test]
fn reopening_keeps_the_current_checkpoint_and_clears_leftovers() {
    let dir = tempfile::tempdir().expect("dir");
    let snapshots = dir.path().join("snapshots");
    let current = {
        let (db, checkpoints) = opened(dir.path());
        write_step(&db, 7);
        checkpoints.take(&db).expect("a checkpoint")
    };
    let leftovers =
        ["ckpt-41", "ckpt-41.meta.new", "ckpt-1.snap.3", "current.ckpt.new"].map(|name| snapshots.join(name));
    std::fs::create_dir(&leftovers[0]).expect("a build cut short");
    for file in &leftovers[1..] {
        std::fs::write(file, b"cut").expect("write");
    }
    let (db, checkpoints) = opened(dir.path());
    assert_eq!(checkpoints.current().expect("readable"), Some(current.clone()));
    for leftover in &leftovers {
        assert!(!leftover.exists(), "{} was removed", leftover.display());
    }
    write_step(&db, 8);
    let pinned = snapshots.join("ckpt-2.pin-0");
    std::fs::create_dir(&pinned).expect("an export under way");
    let (next, meta) = checkpoints.take(&db).expect("the next");
    assert!(pinned.exists(), "what an export under way holds stays");
    assert_eq!(next.file_name().and_then(|n| n.to_str()), Some("ckpt-42"));
    assert_eq!(meta.last_log_id.map(|l| l.index), Some(8));
    assert!(!current.0.exists() && !meta_path(&current.0).exists(), "the replaced one is gone");
}

/// A peer is sent a file exported from the checkpoint: written once, of the checkpoint's state,
/// and removed with it.
#[tokio::test]
async fn an_export_is_written_once_of_the_checkpoint_and_goes_with_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (_log, sm) = crate::open(dir.path(), crate::MasterKeys::none()).expect("open");
    let reader = sm.reader();
    write_step(&reader.db, 3);
    let (path, meta) = reader.take_checkpoint().expect("a checkpoint");
    let digest = reader.state_digest().expect("digest");
    write_step(&reader.db, 4);

    let snapshot = SnapshotFile { path };
    let export = snapshot.streamable().expect("exported");
    assert_eq!(snapshot::digest_of(&export).expect("a whole file"), (meta, digest), "the checkpoint's state");
    let modified = std::fs::metadata(&export).and_then(|m| m.modified()).expect("stat");
    assert_eq!(snapshot.streamable().expect("again"), export);
    assert_eq!(std::fs::metadata(&export).and_then(|m| m.modified()).expect("stat"), modified, "not rewritten");

    reader.take_checkpoint().expect("a newer checkpoint");
    assert!(!export.exists() && !snapshot.path.exists(), "the export went with its checkpoint");
}

/// `count` keys of 64 bytes no compressor shrinks, with `applied` after them.
fn write_distinct(db: &DB, count: u64) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut batch = WriteBatch::default();
    for i in 0..count {
        let value: Vec<u8> = (0..8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_be_bytes()
            })
            .collect();
        batch.put_cf(cf(db, CF_SM_DATA), format!("~distinct/{i:06}"), value);
    }
    batch.put_cf(cf(db, CF_SM_META), APPLIED, to_value(&log_id::<TypeConfig>(1, 1, count)).expect("encode"));
    db.write(batch).expect("write");
}

/// Bytes per part in the streaming tests: a few KiB, so a small state takes many parts.
const TEST_PART_BYTES: usize = 4096;

/// Everything an export stream hands over, and in how many parts.
async fn received(mut export: ExportStream) -> (Vec<u8>, usize) {
    let (mut bytes, mut parts) = (Vec::new(), 0);
    while let Some(part) = export.next().await.expect("a part") {
        assert!(!part.is_empty(), "an empty part before the end");
        bytes.extend_from_slice(&part);
        parts += 1;
    }
    (bytes, parts)
}

/// A checkpoint in `dir` of `count` distinct pairs, with its meta and the state's digest.
fn distinct_checkpoint(dir: &Path, count: u64) -> (SnapshotFile, SnapshotMeta, crate::StateDigest) {
    let (_log, sm) = crate::open(dir, crate::MasterKeys::none()).expect("open");
    let reader = sm.reader();
    write_distinct(&reader.db, count);
    let (path, meta) = reader.take_checkpoint().expect("a checkpoint");
    (SnapshotFile { path }, meta, reader.state_digest().expect("digest"))
}

/// The export of a checkpoint not exported before, as a peer that takes streaming is sent it.
fn streamed(snapshot: &SnapshotFile) -> ExportStream {
    match snapshot.to_send(true, TEST_PART_BYTES).expect("sent") {
        Outgoing::Exporting(export) => export,
        other => panic!("a checkpoint not exported before is streamed: {other:?}"),
    }
}

/// A peer that takes a streamed snapshot gets the export in parts as it is written: the same
/// bytes as the file kept beside the checkpoint, which the next send is given whole.
#[tokio::test]
async fn a_streamed_export_is_the_file_it_keeps() {
    let dir = tempfile::tempdir().expect("dir");
    let (snapshot, meta, digest) = distinct_checkpoint(dir.path(), 2_000);

    let (bytes, parts) = received(streamed(&snapshot)).await;
    assert!(parts > 2, "{parts} parts of {} bytes", bytes.len());
    let kept = export_path(&snapshot.path);
    assert_eq!(std::fs::read(&kept).expect("the kept export"), bytes, "the peer got the file's bytes");
    assert_eq!(snapshot::digest_of(&kept).expect("a whole file"), (meta, digest), "the checkpoint's state");
    match snapshot.to_send(true, TEST_PART_BYTES).expect("sent again") {
        Outgoing::Whole(file) => assert_eq!(file, kept),
        other => panic!("exported before, sent whole: {other:?}"),
    }
}

/// A send that stops half way (cancelled, the peer gone) does not stop the export: the next
/// send finds it whole.
#[tokio::test]
async fn an_export_whose_send_stopped_is_kept_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let (snapshot, meta, digest) = distinct_checkpoint(dir.path(), 2_000);

    let mut export = streamed(&snapshot);
    export.next().await.expect("the first part").expect("not the end");
    drop(export);
    let kept = export_path(&snapshot.path);
    for _ in 0..500 {
        if kept.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(snapshot::digest_of(&kept).expect("a whole file"), (meta, digest));
}

/// A peer of an older build takes only a whole file: the export is written first.
#[test]
fn a_peer_without_streaming_is_sent_the_whole_export() {
    let dir = tempfile::tempdir().expect("dir");
    let (snapshot, meta, _) = distinct_checkpoint(dir.path(), 100);
    match snapshot.to_send(false, TEST_PART_BYTES).expect("sent") {
        Outgoing::Whole(file) => {
            assert_eq!(file, export_path(&snapshot.path));
            assert_eq!(snapshot::read_meta(&file).expect("a whole file"), meta);
        }
        other => panic!("sent whole: {other:?}"),
    }
}

/// openraft may hand a checkpoint to a peer's sender after a newer one retired it: the send
/// fails (and is asked again with the current one) instead of reading a removed directory.
#[test]
fn a_retired_checkpoint_is_not_exported() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, checkpoints) = opened(dir.path());
    write_step(&db, 1);
    let (retired, _) = checkpoints.take(&db).expect("a checkpoint");
    write_step(&db, 2);
    checkpoints.take(&db).expect("a newer one");
    let refused = SnapshotFile { path: retired.clone() }.streamable().expect_err("retired");
    assert_eq!(refused.kind(), std::io::ErrorKind::NotFound, "{refused}");
    let refused = SnapshotFile { path: retired.clone() }.to_send(true, TEST_PART_BYTES).expect_err("retired");
    assert_eq!(refused.kind(), std::io::ErrorKind::NotFound, "{refused}");
    assert!(!export_path(&retired).exists());
}

/// A link that points elsewhere than a checkpoint is an error, never "no snapshot" (which would
/// remove the directory it points at).
#[test]
fn a_current_link_to_something_else_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    std::os::unix::fs::symlink("../db", dir.path().join(CURRENT)).expect("link");
    assert!(Checkpoints::open(dir.path()).is_err());
}

/// What a checkpoint costs on disk is the files compaction replaced after it was taken.
#[test]
fn a_checkpoint_holds_alone_only_the_files_compaction_replaced_since() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, checkpoints) = opened(dir.path());
    write_steps(&db, 1..=2_000);
    checkpoints.take(&db).expect("a checkpoint");
    let taken = checkpoints.disk().expect("listed").expect("a checkpoint");
    assert!(taken.bytes > 0);
    // Only its own small files are its alone (manifest, options): every table is linked.
    assert!(taken.only_here < 64 << 10, "{taken:?}");
    write_steps(&db, 2_001..=4_000);
    // As the scrub compacts: every file rewritten, down to the last level.
    let mut options = rocksdb::CompactOptions::default();
    options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
    for family in [CF_SM_DATA, CF_SM_META] {
        db.flush_cf(cf(&db, family)).expect("flush");
        db.compact_range_cf_opt(cf(&db, family), None::<&[u8]>, None::<&[u8]>, &options);
    }
    let compacted = checkpoints.disk().expect("listed").expect("a checkpoint");
    assert!(compacted.only_here > taken.only_here, "the replaced tables are the checkpoint's alone: {compacted:?}");
    checkpoints.take(&db).expect("a new checkpoint");
    let retaken = checkpoints.disk().expect("listed").expect("a checkpoint");
    assert!(retaken.only_here < 64 << 10, "{retaken:?}");
}

fn own_nice_value() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("a thread's own nice value")
}

#[test]
fn an_export_runs_below_the_priority_of_the_thread_that_asks_for_it() {
    let before = own_nice_value();
    let during = below_normal_priority(|| Ok(own_nice_value())).expect("the work ran");
    assert_eq!(during, (before + EXPORT_NICENESS).min(19));
    assert_eq!(own_nice_value(), before, "the asking thread keeps its own priority");
}

#[test]
fn an_export_that_panics_is_an_error_of_the_export_not_of_the_node() {
    let failed = below_normal_priority(|| -> std::io::Result<()> { panic!("a bug in the export") });
    assert!(failed.expect_err("an error").to_string().contains("panic"));
}
