//! The TOML topology of a hub: its nodes, their regions and addresses, and the Raft timers.
//!
//! Validation names the offending field so that an operator can fix the file without reading
//! code.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Directory with `ca.pem` and `<node name>.pem` / `.key` (see `kizuna admin certs`).
    pub dir: PathBuf,
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
/// 150 ms and an election after 1–2 s without one. For slower links keep
/// `election_timeout_min_ms` at ten or more round trips and the heartbeat at a third of it or less.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimers {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the last snapshot, so lagging followers can catch up
    /// without a snapshot.
    pub keep_entries_after_snapshot: u64,
}

impl Default for RaftTimers {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 150,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_after_entries: 20_000,
            keep_entries_after_snapshot: 5_000,
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
    pub data_dir: PathBuf,
    /// Voters count for the quorum; a learner only replicates (extra regions, local reads).
    #[serde(default = "default_true")]
    pub voter: bool,
    /// Peers this node reaches through another address: peer raft address → address to dial
    /// (a relay or tunnel; the chaos harness routes every link through a fault proxy this way).
    #[serde(default)]
    pub routes: std::collections::HashMap<String, String>,
}

fn default_true() -> bool {
    true
}

impl NodeConfig {
    /// The region; validation guarantees it is present.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("")
    }
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
            for (field, addr) in [("raft_addr", node.raft_addr), ("api_addr", node.api_addr)] {
                if !addrs.insert(addr) {
                    return Err(invalid(at(field), format!("duplicate address {addr}")));
                }
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

    pub fn node(&self, name: &str) -> Result<&NodeConfig, ConfigError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let known: Vec<_> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            ConfigError::UnknownNode(name.to_owned(), known.join(", "))
        })
    }

    pub fn voters(&self) -> impl Iterator<Item = &NodeConfig> {
        self.nodes.iter().filter(|n| n.voter)
    }

    /// Places every node's data under `root/<node name>` (used by `kizuna demo --data-dir`).
    pub fn with_data_root(mut self, root: &Path) -> Self {
        for node in &mut self.nodes {
            node.data_dir = root.join(&node.name);
        }
        self
    }
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
        assert_eq!(c.raft.heartbeat_interval_ms, 150);
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
    fn shipped_topologies_are_valid() {
        for f in ["dev.toml", "local-3region.toml", "tochigi.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-config").join(f);
            HubConfig::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}
