//! The Raft network: tonic clients to peers' internal Raft service.
//!
//! One cached channel per peer address ([`PeerChannels`]); a node has two pools, Raft
//! replication's (made on Raft's thread, `raft/thread.rs`) and the one its write forwarding,
//! read barriers and status queries share. How a channel is made is a [`Connector`] passed
//! in, so that TLS or a simulated network can replace plain TCP without touching the rest.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use kizuna_proto::raft::raft_transport_service_client::RaftTransportServiceClient;
use kizuna_proto::raft::{NodeStatusRequest, RaftPayload, SnapshotChunk, SnapshotHeader};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend, RaftNetworkV2};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};

use super::{HubNode, NodeId, Snapshot, TypeConfig, Vote, decode, encode};
use kizuna_store::SnapshotFile;
use kizuna_store::{ExportStream, Outgoing};

/// Bytes of snapshot data per streamed chunk: far below gRPC's 4 MiB message limit.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Makes a channel to a peer's `host:port`.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, addr: &str) -> Result<Channel, tonic::transport::Error>;
}

/// Plain TCP (h2c). Channels connect lazily and reconnect by themselves.
pub struct TcpConnector {
    pub connect_timeout: Duration,
}

impl Default for TcpConnector {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(2) }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        Ok(Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy())
    }
}

/// Reaches some peers through other addresses (a relay, a tunnel, a fault-injecting proxy):
/// a peer's raft address found in `routes` is dialled at the mapped address instead.
pub struct RoutedConnector {
    pub routes: Arc<Mutex<HashMap<String, String>>>,
    pub inner: Arc<dyn Connector>,
}

impl Connector for RoutedConnector {
    fn connect(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let routed = self.routes.lock().unwrap_or_else(|p| p.into_inner()).get(addr).cloned();
        self.inner.connect(routed.as_deref().unwrap_or(addr))
    }
}

/// The channel cache: one channel per peer address.
#[derive(Clone)]
pub struct PeerChannels {
    connector: Arc<dyn Connector>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl PeerChannels {
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self { connector, channels: Arc::default() }
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let ch = self.connector.connect(addr)?;
        channels.insert(addr.to_owned(), ch.clone());
        Ok(ch)
    }

    pub fn raft_client(&self, addr: &str) -> Result<RaftTransportServiceClient<Channel>, tonic::transport::Error> {
        Ok(RaftTransportServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }
}

/// Creates per-peer clients for openraft.
#[derive(Clone)]
pub struct Network {
    channels: PeerChannels,
}

impl Network {
    pub fn new(channels: PeerChannels) -> Self {
        Self { channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &HubNode) -> PeerClient {
        PeerClient { target, addr: node.raft_addr.clone(), channels: self.channels.clone() }
    }
}

pub struct PeerClient {
    pub(super) target: NodeId,
    addr: String,
    channels: PeerChannels,
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&AnyError::error(e.to_string())))
}

pub(super) fn network(e: impl std::fmt::Display) -> NetworkError<TypeConfig> {
    NetworkError::new(&AnyError::error(e.to_string()))
}

/// Maps a transport failure: a peer that cannot be reached at all gets backed off from.
pub(super) fn status_to_rpc(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable => unreachable(status.message()),
        _ => RPCError::Network(network(format!("{}: {}", status.code(), status.message()))),
    }
}

impl PeerClient {
    pub(super) fn client(&self) -> Result<RaftTransportServiceClient<Channel>, RPCError<TypeConfig>> {
        self.channels.raft_client(&self.addr).map_err(unreachable)
    }

    /// One RPC to the peer; its round trip (or its failure) goes to the metrics by peer and
    /// kind (`kizuna_raft_rpc_seconds`, `kizuna_raft_rpc_failures_total`).
    async fn call<Req, Resp, F, Fut>(
        &self,
        (rpc, req): (&'static str, &Req),
        option: &RPCOption,
        f: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: for<'de> serde::Deserialize<'de>,
        F: FnOnce(RaftTransportServiceClient<Channel>, RaftPayload) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let payload = RaftPayload { data: encode(req) };
        let started = std::time::Instant::now();
        let reply = tokio::time::timeout(option.hard_ttl(), f(self.client()?, payload)).await;
        let labels = [("peer", self.target.to_string()), ("rpc", rpc.to_owned())];
        if matches!(reply, Ok(Ok(_))) {
            metrics::histogram!("kizuna_raft_rpc_seconds", &labels).record(started.elapsed().as_secs_f64());
        } else {
            metrics::counter!("kizuna_raft_rpc_failures_total", &labels).increment(1);
        }
        let reply = reply
            .map_err(|_| {
                RPCError::Network(network(format!(
                    "no answer from node {} within {:?}",
                    self.target,
                    option.hard_ttl()
                )))
            })?
            .map_err(status_to_rpc)?;
        decode(&reply.into_inner().data).map_err(|e| RPCError::Network(network(e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(("append_entries", &rpc), &option, |mut c, p| async move { c.append_entries(p).await }).await
    }

    /// Pipelined: requests go out as openraft makes them, answers come back in order
    /// ([`super::stream`]); openraft's default would wait for each answer before the next.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(super::stream::open(self, input, option))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(("vote", &rpc), &option, |mut c, p| async move { c.vote(p).await }).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(("pre_vote", &rpc), &option, |mut c, p| async move { c.pre_vote(p).await }).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(("transfer_leader", &req), &option, |mut c, p| async move { c.transfer_leader(p).await }).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let stream_err = |e: String| StreamingError::Network(network(e));
        metrics::counter!("kizuna_raft_snapshot_sends_total", "peer" => self.target.to_string()).increment(1);
        let mut client = self.channels.raft_client(&self.addr).map_err(|e| stream_err(e.to_string()))?;
        let mut cancel = std::pin::pin!(cancel);
        let streamed = takes_streamed_snapshots(&mut client).await;
        // A checkpoint not exported before is exported as it is sent (to a peer that takes
        // that), or first (seconds to minutes on a large hub): off the async threads either way.
        // Cancelled, the export still finishes and stays beside its checkpoint for the next send.
        let data = snapshot.snapshot.clone();
        let prepare = tokio::task::spawn_blocking(move || data.to_send(streamed, SNAPSHOT_CHUNK_BYTES));
        let outgoing = tokio::select! {
            closed = &mut cancel => return Err(StreamingError::Closed(closed)),
            prepared = prepare => prepared
                .map_err(|e| stream_err(format!("snapshot export task: {e}")))?
                .map_err(|e| stream_err(format!("snapshot export: {e}")))?,
        };
        let (mut source, total_bytes) = match outgoing {
            Outgoing::Whole(path) => {
                let file = tokio::fs::File::open(&path).await.map_err(|e| stream_err(format!("snapshot file: {e}")))?;
                let len = file.metadata().await.map_err(|e| stream_err(format!("snapshot file: {e}")))?.len();
                (SnapshotSource::File(file), len)
            }
            Outgoing::Exporting(export) => (SnapshotSource::Export(export), 0),
        };
        let streamed = matches!(source, SnapshotSource::Export(_));
        tracing::info!(peer = self.target, streamed, total_bytes, "sending a snapshot");
        let header = SnapshotHeader { vote: encode(&vote), meta: encode(&snapshot.meta), total_bytes, streamed };

        // Chunks are read as the stream is polled: the snapshot is never held in memory as a
        // whole.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let reader = tokio::spawn(async move {
            let mut header = Some(header);
            loop {
                let part = source.next_part().await?;
                let first = header.take();
                let done = part.is_none();
                if done && first.is_none() {
                    return Ok::<(), std::io::Error>(());
                }
                if tx.send(SnapshotChunk { header: first, data: part.unwrap_or_default() }).await.is_err() || done {
                    return Ok(());
                }
            }
        });
        let send = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let reply = tokio::select! {
            closed = &mut cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
            reply = send => reply,
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(stream_err(format!("reading snapshot: {e}"))),
            Err(e) => return Err(stream_err(format!("snapshot reader task: {e}"))),
        }
        let reply = reply.map_err(|s| match s.code() {
            tonic::Code::Unavailable => StreamingError::Unreachable(Unreachable::new(&AnyError::error(s.message()))),
            _ => stream_err(format!("{}: {}", s.code(), s.message())),
        })?;
        decode(&reply.into_inner().data).map_err(|e| stream_err(e.to_string()))
    }
}

/// How long a peer is given to say whether it takes a streamed snapshot.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// Whether the peer's build takes a snapshot streamed as it is exported: asked at every send (a
/// peer may have been upgraded since). One that does not answer is sent a whole file.
async fn takes_streamed_snapshots(client: &mut RaftTransportServiceClient<Channel>) -> bool {
    let asked = tokio::time::timeout(STATUS_WAIT, client.get_node_status(NodeStatusRequest {}));
    matches!(asked.await, Ok(Ok(status)) if status.get_ref().takes_streamed_snapshots)
}

/// Where the bytes of a snapshot being sent come from.
enum SnapshotSource {
    File(tokio::fs::File),
    Export(ExportStream),
}

impl SnapshotSource {
    /// The next part to send, `None` at the end.
    async fn next_part(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Self::File(file) => {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                let n = file.read(&mut buf).await?;
                buf.truncate(n);
                Ok((n > 0).then_some(buf))
            }
            Self::Export(export) => export.next().await,
        }
    }
}
