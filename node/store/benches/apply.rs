//! criterion micro-benchmarks of what a node does per command and per read, without Raft or
//! gRPC: a post decided and settled in memory (the domain alone) and into RocksDB (the domain,
//! the store's keys and indexes, sealing, one write batch — the command's part of an apply,
//! without remembering its result, the per-entry sweeps and the log's own write), the
//! value codec on a post, and the reads a professional makes all day on a hub in RocksDB: her
//! patient list of 500 patients and a timeline's newest 50 posts.
//!
//! `cargo bench --workspace --bench apply` (figures in docs/benchmarks.md).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kizuna_domain::model::*;
use kizuna_domain::queries::{self, ListKind, TimelineOrder, TimelineQuery};
use kizuna_domain::{Command, Ctx, MemHub, Outcome, execute, settle};
use kizuna_store::{LogStore, MasterKey, MasterKeys, RocksHub, StateMachineStore, StateReader};
use rocksdb::{DB, WriteBatch};

/// ~200 bytes of a visiting nurse's note, as posts are.
const TEXT: &str = "本日訪問しました。SpO2 96%、血圧 132/84。食事量は半分程度、水分は摂れています。";
const PATIENTS: usize = 500;

/// Where commands go: the domain's memory hub, or RocksDB as the state machine writes it.
enum State {
    Memory(Box<MemHub>),
    Rocks(Box<Rocks>),
}

struct Rocks {
    db: Arc<DB>,
    reader: StateReader,
    _store: (LogStore, StateMachineStore),
    _dir: tempfile::TempDir,
}

struct Hub {
    state: State,
    index: u64,
    now: u64,
}

impl Hub {
    fn memory() -> Self {
        Self { state: State::Memory(Box::default()), index: 0, now: 1_000_000 }
    }

    /// A sealed store (encryption at rest on), its first data key taken up.
    fn rocks() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let masters = MasterKeys::new(MasterKey::from_secret(&[5; 32]), Vec::new());
        let (log, sm) = kizuna_store::open_sealed(dir.path(), masters).expect("open the store");
        let db = sm.reader().database().upgrade().expect("the store's database");
        let reader = sm.reader();
        let state = State::Rocks(Box::new(Rocks { db, reader, _store: (log, sm), _dir: dir }));
        Self { state, index: 0, now: 1_000_000 }
    }

    /// Decides and settles `cmd` as apply does; panics on a refusal (the set-up is fixed).
    fn run(&mut self, actor: Option<AccountId>, cmd: Command) -> Outcome {
        self.index += 1;
        self.now += 1000;
        let ctx = Ctx { log_index: self.index, now_ms: self.now };
        match &mut self.state {
            State::Memory(mem) => {
                let effects = execute(&**mem, ctx, actor, cmd).expect("accepted");
                settle(&mut **mem, self.now, effects).expect("readable").outcome
            }
            State::Rocks(rocks) => {
                let Rocks { db, reader, .. } = &**rocks;
                let mut hub = RocksHub::new(db, reader.vault());
                let effects = execute(&hub, ctx, actor, cmd).expect("accepted");
                let outcome = settle(&mut hub, self.now, effects).expect("readable").outcome;
                let mut batch = WriteBatch::default();
                hub.write_into(&mut batch).expect("a batch");
                db.write(batch).expect("write the batch");
                outcome
            }
        }
    }

    /// The RocksDB state as the API reads it.
    fn view(&self) -> RocksHub<'_> {
        match &self.state {
            State::Rocks(rocks) => RocksHub::new(&rocks.db, rocks.reader.vault()),
            State::Memory(_) => panic!("reads are measured on RocksDB"),
        }
    }
}

/// An operator, an approved clinic and one of its nurses; `patients` patients of hers, each
/// timeline with one post. Returns the nurse and the timelines.
fn world(hub: &mut Hub, patients: usize) -> (AccountId, Vec<RoomId>) {
    let account = |o: Outcome| match o {
        Outcome::Account(a) => a,
        o => panic!("{o:?}"),
    };
    let init =
        Command::InitOperator { login: "op".into(), display_name: "事務局".into(), password_hash: "h".into() };
    let op = account(hub.run(None, init));
    let register = Command::RegisterFacility {
        name: "宇都宮在宅クリニック".into(),
        kind: FacilityKind::Clinic,
        municipality: "宇都宮市".into(),
    };
    let Outcome::Facility(facility) = hub.run(Some(op), register) else { panic!("a facility") };
    hub.run(Some(op), Command::ApproveFacility { facility });
    let expires_at_ms = hub.now + 3_600_000;
    let invite = Command::IssueInvitation { facility, code_hash: "c".into(), expires_at_ms, as_admin: true };
    hub.run(Some(op), invite);
    let register = Command::Register {
        code_hash: "c".into(),
        login: "vn.suzuki".into(),
        display_name: "鈴木 看護師".into(),
        profession: Profession::Nurse,
        password_hash: "h".into(),
    };
    let nurse = account(hub.run(None, register));
    hub.run(Some(op), Command::ApproveAccount { account: nurse });
    let rooms = (0..patients)
        .map(|i| {
            let create = Command::CreatePatient {
                name: format!("患者 {i:04}"),
                kana: "かんじゃ".into(),
                birth_date: "1940-01-01".into(),
                address: "宇都宮市".into(),
                notes: String::new(),
            };
            let Outcome::Patient { timeline, .. } = hub.run(Some(nurse), create) else { panic!("a patient") };
            hub.run(Some(nurse), post(timeline));
            timeline
        })
        .collect();
    (nurse, rooms)
}

fn post(room: RoomId) -> Command {
    Command::Post { room, text: TEXT.into(), reply_to: None, mentions: vec![] }
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply a post");
    for (name, mut hub) in [("memory (domain only)", Hub::memory()), ("RocksDB, sealed", Hub::rocks())] {
        let (nurse, rooms) = world(&mut hub, 8);
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(hub.run(Some(nurse), post(rooms[i % rooms.len()])))
            })
        });
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let post = Post {
        room: RoomId(42),
        seq: 1234,
        author: AccountId(7),
        text: TEXT.into(),
        reply_to: None,
        mentions: vec![],
        posted_at_ms: 1_764_000_000_000,
        history: vec![],
        deleted: false,
        acks: vec![AccountId(8)],
    };
    let bytes = kizuna_store::codec::encode(&post).expect("encodes");
    c.bench_function("codec: encode a post", |b| b.iter(|| kizuna_store::codec::encode(black_box(&post))));
    c.bench_function("codec: decode a post", |b| {
        b.iter(|| kizuna_store::codec::decode::<Post>(black_box(&bytes)).expect("decodes"))
    });
}

fn reads(c: &mut Criterion) {
    let mut hub = Hub::rocks();
    let (nurse, rooms) = world(&mut hub, PATIENTS);
    for _ in 0..50 {
        hub.run(Some(nurse), post(rooms[0]));
    }
    let view = hub.view();
    let mut group = c.benchmark_group("reads, RocksDB, 500 patients");
    group.bench_function("patient list, all filled", |b| {
        b.iter(|| queries::room_list(&view, nurse, ListKind::Patients).expect("the list"))
    });
    group.bench_function("patient list, first page of 100 filled", |b| {
        b.iter(|| {
            let mut entries = queries::room_list_unfilled(&view, nurse, ListKind::Patients).expect("the list");
            for entry in entries.iter_mut().take(100) {
                queries::fill(&view, nurse, entry).expect("filled");
            }
            entries
        })
    });
    let newest = TimelineQuery { after_seq: 0, before_seq: 0, order: TimelineOrder::NewestFirst, limit: 50 };
    group.bench_function("timeline, newest 50", |b| {
        b.iter(|| queries::timeline(&view, nurse, rooms[0], newest).expect("the page"))
    });
    group.finish();
}

criterion_group!(benches, apply, codec, reads);
criterion_main!(benches);
