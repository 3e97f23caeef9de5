//! The data directory holds everything the server must keep private: the
//! SQLite database (scripts, output, password hashes, the audit log), the
//! JWT key, TLS keys. It is made `0700` and every file in it `0600`
//! whatever the process umask, and an existing directory that is looser
//! is tightened at start (with a log line naming what changed).
//!
//! New files are created private by the functions here ([`write_private`],
//! [`precreate_private`]); SQLite's `-wal` and `-shm` files copy the mode of
//! their database file, so pre-creating the database `0600` covers them.

use std::io;
use std::path::{Path, PathBuf};

/// Mode of the data directory and of every directory inside it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file inside the data directory.
pub const FILE_MODE: u32 = 0o600;

/// One permission change made by [`prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

/// Creates `dir` (`0700`) if needed, then tightens it and everything in
/// it (directories `0700`, files `0600`; symlinks are left alone and not
/// followed). Returns what changed; each change is also logged.
pub fn prepare(dir: &Path) -> io::Result<Vec<Tightened>> {
    create_dir_private(dir)?;
    let mut changed = Vec::new();
    tighten_tree(dir, &mut changed)?;
    for t in &changed {
        tracing::warn!(
            path = %t.path.display(),
            was = format_args!("{:o}", t.was),
            now = format_args!("{:o}", t.now),
            "tightened permissions in the data dir (it holds secrets; other local users must not read it)"
        );
    }
    Ok(changed)
}

#[cfg(unix)]
fn create_dir_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir_private(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn tighten_tree(path: &Path, changed: &mut Vec<Tightened>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(());
    }
    let want = if ft.is_dir() { DIR_MODE } else { FILE_MODE };
    let was = meta.permissions().mode() & 0o7777;
    // Only ever remove bits: an owner-only file stays as it is.
    let now = was & want;
    if now != was {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(now))?;
        changed.push(Tightened {
            path: path.to_owned(),
            was,
            now,
        });
    }
    if ft.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten_tree(&entry?.path(), changed)?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten_tree(_path: &Path, _changed: &mut Vec<Tightened>) -> io::Result<()> {
    Ok(())
}

fn private_options() -> std::fs::OpenOptions {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    #[cfg(unix)]
    opts.mode(FILE_MODE);
    opts
}

/// Writes a new file `0600` (fails if it exists), synced to disk.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = private_options().create_new(true).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Creates an empty `0600` file at `path` unless something is there
/// already (then it is left as it is).
pub fn precreate_private(path: &Path) -> io::Result<()> {
    match private_options().create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn set(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn a_new_dir_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        assert!(prepare(&dir).unwrap().is_empty());
        assert_eq!(mode(&dir), DIR_MODE);
        write_private(&dir.join("k"), b"x").unwrap();
        assert_eq!(mode(&dir.join("k")), FILE_MODE);
        assert!(
            write_private(&dir.join("k"), b"y").is_err(),
            "never overwrites"
        );
        precreate_private(&dir.join("db")).unwrap();
        precreate_private(&dir.join("db")).unwrap();
        assert_eq!(mode(&dir.join("db")), FILE_MODE);
    }

    #[test]
    fn an_existing_loose_tree_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("rmm.db"), b"").unwrap();
        std::fs::write(dir.join("sub/cert.pem"), b"").unwrap();
        std::fs::write(dir.join("owner-only"), b"").unwrap();
        set(&dir, 0o755);
        set(&dir.join("sub"), 0o775);
        set(&dir.join("rmm.db"), 0o644);
        set(&dir.join("sub/cert.pem"), 0o666);
        set(&dir.join("owner-only"), 0o400);
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"").unwrap();
        set(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        let changed = prepare(&dir).unwrap();
        let mut got: Vec<_> = changed
            .iter()
            .map(|t| (t.path.strip_prefix(&dir).unwrap().to_owned(), t.was, t.now))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (PathBuf::from(""), 0o755, 0o700),
                (PathBuf::from("rmm.db"), 0o644, 0o600),
                (PathBuf::from("sub"), 0o775, 0o700),
                (PathBuf::from("sub/cert.pem"), 0o666, 0o600),
            ]
        );
        assert_eq!(mode(&dir.join("owner-only")), 0o400);
        assert_eq!(mode(&outside), 0o644, "symlinks are not followed");
        assert!(prepare(&dir).unwrap().is_empty(), "idempotent");
    }
}
