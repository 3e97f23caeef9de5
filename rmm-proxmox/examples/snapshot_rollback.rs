//! Snapshot a container before a risky change, and roll back if the change
//! went wrong.
//!
//! ```text
//! cargo run -p rmm-proxmox --example snapshot_rollback -- --config pve.json \
//!     --vmid 101 [--node NODE] [--name SNAP] [--keep]
//! ```
//!
//! Steps: permission preflight (VM.Snapshot and VM.Snapshot.Rollback on
//! `/vms/VMID`), snapshot, a stand-in "risky change" (a config update
//! guarded by the config digest: the description gets a marker line),
//! rollback to the snapshot, and — unless `--keep` — deleting the snapshot.
//! Every task is awaited with `wait_task`; a failed task prints the end of
//! its log.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rmm_proxmox::{Client, Config, Error, GuestState, LxcConfigUpdate, WaitOptions};

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
    let mut config_path: Option<PathBuf> = None;
    let mut vmid: Option<u32> = None;
    let mut node: Option<String> = None;
    let mut name: Option<String> = None;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config_path = Some(args.next().context("--config needs a file")?.into()),
            "--vmid" => vmid = Some(args.next().context("--vmid needs a number")?.parse()?),
            "--node" => node = Some(args.next().context("--node needs a name")?),
            "--name" => name = Some(args.next().context("--name needs a value")?),
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!(
                    "usage: snapshot_rollback [--config FILE] --vmid VMID [--node NODE] [--name SNAP] [--keep]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    let vmid = vmid.context("--vmid is required")?;
    let config = Config::load(config_path.as_deref())?;
    let client = Client::new(&config)?;

    // find the container's node unless given
    let node = match node.or(config.node.clone()) {
        Some(n) => n,
        None => {
            let mut found = None;
            for n in client.nodes().await? {
                if client
                    .lxc_list(&n.node)
                    .await?
                    .iter()
                    .any(|c| c.vmid == vmid)
                {
                    found = Some(n.node);
                    break;
                }
            }
            found.with_context(|| format!("container {vmid} not found on any node"))?
        }
    };

    let path = format!("/vms/{vmid}");
    let missing = client
        .check_privileges(&[
            (&path, "VM.Audit"),
            (&path, "VM.Snapshot"),
            (&path, "VM.Snapshot.Rollback"),
            (&path, "VM.Config.Options"),
        ])
        .await?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        bail!("the token lacks {}", list.join(", "));
    }

    let was_running = client.lxc_status(&node, vmid).await?.status == GuestState::Running;
    let snap = name.unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        format!("pre-change-{secs}")
    });
    let wait = WaitOptions::default();
    let report = |r: Result<rmm_proxmox::TaskOutcome, Error>| -> anyhow::Result<()> {
        match r {
            Ok(o) => {
                println!("  {} -> {}", o.upid, o.exitstatus);
                Ok(())
            }
            Err(Error::TaskFailed {
                upid,
                exitstatus,
                log_tail,
            }) => {
                eprintln!("  task {upid} failed: {exitstatus}");
                for line in log_tail {
                    eprintln!("    | {line}");
                }
                bail!("task failed")
            }
            Err(e) => Err(e.into()),
        }
    };

    println!("snapshot {vmid}@{snap} on {node}");
    let upid = client
        .snapshot_lxc(&node, vmid, &snap, Some("before a risky change"))
        .await?;
    report(client.wait_task(&upid, wait).await)?;

    println!("risky change: mark the description");
    let cfg = client.lxc_config(&node, vmid).await?;
    let mut description = cfg.description.clone().unwrap_or_default();
    description.push_str("\nrisky change in progress");
    let mut update = LxcConfigUpdate::new().description(&description);
    if let Some(d) = &cfg.digest {
        update = update.digest(d);
    }
    client.set_lxc_config(&node, vmid, &update).await?;

    println!("rollback {vmid}@{snap} (start afterwards: {was_running})");
    let upid = client.rollback_lxc(&node, vmid, &snap, was_running).await?;
    report(client.wait_task(&upid, wait).await)?;
    let after = client.lxc_config(&node, vmid).await?;
    if after.description != cfg.description {
        bail!("rollback did not restore the configuration");
    }
    println!("configuration restored");

    if !keep {
        println!("delete snapshot {vmid}@{snap}");
        let upid = client
            .delete_lxc_snapshot(&node, vmid, &snap, false)
            .await?;
        report(client.wait_task(&upid, wait).await)?;
    }
    Ok(())
}
