//! When a node snapshots its state: once `snapshot_after_entries` entries (or
//! [`LOG_BYTES_BEFORE_SNAPSHOT`] of log) were applied since its last snapshot. openraft's own
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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use kizuna_store::LogGrowth;

use crate::node::Node;

/// How often a node looks whether a snapshot is due.
const CHECK_EVERY: Duration = Duration::from_secs(1);

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

/// Whether a node should snapshot now, with a step of `every_entries` entries.
pub fn snapshot_due(log: LogSince, every_entries: u64) -> bool {
    let since = log.applied_index.saturating_sub(log.snapshot_index);
    since >= every_entries.max(1) || (since > 0 && log.bytes >= LOG_BYTES_BEFORE_SNAPSHOT)
}

/// Triggers this node's snapshots by [`snapshot_due`] until `stopped`; `growth` counts what
/// its log store appends.
pub async fn run(node: Arc<Node>, every_entries: u64, growth: LogGrowth, mut stopped: watch::Receiver<bool>) {
    // The log's size when the last snapshot was triggered (appends during its build count
    // towards the next), or when a snapshot appeared that this loop did not trigger.
    let (mut seen_snapshot, mut bytes_then, mut bytes_at_trigger) = (None, 0, None);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let m = node.metrics();
        let snapshot_index = m.snapshot.map_or(0, |l| l.index);
        if seen_snapshot != Some(snapshot_index) {
            let baseline = bytes_at_trigger.take().unwrap_or_else(|| growth.bytes());
            (seen_snapshot, bytes_then) = (Some(snapshot_index), baseline);
        }
        let applied_index = m.last_applied.map_or(0, |l| l.index);
        let log = LogSince { snapshot_index, applied_index, bytes: growth.bytes().saturating_sub(bytes_then) };
        if !snapshot_due(log, every_entries) {
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
        snapshot_due(LogSince { snapshot_index, applied_index, bytes: 0 }, every_entries)
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
        assert!(!snapshot_due(log(1_000, 3_000, full - 1), 100_000), "few entries, below the bytes");
        assert!(snapshot_due(log(1_000, 3_000, full), 100_000), "few entries of attached files");
        assert!(snapshot_due(log(1_000_000, 1_010_000, full), 100_000), "also on a long history");
        assert!(!snapshot_due(log(3_000, 3_000, full), 100_000), "nothing applied since");
    }
}
