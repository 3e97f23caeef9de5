"""Checked by mypy --strict in test_stubs.py (never run): typical code
against the public API must type-check without casts."""

from __future__ import annotations

import asyncio
from typing import Optional

import rmm
from rmm import channel, proxmox


def blocking(url: str) -> list[tuple[str, Optional[int]]]:
    client = rmm.Client(url)
    token: str = client.login("admin@example.com", "password")
    rows: list[tuple[str, Optional[int]]] = []
    for agent in client.agents():
        r: rmm.CommandResult = client.run(agent.id, "uptime", timeout=30)
        rows.append((agent.hostname, r.exit_code))
        client.run(agent, "echo hi", command_type="bash", context="user_session", wait=False)
    bundle: rmm.EnrollmentBundle = client.create_enrollment("web-01", channel="beta")
    print(token, bundle.command, bundle.expires_at.isoformat())
    return rows


async def concurrent(url: str, token: str) -> list[str]:
    client = rmm.AsyncClient(url, token=token)
    agents = await client.agents()
    results = await asyncio.gather(*(client.run(a.id, "hostname") for a in agents if a.online))
    return [r.stdout for r in results]


def errors(url: str) -> str:
    try:
        rmm.Client(url).agents()
    except rmm.PermissionDenied as e:
        return f"{e.path} {e.privilege}"
    except rmm.TaskFailed as e:
        return f"{e.upid} {e.exitstatus} {e.log_tail}"
    except rmm.RmmError as e:
        return f"{e.code} {e.status}"
    return ""


def pve(secret: str) -> int:
    c = proxmox.Client("https://pve1:8006", "rmm@pve!t", secret, fingerprint="AA:BB", node="pve1")
    upid: rmm.Upid = c.snapshot_lxc(101, "pre")
    outcome: proxmox.TaskOutcome = c.wait_task(upid, timeout=60)
    cfg: proxmox.LxcConfig = c.lxc_config(101)
    c.set_lxc_config(101, {"cores": 2, "onboot": True}, digest=cfg.digest)
    return outcome.warnings + len(cfg.net)


def release(d: str) -> Optional[str]:
    r: Optional[channel.Release] = channel.latest_for(d, "linux", "x86_64", "stable")
    return r.version if r else None
