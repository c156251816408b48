//! `kizuna serve` and `kizuna demo`: run nodes until Ctrl-C or SIGTERM.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::{info, warn};

use crate::config::{EncryptionSection, HubConfig, NodeConfig, TlsSection};
use crate::federation::FederationSender;
use crate::federation::listener::FederationListener;
use crate::node::{self, Listeners, RunningNode};
use crate::raft::network::RoutedConnector;
use crate::tls::Security;

fn security(hub: &HubConfig, me: &NodeConfig, insecure: bool) -> anyhow::Result<Security> {
    let mut security = plain_or_tls(hub, me, insecure)?;
    if !me.routes.is_empty() {
        let routes = std::sync::Arc::new(std::sync::Mutex::new(me.routes.clone()));
        security.connector = std::sync::Arc::new(RoutedConnector { routes, inner: security.connector });
    }
    Ok(security)
}

fn plain_or_tls(hub: &HubConfig, me: &NodeConfig, insecure: bool) -> anyhow::Result<Security> {
    if insecure {
        warn!("INSECURE MODE (--insecure): no TLS; traffic is readable and peers are not authenticated");
        return Ok(Security::insecure());
    }
    let tls = hub.tls.as_ref().context(
        "the topology has no [tls] dir: create certificates with `kizuna admin certs --config FILE --out DIR` \
         and set [tls] dir = DIR, or pass --insecure for a plaintext development run",
    )?;
    Security::load(tls, me).with_context(|| format!("loading {}'s certificates from {}", me.name, tls.dir.display()))
}

pub async fn serve(config: &Path, node_name: &str, insecure: bool) -> anyhow::Result<()> {
    let hub = HubConfig::load(config)?;
    let me = hub.node(node_name)?.clone();
    let node = start_node(&hub, &me, insecure).await?;
    // A stop asked for while the node still waits for its leader stops it at once.
    let stop = shutdown_signal();
    tokio::pin!(stop);
    tokio::select! {
        () = &mut stop => {}
        () = async {
            tell_service_manager_ready(&node.running).await;
            std::future::pending::<()>().await
        } => {}
    }
    info!("stopping");
    notify_service_manager(&[sd_notify::NotifyState::Stopping]);
    node.shutdown().await;
    Ok(())
}

/// How long a starting node waits to hear of a leader before it reports itself ready anyway
/// (a region cut off from the quorum still serves its reads).
const READY_WAIT: Duration = Duration::from_secs(30);

/// Tells systemd (`Type=notify`) the node is up: once it serves and knows its hub's leader, so a
/// rolling restart moves on only when the node has rejoined; after [`READY_WAIT`] without a
/// leader, ready all the same, saying so. Nothing happens outside systemd.
async fn tell_service_manager_ready(running: &RunningNode) {
    let leader = wait_for_leader(&[running], READY_WAIT).await;
    let status = match leader {
        Some(leader) => format!("serving; leader is node {leader}"),
        None => format!("serving; no leader heard of within {}s (reads only)", READY_WAIT.as_secs()),
    };
    notify_service_manager(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
}

/// Waits (30 s at most) until the demo hub has its first data key and has sealed what came
/// before it, so the demo's seed data is sealed when it is written (docs/security.md).
async fn wait_until_sealed(node: &RunningNode) {
    let state = &node.node.state;
    for _ in 0..300 {
        if state.vault().hub_keys() > 0 && !state.sealing().unwrap_or(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("the demo hub has no data key after 30 s: its seed data is written before sealing begins");
}

fn notify_service_manager(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("could not notify the service manager (NOTIFY_SOCKET): {e}");
    }
}

/// A running node and, when its hub federates, its federation listener and sender.
pub struct FederatingNode {
    pub running: RunningNode,
    federation: Option<FederationListener>,
    sender: Option<FederationSender>,
}

impl FederatingNode {
    pub async fn shutdown(self) {
        if let Some(sender) = self.sender {
            sender.shutdown().await;
        }
        if let Some(federation) = self.federation {
            federation.shutdown().await;
        }
        self.running.shutdown().await;
    }
}

/// Starts node `me` of `hub`, with its federation listener (when it has a `federation_addr`)
/// and sender when the hub has `[federation]` (never with `--insecure`: federation is mutual
/// TLS only).
pub async fn start_node(hub: &HubConfig, me: &NodeConfig, insecure: bool) -> anyhow::Result<FederatingNode> {
    let security = security(hub, me, insecure)?;
    let listeners = Listeners::bind(me).await.with_context(|| format!("binding {}'s addresses", me.name))?;
    let running = node::start(hub, me, listeners, &security).await?;
    let (federation, sender) = if insecure {
        if hub.federation.is_some() {
            warn!("not federating: it is mutual TLS only, and --insecure turns TLS off");
        }
        (None, None)
    } else {
        let listener = crate::federation::listener::start(hub, me, running.node.clone())
            .await
            .context("starting the federation listener")?;
        let sender = crate::federation::listener::start_sender(hub, me, running.node.clone())
            .context("starting the federation sender")?;
        (listener, sender)
    };
    Ok(FederatingNode { running, federation, sender })
}

pub async fn demo(data_dir: &Path, insecure: bool) -> anyhow::Result<()> {
    let mut hub = super::demo_hub()?.with_data_root(data_dir);
    if !insecure {
        let certs = data_dir.join("certs");
        let complete = hub.nodes.iter().all(|n| certs.join(format!("{}.pem", n.name)).exists());
        if !complete {
            crate::tls::generate(&hub, &certs).context("generating the demo's certificates")?;
        }
        hub.tls = Some(TlsSection::in_dir(certs));
    }
    // The demo seals what it stores like any hub; its master key sits beside the node dirs.
    let keys = data_dir.join("keys");
    hub.encryption = Some(
        EncryptionSection::generated_in(&keys)
            .with_context(|| format!("the demo's master key in {}", keys.display()))?,
    );
    let mut nodes: Vec<RunningNode> = Vec::new();
    for me in &hub.nodes {
        let security = security(&hub, me, insecure)?;
        let listeners = Listeners::bind(me)
            .await
            .with_context(|| format!("binding {} and {} (is another demo running?)", me.raft_addr, me.api_addr))?;
        nodes.push(node::start(&hub, me, listeners, &security).await?);
    }
    let leader = wait_for_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(30)).await;
    let Some(leader) = leader else {
        for n in nodes {
            n.shutdown().await;
        }
        bail!("the demo hub elected no leader within 30s");
    };
    wait_until_sealed(&nodes[0]).await;
    print_browser_banner(&hub, data_dir, insecure, leader);
    let ca = (!insecure).then(|| data_dir.join("certs/ca.pem"));
    let target = super::Target::new(Some(hub.nodes[0].api_addr.to_string()), ca)?;
    let seeded = match target.connect_any().await {
        Ok((_, channel)) => super::seed::seed(channel).await.context("seeding the demo region")?,
        Err(e) => bail!("cannot reach the demo hub to seed it: {e:#}"),
    };
    if seeded {
        println!("Seeded a small region: 5 facilities, 12 professionals, 3 patients, 2 groups, a connection.");
    }
    println!("Demo logins (password {:?} for all):", super::seed::DEMO_PASSWORD);
    println!("  {:<16} 事務局 (hub operator)", super::seed::DEMO_OPERATOR);
    for (login, name, profession, _, _) in super::seed::PEOPLE {
        println!("  {login:<16} {name} ({profession})");
    }
    println!("Try:  kizuna login vn.suzuki     kizuna patients     kizuna timeline <room>     kizuna tail");
    println!("      kizuna post <room> 本日訪問しました");
    println!("Operators (kizuna login {}):  kizuna status     kizuna admin digest", super::seed::DEMO_OPERATOR);
    println!("Stop with Ctrl-C.");
    shutdown_signal().await;
    info!("stopping the demo hub");
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

/// The demo's first words: where to open the browser client (every node serves it; the app
/// moves to another node when its own is down) and how to make the browser trust the demo CA.
fn print_browser_banner(hub: &HubConfig, data_dir: &Path, insecure: bool, leader: u64) {
    let ca = data_dir.join("certs/ca.pem");
    let tls_note = if insecure { "plaintext (--insecure)".to_owned() } else { format!("TLS, CA {}", ca.display()) };
    println!("Kizuna demo hub {:?} is up; data in {}; {tls_note}", hub.hub.name, data_dir.display());
    println!("Open the browser client at any node (the app carries on at another when one is down):");
    for endpoint in hub.public_endpoints(!insecure) {
        let mark = if endpoint.id == leader { "  (leader)" } else { "" };
        println!("  {}/   {:<14} region {}{mark}", endpoint.url, endpoint.name, endpoint.region);
    }
    if !insecure {
        // The demo CA is made on this machine, so no browser knows it yet; without trusting it,
        // the page loads after a warning but its calls to the other nodes fail.
        println!("The browser must trust the demo CA {} first:", ca.display());
        println!(
            "  Chromium/Chrome: Settings → Privacy and security → Security → Manage certificates → Authorities → Import"
        );
        println!("  Firefox: Settings → Certificates → View Certificates → Authorities → Import");
        println!("  or, on 127.0.0.1, proceed past the browser's warning once on each node's address above.");
    }
    let metrics: Vec<String> =
        hub.nodes.iter().filter_map(|n| n.metrics_addr).map(|a| format!("http://{a}/metrics")).collect();
    if !metrics.is_empty() {
        println!("Prometheus metrics: {}", metrics.join("  "));
    }
}

pub async fn wait_for_leader(nodes: &[&RunningNode], timeout: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        // Every node must know the same leader, so the first requests are not refused.
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.node.metrics().current_leader).collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
        {
            return Some(*leader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Ctrl-C or SIGTERM. The SIGTERM handler is installed by this call, not when the future is
/// first polled: a stop asked for right after the node said it is ready (a service manager, a
/// test) would otherwise find no handler yet and kill the process without a clean shutdown.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let Ok(mut term) = term else {
                let _ = ctrl_c.await;
                return;
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    }
}
