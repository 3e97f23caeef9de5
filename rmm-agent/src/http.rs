//! The one HTTP request the agent makes outside its WebSocket: a bounded
//! `GET` (enrollment payload), over plain TCP or rustls, with hyper's
//! HTTP/1.1 client connection. The body is read frame by frame and the
//! request fails as soon as it passes `max_bytes`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::Uri;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL is not an absolute http(s) URL.
    #[error("invalid URL {0:?}")]
    BadUrl(String),
    /// Connecting or the TLS handshake failed.
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

/// A response: status and (bounded) body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// GETs `url`, refusing bodies over `max_bytes`. `tls` is used for
/// `https://` URLs.
pub async fn get(
    url: &str,
    tls: Arc<ClientConfig>,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, get_inner(url, tls, max_bytes))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn get_inner(
    url: &str,
    tls: Arc<ClientConfig>,
    max_bytes: usize,
) -> Result<Response, HttpError> {
    let uri: Uri = url.parse().map_err(|_| HttpError::BadUrl(url.into()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(HttpError::BadUrl(url.into())),
    };
    let host = uri
        .host()
        .ok_or_else(|| HttpError::BadUrl(url.into()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addr = format!("{host}:{port}");
    let connect_err = |reason: String| HttpError::Connect {
        addr: addr.clone(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if https {
        let name = rustls::pki_types::ServerName::try_from(bare_host.clone())
            .map_err(|e| connect_err(e.to_string()))?;
        let s = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::Request(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host_header)
        .header(
            hyper::header::USER_AGENT,
            format!("rmm-agent/{}", crate::AGENT_VERSION),
        )
        .body(String::new())
        .map_err(|e| HttpError::Request(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| HttpError::Request(e.to_string()))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if body.size_hint().lower() > max_bytes as u64 {
        driver.abort();
        return Err(HttpError::TooLarge(max_bytes));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| HttpError::Request(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max_bytes {
                driver.abort();
                return Err(HttpError::TooLarge(max_bytes));
            }
            buf.extend_from_slice(&data);
        }
    }
    driver.abort();
    Ok(Response {
        status,
        body: buf.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot raw HTTP server answering `response` to any request.
    async fn serve(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.unwrap();
            let _ = s.write_all(&response).await;
            let _ = s.shutdown().await;
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        (url, h)
    }

    fn tls() -> Arc<ClientConfig> {
        crate::tls::client_config(None, &[]).unwrap()
    }

    #[tokio::test]
    async fn get_reads_body_and_sends_path() {
        let (url, h) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()).await;
        let r = get(
            &format!("{url}/a/b.tgz"),
            tls(),
            100,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let req = h.await.unwrap();
        assert!(req.starts_with("GET /a/b.tgz HTTP/1.1\r\n"), "{req}");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let (url, _h) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n01234567890123456789012345678901234567890123456789".to_vec()).await;
        let err = get(&url, tls(), 10, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(10)), "{err}");
        // Chunked, with no length announced.
        let (url, _h) = serve(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n".to_vec()).await;
        let err = get(&url, tls(), 10, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(10)), "{err}");
    }

    #[tokio::test]
    async fn status_and_errors() {
        let (url, _h) =
            serve(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        assert_eq!(
            get(&url, tls(), 10, Duration::from_secs(5))
                .await
                .unwrap()
                .status,
            404
        );
        assert!(matches!(
            get("ftp://x/", tls(), 10, Duration::from_secs(1)).await,
            Err(HttpError::BadUrl(_))
        ));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = get(
            &format!("http://{addr}/"),
            tls(),
            10,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    }
}
