//! What a member of the hub reports about itself ([`NodeHealth`]) and what one node knows of
//! every member ([`ClusterStatus`]), as plain Rust values of the node core.
//!
//! Kept apart from [`crate::node`] so that the internal Raft API (which carries a peer's health
//! between nodes) and the public admin API (which shows the cluster to operators) can convert
//! them to and from proto without the node core knowing any proto.

use crate::raft::{HubNode, NodeId};

/// The part a member plays in the hub right now, by its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Leader,
    Candidate,
    /// A voter following a leader.
    Follower,
    /// A non-voter receiving the log (extra regions' local reads).
    Learner,
    /// It stopped applying the log on a storage or decode error (see [`NodeHealth::fault`]).
    Failed,
    /// It is shutting down.
    Shutdown,
    /// A role a peer of a newer release named, which this release does not know.
    Unknown,
}

/// One node's own view of itself: its role, how far its log and its state have come, and why
/// its copy may be stale or frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    pub id: NodeId,
    pub name: String,
    pub region: String,
    pub role: NodeRole,
    pub term: u64,
    /// 0 before the first entry, like the indexes below.
    pub last_log_index: u64,
    pub applied_index: u64,
    /// The leader this node follows (or is), if it knows one.
    pub leader_id: Option<NodeId>,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// Snapshots received from a leader and installed since the node started.
    pub snapshots_installed: u64,
    /// Why its own copy may be behind the hub (cut off from its quorum or its leader).
    pub stale_reason: Option<String>,
    /// Why it stopped applying the log; it then refuses what needs its state.
    pub fault: Option<String>,
    /// The newest apply version its build supports (`kizuna_domain::APPLY_VERSION`).
    pub max_apply_version: u32,
    /// The hub's active apply version as it has applied it.
    pub apply_version: u32,
    /// The fingerprint of its current master key (None: it has none).
    pub master_key: Option<String>,
}

/// Every member of the hub as one node's membership knows it, each asked for its own health.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The node that asked the members.
    pub answered_by: NodeId,
    pub leader_id: Option<NodeId>,
    pub members: Vec<MemberStatus>,
}

/// One member: where it is, whether it votes, and what it answered.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub id: NodeId,
    pub node: HubNode,
    pub voter: bool,
    /// Its own account, or why it could not be asked.
    pub health: Result<NodeHealth, String>,
}
