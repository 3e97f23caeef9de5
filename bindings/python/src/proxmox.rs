//! `rmm.proxmox.Client` / `rmm.proxmox.AsyncClient` over `rmm_proxmox`,
//! `rmm.Upid`, and the typed values the reads return.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;
use rmm_proxmox::{
    BackupMode, Compression, LxcConfigUpdate, RestoreRequest, VzdumpRequest, WaitOptions,
};

use crate::errors::ErrorInfo;
use crate::runtime::{PerProcess, awaitable, block_on};

fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

/// A Proxmox task id (`UPID:node:pid:pstart:starttime:type:id:user:`).
#[pyclass(frozen, eq, hash, module = "rmm")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid(pub(crate) rmm_proxmox::Upid);

#[pymethods]
impl Upid {
    #[new]
    fn new(py: Python<'_>, text: &str) -> PyResult<Self> {
        text.parse::<rmm_proxmox::Upid>()
            .map(Upid)
            .map_err(|e| ErrorInfo::invalid(format!("invalid upid {text:?}: {e}")).into_pyerr(py))
    }

    /// The node the task runs on.
    #[getter]
    fn node(&self) -> &str {
        self.0.node()
    }

    /// Process id of the task worker.
    #[getter]
    fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Process start time (clock ticks since boot).
    #[getter]
    fn pstart(&self) -> u64 {
        self.0.pstart()
    }

    /// Task start time (Unix seconds).
    #[getter]
    fn starttime(&self) -> u32 {
        self.0.starttime()
    }

    /// Task type, e.g. `vzsnapshot`.
    #[getter]
    fn task_type(&self) -> &str {
        self.0.task_type()
    }

    /// Task id, usually the VMID; may be empty.
    #[getter]
    fn id(&self) -> &str {
        self.0.id()
    }

    /// The user or token that started the task.
    #[getter]
    fn user(&self) -> &str {
        self.0.user()
    }

    fn __str__(&self) -> &str {
        self.0.as_str()
    }

    fn __repr__(&self) -> String {
        format!("Upid({:?})", self.0.as_str())
    }
}

/// A UPID argument: `rmm.Upid` or its text.
pub(crate) struct UpidArg(rmm_proxmox::Upid);

impl<'a, 'py> FromPyObject<'a, 'py> for UpidArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(u) = obj.cast::<Upid>() {
            return Ok(UpidArg(u.get().0.clone()));
        }
        let s = obj.cast::<PyString>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err("expected an rmm.Upid or a UPID string")
        })?;
        let text = s.to_cow()?;
        text.parse().map(UpidArg).map_err(|e| {
            ErrorInfo::invalid(format!("invalid upid {text:?}: {e}")).into_pyerr(obj.py())
        })
    }
}

/// `GET /version`.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
pub struct Version {
    /// Package version, e.g. `9.1.1`.
    pub version: String,
    /// Release series, e.g. `9.1`.
    pub release: String,
    /// Git commit of pve-manager.
    pub repoid: String,
}

/// One entry of `GET /nodes`.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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

/// `GET /nodes/{node}/status`.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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

/// A container as `GET /nodes/{node}/lxc` lists it.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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

/// A container configuration; property strings in Proxmox's canonical form.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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
    /// Config digest, for `set_lxc_config(digest=...)`.
    pub digest: Option<String>,
    /// Every other key, as text.
    pub other: BTreeMap<String, String>,
}

/// A container snapshot.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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

/// A task's status.
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
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
#[pyclass(frozen, get_all, module = "rmm.proxmox")]
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// The task.
    pub upid: Upid,
    /// Warnings Proxmox counted (`WARNINGS: N`); 0 for `OK`.
    pub warnings: u32,
    /// The raw exit status.
    pub exitstatus: String,
}

#[pymethods]
impl TaskOutcome {
    fn __repr__(&self) -> String {
        format!(
            "TaskOutcome(upid={:?}, exitstatus={:?})",
            self.upid.0.as_str(),
            self.exitstatus
        )
    }
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
        mem: s.mem.get(),
        maxmem: s.maxmem.get(),
        disk: s.disk.get(),
        maxdisk: s.maxdisk.get(),
        uptime: s.uptime.get(),
    }
}

fn lxc_config(c: rmm_proxmox::LxcConfig) -> LxcConfig {
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

/// A config value for `set_lxc_config`: text, a number or a boolean.
pub(crate) struct ConfigValue(String);

impl<'a, 'py> FromPyObject<'a, 'py> for ConfigValue {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.extract::<bool>() {
            return Ok(ConfigValue(if b { "1" } else { "0" }.to_owned()));
        }
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(ConfigValue(i.to_string()));
        }
        if let Ok(s) = obj.extract::<String>() {
            return Ok(ConfigValue(s));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(
            "config values must be str, int or bool",
        ))
    }
}

/// The client for this process and the default node.
struct Px {
    c: rmm_proxmox::Client,
    default_node: Option<String>,
}

impl Px {
    fn node(&self, given: Option<String>) -> Result<String, ErrorInfo> {
        given.or_else(|| self.default_node.clone()).ok_or_else(|| {
            ErrorInfo::invalid("no node given and the client has no default node (pass node=...)")
        })
    }
}

struct Core {
    config: rmm_proxmox::Config,
    http: PerProcess<rmm_proxmox::Client>,
}

impl Core {
    fn new(config: rmm_proxmox::Config) -> Result<Core, ErrorInfo> {
        let client = rmm_proxmox::Client::new(&config)?;
        Ok(Core {
            config,
            http: PerProcess::new(client),
        })
    }

    fn px(&self) -> Result<Px, ErrorInfo> {
        let c = self
            .http
            .get(|_| Ok(rmm_proxmox::Client::new(&self.config)?))?;
        Ok(Px {
            c,
            default_node: self.config.node.clone(),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn config_from_args(
    url: &str,
    token_id: &str,
    token_secret: &str,
    fingerprint: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: bool,
    node: Option<String>,
    timeout: u64,
    retries: u32,
) -> Result<rmm_proxmox::Config, ErrorInfo> {
    let mut raw = serde_json::json!({
        "url": url,
        "token_id": token_id,
        "token_secret": token_secret,
        "insecure": insecure,
        "timeout_secs": timeout,
        "retries": retries,
    });
    if let Some(fp) = fingerprint {
        raw["fingerprint"] = fp.into();
    }
    if let Some(ca) = ca_file {
        raw["ca_file"] = ca.display().to_string().into();
    }
    if let Some(n) = node {
        raw["node"] = n.into();
    }
    Ok(rmm_proxmox::Config::from_json_with_env(
        &raw.to_string(),
        |_| None,
    )?)
}

fn wait_options(timeout: f64, poll_interval: Option<f64>) -> Result<WaitOptions, ErrorInfo> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(ErrorInfo::invalid(format!(
            "timeout must be a positive number of seconds, got {timeout}"
        )));
    }
    let mut opts = WaitOptions::with_timeout(Duration::from_secs_f64(timeout));
    if let Some(p) = poll_interval {
        if !(p.is_finite() && p > 0.0) {
            return Err(ErrorInfo::invalid(format!(
                "poll_interval must be a positive number of seconds, got {p}"
            )));
        }
        opts.initial_interval = Duration::from_secs_f64(p);
        opts.max_interval = opts.max_interval.max(opts.initial_interval);
    }
    Ok(opts)
}

fn backup_mode(mode: Option<String>) -> Result<Option<BackupMode>, ErrorInfo> {
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

fn compression(c: Option<String>) -> Result<Option<Compression>, ErrorInfo> {
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

fn upid(u: rmm_proxmox::Upid) -> Upid {
    Upid(u)
}

/// A blocking Proxmox VE API client (API token auth, pinned or CA-verified TLS).
#[pyclass(frozen, name = "Client", module = "rmm.proxmox")]
pub struct ProxmoxClient {
    core: Arc<Core>,
}

/// A Proxmox VE API client whose methods are awaitable from asyncio.
#[pyclass(frozen, name = "AsyncClient", module = "rmm.proxmox")]
pub struct AsyncProxmoxClient {
    core: Arc<Core>,
}

macro_rules! constructors {
    ($ty:ident, $name:literal) => {
        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (url, token_id, token_secret, *, fingerprint = None, ca_file = None, insecure = false, node = None, timeout = 30, retries = 2))]
            #[allow(clippy::too_many_arguments)]
            fn new(
                py: Python<'_>,
                url: &str,
                token_id: &str,
                token_secret: &str,
                fingerprint: Option<String>,
                ca_file: Option<PathBuf>,
                insecure: bool,
                node: Option<String>,
                timeout: u64,
                retries: u32,
            ) -> PyResult<Self> {
                let make = || -> Result<Core, ErrorInfo> {
                    Core::new(config_from_args(
                        url, token_id, token_secret, fingerprint, ca_file, insecure, node, timeout,
                        retries,
                    )?)
                };
                let core = make().map_err(|e| e.into_pyerr(py))?;
                Ok($ty { core: Arc::new(core) })
            }

            /// A client from a JSON config file (if given) and the `RMM_PVE_*`
            /// environment variables.
            #[staticmethod]
            #[pyo3(signature = (path = None))]
            fn from_config(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
                let make = || -> Result<Core, ErrorInfo> {
                    Core::new(rmm_proxmox::Config::load(path.as_deref())?)
                };
                let core = make().map_err(|e| e.into_pyerr(py))?;
                Ok($ty { core: Arc::new(core) })
            }

            /// The API base URL.
            #[getter]
            fn url(&self) -> String {
                self.core.config.url.clone()
            }

            /// The default node, if configured.
            #[getter]
            fn node(&self) -> Option<String> {
                self.core.config.node.clone()
            }

            fn __repr__(&self) -> String {
                // never the token secret
                format!("{}({:?}, token_id={:?})", $name, self.core.config.url, self.core.config.token.id.as_str())
            }
        }
    };
}

constructors!(ProxmoxClient, "rmm.proxmox.Client");
constructors!(AsyncProxmoxClient, "rmm.proxmox.AsyncClient");

/// Generates each operation twice: blocking on `ProxmoxClient`, awaitable
/// on `AsyncProxmoxClient`. `$body` is an async block body using `$px`.
macro_rules! operations {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty |$px:ident| $body:block
    )*) => {
        #[pymethods]
        impl ProxmoxClient {
            $(
                $(#[$meta])*
                #[allow(clippy::too_many_arguments)]
                fn $name(&self, py: Python<'_>, $($arg: $ty),*) -> PyResult<$ret> {
                    let $px = self.core.px().map_err(|e| e.into_pyerr(py))?;
                    block_on(py, async move {
                        let out: Result<$ret, ErrorInfo> = async move $body.await;
                        out
                    })
                }
            )*
        }

        #[pymethods]
        impl AsyncProxmoxClient {
            $(
                $(#[$meta])*
                #[allow(clippy::too_many_arguments)]
                fn $name<'py>(&self, py: Python<'py>, $($arg: $ty),*) -> PyResult<Bound<'py, PyAny>> {
                    let $px = self.core.px().map_err(|e| e.into_pyerr(py))?;
                    awaitable(py, async move {
                        let out: Result<$ret, ErrorInfo> = async move $body.await;
                        out
                    })
                }
            )*
        }
    };
}

operations! {
    /// `GET /version`.
    fn version() -> Version |px| {
        let v = px.c.version().await?;
        Ok(Version { version: v.version, release: v.release, repoid: v.repoid })
    }

    /// `GET /nodes`.
    fn nodes() -> Vec<NodeSummary> |px| {
        Ok(px.c.nodes().await?.into_iter().map(|n| NodeSummary {
            node: n.node,
            status: word(&n.status),
            cpu: n.cpu.get(),
            maxcpu: n.maxcpu.get(),
            mem: n.mem.get(),
            maxmem: n.maxmem.get(),
            uptime: n.uptime.get(),
            ssl_fingerprint: n.ssl_fingerprint,
        }).collect())
    }

    /// `GET /nodes/{node}/status`.
    #[pyo3(signature = (node = None))]
    fn node_status(node: Option<String>) -> NodeStatus |px| {
        let s = px.c.node_status(&px.node(node)?).await?;
        Ok(NodeStatus {
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
        })
    }

    /// `GET /nodes/{node}/lxc`.
    #[pyo3(signature = (node = None))]
    fn lxc_list(node: Option<String>) -> Vec<LxcSummary> |px| {
        Ok(px.c.lxc_list(&px.node(node)?).await?.into_iter().map(lxc_summary).collect())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    #[pyo3(signature = (vmid, node = None))]
    fn lxc_status(vmid: u32, node: Option<String>) -> LxcSummary |px| {
        Ok(lxc_summary(px.c.lxc_status(&px.node(node)?, vmid).await?))
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    #[pyo3(signature = (vmid, node = None))]
    fn lxc_config(vmid: u32, node: Option<String>) -> LxcConfig |px| {
        Ok(lxc_config(px.c.lxc_config(&px.node(node)?, vmid).await?))
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    #[pyo3(signature = (vmid, node = None))]
    fn lxc_snapshots(vmid: u32, node: Option<String>) -> Vec<SnapshotInfo> |px| {
        Ok(px.c.lxc_snapshots(&px.node(node)?, vmid).await?.into_iter().map(|s| SnapshotInfo {
            name: s.name,
            parent: s.parent,
            description: s.description,
            snaptime: s.snaptime,
        }).collect())
    }

    /// `GET /nodes/{node}/storage`.
    #[pyo3(signature = (node = None))]
    fn storage(node: Option<String>) -> Vec<StorageSummary> |px| {
        Ok(px.c.storage(&px.node(node)?).await?.into_iter().map(|s| StorageSummary {
            storage: s.storage,
            r#type: s.kind,
            content: s.content,
            active: s.active,
            enabled: s.enabled,
            shared: s.shared,
            total: s.total.get(),
            used: s.used.get(),
            avail: s.avail.get(),
        }).collect())
    }

    /// The token's privileges on an ACL path.
    fn permissions(path: String) -> Vec<String> |px| {
        Ok(px.c.permissions(&path).await?.into_iter().collect())
    }

    /// Which of `wanted` `(path, privilege)` pairs the token lacks.
    fn check_privileges(wanted: Vec<(String, String)>) -> Vec<(String, String)> |px| {
        let pairs: Vec<(&str, &str)> = wanted.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        Ok(px.c.check_privileges(&pairs).await?.into_iter().map(|m| (m.path, m.privilege)).collect())
    }

    /// A task's status.
    fn task_status(upid: UpidArg) -> TaskStatus |px| {
        let s = px.c.task_status(&upid.0).await?;
        Ok(TaskStatus {
            status: word(&s.status),
            exitstatus: s.exitstatus,
            r#type: s.kind,
            node: s.node,
        })
    }

    /// Waits until a task stops; raises `TaskFailed` unless it ended `OK`
    /// (or `WARNINGS: N`), `Timeout` past `timeout` seconds.
    #[pyo3(signature = (upid, timeout = 600.0, poll_interval = None))]
    fn wait_task(upid: UpidArg, timeout: f64, poll_interval: Option<f64>) -> TaskOutcome |px| {
        let opts = wait_options(timeout, poll_interval)?;
        let o = px.c.wait_task(&upid.0, opts).await?;
        Ok(TaskOutcome { upid: Upid(o.upid), warnings: o.warnings, exitstatus: o.exitstatus })
    }

    /// Creates a snapshot; returns the task's UPID.
    #[pyo3(signature = (vmid, snapname, description = None, node = None))]
    fn snapshot_lxc(vmid: u32, snapname: String, description: Option<String>, node: Option<String>) -> Upid |px| {
        Ok(upid(px.c.snapshot_lxc(&px.node(node)?, vmid, &snapname, description.as_deref()).await?))
    }

    /// Rolls back to a snapshot; returns the task's UPID.
    #[pyo3(signature = (vmid, snapname, start = false, node = None))]
    fn rollback_lxc(vmid: u32, snapname: String, start: bool, node: Option<String>) -> Upid |px| {
        Ok(upid(px.c.rollback_lxc(&px.node(node)?, vmid, &snapname, start).await?))
    }

    /// Deletes a snapshot; returns the task's UPID.
    #[pyo3(signature = (vmid, snapname, force = false, node = None))]
    fn delete_lxc_snapshot(vmid: u32, snapname: String, force: bool, node: Option<String>) -> Upid |px| {
        Ok(upid(px.c.delete_lxc_snapshot(&px.node(node)?, vmid, &snapname, force).await?))
    }

    /// Starts a container; returns the task's UPID.
    #[pyo3(signature = (vmid, node = None))]
    fn start_lxc(vmid: u32, node: Option<String>) -> Upid |px| {
        Ok(upid(px.c.start_lxc(&px.node(node)?, vmid).await?))
    }

    /// Stops a container; returns the task's UPID.
    #[pyo3(signature = (vmid, node = None))]
    fn stop_lxc(vmid: u32, node: Option<String>) -> Upid |px| {
        Ok(upid(px.c.stop_lxc(&px.node(node)?, vmid).await?))
    }

    /// Restores a container from a backup archive; returns the task's UPID.
    #[pyo3(signature = (vmid, archive, *, storage = None, hostname = None, force = false, unique = true, start = false, node = None))]
    fn restore_lxc(
        vmid: u32,
        archive: String,
        storage: Option<String>,
        hostname: Option<String>,
        force: bool,
        unique: bool,
        start: bool,
        node: Option<String>,
    ) -> Upid |px| {
        let mut req = RestoreRequest::new(vmid, &archive).force(force).start(start);
        req.unique = unique;
        if let Some(s) = &storage {
            req = req.storage(s);
        }
        if let Some(h) = &hostname {
            req = req.hostname(h);
        }
        Ok(upid(px.c.restore_lxc(&px.node(node)?, &req).await?))
    }

    /// Backs up guests (vzdump); returns the task's UPID.
    #[pyo3(signature = (vmids, *, storage = None, mode = None, compress = None, node = None))]
    fn vzdump(
        vmids: Vec<u32>,
        storage: Option<String>,
        mode: Option<String>,
        compress: Option<String>,
        node: Option<String>,
    ) -> Upid |px| {
        let mut req = VzdumpRequest::new(&vmids);
        if let Some(s) = &storage {
            req = req.storage(s);
        }
        if let Some(m) = backup_mode(mode)? {
            req = req.mode(m);
        }
        if let Some(c) = compression(compress)? {
            req = req.compress(c);
        }
        Ok(upid(px.c.vzdump(&px.node(node)?, &req).await?))
    }

    /// Changes a container's configuration (applied synchronously by
    /// Proxmox). Values are str, int or bool; `digest` makes the change
    /// fail with `Conflict` if the config changed since it was read.
    #[pyo3(signature = (vmid, set = None, *, delete = None, digest = None, node = None))]
    fn set_lxc_config(
        vmid: u32,
        set: Option<BTreeMap<String, ConfigValue>>,
        delete: Option<Vec<String>>,
        digest: Option<String>,
        node: Option<String>,
    ) -> () |px| {
        let mut update = LxcConfigUpdate::new();
        for (k, v) in set.unwrap_or_default() {
            update = update.set(&k, v.0);
        }
        for k in delete.unwrap_or_default() {
            update = update.delete(&k);
        }
        if let Some(d) = &digest {
            update = update.digest(d);
        }
        px.c.set_lxc_config(&px.node(node)?, vmid, &update).await?;
        Ok(())
    }
}
