//! rmm-server integration tests: real SQLite files, the real PostgreSQL
//! server (`RMM_TEST_DATABASE_URL`), real sockets on 127.0.0.1, real
//! server processes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod api;
mod common;
mod durability;
mod enroll;
mod hub;
mod openapi;
mod store;
mod tls;
