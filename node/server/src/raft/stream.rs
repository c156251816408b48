//! Replication pipelined over one gRPC stream per session (`AppendEntriesStream`): the leader
//! sends each AppendEntries request as openraft makes it, without waiting for the answer to the
//! one before, and the follower answers each in order. openraft's default sends one request,
//! waits for its answer, then the next: a write then waited behind the entry-less request that
//! told the followers of the previous commit (docs/benchmarks.md, "Pipelined replication").
//!
//! A stream may stay open and idle (openraft keeps a session open while nothing new is
//! submitted), so there is no deadline on the stream itself: only an answer owed for longer than
//! the RPC timeout ends it, as an unanswered single request would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kizuna_proto::raft::RaftPayload;
use openraft::error::RPCError;
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tonic::Streaming;

use super::network::{PeerClient, network, status_to_rpc};
use super::{NodeId, TypeConfig, decode, encode};

type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// When each request still waiting for its answer was sent, oldest first (answers come in
/// order): the deadline of the oldest, and each round trip for the metrics.
type SentAt = Arc<Mutex<VecDeque<Instant>>>;

/// Opens the stream to `peer` and sends `input` through it; the answers, in order.
pub(super) async fn open<'s, S>(
    peer: &'s PeerClient,
    input: S,
    option: RPCOption,
) -> Result<BoxStream<'s, Answer>, RPCError<TypeConfig>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let mut client = peer.client()?;
    let sent: SentAt = Arc::default();
    let sending = sent.clone();
    let requests = input.map(move |rpc| {
        sending.lock().unwrap_or_else(|p| p.into_inner()).push_back(Instant::now());
        RaftPayload { data: encode(&rpc) }
    });
    let ttl = option.hard_ttl();
    let target = peer.target;
    let opened = tokio::time::timeout(ttl, client.append_entries_stream(requests)).await.map_err(|_| {
        RPCError::Network(network(format!("node {target} did not open a replication stream within {ttl:?}")))
    })?;
    let answers = Answers { incoming: opened.map_err(status_to_rpc)?.into_inner(), sent, ttl, target };
    let stream = futures::stream::unfold(Some(answers), |state| async move {
        let mut answers = state?;
        let answer = answers.next().await?;
        // An error ends the stream: openraft opens a new session.
        let more = answer.is_ok().then_some(answers);
        Some((answer, more))
    });
    Ok(stream.boxed())
}

/// The follower's side of one stream, as the leader reads it.
struct Answers {
    incoming: Streaming<RaftPayload>,
    sent: SentAt,
    ttl: Duration,
    target: NodeId,
}

impl Answers {
    /// The next answer; None when the follower ended the stream.
    async fn next(&mut self) -> Option<Answer> {
        loop {
            // `message` is cancel-safe: waiting again after a timeout loses nothing.
            match tokio::time::timeout(self.ttl, self.incoming.message()).await {
                Ok(Ok(Some(payload))) => return Some(self.answer(&payload)),
                Ok(Ok(None)) => return None,
                Ok(Err(status)) => return Some(Err(self.failed(status_to_rpc(status)))),
                Err(_) if self.owed_too_long() => {
                    let late = network(format!("no answer from node {} within {:?}", self.target, self.ttl));
                    return Some(Err(self.failed(RPCError::Network(late))));
                }
                Err(_) => continue,
            }
        }
    }

    fn answer(&self, payload: &RaftPayload) -> Answer {
        let sent_at = self.sent.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some(sent_at) = sent_at {
            metrics::histogram!("kizuna_raft_rpc_seconds", &self.labels()).record(sent_at.elapsed().as_secs_f64());
        }
        decode(&payload.data).map_err(|e| self.failed(RPCError::Network(network(e))))
    }

    /// Whether the oldest request still waiting for its answer was sent more than the RPC
    /// timeout ago.
    fn owed_too_long(&self) -> bool {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.front().is_some_and(|at| at.elapsed() >= self.ttl)
    }

    fn failed(&self, e: RPCError<TypeConfig>) -> RPCError<TypeConfig> {
        metrics::counter!("kizuna_raft_rpc_failures_total", &self.labels()).increment(1);
        e
    }

    fn labels(&self) -> [(&'static str, String); 2] {
        [("peer", self.target.to_string()), ("rpc", "append_entries".to_owned())]
    }
}
