//! rmm-client against the real `rmm-server` and `rmm-agent` binaries on
//! 127.0.0.1.
//!
//! The binaries are taken from the target directory this test runs from
//! (`cargo build --workspace --bins`, which `scripts/test` runs first) and
//! built with `cargo build -p rmm-server -p rmm-agent --bins` when missing.
//! `RMM_SERVER_BIN` / `RMM_AGENT_BIN` override the paths.

#![allow(clippy::unwrap_used, missing_docs)]

mod stack;

use std::time::Duration;

use rmm_client::{
    Client, CommandContext, CommandPage, CommandRequest, CommandType, EnrollmentOptions, ErrorKind,
    Phase, WaitOptions,
};
use uuid::Uuid;

use stack::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack};

fn opts(secs: u64) -> WaitOptions {
    WaitOptions {
        timeout: Some(Duration::from_secs(secs)),
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(200),
    }
}

fn req(kind: CommandType, script: &str, timeout: Option<u32>) -> CommandRequest {
    CommandRequest::builder(kind, script)
        .context(CommandContext::System)
        .timeout_secs(timeout)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_run_cancel_page_and_errors_against_the_real_server() {
    let s = Stack::start().await;
    let c = &s.client;

    // token reuse and auth errors
    let token = c.token().unwrap();
    let reused = Client::new(&s.url).unwrap().with_token(token.clone());
    assert_eq!(reused.token().as_deref(), Some(token.as_str()));
    let me = reused.agent(s.agent_id).await.unwrap();
    assert!(me.is_online(), "{me:?}");
    assert_eq!(me.name, s.agent_name);
    let bad = Client::new(&s.url).unwrap();
    let e = bad
        .login(ADMIN_EMAIL, "not the password")
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.status(), e.code()),
        (ErrorKind::Auth, Some(401), "invalid_credentials")
    );
    let e = Client::new(&s.url)
        .unwrap()
        .with_token("x.y.z")
        .agents()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);

    // run_and_wait: success, failure, timeout
    let r = c
        .run_and_wait(
            s.agent_id,
            &CommandRequest::shell("echo out; echo err >&2"),
            opts(30),
        )
        .await
        .unwrap();
    assert_eq!((r.status.as_str(), r.exit_code), ("completed", Some(0)));
    assert!(r.is_success());
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!(r.context, Some(CommandContext::System));
    assert_eq!(r.created_by, ADMIN_EMAIL);
    assert!(r.delivered_at.is_some() && r.started_at.is_some() && r.completed_at.is_some());
    let r = c
        .run_and_wait(
            s.agent_id,
            &req(CommandType::Bash, "exit 5", None),
            opts(30),
        )
        .await
        .unwrap();
    assert_eq!((r.status.as_str(), r.exit_code), ("failed", Some(5)));
    let r = c
        .run_and_wait(
            s.agent_id,
            &req(CommandType::Sh, "sleep 30", Some(1)),
            opts(30),
        )
        .await
        .unwrap();
    assert_eq!((r.status.as_str(), r.timeout_secs), ("timeout", Some(1)));

    // wait deadline
    let id = c
        .submit(s.agent_id, &req(CommandType::Sh, "sleep 20", Some(5)))
        .await
        .unwrap();
    let e = c.wait(id, opts(0)).await.unwrap_err();
    assert_eq!((e.kind(), e.code()), (ErrorKind::Timeout, "timeout"));

    // cancel: the state right after the request, then cancelled
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.command(id).await.unwrap().phase != Some(Phase::Executing) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = c.cancel(id).await.unwrap();
    assert!(after.cancel_requested_at.is_some());
    assert_eq!(c.wait(id, opts(20)).await.unwrap().status, "cancelled");
    assert_eq!(c.cancel(id).await.unwrap_err().kind(), ErrorKind::Conflict);

    // paging, newest first, without output
    let page = c
        .agent_commands(s.agent_id, CommandPage::new(Some(2), None))
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, id);
    assert!(page[0].command_text.is_empty() && page[0].stdout.is_empty());
    let older = c
        .agent_commands(s.agent_id, CommandPage::new(Some(1), Some(page[1].id)))
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_ne!(older[0].id, page[1].id);

    // not found, bad request
    let e = c
        .submit(Uuid::new_v4(), &CommandRequest::shell("true"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::NotFound, Some(404)));
    assert_eq!(
        c.command(Uuid::new_v4()).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let e = c
        .submit(s.agent_id, &CommandRequest::shell("  "))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::BadRequest, Some(422)));

    // enrollment options
    let b = c
        .create_enrollment_with(
            "client-it-beta",
            &EnrollmentOptions {
                server_url: None,
                channel: Some("beta".into()),
            },
        )
        .await
        .unwrap();
    assert!(b.command.contains(&b.token));
    let e = c.create_enrollment(&s.agent_name, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let e = c.create_enrollment("Not A Label", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);

    // a transport error names its cause
    let e = Client::new("http://127.0.0.1:9")
        .unwrap()
        .login(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}
