//! The sans-IO command-delivery conversation (PROTOCOL.md §4, §5).
//!
//! One machine lives per agent connection on each side: a
//! [`ServerDelivery`] in the server's connection task and an
//! [`AgentDelivery`] in the agent's. They own the conversation's state and
//! rules; the drivers own the socket, the clock, the store and the
//! processes. The shape is the [`tunnel`](crate::tunnel) machine's
//! (quinn-proto style): the driver feeds what arrived (`handle_*`, with the
//! current [`Instant`]), answers the machine's requests (events) with
//! operations, and performs what it asks for (`poll_*`).
//!
//! # Model
//!
//! - **Handshake.** The server awaits `hello` for
//!   [`ServerConfig::hello_timeout`]; a first message that is not a `hello`,
//!   a `hello` naming another agent or speaking no common protocol version
//!   is answered with an `error` and the connection closed. A valid `hello`
//!   becomes [`ServerEvent::Hello`]: the driver decides with its store
//!   (machine identity, re-enrollment) and calls
//!   [`ServerDelivery::welcome`] or [`ServerDelivery::refuse`]. The agent
//!   sends `hello` and awaits `welcome` for its welcome timeout; an `error`
//!   instead ends the attempt ([`AgentEnd::Refused`]), silence ends it with
//!   [`AgentEnd::NoWelcome`].
//! - **Delivery** is pull-based. After the welcome, and whenever the driver
//!   is woken ([`ServerDelivery::wake`]), the machine asks for due work with
//!   [`ServerEvent::Fetch`]; the driver reads its store and hands the
//!   commands and cancel requests to [`ServerDelivery::deliver`]. After a
//!   (re)connect every non-final command is sent again and every cancel
//!   request repeated; later fetches send new commands and cancels not yet
//!   sent on this connection. A batch of [`DELIVERY_BATCH`] commands means
//!   more may wait.
//! - **Results.** A `command_result` becomes [`ServerEvent::Result`]; the
//!   driver stores it durably and then calls
//!   [`ServerDelivery::acknowledge`] (the machine sends `command_ack`), or,
//!   when the output it holds is shorter than the result says,
//!   [`ServerDelivery::incomplete`]: the machine asks for the command again
//!   ([`ServerEvent::Resend`], answered with [`ServerDelivery::resend`])
//!   so the agent re-sends its output from offset 0, at most
//!   [`MAX_RESYNCS`] times per command and connection, then closes so the
//!   agent re-sends everything after reconnecting. Output offsets
//!   themselves are the store's (it appends a chunk only at the length it
//!   holds), so re-sent chunks are harmless.
//! - **Liveness.** The agent sends a heartbeat every interval (the
//!   welcome's `heartbeat_interval_secs`, first one at once). The server
//!   probes every interval ([`Transmit::Ping`], a transport ping the peer
//!   must answer) and closes a connection it heard nothing on for
//!   [`SILENT_INTERVALS`] intervals. Both are timers:
//!   [`poll_timeout`](ServerDelivery::poll_timeout) /
//!   [`handle_timeout`](ServerDelivery::handle_timeout).
//!
//! # Drivers and the tunnel
//!
//! A driver loop selects on the socket, its outbound queue, its wake-ups
//! and one timer. The outbound queue carries [`Frame`]s: control messages
//! (which the server passes through [`ServerDelivery::queue`] so cancels are
//! recorded) and, once a [`tunnel`](crate::tunnel) is hosted on the
//! connection, its data frames. The timer is the earliest of this
//! machine's [`poll_timeout`](ServerDelivery::poll_timeout) and the
//! tunnel's; tunnel messages ([`is_tunnel_message`](crate::tunnel::is_tunnel_message))
//! and data frames are routed to the tunnel before they reach this machine.
//! Without a tunnel, this machine answers them as it always has (the agent
//! refuses `tunnel_open`, data frames are ignored).
//!
//! [`Frame`]: crate::protocol::Frame
//! [`Instant`]: std::time::Instant

mod agent;
mod server;

use std::collections::VecDeque;
use std::time::Duration;

pub use agent::{AgentDelivery, AgentEnd, AgentEvent};
pub use server::{ServerConfig, ServerDelivery, ServerEvent, Transmit};

use crate::protocol::{DecodeError, Limits};

/// The default heartbeat interval the server announces, in seconds.
pub const HEARTBEAT_SECS: u32 = 30;

/// The default heartbeat interval the server announces
/// ([`HEARTBEAT_SECS`]).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(HEARTBEAT_SECS as u64);

/// How long the server waits for `hello` by default.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeat intervals of silence after which the server drops an agent.
pub const SILENT_INTERVALS: u32 = 3;

/// In-band re-sync attempts (a re-sent `run_command` after an incomplete
/// result) per command and connection before the server closes the
/// connection so the agent re-sends everything after reconnecting.
pub const MAX_RESYNCS: u8 = 3;

/// Most commands one fetch of due work hands over; a full batch means more
/// may be waiting.
pub const DELIVERY_BATCH: usize = 64;

/// The largest control frame the reference agent accepts from the server
/// by default (32 MiB): `run_command` carries whole scripts.
pub const AGENT_MAX_CONTROL: usize = 32 * 1024 * 1024;

/// What the server may send above its HTTP body limit in one control
/// frame (a script of the largest accepted body plus the message around it).
pub const CONTROL_SLACK: usize = 64 * 1024;

/// The largest control frame the server sends, for an HTTP body limit of
/// `body_limit` bytes.
pub fn server_control_limit(body_limit: usize) -> usize {
    body_limit
        .max(Limits::default().max_control)
        .saturating_add(CONTROL_SLACK)
}

/// The heartbeat interval announced in `welcome` for a configured
/// interval: whole seconds, at least one.
pub fn heartbeat_secs(interval: Duration) -> u32 {
    u32::try_from(interval.as_secs().max(1)).unwrap_or(HEARTBEAT_SECS)
}

/// The period of an announced heartbeat interval (at least one second).
pub fn heartbeat_period(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs.max(1)))
}

/// WebSocket close codes (RFC 6455) the conversation ends with.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Server going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (bad frame, unsupported protocol version).
    pub const PROTOCOL: u16 = 1002;
    /// Unsupported data (a text message).
    pub const UNSUPPORTED: u16 = 1003;
    /// Policy violation (identity mismatch, replaced, revoked).
    pub const POLICY: u16 = 1008;
    /// A message larger than the limits.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed (its store).
    pub const SERVER_ERROR: u16 = 1011;
    /// Try again later (a re-enrollment whose old agent is still online).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// How a connection ends: the close code and reason the driver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Close {
    /// The WebSocket close code ([`close_code`]).
    pub code: u16,
    /// The close frame's reason.
    pub reason: &'static str,
}

impl Close {
    /// A close with `code` and `reason`.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Close { code, reason }
    }

    /// The close for a frame the codec refused: over a limit (1009) or
    /// malformed (1002).
    pub fn for_decode_error(e: &DecodeError) -> Self {
        match e {
            DecodeError::ControlTooLarge { .. } | DecodeError::DataTooLarge { .. } => {
                Close::new(close_code::TOO_BIG, "message too big")
            }
            _ => Close::new(close_code::PROTOCOL, "invalid frame"),
        }
    }
}

/// Which fetch of due work [`ServerEvent::Fetch`] asks for; pass it back
/// to [`ServerDelivery::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fetch {
    /// After a (re)connect: include the commands delivered before and not
    /// final (they are sent again), and repeat every cancel request.
    pub include_inflight: bool,
}

/// An input or an operation the machine cannot take in its current state;
/// the machine is unchanged when one is returned. Each is a driver bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input arrived while the driver was deciding the `hello`; decide
    /// ([`ServerDelivery::welcome`] or [`ServerDelivery::refuse`]) before
    /// reading on.
    #[error("the hello awaits the driver's decision; welcome or refuse before reading on")]
    HelloPending,
    /// No `hello` awaits a decision.
    #[error("no hello awaits a decision")]
    NoHelloPending,
    /// The operation needs a welcomed connection.
    #[error("the connection is not welcomed yet")]
    NotWelcomed,
}

/// Pops the front of a machine's queue and releases the queue's memory once
/// it is empty: an idle connection keeps none (there are many of them).
fn pop_front<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let item = queue.pop_front();
    if queue.is_empty() && queue.capacity() != 0 {
        *queue = VecDeque::new();
    }
    item
}
