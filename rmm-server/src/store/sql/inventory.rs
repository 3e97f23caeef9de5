//! Inventory: the latest result of each plugin on each agent.

use uuid::Uuid;

use super::rows;
use super::{Bind, Db, Driver, Result};
use crate::store::InventoryItem;

impl<DB: Driver> Db<DB> {
    pub(super) async fn put_inventory(&self, item: &InventoryItem) -> Result<bool> {
        let upsert = sqlx::query(
            "INSERT INTO inventory (agent_id, plugin, result, error, collected_at, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (agent_id, plugin) DO UPDATE SET result = excluded.result, \
             error = excluded.error, collected_at = excluded.collected_at, \
             received_at = excluded.received_at \
             WHERE inventory.collected_at <= excluded.collected_at",
        )
        .arg(item.agent_id.to_string())
        .arg(&item.plugin)
        .arg(item.result.to_string())
        .arg(item.error.as_deref())
        .arg(item.collected_at)
        .arg(item.received_at);
        Ok(self.execute(upsert).await? == 1)
    }

    pub(super) async fn list_inventory(&self, agent_id: Uuid) -> Result<Vec<InventoryItem>> {
        let select = sqlx::query(
            "SELECT agent_id, plugin, result, error, collected_at, received_at \
             FROM inventory WHERE agent_id = $1 ORDER BY plugin",
        )
        .arg(agent_id.to_string());
        self.read_all(select, rows::inventory_item::<DB>).await
    }
}
