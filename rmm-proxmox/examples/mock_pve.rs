//! Runs the schema-validating mock Proxmox VE server until killed or until
//! its standard input closes.
//!
//! ```text
//! cargo run -p rmm-proxmox --features mock-server --example mock_pve -- \
//!     [--port N] [--write-config FILE] [--write-ca FILE]
//! ```
//!
//! Prints one JSON line on stdout — `{"url", "fingerprint", "token_id",
//! "token_secret", "node", "ca_pem"}` — which the Python/Node binding tests
//! read to connect. `--write-config` writes a client config file
//! (`selftest --config FILE` works against it). Schema violations are
//! printed on stderr as they happen and make the exit status 1.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use rmm_proxmox::mock::MockPve;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0u16;
    let mut write_config = None;
    let mut write_ca = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().context("--port needs a value")?.parse()?,
            "--write-config" => {
                write_config = Some(args.next().context("--write-config needs a file")?)
            }
            "--write-ca" => write_ca = Some(args.next().context("--write-ca needs a file")?),
            "-h" | "--help" => {
                println!("usage: mock_pve [--port N] [--write-config FILE] [--write-ca FILE]");
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let mock = MockPve::builder().port(port).start().await?;
    mock.expect_violations(); // reported below instead of panicking
    if let Some(path) = &write_config {
        std::fs::write(path, mock.config_json()).with_context(|| format!("writing {path}"))?;
    }
    if let Some(path) = &write_ca {
        std::fs::write(path, mock.ca_pem()).with_context(|| format!("writing {path}"))?;
    }
    let mut info: serde_json::Value = serde_json::from_str(&mock.config_json())?;
    info["ca_pem"] = mock.ca_pem().into();
    println!("{info}");
    std::io::stdout().flush()?;

    // stop when stdin closes (the parent test process went away)
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
        let _ = tx.send(());
    });
    let mut reported = 0;
    loop {
        tokio::select! {
            _ = &mut rx => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let violations = mock.violations();
        for v in &violations[reported..] {
            eprintln!("schema violation: {v}");
        }
        reported = violations.len();
    }
    if !mock.violations().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
