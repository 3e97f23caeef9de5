//! Users: the e-mail and password rules, creating, changing and deleting
//! users, and the argon2 work bounded by [`App::hash_permits`].

use uuid::Uuid;

use crate::App;
use crate::auth::{hash_password, verify_password};
use crate::store::{Role, User, UserChange};

use super::{Actor, ServiceError, audit};

/// Longest e-mail, in characters as sent (surrounding whitespace included).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Shortest password of a user, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Length in characters, the unit of OpenAPI's `minLength`/`maxLength`.
pub fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A new user's e-mail as stored (trimmed, lowercase), or `None` unless it
/// is `name@domain` without whitespace or control characters, within
/// [`MAX_EMAIL_CHARS`] as sent (`openapi::user_email_pattern` says the
/// same).
pub fn user_email(raw: &str) -> Option<String> {
    if chars(raw) > MAX_EMAIL_CHARS {
        return None;
    }
    let email = raw.trim().to_lowercase();
    let ok = email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email)
}

/// Checks a new password's length.
pub fn check_password(pw: &str) -> Result<(), ServiceError> {
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars(pw)) {
        return Err(ServiceError::invalid(
            "weak_password",
            "the password must have 8 to 1024 characters",
        ));
    }
    Ok(())
}

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

/// Creates a user after checking the e-mail and password rules; a taken
/// e-mail is [`ServiceError::Conflict`].
pub async fn create(
    app: &App,
    actor: &Actor,
    email: &str,
    password: String,
    role: Role,
) -> Result<User, ServiceError> {
    let Some(email) = user_email(email) else {
        return Err(ServiceError::invalid(
            "invalid_email",
            "email must look like name@domain",
        ));
    };
    check_password(&password)?;
    let now = app.now_ms();
    let hash = hash(app, password).await?;
    let user = User::new(&email, hash, role, now);
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

/// What [`update`] changes (at least one field).
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// New role.
    pub role: Option<Role>,
    /// New password (checked against the rules).
    pub password: Option<String>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// Changes a user (ending their sessions); `by` is the acting user, who
/// may not disable themselves.
pub async fn update(
    app: &App,
    actor: &Actor,
    by: Uuid,
    id: Uuid,
    update: Update,
) -> Result<User, ServiceError> {
    if update.role.is_none() && update.password.is_none() && update.disabled.is_none() {
        return Err(ServiceError::invalid(
            "nothing_to_change",
            "give role, password and/or disabled",
        ));
    }
    if id == by && update.disabled == Some(true) {
        return Err(ServiceError::conflict(
            "you cannot disable your own account",
        ));
    }
    let password_hash = match update.password {
        Some(pw) => {
            check_password(&pw)?;
            Some(hash(app, pw).await?)
        }
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
