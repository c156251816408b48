//! E-mail notices: one per unread room after the delay, none once read, quiet hours (also
//! across midnight), the digest, and never the post's text or author in the mail.

use super::*;
use crate::notify::{self, Delivery, Notice, NotificationPrefs, QuietHours, Timing};

const TIMING: Timing = Timing { delay_ms: 5 * 60_000, digest_ms: 60 * 60_000, retry_first_ms: notify::RETRY_FIRST_MS };
const SECRET: &str = "血圧 180/110、至急往診を";

fn url(room: RoomId) -> String {
    format!("https://kizuna.example.jp/#/room/{}", room.0)
}

fn prefs(email: &str) -> NotificationPrefs {
    NotificationPrefs { email: email.into(), email_on: true, quiet: None, digest: false }
}

/// A doctor and a nurse (e-mail on) on 山田 花子's team.
fn team() -> (Hub, AccountId, AccountId, RoomId) {
    let (mut hub, _, _, people) = Hub::setup(2);
    let (doctor, nurse) = (people[0], people[1]);
    let room = patient(&mut hub, doctor, "山田 花子");
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    hub.ok(nurse, Command::SetNotificationSettings { prefs: prefs("nurse@example.jp") });
    (hub, doctor, nurse, room)
}

fn plan_at(hub: &Hub, now: u64) -> notify::Plan {
    notify::plan(&hub.state, now, TIMING, &url).unwrap()
}

#[test]
fn a_post_is_due_after_the_delay_once_for_the_other_member() {
    let (mut hub, doctor, nurse, room) = team();
    post(&mut hub, doctor, room, SECRET);
    post(&mut hub, doctor, room, "追記");
    let notices = hub.state.notices().unwrap();
    assert_eq!(notices.len(), 1, "one pending notice per account and room, none for the author");
    let n = notices[0];
    assert_eq!((n.account, n.room, n.seq), (nurse, room, 1));
    assert!(plan_at(&hub, n.since_ms + TIMING.delay_ms - 1).mails.is_empty(), "not due before the delay");
    let due = plan_at(&hub, n.since_ms + TIMING.delay_ms);
    assert_eq!(due.mails.len(), 1);
    let mail = &due.mails[0];
    assert_eq!(mail.to, "nurse@example.jp");
    assert!(mail.body.contains("山田 花子 さんの部屋に新しい投稿があります"), "{}", mail.body);
    assert!(mail.body.contains(&url(room)));
    for text in [&mail.subject, &mail.body] {
        assert!(!text.contains("血圧") && !text.contains("追記") && !text.contains("職員0"), "no content: {text}");
    }
}

#[test]
fn reading_before_the_delay_cancels_and_sending_is_recorded_once() {
    let (mut hub, doctor, nurse, room) = team();
    let seq = post(&mut hub, doctor, room, SECRET);
    hub.ok(nurse, Command::MarkRead { room, up_to_seq: seq });
    assert!(hub.state.notices().unwrap().is_empty(), "read: nothing to send");

    post(&mut hub, doctor, room, "もう一件");
    let n = hub.state.notices().unwrap()[0];
    let sent = notify::record(&hub.state, &[n.reference()], Delivery::Sent).unwrap();
    hub.state.apply(sent);
    assert!(hub.state.notices().unwrap().is_empty());
    // A record of a notice that is gone (a retry of the same report) changes nothing.
    assert!(notify::record(&hub.state, &[n.reference()], Delivery::Sent).unwrap().is_empty());
}

#[test]
fn a_failed_send_waits_for_its_retry() {
    let (mut hub, doctor, _, room) = team();
    post(&mut hub, doctor, room, SECRET);
    let n = hub.state.notices().unwrap()[0];
    let retry_at = n.since_ms + TIMING.delay_ms + notify::retry_delay_ms(TIMING.retry_first_ms, 0);
    let failed = notify::record(&hub.state, &[n.reference()], Delivery::Failed { retry_at_ms: retry_at }).unwrap();
    hub.state.apply(failed);
    assert_eq!(hub.state.notices().unwrap()[0].attempts, 1);
    assert!(plan_at(&hub, retry_at - 1).mails.is_empty());
    assert_eq!(plan_at(&hub, retry_at).mails.len(), 1);
    assert_eq!(notify::retry_delay_ms(30_000, 1), 60_000, "doubling");
    assert_eq!(notify::retry_delay_ms(30_000, 40), notify::RETRY_MAX_MS);
}

#[test]
fn nobody_without_an_address_or_with_email_off_gets_a_notice() {
    let (mut hub, doctor, nurse, room) = team();
    hub.ok(
        nurse,
        Command::SetNotificationSettings { prefs: NotificationPrefs { email_on: false, ..prefs("n@example.jp") } },
    );
    post(&mut hub, doctor, room, SECRET);
    assert!(hub.state.notices().unwrap().is_empty());
    assert!(hub.state.notification_settings(doctor).unwrap().is_none());
}

#[test]
fn settings_are_checked() {
    let (mut hub, _, nurse, _) = team();
    let long = format!("{}@example.jp", "a".repeat(250));
    for email in ["no-at-sign", "a@b", "a b@example.jp", "<a@example.jp>", long.as_str(), "a@example.jp\r\nBcc: x@y.z"]
    {
        let r = hub.run(Some(nurse), Command::SetNotificationSettings { prefs: prefs(email) });
        assert!(matches!(r, Err(DomainError::InvalidArgument(_))), "{email:?}: {r:?}");
    }
    let on_without_address = hub.run(Some(nurse), Command::SetNotificationSettings { prefs: prefs("") });
    assert!(matches!(on_without_address, Err(DomainError::InvalidArgument(_))));
    let same_hours =
        NotificationPrefs { quiet: Some(QuietHours { start_hour: 3, end_hour: 3 }), ..prefs("n@example.jp") };
    assert!(hub.run(Some(nurse), Command::SetNotificationSettings { prefs: same_hours }).is_err());
    assert!(hub.run(None, Command::SetNotificationSettings { prefs: prefs("n@example.jp") }).is_err());
}

/// `hour`:00 Japan time (UTC+9) within the first UTC day, in ms: hours 9–23 fall on the 1st
/// of January 1970 in Japan, hours 0–8 on the 2nd (so `jst(7)` comes after `jst(23)`).
fn jst(hour: u64) -> u64 {
    ((hour + 24 - 9) % 24) * 3_600_000
}

#[test]
fn quiet_hours_hold_notices_until_they_end_also_across_midnight() {
    let night = QuietHours { start_hour: 22, end_hour: 7 };
    assert!(night.contains(23) && night.contains(0) && night.contains(6));
    assert!(!night.contains(7) && !night.contains(12) && !night.contains(21));
    assert_eq!(notify::jst_hour(jst(23) + 59 * 60_000), 23);
    // 23:30 → 07:00 the next morning; 02:00 → 07:00; noon is sent at once.
    assert_eq!(night.release(jst(23) + 30 * 60_000), jst(7));
    assert_eq!(night.release(jst(2) + 24 * 3_600_000), jst(7) + 24 * 3_600_000);
    assert_eq!(night.release(jst(12)), jst(12));
    let lunch = QuietHours { start_hour: 12, end_hour: 13 };
    assert_eq!(lunch.release(jst(12) + 10), jst(13));

    let n = Notice {
        account: AccountId(1),
        room: RoomId(2),
        seq: 1,
        since_ms: jst(21) + 58 * 60_000,
        attempts: 0,
        retry_at_ms: 0,
    };
    let p = NotificationPrefs { quiet: Some(night), ..prefs("n@example.jp") };
    assert_eq!(notify::due_at(&n, &p, TIMING), jst(7), "due 22:03, quiet until 07:00");
}

#[test]
fn a_digest_is_one_mail_naming_every_room_with_news() {
    let (mut hub, doctor, nurse, room) = team();
    let other = patient(&mut hub, doctor, "佐藤 一郎");
    hub.ok(doctor, Command::Invite { room: other, invitee: nurse, role: Role::Member });
    hub.ok(
        nurse,
        Command::SetNotificationSettings { prefs: NotificationPrefs { digest: true, ..prefs("n@example.jp") } },
    );
    post(&mut hub, doctor, room, SECRET);
    post(&mut hub, doctor, other, SECRET);
    let first = hub.state.notices().unwrap().iter().map(|n| n.since_ms).min().unwrap();
    assert!(plan_at(&hub, first + TIMING.delay_ms).mails.is_empty(), "a digest waits for its period");
    let digest = plan_at(&hub, first + TIMING.digest_ms);
    assert_eq!(digest.mails.len(), 1, "one mail for both rooms");
    let mail = &digest.mails[0];
    assert_eq!(mail.covers.len(), 2);
    assert!(mail.body.contains("山田 花子") && mail.body.contains("佐藤 一郎") && !mail.body.contains("血圧"));
    assert!(mail.subject.contains("2件"));
}

#[test]
fn a_member_who_left_or_turned_email_off_is_dropped_not_mailed() {
    let (mut hub, doctor, nurse, room) = team();
    post(&mut hub, doctor, room, SECRET);
    let n = hub.state.notices().unwrap()[0];
    hub.ok(nurse, Command::Leave { room });
    let plan = plan_at(&hub, n.since_ms + TIMING.delay_ms);
    assert!(plan.mails.is_empty());
    assert_eq!(plan.drop, vec![n.reference()]);
}

#[test]
fn a_stopped_account_gets_no_mail() {
    let (mut hub, doctor, nurse, room) = team();
    post(&mut hub, doctor, room, SECRET);
    let n = hub.state.notices().unwrap()[0];
    hub.ok(doctor, Command::StopAccount { account: nurse });
    let plan = plan_at(&hub, n.since_ms + TIMING.delay_ms);
    assert!(plan.mails.is_empty());
    assert_eq!(plan.drop, vec![n.reference()]);
}

#[test]
fn a_group_name_never_breaks_the_subject_line() {
    let (mut hub, doctor, nurse, _) = team();
    let group = match hub.ok(doctor, Command::CreateGroup { name: "連絡\n会".into() }) {
        Outcome::Room(r) => r,
        o => panic!("{o:?}"),
    };
    hub.ok(doctor, Command::Invite { room: group, invitee: nurse, role: Role::Member });
    post(&mut hub, doctor, group, SECRET);
    let n = hub.state.notices().unwrap()[0];
    let mail = &plan_at(&hub, n.since_ms + TIMING.delay_ms).mails[0];
    assert!(!mail.subject.contains('\n') && mail.subject.contains("連絡 会"), "{}", mail.subject);
}

#[test]
fn a_sent_notice_about_a_patient_is_audited_once() {
    let (mut hub, doctor, nurse, room) = team();
    post(&mut hub, doctor, room, SECRET);
    let n = hub.state.notices().unwrap()[0];
    let records = notify::sent_audit(&hub.state, 5, 2, &[n.reference()]).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].room, records[0].node), (Some(room), 2));
    assert!(records[0].patient.is_some() && records[0].what.contains(&nurse.0.to_string()));
    let sent = notify::record(&hub.state, &[n.reference()], Delivery::Sent).unwrap();
    hub.state.apply(sent);
    assert!(notify::sent_audit(&hub.state, 6, 2, &[n.reference()]).unwrap().is_empty(), "a repeated report");
}

#[test]
fn reading_only_part_of_the_news_keeps_a_notice_for_the_rest() {
    let (mut hub, doctor, nurse, room) = team();
    let first = post(&mut hub, doctor, room, SECRET);
    let second = post(&mut hub, doctor, room, "追記");
    hub.ok(nurse, Command::MarkRead { room, up_to_seq: first });
    let n = hub.state.notices().unwrap();
    assert_eq!(n.len(), 1, "post 2 is still unread");
    assert_eq!((n[0].seq, n[0].since_ms), (second, hub.now), "from the newest post, the delay counting anew");
    hub.ok(nurse, Command::MarkRead { room, up_to_seq: second });
    assert!(hub.state.notices().unwrap().is_empty());
}
