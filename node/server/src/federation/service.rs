//! The `FederationService` a hub serves to its peers, and the signed requests a hub sends.
//!
//! `Probe` answers; `Deliver` checks a batch, then hands it to a [`BatchSink`] (the node's
//! write path), which applies it exactly once and in order in replicated state, and answers
//! the highest sequence applied (see `docs/federation.md`); `FetchFile` streams the bytes of a
//! file the asking hub was told of, from a [`FileSource`] (the node).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kizuna_domain::attachments::{Variant, chunk_count};
use kizuna_domain::federation::{BatchHeader, FetchHeader, HubName, PayloadDigest, ProbeHeader, SeqRange, StreamError};
use kizuna_domain::model::AttachmentId;
use kizuna_proto::federation::federation_service_client::FederationServiceClient;
use kizuna_proto::federation::federation_service_server::{FederationService, FederationServiceServer};
use kizuna_proto::federation::{
    DeliverRequest, DeliverResponse, FetchFileRequest, FetchFileResponse, ProbeRequest, ProbeResponse,
};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::files::{FileSource, variant_from_wire, variant_to_wire};
use super::inbox::{BatchSink, VerifiedBatch};
use super::transport::{TransportError, WatchedFederationTls};
use super::{HubIdentity, Refusal, Trust};
use crate::tls::accept::TlsIncoming;

/// Largest batch a peer may send, in bytes of gRPC message.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// What a hub serves to its peers.
pub struct FederationEndpoint {
    trust: Arc<Trust>,
    /// Tells which peer's CA issued a client certificate, as the TLS material is now.
    tls: WatchedFederationTls,
    sink: Arc<dyn BatchSink>,
    files: Arc<dyn FileSource>,
    audited: Arc<RefusalLimiter>,
}

/// At most one audit entry per claimed origin and kind of refusal per minute: a peer retrying
/// with a bad key (or someone knocking) is audited without flooding the chain.
#[derive(Default)]
struct RefusalLimiter {
    last: std::sync::Mutex<std::collections::HashMap<(String, std::mem::Discriminant<Refusal>), Instant>>,
}

impl RefusalLimiter {
    const EVERY: Duration = Duration::from_secs(60);
    /// Names are at most 64 characters; past this many (origin, kind) pairs the memory starts over.
    const MAX_REMEMBERED: usize = 1024;

    fn due(&self, origin: &str, refusal: &Refusal) -> bool {
        let Ok(mut last) = self.last.lock() else { return true };
        if last.len() >= Self::MAX_REMEMBERED {
            last.clear();
        }
        let now = Instant::now();
        let key = (origin.to_owned(), std::mem::discriminant(refusal));
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < Self::EVERY => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

impl FederationEndpoint {
    /// Serves `trust`'s peers; verified batches go to `node`, files come from it.
    pub fn new<N: BatchSink + FileSource>(trust: Arc<Trust>, tls: WatchedFederationTls, node: Arc<N>) -> Self {
        Self { trust, tls, sink: node.clone(), files: node, audited: Arc::default() }
    }

    fn admit_probe(&self, r: &ProbeRequest, chain: Option<&[CertificateDer<'static>]>) -> Result<(), Refusal> {
        let origin = origin_hub(&r.origin_hub)?;
        let destination = destination_hub(&r.destination_hub)?;
        let header = ProbeHeader { origin, destination, sent_at_ms: r.sent_at_ms };
        self.trust.verify_probe(&header, &r.key_id, &r.signature, now_ms())?;
        self.tls.current().issuers().check(&header.origin, chain)
    }

    fn admit_batch(
        &self,
        r: &DeliverRequest,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<BatchHeader, Refusal> {
        let origin = origin_hub(&r.origin_hub)?;
        let destination = destination_hub(&r.destination_hub)?;
        let seqs = SeqRange::of_batch(r.first_seq, r.messages.len() as u64).map_err(|e| {
            Refusal::Malformed(format!("first_seq {} with {} messages: {e}", r.first_seq, r.messages.len()))
        })?;
        let header = BatchHeader { origin, destination, seqs, payload: PayloadDigest::of(&r.messages) };
        self.trust.verify_batch(&header, &r.key_id, &r.signature, now_ms() / 1000)?;
        self.tls.current().issuers().check(&header.origin, chain)?;
        Ok(header)
    }
}

impl FederationEndpoint {
    /// A verified fetch: who asks, for which blob.
    fn admit_fetch(
        &self,
        r: &FetchFileRequest,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<(HubName, AttachmentId, Variant), Refusal> {
        let variant = variant_from_wire(r.variant)
            .ok_or_else(|| Refusal::Malformed(format!("variant {}: no such variant", r.variant)))?;
        let header = fetch_header(r, variant)?;
        self.trust.verify_fetch(&header, &r.key_id, &r.signature, now_ms())?;
        self.tls.current().issuers().check(&header.origin, chain)?;
        Ok((header.origin, AttachmentId(r.file_id), variant))
    }
}

fn fetch_header(r: &FetchFileRequest, variant: Variant) -> Result<FetchHeader, Refusal> {
    Ok(FetchHeader {
        origin: origin_hub(&r.origin_hub)?,
        destination: destination_hub(&r.destination_hub)?,
        sent_at_ms: r.sent_at_ms,
        file: r.file_id,
        variant: variant_to_wire(variant) as u8,
        from_chunk: r.from_chunk,
    })
}

/// The claimed origin; a name that is not even a valid hub name is no listed hub.
fn origin_hub(name: &str) -> Result<HubName, Refusal> {
    HubName::new(name).map_err(|_| Refusal::UnlistedHub(name.chars().take(64).collect()))
}

fn destination_hub(name: &str) -> Result<HubName, Refusal> {
    HubName::new(name).map_err(|e| Refusal::Malformed(format!("destination_hub: {e}")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl FederationEndpoint {
    /// What the listener calls for a refused TLS handshake: logged, and audited like a refused
    /// request (at most once a minute per address).
    fn handshake_auditor(&self) -> Arc<dyn Fn(std::net::SocketAddr, String) + Send + Sync> {
        let (sink, audited) = (self.sink.clone(), self.audited.clone());
        Arc::new(move |from, reason| {
            warn!(%from, %reason, "federation TLS handshake refused");
            if audited.due(&from.ip().to_string(), &Refusal::Handshake(String::new())) {
                let what = format!("federation: refused a TLS handshake from {from}: {reason}");
                if let Err(e) = sink.audit_refusal(what) {
                    warn!(%e, "could not journal the refusal for the audit chain");
                }
            }
        })
    }

    /// Logs and audits a refused request (see [`RefusalLimiter`]); the status the peer gets.
    fn refused(&self, rpc: &str, claimed_origin: &str, refusal: Refusal) -> Status {
        let origin: String = claimed_origin.chars().take(64).collect();
        warn!(rpc, %origin, %refusal, "federation request refused");
        if self.audited.due(&origin, &refusal) {
            let what = format!("federation: refused {rpc} claiming to be from {origin:?}: {refusal}");
            if let Err(e) = self.sink.audit_refusal(what) {
                warn!(%e, "could not journal the refusal for the audit chain");
            }
        }
        refusal_status(refusal)
    }
}

/// The status a refused peer gets.
fn refusal_status(refusal: Refusal) -> Status {
    let message = refusal.to_string();
    match refusal {
        Refusal::UnlistedHub(_)
        | Refusal::UnknownKey { .. }
        | Refusal::ExpiredKey { .. }
        | Refusal::BadSignature { .. } => Status::unauthenticated(message),
        Refusal::WrongCa { .. } => Status::permission_denied(message),
        Refusal::NotForThisHub { .. } | Refusal::StaleProbe { .. } => Status::failed_precondition(message),
        Refusal::Malformed(_) => Status::invalid_argument(message),
        // Never answered: a refused handshake ends the connection before any request.
        Refusal::Handshake(_) => Status::unauthenticated(message),
    }
}

#[tonic::async_trait]
impl FederationService for FederationEndpoint {
    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let chain = request.peer_certs();
        let r = request.into_inner();
        self.admit_probe(&r, chain.as_deref().map(Vec::as_slice))
            .map_err(|e| self.refused("Probe", &r.origin_hub, e))?;
        Ok(Response::new(ProbeResponse { hub: self.trust.this_hub().to_string(), received_at_ms: now_ms() }))
    }

    async fn deliver(&self, request: Request<DeliverRequest>) -> Result<Response<DeliverResponse>, Status> {
        let chain = request.peer_certs();
        let r = request.into_inner();
        let header = self
            .admit_batch(&r, chain.as_deref().map(Vec::as_slice))
            .map_err(|e| self.refused("Deliver", &r.origin_hub, e))?;
        // A gap is not an error: the answer's highest_applied tells the origin where to resend
        // from (it is below first_seq - 1), exactly as for a partly duplicate batch.
        let batch = VerifiedBatch { header, key_id: r.key_id, signature: r.signature, messages: r.messages };
        let receipt = self.sink.apply(batch).await?;
        Ok(Response::new(DeliverResponse { highest_applied: receipt.highest_applied() }))
    }

    type FetchFileStream = FileStream;

    async fn fetch_file(&self, request: Request<FetchFileRequest>) -> Result<Response<FileStream>, Status> {
        let chain = request.peer_certs();
        let r = request.into_inner();
        let (peer, file, variant) = self
            .admit_fetch(&r, chain.as_deref().map(Vec::as_slice))
            .map_err(|e| self.refused("FetchFile", &r.origin_hub, e))?;
        let blob = self.files.shared_blob(&peer, file, variant).await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(send_file(self.files.clone(), blob, r.from_chunk, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type FileStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<FetchFileResponse, Status>> + Send>>;

/// Sends the chunks of `blob` from `first` on; the first message also names its size and hash.
async fn send_file(
    files: Arc<dyn FileSource>,
    blob: kizuna_domain::attachments::Blob,
    first: u32,
    tx: mpsc::Sender<Result<FetchFileResponse, Status>>,
) {
    for index in first..chunk_count(blob.size) {
        let message = match files.chunk(blob.hash, index) {
            Ok(chunk) => {
                let described = index == first;
                let (size, sha256) = if described { (blob.size, blob.hash.to_string()) } else { (0, String::new()) };
                Ok(FetchFileResponse { size, sha256, index, chunk })
            }
            Err(status) => Err(status),
        };
        let failed = message.is_err();
        if tx.send(message).await.is_err() || failed {
            return;
        }
    }
}

/// Serves federation on `listener` with mutual TLS until `shutdown` completes. The TLS
/// handshakes are this module's own (see [`accept_tls`]), so a refused one is audited.
pub async fn serve(
    listener: TcpListener,
    tls: WatchedFederationTls,
    endpoint: FederationEndpoint,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TransportError> {
    // Checked once: a hub without peers has no listener; later material keeps its peers.
    let first = tls.current().server_rustls()?;
    let acceptor = move || TlsAcceptor::from(tls.current().server_rustls().unwrap_or_else(|_| first.clone()));
    let incoming = TlsIncoming::new(listener, acceptor, endpoint.handshake_auditor());
    let service = FederationServiceServer::new(endpoint)
        .max_decoding_message_size(MAX_BATCH_BYTES)
        .max_encoding_message_size(MAX_BATCH_BYTES);
    let served =
        tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, shutdown).await;
    Ok(served?)
}

/// A client of `peer`'s federation service at `endpoint` (`host:port`, the host must be named
/// in the peer node's certificate), with the TLS material of the moment at each (re)connection.
/// Connects lazily: the first call dials.
pub fn connect(
    tls: &WatchedFederationTls,
    peer: &HubName,
    endpoint: &str,
) -> Result<FederationServiceClient<Channel>, TransportError> {
    tls.current().client_config(peer)?;
    let (tls, peer) = (tls.clone(), peer.clone());
    let client: crate::tls::ClientTls = Arc::new(move || {
        tls.current().client_config(&peer).map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))
    });
    let channel = crate::tls::dialled_channel(endpoint, client, std::time::Duration::from_secs(2))
        .map_err(|source| TransportError::Endpoint { endpoint: endpoint.to_owned(), source })?;
    Ok(FederationServiceClient::new(channel).max_decoding_message_size(MAX_BATCH_BYTES))
}

/// A probe of `to`, signed now by this hub.
pub fn signed_probe(identity: &HubIdentity, to: &HubName) -> ProbeRequest {
    let header = ProbeHeader { origin: identity.hub().clone(), destination: to.clone(), sent_at_ms: now_ms() };
    ProbeRequest {
        origin_hub: header.origin.to_string(),
        destination_hub: header.destination.to_string(),
        sent_at_ms: header.sent_at_ms,
        key_id: identity.key_id().to_string(),
        signature: identity.sign(&header.canonical_bytes()),
    }
}

/// A request for the bytes of `to`'s attachment `file` (its `variant`) from chunk
/// `from_chunk` on, signed now by this hub.
pub fn signed_fetch(
    identity: &HubIdentity,
    to: &HubName,
    file: AttachmentId,
    variant: Variant,
    from_chunk: u32,
) -> FetchFileRequest {
    let wire = variant_to_wire(variant);
    let header = FetchHeader {
        origin: identity.hub().clone(),
        destination: to.clone(),
        sent_at_ms: now_ms(),
        file: file.0,
        variant: wire as u8,
        from_chunk,
    };
    FetchFileRequest {
        origin_hub: header.origin.to_string(),
        destination_hub: header.destination.to_string(),
        sent_at_ms: header.sent_at_ms,
        key_id: identity.key_id().to_string(),
        signature: identity.sign(&header.canonical_bytes()),
        file_id: file.0,
        variant: wire as i32,
        from_chunk,
    }
}

/// A batch of `messages` for `to`, starting at stream sequence `first_seq`, signed by this hub.
pub fn signed_batch(
    identity: &HubIdentity,
    to: &HubName,
    first_seq: u64,
    messages: Vec<Vec<u8>>,
) -> Result<DeliverRequest, StreamError> {
    let seqs = SeqRange::of_batch(first_seq, messages.len() as u64)?;
    let header = BatchHeader {
        origin: identity.hub().clone(),
        destination: to.clone(),
        seqs,
        payload: PayloadDigest::of(&messages),
    };
    Ok(DeliverRequest {
        origin_hub: header.origin.to_string(),
        destination_hub: header.destination.to_string(),
        key_id: identity.key_id().to_string(),
        signature: identity.sign(&header.canonical_bytes()),
        first_seq,
        messages,
    })
}
