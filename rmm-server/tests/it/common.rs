//! Shared helpers: servers, HTTP calls, a fake agent over a real WebSocket,
//! throwaway PostgreSQL schemas.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmm_core::protocol::{Codec, Frame, Hello, Limits, Message, VersionRange, Welcome};
use rmm_server::clock::{ServerClock, Sleep};
use rmm_server::store::Store;
use rmm_server::{Config, ServerHandle};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use uuid::Uuid;

pub const ADMIN: (&str, &str) = ("admin@example.com", "admin-password-1");
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// A config for an in-process test server on a fresh SQLite file.
pub fn test_config(dir: &tempfile::TempDir) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        admin: Some((ADMIN.0.into(), ADMIN.1.into())),
        jwt_secret: Some(JWT_SECRET.into()),
        heartbeat_interval: Duration::from_secs(1),
        last_seen_flush: Duration::from_millis(200),
        sweep_interval: Duration::from_millis(200),
        hello_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// An HTTP client for the tests. reqwest is compiled with
/// `rustls-no-provider` in this workspace (feature unification with
/// rmm-client and rmm-proxmox, which bring their own ring config), and even
/// a plain-http client builds a TLS config, so the tests install ring as the
/// process default first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The wall clock now, unix milliseconds (the server's real clock; tests
/// that talk to a server on real time compare against it).
pub fn wall_ms() -> u64 {
    rmm_core::io::Clock::unix_ms(&rmm_server::clock::TokioClock)
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose hub runs on a [`DrivenClock`] (the clock returned).
    pub async fn start_driven(f: impl FnOnce(&mut Config)) -> (TestServer, DrivenClock) {
        let clock = DrivenClock::new();
        let hub_clock = clock.clone();
        let srv = Self::start_with(move |c| {
            c.clock = Arc::new(hub_clock);
            f(c);
        })
        .await;
        (srv, clock)
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir);
        f(&mut config);
        let handle = rmm_server::spawn(config).await.unwrap();
        TestServer {
            handle,
            http: http_client(),
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.url())
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.handle.state().store.clone()
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN.0, ADMIN.1).await
    }

    /// Creates a user with `role` and returns its token.
    pub async fn user(&self, role: &str) -> String {
        let admin = self.admin().await;
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let (status, body) = self
            .call(
                "POST",
                "/api/users",
                Some(&admin),
                Some(json!({"email": email, "password": "password-123", "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.login(&email, "password-123").await
    }

    /// A JSON call; returns status and the body (JSON, or a string).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        decode(resp).await
    }

    /// A call with a raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        decode(req.send().await.unwrap()).await
    }

    /// Enrolls an agent through the API; returns (id, secret, payload config).
    pub async fn enroll(&self, name: &str) -> (Uuid, String) {
        let admin = self.admin().await;
        enroll_via(&self.http, &self.handle.url(), &admin, name).await
    }

    pub async fn agent(&self, name: &str, machine_uid: &str) -> (FakeAgent, Welcome) {
        let (id, secret) = self.enroll(name).await;
        let mut agent = FakeAgent::connect(self.addr(), id, &secret).await.unwrap();
        let welcome = agent.hello(machine_uid).await;
        (agent, welcome)
    }

    pub async fn submit(&self, token: &str, agent: Uuid, body: Value) -> Uuid {
        let (status, b) = self
            .call(
                "POST",
                &format!("/api/agents/{agent}/command"),
                Some(token),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{b}");
        b["command_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn command(&self, token: &str, id: Uuid) -> Value {
        let (status, b) = self
            .call("GET", &format!("/api/commands/{id}"), Some(token), None)
            .await;
        assert_eq!(status, 200, "{b}");
        b
    }

    /// Polls a command until `pred` holds (at most 10 s).
    pub async fn wait_command(
        &self,
        token: &str,
        id: Uuid,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..200 {
            let c = self.command(token, id).await;
            if pred(&c) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "command {id} never reached the expected state: {}",
            self.command(token, id).await
        );
    }

    /// Like [`TestServer::wait_command`] on a server started with
    /// [`TestServer::start_driven`]: between reads the server's clock moves
    /// `step` forward, so deadlines pass in driven time.
    pub async fn wait_command_driven(
        &self,
        token: &str,
        id: Uuid,
        clock: &DrivenClock,
        step: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..400 {
            let c = self.command(token, id).await;
            if pred(&c) {
                return c;
            }
            clock.advance(step);
            tokio::task::yield_now().await;
        }
        panic!(
            "command {id} never reached the expected state: {}",
            self.command(token, id).await
        );
    }
}

/// A server clock ([`Config::clock`]) that moves only when the test
/// advances it: the hub's timers (the hello deadline, liveness probes, send
/// timeouts, the background loops) and every time the handlers and
/// services read (expiries, deadlines) follow it, while sockets and the
/// database run in real time.
#[derive(Debug, Clone)]
pub struct DrivenClock {
    origin: std::time::Instant,
    origin_ms: u64,
    now: Arc<tokio::sync::watch::Sender<std::time::Instant>>,
}

impl DrivenClock {
    /// A clock at the real time of its creation.
    pub fn new() -> Self {
        let origin = std::time::Instant::now();
        let origin_ms = rmm_core::io::Clock::unix_ms(&rmm_server::clock::TokioClock);
        DrivenClock {
            origin,
            origin_ms,
            now: Arc::new(tokio::sync::watch::channel(origin).0),
        }
    }

    /// Moves time forward; the hub's timers due by then fire.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by);
    }

    /// Now, to measure driven time from with [`DrivenInstant::elapsed`].
    pub fn instant(&self) -> DrivenInstant {
        DrivenInstant {
            clock: self.clone(),
            at: rmm_core::io::Clock::now(self),
        }
    }
}

impl rmm_core::io::Clock for DrivenClock {
    fn now(&self) -> std::time::Instant {
        *self.now.borrow()
    }

    fn unix_ms(&self) -> u64 {
        let since = rmm_core::io::Clock::now(self) - self.origin;
        self.origin_ms + u64::try_from(since.as_millis()).unwrap()
    }
}

impl ServerClock for DrivenClock {
    fn sleep_until(&self, deadline: std::time::Instant) -> Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            while *now.borrow_and_update() < deadline {
                if now.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// An instant of a [`DrivenClock`].
pub struct DrivenInstant {
    clock: DrivenClock,
    at: std::time::Instant,
}

impl DrivenInstant {
    /// Driven time since this instant.
    pub fn elapsed(&self) -> Duration {
        rmm_core::io::Clock::now(&self.clock) - self.at
    }
}

/// Waits (at most 10 s) until `cond` holds: another task is expected to
/// get there.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp.bytes().await.unwrap();
    let body = if ct.starts_with("application/json") {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    (status, body)
}

/// Asserts an error status and JSON error body with `code`.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

pub async fn enroll_via(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    name: &str,
) -> (Uuid, String) {
    let resp = http
        .post(format!("{base}/api/v1/enroll-bundle"))
        .bearer_auth(admin)
        .json(&json!({"agent_name": name}))
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap();
    let tgz = http
        .get(format!("{base}/api/v1/enroll-bundle/{token}.tgz"))
        .send()
        .await
        .unwrap();
    assert_eq!(tgz.status(), 200);
    let bytes = tgz.bytes().await.unwrap();
    let files = untar(&bytes);
    let config: Value =
        serde_json::from_slice(&files.iter().find(|f| f.0 == "config.json").unwrap().2).unwrap();
    (
        config["agent_id"].as_str().unwrap().parse().unwrap(),
        config["agent_secret"].as_str().unwrap().to_owned(),
    )
}

/// (name, mode, content) of each entry of a .tgz.
pub fn untar(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut ar = tar::Archive::new(gz);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, mode, data)
        })
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A fake agent speaking the real protocol over a real WebSocket.
pub struct FakeAgent {
    pub id: Uuid,
    pub ws: Ws,
    pub codec: Codec,
}

impl FakeAgent {
    /// Connects with `Authorization: Agent id:secret`; Err(status) when the
    /// upgrade is refused.
    pub async fn connect(addr: SocketAddr, id: Uuid, secret: &str) -> Result<FakeAgent, u16> {
        Self::connect_with(addr, id, &format!("Agent {id}:{secret}")).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        id: Uuid,
        authorization: &str,
    ) -> Result<FakeAgent, u16> {
        let mut req = format!("ws://{addr}/api/v1/agent/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", authorization.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(FakeAgent {
                id,
                ws,
                // Accept large run_command messages (multi-MiB scripts).
                codec: Codec::new(Limits {
                    max_control: 32 * 1024 * 1024,
                    ..Limits::default()
                }),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    pub fn hello_msg(&self, machine_uid: &str) -> Message {
        Message::Hello(Hello {
            protocol: VersionRange::current(),
            agent_id: self.id,
            agent_version: "0.1.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            hostname: "test-host".into(),
            machine_uid: machine_uid.into(),
            channel: "stable".into(),
        })
    }

    pub async fn hello(&mut self, machine_uid: &str) -> Welcome {
        let hello = self.hello_msg(machine_uid);
        self.send(&hello).await;
        match self.recv().await {
            Some(Message::Welcome(w)) => w,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &Message) {
        let bytes = self
            .codec
            .encode_to_vec(&Frame::Control(msg.clone()))
            .unwrap();
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    /// The next control message (pings skipped), None when closed; panics
    /// after 10 s.
    pub async fn recv(&mut self) -> Option<Message> {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("no message within 10 s")
    }

    /// Err(()) on timeout.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Message>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ())?;
            match next {
                Some(Ok(WsMessage::Binary(b))) => match self.codec.decode_message(&b).unwrap() {
                    Frame::Control(m) => return Ok(Some(m)),
                    Frame::Data { .. } => {}
                },
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The close code the server sent (waits up to 10 s).
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("connection not closed within 10 s"),
            }
        }
    }
}

/// A throwaway PostgreSQL schema, dropped on drop. None (with a printed
/// reason) when RMM_TEST_DATABASE_URL is unset.
pub struct PgSchema {
    pub base: String,
    pub schema: String,
}

impl PgSchema {
    pub async fn create() -> Option<PgSchema> {
        let Ok(base) = std::env::var("RMM_TEST_DATABASE_URL") else {
            eprintln!(
                "skipping: RMM_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let schema = format!("t_{}", Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&base)
            .await
            .expect("cannot reach RMM_TEST_DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        Some(PgSchema { base, schema })
    }

    /// A URL selecting the schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.base, self.schema)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let schema = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let _ =
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&pool)
                            .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// Spawns a prepared `rmm-server` command with stdout piped and returns
/// the child with its first `lines` stdout lines (the address line, then
/// the certificate line with TLS); the rest of stdout is drained.
pub fn spawn_server(
    mut cmd: std::process::Command,
    lines: usize,
) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rmm-server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut it = std::io::BufReader::new(stdout).lines();
        for _ in 0..lines {
            if let Some(Ok(line)) = it.next() {
                let _ = tx.send(line);
            }
        }
        for _ in it {}
    });
    let got = (0..lines)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("the server did not print its start lines")
        })
        .collect();
    (child, got)
}
