//! The self-test against the mock.

use rmm_proxmox::WaitOptions;
use rmm_proxmox::selftest::{self, CheckStatus, Options};

use crate::common;

#[tokio::test]
async fn read_only_report() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let report = selftest::run(&c, &Options::default()).await;
    let text = report.to_string();
    assert!(report.ok(), "{text}");
    assert!(text.contains("[PASS] version: proxmox ve 9.1.1"), "{text}");
    assert_eq!(
        report.get("node pve2").unwrap().status,
        CheckStatus::Warn,
        "offline node"
    );
    assert_eq!(
        report.get("storage pve1/pbs").unwrap().status,
        CheckStatus::Warn,
        "inactive"
    );
    assert!(
        report
            .get("containers pve1")
            .unwrap()
            .detail
            .starts_with("2 containers, 1 running")
    );
    assert_eq!(
        report.get("privileges pve1").unwrap().status,
        CheckStatus::Pass
    );
    // read-only: nothing but GETs
    assert!(mock.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn task_test_snapshots_rolls_back_and_cleans_up() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let options = Options {
        task_test_vmid: Some(101),
        wait: WaitOptions::default(),
        ..Options::default()
    };
    let report = selftest::run(&c, &options).await;
    let text = report.to_string();
    assert!(report.ok(), "{text}");
    for step in ["snapshot 101@", "rollback 101@", "delete snapshot 101@"] {
        assert!(
            report
                .checks
                .iter()
                .any(|ch| ch.name.starts_with(step) && ch.status == CheckStatus::Pass),
            "{step} missing in\n{text}"
        );
    }
    assert!(
        mock.snapshot_names(101).is_empty(),
        "snapshot removed again"
    );
    assert_eq!(mock.is_running(101), Some(true), "left running as it was");
}

#[tokio::test]
async fn task_test_stops_at_the_preflight() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    mock.set_permissions("/vms/101", &["VM.Audit", "VM.Snapshot"]);
    let options = Options {
        task_test_vmid: Some(101),
        ..Options::default()
    };
    let report = selftest::run(&c, &options).await;
    assert!(!report.ok());
    let check = report.get("task test privileges").unwrap();
    assert_eq!(check.detail, "token lacks VM.Snapshot.Rollback on /vms/101");
    assert!(
        mock.requests().iter().all(|r| r.method == "GET"),
        "nothing was changed"
    );
}
