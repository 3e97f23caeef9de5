//! The native half of the `rmm` npm package (napi-rs).
//!
//! # Design
//!
//! - JavaScript imports `rmm` (`rmm.js`), which re-exports this addon's
//!   classes and functions (loaded by the generated `index.js`), groups the
//!   Proxmox and channel parts as `rmm.proxmox` / `rmm.channel`, and adds
//!   error classes for `instanceof`. The TypeScript declarations of the
//!   addon, `index.d.ts`, are generated from this crate by the napi CLI and
//!   committed; the test suite checks the committed file against a fresh
//!   generation.
//! - The work is done by the Rust crates (`rmm-client`, `rmm-proxmox`,
//!   `rmm-core`) through `rmm-bindings-common`, which the Python binding
//!   shares: argument checks, operations, flattened results and error
//!   classification are there. This crate keeps what JavaScript shapes:
//!   camelCase option objects in, Promises, plain objects and error objects
//!   out.
//! - Every I/O method returns a Promise: the future runs on the one tokio
//!   runtime napi-rs keeps per process, and the result (or a typed error
//!   object, see the `errors` module) is converted on the JavaScript thread.

mod channel;
mod errors;
mod proxmox;
mod server;

pub use channel::{Release, latest_for};
pub use proxmox::{ProxmoxClient, Upid};
pub use server::{Agent, Client, CommandResult, EnrollmentBundle};
