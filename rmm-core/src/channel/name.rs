//! Artifact names: `rmm-agent-{os}-{arch}-{version}[.exe]` and the names
//! of their sidecars and `latest` links.
//!
//! The grammar is strict so that every build has exactly one spelling:
//! parsing a build name and printing it back ([`Artifact::file_name`]) gives
//! the same string.

use std::fmt;
use std::str::FromStr;

use semver::Version;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every artifact name starts with this prefix.
pub const PREFIX: &str = "rmm-agent-";
/// Suffix of the sha256 sidecar: `<file>.sha256`.
pub const SHA256_SUFFIX: &str = ".sha256";
/// Suffix of the channel sidecar: `<file>.channel`.
pub const CHANNEL_SUFFIX: &str = ".channel";
/// Extension of Windows builds (and only of Windows builds).
pub const EXE_SUFFIX: &str = ".exe";
/// The version word of a `latest` link: `rmm-agent-{os}-{arch}-latest[.exe]`.
pub const LATEST: &str = "latest";
/// Longest accepted name, in bytes (the usual file-system limit).
pub const MAX_NAME_LEN: usize = 255;
/// Longest accepted architecture word, in bytes.
pub const MAX_ARCH_LEN: usize = 32;

/// Operating system of an agent build.
///
/// In artifact names only the canonical words `linux`, `windows` and
/// `darwin` are accepted, so a build has a single spelling. When parsing an
/// agent's self-reported os ([`FromStr`], serde) `macos` is also accepted as
/// an alias of [`Os::Darwin`], because that is what Rust's
/// `std::env::consts::OS` says on a Mac.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Os {
    /// Linux (`linux`).
    Linux,
    /// Windows (`windows`); its builds end in `.exe`.
    Windows,
    /// macOS (`darwin`; `macos` accepted as an alias outside file names).
    #[serde(alias = "macos")]
    Darwin,
}

impl Os {
    /// All operating systems, in canonical order.
    pub const ALL: [Os; 3] = [Os::Linux, Os::Windows, Os::Darwin];

    /// The canonical word used in artifact names.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::Darwin => "darwin",
        }
    }

    /// Parses the canonical word only (no `macos` alias), as used in names.
    fn from_canonical(word: &str) -> Option<Os> {
        match word {
            "linux" => Some(Os::Linux),
            "windows" => Some(Os::Windows),
            "darwin" => Some(Os::Darwin),
            _ => None,
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Os {
    type Err = NameError;

    /// Accepts `linux`, `windows`, `darwin` and the alias `macos`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "macos" => Ok(Os::Darwin),
            other => {
                Os::from_canonical(other).ok_or_else(|| NameError::UnknownOs { os: other.into() })
            }
        }
    }
}

/// CPU architecture of an agent build, e.g. `x86_64`, `aarch64`, `armv7`.
///
/// An open set (new targets need no code change) but a validated word:
/// 1 to [`MAX_ARCH_LEN`] bytes of `[a-z0-9_]`, starting with a letter. No
/// `-` (it separates the parts of a name) and no aliases: `amd64` and
/// `x86_64` are different words, use the Rust target's spelling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Arch(Box<str>);

impl Arch {
    /// Validates `word` as an architecture.
    pub fn new(word: &str) -> Result<Arch, NameError> {
        let valid = !word.is_empty()
            && word.len() <= MAX_ARCH_LEN
            && word.as_bytes()[0].is_ascii_lowercase()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Arch(word.into()))
        } else {
            Err(NameError::BadArch { arch: word.into() })
        }
    }

    /// The architecture word.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Arch {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::new(s)
    }
}

impl AsRef<str> for Arch {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Arch {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Arch::new(&word).map_err(serde::de::Error::custom)
    }
}

/// One agent build, identified by its name `rmm-agent-{os}-{arch}-{version}[.exe]`.
///
/// Naming rules (see [`Artifact::parse`]):
/// - `version` is a semantic version, pre-releases included
///   (`0.7.0-beta.1`); build metadata (`+abc`) is refused, because it does
///   not take part in ordering and `+` is mangled in URLs;
/// - Windows builds must end in `.exe` and only Windows builds may;
/// - a name ending in `.sha256` or `.channel` is always a sidecar, so a
///   pre-release ending in those words cannot be a build.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Artifact {
    /// Operating system of the build.
    pub os: Os,
    /// Architecture of the build.
    pub arch: Arch,
    /// Version of the build (no build metadata).
    pub version: Version,
}

impl Artifact {
    /// Builds an artifact from its parts, refusing a version that would not
    /// give a parseable name (build metadata, or a pre-release ending in a
    /// reserved suffix).
    pub fn new(os: Os, arch: Arch, version: Version) -> Result<Artifact, NameError> {
        if !version.build.is_empty() {
            return Err(NameError::BuildMetadata {
                version: version.to_string(),
            });
        }
        let artifact = Artifact { os, arch, version };
        match Artifact::parse(&artifact.file_name()) {
            Ok(parsed) if parsed == artifact => Ok(artifact),
            _ => Err(NameError::BadVersion {
                version: artifact.version.to_string(),
                reason: "its pre-release ends in a reserved suffix (.exe, .sha256, .channel)"
                    .into(),
            }),
        }
    }

    /// Parses a build name. Sidecar and `latest` names are refused with
    /// [`NameError::NotABuild`]; use [`EntryName::parse`] to classify any
    /// directory entry.
    pub fn parse(name: &str) -> Result<Artifact, NameError> {
        match EntryName::parse(name)? {
            EntryName::Build(artifact) => Ok(artifact),
            _ => Err(NameError::NotABuild),
        }
    }

    /// The canonical file name of this build.
    pub fn file_name(&self) -> String {
        let exe = if self.os == Os::Windows {
            EXE_SUFFIX
        } else {
            ""
        };
        format!("{PREFIX}{}-{}-{}{exe}", self.os, self.arch, self.version)
    }

    /// The file name of this build's sidecar of the given kind.
    pub fn sidecar_name(&self, kind: SidecarKind) -> String {
        let mut name = self.file_name();
        name.push_str(kind.suffix());
        name
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

impl FromStr for Artifact {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Artifact::parse(s)
    }
}

/// The two sidecar files a build may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SidecarKind {
    /// `<file>.sha256`: hex sha256 digest of the build.
    Sha256,
    /// `<file>.channel`: `stable` or `beta`.
    Channel,
}

impl SidecarKind {
    /// The file-name suffix of this sidecar, dot included.
    pub fn suffix(self) -> &'static str {
        match self {
            SidecarKind::Sha256 => SHA256_SUFFIX,
            SidecarKind::Channel => CHANNEL_SUFFIX,
        }
    }
}

impl fmt::Display for SidecarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// What a name in the downloads directory denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryName {
    /// A build: `rmm-agent-{os}-{arch}-{version}[.exe]`.
    Build(Artifact),
    /// A sidecar of a build: `<build>.sha256` or `<build>.channel`.
    Sidecar {
        /// The build the sidecar belongs to.
        artifact: Artifact,
        /// Which sidecar it is.
        kind: SidecarKind,
    },
    /// A `latest` link, `rmm-agent-{os}-{arch}-latest[.exe]` (or one of its
    /// sidecars). A convenience for humans; never used for decisions.
    Latest {
        /// Operating system in the link's name.
        os: Os,
        /// Architecture in the link's name.
        arch: Arch,
    },
}

impl EntryName {
    /// Classifies a directory entry name.
    ///
    /// Checks, in order: path traversal (`/`, `\`, NUL, `..`, or `.`), length,
    /// the `rmm-agent-` prefix, a sidecar suffix, then os, arch and version.
    pub fn parse(name: &str) -> Result<EntryName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name == "." || name.contains("..") || name.contains(['/', '\\', '\0']) {
            return Err(NameError::PathTraversal);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: name.len() });
        }
        let rest = name.strip_prefix(PREFIX).ok_or(NameError::NotOurs)?;
        let (rest, sidecar) = if let Some(rest) = rest.strip_suffix(SHA256_SUFFIX) {
            (rest, Some(SidecarKind::Sha256))
        } else if let Some(rest) = rest.strip_suffix(CHANNEL_SUFFIX) {
            (rest, Some(SidecarKind::Channel))
        } else {
            (rest, None)
        };
        let (os_word, rest) = rest.split_once('-').ok_or(NameError::MissingPart)?;
        let (arch_word, version_word) = rest.split_once('-').ok_or(NameError::MissingPart)?;
        if os_word.is_empty() || arch_word.is_empty() || version_word.is_empty() {
            return Err(NameError::MissingPart);
        }
        let os = Os::from_canonical(os_word)
            .ok_or_else(|| NameError::UnknownOs { os: os_word.into() })?;
        let arch = Arch::new(arch_word)?;
        let version_word = match (os, version_word.strip_suffix(EXE_SUFFIX)) {
            (Os::Windows, Some(v)) => v,
            (Os::Windows, None) => return Err(NameError::MissingExe),
            (_, Some(_)) => return Err(NameError::UnexpectedExe { os }),
            (_, None) => version_word,
        };
        if version_word == LATEST {
            return Ok(EntryName::Latest { os, arch });
        }
        let version = Version::parse(version_word).map_err(|e| NameError::BadVersion {
            version: version_word.into(),
            reason: e.to_string(),
        })?;
        if !version.build.is_empty() {
            return Err(NameError::BuildMetadata {
                version: version_word.into(),
            });
        }
        let artifact = Artifact { os, arch, version };
        Ok(match sidecar {
            None => EntryName::Build(artifact),
            Some(kind) => EntryName::Sidecar { artifact, kind },
        })
    }

    /// True for `.sha256` and `.channel` sidecars, whose content must be read.
    pub fn is_sidecar(&self) -> bool {
        matches!(self, EntryName::Sidecar { .. })
    }
}

/// Why a name is not an acceptable artifact name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("empty name")]
    Empty,
    /// The name contains `/`, `\`, NUL or `..`, or is `.`: never used as a path.
    #[error("name contains a path separator, NUL or `..`; only plain file names are accepted")]
    PathTraversal,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {len} bytes long, the limit is 255")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
    },
    /// The name does not start with `rmm-agent-`: not an agent build.
    #[error("not an agent build (names start with `rmm-agent-`)")]
    NotOurs,
    /// The name lacks the os, arch or version part.
    #[error("name lacks a part; expected rmm-agent-{{os}}-{{arch}}-{{version}}[.exe]")]
    MissingPart,
    /// The os word is not `linux`, `windows` or `darwin`.
    #[error("unknown os `{os}` (expected linux, windows or darwin)")]
    UnknownOs {
        /// The word found.
        os: String,
    },
    /// The arch word is not `[a-z][a-z0-9_]*` of at most 32 bytes.
    #[error("bad arch `{arch}` (expected lowercase letters, digits and `_`, like x86_64)")]
    BadArch {
        /// The word found.
        arch: String,
    },
    /// The version is not a semantic version.
    #[error(
        "bad version `{version}`: {reason} (expected a semantic version like 0.7.0 or 0.7.0-beta.1)"
    )]
    BadVersion {
        /// The version text found.
        version: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The version carries build metadata (`+...`), which is refused.
    #[error("version `{version}` has build metadata (`+...`); drop it from the file name")]
    BuildMetadata {
        /// The version text found.
        version: String,
    },
    /// A Windows build name lacks the `.exe` extension.
    #[error("windows build names must end in .exe")]
    MissingExe,
    /// A non-Windows build name ends in `.exe`.
    #[error("only windows build names may end in .exe, this one is for {os}")]
    UnexpectedExe {
        /// The os in the name.
        os: Os,
    },
    /// A serialised release whose file name does not match its os, arch and
    /// version.
    #[error("file name `{file_name}` does not match the release's os, arch and version")]
    Inconsistent {
        /// The file name found.
        file_name: String,
    },
    /// A sidecar or `latest` name was given where a build name was expected.
    #[error("name is a sidecar or latest link, not a build")]
    NotABuild,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_name_round_trips() {
        let name = "rmm-agent-windows-x86_64-0.7.0-beta.1.exe";
        let artifact = Artifact::parse(name).unwrap();
        assert_eq!(artifact.file_name(), name);
        assert_eq!(
            artifact.sidecar_name(SidecarKind::Sha256),
            format!("{name}.sha256")
        );
    }

    #[test]
    fn new_refuses_unparseable_versions() {
        let arch = Arch::new("x86_64").unwrap();
        let build = Version::parse("1.0.0+abc").unwrap();
        assert!(Artifact::new(Os::Linux, arch.clone(), build).is_err());
        let reserved = Version::parse("1.0.0-rc.sha256").unwrap();
        assert!(Artifact::new(Os::Linux, arch.clone(), reserved).is_err());
        let exe = Version::parse("1.0.0-rc.exe").unwrap();
        assert!(Artifact::new(Os::Linux, arch.clone(), exe.clone()).is_err());
        assert!(Artifact::new(Os::Windows, arch, exe).is_ok());
    }

    #[test]
    fn os_alias_only_outside_names() {
        assert_eq!("macos".parse::<Os>().unwrap(), Os::Darwin);
        assert_eq!(serde_json::from_str::<Os>("\"macos\"").unwrap(), Os::Darwin);
        assert_eq!(serde_json::to_string(&Os::Darwin).unwrap(), "\"darwin\"");
        assert_eq!(
            EntryName::parse("rmm-agent-macos-aarch64-1.0.0"),
            Err(NameError::UnknownOs { os: "macos".into() })
        );
    }

    #[test]
    fn arch_serde_validates() {
        assert_eq!(
            serde_json::to_string(&Arch::new("armv7").unwrap()).unwrap(),
            "\"armv7\""
        );
        assert!(serde_json::from_str::<Arch>("\"x86-64\"").is_err());
    }
}
