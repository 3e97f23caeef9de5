"""rmm.proxmox against the schema-validating mock Proxmox VE (real HTTPS)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

import rmm
from rmm import proxmox

from conftest import MockPve

FAST = 0.05  # poll interval for wait_task against the mock


def test_typed_reads(pve: MockPve) -> None:
    c = pve.client()
    assert c.url == pve.url and c.node == "pve1"
    assert "secret" not in repr(c) and pve.token_secret not in repr(c)
    v = c.version()
    assert (v.version, v.release) == ("9.1.1", "9.1")
    nodes = {n.node: n for n in c.nodes()}
    assert nodes["pve1"].status == "online" and nodes["pve1"].maxcpu == 16
    assert nodes["pve2"].status == "offline" and nodes["pve2"].maxcpu is None
    st = c.node_status()
    assert st.loadavg == [0.12, 0.30, 0.25]  # sent as strings by Proxmox
    assert st.cpus == 32 and st.memory_total == 68_719_476_736
    cts = {ct.vmid: ct for ct in c.lxc_list()}
    assert cts[100].template and cts[100].status == "stopped"
    assert cts[101].status == "running" and cts[101].name == "cust-a-web"
    assert c.lxc_status(101).status == "running"
    cfg = c.lxc_config(101)
    assert cfg.hostname == "cust-a-web" and cfg.cores == 2
    assert cfg.tags == ["cust-a", "web"]
    assert cfg.net[0].startswith("name=eth0,bridge=vmbr0")
    assert "mp=/srv/data" in cfg.mp[0]
    assert cfg.features == "keyctl=1,nesting=1"
    assert cfg.digest
    storages = {s.storage: s for s in c.storage(node="pve1")}
    assert storages["local-lvm"].type == "lvmthin"
    assert storages["local-lvm"].total == 500_000_000_000  # numbers as strings
    assert storages["pbs"].active is False
    assert "VM.Snapshot" in c.permissions("/vms/101")
    assert c.check_privileges([("/vms/101", "VM.Snapshot"), ("/vms/101", "Sys.Console")]) == [
        ("/vms/101", "Sys.Console")
    ]


def test_snapshot_rollback_delete_with_wait_task(pve: MockPve) -> None:
    c = pve.client()
    upid = c.snapshot_lxc(101, "pre-upgrade", description="before the upgrade")
    assert isinstance(upid, rmm.Upid)
    assert (upid.node, upid.task_type, upid.id, upid.user) == ("pve1", "vzsnapshot", "101", pve.token_id)
    assert rmm.Upid(str(upid)) == upid and hash(rmm.Upid(str(upid))) == hash(upid)
    assert c.task_status(upid).status in ("running", "stopped")
    done = c.wait_task(upid, poll_interval=FAST)
    assert (done.exitstatus, done.warnings) == ("OK", 0)
    assert done.upid == upid
    assert pve.control("snapshot_names", vmid=101)["names"] == ["pre-upgrade"]
    snaps = [s.name for s in c.lxc_snapshots(101)]
    assert snaps == ["pre-upgrade", "current"]

    c.set_lxc_config(101, {"cores": 4, "onboot": True, "description": "changed"})
    assert pve.control("config_value", vmid=101, key="cores")["value"] == "4"
    assert pve.control("config_value", vmid=101, key="onboot")["value"] == "1"
    c.wait_task(c.rollback_lxc(101, "pre-upgrade", start=True), poll_interval=FAST)
    assert pve.control("config_value", vmid=101, key="cores")["value"] == "2"
    c.wait_task(str(c.delete_lxc_snapshot(101, "pre-upgrade")), poll_interval=FAST)
    assert pve.control("snapshot_names", vmid=101)["names"] == []


def test_stop_start_vzdump_restore(pve: MockPve) -> None:
    c = pve.client()
    pve.control("add_container", vmid=120, hostname="scratch", running=True)
    c.wait_task(c.stop_lxc(120), poll_interval=FAST)
    assert pve.control("is_running", vmid=120)["running"] is False
    c.wait_task(c.start_lxc(120), poll_interval=FAST)
    assert pve.control("is_running", vmid=120)["running"] is True
    c.wait_task(c.vzdump([120], storage="local", mode="snapshot", compress="zstd"), poll_interval=FAST)
    upid = c.restore_lxc(
        121,
        "local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst",
        storage="local-lvm",
        hostname="cust-b-web",
    )
    assert upid.task_type == "vzrestore"
    c.wait_task(upid, poll_interval=FAST)
    assert c.lxc_config(121).hostname == "cust-b-web"


def test_permission_denied_names_path_and_privilege(pve: MockPve) -> None:
    pve.control("add_container", vmid=130, hostname="locked", running=False)
    pve.control("set_permissions", path="/vms/130", privileges=["VM.Audit"])
    c = pve.client()
    with pytest.raises(rmm.PermissionDenied) as info:
        c.snapshot_lxc(130, "nope")
    e = info.value
    assert (e.path, e.privilege) == ("/vms/130", "VM.Snapshot")
    assert e.status == 403 and e.code == "permission_denied"
    assert "VM.Snapshot" in str(e)
    assert c.check_privileges([("/vms/130", "VM.Snapshot")]) == [("/vms/130", "VM.Snapshot")]


def test_failed_task_raises_task_failed(pve: MockPve) -> None:
    c = pve.client()
    pve.control("add_container", vmid=140, hostname="failing", running=False)
    pve.control("next_task", exitstatus="command 'lxc-start' failed: exit code 1", log_lines=3)
    upid = c.start_lxc(140)
    with pytest.raises(rmm.TaskFailed) as info:
        c.wait_task(upid, poll_interval=FAST)
    e = info.value
    assert e.upid == str(upid)
    assert e.exitstatus == "command 'lxc-start' failed: exit code 1"
    assert e.log_tail[-1].startswith("TASK ERROR")
    assert e.code == "task_failed"


def test_task_wait_timeout(pve: MockPve) -> None:
    c = pve.client()
    pve.control("add_container", vmid=141, hostname="slow", running=False)
    pve.control("next_task", running_polls=1000)
    upid = c.start_lxc(141)
    with pytest.raises(rmm.Timeout) as info:
        c.wait_task(upid, timeout=0.3, poll_interval=FAST)
    assert info.value.upid == str(upid)
    assert info.value.code == "task_timeout"


def test_not_found_unreachable_and_bad_arguments(pve: MockPve) -> None:
    c = pve.client()
    with pytest.raises(rmm.NotFound):
        c.lxc_config(999)
    with pytest.raises(rmm.ServerError) as info:
        c.lxc_list(node="pve2")  # offline node: HTTP 596
    assert info.value.code == "node_unreachable"
    with pytest.raises(rmm.InvalidArgument):
        c.snapshot_lxc(101, "bad name with spaces")
    with pytest.raises(rmm.InvalidArgument):
        c.vzdump([101], compress="rar")  # type: ignore[arg-type]
    with pytest.raises(rmm.InvalidArgument):
        rmm.Upid("not a upid")
    no_node = pve.client(node=None)
    with pytest.raises(rmm.InvalidArgument):
        no_node.lxc_list()
    assert [ct.vmid for ct in no_node.lxc_list(node="pve1")][:2] == [100, 101]


def test_wrong_secret_is_auth_error(pve: MockPve) -> None:
    c = proxmox.Client(pve.url, pve.token_id, str(uuid.uuid4()), fingerprint=pve.fingerprint)
    with pytest.raises(rmm.AuthError) as info:
        c.version()
    assert info.value.status == 401


def test_tls_trust(pve: MockPve) -> None:
    wrong = ":".join(["AB"] * 32)
    with pytest.raises(rmm.TransportError) as info:
        pve.client(fingerprint=wrong).version()
    assert info.value.code == "tls"
    # the cluster CA file instead of a pin
    c = proxmox.Client(pve.url, pve.token_id, pve.token_secret, ca_file=pve.ca_file, node="pve1")
    assert c.version().release == "9.1"
    with pytest.raises(rmm.InvalidArgument):
        proxmox.Client(pve.url, pve.token_id, pve.token_secret, fingerprint=wrong, ca_file=pve.ca_file)
    with pytest.raises(rmm.InvalidArgument):
        proxmox.Client("http://insecure.example", pve.token_id, pve.token_secret)


def test_from_config_file(pve: MockPve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pve.json"
    path.write_text(
        json.dumps(
            {
                "url": pve.url,
                "token_id": pve.token_id,
                "token_secret": pve.token_secret,
                "fingerprint": pve.fingerprint,
                "node": "pve1",
            }
        )
    )
    c = proxmox.Client.from_config(path)
    assert c.node == "pve1" and c.version().version == "9.1.1"
    monkeypatch.setenv("RMM_PVE_NODE", "pve2")
    assert proxmox.Client.from_config(str(path)).node == "pve2"
    with pytest.raises(rmm.InvalidArgument):
        proxmox.Client.from_config(tmp_path / "missing.json")


def test_async_client(pve: MockPve) -> None:
    async def main() -> None:
        c = proxmox.AsyncClient(pve.url, pve.token_id, pve.token_secret, fingerprint=pve.fingerprint, node="pve1")
        v, cts = await asyncio.gather(c.version(), c.lxc_list())
        assert v.release == "9.1" and 101 in [ct.vmid for ct in cts]
        upid = await c.snapshot_lxc(101, "async-snap")
        await c.wait_task(upid, poll_interval=FAST)
        await c.wait_task(await c.delete_lxc_snapshot(101, "async-snap"), poll_interval=FAST)
        with pytest.raises(rmm.NotFound):
            await c.lxc_config(998)

    asyncio.run(main())
    assert pve.control("snapshot_names", vmid=101)["names"] == []
