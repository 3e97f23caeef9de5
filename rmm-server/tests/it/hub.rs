//! The agent hub over real WebSockets with a fake agent speaking the real
//! codec: handshake, delivery, output/result/ack, redelivery, timeouts,
//! cancellation, offline detection, identity dedup.

use std::time::Duration;

use futures_util::SinkExt;
use rmm_core::protocol::{
    CommandOutcome, CommandOutput, CommandRef, CommandResult, CommandStarted, Heartbeat, Message,
    OutputStream, RunCommand, VersionRange,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use uuid::Uuid;

use crate::common::{FakeAgent, TestServer, wait_for};

fn now_ms() -> u64 {
    crate::common::wall_ms()
}

async fn expect_run(agent: &mut FakeAgent) -> RunCommand {
    loop {
        match agent.recv().await {
            Some(Message::RunCommand(r)) => return r,
            Some(Message::CancelCommand(_)) => {}
            other => panic!("expected run_command, got {other:?}"),
        }
    }
}

async fn expect_ack(agent: &mut FakeAgent, id: Uuid) {
    match agent.recv().await {
        Some(Message::CommandAck(CommandRef { command_id })) => assert_eq!(command_id, id),
        other => panic!("expected command_ack, got {other:?}"),
    }
}

fn result(id: Uuid, outcome: CommandOutcome, exit: Option<i32>, out: u64, err: u64) -> Message {
    Message::CommandResult(CommandResult {
        command_id: id,
        outcome,
        exit_code: exit,
        signal: None,
        error: None,
        stdout_bytes: out,
        stderr_bytes: err,
        stdout_truncated: false,
        stderr_truncated: false,
        started_at_ms: Some(now_ms()),
        finished_at_ms: now_ms(),
    })
}

fn output(id: Uuid, stream: OutputStream, offset: u64, data: &str) -> Message {
    Message::CommandOutput(CommandOutput {
        command_id: id,
        stream,
        offset,
        data: data.into(),
    })
}

#[tokio::test]
async fn handshake_and_auth() {
    let srv = TestServer::start().await;
    let (id, secret) = srv.enroll("a").await;
    // refused before the upgrade: no header, wrong secret, unknown agent, a user JWT
    let admin = srv.admin().await;
    for auth in [
        "".to_owned(),
        format!("Agent {id}:wrong-secret"),
        format!("Agent {}:{secret}", Uuid::new_v4()),
        format!("Agent {id}"),
        format!("Bearer {admin}"),
    ] {
        assert_eq!(
            FakeAgent::connect_with(srv.addr(), id, &auth).await.err(),
            Some(401),
            "{auth}"
        );
    }
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    let w = agent.hello("machine-a").await;
    assert_eq!(
        (w.protocol, w.agent_id, w.heartbeat_interval_secs),
        (1, id, 1)
    );
    assert_eq!(w.settings.max_output_bytes, 16 * 1024 * 1024);
    // a bad control message is answered with an error; the connection stays
    agent
        .ws
        .send(WsMessage::Binary(vec![1, 0, 0, 0, 2, b'{', b'}'].into()))
        .await
        .unwrap();
    match agent.recv().await {
        Some(Message::Error(e)) => assert_eq!(e.code, "bad_message"),
        other => panic!("{other:?}"),
    }
    // unknown message kinds are ignored
    let unknown = br#"{"type":"from_the_future","x":1}"#;
    let mut frame = vec![1u8];
    frame.extend_from_slice(&u32::try_from(unknown.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(unknown);
    agent
        .ws
        .send(WsMessage::Binary(frame.into()))
        .await
        .unwrap();
    agent
        .send(&Message::Heartbeat(Heartbeat { seq: 1, running: 0 }))
        .await;
    assert!(
        agent.recv_within(Duration::from_millis(300)).await.is_err(),
        "no answer to heartbeat or unknown kinds"
    );
    // text is a protocol error: close 1003
    agent
        .ws
        .send(WsMessage::Text("hello".into()))
        .await
        .unwrap();
    assert_eq!(agent.close_code().await, Some(1003));
}

#[tokio::test]
async fn hello_rules() {
    let (srv, clock) =
        TestServer::start_driven(|c| c.hello_timeout = Duration::from_millis(500)).await;
    let (id, secret) = srv.enroll("a").await;
    // mismatched agent id
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.id = Uuid::new_v4();
    let hello = agent.hello_msg("m");
    agent.send(&hello).await;
    match agent.recv().await {
        Some(Message::Error(e)) => assert_eq!(e.code, "unauthorized"),
        other => panic!("{other:?}"),
    }
    assert_eq!(agent.close_code().await, Some(1008));
    // no common protocol version
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    let mut hello = agent.hello_msg("m");
    if let Message::Hello(h) = &mut hello {
        h.protocol = VersionRange { min: 7, max: 9 };
    }
    agent.send(&hello).await;
    match agent.recv().await {
        Some(Message::Error(e)) => assert_eq!(e.code, "unsupported_protocol"),
        other => panic!("{other:?}"),
    }
    assert_eq!(agent.close_code().await, Some(1002));
    // silence instead of hello (the deadline counts from the upgrade)
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    let started = std::time::Instant::now();
    clock.advance(Duration::from_millis(500));
    assert_eq!(agent.close_code().await, Some(1008));
    assert!(started.elapsed() < Duration::from_secs(6));
    // the first message must be hello
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent
        .send(&Message::Heartbeat(Heartbeat { seq: 0, running: 0 }))
        .await;
    assert!(matches!(agent.recv().await, Some(Message::Error(_))));
    assert_eq!(agent.close_code().await, Some(1008));
}

#[tokio::test]
async fn command_round_trip_with_output_and_ack() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let (mut agent, _) = srv.agent("a", "m-a").await;
    let id = srv
        .submit(&tech, agent.id, json!({"command_type": "bash", "command": "echo hi; echo err >&2; exit 0", "timeout_secs": 60}))
        .await;
    let run = expect_run(&mut agent).await;
    assert_eq!(
        (run.command_id, run.command.as_str(), run.timeout_secs),
        (id, "echo hi; echo err >&2; exit 0", Some(60))
    );
    assert_eq!(srv.command(&tech, id).await["phase"], "delivered");
    agent
        .send(&Message::CommandStarted(CommandStarted {
            command_id: id,
            started_at_ms: now_ms(),
        }))
        .await;
    let c = srv
        .wait_command(&tech, id, |c| c["phase"] == "executing")
        .await;
    assert!(c["started_at"].is_string());
    assert_eq!(c["status"], "running");
    agent.send(&output(id, OutputStream::Stdout, 0, "hé")).await;
    agent.send(&output(id, OutputStream::Stdout, 0, "hé")).await; // re-sent: harmless
    agent
        .send(&output(id, OutputStream::Stdout, 3, "llo\n"))
        .await;
    agent
        .send(&output(id, OutputStream::Stderr, 0, "err\n"))
        .await;
    agent
        .send(&result(id, CommandOutcome::Completed, Some(0), 7, 4))
        .await;
    expect_ack(&mut agent, id).await;
    let c = srv.command(&tech, id).await;
    assert_eq!(
        (
            c["status"].as_str(),
            c["phase"].as_str(),
            c["exit_code"].as_i64()
        ),
        (Some("completed"), Some("done"), Some(0))
    );
    assert_eq!(
        (c["stdout"].as_str(), c["stderr"].as_str()),
        (Some("héllo\n"), Some("err\n"))
    );
    assert!(c["completed_at"].is_string());
    // a duplicate result is acknowledged and changes nothing
    agent
        .send(&result(id, CommandOutcome::Failed, Some(1), 7, 4))
        .await;
    expect_ack(&mut agent, id).await;
    assert_eq!(srv.command(&tech, id).await["status"], "completed");
    // a failing command
    let id2 = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "sh", "command": "exit 3"}),
        )
        .await;
    assert_eq!(expect_run(&mut agent).await.command_id, id2);
    agent
        .send(&result(id2, CommandOutcome::Failed, Some(3), 0, 0))
        .await;
    expect_ack(&mut agent, id2).await;
    let c = srv.command(&tech, id2).await;
    assert_eq!(
        (c["status"].as_str(), c["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    // results of unknown commands are acknowledged so the agent forgets them
    let ghost = Uuid::new_v4();
    agent
        .send(&result(ghost, CommandOutcome::Completed, Some(0), 0, 0))
        .await;
    expect_ack(&mut agent, ghost).await;
}

#[tokio::test]
async fn incomplete_output_is_not_acked_and_resynced() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let (mut agent, _) = srv.agent("a", "m-a").await;
    let id = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "sh", "command": "seq 3"}),
        )
        .await;
    expect_run(&mut agent).await;
    agent
        .send(&output(id, OutputStream::Stdout, 0, "1\n"))
        .await;
    // claims 6 bytes of stdout, the server holds 2: no ack, run_command re-sent
    agent
        .send(&result(id, CommandOutcome::Completed, Some(0), 6, 0))
        .await;
    let again = expect_run(&mut agent).await;
    assert_eq!(again.command_id, id);
    assert_eq!(srv.command(&tech, id).await["status"], "running");
    // the agent re-sends its stored output and result
    agent
        .send(&output(id, OutputStream::Stdout, 0, "1\n"))
        .await;
    agent
        .send(&output(id, OutputStream::Stdout, 2, "2\n3\n"))
        .await;
    agent
        .send(&result(id, CommandOutcome::Completed, Some(0), 6, 0))
        .await;
    expect_ack(&mut agent, id).await;
    assert_eq!(srv.command(&tech, id).await["stdout"], "1\n2\n3\n");
}

#[tokio::test]
async fn queued_for_offline_agent_and_redelivered_after_reconnect() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let (id, secret) = srv.enroll("a").await;
    // queued while the agent has never connected
    let c1 = srv
        .submit(
            &tech,
            id,
            json!({"command_type": "sh", "command": "echo one"}),
        )
        .await;
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.hello("m").await;
    assert_eq!(expect_run(&mut agent).await.command_id, c1);
    // dropped before the result: sent again after the reconnect
    drop(agent);
    let c2 = srv
        .submit(
            &tech,
            id,
            json!({"command_type": "sh", "command": "echo two"}),
        )
        .await;
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.hello("m").await;
    let mut got = vec![
        expect_run(&mut agent).await.command_id,
        expect_run(&mut agent).await.command_id,
    ];
    got.sort();
    let mut want = vec![c1, c2];
    want.sort();
    assert_eq!(got, want);
    for c in [c1, c2] {
        agent.send(&output(c, OutputStream::Stdout, 0, "x")).await;
        agent
            .send(&result(c, CommandOutcome::Completed, Some(0), 1, 0))
            .await;
        expect_ack(&mut agent, c).await;
    }
    // a finished command is not sent again
    drop(agent);
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.hello("m").await;
    assert!(agent.recv_within(Duration::from_millis(500)).await.is_err());
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let (id, secret) = srv.enroll("a").await;
    let mut first = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    first.hello("m").await;
    let mut second = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    second.hello("m").await;
    assert_eq!(first.close_code().await, Some(1008));
    let c = srv
        .submit(&tech, id, json!({"command_type": "sh", "command": "true"}))
        .await;
    assert_eq!(expect_run(&mut second).await.command_id, c);
    // the old connection's task has ended, its disconnect recorded
    let hub = srv.handle.state().hub.clone();
    wait_for("the old connection's end", || hub.connection_tasks() == 1).await;
    let a = srv
        .call("GET", &format!("/api/agents/{id}"), Some(&tech), None)
        .await
        .1;
    assert_eq!(
        a["status"], "online",
        "the old connection's close must not mark the agent offline"
    );
}

#[tokio::test]
async fn timeouts_and_cancellation() {
    let (srv, clock) = TestServer::start_driven(|c| {
        c.command_grace = Duration::from_millis(300);
        c.cancel_grace = Duration::from_millis(800);
    })
    .await;
    let sweep = srv.handle.state().config.sweep_interval;
    let tech = srv.user("technician").await;
    let (mut agent, _) = srv.agent("a", "m").await;
    // a command the agent never finishes becomes `timeout` after timeout + grace
    let t = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "sh", "command": "sleep 100", "timeout_secs": 1}),
        )
        .await;
    expect_run(&mut agent).await;
    let c = srv
        .wait_command_driven(&tech, t, &clock, sweep, |c| c["status"] != "running")
        .await;
    assert_eq!(
        (c["status"].as_str(), c["phase"].as_str()),
        (Some("timeout"), Some("done"))
    );
    // ... and the agent is told to stop it
    match agent.recv().await {
        Some(Message::CancelCommand(r)) => assert_eq!(r.command_id, t),
        other => panic!("{other:?}"),
    }
    // the agent's late result is acknowledged, the status stays
    agent
        .send(&result(t, CommandOutcome::Timeout, None, 0, 0))
        .await;
    expect_ack(&mut agent, t).await;
    assert_eq!(srv.command(&tech, t).await["status"], "timeout");
    // cancel of a delivered command: cancel_command, then the agent reports
    let c1 = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "sh", "command": "sleep 100"}),
        )
        .await;
    expect_run(&mut agent).await;
    let (status, body) = srv
        .call(
            "POST",
            &format!("/api/commands/{c1}/cancel"),
            Some(&tech),
            None,
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (202, Some("running")));
    match agent.recv().await {
        Some(Message::CancelCommand(r)) => assert_eq!(r.command_id, c1),
        other => panic!("{other:?}"),
    }
    agent
        .send(&result(c1, CommandOutcome::Cancelled, None, 0, 0))
        .await;
    expect_ack(&mut agent, c1).await;
    assert_eq!(srv.command(&tech, c1).await["status"], "cancelled");
    // cancel without an answer: final after the cancel grace period
    let c2 = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "sh", "command": "sleep 100"}),
        )
        .await;
    expect_run(&mut agent).await;
    srv.call(
        "POST",
        &format!("/api/commands/{c2}/cancel"),
        Some(&tech),
        None,
    )
    .await;
    let c = srv
        .wait_command_driven(&tech, c2, &clock, sweep, |c| c["status"] != "running")
        .await;
    assert_eq!(c["status"], "cancelled");
}

#[tokio::test]
async fn offline_after_three_missed_heartbeats() {
    // heartbeat interval 1 s, in driven time
    let (srv, clock) = TestServer::start_driven(|_| {}).await;
    let admin = srv.admin().await;
    let (mut agent, _) = srv.agent("a", "m").await;
    let id = agent.id;
    let state = srv.handle.state().clone();
    // heartbeats keep it online and move last_seen
    let first = srv
        .call("GET", &format!("/api/agents/{id}"), Some(&admin), None)
        .await
        .1["last_seen"]
        .clone();
    for seq in 0..4 {
        clock.advance(Duration::from_millis(400));
        agent
            .send(&Message::Heartbeat(Heartbeat { seq, running: 0 }))
            .await;
        // heard before time moves on
        wait_for("the heartbeat", || {
            state.metrics.heartbeats.get() == seq + 1
        })
        .await;
    }
    clock.advance(Duration::from_millis(400));
    // the coalesced write is the background task's
    let mut a = Value::Null;
    for _ in 0..500 {
        a = srv
            .call("GET", &format!("/api/agents/{id}"), Some(&admin), None)
            .await
            .1;
        if a["last_seen"] != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a["status"], "online");
    assert_ne!(a["last_seen"], first, "coalesced last_seen was written");
    // go silent: stop reading (no pongs) and writing. Time passes while
    // the hub holds the connection; once it let go, only the store's
    // record of the disconnect is awaited.
    let started = clock.instant();
    let settle = std::time::Instant::now() + Duration::from_secs(10);
    let mut offline = false;
    while started.elapsed() < Duration::from_secs(8) && std::time::Instant::now() < settle {
        let a = srv
            .call("GET", &format!("/api/agents/{id}"), Some(&admin), None)
            .await
            .1;
        if a["status"] == "offline" {
            offline = true;
            break;
        }
        if state.hub.is_connected(id) {
            clock.advance(Duration::from_millis(200));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(offline, "agent still online after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "offline too early: {:?}",
        started.elapsed()
    );
    drop(agent);
}

/// The error code of the server's `error` message, then the close code.
async fn refused(agent: &mut FakeAgent) -> (String, Option<u16>) {
    let code = match agent.recv().await {
        Some(Message::Error(e)) => e.code,
        other => panic!("expected an error message, got {other:?}"),
    };
    (code, agent.close_code().await)
}

#[tokio::test]
async fn machine_uid_dedup_replaces_the_old_agent() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let admin = srv.admin().await;
    let (mut old, _) = srv.agent("old-name", "same-machine").await;
    let pending = srv
        .submit(
            &tech,
            old.id,
            json!({"command_type": "sh", "command": "true"}),
        )
        .await;
    expect_run(&mut old).await;
    // re-enrolled: a new identity on the same machine, while the old agent
    // is still online: refused with "try again later", nothing bound
    let (new_id, new_secret) = srv.enroll("new-name").await;
    let mut new = FakeAgent::connect(srv.addr(), new_id, &new_secret)
        .await
        .unwrap();
    new.send(&new.hello_msg("same-machine")).await;
    assert_eq!(
        refused(&mut new).await,
        ("machine_in_use".to_owned(), Some(1013))
    );
    // the old agent stops (the install script restarted the service)
    drop(old);
    let mut attempts = 0;
    let mut new = loop {
        attempts += 1;
        assert!(attempts < 500, "the old agent never went offline");
        let mut a = FakeAgent::connect(srv.addr(), new_id, &new_secret)
            .await
            .unwrap();
        a.send(&a.hello_msg("same-machine")).await;
        match a.recv().await {
            Some(Message::Welcome(_)) => break a,
            Some(Message::Error(e)) if e.code == "machine_in_use" => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    };
    let list = srv.call("GET", "/api/agents", Some(&admin), None).await.1;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [new_id.to_string()]);
    let old_id = srv
        .call("GET", "/api/audit", Some(&admin), None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "agent.replace")
        .map(|a| a["target"].as_str().unwrap().to_owned())
        .expect("agent.replace audited");
    let gone = srv
        .call("GET", &format!("/api/agents/{old_id}"), Some(&admin), None)
        .await
        .1;
    assert_eq!(gone["replaced_by"], new_id.to_string());
    // its unfinished command did not move: it is cancelled, and the new
    // identity receives nothing
    let c = srv.command(&tech, pending).await;
    assert_eq!(
        (c["status"].as_str(), c["agent_id"].as_str()),
        (Some("cancelled"), Some(old_id.as_str()))
    );
    assert!(new.recv_within(Duration::from_millis(300)).await.is_err());
    let audit = srv.call("GET", "/api/audit", Some(&admin), None).await.1;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "agent.hello_refused"
                && a["detail"]["reason"] == "machine_in_use")
    );
    // the old credential no longer authenticates
    let old_id: Uuid = old_id.parse().unwrap();
    assert!(
        FakeAgent::connect_with(srv.addr(), old_id, "Agent x:y")
            .await
            .is_err()
    );
}

/// The takeover: an enrolled agent says `hello` with another agent's
/// machine identity. It is refused and audited; the victim stays, online,
/// with its commands.
#[tokio::test]
async fn a_credential_cannot_claim_another_agents_machine() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let admin = srv.admin().await;
    let (mut victim, _) = srv.agent("victim", "victim-machine").await;
    let (attacker_id, attacker_secret) = srv.enroll("attacker").await;
    let mut attacker = FakeAgent::connect(srv.addr(), attacker_id, &attacker_secret)
        .await
        .unwrap();
    attacker.hello("attacker-machine").await;
    drop(attacker);
    // a queued command for the victim
    let cmd = srv
        .submit(
            &tech,
            victim.id,
            json!({"command_type": "sh", "command": "echo secret"}),
        )
        .await;
    assert_eq!(expect_run(&mut victim).await.command_id, cmd);
    // the attacker's credential claims the victim's machine
    let mut attacker = FakeAgent::connect(srv.addr(), attacker_id, &attacker_secret)
        .await
        .unwrap();
    attacker.send(&attacker.hello_msg("victim-machine")).await;
    assert_eq!(
        refused(&mut attacker).await,
        ("machine_mismatch".to_owned(), Some(1008))
    );
    // the victim is untouched: live, online, still connected, its command
    // still its own
    let v = srv
        .call(
            "GET",
            &format!("/api/agents/{}", victim.id),
            Some(&admin),
            None,
        )
        .await
        .1;
    assert_eq!(v["status"], "online", "{v}");
    assert!(v.get("retired_at").is_none_or(Value::is_null), "{v}");
    assert!(
        victim
            .recv_within(Duration::from_millis(200))
            .await
            .is_err(),
        "victim stays connected"
    );
    let c = srv.command(&tech, cmd).await;
    assert_eq!(c["agent_id"], victim.id.to_string());
    assert_eq!(c["status"], "running");
    // also when the victim is offline
    drop(victim);
    let mut attacker = FakeAgent::connect(srv.addr(), attacker_id, &attacker_secret)
        .await
        .unwrap();
    attacker.send(&attacker.hello_msg("victim-machine")).await;
    assert_eq!(refused(&mut attacker).await.0, "machine_mismatch");
    let audit = srv.call("GET", "/api/audit", Some(&admin), None).await.1;
    let refusals = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["action"] == "agent.hello_refused"
                && a["target"] == attacker_id.to_string()
                && a["detail"]["claimed_machine_uid"] == "victim-machine"
                && a["detail"]["recorded_machine_uid"] == "attacker-machine"
        })
        .count();
    assert_eq!(refusals, 2);
    assert!(
        !audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "agent.replace"),
        "nothing replaced"
    );
    // the attacker's own machine still works
    let mut attacker = FakeAgent::connect(srv.addr(), attacker_id, &attacker_secret)
        .await
        .unwrap();
    attacker.hello("attacker-machine").await;
}

#[tokio::test]
async fn metrics_count_connections_and_results() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let (mut agent, _) = srv.agent("a", "m").await;
    let id = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "sh", "command": "true"}),
        )
        .await;
    expect_run(&mut agent).await;
    agent
        .send(&result(id, CommandOutcome::Completed, Some(0), 0, 0))
        .await;
    expect_ack(&mut agent, id).await;
    let text = srv.call("GET", "/metrics", None, None).await.1;
    let text = text.as_str().unwrap();
    assert!(text.contains("rmm_agents_connected 1"), "{text}");
    assert!(
        text.contains("rmm_commands{status=\"completed\"} 1"),
        "{text}"
    );
    assert!(text.contains("rmm_command_results_total 1"), "{text}");
}

/// Two server replicas over one PostgreSQL schema: a command posted to
/// replica A reaches an agent connected to replica B (NOTIFY), and B's
/// result is visible through A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_postgres() {
    let Some(schema) = crate::common::PgSchema::create().await else {
        return;
    };
    let url = schema.url();
    let (u1, u2) = (url.clone(), url.clone());
    let a = TestServer::start_with(move |c| {
        c.database_url = Some(u1);
        c.sweep_interval = Duration::from_secs(30); // keep the poll fallback out of the way
    })
    .await;
    let b = TestServer::start_with(move |c| {
        c.database_url = Some(u2);
        c.admin = None;
        c.sweep_interval = Duration::from_secs(30);
    })
    .await;
    let token = a.admin().await;
    let (id, secret) = a.enroll("shared").await;
    let mut agent = FakeAgent::connect(b.addr(), id, &secret).await.unwrap();
    agent.hello("m-shared").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // B's LISTEN is up
    let started = std::time::Instant::now();
    let c = a
        .submit(
            &token,
            id,
            json!({"command_type": "sh", "command": "hostname"}),
        )
        .await;
    assert_eq!(expect_run(&mut agent).await.command_id, c);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "delivery across replicas took {:?}",
        started.elapsed()
    );
    agent.send(&output(c, OutputStream::Stdout, 0, "b\n")).await;
    agent
        .send(&result(c, CommandOutcome::Completed, Some(0), 2, 0))
        .await;
    expect_ack(&mut agent, c).await;
    let got = a.command(&token, c).await;
    assert_eq!(
        (got["status"].as_str(), got["stdout"].as_str()),
        (Some("completed"), Some("b\n"))
    );
    // B accepts A's tokens (shared secret) and sees the agent online
    let listed = b.call("GET", "/api/agents", Some(&token), None).await.1;
    assert_eq!(listed[0]["status"], "online");
    drop(schema);
}

/// An agent that stops reading cannot stall the others: its socket fills,
/// its sends time out and it is dropped, while another agent's commands
/// keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_agent_does_not_slow_the_others() {
    let (srv, clock) = TestServer::start_driven(|c| c.send_timeout = Duration::from_secs(8)).await;
    let tech = srv.user("technician").await;
    let (stalled_id, stalled_secret) = srv.enroll("stalled").await;
    let mut stalled = FakeAgent::connect(srv.addr(), stalled_id, &stalled_secret)
        .await
        .unwrap();
    stalled.hello("m-stalled").await;
    let (mut healthy, _) = srv.agent("healthy", "m-healthy").await;
    // ~24 MiB of scripts for an agent that never reads
    let script = "x".repeat(4 * 1024 * 1024);
    let mut queued = Vec::new();
    for _ in 0..6 {
        queued.push(
            srv.submit(
                &tech,
                stalled.id,
                json!({"command_type": "sh", "command": script}),
            )
            .await,
        );
    }
    let started = std::time::Instant::now();
    for i in 0..5 {
        let c = srv
            .submit(
                &tech,
                healthy.id,
                json!({"command_type": "sh", "command": format!("echo {i}")}),
            )
            .await;
        assert_eq!(expect_run(&mut healthy).await.command_id, c);
        healthy
            .send(&result(c, CommandOutcome::Completed, Some(0), 0, 0))
            .await;
        expect_ack(&mut healthy, c).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "healthy agent slowed: {:?}",
        started.elapsed()
    );
    // the stalled agent is dropped once a send times out: time passes
    // while the hub holds the connection, then the store's record of the
    // disconnect is awaited
    let admin = srv.admin().await;
    let hub = srv.handle.state().hub.clone();
    let mut dropped = false;
    for _ in 0..250 {
        let a = srv
            .call(
                "GET",
                &format!("/api/agents/{}", stalled.id),
                Some(&admin),
                None,
            )
            .await
            .1;
        if a["status"] == "offline" {
            dropped = true;
            break;
        }
        if hub.is_connected(stalled.id) {
            clock.advance(Duration::from_secs(1));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(dropped, "stalled agent still connected");
    drop(stalled);
    // nothing was lost: every command arrives after reconnecting
    let mut again = FakeAgent::connect(srv.addr(), stalled_id, &stalled_secret)
        .await
        .unwrap();
    again.hello("m-stalled").await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(expect_run(&mut again).await.command_id);
    }
    got.sort();
    queued.sort();
    assert_eq!(got, queued);
}

#[tokio::test]
async fn agent_route_without_upgrade_is_a_json_error() {
    let srv = TestServer::start().await;
    let (id, secret) = srv.enroll("a").await;
    let resp = srv
        .http
        .get(srv.url("/api/v1/agent/ws"))
        .header("authorization", format!("Agent {id}:{secret}"))
        .send()
        .await
        .unwrap();
    let got = crate::common::decode(resp).await;
    crate::common::assert_error(&got, 400, "websocket_required");
}

#[tokio::test]
async fn inventory_is_stored_per_plugin() {
    let srv = TestServer::start().await;
    let ro = srv.user("readonly").await;
    let (mut agent, _) = srv.agent("inv", "m-inv").await;
    let inv = |plugin: &str, result: serde_json::Value, at: u64| {
        Message::Inventory(rmm_core::protocol::Inventory {
            plugin: plugin.into(),
            result,
            error: None,
            collected_at_ms: at,
        })
    };
    agent
        .send(&inv("disk_usage", json!({"/": 42}), now_ms()))
        .await;
    agent.send(&inv("bad/name", json!(1), now_ms())).await;
    match agent.recv().await {
        Some(Message::Error(e)) => assert_eq!(e.code, "bad_message"),
        other => panic!("{other:?}"),
    }
    let path = format!("/api/agents/{}/inventory", agent.id);
    let mut got = json!([]);
    for _ in 0..200 {
        got = srv.call("GET", &path, Some(&ro), None).await.1;
        if got.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(
        (got[0]["plugin"].as_str(), got[0]["result"]["/"].as_i64()),
        (Some("disk_usage"), Some(42))
    );
    crate::common::assert_error(
        &srv.call(
            "GET",
            &format!("/api/agents/{}/inventory", Uuid::new_v4()),
            Some(&ro),
            None,
        )
        .await,
        404,
        "not_found",
    );
    crate::common::assert_error(
        &srv.call("GET", "/api/agents/x/inventory", Some(&ro), None)
            .await,
        400,
        "invalid_id",
    );
}

#[tokio::test]
async fn older_agents_are_offered_the_newest_build_of_their_channel() {
    let downloads = tempfile::tempdir().unwrap();
    for (version, channel) in [
        ("0.1.0", None),
        ("0.2.0", None),
        ("0.3.0-beta.1", Some("beta")),
    ] {
        let name = format!("rmm-agent-linux-x86_64-{version}");
        std::fs::write(downloads.path().join(&name), version).unwrap();
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(version.as_bytes()))
        };
        std::fs::write(downloads.path().join(format!("{name}.sha256")), digest).unwrap();
        if let Some(c) = channel {
            std::fs::write(downloads.path().join(format!("{name}.channel")), c).unwrap();
        }
    }
    let dl = downloads.path().to_owned();
    let srv = TestServer::start_with(move |c| c.downloads_dir = Some(dl)).await;
    // a stable agent on 0.1.0 is offered 0.2.0
    let (id, secret) = srv.enroll("old").await;
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.hello("m-old").await;
    match agent.recv().await {
        Some(Message::UpdateAvailable(u)) => {
            assert_eq!(
                (u.version.as_str(), u.channel.as_str()),
                ("0.2.0", "stable")
            );
            assert_eq!(
                u.url,
                srv.url("/api/v1/downloads/rmm-agent-linux-x86_64-0.2.0")
            );
            let body = srv
                .http
                .get(&u.url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            use sha2::Digest;
            assert_eq!(hex::encode(sha2::Sha256::digest(&body)), u.sha256);
        }
        other => panic!("expected update_available, got {other:?}"),
    }
    // a beta agent is offered the beta build
    let (id, secret) = srv.enroll("beta").await;
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    let mut hello = agent.hello_msg("m-beta");
    if let Message::Hello(h) = &mut hello {
        h.channel = "beta".into();
        h.agent_version = "0.2.0".into();
    }
    agent.send(&hello).await;
    assert!(matches!(agent.recv().await, Some(Message::Welcome(_))));
    match agent.recv().await {
        Some(Message::UpdateAvailable(u)) => assert_eq!(
            (u.version.as_str(), u.channel.as_str()),
            ("0.3.0-beta.1", "beta")
        ),
        other => panic!("expected update_available, got {other:?}"),
    }
    // an up-to-date stable agent is offered nothing
    let (id, secret) = srv.enroll("current").await;
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    let mut hello = agent.hello_msg("m-current");
    if let Message::Hello(h) = &mut hello {
        h.agent_version = "0.2.0".into();
    }
    agent.send(&hello).await;
    assert!(matches!(agent.recv().await, Some(Message::Welcome(_))));
    assert!(agent.recv_within(Duration::from_millis(500)).await.is_err());
}

/// Messages over the size limits close with 1009 (message too big), both
/// at the WebSocket layer and in the frame codec.
#[tokio::test]
async fn oversized_messages_close_with_1009() {
    use rmm_core::protocol::Limits;
    let srv = TestServer::start().await;
    let limit = Limits::default().max_frame();
    // before hello: a WebSocket message over the limit
    let (id, secret) = srv.enroll("big").await;
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    let _ = agent
        .ws
        .send(WsMessage::Binary(vec![0u8; limit + 1024].into()))
        .await;
    assert_eq!(agent.close_code().await, Some(1009));
    // after hello: a frame announcing a control body over the limit
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.hello("big-machine").await;
    let mut frame = vec![0x01u8]; // a control frame
    frame.extend_from_slice(&u32::try_from(limit).unwrap().to_be_bytes());
    frame.extend_from_slice(b"{}");
    agent
        .ws
        .send(WsMessage::Binary(frame.into()))
        .await
        .unwrap();
    assert_eq!(agent.close_code().await, Some(1009));
    // after hello: a WebSocket message over the limit
    let mut agent = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    agent.hello("big-machine").await;
    let _ = agent
        .ws
        .send(WsMessage::Binary(vec![0u8; limit + 1024].into()))
        .await;
    assert_eq!(agent.close_code().await, Some(1009));
}

/// Agent handshakes are bounded: over the bound an agent gets 503 with
/// `Retry-After` at once instead of waiting in a queue.
#[tokio::test]
async fn handshakes_over_the_bound_get_503_with_retry_after() {
    let srv = TestServer::start_with(|c| {
        c.max_pending_handshakes = 1;
        c.handshake_retry_after_secs = 3;
    })
    .await;
    let (id, secret) = srv.enroll("a").await;
    let (id2, secret2) = srv.enroll("b").await;
    // a holds the only slot: upgraded, no hello yet
    let mut a = FakeAgent::connect(srv.addr(), id, &secret).await.unwrap();
    assert_eq!(
        FakeAgent::connect(srv.addr(), id2, &secret2).await.err(),
        Some(503)
    );
    let resp = srv
        .http
        .get(srv.url("/api/v1/agent/ws"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body = crate::common::decode(resp).await;
    crate::common::assert_error(&body, 503, "overloaded");
    // once a is welcomed, the slot is free again
    a.hello("machine-a").await;
    let mut b = FakeAgent::connect(srv.addr(), id2, &secret2).await.unwrap();
    b.hello("machine-b").await;
    let metrics = srv.call("GET", "/metrics", None, None).await.1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("rmm_agent_handshakes_refused_total 2"),
        "{metrics}"
    );
}
