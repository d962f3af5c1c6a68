"""asyncio adapter for the sans-I/O yamux core (:mod:`skywire.wire.yamux`).

:class:`YamuxSession` runs one :class:`~skywire.wire.yamux.YamuxConnection` over either an
asyncio ``StreamReader``/``StreamWriter`` pair (the fast path, used by dmsg right after its
Noise handshake on the same pair; bytes already buffered in the reader are consumed first) or
any :class:`~skywire.wire.stream.ByteStream`.

Concurrency is structured: the session owns one reader task (plus, over a generic
``ByteStream``, one writer task) and a loop timer handle; :meth:`YamuxSession.close` cancels
and awaits them, so nothing it started outlives it. Streams are :class:`YamuxStream` objects
implementing the ``ByteStream`` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.yamux import (
    DataReceived,
    Event,
    GoAwayCode,
    PingAcknowledged,
    PingTimedOut,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
    YamuxConfig,
    YamuxConnection,
    YamuxOpenLimitError,
    YamuxProtocolError,
    YamuxSessionClosedError,
    YamuxStreamClosedError,
    YamuxStreamResetError,
    YamuxTimeoutError,
)

__all__ = ["YamuxSession", "YamuxStream"]

_READ_CHUNK = 256 * 1024
_HIGH_WATER = 1 << 20


class _Signal:
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


class _Backend(Protocol):
    async def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def start(self, on_lost: Callable[[BaseException], None]) -> None: ...

    def begin_close(self) -> None: ...

    async def finish_close(self, timeout: float) -> None: ...


class _TcpBackend:
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


class _ByteStreamBackend:
    """Any ByteStream: a writer task serialises the awaited writes in order."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._size = 0
        self._wake = _Signal()
        self._drained = _Signal()
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

    def __init__(self, session: YamuxSession, stream_id: int) -> None:
        self._session = session
        self._core = session._core
        self.stream_id = stream_id
        self._chunks: deque[bytes] = deque()
        self._offset = 0
        self._buffered = 0
        self._eof = False
        self._reset = False
        self._write_closed = False
        self._readable = _Signal()
        self._writable = _Signal()
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<YamuxStream id={self.stream_id} buffered={self._buffered} eof={self._eof}>"

    @property
    def session(self) -> YamuxSession:
        return self._session

    @property
    def at_eof(self) -> bool:
        """True once the peer's FIN arrived and every buffered byte was read."""
        return self._eof and not self._buffered

    # ------------------------------------------------------------------ reading

    def _check_readable(self) -> bool:
        """Raise if reading can never succeed again; return True at a clean EOF."""
        if self._reset:
            raise YamuxStreamResetError(f"stream {self.stream_id} was reset")
        if self._eof:
            return True
        if self._session._terminated:
            raise self._session._closed_error()
        return False

    def _take(self, limit: int) -> bytes:
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
            parts: list[bytes] = []
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
        if not session._terminated:
            self._core.acknowledge_received(self.stream_id, n)
            session._flush_soon()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes (at least one), or ``b""`` after the peer's FIN."""
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
            return data
        parts: list[bytes] = []
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
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # ------------------------------------------------------------------ writing

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for window credit as needed."""
        if type(data) is not bytes:
            # Frames reference the payload until the next flush: snapshot mutable buffers.
            data = bytes(data)
        view = memoryview(data)
        total = len(view)
        if not total:
            self._check_writable()
            return
        session = self._session
        core = self._core
        sid = self.stream_id
        if not self._write_lock.locked() and core.send_window(sid) >= total:
            # Fast path: nobody else is writing and the whole payload fits in one frame.
            self._check_writable()
            core.send_data(sid, view)
            session._flush_soon()
            await session._drain()
            return
        async with self._write_lock:
            pos = 0
            while pos < total:
                self._check_writable()
                n = core.send_data(sid, view[pos:] if pos else view)
                if not n:
                    await self._writable.wait()
                    continue
                pos += n
                session._flush_soon()
                await session._drain()

    def _check_writable(self) -> None:
        if self._reset:
            raise YamuxStreamResetError(f"stream {self.stream_id} was reset")
        if self._write_closed:
            raise YamuxStreamClosedError(f"stream {self.stream_id} is closed for writing")
        if self._session._terminated:
            raise self._session._closed_error()

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Half-close: send FIN. Calling it again is harmless."""
        if self._write_closed:
            return
        self._write_closed = True
        session = self._session
        if not session._terminated:
            self._core.close_stream(self.stream_id, session._loop.time())
            session._flush_soon()
            session._rearm_timer()
            session._maybe_forget(self)
        self._writable.notify_all()

    async def reset(self) -> None:
        """Abort the stream in both directions (RST); buffered data is dropped."""
        if self._reset:
            return
        self._mark_reset()
        session = self._session
        if not session._terminated:
            self._core.reset_stream(self.stream_id)
            session._flush_soon()
            session._rearm_timer()
            session._forget(self)

    # ------------------------------------------------------------------ session callbacks

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._readable.notify_all()

    def _on_fin(self) -> None:
        self._eof = True
        self._readable.notify_all()

    def _mark_reset(self) -> None:
        self._reset = True
        self._write_closed = True
        self._chunks.clear()
        self._offset = 0
        self._buffered = 0
        self._readable.notify_all()
        self._writable.notify_all()

    def _wake(self) -> None:
        self._readable.notify_all()
        self._writable.notify_all()


# ---------------------------------------------------------------------------------- session


class YamuxSession:
    """A yamux session over an asyncio reader/writer pair (construct inside a running loop).

    Use ``async with YamuxSession(reader, writer, client=True) as session:`` or call
    :meth:`start` and later :meth:`close`.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        config: YamuxConfig | None = None,
    ) -> None:
        self._setup(_TcpBackend(reader, writer), client, config)

    @classmethod
    def over_stream(
        cls, stream: ByteStream, *, client: bool, config: YamuxConfig | None = None
    ) -> YamuxSession:
        """A session over any ByteStream (a :class:`TcpStream` takes the fast path)."""
        if isinstance(stream, TcpStream):
            return cls(stream.reader, stream.writer, client=client, config=config)
        session = cls.__new__(cls)
        session._setup(_ByteStreamBackend(stream), client, config)
        return session

    def _setup(self, backend: _Backend, client: bool, config: YamuxConfig | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._backend = backend
        self._config = config if config is not None else YamuxConfig()
        self._core = YamuxConnection(client=client, config=self._config, now=self._loop.time())
        self.client = client
        self._streams: dict[int, YamuxStream] = {}
        self._accept_queue: deque[YamuxStream] = deque()
        self._accept_signal = _Signal()
        self._open_signal = _Signal()
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._started = False
        self._terminated = False
        self._error: BaseException | None = None
        self._closed_event = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the reader task and timers (idempotent; done by ``async with`` too)."""
        if self._started or self._terminated:
            return
        self._started = True
        role = "client" if self.client else "server"
        self._reader_task = self._loop.create_task(self._read_loop(), name=f"yamux-{role}")
        self._backend.start(self._on_backend_lost)
        self._rearm_timer()

    async def __aenter__(self) -> YamuxSession:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once the session is over."""
        return self._terminated

    @property
    def error(self) -> BaseException | None:
        """Why the session ended (``None`` while open or after a clean local close)."""
        return self._error

    @property
    def num_streams(self) -> int:
        """Streams this session still routes frames to."""
        return len(self._streams)

    @property
    def core(self) -> YamuxConnection:
        """The underlying sans-I/O state machine (read-only use)."""
        return self._core

    async def wait_closed(self) -> None:
        """Wait until the session is over (not until the socket is released: use close)."""
        await self._closed_event.wait()

    async def close(self) -> None:
        """End the session: every stream ends, tasks are awaited, the connection is closed."""
        self._terminate(None)
        task = self._reader_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait({task})
        await self._backend.finish_close(self._config.connection_write_timeout)

    # ------------------------------------------------------------------ operations

    async def open_stream(self) -> YamuxStream:
        """Open a new stream; its SYN goes out with the next flush and no ACK is awaited."""
        self.start()
        while True:
            if self._terminated:
                raise self._closed_error()
            try:
                sid = self._core.open_stream(self._loop.time())
            except YamuxOpenLimitError:
                await self._open_signal.wait()
                continue
            break
        stream = YamuxStream(self, sid)
        self._streams[sid] = stream
        self._flush_soon()  # the SYN usually leaves together with the first data frame
        self._rearm_timer()
        return stream

    async def accept(self) -> YamuxStream:
        """Wait for a stream opened by the peer; raise once the session is closed."""
        self.start()
        while True:
            if self._terminated:
                raise self._closed_error()
            if self._accept_queue:
                break
            await self._accept_signal.wait()
        stream = self._accept_queue.popleft()
        self._core.accept_stream(stream.stream_id)
        self._flush_soon()
        return stream

    async def ping(self) -> float:
        """Round-trip time of one ping in seconds; :class:`YamuxTimeoutError` if unanswered."""
        self.start()
        if self._terminated:
            raise self._closed_error()
        pid = self._core.ping(self._loop.time())
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[pid] = fut
        self._flush()
        self._rearm_timer()
        try:
            return await fut
        finally:
            if self._pings.get(pid) is fut:
                del self._pings[pid]

    async def go_away(self) -> None:
        """Refuse further incoming streams and tell the peer to open no more."""
        if self._terminated:
            raise self._closed_error()
        self._core.go_away(GoAwayCode.NORMAL)
        self._flush()
        await self._drain()

    # ------------------------------------------------------------------ internals

    def _closed_error(self) -> YamuxSessionClosedError:
        reason = f": {self._error}" if self._error is not None else ""
        error = YamuxSessionClosedError(f"yamux session closed{reason}")
        error.__cause__ = self._error
        return error

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        data = self._core.data_to_send()
        if data:
            self._backend.write(data)

    def _flush_soon(self) -> None:
        """Coalesce frames queued during this loop iteration into one transport write."""
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    async def _drain(self) -> None:
        try:
            await self._backend.drain()
        except Exception as exc:
            if not self._terminated:
                self._terminate(YamuxSessionClosedError(f"connection lost: {exc!r}"))
            raise self._closed_error() from exc

    def _rearm_timer(self) -> None:
        when = self._core.get_timer()
        if when == self._timer_when:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        self._timer_when = when
        self._timer_handle = None if when is None else self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        when = self._timer_when
        self._timer_handle = None
        self._timer_when = None
        if self._terminated:
            return
        now = self._loop.time()
        if when is not None and now < when:
            now = when  # the loop may fire a hair early
        events = self._core.handle_timer(now)
        if events:
            self._dispatch(events)
        if self._core.is_closed:
            self._terminate(self._core.error)
            return
        self._flush()
        self._rearm_timer()

    def _on_backend_lost(self, exc: BaseException) -> None:
        self._terminate(YamuxSessionClosedError(f"connection lost: {exc!r}"))

    async def _read_loop(self) -> None:
        core = self._core
        loop = self._loop
        read = self._backend.read
        error: BaseException | None = None
        try:
            while True:
                data = await read(_READ_CHUNK)
                if self._terminated:
                    return
                if not data:
                    error = YamuxSessionClosedError("connection closed by peer")
                    break
                try:
                    events = core.receive_data(data, loop.time())
                except YamuxProtocolError as exc:
                    self._dispatch(exc.events)
                    error = exc
                    break
                if events:
                    self._dispatch(events)
                if core.is_closed:
                    error = core.error
                    break
                self._flush()
                self._rearm_timer()
        except Exception as exc:
            error = YamuxSessionClosedError(f"connection lost: {exc!r}")
            error.__cause__ = exc
        self._terminate(error)

    def _dispatch(self, events: list[Event]) -> None:
        streams = self._streams
        for ev in events:
            if isinstance(ev, DataReceived):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed(ev.data)
            elif isinstance(ev, WindowUpdated):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._writable.notify_all()
            elif isinstance(ev, StreamOpened):
                stream = YamuxStream(self, ev.stream_id)
                streams[ev.stream_id] = stream
                self._accept_queue.append(stream)
                self._accept_signal.notify_all()
            elif isinstance(ev, StreamEnded):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._on_fin()
                    self._maybe_forget(stream)
            elif isinstance(ev, StreamReset):
                stream = streams.pop(ev.stream_id, None)
                if stream is not None:
                    stream._mark_reset()
            elif isinstance(ev, PingAcknowledged):
                fut = self._pings.pop(ev.ping_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev.rtt)
            elif isinstance(ev, PingTimedOut):
                fut = self._pings.pop(ev.ping_id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(YamuxTimeoutError(f"ping {ev.ping_id} timed out"))
        if self._open_signal.has_waiters and self._core.can_open_stream:
            self._open_signal.notify_all()

    def _maybe_forget(self, stream: YamuxStream) -> None:
        """Drop a stream from routing once the core released it and its FIN was seen."""
        if stream._eof and self._core.stream_state(stream.stream_id) is None:
            self._forget(stream)

    def _forget(self, stream: YamuxStream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        if self._open_signal.has_waiters and self._core.can_open_stream:
            self._open_signal.notify_all()

    def _terminate(self, error: BaseException | None) -> None:
        if self._terminated:
            return
        self._terminated = True
        self._error = error
        if not self._core.is_closed:
            self._core.close()
        self._flush()  # e.g. a go-away queued by the protocol error that ended us
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
            self._timer_when = None
        pings = self._pings
        self._pings = {}
        for fut in pings.values():
            if not fut.done():
                fut.set_exception(self._closed_error())
        for stream in self._streams.values():
            stream._wake()
        for stream in self._accept_queue:
            stream._wake()
        self._accept_signal.notify_all()
        self._open_signal.notify_all()
        self._closed_event.set()
        self._backend.begin_close()
