//! Agent benchmarks against the real rmm-server on 127.0.0.1: binary size,
//! idle RSS, and the overhead of running `true` from the API's POST to the
//! stored result.
//!
//! ```sh
//! cargo run --release -p rmm-agent --example bench_overhead [-- RUNS]
//! ```
//!
//! It builds `rmm-agent` and `rmm-server` in the same profile, starts the
//! server on SQLite in a temp dir, enrolls an agent through the real
//! enrollment payload, and prints the figures. It then measures the
//! agent's own share: a second agent connected to a minimal protocol peer
//! (TCP_NODELAY, no store) times `run_command` -> `command_result`.
#![allow(clippy::unwrap_used)]

#[path = "../tests/it/server.rs"]
mod server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmm_client::{Client, CommandRequest};

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let agent_bin = server::cargo_build(&profile_dir, "rmm-agent").map_err(anyhow::Error::msg)?;
    let server_bin = server::server_bin(&agent_bin).map_err(anyhow::Error::msg)?;
    let size = std::fs::metadata(&agent_bin)?.len();
    println!(
        "profile: {}",
        profile_dir.file_name().unwrap().to_string_lossy()
    );
    println!(
        "binary size: {:.2} MiB ({size} bytes) {}",
        size as f64 / 1048576.0,
        agent_bin.display()
    );

    let tmp = tempfile::tempdir()?;
    let srv = server::Server::start(&server_bin, &tmp.path().join("server"), "127.0.0.1:0", &[]);
    let client = Client::new(&srv.url)?;
    client
        .login(server::ADMIN_EMAIL, server::ADMIN_PASSWORD)
        .await?;
    let bundle = client.create_enrollment("bench", None).await?;
    let state = tmp.path().join("agent");
    let out = Command::new(&agent_bin)
        .args(["enroll", "--server", &srv.url, "--state-dir"])
        .arg(&state)
        .env("RMM_ENROLL_TOKEN", &bundle.token)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut agent = Command::new(&agent_bin)
        .args(["run", "--state-dir"])
        .arg(&state)
        .env("RMM_AGENT_INITIAL_DELAY_MS", "0")
        .env("RMM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let t0 = Instant::now();
    loop {
        let agents = client.agents().await?;
        if agents
            .iter()
            .any(|a| a.id == bundle.agent_id && a.is_online())
        {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "agent did not come online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = rss_kib(agent.id());
    println!(
        "idle RSS (connected, 3 s after welcome): {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    let mut client_ms = Vec::with_capacity(runs);
    let mut server_ms = Vec::with_capacity(runs);
    let req = CommandRequest::shell("true");
    for i in 0..runs + 5 {
        let t = Instant::now();
        let id = client.submit(bundle.agent_id, &req).await?;
        let info = loop {
            let c = client.command(id).await?;
            if c.is_final() {
                break c;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        let observed = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(info.status == "completed", "{info:?}");
        if i >= 5 {
            client_ms.push(observed);
            if let Some(done) = info.completed_at {
                server_ms
                    .push((done - info.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    for (name, v) in [
        ("client-observed (POST -> final GET)", &mut client_ms),
        (
            "server timestamps (created_at -> completed_at)",
            &mut server_ms,
        ),
    ] {
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            continue;
        }
        println!(
            "`true` overhead, {name}, {} runs: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99)
        );
    }
    let (rss, hwm) = rss_kib(agent.id());
    println!(
        "RSS after the runs: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = agent.kill();
    let _ = agent.wait();
    agent_only(&agent_bin, tmp.path(), runs).await
}

/// The agent's share: run_command -> command_result against a bare peer.
async fn agent_only(
    agent_bin: &std::path::Path,
    dir: &std::path::Path,
    runs: usize,
) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use rmm_core::protocol::{
        AgentSettings, Codec, CommandContext, CommandRef, CommandType, Frame, Limits, Message,
        RunCommand, Welcome,
    };
    use tokio_tungstenite::tungstenite::Message as Ws;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let state = dir.join("agent-only");
    let id = rmm_agent::identity::Identity {
        server_url: url,
        agent_id: uuid::Uuid::new_v4(),
        agent_secret: "bench-secret".into(),
        server_cert_sha256: None,
        agent_name: "bench".into(),
        channel: "stable".into(),
        insecure_http: false,
    };
    rmm_agent::identity::StateDir::open(&state)?.store_identity(&id)?;
    let mut agent = Command::new(agent_bin)
        .args(["run", "--state-dir"])
        .arg(&state)
        .env("RMM_AGENT_INITIAL_DELAY_MS", "0")
        .env("RMM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let (sock, _) = listener.accept().await?;
    sock.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(sock).await?;
    let codec = Codec::new(Limits {
        max_control: 64 << 20,
        ..Limits::default()
    });
    let send = |m: Message| {
        Ws::Binary(
            codec
                .encode_to_vec(&Frame::Control(m))
                .unwrap_or_default()
                .into(),
        )
    };
    let _hello = ws.next().await;
    ws.send(send(Message::Welcome(Welcome {
        protocol: 1,
        agent_id: id.agent_id,
        heartbeat_interval_secs: 30,
        settings: AgentSettings::default(),
    })))
    .await?;
    let mut v = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let cmd = RunCommand {
            command_id: uuid::Uuid::new_v4(),
            command_type: CommandType::Sh,
            command: "true".into(),
            context: CommandContext::System,
            timeout_secs: None,
        };
        let t = Instant::now();
        ws.send(send(Message::RunCommand(cmd.clone()))).await?;
        loop {
            let Some(Ok(Ws::Binary(b))) = ws.next().await else {
                anyhow::bail!("peer closed")
            };
            if let Ok(Frame::Control(Message::CommandResult(r))) = codec.decode_message(&b)
                && r.command_id == cmd.command_id
            {
                break;
            }
        }
        if i >= 5 {
            v.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ws.send(send(Message::CommandAck(CommandRef {
            command_id: cmd.command_id,
        })))
        .await?;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "`true` agent-only (run_command -> command_result, incl. fsyncs), {} runs: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99)
    );
    let _ = agent.kill();
    let _ = agent.wait();
    Ok(())
}
