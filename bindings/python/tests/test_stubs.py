"""The type stubs match the compiled module, and typed code using the
package passes mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=HERE)


def test_stubtest_native_module() -> None:
    r = run("mypy.stubtest", "rmm._native")
    assert r.returncode == 0, r.stdout + r.stderr


def test_stubtest_whole_package() -> None:
    # rmm, rmm._errors, rmm._native, rmm.channel, rmm.proxmox
    r = run("mypy.stubtest", "rmm")
    assert r.returncode == 0, r.stdout + r.stderr


def test_examples_and_typed_usage_pass_mypy_strict() -> None:
    files = [
        str(HERE / "typed_usage.py"),
        str(REPO / "examples" / "python" / "run_everywhere.py"),
        str(REPO / "examples" / "python" / "proxmox_snapshot.py"),
    ]
    r = run("mypy", "--strict", "--no-incremental", *files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_ships_py_typed() -> None:
    import rmm

    assert (Path(rmm.__file__).parent / "py.typed").is_file()
    assert (Path(rmm.__file__).parent / "_native.pyi").is_file()
