//! `kizuna load`: concurrent clients against a hub, as the signed-in user; operations/s and
//! latency percentiles. A small loop for quick figures (docs/benchmarks.md): record writes (the
//! write path; records are operators' only) or timeline reads of one room (the read path, as a
//! member of that room reads it). With `--etcd`, the same write loop against an etcd cluster's
//! leader instead: the side-by-side of `make bench` (ops/scripts/bench-etcd.sh) loads both
//! stores with one program, one key pattern and one value size. With `--rate`, an open loop at
//! a fixed rate (the latency at a given share of the peak, stalls included).

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use kizuna_proto::posts::TimelineRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::records::PutRecordRequest;
use kizuna_proto::records::record_service_client::RecordServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::bench::Percentiles;
use super::etcd;
use super::user::{authed, token};

/// What each client does in a loop.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// Replicated record writes of `value_bytes`, each with its own idempotency key.
    Writes { value_bytes: usize },
    /// Linearizable reads of one room's newest 50 posts.
    Timeline { room: u64 },
    /// The same writes as `Writes`, as etcd puts.
    EtcdWrites { value_bytes: usize },
}

impl Workload {
    fn describe(self) -> String {
        match self {
            Workload::Writes { value_bytes } => format!("committed writes of {value_bytes} B"),
            Workload::Timeline { room } => format!("timeline reads of room {room}"),
            Workload::EtcdWrites { value_bytes } => format!("committed etcd puts of {value_bytes} B"),
        }
    }
}

/// The figures of one run; `--json` prints them.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub store: &'static str,
    pub endpoint: String,
    pub workload: String,
    pub clients: usize,
    /// The open loop's operations per second, if one was asked for.
    pub rate: Option<f64>,
    pub seconds: f64,
    pub operations: u64,
    pub per_second: f64,
    pub errors: u64,
    pub latency: Percentiles,
    /// When the run started (Unix ms): its seconds set beside the nodes' logs.
    pub started_unix_ms: u128,
    /// Each second of the run, by when its operations were sent: a stall is a second whose
    /// slowest operation stands out (the percentiles of the whole run do not say when).
    pub by_second: Vec<Second>,
}

/// The operations sent in one second of a run, and the latency of the slowest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Second {
    pub operations: u64,
    pub max_ms: f64,
}

/// [`Second`]s of a run being recorded, indexed by the second since its start.
#[derive(Debug, Default)]
struct Seconds(Vec<Second>);

impl Seconds {
    fn record(&mut self, second: usize, latency: Duration) {
        self.merge(second, Second { operations: 1, max_ms: latency.as_secs_f64() * 1000.0 });
    }

    fn add(&mut self, other: Seconds) {
        for (second, theirs) in other.0.into_iter().enumerate() {
            self.merge(second, theirs);
        }
    }

    /// Counts `more` into `second` (the seconds before it, if new, with nothing sent).
    fn merge(&mut self, second: usize, more: Second) {
        if self.0.len() <= second {
            self.0.resize(second + 1, Second::default());
        }
        let slot = &mut self.0[second];
        slot.operations += more.operations;
        slot.max_ms = slot.max_ms.max(more.max_ms);
    }
}

/// A value of exactly `bytes` bytes that says which write it is (ASCII, so the size holds).
fn value_of(bytes: usize, run_id: &str, c: usize, i: u64) -> String {
    let mut value = format!("{run_id} write {i} from client {c} ");
    value.truncate(bytes);
    while value.len() < bytes {
        value.push('.');
    }
    value
}

/// One operation of `workload`, the `i`-th of client `c` in run `run_id`. Both stores get the
/// same keys: 100 per client, overwritten in turn.
async fn operate(
    channel: Channel,
    token: &str,
    workload: Workload,
    run_id: &str,
    c: usize,
    i: u64,
) -> anyhow::Result<()> {
    let key = format!("load/{c}/{}", i % 100);
    match workload {
        Workload::Writes { value_bytes } => {
            let value = value_of(value_bytes, run_id, c, i);
            let req = PutRecordRequest { key, value, idempotency_key: format!("{run_id}-{c}-{i}") };
            RecordServiceClient::new(channel).put_record(authed(req, token)?).await?;
        }
        Workload::Timeline { room } => {
            let req = TimelineRequest { room_id: room, page_size: 50, ..Default::default() };
            PostServiceClient::new(channel).timeline(authed(req, token)?).await?;
        }
        Workload::EtcdWrites { value_bytes } => {
            etcd::put(channel, key.into_bytes(), value_of(value_bytes, run_id, c, i).into_bytes()).await?;
        }
    }
    Ok(())
}

/// Where the load goes: etcd's leader, or the first node of the hub that answers.
async fn connect(
    target: &super::Target,
    workload: Workload,
    etcd_endpoints: &[String],
) -> anyhow::Result<(String, Channel, String)> {
    if let Workload::EtcdWrites { .. } = workload {
        let (endpoint, channel) = etcd::leader(etcd_endpoints).await?;
        return Ok((endpoint, channel, String::new()));
    }
    let (endpoint, channel) = target.connect_any().await?;
    Ok((endpoint, channel, token()?))
}

/// `clients` loops of `workload` until `deadline`: their latencies and failed operations.
/// With a `rate`, an open loop: client c sends its i-th operation at `(i·clients + c) / rate`
/// seconds after the start, and its latency counts from then.
async fn drive(
    (channel, token, run_id): (Channel, String, String),
    (clients, rate): (usize, Option<f64>),
    workload: Workload,
    deadline: Instant,
) -> anyhow::Result<(Histogram<u64>, Seconds, u64)> {
    let started = Instant::now();
    let workers = (0..clients).map(|c| {
        let (channel, token, run_id) = (channel.clone(), token.clone(), run_id.clone());
        let due =
            move |i: u64| rate.map(|r| started + Duration::from_secs_f64((i as f64 * clients as f64 + c as f64) / r));
        tokio::spawn(async move {
            let (mut latencies, mut seconds) = (Histogram::<u64>::new(3)?, Seconds::default());
            let (mut errors, mut i) = (0u64, 0u64);
            loop {
                let sent = match due(i) {
                    Some(due) if due >= deadline => break,
                    Some(due) => {
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None if Instant::now() >= deadline => break,
                    None => Instant::now(),
                };
                match operate(channel.clone(), &token, workload, &run_id, c, i).await {
                    Ok(()) => {
                        let latency = sent.elapsed();
                        latencies.record(latency.as_micros() as u64)?;
                        seconds.record(sent.saturating_duration_since(started).as_secs() as usize, latency);
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            anyhow::Ok((latencies, seconds, errors))
        })
    });
    let (mut all, mut by_second) = (Histogram::<u64>::new(3)?, Seconds::default());
    let mut errors = 0;
    for w in futures::future::join_all(workers).await {
        let (h, s, e) = w.context("load worker")??;
        all.add(h)?;
        by_second.add(s);
        errors += e;
    }
    Ok((all, by_second, errors))
}

pub async fn run(
    target: &super::Target,
    (clients, seconds, rate): (usize, u64, Option<f64>),
    workload: Workload,
    (etcd_endpoints, json): (&[String], bool),
) -> anyhow::Result<()> {
    anyhow::ensure!(clients > 0, "--clients must be at least 1");
    anyhow::ensure!(rate.is_none_or(|r| r.is_finite() && r > 0.0), "--rate must be a positive number");
    let (endpoint, channel, token) = connect(target, workload, etcd_endpoints).await?;
    // A dry run: a refusal (not signed in, not a member, not an operator) is said once, clearly.
    let run_id = uuid::Uuid::new_v4().to_string();
    operate(channel.clone(), &token, workload, &run_id, 0, u64::MAX).await.context("the first operation")?;
    let started_unix_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let (all, by_second, errors) = drive((channel, token, run_id), (clients, rate), workload, deadline).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let report = LoadReport {
        store: if let Workload::EtcdWrites { .. } = workload { "etcd" } else { "kizuna" },
        endpoint,
        workload: workload.describe(),
        clients,
        rate,
        seconds: elapsed,
        operations: all.len(),
        per_second: all.len() as f64 / elapsed,
        errors,
        latency: Percentiles::of(&all),
        started_unix_ms,
        by_second: by_second.0,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let l = &report.latency;
    println!(
        "{}: {clients} clients, {elapsed:.1}s: {} {} ({:.0}/s), {errors} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.endpoint, report.operations, report.workload, report.per_second, l.p50, l.p99, l.max
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_second_counts_its_operations_and_keeps_its_slowest() {
        let ms = Duration::from_millis;
        let mut one = Seconds::default();
        one.record(0, ms(2));
        one.record(0, ms(5));
        one.record(2, ms(140));
        let mut other = Seconds::default();
        other.record(0, ms(3));
        other.record(3, ms(1));
        one.add(other);
        let figures: Vec<(u64, f64)> = one.0.iter().map(|s| (s.operations, s.max_ms)).collect();
        assert_eq!(figures, [(3, 5.0), (0, 0.0), (1, 140.0), (1, 1.0)]);
    }
}
