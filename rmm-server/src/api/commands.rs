//! Commands: submit, read, cancel, and an agent's history.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rmm_core::protocol::{CommandRef, Message};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::client_addr::ClientIp;
use crate::error::{ApiError, ErrorBody};
use crate::store::{CancelOutcome, NewCommand, Role};
use crate::{AppState, now_ms};

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
    req.validate()?;
    let agent = state.store.get_agent(agent_id).await?;
    if agent.is_none_or(|a| a.retired_at.is_some()) {
        return Err(ApiError::not_found("no such agent"));
    }
    let cmd = NewCommand {
        id: Uuid::new_v4(),
        agent_id,
        command_type: req.command_type,
        command_text: req.command,
        context: req.context,
        timeout_secs: req.timeout_secs,
        created_by: user.email.clone(),
        created_at: now_ms(),
    };
    state.store.insert_command(&cmd).await?;
    state.hub.kick(agent_id).await;
    audit(
        &state,
        &user.email,
        "command.submit",
        Some(cmd.id.to_string()),
        Some(client.to_string()),
        serde_json::json!({
            "agent_id": agent_id.to_string(),
            "command_type": cmd.command_type.as_str(),
            "context": cmd.context.as_str(),
            "bytes": cmd.command_text.len(),
        }),
    )
    .await;
    Ok(Json(CommandAccepted::new(cmd.id)))
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
    let cmd = state
        .store
        .get_command(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such command"))?;
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
    let outcome = state.store.request_cancel(id, now_ms()).await?;
    match outcome {
        CancelOutcome::NotFound => return Err(ApiError::not_found("no such command")),
        CancelOutcome::AlreadyFinal(s) => {
            return Err(ApiError::conflict(format!(
                "the command is already final ({s})"
            )));
        }
        CancelOutcome::CancelledQueued | CancelOutcome::Requested => {}
    }
    let cmd = state
        .store
        .get_command(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such command"))?;
    if outcome == CancelOutcome::Requested {
        state.hub.kick(cmd.agent_id).await;
    } else {
        // It may be on the wire right now: tell the agent anyway.
        state.hub.try_send(
            cmd.agent_id,
            Message::CancelCommand(CommandRef { command_id: id }),
        );
    }
    audit(
        &state,
        &user.email,
        "command.cancel",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({"agent_id": cmd.agent_id.to_string(), "was_queued": outcome == CancelOutcome::CancelledQueued}),
    )
    .await;
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
    if state.store.get_agent(agent_id).await?.is_none() {
        return Err(ApiError::not_found("no such agent"));
    }
    let cmds = state
        .store
        .list_commands(agent_id, page.before, limit)
        .await?;
    Ok(Json(
        cmds.into_iter().map(|c| command_view(c, false)).collect(),
    ))
}
