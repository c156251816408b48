//! A hub node upgraded in place: it restarts on a data dir written by the JSON-valued storage
//! (`node/store/tests/fixtures/json-v0.tar.gz`), migrates it, serves its state and takes writes.

mod common;

use std::path::Path;

use common::{TestHub, channel};
use kizuna_node::cli::seed::{DEMO_OPERATOR, DEMO_PASSWORD};
use kizuna_proto::accounts::LoginRequest;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::records::Consistency;

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
    let retried = hub.put(1, "greeting", "おやすみ", "fixture-put-4").await.expect("a retry of a migrated request id");
    assert_eq!(retried.version, 3, "the remembered result of a request id written as JSON");
    hub.shutdown().await;
}
