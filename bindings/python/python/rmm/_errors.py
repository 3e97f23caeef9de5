"""The exception hierarchy of :mod:`rmm`, rooted at :class:`RmmError`.

Every error raised by the SDK is an :class:`RmmError` with

- ``code``: a stable machine code — the server's ``error`` field for API
  errors (``invalid_credentials``, ``not_found``, ...), else a fixed word
  (``transport``, ``timeout``, ``task_failed``, ``permission_denied``, ...);
- ``status``: the HTTP status when there was one, else ``None``.

Subclasses say what happened; some also derive from the matching builtin
(``InvalidArgument`` is a ``ValueError``, ``Timeout`` a ``TimeoutError``,
``TransportError`` a ``ConnectionError``), so generic handlers still work.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Type

__all__ = [
    "RmmError",
    "AuthError",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "InvalidArgument",
    "PayloadTooLarge",
    "RateLimited",
    "Timeout",
    "TaskFailed",
    "ServerError",
    "TransportError",
]


class RmmError(Exception):
    """Base class of every rmm error."""

    code: str
    status: Optional[int]

    def __init__(self, message: str, *, code: str = "error", status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status!r})"

    def __reduce__(self) -> Tuple[Any, ...]:
        # keep attributes across pickling (multiprocessing, concurrent.futures)
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: Type[RmmError], message: str, state: Dict[str, Any]) -> RmmError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class AuthError(RmmError):
    """No, wrong or expired credentials (HTTP 401), or no login yet."""


class PermissionDenied(RmmError):
    """Authenticated but not allowed (HTTP 403).

    For Proxmox, ``path`` and ``privilege`` name what the API token lacks
    (e.g. ``/vms/101`` and ``VM.Snapshot``) when Proxmox said so.
    """

    path: Optional[str]
    privilege: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        code: str = "permission_denied",
        status: Optional[int] = 403,
        path: Optional[str] = None,
        privilege: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.path = path
        self.privilege = privilege


class NotFound(RmmError):
    """No such agent, command, container, snapshot or task (HTTP 404)."""


class Conflict(RmmError):
    """The request conflicts with the current state (HTTP 409): a name already
    enrolled, cancelling a finished command, a stale Proxmox config digest."""


class InvalidArgument(RmmError, ValueError):
    """A malformed or unusable argument, rejected locally or by the server
    (HTTP 400/422)."""


class PayloadTooLarge(RmmError):
    """The request body is over the server's limit (HTTP 413)."""


class RateLimited(RmmError):
    """Too many requests, e.g. failed logins (HTTP 429)."""


class Timeout(RmmError, TimeoutError):
    """A wait gave up before the command or task finished; it may still be
    running. ``upid`` is set for Proxmox tasks."""

    upid: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        code: str = "timeout",
        status: Optional[int] = None,
        upid: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.upid = upid


class TaskFailed(RmmError):
    """A Proxmox task ended with an exit status other than ``OK`` /
    ``WARNINGS: N``. ``log_tail`` holds the last lines of its log."""

    upid: str
    exitstatus: str
    log_tail: List[str]

    def __init__(
        self,
        message: str,
        *,
        code: str = "task_failed",
        status: Optional[int] = None,
        upid: str = "",
        exitstatus: str = "",
        log_tail: Optional[List[str]] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = list(log_tail or [])


class ServerError(RmmError):
    """The server failed (HTTP 5xx) or answered something unexpected."""


class TransportError(RmmError, ConnectionError):
    """The server could not be reached (connection refused, TLS, DNS, ...)."""
