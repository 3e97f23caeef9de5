//! Durability across real server processes: a command queued for an
//! offline agent survives a server crash and restart, is delivered when the
//! agent connects, and its result survives the next restart. Also: the
//! JWT key persists, and SIGTERM closes agent sockets cleanly.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rmm_core::protocol::{CommandOutcome, CommandOutput, CommandResult, Message, OutputStream};
use serde_json::{Value, json};

use crate::common::{ADMIN, FakeAgent, PgSchema, assert_error, decode, enroll_via, spawn_server};

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn start(data_dir: &std::path::Path, database_url: Option<&str>) -> Proc {
        Self::start_with(data_dir, database_url, None, Stdio::inherit())
    }

    /// With `umask` (octal text), the server runs under that umask.
    fn start_with(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
        umask: Option<&str>,
        stderr: Stdio,
    ) -> Proc {
        let bin = env!("CARGO_BIN_EXE_rmm-server");
        let mut cmd = match umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--heartbeat-secs", "1"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RMM_ADMIN_EMAIL", ADMIN.0)
            .env("RMM_ADMIN_PASSWORD", ADMIN.1)
            .env_remove("RMM_JWT_SECRET")
            .env_remove("RMM_DATABASE_URL")
            .env("RMM_LOG", "warn")
            .stderr(stderr);
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        let (child, lines) = spawn_server(cmd, 1);
        let addr = lines[0]
            .strip_prefix("rmm-server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {:?}", lines[0]))
            .parse()
            .unwrap();
        Proc { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..100 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("server did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    decode(req.send().await.unwrap()).await
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn queued_command_survives_restarts(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let http = crate::common::http_client();
    let server = Proc::start(dir.path(), database_url);
    let token = login(&http, &server.url()).await;
    let (agent_id, secret) = enroll_via(&http, &server.url(), &token, "durable").await;
    let (status, body) = call(
        &http,
        "POST",
        format!("{}/api/agents/{agent_id}/command", server.url()),
        &token,
        Some(json!({"command_type": "bash", "command": "echo survived"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let command_id = body["command_id"].as_str().unwrap().to_owned();
    server.crash();

    // restart: the old token still works (the key persisted), the command waits
    let server = Proc::start(dir.path(), database_url);
    let (status, c) = call(
        &http,
        "GET",
        format!("{}/api/commands/{command_id}", server.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["status"].as_str(), c["phase"].as_str()),
        (Some("running"), Some("queued"))
    );
    let mut agent = FakeAgent::connect(server.addr, agent_id, &secret)
        .await
        .unwrap();
    agent.hello("durable-machine").await;
    let run = match agent.recv().await {
        Some(Message::RunCommand(r)) => r,
        other => panic!("expected run_command, got {other:?}"),
    };
    assert_eq!(run.command_id.to_string(), command_id);
    assert_eq!(run.command, "echo survived");
    let now = crate::common::wall_ms();
    agent
        .send(&Message::CommandOutput(CommandOutput {
            command_id: run.command_id,
            stream: OutputStream::Stdout,
            offset: 0,
            data: "survived\n".into(),
        }))
        .await;
    agent
        .send(&Message::CommandResult(CommandResult {
            command_id: run.command_id,
            outcome: CommandOutcome::Completed,
            exit_code: Some(0),
            signal: None,
            error: None,
            stdout_bytes: 9,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
            started_at_ms: Some(now),
            finished_at_ms: now,
        }))
        .await;
    match agent.recv().await {
        Some(Message::CommandAck(a)) => assert_eq!(a.command_id, run.command_id),
        other => panic!("expected ack, got {other:?}"),
    }
    // acknowledged means durable: crash right away, the result is there
    server.crash();
    let server = Proc::start(dir.path(), database_url);
    let (_, c) = call(
        &http,
        "GET",
        format!("{}/api/commands/{command_id}", server.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(
        (
            c["status"].as_str(),
            c["exit_code"].as_i64(),
            c["stdout"].as_str()
        ),
        (Some("completed"), Some(0), Some("survived\n"))
    );
    // graceful stop: the agent gets close 1001 and the process exits 0
    let mut agent = FakeAgent::connect(server.addr, agent_id, &secret)
        .await
        .unwrap();
    agent.hello("durable-machine").await;
    let closer = tokio::spawn(async move { agent.close_code().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(closer.await.unwrap(), Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queued_command_survives_server_restarts() {
    queued_command_survives_restarts(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queued_command_survives_server_restarts() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    queued_command_survives_restarts(Some(&schema.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_user_add_and_enroll_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_rmm-server");
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("RMM_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        &[
            "user",
            "add",
            "--email",
            "ops@example.com",
            "--role",
            "technician",
        ],
        "s3cret-password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &[
            "user",
            "add",
            "--email",
            "ops@example.com",
            "--role",
            "technician",
        ],
        "s3cret-password\n",
    );
    assert!(!out.status.success(), "duplicate user must fail");
    let out = run(
        &["user", "add", "--email", "x@example.com", "--role", "root"],
        "s3cret-password\n",
    );
    assert!(!out.status.success(), "unknown role must fail");
    let out = run(
        &[
            "enroll-bundle",
            "--agent-name",
            "local-1",
            "--server-url",
            "http://127.0.0.1:1",
            "--json",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        b["command"]
            .as_str()
            .unwrap()
            .contains("/api/v1/enroll-bundle/")
    );
    // the server started on that data dir knows the user and the bundle
    let server = Proc::start(dir.path(), None);
    let http = crate::common::http_client();
    let resp = http
        .post(format!("{}/api/auth/login", server.url()))
        .json(&json!({"email": "ops@example.com", "password": "s3cret-password"}))
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(status, 200, "login of the CLI-created user: {body}");
    let tgz = http
        .get(format!(
            "{}/api/v1/enroll-bundle/{}.tgz",
            server.url(),
            b["token"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = decode(tgz).await;
    assert_eq!(status, 200, "payload of the CLI-created bundle: {body}");
    let again = decode(
        http.get(format!(
            "{}/api/v1/enroll-bundle/{}.tgz",
            server.url(),
            b["token"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_error(&again, 404, "not_found");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("stderr.log");
    let private = |dir: &std::path::Path| {
        assert_eq!(mode(dir), 0o700, "data dir");
        for f in ["rmm.db", "rmm.db-wal", "rmm.db-shm", "jwt.key"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
    };
    // a new data dir under the loosest umask
    let srv = Proc::start_with(&dir, None, Some("000"), Stdio::null());
    let http = crate::common::http_client();
    login(&http, &srv.url()).await;
    private(&dir);
    srv.crash();
    // a data dir as an older version left it: world-readable
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["rmm.db", "jwt.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let err = std::fs::File::create(&log).unwrap();
    let srv = Proc::start_with(&dir, None, Some("022"), Stdio::from(err));
    login(&http, &srv.url()).await;
    private(&dir);
    srv.crash();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("tightened permissions") && text.contains("jwt.key"),
        "{text}"
    );
}
