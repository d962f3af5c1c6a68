"""The server side of dmsghttp, part one: an ``asyncio.Transport`` over a ``ByteStream``.

aiohttp's request handler is an ``asyncio.Protocol``; :class:`StreamTransport` lets it run on a
dmsg stream (or any :class:`~skywire.wire.stream.ByteStream`) as if it were a TCP connection.
It subclasses only the public ``asyncio.Transport``. It has no ``sendfile`` path: aiohttp's
``FileResponse`` needs a socket, so files are served over dmsg with
:mod:`skywire.dmsg.http.static`, which writes them in chunks.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from skywire.dmsg.addr import Addr
from skywire.wire.stream import ByteStream

__all__ = ["READ_CHUNK", "WRITE_COALESCE", "StreamTransport"]

log = logging.getLogger(__name__)

READ_CHUNK: Final = 65536
"""Bytes asked of the stream per read."""

WRITE_COALESCE: Final = 65536
"""Small writes queued together are joined up to this size before going to the stream."""

_END_OF_HEADERS = re.compile(rb"\n\r?\n")


def _addr_info(stream: ByteStream, addr_attr: str, tcp_attr: str) -> tuple[str, int] | None:
    """``(pk-hex, port)`` for a dmsg stream, ``(host, port)`` for a TCP one, else None."""
    addr = getattr(stream, addr_attr, None)
    if isinstance(addr, Addr):
        return (addr.pk.hex(), addr.port)
    value = getattr(stream, tcp_attr, None)
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


class StreamTransport(asyncio.Transport):
    """An ``asyncio.Transport`` that carries a protocol's bytes over a :class:`ByteStream`.

    :meth:`run` is the connection: it calls ``connection_made``, feeds ``data_received`` and
    ``eof_received`` from a reading task, flushes ``write()`` calls to the stream from a
    writing task (pausing the protocol above the high-water mark), and ends, after closing the
    stream, with exactly one ``connection_lost``. Both tasks belong to :meth:`run`;
    cancelling it aborts the connection.

    ``get_extra_info`` knows ``peername``/``sockname`` (``(pk-hex, port)`` for dmsg streams
    that have ``remote_addr``/``local_addr``; the TCP pair for ``TcpStream``) and ``stream``.

    ``read_header_timeout`` aborts the connection if no end of headers (an empty line) has
    arrived that many seconds after the start: the upstream ``ReadHeaderTimeout``, applied to
    the first request of the connection.
    """

    def __init__(
        self,
        stream: ByteStream,
        protocol: asyncio.Protocol,
        *,
        read_header_timeout: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        info: dict[str, Any] = {
            "peername": _addr_info(stream, "remote_addr", "peername"),
            "sockname": _addr_info(stream, "local_addr", "sockname"),
            "stream": stream,
        }
        info.update(extra or {})
        super().__init__(info)
        self._loop = asyncio.get_running_loop()
        self._protocol_paused = False
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._stream = stream
        self._protocol: asyncio.Protocol = protocol
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._wakeup = asyncio.Event()  # the writer has something to do
        self._finished = asyncio.Event()  # flushed after close(), or aborted
        self._can_read = asyncio.Event()  # cleared by pause_reading()
        self._can_read.set()
        self._closing = False
        self._exc: Exception | None = None
        self._header_timeout = read_header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_tail = b""
        self._started = False

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self) -> None:
        """Hand the transport to the protocol; :meth:`run` calls it if nobody did before."""
        if self._started:
            return
        self._started = True
        if self._header_timeout is not None:
            self._header_timer = self._loop.call_later(
                self._header_timeout, self._on_header_timeout
            )
        self._protocol.connection_made(self)

    async def run(self) -> None:
        """Serve the connection until it is closed or aborted, then close the stream."""
        self.connection_made()
        reader = asyncio.create_task(self._read_loop(), name="dmsghttp-read")
        writer = asyncio.create_task(self._write_loop(), name="dmsghttp-write")
        try:
            await self._finished.wait()
        except asyncio.CancelledError:
            self._abort(None)
            raise
        finally:
            if self._header_timer is not None:
                self._header_timer.cancel()
            # Close the stream first so that a pending read or write ends by itself; cancel
            # whatever is left.
            try:
                await self._stream.close()
            except Exception as exc:  # the stream is gone either way
                log.debug("dmsghttp: closing stream: %r", exc)
            for task in (reader, writer):
                task.cancel()
            await asyncio.wait((reader, writer))
            self._connection_lost()

    def _connection_lost(self) -> None:
        self._closing = True
        try:
            self._protocol.connection_lost(self._exc)
        except Exception:
            log.exception("dmsghttp: protocol.connection_lost failed")

    async def _read_loop(self) -> None:
        try:
            while not self._closing:
                await self._can_read.wait()
                if self._closing:
                    return
                data = await self._stream.read(READ_CHUNK)
                if not data:
                    if not self._closing and not self._protocol.eof_received():
                        self.close()
                    return
                self._watch_headers(data)
                await self._can_read.wait()  # pause_reading() holds data already read
                if self._closing:
                    return
                self._protocol.data_received(data)
        except Exception as exc:
            self._abort(exc)

    async def _write_loop(self) -> None:
        try:
            while True:
                if self._buffer:
                    chunk = self._take(WRITE_COALESCE)
                    await self._stream.write(chunk)
                    if self._finished.is_set():
                        return
                    self._buffered -= len(chunk)
                    self._maybe_resume_writing()
                    continue
                if self._closing:
                    self._finished.set()
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except Exception as exc:
            self._abort(exc)

    def _take(self, limit: int) -> bytes:
        first = self._buffer.popleft()
        if not self._buffer or len(first) >= limit:
            return first
        parts = [first]
        size = len(first)
        while self._buffer and size + len(self._buffer[0]) <= limit:
            part = self._buffer.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def _watch_headers(self, data: bytes) -> None:
        if self._header_timer is None:
            return
        seen = self._header_tail + data
        if _END_OF_HEADERS.search(seen):
            self._header_timer.cancel()
            self._header_timer = None
        else:
            self._header_tail = seen[-2:]

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        log.debug("dmsghttp: no request headers within %ss, closing", self._header_timeout)
        self._abort(None)

    def _abort(self, exc: Exception | None) -> None:
        if self._finished.is_set():
            return
        self._closing = True
        if exc is not None and self._exc is None:
            self._exc = exc
        self._buffer.clear()
        self._buffered = 0
        self._can_read.set()
        self._wakeup.set()
        self._finished.set()

    # -- asyncio.BaseTransport -----------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, flush what was written, then close the stream."""
        if self._closing:
            return
        self._closing = True
        self._can_read.set()
        self._wakeup.set()

    def abort(self) -> None:
        """Drop unsent data and close the stream now."""
        self._abort(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if not isinstance(protocol, asyncio.Protocol):
            raise TypeError("StreamTransport carries a streaming asyncio.Protocol")
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -- asyncio.ReadTransport ------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._closing and self._can_read.is_set()

    def pause_reading(self) -> None:
        if not self._closing:
            self._can_read.clear()

    def resume_reading(self) -> None:
        self._can_read.set()

    # -- asyncio.WriteTransport -----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if self._closing or not data:
            return
        chunk = bytes(data)
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self._wakeup.set()
        self._maybe_pause_writing()

    def can_write_eof(self) -> bool:
        return False

    @property
    def writing_paused(self) -> bool:
        """Whether the protocol has been told to pause writing (above the high-water mark)."""
        return self._protocol_paused

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def _maybe_pause_writing(self) -> None:
        if self._protocol_paused or self._buffered <= self._high_water:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except Exception:
            log.exception("dmsghttp: protocol.pause_writing failed")

    def _maybe_resume_writing(self) -> None:
        if not self._protocol_paused or self._buffered > self._low_water:
            return
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except Exception:
            log.exception("dmsghttp: protocol.resume_writing failed")
