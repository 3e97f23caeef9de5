//! Privileged backend behaviour with a scripted runner: smartctl exit bits,
//! idempotent mounts, fstab conflicts, sudo refusals, validation first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rmm_proxmox::{
    BoxFuture, GoldenLxcSpec, MountRequest, Output, PrivError, PrivilegedBackend, RunError, Runner,
};

type Call = (String, Vec<String>, Option<Vec<u8>>);

#[derive(Clone, Default)]
struct Scripted {
    outputs: Arc<Mutex<VecDeque<Output>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Scripted {
    fn new(outputs: Vec<Output>) -> Scripted {
        Scripted {
            outputs: Arc::new(Mutex::new(outputs.into())),
            calls: Arc::default(),
        }
    }
    fn programs(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.clone())
            .collect()
    }
    fn next(
        &self,
        program: &str,
        args: &[String],
        input: Option<&[u8]>,
    ) -> BoxFuture<'static, Result<Output, RunError>> {
        self.calls.lock().unwrap().push((
            program.to_owned(),
            args.to_vec(),
            input.map(<[u8]>::to_vec),
        ));
        let out = self
            .outputs
            .lock()
            .unwrap()
            .pop_front()
            .expect("unexpected extra command");
        Box::pin(async move { Ok(out) })
    }
}

impl Runner for Scripted {
    fn run(&self, program: &str, args: &[String]) -> BoxFuture<'static, Result<Output, RunError>> {
        self.next(program, args, None)
    }
    fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: &[u8],
    ) -> BoxFuture<'static, Result<Output, RunError>> {
        self.next(program, args, Some(input))
    }
}

fn out(status: i32, stdout: &str, stderr: &str) -> Output {
    Output {
        status: Some(status),
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        ..Output::default()
    }
}

const SENSORS: &str = r#"{"coretemp-isa-0000":{"Package id 0":{"temp1_input":41.0}}}"#;

#[tokio::test]
async fn smartctl_status_bits() {
    // bit 2 and bit 6 describe the disk: still a report
    let r = Scripted::new(vec![
        out(0, SENSORS, ""),
        out(0x44, r#"{"smart_status":{"passed":true}}"#, ""),
        out(0x08, r#"{"smart_status":{"passed":false}}"#, ""),
    ]);
    let b = PrivilegedBackend::new(r.clone());
    let hw = b
        .read_hardware_health(&["/dev/sda", "/dev/nvme0n1"])
        .await
        .unwrap();
    assert_eq!(hw.smart[0].exit_status, 0x44);
    assert!(!hw.smart[0].disk_failing());
    assert!(hw.smart[1].disk_failing());
    assert_eq!(hw.smart[1].passed(), Some(false));

    // bit 1: the device could not be opened -> error with smartctl's message
    let r = Scripted::new(vec![
        out(0, SENSORS, ""),
        out(
            2,
            r#"{"smartctl":{"messages":[{"string":"/dev/sdz: No such device","severity":"error"}],"exit_status":2}}"#,
            "",
        ),
    ]);
    let err = PrivilegedBackend::new(r)
        .read_hardware_health(&["/dev/sdz"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PrivError::CommandFailed { stderr, .. } if stderr.contains("No such device")),
        "{err:?}"
    );

    // exit 0 but no json
    let r = Scripted::new(vec![out(0, SENSORS, ""), out(0, "smartctl 7.3", "")]);
    let err = PrivilegedBackend::new(r)
        .read_hardware_health(&["/dev/sda"])
        .await
        .unwrap_err();
    assert!(matches!(err, PrivError::BadOutput { .. }), "{err:?}");

    // sensors with a failing chip still printed json: fine
    let r = Scripted::new(vec![out(
        1,
        SENSORS,
        "ERROR: Can't get value of subfeature",
    )]);
    PrivilegedBackend::new(r)
        .read_hardware_health(&[])
        .await
        .unwrap();
    // sensors without output is an error naming the failure
    let r = Scripted::new(vec![out(1, "", "No sensors found!")]);
    let err = PrivilegedBackend::new(r)
        .read_hardware_health(&[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PrivError::CommandFailed { stderr, .. } if stderr == "No sensors found!"),
        "{err:?}"
    );
}

#[tokio::test]
async fn mounting_is_idempotent_and_guards_fstab() {
    let uuid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
    // already mounted, fstab already has the line: nothing changes
    let r = Scripted::new(vec![
        out(0, "/mnt/usb\n", ""),
        out(
            0,
            &format!("UUID={uuid} /mnt/usb ext4 defaults,nofail 0 0\n"),
            "",
        ),
    ]);
    let m = PrivilegedBackend::new(r.clone())
        .mount_by_uuid(&MountRequest::new(uuid, "/mnt/usb").persist(true))
        .await
        .unwrap();
    assert!(m.already_mounted && !m.fstab_added);
    assert_eq!(r.programs(), ["findmnt", "cat"]);

    // fstab mounts the uuid elsewhere: refuse to add a second line
    let r = Scripted::new(vec![
        out(1, "", ""),
        out(0, "", ""),
        out(0, "", ""),
        out(0, &format!("UUID={uuid} /srv/old auto defaults 0 0\n"), ""),
    ]);
    let err = PrivilegedBackend::new(r.clone())
        .mount_by_uuid(&MountRequest::new(uuid, "/mnt/usb").persist(true))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PrivError::FstabConflict { existing, .. } if existing == "/srv/old"),
        "{err:?}"
    );
    assert_eq!(r.programs(), ["findmnt", "mkdir", "mount", "cat"]);
    let calls = r.calls.lock().unwrap().clone();
    assert_eq!(
        calls[2].1,
        ["--source", &*format!("UUID={uuid}"), "--target", "/mnt/usb"]
    );

    // mount failure surfaces stderr
    let r = Scripted::new(vec![
        out(1, "", ""),
        out(0, "", ""),
        out(32, "", "mount: /mnt/usb: can't find UUID=..."),
    ]);
    let err = PrivilegedBackend::new(r)
        .mount_by_uuid(&MountRequest::new(uuid, "/mnt/usb"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            PrivError::CommandFailed {
                status: Some(32),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn sudo_password_prompts_are_reported() {
    let r = Scripted::new(vec![out(1, "", "sudo: a password is required\n")]);
    let err = PrivilegedBackend::new(r)
        .create_golden_lxc(&GoldenLxcSpec::new(
            9000,
            "local:vztmpl/x.tar.zst",
            "golden",
            "local-lvm",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PrivError::SudoPasswordRequired { program } if program == "pct"),
        "{err:?}"
    );
    assert!(err.to_string().contains("NOPASSWD"));
}

#[tokio::test]
async fn invalid_arguments_run_nothing() {
    let r = Scripted::new(vec![]);
    let b = PrivilegedBackend::new(r.clone());
    assert!(
        b.mount_by_uuid(&MountRequest::new("not-a-uuid", "/mnt/x"))
            .await
            .is_err()
    );
    assert!(
        b.mount_by_uuid(&MountRequest::new("ABCD-1234", "/mnt/../etc"))
            .await
            .is_err()
    );
    assert!(b.read_hardware_health(&["/dev/sda; reboot"]).await.is_err());
    let spec = GoldenLxcSpec::new(5, "local:vztmpl/x.tar.zst", "golden", "local-lvm");
    assert!(matches!(
        b.create_golden_lxc(&spec).await,
        Err(PrivError::InvalidArgument { field: "vmid", .. })
    ));
    assert!(r.programs().is_empty());
}
