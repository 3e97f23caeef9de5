"""rmm — a client SDK for the rmm remote monitoring and management server,
Proxmox VE hosts and release channels.

Blocking, for scripts::

    import rmm
    client = rmm.Client("http://127.0.0.1:3001")
    client.login("admin@example.com", "secret")
    for agent in client.agents():
        print(agent.hostname, client.run(agent.id, "uptime").stdout)

Awaitable from asyncio: :class:`AsyncClient` has the same methods.
Proxmox VE: :mod:`rmm.proxmox`. Release channels: :mod:`rmm.channel`.
Errors: :class:`RmmError` and its subclasses.
"""

from __future__ import annotations

from . import channel, proxmox
from ._errors import (
    AuthError,
    Conflict,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RmmError,
    ServerError,
    TaskFailed,
    Timeout,
    TransportError,
)
from ._native import (
    Agent,
    AsyncClient,
    Client,
    CommandResult,
    EnrollmentBundle,
    Upid,
    __version__,
)

__all__ = [
    "Agent",
    "AsyncClient",
    "AuthError",
    "Client",
    "CommandResult",
    "Conflict",
    "EnrollmentBundle",
    "InvalidArgument",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RmmError",
    "ServerError",
    "TaskFailed",
    "Timeout",
    "TransportError",
    "Upid",
    "__version__",
    "channel",
    "proxmox",
]
