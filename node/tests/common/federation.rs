//! Two federating hubs in process for the federation tests: each a [`TestHub`] whose nodes
//! also run their federation listener (mutual TLS on 127.0.0.1) and their leader's sender,
//! with real signing keys and certificates in a temp dir.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kizuna_node::config::HubConfig;
use kizuna_node::domain::federation::HubName;
use kizuna_node::federation::listener;
use kizuna_node::federation::{FederationListener, FederationSender};

use super::{HubSpec, TestHub, Wire};

/// A port of 127.0.0.1 nobody else gets while the listener is held.
pub fn reserve_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

pub fn hub_name(name: &str) -> HubName {
    HubName::new(name).unwrap()
}

/// How long a wait for the hubs may take before the test fails: generous, since this checks
/// what happens, not how fast (speed is for the benchmarks).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `done` holds, failing with `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `[federation]` section of hub `name` (its key and certificates under `root/name`),
/// listing `peer` at `peer_endpoints` with `peer_key` (hex) as its verify key.
pub fn federation_toml(root: &Path, name: &str, peer: &str, peer_endpoints: &[String], peer_key: &str) -> String {
    let d = root.display();
    let endpoints: Vec<String> = peer_endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[hub]\nname = \"{name}\"\nallow_unsafe_placement = true\n[tls]\ndir = \"{d}/{name}/certs\"\n\
         [federation]\nsigning_key = \"{d}/{name}/{name}-2026.key\"\nkey_id = \"{name}-2026\"\n\
         [[federation.peers]]\nname = \"{peer}\"\nendpoints = [{}]\nca_cert = \"{d}/{peer}/certs/ca.pem\"\n\
         verify_keys = [{{ key_id = \"{peer}-2026\", public_key = \"{peer_key}\", expires_at = 2099-01-01T00:00:00Z }}]\n\
         [[node]]\nid = 1\nname = \"unused\"\nregion = \"r1\"\nraft_addr = \"127.0.0.1:1\"\n\
         api_addr = \"127.0.0.1:2\"\ndata_dir = \"{d}/unused\"\n",
        endpoints.join(", ")
    )
}

/// A test hub that federates: its nodes' federation listeners and senders, stopped and
/// restarted with the node.
pub struct FedHub {
    pub hub: TestHub,
    listeners: BTreeMap<u64, FederationListener>,
    senders: BTreeMap<u64, FederationSender>,
}

impl FedHub {
    /// Hub `name` of `nodes` voters (one per region) with federation listeners on `ports`.
    pub async fn start(root: &Path, name: &str, nodes: u64, ports: &[u16], federation: &str) -> Self {
        let regions = ["region-1", "region-2", "region-3"];
        let spec = HubSpec {
            nodes: (0..nodes as usize).map(|i| (regions[i], true)).collect(),
            preferred_regions: vec![],
            wire: Wire::Plain,
        };
        let section = HubConfig::parse(federation).expect("federation section").federation;
        let certs = root.join(name).join("certs");
        let hub = TestHub::start_custom(spec, |config, _| {
            config.hub.name = name.to_owned();
            for (node, port) in config.nodes.iter_mut().zip(ports) {
                node.federation_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
            }
            kizuna_node::tls::generate(config, &certs).expect("certificates");
            config.tls = Some(kizuna_node::config::TlsSection::in_dir(certs.clone()));
            config.federation = section;
        })
        .await;
        Self { hub, listeners: BTreeMap::new(), senders: BTreeMap::new() }
    }

    pub async fn federate(&mut self, id: u64) {
        let me = self.hub.node_config(id);
        let node = self.hub.running(id).node.clone();
        let listener = listener::start(&self.hub.config, &me, node.clone()).await.expect("listener").expect("serves");
        let sender = listener::start_sender(&self.hub.config, &me, node).expect("sender").expect("sends");
        self.listeners.insert(id, listener);
        self.senders.insert(id, sender);
    }

    pub async fn federate_all(&mut self) {
        for id in self.hub.running_ids() {
            self.federate(id).await;
        }
    }

    pub async fn stop(&mut self, id: u64) {
        if let Some(sender) = self.senders.remove(&id) {
            sender.shutdown().await;
        }
        if let Some(listener) = self.listeners.remove(&id) {
            listener.shutdown().await;
        }
        self.hub.stop(id).await;
    }

    /// Stops every node's federation listener (the hub keeps running and queueing): to its
    /// peers the hub is unreachable, as behind a cut link.
    pub async fn cut_off(&mut self) {
        for (_, listener) in std::mem::take(&mut self.listeners) {
            listener.shutdown().await;
        }
    }

    /// Starts the listeners [`FedHub::cut_off`] stopped.
    pub async fn reconnect(&mut self) {
        for id in self.hub.running_ids() {
            let me = self.hub.node_config(id);
            let node = self.hub.running(id).node.clone();
            let listener = listener::start(&self.hub.config, &me, node).await.expect("listener").expect("serves");
            self.listeners.insert(id, listener);
        }
    }

    pub async fn restart(&mut self, id: u64) {
        self.hub.restart(id).await;
        self.federate(id).await;
    }

    pub async fn shutdown(mut self) {
        for id in self.hub.running_ids() {
            self.stop(id).await;
        }
    }

    pub fn node(&self, id: u64) -> &kizuna_node::node::Node {
        &self.hub.running(id).node
    }
}

/// Tochigi (`tochigi_nodes` nodes) and Gunma (`gunma_nodes`), each listing the other; Gunma
/// knows Tochigi's real verify key only if `gunma_trusts_key`.
pub async fn two_hubs(
    root: &Path,
    tochigi_nodes: usize,
    gunma_nodes: usize,
    gunma_trusts_key: bool,
) -> (FedHub, FedHub) {
    let keygen = kizuna_node::cli::federation::keygen;
    let mut public = BTreeMap::new();
    for name in ["tochigi", "gunma"] {
        std::fs::create_dir_all(root.join(name)).unwrap();
        let key = keygen(&root.join(name).join(format!("{name}-2026.key")), &format!("{name}-2026"), 0).unwrap();
        public.insert(name, key.public_key_hex);
    }
    if !gunma_trusts_key {
        public.insert("tochigi", "00".repeat(32));
    }
    // Held until both hubs picked their own ports, so none of them can be handed out twice.
    let reserved: Vec<std::net::TcpListener> = (0..tochigi_nodes + gunma_nodes).map(|_| reserve_port()).collect();
    let ports: Vec<u16> = reserved.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let (tochigi_ports, gunma_ports) = ports.split_at(tochigi_nodes);
    let at = |ports: &[u16]| ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>();
    let t_section = federation_toml(root, "tochigi", "gunma", &at(gunma_ports), &public["gunma"]);
    let g_section = federation_toml(root, "gunma", "tochigi", &at(tochigi_ports), &public["tochigi"]);
    let mut tochigi = FedHub::start(root, "tochigi", tochigi_nodes as u64, tochigi_ports, &t_section).await;
    let mut gunma = FedHub::start(root, "gunma", gunma_nodes as u64, gunma_ports, &g_section).await;
    drop(reserved);
    tochigi.federate_all().await;
    gunma.federate_all().await;
    (tochigi, gunma)
}

/// Sends `to` the first `count` messages of `origin`'s stream again, exactly as `to` recorded
/// them, as one batch validly signed by `origin` over mutual TLS: an old batch replayed.
/// Returns the `highest_applied` the receiver answers.
pub async fn replay_first_batch(origin: &FedHub, to: &FedHub, count: usize) -> u64 {
    let to_leader = to.hub.leader().await;
    let origin_name = hub_name(&origin.hub.config.hub.name);
    let to_name = hub_name(&to.hub.config.hub.name);
    let inbox = to.node(to_leader).state.hub().inbox_after(&origin_name, 0, count);
    let bodies: Vec<Vec<u8>> = inbox.into_iter().map(|m| m.body).collect();
    assert!(!bodies.is_empty(), "nothing received to replay");
    let me = origin.hub.node_config(origin.hub.running_ids()[0]);
    let loaded = listener::load(&origin.hub.config, &me).expect("federation material").expect("federates");
    let batch = kizuna_node::federation::signed_batch(&loaded.identity, &to_name, 1, bodies).expect("a batch");
    let endpoint = to.hub.node_config(to_leader).federation_addr.expect("a federation address").to_string();
    let mut client = kizuna_node::federation::connect(&loaded.tls, &to_name, &endpoint).expect("client");
    client.deliver(batch).await.expect("a replay is answered, not refused").into_inner().highest_applied
}
