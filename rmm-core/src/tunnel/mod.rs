//! The sans-IO tunnel / session / channel state machine.
//!
//! One [`Tunnel`] lives per agent connection on each side: an
//! [`AgentTunnel`] inside the agent and a [`ServerTunnel`] inside the server
//! (one per connected agent). Neither opens sockets, spawns tasks or reads
//! the clock: the driver feeds it what arrived (`handle_*`), calls the
//! application operations (`open_channel`, `write`, `read`, ...), and
//! performs what it asks for (`poll_*`), passing the current [`Instant`] in.
//! This is the quinn-proto shape; see [`Tunnel`] for the call order.
//!
//! # Model
//!
//! - **Modes** (agent): the agent is in [`Mode::Heartbeat`] until a
//!   technician opens a session ([`Message::TunnelOpen`]); it then answers
//!   [`Message::TunnelReady`] and is in [`Mode::Tunnel`] on the same
//!   connection until the session ends, when it returns to heartbeat mode.
//!   At most one session exists at a time: a second `TunnelOpen` is refused
//!   with a `TunnelError` of code [`TunnelErrorCode::Busy`] (HTTP 409 on the
//!   server) and reported as [`Event::SessionRefused`] for the audit trail.
//! - **Sessions** (server): a [`ServerTunnel`] opens at most one session at a
//!   time on its agent; the [`SessionRegistry`] records which technician owns
//!   which session and refuses a second active session of the same
//!   technician on the same agent.
//! - **Channels** are multiplexed inside the session. Either side may open
//!   one; ids are unique per connection and never reused: the server opens
//!   even ids (2, 4, ...), the agent odd ids (1, 3, ...), and a peer's ids
//!   must increase (an id that is lower than one the peer already used, or of
//!   the wrong parity, is refused with `duplicate_id`). Opens of a kind not
//!   in [`TunnelConfig::accepted_kinds`] (and every
//!   [`ChannelKind::Unknown`]) are refused with `unsupported_kind`; beyond
//!   [`TunnelConfig::max_channels`] with `too_many_channels`. Other opens are
//!   handed to the driver as [`Event::ChannelOpenRequested`], which answers
//!   with [`Tunnel::accept_channel`] or [`Tunnel::reject_channel`] within
//!   [`TunnelConfig::open_timeout`] (the driver decides: a terminal may need
//!   a permission check or a PTY that cannot be allocated).
//! - **Flow control** is per channel and SSH-style. Each receiver grants a
//!   window ([`TunnelConfig::window_for`], default 256 KiB); [`Tunnel::write`]
//!   accepts at most the credit the peer granted, so bytes in flight never
//!   exceed the window and the unread bytes a receiver buffers never exceed
//!   what it granted. Credit goes back ([`Message::WindowAdjust`]) only when
//!   the application *reads* ([`Tunnel::read`], [`Tunnel::read_chunk`]), in
//!   batches of at least half the window. Data is cut into frames of at most
//!   the peer's `max_packet` (and our [`TunnelConfig::max_packet`]), and
//!   channels with pending data take turns (round robin) so one fast channel
//!   cannot starve the others; control frames go first. A peer that sends
//!   more than its window, or a frame larger than `max_packet`, gets that
//!   channel reset (`ChannelClose` with `reset` = `window_exceeded` /
//!   `packet_too_large`) — the session and the other channels carry on.
//! - **Close** is SSH-like: [`Tunnel::send_eof`] half-closes (after the bytes
//!   already written), [`Tunnel::close_channel`] closes (after them too),
//!   [`Tunnel::reset_channel`] discards and closes at once. A side that
//!   receives a `ChannelClose` answers with its own; the protocol entry is
//!   removed once both closes are seen. Bytes that arrived before the peer's
//!   graceful close stay readable until read.
//! - **Timeouts**: a session idle for [`TunnelConfig::idle_timeout`] (no
//!   frame of it sent or received) is ended; a channel open not answered
//!   within [`TunnelConfig::open_timeout`] is given up; a server session the
//!   agent did not confirm within it is abandoned.
//! - **Teardown**: when the session ends for any reason, including
//!   [`Tunnel::handle_disconnect`], every channel still known to the
//!   application ends with [`Event::ChannelClosed`], then the session with
//!   [`Event::SessionClosed`] (and the agent reports
//!   [`Event::ModeChanged`] back to heartbeat). Nothing is left behind.
//! - **Audit**: every session and channel operation surfaces as an [`Event`]
//!   carrying the session id (the technician is on the session events and on
//!   [`Tunnel::session`]), the channel id and kind and, where it matters, who
//!   initiated it ([`Origin`]); the driver writes its audit trail from them.
//!
//! Peer misbehaviour that concerns one channel is answered in-protocol (a
//! reject or a reset) and counted in [`TunnelStats`]; data for unknown or
//! closed channels is dropped and counted. Only input that is not tunnel
//! input at all, or that travels in the wrong direction, is an [`Error`];
//! application calls that are not allowed in the current state are typed
//! [`Error`]s too. Nothing here panics on any input.
//!
//! [`Message::TunnelOpen`]: crate::protocol::Message::TunnelOpen
//! [`Message::TunnelReady`]: crate::protocol::Message::TunnelReady
//! [`Message::WindowAdjust`]: crate::protocol::Message::WindowAdjust
//! [`Instant`]: std::time::Instant

mod channel;
mod machine;
mod registry;

use std::time::Duration;

use uuid::Uuid;

use crate::protocol::{ChannelErrorCode, ChannelKind, Limits, Message, TunnelErrorCode};

pub use channel::{ChannelInfo, ChannelState};
pub use machine::{
    AgentRole, AgentTunnel, Role, ServerRole, ServerTunnel, SessionInfo, SessionState, Tunnel,
    TunnelStats,
};
pub use registry::{RegistryError, SessionRecord, SessionRegistry};

/// Which end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The agent on the managed machine.
    Agent,
    /// The rmm server.
    Server,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Agent => Side::Server,
            Side::Server => Side::Agent,
        }
    }
}

/// Who initiated an operation, seen from the machine that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// This side (the driver called an operation, or this machine decided,
    /// e.g. a reset for a window violation).
    Local,
    /// The other side of the connection.
    Peer,
}

/// What the agent's connection is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No tunnel session: the connection carries heartbeats and commands.
    Heartbeat,
    /// A tunnel session is open on the connection.
    Tunnel,
}

/// Tunables of a [`Tunnel`]. Start from [`TunnelConfig::default`] and change
/// fields; both sides may use different values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelConfig {
    /// Window granted to the peer on a new channel, in bytes, unless
    /// [`TunnelConfig::kind_windows`] names the channel's kind
    /// (default 256 KiB; 0 is treated as 1).
    pub initial_window: u32,
    /// Per-kind window overrides (the last entry for a kind wins).
    pub kind_windows: Vec<(ChannelKind, u32)>,
    /// Largest data payload this side accepts and sends (default
    /// [`Limits::max_data`], 32 KiB; keep it at most the codec's limit; 0 is
    /// treated as 1).
    pub max_packet: u32,
    /// Channels per session, open or opening, either direction (default 64).
    pub max_channels: usize,
    /// Kinds the peer may open here (default terminal, file, port_forward).
    /// [`ChannelKind::Unknown`] is always refused.
    pub accepted_kinds: Vec<ChannelKind>,
    /// A session with no frame sent or received for this long is ended
    /// (default 15 min).
    pub idle_timeout: Duration,
    /// How long a channel open (either direction) or a server's session
    /// open may stay unanswered (default 30 s).
    pub open_timeout: Duration,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            initial_window: 256 * 1024,
            kind_windows: Vec::new(),
            max_packet: u32::try_from(Limits::default().max_data).unwrap_or(32 * 1024),
            max_channels: 64,
            accepted_kinds: vec![
                ChannelKind::Terminal,
                ChannelKind::File,
                ChannelKind::PortForward,
            ],
            idle_timeout: Duration::from_secs(15 * 60),
            open_timeout: Duration::from_secs(30),
        }
    }
}

impl TunnelConfig {
    /// Sets the window granted on channels of `kind`.
    pub fn with_window(mut self, kind: ChannelKind, bytes: u32) -> Self {
        self.kind_windows.push((kind, bytes));
        self
    }

    /// Lets the peer open channels of `kind` here.
    pub fn accept_kind(mut self, kind: ChannelKind) -> Self {
        if !self.accepted_kinds.contains(&kind) {
            self.accepted_kinds.push(kind);
        }
        self
    }

    /// The window granted to the peer on a new channel of `kind` (at least 1).
    pub fn window_for(&self, kind: ChannelKind) -> u32 {
        self.kind_windows
            .iter()
            .rev()
            .find(|(k, _)| *k == kind)
            .map_or(self.initial_window, |(_, w)| *w)
            .max(1)
    }

    /// Whether the peer may open a channel of `kind` here.
    pub fn accepts(&self, kind: ChannelKind) -> bool {
        kind != ChannelKind::Unknown && self.accepted_kinds.contains(&kind)
    }

    pub(crate) fn packet_limit(&self) -> u32 {
        self.max_packet.max(1)
    }
}

/// Something the driver must know about: act on it (spawn or stop a channel
/// handler, read, write) and write it to the audit trail.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The agent switched modes (agent only).
    ModeChanged {
        /// The new mode.
        mode: Mode,
    },
    /// A session is open: on the agent when it accepted a `TunnelOpen`, on
    /// the server when the agent confirmed with `TunnelReady`.
    SessionOpened {
        /// The session.
        session_id: Uuid,
        /// Who owns it.
        technician: String,
    },
    /// The agent refused a `TunnelOpen` because a session is already open
    /// (agent only; the machine answered `TunnelError` code `busy`).
    SessionRefused {
        /// The refused session.
        session_id: Uuid,
        /// Who asked for it.
        technician: String,
        /// Why (always [`TunnelErrorCode::Busy`] today).
        code: TunnelErrorCode,
        /// The session that is open.
        active_session: Uuid,
    },
    /// The session ended; every channel of it was reported closed before.
    /// On the server this also ends sessions that never opened (refused by
    /// the agent, open timed out, closed while opening).
    SessionClosed {
        /// The session.
        session_id: Uuid,
        /// Who owned it.
        technician: String,
        /// Why.
        reason: SessionEnd,
    },
    /// The peer asks to open a channel; answer with
    /// [`Tunnel::accept_channel`] or [`Tunnel::reject_channel`] before
    /// [`TunnelConfig::open_timeout`]. The channel ends with
    /// [`Event::ChannelClosed`] whatever happens.
    ChannelOpenRequested {
        /// The session.
        session_id: Uuid,
        /// The peer's id for the channel.
        channel_id: u32,
        /// What it carries.
        kind: ChannelKind,
        /// Kind-specific parameters from the peer.
        params: serde_json::Value,
    },
    /// A channel is open and carries data in both directions.
    ChannelOpened {
        /// The session.
        session_id: Uuid,
        /// The channel.
        channel_id: u32,
        /// What it carries.
        kind: ChannelKind,
        /// Who opened it.
        origin: Origin,
    },
    /// Bytes are ready to read on a channel that had none buffered
    /// (edge-triggered: read until [`Tunnel::read_chunk`] returns `None`).
    Readable {
        /// The channel.
        channel_id: u32,
    },
    /// A channel whose [`Tunnel::write`] accepted fewer bytes than offered
    /// got credit again.
    Writable {
        /// The channel.
        channel_id: u32,
    },
    /// The peer will send no more data on the channel (after the bytes
    /// already buffered).
    ChannelEof {
        /// The session.
        session_id: Uuid,
        /// The channel.
        channel_id: u32,
    },
    /// The channel is gone for the application: stop its handler. Emitted
    /// exactly once for every channel that was opened with
    /// [`Tunnel::open_channel`] or announced with
    /// [`Event::ChannelOpenRequested`], and also for opens this machine
    /// refused by itself (reason [`ChannelEnd::Rejected`] with
    /// [`Origin::Local`]) so they reach the audit trail.
    ChannelClosed {
        /// The session.
        session_id: Uuid,
        /// The channel.
        channel_id: u32,
        /// What it carried.
        kind: ChannelKind,
        /// Why.
        reason: ChannelEnd,
    },
}

/// Why a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelEnd {
    /// Closed normally by one side.
    Closed {
        /// Who closed first.
        origin: Origin,
    },
    /// Torn down because of an error (a reset close); unread and unsent
    /// data was discarded.
    Reset {
        /// Who reset it.
        origin: Origin,
        /// Why.
        code: ChannelErrorCode,
    },
    /// The open was refused.
    Rejected {
        /// Who refused ([`Origin::Local`]: this machine or its driver).
        origin: Origin,
        /// Why.
        code: ChannelErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The open was not answered within [`TunnelConfig::open_timeout`].
    OpenTimeout,
    /// The session ended underneath the channel.
    SessionEnded,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// Closed with `TunnelClose`.
    Closed {
        /// Who closed it.
        origin: Origin,
        /// The free-text reason given.
        reason: String,
    },
    /// Ended by a `TunnelError` from the agent (on the server: refused with
    /// `busy`, or failed).
    Failed {
        /// Who reported the failure.
        origin: Origin,
        /// Why.
        code: TunnelErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The server's open was not confirmed within
    /// [`TunnelConfig::open_timeout`].
    OpenTimeout,
    /// No frame of the session was sent or received within
    /// [`TunnelConfig::idle_timeout`].
    IdleTimeout,
    /// The connection dropped ([`Tunnel::handle_disconnect`]).
    Disconnected,
}

/// An input or an operation the machine cannot take in its current state.
/// The machine is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message is not part of the tunnel protocol; route it elsewhere.
    #[error("{kind} messages are not tunnel messages; route them to their own handler")]
    NotTunnelMessage {
        /// The message's wire kind.
        kind: &'static str,
    },
    /// The message is only ever sent by the other kind of peer (a protocol
    /// error of that message only).
    #[error("{kind} messages are only sent by the {sender:?}, not received by it")]
    WrongDirection {
        /// The message's wire kind.
        kind: &'static str,
        /// The side that sends this kind.
        sender: Side,
    },
    /// The connection was dropped; make a new machine for a new connection.
    #[error("the connection is closed; create a new tunnel machine for the next connection")]
    Disconnected,
    /// There is no session.
    #[error("no tunnel session is open")]
    NoSession,
    /// The session is still waiting for the agent's confirmation.
    #[error("session {session_id} is not confirmed by the agent yet; wait for SessionOpened")]
    SessionNotReady {
        /// The session.
        session_id: Uuid,
    },
    /// A session is already open on this connection (HTTP 409).
    #[error("session {active} is already open on this agent; close it first")]
    Busy {
        /// The open session.
        active: Uuid,
    },
    /// No such channel, or the application already saw it closed.
    #[error("unknown or closed channel {channel_id}")]
    UnknownChannel {
        /// The channel.
        channel_id: u32,
    },
    /// The channel is not open yet (its open is not answered or not
    /// accepted).
    #[error("channel {channel_id} is not open yet")]
    ChannelNotOpen {
        /// The channel.
        channel_id: u32,
    },
    /// The channel is not an open request awaiting the driver's answer.
    #[error("channel {channel_id} is not awaiting accept or reject")]
    NotPending {
        /// The channel.
        channel_id: u32,
    },
    /// The peer closed the channel; only the bytes already buffered can be
    /// read.
    #[error("channel {channel_id} was closed by the peer; read what is left, then it ends")]
    ChannelClosing {
        /// The channel.
        channel_id: u32,
    },
    /// [`Tunnel::send_eof`] was called: no more writes on this channel.
    #[error("channel {channel_id} was half-closed with send_eof; no more writes")]
    WriteAfterEof {
        /// The channel.
        channel_id: u32,
    },
    /// The session already has [`TunnelConfig::max_channels`] channels.
    #[error("the session already has {max} channels; close one first")]
    TooManyChannels {
        /// The cap.
        max: usize,
    },
    /// Channels of this kind cannot be opened.
    #[error("channel kind {kind} cannot be opened")]
    UnsupportedKind {
        /// The kind.
        kind: ChannelKind,
    },
    /// Every channel id of this connection was used; reconnect.
    #[error("channel ids of this connection are exhausted; reconnect")]
    ChannelIdsExhausted,
}

/// Whether `msg` is handled by the tunnel machine (as opposed to hello,
/// heartbeat, command and inventory messages).
pub fn is_tunnel_message(msg: &Message) -> bool {
    matches!(
        msg,
        Message::TunnelOpen(_)
            | Message::TunnelReady(_)
            | Message::TunnelClose(_)
            | Message::TunnelError(_)
            | Message::ChannelOpen(_)
            | Message::ChannelAccept(_)
            | Message::ChannelReject(_)
            | Message::WindowAdjust(_)
            | Message::ChannelEof(_)
            | Message::ChannelClose(_)
    )
}

/// Whether `msg` is about one channel (as opposed to the session).
fn is_channel_message(msg: &Message) -> bool {
    matches!(
        msg,
        Message::ChannelOpen(_)
            | Message::ChannelAccept(_)
            | Message::ChannelReject(_)
            | Message::WindowAdjust(_)
            | Message::ChannelEof(_)
            | Message::ChannelClose(_)
    )
}
