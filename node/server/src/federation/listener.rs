//! A node's federation listener, started from the hub's configuration: `[federation]` (key,
//! peers), the node's `federation_addr`, and its certificate from `[tls]`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::transport::{FederationTls, TransportError, WatchedFederationTls};
use super::{FederationEndpoint, FederationSender, HubIdentity, IdentityError, Trust, serve};
use crate::config::{ConfigError, HubConfig, NodeConfig};
use crate::node::Node;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("federation signing key: {0}")]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("federation needs [tls]: hub-to-hub traffic is mutual TLS only")]
    NoTls,
    #[error("binding the federation address {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running federation listener; stop it with [`FederationListener::shutdown`].
pub struct FederationListener {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), TransportError>>,
}

impl FederationListener {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("federation listener stopped with an error: {e}"),
            Err(e) => warn!("federation listener task failed: {e}"),
        }
    }
}

/// What a node needs to federate: the peers, the hub's signing key and the node's mutual TLS.
pub struct Loaded {
    pub trust: Trust,
    pub identity: HubIdentity,
    /// Reread when its files change, once [`Loaded::watch`] runs.
    pub tls: WatchedFederationTls,
}

/// Loads `me`'s federation material; `None` when the hub does not federate.
pub fn load(hub: &HubConfig, me: &NodeConfig) -> Result<Option<Loaded>, ListenerError> {
    let Some(section) = &hub.federation else { return Ok(None) };
    let tls_section = hub.tls.as_ref().ok_or(ListenerError::NoTls)?;
    let trust = section.trust(&hub.hub.name)?;
    let (name, key_id) = section.identity_names(&hub.hub.name)?;
    let identity = HubIdentity::load(name, key_id, &section.signing_key)?;
    let (cert_path, key_path) = crate::tls::node_files(&tls_section.dir, me);
    let every = std::time::Duration::from_millis(tls_section.reload_check_ms);
    let tls = FederationTls::watched(&trust, cert_path, key_path, every)?;
    Ok(Some(Loaded { trust, identity, tls }))
}

/// Starts the leader's federation senders on `me` (every node of a federating hub runs them;
/// they act while the node leads); `None` when the hub does not federate.
pub fn start_sender(
    hub: &HubConfig,
    me: &NodeConfig,
    node: Arc<Node>,
) -> Result<Option<FederationSender>, ListenerError> {
    let Some(Loaded { trust, identity, tls }) = load(hub, me)? else { return Ok(None) };
    tokio::spawn(tls.clone().watch(node.stopping.clone()));
    Ok(Some(FederationSender::spawn(node, Arc::new(identity), &trust, &tls)?))
}

/// Starts `me`'s federation listener, delivering verified batches to `node`'s write path;
/// `None` when the hub does not federate or this node has no `federation_addr`. The signing key is loaded here although only sending uses it, so that
/// a wrong key stops the start instead of the first delivery.
pub async fn start(
    hub: &HubConfig,
    me: &NodeConfig,
    node: Arc<Node>,
) -> Result<Option<FederationListener>, ListenerError> {
    let Some(addr) = me.federation_addr else { return Ok(None) };
    let Some(Loaded { trust, identity, tls }) = load(hub, me)? else { return Ok(None) };
    let peers: Vec<String> = trust.peers().map(|p| p.name.to_string()).collect();
    let listener = TcpListener::bind(addr).await.map_err(|source| ListenerError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| ListenerError::Bind { addr, source })?;
    tokio::spawn(tls.clone().watch(node.stopping.clone()));
    let endpoint = FederationEndpoint::new(Arc::new(trust), tls.clone(), node);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, tls, endpoint, async {
            let _ = stopped.await;
        })
        .await
    });
    info!(%addr, hub = %identity.hub(), key_id = %identity.key_id(), peers = %peers.join(","), "serving federation");
    Ok(Some(FederationListener { addr, stop, task }))
}
