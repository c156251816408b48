//! Writers: each posts to random rooms, one post at a time, each under its own idempotency key,
//! retried against the next node on any error or timeout for up to 15 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kizuna_proto::posts::CreatePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::{Setup, authed, channel, ms_since};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Acknowledged with this sequence number in its room.
    Ok { seq: u64 },
    /// Never acknowledged: it may or may not have been applied.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostOp {
    pub writer: usize,
    pub room: u64,
    /// Unique in the run: the checkers find the post by it.
    pub text: String,
    pub idempotency_key: String,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub attempts: u32,
    pub outcome: Outcome,
}

const GIVE_UP: Duration = Duration::from_secs(15);

pub async fn run(id: usize, setup: Setup, mut rng: Rng, stop: Arc<AtomicBool>, started: Instant) -> Vec<PostOp> {
    let mut clients: Vec<Option<PostServiceClient<Channel>>> =
        setup.endpoints.iter().map(|e| channel(e).ok().map(PostServiceClient::new)).collect();
    let mut history = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let room = setup.rooms[rng.below(setup.rooms.len() as u64) as usize];
        let text = format!("w{id}-{n}");
        let idempotency_key = format!("chaos-w{id}-{n}-{}", rng.next_u64());
        let invoked_ms = ms_since(started);
        let deadline = Instant::now() + GIVE_UP;
        let mut attempts = 0u32;
        let mut target = rng.below(clients.len() as u64) as usize;
        let outcome = loop {
            attempts += 1;
            let req = CreatePostRequest {
                idempotency_key: idempotency_key.clone(),
                room_id: room,
                text: text.clone(),
                reply_to: None,
                mention_ids: Vec::new(),
                attachment_ids: Vec::new(),
            };
            let reply = match clients[target].as_mut() {
                Some(c) => {
                    tokio::time::timeout(setup.answer_timeout, c.create_post(authed(req, &setup.token))).await.ok()
                }
                None => None,
            };
            match reply {
                Some(Ok(r)) => break Outcome::Ok { seq: r.into_inner().seq },
                _ if Instant::now() >= deadline => break Outcome::Unknown,
                _ => {
                    target = (target + 1) % clients.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        history.push(PostOp {
            writer: id,
            room,
            text,
            idempotency_key,
            invoked_ms,
            completed_ms: ms_since(started),
            attempts,
            outcome,
        });
        n += 1;
    }
    history
}
