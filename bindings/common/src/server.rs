//! The rmm server API (`rmm_client`): `run` arguments -> a validated
//! request, each operation once as a future, and the results flattened
//! (ids as text, enums as their wire words) into value types defined once
//! by [`server_values!`](crate::server_values): the plain structs here, and
//! each binding's classes / objects.
//!
//! The rules, limits and words are the API contract's (`rmm_api`, through
//! `rmm_client`): the request is built with its validating builder, the
//! flags (`online`, `is_final`, `ok`) are its methods on the wire words.

use rmm_client::api::{MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS};
use rmm_client::{
    AgentStatus, Client, CommandContext, CommandInfo, CommandPage, CommandRequest, CommandStatus,
    CommandType, EnrollmentOptions, WaitOptions,
};
use uuid::Uuid;

use crate::args::{Lang, seconds};
use crate::error::ErrorInfo;

/// Defines the three value types of the server API in a binding,
/// `Agent`, `CommandResult` and `EnrollmentBundle`, each with the
/// attributes given (`#[pyclass(...)]`, `#[napi(object)]`, derives), and
/// their conversion from `rmm_client`'s types: the fields and their docs
/// (which the Python classes and the TypeScript declarations show), and
/// the flattening (ids as text, enums as their wire words, the flags
/// `online`, `is_final` and `ok` from the API's rules), written once.
///
/// ```
/// rmm_bindings_common::server_values! {
///     #[derive(Debug, Clone)] Agent;
///     #[derive(Debug, Clone)] CommandResult;
///     #[derive(Clone)] EnrollmentBundle;
/// }
/// let json = r#"{"id":"0a0a0a0a-0000-4000-8000-000000000001","agent_id":"0a0a0a0a-0000-4000-8000-000000000002",
///     "command_type":"sh","status":"completed","exit_code":0,"created_at":"2026-11-23T18:00:00Z"}"#;
/// let info: rmm_client::CommandInfo = serde_json::from_str(json).unwrap();
/// let r = CommandResult::from(info);
/// assert_eq!((r.command_type.as_str(), r.status.as_str(), r.is_final, r.ok), ("sh", "completed", true, true));
/// ```
#[macro_export]
macro_rules! server_values {
    (
        $(#[$agent:meta])* Agent;
        $(#[$command:meta])* CommandResult;
        $(#[$bundle:meta])* EnrollmentBundle;
    ) => {
        /// An agent as the server lists it.
        $(#[$agent])*
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
            pub last_seen: Option<$crate::__macro::DateTime<$crate::__macro::Utc>>,
            /// Machine identity hash.
            pub machine_uid: Option<String>,
            /// Address it enrolled or connected from.
            pub address: Option<String>,
        }

        impl From<$crate::__macro::Agent> for Agent {
            fn from(a: $crate::__macro::Agent) -> Self {
                Agent {
                    online: a.is_online(),
                    id: a.id.to_string(),
                    name: a.name,
                    hostname: a.hostname,
                    os: a.os,
                    arch: a.arch,
                    agent_version: a.agent_version,
                    channel: a.channel.to_string(),
                    status: a.status.to_string(),
                    last_seen: a.last_seen,
                    machine_uid: a.machine_uid,
                    address: a.address,
                }
            }
        }

        /// A command and, once it is final, its result.
        $(#[$command])*
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
            pub created_at: $crate::__macro::DateTime<$crate::__macro::Utc>,
            /// First sent to the agent.
            pub delivered_at: Option<$crate::__macro::DateTime<$crate::__macro::Utc>>,
            /// Started on the agent.
            pub started_at: Option<$crate::__macro::DateTime<$crate::__macro::Utc>>,
            /// Reached its final status.
            pub completed_at: Option<$crate::__macro::DateTime<$crate::__macro::Utc>>,
            /// Cancellation requested.
            pub cancel_requested_at: Option<$crate::__macro::DateTime<$crate::__macro::Utc>>,
            /// Whether the status is final (not `running`).
            pub is_final: bool,
            /// Whether it completed with exit code 0.
            pub ok: bool,
        }

        impl From<$crate::__macro::CommandInfo> for CommandResult {
            fn from(c: $crate::__macro::CommandInfo) -> Self {
                CommandResult {
                    is_final: c.is_final(),
                    ok: c.is_success(),
                    id: c.id.to_string(),
                    agent_id: c.agent_id.to_string(),
                    command_type: c.command_type.to_string(),
                    command: c.command_text.into_string(),
                    context: c.context.map(|c| c.to_string()),
                    timeout: c.timeout_secs,
                    status: c.status.to_string(),
                    phase: c.phase.map(|p| p.to_string()),
                    exit_code: c.exit_code,
                    signal: c.signal,
                    stdout: c.stdout.into_string(),
                    stderr: c.stderr.into_string(),
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
        $(#[$bundle])*
        pub struct EnrollmentBundle {
            /// The id the agent will have.
            pub agent_id: String,
            /// The one-time token (valid a few minutes; a secret).
            pub token: String,
            /// `curl -fsSL <server>/.../<token>.sh | sudo bash`.
            pub command: String,
            /// When the token expires.
            pub expires_at: $crate::__macro::DateTime<$crate::__macro::Utc>,
        }

        impl From<$crate::__macro::EnrollmentBundle> for EnrollmentBundle {
            fn from(b: $crate::__macro::EnrollmentBundle) -> Self {
                EnrollmentBundle {
                    agent_id: b.agent_id.to_string(),
                    token: b.token,
                    command: b.command,
                    expires_at: b.expires_at,
                }
            }
        }
    };
}

crate::server_values! {
    #[derive(Debug, Clone, PartialEq)] Agent;
    #[derive(Debug, Clone, PartialEq)] CommandResult;
    #[derive(Debug, Clone, PartialEq)] EnrollmentBundle;
}

impl Agent {
    /// Whether `status` says connected (the `online` flag, from the words).
    pub fn online(&self) -> bool {
        AgentStatus::parse(&self.status) == Some(AgentStatus::Online)
    }
}

impl CommandResult {
    /// Whether `status` is final (the `is_final` flag, from the words).
    pub fn is_final(&self) -> bool {
        CommandStatus::parse(&self.status).is_some_and(CommandStatus::is_final)
    }

    /// Whether `status` and `exit_code` say success (the `ok` flag, from
    /// the words).
    pub fn ok(&self) -> bool {
        CommandStatus::parse(&self.status) == Some(CommandStatus::Completed)
            && self.exit_code == Some(0)
    }
}

/// The arguments of `run` besides the agent and the script, as given;
/// `None` takes the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunArgs<'a> {
    /// `shell` (default), `bash`, `sh`, `powershell` or `python`.
    pub command_type: Option<&'a str>,
    /// `system` (default) or `user_session`.
    pub context: Option<&'a str>,
    /// The command's own timeout in seconds (rounded up; within the API's
    /// bounds, 1 s to 7 days).
    pub timeout: Option<f64>,
    /// Wait for the final result (default `true`).
    pub wait: Option<bool>,
    /// How long to wait, in seconds (default: as long as it takes).
    pub wait_timeout: Option<f64>,
}

/// A validated `run`: what to submit, and how to wait for it (`None`:
/// return at once).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The command.
    pub request: CommandRequest,
    /// How to wait, unless `wait` was false.
    pub wait: Option<WaitOptions>,
}

impl Run {
    /// Checks `args` (all of them, `wait_timeout` even when not waiting),
    /// then the request's rules (a blank script is refused here, with the
    /// server's code, status and message).
    pub fn parse(lang: Lang, command: String, args: RunArgs<'_>) -> Result<Run, ErrorInfo> {
        let invalid = |e: rmm_core::protocol::UnknownWord| ErrorInfo::invalid(e.to_string());
        let command_type: CommandType = args
            .command_type
            .unwrap_or(CommandType::Shell.as_str())
            .parse()
            .map_err(invalid)?;
        let context: CommandContext = match args.context {
            Some(word) => word.parse().map_err(invalid)?,
            None => CommandContext::default(),
        };
        let timeout_secs = args.timeout.map(command_timeout).transpose()?;
        let wait = wait_options(lang, args.wait_timeout)?;
        let request = CommandRequest::builder(command_type, command)
            .context(context)
            .timeout_secs(timeout_secs)
            .build()
            .map_err(rmm_client::Error::from)?;
        Ok(Run {
            request,
            wait: args.wait.unwrap_or(true).then_some(wait),
        })
    }
}

/// A command timeout given in seconds -> whole seconds, rounded up, within
/// the API's bounds ([`MIN_TIMEOUT_SECS`] ..= [`MAX_TIMEOUT_SECS`]).
fn command_timeout(secs: f64) -> Result<u32, ErrorInfo> {
    if secs.is_finite() && secs > 0.0 && secs <= f64::from(MAX_TIMEOUT_SECS) {
        // in 0 < ceil(secs) <= MAX_TIMEOUT_SECS, so it fits (and is at
        // least MIN_TIMEOUT_SECS, 1)
        Ok((secs.ceil() as u32).max(MIN_TIMEOUT_SECS))
    } else {
        Err(ErrorInfo::invalid(format!(
            "timeout must be between {MIN_TIMEOUT_SECS} second and {} days, got {secs}",
            MAX_TIMEOUT_SECS / 86_400
        )))
    }
}

/// How to wait for a command: the client's default polling, giving up
/// after `wait_timeout` seconds (`None`: never).
pub fn wait_options(lang: Lang, wait_timeout: Option<f64>) -> Result<WaitOptions, ErrorInfo> {
    let name = lang.arg("wait_timeout");
    let timeout = wait_timeout.map(|t| seconds(&name, t, false)).transpose()?;
    Ok(WaitOptions::with_timeout(timeout))
}

/// Logs in; the client keeps the token. Resolves with the token.
pub async fn login(c: Client, email: String, password: String) -> Result<String, ErrorInfo> {
    Ok(c.login(&email, &password).await?)
}

// The operations convert their results into the caller's type: this
// module's plain structs, or a binding's classes (`server_values!`).

/// Every agent.
pub async fn agents<A: From<rmm_client::Agent>>(c: Client) -> Result<Vec<A>, ErrorInfo> {
    Ok(c.agents().await?.into_iter().map(A::from).collect())
}

/// One agent.
pub async fn agent<A: From<rmm_client::Agent>>(c: Client, id: Uuid) -> Result<A, ErrorInfo> {
    Ok(c.agent(id).await?.into())
}

/// Submits `run.request` and waits for the final result, or with
/// `run.wait` unset returns the state right after submitting.
pub async fn run<R: From<CommandInfo>>(
    c: Client,
    agent_id: Uuid,
    run: Run,
) -> Result<R, ErrorInfo> {
    let id = c.submit(agent_id, &run.request).await?;
    let info = match run.wait {
        Some(opts) => c.wait(id, opts).await?,
        None => c.command(id).await?,
    };
    Ok(info.into())
}

/// A command's current state.
pub async fn command<R: From<CommandInfo>>(c: Client, id: Uuid) -> Result<R, ErrorInfo> {
    Ok(c.command(id).await?.into())
}

/// Waits until a command is final.
pub async fn wait<R: From<CommandInfo>>(
    c: Client,
    id: Uuid,
    opts: WaitOptions,
) -> Result<R, ErrorInfo> {
    Ok(c.wait(id, opts).await?.into())
}

/// Asks the server to cancel a command; its state right after.
pub async fn cancel<R: From<CommandInfo>>(c: Client, id: Uuid) -> Result<R, ErrorInfo> {
    Ok(c.cancel(id).await?.into())
}

/// A page of an agent's commands, newest first.
pub async fn agent_commands<R: From<CommandInfo>>(
    c: Client,
    agent_id: Uuid,
    page: CommandPage,
) -> Result<Vec<R>, ErrorInfo> {
    Ok(c.agent_commands(agent_id, page)
        .await?
        .into_iter()
        .map(R::from)
        .collect())
}

/// Creates an enrollment bundle for a new agent (admin only).
pub async fn create_enrollment<B: From<rmm_client::EnrollmentBundle>>(
    c: Client,
    name: String,
    opts: EnrollmentOptions,
) -> Result<B, ErrorInfo> {
    Ok(c.create_enrollment_with(&name, &opts).await?.into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `Ok((type, context, timeout_secs, waits, wait timeout))` or the
    /// error message.
    type Parsed = (
        CommandType,
        CommandContext,
        Option<u32>,
        bool,
        Option<Duration>,
    );

    fn check(lang: Lang, args: RunArgs<'_>, expected: Result<Parsed, &str>) {
        let got = Run::parse(lang, "true".to_owned(), args)
            .map(|r| {
                let waits = r.wait.is_some();
                let wait = r.wait.unwrap_or_default();
                (
                    r.request.command_type,
                    r.request.context,
                    r.request.timeout_secs,
                    waits,
                    wait.timeout,
                )
            })
            .map_err(|e| {
                assert_eq!(e.code, "invalid_argument");
                e.message
            });
        assert_eq!(got, expected.map_err(str::to_owned), "{args:?}");
    }

    #[test]
    fn run_defaults() {
        use CommandContext::*;
        use CommandType::*;
        let none = RunArgs::default();
        check(Lang::Python, none, Ok((Shell, System, None, true, None)));
        check(
            Lang::JavaScript,
            RunArgs {
                command_type: Some("python"),
                context: Some("user_session"),
                wait: Some(false),
                ..none
            },
            Ok((Python, UserSession, None, false, None)),
        );
        let wait = RunArgs {
            wait_timeout: Some(2.5),
            ..none
        };
        check(
            Lang::Python,
            wait,
            Ok((Shell, System, None, true, Some(Duration::from_millis(2500)))),
        );
    }

    #[test]
    fn run_timeouts() {
        use CommandContext::*;
        use CommandType::*;
        let t = |secs: f64| RunArgs {
            timeout: Some(secs),
            ..RunArgs::default()
        };
        check(
            Lang::Python,
            t(1.0),
            Ok((Shell, System, Some(1), true, None)),
        );
        check(
            Lang::Python,
            t(0.2),
            Ok((Shell, System, Some(1), true, None)),
        );
        check(
            Lang::Python,
            t(1.5),
            Ok((Shell, System, Some(2), true, None)),
        );
        check(
            Lang::Python,
            t(604_800.0),
            Ok((Shell, System, Some(604_800), true, None)),
        );
        for (secs, shown) in [
            (0.0, "0"),
            (-3.0, "-3"),
            (604_800.5, "604800.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
        ] {
            let msg = format!("timeout must be between 1 second and 7 days, got {shown}");
            check(Lang::JavaScript, t(secs), Err(&msg));
        }
    }

    #[test]
    fn run_bad_words_and_wait_timeouts() {
        let none = RunArgs::default();
        check(
            Lang::Python,
            RunArgs {
                command_type: Some("fish"),
                ..none
            },
            Err(
                r#"unknown command type "fish", expected one of: shell, bash, sh, powershell, python"#,
            ),
        );
        check(
            Lang::Python,
            RunArgs {
                context: Some("root"),
                ..none
            },
            Err(r#"unknown context "root", expected one of: system, user_session"#),
        );
        // checked even when not waiting
        let bad_wait = RunArgs {
            wait: Some(false),
            wait_timeout: Some(-1.0),
            ..none
        };
        check(
            Lang::Python,
            bad_wait,
            Err("wait_timeout must be a non-negative number of seconds, got -1"),
        );
        check(
            Lang::JavaScript,
            bad_wait,
            Err("waitTimeout must be a non-negative number of seconds, got -1"),
        );
    }

    #[test]
    fn run_refuses_a_blank_script_as_the_server_would() {
        let e = Run::parse(Lang::JavaScript, " \t".to_owned(), RunArgs::default()).unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.status),
            (
                crate::ErrorClass::InvalidArgument,
                "invalid_command",
                Some(422)
            )
        );
        assert!(e.message.starts_with("command is empty"), "{e}");
    }

    #[test]
    fn wait_options_poll_as_the_client_does() {
        let w = wait_options(Lang::Python, None).expect("no timeout");
        assert_eq!(w, WaitOptions::default());
        let w = wait_options(Lang::JavaScript, Some(0.0)).expect("zero");
        assert_eq!(w.timeout, Some(Duration::ZERO));
        assert_eq!(w.max_interval, WaitOptions::DEFAULT_MAX_INTERVAL);
    }

    #[test]
    fn command_result_flags() {
        let json = r#"{"id":"0a0a0a0a-0000-4000-8000-000000000001","agent_id":"0a0a0a0a-0000-4000-8000-000000000002",
            "command_type":"bash","command_text":"true","context":"user_session","status":"completed","exit_code":0,
            "created_at":"2026-11-23T18:00:00Z"}"#;
        let info: rmm_client::CommandInfo = serde_json::from_str(json).expect("fixture");
        let r = CommandResult::from(info);
        assert_eq!(r.id, "0a0a0a0a-0000-4000-8000-000000000001");
        assert_eq!(r.command_type, "bash");
        assert_eq!(r.command, "true");
        assert_eq!(r.context.as_deref(), Some("user_session"));
        assert!(r.is_final() && r.ok());
        let failed = CommandResult {
            exit_code: Some(1),
            status: "failed".into(),
            ..r.clone()
        };
        assert!(failed.is_final() && !failed.ok());
        let running = CommandResult {
            status: "running".into(),
            exit_code: None,
            ..r
        };
        assert!(!running.is_final() && !running.ok());
    }
}
