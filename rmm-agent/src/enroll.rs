//! Redeeming the one-shot enrollment payload (PROTOCOL.md §6).
//!
//! `GET <server>/api/v1/enroll-bundle/<token>.tgz` returns, exactly once, a
//! gzip'd tar holding `config.json` (the identity) and `rmm-agent.service`
//! (the systemd unit). The state directory is proven writable **before**
//! the payload is fetched, because the server deletes it once served: an
//! agent that fetched and could not persist would burn the token.
//!
//! Everything read is bounded: the download (1 MiB), the decompressed
//! archive (1 MiB), each entry (256 KiB) and the number of entries (16).
//! Only regular files named `config.json` and `rmm-agent.service` are
//! used; links, devices and other names are refused or ignored.
//!
//! Plain `http://` to a non-loopback host is refused before anything is
//! sent unless `insecure_http` allows it ([`check_transport`]); the URL the
//! payload names is held to the same rule before the identity is stored,
//! and `insecure_http` is recorded in the identity only when that URL
//! needed it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::identity::{
    Identity, IdentityError, StateDir, Transport, check_transport, is_url_safe, warn_if_insecure,
};

/// Largest payload download.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
const MAX_UNPACKED_BYTES: u64 = 1024 * 1024;
const MAX_ENTRY_BYTES: u64 = 256 * 1024;
const MAX_ENTRIES: usize = 16;

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// The token is malformed.
    #[error("invalid enrollment token: {0}")]
    BadToken(String),
    /// The state directory or identity cannot be written.
    #[error(transparent)]
    State(#[from] IdentityError),
    /// Plain http to a non-loopback host without `--insecure-http`, in
    /// `--server` or in the URL the payload names.
    #[error("{0}")]
    InsecureHttp(String),
    /// The server could not be reached.
    #[error("cannot fetch the enrollment payload: {0}")]
    Fetch(#[from] crate::http::HttpError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsConfigError),
    /// The server answered 404.
    #[error(
        "the enrollment token is unknown, expired or already used (HTTP 404); ask for a new enrollment command"
    )]
    TokenRejected,
    /// The server answered another non-success status.
    #[error("the server answered HTTP {status} for the enrollment payload: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The payload is not a valid bundle.
    #[error("invalid enrollment payload: {0}")]
    BadPayload(String),
    /// The systemd unit could not be written.
    #[error("cannot write the systemd unit {}: {source}", .path.display())]
    Unit {
        /// Destination.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The `config.json` of the payload.
#[derive(Debug, Deserialize)]
struct PayloadConfig {
    server_url: String,
    agent_id: Uuid,
    agent_secret: String,
    #[serde(default)]
    server_cert_sha256: Option<String>,
    agent_name: String,
    #[serde(default = "stable")]
    channel: String,
}

fn stable() -> String {
    "stable".into()
}

/// The unpacked, validated payload.
#[derive(Debug)]
pub struct Bundle {
    /// The identity to persist.
    pub identity: Identity,
    /// The systemd unit text, when the payload had one.
    pub unit: Option<String>,
}

/// What to enroll with.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The server's base URL (as given to `--server`).
    pub server: String,
    /// The one-time token.
    pub token: String,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Pin for the download when the server uses a self-signed certificate.
    pub server_cert_sha256: Option<[u8; 32]>,
    /// Where to write the systemd unit from the payload, if anywhere.
    pub install_unit: Option<PathBuf>,
    /// Download timeout.
    pub timeout: Duration,
    /// Allows plain `http://` to a non-loopback server (`--insecure-http`).
    pub insecure_http: bool,
}

/// Checks a token: 16..=256 URL-safe characters.
pub fn validate_token(token: &str) -> Result<(), EnrollError> {
    if token.len() < 16 || token.len() > 256 {
        return Err(EnrollError::BadToken(format!(
            "expected 16 to 256 characters, got {}",
            token.len()
        )));
    }
    if !token.bytes().all(is_url_safe) {
        return Err(EnrollError::BadToken(
            "only A-Z, a-z, 0-9, '-' and '_' are allowed".into(),
        ));
    }
    Ok(())
}

/// The payload URL for `server` and `token`.
pub fn payload_url(server: &str, token: &str) -> String {
    format!(
        "{}/api/v1/enroll-bundle/{token}.tgz",
        server.trim_end_matches('/')
    )
}

/// Unpacks and validates a payload (gzip'd tar).
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, EnrollError> {
    let bad = |m: String| EnrollError::BadPayload(m);
    let gz = flate2::read::GzDecoder::new(bytes).take(MAX_UNPACKED_BYTES + 1);
    let mut archive = tar::Archive::new(gz);
    let mut config: Option<Vec<u8>> = None;
    let mut unit: Option<String> = None;
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    for (i, entry) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let entry = entry.map_err(|e| bad(format!("corrupt archive: {e}")))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let name = path.to_string_lossy().trim_start_matches("./").to_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if name != "config.json" && name != "rmm-agent.service" {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("{name} is not a regular file")));
        }
        let mut buf = Vec::new();
        entry
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| bad(format!("cannot read {name}: {e}")))?;
        if buf.len() as u64 > MAX_ENTRY_BYTES {
            return Err(bad(format!(
                "{name} is larger than {MAX_ENTRY_BYTES} bytes"
            )));
        }
        if name == "config.json" {
            config = Some(buf);
        } else {
            unit = Some(
                String::from_utf8(buf).map_err(|_| bad("rmm-agent.service is not UTF-8".into()))?,
            );
        }
    }
    let config = config.ok_or_else(|| bad("config.json is missing".into()))?;
    let c: PayloadConfig =
        serde_json::from_slice(&config).map_err(|e| bad(format!("config.json: {e}")))?;
    let identity = Identity {
        server_url: c.server_url.trim_end_matches('/').to_owned(),
        agent_id: c.agent_id,
        agent_secret: c.agent_secret,
        server_cert_sha256: c.server_cert_sha256.map(|p| p.to_ascii_lowercase()),
        agent_name: c.agent_name,
        channel: c.channel,
        insecure_http: false,
    };
    identity
        .validate()
        .map_err(|e| bad(format!("config.json: {e}")))?;
    Ok(Bundle { identity, unit })
}

/// Enrolls: proves the state directory writable, fetches the payload once,
/// validates it, persists the identity (and the unit if asked). Returns the
/// identity and the state directory.
pub async fn enroll(opts: &EnrollOptions) -> Result<(Identity, StateDir), EnrollError> {
    validate_token(&opts.token)?;
    crate::identity::validate_server_url(&opts.server).map_err(EnrollError::BadToken)?;
    let transport =
        check_transport(&opts.server, opts.insecure_http).map_err(EnrollError::InsecureHttp)?;
    warn_if_insecure(transport, &opts.server);
    let state = StateDir::open(&opts.state_dir)?;
    if let Some(unit) = &opts.install_unit {
        check_unit_dir(unit)?;
    }
    let tls = crate::tls::client_config(opts.server_cert_sha256, &[b"http/1.1"])?;
    let url = payload_url(&opts.server, &opts.token);
    let resp = crate::http::get(&url, tls, MAX_PAYLOAD_BYTES, opts.timeout).await?;
    match resp.status {
        200 => {}
        404 | 410 => return Err(EnrollError::TokenRejected),
        status => {
            return Err(EnrollError::Status {
                status,
                body: String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).into_owned(),
            });
        }
    }
    let bundle = parse_bundle(&resp.body)?;
    if let (Some(used), Some(given)) = (opts.server_cert_sha256, bundle.identity.pin())
        && used != given
    {
        return Err(EnrollError::BadPayload(
            "server_cert_sha256 in the payload differs from the pin used to download it".into(),
        ));
    }
    let mut identity = bundle.identity;
    let transport = check_transport(&identity.server_url, opts.insecure_http)
        .map_err(|e| EnrollError::InsecureHttp(format!("the enrollment payload: {e}")))?;
    identity.insecure_http = transport == Transport::InsecureHttp;
    if identity.server_url != opts.server.trim_end_matches('/') {
        warn_if_insecure(transport, &identity.server_url);
    }
    state.store_identity(&identity)?;
    if let (Some(path), Some(unit)) = (&opts.install_unit, &bundle.unit) {
        crate::fsutil::write_atomic(path, unit.as_bytes(), 0o644).map_err(|source| {
            EnrollError::Unit {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok((identity, state))
}

fn check_unit_dir(path: &Path) -> Result<(), EnrollError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::fsutil::probe_writable(dir).map_err(|source| EnrollError::Unit {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn bundle_bytes(config: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_cksum();
            tar.append_data(&mut h, name, data).unwrap();
        };
        add("config.json", config.as_bytes(), 0o600);
        add(
            "rmm-agent.service",
            b"[Unit]\nDescription=rmm agent\n",
            0o644,
        );
        for (n, d) in extra {
            add(n, d, 0o644);
        }
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn config(id: Uuid) -> String {
        format!(
            r#"{{"server_url":"http://127.0.0.1:3001/","agent_id":"{id}","agent_secret":"abcDEF123-_","server_cert_sha256":null,"agent_name":"web-1","channel":"beta"}}"#
        )
    }

    #[test]
    fn bundle_parses_and_validates() {
        let id = Uuid::new_v4();
        let b = parse_bundle(&bundle_bytes(&config(id), &[("README", b"x")])).unwrap();
        assert_eq!(b.identity.agent_id, id);
        assert_eq!(b.identity.server_url, "http://127.0.0.1:3001");
        assert_eq!(b.identity.channel, "beta");
        assert!(b.unit.unwrap().contains("[Unit]"));
    }

    #[test]
    fn bad_bundles_are_errors_not_panics() {
        let check = |bytes: &[u8], needle: &str| {
            let err = parse_bundle(bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        };
        check(b"not gzip", "invalid enrollment payload");
        check(&bundle_bytes("{}", &[]), "config.json");
        let id = Uuid::new_v4();
        check(
            &bundle_bytes(&config(id).replace("web-1", "Web 1"), &[]),
            "DNS label",
        );
        check(
            &bundle_bytes(&config(id).replace("http://", "gopher://"), &[]),
            "http://",
        );
        let big = vec![b'x'; 300 * 1024];
        check(
            &bundle_bytes(&config(id), &[("rmm-agent.service", &big)]),
            "larger than",
        );
        // A gzip bomb stops at the unpacked limit.
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
        assert!(parse_bundle(&gz.finish().unwrap()).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Arbitrary bytes are an error value, never a panic.
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = parse_bundle(&bytes);
        }

        /// A valid payload with bytes flipped is an error or a valid
        /// identity, never a panic.
        #[test]
        fn mutated_payloads_never_panic(flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8)) {
            let mut bytes = bundle_bytes(&config(Uuid::nil()), &[]);
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] ^= b;
            }
            if let Ok(b) = parse_bundle(&bytes) {
                proptest::prop_assert!(b.identity.validate().is_ok());
            }
        }
    }

    #[test]
    fn tokens_are_checked() {
        validate_token("abcdefghijklmnop_-0123").unwrap();
        assert!(validate_token("short").is_err());
        assert!(validate_token("abcdefghijklmnop/../x").is_err());
        assert_eq!(
            payload_url("http://h:1/", "tok"),
            "http://h:1/api/v1/enroll-bundle/tok.tgz"
        );
    }
}
