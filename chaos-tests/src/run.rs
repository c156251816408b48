//! A chaos run: start the hub, set up the rooms, start subscribers, writers and readers, inject
//! a seeded schedule of faults, heal, check, report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::check::{self, Findings, History, Timelines, percentile};
use crate::cluster::{Cluster, NodeSpec, RaftTimers};
use crate::faults::{self, Fault, Scenario};
use crate::rng::Rng;
use crate::workload::subscriber::Received;
use crate::workload::{self, ms_since, observer, reader, subscriber, writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Topology {
    /// Three voters: utsunomiya, tokyo, osaka (cluster-config/local-3region.toml's shape).
    ThreeRegion,
    /// Four voters — utsunomiya, oyama (in the prefecture), tokyo, osaka — and a learner in
    /// nasu, preferring the prefecture for leadership (cluster-config/tochigi.toml's shape).
    Tochigi,
}

impl Topology {
    fn nodes(self) -> Vec<NodeSpec> {
        let voter = |region| NodeSpec { region, voter: true };
        match self {
            Topology::ThreeRegion => vec![voter("utsunomiya"), voter("tokyo"), voter("osaka")],
            Topology::Tochigi => vec![
                voter("utsunomiya"),
                voter("oyama"),
                voter("tokyo"),
                voter("osaka"),
                NodeSpec { region: "nasu", voter: false },
            ],
        }
    }

    /// One-way delay and jitter between two regions: roughly what the links between Tochigi,
    /// Tokyo and Osaka show (a few ms within the Kanto plain, more to Kansai).
    fn wan(a: &str, b: &str) -> (Duration, Duration) {
        const TOCHIGI: [&str; 3] = ["utsunomiya", "oyama", "nasu"];
        let ms = Duration::from_millis;
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        match (TOCHIGI.contains(&a), TOCHIGI.contains(&b)) {
            _ if a == b => (ms(0), ms(0)),
            (true, true) => (ms(2), ms(1)),
            (true, false) | (false, true) if a == "tokyo" || b == "tokyo" => (ms(3), ms(1)),
            (true, false) | (false, true) => (ms(7), ms(2)),
            (false, false) => (ms(5), ms(2)),
        }
    }

    fn preferred(self) -> &'static [&'static str] {
        match self {
            Topology::ThreeRegion => &[],
            Topology::Tochigi => &["utsunomiya", "oyama"],
        }
    }
}

/// One-way delay and jitter for a round trip of `rtt_ms` between different regions.
fn uniform_rtt(rtt_ms: u64, a: &str, b: &str) -> (Duration, Duration) {
    match a == b {
        true => (Duration::ZERO, Duration::ZERO),
        false => (Duration::from_millis(rtt_ms / 2), Duration::from_millis(rtt_ms / 10)),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub seed: u64,
    pub seconds: u64,
    /// Writers; half as many readers (at least one), and two subscribers.
    pub clients: usize,
    pub rooms: usize,
    /// Faults are taken from this list in turn (`Mix` picks one at random each time).
    pub scenarios: Vec<Scenario>,
    pub topology: Topology,
    /// Give the links their regions' normal delay and jitter (off: loopback speed).
    pub wan: bool,
    /// How long workers wait for an answer before trying the next node, in ms.
    pub answer_timeout_ms: u64,
    /// Instead of the regions' own delays: this round-trip time between any two regions (a
    /// tenth of it as jitter each way), for failover figures at a given RTT.
    pub rtt_ms: Option<u64>,
    pub raft: RaftTimers,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub plan: Plan,
    pub faults: Vec<Fault>,
    /// Unavailability per fault: p50, p99, max (ms).
    pub failover_p50_ms: u64,
    pub failover_p99_ms: u64,
    pub failover_max_ms: u64,
    pub findings: Findings,
    pub violations: usize,
    pub logs: String,
}

const SUBSCRIBERS: usize = 2;
/// Patients whose safety the recorders check (disaster mode).
const CHECKED_PATIENTS: usize = 4;

pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let mut cluster = start_with_links(&plan).await?;
    let logs = cluster.logs_dir().display().to_string();
    let result = drive(&plan, &mut cluster).await.with_context(|| format!("node logs in {logs}"));
    let keep = result.as_ref().map_or(true, |r| r.violations > 0);
    if keep {
        // Keep the evidence: node logs and data.
        let kept = cluster.dir.path().to_path_buf();
        std::mem::forget(std::mem::replace(&mut cluster.dir, tempfile::tempdir()?));
        eprintln!("node logs and data kept in {}", kept.display());
    }
    result
}

/// The plan's hub, its links between regions delayed as the plan says.
async fn start_with_links(plan: &Plan) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::start(&plan.topology.nodes(), plan.topology.preferred(), &plan.raft).await?;
    match plan.rtt_ms {
        Some(rtt) => cluster.set_wan(|a, b| uniform_rtt(rtt, a, b)),
        None if plan.wan => cluster.set_wan(Topology::wan),
        None => {}
    }
    Ok(cluster)
}

/// The plan's hub with its delayed links, set up as for a run but with no faults and no
/// checks: for `kizuna bench` at WAN latencies on one machine (`ops/scripts/bench-wan.sh`).
/// Writes the doctor's session as the CLI's session file to `session` and prints the nodes'
/// API endpoints, comma-separated, once the hub is set up; serves until `plan.seconds` have
/// passed or the session file is removed (how the script ends it: the nodes stop with this
/// process, which a signal would skip).
pub async fn serve(plan: &Plan, session: &std::path::Path) -> anyhow::Result<()> {
    let cluster = start_with_links(plan).await?;
    let setup = workload::setup(&cluster.endpoints(), plan.seed, plan.rooms).await?;
    let file = serde_json::json!({ "login": workload::DOCTOR_LOGIN, "token": setup.token });
    std::fs::write(session, file.to_string()).with_context(|| format!("writing {}", session.display()))?;
    println!("{}", cluster.endpoints().join(","));
    let end = Instant::now() + Duration::from_secs(plan.seconds);
    while Instant::now() < end && session.exists() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(cluster);
    Ok(())
}

async fn drive(plan: &Plan, cluster: &mut Cluster) -> anyhow::Result<Report> {
    // Setting up waits for a leader: each step is retried on every node for up to a minute.
    let mut setup = workload::setup(&cluster.endpoints(), plan.seed, plan.rooms).await?;
    cluster.operator = setup.operator.clone();
    setup.answer_timeout = Duration::from_millis(plan.answer_timeout_ms);
    let disaster = observer::setup(&setup, plan.seed, CHECKED_PATIENTS).await?;
    let mut rng = Rng::new(plan.seed);

    // Subscribers first: every post of the run comes after their first stream is open.
    let sub_stop = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let log = Arc::new(Mutex::new(Received::default()));
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscriber::run(setup.clone(), rng.fork(1), log.clone(), sub_stop.clone(), ready));
        tokio::time::timeout(Duration::from_secs(30), is_ready).await.context("subscriber never connected")??;
        subscribers.push((task, log));
    }

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..plan.clients)
        .map(|c| tokio::spawn(writer::run(c, setup.clone(), rng.fork(10 + c as u64), stop.clone(), started)))
        .collect();
    let readers: Vec<_> = (0..(plan.clients / 2).max(1))
        .map(|c| tokio::spawn(reader::run(c, setup.clone(), rng.fork(1000 + c as u64), stop.clone(), started)))
        .collect();
    let recorders: Vec<_> = (0..(plan.clients / 4).max(1))
        .map(|c| {
            let with = (setup.clone(), disaster.clone());
            tokio::spawn(observer::run(c, with, rng.fork(2000 + c as u64), stop.clone(), started))
        })
        .collect();

    let mut faults = Vec::new();
    let end = started + Duration::from_secs(plan.seconds);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() + Duration::from_secs(6) < end {
        let listed = plan.scenarios.get(faults.len() % plan.scenarios.len().max(1)).copied();
        let kind = faults::pick(listed.unwrap_or(Scenario::Mix), &mut rng);
        let lasts = Duration::from_millis(1500 + rng.below(2000));
        let (leader, term) = (cluster.leader().await.map_or(0, |i| cluster.nodes[i].id), cluster.term().await);
        let at_ms = ms_since(started);
        let hit = faults::inject(cluster, kind, lasts, &mut rng).await?;
        let nodes = hit.iter().map(|&i| cluster.nodes[i].id).collect();
        let lasted_ms = ms_since(started) - at_ms;
        faults.push(Fault { at_ms, kind, nodes, leader, lasted_ms, unavailable_ms: 0, term, elections: 0 });
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1500))).await;
    }
    if let Some(left) = end.checked_duration_since(Instant::now()) {
        tokio::time::sleep(left).await;
    }
    count_elections(&mut faults, cluster.term().await);
    stop.store(true, Ordering::Relaxed);
    let mut history = History::default();
    for w in writers {
        history.posts.extend(w.await?);
    }
    for r in readers {
        history.reads.extend(r.await?);
    }
    for r in recorders {
        history.checks.extend(r.await?);
    }
    let ended_ms = ms_since(started);

    // Heal, let every node catch up, read every node's copy.
    cluster.heal();
    for i in 0..cluster.nodes.len() {
        cluster.resume(i);
        cluster.start_node(i)?;
    }
    // Checks journaled on nodes that were cut off reach the log before the digests are compared.
    observer::drained(&cluster.endpoints(), &setup.token, &disaster, Duration::from_secs(90)).await?;
    let digests = cluster.digests(Duration::from_secs(90)).await?;
    let mut checks = Vec::new();
    for e in cluster.endpoints() {
        checks
            .push(observer::read_checks(&e, &setup.token, &disaster).await.with_context(|| format!("checks on {e}"))?);
    }
    let mut nodes: Vec<Timelines> = Vec::new();
    for e in cluster.endpoints() {
        let mut timelines = Timelines::new();
        for &room in &setup.rooms {
            timelines.insert(
                room,
                workload::read_room(&e, &setup.token, room).await.with_context(|| format!("final read of {e}"))?,
            );
        }
        nodes.push(timelines);
    }
    // Give subscribers until they have every post (or 30 s) before stopping them.
    let wait_until = Instant::now() + Duration::from_secs(30);
    let reference = nodes.first().cloned().unwrap_or_default();
    while Instant::now() < wait_until {
        let caught_up = subscribers.iter().all(|(_, log)| {
            log.lock().is_ok_and(|l| reference.iter().all(|(room, t)| l.max_seq(*room) >= t.last().map_or(0, |p| p.0)))
        });
        if caught_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sub_stop.store(true, Ordering::Relaxed);
    for (task, log) in subscribers {
        task.await?;
        history.subscribers.push(log.lock().map(|l| l.clone()).unwrap_or_default());
    }

    let mut findings = check::check(&history, &nodes, &checks, digests);
    findings.starts_reapplying = cluster.starts_reapplying()?;
    let windows: Vec<(u64, u64)> = faults
        .iter()
        .enumerate()
        .map(|(i, f)| (f.at_ms, faults.get(i + 1).map_or(ended_ms, |next| next.at_ms)))
        .collect();
    for (f, u) in faults.iter_mut().zip(check::unavailability(&history.posts, &windows)) {
        f.unavailable_ms = u;
    }
    let mut unavailable: Vec<u64> = faults.iter().map(|f| f.unavailable_ms).collect();
    unavailable.sort_unstable();
    Ok(Report {
        plan: plan.clone(),
        failover_p50_ms: percentile(&unavailable, 0.5),
        failover_p99_ms: percentile(&unavailable, 0.99),
        failover_max_ms: unavailable.last().copied().unwrap_or(0),
        violations: findings.violations(),
        findings,
        faults,
        logs: cluster.logs_dir().display().to_string(),
    })
}

/// Each fault's elections: how far the term rose until the next fault began (or the run
/// ended, `last_term`). A fault that leaves the leader in contact with a quorum should cause none.
fn count_elections(faults: &mut [Fault], last_term: u64) {
    let next_terms: Vec<u64> = faults.iter().skip(1).map(|f| f.term).chain([last_term]).collect();
    for (f, next) in faults.iter_mut().zip(next_terms) {
        // 0 where a status could not be read at either end.
        f.elections = if f.term == 0 || next == 0 { 0 } else { next.saturating_sub(f.term) };
    }
}

/// The human table.
pub fn table(r: &Report) -> String {
    let f = &r.findings;
    let mut s = format!(
        "chaos run: {:?} on {:?}{}, raft {:?}, seed {}, {} s, {} writers, {} rooms, {} ms answer timeout\n",
        r.plan.scenarios,
        r.plan.topology,
        match r.plan.rtt_ms {
            Some(rtt) => format!(" with {rtt} ms RTT between regions"),
            None if r.plan.wan => " with WAN delays".to_owned(),
            None => String::new(),
        },
        r.plan.raft,
        r.plan.seed,
        r.plan.seconds,
        r.plan.clients,
        r.plan.rooms,
        r.plan.answer_timeout_ms
    );
    s += &format!(
        "  posts: {} acknowledged, {} unknown ({} of them applied)\n",
        f.posts_acknowledged, f.posts_unknown, f.unknown_applied
    );
    s += &format!(
        "  reads: {} linearizable checked, {} stale (cut-off node), {} truncated\n",
        f.reads_linearizable, f.reads_stale, f.reads_truncated
    );
    s += &format!("  subscribers: {} events over {} connections\n", f.subscriber_events, f.subscriber_connections);
    s += &format!(
        "  safety checks and facility statuses: {} applied when answered, {} accepted as pending, {} unknown\n",
        f.checks_applied, f.checks_pending, f.checks_unknown
    );
    s += &format!("  faults: {}\n", r.faults.len());
    for x in &r.faults {
        s += &format!(
            "    t={:>7} ms  {:<15} nodes {:<10} (leader {}) for {:>5} ms   writes unavailable {:>5} ms   elections {}\n",
            x.at_ms,
            format!("{:?}", x.kind),
            format!("{:?}", x.nodes),
            x.leader,
            x.lasted_ms,
            x.unavailable_ms,
            x.elections
        );
    }
    s += &format!(
        "  violations: {} (lost {}, duplicated {}, phantom {}, divergent rooms {}, reordered {}, reads {}, subscribers {}, digest mismatch {}, safety checks {})\n",
        r.violations,
        f.lost.len(),
        f.duplicated.len(),
        f.phantom.len(),
        f.divergent_rooms.len(),
        f.reordered,
        f.read_violations.len(),
        f.subscriber_violations.len(),
        f.digest_mismatch,
        f.check_violations.len()
    );
    let listed = f.lost.iter().chain(&f.read_violations).chain(&f.subscriber_violations).chain(&f.check_violations);
    for v in listed.take(10) {
        s += &format!("    {v}\n");
    }
    s += &format!(
        "  availability: writes unavailable per fault p50 {} ms, p99 {} ms, max {} ms; longest gap {} ms; retried posts p50 {} ms, p99 {} ms\n",
        r.failover_p50_ms,
        r.failover_p99_ms,
        r.failover_max_ms,
        f.max_unavailable_ms,
        f.retried_p50_ms,
        f.retried_p99_ms
    );
    s += &format!("  node starts that re-applied entries their state had lost: {}\n", f.starts_reapplying);
    s += &format!(
        "  state digests: {:?}\n",
        f.digests.iter().map(|d| format!("{}@{}", &d.1[..12.min(d.1.len())], d.0)).collect::<Vec<_>>()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(term: u64) -> Fault {
        let (kind, nodes) = (Scenario::Slow, vec![1]);
        Fault { at_ms: 0, kind, nodes, leader: 1, lasted_ms: 0, unavailable_ms: 0, term, elections: 0 }
    }

    #[test]
    fn each_fault_counts_the_terms_until_the_next_one_began() {
        let mut faults = vec![fault(3), fault(3), fault(5), fault(0), fault(6)];
        count_elections(&mut faults, 9);
        let counted: Vec<u64> = faults.iter().map(|f| f.elections).collect();
        // 3→3 none, 3→5 two, 5→(no answer) unknown, (no answer)→6 unknown, 6→9 (the run's end) three.
        assert_eq!(counted, [0, 2, 0, 0, 3]);
    }
}
