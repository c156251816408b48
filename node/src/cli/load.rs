//! `kizuna load`: concurrent writers against a hub; committed writes/s and latency percentiles.
//! A small loop for quick figures; the full benchmark suite lives apart from it.

use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna_proto::records::PutRecordRequest;
use kizuna_proto::records::records_client::RecordsClient;

pub async fn run(target: &super::Target, clients: usize, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(clients > 0, "--clients must be at least 1");
    let (endpoint, channel) = target.connect_any().await?;
    let run_id = uuid::Uuid::new_v4();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..clients).map(|c| {
        let mut client = RecordsClient::new(channel.clone());
        tokio::spawn(async move {
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let req = PutRecordRequest {
                    key: format!("load/{c}/{}", i % 100),
                    value: format!("{run_id} write {i} from client {c}"),
                    request_id: format!("{run_id}-{c}-{i}"),
                };
                let t = Instant::now();
                match client.put(req).await {
                    Ok(_) => latencies.record(t.elapsed().as_micros() as u64)?,
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
    println!(
        "{endpoint}: {clients} clients, {:.1}s: {} committed writes ({:.0}/s), {errors} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed,
        all.len(),
        all.len() as f64 / elapsed,
        ms(0.5),
        ms(0.99),
        all.max() as f64 / 1000.0
    );
    Ok(())
}
