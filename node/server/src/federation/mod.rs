//! Hub↔hub federation: this hub's signing identity ([`identity`]), the peers it trusts
//! ([`trust`]: the configured list and the verifier of their signatures), mutual TLS with them
//! ([`transport`]) and the gRPC service peers call and the signed requests this hub sends
//! ([`service`]), a node's listener started from the configuration ([`listener`]), the
//! leader's sender of the outbox ([`sender`]), the files of shared rooms served to peers and
//! fetched from them ([`files`]) and what the sender last saw of each peer ([`board`]).
//!
//! Trust is configured, never discovered (the `[federation]` section of the hub's TOML file).
//! The rules of streams and the signed bytes are pure and live in
//! `kizuna_domain::federation`; the design and what is built so far are in `docs/federation.md`.

pub mod board;
pub mod files;
pub mod identity;
pub mod inbox;
pub mod listener;
pub mod sender;
pub mod service;
pub mod transport;
pub mod trust;

pub use board::{Board, ConfiguredPeer, PeerStatus};
pub use files::FileSource;
pub use identity::{HubIdentity, IdentityError};
pub use inbox::{BatchSink, VerifiedBatch};
pub use listener::{FederationListener, ListenerError};
pub use sender::FederationSender;
pub use service::{FederationEndpoint, connect, serve, signed_batch, signed_fetch, signed_probe};
pub use transport::{FederationTls, Issuers, TransportError, WatchedFederationTls};
pub use trust::{Peer, Refusal, Trust, VerifyKey};
