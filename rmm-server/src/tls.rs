//! Native HTTPS/WSS (rustls, ring provider).
//!
//! Two sources of a certificate:
//! - files (`--tls-cert`/`--tls-key`, PEM), read again on SIGHUP so a
//!   renewal needs no restart ([`TlsState::reload`]);
//! - self-signed (`--tls-self-signed`): generated on first start for the
//!   public URL's host (plus `localhost` and `127.0.0.1`) into
//!   `<data dir>/tls/` (the key `0600`) and reused afterwards, the way
//!   MeshCentral does. Enrollment bundles pin its SHA-256, so a
//!   self-signed server is as safe as a CA-issued one for its agents.
//!
//! The certificate in use is behind a [`ResolvesServerCert`], so a reload
//! swaps it for new handshakes while established connections continue.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Where the served certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files (reloaded on SIGHUP).
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// Generated once into the data dir, then reused.
    SelfSigned,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key does not belong to the certificate, or is unsupported.
    #[error("the TLS key cannot be used with the certificate: {0}")]
    Key(String),
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// The files in use: `(cert, key)`.
fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// One loaded certificate.
#[derive(Debug, Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate, hex (what agents pin).
    sha256: String,
    /// SHA-256 of the public key (SubjectPublicKeyInfo), base64 (what
    /// `curl --pinnedpubkey sha256//...` pins).
    spki_sha256_b64: Option<String>,
}

/// The served certificate, swappable at run time.
#[derive(Debug)]
pub struct TlsState {
    cert_path: PathBuf,
    key_path: PathBuf,
    self_signed: bool,
    current: RwLock<Served>,
}

fn load(cert_path: &Path, key_path: &Path) -> Result<Served, TlsError> {
    let pem_err = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_err(cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert_path, e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(pem_err(cert_path, "no CERTIFICATE block found".into()));
    };
    let sha = hex::encode(Sha256::digest(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| pem_err(key_path, format!("no usable private key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let spki_sha256_b64 = certified.key.public_key().map(|spki| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki.as_ref()))
    });
    Ok(Served {
        key: Arc::new(certified),
        sha256: sha,
        spki_sha256_b64,
    })
}

/// Generates a certificate for `host` into the data dir unless one is
/// there.
fn ensure_self_signed(data_dir: &Path, host: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = self_signed_paths(data_dir);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    crate::datadir::prepare(&data_dir.join("tls")).map_err(io(&data_dir.join("tls")))?;
    let mut names = vec![host.to_owned()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|h| h == n) {
            names.push(n.to_owned());
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    // The key first: a crash in between leaves no certificate without key.
    let _ = std::fs::remove_file(&key);
    crate::datadir::write_private(&key, generated.signing_key.serialize_pem().as_bytes())
        .map_err(io(&key))?;
    let _ = std::fs::remove_file(&cert);
    crate::datadir::write_private(&cert, generated.cert.pem().as_bytes()).map_err(io(&cert))?;
    tracing::info!(host, cert = %cert.display(), "generated a self-signed TLS certificate");
    Ok((cert, key))
}

impl TlsState {
    /// Loads (or, self-signed, first generates) the certificate. `host` is
    /// the public URL's host, named in a generated certificate.
    pub fn open(source: &TlsSource, data_dir: &Path, host: &str) -> Result<TlsState, TlsError> {
        let (cert_path, key_path, self_signed) = match source {
            TlsSource::Files { cert, key } => (cert.clone(), key.clone(), false),
            TlsSource::SelfSigned => {
                let (c, k) = ensure_self_signed(data_dir, host)?;
                (c, k, true)
            }
        };
        let current = load(&cert_path, &key_path)?;
        Ok(TlsState {
            cert_path,
            key_path,
            self_signed,
            current: RwLock::new(current),
        })
    }

    /// Reads the files again (SIGHUP). On error the old certificate stays
    /// in use. Returns the new leaf's SHA-256.
    pub fn reload(&self) -> Result<String, TlsError> {
        let next = load(&self.cert_path, &self.key_path)?;
        let sha = next.sha256.clone();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(sha)
    }

    fn served(&self) -> Served {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SHA-256 of the leaf certificate served now (lowercase hex).
    pub fn served_sha256(&self) -> String {
        self.served().sha256
    }

    /// SHA-256 of the served public key, base64, for `curl
    /// --pinnedpubkey sha256//<this>` (`None` for a key type rustls
    /// cannot describe).
    pub fn spki_sha256_b64(&self) -> Option<String> {
        self.served().spki_sha256_b64
    }

    /// Whether the certificate is the generated self-signed one (then
    /// enrollment always pins it).
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// A rustls server config serving the current certificate (HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<TlsState>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.served().key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let a = TlsState::open(&TlsSource::SelfSigned, tmp.path(), "rmm.example.com").unwrap();
        let b = TlsState::open(&TlsSource::SelfSigned, tmp.path(), "rmm.example.com").unwrap();
        assert_eq!(
            a.served_sha256(),
            b.served_sha256(),
            "reused, not regenerated"
        );
        assert!(a.is_self_signed());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join("tls/key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_files_are_clear_errors_and_reload_keeps_the_old_cert() {
        let tmp = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(tmp.path(), "a.example").unwrap();
        let files = TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let state = TlsState::open(&files, tmp.path(), "ignored").unwrap();
        let before = state.served_sha256();
        // a key of another certificate
        let other = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
        std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
        assert!(matches!(state.reload(), Err(TlsError::Key(_))));
        assert_eq!(state.served_sha256(), before);
        // the new pair: served after reload
        std::fs::write(&cert, other.cert.pem()).unwrap();
        let after = state.reload().unwrap();
        assert_ne!(after, before);
        assert_eq!(state.served_sha256(), after);
        // garbage
        std::fs::write(&cert, "not pem").unwrap();
        assert!(matches!(state.reload(), Err(TlsError::Pem { .. })));
        let missing = TlsSource::Files {
            cert: tmp.path().join("nope.pem"),
            key,
        };
        assert!(TlsState::open(&missing, tmp.path(), "x").is_err());
    }
}
