//! Reading rows back into the store's types: the column list each decoder
//! needs, and the checks that turn a value this build cannot read into
//! [`StoreError::Corrupt`] (UUIDs and names are stored as text).

use std::str::FromStr;

use rmm_core::protocol::{CommandContext, CommandType};
use uuid::Uuid;

use super::{Column, Driver, Result};
use crate::store::{
    Agent, AuditEntry, Command, CommandStatus, Enrollment, InventoryItem, NewAudit, PendingCommand,
    Phase, Role, StoreError, User,
};

/// The columns [`user`] reads.
pub(super) const USER_COLUMNS: &str =
    "id, email, password_hash, role, created_at, updated_at, token_version, disabled_at";

/// The columns [`agent`] reads.
pub(super) const AGENT_COLUMNS: &str = "id, name, hostname, os, arch, agent_version, channel, \
     machine_uid, address, online, last_seen, created_at, enrolled_at, retired_at, replaced_by";

/// The columns [`command`] reads (without the output, which is its own
/// table).
pub(super) const COMMAND_COLUMNS: &str = "id, agent_id, command_type, command_text, context, \
     timeout_secs, status, phase, exit_code, signal, error, stdout_len, stderr_len, \
     stdout_truncated, stderr_truncated, created_by, created_at, delivered_at, started_at, \
     completed_at, cancel_requested_at";

/// The columns [`pending_command`] reads, and `created_at` to order them.
pub(super) const PENDING_COLUMNS: &str =
    "id, command_type, command_text, context, timeout_secs, created_at";

/// Parses a UUID stored as text.
pub(super) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("bad uuid {s:?}")))
}

/// Reads a UUID column.
pub(super) fn uuid_col<R: Column<String>>(row: &R, name: &str) -> Result<Uuid> {
    parse_uuid(&row.col(name)?)
}

/// A stored length (never negative) as a byte count.
pub(super) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Parses a stored command status.
pub(super) fn status_of(s: &str) -> Result<CommandStatus> {
    CommandStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("bad status {s:?}")))
}

/// A user, from [`USER_COLUMNS`].
pub(super) fn user<DB: Driver>(r: &DB::Row) -> Result<User> {
    let role: String = r.col("role")?;
    Ok(User {
        id: uuid_col(r, "id")?,
        email: r.col("email")?,
        password_hash: r.col("password_hash")?,
        role: Role::from_str(&role).map_err(StoreError::Corrupt)?,
        created_at: r.col("created_at")?,
        updated_at: r.col("updated_at")?,
        token_version: r.col("token_version")?,
        disabled_at: r.col("disabled_at")?,
    })
}

/// An agent, from [`AGENT_COLUMNS`].
pub(super) fn agent<DB: Driver>(r: &DB::Row) -> Result<Agent> {
    let machine_uid: Option<String> = r.col("machine_uid")?;
    let replaced_by: Option<String> = r.col("replaced_by")?;
    Ok(Agent {
        id: uuid_col(r, "id")?,
        name: r.col("name")?,
        hostname: r.col("hostname")?,
        os: r.col("os")?,
        arch: r.col("arch")?,
        agent_version: r.col("agent_version")?,
        channel: r.col("channel")?,
        machine_uid: machine_uid.filter(|u| !u.is_empty()),
        address: r.col("address")?,
        online: r.col("online")?,
        last_seen: r.col("last_seen")?,
        created_at: r.col("created_at")?,
        enrolled_at: r.col("enrolled_at")?,
        retired_at: r.col("retired_at")?,
        replaced_by: replaced_by.as_deref().map(parse_uuid).transpose()?,
    })
}

/// The enrollment of a token: `agent_id`, `name` (the agent's),
/// `server_url`, `channel`, `expires_at`.
pub(super) fn enrollment<DB: Driver>(r: &DB::Row) -> Result<Enrollment> {
    Ok(Enrollment {
        agent_id: uuid_col(r, "agent_id")?,
        agent_name: r.col("name")?,
        server_url: r.col("server_url")?,
        channel: r.col("channel")?,
        expires_at: r.col("expires_at")?,
    })
}

/// A command to send, from [`PENDING_COLUMNS`] (also part of
/// [`COMMAND_COLUMNS`]).
pub(super) fn pending_command<DB: Driver>(r: &DB::Row) -> Result<PendingCommand> {
    let ty: String = r.col("command_type")?;
    let ctx: String = r.col("context")?;
    let timeout_secs: Option<i64> = r.col("timeout_secs")?;
    Ok(PendingCommand {
        id: uuid_col(r, "id")?,
        command_type: CommandType::from_str(&ty).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        command_text: r.col("command_text")?,
        context: CommandContext::from_str(&ctx).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        timeout_secs: timeout_secs.and_then(|v| u32::try_from(v).ok()),
    })
}

/// A command without its output, from [`COMMAND_COLUMNS`].
pub(super) fn command<DB: Driver>(r: &DB::Row) -> Result<Command> {
    let PendingCommand {
        id,
        command_type,
        command_text,
        context,
        timeout_secs,
    } = pending_command::<DB>(r)?;
    let status: String = r.col("status")?;
    let phase: String = r.col("phase")?;
    let int32 = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
    Ok(Command {
        id,
        agent_id: uuid_col(r, "agent_id")?,
        command_type,
        command_text,
        context,
        timeout_secs,
        status: status_of(&status)?,
        phase: Phase::parse(&phase)
            .ok_or_else(|| StoreError::Corrupt(format!("bad phase {phase:?}")))?,
        exit_code: int32(r.col("exit_code")?),
        signal: int32(r.col("signal")?),
        error: r.col("error")?,
        stdout: String::new(),
        stderr: String::new(),
        stdout_len: u64_of(r.col("stdout_len")?),
        stderr_len: u64_of(r.col("stderr_len")?),
        stdout_truncated: r.col("stdout_truncated")?,
        stderr_truncated: r.col("stderr_truncated")?,
        created_by: r.col("created_by")?,
        created_at: r.col("created_at")?,
        delivered_at: r.col("delivered_at")?,
        started_at: r.col("started_at")?,
        completed_at: r.col("completed_at")?,
        cancel_requested_at: r.col("cancel_requested_at")?,
    })
}

/// An inventory item: `agent_id`, `plugin`, `result` (JSON text), `error`,
/// `collected_at`, `received_at`.
pub(super) fn inventory_item<DB: Driver>(r: &DB::Row) -> Result<InventoryItem> {
    let result: String = r.col("result")?;
    Ok(InventoryItem {
        agent_id: uuid_col(r, "agent_id")?,
        plugin: r.col("plugin")?,
        result: serde_json::from_str(&result)
            .map_err(|e| StoreError::Corrupt(format!("inventory json: {e}")))?,
        error: r.col("error")?,
        collected_at: r.col("collected_at")?,
        received_at: r.col("received_at")?,
    })
}

/// An audit record: `id`, `at`, `actor`, `action`, `target`, `address`,
/// `detail` (JSON text; kept as a string when it does not parse).
pub(super) fn audit_entry<DB: Driver>(r: &DB::Row) -> Result<AuditEntry> {
    let detail: String = r.col("detail")?;
    Ok(AuditEntry {
        id: r.col("id")?,
        entry: NewAudit {
            at: r.col("at")?,
            actor: r.col("actor")?,
            action: r.col("action")?,
            target: r.col("target")?,
            address: r.col("address")?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        },
    })
}
