"""Proxmox VE API client: typed reads, operations that return a
:class:`~rmm.Upid`, and :meth:`Client.wait_task`.

::

    from rmm import proxmox
    pve = proxmox.Client("https://pve1:8006", "rmm@pve!automation", secret,
                         fingerprint="AB:CD:...", node="pve1")
    upid = pve.snapshot_lxc(101, "pre-upgrade")
    pve.wait_task(upid)          # raises rmm.TaskFailed / rmm.Timeout

``Client.from_config(path)`` reads a JSON config file plus the
``RMM_PVE_*`` environment variables. :class:`AsyncClient` has the same
methods, awaitable from asyncio.
"""

from __future__ import annotations

from ._native import AsyncProxmoxClient as AsyncClient
from ._native import LxcConfig, LxcSummary, NodeStatus, NodeSummary
from ._native import ProxmoxClient as Client
from ._native import SnapshotInfo, StorageSummary, TaskOutcome, TaskStatus, Upid, Version

__all__ = [
    "AsyncClient",
    "Client",
    "LxcConfig",
    "LxcSummary",
    "NodeStatus",
    "NodeSummary",
    "SnapshotInfo",
    "StorageSummary",
    "TaskOutcome",
    "TaskStatus",
    "Upid",
    "Version",
]
