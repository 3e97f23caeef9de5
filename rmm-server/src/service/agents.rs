//! Agents: reading and retiring them.

use uuid::Uuid;

use crate::App;
use crate::store::{Agent, InventoryItem};

use super::{Actor, ServiceError, audit};

/// One agent (retired ones too: their history stays readable).
pub async fn get(app: &App, id: Uuid) -> Result<Agent, ServiceError> {
    app.store
        .get_agent(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such agent"))
}

/// Whether `agent` counts as online at `now_ms`: connected, not retired,
/// and heard from within the configured window.
pub fn is_online(app: &App, agent: &Agent, now_ms: i64) -> bool {
    agent.online
        && agent.retired_at.is_none()
        && agent
            .last_seen
            .is_some_and(|t| now_ms - t <= app.config.online_window_ms())
}

/// Retires an agent: its credential is revoked and its connection closed;
/// its history stays. An unknown or already retired agent is
/// [`ServiceError::NotFound`].
pub async fn retire(app: &App, actor: &Actor, id: Uuid) -> Result<(), ServiceError> {
    if !app.store.retire_agent(id, app.now_ms()).await? {
        return Err(ServiceError::not_found("no such agent"));
    }
    app.hub.agents_changed();
    app.hub.disconnect(id);
    audit::record(
        app,
        actor,
        "agent.delete",
        Some(id.to_string()),
        serde_json::json!({}),
    )
    .await;
    Ok(())
}

/// An agent's latest plugin results.
pub async fn inventory(app: &App, id: Uuid) -> Result<Vec<InventoryItem>, ServiceError> {
    get(app, id).await?;
    Ok(app.store.list_inventory(id).await?)
}
