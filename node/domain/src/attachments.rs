//! Files attached to posts: photos, short videos, PDFs, office documents, hand-written notes.
//!
//! A file's bytes are a [`Blob`], named by their SHA-256, so identical files are stored once.
//! The API node receives an upload, checks its hash, size, type and (for photos) removes the
//! metadata and makes thumbnails; then it proposes the bytes in [`CHUNK_BYTES`] pieces, in order
//! ([`store_chunk`]), so they travel through the Raft log like any write and every replica holds
//! them (docs/architecture.md says why the log and not beside it). [`create`] then makes the
//! complete blob an [`Attachment`] of its uploader; a post ([`place`]) puts it in a room, where
//! exactly the room's members may read it ([`readable`]).
//!
//! Nothing is kept that nobody can reach: an attachment no post took, or whose post was deleted,
//! and a blob whose upload never finished, are removed after the hub's grace period
//! ([`collect`]); a blob goes with its last attachment. The audit chain keeps that they existed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::audit::{AuditRecord, patient_of};
use super::authz::{active_account, can_read};
use super::error::{DomainResult, invalid, not_found, precondition};
use super::federation::HubName;
use super::kernel::{Ctx, Effects, Outcome};
use super::model::*;
use super::view::{Change, HubView, ViewResult};

/// The size of every chunk but a file's last: small enough that a chunk in the log delays a
/// post behind it by little, and that a Raft batch of them stays under the node-to-node
/// message limit (300 entries × 128 KiB = 37.5 MiB < 64 MiB).
pub const CHUNK_BYTES: u64 = 128 * 1024;
/// The largest file the domain accepts at all (the hub's configured cap is usually far lower).
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Files one post may carry.
pub const MAX_FILES_PER_POST: usize = 10;
/// Longest file name, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 200;
/// How many attachments or blobs one collection removes: it runs inside one apply, which must
/// stay short for the posts queued behind it.
pub const COLLECT_AT_MOST: usize = 64;

/// A SHA-256: names a blob.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// Parses lower- or upper-case hex of exactly 32 bytes.
    pub fn from_hex(s: &str) -> Option<Self> {
        crate::bytes_of_hex(s).map(Self)
    }
}

impl std::fmt::Display for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl std::fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobHash({self})")
    }
}

/// How many chunks a file of `size` bytes has.
pub fn chunk_count(size: u64) -> u32 {
    u32::try_from(size.div_ceil(CHUNK_BYTES)).unwrap_or(u32::MAX)
}

/// The length of chunk `index` of a file of `size` bytes (0 past its end).
pub fn chunk_len(size: u64, index: u32) -> u64 {
    let start = u64::from(index) * CHUNK_BYTES;
    size.saturating_sub(start).min(CHUNK_BYTES)
}

/// A file's bytes as the hub stores them, in chunks (their bytes are not part of the view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub hash: BlobHash,
    pub size: u64,
    /// Chunks stored so far, in order: 0..stored_chunks.
    pub stored_chunks: u32,
    /// Attachments (and thumbnails of attachments) that hold it.
    pub refs: u32,
    /// When its first chunk arrived: an unfinished or unclaimed blob is collected after the
    /// grace period from then.
    pub since_ms: u64,
}

impl Blob {
    pub fn complete(&self) -> bool {
        self.stored_chunks == chunk_count(self.size)
    }

    /// The bytes its stored chunks hold.
    pub fn stored_bytes(&self) -> u64 {
        (u64::from(self.stored_chunks) * CHUNK_BYTES).min(self.size)
    }
}

/// A photo's thumbnails (JPEG), small and medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnails {
    pub small: BlobHash,
    pub medium: BlobHash,
}

/// A file as a user attached it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: AttachmentId,
    pub blob: BlobHash,
    pub name: String,
    /// Detected from the bytes by the API node (never the client's claim).
    pub content_type: String,
    pub size: u64,
    pub thumbnails: Option<Thumbnails>,
    pub uploader: AccountId,
    pub uploaded_at_ms: u64,
    /// The post it is attached to (None: uploaded, not posted yet).
    pub post: Option<(RoomId, u64)>,
    /// When its post was deleted.
    pub released_at_ms: Option<u64>,
}

impl Attachment {
    /// Since when nothing shows it (None: a post shows it): it is collected a grace period later.
    pub fn unused_since(&self) -> Option<u64> {
        match (self.post, self.released_at_ms) {
            (None, _) => Some(self.uploaded_at_ms),
            (Some(_), released) => released,
        }
    }

    /// The blob of `variant`: the file, or a thumbnail (None: a file without thumbnails).
    pub fn variant(&self, variant: Variant) -> Option<BlobHash> {
        match variant {
            Variant::Original => Some(self.blob),
            Variant::Small => self.thumbnails.map(|t| t.small),
            Variant::Medium => self.thumbnails.map(|t| t.medium),
        }
    }

    /// Its blobs: the file, then the thumbnails.
    pub fn blobs(&self) -> Vec<BlobHash> {
        let mut all = vec![self.blob];
        if let Some(t) = self.thumbnails {
            all.extend([t.small, t.medium]);
        }
        all
    }
}

/// Which of an attachment's blobs: the file itself or one of a photo's thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Variant {
    Original,
    Small,
    Medium,
}

/// A blob another hub described (a file of a post in a room shared across hubs), to be had from
/// that hub: the leader's fetcher asks hub `from` for its attachment `file`'s `variant`, checks
/// the bytes and stores what this hub lacks chunk by chunk ([`store_fetched`]), then records
/// that `from` proved them ([`fetch_proven`]). Even a blob held here already is fetched: a hub
/// that names a hash must have the bytes, else naming the hash of a file it was once told of
/// would give it (and the room it posts in) that file. The record goes when proven, or with
/// the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    pub hash: BlobHash,
    pub size: u64,
    /// What the bytes must be, as the other hub detected it (the fetcher detects it again).
    pub content_type: String,
    pub from: HubName,
    /// The attachment on `from` that holds the blob.
    pub file: AttachmentId,
    pub variant: Variant,
    pub since_ms: u64,
    /// Why the bytes could not be had (the other hub refused, or sent something else): the
    /// fetcher stops asking, and the file shows the reason.
    pub failed: Option<String>,
}

/// `StoreChunk`: chunk `index` of the file `hash` of `size` bytes. Chunks come in order; a
/// chunk already stored is a no-op (a retried upload), so is any chunk of a complete blob.
pub fn store_chunk(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (hash, size, index): (BlobHash, u64, u32),
    bytes: Vec<u8>,
) -> DomainResult<Effects> {
    active_account(view, actor)?;
    let changes = add_chunk(view, ctx, (hash, size, index), bytes)?;
    Ok(Effects::new(Outcome::Done, changes))
}

/// The changes that store chunk `index` of the blob `hash` of `size` bytes: none for a chunk
/// already stored; the next chunk in order only.
fn add_chunk(
    view: &impl HubView,
    ctx: Ctx,
    (hash, size, index): (BlobHash, u64, u32),
    bytes: Vec<u8>,
) -> DomainResult<Vec<Change>> {
    if size == 0 || size > MAX_FILE_BYTES {
        return Err(invalid(format!("a file of {size} bytes: 1..={MAX_FILE_BYTES} bytes are accepted")));
    }
    let expected = chunk_len(size, index);
    if expected == 0 || bytes.len() as u64 != expected {
        return Err(invalid(format!("chunk {index} of a {size}-byte file must have {expected} bytes")));
    }
    let mut blob = match view.blob(hash)? {
        Some(b) if b.size != size => return Err(invalid(format!("file {hash} has {} bytes, not {size}", b.size))),
        Some(b) if index < b.stored_chunks => return Ok(vec![]),
        Some(b) => b,
        None => Blob { hash, size, stored_chunks: 0, refs: 0, since_ms: ctx.now_ms },
    };
    if index != blob.stored_chunks {
        return Err(precondition(format!("file {hash}: chunk {} comes next, not {index}", blob.stored_chunks)));
    }
    blob.stored_chunks += 1;
    let stored = view.stored_bytes()?.saturating_add(expected);
    Ok(vec![Change::Blob(blob), Change::BlobChunk { hash, index, bytes }, Change::StoredBytes(stored)])
}

/// `LogCommand::FetchedChunk`: chunk `index` of a blob this hub is fetching from hub `from`
/// (the fetcher checked the whole blob's hash and type first). Only a blob being fetched takes
/// chunks this way.
pub fn store_fetched(
    view: &impl HubView,
    ctx: Ctx,
    (hash, from): (BlobHash, &HubName),
    (size, index): (u64, u32),
    bytes: Vec<u8>,
) -> DomainResult<Vec<Change>> {
    let fetch = due_fetch(view, hash, from)?;
    if fetch.size != size {
        return Err(invalid(format!("file {hash} has {} bytes, not {size}", fetch.size)));
    }
    add_chunk(view, ctx, (hash, size, index), bytes)
}

/// `LogCommand::FetchProven`: hub `from` sent the whole blob `hash` and it was checked: the
/// files `from` described with it may be read (and the fetch ends). The blob must be complete
/// here (by these chunks, or held already: `from` had to prove it has the bytes anyway).
pub fn fetch_proven(view: &impl HubView, hash: BlobHash, from: &HubName) -> DomainResult<Vec<Change>> {
    due_fetch(view, hash, from)?;
    if !view.blob(hash)?.is_some_and(|b| b.complete()) {
        return Err(precondition(format!("file {hash}: its bytes are not all stored")));
    }
    Ok(vec![Change::Proven { from: from.clone(), hash }, Change::FetchDone { hash, from: from.clone() }])
}

fn due_fetch(view: &impl HubView, hash: BlobHash, from: &HubName) -> DomainResult<Fetch> {
    let fetch = view.fetch(hash, from)?.filter(|f| f.failed.is_none());
    fetch.ok_or_else(|| precondition(format!("file {hash} is not being fetched from {from}")))
}

/// `LogCommand::FetchFailed`: the blob `hash` cannot be had from hub `from`; its files show
/// `reason`, and the fetcher stops asking.
pub fn fetch_failed(view: &impl HubView, hash: BlobHash, from: &HubName, reason: String) -> DomainResult<Vec<Change>> {
    let Some(fetch) = view.fetch(hash, from)? else { return Ok(vec![]) };
    let reason: String = reason.chars().take(300).collect();
    Ok(vec![Change::Fetch(Fetch { failed: Some(reason), ..fetch })])
}

/// Whether a file's bytes can be read here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Here(Blob),
    /// Being fetched from that hub.
    Arriving(HubName),
    /// That hub could not give them, for the reason.
    Failed {
        from: HubName,
        reason: String,
    },
    /// Neither here nor asked for: a fault of this hub's state.
    Missing,
}

/// The hub whose description made attachment `a`: the home of the copy its post is in, or the
/// hub of the remote member who posted it here; None for a file uploaded on this hub (held
/// for a write to its home hub included). Such a file is read only once that hub sent its bytes.
pub fn origin_of(view: &impl HubView, a: &Attachment) -> ViewResult<Option<HubName>> {
    let Some((room, seq)) = a.post else { return Ok(None) };
    if let Some(Room { kind: RoomKind::Mirror { home, .. }, .. }) = view.room(room)? {
        return Ok((seq > 0).then_some(home));
    }
    Ok(view.account(a.uploader)?.and_then(|u| u.remote_hub().cloned()))
}

/// Whether the bytes of `variant` of `a` can be read here (None: it has no such variant).
pub fn availability(view: &impl HubView, a: &Attachment, variant: Variant) -> ViewResult<Option<Availability>> {
    let Some(hash) = a.variant(variant) else { return Ok(None) };
    let blob = view.blob(hash)?.filter(Blob::complete);
    let Some(origin) = origin_of(view, a)? else {
        return Ok(Some(blob.map_or(Availability::Missing, Availability::Here)));
    };
    if let Some(blob) = blob
        && view.proven(&origin, hash)?
    {
        return Ok(Some(Availability::Here(blob)));
    }
    Ok(Some(match view.fetch(hash, &origin)? {
        Some(Fetch { failed: Some(reason), .. }) => Availability::Failed { from: origin, reason },
        Some(_) => Availability::Arriving(origin),
        None => Availability::Missing,
    }))
}

/// Checks a file name as users give it: no path, nothing invisible.
pub fn check_name(name: &str) -> DomainResult<()> {
    let n = name.chars().count();
    if n == 0 || n > MAX_FILE_NAME_CHARS {
        return Err(invalid(format!("file name: 1..={MAX_FILE_NAME_CHARS} characters")));
    }
    if name.contains(['/', '\\']) || name.chars().any(invisible) || name == "." || name == ".." {
        return Err(invalid("file name: no path separators or control characters"));
    }
    Ok(())
}

/// Checks a content type as the hub detected it (the allow-list is the API node's).
pub fn check_content_type(content_type: &str) -> DomainResult<()> {
    if content_type.is_empty() || content_type.len() > 100 || !content_type.is_ascii() {
        return Err(invalid("content type: 1..=100 ASCII characters"));
    }
    Ok(())
}

/// Characters that do not show or that reorder what shows (a name "gpj.exe" displayed as
/// "exe.jpg"): control characters, zero-width and bidirectional formatting characters.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `CreateAttachment`: the complete file `blob` (and a photo's thumbnails) becomes an
/// attachment of the caller, not yet posted.
pub fn create(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (blob, thumbnails): (BlobHash, Option<Thumbnails>),
    (name, content_type): (String, String),
) -> DomainResult<Effects> {
    active_account(view, actor)?;
    check_name(&name)?;
    check_content_type(&content_type)?;
    let mut attachment = Attachment {
        id: AttachmentId(ctx.log_index),
        blob,
        name,
        content_type,
        size: 0,
        thumbnails,
        uploader: actor,
        uploaded_at_ms: ctx.now_ms,
        post: None,
        released_at_ms: None,
    };
    let mut held = BTreeMap::new();
    for hash in attachment.blobs() {
        let b = match held.get(&hash) {
            Some(b) => *b,
            None => view.blob(hash)?.filter(Blob::complete).ok_or_else(|| incomplete(hash))?,
        };
        held.insert(hash, Blob { refs: b.refs + 1, ..b });
    }
    attachment.size = held.get(&blob).map_or(0, |b| b.size);
    let mut changes: Vec<Change> = held.into_values().map(Change::Blob).collect();
    changes.push(Change::Attachment(attachment));
    Ok(Effects::new(Outcome::Attachment(AttachmentId(ctx.log_index)), changes))
}

fn incomplete(hash: BlobHash) -> super::DomainError {
    precondition(format!("file {hash}: its bytes are not all stored (upload it again)"))
}

/// The attachments `files` of `actor` that a post may take: their uploader's own, not posted
/// yet, each once, at most [`MAX_FILES_PER_POST`].
pub fn own_unposted(view: &impl HubView, actor: AccountId, files: &[AttachmentId]) -> DomainResult<Vec<Attachment>> {
    if files.len() > MAX_FILES_PER_POST {
        return Err(invalid(format!("at most {MAX_FILES_PER_POST} files per post")));
    }
    let mut out = Vec::new();
    for (i, id) in files.iter().enumerate() {
        if files[..i].contains(id) {
            return Err(invalid(format!("file {id} is attached twice")));
        }
        let a = view.attachment(*id)?.filter(|a| a.uploader == actor).ok_or(not_found("attachment"))?;
        if a.post.is_some() {
            return Err(precondition(format!("file {id} is already in a post")));
        }
        out.push(a);
    }
    Ok(out)
}

/// The changes that attach `files` (checked by [`own_unposted`], or received from another
/// hub) to post `seq` of `room`.
pub fn place((room, seq): (RoomId, u64), files: Vec<Attachment>) -> Vec<Change> {
    if files.is_empty() {
        return vec![];
    }
    let ids = files.iter().map(|a| a.id).collect();
    let mut changes: Vec<Change> =
        files.into_iter().map(|a| Change::Attachment(Attachment { post: Some((room, seq)), ..a })).collect();
    changes.push(Change::PostFiles { room, seq, files: ids });
    changes
}

/// The changes that release the files of a deleted post: they are collected after the grace
/// period, and the post no longer lists them.
pub fn release(view: &impl HubView, ctx: Ctx, (room, seq): (RoomId, u64)) -> DomainResult<Vec<Change>> {
    let files = view.post_files(room, seq)?;
    if files.is_empty() {
        return Ok(vec![]);
    }
    let mut changes = Vec::new();
    for id in files {
        if let Some(mut a) = view.attachment(id)? {
            a.released_at_ms = Some(ctx.now_ms);
            changes.push(Change::Attachment(a));
        }
    }
    changes.push(Change::PostFiles { room, seq, files: vec![] });
    Ok(changes)
}

/// The attachment `id` if `actor` may read it: a posted one by the members of its room (as its
/// post), one not posted yet by its uploader only. NotFound for everyone else.
pub fn readable(view: &impl HubView, actor: AccountId, id: AttachmentId) -> DomainResult<Attachment> {
    active_account(view, actor)?;
    let a = view.attachment(id)?.filter(|a| a.released_at_ms.is_none()).ok_or(not_found("attachment"))?;
    let allowed = match a.post {
        None => a.uploader == actor,
        Some((room, _)) => can_read(view, actor, room)?,
    };
    if !allowed {
        return Err(not_found("attachment"));
    }
    Ok(a)
}

/// The attachments of post `seq` of `room`, in the order they were attached.
pub fn of_post(view: &impl HubView, room: RoomId, seq: u64) -> ViewResult<Vec<Attachment>> {
    let mut files = Vec::new();
    for id in view.post_files(room, seq)? {
        files.extend(view.attachment(id)?);
    }
    Ok(files)
}

/// What a collection removed: the changes, and audit records for the files that were in
/// patient rooms.
#[derive(Debug, Default)]
pub struct Collected {
    pub changes: Vec<Change>,
    pub audit: Vec<AuditRecord>,
}

/// Removes what has been unused for longer than `grace_ms`: attachments no post shows (and
/// the blobs they were the last to hold), and blobs no attachment ever took (an upload that
/// stopped). At most [`COLLECT_AT_MOST`] of each; the collector asks again for the rest.
pub fn collect(view: &impl HubView, ctx: Ctx, grace_ms: u64, node: u64) -> ViewResult<Collected> {
    let before = ctx.now_ms.saturating_sub(grace_ms);
    let mut out = Collected::default();
    let mut blobs: BTreeMap<BlobHash, Blob> = BTreeMap::new();
    for id in view.unused_attachments(before, COLLECT_AT_MOST)? {
        let Some(a) = view.attachment(id)? else { continue };
        for hash in a.blobs() {
            let b = match blobs.get(&hash) {
                Some(b) => Some(*b),
                None => view.blob(hash)?,
            };
            if let Some(b) = b {
                blobs.insert(hash, Blob { refs: b.refs.saturating_sub(1), ..b });
            }
        }
        if let Some((room, seq)) = a.post
            && let Some(patient) = patient_of(view, room)?
        {
            let what =
                format!("attachment {} ({}, {} bytes, sha256 {}) of post #{seq} removed", a.id, a.name, a.size, a.blob);
            out.audit.push(AuditRecord {
                patient: Some(patient),
                room: Some(room),
                ..AuditRecord::by_hub(ctx.now_ms, node, what)
            });
        }
        out.changes.push(Change::AttachmentGone(a));
    }
    for hash in view.unclaimed_blobs(before, COLLECT_AT_MOST)? {
        blobs.entry(hash).or_insert(match view.blob(hash)? {
            Some(b) => b,
            None => continue,
        });
    }
    let mut stored = view.stored_bytes()?;
    for b in blobs.into_values() {
        if b.refs == 0 {
            stored = stored.saturating_sub(b.stored_bytes());
            out.changes.push(Change::BlobGone(b));
        } else {
            out.changes.push(Change::Blob(b));
        }
    }
    if !out.changes.is_empty() {
        out.changes.push(Change::StoredBytes(stored));
    }
    Ok(out)
}
