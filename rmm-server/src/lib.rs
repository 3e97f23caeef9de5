//! # rmm-server
//!
//! The reference rmm server as a library: the HTTP API of SPEC §2
//! ([`api`]), the agent WebSocket hub with durable command delivery
//! ([`hub`]), enrollment ([`enroll`]), authentication ([`auth`]), metrics
//! ([`metrics`]) and the [`store`] (SQLite or PostgreSQL). The
//! `rmm-server` binary only parses arguments and calls [`Server`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), rmm_server::ServerError> {
//! let mut config = rmm_server::Config::default();
//! config.listen = "127.0.0.1:0".parse().expect("address");
//! config.data_dir = "/tmp/rmm-demo".into();
//! let server = rmm_server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: all authoritative state (users, agents, queued
//! commands, output, results, enrollment tokens, audit) is in the store;
//! the process keeps only live connections, throttle counters and caches,
//! so several replicas can share one PostgreSQL database.

pub mod api;
pub mod audit;
pub mod auth;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod enroll;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod service;
pub mod store;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

pub use config::Config;
pub use error::{ApiError, ServerError};

use crate::auth::{JwtKeys, LoginThrottle, hash_password, random_token};
use crate::clock::ServerClock;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::service::Actor;
use crate::service::releases::ReleaseCatalog;
use crate::store::{Role, Store, StoreError};

/// An argon2id hash of a random password, verified against when the login
/// e-mail is unknown so both paths cost the same.
pub(crate) fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_token(16)).unwrap_or_default())
}

/// Everything a request handler needs.
pub struct App {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Configuration.
    pub config: Arc<Config>,
    /// JWT keys.
    pub jwt: JwtKeys,
    /// Login throttle.
    pub throttle: LoginThrottle,
    /// Bounds unauthenticated audit rows (shared with the hub's sweeper).
    pub audit_gate: Arc<audit::AuditGate>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The agent hub.
    pub hub: Arc<Hub>,
    /// The URL this server is reached at (no trailing slash).
    pub public_url: String,
    /// Bounds concurrent argon2 work (memory-hard: 19 MiB each).
    pub hash_permits: Semaphore,
    /// The `GET /api/agents` snapshot.
    pub agent_list: api::AgentListCache,
    /// The verified release catalog (shared with the hub).
    pub releases: Arc<ReleaseCatalog>,
    /// The clock ([`Config::clock`]): every timestamp and expiry of the
    /// server is read here.
    pub clock: Arc<dyn ServerClock>,
    /// The served certificate, when serving HTTPS.
    pub tls: Option<Arc<tls::TlsState>>,
}

/// The host of an `http(s)://host[:port][/...]` URL (brackets of an IPv6
/// literal removed).
pub use rmm_api::url_host;

pub use rmm_core::transport::is_loopback_host;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store.backend())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Shared handler state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    /// Now, unix milliseconds, from [`App::clock`].
    pub fn now_ms(&self) -> i64 {
        clock::unix_ms(&*self.clock)
    }

    /// The certificate pin written into enrollment bundles: the served
    /// certificate when it is self-signed or `--server-cert-sha256 auto`,
    /// else the configured pin, else none.
    pub fn enrollment_pin(&self) -> Option<String> {
        match self.pinned_tls() {
            Some(t) => Some(t.served_sha256()),
            None => self.config.server_cert_sha256.clone(),
        }
    }

    /// The served certificate when enrollment pins it (self-signed, or
    /// `--server-cert-sha256 auto`).
    fn pinned_tls(&self) -> Option<&tls::TlsState> {
        let auto = self.config.server_cert_sha256.as_deref() == Some("auto");
        self.tls.as_deref().filter(|t| t.is_self_signed() || auto)
    }

    /// The `curl` options that pin the served public key when enrollment
    /// pins a certificate curl cannot verify by itself (self-signed or
    /// `auto`): `-k --pinnedpubkey sha256//...` (curl still refuses any
    /// other key). Empty otherwise.
    pub fn curl_pin_args(&self) -> String {
        match self.pinned_tls().and_then(tls::TlsState::spki_sha256_b64) {
            Some(b64) => format!("-k --pinnedpubkey 'sha256//{b64}' "),
            None => String::new(),
        }
    }

    /// Whether install scripts and agents must be told `--insecure-http`
    /// for `url` (plain HTTP to a host that is not loopback).
    pub fn needs_insecure_http(url: &str) -> bool {
        url.starts_with("http://") && !url_host(url).is_some_and(|h| is_loopback_host(&h))
    }
}

/// Reads or creates the JWT secret: `config.jwt_secret`, else
/// `<data_dir>/jwt.key` (created with 0600 on first start).
fn jwt_secret(config: &Config) -> Result<Vec<u8>, ServerError> {
    if let Some(s) = &config.jwt_secret {
        if s.len() < 32 {
            return Err(ServerError::Config(
                "RMM_JWT_SECRET must have at least 32 characters".into(),
            ));
        }
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt.key");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(ServerError::Config(format!(
                "{} is too short; delete it to generate a new key (this logs everyone out)",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServerError::io(
                format!("cannot read {}", path.display()),
                e,
            ));
        }
    }
    let secret = random_token(48);
    datadir::write_private(&path, secret.as_bytes())
        .map_err(|e| ServerError::io(format!("cannot write {}", path.display()), e))?;
    Ok(secret.into_bytes())
}

/// Opens the store and builds the handler state (used by [`Server::bind`]
/// and the CLI's offline subcommands).
pub async fn open_state(
    config: Config,
    public_url: String,
    shutdown: watch::Receiver<bool>,
) -> Result<AppState, ServerError> {
    if let Some(pin) = &config.server_cert_sha256
        && pin != "auto"
        && (pin.len() != 64
            || !pin
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(ServerError::Config(
            "the server certificate pin must be 64 lowercase hex characters (sha256) or auto"
                .into(),
        ));
    }
    if config.server_cert_sha256.as_deref() == Some("auto") && config.tls.is_none() {
        return Err(ServerError::Config(
            "--server-cert-sha256 auto needs TLS (--tls-cert/--tls-key or --tls-self-signed)"
                .into(),
        ));
    }
    if config.body_limit < 1024 {
        return Err(ServerError::Config(
            "the body limit must be at least 1024 bytes".into(),
        ));
    }
    datadir::prepare(&config.data_dir).map_err(|e| {
        ServerError::io(
            format!(
                "cannot create or secure the data dir {}",
                config.data_dir.display()
            ),
            e,
        )
    })?;
    let tls = match &config.tls {
        Some(source) => {
            let host = url_host(&public_url).unwrap_or_else(|| "localhost".into());
            let state = tls::TlsState::open(source, &config.data_dir, &host)
                .map_err(|e| ServerError::Config(format!("TLS: {e}")))?;
            Some(Arc::new(state))
        }
        None => None,
    };
    let (store, bus) = store::open_with_bus(&config.effective_database_url()).await?;
    let secret = jwt_secret(&config)?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let public_url = public_url.trim_end_matches('/').to_owned();
    let releases = Arc::new(ReleaseCatalog::new(config.downloads_dir.clone()));
    let audit_gate = Arc::new(audit::AuditGate::new(
        config.unauth_audit_per_window,
        clock::duration_ms(config.unauth_audit_window),
    ));
    let hub = Hub::new(hub::HubParts {
        store: store.clone(),
        bus,
        config: config.clone(),
        metrics: metrics.clone(),
        shutdown,
        public_url: public_url.clone(),
        audit_gate: audit_gate.clone(),
        releases: releases.clone(),
    });
    let state = AppState(Arc::new(App {
        jwt: JwtKeys::new(&secret, config.token_ttl),
        throttle: LoginThrottle::new(config.login_throttle.clone()),
        audit_gate,
        store,
        metrics,
        hub,
        public_url,
        hash_permits: Semaphore::new(4),
        agent_list: api::AgentListCache::default(),
        releases,
        tls,
        clock: config.clock.clone(),
        config,
    }));
    if let Some((email, password)) = state.config.admin.clone() {
        ensure_first_admin(&state, &email, &password).await?;
    }
    Ok(state)
}

async fn ensure_first_admin(
    state: &AppState,
    email: &str,
    password: &str,
) -> Result<(), ServerError> {
    if state.store.count_users().await? > 0 {
        return Ok(());
    }
    let req = rmm_api::UserCreate::new(email, password, Role::Admin);
    let user = service::users::create(state, &Actor::system(), req).await;
    match user {
        Ok(user) => tracing::info!(email = %user.email, "created the first admin"),
        // Another replica made it first.
        Err(service::ServiceError::Store(StoreError::Conflict(_))) => {}
        Err(service::ServiceError::Store(e)) => return Err(e.into()),
        Err(e) => {
            return Err(ServerError::Config(format!(
                "RMM_ADMIN_EMAIL/RMM_ADMIN_PASSWORD: {e}"
            )));
        }
    }
    Ok(())
}

/// A bound, not yet running server.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listen address, opens and migrates the store, creates the
    /// first admin if configured.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServerError::io(format!("cannot listen on {}", config.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::io("cannot read the bound address", e))?;
        if config.public_url.is_none() && addr.ip().is_unspecified() {
            tracing::warn!(
                %addr,
                "listening on all interfaces without --public-url: install commands and agent \
                 configs will name {addr}; set RMM_PUBLIC_URL to the address agents should use"
            );
        }
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        if App::needs_insecure_http(&public_url) {
            if !config.insecure_http {
                return Err(ServerError::Config(format!(
                    "refusing plain HTTP on {public_url}: tokens, passwords and agent secrets \
                     would cross the network in clear text. Serve HTTPS (--tls-self-signed, or \
                     --tls-cert/--tls-key), listen on loopback behind a TLS proxy, or pass \
                     --insecure-http if you really mean it"
                )));
            }
            tracing::warn!(%public_url, "serving plain HTTP to the network (--insecure-http): credentials cross it in clear text");
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = open_state(config, public_url, shutdown_rx).await?;
        Ok(Server {
            listener,
            addr,
            state,
            shutdown_tx,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handler state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish, closes agent sockets (close code 1001)
    /// and flushes `last_seen`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            addr,
            state,
            shutdown_tx,
        } = self;
        let background = tokio::spawn(state.hub.clone().run_background());
        let acceptor = state
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config()));
        let reloader = state.tls.clone().map(|t| tokio::spawn(reload_on_sighup(t)));
        let tls_handshakes = Arc::new(Semaphore::new(state.config.max_pending_handshakes.max(1)));
        let app = api::router(state.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        // Limits on what a client may do before its request reaches a
        // handler: headers within 30 s (slowloris), a bounded read buffer.
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(state.config.header_read_timeout)
            .max_buf_size(64 * 1024)
            .keep_alive(true);
        tracing::info!(%addr, store = state.store.backend(), "rmm-server listening");
        let mut conns = tokio::task::JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while conns.try_join_next().is_some() {}
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let router = app.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
                },
            );
            let http = http.clone();
            let stop = shutdown_tx.subscribe();
            let acceptor = acceptor.clone();
            let handshake_timeout = state.config.header_read_timeout;
            // TLS handshakes are bounded too; over the bound the connection
            // is closed at once (no HTTP is spoken yet to say 503).
            let tls_permit = match &acceptor {
                Some(_) => match tls_handshakes.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        state.metrics.handshakes_refused.inc();
                        continue;
                    }
                },
                None => None,
            };
            conns.spawn(async move {
                match acceptor {
                    None => serve_connection(http, tcp, svc, stop, peer).await,
                    Some(acceptor) => {
                        let accepted =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                        drop(tls_permit);
                        match accepted {
                            Ok(Ok(tls)) => serve_connection(http, tls, svc, stop, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(listener);
        // Stop: in-flight requests finish, agent sockets close with 1001.
        let _ = shutdown_tx.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some connections did not finish within 10 s of shutdown");
        }
        state.hub.wait_closed(Duration::from_secs(5)).await;
        let _ = background.await;
        if let Some(r) = reloader {
            r.abort();
        }
        Ok(())
    }
}

/// Serves one accepted connection (plain or TLS) until it ends or the
/// server stops (then gracefully).
async fn serve_connection<I, S>(
    http: hyper::server::conn::http1::Builder,
    io: I,
    svc: S,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Reloads the TLS certificate files on every SIGHUP (renewals); a failed
/// reload keeps the old certificate and says why.
async fn reload_on_sighup(tls: Arc<tls::TlsState>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS reload needs a restart");
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(sha) => tracing::info!(sha256 = %sha, "reloaded the TLS certificate"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate")
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(tls);
}

/// A server running in a background task (for tests and embedding).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handler state (store, hub, ...).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Shuts down gracefully and waits.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Config(format!("server task failed: {e}"))),
        }
    }
}

/// Binds and runs a server in a background task; returns once it is
/// listening.
pub async fn spawn(config: Config) -> Result<ServerHandle, ServerError> {
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let state = server.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(ServerHandle {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}
