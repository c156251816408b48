//! The restore drill: a 3-node hub with a patient's posts and an attached file is backed up
//! (encrypted to the operators' key, generations kept, a copy for offline media), the backup is
//! verified end to end and refused when changed or given the wrong key; then every node is
//! destroyed, the hub is restored from the backup, every restored node reports the backup's
//! digest, and the team logs in, reads its timeline, downloads its file and posts again.

mod common;

use common::files::{download, header, pdf, upload};
use common::{TestHub, authed, channel, patient_room};
use kizuna_node::cli::backup::{self, BackupKey};
use kizuna_proto::accounts::LoginRequest;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::attachments::Variant;
use kizuna_proto::posts::CreatePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use tonic::transport::Channel;

async fn post(api: Channel, token: &str, room_id: u64, text: &str, files: Vec<u64>) {
    let req = CreatePostRequest {
        idempotency_key: format!("post-{text}"),
        room_id,
        text: text.into(),
        attachment_ids: files,
        ..Default::default()
    };
    PostServiceClient::new(api).create_post(authed(req, token)).await.expect("post");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_destroyed_everywhere_comes_back_from_its_backup() {
    let mut hub = TestHub::start(3).await;
    let doctor = hub.member("dr.mori").await;
    let leader = hub.leader().await;
    let api = channel(&hub.api(leader)).await;
    let room = patient_room(api.clone(), &doctor, &[]).await;
    let plan = pdf(300 * 1024, 4);
    let file = upload(api.clone(), &doctor, header("plan", "ケアプラン.pdf", &plan), &plan).await.expect("upload").id;
    post(api.clone(), &doctor, room, "往診しました。褥瘡は改善傾向です。", vec![]).await;
    post(api.clone(), &doctor, room, "ケアプランを添付します", vec![file]).await;

    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("backup.key");
    let key_id = BackupKey::generate(&key_path).expect("a key");
    assert!(BackupKey::generate(&key_path).is_err(), "never over an existing key");
    let key = BackupKey::load(&key_path).unwrap();
    assert_eq!(key.id(), key_id);
    let (dir, offline) = (keys.path().join("backups"), keys.path().join("offline"));
    let operator = hub.operator().await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let api = channel(&hub.api(hub.follower_of(leader))).await;
        made.push(backup::create(api, &operator, (&dir, Some(&offline)), &key, 2).await.expect("a backup"));
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // names differ by the second
    }
    let kept: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    assert_eq!(kept.iter().filter(|p| p.extension().is_some_and(|x| x == "kbk")).count(), 2, "{kept:?}");
    assert!(!made[0].exists() && made[2].exists(), "the oldest generation goes");
    assert_eq!(std::fs::read_dir(&offline).unwrap().count(), 3, "the offline copies are never pruned");
    // One image at a time per node, not per process: two nodes back up at once (into two
    // dirs: at one index in one second both backups have the same name).
    let (to_leader, to_follower) = (keys.path().join("from-leader"), keys.path().join("from-follower"));
    let (on_leader, on_follower) = (channel(&hub.api(leader)).await, channel(&hub.api(hub.follower_of(leader))).await);
    let (a, b) = tokio::join!(
        backup::create(on_leader, &operator, (&to_leader, None), &key, 2),
        backup::create(on_follower, &operator, (&to_follower, None), &key, 2)
    );
    a.expect("a backup on the leader");
    b.expect("a backup on a follower at the same time");
    let newest = made[2].clone();
    let manifest = backup::verify(&newest, &key).expect("the backup verifies end to end");
    assert!(manifest.applied_index > 0 && manifest.entries > 0);

    // Changed or opened with another key, a backup is refused.
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let tampered = keys.path().join("tampered.kbk");
    std::fs::write(&tampered, &bytes).unwrap();
    let refused = backup::verify(&tampered, &key).expect_err("a changed backup");
    assert!(refused.to_string().contains("does not decrypt"), "{refused:#}");
    BackupKey::generate(&keys.path().join("other.key")).unwrap();
    let other = BackupKey::load(&keys.path().join("other.key")).unwrap();
    assert!(backup::verify(&newest, &other).is_err(), "another key");

    // The worst day: every node and its data are gone.
    for id in hub.running_ids() {
        hub.stop(id).await;
        std::fs::remove_dir_all(hub.data_dir(id)).unwrap();
    }
    let restored = backup::restore(&newest, &key, &hub.config, None).expect("restored");
    assert_eq!(restored, manifest);
    assert!(backup::restore(&newest, &key, &hub.config, None).is_err(), "never over a node's data");
    for node in hub.config.nodes.clone() {
        hub.restart(node.id).await;
    }
    let leader = hub.leader().await;
    let api = channel(&hub.api(leader)).await;
    let login = LoginRequest {
        idempotency_key: "after-restore".into(),
        login: "dr.mori".into(),
        password: common::OPERATOR_PASSWORD.into(),
        device: "test".into(),
        ..Default::default()
    };
    let again =
        AccountServiceClient::new(api.clone()).login(login).await.expect("the doctor logs in").into_inner().token;
    let shown = common::timeline_texts(api.clone(), &again, room).await;
    assert_eq!(shown, ["往診しました。褥瘡は改善傾向です。", "ケアプランを添付します"]);
    let back = download(api.clone(), &again, file, Variant::Original, 0).await.expect("download");
    assert_eq!(back, plan, "the attached file came back");
    post(api.clone(), &again, room, "復旧後の初回投稿", vec![]).await;
    for id in hub.running_ids() {
        let other = channel(&hub.api(id)).await;
        assert_eq!(common::timeline_texts(other, &again, room).await.len(), 3, "node {id} serves the restored hub");
    }
    hub.shutdown().await;
}
