//! Link faults: a userspace TCP proxy per ordered pair of nodes (used by the chaos harness and
//! by the in-process hub tests).
//!
//! Node A reaches node B's raft port only through the proxy (A→B), because A's connector
//! (`RoutedConnector`) maps B's address to that proxy. A connection belongs to the direction
//! that opened it: node A's requests to B and B's answers to them travel over A→B, so cutting
//! A→B alone is a one-way partition (A can no longer reach B; B still reaches A).
//!
//! Faults: cut (open connections are dropped and new ones reset at once, so a cut-off node
//! notices quickly instead of hanging), reset (drop the open connections, accept new ones),
//! delay with jitter per forwarded chunk (a far or congested region), and a bandwidth cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::rng::Rng;

/// The link's current shape, shared with its pumps.
#[derive(Default)]
struct Shape {
    /// Added one-way delay per forwarded chunk, ms.
    delay_ms: AtomicU64,
    /// Extra uniform random delay on top, 0..=jitter_ms per chunk.
    jitter_ms: AtomicU64,
    /// Bytes per second; 0 is unlimited.
    bandwidth: AtomicU64,
}

/// One direction of one link.
pub struct LinkProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    /// Bumped to drop every open connection (a flaky link, a NAT timeout).
    epoch: watch::Sender<u64>,
    shape: Arc<Shape>,
}

/// Forwards bytes from `from` to `to`, shaped by the link's current delay, jitter and bandwidth.
/// Latency is pipelined as on a real link: each chunk is due its delay after it was read, while
/// later chunks are already being read; chunks stay in order (a chunk is never due before the
/// one ahead of it). The bandwidth cap paces the writes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shape: Arc<Shape>, mut rng: Rng) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let read_side = {
        let shape = shape.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut last_due = Instant::now();
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let jitter = shape.jitter_ms.load(Ordering::Relaxed);
                let delay = shape.delay_ms.load(Ordering::Relaxed) + if jitter > 0 { rng.below(jitter + 1) } else { 0 };
                last_due = last_due.max(Instant::now() + Duration::from_millis(delay));
                if tx.send((last_due, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let write_side = async move {
        while let Some((due, chunk)) = rx.recv().await {
            // Only a chunk due later waits: a timer rounds up to the next millisecond, which at
            // loopback speed cost every hop a millisecond (10 ms a post on a 0 ms "WAN").
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            let bandwidth = shape.bandwidth.load(Ordering::Relaxed);
            if let Some(transfer_ms) = (chunk.len() as u64 * 1000).checked_div(bandwidth) {
                tokio::time::sleep(Duration::from_millis(transfer_ms)).await;
            }
        }
    };
    // At the end of the input, what is still queued is delivered before the direction ends.
    tokio::join!(read_side, write_side);
}

impl LinkProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// A proxy listening on `listen` (a port named in a topology, e.g. a peer hub's endpoint).
    pub async fn start_at(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (up, up_rx) = watch::channel(true);
        let (epoch, epoch_rx) = watch::channel(0u64);
        let shape = Arc::new(Shape::default());
        let link_shape = shape.clone();
        let mut rng = Rng::new(u64::from(addr.port()));
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                if !*up_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut up_rx = up_rx.clone();
                let mut epoch_rx = epoch_rx.clone();
                epoch_rx.mark_unchanged();
                let shape = link_shape.clone();
                let (rng_in, rng_out) = (rng.fork(1), rng.fork(2));
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_read, out_write, shape.clone(), rng_in) => {}
                        _ = pump(out_read, in_write, shape, rng_out) => {}
                        _ = up_rx.wait_for(|up| !*up) => {}
                        _ = epoch_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Self { addr, up, epoch, shape })
    }

    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }

    /// Drops every open connection; new ones are accepted as before.
    pub fn reset(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shape.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_jitter(&self, jitter: Duration) {
        self.shape.jitter_ms.store(jitter.as_millis() as u64, Ordering::Relaxed);
    }

    /// Caps the link at `bytes_per_second` (0 lifts the cap).
    pub fn set_bandwidth(&self, bytes_per_second: u64) {
        self.shape.bandwidth.store(bytes_per_second, Ordering::Relaxed);
    }
}
