//! Linearizability of timeline reads, for the model of an append-only log per room.
//!
//! The final state fixes the order of the appends (posts) in each room, so a linearization only
//! has to place points in time: the k-th append inside its own interval, in log order, and each
//! read that saw a length of L between the L-th and the (L+1)-th append, inside its interval.
//! Placing every append as early as its constraints allow is optimal (all later constraints
//! only bound it from below), so one sweep over L = 0..=N decides it exactly: the same answer a
//! WGL / Porcupine search gives for this model, in O(n log n) instead of exponential time.

use std::collections::{BTreeMap, HashMap};

/// One append, by its position in the final log: when it was invoked, and when it was
/// acknowledged (`None` if it never was; it may still have been applied).
#[derive(Debug, Clone, Copy)]
pub struct Append {
    pub invoked_ms: u64,
    pub completed_ms: Option<u64>,
}

/// One read that observed the log's length.
#[derive(Debug, Clone)]
pub struct Read {
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub length: u64,
    pub label: String,
}

/// Checks reads against the appends of one log (`appends[k]` is the append at position k+1).
/// Returns one message per violation.
pub fn check(appends: &[Append], reads: &[Read]) -> Vec<String> {
    let mut violations = Vec::new();
    let n = appends.len() as u64;
    let mut by_length: BTreeMap<u64, Vec<&Read>> = BTreeMap::new();
    for r in reads {
        if r.length > n {
            violations.push(format!("{} saw {} posts but only {n} exist", r.label, r.length));
        } else {
            by_length.entry(r.length).or_default().push(r);
        }
    }
    // The time of the latest placed append (0: before any).
    let mut t = 0u64;
    for length in 0..=n {
        let group = by_length.get(&length).map(Vec::as_slice).unwrap_or(&[]);
        for r in group {
            if t > r.completed_ms {
                violations.push(format!(
                    "{} saw {length} posts, but post #{length} cannot come before it ended (at {} ms; placed at {t} ms)",
                    r.label, r.completed_ms
                ));
            }
        }
        let Some(next) = appends.get(length as usize) else { break };
        // The next append comes after every read that did not see it began.
        let earliest = group.iter().map(|r| r.invoked_ms).chain([t, next.invoked_ms]).max().unwrap_or(t);
        if let Some(done) = next.completed_ms
            && earliest > done
        {
            let culprit = group.iter().find(|r| r.invoked_ms > done).map(|r| r.label.as_str());
            violations.push(match culprit {
                Some(read) => {
                    format!(
                        "post #{} was acknowledged at {done} ms, yet {read} that began later saw only {length} posts",
                        length + 1
                    )
                }
                None => format!(
                    "post #{} was acknowledged at {done} ms, yet reads that began later saw fewer posts than before it",
                    length + 1
                ),
            });
            // Keep going from the latest consistent point, so one fault is reported once.
            t = done.max(t);
        } else {
            t = earliest;
        }
    }
    violations
}

/// Positions of texts in a final log, for building [`Append`]s from a history.
pub fn positions(final_log: &[(u64, String)]) -> HashMap<&str, u64> {
    final_log.iter().map(|(seq, text)| (text.as_str(), *seq)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(invoked_ms: u64, completed_ms: u64) -> Append {
        Append { invoked_ms, completed_ms: Some(completed_ms) }
    }

    fn read(invoked_ms: u64, completed_ms: u64, length: u64) -> Read {
        Read { invoked_ms, completed_ms, length, label: format!("read [{invoked_ms},{completed_ms}]={length}") }
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_an_append() {
        let appends = [append(0, 10), append(20, 30)];
        let reads = [read(15, 25, 1), read(15, 25, 2), read(22, 40, 1), read(31, 40, 2), read(0, 5, 0)];
        assert!(check(&appends, &reads).is_empty());
    }

    #[test]
    fn a_read_that_misses_an_acknowledged_post_is_caught() {
        // Post #2 was acknowledged at 30; a read that began at 35 saw only one post.
        let appends = [append(0, 10), append(20, 30)];
        let v = check(&appends, &[read(35, 40, 1)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("post #2"), "{v:?}");
    }

    #[test]
    fn a_read_from_the_future_is_caught() {
        // Post #2 was only invoked at 50; a read that ended at 40 cannot have seen it.
        let appends = [append(0, 10), append(50, 60)];
        let v = check(&appends, &[read(30, 40, 2)]);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn reads_going_back_in_time_are_caught() {
        // Both reads overlap the append, but the one that saw it ended before the other began.
        let appends = [append(0, 100)];
        let ok = check(&appends, &[read(10, 20, 0), read(30, 40, 1)]);
        assert!(ok.is_empty(), "{ok:?}");
        let v = check(&appends, &[read(10, 20, 1), read(30, 40, 0)]);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn unacknowledged_appends_may_land_any_time_after_their_start() {
        let appends = [Append { invoked_ms: 0, completed_ms: None }];
        assert!(check(&appends, &[read(10, 20, 0), read(500, 600, 0), read(700, 800, 1)]).is_empty());
        assert_eq!(check(&appends, &[read(10, 20, 1), read(30, 40, 0)]).len(), 1);
    }

    #[test]
    fn a_read_longer_than_the_log_is_caught() {
        assert_eq!(check(&[append(0, 1)], &[read(5, 6, 2)]).len(), 1);
    }
}
