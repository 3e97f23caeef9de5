//! Classified errors (`rmm_bindings_common::ErrorInfo`) -> the Python
//! exception hierarchy of `rmm._errors` (rooted at `rmm.RmmError`).
//!
//! Classification needs no interpreter, so it happens wherever the error
//! arises; the exception instance is built only where the GIL is held.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};
use rmm_bindings_common::ErrorClass;
pub(crate) use rmm_bindings_common::ErrorInfo;

/// `ErrorInfo` -> an instance of the `rmm._errors` class of the same name.
pub(crate) trait IntoPyErr {
    /// The exception instance.
    fn into_pyerr(self, py: Python<'_>) -> PyErr;
}

impl IntoPyErr for ErrorInfo {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match build(self, py) {
            Ok(e) => e,
            Err(e) => e,
        }
    }
}

fn build(info: ErrorInfo, py: Python<'_>) -> PyResult<PyErr> {
    static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = ERRORS.get_or_try_init(py, || {
        PyModule::import(py, "rmm._errors").map(Bound::unbind)
    })?;
    let class = module.bind(py).getattr(info.class.name())?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("code", &info.code)?;
    kwargs.set_item("status", info.status)?;
    let d = info.details();
    match info.class {
        ErrorClass::PermissionDenied => {
            kwargs.set_item("path", d.path)?;
            kwargs.set_item("privilege", d.privilege)?;
        }
        ErrorClass::TaskFailed => {
            kwargs.set_item("upid", d.upid.unwrap_or_default())?;
            kwargs.set_item("exitstatus", d.exitstatus.unwrap_or_default())?;
            kwargs.set_item("log_tail", d.log_tail)?;
        }
        ErrorClass::Timeout => kwargs.set_item("upid", d.upid)?,
        _ => {}
    }
    let instance = class.call((info.message,), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}
