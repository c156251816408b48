//! Subscribers: tail the live events of every room, hopping to another node every few seconds
//! and after any error, resuming from the last cursor received.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kizuna_proto::events::SubscribeRequest;
use kizuna_proto::events::event::Kind;
use kizuna_proto::events::event_service_client::EventServiceClient;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{Setup, authed, channel};
use crate::rng::Rng;

/// What one subscriber received, in arrival order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Received {
    /// (cursor, room, seq) of every "posted" event.
    pub posted: Vec<(u64, u64, u64)>,
    /// Streams opened (the first plus every reconnect).
    pub connections: u64,
    /// When each of `posted` arrived, ms since the Unix epoch (the two-hub run's cross-hub lag).
    pub arrived_at_ms: Vec<u64>,
}

impl Received {
    /// The highest sequence received in `room`.
    pub fn max_seq(&self, room: u64) -> u64 {
        self.posted.iter().filter(|p| p.1 == room).map(|p| p.2).max().unwrap_or(0)
    }
}

/// Runs until `stop`; `ready` fires once the first stream is open (posts after it are due).
pub async fn run(
    setup: Setup,
    mut rng: Rng,
    log: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut cursor = 0u64;
    let mut node = rng.below(setup.endpoints.len() as u64) as usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(ch) = channel(&setup.endpoints[node]) else { return };
        node = (node + 1 + rng.below(setup.endpoints.len() as u64 - 1) as usize) % setup.endpoints.len();
        // No cursor yet: only new events.
        let req = authed(SubscribeRequest { after_cursor: (cursor != 0).then_some(cursor) }, &setup.token);
        let mut stream =
            match tokio::time::timeout(setup.answer_timeout, EventServiceClient::new(ch).subscribe(req)).await {
                Ok(Ok(s)) => s.into_inner(),
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
        if let Ok(mut l) = log.lock() {
            l.connections += 1;
        }
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        // Stay a few seconds, then hop (or leave early on an error or the end of the stream).
        let hop = tokio::time::sleep(Duration::from_millis(2000 + rng.below(3000)));
        tokio::pin!(hop);
        loop {
            let event = tokio::select! {
                _ = &mut hop => break,
                e = tokio::time::timeout(Duration::from_millis(500), stream.message()) => e,
            };
            match event {
                Ok(Ok(Some(message))) => {
                    let Some(e) = message.event else { continue };
                    cursor = e.cursor;
                    if let (Some(Kind::PostedSeq(seq)), Some(room)) = (e.kind, e.room_id)
                        && let Ok(mut l) = log.lock()
                    {
                        l.posted.push((e.cursor, room, seq));
                        l.arrived_at_ms.push(super::epoch_ms());
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) if stop.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
    }
}
