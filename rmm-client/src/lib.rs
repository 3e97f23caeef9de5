//! # rmm-client
//!
//! A typed async client for the `rmm-server` HTTP API (SPEC §2): log in (or
//! reuse a token), list agents, submit commands, poll them, `run_and_wait`,
//! cancel, and create enrollment bundles. Errors carry the server's JSON
//! error body (`error` code, `message`) and HTTP status, classified by
//! [`ErrorKind`] so callers (and the Python/Node bindings) can map them to
//! their own exception types.
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
//! shares types with the server only through `rmm-core`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

pub use rmm_core::protocol::{CommandContext, CommandType};

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
        match self {
            Error::Api { status, .. } => match status {
                400 | 422 => ErrorKind::BadRequest,
                401 => ErrorKind::Auth,
                403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                413 => ErrorKind::TooLarge,
                429 => ErrorKind::RateLimited,
                _ => ErrorKind::Server,
            },
            Error::Transport(_) => ErrorKind::Transport,
            Error::Decode(_) => ErrorKind::Server,
            Error::WaitTimeout { .. } => ErrorKind::Timeout,
            Error::InvalidUrl { .. } => ErrorKind::InvalidUrl,
            Error::NoToken => ErrorKind::Auth,
        }
    }

    /// The human-readable text: the server's `message` for API errors, the
    /// display text otherwise.
    pub fn message(&self) -> String {
        match self {
            Error::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The machine code: the server's `error` field for API errors, a fixed
    /// word otherwise (`transport`, `decode`, `timeout`, `invalid_url`,
    /// `unauthorized`).
    pub fn code(&self) -> &str {
        match self {
            Error::Api { code, .. } => code,
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

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An agent as `GET /api/agents` lists it. Descriptive fields are empty
/// until the agent first connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id.
    pub id: Uuid,
    /// The name it was enrolled under (a DNS label).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Host name.
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    /// Operating system.
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    /// CPU architecture.
    #[serde(default, deserialize_with = "null_default")]
    pub arch: String,
    /// Agent build version.
    #[serde(default, deserialize_with = "null_default")]
    pub agent_version: String,
    /// Release channel (`stable` / `beta`).
    #[serde(default, deserialize_with = "null_default")]
    pub channel: String,
    /// `online` or `offline`.
    pub status: String,
    /// When the agent was last heard from.
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    /// The machine identity hash.
    #[serde(default)]
    pub machine_uid: Option<String>,
    /// The address the agent enrolled or connected from.
    #[serde(default)]
    pub address: Option<String>,
}

impl Agent {
    /// Whether the agent is connected now.
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
}

/// The longest command timeout the server accepts, in seconds (7 days); it
/// refuses 0 too (`invalid_timeout`). Callers that take a timeout from
/// users check it against this before submitting.
pub use rmm_core::protocol::MAX_COMMAND_TIMEOUT_SECS;

/// A command to submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRequest {
    /// Interpreter.
    pub command_type: CommandType,
    /// Script text.
    pub command: String,
    /// Security context.
    pub context: CommandContext,
    /// Timeout in seconds, 1 to [`MAX_COMMAND_TIMEOUT_SECS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

impl CommandRequest {
    /// A `shell` command in the `system` context with no timeout.
    pub fn shell(command: impl Into<String>) -> Self {
        CommandRequest {
            command_type: CommandType::Shell,
            command: command.into(),
            context: CommandContext::System,
            timeout_secs: None,
        }
    }
}

/// A command and its result, as `GET /api/commands/:id` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The command's id.
    pub id: Uuid,
    /// The agent it runs on.
    pub agent_id: Uuid,
    /// Interpreter.
    pub command_type: CommandType,
    /// Script text (empty in [`Client::agent_commands`] listings, which
    /// omit it).
    #[serde(default, deserialize_with = "null_default")]
    pub command_text: String,
    /// Security context (`system` or `user_session`).
    #[serde(default)]
    pub context: Option<CommandContext>,
    /// The timeout the command was submitted with, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// `running` until final, then `completed`, `failed`, `timeout` or
    /// `cancelled`.
    pub status: String,
    /// `queued`, `delivered`, `executing` or `done`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Exit code, once the process ended normally.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Captured stdout (capped by the server; empty in listings).
    #[serde(default, deserialize_with = "null_default")]
    pub stdout: String,
    /// Captured stderr (capped by the server; empty in listings).
    #[serde(default, deserialize_with = "null_default")]
    pub stderr: String,
    /// stdout was cut at the cap.
    #[serde(default, deserialize_with = "null_default")]
    pub stdout_truncated: bool,
    /// stderr was cut at the cap.
    #[serde(default, deserialize_with = "null_default")]
    pub stderr_truncated: bool,
    /// Why the command failed outside its process, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Who submitted it.
    #[serde(default, deserialize_with = "null_default")]
    pub created_by: String,
    /// When the server accepted it.
    pub created_at: DateTime<Utc>,
    /// When it was first sent to the agent.
    #[serde(default)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the agent started it.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final status.
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    /// When a cancel was requested, if one was.
    #[serde(default)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

impl CommandInfo {
    /// Whether the command reached a final status.
    pub fn is_final(&self) -> bool {
        self.status != "running"
    }

    /// Whether the command completed with exit code 0.
    pub fn is_success(&self) -> bool {
        self.status == "completed" && self.exit_code == Some(0)
    }
}

/// One page of [`Client::agent_commands`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandPage {
    /// At most this many (1..=500; the server's default is 50).
    pub limit: Option<u32>,
    /// Only commands older than this command (the last id of the previous
    /// page).
    pub before: Option<Uuid>,
}

/// An enrollment bundle, as `POST /api/v1/enroll-bundle` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentBundle {
    /// The one-time token.
    pub token: String,
    /// The one-line install command.
    pub command: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The id the agent will have.
    pub agent_id: Uuid,
}

/// Options of [`Client::create_enrollment_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentOptions {
    /// The URL the agent connects to (default: the server's public URL).
    pub server_url: Option<String>,
    /// Release channel, `stable` (the default) or `beta`.
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
    /// The first poll interval of the default options.
    pub const DEFAULT_INITIAL_INTERVAL: Duration = Duration::from_millis(20);
    /// The largest poll interval of the default options: a command that
    /// ends is seen within half a second.
    pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_millis(500);

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

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
struct CommandIdBody {
    command_id: Uuid,
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
        let body = serde_json::json!({"email": email, "password": password});
        let resp = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&body)
            .send()
            .await
            .map_err(Error::Transport)?;
        let TokenBody { token } = decode(resp).await?;
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
    /// output (fetch one with [`Client::command`] for those).
    pub async fn agent_commands(
        &self,
        agent_id: Uuid,
        page: CommandPage,
    ) -> Result<Vec<CommandInfo>, Error> {
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

    /// Submits a command; returns its id once the server stored it.
    pub async fn submit(&self, agent_id: Uuid, req: &CommandRequest) -> Result<Uuid, Error> {
        let CommandIdBody { command_id } = self
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
    /// that is not a DNS label is [`ErrorKind::BadRequest`], a name already
    /// enrolled [`ErrorKind::Conflict`].
    pub async fn create_enrollment_with(
        &self,
        agent_name: &str,
        opts: &EnrollmentOptions,
    ) -> Result<EnrollmentBundle, Error> {
        let mut body = serde_json::json!({ "agent_name": agent_name });
        if let Some(url) = &opts.server_url {
            body["server_url"] = url.as_str().into();
        }
        if let Some(channel) = &opts.channel {
            body["channel"] = channel.as_str().into();
        }
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
        Ok(b) => (b.error, b.message),
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
}
