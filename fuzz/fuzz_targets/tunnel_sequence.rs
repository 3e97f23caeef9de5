//! An agent and a server tunnel machine fed an arbitrary sequence of
//! inputs: raw bytes decoded with the codec (whatever decodes is handed to
//! one side), forged but well-formed tunnel frames, application operations
//! with arbitrary arguments, honest deliveries between the two, time
//! advances and disconnects. Nothing may panic, and the machines' cheap
//! invariants must hold after every step.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rmm_core::protocol::{
    ChannelAccept, ChannelClose, ChannelErrorCode, ChannelKind, ChannelOpen, ChannelRef,
    ChannelReject, Codec, Frame, Limits, Message, SessionRef, TunnelClose, TunnelError,
    TunnelErrorCode, TunnelOpen, WindowAdjust,
};
use rmm_core::tunnel::{AgentTunnel, ChannelState, Mode, Role, ServerTunnel, Tunnel, TunnelConfig};

const KINDS: [ChannelKind; 6] = [
    ChannelKind::Terminal,
    ChannelKind::File,
    ChannelKind::PortForward,
    ChannelKind::Registry,
    ChannelKind::Service,
    ChannelKind::Unknown,
];

const CODES: [ChannelErrorCode; 10] = [
    ChannelErrorCode::UnsupportedKind,
    ChannelErrorCode::TooManyChannels,
    ChannelErrorCode::DuplicateId,
    ChannelErrorCode::NoSession,
    ChannelErrorCode::WindowExceeded,
    ChannelErrorCode::PacketTooLarge,
    ChannelErrorCode::Refused,
    ChannelErrorCode::Timeout,
    ChannelErrorCode::Protocol,
    ChannelErrorCode::Other,
];

#[derive(Arbitrary, Debug)]
struct Setup {
    window: u32,
    max_packet: u16,
    max_channels: u8,
    idle_secs: u16,
    open_secs: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Bytes off the wire: decoded as one frame, handed to a side.
    Raw {
        to_agent: bool,
        bytes: Vec<u8>,
    },
    /// A well-formed frame no honest peer would send now.
    Forge {
        to_agent: bool,
        frame: Forged,
    },
    /// Hand up to `n` frames the other side produced to this side.
    Deliver {
        to_agent: bool,
        n: u8,
    },
    OpenSession {
        n: u8,
    },
    CloseSession {
        agent: bool,
    },
    OpenChannel {
        agent: bool,
        kind: u8,
    },
    Accept {
        agent: bool,
        pick: u8,
    },
    Reject {
        agent: bool,
        pick: u8,
        code: u8,
    },
    Write {
        agent: bool,
        pick: u8,
        len: u16,
    },
    Read {
        agent: bool,
        pick: u8,
        max: u16,
    },
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
        code: u8,
    },
    Advance {
        ms: u32,
    },
    Disconnect,
}

#[derive(Arbitrary, Debug)]
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
        code: u8,
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
        reset: Option<u8>,
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

/// One of four session ids. (Built through the codec so this target needs
/// no direct dependency on the uuid crate.)
fn sid(n: u8) -> SessionRef {
    let json = format!(
        r#"{{"type":"tunnel_ready","session_id":"00000000-0000-4000-8000-00000000000{}"}}"#,
        n % 4 + 1
    );
    let mut frame = vec![0x01];
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(json.as_bytes());
    match Codec::default().decode_message(&frame) {
        Ok(Frame::Control(Message::TunnelReady(r))) => r,
        other => panic!("the codec no longer decodes a tunnel_ready: {other:?}"),
    }
}

impl Forged {
    fn frame(&self) -> Frame {
        let c = Frame::Control;
        match *self {
            Forged::Data { id, len } => Frame::Data {
                channel_id: id,
                payload: vec![0xa5; usize::from(len)].into(),
            },
            Forged::Open {
                id,
                kind,
                window,
                packet,
            } => c(Message::ChannelOpen(ChannelOpen {
                channel_id: id,
                kind: KINDS[usize::from(kind) % KINDS.len()],
                initial_window: window,
                max_packet: packet,
                params: Default::default(),
            })),
            Forged::Accept { id, window, packet } => c(Message::ChannelAccept(ChannelAccept {
                channel_id: id,
                initial_window: window,
                max_packet: packet,
            })),
            Forged::Reject { id, code } => c(Message::ChannelReject(ChannelReject {
                channel_id: id,
                code: CODES[usize::from(code) % CODES.len()],
                message: String::new(),
            })),
            Forged::Adjust { id, bytes } => c(Message::WindowAdjust(WindowAdjust {
                channel_id: id,
                bytes,
            })),
            Forged::Eof { id } => c(Message::ChannelEof(ChannelRef { channel_id: id })),
            Forged::Close { id, reset } => c(Message::ChannelClose(ChannelClose {
                channel_id: id,
                reset: reset.map(|r| CODES[usize::from(r) % CODES.len()]),
            })),
            Forged::TunnelOpen { n } => c(Message::TunnelOpen(TunnelOpen {
                session_id: sid(n).session_id,
                technician: "fuzz".into(),
            })),
            Forged::TunnelReady { n } => c(Message::TunnelReady(sid(n))),
            Forged::TunnelClose { n } => c(Message::TunnelClose(TunnelClose {
                session_id: sid(n).session_id,
                reason: String::new(),
            })),
            Forged::TunnelError { n } => c(Message::TunnelError(TunnelError {
                session_id: sid(n).session_id,
                code: TunnelErrorCode::Busy,
                message: String::new(),
            })),
        }
    }
}

struct World {
    now: Instant,
    agent: AgentTunnel,
    server: ServerTunnel,
    /// Frames produced by the server, not yet delivered to the agent.
    to_agent: VecDeque<Frame>,
    /// Frames produced by the agent, not yet delivered to the server.
    to_server: VecDeque<Frame>,
}

/// Picks one of the channels the application knows, optionally in a state.
fn pick<R: Role>(t: &Tunnel<R>, pick: u8, state: Option<ChannelState>) -> Option<u32> {
    let ids: Vec<u32> = t
        .channel_ids()
        .into_iter()
        .filter(|id| state.is_none_or(|s| t.channel(*id).is_some_and(|c| c.state == s)))
        .collect();
    (!ids.is_empty()).then(|| ids[usize::from(pick) % ids.len()])
}

fn check<R: Role>(t: &Tunnel<R>) {
    for id in t.channel_ids() {
        let c = t.channel(id).expect("listed channel has info");
        assert!(c.readable as u64 + c.recv_credit <= u64::from(c.recv_window));
    }
    assert!(t.protocol_channels() <= t.config().max_channels);
    if t.is_disconnected() {
        assert!(t.channel_ids().is_empty() && t.session().is_none());
    }
}

/// One application operation on one side (the same code for both roles).
fn app<R: Role>(t: &mut Tunnel<R>, now: Instant, step: &Step) {
    // Every result is fine as long as nothing panics.
    match *step {
        Step::CloseSession { .. } => {
            let _ = t.close_session("fuzz");
        }
        Step::OpenChannel { kind, .. } => {
            let kind = KINDS[usize::from(kind) % KINDS.len()];
            let _ = t.open_channel(now, kind, Default::default());
        }
        Step::Accept { pick: p, .. } => {
            if let Some(id) = pick(t, p, Some(ChannelState::Requested)) {
                t.accept_channel(id).expect("accept a requested channel");
            }
        }
        Step::Reject { pick: p, code, .. } => {
            if let Some(id) = pick(t, p, Some(ChannelState::Requested)) {
                let code = CODES[usize::from(code) % CODES.len()];
                t.reject_channel(id, code, "fuzz")
                    .expect("reject a requested channel");
            }
        }
        Step::Write { pick: p, len, .. } => {
            if let Some(id) = pick(t, p, Some(ChannelState::Open)) {
                let data = vec![0x3c; usize::from(len)];
                if let Ok(n) = t.write(id, &data) {
                    assert!(n <= data.len());
                }
            }
        }
        Step::Read { pick: p, max, .. } => {
            if let Some(id) = pick(t, p, Some(ChannelState::Open)) {
                let mut buf = vec![0u8; usize::from(max)];
                let _ = t.read(id, &mut buf);
                let _ = t.read_chunk(id, usize::from(max));
            }
        }
        Step::Eof { pick: p, .. } => {
            if let Some(id) = pick(t, p, Some(ChannelState::Open)) {
                t.send_eof(id).expect("eof on an open channel");
            }
        }
        Step::Close { pick: p, .. } => {
            if let Some(id) = pick(t, p, None) {
                t.close_channel(id).expect("close a known channel");
            }
        }
        Step::Reset { pick: p, code, .. } => {
            if let Some(id) = pick(t, p, None) {
                let code = CODES[usize::from(code) % CODES.len()];
                t.reset_channel(id, code).expect("reset a known channel");
            }
        }
        _ => {}
    }
}

impl World {
    fn new(config: &TunnelConfig) -> Self {
        World {
            now: Instant::now(),
            agent: AgentTunnel::new(config.clone()),
            server: ServerTunnel::new(config.clone()),
            to_agent: VecDeque::new(),
            to_server: VecDeque::new(),
        }
    }

    fn outputs(&mut self) {
        // Bounded: a side produces at most its credit in data plus control.
        while let Some(f) = self.server.poll_transmit(self.now) {
            if self.to_agent.len() < 100_000 {
                self.to_agent.push_back(f);
            }
        }
        while let Some(f) = self.agent.poll_transmit(self.now) {
            if self.to_server.len() < 100_000 {
                self.to_server.push_back(f);
            }
        }
        while self.agent.poll_event().is_some() {}
        while self.server.poll_event().is_some() {}
        check(&self.agent);
        check(&self.server);
        if self.agent.session().is_none() {
            assert_eq!(self.agent.mode(), Mode::Heartbeat);
        }
    }

    fn feed(&mut self, to_agent: bool, frame: Frame) {
        let _ = if to_agent {
            self.agent.handle_frame(self.now, frame)
        } else {
            self.server.handle_frame(self.now, frame)
        };
    }

    fn step(&mut self, codec: &Codec, step: Step) {
        match step {
            Step::Raw { to_agent, bytes } => {
                if let Ok(frame) = codec.decode_message(&bytes) {
                    self.feed(to_agent, frame);
                }
            }
            Step::Forge { to_agent, frame } => self.feed(to_agent, frame.frame()),
            Step::Deliver { to_agent, n } => {
                for _ in 0..=n {
                    let queue = if to_agent {
                        &mut self.to_agent
                    } else {
                        &mut self.to_server
                    };
                    let Some(frame) = queue.pop_front() else {
                        break;
                    };
                    self.feed(to_agent, frame);
                }
            }
            Step::OpenSession { n } => {
                let _ = self
                    .server
                    .open_session(self.now, sid(n).session_id, format!("tech{n}"));
            }
            Step::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms % 3_600_000));
                if self.agent.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.agent.handle_timeout(self.now);
                }
                if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.server.handle_timeout(self.now);
                }
            }
            Step::Disconnect => {
                self.agent.handle_disconnect(self.now);
                self.server.handle_disconnect(self.now);
                self.outputs();
                assert!(self.agent.poll_transmit(self.now).is_none());
                assert!(self.server.poll_timeout().is_none());
                // The next connection.
                let config = self.agent.config().clone();
                *self = World::new(&config);
            }
            ref other => {
                let agent = match *other {
                    Step::CloseSession { agent }
                    | Step::OpenChannel { agent, .. }
                    | Step::Accept { agent, .. }
                    | Step::Reject { agent, .. }
                    | Step::Write { agent, .. }
                    | Step::Read { agent, .. }
                    | Step::Eof { agent, .. }
                    | Step::Close { agent, .. }
                    | Step::Reset { agent, .. } => agent,
                    _ => return,
                };
                if agent {
                    app(&mut self.agent, self.now, other);
                } else {
                    app(&mut self.server, self.now, other);
                }
            }
        }
        self.outputs();
    }
}

fuzz_target!(|input: (Setup, Vec<Step>)| {
    let (setup, steps) = input;
    let mut config = TunnelConfig::default();
    config.initial_window = setup.window % (1 << 20);
    config.max_packet = u32::from(setup.max_packet);
    config.max_channels = usize::from(setup.max_channels % 16);
    config.idle_timeout = Duration::from_secs(u64::from(setup.idle_secs));
    config.open_timeout = Duration::from_secs(u64::from(setup.open_secs));
    let codec = Codec::new(Limits {
        max_control: 64 * 1024,
        max_data: 64 * 1024,
    });
    let mut world = World::new(&config);
    for step in steps.into_iter().take(512) {
        world.step(&codec, step);
    }
    world.step(&codec, Step::Disconnect);
});
