//! Replication pipelined over one gRPC stream per session (`AppendEntriesStream`): the leader
//! sends each AppendEntries request as openraft makes it, without waiting for the answer to the
//! one before, and the follower answers each in order. openraft's default sends one request,
//! waits for its answer, then the next: a write then waited behind the entry-less request that
//! told the followers of the previous commit (docs/benchmarks.md, "The write path at one client").
//!
//! A stream may stay open and idle (openraft keeps a session open while nothing new is
//! submitted), so there is no deadline on the stream itself: only an answer owed for longer than
//! [`ANSWER_PATIENCE`] RPC timeouts ends it, as an unanswered single request would.

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

/// How many RPC timeouts (openraft gives the heartbeat interval) an answer may be owed before
/// the stream ends. Answers queue behind the follower's log fsyncs, and one slow fsync or a
/// busy core holds back every answer behind it: with one timeout, healthy followers' streams
/// ended several times a minute under a steady open-loop load ("no answer from node … within
/// 100ms" in the leader's log), each time for a new session. A lost follower is still given up
/// on within half a second at the default heartbeat; the leader's lease and the followers'
/// elections do not depend on it.
const ANSWER_PATIENCE: u32 = 5;

/// How long a request that only tells the follower a new commit index (openraft sends one as
/// soon as the index moves and no entry carries it) waits for the next request, which carries
/// that index too and makes it unneeded. At one client the next write's entries follow within
/// a millisecond: each write then costs each follower one request instead of two, and the
/// leader two messages fewer (docs/benchmarks.md, session 41). When nothing follows, the
/// follower learns the index this much later (its apply, its live events); openraft's
/// heartbeats carry it too.
const NOTICE_WAIT: Duration = Duration::from_millis(2);

/// When each request still waiting for its answer was sent, oldest first (answers come in
/// order): the deadline of the oldest, and each round trip for the metrics.
type SentAt = Arc<Mutex<VecDeque<Instant>>>;

/// Opens the stream to `peer` and sends `input` through it; the answers, in order.
///
/// The first request is taken before the peer is dialled: taking it is where openraft waits
/// out its backoff after errors, and a peer that refuses connections would otherwise be
/// dialled again at once, thousands of times a second.
pub(super) async fn open<'s, S>(
    peer: &'s PeerClient,
    mut input: S,
    option: RPCOption,
) -> Result<BoxStream<'s, Answer>, RPCError<TypeConfig>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let Some(first) = input.next().await else {
        return Ok(futures::stream::empty().boxed());
    };
    let mut client = peer.client()?;
    let sent: SentAt = Arc::default();
    let sending = sent.clone();
    let input = without_superseded_notices(input);
    let requests = futures::stream::once(std::future::ready(first)).chain(input).map(move |rpc| {
        sending.lock().unwrap_or_else(|p| p.into_inner()).push_back(Instant::now());
        RaftPayload { data: encode(&rpc) }
    });
    let ttl = option.hard_ttl();
    let target = peer.target;
    let opened = match tokio::time::timeout(ttl, client.append_entries_stream(requests)).await {
        Ok(Ok(opened)) => opened.into_inner(),
        Ok(Err(status)) => return Err(count_failure(target, status_to_rpc(status))),
        Err(_) => {
            let late = network(format!("node {target} did not open a replication stream within {ttl:?}"));
            return Err(count_failure(target, RPCError::Network(late)));
        }
    };
    let round_trips = metrics::histogram!("kizuna_raft_rpc_seconds", &labels(target));
    let answers = Answers { incoming: opened, sent, ttl: ttl * ANSWER_PATIENCE, target, round_trips };
    let stream = futures::stream::unfold(Some(answers), |state| async move {
        let mut answers = state?;
        let answer = answers.next().await?;
        // An error ends the stream: openraft opens a new session.
        let more = answer.is_ok().then_some(answers);
        Some((answer, more))
    });
    Ok(stream.boxed())
}

/// `input` without the entry-less requests that a later request makes unneeded: such a request
/// is held for [`NOTICE_WAIT`] and dropped if another comes meanwhile (it carries the same or a
/// newer commit index, from the same last entry on), sent otherwise. A request left unsent is
/// one the network lost, for openraft: it matches answers by log id, not by count (and every
/// request sent still gets its answer, in order).
fn without_superseded_notices<S>(input: S) -> impl Stream<Item = AppendEntriesRequest<TypeConfig>> + Send
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let state = (input.fuse(), None::<AppendEntriesRequest<TypeConfig>>);
    futures::stream::unfold(state, |(mut input, mut held)| async move {
        loop {
            let next = match held.take() {
                None => input.next().await,
                // `next` is cancel-safe: a timeout loses no request. Nothing came in time, or
                // nothing more will: the notice goes.
                Some(notice) => match tokio::time::timeout(NOTICE_WAIT, input.next()).await {
                    Ok(Some(next)) => Some(next),
                    Ok(None) | Err(_) => return Some((notice, (input, None))),
                },
            };
            match next {
                None => return None,
                Some(notice) if notice.entries.is_empty() => held = Some(notice),
                Some(request) => return Some((request, (input, None))),
            }
        }
    })
}

/// The follower's side of one stream, as the leader reads it.
struct Answers {
    incoming: Streaming<RaftPayload>,
    sent: SentAt,
    /// How long an answer may be owed.
    ttl: Duration,
    target: NodeId,
    /// Looked up in the registry once per stream, not per answer (a lookup hashes and copies
    /// the labels).
    round_trips: metrics::Histogram,
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
            self.round_trips.record(sent_at.elapsed().as_secs_f64());
        }
        decode(&payload.data).map_err(|e| self.failed(RPCError::Network(network(e))))
    }

    /// Whether the oldest request still waiting for its answer was sent longer ago than an
    /// answer may be owed.
    fn owed_too_long(&self) -> bool {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.front().is_some_and(|at| at.elapsed() >= self.ttl)
    }

    fn failed(&self, e: RPCError<TypeConfig>) -> RPCError<TypeConfig> {
        count_failure(self.target, e)
    }
}

fn labels(target: NodeId) -> [(&'static str, String); 2] {
    [("peer", target.to_string()), ("rpc", "append_entries".to_owned())]
}

fn count_failure(target: NodeId, e: RPCError<TypeConfig>) -> RPCError<TypeConfig> {
    metrics::counter!("kizuna_raft_rpc_failures_total", &labels(target)).increment(1);
    e
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use openraft::RaftNetworkFactory;
    use openraft::error::RPCError;
    use openraft::network::RPCOption;

    use crate::raft::HubNode;
    use crate::raft::network::{Network, PeerChannels, TcpConnector};

    /// A peer that refuses connections: a port that was bound, then let go.
    async fn refusing_peer() -> super::PeerClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let raft_addr = listener.local_addr().expect("its address").to_string();
        drop(listener);
        let node = HubNode { name: "n2".into(), region: "r".into(), raft_addr, api_addr: String::new() };
        Network::new(PeerChannels::new(Arc::new(TcpConnector::default()))).new_client(2, &node).await
    }

    fn request() -> openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> {
        let vote = crate::raft::Vote::new_committed(1, 1);
        openraft::raft::AppendEntriesRequest { vote, prev_log_id: None, entries: vec![], leader_commit: None }
    }

    /// A request with the entry at `entry` (none for a commit notice) and the commit index `commit`.
    fn append(entry: Option<u64>, commit: u64) -> openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> {
        use openraft::entry::RaftEntry;
        let log_id = |index| openraft::testing::log_id::<crate::raft::TypeConfig>(1, 1, index);
        let entries = entry.map(|index| crate::raft::Entry::new_blank(log_id(index))).into_iter().collect();
        openraft::raft::AppendEntriesRequest { leader_commit: Some(log_id(commit)), entries, ..request() }
    }

    fn commit_of(request: Option<openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig>>) -> Option<u64> {
        request.and_then(|r| r.leader_commit).map(|id| id.index)
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_notice_is_dropped_when_a_request_follows_and_sent_when_none_does() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let input = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut sent = Box::pin(super::without_superseded_notices(input));
        for request in [append(Some(2), 1), append(None, 2), append(None, 2), append(Some(3), 2)] {
            tx.send(request).expect("queued");
        }
        assert_eq!(commit_of(sent.next().await), Some(1), "a request with entries goes at once");
        let next = sent.next().await.expect("a request");
        assert_eq!(next.entries.len(), 1, "both notices before it dropped: it carries their commit");

        tx.send(append(None, 3)).expect("queued");
        let started = tokio::time::Instant::now();
        assert_eq!(commit_of(sent.next().await), Some(3), "a notice nothing follows is sent");
        assert!(started.elapsed() >= super::NOTICE_WAIT, "after waiting for a request that would carry it");

        tx.send(append(None, 4)).expect("queued");
        drop(tx);
        assert_eq!(commit_of(sent.next().await), Some(4), "a notice held when the input ends is sent");
        assert!(sent.next().await.is_none(), "then the stream ends");
    }

    #[tokio::test]
    async fn the_peer_is_dialled_only_once_there_is_a_request_to_send() {
        let peer = refusing_peer().await;
        let option = RPCOption::new(Duration::from_millis(500));
        // openraft waits out its backoff while making the first request: nothing may be dialled
        // (and fail at once, to be opened again at once) before it is there.
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            super::open(&peer, futures::stream::pending(), option.clone()),
        );
        assert!(waiting.await.is_err(), "open returned without a request to send");
        let refused = super::open(&peer, futures::stream::iter([request()]), option).await;
        assert!(matches!(refused, Err(RPCError::Unreachable(_))), "a refused connection is unreachable");
        let none = super::open(&peer, futures::stream::empty(), RPCOption::new(Duration::from_millis(500))).await;
        assert!(none.expect("nothing to send is no error").next().await.is_none());
    }
}
