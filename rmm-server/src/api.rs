//! The HTTP API (SPEC §2): routes, handlers, and the extractors that turn
//! every malformed input into a typed JSON error.
//!
//! Status decisions:
//! - 400: the body is not JSON (`invalid_json`), JSON of the wrong shape
//!   (missing field, wrong type, unknown enum word: `invalid_body`), a
//!   path id that is not a UUID (`invalid_id`), a bad query string
//!   (`invalid_query`).
//! - 422: well-formed but unusable values: an empty command, a timeout of
//!   0 or over 7 days, an agent name that is not a DNS label, a server URL
//!   that is not http(s), a password shorter than 8 characters.
//! - 401: no, garbage, expired, `alg: none` or otherwise invalid token, an
//!   `Agent` credential on a user route, wrong login.
//! - 403: authenticated, role too low. 404: unknown object or route.
//! - 409: name or e-mail taken, cancelling a finished command.
//! - 413: body over the limit. 429: login throttled (`Retry-After`).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, extract::DefaultBodyLimit};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rmm_core::protocol::{CommandContext, CommandRef, CommandType, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{AuthUser, hash_password, random_token, sha256_hex, verify_password};
use crate::client_addr::ClientIp;
use crate::enroll;
use crate::error::{ApiError, ErrorBody, public_detail};
use crate::openapi;
use crate::store::{
    Agent, CancelOutcome, Command, CommandStatus, NewAudit, NewCommand, Phase, Role, User,
    UserChange,
};
use crate::{AppState, now_ms};

// ---------------------------------------------------------------- extractors

/// A JSON body. Any content type is accepted (curl users forget the
/// header); errors become 400/413 JSON errors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(state.config.body_limit)
                } else {
                    ApiError::bad_request("invalid_body", e.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "invalid_json",
                "the request body is empty, expected a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => {
                    ApiError::bad_request("invalid_body", public_detail(&e.to_string()))
                }
                _ => ApiError::bad_request(
                    "invalid_json",
                    format!(
                        "the body is not valid JSON: {}",
                        public_detail(&e.to_string())
                    ),
                ),
            }
        })
    }
}

/// A path parameter; a value that does not parse (a bad UUID) is a 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(
                    "invalid_id",
                    format!("invalid path parameter: {}", public_detail(&e.body_text())),
                )
            })
    }
}

/// A query string; errors are 400 `invalid_query`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request("invalid_query", public_detail(&e.body_text()))
            })
    }
}

// ---------------------------------------------------------------- views

fn ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ts_opt(ms: Option<i64>) -> Option<String> {
    ms.map(ts)
}

/// An agent as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Agent)]
pub struct AgentView {
    /// Id.
    pub id: Uuid,
    /// Enrollment name.
    pub name: String,
    /// Host name (empty until the agent first connects).
    pub hostname: String,
    /// OS.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Agent build version.
    pub agent_version: String,
    /// Release channel.
    #[schema(value_type = ChannelWord)]
    pub channel: String,
    /// Connected now or not.
    pub status: AgentStatus,
    /// Last time heard from (RFC 3339), or null.
    pub last_seen: Option<String>,
    /// Machine identity hash.
    pub machine_uid: Option<String>,
    /// Address it enrolled or last connected from.
    pub address: Option<String>,
    /// Whether the enrollment payload was taken.
    pub enrolled: bool,
    /// Creation time.
    pub created_at: String,
    /// Set when the agent was deleted or replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// The agent that replaced this one (identity dedup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<Uuid>,
}

impl AgentView {
    fn new(a: Agent, state: &AppState) -> Self {
        let window = state.config.online_window_ms();
        let online = a.online
            && a.retired_at.is_none()
            && a.last_seen.is_some_and(|t| now_ms() - t <= window);
        AgentView {
            id: a.id,
            name: a.name,
            hostname: a.hostname,
            os: a.os,
            arch: a.arch,
            agent_version: a.agent_version,
            channel: a.channel,
            status: if online {
                AgentStatus::Online
            } else {
                AgentStatus::Offline
            },
            last_seen: ts_opt(a.last_seen),
            machine_uid: a.machine_uid,
            address: a.address,
            enrolled: a.enrolled_at.is_some(),
            created_at: ts(a.created_at),
            retired_at: ts_opt(a.retired_at),
            replaced_by: a.replaced_by,
        }
    }
}

/// Whether an agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Connected and heard from within the heartbeat window.
    Online,
    /// Not connected, silent, not enrolled yet, or retired.
    Offline,
}

/// A command and its result.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Command)]
pub struct CommandView {
    /// Id.
    pub id: Uuid,
    /// Target agent.
    pub agent_id: Uuid,
    /// Interpreter.
    #[schema(schema_with = openapi::command_type)]
    pub command_type: String,
    /// The script text (omitted in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_text: Option<String>,
    /// Security context.
    #[schema(schema_with = openapi::command_context)]
    pub context: String,
    /// Timeout, if any.
    pub timeout_secs: Option<u32>,
    /// `running` until final, then `completed`, `failed`, `timeout`, `cancelled`.
    pub status: CommandStatus,
    /// `queued`, `delivered`, `executing` or `done`.
    pub phase: Phase,
    /// Exit code once the process exited, else null.
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Failure outside the process (no user session, interpreter missing).
    pub error: Option<String>,
    /// Captured stdout (omitted in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Captured stderr (omitted in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Bytes of stdout received.
    pub stdout_bytes: u64,
    /// Bytes of stderr received.
    pub stderr_bytes: u64,
    /// stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// stderr was cut at the cap.
    pub stderr_truncated: bool,
    /// Who submitted it.
    pub created_by: String,
    /// Accepted.
    pub created_at: String,
    /// First sent to the agent.
    pub delivered_at: Option<String>,
    /// Started on the agent.
    pub started_at: Option<String>,
    /// Reached a final status.
    pub completed_at: Option<String>,
    /// Cancellation requested.
    pub cancel_requested_at: Option<String>,
}

impl CommandView {
    fn new(c: Command, full: bool) -> Self {
        CommandView {
            id: c.id,
            agent_id: c.agent_id,
            command_type: c.command_type.as_str().to_owned(),
            command_text: full.then_some(c.command_text),
            context: c.context.as_str().to_owned(),
            timeout_secs: c.timeout_secs,
            status: c.status,
            phase: c.phase,
            exit_code: c.exit_code,
            signal: c.signal,
            error: c.error,
            stdout: full.then_some(c.stdout),
            stderr: full.then_some(c.stderr),
            stdout_bytes: c.stdout_len,
            stderr_bytes: c.stderr_len,
            stdout_truncated: c.stdout_truncated,
            stderr_truncated: c.stderr_truncated,
            created_by: c.created_by,
            created_at: ts(c.created_at),
            delivered_at: ts_opt(c.delivered_at),
            started_at: ts_opt(c.started_at),
            completed_at: ts_opt(c.completed_at),
            cancel_requested_at: ts_opt(c.cancel_requested_at),
        }
    }
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// Id.
    pub id: Uuid,
    /// E-mail.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// A disabled user cannot log in and has no sessions.
    pub disabled: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            role: u.role,
            created_at: ts(u.created_at),
            updated_at: ts(u.updated_at),
            disabled: u.disabled_at.is_some(),
        }
    }
}

/// An audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Sequence number (use as `before` to page).
    pub id: i64,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

// ---------------------------------------------------------------- requests
//
// The limits below are what the handlers enforce; the `#[schema]` and
// `#[param]` attributes state them in the OpenAPI description (literals:
// utoipa takes no constants there), and the `openapi` integration test
// checks the two agree.

/// Longest e-mail, in characters as sent (surrounding whitespace included).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Shortest password of a user, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest enrollment `server_url`, in characters as sent.
pub const MAX_SERVER_URL_CHARS: usize = 2048;
/// Longest `timeout_secs` of a command (7 days).
pub const MAX_TIMEOUT_SECS: u32 = rmm_core::protocol::MAX_COMMAND_TIMEOUT_SECS;
/// `limit` of `GET /api/agents/:id/commands`: bounds and default.
pub const COMMAND_PAGE_LIMIT: (u32, u32, u32) = (1, 500, 50);
/// `limit` of `GET /api/audit`: bounds and default.
pub const AUDIT_PAGE_LIMIT: (u32, u32, u32) = (1, 1000, 100);

/// `POST /api/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// E-mail (case-insensitive, surrounding whitespace ignored; no
    /// control characters inside).
    #[schema(schema_with = openapi::login_email)]
    pub email: String,
    /// Password.
    #[schema(max_length = 1024)]
    pub password: String,
}

/// A JWT.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// HS256 JWT, valid 24 h.
    pub token: String,
}

/// `POST /api/agents/:id/command`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CommandRequest {
    /// Interpreter.
    #[schema(schema_with = openapi::command_type)]
    pub command_type: CommandType,
    /// Script text (may be several MiB, within the body limit); not blank.
    #[schema(schema_with = openapi::not_blank)]
    pub command: String,
    /// Security context (default `system`).
    #[serde(default)]
    #[schema(schema_with = openapi::command_context)]
    pub context: CommandContext,
    /// Seconds before the agent kills it (null or absent: no limit).
    #[serde(default, deserialize_with = "integral_u32")]
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout_secs: Option<u32>,
}

/// An optional `u32` given as any JSON number that is an integer in JSON
/// Schema's sense: `30` and `30.0` alike (OpenAPI's `type: integer`
/// allows both).
fn integral_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let value = match n.as_u64() {
        Some(u) => u32::try_from(u).ok(),
        None => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u32),
    };
    value.map(Some).ok_or_else(|| {
        serde::de::Error::invalid_value(
            serde::de::Unexpected::Other(&n.to_string()),
            &"a non-negative integer",
        )
    })
}

/// The id of an accepted command.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// Id (the command is stored before this is returned).
    pub command_id: Uuid,
}

/// Paging of an agent's commands.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommandPage {
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only commands older than this command id.
    pub before: Option<Uuid>,
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditPage {
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only records with a smaller id.
    pub before: Option<i64>,
}

/// Release channel word.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChannelWord {
    /// Stable builds only.
    #[default]
    Stable,
    /// Newest builds.
    Beta,
}

/// `POST /api/v1/enroll-bundle`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EnrollRequest {
    /// A DNS label, unique among the agents that are not retired.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub agent_name: String,
    /// The URL the agent connects to (default: this server's public URL).
    /// Plain `http://` only to a loopback host unless the server runs with
    /// `--insecure-http`; the served description's pattern says which.
    #[serde(default)]
    #[schema(schema_with = openapi::server_url_strict)]
    pub server_url: Option<String>,
    /// Release channel (default `stable`).
    #[serde(default)]
    pub channel: Option<ChannelWord>,
}

/// An enrollment bundle.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollResponse {
    /// One-time token (256 bits, base64url).
    pub token: String,
    /// `curl -fsSL <server>/api/v1/enroll-bundle/<token>.sh | sudo bash`.
    pub command: String,
    /// Token expiry (RFC 3339).
    pub expires_at: String,
    /// The agent's id.
    pub agent_id: Uuid,
}

/// `POST /api/users`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserCreate {
    /// E-mail (login name): `name@domain`, stored lowercase, surrounding
    /// whitespace ignored.
    #[schema(schema_with = openapi::user_email)]
    pub email: String,
    /// Password.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Role.
    pub role: Role,
}

/// `PATCH /api/users/:id`: at least one of the fields, not null (the
/// description says so with one `anyOf` branch per field).
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserUpdate {
    /// New role.
    #[serde(default)]
    pub role: Option<Role>,
    /// New password.
    #[serde(default)]
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
    /// Disable (`true`: no login, sessions end) or enable the user.
    #[serde(default)]
    pub disabled: Option<bool>,
}

// ---------------------------------------------------------------- helpers

/// Appends an audit record; a failure is logged, never returned.
pub async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: Option<String>,
    address: Option<String>,
    detail: serde_json::Value,
) {
    let entry = NewAudit {
        at: now_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target,
        address,
        detail,
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, action, "cannot write audit record");
    }
}

/// Length in characters, the unit of OpenAPI's `minLength`/`maxLength`.
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A new user's e-mail as stored (trimmed, lowercase), or `None` unless it
/// is `name@domain` without whitespace or control characters, within
/// [`MAX_EMAIL_CHARS`] as sent ([`openapi::user_email_pattern`]).
fn user_email(raw: &str) -> Option<String> {
    if chars(raw) > MAX_EMAIL_CHARS {
        return None;
    }
    let email = raw.trim().to_lowercase();
    let ok = email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email)
}

fn check_password(pw: &str) -> Result<(), ApiError> {
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars(pw)) {
        return Err(ApiError::unprocessable(
            "weak_password",
            "the password must have 8 to 1024 characters",
        ));
    }
    Ok(())
}

/// A page's `limit` (`(min, max, default)`), 400 `invalid_query` when out
/// of range.
fn page_limit(limit: Option<u32>, (min, max, default): (u32, u32, u32)) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(min..=max).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between {min} and {max}"),
        ));
    }
    Ok(limit)
}

async fn hash_blocking(state: &AppState, pw: String) -> Result<String, ApiError> {
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify_blocking(state: &AppState, pw: String, hash: String) -> Result<bool, ApiError> {
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .map_err(ApiError::internal)
}

// ---------------------------------------------------------------- handlers

/// Logs in.
#[utoipa::path(post, path = "/api/auth/login", request_body = LoginRequest,
    responses(
        (status = 200, description = "logged in", body = TokenResponse),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: unknown e-mail or wrong password alike", body = ErrorBody),
        (status = 403, description = "`account_disabled` (said only after the right password)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_credentials_format`: too long, control characters", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed attempts of this client", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ip = client.to_string();
    if chars(&req.email) > MAX_EMAIL_CHARS || chars(&req.password) > MAX_PASSWORD_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_credentials_format",
            "email or password too long",
        ));
    }
    let email = req.email.trim().to_lowercase();
    if email.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_credentials_format",
            "the email contains control characters",
        ));
    }
    let now = Instant::now();
    if let Err(retry) = state.throttle.check(&ip, &email, now) {
        // aggregated: one row per client and minute (crate::audit)
        state.audit_gate.throttled(&ip, &email, now_ms());
        return Err(ApiError::rate_limited(retry));
    }
    let user = state.store.user_by_email(&email).await?;
    let ok = match &user {
        Some(u) => verify_blocking(&state, req.password, u.password_hash.clone()).await?,
        None => {
            // Same work for unknown accounts, so timing does not tell.
            verify_blocking(&state, req.password, crate::dummy_hash().to_owned()).await?;
            false
        }
    };
    match (ok, user) {
        (true, Some(u)) if u.disabled_at.is_some() => {
            state.throttle.success(&ip, &email);
            audit(
                &state,
                &email,
                "login.disabled",
                Some(u.id.to_string()),
                Some(ip),
                serde_json::json!({}),
            )
            .await;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "this account is disabled; ask an admin to enable it",
            ))
        }
        (true, Some(u)) => {
            state.throttle.success(&ip, &email);
            audit(
                &state,
                &email,
                "login.success",
                Some(u.id.to_string()),
                Some(ip),
                serde_json::json!({}),
            )
            .await;
            let token = state.jwt.issue(&u, now_ms() / 1000)?;
            Ok(Json(TokenResponse { token }))
        }
        (_, user) => {
            state.throttle.failure(&ip, &email, now);
            // An unauthenticated write: within the gate's budget, and the
            // typed e-mail only clipped (it names no account).
            if state.audit_gate.admit("login.failure", now_ms()) {
                let (actor, target, detail) = match &user {
                    Some(u) => (
                        u.email.clone(),
                        Some(u.id.to_string()),
                        serde_json::json!({}),
                    ),
                    None => (
                        "unknown-account".to_owned(),
                        None,
                        serde_json::json!({"email": crate::audit::clip_untrusted(&email)}),
                    ),
                };
                audit(&state, &actor, "login.failure", target, Some(ip), detail).await;
            }
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid email or password",
            ))
        }
    }
}

/// A serialized snapshot of `GET /api/agents`.
#[derive(Debug)]
struct Snapshot {
    built: Instant,
    generation: u64,
    body: Bytes,
}

/// The `GET /api/agents` snapshot cache.
///
/// Listing 10,000 agents means reading and serializing 10,000 rows (over
/// 100 ms with SQLite); dashboards poll this route. So the serialized list
/// is kept as a snapshot: a change this process makes or sees (hello,
/// disconnect, enrollment, retirement, dedup) invalidates it and the next
/// request rebuilds it; otherwise a snapshot older than
/// [`AgentListCache::MAX_AGE`] is served while one request rebuilds it in
/// the background (stale-while-revalidate). Changes made by other replicas
/// and the coalesced `last_seen` therefore show up within about a second.
/// The store stays the only authority; this is a cache.
#[derive(Debug, Default)]
pub struct AgentListCache {
    current: std::sync::RwLock<Option<Arc<Snapshot>>>,
    rebuild: tokio::sync::Mutex<()>,
    refreshing: std::sync::atomic::AtomicBool,
}

impl AgentListCache {
    /// Snapshots older than this are refreshed in the background.
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn rebuild(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
        let generation = state.hub.agents_generation();
        let built = Instant::now();
        let agents = state.store.list_agents().await?;
        let views: Vec<AgentView> = agents
            .into_iter()
            .map(|a| AgentView::new(a, state))
            .collect();
        let body = Bytes::from(serde_json::to_vec(&views).map_err(ApiError::internal)?);
        let snap = Arc::new(Snapshot {
            built,
            generation,
            body,
        });
        *state
            .agent_list
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        Ok(snap)
    }

    /// The serialized agent list.
    async fn get(state: &AppState) -> Result<Bytes, ApiError> {
        let cache = &state.agent_list;
        if let Some(s) = cache.current()
            && s.generation == state.hub.agents_generation()
        {
            if s.built.elapsed() > Self::MAX_AGE
                && !cache
                    .refreshing
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let st = state.clone();
                tokio::spawn(async move {
                    let _guard = st.agent_list.rebuild.lock().await;
                    if let Err(e) = Self::rebuild(&st).await {
                        tracing::warn!(error = %e.message, "agent list refresh failed");
                    }
                    st.agent_list
                        .refreshing
                        .store(false, std::sync::atomic::Ordering::Release);
                });
            }
            return Ok(s.body.clone());
        }
        let _guard = cache.rebuild.lock().await;
        if let Some(s) = cache.current()
            && s.generation == state.hub.agents_generation()
        {
            return Ok(s.body.clone());
        }
        Ok(Self::rebuild(state).await?.body.clone())
    }
}

/// Lists agents (a snapshot at most about a second old; see [`AgentListCache`]).
#[utoipa::path(get, path = "/api/agents", security(("bearer" = [])),
    responses(
        (status = 200, description = "the agents that are not retired, by name", body = [AgentView], links(
            ("agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/0/id")))),
            ("command" = (operation_id = "submit_command", parameters(("id" = "$response.body#/0/id")))),
            ("commands" = (operation_id = "list_commands", parameters(("id" = "$response.body#/0/id")))),
            ("inventory" = (operation_id = "agent_inventory", parameters(("id" = "$response.body#/0/id")))))),
        (status = 401, description = "`unauthorized`", body = ErrorBody)))]
pub async fn list_agents(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, ApiError> {
    user.require(Role::Readonly)?;
    let body = AgentListCache::get(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One agent.
#[utoipa::path(get, path = "/api/agents/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")),
    responses(
        (status = 200, description = "the agent (a retired one too, with `retired_at`)", body = AgentView, links(
            ("command" = (operation_id = "submit_command", parameters(("id" = "$response.body#/id")))),
            ("commands" = (operation_id = "list_commands", parameters(("id" = "$response.body#/id")))),
            ("inventory" = (operation_id = "agent_inventory", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn get_agent(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AgentView>, ApiError> {
    user.require(Role::Readonly)?;
    let agent = state
        .store
        .get_agent(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such agent"))?;
    Ok(Json(AgentView::new(agent, &state)))
}

/// Retires an agent: its credential is revoked and its connection closed;
/// its history stays.
#[utoipa::path(delete, path = "/api/agents/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")),
    responses(
        (status = 204, description = "retired (reads still show it, with `retired_at`)"),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 404, description = "`not_found` (also when already retired)", body = ErrorBody)))]
pub async fn delete_agent(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    if !state.store.retire_agent(id, now_ms()).await? {
        return Err(ApiError::not_found("no such agent"));
    }
    state.hub.agents_changed();
    state.hub.disconnect(id);
    audit(
        &state,
        &user.email,
        "agent.delete",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Submits a command.
#[utoipa::path(post, path = "/api/agents/{id}/command", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")), request_body = CommandRequest,
    responses(
        (status = 200, description = "stored; runs when the agent is connected", body = CommandAccepted, links(
            ("command" = (operation_id = "get_command", parameters(("id" = "$response.body#/command_id")))),
            ("cancel" = (operation_id = "cancel_command", parameters(("id" = "$response.body#/command_id")))))),
        (status = 400, description = "`invalid_id`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the technician role", body = ErrorBody),
        (status = 404, description = "`not_found`: no such agent, or retired", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_command` (blank), `invalid_timeout`", body = ErrorBody)))]
pub async fn submit_command(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(agent_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CommandRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    user.require(Role::Technician)?;
    if req.command.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_command",
            "command is empty",
        ));
    }
    if let Some(t) = req.timeout_secs
        && !(1..=MAX_TIMEOUT_SECS).contains(&t)
    {
        return Err(ApiError::unprocessable(
            "invalid_timeout",
            format!("timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"),
        ));
    }
    let agent = state.store.get_agent(agent_id).await?;
    if agent.is_none_or(|a| a.retired_at.is_some()) {
        return Err(ApiError::not_found("no such agent"));
    }
    let cmd = NewCommand {
        id: Uuid::new_v4(),
        agent_id,
        command_type: req.command_type,
        command_text: req.command,
        context: req.context,
        timeout_secs: req.timeout_secs,
        created_by: user.email.clone(),
        created_at: now_ms(),
    };
    state.store.insert_command(&cmd).await?;
    state.hub.kick(agent_id).await;
    audit(
        &state,
        &user.email,
        "command.submit",
        Some(cmd.id.to_string()),
        Some(client.to_string()),
        serde_json::json!({
            "agent_id": agent_id.to_string(),
            "command_type": cmd.command_type.as_str(),
            "context": cmd.context.as_str(),
            "bytes": cmd.command_text.len(),
        }),
    )
    .await;
    Ok(Json(CommandAccepted { command_id: cmd.id }))
}

/// One command with its output.
#[utoipa::path(get, path = "/api/commands/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "command id")),
    responses(
        (status = 200, description = "the command with its output", body = CommandView, links(
            ("agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/agent_id")))),
            ("cancel" = (operation_id = "cancel_command", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn get_command(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CommandView>, ApiError> {
    user.require(Role::Readonly)?;
    let cmd = state
        .store
        .get_command(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such command"))?;
    Ok(Json(CommandView::new(cmd, true)))
}

/// Cancels a command: a queued one is `cancelled` at once; one the agent
/// has gets a `cancel_command` and becomes `cancelled` when the agent
/// reports (or after the cancel grace period).
#[utoipa::path(post, path = "/api/commands/{id}/cancel", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "command id")),
    responses(
        (status = 202, description = "cancelled (queued) or cancellation sent to the agent", body = CommandView, links(
            ("command" = (operation_id = "get_command", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the technician role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the command is already final", body = ErrorBody)))]
pub async fn cancel_command(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<CommandView>), ApiError> {
    user.require(Role::Technician)?;
    let outcome = state.store.request_cancel(id, now_ms()).await?;
    match outcome {
        CancelOutcome::NotFound => return Err(ApiError::not_found("no such command")),
        CancelOutcome::AlreadyFinal(s) => {
            return Err(ApiError::conflict(format!(
                "the command is already final ({s})"
            )));
        }
        CancelOutcome::CancelledQueued | CancelOutcome::Requested => {}
    }
    let cmd = state
        .store
        .get_command(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such command"))?;
    if outcome == CancelOutcome::Requested {
        state.hub.kick(cmd.agent_id).await;
    } else {
        // It may be on the wire right now: tell the agent anyway.
        state.hub.try_send(
            cmd.agent_id,
            Message::CancelCommand(CommandRef { command_id: id }),
        );
    }
    audit(
        &state,
        &user.email,
        "command.cancel",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({"agent_id": cmd.agent_id.to_string(), "was_queued": outcome == CancelOutcome::CancelledQueued}),
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(CommandView::new(cmd, true))))
}

/// An agent's commands, newest first, without script text and output.
#[utoipa::path(get, path = "/api/agents/{id}/commands", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id"), CommandPage),
    responses(
        (status = 200, description = "newest first, without script text and output", body = [CommandView], links(
            ("command" = (operation_id = "get_command", parameters(("id" = "$response.body#/0/id")))),
            ("cancel" = (operation_id = "cancel_command", parameters(("id" = "$response.body#/0/id")))))),
        (status = 400, description = "`invalid_id`, `invalid_query` (also a `limit` out of range)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)))]
pub async fn list_commands(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(agent_id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<CommandPage>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    user.require(Role::Readonly)?;
    let limit = page_limit(page.limit, COMMAND_PAGE_LIMIT)?;
    if state.store.get_agent(agent_id).await?.is_none() {
        return Err(ApiError::not_found("no such agent"));
    }
    let cmds = state
        .store
        .list_commands(agent_id, page.before, limit)
        .await?;
    Ok(Json(
        cmds.into_iter()
            .map(|c| CommandView::new(c, false))
            .collect(),
    ))
}

/// One plugin's latest result on an agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryView {
    /// Plugin name.
    pub plugin: String,
    /// What it printed (JSON; `"unknown"` when it failed).
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When the agent collected it.
    pub collected_at: String,
    /// When the server received it.
    pub received_at: String,
}

/// An agent's plugin results (SPEC §8), by plugin name.
#[utoipa::path(get, path = "/api/agents/{id}/inventory", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")),
    responses(
        (status = 200, description = "the latest result of each plugin", body = [InventoryView]),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)))]
pub async fn agent_inventory(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(agent_id): ApiPath<Uuid>,
) -> Result<Json<Vec<InventoryView>>, ApiError> {
    user.require(Role::Readonly)?;
    if state.store.get_agent(agent_id).await?.is_none() {
        return Err(ApiError::not_found("no such agent"));
    }
    let items = state.store.list_inventory(agent_id).await?;
    Ok(Json(
        items
            .into_iter()
            .map(|i| InventoryView {
                plugin: i.plugin,
                result: i.result,
                error: i.error,
                collected_at: ts(i.collected_at),
                received_at: ts(i.received_at),
            })
            .collect(),
    ))
}

/// Lists users.
#[utoipa::path(get, path = "/api/users", security(("bearer" = [])),
    responses(
        (status = 200, description = "all users, by e-mail", body = [UserView]),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<UserView>>, ApiError> {
    user.require(Role::Admin)?;
    Ok(Json(
        state
            .store
            .list_users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/users", security(("bearer" = [])), request_body = UserCreate,
    responses(
        (status = 201, description = "created", body = UserView, links(
            ("update" = (operation_id = "update_user", parameters(("id" = "$response.body#/id")))),
            ("delete" = (operation_id = "delete_user", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 409, description = "`conflict`: the e-mail is taken", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_email`, `weak_password`", body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiJson(req): ApiJson<UserCreate>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    user.require(Role::Admin)?;
    let Some(email) = user_email(&req.email) else {
        return Err(ApiError::unprocessable(
            "invalid_email",
            "email must look like name@domain",
        ));
    };
    check_password(&req.password)?;
    let now = now_ms();
    let hash = hash_blocking(&state, req.password).await?;
    let new = User::new(&email, hash, req.role, now);
    state.store.create_user(&new).await?;
    audit(
        &state,
        &user.email,
        "user.create",
        Some(new.id.to_string()),
        Some(client.to_string()),
        serde_json::json!({"email": new.email, "role": new.role.as_str()}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(UserView::from(new))))
}

/// Changes a user's role or password.
#[utoipa::path(patch, path = "/api/users/{id}", security(("bearer" = [])), request_body = UserUpdate,
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, description = "changed; the user's sessions ended", body = UserView),
        (status = 400, description = "`invalid_id`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: disabling yourself", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`nothing_to_change`, `weak_password`", body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UserUpdate>,
) -> Result<Json<UserView>, ApiError> {
    user.require(Role::Admin)?;
    if req.role.is_none() && req.password.is_none() && req.disabled.is_none() {
        return Err(ApiError::unprocessable(
            "nothing_to_change",
            "give role, password and/or disabled",
        ));
    }
    if id == user.id && req.disabled == Some(true) {
        return Err(ApiError::conflict("you cannot disable your own account"));
    }
    let hash = match req.password {
        Some(pw) => {
            check_password(&pw)?;
            Some(hash_blocking(&state, pw).await?)
        }
        None => None,
    };
    let changed_password = hash.is_some();
    let change = UserChange {
        role: req.role,
        password_hash: hash,
        disabled: req.disabled,
    };
    if !state.store.update_user(id, change, now_ms()).await? {
        return Err(ApiError::not_found("no such user"));
    }
    audit(
        &state,
        &user.email,
        "user.update",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({
            "role": req.role.map(Role::as_str),
            "password_changed": changed_password,
            "disabled": req.disabled,
            "sessions_ended": true,
        }),
    )
    .await;
    let u = state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(UserView::from(u)))
}

/// Deletes a user (not yourself).
#[utoipa::path(delete, path = "/api/users/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: deleting yourself", body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    if id == user.id {
        return Err(ApiError::conflict("you cannot delete your own account"));
    }
    if !state.store.delete_user(id).await? {
        return Err(ApiError::not_found("no such user"));
    }
    audit(
        &state,
        &user.email,
        "user.delete",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads the audit log, newest first.
#[utoipa::path(get, path = "/api/audit", security(("bearer" = [])), params(AuditPage),
    responses(
        (status = 200, description = "newest first", body = [AuditView]),
        (status = 400, description = "`invalid_query` (also a `limit` out of range)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(page): ApiQuery<AuditPage>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    user.require(Role::Admin)?;
    let limit = page_limit(page.limit, AUDIT_PAGE_LIMIT)?;
    let rows = state.store.list_audit(page.before, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditView {
                id: r.id,
                at: ts(r.entry.at),
                actor: r.entry.actor,
                action: r.entry.action,
                target: r.entry.target,
                address: r.entry.address,
                detail: r.entry.detail,
            })
            .collect(),
    ))
}

/// Creates an enrollment bundle (admin).
#[utoipa::path(post, path = "/api/v1/enroll-bundle", security(("bearer" = [])), request_body = EnrollRequest,
    responses(
        (status = 201, description = "created: the agent exists, not enrolled yet", body = EnrollResponse, links(
            ("agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/agent_id")))),
            ("command" = (operation_id = "submit_command", parameters(("id" = "$response.body#/agent_id")))),
            ("commands" = (operation_id = "list_commands", parameters(("id" = "$response.body#/agent_id")))),
            ("inventory" = (operation_id = "agent_inventory", parameters(("id" = "$response.body#/agent_id")))),
            ("retire" = (operation_id = "delete_agent", parameters(("id" = "$response.body#/agent_id")))),
            ("script" = (operation_id = "enrollment_file", parameters(("file" = "{$response.body#/token}.sh")))),
            ("payload" = (operation_id = "enrollment_file", parameters(("file" = "{$response.body#/token}.tgz")))))),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 409, description = "`conflict`: an agent of that name exists", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_agent_name`, `invalid_server_url`, `insecure_server_url`", body = ErrorBody)))]
pub async fn create_enrollment(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    user.require(Role::Admin)?;
    let bundle = crate::create_bundle(
        &state,
        &req.agent_name,
        req.server_url.as_deref(),
        req.channel.unwrap_or_default(),
        &user.email,
        Some(client.to_string()),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(bundle)))
}

/// `GET /api/v1/enroll-bundle/<token>.sh` (repeatable until redeemed) and
/// `GET /api/v1/enroll-bundle/<token>.tgz` (exactly once).
#[utoipa::path(get, path = "/api/v1/enroll-bundle/{file}",
    params(("file" = String, Path, description = "`<token>.sh` or `<token>.tgz`",
            pattern = "^[A-Za-z0-9_-]{43}\\.(sh|tgz)$")),
    responses(
        (status = 200, description = "the bootstrap script (`.sh`, repeatable until redeemed) or the payload (`.tgz`, once)",
            content(("text/x-shellscript; charset=utf-8"), ("application/gzip"))),
        (status = 400, description = "`invalid_id`: not UTF-8", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown, expired or already used token", body = ErrorBody)))]
pub async fn enrollment_file(
    State(state): State<AppState>,
    client: ClientIp,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let gone = || ApiError::not_found("unknown, expired or already used enrollment token");
    let (token, kind) = if let Some(t) = file.strip_suffix(".sh") {
        (t, "sh")
    } else if let Some(t) = file.strip_suffix(".tgz") {
        (t, "tgz")
    } else {
        return Err(gone());
    };
    if !enroll::token_shape_ok(token) {
        return Err(gone());
    }
    let hash = sha256_hex(token);
    let now = now_ms();
    if kind == "sh" {
        let e = state
            .store
            .pending_enrollment(&hash, now)
            .await?
            .ok_or_else(gone)?;
        let builds = state.linux_builds(&e.channel).await;
        let script = enroll::bootstrap_script(&enroll::Bootstrap {
            public_url: &state.public_url,
            server_url: &e.server_url,
            token,
            agent_name: &e.agent_name,
            builds: &builds,
            server_cert_sha256: state.enrollment_pin().as_deref(),
            curl_pin_args: &state.curl_pin_args(),
            insecure_http: AppState::needs_insecure_http(&e.server_url),
        });
        return Ok((
            [
                (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            script,
        )
            .into_response());
    }
    let secret = random_token(32);
    let ip = client.to_string();
    let e = state
        .store
        .redeem_enrollment(&hash, now, &ip, &sha256_hex(&secret))
        .await?
        .ok_or_else(gone)?;
    let config = enroll::AgentConfig {
        server_url: e.server_url.clone(),
        agent_id: e.agent_id,
        agent_secret: secret,
        server_cert_sha256: state.enrollment_pin(),
        agent_name: e.agent_name.clone(),
        channel: e.channel.clone(),
    };
    state.hub.agents_changed();
    let tgz = enroll::payload_tgz(&config).map_err(ApiError::internal)?;
    audit(
        &state,
        &format!("agent:{}", e.agent_id),
        "enrollment.redeem",
        Some(e.agent_id.to_string()),
        Some(ip),
        serde_json::json!({"agent_name": e.agent_name}),
    )
    .await;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        tgz,
    )
        .into_response())
}

/// The agent WebSocket. Only `Authorization: Agent <id>:<secret>` is
/// accepted.
#[utoipa::path(get, path = "/api/v1/agent/ws", security(("agent" = [])),
    responses(
        (status = 101, description = "switching protocols"),
        (status = 400, description = "`websocket_required`: not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong agent credential", body = ErrorBody),
        (status = 503, description = "`overloaded`: too many agent handshakes in progress; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn agent_ws(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response, ApiError> {
    // Bounded before anything else, so a reconnect storm costs little.
    let slot = state
        .hub
        .try_begin_handshake()
        .ok_or_else(|| ApiError::overloaded(state.config.handshake_retry_after_secs))?;
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Agent <id>:<secret> header")
        })?;
    let (scheme, cred) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("agent") {
        return Err(ApiError::unauthorized(
            "only agent credentials are accepted here",
        ));
    }
    let (id, secret) = cred
        .trim()
        .split_once(':')
        .ok_or_else(|| ApiError::unauthorized("expected Agent <id>:<secret>"))?;
    let id =
        Uuid::parse_str(id).map_err(|_| ApiError::unauthorized("invalid agent credentials"))?;
    if secret.is_empty() || secret.len() > 256 {
        return Err(ApiError::unauthorized("invalid agent credentials"));
    }
    let stored = state.store.agent_secret_hash(id).await?;
    let ok = stored.is_some_and(|h| crate::auth::ct_eq(&h, &sha256_hex(secret)));
    if !ok {
        return Err(ApiError::unauthorized("invalid agent credentials"));
    }
    let ws = ws.map_err(|e| ApiError::bad_request("websocket_required", e.body_text()))?;
    let frame = rmm_core::protocol::Limits::default().max_frame();
    let hub = state.hub.clone();
    // Every idle agent holds its read buffer: 2 KiB (a larger frame is
    // still read whole, in 2 KiB reads). No write buffer.
    Ok(ws
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(state.config.body_limit.max(frame) * 2 + 1024 * 1024)
        .max_message_size(frame)
        .max_frame_size(frame)
        .on_upgrade(move |socket| hub.run_connection(id, client.0, socket, slot)))
}

/// A release as `GET /api/v1/downloads` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseView {
    /// File name under `/api/v1/downloads/`.
    pub file: String,
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Version.
    pub version: String,
    /// `stable` or `beta`.
    pub channel: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Lists the offerable agent builds.
#[utoipa::path(get, path = "/api/v1/downloads",
    responses(
        (status = 200, description = "the verified builds", body = [ReleaseView], links(
            ("download" = (operation_id = "download", parameters(("file" = "$response.body#/0/file"))))))))]
pub async fn list_downloads(
    State(state): State<AppState>,
) -> Result<Json<Vec<ReleaseView>>, ApiError> {
    let index = state.release_index().await;
    Ok(Json(
        index
            .releases()
            .map(|r| ReleaseView {
                file: r.file_name().to_owned(),
                os: r.os().as_str().to_owned(),
                arch: r.arch().as_str().to_owned(),
                version: r.version().to_string(),
                channel: r.channel().as_str().to_owned(),
                sha256: r.sha256().to_string(),
            })
            .collect(),
    ))
}

/// Serves one agent build: only names in the verified release index
/// (the file's SHA-256 matched its sidecar when it was last hashed, and
/// the file has not changed since), streamed from disk.
#[utoipa::path(get, path = "/api/v1/downloads/{file}",
    params(("file" = String, Path, description = "a build's file name")),
    responses(
        (status = 200, description = "the build", content(("application/octet-stream")),
            headers(("X-Checksum-Sha256" = String, description = "SHA-256 of the build, lowercase hex"))),
        (status = 400, description = "`invalid_id`: not UTF-8", body = ErrorBody),
        (status = 404, description = "`not_found`: no such verified build", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let releases = state.releases.clone();
    let open = tokio::task::spawn_blocking(move || releases.open_blocking(&file))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such build"))?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(open.file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, open.len.to_string()),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                open.release.sha256().to_string(),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "OpenMetrics text (the same string as `metrics::CONTENT_TYPE`; scripts/api-fuzz checks they agree)", content(("application/openmetrics-text; version=1.0.0; charset=utf-8")))))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.store.command_counts().await?;
    state.metrics.set_connected(state.hub.connected());
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&counts),
    )
        .into_response())
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// Always `ok` (a store fault is a 500).
    #[schema(pattern = "^ok$")]
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Agent connections to this process.
    pub agents_connected: usize,
}

/// Liveness and store reachability.
#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "the store answers", body = HealthView)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<HealthView>, ApiError> {
    state.store.count_users().await?;
    Ok(Json(HealthView {
        status: "ok",
        store: state.store.backend(),
        agents_connected: state.hub.connected(),
    }))
}

/// The description of this server (see [`openapi::document`]).
async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(openapi::document(state.config.insecure_http))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .observe_request(&method, &route, resp.status().as_u16(), start.elapsed());
    resp
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/agents", get(list_agents))
        .route("/api/agents/{id}", get(get_agent).delete(delete_agent))
        .route("/api/agents/{id}/command", post(submit_command))
        .route("/api/agents/{id}/commands", get(list_commands))
        .route("/api/agents/{id}/inventory", get(agent_inventory))
        .route("/api/commands/{id}", get(get_command))
        .route("/api/commands/{id}/cancel", post(cancel_command))
        .route("/api/users", get(list_users).post(create_user))
        .route(
            "/api/users/{id}",
            axum::routing::patch(update_user).delete(delete_user),
        )
        .route("/api/audit", get(list_audit))
        .route("/api/v1/enroll-bundle", post(create_enrollment))
        .route("/api/v1/enroll-bundle/{file}", get(enrollment_file))
        .route("/api/v1/agent/ws", get(agent_ws))
        .route("/api/v1/downloads", get(list_downloads))
        .route("/api/v1/downloads/{file}", get(download))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
