//! End to end: the real `rmm-server` and the real `rmm-agent` on
//! 127.0.0.1, driven through the server's HTTP API (rmm-client), from
//! enrollment to results.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmm_client::{Client, CommandContext, CommandInfo, CommandRequest, CommandType, WaitOptions};
use uuid::Uuid;

use crate::harness::*;
use crate::server::*;

struct Env {
    tmp: tempfile::TempDir,
    server: Server,
    client: Client,
    state: PathBuf,
    agent_id: Uuid,
    agent: Option<AgentProc>,
}

fn bin() -> PathBuf {
    server_bin(std::path::Path::new(AGENT_BIN)).unwrap_or_else(|e| panic!("{e}"))
}

fn wait_opts(secs: u64) -> WaitOptions {
    WaitOptions {
        timeout: Some(Duration::from_secs(secs)),
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(100),
    }
}

fn req(kind: CommandType, script: &str) -> CommandRequest {
    CommandRequest::builder(kind, script)
        .context(CommandContext::System)
        .timeout_secs(None)
        .build()
        .unwrap()
}

/// Server up, admin logged in, an agent enrolled through the real bundle
/// and running.
async fn setup(name: &str, agent_env: &[(&str, &str)]) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&bin(), &tmp.path().join("server"), "127.0.0.1:0", &[]);
    let client = Client::new(&server.url).unwrap();
    client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let bundle = client.create_enrollment(name, None).await.unwrap();
    let state = tmp.path().join("agent-state");
    let out = Command::new(AGENT_BIN)
        .args(["enroll", "--server", &server.url, "--state-dir"])
        .arg(&state)
        .env("RMM_ENROLL_TOKEN", &bundle.token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let agent = spawn_agent(&state, agent_env);
    let env = Env {
        tmp,
        server,
        client,
        state,
        agent_id: bundle.agent_id,
        agent: Some(agent),
    };
    env.wait_online(Duration::from_secs(20)).await;
    env
}

impl Env {
    async fn wait_online(&self, within: Duration) {
        let t0 = Instant::now();
        loop {
            let agents = self.client.agents().await.unwrap();
            if agents
                .iter()
                .any(|a| a.id == self.agent_id && a.is_online())
            {
                return;
            }
            assert!(
                t0.elapsed() < within,
                "agent not online after {within:?}: {agents:?}\nagent log:\n{}",
                self.agent
                    .as_ref()
                    .map(|a| a.log_text())
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run(&self, r: &CommandRequest, secs: u64) -> CommandInfo {
        let id = self.client.submit(self.agent_id, r).await.unwrap();
        match self.client.wait(id, wait_opts(secs)).await {
            Ok(info) => info,
            Err(e) => panic!(
                "{e}\nagent log:\n{}\nserver log:\n{}",
                self.agent
                    .as_ref()
                    .map(|a| a.log_text())
                    .unwrap_or_default(),
                self.server.log_text()
            ),
        }
    }
}

#[tokio::test]
async fn e2e_enroll_then_every_command_type_and_exit_codes() {
    let env = setup("e2e-types", &[]).await;
    let agents = env.client.agents().await.unwrap();
    let me = agents.iter().find(|a| a.id == env.agent_id).unwrap();
    assert_eq!((me.os.as_str(), me.channel.as_str()), ("linux", "stable"));
    assert_eq!(
        me.machine_uid.as_deref(),
        Some(rmm_agent::machine::machine_uid_from(&env.state.display().to_string()).as_str())
    );
    assert!(env.state.join("identity.json").exists());

    // selftest against the real server, next to the running daemon.
    let out = Command::new(AGENT_BIN)
        .args(["selftest", "--state-dir"])
        .arg(&env.state)
        .env("RMM_AGENT_MACHINE_ID", env.state.display().to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("credential accepted") && text.contains("clock"),
        "{text}"
    );

    for kind in [CommandType::Shell, CommandType::Sh] {
        let c = env
            .run(&req(kind, "echo \"hi from $0\"; echo warn >&2; exit 0"), 30)
            .await;
        assert_eq!(
            (c.status.as_str(), c.exit_code),
            ("completed", Some(0)),
            "{c:?}"
        );
        assert!(c.stdout.starts_with("hi from "), "{c:?}");
        assert_eq!(c.stderr, "warn\n");
        assert!(c.started_at.is_some() && c.completed_at.is_some());
    }
    let c = env
        .run(
            &req(
                CommandType::Bash,
                "declare -A m=([k]=v); echo ${m[k]}; exit 7",
            ),
            30,
        )
        .await;
    assert_eq!(
        (c.status.as_str(), c.exit_code, c.stdout.as_str()),
        ("failed", Some(7), "v\n")
    );
    let c = env
        .run(
            &req(
                CommandType::Python,
                "import sys\nprint('py', 6*7)\nsys.exit(3)",
            ),
            30,
        )
        .await;
    assert_eq!(
        (c.status.as_str(), c.exit_code, c.stdout.as_str()),
        ("failed", Some(3), "py 42\n")
    );
    let c = env
        .run(&req(CommandType::Powershell, "Write-Output 'ps'"), 30)
        .await;
    if rmm_agent::runner::find_in_path("pwsh").is_some() {
        assert_eq!(
            (c.status.as_str(), c.stdout.as_str()),
            ("completed", "ps\n")
        );
    } else {
        assert_eq!(c.status, "failed");
        let text = format!("{:?} {}", c.error, c.stderr);
        assert!(text.contains("powershell is not installed"), "{c:?}");
    }
}

#[tokio::test]
async fn e2e_five_mib_script_and_twenty_mib_output() {
    let env = setup("e2e-big", &[]).await;
    let mut script = String::with_capacity(6 << 20);
    while script.len() < 5 << 20 {
        script
            .push_str(": 0123456789012345678901234567890123456789012345678901234567890123456789\n");
    }
    script.push_str("echo \"script of $(wc -c < \"$0\") bytes\"\n");
    let c = env.run(&req(CommandType::Sh, &script), 60).await;
    assert_eq!(c.status, "completed", "{:?}", c.error);
    assert_eq!(c.stdout, format!("script of {} bytes\n", script.len()));

    let c = env
        .run(
            &req(
                CommandType::Sh,
                "head -c 20971520 /dev/zero | tr '\\0' a; echo done >&2",
            ),
            120,
        )
        .await;
    assert_eq!(c.status, "completed", "{:?}", c.error);
    assert_eq!(c.stdout.len(), 16 * 1024 * 1024);
    assert!(c.stdout_truncated);
    assert!(!c.stderr_truncated);
    assert_eq!(c.stderr, "done\n");
}

#[tokio::test]
async fn e2e_timeout_kills_the_tree_and_cancel_stops_a_command() {
    let env = setup("e2e-kill", &[]).await;
    let mut r = req(
        CommandType::Sh,
        "sh -c 'trap \"\" TERM; exec sleep 300' & echo \"gc=$!\"; sleep 300",
    );
    r.timeout_secs = Some(1);
    let t0 = Instant::now();
    let c = env.run(&r, 60).await;
    assert_eq!(c.status, "timeout", "{c:?}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let gc: i32 = c
        .stdout
        .trim()
        .strip_prefix("gc=")
        .unwrap()
        .parse()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !pid_gone(gc) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pid_gone(gc), "grandchild {gc} survived the timeout");

    let id = env
        .client
        .submit(
            env.agent_id,
            &req(CommandType::Sh, "echo started; sleep 300"),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    loop {
        let c = env.client.command(id).await.unwrap();
        if c.stdout.contains("started") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never started: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.client.cancel(id).await.unwrap();
    let c = env.client.wait(id, wait_opts(30)).await.unwrap();
    assert_eq!(c.status, "cancelled", "{c:?}");
    assert_eq!(c.stdout, "started\n");
}

#[tokio::test]
async fn e2e_user_session_without_an_active_session_fails_with_the_message() {
    let tmp = tempfile::tempdir().unwrap();
    // A loginctl that lists no sessions, so the result does not depend on
    // who is logged in on the test machine.
    let loginctl = tmp.path().join("loginctl");
    std::fs::write(&loginctl, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        &loginctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let marker = tmp.path().join("ran");
    let env = setup(
        "e2e-session",
        &[("RMM_AGENT_LOGINCTL", loginctl.to_str().unwrap())],
    )
    .await;
    let mut r = req(CommandType::Sh, &format!("touch {}", marker.display()));
    r.context = CommandContext::UserSession;
    let c = env.run(&r, 30).await;
    assert_eq!(c.status, "failed", "{c:?}");
    let text = format!("{} {}", c.error.clone().unwrap_or_default(), c.stderr);
    assert!(text.contains("no active user session"), "{c:?}");
    assert!(!marker.exists(), "ran without a session");
}

#[tokio::test]
async fn e2e_agent_killed_mid_command_and_restarted_no_loss_no_rerun() {
    let mut env = setup("e2e-crash", &[]).await;
    let marker = env.tmp.path().join("ran");
    let id = env
        .client
        .submit(
            env.agent_id,
            &req(
                CommandType::Sh,
                &format!("echo run >> {}; echo partial; sleep 30", marker.display()),
            ),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    while runs(&marker) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "command never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.agent.take().unwrap().kill9();
    env.agent = Some(spawn_agent(&env.state, &[]));
    let c = env.client.wait(id, wait_opts(60)).await.unwrap();
    assert_eq!(c.status, "failed", "{c:?}");
    let text = format!("{} {}", c.error.clone().unwrap_or_default(), c.stderr);
    assert!(
        text.contains("agent restarted while the command was running"),
        "{c:?}"
    );
    assert!(c.stdout.contains("partial"), "{c:?}");
    // It stays finished, and was never run again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&marker), 1, "the command ran twice");
    // The restarted agent works.
    let c = env.run(&req(CommandType::Sh, "echo ok"), 30).await;
    assert_eq!(c.stdout, "ok\n");
}

#[tokio::test]
async fn e2e_server_restart_agent_reconnects_within_backoff_and_delivers() {
    let mut env = setup("e2e-restart", &[]).await;
    // A result produced while the server is down arrives after it is back.
    let id = env
        .client
        .submit(
            env.agent_id,
            &req(CommandType::Sh, "sleep 1; echo finished-offline"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = env.server.addr.clone();
    let data = env.server.data_dir.clone();
    env.server.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    env.server = Server::start(&bin(), &data, &addr, &[]);
    let listening = Instant::now();
    env.client = Client::new(&env.server.url).unwrap();
    env.client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    // Backoff in the test environment: base 100 ms, cap 800 ms, so once
    // the server listens the agent is back within one ceiling plus a
    // connect; 4 s leaves room for a loaded machine.
    env.wait_online(Duration::from_secs(10)).await;
    let back = listening.elapsed();
    assert!(
        back < Duration::from_secs(4),
        "reconnected {back:?} after the server listened"
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let c = env.client.wait(id, wait_opts(30)).await.unwrap();
    assert_eq!(
        (c.status.as_str(), c.stdout.as_str()),
        ("completed", "finished-offline\n")
    );
    let c = env.run(&req(CommandType::Sh, "echo again"), 30).await;
    assert_eq!(c.stdout, "again\n");
}

fn pid_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[tokio::test]
async fn e2e_plugins_reach_the_server_inventory() {
    let plugins = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = plugins.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    write("disk", r#"echo '{"free_gb": 42}'"#);
    write("broken", "echo boom >&2; exit 1");
    let env = setup(
        "e2e-plugins",
        &[
            ("RMM_AGENT_PLUGINS_DIR", plugins.path().to_str().unwrap()),
            ("RMM_AGENT_PLUGIN_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let token = env.client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let url = format!("{}/api/agents/{}/inventory", env.server.url, env.agent_id);
    // reqwest is built without a default crypto provider in this workspace.
    let tls = rmm_agent::tls::client_config(None, &[]).unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .unwrap();
    let t0 = Instant::now();
    let items: Vec<serde_json::Value> = loop {
        let items: Vec<serde_json::Value> = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if items.len() >= 2 || t0.elapsed() > Duration::from_secs(20) {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by = |name: &str| {
        items
            .iter()
            .find(|i| i["plugin"] == name)
            .unwrap_or_else(|| panic!("no {name} in {items:?}"))
            .clone()
    };
    assert_eq!(by("disk")["result"], serde_json::json!({"free_gb": 42}));
    assert_eq!(by("broken")["result"], serde_json::json!("unknown"));
    assert!(by("broken")["error"].as_str().unwrap().contains("boom"));
}
