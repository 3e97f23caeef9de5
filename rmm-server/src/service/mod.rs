//! The service layer: what the server does, independent of how it was
//! asked. HTTP handlers ([`crate::api`]), the `rmm-server` subcommands and
//! the hub call these functions; a handler only extracts its inputs, checks
//! the caller's role, calls one service function and maps the result to a
//! response. Services never see HTTP types: they take plain values and an
//! [`Actor`] and return domain values or a [`ServiceError`], which
//! [`crate::error`] maps to a status once for every route.

pub mod agents;
pub mod audit;
pub mod commands;
pub mod enrollment;
pub mod releases;
pub mod users;

use crate::store::StoreError;

/// Who asked, for the audit log: a user's e-mail, `cli`, `system` or
/// `agent:<id>`, and the client's address when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The name recorded as the audit row's actor.
    pub name: String,
    /// The client address (after the trusted-proxy rule), if any.
    pub address: Option<String>,
}

impl Actor {
    /// A named actor at an address.
    pub fn new(name: impl Into<String>, address: Option<String>) -> Self {
        Actor {
            name: name.into(),
            address,
        }
    }

    /// The `rmm-server` command line (local, no address).
    pub fn cli() -> Self {
        Self::new("cli", None)
    }

    /// The server itself (configuration at start, sweeps).
    pub fn system() -> Self {
        Self::new("system", None)
    }
}

/// Why a service call did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A value breaks one of the API contract's rules (`rmm_api`: 422
    /// for an unusable value, 400 for an unknown word).
    #[error("{} ({})", .0.message, .0.code)]
    Invalid(#[from] rmm_api::Invalid),
    /// The object does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that is the server's fault (logged, HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// A broken rule that only the server can judge (HTTP 422).
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid(rmm_api::Invalid::new(
            rmm_api::Invalid::UNPROCESSABLE,
            code,
            message,
        ))
    }

    /// An unknown object.
    pub fn not_found(message: impl Into<String>) -> Self {
        ServiceError::NotFound(message.into())
    }

    /// A conflict with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        ServiceError::Conflict(message.into())
    }

    /// The server's fault.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ServiceError::Internal(detail.to_string())
    }
}
