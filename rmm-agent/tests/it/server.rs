//! The real `rmm-server` binary for end-to-end tests and the overhead
//! benchmark.
//!
//! The binary is built on first use with the `cargo` that runs the tests
//! (`cargo build -p rmm-server --bin rmm-server`) into the same target
//! directory and profile as the agent binary under test, found next to
//! `CARGO_BIN_EXE_rmm-agent`. Under `cargo nextest run --workspace` it is
//! already built and the build is a no-op. `RMM_SERVER_BIN` overrides the
//! path.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// Path of a freshly built rmm-server, or why it could not be built.
pub fn server_bin(agent_bin: &Path) -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RMM_SERVER_BIN") {
            return Ok(PathBuf::from(p));
        }
        let profile_dir = agent_bin.parent().ok_or("agent binary has no directory")?;
        cargo_build(profile_dir, "rmm-server")
    })
    .clone()
}

/// Builds `bin` of package `bin` into the target dir and profile that
/// `profile_dir` (`<target>/<profile>`) belongs to; returns its path.
pub fn cargo_build(profile_dir: &Path, bin: &str) -> Result<PathBuf, String> {
    {
        let target_dir = profile_dir
            .parent()
            .ok_or("agent binary is not in a target dir")?;
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", bin, "--bin", bin])
            .arg("--target-dir")
            .arg(target_dir)
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
        let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build -p {bin} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = profile_dir.join(bin);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} was not built", path.display()))
        }
    }
}

/// A running rmm-server, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server on `listen` (e.g. `127.0.0.1:0`) with `data_dir`,
    /// and waits for its `listening on http://...` line.
    pub fn start(bin: &Path, data_dir: &Path, listen: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.with_extension(format!("server-{}.log", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RMM_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("RMM_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(f, "{line}");
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.find("listening on http://") {
                        let url = line[i + "listening on ".len()..]
                            .split_whitespace()
                            .next()
                            .unwrap()
                            .trim_end_matches('/')
                            .to_owned();
                        let addr = url.trim_start_matches("http://").to_owned();
                        return Server {
                            child,
                            url,
                            addr,
                            data_dir: data_dir.to_owned(),
                            log,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "rmm-server did not print `listening on http://...`; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
