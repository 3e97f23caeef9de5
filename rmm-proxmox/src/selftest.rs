//! The self-test behind `examples/selftest.rs`: a read-only health report
//! (version, nodes, storage, containers, privilege preflight) and an opt-in
//! task test (snapshot -> rollback -> delete snapshot through
//! [`Client::wait_task`]).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::error::Error;
use crate::lenient::Lenient;
use crate::task::WaitOptions;
use crate::types::{GuestState, NodeState};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckStatus {
    /// Fine.
    Pass,
    /// Works, but something deserves attention.
    Warn,
    /// Broken.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: CheckStatus,
    /// Details.
    pub detail: String,
}

/// The self-test report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }

    /// No check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    /// The first check with `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let tag = match c.status {
                CheckStatus::Pass => "PASS",
                CheckStatus::Warn => "WARN",
                CheckStatus::Fail => "FAIL",
            };
            writeln!(f, "[{tag}] {}: {}", c.name, c.detail)?;
        }
        let fails = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .count();
        let warns = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Warn)
            .count();
        write!(
            f,
            "{} checks, {fails} failed, {warns} warnings",
            self.checks.len()
        )
    }
}

/// What the self-test does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Restrict the report to this node.
    pub node: Option<String>,
    /// Run snapshot -> rollback -> delete snapshot on this container.
    pub task_test_vmid: Option<u32>,
    /// How to wait for the task test's tasks.
    pub wait: WaitOptions,
}

fn gib(bytes: &Lenient<u64>) -> String {
    bytes
        .get()
        .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "?".into())
}

/// Runs the self-test. Never panics and never stops at the first failure
/// unless nothing else can work (the version call).
pub async fn run(client: &Client, options: &Options) -> Report {
    let mut report = Report::default();
    match client.version().await {
        Ok(v) => report.push(
            "version",
            CheckStatus::Pass,
            format!("proxmox ve {} (release {})", v.version, v.release),
        ),
        Err(e) => {
            report.push("version", CheckStatus::Fail, e.to_string());
            return report;
        }
    }
    let nodes = match client.nodes().await {
        Ok(n) => n,
        Err(e) => {
            report.push("nodes", CheckStatus::Fail, e.to_string());
            return report;
        }
    };
    let names: Vec<String> = nodes
        .iter()
        .map(|n| format!("{} ({:?})", n.node, n.status).to_lowercase())
        .collect();
    report.push("nodes", CheckStatus::Pass, names.join(", "));
    let selected: Vec<_> = nodes
        .iter()
        .filter(|n| options.node.as_deref().is_none_or(|want| want == n.node))
        .collect();
    if selected.is_empty() {
        report.push(
            "nodes",
            CheckStatus::Fail,
            format!(
                "node {} not in the cluster",
                options.node.as_deref().unwrap_or("?")
            ),
        );
    }
    let mut task_node = None;
    for n in selected {
        let node = n.node.as_str();
        if n.status != NodeState::Online {
            report.push(
                format!("node {node}"),
                CheckStatus::Warn,
                "not online, skipped",
            );
            continue;
        }
        match client.node_status(node).await {
            Ok(s) => report.push(
                format!("node {node}"),
                CheckStatus::Pass,
                format!(
                    "cpu {:.0}%, load {}, memory {} of {}, root fs {} free, {}",
                    s.cpu.get().unwrap_or(0.0) * 100.0,
                    match s.loadavg.parsed() {
                        Some(load) => format!("{load:?}"),
                        None => s.loadavg.raw().to_string(),
                    },
                    gib(&s.memory.used),
                    gib(&s.memory.total),
                    gib(&s.rootfs.avail),
                    s.pveversion.unwrap_or_default()
                ),
            ),
            Err(e) => report.push(format!("node {node}"), CheckStatus::Fail, e.to_string()),
        }
        match client.storage(node).await {
            Ok(list) => {
                for st in list {
                    let inactive = st.active == Some(false);
                    let status = if inactive || st.used_fraction.get().unwrap_or(0.0) > 0.9 {
                        CheckStatus::Warn
                    } else {
                        CheckStatus::Pass
                    };
                    report.push(
                        format!("storage {node}/{}", st.storage),
                        status,
                        format!(
                            "{} [{}], {:.0}% used, {} free{}",
                            st.kind,
                            st.content,
                            st.used_fraction.get().unwrap_or(0.0) * 100.0,
                            gib(&st.avail),
                            if st.active == Some(false) {
                                ", inactive"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
            Err(e) => report.push(format!("storage {node}"), CheckStatus::Fail, e.to_string()),
        }
        match client.lxc_list(node).await {
            Ok(list) => {
                let running = list
                    .iter()
                    .filter(|c| c.status == GuestState::Running)
                    .count();
                if let Some(vmid) = options.task_test_vmid
                    && list.iter().any(|c| c.vmid == vmid)
                {
                    task_node = Some(node.to_owned());
                }
                report.push(
                    format!("containers {node}"),
                    CheckStatus::Pass,
                    format!("{} containers, {running} running", list.len()),
                );
            }
            Err(e) => report.push(
                format!("containers {node}"),
                CheckStatus::Fail,
                e.to_string(),
            ),
        }
        let wanted = [
            (format!("/nodes/{node}"), "Sys.Audit"),
            ("/vms".to_owned(), "VM.Audit"),
            ("/storage".to_owned(), "Datastore.Audit"),
        ];
        preflight(
            client,
            &mut report,
            &format!("privileges {node}"),
            &wanted,
            CheckStatus::Warn,
        )
        .await;
    }
    if let Some(vmid) = options.task_test_vmid {
        match task_node {
            None => report.push(
                "task test",
                CheckStatus::Fail,
                format!("container {vmid} not found on the selected nodes"),
            ),
            Some(node) => task_test(client, &mut report, &node, vmid, options.wait).await,
        }
    }
    report
}

async fn preflight(
    client: &Client,
    report: &mut Report,
    name: &str,
    wanted: &[(String, &str)],
    severity: CheckStatus,
) -> bool {
    let pairs: Vec<(&str, &str)> = wanted.iter().map(|(p, v)| (p.as_str(), *v)).collect();
    match client.check_privileges(&pairs).await {
        Ok(missing) if missing.is_empty() => {
            let list: Vec<String> = pairs.iter().map(|(p, v)| format!("{v} on {p}")).collect();
            report.push(
                name,
                CheckStatus::Pass,
                format!("token holds {}", list.join(", ")),
            );
            true
        }
        Ok(missing) => {
            let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
            report.push(name, severity, format!("token lacks {}", list.join(", ")));
            false
        }
        Err(e) => {
            report.push(name, severity, e.to_string());
            false
        }
    }
}

async fn task_test(client: &Client, report: &mut Report, node: &str, vmid: u32, wait: WaitOptions) {
    let path = format!("/vms/{vmid}");
    let wanted = [
        (path.clone(), "VM.Audit"),
        (path.clone(), "VM.Snapshot"),
        (path, "VM.Snapshot.Rollback"),
    ];
    if !preflight(
        client,
        report,
        "task test privileges",
        &wanted,
        CheckStatus::Fail,
    )
    .await
    {
        return;
    }
    let was_running = match client.lxc_status(node, vmid).await {
        Ok(s) => s.status == GuestState::Running,
        Err(e) => {
            report.push("task test", CheckStatus::Fail, e.to_string());
            return;
        }
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let snap = format!("rmm-selftest-{stamp}");
    let step = |report: &mut Report, name: &str, r: Result<crate::TaskOutcome, Error>| match r {
        Ok(o) => {
            let status = if o.warnings > 0 {
                CheckStatus::Warn
            } else {
                CheckStatus::Pass
            };
            report.push(name, status, format!("{} ({})", o.upid, o.exitstatus));
            true
        }
        Err(e) => {
            let mut detail = e.to_string();
            if let Error::TaskFailed { log_tail, .. } = &e
                && let Some(last) = log_tail.last()
            {
                detail.push_str(&format!(" [log: {last}]"));
            }
            report.push(name, CheckStatus::Fail, detail);
            false
        }
    };
    let r = async {
        let upid = client
            .snapshot_lxc(node, vmid, &snap, Some("rmm-proxmox self-test"))
            .await?;
        client.wait_task(&upid, wait).await
    }
    .await;
    if !step(report, &format!("snapshot {vmid}@{snap}"), r) {
        return;
    }
    let r = async {
        let upid = client.rollback_lxc(node, vmid, &snap, was_running).await?;
        client.wait_task(&upid, wait).await
    }
    .await;
    step(report, &format!("rollback {vmid}@{snap}"), r);
    // clean up even if the rollback failed
    let r = async {
        let upid = client.delete_lxc_snapshot(node, vmid, &snap, false).await?;
        client.wait_task(&upid, wait).await
    }
    .await;
    step(report, &format!("delete snapshot {vmid}@{snap}"), r);
}
