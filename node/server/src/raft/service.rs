//! The internal Raft service: what peers call on this node.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use futures::stream::BoxStream;
use kizuna_proto::raft::raft_transport_service_server::RaftTransportService;
use kizuna_proto::raft::{
    ForwardWriteRequest, ForwardWriteResponse, NodeStatus, NodeStatusRequest, RaftPayload, ReadIndexRequest,
    ReadIndexResponse, SnapshotChunk,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, TransferLeaderRequest, VoteRequest,
};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::peers::health_message;
use super::{Snapshot, SnapshotMeta, TypeConfig, Vote, decode, encode};
use crate::node::{Node, NodeError};
use kizuna_domain::Envelope;
use kizuna_store::SnapshotFile;

pub struct RaftService {
    node: Arc<Node>,
}

impl RaftService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// Why a replication session was refused, if it was: set by its requests, sent after its answers.
#[derive(Clone, Default)]
struct Refusal(Arc<Mutex<Option<Status>>>);

impl Refusal {
    fn set(&self, status: Status) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
    }

    fn take(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The leader's requests of one replication session, decoded, until the leader ends it, the
/// connection breaks, or a request does not decode (then `refused` says why).
fn decoded_requests(
    incoming: Streaming<RaftPayload>,
    refused: Refusal,
) -> impl futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + 'static {
    futures::stream::unfold((incoming, refused), |(mut incoming, refused)| async move {
        let payload = match incoming.message().await {
            Ok(Some(payload)) => payload,
            Ok(None) => return None,
            Err(status) => {
                tracing::debug!("replication stream from the leader broken: {status}");
                return None;
            }
        };
        match decode::<AppendEntriesRequest<TypeConfig>>(&payload.data) {
            Ok(rpc) => Some((rpc, (incoming, refused))),
            Err(e) => {
                tracing::warn!("undecodable AppendEntries request: the replication stream ends: {e}");
                refused.set(bad_payload(e));
                None
            }
        }
    })
}

fn bad_payload(e: kizuna_store::CodecError) -> Status {
    Status::invalid_argument(format!("undecodable raft payload: {e}"))
}

fn payload<T: serde::Serialize>(value: &T) -> Response<RaftPayload> {
    Response::new(RaftPayload { data: encode(value) })
}

#[tonic::async_trait]
impl RaftTransportService for RaftService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let resp = self.node.raft.append_entries(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        // Anything but "your vote is outdated" comes from the current leader, heartbeats included.
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            self.node.leader_contact.record();
        }
        Ok(payload(&resp))
    }

    type AppendEntriesStreamStream = BoxStream<'static, Result<RaftPayload, Status>>;

    /// The follower's side of pipelined replication (`raft::stream`): requests are handed to
    /// Raft as they arrive and each answer goes back once its entries are flushed, in order.
    async fn append_entries_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::AppendEntriesStreamStream>, Status> {
        // An undecodable request ends the session: the answers owed so far are sent, then the
        // refusal, so the leader sees why (it opens a new session).
        let refused = Refusal::default();
        let requests = decoded_requests(req.into_inner(), refused.clone());
        // A session stays open while the leader has nothing new: both directions end when this
        // node stops — Raft holds the incoming half until it ends, and the server's graceful
        // shutdown waits for every stream.
        let requests = requests.take_until(Box::pin(self.node.stopped()));
        let node = self.node.clone();
        let answers = self.node.raft.stream_append(Box::pin(requests)).map(move |answer| match answer {
            Ok(result) => {
                // Anything but "your vote is outdated" comes from the current leader.
                if !matches!(result, Err(StreamAppendError::HigherVote(_))) {
                    node.leader_contact.record();
                }
                Ok(RaftPayload { data: encode(&result) })
            }
            Err(fatal) => Err(Status::unavailable(fatal.to_string())),
        });
        let refusal = futures::stream::iter(std::iter::from_fn(move || refused.take().map(Err)));
        Ok(Response::new(answers.chain(refusal).take_until(Box::pin(self.node.stopped())).boxed()))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let resp = self.node.raft.vote(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(payload(&resp))
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let resp = self.node.raft.pre_vote(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(payload(&resp))
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftPayload>, Status> {
        let mut chunks = req.into_inner();
        let first = chunks.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let header = first.header.ok_or_else(|| Status::invalid_argument("first snapshot chunk has no header"))?;
        let vote: Vote = decode(&header.vote).map_err(bad_payload)?;
        let meta: SnapshotMeta = decode(&header.meta).map_err(bad_payload)?;
        let path = self.node.incoming_snapshot_path();
        let announced = (!header.streamed).then_some(header.total_bytes);
        let result = receive_to_file(&path, first.data, &mut chunks, announced).await;
        if let Err(status) = result {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(status);
        }
        let snapshot = Snapshot { meta, snapshot: SnapshotFile { path: path.clone() } };
        let resp = self.node.raft.install_full_snapshot(vote, snapshot).await;
        // Installed snapshots are moved away; anything left is garbage.
        let _ = tokio::fs::remove_file(&path).await;
        let resp = resp.map_err(|e| Status::unavailable(e.to_string()))?;
        if resp.vote == vote {
            self.node.leader_contact.record();
        }
        Ok(payload(&resp))
    }

    async fn transfer_leader(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let resp = self.node.raft.handle_transfer_leader(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(payload(&resp))
    }

    async fn forward_write(&self, req: Request<ForwardWriteRequest>) -> Result<Response<ForwardWriteResponse>, Status> {
        let envelope: Envelope = decode(&req.into_inner().command).map_err(bad_payload)?;
        // Forwarded writes are proposed here or refused: never forwarded a second time, so a
        // leader change cannot bounce a write around the hub.
        let applied = self.node.propose_here(envelope).await.map_err(NodeError::into_status)?;
        Ok(Response::new(ForwardWriteResponse { result: encode(&applied), log_index: applied.log_index }))
    }

    async fn read_index(&self, _req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        let read_index = self.node.leader_read_index().await.map_err(NodeError::into_status)?;
        Ok(Response::new(ReadIndexResponse { read_index }))
    }

    async fn get_node_status(&self, _req: Request<NodeStatusRequest>) -> Result<Response<NodeStatus>, Status> {
        Ok(Response::new(health_message(self.node.local_health())))
    }
}

/// Writes a snapshot stream to `path`. Its length, when `announced`, must match; a streamed
/// one (no length) is proven complete by its own trailer, read before anything is installed.
async fn receive_to_file(
    path: &std::path::Path,
    first_data: Vec<u8>,
    chunks: &mut Streaming<SnapshotChunk>,
    announced: Option<u64>,
) -> Result<(), Status> {
    let io = |e: std::io::Error| Status::internal(format!("writing snapshot: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut received = first_data.len() as u64;
    file.write_all(&first_data).await.map_err(io)?;
    while let Some(chunk) = chunks.message().await? {
        received += chunk.data.len() as u64;
        if announced.is_some_and(|total| received > total) {
            return Err(Status::invalid_argument("snapshot stream longer than announced"));
        }
        file.write_all(&chunk.data).await.map_err(io)?;
    }
    if let Some(total) = announced.filter(|total| received != *total) {
        return Err(Status::invalid_argument(format!("snapshot stream ended after {received} of {total} bytes")));
    }
    file.sync_all().await.map_err(io)?;
    Ok(())
}
