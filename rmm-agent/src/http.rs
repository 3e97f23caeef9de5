//! The one HTTP request the agent makes outside its WebSocket: a bounded
//! `GET` (the enrollment payload), made with reqwest over the caller's
//! rustls configuration, so a certificate pin ([`crate::tls`]) applies.
//! HTTP/1.1, no redirects, no proxies. The body is streamed: a larger
//! announced `content-length` is refused before any of it is read, and
//! otherwise the request fails as soon as the bytes received pass
//! `max_bytes`, without buffering more.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::ClientConfig;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL is not an absolute http(s) URL.
    #[error("invalid URL {0:?}")]
    BadUrl(String),
    /// Connecting or the TLS handshake failed (including a certificate that
    /// does not match the pin).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The exchange failed after connecting.
    #[error("HTTP request failed: {0}")]
    Request(String),
    /// The body is larger than allowed.
    #[error("response body is larger than {0} bytes")]
    TooLarge(usize),
    /// The request took too long.
    #[error("HTTP request timed out after {0:?}")]
    Timeout(Duration),
}

/// A response: status and (bounded) body. Any status is a response; the
/// caller decides what a non-success status means.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// GETs `url`, refusing bodies over `max_bytes`. `tls` is used for
/// `https://` URLs. `timeout` covers connecting and reading the whole body.
pub async fn get(
    url: &str,
    tls: Arc<ClientConfig>,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| HttpError::BadUrl(url.into()))?;
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Err(HttpError::BadUrl(url.into()));
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(HttpError::BadUrl(url.into()));
    }
    let addr = format!("{host}:{port}");
    tokio::time::timeout(timeout, get_inner(parsed, &addr, tls, max_bytes))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn get_inner(
    url: reqwest::Url,
    addr: &str,
    tls: Arc<ClientConfig>,
    max_bytes: usize,
) -> Result<Response, HttpError> {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(Arc::unwrap_or_clone(tls))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(format!("rmm-agent/{}", crate::AGENT_VERSION))
        .build()
        .map_err(|e| HttpError::Request(reason(&e)))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| classify(e, addr))?;
    let status = resp.status().as_u16();
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(HttpError::TooLarge(max_bytes));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(e, addr))? {
        if chunk.len() > max_bytes - body.len() {
            return Err(HttpError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        body: body.freeze(),
    })
}

fn classify(e: reqwest::Error, addr: &str) -> HttpError {
    let connect = |reason: String| HttpError::Connect {
        addr: addr.to_owned(),
        reason,
    };
    if let Some(mismatch) = rmm_pin::PinMismatch::find(&e) {
        connect(mismatch.to_string())
    } else if e.is_connect() {
        connect(reason(&e))
    } else {
        HttpError::Request(reason(&e))
    }
}

/// The causes of `e` joined with `: ` (reqwest's own message only names
/// the URL), or its message when it has no cause.
fn reason(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Reads one request from `s`, answers `response`, and returns the
    /// request text.
    async fn answer(mut s: impl AsyncRead + AsyncWrite + Unpin, response: &[u8]) -> String {
        let mut req = vec![0u8; 4096];
        let n = s.read(&mut req).await.unwrap_or(0);
        let _ = s.write_all(response).await;
        let _ = s.shutdown().await;
        String::from_utf8_lossy(&req[..n]).into_owned()
    }

    /// A one-shot raw HTTP server answering `response` to any request.
    async fn serve(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            answer(s, &response).await
        });
        (url, h)
    }

    /// A one-shot HTTPS server with a fresh self-signed certificate for
    /// `localhost`; returns its URL and the certificate's pin.
    async fn serve_tls(response: Vec<u8>) -> (String, [u8; 32]) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pin = *rmm_pin::cert_sha256(ck.cert.der()).as_bytes();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(rmm_pin::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://localhost:{}", l.local_addr().unwrap().port());
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            if let Ok(tls) = acceptor.accept(s).await {
                answer(tls, &response).await;
            }
        });
        (url, pin)
    }

    fn tls() -> Arc<ClientConfig> {
        crate::tls::client_config(None, &[]).unwrap()
    }

    const SECS: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn get_reads_body_and_sends_path() {
        let (url, h) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()).await;
        let r = get(&format!("{url}/a/b.tgz"), tls(), 100, SECS)
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let req = h.await.unwrap();
        assert!(req.starts_with("GET /a/b.tgz HTTP/1.1\r\n"), "{req}");
        assert!(
            req.to_lowercase().contains("user-agent: rmm-agent/"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let (url, _h) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n01234567890123456789012345678901234567890123456789".to_vec()).await;
        let err = get(&url, tls(), 10, SECS).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(10)), "{err}");
        // Chunked, with no length announced.
        let (url, _h) = serve(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n".to_vec()).await;
        let err = get(&url, tls(), 10, SECS).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(10)), "{err}");
        // Exactly the limit is fine.
        let (url, _h) =
            serve(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789".to_vec()).await;
        assert_eq!(get(&url, tls(), 10, SECS).await.unwrap().body.len(), 10);
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_limit() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let _ = s.read(&mut req).await;
            // no length: the body runs until the connection closes, which
            // it never does while the client keeps reading
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let block = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while s.write_all(&block).await.is_ok() {
                sent += block.len();
            }
            sent
        });
        let err = get(&url, tls(), 256 * 1024, Duration::from_secs(20))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(_)), "{err}");
        let sent = server.await.unwrap();
        // the client stopped reading: the server could not push much more
        // than the limit plus the socket buffers
        assert!(sent < 64 * 1024 * 1024, "{sent}");
    }

    #[tokio::test]
    async fn status_and_errors() {
        let (url, _h) =
            serve(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        assert_eq!(get(&url, tls(), 10, SECS).await.unwrap().status, 404);
        // redirects are not followed
        let (url, _h) = serve(
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        assert_eq!(get(&url, tls(), 10, SECS).await.unwrap().status, 302);
        for bad in ["ftp://x/", "not a url", "http://"] {
            assert!(
                matches!(get(bad, tls(), 10, SECS).await, Err(HttpError::BadUrl(_))),
                "{bad}"
            );
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = get(&format!("http://{addr}/"), tls(), 10, SECS)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::Connect { addr: a, .. } if *a == addr.to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let _server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let err = get(&url, tls(), 10, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::Timeout(d) if d == Duration::from_millis(300)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn https_uses_the_pin() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        let (url, pin) = serve_tls(ok.clone()).await;
        let pinned = crate::tls::client_config(Some(pin), &[b"http/1.1"]).unwrap();
        let r = get(&url, pinned, 10, SECS).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));

        let (url, pin) = serve_tls(ok.clone()).await;
        let mut wrong = pin;
        wrong[0] ^= 1;
        let cfg = crate::tls::client_config(Some(wrong), &[b"http/1.1"]).unwrap();
        let err = get(&url, cfg, 10, SECS).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, HttpError::Connect { .. }), "{msg}");
        assert!(msg.contains("does not match the pinned"), "{msg}");
        assert!(msg.contains(&rmm_pin::Pin::from(pin).to_string()), "{msg}");
        assert!(
            msg.contains(&rmm_pin::Pin::from(wrong).to_string()),
            "{msg}"
        );

        // without a pin, webpki does not trust a self-signed certificate
        let (url, _) = serve_tls(ok).await;
        let err = get(&url, tls(), 10, SECS).await.unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
