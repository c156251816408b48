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
        let port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
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
