//! The short chaos runs of the test suite, on real `kizuna` processes under a load of posts,
//! timeline reads and live-event subscriptions. Any lost, duplicated, reordered or divergent
//! post, non-linearizable read, missed or repeated event, or state digest mismatch fails them;
//! so does a safety check a node accepted (also as pending, cut off from the quorum) that is not
//! applied exactly once on every node.

use kizuna_chaos::cluster::RaftTimers;
use kizuna_chaos::faults::Scenario::*;
use kizuna_chaos::run::{Plan, Topology, run, table};
use kizuna_chaos::workload::ANSWER_TIMEOUT;

async fn chaos(plan: Plan) -> kizuna_chaos::run::Report {
    let report = run(plan).await.expect("chaos run");
    eprintln!("{}", table(&report));
    assert!(report.faults.len() >= 2, "too few faults injected: {:?}", report.faults);
    assert!(report.findings.posts_acknowledged > 20, "too little load: {:?}", report.findings);
    assert!(report.findings.reads_linearizable > 20, "too few reads checked: {:?}", report.findings);
    assert!(report.findings.subscriber_events > 0, "subscribers saw nothing: {:?}", report.findings);
    let checks = report.findings.checks_applied + report.findings.checks_pending;
    assert!(checks > 10, "too few safety checks recorded: {:?}", report.findings);
    assert_eq!(report.violations, 0, "{}", table(&report));
    report
}

/// Process and link faults picked at random on the three-region hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_run_on_three_regions_loses_nothing() {
    let scenarios = vec![Mix];
    chaos(Plan {
        seed: 7,
        seconds: 30,
        clients: 4,
        rooms: 4,
        scenarios,
        topology: Topology::ThreeRegion,
        wan: true,
        answer_timeout_ms: ANSWER_TIMEOUT.as_millis() as u64,
        rtt_ms: None,
        raft: RaftTimers::default(),
    })
    .await;
}

/// Apply writes the state without its write-ahead log: a node killed (`kill -9`) between two
/// flushes loses what it applied since, and its start re-applies it from its log. The killed
/// leaders must come back equal to the others (the digests), with nothing lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_reapplies_what_its_state_lost_and_ends_equal() {
    let report = chaos(Plan {
        seed: 5,
        seconds: 20,
        clients: 4,
        rooms: 2,
        scenarios: vec![LeaderKill],
        topology: Topology::ThreeRegion,
        wan: false,
        answer_timeout_ms: ANSWER_TIMEOUT.as_millis() as u64,
        rtt_ms: None,
        raft: RaftTimers::default(),
    })
    .await;
    let starts = report.findings.starts_reapplying;
    assert!(starts > 0, "no killed node re-applied anything at its start: {:?}", report.findings);
}

/// The operations and region faults a prefecture's hub lives through, on the Tochigi shape
/// (four voters, a learner): membership change and rolling restart under load, a majority /
/// minority partition, a one-way cut, a region blackout and flapping links.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_and_region_faults_on_tochigi_lose_nothing() {
    let scenarios = vec![Membership, Partition, RollingRestart, OneWay, Blackout, Flapping];
    let report = chaos(Plan {
        seed: 11,
        seconds: 45,
        clients: 4,
        rooms: 4,
        scenarios,
        topology: Topology::Tochigi,
        wan: true,
        answer_timeout_ms: ANSWER_TIMEOUT.as_millis() as u64,
        rtt_ms: None,
        raft: RaftTimers::default(),
    })
    .await;
    // The partition and the blackout cut nodes off: records made there wait for the hub.
    assert!(report.findings.checks_pending > 0, "no record was accepted as pending: {:?}", report.findings);
}

/// `kizuna-chaos --serve-session` (what `ops/scripts/bench-wan.sh` drives): the run's hub, set
/// up, its links between regions delayed and no faults, handed to `kizuna bench` by a session
/// file and the endpoints it prints; it stops its nodes once the session file is removed. A
/// post waits for a second region, so with a 20 ms round trip none is acknowledged sooner.
#[test]
fn the_serve_mode_hands_a_hub_with_slow_links_to_kizuna_bench_and_stops_when_told() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("session.json");
    let mut harness = Command::new(env!("CARGO_BIN_EXE_kizuna-chaos"))
        .args(["--rtt-ms", "20", "--seconds", "300", "--serve-session"])
        .arg(&session)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the harness");
    let stdout = harness.stdout.take().expect("its stdout");
    let endpoints = std::io::BufReader::new(stdout).lines().next().expect("endpoints printed").expect("a line");
    let bench = Command::new(kizuna_chaos::cluster::kizuna_bin().expect("the kizuna binary"))
        .env("KIZUNA_SESSION_FILE", &session)
        .args(["--endpoint", &endpoints, "bench", "--clients", "2", "--seconds", "2", "--json"])
        .output()
        .expect("run kizuna bench");
    let stdout = String::from_utf8_lossy(&bench.stdout);
    assert!(bench.status.success(), "{stdout}{}", String::from_utf8_lossy(&bench.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON report");
    assert!(report["posts"].as_u64() > Some(0) && report["errors"] == 0, "{report}");
    let fastest = report["post_latency"]["p50"].as_f64().expect("p50");
    assert!(fastest >= 15.0, "a post acknowledged in {fastest} ms: the links are not delayed");
    std::fs::remove_file(&session).expect("remove the session file");
    for _ in 0..300 {
        if let Some(status) = harness.try_wait().expect("the harness") {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = harness.kill();
    panic!("the harness did not stop within 30 s of its session file's removal");
}
