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
