#!/usr/bin/env python3
"""Run one command on every online agent at once and print a table.

    pip install ./bindings/python
    RMM_PASSWORD=... python examples/python/run_everywhere.py --email admin@example.com 'uptime'

The server URL comes from --url or RMM_URL (default http://127.0.0.1:3001);
credentials from --token / RMM_TOKEN, or --email / RMM_EMAIL plus
RMM_PASSWORD (asked for when unset). Exit status: 0 when every command
succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from typing import Optional, Union

import rmm


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", help="script text to run, e.g. 'uptime'")
    p.add_argument("--url", default=os.environ.get("RMM_URL", "http://127.0.0.1:3001"))
    p.add_argument("--token", default=os.environ.get("RMM_TOKEN"))
    p.add_argument("--email", default=os.environ.get("RMM_EMAIL", "admin@example.com"))
    p.add_argument("--type", dest="command_type", default="shell",
                   choices=["shell", "bash", "sh", "powershell", "python"])
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before the agent kills the command")
    return p.parse_args()


def first_line(text: str, width: int = 50) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


async def run_one(
    client: rmm.AsyncClient, agent: rmm.Agent, args: argparse.Namespace
) -> tuple[rmm.Agent, Union[rmm.CommandResult, rmm.RmmError], float]:
    t0 = time.monotonic()
    try:
        result: Union[rmm.CommandResult, rmm.RmmError] = await client.run(
            agent.id,
            args.command,
            command_type=args.command_type,
            timeout=args.timeout,
            wait_timeout=args.timeout + 60,
        )
    except rmm.RmmError as e:  # one agent's failure does not stop the others
        result = e
    return agent, result, time.monotonic() - t0


async def main() -> int:
    args = parse_args()
    client = rmm.AsyncClient(args.url, token=args.token)
    if args.token is None:
        password: Optional[str] = os.environ.get("RMM_PASSWORD") or getpass.getpass(f"password for {args.email}: ")
        await client.login(args.email, password or "")
    agents = [a for a in await client.agents() if a.online]
    if not agents:
        print("no agent is online", file=sys.stderr)
        return 1
    rows = await asyncio.gather(*(run_one(client, a, args) for a in agents))

    header = ("HOST", "AGENT", "STATUS", "EXIT", "TIME", "OUTPUT")
    table: list[tuple[str, ...]] = [header]
    all_ok = True
    for agent, result, seconds in sorted(rows, key=lambda r: r[0].hostname):
        if isinstance(result, rmm.RmmError):
            all_ok = False
            table.append((agent.hostname, agent.id[:8], f"error:{result.code}", "-", f"{seconds:.1f}s", str(result)))
            continue
        all_ok &= result.ok
        output = result.stdout if result.stdout.strip() else result.stderr
        exit_code = "-" if result.exit_code is None else str(result.exit_code)
        table.append((agent.hostname, agent.id[:8], result.status, exit_code, f"{seconds:.1f}s", first_line(output)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0 if all_ok else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except rmm.AuthError as e:
        sys.exit(f"login failed: {e}")
    except rmm.TransportError as e:
        sys.exit(f"cannot reach the server: {e}")
