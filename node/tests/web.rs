//! The browser client on every node's public port: the embedded page and its headers, CORS
//! between the nodes of a hub (a page from one node carries on against another), and
//! `HubService.GetHubInfo`, which tells the page where the other nodes are and whether the one
//! it talks to is cut off. Requests are written byte for byte, as a browser sends them.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestHub, Wire, dechunk};
use kizuna_proto::hub::hub_service_client::HubServiceClient;
use kizuna_proto::hub::{GetHubInfoRequest, GetHubInfoResponse};
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// One HTTP/1.1 answer.
struct Answer {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str, expected: &str) {
        assert_eq!(self.header(name), Some(expected), "{name} in {:?}", self.headers);
    }
}

/// Sends `request` and reads the answer until the server closes (`connection: close`).
async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: Vec<u8>) -> Answer {
    stream.write_all(&request).await.expect("send");
    let mut raw = Vec::new();
    // A TLS server may close without close_notify once it answered: what came is the answer.
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    Answer { status, body: if chunked { dechunk(&body) } else { body }, headers }
}

/// How the test reaches a node's public port, as a browser would.
enum Browser {
    Plain,
    Tls(tokio_rustls::TlsConnector),
}

impl Browser {
    /// A browser that trusts the hub's CA when the hub runs TLS.
    fn of(hub: &TestHub) -> Self {
        let Some(tls) = &hub.config.tls else { return Self::Plain };
        let pem = std::fs::read(tls.dir.join("ca.pem")).expect("the hub CA");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&pem).expect("a PEM certificate")).expect("a CA root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::Tls(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// `method path` on node `id` with `headers`, and an optional body.
    async fn send(
        &self,
        hub: &TestHub,
        id: u64,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let addr = hub.node_config(id).api_addr;
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        let mut request = format!("{request}\r\n").into_bytes();
        request.extend_from_slice(body);
        let tcp = TcpStream::connect(addr).await.expect("connect");
        match self {
            Self::Plain => exchange(tcp, request).await,
            Self::Tls(connector) => {
                let name = ServerName::IpAddress(addr.ip().into());
                exchange(connector.connect(name, tcp).await.expect("TLS handshake"), request).await
            }
        }
    }

    async fn get(&self, hub: &TestHub, id: u64, path: &str) -> Answer {
        self.send(hub, id, "GET", path, &[], &[]).await
    }
}

/// A file of the bundle as built (node/web/dist).
fn dist(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/dist").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every node's origin, as the browser sends it in `Origin`.
fn origins(hub: &TestHub, scheme: &str) -> Vec<String> {
    hub.config.nodes.iter().map(|n| format!("{scheme}://{}", n.api_addr)).collect()
}

async fn hub_info_client(hub: &TestHub, id: u64) -> HubServiceClient<Channel> {
    let addr = hub.node_config(id).api_addr;
    let channel = match &hub.config.tls {
        Some(tls) => {
            let client = kizuna_node::tls::client_config(&tls.dir.join("ca.pem")).expect("client TLS");
            let endpoint = Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(client).unwrap();
            endpoint.connect().await.expect("connect over TLS")
        }
        None => common::channel(&hub.api(id)).await,
    };
    HubServiceClient::new(channel)
}

/// Asks node `id` for the hub's info (no session) until `done` holds, for at most 20 s.
async fn hub_info_until(
    hub: &TestHub,
    id: u64,
    what: &str,
    done: impl Fn(&GetHubInfoResponse) -> bool,
) -> GetHubInfoResponse {
    let mut client = hub_info_client(hub, id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = client.get_hub_info(GetHubInfoRequest {}).await.expect("GetHubInfo without a session").into_inner();
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "node {id}: {what} within 20 s: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_serves_the_browser_client_with_its_headers() {
    let hub = TestHub::start_with(3, Wire::Tls).await;
    hub.leader().await;
    let browser = Browser::of(&hub);
    let origins = origins(&hub, "https");

    for path in ["/", "/index.html"] {
        let page = browser.get(&hub, 1, path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.body, dist("index.html"), "{path} is the embedded index.html");
        page.has("content-type", "text/html; charset=utf-8");
        page.has("cache-control", "no-cache");
        page.has("x-content-type-options", "nosniff");
        page.has("referrer-policy", "no-referrer");
        page.has("strict-transport-security", "max-age=31536000");
        page.has(
            "content-security-policy",
            &format!(
                "default-src 'self'; connect-src 'self' {}; img-src 'self' data:; style-src 'self'; \
                 script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                origins.join(" ")
            ),
        );
    }
    let head = browser.send(&hub, 2, "HEAD", "/", &[], &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    head.has("content-type", "text/html; charset=utf-8");

    let script = browser.get(&hub, 3, "/app.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(script.body, dist("app.js"));
    script.has("content-type", "text/javascript; charset=utf-8");
    script.has("x-content-type-options", "nosniff");
    browser.get(&hub, 3, "/app.css").await.has("content-type", "text/css; charset=utf-8");

    let missing = browser.get(&hub, 1, "/no/such/page").await;
    assert_eq!(missing.status, 404);
    missing.has("content-type", "text/plain; charset=utf-8");
    // An unknown gRPC method is still gRPC's answer, not the web's 404.
    let grpc_web = [("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1")];
    let unknown = browser.send(&hub, 1, "POST", "/kizuna.nothing.v1.Nothing/Call", &grpc_web, &[0; 5]).await;
    assert!(unknown.headers.iter().any(|(n, v)| n == "grpc-status" && v == "12"), "{:?}", unknown.headers);
    hub.shutdown().await;
}

/// The headers of a browser's preflight before a gRPC-Web call from a page of `origin`.
fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type,x-grpc-web,x-user-agent,authorization"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_from_one_node_may_call_the_others_and_nobody_else_may() {
    let hub = TestHub::start_with(3, Wire::Tls).await;
    hub.leader().await;
    let browser = Browser::of(&hub);
    let origins = origins(&hub, "https");
    let path = "/kizuna.hub.v1.HubService/GetHubInfo";

    // The page came from node 2; it calls node 1.
    let from_b = origins[1].as_str();
    let allowed = browser.send(&hub, 1, "OPTIONS", path, &preflight(from_b), &[]).await;
    assert!(allowed.status < 300, "{}", allowed.status);
    allowed.has("access-control-allow-origin", from_b);
    let methods = allowed.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST") && methods.contains("GET") && methods.contains("OPTIONS"), "{methods}");
    let headers = allowed.header("access-control-allow-headers").unwrap_or_default();
    for h in ["content-type", "x-grpc-web", "x-user-agent", "authorization", "grpc-timeout", "connect-protocol-version"]
    {
        assert!(headers.contains(h), "{h} in {headers}");
    }

    // The same page opened at localhost (the certificates name it too).
    let localhost = format!("https://localhost:{}", hub.node_config(2).api_addr.port());
    let alias = browser.send(&hub, 1, "OPTIONS", path, &preflight(&localhost), &[]).await;
    alias.has("access-control-allow-origin", &localhost);

    let refused = browser.send(&hub, 1, "OPTIONS", path, &preflight("https://evil.example"), &[]).await;
    for h in ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"] {
        assert_eq!(refused.header(h), None, "{h} for another origin: {:?}", refused.headers);
    }

    // The call itself: gRPC-Web, no session; the answer lists every node and is readable by
    // the page (its status headers exposed).
    let call = [("origin", from_b), ("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1")];
    let answer = browser.send(&hub, 1, "POST", path, &call, &[0, 0, 0, 0, 0]).await;
    assert_eq!(answer.status, 200);
    answer.has("access-control-allow-origin", from_b);
    let exposed = answer.header("access-control-expose-headers").unwrap_or_default();
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(h), "{h} in {exposed}");
    }
    assert_eq!(answer.body[0], 0, "a data frame first");
    let len = u32::from_be_bytes([answer.body[1], answer.body[2], answer.body[3], answer.body[4]]) as usize;
    let info = GetHubInfoResponse::decode(&answer.body[5..5 + len]).expect("a GetHubInfoResponse");
    assert_eq!((info.hub.as_str(), info.node_id), ("test", 1));
    let urls: Vec<&str> = info.endpoints.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(urls, origins);

    // Over gRPC too, from every node: the same endpoints, each node answering for itself.
    for id in 1..=3 {
        let info = hub_info_until(&hub, id, "in contact", |i| !i.cut_off).await;
        assert_eq!(info.node_id, id);
        assert_eq!(info.cut_off_reason, "");
        assert!(info.now.is_some_and(|t| t.seconds > 1_700_000_000), "{:?}", info.now);
        let named: Vec<(u64, &str, &str)> =
            info.endpoints.iter().map(|e| (e.node_id, e.name.as_str(), e.region.as_str())).collect();
        assert_eq!(
            named,
            [(1, "region-1-1", "region-1"), (2, "region-2-2", "region-2"), (3, "region-3-3", "region-3")]
        );
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_the_hub_says_so() {
    let hub = TestHub::start_with(3, Wire::Faulty).await;
    let leader = hub.leader().await;
    let cut = hub.follower_of(leader);
    for id in 1..=3 {
        hub_info_until(&hub, id, "in contact", |i| !i.cut_off).await;
    }
    // Without TLS the page is served over http, without HSTS, and calls the nodes over http.
    let page = Browser::of(&hub).get(&hub, cut, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("strict-transport-security"), None);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains(&format!("connect-src 'self' {};", origins(&hub, "http").join(" "))), "{csp}");

    hub.isolate(cut);
    let info = hub_info_until(&hub, cut, "cut off", |i| i.cut_off).await;
    assert!(!info.cut_off_reason.is_empty(), "{info:?}");
    assert_eq!(info.endpoints.len(), 3, "the other nodes, to carry on against");
    // The rest of the hub keeps its quorum.
    let info = hub_info_until(&hub, leader, "in contact", |i| !i.cut_off).await;
    assert_eq!(info.node_id, leader);

    hub.heal(cut);
    hub_info_until(&hub, cut, "back in contact", |i| !i.cut_off).await;
    hub.shutdown().await;
}
