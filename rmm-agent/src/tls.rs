//! rustls client configuration (ring provider only) with optional pinning
//! of the server's leaf certificate.
//!
//! Without a pin, the server certificate is verified against the Mozilla
//! roots (webpki-roots) and the host name, as usual. With a pin (the
//! `server_cert_sha256` handed out at enrollment), the leaf certificate's
//! SHA-256 must equal the pin; the chain, validity period and host name are
//! then not consulted (the pin *is* the trust decision, which is what makes
//! self-signed server certificates usable), but the handshake signature is
//! still verified with the pinned certificate's key, so a peer that merely
//! replays the certificate cannot complete the handshake.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS configuration: {0}")]
pub struct TlsConfigError(#[from] rustls::Error);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config: webpki roots, or the SHA-256 pin of the leaf
/// certificate when given. `alpn` is offered when non-empty.
pub fn client_config(
    pin: Option<[u8; 32]>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match pin {
        Some(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin,
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        None => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn cert_sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Accepts exactly the pinned leaf certificate.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate sha256 {} does not match the pinned {}",
                hex::encode(got),
                hex::encode(self.pin)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real TLS server on 127.0.0.1 with a fresh self-signed cert.
    async fn server() -> (std::net::SocketAddr, [u8; 32], tokio::task::JoinHandle<()>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = ck.cert.der().clone();
        let pin: [u8; 32] = Sha256::digest(der.as_ref()).into();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(sock).await {
                        let _ = s.write_all(b"pong").await;
                        let _ = s.shutdown().await;
                    }
                });
            }
        });
        (addr, pin, h)
    }

    async fn connect(addr: std::net::SocketAddr, pin: Option<[u8; 32]>) -> Result<String, String> {
        let cfg = client_config(pin, &[]).map_err(|e| e.to_string())?;
        let sock = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut s = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, sock)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok(buf)
    }

    #[tokio::test]
    async fn pin_accepts_the_pinned_cert_only() {
        let (addr, pin, h) = server().await;
        assert_eq!(connect(addr, Some(pin)).await.unwrap(), "pong");
        let mut wrong = pin;
        wrong[0] ^= 1;
        let err = connect(addr, Some(wrong)).await.unwrap_err();
        assert!(err.contains("does not match the pinned"), "{err}");
        // Without a pin a self-signed certificate is refused by webpki.
        let err = connect(addr, None).await.unwrap_err();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        h.abort();
    }
}
