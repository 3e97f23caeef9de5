//! Typed reads against the mock.

use rmm_proxmox::{Client, Config, Error, GuestState, MountPoint, NodeState};

use crate::common;

#[tokio::test]
async fn version_nodes_and_status() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let v = c.version().await.unwrap();
    assert_eq!((v.version.as_str(), v.release.as_str()), ("9.1.1", "9.1"));

    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].status, NodeState::Online);
    assert_eq!(nodes[0].maxcpu.get(), Some(16));
    assert_eq!(nodes[1].status, NodeState::Offline);
    assert_eq!(nodes[1].mem.get(), None);
    assert!(nodes[1].mem.raw().is_null());

    let s = c.node_status("pve1").await.unwrap();
    assert_eq!(s.loadavg.parsed(), Some(&vec![0.12, 0.30, 0.25]));
    assert_eq!(s.cpuinfo.mhz.get(), Some(3000.0));
    assert_eq!(s.memory.total.get(), Some(68_719_476_736));
}

#[tokio::test]
async fn containers_and_config_property_strings() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let list = c.lxc_list("pve1").await.unwrap();
    assert_eq!(
        list.iter().map(|x| x.vmid).collect::<Vec<_>>(),
        vec![100, 101]
    );
    assert!(list[0].template);
    assert_eq!(list[1].status, GuestState::Running);
    assert_eq!(list[1].name.as_deref(), Some("cust-a-web"));

    let cfg = c.lxc_config("pve1", 101).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("cust-a-web"));
    assert_eq!(cfg.cores, Some(2));
    assert_eq!(cfg.unprivileged, Some(true));
    let f = cfg.features.clone().unwrap();
    assert_eq!(
        (f.nesting, f.keyctl, f.fuse),
        (Some(true), Some(true), None)
    );
    assert_eq!(cfg.net[&0].bridge.as_deref(), Some("vmbr0"));
    assert_eq!(cfg.tags, vec!["cust-a", "web"]);
    assert_eq!(cfg.digest.as_deref().map(str::len), Some(40));
    // every property string prints back exactly as the server stored it
    assert_eq!(
        cfg.net[&0].to_string(),
        mock.config_value(101, "net0").unwrap()
    );
    assert_eq!(
        cfg.mp[&0].to_string(),
        mock.config_value(101, "mp0").unwrap()
    );
    assert_eq!(
        cfg.rootfs.unwrap().to_string(),
        mock.config_value(101, "rootfs").unwrap()
    );
    assert_eq!(f.to_string(), mock.config_value(101, "features").unwrap());
    let mp: MountPoint = mock.config_value(101, "mp0").unwrap().parse().unwrap();
    assert_eq!(mp.mp, "/srv/data");

    let st = c.lxc_status("pve1", 101).await.unwrap();
    assert_eq!(st.status, GuestState::Running);
    let snaps = c.lxc_snapshots("pve1", 101).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].name, "current");
}

#[tokio::test]
async fn storage_and_smart() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let st = c.storage("pve1").await.unwrap();
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].content_types(), vec!["iso", "vztmpl", "backup"]);
    // numbers sent as strings
    assert_eq!(st[1].total.get(), Some(500_000_000_000));
    assert_eq!(st[1].kind, "lvmthin");
    assert_eq!(st[2].active, Some(false));

    let ata = c.disk_smart("pve1", "/dev/sda").await.unwrap();
    assert!(ata.is_healthy());
    assert_eq!(ata.kind.as_deref(), Some("ata"));
    assert_eq!(ata.attributes[1].name, "Temperature_Celsius");
    assert_eq!(ata.attributes[1].raw.as_deref(), Some("36 (Min/Max 20/50)"));
    let nvme = c.disk_smart("pve1", "/dev/nvme0n1").await.unwrap();
    assert!(nvme.text.unwrap().contains("Temperature"));
    assert!(matches!(
        c.disk_smart("pve1", "/dev/disk/by-id/x").await,
        Err(Error::InvalidArgument { field: "disk", .. })
    ));
}

#[tokio::test]
async fn config_json_of_the_mock_drives_a_client() {
    let mock = common::mock().await;
    let config = Config::from_json_with_env(&mock.config_json(), |_| None).unwrap();
    let c = Client::new(&config).unwrap();
    assert_eq!(c.version().await.unwrap().release, "9.1");
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_sending() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    assert!(matches!(
        c.lxc_config("pve 1", 100).await,
        Err(Error::InvalidArgument { field: "node", .. })
    ));
    assert!(matches!(
        c.lxc_config("pve1", 7).await,
        Err(Error::InvalidArgument { field: "vmid", .. })
    ));
    assert!(matches!(
        c.snapshot_lxc("pve1", 100, "has space", None).await,
        Err(Error::InvalidArgument {
            field: "snapname",
            ..
        })
    ));
    assert!(matches!(
        c.check_privileges(&[("vms/100", "VM.Audit")]).await,
        Err(Error::InvalidArgument { field: "path", .. })
    ));
    assert!(mock.requests().is_empty());
}
