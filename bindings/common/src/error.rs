//! Error classification: every error of `rmm-client`, `rmm-proxmox` and
//! `rmm_core::channel`, and every bad argument, becomes one [`ErrorInfo`]:
//! the class (the Python exception class / the JavaScript error `name`), a
//! stable machine code, the HTTP status and the message, plus the few
//! attributes some classes carry ([`Details`]).
//!
//! An `ErrorInfo` needs no interpreter, so it can cross threads and be
//! built on the runtime's workers; the bindings turn it into their
//! exception or error object where the language allows.

/// The error classes both bindings expose (`rmm.RmmError` and its
/// subclasses in Python, the error `name`s of the Node binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The base class: nothing more specific applies.
    RmmError,
    /// No, wrong or expired credentials (HTTP 401), or no login yet.
    AuthError,
    /// Authenticated but not allowed (HTTP 403); see [`Details::path`].
    PermissionDenied,
    /// No such object (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// A malformed or unusable argument, rejected here or by the server.
    InvalidArgument,
    /// The request body is over the server's limit (HTTP 413).
    PayloadTooLarge,
    /// Too many requests (HTTP 429).
    RateLimited,
    /// A wait gave up; see [`Details::upid`] for Proxmox tasks.
    Timeout,
    /// A Proxmox task ended badly; see [`Details`].
    TaskFailed,
    /// The server failed (HTTP 5xx) or answered something unexpected.
    ServerError,
    /// The server could not be reached.
    TransportError,
}

impl ErrorClass {
    /// The class name, as the bindings spell it (`NotFound`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::RmmError => "RmmError",
            ErrorClass::AuthError => "AuthError",
            ErrorClass::PermissionDenied => "PermissionDenied",
            ErrorClass::NotFound => "NotFound",
            ErrorClass::Conflict => "Conflict",
            ErrorClass::InvalidArgument => "InvalidArgument",
            ErrorClass::PayloadTooLarge => "PayloadTooLarge",
            ErrorClass::RateLimited => "RateLimited",
            ErrorClass::Timeout => "Timeout",
            ErrorClass::TaskFailed => "TaskFailed",
            ErrorClass::ServerError => "ServerError",
            ErrorClass::TransportError => "TransportError",
        }
    }
}

/// A classified error: which class, with which attributes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ErrorInfo {
    /// The class.
    pub class: ErrorClass,
    /// Machine code: the server's `error` field for API errors, else a
    /// fixed word (`transport`, `timeout`, `task_failed`, ...).
    pub code: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// The text for humans.
    pub message: String,
    /// Class-specific attributes (rare, so boxed).
    pub details: Option<Box<Details>>,
}

/// Attributes of `PermissionDenied`, `TaskFailed` and task `Timeout`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Details {
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
    /// An error of `class` with `code` and `message`, no status.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            class,
            code: code.into(),
            status: None,
            message: message.into(),
            details: None,
        }
    }

    /// A bad argument given by the caller (`InvalidArgument`,
    /// `invalid_argument`).
    pub fn invalid(message: impl Into<String>) -> Self {
        ErrorInfo::new(ErrorClass::InvalidArgument, "invalid_argument", message)
    }

    /// A bug or impossible state in a binding (`RmmError`, `internal`).
    pub fn internal(message: &str) -> Self {
        ErrorInfo::new(
            ErrorClass::RmmError,
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

    /// The attributes, or all empty.
    pub fn details(&self) -> Details {
        self.details.as_deref().cloned().unwrap_or_default()
    }
}

impl From<rmm_client::Error> for ErrorInfo {
    fn from(e: rmm_client::Error) -> Self {
        use rmm_client::ErrorKind as K;
        let class = match e.kind() {
            K::Auth => ErrorClass::AuthError,
            K::Forbidden => ErrorClass::PermissionDenied,
            K::NotFound => ErrorClass::NotFound,
            K::Conflict => ErrorClass::Conflict,
            K::BadRequest | K::InvalidUrl => ErrorClass::InvalidArgument,
            K::TooLarge => ErrorClass::PayloadTooLarge,
            K::RateLimited => ErrorClass::RateLimited,
            K::Timeout => ErrorClass::Timeout,
            K::Server => ErrorClass::ServerError,
            K::Transport => ErrorClass::TransportError,
            _ => ErrorClass::RmmError,
        };
        ErrorInfo::new(class, e.code(), e.to_string()).with_status(e.status())
    }
}

impl From<rmm_proxmox::Error> for ErrorInfo {
    fn from(e: rmm_proxmox::Error) -> Self {
        use ErrorClass as C;
        use rmm_proxmox::Error as E;
        let message = e.to_string();
        match e {
            E::PermissionDenied {
                path, privilege, ..
            } => ErrorInfo::new(C::PermissionDenied, "permission_denied", message)
                .with_status(Some(403))
                .with_details(Details {
                    path,
                    privilege,
                    ..Details::default()
                }),
            E::RequiresRootPam { .. } => {
                ErrorInfo::new(C::PermissionDenied, "requires_root_pam", message)
                    .with_status(Some(403))
            }
            E::NotFound { .. } => ErrorInfo::new(C::NotFound, "not_found", message),
            E::NodeUnreachable { status, .. } => {
                ErrorInfo::new(C::ServerError, "node_unreachable", message)
                    .with_status(Some(status))
            }
            E::Unauthorized { .. } => {
                ErrorInfo::new(C::AuthError, "unauthorized", message).with_status(Some(401))
            }
            E::ConfigModified { .. } => ErrorInfo::new(C::Conflict, "config_modified", message),
            E::Api { status, .. } => {
                let class = match status {
                    400 | 422 => C::InvalidArgument,
                    401 => C::AuthError,
                    403 => C::PermissionDenied,
                    404 => C::NotFound,
                    409 => C::Conflict,
                    _ => C::ServerError,
                };
                ErrorInfo::new(class, "api_error", message).with_status(Some(status))
            }
            E::TaskFailed {
                upid,
                exitstatus,
                log_tail,
            } => ErrorInfo::new(C::TaskFailed, "task_failed", message).with_details(Details {
                upid: Some(upid.to_string()),
                exitstatus: Some(exitstatus),
                log_tail,
                ..Details::default()
            }),
            E::TaskTimeout { upid, .. } => ErrorInfo::new(C::Timeout, "task_timeout", message)
                .with_details(Details {
                    upid: Some(upid.to_string()),
                    ..Details::default()
                }),
            E::Transport(t) => ErrorInfo::new(C::TransportError, t.kind().to_string(), message),
            E::Decode { .. } => ErrorInfo::new(C::ServerError, "decode", message),
            E::InvalidArgument { .. } => ErrorInfo::invalid(message),
            E::Config(_) => ErrorInfo::new(C::InvalidArgument, "invalid_config", message),
            _ => ErrorInfo::new(C::RmmError, "proxmox_error", message),
        }
    }
}

impl From<rmm_proxmox::ConfigError> for ErrorInfo {
    fn from(e: rmm_proxmox::ConfigError) -> Self {
        ErrorInfo::new(ErrorClass::InvalidArgument, "invalid_config", e.to_string())
    }
}

impl From<rmm_core::channel::ScanError> for ErrorInfo {
    fn from(e: rmm_core::channel::ScanError) -> Self {
        ErrorInfo::new(ErrorClass::RmmError, "scan_failed", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rmm_proxmox::{TransportError, TransportErrorKind, Upid};

    use super::*;

    const UPID: &str = "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:101:root@pam!rmm:";

    /// `(class, code, status)` of a classified error.
    type Expected<'a> = (ErrorClass, &'a str, Option<u16>);

    fn check(e: impl Into<ErrorInfo>, expected: Expected<'_>) -> ErrorInfo {
        let info = e.into();
        assert_eq!(
            (info.class, info.code.as_str(), info.status),
            expected,
            "{info:?}"
        );
        info
    }

    fn api(status: u16, code: &str) -> rmm_client::Error {
        rmm_client::Error::Api {
            status,
            code: code.to_owned(),
            message: "nope".to_owned(),
        }
    }

    fn upid() -> Upid {
        UPID.parse().expect("test upid")
    }

    #[test]
    fn client_errors() {
        use ErrorClass as C;
        use rmm_client::Error as E;
        let cases: Vec<(rmm_client::Error, Expected<'_>)> = vec![
            (
                api(401, "invalid_credentials"),
                (C::AuthError, "invalid_credentials", Some(401)),
            ),
            (
                api(403, "forbidden"),
                (C::PermissionDenied, "forbidden", Some(403)),
            ),
            (api(404, "not_found"), (C::NotFound, "not_found", Some(404))),
            (api(409, "conflict"), (C::Conflict, "conflict", Some(409))),
            (
                api(400, "bad_json"),
                (C::InvalidArgument, "bad_json", Some(400)),
            ),
            (
                api(422, "invalid_command"),
                (C::InvalidArgument, "invalid_command", Some(422)),
            ),
            (
                api(413, "too_large"),
                (C::PayloadTooLarge, "too_large", Some(413)),
            ),
            (
                api(429, "rate_limited"),
                (C::RateLimited, "rate_limited", Some(429)),
            ),
            (
                api(500, "internal"),
                (C::ServerError, "internal", Some(500)),
            ),
            (E::Decode("eof".into()), (C::ServerError, "decode", None)),
            (
                E::WaitTimeout {
                    command_id: uuid::Uuid::nil(),
                    waited: Duration::from_secs(1),
                },
                (C::Timeout, "timeout", None),
            ),
            (
                E::InvalidUrl {
                    url: "ftp://x".into(),
                    reason: "scheme".into(),
                },
                (C::InvalidArgument, "invalid_url", None),
            ),
            (E::NoToken, (C::AuthError, "unauthorized", None)),
        ];
        for (e, expected) in cases {
            let text = e.to_string();
            let info = check(e, expected);
            assert_eq!(info.message, text);
            assert_eq!(info.details, None);
        }
    }

    #[test]
    fn proxmox_errors() {
        use ErrorClass as C;
        use rmm_proxmox::Error as E;
        let msg = || "m".to_owned();
        let api = |status| E::Api {
            status,
            message: msg(),
            errors: BTreeMap::new(),
        };
        let cases: Vec<(rmm_proxmox::Error, Expected<'_>)> = vec![
            (
                E::RequiresRootPam { message: msg() },
                (C::PermissionDenied, "requires_root_pam", Some(403)),
            ),
            (
                E::NotFound { message: msg() },
                (C::NotFound, "not_found", None),
            ),
            (
                E::NodeUnreachable {
                    node: Some("pve2".into()),
                    status: 595,
                    message: msg(),
                },
                (C::ServerError, "node_unreachable", Some(595)),
            ),
            (
                E::Unauthorized { message: msg() },
                (C::AuthError, "unauthorized", Some(401)),
            ),
            (
                E::ConfigModified { message: msg() },
                (C::Conflict, "config_modified", None),
            ),
            (api(400), (C::InvalidArgument, "api_error", Some(400))),
            (api(422), (C::InvalidArgument, "api_error", Some(422))),
            (api(401), (C::AuthError, "api_error", Some(401))),
            (api(403), (C::PermissionDenied, "api_error", Some(403))),
            (api(404), (C::NotFound, "api_error", Some(404))),
            (api(409), (C::Conflict, "api_error", Some(409))),
            (api(500), (C::ServerError, "api_error", Some(500))),
            (
                E::Transport(TransportError::new(TransportErrorKind::Tls, "pin")),
                (C::TransportError, "tls", None),
            ),
            (
                E::Transport(TransportError::new(TransportErrorKind::Other, "reset")),
                (C::TransportError, "transport", None),
            ),
            (
                E::InvalidArgument {
                    field: "snapname",
                    reason: "spaces".into(),
                },
                (C::InvalidArgument, "invalid_argument", None),
            ),
            (
                E::Config(rmm_proxmox::ConfigError::Missing {
                    field: "url",
                    env: "RMM_PVE_URL",
                }),
                (C::InvalidArgument, "invalid_config", None),
            ),
        ];
        for (e, expected) in cases {
            let text = e.to_string();
            assert_eq!(check(e, expected).message, text);
        }
    }

    #[test]
    fn proxmox_details() {
        use ErrorClass as C;
        use rmm_proxmox::Error as E;
        let denied = check(
            E::PermissionDenied {
                path: Some("/vms/101".into()),
                privilege: Some("VM.Snapshot".into()),
                message: "Permission check failed".into(),
            },
            (C::PermissionDenied, "permission_denied", Some(403)),
        );
        let d = denied.details();
        assert_eq!(
            (d.path.as_deref(), d.privilege.as_deref()),
            (Some("/vms/101"), Some("VM.Snapshot"))
        );
        let failed = check(
            E::TaskFailed {
                upid: upid(),
                exitstatus: "boom".into(),
                log_tail: vec!["TASK ERROR: boom".into()],
            },
            (C::TaskFailed, "task_failed", None),
        );
        let d = failed.details();
        assert_eq!(d.upid.as_deref(), Some(UPID));
        assert_eq!(d.exitstatus.as_deref(), Some("boom"));
        assert_eq!(d.log_tail, ["TASK ERROR: boom"]);
        let slow = check(
            E::TaskTimeout {
                upid: upid(),
                waited: Duration::from_secs(3),
                last_state: None,
            },
            (C::Timeout, "task_timeout", None),
        );
        assert_eq!(slow.details().upid.as_deref(), Some(UPID));
        assert_eq!(slow.details().exitstatus, None);
    }

    #[test]
    fn config_and_local_errors() {
        use ErrorClass as C;
        check(
            rmm_proxmox::ConfigError::Invalid {
                field: "fingerprint",
                reason: "short".into(),
            },
            (C::InvalidArgument, "invalid_config", None),
        );
        check(
            ErrorInfo::invalid("bad"),
            (C::InvalidArgument, "invalid_argument", None),
        );
        let internal = check(
            ErrorInfo::internal("client state lost"),
            (C::RmmError, "internal", None),
        );
        assert_eq!(
            internal.to_string(),
            "rmm internal error: client state lost"
        );
    }

    #[test]
    fn class_names() {
        for (class, name) in [
            (ErrorClass::RmmError, "RmmError"),
            (ErrorClass::InvalidArgument, "InvalidArgument"),
            (ErrorClass::TaskFailed, "TaskFailed"),
            (ErrorClass::TransportError, "TransportError"),
        ] {
            assert_eq!(class.name(), name);
        }
    }
}
