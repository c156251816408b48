//! An in-process hub for integration tests: real nodes, real RocksDB in a temp dir, real gRPC
//! on 127.0.0.1 ephemeral ports, talked to through the public API as a client would.
#![allow(dead_code)]

pub mod federation;
pub mod files;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kizuna_chaos::proxy::LinkProxy;
use kizuna_node::config::{EncryptionSection, HubConfig, HubSection, NodeConfig, RaftTimers, TlsSection};
use kizuna_node::member::{NodeHealth, NodeRole};
use kizuna_node::node::{self, Listeners, RunningNode};
use kizuna_node::raft::network::{RoutedConnector, TcpConnector};
use kizuna_node::tls::{self, Security};
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::{
    ApproveAccountRequest, ApproveFacilityRequest, InitOperatorRequest, IssueInvitationRequest, LoginRequest,
    RegisterFacilityRequest, RegisterRequest,
};
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::common::{FacilityKind, Profession};
use kizuna_proto::records::record_service_client::RecordServiceClient;
use kizuna_proto::records::{Consistency, GetRecordRequest, GetRecordResponse, PutRecordRequest, PutRecordResponse};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub config: HubConfig,
    nodes: BTreeMap<u64, RunningNode>,
    wire: Wire,
    /// With `Wire::Faulty`: the proxy of every ordered pair (from, to).
    links: BTreeMap<(u64, u64), LinkProxy>,
    /// With `Wire::Faulty`: each node's routes (peer raft address → proxy address).
    routes: BTreeMap<u64, Arc<Mutex<HashMap<String, String>>>>,
    /// The session token of the hub's operator, created on first use ([`TestHub::operator`]).
    operator: OnceCell<String>,
}

/// How nodes reach each other.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Plain,
    /// TLS, with certificates generated for the test topology under `<dir>/certs`.
    Tls,
    /// Plaintext through one proxy per ordered pair of nodes, so links can be cut.
    Faulty,
}

/// The shape of a test hub: one node per entry (region, voter).
pub struct HubSpec {
    pub nodes: Vec<(&'static str, bool)>,
    pub preferred_regions: Vec<String>,
    pub wire: Wire,
}

fn test_timers() -> RaftTimers {
    RaftTimers {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..RaftTimers::default()
    }
}

async fn ephemeral() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("local addr");
    (l, addr)
}

impl TestHub {
    /// Starts `voters` voters, each in its own region.
    pub async fn start(voters: u64) -> Self {
        Self::start_with(voters, Wire::Plain).await
    }

    pub async fn start_with(voters: u64, wire: Wire) -> Self {
        let regions: Vec<&'static str> = ["region-1", "region-2", "region-3", "region-4", "region-5"].to_vec();
        let nodes = (0..voters as usize).map(|i| (regions[i], true)).collect();
        Self::start_spec(HubSpec { nodes, preferred_regions: vec![], wire }).await
    }

    pub async fn start_spec(spec: HubSpec) -> Self {
        Self::start_custom(spec, |_, _| {}).await
    }

    /// [`TestHub::start_spec`], with `customize` changing the configuration (given the hub's
    /// temp dir) before the nodes start: e.g. a hub name, `[tls]` and `[federation]` for a
    /// federating hub. Raft and the public API stay plaintext unless the wire is `Wire::Tls`.
    pub async fn start_custom(spec: HubSpec, customize: impl FnOnce(&mut HubConfig, &std::path::Path)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = Vec::new();
        let mut nodes = Vec::new();
        for (i, (region, voter)) in spec.nodes.iter().enumerate() {
            let id = i as u64 + 1;
            let (raft, raft_addr) = ephemeral().await;
            let (api, api_addr) = ephemeral().await;
            // Every test node serves its metrics, so every test exercises the endpoint.
            let (metrics, metrics_addr) = ephemeral().await;
            listeners.push(Listeners { raft, api, metrics: Some(metrics) });
            nodes.push(NodeConfig {
                id,
                name: format!("{region}-{id}"),
                region: Some((*region).to_owned()),
                raft_addr,
                api_addr,
                public_url: None,
                federation_addr: None,
                metrics_addr: Some(metrics_addr),
                data_dir: dir.path().join(format!("n{id}")),
                voter: *voter,
                routes: HashMap::new(),
                older_build_apply_version: None,
            });
        }
        let wire = spec.wire;
        let safe = kizuna_node::placement::check(nodes.iter().filter(|n| n.voter).map(|n| n.region())).is_ok();
        let hub_section = HubSection {
            name: "test".into(),
            preferred_regions: spec.preferred_regions,
            allow_unsafe_placement: !safe,
        };
        let mut config = HubConfig {
            hub: hub_section,
            raft: test_timers(),
            nodes,
            tls: None,
            federation: None,
            notifications: None,
            attachments: Default::default(),
            // Every test hub seals what it stores, as a production hub does.
            encryption: Some(EncryptionSection::generated_in(dir.path()).expect("a test master key")),
        };
        if wire == Wire::Tls {
            let certs = dir.path().join("certs");
            tls::generate(&config, &certs).expect("test certificates");
            config.tls = Some(TlsSection::in_dir(certs));
        }
        customize(&mut config, dir.path());
        config.validate().expect("test topology is valid");
        let mut hub = TestHub {
            dir,
            config,
            nodes: BTreeMap::new(),
            wire,
            links: BTreeMap::new(),
            routes: BTreeMap::new(),
            operator: OnceCell::new(),
        };
        if wire == Wire::Faulty {
            for me in hub.config.nodes.clone() {
                hub.wire_links(&me).await;
            }
        }
        for (me, l) in hub.config.nodes.clone().iter().zip(listeners) {
            hub.launch(me, l).await;
        }
        // A new hub's first leader moves it to this build's apply version (one log entry):
        // tests that count entries start after it. A hub standing for older builds stays.
        // Then it takes its first data key (another entry). Without master keys it stays at
        // the version before sealed state.
        if hub.config.nodes.iter().all(|n| n.older_build_apply_version.is_none()) {
            match hub.config.encryption {
                Some(_) => {
                    hub.wait_apply_version(kizuna_domain::APPLY_VERSION).await;
                    hub.wait_sealed().await;
                }
                None => hub.wait_apply_version(kizuna_domain::keyring::SEALED_STATE_APPLY_VERSION - 1).await,
            }
        }
        hub
    }

    /// Waits (20 s at most) until every running node holds the hub's first data key and has
    /// sealed what was written before it.
    pub async fn wait_sealed(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for id in self.running_ids() {
            let state = &self.nodes[&id].node.state;
            while state.vault().hub_keys() == 0 || state.sealing().expect("readable") {
                assert!(Instant::now() < deadline, "node {id} holds no data key of the hub");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits (20 s at most) until every running node has applied the hub's move to `version`.
    pub async fn wait_apply_version(&self, version: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for id in self.running_ids() {
            while self.status(id).apply_version != version {
                let now = self.status(id).apply_version;
                assert!(Instant::now() < deadline, "node {id} applies as version {now}, not {version}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn launch(&mut self, me: &NodeConfig, listeners: Listeners) {
        let running = node::start(&self.config, me, listeners, &self.security(me))
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e}", me.name));
        self.nodes.insert(me.id, running);
    }

    pub fn security(&self, me: &NodeConfig) -> Security {
        if let Some(routes) = self.routes.get(&me.id) {
            let connector = RoutedConnector { routes: routes.clone(), inner: Arc::new(TcpConnector::default()) };
            return Security { connector: Arc::new(connector), tls: None };
        }
        match &self.config.tls {
            Some(t) if self.wire == Wire::Tls => Security::load(t, me).expect("test certificates load"),
            _ => Security::insecure(),
        }
    }

    /// Creates the proxies between `me` and every node already known, both ways.
    async fn wire_links(&mut self, me: &NodeConfig) {
        for other in self.config.nodes.clone() {
            if other.id == me.id || self.links.contains_key(&(me.id, other.id)) {
                continue;
            }
            for (from, to) in [(me, &other), (&other, me)] {
                let proxy = LinkProxy::start(to.raft_addr).await.expect("link proxy");
                self.routes
                    .entry(from.id)
                    .or_default()
                    .lock()
                    .unwrap()
                    .insert(to.raft_addr.to_string(), proxy.addr.to_string());
                self.links.insert((from.id, to.id), proxy);
            }
        }
    }

    /// Cuts every link between `id` and the rest of the hub (both directions).
    pub fn isolate(&self, id: u64) {
        self.set_links(id, false);
    }

    pub fn heal(&self, id: u64) {
        self.set_links(id, true);
    }

    fn set_links(&self, id: u64, up: bool) {
        assert!(self.wire == Wire::Faulty, "link faults need Wire::Faulty");
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.set_up(up);
            }
        }
    }

    pub fn region_of(&self, id: u64) -> String {
        self.node_config(id).region().to_owned()
    }

    pub fn ids_in_region(&self, region: &str) -> Vec<u64> {
        self.config.nodes.iter().filter(|n| n.region() == region).map(|n| n.id).collect()
    }

    pub fn node_config(&self, id: u64) -> NodeConfig {
        self.config.nodes.iter().find(|n| n.id == id).cloned().expect("node in config")
    }

    pub fn api(&self, id: u64) -> String {
        format!("http://{}", self.node_config(id).api_addr)
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node_config(id).data_dir
    }

    pub fn running(&self, id: u64) -> &RunningNode {
        self.nodes.get(&id).expect("node running")
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn status(&self, id: u64) -> NodeHealth {
        self.running(id).node.local_health()
    }

    /// Waits until the running nodes agree on one leader and returns it.
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<Option<u64>> = self.nodes.values().map(|n| n.node.metrics().current_leader).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && self.nodes.contains_key(l)
                && self.status(*l).role == NodeRole::Leader
            {
                return *l;
            }
            assert!(Instant::now() < deadline, "no agreed leader within 20s: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn follower_of(&self, leader: u64) -> u64 {
        *self.nodes.keys().find(|id| **id != leader).expect("a follower")
    }

    /// Stops a node: its ports close and its store is released. A stop that hangs fails the
    /// test with a message instead of hanging the suite.
    pub async fn stop(&mut self, id: u64) {
        let n = self.nodes.remove(&id).expect("node running");
        if tokio::time::timeout(Duration::from_secs(30), n.shutdown()).await.is_err() {
            panic!("node {id} did not shut down within 30s");
        }
    }

    /// Where node `id` serves its Prometheus metrics.
    pub fn metrics_addr(&self, id: u64) -> std::net::SocketAddr {
        self.node_config(id).metrics_addr.expect("test nodes serve metrics")
    }

    /// Restarts a stopped node from its data dir on its old addresses.
    pub async fn restart(&mut self, id: u64) {
        let me = self.node_config(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listeners = loop {
            match Listeners::bind(&me).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}; retrying", me.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", me.name),
            }
        };
        self.launch(&me, listeners).await;
    }

    /// Starts a new, empty node that is not a voter of the hub's initial membership.
    pub async fn start_new_node(&mut self, id: u64) -> NodeConfig {
        let (raft, raft_addr) = ephemeral().await;
        let (api, api_addr) = ephemeral().await;
        let me = NodeConfig {
            id,
            name: format!("n{id}"),
            region: Some(format!("region-{id}")),
            raft_addr,
            api_addr,
            public_url: None,
            federation_addr: None,
            metrics_addr: None,
            data_dir: self.dir.path().join(format!("n{id}")),
            voter: false,
            routes: HashMap::new(),
            older_build_apply_version: None,
        };
        self.config.nodes.push(me.clone());
        if self.wire == Wire::Faulty {
            self.wire_links(&me).await;
        }
        self.launch(&me, Listeners { raft, api, metrics: None }).await;
        me
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        for (id, n) in &self.nodes {
            n.node
                .raft
                .wait(Some(Duration::from_secs(20)))
                .applied_index_at_least(Some(index), "test catch-up")
                .await
                .unwrap_or_else(|e| panic!("node {id} did not apply {index}: {e}"));
        }
    }

    /// The session token of the hub's operator (login `test-operator`), who is created and
    /// signed in on first use: records and cluster administration are operators' only. Call it
    /// before cutting the hub apart; the session then works on every node, cut off or not.
    pub async fn operator(&self) -> String {
        let create = || async { sign_in_operator(channel(&self.api(self.leader().await)).await).await };
        self.operator.get_or_init(create).await.clone()
    }

    /// Uses `token`, the session of an operator created elsewhere (a hub has one first
    /// operator), as [`TestHub::operator`].
    pub fn adopt_operator(&self, token: String) {
        self.operator.set(token).expect("the test hub has no operator session yet");
    }

    /// The session token of a new ordinary member (a visiting nurse of a new station) with the
    /// login `login`, registered and approved through the operator.
    pub async fn member(&self, login: &str) -> String {
        self.staff(login, false).await
    }

    /// [`TestHub::member`], as the admin of her station (she registers its staff).
    pub async fn facility_admin(&self, login: &str) -> String {
        self.staff(login, true).await
    }

    async fn staff(&self, login: &str, as_admin: bool) -> String {
        let op = self.operator().await;
        let leader = channel(&self.api(self.leader().await)).await;
        let mut accounts = AccountServiceClient::with_interceptor(leader.clone(), Bearer::new(&op));
        let step = |what: &str| format!("member-{login}-{what}");
        let facility = RegisterFacilityRequest {
            idempotency_key: step("facility"),
            name: format!("{login}の訪問看護ステーション"),
            kind: FacilityKind::VisitingNursingStation as i32,
            municipality: "宇都宮市".into(),
        };
        let facility_id = accounts.register_facility(facility).await.expect("facility").into_inner().facility_id;
        let approve = ApproveFacilityRequest { idempotency_key: step("approve-facility"), facility_id };
        accounts.approve_facility(approve).await.expect("approve facility");
        let invite = IssueInvitationRequest { idempotency_key: step("invite"), facility_id, valid_hours: 1, as_admin };
        let code = accounts.issue_invitation(invite).await.expect("invitation").into_inner().code;
        let register = RegisterRequest {
            idempotency_key: step("register"),
            invitation_code: code,
            login: login.into(),
            display_name: format!("{login}さん"),
            profession: Profession::VisitingNurse as i32,
            password: OPERATOR_PASSWORD.into(),
        };
        let account_id = accounts.register(register).await.expect("register").into_inner().account_id;
        let approve = ApproveAccountRequest { idempotency_key: step("approve"), account_id };
        accounts.approve_account(approve).await.expect("approve account");
        sign_in(leader, login, &step("login")).await
    }

    /// Cluster administration on node `id`, as the operator.
    pub async fn admin(&self, id: u64) -> ClusterAdminServiceClient<InterceptedService<Channel, Bearer>> {
        let bearer = Bearer::new(&self.operator().await);
        ClusterAdminServiceClient::with_interceptor(channel(&self.api(id)).await, bearer)
            .max_decoding_message_size(16 << 20)
    }

    /// The records service on node `id`, as the operator.
    pub async fn records(&self, id: u64) -> RecordServiceClient<InterceptedService<Channel, Bearer>> {
        RecordServiceClient::with_interceptor(channel(&self.api(id)).await, Bearer::new(&self.operator().await))
    }

    pub async fn put(
        &self,
        id: u64,
        key: &str,
        value: &str,
        idempotency_key: &str,
    ) -> Result<PutRecordResponse, tonic::Status> {
        put_as(&self.api(id), &self.operator().await, key, value, idempotency_key).await
    }

    pub async fn get(&self, id: u64, key: &str, consistency: Consistency) -> Result<GetRecordResponse, tonic::Status> {
        let req = GetRecordRequest { key: key.into(), consistency: consistency as i32 };
        self.records(id).await.get_record(req).await.map(|r| r.into_inner())
    }

    pub async fn shutdown(mut self) {
        for id in self.running_ids() {
            self.stop(id).await;
        }
    }
}

pub async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned()).expect("endpoint").connect().await.expect("connect")
}

pub const OPERATOR_PASSWORD: &str = "operator password 2026";

/// Creates the hub's operator `test-operator` on `channel` and signs in: the session token.
pub async fn sign_in_operator(channel: Channel) -> String {
    let mut accounts = AccountServiceClient::new(channel.clone());
    let init = InitOperatorRequest {
        idempotency_key: "test-operator".into(),
        login: "test-operator".into(),
        display_name: "テスト事務局".into(),
        password: OPERATOR_PASSWORD.into(),
    };
    accounts.init_operator(init).await.expect("init the test operator");
    sign_in(channel, "test-operator", "test-operator-login").await
}

/// Signs in `login` (whose password is [`OPERATOR_PASSWORD`]): the session token.
async fn sign_in(channel: Channel, login: &str, idempotency_key: &str) -> String {
    let req = LoginRequest {
        idempotency_key: idempotency_key.into(),
        login: login.into(),
        password: OPERATOR_PASSWORD.into(),
        device: "test".into(),
        ..Default::default()
    };
    let answer = AccountServiceClient::new(channel).login(req).await;
    answer.unwrap_or_else(|e| panic!("{login} signs in: {e}")).into_inner().token
}

/// Adds `authorization: Bearer <token>` to every request of a client.
/// A client of the public API with a session.
pub type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Self(format!("Bearer {token}").parse().expect("a token is ASCII"))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A record write on `endpoint` as the holder of `token`.
pub async fn put_as(
    endpoint: &str,
    token: &str,
    key: &str,
    value: &str,
    idempotency_key: &str,
) -> Result<PutRecordResponse, tonic::Status> {
    let req = PutRecordRequest { key: key.into(), value: value.into(), idempotency_key: idempotency_key.into() };
    RecordServiceClient::with_interceptor(channel(endpoint).await, Bearer::new(token))
        .put_record(req)
        .await
        .map(|r| r.into_inner())
}

/// The body of a chunked HTTP/1.1 response, de-chunked.
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

/// `msg` with the session `token` as its bearer.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("a token header"));
    r
}

/// Every post text of `room` as the session `token` reads it, oldest first, page by page.
pub async fn timeline_texts(api: Channel, token: &str, room: u64) -> Vec<String> {
    use kizuna_proto::posts::post_service_client::PostServiceClient;
    use kizuna_proto::posts::{TimelineOrder, TimelineRequest};
    let (mut texts, mut page_token) = (Vec::new(), String::new());
    loop {
        let req = TimelineRequest {
            room_id: room,
            order: TimelineOrder::OldestFirst as i32,
            page_size: 200,
            page_token,
            ..Default::default()
        };
        let page = PostServiceClient::new(api.clone()).timeline(authed(req, token)).await;
        let page = page.expect("timeline").into_inner();
        texts.extend(page.posts.into_iter().map(|p| p.text));
        if page.next_page_token.is_empty() {
            return texts;
        }
        page_token = page.next_page_token;
    }
}

/// The account id of the session `token`.
pub async fn account_of(api: Channel, token: &str) -> u64 {
    let me = AccountServiceClient::new(api).get_me(authed(kizuna_proto::accounts::GetMeRequest {}, token)).await;
    me.expect("GetMe").into_inner().account_id
}

/// A patient room (山田 花子) of the doctor's with the sessions `members` invited into it; its id.
pub async fn patient_room(api: Channel, doctor: &str, members: &[&str]) -> u64 {
    use kizuna_proto::rooms::invite_member_request::Invitee;
    use kizuna_proto::rooms::room_service_client::RoomServiceClient;
    use kizuna_proto::rooms::{CreatePatientRequest, InviteMemberRequest, Role};
    let mut rooms = RoomServiceClient::new(api.clone());
    let patient = CreatePatientRequest {
        idempotency_key: "patient".into(),
        name: "山田 花子".into(),
        kana: "やまだ はなこ".into(),
        ..Default::default()
    };
    let room_id = rooms.create_patient(authed(patient, doctor)).await.expect("patient").into_inner().room_id;
    for (i, token) in members.iter().enumerate() {
        let invite = InviteMemberRequest {
            idempotency_key: format!("invite-{i}"),
            room_id,
            invitee: Some(Invitee::AccountId(account_of(api.clone(), token).await)),
            role: Role::Member as i32,
        };
        rooms.invite_member(authed(invite, doctor)).await.expect("invite");
    }
    room_id
}

/// A node as cluster administration names it (to add it as a learner).
pub fn node_spec(node: &NodeConfig) -> kizuna_proto::admin::NodeSpec {
    kizuna_proto::admin::NodeSpec {
        id: node.id,
        name: node.name.clone(),
        region: node.region().to_owned(),
        raft_addr: node.raft_addr.to_string(),
        api_addr: node.api_addr.to_string(),
    }
}

/// What a notice must never carry: nobody but the room's members may read it.
pub const SECRET_POST_TEXT: &str = "血圧 182/104、夜間に胸痛あり。明朝往診お願いします";

/// The doctor posts [`SECRET_POST_TEXT`] into `room_id`; its seq.
pub async fn post_secret(api: Channel, doctor: &str, room_id: u64) -> u64 {
    use kizuna_proto::posts::CreatePostRequest;
    use kizuna_proto::posts::post_service_client::PostServiceClient;
    let text = SECRET_POST_TEXT.into();
    let req = CreatePostRequest { idempotency_key: "post".into(), room_id, text, ..Default::default() };
    PostServiceClient::new(api).create_post(authed(req, doctor)).await.expect("post").into_inner().seq
}

/// Waits (at most 30 s) until the hub's leader, whichever it is, has `pending` empty.
pub async fn until_none_on_leader<T: std::fmt::Debug>(
    hub: &TestHub,
    what: &str,
    pending: impl Fn(&kizuna_node::store::RocksHub<'_>) -> Vec<T>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = hub.leader().await;
        let left = pending(&hub.running(leader).node.state.hub());
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} still pending after 30s: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
