//! # rmm-agent
//!
//! The reference agent of rmm: it enrolls once, keeps its identity in a
//! private state directory, holds one WebSocket to the server, runs the
//! commands it is sent as real child processes, and never loses or
//! duplicates a result.
//!
//! - [`identity`]: the state directory and the persisted identity.
//! - [`machine`]: machine uid, host name, OS and architecture for `hello`.
//! - [`runner`]: command execution (interpreters, process groups,
//!   timeouts, cancellation, user sessions, capped UTF-8 output).
//! - [`store`]: the exactly-once store: finished command ids and each
//!   unacknowledged command's output spool and result, on disk.
//! - [`tls`], [`http`]: rustls (ring) client configs with optional
//!   certificate pinning (through `rmm-pin`), and the one bounded HTTP GET
//!   enrollment needs (reqwest over that rustls config, body streamed
//!   under a hard cap).
//! - [`enroll`]: redeeming the one-shot enrollment payload.
//! - [`daemon`]: the connection loop (hello/welcome, heartbeats, jittered
//!   reconnects), the command executor and the outbox pump.
//! - [`files`]: the file operations of a tunnel's `file` channel
//!   (download with size first and SHA-256 last, atomic uploads, listing),
//!   with typed errors.
//! - [`terminal`]: a tunnel `terminal` channel's program on a real PTY
//!   (flow-controlled, resizable, signals, exit status; its whole session
//!   killed when it ends).
//! - [`plugins`]: inventory plugins run on a schedule.
//! - [`selftest`]: the `rmm-agent selftest` checks.
//!
//! Architecture invariant: the agent never runs a command twice. A command
//! is marked started on disk (fsync) before its process is spawned; a
//! re-delivered command that is running is ignored, one that finished is
//! answered from the store, and one found "started but unfinished" after a
//! restart is reported failed instead of being run again.

pub mod clock;
pub mod daemon;
pub mod enroll;
pub mod files;
pub mod fsutil;
pub mod http;
pub mod identity;
pub mod machine;
pub mod plugins;
pub mod runner;
pub mod selftest;
pub mod store;
pub mod terminal;
pub mod tls;

/// This build's version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
