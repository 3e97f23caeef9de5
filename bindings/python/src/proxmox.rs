//! `rmm.proxmox.Client` / `rmm.proxmox.AsyncClient` over `rmm_proxmox`,
//! `rmm.Upid`, and the typed values the reads return.
//!
//! The operations, their argument checks and the flattening of readings are
//! `rmm_bindings_common::proxmox`'s; here they become blocking and awaitable
//! methods, and the readings pyclasses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;
use rmm_bindings_common::proxmox::{
    self as common, ConfigChange, ConnectArgs, Pve, RestoreArgs, VzdumpArgs,
};
use rmm_bindings_common::{Lang, parse_upid};

use crate::errors::{ErrorInfo, IntoPyErr};
use crate::runtime::{PerProcess, awaitable, block_on};

/// A Proxmox task id (`UPID:node:pid:pstart:starttime:type:id:user:`).
#[pyclass(frozen, eq, hash, module = "rmm")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid(pub(crate) rmm_proxmox::Upid);

#[pymethods]
impl Upid {
    #[new]
    fn new(py: Python<'_>, text: &str) -> PyResult<Self> {
        parse_upid(text).map(Upid).map_err(|e| e.into_pyerr(py))
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
        parse_upid(&s.to_cow()?)
            .map(UpidArg)
            .map_err(|e| e.into_pyerr(obj.py()))
    }
}

/// Read-only classes with the fields of the `rmm_bindings_common::proxmox`
/// struct of the same name, and the 1:1 conversion from it.
macro_rules! value_classes {
    ($(
        $(#[$meta:meta])*
        $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }
    )*) => {$(
        $(#[$meta])*
        #[pyclass(frozen, get_all, module = "rmm.proxmox")]
        #[derive(Debug, Clone)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl From<common::$name> for $name {
            fn from(v: common::$name) -> Self {
                $name { $($field: v.$field,)* }
            }
        }
    )*};
}

value_classes! {
    /// `GET /version`.
    Version {
        /// Package version, e.g. `9.1.1`.
        version: String,
        /// Release series, e.g. `9.1`.
        release: String,
        /// Git commit of pve-manager.
        repoid: String,
    }

    /// One entry of `GET /nodes`.
    NodeSummary {
        /// Node name.
        node: String,
        /// `online`, `offline` or `unknown`.
        status: String,
        /// CPU usage (0..1).
        cpu: Option<f64>,
        /// Number of CPUs.
        maxcpu: Option<u32>,
        /// Used memory in bytes.
        mem: Option<u64>,
        /// Total memory in bytes.
        maxmem: Option<u64>,
        /// Uptime in seconds.
        uptime: Option<u64>,
        /// Certificate fingerprint.
        ssl_fingerprint: Option<String>,
    }

    /// `GET /nodes/{node}/status`.
    NodeStatus {
        /// CPU usage (0..1).
        cpu: Option<f64>,
        /// 1, 5 and 15 minute load averages (empty when absent or not all
        /// numbers).
        loadavg: Vec<f64>,
        /// Uptime in seconds.
        uptime: Option<u64>,
        /// Total memory in bytes.
        memory_total: Option<u64>,
        /// Used memory in bytes.
        memory_used: Option<u64>,
        /// Total swap in bytes.
        swap_total: Option<u64>,
        /// Used swap in bytes.
        swap_used: Option<u64>,
        /// Root file system size in bytes.
        rootfs_total: Option<u64>,
        /// Root file system used bytes.
        rootfs_used: Option<u64>,
        /// CPU model.
        cpu_model: Option<String>,
        /// Logical CPUs.
        cpus: Option<u32>,
        /// pve-manager version string.
        pveversion: Option<String>,
        /// Kernel version string.
        kversion: Option<String>,
    }

    /// A container as `GET /nodes/{node}/lxc` lists it.
    LxcSummary {
        /// Container id.
        vmid: u32,
        /// Hostname.
        name: Option<String>,
        /// `running`, `stopped` or `unknown`.
        status: String,
        /// Current lock, if any.
        lock: Option<String>,
        /// Tags, `;`-separated.
        tags: Option<String>,
        /// Whether it is a template.
        template: bool,
        /// CPU usage.
        cpu: Option<f64>,
        /// Used memory in bytes.
        mem: Option<u64>,
        /// Memory limit in bytes.
        maxmem: Option<u64>,
        /// Used root disk in bytes.
        disk: Option<u64>,
        /// Root disk size in bytes.
        maxdisk: Option<u64>,
        /// Uptime in seconds.
        uptime: Option<u64>,
    }

    /// A container configuration; property strings in Proxmox's canonical form.
    LxcConfig {
        /// Hostname.
        hostname: Option<String>,
        /// OS type.
        ostype: Option<String>,
        /// Architecture.
        arch: Option<String>,
        /// CPU cores.
        cores: Option<u32>,
        /// Memory in MiB.
        memory: Option<u64>,
        /// Swap in MiB.
        swap: Option<u64>,
        /// Start at boot.
        onboot: Option<bool>,
        /// Unprivileged container.
        unprivileged: Option<bool>,
        /// Is a template.
        template: Option<bool>,
        /// Description.
        description: Option<String>,
        /// Tags.
        tags: Vec<String>,
        /// Current lock.
        lock: Option<String>,
        /// Feature flags (`keyctl=1,nesting=1`).
        features: Option<String>,
        /// Root volume.
        rootfs: Option<String>,
        /// Network interfaces by index (`net0` is `net[0]`).
        net: BTreeMap<u32, String>,
        /// Mount points by index.
        mp: BTreeMap<u32, String>,
        /// Config digest, for `set_lxc_config(digest=...)`.
        digest: Option<String>,
        /// Every other key, as text.
        other: BTreeMap<String, String>,
    }

    /// A container snapshot.
    SnapshotInfo {
        /// Name (`current` is the live state).
        name: String,
        /// Parent snapshot.
        parent: Option<String>,
        /// Description.
        description: Option<String>,
        /// Creation time (Unix seconds).
        snaptime: Option<i64>,
    }

    /// A storage as `GET /nodes/{node}/storage` lists it.
    StorageSummary {
        /// Storage id.
        storage: String,
        /// Storage type (`dir`, `lvmthin`, ...).
        r#type: String,
        /// Content types, comma-separated.
        content: String,
        /// Active.
        active: Option<bool>,
        /// Enabled.
        enabled: Option<bool>,
        /// Shared.
        shared: Option<bool>,
        /// Size in bytes.
        total: Option<u64>,
        /// Used bytes.
        used: Option<u64>,
        /// Available bytes.
        avail: Option<u64>,
    }

    /// A task's status.
    TaskStatus {
        /// `running`, `stopped` or `unknown`.
        status: String,
        /// Exit status once stopped (`OK`, `WARNINGS: N`, or the error).
        exitstatus: Option<String>,
        /// Task type.
        r#type: Option<String>,
        /// Node.
        node: Option<String>,
    }
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

impl From<common::TaskOutcome> for TaskOutcome {
    fn from(o: common::TaskOutcome) -> Self {
        TaskOutcome {
            upid: Upid(o.upid),
            warnings: o.warnings,
            exitstatus: o.exitstatus,
        }
    }
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

/// A config value for `set_lxc_config`: text, a number or a boolean.
pub(crate) struct ConfigValue(common::ConfigValue);

impl<'a, 'py> FromPyObject<'a, 'py> for ConfigValue {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.extract::<bool>() {
            return Ok(ConfigValue(common::ConfigValue::Bool(b)));
        }
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(ConfigValue(common::ConfigValue::Int(i)));
        }
        if let Ok(s) = obj.extract::<String>() {
            return Ok(ConfigValue(common::ConfigValue::Text(s)));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(
            "config values must be str, int or bool",
        ))
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

    /// The operations, through this process's client.
    fn px(&self) -> Result<Pve, ErrorInfo> {
        let c = self
            .http
            .get(|_| Ok(rmm_proxmox::Client::new(&self.config)?))?;
        Ok(Pve::new(c, self.config.node.clone(), Lang::Python))
    }
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
                let args = ConnectArgs {
                    url: url.to_owned(),
                    token_id: token_id.to_owned(),
                    token_secret: token_secret.to_owned(),
                    fingerprint,
                    ca_file: ca_file.map(|p| p.display().to_string()),
                    insecure,
                    node,
                    timeout_secs: Some(timeout),
                    retries: Some(retries),
                };
                let make = || -> Result<Core, ErrorInfo> { Core::new(args.config()?) };
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
        Ok(px.version().await?.into())
    }

    /// `GET /nodes`.
    fn nodes() -> Vec<NodeSummary> |px| {
        Ok(px.nodes().await?.into_iter().map(NodeSummary::from).collect())
    }

    /// `GET /nodes/{node}/status`.
    #[pyo3(signature = (node = None))]
    fn node_status(node: Option<String>) -> NodeStatus |px| {
        Ok(px.node_status(node).await?.into())
    }

    /// `GET /nodes/{node}/lxc`.
    #[pyo3(signature = (node = None))]
    fn lxc_list(node: Option<String>) -> Vec<LxcSummary> |px| {
        Ok(px.lxc_list(node).await?.into_iter().map(LxcSummary::from).collect())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    #[pyo3(signature = (vmid, node = None))]
    fn lxc_status(vmid: u32, node: Option<String>) -> LxcSummary |px| {
        Ok(px.lxc_status(vmid, node).await?.into())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    #[pyo3(signature = (vmid, node = None))]
    fn lxc_config(vmid: u32, node: Option<String>) -> LxcConfig |px| {
        Ok(px.lxc_config(vmid, node).await?.into())
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    #[pyo3(signature = (vmid, node = None))]
    fn lxc_snapshots(vmid: u32, node: Option<String>) -> Vec<SnapshotInfo> |px| {
        Ok(px.lxc_snapshots(vmid, node).await?.into_iter().map(SnapshotInfo::from).collect())
    }

    /// `GET /nodes/{node}/storage`.
    #[pyo3(signature = (node = None))]
    fn storage(node: Option<String>) -> Vec<StorageSummary> |px| {
        Ok(px.storage(node).await?.into_iter().map(StorageSummary::from).collect())
    }

    /// The token's privileges on an ACL path.
    fn permissions(path: String) -> Vec<String> |px| {
        px.permissions(path).await
    }

    /// Which of `wanted` `(path, privilege)` pairs the token lacks.
    fn check_privileges(wanted: Vec<(String, String)>) -> Vec<(String, String)> |px| {
        px.check_privileges(wanted).await
    }

    /// A task's status.
    fn task_status(upid: UpidArg) -> TaskStatus |px| {
        Ok(px.task_status(upid.0).await?.into())
    }

    /// Waits until a task stops; raises `TaskFailed` unless it ended `OK`
    /// (or `WARNINGS: N`), `Timeout` past `timeout` seconds.
    #[pyo3(signature = (upid, timeout = 600.0, poll_interval = None))]
    fn wait_task(upid: UpidArg, timeout: f64, poll_interval: Option<f64>) -> TaskOutcome |px| {
        Ok(px.wait_task(upid.0, Some(timeout), poll_interval).await?.into())
    }

    /// Creates a snapshot; returns the task's UPID.
    #[pyo3(signature = (vmid, snapname, description = None, node = None))]
    fn snapshot_lxc(vmid: u32, snapname: String, description: Option<String>, node: Option<String>) -> Upid |px| {
        px.snapshot_lxc(vmid, snapname, description, node).await.map(Upid)
    }

    /// Rolls back to a snapshot; returns the task's UPID.
    #[pyo3(signature = (vmid, snapname, start = false, node = None))]
    fn rollback_lxc(vmid: u32, snapname: String, start: bool, node: Option<String>) -> Upid |px| {
        px.rollback_lxc(vmid, snapname, Some(start), node).await.map(Upid)
    }

    /// Deletes a snapshot; returns the task's UPID.
    #[pyo3(signature = (vmid, snapname, force = false, node = None))]
    fn delete_lxc_snapshot(vmid: u32, snapname: String, force: bool, node: Option<String>) -> Upid |px| {
        px.delete_lxc_snapshot(vmid, snapname, Some(force), node).await.map(Upid)
    }

    /// Starts a container; returns the task's UPID.
    #[pyo3(signature = (vmid, node = None))]
    fn start_lxc(vmid: u32, node: Option<String>) -> Upid |px| {
        px.start_lxc(vmid, node).await.map(Upid)
    }

    /// Stops a container; returns the task's UPID.
    #[pyo3(signature = (vmid, node = None))]
    fn stop_lxc(vmid: u32, node: Option<String>) -> Upid |px| {
        px.stop_lxc(vmid, node).await.map(Upid)
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
        let args = RestoreArgs {
            storage,
            hostname,
            force: Some(force),
            unique: Some(unique),
            start: Some(start),
        };
        px.restore_lxc(vmid, archive, args, node).await.map(Upid)
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
        let args = VzdumpArgs { storage, mode, compress };
        px.vzdump(vmids, args, node).await.map(Upid)
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
        let change = ConfigChange {
            set: set.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
            delete: delete.unwrap_or_default(),
            digest,
        };
        px.set_lxc_config(vmid, change, node).await
    }
}
