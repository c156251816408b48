//! When a node snapshots its state. openraft's own policy (a snapshot every N entries) is off:
//! a snapshot rewrites the whole state, so at a fixed N a filled hub rebuilt a file of hundreds
//! of MB every half minute while it was written to (docs/benchmarks.md, "A sealed hub at 1/20
//! of a prefecture") — work that grows with the square of the hub's size. Here a node snapshots
//! once at least `snapshot_after_entries` entries were applied since its last snapshot **and**
//! they are at least a quarter of the entries that snapshot covered. The snapshots then come
//! at 1.25× steps of the log (a 10,000,000-entry hub builds ~28 of them from its first entry
//! on, not 500), all of them together cost about five times the last one, and the log behind a
//! snapshot stays under about a quarter of the hub's history. Entries stand in for the state's
//! size: each adds to the state, and what the state forgets (sessions, idempotency keys, events
//! after their time) only makes the snapshots smaller.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::node::Node;

/// How often a node looks whether a snapshot is due.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The log since the last snapshot must be at least this share of the entries it covered.
const GROWTH_DIVISOR: u64 = 4;

/// Whether a node whose last snapshot covers the log up to `snapshot_index` (0: none) and that
/// applied up to `applied_index` should snapshot now.
pub fn snapshot_due(snapshot_index: u64, applied_index: u64, every_entries: u64) -> bool {
    let since = applied_index.saturating_sub(snapshot_index);
    since >= every_entries.max(1) && since >= snapshot_index / GROWTH_DIVISOR
}

/// Triggers this node's snapshots by [`snapshot_due`] until `stopped`.
pub async fn run(node: Arc<Node>, every_entries: u64, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let m = node.metrics();
        let (snapshot, applied) = (m.snapshot.map_or(0, |l| l.index), m.last_applied.map_or(0, |l| l.index));
        if !snapshot_due(snapshot, applied, every_entries) {
            continue;
        }
        // A build already under way makes this a no-op; the next check sees its result.
        if let Err(e) = node.raft.trigger().snapshot().await {
            warn!("triggering a snapshot: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_log_snapshots_every_so_many_entries_and_a_large_one_when_it_grew_a_quarter() {
        assert!(!snapshot_due(0, 19_999, 20_000));
        assert!(snapshot_due(0, 20_000, 20_000), "the first snapshot");
        assert!(snapshot_due(20_000, 40_000, 20_000), "small: the fixed step");
        assert!(!snapshot_due(1_000_000, 1_200_000, 20_000), "large: 20 % is not enough");
        assert!(snapshot_due(1_000_000, 1_250_000, 20_000), "large: a quarter is");
        assert!(!snapshot_due(50, 40, 20_000), "a snapshot ahead of apply (just installed)");
    }

    #[test]
    fn a_hub_of_ten_million_entries_snapshots_a_few_dozen_times() {
        let (mut last, mut builds, mut rewritten) = (0u64, 0u64, 0u64);
        for applied in (0..=10_000_000u64).step_by(1_000) {
            if snapshot_due(last, applied, 20_000) {
                (last, builds, rewritten) = (applied, builds + 1, rewritten + applied);
            }
        }
        assert!((20..=40).contains(&builds), "{builds} snapshots");
        assert!(rewritten < 6 * last, "all snapshots together: {rewritten} entries, the last {last}");
    }
}
