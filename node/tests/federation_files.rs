//! Files in a patient room shared by two real hubs in process (real RocksDB, the public API and
//! the federation listeners on 127.0.0.1, mutual TLS, signed requests): a Tochigi doctor's photo
//! and PDF reach the Gunma nurse's hub, whose leader fetches their bytes from Tochigi; the
//! nurse's file travels the other way. Each side serves the same bytes from its own nodes; a
//! hub that was not told of a file, or no longer may have it, is refused.

mod common;

use std::io::Cursor;

use common::federation::{FedHub, eventually, hub_name, two_hubs};
use common::files::{download, header, pdf, upload};
use common::{authed, channel};
use kizuna_domain::attachments::Variant as DomainVariant;
use kizuna_domain::model::AttachmentId;
use kizuna_node::federation::{connect, listener, signed_fetch};
use kizuna_proto::attachments::*;
use kizuna_proto::common::Attachment;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, TimelineOrder, TimelineRequest};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{
    CreatePatientRequest, InviteMemberRequest, ListRoomsRequest, RemoveMemberRequest, Role, RoomListKind,
};
use tonic::Code;
use tonic::transport::Channel;

/// A 1600 × 1200 JPEG photo.
fn photo() -> Vec<u8> {
    let picture = image::RgbImage::from_fn(1600, 1200, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture).write_to(&mut jpeg, image::ImageFormat::Jpeg).expect("a JPEG");
    jpeg.into_inner()
}

async fn api(hub: &FedHub) -> Channel {
    channel(&hub.hub.api(hub.hub.leader().await)).await
}

async fn upload_named(api: Channel, token: &str, name: &str, bytes: &[u8]) -> Attachment {
    upload(api, token, header(&format!("upload-{name}"), name, bytes), bytes).await.expect("upload")
}

async fn download_whole(api: Channel, token: &str, id: u64, variant: Variant) -> Result<Vec<u8>, tonic::Status> {
    download(api, token, id, variant, 0).await
}

async fn post_files(api: Channel, token: &str, room_id: u64, text: &str, ids: Vec<u64>) {
    let req = CreatePostRequest {
        idempotency_key: format!("post-{text}"),
        room_id,
        text: text.into(),
        attachment_ids: ids,
        ..Default::default()
    };
    PostServiceClient::new(api).create_post(authed(req, token)).await.expect("post with files");
}

/// The files of the room's posts, oldest post first.
async fn files(api: Channel, token: &str, room_id: u64) -> Vec<Vec<Attachment>> {
    let req =
        TimelineRequest { room_id, order: TimelineOrder::OldestFirst as i32, page_size: 50, ..Default::default() };
    let page = PostServiceClient::new(api).timeline(authed(req, token)).await.expect("timeline").into_inner();
    page.posts.into_iter().map(|p| p.attachments).collect()
}

/// Downloads `variant` of `id` from every running node of `hub` once its bytes are there.
async fn served_everywhere(hub: &FedHub, token: &str, id: u64, variant: Variant, expected: &[u8]) {
    for node in hub.hub.running_ids() {
        let api = channel(&hub.hub.api(node)).await;
        let mut got = Err(tonic::Status::unknown("not asked"));
        eventually(&format!("file {id} ({variant:?}) served by node {node}"), async || {
            got = download_whole(api.clone(), token, id, variant).await;
            !matches!(&got, Err(s) if s.code() == Code::Unavailable)
        })
        .await;
        assert_eq!(got.expect("downloaded"), expected, "node {node}, file {id} ({variant:?})");
    }
}

/// Gunma asks Tochigi directly, with its real key and certificate, for Tochigi's attachment.
async fn gunma_fetches(gunma: &FedHub, tochigi: &FedHub, id: u64) -> Result<Vec<u8>, tonic::Status> {
    let me = gunma.hub.node_config(gunma.hub.running_ids()[0]);
    let loaded = listener::load(&gunma.hub.config, &me).expect("federation material").expect("federates");
    let to = tochigi.hub.node_config(tochigi.hub.leader().await).federation_addr.expect("an address").to_string();
    let mut client = connect(&loaded.tls, &hub_name("tochigi"), &to).expect("client");
    let request = signed_fetch(&loaded.identity, &hub_name("tochigi"), AttachmentId(id), DomainVariant::Original, 0);
    let mut stream = client.fetch_file(request).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        bytes.extend(message.chunk);
    }
    Ok(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_of_a_shared_patient_room_travel_both_ways_and_only_where_they_may() {
    let root = tempfile::tempdir().unwrap();
    let (tochigi, gunma) = two_hubs(root.path(), 3, 1, true).await;
    let doctor = tochigi.hub.member("dr.sato").await;
    let nurse = gunma.hub.member("ns.kimura").await;
    let patient = CreatePatientRequest {
        idempotency_key: "patient".into(),
        name: "渡良瀬 ハナ".into(),
        kana: "わたらせ はな".into(),
        ..Default::default()
    };
    let rooms = |api: Channel| RoomServiceClient::new(api);
    let home = rooms(api(&tochigi).await).create_patient(authed(patient, &doctor)).await.unwrap().into_inner().room_id;
    let invite = InviteMemberRequest {
        idempotency_key: "invite-kimura".into(),
        room_id: home,
        invitee: Some(Invitee::RemoteLogin("ns.kimura@gunma".into())),
        role: Role::Member as i32,
    };
    rooms(api(&tochigi).await).invite_member(authed(invite, &doctor)).await.expect("invite across hubs");
    let mut copy = 0;
    eventually("the nurse has the team on her hub", async || {
        let req = ListRoomsRequest { kind: RoomListKind::Patients as i32, ..Default::default() };
        let list = rooms(api(&gunma).await).list_rooms(authed(req, &nurse)).await.unwrap().into_inner().rooms;
        copy = list.first().map_or(0, |r| r.room_id);
        copy != 0
    })
    .await;

    // The doctor's photo (with thumbnails) and a PDF of several chunks.
    let (picture, prescription) = (photo(), pdf(300 * 1024, 1));
    let photo_here = upload_named(api(&tochigi).await, &doctor, "仙骨部.jpg", &picture).await;
    let pdf_here = upload_named(api(&tochigi).await, &doctor, "処方.pdf", &prescription).await;
    post_files(api(&tochigi).await, &doctor, home, "仙骨部の写真と処方です", vec![photo_here.id, pdf_here.id]).await;
    let stored_photo = download_whole(api(&tochigi).await, &doctor, photo_here.id, Variant::Original).await.unwrap();
    let small = download_whole(api(&tochigi).await, &doctor, photo_here.id, Variant::Small).await.unwrap();
    let mut on_gunma = Vec::new();
    eventually("the post arrives on Gunma with both files", async || {
        on_gunma = files(api(&gunma).await, &nurse, copy).await.into_iter().next().unwrap_or_default();
        on_gunma.len() == 2
    })
    .await;
    assert_eq!((on_gunma[0].name.as_str(), on_gunma[1].name.as_str()), ("仙骨部.jpg", "処方.pdf"));
    assert_eq!(on_gunma[0].sha256, photo_here.sha256);
    assert!(on_gunma[0].has_thumbnails);
    served_everywhere(&gunma, &nurse, on_gunma[0].id, Variant::Original, &stored_photo).await;
    served_everywhere(&gunma, &nurse, on_gunma[0].id, Variant::Small, &small).await;
    served_everywhere(&gunma, &nurse, on_gunma[1].id, Variant::Original, &prescription).await;
    let described = files(api(&gunma).await, &nurse, copy).await.remove(0);
    assert!(described.iter().all(|a| a.arriving_from_hub.is_empty()), "arrived: {described:?}");

    // The nurse's file travels to Tochigi with her post, and back to her copy.
    let report = pdf(200 * 1024, 2);
    let report_there = upload_named(api(&gunma).await, &nurse, "訪問報告.pdf", &report).await;
    post_files(api(&gunma).await, &nurse, copy, "訪問報告です", vec![report_there.id]).await;
    let mut at_home = Vec::new();
    eventually("her post arrives on Tochigi with its file", async || {
        at_home = files(api(&tochigi).await, &doctor, home).await.get(1).cloned().unwrap_or_default();
        at_home.len() == 1
    })
    .await;
    served_everywhere(&tochigi, &doctor, at_home[0].id, Variant::Original, &report).await;
    let mut back = Vec::new();
    eventually("her post is in her copy with its file", async || {
        back = files(api(&gunma).await, &nurse, copy).await.get(1).cloned().unwrap_or_default();
        back.len() == 1
    })
    .await;
    served_everywhere(&gunma, &nurse, back[0].id, Variant::Original, &report).await;

    // Tochigi serves Gunma what Gunma was told of, not a file of a room Gunma has nobody in.
    assert_eq!(gunma_fetches(&gunma, &tochigi, pdf_here.id).await.expect("shared with Gunma"), prescription);
    let other = CreatePatientRequest {
        idempotency_key: "another-patient".into(),
        name: "鬼怒川 タロウ".into(),
        kana: "きぬがわ たろう".into(),
        ..Default::default()
    };
    let other_room =
        rooms(api(&tochigi).await).create_patient(authed(other, &doctor)).await.unwrap().into_inner().room_id;
    let private = upload_named(api(&tochigi).await, &doctor, "別の患者.pdf", &pdf(10_000, 3)).await;
    post_files(api(&tochigi).await, &doctor, other_room, "別の患者です", vec![private.id]).await;
    let refused = gunma_fetches(&gunma, &tochigi, private.id).await.expect_err("not shared with Gunma");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Removed from the team, the nurse's hub may no longer fetch, and she no longer reads.
    let shadow = {
        let hub = tochigi.node(tochigi.hub.leader().await).state.hub();
        use kizuna_node::domain::HubView;
        hub.account_by_login("ns.kimura@gunma").unwrap().expect("her shadow").0
    };
    let remove = RemoveMemberRequest { idempotency_key: "remove-kimura".into(), room_id: home, account_id: shadow };
    rooms(api(&tochigi).await).remove_member(authed(remove, &doctor)).await.expect("removed");
    let refused = gunma_fetches(&gunma, &tochigi, pdf_here.id).await.expect_err("no longer shared");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    eventually("the nurse loses the file on her hub", async || {
        download_whole(api(&gunma).await, &nurse, on_gunma[1].id, Variant::Original).await.is_err()
    })
    .await;
    tochigi.shutdown().await;
    gunma.shutdown().await;
}
