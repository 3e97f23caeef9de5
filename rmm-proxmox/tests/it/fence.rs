//! The fence: API operations never touch the runner, privileged operations
//! never touch the transport. Both seams are mockall mocks.

use std::sync::Arc;

use mockall::mock;
use serde_json::json;

use rmm_proxmox::{
    ApiRequest, ApiResponse, BoxFuture, Client, GoldenLxcSpec, LxcConfigUpdate, Method,
    MountRequest, Output, PrivilegedBackend, RestoreRequest, RunError, Runner, Transport,
    TransportError, VzdumpRequest, WaitOptions,
};

mock! {
    pub Transport {}
    impl Transport for Transport {
        fn send(&self, request: ApiRequest) -> BoxFuture<'static, Result<ApiResponse, TransportError>>;
    }
}

mock! {
    pub Runner {}
    impl Runner for Runner {
        fn run(&self, program: &str, args: &[String]) -> BoxFuture<'static, Result<Output, RunError>>;
        fn run_with_input(&self, program: &str, args: &[String], input: &[u8]) -> BoxFuture<'static, Result<Output, RunError>>;
    }
}

const UPID: &str = "UPID:pve1:00001000:1A2B3C4D5:66000000:vzsnapshot:101:rmm@pve!test:";

/// Canned Proxmox answers by method and path.
fn canned(req: &ApiRequest) -> serde_json::Value {
    let p = req.path.as_str();
    match (req.method, p) {
        (Method::Get, "/version") => json!({"version": "9.1.1", "release": "9.1", "repoid": "abc"}),
        (Method::Get, "/nodes") => json!([{"node": "pve1", "status": "online"}]),
        (Method::Get, "/nodes/pve1/status") => json!({"loadavg": ["0.1", "0.2", "0.3"]}),
        (Method::Get, "/nodes/pve1/lxc") => json!([{"vmid": 101, "status": "running"}]),
        (Method::Get, "/nodes/pve1/lxc/101/status/current") => {
            json!({"vmid": 101, "status": "running"})
        }
        (Method::Get, "/nodes/pve1/lxc/101/config") => {
            json!({"hostname": "a", "net0": "name=eth0,bridge=vmbr0", "digest": "abcd"})
        }
        (Method::Get, "/nodes/pve1/lxc/101/snapshot") => json!([{"name": "current"}]),
        (Method::Get, "/nodes/pve1/storage") => {
            json!([{"storage": "local", "type": "dir", "content": "backup"}])
        }
        (Method::Get, "/nodes/pve1/disks/smart") => json!({"health": "PASSED"}),
        (Method::Get, "/access/permissions") => json!({"/vms/101": {"VM.Snapshot": 1}}),
        (Method::Put, _) => serde_json::Value::Null,
        (Method::Get, p) if p.ends_with("/status") => {
            json!({"status": "stopped", "exitstatus": "OK"})
        }
        (Method::Get, p) if p.ends_with("/log") => json!([{"n": 1, "t": "TASK OK"}]),
        _ => json!(UPID),
    }
}

fn forbidden_runner() -> MockRunner {
    let mut r = MockRunner::new();
    r.expect_run().never();
    r.expect_run_with_input().never();
    r
}

fn forbidden_transport() -> MockTransport {
    let mut t = MockTransport::new();
    t.expect_send().never();
    t
}

#[tokio::test]
async fn api_operations_never_touch_the_runner() {
    let mut transport = MockTransport::new();
    transport.expect_send().returning(|req| {
        let body = json!({ "data": canned(&req) }).to_string().into_bytes();
        Box::pin(async move {
            Ok(ApiResponse {
                status: 200,
                reason: None,
                body,
            })
        })
    });
    let backend = PrivilegedBackend::new(forbidden_runner());
    let c = Client::with_transport(Arc::new(transport));
    let w = WaitOptions::default();
    let upid = UPID.parse().unwrap();

    c.version().await.unwrap();
    c.nodes().await.unwrap();
    c.node_status("pve1").await.unwrap();
    c.lxc_list("pve1").await.unwrap();
    c.lxc_status("pve1", 101).await.unwrap();
    c.lxc_config("pve1", 101).await.unwrap();
    c.lxc_snapshots("pve1", 101).await.unwrap();
    c.storage("pve1").await.unwrap();
    c.disk_smart("pve1", "/dev/sda").await.unwrap();
    c.check_privileges(&[("/vms/101", "VM.Snapshot")])
        .await
        .unwrap();
    c.task_status(&upid).await.unwrap();
    c.task_log(&upid, 0, 5).await.unwrap();
    c.wait_task(&upid, w).await.unwrap();
    c.restore_lxc("pve1", &RestoreRequest::new(120, "local:backup/x.tar.zst"))
        .await
        .unwrap();
    c.vzdump("pve1", &VzdumpRequest::new(&[101])).await.unwrap();
    c.snapshot_lxc("pve1", 101, "s1", None).await.unwrap();
    c.rollback_lxc("pve1", 101, "s1", false).await.unwrap();
    c.delete_lxc_snapshot("pve1", 101, "s1", false)
        .await
        .unwrap();
    c.set_lxc_config("pve1", 101, &LxcConfigUpdate::new().cores(2))
        .await
        .unwrap();
    c.start_lxc("pve1", 101).await.unwrap();
    c.stop_lxc("pve1", 101).await.unwrap();
    drop(backend); // verifies the runner's `never` expectations
}

fn out(status: i32, stdout: &str) -> Output {
    Output {
        status: Some(status),
        stdout: stdout.as_bytes().to_vec(),
        ..Output::default()
    }
}

#[tokio::test]
async fn privileged_operations_never_touch_the_transport() {
    let client = Client::with_transport(Arc::new(forbidden_transport()));
    let mut runner = MockRunner::new();
    runner
        .expect_run()
        .withf(|p, a| {
            p == "pct"
                && a[..2] == ["create".to_owned(), "9000".to_owned()]
                && a.windows(2)
                    .any(|w| w == ["--features", "keyctl=1,nesting=1"])
        })
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(out(0, "")) }));
    runner
        .expect_run()
        .withf(|p, _| p == "findmnt")
        .returning(|_, _| Box::pin(async { Ok(out(1, "")) }));
    runner
        .expect_run()
        .withf(|p, _| p == "mkdir" || p == "mount")
        .times(2)
        .returning(|_, _| Box::pin(async { Ok(out(0, "")) }));
    runner
        .expect_run()
        .withf(|p, a| p == "cat" && a == ["/etc/fstab"])
        .returning(|_, _| Box::pin(async { Ok(out(0, "# <file system> <mount point>\n")) }));
    runner
        .expect_run_with_input()
        .withf(|p, a, input| {
            p == "tee"
                && a == ["-a", "/etc/fstab"]
                && input == b"UUID=0a1b2c3d-4e5f-6789-abcd-ef0123456789 /mnt/usb-backup auto defaults,nofail 0 0\n"
        })
        .times(1)
        .returning(|_, _, _| Box::pin(async { Ok(out(0, "")) }));
    runner
        .expect_run()
        .withf(|p, a| p == "sensors" && a == ["-j"])
        .returning(|_, _| {
            Box::pin(async {
                Ok(out(
                    0,
                    r#"{"k10temp-pci-00c3":{"Tctl":{"temp1_input":45.5}}}"#,
                ))
            })
        });
    runner
        .expect_run()
        .withf(|p, a| p == "smartctl" && a == ["-a", "-j", "/dev/sda"])
        .returning(|_, _| {
            Box::pin(async {
                Ok(out(
                    4,
                    r#"{"smart_status":{"passed":true},"smartctl":{"exit_status":4}}"#,
                ))
            })
        });
    let backend = PrivilegedBackend::new(runner);

    backend
        .create_golden_lxc(&GoldenLxcSpec::new(
            9000,
            "local:vztmpl/debian-12.tar.zst",
            "golden",
            "local-lvm",
        ))
        .await
        .unwrap();
    let m = backend
        .mount_by_uuid(
            &MountRequest::new("0a1b2c3d-4e5f-6789-abcd-ef0123456789", "/mnt/usb-backup")
                .persist(true),
        )
        .await
        .unwrap();
    assert!(!m.already_mounted && m.fstab_added);
    let hw = backend.read_hardware_health(&["/dev/sda"]).await.unwrap();
    assert_eq!(hw.smart[0].exit_status, 4);
    assert_eq!(hw.smart[0].passed(), Some(true));
    assert_eq!(hw.sensors["k10temp-pci-00c3"]["Tctl"]["temp1_input"], 45.5);
    drop(client); // verifies the transport's `never` expectation
}
