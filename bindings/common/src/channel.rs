//! Release channels (`rmm_core::channel`): which agent build a downloads
//! directory offers, from the words the languages pass.

use std::path::Path;

use rmm_core::channel::{Arch, Channel, Os, Version};

use crate::error::ErrorInfo;

/// Defines the `Release` value type (an agent build in a downloads
/// directory) once, for this crate's plain struct and for the bindings'
/// classes: the attributes given go on the struct. With `convert`, a
/// `From<rmm_bindings_common::channel::Release>` is generated too.
#[macro_export]
macro_rules! release_value {
    ($(#[$m:meta])* Release;) => {
        /// An agent build in a downloads directory.
        $(#[$m])*
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
    };
    (convert $(#[$m:meta])* Release;) => {
        $crate::release_value! { $(#[$m])* Release; }

        impl From<$crate::channel::Release> for Release {
            fn from(r: $crate::channel::Release) -> Self {
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
    };
}

release_value! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    Release;
}

fn invalid(e: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::invalid(e.to_string())
}

/// The build an agent on `os`/`arch` following `channel` (default
/// `stable`) should get from `dir`, or `None` when nothing newer than
/// `current` (a version, `v` prefix allowed) is eligible.
pub fn latest_for(
    dir: &Path,
    os: &str,
    arch: &str,
    channel: Option<&str>,
    current: Option<&str>,
) -> Result<Option<Release>, ErrorInfo> {
    let os: Os = os.parse().map_err(invalid)?;
    let arch = Arch::new(arch).map_err(invalid)?;
    let channel: Channel = channel.unwrap_or("stable").parse().map_err(invalid)?;
    let current = current
        .map(|v| Version::parse(v.trim_start_matches('v')))
        .transpose()
        .map_err(|e| ErrorInfo::invalid(format!("invalid current version: {e}")))?;
    let release = rmm_core::channel::latest_for_dir(dir, os, &arch, channel, current.as_ref())?;
    Ok(release.map(|r| Release {
        file_name: r.file_name().to_owned(),
        os: r.os().to_string(),
        arch: r.arch().to_string(),
        version: r.version().to_string(),
        channel: r.channel().to_string(),
        sha256: r.sha256().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(version offered)` or `Err(code)`.
    fn check(
        dir: &Path,
        words: (&str, &str, Option<&str>, Option<&str>),
        expected: Result<Option<&str>, &str>,
    ) {
        let (os, arch, channel, current) = words;
        let got = latest_for(dir, os, arch, channel, current)
            .map(|r| r.map(|r| r.version))
            .map_err(|e| e.code);
        let expected = expected
            .map(|v| v.map(str::to_owned))
            .map_err(str::to_owned);
        assert_eq!(got, expected, "{words:?}");
    }

    #[test]
    fn words_are_checked_before_the_scan() {
        let empty = std::env::temp_dir().join("rmm-bindings-common-no-such-dir");
        let bad = Err("invalid_argument");
        check(&empty, ("plan9", "x86_64", None, None), bad);
        check(&empty, ("linux", "x86 64", None, None), bad);
        check(&empty, ("linux", "x86_64", Some("nightly"), None), bad);
        check(&empty, ("linux", "x86_64", None, Some("one")), bad);
        check(
            &empty,
            ("linux", "x86_64", None, Some("v1.2.3")),
            Err("scan_failed"),
        );
    }
}
