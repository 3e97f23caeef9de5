//! Users: accounts, roles, and the `token_version` that ends sessions.

use std::sync::LazyLock;

use uuid::Uuid;

use super::rows::{self, USER_COLUMNS};
use super::{Bind, Column, Db, Driver, Result, unique_violation};
use crate::store::{Role, StoreError, User, UserChange};

/// A user by e-mail (`$1`).
static BY_EMAIL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"));
/// A user by id (`$1`).
static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
/// Every user, by e-mail.
static ALL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"));

impl<DB: Driver> Db<DB> {
    pub(super) async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.reader())
            .await?;
        Ok(row.col("n")?)
    }

    pub(super) async fn create_user(&self, user: &User) -> Result<()> {
        let insert = sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .arg(user.id.to_string())
        .arg(&user.email)
        .arg(&user.password_hash)
        .arg(user.role.as_str())
        .arg(user.created_at)
        .arg(user.updated_at);
        match self.execute(insert).await {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e) => {
                Err(StoreError::Conflict(format!("user {}", user.email)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let select = sqlx::query(BY_EMAIL.as_str()).arg(email);
        self.read_optional(select, rows::user::<DB>).await
    }

    pub(super) async fn user_by_id(&self, id: Uuid) -> Result<Option<User>> {
        let select = sqlx::query(BY_ID.as_str()).arg(id.to_string());
        self.read_optional(select, rows::user::<DB>).await
    }

    pub(super) async fn list_users(&self) -> Result<Vec<User>> {
        self.read_all(sqlx::query(ALL.as_str()), rows::user::<DB>)
            .await
    }

    pub(super) async fn update_user(&self, id: Uuid, change: UserChange, now: i64) -> Result<bool> {
        // Any change ends the user's sessions (token_version).
        let update = sqlx::query(
            "UPDATE users SET role = COALESCE($2, role), \
             password_hash = COALESCE($3, password_hash), updated_at = $4, \
             disabled_at = CASE WHEN $5 IS NULL THEN disabled_at \
               WHEN $5 = 1 THEN COALESCE(disabled_at, $4) ELSE NULL END, \
             token_version = token_version + 1 WHERE id = $1",
        )
        .arg(id.to_string())
        .arg(change.role.map(Role::as_str))
        .arg(change.password_hash)
        .arg(now)
        .arg(change.disabled.map(i64::from));
        Ok(self.execute(update).await? == 1)
    }

    pub(super) async fn delete_user(&self, id: Uuid) -> Result<bool> {
        let delete = sqlx::query("DELETE FROM users WHERE id = $1").arg(id.to_string());
        Ok(self.execute(delete).await? == 1)
    }
}
