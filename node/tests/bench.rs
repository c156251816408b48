//! `kizuna bench` against a 3-node in-process hub: posts through the real API from clients on
//! every node, with live subscribers on every node; its JSON says how many posts committed, their
//! latency percentiles, that every subscriber got every post (fan-out), and the read latencies
//! of a patient list and timelines.

mod common;

use common::TestHub;

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_posts_on_every_node_and_measures_the_fan_out_to_every_subscriber() {
    let hub = TestHub::start(3).await;
    let nurse = hub.member("nurse").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("session.json");
    std::fs::write(&session, serde_json::json!({ "login": "nurse", "token": nurse }).to_string()).expect("session");
    let endpoints = hub.running_ids().into_iter().map(|id| hub.api(id)).collect::<Vec<_>>().join(",");
    let out = tokio::process::Command::new(KIZUNA)
        .env("KIZUNA_SESSION_FILE", &session)
        .env_remove("KIZUNA_CA")
        .args(["--endpoint", &endpoints, "bench", "--clients", "4", "--seconds", "2", "--subscribers", "3"])
        .args(["--patients", "20", "--readers", "1,2", "--read-seconds", "1", "--json"])
        .output()
        .await
        .expect("run kizuna bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON report");
    let posts = report["posts"].as_u64().expect("posts");
    assert!(posts > 10, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["endpoints"].as_array().map(Vec::len), Some(3), "clients on every node: {report}");
    assert_eq!(report["post_latency"]["count"].as_u64(), Some(posts));
    let p = &report["post_latency"];
    let ordered = ["p50", "p90", "p99", "p999", "max"].map(|q| p[q].as_f64().expect("a percentile"));
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]) && ordered[0] > 0.0, "{p}");
    assert_eq!(
        report["fanout_latency"]["count"].as_u64(),
        Some(posts * 3),
        "every subscriber got every post: {report}"
    );
    let reads = &report["reads"];
    assert_eq!(reads["patients"].as_u64(), Some(20), "{reads}");
    let runs = reads["runs"].as_array().expect("one run per number of readers");
    assert_eq!(runs.iter().map(|r| r["readers"].as_u64()).collect::<Vec<_>>(), [Some(1), Some(2)], "{reads}");
    for run in runs {
        assert!(
            run["patient_list"]["count"].as_u64() > Some(0) && run["timeline"]["count"].as_u64() > Some(0),
            "{run}"
        );
    }
    hub.shutdown().await;
}

/// Beyond one account's 16 streams on a node, the bench registers staff of the signed-in
/// facility admin's station and subscribes as them too: 40 subscribers on one node (the
/// admin's 16, then two new accounts' 24), all in the one bench room, each get every post.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_registers_accounts_for_more_subscribers_than_one_account_may_hold() {
    let hub = TestHub::start(3).await;
    let admin = hub.facility_admin("station-admin").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("session.json");
    std::fs::write(&session, serde_json::json!({ "login": "station-admin", "token": admin }).to_string())
        .expect("session");
    let node = hub.api(hub.leader().await);
    let bench = || {
        let mut command = tokio::process::Command::new(KIZUNA);
        command.env("KIZUNA_SESSION_FILE", &session).env_remove("KIZUNA_CA").args(["--endpoint", &node]);
        command.args(["bench", "--clients", "2", "--seconds", "2", "--rooms", "1", "--subscribers", "40", "--json"]);
        command
    };
    let out = bench().output().await.expect("run kizuna bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON report");
    let posts = report["posts"].as_u64().expect("posts");
    assert!(posts > 0 && report["errors"] == 0, "{report}");
    assert_eq!(
        report["fanout_latency"]["count"].as_u64(),
        Some(posts * 40),
        "every subscriber got every post: {report}"
    );

    // Signed in as an ordinary member, the bench says what it needs instead.
    let nurse = hub.member("nurse").await;
    std::fs::write(&session, serde_json::json!({ "login": "nurse", "token": nurse }).to_string()).expect("session");
    let out = bench().output().await.expect("run kizuna bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("sign in as a facility admin"), "{stderr}");
    hub.shutdown().await;
}

/// A real single-member etcd (Debian's etcd-server, `make setup-etcd`) on loopback ports of its
/// own, in a temp dir, killed when dropped.
struct Etcd {
    child: std::process::Child,
    client: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = || kizuna_chaos::ports::reserve_node_addr().expect("a free port").1;
        let (client, peer) = (port(), port());
        let child = std::process::Command::new("etcd")
            .args(["--name", "bench-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://{client}"), "--advertise-client-urls"])
            .arg(format!("http://{client}"))
            .args(["--listen-peer-urls", &format!("http://{peer}"), "--initial-advertise-peer-urls"])
            .arg(format!("http://{peer}"))
            .args(["--initial-cluster", &format!("bench-test=http://{peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd: {e}. Run `make setup-etcd` (Debian's etcd-server package)."));
        Self { child, client: client.to_string(), _dir: dir }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kizuna load --etcd` (the side-by-side's etcd half) against a real etcd: every put it counts
/// is committed — etcd's revision grows by exactly one per put, the dry run's included — with
/// values of the size asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_load_counts_only_committed_puts() {
    let etcd = Etcd::start();
    let endpoints = [etcd.client.clone()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while kizuna_node::cli::etcd::leader(&endpoints).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "etcd never elected itself");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = tokio::process::Command::new(KIZUNA)
        .args(["load", "--etcd", &etcd.client, "--clients", "4", "--seconds", "2", "--value-bytes", "64", "--json"])
        .output()
        .await
        .expect("run kizuna load --etcd");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON report");
    assert_eq!((report["store"].as_str(), report["errors"].as_u64()), (Some("etcd"), Some(0)), "{report}");
    let puts = report["operations"].as_u64().expect("operations");
    assert!(puts > 10 && report["latency"]["count"].as_u64() == Some(puts), "{report}");
    let (_, channel) = kizuna_node::cli::etcd::leader(&endpoints).await.expect("the leader");
    let after = kizuna_node::cli::etcd::put(channel, b"after".to_vec(), vec![b'x'; 64]).await.expect("a put");
    // Revision 1 is the empty store; then the dry run, the counted puts and this one.
    assert_eq!(after.header.map(|h| h.revision), Some(puts as i64 + 3), "{report}");
}

/// `kizuna generate` at a tiny scale against an in-process hub, then again with its state cut
/// back as if it had stopped half-way: it resumes there, and what it sends again is answered by
/// its idempotency keys, not repeated — every patient's timeline holds the same posts after the
/// second run as after the first. An author whose session ended signs in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_builds_a_scaled_hub_and_resumes_without_repeating_anything() {
    use kizuna_node::cli::generate::Staff;
    use kizuna_proto::accounts::account_service_client::AccountServiceClient;
    use kizuna_proto::accounts::{LoginRequest, LogoutRequest};
    use kizuna_proto::posts::CreatePostRequest;
    use kizuna_proto::posts::post_service_client::PostServiceClient;

    let hub = TestHub::start(3).await;
    let operator = hub.operator().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("session.json");
    std::fs::write(&session, serde_json::json!({ "login": "test-operator", "token": operator }).to_string())
        .expect("session");
    let state = dir.path().join("state.json");
    let endpoints = hub.running_ids().into_iter().map(|id| hub.api(id)).collect::<Vec<_>>().join(",");
    let generate = || async {
        let out = tokio::process::Command::new(KIZUNA)
            .env("KIZUNA_SESSION_FILE", &session)
            .env_remove("KIZUNA_CA")
            .args(["--endpoint", &endpoints, "generate", "--scale", "0.00004", "--workers", "8", "--state"])
            .arg(&state)
            .output()
            .await
            .expect("run kizuna generate");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
        saved
    };
    let first = generate().await;
    let built = |s: &serde_json::Value, list: &str| s[list].as_array().map(Vec::len);
    assert_eq!(
        (built(&first, "facilities"), built(&first, "professionals"), built(&first, "patients")),
        (Some(4), Some(4), Some(2)),
        "{first}"
    );
    assert_eq!(first["posts"], 400);

    // A team member reads every patient's timeline.
    let api = hub.api(hub.leader().await);
    let login = LoginRequest {
        idempotency_key: "generated-doctor".into(),
        login: format!("g{}.0", first["run"].as_str().expect("run")),
        password: "kizuna-generated-2026".into(),
        device: "test".into(),
        ..Default::default()
    };
    let channel = common::channel(&api).await;
    let doctor = AccountServiceClient::new(channel.clone()).login(login).await.expect("a generated login").into_inner();
    let rooms: Vec<u64> = first["patients"].as_array().expect("rooms").iter().filter_map(|r| r.as_u64()).collect();
    let texts = || async {
        let mut all = Vec::new();
        for room in &rooms {
            all.push(common::timeline_texts(channel.clone(), &doctor.token, *room).await);
        }
        all
    };
    let before = texts().await;
    assert!(before.iter().all(|t| t.len() >= 200), "each timeline holds its 200 posts");

    // Stopped half-way: the second patient and every post are not in the state.
    let mut cut = first.clone();
    cut["patients"].as_array_mut().expect("patients").truncate(1);
    cut["posts"] = serde_json::json!(0);
    std::fs::write(&state, cut.to_string()).expect("the cut state");
    let second = generate().await;
    assert_eq!(second["patients"], first["patients"], "the same patients, not new ones");
    assert_eq!(texts().await, before, "nothing posted twice");

    // An author whose session the hub ended mid-run (its idle timeout, a revocation) signs in
    // again and her post goes once: generate's every post and patient go through `Staff`.
    let staff = Staff::new(vec![channel.clone()], first["run"].as_str().expect("run"));
    let ended = staff.token(0).await.expect("the doctor signed in");
    let logout = LogoutRequest { idempotency_key: "generated-doctor-out".into() };
    AccountServiceClient::new(channel.clone()).logout(common::authed(logout, &ended)).await.expect("her session ended");
    let post_into = |room: u64| {
        let channel = channel.clone();
        move |token: String| {
            let req = CreatePostRequest {
                idempotency_key: format!("after-her-session-ended-{room}"),
                room_id: room,
                text: "再ログイン後の記録".into(),
                ..Default::default()
            };
            let mut posts = PostServiceClient::new(channel.clone());
            async move { Ok(posts.create_post(common::authed(req, &token)).await?.into_inner().seq) }
        }
    };
    staff.signed_in(0, post_into(rooms[0])).await.expect("posted once signed in again");
    assert_eq!(staff.sign_ins(), 2, "signed in again once");
    let timeline = common::timeline_texts(channel.clone(), &doctor.token, rooms[0]).await;
    assert_eq!(timeline.len(), before[0].len() + 1, "the post went once");
    // Any other refusal is the caller's to handle: no new sign-in for it.
    let refused = staff.signed_in(0, post_into(u64::MAX)).await.expect_err("no such room");
    assert_ne!(refused.downcast_ref::<tonic::Status>().map(|s| s.code()), Some(tonic::Code::Unauthenticated));
    assert_eq!(staff.sign_ins(), 2, "{refused}");
    hub.shutdown().await;
}
