//! The node core's errors as gRPC statuses: the one place that decides which code a client
//! sees for a write or read the node could not do, and where it learns the leader's address.

use tonic::Status;

use crate::node::NodeError;

/// gRPC metadata key carrying the leader's public address when a node refuses a request.
pub const LEADER_HINT_KEY: &str = "kizuna-leader";

// An inherent method (allowed anywhere in the crate that defines the type) rather than a
// `From` impl, so every service writes `e.into_status()` without importing anything; it lives
// here because only the API layer knows gRPC.
impl NodeError {
    pub fn into_status(self) -> Status {
        let message = self.to_string();
        match self {
            NodeError::Invalid(_) => Status::invalid_argument(message),
            NodeError::NotLeader { leader, .. } => {
                let mut status = Status::unavailable(message);
                if let Some(value) = leader.and_then(|l| l.api_addr.parse().ok()) {
                    status.metadata_mut().insert(LEADER_HINT_KEY, value);
                }
                status
            }
            NodeError::NoLeader
            | NodeError::Timeout(_)
            | NodeError::QuorumLost
            | NodeError::LeaderUnreachable(_)
            | NodeError::ApplyStopped(_)
            | NodeError::InstallingSnapshot => Status::unavailable(message),
            NodeError::Raft(_) | NodeError::Storage(_) => Status::internal(message),
        }
    }
}
