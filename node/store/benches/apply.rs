//! criterion micro-benchmarks of what a node does per command and per read, without Raft or
//! gRPC: a post decided and settled in memory (the domain alone) and into RocksDB (the domain,
//! the store's keys and indexes, sealing, one write batch — the command's part of an apply,
//! without remembering its result, the per-entry sweeps and the log's own write), the
//! value codec on a post, and the reads a professional makes all day on a hub in RocksDB: her
//! patient list of 500 patients and a timeline's newest 50 posts; and her search of their posts.
//!
//! `cargo bench --workspace --bench apply` (figures in docs/benchmarks.md).

mod fixture;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fixture::{Hub, PATIENTS, TEXT, note, post, world};
use kizuna_domain::Command;
use kizuna_domain::model::*;
use kizuna_domain::queries::{self, ListKind, TimelineOrder, TimelineQuery};

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
    let mut group = c.benchmark_group("reads, RocksDB, 500 patients");
    // The same list on a hub that wrote its memberships before apply version 8 (their index
    // entries empty: each is read again from its room).
    let mut before = Hub::rocks_at(7);
    let (nurse, _) = world(&mut before, PATIENTS);
    let view = before.view();
    group.bench_function("patient list, first page of 100 filled, memberships of apply version 7", |b| {
        b.iter(|| first_page(&view, nurse))
    });
    let mut hub = Hub::rocks();
    let (nurse, rooms) = world(&mut hub, PATIENTS);
    for _ in 0..50 {
        hub.run(Some(nurse), post(rooms[0]));
    }
    let view = hub.view();
    group.bench_function("patient list, all filled", |b| {
        b.iter(|| queries::room_list(&view, nurse, ListKind::Patients).expect("the list"))
    });
    group.bench_function("patient list, first page of 100 filled", |b| b.iter(|| first_page(&view, nurse)));
    let newest = TimelineQuery { after_seq: 0, before_seq: 0, order: TimelineOrder::NewestFirst, limit: 50 };
    group.bench_function("timeline, newest 50", |b| {
        b.iter(|| queries::timeline(&view, nurse, rooms[0], newest).expect("the page"))
    });
    group.finish();
}

/// The patient list as the API serves its first page: the whole list sorted, 100 entries filled.
fn first_page(view: &kizuna_store::RocksHub<'_>, nurse: AccountId) -> Vec<queries::RoomSummary> {
    let mut list = queries::room_list_unfilled(view, nurse, ListKind::Patients).expect("the list");
    let page = list.entries.len().min(100);
    queries::fill(view, nurse, &mut list.entries[..page], &list.rooms).expect("filled");
    list.entries
}

/// Posts per patient in [`search`]: a prefecture's 10,000,000 posts over 50,000 patients.
const POSTS_PER_PATIENT: usize = 200;

/// A search by the nurse of 500 patients with 200 posts each, on a hub that indexed them an
/// entry per bigram (apply version 8) and on one with a filter per post (this build's).
fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search, RocksDB, 500 patients of 200 posts");
    group.sample_size(10);
    for (name, version) in [("an entry per bigram (8)", 8), ("a filter per post", kizuna_domain::APPLY_VERSION)] {
        let mut hub = Hub::rocks_at(version);
        let (nurse, rooms) = world(&mut hub, PATIENTS);
        for i in 0..(PATIENTS * POSTS_PER_PATIENT) as u64 {
            let room = rooms[i as usize % rooms.len()];
            hub.run(Some(nurse), Command::Post { room, text: note(i), reply_to: None, mentions: vec![] });
        }
        let view = hub.view();
        group.bench_function(format!("{name}: a word in no post"), |b| {
            b.iter(|| kizuna_domain::search::posts(&view, nurse, "胃ろう", 50).expect("searched"))
        });
        group.bench_function(format!("{name}: a phrase in about a quarter of the posts"), |b| {
            b.iter(|| kizuna_domain::search::posts(&view, nurse, "褥瘡は仙骨部", 50).expect("searched"))
        });
    }
    group.finish();
}

criterion_group!(benches, apply, codec, reads, search);
criterion_main!(benches);
