//! Users: creating, changing and deleting them under the contract's rules
//! (`rmm_api`), and the argon2 work bounded by [`App::hash_permits`].

use uuid::Uuid;

use crate::App;
use crate::auth::{hash_password, verify_password};
use rmm_api::{UserCreate, UserUpdate};

use crate::store::{Role, User, UserChange};

use super::{Actor, ServiceError, audit};

/// Hashes a password off the async workers, within the permits.
pub async fn hash(app: &App, pw: String) -> Result<String, ServiceError> {
    let _permit = app
        .hash_permits
        .acquire()
        .await
        .map_err(ServiceError::internal)?;
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(ServiceError::internal)?
        .map_err(ServiceError::internal)
}

/// Verifies a password off the async workers, within the permits.
pub async fn verify(app: &App, pw: String, hash: String) -> Result<bool, ServiceError> {
    let _permit = app
        .hash_permits
        .acquire()
        .await
        .map_err(ServiceError::internal)?;
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .map_err(ServiceError::internal)
}

/// All users, by e-mail.
pub async fn list(app: &App) -> Result<Vec<User>, ServiceError> {
    Ok(app.store.list_users().await?)
}

/// Creates a user after checking the contract's e-mail and password rules
/// ([`UserCreate::validate`]); a taken e-mail is a store conflict.
pub async fn create(app: &App, actor: &Actor, req: UserCreate) -> Result<User, ServiceError> {
    let email = req.validate()?;
    let now = app.now_ms();
    let hash = hash(app, req.password).await?;
    let user = User::new(&email, hash, req.role, now);
    app.store.create_user(&user).await?;
    audit::record(
        app,
        actor,
        "user.create",
        Some(user.id.to_string()),
        serde_json::json!({"email": user.email, "role": user.role.as_str()}),
    )
    .await;
    Ok(user)
}

/// Changes a user (ending their sessions) after checking the contract's
/// rules ([`UserUpdate::validate`]); `by` is the acting user, who may not
/// disable themselves.
pub async fn update(
    app: &App,
    actor: &Actor,
    by: Uuid,
    id: Uuid,
    update: UserUpdate,
) -> Result<User, ServiceError> {
    update.validate()?;
    if id == by && update.disabled == Some(true) {
        return Err(ServiceError::conflict(
            "you cannot disable your own account",
        ));
    }
    let password_hash = match update.password {
        Some(pw) => Some(hash(app, pw).await?),
        None => None,
    };
    let changed_password = password_hash.is_some();
    let change = UserChange {
        role: update.role,
        password_hash,
        disabled: update.disabled,
    };
    if !app.store.update_user(id, change, app.now_ms()).await? {
        return Err(ServiceError::not_found("no such user"));
    }
    audit::record(
        app,
        actor,
        "user.update",
        Some(id.to_string()),
        serde_json::json!({
            "role": update.role.map(Role::as_str),
            "password_changed": changed_password,
            "disabled": update.disabled,
            "sessions_ended": true,
        }),
    )
    .await;
    app.store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such user"))
}

/// Deletes a user; `by` is the acting user, who may not delete themselves.
pub async fn delete(app: &App, actor: &Actor, by: Uuid, id: Uuid) -> Result<(), ServiceError> {
    if id == by {
        return Err(ServiceError::conflict("you cannot delete your own account"));
    }
    if !app.store.delete_user(id).await? {
        return Err(ServiceError::not_found("no such user"));
    }
    audit::record(
        app,
        actor,
        "user.delete",
        Some(id.to_string()),
        serde_json::json!({}),
    )
    .await;
    Ok(())
}
