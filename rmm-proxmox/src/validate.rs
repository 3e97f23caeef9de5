//! Argument checks done before anything is sent (mirroring the Proxmox
//! formats `pve-vmid`, `pve-node`, `pve-storage-id`, `pve-configid`, ...).

use crate::error::Error;

fn bad(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

/// Lowest and highest guest id Proxmox accepts.
pub const VMID_RANGE: std::ops::RangeInclusive<u32> = 100..=999_999_999;

pub(crate) fn vmid(v: u32) -> Result<(), Error> {
    if VMID_RANGE.contains(&v) {
        Ok(())
    } else {
        Err(bad("vmid", format!("{v} is outside 100..=999999999")))
    }
}

pub(crate) fn node(n: &str) -> Result<(), Error> {
    if crate::config::valid_node_name(n) {
        Ok(())
    } else {
        Err(bad("node", format!("`{n}` is not a valid node name")))
    }
}

/// `pve-storage-id`: `[a-z][a-z0-9\-_.]*[a-z0-9]`, case-insensitive.
pub(crate) fn storage_id(s: &str) -> Result<(), Error> {
    let b = s.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad("storage", format!("`{s}` is not a valid storage id")))
    }
}

/// `pve-configid`: `[a-z][a-z0-9_-]+`, case-insensitive; used for snapshot
/// names (max 40).
pub(crate) fn snapname(s: &str) -> Result<(), Error> {
    let b = s.as_bytes();
    let ok = (2..=40).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "snapname",
            format!("`{s}` must be 2-40 letters, digits, `-` or `_`, starting with a letter"),
        ))
    }
}

/// A config key such as `cores`, `net0`, `mp12`.
pub(crate) fn config_key(s: &str) -> Result<(), Error> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(bad("key", format!("`{s}` is not a config key")))
    }
}

/// A volume id `STORAGE:VOLUME`.
pub(crate) fn volume_id(field: &'static str, s: &str) -> Result<(), Error> {
    let Some((storage, volume)) = s.split_once(':') else {
        return Err(bad(
            field,
            format!("`{s}` is not a volume id (STORAGE:VOLUME)"),
        ));
    };
    storage_id(storage).map_err(|_| bad(field, format!("`{s}` has an invalid storage part")))?;
    if volume.is_empty()
        || s.len() > 255
        || volume
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ',')
    {
        return Err(bad(field, format!("`{s}` has an invalid volume part")));
    }
    Ok(())
}

/// A DNS name (labels of letters, digits, inner dashes).
pub(crate) fn dns_name(field: &'static str, s: &str) -> Result<(), Error> {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    if s.len() <= 255 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad(field, format!("`{s}` is not a valid dns name")))
    }
}

/// Pool and similar ids: letters, digits, `-`, `_`.
pub(crate) fn simple_id(field: &'static str, s: &str) -> Result<(), Error> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        Ok(())
    } else {
        Err(bad(field, format!("`{s}` is not a valid id")))
    }
}

/// A block device path as the SMART endpoint accepts: `^/dev/[a-zA-Z0-9/]+$`.
pub(crate) fn disk_path(s: &str) -> Result<(), Error> {
    match s.strip_prefix("/dev/") {
        Some(rest)
            if !rest.is_empty()
                && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '/')
                && !rest.contains("//") =>
        {
            Ok(())
        }
        _ => Err(bad("disk", format!("`{s}` is not a /dev/ path"))),
    }
}

/// An ACL path such as `/`, `/vms/100`, `/storage/local`.
pub(crate) fn acl_path(s: &str) -> Result<(), Error> {
    if s.starts_with('/')
        && s.len() <= 256
        && !s.contains("..")
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        Ok(())
    } else {
        Err(bad("path", format!("`{s}` is not an acl path")))
    }
}

/// A privilege name such as `VM.Snapshot`.
pub(crate) fn privilege(s: &str) -> Result<(), Error> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        Ok(())
    } else {
        Err(bad("privilege", format!("`{s}` is not a privilege name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(vmid(100).is_ok() && vmid(999_999_999).is_ok());
        assert!(vmid(99).is_err() && vmid(1_000_000_000).is_err());
        assert!(node("pve1").is_ok() && node("a").is_ok());
        assert!(node("pve_1").is_err() && node("-a").is_err() && node("").is_err());
        assert!(storage_id("local-lvm").is_ok() && storage_id("nfs.backup").is_ok());
        assert!(storage_id("1local").is_err() && storage_id("a").is_err());
        assert!(snapname("pre-upgrade_1").is_ok());
        assert!(
            snapname("1abc").is_err()
                && snapname("a").is_err()
                && snapname(&"a".repeat(41)).is_err()
        );
        assert!(volume_id("f", "local:backup/vzdump-lxc-100.tar.zst").is_ok());
        assert!(volume_id("f", "local").is_err() && volume_id("f", "local:a b").is_err());
        assert!(dns_name("h", "web-1.example.net").is_ok());
        assert!(dns_name("h", "-web").is_err() && dns_name("h", "a..b").is_err());
        assert!(disk_path("/dev/sda").is_ok() && disk_path("/dev/disk/by-id/x").is_err());
        assert!(disk_path("/etc/passwd").is_err());
        assert!(acl_path("/vms/100").is_ok() && acl_path("vms").is_err());
        assert!(privilege("VM.Snapshot").is_ok() && privilege("VM Snapshot").is_err());
        assert!(config_key("net0").is_ok() && config_key("Net0").is_err());
    }
}
