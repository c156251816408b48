//! Web Push notices: subscriptions checked and capped, the same rules as e-mail (delay, quiet
//! hours, digest), a queue of their own, gone endpoints removed, and never the content.

use super::*;
use crate::notify::{self, Delivery, NotificationPrefs, QuietHours, Timing};
use crate::push;

const TIMING: Timing = Timing { delay_ms: 5 * 60_000, digest_ms: 60 * 60_000, retry_first_ms: notify::RETRY_FIRST_MS };
const SECRET: &str = "血圧 180/110、至急往診を";
const P256DH: &str = "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY";
const AUTH: &str = "_ordMnz7uTCmrpBTeUV4Bw";

fn url(room: RoomId) -> String {
    format!("https://kizuna.example.jp/#/room/{}", room.0)
}

fn subscribe(endpoint: &str) -> Command {
    Command::AddPushSubscription { endpoint: endpoint.into(), p256dh: P256DH.into(), auth: AUTH.into() }
}

/// A doctor and a nurse (one browser subscribed, no e-mail) on 山田 花子's team.
fn team() -> (Hub, AccountId, AccountId, RoomId) {
    let (mut hub, _, _, people) = Hub::setup(2);
    let (doctor, nurse) = (people[0], people[1]);
    let room = patient(&mut hub, doctor, "山田 花子");
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    hub.ok(nurse, subscribe("https://push.example.net/send/abc"));
    (hub, doctor, nurse, room)
}

fn plan_at(hub: &Hub, now: u64) -> push::PushPlan {
    push::plan(&hub.state, now, TIMING, &url).unwrap()
}

#[test]
fn a_post_is_pushed_after_the_delay_without_content_and_mails_are_not_involved() {
    let (mut hub, doctor, nurse, room) = team();
    post(&mut hub, doctor, room, SECRET);
    assert!(hub.state.notices().unwrap().is_empty(), "no e-mail asked for");
    let queued = hub.state.push_notices().unwrap();
    assert_eq!(queued.len(), 1);
    let n = queued[0];
    assert_eq!((n.account, n.room), (nurse, room));
    assert!(plan_at(&hub, n.since_ms + TIMING.delay_ms - 1).pushes.is_empty());
    let plan = plan_at(&hub, n.since_ms + TIMING.delay_ms);
    assert_eq!(plan.pushes.len(), 1);
    let p = &plan.pushes[0];
    assert_eq!(p.subscriptions.len(), 1);
    assert_eq!(p.message.body, "山田 花子 さんの部屋に新しい投稿があります");
    assert_eq!(p.message.url, url(room));
    let json = serde_json::to_string(&p.message).unwrap();
    assert!(!json.contains("血圧") && !json.contains("職員0"), "no content: {json}");
}

#[test]
fn email_and_push_are_recorded_each_on_its_own_queue() {
    let (mut hub, doctor, nurse, room) = team();
    let prefs = NotificationPrefs { email: "n@example.jp".into(), email_on: true, quiet: None, digest: false };
    hub.ok(nurse, Command::SetNotificationSettings { prefs });
    post(&mut hub, doctor, room, SECRET);
    let mail = hub.state.notices().unwrap()[0];
    let pushed = hub.state.push_notices().unwrap()[0];
    let sent = push::record(&hub.state, nurse, &[pushed.reference()], Delivery::Sent, &[]).unwrap();
    hub.state.apply(sent);
    assert!(hub.state.push_notices().unwrap().is_empty());
    assert_eq!(hub.state.notices().unwrap(), vec![mail], "the mail is still to send");
    let audit = notify::sent_audit_on(&hub.state, notify::Channel::Push, (1, 2), &[pushed.reference()]).unwrap();
    assert!(audit.is_empty(), "a repeated report audits nothing");
}

#[test]
fn reading_cancels_the_push_and_quiet_hours_and_digest_apply() {
    let (mut hub, doctor, nurse, room) = team();
    let seq = post(&mut hub, doctor, room, SECRET);
    hub.ok(nurse, Command::MarkRead { room, up_to_seq: seq });
    assert!(hub.state.push_notices().unwrap().is_empty());

    let other = patient(&mut hub, doctor, "佐藤 一郎");
    hub.ok(doctor, Command::Invite { room: other, invitee: nurse, role: Role::Member });
    let night = QuietHours { start_hour: 0, end_hour: 23 };
    let prefs = NotificationPrefs { email: String::new(), email_on: false, quiet: Some(night), digest: true };
    hub.ok(nurse, Command::SetNotificationSettings { prefs });
    post(&mut hub, doctor, room, SECRET);
    post(&mut hub, doctor, other, SECRET);
    let first = hub.state.push_notices().unwrap().iter().map(|n| n.since_ms).min().unwrap();
    assert!(plan_at(&hub, first + TIMING.delay_ms).pushes.is_empty(), "a digest waits for its period");
    // Hub time starts at the epoch: 09:00 in Japan, inside 00–23 quiet hours until 23:00.
    assert!(plan_at(&hub, first + TIMING.digest_ms).pushes.is_empty(), "quiet hours");
    let evening = 14 * 3_600_000;
    let plan = plan_at(&hub, evening);
    assert_eq!(plan.pushes.len(), 1, "one push for both rooms");
    assert_eq!(plan.pushes[0].covers.len(), 2);
    assert_eq!(plan.pushes[0].message.body, "2件の部屋に新しい投稿があります");
}

#[test]
fn a_gone_endpoint_is_removed_and_without_browsers_the_notice_is_dropped() {
    let (mut hub, doctor, nurse, room) = team();
    post(&mut hub, doctor, room, SECRET);
    let n = hub.state.push_notices().unwrap()[0];
    let endpoint = "https://push.example.net/send/abc".to_owned();
    let gone = push::record(&hub.state, nurse, &[n.reference()], Delivery::Dropped, &[endpoint]).unwrap();
    hub.state.apply(gone);
    assert!(hub.state.push_subscriptions(nurse).unwrap().is_empty());
    assert!(hub.state.push_notices().unwrap().is_empty());
    post(&mut hub, doctor, room, "また");
    assert!(hub.state.push_notices().unwrap().is_empty(), "no browser: no push notice");

    // Subscribed again, then unsubscribed before the delay: planned as a drop.
    hub.ok(nurse, subscribe("https://push.example.net/send/def"));
    post(&mut hub, doctor, room, "再度");
    let n = hub.state.push_notices().unwrap()[0];
    hub.ok(nurse, Command::RemovePushSubscription { endpoint: "https://push.example.net/send/def".into() });
    let plan = plan_at(&hub, n.since_ms + TIMING.delay_ms);
    assert!(plan.pushes.is_empty());
    assert_eq!(plan.drop, vec![n.reference()]);
    // Removing it again is done already.
    hub.ok(nurse, Command::RemovePushSubscription { endpoint: "https://push.example.net/send/def".into() });
}

#[test]
fn subscriptions_are_checked() {
    let (mut hub, _, nurse, _) = team();
    let long = format!("https://push.example.net/{}", "a".repeat(push::MAX_ENDPOINT_CHARS));
    for endpoint in [
        "http://push.example.net/x",
        "http://127.0.0.2/x",
        "http://127.0.0.1.evil.example/x",
        "ftp://push.example.net/x",
        "https:///x",
        "https://a b/x",
        "https://user@push.example.net/x",
        long.as_str(),
    ] {
        let r = hub.run(Some(nurse), subscribe(endpoint));
        assert!(matches!(r, Err(DomainError::InvalidArgument(_))), "{endpoint:?}: {r:?}");
    }
    for endpoint in ["http://127.0.0.1:8080/push/1", "http://[::1]:9/p", "https://fcm.googleapis.com/fcm/send/x"] {
        assert!(push::valid_endpoint(endpoint), "{endpoint}");
    }
    let bad_key = Command::AddPushSubscription {
        endpoint: "https://push.example.net/k".into(),
        p256dh: "AAAA".into(),
        auth: AUTH.into(),
    };
    assert!(matches!(hub.run(Some(nurse), bad_key), Err(DomainError::InvalidArgument(_))));
    let bad_auth = Command::AddPushSubscription {
        endpoint: "https://push.example.net/k".into(),
        p256dh: P256DH.into(),
        auth: "not base64!".into(),
    };
    assert!(matches!(hub.run(Some(nurse), bad_auth), Err(DomainError::InvalidArgument(_))));
    assert!(hub.run(None, subscribe("https://push.example.net/k")).is_err(), "signed in only");
}

#[test]
fn an_eleventh_browser_replaces_the_oldest() {
    let (mut hub, _, nurse, _) = team();
    for i in 1..push::MAX_SUBSCRIPTIONS {
        hub.now += 1;
        hub.ok(nurse, subscribe(&format!("https://push.example.net/send/{i}")));
    }
    assert_eq!(hub.state.push_subscriptions(nurse).unwrap().len(), push::MAX_SUBSCRIPTIONS);
    hub.now += 1;
    hub.ok(nurse, subscribe("https://push.example.net/send/new"));
    let held = hub.state.push_subscriptions(nurse).unwrap();
    assert_eq!(held.len(), push::MAX_SUBSCRIPTIONS);
    assert!(!held.iter().any(|s| s.endpoint == "https://push.example.net/send/abc"), "the oldest went");
    // The same endpoint again renews, it does not evict.
    hub.ok(nurse, subscribe("https://push.example.net/send/new"));
    assert_eq!(hub.state.push_subscriptions(nurse).unwrap().len(), push::MAX_SUBSCRIPTIONS);
}
