//! The HTTP seam: [`Transport`] carries one API request and returns the raw
//! response. [`HttpTransport`] is the real one (reqwest + rustls/ring);
//! tests substitute a mock. The client above it never sees sockets, the
//! transport never interprets Proxmox semantics.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::config::{ApiToken, Config};
use crate::error::{Error, TransportError, TransportErrorKind};

/// A boxed, `Send` future (keeps the seam traits object-safe and mockable).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// HTTP method of an API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// GET (idempotent, retried on transient failures).
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl Method {
    /// Upper-case name as in the API schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// Whether parameters travel in the query string (GET, DELETE) rather
    /// than a form body (POST, PUT).
    pub fn params_in_query(self) -> bool {
        matches!(self, Method::Get | Method::Delete)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API request, relative to `/api2/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// Method.
    pub method: Method,
    /// Percent-encoded path starting with `/`, e.g. `/nodes/pve1/lxc`.
    pub path: String,
    /// Parameters in order; booleans already as `0`/`1`.
    pub params: Vec<(String, String)>,
}

/// The raw response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The reason phrase as sent (Proxmox puts its error message there).
    pub reason: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Carries API requests. Implementations must not retry; the client owns
/// the retry policy.
pub trait Transport: Send + Sync + 'static {
    /// Sends one request.
    fn send(&self, request: ApiRequest) -> BoxFuture<'static, Result<ApiResponse, TransportError>>;
}

/// `application/x-www-form-urlencoded` encoding of parameters.
pub fn form_encode(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The real transport: HTTPS via reqwest with a rustls (ring) configuration
/// built from [`crate::TlsMode`]. The token is sent as
/// `Authorization: PVEAPIToken=...`, marked sensitive.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    auth: reqwest::header::HeaderValue,
    token_id: String,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .field("token", &format_args!("{}=<redacted>", self.token_id))
            .finish()
    }
}

impl HttpTransport {
    /// Builds the transport from a validated configuration.
    pub fn new(config: &Config) -> Result<HttpTransport, Error> {
        let tls = crate::tls::client_config(&config.tls)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("rmm-proxmox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::Transport(
                    TransportError::new(TransportErrorKind::Other, "cannot build the http client")
                        .with_source(e),
                )
            })?;
        HttpTransport::with_client(client, &config.url, &config.token)
    }

    /// Uses an existing reqwest client (its TLS settings apply).
    pub fn with_client(
        client: reqwest::Client,
        base_url: &str,
        token: &ApiToken,
    ) -> Result<HttpTransport, Error> {
        let base = crate::config::normalize_url(base_url)?;
        let mut auth = reqwest::header::HeaderValue::from_str(&token.authorization_header())
            .map_err(|_| Error::InvalidArgument {
                field: "token",
                reason: "not a valid header value".into(),
            })?;
        auth.set_sensitive(true);
        Ok(HttpTransport {
            client,
            base: format!("{base}/api2/json"),
            auth,
            token_id: token.id.to_string(),
        })
    }
}

/// The rustls error anywhere in the chain, including inside `io::Error`
/// wrappers (whose `source()` skips the wrapped error).
fn find_tls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && let Some(found) = io.get_ref().and_then(|inner| find_tls_error(inner))
    {
        return Some(found);
    }
    err.source().and_then(find_tls_error)
}

fn classify(e: reqwest::Error) -> TransportError {
    if let Some(tls) = find_tls_error(&e) {
        let message = match tls {
            // our verifiers' own errors (e.g. a pin mismatch) say it best
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                format!("server certificate rejected: {}", other.0)
            }
            other => format!("tls handshake failed: {other}"),
        };
        return TransportError::new(TransportErrorKind::Tls, message).with_source(e);
    }
    let (kind, message) = if e.is_connect() {
        (TransportErrorKind::Connect, "cannot connect")
    } else if e.is_timeout() {
        (TransportErrorKind::Timeout, "request timed out")
    } else {
        (TransportErrorKind::Other, "request failed")
    };
    TransportError::new(kind, message).with_source(e)
}

impl Transport for HttpTransport {
    fn send(&self, request: ApiRequest) -> BoxFuture<'static, Result<ApiResponse, TransportError>> {
        let this = self.clone();
        Box::pin(async move {
            let mut url = format!("{}{}", this.base, request.path);
            let method = match request.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
                Method::Delete => reqwest::Method::DELETE,
            };
            let mut builder;
            if request.method.params_in_query() {
                if !request.params.is_empty() {
                    url.push('?');
                    url.push_str(&form_encode(&request.params));
                }
                builder = this.client.request(method, &url);
            } else {
                builder = this
                    .client
                    .request(method, &url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form_encode(&request.params));
            }
            builder = builder
                .header(reqwest::header::AUTHORIZATION, this.auth.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            tracing::debug!(method = %request.method, path = %request.path, "proxmox api request");
            let response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                .or_else(|| response.status().canonical_reason().map(str::to_owned));
            let body = response.bytes().await.map_err(classify)?.to_vec();
            tracing::debug!(status, path = %request.path, "proxmox api response");
            Ok(ApiResponse {
                status,
                reason,
                body,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_reserved() {
        let p = vec![
            ("net0".to_owned(), "name=eth0,bridge=vmbr0".to_owned()),
            ("description".to_owned(), "a b&c/ü".to_owned()),
        ];
        assert_eq!(
            form_encode(&p),
            "net0=name%3Deth0%2Cbridge%3Dvmbr0&description=a%20b%26c%2F%C3%BC"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = ApiToken::new("a@pve!tk", "very-secret").unwrap();
        let tls = crate::tls::client_config(&crate::TlsMode::Insecure).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        let t = HttpTransport::with_client(client, "https://pve:8006", &token).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(dbg.contains("a@pve!tk"));
    }
}
