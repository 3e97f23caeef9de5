//! `rmm.Client` / `rmm.AsyncClient` over `rmm_client`, and the value classes
//! they return (`Agent`, `CommandResult`, `EnrollmentBundle`).
//!
//! The operations, their argument checks and the flattening of results are
//! `rmm_bindings_common::server`'s; here each is run by `Client` with
//! [`block_on`] (GIL released) and handed to asyncio by `AsyncClient` with
//! [`awaitable`], and the results are copied into pyclasses.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;
use rmm_bindings_common::server::{self as ops, Run, RunArgs, wait_options};
use rmm_bindings_common::{Lang, parse_id};
use rmm_client::{CommandPage, EnrollmentOptions};
use uuid::Uuid;

use crate::errors::{ErrorInfo, IntoPyErr};
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
        parse_id(&text, None)
            .map(Id)
            .map_err(|e| e.into_pyerr(obj.py()))
    }
}

fn uuid_class(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
    static UUID: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    UUID.import(py, "uuid", "UUID")
}

rmm_bindings_common::server_values! {
    #[pyclass(frozen, get_all, module = "rmm")]
    #[derive(Debug, Clone)]
    Agent;
    #[pyclass(frozen, get_all, module = "rmm")]
    #[derive(Debug, Clone)]
    CommandResult;
    #[pyclass(frozen, get_all, module = "rmm")]
    #[derive(Clone)]
    EnrollmentBundle;
}

#[pymethods]
impl Agent {
    fn __repr__(&self) -> String {
        format!(
            "Agent(id={:?}, name={:?}, hostname={:?}, os={:?}, status={:?})",
            self.id, self.name, self.hostname, self.os, self.status
        )
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

fn page(limit: Option<u32>, before: Option<Id>) -> CommandPage {
    CommandPage::new(limit, before.map(|b| b.0))
}

fn enrollment_options(server_url: Option<String>, channel: Option<String>) -> EnrollmentOptions {
    EnrollmentOptions {
        server_url,
        channel,
    }
}

fn run_plan(
    command: String,
    command_type: &str,
    context: &str,
    timeout: Option<f64>,
    wait: bool,
    wait_timeout: Option<f64>,
) -> Result<Run, ErrorInfo> {
    let args = RunArgs {
        command_type: Some(command_type),
        context: Some(context),
        timeout,
        wait: Some(wait),
        wait_timeout,
    };
    Run::parse(Lang::Python, command, args)
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
        block_on(py, ops::agents::<Agent>(c))
    }

    /// One agent.
    fn agent(&self, py: Python<'_>, agent_id: Id) -> PyResult<Agent> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::agent::<Agent>(c, agent_id.0))
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
                run_plan(command, command_type, context, timeout, wait, wait_timeout)?,
            ))
        };
        let (c, run) = prep().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::run::<CommandResult>(c, agent_id.0, run))
    }

    /// A command's current state.
    fn command(&self, py: Python<'_>, command_id: Id) -> PyResult<CommandResult> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::command::<CommandResult>(c, command_id.0))
    }

    /// Waits until a command is final.
    #[pyo3(signature = (command_id, timeout = None))]
    fn wait(
        &self,
        py: Python<'_>,
        command_id: Id,
        timeout: Option<f64>,
    ) -> PyResult<CommandResult> {
        let prep = || -> Result<_, ErrorInfo> {
            Ok((self.core.client()?, wait_options(Lang::Python, timeout)?))
        };
        let (c, opts) = prep().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::wait::<CommandResult>(c, command_id.0, opts))
    }

    /// Asks the server to cancel a command.
    fn cancel(&self, py: Python<'_>, command_id: Id) -> PyResult<CommandResult> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        block_on(py, ops::cancel::<CommandResult>(c, command_id.0))
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
        block_on(
            py,
            ops::agent_commands::<CommandResult>(c, agent_id.0, page(limit, before)),
        )
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
        let opts = enrollment_options(server_url, channel);
        block_on(
            py,
            ops::create_enrollment::<EnrollmentBundle>(c, agent_name, opts),
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
        awaitable(py, ops::agents::<Agent>(c))
    }

    /// One agent.
    fn agent<'py>(&self, py: Python<'py>, agent_id: Id) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::agent::<Agent>(c, agent_id.0))
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
                run_plan(command, command_type, context, timeout, wait, wait_timeout)?,
            ))
        };
        let (c, run) = prep().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::run::<CommandResult>(c, agent_id.0, run))
    }

    /// A command's current state.
    fn command<'py>(&self, py: Python<'py>, command_id: Id) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::command::<CommandResult>(c, command_id.0))
    }

    /// Waits until a command is final.
    #[pyo3(signature = (command_id, timeout = None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        command_id: Id,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prep = || -> Result<_, ErrorInfo> {
            Ok((self.core.client()?, wait_options(Lang::Python, timeout)?))
        };
        let (c, opts) = prep().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::wait::<CommandResult>(c, command_id.0, opts))
    }

    /// Asks the server to cancel a command.
    fn cancel<'py>(&self, py: Python<'py>, command_id: Id) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core.client().map_err(|e| e.into_pyerr(py))?;
        awaitable(py, ops::cancel::<CommandResult>(c, command_id.0))
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
        awaitable(
            py,
            ops::agent_commands::<CommandResult>(c, agent_id.0, page(limit, before)),
        )
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
        let opts = enrollment_options(server_url, channel);
        awaitable(
            py,
            ops::create_enrollment::<EnrollmentBundle>(c, agent_name, opts),
        )
    }
}
