//! Web Push notices: the second channel of [`super::notify`].
//!
//! A member subscribes each browser she wants notices on ([`add`]): the browser's push
//! service endpoint and its keys (RFC 8291) are replicated state, at most
//! [`MAX_SUBSCRIPTIONS`] per account. Subscribing is turning push on: an account without a
//! subscription gets no push notice, so there is no separate account-wide switch (and no
//! change to the stored [`super::notify::NotificationPrefs`]).
//!
//! Push notices have their own queue (same [`Notice`]s, same delay, quiet hours and digest as
//! e-mail), planned by [`plan`] and recorded by [`record`] with the push service's answer: a
//! notice is sent once the push service of at least one of her browsers accepted it; an
//! endpoint that answered "gone" (404/410) is removed in the same record.
//!
//! The message is the same as a mail's: which room has news and a link, never a post's text
//! or author.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{DomainResult, invalid};
use super::kernel::{Ctx, Effects, Outcome};
use super::model::{AccountId, RoomId};
use super::notify::{self, Channel, Delivery, Notice, NoticeRef, Timing};
use super::view::{Change, HubView, ViewResult};

/// Browsers per account; a new one beyond this replaces the one subscribed longest ago (a
/// browser that was reset never unsubscribes its old endpoint).
pub const MAX_SUBSCRIPTIONS: usize = 10;
/// Longest endpoint URL (push services' are a few hundred characters).
pub const MAX_ENDPOINT_CHARS: usize = 1024;
/// base64url (unpadded) of a 65-byte uncompressed P-256 point, and of the 16-byte auth secret.
const P256DH_CHARS: usize = 87;
const AUTH_CHARS: usize = 22;

/// One browser's push subscription (the `PushSubscription` a browser's `pushManager` gives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    pub account: AccountId,
    /// The push service URL to POST to. Personal data of sorts (it identifies a browser):
    /// never logged.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's authentication secret, base64url.
    pub auth: String,
    /// When it was added (hub time): the oldest goes first beyond [`MAX_SUBSCRIPTIONS`].
    pub added_ms: u64,
}

/// The key of a subscription within its account: the SHA-256 of its endpoint (endpoints are
/// long; the hash has a fixed width, so one account's rows never mix with another's).
pub fn endpoint_hash(endpoint: &str) -> [u8; 32] {
    Sha256::digest(endpoint.as_bytes()).into()
}

/// An endpoint the hub may POST to: `https://` and a host, or plain `http://` to the loopback
/// address only (a push relay on the same machine, and tests). At most
/// [`MAX_ENDPOINT_CHARS`], no spaces or control characters.
pub fn valid_endpoint(endpoint: &str) -> bool {
    let clean = endpoint.len() <= MAX_ENDPOINT_CHARS && !endpoint.chars().any(|c| c.is_whitespace() || c.is_control());
    let host_of = |rest: &str| rest.split(['/', '?', '#']).next().unwrap_or_default().to_owned();
    let ok_scheme = if let Some(rest) = endpoint.strip_prefix("https://") {
        let host = host_of(rest);
        !host.is_empty() && !host.contains('@')
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        is_loopback(&host_of(rest))
    } else {
        false
    };
    clean && ok_scheme
}

/// `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let without_port = match host.strip_prefix("[::1]") {
        Some(rest) => return rest.is_empty() || port(rest),
        None => host,
    };
    match without_port.split_once(':') {
        Some((h, rest)) => h == "127.0.0.1" && port(&format!(":{rest}")),
        None => without_port == "127.0.0.1",
    }
}

fn port(rest: &str) -> bool {
    rest.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

/// base64url characters of exactly `len` (a trailing `=` padding is tolerated).
fn base64url(value: &str, len: usize) -> bool {
    let bare = value.trim_end_matches('=');
    bare.len() == len && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `AddPushSubscription`: the caller subscribes one more browser (or renews the keys of one
/// she had: same endpoint).
pub fn add(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (endpoint, p256dh, auth): (String, String, String),
) -> DomainResult<Effects> {
    if !valid_endpoint(&endpoint) {
        return Err(invalid(format!(
            "endpoint must be an https URL (or http to 127.0.0.1) of at most {MAX_ENDPOINT_CHARS} characters"
        )));
    }
    // An uncompressed point starts with 0x04, which is "B" in base64url.
    if !base64url(&p256dh, P256DH_CHARS) || !p256dh.starts_with('B') {
        return Err(invalid("p256dh must be an uncompressed P-256 public key, base64url"));
    }
    if !base64url(&auth, AUTH_CHARS) {
        return Err(invalid("auth must be a 16-byte secret, base64url"));
    }
    let mut others: Vec<PushSubscription> =
        view.push_subscriptions(actor)?.into_iter().filter(|s| s.endpoint != endpoint).collect();
    others.sort_by_key(|s| s.added_ms);
    let mut changes = Vec::new();
    let excess = (others.len() + 1).saturating_sub(MAX_SUBSCRIPTIONS);
    for old in others.into_iter().take(excess) {
        changes.push(Change::PushSubscriptionGone { account: actor, endpoint: old.endpoint });
    }
    let subscription = PushSubscription { account: actor, endpoint, p256dh, auth, added_ms: ctx.now_ms };
    changes.push(Change::PushSubscription(subscription));
    Ok(Effects::new(Outcome::Done, changes))
}

/// `RemovePushSubscription`: the caller's browser unsubscribed. Removing one that is not
/// there is done already (a retry, or the hub removed it when its push service said gone).
pub fn remove(view: &impl HubView, actor: AccountId, endpoint: String) -> DomainResult<Effects> {
    let mut changes = Vec::new();
    if view.push_subscriptions(actor)?.iter().any(|s| s.endpoint == endpoint) {
        changes.push(Change::PushSubscriptionGone { account: actor, endpoint });
    }
    Ok(Effects::new(Outcome::Done, changes))
}

/// What a browser shows: the JSON payload of a push message (encrypted for the browser).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushMessage {
    pub title: String,
    pub body: String,
    /// The room's link (the first room's, for a digest).
    pub url: String,
}

/// One push to send: to every subscribed browser of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub account: AccountId,
    pub subscriptions: Vec<PushSubscription>,
    pub message: PushMessage,
    pub covers: Vec<NoticeRef>,
    /// Failed sends so far (the most of the notices it covers): the next backoff step.
    pub attempts: u32,
}

/// What the notifier should push now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushPlan {
    pub pushes: Vec<Push>,
    /// Notices with nothing left to send (read, left, no browser subscribed any more).
    pub drop: Vec<NoticeRef>,
}

/// Which pushes are due at `now_ms`, by the same rules as mails ([`notify::due_batches`]).
pub fn plan(
    view: &impl HubView,
    now_ms: u64,
    timing: Timing,
    room_url: &dyn Fn(RoomId) -> String,
) -> ViewResult<PushPlan> {
    let due = notify::due_batches(view, Channel::Push, now_ms, timing)?;
    let mut plan = PushPlan { pushes: Vec::new(), drop: due.drop };
    for (_, batch) in due.batches {
        let Some(first) = batch.first() else { continue };
        let subscriptions = view.push_subscriptions(first.account)?;
        plan.pushes.push(Push {
            account: first.account,
            subscriptions,
            message: compose(view, &batch, room_url)?,
            covers: batch.iter().map(Notice::reference).collect(),
            attempts: batch.iter().map(|n| n.attempts).max().unwrap_or(0),
        });
    }
    Ok(plan)
}

/// The message for `notices` (one account's): the room's headline, or how many rooms have
/// news for a digest; never a post's text or author.
pub fn compose(
    view: &impl HubView,
    notices: &[Notice],
    room_url: &dyn Fn(RoomId) -> String,
) -> ViewResult<PushMessage> {
    let body = match notices {
        [one] => notify::headline_of(view, one)?,
        _ => format!("{}件の部屋に新しい投稿があります", notices.len()),
    };
    let url = notices.first().map(|n| room_url(n.room)).unwrap_or_default();
    Ok(PushMessage { title: "Kizuna".to_owned(), body, url })
}

/// Applies the notifier's report on a push of `account`'s `notices`: the delivery as for
/// mails ([`notify::record_on`]), and the removal of the subscriptions whose push service
/// answered that they are gone.
pub fn record(
    view: &impl HubView,
    account: AccountId,
    notices: &[NoticeRef],
    delivery: Delivery,
    gone: &[String],
) -> ViewResult<Vec<Change>> {
    let mut changes = notify::record_on(view, Channel::Push, notices, delivery)?;
    let held = view.push_subscriptions(account)?;
    for endpoint in gone {
        if held.iter().any(|s| &s.endpoint == endpoint) {
            changes.push(Change::PushSubscriptionGone { account, endpoint: endpoint.clone() });
        }
    }
    Ok(changes)
}
