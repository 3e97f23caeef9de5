//! The server's one view of the downloads directory: the release index
//! that update offers, `GET /api/v1/downloads`, the download route and the
//! enrollment script all use.
//!
//! [`rmm_core::channel::scan_dir`] decides which files are builds; this
//! catalog adds what only IO can tell: every build's bytes are hashed and
//! compared with its `.sha256` sidecar, and a build that does not match is
//! left out of the index (logged once, when its file is hashed). Hashes are
//! kept per file and recomputed only when the file's size or modification
//! time changes, so a download never re-hashes a binary. The index is
//! rebuilt when the directory's modification time changes (a new build, an
//! atomic sidecar rewrite) and at least every [`MAX_AGE`].

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rmm_core::channel::{Release, ReleaseIndex};
use sha2::{Digest, Sha256};

use super::ServiceError;

/// The longest an index is used without a rescan.
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// What a build file looked like when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

#[derive(Debug, Clone)]
struct Hashed {
    stamp: Stamp,
    sha256: String,
}

#[derive(Debug)]
struct Cached {
    built: Instant,
    dir_modified: Option<SystemTime>,
    index: Arc<ReleaseIndex>,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    hashes: HashMap<String, Hashed>,
    rejected: BTreeSet<String>,
}

/// A build ready to be served: its release and the open file.
#[derive(Debug)]
pub struct OpenBuild {
    /// The release (digest from the verified sidecar).
    pub release: Release,
    /// The file, opened after its stamp was checked.
    pub file: std::fs::File,
    /// Its length in bytes.
    pub len: u64,
}

/// The verified release catalog of one downloads directory.
#[derive(Debug)]
pub struct ReleaseCatalog {
    dir: Option<PathBuf>,
    state: Mutex<State>,
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl ReleaseCatalog {
    /// A catalog of `dir` (none: always empty).
    pub fn new(dir: Option<PathBuf>) -> ReleaseCatalog {
        ReleaseCatalog {
            dir,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current verified index (empty without a directory or when it
    /// cannot be read; the reason is logged).
    pub async fn index(self: &Arc<Self>) -> Arc<ReleaseIndex> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.index_blocking(false))
            .await
            .unwrap_or_default()
    }

    /// Opens the build `file_name` for a download ([`Self::open_blocking`]
    /// off the async workers); an unknown or unverified name is
    /// [`ServiceError::NotFound`].
    pub async fn open(self: &Arc<Self>, file_name: String) -> Result<OpenBuild, ServiceError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.open_blocking(&file_name))
            .await
            .map_err(ServiceError::internal)?
            .ok_or_else(|| ServiceError::not_found("no such build"))
    }

    /// [`ReleaseCatalog::index`] for blocking contexts.
    pub fn index_blocking(&self, force: bool) -> Arc<ReleaseIndex> {
        let Some(dir) = &self.dir else {
            return Arc::default();
        };
        let dir_modified = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
        {
            let st = self.lock();
            if let Some(c) = &st.cached
                && !force
                && c.built.elapsed() < MAX_AGE
                && c.dir_modified == dir_modified
                && dir_modified.is_some()
            {
                return c.index.clone();
            }
        }
        let report = match rmm_core::channel::scan_dir(dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot scan the downloads directory");
                return Arc::default();
            }
        };
        let old = std::mem::take(&mut self.lock().hashes);
        let mut hashes = HashMap::new();
        let mut index = ReleaseIndex::new();
        for release in report.index.releases() {
            let name = release.file_name().to_owned();
            let path = dir.join(&name);
            let stamp = match std::fs::metadata(&path) {
                Ok(m) => Stamp::of(&m),
                Err(e) => {
                    tracing::warn!(build = %name, error = %e, "cannot stat a build; left out");
                    continue;
                }
            };
            let hashed = match old.get(&name) {
                Some(h) if h.stamp == stamp => h.clone(),
                _ => match hash_file(&path) {
                    Ok(sha256) => {
                        if sha256 != release.sha256().to_string() {
                            tracing::warn!(
                                build = %name,
                                actual = %sha256,
                                sidecar = %release.sha256(),
                                "build does not match its .sha256 sidecar; it is not offered or served"
                            );
                        }
                        Hashed { stamp, sha256 }
                    }
                    Err(e) => {
                        tracing::warn!(build = %name, error = %e, "cannot read a build; left out");
                        continue;
                    }
                },
            };
            let matches = hashed.sha256 == release.sha256().to_string();
            hashes.insert(name, hashed);
            if matches {
                index.insert(release.clone());
            }
        }
        let rejected: BTreeSet<String> = report.rejected.iter().map(|r| r.to_string()).collect();
        let index = Arc::new(index);
        let mut st = self.lock();
        for r in rejected.difference(&st.rejected) {
            tracing::info!(entry = %r, "downloads directory entry not offered");
        }
        st.rejected = rejected;
        st.hashes = hashes;
        st.cached = Some(Cached {
            built: Instant::now(),
            dir_modified,
            index: index.clone(),
        });
        index
    }

    /// Opens a build for serving: only a name in the verified index, and
    /// only while the file is the one that was verified (a file changed
    /// since is re-verified once; a mismatch is `None`).
    pub fn open_blocking(&self, file_name: &str) -> Option<OpenBuild> {
        let dir = self.dir.as_ref()?;
        if file_name.contains(['/', '\\']) || file_name.starts_with('.') {
            return None;
        }
        for force in [false, true] {
            // Only a file that exists may cost a rescan (an unknown name
            // is a cheap 404).
            if force && !dir.join(file_name).is_file() {
                return None;
            }
            let index = self.index_blocking(force);
            let Some(release) = index.get(file_name).cloned() else {
                continue;
            };
            let Ok(file) = std::fs::File::open(dir.join(file_name)) else {
                continue;
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            let verified = self
                .lock()
                .hashes
                .get(file_name)
                .is_some_and(|h| h.stamp == Stamp::of(&meta));
            if verified {
                return Some(OpenBuild {
                    release,
                    len: meta.len(),
                    file,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &Path, version: &str, body: &[u8], sidecar: Option<&str>) -> String {
        let name = format!("rmm-agent-linux-x86_64-{version}");
        std::fs::write(dir.join(&name), body).unwrap();
        let digest = sidecar.map_or_else(|| hex::encode(Sha256::digest(body)), str::to_owned);
        std::fs::write(dir.join(format!("{name}.sha256")), digest).unwrap();
        name
    }

    #[test]
    fn builds_that_do_not_match_their_sidecar_are_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let good = build(tmp.path(), "1.0.0", b"good", None);
        let bad = build(tmp.path(), "1.1.0", b"tampered", Some(&"ab".repeat(32)));
        let cat = ReleaseCatalog::new(Some(tmp.path().to_owned()));
        let index = cat.index_blocking(false);
        let names: Vec<&str> = index.releases().map(Release::file_name).collect();
        assert_eq!(names, [good.as_str()]);
        assert!(cat.open_blocking(&bad).is_none());
        let open = cat.open_blocking(&good).unwrap();
        assert_eq!(open.len, 4);
    }

    #[test]
    fn a_build_changed_after_verification_is_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let name = build(tmp.path(), "1.0.0", b"good", None);
        let cat = ReleaseCatalog::new(Some(tmp.path().to_owned()));
        assert!(cat.open_blocking(&name).is_some());
        // replaced in place with other bytes of another length
        std::fs::write(tmp.path().join(&name), b"evil bytes").unwrap();
        assert!(cat.open_blocking(&name).is_none());
        assert!(cat.index_blocking(true).is_empty());
        // fixed: served again
        std::fs::write(tmp.path().join(&name), b"good").unwrap();
        assert!(cat.open_blocking(&name).is_some());
    }

    #[test]
    fn no_directory_is_an_empty_catalog() {
        let cat = ReleaseCatalog::new(None);
        assert!(cat.index_blocking(false).is_empty());
        assert!(cat.open_blocking("rmm-agent-linux-x86_64-1.0.0").is_none());
    }
}
