//! Load generator: starts a real `rmm-server` process on loopback, enrolls
//! and connects N simulated agents over real WebSockets (or WSS pinned to
//! the server's self-signed certificate with `--tls`), and measures
//!
//! 1. server RSS with N idle agents (bytes per agent),
//! 2. heartbeats ingested per second (every agent sends a bounded burst),
//! 3. `GET /api/agents` latency (p50/p99) with N agents,
//! 4. command round trip (POST -> agent -> result visible) p50/p99,
//! 5. only when asked (`--only storm`, default 15,000 agents): a reconnect
//!    storm. The server is killed (SIGKILL) and restarted on the same port
//!    and data directory, every agent reconnects on the real agent's
//!    schedule (`rmm_agent::daemon::Reconnect`, full-jitter backoff,
//!    503 `Retry-After` honoured), and the time from the restart to each
//!    agent's `welcome` is reported.
//!
//! ```sh
//! cargo build --release -p rmm-server --bins --examples
//! target/release/examples/loadgen --agents 10000
//! target/release/examples/loadgen --agents 10000 --tls --only rss
//! target/release/examples/loadgen --agents 1000 --only roundtrip
//! target/release/examples/loadgen --only storm
//! ```
//!
//! Agents use source addresses 127.0.0.2, 127.0.0.3, ... (500 each), so
//! ephemeral ports do not run out; both processes need one file
//! descriptor per agent (checked against `ulimit -n`). Every loop is
//! bounded in count and time; all traffic stays on 127.0.0.0/8.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet;
mod server;
mod storm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::fleet::{Fleet, Mode};
use crate::server::{ADMIN, ServerProc, ServerSpec};

/// Open files each process needs beyond one per agent.
const FD_MARGIN: u64 = 1000;

struct Args {
    agents: usize,
    heartbeats_per_agent: u64,
    list_requests: usize,
    roundtrips: usize,
    only: Option<String>,
    storm_give_up: Duration,
    server: ServerSpec,
    _data_dir: tempfile::TempDir,
}

impl Args {
    /// Whether `phase` runs: every phase but the storm by default, or
    /// the one named by `--only`.
    fn want(&self, phase: &str) -> bool {
        match self.only.as_deref() {
            Some(only) => only == phase,
            None => phase != "storm",
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    let default_bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("rmm-server"))
        .context("cannot locate the target directory")?;
    let data_dir = tempfile::tempdir()?;
    let mut agents = None;
    let mut a = Args {
        agents: 0,
        heartbeats_per_agent: 20,
        list_requests: 200,
        roundtrips: 300,
        only: None,
        storm_give_up: Duration::from_secs(180),
        server: ServerSpec {
            bin: default_bin,
            database_url: None,
            tls: false,
            max_pending_handshakes: None,
            addr: server::free_addr()?,
            data_dir: data_dir.path().to_owned(),
        },
        _data_dir: data_dir,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("missing value");
        match flag.as_str() {
            "--agents" => agents = Some(val()?.parse()?),
            "--heartbeats-per-agent" => a.heartbeats_per_agent = val()?.parse()?,
            "--list-requests" => a.list_requests = val()?.parse()?,
            "--roundtrips" => a.roundtrips = val()?.parse()?,
            "--only" => a.only = Some(val()?),
            "--storm-give-up-secs" => a.storm_give_up = Duration::from_secs(val()?.parse()?),
            "--server-bin" => a.server.bin = val()?.into(),
            "--database-url" => a.server.database_url = Some(val()?),
            "--max-pending-handshakes" => a.server.max_pending_handshakes = Some(val()?.parse()?),
            "--tls" => a.server.tls = true,
            "--help" | "-h" => {
                println!(
                    "loadgen [--agents N] [--tls] [--heartbeats-per-agent K] [--list-requests N] \
                     [--roundtrips N] [--only rss|heartbeats|list|roundtrip|storm] \
                     [--storm-give-up-secs S] [--server-bin PATH] [--database-url URL] \
                     [--max-pending-handshakes N]\n\
                     Default: 10,000 agents, every phase but storm; --only storm: 15,000 agents."
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    let storm = a.only.as_deref() == Some("storm");
    a.agents = agents.unwrap_or(if storm { 15_000 } else { 10_000 });
    if a.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let need = a.agents as u64 + FD_MARGIN;
    if let Some(limit) = open_files_limit()
        && limit < need
    {
        bail!(
            "{} agents need about {need} open files in this process and in the server \
             (one socket per agent each), but `ulimit -n` is {limit}: raise it or use fewer agents",
            a.agents
        );
    }
    Ok(a)
}

/// The soft limit on open files (inherited by the server), if limited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// An HTTP client for the API; with `pin`, HTTPS trusting exactly that
/// certificate.
fn http_client(pin: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder().pool_max_idle_per_host(64);
    let builder = match pin {
        Some(pin) => builder.tls_backend_preconfigured(tls_config(pin, &[b"http/1.1"])?),
        None => builder,
    };
    Ok(builder.build()?)
}

fn tls_config(pin: &str, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let pin = pin
        .parse()
        .map_err(|e| anyhow::anyhow!("bad certificate hash {pin:?}: {e}"))?;
    Ok(rmm_pin::client_config(Some(pin), alpn)?)
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

/// Enrolls `n` agents through the API (32 at a time); their credentials.
async fn enroll(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    let creds = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(n)));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, base, token, creds, next, n) = (
            http.clone(),
            base.to_owned(),
            token.to_owned(),
            creds.clone(),
            next.clone(),
            n as u64,
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
    Ok(std::mem::take(&mut *creds.lock().await))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // reqwest has no default crypto provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let spec = args.server.clone();
    let mut server = tokio::task::spawn_blocking(move || ServerProc::start(&spec)).await??;
    let base = args.server.base_url();
    let http = http_client(server.pin.as_deref())?;
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
        "server {base} (pid {}), {} agents, {}",
        server.pid(),
        args.agents,
        args.server.database_url.as_deref().unwrap_or("SQLite")
    );

    let t = Instant::now();
    let creds = enroll(&http, &base, &token, args.agents).await?;
    println!("enrolled {} agents in {:.1?}", args.agents, t.elapsed());

    // Connect, paced so at most as many handshakes are in progress as the
    // server admits at once (its 503s are counted, not avoided).
    let rss_before = server.rss_bytes();
    let (mode_tx, mode_rx) = watch::channel(Mode::Idle);
    let agent_tls = match &server.pin {
        Some(pin) => Some(tls_config(pin, &[])?),
        None => None,
    };
    let fleet = Fleet::new(args.server.addr, agent_tls, args.agents, mode_rx);
    let window = args.server.max_pending_handshakes.unwrap_or(256) as u64;
    let ids: Vec<Uuid> = creds.iter().map(|c| c.0).collect();
    let t = Instant::now();
    let mut agents = Vec::with_capacity(args.agents);
    for (i, (id, secret)) in creds.into_iter().enumerate() {
        while i as u64 >= fleet.welcomes.load(Ordering::Relaxed) + window
            && t.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        agents.push(tokio::spawn(fleet.clone().run_agent(i, id, secret)));
    }
    while (fleet.connected.load(Ordering::Relaxed) as usize) < args.agents
        && t.elapsed() < Duration::from_secs(180)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = fleet.connected.load(Ordering::Relaxed);
    println!(
        "connected {connected} agents in {:.1?} ({} answered 503, other failed attempts {:?})",
        t.elapsed(),
        fleet.busy.load(Ordering::Relaxed),
        fleet.failures()
    );
    if (connected as usize) < args.agents {
        bail!("only {connected} of {} agents connected", args.agents);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    if args.want("rss") {
        let rss = server.rss_bytes();
        let per_agent = rss.saturating_sub(rss_before) as f64 / args.agents as f64;
        println!(
            "RSS ({}): before agents {:.1} MiB, with {} idle agents {:.1} MiB, {:.0} bytes = {:.2} KiB/agent",
            if args.server.tls { "TLS" } else { "plain" },
            rss_before as f64 / 1048576.0,
            args.agents,
            rss as f64 / 1048576.0,
            per_agent,
            per_agent / 1024.0
        );
    }

    if args.want("list") {
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

    if args.want("roundtrip") {
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

    if args.want("heartbeats") {
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

    if args.want("storm") {
        server = storm::run(
            &fleet,
            server,
            &args.server,
            args.agents,
            args.storm_give_up,
        )
        .await?;
    }

    mode_tx.send(Mode::Stop)?;
    drop(agents);
    drop(server);
    Ok(())
}
