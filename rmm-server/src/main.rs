//! The `rmm-server` binary: parses arguments and calls the library.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use rmm_api::UserCreate;
use rmm_core::channel::Channel;
use rmm_server::service::Actor;
use rmm_server::store::Role;
use rmm_server::tls::TlsSource;
use rmm_server::{Config, Server};

#[derive(Parser)]
#[command(name = "rmm-server", version, about = "rmm reference server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Data directory (SQLite file, JWT key).
    #[arg(long, env = "RMM_DATA_DIR", default_value = "./rmm-data")]
    data_dir: PathBuf,
    /// postgres://... or sqlite://PATH [default: sqlite in the data dir].
    #[arg(long, env = "RMM_DATABASE_URL")]
    database_url: Option<String>,
}

// Parsed once at start; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        /// Listen address (port 0 picks a free port).
        #[arg(long, env = "RMM_LISTEN", default_value = "127.0.0.1:3001")]
        listen: SocketAddr,
        #[command(flatten)]
        store: StoreArgs,
        /// URL agents and install scripts use to reach this server.
        #[arg(long, env = "RMM_PUBLIC_URL")]
        public_url: Option<String>,
        /// JWT signing secret (>= 32 chars) [default: generated in the data dir].
        #[arg(long, env = "RMM_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// First admin's e-mail (created when there are no users).
        #[arg(long, env = "RMM_ADMIN_EMAIL")]
        admin_email: Option<String>,
        /// First admin's password (environment only).
        #[arg(
            long = "admin-password-env-only",
            env = "RMM_ADMIN_PASSWORD",
            hide = true,
            hide_env_values = true
        )]
        admin_password: Option<String>,
        /// Directory of agent builds served under /api/v1/downloads/.
        #[arg(long, env = "RMM_DOWNLOADS_DIR")]
        downloads_dir: Option<PathBuf>,
        /// SHA-256 of this server's TLS certificate, pinned by enrolled agents.
        #[arg(long, env = "RMM_SERVER_CERT_SHA256")]
        server_cert_sha256: Option<String>,
        /// Largest request body in bytes.
        #[arg(long, env = "RMM_BODY_LIMIT", default_value_t = 8 * 1024 * 1024)]
        body_limit: usize,
        /// Command output kept per stream, in bytes.
        #[arg(long, env = "RMM_MAX_OUTPUT_BYTES", default_value_t = 16 * 1024 * 1024)]
        max_output_bytes: u64,
        /// Agent heartbeat interval in seconds (offline after 3 missed).
        #[arg(long, env = "RMM_HEARTBEAT_SECS", default_value_t = u64::from(rmm_core::delivery::HEARTBEAT_SECS))]
        heartbeat_secs: u64,
        /// Seconds after timeout_secs before the server marks a command timeout.
        #[arg(long, env = "RMM_COMMAND_GRACE_SECS", default_value_t = 30)]
        command_grace_secs: u64,
        /// Seconds a cancel may wait for the agent before it is final.
        #[arg(long, env = "RMM_CANCEL_GRACE_SECS", default_value_t = 30)]
        cancel_grace_secs: u64,
        /// Seconds between coalesced last_seen writes.
        #[arg(long, env = "RMM_LAST_SEEN_FLUSH_SECS", default_value_t = 2.0)]
        last_seen_flush_secs: f64,
        /// Enrollment token lifetime in seconds.
        #[arg(long, env = "RMM_ENROLL_TTL_SECS", default_value_t = 300)]
        enroll_ttl_secs: u64,
        /// A reverse proxy (address or CIDR) whose client-address header is
        /// believed; repeat or comma-separate. Without one, the TCP peer
        /// is the client.
        #[arg(long = "trusted-proxy", env = "RMM_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
        trusted_proxies: Vec<ipnet::IpNet>,
        /// The header trusted proxies put the client address in.
        #[arg(long, env = "RMM_CLIENT_IP_HEADER", default_value = "x-forwarded-for")]
        client_ip_header: String,
        /// Serve HTTPS/WSS with this PEM certificate chain (reloaded on SIGHUP).
        #[arg(
            long,
            env = "RMM_TLS_CERT",
            requires = "tls_key",
            conflicts_with = "tls_self_signed"
        )]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "RMM_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve HTTPS/WSS with a self-signed certificate generated once in
        /// the data dir for the public URL's host; enrollment pins it.
        #[arg(long, env = "RMM_TLS_SELF_SIGNED")]
        tls_self_signed: bool,
        /// Allow plain HTTP on a public URL that is not loopback (credentials
        /// then cross the network in clear text).
        #[arg(long, env = "RMM_INSECURE_HTTP")]
        insecure_http: bool,
        /// Days audit records are kept (0: forever).
        #[arg(long, env = "RMM_AUDIT_RETENTION_DAYS", default_value_t = 365)]
        audit_retention_days: u64,
        /// Most agent handshakes (upgrade until welcome, and TLS handshakes)
        /// in progress at once; beyond it agents get 503 with Retry-After.
        #[arg(long, env = "RMM_MAX_PENDING_HANDSHAKES", default_value_t = Config::default().max_pending_handshakes)]
        max_pending_handshakes: usize,
        /// The Retry-After of that 503, in seconds (agents add jitter).
        #[arg(long, env = "RMM_HANDSHAKE_RETRY_AFTER_SECS", default_value_t = Config::default().handshake_retry_after_secs)]
        handshake_retry_after_secs: u64,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Create an enrollment bundle directly in the store and print the
    /// token and install command (for local use; the API does the same).
    EnrollBundle {
        /// DNS-label name of the new agent.
        #[arg(long)]
        agent_name: String,
        /// URL the agent connects to (and the script is fetched from).
        #[arg(long, env = "RMM_PUBLIC_URL", default_value = "http://127.0.0.1:3001")]
        server_url: String,
        /// Release channel.
        #[arg(long, default_value = "stable")]
        channel: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from stdin.
    Add {
        /// E-mail (login name).
        #[arg(long)]
        email: String,
        /// admin, technician or readonly.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// An address (a /32 or /128) or a CIDR network.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))
}

fn store_config(store: &StoreArgs) -> Config {
    Config {
        data_dir: store.data_dir.clone(),
        database_url: store.database_url.clone(),
        ..Config::default()
    }
}

async fn offline_state(config: Config, public_url: String) -> anyhow::Result<rmm_server::AppState> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    Ok(rmm_server::open_state(config, public_url, rx).await?)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve {
            listen,
            store,
            public_url,
            jwt_secret,
            admin_email,
            admin_password,
            downloads_dir,
            server_cert_sha256,
            body_limit,
            max_output_bytes,
            heartbeat_secs,
            command_grace_secs,
            cancel_grace_secs,
            last_seen_flush_secs,
            enroll_ttl_secs,
            trusted_proxies,
            client_ip_header,
            audit_retention_days,
            tls_cert,
            tls_key,
            tls_self_signed,
            insecure_http,
            max_pending_handshakes,
            handshake_retry_after_secs,
        } => {
            let admin = match (admin_email, admin_password) {
                (Some(e), Some(p)) => Some((e, p)),
                (None, None) => None,
                _ => bail!("set both RMM_ADMIN_EMAIL and RMM_ADMIN_PASSWORD, or neither"),
            };
            if !(0.05..=3600.0).contains(&last_seen_flush_secs) {
                bail!("--last-seen-flush-secs must be between 0.05 and 3600");
            }
            let config = Config {
                listen,
                public_url,
                jwt_secret,
                admin,
                downloads_dir,
                server_cert_sha256: server_cert_sha256.map(|s| s.to_lowercase()),
                body_limit,
                max_output_bytes,
                heartbeat_interval: Duration::from_secs(heartbeat_secs.max(1)),
                command_grace: Duration::from_secs(command_grace_secs),
                cancel_grace: Duration::from_secs(cancel_grace_secs),
                last_seen_flush: Duration::from_secs_f64(last_seen_flush_secs),
                enroll_ttl: Duration::from_secs(enroll_ttl_secs.max(1)),
                trusted_proxies,
                client_ip_header: client_ip_header.to_ascii_lowercase(),
                tls: match (tls_cert, tls_key, tls_self_signed) {
                    (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
                    (_, _, true) => Some(TlsSource::SelfSigned),
                    _ => None,
                },
                insecure_http,
                max_pending_handshakes: max_pending_handshakes.max(1),
                handshake_retry_after_secs: handshake_retry_after_secs.max(1),
                audit_retention: (audit_retention_days > 0)
                    .then(|| Duration::from_secs(audit_retention_days.saturating_mul(86_400))),
                ..store_config(&store)
            };
            let server = Server::bind(config).await?;
            // Machine-readable: tests and scripts wait for this line.
            let scheme = if server.state().tls.is_some() {
                "https"
            } else {
                "http"
            };
            println!("rmm-server listening on {scheme}://{}", server.local_addr());
            if let Some(tls) = &server.state().tls {
                println!("rmm-server certificate sha256 {}", tls.served_sha256());
            }
            server.run(shutdown_signal()).await?;
            eprintln!("rmm-server stopped");
            Ok(())
        }
        Cmd::User {
            cmd: UserCmd::Add { email, role, store },
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let mut password = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut password)
                .context("cannot read the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let state = offline_state(store_config(&store), "http://127.0.0.1".into()).await?;
            let user = rmm_server::service::users::create(
                &state,
                &Actor::cli(),
                UserCreate::new(email, password, role),
            )
            .await?;
            println!("created {} user {} ({})", role, user.email, user.id);
            Ok(())
        }
        Cmd::EnrollBundle {
            agent_name,
            server_url,
            channel,
            json,
            store,
        } => {
            let channel: Channel = channel.parse().map_err(|_| {
                anyhow::anyhow!("unknown channel {channel:?}, expected stable or beta")
            })?;
            let state = offline_state(store_config(&store), server_url.clone()).await?;
            let b = rmm_server::service::enrollment::create_bundle(
                &state,
                &Actor::cli(),
                &agent_name,
                Some(&server_url),
                channel,
            )
            .await?;
            let b = rmm_server::api::enroll_response(b);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({
                        "token": b.token, "command": b.command, "expires_at": b.expires_at, "agent_id": b.agent_id,
                    }))?
                );
            } else {
                println!("agent_id:   {}", b.agent_id);
                println!("token:      {}", b.token);
                println!("expires_at: {}", b.expires_at);
                println!("install:    {}", b.command);
                println!(
                    "local:      RMM_ENROLL_TOKEN={} rmm-agent enroll --server {} --state-dir DIR",
                    b.token, server_url
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RMM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rmm-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rmm-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
