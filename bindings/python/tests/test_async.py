"""rmm.AsyncClient from asyncio against the real server and agent."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import rmm

from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Agent, Server


def test_async_login_and_agents(server: Server, agent: Agent) -> None:
    async def main() -> None:
        c = rmm.AsyncClient(server.url)
        token = await c.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        assert c.token == token
        agents = await c.agents()
        assert any(a.id == agent.id and a.online for a in agents)
        assert (await c.agent(agent.id)).name == agent.name

    asyncio.run(main())


def test_fifty_commands_in_flight_with_gather(admin_token: str, server: Server, agent: Agent) -> None:
    async def main() -> list[rmm.CommandResult]:
        c = rmm.AsyncClient(server.url, token=admin_token)
        return await asyncio.gather(
            *(c.run(agent.id, f"sleep 0.2; echo {i}", wait_timeout=120) for i in range(50))
        )

    t0 = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - t0
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(50)]
    assert all(r.status == "completed" and r.exit_code == 0 for r in results)
    assert len({r.id for r in results}) == 50
    # concurrently, not one after the other (50 x 0.2 s would be 10 s)
    assert elapsed < 9, elapsed


def test_async_errors_are_the_same_exceptions(admin_token: str, server: Server, agent: Agent) -> None:
    async def main() -> None:
        c = rmm.AsyncClient(server.url, token=admin_token)
        with pytest.raises(rmm.NotFound):
            await c.run(str(uuid.uuid4()), "true")
        with pytest.raises(rmm.AuthError):
            await rmm.AsyncClient(server.url, token="bad").agents()
        with pytest.raises(rmm.InvalidArgument):
            await c.run(agent.id, "true", command_type="fish")  # type: ignore[arg-type]
        r = await c.run(agent.id, "exit 4")
        assert (r.status, r.exit_code) == ("failed", 4)
        with pytest.raises(rmm.Timeout):
            await c.run(agent.id, "sleep 20", timeout=5, wait_timeout=0.3)

    asyncio.run(main())


def test_async_timeout_and_cancel(admin_token: str, server: Server, agent: Agent) -> None:
    async def main() -> None:
        c = rmm.AsyncClient(server.url, token=admin_token)
        r = await c.run(agent.id, "sleep 30", timeout=1, wait_timeout=25)
        assert r.status == "timeout"
        pending = await c.run(agent.id, "sleep 60", wait=False)
        while (await c.command(pending.id)).phase != "executing":
            await asyncio.sleep(0.05)
        await c.cancel(pending.id)
        final = await c.wait(pending.id, timeout=20)
        assert final.status == "cancelled"

    asyncio.run(main())


def test_cancelling_the_awaitable_leaves_the_loop_usable(admin_token: str, server: Server, agent: Agent) -> None:
    async def main() -> None:
        c = rmm.AsyncClient(server.url, token=admin_token)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.run(agent.id, "sleep 5"), timeout=0.3)
        # the loop and the client still work
        r = await c.run(agent.id, "echo after")
        assert r.stdout == "after\n"

    asyncio.run(main())


def test_awaiting_outside_a_running_loop_is_an_error(admin_token: str, server: Server) -> None:
    c = rmm.AsyncClient(server.url, token=admin_token)
    with pytest.raises(RuntimeError):
        c.agents()
