//! Users: `GET/POST /api/users`, `PATCH/DELETE /api/users/:id`, and
//! password hashing off the async workers.

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
        service::users::list(&state)
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
    let new = service::users::create(&state, &user.actor(&client), req).await?;
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
    let u = service::users::update(&state, &user.actor(&client), user.id, id, req).await?;
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
    service::users::delete(&state, &user.actor(&client), user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
