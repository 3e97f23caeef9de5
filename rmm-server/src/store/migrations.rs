//! Schema migrations, run by sqlx's [`Migrator`]: checksummed (an applied
//! migration whose text changed is an error, not silently skipped), each in
//! a transaction, and on PostgreSQL under sqlx's advisory lock so replicas
//! that start together migrate one at a time.
//!
//! The SQL is embedded (one file per backend and version under
//! `migrations/{sqlite,postgres}/`), so the binary needs no files at run
//! time. Databases made by earlier builds, whose hand-written runner kept
//! its versions in `schema_migrations`, are adopted once: their applied
//! versions are recorded in sqlx's table with the checksums of the same
//! embedded files, then the old table is dropped.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Pool, SqlSafeStr};

use super::StoreError;
use super::sql::{Bind, Column, Driver};

/// Which database the SQL is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// `(version, description, SQLite SQL, PostgreSQL SQL)`, in order.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "inventory",
        include_str!("../../migrations/sqlite/0002_inventory.sql"),
        include_str!("../../migrations/postgres/0002_inventory.sql"),
    ),
    (
        3,
        "sessions",
        include_str!("../../migrations/sqlite/0003_sessions.sql"),
        include_str!("../../migrations/postgres/0003_sessions.sql"),
    ),
    (
        4,
        "audit retention",
        include_str!("../../migrations/sqlite/0004_audit_retention.sql"),
        include_str!("../../migrations/postgres/0004_audit_retention.sql"),
    ),
];

/// The versions the hand-written runner of earlier builds applied.
pub const LEGACY_VERSIONS: &[i64] = &[1, 2];

/// The migrator for `backend`.
pub fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The SQL text of one migration (for tests that build old databases).
pub fn sql(backend: Backend, version: i64) -> Option<&'static str> {
    MIGRATIONS
        .iter()
        .find(|m| m.0 == version)
        .map(|&(_, _, sqlite, postgres)| match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        })
}

/// sqlx's bookkeeping table, as sqlx creates it.
fn sqlx_table_ddl(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
             success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
        }
    }
}

/// Adopts a database of an earlier build (`legacy_sql` answers in column
/// `legacy` whether its `schema_migrations` table exists), then applies
/// pending migrations.
async fn adopt_and_run<DB: Driver>(
    pool: &Pool<DB>,
    backend: Backend,
    legacy_sql: &'static str,
) -> Result<(), StoreError> {
    let migrator = migrator(backend);
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        // Replicas starting together adopt one at a time.
        sqlx::query("SELECT pg_advisory_xact_lock(7243501)")
            .execute(DB::conn(&mut tx))
            .await?;
    }
    let legacy: bool = sqlx::query(legacy_sql)
        .fetch_one(DB::conn(&mut tx))
        .await?
        .col("legacy")?;
    if legacy {
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(DB::conn(&mut tx))
            .await?
            .iter()
            .map(|r| r.col("version"))
            .collect::<Result<_, _>>()?;
        sqlx::raw_sql(sqlx_table_ddl(backend))
            .execute(DB::conn(&mut tx))
            .await?;
        for m in migrator.iter().filter(|m| applied.contains(&m.version)) {
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
            )
            .arg(m.version)
            .arg(m.description.as_ref())
            .arg(m.checksum.as_ref())
            .execute(DB::conn(&mut tx))
            .await?;
        }
        sqlx::raw_sql("DROP TABLE schema_migrations")
            .execute(DB::conn(&mut tx))
            .await?;
        tracing::info!(versions = ?applied, "adopted the migrations of an earlier build");
    }
    tx.commit().await?;
    migrator.run(pool).await.map_err(StoreError::Migrate)
}

/// Adopts a legacy database, then applies pending migrations.
pub async fn run_sqlite(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    adopt_and_run(
        pool,
        Backend::Sqlite,
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = 'schema_migrations') AS legacy",
    )
    .await
}

/// Adopts a legacy database, then applies pending migrations.
pub async fn run_postgres(pool: &sqlx::PgPool) -> Result<(), StoreError> {
    adopt_and_run(
        pool,
        Backend::Postgres,
        "SELECT to_regclass('schema_migrations') IS NOT NULL AS legacy",
    )
    .await
}
