//! The HTTP API (SPEC §2): routes, handlers, and the extractors that turn
//! every malformed input into a typed JSON error.
//!
//! Status decisions:
//! - 400: the body is not JSON (`invalid_json`), JSON of the wrong shape
//!   (missing field, wrong type, unknown enum word: `invalid_body`), a
//!   path id that is not a UUID (`invalid_id`), a bad query string
//!   (`invalid_query`).
//! - 422: well-formed but unusable values: an empty command, a timeout of
//!   0 or over 7 days, an agent name that is not a DNS label, a server URL
//!   that is not http(s), a password shorter than 8 characters (the rules
//!   are `rmm_api`'s, answered as its [`rmm_api::Invalid`] says).
//! - 401: no, garbage, expired, `alg: none` or otherwise invalid token, an
//!   `Agent` credential on a user route, wrong login.
//! - 403: authenticated, role too low. 404: unknown object or route.
//! - 409: name or e-mail taken, cancelling a finished command.
//! - 413: body over the limit. 429: login throttled (`Retry-After`).

mod agents;
mod audit;
mod commands;
mod enrollment;
mod extract;
mod releases;
mod session;
mod users;
mod views;

pub use agents::*;
pub use audit::*;
pub use commands::*;
pub use enrollment::*;
pub use extract::*;
pub use releases::*;
pub use session::*;
pub use users::*;
pub use views::*;

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, extract::DefaultBodyLimit};

use crate::AppState;
use crate::error::ApiError;
use crate::openapi;
use crate::service::{self, Actor};

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "OpenMetrics text (the same string as `metrics::CONTENT_TYPE`; scripts/api-fuzz checks they agree)", content(("application/openmetrics-text; version=1.0.0; charset=utf-8")))))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.store.command_counts().await?;
    state.metrics.set_connected(state.hub.connected());
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&counts),
    )
        .into_response())
}

/// Liveness and store reachability.
#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "the store answers", body = HealthView)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<HealthView>, ApiError> {
    state.store.count_users().await?;
    Ok(Json(HealthView::ok(
        state.store.backend(),
        state.hub.connected(),
    )))
}

/// The description of this server (see [`openapi::document`]).
async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(openapi::document(state.config.insecure_http))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .observe_request(&method, &route, resp.status().as_u16(), start.elapsed());
    resp
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/agents", get(list_agents))
        .route("/api/agents/{id}", get(get_agent).delete(delete_agent))
        .route("/api/agents/{id}/command", post(submit_command))
        .route("/api/agents/{id}/commands", get(list_commands))
        .route("/api/agents/{id}/inventory", get(agent_inventory))
        .route("/api/commands/{id}", get(get_command))
        .route("/api/commands/{id}/cancel", post(cancel_command))
        .route("/api/users", get(list_users).post(create_user))
        .route(
            "/api/users/{id}",
            axum::routing::patch(update_user).delete(delete_user),
        )
        .route("/api/audit", get(list_audit))
        .route("/api/v1/enroll-bundle", post(create_enrollment))
        .route("/api/v1/enroll-bundle/{file}", get(enrollment_file))
        .route("/api/v1/agent/ws", get(agent_ws))
        .route("/api/v1/downloads", get(list_downloads))
        .route("/api/v1/downloads/{file}", get(download))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
