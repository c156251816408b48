//! A Kizuna hub node at run time: Raft wiring and the node↔node network, the node core (write
//! and read paths), the public gRPC API, and the background workers.
//!
//! - [`raft`]: openraft wiring — the peer network, the internal Raft service (and the core's
//!   calls to peers over it), leader contact.
//! - [`node`]: one running node — the write path (propose here or forward to the leader), the
//!   read paths (linearizable, or local and marked stale), and its start and shutdown. It
//!   answers in its own types ([`node::NodeError`], [`member`]'s health and cluster status).
//! - [`member`]: what a member reports about itself and what a node knows of all members.
//! - [`live_events`]: the node's live events, handed by one task to the event streams that
//!   may need each (the EventService is `api/events.rs`).
//! - [`api`]: the public gRPC services — the only place that speaks proto and `tonic::Status`.
//! - [`audit_shipper`]: the audit shipper, which moves the node's read journal into the
//!   replicated audit chain (kept in the domain); the audit *service* is `api/audit.rs`.
//! - [`disaster_shipper`]: ships the safety checks and facility statuses recorded on this node
//!   (also while it was cut off from the quorum) into the log; the service is `api/disaster`.
//! - [`notifier`]: the leader's e-mail notices of unread news (SMTP), from the replicated queue.
//! - [`keeper`]: the leader's housekeeping (leadership back to the preferred regions).
//! - [`snapshot_policy`]: when a node snapshots its state (in steps that grow with the log).
//! - [`config`]: the TOML topology of a hub; [`placement`]: the rule that voters survive a region's loss.
//! - [`federation`]: hub↔hub federation — this hub's signing identity, its configured peers
//!   and the verifier of their signatures.
//! - [`tls`]: the hub CA, node certificates, server TLS and node-to-node mutual TLS.
//! - [`metrics`]: the node's Prometheus metrics (`GET /metrics` on its `metrics_addr`).
//!
//! The rules live in `kizuna_domain` (pure), the storage in `kizuna_store`.
// The public API's futures nest deeply (a call authenticates, makes the node current through
// openraft, proposes, then reads back); computing their layout needs more than the default 128.
#![recursion_limit = "256"]

pub mod api;
pub mod attachments;
pub mod audit_shipper;
pub mod config;
pub mod disaster_shipper;
pub mod federation;
pub mod keeper;
pub mod live_events;
pub mod member;
pub mod metrics;
pub mod node;
pub mod notifier;
pub mod placement;
pub mod push;
pub mod raft;
pub mod scrub;
pub mod snapshot_policy;
pub mod tls;
