"""One process per state folder: an advisory lock, and ports checked before anything starts.

A second copy of a visor (or of the local network) started from the same state must stop
before it touches anything shared: it takes :class:`StateLock` first (the kernel releases
the lock when the holder dies, so a crash leaves nothing to clean up), and
:func:`check_ports_free` makes sure that its listening ports are free.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["PortInUseError", "StateLock", "StateLockedError", "check_ports_free"]


class StateLockedError(RuntimeError):
    """Another process holds the state folder; ``pid`` is the holder's when known."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{path.parent} is in use by {who} (lock {path})")
        self.path = path
        self.pid = pid


class PortInUseError(OSError):
    """A port the program needs is taken."""


class StateLock:
    """``with StateLock(folder):`` holds ``folder/<name>`` locked, with this process's pid in it."""

    def __init__(self, folder: Path, name: str = "state.lock") -> None:
        self.path = Path(folder) / name
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateLockedError(self.path, pid) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def check_ports_free(ports: Iterable[tuple[str, str, int]]) -> None:
    """``(what, host, port)`` triples: raise :class:`PortInUseError` naming the first one that
    cannot be bound (port 0 is skipped)."""
    for what, host, port in ports:
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host or "0.0.0.0", port))
            except OSError as exc:
                raise PortInUseError(
                    exc.errno, f"{what} port {host or '*'}:{port} is in use ({exc.strerror})"
                ) from None
