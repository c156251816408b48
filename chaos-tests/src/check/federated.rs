//! Checkers of a two-hub run, over rooms whose home is one hub with a member on the other:
//!
//! 1. every acknowledged post — written on the home hub or on the member hub — is in the room
//!    exactly once on every node of every member hub (none lost, none doubled);
//! 2. every node of both hubs holds the room's posts in the same order, the home hub's: a
//!    post the home hub acknowledged is at the sequence it was acknowledged with;
//! 3. no post appears that nobody sent;
//! 4. each hub's subscriber saw each post of the room (as its hub numbers it) exactly once, in
//!    order (checker 5 of the single-hub runs, per hub).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Findings, Timelines};
use crate::workload::subscriber::Received;

/// One post a writer sent into a cross-hub room.
#[derive(Debug, Clone)]
pub struct CrossPost {
    pub text: String,
    /// The room on its home hub.
    pub home_room: u64,
    pub acknowledged: bool,
    /// The sequence the home hub acknowledged it with (posts written on the home hub).
    pub home_seq: Option<u64>,
}

/// One node's copy of every cross-hub room, keyed by the home room.
#[derive(Debug, Clone)]
pub struct NodeCopy {
    /// `hub/node`.
    pub node: String,
    pub timelines: Timelines,
}

/// One hub's subscriber and the rooms as that hub holds them (its own room ids and sequences).
#[derive(Debug, Clone)]
pub struct HubSubscriber {
    pub hub: String,
    pub received: Received,
    pub timelines: Timelines,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CrossHubFindings {
    pub posts_acknowledged: usize,
    pub posts_acknowledged_per_hub: BTreeMap<String, usize>,
    pub posts_unknown: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub phantom: Vec<String>,
    /// Rooms whose posts differ (in content or order) between nodes of either hub.
    pub divergent: Vec<String>,
    /// Home-acknowledged posts found at another sequence than acknowledged.
    pub misplaced: Vec<String>,
    pub subscriber_events: usize,
    pub subscriber_connections: u64,
    pub subscriber_violations: Vec<String>,
}

impl CrossHubFindings {
    pub fn violations(&self) -> usize {
        self.lost.len()
            + self.duplicated.len()
            + self.phantom.len()
            + self.divergent.len()
            + self.misplaced.len()
            + self.subscriber_violations.len()
    }
}

/// `nodes` must list the home hub's nodes first: the first is the reference order.
pub fn check(posts: &[CrossPost], nodes: &[NodeCopy], subscribers: &[HubSubscriber]) -> CrossHubFindings {
    let mut f = CrossHubFindings {
        posts_acknowledged: posts.iter().filter(|p| p.acknowledged).count(),
        posts_unknown: posts.iter().filter(|p| !p.acknowledged).count(),
        ..Default::default()
    };
    every_acknowledged_post_once(posts, nodes, &mut f);
    same_order_everywhere(nodes, &mut f);
    at_acknowledged_seq(posts, nodes, &mut f);
    nothing_unsent(posts, nodes, &mut f);
    for s in subscribers {
        let mut single = Findings::default();
        super::subscribers::check(std::slice::from_ref(&s.received), &s.timelines, &mut single);
        f.subscriber_events += single.subscriber_events;
        f.subscriber_connections += single.subscriber_connections;
        f.subscriber_violations.extend(single.subscriber_violations.into_iter().map(|v| format!("{}: {v}", s.hub)));
    }
    f
}

fn every_acknowledged_post_once(posts: &[CrossPost], nodes: &[NodeCopy], f: &mut CrossHubFindings) {
    for p in posts.iter().filter(|p| p.acknowledged) {
        for n in nodes {
            let timeline = n.timelines.get(&p.home_room).map(Vec::as_slice).unwrap_or_default();
            match timeline.iter().filter(|(_, text)| *text == p.text).count() {
                0 => f.lost.push(format!("{} missing from room {} on {}", p.text, p.home_room, n.node)),
                1 => {}
                k => f.duplicated.push(format!("{} {k} times in room {} on {}", p.text, p.home_room, n.node)),
            }
        }
    }
}

fn same_order_everywhere(nodes: &[NodeCopy], f: &mut CrossHubFindings) {
    let Some((reference, others)) = nodes.split_first() else { return };
    let texts = |t: Option<&Vec<(u64, String)>>| t.map(|t| t.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>());
    for (room, timeline) in &reference.timelines {
        let expected = texts(Some(timeline));
        for n in others {
            let got = texts(n.timelines.get(room));
            if got != expected {
                f.divergent.push(format!(
                    "room {room}: {} holds {} posts, {} holds {} (or another order)",
                    n.node,
                    got.map_or(0, |g| g.len()),
                    reference.node,
                    timeline.len()
                ));
            }
        }
    }
}

fn at_acknowledged_seq(posts: &[CrossPost], nodes: &[NodeCopy], f: &mut CrossHubFindings) {
    let Some(home) = nodes.first() else { return };
    for p in posts.iter().filter(|p| p.acknowledged) {
        let (Some(seq), Some(timeline)) = (p.home_seq, home.timelines.get(&p.home_room)) else { continue };
        if let Some((found, _)) = timeline.iter().find(|(_, text)| *text == p.text)
            && *found != seq
        {
            f.misplaced.push(format!("{} acknowledged at seq {seq}, found at {found} on {}", p.text, home.node));
        }
    }
}

fn nothing_unsent(posts: &[CrossPost], nodes: &[NodeCopy], f: &mut CrossHubFindings) {
    let sent: BTreeSet<&str> = posts.iter().map(|p| p.text.as_str()).collect();
    let mut seen = BTreeSet::new();
    for n in nodes {
        for (room, timeline) in &n.timelines {
            for (_, text) in timeline {
                if !sent.contains(text.as_str()) && seen.insert((room, text)) {
                    f.phantom.push(format!("{text} in room {room} on {}: nobody sent it", n.node));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(text: &str, home_seq: Option<u64>) -> CrossPost {
        CrossPost { text: text.into(), home_room: 7, acknowledged: true, home_seq }
    }

    fn node(name: &str, posts: &[(u64, &str)]) -> NodeCopy {
        let timeline = posts.iter().map(|(s, t)| (*s, (*t).to_owned())).collect();
        NodeCopy { node: name.into(), timelines: [(7, timeline)].into() }
    }

    #[test]
    fn a_clean_history_passes() {
        let posts = [post("a", Some(1)), post("b", None)];
        let nodes = [node("tochigi/1", &[(1, "a"), (2, "b")]), node("gunma/1", &[(1, "a"), (2, "b")])];
        assert_eq!(check(&posts, &nodes, &[]).violations(), 0);
    }

    #[test]
    fn lost_doubled_reordered_misplaced_and_phantom_posts_are_caught() {
        let posts = [post("a", Some(1)), post("b", None)];
        let lost = [node("tochigi/1", &[(1, "a"), (2, "b")]), node("gunma/1", &[(1, "a")])];
        let f = check(&posts, &lost, &[]);
        assert_eq!((f.lost.len(), f.divergent.len()), (1, 1), "{f:?}");
        let doubled = [node("tochigi/1", &[(1, "a"), (2, "b")]), node("gunma/1", &[(1, "a"), (2, "b"), (3, "b")])];
        assert_eq!(check(&posts, &doubled, &[]).duplicated.len(), 1);
        let reordered = [node("tochigi/1", &[(1, "a"), (2, "b")]), node("gunma/1", &[(1, "b"), (2, "a")])];
        assert_eq!(check(&posts, &reordered, &[]).divergent.len(), 1);
        let misplaced = [node("tochigi/1", &[(1, "b"), (2, "a")])];
        assert_eq!(check(&posts, &misplaced, &[]).misplaced.len(), 1);
        let phantom = [node("tochigi/1", &[(1, "a"), (2, "b"), (3, "z")])];
        assert_eq!(check(&posts, &phantom, &[]).phantom.len(), 1);
    }

    #[test]
    fn a_subscriber_that_missed_an_event_on_its_hub_is_caught() {
        let timelines: Timelines = [(70, vec![(1, "a".to_owned()), (2, "b".to_owned())])].into();
        let received = Received { posted: vec![(10, 70, 1)], connections: 1, ..Default::default() };
        let s = HubSubscriber { hub: "gunma".into(), received, timelines };
        let nodes = [node("tochigi/1", &[(1, "a"), (2, "b")])];
        let f = check(&[post("a", Some(1)), post("b", None)], &nodes, &[s]);
        assert_eq!(f.subscriber_violations.len(), 1, "{f:?}");
        assert!(f.subscriber_violations[0].starts_with("gunma: "));
    }
}
