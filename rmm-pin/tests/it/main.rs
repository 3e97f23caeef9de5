//! rmm-pin against a real TLS server on 127.0.0.1 (rustls over blocking
//! sockets, one thread per connection) with rcgen self-signed certificates.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rmm_pin::{Pin, PinMismatch, cert_sha256, client_config, provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};

/// A self-signed certificate for `localhost` and its key.
fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    (ck.cert.der().clone(), key)
}

/// Serves `config` on 127.0.0.1: every connection gets `pong` and a clean
/// close. The accept loop lives as long as the test process.
fn serve(config: ServerConfig) -> SocketAddr {
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, sock);
                // a refused handshake surfaces here; nothing to do about it
                if tls.write_all(b"pong").is_ok() {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            });
        }
    });
    addr
}

fn server_config(
    versions: &[&'static SupportedProtocolVersion],
) -> rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
}

/// A server presenting a fresh self-signed certificate; returns its
/// address and the certificate's pin.
fn pinned_server(versions: &[&'static SupportedProtocolVersion]) -> (SocketAddr, Pin) {
    let (cert, key) = self_signed();
    let pin = cert_sha256(&cert);
    let config = server_config(versions)
        .with_single_cert(vec![cert], key)
        .unwrap();
    (serve(config), pin)
}

/// Connects to `addr` as `localhost` and reads until the server closes.
fn fetch(addr: SocketAddr, pin: Option<Pin>) -> Result<String, std::io::Error> {
    let config = Arc::new(client_config(pin, &[]).unwrap());
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut text = String::new();
    tls.read_to_string(&mut text)?;
    Ok(text)
}

const VERSIONS: [&[&SupportedProtocolVersion]; 2] =
    [&[&rustls::version::TLS13], &[&rustls::version::TLS12]];

#[test]
fn the_right_pin_is_accepted() {
    for versions in VERSIONS {
        let (addr, pin) = pinned_server(versions);
        assert_eq!(fetch(addr, Some(pin)).unwrap(), "pong", "{versions:?}");
        // the same pin written the other way
        let again: Pin = pin.to_hex().parse().unwrap();
        assert_eq!(fetch(addr, Some(again)).unwrap(), "pong");
    }
}

#[test]
fn a_wrong_pin_is_refused_naming_both_hashes() {
    for versions in VERSIONS {
        let (addr, pin) = pinned_server(versions);
        let mut other = *pin.as_bytes();
        other[0] ^= 1;
        let wrong = Pin::from(other);
        let err = fetch(addr, Some(wrong)).unwrap_err();
        let mismatch = PinMismatch::find(&err).unwrap_or_else(|| panic!("{err}"));
        assert_eq!((mismatch.expected, mismatch.got), (wrong, pin));
        let msg = mismatch.to_string();
        assert!(msg.contains(&wrong.to_string()), "{msg}");
        assert!(msg.contains(&pin.to_string()), "{msg}");
        assert!(msg.contains("does not match the pinned"), "{msg}");
        // the rustls error itself names both as well
        let text = err.to_string();
        assert!(
            text.contains(&wrong.to_string()) && text.contains(&pin.to_string()),
            "{text}"
        );
    }
}

#[test]
fn without_a_pin_a_self_signed_certificate_is_refused() {
    let (addr, _) = pinned_server(&[&rustls::version::TLS13]);
    let err = fetch(addr, None).unwrap_err();
    assert!(PinMismatch::find(&err).is_none(), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// Presents one certificate but signs the handshake with an unrelated key,
/// as a peer that copied the pinned certificate would have to.
#[derive(Debug)]
struct StolenCert(Arc<CertifiedKey>);

impl ResolvesServerCert for StolenCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[test]
fn a_replayed_certificate_without_its_key_is_refused() {
    for versions in VERSIONS {
        let (victim, _) = self_signed();
        let (_, attacker_key) = self_signed();
        let pin = cert_sha256(&victim);
        let key = provider()
            .key_provider
            .load_private_key(attacker_key)
            .unwrap();
        let config = server_config(versions).with_cert_resolver(Arc::new(StolenCert(Arc::new(
            CertifiedKey::new(vec![victim], key),
        ))));
        let addr = serve(config);
        let err = fetch(addr, Some(pin)).unwrap_err();
        assert!(PinMismatch::find(&err).is_none(), "{err}");
        let tls = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert_eq!(
            tls,
            Some(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature
            )),
            "{versions:?}: {err}"
        );
    }
}
