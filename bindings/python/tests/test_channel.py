"""rmm.channel.latest_for over a real downloads directory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import pytest

import rmm
from rmm import channel


def build(d: Path, name: str, tag: Optional[str] = None, sha: bool = True) -> None:
    data = f"binary {name}".encode()
    (d / name).write_bytes(data)
    if sha:
        (d / f"{name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    if tag is not None:
        (d / f"{name}.channel").write_text(tag + "\n")


@pytest.fixture()
def downloads(tmp_path: Path) -> Path:
    build(tmp_path, "rmm-agent-linux-x86_64-0.6.9")
    build(tmp_path, "rmm-agent-linux-x86_64-0.6.10", "stable")
    build(tmp_path, "rmm-agent-linux-x86_64-0.7.0-beta.1", "beta")
    build(tmp_path, "rmm-agent-linux-x86_64-0.8.0", sha=False)  # never offered
    build(tmp_path, "rmm-agent-windows-x86_64-0.9.0.exe")
    return tmp_path


def test_stable_gets_the_newest_stable_by_semver(downloads: Path) -> None:
    r = channel.latest_for(downloads, "linux", "x86_64", "stable")
    assert r is not None
    assert (r.file_name, r.version, r.channel, r.os, r.arch) == (
        "rmm-agent-linux-x86_64-0.6.10",
        "0.6.10",
        "stable",
        "linux",
        "x86_64",
    )
    assert r.sha256 == hashlib.sha256(b"binary rmm-agent-linux-x86_64-0.6.10").hexdigest()


def test_beta_gets_the_newest_whatever_its_tag(downloads: Path) -> None:
    r = channel.latest_for(str(downloads), "linux", "x86_64", "beta")
    assert r is not None and r.version == "0.7.0-beta.1"


def test_nothing_newer_means_none(downloads: Path) -> None:
    assert channel.latest_for(downloads, "linux", "x86_64", "stable", current="0.6.10") is None
    assert channel.latest_for(downloads, "linux", "aarch64") is None
    r = channel.latest_for(downloads, "windows", "x86_64", current="0.1.0")
    assert r is not None and r.file_name.endswith(".exe")


def test_bad_input(downloads: Path, tmp_path: Path) -> None:
    with pytest.raises(rmm.InvalidArgument):
        channel.latest_for(downloads, "plan9", "x86_64")
    with pytest.raises(rmm.InvalidArgument):
        channel.latest_for(downloads, "linux", "x86-64")
    with pytest.raises(rmm.InvalidArgument):
        channel.latest_for(downloads, "linux", "x86_64", "nightly")  # type: ignore[arg-type]
    with pytest.raises(rmm.InvalidArgument):
        channel.latest_for(downloads, "linux", "x86_64", current="one")
    with pytest.raises(rmm.RmmError) as info:
        channel.latest_for(tmp_path / "missing", "linux", "x86_64")
    assert info.value.code == "scan_failed"
