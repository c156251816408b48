//! openraft wiring: the network to peers (replication pipelined over one stream per session:
//! `stream`), the internal Raft service, the node core's own calls to peers (`peers`), and when
//! a follower last heard from its leader. The type configuration lives with the storage
//! (`kizuna_store::raft`).

pub mod contact;
pub mod network;
pub mod peers;
pub mod service;
mod stream;

pub use kizuna_store::raft::*;
