//! A data dir written by the JSON-valued storage (the fixture, see `fixtures/README.md`) opens
//! with this build: its state, Raft log, vote and snapshot read back, a second open changes
//! nothing, and the state machine goes on applying.

use std::path::Path;

use futures::stream;
use kizuna_domain::HubView;
use kizuna_domain::model::{AccountId, Member};
use kizuna_domain::{Envelope, LogCommand};
use kizuna_store::raft::{Entry, LogId};
use kizuna_store::{LogStore, StateMachineStore};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};

fn unpack_fixture(into: &Path) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json-v0.tar.gz");
    let file = std::fs::File::open(&archive).expect("the fixture");
    tar::Archive::new(flate2::read::GzDecoder::new(file)).unpack(into).expect("unpack the fixture");
}

fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    // With a master key, as a node of this build runs: the old values stay readable.
    let masters = kizuna_store::MasterKeys::new(kizuna_store::MasterKey::from_secret(&[4; 32]), Vec::new());
    kizuna_store::open(dir, masters).expect("the old data dir opens")
}

/// The display name of the account `login`, and whether one of its rooms has a post `text`.
fn account_and_post(sm: &StateMachineStore, login: &str, text: &str) -> (String, bool) {
    let reader = sm.reader();
    let hub = reader.hub();
    let id: AccountId = hub.account_by_login(login).expect("readable").expect("the account's login");
    let name = hub.account(id).expect("readable").expect("the account").display_name;
    let rooms = hub.rooms_of(id).expect("readable");
    let post = |m: &Member, seq| hub.post(m.room, seq).expect("readable");
    let posted = rooms.iter().any(|m| (1..=30).any(|seq| post(m, seq).is_some_and(|p| p.text == text)));
    assert_eq!(hub.fault(), None);
    (name, posted)
}

#[tokio::test]
async fn a_json_data_dir_opens_migrated_and_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    unpack_fixture(dir.path());
    let (mut log, mut sm) = open(dir.path());

    // The state: a record written after the snapshot, an account, a post in Japanese.
    let greeting = sm.reader().record("greeting").expect("read").expect("the record");
    assert_eq!((greeting.value.as_str(), greeting.version), ("こんばんは", 3));
    let after = sm.reader().record("after-snapshot").expect("read").expect("the record");
    assert_eq!(after.value, "スナップショットの後");
    let post = "本日訪問診療。SpO2 94%（在宅酸素 1L）、血圧 128/76。浮腫は軽度で変わりありません。";
    assert_eq!(account_and_post(&sm, "dr.sato", post), ("佐藤 健一".to_owned(), true));

    // The Raft side: vote, log state, every stored entry, the applied state, the snapshot.
    assert!(log.read_vote().await.expect("vote").is_some());
    let state = log.get_log_state().await.expect("log state");
    let (purged, last) = (state.last_purged_log_id.expect("purged"), state.last_log_id.expect("last"));
    let entries = log.get_log_reader().await.try_get_log_entries(purged.index + 1..=last.index).await.expect("log");
    assert_eq!(entries.len() as u64, last.index - purged.index);
    assert!(entries.iter().any(|e| matches!(&e.payload, openraft::EntryPayload::Normal(_))));
    let (applied, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(last));
    assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1]);
    // The fixture's snapshot file is replaced by a checkpoint of the migrated state.
    let snapshot = sm.get_current_snapshot().await.expect("snapshot").expect("a snapshot in its place");
    assert_eq!(snapshot.meta.last_log_id, Some(last));
    assert!(snapshot.meta.last_log_id >= Some(purged), "never behind the purged log");

    // A second open migrates nothing: the same state, byte for byte.
    let digest = sm.reader().state_digest().expect("digest");
    drop((log, sm));
    let (log, mut sm) = open(dir.path());
    assert_eq!(sm.reader().state_digest().expect("digest"), digest);

    // And it goes on: a new entry applies, a new snapshot builds.
    let next = LogId { index: last.index + 1, ..last };
    let put = LogCommand::PutRecord { key: "greeting".into(), value: "おやすみ".into() };
    let envelope =
        Envelope { idempotency_key: "after-migration".into(), proposed_at_ms: 4_000_000_000_000, command: put };
    let entry = Entry::new_normal(next, envelope);
    sm.apply(stream::iter([Ok((entry, None))])).await.expect("apply after migration");
    let greeting = sm.reader().record("greeting").expect("read").expect("the record");
    assert_eq!((greeting.value.as_str(), greeting.version), ("おやすみ", 4));
    let built = sm.get_snapshot_builder().await.build_snapshot().await.expect("a new snapshot");
    assert_eq!(built.meta.last_log_id, Some(next));
    drop(log);
}
