#!/usr/bin/env python3
"""Snapshot a Proxmox VE container before a risky change, and optionally
roll back to it and/or delete it afterwards.

    pip install ./bindings/python
    python examples/python/proxmox_snapshot.py --config pve.json 101
    python examples/python/proxmox_snapshot.py --config pve.json 101 --name pre-upgrade --rollback --delete

The connection comes from a JSON config file (url, token_id,
token_secret[_file], fingerprint or ca_file, node) and/or the RMM_PVE_*
environment variables — see rmm-proxmox/README.md. Try it against the mock:
`cargo run -p rmm-proxmox --features mock-server --example mock_pve --
--write-config /tmp/pve.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

import rmm
from rmm import proxmox


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vmid", type=int, help="container id")
    p.add_argument("--config", help="JSON config file (else RMM_PVE_* only)")
    p.add_argument("--node", help="node of the container (default: the config's node)")
    p.add_argument("--name", default=time.strftime("rmm-%Y%m%d-%H%M%S"), help="snapshot name")
    p.add_argument("--rollback", action="store_true", help="roll back to the snapshot afterwards")
    p.add_argument("--delete", action="store_true", help="delete the snapshot at the end")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each task")
    return p.parse_args()


def wait(pve: proxmox.Client, what: str, upid: rmm.Upid, timeout: float) -> None:
    print(f"{what}: {upid}")
    outcome = pve.wait_task(upid, timeout=timeout)
    extra = f" ({outcome.warnings} warnings)" if outcome.warnings else ""
    print(f"{what}: {outcome.exitstatus}{extra}")


def main() -> int:
    args = parse_args()
    pve = proxmox.Client.from_config(args.config)
    node: Optional[str] = args.node or pve.node
    if node is None:
        print("no node: pass --node or set it in the config", file=sys.stderr)
        return 2
    # Refuse early, with a clear message, instead of failing halfway.
    privileges = [(f"/vms/{args.vmid}", "VM.Snapshot"), (f"/vms/{args.vmid}", "VM.Audit")]
    if args.rollback:
        privileges.append((f"/vms/{args.vmid}", "VM.Snapshot.Rollback"))
    missing = pve.check_privileges(privileges)
    if missing:
        for path, privilege in missing:
            print(f"the API token lacks {privilege} on {path}", file=sys.stderr)
        return 2

    cfg = pve.lxc_config(args.vmid, node=node)
    print(f"container {args.vmid} ({cfg.hostname}) on {node}")
    wait(pve, "snapshot", pve.snapshot_lxc(args.vmid, args.name, description="taken by rmm", node=node), args.timeout)
    for snap in pve.lxc_snapshots(args.vmid, node=node):
        if snap.name != "current":
            print(f"  snapshot {snap.name}  parent={snap.parent or '-'}  {snap.description or ''}")
    if args.rollback:
        wait(pve, "rollback", pve.rollback_lxc(args.vmid, args.name, node=node), args.timeout)
    if args.delete:
        wait(pve, "delete", pve.delete_lxc_snapshot(args.vmid, args.name, node=node), args.timeout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except rmm.PermissionDenied as e:
        sys.exit(f"permission denied: {e.privilege or '?'} on {e.path or '?'} ({e})")
    except rmm.TaskFailed as e:
        sys.exit(f"task {e.upid} failed: {e.exitstatus}\n" + "\n".join(e.log_tail))
    except rmm.RmmError as e:
        sys.exit(f"error ({e.code}): {e}")
