//! The node core's own calls to other members over the internal Raft API — forward a write to
//! the leader, ask the leader's read index, ask a member's health — and the conversions of what
//! they carry between proto and the core's types. The core sees only its own types and
//! [`PeerCallError`]; proto and `tonic::Status` stay on this side.

use std::time::Duration;

use kizuna_domain::{Applied, Envelope};
use kizuna_proto::raft::{ForwardWriteRequest, NodeStatus, NodeStatusRequest, ReadIndexRequest};

use super::network::PeerChannels;
use super::{decode, encode};
use crate::member::{NodeHealth, NodeRole};

/// Why a call to another member gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCallError {
    /// No connection, a transport failure, or a refusal for any reason but the request itself
    /// (e.g. the member is not, or no longer, the leader).
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The member refused the request itself as invalid (a forwarded write the leader's
    /// validation rejected); retrying elsewhere would not help.
    #[error("{0}")]
    Invalid(String),
    /// The member answered something this node cannot decode (a different release).
    #[error("undecodable answer: {0}")]
    Undecodable(String),
}

fn refused(status: tonic::Status) -> PeerCallError {
    let message = status.message().to_owned();
    match status.code() {
        tonic::Code::InvalidArgument => PeerCallError::Invalid(message),
        _ => PeerCallError::Unreachable(message),
    }
}

/// Waits at most `within` for `call`'s answer.
async fn answer<T>(
    within: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, PeerCallError> {
    match tokio::time::timeout(within, call).await {
        Err(_) => Err(PeerCallError::TimedOut(within)),
        Ok(Err(status)) => Err(refused(status)),
        Ok(Ok(reply)) => Ok(reply.into_inner()),
    }
}

impl PeerChannels {
    fn client_of(
        &self,
        addr: &str,
    ) -> Result<
        kizuna_proto::raft::raft_transport_service_client::RaftTransportServiceClient<tonic::transport::Channel>,
        PeerCallError,
    > {
        self.raft_client(addr).map_err(|e| PeerCallError::Unreachable(e.to_string()))
    }

    /// Has the leader at `addr` propose `envelope` and returns what it applied. The leader
    /// proposes it or refuses: it never forwards a second time.
    pub async fn forward_write(
        &self,
        addr: &str,
        envelope: &Envelope,
        within: Duration,
    ) -> Result<Applied, PeerCallError> {
        let mut client = self.client_of(addr)?;
        let reply = answer(within, client.forward_write(ForwardWriteRequest { command: encode(envelope) })).await?;
        decode(&reply.result).map_err(|e| PeerCallError::Undecodable(e.to_string()))
    }

    /// The index up to which the leader at `addr` has confirmed its leadership with a quorum.
    pub async fn read_index(&self, addr: &str, within: Duration) -> Result<u64, PeerCallError> {
        let mut client = self.client_of(addr)?;
        Ok(answer(within, client.read_index(ReadIndexRequest {})).await?.read_index)
    }

    /// The member at `addr`'s own account of itself.
    pub async fn node_health(&self, addr: &str, within: Duration) -> Result<NodeHealth, PeerCallError> {
        let mut client = self.client_of(addr)?;
        Ok(health_from_message(answer(within, client.get_node_status(NodeStatusRequest {})).await?))
    }
}

/// How the internal API names a role: strings, so that a newer peer's new role reads as
/// [`NodeRole::Unknown`] here instead of failing the whole status.
fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Leader => "leader",
        NodeRole::Candidate => "candidate",
        NodeRole::Follower => "follower",
        NodeRole::Learner => "learner",
        NodeRole::Failed => "failed",
        NodeRole::Shutdown => "shutdown",
        NodeRole::Unknown => "unknown",
    }
}

fn role_from_name(name: &str) -> NodeRole {
    [NodeRole::Leader, NodeRole::Candidate, NodeRole::Follower, NodeRole::Learner, NodeRole::Failed, NodeRole::Shutdown]
        .into_iter()
        .find(|role| role_name(*role) == name)
        .unwrap_or(NodeRole::Unknown)
}

/// A node's health as the internal API sends it to the peer that asked.
pub fn health_message(health: NodeHealth) -> NodeStatus {
    NodeStatus {
        id: health.id,
        name: health.name,
        region: health.region,
        role: role_name(health.role).to_owned(),
        term: health.term,
        last_log_index: health.last_log_index,
        applied_index: health.applied_index,
        // The internal message predates proto3 `optional` here: 0 is no node id.
        leader_id: health.leader_id.unwrap_or(0),
        snapshot_index: health.snapshot_index,
        purged_index: health.purged_index,
        snapshots_installed: health.snapshots_installed,
        stale_reason: health.stale_reason.unwrap_or_default(),
        fault: health.fault.unwrap_or_default(),
        max_apply_version: health.max_apply_version,
        apply_version: health.apply_version,
        master_key: health.master_key.unwrap_or_default(),
        takes_streamed_snapshots: true,
    }
}

fn health_from_message(m: NodeStatus) -> NodeHealth {
    let text = |s: String| (!s.is_empty()).then_some(s);
    NodeHealth {
        id: m.id,
        name: m.name,
        region: m.region,
        role: role_from_name(&m.role),
        term: m.term,
        last_log_index: m.last_log_index,
        applied_index: m.applied_index,
        leader_id: (m.leader_id != 0).then_some(m.leader_id),
        snapshot_index: m.snapshot_index,
        purged_index: m.purged_index,
        snapshots_installed: m.snapshots_installed,
        stale_reason: text(m.stale_reason),
        fault: text(m.fault),
        // A build before apply versions existed sends neither: it applies as the first.
        max_apply_version: m.max_apply_version.max(kizuna_domain::FIRST_APPLY_VERSION),
        apply_version: m.apply_version,
        master_key: text(m.master_key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_before_apply_versions_supports_the_first() {
        let old = NodeStatus { id: 3, role: "follower".into(), ..Default::default() };
        assert_eq!(health_from_message(old).max_apply_version, kizuna_domain::FIRST_APPLY_VERSION);
    }

    #[test]
    fn health_survives_the_internal_message() {
        let roles = [
            NodeRole::Leader,
            NodeRole::Candidate,
            NodeRole::Follower,
            NodeRole::Learner,
            NodeRole::Failed,
            NodeRole::Shutdown,
        ];
        for (i, role) in roles.into_iter().enumerate() {
            let health = NodeHealth {
                id: 2,
                name: "n2".into(),
                region: "oyama".into(),
                role,
                term: 7,
                last_log_index: 40,
                applied_index: 39,
                leader_id: (i % 2 == 0).then_some(1),
                snapshot_index: 30,
                purged_index: 20,
                snapshots_installed: 1,
                stale_reason: (i % 3 == 0).then(|| "no word from the leader".to_owned()),
                fault: (role == NodeRole::Failed).then(|| "cannot decode".to_owned()),
                max_apply_version: 2,
                apply_version: 1,
                master_key: (i % 2 == 1).then(|| "0123456789abcdef".to_owned()),
            };
            assert_eq!(health_from_message(health_message(health.clone())), health);
        }
    }

    #[test]
    fn a_role_of_a_newer_release_is_unknown() {
        assert_eq!(role_from_name("observer"), NodeRole::Unknown);
    }
}
