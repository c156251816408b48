//! Attachments on a real 3-node in-process hub: uploads (client stream and browser parts) on
//! any node, downloads from every node, access exactly as the room's posts.

mod common;

use common::{TestHub, channel};
use kizuna_proto::accounts::GetMeRequest;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::attachments::attachment_service_client::AttachmentServiceClient;
use kizuna_proto::attachments::*;
use kizuna_proto::common::Attachment;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, TimelineRequest};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{CreatePatientRequest, InviteMemberRequest, Role};
use sha2::{Digest, Sha256};
use tonic::Request;
use tonic::transport::Channel;

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("a token header"));
    r
}

/// A PDF of `size` bytes (a real header; the rest varies so chunks differ).
fn pdf(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..size - bytes.len()).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn header(key: &str, name: &str, bytes: &[u8]) -> UploadHeader {
    UploadHeader { idempotency_key: key.into(), name: name.into(), size: bytes.len() as u64, sha256: sha256_hex(bytes) }
}

/// Uploads through the client stream in 100 KiB messages.
async fn upload(api: Channel, token: &str, header: UploadHeader, bytes: &[u8]) -> Result<Attachment, tonic::Status> {
    let mut parts = vec![UploadRequest { part: Some(upload_request::Part::Header(header)) }];
    parts.extend(
        bytes.chunks(100 * 1024).map(|c| UploadRequest { part: Some(upload_request::Part::Chunk(c.to_vec())) }),
    );
    let answer = AttachmentServiceClient::new(api).upload(authed(futures::stream::iter(parts), token)).await?;
    Ok(answer.into_inner().attachment.expect("the attachment"))
}

/// Downloads `variant` of attachment `id` from `offset` on.
async fn download(api: Channel, token: &str, id: u64, variant: Variant, offset: u64) -> Result<Vec<u8>, tonic::Status> {
    let req = DownloadRequest { attachment_id: id, variant: variant as i32, offset };
    let mut stream = AttachmentServiceClient::new(api).download(authed(req, token)).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        bytes.extend(message.chunk);
    }
    Ok(bytes)
}

/// A patient room of the doctor's with the nurse in it.
async fn patient_room(api: Channel, doctor: &str, nurse: &str) -> u64 {
    let mut rooms = RoomServiceClient::new(api.clone());
    let patient = CreatePatientRequest {
        idempotency_key: "patient".into(),
        name: "山田 花子".into(),
        kana: "やまだ はなこ".into(),
        ..Default::default()
    };
    let room_id = rooms.create_patient(authed(patient, doctor)).await.expect("patient").into_inner().room_id;
    let me = AccountServiceClient::new(api).get_me(authed(GetMeRequest {}, nurse)).await.expect("GetMe");
    let invite = InviteMemberRequest {
        idempotency_key: "invite".into(),
        room_id,
        invitee: Some(Invitee::AccountId(me.into_inner().account_id)),
        role: Role::Member as i32,
    };
    rooms.invite_member(authed(invite, doctor)).await.expect("invite");
    room_id
}

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
    let room_id = patient_room(follower.clone(), &doctor, &nurse).await;

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
    let no_thumbnails = download(follower, &nurse, a.id, Variant::Small, 0).await;
    assert_eq!(no_thumbnails.expect_err("a PDF has none").code(), tonic::Code::NotFound);
    hub.shutdown().await;
}
