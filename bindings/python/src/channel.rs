//! `rmm.channel`: which agent build a release channel offers
//! (`rmm_core::channel`, through `rmm_bindings_common::channel`).

use pyo3::prelude::*;
use rmm_bindings_common::channel as common;

use crate::errors::IntoPyErr;

/// An agent build in a downloads directory.
#[pyclass(frozen, get_all, module = "rmm.channel")]
#[derive(Debug, Clone)]
pub struct Release {
    /// File name in the downloads directory.
    pub file_name: String,
    /// `linux`, `windows` or `darwin`.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Semantic version.
    pub version: String,
    /// `stable` or `beta`.
    pub channel: String,
    /// Hex SHA-256 from the `.sha256` sidecar.
    pub sha256: String,
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

impl From<common::Release> for Release {
    fn from(r: common::Release) -> Self {
        Release {
            file_name: r.file_name,
            os: r.os,
            arch: r.arch,
            version: r.version,
            channel: r.channel,
            sha256: r.sha256,
        }
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
