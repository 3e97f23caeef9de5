//! Typed reads through the real client and the mock with readings the
//! schema allows but the client cannot parse: the read succeeds, the parsed
//! value is `None`, the raw value is kept. Identifiers stay strict, with an
//! error naming the field.

use rmm_proxmox::mock::{MockPve, MockResponse};
use rmm_proxmox::{
    Client, Error, Lenient, LxcSummary, Method, NodeStatus, NodeSummary, StorageSummary,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::common;

/// A `Lenient` as `(parsed, raw)`, `parsed` being JSON `null` when `None`.
fn seen<T: Serialize>(l: &Lenient<T>) -> (Value, Value) {
    (json!(l.parsed()), l.raw().clone())
}

/// `base` with the value at JSON pointer `at` replaced by `raw`.
fn patched(base: &Value, at: &str, raw: &Value) -> Value {
    let mut body = base.clone();
    *body
        .pointer_mut(at)
        .unwrap_or_else(|| panic!("{at} not in the base body")) = raw.clone();
    body
}

fn node_status_body() -> Value {
    json!({
        "cpu": 0.0345, "loadavg": ["0.12", "0.30", "0.25"], "uptime": 864_000,
        "memory": {"total": 68_719_476_736u64, "used": 8_589_934_592u64, "free": 1, "available": 1},
        "swap": {"total": 8_589_934_592u64, "used": 0, "free": 8_589_934_592u64},
        "rootfs": {"total": 100_000_000_000u64, "used": 1, "avail": 1, "free": 1},
        "cpuinfo": {"model": "AMD EPYC", "cpus": 32, "sockets": 1, "cores": 16, "mhz": "3000.000"},
        "pveversion": "pve-manager/9.1.1/42d6a8d3", "kversion": "Linux 6.14.8-2-pve"
    })
}

/// Answers the next GET of `path` with `body` and reads it with `read`.
async fn read_with<T>(
    mock: &MockPve,
    path: &str,
    body: Value,
    read: impl AsyncFnOnce(&Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let (c, _) = common::client(mock);
    mock.push_response(Method::Get, path, MockResponse::data(body));
    read(&c).await
}

#[tokio::test]
async fn node_status_survives_unparsable_readings() {
    let mock = common::mock().await;
    type Field = fn(&NodeStatus) -> (Value, Value);
    let loadavg: Field = |s| seen(&s.loadavg);
    let mhz: Field = |s| seen(&s.cpuinfo.mhz);
    let cpus: Field = |s| seen(&s.cpuinfo.cpus);
    let used: Field = |s| seen(&s.memory.used);
    let swap: Field = |s| seen(&s.swap.total);
    let avail: Field = |s| seen(&s.rootfs.avail);
    let uptime: Field = |s| seen(&s.uptime);
    let cpu: Field = |s| seen(&s.cpu);
    // (pointer, raw value sent, field, expected parsed value)
    let cases: &[(&str, Value, Field, Value)] = &[
        // the schema types load averages as strings: any string is allowed
        ("/loadavg", json!(["0.5", "abc", "1"]), loadavg, Value::Null),
        ("/loadavg", json!(["0.5", "", "1"]), loadavg, Value::Null),
        ("/loadavg", json!("0.5 0.25 1"), loadavg, Value::Null),
        (
            "/loadavg",
            json!(["0.5", "0.25", 1]),
            loadavg,
            json!([0.5, 0.25, 1.0]),
        ),
        // not in the schema; Proxmox sends a string
        ("/cpuinfo/mhz", json!("unknown"), mhz, Value::Null),
        ("/cpuinfo/mhz", json!("2999.998"), mhz, json!(2999.998)),
        // integers without bounds in the schema
        ("/cpuinfo/cpus", json!(-1), cpus, Value::Null),
        ("/cpuinfo/cpus", json!(4_294_967_296u64), cpus, Value::Null),
        ("/memory/used", json!(-1), used, Value::Null),
        (
            "/memory/used",
            json!("8589934592"),
            used,
            json!(8_589_934_592u64),
        ),
        ("/rootfs/avail", json!(-4096), avail, Value::Null),
        // not in the schema at all
        ("/swap/total", json!("n/a"), swap, Value::Null),
        ("/uptime", json!("a while"), uptime, Value::Null),
        ("/uptime", Value::Null, uptime, Value::Null),
        // not schema-allowed, but a reading: still no failure
        ("/cpu", json!("busy"), cpu, Value::Null),
    ];
    for (at, raw, field, parsed) in cases {
        let body = patched(&node_status_body(), at, raw);
        let status = read_with(&mock, "/nodes/pve1/status", body, async |c| {
            c.node_status("pve1").await
        })
        .await
        .unwrap_or_else(|e| panic!("{at} = {raw}: the read failed: {e}"));
        assert_eq!(
            field(&status),
            (parsed.clone(), raw.clone()),
            "{at} = {raw}"
        );
        // the rest of the response is unaffected
        assert_eq!(status.cpuinfo.model.as_deref(), Some("AMD EPYC"), "{at}");
        assert_eq!(
            status.pveversion.as_deref(),
            Some("pve-manager/9.1.1/42d6a8d3")
        );
    }
}

#[tokio::test]
async fn lists_survive_unparsable_readings() {
    let mock = common::mock().await;
    let nodes = json!([
        {"node": "pve1", "status": "online", "cpu": 0.03, "maxcpu": 16, "mem": 1, "maxmem": 2, "uptime": 3},
        {"node": "pve2", "status": "offline"}
    ]);
    type Node = fn(&NodeSummary) -> (Value, Value);
    let cases: &[(&str, Value, Node)] = &[
        ("/0/mem", json!(-1), |n| seen(&n.mem)),
        ("/0/maxcpu", json!("sixteen"), |n| seen(&n.maxcpu)),
        ("/0/uptime", json!(-5), |n| seen(&n.uptime)),
    ];
    for (at, raw, field) in cases {
        let list = read_with(&mock, "/nodes", patched(&nodes, at, raw), async |c| {
            c.nodes().await
        })
        .await
        .unwrap_or_else(|e| panic!("{at} = {raw}: {e}"));
        assert_eq!(field(&list[0]), (Value::Null, raw.clone()), "{at}");
        assert_eq!(
            (list[0].node.as_str(), list[1].node.as_str()),
            ("pve1", "pve2")
        );
    }

    let lxc = json!([{"vmid": 100, "status": "running", "name": "ct", "mem": 1, "maxmem": 2,
                      "disk": 3, "maxdisk": 4, "uptime": 5, "cpu": 0.1, "cpus": 2}]);
    type Ct = fn(&LxcSummary) -> (Value, Value);
    let cases: &[(&str, Value, Ct)] = &[
        ("/0/maxmem", json!(-1), |c| seen(&c.maxmem)),
        ("/0/maxdisk", json!("8G"), |c| seen(&c.maxdisk)),
        ("/0/uptime", json!(-1), |c| seen(&c.uptime)),
        ("/0/cpus", json!("two"), |c| seen(&c.cpus)),
    ];
    for (at, raw, field) in cases {
        let list = read_with(
            &mock,
            "/nodes/pve1/lxc",
            patched(&lxc, at, raw),
            async |c| c.lxc_list("pve1").await,
        )
        .await
        .unwrap_or_else(|e| panic!("{at} = {raw}: {e}"));
        assert_eq!(field(&list[0]), (Value::Null, raw.clone()), "{at}");
        assert_eq!((list[0].vmid, list[0].name.as_deref()), (100, Some("ct")));
    }

    let storage = json!([{"storage": "local", "type": "dir", "content": "iso", "active": 1,
                          "total": 10, "used": 5, "avail": 5, "used_fraction": 0.5}]);
    type St = fn(&StorageSummary) -> (Value, Value);
    let cases: &[(&str, Value, St)] = &[
        ("/0/total", json!(-1), |s| seen(&s.total)),
        ("/0/avail", json!("lots"), |s| seen(&s.avail)),
        ("/0/used_fraction", json!("half"), |s| {
            seen(&s.used_fraction)
        }),
    ];
    for (at, raw, field) in cases {
        let list = read_with(
            &mock,
            "/nodes/pve1/storage",
            patched(&storage, at, raw),
            async |c| c.storage("pve1").await,
        )
        .await
        .unwrap_or_else(|e| panic!("{at} = {raw}: {e}"));
        assert_eq!(field(&list[0]), (Value::Null, raw.clone()), "{at}");
        assert_eq!(list[0].storage, "local");
    }
}

#[tokio::test]
async fn identifiers_stay_strict_with_an_error_naming_the_field() {
    let mock = common::mock().await;
    let cases: &[(&str, Value, &str)] = &[
        (
            "/nodes/pve1/lxc",
            json!([{"vmid": "abc", "status": "running"}]),
            "`vmid`",
        ),
        (
            "/nodes/pve1/lxc",
            json!([{"vmid": 7, "status": "running"}]),
            "`vmid`",
        ),
        ("/nodes/pve1/lxc", json!([{"status": "running"}]), "`vmid`"),
        (
            "/nodes",
            json!([{"node": "", "status": "online"}]),
            "`node`",
        ),
        (
            "/nodes",
            json!([{"node": null, "status": "online"}]),
            "`node`",
        ),
        (
            "/nodes/pve1/storage",
            json!([{"storage": [], "type": "dir"}]),
            "`storage`",
        ),
    ];
    for (path, body, field) in cases {
        let (c, _) = common::client(&mock);
        mock.push_response(Method::Get, path, MockResponse::data(body.clone()));
        let err = match *path {
            "/nodes" => c.nodes().await.map(drop),
            "/nodes/pve1/lxc" => c.lxc_list("pve1").await.map(drop),
            _ => c.storage("pve1").await.map(drop),
        }
        .expect_err("an invalid identifier fails the read");
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(field) && msg.contains(path), "{body}: {msg}");
    }
}
