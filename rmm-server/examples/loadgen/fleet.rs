//! The simulated agents: real sockets (plain or TLS pinned to the
//! server's certificate), the real codec, hello/welcome like the agent,
//! and the real agent's reconnect schedule ([`Reconnect`] with
//! `rmm-agent`'s default backoff, honouring a 503's `Retry-After`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use rmm_agent::daemon::conn::retry_after;
use rmm_agent::daemon::{AgentOptions, Reconnect};
use rmm_core::protocol::{
    Codec, CommandOutcome, CommandOutput, CommandResult, Frame, Heartbeat, Hello, Message,
    OutputStream, VersionRange,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Message as WsMessage, WebSocketConfig};
use uuid::Uuid;

/// Agents per source address (127.0.0.2, 127.0.0.3, ...): each address
/// has its own ephemeral ports, so the sockets of refused attempts left
/// in TIME_WAIT cannot exhaust them.
const AGENTS_PER_SOURCE: usize = 500;

/// Connection attempts per agent at most (every loop is bounded).
const MAX_ATTEMPTS: u32 = 10_000;

/// What the connected agents are told to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Answer pings and commands only.
    Idle,
    /// Send this many heartbeats per connection, as fast as possible.
    Heartbeats(u64),
    /// Disconnect and end.
    Stop,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Ws = WebSocketStream<Box<dyn Io>>;

/// How one connection attempt ended.
enum Ended {
    /// Told to stop.
    Stopped,
    /// Welcomed, then the connection dropped after being up this long.
    Dropped(Duration),
    /// 503 with this `Retry-After`.
    Busy(Duration),
    /// Anything else, with a short reason for the tally.
    Failed(&'static str),
}

/// The shared state of all simulated agents and their counters.
pub struct Fleet {
    target: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    /// The real agent's defaults (backoff, stable_after, connect_timeout).
    agent: AgentOptions,
    mode: watch::Receiver<Mode>,
    epoch: Instant,
    /// Agents welcomed and still connected.
    pub connected: AtomicU64,
    /// Welcomes received in total.
    pub welcomes: AtomicU64,
    /// Upgrades answered 503 (overloaded).
    pub busy: AtomicU64,
    /// Agents that finished their heartbeat burst.
    pub done_hb: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Of the latest welcome, microseconds since `epoch`.
    last_welcome_us: AtomicU64,
    /// The storm's start, microseconds since `epoch` plus one (0: none).
    storm_from: AtomicU64,
    /// Per agent, the first welcome since `storm_from`, microseconds since
    /// `epoch` plus one (0: not back yet).
    back: Box<[AtomicU64]>,
}

impl Fleet {
    /// A fleet of `agents` dialing `target`, over TLS with `tls`.
    pub fn new(
        target: SocketAddr,
        tls: Option<rustls::ClientConfig>,
        agents: usize,
        mode: watch::Receiver<Mode>,
    ) -> Arc<Fleet> {
        Arc::new(Fleet {
            target,
            tls: tls.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c))),
            agent: AgentOptions::new("unused"),
            mode,
            epoch: Instant::now(),
            connected: AtomicU64::new(0),
            welcomes: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            done_hb: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            last_welcome_us: AtomicU64::new(0),
            storm_from: AtomicU64::new(0),
            back: (0..agents).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The real agent's option defaults this fleet follows.
    pub fn agent_options(&self) -> &AgentOptions {
        &self.agent
    }

    /// Failed attempts so far, by reason.
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Time since the latest welcome.
    pub fn since_last_welcome(&self) -> Duration {
        let last = Duration::from_micros(self.last_welcome_us.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Starts recording, per agent, its first welcome from now on.
    pub fn begin_storm(&self) {
        self.storm_from.store(self.micros() + 1, Ordering::Release);
    }

    /// Agents welcomed since [`Fleet::begin_storm`].
    pub fn back_count(&self) -> usize {
        self.back
            .iter()
            .filter(|b| b.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Per agent, the time from `from` to its first welcome since
    /// [`Fleet::begin_storm`] (`None`: not back).
    pub fn back_after(&self, from: Instant) -> Vec<Option<Duration>> {
        let from = from.saturating_duration_since(self.epoch);
        self.back
            .iter()
            .map(|b| match b.load(Ordering::Relaxed) {
                0 => None,
                at => Some(Duration::from_micros(at - 1).saturating_sub(from)),
            })
            .collect()
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn welcomed(&self, i: usize) {
        let now = self.micros();
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.welcomes.fetch_add(1, Ordering::Relaxed);
        self.last_welcome_us.fetch_max(now, Ordering::Relaxed);
        if self.storm_from.load(Ordering::Acquire) != 0 {
            let _ = self.back[i].compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn failed(&self, why: &'static str) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(why)
            .or_default() += 1;
    }

    /// Agent `i` until told to stop: connect, hello, welcome, serve; after
    /// every drop or failed attempt wait what `rmm-agent`'s daemon waits.
    pub async fn run_agent(self: Arc<Self>, i: usize, id: Uuid, secret: String) {
        let mut mode = self.mode.clone();
        let mut schedule = Reconnect::new(self.agent.backoff, self.agent.stable_after);
        for _ in 0..MAX_ATTEMPTS {
            let (connected_for, busy) = match self.attempt(i, id, &secret, &mut mode).await {
                Ended::Stopped => return,
                Ended::Dropped(up) => (Some(up), None),
                Ended::Busy(retry) => {
                    self.busy.fetch_add(1, Ordering::Relaxed);
                    (None, Some(retry))
                }
                Ended::Failed(why) => {
                    self.failed(why);
                    (None, None)
                }
            };
            // As rmm_agent::daemon::Agent::run does after an attempt.
            let unit = rand::rng().random::<f64>();
            let delay = schedule.after_drop(connected_for, unit);
            let delay = schedule.after_busy(delay, busy, unit);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = mode.wait_for(|m| *m == Mode::Stop) => return,
            }
        }
    }

    async fn attempt(
        &self,
        i: usize,
        id: Uuid,
        secret: &str,
        mode: &mut watch::Receiver<Mode>,
    ) -> Ended {
        if *mode.borrow() == Mode::Stop {
            return Ended::Stopped;
        }
        let limit = self.agent.connect_timeout;
        let mut ws = match tokio::time::timeout(limit, self.open(i, id, secret)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(ended)) => return ended,
            Err(_) => return Ended::Failed("connect timed out"),
        };
        let codec = Codec::default();
        match tokio::time::timeout(limit, hello_welcome(&mut ws, &codec, id)).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Ended::Failed(why),
            Err(_) => return Ended::Failed("no welcome in time"),
        }
        let up = Instant::now();
        self.welcomed(i);
        let stopped = self.serve(&mut ws, &codec, mode).await;
        self.connected.fetch_sub(1, Ordering::Relaxed);
        if stopped {
            Ended::Stopped
        } else {
            Ended::Dropped(up.elapsed())
        }
    }

    /// TCP from agent `i`'s source address, TLS if configured, and the
    /// WebSocket upgrade with the agent's credentials.
    async fn open(&self, i: usize, id: Uuid, secret: &str) -> Result<Ws, Ended> {
        let sock = tokio::net::TcpSocket::new_v4().map_err(fail("socket"))?;
        sock.bind(SocketAddr::new(source_ip(i), 0))
            .map_err(fail("bind source address"))?;
        let tcp = sock.connect(self.target).await.map_err(fail("connect"))?;
        let _ = tcp.set_nodelay(true);
        let (io, scheme): (Box<dyn Io>, _) = match &self.tls {
            None => (Box::new(tcp), "ws"),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::from(self.target.ip());
                let tls = tls
                    .connect(name, tcp)
                    .await
                    .map_err(fail("tls handshake"))?;
                (Box::new(tls), "wss")
            }
        };
        let mut req = format!("{scheme}://{}/api/v1/agent/ws", self.target)
            .into_client_request()
            .map_err(fail("request"))?;
        let auth = format!("Agent {id}:{secret}")
            .parse()
            .map_err(fail("request"))?;
        req.headers_mut().insert("authorization", auth);
        // A small read buffer: the load generator holds thousands of these.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        match tokio_tungstenite::client_async_with_config(req, io, Some(config)).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(r)) if r.status() == 503 => {
                Err(Ended::Busy(retry_after(r.headers())))
            }
            Err(WsError::Http(_)) => Err(Ended::Failed("http status other than 101 or 503")),
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                Err(Ended::Failed("upgrade: connection reset"))
            }
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(Ended::Failed("upgrade: closed"))
            }
            Err(WsError::Io(_)) => Err(Ended::Failed("upgrade: other io error")),
            Err(WsError::Protocol(_)) => Err(Ended::Failed("upgrade: protocol error")),
            Err(_) => Err(Ended::Failed("upgrade: other error")),
        }
    }

    /// Serves a welcomed connection until it drops (false) or the fleet
    /// is told to stop (true).
    async fn serve(&self, ws: &mut Ws, codec: &Codec, mode: &mut watch::Receiver<Mode>) -> bool {
        let send = |m: Message| -> WsMessage {
            WsMessage::Binary(
                codec
                    .encode_to_vec(&Frame::Control(m))
                    .unwrap_or_default()
                    .into(),
            )
        };
        let mut seq = 0u64;
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Stop => return true,
                Mode::Heartbeats(n) if seq < n => {
                    seq += 1;
                    let hb = Message::Heartbeat(Heartbeat { seq, running: 0 });
                    if ws.send(send(hb)).await.is_err() {
                        return false;
                    }
                    if seq == n {
                        self.done_hb.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                _ => {}
            }
            tokio::select! {
                changed = mode.changed() => if changed.is_err() { return true },
                msg = ws.next() => match msg {
                    Some(Ok(WsMessage::Binary(b))) => {
                        if let Ok(Frame::Control(Message::RunCommand(r))) = codec.decode_message(&b) {
                            let now = rmm_core::io::Clock::unix_ms(&rmm_server::clock::TokioClock);
                            let output = ws.feed(send(Message::CommandOutput(CommandOutput {
                                command_id: r.command_id, stream: OutputStream::Stdout, offset: 0, data: "ok\n".into(),
                            }))).await;
                            let result = ws.send(send(Message::CommandResult(CommandResult {
                                command_id: r.command_id, outcome: CommandOutcome::Completed, exit_code: Some(0),
                                signal: None, error: None, stdout_bytes: 3, stderr_bytes: 0,
                                stdout_truncated: false, stderr_truncated: false,
                                started_at_ms: Some(now), finished_at_ms: now,
                            }))).await;
                            if output.is_err() || result.is_err() {
                                return false;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
        }
    }
}

/// Maps any error to a failed attempt with reason `why`.
fn fail<E>(why: &'static str) -> impl FnOnce(E) -> Ended {
    move |_| Ended::Failed(why)
}

/// Sends `hello` and waits for `welcome`, as the agent does.
async fn hello_welcome(ws: &mut Ws, codec: &Codec, id: Uuid) -> Result<(), &'static str> {
    let hello = Message::Hello(Hello {
        protocol: VersionRange::current(),
        agent_id: id,
        agent_version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        hostname: format!("load-{}", &id.to_string()[..8]),
        machine_uid: id.to_string(),
        channel: "stable".into(),
    });
    let bytes = codec
        .encode_to_vec(&Frame::Control(hello))
        .map_err(|_| "cannot encode hello")?;
    ws.send(WsMessage::Binary(bytes.into()))
        .await
        .map_err(|_| "closed before hello")?;
    // Bounded by the caller's timeout.
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => match codec.decode_message(&b) {
                Ok(Frame::Control(Message::Welcome(_))) => return Ok(()),
                Ok(Frame::Control(Message::Error(_))) => return Err("error instead of welcome"),
                _ => {}
            },
            Some(Ok(_)) => {}
            _ => return Err("closed before welcome"),
        }
    }
}

/// 127.0.0.2 for the first [`AGENTS_PER_SOURCE`] agents, then 127.0.0.3, ...
fn source_ip(i: usize) -> IpAddr {
    let n = u32::try_from(2 + i / AGENTS_PER_SOURCE).unwrap_or(u32::MAX);
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n.min(0x00ff_fffe)))
}
