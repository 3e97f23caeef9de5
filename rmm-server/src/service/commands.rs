//! Commands: submitting, reading, cancelling, and an agent's history.

use rmm_api::CommandRequest;
use rmm_core::protocol::{CommandRef, Message};
use uuid::Uuid;

use crate::App;
use crate::store::{CancelOutcome, Command, NewCommand};

use super::{Actor, ServiceError, audit};

/// Checks a command against the contract's rules, stores it for an agent
/// that is not retired and wakes its connection; returns the command's id (it is durable when this returns).
pub async fn submit(
    app: &App,
    actor: &Actor,
    agent_id: Uuid,
    req: CommandRequest,
) -> Result<Uuid, ServiceError> {
    req.validate()?;
    let agent = app.store.get_agent(agent_id).await?;
    if agent.is_none_or(|a| a.retired_at.is_some()) {
        return Err(ServiceError::not_found("no such agent"));
    }
    let cmd = NewCommand {
        id: Uuid::new_v4(),
        agent_id,
        command_type: req.command_type,
        command_text: req.command,
        context: req.context,
        timeout_secs: req.timeout_secs,
        created_by: actor.name.clone(),
        created_at: app.now_ms(),
    };
    app.store.insert_command(&cmd).await?;
    app.hub.kick(agent_id).await;
    audit::record(
        app,
        actor,
        "command.submit",
        Some(cmd.id.to_string()),
        serde_json::json!({
            "agent_id": agent_id.to_string(),
            "command_type": cmd.command_type.as_str(),
            "context": cmd.context.as_str(),
            "bytes": cmd.command_text.len(),
        }),
    )
    .await;
    Ok(cmd.id)
}

/// One command with its output.
pub async fn get(app: &App, id: Uuid) -> Result<Command, ServiceError> {
    app.store
        .get_command(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such command"))
}

/// Cancels a command: a queued one is `cancelled` at once; one the agent
/// has gets a `cancel_command` and becomes `cancelled` when the agent
/// reports (or after the cancel grace period). Returns the command as it
/// is now.
pub async fn cancel(app: &App, actor: &Actor, id: Uuid) -> Result<Command, ServiceError> {
    let outcome = app.store.request_cancel(id, app.now_ms()).await?;
    match outcome {
        CancelOutcome::NotFound => return Err(ServiceError::not_found("no such command")),
        CancelOutcome::AlreadyFinal(s) => {
            return Err(ServiceError::conflict(format!(
                "the command is already final ({s})"
            )));
        }
        CancelOutcome::CancelledQueued | CancelOutcome::Requested => {}
    }
    let cmd = get(app, id).await?;
    if outcome == CancelOutcome::Requested {
        app.hub.kick(cmd.agent_id).await;
    } else {
        // It may be on the wire right now: tell the agent anyway.
        app.hub.try_send(
            cmd.agent_id,
            Message::CancelCommand(CommandRef { command_id: id }),
        );
    }
    audit::record(
        app,
        actor,
        "command.cancel",
        Some(id.to_string()),
        serde_json::json!({"agent_id": cmd.agent_id.to_string(), "was_queued": outcome == CancelOutcome::CancelledQueued}),
    )
    .await;
    Ok(cmd)
}

/// An agent's commands, newest first: at most `limit`, older than the
/// command `before`.
pub async fn history(
    app: &App,
    agent_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Command>, ServiceError> {
    if app.store.get_agent(agent_id).await?.is_none() {
        return Err(ServiceError::not_found("no such agent"));
    }
    Ok(app.store.list_commands(agent_id, before, limit).await?)
}
