//! TLS trust against the mock's real certificate chain.

use rmm_proxmox::{Client, Error, Fingerprint, TlsMode, TransportErrorKind};

use crate::common;

#[tokio::test]
async fn right_fingerprint_connects() {
    let mock = common::mock().await;
    let config = mock.config();
    assert!(matches!(config.tls, TlsMode::Pinned(_)));
    Client::new(&config).unwrap().version().await.unwrap();
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_before_any_request() {
    let mock = common::mock().await;
    let mut config = mock.config();
    config.tls = TlsMode::Pinned(Fingerprint::of_der(b"some other certificate"));
    let err = Client::new(&config).unwrap().version().await.unwrap_err();
    match &err {
        Error::Transport(t) => {
            assert_eq!(t.kind(), TransportErrorKind::Tls, "{}", t.full_message());
            let msg = t.full_message();
            assert!(
                msg.contains("does not match the pinned fingerprint"),
                "{msg}"
            );
            assert!(msg.contains(&mock.fingerprint().to_string()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        mock.requests().is_empty(),
        "no request may reach an unpinned server"
    );
}

#[tokio::test]
async fn pinning_ignores_the_chain_and_the_host_name() {
    let mock = common::mock().await;
    let config = mock.config();
    // the certificate names localhost and 127.0.0.1; another name still
    // passes, because the pin is what is trusted
    let tls = rmm_proxmox::client_config(&config.tls).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("pve-not-in-cert.example", mock.addr())
        .build()
        .unwrap();
    let url = format!("https://pve-not-in-cert.example:{}", mock.addr().port());
    let transport = rmm_proxmox::HttpTransport::with_client(client, &url, &config.token).unwrap();
    let c = Client::with_transport(std::sync::Arc::new(transport));
    c.version().await.unwrap();
}

#[tokio::test]
async fn ca_file_trust() {
    let mock = common::mock().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let mut config = mock.config();
    config.tls = TlsMode::CaFile(ca);
    Client::new(&config).unwrap().version().await.unwrap();

    // another cluster's CA does not vouch for this node
    let other = common::mock().await;
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.ca_pem()).unwrap();
    config.tls = TlsMode::CaFile(other_ca);
    let err = Client::new(&config).unwrap().version().await.unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.kind() == TransportErrorKind::Tls),
        "{err:?}"
    );
}

#[tokio::test]
async fn insecure_accepts_any_certificate() {
    let mock = common::mock().await;
    let mut config = mock.config();
    config.tls = TlsMode::Insecure;
    Client::new(&config).unwrap().version().await.unwrap();
}

#[tokio::test]
async fn system_roots_do_not_trust_a_self_signed_node() {
    let mock = common::mock().await;
    let mut config = mock.config();
    config.tls = TlsMode::SystemRoots;
    // building may fail (no trust store) or the handshake fails; either way
    // nothing is trusted silently
    match Client::new(&config) {
        Err(e) => assert!(e.to_string().contains("tls"), "{e}"),
        Ok(c) => {
            let err = c.version().await.unwrap_err();
            assert!(
                matches!(&err, Error::Transport(t) if t.kind() == TransportErrorKind::Tls),
                "{err:?}"
            );
        }
    }
    assert!(mock.requests().is_empty());
}
