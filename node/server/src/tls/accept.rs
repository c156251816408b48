//! A TLS accept loop in front of a tonic server: connections are accepted and their handshakes
//! completed here, each on its own task (a slow one holds up nobody), with the acceptor of the
//! moment — so a certificate reloaded from disk applies to the next connection — and a refused
//! handshake is reported instead of vanishing inside tonic.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Told of every refused handshake: the client's address and why.
pub type Refused = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// The established TLS connections of a listener, for `serve_with_incoming*`. Dropping it
/// stops the accept loop and closes the listening socket.
pub struct TlsIncoming {
    streams: ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>,
    accepting: JoinHandle<()>,
}

impl TlsIncoming {
    /// Accepts on `listener` with `acceptor()` asked anew for each connection.
    pub fn new(
        listener: TcpListener,
        acceptor: impl Fn() -> TlsAcceptor + Send + Sync + 'static,
        refused: Refused,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(64);
        let accepting = tokio::spawn(accept(listener, Arc::new(acceptor), sender, refused));
        Self { streams: ReceiverStream::new(receiver), accepting }
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.streams).poll_next(cx)
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

type Acceptor = Arc<dyn Fn() -> TlsAcceptor + Send + Sync>;

async fn accept(
    listener: TcpListener,
    acceptor: Acceptor,
    streams: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
    refused: Refused,
) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(%e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small gRPC answers must not wait for the client's delayed ACK (see `node::start`).
        let _ = tcp.set_nodelay(true);
        let (acceptor, streams, refused) = (acceptor(), streams.clone(), refused.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = streams.send(Ok(stream)).await;
                }
                Ok(Err(e)) => refused(from, e.to_string()),
                Err(_) => refused(from, "the TLS handshake timed out".into()),
            }
        });
    }
}
