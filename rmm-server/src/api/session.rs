//! Logging in: `POST /api/auth/login`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::client_addr::ClientIp;
use crate::error::{ApiError, ErrorBody};

use super::*;

/// Logs in.
#[utoipa::path(post, path = "/api/auth/login", request_body = LoginRequest,
    responses(
        (status = 200, description = "logged in", body = TokenResponse),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: unknown e-mail or wrong password alike", body = ErrorBody),
        (status = 403, description = "`account_disabled` (said only after the right password)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_credentials_format`: too long, control characters", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed attempts of this client", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ip = client.to_string();
    let email = req.login_name()?;
    let now = Instant::now();
    if let Err(retry) = state.throttle.check(&ip, &email, now) {
        // aggregated: one row per client and minute (crate::audit)
        state.audit_gate.throttled(&ip, &email, state.now_ms());
        return Err(ApiError::rate_limited(retry));
    }
    let user = state.store.user_by_email(&email).await?;
    let ok = match &user {
        Some(u) => service::users::verify(&state, req.password, u.password_hash.clone()).await?,
        None => {
            // Same work for unknown accounts, so timing does not tell.
            service::users::verify(&state, req.password, crate::dummy_hash().to_owned()).await?;
            false
        }
    };
    match (ok, user) {
        (true, Some(u)) if u.disabled_at.is_some() => {
            state.throttle.success(&ip, &email);
            service::audit::record(
                &state,
                &Actor::new(email, Some(ip)),
                "login.disabled",
                Some(u.id.to_string()),
                serde_json::json!({}),
            )
            .await;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "this account is disabled; ask an admin to enable it",
            ))
        }
        (true, Some(u)) => {
            state.throttle.success(&ip, &email);
            service::audit::record(
                &state,
                &Actor::new(email, Some(ip)),
                "login.success",
                Some(u.id.to_string()),
                serde_json::json!({}),
            )
            .await;
            let token = state.jwt.issue(&u, state.now_ms() / 1000)?;
            Ok(Json(TokenResponse::new(token)))
        }
        (_, user) => {
            state.throttle.failure(&ip, &email, now);
            // An unauthenticated write: within the gate's budget, and the
            // typed e-mail only clipped (it names no account).
            if state.audit_gate.admit("login.failure", state.now_ms()) {
                let (actor, target, detail) = match &user {
                    Some(u) => (
                        u.email.clone(),
                        Some(u.id.to_string()),
                        serde_json::json!({}),
                    ),
                    None => (
                        "unknown-account".to_owned(),
                        None,
                        serde_json::json!({"email": crate::audit::clip_untrusted(&email)}),
                    ),
                };
                let actor = Actor::new(actor, Some(ip));
                service::audit::record(&state, &actor, "login.failure", target, detail).await;
            }
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid email or password",
            ))
        }
    }
}
