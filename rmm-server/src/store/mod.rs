//! The store: every piece of authoritative server state (users, agents,
//! enrollment tokens, the durable command queue with its output and
//! results, the audit log) behind one object-safe [`Store`] trait.
//!
//! One implementation, [`SqlStore`], serves two databases with one SQL text
//! (`$N` placeholders, unix-ms `BIGINT` timestamps, UUIDs as text); they
//! differ only in their migrations, pool setup and a dialect-specific
//! statement (see [`Driver`]):
//!
//! - [`SqliteStore`]: a file (`<data-dir>/rmm.db`) in WAL mode with a busy
//!   timeout, one writer connection and a pool of readers;
//! - [`PgStore`]: PostgreSQL, safe for several server replicas sharing one
//!   database (every state change is a conditional `UPDATE`, migrations run
//!   under an advisory lock, commands posted on one replica are announced to
//!   the others with `NOTIFY`).
//!
//! Both pass one conformance suite (`tests/it/store.rs`).

pub mod bus;
pub mod migrations;
mod sql;

use futures_util::future::BoxFuture;
use rmm_core::protocol::{CommandContext, CommandResult, CommandType, OutputStream};
use uuid::Uuid;

pub use bus::{LocalBus, PgBus, WakeBus};
/// A user's role, a command's status and phase: the API's words, stored
/// as they are sent.
pub use rmm_api::{CommandStatus, Phase, Role};
pub use sql::{Driver, PgStore, SqlStore, SqliteStore};

/// The future every store method returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was violated (e-mail or agent name taken).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A row holds a value this build cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A schema migration failed (or an applied one was changed).
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names no supported backend.
    #[error("unsupported database url {0:?}: use postgres://... or sqlite://PATH")]
    UnsupportedUrl(String),
    /// The SQLite file could not be created.
    #[error("cannot create the database file {path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Lower-cased e-mail address (the login name).
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Creation time (unix ms).
    pub created_at: i64,
    /// Last change (unix ms).
    pub updated_at: i64,
    /// Tokens carry this; any change of the user increments it, which
    /// ends every session issued before.
    pub token_version: i64,
    /// When the user was disabled (unix ms); a disabled user cannot log
    /// in and their tokens are refused.
    pub disabled_at: Option<i64>,
}

impl User {
    /// A new, enabled user with a fresh id.
    pub fn new(email: &str, password_hash: String, role: Role, now: i64) -> User {
        User {
            id: Uuid::new_v4(),
            email: email.trim().to_lowercase(),
            password_hash,
            role,
            created_at: now,
            updated_at: now,
            token_version: 0,
            disabled_at: None,
        }
    }
}

/// A change to a user; `None` fields stay as they are. Any change ends the
/// user's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    /// New role.
    pub role: Option<Role>,
    /// New argon2id PHC string.
    pub password_hash: Option<String>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
}

/// An agent row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Id.
    pub id: Uuid,
    /// The name given at enrollment (DNS label).
    pub name: String,
    /// Host name reported in `hello`.
    pub hostname: String,
    /// OS reported in `hello`.
    pub os: String,
    /// Architecture reported in `hello`.
    pub arch: String,
    /// Agent build version reported in `hello`.
    pub agent_version: String,
    /// Release channel.
    pub channel: String,
    /// Machine identity hash reported in `hello`.
    pub machine_uid: Option<String>,
    /// Address the payload was fetched from, then the last connection's.
    pub address: Option<String>,
    /// A connection is (or was, until a replica died) open.
    pub online: bool,
    /// Last time the agent was heard from (unix ms, coalesced).
    pub last_seen: Option<i64>,
    /// Creation time (unix ms).
    pub created_at: i64,
    /// When the enrollment payload was taken (unix ms).
    pub enrolled_at: Option<i64>,
    /// When the agent was retired (deleted or replaced) (unix ms).
    pub retired_at: Option<i64>,
    /// The agent that replaced this one (identity dedup).
    pub replaced_by: Option<Uuid>,
}

/// What an agent says about itself in `hello`, plus connection facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHello {
    /// The authenticated agent.
    pub agent_id: Uuid,
    /// This connection's id (guards the offline write against a newer
    /// connection of the same agent).
    pub session_id: Uuid,
    /// Host name.
    pub hostname: String,
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Build version.
    pub agent_version: String,
    /// Release channel.
    pub channel: String,
    /// Machine identity hash (empty: unknown, no dedup).
    pub machine_uid: String,
    /// Peer address.
    pub address: String,
    /// Now (unix ms).
    pub now: i64,
    /// An agent row marked online whose `last_seen` is older than this
    /// (unix ms) counts as offline (its server went away without saying).
    pub live_after: i64,
}

/// What recording a `hello` decided.
///
/// A credential's machine identity is bound by its first `hello` and never
/// changes afterwards; deduplication by machine happens only at that first
/// `hello` of a freshly enrolled credential (an admin-authorised
/// enrollment), only retires agents that are offline, and never moves a
/// command from one agent to another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloOutcome {
    /// Recorded; `replaced` lists the agents this first `hello` retired
    /// (same machine, re-enrolled). Their unfinished commands were
    /// cancelled, not moved.
    Accepted {
        /// Agents retired by this enrollment's first `hello`.
        replaced: Vec<Uuid>,
    },
    /// The credential is bound to another machine identity: refused,
    /// nothing recorded.
    MachineMismatch {
        /// The identity bound to the credential.
        recorded: String,
    },
    /// A first `hello` claims the machine of an agent that is online right
    /// now: refused, nothing recorded (a genuine re-enrollment retries once
    /// the old agent has gone).
    MachineInUse {
        /// The online agent with that machine identity.
        by: Uuid,
    },
}

/// A new enrollment: the agent row and its one-time token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrollment {
    /// The agent id the bundle is for.
    pub agent_id: Uuid,
    /// DNS-label agent name (unique among live agents).
    pub agent_name: String,
    /// SHA-256 of the token, lowercase hex.
    pub token_hash: String,
    /// The URL the agent will connect to.
    pub server_url: String,
    /// The release channel the agent starts on.
    pub channel: String,
    /// Who asked (e-mail).
    pub created_by: String,
    /// Now (unix ms).
    pub created_at: i64,
    /// Expiry (unix ms).
    pub expires_at: i64,
}

/// An enrollment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The agent.
    pub agent_id: Uuid,
    /// The agent's name.
    pub agent_name: String,
    /// The URL the agent will connect to.
    pub server_url: String,
    /// Release channel.
    pub channel: String,
    /// Expiry (unix ms).
    pub expires_at: i64,
}

/// A command to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    /// Id.
    pub id: Uuid,
    /// Target agent.
    pub agent_id: Uuid,
    /// Interpreter.
    pub command_type: CommandType,
    /// Script text.
    pub command_text: String,
    /// Security context.
    pub context: CommandContext,
    /// Timeout.
    pub timeout_secs: Option<u32>,
    /// Who submitted it (e-mail).
    pub created_by: String,
    /// Now (unix ms).
    pub created_at: i64,
}

/// A stored command. `stdout`/`stderr` are empty in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Id.
    pub id: Uuid,
    /// Target agent.
    pub agent_id: Uuid,
    /// Interpreter.
    pub command_type: CommandType,
    /// Script text.
    pub command_text: String,
    /// Security context.
    pub context: CommandContext,
    /// Timeout.
    pub timeout_secs: Option<u32>,
    /// Status.
    pub status: CommandStatus,
    /// Phase.
    pub phase: Phase,
    /// Exit code once it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it.
    pub signal: Option<i32>,
    /// Failure outside the process.
    pub error: Option<String>,
    /// Stored stdout (at most the output cap).
    pub stdout: String,
    /// Stored stderr (at most the output cap).
    pub stderr: String,
    /// Bytes of stdout received from the agent (the next expected offset).
    pub stdout_len: u64,
    /// Bytes of stderr received from the agent.
    pub stderr_len: u64,
    /// stdout was cut (by the agent or the server cap).
    pub stdout_truncated: bool,
    /// stderr was cut.
    pub stderr_truncated: bool,
    /// Submitter.
    pub created_by: String,
    /// Accepted (unix ms).
    pub created_at: i64,
    /// First sent to the agent (unix ms).
    pub delivered_at: Option<i64>,
    /// Started on the agent (unix ms).
    pub started_at: Option<i64>,
    /// Reached a final status (unix ms).
    pub completed_at: Option<i64>,
    /// Cancellation asked (unix ms).
    pub cancel_requested_at: Option<i64>,
}

/// A command to send to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommand {
    /// Id.
    pub id: Uuid,
    /// Interpreter.
    pub command_type: CommandType,
    /// Script text.
    pub command_text: String,
    /// Security context.
    pub context: CommandContext,
    /// Timeout.
    pub timeout_secs: Option<u32>,
}

/// What happened to an output chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended (possibly cut at the cap).
    Appended,
    /// Already held (a re-send) or not contiguous; ignored.
    Ignored,
    /// No running command with this id for this agent.
    Unknown,
}

/// What happened to a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishOutcome {
    /// Stored; acknowledge it.
    Stored,
    /// The command was already final; acknowledge again (duplicate).
    AlreadyFinal,
    /// The output held does not match the result's byte counts yet; do not
    /// acknowledge, ask for a re-send.
    Incomplete {
        /// stdout bytes held.
        stdout_len: u64,
        /// stderr bytes held.
        stderr_len: u64,
    },
    /// No such command for this agent; acknowledge so the agent forgets it.
    Unknown,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The command had not been delivered: it is `cancelled` now.
    CancelledQueued,
    /// The agent has it: a `cancel_command` is due; it becomes `cancelled`
    /// when the agent reports, or after the cancel grace period.
    Requested,
    /// It was already final.
    AlreadyFinal(CommandStatus),
    /// No such command.
    NotFound,
}

/// A command the sweeper made final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredCommand {
    /// The command.
    pub id: Uuid,
    /// Its agent.
    pub agent_id: Uuid,
    /// `timeout` or `cancelled`.
    pub status: CommandStatus,
}

/// The latest result of one plugin on one agent (SPEC §8).
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryItem {
    /// The agent.
    pub agent_id: Uuid,
    /// The plugin's name.
    pub plugin: String,
    /// What it printed (JSON; `"unknown"` when it failed).
    pub result: serde_json::Value,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When the agent collected it (unix ms, agent clock).
    pub collected_at: i64,
    /// When the server received it (unix ms).
    pub received_at: i64,
}

/// An audit record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// When (unix ms).
    pub at: i64,
    /// Who: a user's e-mail, `agent:<id>`, `system`, or the e-mail tried.
    pub actor: String,
    /// What (`login.success`, `command.submit`, ...).
    pub action: String,
    /// On what (an id), if anything.
    pub target: Option<String>,
    /// From which address.
    pub address: Option<String>,
    /// Details (JSON object).
    pub detail: serde_json::Value,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// The record.
    pub entry: NewAudit,
}

/// The store. Every method is one short transaction (or one statement);
/// conditional updates make them safe when several server replicas share
/// one PostgreSQL database.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Applies pending schema migrations (idempotent).
    fn migrate(&self) -> StoreFuture<'_, ()>;

    /// Number of users.
    fn count_users(&self) -> StoreFuture<'_, i64>;
    /// Adds a user; [`StoreError::Conflict`] when the e-mail is taken.
    fn create_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, ()>;
    /// Finds a user by (lower-cased) e-mail.
    fn user_by_email<'a>(&'a self, email: &'a str) -> StoreFuture<'a, Option<User>>;
    /// Finds a user by id.
    fn user_by_id(&self, id: Uuid) -> StoreFuture<'_, Option<User>>;
    /// Every user, by e-mail.
    fn list_users(&self) -> StoreFuture<'_, Vec<User>>;
    /// Changes a user (role, password, disabled) and ends their sessions;
    /// false when there is no such user.
    fn update_user(&self, id: Uuid, change: UserChange, now: i64) -> StoreFuture<'_, bool>;
    /// Deletes a user; false when there is no such user.
    fn delete_user(&self, id: Uuid) -> StoreFuture<'_, bool>;

    /// Registers the agent row and the token;
    /// [`StoreError::Conflict`] when a live agent has that name.
    fn create_enrollment<'a>(&'a self, e: &'a NewEnrollment) -> StoreFuture<'a, ()>;
    /// The enrollment of an unused, unexpired token.
    fn pending_enrollment<'a>(
        &'a self,
        token_hash: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Option<Enrollment>>;
    /// Atomically takes an unused, unexpired token (exactly one caller
    /// wins), records `address` and sets the agent's secret hash.
    fn redeem_enrollment<'a>(
        &'a self,
        token_hash: &'a str,
        now: i64,
        address: &'a str,
        secret_hash: &'a str,
    ) -> StoreFuture<'a, Option<Enrollment>>;
    /// Deletes used and expired tokens, and the agent rows of tokens that
    /// expired unused. Returns how many tokens were removed.
    fn sweep_enrollments(&self, now: i64) -> StoreFuture<'_, u64>;

    /// The secret hash of a live, enrolled agent.
    fn agent_secret_hash(&self, id: Uuid) -> StoreFuture<'_, Option<String>>;
    /// Every live agent, by name.
    fn list_agents(&self) -> StoreFuture<'_, Vec<Agent>>;
    /// One agent (retired ones too).
    fn get_agent(&self, id: Uuid) -> StoreFuture<'_, Option<Agent>>;
    /// Records a `hello`: descriptive fields, online, address. The first
    /// `hello` of a credential binds its machine identity and retires other
    /// offline live agents with the same non-empty `machine_uid` (their
    /// credential is revoked, their unfinished commands cancelled); a
    /// later `hello` must claim the bound identity. See [`HelloOutcome`].
    fn agent_connected<'a>(&'a self, hello: &'a AgentHello) -> StoreFuture<'a, HelloOutcome>;
    /// Marks the agent offline if `session_id` is still its current session.
    fn agent_disconnected(&self, id: Uuid, session_id: Uuid, now: i64) -> StoreFuture<'_, ()>;
    /// Coalesced `last_seen` update of many agents in one statement.
    fn touch_agents<'a>(&'a self, seen: &'a [(Uuid, i64)]) -> StoreFuture<'a, ()>;
    /// Retires (decommissions) an agent: credential revoked, name freed,
    /// history kept. False when there is no such live agent.
    fn retire_agent(&self, id: Uuid, now: i64) -> StoreFuture<'_, bool>;

    /// Stores a new command (`running`, `queued`).
    fn insert_command<'a>(&'a self, cmd: &'a NewCommand) -> StoreFuture<'a, ()>;
    /// One command with its output.
    fn get_command(&self, id: Uuid) -> StoreFuture<'_, Option<Command>>;
    /// An agent's commands, newest first, older than `before` (a command
    /// id), without output text.
    fn list_commands(
        &self,
        agent_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Command>>;
    /// Commands to send to the agent: the `queued` ones (marked
    /// `delivered` now, with their timeout deadline), and with
    /// `include_inflight` also the delivered/executing ones (after a
    /// reconnect every non-final command is sent again).
    fn deliverable_commands(
        &self,
        agent_id: Uuid,
        now: i64,
        grace_ms: i64,
        include_inflight: bool,
    ) -> StoreFuture<'_, Vec<PendingCommand>>;
    /// Running commands of the agent with a pending cancel request.
    fn cancel_requests(&self, agent_id: Uuid) -> StoreFuture<'_, Vec<Uuid>>;
    /// The agent started the command; false when it is not a running
    /// command of this agent.
    fn command_started(&self, agent_id: Uuid, id: Uuid, started_at: i64) -> StoreFuture<'_, bool>;
    /// Appends an output chunk when `offset` is what is held (idempotent);
    /// text past `cap` bytes is dropped and flagged truncated.
    fn append_output<'a>(
        &'a self,
        agent_id: Uuid,
        id: Uuid,
        stream: OutputStream,
        offset: u64,
        data: &'a str,
        cap: u64,
    ) -> StoreFuture<'a, AppendOutcome>;
    /// Stores a final result if the output held is complete.
    fn finish_command<'a>(
        &'a self,
        agent_id: Uuid,
        result: &'a CommandResult,
        now: i64,
    ) -> StoreFuture<'a, FinishOutcome>;
    /// Asks for a command's cancellation.
    fn request_cancel(&self, id: Uuid, now: i64) -> StoreFuture<'_, CancelOutcome>;
    /// Makes overdue commands final: past their timeout deadline ->
    /// `timeout`; cancel requested more than `cancel_grace_ms` ago ->
    /// `cancelled`.
    fn expire_commands(
        &self,
        now: i64,
        cancel_grace_ms: i64,
    ) -> StoreFuture<'_, Vec<ExpiredCommand>>;
    /// Agents with queued commands or pending cancel requests.
    fn agents_with_work(&self) -> StoreFuture<'_, Vec<Uuid>>;
    /// Number of commands per status.
    fn command_counts(&self) -> StoreFuture<'_, Vec<(CommandStatus, i64)>>;

    /// Stores a plugin result, unless a newer one (by `collected_at`) is
    /// held; true when stored.
    fn put_inventory<'a>(&'a self, item: &'a InventoryItem) -> StoreFuture<'a, bool>;
    /// The latest result of each plugin of an agent, by plugin name.
    fn list_inventory(&self, agent_id: Uuid) -> StoreFuture<'_, Vec<InventoryItem>>;

    /// Appends an audit record.
    fn append_audit<'a>(&'a self, entry: &'a NewAudit) -> StoreFuture<'a, ()>;
    /// Deletes audit rows older than `before` (unix ms) — the audit
    /// retention, the only path the database lets delete audit rows.
    /// Returns how many were deleted.
    fn prune_audit(&self, before: i64) -> StoreFuture<'_, u64>;
    /// Audit records, newest first, with ids below `before`.
    fn list_audit(&self, before: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>>;
}

/// Opens the store named by `url`: `postgres://...` / `postgresql://...`
/// for PostgreSQL, `sqlite://PATH` or a plain path for SQLite (the file is
/// created). Runs the migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(open_with_bus(url).await?.0)
}

/// [`open`], plus the wake-up bus that goes with the store: `NOTIFY` /
/// `LISTEN` on the same PostgreSQL database, or the single-process
/// [`LocalBus`] for SQLite.
pub async fn open_with_bus(
    url: &str,
) -> Result<(std::sync::Arc<dyn Store>, std::sync::Arc<dyn WakeBus>), StoreError> {
    let (store, bus): (std::sync::Arc<dyn Store>, std::sync::Arc<dyn WakeBus>) =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pg = PgStore::connect(url).await?;
            let bus = std::sync::Arc::new(pg.bus());
            (std::sync::Arc::new(pg), bus)
        } else if url.contains("://") && !url.starts_with("sqlite://") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let sqlite = SqliteStore::open(std::path::Path::new(path)).await?;
            (std::sync::Arc::new(sqlite), std::sync::Arc::new(LocalBus))
        };
    store.migrate().await?;
    Ok((store, bus))
}
