//! Why the domain refuses a command or a read. Each kind maps to one gRPC status.
//!
//! Decision: a user who is not an active member of a room (or patient, or post's room) gets
//! **NotFound**, exactly as if it did not exist, so that membership of patient teams does not
//! leak. PermissionDenied is for members who lack a right (a non-owner approving, editing
//! someone else's post) and for accounts that are not allowed to act at all.

use serde::{Deserialize, Serialize};

use super::view::ViewError;

/// The one refusal type from the domain to the API: a refused write is remembered with
/// its idempotency key as this value (hence serde), and the API maps it to a status in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("not signed in, or the session has ended")]
    Unauthenticated,
    /// The state could not be read: not a refusal but a fault of this node. Apply stops on
    /// it (never remembered as a command's result); a query answers it as an internal error.
    #[error(transparent)]
    Unreadable(#[from] ViewError),
    /// Too many failed attempts: try again later (the message says when).
    #[error("{0}")]
    Throttled(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

pub(crate) fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidArgument(msg.into())
}

pub(crate) fn denied(msg: impl Into<String>) -> DomainError {
    DomainError::PermissionDenied(msg.into())
}

pub(crate) fn precondition(msg: impl Into<String>) -> DomainError {
    DomainError::FailedPrecondition(msg.into())
}

/// `what` (a room, a post, ...) does not exist, or the actor may not know that it does.
pub(crate) fn not_found(what: &str) -> DomainError {
    DomainError::NotFound(what.to_owned())
}
