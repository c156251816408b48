//! Raft's own thread: a current-thread tokio runtime that runs openraft and the node's Raft
//! service, apart from the node's multi-thread runtime (the public API and everything else).
//!
//! A write passes through a chain of openraft's tasks — the core, the log's append, a
//! replication task and a connection per follower, the state machine's worker — and, on a
//! follower, the Raft service's stream. On the multi-thread runtime each hand-off could wake
//! another worker thread (a syscall and a context switch, and often a second worker woken to
//! look for work); on one thread they run one after the other, and that thread's wake-ups
//! are the network's and the log's syncer's alone. Measured on the side-by-side's hub, a
//! committed write cost ~12 % less CPU at 256 clients and the hub wrote ~9 % more
//! (docs/benchmarks.md, session 42).
//!
//! The trade: what runs here waits behind whatever runs or blocks here. Apply's batch (a read,
//! an unsealing and a decision per entry, then one RocksDB write) and the log's append are on
//! this thread, as they were on a worker before — but a long apply or a write stall of the
//! state's RocksDB now also holds back this node's heartbeats and answers (before, the core
//! went on on the other worker while apply waited; the log's appends were always on the core's
//! path): one longer than the election timeout on a leader costs an election. A follower's
//! fsync of a lone entry is here too while the disk answers quickly (`kizuna_store`'s log
//! store: a sync of 20 ms or more sends the next ones to the log's syncer thread until one is
//! quick again). The Raft port's TLS records and handshakes are here too. Snapshots are built,
//! installed and read on the blocking pool, never here.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinError;
use tracing::Instrument;

/// How long the tasks left on the thread when it stops get to finish their blocking work.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// The thread and its runtime; they end when [`RaftThread::stop`] is called or this is
/// dropped (the tasks still on it are dropped then: shut Raft down first).
pub struct RaftThread {
    handle: Handle,
    /// Sent or dropped: the thread leaves its runtime.
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RaftThread {
    pub fn start() -> std::io::Result<Self> {
        // The runtime is made on the thread itself: one dropped on a worker of the node's
        // runtime (had the thread failed to start) would panic there.
        let (made, runtime_made) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("raft".into()).spawn(move || {
            let built = tokio::runtime::Builder::new_current_thread().enable_all().thread_name("raft-blocking").build();
            let runtime = match built {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = made.send(Err(e));
                    return;
                }
            };
            let _ = made.send(Ok(runtime.handle().clone()));
            runtime.block_on(async {
                let _ = stopped.await;
            });
            runtime.shutdown_timeout(STOP_PATIENCE);
        })?;
        // A wait of a moment, once per node start: a current-thread runtime is quickly made.
        let handle = runtime_made.recv().map_err(|_| std::io::Error::other("Raft's thread ended at its start"))??;
        Ok(Self { handle, stop, thread })
    }

    /// Runs `task` on the thread (tasks it spawns stay there) and returns its output.
    pub async fn run<F>(&self, task: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task.in_current_span()).await
    }

    /// The runtime, for what is spawned from outside it.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// `listener`, registered with the thread's runtime: the connections it accepts are then
    /// read and written there too.
    pub async fn adopt(&self, listener: TcpListener) -> std::io::Result<TcpListener> {
        let listener = listener.into_std()?;
        self.run(async move { TcpListener::from_std(listener) }).await.map_err(std::io::Error::other)?
    }

    /// Ends the runtime (dropping the tasks still on it) and waits until the thread is gone.
    pub async fn stop(self) {
        let Self { stop, thread, .. } = self;
        let _ = stop.send(());
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::warn!("Raft's thread panicked"),
            Err(e) => tracing::warn!("waiting for Raft's thread: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RaftThread;

    #[tokio::test]
    async fn tasks_run_on_the_raft_thread_and_are_dropped_when_it_stops() {
        let thread = RaftThread::start().expect("the thread starts");
        let name = thread.run(async { std::thread::current().name().map(str::to_owned) }).await.expect("runs");
        assert_eq!(name.as_deref(), Some("raft"));

        // A task that never ends holds this: it is dropped when the thread stops.
        let held = std::sync::Arc::new(());
        let in_task = held.clone();
        thread.handle().spawn(async move {
            let _held = in_task;
            std::future::pending::<()>().await;
        });
        thread.stop().await;
        assert_eq!(std::sync::Arc::strong_count(&held), 1, "the task was dropped with the thread");
    }

    /// The listener is bound on a runtime that then ends: only a listener the thread's own
    /// runtime drives still accepts.
    #[test]
    fn an_adopted_listener_accepts_after_the_runtime_it_was_bound_on_ends() {
        let binding = tokio::runtime::Runtime::new().expect("a runtime");
        let thread = RaftThread::start().expect("the thread starts");
        let listener = binding.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a port");
        let addr = listener.local_addr().expect("an address");
        let listener = binding.block_on(thread.adopt(listener)).expect("adopted");
        drop(binding);

        let accepted = thread.handle().spawn(async move { listener.accept().await.map(|_| ()) });
        let _client = std::net::TcpStream::connect(addr).expect("connects");
        let waiting = tokio::runtime::Runtime::new().expect("a runtime");
        let accepted =
            waiting.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), accepted).await });
        assert!(matches!(accepted, Ok(Ok(Ok(())))), "not accepted: {accepted:?}");
        waiting.block_on(thread.stop());
    }
}
