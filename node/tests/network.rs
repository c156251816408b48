//! The collaboration network's story over real gRPC on an in-process 3-node hub: operator,
//! facilities, invitations, registration and approval, login, a patient team with invitation
//! and approval, posts from two professions, unread counts and patient-list order, mark read,
//! live events on a follower, removal, account stop on every node, idempotent retries, bad
//! input and the hub-wide session policy.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Bearer, TestHub, channel};
use kizuna_node::domain::audit::AuditEntry;
use kizuna_node::store::codec;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::audit::{AuditAction, ListAuditEntriesRequest, VerifyAuditChainRequest};
use kizuna_proto::common::*;
use kizuna_proto::events::event_service_client::EventServiceClient;
use kizuna_proto::events::*;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::*;
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::*;
use tonic::Request;

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

struct Client {
    accounts: AccountServiceClient<tonic::transport::Channel>,
    rooms: RoomServiceClient<tonic::transport::Channel>,
    posts: PostServiceClient<tonic::transport::Channel>,
    events: EventServiceClient<tonic::transport::Channel>,
}

async fn client(endpoint: &str) -> Client {
    let ch = channel(endpoint).await;
    Client {
        accounts: AccountServiceClient::new(ch.clone()),
        rooms: RoomServiceClient::new(ch.clone()),
        posts: PostServiceClient::new(ch.clone()),
        events: EventServiceClient::new(ch),
    }
}

const PASSWORD: &str = "correct horse battery";

async fn login(c: &mut Client, login: &str) -> String {
    let req = LoginRequest {
        idempotency_key: format!("login-{login}-{}", uuid()),
        login: login.into(),
        password: PASSWORD.into(),
        device: "test".into(),
        ..Default::default()
    };
    c.accounts.login(req).await.expect("login").into_inner().token
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Registers a professional with a fresh invitation from `issuer` and has `approver` approve it.
async fn join(
    c: &mut Client,
    issuer: &str,
    approver: &str,
    facility: u64,
    as_admin: bool,
    login_name: &str,
    profession: Profession,
) -> u64 {
    let inv = IssueInvitationRequest { idempotency_key: uuid(), facility_id: facility, valid_hours: 24, as_admin };
    let code = c.accounts.issue_invitation(authed(inv, issuer)).await.expect("invitation").into_inner().code;
    let reg = RegisterRequest {
        idempotency_key: uuid(),
        invitation_code: code.clone(),
        login: login_name.into(),
        display_name: format!("{login_name}さん"),
        profession: profession as i32,
        password: PASSWORD.into(),
    };
    let id = c.accounts.register(reg.clone()).await.expect("register").into_inner().account_id;
    // Not approved yet: cannot log in.
    let early = c
        .accounts
        .login(LoginRequest {
            idempotency_key: uuid(),
            login: login_name.into(),
            password: PASSWORD.into(),
            device: "x".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(early.expect_err("pending account logs in").code(), tonic::Code::Unauthenticated);
    // The invitation is single-use.
    let again =
        c.accounts.register(RegisterRequest { idempotency_key: uuid(), login: format!("{login_name}2"), ..reg }).await;
    assert_eq!(again.expect_err("reused invitation").code(), tonic::Code::FailedPrecondition);
    c.accounts
        .approve_account(authed(ApproveAccountRequest { idempotency_key: uuid(), account_id: id }, approver))
        .await
        .expect("approve");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_collaboration_story() {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let ids = hub.running_ids();
    let follower = hub.follower_of(leader);
    let mut c = client(&hub.api(leader)).await;
    let mut f = client(&hub.api(follower)).await;

    // Operator, facilities.
    let init = InitOperatorRequest {
        idempotency_key: uuid(),
        login: "jimukyoku".into(),
        display_name: "事務局".into(),
        password: PASSWORD.into(),
    };
    c.accounts.init_operator(init.clone()).await.expect("init operator");
    let twice =
        c.accounts.init_operator(InitOperatorRequest { idempotency_key: uuid(), login: "other".into(), ..init }).await;
    assert_eq!(twice.expect_err("second operator").code(), tonic::Code::FailedPrecondition);
    let wrong = c
        .accounts
        .login(LoginRequest {
            idempotency_key: uuid(),
            login: "jimukyoku".into(),
            password: "wrong password!!".into(),
            device: "x".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(wrong.expect_err("wrong password").code(), tonic::Code::Unauthenticated);
    let op = login(&mut c, "jimukyoku").await;
    let facility = |name: &str, kind: FacilityKind| RegisterFacilityRequest {
        idempotency_key: uuid(),
        name: name.into(),
        kind: kind as i32,
        municipality: "宇都宮市".into(),
    };
    let clinic = c
        .accounts
        .register_facility(authed(facility("宇都宮在宅クリニック", FacilityKind::Clinic), &op))
        .await
        .unwrap()
        .into_inner()
        .facility_id;
    let pharmacy = c
        .accounts
        .register_facility(authed(facility("みどり薬局", FacilityKind::Pharmacy), &op))
        .await
        .unwrap()
        .into_inner()
        .facility_id;
    for fac in [clinic, pharmacy] {
        c.accounts
            .approve_facility(authed(ApproveFacilityRequest { idempotency_key: uuid(), facility_id: fac }, &op))
            .await
            .unwrap();
    }

    // Professionals join by invitation and approval.
    let doctor = join(&mut c, &op, &op, clinic, true, "dr.sato", Profession::Doctor).await;
    let dr = login(&mut c, "dr.sato").await;
    let nurse = join(&mut c, &dr, &dr, clinic, false, "ns.suzuki", Profession::VisitingNurse).await;
    let pharmacist = join(&mut c, &op, &op, pharmacy, true, "ph.tanaka", Profession::Pharmacist).await;
    let ns = login(&mut f, "ns.suzuki").await; // on a follower
    let ph = login(&mut c, "ph.tanaka").await;
    let _ = doctor;

    // A patient team: the owner's invitation is immediate, a member's waits for the owner.
    let patient = |name: &str| CreatePatientRequest {
        idempotency_key: uuid(),
        name: name.into(),
        kana: "やまだ".into(),
        birth_date: "1938-04-01".into(),
        address: "宇都宮市".into(),
        notes: String::new(),
    };
    let room_a = c.rooms.create_patient(authed(patient("山田 花子"), &dr)).await.unwrap().into_inner().room_id;
    c.rooms
        .invite_member(authed(
            InviteMemberRequest {
                idempotency_key: uuid(),
                room_id: room_a,
                invitee: Some(Invitee::AccountId(nurse)),
                role: Role::Member as i32,
            },
            &dr,
        ))
        .await
        .unwrap();
    f.rooms
        .invite_member(authed(
            InviteMemberRequest {
                idempotency_key: uuid(),
                room_id: room_a,
                invitee: Some(Invitee::AccountId(pharmacist)),
                role: Role::Member as i32,
            },
            &ns,
        ))
        .await
        .unwrap();
    let tl = |room: u64| TimelineRequest { room_id: room, ..Default::default() };
    let pending = c.posts.timeline(authed(tl(room_a), &ph)).await;
    assert_eq!(pending.expect_err("invited, not approved").code(), tonic::Code::NotFound);
    c.rooms
        .approve_member(authed(
            ApproveMemberRequest { idempotency_key: uuid(), room_id: room_a, account_id: pharmacist },
            &dr,
        ))
        .await
        .unwrap();

    // A subscriber on a follower, before the posts.
    let mut events =
        f.events.subscribe(authed(SubscribeRequest { after_cursor: None }, &ns)).await.expect("subscribe").into_inner();

    // Posts from two professions; a second patient posted to later comes first in the list.
    let post = |room: u64, text: &str, rid: &str| CreatePostRequest {
        idempotency_key: rid.into(),
        room_id: room,
        text: text.into(),
        reply_to: None,
        mention_ids: vec![],
        attachment_ids: Vec::new(),
    };
    let p1 =
        c.posts.create_post(authed(post(room_a, "本日訪問。血圧 128/76。", "p-1"), &dr)).await.unwrap().into_inner();
    let p2 = c
        .posts
        .create_post(authed(post(room_a, "お薬カレンダーをセットしました。", "p-2"), &ph))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p1.seq, p2.seq), (1, 2));
    let room_b = c.rooms.create_patient(authed(patient("佐藤 一郎"), &dr)).await.unwrap().into_inner().room_id;
    c.rooms
        .invite_member(authed(
            InviteMemberRequest {
                idempotency_key: uuid(),
                room_id: room_b,
                invitee: Some(Invitee::AccountId(nurse)),
                role: Role::Member as i32,
            },
            &dr,
        ))
        .await
        .unwrap();
    c.posts.create_post(authed(post(room_b, "退院調整の相談です。", "p-3"), &dr)).await.unwrap();
    let list = |t: &str| authed(ListRoomsRequest { kind: RoomListKind::Patients as i32, ..Default::default() }, t);
    let rooms = f.rooms.list_rooms(list(&ns)).await.unwrap().into_inner().rooms;
    let shape: Vec<(String, u64)> = rooms.iter().map(|r| (r.title.clone(), r.unread)).collect();
    assert_eq!(shape, [("佐藤 一郎".to_owned(), 1), ("山田 花子".to_owned(), 2)]);
    assert_eq!(rooms[1].preview, "お薬カレンダーをセットしました。");
    // Filtered by name (full-width spaces fold), and to the unread ones.
    let filtered = |filter: &str, unread_only: bool| {
        let req = ListRoomsRequest {
            kind: RoomListKind::Patients as i32,
            filter: Some(filter.into()),
            unread_only,
            ..Default::default()
        };
        authed(req, &ns)
    };
    let rooms = f.rooms.list_rooms(filtered("山田　花子", false)).await.unwrap().into_inner().rooms;
    assert_eq!(rooms.iter().map(|r| r.title.as_str()).collect::<Vec<_>>(), ["山田 花子"]);
    assert_eq!(f.rooms.list_rooms(filtered("", true)).await.unwrap().into_inner().rooms.len(), 2);
    assert!(f.rooms.list_rooms(filtered("鈴木", false)).await.unwrap().into_inner().rooms.is_empty());

    // The subscriber on the follower sees the posts of its rooms, in order.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next_post(&mut events).await);
    }
    assert_eq!(seen, [(room_a, 1), (room_a, 2), (room_b, 1)]);

    // The nurse answers in 佐藤 一郎's room without having read the doctor's post: that post
    // stays unread for her, her own does not count.
    f.posts.create_post(authed(post(room_b, "水曜14時、伺えます。", "p-4"), &ns)).await.unwrap();
    let rooms = f.rooms.list_rooms(list(&ns)).await.unwrap().into_inner().rooms;
    assert_eq!(rooms.iter().find(|r| r.room_id == room_b).map(|r| (r.last_seq, r.unread)), Some((2, 1)));

    // Mark read: unread drops to zero.
    f.posts
        .mark_read(authed(MarkReadRequest { idempotency_key: uuid(), room_id: room_a, up_to_seq: 2 }, &ns))
        .await
        .unwrap();
    let rooms = f.rooms.list_rooms(list(&ns)).await.unwrap().into_inner().rooms;
    assert_eq!(rooms.iter().find(|r| r.room_id == room_a).unwrap().unread, 0);

    // A sub-room comes inside its patient's entry, with its own unread count, and brings the
    // patient to the top; filters look into it.
    let sub = CreateSubRoomRequest {
        idempotency_key: uuid(),
        timeline_room_id: room_a,
        name: "医師・訪問看護".into(),
        member_ids: vec![nurse],
    };
    let sub = c.rooms.create_sub_room(authed(sub, &dr)).await.unwrap().into_inner().room_id;
    c.posts.create_post(authed(post(sub, "看取りの方針をご相談させてください。", "s-1"), &dr)).await.unwrap();
    let rooms = f.rooms.list_rooms(list(&ns)).await.unwrap().into_inner().rooms;
    let shape: Vec<(&str, u64, usize)> =
        rooms.iter().map(|r| (r.title.as_str(), r.unread, r.sub_rooms.len())).collect();
    assert_eq!(shape, [("山田 花子", 0, 1), ("佐藤 一郎", 1, 0)]);
    let inside = &rooms[0].sub_rooms[0];
    assert_eq!((inside.room_id, inside.title.as_str(), inside.unread), (sub, "医師・訪問看護", 1));
    let titles = |rooms: Vec<RoomSummary>| rooms.into_iter().map(|r| r.title).collect::<Vec<_>>();
    let by_sub_room_name = f.rooms.list_rooms(filtered("訪問看護", false)).await.unwrap().into_inner().rooms;
    assert_eq!(titles(by_sub_room_name), ["山田 花子"]);
    f.posts
        .mark_read(authed(MarkReadRequest { idempotency_key: uuid(), room_id: room_b, up_to_seq: 2 }, &ns))
        .await
        .unwrap();
    let unread_in_sub_room_only = f.rooms.list_rooms(filtered("", true)).await.unwrap().into_inner().rooms;
    assert_eq!(titles(unread_in_sub_room_only), ["山田 花子"]);

    // Timeline shows sender, profession, facility; newest on top.
    let t = f.posts.timeline(authed(tl(room_a), &ns)).await.unwrap().into_inner().posts;
    assert_eq!(t.iter().map(|p| p.seq).collect::<Vec<_>>(), [2, 1]);
    assert_eq!((t[0].author_kind(), t[0].author_profession()), (AccountKind::Professional, Profession::Pharmacist));
    assert_eq!(t[0].author_facility, "みどり薬局");
    // A page at a time, in either order, each page's token leading to the next.
    let page = |order: TimelineOrder, page_token: String| {
        let req =
            TimelineRequest { room_id: room_a, order: order as i32, page_size: 1, page_token, ..Default::default() };
        authed(req, &ns)
    };
    let seqs = |r: &TimelineResponse| r.posts.iter().map(|p| p.seq).collect::<Vec<_>>();
    for (order, expected) in [
        (TimelineOrder::Unspecified, [2, 1]),
        (TimelineOrder::NewestFirst, [2, 1]),
        (TimelineOrder::OldestFirst, [1, 2]),
    ] {
        let first = f.posts.timeline(page(order, String::new())).await.unwrap().into_inner();
        assert!(!first.next_page_token.is_empty(), "{order:?}: {first:?}");
        let second = f.posts.timeline(page(order, first.next_page_token.clone())).await.unwrap().into_inner();
        assert_eq!([seqs(&first), seqs(&second)].concat(), expected, "{order:?}");
        assert!(second.next_page_token.is_empty(), "{order:?}: {second:?}");
    }
    // A window: only posts after #1, oldest first.
    let mut window = page(TimelineOrder::OldestFirst, String::new());
    window.get_mut().after_seq = Some(1);
    assert_eq!(seqs(&f.posts.timeline(window).await.unwrap().into_inner()), [2]);
    // A token is the server's: one of the other order, or a made-up one, is refused.
    let newest = f.posts.timeline(page(TimelineOrder::NewestFirst, String::new())).await.unwrap().into_inner();
    let newest_token_of_a = newest.next_page_token.clone();
    for token in [newest.next_page_token, "not-a-token".to_owned(), "7b7d".to_owned()] {
        let e = f.posts.timeline(page(TimelineOrder::OldestFirst, token)).await.expect_err("bad page token");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    // A token is bound to its room: room A's token moved to room B would skip B's posts.
    let mut elsewhere = page(TimelineOrder::NewestFirst, newest_token_of_a.clone());
    elsewhere.get_mut().room_id = room_b;
    let e = f.posts.timeline(elsewhere).await.expect_err("another room's page token");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let mut unknown = page(TimelineOrder::NewestFirst, String::new());
    unknown.get_mut().order = 9;
    assert_eq!(f.posts.timeline(unknown).await.expect_err("unknown order").code(), tonic::Code::InvalidArgument);

    // Edit, acknowledge, delete: the timeline shows the result, the history stays for audit.
    c.posts
        .edit_post(authed(
            EditPostRequest {
                idempotency_key: uuid(),
                room_id: room_a,
                seq: 1,
                text: "本日訪問。血圧 130/78（訂正）。".into(),
            },
            &dr,
        ))
        .await
        .unwrap();
    f.posts.ack_post(authed(AckPostRequest { idempotency_key: uuid(), room_id: room_a, seq: 1 }, &ns)).await.unwrap();
    let edit_by_other = c
        .posts
        .edit_post(authed(EditPostRequest { idempotency_key: uuid(), room_id: room_a, seq: 1, text: "x".into() }, &ph))
        .await;
    assert_eq!(edit_by_other.expect_err("not the author").code(), tonic::Code::PermissionDenied);
    let t = c.posts.timeline(authed(tl(room_a), &dr)).await.unwrap().into_inner().posts;
    let first = t.iter().find(|p| p.seq == 1).expect("post 1");
    assert!(first.edited && first.text.contains("訂正") && first.ack_ids == vec![nurse]);

    // A retried idempotency key posts once.
    let again =
        c.posts.create_post(authed(post(room_a, "本日訪問。血圧 128/76。", "p-1"), &dr)).await.unwrap().into_inner();
    assert_eq!(again.seq, 1);
    assert_eq!(c.posts.timeline(authed(tl(room_a), &dr)).await.unwrap().into_inner().posts.len(), 2);
    // A retried login (its first answer lost on the way) still ends with a working token.
    let retry = LoginRequest {
        idempotency_key: "login-retry".into(),
        login: "ph.tanaka".into(),
        password: PASSWORD.into(),
        device: "x".into(),
        ..Default::default()
    };
    let first = c.accounts.login(retry.clone()).await.expect("login").into_inner();
    let second = f.accounts.login(retry).await.expect("retried login").into_inner();
    assert_ne!(first.token, second.token);
    for token in [&first.token, &second.token] {
        c.posts.timeline(authed(tl(room_a), token)).await.expect("the token works");
    }

    // Bad input changes nothing.
    for (bad, code) in [
        (post(room_a, "", "bad-1"), tonic::Code::InvalidArgument),
        (post(room_a, &"長".repeat(10_001), "bad-2"), tonic::Code::InvalidArgument),
        (post(999_999, "x", "bad-3"), tonic::Code::NotFound),
        (post(room_a, "x", ""), tonic::Code::InvalidArgument),
    ] {
        let err = c.posts.create_post(authed(bad, &dr)).await.expect_err("bad post");
        assert_eq!(err.code(), code, "{err:?}");
    }
    let no_token = c.posts.timeline(Request::new(tl(room_a))).await;
    assert_eq!(no_token.expect_err("no token").code(), tonic::Code::Unauthenticated);
    assert_eq!(c.posts.timeline(authed(tl(room_a), &dr)).await.unwrap().into_inner().posts.len(), 2);

    // A removed member is refused at once.
    c.rooms
        .remove_member(authed(
            RemoveMemberRequest { idempotency_key: uuid(), room_id: room_a, account_id: pharmacist },
            &dr,
        ))
        .await
        .unwrap();
    assert_eq!(c.posts.timeline(authed(tl(room_a), &ph)).await.expect_err("removed").code(), tonic::Code::NotFound);
    assert_eq!(
        c.posts.create_post(authed(post(room_a, "x", "after-removal"), &ph)).await.expect_err("removed").code(),
        tonic::Code::NotFound
    );

    // The audit log holds the reads (shipped from the nodes that served them) and the writes,
    // and its chain verifies.
    let mut audit =
        kizuna_proto::audit::audit_service_client::AuditServiceClient::new(channel(&hub.api(follower)).await);
    let not_operator = audit.list_audit_entries(authed(ListAuditEntriesRequest::default(), &dr)).await;
    assert_eq!(not_operator.expect_err("doctor reads audit").code(), tonic::Code::PermissionDenied);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let entries = loop {
        let q = ListAuditEntriesRequest { page_size: 1000, ..Default::default() };
        let entries = audit.list_audit_entries(authed(q, &op)).await.unwrap().into_inner().entries;
        let nurse_read_on_follower = entries.iter().any(|e| {
            e.account_id == nurse
                && e.action() == AuditAction::Read
                && e.what.starts_with("timeline")
                && e.node_id == follower
        });
        if nurse_read_on_follower || std::time::Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        entries.iter().any(|e| e.account_id == nurse && e.action() == AuditAction::Read && e.node_id == follower),
        "{entries:#?}"
    );
    assert!(
        entries.iter().any(|e| e.account_id == pharmacist && e.action() == AuditAction::Write && e.what == "post"),
        "{entries:#?}"
    );
    assert!(entries.iter().any(|e| e.account_id == nurse && e.what == "patient list"));
    // A facility's admins see their own staff's entries (who read which patient, when), and
    // only those; another facility's, or the whole log, they may not list.
    let staff_only = ListAuditEntriesRequest { facility_id: Some(clinic), page_size: 1000, ..Default::default() };
    let own = audit.list_audit_entries(authed(staff_only, &dr)).await.expect("the clinic's admin").into_inner().entries;
    assert!(own.iter().any(|e| e.account_id == nurse && e.action() == AuditAction::Read), "{own:#?}");
    assert!(own.iter().all(|e| e.account_id == nurse || e.account_id == doctor), "{own:#?}");
    let theirs = ListAuditEntriesRequest { facility_id: Some(pharmacy), ..Default::default() };
    let refused = audit.list_audit_entries(authed(theirs.clone(), &dr)).await.expect_err("another facility");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let by_operator = audit.list_audit_entries(authed(theirs, &op)).await.expect("an operator").into_inner().entries;
    assert!(by_operator.iter().all(|e| e.account_id == pharmacist), "{by_operator:#?}");
    let v = audit.verify_audit_chain(authed(VerifyAuditChainRequest {}, &op)).await.unwrap().into_inner();
    assert!(v.intact && v.verified as usize >= entries.len(), "{v:?}");
    // The API carries everything the hashes cover: an export verifies offline, as version 1.
    assert!(entries.first().is_some_and(|e| e.seq == 1) && entries.iter().all(|e| e.hash_version == 1));
    let mut export = tempfile::NamedTempFile::new().unwrap();
    for e in &entries {
        writeln!(export, "{}", kizuna_node::cli::audit_export::line(e)).unwrap();
    }
    let verified = kizuna_node::cli::audit_export::verify_file(export.path()).unwrap();
    assert_eq!(verified as usize, entries.len());

    // Own sessions; a family account sees its patient's timeline only.
    let sessions =
        f.accounts.list_sessions(authed(ListSessionsRequest::default(), &ns)).await.unwrap().into_inner().sessions;
    assert!(sessions.iter().any(|s| s.current && !s.revoked), "{sessions:?}");
    let patient_a = c
        .rooms
        .list_rooms(list(&dr))
        .await
        .unwrap()
        .into_inner()
        .rooms
        .iter()
        .find(|r| r.room_id == room_a)
        .map(|r| r.room_id)
        .unwrap();
    let fam = CreateFamilyAccountRequest {
        idempotency_key: uuid(),
        patient_id: patient_a,
        login: "yamada.family".into(),
        display_name: "山田 家族".into(),
        password: PASSWORD.into(),
    };
    c.accounts.create_family_account(authed(fam, &dr)).await.expect("family account");
    let family = login(&mut c, "yamada.family").await;
    // The doctor chose that password: the family member replaces it before reading anything.
    let early = c.posts.timeline(authed(tl(room_a), &family)).await.expect_err("issued password");
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);
    let own = ChangePasswordRequest {
        idempotency_key: uuid(),
        current_password: PASSWORD.into(),
        new_password: "家族の新しいパスワード2026".into(),
    };
    c.accounts.change_password(authed(own, &family)).await.expect("the family member's own password");
    assert_eq!(c.posts.timeline(authed(tl(room_a), &family)).await.unwrap().into_inner().posts.len(), 2);
    assert_eq!(
        c.posts.timeline(authed(tl(room_b), &family)).await.expect_err("other patient").code(),
        tonic::Code::NotFound
    );

    // A stopped account's token is refused on every node.
    c.accounts
        .stop_account(authed(StopAccountRequest { idempotency_key: uuid(), account_id: nurse }, &dr))
        .await
        .unwrap();
    for id in &ids {
        let mut n = client(&hub.api(*id)).await;
        let err = n.rooms.list_rooms(list(&ns)).await.expect_err("stopped account");
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "node {id}");
    }

    // Request ids belong to their account: another user's write under a reused id is its own
    // write, not the first user's remembered answer.
    let group = CreateGroupRequest { idempotency_key: uuid(), name: "薬薬連携".into() };
    let group = c.rooms.create_group(authed(group, &dr)).await.unwrap().into_inner().room_id;
    let invite = InviteMemberRequest {
        idempotency_key: uuid(),
        room_id: group,
        invitee: Some(Invitee::AccountId(pharmacist)),
        role: Role::Member as i32,
    };
    c.rooms.invite_member(authed(invite, &dr)).await.unwrap();
    let mine =
        c.posts.create_post(authed(post(group, "よろしくお願いします。", "g-1"), &dr)).await.unwrap().into_inner();
    let theirs = c.posts.create_post(authed(post(group, "こちらこそ。", "g-1"), &ph)).await.unwrap().into_inner();
    assert_eq!((mine.seq, theirs.seq), (1, 2));
    let mine_again =
        c.posts.create_post(authed(post(group, "よろしくお願いします。", "g-1"), &dr)).await.unwrap().into_inner();
    assert_eq!(mine_again.seq, 1, "a retry by the first user still answers with the first result");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampering_with_a_stored_audit_entry_is_detected() {
    let mut hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let victim = hub.follower_of(leader);
    let mut c = client(&hub.api(leader)).await;
    let init = InitOperatorRequest {
        idempotency_key: uuid(),
        login: "op".into(),
        display_name: "事務局".into(),
        password: PASSWORD.into(),
    };
    c.accounts.init_operator(init).await.unwrap();
    let op = login(&mut c, "op").await;
    let fac = RegisterFacilityRequest {
        idempotency_key: uuid(),
        name: "クリニック".into(),
        kind: FacilityKind::Clinic as i32,
        municipality: "鹿沼市".into(),
    };
    let clinic = c.accounts.register_facility(authed(fac, &op)).await.unwrap().into_inner().facility_id;
    c.accounts
        .approve_facility(authed(ApproveFacilityRequest { idempotency_key: uuid(), facility_id: clinic }, &op))
        .await
        .unwrap();
    join(&mut c, &op, &op, clinic, true, "dr.kato", Profession::Doctor).await;
    let dr = login(&mut c, "dr.kato").await;
    let req = CreatePatientRequest {
        idempotency_key: uuid(),
        name: "患者".into(),
        kana: "かんじゃ".into(),
        ..Default::default()
    };
    let room = c.rooms.create_patient(authed(req, &dr)).await.unwrap().into_inner().room_id;
    for i in 0..3 {
        let p = CreatePostRequest {
            idempotency_key: uuid(),
            room_id: room,
            text: format!("記録 {i}"),
            reply_to: None,
            mention_ids: vec![],
            attachment_ids: Vec::new(),
        };
        c.posts.create_post(authed(p, &dr)).await.unwrap();
    }
    let mut audit = kizuna_proto::audit::audit_service_client::AuditServiceClient::new(channel(&hub.api(victim)).await);
    let v = audit.verify_audit_chain(authed(VerifyAuditChainRequest {}, &op)).await.unwrap().into_inner();
    assert!(v.intact && v.verified >= 4, "{v:?}");

    // Alter entry 2 on disk while the node is down, as an insider holding the hub's master key
    // would: open the sealed value, change it, seal it again.
    hub.stop(victim).await;
    {
        let masters = hub.config.master_keys().expect("the test master key");
        let (_log, state) = kizuna_node::store::open(&hub.data_dir(victim), masters).expect("the stopped node's store");
        let reader = state.reader();
        let db = reader.database().upgrade().expect("open");
        let cf = db.cf_handle("sm_data").unwrap();
        let mut key = vec![b'Z'];
        key.extend_from_slice(&2u64.to_be_bytes());
        let raw = db.get_cf(cf, &key).unwrap().expect("audit entry 2");
        let plain = reader.vault().open_state(&key, &raw).expect("opens under the hub's key");
        let mut entry: AuditEntry = codec::decode(&plain).expect("a stored audit entry");
        entry.record.what = "nothing happened".into();
        let sealed = reader.vault().seal_state(&key, codec::encode(&entry).expect("encode"));
        db.put_cf(cf, &key, sealed).unwrap();
    }
    hub.restart(victim).await;
    let mut audit = kizuna_proto::audit::audit_service_client::AuditServiceClient::new(channel(&hub.api(victim)).await);
    let v = audit.verify_audit_chain(authed(VerifyAuditChainRequest {}, &op)).await.unwrap().into_inner();
    assert!(!v.intact, "{v:?}");
    assert_eq!(v.broken_at_seq, Some(2), "{v:?}");
    assert!(v.reason.contains("altered"), "{v:?}");
    // The other nodes' copies still verify.
    let mut audit = kizuna_proto::audit::audit_service_client::AuditServiceClient::new(channel(&hub.api(leader)).await);
    assert!(audit.verify_audit_chain(authed(VerifyAuditChainRequest {}, &op)).await.unwrap().into_inner().intact);
    hub.shutdown().await;
}

/// A 3-node hub with its operator signed in and one approved clinic: (hub, leader, a client on
/// the leader, the operator's token, the clinic).
async fn hub_with_clinic() -> (TestHub, u64, Client, String, u64) {
    let hub = TestHub::start(3).await;
    let leader = hub.leader().await;
    let mut c = client(&hub.api(leader)).await;
    let init = InitOperatorRequest {
        idempotency_key: uuid(),
        login: "op".into(),
        display_name: "事務局".into(),
        password: PASSWORD.into(),
    };
    c.accounts.init_operator(init).await.unwrap();
    let op = login(&mut c, "op").await;
    let clinic = facility(&mut c, &op, "在宅クリニック", FacilityKind::Clinic).await;
    (hub, leader, c, op, clinic)
}

/// Registers and approves a facility; returns its id.
async fn facility(c: &mut Client, op: &str, name: &str, kind: FacilityKind) -> u64 {
    let req = RegisterFacilityRequest {
        idempotency_key: uuid(),
        name: name.into(),
        kind: kind as i32,
        municipality: "宇都宮市".into(),
    };
    let id = c.accounts.register_facility(authed(req, op)).await.expect("facility").into_inner().facility_id;
    c.accounts
        .approve_facility(authed(ApproveFacilityRequest { idempotency_key: uuid(), facility_id: id }, op))
        .await
        .expect("approve");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_to_two_hospitals_is_answered_by_each_and_opens_the_patient_team() {
    use kizuna_proto::care_requests::care_request_service_client::CareRequestServiceClient;
    use kizuna_proto::care_requests::*;
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    let follower = hub.follower_of(leader);
    let hospital = facility(&mut c, &op, "県立病院", FacilityKind::Hospital).await;
    let other = facility(&mut c, &op, "済生会病院", FacilityKind::Hospital).await;
    let pharmacy = facility(&mut c, &op, "みどり薬局", FacilityKind::Pharmacy).await;
    join(&mut c, &op, &op, clinic, true, "dr.home", Profession::Doctor).await;
    let hospital_doctor = join(&mut c, &op, &op, hospital, true, "dr.ward", Profession::Doctor).await;
    join(&mut c, &op, &op, other, true, "msw.other", Profession::MedicalSocialWorker).await;
    join(&mut c, &op, &op, pharmacy, true, "ph.green", Profession::Pharmacist).await;
    let (dr, ward, msw, ph) = (
        login(&mut c, "dr.home").await,
        login(&mut c, "dr.ward").await,
        login(&mut c, "msw.other").await,
        login(&mut c, "ph.green").await,
    );
    let req = CreatePatientRequest {
        idempotency_key: uuid(),
        name: "高橋 ハナ".into(),
        kana: "たかはし".into(),
        ..Default::default()
    };
    let created = c.rooms.create_patient(authed(req, &dr)).await.unwrap().into_inner();

    // Sent through a follower; answered through the leader.
    let mut on_follower = CareRequestServiceClient::new(channel(&hub.api(follower)).await);
    let mut on_leader = CareRequestServiceClient::new(channel(&hub.api(leader)).await);
    let send = SendCareRequestRequest {
        idempotency_key: "rq-1".into(),
        kind: CareRequestKind::Admission as i32,
        patient_id: Some(created.patient_id),
        title: "入院のご相談".into(),
        details: "誤嚥性肺炎の疑い。本日中の入院を希望します。".into(),
        facility_ids: vec![hospital, other],
    };
    let sent = on_follower.send_care_request(authed(send.clone(), &dr)).await.expect("send").into_inner();
    let sent = sent.care_request.expect("the care request");
    assert_eq!((sent.kind(), sent.patient_name.as_str()), (CareRequestKind::Admission, "高橋 ハナ"));
    assert!(sent.recipients.iter().all(|r| r.state == AnswerState::Pending as i32), "{sent:?}");
    // A retry with the same idempotency key sends nothing new.
    let again = on_follower.send_care_request(authed(send, &dr)).await.expect("retried send").into_inner();
    assert_eq!(again.care_request.map(|r| r.care_request_id), Some(sent.care_request_id));
    let list = |sent: bool| {
        let r#box = if sent { CareRequestBox::Sent } else { CareRequestBox::Received } as i32;
        ListCareRequestsRequest { r#box, ..Default::default() }
    };
    assert_eq!(
        on_leader.list_care_requests(authed(list(true), &dr)).await.unwrap().into_inner().care_requests.len(),
        1
    );

    // Each hospital sees it in its inbox; the pharmacy does not, and cannot read it.
    for token in [&ward, &msw] {
        assert_eq!(
            on_leader.list_care_requests(authed(list(false), token)).await.unwrap().into_inner().care_requests.len(),
            1
        );
    }
    assert!(
        on_leader.list_care_requests(authed(list(false), &ph)).await.unwrap().into_inner().care_requests.is_empty()
    );
    let id = sent.care_request_id;
    let peek = on_leader.get_care_request(authed(GetCareRequestRequest { care_request_id: id }, &ph)).await;
    assert_eq!(peek.expect_err("outsider reads a request").code(), tonic::Code::NotFound);

    let answer = |accept: bool, note: &str| AnswerCareRequestRequest {
        idempotency_key: uuid(),
        care_request_id: id,
        accept,
        note: note.into(),
    };
    let mut events =
        c.events.subscribe(authed(SubscribeRequest { after_cursor: None }, &dr)).await.expect("subscribe").into_inner();
    let accepted =
        on_leader.answer_care_request(authed(answer(true, "本日14時に受け入れます"), &ward)).await.expect("accept");
    let accepted = accepted.into_inner().care_request.expect("the care request");
    assert_eq!(accepted.recipients[0].state, AnswerState::Accepted as i32);
    assert_eq!(accepted.recipients[0].answered_by, Some(hospital_doctor));
    on_leader.answer_care_request(authed(answer(false, "満床です"), &msw)).await.expect("decline");
    let twice = on_leader.answer_care_request(authed(answer(true, ""), &msw)).await;
    assert_eq!(twice.expect_err("second answer").code(), tonic::Code::FailedPrecondition);
    let cancel = on_leader
        .cancel_care_request(authed(CancelCareRequestRequest { idempotency_key: uuid(), care_request_id: id }, &dr))
        .await;
    assert_eq!(cancel.expect_err("nothing left to cancel").code(), tonic::Code::FailedPrecondition);

    // The sender sees both answers; the hospital doctor is now in the patient's team.
    let seen = on_leader.get_care_request(authed(GetCareRequestRequest { care_request_id: id }, &dr)).await.unwrap();
    let seen = seen.into_inner().care_request.expect("the care request");
    let states: Vec<i32> = seen.recipients.iter().map(|r| r.state).collect();
    assert_eq!(states, vec![AnswerState::Accepted as i32, AnswerState::Declined as i32]);
    assert_eq!(seen.recipients[1].note, "満床です");
    let tl = TimelineRequest { room_id: created.room_id, ..Default::default() };
    c.posts.timeline(authed(tl, &ward)).await.expect("the accepting doctor reads the patient's timeline");
    // The sender hears of the answer, and the team of its new member, live, in that order.
    use kizuna_proto::events::event::Kind;
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message()).await.expect("an event in time");
        let event = event.expect("stream").expect("an event").event.expect("an event in the message");
        heard.push((event.room_id, event.kind));
    }
    assert_eq!(
        heard,
        vec![(None, Some(Kind::CareRequestUpdated(id))), (Some(created.room_id), Some(Kind::MembershipChanged(true)))]
    );

    // Bad input changes nothing.
    let bad = SendCareRequestRequest {
        idempotency_key: uuid(),
        kind: CareRequestKind::Unspecified as i32,
        title: "x".into(),
        details: "x".into(),
        facility_ids: vec![hospital],
        ..Default::default()
    };
    let e = on_leader.send_care_request(authed(bad, &dr)).await.expect_err("no kind");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let bad = ListCareRequestsRequest { page_size: 500, ..list(true) };
    assert_eq!(
        on_leader.list_care_requests(authed(bad, &dr)).await.expect_err("limit").code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        on_leader.list_care_requests(authed(list(true), &dr)).await.unwrap().into_inner().care_requests.len(),
        1
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_resource_map_finds_facilities_near_a_patient_and_shows_their_staff() {
    use kizuna_proto::directory::directory_service_client::DirectoryServiceClient;
    use kizuna_proto::directory::*;
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    let follower = hub.follower_of(leader);
    let station = facility(&mut c, &op, "ひばり訪問看護", FacilityKind::VisitingNursingStation).await;
    join(&mut c, &op, &op, clinic, true, "dr.map", Profession::Doctor).await;
    let nurse = join(&mut c, &op, &op, station, true, "vn.map", Profession::VisitingNurse).await;
    let (dr, vn) = (login(&mut c, "dr.map").await, login(&mut c, "vn.map").await);

    // The station's admin fills in its profile through a follower.
    let mut on_follower = DirectoryServiceClient::new(channel(&hub.api(follower)).await);
    let profile = FacilityProfile {
        address: "宇都宮市駅前通り1-1".into(),
        phone: "028-600-0000".into(),
        location: Some(GeoPoint { lat_e6: 36_565_000, lon_e6: 139_900_000 }),
        services: vec!["看取り".into(), "24時間対応".into()],
        accepting_new_patients: true,
        note: "土日も相談可".into(),
    };
    let update =
        UpdateFacilityProfileRequest { idempotency_key: uuid(), facility_id: station, profile: Some(profile.clone()) };
    let page = on_follower.update_facility_profile(authed(update.clone(), &vn)).await.expect("update");
    let page = page.into_inner().page.expect("the facility's page");
    assert_eq!(page.facility.as_ref().and_then(|f| f.profile.clone()), Some(profile));
    // The doctor cannot edit another facility's profile.
    let update = UpdateFacilityProfileRequest { idempotency_key: uuid(), ..update };
    let e = on_follower.update_facility_profile(authed(update, &dr)).await.expect_err("not its admin");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // Near the patient's home (宇都宮駅), accepting new patients, offering 看取り.
    let mut directory = DirectoryServiceClient::new(channel(&hub.api(leader)).await);
    let search = SearchFacilitiesRequest {
        service: Some("看取り".into()),
        accepting_only: true,
        near: Some(GeoPoint { lat_e6: 36_559_000, lon_e6: 139_898_000 }),
        radius_m: 5_000,
        ..Default::default()
    };
    let found = directory.search_facilities(authed(search, &dr)).await.unwrap().into_inner().facilities;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].facility_id, station);
    assert!(found[0].distance_m.is_some_and(|d| (500..1_000).contains(&d)), "{found:?}");
    let everything = directory.search_facilities(authed(SearchFacilitiesRequest::default(), &dr)).await.unwrap();
    assert_eq!(everything.into_inner().facilities.len(), 2);

    // Its page lists the nurse to connect with.
    let page = directory.get_facility(authed(GetFacilityRequest { facility_id: station }, &dr)).await.unwrap();
    let staff = page.into_inner().page.expect("the facility's page").staff;
    assert_eq!(
        staff.iter().map(|s| (s.account_id, s.profession())).collect::<Vec<_>>(),
        vec![(nurse, Profession::VisitingNurse)]
    );

    // Bad input changes nothing.
    let bad = SearchFacilitiesRequest { radius_m: 1_000_000, ..Default::default() };
    assert_eq!(
        directory.search_facilities(authed(bad, &dr)).await.expect_err("radius").code(),
        tonic::Code::InvalidArgument
    );
    let bad = SearchFacilitiesRequest { kinds: vec![99], ..Default::default() };
    assert_eq!(
        directory.search_facilities(authed(bad, &dr)).await.expect_err("kind").code(),
        tonic::Code::InvalidArgument
    );
    let missing = directory.get_facility(authed(GetFacilityRequest { facility_id: 424_242 }, &dr)).await;
    assert_eq!(missing.expect_err("no such facility").code(), tonic::Code::NotFound);
    let unsigned = directory.search_facilities(SearchFacilitiesRequest::default()).await;
    assert_eq!(unsigned.expect_err("signed out").code(), tonic::Code::Unauthenticated);
    hub.shutdown().await;
}

/// A live stream passes over the posts of rooms its account may not read (remembering that,
/// so thousands of streams on a node do not read the state for every post); once the account
/// joins such a room its posts arrive, and once it is removed they stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_stream_follows_its_account_into_and_out_of_rooms() {
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    join(&mut c, &op, &op, clinic, true, "dr.live", Profession::Doctor).await;
    let nurse = join(&mut c, &op, &op, clinic, false, "ns.live", Profession::Nurse).await;
    let (dr, ns) = (login(&mut c, "dr.live").await, login(&mut c, "ns.live").await);
    let mut f = client(&hub.api(hub.follower_of(leader))).await;
    let mut events =
        f.events.subscribe(authed(SubscribeRequest { after_cursor: None }, &ns)).await.expect("subscribe").into_inner();
    let group =
        |name: &str, token: &str| authed(CreateGroupRequest { idempotency_key: uuid(), name: name.into() }, token);
    let doctors = c.rooms.create_group(group("医師連絡", &dr)).await.unwrap().into_inner().room_id;
    let nurses = c.rooms.create_group(group("看護連絡", &ns)).await.unwrap().into_inner().room_id;
    let post = |room: u64, text: &str, token: &str| {
        let req = CreatePostRequest { idempotency_key: uuid(), room_id: room, text: text.into(), ..Default::default() };
        authed(req, token)
    };
    // Each step waits for the stream to pass the posts before it: visibility is decided when
    // an event is sent, so a stream that lagged behind an invitation would rightly send more.
    for text in ["申し送り 1", "申し送り 2"] {
        c.posts.create_post(post(doctors, text, &dr)).await.expect("a post she may not read");
    }
    c.posts.create_post(post(nurses, "区切り 1", &ns)).await.expect("her own room");
    assert_eq!(next_post(&mut events).await, (nurses, 1), "nothing of the doctors' room before she is in it");
    let member = InviteMemberRequest {
        idempotency_key: uuid(),
        room_id: doctors,
        invitee: Some(Invitee::AccountId(nurse)),
        role: Role::Member as i32,
    };
    c.rooms.invite_member(authed(member, &dr)).await.expect("invited by the owner: a member at once");
    c.posts.create_post(post(doctors, "申し送り 3", &dr)).await.expect("a post she reads");
    assert_eq!(next_post(&mut events).await, (doctors, 3), "the doctors' room once she is in it");
    let remove = RemoveMemberRequest { idempotency_key: uuid(), room_id: doctors, account_id: nurse };
    c.rooms.remove_member(authed(remove, &dr)).await.expect("removed");
    c.posts.create_post(post(doctors, "申し送り 4", &dr)).await.expect("a post she may no longer read");
    c.posts.create_post(post(nurses, "区切り 2", &ns)).await.expect("her own room");
    assert_eq!(next_post(&mut events).await, (nurses, 2), "nothing of the doctors' room once she is out");
    // Signed out elsewhere: the stream ends at its next event, even one it would pass over.
    c.accounts.logout(authed(LogoutRequest { idempotency_key: uuid() }, &ns)).await.expect("signed out");
    c.posts.create_post(post(doctors, "申し送り 5", &dr)).await.expect("a post she may not read");
    let ended = tokio::time::timeout(Duration::from_secs(10), events.message()).await.expect("the stream ends in time");
    assert_eq!(ended.expect_err("a signed-out stream").code(), tonic::Code::Unauthenticated);
}

/// The (room, seq) of the next post event on `events`, within 10 s.
async fn next_post(events: &mut tonic::Streaming<SubscribeResponse>) -> (u64, u64) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("event in time")
            .expect("stream")
            .expect("event")
            .event
            .expect("an event in the message");
        if let Some(event::Kind::PostedSeq(seq)) = e.kind {
            return (e.room_id.expect("a post's room"), seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_finds_japanese_words_in_what_the_user_may_read_on_any_node() {
    use kizuna_proto::search::SearchRequest;
    use kizuna_proto::search::search_service_client::SearchServiceClient;
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    let follower = hub.follower_of(leader);
    join(&mut c, &op, &op, clinic, true, "dr.search", Profession::Doctor).await;
    join(&mut c, &op, &op, clinic, false, "ns.other", Profession::Nurse).await;
    let (dr, other) = (login(&mut c, "dr.search").await, login(&mut c, "ns.other").await);
    let req = CreatePatientRequest {
        idempotency_key: uuid(),
        name: "山田 花子".into(),
        kana: "やまだ はなこ".into(),
        ..Default::default()
    };
    let room = c.rooms.create_patient(authed(req, &dr)).await.unwrap().into_inner().room_id;
    let post = |text: &str| CreatePostRequest {
        idempotency_key: uuid(),
        room_id: room,
        text: text.into(),
        reply_to: None,
        mention_ids: vec![],
        attachment_ids: Vec::new(),
    };
    let seq =
        c.posts.create_post(authed(post("在宅酸素の流量を２Ｌに変更しました。"), &dr)).await.unwrap().into_inner().seq;
    c.posts.create_post(authed(post("本日の訪問で酸素チューブを交換。"), &dr)).await.unwrap();

    // On a follower: the index is replicated state like any other.
    let mut search = SearchServiceClient::new(channel(&hub.api(follower)).await);
    let q = |query: &str| SearchRequest { query: query.into(), ..Default::default() };
    let found = search.search(authed(q("酸素"), &dr)).await.unwrap().into_inner();
    assert_eq!(found.posts.len(), 2, "{found:?}");
    assert_eq!(found.posts[0].room_title, "山田 花子");
    let found = search.search(authed(q("流量を2l"), &dr)).await.unwrap().into_inner();
    assert_eq!(found.posts.iter().map(|h| h.post.as_ref().map(|p| p.seq)).collect::<Vec<_>>(), vec![Some(seq)]);
    let found = search.search(authed(q("やまだ"), &dr)).await.unwrap().into_inner();
    assert_eq!(found.patients.iter().map(|p| p.room_id).collect::<Vec<_>>(), vec![room]);
    let found = search.search(authed(q("クリニック"), &dr)).await.unwrap().into_inner();
    assert_eq!(found.facilities.len(), 1);
    let found = search.search(authed(q("ns.other"), &dr)).await.unwrap().into_inner();
    assert_eq!(found.people.len(), 1);

    // Someone outside the team finds neither the posts nor the patient.
    let found = search.search(authed(q("酸素"), &other)).await.unwrap().into_inner();
    assert!(found.posts.is_empty() && found.patients.is_empty(), "{found:?}");

    // An edit moves the post in the index; a deletion takes it out.
    let edit =
        EditPostRequest { idempotency_key: uuid(), room_id: room, seq, text: "流量は据え置きです。".into() };
    c.posts.edit_post(authed(edit, &dr)).await.unwrap();
    let mut on_leader = SearchServiceClient::new(channel(&hub.api(leader)).await);
    assert!(on_leader.search(authed(q("流量を"), &dr)).await.unwrap().into_inner().posts.is_empty());
    assert_eq!(on_leader.search(authed(q("据え置き"), &dr)).await.unwrap().into_inner().posts.len(), 1);
    c.posts.delete_post(authed(DeletePostRequest { idempotency_key: uuid(), room_id: room, seq }, &dr)).await.unwrap();
    assert!(on_leader.search(authed(q("据え置き"), &dr)).await.unwrap().into_inner().posts.is_empty());

    // Bad input.
    let e = on_leader.search(authed(q("酸"), &dr)).await.expect_err("one character");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = on_leader.search(authed(SearchRequest { page_size: 1000, ..q("酸素") }, &dr)).await.expect_err("limit");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    hub.shutdown().await;
}

/// The code an authenticator app holding `base32` shows `ahead_secs` from now.
fn app_code(base32: &str, ahead_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(base32).expect("base32 secret");
    let totp = totp_rs::Builder::new().with_secret(secret).build().expect("totp");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    totp.generate(now + ahead_secs).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_factor_guards_login_and_a_code_works_once() {
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    let follower = hub.follower_of(leader);
    let mut f = client(&hub.api(follower)).await;
    let nurse = join(&mut c, &op, &op, clinic, false, "ns.totp", Profession::Nurse).await;
    let token = login(&mut c, "ns.totp").await;

    // Enrol through a follower; a retry of the same request gives the same secret.
    let begin = BeginTotpRequest { idempotency_key: "totp-1".into() };
    let first = f.accounts.begin_totp(authed(begin.clone(), &token)).await.expect("begin").into_inner();
    let again = f.accounts.begin_totp(authed(begin, &token)).await.expect("retried begin").into_inner();
    assert_eq!(first.secret_base32, again.secret_base32);
    assert!(first.otpauth_uri.starts_with("otpauth://totp/Kizuna:ns.totp?secret="), "{first:?}");
    let wrong = ConfirmTotpRequest { idempotency_key: uuid(), code: "000000x".into() };
    assert_eq!(
        f.accounts.confirm_totp(authed(wrong, &token)).await.expect_err("bad code").code(),
        tonic::Code::InvalidArgument
    );
    let code = app_code(&first.secret_base32, 0);
    f.accounts
        .confirm_totp(authed(ConfirmTotpRequest { idempotency_key: uuid(), code: code.clone() }, &token))
        .await
        .expect("confirm");

    // From now on a login needs a code, and the confirming code is spent.
    let attempt = |totp_code: &str| LoginRequest {
        idempotency_key: uuid(),
        login: "ns.totp".into(),
        password: PASSWORD.into(),
        device: "phone".into(),
        totp_code: Some(totp_code.into()).filter(|c: &String| !c.is_empty()),
    };
    let e = c.accounts.login(attempt("")).await.expect_err("no code");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("code"), "{e:?}");
    let e = c.accounts.login(attempt("123")).await.expect_err("wrong code");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = c.accounts.login(attempt(&code)).await.expect_err("a spent code");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    // The next step's code (a phone a little ahead) signs in, once.
    let next = app_code(&first.secret_base32, 30);
    let session = f.accounts.login(attempt(&next)).await.expect("login with a fresh code").into_inner();
    f.accounts
        .list_sessions(authed(ListSessionsRequest::default(), &session.token))
        .await
        .expect("the new session works");
    let e = c.accounts.login(attempt(&next)).await.expect_err("the same code twice");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    // A lost phone: the facility admin (here the operator) turns it off; password alone works again.
    let reset = DisableTotpRequest { idempotency_key: uuid(), account_id: Some(nurse), code: String::new() };
    c.accounts.disable_totp(authed(reset, &op)).await.expect("admin reset");
    c.accounts.login(attempt("")).await.expect("password only");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_device_is_stopped_at_once_on_every_node() {
    let (hub, _, mut c, op, clinic) = hub_with_clinic().await;
    let pharmacy = facility(&mut c, &op, "みどり薬局", FacilityKind::Pharmacy).await;
    join(&mut c, &op, &op, clinic, true, "dr.admin", Profession::Doctor).await;
    let nurse = join(&mut c, &op, &op, clinic, false, "ns.phone", Profession::Nurse).await;
    join(&mut c, &op, &op, pharmacy, true, "ph.other", Profession::Pharmacist).await;
    let (admin, lost_device) = (login(&mut c, "dr.admin").await, login(&mut c, "ns.phone").await);
    let (pc, other_admin) = (login(&mut c, "ns.phone").await, login(&mut c, "ph.other").await);

    // The nurse's device list, seen from the PC: the PC is current; the other session is listed.
    let own =
        c.accounts.list_sessions(authed(ListSessionsRequest::default(), &pc)).await.unwrap().into_inner().sessions;
    assert_eq!(own.len(), 2, "{own:?}");
    let lost = own.iter().find(|s| !s.current).expect("the other device").session_id.clone();
    assert_eq!(lost.len(), 16);
    c.accounts
        .revoke_session(authed(
            RevokeSessionRequest { idempotency_key: uuid(), account_id: None, session_id: lost.clone() },
            &pc,
        ))
        .await
        .expect("revoke");
    // The lost device's token is refused everywhere; the PC goes on.
    for id in hub.running_ids() {
        let mut n = client(&hub.api(id)).await;
        let e =
            n.accounts.list_sessions(authed(ListSessionsRequest::default(), &lost_device)).await.expect_err("ended");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "node {id}");
    }
    c.accounts.list_sessions(authed(ListSessionsRequest::default(), &pc)).await.expect("the PC still works");
    let twice = RevokeSessionRequest { idempotency_key: uuid(), account_id: None, session_id: lost };
    assert_eq!(
        c.accounts.revoke_session(authed(twice, &pc)).await.expect_err("ended").code(),
        tonic::Code::FailedPrecondition
    );

    // The facility's admin sees and stops the nurse's PC; another facility's admin cannot.
    let by_admin = ListSessionsRequest { account_id: Some(nurse), ..Default::default() };
    let listed = c.accounts.list_sessions(authed(by_admin, &admin)).await.unwrap().into_inner().sessions;
    let pc_id = listed.iter().find(|s| !s.revoked).expect("the PC").session_id.clone();
    let e = c
        .accounts
        .list_sessions(authed(ListSessionsRequest { account_id: Some(nurse), ..Default::default() }, &other_admin))
        .await;
    assert_eq!(e.expect_err("another facility").code(), tonic::Code::PermissionDenied);
    let stop = RevokeSessionRequest { idempotency_key: uuid(), account_id: Some(nurse), session_id: pc_id };
    c.accounts.revoke_session(authed(stop, &admin)).await.expect("admin stops the PC");
    for id in hub.running_ids() {
        let mut n = client(&hub.api(id)).await;
        let e = n.accounts.list_sessions(authed(ListSessionsRequest::default(), &pc)).await.expect_err("stopped");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "node {id}");
    }
    hub.shutdown().await;
}

/// The session policy is hub state: set on the leader, it reads back on a follower; only
/// operators read or set it, and out-of-bounds values are refused. (That apply and sign-in
/// follow it is the domain's tests': its shortest idle timeout is minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_session_policy_is_set_by_an_operator_and_holds_on_every_node() {
    let hub = TestHub::start(3).await;
    let (op, nurse) = (hub.operator().await, hub.member("nurse.policy").await);
    let leader = hub.leader().await;
    let accounts = |endpoint: String, token: String| async move {
        AccountServiceClient::with_interceptor(channel(&endpoint).await, Bearer::new(&token))
    };
    let mut on_leader = accounts(hub.api(leader), op.clone()).await;
    let read = on_leader.get_session_policy(GetSessionPolicyRequest {}).await.unwrap().into_inner().policy;
    assert_eq!(read, Some(SessionPolicy { idle_minutes: 30, absolute_hours: 12 }), "the defaults");
    let set = |idle_minutes, absolute_hours| SetSessionPolicyRequest {
        idempotency_key: uuid(),
        policy: Some(SessionPolicy { idle_minutes, absolute_hours }),
    };
    on_leader.set_session_policy(set(10, 8)).await.unwrap();
    let bad = on_leader.set_session_policy(set(2, 8)).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    let mut on_follower = accounts(hub.api(hub.follower_of(leader)), op).await;
    let read = on_follower.get_session_policy(GetSessionPolicyRequest {}).await.unwrap().into_inner().policy;
    assert_eq!(read, Some(SessionPolicy { idle_minutes: 10, absolute_hours: 8 }));
    let mut as_nurse = accounts(hub.api(hub.follower_of(leader)), nurse).await;
    let refused = as_nurse.get_session_policy(GetSessionPolicyRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let refused = as_nurse.set_session_policy(set(5, 1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_can_require_a_second_factor_with_a_grace_period() {
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    let mut f = client(&hub.api(hub.follower_of(leader))).await;
    join(&mut c, &op, &op, clinic, false, "ns.must", Profession::Nurse).await;
    let token = login(&mut c, "ns.must").await;
    let set = |facility_id: Option<u64>, required: bool, grace_days: u32| SetSecondFactorPolicyRequest {
        idempotency_key: uuid(),
        facility_id,
        required,
        grace_days,
    };
    let refused = c.accounts.set_second_factor_policy(authed(set(None, true, 30), &token)).await;
    assert_eq!(refused.expect_err("a member").code(), tonic::Code::PermissionDenied);

    // Required hub-wide within 30 days: sign-in works and says by when, on any node.
    c.accounts.set_second_factor_policy(authed(set(None, true, 30), &op)).await.expect("hub-wide");
    let attempt = |totp_code: Option<String>| LoginRequest {
        idempotency_key: uuid(),
        login: "ns.must".into(),
        password: PASSWORD.into(),
        device: "phone".into(),
        totp_code,
    };
    let signed_in = f.accounts.login(attempt(None)).await.expect("within the grace period").into_inner();
    let due = signed_in.second_factor_due.expect("told by when").seconds;
    let month = 30 * 24 * 3600;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((due - now - month).abs() < 120, "due in 30 days: {due} vs now {now}");
    let me = f.accounts.get_me(authed(GetMeRequest {}, &signed_in.token)).await.unwrap().into_inner();
    assert_eq!(me.second_factor_due.map(|d| d.seconds), Some(due));

    // The clinic requires it at once: the earlier due time wins and sign-in is refused.
    c.accounts.set_second_factor_policy(authed(set(Some(clinic), true, 0), &op)).await.expect("the clinic");
    let policy = f.accounts.get_second_factor_policy(authed(GetSecondFactorPolicyRequest {}, &token)).await;
    assert_eq!(policy.unwrap().into_inner().requirements.len(), 2);
    let late = f.accounts.login(attempt(None)).await.expect_err("past due");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    assert!(late.message().contains("二要素認証"), "{late:?}");

    // A session from before still works: the nurse sets the second factor up with it, then
    // signs in with a code and is no longer told to.
    let begin = BeginTotpRequest { idempotency_key: uuid() };
    let secret = c.accounts.begin_totp(authed(begin, &token)).await.expect("begin").into_inner().secret_base32;
    let confirm = ConfirmTotpRequest { idempotency_key: uuid(), code: app_code(&secret, 0) };
    c.accounts.confirm_totp(authed(confirm, &token)).await.expect("confirm");
    let enrolled = f.accounts.login(attempt(Some(app_code(&secret, 30)))).await.expect("with a code").into_inner();
    assert_eq!(enrolled.second_factor_due, None);

    // Lifted, the requirement is gone from the policy.
    c.accounts.set_second_factor_policy(authed(set(Some(clinic), false, 0), &op)).await.expect("lifted");
    c.accounts.set_second_factor_policy(authed(set(None, false, 0), &op)).await.expect("lifted");
    let policy = c.accounts.get_second_factor_policy(authed(GetSecondFactorPolicyRequest {}, &op)).await.unwrap();
    assert!(policy.into_inner().requirements.is_empty());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emergency_access_reads_a_timeline_for_a_while_loudly_audited() {
    let (hub, leader, mut c, op, clinic) = hub_with_clinic().await;
    let mut f = client(&hub.api(hub.follower_of(leader))).await;
    join(&mut c, &op, &op, clinic, true, "dr.team", Profession::Doctor).await;
    let coordinator = join(&mut c, &op, &op, clinic, false, "dr.dmat", Profession::Doctor).await;
    let (team, dmat) = (login(&mut c, "dr.team").await, login(&mut c, "dr.dmat").await);
    let patient = CreatePatientRequest {
        idempotency_key: uuid(),
        name: "川口 トメ".into(),
        kana: "かわぐち とめ".into(),
        ..Default::default()
    };
    let room = c.rooms.create_patient(authed(patient, &team)).await.unwrap().into_inner().room_id;
    let post = CreatePostRequest {
        idempotency_key: uuid(),
        room_id: room,
        text: "人工呼吸器使用中".into(),
        ..Default::default()
    };
    c.posts.create_post(authed(post, &team)).await.unwrap();
    let reason = "水害で停電。人工呼吸器の設定を確認して搬送先を決めるため";
    let open =
        |reason: &str| OpenEmergencyAccessRequest { idempotency_key: uuid(), room_id: room, reason: reason.into() };
    let tl = || TimelineRequest { room_id: room, page_size: 50, ..Default::default() };

    // Not designated: refused; the timeline stays closed.
    let refused = f.rooms.open_emergency_access(authed(open(reason), &dmat)).await.expect_err("not designated");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(f.posts.timeline(authed(tl(), &dmat)).await.expect_err("closed").code(), tonic::Code::NotFound);
    // Designated by an operator, with a reason: the timeline opens on any node, read-only.
    let designate = SetBreakGlassRequest { idempotency_key: uuid(), account_id: coordinator, allowed: true };
    c.rooms.set_break_glass(authed(designate, &op)).await.expect("designated");
    let short = f.rooms.open_emergency_access(authed(open("確認"), &dmat)).await.expect_err("no real reason");
    assert_eq!(short.code(), tonic::Code::InvalidArgument);
    let opened = f.rooms.open_emergency_access(authed(open(reason), &dmat)).await.expect("opened").into_inner();
    let until = opened.until.expect("until").seconds;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((until - now - 4 * 3600).abs() < 120, "four hours: {until} vs {now}");
    let page = c.posts.timeline(authed(tl(), &dmat)).await.expect("readable now").into_inner();
    assert_eq!(page.posts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(), vec!["人工呼吸器使用中"]);
    let write = CreatePostRequest { idempotency_key: uuid(), room_id: room, text: "x".into(), ..Default::default() };
    assert_eq!(c.posts.create_post(authed(write, &dmat)).await.expect_err("read-only").code(), tonic::Code::NotFound);

    // The operators see it with its reason; the audit chain has its opening and its reads.
    let list =
        c.rooms.list_emergency_accesses(authed(ListEmergencyAccessesRequest {}, &op)).await.unwrap().into_inner();
    assert_eq!(
        list.accesses.iter().map(|a| (a.account_id, a.reason.as_str())).collect::<Vec<_>>(),
        vec![(coordinator, reason)]
    );
    let mut audit = kizuna_proto::audit::audit_service_client::AuditServiceClient::new(channel(&hub.api(leader)).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let q = ListAuditEntriesRequest { account_id: Some(coordinator), page_size: 100, ..Default::default() };
        let entries = audit.list_audit_entries(authed(q, &op)).await.unwrap().into_inner().entries;
        let opened = entries.iter().any(|e| e.what == "緊急アクセス開始" && e.action() == AuditAction::Write);
        let read = entries.iter().any(|e| e.what.starts_with("緊急アクセス: ") && e.action() == AuditAction::Read);
        if opened && read {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{entries:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No longer designated: closed at once.
    let revoke = SetBreakGlassRequest { idempotency_key: uuid(), account_id: coordinator, allowed: false };
    c.rooms.set_break_glass(authed(revoke, &op)).await.expect("revoked");
    assert_eq!(c.posts.timeline(authed(tl(), &dmat)).await.expect_err("closed").code(), tonic::Code::NotFound);
    hub.shutdown().await;
}
