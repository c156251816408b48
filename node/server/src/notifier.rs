//! The leader's notifier: sends the due e-mail notices of the replicated queue (`notify` in
//! the domain) over SMTP and records each result through Raft.
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

use std::sync::Arc;
use std::time::Duration;

use kizuna_domain::model::RoomId;
use kizuna_domain::notify::{self, Delivery, Mail, NoticeRef, Timing};
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
    pub fn new(cfg: &NotificationsSection) -> Result<Self, NotifierError> {
        let from: Mailbox = cfg.from.parse().map_err(|e| NotifierError::Config(format!("from: {e}")))?;
        let relay = |e: lettre::transport::smtp::Error| NotifierError::Config(format!("smtp_host: {e}"));
        let (builder, default_port) = match cfg.tls {
            SmtpTls::None => (AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host), 25),
            SmtpTls::Starttls => {
                (AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host).map_err(relay)?, 587)
            }
            SmtpTls::Tls => (AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host).map_err(relay)?, 465),
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

/// What a running notifier needs: the relay, the delays and the rooms' link base.
pub struct Notifier {
    mailer: Mailer,
    timing: Timing,
    /// `<public URL of this node>`: links are `<base>/#/room/<id>` (the browser client's route).
    base_url: String,
}

impl Notifier {
    /// The hub's notifier, or None (logged once) when `[notifications]` is absent.
    pub fn of_hub(hub: &HubConfig, me: u64, tls: bool) -> Result<Option<Self>, NotifierError> {
        let Some(cfg) = &hub.notifications else {
            info!("no [notifications] section: this hub sends no e-mail notices");
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
        Ok(Some(Self { mailer: Mailer::new(cfg)?, timing, base_url }))
    }

    fn room_url(&self, room: RoomId) -> String {
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
        if let Err(e) = round(&node, &notifier, term).await {
            warn!("e-mail notices: {e}");
        }
    }
}

/// One pass: plan from the committed state, drop what is stale, send what is due.
async fn round(node: &Node, notifier: &Notifier, term: u64) -> Result<(), NotifierError> {
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
        let (delivery, tag) = match notifier.mailer.send(&mail).await {
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
