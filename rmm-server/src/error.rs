//! Errors. [`ApiError`] is the only thing that becomes an HTTP error
//! response: a status and the JSON body `{"error": "<code>", "message":
//! "<text>"}` (SPEC §2).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::service::ServiceError;
use crate::store::StoreError;

/// The JSON error body (the API contract's).
pub use rmm_api::ErrorBody;

/// An API error: status, machine code and human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`invalid_id`, `not_found`, ...).
    pub code: &'static str,
    /// Human-readable message (lowercase, no trailing period).
    pub message: String,
    /// Seconds to wait, for 429 (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422 with a code.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 413 `payload_too_large`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds the {limit}-byte limit"),
        )
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many failed attempts, retry in {} s",
                    retry_after.max(1)
                ),
            )
        }
    }

    /// 503 `overloaded` with `Retry-After` (too many agent handshakes at
    /// once: a reconnect storm is spread instead of queued).
    pub fn overloaded(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "too many agents connecting at once, retry in {} s",
                    retry_after.max(1)
                ),
            )
        }
    }

    /// 500 `internal` (the detail is logged, not sent).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error, see the server log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            other => ApiError::internal(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(invalid) => invalid.into(),
            ServiceError::NotFound(m) => ApiError::not_found(m),
            ServiceError::Conflict(m) => ApiError::conflict(m),
            ServiceError::Store(e) => e.into(),
            ServiceError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl From<rmm_api::Invalid> for ApiError {
    fn from(e: rmm_api::Invalid) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        ApiError::new(status, e.code, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.code, self.message);
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ServerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ServerError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A decoder's message with Rust type names replaced by JSON words, so
/// error bodies never expose implementation types (`expected struct
/// LoginRequest` becomes `expected a JSON object`, `expected u32` becomes
/// `expected a non-negative integer`).
pub fn public_detail(msg: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("u8", "a non-negative integer"),
        ("u16", "a non-negative integer"),
        ("u32", "a non-negative integer"),
        ("u64", "a non-negative integer"),
        ("u128", "a non-negative integer"),
        ("usize", "a non-negative integer"),
        ("i8", "an integer"),
        ("i16", "an integer"),
        ("i32", "an integer"),
        ("i64", "an integer"),
        ("i128", "an integer"),
        ("isize", "an integer"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("expected ") {
        out.push_str(&rest[..i + "expected ".len()]);
        rest = &rest[i + "expected ".len()..];
        let word_end = |s: &str| {
            s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '<' || c == '>'))
                .unwrap_or(s.len())
        };
        for (prefix, replacement) in [
            ("struct variant ", "a JSON object"),
            ("tuple struct ", "a JSON array"),
            ("struct ", "a JSON object"),
            ("enum ", "one of the documented values"),
            ("unit struct ", "null"),
        ] {
            if let Some(after) = rest.strip_prefix(prefix) {
                out.push_str(replacement);
                rest = &after[word_end(after)..];
                break;
            }
        }
        let end = word_end(rest);
        if let Some((_, w)) = WORDS.iter().find(|(t, _)| *t == &rest[..end]) {
            out.push_str(w);
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::public_detail;

    fn check(input: &str, want: &str) {
        assert_eq!(public_detail(input), want, "{input}");
    }

    #[test]
    fn rust_type_names_are_replaced() {
        check(
            "invalid type: integer `5`, expected struct LoginRequest at line 1 column 1",
            "invalid type: integer `5`, expected a JSON object at line 1 column 1",
        );
        check(
            "timeout_secs: invalid type: string \"x\", expected u32 at line 1 column 20",
            "timeout_secs: invalid type: string \"x\", expected a non-negative integer at line 1 column 20",
        );
        check("expected i64", "expected an integer");
        check(
            "unknown variant `x`, expected one of `a`, `b`",
            "unknown variant `x`, expected one of `a`, `b`",
        );
        check(
            "expected enum Role",
            "expected one of the documented values",
        );
        check("expected a string", "expected a string");
        check("expected u32expected", "expected u32expected");
        check("", "");
    }
}
