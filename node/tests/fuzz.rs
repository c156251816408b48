//! Hostile input on every port: each method of every public service, and of the node↔node Raft
//! service, gets arbitrary bytes and arbitrary protobuf structure (wrong wire types, huge and
//! negative numbers, long Japanese text, nested garbage, cut-off encodings), signed out and as
//! an operator. Every call must end in a status (never a dropped connection or a hang, which is
//! what a panic in a handler looks like to a client), never INTERNAL or UNKNOWN, and a rejected
//! call must leave the collaboration network's data as it was. Seeded: a failure names its seed.

mod common;

use std::time::Duration;

use common::{TestHub, channel};
use kizuna_chaos::rng::Rng;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Requests and answers as bytes, so any byte string can be sent to any method.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[derive(Debug, Clone)]
struct Method {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every method of the public port, from the descriptor set reflection serves.
fn public_methods() -> Vec<Method> {
    let set = prost_types::FileDescriptorSet::decode(kizuna_proto::PUBLIC_FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut methods = Vec::new();
    for file in set.file {
        for service in &file.service {
            for m in &service.method {
                methods.push(Method {
                    path: format!("/{}.{}/{}", file.package(), service.name(), m.name()),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                });
            }
        }
    }
    methods
}

/// The node↔node service (`proto/kizuna/raft/v1/raft_transport_service.proto`).
fn raft_methods() -> Vec<Method> {
    let unary = ["AppendEntries", "Vote", "PreVote", "TransferLeader", "ForwardWrite", "ReadIndex", "GetNodeStatus"];
    let path = |m: &str| format!("/kizuna.raft.v1.RaftTransportService/{m}");
    let mut methods: Vec<Method> =
        unary.iter().map(|m| Method { path: path(m), client_streaming: false, server_streaming: false }).collect();
    methods.push(Method { path: path("InstallSnapshot"), client_streaming: true, server_streaming: false });
    methods.push(Method { path: path("AppendEntriesStream"), client_streaming: true, server_streaming: true });
    methods
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

const TEXT: &str = "在宅酸素の流量を２Ｌに変更。山田 花子 様 🙂 \u{0} \u{202e} ";

fn random_text(rng: &mut Rng) -> Vec<u8> {
    let chars: Vec<char> = TEXT.chars().collect();
    let len = [0, 1, 5, 100, 2_000, 20_000][rng.below(6) as usize];
    (0..len).map(|_| chars[rng.below(chars.len() as u64) as usize]).collect::<String>().into_bytes()
}

fn random_number(rng: &mut Rng) -> u64 {
    [0, 1, 2, 7, 255, u64::from(u32::MAX), u64::MAX, u64::MAX - 1, rng.next_u64()][rng.below(9) as usize]
}

/// A protobuf-shaped message of random fields: what gets past decoding into validation.
fn random_message(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(7) {
        let field = 1 + rng.below(12);
        match rng.below(5) {
            0 => {
                varint(&mut out, field << 3);
                varint(&mut out, random_number(rng));
            }
            1 => {
                varint(&mut out, (field << 3) | 1);
                out.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            2 | 3 => {
                let body = match rng.below(3) {
                    0 => random_text(rng),
                    1 if depth < 3 => random_message(rng, depth + 1),
                    _ => (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
                };
                varint(&mut out, (field << 3) | 2);
                varint(&mut out, body.len() as u64);
                out.extend(body);
            }
            _ => {
                varint(&mut out, (field << 3) | 5);
                out.extend_from_slice(&(rng.next_u64() as u32).to_le_bytes());
            }
        }
    }
    if rng.below(8) == 0 && !out.is_empty() {
        out.truncate(out.len() - 1); // cut off mid-field
    }
    out
}

fn random_input(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(),
        _ => random_message(rng, 0),
    }
}

/// One call; a status or the first answer. An error naming a broken connection or a timeout
/// is what a panicking or stuck handler looks like.
async fn call(channel: Channel, method: &Method, body: Vec<u8>, token: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unknown(format!("not ready: {e}")))?;
    let path = PathAndQuery::try_from(method.path.clone()).expect("a path");
    let authed = |req| with_token(req, token);
    let answer = async {
        match (method.client_streaming, method.server_streaming) {
            (false, false) => grpc.unary(authed(Request::new(body)), path, Raw).await.map(|_| ()),
            (true, false) => {
                let stream = tokio_stream::iter(vec![body.clone(), body]);
                grpc.client_streaming(with_token(Request::new(stream), token), path, Raw).await.map(|_| ())
            }
            (false, true) => {
                let mut answers = grpc.server_streaming(authed(Request::new(body)), path, Raw).await?.into_inner();
                // A live stream may wait for news: its first answer, an error, or quiet is fine.
                match tokio::time::timeout(Duration::from_millis(300), answers.message()).await {
                    Ok(Err(status)) => Err(status),
                    _ => Ok(()),
                }
            }
            (true, true) => {
                let stream = tokio_stream::iter(vec![body.clone(), body]);
                let mut answers =
                    grpc.streaming(with_token(Request::new(stream), token), path, Raw).await?.into_inner();
                match tokio::time::timeout(Duration::from_millis(300), answers.message()).await {
                    Ok(Err(status)) => Err(status),
                    _ => Ok(()),
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer within 10 s")))
}

fn with_token<T>(mut req: Request<T>, token: Option<&str>) -> Request<T> {
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("ascii"));
    }
    req
}

/// Waits until reads an earlier call journaled are in the audit chain: they land in the state
/// on their own time, and must not count against the next call.
async fn settle(state: &kizuna_node::store::StateReader) {
    for _ in 0..100 {
        if state.journal.backlog().expect("the journal") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the audit journal was not shipped within 5 s");
}

/// Methods that change the hub by design even from an operator's random bytes, at a cost
/// (images, snapshots) or to its membership, or that end the operator's own access (the rest
/// of the run would be signed out); their refusals have their own tests (access.rs,
/// network.rs).
const NOT_AS_OPERATOR: [&str; 10] = [
    "AddLearner",
    "ChangeMembership",
    "TransferLeader",
    "CreateSnapshot",
    "CreateBackup",
    "RotateKeys",
    "Logout",
    "StopAccount",
    "RevokeSession",
    "SetSecondFactorPolicy",
];

/// Any status a handler chose, and the one gRPC prescribes for bytes that are not the request
/// message: INTERNAL "failed to decode Protobuf message" (the gRPC status code table: "Error
/// parsing request proto", generated by the library, as grpc-go and grpc-java do too). Any
/// other INTERNAL, UNKNOWN (a panic), a hang or a dropped connection is a failure.
fn acceptable(status: &Status) -> bool {
    match status.code() {
        Code::Internal => status.message().starts_with("failed to decode Protobuf message"),
        Code::Unknown | Code::DeadlineExceeded | Code::Unavailable | Code::Cancelled => false,
        _ => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_public_and_peer_method_answers_hostile_input_with_a_status_and_changes_nothing() {
    let seed = std::env::var("KIZUNA_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261130);
    let samples: u64 = std::env::var("KIZUNA_FUZZ_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let mut rng = Rng::new(seed);
    let hub = TestHub::start(1).await;
    let id = hub.leader().await;
    let operator = hub.operator().await;
    let (public, raft) =
        (channel(&hub.api(id)).await, channel(&format!("http://{}", hub.node_config(id).raft_addr)).await);
    let state = hub.running(id).node.state.clone();
    let mut failures = Vec::new();
    for (method, channel, token) in public_methods()
        .into_iter()
        .flat_map(|m| [(m.clone(), public.clone(), None), (m, public.clone(), Some(operator.as_str()))])
        .chain(raft_methods().into_iter().map(|m| (m, raft.clone(), None)))
    {
        if token.is_some() && NOT_AS_OPERATOR.iter().any(|n| method.path.ends_with(&format!("/{n}"))) {
            continue;
        }
        for n in 0..samples {
            let body = random_input(&mut rng);
            settle(&state).await;
            let before = state.domain_digest().expect("digest");
            let Err(status) = call(channel.clone(), &method, body.clone(), token).await else { continue };
            let who = if token.is_some() { "operator" } else { "anonymous" };
            if !acceptable(&status) {
                let shown: Vec<u8> = body.iter().copied().take(64).collect();
                failures.push(format!(
                    "{} #{n} ({who}): {:?} {:?} for {shown:02x?}…",
                    method.path,
                    status.code(),
                    status.message()
                ));
            }
            let after = state.domain_digest().expect("digest");
            if (after.sha256.as_str(), after.entries) != (before.sha256.as_str(), before.entries) {
                failures.push(format!(
                    "{} #{n} ({who}): refused with {:?} but changed the state",
                    method.path,
                    status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
    // And the node still serves (signing in from this address may be locked by now: the
    // fuzzed logins count as failures).
    let mut health = tonic_health::pb::health_client::HealthClient::new(public);
    let serving = health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("health");
    assert_eq!(serving.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    hub.shutdown().await;
}

/// Limits on what a client sends, before it costs anything: a write larger than any entry a
/// client's write may make is refused before the log (the domain's `MAX_CLIENT_ENTRY_BYTES`),
/// a message larger than a public service decodes is refused unread, and one account holds at
/// most 16 live event streams on a node — a closed one gives its place back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_requests_and_too_many_streams_are_refused_before_they_cost_anything() {
    use kizuna_proto::events::SubscribeRequest;
    use kizuna_proto::events::event_service_client::EventServiceClient;
    use kizuna_proto::posts::CreatePostRequest;
    use kizuna_proto::posts::post_service_client::PostServiceClient;
    use kizuna_proto::rooms::CreateGroupRequest;
    use kizuna_proto::rooms::room_service_client::RoomServiceClient;

    let hub = TestHub::start(1).await;
    let id = hub.leader().await;
    let nurse = hub.member("vn.ohta").await;
    let public = channel(&hub.api(id)).await;
    let state = hub.running(id).node.state.clone();
    let group = CreateGroupRequest { idempotency_key: "limits-group".into(), name: "勉強会".into() };
    let mut rooms = RoomServiceClient::new(public.clone());
    let room = rooms.create_group(with_token(Request::new(group), Some(&nurse))).await;
    let room = room.expect("a group").into_inner().room_id;

    let mut posts = PostServiceClient::new(public.clone());
    let post = |key: &str, text: String| {
        let req = CreatePostRequest { idempotency_key: key.into(), room_id: room, text, ..Default::default() };
        with_token(Request::new(req), Some(&nurse))
    };
    settle(&state).await;
    let before = state.domain_digest().expect("digest");
    // 40,000 kanji: 120 KB, more than any entry a client's write may make.
    let large = posts.create_post(post("large", "褥".repeat(40_000))).await.expect_err("too large for the log");
    assert_eq!(large.code(), Code::InvalidArgument, "{large:?}");
    assert!(large.message().contains("too large"), "{}", large.message());
    // 300,000 bytes: more than the service reads at all.
    let huge = posts.create_post(post("huge", "x".repeat(300_000))).await.expect_err("too large to read");
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    settle(&state).await;
    assert_eq!(state.domain_digest().expect("digest"), before, "nothing changed");
    posts.create_post(post("normal", "褥瘡の処置を変更しました".into())).await.expect("an ordinary post");

    let subscribe = || {
        let req = with_token(Request::new(SubscribeRequest::default()), Some(&nurse));
        let mut events = EventServiceClient::new(public.clone());
        async move { events.subscribe(req).await }
    };
    let mut streams = Vec::new();
    for n in 0..16 {
        streams.push(subscribe().await.unwrap_or_else(|e| panic!("stream {n}: {e:?}")).into_inner());
    }
    let refused = subscribe().await.expect_err("a 17th stream");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    drop(streams.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match subscribe().await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline && e.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a closed stream's place is given back: {e:?}"),
        }
    }
    hub.shutdown().await;
}

/// A replication session whose request does not decode ends with INVALID_ARGUMENT (not a
/// silent end the leader could take for a closed session), and the node goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undecodable_replication_request_ends_its_session_with_invalid_argument() {
    use kizuna_proto::raft::RaftPayload;
    use kizuna_proto::raft::raft_transport_service_client::RaftTransportServiceClient;
    let hub = TestHub::start(1).await;
    let id = hub.leader().await;
    let raft = channel(&format!("http://{}", hub.node_config(id).raft_addr)).await;
    let garbage = RaftPayload { data: vec![0xff; 40] };
    let mut answers = RaftTransportServiceClient::new(raft)
        .append_entries_stream(tokio_stream::iter(vec![garbage]))
        .await
        .expect("the session opens")
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(5), answers.message()).await.expect("an answer in time");
    let status = ended.expect_err("the session is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("undecodable raft payload"), "{status:?}");
    hub.put(id, "after-garbage", "v", "after-garbage").await.expect("the node still writes");
    hub.shutdown().await;
}
