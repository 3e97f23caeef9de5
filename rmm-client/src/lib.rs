//! # rmm-client
//!
//! A typed async client for the `rmm-server` HTTP API (SPEC §2): log in (or
//! reuse a token), list agents, submit commands, poll them, `run_and_wait`,
//! cancel, and create enrollment bundles. Errors carry the server's JSON
//! error body (`error` code, `message`) and HTTP status, classified by
//! [`ErrorKind`] so callers (and the Python/Node bindings) can map them to
//! their own exception types.
//!
//! The requests and answers are the API contract's types (`rmm_api`,
//! re-exported here, also as [`api`]; [`Agent`], [`CommandInfo`] and
//! [`EnrollmentBundle`] are its views under this crate's names). A request
//! is checked against the contract's rules before it is sent: a request
//! the server would refuse fails with the same code, status and message
//! ([`Error::Invalid`]) without a round trip.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rmm_client::Error> {
//! use rmm_client::{Client, CommandRequest, WaitOptions};
//!
//! let client = Client::new("http://127.0.0.1:3001")?;
//! client.login("admin@example.com", "correct horse battery staple").await?;
//! for agent in client.agents().await? {
//!     let result = client
//!         .run_and_wait(agent.id, &CommandRequest::shell("uptime"), WaitOptions::default())
//!         .await?;
//!     println!("{}: {:?} {}", agent.hostname, result.exit_code, result.stdout);
//! }
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: this crate only speaks the public HTTP API; it
//! shares types with the server only through `rmm-api` (the contract) and
//! `rmm-core`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmm_api::{CommandAccepted, EnrollRequest, ErrorBody, LoginRequest, TokenResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The API contract: every request, answer and enum, with its rules.
pub use rmm_api as api;
/// An agent as `GET /api/agents` lists it.
pub use rmm_api::AgentView as Agent;
/// A command and its result, as `GET /api/commands/:id` returns it.
pub use rmm_api::CommandView as CommandInfo;
/// An enrollment bundle, as `POST /api/v1/enroll-bundle` returns it.
pub use rmm_api::EnrollResponse as EnrollmentBundle;
pub use rmm_api::{
    AgentStatus, Channel, CommandContext, CommandPage, CommandRequest, CommandRequestBuilder,
    CommandStatus, CommandType, DetailText, Invalid, Phase,
};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status and a JSON error body.
    #[error("{message} (http {status}, {code})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The machine code from the body's `error` field.
        code: String,
        /// The human text from the body's `message` field.
        message: String,
    },
    /// The server could not be reached or the connection failed.
    #[error("cannot reach the server: {}", error_chain(.0))]
    Transport(#[source] reqwest::Error),
    /// The server's answer was not what the API promises.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
    /// [`Client::wait`] gave up before the command reached a final status.
    #[error("command {command_id} was still running after {waited:?}")]
    WaitTimeout {
        /// The command.
        command_id: Uuid,
        /// How long the client waited.
        waited: Duration,
    },
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid server url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A call needs a token but there is none: log in first or pass one.
    #[error("not logged in: call login() or pass a token")]
    NoToken,
    /// The request breaks a rule of the API ([`rmm_api`]), so it was not
    /// sent: the status, code and message are those the server would
    /// answer with.
    #[error("{} ({}, checked before sending)", .0.message, .0.code)]
    Invalid(#[from] rmm_api::Invalid),
}

/// A coarse classification of [`Error`], for mapping to exception types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400 / 422: the request was malformed or unusable.
    BadRequest,
    /// 401 or no token: credentials missing, expired or wrong.
    Auth,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: no such object.
    NotFound,
    /// 409: conflict (name taken, session already open).
    Conflict,
    /// 413: request body too large.
    TooLarge,
    /// 429: rate limited.
    RateLimited,
    /// A wait deadline passed.
    Timeout,
    /// 5xx, or an answer that does not fit the API.
    Server,
    /// The server could not be reached.
    Transport,
    /// A bad base URL.
    InvalidUrl,
}

impl Error {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        let of_status = |status| match status {
            400 | 422 => ErrorKind::BadRequest,
            401 => ErrorKind::Auth,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::RateLimited,
            _ => ErrorKind::Server,
        };
        match self {
            Error::Api { status, .. } => of_status(*status),
            Error::Invalid(e) => of_status(e.status),
            Error::Transport(_) => ErrorKind::Transport,
            Error::Decode(_) => ErrorKind::Server,
            Error::WaitTimeout { .. } => ErrorKind::Timeout,
            Error::InvalidUrl { .. } => ErrorKind::InvalidUrl,
            Error::NoToken => ErrorKind::Auth,
        }
    }

    /// The human-readable text: the server's `message` for API errors (and
    /// the one it would send for [`Error::Invalid`]), the display text
    /// otherwise.
    pub fn message(&self) -> String {
        match self {
            Error::Api { message, .. } => message.clone(),
            Error::Invalid(e) => e.message.clone(),
            other => other.to_string(),
        }
    }

    /// The HTTP status, for API errors (and the one the server would answer
    /// with, for [`Error::Invalid`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Invalid(e) => Some(e.status),
            _ => None,
        }
    }

    /// The machine code: the server's `error` field for API errors (and the
    /// one it would send for [`Error::Invalid`]), a fixed word otherwise
    /// (`transport`, `decode`, `timeout`, `invalid_url`, `unauthorized`).
    pub fn code(&self) -> &str {
        match self {
            Error::Api { code, .. } => code,
            Error::Invalid(e) => e.code,
            Error::Transport(_) => "transport",
            Error::Decode(_) => "decode",
            Error::WaitTimeout { .. } => "timeout",
            Error::InvalidUrl { .. } => "invalid_url",
            Error::NoToken => "unauthorized",
        }
    }
}

/// `error: cause: cause`, so "connection refused" is not hidden behind
/// "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The longest command timeout the server accepts, in seconds (7 days); it
/// refuses 0 too (`invalid_timeout`). [`Client::submit`] checks it before
/// sending ([`CommandRequest::validate`]).
pub use rmm_core::protocol::MAX_COMMAND_TIMEOUT_SECS;

/// Options of [`Client::create_enrollment_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentOptions {
    /// The URL the agent connects to (default: the server's public URL).
    pub server_url: Option<String>,
    /// Release channel, `stable` (the default) or `beta`; another word is
    /// refused before sending (400 `invalid_body`, as the server would).
    pub channel: Option<String>,
}

/// How [`Client::wait`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long (`None`: wait as long as it takes).
    pub timeout: Option<Duration>,
    /// The first poll interval; it doubles up to `max_interval`.
    pub initial_interval: Duration,
    /// The largest poll interval.
    pub max_interval: Duration,
}

impl WaitOptions {
    /// The first poll interval of the default options
    /// ([`rmm_api::WAIT_INITIAL_INTERVAL`]).
    pub const DEFAULT_INITIAL_INTERVAL: Duration = rmm_api::WAIT_INITIAL_INTERVAL;
    /// The largest poll interval of the default options
    /// ([`rmm_api::WAIT_MAX_INTERVAL`]): a command that ends is seen within
    /// half a second.
    pub const DEFAULT_MAX_INTERVAL: Duration = rmm_api::WAIT_MAX_INTERVAL;

    /// The default polling, giving up after `timeout` (`None`: never).
    pub fn with_timeout(timeout: Option<Duration>) -> Self {
        WaitOptions {
            timeout,
            ..WaitOptions::default()
        }
    }
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: None,
            initial_interval: WaitOptions::DEFAULT_INITIAL_INTERVAL,
            max_interval: WaitOptions::DEFAULT_MAX_INTERVAL,
        }
    }
}

/// A client for one rmm-server. Cheap to clone; clones share the token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Arc<RwLock<Option<String>>>,
}

impl Client {
    /// A client for the server at `base_url` (`http://host:3001`), trusting
    /// the webpki root certificates for `https`.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/').to_owned();
        let bad = |reason: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| bad("it must start with http:// or https://"))?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(bad("it must be scheme://host[:port][/prefix]"));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&format!("tls setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            base,
            http,
            token: Arc::new(RwLock::new(None)),
        })
    }

    /// Uses `token` (a JWT from an earlier login) for every call.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.set_token(Some(token.into()));
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The current token, if any.
    pub fn token(&self) -> Option<String> {
        self.token.read().map(|t| t.clone()).unwrap_or_default()
    }

    fn set_token(&self, token: Option<String>) {
        if let Ok(mut t) = self.token.write() {
            *t = token;
        }
    }

    /// Logs in and keeps the token for later calls; returns the token.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, Error> {
        let body = LoginRequest::new(email, password);
        body.login_name()?;
        let resp = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&body)
            .send()
            .await
            .map_err(Error::Transport)?;
        let TokenResponse { token, .. } = decode(resp).await?;
        self.set_token(Some(token.clone()));
        Ok(token)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, Error> {
        let token = self.token().ok_or(Error::NoToken)?;
        Ok(req.bearer_auth(token))
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, Error> {
        let req = self.authed(self.http.get(format!("{}{path}", self.base)))?;
        decode(req.send().await.map_err(Error::Transport)?).await
    }

    async fn post<B: Serialize, T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let req = self.authed(self.http.post(format!("{}{path}", self.base)))?;
        decode(req.json(body).send().await.map_err(Error::Transport)?).await
    }

    /// Every agent.
    pub async fn agents(&self) -> Result<Vec<Agent>, Error> {
        self.get("/api/agents").await
    }

    /// One agent.
    pub async fn agent(&self, agent_id: Uuid) -> Result<Agent, Error> {
        self.get(&format!("/api/agents/{agent_id}")).await
    }

    /// A page of an agent's commands, newest first, without script text and
    /// output (fetch one with [`Client::command`] for those). A `limit` out
    /// of [`CommandPage::LIMIT`] is refused before sending.
    pub async fn agent_commands(
        &self,
        agent_id: Uuid,
        page: CommandPage,
    ) -> Result<Vec<CommandInfo>, Error> {
        page.checked_limit()?;
        let mut query = Vec::new();
        if let Some(limit) = page.limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(before) = page.before {
            query.push(format!("before={before}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get(&format!("/api/agents/{agent_id}/commands{query}"))
            .await
    }

    /// Submits a command; returns its id once the server stored it. A
    /// request that breaks the rules ([`CommandRequest::validate`]) is
    /// refused before sending.
    pub async fn submit(&self, agent_id: Uuid, req: &CommandRequest) -> Result<Uuid, Error> {
        req.validate()?;
        let CommandAccepted { command_id, .. } = self
            .post(&format!("/api/agents/{agent_id}/command"), req)
            .await?;
        Ok(command_id)
    }

    /// A command's current state.
    pub async fn command(&self, command_id: Uuid) -> Result<CommandInfo, Error> {
        self.get(&format!("/api/commands/{command_id}")).await
    }

    /// Asks the server to cancel a command and returns its state right
    /// after the request: `cancelled` at once for a command the agent did
    /// not get yet, else still `running` until the agent reports (wait for
    /// it with [`Client::wait`]). A command that is already final is a
    /// [`ErrorKind::Conflict`].
    pub async fn cancel(&self, command_id: Uuid) -> Result<CommandInfo, Error> {
        self.post(
            &format!("/api/commands/{command_id}/cancel"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Polls a command until it reaches a final status, with doubling
    /// intervals, or until `opts.timeout` passes ([`Error::WaitTimeout`]).
    pub async fn wait(&self, command_id: Uuid, opts: WaitOptions) -> Result<CommandInfo, Error> {
        let start = tokio::time::Instant::now();
        let mut interval = opts.initial_interval.max(Duration::from_millis(1));
        loop {
            let info = self.command(command_id).await?;
            if info.is_final() {
                return Ok(info);
            }
            let mut sleep = interval;
            if let Some(limit) = opts.timeout {
                let waited = start.elapsed();
                if waited >= limit {
                    return Err(Error::WaitTimeout { command_id, waited });
                }
                sleep = sleep.min(limit - waited);
            }
            tokio::time::sleep(sleep).await;
            interval = (interval * 2).min(opts.max_interval.max(interval));
        }
    }

    /// Submits a command and waits for its final state.
    pub async fn run_and_wait(
        &self,
        agent_id: Uuid,
        req: &CommandRequest,
        opts: WaitOptions,
    ) -> Result<CommandInfo, Error> {
        let id = self.submit(agent_id, req).await?;
        self.wait(id, opts).await
    }

    /// Creates an enrollment bundle for a new agent (admin only) on the
    /// stable channel; `server_url` is the URL the agent will connect to
    /// (default: the server's public URL).
    pub async fn create_enrollment(
        &self,
        agent_name: &str,
        server_url: Option<&str>,
    ) -> Result<EnrollmentBundle, Error> {
        let opts = EnrollmentOptions {
            server_url: server_url.map(str::to_owned),
            channel: None,
        };
        self.create_enrollment_with(agent_name, &opts).await
    }

    /// Creates an enrollment bundle with every option (admin only). A name
    /// that is not a DNS label is [`ErrorKind::BadRequest`] (refused before
    /// sending, as a malformed server URL or channel), a name already
    /// enrolled [`ErrorKind::Conflict`].
    pub async fn create_enrollment_with(
        &self,
        agent_name: &str,
        opts: &EnrollmentOptions,
    ) -> Result<EnrollmentBundle, Error> {
        let channel = opts
            .channel
            .as_deref()
            .map(rmm_api::parse_channel)
            .transpose()?;
        let body = EnrollRequest::new(agent_name)
            .server_url(opts.server_url.clone())
            .channel(channel);
        body.validate()?;
        self.post("/api/v1/enroll-bundle", &body).await
    }
}

/// Turns a response into `T`, or into [`Error::Api`] from the JSON error body.
async fn decode<T: for<'de> Deserialize<'de>>(resp: reqwest::Response) -> Result<T, Error> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(Error::Transport)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            Error::Decode(format!(
                "{e} in {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        });
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { error, message, .. }) => (error, message),
        Err(_) => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
        ),
    };
    Err(Error::Api {
        status: status.as_u16(),
        code,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_validated() {
        assert!(Client::new("http://127.0.0.1:3001/").is_ok());
        assert!(Client::new("https://rmm.example.com").is_ok());
        for bad in ["127.0.0.1:3001", "ftp://x", "http://", "http://a b"] {
            let err = Client::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{bad}");
        }
    }

    #[test]
    fn error_kinds_follow_status() {
        let api = |status| Error::Api {
            status,
            code: "x".into(),
            message: String::new(),
        };
        assert_eq!(api(401).kind(), ErrorKind::Auth);
        assert_eq!(api(404).kind(), ErrorKind::NotFound);
        assert_eq!(api(409).kind(), ErrorKind::Conflict);
        assert_eq!(api(422).kind(), ErrorKind::BadRequest);
        assert_eq!(api(503).kind(), ErrorKind::Server);
        assert_eq!(Error::NoToken.kind(), ErrorKind::Auth);
    }

    #[test]
    fn command_info_tolerates_nulls_and_extra_fields() {
        let json = r#"{"id":"0a0a0a0a-0000-4000-8000-000000000001","agent_id":"0a0a0a0a-0000-4000-8000-000000000002",
            "command_type":"bash","command_text":"true","status":"running","phase":"queued","exit_code":null,
            "stdout":null,"stderr":"","created_at":"2026-11-23T18:00:00Z","started_at":null,"completed_at":null,"new":1}"#;
        let info: CommandInfo = serde_json::from_str(json).unwrap();
        assert!(!info.is_final());
        assert_eq!(info.stdout, "");
        assert_eq!(info.command_type, CommandType::Bash);
    }

    #[test]
    fn wait_options_with_timeout_keep_the_default_polling() {
        let d = WaitOptions::default();
        assert_eq!(d.timeout, None);
        let w = WaitOptions::with_timeout(Some(Duration::from_secs(3)));
        assert_eq!(w.timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            (w.initial_interval, w.max_interval),
            (d.initial_interval, d.max_interval)
        );
        assert!(d.initial_interval <= d.max_interval);
    }

    #[tokio::test]
    async fn calls_without_token_fail_before_sending() {
        let c = Client::new("http://127.0.0.1:9").unwrap();
        assert!(matches!(c.agents().await, Err(Error::NoToken)));
    }

    /// Nothing listens on port 9: an answer other than a transport error
    /// was decided before sending, with the server's status and code.
    #[tokio::test]
    async fn requests_that_break_the_rules_fail_before_sending() {
        let c = Client::new("http://127.0.0.1:9").unwrap().with_token("t");
        let id = Uuid::nil();
        let check = |e: Error, status: u16, code: &str, message: &str| {
            assert_eq!(
                (e.kind(), e.status(), e.code(), e.message()),
                (
                    ErrorKind::BadRequest,
                    Some(status),
                    code,
                    message.to_owned()
                )
            );
            assert_eq!(
                e.to_string(),
                format!("{message} ({code}, checked before sending)")
            );
        };
        let e = c
            .submit(id, &CommandRequest::shell(" \n"))
            .await
            .unwrap_err();
        check(e, 422, "invalid_command", "command is empty");
        let mut long = CommandRequest::shell("true");
        long.timeout_secs = Some(MAX_COMMAND_TIMEOUT_SECS + 1);
        let e = c.run_and_wait(id, &long, WaitOptions::default()).await;
        let message = "timeout_secs must be between 1 and 604800";
        check(e.unwrap_err(), 422, "invalid_timeout", message);
        let e = c.agent_commands(id, CommandPage::new(Some(0), None)).await;
        let message = "limit must be between 1 and 500";
        check(e.unwrap_err(), 400, "invalid_query", message);
        let e = c.create_enrollment("Not A Label", None).await.unwrap_err();
        let message = "agent_name must match ^[a-z0-9][a-z0-9-]{0,62}$";
        check(e, 422, "invalid_agent_name", message);
        let opts = EnrollmentOptions {
            server_url: None,
            channel: Some("nightly".into()),
        };
        let e = c.create_enrollment_with("a", &opts).await.unwrap_err();
        let message = "channel: unknown channel `nightly` (expected stable or beta)";
        check(e, 400, "invalid_body", message);
        let e = c.login("a\u{7}@b", "pw").await.unwrap_err();
        let message = "the email contains control characters";
        check(e, 422, "invalid_credentials_format", message);
        // a valid request is sent
        let e = c
            .submit(id, &CommandRequest::shell("true"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    }
}
