//! Facts about the machine sent in `hello`: the app-specific machine uid,
//! host name, OS and architecture.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Where the machine identity is read from, in order.
pub const MACHINE_ID_SOURCES: [&str; 3] = [
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/sys/class/dmi/id/product_uuid",
];

/// Why no machine uid could be derived.
#[derive(Debug, thiserror::Error)]
#[error("cannot determine a machine id: none of {} is readable and non-empty; pass --machine-id", MACHINE_ID_SOURCES.join(", "))]
pub struct NoMachineId;

/// An app-specific, stable hash of the machine identity: SHA-256 of
/// `"rmm-agent-machine-uid:" + id` in lowercase hex. Hashing keeps the raw
/// `/etc/machine-id` (which other software treats as confidential) off the
/// wire, and makes the value useless for correlating with other apps.
pub fn machine_uid_from(id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rmm-agent-machine-uid:");
    h.update(id.trim().as_bytes());
    hex::encode(h.finalize())
}

/// The machine uid of this machine. `override_id` (from `--machine-id` /
/// `RMM_AGENT_MACHINE_ID`) replaces the machine-id input, so tests and
/// cloned images can present distinct machines.
pub fn machine_uid(override_id: Option<&str>) -> Result<String, NoMachineId> {
    if let Some(id) = override_id.filter(|s| !s.trim().is_empty()) {
        return Ok(machine_uid_from(id));
    }
    MACHINE_ID_SOURCES
        .iter()
        .find_map(|p| read_id(Path::new(p)))
        .map(|id| machine_uid_from(&id))
        .ok_or(NoMachineId)
}

fn read_id(path: &Path) -> Option<String> {
    let bytes = crate::fsutil::read_bounded(path, 4096).ok()?;
    let s = String::from_utf8_lossy(&bytes).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The host name, or `"unknown"`.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `linux`, `windows`, `darwin`, ...
pub fn os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// `x86_64`, `aarch64`, ...
pub fn arch() -> &'static str {
    std::env::consts::ARCH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_app_specific_hash_and_override_wins() {
        let a = machine_uid_from("3d1219c7c4c5404aaa1f6d2a48adfda4\n");
        assert_eq!(a, machine_uid_from("3d1219c7c4c5404aaa1f6d2a48adfda4"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, machine_uid_from("other"));
        assert!(!a.contains("3d1219c7"));
        assert_eq!(machine_uid(Some("x")).unwrap(), machine_uid_from("x"));
        // The real machine has one of the sources in this environment.
        let real = machine_uid(None).unwrap();
        assert_eq!(real, machine_uid(Some("  ")).unwrap());
    }

    #[test]
    fn facts_are_non_empty() {
        assert!(!hostname().is_empty());
        assert_eq!(os(), "linux");
        assert!(!arch().is_empty());
    }
}
