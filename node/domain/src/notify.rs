//! E-mail notices of unread news, without the content.
//!
//! Each member keeps her own [`NotificationSettings`] (replicated, like every other state).
//! When a post lands in a room, every other active member who asked for e-mail gets one
//! pending [`Notice`] for that room (at most one per account and room), written in the same
//! apply as the post ([`enqueue`], called from `settle`); reading the room drops it. The
//! leader's notifier (`kizuna-server`, `notifier.rs`) asks [`plan`] which notices are due,
//! sends them and records the result through Raft ([`record`]), so a new leader neither
//! loses nor repeats what the old one recorded.
//!
//! A notice never carries the post's text or author: only which room has news and a link.
//!
//! Web Push ([`super::push`]) is a second [`Channel`] with a queue of its own (same
//! [`Notice`]s, same rules: delay, quiet hours, digest), so each channel records its own
//! sent/failed state and a notice is sent once per channel across failovers.

use serde::{Deserialize, Serialize};

use super::audit::{AuditRecord, patient_of};
use super::error::{DomainResult, invalid};
use super::events::{EventKind, Raised};
use super::kernel::{Effects, Outcome};
use super::model::{AccountId, DisasterId, RoomId, RoomKind};
use super::view::{Change, HubView, ViewResult};

/// The "room" of a disaster's notice: no room has id 0 (ids are log indexes, the first entry
/// is Raft's own), so a member's disaster notice never meets a room's. Its `seq` is the
/// disaster's id. Sent at once, also in quiet hours: a disaster does not wait for the morning.
pub const DISASTER_ROOM: RoomId = RoomId(0);

/// Longest e-mail address (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Japan Standard Time, UTC+9 all year (no daylight saving): quiet hours are in it.
const JST_OFFSET_MS: u64 = 9 * HOUR_MS;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Retries of a failed send wait this long by default, doubling per attempt up to
/// [`RETRY_MAX_MS`].
pub const RETRY_FIRST_MS: u64 = 30_000;
pub const RETRY_MAX_MS: u64 = 3_600_000;

/// Hours (Japan time, 0..=23) during which nothing is sent; `start > end` wraps midnight
/// (22→7 is 22:00–06:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start_hour: u8,
    pub end_hour: u8,
}

/// What a member chose. Stored positionally: a new field is a new format version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotificationPrefs {
    /// Personal data: never logged.
    pub email: String,
    pub email_on: bool,
    pub quiet: Option<QuietHours>,
    /// One mail per digest period naming every room with news, instead of one per room.
    pub digest: bool,
}

impl NotificationPrefs {
    /// E-mail notices go out: turned on, to an address.
    pub fn sends_email(&self) -> bool {
        self.email_on && !self.email.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSettings {
    pub account: AccountId,
    pub prefs: NotificationPrefs,
}

/// News in `room` that `account` has not read: one at a time per (account, room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub account: AccountId,
    pub room: RoomId,
    /// The post that raised it: reading up to it drops the notice.
    pub seq: u64,
    /// When that post was applied (hub time): the delay counts from here.
    pub since_ms: u64,
    /// Failed sends so far.
    pub attempts: u32,
    /// Not before this (a failed send's backoff; 0: no retry pending).
    pub retry_at_ms: u64,
}

/// What the notifier did with some notices ([`record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    Sent,
    /// The send failed: try again at the given time.
    Failed {
        retry_at_ms: u64,
    },
    /// Nothing to send any more (the member read the room, left it, or turned e-mail off).
    Dropped,
}

/// One notice as the notifier names it: a record for a notice that has since been replaced by
/// a newer one (another `since_ms`) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRef {
    pub account: AccountId,
    pub room: RoomId,
    pub since_ms: u64,
}

impl Notice {
    pub fn reference(&self) -> NoticeRef {
        NoticeRef { account: self.account, room: self.room, since_ms: self.since_ms }
    }
}

/// How a notice reaches a member. Each channel has its own queue, so one channel's success
/// or failure never repeats or loses the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    /// Web Push to the member's subscribed browsers ([`super::push`]).
    Push,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Push];

    pub fn notice(self, view: &impl HubView, account: AccountId, room: RoomId) -> ViewResult<Option<Notice>> {
        match self {
            Channel::Email => view.notice(account, room),
            Channel::Push => view.push_notice(account, room),
        }
    }

    pub fn notices(self, view: &impl HubView) -> ViewResult<Vec<Notice>> {
        match self {
            Channel::Email => view.notices(),
            Channel::Push => view.push_notices(),
        }
    }

    fn put(self, notice: Notice) -> Change {
        match self {
            Channel::Email => Change::Notice(notice),
            Channel::Push => Change::PushNotice(notice),
        }
    }

    fn gone(self, account: AccountId, room: RoomId) -> Change {
        match self {
            Channel::Email => Change::NoticeGone { account, room },
            Channel::Push => Change::PushNoticeGone { account, room },
        }
    }

    /// Whether `account` wants notices on this channel now: e-mail turned on to an address;
    /// push: at least one subscribed browser (subscribing is turning it on).
    pub fn wanted_by(self, view: &impl HubView, account: AccountId) -> ViewResult<bool> {
        match self {
            Channel::Email => Ok(settings_of(view, account)?.sends_email()),
            Channel::Push => Ok(!view.push_subscriptions(account)?.is_empty()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Channel::Email => "e-mail",
            Channel::Push => "push",
        }
    }
}

/// Checks an e-mail address: short, one `@`, a local part and a dotted domain, no spaces,
/// control or mail-header characters. Not a full RFC 5322 parser; the relay has the last word.
pub fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else { return false };
    let plain = |c: char| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\\\"@".contains(c);
    address.chars().count() <= MAX_EMAIL_CHARS
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && local.chars().chain(domain.chars()).all(plain)
}

fn check(prefs: &NotificationPrefs) -> DomainResult<()> {
    if !prefs.email.is_empty() && !valid_email(&prefs.email) {
        return Err(invalid(format!("email must be an address of at most {MAX_EMAIL_CHARS} characters")));
    }
    if prefs.email_on && prefs.email.is_empty() {
        return Err(invalid("email notifications need an address"));
    }
    if let Some(q) = prefs.quiet
        && (q.start_hour > 23 || q.end_hour > 23 || q.start_hour == q.end_hour)
    {
        return Err(invalid("quiet hours are two different hours, 0..=23"));
    }
    Ok(())
}

/// `SetNotificationSettings`: the caller's own settings. Turning e-mail off drops her pending
/// notices at once.
pub fn set(view: &impl HubView, actor: AccountId, prefs: NotificationPrefs) -> DomainResult<Effects> {
    check(&prefs)?;
    let mut changes = Vec::new();
    if !prefs.email_on {
        for n in view.notices()?.into_iter().filter(|n| n.account == actor) {
            changes.push(Change::NoticeGone { account: n.account, room: n.room });
        }
    }
    changes.push(Change::NotificationSettings(NotificationSettings { account: actor, prefs }));
    Ok(Effects::new(Outcome::Done, changes))
}

/// The caller's settings (defaults: no address, e-mail off).
pub fn settings_of(view: &impl HubView, account: AccountId) -> ViewResult<NotificationPrefs> {
    Ok(view.notification_settings(account)?.map(|s| s.prefs).unwrap_or_default())
}

/// The notices the events of one decision raise or drop: a new post gives each other active
/// member who wants e-mail a notice (if she has none pending there); a read up to a notice's
/// post drops it, or, when others posted after what she read, starts it again from the newest
/// post (she was just there: the delay counts anew). Called by `settle`, after the decision's
/// own changes are applied.
pub fn enqueue(view: &impl HubView, now_ms: u64, events: &[Raised]) -> ViewResult<Vec<Change>> {
    let mut changes = Vec::new();
    for channel in Channel::ALL {
        for e in events {
            match e.kind {
                EventKind::Posted { seq } => changes.extend(raise(view, channel, now_ms, e.room, seq)?),
                EventKind::Disaster { id } => changes.extend(raise_disaster(view, channel, now_ms, id)?),
                EventKind::Read { account, seq }
                    if channel.notice(view, account, e.room)?.is_some_and(|n| seq >= n.seq) =>
                {
                    changes.push(after_read(view, channel, now_ms, account, e.room, seq)?);
                }
                _ => {}
            }
        }
    }
    Ok(changes)
}

/// What becomes of `account`'s notice for `room` once she read up to `seq`.
fn after_read(
    view: &impl HubView,
    channel: Channel,
    now_ms: u64,
    account: AccountId,
    room: RoomId,
    seq: u64,
) -> ViewResult<Change> {
    let newest = view.room(room)?.map_or(0, |r| r.last_seq);
    let by_other = newest > seq && view.post(room, newest)?.is_some_and(|p| p.author != account);
    Ok(if by_other {
        channel.put(Notice { account, room, seq: newest, since_ms: now_ms, attempts: 0, retry_at_ms: 0 })
    } else {
        channel.gone(account, room)
    })
}

fn raise(view: &impl HubView, channel: Channel, now_ms: u64, room: RoomId, seq: u64) -> ViewResult<Vec<Change>> {
    let Some(author) = view.post(room, seq)?.map(|p| p.author) else { return Ok(vec![]) };
    let mut changes = Vec::new();
    for m in view.members(room)? {
        if m.account == author || !m.is_active() || m.read_seq >= seq || !channel.wanted_by(view, m.account)? {
            continue;
        }
        if channel.notice(view, m.account, room)?.is_none() {
            let notice = Notice { account: m.account, room, seq, since_ms: now_ms, attempts: 0, retry_at_ms: 0 };
            changes.push(channel.put(notice));
        }
    }
    Ok(changes)
}

/// A declared disaster gives every concerned account that wants `channel` a notice
/// ([`crate::disaster::declare::concerned`]); ending it raises nothing (pending ones are dropped
/// by the notifier, [`still_unread`]).
fn raise_disaster(view: &impl HubView, channel: Channel, now_ms: u64, id: DisasterId) -> ViewResult<Vec<Change>> {
    let Some(disaster) = view.disasters()?.into_iter().find(|d| d.id == id && d.is_active()) else {
        return Ok(vec![]);
    };
    let mut changes = Vec::new();
    for account in crate::disaster::declare::concerned(view, &disaster)? {
        if channel.wanted_by(view, account)? {
            let notice =
                Notice { account, room: DISASTER_ROOM, seq: id.0, since_ms: now_ms, attempts: 0, retry_at_ms: 0 };
            changes.push(channel.put(notice));
        }
    }
    Ok(changes)
}

/// Applies the notifier's report on `notices` of the e-mail queue ([`record_on`]).
pub fn record(view: &impl HubView, notices: &[NoticeRef], delivery: Delivery) -> ViewResult<Vec<Change>> {
    record_on(view, Channel::Email, notices, delivery)
}

/// Applies the notifier's report on `notices` of `channel`'s queue. A notice that is gone or
/// was replaced since (another `since_ms`) is left alone: the report is about the one the
/// notifier read.
pub fn record_on(
    view: &impl HubView,
    channel: Channel,
    notices: &[NoticeRef],
    delivery: Delivery,
) -> ViewResult<Vec<Change>> {
    let mut changes = Vec::new();
    for r in notices {
        let Some(mut n) = channel.notice(view, r.account, r.room)?.filter(|n| n.since_ms == r.since_ms) else {
            continue;
        };
        changes.push(match delivery {
            Delivery::Sent | Delivery::Dropped => channel.gone(n.account, n.room),
            Delivery::Failed { retry_at_ms } => {
                n.attempts = n.attempts.saturating_add(1);
                n.retry_at_ms = retry_at_ms;
                channel.put(n)
            }
        });
    }
    Ok(changes)
}

/// The audit entries of a `Sent` e-mail report ([`sent_audit_on`]).
pub fn sent_audit(view: &impl HubView, at_ms: u64, node: u64, notices: &[NoticeRef]) -> ViewResult<Vec<AuditRecord>> {
    sent_audit_on(view, Channel::Email, (at_ms, node), notices)
}

/// The audit entries of a `Sent` report: a notice about a patient's room names the patient to
/// a service outside the hub (a mail relay, a browser's push service), so each one is
/// recorded (by the hub, through `node`) with its patient, room and recipient account. Only
/// notices still pending as reported count.
pub fn sent_audit_on(
    view: &impl HubView,
    channel: Channel,
    (at_ms, node): (u64, u64),
    notices: &[NoticeRef],
) -> ViewResult<Vec<AuditRecord>> {
    let mut records = Vec::new();
    for r in notices {
        if channel.notice(view, r.account, r.room)?.is_none_or(|n| n.since_ms != r.since_ms) {
            continue;
        }
        if let Some(patient) = patient_of(view, r.room)? {
            let what = format!(
                "{} notice sent to account {} (the room's name and link, no content)",
                channel.name(),
                r.account.0
            );
            records.push(AuditRecord {
                patient: Some(patient),
                room: Some(r.room),
                ..AuditRecord::by_hub(at_ms, node, what)
            });
        }
    }
    Ok(records)
}

/// The wait before retry number `attempts + 1` of a failed send: `first_ms`, doubling.
pub fn retry_delay_ms(first_ms: u64, attempts: u32) -> u64 {
    first_ms.saturating_mul(1u64 << attempts.min(20)).min(RETRY_MAX_MS)
}

/// The hour of the day in Japan at `at_ms`.
pub fn jst_hour(at_ms: u64) -> u8 {
    (((at_ms + JST_OFFSET_MS) % DAY_MS) / HOUR_MS) as u8
}

impl QuietHours {
    pub fn contains(&self, hour: u8) -> bool {
        if self.start_hour < self.end_hour {
            (self.start_hour..self.end_hour).contains(&hour)
        } else {
            hour >= self.start_hour || hour < self.end_hour
        }
    }

    /// `at_ms` if it is outside the quiet hours, else the moment they end.
    pub fn release(&self, at_ms: u64) -> u64 {
        if !self.contains(jst_hour(at_ms)) {
            return at_ms;
        }
        let hour_start = at_ms - at_ms % HOUR_MS;
        let hours_left = (u64::from(self.end_hour) + 24 - u64::from(jst_hour(at_ms))) % 24;
        hour_start + hours_left * HOUR_MS
    }
}

/// How long notices wait: the hub's delay, and the digest period for those who chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub delay_ms: u64,
    pub digest_ms: u64,
    /// The first retry's wait after a failed send ([`retry_delay_ms`]).
    pub retry_first_ms: u64,
}

/// When a notice may be sent under `prefs`: after the delay (the digest period for digest
/// readers) and any retry backoff, and never during quiet hours.
pub fn due_at(notice: &Notice, prefs: &NotificationPrefs, timing: Timing) -> u64 {
    if notice.room == DISASTER_ROOM {
        return notice.since_ms.max(notice.retry_at_ms);
    }
    let wait = if prefs.digest { timing.digest_ms } else { timing.delay_ms };
    let at = notice.since_ms.saturating_add(wait).max(notice.retry_at_ms);
    prefs.quiet.map_or(at, |q| q.release(at))
}

/// One mail to send: its recipient, text and the notices it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Personal data: never logged.
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Deterministic, so a resend after a crash is recognisable as the same message.
    pub message_id: String,
    pub covers: Vec<NoticeRef>,
    /// Failed sends so far (the most of the notices it covers): the next backoff step.
    pub attempts: u32,
}

/// What the notifier should do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub mails: Vec<Mail>,
    /// Notices with nothing left to send.
    pub drop: Vec<NoticeRef>,
}

/// Which mails are due at `now_ms`. `room_url` gives a room's link. A digest reader gets one
/// mail for all her pending notices once the oldest is due; others one mail per due notice.
pub fn plan(view: &impl HubView, now_ms: u64, timing: Timing, room_url: &dyn Fn(RoomId) -> String) -> ViewResult<Plan> {
    let due = due_batches(view, Channel::Email, now_ms, timing)?;
    let mut plan = Plan { mails: Vec::new(), drop: due.drop };
    for (prefs, batch) in due.batches {
        plan.mails.push(compose(view, &prefs.email, &batch, room_url)?);
    }
    Ok(plan)
}

/// What is due on one channel: batches of one account's notices to send (with her settings),
/// and notices with nothing left to send.
#[derive(Debug, Clone, Default)]
pub struct Due {
    pub batches: Vec<(NotificationPrefs, Vec<Notice>)>,
    pub drop: Vec<NoticeRef>,
}

/// The batches of `channel`'s queue due at `now_ms`: a digest reader's pending notices all in
/// one batch once the oldest is due, else one batch per due notice.
pub fn due_batches(view: &impl HubView, channel: Channel, now_ms: u64, timing: Timing) -> ViewResult<Due> {
    let mut due = Due::default();
    let mut notices = channel.notices(view)?;
    notices.sort_by_key(|n| (n.account, n.since_ms, n.room));
    for group in notices.chunk_by(|a, b| a.account == b.account) {
        let prefs = settings_of(view, group[0].account)?;
        let wanted = channel.wanted_by(view, group[0].account)?;
        let mut live = Vec::new();
        for n in group {
            if wanted && still_unread(view, n)? {
                live.push(*n);
            } else {
                due.drop.push(n.reference());
            }
        }
        due.batches.extend(batches_due(live, &prefs, now_ms, timing).into_iter().map(|b| (prefs.clone(), b)));
    }
    Ok(due)
}

/// One account's live notices due at `now_ms`, in batches: a disaster's notice alone, at once
/// (never folded into a digest of rooms); a digest reader's room notices all together once one
/// is due; anyone else's one by one.
fn batches_due(live: Vec<Notice>, prefs: &NotificationPrefs, now_ms: u64, timing: Timing) -> Vec<Vec<Notice>> {
    let is_due = |n: &Notice| due_at(n, prefs, timing) <= now_ms;
    let (disasters, rooms): (Vec<Notice>, Vec<Notice>) = live.into_iter().partition(|n| n.room == DISASTER_ROOM);
    let mut batches: Vec<Vec<Notice>> = disasters.into_iter().filter(is_due).map(|n| vec![n]).collect();
    let ready: Vec<Notice> = rooms.iter().copied().filter(is_due).collect();
    match (prefs.digest, ready.is_empty()) {
        (_, true) => {}
        (true, false) => batches.push(rooms),
        (false, false) => batches.extend(ready.into_iter().map(|n| vec![n])),
    }
    batches
}

/// Whether the notice still has something to say: its account is active (a stopped account
/// gets nothing), still a member and has not read the post that raised it.
fn still_unread(view: &impl HubView, n: &Notice) -> ViewResult<bool> {
    let active = view.account(n.account)?.is_some_and(|a| a.is_active());
    if n.room == DISASTER_ROOM {
        let in_force = view.disasters()?.iter().any(|d| d.id.0 == n.seq && d.is_active());
        return Ok(active && in_force);
    }
    Ok(active && view.member(n.room, n.account)?.is_some_and(|m| m.is_active() && m.read_seq < n.seq))
}

/// The mail for `notices` (one account's): which rooms have news and their links, never a
/// post's text or author.
pub fn compose(
    view: &impl HubView,
    to: &str,
    notices: &[Notice],
    room_url: &dyn Fn(RoomId) -> String,
) -> ViewResult<Mail> {
    let mut body = String::new();
    for n in notices {
        body.push_str(&format!("{}\n{}\n\n", headline_of(view, n)?, room_url(n.room)));
    }
    body.push_str("内容はKizunaでご確認ください。このメールには投稿の内容は含まれません。\n");
    let subject = match notices {
        // A group's name may hold a line break: never in a header.
        [one] => format!("[Kizuna] {}", headline_of(view, one)?.replace(['\r', '\n'], " ")),
        _ => format!("[Kizuna] {}件の部屋に新しい投稿があります", notices.len()),
    };
    let first = notices.first().map(Notice::reference);
    let message_id = first.map_or_else(String::new, |r| {
        format!("<notice.{}.{}.{}.{}@kizuna>", r.account.0, r.room.0, r.since_ms, notices.len())
    });
    let covers = notices.iter().map(Notice::reference).collect();
    let attempts = notices.iter().map(|n| n.attempts).max().unwrap_or(0);
    Ok(Mail { to: to.to_owned(), subject, body, message_id, covers, attempts })
}

/// What a notice says: a disaster's declaration, or which room has news ([`headline`]).
pub fn headline_of(view: &impl HubView, n: &Notice) -> ViewResult<String> {
    if n.room != DISASTER_ROOM {
        return headline(view, n.room);
    }
    let disaster = view.disasters()?.into_iter().find(|d| d.id.0 == n.seq);
    Ok(disaster.map_or_else(
        || "災害が宣言されました".to_owned(),
        |d| format!("災害「{}」が宣言されました（{}）。安否確認をお願いします", d.name, d.municipalities.join("・")),
    ))
}

/// 「山田 花子 さんの部屋に新しい投稿があります」 and the like: which room, never what was said.
pub fn headline(view: &impl HubView, room: RoomId) -> ViewResult<String> {
    let patient_name = |id| -> ViewResult<String> { Ok(view.patient(id)?.map(|p| p.name).unwrap_or_default()) };
    let kind = view.room(room)?.map(|r| r.kind);
    Ok(match kind {
        Some(RoomKind::PatientTimeline { patient }) => {
            format!("{} さんの部屋に新しい投稿があります", patient_name(patient)?)
        }
        Some(RoomKind::SubRoom { patient, .. }) => {
            format!("{} さんの小部屋に新しい投稿があります", patient_name(patient)?)
        }
        Some(RoomKind::Group { name }) => format!("グループ「{name}」に新しい投稿があります"),
        Some(RoomKind::Connection { .. }) => "つながりの部屋に新しい投稿があります".to_owned(),
        Some(RoomKind::Mirror { .. }) | None => "参加している部屋に新しい投稿があります".to_owned(),
    })
}
