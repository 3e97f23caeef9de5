//! # rmm-pin
//!
//! SHA-256 pinning of a server's leaf certificate for rustls clients, shared
//! by the agent (the server certificate it pins at enrollment) and
//! `rmm-proxmox` (a Proxmox node's certificate fingerprint).
//!
//! # Design
//!
//! - [`Pin`]: the 32-byte SHA-256 of a DER certificate, parsed from 64 hex
//!   digits in either case, optionally `:`-separated in pairs, and printed
//!   the way `openssl` and Proxmox print fingerprints (`AB:CD:...`).
//!   [`cert_sha256`] computes one.
//! - [`PinnedVerifier`]: a rustls [`ServerCertVerifier`] that accepts
//!   exactly the pinned leaf certificate. The chain, validity period and
//!   host name are not consulted — the pin *is* the trust decision, which
//!   is what makes self-signed certificates usable — but the handshake
//!   signature is still verified with the pinned certificate's key, so a
//!   peer that merely replays the certificate cannot complete the
//!   handshake. A mismatch fails the handshake with a [`PinMismatch`] that
//!   names both hashes; [`PinMismatch::find`] digs it out of an error chain.
//! - [`client_config`]: a rustls [`ClientConfig`] that trusts the pin, or
//!   the Mozilla roots (webpki-roots) and the host name when there is none.
//!
//! Architecture invariant: this crate does no IO and knows no async runtime
//! or HTTP client; it builds rustls configuration only, always with the
//! `ring` crypto provider ([`provider`]), so nothing depends on a
//! process-wide default provider.
//!
//! # Example
//!
//! ```
//! use rmm_pin::{Pin, client_config};
//!
//! let pin: Pin = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
//!     .parse()?;
//! assert_eq!(pin, rmm_pin::cert_sha256(b"abc"));
//! assert!(pin.to_string().starts_with("BA:78:16:BF"));
//! let config = client_config(Some(pin), &[b"http/1.1"])?;
//! assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 of a DER-encoded certificate: what is pinned.
///
/// Parses from 64 hex digits in either case, optionally `:`-separated in
/// pairs (`AB:CD:...`), surrounding whitespace ignored; displays as
/// upper-case `:`-separated pairs; [`Pin::to_hex`] gives the plain
/// lower-case form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pin([u8; 32]);

impl Pin {
    /// A pin from its raw digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Pin {
        Pin(bytes)
    }

    /// The pin of a DER-encoded certificate (same as [`cert_sha256`]).
    pub fn of_der(der: &[u8]) -> Pin {
        Pin(Sha256::digest(der).into())
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lower-case hex digits, no separators.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The SHA-256 of a DER-encoded certificate, as a [`Pin`].
pub fn cert_sha256(der: &[u8]) -> Pin {
    Pin::of_der(der)
}

impl From<[u8; 32]> for Pin {
    fn from(bytes: [u8; 32]) -> Pin {
        Pin(bytes)
    }
}

impl From<Pin> for [u8; 32] {
    fn from(pin: Pin) -> [u8; 32] {
        pin.0
    }
}

/// Why a pin did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinParseError {
    /// A character is not a hex digit.
    #[error("not hex: a sha-256 pin is 64 hex digits, optionally `:`-separated in pairs")]
    NotHex,
    /// The digest is not 32 bytes long.
    #[error("not 32 bytes (64 hex digits): got {digits} hex digits")]
    WrongLength {
        /// How many hex digits there were.
        digits: usize,
    },
    /// `:` separators that do not separate pairs of digits.
    #[error("`:` must separate pairs of hex digits, as in `AB:CD:...`")]
    BadSeparator,
}

impl FromStr for Pin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<Pin, PinParseError> {
        let s = s.trim();
        let digits: String = if s.contains(':') {
            if !s.split(':').all(|pair| pair.len() == 2) {
                return Err(PinParseError::BadSeparator);
            }
            s.split(':').collect()
        } else {
            s.to_owned()
        };
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PinParseError::NotHex);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| PinParseError::WrongLength {
            digits: digits.len(),
        })?;
        Ok(Pin(bytes))
    }
}

impl fmt::Display for Pin {
    /// `AB:CD:...` (32 upper-case pairs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({self})")
    }
}

/// The server's leaf certificate does not match the pin. Carried inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server certificate fingerprint {got} does not match the pinned fingerprint {expected}")]
pub struct PinMismatch {
    /// The pin.
    pub expected: Pin,
    /// What the server presented.
    pub got: Pin,
}

impl PinMismatch {
    /// The pin mismatch behind `err`, if any: searched along the source
    /// chain, inside `std::io::Error` wrappers (whose `source()` skips the
    /// wrapped error) and inside rustls errors.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a PinMismatch> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<PinMismatch>() {
                return Some(found);
            }
            if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
                e.downcast_ref::<rustls::Error>()
                && let Some(found) = other.0.downcast_ref::<PinMismatch>()
            {
                return Some(found);
            }
            if let Some(found) = e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| PinMismatch::find(inner))
            {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// The crypto provider every configuration here uses: rustls' `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly the pinned leaf certificate and verifies the handshake
/// signature with its key (see the crate docs for what is not checked).
/// [`PinnedVerifier::accept_any`] is the explicit, insecure variant that
/// accepts every certificate but still checks the handshake signature.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Option<Pin>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    /// A verifier for `pin`, verifying signatures with the `ring` provider's
    /// algorithms.
    pub fn new(pin: Pin) -> PinnedVerifier {
        PinnedVerifier {
            pin: Some(pin),
            algorithms: provider().signature_verification_algorithms,
        }
    }

    /// A verifier that accepts any certificate (anyone on the network path
    /// can impersonate the server) but still checks that the peer owns the
    /// key it presented. Only for an operator's explicit insecure mode.
    pub fn accept_any() -> PinnedVerifier {
        PinnedVerifier {
            pin: None,
            algorithms: provider().signature_verification_algorithms,
        }
    }

    /// The pin (`None` for [`PinnedVerifier::accept_any`]).
    pub fn pin(&self) -> Option<Pin> {
        self.pin
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = Pin::of_der(end_entity);
        if got == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { expected, got })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the tls configuration: {0}")]
pub struct TlsConfigError(#[from] rustls::Error);

/// A client configuration (`ring` provider, rustls' safe default protocol
/// versions) that trusts `pin`, or the Mozilla roots and the host name when
/// `pin` is `None`. `alpn` protocols are offered in order.
pub fn client_config(pin: Option<Pin>, alpn: &[&[u8]]) -> Result<ClientConfig, TlsConfigError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = match pin {
        Some(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin)))
            .with_no_client_auth(),
        None => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn check(text: &str, expected: Result<Pin, PinParseError>) {
        assert_eq!(text.parse::<Pin>(), expected, "{text:?}");
    }

    #[test]
    fn pins_parse_with_or_without_colons_in_any_case() {
        let abc = cert_sha256(b"abc");
        assert_eq!(abc.to_hex(), ABC);
        let colons = abc.to_string();
        assert_eq!(&colons[..12], "BA:78:16:BF:");
        check(ABC, Ok(abc));
        check(&ABC.to_uppercase(), Ok(abc));
        check(&colons, Ok(abc));
        check(&colons.to_lowercase(), Ok(abc));
        check(&format!("  {ABC}\n"), Ok(abc));

        check("", Err(PinParseError::WrongLength { digits: 0 }));
        check("abcd", Err(PinParseError::WrongLength { digits: 4 }));
        check(
            &format!("{ABC}00"),
            Err(PinParseError::WrongLength { digits: 66 }),
        );
        check(
            &format!("{colons}:00"),
            Err(PinParseError::WrongLength { digits: 66 }),
        );
        check(&"zz".repeat(32), Err(PinParseError::NotHex));
        check(&ABC.replace('b', "é"), Err(PinParseError::NotHex));
        check(
            &colons.replacen("BA:", "BA7:", 1),
            Err(PinParseError::BadSeparator),
        );
        check(&format!("{colons}:"), Err(PinParseError::BadSeparator));
        check(
            &ABC.replacen("ba", "ba:", 1),
            Err(PinParseError::BadSeparator),
        );
    }

    #[test]
    fn pin_conversions_round_trip() {
        let pin = Pin::from_bytes([0xab; 32]);
        assert_eq!(<[u8; 32]>::from(pin), [0xab; 32]);
        assert_eq!(Pin::from([0xab; 32]), pin);
        assert_eq!(pin.to_string().parse::<Pin>(), Ok(pin));
        assert_eq!(pin.to_hex().parse::<Pin>(), Ok(pin));
        assert_eq!(format!("{pin:?}"), format!("Pin({pin})"));
    }

    #[test]
    fn parse_errors_read_well() {
        let msg = |s: &str| s.parse::<Pin>().map(drop).unwrap_err().to_string();
        assert!(msg("abcd").contains("not 32 bytes"), "{}", msg("abcd"));
        assert!(msg(&"zz".repeat(32)).starts_with("not hex"));
        for m in [msg("abcd"), msg("zz"), msg("a:bcd")] {
            assert!(!m.ends_with('.'), "{m}");
            assert!(!m.starts_with(|c: char| c.is_uppercase()), "{m}");
        }
    }

    #[test]
    fn a_mismatch_is_found_through_wrappers() {
        let mismatch = PinMismatch {
            expected: cert_sha256(b"a"),
            got: cert_sha256(b"b"),
        };
        let tls = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            mismatch.clone(),
        ))));
        let io = std::io::Error::other(tls);
        assert_eq!(PinMismatch::find(&io), Some(&mismatch));
        let text = mismatch.to_string();
        assert!(text.contains(&mismatch.expected.to_string()), "{text}");
        assert!(text.contains(&mismatch.got.to_string()), "{text}");
        let unrelated =
            std::io::Error::other(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert_eq!(PinMismatch::find(&unrelated), None);
    }

    #[test]
    fn configs_build_with_and_without_a_pin() {
        let pinned = client_config(Some(cert_sha256(b"x")), &[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(
            pinned.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let roots = client_config(None, &[]).unwrap();
        assert!(roots.alpn_protocols.is_empty());
    }
}
