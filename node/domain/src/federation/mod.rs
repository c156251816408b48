//! Federation between hubs, without I/O or crypto: who a hub is ([`names`]), what a hub signs
//! ([`signing`]: the canonical bytes of a batch or a probe) and the exactly-once, in-order rules
//! of a hub-to-hub stream ([`stream`]).
//!
//! The server signs and verifies the bytes with ed25519 and carries them over mutual TLS; the
//! design and what is built so far are in `docs/federation.md`.

pub mod connections;
pub mod copies;
pub mod files;
pub mod home;
pub mod inbox;
pub mod map;
pub mod names;
pub mod outbox;
pub mod parties;
pub mod peers;
pub mod receive;
pub mod requests;
pub mod signing;
pub mod stream;
pub mod wire;

pub use inbox::{InboxMessage, Receipt};
pub use names::{HubKeyId, HubKeyIdError, HubName, HubNameError};
pub use outbox::{OutboxMessage, PendingWrite};
pub use signing::{BatchHeader, FetchHeader, PayloadDigest, ProbeHeader};
pub use stream::{Arrival, Inbound, Outbound, SeqRange, StreamError};
pub use wire::{Message, Party, RoomWrite};
