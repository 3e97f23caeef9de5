//! `ProxmoxClient` (`rmm.proxmox.Client` in `rmm.js`) and `Upid`, over
//! `rmm_proxmox`. The operations, their argument checks and the flattening
//! of readings are `rmm_bindings_common::proxmox`'s; here they become
//! Promises, and the readings objects (64-bit counts as JavaScript numbers).

use std::collections::{BTreeMap, HashMap};

use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rmm_bindings_common::proxmox::{
    self as common, ConfigChange as Change, ConnectArgs, Pve, RestoreArgs, VzdumpArgs,
};
use rmm_bindings_common::{Lang, parse_upid};

use crate::errors::{ErrorInfo, IntoJs};
use crate::server::promise;

type Res<T> = std::result::Result<T, ErrorInfo>;

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

fn num(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

fn texts<K: ToString>(map: BTreeMap<K, String>) -> HashMap<String, String> {
    map.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

impl From<common::Version> for PveVersion {
    fn from(v: common::Version) -> Self {
        PveVersion {
            version: v.version,
            release: v.release,
            repoid: v.repoid,
        }
    }
}

impl From<common::NodeSummary> for NodeSummary {
    fn from(n: common::NodeSummary) -> Self {
        NodeSummary {
            node: n.node,
            status: n.status,
            cpu: n.cpu,
            maxcpu: n.maxcpu,
            mem: num(n.mem),
            maxmem: num(n.maxmem),
            uptime: num(n.uptime),
            ssl_fingerprint: n.ssl_fingerprint,
        }
    }
}

impl From<common::NodeStatus> for NodeStatus {
    fn from(s: common::NodeStatus) -> Self {
        NodeStatus {
            cpu: s.cpu,
            loadavg: s.loadavg,
            uptime: num(s.uptime),
            memory_total: num(s.memory_total),
            memory_used: num(s.memory_used),
            swap_total: num(s.swap_total),
            swap_used: num(s.swap_used),
            rootfs_total: num(s.rootfs_total),
            rootfs_used: num(s.rootfs_used),
            cpu_model: s.cpu_model,
            cpus: s.cpus,
            pveversion: s.pveversion,
            kversion: s.kversion,
        }
    }
}

impl From<common::LxcSummary> for LxcSummary {
    fn from(s: common::LxcSummary) -> Self {
        LxcSummary {
            vmid: s.vmid,
            name: s.name,
            status: s.status,
            lock: s.lock,
            tags: s.tags,
            template: s.template,
            cpu: s.cpu,
            mem: num(s.mem),
            maxmem: num(s.maxmem),
            disk: num(s.disk),
            maxdisk: num(s.maxdisk),
            uptime: num(s.uptime),
        }
    }
}

impl From<common::LxcConfig> for LxcConfig {
    fn from(c: common::LxcConfig) -> Self {
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
            features: c.features,
            rootfs: c.rootfs,
            net: texts(c.net),
            mp: texts(c.mp),
            digest: c.digest,
            other: texts(c.other),
        }
    }
}

impl From<common::SnapshotInfo> for SnapshotInfo {
    fn from(s: common::SnapshotInfo) -> Self {
        SnapshotInfo {
            name: s.name,
            parent: s.parent,
            description: s.description,
            snaptime: s.snaptime,
        }
    }
}

impl From<common::StorageSummary> for StorageSummary {
    fn from(s: common::StorageSummary) -> Self {
        StorageSummary {
            storage: s.storage,
            r#type: s.r#type,
            content: s.content,
            active: s.active,
            enabled: s.enabled,
            shared: s.shared,
            total: num(s.total),
            used: num(s.used),
            avail: num(s.avail),
        }
    }
}

impl From<common::TaskStatus> for TaskStatus {
    fn from(s: common::TaskStatus) -> Self {
        TaskStatus {
            status: s.status,
            exitstatus: s.exitstatus,
            r#type: s.r#type,
            node: s.node,
        }
    }
}

impl From<common::TaskOutcome> for TaskOutcome {
    fn from(o: common::TaskOutcome) -> Self {
        TaskOutcome {
            upid: o.upid.to_string(),
            warnings: o.warnings,
            exitstatus: o.exitstatus,
        }
    }
}

fn config_value(v: Either3<String, f64, bool>) -> common::ConfigValue {
    match v {
        Either3::A(s) => common::ConfigValue::Text(s),
        Either3::B(n) => common::ConfigValue::Number(n),
        Either3::C(b) => common::ConfigValue::Bool(b),
    }
}

/// A Proxmox VE API client (API-token auth; pinned, CA-verified or
/// system-trusted TLS). Reads resolve with typed objects, operations with
/// the task's UPID; `waitTask` waits for a task and rejects with
/// `TaskFailed` unless it ended `OK`.
#[napi]
pub struct ProxmoxClient {
    pve: Pve,
    url: String,
}

impl ProxmoxClient {
    fn build(config: rmm_proxmox::Config) -> Res<Self> {
        let client = rmm_proxmox::Client::new(&config)?;
        Ok(ProxmoxClient {
            pve: Pve::new(client, config.node.clone(), Lang::JavaScript),
            url: config.url,
        })
    }
}

#[napi]
impl ProxmoxClient {
    /// A client from explicit settings.
    #[napi(constructor)]
    pub fn new(env: Env, options: ProxmoxOptions) -> Result<Self> {
        let args = ConnectArgs {
            url: options.url,
            token_id: options.token_id,
            token_secret: options.token_secret,
            fingerprint: options.fingerprint,
            ca_file: options.ca_file,
            insecure: options.insecure.unwrap_or(false),
            node: options.node,
            timeout_secs: options.timeout.map(u64::from),
            retries: options.retries,
        };
        let make = || -> Res<Self> { Self::build(args.config()?) };
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
        self.pve.default_node().map(str::to_owned)
    }

    /// `GET /version`.
    #[napi]
    pub fn version<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, PveVersion>> {
        let pve = self.pve.clone();
        promise(env, async move { Ok(pve.version().await?.into()) })
    }

    /// `GET /nodes`.
    #[napi]
    pub fn nodes<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Vec<NodeSummary>>> {
        let pve = self.pve.clone();
        promise(env, async move {
            Ok(pve
                .nodes()
                .await?
                .into_iter()
                .map(NodeSummary::from)
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
        let pve = self.pve.clone();
        promise(env, async move { Ok(pve.node_status(node).await?.into()) })
    }

    /// `GET /nodes/{node}/lxc`.
    #[napi]
    pub fn lxc_list<'env>(
        &self,
        env: &'env Env,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, Vec<LxcSummary>>> {
        let pve = self.pve.clone();
        promise(env, async move {
            Ok(pve
                .lxc_list(node)
                .await?
                .into_iter()
                .map(LxcSummary::from)
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
        let pve = self.pve.clone();
        promise(
            env,
            async move { Ok(pve.lxc_status(vmid, node).await?.into()) },
        )
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    #[napi]
    pub fn lxc_config<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, LxcConfig>> {
        let pve = self.pve.clone();
        promise(
            env,
            async move { Ok(pve.lxc_config(vmid, node).await?.into()) },
        )
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    #[napi]
    pub fn lxc_snapshots<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, Vec<SnapshotInfo>>> {
        let pve = self.pve.clone();
        promise(env, async move {
            let list = pve.lxc_snapshots(vmid, node).await?;
            Ok(list.into_iter().map(SnapshotInfo::from).collect())
        })
    }

    /// `GET /nodes/{node}/storage`.
    #[napi]
    pub fn storage<'env>(
        &self,
        env: &'env Env,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, Vec<StorageSummary>>> {
        let pve = self.pve.clone();
        promise(env, async move {
            let list = pve.storage(node).await?;
            Ok(list.into_iter().map(StorageSummary::from).collect())
        })
    }

    /// The token's privileges on an ACL path.
    #[napi]
    pub fn permissions<'env>(
        &self,
        env: &'env Env,
        path: String,
    ) -> Result<PromiseRaw<'env, Vec<String>>> {
        promise(env, self.pve.clone().permissions(path))
    }

    /// Which of `wanted` the token lacks (empty: all held).
    #[napi]
    pub fn check_privileges<'env>(
        &self,
        env: &'env Env,
        wanted: Vec<Privilege>,
    ) -> Result<PromiseRaw<'env, Vec<Privilege>>> {
        let pve = self.pve.clone();
        let pairs = wanted.into_iter().map(|p| (p.path, p.privilege)).collect();
        promise(env, async move {
            let missing = pve.check_privileges(pairs).await?;
            Ok(missing
                .into_iter()
                .map(|(path, privilege)| Privilege { path, privilege })
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
        let pve = self.pve.clone();
        promise(env, async move {
            Ok(pve.task_status(parse_upid(&upid)?).await?.into())
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
        let pve = self.pve.clone();
        let o = options.unwrap_or_default();
        promise(env, async move {
            let upid = parse_upid(&upid)?;
            Ok(pve
                .wait_task(upid, o.timeout, o.poll_interval)
                .await?
                .into())
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
        let task = self
            .pve
            .clone()
            .snapshot_lxc(vmid, snapname, o.description, o.node);
        promise(env, upid_text(task))
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
        let task = self
            .pve
            .clone()
            .rollback_lxc(vmid, snapname, o.start, o.node);
        promise(env, upid_text(task))
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
        let task = self
            .pve
            .clone()
            .delete_lxc_snapshot(vmid, snapname, o.force, o.node);
        promise(env, upid_text(task))
    }

    /// Starts a container; resolves with the task's UPID.
    #[napi]
    pub fn start_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, String>> {
        promise(env, upid_text(self.pve.clone().start_lxc(vmid, node)))
    }

    /// Stops a container; resolves with the task's UPID.
    #[napi]
    pub fn stop_lxc<'env>(
        &self,
        env: &'env Env,
        vmid: u32,
        node: Option<String>,
    ) -> Result<PromiseRaw<'env, String>> {
        promise(env, upid_text(self.pve.clone().stop_lxc(vmid, node)))
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
        let args = RestoreArgs {
            storage: o.storage,
            hostname: o.hostname,
            force: o.force,
            unique: o.unique,
            start: o.start,
        };
        let task = self.pve.clone().restore_lxc(vmid, archive, args, o.node);
        promise(env, upid_text(task))
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
        let args = VzdumpArgs {
            storage: o.storage,
            mode: o.mode,
            compress: o.compress,
        };
        promise(env, upid_text(self.pve.clone().vzdump(vmids, args, o.node)))
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
        let set = change.set.unwrap_or_default().into_iter();
        let update = Change {
            set: set.map(|(k, v)| (k, config_value(v))).collect(),
            delete: change.delete.unwrap_or_default(),
            digest: change.digest,
        };
        promise(
            env,
            self.pve.clone().set_lxc_config(vmid, update, change.node),
        )
    }
}

/// A task-starting operation resolving with the UPID's text.
async fn upid_text(task: impl std::future::Future<Output = Res<rmm_proxmox::Upid>>) -> Res<String> {
    Ok(task.await?.to_string())
}
