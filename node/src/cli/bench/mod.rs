//! `kizuna bench`: the real write of the product — posts, with their authorization, audit,
//! search index and live events — by many clients spread over every node given, for a while;
//! committed posts/s and latency percentiles from an HDR histogram (p50, p90, p99, p99.9, max),
//! and the fan-out latency of live subscribers spread over the nodes (from a post's
//! acknowledgement at its client to its event at each subscriber). With `--patients N`, then
//! the reads a professional makes all day: her patient list (患者一覧, N patients) and a
//! patient's timeline (newest 50 posts), from every node. A human table, or `--json`;
//! a progress bar on stderr while it runs. Against any running hub (dev, 3-region, Tochigi; TLS
//! or not) as the signed-in professional, in group rooms of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, TimelineRequest};
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{CreateGroupRequest, CreatePatientRequest, ListRoomsRequest, RoomListKind};
use serde::Serialize;
use tonic::transport::Channel;

use self::subscribers::Subscribers;
use super::Target;
use super::attachments::while_unavailable;
use super::user::{authed, token};

mod subscribers;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Concurrent posting clients, spread over the nodes.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Group rooms the clients post into (client i posts into room i mod rooms).
    #[arg(long, default_value_t = 8)]
    rooms: usize,
    /// Live subscribers, spread over the nodes. One account holds at most 16 on a node: beyond
    /// that the bench registers staff of the signed-in facility admin's facility, each a member
    /// of one bench room.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// Then create this many patients of the signed-in account and time the reads of her
    /// patient list and of their timelines, by `--readers` readers for `--read-seconds`.
    #[arg(long, default_value_t = 0)]
    patients: usize,
    /// Concurrent readers with `--patients`, one timed run per number given (default: as many
    /// as `--clients`). Each reads as fast as it is answered, so many readers time a saturated
    /// hub and one times a read alone: `--readers 1,4,16` gives both ends.
    #[arg(long, value_delimiter = ',')]
    readers: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    read_seconds: u64,
    /// The figures as JSON on stdout (the table otherwise).
    #[arg(long)]
    json: bool,
}

/// Latency percentiles, in ms.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub seconds: f64,
    pub posts: u64,
    pub posts_per_second: f64,
    pub errors: u64,
    /// Posting: from sending a post to its acknowledgement (committed and applied).
    pub post_latency: Percentiles,
    pub subscribers: usize,
    /// From a post's acknowledgement to its live event at each subscriber.
    pub fanout_latency: Percentiles,
    /// With `--patients`: the reads.
    pub reads: Option<Reads>,
}

#[derive(Debug, Serialize)]
pub struct Reads {
    pub patients: usize,
    /// One run per number of readers, in the order given.
    pub runs: Vec<ReadRun>,
}

#[derive(Debug, Serialize)]
pub struct ReadRun {
    pub readers: usize,
    /// The patient list (its first page of 100, newest post first, with unread counts).
    pub patient_list: Percentiles,
    /// A patient's timeline, newest 50 posts.
    pub timeline: Percentiles,
}

/// ~200 bytes of a visiting nurse's note, as posts are.
const TEXT: &str = "本日訪問しました。SpO2 96%、血圧 132/84。食事量は半分程度、水分は摂れています。";

/// When each post was acknowledged, by (room, seq): the subscribers' clock starts there.
type Acknowledged = Arc<RwLock<HashMap<(u64, u64), Instant>>>;

pub async fn run(target: &Target, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0 && args.rooms > 0, "--clients and --rooms must be at least 1");
    anyhow::ensure!(!args.readers.contains(&0), "--readers must be at least 1");
    let token = token()?;
    let channels = connect_all(target).await?;
    let rooms = create_rooms(&channels[0].1, &token, args.rooms).await?;
    let acked: Acknowledged = Arc::default();
    let subscribers = Subscribers::start(target, (&token, &rooms), args.subscribers, &acked).await?;
    let (posts, errors, latency, elapsed) = post_for(&channels, &token, &args, &rooms, &acked).await?;
    // The last posts' events are on their way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fanout = subscribers.finish().await?;
    let reads = match args.patients {
        0 => None,
        n => {
            let readers = if args.readers.is_empty() { vec![args.clients] } else { args.readers.clone() };
            Some(read_for(&channels, &token, n, (&readers, args.read_seconds)).await?)
        }
    };
    let report = Report {
        endpoints: channels.iter().map(|(e, _)| e.clone()).collect(),
        clients: args.clients,
        seconds: elapsed,
        posts,
        posts_per_second: posts as f64 / elapsed,
        errors,
        post_latency: Percentiles::of(&latency),
        subscribers: args.subscribers,
        fanout_latency: Percentiles::of(&fanout),
        reads,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// Every endpoint given that answers (at least one).
pub(super) async fn connect_all(target: &Target) -> anyhow::Result<Vec<(String, Channel)>> {
    let mut channels = Vec::new();
    for e in &target.endpoints {
        match target.connect(e).await {
            Ok(c) => channels.push((e.clone(), c)),
            Err(err) => eprintln!("{e}: {err:#}; left out"),
        }
    }
    anyhow::ensure!(!channels.is_empty(), "no node answered");
    Ok(channels)
}

async fn create_rooms(channel: &Channel, token: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut rooms = Vec::new();
    for i in 0..n {
        let room = while_unavailable("creating the bench's rooms (sign in as a professional)", || async {
            let req = CreateGroupRequest { idempotency_key: format!("bench-{run}-{i}"), name: format!("bench {i}") };
            Ok(RoomServiceClient::new(channel.clone()).create_group(authed(req, token)?).await?.into_inner().room_id)
        });
        rooms.push(room.await?);
    }
    Ok(rooms)
}

/// `clients` clients post for `seconds`: (posts, errors, latency in µs, elapsed s).
async fn post_for(
    channels: &[(String, Channel)],
    token: &str,
    args: &BenchArgs,
    rooms: &[u64],
    acked: &Acknowledged,
) -> anyhow::Result<(u64, u64, Histogram<u64>, f64)> {
    let bar = progress(args.seconds);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.clients)
        .map(|c| {
            let channel = channels[c % channels.len()].1.clone();
            let (token, room, acked, done) = (token.to_owned(), rooms[c % rooms.len()], acked.clone(), done.clone());
            tokio::spawn(async move { client(channel, (&token, room, c), deadline, acked, done).await })
        })
        .collect();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let so_far = started.elapsed().as_secs_f64();
        bar.set_position(so_far as u64);
        bar.set_message(format!("{:.0} posts/s", done.load(Ordering::Relaxed) as f64 / so_far));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for w in futures::future::join_all(workers).await {
        let (h, e) = w.context("a posting client")??;
        latency.add(h)?;
        errors += e;
    }
    bar.finish_and_clear();
    Ok((latency.len(), errors, latency, started.elapsed().as_secs_f64()))
}

/// One client: posts one at a time until `deadline`; (latencies in µs, errors).
async fn client(
    channel: Channel,
    (token, room, c): (&str, u64, usize),
    deadline: Instant,
    acked: Acknowledged,
    done: Arc<AtomicU64>,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut posts = PostServiceClient::new(channel);
    let mut latency = Histogram::<u64>::new(3)?;
    let (mut errors, mut i) = (0, 0u64);
    let run = uuid::Uuid::new_v4().simple().to_string();
    while Instant::now() < deadline {
        let req = CreatePostRequest {
            idempotency_key: format!("bench-{run}-{c}-{i}"),
            room_id: room,
            text: format!("{TEXT} ({c}-{i})"),
            ..Default::default()
        };
        let sent = Instant::now();
        match posts.create_post(authed(req, token)?).await {
            Ok(r) => {
                let now = Instant::now();
                latency.record((now - sent).as_micros() as u64)?;
                if let Ok(mut a) = acked.write() {
                    a.insert((room, r.into_inner().seq), now);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => errors += 1,
        }
        i += 1;
    }
    Ok((latency, errors))
}

/// `n` patients of the caller (each with a post), then for each number of readers in turn,
/// that many readers alternate her patient list and a random patient's timeline on every node
/// for `seconds`.
async fn read_for(
    channels: &[(String, Channel)],
    token: &str,
    n: usize,
    (readers, seconds): (&[usize], u64),
) -> anyhow::Result<Reads> {
    let writers = readers.iter().copied().max().unwrap_or(1);
    let timelines = create_patients(channels, token, n, writers).await?;
    let mut runs = Vec::new();
    for &count in readers {
        runs.push(read_run(channels, token, &timelines, (count, seconds)).await?);
    }
    Ok(Reads { patients: n, runs })
}

/// `count` readers for `seconds`, as [`read_for`] describes.
async fn read_run(
    channels: &[(String, Channel)],
    token: &str,
    timelines: &[u64],
    (count, seconds): (usize, u64),
) -> anyhow::Result<ReadRun> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let readers: Vec<_> = (0..count)
        .map(|c| {
            let (channel, token, timelines) =
                (channels[c % channels.len()].1.clone(), token.to_owned(), timelines.to_vec());
            tokio::spawn(async move { reader(channel, &token, &timelines, (c, deadline)).await })
        })
        .collect();
    let (mut list, mut timeline) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for r in futures::future::join_all(readers).await {
        let (l, t) = r.context("a reader")??;
        list.add(l)?;
        timeline.add(t)?;
    }
    Ok(ReadRun { readers: count, patient_list: Percentiles::of(&list), timeline: Percentiles::of(&timeline) })
}

/// `n` patients of the caller, created by `clients` writers at once, each with one post: their
/// timelines.
async fn create_patients(
    channels: &[(String, Channel)],
    token: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<u64>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let writers: Vec<_> = (0..clients.max(1))
        .map(|c| {
            let (channel, token, run) = (channels[c % channels.len()].1.clone(), token.to_owned(), run.clone());
            tokio::spawn(async move {
                let mut rooms = Vec::new();
                for i in (c..n).step_by(clients.max(1)) {
                    let patient = || create_patient(channel.clone(), token.clone(), (run.clone(), i));
                    let room = while_unavailable("creating the bench's patients", patient);
                    rooms.push(room.await?);
                }
                anyhow::Ok(rooms)
            })
        })
        .collect();
    let mut rooms = Vec::new();
    for w in futures::future::join_all(writers).await {
        rooms.extend(w.context("creating patients")?.context("creating the bench's patients")?);
    }
    Ok(rooms)
}

/// The bench run's patient `i` of the caller's, with a first post; her timeline.
async fn create_patient(channel: Channel, token: String, (run, i): (String, usize)) -> anyhow::Result<u64> {
    let req = CreatePatientRequest {
        idempotency_key: format!("bench-{run}-patient-{i}"),
        name: format!("ベンチ 患者{i}"),
        kana: "べんち かんじゃ".into(),
        ..Default::default()
    };
    let created = RoomServiceClient::new(channel.clone()).create_patient(authed(req, &token)?).await?;
    let room = created.into_inner().room_id;
    let post = CreatePostRequest {
        idempotency_key: format!("bench-{run}-first-{i}"),
        room_id: room,
        text: TEXT.into(),
        ..Default::default()
    };
    PostServiceClient::new(channel).create_post(authed(post, &token)?).await?;
    Ok(room)
}

/// One reader until `deadline`: (patient list latencies, timeline latencies), in µs.
async fn reader(
    channel: Channel,
    token: &str,
    timelines: &[u64],
    (c, deadline): (usize, Instant),
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let (mut rooms, mut posts) = (RoomServiceClient::new(channel.clone()), PostServiceClient::new(channel));
    let (mut list, mut timeline) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    let mut i = c;
    while Instant::now() < deadline {
        let t = Instant::now();
        let req = ListRoomsRequest { kind: RoomListKind::Patients as i32, ..Default::default() };
        rooms.list_rooms(authed(req, token)?).await.context("the patient list")?;
        list.record(t.elapsed().as_micros() as u64)?;
        let t = Instant::now();
        let room = timelines[i % timelines.len()];
        let req = TimelineRequest { room_id: room, page_size: 50, ..Default::default() };
        posts.timeline(authed(req, token)?).await.context("a timeline")?;
        timeline.record(t.elapsed().as_micros() as u64)?;
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    Ok((list, timeline))
}

fn progress(seconds: u64) -> indicatif::ProgressBar {
    progress_of("s", seconds)
}

/// A bar of `len` things counted in `unit`.
fn progress_of(unit: &str, len: u64) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(&format!("bench [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"))
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(len).with_style(style)
}

/// The human table.
pub fn table(r: &Report) -> String {
    let row = |name: &str, p: &Percentiles| {
        format!(
            "  {name:<22} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
            p.count, p.p50, p.p90, p.p99, p.p999, p.max
        )
    };
    let mut s = format!(
        "{} clients on {} node(s), {:.1} s: {} committed posts ({:.0}/s), {} errors\n",
        r.clients,
        r.endpoints.len(),
        r.seconds,
        r.posts,
        r.posts_per_second,
        r.errors
    );
    s += &format!(
        "  {:<22} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    s += &row("post → acknowledged", &r.post_latency);
    if r.subscribers > 0 {
        s += &row(&format!("fan-out ({} subscribers)", r.subscribers), &r.fanout_latency);
    }
    let runs = r.reads.iter().flat_map(|reads| reads.runs.iter().map(move |run| (reads.patients, run)));
    for (patients, run) in runs {
        s += &row(&format!("patient list ({patients}), {} readers", run.readers), &run.patient_list);
        s += &row(&format!("timeline (50 posts), {} readers", run.readers), &run.timeline);
    }
    s
}
