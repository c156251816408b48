//! The EventService: a caller's live events, from any node, resumable from a cursor.

use std::pin::Pin;

use futures::Stream;
use kizuna_proto::events as pb;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::shared::{Api, read_fault_status, view_status};
use crate::live_events::{Learnt, Live, Subscription};
use crate::node::{NodeError, now_ms};
use kizuna_domain::DomainError;
use kizuna_domain::events::{self, Event, EventKind, visible_to};
use kizuna_domain::model::AccountId;
use kizuna_domain::queries;
use kizuna_store::RocksHub;

fn event_view(e: &Event) -> pb::SubscribeResponse {
    use pb::event::Kind;
    let (room_id, kind) = match e.kind {
        EventKind::Posted { seq } => (Some(e.room.0), Kind::PostedSeq(seq)),
        EventKind::PostUpdated { seq } => (Some(e.room.0), Kind::PostUpdatedSeq(seq)),
        EventKind::Membership => (Some(e.room.0), Kind::MembershipChanged(true)),
        EventKind::Read { seq, .. } => (Some(e.room.0), Kind::ReadUpToSeq(seq)),
        // A care request is not in a room.
        EventKind::Request { id } => (None, Kind::CareRequestUpdated(id.0)),
        EventKind::Connection { .. } => (None, Kind::ConnectionsChanged(true)),
        EventKind::Disaster { id } => (None, Kind::DisasterChanged(id.0)),
        EventKind::Observed { disaster } => (None, Kind::DisasterObserved(disaster.0)),
    };
    let event = pb::Event { cursor: e.cursor, room_id, at: Some(timestamp(e.at_ms)), kind: Some(kind) };
    pb::SubscribeResponse { event: Some(event) }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::event_service_server::EventService for Api {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let permit = self.live_streams.take(me)?;
        let after = match req.into_inner().after_cursor {
            Some(cursor) => cursor,
            // Only new events: start after everything applied so far (authenticate made the
            // node's state current).
            None => events::cursor_after(
                self.node.state.applied().map_err(|e| Status::internal(e.to_string()))?.map_or(0, |l| l.index),
            ),
        };
        let api = self.clone();
        // Listen before reading the stored events, so nothing falls between the two.
        let live = api.node.live.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let _held_until_the_stream_ends = permit;
            // The node stopping, or stopping to apply the log, ends the stream; the client
            // resumes elsewhere from its cursor.
            let ended = tokio::select! {
                ended = feed_events(&api, me, &token_hash, after, live, &tx) => ended,
                // The client left (a tab closed): give its place back now, not at the next event.
                () = tx.closed() => Ok(()),
                fault = api.node.stopped_applying() => match fault {
                    Some(fault) => Err(NodeError::ApplyStopped(fault).into_status()),
                    None => Ok(()),
                },
            };
            if let Err(status) = ended {
                let _ = tx.send(Err(status)).await;
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Feeds the events `me` may see after `cursor` into `tx`: the stored ones, then the live ones
/// (back to the stored ones after falling behind). Ends quietly when the client leaves; with a
/// status when the session ends or this node cannot read its events.
async fn feed_events(
    api: &Api,
    me: AccountId,
    token_hash: &str,
    mut cursor: u64,
    mut live: Subscription,
    tx: &tokio::sync::mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
) -> Result<(), Status> {
    // Known from the start, the stream is passed over for the posts of every room it may not
    // read, without a read of the state per room.
    let access_at = api.node.state.access_log().count();
    let now = now_ms();
    let learnt = api.query(|hub| learn(hub, me, token_hash, now))?;
    live.learn(access_at, learnt);
    loop {
        // Catch up from the stored events (also after the live channel lagged).
        loop {
            let stored = api.node.state.events_after(cursor, 256).map_err(read_fault_status)?;
            // Read after the events: an apply that forgot some in between also moved the
            // marker (one batch), so a gap below it is never passed over silently.
            let forgotten = api.node.state.events_forgotten_to().map_err(read_fault_status)?;
            if cursor < forgotten {
                return Err(Status::out_of_range(format!(
                    "events after cursor {cursor} are no longer kept (up to {forgotten} are gone): reload, then \
                     subscribe without a cursor"
                )));
            }
            if stored.is_empty() {
                break;
            }
            for e in stored {
                cursor = e.cursor;
                // What the stream knows spares a read per event: after a lag it re-reads every
                // event since the last one it was handed, most of them of rooms it may not read.
                let access_now = api.node.state.access_log().count();
                let visible = match live.visible(access_now, &e, now_ms()) {
                    Some(visible) => visible,
                    None => api.query(|hub| visible_to(hub, me, &e).map_err(view_status))?,
                };
                if visible && tx.send(Ok(event_view(&e))).await.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            match live.next().await {
                Live::Event(e) if e.cursor <= cursor => {}
                Live::Event(e) => {
                    cursor = e.cursor;
                    if decide_live(api, (me, token_hash), &live, &e)? && tx.send(Ok(event_view(&e))).await.is_err() {
                        return Ok(());
                    }
                }
                Live::Lagged => break,
                Live::Closed => return Ok(()),
            }
        }
    }
}

/// Whether the live event `e` goes out: from what the stream knows, else from one view of the
/// state. That view also checks the session, so nothing goes out after it ended and a stream
/// whose session ended stops at the next event; and when what the stream knew no longer holds
/// (access changed, or its session's lifetime ended), it learns its rooms again.
fn decide_live(api: &Api, (me, token_hash): (AccountId, &str), live: &Subscription, e: &Event) -> Result<bool, Status> {
    let now = now_ms();
    let access_now = api.node.state.access_log().count();
    if let Some(visible) = live.visible(access_now, e, now) {
        return Ok(visible);
    }
    let learning = !live.knows(access_now, now);
    let (visible, learnt) = api.query(|hub| {
        let learnt = if learning {
            Some(learn(hub, me, token_hash, now)?)
        } else {
            session_until(hub, token_hash, now)?;
            None
        };
        Ok((visible_to(hub, me, e).map_err(view_status)?, learnt))
    })?;
    if let Some(learnt) = learnt {
        live.learn(access_now, learnt);
    }
    Ok(visible)
}

/// What a stream of `me` on the session `token_hash` knows of its access (its session checked).
fn learn(hub: &RocksHub<'_>, me: AccountId, token_hash: &str, now: u64) -> Result<Learnt, Status> {
    let session_until_ms = session_until(hub, token_hash, now)?;
    let readable = queries::readable_rooms(hub, me).map_err(view_status)?;
    Ok(Learnt { account: me, session_until_ms, readable })
}

/// Until when the session holds (its absolute lifetime), or why a stream on it ends.
fn session_until(hub: &RocksHub<'_>, token_hash: &str, now: u64) -> Result<u64, Status> {
    queries::stream_session_until(hub, token_hash, now).map_err(|e| match e {
        DomainError::Unreadable(e) => view_status(e),
        _ => Status::unauthenticated("the session has ended"),
    })
}
