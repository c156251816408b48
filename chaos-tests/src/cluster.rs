//! A hub of real `kizuna serve` processes whose links all pass through [`LinkProxy`]s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::admin::{
    ChangeMembershipRequest, GetClusterStatusRequest, GetClusterStatusResponse, GetStateDigestRequest,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::ports;
use crate::proxy::LinkProxy;

/// One node of a topology: its region and whether it votes.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    pub region: &'static str,
    pub voter: bool,
}

pub struct NodeProc {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub voter: bool,
    pub raft_addr: SocketAddr,
    pub api_addr: SocketAddr,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    pub nodes: Vec<NodeProc>,
    links: BTreeMap<(usize, usize), LinkProxy>,
    /// Each link's normal one-way delay and jitter (the distance between its regions), which
    /// [`Cluster::heal`] restores.
    baseline: BTreeMap<(usize, usize), (Duration, Duration)>,
    /// The operator's session token, for cluster administration (operators only); empty until
    /// the workload has set the hub up.
    pub operator: String,
}

/// The hub's Raft timers (its `[raft]` section). The default is the node's: a heartbeat every
/// 100 ms, elections after 300–500 ms without one.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RaftTimers {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Ask for votes without a new term first (a node cut off cannot depose the leader on its
    /// return); the node's default when `None`.
    pub pre_vote: Option<bool>,
}

impl Default for RaftTimers {
    fn default() -> Self {
        Self { heartbeat_ms: 100, election_min_ms: 300, election_max_ms: 500, pre_vote: None }
    }
}

impl RaftTimers {
    fn toml(&self) -> String {
        let mut s = format!(
            "[raft]\nheartbeat_interval_ms = {}\nelection_timeout_min_ms = {}\nelection_timeout_max_ms = {}\n",
            self.heartbeat_ms, self.election_min_ms, self.election_max_ms
        );
        if let Some(on) = self.pre_vote {
            s += &format!("pre_vote = {on}\n");
        }
        s
    }
}

/// The `kizuna` binary next to this harness (cargo puts both in the same target folder), or
/// `$KIZUNA_BIN`.
pub fn kizuna_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("KIZUNA_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("kizuna");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("kizuna binary not found near {}; build it (cargo build --workspace) or set KIZUNA_BIN", exe.display())
}

async fn admin(endpoint: &str) -> Option<ClusterAdminServiceClient<Channel>> {
    let ch = Channel::from_shared(endpoint.to_owned()).ok()?.connect_timeout(Duration::from_secs(1));
    let ch = tokio::time::timeout(Duration::from_secs(2), ch.connect()).await.ok()?.ok()?;
    Some(ClusterAdminServiceClient::new(ch))
}

impl Cluster {
    /// Starts the topology; `preferred` are the hub's preferred leader regions.
    pub async fn start(specs: &[NodeSpec], preferred: &[&str], raft: &RaftTimers) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        // Every address stays reserved until the nodes start: two nodes, or a node and a link
        // proxy, sharing a port would wire a node to itself.
        let mut reserved = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let (raft, raft_addr) = ports::reserve_node_addr()?;
            let (api, api_addr) = ports::reserve_node_addr()?;
            reserved.extend([raft, api]);
            nodes.push(NodeProc {
                id: i as u64 + 1,
                name: format!("{}-1", spec.region),
                region: spec.region.to_owned(),
                voter: spec.voter,
                raft_addr,
                api_addr,
                child: None,
            });
        }
        let preferred: Vec<String> = preferred.iter().map(|r| format!("\"{r}\"")).collect();
        // The hub seals what it stores, as a production hub does: the harness's replica
        // digests then also prove that sealing is the same on every node.
        let master_key = dir.path().join("master.key");
        let made = Command::new(kizuna_bin()?).args(["admin", "master-key", "--out"]).arg(&master_key).output()?;
        anyhow::ensure!(made.status.success(), "kizuna admin master-key: {}", String::from_utf8_lossy(&made.stderr));
        let mut toml = format!(
            "[hub]\nname = \"chaos\"\npreferred_regions = [{}]\n\n{}\n[encryption]\nmaster_key_file = \"{}\"\n",
            preferred.join(", "),
            raft.toml(),
            master_key.display()
        );
        let mut links = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let mut routes = Vec::new();
            for (j, other) in nodes.iter().enumerate().filter(|(j, _)| *j != i) {
                let proxy = LinkProxy::start(other.raft_addr).await?;
                routes.push(format!("\"{}\" = \"{}\"", other.raft_addr, proxy.addr));
                links.insert((i, j), proxy);
            }
            toml.push_str(&format!(
                "\n[[node]]\nid = {}\nname = \"{}\"\nregion = \"{}\"\nvoter = {}\nraft_addr = \"{}\"\napi_addr = \"{}\"\ndata_dir = \"{}\"\nroutes = {{ {} }}\n",
                n.id,
                n.name,
                n.region,
                n.voter,
                n.raft_addr,
                n.api_addr,
                dir.path().join(&n.name).display(),
                routes.join(", ")
            ));
        }
        let config = dir.path().join("hub.toml");
        std::fs::write(&config, toml)?;
        let mut cluster =
            Self { dir, bin: kizuna_bin()?, config, nodes, links, baseline: BTreeMap::new(), operator: String::new() };
        drop(reserved);
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", n.name)))?;
        let child = Command::new(&self.bin)
            .args(["serve", "--insecure", "--node", &n.name, "--config"])
            .arg(&self.config)
            // The store's info lines too: they say when a start re-applies entries.
            .env("RUST_LOG", "warn,kizuna_store=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("http://{}", n.api_addr)).collect()
    }

    /// Node indexes grouped by region, in topology order.
    pub fn regions(&self) -> Vec<Vec<usize>> {
        let mut by_region: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            match by_region.iter_mut().find(|(r, _)| *r == n.region) {
                Some((_, v)) => v.push(i),
                None => by_region.push((n.region.clone(), vec![i])),
            }
        }
        by_region.into_iter().map(|(_, v)| v).collect()
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (kill -9 after 15 s).
    pub async fn stop(&mut self, i: usize) {
        let Some(mut c) = self.nodes[i].child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts node `i` again if it is down.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].child.is_none() { self.spawn(i) } else { Ok(()) }
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.nodes[i].child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    /// Cuts (or restores) the links from every node of `from` to every node of `to`: one way.
    pub fn cut(&self, from: &[usize], to: &[usize], cut: bool) {
        for ((a, b), proxy) in &self.links {
            if from.contains(a) && to.contains(b) {
                proxy.set_up(!cut);
            }
        }
    }

    /// Both ways between two sets.
    pub fn partition(&self, a: &[usize], b: &[usize], cut: bool) {
        self.cut(a, b, cut);
        self.cut(b, a, cut);
    }

    fn links_of(&self, nodes: &[usize]) -> impl Iterator<Item = &LinkProxy> {
        self.links.iter().filter(move |((a, b), _)| nodes.contains(a) || nodes.contains(b)).map(|(_, p)| p)
    }

    /// Shapes every link of `nodes`, both ways: delay and jitter per chunk, a bandwidth cap
    /// (0: none). All zero restores them.
    pub fn shape(&self, nodes: &[usize], delay: Duration, jitter: Duration, bandwidth: u64) {
        for p in self.links_of(nodes) {
            p.set_delay(delay);
            p.set_jitter(jitter);
            p.set_bandwidth(bandwidth);
        }
    }

    /// Drops the open connections of every link of `nodes`.
    pub fn reset_links(&self, nodes: &[usize]) {
        for p in self.links_of(nodes) {
            p.reset();
        }
    }

    /// Gives every link the delay and jitter `wan(from_region, to_region)` returns, from now on
    /// its normal state.
    pub fn set_wan(&mut self, wan: impl Fn(&str, &str) -> (Duration, Duration)) {
        for (a, b) in self.links.keys() {
            self.baseline.insert((*a, *b), wan(&self.nodes[*a].region, &self.nodes[*b].region));
        }
        self.heal();
    }

    /// Every link up, uncapped, with its normal delay and jitter.
    pub fn heal(&self) {
        for (link, p) in &self.links {
            let (delay, jitter) = self.baseline.get(link).copied().unwrap_or_default();
            p.set_up(true);
            p.set_delay(delay);
            p.set_jitter(jitter);
            p.set_bandwidth(0);
        }
    }

    /// The first answer to Status from a node in contact with its leader or quorum.
    pub async fn status(&self) -> Option<GetClusterStatusResponse> {
        for e in self.endpoints() {
            if let Some(mut c) = admin(&e).await
                && let Ok(Ok(r)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    c.get_cluster_status(self.authed(GetClusterStatusRequest {})),
                )
                .await
            {
                let r = r.into_inner();
                // A node out of contact (a cut-off leader still calls itself leader) is not asked.
                let in_contact = r.members.iter().any(|m| m.id == r.answered_by && m.stale_reason.is_empty());
                if r.leader_id.is_some() && in_contact {
                    return Some(r);
                }
            }
        }
        None
    }

    /// The highest term any member reports (0: no answer): each election raises it.
    pub async fn term(&self) -> u64 {
        self.status().await.map_or(0, |s| s.members.iter().map(|m| m.term).max().unwrap_or(0))
    }

    /// The leader's index as the first answering node sees it.
    pub async fn leader(&self) -> Option<usize> {
        self.index_of(self.status().await?.leader_id?)
    }

    /// Makes exactly `voters` the voting members (others stay as learners), on the leader.
    pub async fn set_voters(&self, voters: &[u64]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let leader = self.leader().await.context("no leader")?;
                let mut c = admin(&self.endpoints()[leader]).await.context("leader unreachable")?;
                let req = ChangeMembershipRequest { voter_ids: voters.to_vec(), retain_as_learners: true, force: true };
                tokio::time::timeout(Duration::from_secs(10), c.change_membership(self.authed(req))).await??;
                anyhow::Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.context(format!("setting voters {voters:?}"))),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    /// Waits until every node answers and all show the same applied index.
    pub async fn converged(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let mut applied = Vec::new();
            for e in self.endpoints() {
                let status = async {
                    let r = admin(&e)
                        .await?
                        .get_cluster_status(self.authed(GetClusterStatusRequest {}))
                        .await
                        .ok()?
                        .into_inner();
                    r.members.iter().find(|m| m.id == r.answered_by).map(|m| m.applied_index)
                };
                applied.push(tokio::time::timeout(Duration::from_secs(3), status).await.ok().flatten());
            }
            if let Some(Some(first)) = applied.first()
                && applied.iter().all(|a| *a == Some(*first))
            {
                return Ok(*first);
            }
            if Instant::now() > deadline {
                bail!("nodes did not converge: applied indexes {applied:?}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Every node's (applied index, state digest), once all report the same applied index.
    pub async fn digests(&self, within: Duration) -> anyhow::Result<Vec<(u64, String)>> {
        let deadline = Instant::now() + within;
        loop {
            self.converged(within).await?;
            let mut digests = Vec::new();
            for e in self.endpoints() {
                let mut c = admin(&e).await.with_context(|| format!("{e} unreachable"))?;
                let d = c.get_state_digest(self.authed(GetStateDigestRequest {})).await?.into_inner();
                digests.push((d.applied_index, d.sha256));
            }
            if digests.windows(2).all(|w| w[0].0 == w[1].0) || Instant::now() > deadline {
                return Ok(digests);
            }
        }
    }

    /// A request as the operator.
    fn authed<T>(&self, msg: T) -> tonic::Request<T> {
        crate::workload::authed(msg, &self.operator)
    }

    pub fn logs_dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many node starts found the state on disk behind the log and re-applied entries:
    /// the lines `kizuna_store`'s `note_state_behind_log` writes, in every node's log.
    pub fn starts_reapplying(&self) -> anyhow::Result<usize> {
        const LINE: &str = "entries behind the log: re-applying them";
        let mut starts = 0;
        for n in &self.nodes {
            let path = self.dir.path().join(format!("{}.log", n.name));
            let log = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            starts += log.lines().filter(|line| line.contains(LINE)).count();
        }
        Ok(starts)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}
