//! `kizuna load --attachment-mib N --room R`: what a large upload costs everyone else. Posts
//! into room R one after another, first alone, then while a file of N MiB uploads (its chunks
//! go through the same Raft log), then downloads the file; prints post latency in both phases
//! and the upload and download rates (docs/benchmarks.md, "Attachments").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use kizuna_proto::attachments::attachment_service_client::AttachmentServiceClient;
use kizuna_proto::attachments::{DownloadRequest, Variant};
use kizuna_proto::posts::CreatePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use tonic::transport::Channel;

use super::user::{authed, token};

pub async fn run(target: &super::Target, room: u64, mib: u64, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(mib > 0, "--attachment-mib must be at least 1");
    let token = token()?;
    let (endpoint, channel) = target.connect_any().await?;
    let run_id = uuid::Uuid::new_v4().to_string();
    post(channel.clone(), &token, room, &format!("{run_id}-dry")).await.context("the first post")?;

    let alone = posts_until(channel.clone(), &token, room, &run_id, Stop::After(Duration::from_secs(seconds))).await?;
    let file = sample_file(mib, &run_id)?;
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let upload = async {
        let uploaded = super::attachments::upload(target, &token, room, &file.path).await;
        done.store(true, Ordering::Relaxed);
        (uploaded, started.elapsed().as_secs_f64())
    };
    let during_id = format!("{run_id}-u");
    let posts = posts_until(channel.clone(), &token, room, &during_id, Stop::When(done.clone()));
    let ((attachment, upload_s), during) = tokio::join!(upload, posts);
    let attachment = attachment.context("the upload")?;
    let during = during?;
    let (download_s, downloaded) = download(channel, &token, attachment.id).await?;
    anyhow::ensure!(downloaded == attachment.size, "downloaded {downloaded} of {} bytes", attachment.size);

    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("{endpoint}: posts into room {room}, one at a time");
    for (phase, h) in [("alone", &alone), (&*format!("during a {mib} MiB upload"), &during)] {
        println!(
            "  {phase:<28} {:>5} posts  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            h.len(),
            ms(h, 0.5),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }
    let rate = |seconds: f64| mib as f64 / seconds;
    println!("  upload   {mib} MiB in {upload_s:.2} s: {:.1} MiB/s (attachment {})", rate(upload_s), attachment.id);
    println!("  download {mib} MiB in {download_s:.2} s: {:.1} MiB/s", rate(download_s));
    Ok(())
}

/// When a run of posts ends.
enum Stop {
    After(Duration),
    When(Arc<AtomicBool>),
}

impl Stop {
    fn reached(&self, started: Instant) -> bool {
        match self {
            Stop::After(d) => started.elapsed() >= *d,
            Stop::When(flag) => flag.load(Ordering::Relaxed),
        }
    }
}

/// Posts one after another until `stop`; their latencies in µs.
async fn posts_until(
    channel: Channel,
    token: &str,
    room: u64,
    run_id: &str,
    stop: Stop,
) -> anyhow::Result<Histogram<u64>> {
    let mut latencies = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    let mut i = 0u64;
    while !stop.reached(started) {
        let t = Instant::now();
        post(channel.clone(), token, room, &format!("{run_id}-{i}")).await?;
        latencies.record(t.elapsed().as_micros() as u64)?;
        i += 1;
    }
    Ok(latencies)
}

async fn post(channel: Channel, token: &str, room: u64, key: &str) -> anyhow::Result<()> {
    let text = "訪問しました。血圧安定、食事量やや低下。明日も様子を見ます。".to_owned();
    let req = CreatePostRequest { idempotency_key: key.into(), room_id: room, text, ..Default::default() };
    PostServiceClient::new(channel).create_post(authed(req, token)?).await?;
    Ok(())
}

/// Downloads the attachment; the seconds it took and the bytes received.
async fn download(channel: Channel, token: &str, id: u64) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let req = DownloadRequest { attachment_id: id, variant: Variant::Original as i32, offset: 0 };
    let mut stream = AttachmentServiceClient::new(channel).download(authed(req, token)?).await?.into_inner();
    let mut received = 0u64;
    while let Some(message) = stream.message().await? {
        received += message.chunk.len() as u64;
    }
    Ok((started.elapsed().as_secs_f64(), received))
}

/// A PDF-typed file of exactly `mib` MiB (the hub's cap is a whole number of MiB) whose bytes differ per run (so no upload is deduplicated),
/// removed when dropped.
struct SampleFile {
    path: std::path::PathBuf,
}

impl Drop for SampleFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sample_file(mib: u64, run_id: &str) -> anyhow::Result<SampleFile> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("kizuna-load-{run_id}.pdf"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let seed = run_id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut block = vec![0u8; 1 << 20];
    for n in 0..mib {
        // Cheap, varied bytes: a counter mixed with the run's seed.
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = (seed.wrapping_add(n * 1_000_003 + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
        }
        if n == 0 {
            // A PDF's magic bytes: the hub detects the type from them. Exactly `mib` MiB.
            block[..9].copy_from_slice(b"%PDF-1.4\n");
        }
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(SampleFile { path })
}
