//! The connection-level machine shared by both sides.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::mem;
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use super::channel::{Channel, Phase};
use super::{
    ChannelEnd, ChannelInfo, Error, Event, Mode, Origin, SessionEnd, Side, TunnelConfig,
    is_channel_message,
};
use crate::protocol::{
    ChannelAccept, ChannelClose, ChannelErrorCode, ChannelKind, ChannelOpen, ChannelRef,
    ChannelReject, Frame, Message, SessionRef, TunnelClose, TunnelError, TunnelErrorCode,
    TunnelOpen, WindowAdjust,
};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::AgentRole {}
    impl Sealed for super::ServerRole {}
}

/// Which side a [`Tunnel`] plays (sealed: [`AgentRole`] or [`ServerRole`]).
pub trait Role: sealed::Sealed + fmt::Debug + 'static {
    /// The side.
    const SIDE: Side;
}

/// The agent's role: accepts sessions, opens odd channel ids.
#[derive(Debug)]
pub enum AgentRole {}

/// The server's role: opens sessions, opens even channel ids.
#[derive(Debug)]
pub enum ServerRole {}

impl Role for AgentRole {
    const SIDE: Side = Side::Agent;
}

impl Role for ServerRole {
    const SIDE: Side = Side::Server;
}

/// The agent's end of one connection.
pub type AgentTunnel = Tunnel<AgentRole>;

/// The server's end of one agent connection.
pub type ServerTunnel = Tunnel<ServerRole>;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// The server sent `TunnelOpen` and awaits `TunnelReady` (server only).
    Opening,
    /// Both sides consider the session open; channels may be opened.
    Active,
}

/// A snapshot of the current session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session.
    pub session_id: Uuid,
    /// Who owns it.
    pub technician: String,
    /// Where it stands.
    pub state: SessionState,
    /// Channels known to the application.
    pub channels: usize,
}

/// Counters of what the machine did with odd or late input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelStats {
    /// Data frames dropped: unknown or closed channel, no session, channel
    /// not open, or reset for a violation.
    pub dropped_frames: u64,
    /// Payload bytes of the dropped frames.
    pub dropped_bytes: u64,
    /// Control messages ignored: stale (of a finished session or channel)
    /// or out of place (e.g. an accept for a channel that is open).
    pub ignored_messages: u64,
    /// Channel opens this machine refused by itself.
    pub refused_opens: u64,
    /// Refusals (rejects of opens, `busy` answers) not sent because too
    /// many control frames were waiting already: a peer that floods the
    /// machine without reading its answers gets no more answers.
    pub refusals_dropped: u64,
    /// Channels this side reset.
    pub resets_sent: u64,
    /// Channels the peer reset.
    pub resets_received: u64,
    /// Payload bytes handed to `poll_transmit`.
    pub bytes_sent: u64,
    /// Payload bytes accepted from the peer.
    pub bytes_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase0 {
    Opening { deadline: Option<Instant> },
    Active,
}

#[derive(Debug)]
struct Session {
    id: Uuid,
    technician: String,
    phase: Phase0,
    last_activity: Instant,
}

/// One end of an agent connection's tunnel protocol, sans-IO.
///
/// Use [`AgentTunnel`] in the agent and [`ServerTunnel`] in the server; they
/// share every channel operation and differ in how sessions start (the
/// server calls [`ServerTunnel::open_session`], the agent answers the
/// `TunnelOpen` it receives).
///
/// # Call order
///
/// The driver owns the socket and the clock and loops:
///
/// 1. Feed input, passing the current time:
///    [`handle_frame`](Self::handle_frame) (or
///    [`handle_message`](Self::handle_message) /
///    [`handle_data`](Self::handle_data)) for each frame received,
///    [`handle_timeout`](Self::handle_timeout) when the instant last given
///    by [`poll_timeout`](Self::poll_timeout) is reached, and
///    [`handle_disconnect`](Self::handle_disconnect) once when the
///    connection drops.
/// 2. Call application operations as the handlers need:
///    [`open_channel`](Self::open_channel),
///    [`accept_channel`](Self::accept_channel) /
///    [`reject_channel`](Self::reject_channel), [`write`](Self::write),
///    [`read`](Self::read) / [`read_chunk`](Self::read_chunk),
///    [`send_eof`](Self::send_eof), [`close_channel`](Self::close_channel),
///    [`reset_channel`](Self::reset_channel),
///    [`close_session`](Self::close_session).
/// 3. Drain the outputs after any of the above: [`poll_transmit`](Self::poll_transmit)
///    until `None` (send each frame, in order, on the connection),
///    [`poll_event`](Self::poll_event) until `None` (act on and audit each
///    event), then re-arm the timer with [`poll_timeout`](Self::poll_timeout).
///
/// Frames must reach the peer in the order `poll_transmit` returned them
/// (a WebSocket does this). Inputs never panic; what cannot be taken is an
/// [`Error`] and leaves the machine unchanged.
///
/// ```
/// use std::time::Instant;
/// use rmm_core::tunnel::{AgentTunnel, Event, ServerTunnel, TunnelConfig};
/// use rmm_core::protocol::ChannelKind;
/// use uuid::Uuid;
///
/// let now = Instant::now(); // drivers pass their clock in; the machine never reads it
/// let mut server = ServerTunnel::new(TunnelConfig::default());
/// let mut agent = AgentTunnel::new(TunnelConfig::default());
/// let pump = |from: &mut dyn FnMut() -> Option<rmm_core::protocol::Frame>,
///             to: &mut dyn FnMut(rmm_core::protocol::Frame)| {
///     while let Some(f) = from() { to(f) }
/// };
/// server.open_session(now, Uuid::nil(), "alice".into()).unwrap();
/// pump(&mut || server.poll_transmit(now), &mut |f| agent.handle_frame(now, f).unwrap());
/// pump(&mut || agent.poll_transmit(now), &mut |f| server.handle_frame(now, f).unwrap());
/// let ch = server.open_channel(now, ChannelKind::Terminal, serde_json::Value::Null).unwrap();
/// pump(&mut || server.poll_transmit(now), &mut |f| agent.handle_frame(now, f).unwrap());
/// while let Some(ev) = agent.poll_event() {
///     if let Event::ChannelOpenRequested { channel_id, .. } = ev {
///         agent.accept_channel(channel_id).unwrap();
///     }
/// }
/// pump(&mut || agent.poll_transmit(now), &mut |f| server.handle_frame(now, f).unwrap());
/// assert_eq!(server.write(ch, b"uname -a\n").unwrap(), 9);
/// pump(&mut || server.poll_transmit(now), &mut |f| agent.handle_frame(now, f).unwrap());
/// let mut buf = [0u8; 64];
/// assert_eq!(agent.read(ch, &mut buf).unwrap(), 9);
/// ```
pub struct Tunnel<R: Role> {
    config: TunnelConfig,
    session: Option<Session>,
    /// Protocol entries of the current session, by id.
    channels: BTreeMap<u32, Channel>,
    /// The next id this side opens; `None` once exhausted.
    next_local_id: Option<u32>,
    /// The highest id the peer opened on this connection.
    peer_max_id: Option<u32>,
    /// Control messages to send, before any data.
    control: VecDeque<Message>,
    /// Channels with pending data, in round-robin order.
    send_queue: VecDeque<u32>,
    events: VecDeque<Event>,
    stats: TunnelStats,
    disconnected: bool,
    role: PhantomData<R>,
}

/// Refusals are queued only while fewer control frames than this wait to be
/// sent; every other queued frame is bounded by the channels' state.
const MAX_QUEUED_REFUSALS: usize = 1024;

impl<R: Role> fmt::Debug for Tunnel<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("side", &R::SIDE)
            .field("session", &self.session)
            .field("channels", &self.channels.len())
            .field("control_queued", &self.control.len())
            .field("events_queued", &self.events.len())
            .field("stats", &self.stats)
            .field("disconnected", &self.disconnected)
            .finish()
    }
}

impl<R: Role> Tunnel<R> {
    /// A machine for a fresh connection.
    pub fn new(config: TunnelConfig) -> Self {
        Tunnel {
            config,
            session: None,
            channels: BTreeMap::new(),
            next_local_id: Some(match R::SIDE {
                Side::Agent => 1,
                Side::Server => 2,
            }),
            peer_max_id: None,
            control: VecDeque::new(),
            send_queue: VecDeque::new(),
            events: VecDeque::new(),
            stats: TunnelStats::default(),
            disconnected: false,
            role: PhantomData,
        }
    }

    /// The side this machine plays.
    pub fn side(&self) -> Side {
        R::SIDE
    }

    /// The configuration.
    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    /// Counters of dropped and ignored input.
    pub fn stats(&self) -> TunnelStats {
        self.stats
    }

    /// The current session, if any.
    pub fn session(&self) -> Option<SessionInfo> {
        self.session.as_ref().map(|s| SessionInfo {
            session_id: s.id,
            technician: s.technician.clone(),
            state: match s.phase {
                Phase0::Opening { .. } => SessionState::Opening,
                Phase0::Active => SessionState::Active,
            },
            channels: self.channels.values().filter(|c| c.visible).count(),
        })
    }

    /// Whether [`handle_disconnect`](Self::handle_disconnect) was called.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// A snapshot of a channel known to the application.
    pub fn channel(&self, channel_id: u32) -> Option<ChannelInfo> {
        self.channels
            .get(&channel_id)
            .filter(|c| c.visible)
            .map(|c| c.info(channel_id))
    }

    /// The ids of the channels known to the application, ascending.
    pub fn channel_ids(&self) -> Vec<u32> {
        self.channels
            .iter()
            .filter(|(_, c)| c.visible)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Protocol entries, including channels the application saw closed
    /// whose close handshake is not finished (they count toward
    /// [`TunnelConfig::max_channels`]).
    pub fn protocol_channels(&self) -> usize {
        self.channels.len()
    }

    // ----------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------

    /// Takes one frame received from the peer.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), Error> {
        match frame {
            Frame::Control(msg) => self.handle_message(now, msg),
            Frame::Data {
                channel_id,
                payload,
            } => self.handle_data(now, channel_id, payload),
        }
    }

    /// Takes one control message received from the peer.
    ///
    /// Errors: [`Error::NotTunnelMessage`] for messages of other areas
    /// (check with [`is_tunnel_message`](super::is_tunnel_message)),
    /// [`Error::WrongDirection`] for tunnel messages only the other kind of
    /// peer receives, [`Error::Disconnected`] after
    /// [`handle_disconnect`](Self::handle_disconnect).
    pub fn handle_message(&mut self, now: Instant, msg: Message) -> Result<(), Error> {
        if self.disconnected {
            return Err(Error::Disconnected);
        }
        let kind = msg.kind();
        let wrong = |sender| Err(Error::WrongDirection { kind, sender });
        match msg {
            Message::TunnelOpen(m) => match R::SIDE {
                Side::Agent => self.on_tunnel_open(now, m),
                Side::Server => return wrong(Side::Server),
            },
            Message::TunnelReady(m) => match R::SIDE {
                Side::Server => self.on_tunnel_ready(now, m),
                Side::Agent => return wrong(Side::Agent),
            },
            Message::TunnelError(m) => match R::SIDE {
                Side::Server => self.on_tunnel_error(m),
                Side::Agent => return wrong(Side::Agent),
            },
            Message::TunnelClose(m) => self.on_tunnel_close(m),
            Message::ChannelOpen(m) => self.on_channel_open(now, m),
            Message::ChannelAccept(m) => self.on_channel_accept(m),
            Message::ChannelReject(m) => self.on_channel_reject(m),
            Message::WindowAdjust(m) => self.on_window_adjust(m),
            Message::ChannelEof(m) => self.on_channel_eof(m),
            Message::ChannelClose(m) => self.on_channel_close(m),
            _ => return Err(Error::NotTunnelMessage { kind }),
        }
        self.touch(now);
        Ok(())
    }

    /// Takes the payload of one data frame received from the peer.
    ///
    /// Data for unknown or closed channels, or outside a session, is
    /// dropped and counted. Data beyond the window granted, larger than
    /// [`TunnelConfig::max_packet`], or after the peer's EOF resets that
    /// channel. Only [`Error::Disconnected`] is returned.
    pub fn handle_data(
        &mut self,
        now: Instant,
        channel_id: u32,
        payload: Bytes,
    ) -> Result<(), Error> {
        if self.disconnected {
            return Err(Error::Disconnected);
        }
        let len = payload.len();
        let Some(session_id) = self.active_session() else {
            self.drop_data(len);
            return Ok(());
        };
        self.touch(now);
        let max_packet = self.config.packet_limit();
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            self.drop_data(len);
            return Ok(());
        };
        if !ch.visible || !ch.is_open() || ch.peer_closed.is_some() {
            self.drop_data(len);
            return Ok(());
        }
        let violation = if len > max_packet as usize {
            Some(ChannelErrorCode::PacketTooLarge)
        } else if len as u64 > ch.recv_credit {
            Some(ChannelErrorCode::WindowExceeded)
        } else if ch.peer_eof && len > 0 {
            Some(ChannelErrorCode::Protocol)
        } else {
            None
        };
        if let Some(code) = violation {
            self.drop_data(len);
            self.reset(session_id, channel_id, code, None);
            return Ok(());
        }
        if len == 0 {
            return Ok(());
        }
        let was_empty = ch.buffered == 0;
        ch.recv_credit -= len as u64;
        ch.push(payload);
        self.stats.bytes_received += len as u64;
        if was_empty {
            self.events.push_back(Event::Readable { channel_id });
        }
        Ok(())
    }

    /// Fires the timers that are due at `now`: the session's idle timeout
    /// (the session ends), the server's session-open timeout, and channel
    /// open timeouts (the channel ends with [`ChannelEnd::OpenTimeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.disconnected {
            return;
        }
        let Some(session) = &self.session else {
            return;
        };
        let session_id = session.id;
        match session.phase {
            Phase0::Opening { deadline } => {
                if deadline.is_some_and(|d| now >= d) {
                    let farewell = Message::TunnelClose(TunnelClose {
                        session_id,
                        reason: "tunnel open timed out".into(),
                    });
                    self.end_session(SessionEnd::OpenTimeout, Some(farewell));
                }
                return;
            }
            Phase0::Active => {
                let idle_at = session.last_activity.checked_add(self.config.idle_timeout);
                if idle_at.is_some_and(|d| now >= d) {
                    let farewell = match R::SIDE {
                        Side::Agent => Message::TunnelError(TunnelError {
                            session_id,
                            code: TunnelErrorCode::IdleTimeout,
                            message: format!(
                                "session idle for {} s",
                                self.config.idle_timeout.as_secs()
                            ),
                        }),
                        Side::Server => Message::TunnelClose(TunnelClose {
                            session_id,
                            reason: "idle timeout".into(),
                        }),
                    };
                    self.end_session(SessionEnd::IdleTimeout, Some(farewell));
                    return;
                }
            }
        }
        let expired: Vec<u32> = self
            .channels
            .iter()
            .filter(|(_, c)| c.visible && c.deadline().is_some_and(|d| now >= d))
            .map(|(id, _)| *id)
            .collect();
        for channel_id in expired {
            let Some(ch) = self.channels.get(&channel_id) else {
                continue;
            };
            match ch.phase {
                Phase::Requested { .. } => {
                    self.stats.refused_opens += 1;
                    self.refuse_pending(
                        session_id,
                        channel_id,
                        ChannelErrorCode::Refused,
                        "channel open not answered in time".into(),
                        ChannelEnd::OpenTimeout,
                    );
                }
                Phase::Opening { .. } => {
                    self.reset(
                        session_id,
                        channel_id,
                        ChannelErrorCode::Timeout,
                        Some(ChannelEnd::OpenTimeout),
                    );
                }
                Phase::Open => {}
            }
        }
    }

    /// The connection dropped: every channel ends, then the session (see
    /// the module docs), and the machine refuses further input. Idempotent.
    pub fn handle_disconnect(&mut self, _now: Instant) {
        if self.disconnected {
            return;
        }
        self.end_session(SessionEnd::Disconnected, None);
        self.control.clear();
        self.send_queue.clear();
        self.disconnected = true;
    }

    // ----------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------

    /// The next frame to send to the peer: control frames first, then data
    /// of the channels with pending bytes in turn, each frame at most the
    /// peer's `max_packet`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        if let Some(msg) = self.control.pop_front() {
            self.touch(now);
            return Some(Frame::Control(msg));
        }
        let our_max = self.config.packet_limit();
        while let Some(channel_id) = self.send_queue.pop_front() {
            let Some(ch) = self.channels.get_mut(&channel_id) else {
                continue;
            };
            ch.in_send_queue = false;
            if ch.send_buf.is_empty() {
                continue;
            }
            let max = ch.peer_max_packet.min(our_max).max(1) as usize;
            let n = ch.send_buf.len().min(max);
            let payload = ch.send_buf.split_to(n).freeze();
            if ch.send_buf.is_empty() {
                if ch.eof_pending {
                    ch.eof_pending = false;
                    self.control
                        .push_back(Message::ChannelEof(ChannelRef { channel_id }));
                }
                if ch.close_pending {
                    ch.close_pending = false;
                    ch.local_close_sent = true;
                    self.control.push_back(Message::ChannelClose(ChannelClose {
                        channel_id,
                        reset: None,
                    }));
                }
            } else {
                ch.in_send_queue = true;
                self.send_queue.push_back(channel_id);
            }
            self.stats.bytes_sent += n as u64;
            self.touch(now);
            return Some(Frame::Data {
                channel_id,
                payload,
            });
        }
        None
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if
    /// a timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.disconnected {
            return None;
        }
        let session = self.session.as_ref()?;
        let session_deadline = match session.phase {
            Phase0::Opening { deadline } => return deadline,
            Phase0::Active => session.last_activity.checked_add(self.config.idle_timeout),
        };
        self.channels
            .values()
            .filter(|c| c.visible)
            .filter_map(Channel::deadline)
            .chain(session_deadline)
            .min()
    }

    // ----------------------------------------------------------------
    // Application operations
    // ----------------------------------------------------------------

    /// Ends the session: sends `TunnelClose`, ends every channel (unsent
    /// and unread data is discarded; close channels first for a graceful
    /// end) and the session with events.
    pub fn close_session(&mut self, reason: &str) -> Result<(), Error> {
        self.check_connected()?;
        let Some(session) = &self.session else {
            return Err(Error::NoSession);
        };
        let farewell = Message::TunnelClose(TunnelClose {
            session_id: session.id,
            reason: reason.to_owned(),
        });
        self.end_session(
            SessionEnd::Closed {
                origin: Origin::Local,
                reason: reason.to_owned(),
            },
            Some(farewell),
        );
        Ok(())
    }

    /// Asks the peer to open a channel of `kind`; returns its id. The
    /// channel ends with [`Event::ChannelOpened`] or
    /// [`Event::ChannelClosed`] (rejected, timed out).
    pub fn open_channel(
        &mut self,
        now: Instant,
        kind: ChannelKind,
        params: serde_json::Value,
    ) -> Result<u32, Error> {
        self.check_connected()?;
        self.require_active()?;
        if kind == ChannelKind::Unknown {
            return Err(Error::UnsupportedKind { kind });
        }
        if self.channels.len() >= self.config.max_channels {
            return Err(Error::TooManyChannels {
                max: self.config.max_channels,
            });
        }
        let channel_id = self.next_local_id.ok_or(Error::ChannelIdsExhausted)?;
        self.next_local_id = channel_id.checked_add(2);
        let window = self.config.window_for(kind);
        let deadline = now.checked_add(self.config.open_timeout);
        self.channels
            .insert(channel_id, Channel::outgoing(kind, window, deadline));
        self.control.push_back(Message::ChannelOpen(ChannelOpen {
            channel_id,
            kind,
            initial_window: window,
            max_packet: self.config.packet_limit(),
            params,
        }));
        Ok(channel_id)
    }

    /// Accepts a channel announced by [`Event::ChannelOpenRequested`].
    pub fn accept_channel(&mut self, channel_id: u32) -> Result<(), Error> {
        self.check_connected()?;
        let session_id = self.require_active()?;
        let max_packet = self.config.packet_limit();
        let kind = pending(&mut self.channels, channel_id)?.kind;
        let window = self.config.window_for(kind);
        let ch = pending(&mut self.channels, channel_id)?;
        ch.phase = Phase::Open;
        ch.grant(window);
        self.control
            .push_back(Message::ChannelAccept(ChannelAccept {
                channel_id,
                initial_window: window,
                max_packet,
            }));
        self.events.push_back(Event::ChannelOpened {
            session_id,
            channel_id,
            kind,
            origin: Origin::Peer,
        });
        Ok(())
    }

    /// Refuses a channel announced by [`Event::ChannelOpenRequested`]; it
    /// ends with [`ChannelEnd::Rejected`].
    pub fn reject_channel(
        &mut self,
        channel_id: u32,
        code: ChannelErrorCode,
        message: &str,
    ) -> Result<(), Error> {
        self.check_connected()?;
        let session_id = self.require_active()?;
        pending(&mut self.channels, channel_id)?;
        self.refuse_pending(
            session_id,
            channel_id,
            code,
            message.to_owned(),
            ChannelEnd::Rejected {
                origin: Origin::Local,
                code,
                message: message.to_owned(),
            },
        );
        Ok(())
    }

    /// Queues bytes on an open channel and returns how many were accepted:
    /// at most the credit the peer granted (0 when there is none; an
    /// [`Event::Writable`] follows when credit returns). Accepted bytes are
    /// sent in order by [`poll_transmit`](Self::poll_transmit).
    pub fn write(&mut self, channel_id: u32, data: &[u8]) -> Result<usize, Error> {
        self.check_connected()?;
        let ch = open_visible(&mut self.channels, channel_id)?;
        if ch.peer_closed.is_some() {
            return Err(Error::ChannelClosing { channel_id });
        }
        if ch.local_eof {
            return Err(Error::WriteAfterEof { channel_id });
        }
        let n = usize::try_from(ch.send_credit)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if n < data.len() {
            ch.blocked = true;
        }
        if n == 0 {
            return Ok(0);
        }
        ch.send_buf.extend_from_slice(&data[..n]);
        ch.send_credit -= n as u64;
        if !ch.in_send_queue {
            ch.in_send_queue = true;
            self.send_queue.push_back(channel_id);
        }
        Ok(n)
    }

    /// Copies buffered bytes of an open channel into `buf`; returns how many
    /// (0 when none are buffered). Reading returns credit to the peer.
    pub fn read(&mut self, channel_id: u32, buf: &mut [u8]) -> Result<usize, Error> {
        self.check_connected()?;
        let ch = open_visible(&mut self.channels, channel_id)?;
        let n = ch.copy_out(buf);
        self.consumed(channel_id, n);
        Ok(n)
    }

    /// Takes the next buffered chunk (at most `max` bytes) without copying;
    /// `None` when nothing is buffered. Reading returns credit to the peer.
    pub fn read_chunk(&mut self, channel_id: u32, max: usize) -> Result<Option<Bytes>, Error> {
        self.check_connected()?;
        let ch = open_visible(&mut self.channels, channel_id)?;
        if max == 0 {
            return Ok(None);
        }
        let chunk = ch.take_chunk(max);
        let n = chunk.as_ref().map_or(0, Bytes::len);
        self.consumed(channel_id, n);
        Ok(chunk)
    }

    /// Half-closes an open channel: `ChannelEof` follows the bytes already
    /// written; reading goes on. Idempotent.
    pub fn send_eof(&mut self, channel_id: u32) -> Result<(), Error> {
        self.check_connected()?;
        let ch = open_visible(&mut self.channels, channel_id)?;
        if ch.local_eof || ch.peer_closed.is_some() {
            return Ok(());
        }
        ch.local_eof = true;
        if ch.send_buf.is_empty() {
            self.control
                .push_back(Message::ChannelEof(ChannelRef { channel_id }));
        } else {
            ch.eof_pending = true;
        }
        Ok(())
    }

    /// Closes a channel gracefully: bytes already written are still sent,
    /// unread bytes are discarded, and the channel ends for the application
    /// now ([`Event::ChannelClosed`]). On a channel the peer asked for and
    /// the driver did not answer, this is a reject with `refused`.
    pub fn close_channel(&mut self, channel_id: u32) -> Result<(), Error> {
        self.check_connected()?;
        let session_id = self.require_active()?;
        let ch = visible(&mut self.channels, channel_id)?;
        match ch.phase {
            Phase::Requested { .. } => {
                return self.reject_channel(
                    channel_id,
                    ChannelErrorCode::Refused,
                    "closed before it was accepted",
                );
            }
            Phase::Opening { .. } | Phase::Open => {}
        }
        let reason = match ch.peer_closed.take() {
            Some(peer_reason) => {
                // The peer closed first and our close is queued: done.
                self.remove(session_id, channel_id, Some(peer_reason));
                return Ok(());
            }
            None => ChannelEnd::Closed {
                origin: Origin::Local,
            },
        };
        ch.clear_recv();
        ch.visible = false;
        if !ch.local_close_sent {
            if ch.send_buf.is_empty() {
                ch.local_close_sent = true;
                self.control.push_back(Message::ChannelClose(ChannelClose {
                    channel_id,
                    reset: None,
                }));
            } else {
                ch.close_pending = true;
            }
        }
        let kind = ch.kind;
        self.events.push_back(Event::ChannelClosed {
            session_id,
            channel_id,
            kind,
            reason,
        });
        Ok(())
    }

    /// Tears a channel down at once with `code`: unsent and unread bytes
    /// are discarded. On a channel the peer asked for and the driver did not
    /// answer, this is a reject with `code`.
    pub fn reset_channel(&mut self, channel_id: u32, code: ChannelErrorCode) -> Result<(), Error> {
        self.check_connected()?;
        let session_id = self.require_active()?;
        let ch = visible(&mut self.channels, channel_id)?;
        if let Phase::Requested { .. } = ch.phase {
            return self.reject_channel(channel_id, code, "reset before it was accepted");
        }
        self.reset(session_id, channel_id, code, None);
        Ok(())
    }

    // ----------------------------------------------------------------
    // Message handlers
    // ----------------------------------------------------------------

    fn on_tunnel_open(&mut self, now: Instant, m: TunnelOpen) {
        if let Some(active) = &self.session {
            let active_session = active.id;
            self.refuse(Message::TunnelError(TunnelError {
                session_id: m.session_id,
                code: TunnelErrorCode::Busy,
                message: format!("the agent is busy with tunnel session {active_session}"),
            }));
            self.events.push_back(Event::SessionRefused {
                session_id: m.session_id,
                technician: m.technician,
                code: TunnelErrorCode::Busy,
                active_session,
            });
            return;
        }
        self.session = Some(Session {
            id: m.session_id,
            technician: m.technician.clone(),
            phase: Phase0::Active,
            last_activity: now,
        });
        self.control.push_back(Message::TunnelReady(SessionRef {
            session_id: m.session_id,
        }));
        self.events
            .push_back(Event::ModeChanged { mode: Mode::Tunnel });
        self.events.push_back(Event::SessionOpened {
            session_id: m.session_id,
            technician: m.technician,
        });
    }

    fn on_tunnel_ready(&mut self, now: Instant, m: SessionRef) {
        match &mut self.session {
            Some(s) if s.id == m.session_id && matches!(s.phase, Phase0::Opening { .. }) => {
                s.phase = Phase0::Active;
                s.last_activity = now;
                let ev = Event::SessionOpened {
                    session_id: s.id,
                    technician: s.technician.clone(),
                };
                self.events.push_back(ev);
            }
            _ => self.stats.ignored_messages += 1,
        }
    }

    fn on_tunnel_error(&mut self, m: TunnelError) {
        if self.session.as_ref().is_some_and(|s| s.id == m.session_id) {
            self.end_session(
                SessionEnd::Failed {
                    origin: Origin::Peer,
                    code: m.code,
                    message: m.message,
                },
                None,
            );
        } else {
            self.stats.ignored_messages += 1;
        }
    }

    fn on_tunnel_close(&mut self, m: TunnelClose) {
        if self.session.as_ref().is_some_and(|s| s.id == m.session_id) {
            self.end_session(
                SessionEnd::Closed {
                    origin: Origin::Peer,
                    reason: m.reason,
                },
                None,
            );
        } else {
            // Stale: both sides closed at once, or a session long gone.
            self.stats.ignored_messages += 1;
        }
    }

    fn on_channel_open(&mut self, now: Instant, m: ChannelOpen) {
        let channel_id = m.channel_id;
        let Some(session_id) = self.active_session() else {
            self.stats.refused_opens += 1;
            self.refuse(Message::ChannelReject(ChannelReject {
                channel_id,
                code: ChannelErrorCode::NoSession,
                message: "no tunnel session is open".into(),
            }));
            return;
        };
        let peer_parity = match R::SIDE {
            Side::Agent => 0,
            Side::Server => 1,
        };
        if channel_id % 2 != peer_parity || self.peer_max_id.is_some_and(|max| channel_id <= max) {
            // Never touch the entry that may exist under this id.
            self.stats.refused_opens += 1;
            self.refuse(Message::ChannelReject(ChannelReject {
                channel_id,
                code: ChannelErrorCode::DuplicateId,
                message: format!(
                    "channel id {channel_id} is used or reserved on this connection; \
                     the {} opens increasing {} ids",
                    R::SIDE.peer().name(),
                    if peer_parity == 0 { "even" } else { "odd" }
                ),
            }));
            return;
        }
        self.peer_max_id = Some(channel_id);
        let refusal = if !self.config.accepts(m.kind) {
            Some((
                ChannelErrorCode::UnsupportedKind,
                format!("channel kind {} is not supported here", m.kind),
            ))
        } else if m.max_packet == 0 {
            Some((
                ChannelErrorCode::Protocol,
                "max_packet must be at least 1".into(),
            ))
        } else if self.channels.len() >= self.config.max_channels {
            Some((
                ChannelErrorCode::TooManyChannels,
                format!(
                    "the session already has {} channels",
                    self.config.max_channels
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            self.stats.refused_opens += 1;
            self.refuse(Message::ChannelReject(ChannelReject {
                channel_id,
                code,
                message: message.clone(),
            }));
            self.events.push_back(Event::ChannelClosed {
                session_id,
                channel_id,
                kind: m.kind,
                reason: ChannelEnd::Rejected {
                    origin: Origin::Local,
                    code,
                    message,
                },
            });
            return;
        }
        let deadline = now.checked_add(self.config.open_timeout);
        self.channels.insert(
            channel_id,
            Channel::incoming(m.kind, m.initial_window, m.max_packet, deadline),
        );
        self.events.push_back(Event::ChannelOpenRequested {
            session_id,
            channel_id,
            kind: m.kind,
            params: m.params,
        });
    }

    fn on_channel_accept(&mut self, m: ChannelAccept) {
        let channel_id = m.channel_id;
        let Some(session_id) = self.active_session() else {
            self.stats.ignored_messages += 1;
            return;
        };
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            self.stats.ignored_messages += 1;
            return;
        };
        if !matches!(ch.phase, Phase::Opening { .. }) {
            self.stats.ignored_messages += 1;
            return;
        }
        ch.phase = Phase::Open;
        if !ch.visible {
            // Closed (or timed out) before the answer: our close follows.
            return;
        }
        ch.send_credit = u64::from(m.initial_window);
        ch.peer_max_packet = m.max_packet;
        let kind = ch.kind;
        self.events.push_back(Event::ChannelOpened {
            session_id,
            channel_id,
            kind,
            origin: Origin::Local,
        });
        if m.max_packet == 0 {
            self.reset(session_id, channel_id, ChannelErrorCode::Protocol, None);
        }
    }

    fn on_channel_reject(&mut self, m: ChannelReject) {
        let channel_id = m.channel_id;
        let Some(session_id) = self.active_session() else {
            self.stats.ignored_messages += 1;
            return;
        };
        match self.channels.get(&channel_id) {
            Some(ch) if matches!(ch.phase, Phase::Opening { .. }) => {
                let reason = ChannelEnd::Rejected {
                    origin: Origin::Peer,
                    code: m.code,
                    message: m.message,
                };
                self.remove(session_id, channel_id, Some(reason));
            }
            _ => self.stats.ignored_messages += 1,
        }
    }

    fn on_window_adjust(&mut self, m: WindowAdjust) {
        let channel_id = m.channel_id;
        match self.channels.get_mut(&channel_id) {
            Some(ch) if ch.visible && ch.is_open() && ch.peer_closed.is_none() => {
                ch.send_credit = ch.send_credit.saturating_add(u64::from(m.bytes));
                if ch.blocked && ch.send_credit > 0 && !ch.local_eof {
                    ch.blocked = false;
                    self.events.push_back(Event::Writable { channel_id });
                }
            }
            Some(ch) if !ch.visible => {}
            _ => self.stats.ignored_messages += 1,
        }
    }

    fn on_channel_eof(&mut self, m: ChannelRef) {
        let channel_id = m.channel_id;
        let Some(session_id) = self.active_session() else {
            self.stats.ignored_messages += 1;
            return;
        };
        match self.channels.get_mut(&channel_id) {
            Some(ch) if ch.visible && ch.is_open() && !ch.peer_eof && ch.peer_closed.is_none() => {
                ch.peer_eof = true;
                self.events.push_back(Event::ChannelEof {
                    session_id,
                    channel_id,
                });
            }
            Some(ch) if !ch.visible => {}
            _ => self.stats.ignored_messages += 1,
        }
    }

    fn on_channel_close(&mut self, m: ChannelClose) {
        let channel_id = m.channel_id;
        let Some(session_id) = self.active_session() else {
            self.stats.ignored_messages += 1;
            return;
        };
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            self.stats.ignored_messages += 1;
            return;
        };
        if ch.peer_closed.is_some() {
            // A second close from the peer.
            self.stats.ignored_messages += 1;
            return;
        }
        if m.reset.is_some() {
            self.stats.resets_received += 1;
        }
        ch.send_buf.clear();
        ch.eof_pending = false;
        ch.close_pending = false;
        if !ch.local_close_sent {
            ch.local_close_sent = true;
            self.control.push_back(Message::ChannelClose(ChannelClose {
                channel_id,
                reset: None,
            }));
        }
        let reason = match m.reset {
            Some(code) => ChannelEnd::Reset {
                origin: Origin::Peer,
                code,
            },
            None => ChannelEnd::Closed {
                origin: Origin::Peer,
            },
        };
        if ch.visible && ch.is_open() && m.reset.is_none() && ch.buffered > 0 {
            // Keep the unread bytes readable; the channel ends once read.
            ch.peer_closed = Some(reason);
            return;
        }
        self.remove(session_id, channel_id, Some(reason));
    }

    // ----------------------------------------------------------------
    // Helpers
    // ----------------------------------------------------------------

    /// Queues an answer to input this machine refuses, unless the peer
    /// floods: see [`TunnelStats::refusals_dropped`].
    fn refuse(&mut self, msg: Message) {
        if self.control.len() < MAX_QUEUED_REFUSALS {
            self.control.push_back(msg);
        } else {
            self.stats.refusals_dropped += 1;
        }
    }

    fn check_connected(&self) -> Result<(), Error> {
        if self.disconnected {
            Err(Error::Disconnected)
        } else {
            Ok(())
        }
    }

    /// The id of the session if it is active.
    fn active_session(&self) -> Option<Uuid> {
        self.session
            .as_ref()
            .filter(|s| s.phase == Phase0::Active)
            .map(|s| s.id)
    }

    fn require_active(&self) -> Result<Uuid, Error> {
        match &self.session {
            None => Err(Error::NoSession),
            Some(s) if s.phase != Phase0::Active => {
                Err(Error::SessionNotReady { session_id: s.id })
            }
            Some(s) => Ok(s.id),
        }
    }

    fn touch(&mut self, now: Instant) {
        if let Some(s) = &mut self.session
            && s.phase == Phase0::Active
            && now > s.last_activity
        {
            s.last_activity = now;
        }
    }

    fn drop_data(&mut self, len: usize) {
        self.stats.dropped_frames += 1;
        self.stats.dropped_bytes += len as u64;
    }

    /// Accounts `n` bytes read: returns credit in batches, and ends a
    /// channel the peer closed once its bytes are all read.
    fn consumed(&mut self, channel_id: u32, n: usize) {
        let Some(session_id) = self.active_session() else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            return;
        };
        ch.consumed += n as u64;
        let threshold = u64::from(ch.recv_window / 2).max(1);
        if ch.consumed >= threshold && !ch.peer_eof && ch.peer_closed.is_none() {
            let bytes = u32::try_from(ch.consumed).unwrap_or(u32::MAX);
            ch.consumed -= u64::from(bytes);
            ch.recv_credit += u64::from(bytes);
            self.control
                .push_back(Message::WindowAdjust(WindowAdjust { channel_id, bytes }));
        }
        if ch.buffered == 0
            && let Some(reason) = ch.peer_closed.take()
        {
            self.remove(session_id, channel_id, Some(reason));
        }
    }

    /// Answers a pending open with a reject and forgets it.
    fn refuse_pending(
        &mut self,
        session_id: Uuid,
        channel_id: u32,
        code: ChannelErrorCode,
        message: String,
        reason: ChannelEnd,
    ) {
        self.control
            .push_back(Message::ChannelReject(ChannelReject {
                channel_id,
                code,
                message,
            }));
        self.remove(session_id, channel_id, Some(reason));
    }

    /// Resets a channel from this side: discards its buffers, queues a reset
    /// close, reports it closed (`reason`, or a local reset with `code`).
    fn reset(
        &mut self,
        session_id: Uuid,
        channel_id: u32,
        code: ChannelErrorCode,
        reason: Option<ChannelEnd>,
    ) {
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            return;
        };
        ch.discard();
        if !ch.local_close_sent {
            ch.local_close_sent = true;
            self.stats.resets_sent += 1;
            self.control.push_back(Message::ChannelClose(ChannelClose {
                channel_id,
                reset: Some(code),
            }));
        }
        let was_visible = mem::replace(&mut ch.visible, false);
        let kind = ch.kind;
        let peer_closed = ch.peer_closed.take().is_some();
        if peer_closed {
            self.channels.remove(&channel_id);
        }
        if was_visible {
            self.events.push_back(Event::ChannelClosed {
                session_id,
                channel_id,
                kind,
                reason: reason.unwrap_or(ChannelEnd::Reset {
                    origin: Origin::Local,
                    code,
                }),
            });
        }
    }

    /// Removes a protocol entry, reporting it closed when the application
    /// still knew it.
    fn remove(&mut self, session_id: Uuid, channel_id: u32, reason: Option<ChannelEnd>) {
        let Some(ch) = self.channels.remove(&channel_id) else {
            return;
        };
        if let (true, Some(reason)) = (ch.visible, reason) {
            self.events.push_back(Event::ChannelClosed {
                session_id,
                channel_id,
                kind: ch.kind,
                reason,
            });
        }
    }

    /// Ends the session: every channel, then the session, with events;
    /// channel messages still queued are dropped and `farewell` is queued.
    fn end_session(&mut self, reason: SessionEnd, farewell: Option<Message>) {
        let Some(session) = self.session.take() else {
            return;
        };
        for (channel_id, ch) in mem::take(&mut self.channels) {
            if ch.visible {
                self.events.push_back(Event::ChannelClosed {
                    session_id: session.id,
                    channel_id,
                    kind: ch.kind,
                    reason: ChannelEnd::SessionEnded,
                });
            }
        }
        self.send_queue.clear();
        self.control.retain(|m| !is_channel_message(m));
        self.control.extend(farewell);
        self.events.push_back(Event::SessionClosed {
            session_id: session.id,
            technician: session.technician,
            reason,
        });
        if R::SIDE == Side::Agent {
            self.events.push_back(Event::ModeChanged {
                mode: Mode::Heartbeat,
            });
        }
    }
}

fn visible(channels: &mut BTreeMap<u32, Channel>, channel_id: u32) -> Result<&mut Channel, Error> {
    channels
        .get_mut(&channel_id)
        .filter(|c| c.visible)
        .ok_or(Error::UnknownChannel { channel_id })
}

fn open_visible(
    channels: &mut BTreeMap<u32, Channel>,
    channel_id: u32,
) -> Result<&mut Channel, Error> {
    let ch = visible(channels, channel_id)?;
    if ch.is_open() {
        Ok(ch)
    } else {
        Err(Error::ChannelNotOpen { channel_id })
    }
}

fn pending(channels: &mut BTreeMap<u32, Channel>, channel_id: u32) -> Result<&mut Channel, Error> {
    let ch = visible(channels, channel_id)?;
    match ch.phase {
        Phase::Requested { .. } => Ok(ch),
        Phase::Opening { .. } | Phase::Open => Err(Error::NotPending { channel_id }),
    }
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Agent => "agent",
            Side::Server => "server",
        }
    }
}

impl Tunnel<AgentRole> {
    /// Heartbeat mode without a session, tunnel mode with one.
    pub fn mode(&self) -> Mode {
        if self.session.is_some() {
            Mode::Tunnel
        } else {
            Mode::Heartbeat
        }
    }
}

impl Tunnel<ServerRole> {
    /// Opens a session for `technician`: sends `TunnelOpen`; the session is
    /// usable after [`Event::SessionOpened`] (the agent's `TunnelReady`) and
    /// ends with [`Event::SessionClosed`] in every case (refused with
    /// `busy`, not confirmed within [`TunnelConfig::open_timeout`], closed).
    ///
    /// [`Error::Busy`] when a session is open or opening on this connection.
    pub fn open_session(
        &mut self,
        now: Instant,
        session_id: Uuid,
        technician: String,
    ) -> Result<(), Error> {
        self.check_connected()?;
        if let Some(active) = &self.session {
            return Err(Error::Busy { active: active.id });
        }
        self.control.push_back(Message::TunnelOpen(TunnelOpen {
            session_id,
            technician: technician.clone(),
        }));
        self.session = Some(Session {
            id: session_id,
            technician,
            phase: Phase0::Opening {
                deadline: now.checked_add(self.config.open_timeout),
            },
            last_activity: now,
        });
        Ok(())
    }
}

#[cfg(test)]
// The tests read the real clock once per scenario, as the origin of their
// virtual time (`Instant` has no constructor); the machine never does.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{ChannelKind, Heartbeat};

    const SID: Uuid = Uuid::from_u128(0x5e55);
    const SID2: Uuid = Uuid::from_u128(0x5e56);

    /// An agent and a server machine wired back to back.
    struct Pair {
        agent: AgentTunnel,
        server: ServerTunnel,
        now: Instant,
        agent_events: Vec<Event>,
        server_events: Vec<Event>,
    }

    impl Pair {
        fn new(config: TunnelConfig) -> Self {
            Pair {
                agent: AgentTunnel::new(config.clone()),
                server: ServerTunnel::new(config),
                now: Instant::now(),
                agent_events: Vec::new(),
                server_events: Vec::new(),
            }
        }

        /// Delivers frames both ways until both are quiet; collects events.
        fn pump(&mut self) {
            loop {
                let mut moved = false;
                while let Some(f) = self.server.poll_transmit(self.now) {
                    self.agent.handle_frame(self.now, f).unwrap();
                    moved = true;
                }
                while let Some(f) = self.agent.poll_transmit(self.now) {
                    self.server.handle_frame(self.now, f).unwrap();
                    moved = true;
                }
                self.agent_events
                    .extend(std::iter::from_fn(|| self.agent.poll_event()));
                self.server_events
                    .extend(std::iter::from_fn(|| self.server.poll_event()));
                if !moved {
                    return;
                }
            }
        }

        fn session(config: TunnelConfig) -> Self {
            let mut p = Pair::new(config);
            p.server.open_session(p.now, SID, "alice".into()).unwrap();
            p.pump();
            p.agent_events.clear();
            p.server_events.clear();
            p
        }

        /// The server opens a channel and the agent's driver accepts it.
        fn channel(&mut self, kind: ChannelKind) -> u32 {
            let id = self
                .server
                .open_channel(self.now, kind, serde_json::Value::Null)
                .unwrap();
            self.pump();
            self.agent.accept_channel(id).unwrap();
            self.pump();
            self.agent_events.clear();
            self.server_events.clear();
            id
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.agent.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.pump();
        }
    }

    fn drain_transmit<R: Role>(t: &mut Tunnel<R>, now: Instant) -> Vec<Frame> {
        std::iter::from_fn(|| t.poll_transmit(now)).collect()
    }

    fn closed_reason(events: &[Event], id: u32) -> Option<ChannelEnd> {
        events.iter().find_map(|e| match e {
            Event::ChannelClosed {
                channel_id, reason, ..
            } if *channel_id == id => Some(reason.clone()),
            _ => None,
        })
    }

    fn small_window(window: u32, max_packet: u32) -> TunnelConfig {
        TunnelConfig {
            initial_window: window,
            max_packet,
            ..TunnelConfig::default()
        }
    }

    #[test]
    fn agent_switches_to_tunnel_mode_and_back() {
        let mut p = Pair::new(TunnelConfig::default());
        assert_eq!(p.agent.mode(), Mode::Heartbeat);
        p.server.open_session(p.now, SID, "alice".into()).unwrap();
        assert_eq!(p.server.session().unwrap().state, SessionState::Opening);
        p.pump();
        assert_eq!(p.agent.mode(), Mode::Tunnel);
        assert_eq!(p.server.session().unwrap().state, SessionState::Active);
        let opened = Event::SessionOpened {
            session_id: SID,
            technician: "alice".into(),
        };
        assert_eq!(
            p.agent_events,
            vec![Event::ModeChanged { mode: Mode::Tunnel }, opened.clone()]
        );
        assert_eq!(p.server_events, vec![opened]);
        p.server.close_session("done").unwrap();
        p.pump();
        assert_eq!(p.agent.mode(), Mode::Heartbeat);
        assert!(p.server.session().is_none());
        assert!(p.agent_events.contains(&Event::ModeChanged {
            mode: Mode::Heartbeat
        }));
        assert!(p.agent_events.iter().any(|e| matches!(
            e,
            Event::SessionClosed { reason: SessionEnd::Closed { origin: Origin::Peer, reason }, .. }
                if reason == "done"
        )));
    }

    #[test]
    fn second_session_is_refused_busy() {
        let mut p = Pair::session(TunnelConfig::default());
        // The server machine refuses locally...
        assert_eq!(
            p.server.open_session(p.now, SID2, "bob".into()),
            Err(Error::Busy { active: SID })
        );
        // ...and the agent refuses a TunnelOpen from any server.
        p.agent
            .handle_message(
                p.now,
                Message::TunnelOpen(TunnelOpen {
                    session_id: SID2,
                    technician: "bob".into(),
                }),
            )
            .unwrap();
        let frames = drain_transmit(&mut p.agent, p.now);
        assert_eq!(
            frames,
            vec![Frame::Control(Message::TunnelError(TunnelError {
                session_id: SID2,
                code: TunnelErrorCode::Busy,
                message: format!("the agent is busy with tunnel session {SID}"),
            }))]
        );
        assert_eq!(
            p.agent.poll_event(),
            Some(Event::SessionRefused {
                session_id: SID2,
                technician: "bob".into(),
                code: TunnelErrorCode::Busy,
                active_session: SID,
            })
        );
        assert_eq!(p.agent.session().unwrap().session_id, SID);
        assert_eq!(p.agent.mode(), Mode::Tunnel);
    }

    #[test]
    fn server_reports_busy_refusal_as_session_end() {
        let mut agent = AgentTunnel::new(TunnelConfig::default());
        let mut server = ServerTunnel::new(TunnelConfig::default());
        let now = Instant::now();
        agent
            .handle_message(
                now,
                Message::TunnelOpen(TunnelOpen {
                    session_id: SID,
                    technician: "alice".into(),
                }),
            )
            .unwrap();
        drain_transmit(&mut agent, now);
        // A second server-side machine (think: another server process) opens.
        server.open_session(now, SID2, "bob".into()).unwrap();
        for f in drain_transmit(&mut server, now) {
            agent.handle_frame(now, f).unwrap();
        }
        for f in drain_transmit(&mut agent, now) {
            server.handle_frame(now, f).unwrap();
        }
        assert!(server.session().is_none());
        assert!(matches!(
            server.poll_event(),
            Some(Event::SessionClosed {
                session_id: SID2,
                reason: SessionEnd::Failed {
                    origin: Origin::Peer,
                    code: TunnelErrorCode::Busy,
                    ..
                },
                ..
            })
        ));
        // The server is free for the next attempt.
        server.open_session(now, SID2, "bob".into()).unwrap();
    }

    #[test]
    fn misrouted_messages_are_typed_errors() {
        let now = Instant::now();
        let mut agent = AgentTunnel::new(TunnelConfig::default());
        let mut server = ServerTunnel::new(TunnelConfig::default());
        let hb = Message::Heartbeat(Heartbeat { seq: 1, running: 0 });
        assert_eq!(
            agent.handle_message(now, hb.clone()),
            Err(Error::NotTunnelMessage { kind: "heartbeat" })
        );
        assert!(!super::super::is_tunnel_message(&hb));
        assert_eq!(
            server.handle_message(now, Message::Unknown),
            Err(Error::NotTunnelMessage { kind: "unknown" })
        );
        let ready = Message::TunnelReady(SessionRef { session_id: SID });
        assert_eq!(
            agent.handle_message(now, ready),
            Err(Error::WrongDirection {
                kind: "tunnel_ready",
                sender: Side::Agent
            })
        );
        let open = Message::TunnelOpen(TunnelOpen {
            session_id: SID,
            technician: "x".into(),
        });
        assert_eq!(
            server.handle_message(now, open),
            Err(Error::WrongDirection {
                kind: "tunnel_open",
                sender: Side::Server
            })
        );
        assert!(server.session().is_none());
        assert!(server.poll_transmit(now).is_none());
    }

    #[test]
    fn operations_outside_a_session_are_typed_errors() {
        let now = Instant::now();
        let mut agent = AgentTunnel::new(TunnelConfig::default());
        let mut server = ServerTunnel::new(TunnelConfig::default());
        let null = serde_json::Value::Null;
        assert_eq!(
            agent.open_channel(now, ChannelKind::Terminal, null.clone()),
            Err(Error::NoSession)
        );
        assert_eq!(agent.close_session("x"), Err(Error::NoSession));
        assert_eq!(
            agent.write(1, b"x"),
            Err(Error::UnknownChannel { channel_id: 1 })
        );
        server.open_session(now, SID, "alice".into()).unwrap();
        assert_eq!(
            server.open_channel(now, ChannelKind::Terminal, null),
            Err(Error::SessionNotReady { session_id: SID })
        );
        assert_eq!(
            server.accept_channel(3),
            Err(Error::SessionNotReady { session_id: SID })
        );
    }

    #[test]
    fn channel_open_outside_a_session_is_rejected_no_session() {
        let now = Instant::now();
        let mut agent = AgentTunnel::new(TunnelConfig::default());
        agent
            .handle_message(
                now,
                Message::ChannelOpen(ChannelOpen {
                    channel_id: 2,
                    kind: ChannelKind::Terminal,
                    initial_window: 10,
                    max_packet: 10,
                    params: serde_json::Value::Null,
                }),
            )
            .unwrap();
        assert!(matches!(
            agent.poll_transmit(now),
            Some(Frame::Control(Message::ChannelReject(ChannelReject {
                channel_id: 2,
                code: ChannelErrorCode::NoSession,
                ..
            })))
        ));
        assert_eq!(agent.mode(), Mode::Heartbeat);
        assert!(agent.poll_event().is_none());
    }

    #[test]
    fn data_flows_both_ways_and_ids_follow_parity() {
        let mut p = Pair::session(TunnelConfig::default());
        let s1 = p.channel(ChannelKind::Terminal);
        let s2 = p.channel(ChannelKind::File);
        assert_eq!((s1, s2), (2, 4));
        let a1 = p
            .agent
            .open_channel(
                p.now,
                ChannelKind::PortForward,
                serde_json::json!({"port": 22}),
            )
            .unwrap();
        assert_eq!(a1, 1);
        p.pump();
        assert!(matches!(
            &p.server_events[..],
            [Event::ChannelOpenRequested { channel_id: 1, kind: ChannelKind::PortForward, params, .. }]
                if params["port"] == 22
        ));
        p.server.accept_channel(1).unwrap();
        p.pump();
        assert!(p.agent_events.contains(&Event::ChannelOpened {
            session_id: SID,
            channel_id: 1,
            kind: ChannelKind::PortForward,
            origin: Origin::Local,
        }));
        assert_eq!(p.server.write(s1, b"ls\n").unwrap(), 3);
        assert_eq!(p.agent.write(s1, b"file\n").unwrap(), 5);
        assert_eq!(p.agent.write(1, b"ssh").unwrap(), 3);
        p.pump();
        let mut buf = [0u8; 16];
        assert_eq!(p.agent.read(s1, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"ls\n");
        assert_eq!(p.server.read(s1, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"file\n");
        assert_eq!(
            p.server.read_chunk(1, 100).unwrap(),
            Some(Bytes::from_static(b"ssh"))
        );
        assert_eq!(p.server.read_chunk(1, 100).unwrap(), None);
        assert_eq!(p.server.read(s2, &mut buf).unwrap(), 0);
        assert!(
            p.server_events
                .contains(&Event::Readable { channel_id: s1 })
        );
    }

    #[test]
    fn write_is_bounded_by_credit_and_credit_returns_on_read() {
        let mut p = Pair::session(small_window(100, 40));
        let id = p.channel(ChannelKind::Terminal);
        // Only the window is accepted.
        assert_eq!(p.server.write(id, &[7u8; 150]).unwrap(), 100);
        assert_eq!(p.server.write(id, &[7u8; 10]).unwrap(), 0);
        let frames = drain_transmit(&mut p.server, p.now);
        let sizes: Vec<usize> = frames
            .iter()
            .map(|f| match f {
                Frame::Data { payload, .. } => payload.len(),
                Frame::Control(_) => 0,
            })
            .collect();
        assert_eq!(sizes, vec![40, 40, 20], "split at max_packet");
        for f in frames {
            p.agent.handle_frame(p.now, f).unwrap();
        }
        // Arrival returns no credit.
        p.pump();
        assert_eq!(p.server.channel(id).unwrap().send_credit, 0);
        assert_eq!(p.agent.channel(id).unwrap().readable, 100);
        assert_eq!(p.agent.channel(id).unwrap().recv_credit, 0);
        // Reading less than half the window returns none yet (batching).
        let mut buf = [0u8; 49];
        assert_eq!(p.agent.read(id, &mut buf).unwrap(), 49);
        p.pump();
        assert_eq!(p.server.channel(id).unwrap().send_credit, 0);
        assert!(
            !p.server_events
                .contains(&Event::Writable { channel_id: id })
        );
        // Reaching half of it sends one adjust with everything consumed.
        assert_eq!(p.agent.read(id, &mut buf[..1]).unwrap(), 1);
        let adjust = p.agent.poll_transmit(p.now).unwrap();
        assert_eq!(
            adjust,
            Frame::Control(Message::WindowAdjust(WindowAdjust {
                channel_id: id,
                bytes: 50
            }))
        );
        p.server.handle_frame(p.now, adjust).unwrap();
        p.pump();
        assert_eq!(p.server.channel(id).unwrap().send_credit, 50);
        assert!(
            p.server_events
                .contains(&Event::Writable { channel_id: id })
        );
        let info = p.agent.channel(id).unwrap();
        assert_eq!(info.recv_credit + info.readable as u64, 100);
    }

    #[test]
    fn channels_with_pending_data_take_turns() {
        let mut p = Pair::session(small_window(1000, 10));
        let a = p.channel(ChannelKind::File);
        let b = p.channel(ChannelKind::File);
        p.server.write(a, &[1u8; 50]).unwrap();
        p.server.write(b, &[2u8; 20]).unwrap();
        p.server.send_eof(a).unwrap();
        let order: Vec<String> = drain_transmit(&mut p.server, p.now)
            .iter()
            .map(|f| match f {
                Frame::Data { channel_id, .. } => format!("d{channel_id}"),
                Frame::Control(m) => m.kind().to_owned(),
            })
            .collect();
        assert_eq!(
            order,
            ["d2", "d4", "d2", "d4", "d2", "d2", "d2", "channel_eof"],
            "round robin, and EOF only after the channel's last byte"
        );
    }

    #[test]
    fn window_violation_resets_only_that_channel() {
        let mut p = Pair::session(small_window(100, 64));
        let a = p.channel(ChannelKind::Terminal);
        let b = p.channel(ChannelKind::File);
        // The peer sends 60 + 60 on `a` with a 100-byte window.
        let chunk = Bytes::from(vec![0u8; 60]);
        p.agent.handle_data(p.now, a, chunk.clone()).unwrap();
        p.agent.handle_data(p.now, a, chunk).unwrap();
        assert_eq!(
            p.agent.poll_transmit(p.now),
            Some(Frame::Control(Message::ChannelClose(ChannelClose {
                channel_id: a,
                reset: Some(ChannelErrorCode::WindowExceeded),
            })))
        );
        let ev: Vec<Event> = std::iter::from_fn(|| p.agent.poll_event()).collect();
        assert_eq!(
            closed_reason(&ev, a),
            Some(ChannelEnd::Reset {
                origin: Origin::Local,
                code: ChannelErrorCode::WindowExceeded
            })
        );
        assert!(p.agent.channel(a).is_none());
        // Later frames of the reset channel are dropped, not reset again.
        p.agent
            .handle_data(p.now, a, Bytes::from_static(b"late"))
            .unwrap();
        assert_eq!(p.agent.stats().dropped_frames, 2);
        assert_eq!(p.agent.stats().resets_sent, 1);
        // The server learns of the reset, answers the close; both forget it.
        let close = Frame::Control(Message::ChannelClose(ChannelClose {
            channel_id: a,
            reset: Some(ChannelErrorCode::WindowExceeded),
        }));
        p.server.handle_frame(p.now, close).unwrap();
        p.pump();
        assert_eq!(
            closed_reason(&p.server_events, a),
            Some(ChannelEnd::Reset {
                origin: Origin::Peer,
                code: ChannelErrorCode::WindowExceeded
            })
        );
        assert_eq!(p.agent.protocol_channels(), 1);
        assert_eq!(p.server.protocol_channels(), 1);
        // The other channel and the session carry on.
        assert_eq!(p.server.write(b, b"still here").unwrap(), 10);
        p.pump();
        let mut buf = [0u8; 32];
        assert_eq!(p.agent.read(b, &mut buf).unwrap(), 10);
        assert_eq!(p.agent.mode(), Mode::Tunnel);
    }

    #[test]
    fn oversized_packet_resets_the_channel() {
        let mut p = Pair::session(small_window(1000, 16));
        let a = p.channel(ChannelKind::Terminal);
        p.agent
            .handle_data(p.now, a, Bytes::from(vec![1u8; 17]))
            .unwrap();
        assert_eq!(
            p.agent.poll_transmit(p.now),
            Some(Frame::Control(Message::ChannelClose(ChannelClose {
                channel_id: a,
                reset: Some(ChannelErrorCode::PacketTooLarge),
            })))
        );
        assert!(p.agent.session().is_some());
    }

    #[test]
    fn channel_cap_is_enforced_both_ways() {
        let mut p = Pair::session(TunnelConfig {
            max_channels: 2,
            ..TunnelConfig::default()
        });
        p.channel(ChannelKind::Terminal);
        p.channel(ChannelKind::Terminal);
        assert_eq!(
            p.server
                .open_channel(p.now, ChannelKind::File, serde_json::Value::Null),
            Err(Error::TooManyChannels { max: 2 })
        );
        // A peer that ignores the cap gets `too_many_channels`.
        p.server.config.max_channels = 10;
        let id = p
            .server
            .open_channel(p.now, ChannelKind::File, serde_json::Value::Null)
            .unwrap();
        p.pump();
        assert!(matches!(
            closed_reason(&p.server_events, id),
            Some(ChannelEnd::Rejected {
                origin: Origin::Peer,
                code: ChannelErrorCode::TooManyChannels,
                ..
            })
        ));
        assert!(matches!(
            closed_reason(&p.agent_events, id),
            Some(ChannelEnd::Rejected {
                origin: Origin::Local,
                code: ChannelErrorCode::TooManyChannels,
                ..
            })
        ));
        assert!(
            !p.agent_events
                .iter()
                .any(|e| matches!(e, Event::ChannelOpenRequested { .. }))
        );
    }

    #[test]
    fn unknown_and_unaccepted_kinds_are_refused_not_fatal() {
        let mut p = Pair::session(TunnelConfig::default());
        assert_eq!(
            p.server
                .open_channel(p.now, ChannelKind::Unknown, serde_json::Value::Null),
            Err(Error::UnsupportedKind {
                kind: ChannelKind::Unknown
            })
        );
        // A kind from a newer peer decodes to Unknown and is refused.
        let msg: Message = serde_json::from_str(
            r#"{"type":"channel_open","channel_id":2,"kind":"hologram","initial_window":1,"max_packet":1}"#,
        )
        .unwrap();
        let frame = Frame::Control(msg);
        p.agent.handle_frame(p.now, frame).unwrap();
        // Registry is known but not accepted by default.
        let reg = p
            .server
            .open_channel(p.now, ChannelKind::Registry, serde_json::Value::Null)
            .unwrap();
        p.pump();
        assert!(matches!(
            closed_reason(&p.agent_events, 2),
            Some(ChannelEnd::Rejected {
                code: ChannelErrorCode::UnsupportedKind,
                ..
            })
        ));
        assert!(matches!(
            closed_reason(&p.server_events, reg),
            Some(ChannelEnd::Rejected {
                origin: Origin::Peer,
                code: ChannelErrorCode::UnsupportedKind,
                ..
            })
        ));
        assert!(p.agent.session().is_some());
        // Accepting it is configuration.
        p.agent.config = TunnelConfig::default().accept_kind(ChannelKind::Registry);
        let reg = p
            .server
            .open_channel(p.now, ChannelKind::Registry, serde_json::Value::Null)
            .unwrap();
        p.pump();
        p.agent.accept_channel(reg).unwrap();
    }

    #[test]
    fn reused_or_foreign_ids_are_refused_duplicate() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::Terminal);
        p.server.write(id, b"x").unwrap();
        p.pump();
        let open = |channel_id| {
            Message::ChannelOpen(ChannelOpen {
                channel_id,
                kind: ChannelKind::Terminal,
                initial_window: 10,
                max_packet: 10,
                params: serde_json::Value::Null,
            })
        };
        // Same id (live), a lower id, and an odd id (the agent's own space).
        for bad in [id, 0, 3] {
            p.agent.handle_message(p.now, open(bad)).unwrap();
            assert!(matches!(
                p.agent.poll_transmit(p.now),
                Some(Frame::Control(Message::ChannelReject(ChannelReject {
                    code: ChannelErrorCode::DuplicateId,
                    channel_id,
                    ..
                }))) if channel_id == bad
            ));
        }
        // The live channel is untouched.
        assert_eq!(p.agent.channel(id).unwrap().readable, 1);
        assert!(p.agent.poll_event().is_none());
    }

    #[test]
    fn eof_half_closes_and_close_needs_both_sides() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::File);
        p.server.write(id, b"upload").unwrap();
        p.server.send_eof(id).unwrap();
        assert_eq!(
            p.server.write(id, b"more"),
            Err(Error::WriteAfterEof { channel_id: id })
        );
        p.pump();
        assert!(p.agent_events.contains(&Event::ChannelEof {
            session_id: SID,
            channel_id: id
        }));
        // The other direction still works after the half close.
        p.agent.write(id, b"ack").unwrap();
        p.pump();
        let mut buf = [0u8; 8];
        assert_eq!(p.server.read(id, &mut buf).unwrap(), 3);
        // The agent closes with the upload unread on its side? No: read first.
        assert_eq!(p.agent.read(id, &mut buf).unwrap(), 6);
        p.agent.close_channel(id).unwrap();
        // Closed for the application at once; the entry waits for the peer.
        assert!(p.agent.channel(id).is_none());
        assert_eq!(p.agent.protocol_channels(), 1);
        assert_eq!(
            p.agent.write(id, b"x"),
            Err(Error::UnknownChannel { channel_id: id })
        );
        p.pump();
        assert_eq!(
            closed_reason(&p.agent_events, id),
            Some(ChannelEnd::Closed {
                origin: Origin::Local
            })
        );
        assert_eq!(
            closed_reason(&p.server_events, id),
            Some(ChannelEnd::Closed {
                origin: Origin::Peer
            })
        );
        assert_eq!(p.agent.protocol_channels(), 0);
        assert_eq!(p.server.protocol_channels(), 0);
    }

    #[test]
    fn data_after_eof_resets_the_channel() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::Terminal);
        p.agent
            .handle_message(p.now, Message::ChannelEof(ChannelRef { channel_id: id }))
            .unwrap();
        p.agent
            .handle_data(p.now, id, Bytes::from_static(b"x"))
            .unwrap();
        assert!(matches!(
            p.agent.poll_transmit(p.now),
            Some(Frame::Control(Message::ChannelClose(ChannelClose {
                reset: Some(ChannelErrorCode::Protocol),
                ..
            })))
        ));
    }

    #[test]
    fn bytes_before_a_graceful_close_stay_readable() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::Terminal);
        p.agent.write(id, b"exit status 0").unwrap();
        p.agent.close_channel(id).unwrap();
        p.pump();
        // The server's close went back; the bytes wait to be read.
        assert_eq!(p.agent.protocol_channels(), 0);
        let info = p.server.channel(id).unwrap();
        assert!(info.peer_closed);
        assert_eq!(info.readable, 13);
        assert!(closed_reason(&p.server_events, id).is_none());
        assert_eq!(
            p.server.write(id, b"x"),
            Err(Error::ChannelClosing { channel_id: id })
        );
        assert_eq!(
            p.server.read_chunk(id, 5).unwrap(),
            Some(Bytes::from_static(b"exit "))
        );
        let mut buf = [0u8; 64];
        assert_eq!(p.server.read(id, &mut buf).unwrap(), 8);
        p.pump();
        assert_eq!(
            closed_reason(&p.server_events, id),
            Some(ChannelEnd::Closed {
                origin: Origin::Peer
            })
        );
        assert_eq!(p.server.protocol_channels(), 0);
        // No adjust was sent for a closed channel.
        assert!(p.server.poll_transmit(p.now).is_none());
    }

    #[test]
    fn reset_discards_and_is_reported_both_sides() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::Terminal);
        p.server.write(id, b"pending").unwrap();
        p.server
            .reset_channel(id, ChannelErrorCode::Refused)
            .unwrap();
        let frames = drain_transmit(&mut p.server, p.now);
        assert_eq!(
            frames.len(),
            1,
            "the unsent bytes are discarded: {frames:?}"
        );
        for f in frames {
            p.agent.handle_frame(p.now, f).unwrap();
        }
        p.pump();
        assert_eq!(
            closed_reason(&p.agent_events, id),
            Some(ChannelEnd::Reset {
                origin: Origin::Peer,
                code: ChannelErrorCode::Refused
            })
        );
        assert_eq!(p.server.protocol_channels(), 0);
        assert_eq!(p.agent.stats().resets_received, 1);
    }

    #[test]
    fn rejected_and_abandoned_opens_end_cleanly() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p
            .server
            .open_channel(p.now, ChannelKind::Terminal, serde_json::Value::Null)
            .unwrap();
        p.pump();
        assert_eq!(
            p.agent.accept_channel(99),
            Err(Error::UnknownChannel { channel_id: 99 })
        );
        p.agent
            .reject_channel(id, ChannelErrorCode::Refused, "no pty")
            .unwrap();
        assert_eq!(
            p.agent.accept_channel(id),
            Err(Error::UnknownChannel { channel_id: id })
        );
        p.pump();
        assert_eq!(
            closed_reason(&p.server_events, id),
            Some(ChannelEnd::Rejected {
                origin: Origin::Peer,
                code: ChannelErrorCode::Refused,
                message: "no pty".into()
            })
        );
        // Closed by the opener before an answer: the late accept is ignored.
        let id = p
            .server
            .open_channel(p.now, ChannelKind::Terminal, serde_json::Value::Null)
            .unwrap();
        p.pump();
        p.agent.accept_channel(id).unwrap();
        p.server.close_channel(id).unwrap();
        p.pump();
        assert_eq!(p.agent.protocol_channels(), 0);
        assert_eq!(p.server.protocol_channels(), 0);
        assert_eq!(
            closed_reason(&p.agent_events, id),
            Some(ChannelEnd::Closed {
                origin: Origin::Peer
            })
        );
    }

    #[test]
    fn open_handshake_times_out_both_ways() {
        let mut p = Pair::session(TunnelConfig {
            open_timeout: Duration::from_secs(5),
            ..TunnelConfig::default()
        });
        p.server.config.open_timeout = Duration::from_secs(10);
        let id = p
            .server
            .open_channel(p.now, ChannelKind::Terminal, serde_json::Value::Null)
            .unwrap();
        p.pump();
        // Nobody answers; the requester's timer fires first here.
        assert_eq!(p.agent.poll_timeout(), Some(p.now + Duration::from_secs(5)));
        p.advance(Duration::from_secs(5));
        assert_eq!(
            closed_reason(&p.agent_events, id),
            Some(ChannelEnd::OpenTimeout)
        );
        assert!(matches!(
            closed_reason(&p.server_events, id),
            Some(ChannelEnd::Rejected {
                origin: Origin::Peer,
                code: ChannelErrorCode::Refused,
                ..
            })
        ));
        // The opener gives up when the answer does not come.
        let id = p
            .server
            .open_channel(p.now, ChannelKind::Terminal, serde_json::Value::Null)
            .unwrap();
        drain_transmit(&mut p.server, p.now); // lost
        p.advance(Duration::from_secs(10));
        assert_eq!(
            closed_reason(&p.server_events, id),
            Some(ChannelEnd::OpenTimeout)
        );
        assert_eq!(p.server.channel_ids(), Vec::<u32>::new());
        assert!(p.server.session().is_some());
    }

    #[test]
    fn idle_session_times_out() {
        let mut p = Pair::session(TunnelConfig {
            idle_timeout: Duration::from_secs(60),
            ..TunnelConfig::default()
        });
        let id = p.channel(ChannelKind::Terminal);
        let start = p.now;
        assert_eq!(
            p.server.poll_timeout(),
            Some(start + Duration::from_secs(60))
        );
        // Activity pushes the deadline.
        p.now += Duration::from_secs(30);
        p.server.write(id, b"x").unwrap();
        p.pump();
        assert_eq!(
            p.agent.poll_timeout(),
            Some(p.now + Duration::from_secs(60))
        );
        p.advance(Duration::from_secs(59));
        assert!(p.agent.session().is_some());
        p.advance(Duration::from_secs(1));
        assert_eq!(p.agent.mode(), Mode::Heartbeat);
        assert!(p.server.session().is_none());
        assert_eq!(
            closed_reason(&p.agent_events, id),
            Some(ChannelEnd::SessionEnded)
        );
        assert!(p.agent_events.iter().any(|e| matches!(
            e,
            Event::SessionClosed {
                reason: SessionEnd::IdleTimeout,
                ..
            }
        )));
        // Both fired at the same instant here; either way both ended.
        assert!(
            p.server_events
                .iter()
                .any(|e| matches!(e, Event::SessionClosed { .. }))
        );
        assert!(p.agent.poll_timeout().is_none());
    }

    #[test]
    fn agent_idle_timeout_is_reported_to_the_server() {
        let mut p = Pair::session(TunnelConfig {
            idle_timeout: Duration::from_secs(60),
            ..TunnelConfig::default()
        });
        p.now += Duration::from_secs(60);
        p.agent.handle_timeout(p.now);
        p.pump();
        assert!(p.server_events.iter().any(|e| matches!(
            e,
            Event::SessionClosed {
                reason: SessionEnd::Failed {
                    origin: Origin::Peer,
                    code: TunnelErrorCode::IdleTimeout,
                    ..
                },
                ..
            }
        )));
    }

    #[test]
    fn unconfirmed_server_session_times_out() {
        let mut server = ServerTunnel::new(TunnelConfig {
            open_timeout: Duration::from_secs(5),
            ..TunnelConfig::default()
        });
        let now = Instant::now();
        server.open_session(now, SID, "alice".into()).unwrap();
        drain_transmit(&mut server, now);
        assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(5)));
        server.handle_timeout(now + Duration::from_secs(4));
        assert!(server.session().is_some());
        server.handle_timeout(now + Duration::from_secs(5));
        assert!(server.session().is_none());
        assert!(matches!(
            server.poll_event(),
            Some(Event::SessionClosed {
                reason: SessionEnd::OpenTimeout,
                ..
            })
        ));
        assert!(matches!(
            server.poll_transmit(now),
            Some(Frame::Control(Message::TunnelClose(_)))
        ));
        // A late TunnelReady is stale.
        server
            .handle_message(now, Message::TunnelReady(SessionRef { session_id: SID }))
            .unwrap();
        assert!(server.session().is_none());
        assert_eq!(server.stats().ignored_messages, 1);
    }

    #[test]
    fn disconnect_tears_everything_down() {
        let mut p = Pair::session(TunnelConfig::default());
        let a = p.channel(ChannelKind::Terminal);
        let b = p.channel(ChannelKind::File);
        let pending = p
            .server
            .open_channel(p.now, ChannelKind::PortForward, serde_json::Value::Null)
            .unwrap();
        p.pump(); // requested on the agent, unanswered
        p.agent_events.clear();
        p.server.write(a, b"unsent").unwrap();
        p.agent.handle_disconnect(p.now);
        p.server.handle_disconnect(p.now);
        let agent_events: Vec<Event> = std::iter::from_fn(|| p.agent.poll_event()).collect();
        let server_events: Vec<Event> = std::iter::from_fn(|| p.server.poll_event()).collect();
        let closed = |id, kind| Event::ChannelClosed {
            session_id: SID,
            channel_id: id,
            kind,
            reason: ChannelEnd::SessionEnded,
        };
        let session_closed = Event::SessionClosed {
            session_id: SID,
            technician: "alice".into(),
            reason: SessionEnd::Disconnected,
        };
        assert_eq!(
            agent_events,
            vec![
                closed(a, ChannelKind::Terminal),
                closed(b, ChannelKind::File),
                closed(pending, ChannelKind::PortForward),
                session_closed.clone(),
                Event::ModeChanged {
                    mode: Mode::Heartbeat
                },
            ]
        );
        assert_eq!(
            server_events,
            vec![
                closed(a, ChannelKind::Terminal),
                closed(b, ChannelKind::File),
                closed(pending, ChannelKind::PortForward),
                session_closed,
            ]
        );
        assert_eq!(p.agent.mode(), Mode::Heartbeat);
        assert!(p.server.poll_transmit(p.now).is_none());
        assert!(p.server.poll_timeout().is_none());
        assert_eq!(p.server.write(a, b"x"), Err(Error::Disconnected));
        assert_eq!(
            p.agent.handle_data(p.now, a, Bytes::from_static(b"x")),
            Err(Error::Disconnected)
        );
        p.agent.handle_disconnect(p.now); // idempotent
        assert!(p.agent.poll_event().is_none());
    }

    #[test]
    fn frames_for_unknown_channels_are_dropped_and_counted() {
        let mut p = Pair::session(TunnelConfig::default());
        p.agent
            .handle_data(p.now, 1234, Bytes::from_static(b"abc"))
            .unwrap();
        p.agent
            .handle_message(
                p.now,
                Message::WindowAdjust(WindowAdjust {
                    channel_id: 9,
                    bytes: 5,
                }),
            )
            .unwrap();
        p.agent
            .handle_message(
                p.now,
                Message::ChannelClose(ChannelClose {
                    channel_id: 9,
                    reset: None,
                }),
            )
            .unwrap();
        let stats = p.agent.stats();
        assert_eq!((stats.dropped_frames, stats.dropped_bytes), (1, 3));
        assert_eq!(stats.ignored_messages, 2);
        assert!(p.agent.poll_transmit(p.now).is_none());
        assert!(p.agent.poll_event().is_none());
        assert_eq!(p.agent.mode(), Mode::Tunnel);
    }

    #[test]
    fn session_end_drops_queued_channel_messages() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::Terminal);
        p.server.write(id, b"bytes").unwrap();
        p.server.send_eof(id).unwrap();
        p.server.close_session("bye").unwrap();
        let frames = drain_transmit(&mut p.server, p.now);
        assert_eq!(
            frames,
            vec![Frame::Control(Message::TunnelClose(TunnelClose {
                session_id: SID,
                reason: "bye".into()
            }))]
        );
    }

    #[test]
    fn a_flood_of_refused_opens_does_not_grow_the_queue_without_bound() {
        let now = Instant::now();
        let mut agent = AgentTunnel::new(TunnelConfig::default());
        for channel_id in 0..(MAX_QUEUED_REFUSALS as u32 + 500) {
            let open = ChannelOpen {
                channel_id: channel_id * 2,
                kind: ChannelKind::Terminal,
                initial_window: 1,
                max_packet: 1,
                params: serde_json::Value::Null,
            };
            agent
                .handle_message(now, Message::ChannelOpen(open))
                .unwrap();
        }
        assert_eq!(agent.stats().refusals_dropped, 500);
        assert_eq!(drain_transmit(&mut agent, now).len(), MAX_QUEUED_REFUSALS);
        // Once the peer reads again, it gets answers again.
        agent
            .handle_message(
                now,
                Message::TunnelOpen(TunnelOpen {
                    session_id: SID,
                    technician: "alice".into(),
                }),
            )
            .unwrap();
        assert!(agent.poll_transmit(now).is_some());
    }

    #[test]
    fn tiny_frames_are_coalesced() {
        let mut p = Pair::session(TunnelConfig::default());
        let id = p.channel(ChannelKind::Terminal);
        for i in 0..10_000u32 {
            let byte = Bytes::copy_from_slice(&[i as u8]);
            p.agent.handle_data(p.now, id, byte).unwrap();
        }
        p.agent
            .handle_data(p.now, id, Bytes::from(vec![7u8; 2000]))
            .unwrap();
        p.agent
            .handle_data(p.now, id, Bytes::from_static(b"end"))
            .unwrap();
        let ch = &p.agent.channels[&id];
        assert_eq!(ch.recv_buf.len(), 2, "one coalesced chunk and the big one");
        assert_eq!(ch.buffered, 12_003);
        let mut all = Vec::new();
        while let Some(chunk) = p.agent.read_chunk(id, 3000).unwrap() {
            all.extend_from_slice(&chunk);
        }
        assert_eq!(all.len(), 12_003);
        assert!(all[..10_000].iter().enumerate().all(|(i, b)| *b == i as u8));
        assert_eq!(&all[10_000..12_000], &[7u8; 2000][..]);
        assert_eq!(&all[12_000..], b"end");
    }

    #[test]
    fn per_kind_windows_apply() {
        let config = TunnelConfig::default()
            .with_window(ChannelKind::File, 1 << 20)
            .with_window(ChannelKind::Terminal, 4096);
        assert_eq!(config.window_for(ChannelKind::File), 1 << 20);
        assert_eq!(config.window_for(ChannelKind::PortForward), 256 * 1024);
        let mut p = Pair::session(config);
        let t = p.channel(ChannelKind::Terminal);
        let f = p.channel(ChannelKind::File);
        assert_eq!(p.server.channel(t).unwrap().send_credit, 4096);
        assert_eq!(p.server.channel(f).unwrap().send_credit, 1 << 20);
        assert_eq!(p.agent.channel(f).unwrap().recv_window, 1 << 20);
    }
}
