//! # rmm-bindings-common
//!
//! The FFI-free layer the Python (`bindings/python`) and Node
//! (`bindings/node`) bindings sit on, as polars and delta-rs do it: what
//! does not depend on the language is written here once, and each binding
//! keeps only what its language shapes (pyclasses, the GIL and asyncio;
//! napi objects and Promises; building the exception or error object).
//!
//! - [`error`]: every error of `rmm-client`, `rmm-proxmox` and
//!   `rmm_core::channel`, and every bad argument, classified into one
//!   [`ErrorInfo`] (class, stable code, status, message, details).
//! - [`args`], and the parsing halves of [`server`] and [`proxmox`]:
//!   arguments as the languages pass them (text, optional numbers of
//!   seconds) -> typed requests, with one set of rules and messages
//!   (argument names spelled per [`Lang`]). Limits and defaults are those
//!   of `rmm-api` (through `rmm-client`) / `rmm-proxmox`, not restated
//!   here.
//! - [`server`], [`proxmox`], [`channel`]: every operation once, as a
//!   future returning plain structs (ids and enums as text) that the
//!   bindings copy field by field into their own types; the server API's
//!   value types are defined once for all of them by [`server_values!`].
//!
//! Architecture invariant: no pyo3, napi or async runtime here; the futures
//! run on whatever runtime the binding drives them with.

pub mod args;
pub mod channel;
pub mod error;
pub mod proxmox;
pub mod server;

pub use args::{Lang, parse_id, parse_upid};

/// What [`server_values!`] expands to refers to (not an API).
#[doc(hidden)]
pub mod __macro {
    pub use chrono::{DateTime, Utc};
    pub use rmm_client::{Agent, CommandInfo, EnrollmentBundle};
}
pub use error::{Details, ErrorClass, ErrorInfo};
