//! The SQL implementation of [`Store`], written once over the sqlx
//! [`Driver`]s SQLite and PostgreSQL: one SQL text (`$N` placeholders,
//! which SQLite accepts too), with migrations, pool setup and the batched
//! `last_seen` statement the only differences.
//!
//! The queries live with their aggregate: [`users`], [`enrollments`],
//! [`agents`], [`commands`] (delivery, output, results, cancellation,
//! expiry), [`inventory`] and [`audit`]. The [`Store`] impl here only
//! forwards to them.

mod agents;
mod audit;
mod commands;
mod driver;
mod enrollments;
mod inventory;
mod rows;
mod users;

use std::path::Path;
use std::time::Duration;

use futures_util::FutureExt;
use rmm_core::protocol::{CommandResult, OutputStream};
use sqlx::query::Query;
use sqlx::{Database, Executor, Pool, Postgres, Sqlite, Transaction};
use uuid::Uuid;

pub use driver::Driver;
use driver::RowsAffected;
pub(super) use driver::{Bind, Column};

use super::{
    Agent, AgentHello, AppendOutcome, AuditEntry, CancelOutcome, Command, CommandStatus,
    Enrollment, ExpiredCommand, FinishOutcome, HelloOutcome, InventoryItem, NewAudit, NewCommand,
    NewEnrollment, PendingCommand, Store, StoreError, StoreFuture, User, UserChange,
};

/// The SQL store over one database [`Driver`]: a pool for writes and a pool
/// for reads.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    db: Db<DB>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            db: self.db.clone(),
        }
    }
}

/// The pools, and (in the aggregate modules) the queries on them.
#[derive(Debug)]
struct Db<DB: Database> {
    writer: Pool<DB>,
    reader: Pool<DB>,
}

impl<DB: Database> Clone for Db<DB> {
    fn clone(&self) -> Self {
        Db {
            writer: self.writer.clone(),
            reader: self.reader.clone(),
        }
    }
}

/// A statement with its parameters bound.
type Statement<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// Decodes a row into a `T`.
type Decoder<DB, T> = fn(&<DB as Database>::Row) -> Result<T>;

/// The result of a store operation: a [`StoreError`] unless said otherwise.
type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The SQLite store: one file, WAL, one writer connection and a reader pool.
pub type SqliteStore = SqlStore<Sqlite>;

/// The PostgreSQL store (shareable by several server replicas).
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Sqlite> {
    /// Opens (creating it when missing) the database file at `path`.
    /// Call [`Store::migrate`] before use ([`super::open`] does).
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        // Private from the start: SQLite gives the -wal/-shm files the
        // database file's mode.
        crate::datadir::precreate_private(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqlStore {
            db: Db { writer, reader },
        })
    }
}

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://...`; `?options[search_path]=s`
    /// selects a schema). Call [`Store::migrate`] before use.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let opts: sqlx::postgres::PgConnectOptions = url.parse()?;
        Self::connect_with(opts).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(
        opts: sqlx::postgres::PgConnectOptions,
    ) -> Result<PgStore, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        Ok(SqlStore {
            db: Db {
                writer: pool.clone(),
                reader: pool,
            },
        })
    }

    /// The wake-up bus over this database (`NOTIFY`/`LISTEN`).
    pub fn bus(&self) -> super::bus::PgBus {
        super::bus::PgBus::new(self.db.writer.clone())
    }
}

impl<DB: Driver> Db<DB> {
    /// Where reads run.
    fn reader(&self) -> impl Executor<'_, Database = DB> {
        DB::pool(&self.reader)
    }

    /// Where writes run, and the reads that must see them.
    fn writer(&self) -> impl Executor<'_, Database = DB> {
        DB::pool(&self.writer)
    }

    /// Starts a write transaction.
    async fn begin(&self) -> Result<Tx<DB>, sqlx::Error> {
        Ok(Tx(self.writer.begin().await?))
    }

    /// Runs a write statement; returns how many rows it changed.
    async fn execute(&self, statement: Statement<'_, DB>) -> Result<u64, sqlx::Error> {
        Ok(statement.execute(self.writer()).await?.rows_affected())
    }

    /// Reads the row `statement` finds, if any, decoded by `row`.
    async fn read_optional<T>(
        &self,
        statement: Statement<'_, DB>,
        row: Decoder<DB, T>,
    ) -> Result<Option<T>> {
        let found = statement.fetch_optional(self.reader()).await?;
        found.as_ref().map(row).transpose()
    }

    /// Reads the rows `statement` finds, each decoded by `row`.
    async fn read_all<T>(
        &self,
        statement: Statement<'_, DB>,
        row: Decoder<DB, T>,
    ) -> Result<Vec<T>> {
        statement
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(row)
            .collect()
    }
}

/// A write transaction; dropped without [`Tx::commit`], it rolls back.
struct Tx<DB: Database>(Transaction<'static, DB>);

impl<DB: Driver> Tx<DB> {
    /// Runs a statement; returns how many rows it changed.
    async fn execute(&mut self, statement: Statement<'_, DB>) -> Result<u64, sqlx::Error> {
        Ok(statement
            .execute(DB::conn(&mut self.0))
            .await?
            .rows_affected())
    }

    /// The row `statement` finds (or returns), if any.
    async fn fetch_optional(
        &mut self,
        statement: Statement<'_, DB>,
    ) -> Result<Option<DB::Row>, sqlx::Error> {
        statement.fetch_optional(DB::conn(&mut self.0)).await
    }

    /// The rows `statement` finds (or returns).
    async fn fetch_all(
        &mut self,
        statement: Statement<'_, DB>,
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        statement.fetch_all(DB::conn(&mut self.0)).await
    }

    /// Makes the transaction's changes durable.
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}

impl<DB: Driver> Store for SqlStore<DB> {
    fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    fn migrate(&self) -> StoreFuture<'_, ()> {
        DB::migrate(&self.db.writer).boxed()
    }

    fn count_users(&self) -> StoreFuture<'_, i64> {
        self.db.count_users().boxed()
    }

    fn create_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, ()> {
        self.db.create_user(user).boxed()
    }

    fn user_by_email<'a>(&'a self, email: &'a str) -> StoreFuture<'a, Option<User>> {
        self.db.user_by_email(email).boxed()
    }

    fn user_by_id(&self, id: Uuid) -> StoreFuture<'_, Option<User>> {
        self.db.user_by_id(id).boxed()
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
        self.db.list_users().boxed()
    }

    fn update_user(&self, id: Uuid, change: UserChange, now: i64) -> StoreFuture<'_, bool> {
        self.db.update_user(id, change, now).boxed()
    }

    fn delete_user(&self, id: Uuid) -> StoreFuture<'_, bool> {
        self.db.delete_user(id).boxed()
    }

    fn create_enrollment<'a>(&'a self, e: &'a NewEnrollment) -> StoreFuture<'a, ()> {
        self.db.create_enrollment(e).boxed()
    }

    fn pending_enrollment<'a>(
        &'a self,
        token_hash: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Option<Enrollment>> {
        self.db.pending_enrollment(token_hash, now).boxed()
    }

    fn redeem_enrollment<'a>(
        &'a self,
        token_hash: &'a str,
        now: i64,
        address: &'a str,
        secret_hash: &'a str,
    ) -> StoreFuture<'a, Option<Enrollment>> {
        self.db
            .redeem_enrollment(token_hash, now, address, secret_hash)
            .boxed()
    }

    fn sweep_enrollments(&self, now: i64) -> StoreFuture<'_, u64> {
        self.db.sweep_enrollments(now).boxed()
    }

    fn agent_secret_hash(&self, id: Uuid) -> StoreFuture<'_, Option<String>> {
        self.db.agent_secret_hash(id).boxed()
    }

    fn list_agents(&self) -> StoreFuture<'_, Vec<Agent>> {
        self.db.list_agents().boxed()
    }

    fn get_agent(&self, id: Uuid) -> StoreFuture<'_, Option<Agent>> {
        self.db.get_agent(id).boxed()
    }

    fn agent_connected<'a>(&'a self, hello: &'a AgentHello) -> StoreFuture<'a, HelloOutcome> {
        self.db.agent_connected(hello).boxed()
    }

    fn agent_disconnected(&self, id: Uuid, session_id: Uuid, now: i64) -> StoreFuture<'_, ()> {
        self.db.agent_disconnected(id, session_id, now).boxed()
    }

    fn touch_agents<'a>(&'a self, seen: &'a [(Uuid, i64)]) -> StoreFuture<'a, ()> {
        self.db.touch_agents(seen).boxed()
    }

    fn retire_agent(&self, id: Uuid, now: i64) -> StoreFuture<'_, bool> {
        self.db.retire_agent(id, now).boxed()
    }

    fn insert_command<'a>(&'a self, cmd: &'a NewCommand) -> StoreFuture<'a, ()> {
        self.db.insert_command(cmd).boxed()
    }

    fn get_command(&self, id: Uuid) -> StoreFuture<'_, Option<Command>> {
        self.db.get_command(id).boxed()
    }

    fn list_commands(
        &self,
        agent_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Command>> {
        self.db.list_commands(agent_id, before, limit).boxed()
    }

    fn deliverable_commands(
        &self,
        agent_id: Uuid,
        now: i64,
        grace_ms: i64,
        include_inflight: bool,
    ) -> StoreFuture<'_, Vec<PendingCommand>> {
        self.db
            .deliverable_commands(agent_id, now, grace_ms, include_inflight)
            .boxed()
    }

    fn cancel_requests(&self, agent_id: Uuid) -> StoreFuture<'_, Vec<Uuid>> {
        self.db.cancel_requests(agent_id).boxed()
    }

    fn command_started(&self, agent_id: Uuid, id: Uuid, started_at: i64) -> StoreFuture<'_, bool> {
        self.db.command_started(agent_id, id, started_at).boxed()
    }

    fn append_output<'a>(
        &'a self,
        agent_id: Uuid,
        id: Uuid,
        stream: OutputStream,
        offset: u64,
        data: &'a str,
        cap: u64,
    ) -> StoreFuture<'a, AppendOutcome> {
        self.db
            .append_output(agent_id, id, stream, offset, data, cap)
            .boxed()
    }

    fn finish_command<'a>(
        &'a self,
        agent_id: Uuid,
        result: &'a CommandResult,
        now: i64,
    ) -> StoreFuture<'a, FinishOutcome> {
        self.db.finish_command(agent_id, result, now).boxed()
    }

    fn request_cancel(&self, id: Uuid, now: i64) -> StoreFuture<'_, CancelOutcome> {
        self.db.request_cancel(id, now).boxed()
    }

    fn expire_commands(
        &self,
        now: i64,
        cancel_grace_ms: i64,
    ) -> StoreFuture<'_, Vec<ExpiredCommand>> {
        self.db.expire_commands(now, cancel_grace_ms).boxed()
    }

    fn agents_with_work(&self) -> StoreFuture<'_, Vec<Uuid>> {
        self.db.agents_with_work().boxed()
    }

    fn command_counts(&self) -> StoreFuture<'_, Vec<(CommandStatus, i64)>> {
        self.db.command_counts().boxed()
    }

    fn put_inventory<'a>(&'a self, item: &'a InventoryItem) -> StoreFuture<'a, bool> {
        self.db.put_inventory(item).boxed()
    }

    fn list_inventory(&self, agent_id: Uuid) -> StoreFuture<'_, Vec<InventoryItem>> {
        self.db.list_inventory(agent_id).boxed()
    }

    fn append_audit<'a>(&'a self, entry: &'a NewAudit) -> StoreFuture<'a, ()> {
        self.db.append_audit(entry).boxed()
    }

    fn prune_audit(&self, before: i64) -> StoreFuture<'_, u64> {
        self.db.prune_audit(before).boxed()
    }

    fn list_audit(&self, before: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.db.list_audit(before, limit).boxed()
    }
}

/// Whether the statement broke a uniqueness rule.
fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
