//! Multi-region behaviour on a Tochigi-shaped hub in-process: region blackout and failover,
//! leadership returning to the preferred regions, an isolated node serving stale local reads
//! (records and timelines, marked stale) and refusing writes fast (a session signed in since the
//! cut: UNAVAILABLE there, not "signed out"), replicas agreeing on the state
//! digest after healing, and membership changes under a write load without losing a write. A node
//! judges its own staleness by contact: a cut-off leader, and a learner that still names its old
//! leader, mark local answers stale; a write already waiting on a cut-off leader ends early; a
//! follower whose leader died says so within two seconds, with no election to tell it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{HubSpec, TestHub, Wire, put_as};
use kizuna_chaos::workload::{self, authed};
use kizuna_node::domain::{Envelope, LogCommand};
use kizuna_node::member::NodeRole;
use kizuna_node::node::NodeError;
use kizuna_proto::accounts::LoginRequest;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::admin::{
    AddLearnerRequest, ChangeMembershipRequest, GetClusterStatusRequest, GetStateDigestRequest, TransferLeaderRequest,
};
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, TimelineRequest, TimelineResponse};
use kizuna_proto::records::Consistency;

async fn timeline(endpoint: &str, token: &str, room: u64) -> Result<TimelineResponse, tonic::Status> {
    let mut posts = PostServiceClient::new(common::channel(endpoint).await);
    let req = TimelineRequest { room_id: room, ..Default::default() };
    posts.timeline(authed(req, token)).await.map(|r| r.into_inner())
}

fn tochigi(wire: Wire) -> HubSpec {
    HubSpec {
        nodes: vec![("utsunomiya", true), ("oyama", true), ("tokyo", true), ("osaka", true), ("nasu", false)],
        preferred_regions: vec!["utsunomiya".into(), "oyama".into()],
        wire,
    }
}

const PREFERRED: [&str; 2] = ["utsunomiya", "oyama"];

/// Waits until the agreed leader sits in a preferred region.
async fn leader_in_preferred_region(hub: &TestHub, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let leader = hub.leader().await;
        if PREFERRED.contains(&hub.region_of(leader).as_str()) {
            return leader;
        }
        assert!(Instant::now() < deadline, "leadership stayed in {} for {within:?}", hub.region_of(leader));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn region_blackout_fails_over_and_leadership_returns_to_the_prefecture() {
    let mut hub = TestHub::start_spec(tochigi(Wire::Plain)).await;
    let leader = leader_in_preferred_region(&hub, Duration::from_secs(20)).await;
    let before = hub.put(leader, "patient/1", "訪問済み", "w-1").await.expect("first write");

    // The leader's whole region goes dark.
    let region = hub.region_of(leader);
    let dark = hub.ids_in_region(&region);
    let blackout = Instant::now();
    for id in &dark {
        hub.stop(*id).await;
    }
    let survivor = hub.running_ids()[0];
    let after = loop {
        match hub.put(survivor, "patient/1", "停電後", "w-2").await {
            Ok(r) => break r,
            Err(e) => {
                assert!(blackout.elapsed() < Duration::from_secs(30), "writes did not resume: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let new_leader = hub.leader().await;
    assert!(!dark.contains(&new_leader));
    eprintln!(
        "FIGURE region {region} blackout: writes resumed after {:?} (new leader {new_leader} in {})",
        blackout.elapsed(),
        hub.region_of(new_leader)
    );
    assert_eq!(after.version, before.version + 1);

    // The region comes back: it catches up, and leadership is (again) in the prefecture.
    for id in &dark {
        hub.restart(*id).await;
    }
    hub.wait_applied(after.log_index).await;
    for id in &dark {
        let r = hub.get(*id, "patient/1", Consistency::Local).await.expect("caught up");
        assert_eq!(r.value, "停電後");
    }
    leader_in_preferred_region(&hub, Duration::from_secs(20)).await;

    // Leadership moved out of the prefecture by hand returns by itself.
    let tokyo = hub.ids_in_region("tokyo")[0];
    let current = hub.leader().await;
    hub.admin(current).await.transfer_leader(TransferLeaderRequest { to_node_id: tokyo }).await.expect("transfer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.leader().await != tokyo {
        assert!(Instant::now() < deadline, "leadership never reached tokyo");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let returned_at = Instant::now();
    let back = leader_in_preferred_region(&hub, Duration::from_secs(20)).await;
    eprintln!("FIGURE leadership returned from tokyo to {} after {:?}", hub.region_of(back), returned_at.elapsed());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_node_serves_stale_local_reads_and_refuses_writes_fast() {
    let hub = TestHub::start_spec(tochigi(Wire::Faulty)).await;
    let leader = hub.leader().await;
    // A doctor's group room (the chaos harness's set-up, over gRPC), whose operator writes records.
    let endpoints: Vec<String> = hub.running_ids().into_iter().map(|id| hub.api(id)).collect();
    let team = workload::setup(&endpoints, 1, 1).await.expect("collaboration set-up");
    hub.adopt_operator(team.operator.clone());
    let room = team.rooms[0];
    let w = hub.put(leader, "oxygen/supplier", "稼働中", "i-1").await.unwrap();
    hub.wait_applied(w.log_index).await;
    let post = CreatePostRequest {
        idempotency_key: "t-1".into(),
        room_id: room,
        text: "酸素の残量を確認".into(),
        ..Default::default()
    };
    let mut posts = PostServiceClient::new(common::channel(&hub.api(leader)).await);
    posts.create_post(authed(post, &team.token)).await.expect("post");

    // Cut off one voter that is not the leader, once it holds the post: a fresh read there
    // waits until it has applied the leader's commit index. (Waiting for the first leader's
    // applied index is not enough: the keeper may have moved leadership during the set-up, and
    // the post then committed at an index the old leader had not applied yet.)
    let cut =
        hub.running_ids().into_iter().find(|id| *id != leader && hub.status(*id).role == NodeRole::Follower).unwrap();
    let before = timeline(&hub.api(cut), &team.token, room).await.expect("timeline before the cut");
    assert_eq!((before.posts.len(), before.stale), (1, false), "{before:?}");
    hub.isolate(cut);
    // Give it time to notice it has lost its leader.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Writes through it fail fast with UNAVAILABLE, never hang.
    let started = Instant::now();
    let err = hub.put(cut, "oxygen/supplier", "停止", "i-2").await.expect_err("isolated write");
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(took < Duration::from_secs(5), "write took {took:?} to fail");
    eprintln!("FIGURE isolated node refused a write in {took:?}: {}", err.message());

    // Strict reads fail; default reads fall back to the local copy, marked stale.
    let strict = hub.get(cut, "oxygen/supplier", Consistency::Linearizable).await;
    assert_eq!(strict.expect_err("strict read").code(), tonic::Code::Unavailable);
    let fallback = hub.get(cut, "oxygen/supplier", Consistency::Unspecified).await.expect("fallback read");
    assert!(fallback.stale, "{fallback:?}");
    assert_eq!(fallback.value, "稼働中");
    let local = hub.get(cut, "oxygen/supplier", Consistency::Local).await.expect("local read");
    assert_eq!(local.value, "稼働中");
    assert!(local.as_of.is_some());
    // Timelines too: served from the local copy, and saying so.
    let cut_off = timeline(&hub.api(cut), &team.token, room).await.expect("timeline on the cut-off node");
    assert!(cut_off.stale && !cut_off.stale_reason.is_empty(), "{cut_off:?}");
    assert_eq!(cut_off.posts.len(), 1);
    let current = timeline(&hub.api(leader), &team.token, room).await.expect("timeline on the leader");
    assert!(!current.stale, "{current:?}");

    // A session signed in on the leader after the cut is unknown to the cut-off node: it says
    // it cannot check it now (UNAVAILABLE), not that the caller is signed out.
    let login = LoginRequest {
        idempotency_key: "after-the-cut".into(),
        login: workload::DOCTOR_LOGIN.into(),
        password: workload::PASSWORD.into(),
        device: "test".into(),
        ..Default::default()
    };
    let mut accounts = AccountServiceClient::new(common::channel(&hub.api(leader)).await);
    let new_token = accounts.login(login).await.expect("signs in on the leader").into_inner().token;
    let unknown = timeline(&hub.api(cut), &new_token, room).await.expect_err("a session the cut-off node never saw");
    assert_eq!(unknown.code(), tonic::Code::Unavailable, "{unknown:?}");
    assert!(unknown.message().contains("does not know this session"), "{unknown:?}");
    let post =
        CreatePostRequest {
            idempotency_key: "t-2".into(), room_id: room, text: "再訪問".into(), ..Default::default()
        };
    let mut on_cut = PostServiceClient::new(common::channel(&hub.api(cut)).await);
    let refused = on_cut.create_post(authed(post, &new_token)).await.expect_err("a write on the cut-off node");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    // A token no node knows is refused too; a cut-off node cannot tell it from a new one, so
    // it is UNAVAILABLE there and UNAUTHENTICATED where the copy is current.
    let forged = timeline(&hub.api(cut), "not-a-token", room).await.expect_err("a forged token on the cut-off node");
    assert_eq!(forged.code(), tonic::Code::Unavailable, "{forged:?}");
    let forged = timeline(&hub.api(leader), "not-a-token", room).await.expect_err("a forged token on the leader");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated, "{forged:?}");

    // The rest of the hub goes on.
    let w2 = hub.put(leader, "oxygen/supplier", "交換済み", "i-3").await.expect("majority still writes");

    // Heal: the node catches up and its reads are fresh again.
    hub.heal(cut);
    hub.wait_applied(w2.log_index).await;
    // Applying the write can come a moment before the node hears its leader's next heartbeat
    // (until then it rightly calls its copy stale): fresh within a few heartbeats.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = hub.get(cut, "oxygen/supplier", Consistency::Unspecified).await.expect("healed read");
        if !r.stale || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((r.value.as_str(), r.stale), ("交換済み", false), "{}", r.stale_reason);
    let healed = timeline(&hub.api(cut), &team.token, room).await.expect("healed timeline");
    assert!(!healed.stale, "{healed:?}");

    // Every replica, the healed one included, holds the same state (the index may still move
    // by an entry that changes no state, such as a new leader's blank entry: compare the digest).
    let target = hub.running(leader).node.metrics().last_applied.map_or(0, |l| l.index);
    hub.wait_applied(target).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut digests = Vec::new();
        for id in hub.running_ids() {
            let d = hub.admin(id).await.get_state_digest(GetStateDigestRequest {}).await.expect("digest").into_inner();
            assert!(d.entries > 0 && d.applied_index >= target, "{d:?}");
            digests.push(d.sha256);
        }
        if digests.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas differ: {digests:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_leader_and_learner_say_they_are_stale_and_a_waiting_write_ends_early() {
    let spec = HubSpec {
        nodes: vec![("utsunomiya", true), ("tokyo", true), ("osaka", true), ("nasu", false)],
        preferred_regions: vec![],
        wire: Wire::Faulty,
    };
    let hub = TestHub::start_spec(spec).await;
    let (leader, learner) = (hub.leader().await, 4);
    let key = "oxygen/supplier";
    let w = hub.put(leader, key, "稼働中", "s-1").await.expect("first write");
    hub.wait_applied(w.log_index).await;
    for id in hub.running_ids() {
        let r = hub.get(id, key, Consistency::Local).await.expect("local read");
        assert!(!r.stale, "node {id} in contact says stale: {r:?}");
    }

    // The learner is cut off (learners never elect, so it keeps naming its old leader), then
    // the leader, with a write and a linearizable read already waiting on it for a quorum.
    hub.isolate(learner);
    hub.isolate(leader);
    let node = &hub.running(leader).node;
    let write = Envelope {
        idempotency_key: "s-2".into(),
        proposed_at_ms: 0,
        command: LogCommand::PutRecord { key: key.into(), value: "停止".into() },
    };
    let started = Instant::now();
    let (write, read) = tokio::join!(node.write(write), node.linearizable_barrier());
    // Ended by the leader noticing its lost quorum, not by the (longer) quorum timeout. The
    // read may still be answered from the leader's lease (the quorum acknowledged it moments
    // ago; no other leader can be elected before the lease ends), else it is refused.
    assert!(matches!(write, Err(NodeError::QuorumLost)), "{write:?}");
    assert!(read.as_ref().is_ok() || read.as_ref().is_err_and(NodeError::is_quorum_unreachable), "{read:?}");
    eprintln!("FIGURE a write and a read waiting on a cut-off leader ended after {:?}", started.elapsed());
    // Past the lease, a linearizable read on the cut-off leader is refused at once.
    let late = node.linearizable_barrier().await;
    assert!(late.as_ref().is_err_and(NodeError::is_quorum_unreachable), "{late:?}");
    let started = Instant::now();
    let refused = hub.put(leader, key, "停止", "s-3").await.expect_err("a write through the API");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    eprintln!("FIGURE the next write on the cut-off leader was refused after {:?}", started.elapsed());

    // Both still believe in the old order, and both say their copy may be stale.
    let status = hub.status(leader);
    assert_eq!(status.role, NodeRole::Leader, "{status:?}");
    assert!(status.stale_reason.as_deref().is_some_and(|r| r.contains("quorum")), "{status:?}");
    let on_leader = hub.get(leader, key, Consistency::Local).await.expect("local read on the cut-off leader");
    assert!(on_leader.stale && on_leader.value == "稼働中", "{on_leader:?}");
    let learner_status = hub.status(learner);
    assert_eq!(learner_status.leader_id, Some(leader), "{learner_status:?}");
    assert!(learner_status.stale_reason.is_some(), "{learner_status:?}");
    let on_learner = hub.get(learner, key, Consistency::Local).await.expect("local read on the cut-off learner");
    assert!(on_learner.stale, "{on_learner:?}");
    // What `kizuna status` shows for the cut-off leader, asked there.
    let seen = hub
        .admin(leader)
        .await
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .expect("status on the cut-off leader");
    let me = seen.into_inner().members.into_iter().find(|m| m.id == leader).expect("itself");
    assert!(!me.stale_reason.is_empty(), "{me:?}");

    // Healed: a leader of the majority's term takes over and every copy is current again.
    hub.heal(leader);
    hub.heal(learner);
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in hub.running_ids() {
        loop {
            let r = hub.get(id, key, Consistency::Local).await.expect("local read after healing");
            if !r.stale {
                break;
            }
            assert!(Instant::now() < deadline, "node {id} still stale after healing: {r:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_whose_leader_died_says_its_local_reads_are_stale_within_two_seconds() {
    let mut hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let third = hub.running_ids().into_iter().find(|id| *id != leader && *id != follower).expect("a third voter");
    let key = "oxygen/supplier";
    // The first write also signs the operator in, while the hub still has its leader.
    let w = hub.put(leader, key, "稼働中", "d-1").await.expect("first write");
    hub.wait_applied(w.log_index).await;

    // The third voter stops first: the leader keeps a quorum with the follower and keeps
    // sending it heartbeats, so the follower's copy is current.
    hub.stop(third).await;
    let w = hub.put(leader, key, "交換済み", "d-2").await.expect("a quorum of two still writes");
    hub.wait_applied(w.log_index).await;
    let current = hub.get(follower, key, Consistency::Local).await.expect("local read in contact");
    assert!(!current.stale && current.stale_reason.is_empty(), "{current:?}");
    assert_eq!(current.value, "交換済み");

    // Then the leader dies. The follower is left alone: no quorum, so no new leader can ever
    // be elected and nothing but its lost contact can tell it that its copy may be behind.
    let died = Instant::now();
    hub.stop(leader).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let stale = loop {
        let r = hub.get(follower, key, Consistency::Local).await.expect("local read on the leaderless follower");
        if r.stale {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the follower still says its copy is current {:?} after its leader died: {r:?}",
            died.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("FIGURE a follower marked its local reads stale {:?} after its leader died", died.elapsed());
    // Its copy is still served, with the reason: no word from the leader, or no leader at all.
    assert_eq!(stale.value, "交換済み");
    assert!(
        stale.stale_reason.contains(&format!("node {leader}")) || stale.stale_reason.contains("no leader"),
        "{stale:?}"
    );
    // A default read falls back to the local copy, saying so; a linearizable one is refused.
    let fallback = hub.get(follower, key, Consistency::Unspecified).await.expect("default read");
    assert!(fallback.stale && !fallback.stale_reason.is_empty(), "{fallback:?}");
    let strict = hub.get(follower, key, Consistency::Linearizable).await.expect_err("linearizable read");
    assert_eq!(strict.code(), tonic::Code::Unavailable, "{strict:?}");

    // What `kizuna status` shows, asked on the follower: itself out of contact (its role then
    // shown with a `?`), the dead leader and the stopped voter unreachable.
    let seen = hub
        .admin(follower)
        .await
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .expect("status on the leaderless follower")
        .into_inner();
    assert_eq!(seen.answered_by, follower);
    let me = seen.members.iter().find(|m| m.id == follower).expect("itself");
    assert!(me.reachable && !me.stale_reason.is_empty(), "{me:?}");
    for gone in [leader, third] {
        let m = seen.members.iter().find(|m| m.id == gone).expect("a stopped member is still listed");
        assert!(!m.reachable && !m.error.is_empty(), "{m:?}");
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_under_load_lose_no_acknowledged_write() {
    let mut hub = TestHub::start_with(3, Wire::Plain).await;
    let leader = hub.leader().await;
    let endpoints: Vec<String> = hub.running_ids().iter().map(|id| hub.api(*id)).collect();
    let operator = hub.operator().await;

    // Writers: unique keys, each retried with the same idempotency key until acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let stop = stop.clone();
        let endpoints = endpoints.clone();
        let operator = operator.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/{w}/{i}");
                let rid = format!("req-{w}-{i}");
                let mut attempt = 0usize;
                loop {
                    let endpoint = &endpoints[(i as usize + attempt) % endpoints.len()];
                    match put_as(endpoint, &operator, &key, &format!("value {i}"), &rid).await {
                        Ok(r) => {
                            acked.insert(key.clone(), r.version);
                            break;
                        }
                        Err(_) if attempt < 200 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        Err(e) => panic!("write {key} never acknowledged: {e:?}"),
                    }
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Add a learner in a fourth region, promote it, then remove an old voter (the leader).
    let new = hub.start_new_node(4).await;
    let spec = common::node_spec(&new);
    let mut adm = hub.admin(leader).await;
    adm.add_learner(AddLearnerRequest { node: Some(spec), wait_caught_up: true }).await.expect("add learner");
    adm.change_membership(ChangeMembershipRequest {
        voter_ids: vec![1, 2, 3, 4],
        retain_as_learners: false,
        force: false,
    })
    .await
    .expect("promote");
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.status(4).role != NodeRole::Follower {
        assert!(Instant::now() < deadline, "node 4 never became a voter: {:?}", hub.status(4));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != leader).collect();

    // Removing down to two regions would break the placement rule: refused without force.
    let unsafe_change = adm
        .change_membership(ChangeMembershipRequest {
            voter_ids: remaining[..2].to_vec(),
            retain_as_learners: false,
            force: false,
        })
        .await
        .expect_err("unsafe placement");
    assert_eq!(unsafe_change.code(), tonic::Code::FailedPrecondition);
    assert!(unsafe_change.message().contains("at least 3 regions"), "{}", unsafe_change.message());

    adm.change_membership(ChangeMembershipRequest {
        voter_ids: remaining.clone(),
        retain_as_learners: false,
        force: false,
    })
    .await
    .expect("remove old voter");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = BTreeMap::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(acked.len() > 20, "too few writes acknowledged: {}", acked.len());
    hub.stop(leader).await;
    let new_leader = hub.leader().await;
    assert!(remaining.contains(&new_leader));
    // Every acknowledged write is on every remaining voter.
    let last = hub.status(new_leader).last_log_index;
    hub.wait_applied(last).await;
    for id in &remaining {
        for (key, version) in &acked {
            let r = hub
                .get(*id, key, Consistency::Local)
                .await
                .unwrap_or_else(|e| panic!("{key} lost on node {id}: {e:?}"));
            assert_eq!(r.version, *version, "{key} on node {id}");
        }
    }
    eprintln!("FIGURE membership change under load: {} acknowledged writes, none lost", acked.len());
    hub.shutdown().await;
}
