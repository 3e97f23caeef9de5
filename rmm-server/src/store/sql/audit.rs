//! The audit log: appended, listed newest first, pruned only through the
//! retention path the database allows.

use super::rows;
use super::{Bind, Db, Driver, Result};
use crate::store::{AuditEntry, NewAudit};

impl<DB: Driver> Db<DB> {
    pub(super) async fn append_audit(&self, e: &NewAudit) -> Result<()> {
        let insert = sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, address, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .arg(e.at)
        .arg(&e.actor)
        .arg(&e.action)
        .arg(e.target.as_deref())
        .arg(e.address.as_deref())
        .arg(e.detail.to_string());
        self.execute(insert).await?;
        Ok(())
    }

    pub(super) async fn prune_audit(&self, before: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        // The database lets a DELETE from audit_log through only for rows
        // older than a cutoff held in audit_prune.
        let cutoff = sqlx::query("INSERT INTO audit_prune (cutoff) VALUES ($1)").arg(before);
        tx.execute(cutoff).await?;
        let prune = sqlx::query("DELETE FROM audit_log WHERE at < $1").arg(before);
        let pruned = tx.execute(prune).await?;
        tx.execute(sqlx::query("DELETE FROM audit_prune")).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    pub(super) async fn list_audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let select = sqlx::query(
            "SELECT id, at, actor, action, target, address, detail FROM audit_log \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .arg(before.unwrap_or(i64::MAX))
        .arg(i64::from(limit));
        self.read_all(select, rows::audit_entry::<DB>).await
    }
}
