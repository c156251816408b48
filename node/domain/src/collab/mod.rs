//! The collaboration network's rules: accounts, facilities, invitations, patients and their
//! teams, sub-rooms, groups, connections, posts, read state, requests to facilities, the
//! resource map, search and authorization.
//!
//! Pure: commands read a [`HubView`] and return [`Change`]s; nothing here does I/O. The store
//! applies them in the replicated state machine (`store/collab.rs`).

pub mod accounts;
pub mod audit;
pub mod authz;
pub mod bigram;
pub mod commands;
pub mod connections;
pub mod directory;
pub mod error;
pub mod events;
pub mod kernel;
pub mod model;
pub mod posts;
pub mod queries;
pub mod requests;
pub mod rooms;
pub mod search;
pub mod second_factor;
pub mod sessions;
pub mod signed;
pub mod view;

pub use commands::{Command, Ctx, Effects, Outbound, Outcome, Raised, Trail, execute};
pub use error::{DomainError, DomainResult};
pub use signed::{Decision, Sender, decide};
pub use view::{Change, HubView, MemHub, ViewError, ViewResult};

#[cfg(test)]
mod tests;
