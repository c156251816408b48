//! Where a post's disk goes: posts applied into a sealed RocksDB as apply writes them (the
//! post, its search-index entry, its live event, its audit entry), then flushed and fully
//! compacted, then counted per table (bytes as stored, before compression) and on disk (the
//! compressed sorted tables). Not timed: it prints figures (docs/benchmarks.md, "Disk per post").
//!
//! `cargo bench --workspace --bench disk` (`KIZUNA_DISK_POSTS`, default 20,000, over 500
//! patients' timelines). The Raft log and the remembered request results are not in it: the
//! log is purged after each snapshot and results are forgotten after a day.

mod fixture;

use fixture::{Hub, PATIENTS, State, note, world};
use kizuna_domain::Command;

fn main() {
    let posts: u64 = std::env::var("KIZUNA_DISK_POSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut hub = Hub::rocks();
    let (nurse, rooms) = world(&mut hub, PATIENTS);
    let mut text_bytes = 0u64;
    for i in 0..posts {
        let text = note(i);
        text_bytes += text.len() as u64;
        let room = rooms[(i % rooms.len() as u64) as usize];
        hub.run(Some(nurse), Command::Post { room, text, reply_to: None, mentions: vec![] });
    }
    let State::Rocks(rocks) = &hub.state else { unreachable!("Hub::rocks") };
    let (db, reader) = (&rocks.db, &rocks.reader);
    let mut on_disk = 0;
    for family in kizuna_store::STATE_FAMILIES {
        let family = db.cf_handle(family).expect("the state's column families");
        db.flush_cf(&family).expect("flushed");
        db.compact_range_cf::<&[u8], &[u8]>(&family, None, None);
        let property = |name: &str| db.property_int_value_cf(&family, name).ok().flatten().unwrap_or(0);
        on_disk += property("rocksdb.total-sst-files-size") + property("rocksdb.live-blob-file-size");
    }
    let posted = posts + PATIENTS as u64; // the world's one post per timeline
    println!("{posts} posts of {} bytes on average over {} timelines", text_bytes / posts.max(1), rooms.len());
    println!("| table | entries | per post | bytes as stored (keys + values) | per post |");
    println!("|---|---:|---:|---:|---:|");
    let mut stored = 0;
    for t in reader.space_by_table().expect("the state read") {
        let bytes = t.key_bytes + t.value_bytes;
        stored += bytes;
        let (per, bytes_per) = (t.entries as f64 / posted as f64, bytes as f64 / posted as f64);
        println!("| {} | {} | {per:.2} | {bytes} | {bytes_per:.0} B |", t.table, t.entries);
    }
    println!("| all, as stored | | | {stored} | {:.0} B |", stored as f64 / posted as f64);
    println!("| all, on disk (compacted, LZ4) | | | {on_disk} | {:.0} B |", on_disk as f64 / posted as f64);
}
