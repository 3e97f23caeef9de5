"""The blocking client against a real rmm-server and rmm-agent."""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid

import pytest

import rmm

from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Agent, Server


def test_login_returns_a_token_that_a_new_client_can_reuse(server: Server, admin_token: str) -> None:
    assert admin_token.count(".") == 2  # a JWT
    reused = rmm.Client(server.url + "/", token=admin_token)
    assert reused.base_url == server.url
    assert reused.token == admin_token
    assert isinstance(reused.agents(), list)


def test_login_keeps_the_token_on_the_client(server: Server) -> None:
    c = rmm.Client(server.url)
    assert c.token is None
    token = c.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert c.token == token
    c.agents()


def test_wrong_password_is_an_auth_error(server: Server) -> None:
    c = rmm.Client(server.url)
    with pytest.raises(rmm.AuthError) as info:
        c.login("nobody@example.com", "wrong password here")
    assert info.value.status == 401
    assert info.value.code == "invalid_credentials"
    assert isinstance(info.value, rmm.RmmError)


def test_bad_token_is_an_auth_error(server: Server) -> None:
    c = rmm.Client(server.url, token="not.a.jwt")
    with pytest.raises(rmm.AuthError) as info:
        c.agents()
    assert info.value.status == 401
    assert info.value.code


def test_no_token_is_an_auth_error_before_any_request(server: Server) -> None:
    with pytest.raises(rmm.AuthError) as info:
        rmm.Client(server.url).agents()
    assert info.value.status is None


def test_unreachable_server_is_a_transport_error() -> None:
    c = rmm.Client("http://127.0.0.1:9", token="x")
    with pytest.raises(rmm.TransportError) as info:
        c.agents()
    assert isinstance(info.value, ConnectionError)
    assert info.value.code == "transport"
    assert "refused" in str(info.value).lower()


def test_bad_base_url_is_invalid_argument() -> None:
    with pytest.raises(rmm.InvalidArgument) as info:
        rmm.Client("ftp://example.com")
    assert isinstance(info.value, ValueError)
    assert info.value.code == "invalid_url"


def test_agents_lists_the_running_agent(client: rmm.Client, agent: Agent) -> None:
    agents = {a.id: a for a in client.agents()}
    me = agents[agent.id]
    assert me.online and me.status == "online"
    assert me.name == agent.name
    assert me.os == "linux"
    assert me.channel == "stable"
    assert me.hostname
    assert isinstance(me.last_seen, datetime.datetime)
    assert me.last_seen.tzinfo is not None
    assert agent.id in repr(me)
    assert client.agent(agent.id).name == agent.name
    assert client.agent(uuid.UUID(agent.id)).id == agent.id


def test_run_waits_for_the_result(client: rmm.Client, agent: Agent) -> None:
    r = client.run(agent.id, "echo hello; echo oops >&2")
    assert r.status == "completed"
    assert r.exit_code == 0 and r.ok and r.is_final
    assert r.stdout == "hello\n"
    assert r.stderr == "oops\n"
    assert r.agent_id == agent.id
    assert r.command_type == "shell" and r.context == "system"
    assert r.command == "echo hello; echo oops >&2"
    assert r.created_by == ADMIN_EMAIL
    assert r.started_at is not None and r.completed_at is not None
    assert r.created_at <= r.started_at <= r.completed_at
    assert r.phase == "done"


def test_run_accepts_agent_objects_and_other_interpreters(client: rmm.Client, agent: Agent) -> None:
    me = client.agent(agent.id)
    r = client.run(me, "import sys; print(6 * 7)", command_type="python")
    assert (r.status, r.stdout) == ("completed", "42\n")
    r = client.run(me, "declare -A m=([k]=v); echo ${m[k]}", command_type="bash")
    assert r.stdout == "v\n"


def test_non_zero_exit_is_a_failed_result_not_an_exception(client: rmm.Client, agent: Agent) -> None:
    r = client.run(agent.id, "echo partial; exit 3")
    assert r.status == "failed"
    assert r.exit_code == 3
    assert not r.ok
    assert r.stdout == "partial\n"


def test_command_timeout_kills_the_command(client: rmm.Client, agent: Agent) -> None:
    t0 = time.monotonic()
    r = client.run(agent.id, "echo started; sleep 30", timeout=1, wait_timeout=25)
    assert r.status == "timeout"
    assert r.timeout == 1
    assert r.stdout == "started\n"
    assert time.monotonic() - t0 < 20


def test_wait_timeout_raises_timeout(client: rmm.Client, agent: Agent) -> None:
    t0 = time.monotonic()
    with pytest.raises(rmm.Timeout) as info:
        client.run(agent.id, "sleep 30", timeout=10, wait_timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert info.value.code == "timeout"
    assert time.monotonic() - t0 < 5


def test_run_without_wait_then_wait(client: rmm.Client, agent: Agent) -> None:
    pending = client.run(agent.id, "sleep 0.3; echo late", wait=False)
    assert pending.status == "running" and not pending.is_final
    assert pending.exit_code is None
    done = client.wait(pending.id, timeout=20)
    assert (done.status, done.stdout) == ("completed", "late\n")
    assert client.command(pending).stdout == "late\n"


def test_cancel_a_running_command(client: rmm.Client, agent: Agent) -> None:
    pending = client.run(agent.id, "echo begun; sleep 60", wait=False)
    deadline = time.monotonic() + 20
    while client.command(pending.id).phase != "executing":
        assert time.monotonic() < deadline, "command never started"
        time.sleep(0.05)
    after = client.cancel(pending.id)
    assert after.id == pending.id
    assert after.cancel_requested_at is not None
    final = client.wait(pending.id, timeout=20)
    assert final.status == "cancelled"
    with pytest.raises(rmm.Conflict) as info:
        client.cancel(pending.id)
    assert info.value.status == 409


def test_unknown_agent_is_not_found(client: rmm.Client) -> None:
    with pytest.raises(rmm.NotFound) as info:
        client.run(str(uuid.uuid4()), "true")
    assert info.value.status == 404
    assert info.value.code == "not_found"
    with pytest.raises(rmm.NotFound):
        client.agent(uuid.uuid4())


def test_unknown_command_is_not_found(client: rmm.Client) -> None:
    with pytest.raises(rmm.NotFound):
        client.command(str(uuid.uuid4()))


def test_invalid_arguments(client: rmm.Client, agent: Agent) -> None:
    with pytest.raises(rmm.InvalidArgument):
        client.run(agent.id, "true", command_type="fish")  # type: ignore[arg-type]
    with pytest.raises(rmm.InvalidArgument):
        client.run(agent.id, "true", context="root")  # type: ignore[arg-type]
    with pytest.raises(rmm.InvalidArgument):
        client.run("not-a-uuid", "true")
    with pytest.raises(rmm.InvalidArgument):
        client.run(agent.id, "true", timeout=0)
    with pytest.raises(TypeError):
        client.run(42, "true")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.run(1.5, "true")  # type: ignore[arg-type]
    # rejected by the server (422)
    with pytest.raises(rmm.InvalidArgument) as info:
        client.run(agent.id, "   ")
    assert info.value.status == 422


def test_enrollment_bundles(client: rmm.Client, agent: Agent) -> None:
    name = f"py-bundle-{uuid.uuid4().hex[:6]}"
    b = client.create_enrollment(name, channel="beta")
    assert len(b.token) >= 32
    assert b.token in b.command and b.command.startswith("curl ")
    assert b.expires_at > datetime.datetime.now(datetime.timezone.utc)
    assert b.token not in repr(b)
    uuid.UUID(b.agent_id)
    with pytest.raises(rmm.InvalidArgument):
        client.create_enrollment("Not A DNS Label")
    with pytest.raises(rmm.Conflict):
        client.create_enrollment(agent.name)


def test_agent_commands_pages(client: rmm.Client, agent: Agent) -> None:
    ids = [client.run(agent.id, f"echo page {i}").id for i in range(3)]
    page = client.agent_commands(agent.id, limit=2)
    assert [c.id for c in page] == ids[::-1][:2]
    older = client.agent_commands(agent.id, limit=1, before=page[-1].id)
    assert [c.id for c in older] == [ids[0]]


def test_blocking_calls_release_the_gil(client: rmm.Client, agent: Agent) -> None:
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.01)

    t = threading.Thread(target=spin)
    t.start()
    try:
        client.run(agent.id, "sleep 1")
    finally:
        stop.set()
        t.join()
    assert ticks > 30


def test_threads_share_one_client(client: rmm.Client, agent: Agent) -> None:
    results: list[str] = []

    def work(i: int) -> None:
        results.append(client.run(agent.id, f"echo thread {i}").stdout)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"thread {i}\n" for i in range(8))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_client_works_in_a_forked_child(client: rmm.Client, agent: Agent) -> None:
    # use the runtime and the connection pool in the parent first
    assert client.run(agent.id, "echo parent").stdout == "parent\n"
    pid = os.fork()
    if pid == 0:  # child: exit status tells the parent what happened
        code = 1
        try:
            r = client.run(agent.id, "echo child", wait_timeout=20)
            code = 0 if r.stdout == "child\n" else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # and the parent is unaffected
    assert client.run(agent.id, "echo parent again").stdout == "parent again\n"


def test_exceptions_pickle_with_their_attributes() -> None:
    import pickle

    e = rmm.PermissionDenied("no", code="permission_denied", status=403, path="/vms/1", privilege="VM.Audit")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is rmm.PermissionDenied
    assert (back.code, back.status, back.path, back.privilege, str(back)) == (
        "permission_denied",
        403,
        "/vms/1",
        "VM.Audit",
        "no",
    )


def test_ctrl_c_interrupts_a_blocking_wait(client: rmm.Client, agent: Agent) -> None:
    import _thread

    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.run(agent.id, "sleep 10", timeout=15)
    assert time.monotonic() - t0 < 3
    timer.join()
