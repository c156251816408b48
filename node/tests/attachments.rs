//! Attachments on a real 3-node in-process hub: uploads (client stream and browser parts) on
//! any node, downloads from every node, access exactly as the room's posts; a leader killed
//! during an upload; bad uploads refused with nothing stored; photos served without their
//! location; a learner catching up by snapshot; a region's blackout; collection after the
//! grace period.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::files::{download, header, pdf, sha256_hex, upload};
use common::{HubSpec, TestHub, Wire, account_of, authed, channel, node_spec, patient_room};
use kizuna_node::config::AttachmentsSection;
use kizuna_node::domain::HubView;
use kizuna_proto::admin::{AddLearnerRequest, CreateSnapshotRequest};
use kizuna_proto::attachments::attachment_service_client::AttachmentServiceClient;
use kizuna_proto::attachments::*;
use kizuna_proto::audit::ListAuditEntriesRequest;
use kizuna_proto::audit::audit_service_client::AuditServiceClient;
use kizuna_proto::common::Attachment;
use kizuna_proto::posts::DeletePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, TimelineRequest};
use kizuna_proto::rooms::RemoveMemberRequest;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use tonic::transport::Channel;

async fn post_files(api: Channel, token: &str, room_id: u64, ids: Vec<u64>) -> Result<u64, tonic::Status> {
    let req = CreatePostRequest {
        idempotency_key: format!("post-{ids:?}"),
        room_id,
        text: String::new(),
        attachment_ids: ids,
        ..Default::default()
    };
    Ok(PostServiceClient::new(api).create_post(authed(req, token)).await?.into_inner().seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_uploaded_on_a_follower_is_read_by_the_team_from_every_node_and_nobody_else() {
    let hub = TestHub::start(3).await;
    let (doctor, nurse, outsider) = (hub.member("dr.mori").await, hub.member("vn.sato").await, hub.member("x").await);
    let leader = hub.leader().await;
    let follower = channel(&hub.api(hub.follower_of(leader))).await;
    let room_id = patient_room(follower.clone(), &doctor, &[&nurse]).await;
    let nurse_id = account_of(follower.clone(), &nurse).await;

    // Several chunks and a partial last one.
    let bytes = pdf(3 * 128 * 1024 + 17, 1);
    let a = upload(follower.clone(), &doctor, header("up-1", "処方変更.pdf", &bytes), &bytes).await.expect("upload");
    assert_eq!(
        (a.content_type.as_str(), a.size, a.sha256.clone()),
        ("application/pdf", bytes.len() as u64, sha256_hex(&bytes))
    );
    assert_eq!(a.room_id, 0, "not posted yet");
    let not_yet = download(follower.clone(), &nurse, a.id, Variant::Original, 0).await;
    assert_eq!(not_yet.expect_err("only the uploader before posting").code(), tonic::Code::NotFound);

    let seq = post_files(follower.clone(), &doctor, room_id, vec![a.id]).await.expect("post");
    for id in hub.running_ids() {
        let api = channel(&hub.api(id)).await;
        let got = download(api.clone(), &nurse, a.id, Variant::Original, 0).await.expect("download");
        assert!(got == bytes, "node {id} serves the file as uploaded");
        let tail = download(api, &nurse, a.id, Variant::Original, 128 * 1024 + 5).await.expect("resume");
        assert!(tail == bytes[128 * 1024 + 5..], "node {id} resumes from an offset");
    }
    let timeline = TimelineRequest { room_id, ..Default::default() };
    let posts = PostServiceClient::new(follower.clone()).timeline(authed(timeline, &nurse)).await.expect("timeline");
    let post = posts.into_inner().posts.into_iter().find(|p| p.seq == seq).expect("the post");
    assert_eq!(post.attachments.iter().map(|a| a.id).collect::<Vec<_>>(), vec![a.id]);

    let refused = download(follower.clone(), &outsider, a.id, Variant::Original, 0).await;
    assert_eq!(refused.expect_err("not a member").code(), tonic::Code::NotFound);
    let no_thumbnails = download(follower.clone(), &nurse, a.id, Variant::Small, 0).await;
    assert_eq!(no_thumbnails.expect_err("a PDF has none").code(), tonic::Code::NotFound);

    // Every download of patient data is in the audit chain.
    // Each node ships its journal of reads into the chain on its own schedule.
    let op = hub.operator().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let q = ListAuditEntriesRequest { page_size: 1000, ..Default::default() };
        let entries = AuditServiceClient::new(follower.clone()).list_audit_entries(authed(q, &op)).await;
        let entries = entries.expect("audit").into_inner().entries;
        let downloads = entries.iter().filter(|e| e.what.starts_with(&format!("download attachment {}", a.id)));
        if downloads.count() == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "three nodes, two downloads each: {entries:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A member removed from the room loses the file at once.
    let remove = RemoveMemberRequest { idempotency_key: "remove".into(), room_id, account_id: nurse_id };
    RoomServiceClient::new(follower.clone()).remove_member(authed(remove, &doctor)).await.expect("remove");
    let removed = download(follower, &nurse, a.id, Variant::Original, 0).await;
    assert_eq!(removed.expect_err("removed").code(), tonic::Code::NotFound);
    hub.shutdown().await;
}

/// Until `check` holds, for at most 20 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "not within 20s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn blob_on(hub: &TestHub, node: u64, sha256: &str) -> Option<kizuna_node::domain::attachments::Blob> {
    let hash = kizuna_node::domain::attachments::BlobHash::from_hex(sha256).expect("a hash");
    hub.running(node).node.state.hub().blob(hash).expect("a readable state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_during_an_upload_leaves_one_correct_file_after_the_retry() {
    let mut hub = TestHub::start(3).await;
    let doctor = hub.member("dr.mori").await;
    let leader = hub.leader().await;
    let survivor = hub.follower_of(leader);
    let api = channel(&hub.api(survivor)).await;
    let bytes = pdf(100 * 128 * 1024 + 3, 2);
    let head = header("video-1", "往診記録.pdf", &bytes);

    let first = tokio::spawn({
        let (api, doctor, head, bytes) = (api.clone(), doctor.clone(), head.clone(), bytes.clone());
        async move { upload(api, &doctor, head, &bytes).await }
    });
    // Some chunks are in the log, not all: then the leader goes.
    until("the first chunks committed", || {
        blob_on(&hub, leader, &head.sha256).is_some_and(|b| b.stored_chunks >= 3 && !b.complete())
    })
    .await;
    hub.stop(leader).await;
    let first = first.await.expect("the first try ran");
    let retried = upload_until_elected(api.clone(), &doctor, head.clone(), &bytes).await;
    if let Ok(a) = first {
        assert_eq!(a.id, retried.id, "the first try finished after all: the same attachment");
    }
    let again = upload(api.clone(), &doctor, head.clone(), &bytes).await.expect("a third try");
    assert_eq!(again.id, retried.id, "one attachment per idempotency key");
    let got = download(api, &doctor, retried.id, Variant::Original, 0).await.expect("download");
    assert!(got == bytes, "the file is whole and correct");
    let stored = hub.running(survivor).node.state.hub().stored_bytes().expect("readable");
    assert_eq!(stored, bytes.len() as u64, "one blob: its bytes stored once");
    hub.shutdown().await;
}

/// Retries an upload while the hub has no leader (UNAVAILABLE), as a client does.
async fn upload_until_elected(api: Channel, token: &str, head: UploadHeader, bytes: &[u8]) -> Attachment {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match upload(api.clone(), token, head.clone(), bytes).await {
            Ok(a) => return a,
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the retry: {e:?}"),
        }
    }
}

/// What the hub holds of files on node `id`: stored bytes, and files waiting in its upload dir.
fn held_on(hub: &TestHub, id: u64) -> (u64, usize) {
    let stored = hub.running(id).node.state.hub().stored_bytes().expect("readable");
    let waiting = std::fs::read_dir(hub.data_dir(id).join("uploads")).map_or(0, |d| d.count());
    (stored, waiting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_uploads_are_refused_clearly_with_nothing_stored() {
    let spec =
        HubSpec { nodes: vec![("a", true), ("b", true), ("c", true)], preferred_regions: vec![], wire: Wire::Plain };
    let hub = TestHub::start_custom(spec, |config, _| {
        config.attachments = AttachmentsSection { max_file_mib: 1, ..Default::default() };
    })
    .await;
    let doctor = hub.member("dr.mori").await;
    let api = channel(&hub.api(hub.leader().await)).await;
    let good = pdf(1000, 3);
    let script = b"#!/bin/sh\nrm -rf /\n".to_vec();
    let elf = [b"\x7fELF\x02\x01\x01".to_vec(), vec![0; 200]].concat();
    let cases: Vec<(&str, UploadHeader, Vec<u8>)> = vec![
        ("an empty file", header("e", "a.pdf", b""), vec![]),
        ("a huge declared size", UploadHeader { size: 1 << 40, ..header("h", "a.pdf", &good) }, good.clone()),
        ("over the hub's cap", header("c", "a.pdf", &pdf(1 << 21, 1)), pdf(1 << 21, 1)),
        (
            "another file's hash",
            UploadHeader { sha256: sha256_hex(b"other"), ..header("w", "a.pdf", &good) },
            good.clone(),
        ),
        ("a truncated stream", header("t", "a.pdf", &good), good[..500].to_vec()),
        ("more bytes than declared", UploadHeader { size: 999, ..header("m", "a.pdf", &good) }, good.clone()),
        ("a shell script", header("s", "a.pdf", &script), script.clone()),
        ("a program", header("x", "a.pdf", &elf), elf.clone()),
        ("a path in the name", header("p", "../../etc/passwd", &good), good.clone()),
        ("a separator in the name", header("q", "a\\b.pdf", &good), good.clone()),
        ("a control character in the name", header("n", "a\nb.pdf", &good), good.clone()),
        ("a malformed hash", UploadHeader { sha256: "xyz".into(), ..header("z", "a.pdf", &good) }, good.clone()),
    ];
    for (what, head, bytes) in cases {
        let refused = upload(api.clone(), &doctor, head, &bytes).await.expect_err(what);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{what}: {refused:?}");
        assert!(!refused.message().is_empty(), "{what}: a reason");
    }
    // A stream that does not start with its header.
    let chunk_first = vec![UploadRequest { part: Some(upload_request::Part::Chunk(good.clone())) }];
    let refused =
        AttachmentServiceClient::new(api.clone()).upload(authed(futures::stream::iter(chunk_first), &doctor)).await;
    assert_eq!(refused.expect_err("no header").code(), tonic::Code::InvalidArgument);
    // Nobody is served without a session.
    let mut client = AttachmentServiceClient::new(api.clone());
    let anonymous = client.upload(futures::stream::iter(vec![])).await;
    assert_eq!(anonymous.expect_err("no session").code(), tonic::Code::Unauthenticated);
    let part = UploadPartRequest { header: Some(header("a", "a.pdf", &good)), offset: 0, chunk: good.clone() };
    assert_eq!(client.upload_part(part).await.expect_err("no session").code(), tonic::Code::Unauthenticated);
    let download = client.download(DownloadRequest { attachment_id: 1, ..Default::default() }).await;
    assert_eq!(download.expect_err("no session").code(), tonic::Code::Unauthenticated);
    let describe = client.get_attachment(GetAttachmentRequest { attachment_id: 1 }).await;
    assert_eq!(describe.expect_err("no session").code(), tonic::Code::Unauthenticated);
    for id in hub.running_ids() {
        assert_eq!(held_on(&hub, id), (0, 0), "node {id} holds nothing of the refused uploads");
    }

    // A browser may leave at most ten unfinished uploads in parts on a node.
    for n in 0..11 {
        let head = header(&format!("unfinished-{n}"), "a.pdf", &good);
        let first = UploadPartRequest { header: Some(head), offset: 0, chunk: good[..100].to_vec() };
        let answer = client.upload_part(authed(first, &doctor)).await;
        match n {
            0..10 => assert_eq!(answer.expect("a first part").into_inner().received, 100),
            _ => assert_eq!(answer.expect_err("the eleventh").code(), tonic::Code::ResourceExhausted),
        }
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_hub_refuses_new_files() {
    let spec = HubSpec { nodes: vec![("a", true)], preferred_regions: vec![], wire: Wire::Plain };
    let hub = TestHub::start_custom(spec, |config, _| {
        config.attachments = AttachmentsSection { quota_gib: 0, ..Default::default() };
    })
    .await;
    let doctor = hub.member("dr.mori").await;
    let api = channel(&hub.api(hub.leader().await)).await;
    let bytes = pdf(1000, 4);
    let refused = upload(api, &doctor, header("q", "a.pdf", &bytes), &bytes).await.expect_err("over the quota");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    hub.shutdown().await;
}

/// A camera's photo: a 1600×1200 JPEG with an EXIF block holding a location in Tokyo.
fn geotagged_photo() -> Vec<u8> {
    use exif::{Field, In, Rational, Tag, Value};
    let picture = image::RgbImage::from_fn(1600, 1200, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture).write_to(&mut jpeg, image::ImageFormat::Jpeg).expect("a JPEG");
    let jpeg = jpeg.into_inner();
    let degrees =
        |d: u32, m: u32| Value::Rational(vec![Rational::from((d, 1)), Rational::from((m, 1)), Rational::from((0, 1))]);
    let fields = [
        Field { tag: Tag::GPSLatitudeRef, ifd_num: In::PRIMARY, value: Value::Ascii(vec![b"N".to_vec()]) },
        Field { tag: Tag::GPSLatitude, ifd_num: In::PRIMARY, value: degrees(35, 41) },
        Field { tag: Tag::GPSLongitudeRef, ifd_num: In::PRIMARY, value: Value::Ascii(vec![b"E".to_vec()]) },
        Field { tag: Tag::GPSLongitude, ifd_num: In::PRIMARY, value: degrees(139, 41) },
    ];
    let mut writer = exif::experimental::Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).expect("an EXIF block");
    let tiff = tiff.into_inner();
    // APP1 "Exif" right after the start-of-image marker, where cameras put it.
    let length = u16::try_from(2 + 6 + tiff.len()).expect("a small EXIF block");
    [&jpeg[..2], &[0xFF, 0xE1], &length.to_be_bytes(), b"Exif\0\0", &tiff, &jpeg[2..]].concat()
}

fn has_location(bytes: &[u8]) -> bool {
    let found = exif::Reader::new().read_from_container(&mut Cursor::new(bytes));
    found.is_ok_and(|e| e.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY).is_some())
}

/// Uploads in 64 KiB parts as a browser does (UploadPart), checking a part sent at the wrong
/// offset is answered with where to continue.
async fn upload_in_parts(api: Channel, token: &str, head: UploadHeader, bytes: &[u8]) -> Attachment {
    let mut client = AttachmentServiceClient::new(api);
    let part = |offset: usize, len: usize| UploadPartRequest {
        header: Some(head.clone()),
        offset: offset as u64,
        chunk: bytes[offset..(offset + len).min(bytes.len())].to_vec(),
    };
    let mut offset = 0;
    loop {
        let answer = client.upload_part(authed(part(offset, 64 * 1024), token)).await.expect("a part").into_inner();
        if let Some(a) = answer.attachment {
            return a;
        }
        if offset == 64 * 1024 {
            // Once: the same part again, as after a lost answer: the node says where it is.
            let again = client.upload_part(authed(part(offset, 64 * 1024), token)).await.expect("a repeated part");
            assert_eq!(again.into_inner().received, answer.received);
        }
        offset = answer.received as usize;
    }
}

fn dimensions(jpeg: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).expect("a JPEG");
    (decoded.width(), decoded.height())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_photo_is_served_without_its_location_and_with_thumbnails() {
    let hub = TestHub::start(3).await;
    let nurse = hub.member("vn.sato").await;
    let api = channel(&hub.api(hub.follower_of(hub.leader().await))).await;
    let photo = geotagged_photo();
    assert!(has_location(&photo), "the test photo carries a location");
    let head = header("photo", "褥瘡.jpg", &photo);
    let a = upload_in_parts(api.clone(), &nurse, head.clone(), &photo).await;
    assert_eq!((a.content_type.as_str(), a.has_thumbnails), ("image/jpeg", true));
    // Another node, asked whether the complete upload is stored, answers from the hub's state;
    // asked for a part in the middle, it has none of it.
    let other = channel(&hub.api(hub.leader().await)).await;
    let mut parts = AttachmentServiceClient::new(other);
    let size = photo.len() as u64;
    let asked = UploadPartRequest { header: Some(head.clone()), offset: size, chunk: vec![] };
    let stored = parts.upload_part(authed(asked, &nurse)).await.expect("asked").into_inner();
    assert_eq!(stored.attachment.map(|s| s.id), Some(a.id), "the stored upload, by its key");
    let middle = UploadPartRequest { header: Some(header("other", "x.jpg", &photo)), offset: 65536, chunk: vec![1] };
    let fresh = parts.upload_part(authed(middle, &nurse)).await.expect("a part").into_inner();
    assert_eq!((fresh.received, fresh.attachment), (0, None), "start again from the beginning");
    assert_ne!(a.sha256, sha256_hex(&photo), "what is stored is not what the camera wrote");

    let original = download(api.clone(), &nurse, a.id, Variant::Original, 0).await.expect("the original");
    assert!(!has_location(&original) && !original.windows(6).any(|w| w == b"Exif\0\0"), "no EXIF left");
    assert_eq!((sha256_hex(&original), original.len() as u64), (a.sha256.clone(), a.size));
    assert_eq!(dimensions(&original), (1600, 1200), "the original keeps its size");
    for (variant, edge) in [(Variant::Small, 320), (Variant::Medium, 1280)] {
        let thumbnail = download(api.clone(), &nurse, a.id, variant, 0).await.expect("a thumbnail");
        assert!(!has_location(&thumbnail));
        assert_eq!(dimensions(&thumbnail).0, edge, "{variant:?}");
    }

    // A phone video: where it was recorded is blanked, the rest is as sent.
    let video = recorded_video();
    let v = upload(api.clone(), &nurse, header("video", "歩行訓練.mp4", &video), &video).await.expect("a video");
    assert_eq!((v.content_type.as_str(), v.size, v.has_thumbnails), ("video/mp4", video.len() as u64, false));
    let served = download(api, &nurse, v.id, Variant::Original, 0).await.expect("the video");
    let place = b"+35.6895+139.6917/";
    assert!(video.windows(place.len()).any(|w| w == place) && !served.windows(place.len()).any(|w| w == place));
    assert_eq!((served.len(), sha256_hex(&served)), (video.len(), v.sha256.clone()));
    assert!(served[served.len() - 4096..] == video[video.len() - 4096..], "the media data is as sent");
    hub.shutdown().await;
}

/// An MP4 as an Android phone writes it: its location in `moov/udta/©xyz`, then the media.
fn recorded_video() -> Vec<u8> {
    let boxed = |kind: &[u8], body: &[u8]| [&((body.len() + 8) as u32).to_be_bytes()[..], kind, body].concat();
    let xyz = boxed(b"\xa9xyz", b"\0\x12\x15\xc7+35.6895+139.6917/");
    let moov = boxed(b"moov", &[boxed(b"mvhd", &[0; 100]), boxed(b"udta", &xyz)].concat());
    let media: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    [boxed(b"ftyp", b"isom\0\0\x02\0isomiso2mp41"), moov, boxed(b"mdat", &media)].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_caught_up_by_snapshot_serves_every_file_and_a_region_blackout_loses_none() {
    let mut hub = TestHub::start(3).await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let leader = hub.leader().await;
    let api = channel(&hub.api(leader)).await;
    let room_id = patient_room(api.clone(), &doctor, &[&nurse]).await;
    let files = [pdf(300 * 1024, 5), pdf(10, 6)];
    let mut ids = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        ids.push(
            upload(api.clone(), &doctor, header(&format!("f{i}"), "ケアプラン.pdf", bytes), bytes)
                .await
                .expect("upload")
                .id,
        );
    }
    post_files(api.clone(), &doctor, room_id, ids.clone()).await.expect("post");

    let snap = hub.admin(leader).await.create_snapshot(CreateSnapshotRequest { purge_log: true }).await;
    let snap = snap.expect("snapshot").into_inner();
    assert!(snap.purged_index.is_some(), "the log is purged");
    let learner = hub.start_new_node(4).await;
    let add = AddLearnerRequest { node: Some(node_spec(&learner)), wait_caught_up: true };
    hub.admin(leader).await.add_learner(add).await.expect("add learner");
    hub.wait_applied(snap.snapshot_index).await;
    assert!(hub.status(4).snapshots_installed >= 1, "the learner caught up by snapshot: {:?}", hub.status(4));
    let on_learner = channel(&hub.api(4)).await;
    for (id, bytes) in ids.iter().zip(&files) {
        let got = download(on_learner.clone(), &nurse, *id, Variant::Original, 0).await.expect("from the learner");
        assert!(got == *bytes, "the learner serves attachment {id}");
    }

    // The leader's region goes dark: every acknowledged file is still served by the others.
    let dark = hub.region_of(leader);
    for id in hub.ids_in_region(&dark) {
        hub.stop(id).await;
    }
    for node in hub.running_ids() {
        let api = channel(&hub.api(node)).await;
        for (id, bytes) in ids.iter().zip(&files) {
            let got = download(api.clone(), &nurse, *id, Variant::Original, 0).await;
            assert!(got.expect("after the blackout") == *bytes, "node {node} serves attachment {id}");
        }
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unused_files_are_collected_after_the_grace_period_and_the_audit_keeps_them() {
    let spec =
        HubSpec { nodes: vec![("a", true), ("b", true), ("c", true)], preferred_regions: vec![], wire: Wire::Plain };
    let hub = TestHub::start_custom(spec, |config, _| {
        config.attachments = AttachmentsSection { grace_seconds: 3, collect_every_seconds: 1, ..Default::default() };
    })
    .await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    let room_id = patient_room(api.clone(), &doctor, &[&nurse]).await;
    let (kept, deleted, never_posted) = (pdf(2000, 7), pdf(3000, 8), pdf(4000, 9));
    // Each file is posted right after its upload, well within the grace period.
    let kept_id = upload(api.clone(), &doctor, header("k", "a.pdf", &kept), &kept).await.expect("upload").id;
    post_files(api.clone(), &doctor, room_id, vec![kept_id]).await.expect("post");
    let deleted_id = upload(api.clone(), &doctor, header("d", "b.pdf", &deleted), &deleted).await.expect("upload").id;
    let seq = post_files(api.clone(), &doctor, room_id, vec![deleted_id]).await.expect("post");
    let unposted_id =
        upload(api.clone(), &doctor, header("n", "c.pdf", &never_posted), &never_posted).await.expect("upload").id;
    let delete = DeletePostRequest { idempotency_key: "delete".into(), room_id, seq };
    PostServiceClient::new(api.clone()).delete_post(authed(delete, &doctor)).await.expect("delete");

    let leader = hub.leader().await;
    until("the unused files collected", || held_on(&hub, leader).0 == kept.len() as u64).await;
    for gone in [deleted_id, unposted_id] {
        let refused = download(api.clone(), &doctor, gone, Variant::Original, 0).await;
        assert_eq!(refused.expect_err("collected").code(), tonic::Code::NotFound);
    }
    let got = download(api.clone(), &nurse, kept_id, Variant::Original, 0).await.expect("the posted file stays");
    assert!(got == kept);
    let op = hub.operator().await;
    let q = ListAuditEntriesRequest { page_size: 1000, ..Default::default() };
    let entries =
        AuditServiceClient::new(api).list_audit_entries(authed(q, &op)).await.expect("audit").into_inner().entries;
    let removed =
        format!("attachment {deleted_id} (b.pdf, 3000 bytes, sha256 {}) of post #{seq} removed", sha256_hex(&deleted));
    assert!(entries.iter().any(|e| e.what == removed), "the audit keeps that it existed: {entries:#?}");
    hub.shutdown().await;
}
