//! The `rmm-server` child process: started on a fixed loopback port and a
//! data directory chosen up front, so a restart (the storm phase) keeps
//! the address agents dial and the credentials they hold.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// The administrator the load generator logs in as.
pub const ADMIN: (&str, &str) = ("load@example.com", "load-password-1");

/// How to start (and restart) the server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The `rmm-server` binary.
    pub bin: PathBuf,
    /// `--database-url` (SQLite in the data dir when `None`).
    pub database_url: Option<String>,
    /// `--tls-self-signed`: HTTPS/WSS with a certificate kept in the data dir.
    pub tls: bool,
    /// `--max-pending-handshakes` (the server's default when `None`).
    pub max_pending_handshakes: Option<usize>,
    /// The listen address, fixed for the whole run.
    pub addr: SocketAddr,
    /// The data directory, kept across restarts.
    pub data_dir: PathBuf,
}

impl ServerSpec {
    /// `http://ADDR` or `https://ADDR`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// A free loopback address, chosen once (the probe socket never had a
/// connection, so nothing lingers in TIME_WAIT on it).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A running server; killed (SIGKILL) when dropped.
pub struct ServerProc {
    child: Child,
    /// The served certificate's SHA-256 (with TLS).
    pub pin: Option<String>,
}

impl ServerProc {
    /// Starts the server and returns once it has printed that it listens
    /// (and, with TLS, the certificate hash).
    pub fn start(spec: &ServerSpec) -> anyhow::Result<ServerProc> {
        let mut cmd = Command::new(&spec.bin);
        cmd.args(["serve", "--heartbeat-secs", "30"])
            .arg("--listen")
            .arg(spec.addr.to_string())
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .env("RMM_ADMIN_EMAIL", ADMIN.0)
            .env("RMM_ADMIN_PASSWORD", ADMIN.1)
            .env("RMM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &spec.database_url {
            cmd.arg("--database-url").arg(url);
        }
        if spec.tls {
            cmd.arg("--tls-self-signed");
        }
        if let Some(n) = spec.max_pending_handshakes {
            cmd.arg("--max-pending-handshakes").arg(n.to_string());
        }
        let mut child = cmd.spawn().with_context(|| {
            format!("cannot start {} (build it with --bins)", spec.bin.display())
        })?;
        let stdout = child.stdout.take().context("no stdout")?;
        // From here on `child` is killed on every return path.
        let mut server = ServerProc { child, pin: None };
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line)?;
        let want = format!("rmm-server listening on {}", spec.base_url());
        if line.trim() != want {
            bail!("unexpected first line {line:?} from the server, expected {want:?}");
        }
        if spec.tls {
            line.clear();
            lines.read_line(&mut line)?;
            let pin = line
                .trim()
                .strip_prefix("rmm-server certificate sha256 ")
                .with_context(|| format!("unexpected second line {line:?}"))?;
            server.pin = Some(pin.to_owned());
        }
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGKILL (`Child::kill`), then reaps the process.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
