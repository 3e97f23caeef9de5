//! What the API sends and accepts: views, request bodies and their limits.

use chrono::{DateTime, SecondsFormat, Utc};
use rmm_core::protocol::{CommandContext, CommandType};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::openapi;
use crate::store::{Agent, Command, CommandStatus, Phase, Role, User};

// ---------------------------------------------------------------- views

pub(super) fn ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn ts_opt(ms: Option<i64>) -> Option<String> {
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
    pub(super) fn new(a: Agent, state: &AppState) -> Self {
        let online = crate::service::agents::is_online(state, &a, state.now_ms());
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
    pub(super) fn new(c: Command, full: bool) -> Self {
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

pub use crate::service::enrollment::MAX_SERVER_URL_CHARS;
pub use crate::service::users::{MAX_EMAIL_CHARS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
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
pub(super) fn integral_u32<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u32>, D::Error> {
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

impl From<crate::service::enrollment::Bundle> for EnrollResponse {
    fn from(b: crate::service::enrollment::Bundle) -> Self {
        EnrollResponse {
            command: b.command,
            token: b.token,
            expires_at: DateTime::<Utc>::from_timestamp_millis(b.expires_at)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            agent_id: b.agent_id,
        }
    }
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
