//! File operations of a tunnel's `file` channel (SPEC §2, issue "tunnels"):
//! streaming a file out with its size and mode first and its SHA-256
//! last, writing an upload beside its target and renaming it into place
//! only when every announced byte arrived and reached the disk, and
//! listing a directory. Errors are typed ([`FileError::code`]) so the
//! technician sees "not found" or "no space", not an OS string.
//!
//! Nothing here knows about frames or channels: the tunnel driver feeds
//! chunks in and reads chunks out, and credit-based flow control decides
//! when. A failed or cut upload leaves no file behind (the temporary file
//! is removed when its [`Upload`] is dropped without [`Upload::commit`]).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a file operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The path (or a directory on it) does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// The agent may not read or write it.
    #[error("{0}: permission denied")]
    PermissionDenied(String),
    /// A file was expected and the path is a directory.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A directory was expected and the path is not one.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// The file system is full.
    #[error("{0}: no space left on the device")]
    NoSpace(String),
    /// More (or fewer) bytes than announced, or over the agent's limit.
    #[error("{path}: {detail}")]
    SizeLimit {
        /// The path.
        path: String,
        /// What was wrong with the size.
        detail: String,
    },
    /// The path is not absolute.
    #[error("{0}: the path must be absolute")]
    NotAbsolute(String),
    /// Any other IO failure, described.
    #[error("{path}: {detail}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        detail: String,
    },
}

impl FileError {
    /// The machine-readable code the technician receives.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::NotFound(_) => "not_found",
            FileError::PermissionDenied(_) => "permission_denied",
            FileError::IsADirectory(_) => "is_a_directory",
            FileError::NotADirectory(_) => "not_a_directory",
            FileError::NoSpace(_) => "no_space",
            FileError::SizeLimit { .. } => "size_limit",
            FileError::NotAbsolute(_) => "invalid_path",
            FileError::Io { .. } => "io_error",
        }
    }

    fn of(path: &Path, e: &io::Error) -> FileError {
        let p = path.display().to_string();
        match e.kind() {
            io::ErrorKind::NotFound => FileError::NotFound(p),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                FileError::PermissionDenied(p)
            }
            io::ErrorKind::IsADirectory => FileError::IsADirectory(p),
            io::ErrorKind::NotADirectory => FileError::NotADirectory(p),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FileError::NoSpace(p),
            _ => FileError::Io {
                path: p,
                detail: e.to_string(),
            },
        }
    }

    fn size(path: &Path, detail: String) -> FileError {
        FileError::SizeLimit {
            path: path.display().to_string(),
            detail,
        }
    }
}

fn absolute(path: &str) -> Result<PathBuf, FileError> {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(FileError::NotAbsolute(path.to_owned()))
    }
}

/// What is sent before a download's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o644`).
    pub mode: u32,
}

/// A file being read out, hashing as it goes.
#[derive(Debug)]
pub struct Download {
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    left: u64,
}

impl Download {
    /// Opens a regular file for reading.
    pub async fn open(path: &str) -> Result<(FileMeta, Download), FileError> {
        let path = absolute(path)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| FileError::of(&path, &e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| FileError::of(&path, &e))?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.display().to_string()));
        }
        let info = FileMeta {
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
        };
        Ok((
            info,
            Download {
                path,
                file,
                hasher: Sha256::new(),
                left: info.size,
            },
        ))
    }

    /// The next chunk of at most `max` bytes; empty at the end. A file
    /// that grows while it is read is cut at the size announced first, so
    /// the size sent ahead stays true.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Vec<u8>, FileError> {
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(max);
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let n = self
                .file
                .read(&mut buf[filled..])
                .await
                .map_err(|e| FileError::of(&self.path, &e))?;
            if n == 0 {
                return Err(FileError::size(
                    &self.path,
                    "the file shrank while it was read".into(),
                ));
            }
            filled += n;
        }
        self.left -= filled as u64;
        self.hasher.update(&buf);
        Ok(buf)
    }

    /// The SHA-256 (lowercase hex) of everything read, once the end was
    /// reached.
    pub fn finish(self) -> Result<String, FileError> {
        if self.left != 0 {
            return Err(FileError::size(
                &self.path,
                format!("{} bytes were not read", self.left),
            ));
        }
        Ok(hex::encode(self.hasher.finalize()))
    }
}

/// What a finished upload reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    /// SHA-256 (lowercase hex) of the bytes written.
    pub sha256: String,
    /// Bytes written.
    pub bytes: u64,
}

/// An upload in progress: a temporary file beside the target.
#[derive(Debug)]
pub struct Upload {
    target: PathBuf,
    file: tokio::fs::File,
    temp: tempfile::TempPath,
    hasher: Sha256,
    size: u64,
    written: u64,
    mode: u32,
}

impl Upload {
    /// Starts an upload of `size` bytes to `path` (at most `limit`), to get
    /// permission bits `mode`. The target's directory must exist; the
    /// target must not be a directory.
    pub async fn begin(path: &str, size: u64, mode: u32, limit: u64) -> Result<Upload, FileError> {
        let target = absolute(path)?;
        if size > limit {
            return Err(FileError::size(
                &target,
                format!("{size} bytes is over the agent's upload limit of {limit}"),
            ));
        }
        if let Ok(meta) = tokio::fs::metadata(&target).await
            && meta.is_dir()
        {
            return Err(FileError::IsADirectory(target.display().to_string()));
        }
        let dir = target
            .parent()
            .ok_or_else(|| FileError::IsADirectory(target.display().to_string()))?
            .to_owned();
        let (std_file, temp) = tokio::task::spawn_blocking(move || {
            let named = tempfile::Builder::new()
                .prefix(".rmm-upload-")
                .tempfile_in(&dir)
                .map_err(|e| FileError::of(&dir, &e))?;
            Ok::<_, FileError>(named.into_parts())
        })
        .await
        .map_err(|e| FileError::Io {
            path: target.display().to_string(),
            detail: e.to_string(),
        })??;
        Ok(Upload {
            target,
            file: tokio::fs::File::from_std(std_file),
            temp,
            hasher: Sha256::new(),
            size,
            written: 0,
            mode: mode & 0o7777,
        })
    }

    /// Appends a chunk; more bytes than announced is an error.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        let total = self.written + chunk.len() as u64;
        if total > self.size {
            return Err(FileError::size(
                &self.target,
                format!("more than the announced {} bytes", self.size),
            ));
        }
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| FileError::of(&self.target, &e))?;
        self.hasher.update(chunk);
        self.written = total;
        Ok(())
    }

    /// Finishes: every announced byte must have arrived; the data and the
    /// mode reach the disk, then the file is renamed over the target and
    /// the directory synced.
    pub async fn commit(mut self) -> Result<Written, FileError> {
        let target = self.target.clone();
        if self.written != self.size {
            return Err(FileError::size(
                &target,
                format!(
                    "{} of the announced {} bytes arrived",
                    self.written, self.size
                ),
            ));
        }
        let err = |e: io::Error| FileError::of(&target, &e);
        self.file.flush().await.map_err(err)?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(self.mode))
            .await
            .map_err(err)?;
        self.file.sync_all().await.map_err(err)?;
        let Upload {
            temp,
            hasher,
            written,
            ..
        } = self;
        let dest = target.clone();
        tokio::task::spawn_blocking(move || {
            temp.persist(&dest).map_err(|e| e.error)?;
            crate::fsutil::sync_dir(dest.parent().unwrap_or(Path::new("/")))
        })
        .await
        .map_err(|e| FileError::Io {
            path: target.display().to_string(),
            detail: e.to_string(),
        })?
        .map_err(err)?;
        Ok(Written {
            sha256: hex::encode(hasher.finalize()),
            bytes: written,
        })
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// File name (lossy UTF-8).
    pub name: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, unix seconds.
    pub mtime: i64,
}

/// Lists a directory, sorted by name, at most `max` entries (more is a
/// [`FileError::SizeLimit`], so a caller never gets a silently cut list).
pub async fn list(path: &str, max: usize) -> Result<Vec<Entry>, FileError> {
    let dir = absolute(path)?;
    let mut rd = tokio::fs::read_dir(&dir)
        .await
        .map_err(|e| FileError::of(&dir, &e))?;
    let mut out = Vec::new();
    while let Some(e) = rd.next_entry().await.map_err(|e| FileError::of(&dir, &e))? {
        if out.len() == max {
            return Err(FileError::size(
                &dir,
                format!("more than {max} entries; list a narrower directory"),
            ));
        }
        // An entry that vanished between readdir and stat is skipped.
        let Ok(meta) = tokio::fs::symlink_metadata(e.path()).await else {
            continue;
        };
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        out.push(Entry {
            name: e.file_name().to_string_lossy().into_owned(),
            kind,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(dir: &tempfile::TempDir, name: &str) -> String {
        dir.path().join(name).display().to_string()
    }

    async fn download_all(path: &str) -> (FileMeta, Vec<u8>, String) {
        let (meta, mut d) = Download::open(path).await.unwrap();
        let mut all = Vec::new();
        loop {
            let c = d.next_chunk(7).await.unwrap();
            if c.is_empty() {
                break;
            }
            all.extend(c);
        }
        (meta, all, d.finish().unwrap())
    }

    #[tokio::test]
    async fn upload_then_download_keeps_bytes_mode_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut up = Upload::begin(&p(&dir, "f.bin"), data.len() as u64, 0o640, 1 << 20)
            .await
            .unwrap();
        for c in data.chunks(4096) {
            up.write(c).await.unwrap();
        }
        let w = up.commit().await.unwrap();
        let expected = hex::encode(Sha256::digest(&data));
        assert_eq!(
            w,
            Written {
                sha256: expected.clone(),
                bytes: data.len() as u64
            }
        );
        let (meta, got, sha) = download_all(&p(&dir, "f.bin")).await;
        assert_eq!(
            meta,
            FileMeta {
                size: data.len() as u64,
                mode: 0o640
            }
        );
        assert_eq!(got, data);
        assert_eq!(sha, expected);
        // no temporary file is left
        let names: Vec<_> = list(&dir.path().display().to_string(), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["f.bin"]);
    }

    #[tokio::test]
    async fn a_cut_or_oversized_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = p(&dir, "cut");
        // cut: fewer bytes than announced
        let mut up = Upload::begin(&target, 10, 0o600, 100).await.unwrap();
        up.write(b"12345").await.unwrap();
        assert_eq!(up.commit().await.unwrap_err().code(), "size_limit");
        // more bytes than announced
        let mut up = Upload::begin(&target, 3, 0o600, 100).await.unwrap();
        assert_eq!(up.write(b"1234").await.unwrap_err().code(), "size_limit");
        drop(up);
        // dropped mid-way (the technician went away)
        let mut up = Upload::begin(&target, 10, 0o600, 100).await.unwrap();
        up.write(b"12").await.unwrap();
        drop(up);
        // over the limit
        let e = Upload::begin(&target, 101, 0o600, 100).await.unwrap_err();
        assert_eq!(e.code(), "size_limit");
        assert!(
            list(&dir.path().display().to_string(), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn replacing_a_file_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let target = p(&dir, "cfg");
        std::fs::write(&target, b"old").unwrap();
        let mut up = Upload::begin(&target, 3, 0o644, 100).await.unwrap();
        up.write(b"ne").await.unwrap();
        // until commit, the old content stays in place
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        up.write(b"w").await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[tokio::test]
    async fn errors_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Download::open(&p(&dir, "nope")).await.unwrap_err().code(),
            "not_found"
        );
        assert_eq!(
            Download::open(&dir.path().display().to_string())
                .await
                .unwrap_err()
                .code(),
            "is_a_directory"
        );
        assert_eq!(
            Download::open("relative/path").await.unwrap_err().code(),
            "invalid_path"
        );
        assert_eq!(
            Upload::begin(&p(&dir, "missing/dir/f"), 1, 0o600, 10)
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        assert_eq!(
            Upload::begin(&dir.path().display().to_string(), 1, 0o600, 10)
                .await
                .unwrap_err()
                .code(),
            "is_a_directory"
        );
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert_eq!(
            list(&p(&dir, "file"), 10).await.unwrap_err().code(),
            "not_a_directory"
        );
        assert_eq!(
            list(&p(&dir, "none"), 10).await.unwrap_err().code(),
            "not_found"
        );
    }

    #[tokio::test]
    async fn listing_is_sorted_typed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), b"hello").unwrap();
        std::fs::create_dir(dir.path().join("a-dir")).unwrap();
        std::os::unix::fs::symlink("b.txt", dir.path().join("c-link")).unwrap();
        let root = dir.path().display().to_string();
        let got = list(&root, 10).await.unwrap();
        let summary: Vec<_> = got.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            summary,
            [
                ("a-dir", EntryKind::Dir),
                ("b.txt", EntryKind::File),
                ("c-link", EntryKind::Symlink)
            ]
        );
        assert_eq!(got[1].size, 5);
        assert_eq!(list(&root, 2).await.unwrap_err().code(), "size_limit");
    }
}
