//! The `kizuna` subcommands. `anyhow` lives here, at the edge, and nowhere else.

pub mod admin;
pub mod attachment_load;
pub mod attachments;
pub mod audit_export;
pub mod backup;
pub mod bench;
pub mod demo_federation;
pub mod directory;
pub mod disaster;
pub mod emergency;
pub mod etcd;
pub mod federation;
pub mod generate;
pub mod labels;
pub mod load;
pub mod pair;
pub mod records;
pub mod requests;
pub mod search;
pub mod seed;
pub mod serve;
pub mod sessions;
pub mod status;
pub mod user;
pub mod vapid;

use anyhow::{Context, anyhow};
use std::path::PathBuf;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::api::LEADER_HINT_KEY;
use crate::config::HubConfig;
use crate::tls;

/// The demo hub's topology, compiled in so `kizuna demo` works from any directory.
pub const DEMO_TOPOLOGY: &str = include_str!("../../../cluster-config/local-3region.toml");

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

pub fn demo_hub() -> anyhow::Result<HubConfig> {
    HubConfig::parse(DEMO_TOPOLOGY).context("the built-in demo topology")
}

/// The name, the bar, bytes so far of all, speed, time left.
const BAR: &str = "{msg:20!} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// A progress bar of `total` bytes for long work (uploads, downloads, backups), drawn on stderr
/// only when it is a terminal.
pub(crate) fn progress_bar(total: u64, label: &str) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(BAR)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let bar = indicatif::ProgressBar::new(total).with_style(style).with_message(label.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
#[test]
fn the_progress_bar_template_parses() {
    assert!(indicatif::ProgressStyle::with_template(BAR).is_ok());
}

/// Where the demo keeps its generated certificates, relative to the working directory.
pub const DEMO_CA: &str = "data/demo/certs/ca.pem";

/// Which hub a client command talks to, and how.
pub struct Target {
    pub endpoints: Vec<String>,
    tls: Option<ClientTlsConfig>,
}

impl Target {
    /// `endpoint`: any node's public address (or several, comma-separated); without one, every
    /// demo node in turn. `ca`: the
    /// hub CA to trust; without one, the demo's CA when it exists. With a CA, TLS is used.
    pub fn new(endpoint: Option<String>, ca: Option<PathBuf>) -> anyhow::Result<Self> {
        let ca = ca.or_else(|| Some(PathBuf::from(DEMO_CA)).filter(|p| p.exists()));
        let tls = match &ca {
            Some(path) => Some(tls::client_config(path).with_context(|| format!("loading CA {}", path.display()))?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints = match endpoint {
            // Several, comma-separated: a hub's nodes, tried in turn (`post --attach` and
            // `attachment get` move on to the next when one is unavailable).
            Some(e) => e.split(',').map(str::trim).filter(|e| !e.is_empty()).map(|e| with_scheme(e, scheme)).collect(),
            None => demo_hub()?.nodes.iter().map(|n| format!("{scheme}://{}", n.api_addr)).collect(),
        };
        Ok(Self { endpoints, tls })
    }

    pub async fn connect(&self, endpoint: &str) -> anyhow::Result<Channel> {
        let mut e = Endpoint::from_shared(endpoint.to_owned())
            .with_context(|| format!("bad endpoint {endpoint:?}"))?
            .connect_timeout(std::time::Duration::from_secs(2));
        if let Some(tls) = &self.tls {
            e = e.tls_config(tls.clone()).context("TLS settings")?;
        }
        e.connect().await.with_context(|| format!("cannot connect to {endpoint}"))
    }

    /// Connects to the first endpoint that answers.
    pub async fn connect_any(&self) -> anyhow::Result<(String, Channel)> {
        let mut last = anyhow!("no endpoint given");
        for e in &self.endpoints {
            match self.connect(e).await {
                Ok(ch) => return Ok((e.clone(), ch)),
                Err(err) => last = err,
            }
        }
        Err(last.context("no node of the hub answered (is `kizuna demo` running?)"))
    }

    /// The leader's endpoint when a node refused because it is not the leader.
    pub fn leader_hint(&self, status: &tonic::Status) -> Option<String> {
        status.metadata().get(LEADER_HINT_KEY).and_then(|v| v.to_str().ok()).map(|a| self.endpoint_of(a))
    }

    /// A node's public address as an endpoint of this target (its scheme).
    pub fn endpoint_of(&self, addr: &str) -> String {
        with_scheme(addr, if self.tls.is_some() { "https" } else { "http" })
    }
}

fn with_scheme(addr: &str, scheme: &str) -> String {
    if addr.contains("://") { addr.to_owned() } else { format!("{scheme}://{addr}") }
}
