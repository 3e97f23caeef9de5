//! Proxmox task identifiers (UPIDs).
//!
//! A PVE UPID looks like
//! `UPID:pve1:000A2B3C:0089ABCD:6512F00D:vzsnapshot:100:root@pam!rmm:` — node,
//! PID, process start time (8 or 9 hex digits), task start time, task type,
//! task id (may be empty) and the user or token that started it, with a
//! trailing colon. [`Upid`] keeps the exact text it was parsed from, so
//! printing a parsed UPID reproduces it byte for byte (Proxmox compares UPIDs
//! as strings).

use std::fmt;
use std::str::FromStr;

/// A parsed Proxmox VE task identifier.
///
/// `Display` prints the exact text the UPID was parsed from; a UPID built
/// with [`Upid::new`] prints in the canonical form Proxmox itself writes
/// (`%08X` hex fields).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    pstart: u64,
    pid: u32,
    starttime: u32,
    // byte ranges of the text fields in `raw` (keeps the type small, so
    // errors carrying a UPID stay small)
    node: (u16, u16),
    task_type: (u16, u16),
    id: (u16, u16),
    user: (u16, u16),
}

/// Why a string is not a valid UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpidParseError {
    /// The text does not start with `UPID:` or does not end with `:`.
    #[error("a upid starts with `UPID:` and ends with `:`")]
    Framing,
    /// Wrong number of colon-separated fields.
    #[error("a upid has 8 colon-separated fields after `UPID:`, found {found}")]
    FieldCount {
        /// Number of fields found.
        found: usize,
    },
    /// A field does not have the expected shape.
    #[error("upid field `{field}` is invalid: {reason}")]
    Field {
        /// The field name (`node`, `pid`, `pstart`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn valid_node(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn no_colon_or_space(s: &str) -> bool {
    !s.chars().any(|c| c == ':' || c.is_whitespace())
}

fn hex_field(s: &str, field: &'static str, min: usize, max: usize) -> Result<u64, UpidParseError> {
    if s.len() < min || s.len() > max || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(UpidParseError::Field {
            field,
            reason: if min == max {
                "expected exactly 8 hex digits"
            } else {
                "expected 8 or 9 hex digits"
            },
        });
    }
    u64::from_str_radix(s, 16).map_err(|_| UpidParseError::Field {
        field,
        reason: "not a hex number",
    })
}

impl Upid {
    /// Builds a UPID from its parts, validating them like [`FromStr`] does.
    pub fn new(
        node: &str,
        pid: u32,
        pstart: u64,
        starttime: u32,
        task_type: &str,
        id: &str,
        user: &str,
    ) -> Result<Upid, UpidParseError> {
        if pstart > 0xF_FFFF_FFFF {
            return Err(UpidParseError::Field {
                field: "pstart",
                reason: "expected 8 or 9 hex digits",
            });
        }
        let raw =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{id}:{user}:");
        raw.parse()
    }

    fn part(&self, (start, end): (u16, u16)) -> &str {
        &self.raw[usize::from(start)..usize::from(end)]
    }

    /// The node the task runs on (status must be polled there).
    pub fn node(&self) -> &str {
        self.part(self.node)
    }

    /// Process id of the task worker.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Process start time in clock ticks since boot.
    pub fn pstart(&self) -> u64 {
        self.pstart
    }

    /// Task start time (Unix seconds).
    pub fn starttime(&self) -> u32 {
        self.starttime
    }

    /// Task type, e.g. `vzsnapshot`, `vzdump`, `vzstart`.
    pub fn task_type(&self) -> &str {
        self.part(self.task_type)
    }

    /// Task id, usually the VMID; may be empty.
    pub fn id(&self) -> &str {
        self.part(self.id)
    }

    /// The user or API token (`user@realm!token`) that started the task.
    pub fn user(&self) -> &str {
        self.part(self.user)
    }

    /// The exact UPID text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let inner = s
            .strip_prefix("UPID:")
            .and_then(|r| r.strip_suffix(':'))
            .ok_or(UpidParseError::Framing)?;
        let parts: Vec<&str> = inner.split(':').collect();
        if parts.len() != 7 {
            return Err(UpidParseError::FieldCount {
                found: parts.len() + 1,
            });
        }
        let node = parts[0];
        if !valid_node(node) {
            return Err(UpidParseError::Field {
                field: "node",
                reason: "expected letters, digits and inner dashes",
            });
        }
        let pid = hex_field(parts[1], "pid", 8, 8)?;
        let pstart = hex_field(parts[2], "pstart", 8, 9)?;
        let starttime = hex_field(parts[3], "starttime", 8, 8)?;
        let (task_type, id, user) = (parts[4], parts[5], parts[6]);
        if task_type.is_empty() || !no_colon_or_space(task_type) {
            return Err(UpidParseError::Field {
                field: "type",
                reason: "expected a non-empty word without whitespace",
            });
        }
        if !no_colon_or_space(id) {
            return Err(UpidParseError::Field {
                field: "id",
                reason: "must not contain whitespace",
            });
        }
        if user.is_empty() || !no_colon_or_space(user) {
            return Err(UpidParseError::Field {
                field: "user",
                reason: "expected a non-empty user or token id without whitespace",
            });
        }
        if s.len() > usize::from(u16::MAX) {
            return Err(UpidParseError::Field {
                field: "user",
                reason: "upid too long",
            });
        }
        // ranges of the 7 fields inside `s` ("UPID:" is 5 bytes)
        let mut ranges = [(0u16, 0u16); 7];
        let mut pos = 5usize;
        for (i, part) in parts.iter().enumerate() {
            // lengths fit: the whole string is at most u16::MAX bytes
            ranges[i] = (pos as u16, (pos + part.len()) as u16);
            pos += part.len() + 1;
        }
        Ok(Upid {
            raw: s.to_owned(),
            // 8 hex digits always fit u32
            pid: pid as u32,
            pstart,
            starttime: starttime as u32,
            node: ranges[0],
            task_type: ranges[4],
            id: ranges[5],
            user: ranges[6],
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({:?})", self.raw)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Parts<'a> = (&'a str, u32, u64, u32, &'a str, &'a str, &'a str);

    fn check(input: &str, expected: Result<Parts<'_>, ()>) {
        let parsed = input.parse::<Upid>();
        match expected {
            Ok((node, pid, pstart, starttime, ty, id, user)) => {
                let u = parsed.unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(
                    (
                        u.node(),
                        u.pid(),
                        u.pstart(),
                        u.starttime(),
                        u.task_type(),
                        u.id(),
                        u.user()
                    ),
                    (node, pid, pstart, starttime, ty, id, user)
                );
                assert_eq!(u.to_string(), input);
            }
            Err(()) => assert!(parsed.is_err(), "{input} should not parse"),
        }
    }

    #[test]
    fn parses_real_upids() {
        check(
            "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam!rmm:",
            Ok((
                "pve1",
                0x1234,
                0xABCDEF,
                0x65A1B2C3,
                "vzsnapshot",
                "100",
                "root@pam!rmm",
            )),
        );
        // 9-digit pstart on long-running hosts
        check(
            "UPID:node-2:0002F1A0:1A2B3C4D5:66000000:vzdump::svc@pve!backup:",
            Ok((
                "node-2",
                0x2F1A0,
                0x1A2B3C4D5,
                0x66000000,
                "vzdump",
                "",
                "svc@pve!backup",
            )),
        );
        // lowercase hex is kept verbatim when printed
        check(
            "UPID:a:0000abcd:0000abcd:0000abcd:aptupdate::root@pam:",
            Ok(("a", 0xabcd, 0xabcd, 0xabcd, "aptupdate", "", "root@pam")),
        );
    }

    #[test]
    fn rejects_malformed_upids() {
        for bad in [
            "",
            "UPID:",
            "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam",
            "upid:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam:",
            "UPID:pve1:1234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam:",
            "UPID:pve1:00001234:ABCDEF:65A1B2C3:vzsnapshot:100:root@pam:",
            "UPID:pve1:00001234:0123456789:65A1B2C3:vzsnapshot:100:root@pam:",
            "UPID:-pve:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam:",
            "UPID:pve1:0000123G:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam:",
            "UPID:pve1:00001234:00ABCDEF:65A1B2C3::100:root@pam:",
            "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100::",
            "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:1 0:root@pam:",
            "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam:extra:",
        ] {
            check(bad, Err(()));
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let s = "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzstart:100:root@pam:";
        let u: Upid = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), format!("\"{s}\""));
        assert!(serde_json::from_str::<Upid>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn built_upids_round_trip(
            node in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
            pid in any::<u32>(),
            pstart in 0u64..=0xF_FFFF_FFFF,
            starttime in any::<u32>(),
            ty in "[a-z]{1,12}",
            id in "[0-9a-z.-]{0,8}",
            user in "[a-z]{1,8}@(pam|pve)(![a-z][a-z0-9]{0,8})?",
        ) {
            let u = Upid::new(&node, pid, pstart, starttime, &ty, &id, &user).unwrap();
            let printed = u.to_string();
            let back: Upid = printed.parse().unwrap();
            prop_assert_eq!(&back, &u);
            prop_assert_eq!(back.to_string(), printed);
            prop_assert_eq!((back.node(), back.pid(), back.pstart(), back.starttime()), (node.as_str(), pid, pstart, starttime));
            prop_assert_eq!((back.task_type(), back.id(), back.user()), (ty.as_str(), id.as_str(), user.as_str()));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "UPID:[ -~]{0,80}") {
            if let Ok(u) = s.parse::<Upid>() {
                prop_assert_eq!(u.to_string(), s);
            }
        }
    }
}
