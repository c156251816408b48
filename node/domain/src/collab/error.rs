//! Why the domain refuses a command or a read. Each kind maps to one gRPC status.
//!
//! Decision: a user who is not an active member of a room (or patient, or post's room) gets
//! **NotFound**, exactly as if it did not exist, so that membership of patient teams does not
//! leak. PermissionDenied is for members who lack a right (a non-owner approving, editing
//! someone else's post) and for accounts that are not allowed to act at all.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("not signed in, or the session has ended")]
    Unauthenticated,
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
