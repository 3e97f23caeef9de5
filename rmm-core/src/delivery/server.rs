//! The server's end of one agent connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{
    Close, DELIVERY_BATCH, Error, Fetch, HEARTBEAT_SECS, HELLO_TIMEOUT, MAX_RESYNCS,
    SILENT_INTERVALS, close_code, heartbeat_period, pop_front,
};
use crate::protocol::{
    AgentSettings, CommandOutput, CommandRef, CommandResult, CommandStarted, DecodeError, Frame,
    Heartbeat, Hello, Inventory, Message, ProtocolError, RunCommand, VersionRange, Welcome,
    negotiate,
};

/// Tunables of a [`ServerDelivery`]. Start from [`ServerConfig::new`] and
/// change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The agent the connection authenticated as; its `hello` must name it.
    pub agent_id: Uuid,
    /// Protocol versions this server speaks (default
    /// [`VersionRange::current`]).
    pub versions: VersionRange,
    /// How long the agent has to say `hello` (default [`HELLO_TIMEOUT`]).
    pub hello_timeout: Duration,
    /// The heartbeat interval announced in `welcome`, in seconds (default
    /// [`HEARTBEAT_SECS`]; 0 is treated as 1). The server probes at this
    /// interval and drops an agent silent for [`SILENT_INTERVALS`] of them.
    pub heartbeat_secs: u32,
}

impl ServerConfig {
    /// Defaults for a connection authenticated as `agent_id`.
    pub fn new(agent_id: Uuid) -> Self {
        ServerConfig {
            agent_id,
            versions: VersionRange::current(),
            hello_timeout: HELLO_TIMEOUT,
            heartbeat_secs: HEARTBEAT_SECS,
        }
    }
}

/// Something to send to the agent, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// A control message.
    Control(Message),
    /// A transport-level ping the peer must answer (a WebSocket ping): the
    /// half-open connection probe.
    Ping,
}

/// A request or a report for the driver. Exhaustive on purpose: a new
/// event must reach every driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A valid `hello` (its agent id is the authenticated one and `version`
    /// is the negotiated protocol). Decide with the store, then call
    /// [`ServerDelivery::welcome`] or [`ServerDelivery::refuse`] before
    /// feeding more input.
    Hello {
        /// What the agent said.
        hello: Hello,
        /// The protocol version both speak.
        version: u32,
    },
    /// Fetch due work from the store and hand it to
    /// [`ServerDelivery::deliver`] (also when the fetch failed: with
    /// nothing).
    Fetch(Fetch),
    /// A heartbeat: the agent was heard (the driver records `last_seen`).
    Heartbeat(Heartbeat),
    /// A command's process started.
    Started(CommandStarted),
    /// A chunk of output; the store appends it when its offset is the
    /// length held.
    Output(CommandOutput),
    /// A result. Store it durably, then [`ServerDelivery::acknowledge`]
    /// it, or call [`ServerDelivery::incomplete`] when the output held is
    /// shorter than the result says.
    Result(CommandResult),
    /// Load this command of the agent and hand it to
    /// [`ServerDelivery::resend`] (nothing when it is not the agent's).
    Resend {
        /// The command.
        command_id: Uuid,
    },
    /// A plugin result (its name is valid).
    Inventory(Inventory),
    /// An undecodable control message was answered with `bad_message`
    /// (for metrics).
    BadMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello { deadline: Option<Instant> },
    Deciding { version: u32 },
    Welcomed { next_probe: Option<Instant> },
    Closed(Close),
}

/// The server's end of one agent connection's delivery conversation,
/// sans-IO.
///
/// # Call order
///
/// The driver owns the socket, the store and the clock and loops:
///
/// 1. Feed input with the current time:
///    [`handle_frame`](Self::handle_frame) for each decoded frame,
///    [`handle_undecodable`](Self::handle_undecodable) for a frame the
///    codec refused, [`handle_keepalive`](Self::handle_keepalive) for a
///    transport ping or pong, [`handle_text`](Self::handle_text),
///    [`handle_oversized`](Self::handle_oversized) and
///    [`handle_peer_closed`](Self::handle_peer_closed) for what the
///    transport reports, and [`handle_timeout`](Self::handle_timeout) when
///    the instant of [`poll_timeout`](Self::poll_timeout) is reached.
/// 2. Drain the outputs: [`poll_transmit`](Self::poll_transmit) until
///    `None` (send each, in order), [`poll_event`](Self::poll_event) until
///    `None`, answering each with the operation it names
///    ([`welcome`](Self::welcome), [`refuse`](Self::refuse),
///    [`deliver`](Self::deliver), [`acknowledge`](Self::acknowledge),
///    [`incomplete`](Self::incomplete), [`resend`](Self::resend)) — and
///    send what those queue.
/// 3. Once [`close_reason`](Self::close_reason) is set and the transmits
///    are sent, close the transport with it. Otherwise re-arm the timer
///    with [`poll_timeout`](Self::poll_timeout) and wait for input,
///    [`wake`](Self::wake)-ups and messages from the rest of the server
///    ([`queue`](Self::queue)).
///
/// The machine never reads the clock and never panics on input. Operations
/// in a state that does not allow them are an [`Error`] and change
/// nothing; once closed, input and operations are ignored.
///
/// ```
/// use std::time::Instant;
/// use rmm_core::delivery::{Fetch, ServerConfig, ServerDelivery, ServerEvent, Transmit};
/// use rmm_core::protocol::{AgentSettings, Frame, Hello, Message, VersionRange};
/// use uuid::Uuid;
///
/// let now = Instant::now(); // the driver's clock; the machine never reads one
/// let agent_id = Uuid::from_u128(7);
/// let mut m = ServerDelivery::new(ServerConfig::new(agent_id), now);
/// let hello = Hello {
///     protocol: VersionRange::current(),
///     agent_id,
///     agent_version: "0.1.0".into(),
///     os: "linux".into(),
///     arch: "x86_64".into(),
///     hostname: "h".into(),
///     machine_uid: "m".into(),
///     channel: "stable".into(),
/// };
/// m.handle_frame(now, Frame::Control(Message::Hello(hello))).unwrap();
/// assert!(matches!(m.poll_event(), Some(ServerEvent::Hello { .. })));
/// // ...the store accepted the hello:
/// m.welcome(now, AgentSettings::default(), None).unwrap();
/// assert!(matches!(m.poll_transmit(), Some(Transmit::Control(Message::Welcome(_)))));
/// let Some(ServerEvent::Fetch(fetch)) = m.poll_event() else { panic!() };
/// assert_eq!(fetch, Fetch { include_inflight: true });
/// ```
#[derive(Debug)]
pub struct ServerDelivery {
    config: ServerConfig,
    phase: Phase,
    /// When the agent was last heard (anything received after the welcome).
    last_heard: Instant,
    /// Whether [`welcome`](Self::welcome) was called (the driver registered
    /// the agent).
    welcomed: bool,
    /// Commands whose `run_command` went out on this connection and whose
    /// result is not acknowledged.
    unacked: HashSet<Uuid>,
    /// Cancels sent on this connection (not repeated by later fetches).
    sent_cancels: HashSet<Uuid>,
    /// In-band re-syncs per command.
    resyncs: HashMap<Uuid, u8>,
    /// What the driver wants sent after the first delivery (the update
    /// offer).
    after_first_delivery: Option<Box<Message>>,
    transmit: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
}

impl ServerDelivery {
    /// A machine for a connection accepted at `now` (the `hello` deadline
    /// counts from it).
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let deadline = now.checked_add(config.hello_timeout);
        ServerDelivery {
            config,
            phase: Phase::AwaitingHello { deadline },
            last_heard: now,
            welcomed: false,
            unacked: HashSet::new(),
            sent_cancels: HashSet::new(),
            resyncs: HashMap::new(),
            after_first_delivery: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Whether the agent was welcomed and the connection is open.
    pub fn is_welcomed(&self) -> bool {
        matches!(self.phase, Phase::Welcomed { .. })
    }

    /// Whether the agent was welcomed on this connection, open or closed
    /// since (the driver then has a registration to undo).
    pub fn was_welcomed(&self) -> bool {
        self.welcomed
    }

    /// How the connection ends, once it does.
    pub fn close_reason(&self) -> Option<Close> {
        match self.phase {
            Phase::Closed(c) => Some(c),
            _ => None,
        }
    }

    /// Commands handed to this connection whose result is not acknowledged
    /// yet.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// When the agent was last heard.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    fn period(&self) -> Duration {
        heartbeat_period(self.config.heartbeat_secs)
    }

    // ----------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------

    /// Where input stands: `Ok(true)` to take it as a welcomed
    /// connection's (the agent was heard), `Ok(false)` before the welcome
    /// or after the close.
    fn take_input(&mut self, now: Instant) -> Result<bool, Error> {
        match self.phase {
            Phase::Deciding { .. } => Err(Error::HelloPending),
            Phase::Welcomed { .. } => {
                self.last_heard = now;
                Ok(true)
            }
            Phase::AwaitingHello { .. } | Phase::Closed(_) => Ok(false),
        }
    }

    fn awaiting_hello(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHello { .. })
    }

    /// Takes one frame received from the agent.
    ///
    /// Before the welcome only a `hello` is accepted (anything else is
    /// answered with `bad_message` and closes). After it, the agent's
    /// messages become events; messages an agent does not send are
    /// answered with `bad_message`, unknown kinds and `error`s ignored, and
    /// data frames ignored (no tunnel here). Errors:
    /// [`Error::HelloPending`].
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), Error> {
        if self.take_input(now)? {
            if let Frame::Control(msg) = frame {
                self.on_message(msg);
            }
        } else if self.awaiting_hello() {
            match frame {
                Frame::Control(Message::Hello(h)) => self.on_hello(h),
                _ => self.refuse_hello(
                    "bad_message",
                    "the first message must be hello".into(),
                    Close::new(close_code::POLICY, "expected hello"),
                ),
            }
        }
        Ok(())
    }

    /// Takes a frame the codec refused. A control body that is not a valid
    /// message is answered with `bad_message` (before the welcome it also
    /// closes); a frame-level error closes ([`Close::for_decode_error`]).
    /// Errors: [`Error::HelloPending`].
    pub fn handle_undecodable(&mut self, now: Instant, e: &DecodeError) -> Result<(), Error> {
        let welcomed = self.take_input(now)?;
        if !welcomed && !self.awaiting_hello() {
            return Ok(());
        }
        match e {
            DecodeError::Json(inner) if welcomed => {
                self.send_error("bad_message", format!("invalid control message: {inner}"));
                self.events.push_back(ServerEvent::BadMessage);
            }
            DecodeError::Json(inner) => self.refuse_hello(
                "bad_message",
                format!("invalid hello: {inner}"),
                Close::new(close_code::POLICY, "invalid hello"),
            ),
            other => self.close(Close::for_decode_error(other)),
        }
        Ok(())
    }

    /// A transport message over the size limit arrived: closes (1009).
    /// Errors: [`Error::HelloPending`].
    pub fn handle_oversized(&mut self, now: Instant) -> Result<(), Error> {
        self.take_input(now)?;
        self.close(Close::new(close_code::TOO_BIG, "message too big"));
        Ok(())
    }

    /// A text message arrived (only binary frames are allowed): closes
    /// (1003). Errors: [`Error::HelloPending`].
    pub fn handle_text(&mut self, now: Instant) -> Result<(), Error> {
        self.take_input(now)?;
        self.close(Close::new(
            close_code::UNSUPPORTED,
            "text messages are not allowed",
        ));
        Ok(())
    }

    /// A transport ping or pong arrived: after the welcome the agent was
    /// heard. Errors: [`Error::HelloPending`].
    pub fn handle_keepalive(&mut self, now: Instant) -> Result<(), Error> {
        self.take_input(now).map(drop)
    }

    /// The agent closed the connection, or it failed. Errors:
    /// [`Error::HelloPending`].
    pub fn handle_peer_closed(&mut self, now: Instant) -> Result<(), Error> {
        let reason = if self.awaiting_hello() {
            "closed before hello"
        } else {
            ""
        };
        self.take_input(now)?;
        self.close(Close::new(close_code::NORMAL, reason));
        Ok(())
    }

    /// Fires the timers due at `now`: the `hello` deadline (closes), and
    /// after the welcome the liveness probe: an agent silent for
    /// [`SILENT_INTERVALS`] heartbeat intervals is dropped, otherwise a
    /// [`Transmit::Ping`] goes out and the next probe is an interval later.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitingHello { deadline } if deadline.is_some_and(|d| now >= d) => {
                self.close(Close::new(
                    close_code::POLICY,
                    "no hello within the time limit",
                ));
            }
            Phase::Welcomed { next_probe } if next_probe.is_some_and(|d| now >= d) => {
                let period = self.period();
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= period.saturating_mul(SILENT_INTERVALS) {
                    self.close(Close::new(
                        close_code::POLICY,
                        "silent for 3 heartbeat intervals",
                    ));
                } else {
                    self.transmit.push_back(Transmit::Ping);
                    self.phase = Phase::Welcomed {
                        next_probe: now.checked_add(period),
                    };
                }
            }
            _ => {}
        }
    }

    fn on_hello(&mut self, hello: Hello) {
        if hello.agent_id != self.config.agent_id {
            return self.refuse_hello(
                "unauthorized",
                "hello agent_id differs from the authenticated agent".into(),
                Close::new(close_code::POLICY, "agent id mismatch"),
            );
        }
        let ours = self.config.versions;
        match negotiate(ours, hello.protocol) {
            Some(version) => {
                self.phase = Phase::Deciding { version };
                self.events.push_back(ServerEvent::Hello { hello, version });
            }
            None => {
                let text = format!(
                    "server speaks protocol {}..={}, agent {}..={}",
                    ours.min, ours.max, hello.protocol.min, hello.protocol.max
                );
                self.refuse_hello(
                    "unsupported_protocol",
                    text,
                    Close::new(close_code::PROTOCOL, "unsupported protocol version"),
                );
            }
        }
    }

    fn on_message(&mut self, msg: Message) {
        let event = match msg {
            Message::Heartbeat(h) => ServerEvent::Heartbeat(h),
            Message::CommandStarted(c) => ServerEvent::Started(c),
            Message::CommandOutput(o) => ServerEvent::Output(o),
            Message::CommandResult(r) => ServerEvent::Result(r),
            Message::Inventory(inv) if valid_plugin_name(&inv.plugin) => {
                ServerEvent::Inventory(inv)
            }
            Message::Inventory(_) => {
                return self.send_error(
                    "bad_message",
                    "inventory plugin name must be 1-128 characters of [A-Za-z0-9._-]".into(),
                );
            }
            Message::Hello(_) => {
                return self.send_error("bad_message", "hello was already received".into());
            }
            Message::Unknown | Message::Error(_) => return,
            other => {
                let text = format!("{} is not a message an agent sends", other.kind());
                return self.send_error("bad_message", text);
            }
        };
        self.events.push_back(event);
    }

    // ----------------------------------------------------------------
    // Operations
    // ----------------------------------------------------------------

    /// Accepts the `hello` of [`ServerEvent::Hello`]: sends `welcome` with
    /// `settings`, starts the liveness probe and asks for the first
    /// delivery ([`ServerEvent::Fetch`] with `include_inflight`). `then`
    /// (the update offer) is sent after that delivery. Errors:
    /// [`Error::NoHelloPending`].
    pub fn welcome(
        &mut self,
        now: Instant,
        settings: AgentSettings,
        then: Option<Message>,
    ) -> Result<(), Error> {
        let Phase::Deciding { version } = self.phase else {
            return Err(Error::NoHelloPending);
        };
        self.send(Message::Welcome(Welcome {
            protocol: version,
            agent_id: self.config.agent_id,
            heartbeat_interval_secs: self.config.heartbeat_secs.max(1),
            settings,
        }));
        self.phase = Phase::Welcomed {
            next_probe: now.checked_add(self.period()),
        };
        self.welcomed = true;
        self.after_first_delivery = then.map(Box::new);
        self.events.push_back(ServerEvent::Fetch(Fetch {
            include_inflight: true,
        }));
        Ok(())
    }

    /// Refuses the `hello` of [`ServerEvent::Hello`]: sends an `error`
    /// (`code`, `message`) and closes with `close`. Errors:
    /// [`Error::NoHelloPending`].
    pub fn refuse(&mut self, code: &str, message: &str, close: Close) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Deciding { .. }) {
            return Err(Error::NoHelloPending);
        }
        self.refuse_hello(code, message.to_owned(), close);
        Ok(())
    }

    /// Ends the conversation with `close` (the driver's reasons: shutdown,
    /// replaced, a store failure). Transmits already queued are still to be
    /// sent; pending events are dropped. Idempotent: the first close wins.
    pub fn close(&mut self, close: Close) {
        if !matches!(self.phase, Phase::Closed(_)) {
            self.phase = Phase::Closed(close);
            self.events.clear();
        }
    }

    /// Whether the welcomed conversation goes on: `Ok(false)` once closed.
    fn welcomed(&self) -> Result<bool, Error> {
        match self.phase {
            Phase::Welcomed { .. } => Ok(true),
            Phase::Closed(_) => Ok(false),
            _ => Err(Error::NotWelcomed),
        }
    }

    /// Work may be due (a command was queued or cancelled): asks for a
    /// fetch ([`ServerEvent::Fetch`] without `include_inflight`). Errors:
    /// [`Error::NotWelcomed`].
    pub fn wake(&mut self) -> Result<(), Error> {
        if self.welcomed()? {
            self.events.push_back(ServerEvent::Fetch(Fetch {
                include_inflight: false,
            }));
        }
        Ok(())
    }

    /// Answers a [`ServerEvent::Fetch`]: sends `commands` (in order), then
    /// `cancel_command` for each of `cancels` not sent on this connection
    /// yet (all of them for a fetch with `include_inflight`), then, after
    /// the first delivery, what [`welcome`](Self::welcome) was given to
    /// send. Returns true when `commands` was a full batch
    /// ([`DELIVERY_BATCH`]): wake the connection again, after serving other
    /// input, to fetch the rest. Errors: [`Error::NotWelcomed`].
    pub fn deliver(
        &mut self,
        fetch: Fetch,
        commands: Vec<RunCommand>,
        cancels: Vec<Uuid>,
    ) -> Result<bool, Error> {
        if !self.welcomed()? {
            return Ok(false);
        }
        let more = commands.len() >= DELIVERY_BATCH;
        for c in commands {
            self.unacked.insert(c.command_id);
            self.send(Message::RunCommand(c));
        }
        for id in cancels {
            let fresh = self.sent_cancels.insert(id);
            if fresh || fetch.include_inflight {
                self.send(Message::CancelCommand(CommandRef { command_id: id }));
            }
        }
        if let Some(msg) = self.after_first_delivery.take() {
            self.send(*msg);
        }
        Ok(more)
    }

    /// The result of `command_id` is stored durably (or the command is
    /// final or unknown): sends `command_ack`; the command is done on this
    /// connection. Errors: [`Error::NotWelcomed`].
    pub fn acknowledge(&mut self, command_id: Uuid) -> Result<(), Error> {
        if self.welcomed()? {
            forget(&mut self.unacked, &command_id);
            forget(&mut self.sent_cancels, &command_id);
            self.resyncs.remove(&command_id);
            if self.resyncs.is_empty() {
                self.resyncs = HashMap::new();
            }
            self.send(Message::CommandAck(CommandRef { command_id }));
        }
        Ok(())
    }

    /// The result of `command_id` came before all its output: asks for the
    /// command again ([`ServerEvent::Resend`]) so the agent re-sends its
    /// output and result, or closes after [`MAX_RESYNCS`] attempts on this
    /// connection. Errors: [`Error::NotWelcomed`].
    pub fn incomplete(&mut self, command_id: Uuid) -> Result<(), Error> {
        if !self.welcomed()? {
            return Ok(());
        }
        let n = self.resyncs.entry(command_id).or_insert(0);
        *n = n.saturating_add(1);
        if *n > MAX_RESYNCS {
            self.close(Close::new(
                close_code::POLICY,
                "output never completed; reconnect and re-send",
            ));
        } else {
            self.events.push_back(ServerEvent::Resend { command_id });
        }
        Ok(())
    }

    /// Answers a [`ServerEvent::Resend`]: sends the command again. Errors:
    /// [`Error::NotWelcomed`].
    pub fn resend(&mut self, command: RunCommand) -> Result<(), Error> {
        if self.welcomed()? {
            self.unacked.insert(command.command_id);
            self.send(Message::RunCommand(command));
        }
        Ok(())
    }

    /// Sends a control message from elsewhere in the server (the sweeper's
    /// `cancel_command`s, which are then not repeated by fetches). Errors:
    /// [`Error::NotWelcomed`].
    pub fn queue(&mut self, msg: Message) -> Result<(), Error> {
        if self.welcomed()? {
            match &msg {
                Message::CancelCommand(c) => {
                    self.sent_cancels.insert(c.command_id);
                }
                Message::RunCommand(c) => {
                    self.unacked.insert(c.command_id);
                }
                _ => {}
            }
            self.send(msg);
        }
        Ok(())
    }

    fn send(&mut self, msg: Message) {
        self.transmit.push_back(Transmit::Control(msg));
    }

    fn send_error(&mut self, code: &str, message: String) {
        self.send(Message::Error(ProtocolError {
            code: code.to_owned(),
            message,
        }));
    }

    fn refuse_hello(&mut self, code: &str, message: String, close: Close) {
        self.send_error(code, message);
        self.close(close);
    }

    // ----------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------

    /// The next thing to send to the agent: control messages and liveness
    /// pings, in the order they must go out (an `error` before the close
    /// it explains, the `welcome` before the first delivery).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        pop_front(&mut self.transmit)
    }

    /// The next request (answer it with the operation it names) or report
    /// for the driver.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        pop_front(&mut self.events)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next:
    /// the `hello` deadline, then the next liveness probe.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingHello { deadline } => deadline,
            Phase::Welcomed { next_probe } => next_probe,
            Phase::Deciding { .. } | Phase::Closed(_) => None,
        }
    }
}

/// Removes `id`, releasing the set's memory once it is empty.
fn forget(set: &mut HashSet<Uuid>, id: &Uuid) {
    set.remove(id);
    if set.is_empty() {
        *set = HashSet::new();
    }
}

/// A plugin name the server stores: 1-128 characters of `[A-Za-z0-9._-]`.
fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
// The test reads the real clock once, as the origin of its virtual time.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    /// Many connections sit idle: once drained, a machine holds no queue
    /// or set memory.
    #[test]
    fn a_drained_machine_keeps_no_memory_around() {
        let t0 = Instant::now();
        let agent_id = Uuid::from_u128(1);
        let mut m = ServerDelivery::new(ServerConfig::new(agent_id), t0);
        let hello = serde_json::json!({
            "type": "hello", "protocol": {"min": 1, "max": 1}, "agent_id": agent_id,
            "agent_version": "0.1.0", "os": "linux", "arch": "x86_64", "hostname": "h",
            "machine_uid": "m", "channel": "stable",
        });
        let hello: Message = serde_json::from_value(hello).unwrap();
        m.handle_frame(t0, Frame::Control(hello)).unwrap();
        while m.poll_event().is_some() {}
        m.welcome(t0, AgentSettings::default(), None).unwrap();
        let ids: Vec<Uuid> = (10..80).map(Uuid::from_u128).collect();
        let commands = ids
            .iter()
            .map(|&command_id| RunCommand {
                command_id,
                command_type: crate::protocol::CommandType::Sh,
                command: "true".into(),
                context: crate::protocol::CommandContext::System,
                timeout_secs: None,
            })
            .collect();
        let fetch = Fetch {
            include_inflight: true,
        };
        while m.poll_event().is_some() {}
        m.deliver(fetch, commands, ids.clone()).unwrap();
        for id in &ids {
            m.incomplete(*id).unwrap();
            m.acknowledge(*id).unwrap();
        }
        while m.poll_transmit().is_some() {}
        while m.poll_event().is_some() {}
        assert_eq!(m.transmit.capacity(), 0);
        assert_eq!(m.events.capacity(), 0);
        assert_eq!(m.unacked.capacity(), 0);
        assert_eq!(m.sent_cancels.capacity(), 0);
        assert_eq!(m.resyncs.capacity(), 0);
    }
}
