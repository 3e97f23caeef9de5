//! Errors of the API client and their mapping from Proxmox responses.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::config::ConfigError;
use crate::types::TaskState;
use crate::upid::Upid;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the Proxmox API client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// HTTP 403: the token lacks a privilege. `path` and `privilege` are
    /// parsed from Proxmox's `Permission check failed (/vms/100, VM.Snapshot)`
    /// when it names them.
    #[error("{}", describe_permission(path.as_deref(), privilege.as_deref(), message))]
    PermissionDenied {
        /// ACL path, e.g. `/vms/100`.
        path: Option<String>,
        /// Missing privilege, e.g. `VM.Snapshot` (alternatives joined by `|`).
        privilege: Option<String>,
        /// Proxmox's message.
        message: String,
    },
    /// Proxmox allows this only to the `root@pam` user itself (feature
    /// flags, bind mounts, device passthrough); no API token ever qualifies.
    #[error(
        "only root@pam may do this and an api token never counts as root@pam ({message}); use the privileged backend on the host"
    )]
    RequiresRootPam {
        /// Proxmox's message.
        message: String,
    },
    /// The object (guest, snapshot, storage, task, path) does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// Proxmox's message.
        message: String,
    },
    /// The node proxying the request could not reach the target node
    /// (HTTP 595-599).
    #[error("node {} is unreachable (http {status}): {message}", node.as_deref().unwrap_or("?"))]
    NodeUnreachable {
        /// The target node, taken from the request path.
        node: Option<String>,
        /// HTTP status (595-599).
        status: u16,
        /// Proxmox's message.
        message: String,
    },
    /// HTTP 401: the token id or secret is wrong, or the token expired.
    /// Never retried.
    #[error("authentication failed ({message}); check the api token id and secret")]
    Unauthorized {
        /// Proxmox's message.
        message: String,
    },
    /// The configuration changed since it was read (`digest` mismatch).
    #[error("the configuration was modified concurrently ({message}); read it again and retry")]
    ConfigModified {
        /// Proxmox's message.
        message: String,
    },
    /// Any other error response.
    #[error(
        "proxmox api error (http {status}): {message}{}",
        describe_errors(errors)
    )]
    Api {
        /// HTTP status.
        status: u16,
        /// The body's `message`, else the reason phrase.
        message: String,
        /// Per-parameter errors from the body's `errors`.
        errors: BTreeMap<String, String>,
    },
    /// A task finished with an exit status other than `OK` / `WARNINGS: N`.
    #[error("task {upid} failed: {exitstatus}")]
    TaskFailed {
        /// The task.
        upid: Upid,
        /// Its exit status (usually the error message).
        exitstatus: String,
        /// The last lines of the task log.
        log_tail: Vec<String>,
    },
    /// A task did not finish before the deadline. It may still be running.
    #[error("task {upid} did not finish within {waited:?}; it may still be running")]
    TaskTimeout {
        /// The task.
        upid: Upid,
        /// How long we waited.
        waited: Duration,
        /// The last state seen, if the task was visible at all.
        last_state: Option<TaskState>,
    },
    /// The request could not be carried out (connect, TLS, timeout).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The response did not have the expected shape.
    #[error("unexpected response from {path}: {source}")]
    Decode {
        /// Request path.
        path: String,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// An argument was rejected before anything was sent.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The argument.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The client configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn describe_permission(path: Option<&str>, privilege: Option<&str>, message: &str) -> String {
    match (path, privilege) {
        (Some(path), Some(privilege)) => format!(
            "permission denied: the token lacks {privilege} on {path}; grant it with an acl for the user and, for a privilege-separated token, for the token too"
        ),
        _ => format!("permission denied: {message}"),
    }
}

fn describe_errors(errors: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in errors {
        s.push_str(&format!("; {k}: {v}"));
    }
    s
}

impl Error {
    /// True for errors that mean "the object is not there".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// What kind of transport failure happened; decides what may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection was made, so the request was never sent (safe to
    /// retry, even a POST).
    Connect,
    /// TLS failed (certificate, pin, handshake). Never retried.
    Tls,
    /// The request timed out; it may have been processed.
    Timeout,
    /// Anything else after the request may have been sent.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Tls => "tls",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Other => "transport",
        })
    }
}

/// A failure below HTTP: connecting, TLS, timeouts, broken connections.
#[derive(Debug, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct TransportError {
    kind: TransportErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl TransportError {
    /// A transport error of `kind`.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> TransportError {
        TransportError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> TransportError {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The message including every source in the chain.
    pub fn full_message(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as _);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

/// Extracts the node name from `/nodes/{node}/...`.
fn node_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/nodes/")?;
    let node = rest.split('/').next()?;
    (!node.is_empty()).then(|| crate::client::percent_decode(node))
}

fn is_root_pam_only(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("only allowed for root@pam")
        || m.contains("only root can")
        || m.contains("only root@pam")
        || m.contains("restricted to root@pam")
}

/// Parses `Permission check failed (/vms/100, VM.Snapshot)`.
pub(crate) fn parse_permission_message(message: &str) -> (Option<String>, Option<String>) {
    let Some(start) = message.find('(') else {
        return (None, None);
    };
    let Some(end) = message.rfind(')') else {
        return (None, None);
    };
    if end <= start {
        return (None, None);
    }
    let inner = &message[start + 1..end];
    match inner.split_once(',') {
        Some((path, privilege)) if path.trim().starts_with('/') => {
            let privilege = privilege.trim();
            if privilege.is_empty() || privilege.contains(' ') {
                return (Some(path.trim().to_owned()), None);
            }
            (Some(path.trim().to_owned()), Some(privilege.to_owned()))
        }
        _ => (None, None),
    }
}

/// Maps a non-2xx Proxmox response to an [`Error`].
///
/// Proxmox puts the message into the HTTP reason phrase and, depending on
/// the version and code path, into the body's `message`; parameter errors
/// come as `errors: {param: text}`.
pub(crate) fn map_error_response(
    status: u16,
    reason: Option<&str>,
    body: &[u8],
    path: &str,
) -> Error {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let body_message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(|m| m.as_str())
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    let errors: BTreeMap<String, String> = json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(|e| e.as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), text.trim().to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let message = body_message
        .or_else(|| reason.map(str::to_owned))
        .unwrap_or_else(|| format!("http status {status}"));

    if status == 401 {
        return Error::Unauthorized { message };
    }
    if (595..=599).contains(&status) {
        return Error::NodeUnreachable {
            node: node_of(path),
            status,
            message,
        };
    }
    if is_root_pam_only(&message) || errors.values().any(|e| is_root_pam_only(e)) {
        return Error::RequiresRootPam { message };
    }
    if status == 403 {
        let (path, privilege) = parse_permission_message(&message);
        return Error::PermissionDenied {
            path,
            privilege,
            message,
        };
    }
    let lower = message.to_ascii_lowercase();
    if lower.contains("detected modified configuration") {
        return Error::ConfigModified { message };
    }
    if let Some((param, text)) = errors
        .iter()
        .find(|(_, v)| v.to_ascii_lowercase().contains("no such task"))
    {
        return Error::NotFound {
            message: format!("{param}: {text}"),
        };
    }
    if status == 404
        || (status == 500
            && (lower.contains("does not exist")
                || lower.contains("no such ")
                || lower.contains("not found")))
    {
        return Error::NotFound { message };
    }
    Error::Api {
        status,
        message,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_messages_parse() {
        assert_eq!(
            parse_permission_message("Permission check failed (/vms/100, VM.Snapshot)"),
            (Some("/vms/100".into()), Some("VM.Snapshot".into()))
        );
        assert_eq!(
            parse_permission_message(
                "Permission check failed (/vms/100, VM.Snapshot|VM.Snapshot.Rollback)"
            ),
            (
                Some("/vms/100".into()),
                Some("VM.Snapshot|VM.Snapshot.Rollback".into())
            )
        );
        assert_eq!(
            parse_permission_message("Permission check failed (user != root@pam)"),
            (None, None)
        );
        assert_eq!(
            parse_permission_message("Permission check failed"),
            (None, None)
        );
    }

    #[test]
    fn root_pam_refusals_are_recognised() {
        let e = map_error_response(
            403,
            Some(
                "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)",
            ),
            b"{\"data\":null}",
            "/nodes/pve1/lxc/100/config",
        );
        assert!(matches!(e, Error::RequiresRootPam { .. }), "{e:?}");
        let e = map_error_response(
            403,
            None,
            br#"{"data":null,"message":"Permission check failed (mount point type bind is only allowed for root@pam)\n"}"#,
            "/nodes/pve1/lxc",
        );
        assert!(matches!(e, Error::RequiresRootPam { .. }), "{e:?}");
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let e = map_error_response(401, Some("authentication failure"), b"", "/version");
        let s = e.to_string();
        assert!(s.starts_with("authentication failed"), "{s}");
        assert!(!s.ends_with('.'));
    }
}
