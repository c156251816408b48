//! The `kizuna` subcommands. `anyhow` lives here, at the edge, and nowhere else.

pub mod admin;
pub mod load;
pub mod records;
pub mod serve;
pub mod status;

use anyhow::{Context, anyhow};
use tonic::transport::{Channel, Endpoint};

use crate::config::HubConfig;
use crate::node::LEADER_HINT_KEY;

/// The demo hub's topology, compiled in so `kizuna demo` works from any directory.
pub const DEMO_TOPOLOGY: &str = include_str!("../../../cluster-config/local-3region.toml");

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

pub fn demo_hub() -> anyhow::Result<HubConfig> {
    HubConfig::parse(DEMO_TOPOLOGY).context("the built-in demo topology")
}

/// Endpoints to try: the one given, or every demo node.
pub fn endpoints(given: Option<String>) -> anyhow::Result<Vec<String>> {
    match given {
        Some(e) => Ok(vec![with_scheme(&e)]),
        None => Ok(demo_hub()?.nodes.iter().map(|n| format!("http://{}", n.api_addr)).collect()),
    }
}

pub fn with_scheme(addr: &str) -> String {
    if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") }
}

pub async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("bad endpoint {endpoint:?}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// Connects to the first endpoint that answers.
pub async fn connect_any(endpoints: &[String]) -> anyhow::Result<(String, Channel)> {
    let mut last = anyhow!("no endpoint given");
    for e in endpoints {
        match connect(e).await {
            Ok(ch) => return Ok((e.clone(), ch)),
            Err(err) => last = err,
        }
    }
    Err(last.context("no node of the hub answered (is `kizuna demo` running?)"))
}

/// The leader's endpoint when a node refused because it is not the leader.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    status.metadata().get(LEADER_HINT_KEY).and_then(|v| v.to_str().ok()).map(with_scheme)
}
