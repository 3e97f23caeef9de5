//! The delivery conversation machines, driven with virtual time: the
//! handshake rules, delivery and cancels, acknowledgements and re-sync,
//! liveness, and both machines back to back.

use std::time::{Duration, Instant};

use rmm_core::delivery::{
    AgentDelivery, AgentEnd, AgentEvent, Close, DELIVERY_BATCH, Error, Fetch, MAX_RESYNCS,
    ServerConfig, ServerDelivery, ServerEvent, Transmit, close_code,
};
use rmm_core::protocol::{
    AgentSettings, Codec, CommandContext, CommandRef, CommandResult, CommandType, DecodeError,
    Frame, Heartbeat, Hello, Inventory, Limits, Message, ProtocolError, RunCommand,
    TunnelErrorCode, TunnelOpen, UpdateAvailable, VersionRange, Welcome,
};
use uuid::Uuid;

const AGENT: Uuid = Uuid::from_u128(0xa6e7);

/// The fetch after a (re)connect, and the later ones.
const FIRST: Fetch = Fetch {
    include_inflight: true,
};
const LATER: Fetch = Fetch {
    include_inflight: false,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn hello(agent_id: Uuid) -> Hello {
    Hello {
        protocol: VersionRange::current(),
        agent_id,
        agent_version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        hostname: "host".into(),
        machine_uid: "machine".into(),
        channel: "stable".into(),
    }
}

fn run(n: u128) -> RunCommand {
    RunCommand {
        command_id: Uuid::from_u128(n),
        command_type: CommandType::Sh,
        command: format!("echo {n}"),
        context: CommandContext::System,
        timeout_secs: None,
    }
}

/// A completed command's result, as an agent would send it.
fn result(id: Uuid) -> CommandResult {
    serde_json::from_value(serde_json::json!({
        "command_id": id, "outcome": "completed", "exit_code": 0,
        "stdout_bytes": 0, "stderr_bytes": 0, "finished_at_ms": 0,
    }))
    .unwrap()
}

fn control(msg: Message) -> Frame {
    Frame::Control(msg)
}

/// The JSON error the codec reports for a control body that is not a
/// message.
fn json_error() -> DecodeError {
    let codec = Codec::new(Limits::default());
    codec
        .decode_message(&[1, 0, 0, 0, 2, b'{', b'}'])
        .unwrap_err()
}

fn transmits(m: &mut ServerDelivery) -> Vec<Transmit> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn events(m: &mut ServerDelivery) -> Vec<ServerEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn error_code(t: &Transmit) -> &str {
    match t {
        Transmit::Control(Message::Error(e)) => &e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn assert_closed(m: &ServerDelivery, code: u16, reason: &str) {
    let close = m.close_reason().expect("closed");
    assert_eq!((close.code, close.reason), (code, reason));
}

fn config(heartbeat_secs: u32) -> ServerConfig {
    let mut c = ServerConfig::new(AGENT);
    c.heartbeat_secs = heartbeat_secs;
    c
}

/// A server machine that welcomed the agent at `t0` and answered the first
/// fetch with nothing.
fn welcomed(t0: Instant, heartbeat_secs: u32) -> ServerDelivery {
    let mut m = ServerDelivery::new(config(heartbeat_secs), t0);
    m.handle_frame(t0, control(Message::Hello(hello(AGENT))))
        .unwrap();
    assert_eq!(
        events(&mut m),
        [ServerEvent::Hello {
            hello: hello(AGENT),
            version: 1
        }]
    );
    m.welcome(t0, AgentSettings::default(), None).unwrap();
    assert_eq!(events(&mut m), [ServerEvent::Fetch(FIRST)]);
    assert!(!m.deliver(FIRST, vec![], vec![]).unwrap());
    assert!(matches!(
        transmits(&mut m)[..],
        [Transmit::Control(Message::Welcome(_))]
    ));
    m
}

#[test]
fn a_welcome_is_followed_by_the_first_delivery_then_the_offer() {
    let t0 = Instant::now();
    let mut m = ServerDelivery::new(config(30), t0);
    assert!(!m.is_welcomed());
    m.handle_frame(t0, control(Message::Hello(hello(AGENT))))
        .unwrap();
    assert!(matches!(
        events(&mut m)[..],
        [ServerEvent::Hello { version: 1, .. }]
    ));
    // Deciding: the driver must answer before reading on.
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(
        m.handle_frame(
            t0,
            control(Message::Heartbeat(Heartbeat { seq: 1, running: 0 }))
        ),
        Err(Error::HelloPending)
    );
    assert_eq!(m.handle_keepalive(t0), Err(Error::HelloPending));
    assert_eq!(m.wake(), Err(Error::NotWelcomed));
    let offer = Message::UpdateAvailable(UpdateAvailable {
        version: "0.2.0".into(),
        url: "https://example.invalid/a".into(),
        sha256: "00".repeat(32),
        channel: "stable".into(),
    });
    let settings = AgentSettings {
        max_output_bytes: 1024,
        max_concurrent_commands: 2,
    };
    m.welcome(t0, settings.clone(), Some(offer.clone()))
        .unwrap();
    assert!(m.is_welcomed());
    assert_eq!(
        m.welcome(t0, settings.clone(), None),
        Err(Error::NoHelloPending)
    );
    assert_eq!(events(&mut m), [ServerEvent::Fetch(FIRST)]);
    let cancel = Uuid::from_u128(99);
    assert!(
        !m.deliver(FIRST, vec![run(1), run(2)], vec![cancel])
            .unwrap()
    );
    assert_eq!(
        transmits(&mut m),
        [
            Transmit::Control(Message::Welcome(Welcome {
                protocol: 1,
                agent_id: AGENT,
                heartbeat_interval_secs: 30,
                settings,
            })),
            Transmit::Control(Message::RunCommand(run(1))),
            Transmit::Control(Message::RunCommand(run(2))),
            Transmit::Control(Message::CancelCommand(CommandRef { command_id: cancel })),
            Transmit::Control(offer),
        ]
    );
    assert_eq!(m.unacked(), 2);
    // The offer goes once.
    m.wake().unwrap();
    assert_eq!(m.poll_event(), Some(ServerEvent::Fetch(LATER)));
    m.deliver(LATER, vec![run(3)], vec![]).unwrap();
    assert_eq!(
        transmits(&mut m),
        [Transmit::Control(Message::RunCommand(run(3)))]
    );
}

#[test]
fn a_bad_first_message_is_answered_and_closes() {
    let t0 = Instant::now();
    let close = |code, reason| Some(Close::new(code, reason));
    // Not a hello.
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_frame(
        t0,
        control(Message::Heartbeat(Heartbeat { seq: 0, running: 0 })),
    )
    .unwrap();
    assert_eq!(error_code(&transmits(&mut m)[0]), "bad_message");
    assert_eq!(
        m.close_reason(),
        close(close_code::POLICY, "expected hello")
    );
    assert_eq!(m.poll_timeout(), None);
    // A data frame first.
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_frame(
        t0,
        Frame::Data {
            channel_id: 1,
            payload: bytes::Bytes::new(),
        },
    )
    .unwrap();
    assert_eq!(
        m.close_reason(),
        close(close_code::POLICY, "expected hello")
    );
    // Invalid JSON.
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_undecodable(t0, &json_error()).unwrap();
    let t = transmits(&mut m);
    match &t[..] {
        [Transmit::Control(Message::Error(e))] => {
            assert_eq!(e.code, "bad_message");
            assert!(e.message.starts_with("invalid hello: "), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.close_reason(), close(close_code::POLICY, "invalid hello"));
    assert!(events(&mut m).is_empty());
    // Frame-level errors close without an answer.
    for (e, code) in [
        (DecodeError::UnknownKind(9), close_code::PROTOCOL),
        (
            DecodeError::ControlTooLarge { len: 9, max: 1 },
            close_code::TOO_BIG,
        ),
    ] {
        let mut m = ServerDelivery::new(config(30), t0);
        m.handle_undecodable(t0, &e).unwrap();
        assert!(transmits(&mut m).is_empty());
        assert_eq!(m.close_reason().map(|c| c.code), Some(code));
    }
    // Another agent's hello.
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_frame(t0, control(Message::Hello(hello(Uuid::from_u128(1)))))
        .unwrap();
    assert_eq!(error_code(&transmits(&mut m)[0]), "unauthorized");
    assert_eq!(
        m.close_reason(),
        close(close_code::POLICY, "agent id mismatch")
    );
    // No common protocol version.
    let mut m = ServerDelivery::new(config(30), t0);
    let mut h = hello(AGENT);
    h.protocol = VersionRange { min: 7, max: 9 };
    m.handle_frame(t0, control(Message::Hello(h))).unwrap();
    let t = transmits(&mut m);
    assert_eq!(error_code(&t[0]), "unsupported_protocol");
    assert_eq!(
        m.close_reason(),
        close(close_code::PROTOCOL, "unsupported protocol version")
    );
    // Transport-level input.
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_keepalive(t0).unwrap();
    assert_eq!(m.close_reason(), None);
    m.handle_text(t0).unwrap();
    assert_eq!(
        m.close_reason().map(|c| c.code),
        Some(close_code::UNSUPPORTED)
    );
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_oversized(t0).unwrap();
    assert_eq!(
        m.close_reason(),
        close(close_code::TOO_BIG, "message too big")
    );
    let mut m = ServerDelivery::new(config(30), t0);
    m.handle_peer_closed(t0).unwrap();
    assert_eq!(
        m.close_reason(),
        close(close_code::NORMAL, "closed before hello")
    );
}

#[test]
fn no_hello_within_the_time_limit_closes() {
    let t0 = Instant::now();
    let mut c = config(30);
    c.hello_timeout = ms(500);
    let mut m = ServerDelivery::new(c, t0);
    assert_eq!(m.poll_timeout(), Some(t0 + ms(500)));
    m.handle_timeout(t0 + ms(499));
    assert_eq!(m.close_reason(), None);
    m.handle_timeout(t0 + ms(500));
    assert_closed(&m, close_code::POLICY, "no hello within the time limit");
    assert!(transmits(&mut m).is_empty(), "closed without an answer");
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_hello_the_driver_refuses_is_answered_and_closes() {
    let t0 = Instant::now();
    let mut m = ServerDelivery::new(config(30), t0);
    let close = Close::new(
        close_code::TRY_AGAIN_LATER,
        "machine online as another agent",
    );
    assert_eq!(
        m.refuse("machine_in_use", "later", close),
        Err(Error::NoHelloPending)
    );
    m.handle_frame(t0, control(Message::Hello(hello(AGENT))))
        .unwrap();
    events(&mut m);
    m.refuse("machine_in_use", "later", close).unwrap();
    assert_eq!(error_code(&transmits(&mut m)[0]), "machine_in_use");
    assert_eq!(m.close_reason(), Some(close));
    assert!(!m.is_welcomed());
    // Closed: input and operations are ignored.
    m.handle_frame(
        t0,
        control(Message::Heartbeat(Heartbeat { seq: 0, running: 0 })),
    )
    .unwrap();
    m.wake().unwrap();
    assert!(events(&mut m).is_empty() && transmits(&mut m).is_empty());
}

#[test]
fn an_agent_silent_for_three_intervals_is_dropped() {
    let t0 = Instant::now();
    let mut m = welcomed(t0, 1);
    // Probes every interval from the welcome, each a ping.
    assert_eq!(m.poll_timeout(), Some(t0 + secs(1)));
    m.handle_timeout(t0 + ms(999));
    assert!(transmits(&mut m).is_empty());
    m.handle_timeout(t0 + secs(1));
    assert_eq!(transmits(&mut m), [Transmit::Ping]);
    // A late probe delays the next one by a whole interval.
    assert_eq!(m.poll_timeout(), Some(t0 + secs(2)));
    m.handle_timeout(t0 + ms(2700));
    assert_eq!(transmits(&mut m), [Transmit::Ping]);
    assert_eq!(m.poll_timeout(), Some(t0 + ms(3700)));
    // Anything heard counts: a pong at 1.5 s.
    m.handle_keepalive(t0 + ms(1500)).unwrap();
    assert_eq!(m.last_heard(), t0 + ms(1500));
    m.handle_timeout(t0 + ms(3700));
    assert_eq!(transmits(&mut m), [Transmit::Ping]);
    assert_eq!(m.close_reason(), None);
    // 3 s after the pong: dropped.
    m.handle_timeout(t0 + ms(4700));
    assert_closed(&m, close_code::POLICY, "silent for 3 heartbeat intervals");
    assert!(transmits(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn heartbeats_keep_an_agent_alive() {
    let t0 = Instant::now();
    let mut m = welcomed(t0, 30);
    let mut now = t0;
    for seq in 1..=20 {
        now += secs(30);
        m.handle_frame(
            now,
            control(Message::Heartbeat(Heartbeat { seq, running: 1 })),
        )
        .unwrap();
        assert_eq!(
            events(&mut m),
            [ServerEvent::Heartbeat(Heartbeat { seq, running: 1 })]
        );
        let due = m.poll_timeout().unwrap();
        m.handle_timeout(due);
        assert_eq!(transmits(&mut m), [Transmit::Ping]);
    }
    assert!(m.is_welcomed());
}

#[test]
fn agent_messages_become_events_or_answers() {
    let t0 = Instant::now();
    let mut m = welcomed(t0, 30);
    let id = Uuid::from_u128(5);
    let r = result(id);
    let inv = |plugin: &str| Inventory {
        plugin: plugin.into(),
        result: serde_json::json!({"x": 1}),
        error: None,
        collected_at_ms: 1,
    };
    for msg in [
        Message::CommandResult(r.clone()),
        Message::Inventory(inv("disk_usage")),
        Message::Unknown,
        Message::Error(ProtocolError {
            code: "x".into(),
            message: "y".into(),
        }),
    ] {
        m.handle_frame(t0, control(msg)).unwrap();
    }
    assert_eq!(
        events(&mut m),
        [
            ServerEvent::Result(r),
            ServerEvent::Inventory(inv("disk_usage")),
        ]
    );
    assert!(transmits(&mut m).is_empty());
    // Answered with bad_message, the connection stays.
    for msg in [
        Message::Inventory(inv("bad/name")),
        Message::Inventory(inv("")),
        Message::Hello(hello(AGENT)),
        Message::RunCommand(run(1)),
        Message::CommandAck(CommandRef { command_id: id }),
    ] {
        m.handle_frame(t0, control(msg)).unwrap();
    }
    let answers = transmits(&mut m);
    assert_eq!(answers.len(), 5);
    assert!(answers.iter().all(|t| error_code(t) == "bad_message"));
    match &answers[3] {
        Transmit::Control(Message::Error(e)) => {
            assert_eq!(e.message, "run_command is not a message an agent sends");
        }
        other => panic!("{other:?}"),
    }
    // Undecodable JSON: answered and reported; data frames ignored.
    m.handle_undecodable(t0, &json_error()).unwrap();
    m.handle_frame(
        t0,
        Frame::Data {
            channel_id: 2,
            payload: bytes::Bytes::from_static(b"x"),
        },
    )
    .unwrap();
    assert_eq!(events(&mut m), [ServerEvent::BadMessage]);
    assert_eq!(error_code(&transmits(&mut m)[0]), "bad_message");
    assert!(m.is_welcomed());
    // A frame error closes.
    m.handle_undecodable(t0, &DecodeError::DataTooLarge { len: 9, max: 1 })
        .unwrap();
    assert_eq!(m.close_reason().map(|c| c.code), Some(close_code::TOO_BIG));
}

#[test]
fn cancels_go_once_per_connection_and_again_after_a_reconnect() {
    let t0 = Instant::now();
    let mut m = welcomed(t0, 30);
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let cancel = |id| Transmit::Control(Message::CancelCommand(CommandRef { command_id: id }));
    m.deliver(LATER, vec![], vec![a]).unwrap();
    assert_eq!(transmits(&mut m), [cancel(a)]);
    // Not repeated by later fetches; a new one goes.
    m.deliver(LATER, vec![], vec![a, b]).unwrap();
    assert_eq!(transmits(&mut m), [cancel(b)]);
    // The sweeper's cancel through the queue is recorded too.
    let c = Uuid::from_u128(3);
    m.queue(Message::CancelCommand(CommandRef { command_id: c }))
        .unwrap();
    assert_eq!(transmits(&mut m), [cancel(c)]);
    m.deliver(LATER, vec![], vec![a, b, c]).unwrap();
    assert!(transmits(&mut m).is_empty());
    // Acknowledged: done on this connection, a new request goes again.
    m.acknowledge(a).unwrap();
    assert_eq!(
        transmits(&mut m),
        [Transmit::Control(Message::CommandAck(CommandRef {
            command_id: a
        }))]
    );
    m.deliver(LATER, vec![], vec![a]).unwrap();
    assert_eq!(transmits(&mut m), [cancel(a)]);
    // The fetch after a (re)connect repeats every request.
    m.deliver(FIRST, vec![], vec![a, b]).unwrap();
    assert_eq!(transmits(&mut m), [cancel(a), cancel(b)]);
}

#[test]
fn incomplete_results_are_resynced_at_most_three_times() {
    let t0 = Instant::now();
    let mut m = welcomed(t0, 30);
    m.deliver(LATER, vec![run(1)], vec![]).unwrap();
    transmits(&mut m);
    let id = run(1).command_id;
    assert_eq!(m.unacked(), 1);
    for _ in 0..MAX_RESYNCS {
        m.incomplete(id).unwrap();
        assert_eq!(events(&mut m), [ServerEvent::Resend { command_id: id }]);
        m.resend(run(1)).unwrap();
        assert_eq!(
            transmits(&mut m),
            [Transmit::Control(Message::RunCommand(run(1)))]
        );
    }
    // An acknowledgement starts the count again.
    m.acknowledge(id).unwrap();
    transmits(&mut m);
    assert_eq!(m.unacked(), 0);
    for _ in 0..MAX_RESYNCS {
        m.incomplete(id).unwrap();
        assert_eq!(events(&mut m), [ServerEvent::Resend { command_id: id }]);
    }
    m.incomplete(id).unwrap();
    assert!(events(&mut m).is_empty());
    assert_closed(
        &m,
        close_code::POLICY,
        "output never completed; reconnect and re-send",
    );
}

#[test]
fn a_full_batch_asks_for_more() {
    let t0 = Instant::now();
    let mut m = welcomed(t0, 30);
    let batch: Vec<RunCommand> = (0..DELIVERY_BATCH as u128).map(run).collect();
    assert!(m.deliver(LATER, batch, vec![]).unwrap());
    assert_eq!(transmits(&mut m).len(), DELIVERY_BATCH);
    assert!(!m.deliver(LATER, vec![run(1000)], vec![]).unwrap());
}

#[test]
fn operations_before_the_welcome_are_refused() {
    let t0 = Instant::now();
    let mut m = ServerDelivery::new(config(30), t0);
    assert_eq!(
        m.deliver(FIRST, vec![run(1)], vec![]),
        Err(Error::NotWelcomed)
    );
    assert_eq!(m.acknowledge(AGENT), Err(Error::NotWelcomed));
    assert_eq!(m.incomplete(AGENT), Err(Error::NotWelcomed));
    assert_eq!(m.resend(run(1)), Err(Error::NotWelcomed));
    assert_eq!(
        m.queue(Message::CancelCommand(CommandRef { command_id: AGENT })),
        Err(Error::NotWelcomed)
    );
    assert!(transmits(&mut m).is_empty());
    // The driver's close: first one wins, pending events dropped.
    let mut m = welcomed(t0, 30);
    m.wake().unwrap();
    m.close(Close::new(close_code::GOING_AWAY, "server shutting down"));
    m.close(Close::new(close_code::POLICY, "replaced"));
    assert!(events(&mut m).is_empty());
    assert_eq!(
        m.close_reason().map(|c| c.code),
        Some(close_code::GOING_AWAY)
    );
    m.handle_peer_closed(t0).unwrap();
    assert_eq!(
        m.close_reason().map(|c| c.code),
        Some(close_code::GOING_AWAY)
    );
}

// ---------------------------------------------------------------------
// The agent's side
// ---------------------------------------------------------------------

fn agent_events(m: &mut AgentDelivery) -> Vec<AgentEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn agent_transmits(m: &mut AgentDelivery) -> Vec<Message> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn welcome(heartbeat_interval_secs: u32) -> Welcome {
    Welcome {
        protocol: 1,
        agent_id: AGENT,
        heartbeat_interval_secs,
        settings: AgentSettings::default(),
    }
}

#[test]
fn the_agent_says_hello_and_gives_up_without_a_welcome() {
    let t0 = Instant::now();
    let mut m = AgentDelivery::new(t0, hello(AGENT), secs(30));
    assert_eq!(agent_transmits(&mut m), [Message::Hello(hello(AGENT))]);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(30)));
    // Anything but welcome or error is ignored, undecodable JSON too.
    m.handle_frame(t0, control(Message::RunCommand(run(1))));
    m.handle_undecodable(t0, &json_error());
    assert!(agent_events(&mut m).is_empty() && agent_transmits(&mut m).is_empty());
    assert_eq!(m.heartbeat(0), Err(Error::NotWelcomed));
    m.handle_timeout(t0 + secs(29));
    assert_eq!(m.end(), None);
    m.handle_timeout(t0 + secs(30));
    assert_eq!(m.end(), Some(&AgentEnd::NoWelcome(secs(30))));
    assert_eq!(m.poll_timeout(), None);
    // Refused.
    let mut m = AgentDelivery::new(t0, hello(AGENT), secs(30));
    let e = ProtocolError {
        code: "machine_mismatch".into(),
        message: "re-enroll".into(),
    };
    m.handle_frame(t0, control(Message::Error(e.clone())));
    assert_eq!(m.end(), Some(&AgentEnd::Refused(e)));
    m.handle_frame(t0, control(Message::Welcome(welcome(30))));
    assert!(!m.is_welcomed());
    // A frame-level error ends it.
    let mut m = AgentDelivery::new(t0, hello(AGENT), secs(30));
    m.handle_undecodable(t0, &DecodeError::UnknownKind(7));
    assert!(matches!(m.end(), Some(AgentEnd::BadFrame(_))));
}

#[test]
fn the_agent_heartbeats_from_the_welcome_on() {
    let t0 = Instant::now();
    let mut m = AgentDelivery::new(t0, hello(AGENT), secs(30));
    agent_transmits(&mut m);
    m.handle_frame(t0 + secs(1), control(Message::Welcome(welcome(10))));
    assert_eq!(agent_events(&mut m), [AgentEvent::Welcomed(welcome(10))]);
    assert!(m.is_welcomed());
    // The first heartbeat at once, then every 10 s; a late one delays the
    // next by a whole interval.
    assert_eq!(m.poll_timeout(), Some(t0 + secs(1)));
    let mut sent = Vec::new();
    for (at, running, on_time) in [(1, 0, true), (11, 2, true), (25, 1, false), (35, 0, true)] {
        if on_time {
            m.handle_timeout(t0 + secs(at) - ms(1));
            assert!(agent_events(&mut m).is_empty(), "not due before {at}");
        }
        m.handle_timeout(t0 + secs(at));
        assert_eq!(agent_events(&mut m), [AgentEvent::HeartbeatDue]);
        m.heartbeat(running).unwrap();
        sent.extend(agent_transmits(&mut m));
        if at == 11 {
            // Late: due at 21, handled at 25.
            assert_eq!(m.poll_timeout(), Some(t0 + secs(21)));
        }
    }
    let seqs: Vec<(u64, u32)> = sent
        .iter()
        .map(|msg| match msg {
            Message::Heartbeat(h) => (h.seq, h.running),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, [(1, 0), (2, 2), (3, 1), (4, 0)]);
}

#[test]
fn the_agent_turns_server_messages_into_events() {
    let t0 = Instant::now();
    let mut m = AgentDelivery::new(t0, hello(AGENT), secs(30));
    m.handle_frame(t0, control(Message::Welcome(welcome(30))));
    agent_events(&mut m);
    agent_transmits(&mut m);
    let id = Uuid::from_u128(4);
    let offer = UpdateAvailable {
        version: "0.2.0".into(),
        url: "u".into(),
        sha256: "s".into(),
        channel: "stable".into(),
    };
    let settings = AgentSettings {
        max_output_bytes: 1,
        max_concurrent_commands: 1,
    };
    let err = ProtocolError {
        code: "bad_message".into(),
        message: "m".into(),
    };
    for msg in [
        Message::RunCommand(run(4)),
        Message::CancelCommand(CommandRef { command_id: id }),
        Message::CommandAck(CommandRef { command_id: id }),
        Message::Welcome(Welcome {
            settings: settings.clone(),
            ..welcome(30)
        }),
        Message::UpdateAvailable(offer.clone()),
        Message::Error(err.clone()),
        Message::Unknown,
        Message::Heartbeat(Heartbeat { seq: 1, running: 0 }),
    ] {
        m.handle_frame(t0, control(msg));
    }
    assert_eq!(
        agent_events(&mut m),
        [
            AgentEvent::Run(run(4)),
            AgentEvent::Cancel { command_id: id },
            AgentEvent::Ack { command_id: id },
            AgentEvent::Settings(settings),
            AgentEvent::UpdateAvailable(offer),
            AgentEvent::ServerError(err),
            AgentEvent::Ignored { kind: "unknown" },
            AgentEvent::Ignored { kind: "heartbeat" },
        ]
    );
    assert!(agent_transmits(&mut m).is_empty());
    // tunnel_open is refused while no tunnel is hosted.
    let session_id = Uuid::from_u128(8);
    m.handle_frame(
        t0,
        control(Message::TunnelOpen(TunnelOpen {
            session_id,
            technician: "alice".into(),
        })),
    );
    match &agent_transmits(&mut m)[..] {
        [Message::TunnelError(e)] => {
            assert_eq!(
                (e.session_id, e.code),
                (session_id, TunnelErrorCode::Protocol)
            );
        }
        other => panic!("{other:?}"),
    }
    // Undecodable JSON is answered; data frames are ignored.
    m.handle_undecodable(t0, &json_error());
    m.handle_frame(
        t0,
        Frame::Data {
            channel_id: 1,
            payload: bytes::Bytes::new(),
        },
    );
    assert!(matches!(
        &agent_events(&mut m)[..],
        [AgentEvent::BadMessage(_)]
    ));
    match &agent_transmits(&mut m)[..] {
        [Message::Error(e)] => assert_eq!(e.code, "bad_message"),
        other => panic!("{other:?}"),
    }
    assert!(m.is_welcomed());
}

// ---------------------------------------------------------------------
// Both sides
// ---------------------------------------------------------------------

/// A server and an agent machine over a perfect link, with a driver that
/// answers every fetch with nothing and every result with an ack.
struct Link {
    server: ServerDelivery,
    agent: AgentDelivery,
    now: Instant,
    /// Whether the agent still sends (and answers pings).
    agent_alive: bool,
    acked: Vec<Uuid>,
}

impl Link {
    fn new(heartbeat_secs: u32) -> Self {
        let now = Instant::now();
        Link {
            server: ServerDelivery::new(config(heartbeat_secs), now),
            agent: AgentDelivery::new(now, hello(AGENT), secs(30)),
            now,
            agent_alive: true,
            acked: Vec::new(),
        }
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(msg) = self.agent.poll_transmit() {
                moved = true;
                if self.agent_alive {
                    self.server.handle_frame(self.now, control(msg)).unwrap();
                }
            }
            while let Some(ev) = self.server.poll_event() {
                moved = true;
                match ev {
                    ServerEvent::Hello { .. } => self
                        .server
                        .welcome(self.now, AgentSettings::default(), None)
                        .unwrap(),
                    ServerEvent::Fetch(f) => {
                        self.server.deliver(f, vec![], vec![]).unwrap();
                    }
                    ServerEvent::Result(r) => self.server.acknowledge(r.command_id).unwrap(),
                    _ => {}
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                match t {
                    Transmit::Control(msg) => self.agent.handle_frame(self.now, control(msg)),
                    Transmit::Ping if self.agent_alive => {
                        self.server.handle_keepalive(self.now).unwrap();
                    }
                    Transmit::Ping => {}
                }
            }
            while let Some(ev) = self.agent.poll_event() {
                moved = true;
                match ev {
                    AgentEvent::HeartbeatDue => self.agent.heartbeat(0).unwrap(),
                    AgentEvent::Ack { command_id } => self.acked.push(command_id),
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances virtual time to `until`, firing both machines' timers.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let next = [self.server.poll_timeout(), self.agent.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.server.handle_timeout(self.now);
                    self.agent.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = until;
    }
}

#[test]
fn back_to_back_a_live_agent_stays_and_a_dead_one_is_dropped() {
    let mut link = Link::new(30);
    let t0 = link.now;
    link.pump();
    assert!(link.server.is_welcomed() && link.agent.is_welcomed());
    // A result is acknowledged.
    let id = Uuid::from_u128(77);
    link.server
        .handle_frame(t0, control(Message::CommandResult(result(id))))
        .unwrap();
    link.pump();
    assert_eq!(link.acked, [id]);
    // An hour of heartbeats.
    link.run_until(t0 + secs(3600));
    assert!(
        link.server.is_welcomed(),
        "{:?}",
        link.server.close_reason()
    );
    // The agent dies: dropped once three intervals passed without a word.
    link.agent_alive = false;
    let died = link.now;
    link.run_until(died + secs(89));
    assert!(link.server.is_welcomed());
    link.run_until(died + secs(120));
    let close = link.server.close_reason().expect("dropped");
    assert_eq!(close.code, close_code::POLICY);
    let heard = link.server.last_heard();
    assert!(heard <= died && died - heard < secs(30));
}
