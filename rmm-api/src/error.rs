//! The error body of every error response, and [`Invalid`]: a request a
//! rule of this crate refuses.

use serde::{Deserialize, Serialize};

/// The JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// Human-readable message.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: String,
}

impl ErrorBody {
    /// A body with this code and message.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            message: message.into(),
        }
    }
}

/// A request refused by one of the API's rules, as the server answers it:
/// HTTP status, error code and message. The server sends it as its error
/// response; the client and the bindings return it without sending the
/// request, so callers see the same error either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct Invalid {
    /// HTTP status: 422 for an unusable value, 400 for a bad query or an
    /// unknown word.
    pub status: u16,
    /// Machine code (the error body's `error`).
    pub code: &'static str,
    /// Human text (the error body's `message`).
    pub message: String,
}

impl Invalid {
    /// 422 Unprocessable Content: a well-formed but unusable value.
    pub const UNPROCESSABLE: u16 = 422;
    /// 400 Bad Request: a bad query string or an unknown word.
    pub const BAD_REQUEST: u16 = 400;

    /// A refusal with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            status,
            code,
            message: message.into(),
        }
    }

    /// 422 with `code`.
    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Invalid::new(Invalid::UNPROCESSABLE, code, message)
    }
}
