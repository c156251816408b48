//! Link faults: a userspace TCP proxy per ordered pair of nodes (used by the chaos harness and
//! by the in-process hub tests).
//!
//! Node A reaches node B's raft port only through the proxy (A→B), because A's connector
//! (`RoutedConnector`) maps B's address to that proxy. Cutting a link drops its open
//! connections and resets new ones at once, so a cut-off node notices quickly instead of
//! hanging; a delay holds every forwarded chunk back, like a slow inter-region link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One direction of one link.
pub struct LinkProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    /// Added one-way delay per forwarded chunk, in ms (a slow, far-away region).
    delay_ms: Arc<AtomicU64>,
}

/// Forwards bytes from `from` to `to`, holding each chunk back by the current delay.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay_ms: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl LinkProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, up_rx) = watch::channel(true);
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                if !*up_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut up_rx = up_rx.clone();
                let delay = delay.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_read, out_write, delay.clone()) => {}
                        _ = pump(out_read, in_write, delay) => {}
                        _ = up_rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { addr, up, delay_ms })
    }

    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}
