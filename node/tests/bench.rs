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
        .args(["--patients", "20", "--read-seconds", "1", "--json"])
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
    hub.shutdown().await;
}
