//! `kizuna load`: concurrent clients against a hub, as the signed-in user; operations/s and
//! latency percentiles. A small loop for quick figures (docs/benchmarks.md): record writes (the
//! write path; records are operators' only) or timeline reads of one room (the read path, as a
//! member of that room reads it).

use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna_proto::posts::TimelineRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::records::PutRecordRequest;
use kizuna_proto::records::record_service_client::RecordServiceClient;
use tonic::transport::Channel;

use super::user::{authed, token};

/// What each client does in a loop.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// Replicated record writes, each with its own request id.
    Writes,
    /// Linearizable reads of one room's newest 50 posts.
    Timeline { room: u64 },
}

/// One operation of `workload`, the `i`-th of client `c` in run `run_id`.
async fn operate(
    channel: Channel,
    token: &str,
    workload: Workload,
    run_id: &str,
    c: usize,
    i: u64,
) -> anyhow::Result<()> {
    match workload {
        Workload::Writes => {
            let req = PutRecordRequest {
                key: format!("load/{c}/{}", i % 100),
                value: format!("{run_id} write {i} from client {c}"),
                idempotency_key: format!("{run_id}-{c}-{i}"),
            };
            RecordServiceClient::new(channel).put_record(authed(req, token)?).await?;
        }
        Workload::Timeline { room } => {
            let req = TimelineRequest { room_id: room, page_size: 50, ..Default::default() };
            PostServiceClient::new(channel).timeline(authed(req, token)?).await?;
        }
    }
    Ok(())
}

pub async fn run(target: &super::Target, clients: usize, seconds: u64, workload: Workload) -> anyhow::Result<()> {
    anyhow::ensure!(clients > 0, "--clients must be at least 1");
    let token = token()?;
    let (endpoint, channel) = target.connect_any().await?;
    // A dry run: a refusal (not signed in, not a member, not an operator) is said once, clearly.
    let run_id = uuid::Uuid::new_v4().to_string();
    operate(channel.clone(), &token, workload, &run_id, 0, u64::MAX).await.context("the first operation")?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..clients).map(|c| {
        let (channel, token, run_id) = (channel.clone(), token.clone(), run_id.clone());
        tokio::spawn(async move {
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match operate(channel.clone(), &token, workload, &run_id, c, i).await {
                    Ok(()) => latencies.record(t.elapsed().as_micros() as u64)?,
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            anyhow::Ok((latencies, errors))
        })
    });
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for w in futures::future::join_all(workers).await {
        let (h, e) = w.context("load worker")??;
        all.add(h)?;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let what = match workload {
        Workload::Writes => "committed writes".to_owned(),
        Workload::Timeline { room } => format!("timeline reads of room {room}"),
    };
    println!(
        "{endpoint}: {clients} clients, {elapsed:.1}s: {} {what} ({:.0}/s), {errors} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        all.len() as f64 / elapsed,
        ms(0.5),
        ms(0.99),
        all.max() as f64 / 1000.0
    );
    Ok(())
}
