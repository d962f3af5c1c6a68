"""One multiplexed stream of a yamux session over asyncio: :class:`YamuxStream`.

A :class:`YamuxStream` implements :class:`~skywire.wire.stream.ByteStream` on top of the
session's sans-I/O core: it buffers the data the session feeds it, hands back window credit as
the application reads, and waits for credit to write. :class:`StreamSession` names what it needs
from the session that routes its frames (:class:`~skywire.wire.yamux_aio.YamuxSession`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from skywire.wire.yamux import (
    YamuxConnection,
    YamuxSessionClosedError,
    YamuxStreamClosedError,
    YamuxStreamResetError,
)
from skywire.wire.yamux_aio_backends import Signal


class StreamSession(Protocol):
    """What a :class:`YamuxStream` needs from its session (the calls a stream makes on it)."""

    @property
    def core(self) -> YamuxConnection: ...

    @property
    def closed(self) -> bool: ...

    def now(self) -> float: ...

    def closed_error(self) -> YamuxSessionClosedError: ...

    def flush_soon(self) -> None: ...

    async def drain(self) -> None: ...

    async def send(self, stream_id: int, data: memoryview) -> int: ...

    def rearm_timer(self) -> None: ...

    def maybe_forget(self, stream: YamuxStream) -> None: ...

    def forget(self, stream: YamuxStream) -> None: ...


# ---------------------------------------------------------------------------------- streams


class YamuxStream:
    """One multiplexed stream; implements :class:`~skywire.wire.stream.ByteStream`.

    * ``read`` returns buffered bytes, ``b""`` after the peer's FIN, and raises
      :class:`YamuxStreamResetError` after a reset or :class:`YamuxSessionClosedError` when
      the session died before the peer finished;
    * ``write`` waits for send window and splits data into frames no larger than it;
    * ``close`` half-closes (FIN): reading continues until the peer's FIN; the stream is
      released once both sides closed;
    * ``reset`` aborts both directions (RST).
    """

    def __init__(self, session: StreamSession, stream_id: int) -> None:
        self._session = session
        self._core = session.core
        self.stream_id = stream_id
        self._chunks: deque[bytes | memoryview] = deque()
        self._offset = 0
        self._buffered = 0
        self._eof = False
        self._reset = False
        self._write_closed = False
        self._readable = Signal()
        self._writable = Signal()
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<YamuxStream id={self.stream_id} buffered={self._buffered} eof={self._eof}>"

    @property
    def session(self) -> StreamSession:
        return self._session

    @property
    def at_eof(self) -> bool:
        """True once the peer's FIN arrived and every buffered byte was read."""
        return self._eof and not self._buffered

    @property
    def fin_received(self) -> bool:
        """True once the peer's FIN arrived (buffered bytes may remain)."""
        return self._eof

    # ------------------------------------------------------------------ reading

    def _check_readable(self) -> bool:
        """Raise if reading can never succeed again; return True at a clean EOF."""
        if self._reset:
            raise YamuxStreamResetError(f"stream {self.stream_id} was reset")
        if self._eof:
            return True
        if self._session.closed:
            raise self._session.closed_error()
        return False

    def _take(self, limit: int) -> bytes | memoryview:
        chunks = self._chunks
        first = chunks[0]
        off = self._offset
        avail = len(first) - off
        if avail >= limit or len(chunks) == 1:
            if off == 0 and avail <= limit:
                chunks.popleft()
                data = first
            else:
                n = avail if avail < limit else limit
                data = first[off : off + n]
                off += n
                if off == len(first):
                    chunks.popleft()
                    off = 0
                self._offset = off
        else:
            parts: list[bytes | memoryview] = []
            need = limit
            while chunks and need:
                first = chunks[0]
                avail = len(first) - off
                if avail <= need:
                    parts.append(first[off:] if off else first)
                    chunks.popleft()
                    off = 0
                    need -= avail
                else:
                    parts.append(first[off : off + need])
                    off += need
                    need = 0
            self._offset = off
            data = b"".join(parts)
        self._buffered -= len(data)
        return data

    def _consumed(self, n: int) -> None:
        session = self._session
        if not session.closed:
            self._core.acknowledge_received(self.stream_id, n)
            session.flush_soon()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes (at least one), or ``b""`` after the peer's FIN."""
        data = await self.read_view(max_bytes)
        return data if type(data) is bytes else bytes(data)

    async def read_view(self, max_bytes: int = 65536) -> bytes | memoryview:
        """:meth:`read` without a copy: possibly a read-only view into a received chunk (what
        a relay passes straight on to :meth:`write`)."""
        if max_bytes <= 0:
            if max_bytes < 0:
                raise ValueError("max_bytes must not be negative")
            return b""
        while not self._buffered:
            if self._check_readable():
                return b""
            await self._readable.wait()
        if self._reset:
            raise YamuxStreamResetError(f"stream {self.stream_id} was reset")
        data = self._take(max_bytes)
        self._consumed(len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes or raise :class:`asyncio.IncompleteReadError`."""
        if n < 0:
            raise ValueError("n must not be negative")
        if self._buffered >= n and not self._reset:
            if n == 0:
                return b""
            data = self._take(n)
            self._consumed(n)
            return data if type(data) is bytes else bytes(data)
        parts: list[bytes | memoryview] = []
        got = 0
        while got < n:
            if not self._buffered:
                if self._check_readable():
                    raise asyncio.IncompleteReadError(b"".join(parts), n)
                await self._readable.wait()
                continue
            if self._reset:
                raise YamuxStreamResetError(f"stream {self.stream_id} was reset")
            # Consume as we go: a request larger than the window must not deadlock.
            chunk = self._take(n - got)
            self._consumed(len(chunk))
            parts.append(chunk)
            got += len(chunk)
        first = parts[0]
        if len(parts) == 1 and type(first) is bytes:
            return first
        return b"".join(parts)

    # ------------------------------------------------------------------ writing

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for window credit (and for the connection's backlog
        to drain) as needed."""
        if type(data) is memoryview:
            if type(data.obj) is not bytes:
                data = bytes(data)  # frames reference the payload until the next flush
        elif type(data) is not bytes:
            data = bytes(data)
        view = memoryview(data)
        total = len(view)
        if not total:
            self._check_writable()
            return
        session = self._session
        core = self._core
        sid = self.stream_id
        async with self._write_lock:
            pos = 0
            while pos < total:
                self._check_writable()
                if not core.send_window(sid):
                    await self._writable.wait()
                    continue
                pos += await session.send(sid, view[pos:] if pos else view)

    def _check_writable(self) -> None:
        if self._reset:
            raise YamuxStreamResetError(f"stream {self.stream_id} was reset")
        if self._write_closed:
            raise YamuxStreamClosedError(f"stream {self.stream_id} is closed for writing")
        if self._session.closed:
            raise self._session.closed_error()

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Half-close: send FIN. Calling it again is harmless."""
        if self._write_closed:
            return
        self._write_closed = True
        session = self._session
        if not session.closed:
            self._core.close_stream(self.stream_id, session.now())
            session.flush_soon()
            session.rearm_timer()
            session.maybe_forget(self)
        self._writable.notify_all()

    async def reset(self) -> None:
        """Abort the stream in both directions (RST); buffered data is dropped."""
        if self._reset:
            return
        self.mark_reset()
        session = self._session
        if not session.closed:
            self._core.reset_stream(self.stream_id)
            session.flush_soon()
            session.rearm_timer()
            session.forget(self)

    # ------------------------------------------------------------------ session callbacks

    def feed(self, data: bytes | memoryview) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._readable.notify_all()

    def on_fin(self) -> None:
        self._eof = True
        self._readable.notify_all()

    def on_window_update(self) -> None:
        self._writable.notify_all()

    def mark_reset(self) -> None:
        self._reset = True
        self._write_closed = True
        self._chunks.clear()
        self._offset = 0
        self._buffered = 0
        self._readable.notify_all()
        self._writable.notify_all()

    def wake(self) -> None:
        self._readable.notify_all()
        self._writable.notify_all()
