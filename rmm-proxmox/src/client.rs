//! The typed API client.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, TransportErrorKind, map_error_response};
use crate::requests::{LxcConfigUpdate, Params, RestoreRequest, VzdumpRequest};
use crate::transport::{ApiRequest, BoxFuture, HttpTransport, Method, Transport};
use crate::types::{
    LxcConfig, LxcSummary, NodeStatus, NodeSummary, SmartData, SnapshotInfo, StorageSummary,
    TaskLogLine, TaskStatus, Version,
};
use crate::upid::Upid;
use crate::validate;

/// Every API endpoint this client calls. The integration tests check each
/// against the Proxmox API schema (it must exist and allow API tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /version`
    Version,
    /// `GET /nodes`
    Nodes,
    /// `GET /nodes/{node}/status`
    NodeStatus,
    /// `GET /nodes/{node}/lxc`
    LxcList,
    /// `POST /nodes/{node}/lxc` (restore)
    LxcRestore,
    /// `GET /nodes/{node}/lxc/{vmid}/config`
    LxcConfig,
    /// `PUT /nodes/{node}/lxc/{vmid}/config`
    LxcSetConfig,
    /// `GET /nodes/{node}/lxc/{vmid}/status/current`
    LxcStatus,
    /// `POST /nodes/{node}/lxc/{vmid}/status/start`
    LxcStart,
    /// `POST /nodes/{node}/lxc/{vmid}/status/stop`
    LxcStop,
    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`
    LxcSnapshots,
    /// `POST /nodes/{node}/lxc/{vmid}/snapshot`
    LxcSnapshot,
    /// `POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback`
    LxcRollback,
    /// `DELETE /nodes/{node}/lxc/{vmid}/snapshot/{snapname}`
    LxcDeleteSnapshot,
    /// `POST /nodes/{node}/vzdump`
    Vzdump,
    /// `GET /nodes/{node}/storage`
    Storage,
    /// `GET /nodes/{node}/disks/smart`
    DiskSmart,
    /// `GET /nodes/{node}/tasks/{upid}/status`
    TaskStatus,
    /// `GET /nodes/{node}/tasks/{upid}/log`
    TaskLog,
    /// `GET /access/permissions`
    Permissions,
}

impl Endpoint {
    /// All endpoints.
    pub const ALL: &'static [Endpoint] = &[
        Endpoint::Version,
        Endpoint::Nodes,
        Endpoint::NodeStatus,
        Endpoint::LxcList,
        Endpoint::LxcRestore,
        Endpoint::LxcConfig,
        Endpoint::LxcSetConfig,
        Endpoint::LxcStatus,
        Endpoint::LxcStart,
        Endpoint::LxcStop,
        Endpoint::LxcSnapshots,
        Endpoint::LxcSnapshot,
        Endpoint::LxcRollback,
        Endpoint::LxcDeleteSnapshot,
        Endpoint::Vzdump,
        Endpoint::Storage,
        Endpoint::DiskSmart,
        Endpoint::TaskStatus,
        Endpoint::TaskLog,
        Endpoint::Permissions,
    ];

    /// HTTP method.
    pub fn method(self) -> Method {
        use Endpoint::*;
        match self {
            LxcRestore | LxcStart | LxcStop | LxcSnapshot | LxcRollback | Vzdump => Method::Post,
            LxcSetConfig => Method::Put,
            LxcDeleteSnapshot => Method::Delete,
            _ => Method::Get,
        }
    }

    /// Path template as in the API schema.
    pub fn path_template(self) -> &'static str {
        use Endpoint::*;
        match self {
            Version => "/version",
            Nodes => "/nodes",
            NodeStatus => "/nodes/{node}/status",
            LxcList | LxcRestore => "/nodes/{node}/lxc",
            LxcConfig | LxcSetConfig => "/nodes/{node}/lxc/{vmid}/config",
            LxcStatus => "/nodes/{node}/lxc/{vmid}/status/current",
            LxcStart => "/nodes/{node}/lxc/{vmid}/status/start",
            LxcStop => "/nodes/{node}/lxc/{vmid}/status/stop",
            LxcSnapshots | LxcSnapshot => "/nodes/{node}/lxc/{vmid}/snapshot",
            LxcRollback => "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback",
            LxcDeleteSnapshot => "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}",
            Vzdump => "/nodes/{node}/vzdump",
            Storage => "/nodes/{node}/storage",
            DiskSmart => "/nodes/{node}/disks/smart",
            TaskStatus => "/nodes/{node}/tasks/{upid}/status",
            TaskLog => "/nodes/{node}/tasks/{upid}/log",
            Permissions => "/access/permissions",
        }
    }

    fn path(self, args: &[&str]) -> String {
        let mut out = String::new();
        let mut args = args.iter();
        for seg in self.path_template().split('/').skip(1) {
            out.push('/');
            if seg.starts_with('{') {
                // arity is fixed by the callers below
                let arg = args.next().copied().unwrap_or_default();
                out.push_str(&percent_encode_segment(arg));
            } else {
                out.push_str(seg);
            }
        }
        out
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path_template())
    }
}

fn percent_encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and leaves malformed ones as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Time source and sleeper, injected so waiting and backoff are testable
/// without real delays.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Sleeps for `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock (tokio timers).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Retry policy for idempotent requests (GET) and connect failures (any
/// method: the request was never sent). POSTs that may have reached the
/// server are never retried; neither are 401 and TLS failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

/// A token lacking a privilege, from [`Client::check_privileges`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingPrivilege {
    /// ACL path.
    pub path: String,
    /// Privilege.
    pub privilege: String,
}

impl fmt::Display for MissingPrivilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.privilege, self.path)
    }
}

/// The decoded `{ "data": ..., "total": ... }` envelope.
pub(crate) struct Envelope {
    pub(crate) data: Value,
    pub(crate) total: Option<u64>,
}

/// Async Proxmox VE API client. Cheap to clone.
///
/// It speaks HTTP only through its [`Transport`]; it never runs a process.
#[derive(Clone)]
pub struct Client {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client talking HTTPS as configured.
    pub fn new(config: &Config) -> Result<Client, Error> {
        let transport = HttpTransport::new(config)?;
        Ok(
            Client::with_transport(Arc::new(transport)).with_retry_policy(RetryPolicy {
                max_retries: config.retries,
                ..RetryPolicy::default()
            }),
        )
    }

    /// A client over any transport (tests, proxies, recording).
    pub fn with_transport(transport: Arc<dyn Transport>) -> Client {
        Client {
            transport,
            clock: Arc::new(TokioClock),
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the clock (tests use a virtual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Client {
        self.clock = clock;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    pub(crate) async fn call(
        &self,
        endpoint: Endpoint,
        args: &[&str],
        params: Params,
    ) -> Result<Envelope, Error> {
        let request = ApiRequest {
            method: endpoint.method(),
            path: endpoint.path(args),
            params: params.0,
        };
        let mut attempt = 0u32;
        loop {
            let result = self.transport.send(request.clone()).await;
            let retryable = match &result {
                Err(e) => match e.kind() {
                    TransportErrorKind::Connect => true,
                    TransportErrorKind::Timeout | TransportErrorKind::Other => {
                        request.method == Method::Get
                    }
                    _ => false,
                },
                Ok(r) => request.method == Method::Get && matches!(r.status, 502..=504),
            };
            if retryable && attempt < self.retry.max_retries {
                let delay = self
                    .retry
                    .base_delay
                    .saturating_mul(1 << attempt.min(16))
                    .min(self.retry.max_delay);
                tracing::debug!(%endpoint, attempt, ?delay, "retrying proxmox request");
                self.clock.sleep(delay).await;
                attempt += 1;
                continue;
            }
            let response = result?;
            if !(200..300).contains(&response.status) {
                return Err(map_error_response(
                    response.status,
                    response.reason.as_deref(),
                    &response.body,
                    &request.path,
                ));
            }
            let json: Value = if response.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&response.body).map_err(|source| Error::Decode {
                    path: request.path.clone(),
                    source,
                })?
            };
            let total = json.get("total").and_then(|t| {
                t.as_u64()
                    .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
            });
            let data = match json {
                Value::Object(mut o) => o.remove("data").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            return Ok(Envelope { data, total });
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        args: &[&str],
        params: Params,
    ) -> Result<T, Error> {
        let env = self.call(endpoint, args, params).await?;
        serde_json::from_value(env.data).map_err(|source| Error::Decode {
            path: endpoint.path(args),
            source,
        })
    }

    async fn upid(&self, endpoint: Endpoint, args: &[&str], params: Params) -> Result<Upid, Error> {
        self.get(endpoint, args, params).await
    }

    // ---- reads ----------------------------------------------------------

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, Error> {
        self.get(Endpoint::Version, &[], Params::new()).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeSummary>, Error> {
        self.get(Endpoint::Nodes, &[], Params::new()).await
    }

    /// `GET /nodes/{node}/status` (needs `Sys.Audit` on `/nodes/{node}`).
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, Error> {
        validate::node(node)?;
        self.get(Endpoint::NodeStatus, &[node], Params::new()).await
    }

    /// `GET /nodes/{node}/lxc`: containers the token may audit.
    pub async fn lxc_list(&self, node: &str) -> Result<Vec<LxcSummary>, Error> {
        validate::node(node)?;
        self.get(Endpoint::LxcList, &[node], Params::new()).await
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    pub async fn lxc_status(&self, node: &str, vmid: u32) -> Result<LxcSummary, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        self.get(
            Endpoint::LxcStatus,
            &[node, &vmid.to_string()],
            Params::new(),
        )
        .await
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config` with property strings parsed.
    pub async fn lxc_config(&self, node: &str, vmid: u32) -> Result<LxcConfig, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        self.get(
            Endpoint::LxcConfig,
            &[node, &vmid.to_string()],
            Params::new(),
        )
        .await
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    pub async fn lxc_snapshots(&self, node: &str, vmid: u32) -> Result<Vec<SnapshotInfo>, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        self.get(
            Endpoint::LxcSnapshots,
            &[node, &vmid.to_string()],
            Params::new(),
        )
        .await
    }

    /// `GET /nodes/{node}/storage`.
    pub async fn storage(&self, node: &str) -> Result<Vec<StorageSummary>, Error> {
        validate::node(node)?;
        self.get(Endpoint::Storage, &[node], Params::new()).await
    }

    /// `GET /nodes/{node}/disks/smart` for `disk` (e.g. `/dev/sda`).
    pub async fn disk_smart(&self, node: &str, disk: &str) -> Result<SmartData, Error> {
        validate::node(node)?;
        validate::disk_path(disk)?;
        self.get(
            Endpoint::DiskSmart,
            &[node],
            Params::new().set("disk", disk),
        )
        .await
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`, on the UPID's own node.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, Error> {
        self.get(
            Endpoint::TaskStatus,
            &[upid.node(), upid.as_str()],
            Params::new(),
        )
        .await
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`: `limit` lines from line
    /// `start` (0-based), plus the total line count when Proxmox sends it.
    pub async fn task_log(
        &self,
        upid: &Upid,
        start: u64,
        limit: u64,
    ) -> Result<(Vec<TaskLogLine>, Option<u64>), Error> {
        let args = [upid.node(), upid.as_str()];
        let env = self
            .call(
                Endpoint::TaskLog,
                &args,
                Params::new().set("start", start).set("limit", limit),
            )
            .await?;
        let lines = serde_json::from_value(env.data).map_err(|source| Error::Decode {
            path: Endpoint::TaskLog.path(&args),
            source,
        })?;
        Ok((lines, env.total))
    }

    /// `GET /access/permissions?path=...`: the token's effective privileges
    /// on `path`.
    pub async fn permissions(&self, path: &str) -> Result<BTreeSet<String>, Error> {
        validate::acl_path(path)?;
        let map: BTreeMap<String, BTreeMap<String, Value>> = self
            .get(Endpoint::Permissions, &[], Params::new().set("path", path))
            .await?;
        // With `path`, Proxmox answers `{ path: { Priv: 1, ... } }`.
        let privs = match map.get(path) {
            Some(p) => p.keys().cloned().collect(),
            None => map.values().flat_map(|p| p.keys().cloned()).collect(),
        };
        Ok(privs)
    }

    /// Permission preflight: which of `wanted` (`(acl path, privilege)`)
    /// the token lacks. An empty result means all are held.
    ///
    /// Lets a tool say "this token lacks VM.Snapshot on /vms/100" before it
    /// starts, instead of failing halfway.
    pub async fn check_privileges(
        &self,
        wanted: &[(&str, &str)],
    ) -> Result<Vec<MissingPrivilege>, Error> {
        for (path, privilege) in wanted {
            validate::acl_path(path)?;
            validate::privilege(privilege)?;
        }
        let mut held: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut missing = Vec::new();
        for (path, privilege) in wanted {
            if !held.contains_key(path) {
                let privs = self.permissions(path).await?;
                held.insert(path, privs);
            }
            if !held.get(path).is_some_and(|p| p.contains(*privilege)) {
                missing.push(MissingPrivilege {
                    path: (*path).to_owned(),
                    privilege: (*privilege).to_owned(),
                });
            }
        }
        Ok(missing)
    }

    /// Like [`Client::check_privileges`], failing with
    /// [`Error::PermissionDenied`] for the first missing privilege.
    pub async fn require_privileges(&self, wanted: &[(&str, &str)]) -> Result<(), Error> {
        match self.check_privileges(wanted).await?.into_iter().next() {
            None => Ok(()),
            Some(m) => Err(Error::PermissionDenied {
                message: format!("preflight: the token lacks {m}"),
                path: Some(m.path),
                privilege: Some(m.privilege),
            }),
        }
    }

    // ---- mutations ------------------------------------------------------

    /// Restores a container from a backup (`POST /nodes/{node}/lxc`,
    /// `restore=1`). Wait for the returned task with [`Client::wait_task`].
    pub async fn restore_lxc(&self, node: &str, request: &RestoreRequest) -> Result<Upid, Error> {
        validate::node(node)?;
        let params = request.to_params()?;
        self.upid(Endpoint::LxcRestore, &[node], params).await
    }

    /// Starts a backup (`POST /nodes/{node}/vzdump`).
    pub async fn vzdump(&self, node: &str, request: &VzdumpRequest) -> Result<Upid, Error> {
        validate::node(node)?;
        let params = request.to_params()?;
        self.upid(Endpoint::Vzdump, &[node], params).await
    }

    /// Creates a snapshot.
    pub async fn snapshot_lxc(
        &self,
        node: &str,
        vmid: u32,
        snapname: &str,
        description: Option<&str>,
    ) -> Result<Upid, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        validate::snapname(snapname)?;
        let params = Params::new()
            .set("snapname", snapname)
            .opt("description", description);
        self.upid(Endpoint::LxcSnapshot, &[node, &vmid.to_string()], params)
            .await
    }

    /// Rolls back to a snapshot; `start` starts the container afterwards.
    pub async fn rollback_lxc(
        &self,
        node: &str,
        vmid: u32,
        snapname: &str,
        start: bool,
    ) -> Result<Upid, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        validate::snapname(snapname)?;
        let params = Params::new().flag_if("start", start);
        self.upid(
            Endpoint::LxcRollback,
            &[node, &vmid.to_string(), snapname],
            params,
        )
        .await
    }

    /// Deletes a snapshot; `force` removes it from the config even if the
    /// storage removal fails.
    pub async fn delete_lxc_snapshot(
        &self,
        node: &str,
        vmid: u32,
        snapname: &str,
        force: bool,
    ) -> Result<Upid, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        validate::snapname(snapname)?;
        let params = Params::new().flag_if("force", force);
        self.upid(
            Endpoint::LxcDeleteSnapshot,
            &[node, &vmid.to_string(), snapname],
            params,
        )
        .await
    }

    /// Changes the container configuration (`PUT .../config`). Proxmox
    /// applies LXC config changes synchronously (the endpoint returns no
    /// task), so this returns once the change is written.
    pub async fn set_lxc_config(
        &self,
        node: &str,
        vmid: u32,
        update: &LxcConfigUpdate,
    ) -> Result<(), Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        let params = update.to_params()?;
        self.call(Endpoint::LxcSetConfig, &[node, &vmid.to_string()], params)
            .await
            .map(|_| ())
    }

    /// Starts a container.
    pub async fn start_lxc(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        self.upid(
            Endpoint::LxcStart,
            &[node, &vmid.to_string()],
            Params::new(),
        )
        .await
    }

    /// Stops a container immediately (use shutdown in the guest for a clean
    /// stop).
    pub async fn stop_lxc(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        validate::node(node)?;
        validate::vmid(vmid)?;
        self.upid(Endpoint::LxcStop, &[node, &vmid.to_string()], Params::new())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_and_encoded() {
        assert_eq!(Endpoint::Version.path(&[]), "/version");
        assert_eq!(
            Endpoint::LxcRollback.path(&["pve1", "100", "pre-up"]),
            "/nodes/pve1/lxc/100/snapshot/pre-up/rollback"
        );
        assert_eq!(
            Endpoint::TaskStatus.path(&[
                "pve1",
                "UPID:pve1:00000001:00000002:00000003:vzstart:100:a@pve!t:"
            ]),
            "/nodes/pve1/tasks/UPID%3Apve1%3A00000001%3A00000002%3A00000003%3Avzstart%3A100%3Aa%40pve%21t%3A/status"
        );
        assert_eq!(percent_decode("UPID%3Aa%40b%21c%3A"), "UPID:a@b!c:");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn every_endpoint_is_listed_once() {
        let set: BTreeSet<_> = Endpoint::ALL.iter().collect();
        assert_eq!(set.len(), Endpoint::ALL.len());
        let pairs: BTreeSet<_> = Endpoint::ALL
            .iter()
            .map(|e| (e.method(), e.path_template()))
            .collect();
        assert_eq!(pairs.len(), Endpoint::ALL.len(), "method+path unique");
    }
}
