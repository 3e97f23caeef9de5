//! Typed Proxmox VE API responses.
//!
//! Every type tolerates unknown fields, `0`/`1` booleans and numbers sent as
//! strings, because Proxmox versions differ in exactly these details.
//!
//! How strict each field is follows the API schema (audited against pve-docs
//! 9.1.3 for version, nodes, node status, containers, container config and
//! storage):
//!
//! - Identifiers a caller acts on (`vmid`, the node name, the storage id)
//!   are strict: a bad one fails the read with an error naming the field.
//! - Readings — usage numbers, counts, durations, load averages — are
//!   [`Lenient`]: the schema allows values a typed field cannot hold
//!   (strings for load averages and `cpuinfo.mhz`, integers without a lower
//!   bound for byte counts), so such a value is kept raw, parses to `None`,
//!   and never fails the read.
//! - Strings, booleans and enums keep plain types: every value the schema
//!   allows fits them (unknown enum values become `Unknown`). Nested
//!   objects (`memory`, `rootfs`, `cpuinfo`, and `swap`, which Proxmox sends
//!   in the same shape as `memory`) must be objects; their numbers are
//!   [`Lenient`] too.
//! - [`LxcConfig`] stays strict per key: the schema bounds every value it
//!   types (e.g. `cores` 1..8192, `memory` >= 16), all of them decode, and
//!   the config is what callers modify and write back, so a value that does
//!   not decode is an error naming the key rather than a silent gap.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::de;
use crate::lenient::Lenient;
use crate::propstring::{LxcFeatures, MountPoint, NetInterface, PropertyStringError, RootFs};
use crate::upid::Upid;

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Version {
    /// Package version, e.g. `9.1.1`.
    pub version: String,
    /// Release series, e.g. `9.1`.
    pub release: String,
    /// Git commit of `pve-manager`.
    #[serde(default)]
    pub repoid: String,
    /// Default console viewer, if configured.
    #[serde(default)]
    pub console: Option<String>,
}

/// Cluster membership state of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NodeState {
    /// Reachable and in quorum.
    Online,
    /// Known but not reachable.
    Offline,
    /// Anything else Proxmox reports.
    #[serde(other)]
    Unknown,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct NodeSummary {
    /// Node name.
    #[serde(deserialize_with = "de::node_name")]
    pub node: String,
    /// Online/offline.
    pub status: NodeState,
    /// CPU usage (0..1).
    #[serde(default)]
    pub cpu: Lenient<f64>,
    /// Number of CPUs.
    #[serde(default)]
    pub maxcpu: Lenient<u32>,
    /// Used memory in bytes.
    #[serde(default)]
    pub mem: Lenient<u64>,
    /// Total memory in bytes.
    #[serde(default)]
    pub maxmem: Lenient<u64>,
    /// Uptime in seconds.
    #[serde(default)]
    pub uptime: Lenient<u64>,
    /// Support subscription level.
    #[serde(default)]
    pub level: Option<String>,
    /// SHA-256 fingerprint of the node's certificate (`AA:BB:...`).
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
}

/// Memory or swap usage in bytes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Total bytes.
    #[serde(default)]
    pub total: Lenient<u64>,
    /// Used bytes.
    #[serde(default)]
    pub used: Lenient<u64>,
    /// Free bytes.
    #[serde(default)]
    pub free: Lenient<u64>,
    /// Available bytes (memory only, newer versions).
    #[serde(default)]
    pub available: Lenient<u64>,
}

/// Root file system usage in bytes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct FsUsage {
    /// Total bytes.
    #[serde(default)]
    pub total: Lenient<u64>,
    /// Used bytes.
    #[serde(default)]
    pub used: Lenient<u64>,
    /// Available bytes.
    #[serde(default)]
    pub avail: Lenient<u64>,
    /// Free bytes.
    #[serde(default)]
    pub free: Lenient<u64>,
}

/// CPU description.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CpuInfo {
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
    /// Logical CPUs.
    #[serde(default)]
    pub cpus: Lenient<u32>,
    /// Sockets.
    #[serde(default)]
    pub sockets: Lenient<u32>,
    /// Cores per socket.
    #[serde(default)]
    pub cores: Lenient<u32>,
    /// Clock in MHz (Proxmox sends a string; not in the schema).
    #[serde(default)]
    pub mhz: Lenient<f64>,
}

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// CPU usage (0..1).
    #[serde(default)]
    pub cpu: Lenient<f64>,
    /// 1/5/15 minute load averages. The schema types them as strings, so
    /// this is `None` (and the raw array kept) unless every item is a number.
    #[serde(default)]
    pub loadavg: Lenient<Vec<f64>>,
    /// Uptime in seconds (not in the schema).
    #[serde(default)]
    pub uptime: Lenient<u64>,
    /// Memory usage.
    #[serde(default)]
    pub memory: MemoryUsage,
    /// Swap usage.
    #[serde(default)]
    pub swap: MemoryUsage,
    /// Root file system usage.
    #[serde(default)]
    pub rootfs: FsUsage,
    /// CPU description.
    #[serde(default)]
    pub cpuinfo: CpuInfo,
    /// `pve-manager` version string.
    #[serde(default)]
    pub pveversion: Option<String>,
    /// Running kernel version string.
    #[serde(default)]
    pub kversion: Option<String>,
}

/// Run state of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GuestState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Anything else Proxmox reports.
    #[serde(other)]
    Unknown,
}

/// One entry of `GET /nodes/{node}/lxc`, or `GET .../status/current`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct LxcSummary {
    /// Container id.
    #[serde(deserialize_with = "de::vmid")]
    pub vmid: u32,
    /// Hostname.
    #[serde(default)]
    pub name: Option<String>,
    /// Running or stopped.
    pub status: GuestState,
    /// Current lock (`backup`, `snapshot`, ...), if any.
    #[serde(default)]
    pub lock: Option<String>,
    /// Tags, `;`-separated as Proxmox stores them.
    #[serde(default)]
    pub tags: Option<String>,
    /// Whether this is a template.
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub template: bool,
    /// CPU usage (0..cpus).
    #[serde(default)]
    pub cpu: Lenient<f64>,
    /// CPU limit.
    #[serde(default)]
    pub cpus: Lenient<f64>,
    /// Used memory in bytes.
    #[serde(default)]
    pub mem: Lenient<u64>,
    /// Memory limit in bytes.
    #[serde(default)]
    pub maxmem: Lenient<u64>,
    /// Used root disk in bytes.
    #[serde(default)]
    pub disk: Lenient<u64>,
    /// Root disk size in bytes.
    #[serde(default)]
    pub maxdisk: Lenient<u64>,
    /// Uptime in seconds.
    #[serde(default)]
    pub uptime: Lenient<u64>,
}

/// `GET /nodes/{node}/lxc/{vmid}/config`: the container configuration with
/// its property strings parsed.
///
/// Keys without a typed field (e.g. `dev0`, raw `lxc` entries) are kept in
/// [`LxcConfig::other`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LxcConfig {
    /// Hostname.
    pub hostname: Option<String>,
    /// OS type (`debian`, `ubuntu`, ...).
    pub ostype: Option<String>,
    /// Architecture.
    pub arch: Option<String>,
    /// CPU cores.
    pub cores: Option<u32>,
    /// Memory in MiB.
    pub memory: Option<u64>,
    /// Swap in MiB.
    pub swap: Option<u64>,
    /// CPU limit.
    pub cpulimit: Option<f64>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Unprivileged container.
    pub unprivileged: Option<bool>,
    /// Protected against removal.
    pub protection: Option<bool>,
    /// Is a template.
    pub template: Option<bool>,
    /// Free-form description.
    pub description: Option<String>,
    /// Tags (split on `;`, `,` or spaces).
    pub tags: Vec<String>,
    /// Current lock.
    pub lock: Option<String>,
    /// Feature flags.
    pub features: Option<LxcFeatures>,
    /// Root volume.
    pub rootfs: Option<RootFs>,
    /// Network interfaces by index (`net0` is `net[&0]`).
    pub net: BTreeMap<u32, NetInterface>,
    /// Mount points by index.
    pub mp: BTreeMap<u32, MountPoint>,
    /// Unused volumes by index.
    pub unused: BTreeMap<u32, String>,
    /// SHA digest of the configuration file, for optimistic locking.
    pub digest: Option<String>,
    /// Every other key, as sent.
    pub other: BTreeMap<String, Value>,
}

/// Splits `net12` into (`net`, 12).
pub(crate) fn split_indexed(key: &str) -> Option<(&str, u32)> {
    let digits = key.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == key.len() || digits > 3 {
        return None;
    }
    let (prefix, idx) = key.split_at(key.len() - digits);
    idx.parse().ok().map(|i| (prefix, i))
}

impl LxcConfig {
    /// Builds a config from the raw JSON object Proxmox returns.
    pub fn from_map(map: serde_json::Map<String, Value>) -> Result<LxcConfig, ConfigDecodeError> {
        let mut c = LxcConfig::default();
        let bad = |key: &str, reason: &str| ConfigDecodeError::Value {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let prop = |key: &str, e: PropertyStringError| ConfigDecodeError::PropertyString {
            key: key.to_owned(),
            source: e,
        };
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let text = de::string_from(&value);
            let need_text = || text.clone().ok_or_else(|| bad(&key, "expected a string"));
            let need_int = || {
                text.as_deref()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .ok_or_else(|| bad(&key, "expected an integer"))
            };
            let need_bool = || de::bool_from(&value).ok_or_else(|| bad(&key, "expected a boolean"));
            match key.as_str() {
                "hostname" => c.hostname = Some(need_text()?),
                "ostype" => c.ostype = Some(need_text()?),
                "arch" => c.arch = Some(need_text()?),
                "cores" => {
                    c.cores =
                        Some(u32::try_from(need_int()?).map_err(|_| bad(&key, "out of range"))?)
                }
                "memory" => c.memory = Some(need_int()?),
                "swap" => c.swap = Some(need_int()?),
                "cpulimit" => {
                    c.cpulimit = Some(
                        text.as_deref()
                            .and_then(|t| t.trim().parse().ok())
                            .ok_or_else(|| bad(&key, "expected a number"))?,
                    )
                }
                "onboot" => c.onboot = Some(need_bool()?),
                "unprivileged" => c.unprivileged = Some(need_bool()?),
                "protection" => c.protection = Some(need_bool()?),
                "template" => c.template = Some(need_bool()?),
                "description" => c.description = Some(need_text()?),
                "tags" => {
                    c.tags = need_text()?
                        .split([';', ',', ' '])
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "lock" => c.lock = Some(need_text()?),
                "digest" => c.digest = Some(need_text()?),
                "features" => c.features = Some(need_text()?.parse().map_err(|e| prop(&key, e))?),
                "rootfs" => c.rootfs = Some(need_text()?.parse().map_err(|e| prop(&key, e))?),
                _ => match split_indexed(&key) {
                    Some(("net", i)) => {
                        c.net
                            .insert(i, need_text()?.parse().map_err(|e| prop(&key, e))?);
                    }
                    Some(("mp", i)) => {
                        c.mp.insert(i, need_text()?.parse().map_err(|e| prop(&key, e))?);
                    }
                    Some(("unused", i)) => {
                        // `unused0: local-lvm:vm-100-disk-2` (the only key is the
                        // default key `volume`)
                        let t = need_text()?;
                        let vol = t.strip_prefix("volume=").unwrap_or(&t).to_owned();
                        c.unused.insert(i, vol);
                    }
                    _ => {
                        c.other.insert(key, value);
                    }
                },
            }
        }
        Ok(c)
    }
}

/// Why a container configuration could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigDecodeError {
    /// The response is not a JSON object.
    #[error("container config is not a json object")]
    NotAnObject,
    /// A plain value has the wrong type.
    #[error("config key `{key}`: {reason}")]
    Value {
        /// The key.
        key: String,
        /// What was expected.
        reason: String,
    },
    /// A property string did not parse.
    #[error("config key `{key}`: {source}")]
    PropertyString {
        /// The key.
        key: String,
        /// The parse error.
        #[source]
        source: PropertyStringError,
    },
}

impl<'de> Deserialize<'de> for LxcConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(map) => LxcConfig::from_map(map).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(ConfigDecodeError::NotAnObject)),
        }
    }
}

/// One entry of `GET /nodes/{node}/lxc/{vmid}/snapshot`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Snapshot name (`current` is the live state).
    pub name: String,
    /// Parent snapshot.
    #[serde(default)]
    pub parent: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Creation time (Unix seconds).
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub snaptime: Option<i64>,
}

/// One entry of `GET /nodes/{node}/storage`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct StorageSummary {
    /// Storage id.
    #[serde(deserialize_with = "de::storage_id")]
    pub storage: String,
    /// Storage type (`dir`, `lvmthin`, `zfspool`, `pbs`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Allowed content types, comma-separated (`images,rootdir`).
    #[serde(default)]
    pub content: String,
    /// Whether the storage is active on this node.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub active: Option<bool>,
    /// Whether the storage is enabled.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub enabled: Option<bool>,
    /// Shared between nodes.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub shared: Option<bool>,
    /// Total bytes.
    #[serde(default)]
    pub total: Lenient<u64>,
    /// Used bytes.
    #[serde(default)]
    pub used: Lenient<u64>,
    /// Available bytes.
    #[serde(default)]
    pub avail: Lenient<u64>,
    /// Used fraction (0..1).
    #[serde(default)]
    pub used_fraction: Lenient<f64>,
}

impl StorageSummary {
    /// The content types as a list.
    pub fn content_types(&self) -> Vec<&str> {
        self.content
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// One SMART attribute of an ATA disk.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SmartAttribute {
    /// Attribute id (Proxmox sends it as a padded string).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub id: Option<String>,
    /// Attribute name.
    #[serde(default)]
    pub name: String,
    /// Normalized value.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub value: Option<i64>,
    /// Worst normalized value.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub worst: Option<i64>,
    /// Failure threshold.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub threshold: Option<i64>,
    /// Raw value as printed by smartctl.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub raw: Option<String>,
    /// `-` or the time it failed.
    #[serde(default)]
    pub fail: Option<String>,
    /// Attribute flags.
    #[serde(default)]
    pub flags: Option<String>,
}

/// `GET /nodes/{node}/disks/smart`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SmartData {
    /// Overall health (`PASSED`, `FAILED`, `UNKNOWN`, `OK`).
    pub health: String,
    /// `ata` (attributes) or `text` (e.g. NVMe, see `text`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// ATA attributes.
    #[serde(default)]
    pub attributes: Vec<SmartAttribute>,
    /// Plain-text report for non-ATA disks.
    #[serde(default)]
    pub text: Option<String>,
}

impl SmartData {
    /// True when the disk reports itself healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self.health.as_str(), "PASSED" | "OK")
    }
}

/// Whether a task still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TaskState {
    /// Still running.
    Running,
    /// Finished; see `exitstatus`.
    Stopped,
    /// Anything else Proxmox reports.
    #[serde(other)]
    Unknown,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TaskStatus {
    /// Running or stopped.
    pub status: TaskState,
    /// `OK`, `WARNINGS: N` or an error message, once stopped.
    #[serde(default)]
    pub exitstatus: Option<String>,
    /// The task's UPID, when sent.
    #[serde(default)]
    pub upid: Option<Upid>,
    /// Task type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Task id.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub id: Option<String>,
    /// User or token that started it.
    #[serde(default)]
    pub user: Option<String>,
    /// Node.
    #[serde(default)]
    pub node: Option<String>,
    /// Start time (Unix seconds).
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub starttime: Option<i64>,
}

/// One line of `GET /nodes/{node}/tasks/{upid}/log`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TaskLogLine {
    /// Line number (1-based).
    #[serde(deserialize_with = "de::u32_lenient")]
    pub n: u32,
    /// Text.
    #[serde(default)]
    pub t: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxc_config_parses_property_strings_and_keeps_the_rest() {
        let json = serde_json::json!({
            "arch": "amd64",
            "cores": "2",
            "memory": 2048,
            "swap": 512,
            "hostname": "golden",
            "ostype": "debian",
            "onboot": 1,
            "unprivileged": "1",
            "features": "keyctl=1,nesting=1",
            "rootfs": "local-lvm:vm-100-disk-0,size=8G",
            "net0": "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth",
            "net3": "name=eth3,bridge=vmbr1,ip=10.0.0.5/24",
            "mp0": "local-lvm:vm-100-disk-1,mp=/srv,backup=1,size=16G",
            "unused0": "local-lvm:vm-100-disk-9",
            "dev0": "/dev/dri/renderD128,mode=0666",
            "lxc": [["lxc.apparmor.profile", "unconfined"]],
            "tags": "prod;web",
            "digest": "0123456789abcdef0123456789abcdef01234567",
            "new_in_pve10": {"x": 1}
        });
        let c: LxcConfig = serde_json::from_value(json).unwrap();
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.memory, Some(2048));
        assert_eq!(c.onboot, Some(true));
        assert_eq!(c.unprivileged, Some(true));
        let f = c.features.as_ref().unwrap();
        assert_eq!((f.nesting, f.keyctl), (Some(true), Some(true)));
        assert_eq!(
            c.rootfs.as_ref().unwrap().to_string(),
            "local-lvm:vm-100-disk-0,size=8G"
        );
        assert_eq!(c.net.len(), 2);
        assert_eq!(c.net[&3].ip.as_deref(), Some("10.0.0.5/24"));
        assert_eq!(c.mp[&0].mp, "/srv");
        assert_eq!(c.unused[&0], "local-lvm:vm-100-disk-9");
        assert_eq!(c.tags, vec!["prod", "web"]);
        assert!(c.other.contains_key("dev0"));
        assert!(c.other.contains_key("lxc"));
        assert!(c.other.contains_key("new_in_pve10"));
        assert_eq!(c.digest.as_deref().map(str::len), Some(40));
    }

    #[test]
    fn lxc_config_reports_the_bad_key() {
        let err = serde_json::from_value::<LxcConfig>(serde_json::json!({"net0": "bridge=vmbr0"}))
            .unwrap_err();
        assert!(err.to_string().contains("net0"), "{err}");
        let err =
            serde_json::from_value::<LxcConfig>(serde_json::json!({"cores": "many"})).unwrap_err();
        assert!(err.to_string().contains("cores"), "{err}");
    }

    #[test]
    fn indexed_keys_split() {
        assert_eq!(split_indexed("net0"), Some(("net", 0)));
        assert_eq!(split_indexed("mp12"), Some(("mp", 12)));
        assert_eq!(split_indexed("net"), None);
        assert_eq!(split_indexed("123"), None);
        assert_eq!(split_indexed("net99999"), None);
    }

    #[test]
    fn list_entries_tolerate_quirks() {
        let items: Vec<LxcSummary> = serde_json::from_value(serde_json::json!([
            {"vmid": "100", "status": "running", "name": "golden", "template": "", "maxmem": "2147483648", "cpus": 2, "extra": true},
            {"vmid": 101, "status": "paused-by-future-pve", "template": 1}
        ]))
        .unwrap();
        assert_eq!(items[0].vmid, 100);
        assert_eq!(items[0].maxmem.get(), Some(2 << 30));
        assert_eq!(items[1].status, GuestState::Unknown);
        assert!(items[1].template);

        let st: NodeStatus = serde_json::from_value(serde_json::json!({
            "loadavg": ["0.12", "0.34", "0.56"],
            "cpuinfo": {"model": "AMD EPYC", "cpus": 16, "mhz": "3400.000"},
            "memory": {"total": 1, "used": "1", "free": 0}
        }))
        .unwrap();
        assert_eq!(st.loadavg.parsed(), Some(&vec![0.12, 0.34, 0.56]));
        assert_eq!(st.cpuinfo.mhz.get(), Some(3400.0));
        assert_eq!(st.memory.used.get(), Some(1));
    }
}
