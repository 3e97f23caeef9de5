//! The durable command queue: insertion, delivery (`queued` ->
//! `delivered`, with the timeout deadline), start, output chunks at byte
//! offsets under a cap, results, cancellation and the sweeper's expiry.

use std::sync::LazyLock;

use rmm_core::delivery::DELIVERY_BATCH;
use rmm_core::protocol::{CommandOutcome, CommandResult, OutputStream};
use uuid::Uuid;

use super::rows::{self, COMMAND_COLUMNS, PENDING_COLUMNS, status_of, u64_of, uuid_col};
use super::{Bind, Column, Db, Driver, Result};
use crate::store::{
    AppendOutcome, CancelOutcome, Command, CommandStatus, ExpiredCommand, FinishOutcome,
    NewCommand, PendingCommand,
};

/// A command by id (`$1`).
static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1"));
/// An agent's (`$1`) newest commands, at most `$2`.
static NEWEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE agent_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )
});
/// An agent's (`$1`) commands older than command `$2`, newest first, at
/// most `$3`.
static OLDER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COMMAND_COLUMNS} FROM commands c WHERE agent_id = $1 AND EXISTS (SELECT 1 FROM \
         commands b WHERE b.id = $2 AND (c.created_at < b.created_at OR \
         (c.created_at = b.created_at AND c.id < b.id))) \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    )
});
/// An agent's (`$1`) delivered or executing commands.
static INFLIGHT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {PENDING_COLUMNS} FROM commands WHERE agent_id = $1 AND status = 'running' \
         AND phase IN ('delivered', 'executing')"
    )
});
/// Marks at most `$4` of an agent's (`$1`) queued commands delivered at `$2`,
/// with their timeout deadline (`$3`: grace), and returns them.
static DELIVER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE commands SET phase = 'delivered', delivered_at = $2, \
         deadline_at = CASE WHEN timeout_secs IS NULL THEN NULL \
         ELSE $2 + timeout_secs * 1000 + $3 END \
         WHERE id IN (SELECT id FROM commands WHERE agent_id = $1 \
         AND status = 'running' AND phase = 'queued' ORDER BY created_at LIMIT $4) \
         AND status = 'running' AND phase = 'queued' RETURNING {PENDING_COLUMNS}"
    )
});

/// A byte count as a stored length.
fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Whether the command in `row` (with a `status` column) is still running.
fn is_running<R: Column<String>>(row: &R) -> Result<bool, sqlx::Error> {
    let status: String = row.col("status")?;
    Ok(status == CommandStatus::Running.as_str())
}

/// The stored code of an output stream.
fn stream_code(s: OutputStream) -> i16 {
    match s {
        OutputStream::Stdout => 1,
        OutputStream::Stderr => 2,
    }
}

impl<DB: Driver> Db<DB> {
    pub(super) async fn insert_command(&self, c: &NewCommand) -> Result<()> {
        let insert = sqlx::query(
            "INSERT INTO commands (id, agent_id, command_type, command_text, context, \
             timeout_secs, status, phase, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'running', 'queued', $7, $8)",
        )
        .arg(c.id.to_string())
        .arg(c.agent_id.to_string())
        .arg(c.command_type.as_str())
        .arg(&c.command_text)
        .arg(c.context.as_str())
        .arg(c.timeout_secs.map(i64::from))
        .arg(&c.created_by)
        .arg(c.created_at);
        self.execute(insert).await?;
        Ok(())
    }

    pub(super) async fn get_command(&self, id: Uuid) -> Result<Option<Command>> {
        let key = id.to_string();
        let select = sqlx::query(BY_ID.as_str()).arg(&key);
        let Some(mut cmd) = self.read_optional(select, rows::command::<DB>).await? else {
            return Ok(None);
        };
        let output = sqlx::query(
            "SELECT stream, data FROM command_output WHERE command_id = $1 \
             ORDER BY stream, byte_offset",
        )
        .arg(&key);
        for chunk in output.fetch_all(self.reader()).await? {
            let stream: i16 = chunk.col("stream")?;
            let data: String = chunk.col("data")?;
            if stream == stream_code(OutputStream::Stdout) {
                cmd.stdout.push_str(&data);
            } else {
                cmd.stderr.push_str(&data);
            }
        }
        Ok(Some(cmd))
    }

    pub(super) async fn list_commands(
        &self,
        agent_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Command>> {
        let select = match before {
            None => sqlx::query(NEWEST.as_str()).arg(agent_id.to_string()),
            Some(before) => sqlx::query(OLDER.as_str())
                .arg(agent_id.to_string())
                .arg(before.to_string()),
        };
        let select = select.arg(i64::from(limit));
        self.read_all(select, rows::command::<DB>).await
    }

    pub(super) async fn deliverable_commands(
        &self,
        agent_id: Uuid,
        now: i64,
        grace_ms: i64,
        include_inflight: bool,
    ) -> Result<Vec<PendingCommand>> {
        let id = agent_id.to_string();
        let mut found = Vec::new();
        if include_inflight {
            let inflight = sqlx::query(INFLIGHT.as_str()).arg(&id);
            found = inflight.fetch_all(self.reader()).await?;
        }
        let deliver = sqlx::query(DELIVER.as_str())
            .arg(&id)
            .arg(now)
            .arg(grace_ms)
            .arg(i64::try_from(DELIVERY_BATCH).unwrap_or(i64::MAX));
        found.extend(deliver.fetch_all(self.writer()).await?);
        let mut out = found
            .iter()
            .map(|r| Ok((r.col("created_at")?, rows::pending_command::<DB>(r)?)))
            .collect::<Result<Vec<(i64, _)>>>()?;
        out.sort_by_key(|(created, c)| (*created, c.id));
        Ok(out.into_iter().map(|(_, c)| c).collect())
    }

    pub(super) async fn cancel_requests(&self, agent_id: Uuid) -> Result<Vec<Uuid>> {
        let select = sqlx::query(
            "SELECT id FROM commands WHERE agent_id = $1 AND status = 'running' \
             AND cancel_requested_at IS NOT NULL",
        )
        .arg(agent_id.to_string());
        self.read_all(select, |r| uuid_col(r, "id")).await
    }

    pub(super) async fn command_started(
        &self,
        agent_id: Uuid,
        id: Uuid,
        started_at: i64,
    ) -> Result<bool> {
        let update = sqlx::query(
            "UPDATE commands SET phase = 'executing', started_at = COALESCE(started_at, $3) \
             WHERE id = $1 AND agent_id = $2 AND status = 'running'",
        )
        .arg(id.to_string())
        .arg(agent_id.to_string())
        .arg(started_at);
        Ok(self.execute(update).await? == 1)
    }

    pub(super) async fn append_output(
        &self,
        agent_id: Uuid,
        id: Uuid,
        stream: OutputStream,
        offset: u64,
        data: &str,
        cap: u64,
    ) -> Result<AppendOutcome> {
        let (select, update) = match stream {
            OutputStream::Stdout => (
                "SELECT stdout_len AS held, status FROM commands WHERE id = $1 AND agent_id = $2",
                "UPDATE commands SET stdout_len = $3, stdout_truncated = (stdout_truncated OR $4) \
                 WHERE id = $1 AND stdout_len = $2 AND status = 'running'",
            ),
            OutputStream::Stderr => (
                "SELECT stderr_len AS held, status FROM commands WHERE id = $1 AND agent_id = $2",
                "UPDATE commands SET stderr_len = $3, stderr_truncated = (stderr_truncated OR $4) \
                 WHERE id = $1 AND stderr_len = $2 AND status = 'running'",
            ),
        };
        let key = id.to_string();
        let mut tx = self.begin().await?;
        let select = sqlx::query(select).arg(&key).arg(agent_id.to_string());
        let Some(row) = tx.fetch_optional(select).await? else {
            return Ok(AppendOutcome::Unknown);
        };
        if !is_running(&row)? {
            return Ok(AppendOutcome::Ignored);
        }
        let held = u64_of(row.col("held")?);
        let Some((skip, keep, truncated, new_len)) = plan_append(held, offset, data, cap) else {
            return Ok(AppendOutcome::Ignored);
        };
        let update = sqlx::query(update)
            .arg(&key)
            .arg(i64_of(held))
            .arg(i64_of(new_len))
            .arg(truncated);
        if tx.execute(update).await? != 1 {
            return Ok(AppendOutcome::Ignored);
        }
        if keep > 0 {
            let insert = sqlx::query(
                "INSERT INTO command_output (command_id, stream, byte_offset, data) \
                 VALUES ($1, $2, $3, $4)",
            )
            .arg(&key)
            .arg(stream_code(stream))
            .arg(i64_of(held))
            .arg(&data[skip..skip + keep]);
            tx.execute(insert).await?;
        }
        tx.commit().await?;
        Ok(AppendOutcome::Appended)
    }

    pub(super) async fn finish_command(
        &self,
        agent_id: Uuid,
        r: &CommandResult,
        now: i64,
    ) -> Result<FinishOutcome> {
        let key = r.command_id.to_string();
        let agent = agent_id.to_string();
        let status = match r.outcome {
            CommandOutcome::Completed => CommandStatus::Completed,
            CommandOutcome::Failed => CommandStatus::Failed,
            CommandOutcome::Timeout => CommandStatus::Timeout,
            CommandOutcome::Cancelled => CommandStatus::Cancelled,
        };
        let clamp = |ms: u64| i64_of(ms).min(now);
        let update = sqlx::query(
            "UPDATE commands SET status = $3, phase = 'done', exit_code = $4, signal = $5, \
             error = $6, stdout_truncated = (stdout_truncated OR $7), \
             stderr_truncated = (stderr_truncated OR $8), \
             started_at = COALESCE(started_at, $9), completed_at = $10 \
             WHERE id = $1 AND agent_id = $2 AND status = 'running' \
             AND stdout_len = $11 AND stderr_len = $12",
        )
        .arg(&key)
        .arg(&agent)
        .arg(status.as_str())
        .arg(r.exit_code.map(i64::from))
        .arg(r.signal.map(i64::from))
        .arg(r.error.as_deref())
        .arg(r.stdout_truncated)
        .arg(r.stderr_truncated)
        .arg(r.started_at_ms.map(clamp))
        .arg(clamp(r.finished_at_ms))
        .arg(i64_of(r.stdout_bytes))
        .arg(i64_of(r.stderr_bytes));
        if self.execute(update).await? == 1 {
            return Ok(FinishOutcome::Stored);
        }
        // Not stored: say why, as the writer sees it.
        let select = sqlx::query(
            "SELECT status, stdout_len, stderr_len FROM commands WHERE id = $1 AND agent_id = $2",
        )
        .arg(&key)
        .arg(&agent);
        let Some(row) = select.fetch_optional(self.writer()).await? else {
            return Ok(FinishOutcome::Unknown);
        };
        if !is_running(&row)? {
            return Ok(FinishOutcome::AlreadyFinal);
        }
        Ok(FinishOutcome::Incomplete {
            stdout_len: u64_of(row.col("stdout_len")?),
            stderr_len: u64_of(row.col("stderr_len")?),
        })
    }

    pub(super) async fn request_cancel(&self, id: Uuid, now: i64) -> Result<CancelOutcome> {
        let key = id.to_string();
        let cancel_queued = sqlx::query(
            "UPDATE commands SET status = 'cancelled', phase = 'done', completed_at = $2, \
             cancel_requested_at = $2 WHERE id = $1 AND status = 'running' AND phase = 'queued'",
        );
        if self.execute(cancel_queued.arg(&key).arg(now)).await? == 1 {
            return Ok(CancelOutcome::CancelledQueued);
        }
        let request = sqlx::query(
            "UPDATE commands SET cancel_requested_at = COALESCE(cancel_requested_at, $2) \
             WHERE id = $1 AND status = 'running'",
        );
        if self.execute(request.arg(&key).arg(now)).await? == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let select = sqlx::query("SELECT status FROM commands WHERE id = $1").arg(&key);
        let Some(row) = select.fetch_optional(self.writer()).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let status: String = row.col("status")?;
        Ok(CancelOutcome::AlreadyFinal(status_of(&status)?))
    }

    pub(super) async fn expire_commands(
        &self,
        now: i64,
        cancel_grace_ms: i64,
    ) -> Result<Vec<ExpiredCommand>> {
        let timeout = sqlx::query(
            "UPDATE commands SET status = 'timeout', phase = 'done', completed_at = $1 \
             WHERE status = 'running' AND deadline_at IS NOT NULL AND deadline_at <= $1 \
             RETURNING id, agent_id",
        )
        .arg(now);
        let timed_out = timeout.fetch_all(self.writer()).await?;
        let cancel = sqlx::query(
            "UPDATE commands SET status = 'cancelled', phase = 'done', completed_at = $1 \
             WHERE status = 'running' AND cancel_requested_at IS NOT NULL \
             AND cancel_requested_at <= $2 RETURNING id, agent_id",
        )
        .arg(now)
        .arg(now - cancel_grace_ms);
        let cancelled = cancel.fetch_all(self.writer()).await?;
        let mut out = Vec::new();
        for (found, status) in [
            (timed_out, CommandStatus::Timeout),
            (cancelled, CommandStatus::Cancelled),
        ] {
            for r in &found {
                out.push(ExpiredCommand {
                    id: uuid_col(r, "id")?,
                    agent_id: uuid_col(r, "agent_id")?,
                    status,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn agents_with_work(&self) -> Result<Vec<Uuid>> {
        let select = sqlx::query(
            "SELECT DISTINCT agent_id FROM commands WHERE status = 'running' \
             AND (phase = 'queued' OR cancel_requested_at IS NOT NULL)",
        );
        self.read_all(select, |r| uuid_col(r, "agent_id")).await
    }

    pub(super) async fn command_counts(&self) -> Result<Vec<(CommandStatus, i64)>> {
        let select = sqlx::query("SELECT status, COUNT(*) AS n FROM commands GROUP BY status");
        // Rows of a status this build does not know are left out.
        let counts = self.read_all(select, |r| {
            let status: String = r.col("status")?;
            CommandStatus::parse(&status)
                .map(|status| Ok((status, r.col("n")?)))
                .transpose()
        });
        Ok(counts.await?.into_iter().flatten().collect())
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
