//! Files of posts in a room shared by two hubs: described in the messages, fetched from the hub
//! that has them, released with their post or the copy, and fetchable only by the hubs that
//! were told of them.

use super::attachments::{GRACE_MS, collect, file, post_with, upload};
use super::federation::{Story, exchange, forge, name, post_copy, refused, story};
use super::*;
use crate::attachments::{self, Availability, BlobHash, CHUNK_BYTES, Variant, chunk_count, chunk_len};
use crate::federation::Message;
use crate::federation::files::fetchable_by;
use crate::federation::wire::{FileCopy, RoomWrite, SizedBlob};

/// Stores the bytes of a blob `hub` is fetching from `from`, as its fetcher would: the chunks it
/// lacks, then the proof.
fn fetched(hub: &mut Hub, from: &str, (hash, bytes): &(BlobHash, Vec<u8>)) {
    let size = bytes.len() as u64;
    let first = hub.state.blob(*hash).unwrap().map_or(0, |b| b.stored_chunks);
    for index in first..chunk_count(size) {
        let start = (u64::from(index) * CHUNK_BYTES) as usize;
        let chunk = bytes[start..start + chunk_len(size, index) as usize].to_vec();
        hub.index += 1;
        let ctx = Ctx { log_index: hub.index, now_ms: hub.now };
        let changes = attachments::store_fetched(&hub.state, ctx, (*hash, &name(from)), (size, index), chunk);
        hub.state.apply(changes.unwrap());
    }
    hub.state.apply(attachments::fetch_proven(&hub.state, *hash, &name(from)).unwrap());
}

/// Whether `variant` of attachment `id` can be read on `hub`.
fn here(hub: &Hub, id: AttachmentId) -> Availability {
    let a = hub.state.attachment(id).unwrap().unwrap();
    attachments::availability(&hub.state, &a, Variant::Original).unwrap().unwrap()
}

/// The files of post `seq` of `room` on `hub`.
fn files_of(hub: &Hub, room: RoomId, seq: u64) -> Vec<attachments::Attachment> {
    attachments::of_post(&hub.state, room, seq).unwrap()
}

/// The doctor's post with a three-chunk file, delivered to Gunma: (the file, its id on Tochigi).
fn doctor_posts_a_file(s: &mut Story) -> ((BlobHash, Vec<u8>), AttachmentId) {
    let f = file(7, 2 * CHUNK_BYTES + 100);
    let id = upload(&mut s.tochigi, s.doctor, &f, "褥瘡の経過.pdf");
    post_with(&mut s.tochigi, s.doctor, s.home, "仙骨部の写真です", vec![id]).unwrap();
    exchange(&mut s.tochigi, &mut s.gunma);
    (f, id)
}

#[test]
fn a_post_with_files_reaches_the_member_hub_which_fetches_the_bytes_from_the_home_hub() {
    let mut s = story();
    let (f, on_tochigi) = doctor_posts_a_file(&mut s);
    let copies = files_of(&s.gunma, s.copy, 1);
    assert_eq!(copies.len(), 1, "the post arrives with its file");
    let copy = &copies[0];
    assert_eq!((copy.blob, copy.size, copy.name.as_str()), (f.0, f.1.len() as u64, "褥瘡の経過.pdf"));
    assert_ne!(copy.id, on_tochigi, "an id of Gunma's own");
    let fetch = s.gunma.state.fetch(f.0, &name("tochigi")).unwrap().expect("the bytes are fetched from Tochigi");
    assert_eq!((fetch.file, fetch.variant), (on_tochigi, Variant::Original));
    assert_eq!(s.gunma.state.blob(f.0).unwrap().unwrap().stored_chunks, 0, "no byte travelled in the message");
    assert_eq!(here(&s.gunma, copy.id), Availability::Arriving(name("tochigi")));
    // Tochigi serves it to Gunma, whose member is in the room, and to nobody else.
    let served = fetchable_by(&s.tochigi.state, &name("gunma"), on_tochigi, Variant::Original);
    assert!(matches!(served, Ok(Availability::Here(_))), "{served:?}");
    let other = fetchable_by(&s.tochigi.state, &name("ibaraki"), on_tochigi, Variant::Original);
    assert!(matches!(other, Err(DomainError::NotFound(_))), "{other:?}");
    let thumbnail = fetchable_by(&s.tochigi.state, &name("gunma"), on_tochigi, Variant::Small);
    assert!(matches!(thumbnail, Err(DomainError::NotFound(_))), "a PDF has no thumbnails: {thumbnail:?}");
    fetched(&mut s.gunma, "tochigi", &f);
    assert!(s.gunma.state.blob(f.0).unwrap().unwrap().complete());
    assert!(s.gunma.state.fetch(f.0, &name("tochigi")).unwrap().is_none(), "the fetch ends with the proof");
    assert!(matches!(here(&s.gunma, copy.id), Availability::Here(_)));
    assert_eq!(s.gunma.state.stored_bytes().unwrap(), f.1.len() as u64);
    assert!(attachments::readable(&s.gunma.state, s.nurse, copy.id).is_ok(), "the nurse reads it on her hub");
}

#[test]
fn only_a_blob_being_fetched_takes_fetched_chunks_and_a_failed_fetch_says_why() {
    let mut s = story();
    let stray = file(9, 10);
    let ctx = Ctx { log_index: 99, now_ms: s.gunma.now };
    let tochigi = name("tochigi");
    let refused = attachments::store_fetched(&s.gunma.state, ctx, (stray.0, &tochigi), (10, 0), stray.1.clone());
    assert!(matches!(refused, Err(DomainError::FailedPrecondition(_))), "{refused:?}");
    let (f, _) = doctor_posts_a_file(&mut s);
    let unproven = attachments::fetch_proven(&s.gunma.state, f.0, &tochigi);
    assert!(matches!(unproven, Err(DomainError::FailedPrecondition(_))), "no proof before the bytes: {unproven:?}");
    let reason = "tochigi はこのファイルを共有していません";
    s.gunma.state.apply(attachments::fetch_failed(&s.gunma.state, f.0, &tochigi, reason.into()).unwrap());
    let fetch = s.gunma.state.fetch(f.0, &tochigi).unwrap().unwrap();
    assert_eq!(fetch.failed.as_deref(), Some(reason));
    assert!(s.gunma.state.fetches(10).unwrap().is_empty(), "a failed fetch is no longer due");
    let copy = files_of(&s.gunma, s.copy, 1).remove(0);
    assert_eq!(here(&s.gunma, copy.id), Availability::Failed { from: tochigi, reason: reason.into() });
}

#[test]
fn a_members_post_with_files_goes_to_the_home_hub_which_fetches_them_from_hers() {
    let mut s = story();
    let g = file(3, CHUNK_BYTES + 1);
    let upload_id = upload(&mut s.gunma, s.nurse, &g, "処方変更.pdf");
    let queued = post_with(&mut s.gunma, s.nurse, s.copy, "", vec![upload_id]).unwrap();
    assert!(matches!(queued, Outcome::Queued { .. }), "{queued:?}");
    let held = s.gunma.state.attachment(upload_id).unwrap().unwrap();
    assert_eq!(held.post, Some((s.copy, 0)), "held by the write on its way");
    assert!(fetchable_by(&s.gunma.state, &name("tochigi"), upload_id, Variant::Original).is_ok());
    assert!(fetchable_by(&s.gunma.state, &name("ibaraki"), upload_id, Variant::Original).is_err());
    exchange(&mut s.tochigi, &mut s.gunma);
    // On Tochigi, the post is the nurse's shadow's, with the file to fetch from Gunma.
    let at_home = files_of(&s.tochigi, s.home, 1);
    assert_eq!(at_home.len(), 1);
    let shadow = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    assert_eq!((at_home[0].blob, at_home[0].uploader), (g.0, shadow));
    let fetch = s.tochigi.state.fetch(g.0, &name("gunma")).unwrap().expect("fetched from Gunma");
    assert_eq!(fetch.file, upload_id);
    // Gunma's copy shows the post with its file; Tochigi must still send the bytes back
    // (Gunma has them, but takes a hub's word for a file only with the bytes).
    let at_gunma = files_of(&s.gunma, s.copy, 1);
    assert_eq!(at_gunma.len(), 1);
    assert_eq!(here(&s.gunma, at_gunma[0].id), Availability::Arriving(name("tochigi")));
    assert!(matches!(here(&s.gunma, upload_id), Availability::Here(_)), "her own upload is hers");
    // The upload is released now that the post holds the bytes, but Tochigi may still fetch it
    // until it is collected.
    assert!(s.gunma.state.attachment(upload_id).unwrap().unwrap().released_at_ms.is_some());
    assert!(fetchable_by(&s.gunma.state, &name("tochigi"), upload_id, Variant::Original).is_ok());
    fetched(&mut s.tochigi, "gunma", &g);
    assert!(attachments::readable(&s.tochigi.state, s.doctor, at_home[0].id).is_ok());
    assert!(matches!(here(&s.tochigi, at_home[0].id), Availability::Here(_)));
    fetched(&mut s.gunma, "tochigi", &g);
    assert!(matches!(here(&s.gunma, at_gunma[0].id), Availability::Here(_)));
    // After the grace period the upload goes; the post's file keeps the bytes.
    collect(&mut s.gunma, GRACE_MS + 1);
    assert!(s.gunma.state.attachment(upload_id).unwrap().is_none());
    assert!(s.gunma.state.blob(g.0).unwrap().is_some_and(|b| b.refs == 1));
}

#[test]
fn a_deleted_post_or_a_dropped_copy_releases_the_copys_files_and_stops_the_fetch() {
    let mut s = story();
    let (f, on_tochigi) = doctor_posts_a_file(&mut s);
    s.tochigi.ok(s.doctor, Command::DeletePost { room: s.home, seq: 1 });
    exchange(&mut s.tochigi, &mut s.gunma);
    assert!(files_of(&s.gunma, s.copy, 1).is_empty(), "the deleted post lists no file");
    assert!(fetchable_by(&s.tochigi.state, &name("gunma"), on_tochigi, Variant::Original).is_err());
    collect(&mut s.gunma, GRACE_MS + 1);
    assert!(s.gunma.state.blob(f.0).unwrap().is_none(), "the half-fetched blob goes");
    assert!(s.gunma.state.fetch(f.0, &name("tochigi")).unwrap().is_none(), "and so does its fetch");
    // A second file; then the nurse is removed: Gunma's copy lets go of it too.
    let (g, on_tochigi) = {
        let g = file(8, 500);
        let id = upload(&mut s.tochigi, s.doctor, &g, "ケアプラン.pdf");
        post_with(&mut s.tochigi, s.doctor, s.home, "ケアプランです", vec![id]).unwrap();
        exchange(&mut s.tochigi, &mut s.gunma);
        (g, id)
    };
    assert!(s.gunma.state.fetch(g.0, &name("tochigi")).unwrap().is_some());
    let shadow = s.tochigi.state.account_by_login("user1@gunma").unwrap().unwrap();
    s.tochigi.ok(s.doctor, Command::Remove { room: s.home, account: shadow });
    exchange(&mut s.tochigi, &mut s.gunma);
    assert!(fetchable_by(&s.tochigi.state, &name("gunma"), on_tochigi, Variant::Original).is_err(), "at once");
    assert!(files_of(&s.gunma, s.copy, 2).is_empty());
    collect(&mut s.gunma, GRACE_MS + 1);
    assert!(s.gunma.state.fetch(g.0, &name("tochigi")).unwrap().is_none());
    assert!(s.gunma.state.blob(g.0).unwrap().is_none());
}

#[test]
fn a_file_a_peer_describes_is_checked_by_the_rules_of_an_upload() {
    let mut s = story();
    let post = |seq: u64| post_copy(s.home, seq, "写真");
    let described = |name: &str, size: u64| FileCopy {
        id: AttachmentId(5),
        name: name.into(),
        content_type: "image/jpeg".into(),
        file: SizedBlob { hash: BlobHash([4; 32]), size },
        thumbnails: None,
    };
    for bad in [described("../../etc/passwd", 10), described("写真.jpg", 0), described("写真\u{202E}gpj.exe", 10)] {
        let applied = forge(&mut s.gunma, "tochigi", vec![Message::PostWithFiles { post: post(1), files: vec![bad] }]);
        assert!(refused(&applied), "{:?}", applied.audit);
        assert!(s.gunma.state.post(s.copy, 1).unwrap().is_none(), "nothing of the refused post is kept");
    }
    let fine = forge(
        &mut s.gunma,
        "tochigi",
        vec![Message::PostWithFiles { post: post(1), files: vec![described("写真.jpg", 10)] }],
    );
    assert!(!refused(&fine));
    assert_eq!(files_of(&s.gunma, s.copy, 1).len(), 1);
}

#[test]
fn a_hub_naming_a_file_held_here_must_still_send_its_bytes() {
    let mut s = story();
    // A file of a room Gunma has nobody in: Gunma must not get it (nor put it before the team)
    // by naming its hash.
    let private = patient(&mut s.tochigi, s.doctor, "鬼怒川 太郎");
    let f = file(5, 300);
    let id = upload(&mut s.tochigi, s.doctor, &f, "検査結果.pdf");
    post_with(&mut s.tochigi, s.doctor, private, "検査結果です", vec![id]).unwrap();
    let claimed = FileCopy {
        id: AttachmentId(77),
        name: "写し.pdf".into(),
        content_type: "application/pdf".into(),
        file: SizedBlob { hash: f.0, size: 300 },
        thumbnails: None,
    };
    let write =
        RoomWrite::PostWithFiles {
            text: "共有します".into(), reply_to: None, mentions: vec![], files: vec![claimed]
        };
    let submit = Message::Submit { room: s.home, author: "user1".into(), ticket: 9, write };
    assert!(!refused(&forge(&mut s.tochigi, "gunma", vec![submit])));
    let named = files_of(&s.tochigi, s.home, 1).remove(0);
    assert_eq!(here(&s.tochigi, named.id), Availability::Arriving(name("gunma")), "not until Gunma sends the bytes");
    let served = fetchable_by(&s.tochigi.state, &name("gunma"), named.id, Variant::Original);
    assert!(matches!(served, Ok(Availability::Arriving(_))), "nothing to serve back: {served:?}");
    assert!(s.tochigi.state.fetch(f.0, &name("gunma")).unwrap().is_some(), "asked of Gunma");
    assert!(matches!(here(&s.tochigi, id), Availability::Here(_)), "the doctor's own file is unaffected");
}

#[test]
fn an_upload_of_the_same_content_here_does_not_stand_for_the_peers_proof() {
    let mut s = story();
    let (f, _) = doctor_posts_a_file(&mut s);
    let copy = files_of(&s.gunma, s.copy, 1).remove(0);
    let own = upload(&mut s.gunma, s.nurse, &f, "同じ内容.pdf");
    let blob = s.gunma.state.blob(f.0).unwrap().unwrap();
    assert!(blob.complete() && blob.refs == 2, "one blob for the copy's file and the upload: {blob:?}");
    assert!(matches!(here(&s.gunma, own), Availability::Here(_)));
    assert_eq!(here(&s.gunma, copy.id), Availability::Arriving(name("tochigi")), "still Tochigi's to send");
    fetched(&mut s.gunma, "tochigi", &f);
    assert!(matches!(here(&s.gunma, copy.id), Availability::Here(_)));
    assert_eq!(s.gunma.state.blob(f.0).unwrap().unwrap().stored_chunks, chunk_count(f.1.len() as u64));
}
