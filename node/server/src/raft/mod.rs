//! openraft wiring: the network to peers (replication pipelined over one stream per session:
//! `stream`), the internal Raft service, the node core's own calls to peers (`peers`), when
//! a follower last heard from its leader, and the thread Raft runs on (`thread`). The type
//! configuration lives with the storage (`kizuna_store::raft`).

pub mod contact;
pub mod network;
pub mod peers;
pub mod service;
mod stream;
pub mod thread;

pub use kizuna_store::raft::*;
