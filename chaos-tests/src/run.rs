//! A chaos run: start the hub, run the workload, inject a seeded schedule of faults, heal,
//! check, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::check::{self, Findings};
use crate::cluster::Cluster;
use crate::workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Scenario {
    /// kill -9 the leader, restart it.
    LeaderKill,
    /// SIGSTOP a node, SIGCONT it.
    Pause,
    /// Cut every link of one node (its region), both ways; heal.
    Isolate,
    /// Make one region's links slow (300 ms per hop each way); restore.
    Slow,
    /// A seeded mix of all of the above.
    Mix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Topology {
    /// Three voters: utsunomiya, tokyo, osaka (cluster-config/local-3region.toml's shape).
    ThreeRegion,
    /// Four voters: utsunomiya, oyama (in the prefecture), tokyo, osaka (tochigi.toml's voters).
    Tochigi,
}

impl Topology {
    fn regions(self) -> &'static [&'static str] {
        match self {
            Topology::ThreeRegion => &["utsunomiya", "tokyo", "osaka"],
            Topology::Tochigi => &["utsunomiya", "oyama", "tokyo", "osaka"],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub seconds: u64,
    pub clients: usize,
    pub scenario: Scenario,
    pub topology: Topology,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub at_ms: u64,
    pub kind: String,
    pub node: u64,
    pub lasted_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub seconds: u64,
    pub clients: usize,
    pub scenario: Scenario,
    pub topology: Topology,
    pub faults: Vec<Fault>,
    pub findings: Findings,
    pub violations: usize,
    pub logs: String,
}

/// splitmix64: a tiny, well-known generator; enough for a reproducible fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let mut cluster = Cluster::start(plan.topology.regions()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leader().await.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no leader within 30s; logs in {}", cluster.logs_dir().display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..plan.clients)
        .map(|c| tokio::spawn(workload::client(c, plan.seed, cluster.endpoints(), stop.clone(), started)))
        .collect();

    let mut rng = Rng(plan.seed);
    let mut faults = Vec::new();
    let end = started + Duration::from_secs(plan.seconds);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() + Duration::from_secs(5) < end {
        let kind = match plan.scenario {
            Scenario::Mix => {
                [Scenario::LeaderKill, Scenario::Pause, Scenario::Isolate, Scenario::Slow][rng.below(4) as usize]
            }
            s => s,
        };
        let lasts = Duration::from_millis(1500 + rng.below(2000));
        let at_ms = started.elapsed().as_millis() as u64;
        let victim = match kind {
            Scenario::LeaderKill => match cluster.leader().await {
                Some(l) => cluster.index_of(l),
                None => rng.below(cluster.nodes.len() as u64) as usize,
            },
            _ => rng.below(cluster.nodes.len() as u64) as usize,
        };
        let node = cluster.nodes[victim].id;
        match kind {
            Scenario::LeaderKill => {
                cluster.kill(victim);
                tokio::time::sleep(lasts).await;
                cluster.restart(victim)?;
            }
            Scenario::Pause => {
                cluster.pause(victim);
                tokio::time::sleep(lasts).await;
                cluster.resume(victim);
            }
            Scenario::Slow => {
                cluster.set_delay(victim, Duration::from_millis(300));
                tokio::time::sleep(lasts).await;
                cluster.set_delay(victim, Duration::ZERO);
            }
            Scenario::Isolate | Scenario::Mix => {
                cluster.set_isolated(victim, true);
                tokio::time::sleep(lasts).await;
                cluster.set_isolated(victim, false);
            }
        }
        faults.push(Fault { at_ms, kind: format!("{kind:?}"), node, lasted_ms: lasts.as_millis() as u64 });
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1500))).await;
    }
    if let Some(left) = end.checked_duration_since(Instant::now()) {
        tokio::time::sleep(left).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut history = Vec::new();
    for c in clients {
        history.extend(c.await?);
    }
    cluster.converged(Duration::from_secs(60)).await?;
    let findings = check::check(&history, &cluster.endpoints()).await?;
    let violations = findings.violations();
    let logs = cluster.logs_dir().display().to_string();
    if violations > 0 {
        // Keep the evidence.
        let kept = cluster.dir.path().to_path_buf();
        std::mem::forget(std::mem::replace(&mut cluster.dir, tempfile::tempdir()?));
        eprintln!("violations found; node logs and data kept in {}", kept.display());
    }
    Ok(Report {
        seed: plan.seed,
        seconds: plan.seconds,
        clients: plan.clients,
        scenario: plan.scenario,
        topology: plan.topology,
        faults,
        findings,
        violations,
        logs,
    })
}

/// The human table.
pub fn table(r: &Report) -> String {
    let f = &r.findings;
    let mut s =
        format!("chaos run: scenario {:?}, seed {}, {} s, {} clients\n", r.scenario, r.seed, r.seconds, r.clients);
    s += &format!("  operations: {} acknowledged, {} unknown\n", f.acknowledged, f.unknown);
    s += &format!("  faults: {}\n", r.faults.len());
    for x in &r.faults {
        s += &format!("    t={:>6} ms  {:<10} node {}  for {} ms\n", x.at_ms, x.kind, x.node, x.lasted_ms);
    }
    s += &format!(
        "  violations: {} (lost {}, duplicated {}, divergent {}, reordered {})\n",
        r.violations,
        f.lost.len(),
        f.duplicated.len(),
        f.divergent.len(),
        f.reordered
    );
    s += &format!(
        "  availability: longest gap without an acknowledged write {} ms; retried operations p50 {} ms, p99 {} ms\n",
        f.max_unavailable_ms, f.retried_p50_ms, f.retried_p99_ms
    );
    s
}
