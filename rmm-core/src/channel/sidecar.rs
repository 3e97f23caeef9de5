//! Sidecar contents: `<file>.channel` and `<file>.sha256`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest sidecar file read, in bytes. A sha256 line with a 255-byte file
/// name fits many times over; anything larger is refused unread.
pub const SIDECAR_LIMIT: u64 = 4096;

/// Release channel of a build, or the channel an agent follows.
///
/// Text form (sidecar content, [`FromStr`], serde) is exactly `stable` or
/// `beta`, lowercase; any other word is refused rather than guessed, so a
/// typo in a sidecar never turns a beta build into a stable one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Channel {
    /// Tested builds; what a build without a `.channel` sidecar is.
    #[default]
    Stable,
    /// Early builds; a beta agent gets the newest build whatever its tag.
    Beta,
}

impl Channel {
    /// The channel word.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
        }
    }

    /// Whether an agent following `self` may be offered a build tagged `build`.
    pub fn accepts(self, build: Channel) -> bool {
        match self {
            Channel::Beta => true,
            Channel::Stable => build == Channel::Stable,
        }
    }

    /// Parses the content of a `.channel` sidecar: one channel word,
    /// surrounding whitespace (and a UTF-8 byte-order mark) ignored.
    pub fn parse_sidecar(content: &[u8]) -> Result<Channel, SidecarError> {
        let text = sidecar_text(content)?;
        text.trim().parse()
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = SidecarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stable" => Ok(Channel::Stable),
            "beta" => Ok(Channel::Beta),
            other => Err(SidecarError::UnknownChannel {
                word: other.chars().take(64).collect(),
            }),
        }
    }
}

/// A sha256 digest, shown and serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<Sha256Digest, SidecarError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(SidecarError::BadDigest);
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => *slot = hi << 4 | lo,
                _ => return Err(SidecarError::BadDigest),
            }
        }
        Ok(Sha256Digest(out))
    }

    /// Parses the content of `<file_name>.sha256`.
    ///
    /// Accepts exactly one non-empty line holding the hex digest, optionally
    /// followed by whitespace and a file name as `sha256sum` prints it
    /// (`<hex>  <name>`, or `<hex> *<name>` in binary mode). A file name, if
    /// present, must be `file_name`: a digest of another file is refused.
    pub fn parse_sidecar(content: &[u8], file_name: &str) -> Result<Sha256Digest, SidecarError> {
        let text = sidecar_text(content)?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let line = lines.next().ok_or(SidecarError::Empty)?;
        if lines.next().is_some() {
            return Err(SidecarError::ExtraLines);
        }
        let (hex, named) = match line.split_once(char::is_whitespace) {
            Some((hex, rest)) => (hex, Some(rest.trim_start())),
            None => (line, None),
        };
        let digest = Sha256Digest::from_hex(hex)?;
        if let Some(named) = named {
            let named = named.strip_prefix('*').unwrap_or(named);
            if named != file_name {
                return Err(SidecarError::NameMismatch {
                    found: named.chars().take(255).collect(),
                });
            }
        }
        Ok(digest)
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Checks size and encoding of sidecar content and drops a UTF-8 BOM.
fn sidecar_text(content: &[u8]) -> Result<&str, SidecarError> {
    if content.len() as u64 > SIDECAR_LIMIT {
        return Err(SidecarError::TooLarge {
            limit: SIDECAR_LIMIT,
        });
    }
    let text = std::str::from_utf8(content).map_err(|_| SidecarError::NotUtf8)?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = SidecarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sha256Digest::from_hex(s)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Sha256Digest::from_hex(&hex).map_err(serde::de::Error::custom)
    }
}

/// Why the content of a sidecar is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// The sidecar is larger than [`SIDECAR_LIMIT`].
    #[error("sidecar is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The sidecar is not UTF-8 text.
    #[error("sidecar is not utf-8 text")]
    NotUtf8,
    /// The sidecar holds no text.
    #[error("sidecar is empty")]
    Empty,
    /// A `.channel` sidecar holds a word other than `stable` or `beta`.
    #[error("unknown channel `{word}` (expected stable or beta)")]
    UnknownChannel {
        /// The word found (at most 64 characters of it).
        word: String,
    },
    /// A `.sha256` sidecar does not start with 64 hex digits.
    #[error("not a sha256 digest (expected 64 hex digits)")]
    BadDigest,
    /// A `.sha256` sidecar has more than one non-empty line.
    #[error("sha256 sidecar has more than one line; keep only this build's digest")]
    ExtraLines,
    /// A `.sha256` sidecar names another file.
    #[error("sha256 sidecar is for `{found}`, not for this build")]
    NameMismatch {
        /// The file name found in the sidecar.
        found: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_round_trip() {
        let hex = "00ff10AbcdEF00000000000000000000000000000000000000000000000000aa";
        let digest = Sha256Digest::from_hex(hex).unwrap();
        assert_eq!(digest.to_string(), hex.to_ascii_lowercase());
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), digest);
    }

    #[test]
    fn channel_accepts() {
        assert!(Channel::Beta.accepts(Channel::Stable));
        assert!(Channel::Beta.accepts(Channel::Beta));
        assert!(Channel::Stable.accepts(Channel::Stable));
        assert!(!Channel::Stable.accepts(Channel::Beta));
    }

    #[test]
    fn non_ascii_hex_does_not_panic() {
        // 64 bytes, multi-byte characters: must be refused, not sliced.
        let weird = "é".repeat(32);
        assert_eq!(Sha256Digest::from_hex(&weird), Err(SidecarError::BadDigest));
    }
}
