//! `kizuna bench`'s live subscribers: as many as asked, spread over the nodes, each recording
//! the fan-out latency of every post it receives (from the post's acknowledgement at its
//! client to its event at the subscriber).
//!
//! A hub holds at most [`STREAMS_PER_ACCOUNT`] live streams of one account on a node, so
//! thousands of subscribers need hundreds of accounts: the signed-in account subscribes first
//! (a member of every bench room, it receives every post), then staff the bench registers in
//! the signed-in account's facility (it must be that facility's admin, as in the demo's
//! `vn.suzuki`), each a member of one bench room — as on a real hub, where a post reaches its
//! room's members and every other stream on the node only filters it out.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::{
    ApproveAccountRequest, GetMeRequest, IssueInvitationRequest, LoginRequest, RegisterRequest,
};
use kizuna_proto::common::Profession;
use kizuna_proto::events::event_service_client::EventServiceClient;
use kizuna_proto::events::{SubscribeRequest, event};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{InviteMemberRequest, Role};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::super::Target;
use super::super::attachments::while_unavailable;
use super::super::user::authed;
use super::Acknowledged;

/// The hub's limit of one account's live streams on one node (`LIVE_STREAMS_PER_ACCOUNT`).
const STREAMS_PER_ACCOUNT: usize = 16;
/// Streams per connection: under HTTP/2's usual limit of concurrent streams (hyper's 200).
const STREAMS_PER_CONNECTION: usize = 100;
/// Accounts registered, and streams opened, at once.
const AT_ONCE: usize = 32;

/// The running subscribers; [`Subscribers::finish`] stops them and merges their latencies.
pub(super) struct Subscribers {
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>>,
    stop: watch::Sender<bool>,
}

impl Subscribers {
    /// `n` subscribers over the nodes of `target`, the first ones as `token`'s account, the
    /// rest as staff registered for the run and put into `rooms` (one room each).
    pub(super) async fn start(
        target: &Target,
        (token, rooms): (&str, &[u64]),
        n: usize,
        acked: &Acknowledged,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        if n == 0 {
            return Ok(Self { tasks: Vec::new(), stop });
        }
        let nodes = target.endpoints.len();
        let accounts = n.div_ceil(nodes).div_ceil(STREAMS_PER_ACCOUNT);
        let mut tokens = vec![token.to_owned()];
        tokens.extend(register_staff(target, (token, rooms), accounts - 1).await?);
        let connections = connect(target, n.div_ceil(nodes)).await?;
        let streams = futures::stream::iter(0..n)
            .map(|s| {
                // Subscriber s: node s mod nodes; its place there picks its connection and account.
                let (node, place) = (s % nodes, s / nodes);
                let channel = connections[node][place / STREAMS_PER_CONNECTION].clone();
                subscribe(channel, tokens[place / STREAMS_PER_ACCOUNT].clone())
            })
            .buffered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut tasks = Vec::with_capacity(n);
        for stream in streams {
            let (stream, acked, stopped) = (stream?, acked.clone(), stopped.clone());
            tasks.push(tokio::spawn(receive(stream, acked, stopped)));
        }
        Ok(Self { tasks, stop })
    }

    /// Stops every subscriber; their fan-out latencies (µs) together.
    pub(super) async fn finish(self) -> anyhow::Result<Histogram<u64>> {
        let _ = self.stop.send(true);
        let mut all = Histogram::<u64>::new(3)?;
        for task in futures::future::join_all(self.tasks).await {
            all.add(task.context("a subscriber")??)?;
        }
        Ok(all)
    }
}

/// For each node, enough connections for `per_node` subscribers.
async fn connect(target: &Target, per_node: usize) -> anyhow::Result<Vec<Vec<Channel>>> {
    let mut nodes = Vec::new();
    for endpoint in &target.endpoints {
        let mut connections = Vec::new();
        for _ in 0..per_node.div_ceil(STREAMS_PER_CONNECTION) {
            connections.push(target.connect(endpoint).await.with_context(|| format!("connecting to {endpoint}"))?);
        }
        nodes.push(connections);
    }
    Ok(nodes)
}

async fn subscribe(
    channel: Channel,
    token: String,
) -> anyhow::Result<tonic::Streaming<kizuna_proto::events::SubscribeResponse>> {
    let req = authed(SubscribeRequest { after_cursor: None }, &token)?;
    let stream = EventServiceClient::new(channel).subscribe(req).await.context("subscribing")?;
    Ok(stream.into_inner())
}

/// One subscriber until told to stop: the fan-out latency (µs) of every post it receives.
async fn receive(
    mut stream: tonic::Streaming<kizuna_proto::events::SubscribeResponse>,
    acked: Acknowledged,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new(3)?;
    loop {
        let message = tokio::select! {
            message = stream.message() => message.context("a subscriber's stream")?,
            _ = stopped.changed() => return Ok(latency),
        };
        let Some(event) = message.and_then(|m| m.event) else { return Ok(latency) };
        let (Some(room), Some(event::Kind::PostedSeq(seq))) = (event.room_id, event.kind) else { continue };
        let received = Instant::now();
        // An event may outrun its post's acknowledgement: counted from there then, as 0.
        let at = acked.read().ok().and_then(|a| a.get(&(room, seq)).copied());
        latency.record(at.map_or(0, |at| received.saturating_duration_since(at).as_micros() as u64))?;
    }
}

/// `count` staff of the signed-in facility admin's facility, registered, approved, signed in
/// and made members of one of `rooms` each: their session tokens.
async fn register_staff(target: &Target, (token, rooms): (&str, &[u64]), count: usize) -> anyhow::Result<Vec<String>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let channel = target.connect(&target.endpoints[0]).await?;
    let me = AccountServiceClient::new(channel.clone()).get_me(authed(GetMeRequest {}, token)?).await?.into_inner();
    let facility = me.facility_id.filter(|_| me.facility_admin).with_context(|| {
        format!(
            "{count} more accounts are needed for that many subscribers ({STREAMS_PER_ACCOUNT} streams per account \
             per node): sign in as a facility admin (the demo's vn.suzuki) so the bench can register them"
        )
    })?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let bar = super::progress_of("accounts", count as u64);
    let staff = Arc::new(Staff { channel, admin: token.to_owned(), facility, run });
    let tokens = futures::stream::iter(0..count)
        .map(|k| {
            let (staff, room, bar) = (staff.clone(), rooms[k % rooms.len()], bar.clone());
            async move {
                let token = while_unavailable("registering the bench's subscribers", || staff.member(k, room)).await;
                bar.inc(1);
                token
            }
        })
        .buffered(AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    bar.finish_and_clear();
    tokens.into_iter().collect()
}

/// What registering one of the bench's staff needs.
struct Staff {
    channel: Channel,
    /// The facility admin's session.
    admin: String,
    facility: u64,
    run: String,
}

impl Staff {
    /// Staff member `k`: invited, registered, approved, signed in and put into `room` (by its
    /// owner, the admin: active at once); the session token.
    async fn member(&self, k: usize, room: u64) -> anyhow::Result<String> {
        let mut accounts = AccountServiceClient::new(self.channel.clone());
        let key = |what: &str| format!("bench-{}-{what}-{k}", self.run);
        let invite = IssueInvitationRequest {
            idempotency_key: key("invite"),
            facility_id: self.facility,
            valid_hours: 1,
            as_admin: false,
        };
        let code = accounts.issue_invitation(authed(invite, &self.admin)?).await?.into_inner().code;
        let login = format!("bench{}.{k}", self.run);
        // Test accounts of a benchmark: a password that meets any hub's rule, not kept.
        let password = format!("Bench-{}-{k}", self.run);
        let register = RegisterRequest {
            idempotency_key: key("register"),
            invitation_code: code,
            login: login.clone(),
            display_name: format!("ベンチ 購読者{k}"),
            profession: Profession::VisitingNurse as i32,
            password: password.clone(),
        };
        let id = accounts.register(register).await?.into_inner().account_id;
        let approve = ApproveAccountRequest { idempotency_key: key("approve"), account_id: id };
        accounts.approve_account(authed(approve, &self.admin)?).await?;
        let invite = InviteMemberRequest {
            idempotency_key: key("member"),
            room_id: room,
            invitee: Some(Invitee::AccountId(id)),
            role: Role::Member as i32,
        };
        RoomServiceClient::new(self.channel.clone()).invite_member(authed(invite, &self.admin)?).await?;
        let login = LoginRequest {
            idempotency_key: key("login"),
            login,
            password,
            device: "kizuna bench".into(),
            ..Default::default()
        };
        Ok(accounts.login(login).await?.into_inner().token)
    }
}
