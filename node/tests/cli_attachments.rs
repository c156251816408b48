//! The `kizuna` CLI's files, run as the real binary against an in-process 3-node hub:
//! `post --attach` (streamed uploads, an upload reused by a re-run) and `attachment get`
//! (byte-identical, no overwrite, resume, another node when the first is down).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::files::pdf;
use common::{TestHub, channel};
use kizuna_chaos::proxy::LinkProxy;
use kizuna_proto::rooms::CreatePatientRequest;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use tonic::Request;

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");

/// The CLI in `cwd`, signed in through `session`, talking to `endpoints`.
async fn kizuna(session: &Path, cwd: &Path, endpoints: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(KIZUNA)
        .current_dir(cwd)
        .env("KIZUNA_SESSION_FILE", session)
        .env_remove("KIZUNA_CA")
        .args(["--endpoint", endpoints])
        .args(args)
        .output()
        .await
        .expect("run kizuna")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The ids printed as 「添付 #ID NAME (...)」, in order.
fn attachment_ids(out: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ids = stdout.lines().filter_map(|l| l.strip_prefix("添付 #")).filter_map(|l| l.split(' ').next());
    ids.map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_go_up_with_a_post_and_come_back_identical_resumed_and_never_overwritten() {
    let mut hub = TestHub::start(3).await;
    let doctor = hub.member("dr.mori").await;
    let leader = hub.leader().await;
    let follower = hub.follower_of(leader);
    let api = hub.api(follower);
    let mut patient = Request::new(CreatePatientRequest {
        idempotency_key: "patient".into(),
        name: "山田 花子".into(),
        kana: "やまだ はなこ".into(),
        ..Default::default()
    });
    patient.metadata_mut().insert("authorization", format!("Bearer {doctor}").parse().expect("header"));
    let rooms = RoomServiceClient::new(channel(&api).await).create_patient(patient).await.expect("patient");
    let room = rooms.into_inner().room_id.to_string();

    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("session.json");
    let saved = serde_json::json!({ "login": "dr.mori", "token": doctor });
    std::fs::write(&session, saved.to_string()).expect("session file");
    let (small, big) = (pdf(1000, 1), pdf(300 * 1024, 2)); // big: three chunks of 128 KiB
    std::fs::write(dir.path().join("処方変更.pdf"), &small).expect("small file");
    std::fs::write(dir.path().join("big.pdf"), &big).expect("big file");

    // A refused post (too long) after its upload; the re-run reuses the attachment.
    let too_long = "あ".repeat(10_001);
    let out = kizuna(&session, dir.path(), &api, &["post", &room, &too_long, "--attach", "処方変更.pdf"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let first = attachment_ids(&out);
    let out = kizuna(&session, dir.path(), &api, &["post", &room, "", "--attach", "処方変更.pdf", "big.pdf"]).await;
    assert!(out.status.success(), "post: {}", text(&out));
    let ids = attachment_ids(&out);
    assert_eq!(ids.len(), 2, "{}", text(&out));
    assert_eq!(ids[0], first[0], "the re-run reused the upload: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("処方変更.pdf (application/pdf, 1000 B)"), "{stdout}");
    assert!(stdout.contains("big.pdf (application/pdf, 300.0 KiB)") && stdout.contains("posted #"), "{stdout}");

    // The timeline lists a post's files with the ids `attachment get` takes.
    let out = kizuna(&session, dir.path(), &api, &["timeline", &room]).await;
    assert!(text(&out).contains(&format!("添付 #{} big.pdf", ids[1])), "timeline: {}", text(&out));

    // Back under its own name, in the current directory; never over an existing file.
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).expect("downloads dir");
    let out = kizuna(&session, &downloads, &api, &["attachment", "get", &ids[1]]).await;
    assert!(out.status.success(), "get: {}", text(&out));
    assert!(std::fs::read(downloads.join("big.pdf")).expect("downloaded") == big, "byte-identical");
    let out = kizuna(&session, &downloads, &api, &["attachment", "get", &ids[1]]).await;
    assert!(!out.status.success() && text(&out).contains("exists"), "{}", text(&out));
    let out = kizuna(&session, &downloads, &api, &["attachment", "get", &ids[1], "--force"]).await;
    assert!(out.status.success(), "get --force: {}", text(&out));

    // The node an upload and a download stream through goes away half-way (its link cut):
    // both carry on on the next node listed, the download from where it was.
    let proxy = LinkProxy::start(hub.node_config(follower).api_addr).await.expect("proxy");
    proxy.set_bandwidth(100 * 1024); // 3 s for 300 KiB: the cut comes half-way
    let other = hub.running_ids().into_iter().find(|id| *id != follower).unwrap_or(leader);
    let endpoints = format!("http://{},{}", proxy.addr, hub.api(other));
    std::fs::write(dir.path().join("big-2.pdf"), pdf(300 * 1024, 3)).expect("another big file");
    let cut = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        proxy.set_up(false);
    };
    let args = ["post", &room, "", "--attach", "big-2.pdf"];
    let (out, ()) = tokio::join!(kizuna(&session, dir.path(), &endpoints, &args), cut);
    assert!(out.status.success(), "post through a cut link: {}", text(&out));
    assert!(text(&out).contains("unavailable") && text(&out).contains("big-2.pdf (application/pdf"), "{}", text(&out));
    proxy.set_up(true);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        proxy.set_up(false);
    };
    let args = ["attachment", "get", &ids[1], "--out", "cut.pdf"];
    let (out, ()) = tokio::join!(kizuna(&session, dir.path(), &endpoints, &args), cut);
    assert!(out.status.success(), "get through a cut link: {}", text(&out));
    assert!(text(&out).contains("unavailable"), "{}", text(&out));
    assert!(std::fs::read(dir.path().join("cut.pdf")).expect("cut.pdf") == big, "resumed on another node");

    // A partial file (not at a chunk boundary) continued; the first node listed is down.
    let partial = dir.path().join("partial.pdf");
    std::fs::write(&partial, &big[..100 * 1024 + 3]).expect("partial file");
    let partial_arg = partial.to_string_lossy().into_owned();
    let down = hub.follower_of(leader);
    let other = hub.running_ids().into_iter().find(|id| *id != leader && *id != down).unwrap_or(leader);
    hub.stop(down).await;
    let endpoints = format!("{},{}", hub.api(down), hub.api(other));
    let args = ["attachment", "get", &ids[1], "--out", &partial_arg, "--resume"];
    let out = kizuna(&session, dir.path(), &endpoints, &args).await;
    assert!(out.status.success(), "get --resume: {}", text(&out));
    assert!(std::fs::read(&partial).expect("resumed") == big, "resumed byte-identical");
    let out =
        kizuna(&session, dir.path(), &hub.api(other), &["attachment", "get", &ids[0], "--out", "small.pdf"]).await;
    assert!(out.status.success(), "get small: {}", text(&out));
    assert!(std::fs::read(dir.path().join("small.pdf")).expect("small") == small);
    // A PDF has no thumbnail: refused, and nothing is left behind.
    let out =
        kizuna(&session, &downloads, &hub.api(other), &["attachment", "get", &ids[0], "--variant", "small"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&downloads).expect("downloads").count(), 1, "only big.pdf");
    hub.shutdown().await;
}
