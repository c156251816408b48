//! Web Push notices on a real 3-node in-process hub, delivered over HTTP to a push endpoint
//! this test runs (a small HTTP/1.1 server that records each request). The test subscribes as
//! a browser would (its own P-256 key pair and auth secret), and DECRYPTS what arrives with its
//! private key (RFC 8291): exactly one push naming the patient's room with its link, never the
//! post's text or author, signed with the hub's VAPID key (RFC 8292); none for a member who
//! read in time; exactly one when the leader is stopped after the post; a push the service
//! answers 503 is retried and then delivered once; and an endpoint that answers 410 Gone has
//! its subscription removed (replicated).
//!
//! Browsers' own push services (FCM, Mozilla, Apple) are not reachable from a test; the
//! browser story test (e2e/story.mjs) does not cover push, as headless Chromium has no push
//! service.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{HubSpec, TestHub, Wire, authed, channel, patient_room, post_secret, until_none_on_leader};
use kizuna_node::config::{NotificationsSection, SmtpTls};
use kizuna_node::domain::HubView;
use kizuna_node::domain::model::AccountId;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::audit::ListAuditEntriesRequest;
use kizuna_proto::audit::audit_service_client::AuditServiceClient;
use kizuna_proto::posts::MarkReadRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use web_push_native::jwt_simple::prelude::{ECDSAP256PublicKeyLike, ES256PublicKey, NoCustomClaims};
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
use web_push_native::{Auth, p256};

/// One request the push endpoint received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A push service stand-in: records every request; answers 410 Gone on paths under `/gone/`,
/// 503 to the first request on a path under `/flaky/`, 201 Created otherwise. Stops with the test's runtime.
struct PushEndpoint {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl PushEndpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut conn).await else { return };
                    let status = {
                        let mut log = log.lock().expect("log");
                        let first = !log.iter().any(|r: &Received| r.path == request.path);
                        let status = match request.path.as_str() {
                            p if p.starts_with("/gone/") => "410 Gone",
                            p if p.starts_with("/flaky/") && first => "503 Service Unavailable",
                            _ => "201 Created",
                        };
                        log.push(request);
                        status
                    };
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { port, received }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    async fn until(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} pushes after 30s", got.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One HTTP/1.1 request: head up to the blank line, then `content-length` bytes of body.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let length: usize = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length"))?.1.parse().ok()?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { path, headers, body })
}

/// A browser's side of a subscription: its own P-256 key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    /// A real key pair, derived from `seed` so a failure is reproducible.
    fn new(seed: &str) -> Self {
        let scalar = Sha256::digest(format!("browser key {seed}").as_bytes());
        let secret = p256::SecretKey::from_slice(&scalar).expect("a valid P-256 scalar");
        let auth: [u8; 16] = Sha256::digest(format!("auth {seed}").as_bytes())[..16].try_into().expect("16 bytes");
        Self { secret, auth }
    }

    fn subscription(&self, endpoint: &str, key: &str) -> AddPushSubscriptionRequest {
        let point = self.secret.public_key().to_encoded_point(false);
        AddPushSubscriptionRequest {
            idempotency_key: key.into(),
            endpoint: endpoint.into(),
            p256dh: URL_SAFE_NO_PAD.encode(point.as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(self.auth),
        }
    }

    /// What the browser's service worker gets: the decrypted JSON.
    fn open(&self, push: &Received) -> serde_json::Value {
        let plain = web_push_native::decrypt(push.body.clone(), &self.secret, &Auth::clone_from_slice(&self.auth))
            .expect("the push decrypts with the browser's key");
        serde_json::from_slice(&plain).expect("a JSON payload")
    }
}

/// A 3-node hub that pushes (no SMTP relay) with a new VAPID key; returns it and the key's
/// public half.
async fn start_hub(delay_seconds: u64) -> (TestHub, String) {
    let spec = HubSpec {
        nodes: vec![("region-1", true), ("region-2", true), ("region-3", true)],
        preferred_regions: vec![],
        wire: Wire::Plain,
    };
    let (private, public) = kizuna_node::push::generate_key();
    let hub = TestHub::start_custom(spec, move |config, root| {
        let key_file = root.join("vapid.key");
        std::fs::write(&key_file, &private).expect("the VAPID key file");
        config.notifications = Some(NotificationsSection {
            smtp_host: None,
            smtp_port: None,
            tls: SmtpTls::None,
            from: None,
            username: None,
            password_file: None,
            delay_seconds,
            digest_minutes: 60,
            retry_seconds: 1,
            vapid_private_key_file: Some(key_file),
            vapid_subject: Some("mailto:ops@example.jp".into()),
            push_allow_loopback_http: true,
        });
    })
    .await;
    (hub, public)
}

async fn subscribe(api: Channel, token: &str, request: AddPushSubscriptionRequest) {
    AccountServiceClient::new(api).add_push_subscription(authed(request, token)).await.expect("subscribed");
}

/// The push is encrypted for the browser, VAPID-signed with the hub's key, and says which room
/// has news and links to it, nothing more.
fn check_push(push: &Received, browser: &Browser, vapid_public: &str, room_id: u64) -> serde_json::Value {
    assert_eq!(push.header("content-encoding"), Some("aes128gcm"));
    assert!(push.header("ttl").is_some(), "a TTL");
    let authorization = push.header("authorization").expect("a VAPID Authorization header");
    let (token, key) = authorization
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .unwrap_or_else(|| panic!("not a VAPID header: {authorization}"));
    assert_eq!(key, vapid_public, "signed with the hub's key");
    let public = ES256PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(key).expect("base64url")).expect("a P-256 key");
    let claims = public.verify_token::<NoCustomClaims>(token, None).expect("a valid VAPID signature");
    assert_eq!(claims.subject.as_deref(), Some("mailto:ops@example.jp"));
    let message = browser.open(push);
    assert_eq!(message["title"], "Kizuna");
    assert_eq!(message["body"], "山田 花子 さんの部屋に新しい投稿があります");
    let url = message["url"].as_str().expect("a link");
    assert!(url.ends_with(&format!("/#/room/{room_id}")), "links the room: {url}");
    let text = message.to_string();
    assert!(!text.contains("血圧") && !text.contains("胸痛"), "no post text: {text}");
    assert!(!text.contains("dr.mori"), "no author: {text}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_member_who_has_not_read_gets_one_push_she_can_decrypt_without_the_content() {
    let endpoint = PushEndpoint::start().await;
    let (hub, vapid_public) = start_hub(2).await;
    let (doctor, nurse, reader) =
        (hub.member("dr.mori").await, hub.member("vn.sato").await, hub.member("cm.ueda").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    let mut accounts = AccountServiceClient::new(api.clone());
    let got = accounts.get_notification_settings(authed(GetNotificationSettingsRequest {}, &nurse)).await;
    let got = got.expect("GetNotificationSettings").into_inner();
    assert_eq!((got.push_public_key.as_str(), got.push_subscriptions), (vapid_public.as_str(), 0));

    let room_id = patient_room(api.clone(), &doctor, &[&nurse, &reader]).await;
    let (browser, readers_browser) = (Browser::new("nurse"), Browser::new("reader"));
    subscribe(api.clone(), &nurse, browser.subscription(&endpoint.url("/push/nurse"), "sub")).await;
    subscribe(api.clone(), &reader, readers_browser.subscription(&endpoint.url("/push/reader"), "sub")).await;
    let bad = AddPushSubscriptionRequest { endpoint: "ftp://push.example/x".into(), ..browser.subscription("", "bad") };
    let refused = accounts.add_push_subscription(authed(bad, &nurse)).await.expect_err("not a push endpoint");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // Nobody subscribes or unsubscribes without a session.
    let anonymous = accounts.add_push_subscription(browser.subscription(&endpoint.url("/push/x"), "anon")).await;
    assert_eq!(anonymous.expect_err("no session").code(), tonic::Code::Unauthenticated);
    let remove =
        RemovePushSubscriptionRequest { idempotency_key: "anon".into(), endpoint: endpoint.url("/push/nurse") };
    assert_eq!(
        accounts.remove_push_subscription(remove).await.expect_err("no session").code(),
        tonic::Code::Unauthenticated
    );

    let seq = post_secret(api.clone(), &doctor, room_id).await;
    let read = MarkReadRequest { idempotency_key: "read".into(), room_id, up_to_seq: seq };
    PostServiceClient::new(api).mark_read(authed(read, &reader)).await.expect("read in time");

    let pushes = endpoint.until(1).await;
    assert_eq!(pushes[0].path, "/push/nurse");
    check_push(&pushes[0], &browser, &vapid_public, room_id);
    until_none_on_leader(&hub, "push notices", |h| h.push_notices().expect("readable notices")).await;
    assert_eq!(endpoint.received().len(), 1, "exactly one push, none for the member who read");

    // The push named the patient to a push service: the audit chain says so, once.
    let op = hub.operator().await;
    let mut audit = AuditServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let q = ListAuditEntriesRequest { page_size: 1000, ..Default::default() };
    let entries = audit.list_audit_entries(authed(q, &op)).await.expect("audit").into_inner().entries;
    let sent = entries.iter().filter(|e| e.what.starts_with("push notice sent") && e.room_id == Some(room_id));
    assert_eq!(sent.count(), 1, "{entries:#?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_stopped_after_the_post_leaves_the_push_to_the_next_which_sends_it_once() {
    let endpoint = PushEndpoint::start().await;
    // Long enough that the leader is stopped before the notice is due.
    let (mut hub, vapid_public) = start_hub(5).await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let old = hub.leader().await;
    let api = channel(&hub.api(old)).await;
    let room_id = patient_room(api.clone(), &doctor, &[&nurse]).await;
    let browser = Browser::new("nurse");
    subscribe(api.clone(), &nurse, browser.subscription(&endpoint.url("/push/nurse"), "sub")).await;
    post_secret(api, &doctor, room_id).await;
    hub.stop(old).await;
    assert!(endpoint.received().is_empty(), "pushed before the delay");

    let new = hub.leader().await;
    assert_ne!(new, old);
    let pushes = endpoint.until(1).await;
    let message = check_push(&pushes[0], &browser, &vapid_public, room_id);
    assert_eq!(message["url"], format!("{}/#/room/{room_id}", hub.api(new)), "pushed by the new leader");
    until_none_on_leader(&hub, "push notices", |h| h.push_notices().expect("readable notices")).await;
    assert_eq!(endpoint.received().len(), 1, "exactly once");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_answering_gone_loses_its_subscription_on_every_node() {
    let endpoint = PushEndpoint::start().await;
    let (hub, _) = start_hub(1).await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    let room_id = patient_room(api.clone(), &doctor, &[&nurse]).await;
    subscribe(api.clone(), &nurse, Browser::new("old").subscription(&endpoint.url("/gone/nurse"), "sub")).await;
    let mut accounts = AccountServiceClient::new(api.clone());
    let me = accounts.get_me(authed(GetMeRequest {}, &nurse)).await.expect("GetMe").into_inner().account_id;
    post_secret(api, &doctor, room_id).await;

    let pushes = endpoint.until(1).await;
    assert_eq!(pushes[0].path, "/gone/nurse");
    until_none_on_leader(&hub, "push notices", |h| h.push_notices().expect("readable notices")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in hub.running_ids() {
        loop {
            let held = hub.running(id).node.state.hub().push_subscriptions(AccountId(me)).expect("readable");
            if held.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "node {id} still holds {held:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let got = accounts.get_notification_settings(authed(GetNotificationSettingsRequest {}, &nurse)).await;
    assert_eq!(got.expect("settings").into_inner().push_subscriptions, 0);
    assert_eq!(endpoint.received().len(), 1, "not retried");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_the_service_cannot_take_yet_is_retried_and_then_delivered_once() {
    let endpoint = PushEndpoint::start().await;
    let (hub, vapid_public) = start_hub(1).await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    let room_id = patient_room(api.clone(), &doctor, &[&nurse]).await;
    let browser = Browser::new("nurse");
    subscribe(api.clone(), &nurse, browser.subscription(&endpoint.url("/flaky/nurse"), "sub")).await;
    post_secret(api, &doctor, room_id).await;

    let pushes = endpoint.until(2).await;
    // The first try met a 503; the retry (after retry_seconds = 1) was taken.
    check_push(&pushes[1], &browser, &vapid_public, room_id);
    until_none_on_leader(&hub, "push notices", |h| h.push_notices().expect("readable notices")).await;
    assert_eq!(endpoint.received().len(), 2, "one refused try, one delivery, nothing more");
    hub.shutdown().await;
}
