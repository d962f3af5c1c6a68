"""The byte pipes a :class:`~skywire.wire.yamux_aio.YamuxSession` runs over, and its wake-up.

:class:`Backend` names what the session needs from a connection; :class:`TcpBackend` writes
straight to an asyncio reader/writer pair (the fast path) and :class:`ByteStreamBackend` runs
one writer task over any :class:`~skywire.wire.stream.ByteStream`. :class:`Signal` is the
lock-free wake-all condition the backends, the session and its streams wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from skywire.wire.stream import ByteStream

_HIGH_WATER = 1 << 20


class Signal:
    """Wake-all condition without a lock: waiters re-check their predicate after waking."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def has_waiters(self) -> bool:
        return bool(self._waiters)

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)

    def notify_all(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)


# ---------------------------------------------------------------------------------- backends


class Backend(Protocol):
    async def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def start(self, on_lost: Callable[[BaseException], None]) -> None: ...

    def begin_close(self) -> None: ...

    async def finish_close(self, timeout: float) -> None: ...


class TcpBackend:
    """Reader/writer pair: writes go straight to the transport, drain gives backpressure."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._transport = writer.transport
        self._closing = False

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._writer.write(data)

    async def drain(self) -> None:
        transport = self._transport
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
            return  # below the low-water mark the transport cannot be paused
        await self._writer.drain()

    def start(self, on_lost: Callable[[BaseException], None]) -> None:
        del on_lost  # failures surface through read() and drain()

    def begin_close(self) -> None:
        if not self._closing:
            self._closing = True
            self._writer.close()

    async def finish_close(self, timeout: float) -> None:
        self.begin_close()
        try:
            async with asyncio.timeout(timeout):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        except Exception:  # the connection is gone either way
            pass


class ByteStreamBackend:
    """Any ByteStream: a writer task serialises the awaited writes in order."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._size = 0
        self._wake = Signal()
        self._drained = Signal()
        self._closing = False
        self._failed: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_lost: Callable[[BaseException], None] | None = None

    async def read(self, n: int) -> bytes:
        return await self._stream.read(n)

    def write(self, data: bytes) -> None:
        if self._closing and self._task is None:
            return
        self._pending.append(data)
        self._size += len(data)
        self._wake.notify_all()

    async def drain(self) -> None:
        while self._failed is None and self._size > _HIGH_WATER:
            await self._drained.wait()
        if self._failed is not None:
            raise ConnectionResetError("underlying stream failed") from self._failed

    def start(self, on_lost: Callable[[BaseException], None]) -> None:
        self._on_lost = on_lost
        self._task = asyncio.get_running_loop().create_task(self._run(), name="yamux-writer")

    async def _run(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    await self._wake.wait()
                    continue
                pending = self._pending
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                self._pending = []
                self._size = 0
                self._drained.notify_all()
                await self._stream.write(data)
        except Exception as exc:
            self._failed = exc
            self._pending = []
            self._size = 0
            self._drained.notify_all()
            if self._on_lost is not None:
                self._on_lost(exc)

    def begin_close(self) -> None:
        self._closing = True
        self._wake.notify_all()

    async def finish_close(self, timeout: float) -> None:
        self.begin_close()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait({task}, timeout=timeout)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
        with contextlib.suppress(Exception):
            await self._stream.close()
