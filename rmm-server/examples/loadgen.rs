//! Load generator: starts a real `rmm-server` process on loopback, enrolls
//! and connects N simulated agents over real WebSockets, and measures
//!
//! 1. server RSS with N idle agents (bytes per agent),
//! 2. heartbeats ingested per second (every agent sends a bounded burst),
//! 3. `GET /api/agents` latency (p50/p99) with N agents,
//! 4. command round trip (POST -> agent -> result visible) p50/p99.
//!
//! ```sh
//! cargo build --release -p rmm-server --bins --examples
//! target/release/examples/loadgen --agents 10000
//! target/release/examples/loadgen --agents 1000 --only roundtrip
//! ```
//!
//! Every loop is bounded in count and time; all traffic stays on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rmm_core::protocol::{
    Codec, CommandOutcome, CommandOutput, CommandResult, Frame, Heartbeat, Hello, Message,
    OutputStream, VersionRange,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use uuid::Uuid;

const ADMIN: (&str, &str) = ("load@example.com", "load-password-1");

struct Args {
    agents: usize,
    heartbeats_per_agent: u64,
    list_requests: usize,
    roundtrips: usize,
    only: Option<String>,
    server_bin: std::path::PathBuf,
    database_url: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    let default_bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("rmm-server"))
        .context("cannot locate the target directory")?;
    let mut a = Args {
        agents: 10_000,
        heartbeats_per_agent: 20,
        list_requests: 200,
        roundtrips: 300,
        only: None,
        server_bin: default_bin,
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("missing value");
        match flag.as_str() {
            "--agents" => a.agents = val()?.parse()?,
            "--heartbeats-per-agent" => a.heartbeats_per_agent = val()?.parse()?,
            "--list-requests" => a.list_requests = val()?.parse()?,
            "--roundtrips" => a.roundtrips = val()?.parse()?,
            "--only" => a.only = Some(val()?),
            "--server-bin" => a.server_bin = val()?.into(),
            "--database-url" => a.database_url = Some(val()?),
            "--help" | "-h" => {
                println!(
                    "loadgen [--agents N] [--heartbeats-per-agent K] [--list-requests N] \
                     [--roundtrips N] [--only rss|heartbeats|list|roundtrip] [--server-bin PATH] \
                     [--database-url URL]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if a.agents == 0 || a.agents > 15_000 {
        bail!("--agents must be 1..=15000 (file descriptors and ephemeral ports)");
    }
    Ok(a)
}

struct ServerProc {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ServerProc {
    fn start(bin: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<ServerProc> {
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--heartbeat-secs", "30"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RMM_ADMIN_EMAIL", ADMIN.0)
            .env("RMM_ADMIN_PASSWORD", ADMIN.1)
            .env("RMM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} (build it with --bins)", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("rmm-server listening on http://")
            .with_context(|| format!("unexpected line {line:?}"))?
            .parse()?;
        Ok(ServerProc {
            child,
            addr,
            _dir: dir,
        })
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the simulated agents are told to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Idle,
    Heartbeats(u64),
    Stop,
}

async fn agent_task(
    addr: SocketAddr,
    id: Uuid,
    secret: String,
    mut mode: watch::Receiver<Mode>,
    ready: Arc<AtomicU64>,
    done_hb: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut req = format!("ws://{addr}/api/v1/agent/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Agent {id}:{secret}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let codec = Codec::default();
    let send = |m: Message| -> WsMessage {
        WsMessage::Binary(
            codec
                .encode_to_vec(&Frame::Control(m))
                .unwrap_or_default()
                .into(),
        )
    };
    ws.send(send(Message::Hello(Hello {
        protocol: VersionRange::current(),
        agent_id: id,
        agent_version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        hostname: format!("load-{}", &id.to_string()[..8]),
        machine_uid: id.to_string(),
        channel: "stable".into(),
    })))
    .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await? {
            Some(Ok(WsMessage::Binary(b))) => {
                if let Ok(Frame::Control(Message::Welcome(_))) = codec.decode_message(&b) {
                    break;
                }
            }
            Some(Ok(_)) => {}
            _ => bail!("closed before welcome"),
        }
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let mut seq = 0u64;
    loop {
        let current = *mode.borrow();
        match current {
            Mode::Stop => return Ok(()),
            Mode::Heartbeats(n) if seq < n => {
                seq += 1;
                ws.send(send(Message::Heartbeat(Heartbeat { seq, running: 0 })))
                    .await?;
                if seq == n {
                    done_hb.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            _ => {}
        }
        tokio::select! {
            _ = mode.changed() => {}
            msg = ws.next() => match msg {
                Some(Ok(WsMessage::Binary(b))) => {
                    if let Ok(Frame::Control(Message::RunCommand(r))) = codec.decode_message(&b) {
                        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
                        ws.feed(send(Message::CommandOutput(CommandOutput {
                            command_id: r.command_id, stream: OutputStream::Stdout, offset: 0, data: "ok\n".into(),
                        }))).await?;
                        ws.send(send(Message::CommandResult(CommandResult {
                            command_id: r.command_id, outcome: CommandOutcome::Completed, exit_code: Some(0),
                            signal: None, error: None, stdout_bytes: 3, stderr_bytes: 0,
                            stdout_truncated: false, stderr_truncated: false,
                            started_at_ms: Some(now), finished_at_ms: now,
                        }))).await?;
                    }
                }
                Some(Ok(_)) => {}
                _ => return Ok(()),
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("metric {name} missing"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let want = |phase: &str| args.only.as_deref().is_none_or(|o| o == phase);
    let server = ServerProc::start(&args.server_bin, args.database_url.as_deref())?;
    let base = format!("http://{}", server.addr);
    // reqwest has no default crypto provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let token: String = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await?
        .json::<Value>()
        .await?["token"]
        .as_str()
        .context("no token")?
        .to_owned();
    println!(
        "server {} (pid {}), {} agents",
        server.addr,
        server.child.id(),
        args.agents
    );

    // enroll N agents through the API (bounded concurrency)
    let t = Instant::now();
    let creds = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(args.agents)));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, base, token, creds, next, n) = (
            http.clone(),
            base.clone(),
            token.clone(),
            creds.clone(),
            next.clone(),
            args.agents as u64,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let b: Value = http
                    .post(format!("{base}/api/v1/enroll-bundle"))
                    .bearer_auth(&token)
                    .json(&json!({"agent_name": format!("load-{i}")}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let tok = b["token"].as_str().context("no token")?;
                let tgz = http
                    .get(format!("{base}/api/v1/enroll-bundle/{tok}.tgz"))
                    .send()
                    .await?
                    .bytes()
                    .await?;
                let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
                let mut config = None;
                for e in ar.entries()? {
                    let mut e = e?;
                    if e.path()?.to_string_lossy() == "config.json" {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut e, &mut s)?;
                        config = Some(serde_json::from_str::<Value>(&s)?);
                    }
                }
                let c = config.context("no config.json")?;
                let id: Uuid = c["agent_id"].as_str().context("id")?.parse()?;
                creds
                    .lock()
                    .await
                    .push((id, c["agent_secret"].as_str().context("secret")?.to_owned()));
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("enrolled {} agents in {:.1?}", args.agents, t.elapsed());

    let rss_before = server.rss_bytes();
    let (mode_tx, mode_rx) = watch::channel(Mode::Idle);
    let ready = Arc::new(AtomicU64::new(0));
    let done_hb = Arc::new(AtomicU64::new(0));
    let creds = std::mem::take(&mut *creds.lock().await);
    let ids: Vec<Uuid> = creds.iter().map(|c| c.0).collect();
    let t = Instant::now();
    let mut agents = Vec::new();
    for (i, (id, secret)) in creds.into_iter().enumerate() {
        agents.push(tokio::spawn(agent_task(
            server.addr,
            id,
            secret,
            mode_rx.clone(),
            ready.clone(),
            done_hb.clone(),
        )));
        if i % 200 == 199 {
            // pace the handshakes a little so the accept queue never overflows
            while ready.load(Ordering::Relaxed) + 400 < i as u64
                && t.elapsed() < Duration::from_secs(120)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    while (ready.load(Ordering::Relaxed) as usize) < args.agents
        && t.elapsed() < Duration::from_secs(180)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = ready.load(Ordering::Relaxed);
    println!("connected {connected} agents in {:.1?}", t.elapsed());
    if (connected as usize) < args.agents {
        bail!("only {connected} of {} agents connected", args.agents);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    if want("rss") {
        let rss = server.rss_bytes();
        println!(
            "RSS: before agents {:.1} MiB, with {} idle agents {:.1} MiB, {:.0} bytes/agent",
            rss_before as f64 / 1048576.0,
            args.agents,
            rss as f64 / 1048576.0,
            (rss.saturating_sub(rss_before)) as f64 / args.agents as f64
        );
    }

    if want("list") {
        let mut lat = Vec::with_capacity(args.list_requests);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut bytes = 0;
        for _ in 0..args.list_requests {
            if Instant::now() > deadline {
                break;
            }
            let t = Instant::now();
            let body = http
                .get(format!("{base}/api/agents"))
                .bearer_auth(&token)
                .send()
                .await?
                .bytes()
                .await?;
            lat.push(t.elapsed());
            bytes = body.len();
        }
        lat.sort();
        println!(
            "GET /api/agents ({} agents, {} KiB): p50 {:.2?} p99 {:.2?} max {:.2?} over {} requests",
            args.agents,
            bytes / 1024,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default(),
            lat.len()
        );
    }

    if want("roundtrip") {
        let mut lat = Vec::with_capacity(args.roundtrips);
        let deadline = Instant::now() + Duration::from_secs(120);
        for i in 0..args.roundtrips {
            if Instant::now() > deadline {
                break;
            }
            let agent = ids[(i * 7919) % ids.len()];
            let t = Instant::now();
            let r: Value = http
                .post(format!("{base}/api/agents/{agent}/command"))
                .bearer_auth(&token)
                .json(&json!({"command_type": "sh", "command": "echo ok"}))
                .send()
                .await?
                .json()
                .await?;
            let id = r["command_id"]
                .as_str()
                .context("no command id")?
                .to_owned();
            let poll_deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let c: Value = http
                    .get(format!("{base}/api/commands/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                if c["status"] != "running" {
                    break;
                }
                if Instant::now() > poll_deadline {
                    bail!("command {id} not finished within 10 s");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "command round trip ({} agents connected): p50 {:.2?} p99 {:.2?} over {} commands",
            args.agents,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
    }

    if want("heartbeats") {
        let before = metric(&http, &base, "rmm_agent_heartbeats_total").await?;
        let total = args.agents as f64 * args.heartbeats_per_agent as f64;
        let t = Instant::now();
        mode_tx.send(Mode::Heartbeats(args.heartbeats_per_agent))?;
        let deadline = Duration::from_secs(120);
        loop {
            let now = metric(&http, &base, "rmm_agent_heartbeats_total").await?;
            if now - before >= total || t.elapsed() > deadline {
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "heartbeats: {:.0} ingested in {:.2} s = {:.0}/s ({} agents x {})",
                    now - before,
                    secs,
                    (now - before) / secs,
                    args.agents,
                    args.heartbeats_per_agent
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "server RSS after the heartbeat burst: {:.1} MiB",
            server.rss_bytes() as f64 / 1048576.0
        );
    }

    mode_tx.send(Mode::Stop)?;
    drop(agents);
    Ok(())
}
