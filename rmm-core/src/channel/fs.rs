//! The thin directory adapter: scanning a downloads directory into an
//! [`IndexBuilder`], and rewriting `.channel` sidecars atomically.
//!
//! Only `std::fs`; no IO framework. Entries are inspected with
//! `symlink_metadata` (links are never followed to read content outside the
//! directory), build files are never opened, and sidecars are read with a
//! size limit after checking that the file opened is the one inspected.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use semver::Version;

use super::index::{IndexBuilder, RejectReason, Release, ScanReport};
use super::name::{Arch, Artifact, EntryName, NameError, Os, SidecarKind};
use super::sidecar::{Channel, SIDECAR_LIMIT, SidecarError};

/// Why a downloads directory could not be scanned at all. Problems with
/// single entries are not errors: they are listed in
/// [`ScanReport::rejected`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The directory cannot be opened or listed.
    #[error("cannot read downloads directory {}; check that it exists and is readable", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// Why a build's channel could not be changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// The name given is not a build name.
    #[error("`{file_name}` is not a build name")]
    Name {
        /// The name given (at most 255 characters of it).
        file_name: String,
        /// What is wrong with it.
        #[source]
        source: NameError,
    },
    /// No such build in the directory.
    #[error("no build `{file_name}` in the downloads directory")]
    MissingBuild {
        /// The build's file name.
        file_name: String,
    },
    /// The build exists but is refused (e.g. a symlink pointing outside).
    #[error("build `{file_name}` is refused: {reason}")]
    BadBuild {
        /// The build's file name.
        file_name: String,
        /// Why it is refused.
        reason: RejectReason,
    },
    /// Writing the sidecar failed; the old sidecar (if any) is unchanged.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file being written, renamed or synced.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// Scans a downloads directory into a [`ScanReport`].
///
/// Every entry is either part of a release in the index, a recognised
/// `latest` link, or listed in `rejected` with a typed reason: names that
/// are not ours, unsafe names, non-UTF-8 names, directories and other
/// non-files, symlinks resolving outside the directory (or dangling),
/// sidecars that are too large or malformed, builds without a `.sha256`,
/// builds whose sidecar was rejected, and orphan sidecars. Symlinks
/// resolving to a file directly in the directory are accepted as aliases.
pub fn scan_dir(dir: impl AsRef<Path>) -> Result<ScanReport, ScanError> {
    let given = dir.as_ref();
    let dir_error = |source| ScanError::Dir {
        path: given.to_owned(),
        source,
    };
    let dir = fs::canonicalize(given).map_err(dir_error)?;
    let mut builder = IndexBuilder::new();
    for entry in fs::read_dir(&dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let os_name = entry.file_name();
        let Some(name) = os_name.to_str() else {
            builder.reject(os_name.to_string_lossy(), RejectReason::NotUtf8Name);
            continue;
        };
        let parsed = match EntryName::parse(name) {
            Ok(parsed) => parsed,
            Err(error) => {
                builder.reject(name, error.into());
                continue;
            }
        };
        let content = if parsed.is_sidecar() {
            read_sidecar(&dir, name)
        } else if entry.file_type().is_ok_and(|t| t.is_file()) {
            // A regular file (not a link) by the directory listing itself;
            // builds are never opened, so no further check is needed.
            Ok(Vec::new())
        } else {
            inspect(&dir, name).map(|_| Vec::new())
        };
        match content {
            Ok(content) => builder.add_entry(name, parsed, &content),
            Err(reason) => builder.reject_entry(name, &parsed, reason),
        }
    }
    Ok(builder.finish())
}

/// Scans `dir` and decides which build an agent should get: the
/// convenience the bindings expose. See [`ReleaseIndex::latest_for`](super::ReleaseIndex::latest_for).
pub fn latest_for_dir(
    dir: impl AsRef<Path>,
    os: Os,
    arch: &Arch,
    channel: Channel,
    current: Option<&Version>,
) -> Result<Option<Release>, ScanError> {
    let report = scan_dir(dir)?;
    Ok(report.index.latest_for(os, arch, channel, current).cloned())
}

/// Tags the build `file_name` in `dir` with `channel` by rewriting its
/// `.channel` sidecar atomically: the content goes to a temporary file in
/// the same directory, is fsynced, renamed over the sidecar, and the
/// directory is fsynced. Readers see the old or the new sidecar, never a
/// partial one. A symlinked sidecar is replaced, not written through.
pub fn set_channel(
    dir: impl AsRef<Path>,
    file_name: &str,
    channel: Channel,
) -> Result<(), PromoteError> {
    let artifact = Artifact::parse(file_name).map_err(|source| PromoteError::Name {
        file_name: file_name.chars().take(255).collect(),
        source,
    })?;
    let given = dir.as_ref();
    let dir = fs::canonicalize(given).map_err(|source| PromoteError::Io {
        path: given.to_owned(),
        source,
    })?;
    match inspect(&dir, file_name) {
        Ok(_) => {}
        Err(RejectReason::Unreadable {
            kind: io::ErrorKind::NotFound,
        }) => {
            return Err(PromoteError::MissingBuild {
                file_name: file_name.to_owned(),
            });
        }
        Err(reason) => {
            return Err(PromoteError::BadBuild {
                file_name: file_name.to_owned(),
                reason,
            });
        }
    }
    let sidecar = dir.join(artifact.sidecar_name(SidecarKind::Channel));
    write_atomically(&dir, &sidecar, format!("{channel}\n").as_bytes())
}

/// Tags a build `stable`: [`set_channel`] with [`Channel::Stable`].
pub fn promote(dir: impl AsRef<Path>, file_name: &str) -> Result<(), PromoteError> {
    set_channel(dir, file_name, Channel::Stable)
}

/// Tags a build `beta`: [`set_channel`] with [`Channel::Beta`].
pub fn demote(dir: impl AsRef<Path>, file_name: &str) -> Result<(), PromoteError> {
    set_channel(dir, file_name, Channel::Beta)
}

/// Checks the entry `name` of the canonical directory `dir` without reading
/// it: a regular file, or a symlink resolving to a regular file directly in
/// `dir`. Returns the path to open and the metadata expected when opening.
fn inspect(dir: &Path, name: &str) -> Result<(PathBuf, Metadata), RejectReason> {
    let path = dir.join(name);
    let meta = fs::symlink_metadata(&path).map_err(unreadable)?;
    if meta.file_type().is_symlink() {
        let resolved = match fs::canonicalize(&path) {
            Ok(resolved) => resolved,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let target = fs::read_link(&path).map_err(unreadable)?;
                return Err(RejectReason::DanglingSymlink {
                    target: target.to_string_lossy().into_owned(),
                });
            }
            Err(error) => return Err(unreadable(error)),
        };
        if resolved.parent() != Some(dir) {
            return Err(RejectReason::SymlinkOutside {
                target: resolved.to_string_lossy().into_owned(),
            });
        }
        // `resolved` is canonical: no symlink left to follow.
        let meta = fs::symlink_metadata(&resolved).map_err(unreadable)?;
        if !meta.is_file() {
            return Err(RejectReason::NotAFile);
        }
        Ok((resolved, meta))
    } else if meta.is_file() {
        Ok((path, meta))
    } else {
        Err(RejectReason::NotAFile)
    }
}

/// Inspects and reads the sidecar `name`. A sidecar replaced between
/// inspection and reading (e.g. by a concurrent [`set_channel`]) is
/// inspected again, a few times.
fn read_sidecar(dir: &Path, name: &str) -> Result<Vec<u8>, RejectReason> {
    for _ in 0..3 {
        let (path, meta) = inspect(dir, name)?;
        match read_limited(&path, &meta) {
            Err(RejectReason::Changed) => continue,
            read => return read,
        }
    }
    Err(RejectReason::Changed)
}

/// Reads at most [`SIDECAR_LIMIT`] bytes of the file `expected` describes,
/// refusing it if what `path` opens is another file by now.
fn read_limited(path: &Path, expected: &Metadata) -> Result<Vec<u8>, RejectReason> {
    let too_large = RejectReason::Sidecar(SidecarError::TooLarge {
        limit: SIDECAR_LIMIT,
    });
    if expected.len() > SIDECAR_LIMIT {
        return Err(too_large);
    }
    let file = File::open(path).map_err(unreadable)?;
    let opened = file.metadata().map_err(unreadable)?;
    if !opened.is_file() || !same_file(&opened, expected) {
        return Err(RejectReason::Changed);
    }
    let mut content = Vec::new();
    file.take(SIDECAR_LIMIT + 1)
        .read_to_end(&mut content)
        .map_err(unreadable)?;
    if content.len() as u64 > SIDECAR_LIMIT {
        return Err(too_large);
    }
    Ok(content)
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    // No stable file identity in std here; the size limit still holds.
    true
}

fn unreadable(error: io::Error) -> RejectReason {
    RejectReason::Unreadable { kind: error.kind() }
}

/// Writes `content` to `target` (in `dir`) via a temporary file and rename.
fn write_atomically(dir: &Path, target: &Path, content: &[u8]) -> Result<(), PromoteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| PromoteError::Io { path, source }
    };
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Starts with a dot: a concurrent scan rejects it as not ours.
        let tmp = dir.join(format!(".rmm-channel-tmp-{}-{n}", std::process::id()));
        // `create_new` never opens an existing file or follows a symlink.
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => break (tmp, file),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io_error(&tmp)(error)),
        }
    };
    let written = file
        .write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, target).map_err(io_error(target))
        });
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir(dir).map_err(io_error(dir))
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; the rename is durable
    // once the file system flushes its metadata.
    Ok(())
}
