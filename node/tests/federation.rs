//! The cross-hub story over the public gRPC API: two real hubs in process (real RocksDB in
//! temp dirs, the public API and the federation listeners on 127.0.0.1, hub↔hub over mutual
//! TLS with signed batches), each with its leader's sender. A Tochigi doctor's patient team
//! takes in a Gunma visiting nurse: both post, both hubs show the same order, live events and
//! unread counts on both sides; the home hub goes down while the nurse posts; the receiving
//! hub's leader is killed while batches arrive; an old batch is replayed. Gunma shares its
//! resource map: Tochigi finds Gunma's station there and sends it a request, answered on Gunma.

mod common;

use std::time::Duration;

use common::federation::{FedHub, PATIENCE, eventually, hub_name, replay_first_batch, two_hubs};
use common::{Bearer, TestHub, channel};
use kizuna_node::domain::HubView;
use kizuna_proto::care_requests::care_request_service_client::CareRequestServiceClient;
use kizuna_proto::care_requests::{
    AnswerCareRequestRequest, AnswerState, CareRequestBox, CareRequestKind, GetCareRequestRequest,
    ListCareRequestsRequest, SendCareRequestRequest,
};
use kizuna_proto::directory::directory_service_client::DirectoryServiceClient;
use kizuna_proto::directory::{SearchFacilitiesRequest, ShareDirectoryRequest};
use kizuna_proto::events::event_service_client::EventServiceClient;
use kizuna_proto::events::{SubscribeRequest, event};
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, CreatePostResponse, TimelineOrder, TimelineRequest, TimelineResponse};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{
    CreatePatientRequest, InviteMemberRequest, ListRoomsRequest, Role, RoomListKind, RoomSummary,
};
use tokio_stream::StreamExt;

/// A signed-in professional of one hub, talking to that hub's leader.
struct Person {
    token: String,
}

impl Person {
    async fn of(hub: &TestHub, login: &str) -> Self {
        Person { token: hub.member(login).await }
    }

    async fn rooms(&self, hub: &TestHub) -> RoomServiceClient<common::Authed> {
        RoomServiceClient::with_interceptor(channel(&hub.api(hub.leader().await)).await, Bearer::new(&self.token))
    }

    async fn posts(&self, hub: &TestHub) -> PostServiceClient<common::Authed> {
        PostServiceClient::with_interceptor(channel(&hub.api(hub.leader().await)).await, Bearer::new(&self.token))
    }

    async fn post(&self, hub: &TestHub, room: u64, text: &str) -> CreatePostResponse {
        let req = CreatePostRequest {
            idempotency_key: format!("post-{text}"),
            room_id: room,
            text: text.into(),
            reply_to: None,
            mention_ids: vec![],
            attachment_ids: Vec::new(),
        };
        self.posts(hub).await.create_post(req).await.unwrap_or_else(|e| panic!("posting {text}: {e}")).into_inner()
    }

    async fn timeline(&self, hub: &TestHub, room: u64) -> TimelineResponse {
        let req = TimelineRequest {
            room_id: room,
            order: TimelineOrder::OldestFirst as i32,
            page_size: 200,
            ..Default::default()
        };
        self.posts(hub).await.timeline(req).await.expect("timeline").into_inner()
    }

    /// Every post's text, oldest first, page by page.
    async fn texts(&self, hub: &TestHub, room: u64) -> Vec<String> {
        common::timeline_texts(channel(&hub.api(hub.leader().await)).await, &self.token, room).await
    }

    async fn directory(&self, hub: &TestHub) -> DirectoryServiceClient<common::Authed> {
        DirectoryServiceClient::with_interceptor(channel(&hub.api(hub.leader().await)).await, Bearer::new(&self.token))
    }

    async fn requests(&self, hub: &TestHub) -> CareRequestServiceClient<common::Authed> {
        CareRequestServiceClient::with_interceptor(
            channel(&hub.api(hub.leader().await)).await,
            Bearer::new(&self.token),
        )
    }

    async fn patients(&self, hub: &TestHub) -> Vec<RoomSummary> {
        let req = ListRoomsRequest { kind: RoomListKind::Patients as i32, ..Default::default() };
        self.rooms(hub).await.list_rooms(req).await.expect("list rooms").into_inner().rooms
    }
}

/// A Tochigi doctor's patient with Gunma's visiting nurse invited: (doctor, nurse, the room on
/// Tochigi, Gunma's copy of it).
async fn border_patient(tochigi: &FedHub, gunma: &FedHub) -> (Person, Person, u64, u64) {
    let doctor = Person::of(&tochigi.hub, "dr.sato").await;
    let nurse = Person::of(&gunma.hub, "ns.kimura").await;
    let patient = CreatePatientRequest {
        idempotency_key: "patient".into(),
        name: "渡良瀬 ハナ".into(),
        kana: "わたらせ はな".into(),
        birth_date: "1936-02-11".into(),
        address: "足利市".into(),
        notes: String::new(),
    };
    let home = doctor.rooms(&tochigi.hub).await.create_patient(patient).await.expect("patient").into_inner().room_id;
    let invite = InviteMemberRequest {
        idempotency_key: "invite-kimura".into(),
        room_id: home,
        invitee: Some(Invitee::RemoteLogin("ns.kimura@gunma".into())),
        role: Role::Member as i32,
    };
    doctor.rooms(&tochigi.hub).await.invite_member(invite).await.expect("invite across hubs");
    let mut copy = 0;
    eventually("the nurse sees the team on her own hub", async || {
        let list = nurse.patients(&gunma.hub).await;
        copy = list.first().map_or(0, |r| r.room_id);
        list.first().is_some_and(|r| r.title == "渡良瀬 ハナ" && r.home_hub == "tochigi")
    })
    .await;
    (doctor, nurse, home, copy)
}

/// The posted events of `room` a subscriber of `hub` gets, in order, until `count` arrived.
async fn posted_events(hub: &TestHub, person: &Person, room: u64, count: usize) -> tokio::task::JoinHandle<Vec<u64>> {
    let api = channel(&hub.api(hub.leader().await)).await;
    let mut events = EventServiceClient::with_interceptor(api, Bearer::new(&person.token));
    let mut stream = events.subscribe(SubscribeRequest { after_cursor: None }).await.expect("subscribe").into_inner();
    tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < count {
            let next = tokio::time::timeout(PATIENCE, stream.next()).await;
            let Ok(Some(Ok(answer))) = next else { break };
            let Some(e) = answer.event else { continue };
            if let (Some(r), Some(event::Kind::PostedSeq(seq))) = (e.room_id, e.kind)
                && r == room
            {
                seqs.push(seq);
            }
        }
        seqs
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_team_across_two_hubs_posts_in_one_order_on_both() {
    let root = tempfile::tempdir().unwrap();
    let (tochigi, gunma) = two_hubs(root.path(), 1, 1, true).await;
    let (doctor, nurse, home, copy) = border_patient(&tochigi, &gunma).await;
    let on_tochigi = posted_events(&tochigi.hub, &doctor, home, 2).await;
    let on_gunma = posted_events(&gunma.hub, &nurse, copy, 2).await;

    let first = doctor.post(&tochigi.hub, home, "往診しました。血圧128/76、安定。").await;
    assert_eq!((first.seq, first.sending), (1, false));
    let second = nurse.post(&gunma.hub, copy, "水曜に訪問します").await;
    assert!(second.sending && second.seq == 0, "acknowledged by her own hub, on its way: {second:?}");
    let order = ["往診しました。血圧128/76、安定。", "水曜に訪問します"];
    eventually("both hubs show both posts, in the home hub's order", async || {
        doctor.texts(&tochigi.hub, home).await == order && nurse.texts(&gunma.hub, copy).await == order
    })
    .await;
    eventually("her post is no longer sending", async || nurse.timeline(&gunma.hub, copy).await.sending.is_empty())
        .await;
    assert_eq!(on_tochigi.await.unwrap(), [1, 2], "Tochigi's subscriber saw each post once");
    assert_eq!(on_gunma.await.unwrap(), [1, 2], "Gunma's subscriber saw each post once");

    // Unread counts are each hub's own; the copy names its home and when it last heard from it.
    let mine = doctor.patients(&tochigi.hub).await;
    assert_eq!((mine[0].unread, mine[0].home_hub.as_str()), (1, ""));
    let hers = nurse.patients(&gunma.hub).await;
    assert_eq!((hers[0].unread, hers[0].home_hub.as_str()), (1, "tochigi"));
    assert!(hers[0].home_heard_at.is_some());
    // Her reads of the copy are audited on her hub, naming the room (the patient lives on
    // Tochigi).
    let node = gunma.node(gunma.hub.leader().await);
    let journaled = node.state.journal.pending(1000).expect("journal").map(|(_, _, r)| r).unwrap_or_default();
    let chained = node.state.hub().audit_after(0, 1000).into_iter().map(|e| e.record);
    let reads: Vec<_> = journaled.into_iter().chain(chained).filter(|r| r.room.map(|x| x.0) == Some(copy)).collect();
    assert!(reads.iter().any(|r| r.what.starts_with("timeline")), "{reads:?}");
    // The nurse shows on Tochigi by name, facility and hub.
    let author = &doctor.timeline(&tochigi.hub, home).await.posts[1];
    assert_eq!(author.author_name, "ns.kimuraさん");
    assert!(author.author_facility.ends_with("（gunma）"), "{}", author.author_facility);

    tochigi.shutdown().await;
    gunma.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_made_while_the_home_hub_is_down_arrive_once_in_order_when_it_returns() {
    let root = tempfile::tempdir().unwrap();
    let (mut tochigi, gunma) = two_hubs(root.path(), 1, 1, true).await;
    let (doctor, nurse, home, copy) = border_patient(&tochigi, &gunma).await;
    doctor.post(&tochigi.hub, home, "退院前カンファレンスは金曜").await;
    eventually("the copy has the first post", async || nurse.texts(&gunma.hub, copy).await.len() == 1).await;

    tochigi.stop(1).await;
    let queued: Vec<String> = (1..=5).map(|i| format!("夜間の様子 {i}")).collect();
    for text in &queued {
        assert!(nurse.post(&gunma.hub, copy, text).await.sending, "acknowledged by Gunma alone");
    }
    let copy_now = nurse.timeline(&gunma.hub, copy).await;
    assert_eq!(copy_now.posts.len(), 1, "the copy still serves what it had");
    assert_eq!(copy_now.sending.len(), 5, "each queued post shows as sending");

    tochigi.restart(1).await;
    let mut expected = vec!["退院前カンファレンスは金曜".to_owned()];
    expected.extend(queued);
    eventually("every queued post arrived once, in order, on both hubs", async || {
        doctor.texts(&tochigi.hub, home).await == expected && nurse.texts(&gunma.hub, copy).await == expected
    })
    .await;
    eventually("nothing sending any more", async || nurse.timeline(&gunma.hub, copy).await.sending.is_empty()).await;
    tochigi.shutdown().await;
    gunma.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_receiving_leader_mid_stream_and_replaying_a_batch_duplicate_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (tochigi, mut gunma) = two_hubs(root.path(), 1, 3, true).await;
    let (doctor, nurse, home, copy) = border_patient(&tochigi, &gunma).await;
    let texts: Vec<String> = (1..=40).map(|i| format!("経過記録 {i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        doctor.post(&tochigi.hub, home, text).await;
        if i == 10 {
            let leader = gunma.hub.leader().await;
            gunma.stop(leader).await;
        }
    }
    eventually("all 40 posts in Gunma's copy, once each, in order", async || {
        nurse.texts(&gunma.hub, copy).await == texts
    })
    .await;
    let before =
        gunma.node(gunma.hub.leader().await).state.hub().inbound(&hub_name("tochigi")).unwrap().highest_applied();
    let replayed = replay_first_batch(&tochigi, &gunma, 5).await;
    assert_eq!(replayed, before, "acknowledged as applied before, nothing new");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(nurse.texts(&gunma.hub, copy).await, texts, "the replay applied nothing");
    tochigi.shutdown().await;
    gunma.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_map_and_a_request_to_a_facility_cross_hubs() {
    let root = tempfile::tempdir().unwrap();
    let (tochigi, gunma) = two_hubs(root.path(), 1, 1, true).await;
    let doctor = Person::of(&tochigi.hub, "dr.sato").await;
    let nurse = Person::of(&gunma.hub, "ns.kimura").await;
    let gunma_operator = Person { token: gunma.hub.operator().await };
    let share = ShareDirectoryRequest { idempotency_key: "share".into(), peer: "tochigi".into(), share: true };
    gunma_operator.directory(&gunma.hub).await.share_directory(share).await.expect("share the map with Tochigi");

    let search = SearchFacilitiesRequest { words: "ns.kimura".into(), ..Default::default() };
    let mut station = None;
    eventually("Tochigi's map shows Gunma's station, marked with its hub", async || {
        let found = doctor.directory(&tochigi.hub).await.search_facilities(search.clone()).await;
        station = found.expect("search").into_inner().facilities.into_iter().find(|f| f.hub == "gunma");
        station.is_some()
    })
    .await;
    let station = station.expect("found");
    let send = SendCareRequestRequest {
        idempotency_key: "request".into(),
        kind: CareRequestKind::HomeVisit as i32,
        patient_id: None,
        title: "訪問看護のお願い".into(),
        details: "足利市在住、週2回の訪問をお願いできますか".into(),
        facility_ids: vec![station.facility_id],
    };
    let sent = doctor.requests(&tochigi.hub).await.send_care_request(send).await.expect("send").into_inner();
    let sent_id = sent.care_request.expect("the request").care_request_id;

    let received = ListCareRequestsRequest { r#box: CareRequestBox::Received as i32, ..Default::default() };
    let mut on_gunma = None;
    eventually("the station's nurse sees the request on her hub", async || {
        let list = nurse.requests(&gunma.hub).await.list_care_requests(received.clone()).await;
        on_gunma = list.expect("list").into_inner().care_requests.into_iter().next();
        on_gunma.is_some()
    })
    .await;
    let on_gunma = on_gunma.expect("received");
    assert_eq!((on_gunma.title.as_str(), on_gunma.from_hub.as_str()), ("訪問看護のお願い", "tochigi"));
    let answer = AnswerCareRequestRequest {
        idempotency_key: "answer".into(),
        care_request_id: on_gunma.care_request_id,
        accept: true,
        note: "火・金で伺えます".into(),
    };
    nurse.requests(&gunma.hub).await.answer_care_request(answer).await.expect("answer");
    eventually("the doctor sees the answer on his hub", async || {
        let get = GetCareRequestRequest { care_request_id: sent_id };
        let request = doctor.requests(&tochigi.hub).await.get_care_request(get).await.expect("get").into_inner();
        let recipient = &request.care_request.expect("request").recipients[0];
        recipient.state == AnswerState::Accepted as i32
            && recipient.note == "火・金で伺えます"
            && recipient.facility_hub == "gunma"
    })
    .await;
    tochigi.shutdown().await;
    gunma.shutdown().await;
}

/// Catch-up after an outage, measured, never asserted (figures in `docs/benchmarks.md`): the
/// hubs cannot reach each other for `KIZUNA_OUTAGE_SECS` (default 600) while members of both
/// post into their shared team, one post a second on each side, so posts queue on both. Timed:
/// from the link's return until both hubs hold every post in the same order. Run with
/// `cargo test --workspace --test federation -- --ignored --nocapture catch_up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn catch_up_after_an_outage() {
    let outage = std::env::var("KIZUNA_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600u64);
    let root = tempfile::tempdir().unwrap();
    let (mut tochigi, mut gunma) = two_hubs(root.path(), 1, 1, true).await;
    let (doctor, nurse, home, copy) = border_patient(&tochigi, &gunma).await;
    tochigi.cut_off().await;
    gunma.cut_off().await;
    let started = std::time::Instant::now();
    let mut posts = 0;
    while started.elapsed() < Duration::from_secs(outage) {
        doctor.post(&tochigi.hub, home, &format!("連絡途絶中 栃木 {posts}")).await;
        nurse.post(&gunma.hub, copy, &format!("連絡途絶中 群馬 {posts}")).await;
        posts += 2;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tochigi.reconnect().await;
    gunma.reconnect().await;
    let back = std::time::Instant::now();
    eventually("Tochigi holds every post", async || doctor.texts(&tochigi.hub, home).await.len() == posts).await;
    let home_has = back.elapsed();
    eventually("Gunma's copy holds them in the same order, nothing sending", async || {
        nurse.timeline(&gunma.hub, copy).await.sending.is_empty() && nurse.texts(&gunma.hub, copy).await.len() == posts
    })
    .await;
    let both = back.elapsed();
    assert_eq!(doctor.texts(&tochigi.hub, home).await, nurse.texts(&gunma.hub, copy).await);
    println!(
        "catch-up after {outage} s cut off with {posts} posts queued on both sides: the home hub had them \
         after {:.2} s, both hubs in the same order after {:.2} s",
        home_has.as_secs_f64(),
        both.as_secs_f64()
    );
    tochigi.shutdown().await;
    gunma.shutdown().await;
}
