//! Commands: submit, read, cancel, and an agent's history.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::client_addr::ClientIp;
use crate::error::{ApiError, ErrorBody};
use crate::store::Role;

use super::*;

/// Submits a command.
#[utoipa::path(post, path = "/api/agents/{id}/command", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")), request_body = CommandRequest,
    responses(
        (status = 200, description = "stored; runs when the agent is connected", body = CommandAccepted, links(
            ("command" = (operation_id = "get_command", parameters(("id" = "$response.body#/command_id")))),
            ("cancel" = (operation_id = "cancel_command", parameters(("id" = "$response.body#/command_id")))))),
        (status = 400, description = "`invalid_id`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the technician role", body = ErrorBody),
        (status = 404, description = "`not_found`: no such agent, or retired", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_command` (blank), `invalid_timeout`", body = ErrorBody)))]
pub async fn submit_command(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(agent_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CommandRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    user.require(Role::Technician)?;
    let command_id = service::commands::submit(&state, &user.actor(&client), agent_id, req).await?;
    Ok(Json(CommandAccepted::new(command_id)))
}

/// One command with its output.
#[utoipa::path(get, path = "/api/commands/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "command id")),
    responses(
        (status = 200, description = "the command with its output", body = CommandView, links(
            ("agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/agent_id")))),
            ("cancel" = (operation_id = "cancel_command", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn get_command(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CommandView>, ApiError> {
    user.require(Role::Readonly)?;
    let cmd = service::commands::get(&state, id).await?;
    Ok(Json(command_view(cmd, true)))
}

/// Cancels a command: a queued one is `cancelled` at once; one the agent
/// has gets a `cancel_command` and becomes `cancelled` when the agent
/// reports (or after the cancel grace period).
#[utoipa::path(post, path = "/api/commands/{id}/cancel", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "command id")),
    responses(
        (status = 202, description = "cancelled (queued) or cancellation sent to the agent", body = CommandView, links(
            ("command" = (operation_id = "get_command", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the technician role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the command is already final", body = ErrorBody)))]
pub async fn cancel_command(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<CommandView>), ApiError> {
    user.require(Role::Technician)?;
    let cmd = service::commands::cancel(&state, &user.actor(&client), id).await?;
    Ok((StatusCode::ACCEPTED, Json(command_view(cmd, true))))
}

/// An agent's commands, newest first, without script text and output.
#[utoipa::path(get, path = "/api/agents/{id}/commands", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id"), CommandPage),
    responses(
        (status = 200, description = "newest first, without script text and output", body = [CommandView], links(
            ("command" = (operation_id = "get_command", parameters(("id" = "$response.body#/0/id")))),
            ("cancel" = (operation_id = "cancel_command", parameters(("id" = "$response.body#/0/id")))))),
        (status = 400, description = "`invalid_id`, `invalid_query` (also a `limit` out of range)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)))]
pub async fn list_commands(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(agent_id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<CommandPage>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    user.require(Role::Readonly)?;
    let limit = page.checked_limit()?;
    let cmds = service::commands::history(&state, agent_id, page.before, limit).await?;
    Ok(Json(
        cmds.into_iter().map(|c| command_view(c, false)).collect(),
    ))
}
