//! grpc.health.v1 for one node: SERVING while it applies the log; NOT_SERVING, for good, once
//! its Raft core stopped on a fault (a storage or decode error during apply), so that load
//! balancers and orchestrators route around it. `kizuna status` says why.

use std::sync::Arc;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{Instrument, error};

use crate::node::Node;

/// Reports `services` (and the whole server, `""`) SERVING, then NOT_SERVING once the node
/// stops applying the log, with one log line naming the cause. Ends when the node stops.
pub(super) fn watch_apply(node: Arc<Node>, reporter: HealthReporter, services: Vec<&'static str>) {
    let task = async move {
        for &service in &services {
            reporter.set_service_status(service, ServingStatus::Serving).await;
        }
        let Some(fault) = node.stopped_applying().await else { return };
        error!(
            %fault,
            "this node stopped applying the log: it reports NOT_SERVING and refuses requests that \
             need its state; repair or replace it, then restart it (docs/operations.md)"
        );
        for service in services.into_iter().chain([""]) {
            reporter.set_service_status(service, ServingStatus::NotServing).await;
        }
    };
    tokio::spawn(task.in_current_span());
}
