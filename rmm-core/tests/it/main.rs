//! rmm-core integration tests (one binary, one module per area).
#![allow(clippy::unwrap_used)]

mod channel;
// The delivery tests read the real clock once per scenario, as the origin
// of their virtual time; the machines never do.
#[allow(clippy::disallowed_methods)]
mod delivery;
mod protocol;
// The tunnel tests read the real clock once per scenario, as the origin of
// their virtual time; the machine itself never does.
#[allow(clippy::disallowed_methods)]
mod tunnel;
