//! A two-hub chaos run: Tochigi and Gunma as real processes ([`hubs`]), rooms homed on Tochigi
//! with a Gunma professional invited as `dr.chaos@gunma`, writers on both hubs posting into
//! them (on Gunma into the rooms' read copies), one live-event subscriber per hub, and a seeded
//! schedule of hub↔hub link faults, leader kills and region blackouts. Then heal, wait until
//! both hubs have settled, and check ([`crate::check::federated`]).

pub mod hubs;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{InviteMemberRequest, ListRoomsRequest, Role, RoomListKind};
use serde::Serialize;

use crate::check::Timelines;
use crate::check::federated::{CrossHubFindings, CrossPost, HubSubscriber, NodeCopy, check};
use crate::rng::Rng;
use crate::workload::subscriber::Received;
use crate::workload::writer::{Outcome, PostOp};
use crate::workload::{self, Setup, authed, ms_since, on_any_node, subscriber, writer};
use hubs::Hubs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum HubFault {
    /// Cut the hubs apart, both ways.
    HubPartition,
    /// Cut one hub's connections to the other only (the other still reaches it).
    HubOneWay,
    /// Slow every hub↔hub link: 300 ms per hop with up to 150 ms of jitter.
    HubSlow,
    /// kill -9 one hub's leader, restart it.
    LeaderKill,
    /// kill -9 every node of one region of one hub, restart them.
    Blackout,
    /// One of the above at random each time.
    Mix,
}

const ALL: [HubFault; 5] =
    [HubFault::HubPartition, HubFault::HubOneWay, HubFault::HubSlow, HubFault::LeaderKill, HubFault::Blackout];

#[derive(Debug, Clone, Serialize)]
pub struct FederatedPlan {
    pub seed: u64,
    pub seconds: u64,
    /// Writers per hub.
    pub clients: usize,
    pub rooms: usize,
    pub faults: Vec<HubFault>,
    pub answer_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultDone {
    pub at_ms: u64,
    pub kind: HubFault,
    /// What it hit: `tochigi→gunma`, `gunma/maebashi-1`, …
    pub target: String,
    pub lasted_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct FederatedReport {
    pub plan: FederatedPlan,
    pub faults: Vec<FaultDone>,
    pub findings: CrossHubFindings,
    pub violations: usize,
    /// From the end of the load until every node of both hubs held every acknowledged post.
    pub settled_ms: u64,
    /// p50, p99, max of how long a post the member hub acknowledged stayed "sending": from its
    /// acknowledgement to its live event on the home hub (its place in the room's order).
    pub sending_lag_ms: [u64; 3],
    /// How many posts that figure covers (those the home hub's subscriber saw arrive).
    pub sending_lag_posts: usize,
    pub logs: String,
}

/// The Gunma professional every room invites, as Tochigi names her.
const REMOTE_MEMBER: &str = "dr.chaos@gunma";
/// Writer ids of the member hub start here, so post texts (`w<id>-<n>`) never collide.
const MEMBER_WRITER_IDS: usize = 1000;

pub async fn run(plan: FederatedPlan) -> anyhow::Result<FederatedReport> {
    let mut hubs = Hubs::start().await?;
    let logs = hubs.logs_dir().display().to_string();
    let result = drive(&plan, &mut hubs).await.with_context(|| format!("node logs in {logs}"));
    if result.as_ref().map_or(true, |r| r.violations > 0) {
        let kept = hubs.dir.path().to_path_buf();
        std::mem::forget(std::mem::replace(&mut hubs.dir, tempfile::tempdir()?));
        eprintln!("node logs and data kept in {}", kept.display());
    }
    result
}

/// Sets both hubs up; returns (home setup, member setup whose rooms are the copies, home room
/// of each copy).
async fn setup(plan: &FederatedPlan, hubs: &mut Hubs) -> anyhow::Result<(Setup, Setup, BTreeMap<u64, u64>)> {
    let answer_timeout = Duration::from_millis(plan.answer_timeout_ms);
    // The member hub first: the home hub's invitation is answered with her profile.
    let mut member = workload::setup(&hubs.hubs[1].endpoints(), plan.seed ^ 1, 0).await.context("setting up gunma")?;
    let mut home =
        workload::setup(&hubs.hubs[0].endpoints(), plan.seed, plan.rooms).await.context("setting up tochigi")?;
    hubs.hubs[0].operator = home.operator.clone();
    hubs.hubs[1].operator = member.operator.clone();
    for (r, &room) in home.rooms.iter().enumerate() {
        on_any_node(&home.endpoints, Duration::from_secs(60), "invite the remote member", |ch| {
            let req = InviteMemberRequest {
                idempotency_key: format!("chaos-{}-invite-{r}", plan.seed),
                room_id: room,
                invitee: Some(Invitee::RemoteLogin(REMOTE_MEMBER.into())),
                role: Role::Member as i32,
            };
            let req = authed(req, &home.token);
            async move { RoomServiceClient::new(ch).invite_member(req).await }
        })
        .await?;
    }
    let copies = wait_for_copies(&member, plan.rooms).await?;
    let names: BTreeMap<String, u64> = (0..plan.rooms).map(|r| format!("部屋{r}")).zip(home.rooms.clone()).collect();
    let mut home_of = BTreeMap::new();
    for (title, copy) in &copies {
        let home_room = names.get(title).with_context(|| format!("a copy titled {title:?} of no room"))?;
        home_of.insert(*copy, *home_room);
    }
    member.rooms = home_of.keys().copied().collect();
    member.answer_timeout = answer_timeout;
    home.answer_timeout = answer_timeout;
    Ok((home, member, home_of))
}

/// The copies of the home hub's rooms on the member hub, by title, once all have arrived.
async fn wait_for_copies(member: &Setup, rooms: usize) -> anyhow::Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = on_any_node(&member.endpoints, Duration::from_secs(10), "list the copies", |ch| {
            let req = ListRoomsRequest { kind: RoomListKind::Groups as i32, page_size: 500, ..Default::default() };
            let req = authed(req, &member.token);
            async move { RoomServiceClient::new(ch).list_rooms(req).await.map(|r| r.into_inner().rooms) }
        })
        .await?;
        if found.len() >= rooms {
            return Ok(found.into_iter().map(|r| (r.title, r.room_id)).collect());
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {rooms} rooms reached gunma within 60 s: cross-hub delivery (the outbox sender) is not running",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn drive(plan: &FederatedPlan, hubs: &mut Hubs) -> anyhow::Result<FederatedReport> {
    let (home, member, home_of) = setup(plan, hubs).await?;
    let mut rng = Rng::new(plan.seed);

    let sub_stop = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    for s in [&home, &member] {
        let log = Arc::new(Mutex::new(Received::default()));
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscriber::run(s.clone(), rng.fork(1), log.clone(), sub_stop.clone(), ready));
        tokio::time::timeout(Duration::from_secs(30), is_ready).await.context("subscriber never connected")??;
        subscribers.push((task, log));
    }

    let started = Instant::now();
    let started_at_ms = workload::epoch_ms();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for c in 0..plan.clients.max(1) {
        writers.push(tokio::spawn(writer::run(c, home.clone(), rng.fork(10 + c as u64), stop.clone(), started)));
        let id = MEMBER_WRITER_IDS + c;
        writers.push(tokio::spawn(writer::run(id, member.clone(), rng.fork(id as u64), stop.clone(), started)));
    }

    let faults = inject_faults(plan, hubs, &mut rng, started).await?;
    stop.store(true, Ordering::Relaxed);
    let mut posts: Vec<PostOp> = Vec::new();
    for w in writers {
        posts.extend(w.await?);
    }

    hubs.heal();
    for h in 0..hubs.hubs.len() {
        for i in 0..hubs.hubs[h].nodes.len() {
            hubs.start_node(h, i)?;
        }
    }
    let load_ended = Instant::now();
    let cross = cross_posts(&posts, &home_of);
    let nodes = settle(hubs, &home, &member, &home_of, &cross).await?;
    let settled_ms = load_ended.elapsed().as_millis() as u64;

    // The first node of each hub (all agree once settled, or the checkers say they do not).
    let first_of = |i: usize| nodes.get(i).map(|n| n.timelines.clone()).unwrap_or_default();
    let hub_timelines =
        [own_timelines(&first_of(0), None), own_timelines(&first_of(hubs.hubs[0].nodes.len()), Some(&home_of))];
    wait_for_subscribers(&subscribers, &hub_timelines).await;
    sub_stop.store(true, Ordering::Relaxed);
    let mut hub_subscribers = Vec::new();
    for (((task, log), hub), timelines) in subscribers.into_iter().zip(&hubs.hubs).zip(hub_timelines) {
        task.await?;
        let received = log.lock().map(|l| l.clone()).unwrap_or_default();
        hub_subscribers.push(HubSubscriber { hub: hub.name.clone(), received, timelines });
    }

    let lags = hub_subscribers
        .first()
        .map(|home| sending_lags(&posts, &home_of, &home.timelines, &home.received, started_at_ms))
        .unwrap_or_default();
    let mut findings = check(&cross, &nodes, &hub_subscribers);
    for (hub, range) in [("tochigi", 0..MEMBER_WRITER_IDS), ("gunma", MEMBER_WRITER_IDS..usize::MAX)] {
        let acked = posts.iter().filter(|p| range.contains(&p.writer) && p.outcome != Outcome::Unknown).count();
        findings.posts_acknowledged_per_hub.insert(hub.to_owned(), acked);
    }
    Ok(FederatedReport {
        plan: plan.clone(),
        faults,
        violations: findings.violations(),
        findings,
        settled_ms,
        sending_lag_ms: [0.5, 0.99, 1.0].map(|p| crate::check::percentile(&lags, p)),
        sending_lag_posts: lags.len(),
        logs: hubs.logs_dir().display().to_string(),
    })
}

async fn inject_faults(
    plan: &FederatedPlan,
    hubs: &mut Hubs,
    rng: &mut Rng,
    started: Instant,
) -> anyhow::Result<Vec<FaultDone>> {
    let mut faults = Vec::new();
    let end = started + Duration::from_secs(plan.seconds);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() + Duration::from_secs(6) < end {
        let listed = plan.faults.get(faults.len() % plan.faults.len().max(1)).copied().unwrap_or(HubFault::Mix);
        let kind = if listed == HubFault::Mix { ALL[rng.below(ALL.len() as u64) as usize] } else { listed };
        let lasts = Duration::from_millis(1500 + rng.below(2000));
        let at_ms = ms_since(started);
        let target = inject(hubs, kind, lasts, rng, faults.len() % 2).await?;
        faults.push(FaultDone { at_ms, kind, target, lasted_ms: ms_since(started) - at_ms });
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1500))).await;
    }
    if let Some(left) = end.checked_duration_since(Instant::now()) {
        tokio::time::sleep(left).await;
    }
    Ok(faults)
}

/// Applies one fault for `lasts`, then undoes it; says what it hit. `hub` is the hub a
/// one-sided fault hits (or cuts from): the faults alternate between the hubs, so a short run
/// hits both (the home hub's leader orders rooms; the member hub's leader sends its writes).
async fn inject(hubs: &mut Hubs, kind: HubFault, lasts: Duration, rng: &mut Rng, hub: usize) -> anyhow::Result<String> {
    let names: Vec<String> = hubs.hubs.iter().map(|h| h.name.clone()).collect();
    let target = match kind {
        HubFault::HubPartition => {
            hubs.cut(0, true);
            hubs.cut(1, true);
            tokio::time::sleep(lasts).await;
            hubs.cut(0, false);
            hubs.cut(1, false);
            format!("{}↔{}", names[0], names[1])
        }
        HubFault::HubOneWay => {
            let from = hub;
            hubs.cut(from, true);
            tokio::time::sleep(lasts).await;
            hubs.cut(from, false);
            format!("{}→{}", names[from], names[1 - from])
        }
        HubFault::HubSlow => {
            hubs.slow(Duration::from_millis(300), Duration::from_millis(150));
            tokio::time::sleep(lasts).await;
            hubs.heal();
            format!("{}↔{} 300±150 ms", names[0], names[1])
        }
        HubFault::LeaderKill | HubFault::Blackout => {
            let h = hub;
            let pick = rng.below(hubs.hubs[h].nodes.len() as u64) as usize;
            // One node per region: a region's blackout is its node's; a leader kill takes
            // whoever leads at that moment.
            let victim = if kind == HubFault::LeaderKill { hubs.hubs[h].leader().await.unwrap_or(pick) } else { pick };
            hubs.kill(h, victim);
            tokio::time::sleep(lasts).await;
            hubs.start_node(h, victim)?;
            let n = &hubs.hubs[h].nodes[victim];
            format!("{}/{} (region {})", names[h], n.name, n.region)
        }
        HubFault::Mix => bail!("Mix is resolved before injecting"),
    };
    Ok(target)
}

/// The posts written into cross-hub rooms, by home room.
fn cross_posts(posts: &[PostOp], home_of: &BTreeMap<u64, u64>) -> Vec<CrossPost> {
    posts
        .iter()
        .map(|p| {
            let on_member = p.writer >= MEMBER_WRITER_IDS;
            let home_room = if on_member { home_of.get(&p.room).copied().unwrap_or(0) } else { p.room };
            let (acknowledged, home_seq) = match p.outcome {
                Outcome::Ok { seq } => (true, (!on_member).then_some(seq)),
                Outcome::Unknown => (false, None),
            };
            CrossPost { text: p.text.clone(), home_room, acknowledged, home_seq }
        })
        .collect()
}

/// How long [`settle`] waits for a hub that makes no progress: longer than any fault's
/// recovery (an election, a sender's backoff), so a stall is a stall.
const STALLED: Duration = Duration::from_secs(30);
/// [`settle`]'s hard limit, however slowly the queues still drain.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

/// Reads every node of both hubs (home first) until all hold every acknowledged post and agree,
/// or no node's copy has grown for [`STALLED`], or [`SETTLE_LIMIT`] has passed; returns the
/// last reading either way (the checkers judge it). Queues built up during the faults drain
/// after them at the hubs' pace: waiting while they still progress tells a slow drain (a
/// capacity figure, `settled_ms`) from delivery that has stopped (a violation).
async fn settle(
    hubs: &Hubs,
    home: &Setup,
    member: &Setup,
    home_of: &BTreeMap<u64, u64>,
    posts: &[CrossPost],
) -> anyhow::Result<Vec<NodeCopy>> {
    let limit = Instant::now() + SETTLE_LIMIT;
    let (mut held, mut progressed) = (0usize, Instant::now());
    loop {
        let nodes = read_every_node(hubs, home, member, home_of).await;
        let now_held: usize = nodes.iter().flat_map(|n| n.timelines.values()).map(Vec::len).sum();
        if now_held > held {
            (held, progressed) = (now_held, Instant::now());
        }
        let done = check(posts, &nodes, &[]).violations() == 0;
        if done || progressed.elapsed() > STALLED || Instant::now() > limit {
            return Ok(nodes);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every node's copy of every cross-hub room (home hub's nodes first), keyed by home room.
async fn read_every_node(hubs: &Hubs, home: &Setup, member: &Setup, home_of: &BTreeMap<u64, u64>) -> Vec<NodeCopy> {
    let mut nodes = Vec::new();
    for (hub, setup) in hubs.hubs.iter().zip([home, member]) {
        for n in &hub.nodes {
            let mut timelines = Timelines::new();
            for &room in &setup.rooms {
                let key = home_of.get(&room).copied().unwrap_or(room);
                let read = workload::read_room(&n.endpoint, &setup.token, room).await;
                timelines.insert(key, read.unwrap_or_default());
            }
            nodes.push(NodeCopy { node: format!("{}/{}", hub.name, n.name), timelines });
        }
    }
    nodes
}

/// For each post the member hub acknowledged: ms from its acknowledgement to its live event on
/// the home hub, sorted. `home_timelines` places each post (by its text) at its home sequence.
fn sending_lags(
    posts: &[PostOp],
    home_of: &BTreeMap<u64, u64>,
    home_timelines: &Timelines,
    home_subscriber: &Received,
    started_at_ms: u64,
) -> Vec<u64> {
    let arrived: HashMap<(u64, u64), u64> = home_subscriber
        .posted
        .iter()
        .zip(&home_subscriber.arrived_at_ms)
        .map(|((_, room, seq), at)| ((*room, *seq), *at))
        .collect();
    let seq_of: HashMap<(u64, &str), u64> = home_timelines
        .iter()
        .flat_map(|(room, t)| t.iter().map(move |(seq, text)| ((*room, text.as_str()), *seq)))
        .collect();
    let mut lags: Vec<u64> = posts
        .iter()
        .filter(|p| p.writer >= MEMBER_WRITER_IDS && p.outcome != Outcome::Unknown)
        .filter_map(|p| {
            let room = *home_of.get(&p.room)?;
            let seq = *seq_of.get(&(room, p.text.as_str()))?;
            let at = *arrived.get(&(room, seq))?;
            Some(at.saturating_sub(started_at_ms + p.completed_ms))
        })
        .collect();
    lags.sort_unstable();
    lags
}

/// A hub's timelines by its own room ids: the home rooms as they are, copies by `home_of`.
fn own_timelines(by_home: &Timelines, home_of: Option<&BTreeMap<u64, u64>>) -> Timelines {
    match home_of {
        None => by_home.clone(),
        Some(home_of) => {
            home_of.iter().filter_map(|(copy, home)| by_home.get(home).map(|t| (*copy, t.clone()))).collect()
        }
    }
}

/// Gives the subscribers until they have every post of their hub (or 30 s).
async fn wait_for_subscribers(subscribers: &[(tokio::task::JoinHandle<()>, Arc<Mutex<Received>>)], hubs: &[Timelines]) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let caught_up = subscribers.iter().zip(hubs).all(|((_, log), timelines)| {
            log.lock().is_ok_and(|l| timelines.iter().all(|(room, t)| l.max_seq(*room) >= t.last().map_or(0, |p| p.0)))
        });
        if caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The human table.
pub fn table(r: &FederatedReport) -> String {
    let f = &r.findings;
    let mut s = format!(
        "two-hub chaos run: {:?}, seed {}, {} s, {} writers per hub, {} cross-hub rooms\n",
        r.plan.faults, r.plan.seed, r.plan.seconds, r.plan.clients, r.plan.rooms
    );
    s += &format!(
        "  posts: {} acknowledged ({:?}), {} unknown; every node settled {} ms after the load\n",
        f.posts_acknowledged, f.posts_acknowledged_per_hub, f.posts_unknown, r.settled_ms
    );
    s += &format!("  subscribers: {} events over {} connections\n", f.subscriber_events, f.subscriber_connections);
    let [p50, p99, max] = r.sending_lag_ms;
    s += &format!(
        "  sending (member hub's acknowledgement → event on the home hub): p50 {p50} ms, p99 {p99} ms, max {max} ms over {} posts\n",
        r.sending_lag_posts
    );
    s += &format!("  faults: {}\n", r.faults.len());
    for x in &r.faults {
        s += &format!(
            "    t={:>7} ms  {:<13} {:<32} for {:>5} ms\n",
            x.at_ms,
            format!("{:?}", x.kind),
            x.target,
            x.lasted_ms
        );
    }
    s += &format!(
        "  violations: {} (lost {}, duplicated {}, phantom {}, divergent {}, misplaced {}, subscribers {})\n",
        r.violations,
        f.lost.len(),
        f.duplicated.len(),
        f.phantom.len(),
        f.divergent.len(),
        f.misplaced.len(),
        f.subscriber_violations.len()
    );
    let all = f.lost.iter().chain(&f.duplicated).chain(&f.phantom).chain(&f.divergent).chain(&f.misplaced);
    for v in all.chain(&f.subscriber_violations).take(10) {
        s += &format!("    {v}\n");
    }
    s
}
