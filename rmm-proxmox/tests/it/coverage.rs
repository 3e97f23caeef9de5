//! Every endpoint the client implements exists in the Proxmox schema and
//! allows API tokens; and the client's requests hit exactly those.

use std::collections::BTreeSet;

use rmm_proxmox::mock::schema::Schema;
use rmm_proxmox::{Endpoint, LxcConfigUpdate, RestoreRequest, VzdumpRequest, WaitOptions};

use crate::common;

#[test]
fn every_endpoint_exists_in_the_schema_and_allows_tokens() {
    let schema = Schema::load_default().unwrap_or_else(|e| panic!("{e}"));
    for e in Endpoint::ALL {
        let info = schema
            .find(e.method().as_str(), e.path_template())
            .unwrap_or_else(|| panic!("{e} is not in the proxmox api schema"));
        assert!(info.allowtoken, "{e} does not allow api tokens");
    }
}

#[tokio::test]
async fn the_client_calls_exactly_its_endpoints() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let w = WaitOptions::default();
    c.version().await.unwrap();
    c.nodes().await.unwrap();
    c.node_status("pve1").await.unwrap();
    c.lxc_list("pve1").await.unwrap();
    c.lxc_status("pve1", 101).await.unwrap();
    let cfg = c.lxc_config("pve1", 101).await.unwrap();
    c.lxc_snapshots("pve1", 101).await.unwrap();
    c.storage("pve1").await.unwrap();
    c.disk_smart("pve1", "/dev/sda").await.unwrap();
    c.permissions("/vms/101").await.unwrap();
    c.check_privileges(&[("/vms/101", "VM.Snapshot")])
        .await
        .unwrap();
    c.set_lxc_config(
        "pve1",
        101,
        &LxcConfigUpdate::new()
            .cores(3)
            .digest(cfg.digest.as_deref().unwrap()),
    )
    .await
    .unwrap();
    let u = c.snapshot_lxc("pve1", 101, "cov", None).await.unwrap();
    c.wait_task(&u, w).await.unwrap();
    c.task_log(&u, 0, 10).await.unwrap();
    let u = c.rollback_lxc("pve1", 101, "cov", true).await.unwrap();
    c.wait_task(&u, w).await.unwrap();
    let u = c
        .delete_lxc_snapshot("pve1", 101, "cov", false)
        .await
        .unwrap();
    c.wait_task(&u, w).await.unwrap();
    let u = c.stop_lxc("pve1", 101).await.unwrap();
    c.wait_task(&u, w).await.unwrap();
    let u = c.start_lxc("pve1", 101).await.unwrap();
    c.wait_task(&u, w).await.unwrap();
    let u = c
        .vzdump("pve1", &VzdumpRequest::new(&[101]).storage("local"))
        .await
        .unwrap();
    c.wait_task(&u, w).await.unwrap();
    let u = c
        .restore_lxc(
            "pve1",
            &RestoreRequest::new(
                130,
                "local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst",
            ),
        )
        .await
        .unwrap();
    c.wait_task(&u, w).await.unwrap();

    let requests = mock.requests();
    assert!(
        requests.iter().all(|r| r.authorized && r.status == 200),
        "{requests:#?}"
    );
    let hit: BTreeSet<(String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.template.clone().unwrap()))
        .collect();
    let declared: BTreeSet<(String, String)> = Endpoint::ALL
        .iter()
        .map(|e| (e.method().as_str().to_owned(), e.path_template().to_owned()))
        .collect();
    assert_eq!(hit, declared);
    assert!(mock.violations().is_empty());
}
