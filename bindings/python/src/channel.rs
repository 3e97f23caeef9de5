//! `rmm.channel`: which agent build a release channel offers
//! (`rmm_core::channel`, through `rmm_bindings_common::channel`).

use pyo3::prelude::*;
use rmm_bindings_common::channel as common;

use crate::errors::IntoPyErr;

rmm_bindings_common::release_value! {
    convert
    #[pyclass(frozen, get_all, module = "rmm.channel")]
    #[derive(Debug, Clone)]
    Release;
}

#[pymethods]
impl Release {
    fn __repr__(&self) -> String {
        format!(
            "Release(file_name={:?}, version={:?}, channel={:?})",
            self.file_name, self.version, self.channel
        )
    }
}

/// The build an agent on `os`/`arch` following `channel` should get from
/// the downloads directory `dir`, or `None` when nothing newer than
/// `current` is eligible. Beta agents get the newest build whatever its tag;
/// stable agents the newest build tagged stable (no `.channel` sidecar
/// counts as stable); versions compare as semantic versions.
#[pyfunction]
#[pyo3(signature = (dir, os, arch, channel = "stable", current = None))]
pub fn latest_for(
    py: Python<'_>,
    dir: std::path::PathBuf,
    os: &str,
    arch: &str,
    channel: &str,
    current: Option<&str>,
) -> PyResult<Option<Release>> {
    common::latest_for(&dir, os, arch, Some(channel), current)
        .map(|r| r.map(Release::from))
        .map_err(|e| e.into_pyerr(py))
}
