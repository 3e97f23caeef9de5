//! Agents: the rows enrollment creates, `hello` and disconnect, the
//! coalesced `last_seen`, machine-identity binding and retirement.

use std::sync::LazyLock;

use uuid::Uuid;

use super::rows::{self, AGENT_COLUMNS, parse_uuid, uuid_col};
use super::{Bind, Column, Db, Driver, Result, Tx};
use crate::store::{Agent, AgentHello, HelloOutcome};

/// Every live agent, by name.
static LIVE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {AGENT_COLUMNS} FROM agents WHERE retired_at IS NULL ORDER BY name")
});
/// An agent by id (`$1`), retired ones too.
static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"));

/// Most agents per batched `last_seen` statement.
const TOUCH_BATCH: usize = 5000;

impl<DB: Driver> Db<DB> {
    pub(super) async fn agent_secret_hash(&self, id: Uuid) -> Result<Option<String>> {
        let select = sqlx::query(
            "SELECT secret_hash FROM agents WHERE id = $1 AND retired_at IS NULL \
             AND secret_hash IS NOT NULL",
        )
        .arg(id.to_string());
        let hash = self.read_optional(select, |r| Ok(r.col("secret_hash")?));
        Ok(hash.await?.flatten())
    }

    pub(super) async fn list_agents(&self) -> Result<Vec<Agent>> {
        self.read_all(sqlx::query(LIVE.as_str()), rows::agent::<DB>)
            .await
    }

    pub(super) async fn get_agent(&self, id: Uuid) -> Result<Option<Agent>> {
        let select = sqlx::query(BY_ID.as_str()).arg(id.to_string());
        self.read_optional(select, rows::agent::<DB>).await
    }

    pub(super) async fn agent_connected(&self, h: &AgentHello) -> Result<HelloOutcome> {
        let id = h.agent_id.to_string();
        let mut tx = self.begin().await?;
        // The first hello of a credential binds its machine identity (empty:
        // none); later ones must claim it.
        let bind = sqlx::query(
            "UPDATE agents SET machine_uid = $2 \
             WHERE id = $1 AND machine_uid IS NULL AND retired_at IS NULL",
        )
        .arg(&id)
        .arg(&h.machine_uid);
        let first = tx.execute(bind).await? == 1;
        let mut replaced = Vec::new();
        if !first {
            let select = sqlx::query("SELECT machine_uid FROM agents WHERE id = $1").arg(&id);
            let recorded: Option<String> = match tx.fetch_optional(select).await? {
                Some(r) => r.col("machine_uid")?,
                None => None,
            };
            let recorded = recorded.unwrap_or_default();
            if recorded != h.machine_uid {
                return Ok(HelloOutcome::MachineMismatch { recorded });
            }
        } else if !h.machine_uid.is_empty() {
            let same_machine = sqlx::query(
                "SELECT id, online, last_seen FROM agents \
                 WHERE machine_uid = $1 AND id <> $2 AND retired_at IS NULL",
            )
            .arg(&h.machine_uid)
            .arg(&id);
            let others = tx.fetch_all(same_machine).await?;
            for r in &others {
                let online: bool = r.col("online")?;
                let seen: Option<i64> = r.col("last_seen")?;
                if online && seen.is_some_and(|t| t >= h.live_after) {
                    let by = uuid_col(r, "id")?;
                    return Ok(HelloOutcome::MachineInUse { by });
                }
            }
            for r in &others {
                let old: String = r.col("id")?;
                let retire = sqlx::query(
                    "UPDATE agents SET retired_at = $3, replaced_by = $2, \
                     secret_hash = NULL, online = FALSE WHERE id = $1",
                )
                .arg(&old)
                .arg(&id)
                .arg(h.now);
                tx.execute(retire).await?;
                let why = "the agent was replaced by a re-enrollment of its machine";
                cancel_commands_of_retired(&mut tx, &old, h.now, why).await?;
                replaced.push(parse_uuid(&old)?);
            }
        }
        let hello = sqlx::query(
            "UPDATE agents SET hostname = $2, os = $3, arch = $4, agent_version = $5, \
             channel = $6, address = $7, online = TRUE, session_id = $8, last_seen = $9 \
             WHERE id = $1 AND retired_at IS NULL",
        )
        .arg(&id)
        .arg(&h.hostname)
        .arg(&h.os)
        .arg(&h.arch)
        .arg(&h.agent_version)
        .arg(&h.channel)
        .arg(&h.address)
        .arg(h.session_id.to_string())
        .arg(h.now);
        tx.execute(hello).await?;
        tx.commit().await?;
        Ok(HelloOutcome::Accepted { replaced })
    }

    pub(super) async fn agent_disconnected(
        &self,
        id: Uuid,
        session_id: Uuid,
        now: i64,
    ) -> Result<()> {
        let update = sqlx::query(
            "UPDATE agents SET online = FALSE, last_seen = $3 WHERE id = $1 AND session_id = $2",
        )
        .arg(id.to_string())
        .arg(session_id.to_string())
        .arg(now);
        self.execute(update).await?;
        Ok(())
    }

    pub(super) async fn touch_agents(&self, seen: &[(Uuid, i64)]) -> Result<()> {
        for chunk in seen.chunks(TOUCH_BATCH) {
            let json = serde_json::Value::Array(
                chunk
                    .iter()
                    .map(|(id, ts)| serde_json::json!([id.to_string(), ts]))
                    .collect(),
            )
            .to_string();
            self.execute(sqlx::query(DB::TOUCH_AGENTS).arg(json))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn retire_agent(&self, id: Uuid, now: i64) -> Result<bool> {
        let id = id.to_string();
        let mut tx = self.begin().await?;
        let retire = sqlx::query(
            "UPDATE agents SET retired_at = $2, secret_hash = NULL, online = FALSE \
             WHERE id = $1 AND retired_at IS NULL",
        )
        .arg(&id)
        .arg(now);
        let retired = tx.execute(retire).await? == 1;
        cancel_commands_of_retired(&mut tx, &id, now, "the agent was retired").await?;
        tx.commit().await?;
        Ok(retired)
    }
}

/// Ends the unfinished commands of a retired agent, saying `why`: they are
/// never moved to another agent.
async fn cancel_commands_of_retired<DB: Driver>(
    tx: &mut Tx<DB>,
    agent_id: &str,
    now: i64,
    why: &str,
) -> Result<u64, sqlx::Error> {
    let cancel = sqlx::query(
        "UPDATE commands SET status = 'cancelled', phase = 'done', completed_at = $2, \
         error = $3 WHERE agent_id = $1 AND status = 'running'",
    )
    .arg(agent_id)
    .arg(now)
    .arg(why);
    tx.execute(cancel).await
}
