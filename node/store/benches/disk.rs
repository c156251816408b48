//! Where a post's disk goes: posts applied into a sealed RocksDB as apply writes them (the
//! post, its search-index entries, its live event, its audit entry), then flushed and fully
//! compacted, then counted per table (bytes as stored, before compression) and on disk (the
//! compressed sorted tables). Not timed: it prints figures (docs/benchmarks.md, "Disk per post").
//!
//! `cargo bench --workspace --bench disk` (`KIZUNA_DISK_POSTS`, default 20,000, over 500
//! patients' timelines). The Raft log and the remembered request results are not in it: the
//! log is purged after each snapshot and results are forgotten after a day.

mod fixture;

use fixture::{Hub, PATIENTS, State, world};
use kizuna_domain::Command;

/// Sentences of visiting nurses' and doctors' notes; a post strings three of them together with
/// its own figures, so texts vary as real ones do (the search index holds each distinct pair of
/// characters of a text).
const SENTENCES: &[&str] = &[
    "本日訪問しました。",
    "バイタル安定しています。",
    "食事量は半分程度、水分は摂れています。",
    "夜間の不穏が続いているとご家族より相談あり。",
    "褥瘡は仙骨部に発赤のみ、悪化なし。",
    "服薬カレンダーの飲み忘れが二回ありました。",
    "入浴介助を実施、皮膚状態に変化なし。",
    "訪問リハビリで歩行訓練、屋内は見守りで可能。",
    "主治医へ報告済み、次回往診で確認予定です。",
    "ケアマネジャーと担当者会議の日程を調整中。",
    "排便は三日ぶりにあり、腹部の張りは軽減。",
    "酸素は安静時一リットルで経過観察。",
    "ご本人より痛みの訴えあり、頓服を使用しました。",
    "薬剤師より残薬の報告、処方日数の調整を依頼。",
    "ショートステイ利用中の様子を施設に確認しました。",
    "家族の介護負担が大きく、サービス追加を検討。",
];

fn text(i: u64) -> String {
    let pick =
        |k: u64| SENTENCES[(i.wrapping_mul(2_654_435_761).rotate_left(k as u32 * 7) % SENTENCES.len() as u64) as usize];
    format!(
        "{}SpO2 {}%、血圧 {}/{}、体温 {}.{}度。{}{}{}",
        pick(1),
        90 + i % 9,
        110 + i % 40,
        60 + i % 30,
        36 + i % 2,
        i % 10,
        pick(2),
        pick(3),
        pick(4)
    )
}

fn main() {
    let posts: u64 = std::env::var("KIZUNA_DISK_POSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut hub = Hub::rocks();
    let (nurse, rooms) = world(&mut hub, PATIENTS);
    let mut text_bytes = 0u64;
    for i in 0..posts {
        let text = text(i);
        text_bytes += text.len() as u64;
        let room = rooms[(i % rooms.len() as u64) as usize];
        hub.run(Some(nurse), Command::Post { room, text, reply_to: None, mentions: vec![] });
    }
    let State::Rocks(rocks) = &hub.state else { unreachable!("Hub::rocks") };
    let (db, reader) = (&rocks.db, &rocks.reader);
    let data = db.cf_handle("sm_data").expect("the state's column family");
    db.flush_cf(&data).expect("flushed");
    db.compact_range_cf::<&[u8], &[u8]>(&data, None, None);
    let property = |name: &str| db.property_int_value_cf(&data, name).ok().flatten().unwrap_or(0);
    let on_disk = property("rocksdb.total-sst-files-size") + property("rocksdb.live-blob-file-size");
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
