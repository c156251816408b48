//! Two hubs in memory exchanging their streams: the cross-hub story of a patient team whose
//! home is Tochigi with a visiting nurse of Gunma, told through the same commands as inside
//! one hub, with every message delivered through the exactly-once inbox.

use super::*;
use crate::events::EventKind;
use crate::federation::inbox::{self, Batch, BatchApplied};
use crate::federation::{HubName, Message, OutboxMessage, SeqRange, outbox};

pub(super) fn name(hub: &str) -> HubName {
    HubName::new(hub).unwrap()
}

/// Delivers what `from` queued for `to` (one batch, everything pending) and acknowledges it.
pub(super) fn deliver(from: &mut Hub, from_name: &str, to: &mut Hub, to_name: &str) -> Option<BatchApplied> {
    let queued = queued(from, to_name);
    let first = queued.first()?.seq;
    let bodies: Vec<Vec<u8>> = queued.into_iter().map(|m| m.body).collect();
    to.index += 1;
    to.now += 10;
    let batch = Batch {
        origin: &name(from_name),
        range: SeqRange::of_batch(first, bodies.len() as u64).unwrap(),
        messages: &bodies,
        key_id: "k",
        signature: &[],
        node: 1,
    };
    let applied = inbox::apply_batch(&mut to.state, Ctx { log_index: to.index, now_ms: to.now }, batch).unwrap();
    let acked = outbox::acknowledge(&from.state, &name(to_name), applied.receipt.highest_applied()).unwrap().unwrap();
    from.state.apply(acked);
    Some(applied)
}

fn queued(from: &Hub, to_name: &str) -> Vec<OutboxMessage> {
    from.state.outbox.iter().filter(|((hub, _), _)| hub.as_str() == to_name).map(|(_, m)| m.clone()).collect()
}

/// Delivers both ways until neither hub has anything queued.
pub(super) fn exchange(tochigi: &mut Hub, gunma: &mut Hub) {
    for _ in 0..10 {
        let a = deliver(tochigi, "tochigi", gunma, "gunma").is_some();
        let b = deliver(gunma, "gunma", tochigi, "tochigi").is_some();
        if !a && !b {
            return;
        }
    }
    panic!("the hubs kept sending");
}

fn texts(hub: &Hub, viewer: AccountId, room: RoomId) -> Vec<String> {
    let q = TimelineQuery { after_seq: 0, before_seq: 0, order: TimelineOrder::OldestFirst, limit: 100 };
    timeline(&hub.state, viewer, room, q).unwrap().posts.into_iter().map(|p| p.text).collect()
}

/// The only patient-list entry of `viewer`: its room, title and unread count.
pub(super) fn only_patient(hub: &Hub, viewer: AccountId) -> (RoomId, String, u64) {
    let list = room_list(&hub.state, viewer, ListKind::Patients).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    (list[0].room, list[0].title.clone(), list[0].unread)
}

pub(super) struct Story {
    pub(super) tochigi: Hub,
    pub(super) gunma: Hub,
    pub(super) doctor: AccountId,
    pub(super) nurse: AccountId,
    /// The team's room on Tochigi, its home.
    pub(super) home: RoomId,
    /// Gunma's copy of it.
    pub(super) copy: RoomId,
}

/// A Tochigi doctor's patient with a Gunma visiting nurse invited into the team.
pub(super) fn story() -> Story {
    let (mut tochigi, _, _, doctors) = Hub::setup(1);
    let (mut gunma, _, _, nurses) = Hub::setup(2);
    let (doctor, nurse) = (doctors[0], nurses[1]);
    let home = patient(&mut tochigi, doctor, "渡良瀬 花子");
    let invite = Command::InviteRemote { room: home, hub: name("gunma"), login: "user1".into(), role: Role::Member };
    tochigi.ok(doctor, invite);
    exchange(&mut tochigi, &mut gunma);
    let (copy, _, _) = only_patient(&gunma, nurse);
    Story { tochigi, gunma, doctor, nurse, home, copy }
}

#[test]
fn an_invited_professional_of_another_hub_sees_the_team_on_her_own_hub() {
    let s = story();
    let (copy, title, _) = only_patient(&s.gunma, s.nurse);
    assert_eq!((copy, title.as_str()), (s.copy, "渡良瀬 花子"));
    let entry = &room_list(&s.gunma.state, s.nurse, ListKind::Patients).unwrap()[0];
    assert_eq!(entry.home_hub, Some(name("tochigi")), "marked as the other hub's room");
    assert!(entry.home_heard_at_ms.is_some_and(|t| t > 0), "with when Gunma last heard from Tochigi");
    let (home_entry, ..) = only_patient(&s.tochigi, s.doctor);
    assert_eq!(home_entry, s.home);
    assert_eq!(room_list(&s.tochigi.state, s.doctor, ListKind::Patients).unwrap()[0].home_hub, None);
    // Her hub answered with her profile: the home hub shows her by name, facility and hub.
    let shadow = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    let shadow = s.tochigi.state.account(shadow).unwrap().unwrap();
    assert_eq!(shadow.display_name, "職員1");
    assert!(matches!(&shadow.kind, AccountKind::Remote { hub, facility_name, .. }
        if hub.as_str() == "gunma" && facility_name == "宇都宮在宅クリニック"));
    // The doctor shows on Gunma as a professional of Tochigi.
    let members = s.gunma.state.members(s.copy).unwrap();
    let logins: Vec<String> =
        members.iter().map(|m| s.gunma.state.account(m.account).unwrap().unwrap().login).collect();
    assert!(logins.contains(&"user0@tochigi".to_owned()) && logins.contains(&"user1".to_owned()), "{logins:?}");
    // Nothing else of either hub crossed.
    assert_eq!(s.gunma.state.accounts.values().filter(|a| a.remote_hub().is_some()).count(), 1);
}

#[test]
fn posts_from_both_hubs_take_the_home_hubs_order_on_both() {
    let mut s = story();
    post(&mut s.tochigi, s.doctor, s.home, "往診しました。血圧安定。");
    let queued = s.gunma.ok(
        s.nurse,
        Command::Post { room: s.copy, text: "訪問予定は水曜です".into(), reply_to: None, mentions: vec![] },
    );
    assert!(matches!(queued, Outcome::Queued { room, .. } if room == s.copy));
    assert_eq!(s.gunma.state.pending_in(s.copy).unwrap().len(), 1, "sending until the home hub has it");
    post(&mut s.tochigi, s.doctor, s.home, "了解です");
    exchange(&mut s.tochigi, &mut s.gunma);
    // The home hub orders the room: her post takes its place when it arrives there, after the
    // doctor's second one, on both hubs.
    let order = ["往診しました。血圧安定。", "了解です", "訪問予定は水曜です"];
    assert_eq!(texts(&s.tochigi, s.doctor, s.home), order);
    assert_eq!(texts(&s.gunma, s.nurse, s.copy), order);
    assert!(s.gunma.state.pending_in(s.copy).unwrap().is_empty(), "no longer sending");
    // Unread counts stay on each reader's hub: her own post is read for her.
    assert_eq!(only_patient(&s.gunma, s.nurse).2, 2);
    assert_eq!(only_patient(&s.tochigi, s.doctor).2, 1, "the nurse's post, for the doctor");
    s.gunma.ok(s.nurse, Command::MarkRead { room: s.copy, up_to_seq: 3 });
    assert_eq!(only_patient(&s.gunma, s.nurse).2, 0);
    assert!(queued_any(&s.gunma).is_empty(), "read state never crosses");
    // The home hub's post is by her shadow; Gunma's copy names her as its own account.
    let home_author = s.tochigi.state.post(s.home, 3).unwrap().unwrap().author;
    assert_eq!(s.tochigi.state.account(home_author).unwrap().unwrap().login, "user1@gunma");
    assert_eq!(s.gunma.state.post(s.copy, 3).unwrap().unwrap().author, s.nurse);
}

fn queued_any(hub: &Hub) -> Vec<OutboxMessage> {
    hub.state.outbox.values().cloned().collect()
}

#[test]
fn acknowledgements_and_edits_cross_and_a_refused_write_says_why() {
    let mut s = story();
    post(&mut s.tochigi, s.doctor, s.home, "処方を変更しました");
    exchange(&mut s.tochigi, &mut s.gunma);
    s.gunma.ok(s.nurse, Command::AckPost { room: s.copy, seq: 1 });
    let not_hers = s.gunma.ok(s.nurse, Command::EditPost { room: s.copy, seq: 1, text: "改ざん".into() });
    let Outcome::Queued { ticket, .. } = not_hers else { panic!("{not_hers:?}") };
    exchange(&mut s.tochigi, &mut s.gunma);
    let home_post = s.tochigi.state.post(s.home, 1).unwrap().unwrap();
    assert_eq!((home_post.text.as_str(), home_post.acks.len()), ("処方を変更しました", 1));
    assert_eq!(s.gunma.state.post(s.copy, 1).unwrap().unwrap().acks, vec![s.nurse]);
    let refused = s.gunma.state.pending_write(ticket).unwrap().expect("kept, with the reason");
    assert!(refused.refused.as_deref().is_some_and(|r| r.contains("author")), "{refused:?}");
}

#[test]
fn a_removed_members_hub_drops_its_copy() {
    let mut s = story();
    post(&mut s.tochigi, s.doctor, s.home, "訪問看護の指示書を更新");
    exchange(&mut s.tochigi, &mut s.gunma);
    let shadow = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    s.tochigi.ok(s.doctor, Command::Remove { room: s.home, account: shadow });
    exchange(&mut s.tochigi, &mut s.gunma);
    assert!(room_list(&s.gunma.state, s.nurse, ListKind::Patients).unwrap().is_empty());
    assert!(s.gunma.state.posts.values().all(|p| p.text.is_empty()), "no patient text stays behind");
    // Later posts no longer cross.
    post(&mut s.tochigi, s.doctor, s.home, "退院日が決まりました");
    assert!(queued(&s.tochigi, "gunma").is_empty());
}

#[test]
fn an_unknown_professional_is_withdrawn_by_the_home_hub() {
    let mut s = story();
    let invite = Command::InviteRemote { room: s.home, hub: name("gunma"), login: "nobody".into(), role: Role::Member };
    s.tochigi.ok(s.doctor, invite);
    exchange(&mut s.tochigi, &mut s.gunma);
    let nobody = s.tochigi.state.account_by_login("nobody@gunma").unwrap().unwrap();
    assert!(s.tochigi.state.member(s.home, nobody).unwrap().is_none());
    assert_eq!(s.tochigi.state.members(s.home).unwrap().len(), 2, "the doctor and the nurse");
}

#[test]
fn a_member_invitation_waits_for_an_owner_and_posts_cross_only_once_active() {
    let (mut tochigi, _, _, people) = Hub::setup(2);
    let (mut gunma, _, _, nurses) = Hub::setup(2);
    let (owner, member, nurse) = (people[0], people[1], nurses[1]);
    let home = patient(&mut tochigi, owner, "患者");
    tochigi.ok(owner, Command::Invite { room: home, invitee: member, role: Role::Member });
    post(&mut tochigi, owner, home, "初回訪問");
    tochigi.ok(
        member,
        Command::InviteRemote { room: home, hub: name("gunma"), login: "user1".into(), role: Role::Member },
    );
    exchange(&mut tochigi, &mut gunma);
    assert!(room_list(&gunma.state, nurse, ListKind::Patients).unwrap().is_empty(), "pending: not shown");
    assert!(gunma.state.posts.is_empty(), "no post crosses before approval");
    let shadow = tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    tochigi.ok(owner, Command::Approve { room: home, account: shadow });
    exchange(&mut tochigi, &mut gunma);
    let (copy, _, unread) = only_patient(&gunma, nurse);
    assert_eq!((texts(&gunma, nurse, copy), unread), (vec!["初回訪問".to_owned()], 1), "the room so far");
}

#[test]
fn a_replayed_batch_applies_nothing_and_a_foreign_room_is_refused_and_audited() {
    let mut s = story();
    post(&mut s.tochigi, s.doctor, s.home, "一回だけ");
    let bodies: Vec<Vec<u8>> = queued(&s.tochigi, "gunma").into_iter().map(|m| m.body).collect();
    let first = queued(&s.tochigi, "gunma")[0].seq;
    exchange(&mut s.tochigi, &mut s.gunma);
    let replay = Batch {
        origin: &name("tochigi"),
        range: SeqRange::of_batch(first, bodies.len() as u64).unwrap(),
        messages: &bodies,
        key_id: "k",
        signature: &[],
        node: 1,
    };
    let before = format!("{:?}", s.gunma.state);
    let again = inbox::apply_batch(&mut s.gunma.state, Ctx { log_index: 999, now_ms: s.gunma.now }, replay).unwrap();
    assert_eq!(format!("{:?}", s.gunma.state), before, "nothing applied twice");
    assert!(again.audit.is_empty());

    // Gunma speaks about a Tochigi room it has no member in.
    let other = patient(&mut s.tochigi, s.doctor, "別の患者");
    let submit = Message::Submit {
        room: other,
        author: "user1".into(),
        ticket: 77,
        write: crate::federation::RoomWrite::Post { text: "侵入".into(), reply_to: None, mentions: vec![] },
    };
    let seq = s.tochigi.state.inbound(&name("gunma")).unwrap().highest_applied() + 1;
    let forged = Batch {
        origin: &name("gunma"),
        range: SeqRange::of_batch(seq, 1).unwrap(),
        messages: &[submit.encode()],
        key_id: "k",
        signature: &[],
        node: 1,
    };
    let applied = inbox::apply_batch(&mut s.tochigi.state, Ctx { log_index: 1000, now_ms: 1 }, forged).unwrap();
    assert_eq!(s.tochigi.state.room(other).unwrap().unwrap().last_seq, 0, "nothing posted");
    assert!(applied.audit.iter().any(|a| a.what.contains("refused message")), "{:?}", applied.audit);
    let answer = queued(&s.tochigi, "gunma").pop().map(|m| Message::decode(&m.body).unwrap());
    assert!(matches!(answer, Some(Message::Refused { ticket: 77, .. })), "{answer:?}");
}

#[test]
fn a_professional_stopped_on_her_hub_leaves_the_other_hubs_rooms() {
    let mut s = story();
    let admin = s.gunma.state.accounts.values().find(|a| a.facility_admin).unwrap().id;
    s.gunma.ok(admin, Command::StopAccount { account: s.nurse });
    exchange(&mut s.tochigi, &mut s.gunma);
    let shadow = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    assert!(s.tochigi.state.member(s.home, shadow).unwrap().is_none(), "removed on the home hub");
    assert!(s.gunma.state.members(s.copy).unwrap().is_empty(), "and the copy dropped");
}

fn only_connection(hub: &Hub, viewer: AccountId) -> Option<(RoomId, String)> {
    let list = room_list(&hub.state, viewer, ListKind::Connections).unwrap();
    assert!(list.len() <= 1, "{list:?}");
    list.first().map(|e| (e.room, e.title.clone()))
}

#[test]
fn professionals_of_two_hubs_connect_talk_one_to_one_and_block() {
    let mut s = story();
    let nurse_here = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    s.tochigi.ok(s.doctor, Command::RequestConnection { to: nurse_here });
    exchange(&mut s.tochigi, &mut s.gunma);
    let doctor_there = s.gunma.state.account_by_login("user0@tochigi").unwrap().unwrap();
    let room = match s.gunma.ok(s.nurse, Command::AcceptConnection { from: doctor_there }) {
        Outcome::Room(room) => room,
        o => panic!("{o:?}"),
    };
    let pair = connection_pair(s.doctor, nurse_here);
    // The doctor's hub raises a connection event with the copy: his outgoing request updates live.
    let applied = deliver(&mut s.gunma, "gunma", &mut s.tochigi, "tochigi").expect("the room copy");
    assert!(applied.events.iter().any(|r| r.kind == EventKind::Connection { pair }), "{:?}", applied.events);
    exchange(&mut s.tochigi, &mut s.gunma);
    let (copy, title) = only_connection(&s.tochigi, s.doctor).expect("the doctor's hub has the room too");
    assert_eq!(title, "職員1", "titled by the other person");
    assert_eq!(s.tochigi.state.connection(pair).unwrap().unwrap().state, ConnectionState::Accepted { room: copy });
    let sent = s
        .tochigi
        .ok(s.doctor, Command::Post { room: copy, text: "お電話ください".into(), reply_to: None, mentions: vec![] });
    assert!(matches!(sent, Outcome::Queued { .. }), "the room's home is Gunma, the acceptor's hub");
    exchange(&mut s.tochigi, &mut s.gunma);
    assert_eq!(texts(&s.gunma, s.nurse, room), ["お電話ください"]);
    assert_eq!(texts(&s.tochigi, s.doctor, copy), ["お電話ください"]);

    s.gunma.ok(s.nurse, Command::BlockConnection { other: doctor_there });
    exchange(&mut s.tochigi, &mut s.gunma);
    assert_eq!(only_connection(&s.tochigi, s.doctor), None, "closed on both hubs");
    assert_eq!(s.tochigi.state.connection(pair).unwrap().unwrap().state, ConnectionState::Declined);
    // Blocked on Gunma: a new request from Tochigi reaches nobody.
    s.tochigi.ok(s.doctor, Command::RequestConnection { to: nurse_here });
    exchange(&mut s.tochigi, &mut s.gunma);
    let there = connection_pair(s.nurse, doctor_there);
    assert!(matches!(s.gunma.state.connection(there).unwrap().unwrap().state, ConnectionState::Blocked { .. }));
}

#[test]
fn a_sub_room_with_a_member_of_another_hub_shows_inside_her_copy_of_the_patient() {
    let mut s = story();
    let nurse_here = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    let create =
        Command::CreateSubRoom { timeline: s.home, name: "医師・訪問看護".into(), members: vec![nurse_here] };
    let sub = match s.tochigi.ok(s.doctor, create) {
        Outcome::Room(room) => room,
        o => panic!("{o:?}"),
    };
    post(&mut s.tochigi, s.doctor, sub, "点滴の指示です");
    exchange(&mut s.tochigi, &mut s.gunma);
    let list = room_list(&s.gunma.state, s.nurse, ListKind::Patients).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let inner = &list[0].sub_rooms;
    assert_eq!((inner.len(), inner[0].title.as_str(), inner[0].unread), (1, "医師・訪問看護", 1));
    assert_eq!(texts(&s.gunma, s.nurse, inner[0].room), ["点滴の指示です"]);
}

#[test]
fn every_transfer_of_patient_data_to_another_hub_is_named_for_the_audit_chain() {
    let mut s = story();
    s.tochigi.index += 1;
    let ctx = Ctx { log_index: s.tochigi.index, now_ms: s.tochigi.now };
    let post = Command::Post { room: s.home, text: "褥瘡の処置".into(), reply_to: None, mentions: vec![] };
    let effects = execute(&s.tochigi.state, ctx, Some(s.doctor), post).unwrap();
    let settled = settle(&mut s.tochigi.state, ctx.now_ms, effects).unwrap();
    let patient = match s.tochigi.state.room(s.home).unwrap().unwrap().kind {
        RoomKind::PatientTimeline { patient } => patient,
        other => panic!("{other:?}"),
    };
    let expected =
        Transfer { to: name("gunma"), patient, room: s.home, what: "federation: post #1 queued for gunma".into() };
    assert_eq!(settled.transfers, [expected]);
    // A group's post is no patient data: nothing to name.
    let group = match s.tochigi.ok(s.doctor, Command::CreateGroup { name: "多職種連携".into() }) {
        Outcome::Room(room) => room,
        o => panic!("{o:?}"),
    };
    s.tochigi.index += 1;
    let ctx = Ctx { log_index: s.tochigi.index, now_ms: s.tochigi.now };
    let invite = Command::InviteRemote { room: group, hub: name("gunma"), login: "user1".into(), role: Role::Member };
    let effects = execute(&s.tochigi.state, ctx, Some(s.doctor), invite).unwrap();
    assert!(settle(&mut s.tochigi.state, ctx.now_ms, effects).unwrap().transfers.is_empty());
}

/// Delivers hand-made messages of `origin`'s stream to `to`, as the next batch.
pub(super) fn forge(to: &mut Hub, origin: &str, messages: Vec<Message>) -> BatchApplied {
    let first = to.state.inbound(&name(origin)).unwrap().highest_applied() + 1;
    let bodies: Vec<Vec<u8>> = messages.iter().map(Message::encode).collect();
    to.index += 1;
    let batch = Batch {
        origin: &name(origin),
        range: SeqRange::of_batch(first, bodies.len() as u64).unwrap(),
        messages: &bodies,
        key_id: "k",
        signature: &[],
        node: 1,
    };
    inbox::apply_batch(&mut to.state, Ctx { log_index: to.index, now_ms: to.now }, batch).unwrap()
}

pub(super) fn refused(applied: &BatchApplied) -> bool {
    applied.audit.iter().any(|a| a.what.contains("refused message"))
}

/// A post of Tochigi's doctor (`user0`) as Tochigi would send it: a forged message's body.
pub(super) fn post_copy(room: RoomId, seq: u64, text: &str) -> crate::federation::wire::PostCopy {
    crate::federation::wire::PostCopy {
        room,
        seq,
        author: crate::federation::Party::Sender("user0".into()),
        text: text.into(),
        reply_to: None,
        mentions: vec![],
        posted_at_ms: 1,
        edited: false,
        deleted: false,
        acks: vec![],
    }
}

#[test]
fn a_post_copy_out_of_order_or_far_ahead_is_refused() {
    let mut s = story();
    let far = post_copy(s.home, u64::MAX, "x");
    let applied = forge(&mut s.gunma, "tochigi", vec![Message::Post(far)]);
    assert!(refused(&applied));
    assert_eq!(s.gunma.state.room(s.copy).unwrap().unwrap().last_seq, 0, "the copy did not move");
}

#[test]
fn a_dropped_copy_keeps_no_patient_name_and_no_pending_text() {
    let mut s = story();
    s.gunma.ok(s.nurse, Command::Post { room: s.copy, text: "未送信の記録".into(), reply_to: None, mentions: vec![] });
    let shadow = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    s.tochigi.ok(s.doctor, Command::Remove { room: s.home, account: shadow });
    // The removal reaches Gunma before its pending post reaches Tochigi.
    deliver(&mut s.tochigi, "tochigi", &mut s.gunma, "gunma");
    let kind = s.gunma.state.room(s.copy).unwrap().unwrap().kind;
    let RoomKind::Mirror { of: crate::federation::wire::CopyKind::PatientTimeline { patient_name, .. }, .. } = kind
    else {
        panic!("{kind:?}")
    };
    assert!(patient_name.is_empty(), "the patient's name went with the copy");
    assert!(s.gunma.state.pending.is_empty(), "no pending text stays behind");
}

#[test]
fn a_hub_cannot_open_a_connection_nobody_asked_for_nor_lift_a_block() {
    let mut s = story();
    let doctor_there = s.gunma.state.account_by_login("user0@tochigi").unwrap().unwrap();
    // Tochigi claims a 1:1 room of the doctor and the nurse that nobody asked for.
    let forged = crate::federation::wire::RoomCopy {
        room: RoomId(4242),
        kind: crate::federation::wire::CopyKind::Connection,
        members: s
            .tochigi
            .state
            .members(s.home)
            .unwrap()
            .iter()
            .map(|m| {
                let account = s.tochigi.state.account(m.account).unwrap().unwrap();
                crate::federation::wire::MemberCopy {
                    profile: crate::federation::parties::profile_of(&s.tochigi.state, &account, &name("gunma"))
                        .unwrap(),
                    role: Role::Member,
                    pending: false,
                }
            })
            .collect(),
    };
    forge(&mut s.gunma, "tochigi", vec![Message::Room(forged)]);
    assert!(room_list(&s.gunma.state, s.nurse, ListKind::Connections).unwrap().is_empty());
    // The nurse blocks the doctor; Tochigi says the connection ended, then asks again.
    s.gunma.ok(s.nurse, Command::BlockConnection { other: doctor_there });
    let profile = crate::federation::wire::Profile {
        party: crate::federation::Party::Sender("user0".into()),
        display_name: "職員0".into(),
        facility_name: "宇都宮在宅クリニック".into(),
        profession: Profession::Nurse,
    };
    forge(
        &mut s.gunma,
        "tochigi",
        vec![
            Message::ConnectionEnded { by: "user0".into(), other: "user1".into() },
            Message::ConnectionRequest { from: profile, to: "user1".into() },
        ],
    );
    let pair = connection_pair(s.nurse, doctor_there);
    assert!(matches!(s.gunma.state.connection(pair).unwrap().unwrap().state, ConnectionState::Blocked { .. }));
}

#[test]
fn a_home_hub_cannot_rewrite_a_third_hubs_professional() {
    let mut s = story();
    let ibaraki = crate::federation::wire::Profile {
        party: crate::federation::Party::Other { hub: name("ibaraki"), login: "ito".into() },
        display_name: "伊藤".into(),
        facility_name: "水戸".into(),
        profession: Profession::Doctor,
    };
    let mut copy = crate::federation::home::room_copy(
        &s.tochigi.state,
        &s.tochigi.state.room(s.home).unwrap().unwrap(),
        &name("gunma"),
    )
    .unwrap();
    copy.members.push(crate::federation::wire::MemberCopy { profile: ibaraki, role: Role::Member, pending: false });
    forge(&mut s.gunma, "tochigi", vec![Message::Room(copy)]);
    let ito = s.gunma.state.account_by_login("ito@ibaraki").unwrap().expect("known as a member");
    assert_eq!(s.gunma.state.account(ito).unwrap().unwrap().display_name, "ito@ibaraki", "only Ibaraki names its own");
}

#[test]
fn a_message_of_a_newer_wire_version_stops_the_batch_before_it_and_stays_queued() {
    let mut s = story();
    let before = s.gunma.state.inbound(&name("tochigi")).unwrap().highest_applied();
    let known = Message::Accepted { ticket: 1, seq: None }.encode();
    let mut newer = known.clone();
    newer[0] = crate::federation::wire::WIRE_VERSION + 1;
    let bodies = vec![known.clone(), newer, known];
    s.gunma.index += 1;
    let batch = Batch {
        origin: &name("tochigi"),
        range: SeqRange::of_batch(before + 1, 3).unwrap(),
        messages: &bodies,
        key_id: "k",
        signature: &[],
        node: 1,
    };
    let applied =
        inbox::apply_batch(&mut s.gunma.state, Ctx { log_index: s.gunma.index, now_ms: s.gunma.now }, batch).unwrap();
    assert_eq!(applied.receipt.highest_applied(), before + 1, "only the message before it");
    assert!(applied.audit.iter().any(|a| a.what.contains("newer than this build reads")), "{:?}", applied.audit);
    assert_eq!(s.gunma.state.inbound(&name("tochigi")).unwrap().highest_applied(), before + 1);
}

#[test]
fn a_hub_whose_members_are_only_invited_learns_no_patient_and_no_other_member() {
    let (mut tochigi, _, _, people) = Hub::setup(2);
    let (owner, member) = (people[0], people[1]);
    let home = patient(&mut tochigi, owner, "患者 花子");
    tochigi.ok(owner, Command::Invite { room: home, invitee: member, role: Role::Member });
    tochigi.ok(
        member,
        Command::InviteRemote { room: home, hub: name("gunma"), login: "user1".into(), role: Role::Member },
    );
    let sent: Vec<Message> = queued(&tochigi, "gunma").iter().map(|m| Message::decode(&m.body).unwrap()).collect();
    let [Message::Room(copy)] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(copy.kind.without_patient(), copy.kind, "no patient's name before she is in the team");
    assert_eq!(copy.members.len(), 1, "only Gunma's own invitee: {:?}", copy.members);
}
