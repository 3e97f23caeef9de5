//! The runners with real child processes.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rmm_proxmox::{DirectRunner, MAX_OUTPUT, RunError, Runner, SudoRunner};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn runs_argv_without_a_shell() {
    let r = DirectRunner::default();
    let out = r
        .run("echo", &args(&["$(id)", ";", "ls", "|", "*"]))
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, b"$(id) ; ls | *\n");
    let out = r.run("false", &[]).await.unwrap();
    assert_eq!(out.status, Some(1));
    let out = r
        .run("ls", &args(&["/nonexistent-rmm-test"]))
        .await
        .unwrap();
    assert!(!out.success());
    assert!(out.stderr_tail(200).contains("nonexistent-rmm-test"));
}

#[tokio::test]
async fn output_is_capped_per_stream_and_the_child_is_drained() {
    let r = DirectRunner::default();
    let out = r
        .run("head", &args(&["-c", "3000000", "/dev/zero"]))
        .await
        .unwrap();
    assert!(out.success(), "the child was not blocked on a full pipe");
    assert_eq!(out.stdout.len(), MAX_OUTPUT);
    assert!(out.stdout_truncated && !out.stderr_truncated);

    let out = r
        .run(
            "dd",
            &args(&[
                "if=/dev/zero",
                "of=/dev/stderr",
                "bs=65536",
                "count=40",
                "status=none",
            ]),
        )
        .await
        .unwrap();
    assert_eq!(out.stderr.len(), MAX_OUTPUT);
    assert!(out.stderr_truncated && out.stdout.is_empty());

    let small = DirectRunner {
        max_output: 10,
        ..DirectRunner::default()
    };
    let out = small
        .run("echo", &args(&["0123456789abcdef"]))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"0123456789");
}

#[tokio::test]
async fn input_reaches_stdin() {
    let out = DirectRunner::default()
        .run_with_input("cat", &[], b"UUID=x /mnt auto defaults 0 0\n")
        .await
        .unwrap();
    assert_eq!(out.stdout, b"UUID=x /mnt auto defaults 0 0\n");
    // a child that ignores stdin is fine too
    let out = DirectRunner::default()
        .run_with_input("true", &[], &[b'x'; 200_000])
        .await
        .unwrap();
    assert!(out.success());
}

#[tokio::test]
async fn missing_programs_and_timeouts_are_errors() {
    let err = DirectRunner::default()
        .run("rmm-no-such-program", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    let r = DirectRunner {
        timeout: Some(Duration::from_millis(200)),
        ..DirectRunner::default()
    };
    let start = Instant::now();
    let err = r.run("sleep", &args(&["10"])).await.unwrap_err();
    assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn sudo_runner_passes_n_and_the_argv() {
    // a stand-in `sudo` that prints its argv, one per line
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("sudo");
    std::fs::write(&fake, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runner = SudoRunner {
        sudo: fake.to_string_lossy().into_owned(),
        ..SudoRunner::default()
    };
    // another test thread forking while the script was open for writing
    // can make exec fail with ETXTBSY for a moment
    let mut attempt = 0;
    let out = loop {
        match runner.run("pct", &args(&["create", "9000", "a b"])).await {
            Err(RunError::Spawn { source, .. })
                if source.raw_os_error() == Some(26) && attempt < 20 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "-n\n--\npct\ncreate\n9000\na b\n"
    );
}
