//! Enrollment: creating a bundle and serving its install script and
//! archive.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{AuthUser, random_token, sha256_hex};
use crate::client_addr::ClientIp;
use crate::enroll;
use crate::error::{ApiError, ErrorBody};
use crate::store::Role;
use crate::{AppState, now_ms};

use super::*;

/// Creates an enrollment bundle (admin).
#[utoipa::path(post, path = "/api/v1/enroll-bundle", security(("bearer" = [])), request_body = EnrollRequest,
    responses(
        (status = 201, description = "created: the agent exists, not enrolled yet", body = EnrollResponse, links(
            ("agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/agent_id")))),
            ("command" = (operation_id = "submit_command", parameters(("id" = "$response.body#/agent_id")))),
            ("commands" = (operation_id = "list_commands", parameters(("id" = "$response.body#/agent_id")))),
            ("inventory" = (operation_id = "agent_inventory", parameters(("id" = "$response.body#/agent_id")))),
            ("retire" = (operation_id = "delete_agent", parameters(("id" = "$response.body#/agent_id")))),
            ("script" = (operation_id = "enrollment_file", parameters(("file" = "{$response.body#/token}.sh")))),
            ("payload" = (operation_id = "enrollment_file", parameters(("file" = "{$response.body#/token}.tgz")))))),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 409, description = "`conflict`: an agent of that name exists", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_agent_name`, `invalid_server_url`, `insecure_server_url`", body = ErrorBody)))]
pub async fn create_enrollment(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    user.require(Role::Admin)?;
    let bundle = crate::create_bundle(
        &state,
        &req.agent_name,
        req.server_url.as_deref(),
        req.channel.unwrap_or_default(),
        &user.email,
        Some(client.to_string()),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(bundle)))
}

/// `GET /api/v1/enroll-bundle/<token>.sh` (repeatable until redeemed) and
/// `GET /api/v1/enroll-bundle/<token>.tgz` (exactly once).
#[utoipa::path(get, path = "/api/v1/enroll-bundle/{file}",
    params(("file" = String, Path, description = "`<token>.sh` or `<token>.tgz`",
            pattern = "^[A-Za-z0-9_-]{43}\\.(sh|tgz)$")),
    responses(
        (status = 200, description = "the bootstrap script (`.sh`, repeatable until redeemed) or the payload (`.tgz`, once)",
            content(("text/x-shellscript; charset=utf-8"), ("application/gzip"))),
        (status = 400, description = "`invalid_id`: not UTF-8", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown, expired or already used token", body = ErrorBody)))]
pub async fn enrollment_file(
    State(state): State<AppState>,
    client: ClientIp,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let gone = || ApiError::not_found("unknown, expired or already used enrollment token");
    let (token, kind) = if let Some(t) = file.strip_suffix(".sh") {
        (t, "sh")
    } else if let Some(t) = file.strip_suffix(".tgz") {
        (t, "tgz")
    } else {
        return Err(gone());
    };
    if !enroll::token_shape_ok(token) {
        return Err(gone());
    }
    let hash = sha256_hex(token);
    let now = now_ms();
    if kind == "sh" {
        let e = state
            .store
            .pending_enrollment(&hash, now)
            .await?
            .ok_or_else(gone)?;
        let builds = state.linux_builds(&e.channel).await;
        let script = enroll::bootstrap_script(&enroll::Bootstrap {
            public_url: &state.public_url,
            server_url: &e.server_url,
            token,
            agent_name: &e.agent_name,
            builds: &builds,
            server_cert_sha256: state.enrollment_pin().as_deref(),
            curl_pin_args: &state.curl_pin_args(),
            insecure_http: AppState::needs_insecure_http(&e.server_url),
        });
        return Ok((
            [
                (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            script,
        )
            .into_response());
    }
    let secret = random_token(32);
    let ip = client.to_string();
    let e = state
        .store
        .redeem_enrollment(&hash, now, &ip, &sha256_hex(&secret))
        .await?
        .ok_or_else(gone)?;
    let config = enroll::AgentConfig {
        server_url: e.server_url.clone(),
        agent_id: e.agent_id,
        agent_secret: secret,
        server_cert_sha256: state.enrollment_pin(),
        agent_name: e.agent_name.clone(),
        channel: e.channel.clone(),
    };
    state.hub.agents_changed();
    let tgz = enroll::payload_tgz(&config).map_err(ApiError::internal)?;
    audit(
        &state,
        &format!("agent:{}", e.agent_id),
        "enrollment.redeem",
        Some(e.agent_id.to_string()),
        Some(ip),
        serde_json::json!({"agent_name": e.agent_name}),
    )
    .await;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        tgz,
    )
        .into_response())
}
