//! The collaboration rules, told as the product's story, plus a property test of the
//! authorization invariant.

use std::collections::HashMap;

use super::commands::MAX_POST_CHARS;
use super::model::*;
use super::queries::{
    self, ListKind, SessionPolicy, TimelineOrder, TimelinePage, TimelineQuery, authenticate, room_list,
    stream_session_until, timeline,
};
use super::*;
use crate::error::not_found;

fn account_of(o: Outcome) -> AccountId {
    match o {
        Outcome::Account(a) => a,
        other => panic!("not an account: {other:?}"),
    }
}

/// A hub in memory with a clock and a log index, executing commands like the state machine.
struct Hub {
    state: MemHub,
    index: u64,
    now: u64,
}

impl Hub {
    fn new() -> Self {
        Self { state: MemHub::default(), index: 0, now: 1_000_000 }
    }

    fn run(&mut self, actor: Option<AccountId>, cmd: Command) -> DomainResult<Outcome> {
        self.index += 1;
        self.now += 1000;
        let before = self.state.clone();
        let result = execute(&self.state, Ctx { log_index: self.index, now_ms: self.now }, actor, cmd);
        match result {
            Ok(effects) => Ok(settle(&mut self.state, self.now, effects).expect("a readable state").outcome),
            Err(e) => {
                assert_eq!(format!("{:?}", self.state), format!("{before:?}"), "a refused command changed state");
                Err(e)
            }
        }
    }

    fn ok(&mut self, actor: AccountId, cmd: Command) -> Outcome {
        self.run(Some(actor), cmd).unwrap_or_else(|e| panic!("refused: {e}"))
    }

    /// Operator, one approved clinic, and `n` approved professionals of it (the first an admin).
    fn setup(n: usize) -> (Hub, AccountId, FacilityId, Vec<AccountId>) {
        let mut hub = Hub::new();
        let op = hub.run(
            None,
            Command::InitOperator {
                login: "jimukyoku".into(),
                display_name: "事務局".into(),
                password_hash: "h".into(),
            },
        );
        let op = account_of(op.unwrap());
        let f = match hub.ok(
            op,
            Command::RegisterFacility {
                name: "宇都宮在宅クリニック".into(),
                kind: FacilityKind::Clinic,
                municipality: "宇都宮市".into(),
            },
        ) {
            Outcome::Facility(f) => f,
            o => panic!("{o:?}"),
        };
        hub.ok(op, Command::ApproveFacility { facility: f });
        let mut people = Vec::new();
        for i in 0..n {
            let issuer = if i == 0 { op } else { people[0] };
            let code = format!("code-{i}");
            hub.ok(
                issuer,
                Command::IssueInvitation {
                    facility: f,
                    code_hash: code.clone(),
                    expires_at_ms: hub.now + 60_000,
                    as_admin: i == 0,
                },
            );
            let a = hub.run(
                None,
                Command::Register {
                    code_hash: code,
                    login: format!("user{i}"),
                    display_name: format!("職員{i}"),
                    profession: Profession::Nurse,
                    password_hash: "h".into(),
                },
            );
            let a = account_of(a.unwrap());
            hub.ok(issuer, Command::ApproveAccount { account: a });
            people.push(a);
        }
        (hub, op, f, people)
    }
}

fn patient(hub: &mut Hub, owner: AccountId, name: &str) -> RoomId {
    match hub.ok(
        owner,
        Command::CreatePatient {
            name: name.into(),
            kana: "かな".into(),
            birth_date: "1940-01-01".into(),
            address: "宇都宮市".into(),
            notes: String::new(),
        },
    ) {
        Outcome::Patient { timeline, .. } => timeline,
        o => panic!("{o:?}"),
    }
}

fn post(hub: &mut Hub, who: AccountId, room: RoomId, text: &str) -> u64 {
    match hub.ok(who, Command::Post { room, text: text.into(), reply_to: None, mentions: vec![] }) {
        Outcome::Posted { seq, .. } => seq,
        o => panic!("{o:?}"),
    }
}

#[test]
fn only_one_operator_is_initialised() {
    let (mut hub, ..) = Hub::setup(0);
    let again =
        hub.run(None, Command::InitOperator { login: "x".into(), display_name: "x".into(), password_hash: "h".into() });
    assert!(matches!(again, Err(DomainError::FailedPrecondition(_))));
}

#[test]
fn invitations_are_single_use_expiring_and_need_approval() {
    let (mut hub, _, f, people) = Hub::setup(1);
    let admin = people[0];
    hub.ok(
        admin,
        Command::IssueInvitation {
            facility: f,
            code_hash: "c1".into(),
            expires_at_ms: hub.now + 5_000,
            as_admin: false,
        },
    );
    let reg = |hub: &mut Hub, login: &str| {
        hub.run(
            None,
            Command::Register {
                code_hash: "c1".into(),
                login: login.into(),
                display_name: "薬剤師".into(),
                profession: Profession::Pharmacist,
                password_hash: "h".into(),
            },
        )
    };
    let a = account_of(reg(&mut hub, "yaku").unwrap());
    assert!(
        matches!(reg(&mut hub, "yaku2"), Err(DomainError::FailedPrecondition(m)) if m.contains("already been used"))
    );
    // Pending accounts cannot sign in.
    assert_eq!(
        hub.run(
            None,
            Command::CreateSession {
                login: "yaku".into(),
                token_hash: "t".into(),
                device: "pc".into(),
                totp_step: None
            }
        ),
        Err(DomainError::Unauthenticated)
    );
    hub.ok(admin, Command::ApproveAccount { account: a });
    hub.run(
        None,
        Command::CreateSession { login: "yaku".into(), token_hash: "t".into(), device: "pc".into(), totp_step: None },
    )
    .unwrap();

    hub.ok(
        admin,
        Command::IssueInvitation {
            facility: f,
            code_hash: "c2".into(),
            expires_at_ms: hub.now + 1_500,
            as_admin: false,
        },
    );
    hub.now += 10_000;
    let late = hub.run(
        None,
        Command::Register {
            code_hash: "c2".into(),
            login: "late".into(),
            display_name: "x".into(),
            profession: Profession::Doctor,
            password_hash: "h".into(),
        },
    );
    assert!(matches!(late, Err(DomainError::FailedPrecondition(m)) if m.contains("expired")));
    let unknown = hub.run(
        None,
        Command::Register {
            code_hash: "nope".into(),
            login: "n".into(),
            display_name: "x".into(),
            profession: Profession::Doctor,
            password_hash: "h".into(),
        },
    );
    assert_eq!(unknown, Err(not_found("invitation")));
}

#[test]
fn stopping_an_account_revokes_every_session_at_once() {
    let (mut hub, op, _, people) = Hub::setup(2);
    let nurse = people[1];
    for t in ["phone", "tablet"] {
        hub.run(
            None,
            Command::CreateSession { login: "user1".into(), token_hash: t.into(), device: t.into(), totp_step: None },
        )
        .unwrap();
    }
    let now = hub.now;
    assert_eq!(authenticate(&hub.state, "phone", now, now, SessionPolicy::default()), Ok(nurse));
    hub.ok(op, Command::StopAccount { account: nurse });
    for t in ["phone", "tablet"] {
        assert_eq!(authenticate(&hub.state, t, now, now, SessionPolicy::default()), Err(DomainError::Unauthenticated));
    }
}

#[test]
fn sessions_expire_when_idle_and_absolutely() {
    let (mut hub, ..) = Hub::setup(1);
    hub.run(
        None,
        Command::CreateSession { login: "user0".into(), token_hash: "t".into(), device: "pc".into(), totp_step: None },
    )
    .unwrap();
    let created = hub.now;
    let policy = SessionPolicy { idle_timeout_ms: 1_000, absolute_ms: 10_000 };
    assert!(authenticate(&hub.state, "t", created, created + 900, policy).is_ok());
    assert!(authenticate(&hub.state, "t", created, created + 1_100, policy).is_err());
    assert!(authenticate(&hub.state, "t", created + 10_500, created + 10_600, policy).is_err());
}

#[test]
fn a_live_stream_s_session_holds_to_its_absolute_lifetime_and_never_idles() {
    let (mut hub, ..) = Hub::setup(1);
    let login =
        Command::CreateSession { login: "user0".into(), token_hash: "t".into(), device: "pc".into(), totp_step: None };
    hub.run(None, login).unwrap();
    let (created, policy) = (hub.now, SessionPolicy::default());
    let until = created + policy.absolute_ms;
    // Far past the idle timeout: a stream is in use all along.
    assert_eq!(stream_session_until(&hub.state, "t", created + policy.idle_timeout_ms + 1), Ok(until));
    assert_eq!(stream_session_until(&hub.state, "t", until + 1), Err(DomainError::Unauthenticated));
    assert_eq!(stream_session_until(&hub.state, "unknown", created), Err(DomainError::Unauthenticated));
}

#[test]
fn the_idle_timeout_holds_on_nodes_a_session_never_used() {
    let (mut hub, _, _, people) = Hub::setup(1);
    let login =
        Command::CreateSession { login: "user0".into(), token_hash: "t".into(), device: "pc".into(), totp_step: None };
    hub.run(None, login).unwrap();
    let created = hub.now;
    let policy = SessionPolicy::default();
    let later = created + policy.idle_timeout_ms + 60_000;
    // Used all along on node A (its own clock knows), never on node B (0): B refuses.
    assert!(authenticate(&hub.state, "t", later - 1_000, later, policy).is_ok());
    assert_eq!(authenticate(&hub.state, "t", 0, later, policy), Err(DomainError::Unauthenticated));
    // Once a use is recorded hub-wide, every node honours it.
    assert!(queries::touch_due(&hub.state, "t", created + queries::TOUCH_EVERY_MS).unwrap());
    assert!(!queries::touch_due(&hub.state, "t", created + 1_000).unwrap());
    hub.now = later - 120_000;
    hub.ok(people[0], Command::TouchSession { token_hash: "t".into() });
    assert!(authenticate(&hub.state, "t", 0, later, policy).is_ok());
    // Only one's own live session is touched.
    let other = hub.run(Some(people[0]), Command::TouchSession { token_hash: "nope".into() });
    assert_eq!(other, Err(not_found("session")));
}

#[test]
fn a_patient_team_forms_by_invitation_and_owner_approval() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (doctor, nurse, pharmacist) = (people[0], people[1], people[2]);
    let room = patient(&mut hub, doctor, "山田 花子");
    // The owner's own invitation is its approval.
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    // A member's invitation waits for an owner.
    hub.ok(nurse, Command::Invite { room, invitee: pharmacist, role: Role::Member });
    assert_eq!(
        hub.run(Some(pharmacist), Command::Post { room, text: "x".into(), reply_to: None, mentions: vec![] }),
        Err(not_found("room"))
    );
    assert!(matches!(
        hub.run(Some(nurse), Command::Approve { room, account: pharmacist }),
        Err(DomainError::PermissionDenied(_))
    ));
    hub.ok(doctor, Command::Approve { room, account: pharmacist });
    post(&mut hub, pharmacist, room, "お薬を届けました");
}

#[test]
fn posts_have_dense_sequences_replies_mentions_acks_edits_and_tombstones() {
    let (mut hub, _, _, people) = Hub::setup(2);
    let (doctor, nurse) = (people[0], people[1]);
    let room = patient(&mut hub, doctor, "佐藤 一郎");
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    assert_eq!(post(&mut hub, doctor, room, "訪問しました"), 1);
    let two = hub.ok(nurse, Command::Post { room, text: "了解です".into(), reply_to: Some(1), mentions: vec![doctor] });
    assert_eq!(two, Outcome::Posted { room, seq: 2 });
    for bad in [
        Command::Post { room, text: String::new(), reply_to: None, mentions: vec![] },
        Command::Post { room, text: "あ".repeat(MAX_POST_CHARS + 1), reply_to: None, mentions: vec![] },
        Command::Post { room, text: "x".into(), reply_to: Some(9), mentions: vec![] },
        Command::Post { room, text: "x".into(), reply_to: None, mentions: vec![AccountId(999)] },
    ] {
        assert!(matches!(hub.run(Some(nurse), bad), Err(DomainError::InvalidArgument(_))));
    }
    hub.ok(doctor, Command::AckPost { room, seq: 2 });
    hub.ok(doctor, Command::AckPost { room, seq: 2 });
    assert_eq!(hub.state.post(room, 2).unwrap().unwrap().acks, vec![doctor]);
    assert!(matches!(
        hub.run(Some(doctor), Command::EditPost { room, seq: 2, text: "x".into() }),
        Err(DomainError::PermissionDenied(_))
    ));
    hub.ok(nurse, Command::EditPost { room, seq: 2, text: "了解しました".into() });
    hub.ok(nurse, Command::DeletePost { room, seq: 2 });
    let p = hub.state.post(room, 2).unwrap().unwrap();
    assert!(p.deleted && p.text.is_empty());
    assert_eq!(p.history.iter().map(|v| v.text.as_str()).collect::<Vec<_>>(), ["了解です", "了解しました"]);
    assert_eq!(post(&mut hub, doctor, room, "次回は金曜"), 3);
    let t = timeline(&hub.state, nurse, room, oldest_first(0, 10)).unwrap().posts;
    assert_eq!(t.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(t[1].deleted && t[1].text.is_empty());
}

/// The whole room from its start, a page at a time.
fn oldest_first(after_seq: u64, limit: usize) -> TimelineQuery {
    TimelineQuery { after_seq, before_seq: 0, order: TimelineOrder::OldestFirst, limit }
}

fn newest_first(before_seq: u64, limit: usize) -> TimelineQuery {
    TimelineQuery { after_seq: 0, before_seq, order: TimelineOrder::NewestFirst, limit }
}

/// A page as (its posts' seqs, next_after_seq, next_before_seq).
fn page_shape(page: TimelinePage) -> (Vec<u64>, u64, u64) {
    (page.posts.iter().map(|p| p.seq).collect(), page.next_after_seq, page.next_before_seq)
}

#[test]
fn timelines_read_newest_first_or_oldest_first_a_page_at_a_time() {
    let (mut hub, _, _, people) = Hub::setup(1);
    let doctor = people[0];
    let room = patient(&mut hub, doctor, "山田 花子");
    for i in 1..=7 {
        post(&mut hub, doctor, room, &format!("記録 {i}"));
    }
    let page = |q: TimelineQuery| page_shape(timeline(&hub.state, doctor, room, q).unwrap());

    // Newest on top, paging down to the first post.
    assert_eq!(page(newest_first(0, 3)), (vec![7, 6, 5], 0, 5));
    assert_eq!(page(newest_first(5, 3)), (vec![4, 3, 2], 0, 2));
    assert_eq!(page(newest_first(2, 3)), (vec![1], 0, 0));
    assert_eq!(page(newest_first(0, 7)), (vec![7, 6, 5, 4, 3, 2, 1], 0, 0));
    // Oldest first, paging up to the newest.
    assert_eq!(page(oldest_first(0, 3)), (vec![1, 2, 3], 3, 0));
    assert_eq!(page(oldest_first(3, 3)), (vec![4, 5, 6], 6, 0));
    assert_eq!(page(oldest_first(6, 3)), (vec![7], 0, 0));
    assert_eq!(page(oldest_first(7, 3)), (vec![], 0, 0));

    // Both bounds: the posts strictly between them, from either end, paging within them.
    let between = |order, after_seq, before_seq, limit| TimelineQuery { after_seq, before_seq, order, limit };
    assert_eq!(page(between(TimelineOrder::NewestFirst, 2, 6, 2)), (vec![5, 4], 0, 4));
    assert_eq!(page(between(TimelineOrder::NewestFirst, 2, 4, 2)), (vec![3], 0, 0));
    assert_eq!(page(between(TimelineOrder::OldestFirst, 2, 6, 2)), (vec![3, 4], 4, 0));
    assert_eq!(page(between(TimelineOrder::OldestFirst, 4, 6, 2)), (vec![5], 0, 0));
    // A bound beyond the room, or a window with nothing in it.
    assert_eq!(page(newest_first(100, 2)), (vec![7, 6], 0, 6));
    assert_eq!(page(between(TimelineOrder::NewestFirst, 5, 6, 2)), (vec![], 0, 0));
    assert_eq!(page(between(TimelineOrder::OldestFirst, 6, 3, 2)), (vec![], 0, 0));
    assert_eq!(page(newest_first(1, 2)), (vec![], 0, 0));
    assert_eq!(page(between(TimelineOrder::NewestFirst, u64::MAX, 0, 2)), (vec![], 0, 0));
}

#[test]
fn unread_counts_and_patient_list_order() {
    let (mut hub, _, _, people) = Hub::setup(2);
    let (doctor, nurse) = (people[0], people[1]);
    let a = patient(&mut hub, doctor, "患者A");
    let b = patient(&mut hub, doctor, "患者B");
    for r in [a, b] {
        hub.ok(doctor, Command::Invite { room: r, invitee: nurse, role: Role::Member });
    }
    post(&mut hub, doctor, b, "B-1");
    post(&mut hub, doctor, a, "A-1");
    post(&mut hub, doctor, a, "A-2");
    let list = room_list(&hub.state, nurse, ListKind::Patients).unwrap();
    assert_eq!(list.iter().map(|s| (s.title.as_str(), s.unread)).collect::<Vec<_>>(), [("患者A", 2), ("患者B", 1)]);
    assert_eq!(list[0].preview, "A-2");
    // The author has read its own posts.
    assert!(room_list(&hub.state, doctor, ListKind::Patients).unwrap().iter().all(|s| s.unread == 0));
    hub.ok(nurse, Command::MarkRead { room: a, up_to_seq: 99 });
    let list = room_list(&hub.state, nurse, ListKind::Patients).unwrap();
    assert_eq!(list.iter().map(|s| s.unread).collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn posting_marks_only_ones_own_post_read() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (doctor, pharmacist, nurse) = (people[0], people[1], people[2]);
    let room = patient(&mut hub, doctor, "山田 花子");
    for who in [pharmacist, nurse] {
        hub.ok(doctor, Command::Invite { room, invitee: who, role: Role::Member });
    }
    let unread = |hub: &Hub, who: AccountId| room_list(&hub.state, who, ListKind::Patients).unwrap()[0].unread;
    post(&mut hub, doctor, room, "1 訪問しました");
    post(&mut hub, pharmacist, room, "2 お薬を届けました");
    // The nurse answers without having read the two posts before hers: they stay unread for
    // her, and her own post does not count.
    post(&mut hub, nurse, room, "3 了解です");
    assert_eq!(unread(&hub, nurse), 2);
    post(&mut hub, doctor, room, "4 次回は金曜");
    post(&mut hub, nurse, room, "5 金曜に伺います");
    assert_eq!(unread(&hub, nurse), 3);
    // The pharmacist has read nothing but her own post: 1, 3, 4 and 5 are news to her.
    assert_eq!(unread(&hub, pharmacist), 4);
    // The doctor read up to her first post: 2, 3 and 5 are news.
    assert_eq!(unread(&hub, doctor), 3);
    hub.ok(nurse, Command::MarkRead { room, up_to_seq: 1 });
    assert_eq!(unread(&hub, nurse), 2);
    // Reading up to the doctor's post 4 reads the room: her own post 5 after it is read too.
    hub.ok(nurse, Command::MarkRead { room, up_to_seq: 4 });
    assert_eq!(unread(&hub, nurse), 0);
    let marker = hub.state.member(room, nurse).unwrap().unwrap();
    assert_eq!((marker.read_seq, marker.own_unread.len()), (5, 0));
    // Once all is read, posting keeps it so.
    post(&mut hub, nurse, room, "6 追記です");
    assert_eq!(unread(&hub, nurse), 0);
    assert_eq!(hub.state.member(room, nurse).unwrap().unwrap().read_seq, 6);
}

#[test]
fn read_markers_stored_before_own_posts_were_tracked_still_decode() {
    let stored = r#"{"room":7,"account":3,"role":"Member","state":"Active","read_seq":4}"#;
    let m: Member = serde_json::from_str(stored).expect("an old member record");
    assert_eq!((m.read_seq, m.unread(6)), (4, 2));
}

#[test]
fn sub_rooms_hold_a_subset_of_the_team_and_follow_it() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (doctor, nurse, outsider) = (people[0], people[1], people[2]);
    let room = patient(&mut hub, doctor, "患者C");
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    let bad = hub.run(
        Some(doctor),
        Command::CreateSubRoom { timeline: room, name: "医師と看護師".into(), members: vec![outsider] },
    );
    assert!(matches!(bad, Err(DomainError::InvalidArgument(_))));
    let Outcome::Room(sub) =
        hub.ok(doctor, Command::CreateSubRoom { timeline: room, name: "医師と看護師".into(), members: vec![nurse] })
    else {
        panic!()
    };
    post(&mut hub, nurse, sub, "内密の相談");
    // Removed from the team: removed from its sub-rooms too.
    hub.ok(doctor, Command::Remove { room, account: nurse });
    assert!(!authz::can_read(&hub.state, nurse, sub).unwrap());
    assert!(!authz::can_read(&hub.state, nurse, room).unwrap());
}

/// A patient-list entry as (title, unread, [(sub-room title, unread)]).
type Line = (String, u64, Vec<(String, u64)>);

fn patient_list(hub: &Hub, who: AccountId) -> Vec<Line> {
    let list = room_list(&hub.state, who, ListKind::Patients).unwrap();
    let sub_line = |s: &queries::RoomSummary| (s.title.clone(), s.unread);
    list.iter().map(|s| (s.title.clone(), s.unread, s.sub_rooms.iter().map(sub_line).collect())).collect()
}

fn line(title: &str, unread: u64, sub_rooms: &[(&str, u64)]) -> Line {
    (title.into(), unread, sub_rooms.iter().map(|(t, u)| (t.to_string(), *u)).collect())
}

#[test]
fn a_page_is_titled_from_the_rooms_its_list_read() {
    let (mut hub, _, _, people) = Hub::setup(1);
    let doctor = people[0];
    let yamada = patient(&mut hub, doctor, "山田 花子");
    post(&mut hub, doctor, yamada, "本日訪問しました");
    let list = queries::room_list_unfilled(&hub.state, doctor, ListKind::Patients).unwrap();
    assert!(list.rooms.contains_key(&yamada));
    // Filled from the list's rooms: the room is not read again, so a page given none stays
    // untitled (its preview is still read).
    let mut untitled = list.entries.clone();
    queries::fill(&hub.state, doctor, &mut untitled, &HashMap::new()).unwrap();
    assert_eq!((untitled[0].title.as_str(), untitled[0].preview.as_str()), ("", "本日訪問しました"));
    let mut page = list.entries;
    queries::fill(&hub.state, doctor, &mut page, &list.rooms).unwrap();
    assert_eq!(page[0].title, "山田 花子");
}

#[test]
fn sub_rooms_are_listed_inside_their_patient_with_their_own_unread_counts() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (doctor, nurse, pharmacist) = (people[0], people[1], people[2]);
    let yamada = patient(&mut hub, doctor, "山田 花子");
    let sato = patient(&mut hub, doctor, "佐藤 一郎");
    for (room, who) in [(yamada, nurse), (yamada, pharmacist), (sato, nurse)] {
        hub.ok(doctor, Command::Invite { room, invitee: who, role: Role::Member });
    }
    post(&mut hub, doctor, yamada, "本日訪問しました");
    let Outcome::Room(sub) = hub
        .ok(doctor, Command::CreateSubRoom { timeline: yamada, name: "医師・訪問看護".into(), members: vec![nurse] })
    else {
        panic!()
    };
    post(&mut hub, doctor, sato, "退院調整の相談です");
    post(&mut hub, doctor, sub, "看取りの方針をご相談させてください");
    post(&mut hub, doctor, sub, "ご家族とも話します");

    // For the nurse, 山田 花子 is newest by its sub-room's post, which sits inside the entry.
    assert_eq!(patient_list(&hub, nurse), [line("山田 花子", 1, &[("医師・訪問看護", 2)]), line("佐藤 一郎", 1, &[])]);
    // Each entry and each sub-room inside it shows its own newest post (filled in one batch).
    let previews = |list: Vec<queries::RoomSummary>| -> Vec<(String, Vec<String>)> {
        list.into_iter().map(|s| (s.preview, s.sub_rooms.into_iter().map(|r| r.preview).collect())).collect()
    };
    let filled = room_list(&hub.state, nurse, ListKind::Patients).unwrap();
    let expected = [("本日訪問しました", vec!["ご家族とも話します"]), ("退院調整の相談です", vec![])];
    let expected: Vec<(String, Vec<String>)> =
        expected.into_iter().map(|(p, subs)| (p.into(), subs.into_iter().map(String::from).collect())).collect();
    assert_eq!(previews(filled), expected);
    // The pharmacist is not in the sub-room: her entry has none, ordered by the timeline alone.
    assert_eq!(patient_list(&hub, pharmacist), [line("山田 花子", 1, &[])]);
    hub.ok(nurse, Command::MarkRead { room: sub, up_to_seq: 2 });
    assert_eq!(patient_list(&hub, nurse)[0], line("山田 花子", 1, &[("医師・訪問看護", 0)]));

    // A sub-room member outside the patient's team (a record from before leaving a team left
    // its sub-rooms) still finds the sub-room, on its own line with its full title.
    hub.state.apply(vec![Change::RemoveMember { room: yamada, account: nurse }]);
    assert_eq!(patient_list(&hub, nurse), [line("山田 花子／医師・訪問看護", 0, &[]), line("佐藤 一郎", 1, &[])]);
}

#[test]
fn groups_take_join_requests_and_members_leave() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let Outcome::Room(g) = hub.ok(people[0], Command::CreateGroup { name: "宇都宮多職種連携会議".into() })
    else {
        panic!()
    };
    hub.ok(people[1], Command::RequestJoin { room: g });
    assert!(!authz::can_read(&hub.state, people[1], g).unwrap());
    hub.ok(people[0], Command::Approve { room: g, account: people[1] });
    assert!(authz::can_read(&hub.state, people[1], g).unwrap());
    hub.ok(people[1], Command::Leave { room: g });
    assert!(!authz::can_read(&hub.state, people[1], g).unwrap());
    assert!(matches!(hub.run(Some(people[0]), Command::Leave { room: g }), Err(DomainError::FailedPrecondition(_))));
    // Patient teams take no join requests and do not admit they exist.
    let p = patient(&mut hub, people[0], "患者D");
    assert_eq!(hub.run(Some(people[2]), Command::RequestJoin { room: p }), Err(not_found("room")));
}

#[test]
fn connections_open_a_one_to_one_room_and_blocking_closes_it() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (a, b, c) = (people[0], people[1], people[2]);
    hub.ok(a, Command::RequestConnection { to: b });
    let Outcome::Room(room) = hub.ok(b, Command::AcceptConnection { from: a }) else { panic!() };
    post(&mut hub, a, room, "主治医にだけ伝えたいこと");
    assert!(!authz::can_read(&hub.state, c, room).unwrap());
    assert_eq!(room_list(&hub.state, b, ListKind::Connections).unwrap()[0].title, "職員0");
    hub.ok(c, Command::RequestConnection { to: a });
    hub.ok(a, Command::DeclineConnection { from: c });
    hub.ok(b, Command::BlockConnection { other: a });
    assert!(!authz::can_read(&hub.state, a, room).unwrap());
    assert_eq!(hub.run(Some(a), Command::RequestConnection { to: b }), Err(not_found("account")));
}

#[test]
fn family_accounts_see_only_their_patient() {
    let (mut hub, _, _, people) = Hub::setup(1);
    let doctor = people[0];
    let room = patient(&mut hub, doctor, "患者E");
    let other = patient(&mut hub, doctor, "患者F");
    let Outcome::Patient { patient: pid, .. } = hub.ok(
        doctor,
        Command::CreatePatient {
            name: "患者G".into(),
            kana: "か".into(),
            birth_date: String::new(),
            address: String::new(),
            notes: String::new(),
        },
    ) else {
        panic!()
    };
    let _ = pid;
    let pe = hub.state.rooms[&room].kind.clone();
    let RoomKind::PatientTimeline { patient: pe } = pe else { panic!() };
    let fam = account_of(hub.ok(
        doctor,
        Command::CreateFamilyAccount {
            patient: pe,
            login: "kazoku".into(),
            display_name: "家族".into(),
            password_hash: "h".into(),
        },
    ));
    assert!(authz::can_read(&hub.state, fam, room).unwrap());
    assert!(matches!(
        hub.run(Some(doctor), Command::Invite { room: other, invitee: fam, role: Role::Family }),
        Err(DomainError::InvalidArgument(_))
    ));
    assert!(matches!(
        hub.run(Some(fam), Command::CreateGroup { name: "g".into() }),
        Err(DomainError::PermissionDenied(_))
    ));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Commands over a small universe: 4 professionals, rooms named by index into those created.
    #[derive(Debug, Clone)]
    enum Op {
        Patient(usize),
        Group(usize),
        Invite(usize, usize, usize),
        Approve(usize, usize, usize),
        Join(usize, usize),
        Leave(usize, usize),
        Remove(usize, usize, usize),
        Stop(usize),
        Connect(usize, usize),
        Accept(usize, usize),
        Block(usize, usize),
        Post(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = 0..4usize;
        let r = 0..6usize;
        prop_oneof![
            p.clone().prop_map(Op::Patient),
            p.clone().prop_map(Op::Group),
            (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::Invite(a, b, c)),
            (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::Approve(a, b, c)),
            (p.clone(), r.clone()).prop_map(|(a, b)| Op::Join(a, b)),
            (p.clone(), r.clone()).prop_map(|(a, b)| Op::Leave(a, b)),
            (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::Remove(a, b, c)),
            (1..4usize).prop_map(Op::Stop),
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Connect(a, b)),
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Accept(a, b)),
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Block(a, b)),
            (p.clone(), r.clone()).prop_map(|(a, b)| Op::Post(a, b)),
        ]
    }

    proptest! {
        /// No sequence of commands lets a non-member read a room: whoever can read a room is an
        /// active account that an owner let in (created it, invited it, approved it, or is one
        /// side of an accepted connection) and that was not removed, did not leave, was not
        /// blocked out since.
        #[test]
        fn only_admitted_active_members_read(ops in proptest::collection::vec(op(), 1..60)) {
            let (mut hub, _, _, people) = Hub::setup(4);
            let mut rooms: Vec<RoomId> = Vec::new();
            // The model: who was admitted to each room, maintained from outcomes alone.
            let mut admitted: std::collections::BTreeSet<(RoomId, AccountId)> = Default::default();
            let mut stopped: std::collections::BTreeSet<AccountId> = Default::default();
            let room_at = |rooms: &Vec<RoomId>, i: usize| rooms.get(i).copied().unwrap_or(RoomId(u64::MAX));
            for op in ops {
                match op {
                    Op::Patient(a) => {
                        let cmd = Command::CreatePatient { name: "p".into(), kana: "k".into(), birth_date: String::new(), address: String::new(), notes: String::new() };
                        if let Ok(Outcome::Patient { timeline, .. }) = hub.run(Some(people[a]), cmd) {
                            rooms.push(timeline);
                            admitted.insert((timeline, people[a]));
                        }
                    }
                    Op::Group(a) => {
                        if let Ok(Outcome::Room(r)) = hub.run(Some(people[a]), Command::CreateGroup { name: "g".into() }) {
                            rooms.push(r);
                            admitted.insert((r, people[a]));
                        }
                    }
                    Op::Invite(a, r, b) => {
                        let room = room_at(&rooms, r);
                        let by_owner = hub.state.member(room, people[a]).unwrap().is_some_and(|m| m.is_active() && m.role == Role::Owner);
                        if hub.run(Some(people[a]), Command::Invite { room, invitee: people[b], role: Role::Member }).is_ok() && by_owner {
                            admitted.insert((room, people[b]));
                        }
                    }
                    Op::Approve(a, r, b) => {
                        let room = room_at(&rooms, r);
                        if hub.run(Some(people[a]), Command::Approve { room, account: people[b] }).is_ok() {
                            admitted.insert((room, people[b]));
                        }
                    }
                    Op::Join(a, r) => { let _ = hub.run(Some(people[a]), Command::RequestJoin { room: room_at(&rooms, r) }); }
                    Op::Leave(a, r) => {
                        let room = room_at(&rooms, r);
                        if hub.run(Some(people[a]), Command::Leave { room }).is_ok() {
                            admitted.remove(&(room, people[a]));
                        }
                    }
                    Op::Remove(a, r, b) => {
                        let room = room_at(&rooms, r);
                        if hub.run(Some(people[a]), Command::Remove { room, account: people[b] }).is_ok() {
                            admitted.remove(&(room, people[b]));
                        }
                    }
                    Op::Stop(b) => {
                        if hub.run(Some(people[0]), Command::StopAccount { account: people[b] }).is_ok() {
                            stopped.insert(people[b]);
                        }
                    }
                    Op::Connect(a, b) => { let _ = hub.run(Some(people[a]), Command::RequestConnection { to: people[b] }); }
                    Op::Accept(a, b) => {
                        if let Ok(Outcome::Room(r)) = hub.run(Some(people[a]), Command::AcceptConnection { from: people[b] }) {
                            rooms.push(r);
                            admitted.insert((r, people[a]));
                            admitted.insert((r, people[b]));
                        }
                    }
                    Op::Block(a, b) => {
                        let pair = connection_pair(people[a], people[b]);
                        let open = match hub.state.connection(pair).unwrap() { Some(Connection { state: ConnectionState::Accepted { room }, .. }) => Some(room), _ => None };
                        if hub.run(Some(people[a]), Command::BlockConnection { other: people[b] }).is_ok()
                            && let Some(room) = open
                        {
                            admitted.remove(&(room, pair.0));
                            admitted.remove(&(room, pair.1));
                        }
                    }
                    Op::Post(a, r) => { let _ = hub.run(Some(people[a]), Command::Post { room: room_at(&rooms, r), text: "t".into(), reply_to: None, mentions: vec![] }); }
                }
                for room in &rooms {
                    // Sub-room removals are not modelled; leaving a timeline only narrows access.
                    for p in &people {
                        if authz::can_read(&hub.state, *p, *room).unwrap() {
                            prop_assert!(!stopped.contains(p), "stopped account {p} reads room {room}");
                            prop_assert!(admitted.contains(&(*room, *p)), "account {p} reads room {room} without being admitted");
                            prop_assert!(timeline(&hub.state, *p, *room, oldest_first(0, 100)).is_ok());
                        } else {
                            prop_assert!(timeline(&hub.state, *p, *room, oldest_first(0, 100)).is_err());
                        }
                    }
                }
            }
        }
    }
}

/// Registers and approves a facility with `n` approved professionals (the first its admin).
fn facility(hub: &mut Hub, op: AccountId, name: &str, kind: FacilityKind, n: usize) -> (FacilityId, Vec<AccountId>) {
    let f = match hub.ok(op, Command::RegisterFacility { name: name.into(), kind, municipality: "宇都宮市".into() })
    {
        Outcome::Facility(f) => f,
        o => panic!("{o:?}"),
    };
    hub.ok(op, Command::ApproveFacility { facility: f });
    let mut staff = Vec::new();
    for i in 0..n {
        let code = format!("{name}-{i}");
        let expires_at_ms = hub.now + 60_000;
        hub.ok(op, Command::IssueInvitation { facility: f, code_hash: code.clone(), expires_at_ms, as_admin: i == 0 });
        let register = Command::Register {
            code_hash: code,
            login: format!("{name}{i}"),
            display_name: format!("{name}職員{i}"),
            profession: Profession::Doctor,
            password_hash: "h".into(),
        };
        let a = account_of(hub.run(None, register).unwrap());
        hub.ok(op, Command::ApproveAccount { account: a });
        staff.push(a);
    }
    (f, staff)
}

mod attachments;
mod directory;
mod disaster;
mod emergency;
mod federation;
mod federation_files;
mod federation_pause;
mod federation_requests;
mod limits;
mod notify;
mod password;
mod push;
mod records;
mod requests;
mod room_detail;
mod search;
mod second_factor;
mod session_policy;

#[test]
fn hex_is_two_lower_case_digits_per_byte_and_reads_back() {
    assert_eq!(hex(&[]), "");
    assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    let all: Vec<u8> = (0..=255).collect();
    let text = hex(&all);
    assert_eq!(text, all.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let digest: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
    assert_eq!(bytes_of_hex::<32>(&hex(&digest)), Some(digest));
}
