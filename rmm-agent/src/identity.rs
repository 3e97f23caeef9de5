//! The agent's persisted identity and its state directory.
//!
//! The identity (agent id, secret, server URL, optional server-certificate
//! pin) is written once by `rmm-agent enroll` into `identity.json` in the
//! state directory (dir 0700, file 0600, atomic replace) and only read by
//! `run` and `selftest`. Nothing here ever mints an identity: an agent whose
//! state directory is missing its identity, or is not writable, stops with
//! an error naming the directory and the fix, instead of enrolling itself
//! afresh on every start (which fills servers with ghost agents).
//!
//! [`check_transport`] is the one rule for plain `http://`: the enrollment
//! token and the agent secret may cross the network unencrypted only to a
//! loopback host, or when the operator said so with `--insecure-http`
//! (remembered in the identity as `insecure_http`).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fsutil;

/// The default state directory (systemd's `StateDirectory=rmm-agent`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rmm-agent";

/// The identity file's name inside the state directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// Largest identity file accepted.
const MAX_IDENTITY_BYTES: u64 = 64 * 1024;

/// Why the state directory or the identity cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The state directory cannot be created or written.
    #[error(
        "state directory {} is not writable ({source}): the agent cannot persist its identity and results, \
         so it refuses to run. Under systemd set StateDirectory=rmm-agent in the unit (or \
         ReadWritePaths={} when using another directory); otherwise make the directory writable \
         for the agent's user", .dir.display(), .dir.display()
    )]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// No identity has been stored yet.
    #[error(
        "no identity in {}: enroll this machine first with `rmm-agent enroll --server URL --token-file FILE --state-dir {}`",
        .dir.display(), .dir.display()
    )]
    NotEnrolled {
        /// The state directory.
        dir: PathBuf,
    },
    /// The identity file exists but cannot be read or parsed.
    #[error("cannot read identity {}: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The identity's content is not valid.
    #[error("invalid identity: {0}")]
    Invalid(String),
    /// Writing the identity failed.
    #[error("cannot write identity {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// A state directory that exists, is private (0700) and was proven
/// writable when opened.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state directory and proves it is
    /// writable. Fails with [`IdentityError::NotWritable`] otherwise.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, IdentityError> {
        let root = root.into();
        let not_writable = |source| IdentityError::NotWritable {
            dir: root.clone(),
            source,
        };
        fsutil::ensure_private_dir(&root).map_err(not_writable)?;
        fsutil::probe_writable(&root).map_err(not_writable)?;
        Ok(StateDir { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A sub-directory, created private (0700).
    pub fn subdir(&self, name: &str) -> Result<PathBuf, IdentityError> {
        let dir = self.root.join(name);
        fsutil::ensure_private_dir(&dir).map_err(|source| IdentityError::NotWritable {
            dir: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Path of the identity file.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    /// Loads the stored identity.
    pub fn load_identity(&self) -> Result<Identity, IdentityError> {
        Identity::load(&self.root)
    }

    /// Stores `identity` atomically (file mode 0600).
    pub fn store_identity(&self, identity: &Identity) -> Result<(), IdentityError> {
        identity.validate()?;
        let path = self.identity_path();
        let bytes = serde_json::to_vec_pretty(identity).map_err(|e| IdentityError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        fsutil::write_atomic(&path, &bytes, fsutil::FILE_MODE)
            .map_err(|source| IdentityError::Write { path, source })
    }
}

/// Who this agent is and where its server lives.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Base URL of the server (`http://` or `https://`).
    pub server_url: String,
    /// The agent's id.
    pub agent_id: Uuid,
    /// The agent's secret (URL-safe); the server keeps only its hash.
    pub agent_secret: String,
    /// SHA-256 of the server's leaf certificate (lowercase hex), when
    /// pinned at enrollment.
    #[serde(default)]
    pub server_cert_sha256: Option<String>,
    /// The name the agent was enrolled under.
    pub agent_name: String,
    /// Release channel (`stable` or `beta`).
    pub channel: String,
    /// Plain `http://` to a non-loopback `server_url` was allowed at
    /// enrollment (`--insecure-http`); see [`check_transport`]. Absent
    /// (false) in files written before it existed and whenever unneeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server_url", &self.server_url)
            .field("agent_id", &self.agent_id)
            .field("agent_secret", &"<redacted>")
            .field("server_cert_sha256", &self.server_cert_sha256)
            .field("agent_name", &self.agent_name)
            .field("channel", &self.channel)
            .field("insecure_http", &self.insecure_http)
            .finish()
    }
}

impl Identity {
    /// Reads `identity.json` from a state directory without requiring it to
    /// be writable (used by `selftest` to report both problems).
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        let bytes = match fsutil::read_bounded(&path, MAX_IDENTITY_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IdentityError::NotEnrolled {
                    dir: dir.to_owned(),
                });
            }
            Err(e) => {
                return Err(IdentityError::Unreadable {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let id: Identity =
            serde_json::from_slice(&bytes).map_err(|e| IdentityError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        id.validate()?;
        Ok(id)
    }

    /// Checks every field (URL scheme, secret alphabet, pin format, name,
    /// channel).
    pub fn validate(&self) -> Result<(), IdentityError> {
        validate_server_url(&self.server_url).map_err(IdentityError::Invalid)?;
        if self.agent_secret.is_empty()
            || self.agent_secret.len() > 512
            || !self.agent_secret.bytes().all(is_url_safe)
        {
            return Err(IdentityError::Invalid(
                "agent_secret must be 1..=512 URL-safe characters".into(),
            ));
        }
        if let Some(pin) = &self.server_cert_sha256 {
            parse_pin(pin).map_err(IdentityError::Invalid)?;
        }
        if !is_dns_label(&self.agent_name) {
            return Err(IdentityError::Invalid(format!(
                "agent_name {:?} is not a DNS label (^[a-z0-9][a-z0-9-]{{0,62}}$)",
                self.agent_name
            )));
        }
        if self.channel != "stable" && self.channel != "beta" {
            return Err(IdentityError::Invalid(format!(
                "channel {:?} is neither \"stable\" nor \"beta\"",
                self.channel
            )));
        }
        Ok(())
    }

    /// [`check_transport`] for `server_url`, plain http to a non-loopback
    /// host being allowed by the identity's `insecure_http` or by
    /// `insecure_http` here (the command's `--insecure-http`).
    pub fn transport(&self, insecure_http: bool) -> Result<Transport, String> {
        check_transport(&self.server_url, self.insecure_http || insecure_http)
    }

    /// The certificate pin as bytes, when set.
    pub fn pin(&self) -> Option<[u8; 32]> {
        self.server_cert_sha256
            .as_deref()
            .and_then(|p| parse_pin(p).ok())
    }
}

/// `[A-Za-z0-9_-]`.
pub(crate) fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `^[a-z0-9][a-z0-9-]{0,62}$`.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Parses a SHA-256 pin given as 64 hex digits, optionally `:`-separated
/// in pairs (see [`rmm_pin::Pin`]).
pub fn parse_pin(pin: &str) -> Result<[u8; 32], String> {
    pin.parse::<rmm_pin::Pin>()
        .map(<[u8; 32]>::from)
        .map_err(|e| format!("certificate pin {pin:?}: {e}"))
}

/// Accepts `http://host[:port][/base]` and `https://...`.
pub fn validate_server_url(url: &str) -> Result<(), String> {
    parse_server_url(url).map(drop)
}

fn parse_server_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("server_url {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "server_url {url:?} must start with http:// or https://"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("server_url {url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("server_url {url:?} must not have a query"));
    }
    Ok(uri)
}

/// How traffic to a server URL travels, as allowed by [`check_transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// `https://`.
    Tls,
    /// Plain `http://` to a loopback host: it never leaves the machine.
    Loopback,
    /// Plain `http://` to another host, allowed by `--insecure-http`:
    /// tokens and the agent secret cross the network unencrypted.
    InsecureHttp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tls => "https",
            Transport::Loopback => "plain http to a loopback host",
            Transport::InsecureHttp => {
                "plain http to a non-loopback host, allowed by --insecure-http: \
                 the agent secret crosses the network unencrypted"
            }
        })
    }
}

/// Logs a warning when `transport` is [`Transport::InsecureHttp`].
pub(crate) fn warn_if_insecure(transport: Transport, server_url: &str) {
    if transport == Transport::InsecureHttp {
        tracing::warn!(server = %server_url, "insecure http: {transport}");
    }
}

pub use rmm_core::transport::is_loopback_host;

/// The transport rule: `https://` always; plain `http://` only to a
/// loopback host ([`is_loopback_host`]) unless `insecure_http` says the
/// operator really means it, because the enrollment token and the agent
/// secret would cross the network unencrypted. Also validates `url` like
/// [`validate_server_url`].
pub fn check_transport(url: &str, insecure_http: bool) -> Result<Transport, String> {
    let uri = parse_server_url(url)?;
    let host = uri.host().unwrap_or_default();
    if uri.scheme_str() == Some("https") {
        Ok(Transport::Tls)
    } else if is_loopback_host(host) {
        Ok(Transport::Loopback)
    } else if insecure_http {
        Ok(Transport::InsecureHttp)
    } else {
        Err(format!(
            "refusing plain http to {host} (server_url {url:?}): the token and agent secret \
             would cross the network unencrypted; use https://, or pass --insecure-http if you \
             really mean it"
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn sample() -> Identity {
        Identity {
            server_url: "http://127.0.0.1:3001".into(),
            agent_id: Uuid::new_v4(),
            agent_secret: "s3cr3t-_AZ".into(),
            server_cert_sha256: None,
            agent_name: "web-1".into(),
            channel: "stable".into(),
            insecure_http: false,
        }
    }

    #[test]
    fn identity_roundtrip_is_private_and_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("state");
        let sd = StateDir::open(&root).unwrap();
        assert_eq!(
            std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(matches!(
            sd.load_identity(),
            Err(IdentityError::NotEnrolled { .. })
        ));
        let id = sample();
        sd.store_identity(&id).unwrap();
        let mode = std::fs::metadata(sd.identity_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(sd.load_identity().unwrap(), id);
        let mut id2 = sample();
        id2.channel = "beta".into();
        sd.store_identity(&id2).unwrap();
        assert_eq!(sd.load_identity().unwrap(), id2);
        // Only the identity file: no temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(IDENTITY_FILE)]);
    }

    #[test]
    fn debug_redacts_secret() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("s3cr3t"), "{s}");
    }

    #[test]
    fn non_writable_dir_is_a_clear_error() {
        // /proc/self/fdinfo exists and refuses new files even for root.
        let err = StateDir::open("/proc/self/fdinfo").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IdentityError::NotWritable { .. }), "{msg}");
        assert!(msg.contains("/proc/self/fdinfo"), "{msg}");
        assert!(msg.contains("StateDirectory=rmm-agent"), "{msg}");
        assert!(msg.contains("ReadWritePaths="), "{msg}");
    }

    #[test]
    fn validation_rejects_bad_fields() {
        let check = |f: &dyn Fn(&mut Identity), needle: &str| {
            let mut id = sample();
            f(&mut id);
            let err = id.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        };
        check(&|i| i.server_url = "ftp://x".into(), "http://");
        check(&|i| i.server_url = "not a url".into(), "not a URL");
        check(&|i| i.agent_secret = "a b".into(), "agent_secret");
        check(&|i| i.agent_secret = String::new(), "agent_secret");
        check(&|i| i.server_cert_sha256 = Some("abcd".into()), "32 bytes");
        check(&|i| i.server_cert_sha256 = Some("zz".repeat(32)), "not hex");
        check(&|i| i.agent_name = "Web_1".into(), "DNS label");
        check(&|i| i.agent_name = "-a".into(), "DNS label");
        check(&|i| i.channel = "nightly".into(), "channel");
        let mut ok = sample();
        ok.server_cert_sha256 = Some("ab".repeat(32));
        ok.validate().unwrap();
        assert_eq!(ok.pin(), Some([0xab; 32]));
    }

    #[test]
    fn corrupt_identity_is_reported_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::open(tmp.path()).unwrap();
        std::fs::write(sd.identity_path(), b"{not json").unwrap();
        let err = sd.load_identity().unwrap_err();
        assert!(matches!(err, IdentityError::Unreadable { .. }), "{err}");
        assert_eq!(std::fs::read(sd.identity_path()).unwrap(), b"{not json");
    }

    /// `expected` is the verdict without `--insecure-http`; `None` means
    /// refused, and then the flag allows it as [`Transport::InsecureHttp`].
    fn check(url: &str, expected: Option<Transport>) {
        let with_flag = check_transport(url, true);
        match (check_transport(url, false), expected) {
            (Ok(got), Some(want)) => {
                assert_eq!(got, want, "{url}");
                assert_eq!(with_flag, Ok(want), "{url} with the flag");
            }
            (Err(e), None) => {
                for needle in ["refusing plain http", "https://", "--insecure-http"] {
                    assert!(e.contains(needle), "{url}: {e} lacks {needle}");
                }
                assert!(!e.contains('\n'), "{url}: {e} is not one line");
                assert_eq!(
                    with_flag,
                    Ok(Transport::InsecureHttp),
                    "{url} with the flag"
                );
            }
            (got, _) => panic!("{url}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        use Transport::*;
        check("http://127.0.0.1", Some(Loopback));
        check("http://127.0.0.1:3001/base/", Some(Loopback));
        check("http://127.9.9.9:3001", Some(Loopback));
        check("http://[::1]:80", Some(Loopback));
        check("http://[::ffff:127.0.0.1]", Some(Loopback));
        check("http://localhost", Some(Loopback));
        check("http://LOCALHOST.", Some(Loopback));
        check("http://LocalHost:8080", Some(Loopback));
        check("http://10.0.0.1", None);
        check("http://192.0.2.1:3001", None);
        check("http://[2001:db8::1]", None);
        check("http://0.0.0.0", None);
        check("http://128.0.0.1", None);
        check("http://rmm.example.com", None);
        check("http://localhost.evil.com", None);
        check("http://localhost@evil.com", None);
        check("http://evil.com#@localhost", None);
        check("http://127.0.0.1.nip.io", None);
        check("https://anything", Some(Tls));
        check("https://rmm.example.com:8443/base", Some(Tls));
        check("https://127.0.0.1", Some(Tls));
    }

    #[test]
    fn transport_check_validates_the_url_even_when_allowed() {
        for (url, needle) in [
            ("ftp://localhost", "http://"),
            ("not a url", "not a URL"),
            ("http://localhost/?q=1", "query"),
        ] {
            let err = check_transport(url, true).unwrap_err();
            assert!(err.contains(needle), "{url}: {err} lacks {needle}");
        }
    }

    #[test]
    fn identity_transport_honours_its_flag_and_the_commands() {
        let mut id = sample();
        id.server_url = "http://192.0.2.1:3001".into();
        assert!(id.transport(false).is_err());
        assert_eq!(id.transport(true), Ok(Transport::InsecureHttp));
        id.insecure_http = true;
        assert_eq!(id.transport(false), Ok(Transport::InsecureHttp));
    }

    #[test]
    fn insecure_http_is_optional_in_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::open(tmp.path()).unwrap();
        // Written only when true, so files without it still load as false.
        let id = sample();
        sd.store_identity(&id).unwrap();
        let text = std::fs::read_to_string(sd.identity_path()).unwrap();
        assert!(!text.contains("insecure_http"), "{text}");
        assert!(!sd.load_identity().unwrap().insecure_http);
        let mut id = sample();
        id.insecure_http = true;
        sd.store_identity(&id).unwrap();
        let text = std::fs::read_to_string(sd.identity_path()).unwrap();
        assert!(text.contains(r#""insecure_http": true"#), "{text}");
        assert_eq!(sd.load_identity().unwrap(), id);
    }
}
