//! `Client`: the rmm server API (`rmm_client`), Promise-based. The
//! operations, their argument checks and the flattening of results are
//! `rmm_bindings_common::server`'s; here they become Promises and objects.

use std::future::Future;

use chrono::{DateTime, Utc};
use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_bindings_common::server::{self as ops, Run, RunArgs, wait_options};
use rmm_bindings_common::{Lang, parse_id};
use rmm_client::{CommandPage, EnrollmentOptions as ClientEnrollment};

use crate::errors::{ErrorInfo, IntoJs};

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

impl From<ops::Agent> for Agent {
    fn from(a: ops::Agent) -> Self {
        Agent {
            online: a.online(),
            id: a.id,
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

impl From<ops::CommandResult> for CommandResult {
    fn from(c: ops::CommandResult) -> Self {
        CommandResult {
            is_final: c.is_final(),
            ok: c.ok(),
            id: c.id,
            agent_id: c.agent_id,
            command_type: c.command_type,
            command: c.command,
            context: c.context,
            timeout: c.timeout,
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

impl From<ops::EnrollmentBundle> for EnrollmentBundle {
    fn from(b: ops::EnrollmentBundle) -> Self {
        EnrollmentBundle {
            agent_id: b.agent_id,
            token: b.token,
            command: b.command,
            expires_at: b.expires_at,
        }
    }
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
        promise(env, ops::login(c, email, password))
    }

    /// Every agent.
    #[napi]
    pub fn agents<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Vec<Agent>>> {
        let c = self.inner.clone();
        promise(env, async move {
            Ok(ops::agents(c).await?.into_iter().map(Agent::from).collect())
        })
    }

    /// One agent.
    #[napi]
    pub fn agent<'env>(&self, env: &'env Env, agent_id: String) -> Result<PromiseRaw<'env, Agent>> {
        let c = self.inner.clone();
        promise(env, async move {
            let id = parse_id(&agent_id, Some("agent id"))?;
            Ok(ops::agent(c, id).await?.into())
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
            let agent = parse_id(&agent_id, Some("agent id"))?;
            let args = RunArgs {
                command_type: opts.command_type.as_deref(),
                context: opts.context.as_deref(),
                timeout: opts.timeout,
                wait: opts.wait,
                wait_timeout: opts.wait_timeout,
            };
            let run = Run::parse(Lang::JavaScript, command, args)?;
            Ok(ops::run(c, agent, run).await?.into())
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
            let id = parse_id(&command_id, Some("command id"))?;
            Ok(ops::command(c, id).await?.into())
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
            let id = parse_id(&command_id, Some("command id"))?;
            let opts = wait_options(Lang::JavaScript, timeout)?;
            Ok(ops::wait(c, id, opts).await?.into())
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
            let id = parse_id(&command_id, Some("command id"))?;
            Ok(ops::cancel(c, id).await?.into())
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
            let agent = parse_id(&agent_id, Some("agent id"))?;
            let before = opts
                .before
                .as_deref()
                .map(|b| parse_id(b, Some("before")))
                .transpose()?;
            let page = CommandPage::new(opts.limit, before);
            let list = ops::agent_commands(c, agent, page).await?;
            Ok(list.into_iter().map(CommandResult::from).collect())
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
            Ok(ops::create_enrollment(c, agent_name, o).await?.into())
        })
    }
}
