//! When a node snapshots its state: once `snapshot_after_entries` entries (or
//! [`LOG_BYTES_BEFORE_SNAPSHOT`] of log) were applied since its last snapshot, at indexes of its
//! own a third of a step apart from the other members' ([`phase_of`]). openraft's own
//! policy (entries only) is off, so entries of attached files' chunks do not pile up 100,000
//! deep.
//!
//! The default step is etcd's (`--snapshot-count` 100,000): at 20,000 a busy young hub built a
//! snapshot every few seconds, 8 % of its leader's CPU and the source of most commit-latency
//! stalls (docs/benchmarks.md, sessions 14 and 19). A snapshot used to rewrite the whole state
//! into a file, so a large hub also waited until the log was a quarter of what the last one
//! covered (the rewrites grew with the square of the hub's size otherwise). A snapshot is now a
//! checkpoint (`kizuna_store`'s `checkpoint.rs`: a flush and hard links), whose cost does not
//! grow with the state: the fixed step bounds the log behind it instead, 100,000 entries and
//! not a quarter of the hub's history (2,500,000 entries at 10,000,000 posts).
//!
//! A checkpoint's links keep the files compaction replaced after it was taken: on a 100,000-post
//! hub a follower's checkpoint held 91 MB of them, beside 124 MB of live tables
//! (docs/benchmarks.md, session 21). So a node also takes a new checkpoint once the files only
//! its checkpoint holds are more than [`HELD_SHARE_DIVISOR`]-th of it: a flush and links, which
//! lets the replaced files go — but not before the checkpoint is [`HELD_MIN_AGE`] old: on a
//! young hub under load compaction replaced a quarter of a new checkpoint's files within
//! seconds, and the rule took a checkpoint every few seconds beside the step's, each a flush of
//! every family that writes stalled behind (docs/benchmarks.md, session 33).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::warn;

use kizuna_store::{LogGrowth, SnapshotDisk};

use crate::node::Node;

/// How often a node looks whether a snapshot is due.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A new checkpoint is due once the files only the current one holds are more than this share
/// of its bytes ...
const HELD_SHARE_DIVISOR: u64 = 4;
/// ... and more than this: a small hub's few replaced files are not worth a flush.
const HELD_BYTES_MIN: u64 = 16 << 20;
/// ... and only once it is this old: held files cost disk for a while, a flush costs the writes
/// at once.
const HELD_MIN_AGE: Duration = Duration::from_secs(60);
/// Checks of the log between two looks at the checkpoint's files (it lists them).
const CHECKS_PER_DISK_LOOK: u64 = 10;

/// Log appended since the last snapshot that makes the next one due before its step of
/// entries: two thousand 128 KiB chunks.
pub const LOG_BYTES_BEFORE_SNAPSHOT: u64 = 256 << 20;

/// What a node's log holds beyond its last snapshot.
#[derive(Debug, Clone, Copy)]
pub struct LogSince {
    /// The index the last snapshot covers (0: none).
    pub snapshot_index: u64,
    /// The index applied up to.
    pub applied_index: u64,
    /// The stored bytes appended since the snapshot was triggered here (since this node's
    /// first check, for a snapshot made before it started or installed from the leader).
    pub bytes: u64,
}

/// Whether a node should snapshot now, with a step of `every_entries` entries taken at indexes
/// `phase` past each multiple of the step (see [`phase_of`]).
pub fn snapshot_due(log: LogSince, every_entries: u64, phase: u64) -> bool {
    let applied_since = log.applied_index > log.snapshot_index;
    let step_reached = log.applied_index >= next_step(log.snapshot_index, every_entries, phase);
    applied_since && (step_reached || log.bytes >= LOG_BYTES_BEFORE_SNAPSHOT)
}

/// The first index of this node's steps after `snapshot_index`: `phase` past a multiple of the
/// step. Fixed to the index, not to the last snapshot, so the check's lag does not move it.
fn next_step(snapshot_index: u64, every_entries: u64, phase: u64) -> u64 {
    let every = every_entries.max(1);
    let phase = phase % every;
    match snapshot_index.checked_sub(phase) {
        None => phase,
        Some(past) => snapshot_index - past % every + every,
    }
}

/// Where in each step node `id` takes its snapshot: the members a third of a step apart. All of
/// them apply the same index at about the same moment, and a checkpoint's flush stalls its
/// node's writes: at one index all three stalled at once and a write waited 225 ms for two of
/// them (docs/benchmarks.md, session 33). With three members numbered 1–3 no two flush at once;
/// members whose ids share a remainder by 3 (a larger hub) share a phase.
pub fn phase_of(id: u64, every_entries: u64) -> u64 {
    (id % 3) * (every_entries / 3)
}

/// Whether the current checkpoint, taken `age` ago, holds so many replaced files that a new one
/// should take its place.
pub fn checkpoint_stale(disk: SnapshotDisk, age: Duration) -> bool {
    age >= HELD_MIN_AGE && disk.only_here > HELD_BYTES_MIN && disk.only_here * HELD_SHARE_DIVISOR > disk.bytes
}

/// Whether this node's checkpoint, seen `age` ago, is [`checkpoint_stale`]; a listing that
/// fails is logged and taken as not stale (the step of entries still applies).
async fn checkpoint_is_stale(node: &Node, age: Duration) -> bool {
    let state = node.state.clone();
    match tokio::task::spawn_blocking(move || state.snapshot_disk()).await {
        Ok(Ok(disk)) => disk.is_some_and(|disk| checkpoint_stale(disk, age)),
        Ok(Err(e)) => {
            warn!("listing this node's checkpoint: {e}");
            false
        }
        Err(e) => {
            warn!("listing this node's checkpoint: {e}");
            false
        }
    }
}

/// Triggers this node's snapshots by [`snapshot_due`] until `stopped`; `growth` counts what
/// its log store appends.
pub async fn run(node: Arc<Node>, every_entries: u64, growth: LogGrowth, mut stopped: watch::Receiver<bool>) {
    let phase = phase_of(node.id, every_entries);
    // The log's size when the last snapshot was triggered (appends during its build count
    // towards the next), or when a snapshot appeared that this loop did not trigger.
    let (mut seen_snapshot, mut bytes_then, mut bytes_at_trigger) = (None, 0, None);
    // When this loop first saw the current snapshot: its age for the held-files rule.
    let mut seen_at = Instant::now();
    let mut checks = 0u64;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let m = node.metrics();
        let snapshot_index = m.snapshot.map_or(0, |l| l.index);
        if seen_snapshot != Some(snapshot_index) {
            let baseline = bytes_at_trigger.take().unwrap_or_else(|| growth.bytes());
            (seen_snapshot, bytes_then, seen_at) = (Some(snapshot_index), baseline, Instant::now());
        }
        let applied_index = m.last_applied.map_or(0, |l| l.index);
        let log = LogSince { snapshot_index, applied_index, bytes: growth.bytes().saturating_sub(bytes_then) };
        checks += 1;
        let stale = checks.is_multiple_of(CHECKS_PER_DISK_LOOK) && checkpoint_is_stale(&node, seen_at.elapsed()).await;
        if !snapshot_due(log, every_entries, phase) && !stale {
            continue;
        }
        // A build already under way makes this a no-op; the next check sees its result. The
        // first trigger of a build sets its baseline.
        bytes_at_trigger.get_or_insert(growth.bytes());
        if let Err(e) = node.raft.trigger().snapshot().await {
            warn!("triggering a snapshot: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(snapshot_index: u64, applied_index: u64, every_entries: u64) -> bool {
        snapshot_due(LogSince { snapshot_index, applied_index, bytes: 0 }, every_entries, 0)
    }

    #[test]
    fn the_members_snapshot_a_third_of_a_step_apart_and_stay_so() {
        let due = |snapshot_index, applied_index, id| {
            snapshot_due(LogSince { snapshot_index, applied_index, bytes: 0 }, 90_000, phase_of(id, 90_000))
        };
        assert_eq!([1, 2, 3].map(|id| phase_of(id, 90_000)), [30_000, 60_000, 0]);
        assert!(due(0, 30_000, 1) && !due(0, 30_000, 2) && !due(0, 30_000, 3), "node 1 first");
        assert!(!due(0, 59_999, 2) && due(0, 60_000, 2));
        assert!(!due(0, 89_999, 3) && due(0, 90_000, 3));
        // A snapshot taken late (the check runs once a second) does not move the next one.
        assert!(!due(34_000, 119_999, 1) && due(34_000, 120_000, 1));
        assert!(due(9_030_000, 9_120_000, 1) && !due(9_030_000, 9_119_999, 1));
        // A snapshot installed from the leader at any index: the next of this node's steps.
        assert!(!due(100_000, 119_999, 1) && due(100_000, 120_000, 1));
    }

    #[test]
    fn a_log_snapshots_every_so_many_entries_however_long_the_history() {
        assert!(!due(0, 19_999, 20_000));
        assert!(due(0, 20_000, 20_000), "the first snapshot");
        assert!(due(20_000, 40_000, 20_000), "the fixed step");
        assert!(due(9_000_000, 9_020_000, 20_000), "the same step on a long history");
        assert!(!due(9_000_000, 9_019_999, 20_000));
        assert!(!due(50, 40, 20_000), "a snapshot ahead of apply (just installed)");
    }

    #[test]
    fn a_log_of_large_entries_snapshots_by_its_bytes() {
        let log = |snapshot_index, applied_index, bytes| LogSince { snapshot_index, applied_index, bytes };
        let full = LOG_BYTES_BEFORE_SNAPSHOT;
        assert!(!snapshot_due(log(1_000, 3_000, full - 1), 100_000, 0), "few entries, below the bytes");
        assert!(snapshot_due(log(1_000, 3_000, full), 100_000, 0), "few entries of attached files");
        assert!(snapshot_due(log(1_000_000, 1_010_000, full), 100_000, 0), "also on a long history");
        assert!(!snapshot_due(log(3_000, 3_000, full), 100_000, 0), "nothing applied since");
    }

    #[test]
    fn a_checkpoint_holding_many_replaced_files_is_stale() {
        let stale = |bytes: u64, only_here: u64| {
            checkpoint_stale(SnapshotDisk { bytes: bytes << 20, only_here: only_here << 20 }, HELD_MIN_AGE)
        };
        assert!(stale(200, 91), "the follower of the 100,000-post run");
        assert!(!stale(200, 40), "a fifth is not enough");
        assert!(stale(200, 51), "over a quarter is");
        assert!(!stale(40, 15), "a small hub's few files");
        assert!(!stale(200, 0), "just taken");
    }

    #[test]
    fn a_young_checkpoint_is_not_replaced_for_its_held_files() {
        let disk = SnapshotDisk { bytes: 200 << 20, only_here: 91 << 20 };
        assert!(!checkpoint_stale(disk, Duration::from_secs(7)), "seconds after it was taken");
        assert!(!checkpoint_stale(disk, HELD_MIN_AGE - Duration::from_millis(1)));
        assert!(checkpoint_stale(disk, HELD_MIN_AGE));
    }
}
