//! A storage fault during apply on one replica (issue 10): that replica stops applying and says
//! so (health, status, refusals), the rest of the hub goes on, and once the fault is removed
//! and the replica restarted it holds exactly the state of the others.

mod common;

use std::time::{Duration, Instant};

use common::{Bearer, TestHub, channel};
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::{ApproveFacilityRequest, ListSessionsRequest, RegisterFacilityRequest};
use kizuna_proto::admin::{GetClusterStatusRequest, Member, MemberRole};
use kizuna_proto::common::FacilityKind;
use kizuna_proto::records::Consistency;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The key of facility `id` in `sm_data` (table `F`) and its stored bytes.
fn facility(db: &rocksdb::DB, id: u64) -> (Vec<u8>, Vec<u8>) {
    let key = [b"F".as_slice(), &id.to_be_bytes()].concat();
    let value = db.get_cf(db.cf_handle("sm_data").expect("sm_data"), &key).expect("read").expect("stored");
    (key, value)
}

/// Runs `change` on the database of stopped node `id`.
fn with_stopped_db<T>(hub: &TestHub, id: u64, change: impl FnOnce(&rocksdb::DB) -> T) -> T {
    let path = hub.data_dir(id).join("db");
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, kizuna_node::store::COLUMN_FAMILIES)
        .expect("open the stopped node's db");
    change(&db)
}

fn put_raw(db: &rocksdb::DB, key: &[u8], value: &[u8]) {
    db.put_cf(db.cf_handle("sm_data").expect("sm_data"), key, value).expect("write");
}

async fn health(hub: &TestHub, id: u64, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel(&hub.api(id)).await);
    let answer = client.check(HealthCheckRequest { service: service.into() }).await;
    let HealthCheckResponse { status } = answer.expect("health answers").into_inner();
    ServingStatus::try_from(status).expect("a known status")
}

fn applied(hub: &TestHub, id: u64) -> u64 {
    hub.running(id).node.metrics().last_applied.map_or(0, |l| l.index)
}

/// Waits until node `id` has stopped applying the log; returns its applied index then.
async fn stopped_applying(hub: &TestHub, id: u64, others_applied: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.running(id).node.apply_fault().is_none() {
        let applied = applied(hub, id);
        assert!(Instant::now() < deadline, "node {id} goes on applying: {applied} (the others {others_applied})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    applied(hub, id)
}

async fn member_as_seen_by(hub: &TestHub, asked: u64, about: u64) -> Member {
    let status =
        hub.admin(asked).await.get_cluster_status(GetClusterStatusRequest {}).await.expect("status").into_inner();
    status.members.into_iter().find(|m| m.id == about).expect("the member is listed")
}

/// Waits until every running node has applied what the leader has, then until their state
/// digests (applied index, hash, entries) agree.
async fn assert_same_state(hub: &TestHub) {
    let leader = hub.leader().await;
    hub.wait_applied(applied(hub, leader)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let digests: Vec<_> = hub
            .running_ids()
            .into_iter()
            .map(|id| hub.running(id).node.state.state_digest().expect("digest"))
            .collect();
        // Writes in the background (session touches, audit shipping) may move an index
        // between two reads: try again until all were taken at one index.
        if digests.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas differ: {digests:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_cannot_decode_its_state_stops_applying_and_recovers_once_repaired() {
    let mut hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let victim = hub.follower_of(leader);
    let witness = hub.running_ids().into_iter().find(|id| ![leader, victim].contains(id)).expect("a third node");
    let op = hub.operator().await;
    let mut accounts = AccountServiceClient::with_interceptor(channel(&hub.api(leader)).await, Bearer::new(&op));
    let register = RegisterFacilityRequest {
        idempotency_key: "register-clinic".into(),
        name: "在宅クリニック".into(),
        kind: FacilityKind::Clinic as i32,
        municipality: "宇都宮市".into(),
    };
    let clinic = accounts.register_facility(register).await.expect("register").into_inner().facility_id;
    let w = hub.put(leader, "before", "1", "put-before").await.expect("write");
    hub.wait_applied(w.log_index).await;

    // On the stopped victim, the clinic's stored value no longer decodes (a bad disk, an old
    // format). Approving the clinic reads it during apply: today's code took it for "no such
    // facility" and stored a refusal where the other replicas stored the approval.
    hub.stop(victim).await;
    let (key, original) = with_stopped_db(&hub, victim, |db| facility(db, clinic));
    with_stopped_db(&hub, victim, |db| put_raw(db, &key, b"\xff not a facility"));
    hub.restart(victim).await;
    hub.wait_applied(w.log_index).await;
    let approve = ApproveFacilityRequest { idempotency_key: "approve-clinic".into(), facility_id: clinic };
    accounts.approve_facility(approve).await.expect("the hub writes");

    // The other two go on writing and reading.
    let after = hub.put(witness, "after", "2", "put-after").await.expect("the rest of the hub writes");
    for id in [leader, witness] {
        hub.running(id)
            .node
            .raft
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(after.log_index), "healthy replicas apply")
            .await
            .expect("healthy replicas apply");
        let r = hub.get(id, "after", Consistency::Linearizable).await.expect("healthy replicas read");
        assert_eq!(r.value, "2");
    }

    // The victim stops before the approval (which precedes `after`), and stays there.
    let stopped_at = stopped_applying(&hub, victim, after.log_index).await;
    assert!(
        stopped_at < after.log_index,
        "node {victim} applied the approval on a facility it could not read (applied {stopped_at})"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applied(&hub, victim), stopped_at, "node {victim} goes on applying");

    // It says so: health, its own status, the hub's status through another node.
    assert_eq!(health(&hub, victim, "").await, ServingStatus::NotServing);
    assert_eq!(
        health(&hub, victim, kizuna_proto::records::record_service_server::SERVICE_NAME).await,
        ServingStatus::NotServing
    );
    assert_eq!(health(&hub, leader, "").await, ServingStatus::Serving);
    for asked in [victim, leader] {
        let m = member_as_seen_by(&hub, asked, victim).await;
        assert_eq!(m.role(), MemberRole::Failed, "as seen by node {asked}: {m:?}");
        assert!(m.fault.contains("cannot decode"), "as seen by node {asked}: {m:?}");
    }

    // It refuses what needs its state, even a read of its own copy, and writes.
    let local = hub.get(victim, "before", Consistency::Local).await.expect_err("a failed node serves its copy");
    assert_eq!(local.code(), tonic::Code::Unavailable, "{local:?}");
    assert!(local.message().contains("stopped applying"), "{local:?}");
    let mut on_victim = AccountServiceClient::with_interceptor(channel(&hub.api(victim)).await, Bearer::new(&op));
    let sessions = on_victim.list_sessions(ListSessionsRequest::default()).await.expect_err("served");
    assert_eq!(sessions.code(), tonic::Code::Unavailable, "{sessions:?}");
    let write = hub.put(victim, "through-victim", "3", "put-through-victim").await.expect_err("accepted");
    assert_eq!(write.code(), tonic::Code::Unavailable, "{write:?}");

    // The fault removed and the node restarted: it applies what it missed and agrees.
    hub.stop(victim).await;
    with_stopped_db(&hub, victim, |db| put_raw(db, &key, &original));
    hub.restart(victim).await;
    assert_same_state(&hub).await;
    assert!(applied(&hub, victim) >= after.log_index);
    assert_eq!(health(&hub, victim, "").await, ServingStatus::Serving);
    hub.shutdown().await;
}
