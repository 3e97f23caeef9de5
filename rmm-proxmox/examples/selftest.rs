//! Read-only health report of a Proxmox VE host or cluster, with an opt-in
//! task test.
//!
//! ```text
//! cargo run -p rmm-proxmox --example selftest -- --config pve.json \
//!     [--node NODE] [--task-test VMID] [--timeout-secs N]
//! ```
//!
//! The report covers version, nodes, storage, containers and a privilege
//! preflight. `--task-test VMID` snapshots that container, rolls it back
//! and deletes the snapshot, waiting for each task. `RMM_PVE_*` environment
//! variables override the config file (see `rmm_proxmox::Config`). Exits
//! non-zero if any check failed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use rmm_proxmox::selftest::{self, Options};
use rmm_proxmox::{Client, Config, WaitOptions};

struct Args {
    config: Option<PathBuf>,
    node: Option<String>,
    task_test: Option<u32>,
    timeout: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut out = Args {
        config: None,
        node: None,
        task_test: None,
        timeout: Duration::from_secs(300),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => out.config = Some(args.next().context("--config needs a file")?.into()),
            "--node" => out.node = Some(args.next().context("--node needs a name")?),
            "--task-test" => {
                let v = args.next().context("--task-test needs a vmid")?;
                out.task_test = Some(v.parse().with_context(|| format!("bad vmid {v}"))?);
            }
            "--timeout-secs" => {
                let v = args.next().context("--timeout-secs needs a number")?;
                out.timeout = Duration::from_secs(v.parse()?);
            }
            "-h" | "--help" => {
                println!(
                    "usage: selftest [--config FILE] [--node NODE] [--task-test VMID] [--timeout-secs N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // library warnings (e.g. insecure tls) go to stderr; RUST_LOG=debug for more
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = parse_args()?;
    let config = Config::load(args.config.as_deref())?;
    let client = Client::new(&config)?;
    let options = Options {
        node: args.node.or(config.node.clone()),
        task_test_vmid: args.task_test,
        wait: WaitOptions::with_timeout(args.timeout),
    };
    println!("proxmox self-test of {} as {}", config.url, config.token);
    let report = selftest::run(&client, &options).await;
    println!("{report}");
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
