//! Attachments: chunks in order, one blob per content, access exactly as the post's room, and
//! collection of what nobody can reach any more.

use super::*;
use crate::attachments::{self, BlobHash, CHUNK_BYTES, Thumbnails, chunk_count, chunk_len};

pub(super) const GRACE_MS: u64 = 60 * 60_000;

/// A file's bytes and a hash that names them (the domain trusts the API node's hash).
pub(super) fn file(seed: u8, size: u64) -> (BlobHash, Vec<u8>) {
    let bytes: Vec<u8> = (0..size).map(|i| seed.wrapping_add(i as u8)).collect();
    let mut hash = [seed; 32];
    hash[..8].copy_from_slice(&size.to_be_bytes());
    (BlobHash(hash), bytes)
}

pub(super) fn chunk_cmd(hash: BlobHash, bytes: &[u8], index: u32) -> Command {
    let start = (u64::from(index) * CHUNK_BYTES) as usize;
    let end = start + chunk_len(bytes.len() as u64, index) as usize;
    Command::StoreChunk { blob: hash, size: bytes.len() as u64, index, bytes: bytes[start..end].to_vec() }
}

pub(super) fn store(hub: &mut Hub, who: AccountId, (hash, bytes): &(BlobHash, Vec<u8>)) {
    for index in 0..chunk_count(bytes.len() as u64) {
        hub.ok(who, chunk_cmd(*hash, bytes, index));
    }
}

fn attach(hub: &mut Hub, who: AccountId, blob: BlobHash, thumbnails: Option<Thumbnails>, name: &str) -> AttachmentId {
    let cmd = Command::CreateAttachment { blob, thumbnails, name: name.into(), content_type: "application/pdf".into() };
    match hub.ok(who, cmd) {
        Outcome::Attachment(id) => id,
        o => panic!("{o:?}"),
    }
}

pub(super) fn upload(hub: &mut Hub, who: AccountId, f: &(BlobHash, Vec<u8>), name: &str) -> AttachmentId {
    store(hub, who, f);
    attach(hub, who, f.0, None, name)
}

pub(super) fn post_with(
    hub: &mut Hub,
    who: AccountId,
    room: RoomId,
    text: &str,
    files: Vec<AttachmentId>,
) -> DomainResult<Outcome> {
    hub.run(Some(who), Command::PostWithFiles { room, text: text.into(), reply_to: None, mentions: vec![], files })
}

pub(super) fn collect(hub: &mut Hub, after_ms: u64) {
    hub.now += after_ms;
    hub.index += 1;
    let ctx = Ctx { log_index: hub.index, now_ms: hub.now };
    let collected = attachments::collect(&hub.state, ctx, GRACE_MS, 1).unwrap();
    hub.state.apply(collected.changes);
}

/// A doctor with a patient team that a nurse is on, and an outsider of the same clinic.
fn team() -> (Hub, AccountId, AccountId, AccountId, RoomId) {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (doctor, nurse, outsider) = (people[0], people[1], people[2]);
    let room = patient(&mut hub, doctor, "山田 花子");
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    (hub, doctor, nurse, outsider, room)
}

#[test]
fn chunks_arrive_in_order_and_a_retry_is_a_no_op() {
    let (mut hub, doctor, ..) = team();
    let f = file(1, 2 * CHUNK_BYTES + 10);
    hub.ok(doctor, chunk_cmd(f.0, &f.1, 0));
    hub.ok(doctor, chunk_cmd(f.0, &f.1, 0));
    assert_eq!(hub.state.blob(f.0).unwrap().unwrap().stored_chunks, 1, "the retried chunk stored once");
    let gap = hub.run(Some(doctor), chunk_cmd(f.0, &f.1, 2));
    assert!(matches!(gap, Err(DomainError::FailedPrecondition(_))), "{gap:?}");
    let mut short = chunk_cmd(f.0, &f.1, 1);
    if let Command::StoreChunk { bytes, .. } = &mut short {
        bytes.pop();
    }
    assert!(matches!(hub.run(Some(doctor), short), Err(DomainError::InvalidArgument(_))));
    let other_size = Command::StoreChunk { blob: f.0, size: 5, index: 0, bytes: vec![0; 5] };
    assert!(matches!(hub.run(Some(doctor), other_size), Err(DomainError::InvalidArgument(_))));
    let empty = Command::StoreChunk { blob: file(9, 1).0, size: 0, index: 0, bytes: vec![] };
    assert!(matches!(hub.run(Some(doctor), empty), Err(DomainError::InvalidArgument(_))));
    hub.ok(doctor, chunk_cmd(f.0, &f.1, 1));
    hub.ok(doctor, chunk_cmd(f.0, &f.1, 2));
    let blob = hub.state.blob(f.0).unwrap().unwrap();
    assert!(blob.complete());
    let stored: Vec<u8> = (0..3).flat_map(|i| hub.state.chunks[&(f.0, i)].clone()).collect();
    assert_eq!(stored, f.1, "the chunks hold the file");
    assert_eq!(hub.state.stored_bytes().unwrap(), f.1.len() as u64);
}

#[test]
fn only_a_complete_file_with_a_plain_name_becomes_an_attachment() {
    let (mut hub, doctor, ..) = team();
    let f = file(2, CHUNK_BYTES + 1);
    hub.ok(doctor, chunk_cmd(f.0, &f.1, 0));
    let early = Command::CreateAttachment {
        blob: f.0,
        thumbnails: None,
        name: "a.pdf".into(),
        content_type: "application/pdf".into(),
    };
    assert!(matches!(hub.run(Some(doctor), early), Err(DomainError::FailedPrecondition(_))));
    hub.ok(doctor, chunk_cmd(f.0, &f.1, 1));
    for bad in
        ["", "../etc/passwd", "a\\b.pdf", "a\u{7}.pdf", "..", &"長".repeat(201), "fdp\u{202E}.exe", "a\u{200B}.pdf"]
    {
        let cmd = Command::CreateAttachment {
            blob: f.0,
            thumbnails: None,
            name: bad.into(),
            content_type: "application/pdf".into(),
        };
        assert!(matches!(hub.run(Some(doctor), cmd), Err(DomainError::InvalidArgument(_))), "{bad:?} accepted");
    }
    let id = attach(&mut hub, doctor, f.0, None, "処方変更.pdf");
    let a = hub.state.attachment(id).unwrap().unwrap();
    assert_eq!((a.size, a.post, a.uploader), (f.1.len() as u64, None, doctor));
}

#[test]
fn identical_content_is_stored_once() {
    let (mut hub, doctor, nurse, _, _) = team();
    let f = file(3, 100);
    let first = upload(&mut hub, doctor, &f, "a.pdf");
    store(&mut hub, nurse, &f);
    let second = attach(&mut hub, nurse, f.0, None, "b.pdf");
    assert_ne!(first, second);
    assert_eq!(hub.state.blob(f.0).unwrap().unwrap().refs, 2);
    assert_eq!(hub.state.stored_bytes().unwrap(), 100, "the bytes are stored once");
}

#[test]
fn room_members_read_a_posted_file_and_nobody_else() {
    let (mut hub, doctor, nurse, outsider, room) = team();
    let id = upload(&mut hub, doctor, &file(4, 10), "褥瘡.pdf");
    assert!(attachments::readable(&hub.state, doctor, id).is_ok(), "the uploader reads it before posting");
    assert_eq!(attachments::readable(&hub.state, nurse, id), Err(not_found("attachment")));
    let seq = match post_with(&mut hub, doctor, room, "", vec![id]).unwrap() {
        Outcome::Posted { seq, .. } => seq,
        o => panic!("{o:?}"),
    };
    assert_eq!(hub.state.post_files(room, seq).unwrap(), vec![id]);
    assert!(attachments::readable(&hub.state, nurse, id).is_ok());
    assert_eq!(attachments::readable(&hub.state, outsider, id), Err(not_found("attachment")));
    hub.ok(doctor, Command::Remove { room, account: nurse });
    assert_eq!(attachments::readable(&hub.state, nurse, id), Err(not_found("attachment")), "removed: at once");
}

#[test]
fn a_post_takes_only_the_posters_own_unposted_files() {
    let (mut hub, doctor, nurse, _, room) = team();
    let mine = upload(&mut hub, doctor, &file(5, 10), "a.pdf");
    let theirs = upload(&mut hub, nurse, &file(6, 10), "b.pdf");
    assert_eq!(post_with(&mut hub, doctor, room, "x", vec![theirs]), Err(not_found("attachment")));
    assert!(matches!(post_with(&mut hub, doctor, room, "x", vec![mine, mine]), Err(DomainError::InvalidArgument(_))));
    post_with(&mut hub, doctor, room, "x", vec![mine]).unwrap();
    assert!(matches!(post_with(&mut hub, doctor, room, "x", vec![mine]), Err(DomainError::FailedPrecondition(_))));
    let blank = hub.run(Some(doctor), Command::Post { room, text: String::new(), reply_to: None, mentions: vec![] });
    assert!(matches!(blank, Err(DomainError::InvalidArgument(_))), "a post without files needs text");
}

#[test]
fn unused_files_are_collected_after_the_grace_period_and_shared_bytes_stay() {
    let (mut hub, doctor, nurse, _, room) = team();
    let shared = file(7, CHUNK_BYTES + 5);
    let posted = upload(&mut hub, doctor, &shared, "a.pdf");
    let seq = match post_with(&mut hub, doctor, room, "写真", vec![posted]).unwrap() {
        Outcome::Posted { seq, .. } => seq,
        o => panic!("{o:?}"),
    };
    let never_posted = upload(&mut hub, nurse, &shared, "b.pdf");
    let alone = file(8, 50);
    let alone_id = upload(&mut hub, nurse, &alone, "c.pdf");
    let (abandoned, bytes) = file(9, 2 * CHUNK_BYTES);
    hub.ok(nurse, chunk_cmd(abandoned, &bytes, 0));

    collect(&mut hub, GRACE_MS / 2);
    assert!(hub.state.attachment(never_posted).unwrap().is_some(), "kept within the grace period");
    collect(&mut hub, GRACE_MS);
    assert_eq!(hub.state.attachment(never_posted).unwrap(), None);
    assert_eq!(hub.state.attachment(alone_id).unwrap(), None);
    assert_eq!(hub.state.blob(alone.0).unwrap(), None, "its only holder is gone");
    assert_eq!(hub.state.blob(abandoned).unwrap(), None, "an upload that stopped");
    assert_eq!(hub.state.blob(shared.0).unwrap().unwrap().refs, 1, "the posted file still holds it");
    assert!(attachments::readable(&hub.state, nurse, posted).is_ok());

    hub.ok(doctor, Command::DeletePost { room, seq });
    assert_eq!(attachments::readable(&hub.state, nurse, posted), Err(not_found("attachment")), "gone with its post");
    assert!(hub.state.post_files(room, seq).unwrap().is_empty());
    collect(&mut hub, GRACE_MS + 1);
    assert!(hub.state.attachments.is_empty() && hub.state.blobs.is_empty() && hub.state.chunks.is_empty());
    assert_eq!(hub.state.stored_bytes().unwrap(), 0);
}

#[test]
fn a_photo_holds_its_thumbnails_too() {
    let (mut hub, doctor, _, _, room) = team();
    let (photo, small, medium) = (file(10, 300), file(11, 20), file(12, 20));
    for f in [&photo, &small, &medium] {
        store(&mut hub, doctor, f);
    }
    let id = attach(&mut hub, doctor, photo.0, Some(Thumbnails { small: small.0, medium: small.0 }), "写真.jpg");
    assert_eq!(hub.state.blob(small.0).unwrap().unwrap().refs, 2, "the same bytes as both thumbnails");
    post_with(&mut hub, doctor, room, "", vec![id]).unwrap();
    collect(&mut hub, GRACE_MS + 1);
    assert!(hub.state.blob(medium.0).unwrap().is_none(), "the unused thumbnail bytes are collected");
    assert!(hub.state.blob(small.0).unwrap().is_some());
}
