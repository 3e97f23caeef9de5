//! TLS trust for the Proxmox API: certificate pinning, a CA file, the
//! system trust store, or an explicit `insecure` mode.
//!
//! Proxmox hosts usually serve a certificate signed by their own cluster CA,
//! so the two practical choices are pinning the node certificate's SHA-256
//! fingerprint (what `pvenode cert info` prints, and what the web UI shows)
//! or trusting `/etc/pve/pve-root-ca.pem`. All modes use the `ring` crypto
//! provider.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::config::ConfigError;

/// A SHA-256 certificate fingerprint, written `AA:BB:...` (32 bytes): the
/// workspace's one pin type, [`rmm_pin::Pin`].
pub use rmm_pin::Pin as Fingerprint;
/// The leaf certificate did not match the pinned fingerprint
/// ([`rmm_pin::PinMismatch`]).
pub use rmm_pin::PinMismatch;
/// Why a fingerprint did not parse ([`rmm_pin::PinParseError`]).
pub use rmm_pin::PinParseError as FingerprintParseError;

/// How the server certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsMode {
    /// The leaf certificate's SHA-256 must equal this fingerprint; the chain,
    /// names and dates are not consulted (the handshake signature still is).
    Pinned(Fingerprint),
    /// Verify the chain and host name against the CA certificates in this
    /// PEM file (e.g. a copy of `/etc/pve/pve-root-ca.pem`).
    CaFile(PathBuf),
    /// Verify against the operating system's trust store (for hosts with
    /// a publicly trusted certificate, e.g. ACME).
    #[default]
    SystemRoots,
    /// Accept any certificate. Explicit, off by default, and logged as a
    /// warning every time a client is built.
    Insecure,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Builds the rustls client configuration for `mode` (ring provider only;
/// pinning is [`rmm_pin::PinnedVerifier`]).
pub fn client_config(mode: &TlsMode) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = rmm_pin::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e.to_string()))?;
    let config = match mode {
        TlsMode::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(rmm_pin::PinnedVerifier::new(*pin)))
            .with_no_client_auth(),
        TlsMode::CaFile(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| invalid("ca_file", format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    invalid("ca_file", format!("bad pem in {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    invalid(
                        "ca_file",
                        format!("bad certificate in {}: {e}", path.display()),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(invalid(
                    "ca_file",
                    format!("no certificates found in {}", path.display()),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::SystemRoots => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| invalid("tls", format!("cannot load the system trust store: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        TlsMode::Insecure => {
            tracing::warn!(
                "tls certificate verification is disabled (insecure mode); anyone on the network path can impersonate the proxmox host, pin its fingerprint instead"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(rmm_pin::PinnedVerifier::accept_any()))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format Proxmox prints (`pvenode cert info`) round-trips.
    #[test]
    fn fingerprints_parse_and_print() {
        let text = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let fp: Fingerprint = text.parse().unwrap();
        assert_eq!(fp.to_string(), text);
        let lower: Fingerprint = text.to_lowercase().parse().unwrap();
        assert_eq!(lower, fp);
        let plain: Fingerprint = text.replace(':', "").parse().unwrap();
        assert_eq!(plain, fp);
        assert!("AB:CD".parse::<Fingerprint>().is_err());
        assert!(text.replace("AB:", "ABC:").parse::<Fingerprint>().is_err());
        assert!(format!("{text}:00").parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }

    /// Counts WARN events whose message mentions "insecure".
    struct WarnCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for WarnCounter {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Msg(String);
            impl tracing::field::Visit for Msg {
                fn record_debug(&mut self, _: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push_str(&format!("{v:?}"));
                }
            }
            let mut msg = Msg(String::new());
            event.record(&mut msg);
            if *event.metadata().level() == tracing::Level::WARN && msg.0.contains("insecure") {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn insecure_mode_logs_a_warning() {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tracing::subscriber::with_default(WarnCounter(count.clone()), || {
            client_config(&TlsMode::Pinned(Fingerprint::of_der(b"x"))).unwrap();
            assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
            client_config(&TlsMode::Insecure).unwrap();
        });
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            TlsMode::default(),
            TlsMode::SystemRoots,
            "insecure is never the default"
        );
    }

    #[test]
    fn every_mode_builds_a_config() {
        let fp = Fingerprint::of_der(b"x");
        client_config(&TlsMode::Pinned(fp)).unwrap();
        client_config(&TlsMode::Insecure).unwrap();
        let err = client_config(&TlsMode::CaFile("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(err.to_string().contains("ca_file"), "{err}");
    }
}
