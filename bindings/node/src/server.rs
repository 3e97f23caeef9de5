//! `Client`: the rmm server API (`rmm_client`), Promise-based. The
//! operations, their argument checks and the flattening of results are
//! `rmm_bindings_common::server`'s; here they become Promises and objects.

use std::future::Future;

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

rmm_bindings_common::server_values! {
    #[napi(object)]
    Agent;
    #[napi(object)]
    CommandResult;
    #[napi(object)]
    EnrollmentBundle;
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
        promise(env, ops::agents(c))
    }

    /// One agent.
    #[napi]
    pub fn agent<'env>(&self, env: &'env Env, agent_id: String) -> Result<PromiseRaw<'env, Agent>> {
        let c = self.inner.clone();
        promise(env, async move {
            let id = parse_id(&agent_id, Some("agent id"))?;
            ops::agent(c, id).await
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
            ops::run(c, agent, run).await
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
            ops::command(c, id).await
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
            ops::wait(c, id, opts).await
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
            ops::cancel(c, id).await
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
            ops::agent_commands(c, agent, page).await
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
            ops::create_enrollment(c, agent_name, o).await
        })
    }
}
