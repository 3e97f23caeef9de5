//! Users: `GET/POST /api/users`, `PATCH/DELETE /api/users/:id`, and
//! password hashing off the async workers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use crate::auth::{AuthUser, hash_password, verify_password};
use crate::client_addr::ClientIp;
use crate::error::{ApiError, ErrorBody};
use crate::store::{Role, User, UserChange};
use crate::{AppState, now_ms};

use super::*;

pub(super) async fn hash_blocking(state: &AppState, pw: String) -> Result<String, ApiError> {
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

pub(super) async fn verify_blocking(
    state: &AppState,
    pw: String,
    hash: String,
) -> Result<bool, ApiError> {
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .map_err(ApiError::internal)
}

/// Lists users.
#[utoipa::path(get, path = "/api/users", security(("bearer" = [])),
    responses(
        (status = 200, description = "all users, by e-mail", body = [UserView]),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<UserView>>, ApiError> {
    user.require(Role::Admin)?;
    Ok(Json(
        state
            .store
            .list_users()
            .await?
            .into_iter()
            .map(user_view)
            .collect(),
    ))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/users", security(("bearer" = [])), request_body = UserCreate,
    responses(
        (status = 201, description = "created", body = UserView, links(
            ("update" = (operation_id = "update_user", parameters(("id" = "$response.body#/id")))),
            ("delete" = (operation_id = "delete_user", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 409, description = "`conflict`: the e-mail is taken", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_email`, `weak_password`", body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiJson(req): ApiJson<UserCreate>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    user.require(Role::Admin)?;
    let email = req.validate()?;
    let now = now_ms();
    let hash = hash_blocking(&state, req.password).await?;
    let new = User::new(&email, hash, req.role, now);
    state.store.create_user(&new).await?;
    audit(
        &state,
        &user.email,
        "user.create",
        Some(new.id.to_string()),
        Some(client.to_string()),
        serde_json::json!({"email": new.email, "role": new.role.as_str()}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(user_view(new))))
}

/// Changes a user's role or password.
#[utoipa::path(patch, path = "/api/users/{id}", security(("bearer" = [])), request_body = UserUpdate,
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, description = "changed; the user's sessions ended", body = UserView),
        (status = 400, description = "`invalid_id`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: disabling yourself", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`nothing_to_change`, `weak_password`", body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UserUpdate>,
) -> Result<Json<UserView>, ApiError> {
    user.require(Role::Admin)?;
    if id == user.id && req.disabled == Some(true) {
        return Err(ApiError::conflict("you cannot disable your own account"));
    }
    req.validate()?;
    let hash = match req.password {
        Some(pw) => Some(hash_blocking(&state, pw).await?),
        None => None,
    };
    let changed_password = hash.is_some();
    let change = UserChange {
        role: req.role,
        password_hash: hash,
        disabled: req.disabled,
    };
    if !state.store.update_user(id, change, now_ms()).await? {
        return Err(ApiError::not_found("no such user"));
    }
    audit(
        &state,
        &user.email,
        "user.update",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({
            "role": req.role.map(Role::as_str),
            "password_changed": changed_password,
            "disabled": req.disabled,
            "sessions_ended": true,
        }),
    )
    .await;
    let u = state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(user_view(u)))
}

/// Deletes a user (not yourself).
#[utoipa::path(delete, path = "/api/users/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: deleting yourself", body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    client: ClientIp,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    if id == user.id {
        return Err(ApiError::conflict("you cannot delete your own account"));
    }
    if !state.store.delete_user(id).await? {
        return Err(ApiError::not_found("no such user"));
    }
    audit(
        &state,
        &user.email,
        "user.delete",
        Some(id.to_string()),
        Some(client.to_string()),
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
