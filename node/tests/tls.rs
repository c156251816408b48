//! TLS: the public API over server TLS, node↔node over mutual TLS under the hub CA. A peer with
//! a certificate from another CA, or none, is refused; so is a plaintext client.

mod common;

use common::{TestHub, Wire};
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
    let stranger = Security::load(&stranger_dir, &hub.node_config(follower)).expect("stranger security");
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
