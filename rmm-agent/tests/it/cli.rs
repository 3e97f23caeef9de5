//! The command line: enrollment over real HTTP, exit codes and messages,
//! the state-directory guard, and the refusal of plain http to a
//! non-loopback server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::harness::*;

const TOKEN: &str = "tok_0123456789abcdefABCDEF";

/// Plain http to a TEST-NET-1 address (RFC 5737): not loopback, and
/// nothing there answers.
const REMOTE_HTTP: &str = "http://192.0.2.1:3001";

fn bundle(server_url: &str, agent_id: Uuid) -> Vec<u8> {
    let config = serde_json::json!({
        "server_url": server_url,
        "agent_id": agent_id,
        "agent_secret": "secret_0123456789",
        "server_cert_sha256": null,
        "agent_name": "box-1",
        "channel": "stable",
    })
    .to_string();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("config.json", config.as_bytes(), 0o600),
        (
            "rmm-agent.service",
            &b"[Service]\nExecStart=/usr/local/bin/rmm-agent run\n"[..],
            0o644,
        ),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// Serves the payload once at the protocol's path, 404 otherwise, like
/// the server does; counts requests.
async fn payload_server(agent_id: Uuid) -> (String, Arc<AtomicUsize>) {
    payload_server_naming(agent_id, None).await
}

/// [`payload_server`] whose payload names `server_url` (default: its own).
async fn payload_server_naming(
    agent_id: Uuid,
    server_url: Option<&str>,
) -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let body = bundle(server_url.unwrap_or(&url), agent_id);
    let hits = Arc::new(AtomicUsize::new(0));
    let hits2 = hits.clone();
    tokio::spawn(async move {
        let mut served = false;
        while let Ok((mut s, _)) = l.accept().await {
            hits2.fetch_add(1, Ordering::SeqCst);
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&req[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let want = format!("GET /api/v1/enroll-bundle/{TOKEN}.tgz HTTP/1.1");
            if line == want && !served {
                served = true;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            } else {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            }
            let _ = s.shutdown().await;
        }
    });
    (url, hits)
}

async fn agent(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(AGENT_BIN);
    cmd.args(args)
        .env_remove("RMM_ENROLL_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let input = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = input {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn enroll_from_stdin_persists_a_private_identity_and_the_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let unit = tmp.path().join("rmm-agent.service");
    let agent_id = Uuid::new_v4();
    let (url, hits) = payload_server(agent_id).await;
    let out = agent(
        &[
            "enroll",
            "--server",
            &url,
            "--token",
            "-",
            "--state-dir",
            state.to_str().unwrap(),
            "--install-unit",
            unit.to_str().unwrap(),
        ],
        Some(&format!("{TOKEN}\n")),
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&agent_id.to_string()));
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("identity.json")), 0o600);
    assert_eq!(mode(&unit), 0o644);
    let id = rmm_agent::identity::Identity::load(&state).unwrap();
    assert_eq!(
        (id.agent_id, id.server_url.as_str(), id.agent_name.as_str()),
        (agent_id, url.as_str(), "box-1")
    );
    assert!(!id.insecure_http);
    assert!(
        std::fs::read_to_string(&unit)
            .unwrap()
            .contains("ExecStart=")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The token is used up: a second enrollment fails clearly and keeps
    // the identity.
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let out = agent(
        &[
            "enroll",
            "--server",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        None,
        &[],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown, expired or already used"), "{err}");
    assert_eq!(
        rmm_agent::identity::Identity::load(&state)
            .unwrap()
            .agent_id,
        agent_id
    );
}

#[tokio::test]
async fn enroll_needs_a_token_and_reads_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = agent(
        &[
            "enroll",
            "--server",
            "http://127.0.0.1:9",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        None,
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RMM_ENROLL_TOKEN"));
    let agent_id = Uuid::new_v4();
    let (url, _) = payload_server(agent_id).await;
    let out = agent(
        &[
            "enroll",
            "--server",
            &url,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        None,
        &[("RMM_ENROLL_TOKEN", TOKEN)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        rmm_agent::identity::Identity::load(&state)
            .unwrap()
            .agent_id,
        agent_id
    );
}

/// A state directory this process's agent cannot write: as root, run the
/// agent as `nobody` against a root-owned 0755 directory (root ignores
/// mode bits); otherwise a 0500 directory.
fn unwritable(tmp: &Path) -> (std::path::PathBuf, Vec<String>) {
    let dir = tmp.join("ro-state");
    std::fs::create_dir(&dir).unwrap();
    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let wrap = vec![
            "setpriv".into(),
            "--reuid=65534".into(),
            "--regid=65534".into(),
            "--clear-groups".into(),
        ];
        (dir, wrap)
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        (dir, Vec::new())
    }
}

async fn run_wrapped(wrap: &[String], args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = if wrap.is_empty() {
        Command::new(AGENT_BIN)
    } else {
        let mut c = Command::new(&wrap[0]);
        c.args(&wrap[1..]).arg(AGENT_BIN);
        c
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn non_writable_state_dir_is_a_clear_error_and_mints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, wrap) = unwritable(tmp.path());
    // `run`: exits non-zero, names the directory and the systemd fix.
    let out = run_wrapped(
        &wrap,
        &["run", "--state-dir", dir.to_str().unwrap()],
        &[("RMM_AGENT_MACHINE_ID", "x")],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    assert!(err.contains("StateDirectory=rmm-agent"), "{err}");
    assert!(err.contains("not writable"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "something was written"
    );

    // `enroll`: refuses before fetching, so the one-shot token survives.
    let (url, hits) = payload_server(Uuid::new_v4()).await;
    let out = run_wrapped(
        &wrap,
        &[
            "enroll",
            "--server",
            &url,
            "--state-dir",
            dir.to_str().unwrap(),
        ],
        &[("RMM_ENROLL_TOKEN", TOKEN)],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("StateDirectory=rmm-agent"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "payload fetched although it could not be stored"
    );
}

#[tokio::test]
async fn run_without_identity_refuses_to_mint_one() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = agent(
        &["run", "--state-dir", state.to_str().unwrap()],
        None,
        &[("RMM_AGENT_MACHINE_ID", "x")],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no identity in"), "{err}");
    assert!(err.contains("rmm-agent enroll"), "{err}");
    assert!(!state.join("identity.json").exists());
}

#[tokio::test]
async fn selftest_passes_against_a_live_peer_and_fails_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let peer = Peer::bind().await;
    write_identity(&state, &peer.url);
    let st = state.to_str().unwrap().to_owned();
    let run = tokio::spawn(async move {
        agent(
            &["selftest", "--handshake", "--state-dir", &st],
            None,
            &[("RMM_AGENT_MACHINE_ID", "x")],
        )
        .await
    });
    let _conn = peer
        .accept(
            rmm_core::protocol::AgentSettings::default(),
            30,
            Duration::from_secs(20),
        )
        .await;
    let out = run.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("selftest passed"), "{text}");
    assert!(text.contains("welcomed"), "{text}");

    // Default mode: the upgrade (credential check) only, no hello.
    let st = state.to_str().unwrap().to_owned();
    let run = tokio::spawn(async move {
        agent(
            &["selftest", "--state-dir", &st],
            None,
            &[("RMM_AGENT_MACHINE_ID", "x")],
        )
        .await
    });
    let (sock, _) = peer.listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(sock).await.unwrap();
    let out = run.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("credential accepted"), "{text}");
    // The agent closed without saying hello.
    use futures_util::StreamExt;
    while let Some(Ok(m)) = ws.next().await {
        assert!(
            !matches!(m, tokio_tungstenite::tungstenite::Message::Binary(_)),
            "selftest sent a frame"
        );
    }
    drop(peer);

    let out = agent(
        &["selftest", "--state-dir", state.to_str().unwrap()],
        None,
        &[("RMM_AGENT_MACHINE_ID", "x")],
    )
    .await;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("server"), "{text}");
}

#[tokio::test]
async fn enroll_refuses_plain_http_to_another_host_before_any_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    for env in [&[][..], &[("RMM_INSECURE_HTTP", "0")]] {
        let t0 = Instant::now();
        let out = agent(
            &[
                "enroll",
                "--server",
                REMOTE_HTTP,
                "--token-file",
                token_file.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            None,
            env,
        )
        .await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        // A connection attempt to TEST-NET would hang or fail with a
        // "cannot fetch" error; the refusal comes first, in one line.
        assert!(t0.elapsed() < Duration::from_secs(3), "{err}");
        assert!(!err.contains("cannot fetch"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for needle in [
            "refusing plain http to 192.0.2.1",
            "https://",
            "--insecure-http",
        ] {
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
        assert!(!state.exists(), "the state directory was touched");
    }
}

/// `enroll --server URL --state-dir STATE` with the token in the
/// environment, plus `--insecure-http` or `RMM_INSECURE_HTTP=1` when asked.
async fn enroll_with(url: &str, state: &Path, flag: bool, env: bool) -> Output {
    let mut args = vec!["enroll", "--server", url, "--state-dir"];
    args.push(state.to_str().unwrap());
    let mut vars = vec![("RMM_ENROLL_TOKEN", TOKEN)];
    if flag {
        args.push("--insecure-http");
    }
    if env {
        vars.push(("RMM_INSECURE_HTTP", "1"));
    }
    agent(&args, None, &vars).await
}

#[tokio::test]
async fn enroll_with_insecure_http_records_it_in_the_identity() {
    let tmp = tempfile::tempdir().unwrap();
    // The payload, served on loopback, names plain http elsewhere: without
    // the flag it is refused before the identity is stored.
    let state = tmp.path().join("refused");
    let (url, hits) = payload_server_naming(Uuid::new_v4(), Some(REMOTE_HTTP)).await;
    let out = enroll_with(&url, &state, false, false).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the enrollment payload: refusing plain http to 192.0.2.1"),
        "{err}"
    );
    assert!(err.contains("--insecure-http"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(!state.join("identity.json").exists());

    // With the flag or the environment: enrolled, warned, and recorded.
    for (i, flag) in [true, false].into_iter().enumerate() {
        let state = tmp.path().join(format!("allowed-{i}"));
        let agent_id = Uuid::new_v4();
        let (url, _) = payload_server_naming(agent_id, Some(REMOTE_HTTP)).await;
        let out = enroll_with(&url, &state, flag, !flag).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("WARN") && err.contains("unencrypted"), "{err}");
        let id = rmm_agent::identity::Identity::load(&state).unwrap();
        assert_eq!(
            (id.agent_id, id.server_url.as_str(), id.insecure_http),
            (agent_id, REMOTE_HTTP, true)
        );
    }
}

#[tokio::test]
async fn run_and_selftest_refuse_plain_http_to_another_host_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    write_identity(&state, REMOTE_HTTP);

    // A startup error, not a retry loop.
    let mut refused = spawn_agent(&state, &[]);
    let status = refused.wait_exit(Duration::from_secs(10)).await;
    let log = refused.log_text();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    for needle in [
        "refusing plain http to 192.0.2.1",
        "https://",
        "--insecure-http",
    ] {
        assert!(log.contains(needle), "{log} lacks {needle}");
    }
    assert!(!log.contains("starting"), "{log}");
    let out = agent(
        &["selftest", "--state-dir", state.to_str().unwrap()],
        None,
        &[("RMM_AGENT_MACHINE_ID", "x")],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("[FAIL] transport"), "{text}");
    assert!(text.contains("--insecure-http"), "{text}");

    // Allowed by the command (environment) or by the identity: it starts,
    // warns and tries to connect.
    let mut recorded = write_identity(&tmp.path().join("recorded"), REMOTE_HTTP);
    recorded.insecure_http = true;
    rmm_agent::identity::StateDir::open(tmp.path().join("recorded"))
        .unwrap()
        .store_identity(&recorded)
        .unwrap();
    let mut allowed = [
        spawn_agent(&state, &[("RMM_INSECURE_HTTP", "1")]),
        spawn_agent(&tmp.path().join("recorded"), &[]),
    ];
    for agent in &mut allowed {
        let started = agent
            .wait_log("first connection", Duration::from_secs(10))
            .await;
        let log = agent.log_text();
        assert!(started, "{log}");
        assert!(log.contains("unencrypted"), "{log}");
        assert!(!log.contains("refusing"), "{log}");
        assert!(
            agent.wait_exit(Duration::from_millis(500)).await.is_none(),
            "{log}"
        );
    }
}
