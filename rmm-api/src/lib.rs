//! # rmm-api
//!
//! The HTTP API of `rmm-server` (SPEC §2) as Rust types, once: every
//! request and response body, query string and enum, with the rules the
//! server enforces on them (limits, defaults, validation).
//!
//! - `rmm-server` serialises the responses, deserialises and validates the
//!   requests with these types, and derives its OpenAPI description from
//!   them (feature `openapi`: utoipa's `ToSchema` / `IntoParams` and the
//!   `schema` module's helpers).
//! - `rmm-client` deserialises the responses into these types (and
//!   re-exports them), and checks a request with the same rule before
//!   sending it.
//! - The Python and Node bindings convert from these types and take their
//!   limits and defaults from here.
//!
//! A rule lives next to its type and answers with [`Invalid`]: the HTTP
//! status, error code and message the server sends for it. So the server
//! refuses a request with exactly the error a client that checked first
//! reports without sending it.
//!
//! ```
//! use rmm_api::{CommandRequest, CommandType};
//!
//! let ok = CommandRequest::builder(CommandType::Bash, "uptime")
//!     .timeout_secs(30)
//!     .build()
//!     .expect("a valid request");
//! assert_eq!(ok.timeout_secs, Some(30));
//!
//! let err = CommandRequest::builder(CommandType::Sh, "  ").build().unwrap_err();
//! assert_eq!((err.status, err.code), (422, "invalid_command"));
//! ```
//!
//! Wire format: JSON; ids are UUIDs; timestamps are RFC 3339 strings in
//! UTC (`2026-11-23T18:00:00.123Z`, milliseconds; the enrollment expiry
//! in whole seconds), `DateTime<Utc>` here; enums are lowercase snake-case
//! words. Response types and enums are `#[non_exhaustive]`: the server may
//! add fields and words. Reading is lenient where the client always was
//! (missing counters, flags and texts read as zero, false or empty).
//!
//! With `openapi`, the doc comment of a type and of its fields is its
//! description in the OpenAPI document, so the rules are documented on
//! the `impl` blocks and methods instead.
//!
//! Architecture invariant: no HTTP, no IO; serde, `rmm-core`'s wire words
//! and, with `openapi`, utoipa.

mod agent;
mod audit;
mod command;
mod enroll;
mod error;
mod page;
pub mod pattern;
#[cfg(feature = "openapi")]
pub mod schema;
mod system;
mod user;
mod wire;
mod words;

pub use agent::{AgentStatus, AgentView, InventoryView};
pub use audit::{AuditPage, AuditView};
pub use command::{
    CommandAccepted, CommandPage, CommandRequest, CommandRequestBuilder, CommandStatus,
    CommandView, DetailText, MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS, Phase, WAIT_INITIAL_INTERVAL,
    WAIT_MAX_INTERVAL,
};
pub use enroll::{
    AGENT_NAME_PATTERN, EnrollRequest, EnrollResponse, MAX_AGENT_NAME_LEN, MAX_SERVER_URL_CHARS,
    check_agent_name, check_server_url, parse_channel, url_host, valid_agent_name,
};
pub use error::{ErrorBody, Invalid};
pub use page::PageLimit;
pub use system::{HealthView, ReleaseView};
pub use user::{
    LoginRequest, MAX_EMAIL_CHARS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, Role, TokenResponse,
    UserCreate, UserUpdate, UserView, check_password, user_email,
};

/// The release channel (`stable` / `beta`): `rmm_core`'s, whose serde
/// words are the API's.
pub use rmm_core::channel::Channel;
/// The interpreter and security context words of a command: `rmm_core`'s,
/// whose serde words are the API's.
pub use rmm_core::protocol::{CommandContext, CommandType};

/// Length in characters: the unit of every length limit here (and of
/// OpenAPI's `minLength` / `maxLength`), counted on the text as sent.
pub(crate) fn chars(s: &str) -> usize {
    s.chars().count()
}
