//! Checker 5: every subscriber received every post of its rooms exactly once, in order, with
//! strictly increasing cursors, across all its reconnects.

use std::collections::BTreeMap;

use super::{Findings, Timelines};
use crate::workload::subscriber::Received;

pub fn check(subscribers: &[Received], timelines: &Timelines, f: &mut Findings) {
    for (i, s) in subscribers.iter().enumerate() {
        f.subscriber_events += s.posted.len();
        f.subscriber_connections += s.connections;
        let backwards = s.posted.windows(2).filter(|w| w[1].0 <= w[0].0).count();
        if backwards > 0 {
            f.subscriber_violations.push(format!("subscriber {i}: cursor went backwards {backwards} times"));
        }
        let mut per_room: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (_, room, seq) in &s.posted {
            per_room.entry(*room).or_default().push(*seq);
        }
        for (room, timeline) in timelines {
            let got = per_room.remove(room).unwrap_or_default();
            let expected: Vec<u64> = timeline.iter().map(|(seq, _)| *seq).collect();
            if got != expected {
                let missing = expected.iter().filter(|s| !got.contains(s)).count();
                let extra = got.len() + missing - expected.len();
                f.subscriber_violations.push(format!(
                    "subscriber {i}, room {room}: got {} events for {} posts ({missing} missing, {extra} repeated or out of order)",
                    got.len(),
                    expected.len()
                ));
            }
        }
        for (room, got) in per_room {
            f.subscriber_violations.push(format!("subscriber {i}: {} events of unknown room {room}", got.len()));
        }
    }
}
