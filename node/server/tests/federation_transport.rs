//! Hub↔hub transport in process: a Tochigi hub (a real one-node Raft hub) serves federation
//! over mutual TLS; Gunma (a listed peer), Ibaraki (another listed peer) and a client of a CA
//! nobody listed call it. A listed peer's signed probe succeeds and its batches apply exactly
//! once, in order, in Tochigi's replicated state; every other case is refused with a clear
//! status.

use std::collections::BTreeMap;
use std::sync::Arc;

use kizuna_domain::federation::{HubKeyId, HubName};
use kizuna_proto::federation::federation_service_client::FederationServiceClient;
use kizuna_server::config::{EncryptionSection, HubConfig, HubSection, NodeConfig, RaftTimers};
use kizuna_server::federation::{
    FederationEndpoint, FederationTls, HubIdentity, Peer, Trust, VerifyKey, WatchedFederationTls, connect, serve,
    signed_batch, signed_probe,
};
use kizuna_server::node::{self, Listeners, RunningNode};
use kizuna_server::tls::Security;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

fn hub(name: &str) -> HubName {
    HubName::new(name).unwrap()
}

/// A hub's CA: its PEM and what signs its node certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, format!("Kizuna hub CA {name}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { pem, issuer: Issuer::new(params, key) }
}

/// A node certificate (server and client) for 127.0.0.1, and its key, both PEM.
fn node_cert(ca: &Ca, name: &str) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn signing_key(hub_name: &str, key_id: &str) -> HubIdentity {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    HubIdentity::from_pkcs8(hub(hub_name), HubKeyId::new(key_id).unwrap(), pkcs8.as_ref()).unwrap()
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn verify_key(id: &HubIdentity, expires_at_s: u64) -> VerifyKey {
    VerifyKey { key_id: id.key_id().clone(), public_key: id.public_key(), expires_at_s }
}

/// A client hub: its node's TLS (trusting Tochigi's CA) and its signing keys.
struct Client {
    tls: WatchedFederationTls,
    key: HubIdentity,
}

impl Client {
    fn new(own_ca: &Ca, node: &str, tochigi_ca: &Ca, key: HubIdentity) -> Self {
        let (cert, private) = node_cert(own_ca, node);
        let cas = BTreeMap::from([(hub("tochigi"), tochigi_ca.pem.clone())]);
        Self { tls: FederationTls::from_pems(&cert, &private, cas).unwrap().fixed(), key }
    }
}

/// A running hub of `nodes` nodes (one per region), with a leader elected: what a federation
/// listener delivers to.
struct Hub {
    running: Vec<RunningNode>,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// The node with this id.
    fn node(&self, id: u64) -> &Arc<node::Node> {
        &self.running[id as usize - 1].node
    }

    fn leader(&self) -> u64 {
        self.node(1).metrics().current_leader.expect("a leader")
    }
}

async fn one_node_hub(name: &str) -> Hub {
    hub_of(name, 1).await
}

async fn hub_of(name: &str, nodes: u64) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let (mut configs, mut listeners) = (Vec::new(), Vec::new());
    for id in 1..=nodes {
        let raft = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        configs.push(NodeConfig {
            id,
            name: format!("{name}-{id}"),
            region: Some(format!("r{id}")),
            raft_addr: raft.local_addr().unwrap(),
            api_addr: api.local_addr().unwrap(),
            public_url: None,
            federation_addr: None,
            metrics_addr: None,
            data_dir: dir.path().join(format!("n{id}")),
            voter: true,
            routes: Default::default(),
            older_build_apply_version: None,
        });
        listeners.push(Listeners { raft, api, metrics: None });
    }
    let config = HubConfig {
        hub: HubSection { name: name.into(), preferred_regions: vec![], allow_unsafe_placement: true },
        raft: RaftTimers {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            ..RaftTimers::default()
        },
        nodes: configs.clone(),
        tls: None,
        federation: None,
        notifications: None,
        attachments: Default::default(),
        encryption: Some(EncryptionSection::generated_in(dir.path()).unwrap()),
    };
    let mut running = Vec::new();
    for (me, l) in configs.iter().zip(listeners) {
        running.push(node::start(&config, me, l, &Security::insecure()).await.unwrap());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let leaders: Vec<Option<u64>> = running.iter().map(|r| r.node.metrics().current_leader).collect();
        if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the hub elected no leader: {leaders:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Hub { running, _dir: dir }
}

/// Tochigi serving, and its callers.
struct World {
    tochigi: Hub,
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    gunma: Client,
    gunma_old_key: HubIdentity,
    ibaraki: Client,
    rogue: Client,
}

impl World {
    async fn start() -> Self {
        Self::start_on(one_node_hub("tochigi").await, 1).await
    }

    /// Tochigi serving federation from node `on` of `tochigi`.
    async fn start_on(tochigi: Hub, on: u64) -> Self {
        let (tochigi_ca, gunma_ca, ibaraki_ca, rogue_ca) = (ca("tochigi"), ca("gunma"), ca("ibaraki"), ca("rogue"));
        let (gunma_key, gunma_old_key) = (signing_key("gunma", "gunma-2026"), signing_key("gunma", "gunma-2025"));
        let ibaraki_key = signing_key("ibaraki", "ibaraki-1");
        let peer = |name: &str, keys: Vec<VerifyKey>| Peer {
            name: hub(name),
            endpoints: vec![],
            ca_cert: format!("{name}-ca.pem").into(),
            verify_keys: keys,
        };
        let trust = Trust::new(
            hub("tochigi"),
            [
                // Gunma rotated: its 2025 key expired a minute ago.
                peer("gunma", vec![verify_key(&gunma_key, now_s() + 86_400), verify_key(&gunma_old_key, now_s() - 60)]),
                peer("ibaraki", vec![verify_key(&ibaraki_key, now_s() + 86_400)]),
            ],
        );
        let (cert, key) = node_cert(&tochigi_ca, "tochigi-1");
        let cas = BTreeMap::from([(hub("gunma"), gunma_ca.pem.clone()), (hub("ibaraki"), ibaraki_ca.pem.clone())]);
        let tls = FederationTls::from_pems(&cert, &key, cas).unwrap().fixed();
        let sink = tochigi.node(on).clone();
        let endpoint = FederationEndpoint::new(Arc::new(trust), tls.clone(), sink);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            serve(listener, tls, endpoint, async {
                let _ = stopped.await;
            })
            .await
            .expect("federation listener");
        });
        Self {
            tochigi,
            addr,
            stop: Some(stop),
            gunma: Client::new(&gunma_ca, "gunma-1", &tochigi_ca, gunma_key),
            gunma_old_key,
            ibaraki: Client::new(&ibaraki_ca, "ibaraki-1", &tochigi_ca, ibaraki_key),
            // A certificate from a CA Tochigi does not list, presenting Gunma's real key.
            rogue: Client::new(&rogue_ca, "gunma-1", &tochigi_ca, signing_key("gunma", "gunma-2026")),
        }
    }

    fn client(&self, c: &Client) -> FederationServiceClient<Channel> {
        connect(&c.tls, &hub("tochigi"), &self.addr).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, words: &str) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(words), "{words:?} not in {:?}", status.message());
}

#[tokio::test]
async fn a_listed_peers_signed_probe_succeeds() {
    let w = World::start().await;
    let answer = w.client(&w.gunma).probe(signed_probe(&w.gunma.key, &hub("tochigi"))).await.unwrap().into_inner();
    assert_eq!(answer.hub, "tochigi");
    assert!(answer.received_at_ms > 0);
}

#[tokio::test]
async fn a_client_certificate_of_an_unlisted_ca_is_refused_in_the_handshake() {
    let w = World::start().await;
    let status = w.client(&w.rogue).probe(signed_probe(&w.rogue.key, &hub("tochigi"))).await.unwrap_err();
    // The TLS layer refuses the certificate before any request is read: the client sees
    // Tochigi's "unknown CA" alert.
    assert!(matches!(status.code(), Code::Unavailable | Code::Unknown), "{status:?}");
    assert!(format!("{status:?}").contains("UnknownCA"), "{status:?}");
    // Tochigi audits the refused handshake (its accept loop records it as it ends).
    for _ in 0..250 {
        if w.audited("refused a TLS handshake") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    w.assert_audited("refused a TLS handshake");
}

#[tokio::test]
async fn an_unlisted_hub_is_refused() {
    let w = World::start().await;
    let chiba = signing_key("chiba", "chiba-1");
    let probe = signed_probe(&chiba, &hub("tochigi"));
    refused(
        w.client(&w.gunma).probe(probe).await,
        Code::Unauthenticated,
        "\"chiba\" is not a configured federation peer",
    );
    w.assert_audited("claiming to be from \"chiba\"");
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let w = World::start().await;
    let mut probe = signed_probe(&w.gunma.key, &hub("tochigi"));
    probe.signature[0] ^= 0x01;
    refused(w.client(&w.gunma).probe(probe).await, Code::Unauthenticated, "bad signature from hub gunma");
    // A signed probe whose time was changed after signing.
    let mut probe = signed_probe(&w.gunma.key, &hub("tochigi"));
    probe.sent_at_ms -= 1;
    refused(w.client(&w.gunma).probe(probe).await, Code::Unauthenticated, "bad signature");
    w.assert_audited("bad signature from hub gunma");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let w = World::start().await;
    let probe = signed_probe(&w.gunma_old_key, &hub("tochigi"));
    refused(w.client(&w.gunma).probe(probe).await, Code::Unauthenticated, "key gunma-2025 of hub gunma expired");
    w.assert_audited("key gunma-2025 of hub gunma expired");
}

#[tokio::test]
async fn an_unknown_key_id_is_refused() {
    let w = World::start().await;
    let mut probe = signed_probe(&w.gunma.key, &hub("tochigi"));
    probe.key_id = "gunma-2099".into();
    refused(w.client(&w.gunma).probe(probe).await, Code::Unauthenticated, "no configured verify key \"gunma-2099\"");
}

#[tokio::test]
async fn a_peer_cannot_speak_for_another_peer() {
    let w = World::start().await;
    // Ibaraki's certificate, carrying a probe validly signed by Gunma (e.g. replayed).
    let probe = signed_probe(&w.gunma.key, &hub("tochigi"));
    refused(w.client(&w.ibaraki).probe(probe).await, Code::PermissionDenied, "configured CA of hub gunma");
    w.assert_audited("configured CA of hub gunma");
    // Ibaraki for itself is fine.
    w.client(&w.ibaraki).probe(signed_probe(&w.ibaraki.key, &hub("tochigi"))).await.unwrap();
}

#[tokio::test]
async fn a_message_for_another_hub_is_refused() {
    let w = World::start().await;
    let probe = signed_probe(&w.gunma.key, &hub("ibaraki"));
    refused(w.client(&w.gunma).probe(probe).await, Code::FailedPrecondition, "message for hub ibaraki");
}

#[tokio::test]
async fn deliver_refuses_a_batch_changed_after_signing_and_applies_nothing() {
    let w = World::start().await;
    let mut client = w.client(&w.gunma);
    let batch =
        || signed_batch(&w.gunma.key, &hub("tochigi"), 1, vec![b"post 1".to_vec(), b"post 2".to_vec()]).unwrap();
    let mut changed = batch();
    changed.messages[1] = b"post 2, edited in transit".to_vec();
    refused(client.deliver(changed).await, Code::Unauthenticated, "bad signature");
    let mut shifted = batch();
    shifted.first_seq = 2;
    refused(client.deliver(shifted).await, Code::Unauthenticated, "bad signature");
    let mut emptied = batch();
    emptied.messages.clear();
    refused(client.deliver(emptied).await, Code::InvalidArgument, "at least one message");
    assert_eq!(w.inbox("gunma"), []);
}

impl World {
    /// Whether a node of Tochigi audited a refusal holding `words`.
    fn audited(&self, words: &str) -> bool {
        self.refusals().iter().any(|w| w.contains(words))
    }

    /// Checks that a node of Tochigi audited a refusal holding `words`.
    fn assert_audited(&self, words: &str) {
        assert!(self.audited(words), "no audited refusal with {words:?}: {:?}", self.refusals());
    }

    /// The refusals Tochigi's nodes audited: still in a journal, or already shipped into the
    /// replicated chain.
    fn refusals(&self) -> Vec<String> {
        let journaled = self
            .tochigi
            .running
            .iter()
            .filter_map(|r| r.node.state.journal.pending(1000).expect("journal"))
            .flat_map(|(_, _, records)| records);
        let chained =
            self.tochigi.running.iter().flat_map(|r| r.node.state.hub().audit_after(0, 1000)).map(|e| e.record);
        journaled.chain(chained).map(|r| r.what).filter(|w| w.starts_with("federation: refused")).collect()
    }

    /// Tochigi's replicated inbox of `origin`'s stream: (seq, body), in order.
    fn inbox(&self, origin: &str) -> Vec<(u64, String)> {
        let state = &self.tochigi.node(self.tochigi.leader()).state;
        let hub_view = state.hub();
        let messages = hub_view.inbox_after(&hub(origin), 0, 1000);
        assert!(hub_view.fault().is_none());
        messages.into_iter().map(|m| (m.seq, String::from_utf8(m.body[1..].to_vec()).unwrap())).collect()
    }

    /// The audit entries Tochigi left for received batches.
    fn received_audits(&self) -> Vec<String> {
        let entries = self.tochigi.node(self.tochigi.leader()).state.hub().audit_after(0, 1000);
        entries.into_iter().map(|e| e.record.what).filter(|w| w.starts_with("federation: received")).collect()
    }
}

#[tokio::test]
async fn deliver_applies_each_message_once_and_in_order_in_replicated_state() {
    let w = World::start().await;
    let mut client = w.client(&w.gunma);
    let batch = |first: u64, bodies: &[&str]| {
        let messages = bodies.iter().map(|b| malformed(b)).collect();
        signed_batch(&w.gunma.key, &hub("tochigi"), first, messages).unwrap()
    };
    let owned = |items: &[(u64, &str)]| items.iter().map(|(s, b)| (*s, b.to_string())).collect::<Vec<_>>();

    let answer = client.deliver(batch(1, &["a", "b"])).await.unwrap().into_inner();
    assert_eq!(answer.highest_applied, 2);
    assert_eq!(w.inbox("gunma"), owned(&[(1, "a"), (2, "b")]));

    // Replayed: acknowledged, nothing applied again.
    let answer = client.deliver(batch(1, &["a", "b"])).await.unwrap().into_inner();
    assert_eq!(answer.highest_applied, 2);
    assert_eq!(w.inbox("gunma"), owned(&[(1, "a"), (2, "b")]));

    // A retry that overlaps and goes further: only the tail applies.
    let answer = client.deliver(batch(2, &["b", "c", "d"])).await.unwrap().into_inner();
    assert_eq!(answer.highest_applied, 4);
    assert_eq!(w.inbox("gunma"), owned(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]));

    // After a hole (5 is missing): nothing applies; highest_applied tells the origin to resend
    // from 5.
    let answer = client.deliver(batch(6, &["f"])).await.unwrap().into_inner();
    assert_eq!(answer.highest_applied, 4);
    assert_eq!(w.inbox("gunma").len(), 4);

    // The origin resends from 5; the batch refused for the gap then applies.
    assert_eq!(client.deliver(batch(5, &["e"])).await.unwrap().into_inner().highest_applied, 5);
    assert_eq!(client.deliver(batch(6, &["f"])).await.unwrap().into_inner().highest_applied, 6);
    let all = owned(&[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f")]);
    assert_eq!(w.inbox("gunma"), all);

    // Another origin's stream is its own.
    let ibaraki = signed_batch(&w.ibaraki.key, &hub("tochigi"), 1, vec![malformed("x")]).unwrap();
    assert_eq!(w.client(&w.ibaraki).deliver(ibaraki).await.unwrap().into_inner().highest_applied, 1);
    assert_eq!(w.inbox("ibaraki"), owned(&[(1, "x")]));
    assert_eq!(w.inbox("gunma"), all);

    // One audit entry per batch that applied something, naming the range and the key.
    let audits = w.received_audits();
    assert_eq!(audits.len(), 5, "{audits:#?}");
    assert!(audits[1].contains("received 3..=4 from gunma (batch 2..=4, key gunma-2026"), "{}", audits[1]);
}

#[tokio::test]
async fn a_follower_forwards_a_batch_to_its_leader() {
    let tochigi = hub_of("tochigi", 3).await;
    let follower = (1..=3).find(|id| *id != tochigi.leader()).unwrap();
    let w = World::start_on(tochigi, follower).await;
    let mut client = w.client(&w.gunma);
    let batch = |first: u64, bodies: &[&str]| {
        let messages = bodies.iter().map(|b| malformed(b)).collect();
        signed_batch(&w.gunma.key, &hub("tochigi"), first, messages).unwrap()
    };
    assert_eq!(client.deliver(batch(1, &["a", "b"])).await.unwrap().into_inner().highest_applied, 2);
    assert_eq!(client.deliver(batch(1, &["a", "b"])).await.unwrap().into_inner().highest_applied, 2);
    assert_eq!(client.deliver(batch(2, &["b", "c"])).await.unwrap().into_inner().highest_applied, 3);
    assert_eq!(w.inbox("gunma"), [(1, "a".into()), (2, "b".into()), (3, "c".into())]);
}

/// A one-node hub's topology (never started: only its certificates and federation are used).
fn topology(name: &str, port_base: u16, node_extra: &str, extra: &str) -> String {
    format!(
        "[hub]\nname = \"{name}\"\nallow_unsafe_placement = true\n\
         [[node]]\nid = 1\nname = \"{name}-1\"\nregion = \"r1\"\nraft_addr = \"127.0.0.1:{port_base}\"\n\
         api_addr = \"127.0.0.1:{}\"\ndata_dir = \"unused\"\n{node_extra}\n{extra}",
        port_base + 1
    )
}

#[tokio::test]
async fn a_node_serves_federation_from_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (gunma_certs, tochigi_certs) = (dir.path().join("gunma-certs"), dir.path().join("tochigi-certs"));
    // Gunma: its certificates as `kizuna admin certs` makes them, and its signing key.
    let gunma_tls = format!("[tls]\ndir = \"{}\"\n", gunma_certs.display());
    let gunma = HubConfig::parse(&topology("gunma", 7601, "", &gunma_tls)).unwrap();
    kizuna_server::tls::generate(&gunma, &gunma_certs).unwrap();
    let gunma_key = signing_key("gunma", "gunma-2026");
    // Tochigi lists Gunma: its CA and its public key.
    let tochigi_key_file = dir.path().join("tochigi-2026.pem");
    std::fs::write(&tochigi_key_file, KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem()).unwrap();
    let federation = format!(
        "[tls]\ndir = \"{}\"\n[federation]\nsigning_key = \"{}\"\nkey_id = \"tochigi-2026\"\n\
         [[federation.peers]]\nname = \"gunma\"\nendpoints = [\"127.0.0.1:7400\"]\nca_cert = \"{}\"\n\
         verify_keys = [{{ key_id = \"gunma-2026\", public_key = \"{}\", expires_at = 2099-01-01T00:00:00Z }}]\n",
        tochigi_certs.display(),
        tochigi_key_file.display(),
        gunma_certs.join("ca.pem").display(),
        kizuna_domain::hex(&gunma_key.public_key()),
    );
    // Tochigi's node serves federation on an ephemeral port.
    let node_extra = "federation_addr = \"127.0.0.1:0\"";
    let tochigi = HubConfig::parse(&topology("tochigi", 7611, node_extra, &federation)).unwrap();
    kizuna_server::tls::generate(&tochigi, &tochigi_certs).unwrap();

    let sink = one_node_hub("tochigi").await;
    let listener = kizuna_server::federation::listener::start(&tochigi, &tochigi.nodes[0], sink.node(1).clone())
        .await
        .unwrap()
        .unwrap();
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap();
    let cas = BTreeMap::from([(hub("tochigi"), read(tochigi_certs.join("ca.pem")))]);
    let gunma_node =
        FederationTls::from_pems(&read(gunma_certs.join("gunma-1.pem")), &read(gunma_certs.join("gunma-1.key")), cas)
            .unwrap()
            .fixed();
    let mut client = connect(&gunma_node, &hub("tochigi"), &listener.addr.to_string()).unwrap();
    let answer = client.probe(signed_probe(&gunma_key, &hub("tochigi"))).await.unwrap().into_inner();
    assert_eq!(answer.hub, "tochigi");
    listener.shutdown().await;

    // A node without federation_addr serves none.
    let mut quiet = tochigi.clone();
    quiet.nodes[0].federation_addr = None;
    let none = kizuna_server::federation::listener::start(&quiet, &quiet.nodes[0], sink.node(1).clone());
    assert!(none.await.unwrap().is_none());

    // Every node of a federating hub sends (while it leads), with or without a listener; a
    // hub without [federation] sends nothing.
    let sender = kizuna_server::federation::listener::start_sender(&quiet, &quiet.nodes[0], sink.node(1).clone());
    sender.unwrap().expect("a federating hub's node runs the sender").shutdown().await;
    let mut alone = quiet.clone();
    alone.federation = None;
    let none = kizuna_server::federation::listener::start_sender(&alone, &alone.nodes[0], sink.node(1).clone());
    assert!(none.unwrap().is_none());
}

/// A message of the current wire version whose content is no message: applied as the next in
/// its stream, audited as unreadable and skipped (a message of an unknown version would stop
/// the stream instead).
fn malformed(text: &str) -> Vec<u8> {
    [&[kizuna_domain::federation::wire::WIRE_VERSION][..], text.as_bytes()].concat()
}

/// Waits (10 s at most) until `check` holds.
async fn eventually(what: &str, check: impl AsyncFn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Gunma replaces its CA, and Tochigi renews its own certificate: Tochigi's listener takes up
/// the changed files without a restart — a Gunma node of the new CA is served, one still on the
/// old CA is refused, and a client trusting only Tochigi's new CA reaches it.
#[tokio::test]
async fn changed_certificate_files_are_taken_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (tochigi_ca, gunma_old, gunma_new) = (ca("tochigi"), ca("gunma"), ca("gunma"));
    let files = ["tochigi-1.pem", "tochigi-1.key", "gunma-ca.pem"].map(|f| dir.path().join(f));
    let write_own = |ca: &Ca| {
        let (cert, key) = node_cert(ca, "tochigi-1");
        std::fs::write(&files[0], cert).unwrap();
        std::fs::write(&files[1], key).unwrap();
    };
    write_own(&tochigi_ca);
    std::fs::write(&files[2], &gunma_old.pem).unwrap();
    let gunma_key = signing_key("gunma", "gunma-2026");
    let gunma = Peer {
        name: hub("gunma"),
        endpoints: vec![],
        ca_cert: files[2].clone(),
        verify_keys: vec![verify_key(&gunma_key, now_s() + 86_400)],
    };
    let trust = Trust::new(hub("tochigi"), [gunma]);
    let every = std::time::Duration::from_millis(100);
    let tls = FederationTls::watched(&trust, files[0].clone(), files[1].clone(), every).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(tls.clone().watch(stopped.clone()));
    let tochigi = one_node_hub("tochigi").await;
    let endpoint = FederationEndpoint::new(Arc::new(trust), tls.clone(), tochigi.node(1).clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut until_stopped = stopped.clone();
    tokio::spawn(serve(listener, tls, endpoint, async move {
        let _ = until_stopped.wait_for(|s| *s).await;
    }));

    // A Gunma node with a certificate of `gunma_ca`, trusting `tochigi_ca_pem`, probes anew.
    let probe = async |gunma_ca: &Ca, tochigi_ca_pem: &str| {
        let (cert, key) = node_cert(gunma_ca, "gunma-1");
        let cas = BTreeMap::from([(hub("tochigi"), tochigi_ca_pem.to_owned())]);
        let client = FederationTls::from_pems(&cert, &key, cas).unwrap().fixed();
        let mut client = connect(&client, &hub("tochigi"), &addr).unwrap();
        client.probe(signed_probe(&gunma_key, &hub("tochigi"))).await.is_ok()
    };
    assert!(probe(&gunma_old, &tochigi_ca.pem).await, "Gunma of its first CA is served");

    std::fs::write(&files[2], &gunma_new.pem).unwrap();
    eventually("Gunma's new CA was not taken up", async || probe(&gunma_new, &tochigi_ca.pem).await).await;
    assert!(!probe(&gunma_old, &tochigi_ca.pem).await, "a Gunma node still on the old CA was served");

    let tochigi_ca_next = ca("tochigi");
    write_own(&tochigi_ca_next);
    eventually("Tochigi's new certificate was not taken up", async || probe(&gunma_new, &tochigi_ca_next.pem).await)
        .await;
    let _ = stop.send(true);
}
