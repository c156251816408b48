//! What the browser client asks of a node beyond the room and post calls: who the caller is
//! (`GetMe`), changing one's password (`ChangePassword`), one room with its members (`GetRoom`)
//! and the connection requests waiting for an answer (`ListConnectionRequests`), on a real
//! in-process hub.

mod common;

use std::time::{Duration, Instant};

use common::{OPERATOR_PASSWORD, TestHub, channel};
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::audit::audit_service_client::AuditServiceClient;
use kizuna_proto::audit::{AuditAction, ListAuditEntriesRequest};
use kizuna_proto::common::{AccountKind, Profession};
use kizuna_proto::connections::connection_service_client::ConnectionServiceClient;
use kizuna_proto::connections::*;
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::*;
use tonic::transport::Channel;
use tonic::{Code, Request};

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn me(accounts: &mut AccountServiceClient<Channel>, token: &str) -> Result<GetMeResponse, tonic::Status> {
    accounts.get_me(authed(GetMeRequest {}, token)).await.map(|r| r.into_inner())
}

async fn login(
    accounts: &mut AccountServiceClient<Channel>,
    who: &str,
    password: &str,
    key: &str,
) -> Result<String, Code> {
    let req = LoginRequest {
        idempotency_key: key.into(),
        login: who.into(),
        password: password.into(),
        device: "test".into(),
        ..Default::default()
    };
    accounts.login(req).await.map(|r| r.into_inner().token).map_err(|e| e.code())
}

fn change(key: &str, current: &str, new: &str) -> ChangePasswordRequest {
    ChangePasswordRequest { idempotency_key: key.into(), current_password: current.into(), new_password: new.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_professional_sees_who_they_are_and_changes_their_password() {
    let hub = TestHub::start(1).await;
    let nurse = hub.member("vn.sato").await;
    let mut accounts = AccountServiceClient::new(channel(&hub.api(hub.leader().await)).await);

    let who = me(&mut accounts, &nurse).await.expect("GetMe");
    assert!(who.account_id > 0);
    assert_eq!((who.login.as_str(), who.display_name.as_str()), ("vn.sato", "vn.satoさん"));
    assert_eq!((who.kind(), who.profession()), (AccountKind::Professional, Profession::VisitingNurse));
    assert!(who.facility_id.is_some(), "{who:?}");
    assert_eq!(who.facility_name, "vn.satoの訪問看護ステーション");
    assert!(!who.facility_admin && !who.totp_enabled, "{who:?}");
    assert_eq!(who.hub, "test");
    let unknown = me(&mut accounts, "no-such-token").await.expect_err("no session");
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let other_device = login(&mut accounts, "vn.sato", OPERATOR_PASSWORD, "second-device").await.expect("login");
    let new_password = "新しいパスワード 2026 冬";

    // A wrong current password changes nothing.
    let wrong = accounts.change_password(authed(change("pw-1", "not my password", new_password), &nurse)).await;
    let wrong = wrong.expect_err("wrong current password");
    assert_eq!((wrong.code(), wrong.message()), (Code::PermissionDenied, "現在のパスワードが違います"));
    me(&mut accounts, &other_device).await.expect("the other session still works");
    assert_eq!(login(&mut accounts, "vn.sato", new_password, "new-too-early").await, Err(Code::Unauthenticated));
    // A new password must follow the registration rule.
    let short = accounts.change_password(authed(change("pw-short", OPERATOR_PASSWORD, "short"), &nurse)).await;
    assert_eq!(short.expect_err("too short").code(), Code::InvalidArgument);

    accounts.change_password(authed(change("pw-2", OPERATOR_PASSWORD, new_password), &nurse)).await.expect("changed");
    // A retry of the same change (the answer was lost) gets the first answer.
    accounts.change_password(authed(change("pw-2", OPERATOR_PASSWORD, new_password), &nurse)).await.expect("retry");
    // A new change with the old password as the current one is refused, also under the key of
    // another write of the caller's.
    let mut rooms = RoomServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let group = CreateGroupRequest { idempotency_key: "pw-group".into(), name: "勉強会".into() };
    rooms.create_group(authed(group, &nurse)).await.expect("a group");
    for key in ["pw-3", "pw-group"] {
        let stale = accounts.change_password(authed(change(key, OPERATOR_PASSWORD, "yet another password"), &nurse));
        assert_eq!(stale.await.expect_err("old password").code(), Code::PermissionDenied, "{key}");
    }

    assert_eq!(login(&mut accounts, "vn.sato", OPERATOR_PASSWORD, "old").await, Err(Code::Unauthenticated));
    login(&mut accounts, "vn.sato", new_password, "new").await.expect("the new password signs in");
    assert_eq!(me(&mut accounts, &other_device).await.expect_err("ended").code(), Code::Unauthenticated);
    assert_eq!(me(&mut accounts, &nurse).await.expect("this session stays").login, "vn.sato");
    hub.shutdown().await;
}

/// The account id of the holder of `token`.
async fn id_of(accounts: &mut AccountServiceClient<Channel>, token: &str) -> u64 {
    me(accounts, token).await.expect("GetMe").account_id
}

async fn invite(rooms: &mut RoomServiceClient<Channel>, by: &str, room_id: u64, account: u64, key: &str) {
    let req = InviteMemberRequest {
        idempotency_key: key.into(),
        room_id,
        invitee: Some(Invitee::AccountId(account)),
        role: Role::Member as i32,
    };
    rooms.invite_member(authed(req, by)).await.expect("invite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_shows_its_members_to_members_only_and_connection_requests_wait_for_an_answer() {
    let hub = TestHub::start(1).await;
    let (doctor, nurse, outsider) =
        (hub.member("dr.ito").await, hub.member("vn.kato").await, hub.member("cm.abe").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    let mut accounts = AccountServiceClient::new(api.clone());
    let (doctor_id, nurse_id, outsider_id) = (
        id_of(&mut accounts, &doctor).await,
        id_of(&mut accounts, &nurse).await,
        id_of(&mut accounts, &outsider).await,
    );

    let mut rooms = RoomServiceClient::new(api.clone());
    let patient = CreatePatientRequest {
        idempotency_key: "patient".into(),
        name: "山田花子".into(),
        kana: "やまだはなこ".into(),
        ..Default::default()
    };
    let created = rooms.create_patient(authed(patient, &doctor)).await.expect("patient").into_inner();
    let timeline = created.room_id;
    // The owner's invitation is active at once; a member's waits for an owner.
    invite(&mut rooms, &doctor, timeline, nurse_id, "invite-nurse").await;
    invite(&mut rooms, &nurse, timeline, outsider_id, "invite-outsider").await;

    let room = rooms.get_room(authed(GetRoomRequest { room_id: timeline }, &nurse)).await.expect("GetRoom");
    let room = room.into_inner();
    assert_eq!((room.room_id, room.title.as_str(), room.kind()), (timeline, "山田花子", RoomKind::Patient));
    assert_eq!((room.patient_id, room.timeline_room_id), (Some(created.patient_id), None));
    assert_eq!((room.my_role(), room.home_hub.as_str()), (Role::Member, ""));
    let listed: Vec<(u64, &str, MemberState, Role)> =
        room.members.iter().map(|m| (m.account_id, m.display_name.as_str(), m.state(), m.role())).collect();
    assert_eq!(
        listed,
        [
            (doctor_id, "dr.itoさん", MemberState::Active, Role::Owner),
            (nurse_id, "vn.katoさん", MemberState::Active, Role::Member),
            (outsider_id, "cm.abeさん", MemberState::Invited, Role::Member),
        ]
    );
    let kato = &room.members[1];
    assert_eq!((kato.kind(), kato.profession()), (AccountKind::Professional, Profession::VisitingNurse));
    assert_eq!((kato.facility.as_str(), kato.hub.as_str()), ("vn.katoの訪問看護ステーション", ""));

    // Not an active member (invited only), or no such room: the same NOT_FOUND.
    for (token, room_id) in [(&outsider, timeline), (&doctor, timeline + 10_000)] {
        let refused = rooms.get_room(authed(GetRoomRequest { room_id }, token)).await.expect_err("not a member");
        assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    }
    assert_room_read_audited(&hub, nurse_id, timeline).await;

    let mut connections = ConnectionServiceClient::new(api.clone());
    let ask = RequestConnectionRequest { idempotency_key: "ask".into(), account_id: doctor_id };
    connections.request_connection(authed(ask, &nurse)).await.expect("request");
    let lists = connections.clone();
    let waiting = |token: &str| {
        let mut c = lists.clone();
        let req = authed(ListConnectionRequestsRequest {}, token);
        async move { c.list_connection_requests(req).await.expect("ListConnectionRequests").into_inner() }
    };
    let to_doctor = waiting(&doctor).await;
    assert!(to_doctor.outgoing.is_empty(), "{to_doctor:?}");
    let from_nurse = to_doctor.incoming.first().expect("incoming");
    assert_eq!((from_nurse.account_id, from_nurse.display_name.as_str()), (nurse_id, "vn.katoさん"));
    assert_eq!((from_nurse.profession(), from_nurse.hub.as_str()), (Profession::VisitingNurse, ""));
    assert_eq!(from_nurse.facility, "vn.katoの訪問看護ステーション");
    let by_nurse = waiting(&nurse).await;
    assert!(by_nurse.incoming.is_empty(), "{by_nurse:?}");
    assert_eq!(by_nurse.outgoing.iter().map(|r| r.account_id).collect::<Vec<_>>(), [doctor_id]);
    assert_eq!(waiting(&outsider).await, ListConnectionRequestsResponse::default());

    let accept = AcceptConnectionRequest { idempotency_key: "accept".into(), account_id: nurse_id };
    let connected = connections.accept_connection(authed(accept, &doctor)).await.expect("accept").into_inner();
    for token in [&doctor, &nurse] {
        assert_eq!(waiting(token).await, ListConnectionRequestsResponse::default());
    }
    // The connection's room: titled by the other person, kind CONNECTION.
    let room = rooms.get_room(authed(GetRoomRequest { room_id: connected.room_id }, &nurse)).await.expect("1:1");
    let room = room.into_inner();
    assert_eq!((room.title.as_str(), room.kind(), room.patient_id), ("dr.itoさん", RoomKind::Connection, None));
    hub.shutdown().await;
}

/// The audit chain holds the nurse's read of the room's members (shipped from the node's
/// journal within a few seconds).
async fn assert_room_read_audited(hub: &TestHub, nurse_id: u64, room: u64) {
    let op = hub.operator().await;
    let mut audit = AuditServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let q = ListAuditEntriesRequest { page_size: 1000, ..Default::default() };
        let entries = audit.list_audit_entries(authed(q, &op)).await.expect("audit").into_inner().entries;
        let read = entries.iter().any(|e| {
            e.account_id == nurse_id
                && e.action() == AuditAction::Read
                && e.what == "room members"
                && e.room_id == Some(room)
        });
        if read {
            return;
        }
        assert!(Instant::now() < deadline, "no audited read of the room's members: {entries:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_facility_is_listed_to_its_admins_only() {
    let hub = TestHub::start(1).await;
    let nurse = hub.member("vn.kato").await;
    let operator = hub.operator().await;
    let mut accounts = AccountServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let facility_id = me(&mut accounts, &nurse).await.expect("GetMe").facility_id.expect("a facility");
    let list = |token: &str, facility_id| authed(ListStaffRequest { facility_id }, token);

    let staff = accounts.list_staff(list(&operator, facility_id)).await.expect("an operator lists").into_inner().staff;
    let logins: Vec<_> = staff.iter().map(|s| (s.login.as_str(), s.state())).collect();
    assert_eq!(logins, [("vn.kato", AccountState::Active)]);
    assert_eq!(staff[0].profession(), Profession::VisitingNurse);

    let refused = accounts.list_staff(list(&nurse, facility_id)).await.expect_err("not an admin");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let unknown = accounts.list_staff(list(&operator, facility_id + 1000)).await.expect_err("no such facility");
    assert_eq!(unknown.code(), Code::NotFound);

    let stop = StopAccountRequest { idempotency_key: "stop-kato".into(), account_id: staff[0].account_id };
    accounts.stop_account(authed(stop, &operator)).await.expect("stop");
    let staff = accounts.list_staff(list(&operator, facility_id)).await.expect("listed again").into_inner().staff;
    assert_eq!(staff[0].state(), AccountState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issued_password_is_changed_first_under_the_hubs_rule() {
    let hub = TestHub::start(1).await;
    let nurse = hub.member("vn.ito").await;
    let op = hub.operator().await;
    let mut accounts = AccountServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let nurse_id = me(&mut accounts, &nurse).await.expect("GetMe").account_id;

    // The operator makes the rule stricter; everyone may read it.
    let rule = SetPasswordPolicyRequest { idempotency_key: "rule".into(), min_chars: 13, min_kinds: 3 };
    let refused = accounts.set_password_policy(authed(rule.clone(), &nurse)).await.expect_err("a nurse");
    assert_eq!(refused.code(), Code::PermissionDenied);
    accounts.set_password_policy(authed(rule, &op)).await.expect("the operator");
    let read = accounts.get_password_policy(authed(GetPasswordPolicyRequest {}, &nurse)).await.expect("readable");
    assert_eq!((read.get_ref().min_chars, read.get_ref().min_kinds), (13, 3));

    // The nurse forgot the password: the operator issues one. Weak ones are refused first.
    let issue = |key: &str, password: &str| IssuePasswordRequest {
        idempotency_key: key.into(),
        account_id: nurse_id,
        password: password.into(),
    };
    let weak = accounts.issue_password(authed(issue("weak", "onlylowercaseletters"), &op)).await;
    assert_eq!(weak.expect_err("one kind").code(), Code::InvalidArgument);
    let issued = "Kari-Pass-2026";
    accounts.issue_password(authed(issue("issue", issued), &op)).await.expect("issued");
    assert_eq!(me(&mut accounts, &nurse).await.expect_err("sessions ended").code(), Code::Unauthenticated);

    // Signed in with it, only GetMe, ChangePassword and Logout answer.
    let signed_in = LoginRequest {
        idempotency_key: "issued-login".into(),
        login: "vn.ito".into(),
        password: issued.into(),
        device: "test".into(),
        ..Default::default()
    };
    let answer = accounts.login(signed_in).await.expect("signs in").into_inner();
    assert!(answer.password_change_required);
    let token = answer.token;
    assert!(me(&mut accounts, &token).await.expect("GetMe answers").password_change_required);
    let mut rooms = RoomServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let list = rooms.list_rooms(authed(ListRoomsRequest::default(), &token)).await.expect_err("not yet");
    assert_eq!(list.code(), Code::FailedPrecondition);
    assert!(list.message().contains("パスワードを変更"), "{}", list.message());
    let group = CreateGroupRequest { idempotency_key: "issued-group".into(), name: "勉強会".into() };
    assert_eq!(
        rooms.create_group(authed(group, &token)).await.expect_err("no writes").code(),
        Code::FailedPrecondition
    );

    // The new password follows the rule; once changed, everything answers again.
    let weak = accounts.change_password(authed(change("weak-change", issued, "abcdefghijklmnop"), &token)).await;
    assert_eq!(weak.expect_err("one kind").code(), Code::InvalidArgument);
    accounts.change_password(authed(change("changed", issued, "Mine-2026-winter"), &token)).await.expect("changed");
    assert!(!me(&mut accounts, &token).await.expect("GetMe").password_change_required);
    rooms.list_rooms(authed(ListRoomsRequest::default(), &token)).await.expect("rooms answer");
}
