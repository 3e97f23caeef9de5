//! Enrollment tokens: created with their agent row, redeemed once, swept
//! when used or expired.

use super::rows::{self, parse_uuid};
use super::{Bind, Column, Db, Driver, Result, unique_violation};
use crate::store::{Enrollment, NewEnrollment, StoreError};

impl<DB: Driver> Db<DB> {
    pub(super) async fn create_enrollment(&self, e: &NewEnrollment) -> Result<()> {
        let mut tx = self.begin().await?;
        let agent = sqlx::query(
            "INSERT INTO agents (id, name, channel, created_at) VALUES ($1, $2, $3, $4)",
        )
        .arg(e.agent_id.to_string())
        .arg(&e.agent_name)
        .arg(&e.channel)
        .arg(e.created_at);
        match tx.execute(agent).await {
            Ok(_) => {}
            Err(err) if unique_violation(&err) => {
                return Err(StoreError::Conflict(format!("agent {}", e.agent_name)));
            }
            Err(err) => return Err(err.into()),
        }
        let token = sqlx::query(
            "INSERT INTO enrollments (token_hash, agent_id, server_url, channel, \
             created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .arg(&e.token_hash)
        .arg(e.agent_id.to_string())
        .arg(&e.server_url)
        .arg(&e.channel)
        .arg(&e.created_by)
        .arg(e.created_at)
        .arg(e.expires_at);
        tx.execute(token).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn pending_enrollment(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<Enrollment>> {
        let select = sqlx::query(
            "SELECT e.agent_id, a.name, e.server_url, e.channel, e.expires_at \
             FROM enrollments e JOIN agents a ON a.id = e.agent_id \
             WHERE e.token_hash = $1 AND e.used_at IS NULL AND e.expires_at > $2 \
             AND a.retired_at IS NULL",
        )
        .arg(token_hash)
        .arg(now);
        self.read_optional(select, rows::enrollment::<DB>).await
    }

    pub(super) async fn redeem_enrollment(
        &self,
        token_hash: &str,
        now: i64,
        address: &str,
        secret_hash: &str,
    ) -> Result<Option<Enrollment>> {
        let mut tx = self.begin().await?;
        let take = sqlx::query(
            "UPDATE enrollments SET used_at = $2, used_from = $3 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING agent_id, server_url, channel, expires_at",
        )
        .arg(token_hash)
        .arg(now)
        .arg(address);
        let Some(token) = tx.fetch_optional(take).await? else {
            return Ok(None);
        };
        let agent_id: String = token.col("agent_id")?;
        let enroll = sqlx::query(
            "UPDATE agents SET secret_hash = $2, address = $3, enrolled_at = $4 \
             WHERE id = $1 AND retired_at IS NULL RETURNING name",
        )
        .arg(&agent_id)
        .arg(secret_hash)
        .arg(address)
        .arg(now);
        let Some(agent) = tx.fetch_optional(enroll).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(Enrollment {
            agent_id: parse_uuid(&agent_id)?,
            agent_name: agent.col("name")?,
            server_url: token.col("server_url")?,
            channel: token.col("channel")?,
            expires_at: token.col("expires_at")?,
        }))
    }

    pub(super) async fn sweep_enrollments(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        // Agents whose token expired unused never existed for anyone.
        let retire = sqlx::query(
            "UPDATE agents SET retired_at = $1 WHERE enrolled_at IS NULL \
             AND retired_at IS NULL AND id IN (SELECT agent_id FROM enrollments \
             WHERE used_at IS NULL AND expires_at <= $1)",
        )
        .arg(now);
        tx.execute(retire).await?;
        let delete =
            sqlx::query("DELETE FROM enrollments WHERE used_at IS NOT NULL OR expires_at <= $1")
                .arg(now);
        let removed = tx.execute(delete).await?;
        tx.commit().await?;
        Ok(removed)
    }
}
