//! `latestFor` (`rmm.channel.latestFor` in `rmm.js`): which agent build a
//! release channel offers (`rmm_core::channel`).

use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_bindings_common::channel as common;

use crate::errors::IntoJs;

rmm_bindings_common::release_value! {
    convert
    #[napi(object)]
    Release;
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
