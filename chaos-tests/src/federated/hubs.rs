//! Two federated hubs of real `kizuna serve` processes: Tochigi and Gunma, three nodes in three
//! regions each, over TLS with their own CAs and signing keys. The set-up is the one
//! `kizuna demo --federation` runs, written by `kizuna admin federation pair --via-proxies`:
//! each hub dials its peer's federation endpoints through a [`LinkProxy`] the harness
//! controls, so a hub↔hub link can be cut (per direction: the hub that opens a connection owns
//! it, so cutting Tochigi→Gunma leaves Gunma→Tochigi up), slowed or reset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use kizuna_proto::admin::GetClusterStatusRequest;
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use serde::Deserialize;

use crate::cluster::kizuna_bin;
use crate::proxy::LinkProxy;
use crate::workload::{authed, channel, trust};

/// `pair.json`, as `kizuna admin federation pair` writes it (the fields the harness needs).
#[derive(Debug, Deserialize)]
struct Manifest {
    hubs: Vec<HubManifest>,
}

#[derive(Debug, Deserialize)]
struct HubManifest {
    name: String,
    config: PathBuf,
    ca: PathBuf,
    nodes: Vec<NodeManifest>,
    proxies: Vec<ProxyManifest>,
}

#[derive(Debug, Deserialize)]
struct NodeManifest {
    name: String,
    region: String,
    api_addr: SocketAddr,
}

#[derive(Debug, Deserialize)]
struct ProxyManifest {
    listen: SocketAddr,
    to: SocketAddr,
}

pub struct HubNode {
    pub name: String,
    pub region: String,
    /// `https://…` of its public API.
    pub endpoint: String,
    child: Option<Child>,
}

pub struct Hub {
    pub name: String,
    config: PathBuf,
    pub nodes: Vec<HubNode>,
    /// This hub's connections to its peer's federation endpoints.
    links: Vec<LinkProxy>,
    /// The operator's session (cluster status is operators' only); empty until set up.
    pub operator: String,
}

impl Hub {
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    /// The leader's index, as the first node in contact with it says.
    pub async fn leader(&self) -> Option<usize> {
        for n in &self.nodes {
            let Ok(ch) = channel(&n.endpoint) else { continue };
            let mut admin = ClusterAdminServiceClient::new(ch);
            let call = admin.get_cluster_status(authed(GetClusterStatusRequest {}, &self.operator));
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), call).await {
                let r = r.into_inner();
                let in_contact = r.members.iter().any(|m| m.id == r.answered_by && m.stale_reason.is_empty());
                if let (Some(leader), true) = (r.leader_id, in_contact) {
                    // Nodes are numbered 1.. in topology order by the pair generator.
                    return usize::try_from(leader).ok().and_then(|l| l.checked_sub(1));
                }
            }
        }
        None
    }
}

pub struct Hubs {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    pub hubs: Vec<Hub>,
}

/// Ports the pair generator uses from `base` (its layout: per hub a block of 100, API +1,
/// Raft +11, federation +21, proxies +31, three nodes each).
fn pair_ports(base: u16) -> impl Iterator<Item = u16> {
    (0..2u16).flat_map(move |hub| {
        [0u16, 10, 20, 30].into_iter().flat_map(move |kind| (1..=3u16).map(move |n| base + 100 * hub + kind + n))
    })
}

/// A base port whose whole pair layout (`kizuna admin federation pair`, proxies included) is
/// free right now.
pub fn free_base() -> anyhow::Result<u16> {
    // Not the run's seed: ports say nothing about the schedule, and two runs at once must differ.
    let mut rng = crate::rng::Rng::new(crate::ports::unique_seed());
    // Below the ephemeral range and above the node ports (see `crate::ports`).
    let first = crate::ports::FIRST_BLOCK_PORT;
    let blocks = (crate::ports::ephemeral_floor().saturating_sub(first) / 200).saturating_sub(1).max(1);
    for _ in 0..100 {
        let base = first + 200 * rng.below(u64::from(blocks)) as u16;
        // Two pairs of tests running side by side in this process never get one block (its
        // probe below passes for both while neither has started yet).
        if !crate::ports::hand_out(base) {
            continue;
        }
        let held: Vec<_> = pair_ports(base).map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == pair_ports(base).count() {
            return Ok(base);
        }
    }
    bail!("no free block of ports for two hubs")
}

impl Hubs {
    /// Generates the pair with the `kizuna` binary, starts the proxies and every node.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let bin = kizuna_bin()?;
        let out = dir.path().join("pair");
        let base = free_base()?;
        let generated = Command::new(&bin)
            .args(["admin", "federation", "pair", "--via-proxies", "--base-port", &base.to_string(), "--out"])
            .arg(&out)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !generated.status.success() {
            bail!("kizuna admin federation pair failed: {}", String::from_utf8_lossy(&generated.stderr));
        }
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(out.join("pair.json"))?)?;
        let mut hubs = Vec::new();
        for h in manifest.hubs {
            let ca = std::fs::read_to_string(&h.ca).with_context(|| format!("reading {}", h.ca.display()))?;
            let mut links = Vec::new();
            for p in &h.proxies {
                links
                    .push(LinkProxy::start_at(p.listen, p.to).await.with_context(|| format!("proxy on {}", p.listen))?);
            }
            let nodes = h
                .nodes
                .into_iter()
                .map(|n| {
                    let endpoint = format!("https://{}", n.api_addr);
                    trust(&endpoint, &ca);
                    HubNode { name: n.name, region: n.region, endpoint, child: None }
                })
                .collect();
            hubs.push(Hub { name: h.name, config: h.config, nodes, links, operator: String::new() });
        }
        let mut all = Self { dir, bin, hubs };
        for h in 0..all.hubs.len() {
            for i in 0..all.hubs[h].nodes.len() {
                all.start_node(h, i)?;
            }
        }
        Ok(all)
    }

    /// Starts node `i` of hub `h` if it is down.
    pub fn start_node(&mut self, h: usize, i: usize) -> anyhow::Result<()> {
        let hub = &self.hubs[h];
        let n = &hub.nodes[i];
        if n.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}-{}.log", hub.name, n.name)))?;
        let child = Command::new(&self.bin)
            .args(["serve", "--node", &n.name, "--config"])
            .arg(&hub.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.hubs[h].nodes[i].child = Some(child);
        Ok(())
    }

    /// kill -9 node `i` of hub `h`.
    pub fn kill(&mut self, h: usize, i: usize) {
        if let Some(mut c) = self.hubs[h].nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Cuts (or restores) hub `from`'s connections to its peer: one way.
    pub fn cut(&self, from: usize, cut: bool) {
        for link in &self.hubs[from].links {
            link.set_up(!cut);
        }
    }

    /// Every hub↔hub link, both ways: delay and jitter per forwarded chunk.
    pub fn slow(&self, delay: Duration, jitter: Duration) {
        for link in self.hubs.iter().flat_map(|h| &h.links) {
            link.set_delay(delay);
            link.set_jitter(jitter);
        }
    }

    /// Every hub↔hub link up and at loopback speed.
    pub fn heal(&self) {
        for link in self.hubs.iter().flat_map(|h| &h.links) {
            link.set_up(true);
            link.set_delay(Duration::ZERO);
            link.set_jitter(Duration::ZERO);
        }
    }

    pub fn logs_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Hubs {
    fn drop(&mut self) {
        for h in 0..self.hubs.len() {
            for i in 0..self.hubs[h].nodes.len() {
                self.kill(h, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_layout_has_24_distinct_ports() {
        let ports: std::collections::BTreeSet<u16> = pair_ports(30_000).collect();
        assert_eq!(ports.len(), 24);
        assert!(ports.contains(&30_001) && ports.contains(&30_133));
    }
}
