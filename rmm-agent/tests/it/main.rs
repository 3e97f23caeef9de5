//! rmm-agent integration tests: the real `rmm-agent` binary against a
//! protocol peer on 127.0.0.1 (`peer`), its command line (`cli`), and the
//! real `rmm-server` end to end (`e2e`).
#![allow(clippy::unwrap_used, missing_docs)]

mod cli;
mod e2e;
mod harness;
mod peer;
mod server;
