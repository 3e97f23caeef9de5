//! Wire-protocol tests: a snapshot of every message's encoding (the public
//! contract of docs/PROTOCOL.md), codec round trips under proptest, and the
//! bad-input cases.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rmm_core::protocol::*;
use uuid::Uuid;

const A: Uuid = Uuid::from_u128(0x0a0a0a0a_0000_4000_8000_000000000001);
const C: Uuid = Uuid::from_u128(0x0c0c0c0c_0000_4000_8000_000000000002);
const S: Uuid = Uuid::from_u128(0x05050505_0000_4000_8000_000000000003);

/// One example of every message kind, named by its wire kind.
fn catalogue() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            protocol: VersionRange::current(),
            agent_id: A,
            agent_version: "0.1.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            hostname: "web-01".into(),
            machine_uid: "5f0c2b1e9a".into(),
            channel: "stable".into(),
        }),
        Message::Welcome(Welcome {
            protocol: 1,
            agent_id: A,
            heartbeat_interval_secs: 30,
            settings: AgentSettings::default(),
        }),
        Message::Heartbeat(Heartbeat {
            seq: 42,
            running: 1,
        }),
        Message::RunCommand(RunCommand {
            command_id: C,
            command_type: CommandType::Bash,
            command: "echo hi".into(),
            context: CommandContext::UserSession,
            timeout_secs: Some(60),
        }),
        Message::CancelCommand(CommandRef { command_id: C }),
        Message::CommandStarted(CommandStarted {
            command_id: C,
            started_at_ms: 1_700_000_000_000,
        }),
        Message::CommandOutput(CommandOutput {
            command_id: C,
            stream: OutputStream::Stdout,
            offset: 0,
            data: "hi\n".into(),
        }),
        Message::CommandResult(CommandResult {
            command_id: C,
            outcome: CommandOutcome::Completed,
            exit_code: Some(0),
            signal: None,
            error: None,
            stdout_bytes: 3,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
            started_at_ms: Some(1_700_000_000_000),
            finished_at_ms: 1_700_000_000_010,
        }),
        Message::CommandAck(CommandRef { command_id: C }),
        Message::TunnelOpen(TunnelOpen {
            session_id: S,
            technician: "tech@example.com".into(),
        }),
        Message::TunnelReady(SessionRef { session_id: S }),
        Message::TunnelClose(TunnelClose {
            session_id: S,
            reason: "closed by technician".into(),
        }),
        Message::TunnelError(TunnelError {
            session_id: S,
            code: TunnelErrorCode::Busy,
            message: "another session is active".into(),
        }),
        Message::ChannelOpen(ChannelOpen {
            channel_id: 1,
            kind: ChannelKind::Terminal,
            initial_window: 262_144,
            max_packet: 32_768,
            params: serde_json::json!({"cols": 80, "rows": 24}),
        }),
        Message::ChannelAccept(ChannelAccept {
            channel_id: 1,
            initial_window: 262_144,
            max_packet: 32_768,
        }),
        Message::ChannelReject(ChannelReject {
            channel_id: 2,
            code: ChannelErrorCode::UnsupportedKind,
            message: "registry channels need windows".into(),
        }),
        Message::WindowAdjust(WindowAdjust {
            channel_id: 1,
            bytes: 65_536,
        }),
        Message::ChannelEof(ChannelRef { channel_id: 1 }),
        Message::ChannelClose(ChannelClose {
            channel_id: 1,
            reset: Some(ChannelErrorCode::WindowExceeded),
        }),
        Message::Inventory(Inventory {
            plugin: "disk_usage".into(),
            result: serde_json::json!({"/": 0.42}),
            error: None,
            collected_at_ms: 1_700_000_000_000,
        }),
        Message::UpdateAvailable(UpdateAvailable {
            version: "0.2.0".into(),
            url: "https://rmm.example.com/downloads/rmm-agent-linux-x86_64-0.2.0".into(),
            sha256: "ab".repeat(32),
            channel: "beta".into(),
        }),
        Message::Error(ProtocolError {
            code: "unsupported_protocol".into(),
            message: "server speaks 1..=1".into(),
        }),
    ]
}

fn encode(frame: &Frame) -> Vec<u8> {
    Codec::default().encode_to_vec(frame).unwrap()
}

/// Renders a frame for a snapshot: the header in hex, the body as text.
fn render(bytes: &[u8]) -> String {
    let (head, body) = bytes.split_at(FRAME_HEADER_LEN);
    format!(
        "header: {}\nbody: {}",
        hex(head),
        String::from_utf8_lossy(body)
    )
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_message_kind_is_in_the_catalogue() {
    let kinds: Vec<&str> = catalogue().iter().map(Message::kind).collect();
    // Message is non_exhaustive for other crates only; list the expected kinds.
    let expected = [
        "hello",
        "welcome",
        "heartbeat",
        "run_command",
        "cancel_command",
        "command_started",
        "command_output",
        "command_result",
        "command_ack",
        "tunnel_open",
        "tunnel_ready",
        "tunnel_close",
        "tunnel_error",
        "channel_open",
        "channel_accept",
        "channel_reject",
        "window_adjust",
        "channel_eof",
        "channel_close",
        "inventory",
        "update_available",
        "error",
    ];
    assert_eq!(kinds, expected);
}

#[test]
fn control_encodings_are_pinned() {
    for msg in catalogue() {
        let bytes = encode(&Frame::Control(msg.clone()));
        // The JSON tag must equal the kind name.
        let json: serde_json::Value = serde_json::from_slice(&bytes[FRAME_HEADER_LEN..]).unwrap();
        assert_eq!(json["type"], msg.kind());
        insta::assert_snapshot!(format!("control_{}", msg.kind()), render(&bytes));
        assert_eq!(
            Codec::default().decode_message(&bytes).unwrap(),
            Frame::Control(msg)
        );
    }
}

#[test]
fn data_encoding_is_pinned() {
    let bytes = encode(&Frame::Data {
        channel_id: 7,
        payload: Bytes::from_static(b"\x00\x01hello"),
    });
    insta::assert_snapshot!("data_frame", hex(&bytes));
}

#[test]
fn unknown_message_kind_decodes_to_unknown() {
    let body = br#"{"type":"telemetry_v9","cpu":3,"nested":{"a":[1,2]}}"#;
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(body);
    assert_eq!(
        Codec::default().decode_message(&bytes).unwrap(),
        Frame::Control(Message::Unknown)
    );
}

#[test]
fn unknown_fields_are_ignored_and_optional_fields_default() {
    let body = br#"{"type":"heartbeat","seq":5,"future_field":true}"#;
    let msg: Message = serde_json::from_slice(body).unwrap();
    assert_eq!(msg, Message::Heartbeat(Heartbeat { seq: 5, running: 0 }));
    let body = br#"{"type":"welcome","protocol":1,"agent_id":"0a0a0a0a-0000-4000-8000-000000000001","heartbeat_interval_secs":30}"#;
    let Message::Welcome(w) = serde_json::from_slice(body).unwrap() else {
        panic!("not a welcome");
    };
    assert_eq!(w.settings, AgentSettings::default());
}

/// Builds a control frame around raw body bytes.
fn control(body: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn malformed_input_is_a_typed_error() {
    let codec = Codec::default();
    let check = |bytes: &[u8], want: &str| {
        let err = codec.decode_message(bytes).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(want),
            "{bytes:?}: got {text:?}, want {want:?}"
        );
    };
    check(&[], "truncated");
    check(&[0x01, 0, 0], "truncated");
    check(&[0x09, 0, 0, 0, 0], "unknown frame kind 0x09");
    check(&[0x01, 0, 0, 0, 4, b'{'], "truncated");
    check(
        &[0x02, 0, 0, 0, 2, 0, 0],
        "shorter than its 4-byte channel id",
    );
    check(&[0x02, 0, 0, 0, 4, 0, 0, 0, 1, 9], "unexpected bytes");
    check(
        &[0x01, 0x7f, 0xff, 0xff, 0xff],
        "exceeds the 1048576-byte limit",
    );
    check(&control(b"not json"), "invalid control message");
    check(&control(br#"{"seq":1}"#), "missing field `type`");
    check(&control(br#"{"type":"heartbeat"}"#), "missing field `seq`");
    check(
        &control(br#"{"type":"heartbeat","seq":"one"}"#),
        "invalid type",
    );
    check(
        &control(br#"{"type":"run_command","command_id":"not-a-uuid","command_type":"bash","command":"x"}"#),
        "invalid control message",
    );
    check(
        &control(br#"{"type":"run_command","command_id":"0a0a0a0a-0000-4000-8000-000000000001","command_type":"cmd.exe","command":"x"}"#),
        "unknown variant `cmd.exe`",
    );
    check(&control(&[0xff, 0xfe]), "invalid control message");
}

#[test]
fn configured_limits_are_enforced_both_ways() {
    let codec = Codec::new(Limits {
        max_control: 64,
        max_data: 8,
    });
    let big = Frame::Control(Message::Error(ProtocolError {
        code: "x".into(),
        message: "y".repeat(100),
    }));
    assert!(matches!(
        codec.encode_to_vec(&big),
        Err(EncodeError::ControlTooLarge { max: 64, .. })
    ));
    let default_bytes = encode(&big);
    assert!(matches!(
        codec.decode_message(&default_bytes),
        Err(DecodeError::ControlTooLarge { max: 64, .. })
    ));
    let data = Frame::Data {
        channel_id: 1,
        payload: Bytes::from_static(b"123456789"),
    };
    assert!(matches!(
        codec.encode_to_vec(&data),
        Err(EncodeError::DataTooLarge { len: 9, max: 8 })
    ));
    assert!(matches!(
        codec.decode_message(&encode(&data)),
        Err(DecodeError::DataTooLarge { len: 9, max: 8 })
    ));
    assert_eq!(Limits::default().max_frame(), 5 + 1024 * 1024);
}

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let text = ".{0,40}";
    prop_oneof![
        (any::<u64>(), any::<u32>())
            .prop_map(|(seq, running)| Message::Heartbeat(Heartbeat { seq, running })),
        (
            arb_uuid(),
            prop_oneof![
                Just(CommandType::Shell),
                Just(CommandType::Bash),
                Just(CommandType::Sh),
                Just(CommandType::Powershell),
                Just(CommandType::Python)
            ],
            text,
            any::<bool>(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(command_id, command_type, command, user, timeout_secs)| {
                Message::RunCommand(RunCommand {
                    command_id,
                    command_type,
                    command,
                    context: if user {
                        CommandContext::UserSession
                    } else {
                        CommandContext::System
                    },
                    timeout_secs,
                })
            }),
        (arb_uuid(), any::<bool>(), any::<u64>(), text).prop_map(
            |(command_id, err, offset, data)| {
                Message::CommandOutput(CommandOutput {
                    command_id,
                    stream: if err {
                        OutputStream::Stderr
                    } else {
                        OutputStream::Stdout
                    },
                    offset,
                    data,
                })
            }
        ),
        (
            arb_uuid(),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(text),
            any::<(u64, u64, bool, bool)>(),
            proptest::option::of(any::<u64>()),
            any::<u64>()
        )
            .prop_map(
                |(command_id, exit_code, signal, error, (ob, eb, ot, et), started, finished)| {
                    Message::CommandResult(CommandResult {
                        command_id,
                        outcome: CommandOutcome::Failed,
                        exit_code,
                        signal,
                        error,
                        stdout_bytes: ob,
                        stderr_bytes: eb,
                        stdout_truncated: ot,
                        stderr_truncated: et,
                        started_at_ms: started,
                        finished_at_ms: finished,
                    })
                }
            ),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(channel_id, initial_window, max_packet)| {
                Message::ChannelOpen(ChannelOpen {
                    channel_id,
                    kind: ChannelKind::File,
                    initial_window,
                    max_packet,
                    params: serde_json::json!({"path": "/tmp/x"}),
                })
            }
        ),
        (any::<u32>(), any::<u32>()).prop_map(|(channel_id, bytes)| Message::WindowAdjust(
            WindowAdjust { channel_id, bytes }
        )),
        (arb_uuid(), text).prop_map(|(session_id, technician)| Message::TunnelOpen(TunnelOpen {
            session_id,
            technician
        })),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        arb_message().prop_map(Frame::Control),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..2048)
        )
            .prop_map(|(channel_id, payload)| Frame::Data {
                channel_id,
                payload: payload.into()
            }),
    ]
}

proptest! {
    #[test]
    fn decode_inverts_encode(frame in arb_frame()) {
        let bytes = encode(&frame);
        prop_assert_eq!(Codec::default().decode_message(&bytes).unwrap(), frame.clone());
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(Codec::default().decode(&mut buf).unwrap(), Some(frame));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_stream_of_frames_splits_back_into_the_same_frames(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let codec = Codec::default();
        let mut wire = BytesMut::new();
        for f in &frames {
            codec.encode(f, &mut wire).unwrap();
        }
        // Deliver the stream in two arbitrary pieces.
        let at = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..at]);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        buf.extend_from_slice(&wire[at..]);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        prop_assert_eq!(out, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let codec = Codec::default();
        let _ = codec.decode_message(&bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }
}
