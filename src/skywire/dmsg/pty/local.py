"""A command on a local pty: what a host's ``pty`` service drives (upstream ``pty_unix.go``).

The command runs in its own session with the pty's slave as its controlling terminal, so a
resize reaches it as ``SIGWINCH`` and closing the master hangs it up. The master is read from
the event loop (``loop.add_reader``); reading pauses while a megabyte waits unread. Stopping
closes the master, sends ``SIGHUP`` to the command's process group, then ``SIGKILL`` after a
grace period, and reaps the process: nothing outlives the pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import termios
from collections.abc import Callable, Mapping, Sequence
from enum import Enum

from skywire.dmsg.pty.errors import (
    PtyAlreadyRunningError,
    PtyEOFError,
    PtyError,
    PtyNotRunningError,
)
from skywire.dmsg.pty.protocol import WinSize

__all__ = ["LocalPty", "PtyState", "default_shell", "get_size", "set_size"]

log = logging.getLogger(__name__)

READ_SIZE = 65536
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 16
KILL_GRACE = 2.0


class PtyState(Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"


def default_shell() -> str:
    """The user's shell: ``$SHELL``, else ``/bin/sh``."""
    return os.environ.get("SHELL") or "/bin/sh"


def set_size(fd: int, size: WinSize) -> None:
    """``TIOCSWINSZ`` on a terminal fd."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.rows, size.cols, size.x, size.y))


def get_size(fd: int) -> WinSize:
    """``TIOCGWINSZ`` of a terminal fd (raises ``OSError`` when it is not one)."""
    raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    rows, cols, x, y = struct.unpack("HHHH", raw)
    return WinSize(rows, cols, x, y)


def _take_controlling_tty() -> None:  # runs in the child, after setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class LocalPty:
    """One command on one pty: ``start``, then ``read`` / ``write`` / ``set_size``, ``stop``.

    ``read`` waits for output and raises :class:`PtyEOFError` once the command has gone and
    its output is drained. ``close()`` stops it if running; twice is harmless.
    """

    def __init__(
        self,
        *,
        shell: str | None = None,
        env: Mapping[str, str] | None = None,
        kill_grace: float = KILL_GRACE,
        on_start: Callable[[LocalPty], None] | None = None,
    ) -> None:
        self.shell = shell
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("TERM", "xterm-256color")
        self.kill_grace = kill_grace
        self.on_start = on_start
        self.state = PtyState.IDLE
        self._proc: asyncio.subprocess.Process | None = None
        self._master = -1
        self._buffer = bytearray()
        self._eof = False
        self._paused = False
        self._changed = asyncio.Event()
        self._write_lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    # ------------------------------------------------------------------ start / stop
    async def start(self, name: str, args: Sequence[str] = (), size: WinSize | None = None) -> None:
        """Run ``name args…`` on a new pty (an empty ``name`` runs the shell)."""
        if self.state is PtyState.RUNNING:
            raise PtyAlreadyRunningError()
        program = name or self.shell or default_shell()
        master, slave = os.openpty()
        try:
            if size is not None:
                set_size(master, size)
            self._proc = await asyncio.create_subprocess_exec(
                program,
                *args,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=self.env,
                start_new_session=True,
                preexec_fn=_take_controlling_tty,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._buffer.clear()
        self._eof = self._paused = False
        self.state = PtyState.RUNNING
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        if self.on_start is not None:
            self.on_start(self)
        log.debug("pty: started %s (pid %d)", program, self._proc.pid)

    async def stop(self) -> None:
        """Hang up and reap the command; :class:`PtyNotRunningError` when none runs."""
        if self.state is not PtyState.RUNNING:
            raise PtyNotRunningError()
        await self._teardown()

    async def close(self) -> None:
        """Stop the command if it runs; also finishes a stop that was cancelled halfway."""
        if self.state is PtyState.RUNNING:
            await self._teardown()
        self.state = PtyState.STOPPED
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._signal(proc, {proc.pid}, signal.SIGKILL)
            await proc.wait()

    async def _teardown(self) -> None:
        self.state = PtyState.STOPPED
        groups = self._groups()
        self._close_master()
        proc = self._proc
        if proc is None:
            return
        try:
            self._signal(proc, groups, signal.SIGHUP)
            async with asyncio.timeout(self.kill_grace):
                await proc.wait()
        except TimeoutError:
            pass
        finally:
            # whatever ignored the hangup (or all of it, when we are cancelled meanwhile)
            self._signal(proc, groups, signal.SIGKILL)
            await asyncio.shield(proc.wait())
        log.debug("pty: pid %d ended (%s)", proc.pid, proc.returncode)

    def _groups(self) -> set[int]:
        """The command's process group and the terminal's foreground one (a job the shell
        runs, in its own group)."""
        groups = set() if self._proc is None else {self._proc.pid}
        if self._master >= 0:
            with contextlib.suppress(OSError):
                groups.add(os.tcgetpgrp(self._master))
        return {g for g in groups if g > 1}

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, groups: set[int], sig: int) -> None:
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _close_master(self) -> None:
        if self._master < 0:
            return
        master, self._master = self._master, -1
        if not self._paused and not self._eof:
            asyncio.get_running_loop().remove_reader(master)
        os.close(master)
        self._changed.set()

    # ------------------------------------------------------------------ reading
    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: the slave side is gone (the command ended)
            data = b""
        if not data:
            self._eof = True
            asyncio.get_running_loop().remove_reader(self._master)
        else:
            self._buffer += data
            if len(self._buffer) >= HIGH_WATER:
                self._paused = True
                asyncio.get_running_loop().remove_reader(self._master)
        self._changed.set()

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of output, waiting for some."""
        if n <= 0:
            if self.state is not PtyState.RUNNING:
                raise PtyNotRunningError()
            return b""
        while True:
            if self.state is not PtyState.RUNNING:
                raise PtyNotRunningError()
            if self._buffer:
                break
            if self._eof:
                raise PtyEOFError()
            self._changed.clear()
            await self._changed.wait()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if self._paused and len(self._buffer) <= LOW_WATER and self._master >= 0:
            self._paused = False
            asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        return data

    # ------------------------------------------------------------------ writing, size
    async def write(self, data: bytes) -> int:
        """Write all of ``data`` to the command's input; returns its length."""
        async with self._write_lock:
            view = memoryview(data)
            while view:
                if self.state is not PtyState.RUNNING:
                    raise PtyNotRunningError()
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    await self._writable()
                except OSError as exc:
                    raise PtyError(f"write /dev/ptmx: {exc.strerror or exc}") from exc
        return len(data)

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._master

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, wake)
        try:
            await ready
        finally:
            loop.remove_writer(fd)

    async def set_size(self, size: WinSize) -> None:
        if self.state is not PtyState.RUNNING:
            raise PtyNotRunningError()
        try:
            set_size(self._master, size)
        except OSError as exc:
            raise PtyError(f"set pty size: {exc.strerror or exc}") from exc
