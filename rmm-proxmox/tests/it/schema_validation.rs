//! The mock's schema validator: it must reject invalid requests (so an
//! invalid request from the client fails the test) and accept valid ones.

use rmm_proxmox::mock::schema::Schema;
use rmm_proxmox::{ApiRequest, HttpTransport, Method, Transport};

use crate::common;

fn segs(path: &str) -> Vec<String> {
    path.split('/').skip(1).map(str::to_owned).collect()
}

fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `check(method, path, params, expected)`: `Ok(())` or `Err(substring of a
/// violation)`.
fn check(
    schema: &Schema,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    expected: Result<(), &str>,
) {
    let got = schema.validate(method, &segs(path), &p(params));
    match (got, expected) {
        (Ok(_), Ok(())) => {}
        (Err(v), Err(needle)) => {
            let text: Vec<String> = v.iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "{method} {path} {params:?}: expected a violation containing {needle:?}, got {text:?}"
            );
        }
        (Ok(_), Err(needle)) => panic!("{method} {path} {params:?}: accepted, expected {needle:?}"),
        (Err(v), Ok(())) => panic!("{method} {path} {params:?}: rejected: {v:?}"),
    }
}

#[test]
fn schema_is_present_and_complete() {
    let schema = Schema::load_default().unwrap_or_else(|e| panic!("{e}"));
    assert!(schema.path_count() > 400, "{} paths", schema.path_count());
}

#[test]
fn nearly_every_schema_pattern_is_checked() {
    let schema = Schema::load_default().unwrap();
    let (total, skipped) = schema.pattern_report();
    assert!(total > 50, "only {total} patterns found");
    // Perl-only constructs (lookaround, backreferences) cannot be checked by
    // the regex crate; keep that list short and visible.
    assert!(skipped.len() <= 3, "untranslatable patterns: {skipped:#?}");
}

#[test]
fn valid_requests_pass() {
    let s = Schema::load_default().unwrap();
    check(&s, "GET", "/version", &[], Ok(()));
    check(&s, "GET", "/nodes/pve1/lxc/100/config", &[], Ok(()));
    check(
        &s,
        "PUT",
        "/nodes/pve1/lxc/100/config",
        &[
            (
                "net0",
                "name=eth0,bridge=vmbr0,firewall=1,ip=dhcp,type=veth",
            ),
            (
                "net12",
                "name=eth12,bridge=vmbr1,ip=10.0.0.2/24,gw=10.0.0.1,tag=20",
            ),
            ("features", "keyctl=1,nesting=1"),
            ("mp0", "local-lvm:vm-100-disk-1,mp=/srv,backup=1,size=32G"),
            ("cores", "4"),
            ("onboot", "1"),
            ("delete", "mp1,unused0"),
            ("digest", "0123456789abcdef0123456789abcdef01234567"),
        ],
        Ok(()),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/lxc",
        &[
            ("vmid", "120"),
            ("ostemplate", "local:backup/x.tar.zst"),
            ("restore", "1"),
            ("unique", "1"),
        ],
        Ok(()),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/vzdump",
        &[
            ("vmid", "100,101"),
            ("mode", "snapshot"),
            ("compress", "zstd"),
        ],
        Ok(()),
    );
    check(
        &s,
        "GET",
        "/nodes/pve1/disks/smart",
        &[("disk", "/dev/sda")],
        Ok(()),
    );
    check(
        &s,
        "GET",
        "/access/permissions",
        &[("path", "/vms/100")],
        Ok(()),
    );
}

#[test]
fn invalid_requests_are_rejected() {
    let s = Schema::load_default().unwrap();
    let cfg = "/nodes/pve1/lxc/100/config";
    check(
        &s,
        "GET",
        "/nodes/pve1/nonexistent",
        &[],
        Err("no such path"),
    );
    check(
        &s,
        "DELETE",
        "/version",
        &[],
        Err("method DELETE not allowed"),
    );
    check(
        &s,
        "GET",
        cfg,
        &[("foo", "1")],
        Err("foo: unknown parameter"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("net0x", "name=eth0")],
        Err("unknown parameter"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("net01", "name=eth0")],
        Err("unknown parameter"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/lxc/100/snapshot",
        &[],
        Err("snapname: required parameter missing"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/lxc/100/snapshot",
        &[("snapname", "1bad")],
        Err("pve-configid"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/lxc/100/snapshot/pre/rollback",
        &[("start", "true")],
        Err("0 or 1"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/lxc/50/status/start",
        &[],
        Err("minimum"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve_1/lxc/100/status/start",
        &[],
        Err("pve-node"),
    );
    check(&s, "PUT", cfg, &[("cores", "0")], Err("minimum"));
    check(&s, "PUT", cfg, &[("memory", "lots")], Err("integer"));
    check(
        &s,
        "PUT",
        cfg,
        &[("net0", "bridge=vmbr0")],
        Err("required key `name`"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("net0", "name=eth0,bogus=1")],
        Err("unknown key `bogus`"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("net0", "name=eth0,tag=5000")],
        Err("maximum"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("net0", "name=eth0,ip=10.0.0.1")],
        Err("pve-ipv4-config"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("features", "nesting=yes")],
        Err("0 or 1"),
    );
    check(
        &s,
        "PUT",
        cfg,
        &[("features", "mount=nfs,cifs")],
        Err("unexpected bare value"),
    );
    check(&s, "PUT", cfg, &[("hostname", "bad_host")], Err("dns-name"));
    check(&s, "PUT", cfg, &[("ostype", "windows")], Err("not one of"));
    check(
        &s,
        "PUT",
        cfg,
        &[("description", &"x".repeat(8193))],
        Err("maxLength"),
    );
    check(&s, "PUT", cfg, &[("delete", "Mp0")], Ok(()));
    check(&s, "PUT", cfg, &[("delete", "m")], Err("pve-configid-list"));
    check(
        &s,
        "POST",
        "/nodes/pve1/vzdump",
        &[("mode", "fast")],
        Err("not one of"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/vzdump",
        &[("notes-template", "x")],
        Err("requires parameter `storage`"),
    );
    check(
        &s,
        "GET",
        "/nodes/pve1/disks/smart",
        &[("disk", "/etc/passwd")],
        Err("pattern"),
    );
    check(
        &s,
        "GET",
        "/nodes/pve1/disks/smart",
        &[],
        Err("disk: required parameter missing"),
    );
    check(
        &s,
        "POST",
        "/nodes/pve1/lxc",
        &[("vmid", "120"), ("ostemplate", "x"), ("unique", "1")],
        Err("requires parameter `restore`"),
    );
    check(
        &s,
        "GET",
        "/access/permissions",
        &[("userid", "no-realm")],
        Err("pattern"),
    );
}

/// Over real HTTPS: invalid requests get Proxmox-style errors and are
/// recorded as violations.
#[tokio::test]
async fn the_mock_rejects_invalid_requests_over_https() {
    let mock = common::mock().await;
    let transport = HttpTransport::new(&mock.config()).unwrap();
    let send = |method, path: &str, params: &[(&str, &str)]| {
        transport.send(ApiRequest {
            method,
            path: path.to_owned(),
            params: p(params),
        })
    };
    let r = send(
        Method::Put,
        "/nodes/pve1/lxc/101/config",
        &[("net0", "name=eth0,tag=9999")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.reason.as_deref(), Some("Parameter verification failed."));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        body["errors"]["net0"].as_str().unwrap().contains("maximum"),
        "{body}"
    );

    let r = send(Method::Get, "/nodes/pve1/qemu-but-wrong", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 501);

    let r = send(
        Method::Post,
        "/nodes/pve1/lxc/101/status/start",
        &[("bogus", "1")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);

    let v = mock.take_violations();
    assert_eq!(v.len(), 3, "{v:#?}");
    assert!(
        v[0].contains("net0") && v[1].contains("no such path") && v[2].contains("bogus"),
        "{v:#?}"
    );
    // nothing was applied
    assert!(!mock.config_value(101, "net0").unwrap().contains("tag=9999"));
    assert_eq!(mock.is_running(101), Some(true));
}

/// A mock that saw a violation fails the test when dropped.
#[tokio::test]
async fn violations_fail_the_test_on_drop() {
    let result = tokio::spawn(async {
        let mock = common::mock().await;
        let transport = HttpTransport::new(&mock.config()).unwrap();
        let _ = transport
            .send(ApiRequest {
                method: Method::Get,
                path: "/version".into(),
                params: p(&[("unknown", "1")]),
            })
            .await
            .unwrap();
        drop(mock);
    })
    .await;
    let err = result.unwrap_err();
    assert!(err.is_panic());
}
