//! The in-memory release index and the update decision (pure, no IO).

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};

use super::name::{Arch, Artifact, EntryName, NameError, Os, SidecarKind};
use super::sidecar::{Channel, Sha256Digest, SidecarError};

/// A build that may be offered to agents: a parsed name, its channel and
/// its sha256 digest.
///
/// Only complete builds become releases: a build without a valid `.sha256`
/// sidecar is never offered, because an agent must verify the digest before
/// it replaces itself. The file name is always the canonical name of
/// (os, arch, version) — deserialisation checks it — so it is safe to join
/// to the downloads directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ReleaseWire", into = "ReleaseWire")]
pub struct Release {
    file_name: String,
    artifact: Artifact,
    channel: Channel,
    sha256: Sha256Digest,
}

impl Release {
    /// A release of `artifact` on `channel` with digest `sha256`.
    pub fn new(artifact: Artifact, channel: Channel, sha256: Sha256Digest) -> Release {
        Release {
            file_name: artifact.file_name(),
            artifact,
            channel,
            sha256,
        }
    }

    /// File name of the build in the downloads directory.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Operating system of the build.
    pub fn os(&self) -> Os {
        self.artifact.os
    }

    /// Architecture of the build.
    pub fn arch(&self) -> &Arch {
        &self.artifact.arch
    }

    /// Version of the build.
    pub fn version(&self) -> &Version {
        &self.artifact.version
    }

    /// Channel the build is tagged with (stable when it has no sidecar).
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Digest from the build's `.sha256` sidecar.
    pub fn sha256(&self) -> &Sha256Digest {
        &self.sha256
    }

    /// The parsed name of the build.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }
}

/// Serde shape of [`Release`]: flat, with the version as text.
#[derive(Serialize, Deserialize)]
struct ReleaseWire {
    file_name: String,
    os: Os,
    arch: Arch,
    version: String,
    channel: Channel,
    sha256: Sha256Digest,
}

impl From<Release> for ReleaseWire {
    fn from(release: Release) -> ReleaseWire {
        ReleaseWire {
            version: release.artifact.version.to_string(),
            file_name: release.file_name,
            os: release.artifact.os,
            arch: release.artifact.arch,
            channel: release.channel,
            sha256: release.sha256,
        }
    }
}

impl TryFrom<ReleaseWire> for Release {
    type Error = NameError;

    fn try_from(wire: ReleaseWire) -> Result<Release, NameError> {
        let artifact = Artifact::parse(&wire.file_name)?;
        if artifact.os != wire.os
            || artifact.arch != wire.arch
            || artifact.version.to_string() != wire.version
        {
            return Err(NameError::Inconsistent {
                file_name: wire.file_name,
            });
        }
        Ok(Release::new(artifact, wire.channel, wire.sha256))
    }
}

/// What an agent asks: "which build should I run?".
///
/// ```
/// use rmm_core::channel::{Arch, Channel, Os, UpdateQuery};
/// let query = UpdateQuery::new(Os::Linux, Arch::new("x86_64")?, Channel::Stable)
///     .current(rmm_core::channel::Version::new(0, 6, 9));
/// assert!(!query.allow_downgrade);
/// # Ok::<(), rmm_core::channel::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateQuery {
    /// The agent's operating system.
    pub os: Os,
    /// The agent's architecture.
    pub arch: Arch,
    /// The channel the agent follows.
    pub channel: Channel,
    /// The version the agent runs, if any (none: a fresh install).
    pub current: Option<Version>,
    /// Offer the channel's newest build even when it is older than
    /// `current` (e.g. an agent moved from beta back to stable). Off by
    /// default; the same version is never offered either way.
    pub allow_downgrade: bool,
}

impl UpdateQuery {
    /// A query for a fresh install (no current version), downgrades off.
    pub fn new(os: Os, arch: Arch, channel: Channel) -> UpdateQuery {
        UpdateQuery {
            os,
            arch,
            channel,
            current: None,
            allow_downgrade: false,
        }
    }

    /// Sets the version the agent runs now.
    pub fn current(mut self, version: Version) -> UpdateQuery {
        self.current = Some(version);
        self
    }

    /// Allows (or forbids) offering an older build than the current one.
    pub fn allow_downgrade(mut self, allow: bool) -> UpdateQuery {
        self.allow_downgrade = allow;
        self
    }
}

/// All offerable builds, grouped by (os, arch), newest first.
///
/// Versions are ordered as semantic versions (`0.6.10 > 0.6.9`,
/// `0.7.0-beta.1 < 0.7.0`). At most one release per (os, arch, version):
/// the canonical naming makes that the file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseIndex {
    targets: BTreeMap<Os, BTreeMap<Arch, Vec<Release>>>,
    len: usize,
}

/// Newest first.
fn newest_first(a: &Release, b: &Release) -> Ordering {
    b.artifact.version.cmp_precedence(&a.artifact.version)
}

impl ReleaseIndex {
    /// An empty index.
    pub fn new() -> ReleaseIndex {
        ReleaseIndex::default()
    }

    /// Adds a release, returning the one it replaces (same os, arch and
    /// version). O(n) in the releases of that target; to build a large
    /// index at once use [`FromIterator`], which sorts once.
    pub fn insert(&mut self, release: Release) -> Option<Release> {
        let list = self
            .targets
            .entry(release.os())
            .or_default()
            .entry(release.arch().clone())
            .or_default();
        match list.binary_search_by(|probe| newest_first(probe, &release)) {
            Ok(at) => Some(std::mem::replace(&mut list[at], release)),
            Err(at) => {
                list.insert(at, release);
                self.len += 1;
                None
            }
        }
    }

    /// Number of releases.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no release at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every release: by os, then arch, then newest first.
    pub fn releases(&self) -> impl Iterator<Item = &Release> + '_ {
        self.targets
            .values()
            .flat_map(|arches| arches.values())
            .flatten()
    }

    /// The releases of one (os, arch), newest first.
    pub fn releases_for(&self, os: Os, arch: &Arch) -> &[Release] {
        self.targets
            .get(&os)
            .and_then(|arches| arches.get(arch.as_str()))
            .map_or(&[], Vec::as_slice)
    }

    /// The release with this file name, if the index holds it.
    pub fn get(&self, file_name: &str) -> Option<&Release> {
        let artifact = Artifact::parse(file_name).ok()?;
        let list = self.releases_for(artifact.os, &artifact.arch);
        list.binary_search_by(|probe| artifact.version.cmp_precedence(&probe.artifact.version))
            .ok()
            .map(|at| &list[at])
    }

    /// The newest build an agent on `channel` may run, regardless of what it
    /// runs now: the absolute newest for beta, the newest stable-tagged one
    /// for stable.
    pub fn newest(&self, os: Os, arch: &Arch, channel: Channel) -> Option<&Release> {
        self.releases_for(os, arch)
            .iter()
            .find(|release| channel.accepts(release.channel))
    }

    /// The build to offer an agent running `current` (none: a fresh
    /// install), or `None` when it should stay where it is. Never a
    /// downgrade nor the same version; see [`ReleaseIndex::decide`] to
    /// allow downgrades.
    pub fn latest_for(
        &self,
        os: Os,
        arch: &Arch,
        channel: Channel,
        current: Option<&Version>,
    ) -> Option<&Release> {
        self.offer(os, arch, channel, current, false)
    }

    /// The build to offer for `query`, or `None` when the agent should stay
    /// where it is.
    ///
    /// The newest eligible build ([`ReleaseIndex::newest`]) is offered when
    /// it is newer than `query.current` (or there is no current version);
    /// when it is older only if `query.allow_downgrade`; never when it is
    /// the same version (compared by semver precedence, build metadata
    /// ignored).
    pub fn decide(&self, query: &UpdateQuery) -> Option<&Release> {
        self.offer(
            query.os,
            &query.arch,
            query.channel,
            query.current.as_ref(),
            query.allow_downgrade,
        )
    }

    fn offer(
        &self,
        os: Os,
        arch: &Arch,
        channel: Channel,
        current: Option<&Version>,
        allow_downgrade: bool,
    ) -> Option<&Release> {
        let newest = self.newest(os, arch, channel)?;
        let Some(current) = current else {
            return Some(newest);
        };
        match newest.version().cmp_precedence(current) {
            Ordering::Greater => Some(newest),
            Ordering::Less if allow_downgrade => Some(newest),
            Ordering::Less | Ordering::Equal => None,
        }
    }
}

impl FromIterator<Release> for ReleaseIndex {
    /// Builds an index at once; of releases with the same os, arch and
    /// version the last one wins.
    fn from_iter<I: IntoIterator<Item = Release>>(releases: I) -> ReleaseIndex {
        let mut index = ReleaseIndex::new();
        index.extend(releases);
        index
    }
}

impl Extend<Release> for ReleaseIndex {
    fn extend<I: IntoIterator<Item = Release>>(&mut self, releases: I) {
        for release in releases {
            let arches = self.targets.entry(release.os()).or_default();
            match arches.get_mut(release.arch().as_str()) {
                Some(list) => list.push(release),
                None => {
                    arches.insert(release.arch().clone(), vec![release]);
                }
            }
        }
        let mut len = 0;
        for list in self
            .targets
            .values_mut()
            .flat_map(|arches| arches.values_mut())
        {
            // Stable: equal versions stay in insertion order.
            list.sort_by(newest_first);
            dedup_keep_last(list);
            len += list.len();
        }
        self.len = len;
    }
}

/// Removes equal versions from a list sorted newest first (stably, so equal
/// versions are in insertion order), keeping the last inserted of each.
fn dedup_keep_last(list: &mut Vec<Release>) {
    let mut kept: Vec<Release> = Vec::with_capacity(list.len());
    for release in list.drain(..) {
        match kept.last_mut() {
            Some(last) if last.version().cmp_precedence(release.version()) == Ordering::Equal => {
                *last = release
            }
            _ => kept.push(release),
        }
    }
    *list = kept;
}

/// A `latest` link found while scanning; recognised and ignored for
/// decisions (the index alone decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatestLink {
    /// The entry's name (the link itself or one of its sidecars).
    pub name: String,
    /// Operating system in the name.
    pub os: Os,
    /// Architecture in the name.
    pub arch: Arch,
}

/// A directory entry left out of the index, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The entry's name (lossily converted if it was not UTF-8).
    pub name: String,
    /// Why it was left out.
    pub reason: RejectReason,
}

impl Rejection {
    /// A rejection of `name` for `reason`.
    pub fn new(name: impl Into<String>, reason: RejectReason) -> Rejection {
        Rejection {
            name: name.into(),
            reason,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.name, self.reason)
    }
}

/// Why a directory entry was left out of the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The name is not an acceptable artifact name (not ours, traversal, ...).
    #[error(transparent)]
    Name(#[from] NameError),
    /// The name is not valid UTF-8.
    #[error("name is not utf-8")]
    NotUtf8Name,
    /// A symbolic link resolving to something that is not a file directly
    /// in the downloads directory. Never followed.
    #[error(
        "symbolic link points outside the downloads directory (to {target}); copy the file in instead"
    )]
    SymlinkOutside {
        /// Where the link resolves to.
        target: String,
    },
    /// A symbolic link whose target does not exist (or cannot be resolved).
    #[error("symbolic link target {target} does not exist")]
    DanglingSymlink {
        /// The link's target as written.
        target: String,
    },
    /// A directory, socket, device or other non-regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The entry could not be inspected or read.
    #[error("cannot read: {kind}")]
    Unreadable {
        /// What the operating system said.
        kind: std::io::ErrorKind,
    },
    /// The file was replaced while it was being read (e.g. by a symlink).
    #[error("file was replaced while being read; scan again")]
    Changed,
    /// The content of a sidecar is refused.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// A build without a `.sha256` sidecar: agents could not verify it.
    #[error("build has no .sha256 sidecar; agents cannot verify it, add one")]
    MissingSha256,
    /// A build whose sidecar was rejected (see that sidecar's own rejection).
    #[error("build's {kind} sidecar was rejected")]
    BadSidecar {
        /// Which sidecar.
        kind: SidecarKind,
    },
    /// A sidecar whose build is missing or was rejected.
    #[error("sidecar without its build")]
    OrphanSidecar,
    /// The same entry was given twice.
    #[error("duplicate entry")]
    Duplicate,
}

/// The result of scanning a downloads directory (or of feeding an
/// [`IndexBuilder`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanReport {
    /// The offerable releases.
    pub index: ReleaseIndex,
    /// `latest` links seen, sorted by name; not used for decisions.
    pub latest_links: Vec<LatestLink>,
    /// Entries left out, with the reason, sorted by name.
    pub rejected: Vec<Rejection>,
}

/// Builds a [`ScanReport`] from directory entries: names plus the content
/// of sidecars. Pure; [`scan_dir`](super::scan_dir) feeds it from a
/// directory, tests and benches feed it directly.
///
/// ```
/// use rmm_core::channel::IndexBuilder;
/// let mut builder = IndexBuilder::new();
/// builder.add("rmm-agent-linux-x86_64-0.7.0", b"");
/// builder.add("rmm-agent-linux-x86_64-0.7.0.sha256", "ab".repeat(32).as_bytes());
/// builder.add("rmm-agent-linux-x86_64-0.7.0.channel", b"beta\n");
/// builder.add("README.md", b"");
/// let report = builder.finish();
/// assert_eq!(report.index.len(), 1);
/// assert_eq!(report.rejected.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct IndexBuilder {
    /// Builds by file name. Names are canonical, so the file name is the
    /// identity of (os, arch, version) and a sidecar's name is its build's
    /// name plus a suffix.
    builds: HashMap<String, Artifact>,
    /// `.sha256` sidecars by build file name; `None` when rejected (the
    /// build is then left out too).
    sha256: HashMap<String, Option<Sha256Digest>>,
    /// `.channel` sidecars by build file name, likewise.
    channels: HashMap<String, Option<Channel>>,
    latest_links: Vec<LatestLink>,
    rejected: Vec<Rejection>,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Adds one directory entry. `content` is the content of a sidecar and
    /// is ignored for builds and `latest` links.
    pub fn add(&mut self, name: &str, content: &[u8]) {
        match EntryName::parse(name) {
            Ok(entry) => self.add_entry(name, entry, content),
            Err(error) => self.reject(name, error.into()),
        }
    }

    /// Adds an entry whose name was already parsed into `entry` (by
    /// [`EntryName::parse`] of that same `name`); `content` as for
    /// [`IndexBuilder::add`].
    pub fn add_entry(&mut self, name: &str, entry: EntryName, content: &[u8]) {
        match entry {
            EntryName::Build(artifact) => match self.builds.entry(name.to_owned()) {
                Entry::Occupied(_) => self.reject(name, RejectReason::Duplicate),
                Entry::Vacant(slot) => {
                    slot.insert(artifact);
                }
            },
            EntryName::Sidecar { kind, .. } => {
                let build = build_name(name, kind);
                let (fresh, error) = match kind {
                    SidecarKind::Sha256 => match Sha256Digest::parse_sidecar(content, build) {
                        Ok(digest) => (put(&mut self.sha256, build, Some(digest)), None),
                        Err(error) => (put(&mut self.sha256, build, None), Some(error)),
                    },
                    SidecarKind::Channel => match Channel::parse_sidecar(content) {
                        Ok(channel) => (put(&mut self.channels, build, Some(channel)), None),
                        Err(error) => (put(&mut self.channels, build, None), Some(error)),
                    },
                };
                match (fresh, error) {
                    (false, _) => self.reject(name, RejectReason::Duplicate),
                    (true, Some(error)) => self.reject(name, error.into()),
                    (true, None) => {}
                }
            }
            EntryName::Latest { os, arch } => self.latest_links.push(LatestLink {
                name: name.to_owned(),
                os,
                arch,
            }),
        }
    }

    /// Leaves a parsed entry out for `reason`. If it is a sidecar its build
    /// is left out too (fail closed: an unreadable `.channel` might say
    /// beta, a build without a readable digest cannot be verified).
    pub fn reject_entry(&mut self, name: &str, entry: &EntryName, reason: RejectReason) {
        if let EntryName::Sidecar { kind, .. } = entry {
            let build = build_name(name, *kind);
            let fresh = match kind {
                SidecarKind::Sha256 => put(&mut self.sha256, build, None),
                SidecarKind::Channel => put(&mut self.channels, build, None),
            };
            if !fresh {
                self.reject(name, RejectReason::Duplicate);
                return;
            }
        }
        self.reject(name, reason);
    }

    /// Leaves an entry out for `reason` (e.g. a name that did not parse).
    pub fn reject(&mut self, name: impl Into<String>, reason: RejectReason) {
        self.rejected.push(Rejection::new(name, reason));
    }

    /// Joins builds with their sidecars and produces the report.
    pub fn finish(mut self) -> ScanReport {
        let mut releases = Vec::with_capacity(self.builds.len());
        for (name, artifact) in std::mem::take(&mut self.builds) {
            let channel = match self.channels.remove(&name) {
                None => Ok(Channel::Stable),
                Some(Some(channel)) => Ok(channel),
                Some(None) => Err(RejectReason::BadSidecar {
                    kind: SidecarKind::Channel,
                }),
            };
            let sha256 = match self.sha256.remove(&name) {
                None => Err(RejectReason::MissingSha256),
                Some(Some(digest)) => Ok(digest),
                Some(None) => Err(RejectReason::BadSidecar {
                    kind: SidecarKind::Sha256,
                }),
            };
            match (sha256, channel) {
                (Ok(sha256), Ok(channel)) => releases.push(Release {
                    file_name: name,
                    artifact,
                    channel,
                    sha256,
                }),
                (Err(reason), _) | (_, Err(reason)) => {
                    self.rejected.push(Rejection::new(name, reason))
                }
            }
        }
        // Sidecars left over belong to no build; a rejected one was already
        // reported with its own reason.
        let orphans = (self.sha256.into_iter().filter(|(_, v)| v.is_some()))
            .map(|(build, _)| build + SidecarKind::Sha256.suffix())
            .chain(
                (self.channels.into_iter().filter(|(_, v)| v.is_some()))
                    .map(|(build, _)| build + SidecarKind::Channel.suffix()),
            );
        for name in orphans {
            self.rejected
                .push(Rejection::new(name, RejectReason::OrphanSidecar));
        }
        self.rejected.sort_by(|a, b| a.name.cmp(&b.name));
        self.latest_links.sort_by(|a, b| a.name.cmp(&b.name));
        ScanReport {
            index: releases.into_iter().collect(),
            latest_links: self.latest_links,
            rejected: self.rejected,
        }
    }
}

/// The build name of sidecar `name`: the name minus the sidecar suffix.
fn build_name(name: &str, kind: SidecarKind) -> &str {
    name.strip_suffix(kind.suffix()).unwrap_or(name)
}

/// Records a sidecar of `build`; false if one was already recorded.
fn put<T>(map: &mut HashMap<String, Option<T>>, build: &str, value: Option<T>) -> bool {
    if map.contains_key(build) {
        return false;
    }
    map.insert(build.to_owned(), value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, channel: Channel, byte: u8) -> Release {
        let artifact = Artifact::parse(&format!("rmm-agent-linux-x86_64-{version}")).unwrap();
        Release::new(artifact, channel, Sha256Digest::from_bytes([byte; 32]))
    }

    #[test]
    fn collect_sorts_and_keeps_the_last_duplicate() {
        let index: ReleaseIndex = [
            release("0.6.9", Channel::Stable, 1),
            release("0.6.10", Channel::Stable, 2),
            release("0.6.9", Channel::Beta, 3),
            release("0.7.0-rc.1", Channel::Beta, 4),
        ]
        .into_iter()
        .collect();
        let got: Vec<(String, Channel)> = index
            .releases()
            .map(|r| (r.version().to_string(), r.channel()))
            .collect();
        assert_eq!(
            got,
            [
                ("0.7.0-rc.1".to_owned(), Channel::Beta),
                ("0.6.10".to_owned(), Channel::Stable),
                ("0.6.9".to_owned(), Channel::Beta),
            ]
        );
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn builder_reports_a_duplicate_bad_sidecar_once() {
        let mut builder = IndexBuilder::new();
        let name = "rmm-agent-linux-x86_64-0.7.0.channel";
        builder.add(name, b"beta");
        builder.add(name, b"gamma");
        let report = builder.finish();
        assert_eq!(
            report.rejected,
            [
                Rejection::new(name, RejectReason::Duplicate),
                Rejection::new(name, RejectReason::OrphanSidecar),
            ]
        );
    }
}
