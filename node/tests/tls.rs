//! TLS: the public API over server TLS, node↔node over mutual TLS under the hub CA. A peer with
//! a certificate from another CA, or none, is refused; so is a plaintext client. Certificates
//! rotate to a new CA on a running hub, without a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{HubSpec, TestHub, Wire};
use kizuna_node::config::TlsSection;
use kizuna_node::tls::{self, Security};
use kizuna_proto::raft::NodeStatusRequest;
use kizuna_proto::raft::raft_transport_service_client::RaftTransportServiceClient;
use kizuna_proto::records::record_service_client::RecordServiceClient;
use kizuna_proto::records::{Consistency, GetRecordRequest, PutRecordRequest};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_runs_over_tls_and_refuses_strangers() {
    let hub = TestHub::start_with(3, Wire::Tls).await;
    // A leader exists: the nodes reached each other over mutual TLS.
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let certs = hub.config.tls.clone().expect("tls section").dir;

    // A client trusting the hub CA writes on a follower (forwarded over mTLS) and reads back.
    let client_tls = tls::client_config(&certs.join("ca.pem")).expect("client config");
    let api = |id: u64| format!("https://{}", hub.node_config(id).api_addr);
    let channel = Endpoint::from_shared(api(follower))
        .unwrap()
        .tls_config(client_tls.clone())
        .unwrap()
        .connect()
        .await
        .expect("TLS client connects");
    let token = common::sign_in_operator(channel.clone()).await;
    let mut records = RecordServiceClient::with_interceptor(channel, common::Bearer::new(&token));
    let req = PutRecordRequest { key: "tls".into(), value: "暗号化".into(), idempotency_key: "tls-1".into() };
    records.put_record(req).await.expect("write over TLS");
    let got = records
        .get_record(GetRecordRequest { key: "tls".into(), consistency: Consistency::Linearizable as i32 })
        .await
        .expect("read over TLS")
        .into_inner();
    assert_eq!(got.value, "暗号化");

    // A plaintext client gets nowhere.
    let plain = format!("http://{}", hub.node_config(leader).api_addr);
    let plain_result = match Endpoint::from_shared(plain).unwrap().connect().await {
        Err(_) => Err(()),
        // Health answers anyone, so only the missing TLS can make this fail.
        Ok(ch) => HealthClient::new(ch).check(HealthCheckRequest::default()).await.map(|_| ()).map_err(|_| ()),
    };
    assert!(plain_result.is_err(), "a plaintext client was served");

    // A peer with a certificate from another CA is refused on the node↔node port.
    let stranger_dir = hub.dir.path().join("stranger-certs");
    tls::generate(&hub.config, &stranger_dir).expect("stranger certificates");
    let stranger =
        Security::load(&TlsSection::in_dir(stranger_dir), &hub.node_config(follower)).expect("stranger security");
    let raft_addr = hub.node_config(leader).raft_addr.to_string();
    let channel = stranger.connector.connect(&raft_addr).expect("lazy channel");
    let refused = RaftTransportServiceClient::new(channel).get_node_status(NodeStatusRequest {}).await;
    assert!(refused.is_err(), "a peer from another CA was served");

    // A peer that trusts the hub CA but presents no certificate is refused too.
    let no_identity = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem")));
    let channel =
        Endpoint::from_shared(format!("https://{raft_addr}")).unwrap().tls_config(no_identity).unwrap().connect_lazy();
    let refused = RaftTransportServiceClient::new(channel).get_node_status(NodeStatusRequest {}).await;
    assert!(refused.is_err(), "a peer without a client certificate was served");

    // The hub's own peers still work (sanity: the refusals above were about the stranger).
    let own = hub.security(&hub.node_config(follower));
    let channel = own.connector.connect(&raft_addr).expect("lazy channel");
    let status =
        RaftTransportServiceClient::new(channel).get_node_status(NodeStatusRequest {}).await.expect("own peer served");
    assert_eq!(status.into_inner().id, leader);
    hub.shutdown().await;
}

/// Whether a node↔node client with the material in `dir` (its `ca.pem` and node `as_node`'s
/// certificate) is served by `node`'s Raft port, on a new connection.
async fn raft_port_serves(hub: &TestHub, dir: &Path, as_node: u64, node: u64) -> bool {
    let security = Security::load(&TlsSection::in_dir(dir.to_owned()), &hub.node_config(as_node)).expect("material");
    let channel = security.connector.connect(&hub.node_config(node).raft_addr.to_string()).expect("lazy channel");
    RaftTransportServiceClient::new(channel).get_node_status(NodeStatusRequest {}).await.is_ok()
}

/// Whether a client trusting only the CA in `ca` gets an answer from `node`'s public API, on a
/// new connection (the node presents a certificate from that CA).
async fn api_port_trusted(hub: &TestHub, ca: &Path, node: u64) -> bool {
    let client = tls::client_config(ca).expect("client config");
    let endpoint = Endpoint::from_shared(format!("https://{}", hub.node_config(node).api_addr)).unwrap();
    let Ok(channel) = endpoint.tls_config(client).unwrap().connect().await else { return false };
    HealthClient::new(channel).check(HealthCheckRequest::default()).await.is_ok()
}

/// Waits (10 s at most) until `check` holds for every node of the hub.
async fn on_every_node<F: AsyncFn(u64) -> bool>(hub: &TestHub, what: &str, check: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in hub.running_ids() {
        while !check(id).await {
            assert!(Instant::now() < deadline, "node {id}: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("directory");
    for entry in std::fs::read_dir(from).expect("directory") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// The rotation an operator does (docs/operations.md, "Rotating certificates"), on a running
/// three-node hub whose nodes check their files every 100 ms: the new CA joins `ca.pem`, the
/// nodes get certificates from it, the old CA leaves. No node restarts; a connection opened
/// before goes on; a peer still on the old CA is refused afterwards; a node that (re)connects
/// afterwards joins with the new material only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_rotate_to_a_new_ca_on_a_running_hub() {
    let nodes = vec![("region-1", true), ("region-2", true), ("region-3", true)];
    let spec = HubSpec { nodes, preferred_regions: vec![], wire: Wire::Tls };
    let mut hub = TestHub::start_custom(spec, |config, _| {
        config.tls.as_mut().expect("[tls]").reload_check_ms = 100;
    })
    .await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let certs = hub.config.tls.clone().expect("[tls]").dir;
    let (old, new, bridge) = (hub.dir.path().join("old"), hub.dir.path().join("new"), hub.dir.path().join("bridge"));
    copy_dir(&certs, &old);
    tls::generate(&hub.config, &new).expect("a new CA and node certificates");
    let both_cas = [std::fs::read(old.join("ca.pem")).unwrap(), std::fs::read(new.join("ca.pem")).unwrap()].concat();
    // A client during the rotation: trusts both CAs, presents a certificate from the new one.
    copy_dir(&new, &bridge);
    std::fs::write(bridge.join("ca.pem"), &both_cas).unwrap();

    // A connection opened before the rotation, trusting the old CA.
    let old_client = tls::client_config(&old.join("ca.pem")).expect("client config");
    let api = format!("https://{}", hub.node_config(leader).api_addr);
    let before = Endpoint::from_shared(api).unwrap().tls_config(old_client).unwrap().connect().await.expect("connect");
    let token = common::sign_in_operator(before.clone()).await;
    let mut records = RecordServiceClient::with_interceptor(before, common::Bearer::new(&token));
    let put =
        |n: u32| PutRecordRequest { key: "rot".into(), value: format!("v{n}"), idempotency_key: format!("rot-{n}") };
    records.put_record(put(1)).await.expect("a write before the rotation");
    assert!(!raft_port_serves(&hub, &bridge, follower, leader).await, "the new CA is trusted before it is added");

    // 1. The new CA joins the old one: a peer with a new certificate is served.
    std::fs::write(certs.join("ca.pem"), &both_cas).unwrap();
    on_every_node(&hub, "a peer of the new CA is refused", async |id| {
        raft_port_serves(&hub, &bridge, follower, id).await
    })
    .await;

    // 2. Every node's certificate and key are replaced (the key after the certificate: in
    // between, the node keeps its previous pair).
    for node in hub.config.nodes.clone() {
        for ext in ["pem", "key"] {
            let file = format!("{}.{ext}", node.name);
            std::fs::write(certs.join(&file), std::fs::read(new.join(&file)).unwrap()).unwrap();
        }
    }
    let new_ca = new.join("ca.pem");
    on_every_node(&hub, "the API does not present a certificate of the new CA", async |id| {
        api_port_trusted(&hub, &new_ca, id).await
    })
    .await;

    // 3. The old CA leaves: a peer still on it is refused, a peer on the new one is served.
    std::fs::write(certs.join("ca.pem"), std::fs::read(&new_ca).unwrap()).unwrap();
    on_every_node(&hub, "a peer of the old CA is still served", async |id| {
        !raft_port_serves(&hub, &old, follower, id).await
    })
    .await;
    on_every_node(&hub, "a peer of the new CA is refused", async |id| raft_port_serves(&hub, &new, follower, id).await)
        .await;

    // The connection opened before the rotation goes on; the hub commits.
    records.put_record(put(2)).await.expect("a write on the connection opened before");
    // A node that reconnects now does so with the new material only, both ways: it catches up
    // with a write made after its restart.
    hub.stop(follower).await;
    hub.restart(follower).await;
    let written = records.put_record(put(3)).await.expect("a write after the restart").into_inner();
    hub.wait_applied(written.log_index).await;
    hub.shutdown().await;
}

/// What a server answered to a hand-made ClientHello: the cipher suite of its ServerHello, or the
/// description of the alert it sent instead.
#[derive(Debug, PartialEq)]
enum Answer {
    Hello { suite: u16 },
    Alert { description: u8 },
}

/// A ClientHello record, written out byte by byte so that it can offer what no TLS library here
/// would (TLS 1.1, CBC and RSA key exchange): `version` as the hello's version, `suites`, and
/// the extensions a TLS 1.2 server needs to choose an ECDHE suite.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let u16s = |values: &[u16]| values.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    let with_len16 = |body: Vec<u8>| [(body.len() as u16).to_be_bytes().to_vec(), body].concat();
    let extension = |kind: u16, body: Vec<u8>| [kind.to_be_bytes().to_vec(), with_len16(body)].concat();
    let extensions = [
        extension(0x000a, with_len16(u16s(&[0x001d, 0x0017]))), // supported groups: x25519, P-256
        extension(0x000b, vec![1, 0]),                          // EC point formats: uncompressed
        extension(0x000d, with_len16(u16s(&[0x0403, 0x0804, 0x0401]))), // signature algorithms
    ]
    .concat();
    let hello = [
        version.to_be_bytes().to_vec(),
        vec![7; 32], // random
        vec![0],     // no session id
        with_len16(u16s(suites)),
        vec![1, 0], // compression: none
        with_len16(extensions),
    ]
    .concat();
    let handshake = [vec![1], (hello.len() as u32).to_be_bytes()[1..].to_vec(), hello].concat();
    [vec![0x16, 0x03, 0x01], with_len16(handshake)].concat()
}

/// Sends `hello` to `addr` and reads the first record of the answer.
async fn offer(addr: std::net::SocketAddr, hello: &[u8]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(hello).await.expect("send the hello");
    let mut header = [0u8; 5];
    tcp.read_exact(&mut header).await.expect("a record back");
    let mut body = vec![0u8; u16::from_be_bytes([header[3], header[4]]) as usize];
    tcp.read_exact(&mut body).await.expect("the record's body");
    match header[0] {
        0x15 => Answer::Alert { description: body[1] },
        // Handshake: type (1), length (3), version (2), random (32), session id, then the suite.
        0x16 if body[0] == 2 => {
            let at = 4 + 2 + 32 + 1 + body[38] as usize;
            Answer::Hello { suite: u16::from_be_bytes([body[at], body[at + 1]]) }
        }
        other => panic!("an unexpected record type {other}"),
    }
}

/// The TLS profile (docs/security.md, "TLS"): TLS 1.2 and 1.3 only, and in TLS 1.2 only suites
/// with forward secrecy (ECDHE) and AEAD ciphers — no RSA key exchange, no CBC. Checked on the
/// public port and the node↔node port with hand-made hellos; an acceptable offer is answered
/// with a ServerHello, so the refusals are about what they offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_tls_1_2_and_1_3_with_forward_secret_aead_suites_are_served() {
    const PROTOCOL_VERSION: u8 = 70;
    const HANDSHAKE_FAILURE: u8 = 40;
    const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
    let hub = TestHub::start_with(1, Wire::Tls).await;
    let node = hub.node_config(1);
    // RSA key exchange (GCM and CBC), ECDHE with CBC.
    let weak = [0x009c, 0x002f, 0x0035, 0xc009, 0xc013, 0xc023];
    for addr in [node.api_addr, node.raft_addr] {
        assert_eq!(
            offer(addr, &client_hello(0x0303, &[ECDHE_ECDSA_AES128_GCM])).await,
            Answer::Hello { suite: ECDHE_ECDSA_AES128_GCM },
            "{addr}: a TLS 1.2 offer of ECDHE with AES-GCM"
        );
        for old in [0x0301, 0x0302] {
            let answer = offer(addr, &client_hello(old, &[ECDHE_ECDSA_AES128_GCM, 0xc009, 0x002f])).await;
            assert_eq!(answer, Answer::Alert { description: PROTOCOL_VERSION }, "{addr}: version {old:#06x}");
        }
        let answer = offer(addr, &client_hello(0x0303, &weak)).await;
        assert_eq!(answer, Answer::Alert { description: HANDSHAKE_FAILURE }, "{addr}: RSA key exchange or CBC");
    }
    hub.shutdown().await;
}
