//! Rust errors -> JavaScript errors.
//!
//! Every rejection and every synchronous throw of the binding is an
//! `Error` whose `name` says what happened (`AuthError`, `NotFound`,
//! `PermissionDenied`, `TaskFailed`, ... — the same classes as the Python
//! binding's exceptions; `rmm.js` exports matching classes for
//! `instanceof`), with
//!
//! - `code`: a stable machine code — the server's `error` field for API
//!   errors (`invalid_credentials`, `not_found`, ...), else a fixed word
//!   (`transport`, `timeout`, `task_failed`, `permission_denied`, ...);
//! - `status`: the HTTP status, or `null`;
//! - `path` / `privilege` (`PermissionDenied` from Proxmox), `upid`,
//!   `exitstatus`, `logTail` (`TaskFailed`), `upid` (task `Timeout`).

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};

/// A classified error: which class, with which properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorInfo {
    /// The error's `name`.
    pub class: &'static str,
    /// Machine code.
    pub code: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// The error message.
    pub message: String,
    /// Class-specific properties (rare, so boxed).
    pub details: Option<Box<Details>>,
}

/// Properties of `PermissionDenied`, `TaskFailed` and task `Timeout`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Details {
    /// Proxmox ACL path.
    pub path: Option<String>,
    /// Missing Proxmox privilege.
    pub privilege: Option<String>,
    /// Task UPID.
    pub upid: Option<String>,
    /// Task exit status.
    pub exitstatus: Option<String>,
    /// Last task log lines.
    pub log_tail: Vec<String>,
}

impl ErrorInfo {
    pub(crate) fn new(
        class: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ErrorInfo {
            class,
            code: code.into(),
            status: None,
            message: message.into(),
            details: None,
        }
    }

    /// A bad argument given by the caller.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ErrorInfo::new("InvalidArgument", "invalid_argument", message)
    }

    fn with_status(mut self, status: Option<u16>) -> Self {
        self.status = status;
        self
    }

    fn with_details(mut self, details: Details) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// The JavaScript error, as a `napi::Error` that keeps the object (so
    /// a rejection or throw hands exactly this object to JavaScript).
    pub(crate) fn into_js(self, env: &Env) -> Error {
        let fallback = Error::new(Status::GenericFailure, self.message.clone());
        self.build(env).unwrap_or(fallback)
    }

    fn build(self, env: &Env) -> Result<Error> {
        let mut obj = env.create_error(Error::new(Status::GenericFailure, self.message))?;
        obj.set("name", self.class)?;
        obj.set("code", self.code)?;
        obj.set("status", self.status.map(u32::from))?;
        if let Some(d) = self.details {
            match self.class {
                "PermissionDenied" => {
                    obj.set("path", d.path)?;
                    obj.set("privilege", d.privilege)?;
                }
                "TaskFailed" => {
                    obj.set("upid", d.upid)?;
                    obj.set("exitstatus", d.exitstatus)?;
                    obj.set("logTail", d.log_tail)?;
                }
                _ => obj.set("upid", d.upid)?,
            }
        }
        Ok(Error::from(obj.to_unknown()))
    }
}

impl From<rmm_client::Error> for ErrorInfo {
    fn from(e: rmm_client::Error) -> Self {
        use rmm_client::ErrorKind as K;
        let class = match e.kind() {
            K::Auth => "AuthError",
            K::Forbidden => "PermissionDenied",
            K::NotFound => "NotFound",
            K::Conflict => "Conflict",
            K::BadRequest | K::InvalidUrl => "InvalidArgument",
            K::TooLarge => "PayloadTooLarge",
            K::RateLimited => "RateLimited",
            K::Timeout => "Timeout",
            K::Server => "ServerError",
            K::Transport => "TransportError",
            _ => "RmmError",
        };
        ErrorInfo::new(class, e.code(), e.to_string()).with_status(e.status())
    }
}

impl From<rmm_proxmox::Error> for ErrorInfo {
    fn from(e: rmm_proxmox::Error) -> Self {
        use rmm_proxmox::Error as E;
        let message = e.to_string();
        match e {
            E::PermissionDenied {
                path, privilege, ..
            } => ErrorInfo::new("PermissionDenied", "permission_denied", message)
                .with_status(Some(403))
                .with_details(Details {
                    path,
                    privilege,
                    ..Details::default()
                }),
            E::RequiresRootPam { .. } => {
                ErrorInfo::new("PermissionDenied", "requires_root_pam", message)
                    .with_status(Some(403))
            }
            E::NotFound { .. } => ErrorInfo::new("NotFound", "not_found", message),
            E::NodeUnreachable { status, .. } => {
                ErrorInfo::new("ServerError", "node_unreachable", message).with_status(Some(status))
            }
            E::Unauthorized { .. } => {
                ErrorInfo::new("AuthError", "unauthorized", message).with_status(Some(401))
            }
            E::ConfigModified { .. } => ErrorInfo::new("Conflict", "config_modified", message),
            E::Api { status, .. } => {
                let class = match status {
                    400 | 422 => "InvalidArgument",
                    401 => "AuthError",
                    403 => "PermissionDenied",
                    404 => "NotFound",
                    409 => "Conflict",
                    _ => "ServerError",
                };
                ErrorInfo::new(class, "api_error", message).with_status(Some(status))
            }
            E::TaskFailed {
                upid,
                exitstatus,
                log_tail,
            } => ErrorInfo::new("TaskFailed", "task_failed", message).with_details(Details {
                upid: Some(upid.to_string()),
                exitstatus: Some(exitstatus),
                log_tail,
                ..Details::default()
            }),
            E::TaskTimeout { upid, .. } => ErrorInfo::new("Timeout", "task_timeout", message)
                .with_details(Details {
                    upid: Some(upid.to_string()),
                    ..Details::default()
                }),
            E::Transport(t) => ErrorInfo::new("TransportError", t.kind().to_string(), message),
            E::Decode { .. } => ErrorInfo::new("ServerError", "decode", message),
            E::InvalidArgument { .. } => ErrorInfo::invalid(message),
            E::Config(_) => ErrorInfo::new("InvalidArgument", "invalid_config", message),
            _ => ErrorInfo::new("RmmError", "proxmox_error", message),
        }
    }
}

impl From<rmm_proxmox::ConfigError> for ErrorInfo {
    fn from(e: rmm_proxmox::ConfigError) -> Self {
        ErrorInfo::new("InvalidArgument", "invalid_config", e.to_string())
    }
}
