//! A real rmm-server and an enrolled rmm-agent, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmm_client::Client;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// `<target>/<profile>`, from this test binary's path (`.../deps/it-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let dir = profile_dir();
    let path = dir.join(name);
    if !path.is_file() {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "-q",
            "-p",
            "rmm-server",
            "-p",
            "rmm-agent",
            "--bins",
            "--target-dir",
        ])
        .arg(dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().unwrap();
        assert!(
            status.success(),
            "cannot build the rmm-server and rmm-agent binaries"
        );
    }
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stack {
    pub url: String,
    pub client: Client,
    pub agent_id: Uuid,
    pub agent_name: String,
    _agent: Proc,
    _server: Proc,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Command::new(binary("RMM_SERVER_BIN", "rmm-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("server"))
            .env("RMM_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("RMM_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = server.stdout.take().unwrap();
        let server = Proc(server);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let url = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("");
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("rmm-server did not start");

        let client = Client::new(&url).unwrap();
        client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
        let agent_name = format!("client-it-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let bundle = client.create_enrollment(&agent_name, None).await.unwrap();
        let state = dir.path().join("agent");
        let agent_bin = binary("RMM_AGENT_BIN", "rmm-agent");
        let out = Command::new(&agent_bin)
            .args(["enroll", "--server", &url, "--state-dir"])
            .arg(&state)
            .env("RMM_ENROLL_TOKEN", &bundle.token)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enroll: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let agent = Proc(
            Command::new(&agent_bin)
                .args(["run", "--state-dir"])
                .arg(&state)
                .env("RMM_AGENT_INITIAL_DELAY_MS", "0")
                .env("RMM_AGENT_BACKOFF_BASE_MS", "100")
                .env("RMM_AGENT_KILL_GRACE_MS", "300")
                .env("RMM_AGENT_MACHINE_ID", &agent_name)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let agents = client.agents().await.unwrap();
            if agents
                .iter()
                .any(|a| a.id == bundle.agent_id && a.is_online())
            {
                break;
            }
            assert!(Instant::now() < deadline, "agent not online: {agents:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Stack {
            url,
            client,
            agent_id: bundle.agent_id,
            agent_name,
            _agent: agent,
            _server: server,
            _dir: dir,
        }
    }
}
