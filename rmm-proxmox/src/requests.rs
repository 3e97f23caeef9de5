//! Typed parameters of the mutating API calls.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::propstring::{LxcFeatures, MountPoint, NetInterface, RootFs, check_round_trip};
use crate::validate;

/// Ordered request parameters; booleans are encoded `1`/`0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    pub(crate) fn new() -> Params {
        Params(Vec::new())
    }
    pub(crate) fn set(mut self, k: &str, v: impl ToString) -> Params {
        self.0.push((k.to_owned(), v.to_string()));
        self
    }
    pub(crate) fn opt(self, k: &str, v: Option<impl ToString>) -> Params {
        match v {
            Some(v) => self.set(k, v),
            None => self,
        }
    }
    pub(crate) fn flag(self, k: &str, v: bool) -> Params {
        self.set(k, if v { "1" } else { "0" })
    }
    pub(crate) fn opt_flag(self, k: &str, v: Option<bool>) -> Params {
        match v {
            Some(v) => self.flag(k, v),
            None => self,
        }
    }
    /// Sets `k=1` only when `v` is true (Proxmox defaults are false).
    pub(crate) fn flag_if(self, k: &str, v: bool) -> Params {
        if v { self.flag(k, true) } else { self }
    }
}

/// Restore a container from a vzdump archive:
/// `POST /nodes/{node}/lxc` with `restore=1`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RestoreRequest {
    /// Id of the new (or, with `force`, overwritten) container.
    pub vmid: u32,
    /// Backup volume id, e.g.
    /// `local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst` or a PBS
    /// volume.
    pub archive: String,
    /// Target storage for the root volume (default: from the backup).
    pub storage: Option<String>,
    /// New hostname.
    pub hostname: Option<String>,
    /// Overwrite an existing container with this id.
    pub force: bool,
    /// Assign fresh MAC addresses (recommended when cloning a golden image).
    pub unique: bool,
    /// Start the container after the restore.
    pub start: bool,
    /// Add to this resource pool.
    pub pool: Option<String>,
    /// Restore as unprivileged container.
    pub unprivileged: Option<bool>,
    /// I/O bandwidth limit in KiB/s.
    pub bwlimit: Option<u64>,
}

impl RestoreRequest {
    /// Restore `archive` as container `vmid` with defaults (`unique=1`).
    pub fn new(vmid: u32, archive: &str) -> RestoreRequest {
        RestoreRequest {
            vmid,
            archive: archive.to_owned(),
            storage: None,
            hostname: None,
            force: false,
            unique: true,
            start: false,
            pool: None,
            unprivileged: None,
            bwlimit: None,
        }
    }

    /// Sets the target storage.
    pub fn storage(mut self, storage: &str) -> Self {
        self.storage = Some(storage.to_owned());
        self
    }

    /// Sets the hostname.
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_owned());
        self
    }

    /// Overwrite an existing container.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Start after restoring.
    pub fn start(mut self, start: bool) -> Self {
        self.start = start;
        self
    }

    pub(crate) fn to_params(&self) -> Result<Params, Error> {
        validate::vmid(self.vmid)?;
        validate::volume_id("archive", &self.archive)?;
        if let Some(s) = &self.storage {
            validate::storage_id(s)?;
        }
        if let Some(h) = &self.hostname {
            validate::dns_name("hostname", h)?;
        }
        if let Some(p) = &self.pool {
            validate::simple_id("pool", p)?;
        }
        Ok(Params::new()
            .set("vmid", self.vmid)
            .set("ostemplate", &self.archive)
            .flag("restore", true)
            .opt("storage", self.storage.as_ref())
            .opt("hostname", self.hostname.as_ref())
            .flag_if("force", self.force)
            .flag_if("unique", self.unique)
            .flag_if("start", self.start)
            .opt("pool", self.pool.as_ref())
            .opt_flag("unprivileged", self.unprivileged)
            .opt("bwlimit", self.bwlimit))
    }
}

/// vzdump backup mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupMode {
    /// Live snapshot (default).
    Snapshot,
    /// Suspend during the backup.
    Suspend,
    /// Stop the guest during the backup.
    Stop,
}

impl BackupMode {
    fn as_str(self) -> &'static str {
        match self {
            BackupMode::Snapshot => "snapshot",
            BackupMode::Suspend => "suspend",
            BackupMode::Stop => "stop",
        }
    }
}

/// vzdump compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// lzo.
    Lzo,
    /// zstd (recommended).
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "0",
            Compression::Gzip => "gzip",
            Compression::Lzo => "lzo",
            Compression::Zstd => "zstd",
        }
    }
}

/// Back up guests: `POST /nodes/{node}/vzdump`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VzdumpRequest {
    /// Guests to back up (at least one).
    pub vmids: Vec<u32>,
    /// Target storage.
    pub storage: Option<String>,
    /// Backup mode.
    pub mode: Option<BackupMode>,
    /// Compression.
    pub compress: Option<Compression>,
    /// Notes template (needs `storage`).
    pub notes_template: Option<String>,
    /// Mark the backup protected (needs `storage`).
    pub protected: Option<bool>,
}

impl VzdumpRequest {
    /// Back up `vmids` with defaults.
    pub fn new(vmids: &[u32]) -> VzdumpRequest {
        VzdumpRequest {
            vmids: vmids.to_vec(),
            storage: None,
            mode: None,
            compress: None,
            notes_template: None,
            protected: None,
        }
    }

    /// Sets the target storage.
    pub fn storage(mut self, storage: &str) -> Self {
        self.storage = Some(storage.to_owned());
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: BackupMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets the compression.
    pub fn compress(mut self, compress: Compression) -> Self {
        self.compress = Some(compress);
        self
    }

    pub(crate) fn to_params(&self) -> Result<Params, Error> {
        if self.vmids.is_empty() {
            return Err(Error::InvalidArgument {
                field: "vmids",
                reason: "name at least one guest".into(),
            });
        }
        for v in &self.vmids {
            validate::vmid(*v)?;
        }
        if let Some(s) = &self.storage {
            validate::storage_id(s)?;
        }
        if self.storage.is_none() && (self.notes_template.is_some() || self.protected.is_some()) {
            return Err(Error::InvalidArgument {
                field: "storage",
                reason: "notes_template and protected need an explicit storage".into(),
            });
        }
        if let Some(n) = &self.notes_template
            && n.len() > 1024
        {
            return Err(Error::InvalidArgument {
                field: "notes_template",
                reason: "at most 1024 characters".into(),
            });
        }
        let ids: Vec<String> = self.vmids.iter().map(u32::to_string).collect();
        Ok(Params::new()
            .set("vmid", ids.join(","))
            .opt("storage", self.storage.as_ref())
            .opt("mode", self.mode.map(BackupMode::as_str))
            .opt("compress", self.compress.map(Compression::as_str))
            .opt("notes-template", self.notes_template.as_ref())
            .opt_flag("protected", self.protected))
    }
}

/// A container configuration change: `PUT /nodes/{node}/lxc/{vmid}/config`.
///
/// Pass the `digest` from [`crate::LxcConfig::digest`] to make the update
/// fail with [`Error::ConfigModified`] if someone else changed the
/// configuration in between.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LxcConfigUpdate {
    set: BTreeMap<String, String>,
    delete: Vec<String>,
    digest: Option<String>,
    error: Option<(&'static str, String)>,
}

impl LxcConfigUpdate {
    /// An empty update.
    pub fn new() -> LxcConfigUpdate {
        LxcConfigUpdate::default()
    }

    fn fail(mut self, field: &'static str, reason: String) -> Self {
        if self.error.is_none() {
            self.error = Some((field, reason));
        }
        self
    }

    /// Only apply if the configuration still has this digest.
    pub fn digest(mut self, digest: &str) -> Self {
        self.digest = Some(digest.to_owned());
        self
    }

    /// Sets an arbitrary option (`key` must be a config key such as `cores`
    /// or `net1`); the value is sent as is.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        if let Err(e) = validate::config_key(key) {
            return self.fail("key", e.to_string());
        }
        self.set.insert(key.to_owned(), value.to_string());
        self
    }

    /// Removes an option (`delete=`).
    pub fn delete(mut self, key: &str) -> Self {
        if let Err(e) = validate::config_key(key) {
            return self.fail("delete", e.to_string());
        }
        self.delete.push(key.to_owned());
        self
    }

    /// CPU cores (1-8192).
    pub fn cores(self, cores: u32) -> Self {
        if !(1..=8192).contains(&cores) {
            return self.fail("cores", format!("{cores} is outside 1..=8192"));
        }
        self.set("cores", cores)
    }

    /// Memory in MiB (at least 16).
    pub fn memory(self, mib: u64) -> Self {
        if mib < 16 {
            return self.fail("memory", format!("{mib} MiB is below the minimum of 16"));
        }
        self.set("memory", mib)
    }

    /// Swap in MiB.
    pub fn swap(self, mib: u64) -> Self {
        self.set("swap", mib)
    }

    /// Hostname.
    pub fn hostname(self, hostname: &str) -> Self {
        if let Err(e) = validate::dns_name("hostname", hostname) {
            return self.fail("hostname", e.to_string());
        }
        self.set("hostname", hostname)
    }

    /// Description.
    pub fn description(self, text: &str) -> Self {
        if text.len() > 8192 {
            return self.fail("description", "at most 8192 bytes".into());
        }
        self.set("description", text)
    }

    /// Start at boot.
    pub fn onboot(self, on: bool) -> Self {
        self.set("onboot", if on { 1 } else { 0 })
    }

    /// Tags (`;`-joined).
    pub fn tags(self, tags: &[&str]) -> Self {
        for t in tags {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'))
            {
                return self.fail("tags", format!("`{t}` is not a valid tag"));
            }
        }
        self.set("tags", tags.join(";"))
    }

    /// Feature flags. Note: anything but `nesting` (and `nesting` on
    /// privileged containers) is root@pam-only and fails with
    /// [`Error::RequiresRootPam`] for API tokens.
    pub fn features(self, features: &LxcFeatures) -> Self {
        match check_round_trip(features) {
            Ok(text) => self.set("features", text),
            Err(e) => self.fail("features", e.to_string()),
        }
    }

    /// Root volume options.
    pub fn rootfs(self, rootfs: &RootFs) -> Self {
        match check_round_trip(rootfs) {
            Ok(text) => self.set("rootfs", text),
            Err(e) => self.fail("rootfs", e.to_string()),
        }
    }

    /// Network interface `net{index}`.
    pub fn net(self, index: u32, net: &NetInterface) -> Self {
        match check_round_trip(net) {
            Ok(text) => self.set(&format!("net{index}"), text),
            Err(e) => self.fail("net", e.to_string()),
        }
    }

    /// Mount point `mp{index}`.
    pub fn mount_point(self, index: u32, mp: &MountPoint) -> Self {
        match check_round_trip(mp) {
            Ok(text) => self.set(&format!("mp{index}"), text),
            Err(e) => self.fail("mp", e.to_string()),
        }
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }

    pub(crate) fn to_params(&self) -> Result<Params, Error> {
        if let Some((field, reason)) = &self.error {
            return Err(Error::InvalidArgument {
                field,
                reason: reason.clone(),
            });
        }
        if self.is_empty() {
            return Err(Error::InvalidArgument {
                field: "update",
                reason: "nothing to change".into(),
            });
        }
        if let Some(k) = self.delete.iter().find(|k| self.set.contains_key(*k)) {
            return Err(Error::InvalidArgument {
                field: "delete",
                reason: format!("`{k}` is both set and deleted"),
            });
        }
        if let Some(d) = &self.digest
            && (d.is_empty() || d.len() > 64 || !d.bytes().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(Error::InvalidArgument {
                field: "digest",
                reason: "expected the hex digest from the config".into(),
            });
        }
        let mut p = Params::new();
        for (k, v) in &self.set {
            p = p.set(k, v);
        }
        if !self.delete.is_empty() {
            p = p.set("delete", self.delete.join(","));
        }
        Ok(p.opt("digest", self.digest.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_params() {
        let p = RestoreRequest::new(
            120,
            "local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst",
        )
        .storage("local-lvm")
        .hostname("cust-a")
        .to_params()
        .unwrap();
        assert_eq!(
            p.0,
            vec![
                ("vmid".to_owned(), "120".to_owned()),
                (
                    "ostemplate".to_owned(),
                    "local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst".to_owned()
                ),
                ("restore".to_owned(), "1".to_owned()),
                ("storage".to_owned(), "local-lvm".to_owned()),
                ("hostname".to_owned(), "cust-a".to_owned()),
                ("unique".to_owned(), "1".to_owned()),
            ]
        );
        assert!(
            RestoreRequest::new(99, "local:backup/x")
                .to_params()
                .is_err()
        );
        assert!(RestoreRequest::new(100, "no-colon").to_params().is_err());
    }

    #[test]
    fn vzdump_params() {
        let p = VzdumpRequest::new(&[100, 101])
            .storage("local")
            .mode(BackupMode::Snapshot)
            .compress(Compression::Zstd)
            .to_params()
            .unwrap();
        assert_eq!(p.0[0], ("vmid".to_owned(), "100,101".to_owned()));
        assert!(VzdumpRequest::new(&[]).to_params().is_err());
        let mut r = VzdumpRequest::new(&[100]);
        r.protected = Some(true);
        assert!(r.to_params().is_err(), "protected needs storage");
    }

    #[test]
    fn config_update_params() {
        let net = NetInterface {
            name: "eth1".into(),
            bridge: Some("vmbr1".into()),
            ip: Some("dhcp".into()),
            ..Default::default()
        };
        let p = LxcConfigUpdate::new()
            .cores(4)
            .net(1, &net)
            .delete("mp0")
            .delete("unused0")
            .digest("0123abcd")
            .to_params()
            .unwrap();
        assert_eq!(
            p.0,
            vec![
                ("cores".to_owned(), "4".to_owned()),
                (
                    "net1".to_owned(),
                    "name=eth1,bridge=vmbr1,ip=dhcp".to_owned()
                ),
                ("delete".to_owned(), "mp0,unused0".to_owned()),
                ("digest".to_owned(), "0123abcd".to_owned()),
            ]
        );
        for bad in [
            LxcConfigUpdate::new(),
            LxcConfigUpdate::new().cores(0),
            LxcConfigUpdate::new().memory(8),
            LxcConfigUpdate::new().set("Bad Key", 1),
            LxcConfigUpdate::new().cores(2).delete("cores"),
            LxcConfigUpdate::new().cores(2).digest("not hex"),
            LxcConfigUpdate::new().hostname("-x"),
            LxcConfigUpdate::new().net(
                0,
                &NetInterface {
                    name: "eth0".into(),
                    bridge: Some("a,b=c".into()),
                    ..Default::default()
                },
            ),
        ] {
            assert!(bad.to_params().is_err(), "{bad:?}");
        }
    }
}
