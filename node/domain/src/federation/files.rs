//! Files of posts in rooms shared across hubs. A message never carries a file's bytes: it
//! describes the file ([`FileCopy`]: hash, size, type, thumbnails, its id on the sender), and the
//! receiving hub's leader fetches the bytes from the sender over the federation port
//! (`attachments::Fetch`), then stores them through its own log like an upload. Large files thus
//! never pass through the outbox or the inbox, where they would be queued, signed and kept in
//! every batch and stall the messages behind them.
//!
//! Both directions use the same rules: the home hub's post with files reaches every member hub
//! as [`Message::PostWithFiles`](super::Message::PostWithFiles), and a member's post with files
//! travels to the home hub as `RoomWrite::PostWithFiles`; the files stay fetchable on the
//! member's hub ([`hold_for_home`]) until the home hub has had time to fetch them.

use std::collections::BTreeMap;

use super::copies::IdMint;
use super::names::HubName;
use super::outbox::PendingWrite;
use super::wire::{FileCopy, RoomWrite, SizedBlob};
use crate::attachments::{
    self, Attachment, Availability, Blob, BlobHash, Fetch, MAX_FILE_BYTES, MAX_FILES_PER_POST, Thumbnails, Variant,
    check_content_type, check_name,
};
use crate::error::{DomainResult, invalid, not_found};
use crate::model::*;
use crate::view::{Change, HubView, ViewResult};

/// The type of every thumbnail (the hub makes them as JPEG).
pub const THUMBNAIL_TYPE: &str = "image/jpeg";

/// Attachment `a` as another hub is told of it.
pub fn copy_of(view: &impl HubView, a: &Attachment) -> ViewResult<FileCopy> {
    let sized = |hash: BlobHash| -> ViewResult<Option<SizedBlob>> {
        Ok(view.blob(hash)?.map(|b| SizedBlob { hash, size: b.size }))
    };
    let thumbnails = match a.thumbnails {
        Some(t) => sized(t.small)?.zip(sized(t.medium)?),
        None => None,
    };
    Ok(FileCopy {
        id: a.id,
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        file: SizedBlob { hash: a.blob, size: a.size },
        thumbnails,
    })
}

/// The files of post `seq` of `room`, as another hub is told of them.
pub fn copies_of_post(view: &impl HubView, room: RoomId, seq: u64) -> ViewResult<Vec<FileCopy>> {
    attachments::of_post(view, room, seq)?.iter().map(|a| copy_of(view, a)).collect()
}

/// Attachments of `uploader` (not yet posted) for the files `origin` described, checked by the
/// rules of an upload; the changes that hold their blobs and fetch from `origin` what this hub
/// does not have complete.
pub fn received(
    view: &impl HubView,
    ids: &mut IdMint,
    (origin, now_ms): (&HubName, u64),
    uploader: AccountId,
    files: &[FileCopy],
) -> DomainResult<(Vec<Change>, Vec<Attachment>)> {
    if files.len() > MAX_FILES_PER_POST {
        return Err(invalid(format!("at most {MAX_FILES_PER_POST} files per post")));
    }
    let mut held = Held { origin, now_ms, blobs: BTreeMap::new(), fetches: BTreeMap::new() };
    let mut out = Vec::new();
    for f in files {
        check_name(&f.name)?;
        check_content_type(&f.content_type)?;
        held.take(view, f, (f.file, Variant::Original, &f.content_type))?;
        if let Some((small, medium)) = f.thumbnails {
            held.take(view, f, (small, Variant::Small, THUMBNAIL_TYPE))?;
            held.take(view, f, (medium, Variant::Medium, THUMBNAIL_TYPE))?;
        }
        out.push(Attachment {
            id: AttachmentId(ids.mint()?),
            blob: f.file.hash,
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size: f.file.size,
            thumbnails: f.thumbnails.map(|(s, m)| Thumbnails { small: s.hash, medium: m.hash }),
            uploader,
            uploaded_at_ms: now_ms,
            post: None,
            released_at_ms: None,
        });
    }
    let mut changes: Vec<Change> = held.blobs.into_values().map(Change::Blob).collect();
    changes.extend(held.fetches.into_values().map(Change::Fetch));
    Ok((changes, out))
}

/// The blobs the received files hold, and what must be fetched.
struct Held<'a> {
    origin: &'a HubName,
    now_ms: u64,
    blobs: BTreeMap<BlobHash, Blob>,
    fetches: BTreeMap<BlobHash, Fetch>,
}

impl Held<'_> {
    /// One more reference to `sized`, fetched from the origin unless the origin already proved
    /// it holds these bytes (sent them whole) or they are being fetched from it; a fetch from
    /// it that failed is tried again.
    fn take(
        &mut self,
        view: &impl HubView,
        f: &FileCopy,
        (sized, variant, ty): (SizedBlob, Variant, &str),
    ) -> DomainResult<()> {
        let SizedBlob { hash, size } = sized;
        if size == 0 || size > MAX_FILE_BYTES {
            return Err(invalid(format!("a file of {size} bytes: 1..={MAX_FILE_BYTES} bytes are accepted")));
        }
        let blob = match self.blobs.get(&hash) {
            Some(b) => *b,
            None => view.blob(hash)?.unwrap_or(Blob { hash, size, stored_chunks: 0, refs: 0, since_ms: self.now_ms }),
        };
        if blob.size != size {
            return Err(invalid(format!("file {hash} has {} bytes, not {size}", blob.size)));
        }
        self.blobs.insert(hash, Blob { refs: blob.refs + 1, ..blob });
        let proven = blob.complete() && view.proven(self.origin, hash)?;
        let fetching =
            view.fetch(hash, self.origin)?.is_some_and(|x| x.failed.is_none()) || self.fetches.contains_key(&hash);
        if !proven && !fetching {
            let fetch = Fetch {
                hash,
                size,
                content_type: ty.to_owned(),
                from: self.origin.clone(),
                file: f.id,
                variant,
                since_ms: self.now_ms,
                failed: None,
            };
            self.fetches.insert(hash, fetch);
        }
        Ok(())
    }
}

/// A member's post with files into a copy: its files (`actor`'s own, not posted yet) travel
/// with the write to the home hub, and stay here, held by the write (post number 0 of the
/// copy), so the home hub can fetch them. The changes that hold them, and their descriptions.
pub fn hold_for_home(
    view: &impl HubView,
    actor: AccountId,
    room: RoomId,
    files: &[AttachmentId],
) -> DomainResult<(Vec<Change>, Vec<FileCopy>)> {
    let own = attachments::own_unposted(view, actor, files)?;
    let copies = own.iter().map(|a| copy_of(view, a)).collect::<ViewResult<Vec<_>>>()?;
    let changes = own.into_iter().map(|a| Change::Attachment(Attachment { post: Some((room, 0)), ..a })).collect();
    Ok((changes, copies))
}

/// The home hub answered (or dropped) `pending`: the files it held are released. They stay
/// fetchable by the home hub until collected after the grace period (it may still be fetching
/// them); the post's own files arrive with the post's copy.
pub fn release_sent(view: &impl HubView, now_ms: u64, pending: &PendingWrite) -> ViewResult<Vec<Change>> {
    let RoomWrite::PostWithFiles { files, .. } = &pending.write else { return Ok(vec![]) };
    let mut changes = Vec::new();
    for f in files {
        let Some(a) = view.attachment(f.id)? else { continue };
        if a.post == Some((pending.room, 0)) && a.released_at_ms.is_none() {
            changes.push(Change::Attachment(Attachment { released_at_ms: Some(now_ms), ..a }));
        }
    }
    Ok(changes)
}

/// Whether hub `peer` may have the bytes of `variant` of attachment `id`, and whether they are
/// here: the file is in a post of one of our rooms where `peer` has an active member (what the
/// fan-out told it of), or it travelled with a write of ours to `peer`, the home of the room.
/// NotFound otherwise, the same for a file that does not exist.
pub fn fetchable_by(
    view: &impl HubView,
    peer: &HubName,
    id: AttachmentId,
    variant: Variant,
) -> DomainResult<Availability> {
    let a = view.attachment(id)?.ok_or(not_found("file"))?;
    let Some((room, seq)) = a.post else { return Err(not_found("file")) };
    let shared = match view.room(room)?.map(|r| r.kind) {
        Some(RoomKind::Mirror { home, .. }) => seq == 0 && &home == peer,
        Some(_) => seq > 0 && a.released_at_ms.is_none() && super::home::member_hubs(view, room)?.1.contains(peer),
        None => false,
    };
    if !shared {
        return Err(not_found("file"));
    }
    attachments::availability(view, &a, variant)?.ok_or(not_found("file"))
}
