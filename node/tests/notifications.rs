//! E-mail notices on a real 3-node in-process hub, delivered to a real SMTP server (Python's
//! aiosmtpd from PyPI, installed by `ops/scripts/setup-smtp.sh`, which `make test` runs): the
//! member who has not read the doctor's post within the delay gets exactly one mail naming the
//! patient's room, with a link to it and without the post's text or author; a member who read
//! it in time gets none; and a leader stopped after the post leaves the notice to the next
//! leader, which sends it exactly once; a declared disaster is mailed at once to the staff of
//! its area, whatever the delay.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{HubSpec, TestHub, Wire, authed, channel, post_secret, until_none_on_leader};
use kizuna_node::config::{NotificationsSection, SmtpTls};
use kizuna_node::domain::HubView;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::audit::ListAuditEntriesRequest;
use kizuna_proto::audit::audit_service_client::AuditServiceClient;
use kizuna_proto::posts::MarkReadRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use tonic::transport::Channel;

/// Writes each message it accepts to `<dir>/<n>.json` (recipients, decoded subject and body,
/// Message-ID), renaming it into place only when complete. Refuses the first `argv[2]` messages
/// with a temporary error (451), leaving `<dir>/refused-<n>` for each. Prints its port first.
const SMTP_SERVER: &str = r#"
import asyncio, email, email.policy, json, os, sys
from aiosmtpd.smtp import SMTP

class Handler:
    count = 0
    refused = 0
    async def handle_DATA(self, server, session, envelope):
        if Handler.refused < int(sys.argv[2]):
            Handler.refused += 1
            open(os.path.join(sys.argv[1], "refused-%d" % Handler.refused), "w").close()
            return "451 4.3.0 Try again later"
        Handler.count += 1
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        out = {"to": envelope.rcpt_tos, "subject": str(msg["subject"]), "message_id": str(msg["message-id"]),
               "body": msg.get_content()}
        path = os.path.join(sys.argv[1], "%04d.json" % Handler.count)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False)
        os.rename(path + ".tmp", path)
        return "250 Message accepted"

async def main():
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// The aiosmtpd server, killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    inbox: PathBuf,
}

impl SmtpServer {
    /// A server that refuses the first `refuse_first` messages (temporarily).
    fn start(dir: &Path, refuse_first: usize) -> Self {
        let venv = std::env::var_os("KIZUNA_AIOSMTPD_VENV").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/kizuna/aiosmtpd")
        });
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "the test SMTP server is missing: {} does not exist. Run `make setup-smtp` \
             (ops/scripts/setup-smtp.sh installs aiosmtpd from PyPI into that venv).",
            python.display()
        );
        let inbox = dir.join("inbox");
        std::fs::create_dir_all(&inbox).expect("inbox dir");
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).expect("server script");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&inbox)
            .arg(refuse_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting aiosmtpd");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("the server's port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("aiosmtpd did not print its port: {line:?}"));
        Self { child, port, inbox }
    }

    fn refused(&self) -> usize {
        let entries = std::fs::read_dir(&self.inbox).expect("inbox");
        entries.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("refused-"))).count()
    }

    fn mails(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.inbox)
            .expect("inbox")
            .map(|e| e.expect("inbox entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("a mail")).expect("a mail's JSON"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_hub(smtp: &SmtpServer, delay_seconds: u64) -> TestHub {
    let spec = HubSpec {
        nodes: vec![("region-1", true), ("region-2", true), ("region-3", true)],
        preferred_regions: vec![],
        wire: Wire::Plain,
    };
    let port = smtp.port;
    TestHub::start_custom(spec, move |config, _| {
        config.notifications = Some(NotificationsSection {
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some(port),
            tls: SmtpTls::None,
            from: Some("Kizuna <kizuna@example.jp>".into()),
            username: None,
            password_file: None,
            delay_seconds,
            digest_minutes: 60,
            retry_seconds: 1,
            vapid_private_key_file: None,
            vapid_subject: None,
            push_allow_loopback_http: false,
        });
    })
    .await
}

/// A patient room of the doctor's with `members` in it, each with e-mail on at `<login>@example.jp`;
/// returns the room's id.
async fn patient_room(api: Channel, doctor: &str, members: &[(&str, &str)]) -> u64 {
    let tokens: Vec<&str> = members.iter().map(|(_, token)| *token).collect();
    let room_id = common::patient_room(api.clone(), doctor, &tokens).await;
    let mut accounts = AccountServiceClient::new(api);
    for (login, token) in members {
        let settings = NotificationSettings {
            email: format!("{login}@example.jp"),
            email_enabled: true,
            quiet_hours: None,
            digest: false,
        };
        let set = SetNotificationSettingsRequest { idempotency_key: "notify".into(), settings: Some(settings.clone()) };
        let answered = accounts.set_notification_settings(authed(set.clone(), token)).await.expect("settings");
        assert_eq!(answered.into_inner().settings.as_ref(), Some(&settings));
        // The same key again with other settings: the first write's result, and what it stored.
        let other = NotificationSettings { email_enabled: false, ..settings.clone() };
        let retry = SetNotificationSettingsRequest { settings: Some(other), ..set };
        let answered = accounts.set_notification_settings(authed(retry, token)).await.expect("a retry");
        assert_eq!(answered.into_inner().settings.as_ref(), Some(&settings));
        let got = accounts.get_notification_settings(authed(GetNotificationSettingsRequest {}, token)).await;
        assert_eq!(got.expect("GetNotificationSettings").into_inner().settings, Some(settings));
    }
    room_id
}

/// Defaults before anything is set; a bad address or hour is INVALID_ARGUMENT; no session, no
/// settings.
async fn settings_are_checked(api: Channel, token: &str) {
    let mut accounts = AccountServiceClient::new(api);
    let got = accounts.get_notification_settings(authed(GetNotificationSettingsRequest {}, token)).await;
    let defaults = got.expect("GetNotificationSettings").into_inner().settings.expect("settings");
    assert_eq!((defaults.email.as_str(), defaults.email_enabled, defaults.digest), ("", false, false));
    let bad = [
        NotificationSettings { email: "not an address".into(), email_enabled: true, ..Default::default() },
        NotificationSettings { email: format!("{}@example.jp", "a".repeat(250)), ..Default::default() },
        NotificationSettings { email_enabled: true, ..Default::default() },
        NotificationSettings {
            email: "dr@example.jp".into(),
            quiet_hours: Some(QuietHours { start_hour: 22, end_hour: 24 }),
            ..Default::default()
        },
    ];
    for (i, settings) in bad.into_iter().enumerate() {
        let set = SetNotificationSettingsRequest { idempotency_key: format!("bad-{i}"), settings: Some(settings) };
        let refused = accounts.set_notification_settings(authed(set, token)).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    let anonymous = accounts.get_notification_settings(GetNotificationSettingsRequest {}).await;
    assert_eq!(anonymous.expect_err("no session").code(), tonic::Code::Unauthenticated);
}

async fn until_mails(smtp: &SmtpServer, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mails = smtp.mails();
        if mails.len() >= n {
            return mails;
        }
        assert!(Instant::now() < deadline, "{} of {n} mails after 30s", mails.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_mail(mail: &serde_json::Value, to: &str, room_id: u64) {
    assert_eq!(mail["to"], serde_json::json!([to]), "the recipient");
    let (subject, body) = (mail["subject"].as_str().expect("subject"), mail["body"].as_str().expect("body"));
    assert!(body.contains("山田 花子 さんの部屋に新しい投稿があります"), "names the room: {body}");
    assert!(body.contains(&format!("/#/room/{room_id}")), "links the room: {body}");
    for text in [subject, body] {
        assert!(!text.contains("血圧") && !text.contains("胸痛"), "no post text: {text}");
        assert!(!text.contains("dr.mori"), "no author: {text}");
    }
    assert!(mail["message_id"].as_str().is_some_and(|id| id.starts_with("<notice.")), "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_member_who_has_not_read_gets_one_mail_without_the_content_a_reader_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(dir.path(), 0);
    // Two seconds: ample for the reader's MarkRead right after the post, even on a busy machine.
    let hub = start_hub(&smtp, 2).await;
    let (doctor, nurse, reader) =
        (hub.member("dr.mori").await, hub.member("vn.sato").await, hub.member("cm.ueda").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    settings_are_checked(api.clone(), &doctor).await;
    let room_id = patient_room(api.clone(), &doctor, &[("vn.sato", &nurse), ("cm.ueda", &reader)]).await;

    let seq = post_secret(api.clone(), &doctor, room_id).await;
    let read = MarkReadRequest { idempotency_key: "read".into(), room_id, up_to_seq: seq };
    PostServiceClient::new(api).mark_read(authed(read, &reader)).await.expect("read in time");

    let mails = until_mails(&smtp, 1).await;
    check_mail(&mails[0], "vn.sato@example.jp", room_id);
    until_none_on_leader(&hub, "notices", |h| h.notices().expect("readable notices")).await;
    assert_eq!(smtp.mails().len(), 1, "exactly one mail, none for the member who read: {:?}", smtp.mails());

    // The mail named the patient outside the hub: the audit chain says so, once.
    let op = hub.operator().await;
    let mut audit = AuditServiceClient::new(channel(&hub.api(hub.leader().await)).await);
    let q = ListAuditEntriesRequest { page_size: 1000, ..Default::default() };
    let entries = audit.list_audit_entries(authed(q, &op)).await.expect("audit").into_inner().entries;
    let sent = entries.iter().filter(|e| e.what.starts_with("e-mail notice sent") && e.room_id == Some(room_id));
    assert_eq!(sent.count(), 1, "{entries:#?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_stopped_after_the_post_leaves_the_notice_to_the_next_which_sends_it_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(dir.path(), 0);
    // Long enough that the leader is stopped before the notice is due, even on a busy machine
    // (its notifier stops first thing in a shutdown).
    let mut hub = start_hub(&smtp, 5).await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let old = hub.leader().await;
    let api = channel(&hub.api(old)).await;
    let room_id = patient_room(api.clone(), &doctor, &[("vn.sato", &nurse)]).await;
    post_secret(api, &doctor, room_id).await;
    let old_url = format!("{}/#/room/", hub.api(old));
    hub.stop(old).await;
    assert!(smtp.mails().is_empty(), "sent before the delay");

    let new = hub.leader().await;
    assert_ne!(new, old);
    let mails = until_mails(&smtp, 1).await;
    check_mail(&mails[0], "vn.sato@example.jp", room_id);
    let body = mails[0]["body"].as_str().expect("body");
    assert!(body.contains(&format!("{}/#/room/{room_id}", hub.api(new))), "sent by the new leader: {body}");
    assert!(!body.contains(&old_url), "{body}");
    until_none_on_leader(&hub, "notices", |h| h.notices().expect("readable notices")).await;
    assert_eq!(smtp.mails().len(), 1, "exactly once: {:?}", smtp.mails());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_the_relay_refuses_is_retried_and_then_delivered_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(dir.path(), 1);
    let hub = start_hub(&smtp, 1).await;
    let (doctor, nurse) = (hub.member("dr.mori").await, hub.member("vn.sato").await);
    let api = channel(&hub.api(hub.leader().await)).await;
    let room_id = patient_room(api.clone(), &doctor, &[("vn.sato", &nurse)]).await;
    post_secret(api, &doctor, room_id).await;

    let mails = until_mails(&smtp, 1).await;
    assert_eq!(smtp.refused(), 1, "the first try was refused");
    check_mail(&mails[0], "vn.sato@example.jp", room_id);
    until_none_on_leader(&hub, "notices", |h| h.notices().expect("readable notices")).await;
    assert_eq!(smtp.mails().len(), 1, "delivered once: {:?}", smtp.mails());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declared_disaster_is_mailed_at_once_to_the_staff_of_its_area() {
    use kizuna_proto::disaster::DeclareDisasterRequest;
    use kizuna_proto::disaster::disaster_service_client::DisasterServiceClient;
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(dir.path(), 0);
    // Ten minutes of delay for news: a disaster does not wait for it.
    let hub = start_hub(&smtp, 600).await;
    hub.wait_apply_version(kizuna_node::domain::APPLY_VERSION).await;
    let nurse = hub.member("vn.sato").await;
    let api = channel(&hub.api(hub.leader().await)).await;
    let settings =
        NotificationSettings { email: "vn.sato@example.jp".into(), email_enabled: true, ..Default::default() };
    let set = SetNotificationSettingsRequest { idempotency_key: "notify".into(), settings: Some(settings) };
    AccountServiceClient::new(api.clone()).set_notification_settings(authed(set, &nurse)).await.expect("settings");

    let declare = DeclareDisasterRequest {
        idempotency_key: "declare".into(),
        name: "令和8年台風第19号".into(),
        municipalities: vec!["宇都宮市".into()],
        started_at: None,
    };
    let op = hub.operator().await;
    DisasterServiceClient::new(api).declare_disaster(authed(declare, &op)).await.expect("declared");
    let mails = until_mails(&smtp, 1).await;
    assert_eq!(mails[0]["to"], serde_json::json!(["vn.sato@example.jp"]));
    let (subject, body) = (mails[0]["subject"].as_str().expect("subject"), mails[0]["body"].as_str().expect("body"));
    assert!(subject.contains("令和8年台風第19号") && body.contains("安否確認をお願いします"), "{subject}\n{body}");
    assert!(body.contains("/#/disaster"), "links the board: {body}");
    until_none_on_leader(&hub, "notices", |h| h.notices().expect("readable notices")).await;
    assert_eq!(smtp.mails().len(), 1, "exactly one mail: {:?}", smtp.mails());
    hub.shutdown().await;
}
