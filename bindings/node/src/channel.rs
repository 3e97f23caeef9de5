//! `latestFor` (`rmm.channel.latestFor` in `rmm.js`): which agent build a
//! release channel offers (`rmm_core::channel`).

use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_core::channel::{Arch, Channel, Os, Version};

use crate::errors::ErrorInfo;

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

fn invalid(e: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::invalid(e.to_string())
}

fn decide(
    dir: &str,
    os: &str,
    arch: &str,
    channel: &str,
    current: Option<&str>,
) -> std::result::Result<Option<Release>, ErrorInfo> {
    let os: Os = os.parse().map_err(invalid)?;
    let arch = Arch::new(arch).map_err(invalid)?;
    let channel: Channel = channel.parse().map_err(invalid)?;
    let current = current
        .map(|v| Version::parse(v.trim_start_matches('v')))
        .transpose()
        .map_err(|e| ErrorInfo::invalid(format!("invalid current version: {e}")))?;
    let release = rmm_core::channel::latest_for_dir(dir, os, &arch, channel, current.as_ref())
        .map_err(|e| ErrorInfo::new("RmmError", "scan_failed", e.to_string()))?;
    Ok(release.map(|r| Release {
        file_name: r.file_name().to_owned(),
        os: r.os().to_string(),
        arch: r.arch().to_string(),
        version: r.version().to_string(),
        channel: r.channel().to_string(),
        sha256: r.sha256().to_string(),
    }))
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
    decide(
        &dir,
        &os,
        &arch,
        channel.as_deref().unwrap_or("stable"),
        current.as_deref(),
    )
    .map_err(|e| e.into_js(&env))
}
