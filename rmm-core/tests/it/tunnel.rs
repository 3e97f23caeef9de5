//! Tunnel state machine against itself: an agent machine and a server
//! machine over an in-memory link (frames encoded and decoded with the real
//! codec, random delivery delays, in order per direction like a WebSocket)
//! with virtual time, driven by proptest with random operation sequences.
//!
//! Invariants checked after every step:
//! - bytes of every channel arrive complete and in order (content is a
//!   function of the stream offset, checked on every read; a channel closed
//!   gracefully by the writer, or half-closed and drained, delivered all);
//! - data bytes a machine emitted on a channel never exceed the credit
//!   delivered to it (initial window + window adjusts that reached it);
//!   a receiver never buffers more than it granted;
//! - the channels a machine reports match the events it emitted; every
//!   channel announced to the application ends exactly once, every session
//!   ends exactly once and, after teardown, nothing is left on either side
//!   and the agent is back in heartbeat mode;
//! - no sequence panics, including garbage and forged frames (chaos run).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rmm_core::protocol::{
    ChannelAccept, ChannelClose, ChannelErrorCode, ChannelKind, ChannelOpen, ChannelRef,
    ChannelReject, Codec, Frame, Message, SessionRef, TunnelClose, TunnelError, TunnelErrorCode,
    TunnelOpen, WindowAdjust,
};
use rmm_core::tunnel::{
    AgentTunnel, ChannelEnd, Error, Event, Mode, Origin, Role, ServerTunnel, Tunnel, TunnelConfig,
};
use uuid::Uuid;

/// Stream content: a function of (channel, direction, offset), so a lost,
/// duplicated or reordered byte is caught on read.
fn pattern(channel_id: u32, from_agent: bool, offset: u64) -> u8 {
    let mut x = offset ^ (u64::from(channel_id) << 40) ^ (u64::from(from_agent) << 63);
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    (x >> 17) as u8
}

/// What the simulator knows about one side, learned from its events and
/// from the operations it performed.
#[derive(Debug, Default)]
struct Book {
    announced: BTreeSet<u32>,
    closed: BTreeMap<u32, ChannelEnd>,
    /// Closed without announcement (opens this machine refused itself).
    refused: BTreeSet<u32>,
    live: BTreeSet<u32>,
    requested: Vec<u32>,
    open: BTreeSet<u32>,
    written: HashMap<u32, u64>,
    read: HashMap<u32, u64>,
    eof_in: BTreeSet<u32>,
    eof_out: BTreeSet<u32>,
    /// The application closed or reset it (unread bytes are discarded).
    app_closed: BTreeSet<u32>,
    sessions_opened: u32,
    sessions_closed: u32,
    sessions_refused: u32,
    in_session: bool,
    tunnel_mode: bool,
}

impl Book {
    fn announce(&mut self, id: u32) {
        assert!(self.announced.insert(id), "channel {id} announced twice");
        self.live.insert(id);
    }

    fn pick_open(&self, pick: u8) -> Option<u32> {
        let open: Vec<u32> = self.open.iter().copied().collect();
        (!open.is_empty()).then(|| open[pick as usize % open.len()])
    }
}

#[derive(Debug, Clone)]
enum Op {
    OpenSession,
    CloseSession {
        agent: bool,
    },
    OpenChannel {
        agent: bool,
        kind: u8,
    },
    Answer {
        agent: bool,
        pick: u8,
        accept: bool,
    },
    Write {
        agent: bool,
        pick: u8,
        len: u32,
    },
    Read {
        agent: bool,
        pick: u8,
        max: u32,
    },
    ReadAll,
    Eof {
        agent: bool,
        pick: u8,
    },
    Close {
        agent: bool,
        pick: u8,
    },
    Reset {
        agent: bool,
        pick: u8,
    },
    Advance {
        ms: u32,
    },
    Disconnect,
    /// Chaos only: raw bytes decoded with the codec and fed to one side.
    Garbage {
        agent: bool,
        bytes: Vec<u8>,
    },
    /// Chaos only: a well-formed but forged frame.
    Forge {
        agent: bool,
        frame: Forged,
    },
}

#[derive(Debug, Clone)]
enum Forged {
    Data {
        id: u32,
        len: u16,
    },
    Open {
        id: u32,
        kind: u8,
        window: u32,
        packet: u32,
    },
    Accept {
        id: u32,
        window: u32,
        packet: u32,
    },
    Reject {
        id: u32,
    },
    Adjust {
        id: u32,
        bytes: u32,
    },
    Eof {
        id: u32,
    },
    Close {
        id: u32,
        reset: bool,
    },
    TunnelOpen {
        n: u8,
    },
    TunnelReady {
        n: u8,
    },
    TunnelClose {
        n: u8,
    },
    TunnelError {
        n: u8,
    },
}

const KINDS: [ChannelKind; 5] = [
    ChannelKind::Terminal,
    ChannelKind::File,
    ChannelKind::PortForward,
    ChannelKind::Registry, // not accepted by default: refused
    ChannelKind::Unknown,  // cannot be opened
];

fn session_id(n: u32) -> Uuid {
    Uuid::from_u128(0x5e55_0000 + u128::from(n))
}

impl Forged {
    fn frame(&self) -> Frame {
        let m = |msg| Frame::Control(msg);
        match *self {
            Forged::Data { id, len } => Frame::Data {
                channel_id: id,
                payload: Bytes::from(vec![0xee; usize::from(len)]),
            },
            Forged::Open {
                id,
                kind,
                window,
                packet,
            } => m(Message::ChannelOpen(ChannelOpen {
                channel_id: id,
                kind: KINDS[kind as usize % KINDS.len()],
                initial_window: window,
                max_packet: packet,
                params: serde_json::Value::Null,
            })),
            Forged::Accept { id, window, packet } => m(Message::ChannelAccept(ChannelAccept {
                channel_id: id,
                initial_window: window,
                max_packet: packet,
            })),
            Forged::Reject { id } => m(Message::ChannelReject(ChannelReject {
                channel_id: id,
                code: ChannelErrorCode::Refused,
                message: String::new(),
            })),
            Forged::Adjust { id, bytes } => m(Message::WindowAdjust(WindowAdjust {
                channel_id: id,
                bytes,
            })),
            Forged::Eof { id } => m(Message::ChannelEof(ChannelRef { channel_id: id })),
            Forged::Close { id, reset } => m(Message::ChannelClose(ChannelClose {
                channel_id: id,
                reset: reset.then_some(ChannelErrorCode::Other),
            })),
            Forged::TunnelOpen { n } => m(Message::TunnelOpen(TunnelOpen {
                session_id: session_id(u32::from(n % 4)),
                technician: "mallory".into(),
            })),
            Forged::TunnelReady { n } => m(Message::TunnelReady(SessionRef {
                session_id: session_id(u32::from(n % 4)),
            })),
            Forged::TunnelClose { n } => m(Message::TunnelClose(TunnelClose {
                session_id: session_id(u32::from(n % 4)),
                reason: "forged".into(),
            })),
            Forged::TunnelError { n } => m(Message::TunnelError(TunnelError {
                session_id: session_id(u32::from(n % 4)),
                code: TunnelErrorCode::Protocol,
                message: String::new(),
            })),
        }
    }
}

struct Link {
    queue: VecDeque<(Instant, Vec<u8>)>,
    last: Instant,
}

impl Link {
    fn new(now: Instant) -> Self {
        Link {
            queue: VecDeque::new(),
            last: now,
        }
    }
}

struct Sim {
    codec: Codec,
    config: TunnelConfig,
    now: Instant,
    agent: AgentTunnel,
    server: ServerTunnel,
    a: Book,
    s: Book,
    to_agent: Link,
    to_server: Link,
    rng: u64,
    max_delay_ms: u64,
    /// Credit delivered to (sender is agent, channel).
    granted: HashMap<(bool, u32), u64>,
    /// Data bytes emitted by (sender is agent, channel).
    sent: HashMap<(bool, u32), u64>,
    honest: bool,
    /// Frames each side may put on the wire per pump (a socket that is not
    /// always writable); `None`: all of them.
    burst: Option<usize>,
    sessions: u32,
    server_opens: u32,
}

impl Sim {
    fn new(config: TunnelConfig, seed: u64, max_delay_ms: u64) -> Self {
        let now = Instant::now();
        Sim {
            codec: Codec::default(),
            agent: AgentTunnel::new(config.clone()),
            server: ServerTunnel::new(config.clone()),
            config,
            now,
            a: Book::default(),
            s: Book::default(),
            to_agent: Link::new(now),
            to_server: Link::new(now),
            rng: seed | 1,
            max_delay_ms,
            granted: HashMap::new(),
            sent: HashMap::new(),
            honest: true,
            burst: None,
            sessions: 0,
            server_opens: 0,
        }
    }

    fn delay(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Duration::from_millis(self.rng % (self.max_delay_ms + 1))
    }

    /// Puts a frame emitted by one side on the wire.
    fn send(&mut self, from_agent: bool, frame: Frame) {
        if let Frame::Data {
            channel_id,
            payload,
        } = &frame
        {
            let sent = self.sent.entry((from_agent, *channel_id)).or_default();
            *sent += payload.len() as u64;
            if self.honest {
                let granted = self
                    .granted
                    .get(&(from_agent, *channel_id))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    *sent <= granted,
                    "channel {channel_id}: {sent} bytes sent with {granted} granted"
                );
            }
        }
        let bytes = self.codec.encode_to_vec(&frame).expect("encodable frame");
        let at = (self.now + self.delay()).max(if from_agent {
            self.to_server.last
        } else {
            self.to_agent.last
        });
        let link = if from_agent {
            &mut self.to_server
        } else {
            &mut self.to_agent
        };
        link.last = at;
        link.queue.push_back((at, bytes));
    }

    /// Hands a frame to a side; honest frames must be taken without error.
    fn deliver(&mut self, to_agent: bool, bytes: &[u8]) {
        let frame = self.codec.decode_message(bytes).expect("decodable frame");
        if let Frame::Control(msg) = &frame {
            match msg {
                Message::ChannelOpen(m) => {
                    self.granted
                        .insert((to_agent, m.channel_id), u64::from(m.initial_window));
                }
                Message::ChannelAccept(m) => {
                    self.granted
                        .insert((to_agent, m.channel_id), u64::from(m.initial_window));
                }
                Message::WindowAdjust(m) => {
                    *self.granted.entry((to_agent, m.channel_id)).or_default() +=
                        u64::from(m.bytes);
                }
                _ => {}
            }
        }
        let res = if to_agent {
            self.agent.handle_frame(self.now, frame)
        } else {
            self.server.handle_frame(self.now, frame)
        };
        if self.honest {
            res.expect("honest frame accepted");
        }
    }

    /// Moves everything that can move at `now`: transmits (within the
    /// burst budget), deliveries that are due, timers that are due, events.
    /// Returns whether any frame was transmitted.
    fn pump(&mut self) -> bool {
        let mut transmitted = false;
        let mut budget = self.burst;
        for _ in 0..10_000 {
            let mut progress = false;
            for from_agent in [false, true] {
                let mut left = budget.unwrap_or(usize::MAX);
                while left > 0 {
                    let frame = if from_agent {
                        self.agent.poll_transmit(self.now)
                    } else {
                        self.server.poll_transmit(self.now)
                    };
                    let Some(frame) = frame else {
                        break;
                    };
                    self.send(from_agent, frame);
                    transmitted = true;
                    progress = true;
                    left -= 1;
                }
            }
            // With a budget, the socket takes one burst per pump.
            budget = budget.map(|_| 0);
            while self
                .to_agent
                .queue
                .front()
                .is_some_and(|(at, _)| *at <= self.now)
            {
                let (_, bytes) = self.to_agent.queue.pop_front().expect("front");
                self.deliver(true, &bytes);
                progress = true;
            }
            while self
                .to_server
                .queue
                .front()
                .is_some_and(|(at, _)| *at <= self.now)
            {
                let (_, bytes) = self.to_server.queue.pop_front().expect("front");
                self.deliver(false, &bytes);
                progress = true;
            }
            if self.agent.poll_timeout().is_some_and(|t| t <= self.now) {
                self.agent.handle_timeout(self.now);
                progress = true;
            }
            if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                self.server.handle_timeout(self.now);
                progress = true;
            }
            progress |= self.events();
            if !progress {
                self.check();
                return transmitted;
            }
        }
        panic!("the machines never went quiet");
    }

    /// Advances virtual time to `target`, stopping at every delivery and
    /// timer on the way.
    fn advance_to(&mut self, target: Instant) {
        loop {
            self.pump();
            let next = [
                self.to_agent.queue.front().map(|(at, _)| *at),
                self.to_server.queue.front().map(|(at, _)| *at),
                self.agent.poll_timeout(),
                self.server.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t <= target)
            .min();
            match next {
                Some(t) => self.now = self.now.max(t),
                None => {
                    self.now = target;
                    self.pump();
                    return;
                }
            }
        }
    }

    fn events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.agent.poll_event() {
            self.auto_answer(true, &ev);
            self.on_event(true, ev);
            any = true;
        }
        while let Some(ev) = self.server.poll_event() {
            self.auto_answer(false, &ev);
            self.on_event(false, ev);
            any = true;
        }
        any
    }

    /// Like a real driver, answers most open requests at once: 70 % accept,
    /// 10 % reject; the rest wait for an `Answer` operation or time out.
    fn auto_answer(&mut self, agent: bool, ev: &Event) {
        let Event::ChannelOpenRequested { channel_id, .. } = ev else {
            return;
        };
        let roll = self.delay().as_millis() as u64 ^ self.rng;
        let res = match roll % 10 {
            0..7 => Some(if agent {
                self.agent.accept_channel(*channel_id)
            } else {
                self.server.accept_channel(*channel_id)
            }),
            7 => Some(if agent {
                self.agent
                    .reject_channel(*channel_id, ChannelErrorCode::Refused, "policy")
            } else {
                self.server
                    .reject_channel(*channel_id, ChannelErrorCode::Refused, "policy")
            }),
            _ => None,
        };
        if let Some(res) = res {
            // The request may already be gone (a later event in the queue
            // ended it), which the machine reports as a typed error.
            assert!(
                matches!(
                    res,
                    Ok(()) | Err(Error::UnknownChannel { .. } | Error::NoSession)
                ),
                "{res:?}"
            );
        }
    }

    fn on_event(&mut self, agent: bool, ev: Event) {
        let honest = self.honest;
        let (book, peer) = if agent {
            (&mut self.a, &self.s)
        } else {
            (&mut self.s, &self.a)
        };
        match ev {
            Event::ModeChanged { mode } => {
                assert!(agent, "only the agent changes modes");
                // Tunnel mode comes before SessionOpened, heartbeat mode
                // after SessionClosed.
                assert!(!book.in_session);
                assert_ne!(mode == Mode::Tunnel, book.tunnel_mode, "mode flips");
                book.tunnel_mode = mode == Mode::Tunnel;
            }
            Event::SessionOpened { .. } => {
                assert!(!book.in_session, "two sessions at once");
                book.in_session = true;
                book.sessions_opened += 1;
            }
            Event::SessionRefused { .. } => {
                assert!(!honest || !agent, "honest server never opens twice");
                book.sessions_refused += 1;
            }
            Event::SessionClosed { .. } => {
                assert!(
                    book.live.is_empty(),
                    "session closed before its channels: {:?}",
                    book.live
                );
                book.in_session = false;
                book.sessions_closed += 1;
            }
            Event::ChannelOpenRequested { channel_id, .. } => {
                book.announce(channel_id);
                // Answered (or not) by `auto_answer` already; it stays
                // answerable while the machine still has it pending.
                book.requested.push(channel_id);
            }
            Event::ChannelOpened { channel_id, .. } => {
                assert!(
                    book.live.contains(&channel_id),
                    "opened {channel_id} not live"
                );
                book.open.insert(channel_id);
                book.requested.retain(|id| *id != channel_id);
            }
            Event::ChannelEof { channel_id, .. } => {
                assert!(book.live.contains(&channel_id));
                book.eof_in.insert(channel_id);
            }
            Event::Readable { channel_id } | Event::Writable { channel_id } => {
                assert!(book.open.contains(&channel_id));
            }
            Event::ChannelClosed {
                channel_id, reason, ..
            } => {
                if !book.announced.contains(&channel_id) {
                    assert!(
                        matches!(
                            reason,
                            ChannelEnd::Rejected {
                                origin: Origin::Local,
                                ..
                            }
                        ),
                        "unannounced channel {channel_id} closed with {reason:?}"
                    );
                    assert!(book.refused.insert(channel_id), "refused twice");
                    return;
                }
                assert!(
                    book.closed.insert(channel_id, reason.clone()).is_none(),
                    "channel {channel_id} closed twice"
                );
                book.live.remove(&channel_id);
                book.open.remove(&channel_id);
                book.requested.retain(|id| *id != channel_id);
                if honest {
                    // Between honest machines the only resets are the
                    // application's (`refused` here) and a peer giving up
                    // an open (`timeout`): never a flow-control violation.
                    let legit = match &reason {
                        ChannelEnd::Reset {
                            origin: Origin::Local,
                            code,
                        } => *code == ChannelErrorCode::Refused,
                        ChannelEnd::Reset {
                            origin: Origin::Peer,
                            code,
                        } => matches!(code, ChannelErrorCode::Refused | ChannelErrorCode::Timeout),
                        _ => true,
                    };
                    assert!(
                        legit,
                        "honest peers broke the protocol on {channel_id}: {reason:?}"
                    );
                    // A graceful close by the writer delivers every byte.
                    if reason
                        == (ChannelEnd::Closed {
                            origin: Origin::Peer,
                        })
                        && !book.app_closed.contains(&channel_id)
                    {
                        let read = book.read.get(&channel_id).copied().unwrap_or(0);
                        let written = peer.written.get(&channel_id).copied().unwrap_or(0);
                        assert_eq!(read, written, "channel {channel_id} lost bytes on close");
                    }
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn check(&self) {
        check_side(&self.agent, &self.a);
        check_side(&self.server, &self.s);
        assert_eq!(self.agent.mode() == Mode::Tunnel, self.a.in_session);
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::OpenSession => {
                let id = session_id(self.sessions);
                self.sessions += 1;
                match self
                    .server
                    .open_session(self.now, id, format!("tech-{}", self.sessions))
                {
                    Ok(()) => self.server_opens += 1,
                    Err(Error::Busy { .. } | Error::Disconnected) => {}
                    Err(e) => panic!("open_session: {e}"),
                }
            }
            Op::CloseSession { agent } => {
                let res = if agent {
                    self.agent.close_session("op")
                } else {
                    self.server.close_session("op")
                };
                assert!(matches!(res, Ok(()) | Err(Error::NoSession)), "{res:?}");
            }
            Op::OpenChannel { agent, kind } => {
                let kind = KINDS[kind as usize % KINDS.len()];
                if agent {
                    open_channel(&mut self.agent, &mut self.a, self.now, kind);
                } else {
                    open_channel(&mut self.server, &mut self.s, self.now, kind);
                }
            }
            Op::Answer {
                agent,
                pick,
                accept,
            } => {
                if agent {
                    answer(&mut self.agent, &mut self.a, pick, accept);
                } else {
                    answer(&mut self.server, &mut self.s, pick, accept);
                }
            }
            Op::Write { agent, pick, len } => {
                if agent {
                    write(&mut self.agent, &mut self.a, true, pick, len);
                } else {
                    write(&mut self.server, &mut self.s, false, pick, len);
                }
            }
            Op::Read { agent, pick, max } => {
                let honest = self.honest;
                if agent {
                    read(&mut self.agent, &mut self.a, false, pick, max, honest);
                } else {
                    read(&mut self.server, &mut self.s, true, pick, max, honest);
                }
            }
            Op::ReadAll => self.read_all(),
            Op::Eof { agent, pick } => {
                if agent {
                    eof(&mut self.agent, &mut self.a, pick);
                } else {
                    eof(&mut self.server, &mut self.s, pick);
                }
            }
            Op::Close { agent, pick } => {
                if agent {
                    close(&mut self.agent, &mut self.a, pick, false);
                } else {
                    close(&mut self.server, &mut self.s, pick, false);
                }
            }
            Op::Reset { agent, pick } => {
                if agent {
                    close(&mut self.agent, &mut self.a, pick, true);
                } else {
                    close(&mut self.server, &mut self.s, pick, true);
                }
            }
            Op::Advance { ms } => {
                let target = self.now + Duration::from_millis(u64::from(ms));
                self.advance_to(target);
            }
            Op::Disconnect => self.reconnect(),
            Op::Garbage { agent, bytes } => {
                self.honest = false;
                if let Ok(frame) = self.codec.decode_message(&bytes) {
                    self.inject(agent, frame);
                }
            }
            Op::Forge { agent, frame } => {
                self.honest = false;
                let frame = frame.frame();
                // Forged frames go through the codec like real ones.
                let bytes = self.codec.encode_to_vec(&frame).expect("encodable");
                let frame = self.codec.decode_message(&bytes).expect("decodable");
                self.inject(agent, frame);
            }
        }
        // Virtual time goes on a little between operations.
        let tick = self.delay();
        self.advance_to(self.now + tick);
    }

    fn inject(&mut self, agent: bool, frame: Frame) {
        // Errors (misrouted messages) are fine; panics are not.
        let _ = if agent {
            self.agent.handle_frame(self.now, frame)
        } else {
            self.server.handle_frame(self.now, frame)
        };
    }

    fn read_all(&mut self) {
        let honest = self.honest;
        for pick in 0..self.a.open.len() {
            read(
                &mut self.agent,
                &mut self.a,
                false,
                pick as u8,
                u32::MAX,
                honest,
            );
        }
        for pick in 0..self.s.open.len() {
            read(
                &mut self.server,
                &mut self.s,
                true,
                pick as u8,
                u32::MAX,
                honest,
            );
        }
    }

    /// Half-closes every open channel both ways, lets everything arrive and
    /// reads it: every byte written must have been read.
    fn finish(&mut self) {
        for id in self.a.open.clone() {
            let _ = self.agent.send_eof(id);
            self.a.eof_out.insert(id);
        }
        for id in self.s.open.clone() {
            let _ = self.server.send_eof(id);
            self.s.eof_out.insert(id);
        }
        for _ in 0..100_000 {
            let before = (self.a.read.clone(), self.s.read.clone());
            let mut moved = self.pump();
            self.read_all();
            moved |= self.pump();
            if !moved
                && self.to_agent.queue.is_empty()
                && self.to_server.queue.is_empty()
                && before == (self.a.read.clone(), self.s.read.clone())
            {
                break;
            }
            let step = self.now + Duration::from_millis(self.max_delay_ms.max(1));
            self.advance_to(step);
        }
        if self.honest {
            for (reader, writer) in [(&self.a, &self.s), (&self.s, &self.a)] {
                for id in &reader.eof_in {
                    if reader.live.contains(id) {
                        assert_eq!(
                            reader.read.get(id).copied().unwrap_or(0),
                            writer.written.get(id).copied().unwrap_or(0),
                            "channel {id}: bytes missing after EOF"
                        );
                    }
                }
            }
        }
    }

    /// Drops the connection: both sides tear down; checks nothing is left,
    /// then starts a fresh connection.
    fn reconnect(&mut self) {
        self.agent.handle_disconnect(self.now);
        self.server.handle_disconnect(self.now);
        self.events();
        self.teardown_check();
        self.agent = AgentTunnel::new(self.config.clone());
        self.server = ServerTunnel::new(self.config.clone());
        self.a = Book::default();
        self.s = Book::default();
        self.to_agent = Link::new(self.now);
        self.to_server = Link::new(self.now);
        self.granted.clear();
        self.sent.clear();
        self.server_opens = 0;
    }

    fn teardown_check(&mut self) {
        for (book, ids, protocol, session) in [
            (
                &self.a,
                self.agent.channel_ids(),
                self.agent.protocol_channels(),
                self.agent.session().is_some(),
            ),
            (
                &self.s,
                self.server.channel_ids(),
                self.server.protocol_channels(),
                self.server.session().is_some(),
            ),
        ] {
            assert!(book.live.is_empty(), "orphaned channels {:?}", book.live);
            assert_eq!(
                book.announced.iter().collect::<Vec<_>>(),
                book.closed.keys().collect::<Vec<_>>(),
                "every announced channel ends exactly once"
            );
            assert!(ids.is_empty() && protocol == 0 && !session);
            assert!(book.sessions_opened <= book.sessions_closed);
            assert!(!book.in_session);
        }
        // Every session the agent accepted ended; on the server, sessions
        // that never opened (refused, open timed out) end too.
        assert_eq!(self.a.sessions_opened, self.a.sessions_closed);
        assert_eq!(self.agent.mode(), Mode::Heartbeat);
        // Each open_session ends with exactly one SessionClosed.
        assert_eq!(self.server_opens, self.s.sessions_closed);
        assert!(self.agent.poll_transmit(self.now).is_none());
        assert!(self.server.poll_timeout().is_none());
    }
}

/// Machine-side invariants of one side, against its book.
fn check_side<R: Role>(t: &Tunnel<R>, book: &Book) {
    let ids: BTreeSet<u32> = t.channel_ids().into_iter().collect();
    assert_eq!(ids, book.live, "{:?}: machine channels vs events", t.side());
    for id in ids {
        let info = t.channel(id).expect("listed channel");
        assert!(
            info.readable as u64 + info.recv_credit <= u64::from(info.recv_window),
            "{id}: buffered {} + credit {} > window {}",
            info.readable,
            info.recv_credit,
            info.recv_window
        );
    }
    assert!(t.protocol_channels() <= t.config().max_channels);
}

fn open_channel<R: Role>(t: &mut Tunnel<R>, book: &mut Book, now: Instant, kind: ChannelKind) {
    match t.open_channel(now, kind, serde_json::json!({"k": "v"})) {
        Ok(id) => book.announce(id),
        Err(
            Error::NoSession
            | Error::SessionNotReady { .. }
            | Error::TooManyChannels { .. }
            | Error::UnsupportedKind {
                kind: ChannelKind::Unknown,
            }
            | Error::Disconnected,
        ) => {}
        Err(e) => panic!("open_channel: {e}"),
    }
}

fn answer<R: Role>(t: &mut Tunnel<R>, book: &mut Book, pick: u8, accept: bool) {
    if book.requested.is_empty() {
        return;
    }
    let id = book.requested.remove(pick as usize % book.requested.len());
    let res = if accept {
        t.accept_channel(id)
    } else {
        t.reject_channel(id, ChannelErrorCode::Refused, "no")
    };
    // Already answered by the driver: the machine says so.
    assert!(
        matches!(res, Ok(()) | Err(Error::NotPending { .. })),
        "{res:?}"
    );
}

fn write<R: Role>(t: &mut Tunnel<R>, book: &mut Book, from_agent: bool, pick: u8, len: u32) {
    let Some(id) = book.pick_open(pick) else {
        return;
    };
    let offset = book.written.get(&id).copied().unwrap_or(0);
    let data: Vec<u8> = (0..u64::from(len))
        .map(|i| pattern(id, from_agent, offset + i))
        .collect();
    match t.write(id, &data) {
        Ok(n) => {
            assert!(n <= data.len());
            *book.written.entry(id).or_default() += n as u64;
        }
        Err(Error::ChannelClosing { .. }) => {}
        Err(Error::WriteAfterEof { .. }) => assert!(book.eof_out.contains(&id)),
        Err(e) => panic!("write: {e}"),
    }
}

fn read<R: Role>(
    t: &mut Tunnel<R>,
    book: &mut Book,
    writer_is_agent: bool,
    pick: u8,
    max: u32,
    honest: bool,
) {
    let Some(id) = book.pick_open(pick) else {
        return;
    };
    let mut left = max as usize;
    while left > 0 {
        match t.read_chunk(id, left) {
            Ok(Some(chunk)) => {
                let offset = book.read.entry(id).or_default();
                if honest {
                    for (i, b) in chunk.iter().enumerate() {
                        assert_eq!(
                            *b,
                            pattern(id, writer_is_agent, *offset + i as u64),
                            "channel {id}: wrong byte at offset {}",
                            *offset + i as u64
                        );
                    }
                }
                *offset += chunk.len() as u64;
                left -= chunk.len();
            }
            Ok(None) => return,
            // The channel ended on the last byte read.
            Err(Error::UnknownChannel { .. }) => return,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn eof<R: Role>(t: &mut Tunnel<R>, book: &mut Book, pick: u8) {
    if let Some(id) = book.pick_open(pick) {
        t.send_eof(id).expect("eof on an open channel");
        book.eof_out.insert(id);
    }
}

fn close<R: Role>(t: &mut Tunnel<R>, book: &mut Book, pick: u8, reset: bool) {
    let live: Vec<u32> = book.live.iter().copied().collect();
    if live.is_empty() {
        return;
    }
    let id = live[pick as usize % live.len()];
    let res = if reset {
        t.reset_channel(id, ChannelErrorCode::Refused)
    } else {
        t.close_channel(id)
    };
    res.expect("close a live channel");
    book.app_closed.insert(id);
}

fn op_strategy(chaos: bool) -> BoxedStrategy<Op> {
    let side = any::<bool>();
    let honest = prop_oneof![
        4 => Just(Op::OpenSession),
        1 => side.prop_map(|agent| Op::CloseSession { agent }),
        8 => (side, 0u8..5).prop_map(|(agent, kind)| Op::OpenChannel { agent, kind }),
        10 => (side, any::<u8>(), prop::bool::weighted(0.85))
            .prop_map(|(agent, pick, accept)| Op::Answer { agent, pick, accept }),
        16 => (side, any::<u8>(), prop_oneof![3 => 1u32..64, 1 => 1u32..40_000])
            .prop_map(|(agent, pick, len)| Op::Write { agent, pick, len }),
        12 => (side, any::<u8>(), prop_oneof![1u32..64, 1u32..300_000])
            .prop_map(|(agent, pick, max)| Op::Read { agent, pick, max }),
        4 => Just(Op::ReadAll),
        2 => (side, any::<u8>()).prop_map(|(agent, pick)| Op::Eof { agent, pick }),
        2 => (side, any::<u8>()).prop_map(|(agent, pick)| Op::Close { agent, pick }),
        1 => (side, any::<u8>()).prop_map(|(agent, pick)| Op::Reset { agent, pick }),
        6 => (0u32..50).prop_map(|ms| Op::Advance { ms }),
        1 => prop_oneof![0u32..5_000, Just(25_000)].prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Disconnect),
    ];
    if !chaos {
        return honest.boxed();
    }
    let id = prop_oneof![0u32..8, any::<u32>()];
    let forged =
        prop_oneof![
            (id.clone(), any::<u16>()).prop_map(|(id, len)| Forged::Data {
                id,
                len: len % 32_769
            }),
            (id.clone(), 0u8..5, any::<u32>(), any::<u32>()).prop_map(
                |(id, kind, window, packet)| Forged::Open {
                    id,
                    kind,
                    window,
                    packet
                }
            ),
            (id.clone(), any::<u32>(), any::<u32>())
                .prop_map(|(id, window, packet)| Forged::Accept { id, window, packet }),
            id.clone().prop_map(|id| Forged::Reject { id }),
            (id.clone(), any::<u32>()).prop_map(|(id, bytes)| Forged::Adjust { id, bytes }),
            id.clone().prop_map(|id| Forged::Eof { id }),
            (id, any::<bool>()).prop_map(|(id, reset)| Forged::Close { id, reset }),
            any::<u8>().prop_map(|n| Forged::TunnelOpen { n }),
            any::<u8>().prop_map(|n| Forged::TunnelReady { n }),
            any::<u8>().prop_map(|n| Forged::TunnelClose { n }),
            any::<u8>().prop_map(|n| Forged::TunnelError { n }),
        ];
    prop_oneof![
        8 => honest,
        1 => (side, prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(agent, bytes)| Op::Garbage { agent, bytes }),
        3 => (side, forged).prop_map(|(agent, frame)| Op::Forge { agent, frame }),
    ]
    .boxed()
}

/// Every run starts with a session and a few channels both ways; the
/// random operations go on from there.
fn prologue() -> Vec<Op> {
    vec![
        Op::OpenSession,
        Op::Advance { ms: 500 },
        Op::OpenChannel {
            agent: false,
            kind: 0,
        },
        Op::OpenChannel {
            agent: true,
            kind: 1,
        },
        Op::OpenChannel {
            agent: false,
            kind: 2,
        },
        Op::Advance { ms: 500 },
    ]
}

fn config_strategy() -> impl Strategy<Value = TunnelConfig> {
    (
        prop_oneof![Just(1u32), 1u32..300, 1_000u32..70_000, Just(256 * 1024)],
        prop_oneof![Just(1u32), 1u32..100, 1_000u32..=32 * 1024],
        1usize..8,
    )
        .prop_map(|(window, packet, max_channels)| {
            let mut c =
                TunnelConfig::default().with_window(ChannelKind::File, window.saturating_mul(3));
            c.initial_window = window;
            c.max_packet = packet;
            c.max_channels = max_channels;
            c.idle_timeout = Duration::from_secs(20);
            c.open_timeout = Duration::from_secs(3);
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    /// Honest machines under random operations: content, flow control and
    /// teardown invariants.
    #[test]
    fn simulated_sessions_keep_every_invariant(
        config in config_strategy(),
        seed in any::<u64>(),
        max_delay_ms in prop_oneof![Just(0u64), 1u64..20, 20u64..200],
        burst in prop_oneof![Just(None), (1usize..4).prop_map(Some)],
        ops in prop::collection::vec(op_strategy(false), 1..200),
    ) {
        let mut sim = Sim::new(config, seed, max_delay_ms);
        sim.burst = burst;
        for op in prologue().into_iter().chain(ops) {
            sim.op(op);
        }
        sim.finish();
        sim.reconnect();
    }

    /// Garbage and forged frames mixed in: nothing panics, the machines stay
    /// consistent with their events, and teardown leaves nothing behind.
    #[test]
    fn garbage_and_forged_frames_never_break_the_machines(
        config in config_strategy(),
        seed in any::<u64>(),
        burst in prop_oneof![Just(None), (1usize..4).prop_map(Some)],
        ops in prop::collection::vec(op_strategy(true), 1..200),
    ) {
        let mut sim = Sim::new(config, seed, 20);
        sim.burst = burst;
        for op in prologue().into_iter().chain(ops) {
            sim.op(op);
        }
        sim.finish();
        sim.reconnect();
    }

    /// A peer that sends past its window (or a packet over max_packet) gets
    /// that channel reset; the session and the other channels carry on.
    #[test]
    fn window_violation_resets_only_that_channel(
        window in 1u32..5_000,
        max_packet in 16u32..4_096,
        channels in 2usize..6,
        target in any::<prop::sample::Index>(),
        preload in 0u32..5_000,
        extra in 1u32..4_096,
        oversize in any::<bool>(),
    ) {
        let mut config = TunnelConfig::default();
        config.initial_window = window;
        config.max_packet = max_packet;
        let mut sim = Sim::new(config, 7, 0);
        sim.op(Op::OpenSession);
        for _ in 0..channels {
            sim.op(Op::OpenChannel { agent: false, kind: 0 });
            sim.op(Op::Answer { agent: true, pick: 0, accept: true });
        }
        let ids: Vec<u32> = sim.a.open.iter().copied().collect();
        prop_assert_eq!(ids.len(), channels);
        // Some honest traffic first, partly read.
        for pick in 0..channels {
            sim.op(Op::Write { agent: false, pick: pick as u8, len: preload });
        }
        sim.op(Op::Read { agent: true, pick: 0, max: preload / 2 });
        let victim = ids[target.index(ids.len())];
        // The misbehaving server speaks for itself from here on.
        sim.honest = false;
        let expected = if oversize {
            sim.inject(true, Frame::Data {
                channel_id: victim,
                payload: Bytes::from(vec![0u8; (max_packet + extra) as usize]),
            });
            ChannelErrorCode::PacketTooLarge
        } else {
            loop {
                let credit = sim.agent.channel(victim).expect("victim open").recv_credit;
                let len = if credit >= u64::from(max_packet) {
                    max_packet
                } else {
                    (credit as u32 + extra).min(max_packet)
                };
                sim.inject(true, Frame::Data {
                    channel_id: victim,
                    payload: Bytes::from(vec![0u8; len as usize]),
                });
                if sim.agent.channel(victim).is_none() {
                    break;
                }
            }
            ChannelErrorCode::WindowExceeded
        };
        sim.pump();
        prop_assert_eq!(
            sim.a.closed.get(&victim),
            Some(&ChannelEnd::Reset { origin: Origin::Local, code: expected })
        );
        prop_assert_eq!(
            sim.s.closed.get(&victim),
            Some(&ChannelEnd::Reset { origin: Origin::Peer, code: expected })
        );
        prop_assert_eq!(sim.a.closed.len(), 1);
        prop_assert_eq!(sim.s.closed.len(), 1);
        prop_assert!(sim.a.in_session && sim.s.in_session);
        prop_assert_eq!(sim.agent.protocol_channels(), channels - 1);
        prop_assert_eq!(sim.server.protocol_channels(), channels - 1);
        // The other channels still deliver every byte, in order.
        sim.honest = true;
        for pick in 0..channels - 1 {
            sim.op(Op::Write { agent: false, pick: pick as u8, len: 3 * window });
            sim.op(Op::Write { agent: true, pick: pick as u8, len: window });
        }
        sim.finish();
        for id in ids.iter().filter(|id| **id != victim) {
            prop_assert_eq!(
                sim.a.read.get(id).copied().unwrap_or(0),
                sim.s.written.get(id).copied().unwrap_or(0)
            );
            prop_assert!(sim.s.written[id] > 0);
        }
        sim.reconnect();
    }
}

#[test]
fn eight_channels_move_256_kib_each_way_with_small_windows() {
    let mut config = TunnelConfig::default();
    config.initial_window = 4096;
    config.max_packet = 1024;
    let mut sim = Sim::new(config, 1, 5);
    sim.op(Op::OpenSession);
    sim.op(Op::Advance { ms: 20 });
    for i in 0..8 {
        sim.op(Op::OpenChannel {
            agent: i % 2 == 0,
            kind: 1,
        });
        sim.op(Op::Advance { ms: 20 });
        sim.op(Op::Answer {
            agent: i % 2 != 0,
            pick: 0,
            accept: true,
        });
        sim.op(Op::Advance { ms: 20 });
    }
    assert_eq!(sim.a.open.len(), 8);
    let total = 256 * 1024;
    for _ in 0..10_000 {
        let mut pending = false;
        for pick in 0..8u8 {
            for agent in [true, false] {
                let book = if agent { &sim.a } else { &sim.s };
                let id = book.pick_open(pick).expect("open");
                let done = book.written.get(&id).copied().unwrap_or(0);
                if done < total {
                    pending = true;
                    let len = (total - done).min(10_000) as u32;
                    sim.op(Op::Write { agent, pick, len });
                }
            }
        }
        sim.op(Op::ReadAll);
        sim.op(Op::Advance { ms: 5 });
        if !pending {
            break;
        }
    }
    sim.finish();
    for book in [&sim.a, &sim.s] {
        for id in &book.open {
            assert_eq!(book.read[id], total, "channel {id}");
        }
    }
    sim.reconnect();
}
