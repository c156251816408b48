//! What a snapshot costs per pair of the state: a sealed store filled with posts as apply
//! writes them (the post, its search-index entries, its live event, its audit entry), its
//! checkpoint exported to a snapshot file (the leader's side of a new node's catch-up), and
//! that file installed into a second store (the new node's side). Prints figures
//! (docs/benchmarks.md). The export runs below the process's priority, not paced: on an idle
//! machine its wall time is its work (until session 26 it was paced, and its thread's CPU
//! time was measured instead).
//!
//! `cargo bench -p kizuna-store --bench snapshot` (`KIZUNA_SNAPSHOT_POSTS`, default 20,000).

mod fixture;

use std::time::{Duration, Instant};

use fixture::{Hub, PATIENTS, note, world};
use kizuna_domain::Command;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

/// Best of this many exports and installs.
const ROUNDS: usize = 3;

fn main() {
    let posts: u64 = std::env::var("KIZUNA_SNAPSHOT_POSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let mut hub = Hub::rocks();
    let (nurse, rooms) = world(&mut hub, PATIENTS);
    for i in 0..posts {
        let room = rooms[(i % rooms.len() as u64) as usize];
        hub.run(Some(nurse), Command::Post { room, text: note(i), reply_to: None, mentions: vec![] });
    }
    let pairs = hub.state_machine().reader().state_digest().expect("the state read").entries;
    let scratch = tempfile::tempdir().expect("temp dir");
    let (mut export_wall, mut install_wall) = (Duration::MAX, Duration::MAX);
    let mut file_bytes = 0;
    for round in 0..ROUNDS {
        // A checkpoint keeps its export: each round takes a new checkpoint to export afresh.
        let snapshot = checkpoint(&runtime, &mut hub);
        let started = Instant::now();
        let export = snapshot.snapshot.streamable().expect("the export");
        export_wall = export_wall.min(started.elapsed());
        file_bytes = std::fs::metadata(&export).expect("the export's size").len();
        let received = scratch.path().join(format!("received-{round}.snap"));
        std::fs::copy(&export, &received).expect("a copy to install");
        let mut new_node = Hub::rocks();
        let file = kizuna_store::SnapshotFile { path: received };
        let started = Instant::now();
        runtime.block_on(new_node.state_machine().install_snapshot(&snapshot.meta, file)).expect("installed");
        install_wall = install_wall.min(started.elapsed());
    }
    let per_pair = |d: Duration| d.as_secs_f64() * 1e6 / pairs as f64;
    println!("{posts} posts, {pairs} pairs in the state, export file {file_bytes} bytes (best of {ROUNDS})");
    println!("| step | total | per pair |");
    println!("|---|---:|---:|");
    println!("| export (wall) | {:.3} s | {:.3} µs |", export_wall.as_secs_f64(), per_pair(export_wall));
    println!("| install (wall) | {:.3} s | {:.3} µs |", install_wall.as_secs_f64(), per_pair(install_wall));
}

/// A checkpoint of `hub`'s state, as a node takes its snapshot.
fn checkpoint(runtime: &tokio::runtime::Runtime, hub: &mut Hub) -> kizuna_store::raft::Snapshot {
    let build = async { hub.state_machine().get_snapshot_builder().await.build_snapshot().await };
    runtime.block_on(build).expect("a checkpoint")
}
