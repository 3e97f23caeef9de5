//! Agents: the list (with its snapshot cache), one agent, retirement,
//! inventory, and the agent WebSocket upgrade.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{AuthUser, sha256_hex};
use crate::client_addr::ClientIp;
use crate::error::{ApiError, ErrorBody};
use crate::store::Role;

use super::*;

/// A serialized snapshot of `GET /api/agents`.
#[derive(Debug)]
pub(super) struct Snapshot {
    built: Instant,
    generation: u64,
    body: Bytes,
}

/// The `GET /api/agents` snapshot cache.
///
/// Listing 10,000 agents means reading and serializing 10,000 rows (over
/// 100 ms with SQLite); dashboards poll this route. So the serialized list
/// is kept as a snapshot: a change this process makes or sees (hello,
/// disconnect, enrollment, retirement, dedup) invalidates it and the next
/// request rebuilds it; otherwise a snapshot older than
/// [`AgentListCache::MAX_AGE`] is served while one request rebuilds it in
/// the background (stale-while-revalidate). Changes made by other replicas
/// and the coalesced `last_seen` therefore show up within about a second.
/// The store stays the only authority; this is a cache.
#[derive(Debug, Default)]
pub struct AgentListCache {
    current: std::sync::RwLock<Option<Arc<Snapshot>>>,
    rebuild: tokio::sync::Mutex<()>,
    refreshing: std::sync::atomic::AtomicBool,
}

impl AgentListCache {
    /// Snapshots older than this are refreshed in the background.
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn rebuild(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
        let generation = state.hub.agents_generation();
        let built = Instant::now();
        let agents = state.store.list_agents().await?;
        let views: Vec<AgentView> = agents.into_iter().map(|a| agent_view(a, state)).collect();
        let body = Bytes::from(serde_json::to_vec(&views).map_err(ApiError::internal)?);
        let snap = Arc::new(Snapshot {
            built,
            generation,
            body,
        });
        *state
            .agent_list
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        Ok(snap)
    }

    /// The serialized agent list.
    async fn get(state: &AppState) -> Result<Bytes, ApiError> {
        let cache = &state.agent_list;
        if let Some(s) = cache.current()
            && s.generation == state.hub.agents_generation()
        {
            if s.built.elapsed() > Self::MAX_AGE
                && !cache
                    .refreshing
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let st = state.clone();
                tokio::spawn(async move {
                    let _guard = st.agent_list.rebuild.lock().await;
                    if let Err(e) = Self::rebuild(&st).await {
                        tracing::warn!(error = %e.message, "agent list refresh failed");
                    }
                    st.agent_list
                        .refreshing
                        .store(false, std::sync::atomic::Ordering::Release);
                });
            }
            return Ok(s.body.clone());
        }
        let _guard = cache.rebuild.lock().await;
        if let Some(s) = cache.current()
            && s.generation == state.hub.agents_generation()
        {
            return Ok(s.body.clone());
        }
        Ok(Self::rebuild(state).await?.body.clone())
    }
}

/// Lists agents (a snapshot at most about a second old; see [`AgentListCache`]).
#[utoipa::path(get, path = "/api/agents", security(("bearer" = [])),
    responses(
        (status = 200, description = "the agents that are not retired, by name", body = [AgentView], links(
            ("agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/0/id")))),
            ("command" = (operation_id = "submit_command", parameters(("id" = "$response.body#/0/id")))),
            ("commands" = (operation_id = "list_commands", parameters(("id" = "$response.body#/0/id")))),
            ("inventory" = (operation_id = "agent_inventory", parameters(("id" = "$response.body#/0/id")))))),
        (status = 401, description = "`unauthorized`", body = ErrorBody)))]
pub async fn list_agents(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, ApiError> {
    user.require(Role::Readonly)?;
    let body = AgentListCache::get(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One agent.
#[utoipa::path(get, path = "/api/agents/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")),
    responses(
        (status = 200, description = "the agent (a retired one too, with `retired_at`)", body = AgentView, links(
            ("command" = (operation_id = "submit_command", parameters(("id" = "$response.body#/id")))),
            ("commands" = (operation_id = "list_commands", parameters(("id" = "$response.body#/id")))),
            ("inventory" = (operation_id = "agent_inventory", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn get_agent(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AgentView>, ApiError> {
    user.require(Role::Readonly)?;
    let agent = service::agents::get(&state, id).await?;
    Ok(Json(agent_view(agent, &state)))
}

/// Retires an agent: its credential is revoked and its connection closed;
/// its history stays.
#[utoipa::path(delete, path = "/api/agents/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")),
    responses(
        (status = 204, description = "retired (reads still show it, with `retired_at`)"),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 404, description = "`not_found` (also when already retired)", body = ErrorBody)))]
pub async fn delete_agent(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    service::agents::retire(&state, &user.actor(&client), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An agent's plugin results (SPEC §8), by plugin name.
#[utoipa::path(get, path = "/api/agents/{id}/inventory", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "agent id")),
    responses(
        (status = 200, description = "the latest result of each plugin", body = [InventoryView]),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)))]
pub async fn agent_inventory(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(agent_id): ApiPath<Uuid>,
) -> Result<Json<Vec<InventoryView>>, ApiError> {
    user.require(Role::Readonly)?;
    let items = service::agents::inventory(&state, agent_id).await?;
    Ok(Json(items.into_iter().map(inventory_view).collect()))
}

/// The agent WebSocket. Only `Authorization: Agent <id>:<secret>` is
/// accepted.
#[utoipa::path(get, path = "/api/v1/agent/ws", security(("agent" = [])),
    responses(
        (status = 101, description = "switching protocols"),
        (status = 400, description = "`websocket_required`: not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong agent credential", body = ErrorBody),
        (status = 503, description = "`overloaded`: too many agent handshakes in progress; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn agent_ws(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response, ApiError> {
    // Bounded before anything else, so a reconnect storm costs little.
    let slot = state
        .hub
        .try_begin_handshake()
        .ok_or_else(|| ApiError::overloaded(state.config.handshake_retry_after_secs))?;
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Agent <id>:<secret> header")
        })?;
    let (scheme, cred) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("agent") {
        return Err(ApiError::unauthorized(
            "only agent credentials are accepted here",
        ));
    }
    let (id, secret) = cred
        .trim()
        .split_once(':')
        .ok_or_else(|| ApiError::unauthorized("expected Agent <id>:<secret>"))?;
    let id =
        Uuid::parse_str(id).map_err(|_| ApiError::unauthorized("invalid agent credentials"))?;
    if secret.is_empty() || secret.len() > 256 {
        return Err(ApiError::unauthorized("invalid agent credentials"));
    }
    let stored = state.store.agent_secret_hash(id).await?;
    let ok = stored.is_some_and(|h| crate::auth::ct_eq(&h, &sha256_hex(secret)));
    if !ok {
        return Err(ApiError::unauthorized("invalid agent credentials"));
    }
    let ws = ws.map_err(|e| ApiError::bad_request("websocket_required", e.body_text()))?;
    let frame = rmm_core::protocol::Limits::default().max_frame();
    let hub = state.hub.clone();
    // Every idle agent holds its read buffer: 2 KiB (a larger frame is
    // still read whole, in 2 KiB reads). No write buffer.
    Ok(ws
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(state.config.body_limit.max(frame) * 2 + 1024 * 1024)
        .max_message_size(frame)
        .max_frame_size(frame)
        .on_upgrade(move |socket| hub.run_connection(id, client.0, socket, slot)))
}
