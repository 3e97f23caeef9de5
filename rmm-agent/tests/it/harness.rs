//! Shared helpers: a scripted protocol peer (a WebSocket server speaking
//! PROTOCOL.md on 127.0.0.1) and agent processes.

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rmm_agent::identity::{Identity, StateDir};
use rmm_core::protocol::{
    AgentSettings, Codec, CommandResult, Frame, Hello, Limits, Message, OutputStream, Welcome,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use uuid::Uuid;

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_rmm-agent");

pub fn codec() -> Codec {
    Codec::new(Limits {
        max_control: 64 * 1024 * 1024,
        ..Limits::default()
    })
}

/// A WebSocket server playing the rmm server's side of the protocol.
pub struct Peer {
    pub listener: TcpListener,
    pub url: String,
}

pub struct PeerConn {
    pub ws: WebSocketStream<TcpStream>,
    pub authorization: String,
    pub path: String,
    pub hello: Hello,
    /// Output received per (command, stream), assembled by offset.
    pub output: HashMap<(Uuid, &'static str), String>,
    pub heartbeats: Vec<u64>,
}

impl Peer {
    pub async fn bind() -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Peer { listener, url }
    }

    pub async fn rebind(addr: &str) -> Peer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    return Peer {
                        listener,
                        url: format!("http://{addr}"),
                    };
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        }
    }

    /// Accepts the next agent connection, reads its hello and welcomes it.
    pub async fn accept(
        &self,
        settings: AgentSettings,
        heartbeat_secs: u32,
        timeout: Duration,
    ) -> PeerConn {
        let (sock, _) = tokio::time::timeout(timeout, self.listener.accept())
            .await
            .expect("agent did not connect in time")
            .unwrap();
        let seen = Arc::new(Mutex::new((String::new(), String::new())));
        let seen2 = seen.clone();
        sock.set_nodelay(true).unwrap();
        let ws = tokio_tungstenite::accept_hdr_async(sock, move |req: &Request, resp: Response| {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            *seen2.lock().unwrap() = (auth, req.uri().path().to_owned());
            Ok(resp)
        })
        .await
        .unwrap();
        let (authorization, path) = seen.lock().unwrap().clone();
        let mut conn = PeerConn {
            ws,
            authorization,
            path,
            hello: Hello {
                protocol: rmm_core::protocol::VersionRange::current(),
                agent_id: Uuid::nil(),
                agent_version: String::new(),
                os: String::new(),
                arch: String::new(),
                hostname: String::new(),
                machine_uid: String::new(),
                channel: String::new(),
            },
            output: HashMap::new(),
            heartbeats: Vec::new(),
        };
        match conn.recv_any(Duration::from_secs(10)).await {
            Some(Message::Hello(h)) => conn.hello = h,
            other => panic!("expected hello first, got {other:?}"),
        }
        let agent_id = conn.hello.agent_id;
        conn.send(Message::Welcome(Welcome {
            protocol: 1,
            agent_id,
            heartbeat_interval_secs: heartbeat_secs,
            settings,
        }))
        .await;
        conn
    }
}

impl PeerConn {
    pub async fn send(&mut self, m: Message) {
        let bytes = codec().encode_to_vec(&Frame::Control(m)).unwrap();
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    /// The next control message (heartbeats included); `None` when closed
    /// or on timeout.
    pub async fn recv_any(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match m.ok()? {
                WsMessage::Binary(b) => match codec().decode_message(&b).unwrap() {
                    Frame::Control(m) => return Some(m),
                    Frame::Data { .. } => panic!("agent sent a data frame"),
                },
                WsMessage::Close(_) => return None,
                WsMessage::Text(t) => panic!("agent sent a text message: {t}"),
                _ => {}
            }
        }
    }

    /// The next message that is not a heartbeat or an inventory; output
    /// chunks are assembled (and their offsets checked) along the way.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv_any(left).await?;
            match &m {
                Message::Heartbeat(h) => self.heartbeats.push(h.seq),
                Message::Inventory(_) => {}
                Message::CommandOutput(o) => {
                    let key = (o.command_id, o.stream.as_str());
                    let held = self.output.entry(key).or_default();
                    if o.offset == held.len() as u64 {
                        held.push_str(&o.data);
                    } else {
                        assert!(
                            o.offset < held.len() as u64,
                            "gap in output: offset {} held {}",
                            o.offset,
                            held.len()
                        );
                    }
                    return Some(m);
                }
                _ => return Some(m),
            }
        }
    }

    /// Waits for `id`'s result, collecting its output.
    pub async fn result(&mut self, id: Uuid, timeout: Duration) -> CommandResult {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(Message::CommandResult(r)) if r.command_id == id => return r,
                Some(_) => {}
                None => panic!("no result for {id} in time"),
            }
        }
    }

    pub fn out(&self, id: Uuid, s: OutputStream) -> String {
        self.output
            .get(&(id, s.as_str()))
            .cloned()
            .unwrap_or_default()
    }
}

/// An `rmm-agent run` process, killed on drop.
pub struct AgentProc {
    pub child: Child,
    pub log: PathBuf,
}

impl AgentProc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process exits within `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait().unwrap() {
                Some(status) => return Some(status),
                None if Instant::now() >= deadline => return None,
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Whether the log contains `needle` within `within`.
    pub async fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.log_text().contains(needle) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes an identity for `server_url` into `state`.
pub fn write_identity(state: &Path, server_url: &str) -> Identity {
    let id = Identity {
        server_url: server_url.into(),
        agent_id: Uuid::new_v4(),
        agent_secret: "test-secret_0123456789".into(),
        server_cert_sha256: None,
        agent_name: "test-agent".into(),
        channel: "stable".into(),
        insecure_http: false,
    };
    StateDir::open(state).unwrap().store_identity(&id).unwrap();
    id
}

/// Environment for fast tests: no initial delay, short backoff and grace.
pub fn fast_env(cmd: &mut Command, machine_id: &str) {
    cmd.env("RMM_AGENT_INITIAL_DELAY_MS", "0")
        .env("RMM_AGENT_BACKOFF_BASE_MS", "100")
        .env("RMM_AGENT_BACKOFF_CAP_MS", "800")
        .env("RMM_AGENT_KILL_GRACE_MS", "300")
        .env("RMM_AGENT_MACHINE_ID", machine_id)
        .env("RMM_LOG", "rmm_agent=debug,info");
}

pub fn spawn_agent(state: &Path, extra: &[(&str, &str)]) -> AgentProc {
    let log = state.with_extension(format!("log-{}", Uuid::new_v4().simple()));
    let mut cmd = Command::new(AGENT_BIN);
    cmd.arg("run").arg("--state-dir").arg(state);
    fast_env(&mut cmd, &state.display().to_string());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    AgentProc {
        child: cmd.spawn().unwrap(),
        log,
    }
}

/// Counts lines in a file (how many times a command really ran).
pub fn runs(marker: &Path) -> usize {
    std::fs::read_to_string(marker)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}
