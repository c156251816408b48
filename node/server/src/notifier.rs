//! The leader's notifier: sends the due e-mail notices of the replicated queue (`notify` in
//! the domain) over SMTP, and the due push notices of the push queue (`push` in the domain)
//! to the members' browsers' push services (`crate::push`), and records each result through
//! Raft. Each channel has its own queue and records, so one never repeats the other.
//!
//! Every node runs the loop; it acts only while its node leads, after a linearizable barrier
//! (so it plans from everything committed, including the previous leader's records). A notice
//! enters the queue in the same apply as its post, so a failover never loses one; a notice
//! whose `Sent` record committed is gone from the queue, so no leader sends it again.
//!
//! **At-least-once window.** Between the relay accepting a mail and the `Sent` record
//! committing, a crash or a lost leadership leaves the notice queued, and the next leader
//! sends it again. That window is one SMTP transaction plus the `Sent` record's commit, which
//! is milliseconds when the hub is healthy but, when that commit fails (leadership lost, no
//! quorum), lasts until a leader sends it again; it cannot be closed without the relay taking
//! part in our commit. To make a repeat
//! recognisable, each mail's `Message-ID` is derived from the notice (account, room, the time
//! of the post that raised it), not random: the resent mail is the same message, which mail
//! stores and clients that deduplicate by `Message-ID` show once. A leader deposed without
//! knowing it yet cannot start a round (its barrier needs a quorum); one deposed during a round
//! stops before its next mail (it checks its term before each) and records only through its
//! own log (`propose_here`), never through the new leader, which plans the same notices itself.
//! A relay's permanent refusal (5xx) drops the notice at once; other failures are retried.
//!
//! A failed send is recorded as `Failed` with the next try's time (`retry_seconds`, default 30 s,
//! doubling to 1 h); after
//! [`MAX_ATTEMPTS`] the notice is dropped (logged). The address is personal data: logs name the
//! account id, never the address, and never the SMTP server's reply text (it may quote it).
//!
//! **Push.** The same loop, rules and window apply: a push is one POST per subscribed browser
//! of the member; the notice counts as sent when at least one push service accepted it (a
//! browser whose service failed while another's accepted misses that one rather than the
//! others getting it twice); when none accepted and one may later, it is retried with the same
//! backoff. A service answering 404/410 (the subscription is gone) has that subscription
//! removed in the same replicated record. A push cannot carry a deterministic id the way a
//! mail's `Message-ID` does, but each push carries the room's link as its `tag` in the
//! payload, so a browser shows a repeat in place of the first one.

use std::sync::Arc;
use std::time::Duration;

use kizuna_domain::model::AccountId;
use kizuna_domain::model::RoomId;
use kizuna_domain::notify::{self, Delivery, Mail, NoticeRef, Timing};
use kizuna_domain::push::{self as domain_push, Push};
use kizuna_domain::{CommandResult, Envelope, HubView, LogCommand};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use openraft::ServerState;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{HubConfig, NotificationsSection, SmtpTls};
use crate::node::{Node, now_ms};
use crate::push::{Answer, Pusher};

/// How often the leader looks for due notices.
const TICK: Duration = Duration::from_millis(250);
/// How long one SMTP transaction may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A notice that failed this many times is dropped.
pub const MAX_ATTEMPTS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("[notifications] {0}")]
    Config(String),
    #[error("the mail could not be built: {0}")]
    Build(String),
    /// The relay refused or could not be reached (no reply text: it may quote the address).
    #[error("SMTP failed (permanent: {permanent}, code: {code})")]
    Smtp { permanent: bool, code: String },
    #[error("recording the result: {0}")]
    Record(String),
}

/// The SMTP side: a transport to the hub's relay and the sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer of `cfg`, or None when it names no SMTP relay (no e-mail notices).
    pub fn of(cfg: &NotificationsSection) -> Result<Option<Self>, NotifierError> {
        let Some(host) = &cfg.smtp_host else { return Ok(None) };
        let from = cfg.from.as_deref().ok_or_else(|| NotifierError::Config("smtp_host needs from".into()))?;
        Self::new(cfg, host, from).map(Some)
    }

    fn new(cfg: &NotificationsSection, host: &str, from: &str) -> Result<Self, NotifierError> {
        let from: Mailbox = from.parse().map_err(|e| NotifierError::Config(format!("from: {e}")))?;
        let relay = |e: lettre::transport::smtp::Error| NotifierError::Config(format!("smtp_host: {e}"));
        let (builder, default_port) = match cfg.tls {
            SmtpTls::None => (AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host), 25),
            SmtpTls::Starttls => (AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(relay)?, 587),
            SmtpTls::Tls => (AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(relay)?, 465),
        };
        let mut builder = builder.port(cfg.smtp_port.unwrap_or(default_port)).timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = &cfg.username {
            builder = builder.credentials(Credentials::new(user.clone(), password(cfg)?));
        }
        Ok(Self { transport: builder.build(), from })
    }

    /// Sends one notice mail (plain text, UTF-8).
    pub async fn send(&self, mail: &Mail) -> Result<(), NotifierError> {
        let to: Mailbox = mail.to.parse().map_err(|_| NotifierError::Build("the address does not parse".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(mail.message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| NotifierError::Build(e.to_string()))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| NotifierError::Smtp {
            permanent: e.is_permanent(),
            code: e.status().map_or_else(|| "none".to_owned(), |c| c.to_string()),
        })
    }
}

/// The SMTP password: the first line of `password_file` (required with a username).
fn password(cfg: &NotificationsSection) -> Result<String, NotifierError> {
    let path =
        cfg.password_file.as_ref().ok_or_else(|| NotifierError::Config("username needs password_file".into()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| NotifierError::Config(format!("password_file {}: {e}", path.display())))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// What a running notifier needs: the relay and the pusher (either may be absent), the delays
/// and the rooms' link base.
pub struct Notifier {
    mailer: Option<Mailer>,
    pusher: Option<Arc<Pusher>>,
    timing: Timing,
    /// `<public URL of this node>`: links are `<base>/#/room/<id>` (the browser client's route).
    base_url: String,
}

impl Notifier {
    /// The hub's notifier, or None (logged once) when it sends neither mail nor push.
    pub fn of_hub(
        hub: &HubConfig,
        me: u64,
        tls: bool,
        pusher: Option<Arc<Pusher>>,
    ) -> Result<Option<Self>, NotifierError> {
        let mailer = match &hub.notifications {
            Some(cfg) => Mailer::of(cfg)?,
            None => None,
        };
        let (Some(cfg), true) = (&hub.notifications, mailer.is_some() || pusher.is_some()) else {
            info!("no SMTP relay and no VAPID key in [notifications]: this hub sends no notices");
            return Ok(None);
        };
        let endpoints = hub.public_endpoints(tls);
        let base_url = endpoints
            .iter()
            .find(|e| e.id == me)
            .or(endpoints.first())
            .map(|e| e.url.clone())
            .ok_or_else(|| NotifierError::Config("no node has a public URL to link to".into()))?;
        let timing = Timing {
            delay_ms: cfg.delay_seconds.saturating_mul(1000),
            digest_ms: cfg.digest_minutes.saturating_mul(60_000),
            retry_first_ms: cfg.retry_seconds.saturating_mul(1000),
        };
        if mailer.is_none() {
            info!("no smtp_host in [notifications]: this hub sends no e-mail notices");
        }
        if pusher.is_none() {
            info!("no vapid_private_key_file in [notifications]: this hub sends no push notices");
        }
        Ok(Some(Self { mailer, pusher, timing, base_url }))
    }

    /// A room's link; a disaster's notice links to the disaster board.
    fn room_url(&self, room: RoomId) -> String {
        if room == kizuna_domain::notify::DISASTER_ROOM {
            return format!("{}/#/disaster", self.base_url);
        }
        format!("{}/#/room/{}", self.base_url, room.0)
    }
}

/// The loop: every [`TICK`], while this node leads, sends what is due.
pub async fn run(node: Arc<Node>, notifier: Option<Notifier>, mut stopped: watch::Receiver<bool>) {
    let Some(notifier) = notifier else { return };
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let Some(term) = leading_term(&node) else { continue };
        if let Some(mailer) = &notifier.mailer
            && let Err(e) = round(&node, &notifier, mailer, term).await
        {
            warn!("e-mail notices: {e}");
        }
        if let Some(pusher) = &notifier.pusher
            && let Err(e) = push_round(&node, &notifier, pusher, term).await
        {
            warn!("push notices: {e}");
        }
    }
}

/// One pass: plan from the committed state, drop what is stale, send what is due.
async fn round(node: &Node, notifier: &Notifier, mailer: &Mailer, term: u64) -> Result<(), NotifierError> {
    // Nothing queued here: nothing to send (a notice applied after this read is seen next
    // tick). Only a non-empty queue costs the barrier's round trip to a quorum.
    if node.state.hub().notices().map_err(|e| NotifierError::Record(e.to_string()))?.is_empty() {
        return Ok(());
    }
    node.linearizable_barrier().await.map_err(|e| NotifierError::Record(e.to_string()))?;
    let plan = {
        let hub = node.state.hub();
        let plan = notify::plan(&hub, now_ms(), notifier.timing, &|room| notifier.room_url(room));
        match hub.fault() {
            Some(fault) => return Err(NotifierError::Record(fault.to_string())),
            None => plan.map_err(|e| NotifierError::Record(e.to_string()))?,
        }
    };
    if !plan.drop.is_empty() {
        record(node, &plan.drop, Delivery::Dropped, "dropped").await?;
    }
    for mail in plan.mails {
        // A node deposed mid-round stops here: the new leader plans the same notices.
        if leading_term(node) != Some(term) {
            return Ok(());
        }
        let account = mail.covers.first().map_or(0, |r| r.account.0);
        let (delivery, tag) = match mailer.send(&mail).await {
            Ok(()) => {
                info!(account, rooms = mail.covers.len(), "e-mail notice sent");
                (Delivery::Sent, "sent".to_owned())
            }
            // A mail that cannot even be built will not be built on a retry either, and a
            // relay's permanent refusal (5xx: no such mailbox...) stays one.
            Err(e @ (NotifierError::Build(_) | NotifierError::Smtp { permanent: true, .. })) => {
                warn!(account, "e-mail notice dropped: {e}");
                (Delivery::Dropped, "dropped".to_owned())
            }
            Err(e) if mail.attempts + 1 >= MAX_ATTEMPTS => {
                warn!(account, "e-mail notice dropped after {MAX_ATTEMPTS} failures: {e}");
                (Delivery::Dropped, "dropped".to_owned())
            }
            Err(e) => {
                warn!(account, attempt = mail.attempts + 1, "e-mail notice failed, will retry: {e}");
                let retry_at_ms =
                    now_ms().saturating_add(notify::retry_delay_ms(notifier.timing.retry_first_ms, mail.attempts));
                (Delivery::Failed { retry_at_ms }, format!("failed-{}", mail.attempts))
            }
        };
        record(node, &mail.covers, delivery, &tag).await?;
    }
    Ok(())
}

/// The term this node leads in, if it leads.
fn leading_term(node: &Node) -> Option<u64> {
    let m = node.metrics();
    (m.state == ServerState::Leader).then_some(m.current_term)
}

/// Records `delivery` for `notices` through Raft. The key names the notices and the attempt,
/// so a retried proposal of the same report applies once.
async fn record(node: &Node, notices: &[NoticeRef], delivery: Delivery, tag: &str) -> Result<(), NotifierError> {
    let Some(first) = notices.first() else { return Ok(()) };
    let envelope = Envelope {
        idempotency_key: format!(
            "notice/{}/{}/{}/{}/{tag}",
            first.account.0,
            first.room.0,
            first.since_ms,
            notices.len()
        ),
        proposed_at_ms: 0,
        command: LogCommand::NoticeDelivery { notices: notices.to_vec(), delivery, origin_node: node.id },
    };
    // Here only: a deposed node's report fails rather than reaching the new leader, which
    // decides about the same notices itself.
    let applied = node.propose_here(envelope).await.map_err(|e| NotifierError::Record(e.to_string()))?;
    match applied.result {
        CommandResult::Refused(e) => Err(NotifierError::Record(e.to_string())),
        _ => Ok(()),
    }
}

/// One pass over the push queue, as [`round`] over the mail queue.
async fn push_round(node: &Node, notifier: &Notifier, pusher: &Pusher, term: u64) -> Result<(), NotifierError> {
    if node.state.hub().push_notices().map_err(|e| NotifierError::Record(e.to_string()))?.is_empty() {
        return Ok(());
    }
    node.linearizable_barrier().await.map_err(|e| NotifierError::Record(e.to_string()))?;
    let plan = {
        let hub = node.state.hub();
        let plan = domain_push::plan(&hub, now_ms(), notifier.timing, &|room| notifier.room_url(room));
        match hub.fault() {
            Some(fault) => return Err(NotifierError::Record(fault.to_string())),
            None => plan.map_err(|e| NotifierError::Record(e.to_string()))?,
        }
    };
    for dropped in plan.drop.chunk_by(|a, b| a.account == b.account) {
        record_push(node, dropped[0].account, dropped, (Delivery::Dropped, &[]), "dropped").await?;
    }
    for push in plan.pushes {
        // A node deposed mid-round stops here: the new leader plans the same notices.
        if leading_term(node) != Some(term) {
            return Ok(());
        }
        let (delivery, gone, tag) = send_push(pusher, &push, notifier.timing).await;
        record_push(node, push.account, &push.covers, (delivery, &gone), &tag).await?;
    }
    Ok(())
}

/// Pushes to every browser of the member: sent if any accepted; else retried if any may later
/// accept; else dropped. Also which endpoints are gone.
async fn send_push(pusher: &Pusher, push: &Push, timing: Timing) -> (Delivery, Vec<String>, String) {
    let account = push.account.0;
    let payload = payload_of(push);
    let (mut accepted, mut retry, mut gone) = (0, 0, Vec::new());
    for sub in &push.subscriptions {
        match pusher.send(sub, &payload).await {
            Answer::Accepted => accepted += 1,
            Answer::Gone => gone.push(sub.endpoint.clone()),
            Answer::Refused(reason) => warn!(account, "a push service refused a push notice: {reason}"),
            Answer::Retry(reason) => {
                warn!(account, "a push notice failed, may retry: {reason}");
                retry += 1;
            }
        }
    }
    if !gone.is_empty() {
        info!(account, browsers = gone.len(), "push subscriptions gone: removing them");
    }
    if accepted > 0 {
        info!(account, rooms = push.covers.len(), browsers = accepted, "push notice sent");
        return (Delivery::Sent, gone, "sent".to_owned());
    }
    if retry == 0 || push.attempts + 1 >= MAX_ATTEMPTS {
        warn!(account, "push notice dropped (no browser accepted it)");
        return (Delivery::Dropped, gone, "dropped".to_owned());
    }
    let retry_at_ms = now_ms().saturating_add(notify::retry_delay_ms(timing.retry_first_ms, push.attempts));
    (Delivery::Failed { retry_at_ms }, gone, format!("failed-{}", push.attempts))
}

/// The JSON the service worker shows: title, body, link, and a tag (the link) so that a
/// repeated push replaces the first on the screen.
fn payload_of(push: &Push) -> Vec<u8> {
    let m = &push.message;
    serde_json::json!({ "title": m.title, "body": m.body, "url": m.url, "tag": m.url }).to_string().into_bytes()
}

/// Records a push report through Raft (here only, as [`record`]).
async fn record_push(
    node: &Node,
    account: AccountId,
    notices: &[NoticeRef],
    (delivery, gone): (Delivery, &[String]),
    tag: &str,
) -> Result<(), NotifierError> {
    let Some(first) = notices.first() else { return Ok(()) };
    let envelope = Envelope {
        idempotency_key: format!("push/{}/{}/{}/{}/{tag}", account.0, first.room.0, first.since_ms, notices.len()),
        proposed_at_ms: 0,
        command: LogCommand::PushDelivery {
            account,
            notices: notices.to_vec(),
            delivery,
            gone: gone.to_vec(),
            origin_node: node.id,
        },
    };
    let applied = node.propose_here(envelope).await.map_err(|e| NotifierError::Record(e.to_string()))?;
    match applied.result {
        CommandResult::Refused(e) => Err(NotifierError::Record(e.to_string())),
        _ => Ok(()),
    }
}
