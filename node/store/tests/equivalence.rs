//! The reference check of the store: random command sequences run against the domain's
//! in-memory hub (`MemHub`, the reference) and against `RocksHub` over a real RocksDB must give
//! the same answer to every command and leave the same state, as seen through every `HubView`
//! method. A difference means the RocksDB tables (keys, indexes, overlay, encoding) do not
//! store what the domain decided.

use std::collections::BTreeSet;
use std::sync::Arc;

use kizuna_domain::directory::FacilityProfile;
use kizuna_domain::federation::inbox::{self, Batch};
use kizuna_domain::federation::map::FacilityCopy;
use kizuna_domain::federation::requests::RequestCopy;
use kizuna_domain::federation::wire::Profile;
use kizuna_domain::federation::{HubName, Message, Party, RoomWrite, SeqRange};
use kizuna_domain::model::*;
use kizuna_domain::requests::RequestKind;
use kizuna_domain::{Command, Ctx, HubView, MemHub, Outcome, execute, settle};
use kizuna_store::{LogStore, MasterKey, MasterKeys, RocksHub, StateMachineStore, StateReader};
use proptest::prelude::*;
use rocksdb::{DB, WriteBatch};

const TEXTS: [&str; 5] = [
    "本日訪問しました。バイタル安定。",
    "酸素チューブの交換をお願いします",
    "退院前カンファレンスの日程を調整します",
    "Blood pressure 128/76",
    "服薬状況を確認しました。酸素は問題なし",
];

/// The same hub twice: in memory and in RocksDB, fed the same commands.
struct Twin {
    mem: MemHub,
    db: Arc<DB>,
    index: u64,
    now: u64,
    /// Every login, code, token and text used, so the state comparison can ask about them.
    logins: BTreeSet<String>,
    codes: BTreeSet<String>,
    tokens: BTreeSet<String>,
    /// The store's reader, for its vault: the RocksDB twin seals everything it writes.
    reader: StateReader,
    _store: (LogStore, StateMachineStore),
    _dir: tempfile::TempDir,
}

impl Twin {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let masters = MasterKeys::new(MasterKey::from_secret(&[5; 32]), Vec::new());
        // The version before this build's: the RocksDB twin starts with the empty entries of an
        // account's index of memberships, and moves to the build's at a random `Op::Upgrade`
        // (the domain decides the same at both: 8 changed the store only).
        let before = kizuna_domain::APPLY_VERSION - 1;
        let (log, sm) = kizuna_store::open_sealed(dir.path(), masters, before).expect("open the store");
        let db = sm.reader().database().upgrade().expect("the store's database");
        let reader = sm.reader();
        Twin {
            reader,
            mem: MemHub::default(),
            db,
            index: 0,
            now: 1_000_000,
            logins: BTreeSet::new(),
            codes: BTreeSet::new(),
            tokens: BTreeSet::new(),
            _store: (log, sm),
            _dir: dir,
        }
    }

    /// Runs `cmd` on both; their answers must agree. Applies an accepted command's changes to
    /// both (RocksDB through a committed write batch, as the state machine does).
    fn run(&mut self, actor: Option<AccountId>, cmd: Command) -> Option<Outcome> {
        self.index += 1;
        self.now += 1000;
        let ctx = Ctx { log_index: self.index, now_ms: self.now };
        let on_mem = execute(&self.mem, ctx, actor, cmd.clone());
        let rocks = RocksHub::new(&self.db, self.reader.vault());
        let on_rocks = execute(&rocks, ctx, actor, cmd.clone());
        assert_eq!(rocks.fault(), None, "the store met a fault on {cmd:?}");
        assert_eq!(format!("{on_mem:?}"), format!("{on_rocks:?}"), "answers differ for {cmd:?}");
        let effects = on_mem.ok()?;
        let outcome = settle(&mut self.mem, self.now, effects.clone()).expect("readable").outcome;
        let mut hub = RocksHub::new(&self.db, self.reader.vault());
        settle(&mut hub, self.now, effects).expect("readable");
        self.commit(hub);
        Some(outcome)
    }

    /// Delivers a batch of `origin`'s stream (`count` messages from `first`) to both: a mix of
    /// undecodable bytes, writes of remote members into `rooms` and withdrawals. Their receipts,
    /// events and audit entries must agree.
    fn deliver(&mut self, origin: &HubName, (first, count): (u64, u64), rooms: &[RoomId]) {
        self.index += 1;
        self.now += 1000;
        let range = SeqRange::of_batch(first, count).expect("a valid batch");
        let facilities: Vec<FacilityId> = self.mem.facilities.keys().copied().collect();
        let messages: Vec<Vec<u8>> =
            (first..first + count).map(|seq| message(origin, seq, rooms, &facilities)).collect();
        let batch = Batch { origin, range, messages: &messages, key_id: "k", signature: &[7], node: 2 };
        let ctx = Ctx { log_index: self.index, now_ms: self.now };
        let on_mem = inbox::apply_batch(&mut self.mem, ctx, batch).expect("readable");
        let mut hub = RocksHub::new(&self.db, self.reader.vault());
        let on_rocks = inbox::apply_batch(&mut hub, ctx, batch).expect("readable");
        assert_eq!(format!("{on_mem:?}"), format!("{on_rocks:?}"), "decisions differ for {origin} {first}+{count}");
        self.commit(hub);
    }

    /// Commits what the RocksDB view staged in one write batch, as the state machine does.
    fn commit(&self, hub: RocksHub<'_>) {
        let mut batch = WriteBatch::default();
        hub.write_into(&mut batch).expect("a batch without a storage fault");
        self.db.write(batch).expect("write the batch");
    }

    /// The RocksDB twin moves to this build's apply version, as a `SetApplyVersion` entry does.
    fn upgrade(&mut self) {
        let mut hub = RocksHub::new(&self.db, self.reader.vault());
        hub.set_apply_version(kizuna_domain::APPLY_VERSION);
        self.commit(hub);
    }

    fn ok(&mut self, actor: Option<AccountId>, cmd: Command) -> Outcome {
        let what = format!("{cmd:?}");
        self.run(actor, cmd).unwrap_or_else(|| panic!("refused: {what}"))
    }

    /// An operator, two approved facilities, four approved professionals (two per facility,
    /// the first of each its admin), each signed in once.
    fn world(&mut self) -> Vec<AccountId> {
        let login = |s: &mut Twin, login: &str| {
            s.logins.insert(login.to_owned());
        };
        let op = match self.ok(
            None,
            Command::InitOperator { login: "op".into(), display_name: "事務局".into(), password_hash: "h".into() },
        ) {
            Outcome::Account(a) => a,
            o => panic!("{o:?}"),
        };
        login(self, "op");
        for nurse in ["nurse0@gunma", "nurse1@gunma"] {
            login(self, nurse);
        }
        let mut people = Vec::new();
        for (f, kind) in [FacilityKind::Clinic, FacilityKind::VisitingNursingStation].into_iter().enumerate() {
            let register =
                Command::RegisterFacility { name: format!("施設{f}"), kind, municipality: "宇都宮市".into() };
            let facility = match self.ok(Some(op), register) {
                Outcome::Facility(id) => id,
                o => panic!("{o:?}"),
            };
            self.ok(Some(op), Command::ApproveFacility { facility });
            for i in 0..2 {
                let code = format!("code-{f}-{i}");
                self.codes.insert(code.clone());
                let invite = Command::IssueInvitation {
                    facility,
                    code_hash: code.clone(),
                    expires_at_ms: self.now + 3_600_000,
                    as_admin: i == 0,
                };
                self.ok(Some(op), invite);
                let name = format!("user{f}{i}");
                let register = Command::Register {
                    code_hash: code,
                    login: name.clone(),
                    display_name: format!("職員{f}{i}"),
                    profession: Profession::VisitingNurse,
                    password_hash: "h".into(),
                };
                let account = match self.ok(None, register) {
                    Outcome::Account(a) => a,
                    o => panic!("{o:?}"),
                };
                login(self, &name);
                self.ok(Some(op), Command::ApproveAccount { account });
                let token = format!("token-{name}");
                self.tokens.insert(token.clone());
                let session =
                    Command::CreateSession { login: name, token_hash: token, device: "d".into(), totp_step: None };
                self.ok(None, session);
                people.push(account);
            }
        }
        people
    }

    /// Both sides answer every question of the view alike, over every id the log could have
    /// handed out and every login, code, token and bigram used.
    fn assert_same_state(&self) {
        let rocks = RocksHub::new(&self.db, self.reader.vault());
        let same = |what: String, a: String, b: String| assert_eq!(a, b, "{what} differs");
        macro_rules! both {
            ($($call:tt)*) => {
                same(stringify!($($call)*).to_owned(), format!("{:?}", self.mem.$($call)*), format!("{:?}", rocks.$($call)*))
            };
        }
        both!(has_operator());
        both!(settings());
        both!(facilities());
        both!(notices());
        both!(push_notices());
        for i in 1..=self.index {
            both!(push_subscriptions(AccountId(i)));
            both!(account(AccountId(i)));
            both!(facility(FacilityId(i)));
            both!(staff_of(FacilityId(i)));
            both!(patient(PatientId(i)));
            both!(room(RoomId(i)));
            both!(members(RoomId(i)));
            both!(rooms_of(AccountId(i)));
            both!(sessions_of(AccountId(i)));
            both!(connections_of(AccountId(i)));
            both!(notification_settings(AccountId(i)));
            both!(care_request(RequestId(i)));
            both!(care_requests_from(AccountId(i)));
            both!(care_requests_to(FacilityId(i)));
            for j in 1..=self.index {
                both!(member(RoomId(i), AccountId(j)));
                both!(connection((AccountId(i), AccountId(j))));
                both!(notice(AccountId(i), RoomId(j)));
                both!(push_notice(AccountId(i), RoomId(j)));
            }
            let last = self.mem.room(RoomId(i)).unwrap().map_or(0, |r| r.last_seq);
            for seq in 1..=last {
                both!(post(RoomId(i), seq));
            }
            for text in TEXTS {
                let grams = kizuna_domain::search::bigrams(&kizuna_domain::search::normalize(text));
                // A store's index may name a post that lacks the bigrams (a filter's false
                // positive; the search reads the text): the same posts hold them in both.
                let asked = grams.iter().map(|gram| BTreeSet::from([gram.clone()])).chain([grams.clone()]);
                for asked in asked {
                    same(
                        format!("posts_with_bigrams({i}, {asked:?})"),
                        format!("{:?}", holding(&self.mem, RoomId(i), &asked)),
                        format!("{:?}", holding(&rocks, RoomId(i), &asked)),
                    );
                }
            }
        }
        for login in &self.logins {
            both!(account_by_login(login));
        }
        for code in &self.codes {
            both!(invitation_by_code(code));
        }
        for token in &self.tokens {
            both!(session(token));
        }
        for i in 1..=self.index {
            both!(pending_write(i));
            both!(pending_in(RoomId(i)));
            for origin in origins() {
                both!(mirror_of(&origin, RoomId(i)));
            }
        }
        both!(directory_shared_with());
        both!(remote_facilities());
        for id in self.mem.requests.keys() {
            both!(care_request(*id));
            both!(request_link(*id));
        }
        for origin in origins() {
            both!(outbound(&origin));
            both!(heard_from(&origin));
            both!(federation_paused(&origin));
            let on_mem: Vec<_> = self.mem.outbox.values().filter(|m| m.to == origin).cloned().collect();
            assert_eq!(on_mem, rocks.outbox_after(&origin, 0, usize::MAX), "the outbox to {origin} differs");
            both!(inbound(&origin));
            let on_mem: Vec<_> = self.mem.inbox.values().filter(|m| m.origin == origin).cloned().collect();
            assert_eq!(on_mem, rocks.inbox_after(&origin, 0, usize::MAX), "the inbox of {origin} differs");
        }
        assert_eq!(rocks.fault(), None);
    }
}

/// Message `seq` of `origin`'s random stream: bytes that are no message, a post of one of its
/// nurses into one of our rooms (refused unless she was invited), her withdrawal, one of its
/// facilities for our map, the withdrawal of its map, or one of its nurses' requests to our
/// `facilities` (refused unless we share our map with `origin`).
/// The posts of `room` the view's search index names for `grams` that hold them (their text
/// read, as the search reads it).
fn holding(view: &impl HubView, room: RoomId, grams: &BTreeSet<String>) -> kizuna_domain::ViewResult<Vec<u64>> {
    use kizuna_domain::search::{bigrams, normalize};
    let mut held = Vec::new();
    for seq in view.posts_with_bigrams(room, grams)? {
        if view.post(room, seq)?.is_some_and(|p| !p.deleted && bigrams(&normalize(&p.text)).is_superset(grams)) {
            held.push(seq);
        }
    }
    Ok(held)
}

fn message(origin: &HubName, seq: u64, rooms: &[RoomId], facilities: &[FacilityId]) -> Vec<u8> {
    let room = rooms.get(seq as usize % rooms.len().max(1)).copied().unwrap_or(RoomId(1));
    let author = format!("nurse{}", seq % 2);
    match seq % 6 {
        0 => format!("{origin}:{seq}").into_bytes(),
        1 => Message::Submit {
            room,
            author,
            ticket: seq,
            write: RoomWrite::Post { text: TEXTS[seq as usize % TEXTS.len()].into(), reply_to: None, mentions: vec![] },
        }
        .encode(),
        4 => Message::NoSuchMember { room, login: author }.encode(),
        3 => Message::Facility(FacilityCopy {
            id: FacilityId(seq % 3),
            name: format!("前橋の施設{}", seq % 3),
            kind: FacilityKind::Clinic,
            municipality: "前橋市".into(),
            profile: FacilityProfile { accepting_new_patients: seq.is_multiple_of(2), ..FacilityProfile::default() },
        })
        .encode(),
        5 => Message::DirectoryWithdrawn.encode(),
        _ => Message::Request(RequestCopy {
            id: RequestId(seq),
            kind: RequestKind::HomeVisit,
            from: Profile {
                party: Party::Sender(author),
                display_name: "訪問看護師".into(),
                facility_name: "前橋訪問看護".into(),
                profession: Profession::VisitingNurse,
            },
            from_facility: FacilityId(seq % 3),
            about_patient: false,
            title: "訪問のご依頼".into(),
            details: TEXTS[seq as usize % TEXTS.len()].into(),
            to: facilities.to_vec(),
            sent_at_ms: seq,
        })
        .encode(),
    }
}

/// The origins the random batches come from ("gun" is a prefix of "gunma" on purpose).
fn origins() -> [HubName; 2] {
    [HubName::new("gunma").unwrap(), HubName::new("gun").unwrap()]
}

/// What the random sequences do, over four professionals (`p`), the rooms created so far (`r`,
/// an index into them), the requests sent so far (`q`) and the texts above (`t`).
#[derive(Debug, Clone)]
enum Op {
    Patient(usize),
    Group(usize),
    SubRoom(usize, usize, usize),
    Invite(usize, usize, usize),
    Approve(usize, usize, usize),
    Join(usize, usize),
    Leave(usize, usize),
    Remove(usize, usize, usize),
    Connect(usize, usize),
    Accept(usize, usize),
    Decline(usize, usize),
    Block(usize, usize),
    Post(usize, usize, usize),
    /// Edits, or deletes, the actor's newest live post in the room.
    Edit(usize, usize, usize),
    Delete(usize, usize),
    Ack(usize, usize, u64),
    MarkRead(usize, usize, u64),
    Request(usize, usize, bool),
    Answer(usize, usize, bool),
    Cancel(usize, usize),
    Logout(usize),
    Stop(usize),
    /// A new password hash through the person's session (ends their other sessions).
    ChangePassword(usize),
    /// The person's notification settings: e-mail on or off, digest or not (posts and reads
    /// then raise and drop notices).
    Notify(usize, bool, bool),
    /// The person subscribes (or unsubscribes) browser `.1` to push notices (posts and reads
    /// then raise and drop push notices).
    Push(usize, usize, bool),
    /// Sets the session policy (idle minutes, absolute hours), valid or not.
    Policy(usize, u32, u32),
    /// Starts or stops sharing the resource map with a peer (as the operator for persons 0..3).
    Share(usize, usize, bool),
    /// A federated batch of `.2` messages from origin `.0`, starting `.1` after the next
    /// expected sequence (negative: an overlap or a duplicate, positive: a gap).
    Deliver(usize, i64, u64),
    /// Invites nurse `.2` of origin 0 into a room.
    InviteRemote(usize, usize, usize),
    /// Pauses (or resumes) sending to origin `.1`, as person `.0` (0: the operator).
    PausePeer(usize, usize, bool),
    /// The hub moves to this build's apply version (see [`Twin::new`]).
    Upgrade,
}

fn op() -> impl Strategy<Value = Op> {
    let (p, r, t, s) = (0..4usize, 0..6usize, 0..TEXTS.len(), 1..6u64);
    prop_oneof![
        2 => p.clone().prop_map(Op::Patient),
        2 => p.clone().prop_map(Op::Group),
        1 => (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::SubRoom(a, b, c)),
        3 => (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::Invite(a, b, c)),
        3 => (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::Approve(a, b, c)),
        1 => (p.clone(), r.clone()).prop_map(|(a, b)| Op::Join(a, b)),
        1 => (p.clone(), r.clone()).prop_map(|(a, b)| Op::Leave(a, b)),
        1 => (p.clone(), r.clone(), p.clone()).prop_map(|(a, b, c)| Op::Remove(a, b, c)),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Connect(a, b)),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Accept(a, b)),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Decline(a, b)),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Block(a, b)),
        8 => (p.clone(), r.clone(), t.clone()).prop_map(|(a, b, c)| Op::Post(a, b, c)),
        4 => (p.clone(), r.clone(), t).prop_map(|(a, b, c)| Op::Edit(a, b, c)),
        2 => (p.clone(), r.clone()).prop_map(|(a, b)| Op::Delete(a, b)),
        1 => (p.clone(), r.clone(), s.clone()).prop_map(|(a, b, c)| Op::Ack(a, b, c)),
        2 => (p.clone(), r.clone(), s).prop_map(|(a, b, c)| Op::MarkRead(a, b, c)),
        1 => (p.clone(), r.clone(), any::<bool>()).prop_map(|(a, b, c)| Op::Request(a, b, c)),
        1 => (p.clone(), 0..4usize, any::<bool>()).prop_map(|(a, b, c)| Op::Answer(a, b, c)),
        1 => (p.clone(), 0..4usize).prop_map(|(a, b)| Op::Cancel(a, b)),
        1 => p.clone().prop_map(Op::Logout),
        1 => (1..4usize).prop_map(Op::Stop),
        1 => p.clone().prop_map(Op::ChangePassword),
        2 => (p.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| Op::Notify(a, b, c)),
        2 => (p.clone(), 0..3usize, any::<bool>()).prop_map(|(a, b, c)| Op::Push(a, b, c)),
        1 => (p.clone(), 0..300u32, 0..30u32).prop_map(|(a, b, c)| Op::Policy(a, b, c)),
        3 => (0..2usize, -3..3i64, 1..4u64).prop_map(|(a, b, c)| Op::Deliver(a, b, c)),
        2 => (p.clone(), r.clone(), 0..2usize).prop_map(|(a, b, c)| Op::InviteRemote(a, b, c)),
        1 => (p.clone(), 0..2usize, any::<bool>()).prop_map(|(a, b, c)| Op::PausePeer(a, b, c)),
        4 => (p.clone(), 0..2usize, any::<bool>()).prop_map(|(a, b, c)| Op::Share(a, b, c)),
        1 => Just(Op::Upgrade),
    ]
}

/// The command an op stands for, given the people, rooms and requests that exist.
fn command(
    op: &Op,
    people: &[AccountId],
    rooms: &[RoomId],
    requests: &[RequestId],
    twin: &Twin,
) -> (AccountId, Command) {
    let room = |i: usize| rooms.get(i).copied().unwrap_or(RoomId(u64::MAX));
    // Mostly a room the actor is in (so posts and edits get through), by the same index.
    let mine = |a: usize, i: usize| {
        let member = |r: &&RoomId| twin.mem.member(**r, people[a]).unwrap().is_some_and(|m| m.is_active());
        let in_rooms: Vec<RoomId> = rooms.iter().filter(member).copied().collect();
        if in_rooms.is_empty() || i == 0 { room(i) } else { in_rooms[i % in_rooms.len()] }
    };
    let request = |i: usize| requests.get(i).copied().unwrap_or(RequestId(u64::MAX));
    let patient_of = |i: usize| {
        twin.mem.room(room(i)).unwrap().and_then(|r| match r.kind {
            RoomKind::PatientTimeline { patient } => Some(patient),
            _ => None,
        })
    };
    let facility_of = |a: usize| twin.mem.account(people[a]).unwrap().and_then(|x| x.facility());
    let text = |t: usize| TEXTS[t].to_owned();
    let own_newest = |a: usize, r: usize| {
        let last = twin.mem.room(mine(a, r)).unwrap().map_or(0, |x| x.last_seq);
        (1..=last)
            .rev()
            .find(|seq| twin.mem.post(mine(a, r), *seq).unwrap().is_some_and(|p| p.author == people[a] && !p.deleted))
    };
    match *op {
        Op::Patient(a) => (
            people[a],
            Command::CreatePatient {
                name: format!("患者{}", twin.index),
                kana: "かんじゃ".into(),
                birth_date: String::new(),
                address: String::new(),
                notes: String::new(),
            },
        ),
        Op::Group(a) => (people[a], Command::CreateGroup { name: format!("グループ{}", twin.index) }),
        Op::SubRoom(a, r, b) => (
            people[a],
            Command::CreateSubRoom {
                timeline: mine(a, r), name: "医師・訪問看護".into(), members: vec![people[b]]
            },
        ),
        Op::Invite(a, r, b) => {
            (people[a], Command::Invite { room: mine(a, r), invitee: people[b], role: Role::Member })
        }
        Op::Approve(a, r, b) => (people[a], Command::Approve { room: room(r), account: people[b] }),
        Op::Join(a, r) => (people[a], Command::RequestJoin { room: room(r) }),
        Op::Leave(a, r) => (people[a], Command::Leave { room: mine(a, r) }),
        Op::Remove(a, r, b) => (people[a], Command::Remove { room: room(r), account: people[b] }),
        Op::Connect(a, b) => (people[a], Command::RequestConnection { to: people[b] }),
        Op::Accept(a, b) => (people[a], Command::AcceptConnection { from: people[b] }),
        Op::Decline(a, b) => (people[a], Command::DeclineConnection { from: people[b] }),
        Op::Block(a, b) => (people[a], Command::BlockConnection { other: people[b] }),
        Op::Post(a, r, t) => {
            (people[a], Command::Post { room: mine(a, r), text: text(t), reply_to: None, mentions: vec![] })
        }
        Op::Edit(a, r, t) => {
            (people[a], Command::EditPost { room: mine(a, r), seq: own_newest(a, r).unwrap_or(1), text: text(t) })
        }
        Op::Delete(a, r) => (people[a], Command::DeletePost { room: mine(a, r), seq: own_newest(a, r).unwrap_or(1) }),
        Op::Ack(a, r, seq) => (people[a], Command::AckPost { room: mine(a, r), seq }),
        Op::MarkRead(a, r, seq) => (people[a], Command::MarkRead { room: mine(a, r), up_to_seq: seq }),
        Op::Request(a, r, about_patient) => {
            let to: Vec<FacilityId> =
                (0..people.len()).filter_map(facility_of).filter(|f| Some(*f) != facility_of(a)).collect();
            (
                people[a],
                Command::SendRequest {
                    kind: RequestKind::HomeVisit,
                    patient: if about_patient { patient_of(r) } else { None },
                    title: "往診のお願い".into(),
                    details: text(r % TEXTS.len()),
                    facilities: to.into_iter().take(1).collect(),
                },
            )
        }
        Op::Answer(a, q, accept) => {
            (people[a], Command::AnswerRequest { request: request(q), accept, note: "承知しました".into() })
        }
        Op::Cancel(a, q) => (people[a], Command::CancelRequest { request: request(q) }),
        Op::Logout(a) => {
            let login = twin.mem.account(people[a]).unwrap().map(|x| x.login).unwrap_or_default();
            (people[a], Command::Logout { token_hash: format!("token-{login}") })
        }
        Op::Stop(b) => (people[0], Command::StopAccount { account: people[b] }),
        Op::ChangePassword(a) => {
            let login = twin.mem.account(people[a]).unwrap().map(|x| x.login).unwrap_or_default();
            let hash = format!("hash-{}", twin.index);
            (people[a], Command::ChangePassword { password_hash: hash, token_hash: format!("token-{login}") })
        }
        Op::Notify(a, email_on, digest) => {
            let email = format!("person{a}@example.jp");
            let prefs = kizuna_domain::notify::NotificationPrefs { email, email_on, quiet: None, digest };
            (people[a], Command::SetNotificationSettings { prefs })
        }
        Op::Push(a, b, on) => {
            let endpoint = format!("https://push.example.net/person{a}/browser{b}");
            let command = if on {
                // A real uncompressed P-256 point and auth secret (RFC 8291's example).
                let p256dh = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
                Command::AddPushSubscription { endpoint, p256dh: p256dh.into(), auth: "BTBZMqHH6r4Tts7J_aSIgg".into() }
            } else {
                Command::RemovePushSubscription { endpoint }
            };
            (people[a], command)
        }
        Op::Deliver(..) => unreachable!("batches are delivered, not executed"),
        Op::Upgrade => unreachable!("the upgrade is an entry of the hub, not a command"),
        Op::InviteRemote(a, r, n) => (
            people[a],
            Command::InviteRemote {
                room: mine(a, r),
                hub: origins()[0].clone(),
                login: format!("nurse{n}"),
                role: Role::Member,
            },
        ),
        Op::Policy(a, idle_minutes, absolute_hours) => {
            // Person 0 stands in for the operator (the world's first command, id 1) here.
            let actor = if a == 0 { AccountId(1) } else { people[a] };
            (actor, Command::SetSessionPolicy { idle_minutes, absolute_hours })
        }
        Op::PausePeer(a, origin, paused) => {
            let actor = if a == 0 { AccountId(1) } else { people[a] };
            (actor, Command::SetFederationPeerPaused { peer: origins()[origin].clone(), paused })
        }
        Op::Share(a, peer, share) => {
            // Mostly the operator (the world's first command, id 1); sometimes staff, refused.
            let actor = if a < 3 { AccountId(1) } else { people[a] };
            (actor, Command::ShareDirectory { peer: origins()[peer].clone(), share })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rocksdb_stores_exactly_what_the_domain_decides(ops in proptest::collection::vec(op(), 1..50)) {
        let mut twin = Twin::new();
        let people = twin.world();
        let (mut rooms, mut requests) = (Vec::new(), Vec::new());
        for op in &ops {
            if let Op::Deliver(origin, offset, count) = *op {
                let origin = &origins()[origin];
                let next = twin.mem.inbound(origin).unwrap().highest_applied() as i64 + 1;
                twin.deliver(origin, ((next + offset).max(1) as u64, count), &rooms);
                continue;
            }
            if let Op::Upgrade = op {
                twin.upgrade();
                continue;
            }
            let (actor, cmd) = command(op, &people, &rooms, &requests, &twin);
            match twin.run(Some(actor), cmd) {
                Some(Outcome::Patient { timeline, .. }) => rooms.push(timeline),
                Some(Outcome::Room(room)) if !rooms.contains(&room) => rooms.push(room),
                Some(Outcome::Request(id)) => requests.push(id),
                _ => {}
            }
        }
        twin.assert_same_state();
    }
}
