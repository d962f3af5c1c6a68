"""asyncio adapter for the sans-I/O yamux core (:mod:`skywire.wire.yamux`).

:class:`YamuxSession` runs one :class:`~skywire.wire.yamux.YamuxConnection` over either an
asyncio ``StreamReader``/``StreamWriter`` pair (the fast path, used by dmsg right after its
Noise handshake on the same pair; bytes already buffered in the reader are consumed first) or
any :class:`~skywire.wire.stream.ByteStream`.

Concurrency is structured: the session owns one reader task (plus, over a generic
``ByteStream``, one writer task) and a loop timer handle; :meth:`YamuxSession.close` cancels
and awaits them, so nothing it started outlives it. Streams are :class:`YamuxStream` objects
implementing the ``ByteStream`` protocol.

The streams live in :mod:`~skywire.wire.yamux_aio_stream` and the byte pipes under the session
in :mod:`~skywire.wire.yamux_aio_backends`; :class:`YamuxStream` is importable from here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

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
    YamuxTimeoutError,
)
from skywire.wire.yamux_aio_backends import Backend, ByteStreamBackend, Signal, TcpBackend
from skywire.wire.yamux_aio_stream import YamuxStream

__all__ = ["YamuxSession", "YamuxStream"]

_READ_CHUNK = 256 * 1024


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
        self._setup(TcpBackend(reader, writer), client, config)

    @classmethod
    def over_stream(
        cls, stream: ByteStream, *, client: bool, config: YamuxConfig | None = None
    ) -> YamuxSession:
        """A session over any ByteStream (a :class:`TcpStream` takes the fast path)."""
        if isinstance(stream, TcpStream):
            return cls(stream.reader, stream.writer, client=client, config=config)
        session = cls.__new__(cls)
        session._setup(ByteStreamBackend(stream), client, config)
        return session

    def _setup(self, backend: Backend, client: bool, config: YamuxConfig | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._backend = backend
        self._config = config if config is not None else YamuxConfig()
        self._core = YamuxConnection(client=client, config=self._config, now=self._loop.time())
        self._core.payload_views = True
        self.client = client
        self._streams: dict[int, YamuxStream] = {}
        self._accept_queue: deque[YamuxStream] = deque()
        self._accept_signal = Signal()
        self._open_signal = Signal()
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        # Writers take turns (FIFO) once the bytes queued for the connection (unflushed frames
        # plus the backend's buffer) pass the backend's high-water mark: a burst of writers
        # cannot pile up an unbounded backlog ahead of pings and window updates. While any
        # writer waits its turn, a newcomer queues behind it even if the backlog has just
        # drained (else the streams whose credit comes back first would take every turn).
        self._send_lock = asyncio.Lock()
        self._send_queued = 0
        self._unflushed = 0
        self._high_water = backend.high_water()
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
        backend = self._backend
        if not (
            isinstance(backend, TcpBackend) and backend.start_push(self._on_data, self._on_end)
        ):
            role = "client" if self.client else "server"
            self._reader_task = self._loop.create_task(self._read_loop(), name=f"yamux-{role}")
        backend.start(self._on_backend_lost)
        self.rearm_timer()

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

    def now(self) -> float:
        """The session's clock (its loop's monotonic time), as the core is driven by."""
        return self._loop.time()

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
                raise self.closed_error()
            try:
                sid = self._core.open_stream(self._loop.time())
            except YamuxOpenLimitError:
                await self._open_signal.wait()
                continue
            break
        stream = YamuxStream(self, sid)
        self._streams[sid] = stream
        self.flush_soon()  # the SYN usually leaves together with the first data frame
        self.rearm_timer()
        return stream

    async def accept(self) -> YamuxStream:
        """Wait for a stream opened by the peer; raise once the session is closed."""
        self.start()
        while True:
            if self._terminated:
                raise self.closed_error()
            if self._accept_queue:
                break
            await self._accept_signal.wait()
        stream = self._accept_queue.popleft()
        self._core.accept_stream(stream.stream_id)
        self.flush_soon()
        return stream

    async def ping(self) -> float:
        """Round-trip time of one ping in seconds; :class:`YamuxTimeoutError` if unanswered."""
        self.start()
        if self._terminated:
            raise self.closed_error()
        pid = self._core.ping(self._loop.time())
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[pid] = fut
        self._flush()
        self.rearm_timer()
        try:
            return await fut
        finally:
            if self._pings.get(pid) is fut:
                del self._pings[pid]

    async def go_away(self) -> None:
        """Refuse further incoming streams and tell the peer to open no more."""
        if self._terminated:
            raise self.closed_error()
        self._core.go_away(GoAwayCode.NORMAL)
        self._flush()
        await self.drain()

    # ------------------------------------------------------------------ internals
    # (the public ones are what a YamuxStream calls: see yamux_aio_stream.StreamSession)

    def closed_error(self) -> YamuxSessionClosedError:
        """The error an operation on this closed session raises (caused by why it ended)."""
        reason = f": {self._error}" if self._error is not None else ""
        error = YamuxSessionClosedError(f"yamux session closed{reason}")
        error.__cause__ = self._error
        return error

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._unflushed = 0
        data = self._core.data_to_send()
        if data:
            self._backend.write(data)

    async def send(self, stream_id: int, data: memoryview) -> int:
        """Queue one data frame of ``data`` (as much as the window allows; see
        :meth:`YamuxConnection.send_data`) once the connection's backlog has room; frames
        queued in one loop iteration leave in one write. Returns the bytes taken."""
        if self._send_queued or self._backlog() > self._high_water:
            self._send_queued += 1
            try:
                async with self._send_lock:  # FIFO: every stream gets its turn
                    while self._backlog() > self._high_water:
                        if self._terminated:
                            raise self.closed_error()
                        self._flush()
                        await self.drain()
                    return self._send_now(stream_id, data)
            finally:
                self._send_queued -= 1
        return self._send_now(stream_id, data)

    def _send_now(self, stream_id: int, data: memoryview) -> int:
        n = self._core.send_data(stream_id, data)
        if n:
            self._unflushed += n
            self.flush_soon()
        return n

    def _backlog(self) -> int:
        return self._unflushed + self._backend.buffer_size()

    def flush_soon(self) -> None:
        """Coalesce frames queued during this loop iteration into one transport write."""
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    async def drain(self) -> None:
        """Wait for transport backpressure to clear; a failure ends the session."""
        try:
            await self._backend.drain()
        except Exception as exc:
            if not self._terminated:
                self._terminate(YamuxSessionClosedError(f"connection lost: {exc!r}"))
            raise self.closed_error() from exc

    def rearm_timer(self) -> None:
        """Point the one loop timer at the core's next deadline."""
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
        self.rearm_timer()

    def _on_backend_lost(self, exc: BaseException) -> None:
        self._terminate(YamuxSessionClosedError(f"connection lost: {exc!r}"))

    def _on_data(self, data: bytes) -> None:
        """Received bytes, pushed by the transport (the TCP fast path)."""
        if self._terminated:
            return
        core = self._core
        try:
            events = core.receive_data(data, self._loop.time())
        except YamuxProtocolError as exc:
            self._dispatch(exc.events)
            self._terminate(exc)
            return
        if events:
            self._dispatch(events)
        if core.is_closed:
            self._terminate(core.error)
            return
        # Window updates and ping answers leave with the frames the woken streams queue now.
        self.flush_soon()
        self.rearm_timer()

    def _on_end(self, exc: BaseException | None) -> None:
        if exc is None:
            self._terminate(YamuxSessionClosedError("connection closed by peer"))
        else:
            error = YamuxSessionClosedError(f"connection lost: {exc!r}")
            error.__cause__ = exc
            self._terminate(error)

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
                self.rearm_timer()
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
                    stream.feed(ev.data)
            elif isinstance(ev, WindowUpdated):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream.on_window_update()
            elif isinstance(ev, StreamOpened):
                stream = YamuxStream(self, ev.stream_id)
                streams[ev.stream_id] = stream
                self._accept_queue.append(stream)
                self._accept_signal.notify_all()
            elif isinstance(ev, StreamEnded):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream.on_fin()
                    self.maybe_forget(stream)
            elif isinstance(ev, StreamReset):
                stream = streams.pop(ev.stream_id, None)
                if stream is not None:
                    stream.mark_reset()
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

    def maybe_forget(self, stream: YamuxStream) -> None:
        """Drop a stream from routing once the core released it and its FIN was seen."""
        if stream.fin_received and self._core.stream_state(stream.stream_id) is None:
            self.forget(stream)

    def forget(self, stream: YamuxStream) -> None:
        """Stop routing frames to a stream (reset, or closed both ways)."""
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
                fut.set_exception(self.closed_error())
        for stream in self._streams.values():
            stream.wake()
        for stream in self._accept_queue:
            stream.wake()
        self._accept_signal.notify_all()
        self._open_signal.notify_all()
        self._closed_event.set()
        self._backend.begin_close()
