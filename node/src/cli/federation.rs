//! `kizuna admin federation …`: the hub's federation key and the reachability of its peers
//! (`keygen`, `rotate-key`, `status`: local, with the hub's key), and the queue to each peer
//! (`list`, `pause`, `resume`: through the hub's admin API, as an operator).
//!
//! `status` runs on an operator's machine that holds the hub's federation signing key and a
//! node certificate of the hub (from `[tls].dir`): it acts as the hub, exactly as a node does,
//! and sends each peer endpoint a signed `Probe` over mutual TLS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::admin::{FederationPeer, ListFederationPeersRequest, SetFederationPeerPausedRequest};

use super::Target;
use super::user::{authed, idempotency_key, token};
use crate::config::HubConfig;
use crate::federation::{FederationTls, HubIdentity, connect, signed_probe};

#[derive(Subcommand)]
pub enum FederationCommand {
    /// Generate this hub's ed25519 signing key (PKCS#8 PEM, mode 0600; never overwrites) and
    /// print the `verify_keys` entry peers add for it.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
        /// The key id peers will know it by, e.g. tochigi-2026.
        #[arg(long)]
        key_id: String,
    },
    /// Probe every endpoint of every configured peer (signed Probe over mutual TLS) and print
    /// what answered, the round trip, or why not.
    Status {
        #[arg(long)]
        config: PathBuf,
        /// Whose certificate (in `[tls].dir`) to present; default: the first node with a
        /// `federation_addr`.
        #[arg(long)]
        node: Option<String>,
    },
    /// Write a two-hub federation for one machine (Tochigi and Gunma, three nodes each): CAs
    /// and node certificates, signing keys, topologies listing each other, and `pair.json`.
    /// Read back, never overwritten, when it exists. Run each node with `kizuna serve`.
    Pair {
        #[arg(long)]
        out: PathBuf,
        /// First port: tochigi uses base+1.., gunma base+101.. (API +1, Raft +11, federation +21).
        #[arg(long, default_value_t = super::pair::DEMO_BASE_PORT)]
        base_port: u16,
        /// Each hub dials its peer through proxies at base+31.. (tochigi) / base+131.. (gunma)
        /// that something else runs (the chaos harness cuts and slows hub links there).
        #[arg(long)]
        via_proxies: bool,
    },
    /// Generate the hub's next signing key (as `keygen`) and print the steps that switch to it
    /// without stranding anything queued.
    RotateKey {
        /// The new key file to create.
        #[arg(long)]
        out: PathBuf,
        /// The new key id, e.g. tochigi-2027.
        #[arg(long)]
        key_id: String,
        /// The hub's configuration, to name the key id it signs with now.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Every configured peer: paused, queue depth, oldest queued message, last delivery,
    /// backoff and last error (operator; the delivery state is the leader's).
    List,
    /// Stop sending to a peer; its messages keep queueing (operator, replicated).
    Pause { peer: String },
    /// Send to a paused peer again; its queue drains (operator, replicated).
    Resume { peer: String },
}

pub async fn run(cmd: FederationCommand, target: impl Fn() -> anyhow::Result<Target>) -> anyhow::Result<()> {
    match cmd {
        FederationCommand::RotateKey { out, key_id, config } => rotate_key(&out, &key_id, config.as_deref())?,
        FederationCommand::List => list(&target()?).await?,
        FederationCommand::Pause { peer } => set_paused(&target()?, peer, true).await?,
        FederationCommand::Resume { peer } => set_paused(&target()?, peer, false).await?,
        FederationCommand::Keygen { out, key_id } => {
            let key = keygen(&out, &key_id, now_s())?;
            println!("wrote {} (mode 0600; keep it secret)", out.display());
            println!("public key: {}", key.public_key_hex);
            println!(
                "# 相手ハブの設定 [[federation.peers]] の verify_keys に追加する行 (add to each peer's verify_keys):"
            );
            println!("{}", key.verify_key_toml);
        }
        FederationCommand::Status { config, node } => {
            let hub = HubConfig::load(&config)?;
            let reports = status(&hub, node.as_deref()).await?;
            let mut unreachable = 0;
            for peer in &reports {
                let ok = peer.endpoints.iter().filter(|e| e.result.is_ok()).count();
                let state = if ok > 0 { "REACHABLE" } else { "UNREACHABLE" };
                println!("{} {state} ({ok}/{} endpoints / 応答 {ok} 件)", peer.peer, peer.endpoints.len());
                for e in &peer.endpoints {
                    match &e.result {
                        Ok(rtt) => println!("  {} OK rtt={:.1}ms", e.endpoint, rtt.as_secs_f64() * 1000.0),
                        Err(err) => println!("  {} ERROR {err}", e.endpoint),
                    }
                }
                if ok == 0 {
                    unreachable += 1;
                }
            }
            if unreachable > 0 {
                bail!("{unreachable} peer(s) unreachable / 到達できないハブがあります");
            }
        }
        FederationCommand::Pair { out, base_port, via_proxies } => {
            let pair = super::pair::ensure(&out, base_port, via_proxies)?;
            for hub in &pair.hubs {
                println!("{}: {} (CA {}, key id {})", hub.name, hub.config.display(), hub.ca.display(), hub.key_id);
                for n in &hub.nodes {
                    println!(
                        "  {:<12} region {:<10} api {}  federation {}",
                        n.name, n.region, n.api_addr, n.federation_addr
                    );
                }
            }
            println!("manifest: {}", out.join("pair.json").display());
        }
    }
    Ok(())
}

/// `rotate-key`: a new key, and the switch that keeps every queued message deliverable
/// (batches are signed when sent, so nothing queued carries the old key).
fn rotate_key(out: &Path, key_id: &str, config: Option<&Path>) -> anyhow::Result<()> {
    let current = match config {
        Some(path) => HubConfig::load(path)?.federation.map(|f| f.key_id),
        None => None,
    };
    let key = keygen(out, key_id, now_s())?;
    let old = current.as_deref().unwrap_or("<the current key id>");
    println!("wrote {} (mode 0600; keep it secret)", out.display());
    println!("public key: {}", key.public_key_hex);
    println!("1. Every peer adds this line to this hub's verify_keys (keeping {old}) and restarts its nodes:");
    println!("   {}", key.verify_key_toml);
    println!("2. Copy {} to every node; in [federation] set", out.display());
    println!("   signing_key = \"<path of the copy>\"  and  key_id = \"{key_id}\"");
    println!("   then restart the nodes one by one (`kizuna admin federation status` from here checks the peers).");
    println!("3. Peers set expires_at of {old} to shortly after the last node restarted, then remove it.");
    println!("   Queued messages need no step: they are signed when sent, with the key the sending node has.");
    Ok(())
}

/// `list`: the peers as the contacted node knows them.
async fn list(target: &Target) -> anyhow::Result<()> {
    let (_, channel) = target.connect_any().await?;
    let req = authed(ListFederationPeersRequest {}, &token()?)?;
    let r = ClusterAdminServiceClient::new(channel).list_federation_peers(req).await?.into_inner();
    if !r.delivery_state_included {
        let leader = r.leader_id.map_or("none known".to_owned(), |id| format!("node {id}"));
        println!(
            "answered by node {}, not the leader ({leader}): delivery state (reachable, last delivery, backoff, \
             last error) is the leader's sender's; ask the leader's address for it",
            r.answered_by
        );
    }
    if r.peers.is_empty() {
        println!("no federation peers are configured");
    }
    for peer in &r.peers {
        println!("{}", peer_line(peer, now_ms()));
    }
    Ok(())
}

/// One peer's line: `gunma ACTIVE queue=3 (seq 12..=14) oldest=2.1s reachable last-delivery=…`.
pub fn peer_line(p: &FederationPeer, now_ms: u64) -> String {
    let state = if p.paused { "PAUSED" } else { "ACTIVE" };
    let mut line = format!("{} {state} queue={}", p.name, p.queue_depth);
    if p.queue_depth > 0 {
        line.push_str(&format!(" (seq {}..={})", p.acknowledged_seq + 1, p.last_assigned_seq));
    }
    if let Some(age) = p.oldest_queued_age_ms {
        line.push_str(&format!(" oldest={:.1}s", age as f64 / 1000.0));
    }
    match p.reachable {
        Some(true) => line.push_str(" reachable"),
        Some(false) => line.push_str(" UNREACHABLE"),
        None => {}
    }
    if let Some(at) = p.last_delivery_at_ms {
        line.push_str(&format!(" last-delivery={:.1}s-ago", now_ms.saturating_sub(at) as f64 / 1000.0));
    }
    if let Some(backoff) = p.backoff_ms {
        line.push_str(&format!(" backoff={backoff}ms"));
    }
    if !p.last_error.is_empty() {
        line.push_str(&format!(" last-error=\"{}\"", p.last_error));
    }
    line.push_str(&format!(" endpoints={}", p.endpoints.join(",")));
    line
}

async fn set_paused(target: &Target, peer: String, paused: bool) -> anyhow::Result<()> {
    let (_, channel) = target.connect_any().await?;
    let req = SetFederationPeerPausedRequest { peer: peer.clone(), paused, idempotency_key: idempotency_key() };
    ClusterAdminServiceClient::new(channel).set_federation_peer_paused(authed(req, &token()?)?).await?;
    let what = if paused { "paused: its messages keep queueing" } else { "resumed: its queue drains" };
    println!("{peer} {what}");
    Ok(())
}

/// A generated key, as printed for the operator.
#[derive(Debug)]
pub struct GeneratedKey {
    pub public_key_hex: String,
    /// The inline table for a peer's `verify_keys`, expiring one year after `now_s`.
    pub verify_key_toml: String,
}

/// Writes a new ed25519 PKCS#8 key (PEM) to `out`, created with mode 0600; refuses to
/// overwrite an existing file.
pub fn keygen(out: &Path, key_id: &str, now_s: u64) -> anyhow::Result<GeneratedKey> {
    kizuna_domain::federation::HubKeyId::new(key_id).map_err(|e| anyhow!("--key-id {key_id:?}: {e}"))?;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| anyhow!("generating the key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow!("generated key: {e}"))?;
    let public_key_hex: String = pair.public_key().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| format!("creating {} (never overwritten)", out.display()))?;
    file.write_all(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    let expires = rfc3339(now_s + 365 * 86_400);
    let verify_key_toml =
        format!("{{ key_id = \"{key_id}\", public_key = \"{public_key_hex}\", expires_at = {expires} }},");
    Ok(GeneratedKey { public_key_hex, verify_key_toml })
}

/// One peer's endpoints and what each answered.
#[derive(Debug)]
pub struct PeerReport {
    pub peer: String,
    pub endpoints: Vec<EndpointReport>,
}

#[derive(Debug)]
pub struct EndpointReport {
    pub endpoint: String,
    /// The round trip of a signed probe, or why it failed (a gRPC code or a transport error).
    pub result: Result<Duration, String>,
}

/// Probes every endpoint of every peer of `hub`, acting as the hub with its signing key and the
/// certificate of `node` (or of its first node with a `federation_addr`).
pub async fn status(hub: &HubConfig, node: Option<&str>) -> anyhow::Result<Vec<PeerReport>> {
    let section = hub.federation.as_ref().ok_or_else(|| anyhow!("the hub has no [federation] section"))?;
    let tls_dir = &hub.tls.as_ref().ok_or_else(|| anyhow!("federation needs [tls] (mutual TLS only)"))?.dir;
    let me = match node {
        Some(name) => hub.node(name)?,
        None => hub
            .nodes
            .iter()
            .find(|n| n.federation_addr.is_some())
            .ok_or_else(|| anyhow!("no node has a federation_addr; name one with --node"))?,
    };
    let trust = section.trust(&hub.hub.name)?;
    let (name, key_id) = section.identity_names(&hub.hub.name)?;
    let identity = HubIdentity::load(name, key_id, &section.signing_key).context("federation signing key")?;
    let read = |path: PathBuf| std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()));
    let cert = read(tls_dir.join(format!("{}.pem", me.name)))?;
    let key = read(tls_dir.join(format!("{}.key", me.name)))?;
    let tls = FederationTls::load(&trust, &cert, &key)?.fixed();
    let mut reports = Vec::new();
    for peer in trust.peers() {
        let mut endpoints = Vec::new();
        for endpoint in &peer.endpoints {
            let started = Instant::now();
            let result = async {
                let mut client = connect(&tls, &peer.name, endpoint).map_err(|e| e.to_string())?;
                let probe = signed_probe(&identity, &peer.name);
                match tokio::time::timeout(Duration::from_secs(5), client.probe(probe)).await {
                    Err(_) => Err("TIMEOUT no answer within 5 s".to_owned()),
                    Ok(Err(status)) => Err(describe(&status)),
                    Ok(Ok(_)) => Ok(started.elapsed()),
                }
            }
            .await;
            endpoints.push(EndpointReport { endpoint: endpoint.clone(), result });
        }
        reports.push(PeerReport { peer: peer.name.to_string(), endpoints });
    }
    Ok(reports)
}

/// `CODE message: cause…` — the gRPC code first, so a refusal is told from a network error.
fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?} {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        out.push_str(&format!(": {e}"));
        source = e.source();
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
pub fn rfc3339(unix_s: u64) -> String {
    kizuna_domain::calendar::rfc3339(unix_s)
}

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::federation::{HubKeyId, HubName};

    #[test]
    fn a_peer_line_shows_the_queue_and_the_delivery_state() {
        let peer = FederationPeer {
            name: "gunma".into(),
            endpoints: vec!["10.0.2.11:7400".into(), "10.0.2.12:7400".into()],
            paused: false,
            queue_depth: 3,
            last_assigned_seq: 14,
            acknowledged_seq: 11,
            oldest_queued_age_ms: Some(2_100),
            reachable: Some(false),
            last_delivery_at_ms: Some(5_000),
            backoff_ms: Some(4_000),
            last_error: "Unavailable connection refused".into(),
        };
        assert_eq!(
            peer_line(&peer, 65_000),
            "gunma ACTIVE queue=3 (seq 12..=14) oldest=2.1s UNREACHABLE last-delivery=60.0s-ago backoff=4000ms \
             last-error=\"Unavailable connection refused\" endpoints=10.0.2.11:7400,10.0.2.12:7400"
        );
        let idle = FederationPeer { name: "gunma".into(), paused: true, ..Default::default() };
        assert_eq!(peer_line(&idle, 0), "gunma PAUSED queue=0 endpoints=");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_806_537_600), "2027-04-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn keygen_writes_a_private_key_the_identity_loader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tochigi-2026.key");
        let key = keygen(&out, "tochigi-2026", 1_775_001_600).unwrap();
        let identity =
            HubIdentity::load(HubName::new("tochigi").unwrap(), HubKeyId::new("tochigi-2026").unwrap(), &out).unwrap();
        let hex: String = identity.public_key().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, key.public_key_hex);
        assert!(
            key.verify_key_toml.contains(&hex) && key.verify_key_toml.contains("expires_at = 2027-04-01T00:00:00Z")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let before = std::fs::read(&out).unwrap();
        let e = keygen(&out, "tochigi-2026", 0).unwrap_err();
        assert!(format!("{e:#}").contains("never overwritten"), "{e:#}");
        assert_eq!(std::fs::read(&out).unwrap(), before, "an existing key is never replaced");
        assert!(keygen(&dir.path().join("x"), "bad id", 0).is_err());
    }
}
