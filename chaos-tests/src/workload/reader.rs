//! Readers: timeline reads of random rooms on random nodes. Each read asks for the posts after
//! one less than the last length this reader saw in that room, so a linearizable answer is never
//! empty and shows the room's whole current length (unless 200 or more posts arrived since).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{TimelineOrder, TimelineRequest};
use serde::Serialize;

use super::{Setup, authed, channel, ms_since};
use crate::rng::Rng;

const PAGE: u32 = 200;

#[derive(Debug, Clone, Serialize)]
pub struct ReadOp {
    pub reader: usize,
    pub room: u64,
    pub node: usize,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub after_seq: u64,
    /// (seq, text) of the posts returned.
    pub posts: Vec<(u64, String)>,
    /// The page was full: the room's length is not known from this read.
    pub truncated: bool,
    /// The node was cut off from the quorum and answered from its own copy.
    pub stale: bool,
}

impl ReadOp {
    /// The room's length this read observed, when it observed it.
    pub fn length(&self) -> Option<u64> {
        if self.truncated { None } else { Some(self.posts.last().map_or(self.after_seq, |p| p.0)) }
    }
}

pub async fn run(id: usize, setup: Setup, mut rng: Rng, stop: Arc<AtomicBool>, started: Instant) -> Vec<ReadOp> {
    let clients: Vec<_> = setup.endpoints.iter().map(|e| channel(e).ok().map(PostServiceClient::new)).collect();
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut history = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let room = setup.rooms[rng.below(setup.rooms.len() as u64) as usize];
        let node = rng.below(clients.len() as u64) as usize;
        let Some(mut client) = clients[node].clone() else { continue };
        let after_seq = seen.get(&room).copied().unwrap_or(0).saturating_sub(1);
        // Oldest first from after_seq: a read observes a prefix of the room (see `ReadOp::length`).
        let order = TimelineOrder::OldestFirst as i32;
        let req =
            TimelineRequest { room_id: room, order, after_seq: Some(after_seq), page_size: PAGE, ..Default::default() };
        let req = authed(req, &setup.token);
        let invoked_ms = ms_since(started);
        // A failed or timed-out read changed nothing: it is simply not in the history.
        if let Ok(Ok(page)) = tokio::time::timeout(setup.answer_timeout, client.timeline(req)).await {
            let page = page.into_inner();
            let read = ReadOp {
                reader: id,
                room,
                node,
                invoked_ms,
                completed_ms: ms_since(started),
                after_seq,
                posts: page.posts.into_iter().map(|p| (p.seq, p.text)).collect(),
                truncated: !page.next_page_token.is_empty(),
                stale: page.stale,
            };
            if !read.stale {
                let known = read.posts.last().map_or(after_seq, |p| p.0);
                seen.insert(room, known.max(seen.get(&room).copied().unwrap_or(0)));
            }
            history.push(read);
        }
        tokio::time::sleep(Duration::from_millis(10 + rng.below(30))).await;
    }
    history
}
