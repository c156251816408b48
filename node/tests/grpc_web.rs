//! Browsers speak gRPC-Web: a plain HTTP/1.1 POST with a gRPC-Web frame reaches the same
//! services as gRPC, on the same port, and answers with a data frame and a trailer frame.

mod common;

use common::{TestHub, dechunk};
use kizuna_proto::admin::GetClusterStatusResponse;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_calls_cluster_status_over_grpc_web() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    // Cluster status is the operator's; the browser sends the session like any gRPC client.
    let token = hub.operator().await;
    let addr = hub.node_config(leader).api_addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // One gRPC-Web frame: flag 0, length 0 (GetClusterStatusRequest has no fields).
    let frame = [0u8, 0, 0, 0, 0];
    let request = format!(
        "POST /kizuna.admin.v1.ClusterAdminService/GetClusterStatus HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        frame.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/grpc-web"), "{head}");
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&raw[split + 4..])
    } else {
        raw[split + 4..].to_vec()
    };

    // A data frame with the answer, then a trailer frame (flag 0x80) with grpc-status 0.
    assert_eq!(body[0], 0, "{body:?}");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let status = GetClusterStatusResponse::decode(&body[5..5 + len]).expect("a GetClusterStatusResponse");
    assert_eq!(status.members.len(), 3);
    assert_eq!(status.leader_id, Some(leader));
    let trailer = &body[5 + len..];
    assert_eq!(trailer[0], 0x80);
    assert!(String::from_utf8_lossy(&trailer[5..]).contains("grpc-status:0"), "{:?}", String::from_utf8_lossy(trailer));
    hub.shutdown().await;
}
