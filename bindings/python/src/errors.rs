//! Rust errors -> the Python exception hierarchy of `rmm._errors` (rooted at
//! `rmm.RmmError`).
//!
//! Errors are first classified into an [`ErrorInfo`] (no interpreter
//! needed, so it can cross threads) and become an exception instance only
//! where the GIL is held.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

/// A classified error: which exception class, with which attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorInfo {
    /// Class name in `rmm._errors`.
    pub class: &'static str,
    /// Machine code (the server's `error` field, or a fixed word).
    pub code: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// The exception text.
    pub message: String,
    /// Class-specific attributes (rare, so boxed).
    pub details: Option<Box<Details>>,
}

/// Attributes of `PermissionDenied`, `TaskFailed` and task `Timeout`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Details {
    /// Proxmox ACL path (`PermissionDenied`).
    pub path: Option<String>,
    /// Missing Proxmox privilege (`PermissionDenied`).
    pub privilege: Option<String>,
    /// Task UPID (`TaskFailed`, `Timeout` of a task).
    pub upid: Option<String>,
    /// Task exit status (`TaskFailed`).
    pub exitstatus: Option<String>,
    /// Last task log lines (`TaskFailed`).
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

    /// A bad argument given by the caller (also a `ValueError`).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ErrorInfo::new("InvalidArgument", "invalid_argument", message)
    }

    /// A bug or impossible state in the binding.
    pub(crate) fn internal(message: &str) -> Self {
        ErrorInfo::new(
            "RmmError",
            "internal",
            format!("rmm internal error: {message}"),
        )
    }

    fn with_status(mut self, status: Option<u16>) -> Self {
        self.status = status;
        self
    }

    fn with_details(mut self, details: Details) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// The exception instance.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self.build(py) {
            Ok(e) => e,
            Err(e) => e,
        }
    }

    fn build(self, py: Python<'_>) -> PyResult<PyErr> {
        static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
        let module = ERRORS.get_or_try_init(py, || {
            PyModule::import(py, "rmm._errors").map(Bound::unbind)
        })?;
        let class = module.bind(py).getattr(self.class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("code", self.code)?;
        kwargs.set_item("status", self.status)?;
        let d = self.details.map(|d| *d).unwrap_or_default();
        match self.class {
            "PermissionDenied" => {
                kwargs.set_item("path", d.path)?;
                kwargs.set_item("privilege", d.privilege)?;
            }
            "TaskFailed" => {
                kwargs.set_item("upid", d.upid.unwrap_or_default())?;
                kwargs.set_item("exitstatus", d.exitstatus.unwrap_or_default())?;
                kwargs.set_item("log_tail", d.log_tail)?;
            }
            "Timeout" => kwargs.set_item("upid", d.upid)?,
            _ => {}
        }
        let instance = class.call((self.message,), Some(&kwargs))?;
        Ok(PyErr::from_value(instance))
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
