//! rmm-core integration tests (one binary, one module per area).
#![allow(clippy::unwrap_used)]

mod channel;
mod protocol;
mod tunnel;
