"""The byte pipes a :class:`~skywire.wire.yamux_aio.YamuxSession` runs over, and its wake-up.

:class:`Backend` names what the session needs from a connection; :class:`TcpBackend` writes
straight to an asyncio reader/writer pair (the fast path) and :class:`ByteStreamBackend` runs
one writer task over any :class:`~skywire.wire.stream.ByteStream`. :class:`Signal` is the
lock-free wake-all condition the backends, the session and its streams wait on.

:class:`TcpBackend` also delivers received bytes by push (:meth:`TcpBackend.start_push`): it
puts :class:`_PushProtocol` in front of the pair's ``StreamReaderProtocol``, so each chunk the
transport reads goes straight to the session, without the ``StreamReader`` buffer (two copies)
or a reader task woken per chunk; the old protocol still sees flow control and the connection's
end, so the ``StreamWriter`` (``drain``, ``wait_closed``) keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from skywire.wire.stream import ByteStream

_HIGH_WATER = 1 << 20
TCP_HIGH_WATER = 512 * 1024
"""Write-buffer limits a session sets on its TCP transport: writers wait above the high mark
(keeping what is queued ahead of a ping or a window update small) until it drains below the
low one."""
TCP_LOW_WATER = 128 * 1024


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

    def buffer_size(self) -> int: ...

    def high_water(self) -> int: ...

    def start(self, on_lost: Callable[[BaseException], None]) -> None: ...

    def begin_close(self) -> None: ...

    async def finish_close(self, timeout: float) -> None: ...


class _PushProtocol(asyncio.Protocol):
    """Hands each received chunk to ``on_data``; the rest goes on to the pair's own protocol.

    It starts *held*: chunks wait in order until :meth:`release` delivers what the old reader
    had buffered, so the bytes reach the session in the order they came."""

    def __init__(
        self,
        inner: asyncio.BaseProtocol,
        on_data: Callable[[bytes], None],
        on_end: Callable[[BaseException | None], None],
    ) -> None:
        self._inner = inner
        self._on_data = on_data
        self._on_end = on_end
        self._held: list[bytes] | None = []
        self._end: tuple[BaseException | None] | None = None
        self._ended = False

    def release(self, leftover: bytes, error: BaseException | None) -> None:
        held, self._held = self._held or [], None
        if error is not None:
            self._finish(error)
            return
        for chunk in (leftover, *held):
            if chunk and not self._ended:
                self._on_data(chunk)
        if self._end is not None:
            self._finish(self._end[0])

    def _finish(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._on_end(exc)

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        elif not self._ended:
            self._on_data(data)

    def _end_with(self, exc: BaseException | None) -> None:
        if self._held is not None:
            self._end = (exc,)
        else:
            self._finish(exc)

    def eof_received(self) -> bool | None:
        self._end_with(None)
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_with(exc if exc is not None else ConnectionResetError("connection lost"))
        self._inner.connection_lost(exc)  # wakes the StreamWriter's drain and wait_closed

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class TcpBackend:
    """Reader/writer pair: writes go straight to the transport, drain gives backpressure."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._transport = writer.transport
        self._closing = False
        self._leftover: asyncio.Task[None] | None = None  # start_push's read of the old buffer
        with contextlib.suppress(NotImplementedError, AttributeError):
            self._transport.set_write_buffer_limits(TCP_HIGH_WATER, TCP_LOW_WATER)

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    def start_push(
        self, on_data: Callable[[bytes], None], on_end: Callable[[BaseException | None], None]
    ) -> bool:
        """Deliver received bytes by calling ``on_data`` (bytes the reader already buffered
        first); ``on_end`` once, at EOF (None) or on an error. False when the transport cannot
        be taken over (then read() is used).

        Only public APIs: the transport gets the push protocol; the old ``StreamReader``, fed
        no more, is given its EOF and read to the end for what it had buffered (the handshake
        may have read the peer's first frames), and the bytes pushed meanwhile wait behind it.
        """
        transport = self._transport
        inner = transport.get_protocol()
        if not isinstance(inner, asyncio.StreamReaderProtocol) or transport.is_closing():
            return False
        reader = self._reader
        error = reader.exception()
        push = _PushProtocol(inner, on_data, on_end)
        transport.set_protocol(push)
        if isinstance(transport, asyncio.ReadTransport):
            transport.resume_reading()  # the reader may have paused it; harmless otherwise
        already_ended = reader.at_eof()
        reader.feed_eof()

        async def leftover() -> None:
            try:
                data = b"" if already_ended and error is None else await reader.read()
            except Exception as exc:
                push.release(b"", exc)
                return
            push.release(data, error)

        self._leftover = asyncio.get_running_loop().create_task(leftover())
        return True

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._writer.write(data)

    def buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def high_water(self) -> int:
        return self._transport.get_write_buffer_limits()[1]

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
        leftover, self._leftover = self._leftover, None
        if leftover is not None and not leftover.done():
            leftover.cancel()
            await asyncio.wait([leftover])
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

    def buffer_size(self) -> int:
        return self._size

    def high_water(self) -> int:
        return _HIGH_WATER

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
