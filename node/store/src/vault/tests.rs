//! Sealing as apply does it: the same bytes on every replica whatever its batches, the state
//! written before the first key sealed by it, rotations that leave old values readable, and
//! keyrings refused alike everywhere.

use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;

use kizuna_domain::keyring::{SEALED_STATE_APPLY_VERSION, WrappedKey};
use kizuna_domain::{Envelope, LogCommand};

use crate::codec::sealed_parts;
use crate::keys::{self, RECORDS};
use crate::raft::{Entry, TypeConfig};
use crate::{CF_SM_DATA, MasterKey, MasterKeys, StateMachineStore, cf};

fn masters(secret: u8) -> MasterKeys {
    MasterKeys::new(MasterKey::from_secret(&[secret; 32]), Vec::new())
}

fn entry(index: u64, command: LogCommand) -> Entry {
    let envelope = Envelope { idempotency_key: format!("e-{index}"), proposed_at_ms: index, command };
    Entry::new_normal(log_id::<TypeConfig>(1, 1, index), envelope)
}

fn put(index: u64, key: &str, value: &str) -> Entry {
    entry(index, LogCommand::PutRecord { key: key.into(), value: value.into() })
}

fn sealed_version(index: u64) -> Entry {
    entry(index, LogCommand::SetApplyVersion { version: SEALED_STATE_APPLY_VERSION })
}

fn seal_step(index: u64) -> Entry {
    entry(index, LogCommand::SealStep)
}

fn keyring(index: u64, keys: Vec<WrappedKey>) -> Entry {
    entry(index, LogCommand::SetDataKeys { keys, origin_node: 1 })
}

async fn apply(sm: &mut StateMachineStore, entries: Vec<Entry>) -> std::io::Result<()> {
    sm.apply(futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))))).await
}

/// Applies `entries` to `a` in one batch and to `b` one by one.
async fn apply_both(a: &mut StateMachineStore, b: &mut StateMachineStore, entries: Vec<Entry>) {
    apply(a, entries.clone()).await.expect("one batch");
    for e in entries {
        apply(b, vec![e]).await.expect("one by one");
    }
}

/// The key number a record's value is sealed under as stored (None: stored in clear).
fn sealed_under(sm: &StateMachineStore, record: &str) -> Option<u32> {
    let db = sm.reader().database().upgrade().expect("open");
    let stored = db.get_cf(cf(&db, CF_SM_DATA), keys::text(RECORDS, record)).expect("read").expect("stored");
    sealed_parts(&stored).expect("framed").map(|(id, _)| id)
}

fn text_of(sm: &StateMachineStore, record: &str) -> Option<String> {
    sm.reader().record(record).expect("readable").map(|r| r.value)
}

#[tokio::test]
async fn replicas_seal_alike_whatever_their_batches_and_old_values_stay_readable_after_a_rotation() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_la, mut a) = crate::open(one.path(), masters(1)).expect("open");
    let (_lb, mut b) = crate::open(two.path(), masters(1)).expect("open");
    let first = a.reader().vault().next_keyring(false).expect("a first key");
    // More records than one seal step takes, so sealing what came before takes two steps.
    let mut entries: Vec<Entry> = (1..=600).map(|i| put(i, &format!("old-{i}"), "古い記録")).collect();
    entries.extend([
        put(601, "before", "訪問記録"),
        sealed_version(602),
        keyring(603, first),
        put(604, "after", "処方変更"),
    ]);
    apply_both(&mut a, &mut b, entries).await;
    assert_eq!(sealed_under(&a, "before"), None, "sealed in steps, not at the key");
    assert!(a.reader().sealing().unwrap());
    let mut steps = 0;
    while a.reader().sealing().unwrap() {
        assert!(steps < 10, "sealing ends");
        apply_both(&mut a, &mut b, vec![seal_step(605 + steps)]).await;
        steps += 1;
    }
    assert!(steps > 1 && !b.reader().sealing().unwrap(), "in bounded steps: {steps}");
    assert_eq!(sealed_under(&a, "old-1"), Some(1));
    assert_eq!(a.reader().state_digest().unwrap(), b.reader().state_digest().unwrap());
    for sm in [&a, &b] {
        assert_eq!((sealed_under(sm, "before"), sealed_under(sm, "after")), (Some(1), Some(1)), "sealed, also before");
        assert_eq!(text_of(sm, "before").as_deref(), Some("訪問記録"));
    }

    let rotated = a.reader().vault().next_keyring(true).expect("a rotation");
    apply_both(&mut a, &mut b, vec![keyring(620, rotated), put(621, "rotated", "新しい鍵")]).await;
    assert_eq!(a.reader().state_digest().unwrap(), b.reader().state_digest().unwrap());
    for sm in [&a, &b] {
        assert_eq!((sealed_under(sm, "before"), sealed_under(sm, "rotated")), (Some(1), Some(2)));
        assert_eq!(text_of(sm, "before").as_deref(), Some("訪問記録"), "old values stay readable");
        assert_eq!(text_of(sm, "rotated").as_deref(), Some("新しい鍵"));
    }

    // Reopened, a node takes its keys up from the state.
    drop((a, _la));
    let (_la, a) = crate::open(one.path(), masters(1)).expect("reopen");
    assert_eq!(a.reader().vault().hub_keys(), 2);
    assert_eq!(text_of(&a, "after").as_deref(), Some("処方変更"));
}

#[tokio::test]
async fn keyrings_that_come_early_drop_or_replace_a_key_are_refused_and_a_node_without_the_master_stops() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_la, mut a) = crate::open(one.path(), masters(1)).expect("open");
    let first = a.reader().vault().next_keyring(false).expect("a first key");
    apply(&mut a, vec![keyring(1, first.clone()), put(2, "r", "v")]).await.expect("applied");
    assert_eq!((a.reader().vault().hub_keys(), sealed_under(&a, "r")), (0, None), "refused before every node seals");

    apply(&mut a, vec![sealed_version(3), keyring(4, first.clone())]).await.expect("applied");
    assert!(crate::Vault::plain().next_keyring(false).is_err(), "no master, no key");
    let (_lx, x) = crate::open(two.path(), masters(1)).expect("another store, same master");
    let replaced = x.reader().vault().next_keyring(false).expect("another secret under id 1");
    drop((x, _lx));
    let rotated = a.reader().vault().next_keyring(true).expect("a rotation");
    apply(&mut a, vec![keyring(5, replaced), keyring(6, rotated[..1].to_vec()), keyring(7, Vec::new())])
        .await
        .expect("refusals are results, not faults");
    apply(&mut a, vec![put(8, "r", "v2")]).await.expect("applied");
    assert_eq!((a.reader().vault().hub_keys(), sealed_under(&a, "r")), (1, Some(1)), "the first key stands");

    // A node whose master key is another one cannot take the keyring up: it stops there.
    let three = tempfile::tempdir().unwrap();
    let (_lc, mut c) = crate::open(three.path(), masters(2)).expect("open");
    let error = apply(&mut c, vec![sealed_version(1), keyring(2, first)]).await.expect_err("cannot unwrap");
    assert!(error.to_string().contains("does not hold"), "{error}");
    assert_eq!(c.reader().vault().hub_keys(), 0);
}

#[tokio::test]
async fn posts_indexed_before_the_first_key_are_found_by_their_keyed_terms_once_sealed() {
    use kizuna_domain::model::{AccountId, Post, RoomId};
    use kizuna_domain::{Change, HubView};
    let dir = tempfile::tempdir().unwrap();
    let (_l, mut sm) = crate::open(dir.path(), masters(1)).expect("open");
    let db = sm.reader().database().upgrade().expect("open");
    let reader = sm.reader();
    let post = Post {
        room: RoomId(7),
        seq: 1,
        author: AccountId(1),
        text: "在宅酸素の流量を変更".into(),
        reply_to: None,
        mentions: Vec::new(),
        posted_at_ms: 1,
        history: Vec::new(),
        deleted: false,
        acks: Vec::new(),
    };
    let mut hub = crate::RocksHub::new(&db, reader.vault());
    hub.apply(vec![Change::Post(post)]);
    let mut batch = rocksdb::WriteBatch::default();
    hub.write_into(&mut batch).expect("no fault");
    db.write(batch).expect("written");
    let first = reader.vault().next_keyring(false).expect("a key");
    apply(&mut sm, vec![sealed_version(1), keyring(2, first)]).await.expect("applied");
    let sealing = sm.reader();
    assert!(sealing.sealing().unwrap());
    assert_eq!(
        sealing.hub().posts_with_bigrams(RoomId(7), &["酸素".to_owned()].into()).unwrap(),
        vec![1],
        "found while sealing"
    );
    apply(&mut sm, vec![seal_step(3)]).await.expect("applied");
    let after = sm.reader();
    assert!(!after.sealing().unwrap());
    let view = after.hub();
    assert_eq!(
        view.posts_with_bigrams(RoomId(7), &["酸素".to_owned()].into()).unwrap(),
        vec![1],
        "found by its keyed term"
    );
    let plain_left = crate::state_families::STATE_FAMILIES
        .into_iter()
        .flat_map(|family| db.iterator_cf(cf(&db, family), rocksdb::IteratorMode::Start))
        .filter_map(Result::ok)
        .any(|(k, _)| k.windows("酸素".len()).any(|w| w == "酸素".as_bytes()));
    assert!(!plain_left, "no bigram left in a key of any family");
}
