//! Mutations against the mock: they change its state, return UPIDs and
//! complete through wait_task.

use rmm_proxmox::{
    BackupMode, Compression, Error, LxcConfigUpdate, LxcFeatures, MountPoint, NetInterface,
    RestoreRequest, VzdumpRequest, WaitOptions,
};

use crate::common;

const BACKUP: &str = "local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst";

#[tokio::test]
async fn restore_a_golden_backup_for_a_customer() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let upid = c
        .restore_lxc(
            "pve1",
            &RestoreRequest::new(200, BACKUP)
                .storage("local-lvm")
                .hostname("cust-b")
                .start(true),
        )
        .await
        .unwrap();
    assert_eq!(
        (upid.node(), upid.task_type(), upid.id()),
        ("pve1", "vzrestore", "200")
    );
    assert_eq!(upid.user(), mock.token_id());
    let done = c.wait_task(&upid, WaitOptions::default()).await.unwrap();
    assert_eq!(done.warnings, 0);
    let cfg = c.lxc_config("pve1", 200).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("cust-b"));
    assert_eq!(mock.is_running(200), Some(true));

    let sent = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(sent.params.contains(&("restore".into(), "1".into())));
    assert!(sent.params.contains(&("unique".into(), "1".into())));

    // restoring over an existing id needs force
    let err = c
        .restore_lxc("pve1", &RestoreRequest::new(200, BACKUP))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Api { status: 500, ref message, .. } if message.contains("already exists")),
        "{err}"
    );
}

#[tokio::test]
async fn snapshot_rollback_delete() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let w = WaitOptions::default();
    let up = c
        .snapshot_lxc("pve1", 101, "pre-upgrade", Some("before apt upgrade"))
        .await
        .unwrap();
    c.wait_task(&up, w).await.unwrap();
    assert_eq!(mock.snapshot_names(101), vec!["pre-upgrade"]);

    // a risky change...
    c.set_lxc_config("pve1", 101, &LxcConfigUpdate::new().memory(4096))
        .await
        .unwrap();
    assert_eq!(mock.config_value(101, "memory").as_deref(), Some("4096"));

    let up = c
        .rollback_lxc("pve1", 101, "pre-upgrade", true)
        .await
        .unwrap();
    c.wait_task(&up, w).await.unwrap();
    assert_eq!(mock.config_value(101, "memory").as_deref(), Some("2048"));
    assert_eq!(mock.is_running(101), Some(true));

    let up = c
        .delete_lxc_snapshot("pve1", 101, "pre-upgrade", false)
        .await
        .unwrap();
    c.wait_task(&up, w).await.unwrap();
    assert!(mock.snapshot_names(101).is_empty());

    let err = c
        .rollback_lxc("pve1", 101, "pre-upgrade", false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn set_config_with_digest_and_delete() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let cfg = c.lxc_config("pve1", 101).await.unwrap();
    let digest = cfg.digest.clone().unwrap();
    let mut net1 = NetInterface {
        name: "eth1".into(),
        bridge: Some("vmbr1".into()),
        ip: Some("10.10.0.5/24".into()),
        gw: Some("10.10.0.1".into()),
        ..Default::default()
    };
    net1.tag = Some(30);
    c.set_lxc_config(
        "pve1",
        101,
        &LxcConfigUpdate::new()
            .digest(&digest)
            .net(1, &net1)
            .description("customer A, tier 2")
            .delete("mp0"),
    )
    .await
    .unwrap();
    assert_eq!(
        mock.config_value(101, "net1").as_deref(),
        Some("name=eth1,bridge=vmbr1,gw=10.10.0.1,ip=10.10.0.5/24,tag=30")
    );
    assert_eq!(mock.config_value(101, "mp0"), None);
    let after = c.lxc_config("pve1", 101).await.unwrap();
    assert_eq!(after.net[&1], net1);
    assert_ne!(after.digest.as_deref(), Some(digest.as_str()));

    // the old digest is stale now: optimistic locking refuses
    let err = c
        .set_lxc_config(
            "pve1",
            101,
            &LxcConfigUpdate::new().digest(&digest).cores(8),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConfigModified { .. }), "{err}");
    assert_eq!(mock.config_value(101, "cores").as_deref(), Some("2"));
}

#[tokio::test]
async fn root_pam_only_changes_are_refused_for_tokens() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let features = LxcFeatures {
        nesting: Some(true),
        fuse: Some(true),
        ..Default::default()
    };
    let err = c
        .set_lxc_config("pve1", 101, &LxcConfigUpdate::new().features(&features))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RequiresRootPam { .. }), "{err}");
    assert!(err.to_string().contains("privileged backend"));

    let bind = MountPoint {
        volume: "/mnt/usb".into(),
        mp: "/backup".into(),
        ..Default::default()
    };
    let err = c
        .set_lxc_config("pve1", 101, &LxcConfigUpdate::new().mount_point(1, &bind))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RequiresRootPam { .. }), "{err}");

    // nesting alone is allowed
    let nesting = LxcFeatures {
        nesting: Some(true),
        ..Default::default()
    };
    c.set_lxc_config("pve1", 101, &LxcConfigUpdate::new().features(&nesting))
        .await
        .unwrap();
    assert_eq!(
        mock.config_value(101, "features").as_deref(),
        Some("nesting=1")
    );
}

#[tokio::test]
async fn start_stop_and_vzdump() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let w = WaitOptions::default();
    let up = c.stop_lxc("pve1", 101).await.unwrap();
    assert_eq!(up.task_type(), "vzstop");
    c.wait_task(&up, w).await.unwrap();
    assert_eq!(mock.is_running(101), Some(false));
    let up = c.start_lxc("pve1", 101).await.unwrap();
    c.wait_task(&up, w).await.unwrap();
    assert_eq!(mock.is_running(101), Some(true));

    let up = c
        .vzdump(
            "pve1",
            &VzdumpRequest::new(&[100, 101])
                .storage("local")
                .mode(BackupMode::Snapshot)
                .compress(Compression::Zstd),
        )
        .await
        .unwrap();
    assert_eq!((up.task_type(), up.id()), ("vzdump", ""));
    c.wait_task(&up, w).await.unwrap();
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/nodes/pve1/vzdump")
        .unwrap();
    assert!(sent.params.contains(&("vmid".into(), "100,101".into())));
    assert!(sent.params.contains(&("compress".into(), "zstd".into())));
}
