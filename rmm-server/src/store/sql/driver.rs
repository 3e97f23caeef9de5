//! What the shared SQL needs of a sqlx driver, bundled into one trait,
//! [`Driver`], implemented for SQLite and PostgreSQL.
//!
//! sqlx states what a value or an executor can do as bounds on the value
//! (`i64: Encode<DB>`) or on a reference (`&mut DB::Connection:
//! Executor`), and Rust makes every generic function repeat such bounds.
//! Here each capability is turned around into a bound on the database (or
//! on its row type), which a supertrait carries along: the SQL code only
//! writes `DB: Driver`. Blanket impls do the turning around, so a driver
//! gets every capability its sqlx types already have.

use std::future::Future;

use sqlx::migrate::Migrate;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::super::StoreError;
use super::super::migrations;

/// A database the SQL store runs on: [`sqlx::Sqlite`] or [`sqlx::Postgres`]
/// (other crates cannot implement it). Besides the capabilities in its
/// supertraits it holds the few things the two databases do differently.
pub trait Driver:
    Database<
        Arguments: IntoArguments<Self>,
        Connection: Migrate,
        QueryResult: RowsAffected,
        Row: Column<String>
                 + Column<Option<String>>
                 + Column<i64>
                 + Column<Option<i64>>
                 + Column<i16>
                 + Column<bool>,
    > + Exec
    + Param<String>
    + for<'a> Param<&'a String>
    + for<'a> Param<&'a str>
    + Param<Option<String>>
    + for<'a> Param<Option<&'a str>>
    + for<'a> Param<&'a [u8]>
    + Param<i64>
    + Param<Option<i64>>
    + Param<i16>
    + Param<bool>
{
    /// The name [`Store::backend`](super::super::Store::backend) reports.
    const BACKEND: &'static str;

    /// Sets `last_seen` of many agents in one statement: `$1` is a JSON
    /// array of `[agent id, unix ms]` pairs; a newer `last_seen` is kept.
    const TOUCH_AGENTS: &'static str;

    /// Adopts a database of an earlier build, then applies the pending
    /// migrations.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl Driver for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";

    const TOUCH_AGENTS: &'static str = "UPDATE agents SET last_seen = j.ts \
         FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS ts \
         FROM json_each($1)) AS j \
         WHERE agents.id = j.id AND (agents.last_seen IS NULL OR agents.last_seen < j.ts)";

    fn migrate(pool: &Pool<Self>) -> impl Future<Output = Result<(), StoreError>> + Send {
        migrations::run_sqlite(pool)
    }
}

impl Driver for sqlx::Postgres {
    const BACKEND: &'static str = "postgres";

    const TOUCH_AGENTS: &'static str = "UPDATE agents SET last_seen = j.ts \
         FROM (SELECT e->>0 AS id, (e->>1)::bigint AS ts \
         FROM jsonb_array_elements($1::jsonb) AS e) AS j \
         WHERE agents.id = j.id AND (agents.last_seen IS NULL OR agents.last_seen < j.ts)";

    fn migrate(pool: &Pool<Self>) -> impl Future<Output = Result<(), StoreError>> + Send {
        migrations::run_postgres(pool)
    }
}

/// How many rows a statement changed.
pub trait RowsAffected {
    /// The number of rows the statement inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Where statements run: a pool, or the connection of a transaction.
pub trait Exec: Database {
    /// `pool` as an executor (each statement takes a pooled connection).
    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self>;
    /// A connection (a transaction's: `&mut tx`) as an executor.
    fn conn(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self>;
}

impl<DB: Database> Exec for DB
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn pool(pool: &Pool<DB>) -> impl Executor<'_, Database = DB> {
        pool
    }

    fn conn(conn: &mut DB::Connection) -> impl Executor<'_, Database = DB> {
        conn
    }
}

/// The database takes a `T` as a statement parameter.
pub trait Param<T>: Database {
    /// Binds `value` as the next parameter of `query`.
    fn bind(query: Query<'_, Self, Self::Arguments>, value: T) -> Query<'_, Self, Self::Arguments>;
}

impl<'t, DB: Database, T: Encode<'t, DB> + Type<DB>> Param<T> for DB {
    fn bind(query: Query<'_, DB, DB::Arguments>, value: T) -> Query<'_, DB, DB::Arguments> {
        query.bind(value)
    }
}

/// `.arg(value)`: binds the next parameter of a query (sqlx's `bind`, for
/// the values [`Driver`] vouches for).
pub trait Bind<DB: Database>: Sized {
    /// Binds `value` as the next parameter.
    fn arg<T>(self, value: T) -> Self
    where
        DB: Param<T>;
}

impl<DB: Database> Bind<DB> for Query<'_, DB, DB::Arguments> {
    fn arg<T>(self, value: T) -> Self
    where
        DB: Param<T>,
    {
        DB::bind(self, value)
    }
}

/// `.col(name)`: reads a column of a row as a `T` (sqlx's `try_get` by
/// name, for the values [`Driver`] vouches for).
pub trait Column<T> {
    /// The value of column `name`.
    fn col(&self, name: &str) -> Result<T, sqlx::Error>;
}

impl<R: Row, T> Column<T> for R
where
    T: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    for<'n> &'n str: ColumnIndex<R>,
{
    fn col(&self, name: &str) -> Result<T, sqlx::Error> {
        self.try_get(name)
    }
}
