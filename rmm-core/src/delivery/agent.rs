//! The agent's end of its connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Error, heartbeat_period, pop_front};
use crate::protocol::{
    AgentSettings, DecodeError, Frame, Heartbeat, Hello, Message, ProtocolError, RunCommand,
    TunnelError, TunnelErrorCode, UpdateAvailable, Welcome,
};

/// A request or a report for the agent's driver. Exhaustive on purpose: a
/// new event must reach every driver.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The server welcomed this connection: apply its settings; the
    /// conversation is open.
    Welcomed(Welcome),
    /// A later `welcome` on the open connection: apply its settings.
    Settings(AgentSettings),
    /// Run a command, unless it is known: a command that is queued or
    /// running is ignored, one that finished is answered from the stored
    /// result (re-send its output and result).
    Run(RunCommand),
    /// Stop a command (or remember that it was cancelled before it came).
    Cancel {
        /// The command.
        command_id: Uuid,
    },
    /// The server holds the command's result: forget it.
    Ack {
        /// The command.
        command_id: Uuid,
    },
    /// A newer build is available.
    UpdateAvailable(UpdateAvailable),
    /// The server reported an error.
    ServerError(ProtocolError),
    /// A heartbeat is due: call [`AgentDelivery::heartbeat`] with the
    /// number of running commands.
    HeartbeatDue,
    /// An undecodable control message (the reason given) was answered with
    /// `bad_message`.
    BadMessage(String),
    /// A message this agent does not act on (unknown kind, or one only an
    /// agent sends) was ignored.
    Ignored {
        /// Its wire kind.
        kind: &'static str,
    },
}

/// Why the conversation ended on the agent's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnd {
    /// The server answered the `hello` with an `error`.
    Refused(ProtocolError),
    /// No `welcome` within the welcome timeout (the timeout given).
    NoWelcome(Duration),
    /// The server sent a frame the codec refused at frame level (the
    /// codec's description).
    BadFrame(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    AwaitingWelcome,
    Welcomed { period: Duration },
    Ended(AgentEnd),
}

/// The agent's end of its connection's delivery conversation, sans-IO.
///
/// Created with the `hello` to send; the driver sends what
/// [`poll_transmit`](Self::poll_transmit) returns, feeds every frame with
/// [`handle_frame`](Self::handle_frame) (a frame the codec refused with
/// [`handle_undecodable`](Self::handle_undecodable)), calls
/// [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout), and acts on each
/// [`poll_event`](Self::poll_event). Until the `welcome`, the timer is the
/// welcome deadline and only `welcome` and `error` matter; after it, the
/// timer is the heartbeat (the first one at once, then one every
/// `heartbeat_interval_secs`). Once [`end`](Self::end) is set the
/// connection is over. Decisions that need the agent's store or processes
/// (is a re-delivered command running? finished?) are the driver's: they
/// arrive as events.
///
/// ```
/// use std::time::{Duration, Instant};
/// use rmm_core::delivery::{AgentDelivery, AgentEvent};
/// use rmm_core::protocol::{AgentSettings, Frame, Hello, Message, VersionRange, Welcome};
/// use uuid::Uuid;
///
/// let now = Instant::now(); // the driver's clock
/// let hello = Hello {
///     protocol: VersionRange::current(),
///     agent_id: Uuid::from_u128(7),
///     agent_version: "0.1.0".into(),
///     os: "linux".into(),
///     arch: "x86_64".into(),
///     hostname: "h".into(),
///     machine_uid: "m".into(),
///     channel: "stable".into(),
/// };
/// let mut m = AgentDelivery::new(now, hello, Duration::from_secs(30));
/// assert!(matches!(m.poll_transmit(), Some(Message::Hello(_))));
/// let welcome = Welcome {
///     protocol: 1,
///     agent_id: Uuid::from_u128(7),
///     heartbeat_interval_secs: 30,
///     settings: AgentSettings::default(),
/// };
/// m.handle_frame(now, Frame::Control(Message::Welcome(welcome)));
/// assert!(matches!(m.poll_event(), Some(AgentEvent::Welcomed(_))));
/// m.handle_timeout(now); // the first heartbeat is due at once
/// assert_eq!(m.poll_event(), Some(AgentEvent::HeartbeatDue));
/// m.heartbeat(0).unwrap();
/// assert!(matches!(m.poll_transmit(), Some(Message::Heartbeat(h)) if h.seq == 1));
/// assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(30)));
/// ```
#[derive(Debug)]
pub struct AgentDelivery {
    phase: Phase,
    /// The one timer: the welcome deadline, then the next heartbeat.
    timer: Option<Instant>,
    welcome_timeout: Duration,
    /// The last heartbeat's sequence number on this connection.
    seq: u64,
    transmit: VecDeque<Message>,
    events: VecDeque<AgentEvent>,
}

impl AgentDelivery {
    /// A machine for a fresh connection at `now`: `hello` is the first
    /// message to send and the server has `welcome_timeout` to answer it.
    pub fn new(now: Instant, hello: Hello, welcome_timeout: Duration) -> Self {
        AgentDelivery {
            phase: Phase::AwaitingWelcome,
            timer: now.checked_add(welcome_timeout),
            welcome_timeout,
            seq: 0,
            transmit: VecDeque::from([Message::Hello(hello)]),
            events: VecDeque::new(),
        }
    }

    /// Whether the server welcomed this connection (and it did not end).
    pub fn is_welcomed(&self) -> bool {
        matches!(self.phase, Phase::Welcomed { .. })
    }

    /// Why the conversation ended, once it did.
    pub fn end(&self) -> Option<&AgentEnd> {
        match &self.phase {
            Phase::Ended(e) => Some(e),
            _ => None,
        }
    }

    /// Takes one frame received from the server. Before the `welcome`
    /// only `welcome` and `error` count; after it the server's messages
    /// become events, and a `tunnel_open` is refused (no tunnel is hosted
    /// when it reaches this machine). Data frames are ignored.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) {
        let Frame::Control(msg) = frame else {
            return;
        };
        match self.phase {
            Phase::AwaitingWelcome => match msg {
                Message::Welcome(w) => {
                    self.phase = Phase::Welcomed {
                        period: heartbeat_period(w.heartbeat_interval_secs),
                    };
                    self.timer = Some(now);
                    self.events.push_back(AgentEvent::Welcomed(w));
                }
                Message::Error(e) => self.finish(AgentEnd::Refused(e)),
                _ => {}
            },
            Phase::Welcomed { .. } => self.on_message(msg),
            Phase::Ended(_) => {}
        }
    }

    fn on_message(&mut self, msg: Message) {
        let event = match msg {
            Message::RunCommand(rc) => AgentEvent::Run(rc),
            Message::CancelCommand(c) => AgentEvent::Cancel {
                command_id: c.command_id,
            },
            Message::CommandAck(c) => AgentEvent::Ack {
                command_id: c.command_id,
            },
            Message::Welcome(w) => AgentEvent::Settings(w.settings),
            Message::TunnelOpen(t) => {
                self.transmit.push_back(Message::TunnelError(TunnelError {
                    session_id: t.session_id,
                    code: TunnelErrorCode::Protocol,
                    message: "tunnels are not supported by this agent build".into(),
                }));
                return;
            }
            Message::UpdateAvailable(u) => AgentEvent::UpdateAvailable(u),
            Message::Error(e) => AgentEvent::ServerError(e),
            other => AgentEvent::Ignored { kind: other.kind() },
        };
        self.events.push_back(event);
    }

    /// Takes a frame the codec refused. After the `welcome` a control body
    /// that is not a valid message is answered with `bad_message` (before
    /// it, ignored); a frame-level error ends the conversation
    /// ([`AgentEnd::BadFrame`]).
    pub fn handle_undecodable(&mut self, _now: Instant, e: &DecodeError) {
        match (&self.phase, e) {
            (Phase::Ended(_), _) | (Phase::AwaitingWelcome, DecodeError::Json(_)) => {}
            (Phase::Welcomed { .. }, DecodeError::Json(inner)) => {
                let text = inner.to_string();
                self.transmit.push_back(Message::Error(ProtocolError {
                    code: "bad_message".into(),
                    message: text.clone(),
                }));
                self.events.push_back(AgentEvent::BadMessage(text));
            }
            (_, other) => self.finish(AgentEnd::BadFrame(other.to_string())),
        }
    }

    /// Fires the timers due at `now`: the welcome deadline (the
    /// conversation ends with [`AgentEnd::NoWelcome`]) and the heartbeat
    /// ([`AgentEvent::HeartbeatDue`]; the next one is an interval later).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_none_or(|t| now < t) {
            return;
        }
        match self.phase {
            Phase::AwaitingWelcome => self.finish(AgentEnd::NoWelcome(self.welcome_timeout)),
            Phase::Welcomed { period } => {
                self.timer = now.checked_add(period);
                self.events.push_back(AgentEvent::HeartbeatDue);
            }
            Phase::Ended(_) => {}
        }
    }

    fn finish(&mut self, end: AgentEnd) {
        self.phase = Phase::Ended(end);
        self.timer = None;
    }

    /// Answers [`AgentEvent::HeartbeatDue`]: sends a heartbeat (sequence
    /// numbers count from 1 on each connection) reporting `running`
    /// commands. Ignored once ended. Errors: [`Error::NotWelcomed`].
    pub fn heartbeat(&mut self, running: u32) -> Result<(), Error> {
        match self.phase {
            Phase::Welcomed { .. } => {
                self.seq += 1;
                self.transmit.push_back(Message::Heartbeat(Heartbeat {
                    seq: self.seq,
                    running,
                }));
                Ok(())
            }
            Phase::Ended(_) => Ok(()),
            Phase::AwaitingWelcome => Err(Error::NotWelcomed),
        }
    }

    /// The next message of the conversation to send to the server (the
    /// `hello`, heartbeats, answers); the driver's own messages (output,
    /// results) share its outbound queue.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        pop_front(&mut self.transmit)
    }

    /// The next event for the driver: act on each (a
    /// [`HeartbeatDue`](AgentEvent::HeartbeatDue) is answered with
    /// [`heartbeat`](Self::heartbeat)) before feeding more input.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        pop_front(&mut self.events)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next:
    /// the welcome deadline, then the next heartbeat.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }
}
