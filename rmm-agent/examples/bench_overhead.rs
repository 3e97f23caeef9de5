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
    Ok(())
}
