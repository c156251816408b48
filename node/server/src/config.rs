//! The TOML topology of a hub: its nodes, their regions and addresses, the Raft timers, and
//! its federation peers.
//!
//! Validation names the offending field so that an operator can fix the file without reading
//! code.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kizuna_domain::federation::{HubKeyId, HubName};
use serde::Deserialize;

use crate::federation::{Peer, Trust, VerifyKey};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid topology: {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("node {0:?} is not in the topology (known nodes: {1})")]
    UnknownNode(String, String),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), reason: reason.into() }
}

/// A whole hub: one Raft group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    pub hub: HubSection,
    #[serde(default)]
    pub raft: RaftTimers,
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeConfig>,
    /// TLS material; without it a node only runs with an explicit `--insecure`.
    pub tls: Option<TlsSection>,
    /// Hub↔hub federation; without it the hub federates with nobody.
    pub federation: Option<FederationSection>,
    /// E-mail notices of unread news; without it the hub sends none.
    #[serde(default)]
    pub notifications: Option<NotificationsSection>,
    /// Limits of attached files and their collection (defaults when absent).
    #[serde(default)]
    pub attachments: AttachmentsSection,
    /// Encryption at rest; without it the nodes seal nothing they store (and say so).
    #[serde(default)]
    pub encryption: Option<EncryptionSection>,
}

/// The master keys of encryption at rest (docs/security.md, "Encryption at rest"). Every node
/// of a hub holds the same files; they wrap the hub's data keys and never enter a data
/// directory, the log or a backup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// The current master key: 32 random bytes in base64 (`kizuna keys new-master FILE`),
    /// readable by the node's user only. A path starting with `$CREDENTIALS_DIRECTORY/` is a
    /// systemd credential (`LoadCredential=`).
    pub master_key_file: PathBuf,
    /// Master keys being rotated out: they still unwrap the data keys they wrapped until
    /// `kizuna admin rotate-keys` has rewrapped them under the current one.
    #[serde(default)]
    pub previous_master_key_files: Vec<PathBuf>,
}

impl EncryptionSection {
    /// `dir/master.key`, made now (random, readable by its owner only) unless it exists: the
    /// demo's and the tests' hubs, whose nodes all run on this machine.
    pub fn generated_in(dir: &Path) -> Result<Self, kizuna_store::MasterKeyError> {
        let path = dir.join("master.key");
        if !path.exists() {
            kizuna_store::MasterKey::create(&path)?;
        }
        Ok(Self { master_key_file: path, previous_master_key_files: Vec::new() })
    }

    /// The key files as the node reads them (a systemd credential resolved).
    pub fn resolved(&self) -> Result<(PathBuf, Vec<PathBuf>), ConfigError> {
        let previous = self.previous_master_key_files.iter().map(|p| credential_path(p)).collect::<Result<_, _>>()?;
        Ok((credential_path(&self.master_key_file)?, previous))
    }
}

/// `path`, with a leading `$CREDENTIALS_DIRECTORY/` replaced by systemd's credential directory.
fn credential_path(path: &Path) -> Result<PathBuf, ConfigError> {
    let Ok(name) = path.strip_prefix("$CREDENTIALS_DIRECTORY") else { return Ok(path.to_owned()) };
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Ok(PathBuf::from(dir).join(name)),
        None => Err(invalid("encryption", "$CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential=")),
    }
}

/// What a hub accepts as attachments and how long unused ones stay (see `attachments/`).
/// Every node of a hub should have the same values: each enforces its own on the uploads it
/// receives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsSection {
    /// The largest file, in MiB (the default takes a one-minute phone video).
    pub max_file_mib: u64,
    /// All stored files of the hub together, in GiB (identical files count once).
    pub quota_gib: u64,
    /// How long a file no post shows (never posted, or its post deleted) stays before it is
    /// removed (default: a day).
    pub grace_seconds: u64,
    /// How often the leader looks for files to remove.
    pub collect_every_seconds: u64,
}

impl Default for AttachmentsSection {
    fn default() -> Self {
        Self { max_file_mib: 100, quota_gib: 100, grace_seconds: 24 * 60 * 60, collect_every_seconds: 600 }
    }
}

/// How a hub sends notices (see `notifier.rs`): e-mail through its SMTP relay, Web Push with
/// its VAPID key, and the delays. Each channel is optional: without `smtp_host` no mail,
/// without `vapid_private_key_file` no push.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsSection {
    pub smtp_host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The sender, e.g. `Kizuna <kizuna@example.jp>` (required with `smtp_host`).
    pub from: Option<String>,
    pub username: Option<String>,
    /// A file holding the SMTP password (its first line), so it is not in the hub file.
    pub password_file: Option<PathBuf>,
    /// How long news may stay unread before its notice is sent.
    #[serde(default = "default_notice_delay")]
    pub delay_seconds: u64,
    /// The period of a digest (members who chose one mail for all their rooms).
    #[serde(default = "default_digest_period")]
    pub digest_minutes: u64,
    /// The first retry's wait after a failed send (doubling per failure, up to an hour).
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
    /// Web Push: the hub's VAPID private key (P-256; `kizuna admin vapid-key --out FILE` makes
    /// one). Absent: no push notices, and browsers are not offered them.
    pub vapid_private_key_file: Option<PathBuf>,
    /// Who runs the hub, for push services to contact: a `mailto:` or `https:` URL (required
    /// with the key).
    pub vapid_subject: Option<String>,
    /// Accept push endpoints on plain http to 127.0.0.1 / [::1] (tests, a relay on the same
    /// machine). Off: only https endpoints.
    #[serde(default)]
    pub push_allow_loopback_http: bool,
}

/// How the connection to the SMTP relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plaintext (a relay on the same host or a test server only).
    None,
    /// STARTTLS on the submission port (required: no fallback to plaintext).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

fn default_notice_delay() -> u64 {
    300
}

fn default_digest_period() -> u64 {
    60
}

fn default_retry() -> u64 {
    kizuna_domain::notify::RETRY_FIRST_MS / 1000
}

/// This hub's federation identity and its peers (see `docs/federation.md`). The hub's name in
/// the federation is `[hub].name`, so a hub has one name, not two that could disagree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// PKCS#8 file (PEM or DER) of this hub's ed25519 signing key.
    pub signing_key: PathBuf,
    /// Id of that key, as peers list it in their `verify_keys`.
    pub key_id: String,
    #[serde(default)]
    pub peers: Vec<PeerSection>,
}

/// A peer hub: trust is configured, never discovered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The peer's hub name, e.g. `gunma`.
    pub name: String,
    /// `host:port` of the peer's federation listeners, nodes in different regions.
    pub endpoints: Vec<String>,
    /// The peer hub's CA certificate (PEM), for mutual TLS.
    pub ca_cert: PathBuf,
    pub verify_keys: Vec<VerifyKeySection>,
}

/// One public key of a peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyKeySection {
    pub key_id: String,
    /// The raw 32-byte ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// An RFC 3339 date-time with an offset (an unquoted TOML date-time, e.g.
    /// `2027-04-01T00:00:00Z`); from then on the key verifies nothing.
    pub expires_at: toml::value::Datetime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Directory with `ca.pem` and `<node name>.pem` / `.key` (see `kizuna admin certs`).
    pub dir: PathBuf,
    /// How often a running node checks those files and takes up changed ones (milliseconds).
    #[serde(default = "default_reload_check_ms")]
    pub reload_check_ms: u64,
}

/// `host:port` with a host and a numeric port (`[::1]:7400` for IPv6): a federation endpoint.
fn is_host_and_port(endpoint: &str) -> bool {
    endpoint.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn default_reload_check_ms() -> u64 {
    5_000
}

impl TlsSection {
    /// The certificates in `dir`, checked for changes at the default interval.
    pub fn in_dir(dir: PathBuf) -> Self {
        Self { dir, reload_check_ms: default_reload_check_ms() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Short name of the hub, e.g. `tochigi`. Used as the Raft cluster name.
    pub name: String,
    /// Regions where leadership should live when they are healthy (in the prefecture, near most
    /// users). Empty: no preference.
    #[serde(default)]
    pub preferred_regions: Vec<String>,
    /// Accept voters placed so that one region's loss may stop the hub (development only).
    #[serde(default)]
    pub allow_unsafe_placement: bool,
}

/// Raft timers in milliseconds. The defaults suit regions 10–30 ms apart: a heartbeat every
/// 100 ms and an election after 300–500 ms without one, with pre-vote, so a leader's loss costs
/// about 1.2 s of writes at 20 ms RTT while slow links and a returning cut-off node cause no
/// election (docs/benchmarks.md, "Failover"). For slower links keep `election_timeout_min_ms`
/// at ten or more round trips and the heartbeat at a third of it or less: openraft also uses
/// the heartbeat interval as the heartbeat's own timeout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimers {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many applied entries since the last one (or 256 MiB of
    /// log; `snapshot_policy.rs`).
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the last snapshot, so lagging followers can catch up
    /// without a snapshot.
    pub keep_entries_after_snapshot: u64,
    /// Ask the voters first whether they would vote before starting an election with a new
    /// term (Raft's pre-vote): a node that was cut off, or whose link is slow, then cannot
    /// depose a leader the others still hear.
    pub pre_vote: bool,
}

impl Default for RaftTimers {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 500,
            snapshot_after_entries: 100_000,
            keep_entries_after_snapshot: 5_000,
            pre_vote: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: u64,
    pub name: String,
    pub region: Option<String>,
    /// Address of the internal Raft service (node↔node).
    pub raft_addr: SocketAddr,
    /// Address of the public gRPC API.
    pub api_addr: SocketAddr,
    /// The URL browsers reach this node's public port at, when it is not `https://<api_addr>`
    /// (a DNS name, a port forwarded by a router): `scheme://host[:port]`, no path. Every node
    /// of the hub allows it as a cross-origin caller and `HubService.GetHubInfo` lists it.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Address of the hub↔hub federation listener (mutual TLS with the configured peers).
    /// None: this node serves no federation.
    #[serde(default)]
    pub federation_addr: Option<SocketAddr>,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`, plain HTTP: put it on the
    /// operators' network). None: no metrics endpoint.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Voters count for the quorum; a learner only replicates (extra regions, local reads).
    #[serde(default = "default_true")]
    pub voter: bool,
    /// Peers this node reaches through another address: peer raft address → address to dial
    /// (a relay or tunnel; the chaos harness routes every link through a fault proxy this way).
    #[serde(default)]
    pub routes: std::collections::HashMap<String, String>,
    /// Never in a file: a test's stand-in for a node still running an older build during a
    /// rolling upgrade, which applies the log up to this version only. `None`: this build's
    /// (`kizuna_domain::APPLY_VERSION`).
    #[serde(skip)]
    pub older_build_apply_version: Option<u32>,
}

/// A master key inside a data directory would travel with every copy of it: refused.
fn check_outside_data_dirs(encryption: &EncryptionSection, nodes: &[NodeConfig]) -> Result<(), ConfigError> {
    let keys = std::iter::once(&encryption.master_key_file).chain(&encryption.previous_master_key_files);
    for key in keys {
        let key_abs = std::path::absolute(key).unwrap_or_else(|_| key.clone());
        for node in nodes {
            let dir = std::path::absolute(&node.data_dir).unwrap_or_else(|_| node.data_dir.clone());
            if key_abs.starts_with(&dir) {
                return Err(invalid(
                    "encryption.master_key_file",
                    format!(
                        "{} is inside node {}'s data directory: keep master keys outside it",
                        key.display(),
                        node.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn default_true() -> bool {
    true
}

impl NodeConfig {
    /// The region; validation guarantees it is present.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("")
    }

    /// The host of this node's `public_url` (an IPv6 address without its brackets), if it has
    /// one: its certificate must name it.
    pub fn public_host(&self) -> Option<String> {
        url_host(self.public_url.as_deref()?)
    }
}

/// The host of `url` (an IPv6 address without its brackets), lower case.
pub fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
}

impl HubConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_owned(), source },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: HubConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: PathBuf::from("<config>"), source })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hub.name.trim().is_empty() {
            return Err(invalid("hub.name", "must not be empty"));
        }
        if self.nodes.is_empty() {
            return Err(invalid("node", "a hub needs at least one [[node]]"));
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = |f: &str| format!("node[{i}].{f}");
            if node.id == 0 {
                return Err(invalid(at("id"), "0 is reserved; ids start at 1"));
            }
            if !ids.insert(node.id) {
                return Err(invalid(at("id"), format!("duplicate id {}", node.id)));
            }
            if node.name.trim().is_empty() {
                return Err(invalid(at("name"), "must not be empty"));
            }
            if !names.insert(node.name.as_str()) {
                return Err(invalid(at("name"), format!("duplicate name {:?}", node.name)));
            }
            match node.region.as_deref().map(str::trim) {
                None => return Err(invalid(at("region"), "missing: every node sits in a region")),
                Some("") => return Err(invalid(at("region"), "must not be empty")),
                Some(_) => {}
            }
            let federation = node.federation_addr.map(|a| ("federation_addr", a));
            for (field, addr) in
                [("raft_addr", node.raft_addr), ("api_addr", node.api_addr)].into_iter().chain(federation)
            {
                if !addrs.insert(addr) {
                    return Err(invalid(at(field), format!("duplicate address {addr}")));
                }
            }
            if let Some(url) = &node.public_url {
                origin_of(url).map_err(|reason| invalid(at("public_url"), reason))?;
            }
            if node.federation_addr.is_some() && self.federation.is_none() {
                return Err(invalid(at("federation_addr"), "needs a [federation] section"));
            }
        }
        if !self.nodes.iter().any(|n| n.voter) {
            return Err(invalid("node", "at least one node must be a voter"));
        }
        if let Err(e) = crate::placement::check(self.voters().map(NodeConfig::region)) {
            if !self.hub.allow_unsafe_placement {
                return Err(invalid(
                    "node (voter placement)",
                    format!("{e}; set hub.allow_unsafe_placement = true to run anyway"),
                ));
            }
            tracing::warn!("UNSAFE PLACEMENT accepted by hub.allow_unsafe_placement: {e}");
        }
        for (i, region) in self.hub.preferred_regions.iter().enumerate() {
            if !self.voters().any(|n| n.region() == region) {
                return Err(invalid(
                    format!("hub.preferred_regions[{i}]"),
                    format!("no voter sits in region {region:?}"),
                ));
            }
        }
        if self.tls.as_ref().is_some_and(|t| t.reload_check_ms < 100) {
            return Err(invalid("tls.reload_check_ms", "must be at least 100"));
        }
        if let Some(federation) = &self.federation {
            if self.tls.is_none() {
                return Err(invalid("federation", "needs [tls]: hub-to-hub traffic is mutual TLS only"));
            }
            federation.trust(&self.hub.name)?;
            // The listener's client roots are the peers' CAs: with none it could admit nobody.
            if federation.peers.is_empty() && self.nodes.iter().any(|n| n.federation_addr.is_some()) {
                return Err(invalid("federation.peers", "a node has a federation_addr but no peer is listed"));
            }
        }
        if let Some(encryption) = &self.encryption {
            check_outside_data_dirs(encryption, &self.nodes)?;
        }
        let t = &self.raft;
        if t.heartbeat_interval_ms == 0 {
            return Err(invalid("raft.heartbeat_interval_ms", "must be > 0"));
        }
        if t.election_timeout_min_ms <= t.heartbeat_interval_ms {
            return Err(invalid("raft.election_timeout_min_ms", "must be larger than raft.heartbeat_interval_ms"));
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            return Err(invalid("raft.election_timeout_max_ms", "must be larger than raft.election_timeout_min_ms"));
        }
        Ok(())
    }

    /// The master keys of encryption at rest, read from their files; none without `[encryption]`.
    pub fn master_keys(&self) -> Result<kizuna_store::MasterKeys, ConfigError> {
        let Some(encryption) = &self.encryption else { return Ok(kizuna_store::MasterKeys::none()) };
        let (current, previous) = encryption.resolved()?;
        kizuna_store::MasterKeys::load(&current, &previous)
            .map_err(|e| invalid("encryption.master_key_file", e.to_string()))
    }

    pub fn node(&self, name: &str) -> Result<&NodeConfig, ConfigError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let known: Vec<_> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            ConfigError::UnknownNode(name.to_owned(), known.join(", "))
        })
    }

    pub fn voters(&self) -> impl Iterator<Item = &NodeConfig> {
        self.nodes.iter().filter(|n| n.voter)
    }

    /// The nodes browsers can reach, as they reach them: each node's `public_url`, else
    /// `https://<api_addr>` (`http://` when the public port runs without TLS). A node listening
    /// on an unspecified address (0.0.0.0, ::) without a `public_url` has no address a browser
    /// could use, so it is left out.
    pub fn public_endpoints(&self, tls: bool) -> Vec<PublicEndpoint> {
        let scheme = if tls { "https" } else { "http" };
        let url = |n: &NodeConfig| match &n.public_url {
            // `validate` refused a public_url that is not an origin.
            Some(url) => origin_of(url).ok(),
            None if n.api_addr.ip().is_unspecified() => None,
            None => origin_of(&format!("{scheme}://{}", n.api_addr)).ok(),
        };
        let endpoint = |n: &NodeConfig| {
            let url = url(n)?;
            Some(PublicEndpoint { id: n.id, name: n.name.clone(), region: n.region().to_owned(), url })
        };
        self.nodes.iter().filter_map(endpoint).collect()
    }

    /// Places every node's data under `root/<node name>` (used by `kizuna demo --data-dir`).
    pub fn with_data_root(mut self, root: &Path) -> Self {
        for node in &mut self.nodes {
            node.data_dir = root.join(&node.name);
        }
        self
    }
}

/// A node as browsers reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicEndpoint {
    pub id: u64,
    pub name: String,
    pub region: String,
    /// Its origin, as a browser writes it in `Origin` headers: `scheme://host[:port]`, the
    /// scheme and host in lower case, the port only when it is not the scheme's default.
    pub url: String,
}

/// The origin of a public URL (see [`PublicEndpoint::url`]), or why it is not one: only
/// http(s), a host, an optional port, nothing after them (a path would not change where a
/// browser's requests go, so it can only be a mistake).
pub fn origin_of(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let default_port = match scheme.as_deref() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(format!("{url:?}: must start with https:// (or http:// without TLS)")),
    };
    let authority = uri.authority().ok_or_else(|| format!("{url:?}: names no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{url:?}: must not carry a user name or password"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{url:?}: must not have a path or query (scheme://host[:port] only)"));
    }
    let host = authority.host().to_ascii_lowercase();
    let scheme = scheme.unwrap_or_default();
    Ok(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

impl FederationSection {
    /// The hub's name in the federation and its signing key id, validated.
    pub fn identity_names(&self, hub: &str) -> Result<(HubName, HubKeyId), ConfigError> {
        let hub = HubName::new(hub).map_err(|e| invalid("hub.name", format!("with [federation]: {e}")))?;
        let key_id = HubKeyId::new(self.key_id.as_str()).map_err(|e| invalid("federation.key_id", e.to_string()))?;
        Ok((hub, key_id))
    }

    /// The peers, validated, as the verifier uses them. `hub` is this hub's `[hub].name`.
    pub fn trust(&self, hub: &str) -> Result<Trust, ConfigError> {
        let (this, _) = self.identity_names(hub)?;
        let mut peers: Vec<Peer> = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            let at = |f: &str| format!("federation.peers[{i}].{f}");
            let name = HubName::new(p.name.as_str()).map_err(|e| invalid(at("name"), e.to_string()))?;
            if name == this {
                return Err(invalid(at("name"), "a hub is not its own peer"));
            }
            if peers.iter().any(|q| q.name == name) {
                return Err(invalid(at("name"), format!("duplicate peer {name}")));
            }
            if p.endpoints.is_empty() || p.endpoints.iter().any(|e| e.trim().is_empty()) {
                return Err(invalid(at("endpoints"), "list at least one host:port, none empty"));
            }
            if let Some(bad) = p.endpoints.iter().find(|e| !is_host_and_port(e)) {
                return Err(invalid(at("endpoints"), format!("{bad:?} is not host:port (the port is required)")));
            }
            let verify_keys = verify_keys(&p.verify_keys, &at("verify_keys"))?;
            let endpoints = p.endpoints.clone();
            peers.push(Peer { name, endpoints, ca_cert: p.ca_cert.clone(), verify_keys });
        }
        Ok(Trust::new(this, peers))
    }
}

fn verify_keys(keys: &[VerifyKeySection], field: &str) -> Result<Vec<VerifyKey>, ConfigError> {
    if keys.is_empty() {
        return Err(invalid(field, "list at least one key"));
    }
    let mut out: Vec<VerifyKey> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let at = |f: &str| format!("{field}[{i}].{f}");
        let key_id = HubKeyId::new(k.key_id.as_str()).map_err(|e| invalid(at("key_id"), e.to_string()))?;
        if out.iter().any(|o| o.key_id == key_id) {
            return Err(invalid(at("key_id"), format!("duplicate key id {key_id}")));
        }
        let public_key =
            parse_public_key(&k.public_key).ok_or_else(|| invalid(at("public_key"), "must be 64 hex digits"))?;
        let expires_at_s = unix_seconds(&k.expires_at).map_err(|reason| invalid(at("expires_at"), reason))?;
        out.push(VerifyKey { key_id, public_key, expires_at_s });
    }
    Ok(out)
}

/// A raw ed25519 public key in hex (either case).
fn parse_public_key(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.trim().as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

/// Seconds since the Unix epoch of a TOML offset date-time. A local date or time is refused:
/// an expiry must not depend on the time zone of the machine that reads the file.
fn unix_seconds(dt: &toml::value::Datetime) -> Result<u64, String> {
    use toml::value::Offset;
    let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err(format!("{dt} needs a date, a time and an offset, e.g. 2027-04-01T00:00:00Z"));
    };
    let offset_s = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes) * 60,
    };
    let days = days_from_civil(i64::from(date.year), i64::from(date.month), i64::from(date.day));
    let local = days * 86_400 + i64::from(time.hour) * 3600 + i64::from(time.minute) * 60 + i64::from(time.second);
    u64::try_from(local - offset_s).map_err(|_| format!("{dt} is before 1970"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [hub]
        name = "t"
        [[node]]
        id = 3
        name = "c"
        region = "r3"
        raft_addr = "127.0.0.1:7103"
        api_addr = "127.0.0.1:7003"
        data_dir = "data/c"
        [[node]]
        id = 1
        name = "a"
        region = "r1"
        raft_addr = "127.0.0.1:7101"
        api_addr = "127.0.0.1:7001"
        data_dir = "data/a"
        [[node]]
        id = 2
        name = "b"
        region = "r2"
        raft_addr = "127.0.0.1:7102"
        api_addr = "127.0.0.1:7002"
        data_dir = "data/b"
    "#;

    fn err_of(text: &str) -> String {
        HubConfig::parse(text).expect_err("must be rejected").to_string()
    }

    #[test]
    fn parses_a_good_file() {
        let c = HubConfig::parse(GOOD).unwrap();
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.node("b").unwrap().region(), "r2");
        assert_eq!((c.raft.heartbeat_interval_ms, c.raft.election_timeout_max_ms, c.raft.pre_vote), (100, 500, true));
    }

    #[test]
    fn notifications_are_optional_with_defaults() {
        assert!(HubConfig::parse(GOOD).unwrap().notifications.is_none());
        let section = "\n[notifications]\nsmtp_host = \"mail.example.jp\"\nfrom = \"Kizuna <k@example.jp>\"\n";
        let n = HubConfig::parse(&format!("{GOOD}{section}")).unwrap().notifications.expect("the section");
        assert_eq!(
            (n.tls, n.smtp_port, n.delay_seconds, n.digest_minutes, n.retry_seconds),
            (SmtpTls::Starttls, None, 300, 60, 30)
        );
        assert!(n.vapid_private_key_file.is_none() && !n.push_allow_loopback_http, "push off by default");
        let push_only =
            "\n[notifications]\nvapid_private_key_file = \"vapid.key\"\nvapid_subject = \"mailto:k@example.jp\"\n";
        let n = HubConfig::parse(&format!("{GOOD}{push_only}")).unwrap().notifications.expect("the section");
        assert!(n.smtp_host.is_none() && n.vapid_private_key_file.is_some(), "push without mail");
        let plain = HubConfig::parse(&format!("{GOOD}{section}tls = \"none\"\ndelay_seconds = 1\n")).unwrap();
        let n = plain.notifications.expect("the section");
        assert_eq!((n.tls, n.delay_seconds), (SmtpTls::None, 1));
        assert!(HubConfig::parse(&format!("{GOOD}{section}tls = \"ssl\"\n")).is_err(), "an unknown mode");
        assert!(HubConfig::parse(&format!("{GOOD}{section}smtp_password = \"x\"\n")).is_err(), "no password inline");
    }

    #[test]
    fn duplicate_id_names_the_field() {
        let e = err_of(&GOOD.replace("id = 2", "id = 1"));
        assert!(e.contains("node[2].id") && e.contains("duplicate id 1"), "{e}");
    }

    #[test]
    fn duplicate_address_names_the_field() {
        let e = err_of(&GOOD.replace("127.0.0.1:7102", "127.0.0.1:7101"));
        assert!(e.contains("node[2].raft_addr") && e.contains("duplicate address"), "{e}");
    }

    #[test]
    fn missing_region_names_the_field() {
        let e = err_of(&GOOD.replace("region = \"r2\"", ""));
        assert!(e.contains("node[2].region") && e.contains("missing"), "{e}");
    }

    #[test]
    fn unknown_node_lists_the_known_ones() {
        let c = HubConfig::parse(GOOD).unwrap();
        let e = c.node("zz").unwrap_err().to_string();
        assert!(e.contains("\"zz\"") && e.contains("c, a, b"), "{e}");
    }

    #[test]
    fn bad_timers_are_refused() {
        let e = err_of(&format!("{GOOD}\n[raft]\nheartbeat_interval_ms = 5000\n"));
        assert!(e.contains("raft.election_timeout_min_ms"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = err_of(&GOOD.replace("name = \"t\"", "name = \"t\"\nnmae = 1"));
        assert!(e.contains("nmae"), "{e}");
    }

    #[test]
    fn unsafe_placement_is_refused_with_the_reason() {
        let e = err_of(&GOOD.replace("region = \"r3\"", "region = \"r1\""));
        assert!(e.contains("voter placement") && e.contains("only 2 region(s) (r1: 2, r2: 1)"), "{e}");
        let e =
            err_of(&GOOD.replace("region = \"r3\"", "region = \"r1\"").replace("region = \"r2\"", "region = \"r1\""));
        assert!(e.contains("only 1 region"), "{e}");
    }

    #[test]
    fn unsafe_placement_can_be_allowed_explicitly() {
        let text = GOOD
            .replace("region = \"r3\"", "region = \"r1\"")
            .replace("name = \"t\"", "name = \"t\"\nallow_unsafe_placement = true");
        HubConfig::parse(&text).expect("allowed");
    }

    #[test]
    fn preferred_regions_must_hold_voters() {
        let e = err_of(&GOOD.replace("name = \"t\"", "name = \"t\"\npreferred_regions = [\"nowhere\"]"));
        assert!(e.contains("hub.preferred_regions[0]"), "{e}");
    }

    #[test]
    fn public_urls_default_to_the_api_address() {
        let c = HubConfig::parse(GOOD).unwrap();
        let urls = |tls| c.public_endpoints(tls).into_iter().map(|e| e.url).collect::<Vec<_>>();
        assert_eq!(urls(true), ["https://127.0.0.1:7003", "https://127.0.0.1:7001", "https://127.0.0.1:7002"]);
        assert_eq!(urls(false), ["http://127.0.0.1:7003", "http://127.0.0.1:7001", "http://127.0.0.1:7002"]);
        let a = &c.public_endpoints(true)[1];
        assert_eq!((a.id, a.name.as_str(), a.region.as_str()), (1, "a", "r1"));
        let v6 = HubConfig::parse(&GOOD.replace("api_addr = \"127.0.0.1:7001\"", "api_addr = \"[::1]:7001\"")).unwrap();
        assert_eq!(v6.public_endpoints(true)[1].url, "https://[::1]:7001");
    }

    #[test]
    fn a_public_url_is_used_as_the_browser_writes_its_origin() {
        let with = |url: &str| {
            GOOD.replace(
                "api_addr = \"127.0.0.1:7001\"",
                &format!("api_addr = \"127.0.0.1:7001\"\npublic_url = \"{url}\""),
            )
        };
        let url_of_a = |text: &str| HubConfig::parse(text).unwrap().public_endpoints(true)[1].url.clone();
        assert_eq!(url_of_a(&with("https://Kizuna-A.example.jp:7001/")), "https://kizuna-a.example.jp:7001");
        // The scheme's default port is left out, as in a browser's Origin header.
        assert_eq!(url_of_a(&with("https://kizuna-a.example.jp:443")), "https://kizuna-a.example.jp");
        assert_eq!(url_of_a(&with("http://192.168.1.20:80")), "http://192.168.1.20");
        for (url, reason) in [
            ("ftp://kizuna-a.example.jp", "must start with https://"),
            ("kizuna-a.example.jp:7001", "must start with https://"),
            ("https://kizuna-a.example.jp:7001/app", "must not have a path"),
            ("https://kizuna-a.example.jp/?x=1", "must not have a path or query"),
            ("https://user:pw@kizuna-a.example.jp", "user name or password"),
            ("https://", "not a URL"),
        ] {
            let e = err_of(&with(url));
            assert!(e.contains("node[1].public_url") && e.contains(reason), "{url}: {e}");
        }
    }

    #[test]
    fn a_node_on_an_unspecified_address_needs_a_public_url() {
        let any = GOOD.replace("api_addr = \"127.0.0.1:7001\"", "api_addr = \"0.0.0.0:7001\"");
        let names = |text: &str| {
            HubConfig::parse(text).unwrap().public_endpoints(true).into_iter().map(|e| e.name).collect::<Vec<_>>()
        };
        assert_eq!(names(&any), ["c", "b"]);
        let published = any.replace(
            "api_addr = \"0.0.0.0:7001\"",
            "api_addr = \"0.0.0.0:7001\"\npublic_url = \"https://kizuna-a.example.jp:7001\"",
        );
        assert_eq!(names(&published), ["c", "a", "b"]);
    }

    const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    /// GOOD with hub name `tochigi` and a federation section with one peer.
    #[test]
    fn federation_endpoints_name_their_port() {
        let with = |endpoints: &str| federated("").replace("[\"127.0.0.1:7400\", \"127.0.0.2:7400\"]", endpoints);
        assert!(HubConfig::parse(&with("[\"gunma.example.jp:7400\", \"[::1]:7400\"]")).is_ok());
        for bad in ["[\"gunma.example.jp\"]", "[\":7400\"]", "[\"gunma:http\"]"] {
            let e = err_of(&with(bad));
            assert!(e.contains("is not host:port"), "{bad}: {e}");
        }
    }

    fn federated(peer_extra: &str) -> String {
        format!(
            "{}\n[federation]\nsigning_key = \"keys/tochigi-2026.key\"\nkey_id = \"tochigi-2026\"\n\
             [[federation.peers]]\nname = \"gunma\"\nendpoints = [\"127.0.0.1:7400\", \"127.0.0.2:7400\"]\n\
             ca_cert = \"gunma-ca.pem\"\n{peer_extra}\n\
             verify_keys = [{{ key_id = \"gunma-2026\", public_key = \"{KEY_A}\", expires_at = 2027-04-01T00:00:00Z }},\n\
             {{ key_id = \"gunma-2025\", public_key = \"{KEY_A}\", expires_at = 2026-02-28T23:30:15+09:00 }}]\n\
             [tls]\ndir = \"certs\"\n",
            GOOD.replace("name = \"t\"", "name = \"tochigi\"")
        )
    }

    #[test]
    fn federation_section_parses_into_the_trust_list() {
        let c = HubConfig::parse(&federated("")).unwrap();
        let f = c.federation.as_ref().unwrap();
        let (hub, key_id) = f.identity_names(&c.hub.name).unwrap();
        assert_eq!((hub.as_str(), key_id.as_str()), ("tochigi", "tochigi-2026"));
        let trust = f.trust(&c.hub.name).unwrap();
        let gunma = trust.peer("gunma").unwrap();
        assert_eq!(gunma.endpoints, ["127.0.0.1:7400", "127.0.0.2:7400"]);
        assert_eq!(gunma.verify_keys[0].public_key[..3], [0x00, 0x11, 0x22]);
        assert_eq!(gunma.verify_keys[0].public_key[31], 0xff);
        // Checked against Python's calendar.timegm / datetime.timestamp.
        assert_eq!(gunma.verify_keys[0].expires_at_s, 1_806_537_600);
        assert_eq!(gunma.verify_keys[1].expires_at_s, 1_772_289_015);
        assert!(HubConfig::parse(GOOD).unwrap().federation.is_none());
    }

    #[test]
    fn federation_needs_tls_and_its_address_is_checked() {
        let e = err_of(&federated("").replace("[tls]\ndir = \"certs\"\n", ""));
        assert!(e.contains("federation: needs [tls]"), "{e}");
        let with_addr = |addr: &str| {
            federated("").replace(
                "api_addr = \"127.0.0.1:7002\"",
                &format!("api_addr = \"127.0.0.1:7002\"\nfederation_addr = \"{addr}\""),
            )
        };
        let c = HubConfig::parse(&with_addr("127.0.0.1:7402")).unwrap();
        assert_eq!(c.node("b").unwrap().federation_addr, Some("127.0.0.1:7402".parse().unwrap()));
        let e = err_of(&with_addr("127.0.0.1:7001"));
        assert!(e.contains("node[2].federation_addr") && e.contains("duplicate address"), "{e}");
        let e = err_of(&GOOD.replace(
            "api_addr = \"127.0.0.1:7002\"",
            "api_addr = \"127.0.0.1:7002\"\nfederation_addr = \"127.0.0.1:7402\"",
        ));
        assert!(e.contains("node[2].federation_addr: needs a [federation] section"), "{e}");
        let lonely = format!(
            "{}\n[tls]\ndir = \"certs\"\n[federation]\nsigning_key = \"k\"\nkey_id = \"t1\"\n",
            GOOD.replace("name = \"t\"", "name = \"tochigi\"")
        );
        HubConfig::parse(&lonely).expect("federation without peers, served by no node");
        let e = err_of(&lonely.replace(
            "api_addr = \"127.0.0.1:7002\"",
            "api_addr = \"127.0.0.1:7002\"\nfederation_addr = \"127.0.0.1:7402\"",
        ));
        assert!(e.contains("federation.peers: a node has a federation_addr but no peer is listed"), "{e}");
    }

    #[test]
    fn dates_convert_to_unix_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1) * 86_400, 951_868_800);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn federation_needs_a_valid_hub_name() {
        let e = err_of(&federated("").replace("name = \"tochigi\"", "name = \"Tochigi\""));
        assert!(e.contains("hub.name") && e.contains("with [federation]"), "{e}");
    }

    #[test]
    fn federation_mistakes_name_the_field() {
        let cases = [
            (federated("").replace("key_id = \"tochigi-2026\"", "key_id = \"a b\""), "federation.key_id"),
            (federated("").replace("name = \"gunma\"", "name = \"tochigi\""), "not its own peer"),
            (federated("").replace("name = \"gunma\"", "name = \"Gunma\""), "federation.peers[0].name"),
            (federated("").replace("[\"127.0.0.1:7400\", \"127.0.0.2:7400\"]", "[]"), "peers[0].endpoints"),
            (federated("").replace("gunma-2025", "gunma-2026"), "verify_keys[1].key_id: duplicate"),
            (federated("").replacen(KEY_A, "abcd", 1), "verify_keys[0].public_key"),
            (federated("").replacen(KEY_A, &KEY_A.replace('0', "g"), 1), "verify_keys[0].public_key"),
            (federated("").replace("2027-04-01T00:00:00Z", "2027-04-01"), "verify_keys[0].expires_at"),
            (
                federated("").replace("2027-04-01T00:00:00Z", "2027-04-01T00:00:00"),
                "needs a date, a time and an offset",
            ),
            (federated("").replace("2027-04-01T00:00:00Z", "1969-12-31T00:00:00Z"), "before 1970"),
            (federated("surprise = 1"), "surprise"),
        ];
        for (text, expected) in cases {
            let e = err_of(&text);
            assert!(e.contains(expected), "expected {expected:?} in {e}");
        }
        let two = format!(
            "{}\n[[federation.peers]]\nname = \"gunma\"\nendpoints = [\"x:1\"]\nca_cert = \"c\"\n\
            verify_keys = [{{ key_id = \"k\", public_key = \"{KEY_A}\", expires_at = 2027-01-01T00:00:00Z }}]\n",
            federated("")
        );
        assert!(err_of(&two).contains("federation.peers[1].name: duplicate peer gunma"), "{}", err_of(&two));
        let keyless = format!(
            "{}\n[tls]\ndir = \"certs\"\n[federation]\nsigning_key = \"k\"\nkey_id = \"t1\"\n[[federation.peers]]\n\
             name = \"gunma\"\nendpoints = [\"x:1\"]\nca_cert = \"c\"\nverify_keys = []\n",
            GOOD.replace("name = \"t\"", "name = \"tochigi\"")
        );
        assert!(
            err_of(&keyless).contains("federation.peers[0].verify_keys: list at least one key"),
            "{}",
            err_of(&keyless)
        );
    }

    /// The compose file runs each node of its topology, at the address the topology gives it,
    /// published on the host at the port of its public URL.
    #[test]
    fn the_compose_file_matches_its_topology() {
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let hub = HubConfig::load(&top.join("cluster-config/container.toml")).expect("a valid topology");
        let compose = std::fs::read_to_string(top.join("ops/container/compose.yaml")).expect("the compose file");
        for node in &hub.nodes {
            let public_port = node.public_url.as_deref().and_then(|u| u.rsplit(':').next()).expect("a public port");
            let expected = [
                format!("command: [serve, --config, /etc/kizuna/hub.toml, --node, {}]", node.name),
                format!("hub: {{ ipv4_address: {} }}", node.raft_addr.ip()),
                format!("ports: [\"{public_port}:{}\"]", node.api_addr.port()),
                format!("- {0}:/var/lib/kizuna/data\n", node.name),
                "- keys:/var/lib/kizuna/keys:ro\n".to_owned(),
            ];
            for line in expected {
                assert!(compose.contains(&line), "{}: compose.yaml lacks {line:?}", node.name);
            }
            assert_eq!(node.api_addr.ip(), node.raft_addr.ip(), "{}: one address per container", node.name);
            assert!(node.data_dir.starts_with("/var/lib/kizuna/data"), "{}: data outside the volume", node.name);
        }
        assert_eq!(hub.tls.expect("[tls]").dir, Path::new("/var/lib/kizuna/certs"));
        let key = hub.encryption.expect("[encryption]").master_key_file;
        assert_eq!(key, Path::new("/var/lib/kizuna/keys/master.key"));
        assert!(
            compose.contains("command: [admin, master-key, --out, /var/lib/kizuna/keys/master.key, --keep-existing]")
        );
    }

    #[test]
    fn shipped_topologies_are_valid() {
        // `load` parses and validates; it never opens the key or certificate files a topology
        // names, so the federation examples are checked without their (generated) files.
        let shipped = [
            "dev.toml",
            "local-3region.toml",
            "tochigi.toml",
            "federation-tochigi.toml",
            "federation-gunma.toml",
            "container.toml",
        ];
        for f in shipped {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-config").join(f);
            HubConfig::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        // The two-hub example: each hub lists the other, at the other's federation addresses.
        let load =
            |f: &str| HubConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-config").join(f));
        let (tochigi, gunma) = (load("federation-tochigi.toml").unwrap(), load("federation-gunma.toml").unwrap());
        for (a, b) in [(&tochigi, &gunma), (&gunma, &tochigi)] {
            let peer = &a.federation.as_ref().unwrap().peers[0];
            assert_eq!(peer.name, b.hub.name);
            let addrs: Vec<String> = b.nodes.iter().filter_map(|n| n.federation_addr.map(|x| x.to_string())).collect();
            assert_eq!(peer.endpoints, addrs, "{} lists {}'s federation_addrs", a.hub.name, b.hub.name);
        }
    }
}
