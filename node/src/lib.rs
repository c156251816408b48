//! A Kizuna hub node.
//!
//! - [`domain`]: what the product does — commands, validation, results. Pure: no I/O.
//! - [`store`]: RocksDB — the Raft log, Raft metadata and the state machine, snapshots.
//! - [`raft`]: openraft wiring — type config, the peer network, the internal Raft service.
//! - [`api`]: the public gRPC services; [`audit`]: ships journaled reads into the audit chain.
//! - [`config`]: the TOML topology of a hub; [`placement`]: the rule that voters survive a region's loss.
//! - [`node`]: assembles one running node out of the above; [`keeper`]: the leader's housekeeping.
//! - [`tls`]: the hub CA, node certificates, server TLS and node-to-node mutual TLS.
//! - [`cli`]: the `kizuna` command's subcommands that talk to a hub as a client.

pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod domain;
pub mod keeper;
pub mod node;
pub mod placement;
pub mod raft;
pub mod store;
pub mod tls;
