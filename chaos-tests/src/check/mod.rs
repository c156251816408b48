//! Checkers over the history and the final state of every node. Each counts; any violation
//! fails the run.
//!
//! 1. no acknowledged post is lost; 2. none is applied twice; 3. every node holds the same
//! timelines, and a post acknowledged before another was sent has the lower sequence;
//! 4. timeline reads are linearizable ([`linearizable`]); 5. subscribers get every post of
//! their rooms exactly once, in order, across reconnects; 6. after healing every node reports
//! the same state digest at the same applied index.

pub mod linearizable;
mod posts;
mod subscribers;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::workload::reader::ReadOp;
use crate::workload::subscriber::Received;
use crate::workload::writer::PostOp;

pub use posts::percentile;

/// Every room's timeline as one node holds it: (seq, text), oldest first.
pub type Timelines = BTreeMap<u64, Vec<(u64, String)>>;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Findings {
    pub posts_acknowledged: usize,
    pub posts_unknown: usize,
    /// Unknown posts that turned out to be applied (allowed: the client just never heard).
    pub unknown_applied: usize,
    /// Checker 1: acknowledged posts missing from the final timelines, or at another sequence.
    pub lost: Vec<String>,
    /// Checker 2: posts present more than once.
    pub duplicated: Vec<String>,
    /// Posts in the timelines that no writer ever sent.
    pub phantom: Vec<String>,
    /// Checker 3: rooms whose timeline differs between nodes, and real-time order violations.
    pub divergent_rooms: Vec<u64>,
    pub reordered: usize,
    /// Checker 4.
    pub reads_linearizable: usize,
    pub reads_stale: usize,
    pub reads_truncated: usize,
    pub read_violations: Vec<String>,
    /// Checker 5.
    pub subscriber_events: usize,
    pub subscriber_connections: u64,
    pub subscriber_violations: Vec<String>,
    /// Checker 6: (applied index, digest) per node, and whether they differ.
    pub digests: Vec<(u64, String)>,
    pub digest_mismatch: bool,
    /// Availability: the longest time no post was acknowledged; durations of retried posts.
    pub max_unavailable_ms: u64,
    pub retried_p50_ms: u64,
    pub retried_p99_ms: u64,
}

impl Findings {
    pub fn violations(&self) -> usize {
        self.lost.len()
            + self.duplicated.len()
            + self.phantom.len()
            + self.divergent_rooms.len()
            + self.reordered
            + self.read_violations.len()
            + self.subscriber_violations.len()
            + usize::from(self.digest_mismatch)
    }
}

/// The history of one run.
#[derive(Debug, Default)]
pub struct History {
    pub posts: Vec<PostOp>,
    pub reads: Vec<ReadOp>,
    pub subscribers: Vec<Received>,
}

/// Runs every checker. `nodes` holds each node's timelines; `digests` each node's state digest.
pub fn check(history: &History, nodes: &[Timelines], digests: Vec<(u64, String)>) -> Findings {
    let mut f = Findings::default();
    let Some(reference) = nodes.first() else { return f };
    for (room, timeline) in reference {
        if nodes.iter().any(|n| n.get(room) != Some(timeline)) {
            f.divergent_rooms.push(*room);
        }
    }
    posts::check(&history.posts, reference, &mut f);
    posts::check_reads(&history.posts, &history.reads, reference, &mut f);
    subscribers::check(&history.subscribers, reference, &mut f);
    f.digest_mismatch = digests.windows(2).any(|w| w[0] != w[1]);
    f.digests = digests;
    f
}

/// For each fault window (start, end of its effects), how long writes were unavailable: from
/// the fault's start (or the last acknowledgement before it, if later) to the first post
/// acknowledged after the longest silence inside the window.
pub fn unavailability(posts: &[PostOp], windows: &[(u64, u64)]) -> Vec<u64> {
    let mut acked: Vec<u64> = posts
        .iter()
        .filter(|p| matches!(p.outcome, crate::workload::writer::Outcome::Ok { .. }))
        .map(|p| p.completed_ms)
        .collect();
    acked.sort_unstable();
    windows
        .iter()
        .map(|&(start, end)| {
            let inside: Vec<u64> = acked.iter().copied().filter(|t| *t >= start && *t <= end).collect();
            let mut longest = 0;
            let mut previous = start;
            for t in inside.iter().copied().chain([end]) {
                longest = longest.max(t - previous);
                previous = t;
            }
            longest
        })
        .collect()
}
