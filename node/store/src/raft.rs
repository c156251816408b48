//! openraft's type configuration for a Kizuna hub: what the log carries, what a node is, and
//! the aliases the rest of the node uses. openraft's own types stay inside this module, the
//! storage that implements openraft's traits, and the server's Raft wiring, so that a version
//! bump stays local.

use serde::{Deserialize, Serialize};

use kizuna_domain::{Applied, Envelope};

/// Where a member of the hub lives; stored in the replicated membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubNode {
    pub name: String,
    pub region: String,
    /// Internal Raft service address, `host:port`.
    pub raft_addr: String,
    /// Public gRPC API address, `host:port`.
    pub api_addr: String,
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Kizuna's Raft types: the log carries domain [`Envelope`]s, apply answers [`Applied`].
    pub TypeConfig:
        D = Envelope,
        R = Applied,
        NodeId = NodeId,
        Node = HubNode,
);

pub type Raft = openraft::Raft<TypeConfig, crate::StateMachineStore>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, crate::SnapshotFile>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

/// Encodes a Raft message or a forwarded write for the wire (see
/// `proto/kizuna/raft/v1/raft_transport_service.proto`), in the storage's value format: every node of a hub runs
/// the same build, and the version byte makes a peer of another format fail loudly.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // These plain data types always encode (sized sequences only); were one not to, the empty
    // payload is refused by the receiver's `decode` as a value without a version.
    crate::codec::encode(value).unwrap_or_default()
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, crate::CodecError> {
    crate::codec::decode(bytes)
}
