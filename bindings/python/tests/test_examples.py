"""The examples in examples/python work against the real server and agent
and the mock Proxmox (they are also type-checked in test_stubs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Agent, MockPve, Server

EXAMPLES = REPO / "examples" / "python"


def test_run_everywhere_prints_a_table(server: Server, admin_token: str, agent: Agent) -> None:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_everywhere.py"), "--url", server.url, "--token", admin_token, "echo from-example"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["HOST", "AGENT", "STATUS", "EXIT", "TIME", "OUTPUT"]
    mine = [line for line in lines[1:] if agent.id[:8] in line]
    assert len(mine) == 1, r.stdout
    assert mine[0].split()[2:4] == ["completed", "0"]
    assert mine[0].endswith("from-example")


def test_run_everywhere_reports_failures(server: Server, admin_token: str, agent: Agent) -> None:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_everywhere.py"), "--url", server.url, "--token", admin_token, "exit 9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert any(agent.id[:8] in line and "failed" in line and " 9 " in line for line in r.stdout.splitlines())


def test_proxmox_snapshot_against_the_mock(pve: MockPve, tmp_path: Path) -> None:
    pve.control("add_container", vmid=160, hostname="example-ct", running=True)
    config = tmp_path / "pve.json"
    config.write_text(
        json.dumps(
            {
                "url": pve.url,
                "token_id": pve.token_id,
                "token_secret": pve.token_secret,
                "fingerprint": pve.fingerprint,
                "node": pve.node,
            }
        )
    )
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "proxmox_snapshot.py"), "--config", str(config), "160", "--name", "example-snap", "--rollback", "--delete"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "snapshot: OK" in r.stdout
    assert "snapshot example-snap" in r.stdout
    assert "rollback: OK" in r.stdout and "delete: OK" in r.stdout
    assert "container 160 (example-ct) on pve1" in r.stdout
    assert pve.control("snapshot_names", vmid=160)["names"] == []


def test_proxmox_snapshot_refuses_without_privilege(pve: MockPve, tmp_path: Path) -> None:
    pve.control("add_container", vmid=150, hostname="no-snap", running=False)
    pve.control("set_permissions", path="/vms/150", privileges=["VM.Audit"])
    config = tmp_path / "pve.json"
    config.write_text(
        json.dumps({"url": pve.url, "token_id": pve.token_id, "token_secret": pve.token_secret, "fingerprint": pve.fingerprint, "node": pve.node})
    )
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "proxmox_snapshot.py"), "--config", str(config), "150"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "lacks VM.Snapshot on /vms/150" in r.stderr
