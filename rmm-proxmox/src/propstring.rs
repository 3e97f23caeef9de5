//! Proxmox property strings (`key=value,key=value` with an optional bare
//! default key), as used by LXC `features`, `rootfs`, `net[n]` and `mp[n]`.
//!
//! Parsing follows `PVE::JSONSchema::parse_property_string`: parts are split
//! on `,`, blank parts are skipped, `key=value` needs a non-empty value, a
//! part without `=` is the value of the default key, duplicate keys are an
//! error. Printing follows `print_property_string`: the default key first
//! (bare), then required keys in sorted order, then the rest sorted. Strings
//! written by Proxmox therefore round-trip byte for byte. Booleans accept
//! `1|on|yes|true` / `0|off|no|false` and print as `1` / `0`; disk sizes
//! print like Proxmox's `format_size` (`8G`, `512M`).
//!
//! Keys this crate does not model are kept in `extra` and written back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Why a property string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyStringError {
    /// A key appears twice.
    #[error("duplicate key `{key}` in property string")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A bare value where the format has no default key, or a second one.
    #[error("unexpected bare value `{value}` in property string (expected key=value)")]
    UnexpectedValue {
        /// The bare value.
        value: String,
    },
    /// A required key is missing.
    #[error("property string lacks required key `{key}`")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A value has the wrong shape for its key.
    #[error("invalid value `{value}` for key `{key}`: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The rejected value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

/// A disk size in bytes, printed and parsed like Proxmox's `disk-size`
/// format (`8G`, `512M`, `1.5T` on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskSize(pub u64);

impl DiskSize {
    /// Size of `n` GiB.
    pub const fn gib(n: u64) -> DiskSize {
        DiskSize(n * 1024 * 1024 * 1024)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for DiskSize {
    type Err = PropertyStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PropertyStringError::InvalidValue {
            key: "size".into(),
            value: s.into(),
            reason: "expected a number with an optional K, M, G or T suffix",
        };
        let (num, mult) = match s.as_bytes().last() {
            Some(b'K') => (&s[..s.len() - 1], 1u64 << 10),
            Some(b'M') => (&s[..s.len() - 1], 1 << 20),
            Some(b'G') => (&s[..s.len() - 1], 1 << 30),
            Some(b'T') => (&s[..s.len() - 1], 1 << 40),
            _ => (s, 1),
        };
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (num, None),
        };
        if int.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        if let Some(f) = frac
            && (f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit()))
        {
            return Err(bad());
        }
        let whole: u64 = int.parse().map_err(|_| bad())?;
        let mut bytes = whole.checked_mul(mult).ok_or_else(bad)?;
        if let Some(f) = frac {
            let frac: f64 = format!("0.{f}").parse().map_err(|_| bad())?;
            bytes = bytes.saturating_add((frac * mult as f64) as u64);
        }
        Ok(DiskSize(bytes))
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.0;
        if !size.is_multiple_of(1024) {
            return write!(f, "{size}");
        }
        let kb = size / 1024;
        if !kb.is_multiple_of(1024) {
            return write!(f, "{kb}K");
        }
        let mb = kb / 1024;
        if !mb.is_multiple_of(1024) {
            return write!(f, "{mb}M");
        }
        let gb = mb / 1024;
        if !gb.is_multiple_of(1024) {
            return write!(f, "{gb}G");
        }
        write!(f, "{}T", gb / 1024)
    }
}

/// Raw parse result: the default-key value and the `key=value` pairs.
#[derive(Debug, Default)]
struct Parts {
    default: Option<String>,
    map: BTreeMap<String, String>,
}

fn split(s: &str, has_default: bool) -> Result<Parts, PropertyStringError> {
    let mut parts = Parts::default();
    for part in s.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                if parts.map.insert(k.to_owned(), v.to_owned()).is_some() {
                    return Err(PropertyStringError::DuplicateKey { key: k.to_owned() });
                }
            }
            _ => {
                if !has_default || parts.default.is_some() {
                    return Err(PropertyStringError::UnexpectedValue {
                        value: part.to_owned(),
                    });
                }
                parts.default = Some(part.to_owned());
            }
        }
    }
    Ok(parts)
}

impl Parts {
    fn take_default(&mut self, key: &'static str) -> Result<String, PropertyStringError> {
        // `volume=...` spelled out is accepted too.
        match (self.default.take(), self.map.remove(key)) {
            (Some(_), Some(_)) => Err(PropertyStringError::DuplicateKey { key: key.into() }),
            (Some(v), None) | (None, Some(v)) => Ok(v),
            (None, None) => Err(PropertyStringError::MissingKey { key }),
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, PropertyStringError> {
        self.map
            .remove(key)
            .map(|v| {
                parse_bool(&v).ok_or(PropertyStringError::InvalidValue {
                    key: key.into(),
                    value: v,
                    reason: "expected a boolean (1|0, yes|no, on|off, true|false)",
                })
            })
            .transpose()
    }

    fn num<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, PropertyStringError> {
        self.map
            .remove(key)
            .map(|v| {
                v.parse().map_err(|_| PropertyStringError::InvalidValue {
                    key: key.into(),
                    value: v,
                    reason: "expected a number",
                })
            })
            .transpose()
    }

    fn size(&mut self, key: &str) -> Result<Option<DiskSize>, PropertyStringError> {
        self.map.remove(key).map(|v| v.parse()).transpose()
    }

    fn list(&mut self, key: &str) -> Vec<String> {
        self.map
            .remove(key)
            .map(|v| {
                v.split(';')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn rest(self) -> BTreeMap<String, String> {
        self.map
    }
}

/// Parses a Proxmox boolean (`1|on|yes|true`, `0|off|no|false`, any case).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// Collects keys in Proxmox's print order.
struct Writer {
    default: Option<String>,
    required: BTreeMap<&'static str, String>,
    rest: BTreeMap<String, String>,
}

impl Writer {
    fn new() -> Self {
        Writer {
            default: None,
            required: BTreeMap::new(),
            rest: BTreeMap::new(),
        }
    }
    /// The default key's value, printed bare unless a bare value would be
    /// read back differently (as `key=value`, or skipped as blank); then it
    /// is spelled out.
    fn default(mut self, key: &'static str, v: &str) -> Self {
        if v.contains('=') || v.trim().is_empty() {
            self.required.insert(key, v.to_owned());
        } else {
            self.default = Some(v.to_owned());
        }
        self
    }
    fn required(mut self, k: &'static str, v: &str) -> Self {
        self.required.insert(k, v.to_owned());
        self
    }
    fn opt<T: fmt::Display>(mut self, k: &str, v: &Option<T>) -> Self {
        if let Some(v) = v {
            self.rest.insert(k.to_owned(), v.to_string());
        }
        self
    }
    fn bool(mut self, k: &str, v: Option<bool>) -> Self {
        if let Some(v) = v {
            self.rest
                .insert(k.to_owned(), if v { "1" } else { "0" }.to_owned());
        }
        self
    }
    fn list(mut self, k: &str, v: &[String]) -> Self {
        if !v.is_empty() {
            self.rest.insert(k.to_owned(), v.join(";"));
        }
        self
    }
    fn finish(
        mut self,
        extra: &BTreeMap<String, String>,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        for (k, v) in extra {
            self.rest.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            Ok::<(), fmt::Error>(())
        };
        if let Some(d) = &self.default {
            sep(f)?;
            f.write_str(d)?;
        }
        for (k, v) in &self.required {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        for (k, v) in &self.rest {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// LXC `features`: advanced container features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LxcFeatures {
    /// Allow nested containers (needed by systemd in newer guests).
    pub nesting: Option<bool>,
    /// Allow the `keyctl()` syscall (Docker in unprivileged containers).
    /// Only root@pam may set it through the API.
    pub keyctl: Option<bool>,
    /// Allow FUSE file systems.
    pub fuse: Option<bool>,
    /// Allow `mknod()` of some device nodes (experimental).
    pub mknod: Option<bool>,
    /// Mount `/sys` read-write in unprivileged containers.
    pub force_rw_sys: Option<bool>,
    /// File system types the container may mount (`mount=nfs;cifs`).
    pub mount: Vec<String>,
    /// Keys this crate does not model, written back unchanged.
    pub extra: BTreeMap<String, String>,
}

impl FromStr for LxcFeatures {
    type Err = PropertyStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = split(s, false)?;
        Ok(LxcFeatures {
            nesting: p.bool("nesting")?,
            keyctl: p.bool("keyctl")?,
            fuse: p.bool("fuse")?,
            mknod: p.bool("mknod")?,
            force_rw_sys: p.bool("force_rw_sys")?,
            mount: p.list("mount"),
            extra: p.rest(),
        })
    }
}

impl fmt::Display for LxcFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Writer::new()
            .bool("nesting", self.nesting)
            .bool("keyctl", self.keyctl)
            .bool("fuse", self.fuse)
            .bool("mknod", self.mknod)
            .bool("force_rw_sys", self.force_rw_sys)
            .list("mount", &self.mount)
            .finish(&self.extra, f)
    }
}

/// LXC `rootfs`: the container's root volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RootFs {
    /// Volume id (`local-lvm:vm-100-disk-0`) or `STORAGE:SIZE_GB` on create.
    pub volume: String,
    /// Volume size.
    pub size: Option<DiskSize>,
    /// Explicitly enable or disable ACL support.
    pub acl: Option<bool>,
    /// Enable user quotas.
    pub quota: Option<bool>,
    /// Include in storage replication jobs.
    pub replicate: Option<bool>,
    /// Read-only.
    pub ro: Option<bool>,
    /// Mark a non-volume mount point as available on all nodes.
    pub shared: Option<bool>,
    /// Mount options (`noatime;nodev`).
    pub mountoptions: Vec<String>,
    /// Keys this crate does not model, written back unchanged.
    pub extra: BTreeMap<String, String>,
}

impl FromStr for RootFs {
    type Err = PropertyStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = split(s, true)?;
        Ok(RootFs {
            volume: p.take_default("volume")?,
            size: p.size("size")?,
            acl: p.bool("acl")?,
            quota: p.bool("quota")?,
            replicate: p.bool("replicate")?,
            ro: p.bool("ro")?,
            shared: p.bool("shared")?,
            mountoptions: p.list("mountoptions"),
            extra: p.rest(),
        })
    }
}

impl fmt::Display for RootFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Writer::new()
            .default("volume", &self.volume)
            .opt("size", &self.size)
            .bool("acl", self.acl)
            .bool("quota", self.quota)
            .bool("replicate", self.replicate)
            .bool("ro", self.ro)
            .bool("shared", self.shared)
            .list("mountoptions", &self.mountoptions)
            .finish(&self.extra, f)
    }
}

/// LXC `mp[n]`: an additional mount point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountPoint {
    /// Volume id, or a host path for bind mounts (root@pam only).
    pub volume: String,
    /// Path inside the container.
    pub mp: String,
    /// Volume size.
    pub size: Option<DiskSize>,
    /// Include in backups.
    pub backup: Option<bool>,
    /// Explicitly enable or disable ACL support.
    pub acl: Option<bool>,
    /// Keep extended attributes on bind mounts.
    pub keepattrs: Option<bool>,
    /// Enable user quotas.
    pub quota: Option<bool>,
    /// Include in storage replication jobs.
    pub replicate: Option<bool>,
    /// Read-only.
    pub ro: Option<bool>,
    /// Mark a non-volume mount point as available on all nodes.
    pub shared: Option<bool>,
    /// Mount options (`noatime;nodev`).
    pub mountoptions: Vec<String>,
    /// Keys this crate does not model, written back unchanged.
    pub extra: BTreeMap<String, String>,
}

impl FromStr for MountPoint {
    type Err = PropertyStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = split(s, true)?;
        Ok(MountPoint {
            volume: p.take_default("volume")?,
            mp: p
                .string("mp")
                .ok_or(PropertyStringError::MissingKey { key: "mp" })?,
            size: p.size("size")?,
            backup: p.bool("backup")?,
            acl: p.bool("acl")?,
            keepattrs: p.bool("keepattrs")?,
            quota: p.bool("quota")?,
            replicate: p.bool("replicate")?,
            ro: p.bool("ro")?,
            shared: p.bool("shared")?,
            mountoptions: p.list("mountoptions"),
            extra: p.rest(),
        })
    }
}

impl fmt::Display for MountPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Writer::new()
            .default("volume", &self.volume)
            .required("mp", &self.mp)
            .opt("size", &self.size)
            .bool("backup", self.backup)
            .bool("acl", self.acl)
            .bool("keepattrs", self.keepattrs)
            .bool("quota", self.quota)
            .bool("replicate", self.replicate)
            .bool("ro", self.ro)
            .bool("shared", self.shared)
            .list("mountoptions", &self.mountoptions)
            .finish(&self.extra, f)
    }
}

/// LXC `net[n]`: a network interface.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetInterface {
    /// Interface name inside the container (`eth0`).
    pub name: String,
    /// Host bridge (`vmbr0`).
    pub bridge: Option<String>,
    /// MAC address.
    pub hwaddr: Option<String>,
    /// IPv4 address in CIDR notation, `dhcp` or `manual`.
    pub ip: Option<String>,
    /// IPv6 address in CIDR notation, `auto`, `dhcp` or `manual`.
    pub ip6: Option<String>,
    /// IPv4 default gateway.
    pub gw: Option<String>,
    /// IPv6 default gateway.
    pub gw6: Option<String>,
    /// Apply the Proxmox firewall to this interface.
    pub firewall: Option<bool>,
    /// Disconnect the interface.
    pub link_down: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Rate limit in MB/s.
    pub rate: Option<f64>,
    /// VLAN tag.
    pub tag: Option<u32>,
    /// VLAN trunks (`10;20;30`).
    pub trunks: Option<String>,
    /// Interface type (only `veth`).
    pub kind: Option<String>,
    /// The host manages the interface (`host-managed`).
    pub host_managed: Option<bool>,
    /// Keys this crate does not model, written back unchanged.
    pub extra: BTreeMap<String, String>,
}

impl FromStr for NetInterface {
    type Err = PropertyStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = split(s, false)?;
        Ok(NetInterface {
            name: p
                .string("name")
                .ok_or(PropertyStringError::MissingKey { key: "name" })?,
            bridge: p.string("bridge"),
            hwaddr: p.string("hwaddr"),
            ip: p.string("ip"),
            ip6: p.string("ip6"),
            gw: p.string("gw"),
            gw6: p.string("gw6"),
            firewall: p.bool("firewall")?,
            link_down: p.bool("link_down")?,
            mtu: p.num("mtu")?,
            rate: p.num("rate")?,
            tag: p.num("tag")?,
            trunks: p.string("trunks"),
            kind: p.string("type"),
            host_managed: p.bool("host-managed")?,
            extra: p.rest(),
        })
    }
}

impl fmt::Display for NetInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Writer::new()
            .required("name", &self.name)
            .opt("bridge", &self.bridge)
            .opt("hwaddr", &self.hwaddr)
            .opt("ip", &self.ip)
            .opt("ip6", &self.ip6)
            .opt("gw", &self.gw)
            .opt("gw6", &self.gw6)
            .bool("firewall", self.firewall)
            .bool("link_down", self.link_down)
            .opt("mtu", &self.mtu)
            .opt("rate", &self.rate)
            .opt("tag", &self.tag)
            .opt("trunks", &self.trunks)
            .opt("type", &self.kind)
            .bool("host-managed", self.host_managed)
            .finish(&self.extra, f)
    }
}

/// Checks that `value` prints back to a property string that parses to the
/// same value (no commas or `=` hiding inside values).
pub(crate) fn check_round_trip<T>(value: &T) -> Result<String, PropertyStringError>
where
    T: FromStr<Err = PropertyStringError> + fmt::Display + PartialEq,
{
    let text = value.to_string();
    let back: T = text.parse()?;
    if &back == value {
        Ok(text)
    } else {
        Err(PropertyStringError::InvalidValue {
            key: "(value)".into(),
            value: text,
            reason: "values must not contain `,`, `=` or `;` where they would change the meaning",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parse, compare with the expectation, print, compare with the input.
    fn check<T>(input: &str, expected: &T)
    where
        T: FromStr<Err = PropertyStringError> + fmt::Display + PartialEq + fmt::Debug,
    {
        let parsed: T = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&parsed, expected, "{input}");
        assert_eq!(parsed.to_string(), input, "printing {expected:?}");
    }

    #[test]
    fn features_round_trip() {
        check(
            "fuse=1,keyctl=1,nesting=1",
            &LxcFeatures {
                nesting: Some(true),
                keyctl: Some(true),
                fuse: Some(true),
                ..Default::default()
            },
        );
        check(
            "mount=nfs;cifs,nesting=1",
            &LxcFeatures {
                nesting: Some(true),
                mount: vec!["nfs".into(), "cifs".into()],
                ..Default::default()
            },
        );
        check("", &LxcFeatures::default());
    }

    #[test]
    fn features_accept_proxmox_boolean_spellings() {
        let f: LxcFeatures = "nesting=yes,keyctl=off,fuse=TRUE".parse().unwrap();
        assert_eq!(
            (f.nesting, f.keyctl, f.fuse),
            (Some(true), Some(false), Some(true))
        );
        assert_eq!(f.to_string(), "fuse=1,keyctl=0,nesting=1");
        assert!("nesting=maybe".parse::<LxcFeatures>().is_err());
        assert!("nesting".parse::<LxcFeatures>().is_err());
        assert!("nesting=1,nesting=0".parse::<LxcFeatures>().is_err());
    }

    #[test]
    fn rootfs_round_trip() {
        check(
            "local-lvm:vm-100-disk-0,size=8G",
            &RootFs {
                volume: "local-lvm:vm-100-disk-0".into(),
                size: Some(DiskSize::gib(8)),
                ..Default::default()
            },
        );
        check(
            "local-zfs:subvol-101-disk-0,acl=1,mountoptions=noatime;nodev,quota=1,size=512M",
            &RootFs {
                volume: "local-zfs:subvol-101-disk-0".into(),
                size: Some(DiskSize(512 << 20)),
                acl: Some(true),
                quota: Some(true),
                mountoptions: vec!["noatime".into(), "nodev".into()],
                ..Default::default()
            },
        );
        // `volume=` spelled out is accepted and printed bare.
        let r: RootFs = "volume=local:100/vm-100-disk-0.raw,size=4G"
            .parse()
            .unwrap();
        assert_eq!(r.to_string(), "local:100/vm-100-disk-0.raw,size=4G");
        // a volume that looks like key=value is spelled out when printed
        let r: RootFs = "volume=a=b,size=1G".parse().unwrap();
        assert_eq!(r.volume, "a=b");
        assert_eq!(r.to_string(), "volume=a=b,size=1G");
        assert_eq!(r.to_string().parse::<RootFs>().unwrap(), r);
        let r: RootFs = "volume= ,size=1G".parse().unwrap();
        assert_eq!(r.to_string().parse::<RootFs>().unwrap(), r);
        assert!("size=4G".parse::<RootFs>().is_err());
        assert!("a,b".parse::<RootFs>().is_err());
    }

    #[test]
    fn mount_point_round_trip() {
        check(
            "local-lvm:vm-100-disk-1,mp=/srv/data,backup=1,size=32G",
            &MountPoint {
                volume: "local-lvm:vm-100-disk-1".into(),
                mp: "/srv/data".into(),
                size: Some(DiskSize::gib(32)),
                backup: Some(true),
                ..Default::default()
            },
        );
        check(
            "/mnt/usb,mp=/backup,replicate=0,ro=1",
            &MountPoint {
                volume: "/mnt/usb".into(),
                mp: "/backup".into(),
                replicate: Some(false),
                ro: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            "local:vol".parse::<MountPoint>(),
            Err(PropertyStringError::MissingKey { key: "mp" })
        );
    }

    #[test]
    fn net_round_trip_keeps_unknown_keys() {
        check(
            "name=eth0,bridge=vmbr0,firewall=1,gw=192.168.1.1,hwaddr=BC:24:11:5E:8F:1A,ip=192.168.1.50/24,type=veth",
            &NetInterface {
                name: "eth0".into(),
                bridge: Some("vmbr0".into()),
                firewall: Some(true),
                gw: Some("192.168.1.1".into()),
                hwaddr: Some("BC:24:11:5E:8F:1A".into()),
                ip: Some("192.168.1.50/24".into()),
                kind: Some("veth".into()),
                ..Default::default()
            },
        );
        let mut extra = BTreeMap::new();
        extra.insert("future-key".to_owned(), "x".to_owned());
        check(
            "name=eth1,bridge=vmbr1,future-key=x,host-managed=1,ip=dhcp,ip6=auto,mtu=1450,rate=12.5,tag=20,trunks=10;20",
            &NetInterface {
                name: "eth1".into(),
                bridge: Some("vmbr1".into()),
                ip: Some("dhcp".into()),
                ip6: Some("auto".into()),
                mtu: Some(1450),
                rate: Some(12.5),
                tag: Some(20),
                trunks: Some("10;20".into()),
                host_managed: Some(true),
                extra,
                ..Default::default()
            },
        );
        assert!("bridge=vmbr0".parse::<NetInterface>().is_err());
        assert!("name=eth0,mtu=big".parse::<NetInterface>().is_err());
    }

    #[test]
    fn disk_sizes_match_format_size() {
        for (text, bytes, printed) in [
            ("8G", 8u64 << 30, "8G"),
            ("8192M", 8 << 30, "8G"),
            ("1536M", 1536 << 20, "1536M"),
            ("2T", 2 << 40, "2T"),
            ("0.5G", 512 << 20, "512M"),
            ("1000", 1000, "1000"),
            ("4K", 4096, "4K"),
        ] {
            let s: DiskSize = text.parse().unwrap();
            assert_eq!(s.bytes(), bytes, "{text}");
            assert_eq!(s.to_string(), printed, "{text}");
        }
        for bad in ["", "G", "1.G", "-1G", "1X", "1..2G"] {
            assert!(bad.parse::<DiskSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trip_check_rejects_commas_in_values() {
        let net = NetInterface {
            name: "eth0".into(),
            bridge: Some("vmbr0,evil=1".into()),
            ..Default::default()
        };
        assert!(check_round_trip(&net).is_err());
        let ok = NetInterface {
            name: "eth0".into(),
            ..Default::default()
        };
        assert_eq!(check_round_trip(&ok).unwrap(), "name=eth0");
    }

    /// If `s` parses, its printed form parses and prints the same again.
    fn check_canonical<T>(s: &str) -> Result<(), TestCaseError>
    where
        T: FromStr<Err = PropertyStringError> + fmt::Display,
    {
        if let Ok(v) = s.parse::<T>() {
            let printed = v.to_string();
            let again: T = printed
                .parse()
                .map_err(|e| TestCaseError::fail(format!("{s:?} -> {printed:?}: {e}")))?;
            prop_assert_eq!(again.to_string(), printed);
        }
        Ok(())
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_.-]{0,8}"
    }

    fn opt_bool() -> impl Strategy<Value = Option<bool>> {
        proptest::option::of(any::<bool>())
    }

    prop_compose! {
        fn arb_mp()(
            volume in "[a-z][a-z0-9-]{0,6}:[a-z0-9-]{1,12}",
            mp in "/[a-z0-9/]{1,12}",
            size in proptest::option::of(1u64..4096),
            backup in opt_bool(), acl in opt_bool(), ro in opt_bool(), replicate in opt_bool(),
            mountoptions in proptest::collection::vec(prop_oneof![Just("noatime".to_string()), Just("nodev".to_string())], 0..3),
            extra in proptest::collection::btree_map("x[a-z]{1,5}", word(), 0..3),
        ) -> MountPoint {
            MountPoint { volume, mp, size: size.map(DiskSize::gib), backup, acl, ro, replicate, mountoptions, extra, ..Default::default() }
        }
    }

    prop_compose! {
        fn arb_net()(
            name in "eth[0-9]", bridge in proptest::option::of("vmbr[0-9]"),
            ip in proptest::option::of(prop_oneof![Just("dhcp".to_string()), "10\\.[0-9]{1,3}\\.0\\.[0-9]{1,3}/24"]),
            firewall in opt_bool(), mtu in proptest::option::of(64u32..9000), tag in proptest::option::of(1u32..4094),
            extra in proptest::collection::btree_map("x[a-z]{1,5}", word(), 0..3),
        ) -> NetInterface {
            NetInterface { name, bridge, ip, firewall, mtu, tag, extra, ..Default::default() }
        }
    }

    proptest! {
        #[test]
        fn mount_points_round_trip(mp in arb_mp()) {
            let text = mp.to_string();
            let back: MountPoint = text.parse().unwrap();
            prop_assert_eq!(&back, &mp);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn net_interfaces_round_trip(net in arb_net()) {
            let text = net.to_string();
            let back: NetInterface = text.parse().unwrap();
            prop_assert_eq!(&back, &net);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn features_round_trip_prop(n in opt_bool(), k in opt_bool(), fu in opt_bool(), m in opt_bool()) {
            let f = LxcFeatures { nesting: n, keyctl: k, fuse: fu, mknod: m, ..Default::default() };
            let text = f.to_string();
            prop_assert_eq!(text.parse::<LxcFeatures>().unwrap(), f);
        }

        #[test]
        fn parsed_text_prints_in_a_stable_canonical_form(
            s in "((volume|mp|name|size|nesting|mtu|rate|x)=?[a-z0-9=;./ -]{0,8},?){0,6}"
        ) {
            check_canonical::<RootFs>(&s)?;
            check_canonical::<MountPoint>(&s)?;
            check_canonical::<NetInterface>(&s)?;
            check_canonical::<LxcFeatures>(&s)?;
            let _ = s.parse::<DiskSize>();
        }
    }
}
