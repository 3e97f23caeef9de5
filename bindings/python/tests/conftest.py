"""Fixtures: a real rmm-server and rmm-agent on 127.0.0.1, and the
schema-validating mock Proxmox VE, all as child processes.

Binaries come from the cargo target directory (``cargo build --workspace
--bins``; ``CARGO_TARGET_DIR`` or ``cargo metadata`` says where), or from
``RMM_SERVER_BIN`` / ``RMM_AGENT_BIN`` / ``RMM_MOCK_PVE_BIN``. A missing
binary fails the session: these tests never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional

import pytest

import rmm

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
REPO = Path(__file__).resolve().parents[3]


def _target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        return Path(env)
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["target_directory"])


def _binary(env: str, name: str) -> Path:
    if os.environ.get(env):
        path = Path(os.environ[env])
    else:
        profile = os.environ.get("RMM_TEST_PROFILE", "debug")
        path = _target_dir() / profile / name
    if not path.is_file():
        pytest.fail(
            f"{path} does not exist: build it first with `cargo build --workspace --bins` "
            f"(or set {env})",
            pytrace=False,
        )
    return path


def _drain(pipe: IO[str], log: Path, first: "Optional[list[str]]" = None, ready: Optional[threading.Event] = None, marker: str = "") -> None:
    with open(log, "a", encoding="utf-8") as f:
        for line in pipe:
            f.write(line)
            f.flush()
            if ready is not None and not ready.is_set() and marker in line:
                assert first is not None
                first.append(line)
                ready.set()


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class Agent:
    def __init__(self, agent_id: str, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.id = agent_id
        self.name = name
        self.proc = proc
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rmm-pytest-"))
    yield d
    if os.environ.get("RMM_KEEP_TEST_DIR"):
        print(f"test files kept in {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def server(workdir: Path) -> Iterator[Server]:
    binary = _binary("RMM_SERVER_BIN", "rmm-server")
    log = workdir / "server.log"
    env = dict(os.environ, RMM_ADMIN_EMAIL=ADMIN_EMAIL, RMM_ADMIN_PASSWORD=ADMIN_PASSWORD)
    env.setdefault("RMM_LOG", "info,sqlx=warn")
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(workdir / "server")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first: List[str] = []
    ready = threading.Event()
    threading.Thread(
        target=_drain, args=(proc.stdout, log, first, ready, "listening on http://"), daemon=True
    ).start()
    if not ready.wait(60):
        _stop(proc)
        pytest.fail(f"rmm-server did not start; log:\n{log.read_text()}", pytrace=False)
    line = first[0]
    url = line[line.index("http://") :].split()[0].rstrip("/")
    srv = Server(url, proc, log)
    yield srv
    _stop(proc)


@pytest.fixture(scope="session")
def admin_token(server: Server) -> str:
    return rmm.Client(server.url).login(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture()
def client(server: Server, admin_token: str) -> rmm.Client:
    """A client reusing the session's login (one login: the server rate
    limits repeated logins)."""
    return rmm.Client(server.url, token=admin_token)


def _start_agent(server: Server, workdir: Path, token: str, name: str) -> "tuple[Path, subprocess.Popen[bytes], Path]":
    binary = _binary("RMM_AGENT_BIN", "rmm-agent")
    state = workdir / f"agent-{name}"
    enroll = subprocess.run(
        [str(binary), "enroll", "--server", server.url, "--state-dir", str(state)],
        env=dict(os.environ, RMM_ENROLL_TOKEN=token),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if enroll.returncode != 0:
        pytest.fail(f"rmm-agent enroll failed:\n{enroll.stderr}\nserver log:\n{server.log_text()}", pytrace=False)
    log = workdir / f"agent-{name}.log"
    env = dict(
        os.environ,
        RMM_AGENT_INITIAL_DELAY_MS="0",
        RMM_AGENT_BACKOFF_BASE_MS="100",
        RMM_AGENT_BACKOFF_CAP_MS="800",
        RMM_AGENT_KILL_GRACE_MS="300",
        RMM_AGENT_MACHINE_ID=f"pytest-{name}",
        RMM_LOG="info",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "run", "--state-dir", str(state)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return state, proc, log


@pytest.fixture(scope="session")
def agent(server: Server, admin_token: str, workdir: Path) -> Iterator[Agent]:
    """An agent enrolled through the binding's create_enrollment() and
    running; the fixture waits until the server lists it online."""
    client = rmm.Client(server.url, token=admin_token)
    name = f"py-{uuid.uuid4().hex[:8]}"
    bundle = client.create_enrollment(name)
    _, proc, log = _start_agent(server, workdir, bundle.token, name)
    ag = Agent(bundle.agent_id, name, proc, log)
    deadline = time.monotonic() + 30
    while True:
        if any(a.id == ag.id and a.online for a in client.agents()):
            break
        if time.monotonic() > deadline or proc.poll() is not None:
            _stop(proc)
            pytest.fail(
                f"agent not online; agent log:\n{ag.log_text()}\nserver log:\n{server.log_text()}",
                pytrace=False,
            )
        time.sleep(0.05)
    yield ag
    _stop(proc)


class MockPve:
    """The testkit's mock Proxmox VE, scripted over its stdin."""

    def __init__(self, proc: subprocess.Popen[str], info: Dict[str, Any], workdir: Path) -> None:
        self.proc = proc
        self.url: str = info["url"]
        self.fingerprint: str = info["fingerprint"]
        self.token_id: str = info["token_id"]
        self.token_secret: str = info["token_secret"]
        self.node: str = info["node"]
        self.ca_pem: str = info["ca_pem"]
        self.ca_file = workdir / "pve-ca.pem"
        self.ca_file.write_text(self.ca_pem)
        self._lock = threading.Lock()

    def control(self, op: str, **args: Any) -> Dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(dict(args, op=op)) + "\n")
            self.proc.stdin.flush()
            answer: Dict[str, Any] = json.loads(self.proc.stdout.readline())
        assert answer.get("ok"), answer
        return answer

    def client(self, **kw: Any) -> rmm.proxmox.Client:
        kw.setdefault("fingerprint", self.fingerprint)
        kw.setdefault("node", self.node)
        return rmm.proxmox.Client(self.url, self.token_id, self.token_secret, **kw)


@pytest.fixture(scope="session")
def mock_pve(workdir: Path) -> Iterator[MockPve]:
    binary = _binary("RMM_MOCK_PVE_BIN", "rmm-testkit-mock-pve")
    err = open(workdir / "mock-pve.log", "w")
    proc = subprocess.Popen(
        [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"mock proxmox did not start: {(workdir / 'mock-pve.log').read_text()}", pytrace=False)
    mock = MockPve(proc, json.loads(line), workdir)
    yield mock
    violations = mock.control("violations")["violations"]
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)
    err.close()
    assert violations == [], f"requests that violate the Proxmox API schema: {violations}"
    assert proc.returncode == 0


@pytest.fixture()
def pve(mock_pve: MockPve) -> Iterator[MockPve]:
    """The mock, with any schema violation of the test reported by it."""
    yield mock_pve
    violations = mock_pve.control("violations")["violations"]
    assert violations == [], f"requests that violate the Proxmox API schema: {violations}"
