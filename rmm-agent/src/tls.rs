//! rustls client configuration (ring provider only) with optional pinning
//! of the server's leaf certificate, through [`rmm_pin`].
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

use rustls::ClientConfig;

/// Why a TLS configuration could not be built.
pub use rmm_pin::TlsConfigError;

/// A client config: webpki roots, or the SHA-256 pin of the leaf
/// certificate when given. `alpn` is offered when non-empty.
pub fn client_config(
    pin: Option<[u8; 32]>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    rmm_pin::client_config(pin.map(rmm_pin::Pin::from), alpn).map(Arc::new)
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn cert_sha256_hex(der: &[u8]) -> String {
    rmm_pin::cert_sha256(der).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_and_hashes_use_the_agent_formats() {
        assert_eq!(
            cert_sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let cfg = client_config(Some([7; 32]), &[b"http/1.1"]).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client_config(None, &[]).unwrap().alpn_protocols.is_empty());
    }
}
