//! The audit log: recording an action and reading the log.

use crate::App;
use crate::store::{AuditEntry, NewAudit};

use super::{Actor, ServiceError};

/// Appends an audit record now; a failure is logged, never returned (an
/// action that happened is not undone because its record could not be
/// written).
pub async fn record(
    app: &App,
    actor: &Actor,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) {
    let entry = NewAudit {
        at: app.now_ms(),
        actor: actor.name.clone(),
        action: action.to_owned(),
        target,
        address: actor.address.clone(),
        detail,
    };
    if let Err(e) = app.store.append_audit(&entry).await {
        tracing::error!(error = %e, action, "cannot write audit record");
    }
}

/// The log, newest first: at most `limit` records with an id below
/// `before`.
pub async fn list(
    app: &App,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, ServiceError> {
    Ok(app.store.list_audit(before, limit).await?)
}
