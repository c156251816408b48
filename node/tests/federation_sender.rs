//! The leader's federation sender between two real hubs in process: Tochigi (three nodes) and
//! Gunma (one node), each with real RocksDB in a temp dir, federating over real mutual TLS on
//! 127.0.0.1 with signed batches. Tochigi's messages are room copies queued when one of its
//! rooms invites professionals of Gunma (`InviteMember` with `remote_login`).
//!
//! Checked on the receiver's replicated state: every message arrives exactly once and in order
//! (the inbox holds 1..=n, and the audit chain's "received" ranges tile 1..=n without overlap),
//! the origin's outbox is pruned after the acknowledgement, a pause stops delivery and a resume
//! drains the queue, a stopped receiver makes the queue grow (and the operators' list show
//! it) until it returns, and a leader change on the sending hub continues the stream.

mod common;

use std::time::{Duration, Instant};

use common::federation::{FedHub, eventually, hub_name, two_hubs};
use common::{Bearer, TestHub, channel};
use kizuna_node::domain::HubView;
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::admin::{FederationPeer, ListFederationPeersRequest, SetFederationPeerPausedRequest};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{CreatePatientRequest, InviteMemberRequest, Role};
use tonic::Code;

/// A patient room of Tochigi whose owner (a nurse) invites professionals of other hubs,
/// through the current leader.
struct Inviter {
    nurse: String,
    room: u64,
    invited: u32,
}

type Rooms = RoomServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>>;

impl Inviter {
    async fn rooms(hub: &TestHub, token: &str) -> Rooms {
        RoomServiceClient::with_interceptor(channel(&hub.api(hub.leader().await)).await, Bearer::new(token))
    }

    async fn new(hub: &TestHub) -> Self {
        let nurse = hub.member("ns.suzuki").await;
        let patient = CreatePatientRequest {
            idempotency_key: "patient".into(),
            name: "山田 花子".into(),
            kana: "やまだ はなこ".into(),
            birth_date: "1938-04-01".into(),
            address: "宇都宮市".into(),
            notes: String::new(),
        };
        let created = Self::rooms(hub, &nurse).await.create_patient(patient).await;
        let room = created.expect("patient").into_inner().room_id;
        Self { nurse, room, invited: 0 }
    }

    async fn invite(&mut self, hub: &TestHub, remote_login: &str) -> Result<(), tonic::Status> {
        self.invited += 1;
        let invite = InviteMemberRequest {
            idempotency_key: format!("invite-{}", self.invited),
            room_id: self.room,
            invitee: Some(Invitee::RemoteLogin(remote_login.into())),
            role: Role::Member as i32,
        };
        Self::rooms(hub, &self.nurse).await.invite_member(invite).await.map(|_| ())
    }

    /// Invites `count` new professionals of Gunma: each queues at least one message for it.
    async fn invite_gunma(&mut self, hub: &TestHub, count: u32) {
        for _ in 0..count {
            let login = format!("pro{}@gunma", self.invited + 1);
            self.invite(hub, &login).await.unwrap_or_else(|e| panic!("inviting {login}: {e}"));
        }
    }
}

/// Tochigi's stream to Gunma as `node` applied it: (last assigned, acknowledged, queued).
fn outbound(node: &kizuna_node::node::Node) -> (u64, u64, usize) {
    let hub = node.state.hub();
    let stream = hub.outbound(&hub_name("gunma")).unwrap();
    let queued = hub.outbox_after(&hub_name("gunma"), 0, usize::MAX).len();
    (stream.last_assigned(), stream.acknowledged(), queued)
}

/// What Gunma's node applied of Tochigi's stream: the highest sequence, the inbox's sequences.
fn received(node: &kizuna_node::node::Node) -> (u64, Vec<u64>) {
    let hub = node.state.hub();
    let highest = hub.inbound(&hub_name("tochigi")).unwrap().highest_applied();
    let seqs = hub.inbox_after(&hub_name("tochigi"), 0, usize::MAX).iter().map(|m| m.seq).collect();
    (highest, seqs)
}

/// The ranges of Tochigi's stream Gunma's audit chain says it applied, in chain order.
fn audited_ranges(node: &kizuna_node::node::Node) -> Vec<(u64, u64)> {
    let entries = node.state.hub().audit_after(0, usize::MAX);
    let parse = |what: &str| {
        let rest = what.strip_prefix("federation: received ")?;
        let (range, rest) = rest.split_once(' ')?;
        rest.starts_with("from tochigi ").then_some(())?;
        let (first, last) = range.split_once("..=")?;
        Some((first.parse().ok()?, last.parse().ok()?))
    };
    entries.iter().filter_map(|e| parse(&e.record.what)).collect()
}

/// Every message 1..=last arrived once, in order: the inbox holds exactly those sequences and
/// the applied batches tile them without overlap.
fn assert_exactly_once_in_order(gunma: &kizuna_node::node::Node, last: u64) {
    let (highest, seqs) = received(gunma);
    assert_eq!(highest, last);
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let mut next = 1;
    for (first, end) in audited_ranges(gunma) {
        assert_eq!(first, next, "batch {first}..={end} does not continue the stream at {next}");
        next = end + 1;
    }
    assert_eq!(next, last + 1, "the applied batches end at {}", next - 1);
}

/// Waits until Tochigi's leader sees everything queued delivered and acknowledged, the outbox
/// pruned, and Gunma holds it; returns the stream's last sequence.
async fn drained(tochigi: &FedHub, gunma: &FedHub) -> u64 {
    let leader = tochigi.hub.leader().await;
    let mut last = 0;
    eventually("Tochigi's outbox drains to Gunma", async || {
        let (assigned, acknowledged, queued) = outbound(tochigi.node(leader));
        last = assigned;
        assigned > 0 && acknowledged == assigned && queued == 0 && received(gunma.node(1)).0 == assigned
    })
    .await;
    last
}

async fn gunma_peer(tochigi: &FedHub) -> (FederationPeer, bool) {
    let leader = tochigi.hub.leader().await;
    let answer = tochigi.hub.admin(leader).await.list_federation_peers(ListFederationPeersRequest {}).await;
    let answer = answer.expect("list federation peers").into_inner();
    let peer = answer.peers.into_iter().find(|p| p.name == "gunma").expect("gunma is listed");
    (peer, answer.delivery_state_included)
}

async fn set_paused(tochigi: &FedHub, paused: bool, key: &str) {
    let leader = tochigi.hub.leader().await;
    let req = SetFederationPeerPausedRequest { peer: "gunma".into(), paused, idempotency_key: key.into() };
    tochigi.hub.admin(leader).await.set_federation_peer_paused(req).await.expect("set paused");
}

/// A follower lists the replicated queue without the leader's delivery state; only operators
/// list or pause, and only configured peers.
async fn operators_only_and_followers_answer_the_replicated_part(tochigi: &FedHub, inviter: &Inviter, last: u64) {
    let leader = tochigi.hub.leader().await;
    let follower = tochigi.hub.follower_of(leader);
    let answer = tochigi.hub.admin(follower).await.list_federation_peers(ListFederationPeersRequest {}).await;
    let answer = answer.expect("a follower lists the peers").into_inner();
    assert_eq!((answer.answered_by, answer.leader_id, answer.delivery_state_included), (follower, Some(leader), false));
    let peer = &answer.peers[0];
    assert_eq!((peer.name.as_str(), peer.reachable, peer.last_delivery_at_ms), ("gunma", None, None));
    assert!(peer.acknowledged_seq >= last && !peer.paused, "{peer:?}");

    let unknown = SetFederationPeerPausedRequest { peer: "ibaraki".into(), paused: true, idempotency_key: "x".into() };
    let refused = tochigi.hub.admin(leader).await.set_federation_peer_paused(unknown).await.expect_err("unknown");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let api = channel(&tochigi.hub.api(leader)).await;
    let mut nurse = ClusterAdminServiceClient::with_interceptor(api, Bearer::new(&inviter.nurse));
    let refused = nurse.list_federation_peers(ListFederationPeersRequest {}).await.expect_err("not an operator");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let pause = SetFederationPeerPausedRequest { peer: "gunma".into(), paused: true, idempotency_key: "y".into() };
    let refused = nurse.set_federation_peer_paused(pause).await.expect_err("not an operator");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_reaches_the_peer_exactly_once_through_pause_outage_and_leader_change() {
    let root = tempfile::tempdir().unwrap();
    let (mut tochigi, mut gunma) = two_hubs(root.path(), 3, 1, true).await;
    let mut inviter = Inviter::new(&tochigi.hub).await;

    // A remote login must name a configured peer, not this hub or an unlisted one.
    for wrong in ["sato@tochigi", "sato@ibaraki"] {
        let refused = inviter.invite(&tochigi.hub, wrong).await.expect_err(wrong);
        assert_eq!(refused.code(), Code::InvalidArgument, "{wrong}: {refused:?}");
    }

    // Delivered, acknowledged and pruned. (Gunma answers the invitations over its own stream,
    // and Tochigi's answers to those may queue more: the stream keeps moving for a while.)
    inviter.invite_gunma(&tochigi.hub, 3).await;
    let last = drained(&tochigi, &gunma).await;
    assert_exactly_once_in_order(gunma.node(1), last);
    let (peer, leads) = gunma_peer(&tochigi).await;
    assert!(leads, "the leader answers with its sender's state");
    assert_eq!((peer.paused, peer.reachable), (false, Some(true)));
    assert!(peer.last_delivery_at_ms.is_some() && peer.acknowledged_seq >= last);
    operators_only_and_followers_answer_the_replicated_part(&tochigi, &inviter, last).await;

    // Paused: the messages queue and nothing is sent; resumed: they drain.
    set_paused(&tochigi, true, "pause-1").await;
    let settle = Duration::from_secs(1); // room for a batch in flight, and for a (wrong) delivery
    tokio::time::sleep(settle).await;
    let (before, _) = received(gunma.node(1));
    inviter.invite_gunma(&tochigi.hub, 2).await;
    tokio::time::sleep(settle).await;
    let leader = tochigi.hub.leader().await;
    let (assigned, acknowledged, queued) = outbound(tochigi.node(leader));
    assert_eq!(received(gunma.node(1)).0, before, "a paused peer got messages");
    assert!(acknowledged == before && assigned >= before + 2 && queued as u64 == assigned - before);
    let (peer, _) = gunma_peer(&tochigi).await;
    assert!(peer.paused && peer.queue_depth == assigned - before && peer.oldest_queued_age_ms.is_some(), "{peer:?}");
    set_paused(&tochigi, false, "resume-1").await;
    let last = drained(&tochigi, &gunma).await;
    assert!(last >= assigned);
    assert_exactly_once_in_order(gunma.node(1), last);

    // Gunma stops: the queue grows and the list shows it; Gunma returns: the queue drains.
    gunma.stop(1).await;
    inviter.invite_gunma(&tochigi.hub, 2).await;
    eventually("the list shows Gunma unreachable, backing off", async || {
        let (peer, _) = gunma_peer(&tochigi).await;
        peer.reachable == Some(false) && peer.backoff_ms.is_some() && !peer.last_error.is_empty()
    })
    .await;
    let (peer, _) = gunma_peer(&tochigi).await;
    assert!(peer.queue_depth > 0 && peer.oldest_queued_age_ms.is_some(), "{peer:?}");
    gunma.restart(1).await;
    let last = drained(&tochigi, &gunma).await;
    assert_exactly_once_in_order(gunma.node(1), last);
    eventually("the list shows Gunma reachable, its queue empty, no backoff", async || {
        let (peer, _) = gunma_peer(&tochigi).await;
        (peer.queue_depth, peer.reachable, peer.backoff_ms) == (0, Some(true), None)
    })
    .await;

    // Tochigi's leader stops: the new leader's sender continues the stream.
    let old_leader = tochigi.hub.leader().await;
    tochigi.stop(old_leader).await;
    inviter.invite_gunma(&tochigi.hub, 3).await;
    let last = drained(&tochigi, &gunma).await;
    assert_exactly_once_in_order(gunma.node(1), last);

    tochigi.shutdown().await;
    gunma.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_peer_keeps_the_queue_and_the_list_says_why() {
    let root = tempfile::tempdir().unwrap();
    let (tochigi, gunma) = two_hubs(root.path(), 1, 1, false).await;
    let mut inviter = Inviter::new(&tochigi.hub).await;
    inviter.invite_gunma(&tochigi.hub, 2).await;
    eventually("the list shows Gunma's refusal, backing off", async || {
        let (peer, _) = gunma_peer(&tochigi).await;
        peer.last_error.contains("Unauthenticated") && peer.backoff_ms.is_some()
    })
    .await;
    let (peer, _) = gunma_peer(&tochigi).await;
    assert_eq!(peer.reachable, Some(true), "a refusal is an answer: {peer:?}");
    let (assigned, acknowledged, queued) = outbound(tochigi.node(1));
    assert!(assigned >= 2 && acknowledged == 0 && queued as u64 == assigned, "nothing dropped");
    assert_eq!(received(gunma.node(1)), (0, vec![]));
    tochigi.shutdown().await;
    gunma.shutdown().await;
}

/// Cross-hub latency, measured, never asserted (figures in `docs/benchmarks.md`): from
/// Tochigi's answer to an invitation (its message committed in Tochigi's outbox) to Gunma
/// having applied that message. Run with
/// `cargo test --workspace --test federation_sender -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn cross_hub_latency() {
    let root = tempfile::tempdir().unwrap();
    let (tochigi, gunma) = two_hubs(root.path(), 3, 1, true).await;
    let mut inviter = Inviter::new(&tochigi.hub).await;
    let leader = tochigi.hub.leader().await;
    let mut samples = Vec::new();
    for _ in 0..100 {
        inviter.invite_gunma(&tochigi.hub, 1).await;
        let started = Instant::now();
        let (target, ..) = outbound(tochigi.node(leader));
        while received(gunma.node(1)).0 < target {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "cross-hub latency over {} messages: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );

    // A backlog: queued while paused, then drained in batches on resume.
    set_paused(&tochigi, true, "bench-pause").await;
    inviter.invite_gunma(&tochigi.hub, 300).await;
    let (target, acknowledged, _) = outbound(tochigi.node(leader));
    let queued = tochigi.node(leader).state.hub().outbox_after(&hub_name("gunma"), acknowledged, usize::MAX);
    let bytes: usize = queued.iter().map(|m| m.body.len()).sum();
    let started = Instant::now();
    set_paused(&tochigi, false, "bench-resume").await;
    while received(gunma.node(1)).0 < target {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let batches =
        audited_ranges(gunma.node(1)).iter().filter(|(first, last)| *first > acknowledged && *last <= target).count();
    println!(
        "backlog of {} messages ({} KiB) drained in {:.0} ms ({batches} batches, {:.0} messages/s)",
        target - acknowledged,
        bytes / 1024,
        took * 1000.0,
        (target - acknowledged) as f64 / took
    );
    tochigi.shutdown().await;
    gunma.shutdown().await;
}
