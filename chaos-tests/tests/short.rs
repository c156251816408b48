//! The short chaos run of the test suite: a seeded mix of leader kills, pauses and isolations
//! on a three-region hub of real processes, under a write load. Any lost, duplicated,
//! divergent or reordered write fails it.

use kizuna_chaos::run::{Plan, Scenario, Topology, run, table};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_mixed_chaos_run_loses_nothing() {
    let plan = Plan { seed: 7, seconds: 25, clients: 4, scenario: Scenario::Mix, topology: Topology::ThreeRegion };
    let report = run(plan).await.expect("chaos run");
    eprintln!("{}", table(&report));
    assert!(report.faults.len() >= 2, "too few faults injected: {:?}", report.faults);
    assert!(report.findings.acknowledged > 20, "too little load: {:?}", report.findings);
    assert_eq!(report.violations, 0, "{}", table(&report));
}
