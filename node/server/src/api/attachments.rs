//! The AttachmentService: uploads (a client stream, or unary parts for browsers), resumable
//! downloads (a server stream), descriptions.
//!
//! An upload is checked on the node that receives it before anything of it is proposed: the
//! declared size against the hub's cap and quota, every byte against the declared size and
//! SHA-256, the type detected from the bytes against the allow-list, and a photo is re-encoded
//! without its metadata, with thumbnails (`attachments::media`). Then its blobs are proposed
//! chunk by chunk, each chunk one log entry, in order; a blob the hub already holds (the same
//! content uploaded before, or chunks of an interrupted try) is not sent again. The domain
//! decides the rest: `StoreChunk`, `CreateAttachment`, and who may read (`readable`).

use std::io::Seek;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use kizuna_proto::attachments as pb;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};

use super::convert::attachment_view;
use super::shared::{Api, domain_status, unexpected, view_status};
use crate::attachments::media::{self, Detected, MediaError};
use crate::attachments::staging::{Ingested, PARTS_PER_ACCOUNT, Part, Staged, UploadError, Verified};
use crate::attachments::video;
use kizuna_domain::attachments::{
    self as domain, Attachment, Availability, Blob, BlobHash, CHUNK_BYTES, Thumbnails, chunk_count, chunk_len,
};
use kizuna_domain::model::{AccountId, AttachmentId};
use kizuna_domain::{Command, CommandResult, HubView, Outcome, audit, validate_idempotency_key};

/// The largest part of an upload in parts (a browser sends 512 KiB).
const MAX_PART_BYTES: usize = 1 << 20;
/// How long a streamed upload may pause between messages (as a federation fetch may).
const UPLOAD_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the user accepts to see in a refusal of the type: the allow-list, in Japanese.
const ACCEPTED: &str = "写真 (JPEG, PNG, WebP)、動画 (MP4, MOV, WebM, 3GP)、PDF、Office 文書";

/// An upload's header, checked.
struct Header {
    key: String,
    name: String,
    size: u64,
    hash: BlobHash,
}

impl Api {
    /// The header of an upload, checked against the rules and this node's limits.
    fn header(&self, header: Option<pb::UploadHeader>) -> Result<Header, Status> {
        let h = header.ok_or_else(|| Status::invalid_argument("an upload starts with its header"))?;
        validate_idempotency_key(&h.idempotency_key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        domain::check_name(&h.name).map_err(domain_status)?;
        let cap = self.node.attachments.max_file_bytes;
        if h.size == 0 {
            return Err(Status::invalid_argument("ファイルが空です"));
        }
        if h.size > cap {
            let limit = cap >> 20;
            return Err(Status::invalid_argument(format!("ファイルが大きすぎます (上限 {limit} MiB)")));
        }
        let hash = BlobHash::from_hex(&h.sha256)
            .ok_or_else(|| Status::invalid_argument("sha256: 64 hexadecimal digits of the file's SHA-256"))?;
        self.check_space(h.size)?;
        Ok(Header { key: h.idempotency_key, name: h.name, size: h.size, hash })
    }

    /// Refuses `bytes` more than the hub's quota can take.
    fn check_space(&self, bytes: u64) -> Result<(), Status> {
        let used = self.query(|hub| hub.stored_bytes().map_err(view_status))?;
        let quota = self.node.attachments.quota_bytes;
        if used.saturating_add(bytes) <= quota {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / f64::from(1 << 30);
        let (used, quota) = (gib(used), gib(quota));
        let message =
            format!("ファイルの保存領域が一杯です ({used:.1} / {quota:.1} GiB 使用中)。事務局に連絡してください");
        Err(Status::resource_exhausted(message))
    }

    /// A photo re-encoded without its metadata may be larger than what was sent: what is
    /// stored must fit the cap and the quota too.
    fn check_prepared(&self, prepared: &Prepared) -> Result<(), Status> {
        let cap = self.node.attachments.max_file_bytes;
        if prepared.file.size > cap {
            let limit = cap >> 20;
            return Err(Status::invalid_argument(format!("写真を保存できる形にすると上限 {limit} MiB を超えます")));
        }
        self.check_space(prepared.blobs().iter().map(|b| b.size).sum())
    }

    /// Makes a verified upload an attachment of the caller: its blobs stored, then the
    /// attachment created under the upload's idempotency key.
    async fn ingest(
        &self,
        token_hash: &str,
        header: Header,
        verified: Verified,
    ) -> Result<kizuna_proto::common::Attachment, Status> {
        let prepared = {
            let slot = self.node.attachments.checks.acquire().await;
            let _slot = slot.map_err(|_| Status::unavailable("this node is stopping"))?;
            tokio::task::spawn_blocking(move || prepare(verified))
                .await
                .map_err(|e| Status::internal(format!("the upload's check failed: {e}")))??
        };
        self.check_prepared(&prepared)?;
        for blob in prepared.blobs() {
            self.store_blob(token_hash, blob).await?;
        }
        let cmd = Command::CreateAttachment {
            blob: prepared.file.hash,
            thumbnails: prepared.thumbnails(),
            name: header.name,
            content_type: prepared.content_type.into(),
        };
        let id = match self.write(header.key, Some(token_hash.to_owned()), cmd).await? {
            Outcome::Attachment(id) => id,
            other => return Err(unexpected(other)),
        };
        // A follower forwarded the write: made current, it answers from its own copy.
        self.fresh().await?;
        let attachment =
            self.query(|hub| Ok(hub.attachment(id).map_err(view_status)?.map(|a| attachment_view(hub, &a))))?;
        attachment.ok_or_else(|| Status::not_found("the attachment is gone"))
    }

    /// Proposes the chunks of `blob` the hub does not hold yet, in order. Each proposal has a
    /// key of its own: a chunk is idempotent by itself (one already stored is a no-op), and a
    /// remembered answer under a reused key would skip a chunk the hub no longer holds (a
    /// partial upload collected, then retried).
    async fn store_blob(&self, token_hash: &str, blob: &Source) -> Result<(), Status> {
        let held = self.query(|hub| hub.blob(blob.hash).map_err(view_status))?;
        let first = held.map_or(0, |b: Blob| if b.complete() { chunk_count(b.size) } else { b.stored_chunks });
        for index in first..chunk_count(blob.size) {
            let bytes = blob.chunk(index).await?;
            let cmd = Command::StoreChunk { blob: blob.hash, size: blob.size, index, bytes };
            let key = format!("chunk/{}", super::auth::new_secret()?);
            self.write(key, Some(token_hash.to_owned()), cmd).await?;
        }
        Ok(())
    }

    /// The attachment `id` as `me` may read it, and the blob of `variant`, once it is here.
    fn readable_blob(&self, me: AccountId, id: AttachmentId, variant: i32) -> Result<(Attachment, Blob), Status> {
        let variant = variant_of(variant)?;
        self.query(|hub| {
            let a = domain::readable(hub, me, id).map_err(domain_status)?;
            match domain::availability(hub, &a, variant).map_err(view_status)? {
                None => Err(Status::not_found("this attachment has no thumbnails")),
                Some(Availability::Here(blob)) => Ok((a, blob)),
                Some(other) => Err(not_here(other, id)),
            }
        })
    }
}

/// Why a file cannot be downloaded yet (or at all), in its reader's words.
fn not_here(availability: Availability, id: AttachmentId) -> Status {
    match availability {
        Availability::Arriving(from) => Status::unavailable(format!(
            "このファイルは {from} から届いている途中です。しばらくしてからもう一度開いてください"
        )),
        Availability::Failed { from, reason } => {
            Status::failed_precondition(format!("このファイルを {from} から取得できませんでした: {reason}"))
        }
        Availability::Here(_) | Availability::Missing => {
            Status::internal(format!("the stored bytes of attachment {id} are missing"))
        }
    }
}

/// A blob to store: the uploaded file itself, or bytes made on this node (a safe photo).
struct Source {
    hash: BlobHash,
    size: u64,
    bytes: SourceBytes,
}

enum SourceBytes {
    File(Verified),
    Memory(Vec<u8>),
}

impl Source {
    fn of_bytes(bytes: Vec<u8>) -> Self {
        let hash = BlobHash(Sha256::digest(&bytes).into());
        Self { hash, size: bytes.len() as u64, bytes: SourceBytes::Memory(bytes) }
    }

    /// The bytes of chunk `index`.
    async fn chunk(&self, index: u32) -> Result<Vec<u8>, Status> {
        match &self.bytes {
            SourceBytes::Memory(bytes) => {
                let start = (u64::from(index) * CHUNK_BYTES) as usize;
                Ok(bytes[start..start + chunk_len(self.size, index) as usize].to_vec())
            }
            SourceBytes::File(file) => {
                file.chunk(index).await.map_err(|e| Status::internal(format!("this node cannot read the upload: {e}")))
            }
        }
    }
}

/// An upload ready to store: the file, and a photo's thumbnails.
struct Prepared {
    content_type: &'static str,
    file: Source,
    thumbnails: Option<(Source, Source)>,
}

impl Prepared {
    fn blobs(&self) -> Vec<&Source> {
        let mut all = vec![&self.file];
        if let Some((small, medium)) = &self.thumbnails {
            all.extend([small, medium]);
        }
        all
    }

    fn thumbnails(&self) -> Option<Thumbnails> {
        self.thumbnails.as_ref().map(|(small, medium)| Thumbnails { small: small.hash, medium: medium.hash })
    }
}

/// Detects what the file is and, for a photo, makes it safe to share (blocking: run apart).
fn prepare(mut verified: Verified) -> Result<Prepared, Status> {
    let head = verified.read_blocking(0, media::SNIFF_BYTES.min(verified.size as usize));
    let head = head.map_err(|e| Status::internal(format!("this node cannot read the upload: {e}")))?;
    let detected: Detected = media::detect(&head).map_err(media_status)?;
    if !detected.photo {
        let hash = without_location(&mut verified, detected)?;
        let file = Source { hash, size: verified.size, bytes: SourceBytes::File(verified) };
        return Ok(Prepared { content_type: detected.content_type, file, thumbnails: None });
    }
    let bytes = verified.read_blocking(0, verified.size as usize);
    let bytes = bytes.map_err(|e| Status::internal(format!("cannot read the upload: {e}")))?;
    let safe = media::make_safe_photo(&bytes, detected).map_err(media_status)?;
    let thumbnails = Some((Source::of_bytes(safe.small), Source::of_bytes(safe.medium)));
    Ok(Prepared { content_type: safe.content_type, file: Source::of_bytes(safe.original), thumbnails })
}

/// A video's recording location blanked in place (`attachments::video`); the hash of what is
/// then stored (the uploaded bytes' when nothing was blanked).
fn without_location(verified: &mut Verified, detected: Detected) -> Result<BlobHash, Status> {
    if !matches!(detected.content_type, "video/mp4" | "video/quicktime" | "video/3gpp" | "video/3gpp2") {
        return Ok(verified.hash);
    }
    let unreadable = |e: std::io::Error| Status::internal(format!("cannot read the upload: {e}"));
    let size = verified.size;
    let mut file = verified.open().map_err(unreadable)?;
    let blanked = video::remove_location(&mut file, size)
        .map_err(|e| Status::invalid_argument(format!("動画を読み取れません: {e}")))?;
    if blanked == 0 {
        return Ok(verified.hash);
    }
    file.seek(std::io::SeekFrom::Start(0)).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Status::internal(format!("cannot read the upload: {e}")))?;
    Ok(BlobHash(hasher.finalize().into()))
}

fn media_status(e: MediaError) -> Status {
    match e {
        MediaError::NotAllowed(looks_like) => Status::invalid_argument(format!(
            "この種類のファイルは添付できません ({looks_like})。添付できるのは {ACCEPTED} です"
        )),
        other => Status::invalid_argument(format!("写真を読み取れません: {other}")),
    }
}

/// A refused upload's status, in the words its user reads (the client shows the message).
fn upload_status(e: UploadError) -> Status {
    match e {
        UploadError::Io(e) => Status::internal(format!("this node cannot keep the upload: {e}")),
        UploadError::TooLong { declared } => {
            Status::invalid_argument(format!("申告された大きさ ({declared} バイト) より多くのデータが届きました"))
        }
        UploadError::Truncated { received, declared } => Status::invalid_argument(format!(
            "ファイルが途中で終わりました ({declared} バイト中 {received} バイト)。もう一度送ってください"
        )),
        UploadError::HashMismatch { .. } => {
            Status::invalid_argument("届いたデータが壊れています (SHA-256 が一致しません)。もう一度送ってください")
        }
    }
}

/// Which blob a download of `variant` sends.
fn variant_of(variant: i32) -> Result<domain::Variant, Status> {
    match pb::Variant::try_from(variant) {
        Ok(pb::Variant::Unspecified | pb::Variant::Original) => Ok(domain::Variant::Original),
        Ok(pb::Variant::Small) => Ok(domain::Variant::Small),
        Ok(pb::Variant::Medium) => Ok(domain::Variant::Medium),
        Err(_) => Err(Status::invalid_argument(format!("variant {variant}: no such variant"))),
    }
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::attachment_service_server::AttachmentService for Api {
    async fn upload(&self, req: Request<Streaming<pb::UploadRequest>>) -> Result<Response<pb::UploadResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let _permit = self.stream_uploads.take(me)?;
        let mut parts = req.into_inner();
        let first =
            parts.next().await.ok_or_else(|| Status::invalid_argument("an upload starts with its header"))??;
        let header = match first.part {
            Some(pb::upload_request::Part::Header(h)) => self.header(Some(h))?,
            _ => return Err(Status::invalid_argument("an upload starts with its header")),
        };
        let mut staged = Staged::create(&self.node.attachments.staging_dir, header.size)
            .await
            .map_err(UploadError::Io)
            .map_err(upload_status)?;
        // A client that stops sending is not waited for forever: its staged bytes go.
        while let Some(part) = tokio::time::timeout(UPLOAD_MESSAGE_TIMEOUT, parts.next())
            .await
            .map_err(|_| Status::deadline_exceeded("the upload stopped sending; send the file again"))?
        {
            match part?.part {
                Some(pb::upload_request::Part::Chunk(bytes)) => staged.append(&bytes).await.map_err(upload_status)?,
                _ => return Err(Status::invalid_argument("after the header, an upload sends only chunks")),
            }
        }
        let verified = staged.finish(header.hash).await.map_err(upload_status)?;
        let attachment = self.ingest(&token_hash, header, verified).await?;
        Ok(Response::new(pb::UploadResponse { attachment: Some(attachment) }))
    }

    async fn upload_part(
        &self,
        req: Request<pb::UploadPartRequest>,
    ) -> Result<Response<pb::UploadPartResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let r = req.into_inner();
        let header = self.header(r.header)?;
        if r.chunk.len() > MAX_PART_BYTES {
            return Err(Status::invalid_argument(format!("a part has at most {MAX_PART_BYTES} bytes")));
        }
        let key = (me, header.key.clone());
        let size = header.size;
        let mut staged = match self.node.part_uploads.take(&key) {
            Some(Part::Receiving(staged)) => *staged,
            Some(Part::Storing(stored)) => return self.until_stored(key, size, stored).await,
            // Asked whether a complete upload is stored, on a node that did not receive it.
            None if r.offset == size && r.chunk.is_empty() => return self.stored_before(me, &header.key),
            // This node has none of it: the client starts again from the beginning here.
            None if r.offset != 0 => return Ok(part_answer(0, None)),
            None if self.node.part_uploads.count_of(me) >= PARTS_PER_ACCOUNT => {
                let message = format!(
                    "同時に送れるファイルは {PARTS_PER_ACCOUNT} 件までです。送信中のファイルが終わってからお試しください"
                );
                return Err(Status::resource_exhausted(message));
            }
            None => Staged::create(&self.node.attachments.staging_dir, size)
                .await
                .map_err(UploadError::Io)
                .map_err(upload_status)?,
        };
        if r.offset != staged.received() {
            // Not where this node is: the client continues from what it holds.
            let received = staged.received();
            self.node.part_uploads.put_back(key, Part::Receiving(Box::new(staged)));
            return Ok(part_answer(received, None));
        }
        staged.append(&r.chunk).await.map_err(upload_status)?;
        if staged.received() < size {
            let received = staged.received();
            self.node.part_uploads.put_back(key, Part::Receiving(Box::new(staged)));
            return Ok(part_answer(received, None));
        }
        let verified = staged.finish(header.hash).await.map_err(upload_status)?;
        // Stored apart from this request: a large file outlasts a part's deadline, and the
        // client's next question finds it (here, or by its key on any node).
        let (done, stored) = tokio::sync::watch::channel(None);
        let api = self.clone();
        tokio::spawn(async move {
            let result = api.ingest(&token_hash, header, verified).await.map(|a| AttachmentId(a.id));
            let _ = done.send(Some(result));
        });
        self.until_stored(key, size, stored).await
    }

    type DownloadStream = DownloadStream;

    async fn download(&self, req: Request<pb::DownloadRequest>) -> Result<Response<DownloadStream>, Status> {
        let (me, token_hash, _) = self.authenticate_fresh(&req).await?;
        let r = req.into_inner();
        let id = AttachmentId(r.attachment_id);
        let (attachment, blob) = self.readable_blob(me, id, r.variant)?;
        if r.offset > blob.size {
            return Err(Status::out_of_range(format!("offset {}: the file has {} bytes", r.offset, blob.size)));
        }
        let variant = match pb::Variant::try_from(r.variant) {
            Ok(pb::Variant::Small) => "small thumbnail",
            Ok(pb::Variant::Medium) => "medium thumbnail",
            _ => "original",
        };
        let what = format!("download attachment {id} ({}, {variant}) from byte {}", attachment.name, r.offset);
        self.audit_file_read(me, &token_hash, &attachment, what)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api.send_blob(me, (id, r.variant), (attachment, blob), r.offset, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_attachment(
        &self,
        req: Request<pb::GetAttachmentRequest>,
    ) -> Result<Response<pb::GetAttachmentResponse>, Status> {
        let (me, token_hash, _) = self.authenticate_fresh(&req).await?;
        let id = AttachmentId(req.get_ref().attachment_id);
        let (attachment, view) = self.query(|hub| {
            let a = domain::readable(hub, me, id).map_err(domain_status)?;
            let view = attachment_view(hub, &a);
            Ok((a, view))
        })?;
        self.audit_file_read(me, &token_hash, &attachment, format!("describe attachment {id} ({})", attachment.name))?;
        Ok(Response::new(pb::GetAttachmentResponse { attachment: Some(view) }))
    }
}

type Sink = tokio::sync::mpsc::Sender<Result<pb::DownloadResponse, Status>>;

/// How long a part's answer waits for its complete upload to be stored before it answers
/// "stored soon, ask again" (`received` = the size, no attachment).
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

fn part_answer(
    received: u64,
    attachment: Option<kizuna_proto::common::Attachment>,
) -> Response<pb::UploadPartResponse> {
    Response::new(pb::UploadPartResponse { received, attachment })
}

impl Api {
    /// The attachment a complete upload in parts became, once stored; while it is being
    /// stored, after [`STORE_WAIT`], "ask again".
    async fn until_stored(
        &self,
        key: (AccountId, String),
        size: u64,
        mut stored: tokio::sync::watch::Receiver<Option<Ingested>>,
    ) -> Result<Response<pb::UploadPartResponse>, Status> {
        let result = match tokio::time::timeout(STORE_WAIT, stored.wait_for(Option::is_some)).await {
            Ok(Ok(result)) => result.clone(),
            Ok(Err(_)) => Some(Err(Status::internal("storing the upload stopped"))),
            Err(_) => None,
        };
        let Some(result) = result else {
            self.node.part_uploads.put_back(key, Part::Storing(stored));
            return Ok(part_answer(size, None));
        };
        self.answer_stored(result?)
    }

    /// A complete upload stored under `key` before (by this node or another), if any; else
    /// "start again" (`received` 0).
    fn stored_before(&self, me: AccountId, key: &str) -> Result<Response<pb::UploadPartResponse>, Status> {
        let scope = kizuna_domain::signed_scope(me, key);
        let first = self.query(|hub| Ok(hub.remembered(&scope)))?;
        match first.map(|applied| applied.result) {
            Some(CommandResult::Done(Outcome::Attachment(id))) => self.answer_stored(id),
            _ => Ok(part_answer(0, None)),
        }
    }

    fn answer_stored(&self, id: AttachmentId) -> Result<Response<pb::UploadPartResponse>, Status> {
        let a = self.query(|hub| Ok(hub.attachment(id).map_err(view_status)?.map(|a| attachment_view(hub, &a))))?;
        let a = a.ok_or_else(|| Status::not_found("the attachment is gone"))?;
        Ok(part_answer(a.size, Some(a)))
    }

    /// Journals a read of a file of a patient's room (its name may be patient data too).
    fn audit_file_read(&self, me: AccountId, token_hash: &str, a: &Attachment, what: String) -> Result<(), Status> {
        let Some((room, _)) = a.post else { return Ok(()) };
        match self.query(|hub| audit::patient_data_in(hub, room).map_err(view_status))? {
            Some(patient) => self.audit_read(me, token_hash, patient, Some(room), what),
            None => Ok(()),
        }
    }

    /// Sends `blob` from `offset`, a chunk at a time; before each, `me` must still be allowed
    /// (a member removed during a download loses access at once).
    async fn send_blob(
        &self,
        me: AccountId,
        (id, variant): (AttachmentId, i32),
        (attachment, blob): (Attachment, Blob),
        offset: u64,
        tx: &Sink,
    ) -> Result<(), Status> {
        let described = self.query(|hub| Ok(attachment_view(hub, &attachment)))?;
        let mut first = Some(pb::DownloadResponse { attachment: Some(described), size: blob.size, chunk: vec![] });
        let mut index = u32::try_from(offset / CHUNK_BYTES).unwrap_or(u32::MAX);
        let mut skip = (offset % CHUNK_BYTES) as usize;
        while index < chunk_count(blob.size) {
            let (_, blob_now) = self.readable_blob(me, id, variant)?;
            let bytes = self.query(|hub| {
                let bytes = hub.chunk(blob_now.hash, index);
                bytes.ok_or_else(|| {
                    Status::internal(format!("chunk {index} of attachment {id} is missing on this node"))
                })
            })?;
            let mut message = first.take().unwrap_or_default();
            message.chunk = bytes.get(skip..).unwrap_or_default().to_vec();
            skip = 0;
            if tx.send(Ok(message)).await.is_err() {
                return Ok(()); // The client went away.
            }
            index += 1;
        }
        if let Some(only) = first {
            // An offset at the very end: the description alone.
            let _ = tx.send(Ok(only)).await;
        }
        Ok(())
    }
}
