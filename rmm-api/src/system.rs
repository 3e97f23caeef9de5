//! The server itself: its agent builds and its health.

use serde::{Deserialize, Serialize};

use crate::Channel;

/// A release as `GET /api/v1/downloads` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ReleaseView {
    /// File name under `/api/v1/downloads/`.
    pub file: String,
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Version.
    pub version: String,
    /// `stable` or `beta`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub channel: Channel,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl ReleaseView {
    /// The build `file`.
    pub fn new(
        file: impl Into<String>,
        os: impl Into<String>,
        arch: impl Into<String>,
        version: impl Into<String>,
        channel: Channel,
        sha256: impl Into<String>,
    ) -> Self {
        ReleaseView {
            file: file.into(),
            os: os.into(),
            arch: arch.into(),
            version: version.into(),
            channel,
            sha256: sha256.into(),
        }
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct HealthView {
    /// Always `ok` (a store fault is a 500).
    #[cfg_attr(feature = "openapi", schema(pattern = "^ok$"))]
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Agent connections to this process.
    pub agents_connected: usize,
}

impl HealthView {
    /// A healthy server with this store backend and connection count.
    pub fn ok(store: impl Into<String>, agents_connected: usize) -> Self {
        HealthView {
            status: "ok".to_owned(),
            store: store.into(),
            agents_connected,
        }
    }
}
