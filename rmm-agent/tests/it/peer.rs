//! The real agent binary against a protocol peer on 127.0.0.1: the
//! protocol details the agent owns (hello, heartbeats, re-delivery, acks,
//! re-sending after reconnect, restart mid-command), checked message by
//! message.

use std::time::{Duration, Instant};

use rmm_core::protocol::{
    AgentSettings, CommandContext, CommandOutcome, CommandRef, CommandType, Message, OutputStream,
    RunCommand,
};
use uuid::Uuid;

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

fn sh(script: &str) -> RunCommand {
    RunCommand {
        command_id: Uuid::new_v4(),
        command_type: CommandType::Sh,
        command: script.into(),
        context: CommandContext::System,
        timeout_secs: None,
    }
}

#[tokio::test]
async fn hello_auth_heartbeats_and_a_command_with_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let peer = Peer::bind().await;
    let id = write_identity(&state, &peer.url);
    let _agent = spawn_agent(&state, &[("RMM_ENROLL_TOKEN", "leak-me-not")]);
    let mut c = peer.accept(AgentSettings::default(), 1, T).await;
    assert_eq!(c.path, "/api/v1/agent/ws");
    assert_eq!(
        c.authorization,
        format!("Agent {}:{}", id.agent_id, id.agent_secret)
    );
    assert_eq!(c.hello.agent_id, id.agent_id);
    assert_eq!(
        c.hello.protocol,
        rmm_core::protocol::VersionRange { min: 1, max: 1 }
    );
    assert_eq!(
        (c.hello.os.as_str(), c.hello.channel.as_str()),
        ("linux", "stable")
    );
    assert_eq!(
        c.hello.machine_uid,
        rmm_agent::machine::machine_uid_from(&state.display().to_string())
    );

    let cmd = sh("echo out; echo err >&2; exit 2");
    c.send(Message::RunCommand(cmd.clone())).await;
    match c.recv(T).await {
        Some(Message::CommandStarted(s)) => assert_eq!(s.command_id, cmd.command_id),
        other => panic!("expected command_started, got {other:?}"),
    }
    let r = c.result(cmd.command_id, T).await;
    assert_eq!((r.outcome, r.exit_code), (CommandOutcome::Failed, Some(2)));
    assert_eq!(c.out(cmd.command_id, OutputStream::Stdout), "out\n");
    assert_eq!(c.out(cmd.command_id, OutputStream::Stderr), "err\n");
    assert_eq!((r.stdout_bytes, r.stderr_bytes), (4, 4));

    let spool = state
        .join("commands")
        .join(format!("{}.stdout", cmd.command_id));
    assert!(spool.exists(), "result must be kept until acknowledged");
    c.send(Message::CommandAck(CommandRef {
        command_id: cmd.command_id,
    }))
    .await;
    let until = Instant::now() + T;
    while spool.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!spool.exists(), "spool not dropped after ack");

    // The agent's own RMM_* settings and secrets are not passed on.
    let env_cmd = sh("env");
    c.send(Message::RunCommand(env_cmd.clone())).await;
    let r = c.result(env_cmd.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Completed);
    let env_out = c.out(env_cmd.command_id, OutputStream::Stdout);
    assert!(env_out.contains("PATH="), "{env_out}");
    assert!(
        !env_out.contains("leak-me-not") && !env_out.contains("RMM_"),
        "{env_out}"
    );

    // Heartbeats at the welcome's interval, seq counting up.
    let t0 = Instant::now();
    while c.heartbeats.len() < 3 && t0.elapsed() < T {
        let _ = c.recv(Duration::from_millis(200)).await;
    }
    assert!(c.heartbeats.len() >= 3);
    assert!(
        c.heartbeats.windows(2).all(|w| w[1] == w[0] + 1),
        "{:?}",
        c.heartbeats
    );
}

#[tokio::test]
async fn redelivered_commands_are_answered_not_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let marker = tmp.path().join("ran");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let _agent = spawn_agent(&state, &[]);
    let mut c = peer.accept(AgentSettings::default(), 30, T).await;

    let cmd = sh(&format!(
        "echo run >> {}; echo hi; sleep 1",
        marker.display()
    ));
    c.send(Message::RunCommand(cmd.clone())).await;
    // Re-delivered while running: ignored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(Message::RunCommand(cmd.clone())).await;
    let r1 = c.result(cmd.command_id, T).await;
    assert_eq!(r1.outcome, CommandOutcome::Completed);
    // Re-delivered after it finished (not acked): output and result again.
    c.output.clear();
    c.send(Message::RunCommand(cmd.clone())).await;
    let r2 = c.result(cmd.command_id, T).await;
    assert_eq!(r2, r1);
    assert_eq!(c.out(cmd.command_id, OutputStream::Stdout), "hi\n");
    // Acked, then re-delivered: the stored result, still not re-run.
    c.send(Message::CommandAck(CommandRef {
        command_id: cmd.command_id,
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(Message::RunCommand(cmd.clone())).await;
    let r3 = c.result(cmd.command_id, T).await;
    assert_eq!(r3, r1);
    assert_eq!(runs(&marker), 1);
}

#[tokio::test]
async fn unacked_results_are_resent_after_reconnect_within_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let peer = Peer::bind().await;
    let addr = peer.url.trim_start_matches("http://").to_owned();
    write_identity(&state, &peer.url);
    let _agent = spawn_agent(&state, &[]);
    let mut c = peer.accept(AgentSettings::default(), 30, T).await;
    let cmd = sh("printf 'line1\\nline2\\n'");
    c.send(Message::RunCommand(cmd.clone())).await;
    let r = c.result(cmd.command_id, T).await;
    // The "server" goes away without acknowledging, then comes back.
    drop(c);
    drop(peer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let peer = Peer::rebind(&addr).await;
    let mut c = peer.accept(AgentSettings::default(), 30, T).await;
    // Backoff cap is 800 ms in the test environment: reconnect well within
    // a few ceilings.
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "reconnect took {:?}",
        t0.elapsed()
    );
    let again = c.result(cmd.command_id, T).await;
    assert_eq!(again, r);
    assert_eq!(
        c.out(cmd.command_id, OutputStream::Stdout),
        "line1\nline2\n"
    );
}

#[tokio::test]
async fn killed_agent_restarts_without_rerunning_and_without_losing_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let marker = tmp.path().join("ran");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let mut agent = spawn_agent(&state, &[]);
    let mut c = peer.accept(AgentSettings::default(), 30, T).await;
    let cmd = sh(&format!(
        "echo run >> {}; echo partial; sleep 30",
        marker.display()
    ));
    c.send(Message::RunCommand(cmd.clone())).await;
    // Wait until its output arrived, then SIGKILL the agent.
    let t0 = Instant::now();
    while c.out(cmd.command_id, OutputStream::Stdout).is_empty() && t0.elapsed() < T {
        let _ = c.recv(Duration::from_millis(200)).await;
    }
    assert_eq!(runs(&marker), 1);
    agent.kill9();
    drop(c);

    let agent = spawn_agent(&state, &[]);
    let mut c = peer.accept(AgentSettings::default(), 30, T).await;
    // The server re-delivers the command it holds no result for.
    c.send(Message::RunCommand(cmd.clone())).await;
    let r = c.result(cmd.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("agent restarted while the command was running")
    );
    assert_eq!(c.out(cmd.command_id, OutputStream::Stdout), "partial\n");
    assert_eq!(r.stdout_bytes, "partial\n".len() as u64);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(&marker), 1, "the command ran a second time");
    assert!(
        agent
            .log_text()
            .contains("agent restarted while the command was running")
    );
}

#[tokio::test]
async fn concurrency_limit_queues_and_cancel_works_queued_and_running() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let marker = tmp.path().join("ran");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let _agent = spawn_agent(&state, &[]);
    let settings = AgentSettings {
        max_output_bytes: 1024,
        max_concurrent_commands: 1,
    };
    let mut c = peer.accept(settings, 30, T).await;
    let long = sh("echo first; sleep 30");
    let queued = sh(&format!("echo run >> {}", marker.display()));
    c.send(Message::RunCommand(long.clone())).await;
    c.send(Message::RunCommand(queued.clone())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The second waits behind the first: cancel it while queued.
    c.send(Message::CancelCommand(CommandRef {
        command_id: queued.command_id,
    }))
    .await;
    let r = c.result(queued.command_id, T).await;
    assert_eq!(
        (r.outcome, r.started_at_ms),
        (CommandOutcome::Cancelled, None)
    );
    assert_eq!(runs(&marker), 0);
    // Cancel the running one.
    c.send(Message::CancelCommand(CommandRef {
        command_id: long.command_id,
    }))
    .await;
    let r = c.result(long.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Cancelled);
    assert_eq!(c.out(long.command_id, OutputStream::Stdout), "first\n");
    // Output cap from the welcome settings.
    let big = sh("head -c 5000 /dev/zero | tr '\\0' x");
    c.send(Message::RunCommand(big.clone())).await;
    let r = c.result(big.command_id, T).await;
    assert_eq!((r.stdout_bytes, r.stdout_truncated), (1024, true));
    assert_eq!(c.out(big.command_id, OutputStream::Stdout).len(), 1024);
    // A cancel for a command never seen makes a later delivery a no-op.
    let late = sh(&format!("echo run >> {}", marker.display()));
    c.send(Message::CancelCommand(CommandRef {
        command_id: late.command_id,
    }))
    .await;
    let r = c.result(late.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Cancelled);
    c.send(Message::RunCommand(late.clone())).await;
    let r = c.result(late.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Cancelled);
    assert_eq!(runs(&marker), 0);
}

#[tokio::test]
async fn malformed_and_unknown_messages_do_not_drop_the_connection() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let _agent = spawn_agent(&state, &[]);
    let mut c = peer.accept(AgentSettings::default(), 30, T).await;
    // A control frame with bad JSON, then an unknown message kind.
    let body = b"{\"type\":\"run_command\",\"command_id\":42}";
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    c.ws.send(WsMessage::Binary(frame.into())).await.unwrap();
    match c.recv(T).await {
        Some(Message::Error(e)) => assert_eq!(e.code, "bad_message"),
        other => panic!("expected an error reply, got {other:?}"),
    }
    let body = b"{\"type\":\"from_the_future\",\"x\":1}";
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    c.ws.send(WsMessage::Binary(frame.into())).await.unwrap();
    // Still serving.
    let cmd = sh("echo alive");
    c.send(Message::RunCommand(cmd.clone())).await;
    assert_eq!(
        c.result(cmd.command_id, T).await.outcome,
        CommandOutcome::Completed
    );
}

#[tokio::test]
async fn stopping_the_agent_kills_running_commands_and_reports_them() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let marker = tmp.path().join("ran");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let agent = spawn_agent(&state, &[]);
    let settings = AgentSettings {
        max_output_bytes: 1 << 20,
        max_concurrent_commands: 1,
    };
    let mut c = peer.accept(settings.clone(), 30, T).await;
    let running = sh("echo up; sleep 300");
    let queued = sh(&format!("echo run >> {}", marker.display()));
    c.send(Message::RunCommand(running.clone())).await;
    c.send(Message::RunCommand(queued.clone())).await;
    let t0 = Instant::now();
    while c.out(running.command_id, OutputStream::Stdout).is_empty() && t0.elapsed() < T {
        let _ = c.recv(Duration::from_millis(200)).await;
    }
    // SIGTERM, as systemd does on stop.
    let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut agent = agent;
    let status = tokio::task::spawn_blocking(move || {
        let s = agent.child.wait().unwrap();
        (s, agent)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    drop(c);

    let _agent = spawn_agent(&state, &[]);
    let mut c = peer.accept(settings, 30, T).await;
    // Unacknowledged: the killed command's result arrives on reconnect.
    let r = c.result(running.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("agent stopped while the command was running")
    );
    // The queued one left no trace: re-delivered, it runs now.
    c.send(Message::RunCommand(queued.clone())).await;
    let r = c.result(queued.command_id, T).await;
    assert_eq!(r.outcome, CommandOutcome::Completed);
    assert_eq!(runs(&marker), 1);
}

#[tokio::test]
async fn queued_commands_start_in_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let order = tmp.path().join("order");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let _agent = spawn_agent(&state, &[]);
    let settings = AgentSettings {
        max_output_bytes: 1 << 20,
        max_concurrent_commands: 1,
    };
    let mut c = peer.accept(settings, 30, T).await;
    let cmds: Vec<RunCommand> = (0..6)
        .map(|i| sh(&format!("echo {i} >> {}", order.display())))
        .collect();
    for cmd in &cmds {
        c.send(Message::RunCommand(cmd.clone())).await;
    }
    for cmd in &cmds {
        assert_eq!(
            c.result(cmd.command_id, T).await.outcome,
            CommandOutcome::Completed
        );
    }
    let got = std::fs::read_to_string(&order).unwrap();
    assert_eq!(got, "0\n1\n2\n3\n4\n5\n");
}
