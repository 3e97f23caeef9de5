//! Running commands as real child processes.
//!
//! [`ProcessRunner::execute`] writes the script to a private temp file
//! (never argv: scripts may be several MiB), starts the interpreter in a
//! new process group, streams stdout/stderr as capped UTF-8 text to a sink
//! while the command runs, and enforces the timeout and cancellation by
//! signalling the whole group: SIGTERM, a grace period, then SIGKILL for
//! whatever is left, so grandchildren die with their parent.
//!
//! | `command_type` | program |
//! |---|---|
//! | `shell`, `sh` | `/bin/sh <file>` |
//! | `bash` | `bash <file>` |
//! | `python` | `python3 <file>` |
//! | `powershell` | `pwsh -NoLogo -NoProfile -NonInteractive -File <file>` |
//!
//! `user_session` commands run as the active local session's user through
//! `setpriv --reuid --regid --init-groups` (util-linux), with a clean
//! environment (HOME, USER, LOGNAME, SHELL, PATH, XDG_RUNTIME_DIR,
//! DBUS_SESSION_BUS_ADDRESS). With no such session the command fails with
//! `no active user session` and nothing is started.
//!
//! After the main process exits, output is still read until the pipes
//! close or [`RunnerConfig::drain_after_exit`] passes, so a background job
//! that keeps the pipe open cannot hold the command open forever.

pub mod output;
pub mod session;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmm_core::io::{Clock, CommandRunner};

use crate::clock::SystemClock;
use rmm_core::protocol::{
    CommandContext, CommandOutcome, CommandResult, CommandType, OutputStream, RunCommand,
};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

use self::output::{OutputCap, Utf8Decoder};
use self::session::UserSession;

/// How the runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Time between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace: Duration,
    /// How long output is still read after the main process exited.
    pub drain_after_exit: Duration,
    /// Where per-command temp directories holding the script are made.
    pub scratch_dir: PathBuf,
    /// The `loginctl` used to find the active session.
    pub loginctl: PathBuf,
    /// The `setpriv` used to switch to the session user.
    pub setpriv: PathBuf,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            kill_grace: Duration::from_secs(5),
            drain_after_exit: Duration::from_secs(2),
            scratch_dir: std::env::temp_dir(),
            loginctl: PathBuf::from("loginctl"),
            setpriv: PathBuf::from("setpriv"),
        }
    }
}

/// The sending half of a cancellation signal.
#[derive(Debug)]
pub struct CancelHandle(watch::Sender<bool>);

/// The receiving half of a cancellation signal.
#[derive(Debug, Clone)]
pub struct CancelSignal(watch::Receiver<bool>);

/// A new cancellation pair.
pub fn cancel_pair() -> (CancelHandle, CancelSignal) {
    let (tx, rx) = watch::channel(false);
    (CancelHandle(tx), CancelSignal(rx))
}

impl CancelHandle {
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl CancelSignal {
    /// A signal that never fires.
    pub fn never() -> Self {
        static NEVER: std::sync::OnceLock<watch::Sender<bool>> = std::sync::OnceLock::new();
        CancelSignal(NEVER.get_or_init(|| watch::channel(false).0).subscribe())
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancellation is requested (never, if the handle is
    /// dropped without cancelling).
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs commands as child processes. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct ProcessRunner {
    config: RunnerConfig,
}

/// Searches `PATH` for an executable named `name`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The program, leading arguments and script-file extension for a type.
fn interpreter(
    kind: CommandType,
) -> Result<(PathBuf, &'static [&'static str], &'static str), String> {
    let (name, args, ext, what): (&str, &'static [&'static str], &str, &str) = match kind {
        CommandType::Shell | CommandType::Sh => ("/bin/sh", &[], "sh", "sh"),
        CommandType::Bash => ("bash", &[], "sh", "bash"),
        CommandType::Python => ("python3", &[], "py", "python"),
        CommandType::Powershell => (
            "pwsh",
            &["-NoLogo", "-NoProfile", "-NonInteractive", "-File"],
            "ps1",
            "powershell",
        ),
    };
    match find_in_path(name) {
        Some(p) => Ok((p, args, ext)),
        None => Err(format!(
            "{what} is not installed ({name} not found in PATH)"
        )),
    }
}

fn now_ms() -> u64 {
    SystemClock.unix_ms()
}

fn failed(cmd: &RunCommand, error: String) -> CommandResult {
    CommandResult {
        command_id: cmd.command_id,
        outcome: CommandOutcome::Failed,
        exit_code: None,
        signal: None,
        error: Some(error),
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
        started_at_ms: None,
        finished_at_ms: now_ms(),
    }
}

/// Kills the process group when dropped while armed (the future running
/// the command was dropped).
struct GroupGuard {
    pgid: Option<Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok()
}

/// Environment variables never passed to commands (enrollment tokens and
/// agent settings).
pub(crate) fn is_agent_private(key: &std::ffi::OsStr) -> bool {
    key.to_string_lossy().starts_with("RMM_")
}

impl ProcessRunner {
    /// A runner with the given configuration.
    pub fn new(config: RunnerConfig) -> Self {
        ProcessRunner { config }
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs `cmd` to its end, its timeout, or `cancel`; passes each piece of
    /// output (valid UTF-8, at most `max_output_bytes` per stream in total)
    /// to `sink` as it appears, and returns the final result. Failures to
    /// start (no interpreter, no session, no temp file) are `failed`
    /// results with `error` set, never panics.
    pub async fn execute(
        &self,
        cmd: &RunCommand,
        max_output_bytes: u64,
        sink: &mut (dyn FnMut(OutputStream, &str) + Send),
        mut cancel: CancelSignal,
    ) -> CommandResult {
        if cancel.is_cancelled() {
            let mut r = failed(cmd, "cancelled before it started".into());
            r.outcome = CommandOutcome::Cancelled;
            return r;
        }
        let (program, lead_args, ext) = match interpreter(cmd.command_type) {
            Ok(x) => x,
            Err(e) => return failed(cmd, e),
        };
        let session = match cmd.context {
            CommandContext::System => None,
            CommandContext::UserSession => {
                match session::active_session(&self.config.loginctl).await {
                    Ok(s) => Some(s),
                    Err(e) => return failed(cmd, e.to_string()),
                }
            }
        };
        let (_scratch, script) = match self.write_script(cmd, ext, session.as_ref()) {
            Ok(x) => x,
            Err(e) => return failed(cmd, format!("cannot write the script to a temp file: {e}")),
        };
        let mut command = match session.as_ref().and_then(UserSession::setpriv_args) {
            Some(switch) => {
                let mut c = tokio::process::Command::new(&self.config.setpriv);
                c.args(switch).arg(&program);
                c
            }
            None => tokio::process::Command::new(&program),
        };
        command.args(lead_args).arg(&script);
        match &session {
            None => {
                for (k, _) in std::env::vars_os() {
                    if is_agent_private(&k) {
                        command.env_remove(k);
                    }
                }
                command.current_dir("/");
            }
            Some(s) => {
                command.env_clear().envs(s.env()).current_dir(s.workdir());
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return failed(cmd, format!("cannot start {}: {e}", program.display())),
        };
        let started_at_ms = now_ms();
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw);
        let mut guard = GroupGuard { pgid };
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return failed(cmd, "child has no output pipes".into());
        };

        let mut out_dec = Utf8Decoder::default();
        let mut err_dec = Utf8Decoder::default();
        let mut out_cap = OutputCap::new(max_output_bytes);
        let mut err_cap = OutputCap::new(max_output_bytes);
        let mut out_buf = vec![0u8; 64 * 1024];
        let mut err_buf = vec![0u8; 64 * 1024];
        let mut text = String::new();
        let (mut out_open, mut err_open) = (true, true);
        let mut status: Option<std::process::ExitStatus> = None;
        let mut wait_error: Option<String> = None;
        let deadline = cmd
            .timeout_secs
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let mut stopped: Option<CommandOutcome> = None;
        let mut kill_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        let far = Instant::now() + Duration::from_secs(100 * 365 * 86400);

        let mut emit = |stream: OutputStream,
                        dec: &mut Utf8Decoder,
                        cap: &mut OutputCap,
                        bytes: &[u8],
                        end: bool,
                        text: &mut String| {
            text.clear();
            dec.push(bytes, text);
            if end {
                dec.finish(text);
            }
            let admitted = cap.admit(text);
            if !admitted.is_empty() {
                sink(stream, admitted);
            }
        };

        loop {
            if !out_open && !err_open && status.is_some() {
                break;
            }
            tokio::select! {
                r = stdout.read(&mut out_buf), if out_open => match r {
                    Ok(0) | Err(_) => {
                        out_open = false;
                        emit(OutputStream::Stdout, &mut out_dec, &mut out_cap, &[], true, &mut text);
                    }
                    Ok(n) => emit(OutputStream::Stdout, &mut out_dec, &mut out_cap, &out_buf[..n], false, &mut text),
                },
                r = stderr.read(&mut err_buf), if err_open => match r {
                    Ok(0) | Err(_) => {
                        err_open = false;
                        emit(OutputStream::Stderr, &mut err_dec, &mut err_cap, &[], true, &mut text);
                    }
                    Ok(n) => emit(OutputStream::Stderr, &mut err_dec, &mut err_cap, &err_buf[..n], false, &mut text),
                },
                r = child.wait(), if status.is_none() => {
                    match r {
                        Ok(st) => status = Some(st),
                        Err(e) => {
                            wait_error = Some(format!("cannot wait for the process: {e}"));
                            status = Some(std::process::ExitStatus::from_raw(0));
                        }
                    }
                    drain_until = Some(Instant::now() + self.config.drain_after_exit);
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stopped.is_none() => {
                    stopped = Some(CommandOutcome::Timeout);
                    kill_at = Some(self.terminate(pgid));
                }
                _ = cancel.cancelled(), if stopped.is_none() => {
                    stopped = Some(CommandOutcome::Cancelled);
                    kill_at = Some(self.terminate(pgid));
                }
                _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    if let Some(g) = pgid { let _ = killpg(g, Signal::SIGKILL); }
                    kill_at = None;
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() && stopped.is_none() => {
                    break;
                }
            }
        }

        if stopped.is_some() {
            // The main process is gone; give the rest of the group what is
            // left of the grace period, then SIGKILL whatever remains.
            if let Some(g) = pgid {
                let until = kill_at.unwrap_or_else(Instant::now);
                while group_alive(g) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = killpg(g, Signal::SIGKILL);
            }
        }
        guard.pgid = None;
        let status = status.unwrap_or_else(|| std::process::ExitStatus::from_raw(0));
        let exit_code = status.code();
        let signal = status.signal();
        let (outcome, error) = match stopped {
            Some(CommandOutcome::Timeout) => (
                CommandOutcome::Timeout,
                Some(format!(
                    "timed out after {} s; the process group was killed",
                    cmd.timeout_secs.unwrap_or(0)
                )),
            ),
            Some(other) => (
                other,
                Some("cancelled; the process group was killed".into()),
            ),
            None if wait_error.is_some() => (CommandOutcome::Failed, wait_error),
            None if exit_code == Some(0) => (CommandOutcome::Completed, None),
            None => (CommandOutcome::Failed, None),
        };
        CommandResult {
            command_id: cmd.command_id,
            outcome,
            exit_code,
            signal,
            error,
            stdout_bytes: out_cap.len(),
            stderr_bytes: err_cap.len(),
            stdout_truncated: out_cap.truncated(),
            stderr_truncated: err_cap.truncated(),
            started_at_ms: Some(started_at_ms),
            finished_at_ms: now_ms(),
        }
    }

    /// SIGTERM to the group; returns when SIGKILL is due.
    fn terminate(&self, pgid: Option<Pid>) -> Instant {
        if let Some(g) = pgid {
            let _ = killpg(g, Signal::SIGTERM);
        }
        Instant::now() + self.config.kill_grace
    }

    /// Writes the script into a fresh private temp dir (0700, file 0600),
    /// owned by the session user when the command runs as one.
    fn write_script(
        &self,
        cmd: &RunCommand,
        ext: &str,
        session: Option<&UserSession>,
    ) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::Builder::new()
            .prefix("rmm-cmd-")
            .tempdir_in(&self.config.scratch_dir)?;
        let path = dir.path().join(format!("script.{ext}"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(cmd.command.as_bytes())?;
        drop(f);
        if let Some(s) = session
            && s.uid != nix::unistd::geteuid().as_raw()
        {
            std::os::unix::fs::chown(dir.path(), Some(s.uid), Some(s.gid))?;
            std::os::unix::fs::chown(&path, Some(s.uid), Some(s.gid))?;
        }
        Ok((dir, path))
    }
}

impl CommandRunner for ProcessRunner {
    /// Runs with the default output cap (16 MiB per stream). Dropping the
    /// future SIGKILLs the command's process group at once; use
    /// [`ProcessRunner::execute`] with a [`CancelSignal`] for the graceful
    /// SIGTERM-then-SIGKILL stop and a `cancelled` result.
    fn run<'a>(
        &'a self,
        cmd: &'a RunCommand,
        sink: &'a mut (dyn FnMut(OutputStream, &str) + Send),
    ) -> impl std::future::Future<Output = CommandResult> + Send + 'a {
        let cap = rmm_core::protocol::AgentSettings::default().max_output_bytes;
        self.execute(cmd, cap, sink, CancelSignal::never())
    }
}

#[cfg(test)]
mod tests;
