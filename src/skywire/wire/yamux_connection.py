"""The yamux state machine: :class:`YamuxConnection`, one session without any I/O.

Fed received bytes and the current time, it returns events and queues the frames to send; it
keeps the per-stream book-keeping (state, windows, deadlines), the accept backlog, pings and
keepalive. See :mod:`skywire.wire.yamux` for the protocol it speaks.
"""

from __future__ import annotations

from typing import Final

from skywire.wire.errors import YamuxError
from skywire.wire.yamux_const import (
    ACK,
    DATA,
    FIN,
    GO_AWAY,
    HEADER_SIZE,
    HEADER_STRUCT,
    INITIAL_STREAM_WINDOW,
    PING,
    PROTOCOL_VERSION,
    RST,
    SYN,
    U32,
    WINDOW_UPDATE,
    GoAwayCode,
    StreamState,
    YamuxConfig,
)
from skywire.wire.yamux_errors import (
    YamuxGoAwayError,
    YamuxKeepAliveTimeoutError,
    YamuxOpenLimitError,
    YamuxProtocolError,
    YamuxRemoteGoAwayError,
    YamuxSessionClosedError,
    YamuxStreamClosedError,
    YamuxStreamOpenTimeoutError,
    YamuxStreamResetError,
    YamuxStreamsExhaustedError,
)
from skywire.wire.yamux_events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    PingTimedOut,
    StreamEnded,
    StreamEstablished,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)


class _Stream:
    """Book-keeping for one live stream."""

    __slots__ = ("buffered", "id", "inflight", "recv_window", "send_window", "state")

    def __init__(self, stream_id: int, state: StreamState) -> None:
        self.id = stream_id
        self.state = state
        self.send_window = INITIAL_STREAM_WINDOW
        self.recv_window = INITIAL_STREAM_WINDOW
        # Received (or announced in a header) but not yet reported consumed.
        self.buffered = 0
        self.inflight = False


_OPEN_STATES: Final = (StreamState.SYN_SENT, StreamState.SYN_RECEIVED, StreamState.ESTABLISHED)


class YamuxConnection:
    """One yamux session (client or server side) without any I/O.

    Times passed in must come from one monotonic clock. Payload objects handed to
    :meth:`send_data` are referenced until the next :meth:`data_to_send`.
    """

    def __init__(
        self, *, client: bool, config: YamuxConfig | None = None, now: float = 0.0
    ) -> None:
        self.client = client
        self.config = config if config is not None else YamuxConfig()
        self.local_go_away = False
        self.remote_go_away = False
        self._next_stream_id = 1 if client else 2
        self._streams: dict[int, _Stream] = {}
        self._backlog: dict[int, None] = {}
        self._inflight = 0
        self._open_deadlines: dict[int, float] = {}
        self._close_deadlines: dict[int, float] = {}
        self._ping_sent: dict[int, float] = {}
        self._ping_deadlines: dict[int, float] = {}
        self._next_ping_id = 0
        self._keepalive_id: int | None = None
        self._keepalive_at: float | None = (
            now + self.config.keepalive_interval if self.config.enable_keepalive else None
        )
        self._out: list[bytes | bytearray | memoryview] = []
        self._partial = b""
        self._payload_left = 0
        self._payload_sid: int | None = None
        self._payload_end: Event | None = None
        self._closed = False
        self._error: YamuxError | None = None
        # Hand payload out as views into the received chunk instead of copies (the asyncio
        # session does; its streams copy only when the application asks for bytes).
        self.payload_views = False

    # ---------------------------------------------------------------- inspection

    @property
    def is_closed(self) -> bool:
        """True once the session has terminated (locally or because of the peer)."""
        return self._closed

    @property
    def error(self) -> YamuxError | None:
        """Why the session terminated, or ``None`` if it is open or was closed locally."""
        return self._error

    @property
    def can_open_stream(self) -> bool:
        """True if :meth:`open_stream` would not hit the unacknowledged-SYN limit."""
        return self._inflight < self.config.accept_backlog

    @property
    def pending_accepts(self) -> tuple[int, ...]:
        """Stream ids the peer opened that have not been accepted yet, oldest first."""
        return tuple(self._backlog)

    @property
    def num_streams(self) -> int:
        """Number of streams still tracked (not fully closed or reset)."""
        return len(self._streams)

    def stream_state(self, stream_id: int) -> StreamState | None:
        """State of a tracked stream, or ``None`` once it is released."""
        st = self._streams.get(stream_id)
        return st.state if st is not None else None

    def send_window(self, stream_id: int) -> int:
        """Bytes :meth:`send_data` may send right now on a stream (0 if unknown)."""
        st = self._streams.get(stream_id)
        return st.send_window if st is not None else 0

    # ---------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        """Drain and return every byte queued for the peer."""
        out = self._out
        if not out:
            return b""
        self._out = []
        if len(out) == 1:
            return bytes(out[0])
        return b"".join(out)

    def _queue(self, ftype: int, flags: int, stream_id: int, length: int) -> None:
        self._out.append(HEADER_STRUCT.pack(0, ftype, flags, stream_id, length))

    def _queue_go_away(self, code: GoAwayCode) -> None:
        self.local_go_away = True
        self._queue(GO_AWAY, 0, 0, code)

    # ---------------------------------------------------------------- local actions

    def _check_open(self) -> None:
        if self._closed:
            raise YamuxSessionClosedError("yamux session is closed") from self._error

    def open_stream(self, now: float) -> int:
        """Open a stream (queues its SYN) and return its id."""
        self._check_open()
        if self.remote_go_away:
            raise YamuxRemoteGoAwayError("peer sent go-away; no new streams")
        if self._inflight >= self.config.accept_backlog:
            raise YamuxOpenLimitError("too many unacknowledged stream opens")
        sid = self._next_stream_id
        if sid >= U32 - 1:
            raise YamuxStreamsExhaustedError("stream ids exhausted")
        self._next_stream_id = sid + 2
        st = _Stream(sid, StreamState.INIT)
        st.inflight = True
        self._inflight += 1
        self._streams[sid] = st
        if self.config.stream_open_timeout > 0:
            self._open_deadlines[sid] = now + self.config.stream_open_timeout
        self._send_window_update(st)
        return sid

    def accept_stream(self, stream_id: int) -> None:
        """Take a stream out of the accept backlog and ACK it."""
        self._check_open()
        if stream_id not in self._backlog:
            raise YamuxError(f"stream {stream_id} is not waiting to be accepted")
        del self._backlog[stream_id]
        st = self._streams.get(stream_id)
        if st is not None:
            self._send_window_update(st)

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue one data frame with as much of ``data`` as the send window allows.

        Returns the number of bytes taken (0 when the window is exhausted: wait for a
        :class:`WindowUpdated`).
        """
        self._check_open()
        st = self._streams.get(stream_id)
        if st is None:
            raise YamuxStreamClosedError(f"stream {stream_id} is closed")
        state = st.state
        if state is StreamState.RESET:
            raise YamuxStreamResetError(f"stream {stream_id} was reset")
        if state is StreamState.LOCAL_CLOSE or state is StreamState.CLOSED:
            raise YamuxStreamClosedError(f"stream {stream_id} is closed for writing")
        n = min(st.send_window, len(data), U32)
        if n == 0:
            return 0
        flags = self._send_flags(st)
        self._out.append(HEADER_STRUCT.pack(0, DATA, flags, stream_id, n))
        self._out.append(data if n == len(data) else memoryview(data)[:n])
        st.send_window -= n
        return n

    def acknowledge_received(self, stream_id: int, n: int) -> None:
        """Report that the application consumed ``n`` received bytes of a stream.

        This is what lets the window reopen: a window update goes out once at least half of
        the maximum window has been consumed since the last one.
        """
        if self._closed or n <= 0:
            return
        st = self._streams.get(stream_id)
        if st is None:
            return
        if n > st.buffered:
            raise ValueError(f"acknowledged {n} bytes but only {st.buffered} were received")
        st.buffered -= n
        self._send_window_update(st)

    def close_stream(self, stream_id: int, now: float) -> None:
        """Half-close a stream: queue a FIN; it is released once the peer's FIN arrives too."""
        if self._closed:
            return
        st = self._streams.get(stream_id)
        if st is None:
            return
        if st.state in _OPEN_STATES:
            st.state = StreamState.LOCAL_CLOSE
            self._open_deadlines.pop(stream_id, None)
            if self.config.stream_close_timeout > 0:
                self._close_deadlines[stream_id] = now + self.config.stream_close_timeout
            self._queue(WINDOW_UPDATE, self._send_flags(st) | FIN, stream_id, 0)
        elif st.state is StreamState.REMOTE_CLOSE:
            st.state = StreamState.CLOSED
            self._queue(WINDOW_UPDATE, self._send_flags(st) | FIN, stream_id, 0)
            self._release(st)

    def reset_stream(self, stream_id: int) -> None:
        """Abort a stream in both directions (queues a RST) and release it."""
        if self._closed:
            return
        self._backlog.pop(stream_id, None)
        st = self._streams.get(stream_id)
        if st is None:
            return
        st.state = StreamState.RESET
        self._release(st)
        self._queue(WINDOW_UPDATE, RST, stream_id, 0)

    def ping(self, now: float) -> int:
        """Queue a ping and return its id; expect :class:`PingAcknowledged` or a timeout."""
        self._check_open()
        return self._send_ping(now)

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        """Tell the peer we accept no more streams (further SYNs get RST)."""
        self._check_open()
        self._queue_go_away(code)

    def close(self) -> None:
        """Terminate the session locally; like the reference, no frame is sent."""
        if not self._closed:
            self._terminate(None)

    # ---------------------------------------------------------------- timers

    def get_timer(self) -> float | None:
        """The earliest time at which :meth:`handle_timer` has work, or ``None``."""
        if self._closed:
            return None
        when = self._keepalive_at
        for deadlines in (self._ping_deadlines, self._open_deadlines, self._close_deadlines):
            if deadlines:
                first = next(iter(deadlines.values()))
                if when is None or first < when:
                    when = first
        return when

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``: ping timeouts, keepalive, open/close timeouts."""
        events: list[Event] = []
        if self._closed:
            return events
        pings = self._ping_deadlines
        while pings:
            pid, deadline = next(iter(pings.items()))
            if deadline > now:
                break
            del pings[pid]
            self._ping_sent.pop(pid, None)
            if pid == self._keepalive_id:
                self._keepalive_id = None
                error: YamuxError = YamuxKeepAliveTimeoutError("keepalive ping timed out")
                self._terminate(error)
                events.append(ConnectionTerminated(error))
                return events
            events.append(PingTimedOut(pid))
        if self._open_deadlines and next(iter(self._open_deadlines.values())) <= now:
            error = YamuxStreamOpenTimeoutError("stream open was never acknowledged")
            self._terminate(error)
            events.append(ConnectionTerminated(error))
            return events
        closing = self._close_deadlines
        while closing:
            sid, deadline = next(iter(closing.items()))
            if deadline > now:
                break
            st = self._streams.get(sid)
            if st is None:  # pragma: no cover - released streams drop their deadline
                del closing[sid]
                continue
            st.state = StreamState.CLOSED
            self._release(st)
            if self._payload_sid == sid:
                self._payload_sid = None
            self._queue(WINDOW_UPDATE, RST, sid, 0)
            events.append(StreamReset(sid, by_peer=False))
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            self._keepalive_id = self._send_ping(now)
        return events

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Consume bytes from the peer and return the resulting events.

        Raises :class:`YamuxProtocolError` (with the events decoded before the fault) when the
        peer breaks the protocol; the session is then terminated, and any go-away the
        reference would send is already queued in :meth:`data_to_send`.
        """
        self._check_open()
        if type(data) is not bytes:
            data = bytes(data)
        if self._partial:
            data = self._partial + data
            self._partial = b""
        events: list[Event] = []
        pos = 0
        end = len(data)
        whole: bytes | memoryview = memoryview(data) if self.payload_views else data
        unpack = HEADER_STRUCT.unpack_from
        try:
            while True:
                left = self._payload_left
                if left:
                    avail = end - pos
                    if not avail:
                        break
                    take = left if left < avail else avail
                    sid = self._payload_sid
                    if sid is not None:
                        chunk = data if take == end else whole[pos : pos + take]
                        events.append(DataReceived(sid, chunk))
                    pos += take
                    left -= take
                    self._payload_left = left
                    if not left and self._payload_end is not None:
                        events.append(self._payload_end)
                        self._payload_end = None
                    continue
                if end - pos < HEADER_SIZE:
                    if pos < end:
                        self._partial = data[pos:]
                    break
                version, ftype, flags, sid, length = unpack(data, pos)
                pos += HEADER_SIZE
                if version != PROTOCOL_VERSION:
                    raise self._fail(f"invalid protocol version {version}", go_away=False)
                if ftype <= WINDOW_UPDATE:
                    self._on_stream_frame(ftype, flags, sid, length, events)
                elif ftype == PING:
                    self._on_ping(flags, length, now, events)
                elif ftype == GO_AWAY:
                    self._on_go_away(length, events)
                    if self._closed:
                        break
                else:
                    raise self._fail(f"invalid message type {ftype}", go_away=False)
        except YamuxProtocolError as exc:
            exc.events = events
            raise
        return events

    def _fail(self, message: str, *, go_away: bool) -> YamuxProtocolError:
        if go_away:
            self._queue_go_away(GoAwayCode.PROTOCOL_ERROR)
        error = YamuxProtocolError(message)
        self._terminate(error)
        return error

    def _on_stream_frame(
        self, ftype: int, flags: int, sid: int, length: int, events: list[Event]
    ) -> None:
        if flags & SYN:
            self._incoming_stream(sid, events)
        st = self._streams.get(sid)
        if st is None:
            # Refused or already released: drop any payload on the floor.
            if ftype == DATA and length:
                self._payload_left = length
                self._payload_sid = None
                self._payload_end = None
            return
        end_event = self._process_flags(st, flags, events) if flags else None
        if ftype == WINDOW_UPDATE:
            if length:
                st.send_window += length
                events.append(WindowUpdated(sid, length))
            if end_event is not None:
                events.append(end_event)
            return
        if not length:
            if end_event is not None:
                events.append(end_event)
            return
        if length > st.recv_window:
            raise self._fail(
                f"receive window exceeded on stream {sid}: {length} > {st.recv_window}",
                go_away=True,
            )
        st.recv_window -= length
        st.buffered += length
        self._payload_left = length
        if st.state is StreamState.RESET:
            self._payload_sid = None
            self._payload_end = None
            if end_event is not None:
                events.append(end_event)
        else:
            self._payload_sid = sid
            self._payload_end = end_event

    def _incoming_stream(self, sid: int, events: list[Event]) -> None:
        if self.local_go_away:
            self._queue(WINDOW_UPDATE, RST, sid, 0)
            return
        if sid in self._streams:
            raise self._fail(f"duplicate stream {sid}", go_away=True)
        if len(self._backlog) >= self.config.accept_backlog:
            self._queue(WINDOW_UPDATE, RST, sid, 0)
            return
        self._streams[sid] = _Stream(sid, StreamState.SYN_RECEIVED)
        self._backlog[sid] = None
        events.append(StreamOpened(sid))

    def _process_flags(self, st: _Stream, flags: int, events: list[Event]) -> Event | None:
        """Apply ACK/FIN/RST; return the end-of-stream event to emit after any payload."""
        end_event: Event | None = None
        if flags & ACK:
            if st.state is StreamState.SYN_SENT:
                st.state = StreamState.ESTABLISHED
                events.append(StreamEstablished(st.id))
            self._open_deadlines.pop(st.id, None)
            if st.inflight:
                st.inflight = False
                self._inflight -= 1
        if flags & FIN:
            if st.state in _OPEN_STATES:
                st.state = StreamState.REMOTE_CLOSE
                self._open_deadlines.pop(st.id, None)
            elif st.state is StreamState.LOCAL_CLOSE:
                st.state = StreamState.CLOSED
                self._release(st)
            else:
                raise self._fail(
                    f"unexpected FIN on stream {st.id} in state {st.state.name}", go_away=True
                )
            end_event = StreamEnded(st.id)
        if flags & RST:
            st.state = StreamState.RESET
            self._release(st)
            end_event = StreamReset(st.id)
        return end_event

    def _on_ping(self, flags: int, opaque: int, now: float, events: list[Event]) -> None:
        if flags & SYN:
            self._queue(PING, ACK, 0, opaque)
            events.append(PingReceived(opaque))
            return
        sent = self._ping_sent.pop(opaque, None)
        if sent is None:
            return
        del self._ping_deadlines[opaque]
        if opaque == self._keepalive_id:
            self._keepalive_id = None
            self._keepalive_at = now + self.config.keepalive_interval
        events.append(PingAcknowledged(opaque, now - sent))

    def _on_go_away(self, code: int, events: list[Event]) -> None:
        if code == GoAwayCode.NORMAL:
            self.remote_go_away = True
            events.append(GoAwayReceived(GoAwayCode.NORMAL))
            return
        if code == GoAwayCode.PROTOCOL_ERROR or code == GoAwayCode.INTERNAL_ERROR:
            reason = GoAwayCode(code)
            events.append(GoAwayReceived(reason))
            error = YamuxGoAwayError(f"peer went away: {reason.name}", reason)
            self._terminate(error)
            events.append(ConnectionTerminated(error))
            return
        raise self._fail(f"unexpected go-away code {code}", go_away=False)

    # ---------------------------------------------------------------- helpers

    def _send_flags(self, st: _Stream) -> int:
        """SYN on our first frame, ACK on our first frame after the peer's SYN."""
        if st.state is StreamState.INIT:
            st.state = StreamState.SYN_SENT
            return SYN
        if st.state is StreamState.SYN_RECEIVED:
            st.state = StreamState.ESTABLISHED
            return ACK
        return 0

    def _send_window_update(self, st: _Stream) -> None:
        limit = self.config.max_stream_window
        delta = limit - st.buffered - st.recv_window
        flags = self._send_flags(st)
        if delta < limit // 2 and not flags:
            return
        st.recv_window += delta
        self._queue(WINDOW_UPDATE, flags, st.id, delta)

    def _send_ping(self, now: float) -> int:
        pid = self._next_ping_id
        self._next_ping_id = (pid + 1) & U32
        self._ping_sent.pop(pid, None)
        self._ping_deadlines.pop(pid, None)
        self._ping_sent[pid] = now
        self._ping_deadlines[pid] = now + self.config.connection_write_timeout
        self._queue(PING, SYN, 0, pid)
        return pid

    def _release(self, st: _Stream) -> None:
        """Forget a stream whose both directions are finished (or which was reset)."""
        sid = st.id
        self._streams.pop(sid, None)
        self._open_deadlines.pop(sid, None)
        self._close_deadlines.pop(sid, None)
        if st.inflight:
            st.inflight = False
            self._inflight -= 1

    def _terminate(self, error: YamuxError | None) -> None:
        self._closed = True
        self._error = error
        for st in self._streams.values():
            st.state = StreamState.CLOSED
        self._streams.clear()
        self._backlog.clear()
        self._open_deadlines.clear()
        self._close_deadlines.clear()
        self._ping_sent.clear()
        self._ping_deadlines.clear()
        self._keepalive_at = None
        self._keepalive_id = None
        self._inflight = 0
        self._payload_left = 0
        self._payload_sid = None
        self._payload_end = None
        self._partial = b""
