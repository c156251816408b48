//! Checkers over the history and the final state of every node. Each counts; any violation
//! fails the run.
//!
//! 1. No acknowledged post is lost.
//! 2. None is applied twice.
//! 3. Every node holds the same timelines, and a post acknowledged before another was sent
//!    has the lower sequence.
//! 4. Timeline reads are linearizable ([`linearizable`]).
//! 5. Subscribers get every post of their rooms exactly once, in order, across reconnects.
//! 6. After healing every node reports the same state digest at the same applied index.
//! 7. Every safety check and facility status a node accepted, also one cut off from the quorum,
//!    is applied exactly once on every node and merged by the latest observation
//!    ([`observations`]).

pub mod federated;
pub mod linearizable;
pub mod observations;
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
    /// Starts of a node whose state on disk was behind its log, so that it re-applied entries
    /// (counted from the node logs): a node killed before a flush wrote what it had applied.
    /// The digests above then prove the re-applied state equal to the others'.
    pub starts_reapplying: usize,
    /// Availability: the longest time no post was acknowledged; durations of retried posts.
    pub max_unavailable_ms: u64,
    pub retried_p50_ms: u64,
    pub retried_p99_ms: u64,
    /// Checker 7: safety checks and facility statuses applied when answered, accepted as
    /// pending, never answered.
    pub checks_applied: usize,
    pub checks_pending: usize,
    pub checks_unknown: usize,
    pub check_violations: Vec<String>,
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
            + self.check_violations.len()
    }
}

/// The history of one run.
#[derive(Debug, Default)]
pub struct History {
    pub posts: Vec<PostOp>,
    pub reads: Vec<ReadOp>,
    pub subscribers: Vec<Received>,
    /// Safety checks recorded (disaster mode).
    pub checks: Vec<crate::workload::observer::CheckOp>,
}

/// Runs every checker. `nodes` holds each node's timelines; `checks` each node's safety checks
/// (none for runs without them); `digests` each node's state digest.
pub fn check(
    history: &History,
    nodes: &[Timelines],
    checks: &[observations::NodeChecks],
    digests: Vec<(u64, String)>,
) -> Findings {
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
    observations::check(&history.checks, checks, &mut f);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::writer::Outcome;

    fn post(text: &str, room: u64, invoked_ms: u64, completed_ms: u64, outcome: Outcome) -> PostOp {
        PostOp {
            writer: 0,
            room,
            text: text.into(),
            idempotency_key: format!("r-{text}"),
            invoked_ms,
            completed_ms,
            attempts: 1,
            outcome,
        }
    }

    fn timelines(room: u64, texts: &[&str]) -> Timelines {
        let t = texts.iter().enumerate().map(|(i, s)| (i as u64 + 1, (*s).to_owned())).collect();
        Timelines::from([(room, t)])
    }

    fn read(room: u64, invoked_ms: u64, completed_ms: u64, posts: &[(u64, &str)], stale: bool) -> ReadOp {
        ReadOp {
            reader: 0,
            room,
            node: 0,
            invoked_ms,
            completed_ms,
            after_seq: 0,
            posts: posts.iter().map(|(s, t)| (*s, (*t).to_owned())).collect(),
            truncated: false,
            stale,
        }
    }

    fn history() -> History {
        History {
            posts: vec![
                post("a", 1, 0, 10, Outcome::Ok { seq: 1 }),
                post("b", 1, 20, 30, Outcome::Ok { seq: 2 }),
                post("c", 1, 40, 9_000, Outcome::Unknown),
            ],
            reads: vec![read(1, 12, 15, &[(1, "a")], false), read(1, 35, 45, &[(1, "a"), (2, "b")], false)],
            subscribers: vec![Received {
                posted: vec![(5, 1, 1), (6, 1, 2), (9, 1, 3)],
                connections: 2,
                ..Default::default()
            }],
            checks: Vec::new(),
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let nodes = [timelines(1, &["a", "b", "c"]), timelines(1, &["a", "b", "c"])];
        let f = check(&history(), &nodes, &[], vec![(9, "x".into()), (9, "x".into())]);
        assert_eq!(f.violations(), 0, "{f:?}");
        assert_eq!((f.posts_acknowledged, f.posts_unknown, f.unknown_applied), (2, 1, 1));
        assert_eq!(f.reads_linearizable, 2);
    }

    #[test]
    fn every_kind_of_damage_is_counted() {
        // "b" lost, "a" twice (so no longer where it was acknowledged), a post nobody sent, the
        // nodes disagree, digests differ.
        let nodes = [timelines(1, &["a", "a", "zz"]), timelines(1, &["a"])];
        let f = check(&history(), &nodes, &[], vec![(9, "x".into()), (9, "y".into())]);
        assert_eq!(f.lost.len(), 2, "{f:?}");
        assert_eq!(f.duplicated.len(), 1, "{f:?}");
        assert_eq!(f.phantom.len(), 1, "{f:?}");
        assert_eq!(f.divergent_rooms, vec![1]);
        assert!(f.digest_mismatch);
        // The second read saw "b" where the final timeline has "a".
        assert!(!f.read_violations.is_empty(), "{f:?}");
        // The subscriber got seqs 1..=3 of a 3-post timeline: clean.
        assert!(f.subscriber_violations.is_empty(), "{f:?}");
    }

    #[test]
    fn acknowledged_order_must_follow_real_time() {
        let mut h = history();
        // "b" was sent after "a" was acknowledged, yet got the lower sequence.
        h.posts[0].outcome = Outcome::Ok { seq: 2 };
        h.posts[1].outcome = Outcome::Ok { seq: 1 };
        h.reads.clear();
        let f = check(&h, &[timelines(1, &["b", "a", "c"])], &[], Vec::new());
        assert_eq!(f.reordered, 1, "{f:?}");
    }

    #[test]
    fn a_stale_read_is_exempt_from_linearizability_but_not_from_the_final_order() {
        let mut h = history();
        h.reads = vec![read(1, 50, 60, &[], true), read(1, 50, 60, &[(1, "b")], true)];
        let f = check(&h, &[timelines(1, &["a", "b", "c"])], &[], Vec::new());
        assert_eq!(f.reads_stale, 2);
        assert_eq!(f.read_violations.len(), 1, "{f:?}");
    }

    #[test]
    fn subscribers_must_get_each_post_once_in_order() {
        let mut h = history();
        h.subscribers = vec![
            Received { posted: vec![(5, 1, 1), (6, 1, 3)], connections: 1, ..Default::default() },
            Received { posted: vec![(5, 1, 1), (6, 1, 2), (6, 1, 2), (9, 1, 3)], connections: 2, ..Default::default() },
            Received { posted: vec![(5, 1, 2), (6, 1, 1), (9, 1, 3)], connections: 1, ..Default::default() },
        ];
        let f = check(&h, &[timelines(1, &["a", "b", "c"])], &[], Vec::new());
        assert_eq!(f.subscriber_violations.len(), 4, "{:?}", f.subscriber_violations);
    }

    #[test]
    fn unavailability_is_the_longest_silence_in_each_window() {
        let posts: Vec<PostOp> =
            [5, 10, 50, 55].iter().map(|&t| post("p", 1, t - 1, t, Outcome::Ok { seq: 1 })).collect();
        assert_eq!(unavailability(&posts, &[(0, 60), (56, 100)]), vec![40, 44]);
    }
}
