//! One running node: its store, its Raft member, the internal Raft service and the public API.
//!
//! [`Node`] holds what the services share and the write and read paths (propose here or
//! forward to the leader; linearizable or local reads). [`start`] assembles and serves it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, Fatal, LinearizableReadError, RaftError};
use openraft::{ReadPolicy, ServerState};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{HubConfig, NodeConfig};
use crate::member::{ClusterStatus, MemberStatus, NodeHealth, NodeRole};
use crate::raft::contact::LeaderContact;
use crate::raft::network::{Network, PeerChannels};
use crate::raft::peers::PeerCallError;
use crate::raft::service::RaftService;
use crate::raft::thread::RaftThread;
use crate::raft::{HubNode, NodeId, Raft, RaftMetrics, TypeConfig};
use crate::tls::Security;
use kizuna_domain::{Applied, Envelope, ValidationError};
use kizuna_store::{self, StateReader};

/// Why a write or a linearizable read did not happen. The API layer maps each to one gRPC
/// status (`api::status`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("this node is not the leader; the leader is node {leader_id:?}")]
    NotLeader { leader_id: Option<NodeId>, leader: Option<HubNode> },
    #[error("no leader is elected right now (this node cannot reach a quorum); retry shortly")]
    NoLeader,
    #[error(
        "no quorum answered within {0:?}; the write may or may not be applied, retry with the same idempotency key"
    )]
    Timeout(Duration),
    #[error(
        "this leader lost contact with its quorum; the write may or may not be applied, retry with the same idempotency key"
    )]
    QuorumLost,
    #[error("the leader could not be reached: {0}")]
    LeaderUnreachable(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("this node stopped applying the log: {0}; use another node")]
    ApplyStopped(String),
    #[error("this node is catching up from a snapshot of its leader; use another node")]
    InstallingSnapshot,
}

impl NodeError {
    /// The node cannot reach a quorum (or its leader) right now: local reads still work.
    pub fn is_quorum_unreachable(&self) -> bool {
        matches!(
            self,
            NodeError::NoLeader
                | NodeError::Timeout(_)
                | NodeError::QuorumLost
                | NodeError::LeaderUnreachable(_)
                | NodeError::NotLeader { leader: None, .. }
        )
    }
}

/// A call to the leader failed: its refusal of the request itself is passed on as it is,
/// anything else means the leader could not be reached.
impl From<PeerCallError> for NodeError {
    fn from(e: PeerCallError) -> Self {
        match e {
            PeerCallError::Invalid(message) => NodeError::Invalid(ValidationError::Forwarded(message)),
            PeerCallError::TimedOut(after) => NodeError::Timeout(after),
            PeerCallError::Unreachable(message) => NodeError::LeaderUnreachable(message),
            PeerCallError::Undecodable(message) => NodeError::Raft(message),
        }
    }
}

fn from_write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> NodeError {
    match e.forward_to_leader() {
        Some(f) => NodeError::NotLeader { leader_id: f.leader_id, leader: f.leader_node.clone() },
        None => NodeError::Raft(e.to_string()),
    }
}

fn from_read_error(e: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> NodeError {
    match &e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => {
            NodeError::NotLeader { leader_id: f.leader_id, leader: f.leader_node.clone() }
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => NodeError::NoLeader,
        _ => NodeError::Raft(e.to_string()),
    }
}

/// Wall-clock time in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the services of one node share.
pub struct Node {
    pub id: NodeId,
    pub info: HubNode,
    /// The newest apply version this node takes up (its build's; see `kizuna_domain::APPLY_VERSION`).
    pub max_apply_version: u32,
    pub raft: Raft,
    pub state: StateReader,
    pub channels: PeerChannels,
    snapshot_dir: PathBuf,
    incoming_seq: AtomicU64,
    /// How long a write or a read barrier may wait for a quorum before failing.
    pub quorum_timeout: Duration,
    /// A leader that has not heard from a quorum for this long refuses at once, and ends the
    /// writes and reads already waiting for one.
    quorum_silence_limit: Duration,
    /// A node that has not heard from a quorum (leader) or from its leader (follower, learner)
    /// for this long marks its local answers stale.
    contact_limit: Duration,
    /// When this node, as a follower or learner, last heard from its leader.
    pub leader_contact: LeaderContact,
    /// The topology allows voter placements that break the placement rule (development).
    pub allow_unsafe_placement: bool,
    /// Becomes true when the node stops: long-lived streams end so that shutdown completes.
    pub stopping: watch::Receiver<bool>,
    /// The hub's configured federation peers and what this node's sender last saw of them.
    pub federation: Arc<crate::federation::Board>,
    /// What this node accepts as attachments, and where uploads wait while they arrive.
    pub attachments: crate::attachments::Limits,
    /// Browsers' uploads in parts that this node is receiving.
    pub part_uploads: crate::attachments::staging::PartUploads,
    /// The hub's Web Push identity (None: the hub sends no push notices).
    pub pusher: Option<Arc<crate::push::Pusher>>,
    /// Push endpoints on plain http to the loopback address are accepted (tests).
    pub push_allow_loopback_http: bool,
    proposal_metrics: crate::metrics::ProposalMetrics,
    /// Why this node stopped applying the log, once it did (see [`watch_apply`]).
    apply_stopped: watch::Receiver<Option<String>>,
    /// The live events of this node's state, handed to its event streams.
    pub live: Arc<crate::live_events::LiveEvents>,
}

/// Why a snapshot of this node (and the purge of its log) was not done.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("raft refused: {0}")]
    Refused(String),
    #[error("{0} not done in time: {1}")]
    NotInTime(&'static str, String),
}

/// What [`Node::snapshot_now`] did: the snapshot's last index and how far the log is purged.
#[derive(Debug, Clone, Copy)]
pub struct Snapshotted {
    pub snapshot_index: u64,
    pub purged_index: Option<u64>,
}

impl Node {
    /// A snapshot of this node's state as applied now (built unless the last one is of that
    /// state) and, with `purge_log`, its log purged up to it. Waits for the snapshot as long as its build writes entries (a large
    /// state takes minutes), and fails once a quorum timeout passes with none written; the
    /// purge gets the quorum timeout.
    pub async fn snapshot_now(&self, purge_log: bool) -> Result<Snapshotted, SnapshotError> {
        let now = self.metrics();
        let applied = now.last_applied.map_or(0, |l| l.index);
        // A snapshot of the state as applied now is already there (the policy built one as
        // the last entries applied): it is the answer. Asking for another would start a build
        // of the same state that outlives this call and replaces the snapshot under whoever
        // reads it next (`admin snapshot-space` right after lost its files that way).
        let built = if now.snapshot.is_some_and(|l| l.index >= applied) {
            now
        } else {
            self.raft.trigger().snapshot().await.map_err(|e| SnapshotError::Refused(e.to_string()))?;
            self.wait_for_snapshot(applied).await?
        };
        let snapshot_index = built.snapshot.map_or(0, |l| l.index);
        let mut purged_index = built.purged.map(|l| l.index);
        if purge_log && snapshot_index > 0 {
            self.raft.trigger().purge_log(snapshot_index).await.map_err(|e| SnapshotError::Refused(e.to_string()))?;
            let purged =
                self.wait_until("log purge", move |m| m.purged.is_some_and(|l| l.index >= snapshot_index)).await?;
            purged_index = purged.purged.map(|l| l.index);
        }
        Ok(Snapshotted { snapshot_index, purged_index })
    }

    /// Raft's metrics once a snapshot reaches `applied`. A build that was already running when
    /// the snapshot was asked for may end below `applied` (Raft ignores a trigger while it
    /// builds): then the snapshot is asked for once more.
    async fn wait_for_snapshot(&self, applied: u64) -> Result<RaftMetrics, SnapshotError> {
        let reached = move |m: &RaftMetrics| m.snapshot.is_some_and(|l| l.index >= applied);
        if let Ok(built) = self.wait_until("snapshot", reached).await {
            return Ok(built);
        }
        self.raft.trigger().snapshot().await.map_err(|e| SnapshotError::Refused(e.to_string()))?;
        self.wait_until("snapshot", reached).await
    }

    /// Raft's metrics once `done` holds, waiting at most the quorum timeout.
    async fn wait_until(
        &self,
        what: &'static str,
        done: impl Fn(&RaftMetrics) -> bool + Send + 'static,
    ) -> Result<RaftMetrics, SnapshotError> {
        let waited = self.raft.wait(Some(self.quorum_timeout)).metrics(done, what).await;
        waited.map_err(|e| SnapshotError::NotInTime(what, e.to_string()))
    }

    /// A copy of Raft's current metrics (role, term, indexes, membership, replication).
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Why this node stopped applying the log: its Raft core stopped on a storage error (see
    /// `kizuna_store`'s apply) or a panic, and stays stopped until the node is restarted.
    pub fn apply_fault(&self) -> Option<String> {
        apply_fault_of(&self.raft, &self.state)
    }

    /// Waits until this node stops applying the log and returns why; `None` when the node
    /// stops (or Raft ends) without a fault first. Every live stream waits on this: it watches
    /// one signal that changes once, not Raft's metrics (thousands of streams would each wake
    /// at every metrics change).
    pub async fn stopped_applying(&self) -> Option<String> {
        let mut apply_stopped = self.apply_stopped.clone();
        tokio::select! {
            fault = apply_stopped.wait_for(Option::is_some) => match fault {
                Ok(fault) => fault.clone(),
                Err(_) => self.apply_fault(),
            },
            () = self.stopped() => None,
        }
    }

    /// Ready once this node is stopping (owns what it waits on: a stream may hold it).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    }

    /// Refuses what needs this node's state once it stopped applying: its copy is frozen at
    /// the fault, and answering from it (even marked stale) would pass it off as the hub's.
    pub fn check_applying(&self) -> Result<(), NodeError> {
        if self.state.installing() {
            return Err(NodeError::InstallingSnapshot);
        }
        self.apply_fault().map_or(Ok(()), |fault| Err(NodeError::ApplyStopped(fault)))
    }

    /// Proposes a client write: here if this node leads, otherwise forwarded to the leader.
    pub async fn write(&self, envelope: Envelope) -> Result<Applied, NodeError> {
        envelope.validate()?;
        let started = std::time::Instant::now();
        let written = match self.propose_here(envelope.clone()).await {
            Err(NodeError::NotLeader { leader: Some(leader), .. }) => self.forward_write(&leader, &envelope).await,
            Err(NodeError::NotLeader { leader: None, .. }) => Err(NodeError::NoLeader),
            other => other,
        };
        self.proposal_metrics.record(written.is_ok(), started.elapsed().as_secs_f64());
        written
    }

    /// The ids of every member of the hub (voters and learners), as this node knows them.
    pub fn member_ids(&self) -> Vec<NodeId> {
        self.metrics().membership_config.membership().nodes().map(|(id, _)| *id).collect()
    }

    /// How many entries each follower's replication is behind this node's log (a leader only;
    /// empty elsewhere).
    pub fn replication_lag(&self) -> Vec<(NodeId, u64)> {
        let m = self.metrics();
        let last = m.last_log_index.unwrap_or(0);
        let Some(replication) = m.replication else { return vec![] };
        replication
            .into_iter()
            .map(|(peer, matched)| (peer, last.saturating_sub(matched.map_or(0, |l| l.index))))
            .collect()
    }

    /// Proposes on this node, which must be the leader. The leader stamps its clock.
    pub async fn propose_here(&self, mut envelope: Envelope) -> Result<Applied, NodeError> {
        envelope.validate()?;
        self.check_applying()?;
        // Never an entry a member cannot decode: the leader's state knows the hub's version (it
        // moves only once every member's build takes the next one).
        // Asked of the version known reached, read from the state only until it is: every
        // signed write needs a later version, and reading it each time was ~5 % of a busy
        // leader's CPU (docs/benchmarks.md, session 20).
        let needs = envelope.command.since_apply_version();
        if !self.state.applies_at_least(needs)? {
            let active = self.state.apply_version()?;
            return Err(NodeError::Invalid(ValidationError::NotYet { needs, active }));
        }
        self.check_quorum_contact()?;
        envelope.proposed_at_ms = now_ms();
        let write = self.raft.client_write(envelope);
        match self.while_quorum_contact(write).await? {
            Err(e) => Err(from_write_error(e)),
            Ok(resp) => Ok(resp.data),
        }
    }

    /// Waits for `quorum_work` (a write or a read barrier on the leader), at most the quorum
    /// timeout, and ends the wait as soon as this leader notices that it lost its quorum: a
    /// user in a cut-off region learns within about two election timeouts, not the full timeout.
    async fn while_quorum_contact<T>(&self, quorum_work: impl Future<Output = T>) -> Result<T, NodeError> {
        // Silence grows without any metric changing, so contact is checked each time a small
        // fraction of the limit it is compared with has passed. One timer at a time: nearly
        // every write ends before the first check is due, and a sleep beside the timeout was a
        // second timer to set and cancel for each of them.
        let every = (self.quorum_silence_limit / 10).max(Duration::from_millis(10));
        let deadline = tokio::time::Instant::now() + self.quorum_timeout;
        let mut work = std::pin::pin!(quorum_work);
        loop {
            let next_check = (tokio::time::Instant::now() + every).min(deadline);
            if let Ok(done) = tokio::time::timeout_at(next_check, &mut work).await {
                return Ok(done);
            }
            if next_check >= deadline {
                return Err(NodeError::Timeout(self.quorum_timeout));
            }
            if self.check_quorum_contact().is_err() {
                return Err(NodeError::QuorumLost);
            }
        }
    }

    async fn forward_write(&self, leader: &HubNode, envelope: &Envelope) -> Result<Applied, NodeError> {
        Ok(self.channels.forward_write(&leader.raft_addr, envelope, self.quorum_timeout).await?)
    }

    /// Fails fast when this node leads but has not heard from a quorum for longer than two
    /// election timeouts: it is cut off, and waiting would only turn into a timeout.
    fn check_quorum_contact(&self) -> Result<(), NodeError> {
        // Borrowed, not cloned: every write and read barrier passes here.
        let watched = self.raft.metrics();
        let m = watched.borrow_watched();
        if m.state != ServerState::Leader || m.membership_config.membership().voter_ids().count() < 2 {
            return Ok(());
        }
        match m.last_quorum_acked {
            Some(acked) if acked.elapsed() > self.quorum_silence_limit => Err(NodeError::NoLeader),
            _ => Ok(()),
        }
    }

    /// The index a linearizable read must wait for; only the leader can answer.
    pub async fn leader_read_index(&self) -> Result<u64, NodeError> {
        self.check_quorum_contact()?;
        // Within its lease (a quorum acknowledged it less than `election_timeout_max` ago,
        // counted from when it sent what they acknowledged; the voters refuse to elect anyone
        // else that long) the leader knows it still leads without asking: no round trip per
        // read or write. Clocks must run at about the same rate, not show the same time. Past
        // the lease (an idle or cut-off leader; openraft says QuorumNotEnough) it confirms with
        // a quorum (ReadIndex). A follower is told where the leader is by the first call.
        let lease = self.raft.get_read_linearizer(ReadPolicy::LeaseRead);
        let linearizer = match self.while_quorum_contact(lease).await? {
            Ok(linearizer) => linearizer,
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                let read = self.raft.get_read_linearizer(ReadPolicy::ReadIndex);
                self.while_quorum_contact(read).await?.map_err(from_read_error)?
            }
            Err(e) => return Err(from_read_error(e)),
        };
        Ok(linearizer.read_log_id().index())
    }

    /// Waits until this node's state reflects every write acknowledged before the call: the
    /// leader knows its read index from its lease, or past it confirms its leadership with a
    /// quorum (ReadIndex); a follower asks the leader for that index and waits until it has
    /// applied it.
    pub async fn linearizable_barrier(&self) -> Result<(), NodeError> {
        let index = match self.leader_read_index().await {
            Ok(index) => index,
            Err(NodeError::NotLeader { leader: Some(leader), .. }) => {
                self.channels.read_index(&leader.raft_addr, self.quorum_timeout).await?
            }
            Err(NodeError::NotLeader { leader: None, .. }) => return Err(NodeError::NoLeader),
            Err(e) => return Err(e),
        };
        self.wait_applied(index).await
    }

    /// Waits until this node applied the log up to `index`, a quorum timeout at most.
    pub async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        self.raft
            .wait(Some(self.quorum_timeout))
            .applied_index_at_least(Some(index), "applied up to an index")
            .await
            .map_err(|_| NodeError::Timeout(self.quorum_timeout))?;
        Ok(())
    }

    /// Why this node's own copy may be behind the hub right now, judged by contact: a leader
    /// that has not heard from a quorum, or a follower or learner that has not heard from its
    /// leader, for longer than the contact limit. `None`: current as far as this node can tell.
    pub fn staleness(&self) -> Option<String> {
        // Borrowed, not cloned: every local read and write passes here.
        let watched = self.raft.metrics();
        let m = watched.borrow_watched();
        let ms = |d: Duration| d.as_millis();
        if m.state == ServerState::Leader {
            if m.membership_config.membership().voter_ids().count() < 2 {
                return None;
            }
            // No acknowledgement yet: just elected, by a quorum's votes.
            let silent = m.last_quorum_acked?.elapsed();
            return (silent > self.contact_limit)
                .then(|| format!("this leader has not heard from a quorum for {} ms", ms(silent)));
        }
        let Some(leader) = m.current_leader else {
            return Some("this node knows no leader (an election is under way, or it is cut off)".to_owned());
        };
        match self.leader_contact.since() {
            None => Some(format!("no word from the leader (node {leader}) since this node started")),
            Some(silent) if silent > self.contact_limit => {
                Some(format!("no word from the leader (node {leader}) for {} ms", ms(silent)))
            }
            Some(_) => None,
        }
    }

    /// This node's own copy as it is, for a local read: why it may be stale, or refused once
    /// the node stopped applying.
    pub fn local_copy(&self) -> Result<Option<String>, NodeError> {
        self.check_applying()?;
        Ok(self.staleness())
    }

    /// Makes this node's state current for a read (the linearizable barrier) or, when it is cut
    /// off from its quorum or its leader, says why its own copy may be stale: a cut-off region
    /// keeps reading, and knows it.
    pub async fn current_or_stale(&self) -> Result<Option<String>, NodeError> {
        self.check_applying()?;
        if let Some(reason) = self.staleness() {
            return Ok(Some(reason));
        }
        match self.linearizable_barrier().await {
            Ok(()) => Ok(None),
            Err(e) if e.is_quorum_unreachable() => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    }

    pub fn incoming_snapshot_path(&self) -> PathBuf {
        self.scratch_path("incoming")
    }

    /// A file name of its own in the snapshot directory for `what` (a snapshot arriving, a
    /// backup image leaving).
    pub fn scratch_path(&self, what: &str) -> PathBuf {
        let n = self.incoming_seq.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir.join(format!("{what}-{n}.snap"))
    }

    /// This node's own view of itself.
    pub fn local_health(&self) -> NodeHealth {
        let m = self.metrics();
        let is_voter = m.membership_config.membership().voter_ids().any(|id| id == self.id);
        let fault = self.apply_fault();
        let role = match m.state {
            _ if fault.is_some() => NodeRole::Failed,
            ServerState::Leader => NodeRole::Leader,
            ServerState::Candidate => NodeRole::Candidate,
            ServerState::Follower if is_voter => NodeRole::Follower,
            ServerState::Follower | ServerState::Learner => NodeRole::Learner,
            ServerState::Shutdown => NodeRole::Shutdown,
        };
        NodeHealth {
            id: self.id,
            name: self.info.name.clone(),
            region: self.info.region.clone(),
            role,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            leader_id: m.current_leader,
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            snapshots_installed: self.state.snapshots_installed(),
            stale_reason: self.staleness(),
            fault,
            max_apply_version: self.max_apply_version,
            // 0: unreadable just now (a lasting storage fault shows as `fault`).
            apply_version: self.state.apply_version().unwrap_or(0),
            master_key: self.state.vault().master_fingerprint().map(str::to_owned),
        }
    }

    /// Why the hub may not take or rotate data keys under this node's master key now: a member
    /// that does not answer, or holds another master key (it could not unwrap the keys and
    /// would stop applying). None when every member holds the same one.
    pub async fn members_lacking_my_master_key(&self) -> Option<String> {
        let Some(mine) = self.state.vault().master_fingerprint() else {
            return Some("this node has no master key".into());
        };
        for member in self.cluster_status().await.members {
            match member.health {
                Ok(h) if h.master_key.as_deref() == Some(mine) => {}
                Ok(h) => {
                    let theirs = h.master_key.unwrap_or_else(|| "none".into());
                    return Some(format!("node {} holds master key {theirs}, not {mine}", h.id));
                }
                Err(e) => return Some(format!("a member does not answer: {e}")),
            }
        }
        None
    }

    /// Every member of the hub as this node's membership knows it, each asked for its own health.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let asks = membership.nodes().map(|(&id, node)| {
            let voter = voters.contains(&id);
            async move {
                let health = if id == self.id {
                    Ok(self.local_health())
                } else {
                    // Short: one silent member must not hold up the operator's whole answer.
                    let asked = self.channels.node_health(&node.raft_addr, Duration::from_secs(2)).await;
                    asked.map_err(|e| e.to_string())
                };
                MemberStatus { id, node: node.clone(), voter, health }
            }
        });
        let members = futures::future::join_all(asks).await;
        ClusterStatus { answered_by: self.id, leader_id: m.current_leader, members }
    }
}

/// The sockets a node serves on. Taken as parameters so tests (and later a simulated
/// network) choose them.
pub struct Listeners {
    pub raft: TcpListener,
    pub api: TcpListener,
    /// The Prometheus endpoint, when the node has a `metrics_addr`.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(me: &NodeConfig) -> std::io::Result<Self> {
        let metrics = match me.metrics_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self { raft: TcpListener::bind(me.raft_addr).await?, api: TcpListener::bind(me.api_addr).await?, metrics })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] kizuna_store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("raft config: {0}")]
    RaftConfig(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("starting Raft's thread: {0}")]
    RaftThread(std::io::Error),
    #[error("notifications: {0}")]
    Notifications(String),
    #[error("the upload directory {0}: {1}")]
    Uploads(PathBuf, std::io::Error),
    #[error("public API: {0}")]
    Api(#[from] crate::api::RouterError),
}

/// A started node; call [`RunningNode::shutdown`] to stop it. Dropped, it stops Raft (its
/// thread ends) and nothing else.
pub struct RunningNode {
    pub node: Arc<Node>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    keeper: JoinHandle<()>,
    audit_shipper: JoinHandle<()>,
    disaster_shipper: JoinHandle<()>,
    notifier: JoinHandle<()>,
    collector: JoinHandle<()>,
    /// Waited for at shutdown: a compaction under way holds the database open.
    scrubber: JoinHandle<()>,
    snapshots: JoinHandle<()>,
    /// Stopped once Raft is: the tasks left on it hold the databases.
    raft_thread: RaftThread,
}

impl RunningNode {
    /// Stops serving, stops Raft, and waits until the store is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.keeper.await;
        let _ = self.audit_shipper.await;
        let _ = self.disaster_shipper.await;
        let _ = self.notifier.await;
        let _ = self.collector.await;
        let _ = self.scrubber.await;
        let _ = self.snapshots.await;
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("server stopped with an error: {e}"),
                Err(e) => warn!("server task failed: {e}"),
            }
        }
        if let Err(e) = self.node.raft.shutdown().await {
            warn!("raft shutdown: {e}");
        }
        self.raft_thread.stop().await;
        // Connection tasks of the stopped servers and Raft's workers may still hold the
        // databases (the state's, the log's) for a moment: wait until these are the last
        // handles, then close them here. RocksDB closes on the thread that drops the last
        // handle, waiting for its background flushes and compactions; closing here means
        // nothing writes into the data dir once this returns (a restart in the same process
        // opens it, a test may delete it).
        // Taken before the node's handle goes, so the last handles are these: had another task
        // dropped one, RocksDB could still be closing there (its lock held) when this returns.
        let last = [self.node.state.database(), self.node.state.log_database()].map(|db| db.upgrade());
        drop(self.node);
        for database in last.into_iter().flatten() {
            close_once_last(database).await;
        }
    }
}

/// Waits (10 s at most) until `database` is its last handle, then drops it off the async
/// executor: see [`RunningNode::shutdown`].
async fn close_once_last<T: Send + Sync + 'static>(database: Arc<T>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&database) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if Arc::strong_count(&database) > 1 {
        warn!("a database is still in use after shutdown");
    }
    if let Err(e) = tokio::task::spawn_blocking(move || drop(database)).await {
        warn!("closing a database: {e}");
    }
}

fn raft_config(hub: &HubConfig) -> Result<openraft::Config, StartError> {
    let t = &hub.raft;
    openraft::Config {
        cluster_name: hub.hub.name.clone(),
        heartbeat_interval: t.heartbeat_interval_ms,
        election_timeout_min: t.election_timeout_min_ms,
        election_timeout_max: t.election_timeout_max_ms,
        // This node decides when (`snapshot_policy.rs`): openraft counts entries only.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: t.keep_entries_after_snapshot,
        install_snapshot_timeout: 10_000,
        enable_pre_vote: Some(t.pre_vote),
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::RaftConfig(e.to_string()))
}

pub fn hub_node(n: &NodeConfig) -> HubNode {
    HubNode {
        name: n.name.clone(),
        region: n.region().to_owned(),
        raft_addr: n.raft_addr.to_string(),
        api_addr: n.api_addr.to_string(),
    }
}

/// The hub's Web Push identity, if `[notifications]` names a VAPID key.
fn pusher_of(hub: &HubConfig) -> Result<Option<Arc<crate::push::Pusher>>, StartError> {
    let Some(n) = &hub.notifications else { return Ok(None) };
    let pusher = crate::push::Pusher::of_section(
        n.vapid_private_key_file.as_deref(),
        n.vapid_subject.as_deref(),
        n.push_allow_loopback_http,
    );
    Ok(pusher.map_err(|e| StartError::Notifications(e.to_string()))?.map(Arc::new))
}

/// The newest apply version this node takes up: its build's, but the one before sealed state
/// when it holds no master key (it could not open what the hub seals). Says so loudly: the hub
/// then stores everything in clear.
fn max_apply_version(me: &NodeConfig, vault: &kizuna_store::Vault) -> u32 {
    let build = me.older_build_apply_version.unwrap_or(kizuna_domain::APPLY_VERSION);
    if vault.can_seal() {
        return build;
    }
    tracing::warn!(
        "ENCRYPTION AT REST IS OFF: no [encryption] master_key_file, so this node seals nothing it stores \
         and the hub cannot seal its state (docs/security.md)"
    );
    build.min(kizuna_domain::keyring::SEALED_STATE_APPLY_VERSION - 1)
}

/// Why Raft stopped applying the log, if it did (see [`Node::apply_fault`]).
fn apply_fault_of(raft: &Raft, state: &StateReader) -> Option<String> {
    let fatal = match &raft.metrics().borrow_watched().running_state {
        Ok(()) | Err(Fatal::Stopped) => return None,
        Err(fatal) => fatal.to_string(),
    };
    // The store's own account names the entry and the key; openraft's wraps it in its types.
    Some(state.apply_fault().map_or(fatal, |fault| fault.to_string()))
}

/// How often at most [`watch_apply`] looks at Raft's metrics.
const APPLY_WATCH_PACE: Duration = Duration::from_millis(50);

/// Follows Raft's metrics until apply stops on a fault (then says why, once) or the node
/// stops: the one watcher behind [`Node::stopped_applying`].
fn watch_apply(raft: Raft, state: StateReader, mut stopping: watch::Receiver<bool>) -> watch::Receiver<Option<String>> {
    let (tell, told) = watch::channel(None);
    tokio::spawn(
        async move {
            let mut metrics = raft.metrics();
            loop {
                if let Some(fault) = apply_fault_of(&raft, &state) {
                    let _ = tell.send(Some(fault));
                    return;
                }
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => return,
                }
                // Raft's metrics change several times per write: looked at no more often than
                // this, a fault is told this much later, and a busy node's writes do not each
                // wake this task (on another thread than Raft's: docs/benchmarks.md, session 42).
                tokio::select! {
                    () = tokio::time::sleep(APPLY_WATCH_PACE) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        }
        .in_current_span(),
    );
    told
}

/// Opens the node's store, starts its Raft member, bootstraps the hub's membership on first
/// start, and serves the Raft service and the public API.
pub async fn start(
    hub: &HubConfig,
    me: &NodeConfig,
    listeners: Listeners,
    security: &Security,
) -> Result<RunningNode, StartError> {
    let span = info_span!("node", node = %me.name, region = %me.region());
    async {
        // Installed before Raft starts: what looks its series up once (replication's round
        // trips) would otherwise keep a handle that records nothing.
        crate::metrics::registry();
        let (log_store, state_machine) = kizuna_store::open(&me.data_dir, hub.master_keys()?)?;
        let max_apply_version = max_apply_version(me, state_machine.reader().vault());
        let state_machine = state_machine.applying_at_most(max_apply_version);
        let attachments = crate::attachments::Limits::of(&hub.attachments, &me.data_dir);
        crate::attachments::staging::clear(&attachments.staging_dir)
            .map_err(|e| StartError::Uploads(attachments.staging_dir.clone(), e))?;
        let state = state_machine.reader();
        let log_growth = log_store.growth();
        log_store.sync_followed_appends_inline(me.id);
        let pusher = pusher_of(hub)?;
        let channels = PeerChannels::new(security.connector.clone());
        let config = Arc::new(raft_config(hub)?);
        let raft_thread = RaftThread::start().map_err(StartError::RaftThread)?;
        // Replication's connections of its own, made on Raft's thread: a connection's tasks
        // run where it was made, and the node's other calls to peers (forwarded writes, read
        // barriers, health) come from the API's runtime.
        let network = Network::new(PeerChannels::new(security.connector.clone()));
        let id = me.id;
        let raft = raft_thread
            .run(async move { Raft::new(id, config, network, log_store, state_machine).await })
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && me.voter {
            // Every voter proposes the same initial membership; openraft accepts identical
            // configurations, so whichever voters start first form the hub.
            let members: BTreeMap<NodeId, HubNode> = hub.voters().map(|n| (n.id, hub_node(n))).collect();
            match raft.initialize(members).await {
                Ok(()) => info!("bootstrapped the hub's membership"),
                Err(e) => info!("membership already bootstrapped elsewhere: {e}"),
            }
        }

        let (stop, stopped) = watch::channel(false);
        let apply_stopped = watch_apply(raft.clone(), state.clone(), stopped.clone());
        let live = crate::live_events::LiveEvents::start(state.clone(), stopped.clone());
        let node = Arc::new(Node {
            id: me.id,
            info: hub_node(me),
            max_apply_version,
            raft,
            state,
            channels,
            snapshot_dir: me.data_dir.join("snapshots"),
            incoming_seq: AtomicU64::new(0),
            quorum_timeout: Duration::from_millis(hub.raft.election_timeout_max_ms * 5),
            allow_unsafe_placement: hub.hub.allow_unsafe_placement,
            // Twice the longest election: a freshly elected leader's first acknowledgements are
            // never mistaken for silence.
            quorum_silence_limit: Duration::from_millis(hub.raft.election_timeout_max_ms * 2),
            // The earliest a follower would itself suspect its leader: three heartbeats or more.
            contact_limit: Duration::from_millis(hub.raft.election_timeout_min_ms),
            leader_contact: LeaderContact::default(),
            stopping: stopped.clone(),
            federation: Arc::new(crate::federation::Board::of_hub(hub)),
            attachments: attachments.clone(),
            part_uploads: Default::default(),
            pusher: pusher.clone(),
            push_allow_loopback_http: hub.notifications.as_ref().is_some_and(|n| n.push_allow_loopback_http),
            proposal_metrics: crate::metrics::ProposalMetrics::new(me.id),
            apply_stopped,
            live,
        });

        // Connections between nodes are renewed every few minutes, each with a new handshake
        // against the certificates of the moment: a CA or a node certificate removed from the
        // files stops being trusted on every connection within that time (docs/operations.md).
        let raft_routes = tonic::transport::Server::builder()
            .max_connection_age(RAFT_CONNECTION_AGE)
            .max_connection_age_grace(RAFT_CONNECTION_GRACE)
            .add_service(
                kizuna_proto::raft::raft_transport_service_server::RaftTransportServiceServer::new(RaftService::new(
                    node.clone(),
                ))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            );
        let raft_tls = security
            .tls
            .clone()
            .map(|tls| -> (Acceptor, &'static str) { (Box::new(move || tls.raft_acceptor()), "raft") });
        if raft_tls.is_none() {
            warn!("INSECURE: node-to-node traffic is plaintext and unauthenticated");
        }
        let raft_listener = raft_thread.adopt(listeners.raft).await.map_err(StartError::RaftThread)?;
        let raft_server = serve(me.id, raft_routes, raft_listener, raft_tls, stopped.clone(), raft_thread.handle());
        let api_routes = crate::api::router(node.clone(), hub, security.tls.is_some())?;
        let api_tls = security
            .tls
            .clone()
            .map(|tls| -> (Acceptor, &'static str) { (Box::new(move || tls.api_acceptor()), "api") });
        let api_server = serve(me.id, api_routes, listeners.api, api_tls, stopped.clone(), &Handle::current());
        let mut servers = vec![raft_server, api_server];
        if let Some(tls) = &security.tls {
            servers.push(tokio::spawn(
                tls.clone().watch(stopped.clone()).in_current_span().map(Ok::<_, tonic::transport::Error>),
            ));
        }
        let keeper = tokio::spawn(crate::keeper::run(node.clone(), hub.clone(), stopped.clone()).in_current_span());
        let notifier = crate::notifier::Notifier::of_hub(hub, me.id, security.tls.is_some(), pusher)
            .map_err(|e| StartError::Notifications(e.to_string()))?;
        let notifier = tokio::spawn(crate::notifier::run(node.clone(), notifier, stopped.clone()).in_current_span());
        let collector = crate::attachments::collector::run(node.clone(), attachments, stopped.clone());
        let collector = tokio::spawn(collector.in_current_span());
        let audit_shipper = tokio::spawn(crate::audit_shipper::ship(node.clone(), stopped.clone()).in_current_span());
        let disaster_shipper =
            tokio::spawn(crate::disaster_shipper::run(node.clone(), stopped.clone()).in_current_span());
        let scrubber = tokio::spawn(crate::scrub::run(node.clone(), stopped.clone()).in_current_span());
        let snapshots =
            crate::snapshot_policy::run(node.clone(), hub.raft.snapshot_after_entries, log_growth, stopped.clone());
        let snapshots = tokio::spawn(snapshots.in_current_span());
        if let Some(listener) = listeners.metrics {
            let metrics = crate::metrics::serve(listener, node.clone(), hub.clone(), stopped.clone());
            servers.push(tokio::spawn(metrics.in_current_span()));
        }
        info!(raft = %me.raft_addr, api = %me.api_addr, "serving");
        Ok(RunningNode {
            node,
            stop,
            servers,
            keeper,
            audit_shipper,
            disaster_shipper,
            notifier,
            collector,
            scrubber,
            snapshots,
            raft_thread,
        })
    }
    .instrument(span)
    .await
}

/// How long a node↔node connection lives before the server asks the peer to reconnect, and
/// how long its calls then have to finish (a snapshot of a large hub streams for a while).
const RAFT_CONNECTION_AGE: Duration = Duration::from_secs(300);
const RAFT_CONNECTION_GRACE: Duration = Duration::from_secs(600);

/// Makes the TLS acceptor for the next connection, and names the listener in logs.
type Acceptor = Box<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>;

/// Serves `routes` on `listener` until the node stops, on the runtime `on`: over TLS with the
/// certificates of the moment when `tls` is given (see `tls::reload`), in plaintext otherwise.
fn serve(
    node_id: NodeId,
    routes: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<(Acceptor, &'static str)>,
    stopped: watch::Receiver<bool>,
    on: &Handle,
) -> JoinHandle<Result<(), tonic::transport::Error>> {
    // Entered: the TLS listener's accepting and handshakes are tasks spawned as it is made.
    let _on = on.enter();
    let served = match tls {
        Some((acceptor, listener_name)) => {
            let refused: crate::tls::accept::Refused = Arc::new(move |from, reason| {
                let labels = [("node", node_id.to_string()), ("listener", listener_name.to_owned())];
                metrics::counter!("kizuna_tls_handshakes_refused_total", &labels).increment(1);
                debug!(%from, %reason, listener = listener_name, "TLS handshake refused");
            });
            let incoming = crate::tls::accept::TlsIncoming::new(listener, acceptor, refused);
            routes.serve_with_incoming_shutdown(incoming, wait_stop(stopped)).boxed()
        }
        None => routes.serve_with_incoming_shutdown(without_nagle(listener), wait_stop(stopped)).boxed(),
    };
    on.spawn(served.in_current_span())
}

/// The connections a listener accepts, with Nagle's algorithm off: a small gRPC answer would
/// otherwise wait for the client's delayed ACK (~40 ms per read). tonic's own `tcp_nodelay`
/// only applies where tonic binds the socket itself, not to listeners handed to it.
fn without_nagle(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut incoming = without_nagle(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming.next().await.expect("a connection").expect("accepted");
        assert!(accepted.nodelay().expect("socket option"), "TCP_NODELAY is off on an accepted socket");
    }
}
