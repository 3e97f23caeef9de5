//! `rmm-testkit-mock-pve`: the schema-validating mock Proxmox VE of
//! `rmm-proxmox` (feature `mock-server`), driven over stdin/stdout so the
//! Python and Node binding suites can script it.
//!
//! On start it prints one JSON line — `{"url", "fingerprint", "token_id",
//! "token_secret", "node", "ca_pem"}` — then reads one JSON command per
//! line on stdin and answers each with one JSON line on stdout
//! (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`):
//!
//! - `{"op": "next_task", "exitstatus": "OK" | "...", "log_lines": N,
//!   "running_polls": N}`: how the next task created behaves;
//! - `{"op": "set_permissions", "path": "/vms/101", "privileges": [...]}`;
//! - `{"op": "add_container", "node", "vmid", "hostname", "running"}`;
//! - `{"op": "snapshot_names", "vmid"}` -> `{"ok": true, "names": [...]}`;
//! - `{"op": "is_running", "vmid"}` -> `{"ok": true, "running": bool|null}`;
//! - `{"op": "config_value", "vmid", "key"}` -> `{"ok": true, "value": ...}`;
//! - `{"op": "violations"}` -> `{"ok": true, "violations": [...]}` (and
//!   clears them);
//! - `{"op": "requests"}` -> `{"ok": true, "requests": [{"method", "path",
//!   "status"}]}`.
//!
//! It exits when stdin closes (the test process went away), with status 1
//! if any request violated the Proxmox API schema.

use anyhow::{Context, bail};
use rmm_proxmox::mock::{MockPve, TaskScript};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn str_field<'a>(cmd: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    cmd.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("`{key}` must be a string"))
}

fn u32_field(cmd: &Value, key: &str) -> anyhow::Result<u32> {
    let n = cmd
        .get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("`{key}` must be a number"))?;
    u32::try_from(n).with_context(|| format!("`{key}` is too large"))
}

fn handle(mock: &MockPve, cmd: &Value) -> anyhow::Result<Value> {
    let op = str_field(cmd, "op")?;
    Ok(match op {
        "next_task" => {
            let exitstatus = cmd
                .get("exitstatus")
                .and_then(Value::as_str)
                .unwrap_or("OK");
            let log_lines = cmd.get("log_lines").and_then(Value::as_u64).unwrap_or(2) as usize;
            let mut script = if exitstatus == "OK" {
                TaskScript::default()
            } else {
                TaskScript::failing(exitstatus, log_lines)
            };
            if let Some(n) = cmd.get("running_polls").and_then(Value::as_u64) {
                script.running_polls = u32::try_from(n).unwrap_or(u32::MAX);
            }
            mock.next_task(script);
            json!({"ok": true})
        }
        "set_permissions" => {
            let path = str_field(cmd, "path")?;
            let privileges: Vec<&str> = cmd
                .get("privileges")
                .and_then(Value::as_array)
                .context("`privileges` must be a list")?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            mock.set_permissions(path, &privileges);
            json!({"ok": true})
        }
        "add_container" => {
            let node = cmd.get("node").and_then(Value::as_str).unwrap_or("pve1");
            let running = cmd.get("running").and_then(Value::as_bool).unwrap_or(false);
            mock.add_container(
                node,
                u32_field(cmd, "vmid")?,
                str_field(cmd, "hostname")?,
                running,
            );
            json!({"ok": true})
        }
        "snapshot_names" => {
            json!({"ok": true, "names": mock.snapshot_names(u32_field(cmd, "vmid")?)})
        }
        "is_running" => json!({"ok": true, "running": mock.is_running(u32_field(cmd, "vmid")?)}),
        "config_value" => json!({
            "ok": true,
            "value": mock.config_value(u32_field(cmd, "vmid")?, str_field(cmd, "key")?),
        }),
        "violations" => json!({"ok": true, "violations": mock.take_violations()}),
        "requests" => {
            let requests: Vec<Value> = mock
                .requests()
                .into_iter()
                .map(|r| json!({"method": r.method, "path": r.path, "status": r.status}))
                .collect();
            json!({"ok": true, "requests": requests})
        }
        other => bail!("unknown op `{other}`"),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mock = MockPve::builder().start().await?;
    // Violations are reported through `violations` and the exit status
    // instead of a panic on drop.
    mock.expect_violations();
    let mut info: Value = serde_json::from_str(&mock.config_json())?;
    info["ca_pem"] = mock.ca_pem().into();
    let mut out = tokio::io::stdout();
    out.write_all(format!("{info}\n").as_bytes()).await?;
    out.flush().await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line)
            .context("not a JSON line")
            .and_then(|cmd| handle(&mock, &cmd))
        {
            Ok(v) => v,
            Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
        };
        out.write_all(format!("{answer}\n").as_bytes()).await?;
        out.flush().await?;
    }
    let violations = mock.violations();
    for v in &violations {
        eprintln!("schema violation: {v}");
    }
    if !violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
