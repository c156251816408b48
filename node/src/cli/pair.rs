//! A two-hub federation on one machine: Tochigi and Gunma, three voters each in three regions
//! (one outside the prefecture), each hub with its own CA and node certificates (naming the
//! federation addresses), its own federation signing key, and a topology whose `[federation]`
//! lists the other hub (its name, every node's federation endpoint, its CA, its verify key).
//!
//! The one place that lays such a set-up out: `kizuna demo --federation` runs it in-process,
//! `kizuna admin federation pair` writes it for `kizuna serve` (the chaos harness's two-hub
//! topology), and docs/federation.md's steps were checked against it. It uses the same
//! helpers an operator does: [`crate::tls::generate`] (`kizuna admin certs`) and
//! [`super::federation::keygen`] (`kizuna admin federation keygen`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::HubConfig;

/// The hubs, their regions (the third outside the prefecture, so losing any one keeps a
/// quorum) and how their people address the prefecture.
pub const HUBS: [(&str, [&str; 3]); 2] =
    [("tochigi", ["utsunomiya", "oyama", "tokyo"]), ("gunma", ["maebashi", "takasaki", "osaka"])];

/// The demo's first port: clear of `kizuna demo` (7001–7003, 7101–7103).
pub const DEMO_BASE_PORT: u16 = 7600;

/// Ports a hub uses above its block (`base + 100 × hub`): API, Raft, federation, and the
/// proxies towards the peer (`--via-proxies`), each `+ 1 + node`.
const API: u16 = 0;
const RAFT: u16 = 10;
const FEDERATION: u16 = 20;
const PROXY: u16 = 30;
/// Ports one hub's block spans, from its first.
pub const PORTS_PER_HUB: u16 = 100;

/// The manifest written next to the hubs' files: what a runner (the demo, the chaos harness)
/// needs without parsing the topologies.
const MANIFEST: &str = "pair.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairLayout {
    pub base_port: u16,
    /// Whether each hub reaches its peer through `proxies` instead of directly.
    pub via_proxies: bool,
    pub hubs: Vec<HubLayout>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubLayout {
    pub name: String,
    /// The hub's folder: its certificates, signing key and node data.
    pub dir: PathBuf,
    /// The topology to pass to `kizuna serve --config`.
    pub config: PathBuf,
    /// The hub CA: clients trust it, the peer lists it as this hub's `ca_cert`.
    pub ca: PathBuf,
    pub signing_key: PathBuf,
    pub key_id: String,
    pub nodes: Vec<NodeLayout>,
    /// With `via_proxies`: where this hub dials its peer (`listen`, as listed in its
    /// `[federation.peers].endpoints`) and the peer's federation address behind it (`to`).
    pub proxies: Vec<ProxyLayout>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLayout {
    pub name: String,
    pub region: String,
    pub api_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    pub federation_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProxyLayout {
    pub listen: SocketAddr,
    pub to: SocketAddr,
}

fn port(base: u16, hub: usize, kind: u16, node: usize) -> anyhow::Result<SocketAddr> {
    let p = u32::from(base) + u32::from(PORTS_PER_HUB) * hub as u32 + u32::from(kind) + 1 + node as u32;
    let p = u16::try_from(p).with_context(|| format!("--base-port {base} leaves no room for port {p}"))?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
}

/// Where everything goes under `out` (absolute, so the topologies work from any directory).
pub fn layout(out: &Path, base_port: u16, via_proxies: bool) -> anyhow::Result<PairLayout> {
    let out = std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?;
    let year = 1970 + super::federation::now_s() / 31_556_952;
    let mut hubs = Vec::new();
    for (h, (name, regions)) in HUBS.iter().enumerate() {
        let mut nodes = Vec::new();
        for (i, region) in regions.iter().enumerate() {
            nodes.push(NodeLayout {
                name: format!("{region}-1"),
                region: (*region).to_owned(),
                api_addr: port(base_port, h, API, i)?,
                raft_addr: port(base_port, h, RAFT, i)?,
                federation_addr: port(base_port, h, FEDERATION, i)?,
            });
        }
        hubs.push(HubLayout {
            name: (*name).to_owned(),
            dir: out.join(name),
            config: out.join(format!("{name}.toml")),
            ca: out.join(name).join("certs").join("ca.pem"),
            signing_key: out.join(name).join(format!("{name}-{year}.key")),
            key_id: format!("{name}-{year}"),
            nodes,
            proxies: Vec::new(),
        });
    }
    if via_proxies {
        for h in 0..hubs.len() {
            let peer = &hubs[1 - h];
            let mut proxies = Vec::new();
            for (i, n) in peer.nodes.iter().enumerate() {
                proxies.push(ProxyLayout { listen: port(base_port, h, PROXY, i)?, to: n.federation_addr });
            }
            hubs[h].proxies = proxies;
        }
    }
    Ok(PairLayout { base_port, via_proxies, hubs })
}

impl HubLayout {
    /// The node folder `kizuna serve` keeps its data in.
    /// The hub's master key for encryption at rest, beside (not in) its nodes' data dirs.
    pub fn master_key(&self) -> PathBuf {
        self.dir.join("master.key")
    }

    pub fn data_dir(&self, node: &NodeLayout) -> PathBuf {
        self.dir.join(&node.name)
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The endpoints this hub dials for `peer`: the peer's federation addresses, or the proxies.
    fn endpoints_for(&self, peer: &HubLayout) -> Vec<SocketAddr> {
        if self.proxies.is_empty() {
            peer.nodes.iter().map(|n| n.federation_addr).collect()
        } else {
            self.proxies.iter().map(|p| p.listen).collect()
        }
    }

    /// This hub's topology; `peer_verify_key` is the `verify_keys` entry keygen printed for the
    /// peer's key.
    fn topology(&self, peer: &HubLayout, peer_verify_key: &str) -> String {
        let quoted = |v: &[SocketAddr]| v.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
        let mut toml = format!(
            "# Written by `kizuna admin federation pair` / `kizuna demo --federation`: hub {name:?},\n\
             # federating with {peer:?}. See docs/federation.md.\n\
             [hub]\nname = \"{name}\"\n\n\
             # Loopback: short timers so a failover shows within a second (docs/operations.md).\n\
             [raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 500\nelection_timeout_max_ms = 1000\n\n\
             [tls]\ndir = \"{certs}\"\n\n\
             [encryption]\nmaster_key_file = \"{master_key}\"\n\n\
             [federation]\nsigning_key = \"{key}\"\nkey_id = \"{key_id}\"\n\n\
             [[federation.peers]]\nname = \"{peer}\"\nendpoints = [{endpoints}]\nca_cert = \"{peer_ca}\"\n\
             verify_keys = [\n  {peer_verify_key}\n]\n",
            name = self.name,
            peer = peer.name,
            certs = self.certs_dir().display(),
            master_key = self.master_key().display(),
            key = self.signing_key.display(),
            key_id = self.key_id,
            endpoints = quoted(&self.endpoints_for(peer)),
            peer_ca = peer.ca.display(),
        );
        for (i, n) in self.nodes.iter().enumerate() {
            toml.push_str(&format!(
                "\n[[node]]\nid = {}\nname = \"{}\"\nregion = \"{}\"\nraft_addr = \"{}\"\napi_addr = \"{}\"\n\
                 federation_addr = \"{}\"\ndata_dir = \"{}\"\n",
                i + 1,
                n.name,
                n.region,
                n.raft_addr,
                n.api_addr,
                n.federation_addr,
                self.data_dir(n).display()
            ));
        }
        toml
    }
}

impl PairLayout {
    /// Every hub's topology, loaded and validated.
    pub fn load_hubs(&self) -> anyhow::Result<Vec<HubConfig>> {
        self.hubs.iter().map(|h| HubConfig::load(&h.config).with_context(|| format!("hub {}", h.name))).collect()
    }
}

/// The set-up under `out`: read back when it was generated before (the manifest is written
/// last, so it marks a complete set-up), generated otherwise.
pub fn ensure(out: &Path, base_port: u16, via_proxies: bool) -> anyhow::Result<PairLayout> {
    let manifest = out.join(MANIFEST);
    if manifest.exists() {
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let found: PairLayout =
            serde_json::from_str(&text).with_context(|| format!("{} is not a pair manifest", manifest.display()))?;
        if found.base_port != base_port || found.via_proxies != via_proxies {
            bail!(
                "{} holds a set-up on base port {} (via proxies: {}); remove {} to lay out a new one",
                manifest.display(),
                found.base_port,
                found.via_proxies,
                out.display()
            );
        }
        return Ok(found);
    }
    generate(out, base_port, via_proxies)
}

/// Generates keys, topologies, certificates and the manifest under `out`.
pub fn generate(out: &Path, base_port: u16, via_proxies: bool) -> anyhow::Result<PairLayout> {
    let pair = layout(out, base_port, via_proxies)?;
    let now = super::federation::now_s();
    let mut verify_keys = Vec::new();
    for hub in &pair.hubs {
        std::fs::create_dir_all(&hub.dir).with_context(|| format!("creating {}", hub.dir.display()))?;
        let key = super::federation::keygen(&hub.signing_key, &hub.key_id, now)
            .with_context(|| format!("a half-made set-up in {}? remove the folder and start again", out.display()))?;
        verify_keys.push(key.verify_key_toml);
        kizuna_store::MasterKey::create(&hub.master_key())
            .with_context(|| format!("the master key of {}", hub.name))?;
    }
    for (h, hub) in pair.hubs.iter().enumerate() {
        let peer = &pair.hubs[1 - h];
        let peer_key = verify_keys[1 - h].trim_end_matches(',');
        std::fs::write(&hub.config, hub.topology(peer, peer_key))
            .with_context(|| format!("writing {}", hub.config.display()))?;
    }
    for (hub, config) in pair.hubs.iter().zip(pair.load_hubs()?) {
        crate::tls::generate(&config, &hub.certs_dir()).with_context(|| format!("certificates of {}", hub.name))?;
    }
    let manifest = serde_json::to_string_pretty(&pair)?;
    std::fs::write(out.join(MANIFEST), manifest).context("writing the pair manifest")?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_lists_each_hub_as_the_others_peer_with_its_real_key_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate(dir.path(), 30_000, false).unwrap();
        let hubs = pair.load_hubs().unwrap();
        for (h, hub) in hubs.iter().enumerate() {
            let peer = &pair.hubs[1 - h];
            let section = hub.federation.as_ref().unwrap();
            assert_eq!(section.peers.len(), 1);
            assert_eq!(section.peers[0].name, peer.name);
            assert_eq!(section.peers[0].ca_cert, peer.ca);
            let fed: Vec<String> = peer.nodes.iter().map(|n| n.federation_addr.to_string()).collect();
            assert_eq!(section.peers[0].endpoints, fed);
            // The verify key is the peer's real public key, so the peer's signatures verify.
            let (name, key_id) = hubs[1 - h].federation.as_ref().unwrap().identity_names(&peer.name).unwrap();
            let identity = crate::federation::HubIdentity::load(name, key_id, &peer.signing_key).unwrap();
            let hex: String = identity.public_key().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(section.peers[0].verify_keys[0].public_key, hex);
            for n in &hub.nodes {
                assert!(hub.tls.as_ref().unwrap().dir.join(format!("{}.pem", n.name)).exists());
            }
        }
        // Read back, not generated again (keys are never overwritten).
        let again = ensure(dir.path(), 30_000, false).unwrap();
        assert_eq!(again.hubs[0].config, pair.hubs[0].config);
        assert!(ensure(dir.path(), 30_001, false).is_err(), "another layout over an existing one is refused");
    }

    #[test]
    fn via_proxies_each_hub_dials_its_own_proxies_to_the_peers_federation_ports() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate(dir.path(), 31_000, true).unwrap();
        let hubs = pair.load_hubs().unwrap();
        for (h, hub) in hubs.iter().enumerate() {
            let proxies = &pair.hubs[h].proxies;
            let listed: Vec<String> = proxies.iter().map(|p| p.listen.to_string()).collect();
            assert_eq!(hub.federation.as_ref().unwrap().peers[0].endpoints, listed);
            let targets: Vec<SocketAddr> = proxies.iter().map(|p| p.to).collect();
            let peer_fed: Vec<SocketAddr> = pair.hubs[1 - h].nodes.iter().map(|n| n.federation_addr).collect();
            assert_eq!(targets, peer_fed);
        }
        let all: std::collections::HashSet<SocketAddr> = pair
            .hubs
            .iter()
            .flat_map(|h| {
                h.nodes
                    .iter()
                    .flat_map(|n| [n.api_addr, n.raft_addr, n.federation_addr])
                    .chain(h.proxies.iter().map(|p| p.listen))
            })
            .collect();
        assert_eq!(all.len(), 2 * (3 * 3 + 3), "every address is distinct");
    }
}
