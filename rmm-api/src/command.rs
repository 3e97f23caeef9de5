//! Commands: submitting one (with its rules), the command as the API
//! shows it, its status and phase, paging an agent's commands, and how a
//! client polls for the result.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::page::page_query;
use crate::wire::{self, null_default};
use crate::words::wire_words;
use crate::{CommandContext, CommandType, Invalid};

/// Shortest `timeout_secs` of a command.
pub const MIN_TIMEOUT_SECS: u32 = 1;
/// Longest `timeout_secs` of a command (7 days): the protocol's
/// [`rmm_core::protocol::MAX_COMMAND_TIMEOUT_SECS`].
pub const MAX_TIMEOUT_SECS: u32 = rmm_core::protocol::MAX_COMMAND_TIMEOUT_SECS;

/// The first interval of a client polling a command for its result; it
/// doubles up to [`WAIT_MAX_INTERVAL`].
pub const WAIT_INITIAL_INTERVAL: Duration = Duration::from_millis(20);
/// The largest interval of a client polling a command: a command that
/// ends is seen within half a second.
pub const WAIT_MAX_INTERVAL: Duration = Duration::from_millis(500);

/// `running` until a final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CommandStatus {
    /// Accepted and not final yet (queued, delivered or executing).
    Running,
    /// Exited with status 0.
    Completed,
    /// Exited non-zero, killed, or could not start.
    Failed,
    /// Exceeded its timeout.
    Timeout,
    /// Cancelled.
    Cancelled,
}

wire_words!(CommandStatus { Running => "running", Completed => "completed", Failed => "failed", Timeout => "timeout", Cancelled => "cancelled" });

impl CommandStatus {
    /// Every status.
    pub const ALL: [CommandStatus; 5] = [
        CommandStatus::Running,
        CommandStatus::Completed,
        CommandStatus::Failed,
        CommandStatus::Timeout,
        CommandStatus::Cancelled,
    ];

    /// Whether the status is final (anything but `running`).
    pub fn is_final(self) -> bool {
        self != CommandStatus::Running
    }
}

/// Where a `running` command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = CommandPhase))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the agent.
    Queued,
    /// Sent to the agent.
    Delivered,
    /// The agent started it.
    Executing,
    /// Final.
    Done,
}

wire_words!(Phase { Queued => "queued", Delivered => "delivered", Executing => "executing", Done => "done" });

/// A text a command's full view carries and its listings leave out (the
/// script, stdout and stderr): absent from the JSON when left out, and
/// read as empty then (or when null). It reads as a `str` (`Deref`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetailText(Option<String>);

impl DetailText {
    /// Left out (a listing).
    pub fn omitted() -> Self {
        DetailText(None)
    }

    /// Whether the text was left out.
    pub fn is_omitted(&self) -> bool {
        self.0.is_none()
    }

    /// The text; empty when left out.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }

    /// Whether the text is empty (or left out).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// The text; empty when left out.
    pub fn into_string(self) -> String {
        self.0.unwrap_or_default()
    }
}

impl From<String> for DetailText {
    fn from(text: String) -> Self {
        DetailText(Some(text))
    }
}

impl From<&str> for DetailText {
    fn from(text: &str) -> Self {
        DetailText(Some(text.to_owned()))
    }
}

impl From<DetailText> for String {
    fn from(text: DetailText) -> Self {
        text.into_string()
    }
}

impl AsRef<str> for DetailText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for DetailText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for DetailText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for DetailText {
    fn eq(&self, text: &str) -> bool {
        self.as_str() == text
    }
}

impl PartialEq<&str> for DetailText {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

impl PartialEq<String> for DetailText {
    fn eq(&self, text: &String) -> bool {
        self.as_str() == text
    }
}

/// A command and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Command))]
#[non_exhaustive]
pub struct CommandView {
    /// Id.
    pub id: Uuid,
    /// Target agent.
    pub agent_id: Uuid,
    /// Interpreter.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::command_type))]
    pub command_type: CommandType,
    /// The script text (omitted in listings).
    #[serde(default, skip_serializing_if = "DetailText::is_omitted")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub command_text: DetailText,
    /// Security context.
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = crate::schema::command_context, required = true)
    )]
    pub context: Option<CommandContext>,
    /// Timeout, if any.
    pub timeout_secs: Option<u32>,
    /// `running` until final, then `completed`, `failed`, `timeout`, `cancelled`.
    pub status: CommandStatus,
    /// `queued`, `delivered`, `executing` or `done`.
    #[cfg_attr(feature = "openapi", schema(value_type = Phase, required = true))]
    pub phase: Option<Phase>,
    /// Exit code once the process exited, else null.
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Failure outside the process (no user session, interpreter missing).
    pub error: Option<String>,
    /// Captured stdout (omitted in listings).
    #[serde(default, skip_serializing_if = "DetailText::is_omitted")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub stdout: DetailText,
    /// Captured stderr (omitted in listings).
    #[serde(default, skip_serializing_if = "DetailText::is_omitted")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub stderr: DetailText,
    /// Bytes of stdout received.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stdout_bytes: u64,
    /// Bytes of stderr received.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stderr_bytes: u64,
    /// stdout was cut at the cap.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stdout_truncated: bool,
    /// stderr was cut at the cap.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stderr_truncated: bool,
    /// Who submitted it.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub created_by: String,
    /// Accepted.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: DateTime<Utc>,
    /// First sent to the agent.
    #[serde(serialize_with = "wire::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Started on the agent.
    #[serde(serialize_with = "wire::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub started_at: Option<DateTime<Utc>>,
    /// Reached a final status.
    #[serde(serialize_with = "wire::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub completed_at: Option<DateTime<Utc>>,
    /// Cancellation requested.
    #[serde(serialize_with = "wire::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

impl CommandView {
    /// A `running`, `queued` command as just accepted; the other fields
    /// empty, for the server to fill in.
    pub fn new(
        id: Uuid,
        agent_id: Uuid,
        command_type: CommandType,
        created_at: DateTime<Utc>,
    ) -> Self {
        CommandView {
            id,
            agent_id,
            command_type,
            command_text: DetailText::omitted(),
            context: None,
            timeout_secs: None,
            status: CommandStatus::Running,
            phase: Some(Phase::Queued),
            exit_code: None,
            signal: None,
            error: None,
            stdout: DetailText::omitted(),
            stderr: DetailText::omitted(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
            created_by: String::new(),
            created_at,
            delivered_at: None,
            started_at: None,
            completed_at: None,
            cancel_requested_at: None,
        }
    }

    /// Whether the command reached a final status.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// Whether the command completed with exit code 0.
    pub fn is_success(&self) -> bool {
        self.status == CommandStatus::Completed && self.exit_code == Some(0)
    }
}

/// `POST /api/agents/:id/command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct CommandRequest {
    /// Interpreter.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::command_type))]
    pub command_type: CommandType,
    /// Script text (may be several MiB, within the body limit); not blank.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::not_blank))]
    pub command: String,
    /// Security context (default `system`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::command_context))]
    pub context: CommandContext,
    /// Seconds before the agent kills it (null or absent: no limit).
    #[serde(
        default,
        deserialize_with = "integral_u32",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800))]
    pub timeout_secs: Option<u32>,
}

/// The rules ([`CommandRequest::validate`]): the script is not blank
/// (422 `invalid_command`), a timeout is within [`MIN_TIMEOUT_SECS`] ..=
/// [`MAX_TIMEOUT_SECS`] (422 `invalid_timeout`). [`CommandRequest::builder`]
/// checks them when it builds; the server checks every request it gets,
/// and `rmm-client` every request before sending it.
impl CommandRequest {
    /// A request for `command` run by `command_type`, in the default
    /// context (`system`) with no timeout, to adjust and check.
    pub fn builder(command_type: CommandType, command: impl Into<String>) -> CommandRequestBuilder {
        CommandRequestBuilder {
            request: CommandRequest {
                command_type,
                command: command.into(),
                context: CommandContext::default(),
                timeout_secs: None,
            },
        }
    }

    /// A `shell` command in the `system` context with no timeout, not
    /// checked yet ([`CommandRequest::validate`]; `rmm-client` checks
    /// before sending).
    pub fn shell(command: impl Into<String>) -> Self {
        CommandRequest::builder(CommandType::Shell, command).request
    }

    /// Checks the request's rules: 422 `invalid_command` for a blank
    /// script, 422 `invalid_timeout` for a timeout out of bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.command.trim().is_empty() {
            return Err(Invalid::unprocessable(
                "invalid_command",
                "command is empty",
            ));
        }
        if let Some(secs) = self.timeout_secs
            && !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&secs)
        {
            return Err(Invalid::unprocessable(
                "invalid_timeout",
                format!("timeout_secs must be between {MIN_TIMEOUT_SECS} and {MAX_TIMEOUT_SECS}"),
            ));
        }
        Ok(())
    }
}

/// Builds a [`CommandRequest`] and checks it ([`CommandRequest::builder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CommandRequestBuilder {
    request: CommandRequest,
}

impl CommandRequestBuilder {
    /// The security context (default `system`).
    pub fn context(mut self, context: CommandContext) -> Self {
        self.request.context = context;
        self
    }

    /// Seconds before the agent kills the command (`None`, the default: no
    /// limit).
    pub fn timeout_secs(mut self, secs: impl Into<Option<u32>>) -> Self {
        self.request.timeout_secs = secs.into();
        self
    }

    /// The request, if it keeps the rules ([`CommandRequest::validate`]).
    pub fn build(self) -> Result<CommandRequest, Invalid> {
        self.request.validate()?;
        Ok(self.request)
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct CommandAccepted {
    /// Id (the command is stored before this is returned).
    pub command_id: Uuid,
}

impl CommandAccepted {
    /// The answer for the command `command_id`.
    pub fn new(command_id: Uuid) -> Self {
        CommandAccepted { command_id }
    }
}

page_query! {
    /// Paging of an agent's commands.
    pub struct CommandPage {
        /// At most this many (default 50).
        limit: 1 ..= 500, default 50,
        /// Only commands older than this command id.
        before: Uuid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(req: Result<CommandRequest, Invalid>, expected: Result<(), (&str, &str)>) {
        let got = req.map(|_| ()).map_err(|e| {
            assert_eq!(e.status, 422, "{e:?}");
            (e.code, e.message)
        });
        let expected = expected.map_err(|(code, message)| (code, message.to_owned()));
        assert_eq!(got, expected);
    }

    #[test]
    fn command_rules() {
        let b = |script: &str| CommandRequest::builder(CommandType::Sh, script);
        check(b("true").build(), Ok(()));
        check(b(" x ").timeout_secs(1).build(), Ok(()));
        check(b("x").timeout_secs(MAX_TIMEOUT_SECS).build(), Ok(()));
        check(b("x").timeout_secs(None).build(), Ok(()));
        for blank in ["", "   ", "\t\n", "\u{3000}"] {
            check(
                b(blank).build(),
                Err(("invalid_command", "command is empty")),
            );
        }
        let range = "timeout_secs must be between 1 and 604800";
        check(
            b("x").timeout_secs(0).build(),
            Err(("invalid_timeout", range)),
        );
        check(
            b("x").timeout_secs(MAX_TIMEOUT_SECS + 1).build(),
            Err(("invalid_timeout", range)),
        );
        // blank first, as the server checks
        check(
            b(" ").timeout_secs(0).build(),
            Err(("invalid_command", "command is empty")),
        );
        assert_eq!(MAX_TIMEOUT_SECS, 7 * 86_400);
    }

    #[test]
    fn builder_defaults_and_shell() {
        let r = CommandRequest::builder(CommandType::Python, "print(1)")
            .context(CommandContext::UserSession)
            .build()
            .expect("valid");
        assert_eq!(
            (r.command_type, r.context, r.timeout_secs),
            (CommandType::Python, CommandContext::UserSession, None)
        );
        let s = CommandRequest::shell("uptime");
        assert_eq!(
            (s.command_type, s.context, s.timeout_secs),
            (CommandType::Shell, CommandContext::System, None)
        );
        // not checked until validate
        assert!(CommandRequest::shell(" ").validate().is_err());
    }

    #[test]
    fn request_wire_format() {
        let r = CommandRequest::builder(CommandType::Bash, "echo")
            .build()
            .expect("valid");
        assert_eq!(
            serde_json::to_value(&r).expect("serialize"),
            serde_json::json!({"command_type": "bash", "command": "echo", "context": "system"})
        );
        let read = |json: serde_json::Value| serde_json::from_value::<CommandRequest>(json);
        let r =
            read(serde_json::json!({"command_type": "sh", "command": "x", "timeout_secs": 30.0}))
                .expect("integral float");
        assert_eq!(
            (r.context, r.timeout_secs),
            (CommandContext::System, Some(30))
        );
        let r =
            read(serde_json::json!({"command_type": "sh", "command": "x", "timeout_secs": null}))
                .expect("null timeout");
        assert_eq!(r.timeout_secs, None);
        for bad in [
            serde_json::json!({"command_type": "sh", "command": "x", "timeout_secs": 1.5}),
            serde_json::json!({"command_type": "sh", "command": "x", "timeout_secs": -1}),
            serde_json::json!({"command_type": "sh", "command": "x", "timeout_secs": 4_294_967_296_u64}),
            serde_json::json!({"command_type": "sh", "command": "x", "timeout_secs": "10"}),
            serde_json::json!({"command_type": "zsh", "command": "x"}),
            serde_json::json!({"command_type": "sh"}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_and_phase_words() {
        use CommandStatus::*;
        let cases = [
            (Running, "running"),
            (Completed, "completed"),
            (Failed, "failed"),
            (Timeout, "timeout"),
            (Cancelled, "cancelled"),
        ];
        crate::words::check_words(&cases, CommandStatus::WORDS, CommandStatus::parse);
        let statuses: Vec<CommandStatus> = cases.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, CommandStatus::ALL);
        let finals: Vec<bool> = CommandStatus::ALL.iter().map(|s| s.is_final()).collect();
        assert_eq!(finals, [false, true, true, true, true]);
        let phases = [
            (Phase::Queued, "queued"),
            (Phase::Delivered, "delivered"),
            (Phase::Executing, "executing"),
            (Phase::Done, "done"),
        ];
        crate::words::check_words(&phases, Phase::WORDS, Phase::parse);
    }

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("fixture")
            .with_timezone(&Utc)
    }

    #[test]
    fn view_wire_format() {
        let id = Uuid::from_u128(1);
        let agent = Uuid::from_u128(2);
        let mut v = CommandView::new(id, agent, CommandType::Sh, ts("2026-11-23T18:00:00Z"));
        v.context = Some(CommandContext::System);
        v.started_at = Some(ts("2026-11-23T18:00:01.5+01:00"));
        let listed = serde_json::to_value(&v).expect("ser");
        assert_eq!(listed["created_at"], "2026-11-23T18:00:00.000Z");
        assert_eq!(listed["started_at"], "2026-11-23T17:00:01.500Z");
        assert_eq!(listed["delivered_at"], serde_json::Value::Null);
        assert_eq!(
            (&listed["status"], &listed["phase"]),
            (&"running".into(), &"queued".into())
        );
        for omitted in ["command_text", "stdout", "stderr"] {
            assert!(listed.get(omitted).is_none(), "{omitted}: {listed}");
        }
        v.command_text = "true".into();
        v.stdout = String::new().into();
        v.stderr = "err".into();
        let full = serde_json::to_value(&v).expect("ser");
        assert_eq!(
            (&full["command_text"], &full["stdout"], &full["stderr"]),
            (&"true".into(), &"".into(), &"err".into())
        );
        let back: CommandView = serde_json::from_value(full).expect("round trip");
        assert_eq!(back, v);
        let back: CommandView = serde_json::from_value(listed).expect("round trip");
        assert!(back.command_text.is_omitted() && back.stdout.is_empty());
    }

    #[test]
    fn views_read_leniently() {
        let json = r#"{"id":"0a0a0a0a-0000-4000-8000-000000000001","agent_id":"0a0a0a0a-0000-4000-8000-000000000002",
            "command_type":"bash","status":"completed","exit_code":0,"stdout":null,"stdout_truncated":null,
            "created_by":null,"created_at":"2026-11-23T18:00:00Z","later":1}"#;
        let v: CommandView = serde_json::from_str(json).expect("lenient");
        assert!(v.is_final() && v.is_success());
        assert_eq!((v.phase, v.context, v.stdout_bytes), (None, None, 0));
        assert!(v.stdout.is_omitted() && v.stdout.is_empty() && !v.stdout_truncated);
        assert_eq!((v.created_by.as_str(), v.delivered_at), ("", None));
        let failed = CommandView {
            exit_code: Some(1),
            status: CommandStatus::Failed,
            ..v
        };
        assert!(failed.is_final() && !failed.is_success());
    }

    #[test]
    fn detail_text() {
        let t = DetailText::from("abc");
        assert_eq!(
            (t.as_str(), t.is_empty(), t.is_omitted()),
            ("abc", false, false)
        );
        assert!(t.starts_with("ab") && t.len() == 3);
        let owned = String::from("abc");
        assert_eq!(t, owned);
        assert_eq!(t.to_string(), "abc");
        assert_eq!(String::from(t), "abc");
        let o = DetailText::omitted();
        assert_eq!((o.as_str(), o.is_empty(), o.is_omitted()), ("", true, true));
        assert_eq!(o, DetailText::default());
        assert_ne!(o, DetailText::from(""));
    }

    #[test]
    fn command_page_limit() {
        assert_eq!(CommandPage::default().checked_limit(), Ok(50));
        assert_eq!(CommandPage::new(Some(1), None).checked_limit(), Ok(1));
        assert_eq!(CommandPage::new(Some(500), None).checked_limit(), Ok(500));
        for bad in [0, 501] {
            let e = CommandPage::new(Some(bad), None)
                .checked_limit()
                .unwrap_err();
            assert_eq!(
                (e.status, e.code, e.message.as_str()),
                (400, "invalid_query", "limit must be between 1 and 500")
            );
        }
    }
}
