//! Files of posts in rooms shared across hubs, at run time (the rules are
//! `kizuna_domain::federation::files`): the bytes a hub serves to a peer that was told of a
//! file ([`FileSource`]), and the leader's fetcher, which gets the bytes of the files this hub
//! was told of ([`Fetcher`]).
//!
//! The fetcher downloads a whole blob into the node's upload directory, checks its size,
//! SHA-256 and type (detected from the bytes again: a peer is trusted no more than a client),
//! then stores it chunk by chunk through the log (`LogCommand::FetchedChunk`), as an upload is
//! stored. A peer that cannot be reached, has no quorum or does not have the file complete
//! yet is asked again with backoff; a peer that says the file is not shared with this hub, or
//! bytes that are not what the message described, end the fetch (`LogCommand::FetchFailed`:
//! the file shows why).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kizuna_domain::attachments::{Availability, Blob, BlobHash, Fetch, Variant, chunk_count};
use kizuna_domain::federation::HubName;
use kizuna_domain::federation::files::fetchable_by;
use kizuna_domain::model::AttachmentId;
use kizuna_domain::{CommandResult, Envelope, HubView, LogCommand};
use kizuna_proto::federation::FileVariant;
use tokio::sync::watch;
use tonic::{Code, Status};
use tracing::{info, warn};

use super::sender::{Backoff, PeerLink, SendError, applied_index, jitter, leads, next_apply};
use super::service::signed_fetch;
use super::{HubIdentity, Trust};
use crate::api::shared::domain_status;
use crate::attachments::media;
use crate::attachments::staging::{Staged, UploadError, Verified};
use crate::node::Node;

/// What a hub serves of its files to the peers; implemented by [`Node`].
#[tonic::async_trait]
pub trait FileSource: Send + Sync + 'static {
    /// The blob of `variant` of our attachment `file`, if `peer` may fetch it and it is all
    /// here; decided on state at least as new as the leader's commit.
    async fn shared_blob(&self, peer: &HubName, file: AttachmentId, variant: Variant) -> Result<Blob, Status>;
    /// The bytes of chunk `index` of a complete blob.
    fn chunk(&self, hash: BlobHash, index: u32) -> Result<Vec<u8>, Status>;
}

#[tonic::async_trait]
impl FileSource for Node {
    async fn shared_blob(&self, peer: &HubName, file: AttachmentId, variant: Variant) -> Result<Blob, Status> {
        // A follower behind the message that told the peer of the file must not answer "not
        // shared": that would end the peer's fetch for good.
        self.linearizable_barrier().await.map_err(|e| e.into_status())?;
        match fetchable_by(&self.state.hub(), peer, file, variant).map_err(domain_status)? {
            Availability::Here(blob) => Ok(blob),
            Availability::Arriving(_) => Err(Status::unavailable("this hub does not have all of the file yet")),
            // Final for the asking hub too: this hub could not get the bytes either.
            Availability::Failed { .. } | Availability::Missing => Err(Status::not_found("file")),
        }
    }

    fn chunk(&self, hash: BlobHash, index: u32) -> Result<Vec<u8>, Status> {
        self.state
            .hub()
            .chunk(hash, index)
            .ok_or_else(|| Status::internal(format!("chunk {index} of {hash} is missing")))
    }
}

/// The API's name of a variant, and back.
pub fn variant_to_wire(variant: Variant) -> FileVariant {
    match variant {
        Variant::Original => FileVariant::Original,
        Variant::Small => FileVariant::Small,
        Variant::Medium => FileVariant::Medium,
    }
}

pub fn variant_from_wire(variant: i32) -> Option<Variant> {
    match FileVariant::try_from(variant).ok()? {
        FileVariant::Original => Some(Variant::Original),
        FileVariant::Small => Some(Variant::Small),
        FileVariant::Medium => Some(Variant::Medium),
        FileVariant::Unspecified => None,
    }
}

/// How long a whole fetch may take (a 100 MiB video over a slow link), and a pause between
/// two of its messages.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Fetch records read per step, failed ones included (each due one is fetched whole before the
/// next); far more than a hub has at once, so one that fails for now never hides the others.
const FETCHES_PER_STEP: usize = 1024;
/// How often an idle fetcher looks again without a new log entry.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Why a fetch did not complete.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// Worth asking again later (unreachable, no quorum there, not all there yet, no space here).
    #[error("{0}")]
    Later(String),
    /// The file cannot be had: the fetch ends and the file shows why.
    #[error("{0}")]
    Refused(String),
}

impl FetchError {
    /// Only the peer's NOT_FOUND ends a fetch: the file is not shared with this hub (any more).
    fn of_status(peer: &HubName, status: &Status) -> Self {
        match status.code() {
            Code::NotFound => Self::Refused(format!("{peer} はこのファイルを共有していません")),
            code => Self::Later(format!("{peer}: {code:?} {}", status.message())),
        }
    }

    fn of_call(peer: &HubName, e: SendError) -> Self {
        match e {
            SendError::Call { code: Code::NotFound, message, .. } => Self::of_status(peer, &Status::not_found(message)),
            other => Self::Later(other.to_string()),
        }
    }
}

/// The leader's fetcher of the files other hubs told this hub of.
pub struct Fetcher {
    node: Arc<Node>,
    identity: Arc<HubIdentity>,
    links: BTreeMap<HubName, PeerLink>,
    /// When each blob that failed for now may be asked for again.
    retry: HashMap<BlobHash, (tokio::time::Instant, Backoff)>,
}

impl Fetcher {
    pub fn new(
        node: Arc<Node>,
        identity: Arc<HubIdentity>,
        trust: &Trust,
        tls: &super::WatchedFederationTls,
    ) -> Result<Self, super::TransportError> {
        let mut links = BTreeMap::new();
        for peer in trust.peers() {
            links.insert(peer.name.clone(), PeerLink::new(tls, &peer.name, &peer.endpoints)?);
        }
        Ok(Self { node, identity, links, retry: HashMap::new() })
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let seen = applied_index(&self.node);
            if leads(&self.node) {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = self.step() => {}
                }
            }
            let idle = tokio::time::timeout(IDLE_RECHECK, next_apply(&self.node, seen));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = idle => {}
            }
        }
    }

    /// Fetches what is due, one blob after the other.
    async fn step(&mut self) {
        let due = match self.node.state.hub().fetches(FETCHES_PER_STEP) {
            Ok(due) => due,
            Err(e) => return warn!("cannot read the files to fetch: {e}"),
        };
        if due.len() < FETCHES_PER_STEP {
            // Forget the backoff of fetches that ended.
            self.retry.retain(|hash, _| due.iter().any(|f| f.hash == *hash));
        }
        let now = tokio::time::Instant::now();
        for fetch in due.into_iter().filter(|f| f.failed.is_none()) {
            if self.retry.get(&fetch.hash).is_some_and(|(at, _)| *at > now) || !leads(&self.node) {
                continue;
            }
            match self.fetch(&fetch).await {
                Ok(()) => {
                    self.retry.remove(&fetch.hash);
                    info!(hash = %fetch.hash, from = %fetch.from, bytes = fetch.size, "fetched a file from a peer hub");
                }
                Err(FetchError::Later(reason)) => {
                    warn!(hash = %fetch.hash, from = %fetch.from, "fetching a file failed, will ask again: {reason}");
                    let mut backoff = self.retry.get(&fetch.hash).map_or_else(Backoff::default, |(_, b)| *b);
                    let wait = backoff.next_delay(jitter());
                    self.retry.insert(fetch.hash, (tokio::time::Instant::now() + wait, backoff));
                }
                Err(FetchError::Refused(reason)) => {
                    warn!(hash = %fetch.hash, from = %fetch.from, "a file cannot be fetched: {reason}");
                    self.retry.remove(&fetch.hash);
                    let failed = LogCommand::FetchFailed { blob: fetch.hash, from: fetch.from.clone(), reason };
                    if let Err(e) = self.propose(failed, "failed").await {
                        warn!(hash = %fetch.hash, "could not record the failed fetch: {e}");
                    }
                }
            }
        }
    }

    /// Gets the whole blob from its hub and checks it, stores what this hub lacks of it, then
    /// records that the hub sent it (even a blob held here already: see `attachments::Fetch`).
    async fn fetch(&mut self, fetch: &Fetch) -> Result<(), FetchError> {
        let cap = self.node.attachments.max_file_bytes;
        if fetch.size > cap {
            return Err(FetchError::Refused(format!("ファイルが大きすぎます (上限 {} MiB)", cap >> 20)));
        }
        let held = self.node.state.hub().blob(fetch.hash).map_err(|e| FetchError::Later(e.to_string()))?;
        let first = held.map_or(0, |b| b.stored_chunks);
        if first < chunk_count(fetch.size) {
            self.check_space(fetch)?;
        }
        let verified = tokio::time::timeout(FETCH_TIMEOUT, self.download(fetch))
            .await
            .map_err(|_| FetchError::Later(format!("{} took longer than {FETCH_TIMEOUT:?}", fetch.from)))??;
        check_bytes(fetch, &verified).await?;
        for index in first..chunk_count(fetch.size) {
            let bytes = verified.chunk(index).await.map_err(|e| FetchError::Later(format!("reading the file: {e}")))?;
            let (blob, from, size) = (fetch.hash, fetch.from.clone(), fetch.size);
            let command = LogCommand::FetchedChunk { blob, from, size, index, bytes };
            self.propose(command, &format!("{}/{index}", fetch.hash))
                .await
                .map_err(|e| FetchError::Later(format!("storing chunk {index}: {e}")))?;
        }
        let proven = LogCommand::FetchProven { blob: fetch.hash, from: fetch.from.clone() };
        self.propose(proven, &format!("{}/proven", fetch.hash)).await.map_err(FetchError::Later)
    }

    /// The hub's quota holds for fetched files too: a peer cannot fill this hub's disks.
    fn check_space(&self, fetch: &Fetch) -> Result<(), FetchError> {
        let used = self.node.state.hub().stored_bytes().map_err(|e| FetchError::Later(e.to_string()))?;
        let quota = self.node.attachments.quota_bytes;
        if used.saturating_add(fetch.size) > quota {
            return Err(FetchError::Later(format!("the hub's quota is full ({used} of {quota} bytes used)")));
        }
        Ok(())
    }

    /// The blob's bytes from its hub, in a file of this node, with the expected size and hash.
    async fn download(&mut self, fetch: &Fetch) -> Result<Verified, FetchError> {
        let link = self
            .links
            .get_mut(&fetch.from)
            .ok_or_else(|| FetchError::Later(format!("hub {} is not a configured federation peer", fetch.from)))?;
        let (identity, peer) = (self.identity.clone(), fetch.from.clone());
        let (file, variant) = (fetch.file, fetch.variant);
        let stream = link
            .call(|mut client| {
                let mut request = tonic::Request::new(signed_fetch(&identity, &peer, file, variant, 0));
                request.set_timeout(FETCH_TIMEOUT);
                async move { client.fetch_file(request).await.map(tonic::Response::into_inner) }
            })
            .await;
        let mut stream = stream.map_err(|e| FetchError::of_call(&fetch.from, e))?;
        let mut staged = Staged::create(&self.node.attachments.staging_dir, fetch.size)
            .await
            .map_err(|e| FetchError::Later(format!("this node cannot keep the file: {e}")))?;
        loop {
            let next = tokio::time::timeout(MESSAGE_TIMEOUT, stream.next()).await;
            let message = match next {
                Err(_) => return Err(FetchError::Later("the peer stopped sending".into())),
                Ok(None) => break,
                Ok(Some(Err(status))) => return Err(FetchError::of_status(&fetch.from, &status)),
                Ok(Some(Ok(message))) => message,
            };
            staged.append(&message.chunk).await.map_err(|e| refused_bytes(&fetch.from, e))?;
        }
        staged.finish(fetch.hash).await.map_err(|e| refused_bytes(&fetch.from, e))
    }

    async fn propose(&self, command: LogCommand, what: &str) -> Result<(), String> {
        let envelope =
            Envelope { idempotency_key: format!("fetch/{what}/{}", crate::node::now_ms()), proposed_at_ms: 0, command };
        match self.node.write(envelope).await.map_err(|e| e.to_string())?.result {
            CommandResult::Refused(e) => Err(e.to_string()),
            _ => Ok(()),
        }
    }
}

/// Bytes that are not the file the message described end the fetch; this node's own trouble
/// keeping them does not.
fn refused_bytes(peer: &HubName, e: UploadError) -> FetchError {
    match e {
        UploadError::Io(e) => FetchError::Later(format!("this node cannot keep the file: {e}")),
        other => FetchError::Refused(format!("{peer} から届いたデータが説明と一致しません: {other}")),
    }
}

/// The bytes must be of the type the message named (detected again here, from the bytes), and
/// a photo must carry no metadata: a hub makes its photos safe before it shares them, and this
/// hub does not take another's word for it.
async fn check_bytes(fetch: &Fetch, verified: &Verified) -> Result<(), FetchError> {
    let head = verified.head().await.map_err(|e| FetchError::Later(format!("reading the file: {e}")))?;
    let detected = media::detect(&head).ok();
    if detected.map(|d| d.content_type) != Some(fetch.content_type.as_str()) {
        let seen = detected.map_or("unknown", |d| d.content_type);
        return Err(FetchError::Refused(format!(
            "{} から届いたファイルの種類 ({seen}) が説明 ({}) と一致しないか、添付できない種類です",
            fetch.from, fetch.content_type
        )));
    }
    if detected.is_some_and(|d| d.photo) {
        let bytes = verified.all().await.map_err(|e| FetchError::Later(format!("reading: {e}")))?;
        if media::carries_exif(&bytes) {
            return Err(FetchError::Refused(format!(
                "{} から届いた写真に位置情報などのメタデータが残っています",
                fetch.from
            )));
        }
    }
    Ok(())
}
