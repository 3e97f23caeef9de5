//! `rmm-agent selftest`: state directory, identity, machine id, server
//! reachability (a real WebSocket upgrade with the agent credential, which
//! the server checks before upgrading) and clock skew against the server's
//! `Date` header.
//!
//! By default no `hello` is sent: the server registers a connection at
//! `hello` and closes the previous one of the same agent, so a full
//! handshake would briefly disconnect a running daemon. `handshake = true`
//! (`--handshake`) also exchanges hello/welcome to check protocol
//! negotiation.
//!
//! Plain `http://` to a non-loopback server fails the `transport` check and
//! nothing is sent, unless the identity's `insecure_http` or the
//! `insecure_http` argument (`--insecure-http`) allows it.

use std::path::PathBuf;
use std::time::Duration;

use rmm_core::io::Clock;

use crate::clock::SystemClock;
use rmm_core::protocol::{Codec, Hello, VersionRange};

use crate::daemon::conn;
use crate::identity::{Identity, StateDir};

/// Largest clock difference that passes.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Detail for the report.
    pub detail: String,
}

/// The report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    fn add(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            ok,
            detail: detail.into(),
        });
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            writeln!(
                f,
                "[{}] {:<10} {}",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        write!(
            f,
            "selftest {}",
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}

/// Parses an HTTP `Date` header (IMF-fixdate) into unix ms.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc2822(s.trim()).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// Runs every check; `handshake` adds the hello/welcome exchange;
/// `insecure_http` allows plain http to a non-loopback server.
pub async fn run(
    state_dir: PathBuf,
    machine_id: Option<&str>,
    timeout: Duration,
    handshake: bool,
    insecure_http: bool,
) -> Report {
    let mut r = Report::default();
    match StateDir::open(&state_dir) {
        Ok(_) => r.add(
            "state-dir",
            true,
            format!("{} is writable", state_dir.display()),
        ),
        Err(e) => r.add("state-dir", false, e.to_string()),
    }
    let identity = match Identity::load(&state_dir) {
        Ok(id) => {
            r.add(
                "identity",
                true,
                format!(
                    "agent {} ({}) of {}",
                    id.agent_name, id.agent_id, id.server_url
                ),
            );
            Some(id)
        }
        Err(e) => {
            r.add("identity", false, e.to_string());
            None
        }
    };
    let machine_uid = match crate::machine::machine_uid(machine_id) {
        Ok(u) => {
            r.add("machine-id", true, format!("machine uid {}", &u[..16]));
            u
        }
        Err(e) => {
            r.add("machine-id", false, e.to_string());
            String::new()
        }
    };
    let Some(identity) = identity else {
        r.add("server", false, "skipped: no identity");
        return r;
    };
    match identity.transport(insecure_http) {
        Ok(t) => r.add("transport", true, t.to_string()),
        Err(e) => {
            r.add("transport", false, e);
            return r;
        }
    }
    let codec = Codec::new(conn::limits(rmm_core::delivery::AGENT_MAX_CONTROL));
    let hello = Hello {
        protocol: VersionRange::current(),
        agent_id: identity.agent_id,
        agent_version: crate::AGENT_VERSION.into(),
        os: crate::machine::os().into(),
        arch: crate::machine::arch().into(),
        hostname: crate::machine::hostname(),
        machine_uid,
        channel: identity.channel.clone(),
    };
    let t0 = std::time::Instant::now();
    match conn::connect(&identity, codec.limits, timeout).await {
        Err(e) => r.add("server", false, e.to_string()),
        Ok((mut ws, date)) => {
            if !handshake {
                r.add(
                    "server",
                    true,
                    format!(
                        "credential accepted, WebSocket open in {} ms (no hello sent; --handshake for the full exchange)",
                        t0.elapsed().as_millis()
                    ),
                );
            } else {
                match conn::handshake(&mut ws, &codec, &hello, timeout).await {
                    Ok((w, _)) => r.add(
                        "server",
                        true,
                        format!(
                            "welcomed in {} ms (protocol {}, heartbeat {} s)",
                            t0.elapsed().as_millis(),
                            w.protocol,
                            w.heartbeat_interval_secs
                        ),
                    ),
                    Err(e) => r.add("server", false, e.to_string()),
                }
            }
            let _ = ws.close(None).await;
            match date.as_deref().and_then(parse_http_date) {
                Some(server_ms) => {
                    let local = SystemClock.unix_ms();
                    let skew = local.abs_diff(server_ms);
                    // The Date header has 1 s resolution.
                    let ok = skew <= MAX_SKEW.as_millis() as u64 + 1000;
                    r.add(
                        "clock",
                        ok,
                        format!(
                            "local clock differs from the server's by about {} s (limit {} s)",
                            skew / 1000,
                            MAX_SKEW.as_secs()
                        ),
                    );
                }
                None => r.add("clock", true, "not checked: the server sent no Date header"),
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777000)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    /// The report of `dir` without network access, which must fail.
    async fn failed_report(dir: &std::path::Path) -> String {
        let r = run(
            dir.to_owned(),
            Some("x"),
            Duration::from_secs(1),
            true,
            false,
        )
        .await;
        let text = r.to_string();
        assert!(!r.passed(), "{text}");
        assert!(text.ends_with("selftest FAILED"), "{text}");
        text
    }

    #[tokio::test]
    async fn missing_identity_fails_the_report() {
        let tmp = tempfile::tempdir().unwrap();
        let text = failed_report(tmp.path()).await;
        assert!(text.contains("no identity"), "{text}");
    }

    #[tokio::test]
    async fn plain_http_to_another_host_fails_before_connecting() {
        let tmp = tempfile::tempdir().unwrap();
        let mut id = crate::identity::tests::sample();
        id.server_url = "http://192.0.2.1:3001".into();
        StateDir::open(tmp.path())
            .unwrap()
            .store_identity(&id)
            .unwrap();
        let text = failed_report(tmp.path()).await;
        assert!(text.contains("[FAIL] transport"), "{text}");
        assert!(text.contains("--insecure-http"), "{text}");
        assert!(!text.contains("] server "), "{text}");
    }
}
