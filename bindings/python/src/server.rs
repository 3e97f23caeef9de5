//! `rmm.Client` / `rmm.AsyncClient` over `rmm_client`, and the value classes
//! they return (`Agent`, `CommandResult`, `EnrollmentBundle`).
//!
//! Both clients share one core: every operation is an `async fn` here,
//! which `Client` runs with [`block_on`] (GIL released) and `AsyncClient`
//! hands to asyncio with [`awaitable`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyString;
use rmm_client::{
    CommandContext, CommandPage, CommandRequest, CommandType, EnrollmentOptions, WaitOptions,
};
use uuid::Uuid;

use crate::errors::ErrorInfo;
use crate::runtime::{PerProcess, awaitable, block_on};

/// A UUID argument: `str`, `uuid.UUID`, or an object with an `id` (an
/// `Agent`, a `CommandResult`).
pub(crate) struct Id(Uuid);

impl<'a, 'py> FromPyObject<'a, 'py> for Id {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let text: String = if let Ok(s) = obj.cast::<PyString>() {
            s.to_cow()?.into_owned()
        } else if let Ok(a) = obj.cast::<Agent>() {
            a.get().id.clone()
        } else if let Ok(c) = obj.cast::<CommandResult>() {
            c.get().id.clone()
        } else if obj.is_instance(uuid_class(obj.py())?)? {
            obj.str()?.to_cow()?.into_owned()
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "expected an id (str or uuid.UUID), got {}",
                obj.get_type().name()?
            )));
        };
        parse_uuid(&text)
            .map(Id)
            .map_err(|e| e.into_pyerr(obj.py()))
    }
}

fn uuid_class(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
    static UUID: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    UUID.import(py, "uuid", "UUID")
}

fn parse_uuid(text: &str) -> Result<Uuid, ErrorInfo> {
    Uuid::parse_str(text.trim())
        .map_err(|_| ErrorInfo::invalid(format!("{text:?} is not a valid id (expected a UUID)")))
}

/// An agent as the server lists it.
#[pyclass(frozen, get_all, module = "rmm")]
#[derive(Debug, Clone)]
pub struct Agent {
    /// The agent's id (a UUID string).
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

#[pymethods]
impl Agent {
    /// Whether the agent is connected now.
    #[getter]
    fn online(&self) -> bool {
        self.status == "online"
    }

    fn __repr__(&self) -> String {
        format!(
            "Agent(id={:?}, name={:?}, hostname={:?}, os={:?}, status={:?})",
            self.id, self.name, self.hostname, self.os, self.status
        )
    }
}

/// A command and, once it is final, its result.
#[pyclass(frozen, get_all, module = "rmm")]
#[derive(Debug, Clone)]
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
}

impl From<rmm_client::CommandInfo> for CommandResult {
    fn from(c: rmm_client::CommandInfo) -> Self {
        CommandResult {
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

fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(40).collect();
    if p.len() < s.len() {
        p.push('…');
    }
    p
}

#[pymethods]
impl CommandResult {
    /// Whether the command reached a final status.
    #[getter]
    fn is_final(&self) -> bool {
        self.status != "running"
    }

    /// Whether it completed with exit code 0.
    #[getter]
    fn ok(&self) -> bool {
        self.status == "completed" && self.exit_code == Some(0)
    }

    fn __repr__(&self) -> String {
        format!(
            "CommandResult(id={:?}, status={:?}, exit_code={}, stdout={:?})",
            self.id,
            self.status,
            self.exit_code
                .map_or_else(|| "None".to_owned(), |c| c.to_string()),
            preview(&self.stdout)
        )
    }
}

/// An enrollment bundle: the one-line install command for a new agent.
#[pyclass(frozen, get_all, module = "rmm")]
#[derive(Clone)]
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

#[pymethods]
impl EnrollmentBundle {
    fn __repr__(&self) -> String {
        format!(
            "EnrollmentBundle(agent_id={:?}, expires_at={:?}, token=<redacted>)",
            self.agent_id,
            self.expires_at.to_rfc3339()
        )
    }
}

/// The state both clients share.
struct Core {
    base: String,
    http: PerProcess<rmm_client::Client>,
}

impl Core {
    fn new(base_url: &str, token: Option<String>) -> Result<Core, ErrorInfo> {
        let mut client = rmm_client::Client::new(base_url)?;
        if let Some(t) = token {
            client = client.with_token(t);
        }
        Ok(Core {
            base: client.base_url().to_owned(),
            http: PerProcess::new(client),
        })
    }

    fn client(&self) -> Result<rmm_client::Client, ErrorInfo> {
        self.http.get(|stale| {
            let mut fresh = rmm_client::Client::new(stale.base_url())?;
            if let Some(t) = stale.token() {
                fresh = fresh.with_token(t);
            }
            Ok(fresh)
        })
    }
}

fn wait_options(wait_timeout: Option<f64>) -> Result<WaitOptions, ErrorInfo> {
    let timeout = match wait_timeout {
        None => None,
        Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(ErrorInfo::invalid(format!(
                "wait_timeout must be a non-negative number of seconds, got {t}"
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
    command_type: &str,
    context: &str,
    timeout: Option<f64>,
) -> Result<CommandRequest, ErrorInfo> {
    let command_type: CommandType = command_type
        .parse()
        .map_err(|e: rmm_core::protocol::UnknownWord| ErrorInfo::invalid(e.to_string()))?;
    let context: CommandContext = context
        .parse()
        .map_err(|e: rmm_core::protocol::UnknownWord| ErrorInfo::invalid(e.to_string()))?;
    let timeout_secs = match timeout {
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

/// The operations, once, as futures.
mod ops {
    use super::*;

    pub(super) async fn login(
        c: rmm_client::Client,
        email: String,
        password: String,
    ) -> Result<String, ErrorInfo> {
        Ok(c.login(&email, &password).await?)
    }

    pub(super) async fn agents(c: rmm_client::Client) -> Result<Vec<Agent>, ErrorInfo> {
        Ok(c.agents().await?.into_iter().map(Agent::from).collect())
    }

    pub(super) async fn agent(c: rmm_client::Client, id: Uuid) -> Result<Agent, ErrorInfo> {
        Ok(c.agent(id).await?.into())
    }

    pub(super) async fn run(
        c: rmm_client::Client,
        agent_id: Uuid,
        req: CommandRequest,
        wait: bool,
        opts: WaitOptions,
    ) -> Result<CommandResult, ErrorInfo> {
        let id = c.submit(agent_id, &req).await?;
        let info = if wait {
            c.wait(id, opts).await?
        } else {
            c.command(id).await?
        };
        Ok(info.into())
    }

    pub(super) async fn command(
        c: rmm_client::Client,
        id: Uuid,
    ) -> Result<CommandResult, ErrorInfo> {
        Ok(c.command(id).await?.into())
    }

    pub(super) async fn wait(
        c: rmm_client::Client,
        id: Uuid,
        opts: WaitOptions,
    ) -> Result<CommandResult, ErrorInfo> {
        Ok(c.wait(id, opts).await?.into())
    }

    pub(super) async fn cancel(
        c: rmm_client::Client,
        id: Uuid,
    ) -> Result<CommandResult, ErrorInfo> {
        Ok(c.cancel(id).await?.into())
    }

    pub(super) async fn agent_commands(
        c: rmm_client::Client,
        agent_id: Uuid,
        page: CommandPage,
    ) -> Result<Vec<CommandResult>, ErrorInfo> {
        Ok(c.agent_commands(agent_id, page)
            .await?
            .into_iter()
            .map(CommandResult::from)
            .collect())
    }

    pub(super) async fn create_enrollment(
        c: rmm_client::Client,
        name: String,
        opts: EnrollmentOptions,
    ) -> Result<EnrollmentBundle, ErrorInfo> {
        let b = c.create_enrollment_with(&name, &opts).await?;
        Ok(EnrollmentBundle {
            agent_id: b.agent_id.to_string(),
            token: b.token,
            command: b.command,
            expires_at: b.expires_at,
        })
    }
}

fn page(limit: Option<u32>, before: Option<Id>) -> CommandPage {
    CommandPage {
        limit,
        before: before.map(|b| b.0),
    }
}

fn enrollment_options(server_url: Option<String>, channel: Option<String>) -> EnrollmentOptions {
    EnrollmentOptions {
        server_url,
        channel,
    }
}

/// A blocking client for an rmm server, for scripts.
#[pyclass(frozen, module = "rmm")]
pub struct Client {
    core: Arc<Core>,
}

/// A client for an rmm server whose methods are awaitable from asyncio.
#[pyclass(frozen, module = "rmm")]
pub struct AsyncClient {
    core: Arc<Core>,
}

macro_rules! common_methods {
    ($ty:ident, $name:literal) => {
        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (base_url, token = None))]
            fn new(py: Python<'_>, base_url: &str, token: Option<String>) -> PyResult<Self> {
                let core = Core::new(base_url, token).map_err(|e| e.into_pyerr(py))?;
                Ok($ty {
                    core: Arc::new(core),
                })
            }

            /// The server's base URL.
            #[getter]
            fn base_url(&self) -> String {
                self.core.base.clone()
            }

            /// The token in use (from `login()` or the constructor).
            #[getter]
            fn get_token(&self, py: Python<'_>) -> PyResult<Option<String>> {
                let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
                Ok(c.token())
            }

            fn __repr__(&self) -> String {
                format!("{}({:?})", $name, self.core.base)
            }
        }
    };
}

common_methods!(Client, "Client");
common_methods!(AsyncClient, "AsyncClient");

#[pymethods]
impl Client {
    /// Logs in; the token is kept for later calls and returned.
    fn login(&self, py: Python<'_>, email: String, password: String) -> PyResult<String> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::login(c, email, password))
    }

    /// Every agent.
    fn agents(&self, py: Python<'_>) -> PyResult<Vec<Agent>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::agents(c))
    }

    /// One agent.
    fn agent(&self, py: Python<'_>, agent_id: Id) -> PyResult<Agent> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::agent(c, agent_id.0))
    }

    /// Runs a command on an agent.
    #[pyo3(signature = (agent_id, command, command_type = "shell", context = "system", timeout = None, wait = true, wait_timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        agent_id: Id,
        command: String,
        command_type: &str,
        context: &str,
        timeout: Option<f64>,
        wait: bool,
        wait_timeout: Option<f64>,
    ) -> PyResult<CommandResult> {
        let prep = || -> Result<_, ErrorInfo> {
            Ok((
                self.core.client()?,
                command_request(command, command_type, context, timeout)?,
                wait_options(wait_timeout)?,
            ))
        };
        let (c, req, opts) = prep().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::run(c, agent_id.0, req, wait, opts))
    }

    /// A command's current state.
    fn command(&self, py: Python<'_>, command_id: Id) -> PyResult<CommandResult> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::command(c, command_id.0))
    }

    /// Waits until a command is final.
    #[pyo3(signature = (command_id, timeout = None))]
    fn wait(
        &self,
        py: Python<'_>,
        command_id: Id,
        timeout: Option<f64>,
    ) -> PyResult<CommandResult> {
        let prep = || -> Result<_, ErrorInfo> { Ok((self.core.client()?, wait_options(timeout)?)) };
        let (c, opts) = prep().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::wait(c, command_id.0, opts))
    }

    /// Asks the server to cancel a command.
    fn cancel(&self, py: Python<'_>, command_id: Id) -> PyResult<CommandResult> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::cancel(c, command_id.0))
    }

    /// A page of an agent's commands, newest first.
    #[pyo3(signature = (agent_id, limit = None, before = None))]
    fn agent_commands(
        &self,
        py: Python<'_>,
        agent_id: Id,
        limit: Option<u32>,
        before: Option<Id>,
    ) -> PyResult<Vec<CommandResult>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::agent_commands(c, agent_id.0, page(limit, before)))
    }

    /// Creates an enrollment bundle for a new agent (admin only).
    #[pyo3(signature = (agent_name, server_url = None, channel = None))]
    fn create_enrollment(
        &self,
        py: Python<'_>,
        agent_name: String,
        server_url: Option<String>,
        channel: Option<String>,
    ) -> PyResult<EnrollmentBundle> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(
            py,
            ops::create_enrollment(c, agent_name, enrollment_options(server_url, channel)),
        )
    }
}

#[pymethods]
impl AsyncClient {
    /// Logs in; the token is kept for later calls and returned.
    fn login<'py>(
        &self,
        py: Python<'py>,
        email: String,
        password: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::login(c, email, password))
    }

    /// Every agent.
    fn agents<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::agents(c))
    }

    /// One agent.
    fn agent<'py>(&self, py: Python<'py>, agent_id: Id) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::agent(c, agent_id.0))
    }

    /// Runs a command on an agent.
    #[pyo3(signature = (agent_id, command, command_type = "shell", context = "system", timeout = None, wait = true, wait_timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        agent_id: Id,
        command: String,
        command_type: &str,
        context: &str,
        timeout: Option<f64>,
        wait: bool,
        wait_timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prep = || -> Result<_, ErrorInfo> {
            Ok((
                self.core.client()?,
                command_request(command, command_type, context, timeout)?,
                wait_options(wait_timeout)?,
            ))
        };
        let (c, req, opts) = prep().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::run(c, agent_id.0, req, wait, opts))
    }

    /// A command's current state.
    fn command<'py>(&self, py: Python<'py>, command_id: Id) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::command(c, command_id.0))
    }

    /// Waits until a command is final.
    #[pyo3(signature = (command_id, timeout = None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        command_id: Id,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prep = || -> Result<_, ErrorInfo> { Ok((self.core.client()?, wait_options(timeout)?)) };
        let (c, opts) = prep().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::wait(c, command_id.0, opts))
    }

    /// Asks the server to cancel a command.
    fn cancel<'py>(&self, py: Python<'py>, command_id: Id) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::cancel(c, command_id.0))
    }

    /// A page of an agent's commands, newest first.
    #[pyo3(signature = (agent_id, limit = None, before = None))]
    fn agent_commands<'py>(
        &self,
        py: Python<'py>,
        agent_id: Id,
        limit: Option<u32>,
        before: Option<Id>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::agent_commands(c, agent_id.0, page(limit, before)))
    }

    /// Creates an enrollment bundle for a new agent (admin only).
    #[pyo3(signature = (agent_name, server_url = None, channel = None))]
    fn create_enrollment<'py>(
        &self,
        py: Python<'py>,
        agent_name: String,
        server_url: Option<String>,
        channel: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(
            py,
            ops::create_enrollment(c, agent_name, enrollment_options(server_url, channel)),
        )
    }
}
