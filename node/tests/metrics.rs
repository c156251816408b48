//! The nodes' Prometheus metrics: a 3-node in-process hub serves `GET /metrics` on each node's
//! metrics address; the text names Raft's state, the gRPC calls by method and code (real
//! histograms), proposals, RocksDB and the process. Then a real Prometheus server (Debian's
//! package, installed by `ops/scripts/setup-prometheus.sh`, which `make test` runs) scrapes
//! the hub, and its HTTP API answers queries over what it scraped.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestHub, authed, channel, patient_room};
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, TimelineRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET on 127.0.0.1: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    match head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        true => (status, dechunked(body)),
        false => (status, body.to_owned()),
    }
}

/// The body of a chunked HTTP/1.1 answer, joined.
fn dechunked(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the first sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (name_labels, value) = line.rsplit_once(' ')?;
        let name = name_labels.split('{').next()?;
        (name == metric && labels.iter().all(|l| name_labels.contains(l))).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_serves_its_metrics_and_a_real_prometheus_scrapes_them() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let doctor = hub.member("dr.mori").await;
    let api = channel(&hub.api(leader)).await;
    let room = patient_room(api.clone(), &doctor, &[]).await;
    let mut posts = PostServiceClient::new(api);
    for i in 0..3 {
        let post = CreatePostRequest {
            idempotency_key: format!("m{i}"),
            room_id: room,
            text: "往診しました".into(),
            ..Default::default()
        };
        posts.create_post(authed(post, &doctor)).await.expect("post");
    }
    let missing = TimelineRequest { room_id: 999_999, page_size: 10, ..Default::default() };
    assert!(posts.timeline(authed(missing, &doctor)).await.is_err(), "a room nobody has");

    let (status, text) = http_get(hub.metrics_addr(leader), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let me = format!("node=\"{leader}\"");
    assert_eq!(sample(&text, "kizuna_raft_is_leader", &[&me]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "kizuna_raft_has_leader", &[&me]), Some(1.0));
    assert!(sample(&text, "kizuna_raft_term", &[&me]).is_some_and(|t| t >= 1.0));
    let posted = ["grpc_service=\"kizuna.posts.v1.PostService\"", "grpc_method=\"CreatePost\"", "grpc_code=\"OK\""];
    assert!(sample(&text, "grpc_server_handled_total", &posted).is_some_and(|n| n >= 3.0), "{text}");
    let not_found = ["grpc_method=\"Timeline\"", "grpc_code=\"NotFound\""];
    let grpc: Vec<&str> = text.lines().filter(|l| l.starts_with("grpc_server_handled")).collect();
    assert_eq!(sample(&text, "grpc_server_handled_total", &not_found), Some(1.0), "{grpc:#?}");
    assert!(text.contains("grpc_server_handling_seconds_bucket{"), "a real histogram, with buckets");
    // Looked up once each (by the state machine, by each replication stream): they record.
    assert!(text.contains("kizuna_raft_apply_seconds_bucket{"), "{text}");
    assert!(text.contains("kizuna_raft_rpc_seconds_bucket{") && text.contains("rpc=\"append_entries\""), "{text}");
    assert!(sample(&text, "kizuna_raft_proposals_total", &[&me, "result=\"committed\""]).is_some_and(|n| n >= 3.0));
    assert!(sample(&text, "kizuna_raft_replication_lag_entries", &[&me]).is_some(), "the leader sees its followers");
    assert!(sample(&text, "kizuna_rocksdb_sst_bytes", &[&me, "cf=\"sm_data\""]).is_some(), "{text}");
    assert!(sample(&text, "kizuna_process_resident_memory_bytes", &[&me]).is_some_and(|b| b > 1e6));
    assert!(sample(&text, "kizuna_data_dir_free_bytes", &[&me]).is_some_and(|b| b > 0.0));
    assert_eq!(sample(&text, "kizuna_audit_journal_backlog", &[&me]).map(|b| b >= 0.0), Some(true));
    let follower = hub.follower_of(leader);
    let (_, theirs) = http_get(hub.metrics_addr(follower), "/metrics").await;
    assert_eq!(sample(&theirs, "kizuna_raft_is_leader", &[&format!("node=\"{follower}\"")]), Some(0.0));
    assert_eq!(http_get(hub.metrics_addr(leader), "/nothing").await.0, 404);

    let mut all = String::new();
    for id in hub.running_ids() {
        all.push_str(&http_get(hub.metrics_addr(id), "/metrics").await.1);
    }
    for name in names_in_ops() {
        assert!(all.contains(&name), "{name} is used by ops/ but no node serves it");
    }

    let prometheus = Prometheus::start(&hub);
    prometheus.until_equal("count(kizuna_raft_is_leader)", 3.0).await;
    let leaders = prometheus.until_value("sum(kizuna_raft_is_leader)").await;
    assert_eq!(leaders, 1.0, "exactly one leader, as Prometheus sees the hub");
    let posted = prometheus.until_value("sum(grpc_server_handled_total{grpc_method=\"CreatePost\"})").await;
    assert!(posted >= 3.0, "{posted}");
    for expr in dashboard_queries() {
        prometheus.answers(&expr).await;
    }
    hub.shutdown().await;
}

/// Metrics the in-process test hub cannot have: it runs neither TLS nor federation peers (the
/// TLS and federation tests cover what fills them).
const NOT_HERE: &[&str] = &["kizuna_tls_certificate_expiry_timestamp_seconds", "kizuna_federation_outbox_messages"];

/// Every metric name the alert rules and the dashboard in `ops/` use (`kizuna_…`,
/// `grpc_server_…`), so a renamed metric fails here rather than silently in production.
fn names_in_ops() -> Vec<String> {
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    let mut names = Vec::new();
    for file in ["prometheus/alerts.yml", "grafana/kizuna-hub.json"] {
        let text = std::fs::read_to_string(ops.join(file)).expect("ops file");
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let ours = word.starts_with("kizuna_") || word.starts_with("grpc_server_");
            if ours && !NOT_HERE.contains(&word) && !names.iter().any(|n| n == word) {
                names.push(word.to_owned());
            }
        }
    }
    assert!(names.len() > 10, "{names:?}");
    names
}

/// The queries of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana/kizuna-hub.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let targets = panels.iter().flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default());
    targets.map(|t| t["expr"].as_str().expect("an expression").to_owned()).collect()
}

/// A Prometheus server scraping every node of `hub` each second, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(hub: &TestHub) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = hub.running_ids().iter().map(|id| format!("'{}'", hub.metrics_addr(*id))).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kizuna\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        let addr = kizuna_chaos::ports::reserve_node_addr().expect("a free port").1;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting prometheus: {e}. Run `make setup-prometheus` (Debian's prometheus package).")
            });
        Self { child, addr, _dir: dir }
    }

    /// The value of `query` once Prometheus has scraped enough to answer it.
    async fn until_value(&self, query: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let path = format!("/api/v1/query?query={}", encode(query));
        loop {
            let answer = match tokio::net::TcpStream::connect(self.addr).await {
                Ok(_) => http_get(self.addr, &path).await.1,
                Err(_) => String::new(),
            };
            if let Some(value) = first_value(&answer) {
                return value;
            }
            assert!(Instant::now() < deadline, "Prometheus never answered {query}: {answer}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Waits until `query` has the value `expected` (e.g. every node scraped once).
    async fn until_equal(&self, query: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.until_value(query).await;
            if value == expected {
                return;
            }
            assert!(Instant::now() < deadline, "{query} stayed at {value}, not {expected}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Prometheus evaluates `query` without an error (a dashboard panel that can show data).
    async fn answers(&self, query: &str) {
        let (_, answer) = http_get(self.addr, &format!("/api/v1/query?query={}", encode(query))).await;
        let json: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        assert_eq!(json["status"], "success", "{query}: {answer}");
    }
}

/// The first sample's value of an instant-query answer (`"value":[<time>,"<value>"]`).
fn first_value(answer: &str) -> Option<f64> {
    let json: serde_json::Value = serde_json::from_str(answer).ok()?;
    let value = json.pointer("/data/result/0/value/1")?.as_str()?;
    value.parse().ok()
}

/// Percent-encodes a query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
