//! The `kizuna` command: a hub node (`serve`, `demo`) and the client subcommands.
//!
//! The node itself is layered in crates, so that Cargo enforces which way dependencies point:
//! - `kizuna_domain` ([`domain`]): what the product does — commands, rules, queries. Pure: no I/O.
//! - `kizuna_store` ([`store`]): RocksDB — the Raft log, the state machine, snapshots.
//! - `kizuna_server`: Raft wiring ([`raft`]), the node core ([`node`], [`member`]), the public gRPC API
//!   ([`api`]), background workers ([`audit_shipper`], [`keeper`]), [`config`], [`placement`], [`tls`],
//!   hub↔hub [`federation`].
//! - [`cli`] (here): the subcommands that run a node or talk to a hub as a client.

pub mod cli;

pub use kizuna_domain as domain;
pub use kizuna_server::{
    api, audit_shipper, config, federation, keeper, member, node, notifier, placement, push, raft, tls,
};
pub use kizuna_store as store;
