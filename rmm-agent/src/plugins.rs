//! Inventory plugins (SPEC §8): executables in the plugins directory
//! (default `<state-dir>/plugins`) print one JSON value on stdout. The
//! agent runs each on a schedule with a timeout and sends an `inventory`
//! message only when the result changed since the last one it queued on
//! the current connection's history; a plugin that fails (non-zero exit,
//! timeout, invalid JSON, too much output) reports `"unknown"` and the
//! error. After a reconnect the latest result of every plugin is sent once
//! more, so a result queued on a connection that dropped is not lost.
//!
//! A plugin runs as the agent's user, so the directory and the files must
//! not be writable by group or others, and must be owned by the agent's
//! user or root; anything else is skipped with a warning.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmm_core::io::Clock;

use crate::clock::SystemClock;
use rmm_core::protocol::{Inventory, Message};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// Largest stdout accepted from a plugin.
pub const MAX_PLUGIN_OUTPUT: usize = 256 * 1024;

/// Plugin settings.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    /// The directory (`None`: `<state-dir>/plugins`).
    pub dir: Option<PathBuf>,
    /// Time between runs.
    pub interval: Duration,
    /// Per-plugin timeout.
    pub timeout: Duration,
}

impl Default for PluginOptions {
    fn default() -> Self {
        PluginOptions {
            dir: None,
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
        }
    }
}

struct Entry {
    version: u64,
    inventory: Inventory,
}

/// The plugin scheduler and its latest results.
pub struct Plugins {
    opts: PluginOptions,
    latest: Mutex<BTreeMap<String, Entry>>,
    version: Mutex<u64>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn safe_perms(meta: &std::fs::Metadata) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    meta.mode() & 0o022 == 0 && (meta.uid() == me || meta.uid() == 0)
}

impl Plugins {
    /// A scheduler notifying `changed` when a result changes.
    pub fn new(opts: PluginOptions, changed: Arc<Notify>) -> Arc<Self> {
        Arc::new(Plugins {
            opts,
            latest: Mutex::new(BTreeMap::new()),
            version: Mutex::new(0),
            changed,
        })
    }

    fn latest(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs every plugin every interval, forever.
    pub async fn run_forever(self: Arc<Self>) {
        loop {
            self.run_once().await;
            tokio::time::sleep(self.opts.interval).await;
        }
    }

    /// The executable plugins, sorted by name.
    pub fn discover(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.opts.dir else {
            return Vec::new();
        };
        let Ok(meta) = std::fs::metadata(dir) else {
            return Vec::new();
        };
        if !safe_perms(&meta) {
            tracing::warn!(dir = %dir.display(), "plugins directory is writable by group/others or owned by another user; plugins skipped");
            return Vec::new();
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let p = e.path();
                let m = std::fs::metadata(&p).ok()?;
                if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
                    return None;
                }
                if !safe_perms(&m) {
                    tracing::warn!(plugin = %p.display(), "plugin is writable by group/others or owned by another user; skipped");
                    return None;
                }
                Some(p)
            })
            .collect();
        v.sort();
        v
    }

    /// Runs every plugin once and records changed results.
    pub async fn run_once(&self) {
        for path in self.discover() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (result, error) = match run_plugin(&path, self.opts.timeout).await {
                Ok(v) => (v, None),
                Err(e) => (serde_json::Value::String("unknown".into()), Some(e)),
            };
            self.record(name, result, error);
        }
    }

    fn record(&self, name: String, result: serde_json::Value, error: Option<String>) {
        let mut latest = self.latest();
        if let Some(e) = latest.get(&name)
            && e.inventory.result == result
            && e.inventory.error == error
        {
            return;
        }
        let version = {
            let mut v = self.version.lock().unwrap_or_else(|p| p.into_inner());
            *v += 1;
            *v
        };
        latest.insert(
            name.clone(),
            Entry {
                version,
                inventory: Inventory {
                    plugin: name,
                    result,
                    error,
                    collected_at_ms: SystemClock.unix_ms(),
                },
            },
        );
        drop(latest);
        self.changed.notify_one();
    }

    /// The next result not yet sent on a connection whose sent versions are
    /// in `sent`.
    pub fn next_unsent(&self, sent: &mut HashMap<String, u64>) -> Option<Message> {
        let latest = self.latest();
        for (name, e) in latest.iter() {
            if sent.get(name).is_none_or(|v| *v < e.version) {
                sent.insert(name.clone(), e.version);
                return Some(Message::Inventory(e.inventory.clone()));
            }
        }
        None
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes (the rest is
/// drained so the writer never blocks).
async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
        }
    }
}

/// Runs one plugin: its stdout must be one JSON value.
pub async fn run_plugin(path: &Path, timeout: Duration) -> Result<serde_json::Value, String> {
    let mut child = tokio::process::Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .current_dir("/")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("no output pipes".into());
    };
    let work = async {
        let (out, err, st) = tokio::join!(
            read_capped(stdout, MAX_PLUGIN_OUTPUT + 1),
            read_capped(stderr, 4096),
            child.wait()
        );
        Ok::<_, String>((st.map_err(|e| e.to_string())?, out, err))
    };
    let outcome = tokio::time::timeout(timeout, work).await;
    if let Some(g) = pgid {
        let _ = killpg(g, Signal::SIGKILL);
    }
    let (status, out, err) =
        outcome.map_err(|_| format!("timed out after {} s", timeout.as_secs_f64()))??;
    if out.len() > MAX_PLUGIN_OUTPUT {
        return Err(format!("printed more than {MAX_PLUGIN_OUTPUT} bytes"));
    }
    if !status.success() {
        let e = String::from_utf8_lossy(&err);
        let first = e.lines().next().unwrap_or("").trim();
        return Err(format!(
            "exited with {status}{}{first}",
            if first.is_empty() { "" } else { ": " }
        ));
    }
    serde_json::from_slice(&out).map_err(|e| format!("invalid JSON output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inventories(p: &Plugins, sent: &mut HashMap<String, u64>) -> Vec<Inventory> {
        let mut v = Vec::new();
        while let Some(Message::Inventory(i)) = p.next_unsent(sent) {
            v.push(i);
        }
        v
    }

    #[tokio::test]
    async fn plugins_report_json_unknown_and_only_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let state = tmp.path().join("disk");
        std::fs::write(&state, "42").unwrap();
        plugin(
            &dir,
            "disk",
            &format!("echo '{{\"free\": '$(cat {})'}}'", state.display()),
        );
        plugin(&dir, "broken", "echo boom >&2; exit 3");
        plugin(&dir, "garbage", "echo not json");
        plugin(&dir, "slow", "sleep 30");
        std::fs::write(dir.join("not-executable"), "x").unwrap();
        let p = Plugins::new(
            PluginOptions {
                dir: Some(dir.clone()),
                interval: Duration::from_secs(3600),
                timeout: Duration::from_millis(500),
            },
            Arc::new(Notify::new()),
        );
        p.run_once().await;
        let mut sent = HashMap::new();
        let got = inventories(&p, &mut sent);
        let by: HashMap<_, _> = got.iter().map(|i| (i.plugin.as_str(), i)).collect();
        assert_eq!(by.len(), 4, "{got:?}");
        assert_eq!(by["disk"].result, serde_json::json!({"free": 42}));
        assert_eq!(by["disk"].error, None);
        assert_eq!(by["broken"].result, serde_json::json!("unknown"));
        assert!(by["broken"].error.as_deref().unwrap().contains("boom"));
        assert!(
            by["garbage"]
                .error
                .as_deref()
                .unwrap()
                .contains("invalid JSON")
        );
        assert!(by["slow"].error.as_deref().unwrap().contains("timed out"));

        // Nothing changed: nothing to send.
        p.run_once().await;
        assert!(inventories(&p, &mut sent).is_empty());
        // One result changed: only it is sent.
        std::fs::write(&state, "7").unwrap();
        p.run_once().await;
        let got = inventories(&p, &mut sent);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].result, serde_json::json!({"free": 7}));
        // A new connection gets every latest result once.
        assert_eq!(inventories(&p, &mut HashMap::new()).len(), 4);
    }

    #[tokio::test]
    async fn unsafe_plugin_dirs_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).unwrap();
        plugin(&dir, "x", "echo 1");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = Plugins::new(
            PluginOptions {
                dir: Some(dir.clone()),
                ..PluginOptions::default()
            },
            Arc::new(Notify::new()),
        );
        assert!(p.discover().is_empty());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(p.discover().len(), 1);
        std::fs::set_permissions(dir.join("x"), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(p.discover().is_empty());
    }
}
