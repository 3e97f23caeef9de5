//! Enrollment (SPEC §6, PROTOCOL.md §6): one-time tokens, the bootstrap
//! script and the one-shot payload.
//!
//! Decisions:
//! - The token is 32 random bytes (256 bits), base64url (43 characters);
//!   only its SHA-256 is stored.
//! - The agent secret is minted at redemption, not at bundle creation, so
//!   no plaintext secret ever rests on the server: the payload is rendered
//!   in memory for the one request that wins the atomic redemption.
//! - The bootstrap script carries a table of the newest stable Linux build
//!   per architecture (chosen with `rmm_core::channel`), downloads the
//!   binary from this server, verifies its SHA-256, installs it, and runs
//!   `rmm-agent enroll` with the token in `RMM_ENROLL_TOKEN` (never argv).

use std::io::Write;

use rmm_core::channel::{Channel, ReleaseIndex};
use serde::Serialize;
use uuid::Uuid;

/// Token length in random bytes.
pub const TOKEN_BYTES: usize = 32;

/// True for a string shaped like one of our tokens (43 base64url chars);
/// anything else is refused before the store is asked.
pub fn token_shape_ok(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub use rmm_api::valid_agent_name;

/// The agent's `config.json` inside the payload.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConfig {
    /// Where the agent connects.
    pub server_url: String,
    /// Its id.
    pub agent_id: Uuid,
    /// Its secret (the server keeps only the hash).
    pub agent_secret: String,
    /// Pin of the server certificate (lowercase hex) or null.
    pub server_cert_sha256: Option<String>,
    /// The enrollment name.
    pub agent_name: String,
    /// Release channel.
    pub channel: String,
}

/// The hardened systemd unit shipped in the payload: the one file
/// `packaging/rmm-agent.service`, so the unit a bootstrap installs and the
/// unit packagers ship never drift apart.
pub fn systemd_unit() -> String {
    include_str!("../../packaging/rmm-agent.service").to_owned()
}

/// Builds the gzip'd tar payload: `config.json` (0600) and
/// `rmm-agent.service` (0644), both dated `now_ms` (unix ms).
pub fn payload_tgz(config: &AgentConfig, now_ms: i64) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?;
    let unit = systemd_unit();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = u64::try_from(now_ms / 1000).unwrap_or(0);
    for (name, data, mode) in [
        ("config.json", json.as_slice(), 0o600),
        ("rmm-agent.service", unit.as_bytes(), 0o644),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One line of the script's build table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildChoice {
    /// Architecture as the artifact names it.
    pub arch: String,
    /// File name under `/api/v1/downloads/`.
    pub file: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// The newest Linux build per architecture for `channel`.
pub fn linux_builds(index: &ReleaseIndex, channel: Channel) -> Vec<BuildChoice> {
    let mut arches: Vec<String> = index
        .releases()
        .filter(|r| r.os() == rmm_core::channel::Os::Linux)
        .map(|r| r.arch().as_str().to_owned())
        .collect();
    arches.sort();
    arches.dedup();
    arches
        .into_iter()
        .filter_map(|arch| {
            let a = rmm_core::channel::Arch::new(&arch).ok()?;
            let r = index.newest(rmm_core::channel::Os::Linux, &a, channel)?;
            Some(BuildChoice {
                arch,
                file: r.file_name().to_owned(),
                sha256: r.sha256().to_string(),
            })
        })
        .collect()
}

/// What the bootstrap script is made of.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap<'a> {
    /// Where the script downloads the agent build from.
    pub public_url: &'a str,
    /// The URL the agent connects to.
    pub server_url: &'a str,
    /// The one-time enrollment token.
    pub token: &'a str,
    /// The agent's name.
    pub agent_name: &'a str,
    /// The build per architecture.
    pub builds: &'a [BuildChoice],
    /// The certificate pin handed to `rmm-agent enroll`.
    pub server_cert_sha256: Option<&'a str>,
    /// Extra `curl` options pinning the server's key (with a trailing
    /// space), or empty.
    pub curl_pin_args: &'a str,
    /// Pass `--insecure-http` to `rmm-agent enroll` (plain HTTP to a host
    /// that is not loopback, allowed by the server's operator).
    pub insecure_http: bool,
}

/// Renders the bootstrap script (`curl ... | sudo bash`).
pub fn bootstrap_script(b: &Bootstrap<'_>) -> String {
    let Bootstrap {
        public_url,
        server_url,
        token,
        agent_name,
        builds,
        server_cert_sha256,
        curl_pin_args,
        insecure_http,
    } = *b;
    let mut table = String::new();
    for b in builds {
        table.push_str(&format!(
            "  {arch}) FILE={file}; SHA256={sha};;\n",
            arch = b.arch,
            file = shell_quote(&b.file),
            sha = shell_quote(&b.sha256)
        ));
    }
    let mut pin_arg = match server_cert_sha256 {
        Some(pin) => format!(" --server-cert-sha256 {}", shell_quote(pin)),
        None => String::new(),
    };
    let mut warning = String::new();
    if insecure_http {
        pin_arg.push_str(" --insecure-http");
        warning.push_str(
            "echo \"rmm: WARNING: plain HTTP to $SERVER_URL (the server was started with \
             --insecure-http): the agent's secret crosses the network unencrypted\" >&2\n",
        );
    }
    format!(
        r#"#!/usr/bin/env bash
# rmm agent bootstrap for agent {name}, generated by rmm-server.
# Installs /usr/local/bin/rmm-agent, enrolls this machine once and starts
# the rmm-agent systemd service. The token inside works once, for 5 minutes.
set -euo pipefail
DOWNLOAD_BASE={public}
SERVER_URL={server}
if [ "$(id -u)" -ne 0 ]; then
  echo "rmm: run this as root (curl ... | sudo bash)" >&2; exit 1
fi
{warning}if [ "$(uname -s)" != "Linux" ]; then
  echo "rmm: this installer is for Linux; see the docs for other systems" >&2; exit 1
fi
case "$(uname -m)" in
  x86_64|amd64) ARCH=x86_64 ;;
  aarch64|arm64) ARCH=aarch64 ;;
  armv7l|armv7) ARCH=armv7 ;;
  *) ARCH="$(uname -m)" ;;
esac
FILE=""; SHA256=""
case "$ARCH" in
{table}  *) ;;
esac
if [ -z "$FILE" ]; then
  echo "rmm: the server has no agent build for linux-$ARCH" >&2; exit 1
fi
for tool in curl sha256sum install systemctl; do
  command -v "$tool" >/dev/null 2>&1 || {{ echo "rmm: $tool is required" >&2; exit 1; }}
done
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
curl -fsSL {curl_pin}--proto '=https,http' "$DOWNLOAD_BASE/api/v1/downloads/$FILE" -o "$TMP/rmm-agent"
echo "$SHA256  $TMP/rmm-agent" | sha256sum -c --quiet - || {{ echo "rmm: checksum mismatch for $FILE" >&2; exit 1; }}
install -m 0755 "$TMP/rmm-agent" /usr/local/bin/rmm-agent
install -d -m 0700 /var/lib/rmm-agent
RMM_ENROLL_TOKEN={token} /usr/local/bin/rmm-agent enroll --server "$SERVER_URL" \
  --state-dir /var/lib/rmm-agent --install-unit /etc/systemd/system/rmm-agent.service{pin}
systemctl daemon-reload
systemctl enable --now rmm-agent
echo "rmm: agent {name} installed and started"
"#,
        name = agent_name,
        public = shell_quote(public_url),
        server = shell_quote(server_url),
        token = shell_quote(token),
        table = table,
        pin = pin_arg,
        curl_pin = curl_pin_args,
        warning = warning,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web-01", "0", &"a".repeat(63)] {
            assert!(valid_agent_name(ok), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", &"a".repeat(64), "é"] {
            assert!(!valid_agent_name(bad), "{bad}");
        }
    }

    #[test]
    fn token_shape() {
        let t = crate::auth::random_token(TOKEN_BYTES);
        assert!(token_shape_ok(&t), "{t}");
        assert!(!token_shape_ok("short"));
        assert!(!token_shape_ok(&"a/".repeat(22)[..43]));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
