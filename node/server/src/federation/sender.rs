//! The leader's sender: delivers the replicated outbox to each configured peer, exactly once
//! and in order (see `docs/federation.md`, "Sending").
//!
//! Every node runs one loop per peer; a loop acts only while its node leads the hub, so a
//! leader change hands sending over without coordination: the new leader starts from the
//! replicated acknowledgement and the peer's stream answers anything resent as a duplicate.
//! Each loop has exactly one batch in flight: read the committed outbox after what is
//! acknowledged, sign it now (never when queued, so a key rotation never strands the queue),
//! deliver it (failing over across the peer's endpoints), and propose the peer's
//! acknowledgement through the normal write path, which prunes the outbox.
//!
//! New messages are picked up when this node applies a log entry (the Raft metrics change),
//! not by a fixed poll, so a queued message leaves within milliseconds of its commit. After a
//! failure the loop backs off (250 ms doubling to 30 s, jittered) before it resends; while it
//! waits it sends a cheap signed probe every [`PROBE_EVERY`], and once a peer that could not be
//! reached answers one, it resends at once: a returning peer is noticed within a second or two
//! however long it was away, while a peer that answers but fails the delivery (refusing it, or
//! without a quorum) is retried only as the backoff allows. Nothing queued is ever dropped:
//! refusals are logged, shown to operators, and retried with backoff.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use kizuna_domain::federation::{HubName, Outbound, OutboxMessage, SeqRange, StreamError};
use kizuna_domain::{CommandResult, Envelope, HubView, LogCommand, ViewError};
use kizuna_proto::federation::DeliverRequest;
use kizuna_proto::federation::federation_service_client::FederationServiceClient;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tracing::{Instrument, info, info_span, warn};

use super::board::Board;
use super::transport::{TransportError, WatchedFederationTls};
use super::{HubIdentity, Trust, connect, signed_batch, signed_probe};
use crate::node::{Node, NodeError, now_ms};

/// At most this many messages per batch.
pub const BATCH_MESSAGES: usize = 256;
/// A batch stops growing once its messages reach this many bytes (it holds at least one).
pub const BATCH_BYTES: usize = 1 << 20;
/// How long one Deliver or Probe may take before the next endpoint is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a backing-off loop probes the peer (cheap: no payload, no commit on either side).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often an idle loop looks again without a new log entry (a lost leadership, a resume
/// that this node applied while it was not looking).
const IDLE_RECHECK: Duration = Duration::from_millis(500);

/// Backoff after a failed delivery: from [`Backoff::FIRST`], doubling up to [`Backoff::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { step: Self::FIRST }
    }
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(30);

    /// The next pause: between half and all of the current step, placed by `jitter` in
    /// `[0, 1]` (so that hubs that lost a peer together do not retry in lockstep); the step then
    /// doubles, up to the maximum.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(Self::MAX);
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// A fraction in `[0, 1]` from the standard library's per-process random hash keys.
pub(super) fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What to send next: consecutive messages from `first`, cut at a number of messages (at most
/// [`BATCH_MESSAGES`], see [`next_limit`]) and at [`BATCH_BYTES`]. `queued` is the outbox after
/// the acknowledgement, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub first_seq: u64,
    pub bodies: Vec<Vec<u8>>,
}

impl Batch {
    /// The batch starting at `first`, or why the outbox does not continue the stream there
    /// (a hole in the replicated outbox: a fault, never skipped).
    pub fn cut(first: u64, queued: Vec<OutboxMessage>, limit: usize) -> Result<Self, SendError> {
        let mut bodies = Vec::new();
        let mut bytes = 0;
        for (expected, message) in (first..).zip(queued) {
            if message.seq != expected {
                return Err(SendError::Outbox(format!("message {expected} is missing (found {})", message.seq)));
            }
            if !bodies.is_empty() && (bodies.len() >= limit || bytes + message.body.len() > BATCH_BYTES) {
                break;
            }
            bytes += message.body.len();
            bodies.push(message.body);
        }
        if bodies.is_empty() {
            return Err(SendError::Outbox(format!("message {first} is missing")));
        }
        Ok(Self { first_seq: first, bodies })
    }

    fn range(&self) -> Result<SeqRange, StreamError> {
        SeqRange::of_batch(self.first_seq, self.bodies.len() as u64)
    }
}

/// How many messages the next batch may carry, after a batch of `sent` messages of which the
/// peer applied `applied`. A receiver applies a bounded number of messages per log entry and
/// acknowledges only those (the rest is sent again): the sender then sends no more than it
/// took, instead of shipping the same tail again and again, and grows back (doubling, up to
/// [`BATCH_MESSAGES`]) while whole batches are taken.
pub fn next_limit(limit: usize, sent: usize, applied: usize) -> usize {
    if applied < sent { applied.max(1) } else { limit.saturating_mul(2).clamp(1, BATCH_MESSAGES) }
}

/// The acknowledgement after the peer answered `highest_applied` for the batch `sent` of
/// `stream` (whose acknowledgement is just below `sent`). An answer below the batch is a gap:
/// the peer expects an earlier message ([`Outbound::on_gap`]); an answer above what was
/// assigned, or behind an earlier acknowledgement, is an error and acknowledges nothing.
pub fn after_receipt(mut stream: Outbound, sent: SeqRange, highest_applied: u64) -> Result<u64, StreamError> {
    if highest_applied < sent.first() - 1 {
        stream.on_gap(highest_applied + 1)?;
    } else {
        stream.acknowledge(highest_applied)?;
    }
    Ok(stream.acknowledged())
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("reading the outbox: {0}")]
    View(#[from] ViewError),
    #[error("the outbox does not continue the stream: {0}")]
    Outbox(String),
    #[error("stream: {0}")]
    Stream(#[from] StreamError),
    #[error("{endpoint}: {code:?} {message}")]
    Call {
        endpoint: String,
        code: Code,
        message: String,
        /// The peer answered (a status it sent), as opposed to a connection that failed or a
        /// call that timed out before any answer.
        answered: bool,
    },
    #[error("the peer has no endpoint")]
    NoEndpoint,
    #[error("the peer applied nothing of the batch from {first} (highest applied {highest_applied})")]
    NothingApplied { first: u64, highest_applied: u64 },
    #[error("proposing the acknowledgement: {0}")]
    Ack(String),
}

impl SendError {
    fn call(endpoint: &str, status: &Status) -> Self {
        // tonic sets a source error only for failures of its own (connecting, the transport);
        // a status the peer sent carries none.
        let answered = std::error::Error::source(status).is_none() && status.code() != Code::DeadlineExceeded;
        let (code, message) = (status.code(), status.message().to_owned());
        Self::Call { endpoint: endpoint.to_owned(), code, message, answered }
    }
}

/// A refusal is the peer's answer, the same on every endpoint; anything else (unreachable,
/// timeout, no leader there, a fault of that node) may go better on another endpoint.
fn is_refusal(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied | Code::FailedPrecondition | Code::InvalidArgument)
}

/// Whether the peer answered at all: a refusal is an answer (the peer is up but says no).
fn reached<T>(result: &Result<T, SendError>) -> bool {
    result.as_ref().err().is_none_or(answered)
}

/// Whether a failure still heard from the peer (a refusal, an answer that applied nothing, its
/// own UNAVAILABLE without a quorum), or was this node's own: only a peer that could not be
/// reached at all is resent to the moment it answers a probe again.
fn answered(error: &SendError) -> bool {
    match error {
        SendError::Call { answered, .. } => *answered,
        SendError::NoEndpoint => false,
        _ => true,
    }
}

/// The peer's endpoints, each with a lazily connected client; calls start at the endpoint that
/// answered last.
pub(super) struct PeerLink {
    peer: HubName,
    endpoints: Vec<(String, FederationServiceClient<Channel>)>,
    current: usize,
}

impl PeerLink {
    pub(super) fn new(
        tls: &WatchedFederationTls,
        peer: &HubName,
        endpoints: &[String],
    ) -> Result<Self, TransportError> {
        let endpoints = endpoints
            .iter()
            .map(|e| Ok((e.clone(), connect(tls, peer, e)?)))
            .collect::<Result<Vec<_>, TransportError>>()?;
        Ok(Self { peer: peer.clone(), endpoints, current: 0 })
    }

    /// Delivers `request`; the peer's `highest_applied`.
    async fn deliver(&mut self, request: DeliverRequest) -> Result<u64, SendError> {
        self.call(|mut client| {
            let request = request.clone();
            async move { client.deliver(timed(request)).await.map(|r| r.into_inner().highest_applied) }
        })
        .await
    }

    async fn probe(&mut self, identity: &HubIdentity) -> Result<(), SendError> {
        let peer = self.peer.clone();
        self.call(|mut client| {
            let request = signed_probe(identity, &peer);
            async move { client.probe(timed(request)).await.map(|_| ()) }
        })
        .await
    }

    /// `call` on the current endpoint, then on the others while the failure is not a refusal.
    pub(super) async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, SendError>
    where
        F: FnMut(FederationServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut failure = SendError::NoEndpoint;
        for attempt in 0..self.endpoints.len() {
            let at = (self.current + attempt) % self.endpoints.len();
            let (endpoint, client) = &self.endpoints[at];
            match call(client.clone()).await {
                Ok(answer) => {
                    self.current = at;
                    return Ok(answer);
                }
                Err(status) if is_refusal(status.code()) => return Err(SendError::call(endpoint, &status)),
                Err(status) => failure = SendError::call(endpoint, &status),
            }
        }
        Err(failure)
    }
}

fn timed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// What one step of a loop did.
enum Progress {
    /// Not leading, paused, or nothing queued.
    Idle,
    /// A batch was delivered (or answered as a duplicate).
    Delivered,
}

/// What [`PeerSender::next_batch`] read.
struct Next {
    /// The replicated stream, with this node's newer acknowledgement applied.
    stream: Outbound,
    /// The replicated acknowledgement alone.
    replicated: u64,
    /// What to send next, if anything is queued.
    batch: Option<Batch>,
}

/// One peer's loop.
struct PeerSender {
    node: Arc<Node>,
    identity: Arc<HubIdentity>,
    board: Arc<Board>,
    link: PeerLink,
    /// The newest acknowledgement this node received, possibly not yet replicated.
    acknowledged_here: u64,
    /// The most messages the next batch carries ([`next_limit`]).
    batch_limit: usize,
}

impl PeerSender {
    fn peer(&self) -> HubName {
        self.link.peer.clone()
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        loop {
            let seen = applied_index(&self.node);
            let step = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                step = self.step() => step,
            };
            match step {
                Ok(Progress::Delivered) => backoff.reset(),
                Ok(Progress::Idle) => {
                    backoff.reset();
                    let idle = tokio::time::timeout(IDLE_RECHECK, next_apply(&self.node, seen));
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        _ = idle => {}
                    }
                }
                Err(e) => {
                    let waited = self.back_off(e, &mut backoff);
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        () = waited => {}
                    }
                }
            }
        }
    }

    /// Sends the next batch, if this node leads, the peer is not paused and something is queued.
    async fn step(&mut self) -> Result<Progress, SendError> {
        if !leads(&self.node) {
            return Ok(Progress::Idle);
        }
        let Some(next) = self.next_batch()? else { return Ok(Progress::Idle) };
        // An acknowledgement whose proposal failed earlier is proposed again first, also when
        // nothing else is queued, so that the outbox is pruned.
        if next.stream.acknowledged() > next.replicated {
            self.propose_ack(next.stream.acknowledged()).await?;
        }
        let Some(batch) = next.batch else { return Ok(Progress::Idle) };
        let (stream, replicated) = (next.stream, next.stream.acknowledged());
        let sent = batch.range()?;
        let request = signed_batch(&self.identity, &self.link.peer, batch.first_seq, batch.bodies)?;
        let answered = self.link.deliver(request).await;
        self.board.update(&self.link.peer, |s| s.reachable = Some(reached(&answered)));
        let acknowledged = after_receipt(stream, sent, answered?)?;
        if acknowledged < sent.first() {
            // Resending at once would loop as fast as the peer answers: back off instead.
            return Err(SendError::NothingApplied { first: sent.first(), highest_applied: acknowledged });
        }
        let applied = acknowledged.saturating_sub(sent.first() - 1).min(sent.len());
        self.batch_limit = next_limit(self.batch_limit, sent.len() as usize, applied as usize);
        self.acknowledged_here = self.acknowledged_here.max(acknowledged);
        self.board.update(&self.link.peer, |s| {
            s.last_delivery_ms = Some(now_ms());
            s.backoff = None;
        });
        if acknowledged > replicated {
            self.propose_ack(acknowledged).await?;
        }
        Ok(Progress::Delivered)
    }

    /// The stream and the next batch, as this node applied them; `None` while paused.
    fn next_batch(&self) -> Result<Option<Next>, SendError> {
        let hub = self.node.state.hub();
        if hub.federation_paused(&self.link.peer)? {
            return Ok(None);
        }
        let mut stream = hub.outbound(&self.link.peer)?;
        let replicated = stream.acknowledged();
        stream.acknowledge(self.acknowledged_here)?;
        let batch = match stream.pending() {
            None => None,
            Some(pending) => {
                let queued = hub.outbox_after(&self.link.peer, pending.first() - 1, self.batch_limit);
                Some(Batch::cut(pending.first(), queued, self.batch_limit)?)
            }
        };
        Ok(Some(Next { stream, replicated, batch }))
    }

    async fn propose_ack(&self, highest_applied: u64) -> Result<(), SendError> {
        let peer = self.peer();
        let envelope = Envelope {
            idempotency_key: format!("federation-ack/{peer}/{highest_applied}"),
            proposed_at_ms: 0,
            command: LogCommand::FederationAck { peer, highest_applied },
        };
        let applied = self.node.write(envelope).await.map_err(|e: NodeError| SendError::Ack(e.to_string()))?;
        match applied.result {
            CommandResult::Refused(e) => Err(SendError::Ack(e.to_string())),
            _ => Ok(()),
        }
    }

    /// Records `error`, then waits out the next backoff step, probing every [`PROBE_EVERY`]:
    /// ends early when a peer that could not be reached answers a probe (it is back).
    fn back_off<'a>(&'a mut self, error: SendError, backoff: &'a mut Backoff) -> impl Future<Output = ()> + 'a {
        warn!(peer = %self.link.peer, "federation delivery failed: {error}");
        let mut unreachable = !answered(&error);
        let message = error.to_string();
        self.board.update(&self.link.peer, |s| s.last_error = Some(message));
        let delay = backoff.next_delay(jitter());
        self.board.update(&self.link.peer, |s| s.backoff = Some(delay));
        let until = tokio::time::Instant::now() + delay;
        async move {
            while tokio::time::Instant::now() < until {
                tokio::time::sleep_until(until.min(tokio::time::Instant::now() + PROBE_EVERY)).await;
                if !leads(&self.node) {
                    return;
                }
                let probed = self.link.probe(&self.identity).await;
                self.board.update(&self.link.peer, |s| s.reachable = Some(reached(&probed)));
                match probed {
                    Ok(()) if unreachable => return,
                    Ok(()) => {}
                    Err(e) => {
                        unreachable |= !answered(&e);
                        let message = e.to_string();
                        self.board.update(&self.link.peer, |s| s.last_error = Some(message));
                    }
                }
            }
        }
    }
}

pub(super) fn leads(node: &Node) -> bool {
    node.metrics().state == ServerState::Leader && node.check_applying().is_ok()
}

pub(super) fn applied_index(node: &Node) -> Option<u64> {
    node.raft.metrics().borrow_watched().last_applied.map(|l| l.index)
}

/// Returns once this node applied an entry after `seen` (or Raft stopped).
pub(super) async fn next_apply(node: &Node, seen: Option<u64>) {
    let mut metrics = node.raft.metrics();
    loop {
        if metrics.borrow_watched().last_applied.map(|l| l.index) != seen {
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The running senders of a node, and its fetcher of files from the peers
/// ([`super::files::Fetcher`]); stop them with [`FederationSender::shutdown`]. They also stop
/// when the node stops.
pub struct FederationSender {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FederationSender {
    /// One loop per peer of `trust`, sending as `identity` over `tls`, reporting to the node's
    /// board.
    pub fn spawn(
        node: Arc<Node>,
        identity: Arc<HubIdentity>,
        trust: &Trust,
        tls: &WatchedFederationTls,
    ) -> Result<Self, TransportError> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for peer in trust.peers() {
            let link = PeerLink::new(tls, &peer.name, &peer.endpoints)?;
            let sender = PeerSender {
                node: node.clone(),
                identity: identity.clone(),
                board: node.federation.clone(),
                link,
                acknowledged_here: 0,
                batch_limit: BATCH_MESSAGES,
            };
            let stop = either_stop(stopped.clone(), node.stopping.clone());
            let span = info_span!("federation sender", peer = %peer.name);
            tasks.push(tokio::spawn(sender.run(stop).instrument(span)));
        }
        info!(hub = %identity.hub(), peers = tasks.len(), "federation senders started");
        let fetcher = super::files::Fetcher::new(node.clone(), identity.clone(), trust, tls)?;
        let fetcher_stop = either_stop(stopped.clone(), node.stopping.clone());
        tasks.push(tokio::spawn(fetcher.run(fetcher_stop).instrument(info_span!("federation fetcher"))));
        Ok(Self { stop, tasks })
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                warn!("federation sender task failed: {e}");
            }
        }
    }
}

/// A stop signal that turns true when either `a` or `b` does.
fn either_stop(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = a.wait_for(|s| *s) => {}
            _ = b.wait_for(|s| *s) => {}
            () = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(seqs: std::ops::RangeInclusive<u64>, bytes: usize) -> Vec<OutboxMessage> {
        let to = HubName::new("gunma").unwrap();
        seqs.map(|seq| OutboxMessage { to: to.clone(), seq, body: vec![seq as u8; bytes], queued_at_ms: 0 }).collect()
    }

    /// A stream with `assigned` messages queued, `acknowledged` of them acknowledged.
    fn stream(assigned: u64, acknowledged: u64) -> Outbound {
        let mut s = Outbound::default();
        s.assign(assigned).unwrap();
        s.acknowledge(acknowledged).unwrap();
        s
    }

    fn range(first: u64, count: u64) -> SeqRange {
        SeqRange::of_batch(first, count).unwrap()
    }

    #[test]
    fn backoff_starts_sub_second_doubles_and_caps() {
        let mut b = Backoff::default();
        let full: Vec<u64> = (0..10).map(|_| b.next_delay(1.0).as_millis() as u64).collect();
        assert_eq!(full, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(125), "jitter takes at most half");
        assert_eq!(b.next_delay(0.5), Duration::from_millis(375));
        assert_eq!(b.next_delay(7.0), Duration::from_millis(1000), "jitter is clamped");
    }

    #[test]
    fn jitter_is_a_fraction() {
        assert!((0..100).map(|_| jitter()).all(|j| (0.0..=1.0).contains(&j)));
    }

    #[test]
    fn a_batch_takes_at_most_256_messages() {
        let batch = Batch::cut(5, queued(5..=304, 10), BATCH_MESSAGES).unwrap();
        assert_eq!((batch.first_seq, batch.bodies.len()), (5, BATCH_MESSAGES));
        assert_eq!(batch.bodies[0], vec![5u8; 10]);
    }

    #[test]
    fn a_batch_stops_at_a_mebibyte_but_always_carries_one_message() {
        let batch = Batch::cut(1, queued(1..=10, 300 * 1024), BATCH_MESSAGES).unwrap();
        assert_eq!(batch.bodies.len(), 3, "3 x 300 KiB fit in 1 MiB, 4 do not");
        let huge = Batch::cut(1, queued(1..=2, 2 * BATCH_BYTES), BATCH_MESSAGES).unwrap();
        assert_eq!(huge.bodies.len(), 1);
        assert_eq!(Batch::cut(1, queued(1..=10, 1), 4).unwrap().bodies.len(), 4, "the current limit");
    }

    #[test]
    fn a_hole_in_the_outbox_is_an_error_never_skipped() {
        let mut messages = queued(3..=6, 1);
        messages.remove(1);
        assert!(matches!(Batch::cut(3, messages, 8), Err(SendError::Outbox(_))));
        assert!(matches!(Batch::cut(2, queued(3..=4, 1), 8), Err(SendError::Outbox(_))));
        assert!(matches!(Batch::cut(1, vec![], 8), Err(SendError::Outbox(_))));
    }

    #[test]
    fn batches_shrink_to_what_the_peer_takes_and_grow_back() {
        // The peer applies 16 per entry: the next batch carries 16.
        assert_eq!(next_limit(BATCH_MESSAGES, 256, 16), 16);
        // Whole batches taken: doubling back up to the maximum.
        assert_eq!(next_limit(16, 16, 16), 32);
        assert_eq!(next_limit(200, 10, 10), BATCH_MESSAGES);
        // Nothing applied still sends one message next.
        assert_eq!(next_limit(64, 64, 0), 1);
    }

    #[test]
    fn a_receipt_acknowledges_what_the_peer_applied() {
        // Everything applied.
        assert_eq!(after_receipt(stream(10, 4), range(5, 6), 10), Ok(10));
        // A retry after a lost answer: the peer had more than the batch started at.
        assert_eq!(after_receipt(stream(10, 4), range(5, 3), 9), Ok(9));
        // Only part applied: resend from 7.
        assert_eq!(after_receipt(stream(10, 4), range(5, 6), 6), Ok(6));
        // Nothing new (e.g. the peer's leader is still catching up): resend the same.
        assert_eq!(after_receipt(stream(10, 4), range(5, 6), 4), Ok(4));
    }

    #[test]
    fn a_receipt_that_contradicts_the_stream_acknowledges_nothing() {
        // The peer claims more than was ever assigned.
        assert!(matches!(after_receipt(stream(10, 4), range(5, 6), 11), Err(StreamError::AheadOfOrigin { .. })));
        // A gap below what it acknowledged before: it lost replicated state.
        assert!(matches!(after_receipt(stream(10, 4), range(5, 6), 2), Err(StreamError::PeerWentBack { .. })));
    }

    #[test]
    fn refusals_are_not_failed_over() {
        for code in [Code::Unauthenticated, Code::PermissionDenied, Code::FailedPrecondition, Code::InvalidArgument] {
            assert!(is_refusal(code), "{code:?}");
        }
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Internal, Code::Unknown] {
            assert!(!is_refusal(code), "{code:?}");
        }
    }
}
