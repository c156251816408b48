//! Checkers 1–4 over the posts and reads of a history.

use std::collections::{HashMap, HashSet};

use super::linearizable::{self, Append, Read};
use super::{Findings, Timelines};
use crate::workload::reader::ReadOp;
use crate::workload::writer::{Outcome, PostOp};

/// The value at fraction `p` of sorted `values` (0 for none).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0)
}

/// Lost, duplicated, phantom, real-time order, availability.
pub fn check(posts: &[PostOp], timelines: &Timelines, f: &mut Findings) {
    let mut where_is: HashMap<&str, (u64, u64)> = HashMap::new();
    for (room, timeline) in timelines {
        for (seq, text) in timeline {
            if where_is.insert(text.as_str(), (*room, *seq)).is_some() {
                f.duplicated.push(text.clone());
            }
        }
    }
    let sent: HashSet<&str> = posts.iter().map(|p| p.text.as_str()).collect();
    f.phantom = where_is.keys().filter(|t| !sent.contains(*t)).map(|t| (*t).to_owned()).collect();
    for p in posts {
        let found = where_is.get(p.text.as_str());
        match p.outcome {
            Outcome::Ok { seq } => {
                f.posts_acknowledged += 1;
                if found != Some(&(p.room, seq)) {
                    f.lost.push(format!("{} (room {} #{seq}; found at {found:?})", p.text, p.room));
                }
            }
            Outcome::Unknown => {
                f.posts_unknown += 1;
                f.unknown_applied += usize::from(found.is_some());
            }
        }
    }
    // Real time: a post acknowledged before another was invoked has the lower sequence (per
    // room). Sweep the invocations in time order against the acknowledgements before each.
    let mut by_room: HashMap<u64, Vec<(&PostOp, u64)>> = HashMap::new();
    for p in posts {
        if let Outcome::Ok { seq } = p.outcome {
            by_room.entry(p.room).or_default().push((p, seq));
        }
    }
    for ops in by_room.values_mut() {
        let mut by_completion: Vec<(u64, u64)> = ops.iter().map(|(p, seq)| (p.completed_ms, *seq)).collect();
        by_completion.sort_unstable();
        ops.sort_by_key(|(p, _)| p.invoked_ms);
        let (mut next, mut highest) = (0, 0);
        for (p, seq) in ops.iter() {
            while next < by_completion.len() && by_completion[next].0 < p.invoked_ms {
                highest = highest.max(by_completion[next].1);
                next += 1;
            }
            f.reordered += usize::from(highest >= *seq);
        }
    }
    let mut acked: Vec<u64> =
        posts.iter().filter(|p| matches!(p.outcome, Outcome::Ok { .. })).map(|p| p.completed_ms).collect();
    acked.sort_unstable();
    f.max_unavailable_ms = acked.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let mut retried: Vec<u64> =
        posts.iter().filter(|p| p.attempts > 1).map(|p| p.completed_ms - p.invoked_ms).collect();
    retried.sort_unstable();
    f.retried_p50_ms = percentile(&retried, 0.5);
    f.retried_p99_ms = percentile(&retried, 0.99);
}

/// Checker 4: every read returned what the final log holds at those sequences; reads marked
/// stale (the node was cut off) stop there; the others must be linearizable.
pub fn check_reads(posts: &[PostOp], reads: &[ReadOp], timelines: &Timelines, f: &mut Findings) {
    let sent: HashMap<&str, &PostOp> = posts.iter().map(|p| (p.text.as_str(), p)).collect();
    let mut per_room: HashMap<u64, Vec<Read>> = HashMap::new();
    for r in reads {
        let timeline = timelines.get(&r.room).map(Vec::as_slice).unwrap_or(&[]);
        let label = format!(
            "read by reader {} of room {} on node {} [{}, {}] ms",
            r.reader,
            r.room,
            r.node + 1,
            r.invoked_ms,
            r.completed_ms
        );
        for (seq, text) in &r.posts {
            let expected = seq.checked_sub(1).and_then(|i| timeline.get(i as usize));
            if expected != Some(&(*seq, text.clone())) {
                f.read_violations.push(format!("{label} saw {text:?} at #{seq}; the final timeline has {expected:?}"));
            }
        }
        if r.stale {
            f.reads_stale += 1;
            continue;
        }
        match r.length() {
            Some(length) => {
                f.reads_linearizable += 1;
                let read = Read { invoked_ms: r.invoked_ms, completed_ms: r.completed_ms, length, label };
                per_room.entry(r.room).or_default().push(read);
            }
            None => f.reads_truncated += 1,
        }
    }
    for (room, room_reads) in per_room {
        let timeline = timelines.get(&room).map(Vec::as_slice).unwrap_or(&[]);
        let appends: Vec<Append> = timeline
            .iter()
            .map(|(_, text)| match sent.get(text.as_str()) {
                Some(p) => Append {
                    invoked_ms: p.invoked_ms,
                    completed_ms: matches!(p.outcome, Outcome::Ok { .. }).then_some(p.completed_ms),
                },
                // A phantom (reported by the post checker): constrain nothing.
                None => Append { invoked_ms: 0, completed_ms: None },
            })
            .collect();
        f.read_violations.extend(linearizable::check(&appends, &room_reads));
    }
}
