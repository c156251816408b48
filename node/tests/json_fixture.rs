//! Writes the fixture `node/store/tests/fixtures/json-v0.tar.gz`: a data dir of a one-node hub
//! as the JSON-valued storage (up to 352cf65) wrote it. Kept only in the history of the codec
//! change: run it on that code, never on code that writes the compact format.
//!
//! `FIXTURE_OUT=/tmp/json-v0 cargo test --workspace --test json_fixture -- --ignored`

mod common;

use common::{TestHub, channel};
use kizuna_node::cli::seed::{self, DEMO_OPERATOR, DEMO_PASSWORD};
use kizuna_proto::admin::SnapshotRequest;
use kizuna_proto::collab::LoginRequest;
use kizuna_proto::collab::accounts_client::AccountsClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes the JSON fixture; run by hand on the pre-codec code only"]
async fn write_the_json_fixture() {
    let out = std::path::PathBuf::from(std::env::var("FIXTURE_OUT").expect("FIXTURE_OUT"));
    let mut hub = TestHub::start(1).await;
    let leader = hub.leader().await;
    assert!(seed::seed(channel(&hub.api(leader)).await).await.expect("seed"));
    let login = LoginRequest {
        request_id: "fixture-login".into(),
        login: DEMO_OPERATOR.into(),
        password: DEMO_PASSWORD.into(),
        device: "fixture".into(),
        ..Default::default()
    };
    let token =
        AccountsClient::new(channel(&hub.api(leader)).await).login(login).await.expect("login").into_inner().token;
    hub.adopt_operator(token);
    hub.put(leader, "greeting", "こんにちは", "fixture-put-1").await.expect("put");
    hub.put(leader, "greeting", "おはよう", "fixture-put-2").await.expect("put");
    let snap = hub.admin(leader).await.snapshot(SnapshotRequest { purge_log: true }).await.expect("snapshot");
    eprintln!("snapshot: {:?}", snap.into_inner());
    // Entries after the snapshot stay in the log, as JSON.
    hub.put(leader, "after-snapshot", "スナップショットの後", "fixture-put-3").await.expect("put");
    hub.put(leader, "greeting", "こんばんは", "fixture-put-4").await.expect("put");
    let dir = hub.data_dir(leader);
    hub.stop(leader).await;
    copy(&dir, &out);
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
