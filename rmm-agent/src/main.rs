//! `rmm-agent`: parses the command line and wires the library's parts.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use rmm_agent::daemon::{Agent, AgentOptions};
use rmm_agent::enroll::{EnrollOptions, enroll};
use rmm_agent::identity::{DEFAULT_STATE_DIR, parse_pin};
use rmm_agent::plugins::PluginOptions;
use rmm_agent::runner::RunnerConfig;
use rmm_core::io::Backoff;

#[derive(Parser)]
#[command(
    name = "rmm-agent",
    version,
    about = "rmm agent: runs commands for an rmm server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// State directory (identity, command results).
    #[arg(long, env = "RMM_AGENT_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Replaces /etc/machine-id as the input of the machine uid (cloned
    /// images, tests).
    #[arg(long, env = "RMM_AGENT_MACHINE_ID")]
    machine_id: Option<String>,
    /// Allow plain http:// to a server that is not loopback (127.0.0.0/8,
    /// ::1, localhost): the token and agent secret then cross the network
    /// unencrypted. Use https:// instead where you can.
    #[arg(
        long,
        env = "RMM_INSECURE_HTTP",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    insecure_http: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Redeem a one-time enrollment token and store the identity.
    Enroll {
        /// Server base URL, e.g. https://rmm.example.com.
        #[arg(long)]
        server: String,
        /// The token; `-` reads it from stdin. Prefer --token-file or
        /// RMM_ENROLL_TOKEN: arguments are visible to other local users.
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// File holding the token; `-` is stdin.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// SHA-256 of the server's certificate, for a self-signed server.
        #[arg(long)]
        server_cert_sha256: Option<String>,
        /// Also write the systemd unit from the payload to this path.
        #[arg(long)]
        install_unit: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Run the agent daemon.
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Check state dir, identity, server reachability and clock.
    Selftest {
        #[command(flatten)]
        common: Common,
        /// Also exchange hello/welcome (the server then replaces a running
        /// agent's connection for a moment).
        #[arg(long)]
        handshake: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Plugins directory [default: <state-dir>/plugins].
    #[arg(long, env = "RMM_AGENT_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Seconds between plugin runs.
    #[arg(long, env = "RMM_AGENT_PLUGIN_INTERVAL_SECS", default_value_t = 300)]
    plugin_interval_secs: u64,
    /// Per-plugin timeout in seconds.
    #[arg(long, env = "RMM_AGENT_PLUGIN_TIMEOUT_SECS", default_value_t = 30)]
    plugin_timeout_secs: u64,
    /// First reconnect ceiling (ms).
    #[arg(long, env = "RMM_AGENT_BACKOFF_BASE_MS", default_value_t = 1000)]
    backoff_base_ms: u64,
    /// Largest reconnect ceiling (ms).
    #[arg(long, env = "RMM_AGENT_BACKOFF_CAP_MS", default_value_t = 300_000)]
    backoff_cap_ms: u64,
    /// A connection up this long resets the backoff (s).
    #[arg(long, env = "RMM_AGENT_STABLE_AFTER_SECS", default_value_t = 60)]
    stable_after_secs: u64,
    /// Upper bound of the random delay before the first connection (ms).
    #[arg(long, env = "RMM_AGENT_INITIAL_DELAY_MS", default_value_t = 5000)]
    initial_delay_ms: u64,
    /// Time between SIGTERM and SIGKILL when stopping a command (ms).
    #[arg(long, env = "RMM_AGENT_KILL_GRACE_MS", default_value_t = 5000)]
    kill_grace_ms: u64,
    /// Largest control frame accepted from the server (bytes).
    #[arg(long, env = "RMM_AGENT_MAX_CONTROL_BYTES", default_value_t = rmm_core::delivery::AGENT_MAX_CONTROL)]
    max_control_bytes: usize,
    /// The loginctl used to find the active user session.
    #[arg(
        long,
        env = "RMM_AGENT_LOGINCTL",
        default_value = "loginctl",
        hide = true
    )]
    loginctl: PathBuf,
}

fn read_token(token: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let raw = match (token, file) {
        (Some(t), _) if t != "-" => t,
        (Some(_), _) => read_stdin()?,
        (None, Some(f)) if f.as_os_str() == "-" => read_stdin()?,
        (None, Some(f)) => {
            let bytes = rmm_agent::fsutil::read_bounded(&f, 4096)
                .with_context(|| format!("cannot read the token file {}", f.display()))?;
            String::from_utf8(bytes).context("the token file is not UTF-8")?
        }
        (None, None) => match std::env::var("RMM_ENROLL_TOKEN") {
            Ok(t) => t,
            Err(_) => bail!(
                "no enrollment token: pass --token-file FILE, --token - (stdin) or set RMM_ENROLL_TOKEN"
            ),
        },
    };
    Ok(raw.trim().to_owned())
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut s)
        .context("cannot read the token from stdin")?;
    Ok(s)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Enroll {
            server,
            token,
            token_file,
            server_cert_sha256,
            install_unit,
            common,
        } => {
            let token = read_token(token, token_file)?;
            let pin = server_cert_sha256
                .as_deref()
                .map(parse_pin)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let opts = EnrollOptions {
                server,
                token,
                state_dir: common.state_dir,
                server_cert_sha256: pin,
                install_unit: install_unit.clone(),
                timeout: Duration::from_secs(60),
                insecure_http: common.insecure_http,
            };
            if let Ok(old) = rmm_agent::identity::Identity::load(&opts.state_dir) {
                eprintln!(
                    "note: replacing the identity of agent {} ({}) in {}",
                    old.agent_name,
                    old.agent_id,
                    opts.state_dir.display()
                );
            }
            let (id, state) = enroll(&opts).await?;
            println!(
                "enrolled as {} ({}) with {}; identity stored in {}",
                id.agent_name,
                id.agent_id,
                id.server_url,
                state.identity_path().display()
            );
            if let Some(unit) = install_unit {
                println!("systemd unit written to {}", unit.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { common, run } => {
            let mut opts = AgentOptions::new(common.state_dir);
            opts.machine_id = common.machine_id;
            opts.insecure_http = common.insecure_http;
            opts.backoff = Backoff {
                base: Duration::from_millis(run.backoff_base_ms.max(1)),
                cap: Duration::from_millis(run.backoff_cap_ms.max(run.backoff_base_ms).max(1)),
            };
            opts.stable_after = Duration::from_secs(run.stable_after_secs);
            opts.initial_delay = Duration::from_millis(run.initial_delay_ms);
            opts.max_control_bytes = run.max_control_bytes;
            opts.runner = RunnerConfig {
                kill_grace: Duration::from_millis(run.kill_grace_ms),
                loginctl: run.loginctl,
                ..RunnerConfig::default()
            };
            opts.plugins = PluginOptions {
                dir: run.plugins_dir,
                interval: Duration::from_secs(run.plugin_interval_secs.max(1)),
                timeout: Duration::from_secs(run.plugin_timeout_secs.max(1)),
            };
            let agent = Agent::open(opts)?;
            tracing::info!(
                agent_id = %agent.identity().agent_id,
                server = %agent.identity().server_url,
                machine_uid = %agent.hello().machine_uid,
                version = rmm_agent::AGENT_VERSION,
                "rmm-agent starting"
            );
            agent.run(shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Selftest { common, handshake } => {
            let report = rmm_agent::selftest::run(
                common.state_dir,
                common.machine_id.as_deref(),
                Duration::from_secs(10),
                handshake,
                common.insecure_http,
            )
            .await;
            println!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RMM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
