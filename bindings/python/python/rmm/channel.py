"""Release channels: which agent build should an agent get?

``latest_for(dir, os, arch, channel)`` scans a downloads directory of
``rmm-agent-{os}-{arch}-{version}[.exe]`` builds with ``.sha256`` and
``.channel`` sidecars: a beta agent gets the newest build whatever its tag, a
stable agent the newest build tagged stable (no sidecar means stable);
versions compare as semantic versions; nothing is offered unless it is newer
than ``current``.
"""

from __future__ import annotations

from ._native import Release, latest_for

__all__ = ["Release", "latest_for"]
