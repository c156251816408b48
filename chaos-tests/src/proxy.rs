//! Link faults: a userspace TCP proxy per ordered pair of nodes (used by the chaos harness and
//! by the in-process hub tests).
//!
//! Node A reaches node B's raft port only through the proxy (A→B), because A's connector
//! (`RoutedConnector`) maps B's address to that proxy. Cutting a link drops its open connections and resets new ones at
//! once, so a cut-off node notices quickly instead of hanging.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One direction of one link.
pub struct LinkProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl LinkProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, up_rx) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                if !*up_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut up_rx = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = up_rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { addr, up })
    }

    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }
}
