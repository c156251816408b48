//! Who may call what on a node's public port, tried as an outsider would: anonymously, as an
//! ordinary member, and with a third-party reflection client. Cluster administration and the
//! diagnostic records answer operators only and change nothing for anyone else; a login's timing
//! does not tell whether the account exists; reflection advertises exactly what the port serves,
//! in both protocol versions.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Bearer, TestHub, channel};
use kizuna_node::member::NodeRole;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::{LoginRequest, LogoutRequest};
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::admin::{
    AddLearnerRequest, ChangeMembershipRequest, CreateBackupRequest, CreateSnapshotRequest, GetClusterStatusRequest,
    GetStateDigestRequest, ListFederationPeersRequest, NodeSpec, RotateKeysRequest, SetFederationPeerPausedRequest,
    TransferLeaderRequest,
};
use kizuna_proto::records::record_service_client::RecordServiceClient;
use kizuna_proto::records::{Consistency, GetRecordRequest, PutRecordRequest};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A caller that is not an operator: nobody, or a signed-in nurse.
struct Outsider {
    who: &'static str,
    bearer: Bearer,
    refused_with: Code,
}

async fn admin_as(endpoint: &str, bearer: Bearer) -> ClusterAdminServiceClient<InterceptedService<Channel, Bearer>> {
    ClusterAdminServiceClient::with_interceptor(channel(endpoint).await, bearer)
}

async fn records_as(endpoint: &str, bearer: Bearer) -> RecordServiceClient<InterceptedService<Channel, Bearer>> {
    RecordServiceClient::with_interceptor(channel(endpoint).await, bearer)
}

fn assert_refused<T: std::fmt::Debug>(outsider: &Outsider, what: &str, answer: Result<T, tonic::Status>) {
    match answer {
        Err(status) => assert_eq!(status.code(), outsider.refused_with, "{} calling {what}: {status:?}", outsider.who),
        Ok(answer) => panic!("{} was served {what}: {answer:?}", outsider.who),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_administration_and_records_answer_operators_only_and_change_nothing_for_others() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let nurse = hub.member("vn.kato").await;
    let outsiders = [
        // An empty bearer is what a client without a session sends at most.
        Outsider { who: "an anonymous caller", bearer: Bearer::new(""), refused_with: Code::Unauthenticated },
        Outsider { who: "an ordinary nurse", bearer: Bearer::new(&nurse), refused_with: Code::PermissionDenied },
    ];
    let before = hub.status(leader);
    for outsider in &outsiders {
        for id in [leader, follower] {
            let mut admin = admin_as(&hub.api(id), outsider.bearer.clone()).await;
            assert_refused(outsider, "Status", admin.get_cluster_status(GetClusterStatusRequest {}).await);
            assert_refused(outsider, "StateDigest", admin.get_state_digest(GetStateDigestRequest {}).await);
            assert_refused(
                outsider,
                "Snapshot",
                admin.create_snapshot(CreateSnapshotRequest { purge_log: true }).await,
            );
            let node = NodeSpec {
                id: 9,
                name: "intruder".into(),
                region: "elsewhere".into(),
                raft_addr: "127.0.0.1:9".into(),
                api_addr: "127.0.0.1:9".into(),
            };
            let learner = AddLearnerRequest { node: Some(node), wait_caught_up: false };
            assert_refused(outsider, "AddLearner", admin.add_learner(learner).await);
            let voters = ChangeMembershipRequest { voter_ids: vec![leader], retain_as_learners: false, force: true };
            assert_refused(outsider, "ChangeMembership", admin.change_membership(voters).await);
            let transfer = TransferLeaderRequest { to_node_id: follower };
            assert_refused(outsider, "TransferLeader", admin.transfer_leader(transfer).await);
            let rotate = RotateKeysRequest { new_data_key: true };
            assert_refused(outsider, "RotateKeys", admin.rotate_keys(rotate).await);
            // A backup image holds the whole hub: refused before a byte of it is made.
            assert_refused(outsider, "CreateBackup", admin.create_backup(CreateBackupRequest {}).await);
            let peers = admin.list_federation_peers(ListFederationPeersRequest {}).await;
            assert_refused(outsider, "ListFederationPeers", peers);
            let pause = SetFederationPeerPausedRequest {
                peer: "gunma".into(),
                paused: true,
                idempotency_key: "intrusion-pause".into(),
            };
            assert_refused(outsider, "SetFederationPeerPaused", admin.set_federation_peer_paused(pause).await);

            let mut records = records_as(&hub.api(id), outsider.bearer.clone()).await;
            let put =
                PutRecordRequest { key: "intrusion".into(), value: "x".into(), idempotency_key: "intrusion".into() };
            assert_refused(outsider, "RecordService.PutRecord", records.put_record(put).await);
            let get = GetRecordRequest { key: "intrusion".into(), consistency: Consistency::Local as i32 };
            assert_refused(outsider, "RecordService.GetRecord", records.get_record(get).await);
        }
    }
    // Nothing changed: same leader and term, no snapshot, no purge, no new member, no record.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = hub.status(leader);
    assert_eq!((after.role, after.term), (NodeRole::Leader, before.term), "leadership moved");
    assert_eq!((after.snapshot_index, after.purged_index), (before.snapshot_index, before.purged_index));
    let members = hub
        .admin(leader)
        .await
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .expect("operator status")
        .into_inner();
    assert_eq!(members.members.len(), 3, "{members:?}");
    assert!(members.members.iter().all(|m| m.voter), "{members:?}");
    assert_eq!(hub.running(leader).node.state.vault().hub_keys(), 1, "no data key was added");
    let missing = hub.get(leader, "intrusion", Consistency::Linearizable).await.expect_err("no record was written");
    assert_eq!(missing.code(), Code::NotFound);

    // The operator is served, on any node.
    hub.put(follower, "greeting", "こんにちは", "op-1").await.expect("operator writes");
    assert_eq!(
        hub.get(follower, "greeting", Consistency::Linearizable).await.expect("operator reads").value,
        "こんにちは"
    );
    hub.admin(follower).await.get_state_digest(GetStateDigestRequest {}).await.expect("operator digest");
    hub.shutdown().await;
}

/// A session that passed a write's check stands for a second on its node (apply decides each
/// write again), but apply answers a retry of a key it applied before with the first result,
/// deciding nothing: such a retry is checked in full, so a session signed out in between gets
/// nothing back, as a new write of it would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_from_a_session_signed_out_a_moment_ago_is_refused() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    hub.operator().await;
    let token = sign_in_on(&hub, leader, "test-operator", common::OPERATOR_PASSWORD).await.expect("signed in");
    let put = || PutRecordRequest { key: "retried".into(), value: "v".into(), idempotency_key: "retried-1".into() };
    let mut records = records_as(&hub.api(leader), Bearer::new(&token)).await;
    records.put_record(put()).await.expect("the first write");
    let mut accounts = AccountServiceClient::with_interceptor(channel(&hub.api(leader)).await, Bearer::new(&token));
    accounts.logout(LogoutRequest { idempotency_key: "out".into() }).await.expect("signed out");
    let retried = records.put_record(put()).await.expect_err("a retry after signing out");
    assert_eq!(retried.code(), Code::Unauthenticated, "{retried:?}");
    let new = PutRecordRequest { key: "retried".into(), value: "w".into(), idempotency_key: "retried-2".into() };
    let refused = records.put_record(new).await.expect_err("a new write after signing out");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    hub.shutdown().await;
}

/// The median of `samples`, in ms.
fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_login_takes_as_long_as_a_wrong_password() {
    let hub = TestHub::start(1).await;
    let leader = hub.leader().await;
    hub.operator().await;
    hub.member("ns.timing").await;
    let accounts = AccountServiceClient::new(channel(&hub.api(leader)).await);
    let attempt = |login: String, n: usize| {
        let req = LoginRequest {
            idempotency_key: format!("timing-{login}-{n}"),
            login,
            password: "not the password at all".into(),
            device: "timing".into(),
            ..Default::default()
        };
        let mut accounts = accounts.clone();
        async move {
            let started = Instant::now();
            let refused = accounts.login(req).await.expect_err("a wrong login is refused");
            assert_eq!(refused.code(), Code::Unauthenticated);
            started.elapsed()
        }
    };
    // Interleaved, so that whatever else the machine does weighs on both alike. Below the
    // lockouts: 4 failures per existing login, 16 from this address (docs/security.md).
    let (mut unknown, mut wrong_password) = (Vec::new(), Vec::new());
    for n in 0..8 {
        unknown.push(attempt(format!("nobody-by-this-name-{n}"), n).await);
        let known = ["test-operator", "ns.timing"][n % 2];
        wrong_password.push(attempt(known.to_owned(), n).await);
    }
    let (unknown, wrong_password) = (median_ms(unknown), median_ms(wrong_password));
    // Without the dummy verification the unknown login answers about ten times sooner (no
    // argon2id at all); with it both medians are the same work within noise.
    let ratio = unknown / wrong_password;
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown login median {unknown:.1} ms vs wrong password {wrong_password:.1} ms (ratio {ratio:.2})"
    );
    hub.shutdown().await;
}

/// The services the public port serves, as a client sees them.
const PUBLIC_SERVICES: [&str; 17] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "kizuna.accounts.v1.AccountService",
    "kizuna.admin.v1.ClusterAdminService",
    "kizuna.attachments.v1.AttachmentService",
    "kizuna.audit.v1.AuditService",
    "kizuna.care_requests.v1.CareRequestService",
    "kizuna.connections.v1.ConnectionService",
    "kizuna.directory.v1.DirectoryService",
    "kizuna.disaster.v1.DisasterService",
    "kizuna.events.v1.EventService",
    "kizuna.hub.v1.HubService",
    "kizuna.posts.v1.PostService",
    "kizuna.records.v1.RecordService",
    "kizuna.rooms.v1.RoomService",
    "kizuna.search.v1.SearchService",
];

mod reflection_v1 {
    pub use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as Client;
    pub use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    pub use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    pub use tonic_reflection::pb::v1::{ServerReflectionRequest as Request, ServerReflectionResponse as Response};
}

mod reflection_v1alpha {
    pub use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Client;
    pub use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    pub use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    pub use tonic_reflection::pb::v1alpha::{ServerReflectionRequest as Request, ServerReflectionResponse as Response};
}

/// One reflection question over `v1`.
async fn ask_v1(
    endpoint: &str,
    question: reflection_v1::MessageRequest,
) -> Result<reflection_v1::Response, tonic::Status> {
    let req = reflection_v1::Request { host: String::new(), message_request: Some(question) };
    let mut stream = reflection_v1::Client::new(channel(endpoint).await)
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    stream.message().await?.ok_or_else(|| tonic::Status::unknown("no answer"))
}

/// One reflection question over `v1alpha` (Python's grpcio-reflection, older grpcurl).
async fn ask_v1alpha(
    endpoint: &str,
    question: reflection_v1alpha::MessageRequest,
) -> Result<reflection_v1alpha::Response, tonic::Status> {
    let req = reflection_v1alpha::Request { host: String::new(), message_request: Some(question) };
    let mut stream = reflection_v1alpha::Client::new(channel(endpoint).await)
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    stream.message().await?.ok_or_else(|| tonic::Status::unknown("no answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflection_advertises_exactly_the_public_services_in_both_versions() {
    use reflection_v1::{MessageRequest as Q1, MessageResponse as A1};
    use reflection_v1alpha::{MessageRequest as Qa, MessageResponse as Aa};
    let hub = TestHub::start(1).await;
    let id = hub.leader().await;
    let api = hub.api(id);
    let expected: BTreeSet<String> = PUBLIC_SERVICES.iter().map(|s| s.to_string()).collect();

    let listed_v1: BTreeSet<String> =
        match ask_v1(&api, Q1::ListServices(String::new())).await.expect("v1").message_response {
            Some(A1::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
            other => panic!("v1 list: {other:?}"),
        };
    assert_eq!(listed_v1, expected);
    let listed_v1alpha: BTreeSet<String> =
        match ask_v1alpha(&api, Qa::ListServices(String::new())).await.expect("v1alpha").message_response {
            Some(Aa::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
            other => panic!("v1alpha list: {other:?}"),
        };
    assert_eq!(listed_v1alpha, expected);

    // Every advertised service can be described, in both versions; the internal one cannot.
    for service in &expected {
        let v1 = ask_v1(&api, Q1::FileContainingSymbol(service.clone())).await.expect("v1 describe");
        assert!(matches!(v1.message_response, Some(A1::FileDescriptorResponse(_))), "{service}: {v1:?}");
        let va = ask_v1alpha(&api, Qa::FileContainingSymbol(service.clone())).await.expect("v1alpha describe");
        assert!(matches!(va.message_response, Some(Aa::FileDescriptorResponse(_))), "{service}: {va:?}");
    }
    for internal in ["kizuna.raft.v1.RaftTransportService", "kizuna.federation.v1.FederationService"] {
        let answer = ask_v1(&api, Q1::FileContainingSymbol(internal.into())).await;
        assert_eq!(answer.expect_err("an internal API described").code(), Code::NotFound, "{internal}");
    }

    // The node↔node port advertises nothing.
    let raft = format!("http://{}", hub.node_config(id).raft_addr);
    let answer = ask_v1(&raft, Q1::ListServices(String::new())).await;
    assert_eq!(answer.expect_err("reflection on the internal port").code(), Code::Unimplemented);
    hub.shutdown().await;
}

/// Signs `login` in on node `id`.
async fn sign_in_on(hub: &TestHub, id: u64, login: &str, password: &str) -> Result<String, tonic::Status> {
    let req = LoginRequest {
        idempotency_key: format!("lock-{login}-{}", rand_suffix()),
        login: login.into(),
        password: password.into(),
        device: "lockout".into(),
        ..Default::default()
    };
    let mut accounts = AccountServiceClient::new(channel(&hub.api(id)).await);
    accounts.login(req).await.map(|r| r.into_inner().token)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Failed sign-ins are counted hub-wide: five on one login, spread over the nodes, lock it on
/// every node (its right password too) with the same answer an unknown login gets once it is
/// locked; its facility's admins see the lock; twenty from one address lock the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_sign_ins_lock_a_login_on_every_node_and_an_unknown_one_alike() {
    use common::{OPERATOR_PASSWORD, authed};
    use kizuna_proto::accounts::{GetMeRequest, ListStaffRequest};
    let hub = TestHub::start(3).await;
    let nurse = hub.member("ns.lock").await;
    let op = hub.operator().await;
    let ids = hub.running_ids();
    for n in 0..5 {
        let refused = sign_in_on(&hub, ids[n % ids.len()], "ns.lock", "wrong password 123").await.expect_err("wrong");
        assert_eq!(refused.code(), Code::Unauthenticated, "attempt {n}: {refused:?}");
    }
    let mut answers = BTreeSet::new();
    for id in &ids {
        let locked = sign_in_on(&hub, *id, "ns.lock", OPERATOR_PASSWORD).await.expect_err("locked");
        assert_eq!(locked.code(), Code::ResourceExhausted, "node {id}: {locked:?}");
        answers.insert(locked.message().to_owned());
    }
    for n in 0..5 {
        let refused = sign_in_on(&hub, ids[n % ids.len()], "nobody-here", "guess").await.expect_err("unknown");
        assert_eq!(refused.code(), Code::Unauthenticated, "attempt {n}: {refused:?}");
    }
    let ghost = sign_in_on(&hub, ids[0], "nobody-here", "guess").await.expect_err("locked");
    assert_eq!(ghost.code(), Code::ResourceExhausted);
    answers.insert(ghost.message().to_owned());
    assert_eq!(answers.len(), 1, "a lock must not tell which logins exist: {answers:?}");
    assert!(answers.iter().all(|m| m.contains("分後にもう一度お試しください")), "{answers:?}");

    // The facility's admins (and the operators) see which of their staff is locked.
    let leader = channel(&hub.api(hub.leader().await)).await;
    let mut accounts = AccountServiceClient::new(leader);
    let me = accounts.get_me(authed(GetMeRequest {}, &nurse)).await.expect("GetMe").into_inner();
    let req = authed(ListStaffRequest { facility_id: me.facility_id.expect("a facility") }, &op);
    let staff = accounts.list_staff(req).await.expect("ListStaff").into_inner().staff;
    let locked = staff.iter().find(|s| s.login == "ns.lock").expect("listed");
    assert!(locked.locked_until.is_some(), "{locked:?}");

    // Ten more failures from this address (twenty in all) lock the address: nobody signs in
    // from it, whatever the login.
    for n in 0..10 {
        let _ = sign_in_on(&hub, ids[n % ids.len()], &format!("guess-{n}"), "guess").await;
    }
    let from_here = sign_in_on(&hub, ids[1], "test-operator", OPERATOR_PASSWORD).await.expect_err("address locked");
    assert_eq!(from_here.code(), Code::ResourceExhausted, "{from_here:?}");
    hub.shutdown().await;
}

/// Guesses sent all at once are counted as if sent one by one: no more than the lock allows get
/// a password checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_sent_in_parallel_are_counted_one_by_one() {
    let hub = TestHub::start(1).await;
    hub.member("ns.parallel").await;
    let id = hub.leader().await;
    let attempts = (0..12).map(|n| {
        let hub = &hub;
        async move { sign_in_on(hub, id, "ns.parallel", &format!("guess number {n}")).await }
    });
    let answers = futures::future::join_all(attempts).await;
    let checked = answers.iter().filter(|a| matches!(a, Err(s) if s.code() == Code::Unauthenticated)).count();
    let locked = answers.iter().filter(|a| matches!(a, Err(s) if s.code() == Code::ResourceExhausted)).count();
    assert_eq!((checked, locked), (5, 7), "{answers:?}");
    hub.shutdown().await;
}
