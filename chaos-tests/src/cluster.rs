//! A hub of real `kizuna serve` processes whose links all pass through [`LinkProxy`]s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kizuna_proto::admin::ClusterStatusRequest;
use kizuna_proto::admin::cluster_admin_client::ClusterAdminClient;
use tonic::transport::Channel;

use crate::proxy::LinkProxy;

pub struct NodeProc {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub raft_addr: SocketAddr,
    pub api_addr: SocketAddr,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    pub nodes: Vec<NodeProc>,
    links: BTreeMap<(u64, u64), LinkProxy>,
}

async fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
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
    bail!("kizuna binary not found near {}; build it (cargo build -p kizuna-node) or set KIZUNA_BIN", exe.display())
}

impl Cluster {
    /// Starts one voter per region.
    pub async fn start(regions: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for (i, region) in regions.iter().enumerate() {
            let id = i as u64 + 1;
            nodes.push(NodeProc {
                id,
                name: format!("{region}-1"),
                region: (*region).to_owned(),
                raft_addr: free_addr().await?,
                api_addr: free_addr().await?,
                child: None,
            });
        }
        let mut links = BTreeMap::new();
        let mut toml = String::from(
            "[hub]\nname = \"chaos\"\n\n[raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 500\nelection_timeout_max_ms = 1000\n",
        );
        for n in &nodes {
            let mut routes = String::new();
            for other in nodes.iter().filter(|o| o.id != n.id) {
                let proxy = LinkProxy::start(other.raft_addr).await?;
                routes.push_str(&format!("\"{}\" = \"{}\", ", other.raft_addr, proxy.addr));
                links.insert((n.id, other.id), proxy);
            }
            toml.push_str(&format!(
                "\n[[node]]\nid = {}\nname = \"{}\"\nregion = \"{}\"\nraft_addr = \"{}\"\napi_addr = \"{}\"\ndata_dir = \"{}\"\nroutes = {{ {} }}\n",
                n.id,
                n.name,
                n.region,
                n.raft_addr,
                n.api_addr,
                dir.path().join(&n.name).display(),
                routes.trim_end_matches(", ")
            ));
        }
        let config = dir.path().join("hub.toml");
        std::fs::write(&config, toml)?;
        let mut cluster = Self { dir, bin: kizuna_bin()?, config, nodes, links };
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
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    pub fn index_of(&self, id: u64) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap_or(0)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("http://{}", n.api_addr)).collect()
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)
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

    /// Cuts (or restores) every link between node `i` and the others, both ways.
    pub fn set_isolated(&self, i: usize, isolated: bool) {
        let id = self.nodes[i].id;
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.set_up(!isolated);
            }
        }
    }

    /// Adds `delay` to every link of node `i`, both ways (zero restores it).
    pub fn set_delay(&self, i: usize, delay: Duration) {
        let id = self.nodes[i].id;
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.set_delay(delay);
            }
        }
    }

    /// The leader as the first answering node sees it.
    pub async fn leader(&self) -> Option<u64> {
        for e in self.endpoints() {
            if let Ok(Ok(ch)) =
                tokio::time::timeout(Duration::from_secs(1), Channel::from_shared(e).ok()?.connect()).await
                && let Ok(Ok(r)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    ClusterAdminClient::new(ch).status(ClusterStatusRequest {}),
                )
                .await
            {
                let r = r.into_inner();
                if r.leader_id != 0 {
                    return Some(r.leader_id);
                }
            }
        }
        None
    }

    /// Waits until every node answers and all show the same applied index.
    pub async fn converged(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let mut applied = Vec::new();
            for e in self.endpoints() {
                let status = async {
                    let ch = Channel::from_shared(e).ok()?.connect().await.ok()?;
                    let r = ClusterAdminClient::new(ch).status(ClusterStatusRequest {}).await.ok()?.into_inner();
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

    pub fn logs_dir(&self) -> &Path {
        self.dir.path()
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
