//! Proxmox VE (`rmm_proxmox`): connection settings -> a checked
//! [`rmm_proxmox::Config`], option words and values -> typed requests, each
//! operation once as a future on [`Pve`], and the typed readings flattened
//! into plain structs (lenient numbers as `Option`s, enums as their wire
//! words, property strings in canonical form).

use std::collections::BTreeMap;

use rmm_proxmox::{
    BackupMode, Client, Compression, Config, LxcConfigUpdate, RestoreRequest, Upid, VzdumpRequest,
    WaitOptions,
};

use crate::args::{Lang, seconds};
use crate::error::ErrorInfo;

/// The wire word of a serialisable enum (`running`, `online`).
fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Connection settings as given; `None` takes `rmm_proxmox`'s default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectArgs {
    /// `https://host:8006`.
    pub url: String,
    /// `USER@REALM!TOKENID`.
    pub token_id: String,
    /// The token's secret.
    pub token_secret: String,
    /// SHA-256 fingerprint of the node certificate to pin.
    pub fingerprint: Option<String>,
    /// CA certificate file to trust instead.
    pub ca_file: Option<String>,
    /// Accept any certificate.
    pub insecure: bool,
    /// Default node for calls that take one.
    pub node: Option<String>,
    /// Per-request timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// Retries of idempotent requests.
    pub retries: Option<u32>,
}

impl ConnectArgs {
    /// The configuration, checked as a config file would be (the same
    /// rules and messages; the environment is not read).
    pub fn config(&self) -> Result<Config, ErrorInfo> {
        let mut raw = serde_json::json!({
            "url": self.url,
            "token_id": self.token_id,
            "token_secret": self.token_secret,
            "insecure": self.insecure,
        });
        let optional = [
            ("fingerprint", self.fingerprint.clone().map(Into::into)),
            ("ca_file", self.ca_file.clone().map(Into::into)),
            ("node", self.node.clone().map(Into::into)),
            ("timeout_secs", self.timeout_secs.map(Into::into)),
            ("retries", self.retries.map(Into::into)),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                raw[key] = v;
            }
        }
        Ok(Config::from_json_with_env(&raw.to_string(), |_| None)?)
    }
}

/// How to wait for a task: `timeout` seconds (default 600), polling first
/// after `poll_interval` seconds (default 0.5).
pub fn task_wait_options(
    lang: Lang,
    timeout: Option<f64>,
    poll_interval: Option<f64>,
) -> Result<WaitOptions, ErrorInfo> {
    let mut opts = WaitOptions::default();
    if let Some(t) = timeout {
        opts.timeout = seconds("timeout", t, true)?;
    }
    if let Some(p) = poll_interval {
        opts.initial_interval = seconds(&lang.arg("poll_interval"), p, true)?;
        opts.max_interval = opts.max_interval.max(opts.initial_interval);
    }
    Ok(opts)
}

/// A vzdump mode word.
pub fn backup_mode(mode: &str) -> Result<BackupMode, ErrorInfo> {
    match mode {
        "snapshot" => Ok(BackupMode::Snapshot),
        "suspend" => Ok(BackupMode::Suspend),
        "stop" => Ok(BackupMode::Stop),
        other => Err(ErrorInfo::invalid(format!(
            "unknown backup mode {other:?}, expected snapshot, suspend or stop"
        ))),
    }
}

/// A vzdump compression word.
pub fn compression(word: &str) -> Result<Compression, ErrorInfo> {
    match word {
        "none" | "0" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "lzo" => Ok(Compression::Lzo),
        "zstd" => Ok(Compression::Zstd),
        other => Err(ErrorInfo::invalid(format!(
            "unknown compression {other:?}, expected none, gzip, lzo or zstd"
        ))),
    }
}

/// A value for a container config key, as the language gave it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigValue {
    /// Sent as is.
    Text(String),
    /// An integer.
    Int(i64),
    /// A number; it must be an integer.
    Number(f64),
    /// Sent as `1` / `0`.
    Bool(bool),
}

impl ConfigValue {
    /// The text Proxmox expects.
    pub fn into_text(self) -> Result<String, ErrorInfo> {
        Ok(match self {
            ConfigValue::Text(s) => s,
            ConfigValue::Int(i) => i.to_string(),
            ConfigValue::Number(n) if n.is_finite() && n.fract() == 0.0 => {
                format!("{}", n as i64)
            }
            ConfigValue::Number(n) => {
                return Err(ErrorInfo::invalid(format!(
                    "config values must be integers, strings or booleans, got {n}"
                )));
            }
            ConfigValue::Bool(b) => if b { "1" } else { "0" }.to_owned(),
        })
    }
}

/// A container configuration change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChange {
    /// Keys to set (applied in key order).
    pub set: Vec<(String, ConfigValue)>,
    /// Keys to remove.
    pub delete: Vec<String>,
    /// Only apply if the config still has this digest.
    pub digest: Option<String>,
}

impl ConfigChange {
    /// The typed update (the first bad value is the error).
    pub fn into_update(self) -> Result<LxcConfigUpdate, ErrorInfo> {
        let mut update = LxcConfigUpdate::new();
        let mut set = self.set;
        set.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in set {
            update = update.set(&k, v.into_text()?);
        }
        for k in self.delete {
            update = update.delete(&k);
        }
        if let Some(d) = &self.digest {
            update = update.digest(d);
        }
        Ok(update)
    }
}

/// Options of a restore; `None` takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreArgs {
    /// Target storage for the root volume.
    pub storage: Option<String>,
    /// New hostname.
    pub hostname: Option<String>,
    /// Overwrite an existing container (default false).
    pub force: Option<bool>,
    /// Fresh MAC addresses (default true).
    pub unique: Option<bool>,
    /// Start after restoring (default false).
    pub start: Option<bool>,
}

impl RestoreArgs {
    /// The request restoring `archive` as `vmid`.
    pub fn request(&self, vmid: u32, archive: &str) -> RestoreRequest {
        let mut req = RestoreRequest::new(vmid, archive);
        if let Some(f) = self.force {
            req = req.force(f);
        }
        if let Some(s) = self.start {
            req = req.start(s);
        }
        if let Some(u) = self.unique {
            req.unique = u;
        }
        if let Some(s) = &self.storage {
            req = req.storage(s);
        }
        if let Some(h) = &self.hostname {
            req = req.hostname(h);
        }
        req
    }
}

/// Options of a vzdump, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VzdumpArgs {
    /// Target storage.
    pub storage: Option<String>,
    /// `snapshot`, `suspend` or `stop`.
    pub mode: Option<String>,
    /// `none`, `gzip`, `lzo` or `zstd`.
    pub compress: Option<String>,
}

impl VzdumpArgs {
    /// The request backing up `vmids`.
    pub fn request(&self, vmids: &[u32]) -> Result<VzdumpRequest, ErrorInfo> {
        let mut req = VzdumpRequest::new(vmids);
        if let Some(s) = &self.storage {
            req = req.storage(s);
        }
        if let Some(m) = &self.mode {
            req = req.mode(backup_mode(m)?);
        }
        if let Some(c) = &self.compress {
            req = req.compress(compression(c)?);
        }
        Ok(req)
    }
}

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Package version, e.g. `9.1.1`.
    pub version: String,
    /// Release series, e.g. `9.1`.
    pub release: String,
    /// Git commit of pve-manager.
    pub repoid: String,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSummary {
    /// Node name.
    pub node: String,
    /// `online`, `offline` or `unknown`.
    pub status: String,
    /// CPU usage (0..1).
    pub cpu: Option<f64>,
    /// Number of CPUs.
    pub maxcpu: Option<u32>,
    /// Used memory in bytes.
    pub mem: Option<u64>,
    /// Total memory in bytes.
    pub maxmem: Option<u64>,
    /// Uptime in seconds.
    pub uptime: Option<u64>,
    /// Certificate fingerprint.
    pub ssl_fingerprint: Option<String>,
}

impl From<rmm_proxmox::NodeSummary> for NodeSummary {
    fn from(n: rmm_proxmox::NodeSummary) -> Self {
        NodeSummary {
            node: n.node,
            status: word(&n.status),
            cpu: n.cpu.get(),
            maxcpu: n.maxcpu.get(),
            mem: n.mem.get(),
            maxmem: n.maxmem.get(),
            uptime: n.uptime.get(),
            ssl_fingerprint: n.ssl_fingerprint,
        }
    }
}

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// CPU usage (0..1).
    pub cpu: Option<f64>,
    /// 1, 5 and 15 minute load averages (empty when absent or not all
    /// numbers).
    pub loadavg: Vec<f64>,
    /// Uptime in seconds.
    pub uptime: Option<u64>,
    /// Total memory in bytes.
    pub memory_total: Option<u64>,
    /// Used memory in bytes.
    pub memory_used: Option<u64>,
    /// Total swap in bytes.
    pub swap_total: Option<u64>,
    /// Used swap in bytes.
    pub swap_used: Option<u64>,
    /// Root file system size in bytes.
    pub rootfs_total: Option<u64>,
    /// Root file system used bytes.
    pub rootfs_used: Option<u64>,
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpus: Option<u32>,
    /// pve-manager version string.
    pub pveversion: Option<String>,
    /// Kernel version string.
    pub kversion: Option<String>,
}

impl From<rmm_proxmox::NodeStatus> for NodeStatus {
    fn from(s: rmm_proxmox::NodeStatus) -> Self {
        NodeStatus {
            cpu: s.cpu.get(),
            loadavg: s.loadavg.into_parsed().unwrap_or_default(),
            uptime: s.uptime.get(),
            memory_total: s.memory.total.get(),
            memory_used: s.memory.used.get(),
            swap_total: s.swap.total.get(),
            swap_used: s.swap.used.get(),
            rootfs_total: s.rootfs.total.get(),
            rootfs_used: s.rootfs.used.get(),
            cpu_model: s.cpuinfo.model,
            cpus: s.cpuinfo.cpus.get(),
            pveversion: s.pveversion,
            kversion: s.kversion,
        }
    }
}

/// A container as `GET /nodes/{node}/lxc` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LxcSummary {
    /// Container id.
    pub vmid: u32,
    /// Hostname.
    pub name: Option<String>,
    /// `running`, `stopped` or `unknown`.
    pub status: String,
    /// Current lock, if any.
    pub lock: Option<String>,
    /// Tags, `;`-separated.
    pub tags: Option<String>,
    /// Whether it is a template.
    pub template: bool,
    /// CPU usage.
    pub cpu: Option<f64>,
    /// Used memory in bytes.
    pub mem: Option<u64>,
    /// Memory limit in bytes.
    pub maxmem: Option<u64>,
    /// Used root disk in bytes.
    pub disk: Option<u64>,
    /// Root disk size in bytes.
    pub maxdisk: Option<u64>,
    /// Uptime in seconds.
    pub uptime: Option<u64>,
}

impl From<rmm_proxmox::LxcSummary> for LxcSummary {
    fn from(s: rmm_proxmox::LxcSummary) -> Self {
        LxcSummary {
            vmid: s.vmid,
            name: s.name,
            status: word(&s.status),
            lock: s.lock,
            tags: s.tags,
            template: s.template,
            cpu: s.cpu.get(),
            mem: s.mem.get(),
            maxmem: s.maxmem.get(),
            disk: s.disk.get(),
            maxdisk: s.maxdisk.get(),
            uptime: s.uptime.get(),
        }
    }
}

/// A container configuration; property strings in Proxmox's canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct LxcConfig {
    /// Hostname.
    pub hostname: Option<String>,
    /// OS type.
    pub ostype: Option<String>,
    /// Architecture.
    pub arch: Option<String>,
    /// CPU cores.
    pub cores: Option<u32>,
    /// Memory in MiB.
    pub memory: Option<u64>,
    /// Swap in MiB.
    pub swap: Option<u64>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Unprivileged container.
    pub unprivileged: Option<bool>,
    /// Is a template.
    pub template: Option<bool>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Current lock.
    pub lock: Option<String>,
    /// Feature flags (`keyctl=1,nesting=1`).
    pub features: Option<String>,
    /// Root volume.
    pub rootfs: Option<String>,
    /// Network interfaces by index (`net0` is `net[0]`).
    pub net: BTreeMap<u32, String>,
    /// Mount points by index.
    pub mp: BTreeMap<u32, String>,
    /// Config digest, for a guarded change.
    pub digest: Option<String>,
    /// Every other key, as text.
    pub other: BTreeMap<String, String>,
}

impl From<rmm_proxmox::LxcConfig> for LxcConfig {
    fn from(c: rmm_proxmox::LxcConfig) -> Self {
        LxcConfig {
            hostname: c.hostname,
            ostype: c.ostype,
            arch: c.arch,
            cores: c.cores,
            memory: c.memory,
            swap: c.swap,
            onboot: c.onboot,
            unprivileged: c.unprivileged,
            template: c.template,
            description: c.description,
            tags: c.tags,
            lock: c.lock,
            features: c.features.map(|f| f.to_string()),
            rootfs: c.rootfs.map(|r| r.to_string()),
            net: c.net.into_iter().map(|(i, n)| (i, n.to_string())).collect(),
            mp: c.mp.into_iter().map(|(i, m)| (i, m.to_string())).collect(),
            digest: c.digest,
            other: c
                .other
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect(),
        }
    }
}

/// A container snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Name (`current` is the live state).
    pub name: String,
    /// Parent snapshot.
    pub parent: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Creation time (Unix seconds).
    pub snaptime: Option<i64>,
}

impl From<rmm_proxmox::SnapshotInfo> for SnapshotInfo {
    fn from(s: rmm_proxmox::SnapshotInfo) -> Self {
        SnapshotInfo {
            name: s.name,
            parent: s.parent,
            description: s.description,
            snaptime: s.snaptime,
        }
    }
}

/// A storage as `GET /nodes/{node}/storage` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSummary {
    /// Storage id.
    pub storage: String,
    /// Storage type (`dir`, `lvmthin`, ...).
    pub r#type: String,
    /// Content types, comma-separated.
    pub content: String,
    /// Active.
    pub active: Option<bool>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Shared.
    pub shared: Option<bool>,
    /// Size in bytes.
    pub total: Option<u64>,
    /// Used bytes.
    pub used: Option<u64>,
    /// Available bytes.
    pub avail: Option<u64>,
}

impl From<rmm_proxmox::StorageSummary> for StorageSummary {
    fn from(s: rmm_proxmox::StorageSummary) -> Self {
        StorageSummary {
            storage: s.storage,
            r#type: s.kind,
            content: s.content,
            active: s.active,
            enabled: s.enabled,
            shared: s.shared,
            total: s.total.get(),
            used: s.used.get(),
            avail: s.avail.get(),
        }
    }
}

/// A task's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// `running`, `stopped` or `unknown`.
    pub status: String,
    /// Exit status once stopped (`OK`, `WARNINGS: N`, or the error).
    pub exitstatus: Option<String>,
    /// Task type.
    pub r#type: Option<String>,
    /// Node.
    pub node: Option<String>,
}

impl From<rmm_proxmox::TaskStatus> for TaskStatus {
    fn from(s: rmm_proxmox::TaskStatus) -> Self {
        TaskStatus {
            status: word(&s.status),
            exitstatus: s.exitstatus,
            r#type: s.kind,
            node: s.node,
        }
    }
}

/// A task that finished successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task.
    pub upid: Upid,
    /// Warnings Proxmox counted (`WARNINGS: N`); 0 for `OK`.
    pub warnings: u32,
    /// The raw exit status.
    pub exitstatus: String,
}

/// A Proxmox client and its default node: every operation of both
/// bindings, once, as a future. Cheap to clone; the methods take `self` so
/// their futures own what they use.
#[derive(Debug, Clone)]
pub struct Pve {
    client: Client,
    default_node: Option<String>,
    lang: Lang,
}

impl Pve {
    /// Operations through `client`; calls without a node use
    /// `default_node`, and messages spell arguments for `lang`.
    pub fn new(client: Client, default_node: Option<String>, lang: Lang) -> Pve {
        Pve {
            client,
            default_node,
            lang,
        }
    }

    /// The default node.
    pub fn default_node(&self) -> Option<&str> {
        self.default_node.as_deref()
    }

    fn node(&self, given: Option<String>) -> Result<String, ErrorInfo> {
        given.or_else(|| self.default_node.clone()).ok_or_else(|| {
            let hint = match self.lang {
                Lang::Python => "node=...",
                Lang::JavaScript => "node",
            };
            ErrorInfo::invalid(format!(
                "no node given and the client has no default node (pass {hint})"
            ))
        })
    }

    /// `GET /version`.
    pub async fn version(self) -> Result<Version, ErrorInfo> {
        let v = self.client.version().await?;
        Ok(Version {
            version: v.version,
            release: v.release,
            repoid: v.repoid,
        })
    }

    /// `GET /nodes`.
    pub async fn nodes(self) -> Result<Vec<NodeSummary>, ErrorInfo> {
        let nodes = self.client.nodes().await?;
        Ok(nodes.into_iter().map(NodeSummary::from).collect())
    }

    /// `GET /nodes/{node}/status`.
    pub async fn node_status(self, node: Option<String>) -> Result<NodeStatus, ErrorInfo> {
        let node = self.node(node)?;
        Ok(self.client.node_status(&node).await?.into())
    }

    /// `GET /nodes/{node}/lxc`.
    pub async fn lxc_list(self, node: Option<String>) -> Result<Vec<LxcSummary>, ErrorInfo> {
        let node = self.node(node)?;
        let list = self.client.lxc_list(&node).await?;
        Ok(list.into_iter().map(LxcSummary::from).collect())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    pub async fn lxc_status(
        self,
        vmid: u32,
        node: Option<String>,
    ) -> Result<LxcSummary, ErrorInfo> {
        let node = self.node(node)?;
        Ok(self.client.lxc_status(&node, vmid).await?.into())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    pub async fn lxc_config(self, vmid: u32, node: Option<String>) -> Result<LxcConfig, ErrorInfo> {
        let node = self.node(node)?;
        Ok(self.client.lxc_config(&node, vmid).await?.into())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    pub async fn lxc_snapshots(
        self,
        vmid: u32,
        node: Option<String>,
    ) -> Result<Vec<SnapshotInfo>, ErrorInfo> {
        let node = self.node(node)?;
        let list = self.client.lxc_snapshots(&node, vmid).await?;
        Ok(list.into_iter().map(SnapshotInfo::from).collect())
    }

    /// `GET /nodes/{node}/storage`.
    pub async fn storage(self, node: Option<String>) -> Result<Vec<StorageSummary>, ErrorInfo> {
        let node = self.node(node)?;
        let list = self.client.storage(&node).await?;
        Ok(list.into_iter().map(StorageSummary::from).collect())
    }

    /// The token's privileges on an ACL path.
    pub async fn permissions(self, path: String) -> Result<Vec<String>, ErrorInfo> {
        Ok(self.client.permissions(&path).await?.into_iter().collect())
    }

    /// Which of the `(path, privilege)` pairs the token lacks.
    pub async fn check_privileges(
        self,
        wanted: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, ErrorInfo> {
        let pairs: Vec<(&str, &str)> = wanted
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let missing = self.client.check_privileges(&pairs).await?;
        Ok(missing.into_iter().map(|m| (m.path, m.privilege)).collect())
    }

    /// A task's status.
    pub async fn task_status(self, upid: Upid) -> Result<TaskStatus, ErrorInfo> {
        Ok(self.client.task_status(&upid).await?.into())
    }

    /// Waits until a task stops (see [`task_wait_options`] for the
    /// arguments): `TaskFailed` unless it ended `OK` / `WARNINGS: N`.
    pub async fn wait_task(
        self,
        upid: Upid,
        timeout: Option<f64>,
        poll_interval: Option<f64>,
    ) -> Result<TaskOutcome, ErrorInfo> {
        let opts = task_wait_options(self.lang, timeout, poll_interval)?;
        let o = self.client.wait_task(&upid, opts).await?;
        Ok(TaskOutcome {
            upid: o.upid,
            warnings: o.warnings,
            exitstatus: o.exitstatus,
        })
    }

    /// Creates a snapshot.
    pub async fn snapshot_lxc(
        self,
        vmid: u32,
        snapname: String,
        description: Option<String>,
        node: Option<String>,
    ) -> Result<Upid, ErrorInfo> {
        let node = self.node(node)?;
        let c = &self.client;
        Ok(
            c.snapshot_lxc(&node, vmid, &snapname, description.as_deref())
                .await?,
        )
    }

    /// Rolls back to a snapshot, then starts the container if `start`
    /// (default false).
    pub async fn rollback_lxc(
        self,
        vmid: u32,
        snapname: String,
        start: Option<bool>,
        node: Option<String>,
    ) -> Result<Upid, ErrorInfo> {
        let node = self.node(node)?;
        let start = start.unwrap_or(false);
        Ok(self
            .client
            .rollback_lxc(&node, vmid, &snapname, start)
            .await?)
    }

    /// Deletes a snapshot, from the config even if removing the storage
    /// fails if `force` (default false).
    pub async fn delete_lxc_snapshot(
        self,
        vmid: u32,
        snapname: String,
        force: Option<bool>,
        node: Option<String>,
    ) -> Result<Upid, ErrorInfo> {
        let node = self.node(node)?;
        let force = force.unwrap_or(false);
        let c = &self.client;
        Ok(c.delete_lxc_snapshot(&node, vmid, &snapname, force).await?)
    }

    /// Starts a container.
    pub async fn start_lxc(self, vmid: u32, node: Option<String>) -> Result<Upid, ErrorInfo> {
        let node = self.node(node)?;
        Ok(self.client.start_lxc(&node, vmid).await?)
    }

    /// Stops a container.
    pub async fn stop_lxc(self, vmid: u32, node: Option<String>) -> Result<Upid, ErrorInfo> {
        let node = self.node(node)?;
        Ok(self.client.stop_lxc(&node, vmid).await?)
    }

    /// Restores a container from a backup archive.
    pub async fn restore_lxc(
        self,
        vmid: u32,
        archive: String,
        args: RestoreArgs,
        node: Option<String>,
    ) -> Result<Upid, ErrorInfo> {
        let req = args.request(vmid, &archive);
        let node = self.node(node)?;
        Ok(self.client.restore_lxc(&node, &req).await?)
    }

    /// Backs up guests.
    pub async fn vzdump(
        self,
        vmids: Vec<u32>,
        args: VzdumpArgs,
        node: Option<String>,
    ) -> Result<Upid, ErrorInfo> {
        let req = args.request(&vmids)?;
        let node = self.node(node)?;
        Ok(self.client.vzdump(&node, &req).await?)
    }

    /// Changes a container's configuration.
    pub async fn set_lxc_config(
        self,
        vmid: u32,
        change: ConfigChange,
        node: Option<String>,
    ) -> Result<(), ErrorInfo> {
        let update = change.into_update()?;
        let node = self.node(node)?;
        self.client.set_lxc_config(&node, vmid, &update).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    fn connect() -> ConnectArgs {
        ConnectArgs {
            url: "https://pve.example:8006".into(),
            token_id: "rmm@pve!ops".into(),
            token_secret: "0a0a0a0a-0000-4000-8000-000000000001".into(),
            ..ConnectArgs::default()
        }
    }

    /// `Ok((node, timeout, retries))` of the config, or the error message.
    fn check_config(args: ConnectArgs, expected: Result<(Option<&str>, u64, u32), &str>) {
        let got = args
            .config()
            .map(|c| (c.node.clone(), c.timeout.as_secs(), c.retries))
            .map_err(|e| {
                assert_eq!(e.code, "invalid_config");
                e.message
            });
        let expected = expected
            .map(|(n, t, r)| (n.map(str::to_owned), t, r))
            .map_err(str::to_owned);
        assert_eq!(got, expected, "{args:?}");
    }

    #[test]
    fn connect_args() {
        check_config(connect(), Ok((None, 30, 2)));
        check_config(
            ConnectArgs {
                node: Some("pve1".into()),
                timeout_secs: Some(5),
                retries: Some(0),
                fingerprint: Some(FP.into()),
                ..connect()
            },
            Ok((Some("pve1"), 5, 0)),
        );
        check_config(
            ConnectArgs {
                timeout_secs: Some(0),
                ..connect()
            },
            Err("config field `timeout_secs` is invalid: must be at least 1"),
        );
        check_config(
            ConnectArgs {
                insecure: true,
                fingerprint: Some(FP.into()),
                ..connect()
            },
            Err(
                "config field `insecure` is invalid: insecure cannot be combined with fingerprint or ca_file",
            ),
        );
        let missing_ca = ConnectArgs {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..connect()
        };
        assert!(missing_ca.config().is_err());
    }

    #[test]
    fn task_waits() {
        let d = WaitOptions::default();
        let check =
            |lang, timeout, poll, expected: Result<(Duration, Duration, Duration), &str>| {
                let got = task_wait_options(lang, timeout, poll)
                    .map(|o| (o.timeout, o.initial_interval, o.max_interval))
                    .map_err(|e| e.message);
                assert_eq!(got, expected.map_err(str::to_owned), "{timeout:?} {poll:?}");
            };
        check(
            Lang::Python,
            None,
            None,
            Ok((d.timeout, d.initial_interval, d.max_interval)),
        );
        check(
            Lang::JavaScript,
            Some(0.3),
            Some(0.05),
            Ok((
                Duration::from_millis(300),
                Duration::from_millis(50),
                d.max_interval,
            )),
        );
        check(
            Lang::Python,
            Some(60.0),
            Some(10.0),
            Ok((
                Duration::from_secs(60),
                Duration::from_secs(10),
                Duration::from_secs(10),
            )),
        );
        check(
            Lang::Python,
            Some(0.0),
            None,
            Err("timeout must be a positive number of seconds, got 0"),
        );
        check(
            Lang::Python,
            None,
            Some(-1.0),
            Err("poll_interval must be a positive number of seconds, got -1"),
        );
        check(
            Lang::JavaScript,
            None,
            Some(f64::NAN),
            Err("pollInterval must be a positive number of seconds, got NaN"),
        );
    }

    #[test]
    fn words() {
        let check = |got: Result<String, ErrorInfo>, expected: Result<&str, &str>| {
            assert_eq!(
                got.map_err(|e| e.message),
                expected.map(str::to_owned).map_err(str::to_owned)
            );
        };
        let mode = |w| backup_mode(w).map(|m| format!("{m:?}"));
        check(mode("snapshot"), Ok("Snapshot"));
        check(mode("stop"), Ok("Stop"));
        check(
            mode("Stop"),
            Err(r#"unknown backup mode "Stop", expected snapshot, suspend or stop"#),
        );
        let comp = |w| compression(w).map(|c| format!("{c:?}"));
        check(comp("none"), Ok("None"));
        check(comp("0"), Ok("None"));
        check(comp("zstd"), Ok("Zstd"));
        check(
            comp("rar"),
            Err(r#"unknown compression "rar", expected none, gzip, lzo or zstd"#),
        );
    }

    #[test]
    fn config_values() {
        let check = |v: ConfigValue, expected: Result<&str, &str>| {
            assert_eq!(
                v.clone().into_text().map_err(|e| e.message),
                expected.map(str::to_owned).map_err(str::to_owned),
                "{v:?}"
            );
        };
        check(ConfigValue::Text("a b".into()), Ok("a b"));
        check(ConfigValue::Int(-4), Ok("-4"));
        check(ConfigValue::Number(4.0), Ok("4"));
        check(ConfigValue::Bool(true), Ok("1"));
        check(ConfigValue::Bool(false), Ok("0"));
        check(
            ConfigValue::Number(1.5),
            Err("config values must be integers, strings or booleans, got 1.5"),
        );
        check(
            ConfigValue::Number(f64::INFINITY),
            Err("config values must be integers, strings or booleans, got inf"),
        );
    }

    #[test]
    fn config_change_reports_the_first_bad_value_in_key_order() {
        let change = ConfigChange {
            set: vec![
                ("swap".into(), ConfigValue::Number(0.5)),
                ("cores".into(), ConfigValue::Number(2.5)),
            ],
            ..ConfigChange::default()
        };
        let e = change.into_update().unwrap_err();
        assert!(e.message.ends_with("got 2.5"), "{e}");
    }

    #[test]
    fn requests() {
        let r = RestoreArgs::default().request(101, "local:backup/x.tar.zst");
        assert!(r.unique && !r.force && !r.start);
        let r = RestoreArgs {
            unique: Some(false),
            force: Some(true),
            hostname: Some("web".into()),
            ..RestoreArgs::default()
        }
        .request(101, "local:backup/x.tar.zst");
        assert!(!r.unique && r.force);
        assert_eq!(r.hostname.as_deref(), Some("web"));
        let v = VzdumpArgs {
            mode: Some("suspend".into()),
            compress: Some("gzip".into()),
            ..VzdumpArgs::default()
        }
        .request(&[101, 102])
        .expect("valid");
        assert_eq!(v.mode, Some(BackupMode::Suspend));
        assert_eq!(v.compress, Some(Compression::Gzip));
        let bad = VzdumpArgs {
            mode: Some("hot".into()),
            ..VzdumpArgs::default()
        };
        assert_eq!(bad.request(&[101]).unwrap_err().code, "invalid_argument");
    }

    #[test]
    fn default_node() {
        let config = connect().config().expect("config");
        let client = Client::new(&config).expect("client");
        let check =
            |lang, default: Option<&str>, given: Option<&str>, expected: Result<&str, &str>| {
                let pve = Pve::new(client.clone(), default.map(str::to_owned), lang);
                assert_eq!(
                    pve.node(given.map(str::to_owned)).map_err(|e| e.message),
                    expected.map(str::to_owned).map_err(str::to_owned)
                );
            };
        check(Lang::Python, Some("pve1"), None, Ok("pve1"));
        check(Lang::Python, Some("pve1"), Some("pve2"), Ok("pve2"));
        check(
            Lang::Python,
            None,
            None,
            Err("no node given and the client has no default node (pass node=...)"),
        );
        check(
            Lang::JavaScript,
            None,
            None,
            Err("no node given and the client has no default node (pass node)"),
        );
    }
}
