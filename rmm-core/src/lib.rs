//! # rmm-core
//!
//! The foundation of rmm: everything that two rmm programs must agree on,
//! and nothing that touches the outside world.
//!
//! - [`protocol`]: the typed, versioned agent <-> server wire protocol and its
//!   pure frame codec (JSON control messages, binary channel-data frames).
//! - [`tunnel`]: the sans-IO tunnel/session/channel state machine with
//!   per-channel credit flow control (quinn-proto style: `handle_*` inputs,
//!   `poll_*` outputs, time passed in).
//! - [`delivery`]: the sans-IO command-delivery conversation (hello and
//!   welcome, delivery, acknowledgements, re-sync, cancels, liveness) as
//!   one machine per side, in the tunnel machine's shape.
//! - [`channel`]: the release-channel scanner that decides which agent build
//!   an agent should be offered (a pure function over an index, plus a thin
//!   directory adapter).
//! - [`io`]: the small traits the drivers implement (clock, frame transport,
//!   command runner, release source), with in-memory fakes behind the
//!   `testing` feature.
//!
//! Architecture invariant: this crate opens no sockets, spawns no tasks,
//! reads no clock and knows nothing of HTTP or databases. `cargo tree -p
//! rmm-core -e normal` shows no tokio, hyper, reqwest, axum or sqlx.

pub mod channel;
pub mod delivery;
pub mod io;
pub mod protocol;
pub mod transport;
pub mod tunnel;
