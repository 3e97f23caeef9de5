//! wait_task: OK, WARNINGS, failure with log tail, not-yet-visible tasks,
//! deadline, the UPID's own node, cancellation.

use std::sync::Arc;
use std::time::Duration;

use rmm_proxmox::mock::TaskScript;
use rmm_proxmox::{Client, Error, TaskState, TokioClock, Upid, WaitOptions};

use crate::common;

#[tokio::test]
async fn ok_and_warnings() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let up = c.snapshot_lxc("pve1", 101, "a1", None).await.unwrap();
    let done = c.wait_task(&up, WaitOptions::default()).await.unwrap();
    assert_eq!((done.warnings, done.exitstatus.as_str()), (0, "OK"));

    mock.next_task(TaskScript::warnings(2));
    let up = c
        .delete_lxc_snapshot("pve1", 101, "a1", false)
        .await
        .unwrap();
    let done = c.wait_task(&up, WaitOptions::default()).await.unwrap();
    assert_eq!(
        (done.warnings, done.exitstatus.as_str()),
        (2, "WARNINGS: 2")
    );
}

#[tokio::test]
async fn failure_carries_the_log_tail() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let status = "command 'lxc-start -F -n 101' failed: exit code 1";
    mock.next_task(TaskScript::failing(status, 45));
    let up = c.stop_lxc("pve1", 101).await.unwrap();
    let err = c.wait_task(&up, WaitOptions::default()).await.unwrap_err();
    match &err {
        Error::TaskFailed {
            upid,
            exitstatus,
            log_tail,
        } => {
            assert_eq!(upid, &up);
            assert_eq!(exitstatus, status);
            assert_eq!(log_tail.len(), 20);
            assert_eq!(log_tail.first().unwrap(), "log line 27");
            assert_eq!(log_tail.last().unwrap(), &format!("TASK ERROR: {status}"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with(&format!("task {up} failed: ")),
        "{err}"
    );
}

#[tokio::test]
async fn not_yet_visible_tasks_are_tolerated_briefly() {
    let mock = common::mock().await;
    let (c, clock) = common::client(&mock);
    mock.next_task(TaskScript {
        invisible_polls: 3,
        ..TaskScript::default()
    });
    let up = c.start_lxc("pve1", 100).await.unwrap();
    c.wait_task(&up, WaitOptions::default()).await.unwrap();
    assert!(clock.elapsed() < Duration::from_secs(10));

    // a task that never shows up is an error after the grace period
    let ghost = Upid::new("pve1", 1, 2, 3, "vzstart", "100", mock.token_id()).unwrap();
    let before = clock.elapsed();
    let err = c
        .wait_task(&ghost, WaitOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let waited = clock.elapsed() - before;
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
}

#[tokio::test]
async fn deadline_is_a_timeout_error_with_backoff() {
    let mock = common::mock().await;
    let (c, clock) = common::client(&mock);
    mock.next_task(TaskScript {
        running_polls: u32::MAX,
        ..TaskScript::default()
    });
    let up = c.stop_lxc("pve1", 101).await.unwrap();
    let err = c
        .wait_task(&up, WaitOptions::with_timeout(Duration::from_secs(60)))
        .await
        .unwrap_err();
    match &err {
        Error::TaskTimeout {
            upid,
            waited,
            last_state,
        } => {
            assert_eq!(upid, &up);
            assert_eq!(*waited, Duration::from_secs(60));
            assert_eq!(*last_state, Some(TaskState::Running));
        }
        other => panic!("{other:?}"),
    }
    let sleeps = clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_millis(500));
    assert!(sleeps.windows(2).take(5).all(|w| w[1] > w[0]), "{sleeps:?}");
    assert!(sleeps.iter().all(|s| *s <= Duration::from_secs(5)));
    assert_eq!(
        clock.elapsed(),
        Duration::from_secs(60),
        "never sleeps past the deadline"
    );
}

#[tokio::test]
async fn polls_the_upids_own_node() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let other = Upid::new("pve2", 77, 88, 99, "vzdump", "", mock.token_id()).unwrap();
    let err = c
        .wait_task(&other, WaitOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NodeUnreachable { node: Some(n), .. } if n == "pve2"),
        "{err:?}"
    );
    let polled: Vec<_> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(polled, vec![format!("/nodes/pve2/tasks/{other}/status")]);
}

#[tokio::test]
async fn waiting_is_cancellation_safe() {
    let mock = common::mock().await;
    let c = Client::new(&mock.config())
        .unwrap()
        .with_clock(Arc::new(TokioClock));
    mock.next_task(TaskScript {
        running_polls: 4,
        ..TaskScript::default()
    });
    let up = c.stop_lxc("pve1", 101).await.unwrap();
    let opts = WaitOptions {
        initial_interval: Duration::from_millis(40),
        max_interval: Duration::from_millis(40),
        ..WaitOptions::default()
    };
    // give up after the first poll or two
    let cancelled = tokio::time::timeout(Duration::from_millis(60), c.wait_task(&up, opts)).await;
    assert!(
        cancelled.is_err(),
        "still running, so the timeout fires first"
    );
    // waiting again later works: nothing was left in a broken state
    let done = c.wait_task(&up, opts).await.unwrap();
    assert_eq!(done.exitstatus, "OK");
}
