//! The workload and its Jepsen-style history. A professional's rooms on the hub take posts from
//! many writers (each post under its own idempotency key, retried on errors and timeouts against other
//! nodes, recorded as ok with its sequence number or unknown), timeline reads from readers
//! (recorded with what they saw), live-event subscribers that hop between nodes, and safety-check
//! recorders of disaster mode (accepted as pending by a node cut off from the quorum).

pub mod observer;
pub mod reader;
pub mod subscriber;
pub mod writer;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::common::{FacilityKind, Profession};
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{TimelineOrder, TimelineRequest};
use kizuna_proto::rooms::CreateGroupRequest;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// What every worker needs: the nodes, a signed-in professional and the rooms.
#[derive(Debug, Clone)]
pub struct Setup {
    pub endpoints: Vec<String>,
    /// The doctor's session: she posts and reads.
    pub token: String,
    /// The operator's session: cluster administration is operators' only.
    pub operator: String,
    pub rooms: Vec<u64>,
    /// How long a worker waits for an answer before trying the next node.
    pub answer_timeout: Duration,
}

/// The doctor every worker acts as.
pub const DOCTOR_LOGIN: &str = "dr.chaos";

/// The default patience of the workers: what an app would wait before trying elsewhere.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The CA each `https://` endpoint's hub is trusted by: federated runs need TLS (federation is
/// mutual TLS only) and have one CA per hub. Keyed by endpoint, so runs on other ports in the
/// same process never see each other's CAs.
static TRUSTED: std::sync::LazyLock<std::sync::RwLock<std::collections::HashMap<String, ClientTlsConfig>>> =
    std::sync::LazyLock::new(Default::default);

/// Trust `ca_pem` (a hub CA) for `endpoint` (`https://host:port`).
pub fn trust(endpoint: &str, ca_pem: &str) {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Ok(mut trusted) = TRUSTED.write() {
        trusted.insert(endpoint.to_owned(), tls);
    }
}

/// A lazily connecting channel to `endpoint` (reconnects by itself after a node restarts);
/// over TLS with its hub's CA when `endpoint` is one [`trust`] was given.
pub fn channel(endpoint: &str) -> anyhow::Result<Channel> {
    let mut e = Channel::from_shared(endpoint.to_owned())?.connect_timeout(Duration::from_millis(500));
    let tls = TRUSTED.read().ok().and_then(|t| t.get(endpoint).cloned());
    if let Some(tls) = tls {
        e = e.tls_config(tls)?;
    }
    Ok(e.connect_lazy())
}

/// A request carrying the session token.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(value) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", value);
    }
    r
}

/// Milliseconds since the Unix epoch: a clock shared by tasks that started at different times.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the run started: the history's clock.
pub fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// Tries `call` on each node in turn until one succeeds or `within` has passed.
pub(crate) async fn on_any_node<T, F, Fut>(
    endpoints: &[String],
    within: Duration,
    what: &str,
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + within;
    let mut attempt = 0usize;
    loop {
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let result = match tokio::time::timeout(Duration::from_secs(5), call(channel(endpoint)?)).await {
            Ok(r) => r.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!("timed out")),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e.context(format!("{what} (last tried {endpoint})"))),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The password of every account the set-up makes.
pub const PASSWORD: &str = "chaos harness password";

/// The hub's operator, a clinic, one doctor signed in, and `rooms` groups she owns. Every step
/// keeps its idempotency key across retries, so a retry never applies twice.
pub async fn setup(endpoints: &[String], seed: u64, rooms: usize) -> anyhow::Result<Setup> {
    let within = Duration::from_secs(60);
    let id = |step: &str| format!("chaos-{seed}-setup-{step}");
    let login = |name: &'static str| {
        let mut attempt = 0u32;
        move |ch: Channel| {
            attempt += 1;
            // A login's token exists only in its first answer: each attempt gets its own idempotency key.
            let req = LoginRequest {
                idempotency_key: format!("chaos-{seed}-login-{name}-{attempt}"),
                login: name.into(),
                password: PASSWORD.into(),
                device: "chaos".into(),
                ..Default::default()
            };
            async move { AccountServiceClient::new(ch).login(req).await.map(|r| r.into_inner().token) }
        }
    };
    on_any_node(endpoints, within, "init operator", |ch| {
        let req = InitOperatorRequest {
            idempotency_key: id("operator"),
            login: "jimukyoku".into(),
            display_name: "事務局".into(),
            password: PASSWORD.into(),
        };
        async move { AccountServiceClient::new(ch).init_operator(req).await }
    })
    .await?;
    let op = on_any_node(endpoints, within, "operator login", login("jimukyoku")).await?;
    let facility = on_any_node(endpoints, within, "register facility", |ch| {
        let req = RegisterFacilityRequest {
            idempotency_key: id("facility"),
            name: "カオス在宅クリニック".into(),
            kind: FacilityKind::Clinic as i32,
            municipality: "宇都宮市".into(),
        };
        let req = authed(req, &op);
        async move { AccountServiceClient::new(ch).register_facility(req).await.map(|r| r.into_inner().facility_id) }
    })
    .await?;
    on_any_node(endpoints, within, "approve facility", |ch| {
        let req =
            authed(ApproveFacilityRequest { idempotency_key: id("approve-facility"), facility_id: facility }, &op);
        async move { AccountServiceClient::new(ch).approve_facility(req).await }
    })
    .await?;
    let code = on_any_node(endpoints, within, "invitation", |ch| {
        let req = IssueInvitationRequest {
            idempotency_key: id("invitation"),
            facility_id: facility,
            valid_hours: 24,
            as_admin: true,
        };
        let req = authed(req, &op);
        async move { AccountServiceClient::new(ch).issue_invitation(req).await.map(|r| r.into_inner().code) }
    })
    .await?;
    let doctor = on_any_node(endpoints, within, "register", |ch| {
        let req = RegisterRequest {
            idempotency_key: id("register"),
            invitation_code: code.clone(),
            login: DOCTOR_LOGIN.into(),
            display_name: "カオス医師".into(),
            profession: Profession::Doctor as i32,
            password: PASSWORD.into(),
        };
        async move { AccountServiceClient::new(ch).register(req).await.map(|r| r.into_inner().account_id) }
    })
    .await?;
    on_any_node(endpoints, within, "approve account", |ch| {
        let req = authed(ApproveAccountRequest { idempotency_key: id("approve-account"), account_id: doctor }, &op);
        async move { AccountServiceClient::new(ch).approve_account(req).await }
    })
    .await?;
    let token = on_any_node(endpoints, within, "doctor login", login(DOCTOR_LOGIN)).await?;
    let mut room_ids = Vec::new();
    for r in 0..rooms {
        let room = on_any_node(endpoints, within, "create group", |ch| {
            let req = authed(
                CreateGroupRequest { idempotency_key: id(&format!("room-{r}")), name: format!("部屋{r}") },
                &token,
            );
            async move { RoomServiceClient::new(ch).create_group(req).await.map(|r| r.into_inner().room_id) }
        })
        .await?;
        room_ids.push(room);
    }
    Ok(Setup { endpoints: endpoints.to_vec(), token, operator: op, rooms: room_ids, answer_timeout: ANSWER_TIMEOUT })
}

/// One node's copy of a room: (seq, text) of every post, oldest first, read page by page.
pub async fn read_room(endpoint: &str, token: &str, room: u64) -> anyhow::Result<Vec<(u64, String)>> {
    let mut posts = PostServiceClient::new(channel(endpoint)?);
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let order = TimelineOrder::OldestFirst as i32;
        let req = TimelineRequest { room_id: room, order, page_size: 200, page_token, ..Default::default() };
        let req = authed(req, token);
        let page = tokio::time::timeout(Duration::from_secs(10), posts.timeline(req))
            .await
            .context("timeline timed out")??
            .into_inner();
        out.extend(page.posts.into_iter().map(|p| (p.seq, p.text)));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}
