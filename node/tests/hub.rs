//! A three-node hub in-process over real gRPC and RocksDB: replication, forwarding, failover,
//! catch-up after restart, catch-up by snapshot, idempotent retries, malformed input.

mod common;

use std::time::{Duration, Instant};

use common::TestHub;
use kizuna_node::member::NodeRole;
use kizuna_proto::admin::{AddLearnerRequest, CreateSnapshotRequest, GetClusterStatusRequest, MemberRole};
use kizuna_proto::records::{Consistency, GetRecordRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_replicate_forward_and_survive_leader_loss_and_restart() {
    let mut hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);

    // A write on the leader and one on a follower (forwarded to the leader).
    let a = hub.put(leader, "greeting", "こんにちは", "req-a").await.expect("put on leader");
    assert_eq!(a.version, 1);
    let b = hub.put(follower, "greeting", "おはよう", "req-b").await.expect("put on follower is forwarded");
    assert_eq!(b.version, 2);
    assert!(b.log_index > a.log_index);

    // Every node answers a linearizable read with the latest value.
    for id in hub.running_ids() {
        let r = hub.get(id, "greeting", Consistency::Linearizable).await.expect("linearizable read");
        assert_eq!((r.value.as_str(), r.version, r.node_id), ("おはよう", 2, id));
    }

    // The whole hub is visible from any node.
    let status = hub.admin(follower).await.get_cluster_status(GetClusterStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.reachable));
    assert_eq!(status.members.iter().filter(|m| m.role() == MemberRole::Leader).count(), 1);

    // Stop the leader: a new one is elected and writes continue.
    let stopped_at = Instant::now();
    hub.stop(leader).await;
    let new_leader = hub.leader().await;
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} after {:?}", stopped_at.elapsed());
    let survivor = hub.follower_of(new_leader);
    // Clients retry (same idempotency key) through the short window while the new leader settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        match hub.put(survivor, "greeting", "こんばんは", "req-c").await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("write after failover refused, retrying: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("writes did not resume after failover: {e:?}"),
        }
    };
    assert_eq!(c.version, 3);

    // Restart the old leader from its data dir: it catches up with what it missed.
    hub.restart(leader).await;
    hub.wait_applied(c.log_index).await;
    let r = hub.get(leader, "greeting", Consistency::Local).await.expect("local read on restarted node");
    assert_eq!((r.value.as_str(), r.version), ("こんばんは", 3));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_idempotency_key_applies_once() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let first = hub.put(leader, "k", "v1", "same-id").await.unwrap();
    // A retry (through another node, with a different body even) returns the first result.
    let retry = hub.put(follower, "k", "v2", "same-id").await.unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.version, retry.log_index), (first.version, first.log_index));
    let r = hub.get(leader, "k", Consistency::Linearizable).await.unwrap();
    assert_eq!((r.value.as_str(), r.version), ("v1", 1));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_are_invalid_argument_and_change_nothing() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let ok = hub.put(leader, "k", "v", "ok-1").await.unwrap();
    // Metrics trail the write's answer slightly: wait until they show it before sampling.
    hub.wait_applied(ok.log_index).await;
    let applied_before = hub.status(leader).applied_index;

    let too_long = "x".repeat(64 * 1024 + 1);
    let cases = [
        ("", "v", "r1", "empty key"),
        ("bad\u{0}key", "v", "r2", "control character in key"),
        ("k", too_long.as_str(), "r3", "oversized value"),
        ("k", "v", "", "empty idempotency key"),
    ];
    for node in [leader, follower] {
        for (key, value, rid, what) in cases {
            let err = hub.put(node, key, value, rid).await.expect_err(what);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what} on node {node}: {err:?}");
        }
    }
    let mut client = hub.records(follower).await;
    let err =
        client.get_record(GetRecordRequest { key: "k".into(), consistency: 99 }).await.expect_err("bad consistency");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = hub.get(follower, "never-written", Consistency::Linearizable).await.expect_err("missing key");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = hub
        .admin(leader)
        .await
        .add_learner(AddLearnerRequest { node: None, wait_caught_up: false })
        .await
        .expect_err("learner without node");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Nothing reached the log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.status(leader).applied_index, applied_before);
    let r = hub.get(leader, "k", Consistency::Linearizable).await.unwrap();
    assert_eq!((r.value.as_str(), r.version), ("v", 1));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_learner_catches_up_by_a_snapshot_larger_than_4_mib() {
    let mut hub = TestHub::start(3).await;
    let leader = hub.leader().await;

    // ~6 MiB of state, past gRPC's default 4 MiB message limit also once compressed: kanji
    // that do not repeat (the snapshot file is compressed).
    let values: Vec<String> = (0..100).map(|i| unrepeated_kanji(i, 20 * 1024)).collect(); // 60 KiB of UTF-8 each
    let mut last = 0;
    for (i, value) in values.iter().enumerate() {
        last = hub.put(leader, &format!("big/{i}"), value, &format!("big-{i}")).await.unwrap().log_index;
    }

    // Snapshot and purge the leader's log: a newcomer can only catch up by snapshot.
    let snap =
        hub.admin(leader).await.create_snapshot(CreateSnapshotRequest { purge_log: true }).await.unwrap().into_inner();
    assert!(snap.snapshot_index >= last, "{snap:?}");
    assert!(snap.purged_index.is_some_and(|p| p >= last), "{snap:?}");
    let learner = hub.start_new_node(4).await;
    let spec = common::node_spec(&learner);
    hub.admin(leader)
        .await
        .add_learner(AddLearnerRequest { node: Some(spec), wait_caught_up: true })
        .await
        .expect("add learner");
    hub.wait_applied(last).await;

    let status = hub.status(4);
    assert_eq!(status.role, NodeRole::Learner);
    assert!(status.snapshots_installed >= 1, "the learner caught up without a snapshot: {status:?}");
    // What was sent: the file written from the leader's checkpoint, kept beside it.
    let snapshots = hub.data_dir(leader).join("snapshots");
    let checkpoint = std::fs::read_link(snapshots.join("current.ckpt")).expect("the leader's checkpoint");
    let sent = snapshots.join(checkpoint).with_extension("snap");
    let size = std::fs::metadata(&sent).expect("the file sent").len();
    assert!(size > 4 * 1024 * 1024, "snapshot is only {size} bytes");
    for i in [0, 57, 99] {
        let r = hub.get(4, &format!("big/{i}"), Consistency::Local).await.expect("learner has the data");
        assert_eq!(r.value, values[i]);
    }
    // The learner also serves linearizable reads (through the leader's read index).
    let r = hub.get(4, "big/1", Consistency::Linearizable).await.expect("linearizable read on learner");
    assert_eq!(r.version, 1);
    hub.shutdown().await;
}

/// A snapshot asked for when one of the state as applied is there already is that one: no
/// second build runs on after the answer to replace it under whoever reads it next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_asked_for_again_with_nothing_applied_is_the_same_one() {
    let hub = TestHub::start(1).await;
    let leader = hub.leader().await;
    hub.put(leader, "k", "v", "r-1").await.expect("a write");
    let mut admin = hub.admin(leader).await;
    let mut ask = async || admin.create_snapshot(CreateSnapshotRequest { purge_log: true }).await;
    let first = ask().await.expect("first snapshot").into_inner();
    let snapshots = hub.data_dir(leader).join("snapshots");
    let built = std::fs::read_link(snapshots.join("current.ckpt")).expect("the checkpoint");
    let again = ask().await.expect("second snapshot").into_inner();
    assert_eq!(again.snapshot_index, first.snapshot_index);
    // A build started by the second call would end within this on a state this small.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = std::fs::read_link(snapshots.join("current.ckpt")).expect("the checkpoint");
    assert_eq!(now, built, "a second checkpoint of the same state replaced the first");
    hub.shutdown().await;
}

/// `len` kanji from a xorshift sequence seeded by `seed`: text no compressor shrinks much.
fn unrepeated_kanji(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_u32(0x4E00 + (x % 0x5000) as u32).unwrap_or('記')
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_single_node_keeps_its_data_and_vote() {
    let mut hub = TestHub::start(1).await;
    let leader = hub.leader().await;
    let w = hub.put(leader, "k", "persisted", "r-1").await.unwrap();
    let vote_before = hub.running(leader).node.metrics().vote;
    hub.stop(leader).await;

    // The vote is on disk, exactly as it was.
    {
        use openraft::RaftLogReader;
        let masters = hub.config.master_keys().expect("the test master key");
        let (mut log, _sm) = kizuna_node::store::open(&hub.data_dir(leader), masters).expect("reopen store");
        let vote = log.read_vote().await.expect("read vote");
        assert_eq!(vote, Some(vote_before));
    }

    hub.restart(leader).await;
    hub.leader().await;
    let r = hub.get(leader, "k", Consistency::Linearizable).await.expect("read after restart");
    assert_eq!((r.value.as_str(), r.version), ("persisted", 1));
    assert!(r.applied_index >= w.log_index);
    let term_after = hub.status(leader).term;
    assert!(term_after >= vote_before.leader_id().term, "term went backwards");
    hub.shutdown().await;
}
