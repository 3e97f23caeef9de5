//! Server configuration. Every field has a default; the binary fills them
//! from flags and `RMM_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmm_core::delivery;

use crate::clock::{ServerClock, TokioClock, duration_ms};

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:3001`; port 0 picks one).
    pub listen: SocketAddr,
    /// Directory for the SQLite file and the JWT key (created).
    pub data_dir: PathBuf,
    /// `postgres://...` or `sqlite://PATH`; default `<data_dir>/rmm.db`.
    pub database_url: Option<String>,
    /// The URL agents and install scripts use to reach this server;
    /// default `http://<listen address>`.
    pub public_url: Option<String>,
    /// JWT signing secret; default: generated once and kept in
    /// `<data_dir>/jwt.key`.
    pub jwt_secret: Option<String>,
    /// First admin, created at start when no user exists.
    pub admin: Option<(String, String)>,
    /// Directory of agent builds served under `/api/v1/downloads/`.
    pub downloads_dir: Option<PathBuf>,
    /// SHA-256 of the server's TLS certificate, written into enrollment
    /// payloads for the agent to pin (lowercase hex), or `auto`: the
    /// certificate this server serves. A self-signed certificate
    /// ([`crate::tls::TlsSource::SelfSigned`]) is always pinned.
    pub server_cert_sha256: Option<String>,
    /// Serve HTTPS/WSS with this certificate (`None`: plain HTTP).
    pub tls: Option<crate::tls::TlsSource>,
    /// Allow plain HTTP on a public URL that is not loopback (tokens and
    /// secrets then cross the network in clear text); install scripts
    /// then pass `--insecure-http` to the agent.
    pub insecure_http: bool,
    /// Largest request body (default 8 MiB).
    pub body_limit: usize,
    /// Command output kept per stream (default 16 MiB).
    pub max_output_bytes: u64,
    /// Agent heartbeat interval (default 30 s); offline after 3 missed.
    pub heartbeat_interval: Duration,
    /// Time an agent has to say hello (default 10 s).
    pub hello_timeout: Duration,
    /// How often coalesced `last_seen` values are written (default 2 s).
    pub last_seen_flush: Duration,
    /// Extra time after `timeout_secs` before the server marks a command
    /// `timeout` itself (default 30 s).
    pub command_grace: Duration,
    /// How long a cancel may wait for the agent's answer (default 30 s).
    pub cancel_grace: Duration,
    /// How often the command/enrollment sweeper runs (default 1 s).
    pub sweep_interval: Duration,
    /// Enrollment token lifetime (default 5 min).
    pub enroll_ttl: Duration,
    /// JWT lifetime (default 24 h).
    pub token_ttl: Duration,
    /// The failed-login throttle's limits.
    pub login_throttle: crate::auth::ThrottlePolicy,
    /// Reverse proxies whose client-address header is believed (addresses
    /// or CIDR networks); empty: the TCP peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Unauthenticated audit rows (failed logins) written per window at
    /// most; the rest are counted into one `audit.suppressed` row.
    pub unauth_audit_per_window: u32,
    /// The window of that budget and of the aggregated
    /// `login.throttled` rows (default 1 min).
    pub unauth_audit_window: Duration,
    /// Audit rows older than this are deleted by the sweeper (the only
    /// path allowed to delete them); `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// The header a trusted proxy puts the client address in (default
    /// `x-forwarded-for`; the right-most address not itself a trusted
    /// proxy is the client).
    pub client_ip_header: String,
    /// Most agent handshakes (WebSocket upgrade until `welcome`, and TLS
    /// handshakes) in progress at once; beyond it an agent gets 503 with
    /// `Retry-After` (a TLS handshake is dropped) instead of queueing.
    pub max_pending_handshakes: usize,
    /// The `Retry-After` of that 503, seconds (agents add jitter).
    pub handshake_retry_after_secs: u64,
    /// Most commands an agent runs at once (sent in `welcome`).
    pub max_concurrent_commands: u32,
    /// Per-connection outbound queue, in messages.
    pub outbound_queue: usize,
    /// Close an agent whose socket accepts nothing for this long.
    pub send_timeout: Duration,
    /// An HTTP client must send its request headers within this time
    /// (default 30 s).
    pub header_read_timeout: Duration,
    /// The clock the agent hub reads (default [`TokioClock`]); tests pass
    /// one they drive.
    pub clock: Arc<dyn ServerClock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            data_dir: PathBuf::from("./rmm-data"),
            database_url: None,
            public_url: None,
            jwt_secret: None,
            admin: None,
            downloads_dir: None,
            server_cert_sha256: None,
            tls: None,
            insecure_http: false,
            body_limit: 8 * 1024 * 1024,
            max_output_bytes: 16 * 1024 * 1024,
            heartbeat_interval: delivery::HEARTBEAT_INTERVAL,
            hello_timeout: delivery::HELLO_TIMEOUT,
            last_seen_flush: Duration::from_secs(2),
            command_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            enroll_ttl: Duration::from_secs(300),
            token_ttl: Duration::from_secs(86_400),
            login_throttle: crate::auth::ThrottlePolicy::default(),
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            unauth_audit_per_window: 120,
            unauth_audit_window: Duration::from_secs(60),
            audit_retention: Some(Duration::from_secs(365 * 86_400)),
            max_pending_handshakes: 256,
            handshake_retry_after_secs: 2,
            max_concurrent_commands: 4,
            outbound_queue: 64,
            send_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            clock: Arc::new(TokioClock),
        }
    }
}

impl Config {
    /// How long after its `last_seen` an agent marked online still counts
    /// as online (ms): three missed heartbeats plus the `last_seen` flush
    /// delay and a second of slack.
    pub fn online_window_ms(&self) -> i64 {
        duration_ms(self.heartbeat_interval)
            .saturating_mul(i64::from(delivery::SILENT_INTERVALS))
            .saturating_add(duration_ms(self.last_seen_flush))
            .saturating_add(1000)
    }

    /// The database URL in effect.
    pub fn effective_database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("rmm.db").display()))
    }
}
