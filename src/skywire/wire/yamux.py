"""Sans-I/O yamux multiplexer, wire-compatible with hashicorp/yamux v0.1.1.

:class:`YamuxConnection` is a pure state machine: feed it received bytes with
:meth:`~YamuxConnection.receive_data`, collect the :data:`Event` values it returns, drive its
clocks with :meth:`~YamuxConnection.get_timer` / :meth:`~YamuxConnection.handle_timer` and
send whatever :meth:`~YamuxConnection.data_to_send` hands back. It never touches a socket and
never reads a clock: every time is an argument (seconds on any monotonic scale).

Frame layout (12-byte big-endian header, optional payload for data frames)::

    version:u8 (0) | type:u8 | flags:u16 | stream id:u32 | length:u32

The behaviour mirrors the reference session: streams open with a SYN window update and are
accepted with an ACK window update; flow control grants credit once half the window has been
consumed; a SYN beyond the accept backlog is refused with RST; an unanswered keepalive ping or
an un-ACKed SYN terminates the session.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from typing import Final

from skywire.wire.errors import YamuxError

__all__ = [
    "HEADER_SIZE",
    "INITIAL_STREAM_WINDOW",
    "PROTOCOL_VERSION",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "Flag",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "Header",
    "PingAcknowledged",
    "PingReceived",
    "PingTimedOut",
    "StreamEnded",
    "StreamEstablished",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "WindowUpdated",
    "YamuxConfig",
    "YamuxConnection",
    "YamuxGoAwayError",
    "YamuxKeepAliveTimeoutError",
    "YamuxOpenLimitError",
    "YamuxProtocolError",
    "YamuxRemoteGoAwayError",
    "YamuxSessionClosedError",
    "YamuxStreamClosedError",
    "YamuxStreamOpenTimeoutError",
    "YamuxStreamResetError",
    "YamuxStreamsExhaustedError",
    "YamuxTimeoutError",
]

PROTOCOL_VERSION: Final = 0
HEADER_SIZE: Final = 12
INITIAL_STREAM_WINDOW: Final = 256 * 1024
_U32: Final = 0xFFFFFFFF
_HEADER: Final = struct.Struct(">BBHII")

# Raw integer values used on the hot path (enum construction is comparatively slow).
_DATA: Final = 0
_WINDOW_UPDATE: Final = 1
_PING: Final = 2
_GO_AWAY: Final = 3
_SYN: Final = 1
_ACK: Final = 2
_FIN: Final = 4
_RST: Final = 8


class FrameType(IntEnum):
    """The ``type`` byte of a frame header."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(IntFlag):
    """The ``flags`` field of a frame header (unknown bits are kept and ignored)."""

    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(IntEnum):
    """The reason carried in the length field of a go-away frame."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class StreamState(Enum):
    """Lifecycle of one stream, as the reference implementation names it."""

    INIT = 0
    SYN_SENT = 1
    SYN_RECEIVED = 2
    ESTABLISHED = 3
    LOCAL_CLOSE = 4
    REMOTE_CLOSE = 5
    CLOSED = 6
    RESET = 7


# --------------------------------------------------------------------------------------------
# Errors


class YamuxProtocolError(YamuxError):
    """The peer broke the protocol; the session is dead.

    ``events`` holds whatever the same :meth:`YamuxConnection.receive_data` call produced
    before the bad frame, so a caller can still deliver them.
    """

    def __init__(self, message: str, events: list[Event] | None = None) -> None:
        super().__init__(message)
        self.events: list[Event] = events if events is not None else []


class YamuxSessionClosedError(YamuxError, ConnectionError):
    """The session is closed (locally, by the peer, or after an error)."""


class YamuxGoAwayError(YamuxSessionClosedError):
    """The peer sent a go-away carrying an error code; the session is dead."""

    def __init__(self, message: str, code: GoAwayCode) -> None:
        super().__init__(message)
        self.code = code


class YamuxRemoteGoAwayError(YamuxError, ConnectionRefusedError):
    """The peer sent a normal go-away, so no new stream may be opened."""


class YamuxStreamsExhaustedError(YamuxError):
    """Every stream identifier of our parity has been used."""


class YamuxOpenLimitError(YamuxError):
    """Too many of our SYNs are still unacknowledged; retry after one is ACKed or closed."""


class YamuxStreamClosedError(YamuxError, ConnectionError):
    """Write on a stream whose sending side is closed (or which no longer exists)."""


class YamuxStreamResetError(YamuxError, ConnectionResetError):
    """The stream was reset."""


class YamuxTimeoutError(YamuxError, TimeoutError):
    """A ping (or another timed exchange) got no answer in time."""


class YamuxKeepAliveTimeoutError(YamuxTimeoutError, YamuxSessionClosedError):
    """A keepalive ping went unanswered; the session is dead."""


class YamuxStreamOpenTimeoutError(YamuxTimeoutError, YamuxSessionClosedError):
    """A SYN we sent was never ACKed; the session is dead."""


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Header:
    """One decoded frame header."""

    type: FrameType
    flags: Flag
    stream_id: int
    length: int
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """The 12 wire bytes of this header."""
        return _HEADER.pack(self.version, self.type, self.flags, self.stream_id, self.length)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Header:
        """Parse exactly one 12-byte header; raise :class:`YamuxProtocolError` if invalid."""
        if len(data) != HEADER_SIZE:
            raise YamuxProtocolError(f"header must be {HEADER_SIZE} bytes, got {len(data)}")
        version, ftype, flags, stream_id, length = _HEADER.unpack(data)
        if version != PROTOCOL_VERSION:
            raise YamuxProtocolError(f"invalid protocol version {version}")
        if ftype > _GO_AWAY:
            raise YamuxProtocolError(f"invalid message type {ftype}")
        return cls(FrameType(ftype), Flag(flags), stream_id, length, version)


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Session tunables; the defaults are those of the reference ``DefaultConfig``.

    Durations are in seconds; a zero open/close timeout disables that timer.
    """

    accept_backlog: int = 256
    enable_keepalive: bool = True
    keepalive_interval: float = 30.0
    connection_write_timeout: float = 10.0
    max_stream_window: int = INITIAL_STREAM_WINDOW
    stream_open_timeout: float = 75.0
    stream_close_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.accept_backlog <= 0:
            raise ValueError("accept_backlog must be positive")
        if self.keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be positive")
        if self.connection_write_timeout <= 0:
            raise ValueError("connection_write_timeout must be positive")
        if not INITIAL_STREAM_WINDOW <= self.max_stream_window <= _U32:
            raise ValueError(f"max_stream_window must be in [{INITIAL_STREAM_WINDOW}, 2**32)")
        if self.stream_open_timeout < 0 or self.stream_close_timeout < 0:
            raise ValueError("timeouts must not be negative")


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream; it waits in the accept backlog."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEstablished:
    """The peer ACKed a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload bytes for a stream (a data frame may arrive in several pieces)."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer granted ``delta`` more bytes of send credit on a stream."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed a stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """A stream was torn down: RST from the peer, or our close timeout expired."""

    stream_id: int
    by_peer: bool = True


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged us; the answer is already queued."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    """The peer answered one of our pings after ``rtt`` seconds."""

    ping_id: int
    rtt: float


@dataclass(frozen=True, slots=True)
class PingTimedOut:
    """One of our pings went unanswered for ``connection_write_timeout`` seconds."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer sent a go-away frame."""

    code: GoAwayCode


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The session is over; ``error`` says why (``None`` for a local close)."""

    error: YamuxError | None


Event = (
    StreamOpened
    | StreamEstablished
    | DataReceived
    | WindowUpdated
    | StreamEnded
    | StreamReset
    | PingReceived
    | PingAcknowledged
    | PingTimedOut
    | GoAwayReceived
    | ConnectionTerminated
)


# --------------------------------------------------------------------------------------------
# The state machine


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
        self._out.append(_HEADER.pack(0, ftype, flags, stream_id, length))

    def _queue_go_away(self, code: GoAwayCode) -> None:
        self.local_go_away = True
        self._queue(_GO_AWAY, 0, 0, code)

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
        if sid >= _U32 - 1:
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
        n = min(st.send_window, len(data), _U32)
        if n == 0:
            return 0
        flags = self._send_flags(st)
        self._out.append(_HEADER.pack(0, _DATA, flags, stream_id, n))
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
            self._queue(_WINDOW_UPDATE, self._send_flags(st) | _FIN, stream_id, 0)
        elif st.state is StreamState.REMOTE_CLOSE:
            st.state = StreamState.CLOSED
            self._queue(_WINDOW_UPDATE, self._send_flags(st) | _FIN, stream_id, 0)
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
        self._queue(_WINDOW_UPDATE, _RST, stream_id, 0)

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
            self._queue(_WINDOW_UPDATE, _RST, sid, 0)
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
        unpack = _HEADER.unpack_from
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
                        chunk = data if take == end else data[pos : pos + take]
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
                if ftype <= _WINDOW_UPDATE:
                    self._on_stream_frame(ftype, flags, sid, length, events)
                elif ftype == _PING:
                    self._on_ping(flags, length, now, events)
                elif ftype == _GO_AWAY:
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
        if flags & _SYN:
            self._incoming_stream(sid, events)
        st = self._streams.get(sid)
        if st is None:
            # Refused or already released: drop any payload on the floor.
            if ftype == _DATA and length:
                self._payload_left = length
                self._payload_sid = None
                self._payload_end = None
            return
        end_event = self._process_flags(st, flags, events) if flags else None
        if ftype == _WINDOW_UPDATE:
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
            self._queue(_WINDOW_UPDATE, _RST, sid, 0)
            return
        if sid in self._streams:
            raise self._fail(f"duplicate stream {sid}", go_away=True)
        if len(self._backlog) >= self.config.accept_backlog:
            self._queue(_WINDOW_UPDATE, _RST, sid, 0)
            return
        self._streams[sid] = _Stream(sid, StreamState.SYN_RECEIVED)
        self._backlog[sid] = None
        events.append(StreamOpened(sid))

    def _process_flags(self, st: _Stream, flags: int, events: list[Event]) -> Event | None:
        """Apply ACK/FIN/RST; return the end-of-stream event to emit after any payload."""
        end_event: Event | None = None
        if flags & _ACK:
            if st.state is StreamState.SYN_SENT:
                st.state = StreamState.ESTABLISHED
                events.append(StreamEstablished(st.id))
            self._open_deadlines.pop(st.id, None)
            if st.inflight:
                st.inflight = False
                self._inflight -= 1
        if flags & _FIN:
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
        if flags & _RST:
            st.state = StreamState.RESET
            self._release(st)
            end_event = StreamReset(st.id)
        return end_event

    def _on_ping(self, flags: int, opaque: int, now: float, events: list[Event]) -> None:
        if flags & _SYN:
            self._queue(_PING, _ACK, 0, opaque)
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
            return _SYN
        if st.state is StreamState.SYN_RECEIVED:
            st.state = StreamState.ESTABLISHED
            return _ACK
        return 0

    def _send_window_update(self, st: _Stream) -> None:
        limit = self.config.max_stream_window
        delta = limit - st.buffered - st.recv_window
        flags = self._send_flags(st)
        if delta < limit // 2 and not flags:
            return
        st.recv_window += delta
        self._queue(_WINDOW_UPDATE, flags, st.id, delta)

    def _send_ping(self, now: float) -> int:
        pid = self._next_ping_id
        self._next_ping_id = (pid + 1) & _U32
        self._ping_sent.pop(pid, None)
        self._ping_deadlines.pop(pid, None)
        self._ping_sent[pid] = now
        self._ping_deadlines[pid] = now + self.config.connection_write_timeout
        self._queue(_PING, _SYN, 0, pid)
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
