//! The short two-hub chaos run (part of `make test`): Tochigi and Gunma as real processes, rooms homed on Tochigi
//! with a Gunma member, writers on both hubs, and every hub↔hub fault (partition, one-way cut,
//! slow link) plus a leader kill and a region blackout. Any acknowledged cross-hub post lost,
//! doubled, out of the home hub's order or missing from a node, and any live event missed or
//! repeated on either hub, fails it.

use kizuna_chaos::federated::HubFault::*;
use kizuna_chaos::federated::{FederatedPlan, run, table};
use kizuna_chaos::workload::ANSWER_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hubs_under_link_faults_deliver_every_cross_hub_post_once_in_order() {
    let plan = FederatedPlan {
        seed: 3,
        seconds: 40,
        clients: 2,
        rooms: 3,
        faults: vec![HubPartition, LeaderKill, HubOneWay, Blackout, HubSlow],
        answer_timeout_ms: ANSWER_TIMEOUT.as_millis() as u64,
    };
    let report = run(plan).await.expect("two-hub chaos run");
    eprintln!("{}", table(&report));
    let f = &report.findings;
    assert!(report.faults.len() >= 4, "too few faults injected: {:?}", report.faults);
    for hub in ["tochigi", "gunma"] {
        let acked = f.posts_acknowledged_per_hub.get(hub).copied().unwrap_or(0);
        assert!(acked > 10, "too little load from {hub}: {f:?}");
    }
    assert!(f.subscriber_events > 0, "subscribers saw nothing: {f:?}");
    assert_eq!(report.violations, 0, "{}", table(&report));
}
