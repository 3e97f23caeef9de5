//! `ProxmoxClient` (`rmm.proxmox.Client` in `rmm.js`) and `Upid`, over
//! `rmm_proxmox`.

use std::collections::HashMap;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_proxmox::{
    BackupMode, Compression, LxcConfigUpdate, RestoreRequest, VzdumpRequest, WaitOptions,
};

use crate::errors::ErrorInfo;
use crate::server::promise;

type Res<T> = std::result::Result<T, ErrorInfo>;

fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

fn parse_upid(text: &str) -> Res<rmm_proxmox::Upid> {
    text.parse()
        .map_err(|e| ErrorInfo::invalid(format!("invalid upid {text:?}: {e}")))
}

/// A parsed Proxmox task id (`UPID:node:pid:pstart:starttime:type:id:user:`).
/// Operations resolve with the UPID text; `new Upid(text)` parses it.
#[napi]
pub struct Upid {
    inner: rmm_proxmox::Upid,
}

#[napi]
impl Upid {
    /// Parses a UPID; throws `InvalidArgument` when it is not one.
    #[napi(constructor)]
    pub fn new(env: Env, text: String) -> Result<Self> {
        parse_upid(&text)
            .map(|inner| Upid { inner })
            .map_err(|e| e.into_js(&env))
    }

    /// The node the task runs on.
    #[napi(getter)]
    pub fn node(&self) -> String {
        self.inner.node().to_owned()
    }

    /// Process id of the task worker.
    #[napi(getter)]
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Process start time (clock ticks since boot).
    #[napi(getter)]
    pub fn pstart(&self) -> i64 {
        i64::try_from(self.inner.pstart()).unwrap_or(i64::MAX)
    }

    /// Task start time (Unix seconds).
    #[napi(getter)]
    pub fn starttime(&self) -> u32 {
        self.inner.starttime()
    }

    /// Task type, e.g. `vzsnapshot`.
    #[napi(getter)]
    pub fn task_type(&self) -> String {
        self.inner.task_type().to_owned()
    }

    /// Task id, usually the VMID; may be empty.
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.id().to_owned()
    }

    /// The user or token that started the task.
    #[napi(getter)]
    pub fn user(&self) -> String {
        self.inner.user().to_owned()
    }

    /// The UPID text.
    #[napi(js_name = "toString")]
    pub fn to_text(&self) -> String {
        self.inner.as_str().to_owned()
    }
}

/// `GET /version`.
#[napi(object)]
pub struct PveVersion {
    /// Package version, e.g. `9.1.1`.
    pub version: String,
    /// Release series, e.g. `9.1`.
    pub release: String,
    /// Git commit of pve-manager.
    pub repoid: String,
}

/// One entry of `GET /nodes`.
#[napi(object)]
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
    pub mem: Option<f64>,
    /// Total memory in bytes.
    pub maxmem: Option<f64>,
    /// Uptime in seconds.
    pub uptime: Option<f64>,
    /// Certificate fingerprint.
    pub ssl_fingerprint: Option<String>,
}

/// `GET /nodes/{node}/status`.
#[napi(object)]
pub struct NodeStatus {
    /// CPU usage (0..1).
    pub cpu: Option<f64>,
    /// 1, 5 and 15 minute load averages.
    pub loadavg: Vec<f64>,
    /// Uptime in seconds.
    pub uptime: Option<f64>,
    /// Total memory in bytes.
    pub memory_total: Option<f64>,
    /// Used memory in bytes.
    pub memory_used: Option<f64>,
    /// Total swap in bytes.
    pub swap_total: Option<f64>,
    /// Used swap in bytes.
    pub swap_used: Option<f64>,
    /// Root file system size in bytes.
    pub rootfs_total: Option<f64>,
    /// Root file system used bytes.
    pub rootfs_used: Option<f64>,
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpus: Option<u32>,
    /// pve-manager version string.
    pub pveversion: Option<String>,
    /// Kernel version string.
    pub kversion: Option<String>,
}

/// A container as `GET /nodes/{node}/lxc` lists it.
#[napi(object)]
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
    pub mem: Option<f64>,
    /// Memory limit in bytes.
    pub maxmem: Option<f64>,
    /// Used root disk in bytes.
    pub disk: Option<f64>,
    /// Root disk size in bytes.
    pub maxdisk: Option<f64>,
    /// Uptime in seconds.
    pub uptime: Option<f64>,
}

/// A container configuration; property strings in Proxmox's canonical form.
#[napi(object)]
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
    pub memory: Option<f64>,
    /// Swap in MiB.
    pub swap: Option<f64>,
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
    /// Network interfaces by index (`net0` is `net['0']`).
    pub net: HashMap<String, String>,
    /// Mount points by index.
    pub mp: HashMap<String, String>,
    /// Config digest, for `setLxcConfig({ digest })`.
    pub digest: Option<String>,
    /// Every other key, as text.
    pub other: HashMap<String, String>,
}

/// A container snapshot.
#[napi(object)]
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

/// A storage as `GET /nodes/{node}/storage` lists it.
#[napi(object)]
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
    pub total: Option<f64>,
    /// Used bytes.
    pub used: Option<f64>,
    /// Available bytes.
    pub avail: Option<f64>,
}

/// A task's status.
#[napi(object)]
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

/// A task that finished successfully.
#[napi(object)]
pub struct TaskOutcome {
    /// The task's UPID.
    pub upid: String,
    /// Warnings Proxmox counted (`WARNINGS: N`); 0 for `OK`.
    pub warnings: u32,
    /// The raw exit status.
    pub exitstatus: String,
}

/// An ACL path and a privilege.
#[napi(object)]
pub struct Privilege {
    /// ACL path, e.g. `/vms/101`.
    pub path: String,
    /// Privilege, e.g. `VM.Snapshot`.
    pub privilege: String,
}

/// Connection settings of a `ProxmoxClient`.
#[napi(object)]
pub struct ProxmoxOptions {
    /// `https://host:8006`.
    pub url: String,
    /// `USER@REALM!TOKENID`.
    pub token_id: String,
    /// The token's secret.
    pub token_secret: String,
    /// SHA-256 fingerprint of the node certificate to pin (`AB:CD:...`).
    pub fingerprint: Option<String>,
    /// CA certificate file to trust instead (e.g. pve-root-ca.pem).
    pub ca_file: Option<String>,
    /// Accept any certificate (explicit, logged; never the default).
    pub insecure: Option<bool>,
    /// Default node for calls that take one.
    pub node: Option<String>,
    /// Per-request timeout in seconds (default 30).
    pub timeout: Option<u32>,
    /// Retries of idempotent requests (default 2).
    pub retries: Option<u32>,
}

/// Options of `waitTask`.
#[napi(object)]
#[derive(Default)]
pub struct WaitTaskOptions {
    /// Give up after this many seconds (default 600) with a `Timeout` error.
    pub timeout: Option<f64>,
    /// First poll interval in seconds (default 0.5).
    pub poll_interval: Option<f64>,
}

/// Options of `snapshotLxc`.
#[napi(object)]
#[derive(Default)]
pub struct SnapshotOptions {
    /// Snapshot description.
    pub description: Option<String>,
    /// Node (default: the client's).
    pub node: Option<String>,
}

/// Options of `rollbackLxc`.
#[napi(object)]
#[derive(Default)]
pub struct RollbackOptions {
    /// Start the container after the rollback.
    pub start: Option<bool>,
    /// Node (default: the client's).
    pub node: Option<String>,
}

/// Options of `deleteLxcSnapshot`.
#[napi(object)]
#[derive(Default)]
pub struct DeleteSnapshotOptions {
    /// Remove it from the config even if removing the storage fails.
    pub force: Option<bool>,
    /// Node (default: the client's).
    pub node: Option<String>,
}

/// Options of `restoreLxc`.
#[napi(object)]
#[derive(Default)]
pub struct RestoreOptions {
    /// Target storage for the root volume.
    pub storage: Option<String>,
    /// New hostname.
    pub hostname: Option<String>,
    /// Overwrite an existing container.
    pub force: Option<bool>,
    /// Fresh MAC addresses (default true).
    pub unique: Option<bool>,
    /// Start after restoring.
    pub start: Option<bool>,
    /// Node (default: the client's).
    pub node: Option<String>,
}

/// Options of `vzdump`.
#[napi(object)]
#[derive(Default)]
pub struct VzdumpOptions {
    /// Target storage.
    pub storage: Option<String>,
    /// `snapshot`, `suspend` or `stop`.
    pub mode: Option<String>,
    /// `none`, `gzip`, `lzo` or `zstd`.
    pub compress: Option<String>,
    /// Node (default: the client's).
    pub node: Option<String>,
}

/// A container configuration change for `setLxcConfig`.
#[napi(object)]
#[derive(Default)]
pub struct ConfigChange {
    /// Options to set; numbers and booleans are sent as Proxmox expects.
    pub set: Option<HashMap<String, Either3<String, f64, bool>>>,
    /// Options to remove.
    pub delete: Option<Vec<String>>,
    /// Only apply if the config still has this digest (else `Conflict`).
    pub digest: Option<String>,
    /// Node (default: the client's).
    pub node: Option<String>,
}

fn lxc_summary(s: rmm_proxmox::LxcSummary) -> LxcSummary {
    LxcSummary {
        vmid: s.vmid,
        name: s.name,
        status: word(&s.status),
        lock: s.lock,
        tags: s.tags,
        template: s.template,
        cpu: s.cpu.get(),
        mem: num(s.mem.get()),
        maxmem: num(s.maxmem.get()),
        disk: num(s.disk.get()),
        maxdisk: num(s.maxdisk.get()),
        uptime: num(s.uptime.get()),
    }
}

fn num(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

fn lxc_config(c: rmm_proxmox::LxcConfig) -> LxcConfig {
    LxcConfig {
        hostname: c.hostname,
        ostype: c.ostype,
        arch: c.arch,
        cores: c.cores,
        memory: num(c.memory),
        swap: num(c.swap),
        onboot: c.onboot,
        unprivileged: c.unprivileged,
        template: c.template,
        description: c.description,
        tags: c.tags,
        lock: c.lock,
        features: c.features.map(|f| f.to_string()),
        rootfs: c.rootfs.map(|r| r.to_string()),
        net: c
            .net
            .into_iter()
            .map(|(i, n)| (i.to_string(), n.to_string()))
            .collect(),
        mp: c
            .mp
            .into_iter()
            .map(|(i, m)| (i.to_string(), m.to_string()))
            .collect(),
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

fn wait_options(o: WaitTaskOptions) -> Res<WaitOptions> {
    let timeout = o.timeout.unwrap_or(600.0);
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(ErrorInfo::invalid(format!(
            "timeout must be a positive number of seconds, got {timeout}"
        )));
    }
    let mut opts = WaitOptions::with_timeout(Duration::from_secs_f64(timeout));
    if let Some(p) = o.poll_interval {
        if !(p.is_finite() && p > 0.0) {
            return Err(ErrorInfo::invalid(format!(
                "pollInterval must be a positive number of seconds, got {p}"
            )));
        }
        opts.initial_interval = Duration::from_secs_f64(p);
        opts.max_interval = opts.max_interval.max(opts.initial_interval);
    }
    Ok(opts)
}

fn backup_mode(mode: Option<String>) -> Res<Option<BackupMode>> {
    mode.map(|m| match m.as_str() {
        "snapshot" => Ok(BackupMode::Snapshot),
        "suspend" => Ok(BackupMode::Suspend),
        "stop" => Ok(BackupMode::Stop),
        other => Err(ErrorInfo::invalid(format!(
            "unknown backup mode {other:?}, expected snapshot, suspend or stop"
        ))),
    })
    .transpose()
}

fn compression(c: Option<String>) -> Res<Option<Compression>> {
    c.map(|c| match c.as_str() {
        "none" | "0" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "lzo" => Ok(Compression::Lzo),
        "zstd" => Ok(Compression::Zstd),
        other => Err(ErrorInfo::invalid(format!(
            "unknown compression {other:?}, expected none, gzip, lzo or zstd"
        ))),
    })
    .transpose()
}

fn config_value(v: Either3<String, f64, bool>) -> Res<String> {
    Ok(match v {
        Either3::A(s) => s,
        Either3::B(n) if n.is_finite() && n.fract() == 0.0 => format!("{}", n as i64),
        Either3::B(n) => {
            return Err(ErrorInfo::invalid(format!(
                "config values must be integers, strings or booleans, got {n}"
            )));
        }
        Either3::C(b) => if b { "1" } else { "0" }.to_owned(),
    })
}

/// A Proxmox VE API client (API-token auth; pinned, CA-verified or
/// system-trusted TLS). Reads resolve with typed objects, operations with
/// the task's UPID; `waitTask` waits for a task and rejects with
/// `TaskFailed` unless it ended `OK`.
#[napi]
pub struct ProxmoxClient {
    inner: rmm_proxmox::Client,
    url: String,
    node: Option<String>,
}

impl ProxmoxClient {
    fn build(config: rmm_proxmox::Config) -> Res<Self> {
        Ok(ProxmoxClient {
            inner: rmm_proxmox::Client::new(&config)?,
            url: config.url.clone(),
            node: config.node.clone(),
        })
    }

    /// The client and the node to use.
    fn with_node(&self, node: Option<String>) -> (rmm_proxmox::Client, Res<String>) {
        let node = node.or_else(|| self.node.clone()).ok_or_else(|| {
            ErrorInfo::invalid("no node given and the client has no default node (pass node)")
        });
        (self.inner.clone(), node)
    }
}

#[napi]
impl ProxmoxClient {
    /// A client from explicit settings.
    #[napi(constructor)]
    pub fn new(env: Env, options: ProxmoxOptions) -> Result<Self> {
        let make = || -> Res<Self> {
            let mut raw = serde_json::json!({
                "url": options.url,
                "token_id": options.token_id,
                "token_secret": options.token_secret,
                "insecure": options.insecure.unwrap_or(false),
                "timeout_secs": options.timeout.unwrap_or(30),
                "retries": options.retries.unwrap_or(2),
            });
            if let Some(fp) = &options.fingerprint {
                raw["fingerprint"] = fp.as_str().into();
            }
            if let Some(ca) = &options.ca_file {
                raw["ca_file"] = ca.as_str().into();
            }
            if let Some(n) = &options.node {
                raw["node"] = n.as_str().into();
            }
            let config = rmm_proxmox::Config::from_json_with_env(&raw.to_string(), |_| None)?;
            Self::build(config)
        };
        make().map_err(|e| e.into_js(&env))
    }

    /// A client from a JSON config file (if given) and the `RMM_PVE_*`
    /// environment variables.
    #[napi(factory, js_name = "fromConfig")]
    pub fn from_config(env: Env, path: Option<String>) -> Result<Self> {
        let make = || -> Res<Self> {
            let config = rmm_proxmox::Config::load(path.as_deref().map(std::path::Path::new))?;
            Self::build(config)
        };
        make().map_err(|e| e.into_js(&env))
    }

    /// The API base URL.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The default node, if configured.
    #[napi(getter)]
    pub fn node(&self) -> Option<String> {
        self.node.clone()
    }

    /// `GET /version`.
    #[napi]
    pub fn version<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, PveVersion>> {
        let c = self.inner.clone();
        promise(env, async move {
            let v = c.version().await?;
            Ok(PveVersion {
                version: v.version,
                release: v.release,
                repoid: v.repoid,
            })
        })
    }

    /// `GET /nodes`.
    #[napi]
    pub fn nodes<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Vec<NodeSummary>>> {
        let c = self.inner.clone();
        promise(env, async move {
            Ok(c.nodes()
                .await?
                .into_iter()
                .map(|n| NodeSummary {
                    node: n.node,
                    status: word(&n.status),
                    cpu: n.cpu.get(),
                    maxcpu: n.maxcpu.get(),
                    mem: num(n.mem.get()),
                    maxmem: num(n.maxmem.get()),
                    uptime: num(n.uptime.get()),
                    ssl_fingerprint: n.ssl_fingerprint,
                })
                .collect())
        })
    }

    /// `GET /nodes/{node}/status`.
    #[napi]
    pub fn node_status<'env>(
        &self,
        env: &'env Env,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, NodeStatus>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            let s = c.node_status(&node?).await?;
            Ok(NodeStatus {
                cpu: s.cpu.get(),
                loadavg: s.loadavg.into_parsed().unwrap_or_default(),
                uptime: num(s.uptime.get()),
                memory_total: num(s.memory.total.get()),
                memory_used: num(s.memory.used.get()),
                swap_total: num(s.swap.total.get()),
                swap_used: num(s.swap.used.get()),
                rootfs_total: num(s.rootfs.total.get()),
                rootfs_used: num(s.rootfs.used.get()),
                cpu_model: s.cpuinfo.model,
                cpus: s.cpuinfo.cpus.get(),
                pveversion: s.pveversion,
                kversion: s.kversion,
            })
        })
    }

    /// `GET /nodes/{node}/lxc`.
    #[napi]
    pub fn lxc_list<'env>(
        &self,
        env: &'env Env,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, Vec<LxcSummary>>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(c.lxc_list(&node?)
                .await?
                .into_iter()
                .map(lxc_summary)
                .collect())
        })
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    #[napi]
    pub fn lxc_status<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, LxcSummary>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(lxc_summary(c.lxc_status(&node?, vmid).await?))
        })
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    #[napi]
    pub fn lxc_config<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, LxcConfig>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(lxc_config(c.lxc_config(&node?, vmid).await?))
        })
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    #[napi]
    pub fn lxc_snapshots<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, Vec<SnapshotInfo>>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(c.lxc_snapshots(&node?, vmid)
                .await?
                .into_iter()
                .map(|s| SnapshotInfo {
                    name: s.name,
                    parent: s.parent,
                    description: s.description,
                    snaptime: s.snaptime,
                })
                .collect())
        })
    }

    /// `GET /nodes/{node}/storage`.
    #[napi]
    pub fn storage<'env>(
        &self,
        env: &'env Env,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, Vec<StorageSummary>>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(c.storage(&node?)
                .await?
                .into_iter()
                .map(|s| StorageSummary {
                    storage: s.storage,
                    r#type: s.kind,
                    content: s.content,
                    active: s.active,
                    enabled: s.enabled,
                    shared: s.shared,
                    total: num(s.total.get()),
                    used: num(s.used.get()),
                    avail: num(s.avail.get()),
                })
                .collect())
        })
    }

    /// The token's privileges on an ACL path.
    #[napi]
    pub fn permissions<'env>(
        &self,
        env: &'env Env,
        path: String,
    ) -> Result<PromiseRaw<'env, Vec<String>>> {
        let c = self.inner.clone();
        promise(env, async move {
            Ok(c.permissions(&path).await?.into_iter().collect())
        })
    }

    /// Which of `wanted` the token lacks (empty: all held).
    #[napi]
    pub fn check_privileges<'env>(
        &self,
        env: &'env Env,
        wanted: Vec<Privilege>,
    ) -> Result<PromiseRaw<'env, Vec<Privilege>>> {
        let c = self.inner.clone();
        promise(env, async move {
            let pairs: Vec<(&str, &str)> = wanted
                .iter()
                .map(|p| (p.path.as_str(), p.privilege.as_str()))
                .collect();
            Ok(c.check_privileges(&pairs)
                .await?
                .into_iter()
                .map(|m| Privilege {
                    path: m.path,
                    privilege: m.privilege,
                })
                .collect())
        })
    }

    /// A task's status.
    #[napi]
    pub fn task_status<'env>(
        &self,
        env: &'env Env,
        upid: String,
    ) -> Result<PromiseRaw<'env, TaskStatus>> {
        let c = self.inner.clone();
        promise(env, async move {
            let s = c.task_status(&parse_upid(&upid)?).await?;
            Ok(TaskStatus {
                status: word(&s.status),
                exitstatus: s.exitstatus,
                r#type: s.kind,
                node: s.node,
            })
        })
    }

    /// Waits until a task stops; rejects with `TaskFailed` unless it ended
    /// `OK` (or `WARNINGS: N`), with `Timeout` past `timeout` seconds.
    #[napi]
    pub fn wait_task<'env>(
        &self,
        env: &'env Env,
        upid: String,
        options: Option<WaitTaskOptions>,
    ) -> Result<PromiseRaw<'env, TaskOutcome>> {
        let c = self.inner.clone();
        let opts = options.unwrap_or_default();
        promise(env, async move {
            let upid = parse_upid(&upid)?;
            let o = c.wait_task(&upid, wait_options(opts)?).await?;
            Ok(TaskOutcome {
                upid: o.upid.to_string(),
                warnings: o.warnings,
                exitstatus: o.exitstatus,
            })
        })
    }

    /// Creates a snapshot; resolves with the task's UPID.
    #[napi]
    pub fn snapshot_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        snapname: String,
        options: Option<SnapshotOptions>,
    ) -> Result<PromiseRaw<'env, String>> {
        let o = options.unwrap_or_default();
        let (c, node) = self.with_node(o.node);
        promise(env, async move {
            let u = c
                .snapshot_lxc(&node?, vmid, &snapname, o.description.as_deref())
                .await?;
            Ok(u.to_string())
        })
    }

    /// Rolls back to a snapshot; resolves with the task's UPID.
    #[napi]
    pub fn rollback_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        snapname: String,
        options: Option<RollbackOptions>,
    ) -> Result<PromiseRaw<'env, String>> {
        let o = options.unwrap_or_default();
        let (c, node) = self.with_node(o.node);
        promise(env, async move {
            let u = c
                .rollback_lxc(&node?, vmid, &snapname, o.start.unwrap_or(false))
                .await?;
            Ok(u.to_string())
        })
    }

    /// Deletes a snapshot; resolves with the task's UPID.
    #[napi]
    pub fn delete_lxc_snapshot<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        snapname: String,
        options: Option<DeleteSnapshotOptions>,
    ) -> Result<PromiseRaw<'env, String>> {
        let o = options.unwrap_or_default();
        let (c, node) = self.with_node(o.node);
        promise(env, async move {
            let u = c
                .delete_lxc_snapshot(&node?, vmid, &snapname, o.force.unwrap_or(false))
                .await?;
            Ok(u.to_string())
        })
    }

    /// Starts a container; resolves with the task's UPID.
    #[napi]
    pub fn start_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, String>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(c.start_lxc(&node?, vmid).await?.to_string())
        })
    }

    /// Stops a container; resolves with the task's UPID.
    #[napi]
    pub fn stop_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, String>> {
        let (c, node) = self.with_node(node);
        promise(env, async move {
            Ok(c.stop_lxc(&node?, vmid).await?.to_string())
        })
    }

    /// Restores a container from a backup archive; resolves with the task's
    /// UPID.
    #[napi]
    pub fn restore_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        archive: String,
        options: Option<RestoreOptions>,
    ) -> Result<PromiseRaw<'env, String>> {
        let o = options.unwrap_or_default();
        let (c, node) = self.with_node(o.node.clone());
        promise(env, async move {
            let mut req = RestoreRequest::new(vmid, &archive)
                .force(o.force.unwrap_or(false))
                .start(o.start.unwrap_or(false));
            req.unique = o.unique.unwrap_or(true);
            if let Some(s) = &o.storage {
                req = req.storage(s);
            }
            if let Some(h) = &o.hostname {
                req = req.hostname(h);
            }
            Ok(c.restore_lxc(&node?, &req).await?.to_string())
        })
    }

    /// Backs up guests (vzdump); resolves with the task's UPID.
    #[napi]
    pub fn vzdump<'env>(
        &self,
        env: &'env Env,
        vmids: Vec<u32>,
        options: Option<VzdumpOptions>,
    ) -> Result<PromiseRaw<'env, String>> {
        let o = options.unwrap_or_default();
        let (c, node) = self.with_node(o.node.clone());
        promise(env, async move {
            let mut req = VzdumpRequest::new(&vmids);
            if let Some(s) = &o.storage {
                req = req.storage(s);
            }
            if let Some(m) = backup_mode(o.mode)? {
                req = req.mode(m);
            }
            if let Some(x) = compression(o.compress)? {
                req = req.compress(x);
            }
            Ok(c.vzdump(&node?, &req).await?.to_string())
        })
    }

    /// Changes a container's configuration (applied synchronously by
    /// Proxmox); with `digest`, rejects with `Conflict` if the config
    /// changed since it was read.
    #[napi]
    pub fn set_lxc_config<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        change: ConfigChange,
    ) -> Result<PromiseRaw<'env, ()>> {
        let (c, node) = self.with_node(change.node.clone());
        promise(env, async move {
            let mut update = LxcConfigUpdate::new();
            let mut set: Vec<_> = change.set.unwrap_or_default().into_iter().collect();
            set.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in set {
                update = update.set(&k, config_value(v)?);
            }
            for k in change.delete.unwrap_or_default() {
                update = update.delete(&k);
            }
            if let Some(d) = &change.digest {
                update = update.digest(d);
            }
            c.set_lxc_config(&node?, vmid, &update).await?;
            Ok(())
        })
    }
}
