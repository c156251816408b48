//! An in-process hub for integration tests: real nodes, real RocksDB in a temp dir, real gRPC
//! on 127.0.0.1 ephemeral ports, talked to through the public API as a client would.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kizuna_node::config::{HubConfig, HubSection, NodeConfig, RaftTimers};
use kizuna_node::node::{self, Listeners, RunningNode};
use kizuna_node::raft::network::TcpConnector;
use kizuna_proto::admin::cluster_admin_client::ClusterAdminClient;
use kizuna_proto::raft::NodeStatus;
use kizuna_proto::records::records_client::RecordsClient;
use kizuna_proto::records::{Consistency, GetRecordRequest, GetRecordResponse, PutRecordRequest, PutRecordResponse};
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub config: HubConfig,
    nodes: BTreeMap<u64, RunningNode>,
}

fn test_timers() -> RaftTimers {
    RaftTimers {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..RaftTimers::default()
    }
}

async fn ephemeral() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("local addr");
    (l, addr)
}

impl TestHub {
    /// Starts `voters` voters, each in its own region.
    pub async fn start(voters: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=voters {
            let (raft, raft_addr) = ephemeral().await;
            let (api, api_addr) = ephemeral().await;
            listeners.push(Listeners { raft, api });
            nodes.push(NodeConfig {
                id,
                name: format!("n{id}"),
                region: Some(format!("region-{id}")),
                raft_addr,
                api_addr,
                data_dir: dir.path().join(format!("n{id}")),
                voter: true,
            });
        }
        let config = HubConfig { hub: HubSection { name: "test".into() }, raft: test_timers(), nodes };
        config.validate().expect("test topology is valid");
        let mut hub = TestHub { dir, config, nodes: BTreeMap::new() };
        for (me, l) in hub.config.nodes.clone().iter().zip(listeners) {
            hub.launch(me, l).await;
        }
        hub
    }

    async fn launch(&mut self, me: &NodeConfig, listeners: Listeners) {
        let running = node::start(&self.config, me, listeners, Arc::new(TcpConnector::default()))
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e}", me.name));
        self.nodes.insert(me.id, running);
    }

    pub fn node_config(&self, id: u64) -> NodeConfig {
        self.config.nodes.iter().find(|n| n.id == id).cloned().expect("node in config")
    }

    pub fn api(&self, id: u64) -> String {
        format!("http://{}", self.node_config(id).api_addr)
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node_config(id).data_dir
    }

    pub fn running(&self, id: u64) -> &RunningNode {
        self.nodes.get(&id).expect("node running")
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn status(&self, id: u64) -> NodeStatus {
        self.running(id).node.local_status()
    }

    /// Waits until the running nodes agree on one leader and returns it.
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<Option<u64>> =
                self.nodes.values().map(|n| n.node.raft.metrics().borrow().current_leader).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && self.nodes.contains_key(l)
                && self.status(*l).role == "leader"
            {
                return *l;
            }
            assert!(Instant::now() < deadline, "no agreed leader within 20s: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn follower_of(&self, leader: u64) -> u64 {
        *self.nodes.keys().find(|id| **id != leader).expect("a follower")
    }

    /// Stops a node: its ports close and its store is released.
    pub async fn stop(&mut self, id: u64) {
        let n = self.nodes.remove(&id).expect("node running");
        n.shutdown().await;
    }

    /// Restarts a stopped node from its data dir on its old addresses.
    pub async fn restart(&mut self, id: u64) {
        let me = self.node_config(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listeners = loop {
            match Listeners::bind(&me).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}; retrying", me.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", me.name),
            }
        };
        self.launch(&me, listeners).await;
    }

    /// Starts a new, empty node that is not a voter of the hub's initial membership.
    pub async fn start_new_node(&mut self, id: u64) -> NodeConfig {
        let (raft, raft_addr) = ephemeral().await;
        let (api, api_addr) = ephemeral().await;
        let me = NodeConfig {
            id,
            name: format!("n{id}"),
            region: Some(format!("region-{id}")),
            raft_addr,
            api_addr,
            data_dir: self.dir.path().join(format!("n{id}")),
            voter: false,
        };
        self.config.nodes.push(me.clone());
        self.launch(&me, Listeners { raft, api }).await;
        me
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        for (id, n) in &self.nodes {
            n.node
                .raft
                .wait(Some(Duration::from_secs(20)))
                .applied_index_at_least(Some(index), "test catch-up")
                .await
                .unwrap_or_else(|e| panic!("node {id} did not apply {index}: {e}"));
        }
    }

    pub async fn shutdown(mut self) {
        for id in self.running_ids() {
            self.stop(id).await;
        }
    }
}

pub async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned()).expect("endpoint").connect().await.expect("connect")
}

pub async fn records(endpoint: &str) -> RecordsClient<Channel> {
    RecordsClient::new(channel(endpoint).await)
}

pub async fn admin(endpoint: &str) -> ClusterAdminClient<Channel> {
    ClusterAdminClient::new(channel(endpoint).await).max_decoding_message_size(16 << 20)
}

pub async fn put(endpoint: &str, key: &str, value: &str, request_id: &str) -> Result<PutRecordResponse, tonic::Status> {
    let req = PutRecordRequest { key: key.into(), value: value.into(), request_id: request_id.into() };
    records(endpoint).await.put(req).await.map(|r| r.into_inner())
}

pub async fn get(endpoint: &str, key: &str, consistency: Consistency) -> Result<GetRecordResponse, tonic::Status> {
    let req = GetRecordRequest { key: key.into(), consistency: consistency as i32 };
    records(endpoint).await.get(req).await.map(|r| r.into_inner())
}
