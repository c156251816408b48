//! openraft wiring: the network to peers, the internal Raft service, and when a follower last
//! heard from its leader. The type configuration lives with the storage (`kizuna_store::raft`).

pub mod contact;
pub mod network;
pub mod service;

pub use kizuna_store::raft::*;
