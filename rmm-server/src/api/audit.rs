//! The audit log: writing a record, and `GET /api/audit`.

use axum::Json;
use axum::extract::State;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::store::Role;

use super::*;

/// Reads the audit log, newest first.
#[utoipa::path(get, path = "/api/audit", security(("bearer" = [])), params(AuditPage),
    responses(
        (status = 200, description = "newest first", body = [AuditView]),
        (status = 400, description = "`invalid_query` (also a `limit` out of range)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(page): ApiQuery<AuditPage>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    user.require(Role::Admin)?;
    let limit = page.checked_limit()?;
    let rows = service::audit::list(&state, page.before, limit).await?;
    Ok(Json(rows.into_iter().map(audit_view).collect()))
}
