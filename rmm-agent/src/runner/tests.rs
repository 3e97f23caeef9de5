//! Runner tests with real interpreters and real process groups.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmm_core::protocol::{CommandContext, CommandOutcome, CommandType, OutputStream, RunCommand};
use uuid::Uuid;

use super::*;

#[derive(Default, Clone)]
struct Captured {
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    chunks: Arc<Mutex<usize>>,
}

impl Captured {
    fn sink(&self) -> impl FnMut(OutputStream, &str) + Send + 'static {
        let me = self.clone();
        move |stream, text| {
            assert!(!text.is_empty());
            *me.chunks.lock().unwrap() += 1;
            match stream {
                OutputStream::Stdout => me.stdout.lock().unwrap().push_str(text),
                OutputStream::Stderr => me.stderr.lock().unwrap().push_str(text),
            }
        }
    }
    fn out(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }
    fn err(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

fn cmd(kind: CommandType, script: &str) -> RunCommand {
    RunCommand {
        command_id: Uuid::new_v4(),
        command_type: kind,
        command: script.into(),
        context: CommandContext::System,
        timeout_secs: None,
    }
}

fn runner() -> ProcessRunner {
    ProcessRunner::new(RunnerConfig {
        kill_grace: Duration::from_millis(300),
        ..RunnerConfig::default()
    })
}

async fn run(r: &ProcessRunner, c: &RunCommand, cap: u64) -> (CommandResult, Captured) {
    let cap_out = Captured::default();
    let mut sink = cap_out.sink();
    let res = r.execute(c, cap, &mut sink, CancelSignal::never()).await;
    (res, cap_out)
}

fn pid_gone(pid: i32) -> bool {
    // Gone, or a zombie waiting for a reaper that is not us.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[tokio::test]
async fn sh_exit_codes_and_streams() {
    let r = runner();
    let (res, c) = run(
        &r,
        &cmd(CommandType::Sh, "echo hi; echo oops >&2; exit 3"),
        1 << 20,
    )
    .await;
    assert_eq!(res.outcome, CommandOutcome::Failed);
    assert_eq!(res.exit_code, Some(3));
    assert_eq!((c.out(), c.err()), ("hi\n".into(), "oops\n".into()));
    assert_eq!((res.stdout_bytes, res.stderr_bytes), (3, 5));
    assert!(res.started_at_ms.is_some() && res.finished_at_ms >= res.started_at_ms.unwrap());

    let (res, c) = run(&r, &cmd(CommandType::Shell, "printf 'ok'"), 1 << 20).await;
    assert_eq!(
        (res.outcome, res.exit_code, c.out()),
        (CommandOutcome::Completed, Some(0), "ok".into())
    );

    let (res, _) = run(&r, &cmd(CommandType::Sh, "kill -9 $$"), 1 << 20).await;
    assert_eq!(
        (res.outcome, res.exit_code, res.signal),
        (CommandOutcome::Failed, None, Some(9))
    );
}

#[tokio::test]
async fn bash_and_python_run_their_own_syntax() {
    let r = runner();
    let (res, c) = run(
        &r,
        &cmd(
            CommandType::Bash,
            "a=(x y z); [[ ${#a[@]} == 3 ]] && echo \"bash ${a[1]}\"",
        ),
        1 << 20,
    )
    .await;
    assert_eq!(
        (res.outcome, c.out()),
        (CommandOutcome::Completed, "bash y\n".into())
    );
    let (res, c) = run(
        &r,
        &cmd(
            CommandType::Python,
            "import sys\nprint(sum(range(5)))\nsys.exit(4)\n",
        ),
        1 << 20,
    )
    .await;
    assert_eq!(
        (res.outcome, res.exit_code, c.out()),
        (CommandOutcome::Failed, Some(4), "10\n".into())
    );
}

#[tokio::test]
async fn powershell_missing_is_a_clear_failure() {
    if find_in_path("pwsh").is_some() {
        eprintln!("pwsh is installed here; the missing-interpreter path is not exercised");
        return;
    }
    let (res, c) = run(
        &runner(),
        &cmd(CommandType::Powershell, "Write-Output 1"),
        1 << 20,
    )
    .await;
    assert_eq!(res.outcome, CommandOutcome::Failed);
    assert_eq!(res.started_at_ms, None);
    let err = res.error.unwrap();
    assert!(err.starts_with("powershell is not installed"), "{err}");
    assert!(c.out().is_empty());
}

#[tokio::test]
async fn five_mib_script_runs_whole() {
    let mut script = String::with_capacity(6 << 20);
    let filler = format!(": {}\n", "x".repeat(100));
    while script.len() < 5 << 20 {
        script.push_str(&filler);
    }
    script.push_str("echo \"end of $(wc -c < \"$0\") byte script\"\n");
    let c = cmd(CommandType::Sh, &script);
    let (res, out) = run(&runner(), &c, 1 << 20).await;
    assert_eq!(
        res.outcome,
        CommandOutcome::Completed,
        "{:?} {}",
        res,
        out.err()
    );
    assert_eq!(out.out(), format!("end of {} byte script\n", script.len()));
}

#[tokio::test]
async fn twenty_mib_output_is_capped_and_flagged() {
    let cap = 16 * 1024 * 1024;
    let (res, c) = run(
        &runner(),
        &cmd(
            CommandType::Sh,
            "head -c 20971520 /dev/zero | tr '\\0' a; echo tail >&2",
        ),
        cap,
    )
    .await;
    assert_eq!(res.outcome, CommandOutcome::Completed);
    assert_eq!(res.stdout_bytes, cap);
    assert!(res.stdout_truncated);
    assert!(!res.stderr_truncated);
    let out = c.out();
    assert_eq!(out.len() as u64, cap);
    assert!(out.bytes().all(|b| b == b'a'));
    assert_eq!(c.err(), "tail\n");
    assert!(
        *c.chunks.lock().unwrap() > 1,
        "output was not streamed in chunks"
    );
}

#[tokio::test]
async fn invalid_utf8_becomes_replacement_character() {
    let (res, c) = run(
        &runner(),
        &cmd(CommandType::Sh, "printf 'a\\377b\\303\\251'"),
        1 << 20,
    )
    .await;
    assert_eq!(res.outcome, CommandOutcome::Completed);
    assert_eq!(c.out(), "a\u{FFFD}bé");
    assert_eq!(res.stdout_bytes, c.out().len() as u64);
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_including_a_grandchild() {
    // The grandchild ignores SIGTERM, so only the SIGKILL after the grace
    // period can end it.
    let mut c = cmd(
        CommandType::Sh,
        "sh -c 'trap \"\" TERM; exec sleep 300' & echo \"gc=$!\"; sleep 300",
    );
    c.timeout_secs = Some(1);
    let t0 = std::time::Instant::now();
    let (res, out) = run(&runner(), &c, 1 << 20).await;
    let took = t0.elapsed();
    assert_eq!(res.outcome, CommandOutcome::Timeout, "{res:?}");
    assert!(res.error.as_deref().unwrap_or("").contains("timed out"));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let gc: i32 = out
        .out()
        .trim()
        .strip_prefix("gc=")
        .and_then(|s| s.parse().ok())
        .expect("grandchild pid printed");
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while !pid_gone(gc) && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pid_gone(gc), "grandchild {gc} survived the timeout");
}

#[tokio::test]
async fn cancel_stops_a_running_command() {
    let r = runner();
    let c = cmd(CommandType::Sh, "echo started; sleep 300 & wait");
    let captured = Captured::default();
    let mut sink = captured.sink();
    let (handle, signal) = cancel_pair();
    let watcher = {
        let captured = captured.clone();
        async move {
            while !captured.out().contains("started") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            handle.cancel();
            handle
        }
    };
    let t0 = std::time::Instant::now();
    let (res, _h) = tokio::join!(r.execute(&c, 1 << 20, &mut sink, signal), watcher);
    assert_eq!(res.outcome, CommandOutcome::Cancelled, "{res:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(captured.out(), "started\n");

    // Cancelled before it started: nothing runs.
    let (handle, signal) = cancel_pair();
    handle.cancel();
    let marker = tempfile::tempdir().unwrap();
    let c = cmd(
        CommandType::Sh,
        &format!("touch {}/ran", marker.path().display()),
    );
    let res = r.execute(&c, 1 << 20, &mut |_, _| {}, signal).await;
    assert_eq!(
        (res.outcome, res.started_at_ms),
        (CommandOutcome::Cancelled, None)
    );
    assert!(!marker.path().join("ran").exists());
}

#[tokio::test]
async fn dropping_the_trait_future_kills_the_group() {
    let r = runner();
    let c = cmd(CommandType::Sh, "echo \"pid=$$\"; sleep 300");
    let captured = Captured::default();
    let mut sink = captured.sink();
    {
        let fut = CommandRunner::run(&r, &c, &mut sink);
        let _ = tokio::time::timeout(Duration::from_millis(500), fut).await;
    }
    let pid: i32 = captured
        .out()
        .trim()
        .strip_prefix("pid=")
        .and_then(|s| s.parse().ok())
        .expect("pid printed");
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while !pid_gone(pid) && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pid_gone(pid));
}

fn fake_loginctl(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("loginctl");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn user_session_without_a_session_fails_and_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let r = ProcessRunner::new(RunnerConfig {
        loginctl: fake_loginctl(tmp.path(), "exit 0"),
        ..RunnerConfig::default()
    });
    let mut c = cmd(
        CommandType::Sh,
        &format!("touch {}/ran", tmp.path().display()),
    );
    c.context = CommandContext::UserSession;
    let (res, _) = run(&r, &c, 1 << 20).await;
    assert_eq!(res.outcome, CommandOutcome::Failed);
    assert_eq!(res.started_at_ms, None);
    assert!(res.error.unwrap().starts_with("no active user session"));
    assert!(!tmp.path().join("ran").exists(), "ran without a session");
}

#[tokio::test]
async fn user_session_runs_as_the_session_user() {
    if !nix::unistd::geteuid().is_root() || find_in_path("setpriv").is_none() {
        eprintln!("needs root and setpriv; not exercised here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let loginctl = fake_loginctl(
        tmp.path(),
        r#"case "$1" in list-sessions) echo "5 65534 nobody seat0 tty1";; show-session) printf 'State=active\nRemote=no\nClass=user\nName=nobody\nUser=65534\n';; esac"#,
    );
    let r = ProcessRunner::new(RunnerConfig {
        loginctl,
        ..RunnerConfig::default()
    });
    let mut c = cmd(
        CommandType::Sh,
        "echo \"$(id -u) $(id -g) $USER $XDG_RUNTIME_DIR $DBUS_SESSION_BUS_ADDRESS\"",
    );
    c.context = CommandContext::UserSession;
    let (res, out) = run(&r, &c, 1 << 20).await;
    assert_eq!(
        res.outcome,
        CommandOutcome::Completed,
        "{res:?} {}",
        out.err()
    );
    let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534))
        .unwrap()
        .unwrap()
        .gid;
    assert_eq!(
        out.out(),
        format!("65534 {gid} nobody /run/user/65534 unix:path=/run/user/65534/bus\n")
    );
}

#[tokio::test]
async fn a_background_job_holding_the_pipe_does_not_hold_the_command() {
    let t0 = std::time::Instant::now();
    let (res, c) = run(
        &runner(),
        &cmd(CommandType::Sh, "sleep 30 & echo \"bg=$!\""),
        1 << 20,
    )
    .await;
    assert_eq!(res.outcome, CommandOutcome::Completed);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let bg: i32 = c
        .out()
        .trim()
        .strip_prefix("bg=")
        .and_then(|s| s.parse().ok())
        .expect("pid printed");
    // Left running, as in a terminal; clean it up.
    let _ = nix::sys::signal::kill(Pid::from_raw(bg), Signal::SIGKILL);
}
