//! Classified errors (`rmm_bindings_common::ErrorInfo`) -> JavaScript
//! errors.
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
use rmm_bindings_common::ErrorClass;
pub(crate) use rmm_bindings_common::ErrorInfo;

/// `ErrorInfo` (classified in `rmm-bindings-common`) -> a JavaScript error.
pub(crate) trait IntoJs {
    /// The JavaScript error, as a `napi::Error` that keeps the object (so
    /// a rejection or throw hands exactly this object to JavaScript).
    fn into_js(self, env: &Env) -> Error;
}

impl IntoJs for ErrorInfo {
    fn into_js(self, env: &Env) -> Error {
        let fallback = Error::new(Status::GenericFailure, self.message.clone());
        build(self, env).unwrap_or(fallback)
    }
}

fn build(info: ErrorInfo, env: &Env) -> Result<Error> {
    let ErrorInfo {
        class,
        code,
        status,
        message,
        details,
        ..
    } = info;
    let mut obj = env.create_error(Error::new(Status::GenericFailure, message))?;
    obj.set("name", class.name())?;
    obj.set("code", code)?;
    obj.set("status", status.map(u32::from))?;
    if let Some(d) = details {
        match class {
            ErrorClass::PermissionDenied => {
                obj.set("path", d.path)?;
                obj.set("privilege", d.privilege)?;
            }
            ErrorClass::TaskFailed => {
                obj.set("upid", d.upid)?;
                obj.set("exitstatus", d.exitstatus)?;
                obj.set("logTail", d.log_tail)?;
            }
            _ => obj.set("upid", d.upid)?,
        }
    }
    Ok(Error::from(obj.to_unknown()))
}
