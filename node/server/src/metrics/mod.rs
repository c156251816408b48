//! Prometheus metrics of a node, served over plain HTTP at `GET /metrics` on the node's
//! `metrics_addr` (an operators' network: the figures name no person and no patient).
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade
//! (gRPC calls in [`grpc`], proposals in `Node::write`, Raft RPCs in the network, log appends
//! in the store); gauges that describe the node's state now (Raft, storage, process, queues)
//! are read when Prometheus scrapes ([`sample`]), so they are never stale and cost nothing
//! between scrapes. Every series carries the node's id as `node`: one process is one node in
//! production, while the in-process tests run several nodes against one registry.

pub mod grpc;
mod sample;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::get;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::config::HubConfig;
use crate::node::Node;

/// Histogram buckets of durations, in seconds: from a fast in-memory read (0.5 ms) to a slow
/// fsync or a WAN round trip under faults (10 s).
const SECONDS_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's registry, installed as the `metrics` recorder on first use.
pub fn registry() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder =
            PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS);
        // Only a malformed bucket list fails, and ours is fixed and sorted.
        let recorder = builder.expect("fixed, sorted buckets").build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: this node's metrics stay empty");
        }
        // Counters an alert watches with increase() exist from the start at 0: a series that
        // appears only with its first event would not count that event.
        metrics::counter!("kizuna_emergency_accesses_opened_total").increment(0);
        drain_histograms(handle.clone());
        handle
    })
}

/// A node's proposal series (`kizuna_raft_proposals_total`, `kizuna_raft_proposal_seconds` by
/// result), each looked up in the registry once, at its first use: every write records them,
/// and a lookup per write hashes and copies the labels (as `grpc::MethodMetrics`).
pub struct ProposalMetrics {
    node: String,
    committed: OnceLock<(Counter, Histogram)>,
    failed: OnceLock<(Counter, Histogram)>,
}

impl ProposalMetrics {
    pub fn new(node: u64) -> Self {
        Self { node: node.to_string(), committed: OnceLock::new(), failed: OnceLock::new() }
    }

    /// One proposal, committed or not, that took `seconds` from the call to its answer.
    pub fn record(&self, committed: bool, seconds: f64) {
        let (cell, result) = if committed { (&self.committed, "committed") } else { (&self.failed, "failed") };
        let (count, time) = cell.get_or_init(|| {
            let labels = [("node", self.node.clone()), ("result", result.to_owned())];
            (
                metrics::counter!("kizuna_raft_proposals_total", &labels),
                metrics::histogram!("kizuna_raft_proposal_seconds", &labels),
            )
        });
        count.increment(1);
        time.record(seconds);
    }
}

/// What the process's allocator says of its heap, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapFigures {
    /// Bytes the program holds allocated now.
    pub allocated: u64,
    /// Bytes of the allocator's pages resident in memory (allocated, cached and not yet
    /// returned to the system).
    pub resident: u64,
}

static HEAP_FIGURES: OnceLock<fn() -> Option<HeapFigures>> = OnceLock::new();

/// Tells the metrics how to read the heap's figures: the allocator is the binary's choice
/// (jemalloc in `kizuna`), so the binary says; without it the heap gauges are left out.
pub fn report_heap_with(read: fn() -> Option<HeapFigures>) {
    let _ = HEAP_FIGURES.set(read);
}

fn heap_figures() -> Option<HeapFigures> {
    HEAP_FIGURES.get().and_then(|read| read())
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into their buckets every [`UPKEEP_EVERY`]: the recorder keeps every
/// sample until then, and only a scrape would fold them otherwise — a node nobody scrapes
/// (no `metrics_addr`, or Prometheus down) would hold every request's timing forever.
fn drain_histograms(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the metrics upkeep ({e}): histograms are folded only when scraped");
    }
}

/// Serves `GET /metrics` for `node` on `listener` until `stopped`.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    hub: HubConfig,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    registry();
    let sampler = Arc::new(sample::Sampler::new(node, &hub));
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let sampler = sampler.clone();
            async move {
                tokio::task::spawn_blocking(move || sampler.render())
                    .await
                    .unwrap_or_else(|e| format!("# the metrics could not be read: {e}\n"))
            }
        }),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
}
