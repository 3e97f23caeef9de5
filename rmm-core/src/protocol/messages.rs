//! The control-message catalogue.
//!
//! Field names are a stable public contract (see `docs/PROTOCOL.md`); new
//! optional fields may be added with `#[serde(default)]`, existing ones are
//! never renamed. Timestamps are unix milliseconds (UTC).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An inclusive range of protocol versions a peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    /// Oldest version spoken.
    pub min: u32,
    /// Newest version spoken.
    pub max: u32,
}

/// One control message. The JSON form is internally tagged:
/// `{"type": "heartbeat", "seq": 7}`.
///
/// The direction of each message is given in its documentation; a peer that
/// receives a message meant for the other direction treats it as a protocol
/// error of that message only (it does not drop the connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// Agent -> server, first message on a connection: who the agent is and
    /// which protocol versions it speaks.
    Hello(Hello),
    /// Server -> agent, the answer to [`Message::Hello`]: the chosen protocol
    /// version and the agent's settings.
    Welcome(Welcome),
    /// Agent -> server, every `heartbeat_interval_secs`.
    Heartbeat(Heartbeat),
    /// Server -> agent: run a command (re-sent until a result is acknowledged;
    /// the agent deduplicates by `command_id`).
    RunCommand(RunCommand),
    /// Server -> agent: stop a running or queued command; the agent answers
    /// with a [`CommandResult`] of outcome `cancelled`.
    CancelCommand(CommandRef),
    /// Agent -> server: the command's process was started.
    CommandStarted(CommandStarted),
    /// Agent -> server: a chunk of a command's output while it runs.
    CommandOutput(CommandOutput),
    /// Agent -> server: the command reached a final state.
    CommandResult(CommandResult),
    /// Server -> agent: the result of `command_id` is stored durably; the
    /// agent may forget the result's output.
    CommandAck(CommandRef),
    /// Server -> agent: a technician opens a tunnel session.
    TunnelOpen(TunnelOpen),
    /// Agent -> server: the agent switched to tunnel mode for this session.
    TunnelReady(SessionRef),
    /// Either way: the session ends; every channel in it ends with it.
    TunnelClose(TunnelClose),
    /// Agent -> server: the session could not be opened or failed.
    TunnelError(TunnelError),
    /// Either way: open a channel inside the current session.
    ChannelOpen(ChannelOpen),
    /// Either way: the channel was accepted; carries the acceptor's window.
    ChannelAccept(ChannelAccept),
    /// Either way: the channel was refused.
    ChannelReject(ChannelReject),
    /// Either way: the receiver consumed `bytes` and grants that much more
    /// credit to the sender.
    WindowAdjust(WindowAdjust),
    /// Either way: the sender will send no more data on this channel.
    ChannelEof(ChannelRef),
    /// Either way: the channel is gone (a `reset` close discards unread data).
    ChannelClose(ChannelClose),
    /// Agent -> server: a plugin result that changed since it was last sent.
    Inventory(Inventory),
    /// Server -> agent: a newer build is available on the agent's channel.
    UpdateAvailable(UpdateAvailable),
    /// Either way: a protocol-level error about the connection or a message.
    Error(ProtocolError),
    /// A message kind this build does not know (sent by a newer peer). It is
    /// decoded without error so the connection survives; receivers ignore it.
    #[serde(other)]
    Unknown,
}

impl Message {
    /// The stable wire name of this message's kind (`"heartbeat"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::Heartbeat(_) => "heartbeat",
            Message::RunCommand(_) => "run_command",
            Message::CancelCommand(_) => "cancel_command",
            Message::CommandStarted(_) => "command_started",
            Message::CommandOutput(_) => "command_output",
            Message::CommandResult(_) => "command_result",
            Message::CommandAck(_) => "command_ack",
            Message::TunnelOpen(_) => "tunnel_open",
            Message::TunnelReady(_) => "tunnel_ready",
            Message::TunnelClose(_) => "tunnel_close",
            Message::TunnelError(_) => "tunnel_error",
            Message::ChannelOpen(_) => "channel_open",
            Message::ChannelAccept(_) => "channel_accept",
            Message::ChannelReject(_) => "channel_reject",
            Message::WindowAdjust(_) => "window_adjust",
            Message::ChannelEof(_) => "channel_eof",
            Message::ChannelClose(_) => "channel_close",
            Message::Inventory(_) => "inventory",
            Message::UpdateAvailable(_) => "update_available",
            Message::Error(_) => "error",
            Message::Unknown => "unknown",
        }
    }
}

/// Agent identity and capabilities, sent first on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol versions the agent speaks.
    pub protocol: VersionRange,
    /// The agent's id, as issued at enrollment.
    pub agent_id: Uuid,
    /// The agent build's version (semver).
    pub agent_version: String,
    /// Operating system (`linux`, `windows`, `darwin`).
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// The machine's host name.
    pub hostname: String,
    /// A stable, app-specific hash of the machine identity, used by the
    /// server to deduplicate re-enrolled machines.
    pub machine_uid: String,
    /// The release channel the agent follows (`stable` or `beta`).
    pub channel: String,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The negotiated protocol version both sides now speak.
    pub protocol: u32,
    /// The agent id the server authenticated.
    pub agent_id: Uuid,
    /// How often the agent sends [`Heartbeat`]s.
    pub heartbeat_interval_secs: u32,
    /// Settings the server wants the agent to apply.
    #[serde(default)]
    pub settings: AgentSettings,
}

/// Agent settings pushed by the server in [`Welcome`]. Every field has a
/// default so older servers may omit any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSettings {
    /// Cap on each output stream of a command, in bytes; output past it is
    /// dropped and the result is flagged `*_truncated`.
    pub max_output_bytes: u64,
    /// Commands the agent runs at once; the rest wait in its queue.
    pub max_concurrent_commands: u32,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            max_output_bytes: 16 * 1024 * 1024,
            max_concurrent_commands: 4,
        }
    }
}

/// Liveness signal from the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increases by one per heartbeat on a connection.
    pub seq: u64,
    /// Commands currently running on the agent.
    #[serde(default)]
    pub running: u32,
}

/// The interpreter a command is run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandType {
    /// `/bin/sh -c` (an alias of [`CommandType::Sh`] kept for API compatibility).
    Shell,
    /// `bash`.
    Bash,
    /// `/bin/sh -c`.
    Sh,
    /// `pwsh` (or `powershell.exe` on Windows).
    Powershell,
    /// `python3`.
    Python,
}

/// The security context a command runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandContext {
    /// As the agent's own user.
    #[default]
    System,
    /// As the user of the machine's active local session; fails when there
    /// is none (never silently as the agent's user).
    UserSession,
}

/// Error returned when a word is not one of an enum's wire names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {word:?}, expected one of: {}", .expected.join(", "))]
pub struct UnknownWord {
    /// What was being parsed (`command type`, ...).
    pub what: &'static str,
    /// The word that was given.
    pub word: String,
    /// The accepted words.
    pub expected: &'static [&'static str],
}

macro_rules! wire_words {
    ($ty:ident, $what:literal, { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// Every wire name, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The stable wire name.
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$variant => $word),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($ty::$variant),)+
                    _ => Err(UnknownWord {
                        what: $what,
                        word: s.to_owned(),
                        expected: Self::WORDS,
                    }),
                }
            }
        }
    };
}

wire_words!(CommandType, "command type", {
    Shell => "shell", Bash => "bash", Sh => "sh", Powershell => "powershell", Python => "python",
});
wire_words!(CommandContext, "context", { System => "system", UserSession => "user_session" });
wire_words!(CommandOutcome, "command outcome", {
    Completed => "completed", Failed => "failed", Timeout => "timeout", Cancelled => "cancelled",
});
wire_words!(OutputStream, "output stream", { Stdout => "stdout", Stderr => "stderr" });

/// A command to run on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCommand {
    /// Server-assigned id; the agent deduplicates re-deliveries by it.
    pub command_id: Uuid,
    /// Interpreter.
    pub command_type: CommandType,
    /// The script text (may be several MiB; the agent passes it by file or
    /// stdin, never argv).
    pub command: String,
    /// Security context.
    #[serde(default)]
    pub context: CommandContext,
    /// Kill the process group after this many seconds (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

/// Names one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRef {
    /// The command.
    pub command_id: Uuid,
}

/// The command's process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStarted {
    /// The command.
    pub command_id: Uuid,
    /// When the process started (unix ms).
    pub started_at_ms: u64,
}

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of command output.
///
/// `offset` is the byte offset of `data` within the stream's UTF-8 text (as
/// the agent sends it: invalid sequences replaced by U+FFFD, chunks cut on
/// character boundaries). Offsets make chunks idempotent: a receiver appends
/// a chunk only when `offset` equals what it already holds, so re-sent
/// chunks after a reconnect are harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The command.
    pub command_id: Uuid,
    /// stdout or stderr.
    pub stream: OutputStream,
    /// Byte offset of `data` within the stream.
    pub offset: u64,
    /// The text.
    pub data: String,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Ran to its end and exited with status 0.
    Completed,
    /// Exited non-zero, was killed by a signal, or could not be started.
    Failed,
    /// Killed because it exceeded `timeout_secs`.
    Timeout,
    /// Killed because it was cancelled.
    Cancelled,
}

/// A command's final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command.
    pub command_id: Uuid,
    /// How it ended.
    pub outcome: CommandOutcome,
    /// The process exit code, when it exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why the command failed before or outside the process (e.g.
    /// `no active user session`, `powershell is not installed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Total bytes of stdout text sent in [`CommandOutput`] chunks.
    pub stdout_bytes: u64,
    /// Total bytes of stderr text sent in [`CommandOutput`] chunks.
    pub stderr_bytes: u64,
    /// stdout exceeded the cap and was cut.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// stderr exceeded the cap and was cut.
    #[serde(default)]
    pub stderr_truncated: bool,
    /// When the process started (unix ms), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// When the command ended (unix ms).
    pub finished_at_ms: u64,
}

/// Names one tunnel session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session.
    pub session_id: Uuid,
}

/// Open a tunnel session on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelOpen {
    /// Server-assigned session id.
    pub session_id: Uuid,
    /// Who owns the session (for the agent's audit log).
    pub technician: String,
}

/// End a tunnel session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelClose {
    /// The session.
    pub session_id: Uuid,
    /// Why (free text for logs).
    #[serde(default)]
    pub reason: String,
}

/// Why a tunnel could not be opened or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TunnelErrorCode {
    /// The agent already has an active session (the server answers 409).
    Busy,
    /// The session id is not the agent's current session.
    UnknownSession,
    /// The session went idle for too long.
    IdleTimeout,
    /// A peer broke the tunnel protocol.
    Protocol,
    /// A code this build does not know.
    #[serde(other)]
    Other,
}

/// A tunnel failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelError {
    /// The session.
    pub session_id: Uuid,
    /// Machine-readable reason.
    pub code: TunnelErrorCode,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
}

/// What a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChannelKind {
    /// An interactive PTY shell.
    Terminal,
    /// A file upload or download.
    File,
    /// A TCP port forward.
    PortForward,
    /// Windows registry browsing.
    Registry,
    /// Service management.
    Service,
    /// A kind this build does not know; it is refused with
    /// `unsupported_kind`, never a connection error.
    #[serde(other)]
    Unknown,
}

wire_words!(ChannelKind, "channel kind", {
    Terminal => "terminal", File => "file", PortForward => "port_forward",
    Registry => "registry", Service => "service", Unknown => "unknown",
});

/// Names one channel (channel ids are unique per connection and never
/// reused on it, so a late frame of a closed channel cannot be mistaken for
/// a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRef {
    /// The channel.
    pub channel_id: u32,
}

/// Open a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelOpen {
    /// Opener-assigned id.
    pub channel_id: u32,
    /// What the channel carries.
    pub kind: ChannelKind,
    /// Bytes the opener is ready to receive before its first window adjust.
    pub initial_window: u32,
    /// Largest data-frame payload the opener accepts.
    pub max_packet: u32,
    /// Kind-specific parameters (terminal size, file path, forward target).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
}

/// Accept a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccept {
    /// The channel.
    pub channel_id: u32,
    /// Bytes the acceptor is ready to receive before its first window adjust.
    pub initial_window: u32,
    /// Largest data-frame payload the acceptor accepts.
    pub max_packet: u32,
}

/// Why a channel was refused or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChannelErrorCode {
    /// The channel kind is not supported by the receiver.
    UnsupportedKind,
    /// The session already has the maximum number of channels.
    TooManyChannels,
    /// The id is already in use on this connection.
    DuplicateId,
    /// There is no session to open the channel in.
    NoSession,
    /// The peer sent more than its window allowed (the channel is reset).
    WindowExceeded,
    /// A data frame was larger than the agreed maximum packet.
    PacketTooLarge,
    /// The kind's handler refused (bad parameters, not permitted...).
    Refused,
    /// The channel open was not answered in time.
    Timeout,
    /// The peer broke the channel protocol (data after its EOF, a zero
    /// maximum packet, ...).
    Protocol,
    /// A code this build does not know.
    #[serde(other)]
    Other,
}

/// Refuse a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelReject {
    /// The channel.
    pub channel_id: u32,
    /// Machine-readable reason.
    pub code: ChannelErrorCode,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
}

/// Return credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowAdjust {
    /// The channel.
    pub channel_id: u32,
    /// Bytes of additional credit.
    pub bytes: u32,
}

/// Close a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelClose {
    /// The channel.
    pub channel_id: u32,
    /// Set when the channel is torn down because of an error; carries why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ChannelErrorCode>,
}

/// A plugin result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// The plugin's name (its file name).
    pub plugin: String,
    /// What it printed (JSON), or `"unknown"` when it failed.
    pub result: serde_json::Value,
    /// Why the plugin failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the result was collected (unix ms).
    pub collected_at_ms: u64,
}

/// A newer agent build is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAvailable {
    /// The build's version.
    pub version: String,
    /// Where to download it (absolute URL).
    pub url: String,
    /// Its SHA-256, lowercase hex; the agent verifies it before installing.
    pub sha256: String,
    /// The channel the build is tagged with.
    pub channel: String,
}

/// A protocol error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolError {
    /// Machine-readable code (`unsupported_protocol`, `bad_message`,
    /// `unauthorized`, ...).
    pub code: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
}
