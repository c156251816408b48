//! The faults a run injects, each applied and then healed by [`inject`].

use std::time::Duration;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Scenario {
    /// kill -9 the leader, restart it.
    LeaderKill,
    /// kill -9 every node of a random region (a blackout), restart them.
    Blackout,
    /// SIGSTOP a node, SIGCONT it.
    Pause,
    /// Cut one region off from all others, both ways (the minority side).
    Isolate,
    /// Split the regions into two random sets, both ways (a majority and a minority side, or
    /// two halves with no quorum at all).
    Partition,
    /// Cut the links from one region to the rest, one way only.
    OneWay,
    /// Random partitions that come and go every few hundred ms.
    Flapping,
    /// One region's links slow: 300 ms per hop with up to 150 ms of jitter.
    Slow,
    /// One region's links capped at 16 KiB/s each way.
    Narrow,
    /// Drop one region's open connections again and again.
    Drop,
    /// Restart every node in turn (SIGTERM, start), waiting a little between them.
    RollingRestart,
    /// Take a random voter out of the voters (it stays a learner) under load, then back.
    Membership,
    /// A seeded mix of all of the above.
    Mix,
}

const ALL: [Scenario; 12] = [
    Scenario::LeaderKill,
    Scenario::Blackout,
    Scenario::Pause,
    Scenario::Isolate,
    Scenario::Partition,
    Scenario::OneWay,
    Scenario::Flapping,
    Scenario::Slow,
    Scenario::Narrow,
    Scenario::Drop,
    Scenario::RollingRestart,
    Scenario::Membership,
];

/// What was done, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub at_ms: u64,
    pub kind: Scenario,
    pub nodes: Vec<u64>,
    /// The leader when the fault began (0: none known), to tell faults on the leader apart.
    pub leader: u64,
    pub lasted_ms: u64,
    /// The longest time no post was acknowledged from the fault's start to the next fault.
    pub unavailable_ms: u64,
    /// The highest term when the fault began (0: no status answered).
    pub term: u64,
    /// Elections from the fault's start to the next fault's (the rise of the term).
    pub elections: u64,
}

/// A random split of the regions into two non-empty sets.
fn split(cluster: &Cluster, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let regions = cluster.regions();
    let mut a = Vec::new();
    let mut b = Vec::new();
    let first = rng.below(regions.len() as u64) as usize;
    for (i, nodes) in regions.into_iter().enumerate() {
        if i == first || rng.below(3) == 0 { a.extend(nodes) } else { b.extend(nodes) }
    }
    if b.is_empty() {
        b.push(a.pop().unwrap_or(0));
    }
    (a, b)
}

fn region(cluster: &Cluster, rng: &mut Rng) -> Vec<usize> {
    let regions = cluster.regions();
    regions[rng.below(regions.len() as u64) as usize].clone()
}

fn rest(cluster: &Cluster, nodes: &[usize]) -> Vec<usize> {
    (0..cluster.nodes.len()).filter(|i| !nodes.contains(i)).collect()
}

/// Picks the concrete fault for `scenario` (Mix picks one at random).
pub fn pick(scenario: Scenario, rng: &mut Rng) -> Scenario {
    match scenario {
        Scenario::Mix => ALL[rng.below(ALL.len() as u64) as usize],
        s => s,
    }
}

/// Applies `kind` for about `lasts`, then heals it. Returns the nodes it hit.
pub async fn inject(
    cluster: &mut Cluster,
    kind: Scenario,
    lasts: Duration,
    rng: &mut Rng,
) -> anyhow::Result<Vec<usize>> {
    let hit = match kind {
        Scenario::LeaderKill | Scenario::Pause => {
            let victim = match (kind, cluster.leader().await) {
                (Scenario::LeaderKill, Some(leader)) => leader,
                _ => rng.below(cluster.nodes.len() as u64) as usize,
            };
            if kind == Scenario::Pause {
                cluster.pause(victim);
                tokio::time::sleep(lasts).await;
                cluster.resume(victim);
            } else {
                cluster.kill(victim);
                tokio::time::sleep(lasts).await;
                cluster.start_node(victim)?;
            }
            vec![victim]
        }
        Scenario::Blackout => {
            let dark = region(cluster, rng);
            for &i in &dark {
                cluster.kill(i);
            }
            tokio::time::sleep(lasts).await;
            for &i in &dark {
                cluster.start_node(i)?;
            }
            dark
        }
        Scenario::Isolate | Scenario::OneWay => {
            let cut = region(cluster, rng);
            let others = rest(cluster, &cut);
            if kind == Scenario::Isolate {
                cluster.partition(&cut, &others, true);
            } else {
                cluster.cut(&cut, &others, true);
            }
            tokio::time::sleep(lasts).await;
            cluster.heal();
            cut
        }
        Scenario::Partition => {
            let (a, b) = split(cluster, rng);
            cluster.partition(&a, &b, true);
            tokio::time::sleep(lasts).await;
            cluster.heal();
            a
        }
        Scenario::Flapping => {
            let until = tokio::time::Instant::now() + lasts;
            let mut hit = Vec::new();
            while tokio::time::Instant::now() < until {
                let (a, b) = split(cluster, rng);
                cluster.partition(&a, &b, true);
                tokio::time::sleep(Duration::from_millis(200 + rng.below(600))).await;
                cluster.heal();
                tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
                hit.extend(a);
            }
            hit.sort_unstable();
            hit.dedup();
            hit
        }
        Scenario::Slow | Scenario::Narrow => {
            let nodes = region(cluster, rng);
            if kind == Scenario::Slow {
                cluster.shape(&nodes, Duration::from_millis(300), Duration::from_millis(150), 0);
            } else {
                cluster.shape(&nodes, Duration::ZERO, Duration::ZERO, 16 * 1024);
            }
            tokio::time::sleep(lasts).await;
            cluster.heal();
            nodes
        }
        Scenario::Drop => {
            let nodes = region(cluster, rng);
            let until = tokio::time::Instant::now() + lasts;
            while tokio::time::Instant::now() < until {
                cluster.reset_links(&nodes);
                tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
            }
            nodes
        }
        Scenario::RollingRestart => {
            for i in 0..cluster.nodes.len() {
                cluster.stop(i).await;
                cluster.start_node(i)?;
                // Let it rejoin before the next one goes down, as an operator would.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            (0..cluster.nodes.len()).collect()
        }
        Scenario::Membership => {
            let voters: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].voter).collect();
            let out = voters[rng.below(voters.len() as u64) as usize];
            let id = |i: &usize| cluster.nodes[*i].id;
            let fewer: Vec<u64> = voters.iter().filter(|&&i| i != out).map(id).collect();
            cluster.set_voters(&fewer).await?;
            tokio::time::sleep(lasts).await;
            cluster.set_voters(&voters.iter().map(id).collect::<Vec<_>>()).await?;
            vec![out]
        }
        Scenario::Mix => anyhow::bail!("pick a concrete fault first"),
    };
    Ok(hit)
}
