//! `Client`: the rmm server API (`rmm_client`), Promise-based.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_client::{
    CommandContext, CommandPage, CommandRequest, CommandType,
    EnrollmentOptions as ClientEnrollment, WaitOptions,
};
use uuid::Uuid;

use crate::errors::ErrorInfo;

/// Runs `fut` on the addon's tokio runtime and returns a Promise; an
/// `ErrorInfo` becomes a rejection with a typed error object.
pub(crate) fn promise<'env, T, F>(env: &'env Env, fut: F) -> Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = std::result::Result<T, ErrorInfo>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, r| {
        r.map_err(|e| e.into_js(env))
    })
}

pub(crate) fn parse_uuid(what: &str, text: &str) -> std::result::Result<Uuid, ErrorInfo> {
    Uuid::parse_str(text.trim()).map_err(|_| {
        ErrorInfo::invalid(format!(
            "{what} {text:?} is not a valid id (expected a UUID)"
        ))
    })
}

/// An agent as the server lists it.
#[napi(object)]
pub struct Agent {
    /// The agent's id (a UUID).
    pub id: String,
    /// The name it was enrolled under.
    pub name: String,
    /// Host name (empty until it first connected).
    pub hostname: String,
    /// `linux`, `windows`, `darwin`.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Agent build version.
    pub agent_version: String,
    /// `stable` or `beta`.
    pub channel: String,
    /// `online` or `offline`.
    pub status: String,
    /// Whether the agent is connected now.
    pub online: bool,
    /// When it was last heard from.
    pub last_seen: Option<DateTime<Utc>>,
    /// Machine identity hash.
    pub machine_uid: Option<String>,
    /// Address it enrolled or connected from.
    pub address: Option<String>,
}

impl From<rmm_client::Agent> for Agent {
    fn from(a: rmm_client::Agent) -> Self {
        Agent {
            online: a.is_online(),
            id: a.id.to_string(),
            name: a.name,
            hostname: a.hostname,
            os: a.os,
            arch: a.arch,
            agent_version: a.agent_version,
            channel: a.channel,
            status: a.status,
            last_seen: a.last_seen,
            machine_uid: a.machine_uid,
            address: a.address,
        }
    }
}

/// A command and, once it is final, its result.
#[napi(object)]
pub struct CommandResult {
    /// The command's id.
    pub id: String,
    /// The agent it runs on.
    pub agent_id: String,
    /// `shell`, `bash`, `sh`, `powershell` or `python`.
    pub command_type: String,
    /// The script text (empty in listings).
    pub command: String,
    /// `system` or `user_session`.
    pub context: Option<String>,
    /// The timeout it was submitted with, in seconds.
    pub timeout: Option<u32>,
    /// `running`, then `completed`, `failed`, `timeout` or `cancelled`.
    pub status: String,
    /// `queued`, `delivered`, `executing` or `done`.
    pub phase: Option<String>,
    /// Exit code once the process ended.
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// stdout was cut at the server's cap.
    pub stdout_truncated: bool,
    /// stderr was cut at the server's cap.
    pub stderr_truncated: bool,
    /// Why it failed outside its process (no user session, no interpreter).
    pub error: Option<String>,
    /// Who submitted it.
    pub created_by: String,
    /// Accepted by the server.
    pub created_at: DateTime<Utc>,
    /// First sent to the agent.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Started on the agent.
    pub started_at: Option<DateTime<Utc>>,
    /// Reached its final status.
    pub completed_at: Option<DateTime<Utc>>,
    /// Cancellation requested.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Whether the status is final (not `running`).
    pub is_final: bool,
    /// Whether it completed with exit code 0.
    pub ok: bool,
}

impl From<rmm_client::CommandInfo> for CommandResult {
    fn from(c: rmm_client::CommandInfo) -> Self {
        CommandResult {
            is_final: c.is_final(),
            ok: c.is_success(),
            id: c.id.to_string(),
            agent_id: c.agent_id.to_string(),
            command_type: c.command_type.as_str().to_owned(),
            command: c.command_text,
            context: c.context.map(|c| c.as_str().to_owned()),
            timeout: c.timeout_secs,
            status: c.status,
            phase: c.phase,
            exit_code: c.exit_code,
            signal: c.signal,
            stdout: c.stdout,
            stderr: c.stderr,
            stdout_truncated: c.stdout_truncated,
            stderr_truncated: c.stderr_truncated,
            error: c.error,
            created_by: c.created_by,
            created_at: c.created_at,
            delivered_at: c.delivered_at,
            started_at: c.started_at,
            completed_at: c.completed_at,
            cancel_requested_at: c.cancel_requested_at,
        }
    }
}

/// An enrollment bundle: the one-line install command for a new agent.
#[napi(object)]
pub struct EnrollmentBundle {
    /// The id the agent will have.
    pub agent_id: String,
    /// The one-time token (valid a few minutes; a secret).
    pub token: String,
    /// `curl -fsSL <server>/.../<token>.sh | sudo bash`.
    pub command: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// Options of `Client.run`.
#[napi(object)]
#[derive(Default)]
pub struct RunOptions {
    /// `shell` (default), `bash`, `sh`, `powershell` or `python`.
    pub command_type: Option<String>,
    /// `system` (default) or `user_session`.
    pub context: Option<String>,
    /// The command's own timeout in seconds: the agent kills it and the
    /// result has status `timeout`.
    pub timeout: Option<f64>,
    /// Wait for the final result (default `true`); with `false` the result
    /// is returned at once, still `running`.
    pub wait: Option<bool>,
    /// How long to wait, in seconds (default: as long as it takes); past
    /// it the Promise rejects with a `Timeout` error.
    pub wait_timeout: Option<f64>,
}

/// Options of `Client.agentCommands`.
#[napi(object)]
#[derive(Default)]
pub struct PageOptions {
    /// At most this many (1..=500, server default 50).
    pub limit: Option<u32>,
    /// Only commands older than this command id.
    pub before: Option<String>,
}

/// Options of `Client.createEnrollment`.
#[napi(object)]
#[derive(Default)]
pub struct EnrollmentOptions {
    /// The URL the agent connects to (default: the server's public URL).
    pub server_url: Option<String>,
    /// `stable` (default) or `beta`.
    pub channel: Option<String>,
}

fn wait_options(wait_timeout: Option<f64>) -> std::result::Result<WaitOptions, ErrorInfo> {
    let timeout = match wait_timeout {
        None => None,
        Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(ErrorInfo::invalid(format!(
                "waitTimeout must be a non-negative number of seconds, got {t}"
            )));
        }
    };
    Ok(WaitOptions {
        timeout,
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(500),
    })
}

fn command_request(
    command: String,
    opts: &RunOptions,
) -> std::result::Result<CommandRequest, ErrorInfo> {
    let command_type: CommandType = opts
        .command_type
        .as_deref()
        .unwrap_or("shell")
        .parse()
        .map_err(|e: rmm_core::protocol::UnknownWord| ErrorInfo::invalid(e.to_string()))?;
    let context: CommandContext = opts
        .context
        .as_deref()
        .unwrap_or("system")
        .parse()
        .map_err(|e: rmm_core::protocol::UnknownWord| ErrorInfo::invalid(e.to_string()))?;
    let timeout_secs = match opts.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t <= 7.0 * 86_400.0 => Some(t.ceil() as u32),
        Some(t) => {
            return Err(ErrorInfo::invalid(format!(
                "timeout must be between 1 second and 7 days, got {t}"
            )));
        }
    };
    Ok(CommandRequest {
        command_type,
        command,
        context,
        timeout_secs,
    })
}

/// A client for an rmm server. Every method returns a Promise; failures
/// reject with an `Error` whose `name` is the error class (`AuthError`,
/// `NotFound`, ...) and whose `code` / `status` say more.
#[napi]
pub struct Client {
    inner: rmm_client::Client,
}

#[napi]
impl Client {
    /// A client for the server at `baseUrl` (`http://host:3001`), optionally
    /// with a token from an earlier login.
    #[napi(constructor)]
    pub fn new(env: Env, base_url: String, token: Option<String>) -> Result<Self> {
        let mut inner =
            rmm_client::Client::new(&base_url).map_err(|e| ErrorInfo::from(e).into_js(&env))?;
        if let Some(t) = token {
            inner = inner.with_token(t);
        }
        Ok(Client { inner })
    }

    /// The server's base URL.
    #[napi(getter)]
    pub fn base_url(&self) -> String {
        self.inner.base_url().to_owned()
    }

    /// The token in use (from `login()` or the constructor), or `null`.
    #[napi(getter)]
    pub fn token(&self) -> Option<String> {
        self.inner.token()
    }

    /// Logs in; the token is kept for later calls and returned.
    #[napi]
    pub fn login<'env>(
        &self,
        env: &'env Env,
        email: String,
        password: String,
    ) -> Result<PromiseRaw<'env, String>> {
        let c = self.inner.clone();
        promise(env, async move { Ok(c.login(&email, &password).await?) })
    }

    /// Every agent.
    #[napi]
    pub fn agents<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Vec<Agent>>> {
        let c = self.inner.clone();
        promise(env, async move {
            Ok(c.agents().await?.into_iter().map(Agent::from).collect())
        })
    }

    /// One agent.
    #[napi]
    pub fn agent<'env>(&self, env: &'env Env, agent_id: String) -> Result<PromiseRaw<'env, Agent>> {
        let c = self.inner.clone();
        promise(env, async move {
            let id = parse_uuid("agent id", &agent_id)?;
            Ok(c.agent(id).await?.into())
        })
    }

    /// Runs a command on an agent and, unless `wait: false`, waits for its
    /// final result. A non-zero exit is a result (`status: 'failed'`), not
    /// an error.
    #[napi]
    pub fn run<'env>(
        &self,
        env: &'env Env,
        agent_id: String,
        command: String,
        options: Option<RunOptions>,
    ) -> Result<PromiseRaw<'env, CommandResult>> {
        let c = self.inner.clone();
        let opts = options.unwrap_or_default();
        promise(env, async move {
            let agent = parse_uuid("agent id", &agent_id)?;
            let req = command_request(command, &opts)?;
            let wait = wait_options(opts.wait_timeout)?;
            let id = c.submit(agent, &req).await?;
            let info = if opts.wait.unwrap_or(true) {
                c.wait(id, wait).await?
            } else {
                c.command(id).await?
            };
            Ok(info.into())
        })
    }

    /// A command's current state.
    #[napi]
    pub fn command<'env>(
        &self,
        env: &'env Env,
        command_id: String,
    ) -> Result<PromiseRaw<'env, CommandResult>> {
        let c = self.inner.clone();
        promise(env, async move {
            let id = parse_uuid("command id", &command_id)?;
            Ok(c.command(id).await?.into())
        })
    }

    /// Waits until a command is final; `timeout` in seconds (default: as
    /// long as it takes).
    #[napi]
    pub fn wait<'env>(
        &self,
        env: &'env Env,
        command_id: String,
        timeout: Option<f64>,
    ) -> Result<PromiseRaw<'env, CommandResult>> {
        let c = self.inner.clone();
        promise(env, async move {
            let id = parse_uuid("command id", &command_id)?;
            Ok(c.wait(id, wait_options(timeout)?).await?.into())
        })
    }

    /// Asks the server to cancel a command; resolves with its state right
    /// after the request (wait for `cancelled` with `wait()`).
    #[napi]
    pub fn cancel<'env>(
        &self,
        env: &'env Env,
        command_id: String,
    ) -> Result<PromiseRaw<'env, CommandResult>> {
        let c = self.inner.clone();
        promise(env, async move {
            let id = parse_uuid("command id", &command_id)?;
            Ok(c.cancel(id).await?.into())
        })
    }

    /// A page of an agent's commands, newest first (without script text
    /// and output).
    #[napi]
    pub fn agent_commands<'env>(
        &self,
        env: &'env Env,
        agent_id: String,
        options: Option<PageOptions>,
    ) -> Result<PromiseRaw<'env, Vec<CommandResult>>> {
        let c = self.inner.clone();
        let opts = options.unwrap_or_default();
        promise(env, async move {
            let agent = parse_uuid("agent id", &agent_id)?;
            let before = opts
                .before
                .as_deref()
                .map(|b| parse_uuid("before", b))
                .transpose()?;
            let page = CommandPage {
                limit: opts.limit,
                before,
            };
            Ok(c.agent_commands(agent, page)
                .await?
                .into_iter()
                .map(CommandResult::from)
                .collect())
        })
    }

    /// Creates an enrollment bundle for a new agent (admin only).
    #[napi]
    pub fn create_enrollment<'env>(
        &self,
        env: &'env Env,
        agent_name: String,
        options: Option<EnrollmentOptions>,
    ) -> Result<PromiseRaw<'env, EnrollmentBundle>> {
        let c = self.inner.clone();
        let opts = options.unwrap_or_default();
        promise(env, async move {
            let o = ClientEnrollment {
                server_url: opts.server_url,
                channel: opts.channel,
            };
            let b = c.create_enrollment_with(&agent_name, &o).await?;
            Ok(EnrollmentBundle {
                agent_id: b.agent_id.to_string(),
                token: b.token,
                command: b.command,
                expires_at: b.expires_at,
            })
        })
    }
}
