//! A hub node upgraded in place: it restarts on a data dir written by the JSON-valued storage
//! (`node/store/tests/fixtures/json-v0.tar.gz`), migrates it, serves its state and takes writes.
//! A rolling upgrade: a hub of mixed builds works, and applies the log as the oldest member's
//! build does until the last node runs the new one.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{HubSpec, TestHub, Wire, channel};
use kizuna_domain::{APPLY_VERSION, FIRST_APPLY_VERSION};
use kizuna_node::cli::seed::{DEMO_OPERATOR, DEMO_PASSWORD};
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::{LoginRequest, SetPasswordPolicyRequest};
use kizuna_proto::records::Consistency;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{CreatePatientRequest, ListRoomsRequest, RoomListKind};

fn unpack_fixture(into: &Path) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("store/tests/fixtures/json-v0.tar.gz");
    let file = std::fs::File::open(&archive).expect("the fixture");
    tar::Archive::new(flate2::read::GzDecoder::new(file)).unpack(into).expect("unpack the fixture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_on_a_json_data_dir_serves_it_and_takes_writes() {
    let mut hub = TestHub::start(1).await;
    hub.stop(1).await;
    let data_dir = hub.data_dir(1);
    std::fs::remove_dir_all(&data_dir).expect("clear the fresh data dir");
    unpack_fixture(&data_dir);
    hub.restart(1).await;
    assert_eq!(hub.leader().await, 1, "the one voter of the fixture's membership leads again");

    // The fixture's operator signs in: its account, password hash and sessions were migrated.
    let login = LoginRequest {
        idempotency_key: "upgrade-login".into(),
        login: DEMO_OPERATOR.into(),
        password: DEMO_PASSWORD.into(),
        device: "test".into(),
        ..Default::default()
    };
    let answer =
        AccountServiceClient::new(channel(&hub.api(1)).await).login(login).await.expect("the operator signs in");
    hub.adopt_operator(answer.into_inner().token);

    let greeting = hub.get(1, "greeting", Consistency::Linearizable).await.expect("read");
    assert_eq!((greeting.value.as_str(), greeting.version), ("こんばんは", 3));
    let put = hub.put(1, "greeting", "おやすみ", "upgrade-put").await.expect("a write after the upgrade");
    assert_eq!(put.version, 4);
    let retried =
        hub.put(1, "greeting", "おやすみ", "fixture-put-4").await.expect("a retry of a migrated idempotency key");
    assert_eq!(retried.version, 3, "the remembered result of an idempotency key written as JSON");
    // Its only member runs this build: the hub moves to this build's apply version.
    hub.wait_apply_version(APPLY_VERSION).await;
    // From version 7 a record write is a signed command; a retry of a key written unsigned
    // still finds its first result.
    let retried = hub.put(1, "greeting", "おやすみ", "fixture-put-4").await.expect("a retry after the move");
    assert_eq!((retried.version, retried.duplicate), (3, true));
    let put = hub.put(1, "greeting", "おはよう", "signed-put").await.expect("a signed record write");
    assert_eq!((put.version, put.duplicate), (5, false));
    hub.shutdown().await;
}

/// A new patient of the session `token`'s, created through the leader; its timeline.
async fn new_patient(hub: &TestHub, token: &str, name: &str) -> u64 {
    let mut rooms = RoomServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let req = CreatePatientRequest {
        idempotency_key: format!("patient-{name}"),
        name: name.into(),
        kana: "かんじゃ".into(),
        ..Default::default()
    };
    rooms.create_patient(common::authed(req, token)).await.expect("a patient").into_inner().room_id
}

/// The timelines of the session's patient list, in id order.
async fn patient_timelines(hub: &TestHub, token: &str) -> Vec<u64> {
    let mut rooms = RoomServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let req = ListRoomsRequest { kind: RoomListKind::Patients as i32, ..Default::default() };
    let list = rooms.list_rooms(common::authed(req, token)).await.expect("the list").into_inner().rooms;
    let mut timelines: Vec<u64> = list.iter().map(|r| r.room_id).collect();
    timelines.sort_unstable();
    timelines
}

/// A rolling upgrade of a three-node hub, one node at a time: two nodes stand for the previous
/// build (apply version 1, as every build before apply versions existed), the third already
/// runs this one and leads (its region is preferred), so it is the one that must hold back. The
/// hub takes writes throughout and stays at version 1 while any member is
/// of the previous build; when the last one is replaced, the leader moves the hub to this
/// build's version and every node applies as it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_of_mixed_builds_works_and_moves_on_once_every_node_is_upgraded() {
    let nodes = vec![("region-1", true), ("region-2", true), ("region-3", true)];
    let spec = HubSpec { nodes, preferred_regions: vec!["region-3".into()], wire: Wire::Plain };
    let mut hub = TestHub::start_custom(spec, |config, _| {
        for node in config.nodes.iter_mut().take(2) {
            node.older_build_apply_version = Some(FIRST_APPLY_VERSION);
        }
    })
    .await;
    let old_builds: Vec<u64> = hub.config.nodes.iter().take(2).map(|n| n.id).collect();
    let new_build = hub.config.nodes[2].id;
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.leader().await != new_build {
        assert!(Instant::now() < deadline, "leadership did not move to the preferred region");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut writes = 0;
    let mut write_through_every_node = async |hub: &TestHub| {
        for id in hub.running_ids() {
            writes += 1;
            let put = hub.put(id, "roll", &format!("write {writes}"), &format!("roll-{writes}")).await;
            hub.wait_applied(put.expect("a write during the roll").log_index).await;
        }
    };
    write_through_every_node(&hub).await;
    // A membership written at version 1: its entry in the account's index is empty.
    let doctor = hub.member("dr.roll").await;
    let older = new_patient(&hub, &doctor, "upgrade-before").await;
    // A command of a newer version is refused before it is proposed: an entry the old builds
    // could not decode would stall replication to them (and so every write, without a quorum).
    let operator = hub.operator().await;
    let rule = |key: &str| {
        let req = SetPasswordPolicyRequest { idempotency_key: key.into(), min_chars: 13, min_kinds: 3 };
        common::authed(req, &operator)
    };
    let mut accounts = AccountServiceClient::new(channel(&hub.api(new_build)).await);
    let early = accounts.set_password_policy(rule("rule-early")).await.expect_err("not every node takes it");
    assert_eq!(early.code(), tonic::Code::InvalidArgument, "{early:?}");
    assert!(early.message().contains("apply version"), "{}", early.message());
    write_through_every_node(&hub).await;

    for (i, id) in old_builds.iter().copied().enumerate() {
        // Several keeper ticks (250 ms each here) with a member of the previous build.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for node in hub.running_ids() {
            assert_eq!(hub.status(node).apply_version, FIRST_APPLY_VERSION, "moved on with {} old", 2 - i);
        }
        hub.stop(id).await;
        let upgraded = hub.config.nodes.iter_mut().find(|n| n.id == id).expect("in the topology");
        upgraded.older_build_apply_version = None;
        hub.restart(id).await;
        write_through_every_node(&hub).await;
    }
    hub.wait_apply_version(APPLY_VERSION).await;
    write_through_every_node(&hub).await;
    // From version 8 the entry carries the membership; the list reads both kinds.
    let newer = new_patient(&hub, &doctor, "upgrade-after").await;
    assert_eq!(patient_timelines(&hub, &doctor).await, vec![older, newer]);
    let mut accounts = AccountServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    accounts.set_password_policy(rule("rule-late")).await.expect("every node takes it now");
    hub.shutdown().await;
}
