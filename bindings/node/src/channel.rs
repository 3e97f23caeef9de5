//! `latestFor` (`rmm.channel.latestFor` in `rmm.js`): which agent build a
//! release channel offers (`rmm_core::channel`).

use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_bindings_common::channel as common;

use crate::errors::IntoJs;

/// An agent build in a downloads directory.
#[napi(object)]
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

/// The build an agent on `os`/`arch` following `channel` (`stable` by
/// default, or `beta`) should get from the downloads directory `dir`, or
/// `null` when nothing newer than `current` is eligible. Beta agents get the
/// newest build whatever its tag; stable agents the newest build tagged
/// stable (no `.channel` sidecar counts as stable); versions compare as
/// semantic versions.
#[napi]
pub fn latest_for(
    env: Env,
    dir: String,
    os: String,
    arch: String,
    channel: Option<String>,
    current: Option<String>,
) -> Result<Option<Release>> {
    let dir = std::path::Path::new(&dir);
    common::latest_for(dir, &os, &arch, channel.as_deref(), current.as_deref())
        .map(|r| r.map(Release::from))
        .map_err(|e| e.into_js(&env))
}
