//! Encryption at rest, proven on the bytes: a team writes a known sentence about a named
//! patient and attaches a file through the API; then every file under every node's data
//! directory, a snapshot file and the image inside a backup are searched for those bytes, for
//! the patient's name and for search terms of both. Nothing is found — while the same search
//! over a hub run without master keys finds them (so the scan can fail), and the hub still
//! finds the post by its words (its index holds keyed hashes).

mod common;

use std::path::Path;

use common::files::{header, pdf, upload};
use common::{HubSpec, SECRET_POST_TEXT, TestHub, Wire, authed, channel, patient_room, post_secret};
use kizuna_node::cli::backup::{self, BackupKey};
use kizuna_proto::admin::CreateSnapshotRequest;
use kizuna_proto::posts::CreatePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::search::SearchRequest;
use kizuna_proto::search::search_service_client::SearchServiceClient;

/// The name `patient_room` gives its patient.
const PATIENT: &str = "山田 花子";
/// Bytes inside the attached file.
const FILE_MARKER: &[u8] = b"KIZUNA-AT-REST-MARKER care plan for the patient";

/// What must never be readable at rest: the sentence, the name, some of their words (as a
/// plain search index would hold them), the file's marker.
fn needles() -> Vec<(String, Vec<u8>)> {
    let words = [SECRET_POST_TEXT, PATIENT, "山田", "花子", "胸痛", "往診", "血圧"];
    let mut needles: Vec<(String, Vec<u8>)> = words.iter().map(|w| (w.to_string(), w.as_bytes().to_vec())).collect();
    needles.push(("the file's marker".into(), FILE_MARKER.to_vec()));
    needles
}

/// The bytes of every file under `root`.
fn bytes_under(root: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Every file under `root` holding a needle: (file, needle).
fn findings(root: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let bytes = readable_bytes(&path);
            for (name, needle) in needles() {
                if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    found.push((path.display().to_string(), name));
                }
            }
        }
    }
    found
}

/// A file's bytes as anyone reading the disk could see them: snapshot files decompressed.
fn readable_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_default();
    match bytes.strip_prefix(kizuna_store::SNAPSHOT_MAGIC.as_slice()) {
        Some(frame) => zstd::stream::decode_all(frame).expect("a snapshot file decompresses"),
        None => bytes,
    }
}

/// A patient room with the secret post and an attached file, a snapshot on every node, a
/// backup decrypted to its image under `hub`'s dir; returns the doctor's session.
async fn write_everything(hub: &TestHub, scratch: &Path) -> (String, u64) {
    let doctor = hub.member("dr.rest").await;
    let leader = hub.leader().await;
    let api = channel(&hub.api(leader)).await;
    let room = patient_room(api.clone(), &doctor, &[]).await;
    post_secret(api.clone(), &doctor, room).await;
    let mut plan = pdf(200 * 1024, 9);
    plan[1000..1000 + FILE_MARKER.len()].copy_from_slice(FILE_MARKER);
    let file = upload(api.clone(), &doctor, header("plan", "ケアプラン.pdf", &plan), &plan).await.expect("upload").id;
    let with_file = CreatePostRequest {
        idempotency_key: "with-file".into(),
        room_id: room,
        text: "ケアプランを添付します".into(),
        attachment_ids: vec![file],
        ..Default::default()
    };
    PostServiceClient::new(api.clone()).create_post(authed(with_file, &doctor)).await.expect("post with file");
    for id in hub.running_ids() {
        hub.admin(id).await.create_snapshot(CreateSnapshotRequest { purge_log: false }).await.expect("snapshot");
    }
    let key_path = scratch.join("backup.key");
    BackupKey::generate(&key_path).expect("a backup key");
    let key = BackupKey::load(&key_path).expect("the backup key");
    let operator = hub.operator().await;
    let made = backup::create(api, &operator, (&scratch.join("backups"), None), &key, 1).await.expect("a backup");
    backup::decrypt(&made, &key, &scratch.join("image.snap")).expect("the backup decrypts");
    (doctor, room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_a_team_writes_is_readable_in_data_dirs_snapshots_or_backups() {
    let mut hub = TestHub::start(3).await;
    let scratch = tempfile::tempdir().unwrap();
    let (doctor, room) = write_everything(&hub, scratch.path()).await;
    let ids = hub.running_ids();
    for id in &ids {
        assert!(hub.data_dir(*id).join("snapshots/current.ckpt").exists(), "node {id} has a snapshot");
    }
    // The hub still finds the post by its words, on every node.
    for id in &ids {
        let mut search = SearchServiceClient::new(channel(&hub.api(*id)).await);
        let found = search.search(authed(SearchRequest { query: "胸痛".into(), ..Default::default() }, &doctor));
        let found = found.await.expect("search").into_inner();
        assert_eq!(found.posts.len(), 1, "node {id}: {found:?}");
        assert_eq!(found.posts[0].room_id, room);
    }
    stop_all(&mut hub).await;
    // The file (200 KiB) is in every node's log and state, and in the image: the scan reads it.
    for id in &ids {
        assert!(bytes_under(&hub.data_dir(*id)) > 400 * 1024, "node {id}'s data dir");
    }
    let image = std::fs::metadata(scratch.path().join("image.snap")).expect("the image").len();
    assert!(image > 200 * 1024, "the backup image holds the file: {image} bytes");
    let mut found = findings(scratch.path());
    found.extend(ids.iter().flat_map(|id| findings(&hub.data_dir(*id))));
    assert_eq!(found, Vec::<(String, String)>::new(), "readable at rest");
}

/// The control: without master keys the same scan finds the sentence, the name and the file
/// in the data dirs, the snapshots and the backup image.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_finds_everything_on_a_hub_without_master_keys() {
    let mut hub = hub_without_master_keys().await;
    let scratch = tempfile::tempdir().unwrap();
    write_everything(&hub, scratch.path()).await;
    let ids = hub.running_ids();
    stop_all(&mut hub).await;
    let in_image = findings(scratch.path());
    let in_dirs: Vec<_> = ids.iter().flat_map(|id| findings(&hub.data_dir(*id))).collect();
    for (name, _) in needles() {
        assert!(in_image.iter().any(|(_, n)| *n == name), "{name} not in the plain backup image: {in_image:?}");
        assert!(in_dirs.iter().any(|(_, n)| *n == name), "{name} not in the plain data dirs: {in_dirs:?}");
    }
}

/// A 3-node hub run without `[encryption]`: nothing it stores is sealed.
async fn hub_without_master_keys() -> TestHub {
    let spec =
        HubSpec { nodes: vec![("r1", true), ("r2", true), ("r3", true)], preferred_regions: vec![], wire: Wire::Plain };
    TestHub::start_custom(spec, |config, _| config.encryption = None).await
}

/// Stops every node (their stores closed, nothing more to write) and keeps their data dirs,
/// with the snapshot file each would send a peer written beside its checkpoint (a node's own
/// tables are LZ4-compressed; the file is what travels).
async fn stop_all(hub: &mut TestHub) {
    let ids = hub.running_ids();
    for id in &ids {
        hub.stop(*id).await;
    }
    for id in ids {
        let snapshots = hub.data_dir(id).join("snapshots");
        let Ok(checkpoint) = std::fs::read_link(snapshots.join("current.ckpt")) else { continue };
        let snapshot = kizuna_store::SnapshotFile { path: snapshots.join(checkpoint) };
        snapshot.streamable().expect("the snapshot a peer would receive");
    }
}

/// Texts of the room's timeline, oldest first, read on node `id`.
async fn timeline(hub: &TestHub, id: u64, token: &str, room: u64) -> Vec<String> {
    use kizuna_proto::posts::{TimelineOrder, TimelineRequest};
    let req = TimelineRequest {
        room_id: room,
        order: TimelineOrder::OldestFirst as i32,
        page_size: 50,
        ..Default::default()
    };
    let api = channel(&hub.api(id)).await;
    let page = PostServiceClient::new(api).timeline(authed(req, token)).await.expect("timeline").into_inner();
    page.posts.into_iter().map(|p| p.text).collect()
}

async fn post(hub: &TestHub, token: &str, room: u64, text: &str) {
    let leader = hub.leader().await;
    let req =
        CreatePostRequest { idempotency_key: text.into(), room_id: room, text: text.into(), ..Default::default() };
    let api = channel(&hub.api(leader)).await;
    PostServiceClient::new(api).create_post(authed(req, token)).await.expect("post");
}

/// A master key rotation on a running hub, one node at a time: each node restarts holding the
/// new key and the old one; the hub rewraps its data keys under the new key and takes a new
/// data key; each node restarts with the new key alone. Writes go on throughout, every post
/// stays readable on every node, and the old master key alone no longer opens a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_master_key_rotates_one_node_at_a_time_without_stopping_the_hub() {
    use kizuna_node::config::EncryptionSection;
    use kizuna_proto::admin::RotateKeysRequest;
    let mut hub = TestHub::start(3).await;
    let doctor = hub.member("dr.rotate").await;
    let room = patient_room(channel(&hub.api(hub.leader().await)).await, &doctor, &[]).await;
    post(&hub, &doctor, room, "鍵の交換前の記録").await;
    let keys = tempfile::tempdir().unwrap();
    let old = hub.config.encryption.clone().expect("a test hub has a master key").master_key_file;
    let new = keys.path().join("master-2.key");
    let new_fingerprint = kizuna_node::store::MasterKey::create(&new).unwrap().fingerprint().to_owned();

    let both = EncryptionSection { master_key_file: new.clone(), previous_master_key_files: vec![old.clone()] };
    hub.config.encryption = Some(both);
    for (n, id) in hub.running_ids().into_iter().enumerate() {
        hub.stop(id).await;
        hub.restart(id).await;
        post(&hub, &doctor, room, &format!("ノード {n} の再起動後")).await;
        if n == 0 {
            // Members on different master keys: no rotation (one of them could not unwrap).
            let leader = hub.leader().await;
            let early = hub.admin(leader).await.rotate_keys(RotateKeysRequest { new_data_key: true }).await;
            let early = early.expect_err("members hold different master keys");
            assert_eq!(early.code(), tonic::Code::FailedPrecondition, "{early:?}");
            assert!(early.message().contains("holds master key"), "{early:?}");
        }
    }
    let leader = hub.leader().await;
    let rotated = hub.admin(leader).await.rotate_keys(RotateKeysRequest { new_data_key: true }).await;
    let rotated = rotated.expect("rotate-keys").into_inner();
    assert_eq!((rotated.data_keys, rotated.master_key.as_str()), (2, new_fingerprint.as_str()));
    post(&hub, &doctor, room, "新しいデータ鍵で封をした記録").await;
    // Every node must have applied the rewrapped keys before the old master key goes (as the
    // runbook says): a node restarted before would hold data keys it can no longer unwrap.
    let applied = hub.running(hub.leader().await).node.metrics().last_applied.map_or(0, |l| l.index);
    hub.wait_applied(applied).await;

    hub.config.encryption = Some(EncryptionSection { master_key_file: new, previous_master_key_files: vec![] });
    for id in hub.running_ids() {
        hub.stop(id).await;
        hub.restart(id).await;
    }
    hub.leader().await;
    let expected = [
        "鍵の交換前の記録",
        "ノード 0 の再起動後",
        "ノード 1 の再起動後",
        "ノード 2 の再起動後",
        "新しいデータ鍵で封をした記録",
    ];
    for id in hub.running_ids() {
        assert_eq!(timeline(&hub, id, &doctor, room).await, expected, "node {id}");
        assert_eq!(hub.running(id).node.state.vault().hub_keys(), 2, "node {id}");
    }

    // The old master key alone opens no node any more: it wraps nothing of this hub.
    let id = hub.running_ids()[0];
    hub.stop(id).await;
    let only_old = kizuna_node::store::MasterKeys::load(&old, &[]).unwrap();
    let refused = kizuna_node::store::open(&hub.data_dir(id), only_old).map(|_| ()).expect_err("the old key alone");
    assert!(refused.to_string().contains(&new_fingerprint), "{refused}");
    hub.shutdown().await;
}

/// A hub that ran without master keys, then is upgraded to encryption at rest one node at a
/// time: once its state is sealed, every node scrubs — a new snapshot replaces the old file,
/// the log written in clear is purged, every file is compacted — and the same scan of every
/// data dir finds nothing any more. (The backup made before the upgrade stays as it was: old
/// backups are the operator's to expire, docs/security.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgraded_hub_leaves_nothing_readable_once_it_is_sealed_and_scrubbed() {
    use kizuna_node::config::EncryptionSection;
    let mut hub = hub_without_master_keys().await;
    let scratch = tempfile::tempdir().unwrap();
    let (doctor, room) = write_everything(&hub, scratch.path()).await;
    let ids = hub.running_ids();
    let plain: Vec<_> = ids.iter().flat_map(|id| findings(&hub.data_dir(*id))).collect();
    assert!(!plain.is_empty(), "the scan finds the clear values before the upgrade");

    let keys = tempfile::tempdir().unwrap();
    hub.config.encryption = Some(EncryptionSection::generated_in(keys.path()).expect("a master key"));
    for id in &ids {
        hub.stop(*id).await;
        hub.restart(*id).await;
    }
    hub.wait_apply_version(kizuna_domain::APPLY_VERSION).await;
    hub.wait_sealed().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for id in &ids {
        while !hub.running(*id).node.state.scrubbed().expect("readable") {
            assert!(std::time::Instant::now() < deadline, "node {id} did not scrub");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(timeline(&hub, ids[0], &doctor, room).await.first().map(String::as_str), Some(SECRET_POST_TEXT));
    stop_all(&mut hub).await;
    let found: Vec<_> = ids.iter().flat_map(|id| findings(&hub.data_dir(*id))).collect();
    assert_eq!(found, Vec::<(String, String)>::new(), "readable at rest after the upgrade");
}
