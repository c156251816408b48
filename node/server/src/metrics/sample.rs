//! The gauges read when Prometheus scrapes: Raft, storage, queues, certificates, the process.

use std::path::PathBuf;
use std::sync::Arc;

use kizuna_domain::HubView;
use kizuna_domain::federation::HubName;
use metrics::gauge;

use crate::config::HubConfig;
use crate::member::NodeRole;
use crate::node::Node;

/// Fetches counted at most (a hub has a handful; more reads as this many).
const FETCHES_COUNTED: usize = 10_000;

/// Reads one node's state into gauges.
pub(super) struct Sampler {
    node: Arc<Node>,
    node_label: String,
    region: String,
    peers: Vec<HubName>,
    data_dir: PathBuf,
    /// The node's certificate and the hub's CA (PEM files), when the hub runs TLS.
    certificates: Vec<(&'static str, PathBuf)>,
}

impl Sampler {
    pub(super) fn new(node: Arc<Node>, hub: &HubConfig) -> Self {
        let me = hub.nodes.iter().find(|n| n.id == node.id);
        let peers =
            hub.federation.as_ref().map(|f| f.peers.iter().filter_map(|p| HubName::new(&p.name).ok()).collect());
        let certificates = match (&hub.tls, me) {
            (Some(tls), Some(me)) => {
                let (cert, _) = crate::tls::node_files(&tls.dir, me);
                vec![("node", cert), ("ca", tls.dir.join("ca.pem"))]
            }
            _ => vec![],
        };
        Self {
            node_label: node.id.to_string(),
            region: me.map(|n| n.region().to_owned()).unwrap_or_default(),
            data_dir: me.map(|n| n.data_dir.clone()).unwrap_or_default(),
            peers: peers.unwrap_or_default(),
            certificates,
            node,
        }
    }

    /// Every gauge as it is now, then the whole registry in the text format (blocking reads
    /// of RocksDB and /proc: run apart from the async workers).
    pub(super) fn render(&self) -> String {
        self.raft();
        self.storage();
        self.queues();
        self.certificates();
        self.process();
        self.own_lines(&super::registry().render())
    }

    /// The registry is the process's: where several nodes share a process (the in-process test
    /// hubs) each serves only its own series, so Prometheus never counts a node twice. A lone
    /// node's process keeps every line.
    fn own_lines(&self, text: &str) -> String {
        let mine = format!("node=\"{}\"", self.node_label);
        let mut out = String::with_capacity(text.len());
        for line in text.lines().filter(|l| !l.contains("node=\"") || l.contains(&mine)) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn set(&self, name: &'static str, value: f64) {
        gauge!(name, "node" => self.node_label.clone(), "region" => self.region.clone()).set(value);
    }

    fn raft(&self) {
        let h = self.node.local_health();
        let is = |role: NodeRole| if h.role == role { 1.0 } else { 0.0 };
        self.set("kizuna_raft_has_leader", if h.leader_id.is_some() { 1.0 } else { 0.0 });
        self.set("kizuna_raft_is_leader", is(NodeRole::Leader));
        self.set("kizuna_raft_apply_failed", is(NodeRole::Failed));
        self.set("kizuna_raft_term", h.term as f64);
        self.set("kizuna_raft_last_log_index", h.last_log_index as f64);
        self.set("kizuna_raft_applied_index", h.applied_index as f64);
        self.set("kizuna_raft_apply_lag_entries", h.last_log_index.saturating_sub(h.applied_index) as f64);
        self.set("kizuna_raft_snapshot_index", h.snapshot_index as f64);
        self.set("kizuna_raft_snapshots_installed", h.snapshots_installed as f64);
        self.set("kizuna_raft_stale", if h.stale_reason.is_some() { 1.0 } else { 0.0 });
        // Every member has a value, 0 when this node does not lead: a node that stepped down
        // must not keep reporting the lag it last saw.
        let lags = self.node.replication_lag();
        for peer in self.node.member_ids().into_iter().filter(|id| *id != self.node.id) {
            let lag = lags.iter().find(|(id, _)| *id == peer).map_or(0, |(_, lag)| *lag);
            let labels = [("node", self.node_label.clone()), ("peer", peer.to_string())];
            gauge!("kizuna_raft_replication_lag_entries", &labels).set(lag as f64);
        }
    }

    fn storage(&self) {
        for p in self.node.state.storage_properties() {
            let labels = [("node", self.node_label.clone()), ("cf", p.column_family.to_owned())];
            gauge!(p.metric, &labels).set(p.value as f64);
        }
        if let Some((free, total)) = filesystem_space(&self.data_dir) {
            self.set("kizuna_data_dir_free_bytes", free as f64);
            self.set("kizuna_data_dir_size_bytes", total as f64);
        }
    }

    fn queues(&self) {
        self.set("kizuna_live_subscribers", self.node.live.count() as f64);
        match self.node.state.journal.backlog() {
            Ok(backlog) => self.set("kizuna_audit_journal_backlog", backlog as f64),
            Err(e) => tracing::warn!("metrics: cannot read the audit journal: {e}"),
        }
        // An upper bound: a record shipped at once leaves a hole the count does not see.
        match self.node.state.observations.backlog() {
            Ok(backlog) => self.set("kizuna_disaster_journal_backlog", backlog as f64),
            Err(e) => tracing::warn!("metrics: cannot read the journal of safety checks: {e}"),
        }
        let hub = self.node.state.hub();
        for peer in &self.peers {
            match hub.outbound(peer) {
                Ok(stream) => {
                    let depth = stream.pending().map_or(0, |p| p.len());
                    let labels = [("node", self.node_label.clone()), ("peer", peer.to_string())];
                    gauge!("kizuna_federation_outbox_messages", &labels).set(depth as f64);
                }
                Err(e) => tracing::warn!(%peer, "metrics: cannot read the outbox: {e}"),
            }
        }
        match hub.fetches(FETCHES_COUNTED) {
            Ok(fetches) => self.set("kizuna_federation_fetches_pending", fetches.len() as f64),
            Err(e) => tracing::warn!("metrics: cannot read the fetches: {e}"),
        }
        match hub.stored_bytes() {
            Ok(bytes) => self.set("kizuna_attachments_stored_bytes", bytes as f64),
            Err(e) => tracing::warn!("metrics: cannot read the stored bytes: {e}"),
        }
    }

    fn certificates(&self) {
        for (which, path) in &self.certificates {
            if let Some(expiry) = certificate_expiry(path) {
                let labels = [("node", self.node_label.clone()), ("certificate", (*which).to_owned())];
                gauge!("kizuna_tls_certificate_expiry_timestamp_seconds", &labels).set(expiry as f64);
            }
        }
    }

    fn process(&self) {
        if let Some(rss) = resident_bytes() {
            self.set("kizuna_process_resident_memory_bytes", rss as f64);
        }
        if let Some(heap) = super::heap_figures() {
            self.set("kizuna_heap_allocated_bytes", heap.allocated as f64);
            self.set("kizuna_heap_resident_bytes", heap.resident as f64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.set("kizuna_process_open_fds", fds.count() as f64);
        }
    }
}

/// The resident set size, from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free (for unprivileged users) and total bytes of the filesystem holding `dir`.
fn filesystem_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some((stat.f_bavail.saturating_mul(stat.f_frsize), stat.f_blocks.saturating_mul(stat.f_frsize)))
}

/// When the first certificate of a PEM file expires, in Unix seconds.
fn certificate_expiry(path: &std::path::Path) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}
