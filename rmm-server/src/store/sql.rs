//! The SQL implementations of [`Store`]. One macro expands the same
//! queries for SQLite and PostgreSQL; only migrations, pool setup, the
//! batched `last_seen` statement and notifications differ.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::FutureExt;
use rmm_core::protocol::{CommandContext, CommandResult, CommandType, OutputStream};
use sqlx::Row;
use uuid::Uuid;

use super::{
    Agent, AgentHello, AppendOutcome, AuditEntry, CancelOutcome, Command, CommandStatus,
    Enrollment, ExpiredCommand, FinishOutcome, HelloOutcome, InventoryItem, NewAudit, NewCommand,
    NewEnrollment, PendingCommand, Phase, Role, Store, StoreError, StoreFuture, User, UserChange,
};

/// Most commands handed to a connection per delivery round.
const DELIVERY_BATCH: i64 = 64;

/// Ends the unfinished commands of a retired agent (`$1` agent, `$2` now,
/// `$3` why): they are never moved to another agent.
const CANCEL_RETIRED_COMMANDS: &str = "UPDATE commands SET status = 'cancelled', phase = 'done', \
     completed_at = $2, error = $3 WHERE agent_id = $1 AND status = 'running'";

macro_rules! agent_cols {
    () => {
        "id, name, hostname, os, arch, agent_version, channel, machine_uid, address, online, \
         last_seen, created_at, enrolled_at, retired_at, replaced_by"
    };
}
macro_rules! command_cols {
    () => {
        "id, agent_id, command_type, command_text, context, timeout_secs, status, phase, \
         exit_code, signal, error, stdout_len, stderr_len, stdout_truncated, stderr_truncated, \
         created_by, created_at, delivered_at, started_at, completed_at, cancel_requested_at"
    };
}
macro_rules! user_cols {
    () => {
        "id, email, password_hash, role, created_at, updated_at, token_version, disabled_at"
    };
}

fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("bad uuid {s:?}")))
}

fn opt_uuid(s: Option<String>) -> Result<Option<Uuid>, StoreError> {
    s.as_deref().map(parse_uuid).transpose()
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn int32(v: Option<i64>) -> Option<i32> {
    v.and_then(|v| i32::try_from(v).ok())
}

fn stream_code(s: OutputStream) -> i16 {
    match s {
        OutputStream::Stdout => 1,
        OutputStream::Stderr => 2,
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Decides what part of a chunk to keep: `(skip, keep_len, truncated,
/// new_len)`, or `None` when the chunk adds nothing (duplicate, gap, or
/// an overlap not on a character boundary).
fn plan_append(held: u64, offset: u64, data: &str, cap: u64) -> Option<(usize, usize, bool, u64)> {
    let len = data.len() as u64;
    if offset > held || offset + len <= held {
        return None;
    }
    let skip = usize::try_from(held - offset).ok()?;
    if !data.is_char_boundary(skip) {
        return None;
    }
    let piece = &data[skip..];
    let room = usize::try_from(cap.saturating_sub(held)).unwrap_or(usize::MAX);
    let (keep, truncated) = if piece.len() <= room {
        (piece.len(), false)
    } else {
        (floor_boundary(piece, room), true)
    };
    Some((skip, keep, truncated, held + piece.len() as u64))
}

macro_rules! sql_store {
    ($store:ident, $db:ty, $row:ty, $backend:literal, $touch_sql:expr) => {
        impl $store {
            fn user_row(r: &$row) -> Result<User, StoreError> {
                let role: String = r.try_get("role")?;
                Ok(User {
                    id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                    email: r.try_get("email")?,
                    password_hash: r.try_get("password_hash")?,
                    role: Role::from_str(&role).map_err(StoreError::Corrupt)?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    token_version: r.try_get("token_version")?,
                    disabled_at: r.try_get("disabled_at")?,
                })
            }

            fn agent_row(r: &$row) -> Result<Agent, StoreError> {
                Ok(Agent {
                    id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                    name: r.try_get("name")?,
                    hostname: r.try_get("hostname")?,
                    os: r.try_get("os")?,
                    arch: r.try_get("arch")?,
                    agent_version: r.try_get("agent_version")?,
                    channel: r.try_get("channel")?,
                    machine_uid: r
                        .try_get::<Option<String>, _>("machine_uid")?
                        .filter(|u| !u.is_empty()),
                    address: r.try_get("address")?,
                    online: r.try_get("online")?,
                    last_seen: r.try_get("last_seen")?,
                    created_at: r.try_get("created_at")?,
                    enrolled_at: r.try_get("enrolled_at")?,
                    retired_at: r.try_get("retired_at")?,
                    replaced_by: opt_uuid(r.try_get("replaced_by")?)?,
                })
            }

            fn command_row(r: &$row) -> Result<Command, StoreError> {
                let ty: String = r.try_get("command_type")?;
                let ctx: String = r.try_get("context")?;
                let status: String = r.try_get("status")?;
                let phase: String = r.try_get("phase")?;
                Ok(Command {
                    id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                    agent_id: parse_uuid(&r.try_get::<String, _>("agent_id")?)?,
                    command_type: CommandType::from_str(&ty)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    command_text: r.try_get("command_text")?,
                    context: CommandContext::from_str(&ctx)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    timeout_secs: r
                        .try_get::<Option<i64>, _>("timeout_secs")?
                        .and_then(|v| u32::try_from(v).ok()),
                    status: CommandStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("bad status {status:?}")))?,
                    phase: Phase::parse(&phase)
                        .ok_or_else(|| StoreError::Corrupt(format!("bad phase {phase:?}")))?,
                    exit_code: int32(r.try_get("exit_code")?),
                    signal: int32(r.try_get("signal")?),
                    error: r.try_get("error")?,
                    stdout: String::new(),
                    stderr: String::new(),
                    stdout_len: u64_of(r.try_get("stdout_len")?),
                    stderr_len: u64_of(r.try_get("stderr_len")?),
                    stdout_truncated: r.try_get("stdout_truncated")?,
                    stderr_truncated: r.try_get("stderr_truncated")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                    delivered_at: r.try_get("delivered_at")?,
                    started_at: r.try_get("started_at")?,
                    completed_at: r.try_get("completed_at")?,
                    cancel_requested_at: r.try_get("cancel_requested_at")?,
                })
            }

            fn pending_row(r: &$row) -> Result<(i64, PendingCommand), StoreError> {
                let ty: String = r.try_get("command_type")?;
                let ctx: String = r.try_get("context")?;
                Ok((
                    r.try_get("created_at")?,
                    PendingCommand {
                        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                        command_type: CommandType::from_str(&ty)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        command_text: r.try_get("command_text")?,
                        context: CommandContext::from_str(&ctx)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        timeout_secs: r
                            .try_get::<Option<i64>, _>("timeout_secs")?
                            .and_then(|v| u32::try_from(v).ok()),
                    },
                ))
            }

            fn enrollment_row(r: &$row) -> Result<Enrollment, StoreError> {
                Ok(Enrollment {
                    agent_id: parse_uuid(&r.try_get::<String, _>("agent_id")?)?,
                    agent_name: r.try_get("name")?,
                    server_url: r.try_get("server_url")?,
                    channel: r.try_get("channel")?,
                    expires_at: r.try_get("expires_at")?,
                })
            }
        }

        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn migrate(&self) -> StoreFuture<'_, ()> {
                async move { self.run_migrations().await }.boxed()
            }

            fn count_users(&self) -> StoreFuture<'_, i64> {
                async move {
                    let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
                        .fetch_one(&self.reader)
                        .await?;
                    Ok(row.try_get::<i64, _>("n")?)
                }
                .boxed()
            }

            fn create_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, ()> {
                async move {
                    let res = sqlx::query(
                        "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(user.id.to_string())
                    .bind(&user.email)
                    .bind(&user.password_hash)
                    .bind(user.role.as_str())
                    .bind(user.created_at)
                    .bind(user.updated_at)
                    .execute(&self.writer)
                    .await;
                    match res {
                        Ok(_) => Ok(()),
                        Err(e) if unique_violation(&e) => {
                            Err(StoreError::Conflict(format!("user {}", user.email)))
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                .boxed()
            }

            fn user_by_email<'a>(&'a self, email: &'a str) -> StoreFuture<'a, Option<User>> {
                async move {
                    sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE email = $1"))
                        .bind(email)
                        .fetch_optional(&self.reader)
                        .await?
                        .as_ref()
                        .map(Self::user_row)
                        .transpose()
                }
                .boxed()
            }

            fn user_by_id(&self, id: Uuid) -> StoreFuture<'_, Option<User>> {
                async move {
                    sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
                        .bind(id.to_string())
                        .fetch_optional(&self.reader)
                        .await?
                        .as_ref()
                        .map(Self::user_row)
                        .transpose()
                }
                .boxed()
            }

            fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
                async move {
                    sqlx::query(concat!("SELECT ", user_cols!(), " FROM users ORDER BY email"))
                        .fetch_all(&self.reader)
                        .await?
                        .iter()
                        .map(Self::user_row)
                        .collect()
                }
                .boxed()
            }

            fn update_user(
                &self,
                id: Uuid,
                change: UserChange,
                now: i64,
            ) -> StoreFuture<'_, bool> {
                async move {
                    // Any change ends the user's sessions (token_version).
                    let res = sqlx::query(
                        "UPDATE users SET role = COALESCE($2, role), \
                         password_hash = COALESCE($3, password_hash), updated_at = $4, \
                         disabled_at = CASE WHEN $5 IS NULL THEN disabled_at \
                           WHEN $5 = 1 THEN COALESCE(disabled_at, $4) ELSE NULL END, \
                         token_version = token_version + 1 WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .bind(change.role.map(Role::as_str))
                    .bind(change.password_hash)
                    .bind(now)
                    .bind(change.disabled.map(i64::from))
                    .execute(&self.writer)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }
                .boxed()
            }

            fn delete_user(&self, id: Uuid) -> StoreFuture<'_, bool> {
                async move {
                    let res = sqlx::query("DELETE FROM users WHERE id = $1")
                        .bind(id.to_string())
                        .execute(&self.writer)
                        .await?;
                    Ok(res.rows_affected() == 1)
                }
                .boxed()
            }

            fn create_enrollment<'a>(&'a self, e: &'a NewEnrollment) -> StoreFuture<'a, ()> {
                async move {
                    let mut tx = self.writer.begin().await?;
                    let res = sqlx::query(
                        "INSERT INTO agents (id, name, channel, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(e.agent_id.to_string())
                    .bind(&e.agent_name)
                    .bind(&e.channel)
                    .bind(e.created_at)
                    .execute(&mut *tx)
                    .await;
                    match res {
                        Ok(_) => {}
                        Err(err) if unique_violation(&err) => {
                            return Err(StoreError::Conflict(format!("agent {}", e.agent_name)));
                        }
                        Err(err) => return Err(err.into()),
                    }
                    sqlx::query(
                        "INSERT INTO enrollments (token_hash, agent_id, server_url, channel, \
                         created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&e.token_hash)
                    .bind(e.agent_id.to_string())
                    .bind(&e.server_url)
                    .bind(&e.channel)
                    .bind(&e.created_by)
                    .bind(e.created_at)
                    .bind(e.expires_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }
                .boxed()
            }

            fn pending_enrollment<'a>(
                &'a self,
                token_hash: &'a str,
                now: i64,
            ) -> StoreFuture<'a, Option<Enrollment>> {
                async move {
                    sqlx::query(
                        "SELECT e.agent_id, a.name, e.server_url, e.channel, e.expires_at \
                         FROM enrollments e JOIN agents a ON a.id = e.agent_id \
                         WHERE e.token_hash = $1 AND e.used_at IS NULL AND e.expires_at > $2 \
                         AND a.retired_at IS NULL",
                    )
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&self.reader)
                    .await?
                    .as_ref()
                    .map(Self::enrollment_row)
                    .transpose()
                }
                .boxed()
            }

            fn redeem_enrollment<'a>(
                &'a self,
                token_hash: &'a str,
                now: i64,
                address: &'a str,
                secret_hash: &'a str,
            ) -> StoreFuture<'a, Option<Enrollment>> {
                async move {
                    let mut tx = self.writer.begin().await?;
                    let Some(row) = sqlx::query(
                        "UPDATE enrollments SET used_at = $2, used_from = $3 \
                         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                         RETURNING agent_id, server_url, channel, expires_at",
                    )
                    .bind(token_hash)
                    .bind(now)
                    .bind(address)
                    .fetch_optional(&mut *tx)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let agent_id: String = row.try_get("agent_id")?;
                    let Some(agent) = sqlx::query(
                        "UPDATE agents SET secret_hash = $2, address = $3, enrolled_at = $4 \
                         WHERE id = $1 AND retired_at IS NULL RETURNING name",
                    )
                    .bind(&agent_id)
                    .bind(secret_hash)
                    .bind(address)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?
                    else {
                        return Ok(None);
                    };
                    tx.commit().await?;
                    Ok(Some(Enrollment {
                        agent_id: parse_uuid(&agent_id)?,
                        agent_name: agent.try_get("name")?,
                        server_url: row.try_get("server_url")?,
                        channel: row.try_get("channel")?,
                        expires_at: row.try_get("expires_at")?,
                    }))
                }
                .boxed()
            }

            fn sweep_enrollments(&self, now: i64) -> StoreFuture<'_, u64> {
                async move {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(
                        "UPDATE agents SET retired_at = $1 WHERE enrolled_at IS NULL \
                         AND retired_at IS NULL AND id IN (SELECT agent_id FROM enrollments \
                         WHERE used_at IS NULL AND expires_at <= $1)",
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let res = sqlx::query(
                        "DELETE FROM enrollments WHERE used_at IS NOT NULL OR expires_at <= $1",
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(res.rows_affected())
                }
                .boxed()
            }

            fn agent_secret_hash(&self, id: Uuid) -> StoreFuture<'_, Option<String>> {
                async move {
                    let row = sqlx::query(
                        "SELECT secret_hash FROM agents WHERE id = $1 AND retired_at IS NULL \
                         AND secret_hash IS NOT NULL",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&self.reader)
                    .await?;
                    Ok(match row {
                        Some(r) => r.try_get("secret_hash")?,
                        None => None,
                    })
                }
                .boxed()
            }

            fn list_agents(&self) -> StoreFuture<'_, Vec<Agent>> {
                async move {
                    sqlx::query(concat!(
                        "SELECT ",
                        agent_cols!(),
                        " FROM agents WHERE retired_at IS NULL ORDER BY name"
                    ))
                    .fetch_all(&self.reader)
                    .await?
                    .iter()
                    .map(Self::agent_row)
                    .collect()
                }
                .boxed()
            }

            fn get_agent(&self, id: Uuid) -> StoreFuture<'_, Option<Agent>> {
                async move {
                    sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents WHERE id = $1"))
                        .bind(id.to_string())
                        .fetch_optional(&self.reader)
                        .await?
                        .as_ref()
                        .map(Self::agent_row)
                        .transpose()
                }
                .boxed()
            }

            fn agent_connected<'a>(&'a self, h: &'a AgentHello) -> StoreFuture<'a, HelloOutcome> {
                async move {
                    let id = h.agent_id.to_string();
                    let mut tx = self.writer.begin().await?;
                    // The first hello of a credential binds its machine
                    // identity (empty: none); later ones must claim it.
                    let first = sqlx::query(
                        "UPDATE agents SET machine_uid = $2 \
                         WHERE id = $1 AND machine_uid IS NULL AND retired_at IS NULL",
                    )
                    .bind(&id)
                    .bind(&h.machine_uid)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    let mut replaced = Vec::new();
                    if !first {
                        let recorded: Option<String> =
                            sqlx::query("SELECT machine_uid FROM agents WHERE id = $1")
                                .bind(&id)
                                .fetch_optional(&mut *tx)
                                .await?
                                .map(|r| r.try_get::<Option<String>, _>("machine_uid"))
                                .transpose()?
                                .flatten();
                        let recorded = recorded.unwrap_or_default();
                        if recorded != h.machine_uid {
                            return Ok(HelloOutcome::MachineMismatch { recorded });
                        }
                    } else if !h.machine_uid.is_empty() {
                        let others = sqlx::query(
                            "SELECT id, online, last_seen FROM agents \
                             WHERE machine_uid = $1 AND id <> $2 AND retired_at IS NULL",
                        )
                        .bind(&h.machine_uid)
                        .bind(&id)
                        .fetch_all(&mut *tx)
                        .await?;
                        for r in &others {
                            let online: bool = r.try_get("online")?;
                            let seen: Option<i64> = r.try_get("last_seen")?;
                            if online && seen.is_some_and(|t| t >= h.live_after) {
                                let by = parse_uuid(&r.try_get::<String, _>("id")?)?;
                                return Ok(HelloOutcome::MachineInUse { by });
                            }
                        }
                        for r in &others {
                            let old: String = r.try_get("id")?;
                            sqlx::query(
                                "UPDATE agents SET retired_at = $3, replaced_by = $2, \
                                 secret_hash = NULL, online = FALSE WHERE id = $1",
                            )
                            .bind(&old)
                            .bind(&id)
                            .bind(h.now)
                            .execute(&mut *tx)
                            .await?;
                            sqlx::query(CANCEL_RETIRED_COMMANDS)
                                .bind(&old)
                                .bind(h.now)
                                .bind("the agent was replaced by a re-enrollment of its machine")
                                .execute(&mut *tx)
                                .await?;
                            replaced.push(parse_uuid(&old)?);
                        }
                    }
                    sqlx::query(
                        "UPDATE agents SET hostname = $2, os = $3, arch = $4, agent_version = $5, \
                         channel = $6, address = $7, online = TRUE, session_id = $8, last_seen = $9 \
                         WHERE id = $1 AND retired_at IS NULL",
                    )
                    .bind(&id)
                    .bind(&h.hostname)
                    .bind(&h.os)
                    .bind(&h.arch)
                    .bind(&h.agent_version)
                    .bind(&h.channel)
                    .bind(&h.address)
                    .bind(h.session_id.to_string())
                    .bind(h.now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(HelloOutcome::Accepted { replaced })
                }
                .boxed()
            }

            fn agent_disconnected(&self, id: Uuid, session_id: Uuid, now: i64) -> StoreFuture<'_, ()> {
                async move {
                    sqlx::query(
                        "UPDATE agents SET online = FALSE, last_seen = $3 \
                         WHERE id = $1 AND session_id = $2",
                    )
                    .bind(id.to_string())
                    .bind(session_id.to_string())
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                    Ok(())
                }
                .boxed()
            }

            fn touch_agents<'a>(&'a self, seen: &'a [(Uuid, i64)]) -> StoreFuture<'a, ()> {
                async move {
                    for chunk in seen.chunks(5000) {
                        let json = serde_json::Value::Array(
                            chunk
                                .iter()
                                .map(|(id, ts)| serde_json::json!([id.to_string(), ts]))
                                .collect(),
                        )
                        .to_string();
                        sqlx::query($touch_sql).bind(json).execute(&self.writer).await?;
                    }
                    Ok(())
                }
                .boxed()
            }

            fn retire_agent(&self, id: Uuid, now: i64) -> StoreFuture<'_, bool> {
                async move {
                    let mut tx = self.writer.begin().await?;
                    let res = sqlx::query(
                        "UPDATE agents SET retired_at = $2, secret_hash = NULL, online = FALSE \
                         WHERE id = $1 AND retired_at IS NULL",
                    )
                    .bind(id.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(CANCEL_RETIRED_COMMANDS)
                        .bind(id.to_string())
                        .bind(now)
                        .bind("the agent was retired")
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(res.rows_affected() == 1)
                }
                .boxed()
            }

            fn insert_command<'a>(&'a self, c: &'a NewCommand) -> StoreFuture<'a, ()> {
                async move {
                    sqlx::query(
                        "INSERT INTO commands (id, agent_id, command_type, command_text, context, \
                         timeout_secs, status, phase, created_by, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'running', 'queued', $7, $8)",
                    )
                    .bind(c.id.to_string())
                    .bind(c.agent_id.to_string())
                    .bind(c.command_type.as_str())
                    .bind(&c.command_text)
                    .bind(c.context.as_str())
                    .bind(c.timeout_secs.map(i64::from))
                    .bind(&c.created_by)
                    .bind(c.created_at)
                    .execute(&self.writer)
                    .await?;
                    Ok(())
                }
                .boxed()
            }

            fn get_command(&self, id: Uuid) -> StoreFuture<'_, Option<Command>> {
                async move {
                    let key = id.to_string();
                    let Some(row) = sqlx::query(concat!(
                        "SELECT ",
                        command_cols!(),
                        " FROM commands WHERE id = $1"
                    ))
                    .bind(&key)
                    .fetch_optional(&self.reader)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let mut cmd = Self::command_row(&row)?;
                    let chunks = sqlx::query(
                        "SELECT stream, data FROM command_output WHERE command_id = $1 \
                         ORDER BY stream, byte_offset",
                    )
                    .bind(&key)
                    .fetch_all(&self.reader)
                    .await?;
                    for c in chunks {
                        let stream: i16 = c.try_get("stream")?;
                        let data: &str = c.try_get("data")?;
                        if stream == 1 {
                            cmd.stdout.push_str(data);
                        } else {
                            cmd.stderr.push_str(data);
                        }
                    }
                    Ok(Some(cmd))
                }
                .boxed()
            }

            fn list_commands(
                &self,
                agent_id: Uuid,
                before: Option<Uuid>,
                limit: u32,
            ) -> StoreFuture<'_, Vec<Command>> {
                async move {
                    let rows = match before {
                        None => {
                            sqlx::query(concat!(
                                "SELECT ",
                                command_cols!(),
                                " FROM commands WHERE agent_id = $1 \
                                 ORDER BY created_at DESC, id DESC LIMIT $2"
                            ))
                            .bind(agent_id.to_string())
                            .bind(i64::from(limit))
                            .fetch_all(&self.reader)
                            .await?
                        }
                        Some(before) => {
                            sqlx::query(concat!(
                                "SELECT ",
                                command_cols!(),
                                " FROM commands c WHERE agent_id = $1 AND EXISTS (SELECT 1 FROM \
                                 commands b WHERE b.id = $2 AND (c.created_at < b.created_at OR \
                                 (c.created_at = b.created_at AND c.id < b.id))) \
                                 ORDER BY created_at DESC, id DESC LIMIT $3"
                            ))
                            .bind(agent_id.to_string())
                            .bind(before.to_string())
                            .bind(i64::from(limit))
                            .fetch_all(&self.reader)
                            .await?
                        }
                    };
                    rows.iter().map(Self::command_row).collect()
                }
                .boxed()
            }

            fn deliverable_commands(
                &self,
                agent_id: Uuid,
                now: i64,
                grace_ms: i64,
                include_inflight: bool,
            ) -> StoreFuture<'_, Vec<PendingCommand>> {
                async move {
                    let id = agent_id.to_string();
                    let mut out = Vec::new();
                    if include_inflight {
                        let rows = sqlx::query(
                            "SELECT id, command_type, command_text, context, timeout_secs, created_at \
                             FROM commands WHERE agent_id = $1 AND status = 'running' \
                             AND phase IN ('delivered', 'executing')",
                        )
                        .bind(&id)
                        .fetch_all(&self.reader)
                        .await?;
                        for r in &rows {
                            out.push(Self::pending_row(r)?);
                        }
                    }
                    let rows = sqlx::query(
                        "UPDATE commands SET phase = 'delivered', delivered_at = $2, \
                         deadline_at = CASE WHEN timeout_secs IS NULL THEN NULL \
                         ELSE $2 + timeout_secs * 1000 + $3 END \
                         WHERE id IN (SELECT id FROM commands WHERE agent_id = $1 \
                         AND status = 'running' AND phase = 'queued' ORDER BY created_at LIMIT $4) \
                         AND status = 'running' AND phase = 'queued' \
                         RETURNING id, command_type, command_text, context, timeout_secs, created_at",
                    )
                    .bind(&id)
                    .bind(now)
                    .bind(grace_ms)
                    .bind(DELIVERY_BATCH)
                    .fetch_all(&self.writer)
                    .await?;
                    for r in &rows {
                        out.push(Self::pending_row(r)?);
                    }
                    out.sort_by_key(|(created, c)| (*created, c.id));
                    Ok(out.into_iter().map(|(_, c)| c).collect())
                }
                .boxed()
            }

            fn cancel_requests(&self, agent_id: Uuid) -> StoreFuture<'_, Vec<Uuid>> {
                async move {
                    let rows = sqlx::query(
                        "SELECT id FROM commands WHERE agent_id = $1 AND status = 'running' \
                         AND cancel_requested_at IS NOT NULL",
                    )
                    .bind(agent_id.to_string())
                    .fetch_all(&self.reader)
                    .await?;
                    rows.iter()
                        .map(|r| parse_uuid(&r.try_get::<String, _>("id")?))
                        .collect()
                }
                .boxed()
            }

            fn command_started(&self, agent_id: Uuid, id: Uuid, started_at: i64) -> StoreFuture<'_, bool> {
                async move {
                    let res = sqlx::query(
                        "UPDATE commands SET phase = 'executing', \
                         started_at = COALESCE(started_at, $3) \
                         WHERE id = $1 AND agent_id = $2 AND status = 'running'",
                    )
                    .bind(id.to_string())
                    .bind(agent_id.to_string())
                    .bind(started_at)
                    .execute(&self.writer)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }
                .boxed()
            }

            fn append_output<'a>(
                &'a self,
                agent_id: Uuid,
                id: Uuid,
                stream: OutputStream,
                offset: u64,
                data: &'a str,
                cap: u64,
            ) -> StoreFuture<'a, AppendOutcome> {
                async move {
                    let (select, update) = match stream {
                        OutputStream::Stdout => (
                            "SELECT stdout_len AS held, status FROM commands WHERE id = $1 AND agent_id = $2",
                            "UPDATE commands SET stdout_len = $3, \
                             stdout_truncated = (stdout_truncated OR $4) \
                             WHERE id = $1 AND stdout_len = $2 AND status = 'running'",
                        ),
                        OutputStream::Stderr => (
                            "SELECT stderr_len AS held, status FROM commands WHERE id = $1 AND agent_id = $2",
                            "UPDATE commands SET stderr_len = $3, \
                             stderr_truncated = (stderr_truncated OR $4) \
                             WHERE id = $1 AND stderr_len = $2 AND status = 'running'",
                        ),
                    };
                    let key = id.to_string();
                    let mut tx = self.writer.begin().await?;
                    let Some(row) = sqlx::query(select)
                        .bind(&key)
                        .bind(agent_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?
                    else {
                        return Ok(AppendOutcome::Unknown);
                    };
                    let status: String = row.try_get("status")?;
                    if status != "running" {
                        return Ok(AppendOutcome::Ignored);
                    }
                    let held = u64_of(row.try_get("held")?);
                    let Some((skip, keep, truncated, new_len)) = plan_append(held, offset, data, cap)
                    else {
                        return Ok(AppendOutcome::Ignored);
                    };
                    let res = sqlx::query(update)
                        .bind(&key)
                        .bind(i64_of(held))
                        .bind(i64_of(new_len))
                        .bind(truncated)
                        .execute(&mut *tx)
                        .await?;
                    if res.rows_affected() != 1 {
                        return Ok(AppendOutcome::Ignored);
                    }
                    if keep > 0 {
                        sqlx::query(
                            "INSERT INTO command_output (command_id, stream, byte_offset, data) \
                             VALUES ($1, $2, $3, $4)",
                        )
                        .bind(&key)
                        .bind(stream_code(stream))
                        .bind(i64_of(held))
                        .bind(&data[skip..skip + keep])
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(AppendOutcome::Appended)
                }
                .boxed()
            }

            fn finish_command<'a>(
                &'a self,
                agent_id: Uuid,
                r: &'a CommandResult,
                now: i64,
            ) -> StoreFuture<'a, FinishOutcome> {
                async move {
                    let key = r.command_id.to_string();
                    let agent = agent_id.to_string();
                    let status = match r.outcome {
                        rmm_core::protocol::CommandOutcome::Completed => CommandStatus::Completed,
                        rmm_core::protocol::CommandOutcome::Failed => CommandStatus::Failed,
                        rmm_core::protocol::CommandOutcome::Timeout => CommandStatus::Timeout,
                        rmm_core::protocol::CommandOutcome::Cancelled => CommandStatus::Cancelled,
                    };
                    let clamp = |ms: u64| i64_of(ms).min(now);
                    let res = sqlx::query(
                        "UPDATE commands SET status = $3, phase = 'done', exit_code = $4, signal = $5, \
                         error = $6, stdout_truncated = (stdout_truncated OR $7), \
                         stderr_truncated = (stderr_truncated OR $8), \
                         started_at = COALESCE(started_at, $9), completed_at = $10 \
                         WHERE id = $1 AND agent_id = $2 AND status = 'running' \
                         AND stdout_len = $11 AND stderr_len = $12",
                    )
                    .bind(&key)
                    .bind(&agent)
                    .bind(status.as_str())
                    .bind(r.exit_code.map(i64::from))
                    .bind(r.signal.map(i64::from))
                    .bind(r.error.as_deref())
                    .bind(r.stdout_truncated)
                    .bind(r.stderr_truncated)
                    .bind(r.started_at_ms.map(clamp))
                    .bind(clamp(r.finished_at_ms))
                    .bind(i64_of(r.stdout_bytes))
                    .bind(i64_of(r.stderr_bytes))
                    .execute(&self.writer)
                    .await?;
                    if res.rows_affected() == 1 {
                        return Ok(FinishOutcome::Stored);
                    }
                    let row = sqlx::query(
                        "SELECT status, stdout_len, stderr_len FROM commands \
                         WHERE id = $1 AND agent_id = $2",
                    )
                    .bind(&key)
                    .bind(&agent)
                    .fetch_optional(&self.writer)
                    .await?;
                    let Some(row) = row else {
                        return Ok(FinishOutcome::Unknown);
                    };
                    let status: String = row.try_get("status")?;
                    if status != "running" {
                        return Ok(FinishOutcome::AlreadyFinal);
                    }
                    Ok(FinishOutcome::Incomplete {
                        stdout_len: u64_of(row.try_get("stdout_len")?),
                        stderr_len: u64_of(row.try_get("stderr_len")?),
                    })
                }
                .boxed()
            }

            fn request_cancel(&self, id: Uuid, now: i64) -> StoreFuture<'_, CancelOutcome> {
                async move {
                    let key = id.to_string();
                    let res = sqlx::query(
                        "UPDATE commands SET status = 'cancelled', phase = 'done', completed_at = $2, \
                         cancel_requested_at = $2 WHERE id = $1 AND status = 'running' AND phase = 'queued'",
                    )
                    .bind(&key)
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                    if res.rows_affected() == 1 {
                        return Ok(CancelOutcome::CancelledQueued);
                    }
                    let res = sqlx::query(
                        "UPDATE commands SET cancel_requested_at = COALESCE(cancel_requested_at, $2) \
                         WHERE id = $1 AND status = 'running'",
                    )
                    .bind(&key)
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                    if res.rows_affected() == 1 {
                        return Ok(CancelOutcome::Requested);
                    }
                    let row = sqlx::query("SELECT status FROM commands WHERE id = $1")
                        .bind(&key)
                        .fetch_optional(&self.writer)
                        .await?;
                    match row {
                        None => Ok(CancelOutcome::NotFound),
                        Some(r) => {
                            let s: String = r.try_get("status")?;
                            let status = CommandStatus::parse(&s)
                                .ok_or_else(|| StoreError::Corrupt(format!("bad status {s:?}")))?;
                            Ok(CancelOutcome::AlreadyFinal(status))
                        }
                    }
                }
                .boxed()
            }

            fn expire_commands(
                &self,
                now: i64,
                cancel_grace_ms: i64,
            ) -> StoreFuture<'_, Vec<ExpiredCommand>> {
                async move {
                    let mut out = Vec::new();
                    let timed_out = sqlx::query(
                        "UPDATE commands SET status = 'timeout', phase = 'done', completed_at = $1 \
                         WHERE status = 'running' AND deadline_at IS NOT NULL AND deadline_at <= $1 \
                         RETURNING id, agent_id",
                    )
                    .bind(now)
                    .fetch_all(&self.writer)
                    .await?;
                    let cancelled = sqlx::query(
                        "UPDATE commands SET status = 'cancelled', phase = 'done', completed_at = $1 \
                         WHERE status = 'running' AND cancel_requested_at IS NOT NULL \
                         AND cancel_requested_at <= $2 RETURNING id, agent_id",
                    )
                    .bind(now)
                    .bind(now - cancel_grace_ms)
                    .fetch_all(&self.writer)
                    .await?;
                    for (rows, status) in [
                        (timed_out, CommandStatus::Timeout),
                        (cancelled, CommandStatus::Cancelled),
                    ] {
                        for r in rows {
                            out.push(ExpiredCommand {
                                id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                                agent_id: parse_uuid(&r.try_get::<String, _>("agent_id")?)?,
                                status,
                            });
                        }
                    }
                    Ok(out)
                }
                .boxed()
            }

            fn agents_with_work(&self) -> StoreFuture<'_, Vec<Uuid>> {
                async move {
                    let rows = sqlx::query(
                        "SELECT DISTINCT agent_id FROM commands WHERE status = 'running' \
                         AND (phase = 'queued' OR cancel_requested_at IS NOT NULL)",
                    )
                    .fetch_all(&self.reader)
                    .await?;
                    rows.iter()
                        .map(|r| parse_uuid(&r.try_get::<String, _>("agent_id")?))
                        .collect()
                }
                .boxed()
            }

            fn command_counts(&self) -> StoreFuture<'_, Vec<(CommandStatus, i64)>> {
                async move {
                    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM commands GROUP BY status")
                        .fetch_all(&self.reader)
                        .await?;
                    let mut out = Vec::new();
                    for r in rows {
                        let s: String = r.try_get("status")?;
                        if let Some(status) = CommandStatus::parse(&s) {
                            out.push((status, r.try_get::<i64, _>("n")?));
                        }
                    }
                    Ok(out)
                }
                .boxed()
            }

            fn put_inventory<'a>(&'a self, item: &'a InventoryItem) -> StoreFuture<'a, bool> {
                async move {
                    let res = sqlx::query(
                        "INSERT INTO inventory (agent_id, plugin, result, error, collected_at, received_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (agent_id, plugin) DO UPDATE SET result = excluded.result, \
                         error = excluded.error, collected_at = excluded.collected_at, \
                         received_at = excluded.received_at \
                         WHERE inventory.collected_at <= excluded.collected_at",
                    )
                    .bind(item.agent_id.to_string())
                    .bind(&item.plugin)
                    .bind(item.result.to_string())
                    .bind(item.error.as_deref())
                    .bind(item.collected_at)
                    .bind(item.received_at)
                    .execute(&self.writer)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }
                .boxed()
            }

            fn list_inventory(&self, agent_id: Uuid) -> StoreFuture<'_, Vec<InventoryItem>> {
                async move {
                    let rows = sqlx::query(
                        "SELECT agent_id, plugin, result, error, collected_at, received_at \
                         FROM inventory WHERE agent_id = $1 ORDER BY plugin",
                    )
                    .bind(agent_id.to_string())
                    .fetch_all(&self.reader)
                    .await?;
                    rows.iter()
                        .map(|r| {
                            let result: String = r.try_get("result")?;
                            Ok(InventoryItem {
                                agent_id: parse_uuid(&r.try_get::<String, _>("agent_id")?)?,
                                plugin: r.try_get("plugin")?,
                                result: serde_json::from_str(&result)
                                    .map_err(|e| StoreError::Corrupt(format!("inventory json: {e}")))?,
                                error: r.try_get("error")?,
                                collected_at: r.try_get("collected_at")?,
                                received_at: r.try_get("received_at")?,
                            })
                        })
                        .collect()
                }
                .boxed()
            }

            fn append_audit<'a>(&'a self, e: &'a NewAudit) -> StoreFuture<'a, ()> {
                async move {
                    sqlx::query(
                        "INSERT INTO audit_log (at, actor, action, target, address, detail) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(e.at)
                    .bind(&e.actor)
                    .bind(&e.action)
                    .bind(e.target.as_deref())
                    .bind(e.address.as_deref())
                    .bind(e.detail.to_string())
                    .execute(&self.writer)
                    .await?;
                    Ok(())
                }
                .boxed()
            }

            fn prune_audit(&self, before: i64) -> StoreFuture<'_, u64> {
                async move {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query("INSERT INTO audit_prune (cutoff) VALUES ($1)")
                        .bind(before)
                        .execute(&mut *tx)
                        .await?;
                    let n = sqlx::query("DELETE FROM audit_log WHERE at < $1")
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query("DELETE FROM audit_prune").execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(n)
                }
                .boxed()
            }

            fn list_audit(&self, before: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>> {
                async move {
                    let rows = sqlx::query(
                        "SELECT id, at, actor, action, target, address, detail FROM audit_log \
                         WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    )
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&self.reader)
                    .await?;
                    rows.iter()
                        .map(|r| {
                            let detail: String = r.try_get("detail")?;
                            Ok(AuditEntry {
                                id: r.try_get("id")?,
                                entry: NewAudit {
                                    at: r.try_get("at")?,
                                    actor: r.try_get("actor")?,
                                    action: r.try_get("action")?,
                                    target: r.try_get("target")?,
                                    address: r.try_get("address")?,
                                    detail: serde_json::from_str(&detail)
                                        .unwrap_or(serde_json::Value::String(detail)),
                                },
                            })
                        })
                        .collect()
                }
                .boxed()
            }
        }
    };
}

/// The SQLite store: one file, WAL, one writer connection and a reader pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: sqlx::SqlitePool,
    reader: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it when missing) the database file at `path`.
    /// Call [`Store::migrate`] before use ([`super::open`] does).
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        // Private from the start: SQLite gives the -wal/-shm files the
        // database file's mode.
        crate::datadir::precreate_private(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        super::migrations::run_sqlite(&self.writer).await
    }
}

/// The PostgreSQL store (shareable by several server replicas).
#[derive(Debug, Clone)]
pub struct PgStore {
    writer: sqlx::PgPool,
    reader: sqlx::PgPool,
}

impl PgStore {
    async fn run_migrations(&self) -> Result<(), StoreError> {
        super::migrations::run_postgres(&self.writer).await
    }

    /// Connects to `url` (`postgres://...`; `?options[search_path]=s`
    /// selects a schema). Call [`Store::migrate`] before use.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let opts: sqlx::postgres::PgConnectOptions = url.parse()?;
        Self::connect_with(opts).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(
        opts: sqlx::postgres::PgConnectOptions,
    ) -> Result<PgStore, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        Ok(PgStore {
            writer: pool.clone(),
            reader: pool,
        })
    }

    /// The wake-up bus over this database (`NOTIFY`/`LISTEN`).
    pub fn bus(&self) -> super::bus::PgBus {
        super::bus::PgBus::new(self.writer.clone())
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    "sqlite",
    "UPDATE agents SET last_seen = j.ts FROM (SELECT json_extract(value, '$[0]') AS id, \
     json_extract(value, '$[1]') AS ts FROM json_each($1)) AS j \
     WHERE agents.id = j.id AND (agents.last_seen IS NULL OR agents.last_seen < j.ts)"
);

sql_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    "postgres",
    "UPDATE agents SET last_seen = j.ts FROM (SELECT e->>0 AS id, (e->>1)::bigint AS ts \
     FROM jsonb_array_elements($1::jsonb) AS e) AS j \
     WHERE agents.id = j.id AND (agents.last_seen IS NULL OR agents.last_seen < j.ts)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_plans() {
        // (held, offset, data, cap) -> plan
        let check = |held, offset, data: &str, cap, expected| {
            assert_eq!(
                plan_append(held, offset, data, cap),
                expected,
                "{held} {offset} {data:?} {cap}"
            );
        };
        check(0, 0, "hello", 100, Some((0, 5, false, 5)));
        check(5, 0, "hello", 100, None); // duplicate
        check(5, 7, "xx", 100, None); // gap
        check(3, 0, "hello", 100, Some((3, 2, false, 5))); // overlap
        check(1, 0, "éa", 100, None); // overlap inside a char
        check(0, 0, "hello", 3, Some((0, 3, true, 5))); // cut at the cap
        check(2, 2, "éé", 3, Some((0, 0, true, 6))); // cut inside a char: nothing kept
        check(10, 10, "more", 5, Some((0, 0, true, 14))); // past the cap
    }
}
